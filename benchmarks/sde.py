"""SDE work-precision benchmark: autodiffeq vs torchsde and diffrax.

Run from the repository root:

    python benchmarks/sde.py            # full run (about 2.5 minutes on 2 cores)
    python benchmarks/sde.py --quick    # smoke run (about 10 s: 2,000 paths, few steps)
    python benchmarks/sde.py --out DIR  # where the CSV, text and PNG go (benchmarks/results/)

The peers are optional (``pip install ".[bench-sde]"``: torchsde, diffrax, jax); a peer that does
not import is skipped with a message, and the autodiffeq rows run without them.

Problem 1, geometric Brownian motion (Itô, diagonal noise)::

    du = mu u dt + sigma u dW,   mu = 1.5, sigma = 0.5,   u0 = 1,   t in [0, 1],
    u(t) = u0 exp((mu - sigma^2/2) t + sigma W(t)).

The parameters are those of autodiffeq's SDE conformance kit (``autodiffeq.testing.sde``): a
strongly growing drift (``E u(1) = e^1.5 = 4.5``) with moderate noise (``sigma sqrt(T) = 0.5``)
and an Itô correction ``sigma^2/2 = 0.125`` that the methods must get right, so that drift and
diffusion errors both show. 10,000 independent paths are the components of one state (every
method here is elementwise on diagonal noise, so a component is a path). The error of a solve
is measured against the exact solution **on the same path**, from the Brownian motion's value
at ``T`` that the solve itself used:

- ``mean abs error``: the strong error ``mean over paths of |u_h(T) - u(T)|`` (10,000 paths:
  its sampling error is about 1 %);
- ``max rel error``: ``max over paths of |u_h(T) - u(T)| / u(T)``.

Methods (fixed steps ``dt = 1/n``, ``n`` a power of two, so that every library steps exactly
onto ``T``):

- autodiffeq: ``EM`` (strong order 0.5), ``RKMil`` (1.0), ``SRIW1`` and ``SOSRI`` (1.5), as a
  user calls them: ``ade.solve(prob, alg, dt=dt, adaptive=False, brownian=W, saveat=[T])``
  with ``W = ade.BrownianPath((0, T), (paths,), seed=...)``; exact solution from ``W(T)``.
  Timed twice: **fresh path** (a new ``BrownianPath`` per call: drawing the noise is part of
  the solve, as it is for the peers: the figure compared) and **reused path** (the same ``W``
  every call after a first solve has drawn it: the solver alone). ``SOSRI`` also adaptively
  (``rtol = atol = tol``, extra rows, fresh path).
- torchsde: ``sdeint(sde, y0, ts=[0, T], dt=dt, method=m, bm=bm)`` under ``torch.no_grad()``,
  state ``(paths, 1)``, ``noise_type="diagonal"``, ``sde_type="ito"``, ``m`` = ``euler``,
  ``milstein`` (its default, ``g'`` by autograd) and ``srk`` (Rößler's SRI2, strong order 1.5);
  a new ``BrownianInterval(0, T, size=(paths, 1), dt=dt, entropy=seed)`` per call
  (``levy_area_approximation="space-time"`` for ``srk``, which needs it); in one measurement
  the ``dt`` hint cut its time 1.6-2.2x at 256 and 1024 steps. Exact solution from
  ``bm(0, T)``.
- diffrax: ``diffeqsolve(..., dt0=dt, saveat=SaveAt(t1=True), max_steps=4096)`` jitted as a
  whole (the first call compiles: reported, not counted; ``dt`` is an argument of the jitted
  function, so one compile serves every ``dt``), Brownian motion a ``VirtualBrownianTree``
  with ``tol = dt/2`` (diffrax's documented choice for fixed steps); exact solution from
  ``bm.evaluate(0, T)``. Solvers:

  * ``Euler`` (Itô Euler–Maruyama, 0.5): one state of ``paths`` components, the diffusion a
    ``lineax.DiagonalLinearOperator``, one tree of shape ``(paths,)``;
  * ``ItoMilstein`` (1.0 for commutative noise): ``jax.vmap`` over paths (scalar state, one
    tree per path): on a vector state its Milstein term forms the ``paths x paths`` outer
    product of ``dW`` and a Jacobian of that size;
  * ``SlowRK`` (1.5 for commutative noise) on the Stratonovich form of the same SDE,
    ``du = (mu - sigma^2/2) u dt + sigma u o dW`` (the same solution): diffrax has no Itô
    Runge–Kutta method of order above 0.5 for multiplicative noise (its order-1.5 SRKs ``SRA1``,
    ``ShARK`` and ``SEA`` (1.0) are for additive noise; ``SPaRK``, ``GeneralShARK`` and
    ``SlowRK`` are Stratonovich, and ``SlowRK`` is the one of order 1.5 on commutative noise,
    which diagonal noise with ``g_i(u_i)`` is). One state, ``SpaceTimeLevyArea`` tree.

  Each solver also runs with ``UnsafeBrownianPath`` (rows ``(unsafe path)``, extra): each
  step's increment (and Lévy area) is drawn from the key folded with the step's ``(t0, t1)``,
  without a tree walk; diffrax allows it with fixed steps and ``adjoint=ForwardMode()`` (no
  reverse-mode gradients). ``W(T)`` is the sum of ``bm.evaluate(k dt, (k + 1) dt)`` over the
  solver's steps (the same keys: the step ends ``k dt`` are exact for ``dt = 2^-j``); that
  these rows have the tree rows' errors at every ``n`` checks it.

Step counts ``n``: autodiffeq ``EM``, ``RKMil`` 8 ... 1024, ``SRIW1``, ``SOSRI`` 4 ... 256,
``SOSRI`` adaptive at ``tol`` = 0.3, 0.1, 0.03, 0.01; torchsde ``euler``, ``milstein``
8 ... 512, ``srk`` 4 ... 128; diffrax with the tree ``Euler``, ``ItoMilstein`` 8 ... 64,
``SlowRK`` 4 ... 64 (0.3-1.3 us per path per step: finer steps would take the time budget),
unsafe path ``Euler`` 8 ... 512, ``ItoMilstein`` 8 ... 256, ``SlowRK`` 4 ... 256. ``--quick``:
2,000 paths, two ``n`` per method, one tolerance, diffrax ``Euler`` (tree) and ``SlowRK``
(unsafe path) only (each diffrax method compiles once, 1-5 s).

Problem 2, general (non-diagonal) noise: ``du_i = a_i u_i dt + sum_j b_ij u_i dW_j``, two
components driven by two Wiener processes, ``a = (-1, 0.5)``, ``b = [[0.3, 0.1], [0.2, 0.4]]``,
``u0 = (1, 1)``, ``t in [0, 1]``; the matrices ``diag(b_.j)`` commute, so
``u_i(t) = u0_i exp((a_i - sum_j b_ij^2/2) t + sum_j b_ij W_j(t))``. General noise has one
``W`` of shape ``(noise_dim,)`` for the whole state, so 200 independent paths are either 200
autodiffeq solves (``noise="general", noise_dim=2``, a fresh path each) or one solve of all 400
components with ``noise_dim = 400`` and a block-diagonal ``g`` of shape ``(400, 400)``
(``O(paths^2)``; shown for what it costs), against torchsde ``euler`` with
``noise_type="general"`` on a batch of 200. EM only (the higher-order autodiffeq methods take
commutative noise only). Errors as above, over paths and components.

Timing: each solve runs once (its error), then seconds per solve is ``_common.time_call``
(warm-up, best of 3 loops of >= 0.2 s; ``--quick``: one loop of >= 0.02 s) for solves under
0.25 s, the best of 3 solves under 1 s, else that one solve (``--clock wall``, the default:
``time.perf_counter``; ``--clock cpu``: the process's CPU time, best of the same counts, which
does not count other processes holding the core on a shared machine). Step counts are swept
from coarse to fine with every method in turn, so that load from other jobs falls on all
methods alike; a method stops once one solve took more than 4 s. Everything runs on the CPU
in float64 and on one thread: OPENBLAS/OMP/MKL_NUM_THREADS=1 (unless set) and
``torch.set_num_threads(1)``; JAX gets no thread settings (no ``XLA_FLAGS``: on this machine
``--xla_cpu_multi_thread_eigen=false`` without ``OMP_NUM_THREADS=1`` made its solves run on
two threads, while with ``OMP_NUM_THREADS=1`` or no flags they run on one). The ``cpu/wall``
column checks it: the process's CPU time over the wall time of each row's measurement,
about 1 for one busy thread, below 1 when other processes take the core, above 1 when a
library computes on several threads.

Reported: a work-precision table (error and time per run), ``ns per path per step`` =
seconds / (paths * steps) for every fixed-step run (the issue's target: fixed-step SRIW1
under 70 ns, Brownian path included), and the time at matched strong errors 1e-2, 1e-3, 1e-4
interpolated along each method's curve (log time against log error, ``_common.interp_time``;
``n/a`` outside the measured range): ``torchsde / ade`` = time(best torchsde method) /
time(best autodiffeq method, fresh path), ``diffrax / ade`` (tree) and ``unsafe / ade``
(``UnsafeBrownianPath``) the same (> 1: autodiffeq faster); also autodiffeq's best time with
the path reused.

Outputs (in ``--out``): ``sde.txt`` (the printed report), ``sde.csv`` with every run and
``sde.png`` (work-precision plot) when matplotlib imports.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from _common import format_table, interp_time, time_call, write_csv  # noqa: E402

import autodiffeq as ade  # noqa: E402

try:
    import torch
    import torchsde
except Exception as exc:  # noqa: BLE001 - any import failure means: skip the peer
    torch = torchsde = None
    TORCHSDE_MISSING = f"{type(exc).__name__}: {exc}"
else:
    TORCHSDE_MISSING = ""
    torch.set_num_threads(1)
try:
    import diffrax
    import jax
    import jax.numpy as jnp
    import lineax
except Exception as exc:  # noqa: BLE001
    diffrax = jax = jnp = lineax = None
    DIFFRAX_MISSING = f"{type(exc).__name__}: {exc}"
else:
    DIFFRAX_MISSING = ""
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")

MU, SIGMA, T = 1.5, 0.5, 1.0
PATHS, QUICK_PATHS = 10_000, 2_000
SEED = 20240601
TARGETS = (1e-2, 1e-3, 1e-4)
HEADLINE = 1e-3
BUDGET_S = 4.0  # a method stops after a solve over this (seconds)

# steps per unit time n (dt = 1/n) for each method; --quick uses the QUICK_ ones
_P2 = [2 ** k for k in range(2, 11)]  # 4 ... 1024
ADE_FIXED = {"EM": _P2[1:], "RKMil": _P2[1:], "SRIW1": _P2[:7], "SOSRI": _P2[:7]}
ADE_ADAPTIVE_TOLS = (0.3, 0.1, 0.03, 0.01)
TSDE = {"euler": _P2[1:8], "milstein": _P2[1:8], "srk": _P2[:6]}
DRX = {("Euler", False): _P2[1:5], ("ItoMilstein", False): _P2[1:5], ("SlowRK", False): _P2[:5],
       ("Euler", True): _P2[1:8], ("ItoMilstein", True): _P2[1:7], ("SlowRK", True): _P2[:7]}
QUICK_ADE_FIXED = {"EM": [16, 64], "RKMil": [16, 64], "SRIW1": [8, 32], "SOSRI": [8, 32]}
QUICK_ADE_ADAPTIVE_TOLS = (0.1,)
QUICK_TSDE = {"euler": [16, 64], "milstein": [16, 64], "srk": [8, 32]}
# (each diffrax method compiles once, 1.5-5 s: --quick leaves most out)
QUICK_DRX = {("Euler", False): [16], ("SlowRK", True): [8]}

# problem 2: general noise
GEN_A = np.array([-1.0, 0.5])
GEN_B = np.array([[0.3, 0.1], [0.2, 0.4]])
GEN_PATHS, QUICK_GEN_PATHS = 200, 20
GEN_STEPS, QUICK_GEN_STEPS = (64, 256), (64,)

CSV_HEADERS = (
    "problem", "library", "method", "mode", "n", "dt", "tol", "paths", "mean_abs_error",
    "max_rel_error", "seconds", "seconds_reused", "ns_per_path_step",
    "ns_per_path_step_reused", "steps", "compile_s", "cpu_per_wall", "note",
)
LIB_ORDER = ("autodiffeq", "torchsde", "diffrax")

#: the clock of the timings ("wall" or "cpu"), set by --clock
CLOCK = {"name": "wall"}


# --------------------------------------------------------------------------- timing
def _now() -> float:
    return time.process_time() if CLOCK["name"] == "cpu" else time.perf_counter()


def _best_of_loops(fn: Callable[[], Any], repeat: int, min_time: float) -> float:
    """``_common.time_call`` on the CPU clock (same loop counts)."""
    fn()
    number, total = 1, 0.0
    while True:
        start = _now()
        for _ in range(number):
            fn()
        total = _now() - start
        if total >= min_time:
            break
        number = max(number + 1, math.ceil(number * min(1.2 * min_time / max(total, 1e-9),
                                                        10.0)))
    best = total / number
    for _ in range(repeat - 1):
        start = _now()
        for _ in range(number):
            fn()
        best = min(best, (_now() - start) / number)
    return best


def measure(fn: Callable[[], Any], repeat: int, min_time: float) -> tuple[Any, float]:
    """(result of one call, seconds per call): see the module docstring."""
    start = _now()
    out = fn()
    first = _now() - start
    return out, retime(fn, first, repeat, min_time)


def retime(fn: Callable[[], Any], secs: float, repeat: int, min_time: float) -> float:
    """Seconds per call of ``fn``, which took ``secs`` once."""
    if secs > 1.0:
        return secs
    if secs > 0.25:
        best = secs
        for _ in range(1 if repeat == 1 else 2):
            start = _now()
            fn()
            best = min(best, _now() - start)
        return best
    if CLOCK["name"] == "wall":
        return time_call(fn, repeat=repeat, min_time=min_time)
    return _best_of_loops(fn, repeat, min_time)


# --------------------------------------------------------------------------- errors
@dataclass
class Result:
    """One solve: ``u_h(T)`` and the exact ``u(T)`` on the same path (host float64)."""

    u: np.ndarray
    exact: np.ndarray
    steps: int
    retcode: str = "Success"


def errors(res: Result) -> tuple[float, float]:
    diff = np.abs(res.u - res.exact)
    return float(np.mean(diff)), float(np.max(diff / np.abs(res.exact)))


def gbm_exact(u0: np.ndarray, w: np.ndarray, t: float = T) -> np.ndarray:
    return u0 * np.exp((MU - 0.5 * SIGMA**2) * t + SIGMA * w)


# --------------------------------------------------------------------------- autodiffeq
def gbm_f(u: np.ndarray, p: Any, t: float) -> np.ndarray:
    return MU * u


def gbm_g(u: np.ndarray, p: Any, t: float) -> np.ndarray:
    return SIGMA * u


def ade_solver(prob: ade.SDEProblem, alg: str, n: int | None, tol: float | None
               ) -> tuple[Callable[[], Result], Callable[[], Callable[[], Any]]]:
    """``(fresh, make_reused)``: ``fresh()`` draws a new path and solves on it;
    ``make_reused()`` solves once on a path and returns a call that solves on it again."""
    paths = prob.u0.shape[0]
    opts: dict[str, Any] = ({"dt": 1.0 / n, "adaptive": False} if n is not None
                            else {"rtol": tol, "atol": tol})
    u0 = np.asarray(prob.u0)

    def solve(W: ade.BrownianPath) -> Any:
        return ade.solve(prob, alg, brownian=W, saveat=[T], **opts)

    def fresh() -> Result:
        W = ade.BrownianPath((0.0, T), (paths,), seed=SEED)
        sol = solve(W)
        return Result(np.asarray(sol.u[-1]), gbm_exact(u0, np.asarray(W(T))),
                      sol.stats.naccept, str(sol.retcode))

    def make_reused() -> Callable[[], Any]:
        W = ade.BrownianPath((0.0, T), (paths,), seed=SEED)
        solve(W)
        return lambda: solve(W)

    return fresh, make_reused


# --------------------------------------------------------------------------- torchsde
def torchsde_solver(method: str, n: int, paths: int) -> Callable[[], Result]:
    dt = 1.0 / n

    class GBM(torch.nn.Module):
        noise_type = "diagonal"
        sde_type = "ito"

        def f(self, t: Any, y: Any) -> Any:
            return MU * y

        def g(self, t: Any, y: Any) -> Any:
            return SIGMA * y

    sde = GBM()
    y0 = torch.ones(paths, 1, dtype=torch.float64)
    ts = torch.tensor([0.0, T], dtype=torch.float64)
    levy = "space-time" if method == "srk" else "none"

    def fresh() -> Result:
        bm = torchsde.BrownianInterval(t0=0.0, t1=T, size=(paths, 1), dtype=torch.float64,
                                       entropy=SEED, dt=dt, levy_area_approximation=levy)
        with torch.no_grad():
            ys = torchsde.sdeint(sde, y0, ts, dt=dt, method=method, bm=bm)
            w = bm(0.0, T)
        return Result(ys[-1, :, 0].numpy(), gbm_exact(np.ones(paths), w[:, 0].numpy()), n)

    return fresh


# --------------------------------------------------------------------------- diffrax
class DiffraxSolver:
    """One jitted solve per diffrax method and Brownian motion (compiled on the first call,
    any ``dt``). ``unsafe``: ``UnsafeBrownianPath`` (module docstring) instead of a
    ``VirtualBrownianTree``."""

    def __init__(self, name: str, paths: int, unsafe: bool = False) -> None:
        self.name, self.paths, self.unsafe = name, paths, unsafe
        self.label = f"{name} (unsafe path)" if unsafe else name
        self.compile_s: float | None = None
        stratonovich = name == "SlowRK"
        levy = diffrax.SpaceTimeLevyArea if stratonovich else diffrax.BrownianIncrement
        drift = MU - (0.5 * SIGMA**2 if stratonovich else 0.0)  # Stratonovich form
        solver = getattr(diffrax, name)()
        vmapped = name == "ItoMilstein"
        shape = () if vmapped else (paths,)

        def brownian(key: Any, tol: Any) -> Any:
            if unsafe:
                return diffrax.UnsafeBrownianPath(shape=shape, key=key, levy_area=levy)
            return diffrax.VirtualBrownianTree(0.0, T, tol=tol, shape=shape, key=key,
                                               levy_area=levy)

        def diffusion(t: Any, y: Any, args: Any) -> Any:
            return SIGMA * y if vmapped else lineax.DiagonalLinearOperator(SIGMA * y)

        # UnsafeBrownianPath refuses the default adjoint (RecursiveCheckpointAdjoint), which
        # only matters under differentiation; ForwardMode is the one it names
        adjoint = diffrax.ForwardMode() if unsafe else diffrax.RecursiveCheckpointAdjoint()

        def solve(key: Any, u0: Any, dt: Any, tol: Any) -> Any:
            terms = diffrax.MultiTerm(diffrax.ODETerm(lambda t, y, args: drift * y),
                                      diffrax.ControlTerm(diffusion, brownian(key, tol)))
            sol = diffrax.diffeqsolve(terms, solver, 0.0, T, dt0=dt, y0=u0,
                                      saveat=diffrax.SaveAt(t1=True), max_steps=4096,
                                      adjoint=adjoint)
            return sol.ys[0]

        def w_at_t(key: Any, dt: Any, tol: Any, n: Any) -> Any:
            bm = brownian(key, tol)
            if not unsafe:
                return bm.evaluate(0.0, T)
            # the unsafe path's increments are keyed by the step's (t0, t1): W(T) is their
            # sum over the solver's steps k dt -> (k + 1) dt (exact for dt = 2^-j)

            def body(k: Any, w: Any) -> Any:
                return w + bm.evaluate(k * dt, (k + 1) * dt)

            return jax.lax.fori_loop(0, n, body, jnp.zeros(shape, dtype=jnp.float64))

        if vmapped:
            self._solve = jax.jit(jax.vmap(solve, in_axes=(0, 0, None, None)))
            self._w = jax.jit(jax.vmap(w_at_t, in_axes=(0, None, None, None)))
            self.key = jax.random.split(jax.random.key(SEED), paths)
        else:
            self._solve = jax.jit(solve)
            self._w = jax.jit(w_at_t)
            self.key = jax.random.key(SEED)
        self.u0 = jnp.ones(paths, dtype=jnp.float64)

    def solver(self, n: int) -> Callable[[], Result]:
        dt = 1.0 / n
        tol = dt / 2
        if self.compile_s is None:
            start = time.perf_counter()
            self._solve(self.key, self.u0, dt, tol).block_until_ready()
            self.compile_s = time.perf_counter() - start

        def fresh() -> Result:
            u = self._solve(self.key, self.u0, dt, tol).block_until_ready()
            return Result(np.asarray(u), np.asarray(u), n)

        def with_exact() -> Result:
            res = fresh()
            w = np.asarray(self._w(self.key, dt, tol, n))
            res.exact = gbm_exact(np.ones(self.paths), w)
            return res

        fresh.with_exact = with_exact  # type: ignore[attr-defined]
        return fresh


# --------------------------------------------------------------------------- problem 1
def benchmark_gbm(args: argparse.Namespace, out: Callable[[str], None]) -> list[list[Any]]:
    quick = args.quick
    paths = args.paths
    repeat, min_time = (1, 0.02) if quick else (3, 0.2)
    ade_fixed = QUICK_ADE_FIXED if quick else ADE_FIXED
    tols = QUICK_ADE_ADAPTIVE_TOLS if quick else ADE_ADAPTIVE_TOLS
    tsde = QUICK_TSDE if quick else TSDE
    drx = QUICK_DRX if quick else DRX
    prob = ade.SDEProblem(gbm_f, gbm_g, np.ones(paths), (0.0, T))
    rows: list[list[Any]] = []
    stopped: set[str] = set()

    def row(library: str, method: str, mode: str, n: int | None, tol: float | None,
            res: Result | None, secs: float | None, reused: float | None = None,
            compile_s: float | None = None, note: str = "", cpu: float | None = None
            ) -> None:
        err, rel = errors(res) if res is not None else (None, None)
        steps = res.steps if res is not None else None
        ns = secs / (paths * steps) * 1e9 if secs and steps else None
        ns_r = reused / (paths * steps) * 1e9 if reused and steps else None
        rows.append(["gbm", library, method, mode, n, None if n is None else 1.0 / n, tol,
                     paths, err, rel, secs, reused, ns, ns_r, steps, compile_s, cpu,
                     note or (res.retcode if res is not None else "")])
        label = f"{library}:{method}:{mode}"
        if secs is not None and secs > BUDGET_S:
            stopped.add(label)
            out(f"  {library} {method}: {secs:.2f} s at n = {n}; finer steps skipped")

    def attempt(library: str, method: str, mode: str, n: int | None, tol: float | None,
                fn: Callable[[], Result], reused: Callable[[], Callable[[], Any]] | None = None,
                first: Callable[[], Result] | None = None,
                compile_s: float | None = None) -> None:
        if f"{library}:{method}:{mode}" in stopped:
            return
        cpu0, wall0 = time.process_time(), time.perf_counter()
        try:
            if first is None:
                res, secs = measure(fn, repeat, min_time)
            else:  # the result with its exact solution, then the solve alone timed
                res = first()
                secs = measure(fn, repeat, min_time)[1]
            t_reused = None
            if reused is not None:
                call = reused()
                start = _now()
                call()
                t_reused = retime(call, _now() - start, repeat, min_time)
        except Exception as exc:  # noqa: BLE001 - recorded, the sweep goes on
            row(library, method, mode, n, tol, None, None,
                note=f"error: {type(exc).__name__}: {exc!s:.120}")
            return
        # process CPU time over wall time of the whole measurement: about 1 for one busy
        # thread on an idle core, < 1 when other processes take the core, > 1 when the
        # library computes on several threads
        cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
        row(library, method, mode, n, tol, res, secs, t_reused, compile_s, cpu=cpu)

    if torchsde is None:
        out(f"  torchsde skipped (not installed: {TORCHSDE_MISSING})")
    drx_solvers: dict[str, DiffraxSolver] = {}
    if diffrax is None:
        out(f"  diffrax skipped (not installed: {DIFFRAX_MISSING})")
    else:
        drx_solvers = {key: DiffraxSolver(key[0], paths, unsafe=key[1]) for key in drx}

    # coarse to fine, every method in turn
    all_n = sorted({n for grid in (*ade_fixed.values(), *tsde.values(), *drx.values())
                    for n in grid})
    for n in all_n:
        for alg, grid in ade_fixed.items():
            if n in grid:
                fresh, make_reused = ade_solver(prob, alg, n, None)
                attempt("autodiffeq", alg, "fixed", n, None, fresh, make_reused)
        if torchsde is not None:
            for method, grid in tsde.items():
                if n in grid:
                    attempt("torchsde", method, "fixed", n, None,
                            torchsde_solver(method, n, paths))
        for key, solver in drx_solvers.items():
            name = solver.label
            if n in drx[key] and f"diffrax:{name}:fixed" not in stopped:
                try:
                    fn = solver.solver(n)
                except Exception as exc:  # noqa: BLE001
                    row("diffrax", name, "fixed", n, None, None, None,
                        note=f"error: {type(exc).__name__}: {exc!s:.120}")
                    stopped.add(f"diffrax:{name}:fixed")
                    continue
                attempt("diffrax", name, "fixed", n, None, fn, first=fn.with_exact,
                        compile_s=solver.compile_s)
    for tol in sorted(tols, reverse=True):
        fresh, _ = ade_solver(prob, "SOSRI", None, tol)
        attempt("autodiffeq", "SOSRI", "adaptive", None, tol, fresh)
    rows.sort(key=lambda r: (LIB_ORDER.index(r[1]), r[3] == "adaptive", "unsafe" in r[2],
                             r[2], r[4] or 0, -(r[6] or 0)))
    return rows


# --------------------------------------------------------------------------- problem 2
def gen_f(u: np.ndarray, p: Any, t: float) -> np.ndarray:
    return GEN_A * u


def gen_g(u: np.ndarray, p: Any, t: float) -> np.ndarray:
    return GEN_B * u[:, None]


def gen_exact(w: np.ndarray) -> np.ndarray:
    """``u(T)`` for ``u0 = 1``; ``w`` of shape ``(..., 2)``."""
    return np.exp((GEN_A - 0.5 * np.sum(GEN_B**2, axis=1)) * T + w @ GEN_B.T)


def benchmark_general(args: argparse.Namespace) -> list[list[Any]]:
    quick = args.quick
    paths = QUICK_GEN_PATHS if quick else GEN_PATHS
    repeat = 1 if quick else 2
    rows: list[list[Any]] = []
    prob = ade.SDEProblem(gen_f, gen_g, np.ones(2), (0.0, T), noise="general", noise_dim=2)
    big_b = np.zeros((2 * paths, 2 * paths))
    for k in range(paths):
        big_b[2 * k:2 * k + 2, 2 * k:2 * k + 2] = GEN_B
    block = ade.SDEProblem(lambda u, p, t: np.tile(GEN_A, paths) * u,
                           lambda u, p, t: big_b * u[:, None], np.ones(2 * paths), (0.0, T),
                           noise="general", noise_dim=2 * paths)

    def timed(fn: Callable[[], Result]) -> tuple[Result, float]:
        best, res = math.inf, None
        for _ in range(repeat):
            start = _now()
            res = fn()
            best = min(best, _now() - start)
        assert res is not None
        return res, best

    for n in QUICK_GEN_STEPS if quick else GEN_STEPS:
        dt = 1.0 / n
        cases: list[tuple[str, str, Callable[[], Result]]] = [
            ("autodiffeq", "EM, one solve per path", ade_general_separate(prob, n, paths)),
            ("autodiffeq", f"EM, one solve, block-diagonal g ({2 * paths}x{2 * paths})",
             ade_general_block(block, n, paths)),
        ]
        if torchsde is not None:
            cases.append(("torchsde", f"euler, batch of {paths}", torchsde_general(n, paths)))
        for library, method, fn in cases:
            res, secs = timed(fn)
            err, rel = errors(res)
            rows.append(["general", library, method, "fixed", n, dt, None, paths, err, rel,
                         secs, None, secs / (paths * n) * 1e9, None, n, None, None,
                         res.retcode])
    return rows


def ade_general_separate(prob: ade.SDEProblem, n: int, paths: int) -> Callable[[], Result]:
    """``paths`` solves of the 2-component system, each on a fresh path."""
    dt = 1.0 / n

    def fresh() -> Result:
        us, ws = [], []
        for k in range(paths):
            W = ade.BrownianPath((0.0, T), (2,), seed=SEED + k)
            sol = ade.solve(prob, "EM", dt=dt, adaptive=False, brownian=W, saveat=[T])
            us.append(np.asarray(sol.u[-1]))
            ws.append(np.asarray(W(T)))
        return Result(np.array(us), gen_exact(np.array(ws)), n)

    return fresh


def ade_general_block(block: ade.SDEProblem, n: int, paths: int) -> Callable[[], Result]:
    """One solve of all paths as one state with a block-diagonal ``g``."""
    dt = 1.0 / n

    def fresh() -> Result:
        W = ade.BrownianPath((0.0, T), (2 * paths,), seed=SEED)
        sol = ade.solve(block, "EM", dt=dt, adaptive=False, brownian=W, saveat=[T])
        w = np.asarray(W(T)).reshape(paths, 2)
        return Result(np.asarray(sol.u[-1]).reshape(paths, 2), gen_exact(w), n)

    return fresh


def torchsde_general(n: int, paths: int) -> Callable[[], Result]:
    dt = 1.0 / n
    a = torch.tensor(GEN_A, dtype=torch.float64)
    b = torch.tensor(GEN_B, dtype=torch.float64)

    class Linear(torch.nn.Module):
        noise_type = "general"
        sde_type = "ito"

        def f(self, t: Any, y: Any) -> Any:
            return a * y

        def g(self, t: Any, y: Any) -> Any:
            return b * y[:, :, None]

    sde = Linear()
    y0 = torch.ones(paths, 2, dtype=torch.float64)
    ts = torch.tensor([0.0, T], dtype=torch.float64)

    def fresh() -> Result:
        bm = torchsde.BrownianInterval(t0=0.0, t1=T, size=(paths, 2), dtype=torch.float64,
                                       entropy=SEED, dt=dt)
        with torch.no_grad():
            ys = torchsde.sdeint(sde, y0, ts, dt=dt, method="euler", bm=bm)
            w = bm(0.0, T)
        return Result(ys[-1].numpy(), gen_exact(w.numpy()), n)

    return fresh


# --------------------------------------------------------------------------- reports
def label(r: list[Any]) -> str:
    return f"{r[2]} (adaptive)" if r[3] == "adaptive" else r[2]


def curves(rows: list[list[Any]], library: str) -> dict[str, list[tuple[float, float]]]:
    """``{method: [(mean abs error, seconds), ...]}`` over a library's successful runs."""
    cv: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if r[1] == library and r[8] is not None and r[10] is not None and r[8] > 0:
            cv.setdefault(label(r), []).append((r[8], r[10]))
    return cv


def best_at(cv: dict[str, list[tuple[float, float]]], target: float
            ) -> tuple[str | None, float | None]:
    found = [(t, m) for m, pts in cv.items() for t in [interp_time(pts, target)]
             if t is not None]
    if not found:
        return None, None
    t, m = min(found)
    return m, t


def report(rows: list[list[Any]], gen_rows: list[list[Any]], paths: int,
           out: Callable[[str], None]) -> list[list[Any]]:
    out(f"\nGeometric Brownian motion, mu = {MU}, sigma = {SIGMA}, u0 = 1, T = {T}, "
        f"{paths} paths; errors at T against the exact solution on each solve's own path")
    out(format_table(
        ("library", "method", "mode", "n", "tol", "mean abs err", "max rel err", "s/solve",
         "s reused W", "ns/path/step", "ns reused", "steps", "compile s", "cpu/wall", "note"),
        [[r[1], r[2], r[3], r[4], r[6], r[8], r[9], r[10], r[11], r[12], r[13], r[14],
          r[15], r[16], r[17][:40]] for r in rows]))

    ade_cv = curves(rows, "autodiffeq")
    reused_cv: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if r[1] == "autodiffeq" and r[11] is not None and r[8]:
            reused_cv.setdefault(label(r), []).append((r[8], r[11]))
    drx = curves(rows, "diffrax")
    peers = {"torchsde": curves(rows, "torchsde"),
             "diffrax": {m: v for m, v in drx.items() if "unsafe" not in m},
             "diffrax unsafe": {m: v for m, v in drx.items() if "unsafe" in m}}
    table, summary = [], []
    for target in TARGETS:
        m_ade, t_ade = best_at(ade_cv, target)
        m_reu, t_reu = best_at(reused_cv, target)
        line = [target, m_ade, t_ade, m_reu, t_reu]
        for group in peers.values():
            m, t = best_at(group, target)
            ratio = t / t_ade if t is not None and t_ade is not None else None
            line += [m and m.replace(" (unsafe path)", ""), t, ratio]
        table.append(line)
        summary.append(line)
    out("\nSeconds per solve at matched mean abs error (interpolated, log-log; ratio = peer / "
        "autodiffeq fresh path: > 1 means autodiffeq faster; diffrax: VirtualBrownianTree, "
        "diffrax unsafe: UnsafeBrownianPath)")
    out(format_table(("target", "ade best", "ade s", "ade reused-W best", "reused s",
                      "torchsde best", "torchsde s", "torchsde/ade", "diffrax best",
                      "diffrax s", "diffrax/ade", "unsafe best", "unsafe s", "unsafe/ade"),
                     table))
    per_method = []
    for target in TARGETS:
        cells = [target]
        names = []
        for lib, cv in (("autodiffeq", ade_cv), ("torchsde", peers["torchsde"]),
                        ("diffrax", drx)):
            for m, pts in cv.items():
                names.append(f"{lib[:3]} {m.replace(' (unsafe path)', ' unsafe')}")
                cells.append(interp_time(pts, target))
        per_method.append(cells)
    out("\nSeconds per solve at matched error, every method (n/a: outside its measured range)")
    out(format_table(("target", *names), per_method))

    ns_rows = []
    for r in rows:
        if r[3] == "fixed" and r[12] is not None:
            ns_rows.append([r[1], r[2], r[4], r[8], r[12], r[13]])
    out("\nns per path per step, fixed steps (fresh path: the noise drawn in the call; "
        "reused: the path's values already drawn)")
    out(format_table(("library", "method", "n", "mean abs err", "ns fresh", "ns reused W"),
                     ns_rows))
    out("\nautodiffeq, fixed steps, n >= 32: median ns per path per step, fresh path and "
        "reused path; their difference is the Brownian path (drawing W and int W dt)")
    for alg in ADE_FIXED:
        sel = [r for r in rows if r[1] == "autodiffeq" and r[2] == alg and r[3] == "fixed"
               and r[4] >= 32 and r[12] is not None and r[13] is not None]
        if not sel:
            continue
        fresh = float(np.median([r[12] for r in sel]))
        reused = float(np.median([r[13] for r in sel]))
        out(f"  {alg:6s} fresh {fresh:5.1f} (range {min(r[12] for r in sel):.0f}-"
            f"{max(r[12] for r in sel):.0f}), reused {reused:5.1f}, path {fresh - reused:5.1f} "
            f"({(fresh - reused) / fresh:.0%})"
            + ("   <- target for SRIW1: < 70 ns with the path" if alg == "SRIW1" else ""))

    if gen_rows:
        out(f"\nGeneral noise (2 components, 2 Wiener processes, commuting), "
            f"{gen_rows[0][7]} paths, T = {T}: errors against the exact solution")
        out(format_table(("library", "method", "n", "mean abs err", "max rel err",
                          "s (all paths)", "ns/path/step"),
                         [[r[1], r[2], r[4], r[8], r[9], r[10], r[12]] for r in gen_rows]))
    return summary


def plot(rows: list[list[Any]], out_dir: Path, paths: int) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:  # noqa: BLE001 - plots are optional
        return None
    styles = {"autodiffeq": "-", "torchsde": "--", "diffrax": ":"}
    colors = plt.get_cmap("tab20").colors
    fig, ax = plt.subplots(figsize=(8.5, 6), dpi=120)
    i = 0
    for lib in LIB_ORDER:
        for name, pts in curves(rows, lib).items():
            pts = sorted(pts)
            ax.loglog([e for e, _ in pts], [s for _, s in pts], linestyle=styles[lib],
                      marker="osD^v<>ph*"[i % 9], color=colors[i % len(colors)],
                      label=f"{lib} {name}")
            i += 1
    reused = sorted((r[8], r[11]) for r in rows
                    if r[1] == "autodiffeq" and r[2] == "SRIW1" and r[11] is not None)
    if reused:
        ax.loglog([e for e, _ in reused], [s for _, s in reused], color="grey", alpha=0.6,
                  marker=".", label="autodiffeq SRIW1, path reused")
    ax.axvline(HEADLINE, color="k", alpha=0.2)
    ax.set_xlabel("strong error at T (mean over paths of |u_h - u|)")
    ax.set_ylabel("seconds per solve")
    ax.set_title(f"GBM, {paths} paths, float64, one thread")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "sde.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def provenance() -> str:
    """The commit of the working tree, and whether core/ or plugins/ differ from it."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                              capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "core", "plugins"], cwd=root,
                               text=True, capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "autodiffeq: not a git checkout"
    return f"autodiffeq at {head}" + (" + uncommitted changes in core/plugins" if dirty else "")


def versions() -> str:
    parts = [f"python {platform.python_version()}", f"numpy {np.__version__}"]
    if torchsde is not None:
        parts.append(f"torch {torch.__version__} ({torch.get_num_threads()} thread), "
                     f"torchsde {torchsde.__version__}")
    else:
        parts.append("torchsde not installed")
    if diffrax is not None:
        parts.append(f"jax {jax.__version__} ({jax.default_backend()}, XLA_FLAGS="
                     f"{os.environ.get('XLA_FLAGS', '')!r}), diffrax {diffrax.__version__}")
    else:
        parts.append("diffrax not installed")
    return ", ".join(parts)


def check_registry() -> None:
    names = {p.name for p in ade.registry().problem_types()}
    if "SDE" not in names:
        raise SystemExit("autodiffeq has no SDE problem type registered (installed metadata "
                         "older than the sde plugin?): reinstall the project, pip install -e .")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="fast smoke run (2,000 paths, few step sizes, one short timing)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--paths", type=int, default=None,
                    help=f"paths of problem 1 (default {PATHS}, --quick {QUICK_PATHS})")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall time (default) or this process's CPU time")
    args = ap.parse_args(argv)
    if args.paths is None:
        args.paths = QUICK_PATHS if args.quick else PATHS
    CLOCK["name"] = args.clock
    check_registry()
    lines: list[str] = []

    def out(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    start, cpu_start = time.perf_counter(), time.process_time()
    out(f"{versions()}; {provenance()}; {args.clock} clock; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rows = benchmark_gbm(args, out)
    gen_rows = benchmark_general(args)
    report(rows, gen_rows, args.paths, out)
    wall = time.perf_counter() - start
    out(f"\ntotal {wall:.0f} s (process CPU time {time.process_time() - cpu_start:.0f} s; "
        f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    write_csv(args.out / "sde.csv", CSV_HEADERS, rows + gen_rows)
    (args.out / "sde.txt").write_text("\n".join(lines) + "\n")
    png = plot(rows, args.out, args.paths)
    print(f"wrote {args.out / 'sde.csv'}, {args.out / 'sde.txt'}"
          + (f", {png}" if png else ""))


if __name__ == "__main__":
    main()
