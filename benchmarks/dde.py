"""Delay-equation work-precision benchmark: autodiffeq vs JiTCDDE and ddeint.

Run from the repository root:

    python benchmarks/dde.py            # full run (about 6 minutes on 2 cores)
    python benchmarks/dde.py --quick    # smoke run (< 1 minute: few tolerances, one timing)
    python benchmarks/dde.py --out DIR  # where the CSV and PNGs go (benchmarks/results/)

The peers are optional (``pip install ".[bench-dde]"``: jitcdde, which compiles the right-hand
side to C and needs a C compiler, and ddeint); a peer that does not import is skipped with a
message.

Problems (final-time error against an independent reference; every solver integrates the same
equations from the same history):

1. Delayed Lotka-Volterra (the DiffEqFlux paper's DDE): ``x' = a x(t - 1) - b x y``,
   ``y' = -c y + d x y``, ``p = [1.5, 1, 3, 1]``, history ``h = 1`` (both components),
   ``t in [0, 10]``; max abs error at ``t = 10``.
2. Mackey-Glass: ``x' = 0.2 x(t - 17) / (1 + x(t - 17)^10) - 0.1 x``, ``h = 0.5``,
   ``t in [0, 300]``; abs error at ``t = 300``. The solution is chaotic, but errors grow
   slowly (largest Lyapunov exponent of order 0.01 per unit time): two tight independent
   references (DOP853 method of steps at rtol 1e-13, autodiffeq Vern7 at rtol 1e-13) agree to
   < 6e-13 at every multiple of 50 up to t = 300, to 1.2e-12 at 350 and only to 2e-12-1.4e-11
   from 400 to 600. ``T = 300`` (about 18 lags) is the longest span at which the 1e-10 target
   stays two orders above the references' disagreement; the script prints the disagreement
   at ``T/3, 2T/3, T``.
3. State-dependent lag (C. A. H. Paul, *Developing a delay differential equation solver*,
   Appl. Numer. Math. 9 (1992); the first example of DKLAG6, Corwin, Sarafyan & Thompson
   1997): ``y' = y(t) y(ln y(t) - 1) / (t + 1)``, ``h = 1``, ``t in [0, 10]``, i.e. the lag
   ``tau(y, t) = t + 1 - ln y`` (autodiffeq ``dependent_lags=[tau]``, JiTCDDE
   ``y(0, log(y(0)) - 1)``). Exact solution: ``t + 1`` on ``[0, e - 1]``, ``exp((t + 1)/e)``
   on ``[e - 1, e^2 - 1]``, ``(e / (3 - ln(t + 1)))^e`` on ``[e^2 - 1, 10]`` (its second
   derivative jumps at ``e - 1``, where the delayed argument crosses 0, its third at
   ``e^2 - 1``, where it crosses ``e - 1``); relative error at ``t = 10`` (``y(10) = 60.18``).
   ``f`` reads the past at ``min(ln y - 1, t)``: the clamp never acts on an accurate state (the
   lag is at least 1), but a trial stage of an oversized step (one the error control would
   reject) can reach a state whose lag is negative, and autodiffeq then raises ("h(p, s) was
   asked for the future") rather than rejecting the step (Tsit5 and the default at rtol
   1e-4). ddeint is not run on this problem.

References. Problems 1 and 2: SciPy ``solve_ivp`` DOP853 at ``rtol = 1e-13``, ``atol = 1e-16``,
run lag interval by lag interval (``[k tau, (k + 1) tau]``) with the delayed term read from
the previous intervals' dense output or the history: the method of steps by hand, independent
of all three libraries; cross-checked against autodiffeq Vern7 at ``rtol = 1e-13``,
``atol = 1e-15`` (max abs difference printed). Problem 3: the exact solution; JiTCDDE at rtol
1e-13 and autodiffeq Vern7 at rtol 1e-12 are printed against it.

Methods and tolerances.

- autodiffeq: ``Tsit5``, ``Vern7``, ``BS3`` and the default (``alg=None``: AutoTsit5Rodas5P at
  moderate tolerances, AutoVern7Rodas5P at tight ones; the CSV records which) via
  ``ade.solve(DDEProblem(...), alg, rtol=rtol, atol=rtol * 1e-2, saveat=[T], dense=False)``
  at ``rtol = 1e-4 ... 1e-11``, plus 1e-2 and 1e-3 (so that the curves reach ddeint's errors)
  and 1e-12 (so that they reach 1e-10 on problem 3), flagged ``extra`` in the CSV.
- JiTCDDE (``jitcdde``): its adaptive Bogacki-Shampine 3(2) pair with a cubic Hermite past,
  the same ``rtol``/``atol = rtol * 1e-2`` from 1e-2 to 1e-13 (it needs rtol 1e-12-1e-13 to
  reach 1e-10 errors), ``min_step = 1e-14`` (its default 1e-10 stops tight runs). The
  right-hand side is compiled once per problem (``compile_C``; that time is reported
  separately and not counted); each timed solve is ``purge_past``, ``constant_past``,
  ``set_integration_parameters``, the initial-discontinuity treatment and ``integrate(T)``.
  Initial discontinuities: ``step_on_discontinuities()`` for the constant lags (problems 1 and
  2); problem 3's lag depends on the state, where that raises, so ``adjust_diff``, with
  ``shift_ratio = 1e-6`` (its default 1e-4 makes a zero-amplitude jump over ``[-1e-4, 0]``
  whose Hermite interpolant departs from ``h = 1``; the delayed argument crosses that window
  near ``t = e - 1``, which left an error floor of 6e-9).
- ddeint: ``ddeint(model, g, tt)`` on uniform grids ``tt`` of N intervals; its past is the
  linear interpolant of the grid values and its current state ``Y(t)`` is the last grid
  value (its documented way of writing a model), so its accuracy is set by the grid. The
  best attainable error is the smallest over the grids (N up to 30000; its cost grows like
  N^2, as each step rebuilds the interpolant over the whole past), and is compared with
  autodiffeq's best time at that error.

Timing: each solve runs once (for its error and counters); then seconds per solve is
``_common.time_call`` (warm-up, best of 3 loops of >= 0.2 s; ``--quick``: one loop of
>= 0.02 s) for solves under 0.25 s, the best of 3 solves under 1 s, else that one solve. The
sweep runs tolerance by tolerance, loose to tight, with every autodiffeq method and JiTCDDE in
turn, so that load from other jobs falls on all of them alike; a method stops once one of
its solves took more than 5 s (``--quick``: 0.5 s). Then the whole sweep of the problem is
timed again (``--rounds``, default 2, ``--quick`` 1; solves over 1 s are not repeated) and
each figure is the best over the rounds: on the shared 2-core machine this was written on,
the same solve measured a few seconds apart differed by up to 2x (the same in CPU time),
while the best over rounds a minute apart is reproducible to about 10-20 %.
BLAS runs single-threaded (OPENBLAS_NUM_THREADS=OMP_NUM_THREADS=MKL_NUM_THREADS=1 unless set).

Matched errors: for targets 1e-6, 1e-8, 1e-10 every method's time is interpolated along its
work-precision curve (log time against log error, ``_common.interp_time``; ``n/a`` outside the
measured range), and ``ratio = time(best autodiffeq method) / time(JiTCDDE)`` (> 1: JiTCDDE
faster). ddeint: its best error and time, and ``time(ddeint) / time(best autodiffeq)`` at that
error (if every autodiffeq point is more accurate, its cheapest point is used and the ratio is
a lower bound, printed with ``>``).

Outputs (in ``--out``): tables on stdout, ``dde.csv`` with every run, and ``dde_<problem>.png``
work-precision plots when matplotlib imports.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import bisect  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from _common import format_table, interp_time, time_call, write_csv  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402

import autodiffeq as ade  # noqa: E402

try:
    import jitcdde
    import symengine
except Exception as exc:  # noqa: BLE001 - any import failure means: skip the peer
    jitcdde = None
    JITCDDE_MISSING = f"{type(exc).__name__}: {exc}"
else:
    JITCDDE_MISSING = ""
try:
    from ddeint import ddeint
except Exception as exc:  # noqa: BLE001
    ddeint = None
    DDEINT_MISSING = f"{type(exc).__name__}: {exc}"
else:
    DDEINT_MISSING = ""

ADE_METHODS: tuple[str | None, ...] = ("Tsit5", "Vern7", "BS3", None)
ADE_RTOLS = tuple(10.0**-k for k in range(4, 12))
ADE_EXTRA_RTOLS = (1e-2, 1e-3, 1e-12)
JIT_RTOLS = tuple(10.0**-k for k in range(2, 14))
QUICK_ADE_RTOLS = (1e-3, 1e-6, 1e-9)
QUICK_JIT_RTOLS = (1e-3, 1e-6, 1e-9, 1e-12)
DDEINT_GRIDS = (100, 300, 1000, 3000, 10000, 30000)
QUICK_DDEINT_GRIDS = (300, 3000)
ATOL_FACTOR = 1e-2  # atol = rtol * ATOL_FACTOR
TARGETS = (1e-6, 1e-8, 1e-10)
REF_RTOL, REF_ATOL = 1e-13, 1e-16
JIT_MIN_STEP = 1e-14
CSV_HEADERS = (
    "problem", "library", "method", "resolved_alg", "rtol", "atol", "grid_intervals", "extra",
    "error", "error_kind", "seconds", "nf", "steps", "us_per_step", "compile_s", "retcode",
)


def ade_label(alg: str | None) -> str:
    return "default" if alg is None else alg


# --------------------------------------------------------------------------- problems
P_LV = np.array([1.5, 1.0, 3.0, 1.0])


def lv_f(u: np.ndarray, h: Any, p: np.ndarray, t: float) -> np.ndarray:
    a, b, c, d = p
    x, y = u
    xd = h(p, t - 1.0)[0]
    return np.array([a * xd - b * x * y, -c * y + d * x * y])


def lv_h(p: Any, s: float) -> np.ndarray:
    return np.ones(2)


MG_BETA, MG_GAMMA, MG_N, MG_TAU = 0.2, 0.1, 10, 17.0


def mg_f(u: np.ndarray, h: Any, p: Any, t: float) -> np.ndarray:
    xd = h(p, t - MG_TAU)
    return MG_BETA * xd / (1.0 + xd**MG_N) - MG_GAMMA * u


def mg_h(p: Any, s: float) -> np.ndarray:
    return np.array([0.5])


def _log(v: float) -> float:
    return math.log(v) if v > 0.0 else -745.0  # a trial stage may go negative


def sd_f(u: np.ndarray, h: Any, p: Any, t: float) -> np.ndarray:
    # the past at ln y - 1 = t - tau(y, t); clamped at t (see the module docstring)
    return u * h(p, min(_log(u[0]) - 1.0, t)) / (t + 1.0)


def sd_h(p: Any, s: float) -> np.ndarray:
    return np.ones(1)


def sd_lag(u: np.ndarray, p: Any, t: float) -> float:
    return t + 1.0 - _log(u[0])


def sd_exact(t: float) -> np.ndarray:
    e = math.e
    if t <= e - 1.0:
        y = t + 1.0
    elif t <= e * e - 1.0:
        y = math.exp((t + 1.0) / e)
    else:
        y = (e / (3.0 - math.log(t + 1.0))) ** e
    return np.array([y])


@dataclass
class Problem:
    name: str
    title: str
    f: Callable[..., np.ndarray]
    h: Callable[..., np.ndarray]
    tspan: tuple[float, float]
    p: Any
    constant_lags: tuple[float, ...] = ()
    dependent_lags: tuple[Callable[..., float], ...] = ()
    error_kind: str = "abs"  # "abs": max abs error; "rel": max relative error
    exact: Callable[[float], np.ndarray] | None = None
    # JiTCDDE: the right-hand side from (y, t) symbols, its keyword arguments, the constant
    # past, and "steps" (step_on_discontinuities) or "adjust" (adjust_diff) at the start
    jit_rhs: Callable[[Any, Any], list[Any]] | None = None
    jit_kwargs: dict[str, Any] = field(default_factory=dict)
    jit_past: tuple[float, ...] = ()
    jit_start: str = "steps"
    jit_shift_ratio: float = 1e-4
    # ddeint: model(Y, t) or None (not run)
    ddeint_model: Callable[[Any, float], np.ndarray] | None = None

    @property
    def dde(self) -> ade.DDEProblem:
        return ade.DDEProblem(self.f, None, self.h, self.tspan, self.p,
                              constant_lags=self.constant_lags,
                              dependent_lags=self.dependent_lags)

    def error(self, u: np.ndarray, ref: np.ndarray) -> float:
        u = np.asarray(u, dtype=float).reshape(ref.shape)
        if not np.all(np.isfinite(u)):
            return math.inf
        diff = np.abs(u - ref)
        if self.error_kind == "rel":
            diff = diff / np.abs(ref)
        return float(np.max(diff))


def _lv_jit(y: Any, t: Any) -> list[Any]:
    a, b, c, d = (float(v) for v in P_LV)
    return [a * y(0, t - 1) - b * y(0) * y(1), -c * y(1) + d * y(0) * y(1)]


def _mg_jit(y: Any, t: Any) -> list[Any]:
    xd = y(0, t - MG_TAU)
    return [MG_BETA * xd / (1 + xd**MG_N) - MG_GAMMA * y(0)]


def _sd_jit(y: Any, t: Any) -> list[Any]:
    return [y(0) * y(0, symengine.log(y(0)) - 1) / (t + 1)]


def _lv_ddeint(Y: Any, t: float) -> np.ndarray:
    a, b, c, d = P_LV
    x, y = Y(t)
    xd = Y(t - 1.0)[0]
    return np.array([a * xd - b * x * y, -c * y + d * x * y])


def _mg_ddeint(Y: Any, t: float) -> float:
    xd = Y(t - MG_TAU)
    return MG_BETA * xd / (1.0 + xd**MG_N) - MG_GAMMA * Y(t)


def problems() -> list[Problem]:
    return [
        Problem("lotka_volterra", "Delayed Lotka-Volterra (lag 1, t in [0, 10])", lv_f, lv_h,
                (0.0, 10.0), P_LV, constant_lags=(1.0,), jit_rhs=_lv_jit, jit_past=(1.0, 1.0),
                ddeint_model=_lv_ddeint),
        Problem("mackey_glass", "Mackey-Glass (lag 17, t in [0, 300])", mg_f, mg_h,
                (0.0, 300.0), None, constant_lags=(MG_TAU,), jit_rhs=_mg_jit, jit_past=(0.5,),
                ddeint_model=_mg_ddeint),
        # max_delay: the lag t + 1 - ln y stays below 11 on [0, 10]
        Problem("state_dependent", "State-dependent lag (Paul 1992, t in [0, 10])", sd_f, sd_h,
                (0.0, 10.0), None, dependent_lags=(sd_lag,), error_kind="rel",
                exact=sd_exact, jit_rhs=_sd_jit, jit_kwargs={"max_delay": 11.0},
                jit_past=(1.0,), jit_start="adjust", jit_shift_ratio=1e-6),
    ]


# --------------------------------------------------------------------------- references
def method_of_steps(prob: Problem, rtol: float = REF_RTOL, atol: float = REF_ATOL,
                    times: Sequence[float] = ()) -> dict[float, np.ndarray]:
    """DOP853 lag interval by lag interval (single constant lag), the delayed term read from
    the previous intervals' dense output: the state at ``times`` and at ``t1``."""
    (tau,) = prob.constant_lags
    t0, t1 = prob.tspan
    starts: list[float] = []
    pieces: list[Any] = []

    def h(p: Any, s: float) -> np.ndarray:
        if s <= t0:
            return prob.h(p, s)
        return pieces[bisect.bisect_left(starts, s) - 1](s)

    u = np.asarray(prob.h(prob.p, t0), dtype=float)
    t = t0
    while t < t1:
        tb = min(t + tau, t1)
        sol = solve_ivp(lambda s, v: prob.f(v, h, prob.p, s), (t, tb), u, method="DOP853",
                        rtol=rtol, atol=atol, dense_output=True)
        if not sol.success:
            raise RuntimeError(f"reference failed on [{t}, {tb}]: {sol.message}")
        starts.append(t)
        pieces.append(sol.sol)
        u, t = sol.y[:, -1], tb
    out = {float(s): np.asarray(h(prob.p, s), dtype=float) for s in times}
    out[float(t1)] = u
    return out


def reference(prob: Problem, quick: bool) -> np.ndarray:
    """The reference at t1, with the cross-checks printed."""
    t0, t1 = prob.tspan
    if prob.exact is not None:
        ref = prob.exact(t1)
        sol = ade.solve(prob.dde, "Vern7", rtol=1e-12, atol=1e-14, saveat=[t1], dense=False)
        msg = (f"{prob.title}: reference = exact solution, y({t1:g}) = {ref[0]:.12g}; "
               f"autodiffeq Vern7 (rtol 1e-12) {prob.error(sol.u[-1], ref):.2e}")
        if jitcdde is not None:
            try:
                jit = JitSolver(prob)
                u = jit.solve(1e-13)
                msg += f", JiTCDDE (rtol 1e-13) {prob.error(u, ref):.2e}"
            except Exception as exc:  # noqa: BLE001
                msg += f", JiTCDDE (rtol 1e-13) failed: {exc!s:.80}"
        print(msg + f" ({prob.error_kind} error)")
        return ref
    checks = [t0 + (t1 - t0) / 3, t0 + 2 * (t1 - t0) / 3]
    start = time.perf_counter()
    got = method_of_steps(prob, times=checks)
    secs = time.perf_counter() - start
    ref = got[float(t1)]
    sol = ade.solve(prob.dde, "Vern7", rtol=1e-13, atol=1e-15, saveat=[*checks, t1])
    diffs = [float(np.max(np.abs(np.asarray(sol.u[k]) - got[float(s)])))
             for k, s in enumerate([*checks, t1])]
    print(f"{prob.title}: reference DOP853 method of steps (rtol {REF_RTOL:g}, atol "
          f"{REF_ATOL:g}, {secs:.2f} s) vs autodiffeq Vern7 (rtol 1e-13): max abs difference "
          + ", ".join(f"{d:.1e} at t={s:g}" for d, s in zip(diffs, [*checks, t1])))
    if not quick:
        loose = method_of_steps(prob, rtol=1e-12, atol=1e-15)[float(t1)]
        print(f"  DOP853 method of steps at rtol 1e-12 vs 1e-13: {np.max(np.abs(loose - ref)):.1e}")
    return ref


# --------------------------------------------------------------------------- solvers
@dataclass
class Run:
    u: np.ndarray
    nf: int | None = None
    steps: int | None = None
    retcode: str = "Success"
    resolved: str = ""


class JitSolver:
    """One JiTCDDE integrator per problem, compiled once; ``solve`` starts from the past."""

    def __init__(self, prob: Problem) -> None:
        self.prob = prob
        start = time.perf_counter()
        self.dde = jitcdde.jitcdde(prob.jit_rhs(jitcdde.y, jitcdde.t), verbose=False,
                                   **prob.jit_kwargs)
        self.dde.compile_C()
        self.compile_s = time.perf_counter() - start

    def solve(self, rtol: float) -> np.ndarray:
        dde, prob = self.dde, self.prob
        t0, t1 = prob.tspan
        dde.purge_past()
        dde.constant_past(list(prob.jit_past), t0)
        dde.set_integration_parameters(rtol=rtol, atol=rtol * ATOL_FACTOR,
                                       min_step=JIT_MIN_STEP)
        if prob.jit_start == "steps":
            dde.step_on_discontinuities()
        else:
            dde.adjust_diff(prob.jit_shift_ratio)
        return np.array(dde.integrate(t1))

    def count_steps(self, rtol: float) -> tuple[int, int]:
        """(attempted, accepted) steps of one solve (an untimed extra run)."""
        dde = self.dde
        inner = dde.try_single_step
        counts = [0, 0]

        def counting(length: float) -> bool:
            ok = inner(length)
            counts[0] += 1
            counts[1] += bool(ok)
            return ok

        dde.try_single_step = counting
        try:
            self.solve(rtol)
        finally:
            del dde.try_single_step
        return counts[0], counts[1]


def ade_solver(prob: Problem, alg: str | None, rtol: float) -> Callable[[], Run]:
    dde = prob.dde
    t1 = prob.tspan[1]

    def run() -> Run:
        sol = ade.solve(dde, alg, rtol=rtol, atol=rtol * ATOL_FACTOR, saveat=[t1], dense=False)
        return Run(np.asarray(sol.u[-1]), sol.stats.nf, sol.stats.naccept, sol.retcode,
                   sol.alg.name)

    return run


def ddeint_solver(prob: Problem, n: int) -> Callable[[], Run]:
    t0, t1 = prob.tspan
    tt = np.linspace(t0, t1, n + 1)
    model = prob.ddeint_model

    scalar = np.size(prob.h(prob.p, t0)) == 1  # ddeint wants a float history for one state

    def g(t: float) -> Any:
        v = prob.h(prob.p, t)
        return float(v[0]) if scalar else v

    def run() -> Run:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yy = ddeint(model, g, tt)
        return Run(np.asarray(yy[-1], dtype=float))

    return run


def measure(fn: Callable[[], Any], repeat: int, min_time: float) -> tuple[Any, float]:
    """(result of one call, seconds per call): see the module docstring."""
    start = time.perf_counter()
    out = fn()
    first = time.perf_counter() - start
    return out, retime(fn, first, repeat, min_time)


def retime(fn: Callable[[], Any], secs: float, repeat: int, min_time: float) -> float:
    """Seconds per call of ``fn``, which took ``secs`` once: that figure above 1 s, the best of
    it and two more calls above 0.25 s, else ``time_call``."""
    if secs > 1.0:
        return secs
    if secs > 0.25:
        best = secs
        for _ in range(1 if repeat == 1 else 2):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        return best
    return time_call(fn, repeat=repeat, min_time=min_time)


# --------------------------------------------------------------------------- benchmark
def benchmark(prob: Problem, ref: np.ndarray, args: argparse.Namespace) -> list[list[Any]]:
    """All rows (CSV_HEADERS) for one problem."""
    quick = args.quick
    repeat, min_time = (1, 0.02) if quick else (3, 0.2)
    budget = 0.5 if quick else 5.0
    rows: list[list[Any]] = []
    timed: list[tuple[list[Any], Callable[[], Any]]] = []  # (row, solve) for later rounds

    def row(library: str, method: str, resolved: str, rtol: float | None, grid: int | None,
            extra: bool, run: Run | None, secs: float | None, compile_s: float | None = None,
            retcode: str | None = None, fn: Callable[[], Any] | None = None) -> None:
        err = prob.error(run.u, ref) if run is not None else None
        per_step = secs / run.steps * 1e6 if run and run.steps and secs else None
        rows.append([prob.name, library, method, resolved, rtol,
                     None if rtol is None else rtol * ATOL_FACTOR, grid, extra, err,
                     prob.error_kind, secs, run.nf if run else None,
                     run.steps if run else None, per_step, compile_s,
                     retcode or (run.retcode if run else "")])
        if fn is not None and secs is not None:
            timed.append((rows[-1], fn))

    # autodiffeq and JiTCDDE, tolerance by tolerance (loose to tight) with every method in
    # turn, so that load from other jobs falls on all methods alike
    ade_rtols = set(QUICK_ADE_RTOLS if quick else ADE_RTOLS + ADE_EXTRA_RTOLS)
    jit_rtols = set(QUICK_JIT_RTOLS if quick else JIT_RTOLS)
    jit = None
    if jitcdde is None:
        print(f"  JiTCDDE skipped (not installed: {JITCDDE_MISSING})")
    else:
        jit = JitSolver(prob)
        print(f"  JiTCDDE: compile_C took {jit.compile_s:.2f} s (not counted in the timings)")
    stopped: set[str] = set()

    def over_budget(label: str, secs: float, rtol: float) -> None:
        if secs > budget:
            stopped.add(label)
            print(f"  {label}: {secs:.2f} s at rtol {rtol:g}; tighter ones skipped")

    for rtol in sorted(ade_rtols | jit_rtols, reverse=True):
        extra = rtol not in ADE_RTOLS
        for alg in ADE_METHODS if rtol in ade_rtols else ():
            label = ade_label(alg)
            if label in stopped:
                continue
            solve = ade_solver(prob, alg, rtol)
            try:
                run, secs = measure(solve, repeat, min_time)
            except Exception as exc:  # noqa: BLE001 - recorded, the sweep goes on
                row("autodiffeq", label, "", rtol, None, extra, None, None,
                    retcode=f"error: {type(exc).__name__}: {exc!s:.120}")
                continue
            row("autodiffeq", label, run.resolved, rtol, None, extra, run, secs, fn=solve)
            over_budget(label, secs, rtol)
        if jit is None or rtol not in jit_rtols or "JiTCDDE" in stopped:
            continue
        def jit_solve(r: float = rtol) -> np.ndarray:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return jit.solve(r)

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                u, secs = measure(jit_solve, repeat, min_time)
                _, accepted = jit.count_steps(rtol)
        except Exception as exc:  # noqa: BLE001 - UnsuccessfulIntegration and the like
            row("jitcdde", "JiTCDDE", "BS3 (C)", rtol, None, extra, None, None, jit.compile_s,
                f"error: {type(exc).__name__}: {exc!s:.100}")
            continue
        row("jitcdde", "JiTCDDE", "BS3 (C)", rtol, None, extra, Run(u, None, accepted), secs,
            jit.compile_s, fn=jit_solve)
        over_budget("JiTCDDE", secs, rtol)

    # ddeint
    if prob.ddeint_model is None:
        print("  ddeint not run (state-dependent lag)")
    elif ddeint is None:
        print(f"  ddeint skipped (not installed: {DDEINT_MISSING})")
    else:
        last: tuple[int, float] | None = None
        limit = 30.0
        for n in QUICK_DDEINT_GRIDS if quick else DDEINT_GRIDS:
            if not quick and last is not None and last[1] * (n / last[0]) ** 2 > limit:
                print(f"  ddeint: N = {n} skipped (predicted > {limit:g} s)")
                break
            solve = ddeint_solver(prob, n)
            run, secs = measure(solve, repeat, min_time)
            run.steps = n
            row("ddeint", "ddeint", "vode + linear past", None, n, False, run, secs, fn=solve)
            last = (n, secs)

    # further timing rounds, in the same order: each figure is the best over the rounds
    for _ in range(args.rounds - 1):
        for r, fn in timed:
            if r[10] <= 1.0:
                r[10] = min(r[10], retime(fn, r[10], repeat, min_time))
                r[13] = r[10] / r[12] * 1e6 if r[12] else None
    order = [*(ade_label(a) for a in ADE_METHODS), "JiTCDDE", "ddeint"]
    rows.sort(key=lambda r: (order.index(r[2]), -(r[4] or 0.0), r[6] or 0))
    return rows


# --------------------------------------------------------------------------- reports
def curves(rows: list[list[Any]]) -> dict[str, list[tuple[float, float]]]:
    """``{method: [(error, seconds), ...]}`` over the successful runs."""
    out: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if r[8] is not None and r[10] is not None and math.isfinite(r[8]) and r[8] > 0:
            out.setdefault(r[2], []).append((r[8], r[10]))
    return out


def time_at(cv: list[tuple[float, float]], target: float) -> tuple[float | None, bool]:
    """Time at error ``target``; ``(t, True)`` when every point is more accurate than
    ``target`` (then ``t`` is the cheapest point's: an upper bound)."""
    if not cv:
        return None, False
    t = interp_time(cv, target)
    if t is not None:
        return t, False
    if all(e <= target for e, _ in cv):
        return min(s for _, s in cv), True
    return None, False


def report(prob: Problem, rows: list[list[Any]]) -> list[list[Any]]:
    """Print the tables of one problem; return its summary rows."""
    print(f"\n{prob.title}: {prob.error_kind} error at t = {prob.tspan[1]:g}, "
          f"atol = rtol * {ATOL_FACTOR:g}")
    print(format_table(
        ("library", "method", "resolved", "rtol", "N", "error", "s/solve", "nf", "steps",
         "us/step", "retcode"),
        [[r[1], r[2], r[3], r[4], r[6], r[8], r[10], r[11], r[12], r[13], r[15][:48]]
         for r in rows]))
    cv = curves(rows)
    ade_names = [ade_label(a) for a in ADE_METHODS if ade_label(a) in cv]
    table, summary = [], []
    for target in TARGETS:
        times = {m: interp_time(cv[m], target) for m in ade_names}
        found = [(t, m) for m, t in times.items() if t is not None]
        t_best, m_best = min(found) if found else (None, None)
        t_jit = interp_time(cv["JiTCDDE"], target) if "JiTCDDE" in cv else None
        ratio = t_best / t_jit if t_best is not None and t_jit is not None else None
        table.append([target, *(times[m] for m in ade_names), m_best, t_best, t_jit, ratio])
        summary.append([prob.name, target, m_best, t_best, t_jit, ratio])
    print(f"\n{prob.title}: seconds per solve at matched errors (ratio = best autodiffeq / "
          "JiTCDDE; > 1: JiTCDDE faster)")
    print(format_table(("target", *ade_names, "ade best", "ade s", "JiTCDDE s", "ratio"),
                       table))
    if "ddeint" in cv:
        e_dd, t_dd = min(cv["ddeint"])
        n_dd = next(r[6] for r in rows if r[2] == "ddeint" and r[8] == e_dd)
        best = [(t, m, bound) for m in ade_names
                for t, bound in [time_at(cv[m], e_dd)] if t is not None]
        t_ade, m_ade, bound = min(best) if best else (None, None, False)
        t_jit, jit_bound = time_at(cv.get("JiTCDDE", []), e_dd)
        speed = t_dd / t_ade if t_ade else None
        msg = f"\nddeint at its best error: {e_dd:.2e} with N = {n_dd} ({t_dd:.3g} s)"
        if t_ade is not None and speed is not None:
            msg += (f"; best autodiffeq at that error: {m_ade} {t_ade:.3g} s"
                    + (" (its cheapest point, already more accurate)" if bound else "")
                    + f" -> ddeint takes {'>' if bound else ''}{speed:.0f}x as long")
        if t_jit is not None:
            msg += f"; JiTCDDE {t_jit:.3g} s" + (" (cheapest point)" if jit_bound else "")
        print(msg)
        summary.append([prob.name, "ddeint", n_dd, e_dd, t_dd, m_ade, t_ade, speed, bound])
    return summary


def plot(prob: Problem, rows: list[list[Any]], out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:  # noqa: BLE001 - plots are optional
        return
    cv = curves(rows)
    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    for i, (name, pts) in enumerate(cv.items()):
        pts = sorted(pts)
        ax.loglog([e for e, _ in pts], [s for _, s in pts], marker="osD^v<>ph*"[i % 9],
                  linestyle="-" if name in {ade_label(a) for a in ADE_METHODS} else "--",
                  label=name)
    ax.set_xlabel(f"final-time error ({prob.error_kind})")
    ax.set_ylabel("seconds per solve")
    ax.set_title(prob.title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"dde_{prob.name}.png"
    fig.savefig(path)
    plt.close(fig)
    print(f"wrote {path}")


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


def check_registry() -> None:
    names = {p.name for p in ade.registry().problem_types()}
    if "DDE" not in names:
        raise SystemExit("autodiffeq has no DDE problem type registered (installed metadata "
                         "older than the dde plugin?): reinstall the project, pip install -e .")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fast smoke run (noisier timings)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--rounds", type=int, default=None,
                    help="timing rounds over each problem's sweep (default 2, --quick 1)")
    args = ap.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 2
    check_registry()
    start = time.perf_counter()
    print(f"python {platform.python_version()}, numpy {np.__version__}, "
          f"jitcdde {getattr(jitcdde, '__version__', 'n/a') if jitcdde else 'not installed'}, "
          f"ddeint {'installed' if ddeint else 'not installed'}; "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}; {provenance()}")
    all_rows, summary = [], []
    for prob in problems():
        ref = reference(prob, args.quick)
        rows = benchmark(prob, ref, args)
        all_rows += rows
        summary += report(prob, rows)
        plot(prob, rows, args.out)
    write_csv(args.out / "dde.csv", CSV_HEADERS, all_rows)
    print(f"\nwrote {args.out / 'dde.csv'}")
    print("\nSummary (seconds per solve at matched errors; ratio = best autodiffeq / JiTCDDE):")
    print(format_table(("problem", "target", "ade best", "ade s", "JiTCDDE s", "ratio"),
                       [r for r in summary if r[1] != "ddeint"]))
    dd = [r for r in summary if r[1] == "ddeint"]
    if dd:
        print(format_table(("problem", "", "ddeint N", "best error", "ddeint s", "ade best",
                            "ade s", "ddeint/ade", "ade bound"), dd))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
