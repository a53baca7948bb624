"""Gradient cost against parameter count: the spiral neural ODE, every sensitivity method.

Problem (the paper's spiral, DiffEqFlux 2019): the model ``u' = MLP(u^3)`` with a
``2 -> H -> 2`` tanh network (:class:`autodiffeq.nn.MLP`, ``input_transform="cube"``,
``2 H + H + 2 H + 2 = 5 H + 2`` parameters, Glorot weights from seed 0, zero biases), state
``u`` of shape ``(B, 2)`` (``B`` spirals integrated together; ``u0 = (2, 0)`` for ``B = 1``,
otherwise points on a ring of radius 1.5-2), ``t`` in ``[0, 1.5]``, 20 saved times, Tsit5 with
``rtol = 1e-6, atol = 1e-8``. Loss: the sum of squared differences between the saved states and
data from the true dynamics ``u' = A u^3``, ``A = [[-0.1, 2], [-2, -0.1]]``. One gradient of
the loss with respect to the network parameters (``autograd.grad`` through ``ade.solve``) is
timed for

* every registered sensitivity method (``ade.registry().sensitivities()``) that is compatible
  with Tsit5 on the NumPy backend; incompatible ones, ones that raise
  ``UnsupportedCombination`` and ones predicted to take longer than ``--budget`` seconds
  (from their time at the previous ``H``, scaled by the parameter count, squared for forward
  methods) are listed with the
  reason; plus the configured variants in :data:`VARIANTS` (``ForwardSensitivity`` with
  ``error_control="all"``: the sensitivities under error control too, SciML's default);
* the same methods with the network written by hand as a user would: a plain
  ``autograd.numpy`` function ``f(u, p, t) = tanh(u^3 W1 + b1) W2 + b2`` that unpacks the
  flat ``p`` itself (:func:`spiral_user_f`; the same parameter layout, weights and cube input
  transform as the MLP, so the same gradient) and carries no derivatives of its own, so the
  library differentiates it with autograd. These rows are labelled ``"<method> [user f]"``
  (``--no-user-f`` leaves them out); the judged comparisons and the crossover of the MLP rows
  ignore them;
* torchdiffeq, when ``torch`` and ``torchdiffeq`` import: ``odeint`` (backpropagation through
  the solver) and ``odeint_adjoint``, ``dopri5``, the same tolerances (the adjoint's default to
  them), float64, the same network and weights, ``loss.backward()``.

Timing: one warm-up call, then the median of 5 calls (3 when one call takes over 0.5 s, just
the warm-up when it takes over 5 s); the garbage collector runs before each call. BLAS and
torch run single-threaded (OPENBLAS/OMP/MKL_NUM_THREADS=1 unless set; ``torch.set_num_threads``
the same), so both sides compute on one core. The clock is the process's CPU time
(``time.process_time``; ``--clock wall`` for ``perf_counter``): with one compute thread it
equals the wall time on an idle machine and, unlike it, does not count the time other
processes hold the core on a shared one. glibc's malloc is told to keep freed memory (see
:func:`keep_freed_memory`; ``--system-malloc`` to leave it), so that large temporaries do not
page-fault in anew on every call, for NumPy and torch alike. Accuracy: ``err`` is
``|g - g_ref| / |g_ref|`` (2-norms) against a reference gradient from DiscreteAdjoint at
``rtol = 1e-10, atol = 1e-12`` (the gradient of the continuous solution to about 1e-9).

Output: a table per batch size (time, err, speedups ``x ReverseMode = t(ReverseMode) / t``
with the ReverseMode of the same model (MLP or user f), ``x tdq-adj = t(odeint_adjoint) / t``,
``x tdq-bp = t(odeint) / t``, and for the user-f rows ``x MLP = t(same method, nn.MLP) / t``:
above 1 means the row is faster), the judged comparisons, the cost of the user-written f
against the MLP, the forward/adjoint crossover in parameter count (per model),
``gradients.csv`` and ``gradients.png`` (time against parameter count, log-log) in ``--out``.

    python benchmarks/gradients.py            # full: H = 4, 8, 16, 32, 64, 256, 1024; B = 1, 64
    python benchmarks/gradients.py --quick    # smoke run: H = 16, 256; B = 1, 64
    python benchmarks/gradients.py --hidden 16,64 --batch 1 --no-torch
    python benchmarks/gradients.py --quick --no-user-f   # the MLP rows only

torchdiffeq is an optional dependency of this benchmark only (``pip install ".[bench-torch]"``).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import gc  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import autograd.numpy as anp  # noqa: E402
import numpy as np  # noqa: E402
from _common import format_table, write_csv  # noqa: E402
from autograd import grad  # noqa: E402

import autodiffeq as ade  # noqa: E402
from autodiffeq.nn import MLP  # noqa: E402

A_TRUE = np.array([[-0.1, 2.0], [-2.0, -0.1]])
TSPAN = (0.0, 1.5)
T_SAVE = np.linspace(*TSPAN, 20)
RTOL, ATOL = 1e-6, 1e-8
REF_RTOL, REF_ATOL = 1e-10, 1e-12
SOLVER = "Tsit5"
TDQ_ODEINT = "torchdiffeq.odeint"
TDQ_ADJOINT = "torchdiffeq.odeint_adjoint"
#: the models: the library's network with hand-derived products, and the same network written
#: by hand as a plain autograd.numpy function (its rows' method labels get USER_SUFFIX)
MODEL_MLP, MODEL_USER = "nn.MLP", "user f"
USER_SUFFIX = " [user f]"
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
#: configured methods timed next to the registered ones (which run with default options):
#: label -> (registered name, options)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "ForwardSensitivity(all)": ("ForwardSensitivity", {"error_control": "all"}),
}


def torch_modules(wanted: bool, why_not: str) -> tuple[Any, str]:
    """``((torch, torchdiffeq), note)`` when wanted and importable, else ``(None, note)``."""
    if not wanted:
        return None, why_not
    torch, torchdiffeq, reason = load_torch()
    if torch is None:
        return None, f"not importable ({reason}): pip install '.[bench-torch]'"
    return (torch, torchdiffeq), (
        f"torch {torch.__version__}, torchdiffeq {torchdiffeq.__version__}, "
        f"{torch.get_num_threads()} thread(s)"
    )


def keep_freed_memory() -> str:
    """Ask glibc's malloc to serve large blocks from the heap and not to hand freed memory
    back to the system (``mallopt(M_MMAP_THRESHOLD, 64 MiB)``, ``mallopt(M_TRIM_THRESHOLD,
    256 MiB)``; the same as ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``).

    Otherwise every temporary above the (adaptive) 128 KiB threshold is a fresh ``mmap``
    whose pages fault in on first touch: with B = 64, H = 1024 (512 KiB activations) that
    made one gradient 4x slower, and how often it happened depended on what the process had
    allocated before. It applies to NumPy and torch alike. Returns a note for the header.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(-3, 64 << 20) == 1 and libc.mallopt(-1, 256 << 20) == 1
    except (OSError, AttributeError):
        return "malloc settings unchanged (not glibc)"
    return "glibc mmap/trim thresholds 64/256 MiB" if ok else "mallopt failed"


# --------------------------------------------------------------------------- problem
@dataclass
class Case:
    """One spiral neural ODE: network width ``H``, batch ``B``, weights, data."""

    hidden: int
    batch: int
    model: MLP
    p0: np.ndarray
    u0: np.ndarray
    data: np.ndarray
    #: the same network as a plain autograd.numpy function (:func:`spiral_user_f`)
    user_f: Callable[[Any, Any, Any], Any] | None = None

    @property
    def n_params(self) -> int:
        return self.model.n_params


def initial_states(batch: int) -> np.ndarray:
    """``(B, 2)`` initial states: ``(2, 0)`` for one spiral, else a ring of radius 1.5-2."""
    if batch == 1:
        return np.array([[2.0, 0.0]])
    angle = np.linspace(0.0, 2 * np.pi, batch, endpoint=False)
    radius = np.linspace(1.5, 2.0, batch)
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)


def spiral_user_f(hidden: int) -> Callable[[Any, Any, Any], Any]:
    """The spiral network written the way a user would, in ``autograd.numpy``:
    ``f(u, p, t) = tanh(u^3 W1 + b1) W2 + b2`` with ``W1`` (2, H), ``b1`` (H,), ``W2`` (H, 2),
    ``b2`` (2,) unpacked from a flat ``p`` in :class:`autodiffeq.nn.MLP`'s layout (each layer's
    weights row-major, then its bias), so ``spiral_user_f(H)(u, p, t) == MLP((2, H, 2),
    activation="tanh", input_transform="cube")(u, p, t)``. No derivatives of its own: the
    library traces it with autograd. ``u`` may be ``(2,)`` or ``(B, 2)``."""
    h = hidden

    def f(u: Any, p: Any, t: Any) -> Any:
        W1 = anp.reshape(p[: 2 * h], (2, h))
        b1 = p[2 * h : 3 * h]
        W2 = anp.reshape(p[3 * h : 5 * h], (h, 2))
        b2 = p[5 * h : 5 * h + 2]
        return anp.dot(anp.tanh(anp.dot(u**3, W1) + b1), W2) + b2

    return f


def true_dynamics(u: np.ndarray, p: Any, t: float) -> np.ndarray:
    """``u' = A u^3`` row by row for a ``(B, 2)`` state."""
    return u**3 @ A_TRUE.T


def make_case(hidden: int, batch: int) -> Case:
    model = MLP((2, hidden, 2), activation="tanh", input_transform="cube")
    u0 = initial_states(batch)
    truth = ade.solve(
        ade.ODEProblem(true_dynamics, u0, TSPAN), SOLVER, saveat=T_SAVE, rtol=1e-10, atol=1e-12
    )
    p0 = model.init(seed=0)
    user_f = spiral_user_f(hidden)
    probe = initial_states(3) * 0.7
    if not np.allclose(user_f(probe, p0, 0.0), model(probe, p0, 0.0), rtol=1e-12, atol=1e-14):
        raise AssertionError("spiral_user_f differs from the MLP")
    return Case(hidden, batch, model, p0, u0, np.asarray(truth.u), user_f)


def ade_gradient(
    case: Case, sensealg: Any, rtol: float = RTOL, atol: float = ATOL, f: Any = None
) -> Callable:
    """``p -> d loss / d p`` through ``ade.solve`` with sensitivity method ``sensealg``; the
    right-hand side is ``f`` (default: the case's MLP)."""
    rhs = case.model if f is None else f

    def loss(p: Any) -> Any:
        prob = ade.ODEProblem(rhs, case.u0, TSPAN, p)
        sol = ade.solve(prob, SOLVER, saveat=T_SAVE, rtol=rtol, atol=atol, sensealg=sensealg)
        return anp.sum((sol.u - case.data) ** 2)

    return grad(loss)


def forward_stats(case: Case) -> tuple[int, int]:
    """Accepted steps and f evaluations of the forward solve a gradient makes (it steps onto
    the save times)."""
    prob = ade.ODEProblem(case.model, case.u0, TSPAN, case.p0)
    sol = ade.solve(prob, SOLVER, saveat=T_SAVE, tstops=T_SAVE, rtol=RTOL, atol=ATOL)
    return int(sol.stats.naccept), int(sol.stats.nf)


# --------------------------------------------------------------------------- torchdiffeq
def load_torch() -> tuple[Any, Any, str]:
    """``(torch, torchdiffeq, "")`` or ``(None, None, reason)``."""
    try:
        import torch
        import torchdiffeq
    except Exception as exc:  # ImportError, or a broken install
        return None, None, f"{type(exc).__name__}: {exc}"
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    return torch, torchdiffeq, ""


def spiral_torch_field(torch: Any, W1: Any, b1: Any, W2: Any, b2: Any) -> Any:
    """The spiral network as a ``torch.nn.Module`` for torchdiffeq (float64 parameters, an
    ``nfe`` counter of its calls): ``tanh(u^3 W1 + b1) W2 + b2``."""

    class Field(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            as_param = lambda a: torch.nn.Parameter(torch.tensor(np.array(a)))  # noqa: E731
            self.W1, self.b1 = as_param(W1), as_param(b1)
            self.W2, self.b2 = as_param(W2), as_param(b2)
            self.nfe = 0

        def forward(self, t: Any, u: Any) -> Any:
            self.nfe += 1
            return torch.tanh(u**3 @ self.W1 + self.b1) @ self.W2 + self.b2

    return Field()


def torch_gradient(torch: Any, torchdiffeq: Any, case: Case, adjoint: bool) -> tuple:
    """``(fn, nfe)``: ``fn()`` returns the flat gradient (MLP layout) from torchdiffeq's
    ``odeint`` or ``odeint_adjoint``; ``nfe()`` the f evaluations of the last forward pass."""
    (W1, b1), (W2, b2) = case.model.unflatten(case.p0)
    func = spiral_torch_field(torch, W1, b1, W2, b2)
    y0 = torch.tensor(case.u0)
    ts = torch.tensor(T_SAVE)
    data = torch.tensor(case.data)
    solve = torchdiffeq.odeint_adjoint if adjoint else torchdiffeq.odeint
    forward_nfe = [0]

    def fn() -> np.ndarray:
        func.zero_grad(set_to_none=True)
        func.nfe = 0
        U = solve(func, y0, ts, rtol=RTOL, atol=ATOL, method="dopri5")
        forward_nfe[0] = func.nfe
        loss = ((U - data) ** 2).sum()
        loss.backward()
        parts = [func.W1.grad, func.b1.grad, func.W2.grad, func.b2.grad]
        return np.concatenate([g.detach().numpy().reshape(-1) for g in parts])

    return fn, lambda: forward_nfe[0]


# --------------------------------------------------------------------------- timing
class CallTimeout(Exception):
    """A gradient took longer than the hard limit."""


def _alarm(signum: int, frame: Any) -> None:
    raise CallTimeout


#: the clock of the timings: "cpu" (this process's CPU time) or "wall"; set by ``--clock``
CLOCK = {"name": "cpu"}


def _now() -> float:
    return time.process_time() if CLOCK["name"] == "cpu" else time.perf_counter()


def timed(fn: Callable[[], Any], hard_limit: float) -> tuple[float, Any]:
    """Seconds of one call of ``fn`` (garbage collected first; :data:`CLOCK`) and its result;
    raises :class:`CallTimeout` past ``hard_limit`` seconds of wall time."""
    gc.collect()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, hard_limit)
    try:
        start = _now()
        out = fn()
        return _now() - start, out
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def measure(fn: Callable[[], Any], hard_limit: float, quick: bool) -> tuple[float, Any, int]:
    """Median seconds per call, the result, and the number of timed calls: a warm-up, then
    5 calls (3 over 0.5 s, 1 with ``quick``; the warm-up alone over 5 s)."""
    first, out = timed(fn, hard_limit)
    if first > 5.0:
        return first, out, 1
    repeats = 1 if quick else (3 if first > 0.5 else 5)
    samples = [timed(fn, hard_limit)[0] for _ in range(repeats)]
    return statistics.median(samples), out, repeats


# --------------------------------------------------------------------------- the run
@dataclass
class Result:
    """One method on one case."""

    method: str
    mode: str  # "forward", "reverse" or "torch"
    hidden: int
    batch: int
    n_params: int
    seconds: float | None = None
    err: float | None = None
    calls: int = 0
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    #: MODEL_MLP or MODEL_USER (torchdiffeq rows: MODEL_MLP, the same network)
    model: str = MODEL_MLP

    @property
    def base(self) -> str:
        """The method's label without the user-f suffix."""
        return self.method.removesuffix(USER_SUFFIX)


def rel_err(g: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(g) - ref) / np.linalg.norm(ref))


def run_case(
    case: Case,
    methods: Sequence[Any],
    torch_mods: tuple[Any, Any] | None,
    budget: float,
    previous: dict[tuple[str, int], tuple[int, float]],
    quick: bool,
    user_f: bool = True,
) -> list[Result]:
    """Time every method on ``case`` (with the MLP and, when ``user_f``, with the user-written
    network); ``previous`` maps (method label, B) to (params, seconds) of the last measured
    case, for skipping methods predicted to exceed ``budget``."""
    reg = ade.registry()
    ref = ade_gradient(case, "DiscreteAdjoint", REF_RTOL, REF_ATOL)(case.p0)
    prob = ade.ODEProblem(case.model, case.u0, TSPAN, case.p0)
    steps, nf = forward_stats(case)
    print(
        f"\n== H = {case.hidden} ({case.n_params} parameters), B = {case.batch}: "
        f"{SOLVER} forward solve {steps} steps, {nf} f evaluations",
        flush=True,
    )
    results: list[Result] = []
    hard_limit = max(3 * budget, 30.0)

    def predicted_too_slow(name: str, mode: str) -> str:
        last = previous.get((name, case.batch))
        if last is None:
            return ""
        params, seconds = last
        # forward methods carry one tangent per parameter through a network whose size
        # grows with the parameter count as well: quadratic; reverse ones: linear
        power = 2 if mode == "forward" else 1
        guess = seconds * (case.n_params / params) ** power
        if guess > budget:
            return (
                f"skipped: predicted {guess:.3g} s per gradient (> budget {budget:g} s; "
                f"{seconds:.3g} s at {params} parameters)"
            )
        return ""

    def record(res: Result, fn: Callable[[], Any]) -> None:
        skip = predicted_too_slow(res.method, res.mode)
        if skip:
            res.note = skip
        else:
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    res.seconds, g, res.calls = measure(fn, hard_limit, quick)
                res.err = rel_err(g, ref)
                res.extra["grad"] = np.asarray(g, dtype=np.float64)
                messages = sorted({str(w.message).split("\n")[0][:80] for w in caught})
                if messages:
                    res.note = "warned: " + "; ".join(messages)
                previous[(res.method, case.batch)] = (case.n_params, res.seconds)
            except CallTimeout:
                res.note = f"stopped: over {hard_limit:g} s"
                previous[(res.method, case.batch)] = (case.n_params, hard_limit)
            except ade.UnsupportedCombination as exc:
                res.note = f"unsupported: {str(exc).splitlines()[0][:120]}"
            except Exception as exc:  # another method's bug must not stop the benchmark
                res.note = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
        results.append(res)
        shown = "" if res.seconds is None else f"{res.seconds * 1e3:10.2f} ms  err {res.err:.2e}"
        print(f"  {res.method:24s} {shown} {res.note}", flush=True)

    models = [(MODEL_MLP, "", None)]
    user_prob = None
    if user_f and case.user_f is not None:
        models.append((MODEL_USER, USER_SUFFIX, case.user_f))
        user_prob = ade.ODEProblem(case.user_f, case.u0, TSPAN, case.p0)

    for spec in methods:
        for model, suffix, f in models:
            res = Result(
                spec.name + suffix, spec.mode, case.hidden, case.batch, case.n_params, model=model
            )
            compat = reg.compatible(SOLVER, "numpy", spec, prob if f is None else user_prob)
            if not compat:
                res.note = f"incompatible: {compat.reason}"
                results.append(res)
                print(f"  {res.method:24s} {res.note}", flush=True)
                continue
            record(res, lambda name=spec.name, f=f: ade_gradient(case, name, f=f)(case.p0))

    registered = {spec.name: spec for spec in methods}
    for label, (name, options) in VARIANTS.items():
        if name not in registered:
            continue
        for model, suffix, f in models:
            res = Result(
                label + suffix,
                registered[name].mode,
                case.hidden,
                case.batch,
                case.n_params,
                model=model,
            )
            if reg.compatible(SOLVER, "numpy", registered[name], prob if f is None else user_prob):
                method = ade.sensitivity_method(name, **options)
                record(res, lambda method=method, f=f: ade_gradient(case, method, f=f)(case.p0))

    if torch_mods is not None:
        torch, torchdiffeq = torch_mods
        for name, adjoint in ((TDQ_ODEINT, False), (TDQ_ADJOINT, True)):
            fn, nfe = torch_gradient(torch, torchdiffeq, case, adjoint)
            res = Result(name, "torch", case.hidden, case.batch, case.n_params)
            record(res, fn)
            res.extra["forward_nfe"] = nfe()
            if res.seconds is not None:
                res.note = (res.note + f" forward nfe {nfe()}").strip()
    return results


# --------------------------------------------------------------------------- reporting
def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return num / den


def tables(results: list[Result], batches: Sequence[int]) -> tuple[list[str], list[list]]:
    """Printed table per batch; returns the CSV headers and rows."""
    headers = [
        "B",
        "H",
        "params",
        "method",
        "ms",
        "err",
        "x ReverseMode",
        "x tdq-adj",
        "x tdq-bp",
        "x MLP",
        "note",
    ]
    csv_rows: list[list] = []
    for batch in batches:
        rows = []
        for res in results:
            if res.batch != batch:
                continue
            same = {
                r.method: r.seconds
                for r in results
                if (r.hidden, r.batch) == (res.hidden, res.batch)
            }
            suffix = USER_SUFFIX if res.model == MODEL_USER else ""
            row = [
                batch,
                res.hidden,
                res.n_params,
                res.method,
                None if res.seconds is None else res.seconds * 1e3,
                res.err,
                _ratio(same.get("ReverseMode" + suffix), res.seconds),
                _ratio(same.get(TDQ_ADJOINT), res.seconds),
                _ratio(same.get(TDQ_ODEINT), res.seconds),
                _ratio(same.get(res.base), res.seconds) if suffix else None,
                res.note,
            ]
            rows.append(row)
            csv_rows.append(row)
        print(f"\n### batch B = {batch}\n")
        print(format_table(headers, [r[:-1] + [r[-1][:70]] for r in rows]))
    return headers, csv_rows


def is_adjoint(res: Result) -> bool:
    """Adjoint methods: the reverse-mode sensitivity methods other than the taped one, on the
    MLP (the judged comparisons are about the library's network)."""
    return res.mode == "reverse" and res.method != "ReverseMode" and res.model == MODEL_MLP


def judged(results: list[Result], hiddens: Sequence[int], batches: Sequence[int]) -> None:
    """The judged comparisons of the benchmark, printed."""
    by = {(r.method, r.hidden, r.batch): r.seconds for r in results}
    print("\n## Judged comparisons\n")
    print("DiscreteAdjoint vs ReverseMode (speedup t(ReverseMode) / t(DiscreteAdjoint)):")
    for batch in batches:
        cells = []
        for h in hiddens:
            ratio = _ratio(by.get(("ReverseMode", h, batch)), by.get(("DiscreteAdjoint", h, batch)))
            cells.append(f"H={h}: {'n/a' if ratio is None else f'{ratio:.1f}x'}")
        print(f"  B={batch}: " + ", ".join(cells))
    grads = {(r.method, r.hidden, r.batch): r.extra["grad"] for r in results if "grad" in r.extra}
    diffs = [
        rel_err(g, grads[("ReverseMode", h, batch)])
        for (name, h, batch), g in grads.items()
        if name == "DiscreteAdjoint" and ("ReverseMode", h, batch) in grads
    ]
    if diffs:
        print(
            f"  DiscreteAdjoint vs ReverseMode gradients: largest relative difference "
            f"{max(diffs):.1e} over {len(diffs)} cases (the same discrete gradient)"
        )
    print("\nFastest adjoint vs torchdiffeq (>= 5x odeint_adjoint, > 1x odeint wanted):")
    for batch in batches:
        for h in hiddens:
            adj = [
                r
                for r in results
                if (r.hidden, r.batch) == (h, batch) and is_adjoint(r) and r.seconds is not None
            ]
            if not adj:
                continue
            best = min(adj, key=lambda r: r.seconds)
            r_adj = _ratio(by.get((TDQ_ADJOINT, h, batch)), best.seconds)
            r_bp = _ratio(by.get((TDQ_ODEINT, h, batch)), best.seconds)
            if r_adj is None and r_bp is None:
                print(
                    f"  B={batch} H={h}: {best.method} {best.seconds * 1e3:.2f} ms "
                    "(torchdiffeq not measured)"
                )
                continue
            ok = (r_adj or 0) >= 5 and (r_bp or 0) > 1
            print(
                f"  B={batch} H={h}: {best.method} {best.seconds * 1e3:.2f} ms; "
                f"x odeint_adjoint {r_adj and f'{r_adj:.1f}'}, x odeint {r_bp and f'{r_bp:.1f}'}"
                f" -> {'met' if ok else 'NOT met'}"
            )


def user_f_cost(results: list[Result], hiddens: Sequence[int], batches: Sequence[int]) -> None:
    """The user-written network against the MLP, method by method (not judged)."""
    user = [r for r in results if r.model == MODEL_USER]
    if not user:
        return
    by = {(r.method, r.hidden, r.batch): r.seconds for r in results}
    print("\n## User-written f (autograd.numpy) vs nn.MLP: t(user f) / t(nn.MLP), same method\n")
    for batch in batches:
        for h in hiddens:
            cells = []
            for r in user:
                if (r.hidden, r.batch) != (h, batch):
                    continue
                slow = _ratio(r.seconds, by.get((r.base, h, batch)))
                cells.append(f"{r.base} {'n/a' if slow is None else f'{slow:.1f}x'}")
            if cells:
                print(f"  B={batch} H={h}: " + ", ".join(cells))


def crossover(
    results: list[Result],
    hiddens: Sequence[int],
    batches: Sequence[int],
    model: str = MODEL_MLP,
) -> None:
    """Where the fastest forward method stops beating the fastest reverse one (rows of
    ``model``)."""
    results = [r for r in results if r.model == model]
    if not results:
        return
    print(
        f"\n## Forward/adjoint crossover, {model} (fastest forward vs fastest reverse-mode "
        "method)\n"
    )
    for batch in batches:
        points = []
        for h in hiddens:
            here = [r for r in results if (r.hidden, r.batch) == (h, batch) and r.seconds]
            fwd = [r for r in here if r.mode == "forward"]
            rev = [r for r in here if r.mode == "reverse"]
            if not rev:
                continue
            best_r = min(rev, key=lambda r: r.seconds)
            params = here[0].n_params if here else 7 * h + 2
            if not fwd:
                points.append((params, None, best_r))
                print(
                    f"  B={batch} {params:6d} params: reverse {best_r.method} "
                    f"{best_r.seconds * 1e3:.2f} ms; no forward method measured"
                )
                continue
            best_f = min(fwd, key=lambda r: r.seconds)
            points.append((params, best_f.seconds / best_r.seconds, best_r))
            winner = "forward" if best_f.seconds < best_r.seconds else "reverse"
            print(
                f"  B={batch} {params:6d} params: forward {best_f.method} "
                f"{best_f.seconds * 1e3:.2f} ms, reverse {best_r.method} "
                f"{best_r.seconds * 1e3:.2f} ms -> {winner}"
            )
        print("  " + crossover_sentence(batch, points))


def crossover_sentence(batch: int, points: list[tuple[int, float | None, Result]]) -> str:
    """Crossover estimate, log-log interpolated between the neighbouring parameter counts."""
    ratios = [(n, q) for n, q, _ in points]
    for (n0, q0), (n1, q1) in zip(ratios, ratios[1:]):
        q1_eff = math.inf if q1 is None else q1
        if q0 is not None and q0 < 1 <= q1_eff:
            if q1 is None:
                return (
                    f"B={batch}: forward wins at {n0} parameters, adjoints from {n1} "
                    "(forward methods not measured there)"
                )
            x = math.log(n0) + (math.log(n1) - math.log(n0)) * (
                -math.log(q0) / (math.log(q1) - math.log(q0))
            )
            return (
                f"B={batch}: crossover at about {math.exp(x):.0f} parameters "
                f"(forward wins at {n0}, adjoints at {n1})"
            )
    if ratios and all(q is not None and q < 1 for _, q in ratios):
        return f"B={batch}: forward methods win at every measured size"
    if ratios and all(q is None or q >= 1 for _, q in ratios):
        return f"B={batch}: reverse-mode methods win at every measured size"
    return f"B={batch}: no single crossover (ratios {[(n, q) for n, q in ratios]})"


def plot(results: list[Result], batches: Sequence[int], path: Path) -> None:
    """Log-log PNG: seconds per gradient against parameter count, one panel per batch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(batches), figsize=(6.5 * len(batches), 5), squeeze=False)
    names = list(dict.fromkeys(r.method for r in results))
    markers = "osD^v<>ph*X"
    for ax, batch in zip(axes[0], batches, strict=True):
        for i, name in enumerate(names):
            pts = sorted(
                (r.n_params, r.seconds)
                for r in results
                if r.method == name and r.batch == batch and r.seconds
            )
            if not pts:
                continue
            xs, ys = zip(*pts, strict=True)
            style = (
                "--"
                if name.startswith("torchdiffeq")
                else (":" if name.endswith(USER_SUFFIX) else "-")
            )
            ax.loglog(xs, ys, style, marker=markers[i % len(markers)], label=name)
        ax.set_xlabel("parameters (5 H + 2)")
        ax.set_ylabel("seconds per gradient")
        ax.set_title(f"spiral neural ODE, batch {batch}, {SOLVER}/dopri5 rtol {RTOL:g}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"\nwrote {path}")


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: H = 16, 256; one repeat")
    ap.add_argument("--hidden", type=_ints, default=None, help="widths H (4,16,64,256,1024)")
    ap.add_argument("--batch", type=_ints, default=None, help="batch sizes B (1,64)")
    ap.add_argument(
        "--budget",
        type=float,
        default=None,
        help="skip a method predicted to take longer per gradient (60 s; quick 5 s)",
    )
    ap.add_argument("--no-torch", action="store_true", help="leave torchdiffeq out")
    ap.add_argument(
        "--no-user-f",
        action="store_true",
        help="leave out the rows of the user-written autograd.numpy network",
    )
    ap.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="time with the process's CPU time (default; robust on a shared machine) or wall",
    )
    ap.add_argument(
        "--system-malloc",
        action="store_true",
        help="leave glibc's malloc thresholds alone (see keep_freed_memory)",
    )
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = ap.parse_args(argv)
    CLOCK["name"] = args.clock
    malloc_note = "malloc settings unchanged (--system-malloc)"
    if not args.system_malloc:
        malloc_note = keep_freed_memory()
    hiddens = args.hidden or ([16, 256] if args.quick else [4, 8, 16, 32, 64, 256, 1024])
    batches = args.batch or [1, 64]
    budget = args.budget or (5.0 if args.quick else 60.0)

    reg = ade.registry()
    methods = sorted(reg.sensitivities(), key=lambda s: (s.mode, s.name))
    torch_mods, torch_note = torch_modules(not args.no_torch, "left out (--no-torch)")
    print(
        f"autodiffeq {ade.__version__}, numpy {np.__version__}, Python "
        f"{platform.python_version()}; OPENBLAS_NUM_THREADS="
        f"{os.environ.get('OPENBLAS_NUM_THREADS')}"
    )
    print(f"sensitivity methods: {', '.join(f'{s.name} ({s.mode})' for s in methods)}")
    print(f"torchdiffeq: {torch_note}")
    print(
        "models: nn.MLP"
        + ("" if args.no_user_f else f", user-written autograd.numpy f (rows '...{USER_SUFFIX}')")
    )
    print(f"H = {hiddens}, B = {batches}, budget {budget:g} s per gradient, {args.clock} clock")
    print(f"memory: {malloc_note}")

    start = time.perf_counter()
    results: list[Result] = []
    previous: dict[tuple[str, int], tuple[int, float]] = {}
    for batch in batches:
        for h in hiddens:
            results += run_case(
                make_case(h, batch),
                methods,
                torch_mods,
                budget,
                previous,
                args.quick,
                user_f=not args.no_user_f,
            )

    headers, rows = tables(results, batches)
    judged(results, hiddens, batches)
    user_f_cost(results, hiddens, batches)
    crossover(results, hiddens, batches, MODEL_MLP)
    crossover(results, hiddens, batches, MODEL_USER)
    write_csv(args.out / "gradients.csv", headers, rows)
    plot(results, batches, args.out / "gradients.png")
    print(f"wrote {args.out / 'gradients.csv'}; total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
