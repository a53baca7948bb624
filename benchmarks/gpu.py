"""GPU benchmark: autodiffeq on a GPU array backend (CuPy) against GPU peers and CPU baselines.

Run from the repository root (on a machine with an NVIDIA GPU, CuPy and autograd)::

    python benchmarks/gpu.py                          # all three parts, full sizes
    python benchmarks/gpu.py --quick                  # small sizes (a smoke run)
    python benchmarks/gpu.py --parts ensemble,stiff   # a subset of the parts
    python benchmarks/gpu.py --budget 180             # stop each part in time (seconds)
    python benchmarks/gpu.py --quick --backend numpy  # the same code on the CPU (smoke test)

``--backend`` (default ``cupy``) is the autodiffeq backend under test. When it is not usable
here (no GPU, CuPy missing) the script says why and runs only the peers and CPU baselines.
The peers are optional: a peer that does not import (JAX/diffrax, torch/torchdiffeq) is
skipped with a message. Each part runs inside ``try/except``: an exception is printed with
its traceback and the next part runs.

**1. Ensemble** (``--parts ensemble``). Lotka–Volterra ``u' = [a x - b x y, -c y + d x y]``,
``p = (1.5, 1, 3, 1)``, ``t in [0, 10]``; trajectory ``i`` gets its own ``p`` (each entry
scaled by ``uniform(0.9, 1.1)``) and its own ``u0`` (uniform in ``[0.5, 1.5]^2``), drawn as in
``benchmarks/ensemble.py`` (NumPy ``default_rng(20240601)``; one draw for the largest size,
the smaller sizes take its first trajectories). Saved at ``t = 0, 2, 4, 6, 8, 10``; ``Tsit5``,
``rtol = 1e-6``, ``atol = 1e-8``. autodiffeq gets one ``f`` written with ``u[..., i]`` /
``p[..., j]`` indexing and ``u``'s own array namespace (so it runs on CuPy), and
``prob_func(prob, i, repeat) = prob.remake(u0=U0[i], p=P[i])`` with NumPy data (the backend
moves the stacked batch to the device)::

    ade.solve(ade.EnsembleProblem(prob, prob_func=...), "Tsit5", trajectories=N,
              ensemble="vectorized", backend=BACKEND, saveat=ts, rtol=1e-6, atol=1e-8)

every trajectory with its own adaptive steps. Rows:

- autodiffeq on ``--backend`` at ``--ensemble-sizes`` (default 10^5 and 10^6; ``--quick``
  1,000 and 4,000), after an untimed warm-up solve of 1,000 trajectories (CuPy compiles its
  kernels on first use);
- autodiffeq on the NumPy backend (this machine's CPU, one process) at ``--cpu-size``
  (default 10^4; ``--quick`` 2,000): its rate per trajectory is the CPU baseline;
- diffrax ``Tsit5`` with ``PIDController(rtol, atol)``, ``SaveAt(ts=ts)``, float64,
  ``jax.jit(jax.vmap(solve))`` over ``(u0, p)`` on JAX's default device (the GPU when
  jax-cuda is installed), at the ensemble sizes. The first call of each size compiles: its
  time less a run's is reported as ``compile s`` and not counted; the inputs are on the
  device before the clock starts and the clock stops at ``block_until_ready`` (the results
  stay on the device, as autodiffeq's do).

Order: the CPU baseline, the warm-up, then for each size autodiffeq and diffrax (so that the
pairs are comparable even when the largest size does not fit the time). ``x CPU`` = traj/s
over the CPU baseline's. NumPy's rate per trajectory falls as ``N`` grows (on a 2-core VM:
about 11,800 traj/s at 10^4 and 6,000 at 10^5, memory traffic), so the baseline at 10^4 is
the CPU near its best.

Seconds are the wall time of the whole ``ade.solve`` call (``prob_func`` for every
trajectory, the batch stepping, building the ``N`` solutions; the garbage collector off, as
in ``ensemble.py``), the GPU synchronised before the clock stops. ``traj/s`` = trajectories
per second; ``steps`` = the sum over the trajectories of their steps (accepted + rejected:
``sol.stats.nsteps``; diffrax: ``num_steps``) and ``steps/s`` that sum per second. The cost of
``prob_func`` alone (host Python, per trajectory) is printed apart. **Accuracy**: 32
trajectories spread over the smallest size against SciPy ``DOP853`` at ``rtol = 1e-12``,
``atol = 1e-14``; ``max rel err`` = ``max |u - u_ref| / max(|u_ref|, 1e-6)``. A size whose time
predicted from the previous size (linearly) exceeds the part's remaining time is skipped with
a message.

**2. Neural ODE gradient** (``--parts gradient``). The spiral network of
``benchmarks/gradients.py``: ``u' = tanh(u^3 W1 + b1) W2 + b2`` (``2 -> H -> 2``, the layout and
Glorot weights of ``autodiffeq.nn.MLP((2, H, 2), activation="tanh", input_transform="cube")``
from seed 0, ``5 H + 2`` parameters), ``H = --hidden`` (1024; ``--quick`` 32), state ``(B, 2)``
with ``B = --batch`` (1024; ``--quick`` 16) initial points on a ring of radius 1.5-2,
``t in [0, 1.5]``, 20 saved times, ``Tsit5`` with ``rtol = 1e-6``, ``atol = 1e-8``; loss the
sum of squared differences from data of ``u' = A u^3``. One gradient of the loss with respect
to the parameters (``autograd.grad`` through ``ade.solve(..., sensealg="DiscreteAdjoint",
backend=BACKEND)``) is timed for ``nn.MLP`` itself (its forward pass and products use the
state's array library on a non-NumPy backend); only when that fails (reported with the error)
for the same network written with ``u``'s array namespace (:class:`XPSpiral`). Peers: torchdiffeq
``odeint`` (backpropagation through the solver) and ``odeint_adjoint``, ``dopri5``, the same
tolerances, float64, the same weights, on CUDA when torch sees a GPU (else on one CPU
thread, as in ``gradients.py``). Timing: one warm-up
call, then the median of ``--repeats`` calls (5; ``--quick`` 2; only the warm-up when it
takes over 5 s, ``--quick`` 1 s), garbage collected before each, GPU synchronised before the
clock starts and stops (``cupy.cuda.Device().synchronize()``,
``torch.cuda.synchronize()``); wall clock. ``rel diff`` = ``|g - g_0| / |g_0|`` against the
first autodiffeq gradient (tolerance-level differences are expected between libraries).

**3. Large stiff problem** (``--parts stiff``). The 2-D Brusselator of
``benchmarks/stiff_problems.py`` (SciML's parameters, ``A = 3.4, B = 1, alpha = 10``, periodic
grid, forcing from ``t = 1.1``) on an ``N x N`` grid (``2 N^2`` states), ``N = --stiff-n``
(256; ``--quick`` 32), ``t in [0, --stiff-t1]`` (11.5), ``rtol = atol = 1e-6``. autodiffeq
``Rodas5P`` on ``--backend`` with ``ODEProblem(jac_prototype=pattern)`` (sparse
finite-difference Jacobian by column colouring; the right-hand side written with ``u``'s
namespace, the Laplacian with ``roll``: :class:`XPBrusselator`, checked against
``stiff_problems.brusselator``) against SciPy ``solve_ivp(method="BDF",
jac_sparsity=pattern)`` on the CPU, one timed call each (autodiffeq after an untimed warm-up
solve at ``N = 16``). **Time guard**: both need a sparse LU per step (on the CuPy backend
SuperLU factors ``W`` on the host and the triangular solves run on the device), so the
script first solves ``N = 32`` with both on the CPU (their factorisation counts, which
barely change with ``N``), times one SuperLU factorisation of ``W = I - 0.05 J`` at ``N = 32``
and 64, extrapolates it to ``N`` (the measured growth per doubling, about 10-12x) and predicts
each solve as ``count x that time``; when the predictions exceed the part's remaining time it
halves ``N`` (down to 32) and says so. (One factorisation at ``N = 256``, 131,072 states,
took about 10 s on a 2-core VM, and Rodas5P factors about 190 times: ``N = 256`` needs a
budget of half an hour or more per solve there.) A solve that still runs past the remaining
time is stopped (``SIGALRM``) and reported. ``diff vs BDF`` =
``max |u_Rodas5P(t1) - u_BDF(t1)| / max |u_BDF(t1)|``.

**Budget.** ``--budget S`` (seconds, default none) splits the time among the selected parts
by the weights ensemble 50, gradient 15, stiff 35: each part gets its weight's share of the
time left when it starts among the parts still to run (so the last part gets all that is
left, and time a part does not use goes to the next ones); large sizes are skipped by
prediction and calls are stopped by ``SIGALRM`` past their part's time (a call inside
compiled code stops when it returns).

**Outputs**: the machine (GPU name from ``cupy.cuda.runtime.getDeviceProperties(0)``, CUDA
runtime/driver, library versions, JAX and torch devices) first, one table per part on stdout,
and ``gpu.csv`` in ``--out`` (default ``benchmarks/results/``) with every row, rewritten after
each part. Exit status 0 when every selected part ran, 1 when one raised, 2 when
``--backend`` is unusable here (the peers still run).
"""

from __future__ import annotations

import os

# JAX would otherwise take 75 % of the GPU's memory when it starts, starving CuPy and torch
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import gc  # noqa: E402
import importlib.metadata  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import stiff_problems as sp_bench  # noqa: E402
from _common import format_table, write_csv  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402

import autodiffeq as ade  # noqa: E402

PARTS = ("ensemble", "gradient", "stiff")
#: share of the remaining budget a part gets when it starts (normalised over the parts left)
SHARES = {"ensemble": 0.50, "gradient": 0.15, "stiff": 0.35}

# ensemble (Lotka–Volterra), as benchmarks/ensemble.py
P_NOMINAL = np.array([1.5, 1.0, 3.0, 1.0])
LV_TSPAN = (0.0, 10.0)
LV_TS = np.linspace(0.0, 10.0, 6)
LV_RTOL, LV_ATOL = 1e-6, 1e-8
LV_SEED = 20240601
LV_REF_RTOL, LV_REF_ATOL = 1e-12, 1e-14
LV_CHECKED = 32
REL_FLOOR = 1e-6
WARMUP_TRAJ = 1000

# neural ODE gradient (the spiral of benchmarks/gradients.py)
A_TRUE = np.array([[-0.1, 2.0], [-2.0, -0.1]])
NODE_TSPAN = (0.0, 1.5)
NODE_TS = np.linspace(*NODE_TSPAN, 20)
NODE_RTOL, NODE_ATOL = 1e-6, 1e-8

# stiff (Brusselator 2-D, benchmarks/stiff_problems.py)
STIFF_TOL = 1e-6
STIFF_MIN_N = 32

CSV_HEADERS = (
    "part", "library", "method", "backend_device", "size", "size_what", "timed",
    "seconds", "units_per_s", "steps", "steps_per_s", "compile_s", "err", "err_what", "note",
)


# =========================================================================== plumbing
class OutOfTime(BaseException):
    """A call ran past the time its part had left (the time guard). A ``BaseException``, as
    ``KeyboardInterrupt``, so that no ``except Exception`` inside a library turns it into
    another error on its way out."""


class Clock:
    """Seconds left of a time allowance (``inf`` without one)."""

    def __init__(self, seconds: float | None) -> None:
        self.start = time.perf_counter()
        self.seconds = math.inf if seconds is None else float(seconds)

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)


@contextlib.contextmanager
def time_limit(seconds: float, what: str) -> Iterator[None]:
    """Raise :class:`OutOfTime` in this (main) thread after ``seconds`` (``SIGALRM``; a call
    inside compiled code is interrupted when it returns to Python). Nests: an enclosing
    limit that is shorter wins, and it is re-armed on the way out."""
    outer = signal.getitimer(signal.ITIMER_REAL)[0]  # 0.0: no enclosing limit
    if not math.isfinite(seconds) and not outer:
        yield
        return
    if seconds <= 0.5:
        raise OutOfTime(f"{what}: no time left in this part")
    if outer and outer <= seconds:  # the enclosing limit comes first: it stays in charge
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise OutOfTime(f"{what}: stopped by the time guard after {seconds:.0f} s")

    start = time.perf_counter()
    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if outer:
            signal.setitimer(signal.ITIMER_REAL,
                             max(outer - (time.perf_counter() - start), 0.001))


def namespace(x: Any) -> Any:
    """The array namespace to compute with on ``x``: :func:`autodiffeq.array_namespace`
    (``cupy`` for CuPy arrays, which define no ``__array_namespace__``; ``autograd.numpy``
    for NumPy arrays)."""
    return ade.array_namespace(x)


class Backend:
    """The autodiffeq backend under test: name, whether usable (and why not), its array
    namespace, how to synchronise its device and copy to the host."""

    def __init__(self, name: str) -> None:
        self.name = name
        reg = ade.registry()
        try:
            self.reason = reg.backend(name).unavailable_reason()
        except Exception as exc:  # noqa: BLE001 - an unknown name is reported, not raised
            self.reason = f"{type(exc).__name__}: {exc}"
        self.be: Any = None
        self.device = "?"
        if self.reason is None:
            try:
                self.be = reg.get_backend(name)
                self.device = getattr(self.be, "device", "?")
            except Exception as exc:  # noqa: BLE001
                self.reason = f"{type(exc).__name__}: {exc}"

    @property
    def usable(self) -> bool:
        return self.reason is None

    @property
    def label(self) -> str:
        return f"{self.name} ({self.device})"

    def sync(self) -> None:
        if self.be is not None and self.be.xp.__name__.startswith("cupy"):
            self.be.xp.cuda.Device().synchronize()

    def host(self, x: Any) -> np.ndarray:
        return np.asarray(self.be.to_host(x)) if self.be is not None else np.asarray(x)

    def free(self) -> None:
        """Hand CuPy's pooled memory back (between parts, for the peers)."""
        if self.be is not None and self.be.xp.__name__.startswith("cupy"):
            self.sync()
            self.be.xp.get_default_memory_pool().free_all_blocks()


def row(part: str, library: str, method: str, device: str, size: int, size_what: str,
        **kw: Any) -> dict[str, Any]:
    r: dict[str, Any] = {h: None for h in CSV_HEADERS}
    r.update(part=part, library=library, method=method, backend_device=device, size=size,
             size_what=size_what, note="")
    r.update(kw)
    return r


def timed_call(fn: Callable[[], Any], sync: Callable[[], None],
               gc_off: bool = False) -> tuple[float, Any]:
    """Wall seconds of one call of ``fn`` (garbage collected first; the device synchronised
    before the clock starts and before it stops) and its result."""
    gc.collect()
    sync()
    if gc_off:
        gc.disable()
    try:
        start = time.perf_counter()
        out = fn()
        sync()
        return time.perf_counter() - start, out
    finally:
        if gc_off:
            gc.enable()


def table(headers: tuple[str, ...], cells: list[list[Any]]) -> str:
    """:func:`_common.format_table`, or a line saying there is nothing to show."""
    return format_table(headers, cells) if cells else "(no rows: nothing was measured)"


def versions_line() -> str:
    parts = [f"python {platform.python_version()}"]
    for dist in ("autodiffeq", "numpy", "scipy", "autograd", "cupy-cuda13x", "cupy-cuda12x",
                 "cupy-cuda11x", "cupy", "jax", "jaxlib", "diffrax", "torch", "torchdiffeq"):
        try:
            parts.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            if not dist.startswith("cupy"):
                parts.append(f"{dist} -")
    return ", ".join(parts)


def machine_info(backend: Backend, out: Callable[[str], None]) -> None:
    out(f"machine: {platform.node()}, {platform.platform()}, {os.cpu_count()} CPUs")
    out(f"versions: {versions_line()}")
    try:
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"]
        name = name.decode() if isinstance(name, bytes) else name
        rt = cupy.cuda.runtime.runtimeGetVersion()
        drv = cupy.cuda.runtime.driverGetVersion()
        out(f"GPU: {name}, {props['totalGlobalMem'] / 2**30:.1f} GiB, "
            f"{cupy.cuda.runtime.getDeviceCount()} device(s); CUDA runtime "
            f"{rt // 1000}.{rt % 1000 // 10}, driver {drv // 1000}.{drv % 1000 // 10}; "
            f"CuPy {cupy.__version__}")
    except Exception as exc:  # noqa: BLE001 - no GPU is a normal case here
        out(f"GPU: none usable through CuPy ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})")
    out(f"autodiffeq backends available: {ade.registry().available_backends()}")
    if backend.usable:
        out(f"backend under test: {backend.label}")
    else:
        out(f"backend under test: {backend.name!r} is NOT usable here: {backend.reason}; "
            f"its rows are skipped, the peers and CPU baselines still run")


# =========================================================================== 1. ensemble
def lv(u: Any, p: Any, t: Any) -> Any:
    """Lotka–Volterra for one trajectory or a batch (``...`` indexing, ``u``'s namespace)."""
    xp = namespace(u)
    x, y = u[..., 0], u[..., 1]
    a, b, c, d = p[..., 0], p[..., 1], p[..., 2], p[..., 3]
    return xp.stack([a * x - b * x * y, -c * y + d * x * y], axis=-1)


def lv_plain(t: float, u: Any, a: float, b: float, c: float, d: float) -> Any:
    x, y = u
    return np.array([a * x - b * x * y, -c * y + d * x * y])


class Remake:
    """``prob_func``: trajectory ``i`` gets ``u0 = U0[i]``, ``p = P[i]`` (host NumPy)."""

    def __init__(self, U0: np.ndarray, P: np.ndarray) -> None:
        self.U0, self.P = U0, P

    def __call__(self, prob: Any, i: int, repeat: int) -> Any:
        return prob.remake(u0=self.U0[i], p=self.P[i])


def lv_data(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(U0, P)`` for ``n`` trajectories, drawn as ``benchmarks/ensemble.py`` draws them."""
    rng = np.random.default_rng(LV_SEED)
    P = P_NOMINAL * rng.uniform(0.9, 1.1, (n, 4))
    U0 = rng.uniform(0.5, 1.5, (n, 2))
    return U0, P


def lv_reference(U0: np.ndarray, P: np.ndarray, idx: np.ndarray) -> np.ndarray:
    out = np.empty((len(idx), len(LV_TS), 2))
    for k, i in enumerate(idx):
        r = solve_ivp(lv_plain, LV_TSPAN, U0[i], method="DOP853", t_eval=LV_TS,
                      rtol=LV_REF_RTOL, atol=LV_REF_ATOL, args=tuple(P[i]))
        if not r.success:
            raise RuntimeError(f"reference solve {i} failed: {r.message}")
        out[k] = r.y.T
    return out


def rel_err(u: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(u - ref) / np.maximum(np.abs(ref), REL_FLOOR)))


def ensemble_part(args: argparse.Namespace, backend: Backend, clock: Clock,
                  out: Callable[[str], None]) -> list[dict[str, Any]]:
    sizes = sorted(args.ensemble_sizes)
    n_max = max(sizes + [args.cpu_size])
    U0, P = lv_data(n_max)
    n_min = min(sizes + [args.cpu_size])
    idx = np.unique(np.linspace(0, n_min - 1, min(LV_CHECKED, n_min)).astype(int))
    t0 = time.perf_counter()
    ref = lv_reference(U0, P, idx)
    out(f"reference: SciPy DOP853 rtol {LV_REF_RTOL:g} for {len(idx)} trajectories "
        f"({time.perf_counter() - t0:.1f} s)")
    prob = ade.ODEProblem(lv, U0[0], LV_TSPAN, P[0])
    opts = dict(saveat=LV_TS, rtol=LV_RTOL, atol=LV_ATOL)
    rows: list[dict[str, Any]] = []

    # the host cost of prob_func alone (what every trajectory costs before any stepping)
    k = min(n_max, 10_000)
    pf = Remake(U0, P)
    t0 = time.perf_counter()
    for i in range(k):
        pf(prob, i, 0)
    per_traj = (time.perf_counter() - t0) / k
    out(f"prob_func (prob.remake(u0=..., p=...)) alone: {per_traj * 1e6:.1f} us per trajectory "
        f"on the host ({per_traj * max(sizes):.1f} s of a {max(sizes):,}-trajectory solve)")

    def ade_run(be: Backend, n: int, what: str) -> dict[str, Any]:
        eprob = ade.EnsembleProblem(prob, prob_func=Remake(U0[:n], P[:n]))
        with time_limit(clock.left(), f"autodiffeq {what} N={n}"):
            secs, esol = timed_call(lambda: ade.solve(
                eprob, "Tsit5", trajectories=n, ensemble="vectorized", backend=be.name,
                **opts), be.sync, gc_off=True)
        steps = sum(int(s.stats.nsteps) for s in esol)
        failed = sum(r not in ("Success", "Terminated") for r in esol.retcodes)
        u = np.stack([be.host(esol[int(i)].u) for i in idx])
        err = rel_err(u, ref)
        del esol
        be.free()
        out(f"  autodiffeq {what}: {n:,} trajectories in {secs:.3f} s "
            f"({n / secs:,.0f} traj/s, {steps / secs:.3g} steps/s, max rel err {err:.1e})")
        return row("ensemble", "autodiffeq", "Tsit5", f"vectorized, {what}", n, "trajectories",
                   timed=n, seconds=secs, units_per_s=n / secs, steps=steps,
                   steps_per_s=steps / secs, err=err, err_what="max rel err vs DOP853",
                   note=f"1 call, gc off; {steps / n:.0f} steps/trajectory"
                        + (f"; {failed} FAILED" if failed else ""))

    #: per runner: the last (size, seconds) it measured, for the prediction of the next size
    last: dict[str, tuple[int, float]] = {}

    def attempt(key: str, library: str, what: str, n: int,
                run: Callable[[int], dict[str, Any]], extra: float = 0.0) -> None:
        """Run ``run(n)`` unless its time predicted from the previous size (plus ``extra``,
        e.g. a compile) exceeds the part's time left; record the row or why not."""
        if key in last:
            n0, s0 = last[key]
            predicted = s0 * n / n0 + extra
            if predicted > clock.left():
                msg = (f"skipped: predicted {predicted:.0f} s (from N = {n0:,}) > "
                       f"{clock.left():.0f} s left in this part")
                out(f"  {library} {what} N={n:,} {msg}")
                rows.append(row("ensemble", library, "Tsit5", what, n, "trajectories",
                                note=msg))
                return
        try:
            r = run(n)
        except OutOfTime as exc:
            out(f"  {exc}")
            rows.append(row("ensemble", library, "Tsit5", what, n, "trajectories",
                            note=str(exc)))
            last[key] = (1, math.inf)  # no larger size after a stop
            return
        rows.append(r)
        last[key] = (n, r["seconds"] + (r["compile_s"] or 0.0))

    # the CPU baseline first (cheap): autodiffeq on NumPy
    cpu = Backend("numpy")
    ade.solve(ade.EnsembleProblem(prob, prob_func=Remake(U0, P)), "Tsit5",
              trajectories=min(WARMUP_TRAJ, args.cpu_size), ensemble="vectorized",
              backend="numpy", **opts)
    attempt("cpu", "autodiffeq", "vectorized, numpy, CPU baseline", args.cpu_size,
            lambda n: ade_run(cpu, n, "numpy, CPU baseline"))

    if backend.usable:
        t0 = time.perf_counter()
        ade.solve(ade.EnsembleProblem(prob, prob_func=Remake(U0, P)), "Tsit5",
                  trajectories=min(WARMUP_TRAJ, n_max), ensemble="vectorized",
                  backend=backend.name, **opts)
        backend.sync()
        backend.free()
        out(f"  warm-up on {backend.label}: {min(WARMUP_TRAJ, n_max)} trajectories, "
            f"{time.perf_counter() - t0:.2f} s (not counted)")
    else:
        out(f"  autodiffeq on {backend.name!r} skipped: {backend.reason}")
    drx = DiffraxRunner(U0, P, idx, ref, clock, out)
    if drx.reason:
        out(f"  diffrax skipped: {drx.reason}")
    # each size: autodiffeq on the backend, then diffrax (comparable pairs even when the
    # largest size does not fit)
    for n in sizes:
        if backend.usable:
            attempt("ade", "autodiffeq", f"vectorized, {backend.label}", n,
                    lambda n: ade_run(backend, n, backend.label))
        if not drx.reason:
            attempt("diffrax", "diffrax", drx.label, n, drx.run,
                    extra=drx.compile_estimate)

    base = next((r for r in rows if r["backend_device"] == "vectorized, numpy, CPU baseline"
                 and r["seconds"]), None)
    for r in rows:
        if base and r["units_per_s"]:
            r["x_cpu"] = r["units_per_s"] / base["units_per_s"]
    out(f"\nLotka–Volterra ensemble: Tsit5, rtol {LV_RTOL:g}, atol {LV_ATOL:g}, "
        f"{len(LV_TS)} saved times, own adaptive steps per trajectory; x CPU = traj/s over "
        f"autodiffeq NumPy's on this CPU (at N = {args.cpu_size:,})")
    out(table(
        ("library", "backend / mode", "N", "seconds", "traj/s", "x CPU", "steps", "steps/s",
         "compile s", "max rel err", "note"),
        [[r["library"], r["backend_device"], r["size"], r["seconds"], r["units_per_s"],
          r.get("x_cpu"), r["steps"], r["steps_per_s"], r["compile_s"], r["err"], r["note"]]
         for r in rows]))
    return rows


class DiffraxRunner:
    """diffrax ``Tsit5`` under ``jax.jit(jax.vmap(solve))`` on JAX's default device;
    ``reason`` says why not when JAX or diffrax does not import."""

    def __init__(self, U0: np.ndarray, P: np.ndarray, idx: np.ndarray, ref: np.ndarray,
                 clock: Clock, out: Callable[[str], None]) -> None:
        self.U0, self.P, self.idx, self.ref, self.clock, self.out = U0, P, idx, ref, clock, out
        self.reason: str | None = None
        self.label = "jit(vmap)"
        self.compile_estimate = 0.0
        try:
            import diffrax
            import jax
            import jax.numpy as jnp
        except Exception as exc:  # noqa: BLE001 - any import failure means: skip the peer
            self.reason = f"it does not import ({type(exc).__name__}: {exc})"
            return
        jax.config.update("jax_enable_x64", True)
        self.jax = jax
        self.dev = jax.devices()[0]
        self.label = (f"jit(vmap), {self.dev.platform} "
                      f"({getattr(self.dev, 'device_kind', self.dev.platform)})")

        def vf(t: Any, y: Any, p: Any) -> Any:
            x, yy = y[0], y[1]
            return jnp.stack([p[0] * x - p[1] * x * yy, -p[2] * yy + p[3] * x * yy])

        term = diffrax.ODETerm(vf)
        ts = jnp.asarray(LV_TS)

        def one(u0: Any, p: Any) -> Any:
            sol = diffrax.diffeqsolve(
                term, diffrax.Tsit5(), LV_TSPAN[0], LV_TSPAN[1], None, u0, args=p,
                saveat=diffrax.SaveAt(ts=ts),
                stepsize_controller=diffrax.PIDController(rtol=LV_RTOL, atol=LV_ATOL),
                max_steps=16384)
            return (sol.ys, sol.stats["num_steps"], sol.stats["num_accepted_steps"],
                    sol.result == diffrax.RESULTS.successful)

        self.fn = jax.jit(jax.vmap(one))

    def run(self, n: int) -> dict[str, Any]:
        jax, fn = self.jax, self.fn
        with time_limit(self.clock.left(), f"diffrax N={n}"):
            U0d = jax.device_put(self.U0[:n], self.dev)
            Pd = jax.device_put(self.P[:n], self.dev)

            def call() -> Any:
                return jax.block_until_ready(fn(U0d, Pd))

            first, _ = timed_call(call, lambda: None)  # compiles for this shape
            secs, res = timed_call(call, lambda: None)
        ys, nsteps, _nacc, ok = (np.asarray(a) for a in res)
        del res
        steps = int(nsteps.sum())
        err = rel_err(ys[self.idx], self.ref)
        compile_s = max(first - secs, 0.0)
        self.compile_estimate = compile_s
        self.out(f"  diffrax {self.label}: {n:,} trajectories in {secs:.3f} s "
                 f"({n / secs:,.0f} traj/s, {steps / secs:.3g} steps/s, max rel err "
                 f"{err:.1e}); compile {compile_s:.1f} s apart")
        return row("ensemble", "diffrax", "Tsit5", self.label, n, "trajectories", timed=n,
                   seconds=secs, units_per_s=n / secs, steps=steps, steps_per_s=steps / secs,
                   compile_s=compile_s, err=err, err_what="max rel err vs DOP853",
                   note=f"2nd call (1st compiles); I controller; {steps / n:.0f} "
                        f"steps/trajectory" + ("" if ok.all() else
                                               f"; {int((~ok).sum())} FAILED"))


# =========================================================================== 2. gradient
def ring_states(batch: int) -> np.ndarray:
    """``(B, 2)`` initial states as ``benchmarks/gradients.py``: ``(2, 0)`` for one spiral,
    else points on a ring of radius 1.5-2."""
    if batch == 1:
        return np.array([[2.0, 0.0]])
    angle = np.linspace(0.0, 2 * np.pi, batch, endpoint=False)
    radius = np.linspace(1.5, 2.0, batch)
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)


def true_dynamics(u: Any, p: Any, t: Any) -> Any:
    return u**3 @ A_TRUE.T


class XPSpiral:
    """``f(u, p, t) = tanh(u^3 W1 + b1) W2 + b2`` computed with ``u``'s array namespace (runs
    on any backend), flat ``p`` in ``nn.MLP((2, H, 2), input_transform="cube")``'s layout:
    ``W1`` (2, H) row-major, ``b1``, ``W2`` (H, 2), ``b2``."""

    def __init__(self, hidden: int) -> None:
        self.hidden = hidden

    def __call__(self, u: Any, p: Any, t: Any) -> Any:
        xp, h = namespace(u), self.hidden
        W1 = xp.reshape(p[: 2 * h], (2, h))
        W2 = xp.reshape(p[3 * h : 5 * h], (h, 2))
        return xp.tanh((u**3) @ W1 + p[2 * h : 3 * h]) @ W2 + p[5 * h : 5 * h + 2]


def measure(fn: Callable[[], Any], sync: Callable[[], None], repeats: int, clock: Clock,
            what: str, alone: float = 5.0) -> tuple[float, int, Any]:
    """``(median seconds, timed calls, result)``: a warm-up call, then ``repeats`` calls (fewer
    when the time left would not hold them; only the warm-up when it takes over ``alone``
    seconds)."""
    with time_limit(clock.left(), what):
        first, res = timed_call(fn, sync)
    if first > alone or first <= 0.0:
        return first, 0, res
    room = clock.left() - 1.0
    k = repeats if not math.isfinite(room) else min(repeats, int(max(room, 0.0) / first))
    if k < 1:
        return first, 0, res
    samples = []
    with time_limit(clock.left(), what):
        for _ in range(k):
            secs, res = timed_call(fn, sync)
            samples.append(secs)
    return statistics.median(samples), k, res


def gradient_part(args: argparse.Namespace, backend: Backend, clock: Clock,
                  out: Callable[[str], None]) -> list[dict[str, Any]]:
    import autograd.numpy as anp
    from autograd import grad

    from autodiffeq.nn import MLP

    H, B = args.hidden, args.batch
    mlp = MLP((2, H, 2), activation="tanh", input_transform="cube")
    p0 = mlp.init(seed=0)
    u0 = ring_states(B)
    truth = ade.solve(ade.ODEProblem(true_dynamics, u0, NODE_TSPAN), "Tsit5", saveat=NODE_TS,
                      rtol=1e-10, atol=1e-12)
    data = np.asarray(truth.u)
    xpnet = XPSpiral(H)
    probe = ring_states(3) * 0.7
    if not np.allclose(xpnet(probe, p0, 0.0), mlp(probe, p0, 0.0), rtol=1e-12, atol=1e-14):
        raise AssertionError("XPSpiral differs from nn.MLP")
    n_params = mlp.n_params
    out(f"spiral neural ODE: 2 -> {H} -> 2 tanh, {n_params} parameters, state ({B}, 2), "
        f"{len(NODE_TS)} saved times, Tsit5 rtol {NODE_RTOL:g} atol {NODE_ATOL:g}; "
        f"gradient of the sum of squares w.r.t. the parameters")
    rows: list[dict[str, Any]] = []
    g_first: list[np.ndarray] = []

    def diff(g: np.ndarray) -> float | None:
        if not g_first:
            g_first.append(g)
            return 0.0
        return float(np.linalg.norm(g - g_first[0]) / np.linalg.norm(g_first[0]))

    def add(library: str, method: str, device: str, secs: float, k: int, g: np.ndarray,
            nf: int | None, note: str) -> None:
        d = diff(g)
        out(f"  {library} {method} [{device}]: {secs:.3f} s per gradient "
            f"({'median of ' + str(k) if k else 'warm-up call only'}), rel diff {d:.1e}")
        rows.append(row("gradient", library, method, device, n_params, "parameters", timed=k,
                        seconds=secs, units_per_s=1.0 / secs, steps=nf, err=d,
                        err_what="rel diff vs first autodiffeq gradient",
                        note=(f"median of {k} after a warm-up" if k else
                              "warm-up call only (too slow to repeat)")
                        + (f"; {note}" if note else "")))

    if backend.usable:
        be = backend.be
        data_b = be.asarray(data)
        u0_b = u0  # host NumPy: the backend moves it to the device once per solve
        for label, rhs in (("nn.MLP", mlp), ("array-API net", xpnet)):
            prob_fwd = ade.ODEProblem(rhs, u0_b, NODE_TSPAN, p0)
            try:
                with time_limit(clock.left(), f"{label} forward"):
                    sol = ade.solve(prob_fwd, "Tsit5", saveat=NODE_TS, tstops=NODE_TS,
                                    rtol=NODE_RTOL, atol=NODE_ATOL, backend=backend.name)
                nf, nsteps = int(sol.stats.nf), int(sol.stats.nsteps)
            except OutOfTime:
                raise
            except Exception as exc:  # noqa: BLE001 - e.g. nn.MLP off NumPy: reported
                msg = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                out(f"  autodiffeq {label} on {backend.label}: cannot run: {msg}")
                rows.append(row("gradient", "autodiffeq", f"DiscreteAdjoint, {label}",
                                backend.label, n_params, "parameters",
                                note=f"cannot run: {msg}"))
                continue

            def loss(p: Any, rhs: Any = rhs) -> Any:
                prob = ade.ODEProblem(rhs, u0_b, NODE_TSPAN, p)
                s = ade.solve(prob, "Tsit5", saveat=NODE_TS, rtol=NODE_RTOL, atol=NODE_ATOL,
                              sensealg="DiscreteAdjoint", backend=backend.name)
                # under autograd the saved states come back as a host NumPy array (boxed;
                # autodiffeq.sensitivity's primitive copies them to the host); CuPy refuses
                # NumPy operands, so the data are taken on the side the states are on
                on_host = isinstance(getattr(s.u, "_value", s.u), np.ndarray)
                return anp.sum((s.u - (data if on_host else data_b)) ** 2)

            gfn = grad(loss)
            try:
                secs, k, g = measure(lambda gfn=gfn: gfn(p0), backend.sync, args.repeats,
                                     clock, f"autodiffeq {label} gradient", args.alone)
            except OutOfTime as exc:
                out(f"  {exc}")
                rows.append(row("gradient", "autodiffeq", f"DiscreteAdjoint, {label}",
                                backend.label, n_params, "parameters", note=str(exc)))
                break
            except Exception as exc:  # noqa: BLE001 - reported; the next model is tried
                msg = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                out(f"  autodiffeq {label} gradient on {backend.label} FAILED: {msg}")
                rows.append(row("gradient", "autodiffeq", f"DiscreteAdjoint, {label}",
                                backend.label, n_params, "parameters", note=f"FAILED: {msg}"))
                continue
            add("autodiffeq", f"DiscreteAdjoint, {label}", backend.label, secs, k,
                backend.host(g), nf, f"forward: {nsteps} steps, nf {nf} (onto the save times)")
            break  # the array-API network is the fallback for an nn.MLP that fails
        backend.free()
    else:
        out(f"  autodiffeq on {backend.name!r} skipped: {backend.reason}")

    torchdiffeq_rows(mlp, p0, u0, data, args, clock, add, rows, out)
    out(f"\nNeural ODE gradient: H = {H}, batch {B}, {n_params} parameters; seconds per "
        f"gradient (wall, device synchronised)")
    out(table(
        ("library", "method", "device", "s / gradient", "timed", "forward nf", "rel diff",
         "note"),
        [[r["library"], r["method"], r["backend_device"], r["seconds"], r["timed"],
          r["steps"], r["err"], r["note"]] for r in rows]))
    return rows


def torchdiffeq_rows(mlp: Any, p0: np.ndarray, u0: np.ndarray, data: np.ndarray,
                     args: argparse.Namespace, clock: Clock, add: Callable[..., None],
                     rows: list[dict[str, Any]], out: Callable[[str], None]) -> None:
    """torchdiffeq ``odeint`` and ``odeint_adjoint`` on the spiral (rows through ``add``)."""
    try:
        import torch
        import torchdiffeq
    except Exception as exc:  # noqa: BLE001 - any import failure means: skip the peer
        out(f"  torchdiffeq skipped: it does not import ({type(exc).__name__}: {exc})")
        return
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cpu":  # one thread on the CPU, as benchmarks/gradients.py
        torch.set_num_threads(1)
    dev_label = (f"cuda ({torch.cuda.get_device_name(0)})" if dev.type == "cuda"
                 else f"cpu ({torch.get_num_threads()} threads)")
    (W1, b1), (W2, b2) = mlp.unflatten(p0)

    class Field(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            as_param = lambda a: torch.nn.Parameter(  # noqa: E731
                torch.tensor(np.array(a), dtype=torch.float64, device=dev))
            self.W1, self.b1 = as_param(W1), as_param(b1)
            self.W2, self.b2 = as_param(W2), as_param(b2)
            self.nfe = 0

        def forward(self, t: Any, u: Any) -> Any:
            self.nfe += 1
            return torch.tanh(u**3 @ self.W1 + self.b1) @ self.W2 + self.b2

    func = Field()
    y0 = torch.tensor(u0, dtype=torch.float64, device=dev)
    ts = torch.tensor(NODE_TS, dtype=torch.float64, device=dev)
    target = torch.tensor(data, dtype=torch.float64, device=dev)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for name, solve in (("odeint", torchdiffeq.odeint), ("odeint_adjoint",
                                                          torchdiffeq.odeint_adjoint)):
        nfe = [0]

        def fn(solve: Any = solve, nfe: list[int] = nfe) -> Any:
            func.zero_grad(set_to_none=True)
            func.nfe = 0
            U = solve(func, y0, ts, rtol=NODE_RTOL, atol=NODE_ATOL, method="dopri5")
            nfe[0] = func.nfe
            loss = ((U - target) ** 2).sum()
            loss.backward()
            return torch.cat([g.reshape(-1) for g in (func.W1.grad, func.b1.grad,
                                                       func.W2.grad, func.b2.grad)])

        try:
            secs, k, g = measure(fn, sync, args.repeats, clock, f"torchdiffeq {name}",
                                 args.alone)
        except OutOfTime as exc:
            out(f"  {exc}")
            rows.append(row("gradient", "torchdiffeq", f"{name} dopri5", dev_label,
                            mlp.n_params, "parameters", note=str(exc)))
            continue
        add("torchdiffeq", f"{name} dopri5", dev_label, secs, k,
            g.detach().cpu().numpy(), nfe[0], "forward nf counted by the module")


# =========================================================================== 3. stiff
class XPBrusselator:
    """``stiff_problems.brusselator`` written with ``u``'s array namespace: the periodic
    5-point Laplacian as four ``roll`` s (no sparse matrix), the forcing spot moved to the
    namespace once. ``p`` is a :class:`stiff_problems.BrusselatorParams`."""

    def __init__(self, prm: Any) -> None:
        self.prm = prm
        data = sp_bench._bruss(prm)  # the benchmark's own grid, forcing and scale
        self.spot_host = data.spot
        self.scale = data.scale
        self._spot: dict[int, Any] = {}

    def spot(self, xp: Any) -> Any:
        s = self._spot.get(id(xp))
        if s is None:
            s = self._spot[id(xp)] = xp.reshape(xp.asarray(self.spot_host), (self.prm.N,
                                                                               self.prm.N))
        return s

    def __call__(self, y: Any, p: Any, t: Any) -> Any:
        xp, prm = namespace(y), self.prm
        N = prm.N
        nn = N * N
        u = xp.reshape(y[:nn], (N, N))
        v = xp.reshape(y[nn:], (N, N))

        def lap(a: Any) -> Any:
            return self.scale * (xp.roll(a, 1, axis=0) + xp.roll(a, -1, axis=0)
                                 + xp.roll(a, 1, axis=1) + xp.roll(a, -1, axis=1) - 4.0 * a)

        uuv = u * u * v
        du = lap(u) + prm.B + uuv - (prm.A + 1.0) * u
        dv = lap(v) + prm.A * u - uuv
        if float(t) >= 1.1:
            du = du + self.spot(xp)
        return xp.concat([xp.reshape(du, (nn,)), xp.reshape(dv, (nn,))])


def lu_seconds(N: int) -> float:
    """Seconds of one SuperLU factorisation (SciPy, host) of ``W = I - 0.05 J(u0)`` for the
    ``N x N`` Brusselator (what a Rosenbrock step or a BDF Jacobian update factors)."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import splu

    prm = sp_bench.BrusselatorParams(N=N)
    u0 = sp_bench.brusselator_u0(prm)
    J = sp_bench.brusselator_jac(u0, prm, 0.0)
    W = (sp.identity(J.shape[0], format="csc") - 0.05 * J).tocsc()
    t0 = time.perf_counter()
    splu(W)
    return time.perf_counter() - t0


def stiff_part(args: argparse.Namespace, backend: Backend, clock: Clock,
               out: Callable[[str], None]) -> list[dict[str, Any]]:
    t1 = args.stiff_t1
    rows: list[dict[str, Any]] = []
    # the right-hand side in the array namespace matches the benchmark's (N = 8, NumPy)
    prm8 = sp_bench.BrusselatorParams(N=8)
    y8 = sp_bench.brusselator_u0(prm8) * np.linspace(0.5, 1.5, 128)
    for t in (0.0, 2.0):
        a, b = XPBrusselator(prm8)(y8, prm8, t), sp_bench.brusselator(y8, prm8, t)
        if not np.allclose(a, b, rtol=1e-12, atol=1e-9):
            raise AssertionError(f"XPBrusselator differs from stiff_problems.brusselator at "
                                 f"t={t}: {np.max(np.abs(a - b)):.3e}")

    def solve_ade(N: int, be: str, tt: float) -> tuple[Any, Any]:
        prm = sp_bench.BrusselatorParams(N=N)
        prob = ade.ODEProblem(XPBrusselator(prm), sp_bench.brusselator_u0(prm), (0.0, tt), prm,
                              jac_prototype=sp_bench.brusselator_pattern(prm))
        return prob, lambda: ade.solve(prob, "Rodas5P", rtol=STIFF_TOL, atol=STIFF_TOL,
                                       saveat=[tt], backend=be)

    def solve_bdf(N: int, tt: float) -> Callable[[], Any]:
        prm = sp_bench.BrusselatorParams(N=N)
        u0 = sp_bench.brusselator_u0(prm)
        pattern = sp_bench.brusselator_pattern(prm)
        return lambda: solve_ivp(lambda t, u: sp_bench.brusselator(u, prm, t), (0.0, tt), u0,
                                 method="BDF", rtol=STIFF_TOL, atol=STIFF_TOL,
                                 jac_sparsity=pattern, t_eval=[tt])

    N = args.stiff_n
    pred_bdf = 0.0
    if N > STIFF_MIN_N:
        # the factorisation counts at N = 32 on the CPU (they barely change with N), and the
        # growth of one SuperLU factorisation per doubling of N (measured at 32 -> 64, about
        # 10-12x on a 2-D grid), so that no large factorisation is paid for just to predict
        s32 = solve_ade(STIFF_MIN_N, "numpy", t1)[1]()
        r32 = solve_bdf(STIFF_MIN_N, t1)()
        n_fact, n_lu = int(s32.stats.nfactor), int(r32.nlu)
        lu_a, lu_b = lu_seconds(STIFF_MIN_N), lu_seconds(2 * STIFF_MIN_N)
        growth = max(lu_b / lu_a, 4.0)
        out(f"time guard: at N = {STIFF_MIN_N} on the CPU Rodas5P takes {s32.stats.nsteps} "
            f"steps with {n_fact} factorisations, BDF {n_lu}; one SuperLU factorisation of W "
            f"takes {lu_a:.4f} s at N = {STIFF_MIN_N}, {lu_b:.4f} s at N = {2 * STIFF_MIN_N} "
            f"({growth:.1f}x per doubling of N)")
    while N > STIFF_MIN_N:
        lu = lu_b * growth ** math.log2(N / (2 * STIFF_MIN_N))
        pred_ade, pred_bdf = n_fact * lu, n_lu * lu
        fits = 1.5 * (pred_ade + pred_bdf) <= clock.left()  # a margin: lower bounds
        out(f"  N = {N} ({2 * N * N:,} states): one factorisation ~{lu:.3g} s -> predicted "
            f">= {pred_ade:.0f} s (Rodas5P) + {pred_bdf:.0f} s (BDF); {clock.left():.0f} s "
            f"left" + ("" if fits else f" -> too long, halving N to {N // 2}"))
        if fits:
            break
        N //= 2
    if N != args.stiff_n:
        out(f"time guard: solving N = {N} instead of --stiff-n {args.stiff_n}")
    states = 2 * N * N

    u_ade = None
    if backend.usable:
        t0 = time.perf_counter()
        solve_ade(16, backend.name, min(t1, 2.0))[1]()
        backend.sync()
        out(f"  warm-up Rodas5P on {backend.label} at N = 16: {time.perf_counter() - t0:.1f} s "
            f"(not counted)")
        _, call = solve_ade(N, backend.name, t1)
        try:
            with time_limit(clock.left() - min(pred_bdf, clock.left() / 2),
                            f"Rodas5P N={N} on {backend.label}"):
                secs, sol = timed_call(call, backend.sync)
            u_ade = backend.host(sol.u[-1, ...])
            st = sol.stats
            out(f"  Rodas5P [{backend.label}] N = {N}: {secs:.2f} s, {st.nsteps} steps "
                f"({st.naccept} accepted), {st.nfactor} factorisations, nf {st.nf}, "
                f"retcode {sol.retcode}")
            rows.append(row("stiff", "autodiffeq", "Rodas5P, sparse FD Jacobian (jac_prototype)",
                            backend.label, states, "states", timed=1, seconds=secs,
                            units_per_s=1.0 / secs, steps=int(st.nsteps),
                            steps_per_s=st.nsteps / secs,
                            note=f"N = {N}, t1 = {t1:g}; {st.nfactor} factorisations, nf "
                                 f"{st.nf}; retcode {sol.retcode}"))
        except OutOfTime as exc:
            out(f"  {exc}")
            rows.append(row("stiff", "autodiffeq", "Rodas5P", backend.label, states, "states",
                            note=str(exc)))
        backend.free()
    else:
        out(f"  autodiffeq on {backend.name!r} skipped: {backend.reason}")

    try:
        with time_limit(clock.left(), f"SciPy BDF N={N}"):
            secs, r = timed_call(solve_bdf(N, t1), lambda: None)
        err = None
        if u_ade is not None and r.success:
            u_bdf = r.y[:, -1]
            err = float(np.max(np.abs(u_ade - u_bdf)) / np.max(np.abs(u_bdf)))
            for rr in rows:
                if rr["library"] == "autodiffeq" and rr["seconds"]:
                    rr["err"], rr["err_what"] = err, "max abs diff / max |u| vs SciPy BDF"
        out(f"  SciPy BDF [CPU] N = {N}: {secs:.2f} s, nfev {r.nfev}, njev {r.njev}, nlu "
            f"{r.nlu}, status {r.status}" + ("" if err is None else
                                             f"; Rodas5P vs BDF at t1: {err:.1e}"))
        rows.append(row("stiff", "SciPy", "solve_ivp BDF, jac_sparsity", "cpu", states,
                        "states", timed=1, seconds=secs, units_per_s=1.0 / secs,
                        note=f"N = {N}, t1 = {t1:g}; nfev {r.nfev}, njev {r.njev}, nlu "
                             f"{r.nlu}; {r.message}"))
    except OutOfTime as exc:
        out(f"  {exc}")
        rows.append(row("stiff", "SciPy", "solve_ivp BDF", "cpu", states, "states",
                        note=str(exc)))
    out(f"\n2-D Brusselator, N = {N} ({states:,} states), t in [0, {t1:g}], rtol = atol = "
        f"{STIFF_TOL:g}; one call each")
    out(table(
        ("library", "method", "device", "states", "seconds", "steps", "diff vs BDF", "note"),
        [[r["library"], r["method"], r["backend_device"], r["size"], r["seconds"], r["steps"],
          r["err"], r["note"]] for r in rows]))
    return rows


# =========================================================================== main
def _ints(text: str) -> list[int]:
    return [int(float(x)) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--backend", default="cupy",
                    help="autodiffeq backend under test (default cupy; numpy runs the same "
                         "code on the CPU)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results",
                    help="folder for gpu.csv (default benchmarks/results)")
    ap.add_argument("--parts", default=",".join(PARTS),
                    help=f"comma-separated subset of {','.join(PARTS)}")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds for the whole run, split among the parts (default: none)")
    ap.add_argument("--ensemble-sizes", type=_ints, default=None,
                    help="trajectories on the backend (default 100000,1000000; --quick "
                         "1000,4000)")
    ap.add_argument("--cpu-size", type=int, default=None,
                    help="trajectories of the NumPy CPU baseline (default 10000; --quick 2000)")
    ap.add_argument("--hidden", type=int, default=None, help="H (default 1024; --quick 32)")
    ap.add_argument("--batch", type=int, default=None, help="B (default 1024; --quick 16)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed gradient calls after the warm-up (default 5; --quick 2)")
    ap.add_argument("--stiff-n", type=int, default=None,
                    help="Brusselator grid N (default 256; --quick 32); halved by the time "
                         "guard when predicted too slow")
    ap.add_argument("--stiff-t1", type=float, default=11.5, help="Brusselator end time (11.5)")
    args = ap.parse_args(argv)
    q = args.quick
    if args.ensemble_sizes is None:
        args.ensemble_sizes = [1000, 4000] if q else [100_000, 1_000_000]
    args.cpu_size = args.cpu_size or (2000 if q else 10_000)
    args.hidden = args.hidden or (32 if q else 1024)
    args.batch = args.batch or (16 if q else 1024)
    args.repeats = args.repeats or (2 if q else 5)
    args.stiff_n = args.stiff_n or (32 if q else 256)
    args.alone = 1.0 if q else 5.0  # a gradient slower than this is timed by its warm-up
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    bad = [p for p in parts if p not in PARTS]
    if bad:
        ap.error(f"unknown part(s) {bad}; choose from {PARTS}")

    def out(text: str) -> None:
        print(text, flush=True)

    start = time.perf_counter()
    total = Clock(args.budget)
    backend = Backend(args.backend)
    machine_info(backend, out)
    out(f"parts: {', '.join(parts)}; budget: "
        f"{'none' if args.budget is None else f'{args.budget:.0f} s'}"
        f"{'; --quick' if q else ''}")
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    funcs = {"ensemble": ensemble_part, "gradient": gradient_part, "stiff": stiff_part}
    csv_path = args.out / "gpu.csv"
    for k, part in enumerate(parts):
        left = total.left()
        share = SHARES[part] / sum(SHARES[p] for p in parts[k:])
        clock = Clock(None if not math.isfinite(left) else max(left * share, 0.0))
        out(f"\n=== part {part}" + ("" if not math.isfinite(left) else
                                    f" ({clock.seconds:.0f} s of the {left:.0f} s left)"))
        t0 = time.perf_counter()
        part_rows: list[dict[str, Any]] = []
        try:
            # the whole part under its time (a few seconds' grace for the tables); the calls
            # inside have their own, shorter guards that record what they stopped
            with time_limit(clock.seconds + 5.0, f"part {part}"):
                part_rows = funcs[part](args, backend, clock, out)
        except OutOfTime as exc:
            failed.append(part)
            out(f"part {part} STOPPED: {exc}")
        except Exception as exc:  # noqa: BLE001 - one part's failure must not lose the others
            failed.append(part)
            out(f"part {part} FAILED: {type(exc).__name__}: {exc}")
            out(traceback.format_exc())
        rows += part_rows
        out(f"(part {part}: {time.perf_counter() - t0:.1f} s)")
        with contextlib.suppress(Exception):
            backend.free()
        write_csv(csv_path, CSV_HEADERS, [[r.get(h) for h in CSV_HEADERS] for r in rows])
    out(f"\ntotal {time.perf_counter() - start:.0f} s; wrote {csv_path}"
        + (f"; FAILED parts: {', '.join(failed)}" if failed else ""))
    if failed:
        return 1
    return 0 if backend.usable else 2


if __name__ == "__main__":
    sys.exit(main())
