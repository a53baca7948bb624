"""Stiff work-precision benchmark: autodiffeq Rosenbrock solvers vs SciPy BDF, Radau, LSODA.

Run from the repository root:

    python benchmarks/stiff.py            # full run (about 5-8 minutes on 2 cores)
    python benchmarks/stiff.py --quick    # smoke run (about a minute)
    python benchmarks/stiff.py --out DIR  # where the CSV and PNGs go (benchmarks/results/)

Problems (see stiff_problems.py): ROBER, HIRES, Van der Pol (eps = 1e-6) and the 2-D
Brusselator (32 x 32, 2048 states, t in [0, 11.5]).

Jacobians. Small problems: every method gets the analytic Jacobian (autodiffeq through
``ODEProblem(jac=...)``, SciPy through ``solve_ivp(jac=...)``) except ``Rodas5P-FD``
(autodiffeq's default second-order finite differences). Brusselator: the judged methods get
only the sparsity pattern — ``Rodas5P`` through ``ODEProblem(jac_prototype=pattern)`` (finite
differences compressed by column colouring, 24 evaluations of f per Jacobian, sparse ``W``
factored by SuperLU) and ``BDF`` / ``Radau`` through ``solve_ivp(jac_sparsity=pattern)``
(SciPy's grouped differences, SuperLU); ``Rodas5P-jac`` and ``BDF-jac`` get the analytic sparse
Jacobian; LSODA takes no pattern and gets the analytic Jacobian as a dense array.

Tolerances: rtol = 1e-4 ... 1e-8, plus 1e-2, 1e-3 and 1e-9 for the three small problems
(extra points: the Rosenbrock methods are 10-100x more accurate than rtol at loose
tolerances, and without them their curves stop short of the 1e-4 target; on Van der Pol
Rodas5P's error is about rtol, so its curve needs rtol 1e-9 to reach the 1e-8 target;
flagged ``extra_rtol`` in the CSV). atol = rtol * 1e-6
(ROBER), rtol * 1e-4 (HIRES), rtol (Van der Pol, Brusselator).

The error is the largest relative error at the final time over the components whose
reference magnitude exceeds atol, against SciPy Radau at rtol = 1e-12 (cross-checked against
SciPy LSODA at the same tolerances, or BDF at rtol 1e-10 for the Brusselator, and against the
Test Set's published values for HIRES and Van der Pol). ``--quick`` uses BDF at rtol 1e-10 as
the Brusselator reference.

Timing: each solve runs once (for its error and counters); then seconds per solve is the best
of 5 ``time_call`` loops of >= 0.05 s for solves under 0.3 s, the best of 3 solves under 2 s,
of 2 under 4 s, else that one solve (``--quick``: the one solve, or one 0.02 s loop). Taking
the best of several repeats keeps the figures usable on a machine shared with other jobs. On
the Brusselator every method's sweep, loose to tight, has a time budget (seconds: Rodas5P and
BDF 60, Radau 40, LSODA 20, others 25): a tolerance whose predicted cost (1.5x the previous
solve) would overrun it is skipped, and a running solve that overruns is stopped from inside
``f`` and reported as ``timeout``. autodiffeq colours a sparsity pattern once per pattern
object (cached; ~5 ms).

Judged ratio, per target error 1e-4 ... 1e-8 (times interpolated along each work-precision
curve, linearly in log error / log time, as benchmarks/nonstiff.py does)::

    ratio       = time(best of SciPy BDF, Radau) / time(autodiffeq Rodas5P)
    BDF ratio   = time(SciPy BDF)                / time(autodiffeq Rodas5P)
    LSODA ratio = time(SciPy LSODA)              / time(autodiffeq Rodas5P)

(>= 1: autodiffeq faster).

BLAS runs single-threaded (OPENBLAS_NUM_THREADS=OMP_NUM_THREADS=MKL_NUM_THREADS=1 unless set
in the environment): on the 2-core machine this was written on, multithreaded OpenBLAS made
SuperLU factorisations (SciPy Radau/BDF with a sparse Jacobian) erratic, 1-12 s for the same
solve, and dense 2048 x 2048 LU slower (0.33 s vs 0.14 s).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from _common import format_table, interp_time, time_call, write_csv  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402
from stiff_problems import StiffProblem, all_problems  # noqa: E402

import autodiffeq as ade  # noqa: E402

RTOLS = tuple(10.0**-k for k in range(4, 9))
# Extra points for the small problems: looser ones because the Rosenbrock methods are 10-100x
# more accurate than rtol there, so without them their curves stop short of the 1e-4 (and
# 1e-5) targets; a tighter one because on Van der Pol Rodas5P's error is about rtol, so its
# curve would stop just short of the 1e-8 target.
EXTRA_RTOLS = (1e-2, 1e-3)
EXTRA_TIGHT_RTOLS = (1e-9,)
QUICK_RTOLS = (1e-2, 1e-4, 1e-6, 1e-8)
QUICK_LARGE_RTOLS = (1e-4,)
# Large (Brusselator) problem: seconds each method may spend on its sweep, loose to tight;
# a solve that would overrun is stopped from inside f and reported as "timeout".
LARGE_BUDGET = {"Rodas5P": 60.0, "BDF": 60.0, "Radau": 40.0, "LSODA": 20.0}
LARGE_BUDGET_DEFAULT = 25.0
QUICK_LARGE_METHODS = ("Rodas5P", "BDF")
QUICK_LARGE_BUDGET = 10.0
TARGETS = tuple(10.0**-k for k in range(4, 9))
REF_RTOL = 1e-12

# Small (dense) problems. label -> (autodiffeq solver, Jacobian source)
ADE_METHODS: dict[str, tuple[str, str]] = {
    "Rodas5P": ("Rodas5P", "jac"),
    "Rodas5P-FD": ("Rodas5P", "fd"),
    "Rodas4": ("Rodas4", "jac"),
    "Rosenbrock23": ("Rosenbrock23", "jac"),
    "AutoTsit5Rodas5P": ("AutoTsit5Rodas5P", "jac"),
}
# label -> (solve_ivp method, Jacobian source)
SCIPY_METHODS: dict[str, tuple[str, str]] = {
    "BDF": ("BDF", "jac"),
    "Radau": ("Radau", "jac"),
    "LSODA": ("LSODA", "jac"),
}
# The large sparse problem (Brusselator): the judged methods get only the sparsity pattern —
# autodiffeq ODEProblem(jac_prototype=...) (colour-compressed differences, sparse LU), SciPy
# solve_ivp(jac_sparsity=...) (grouped differences, sparse LU). "-jac": the analytic sparse
# Jacobian instead. LSODA takes no pattern: it gets the analytic Jacobian as a dense array.
LARGE_ADE_METHODS: dict[str, tuple[str, str]] = {
    "Rodas5P": ("Rodas5P", "sparsity"),
    "Rodas5P-jac": ("Rodas5P", "jac"),
}
LARGE_SCIPY_METHODS: dict[str, tuple[str, str]] = {
    "BDF": ("BDF", "sparsity"),
    "BDF-jac": ("BDF", "jac"),
    "Radau": ("Radau", "sparsity"),
    "LSODA": ("LSODA", "jac (dense)"),
}
CSV_HEADERS = (
    "problem", "method", "library", "jacobian", "rtol", "atol", "error", "seconds", "timing_n",
    "nf", "njac", "nlu", "naccept", "nreject", "retcode", "note", "extra_rtol",
)


class Timeout(Exception):
    """Raised from inside f when a solve runs past its deadline."""


@dataclass
class Run:
    u: np.ndarray | None
    nf: int | None
    njac: int | None
    nlu: int | None
    naccept: int | None
    nreject: int | None  # SciPy does not report rejected steps
    retcode: str
    runtime_warnings: int = 0  # NumPy overflow/invalid warnings raised during the solve


@dataclass
class Settings:
    quick: bool

    def rtols(self, prob: StiffProblem) -> tuple[float, ...]:
        large = prob.jac_sparsity is not None
        if self.quick:
            return QUICK_LARGE_RTOLS if large else QUICK_RTOLS
        return RTOLS if large else EXTRA_RTOLS + RTOLS + EXTRA_TIGHT_RTOLS

    def budget(self, prob: StiffProblem, label: str) -> float | None:
        """Seconds ``label`` may spend on ``prob`` (None: no limit; 0: not run)."""
        if prob.jac_sparsity is None:
            return None
        if self.quick:
            return QUICK_LARGE_BUDGET if label in QUICK_LARGE_METHODS else 0.0
        return LARGE_BUDGET.get(label, LARGE_BUDGET_DEFAULT)

    def measure(self, solver: Callable[[], Run], first: float) -> tuple[float, str]:
        """Seconds per solve (best of N) given the first solve's wall time ``first``."""
        if self.quick:
            if first >= 0.02:
                return first, "1"
            return time_call(solver, repeat=1, min_time=0.02), "1x loop"
        if first >= 4.0:
            return first, "1"
        if first >= 0.3:
            best = first
            for _ in range(2 if first < 2.0 else 1):
                t0 = time.perf_counter()
                solver()
                best = min(best, time.perf_counter() - t0)
            return best, "3" if first < 2.0 else "2"
        return time_call(solver, repeat=5, min_time=0.05), "5x loop"


# ------------------------------------------------------------------------------- solvers
def _deadline_f(f: Callable[..., Any], clock: list[float]) -> Callable[..., Any]:
    """``f`` raising :class:`Timeout` once ``time.perf_counter()`` passes ``clock[0]``."""
    def wrapped(*args: Any) -> Any:
        if time.perf_counter() > clock[0]:
            raise Timeout
        return f(*args)

    return wrapped


def make_solver(prob: StiffProblem, label: str, rtol: float, atol: float,
                clock: list[float] | None = None) -> Callable[[], Run]:
    """A zero-argument callable doing one solve (final state only). With ``clock``, the
    right-hand side raises :class:`Timeout` after ``clock[0]`` (perf_counter seconds)."""
    t1 = prob.tspan[1]
    f = prob.f if clock is None else _deadline_f(prob.f, clock)
    large = prob.jac_sparsity is not None
    ade_methods = LARGE_ADE_METHODS if large else ADE_METHODS
    if label in ade_methods:
        alg, jsrc = ade_methods[label]
        kw: dict[str, Any] = {}
        if jsrc == "jac":
            kw["jac"] = prob.jac
        elif jsrc == "sparsity":
            kw["jac_prototype"] = prob.jac_sparsity
        ode = ade.ODEProblem(f, prob.u0, prob.tspan, prob.p, **kw)

        def run_ade() -> Run:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("ignore", ade.SolverWarning)
                warnings.simplefilter("ignore", ade.StiffnessWarning)
                warnings.simplefilter("always", RuntimeWarning)
                sol = ade.solve(ode, alg, rtol=rtol, atol=atol, saveat=[t1], dense=False)
            st = sol.stats
            u = np.asarray(sol.u[-1]) if sol.success else None
            nwarn = sum(issubclass(w.category, RuntimeWarning) for w in caught)
            return Run(u, st.nf, st.njac, st.nfactor, st.naccept, st.nreject, sol.retcode,
                       nwarn)

        return run_ade

    method, jsrc = (LARGE_SCIPY_METHODS if large else SCIPY_METHODS)[label]
    p, jac = prob.p, prob.jac

    def fun(t: float, u: np.ndarray) -> np.ndarray:
        return f(u, p, t)

    kw = {}
    if jsrc == "sparsity":
        kw["jac_sparsity"] = prob.jac_sparsity
    elif jsrc == "jac (dense)":
        kw["jac"] = lambda t, u: jac(u, p, t).toarray()  # LSODA takes dense Jacobians only
    else:
        kw["jac"] = lambda t, u: jac(u, p, t)

    def run_scipy() -> Run:
        sol = solve_ivp(fun, prob.tspan, prob.u0, method=method, rtol=rtol, atol=atol, **kw)
        u = sol.y[:, -1] if sol.success else None
        return Run(u, sol.nfev, sol.njev, sol.nlu, len(sol.t) - 1, None,
                   "Success" if sol.success else f"Fail: {sol.message}")

    return run_scipy


def rel_error(u: np.ndarray | None, ref: np.ndarray, atol: float) -> float | None:
    """Max relative error over the components with ``|ref| > atol``."""
    if u is None:
        return None
    mask = np.abs(ref) > atol
    return float(np.max(np.abs(u[mask] - ref[mask]) / np.abs(ref[mask])))


def reference(prob: StiffProblem, quick: bool) -> np.ndarray:
    """SciPy Radau at rtol 1e-12 (analytic Jacobian), checked against an independent code and
    against the published Test Set value where there is one. The check is LSODA at the same
    tolerances for the small problems, and BDF at rtol 1e-10 for the Brusselator (LSODA's
    dense LU and BDF at 1e-12 are too slow there; Radau itself takes ~40-75 s on 2 cores).
    ``quick`` and the Brusselator: SciPy BDF at rtol 1e-10 only."""
    large = prob.jac_sparsity is not None
    kw: dict[str, Any] = dict(rtol=REF_RTOL, atol=prob.ref_atol,
                              jac=lambda t, u: prob.jac(u, prob.p, t))

    def fun(t: float, u: np.ndarray) -> np.ndarray:
        return prob.f(u, prob.p, t)

    method = "Radau"
    check: tuple[str, float] | None = ("BDF", 1e-10) if large else ("LSODA", REF_RTOL)
    if quick and large:
        method, check, kw["rtol"] = "BDF", None, 1e-10
    t0 = time.perf_counter()
    ref = solve_ivp(fun, prob.tspan, prob.u0, method=method, **kw)
    t_ref = time.perf_counter() - t0
    if not ref.success:
        raise RuntimeError(f"{prob.title}: reference solve failed: {ref.message}")
    u_ref = ref.y[:, -1]
    msg = (f"reference: SciPy {method} (rtol={kw['rtol']:g}, atol={prob.ref_atol:g}; "
           f"{len(ref.t) - 1} steps, {t_ref:.1f} s)")
    if check is not None:
        check_method, check_rtol = check
        other = solve_ivp(fun, prob.tspan, prob.u0, method=check_method,
                          **dict(kw, rtol=check_rtol))
        diff = rel_error(other.y[:, -1], u_ref, prob.ref_atol) if other.success else None
        msg += (f"; max rel diff vs SciPy {check_method} at rtol {check_rtol:g} "
                + (f"{diff:.1e}" if diff is not None else f"n/a ({other.message})"))
    if prob.known_final is not None:
        msg += f"; vs Test Set reference {rel_error(u_ref, prob.known_final, 0.0):.1e}"
    print(msg, flush=True)
    return u_ref


def methods_for(prob: StiffProblem) -> list[str]:
    if prob.jac_sparsity is not None:
        return [*LARGE_ADE_METHODS, *LARGE_SCIPY_METHODS]
    return [*ADE_METHODS, *SCIPY_METHODS]


def method_info(prob: StiffProblem, label: str) -> tuple[str, str]:
    """``(library, Jacobian source)`` of ``label`` on ``prob``."""
    large = prob.jac_sparsity is not None
    ade_methods = LARGE_ADE_METHODS if large else ADE_METHODS
    if label in ade_methods:
        return "autodiffeq", ade_methods[label][1]
    return "scipy", (LARGE_SCIPY_METHODS if large else SCIPY_METHODS)[label][1]


def _empty(base: list[Any], retcode: str, note: str, extra: bool) -> list[Any]:
    return base + [None, None, "", None, None, None, None, None, retcode, note, extra]


@dataclass
class Sweep:
    """One method's progress through the tolerances of one problem (time budget state)."""

    label: str
    lib: str
    jsrc: str
    budget: float | None
    spent: float = 0.0
    last: float = 0.0
    stop_note: str = ""


def benchmark(prob: StiffProblem, ref: np.ndarray, cfg: Settings) -> list[list[Any]]:
    """All rows (see CSV_HEADERS) for one problem, ordered by method then tolerance.

    The measurements run tolerance by tolerance, every method in turn at each one, so that a
    change of load on a shared machine affects the methods being compared alike."""
    sweeps = []
    for label in methods_for(prob):
        lib, jsrc = method_info(prob, label)
        budget = cfg.budget(prob, label)
        sweeps.append(Sweep(label, lib, jsrc, budget,
                            stop_note="not run in --quick" if budget == 0.0 else ""))
    rows: dict[tuple[str, float], list[Any]] = {}
    for rtol in cfg.rtols(prob):
        for sw in sweeps:
            rows[(sw.label, rtol)] = measure_one(prob, ref, cfg, sw, rtol)
    return [rows[(sw.label, rtol)] for sw in sweeps for rtol in cfg.rtols(prob)]


def measure_one(prob: StiffProblem, ref: np.ndarray, cfg: Settings, sw: Sweep,
                rtol: float) -> list[Any]:
    """The row of ``sw``'s method at ``rtol`` (updating its time-budget state)."""
    atol = prob.atol(rtol)
    extra = rtol in EXTRA_RTOLS or rtol in EXTRA_TIGHT_RTOLS
    base = [prob.name, sw.label, sw.lib, sw.jsrc, rtol, atol]
    budget = sw.budget
    if not sw.stop_note and budget is not None and sw.last > 0 \
            and sw.spent + 1.5 * sw.last > budget:
        sw.stop_note = f"time budget ({budget:g} s for this method) would be exceeded"
    if sw.stop_note:
        return _empty(base, "skipped", sw.stop_note, extra)
    clock = None if budget is None else [math.inf]
    solver = make_solver(prob, sw.label, rtol, atol, clock)
    t0 = time.perf_counter()
    if clock is not None and budget is not None:
        clock[0] = t0 + max(budget - sw.spent, 1.0)
    try:
        run = solver()
    except Timeout:
        elapsed = time.perf_counter() - t0
        sw.stop_note = f"stopped after {elapsed:.0f} s (time budget {budget:g} s)"
        sw.spent += elapsed
        return _empty(base, "timeout", sw.stop_note, extra)
    except Exception as exc:  # noqa: BLE001 - reported in the table, never faked
        sw.stop_note = f"raised ({type(exc).__name__}: {str(exc).splitlines()[0][:100]})"
        return _empty(base, "error", sw.stop_note, extra)
    first = time.perf_counter() - t0
    sw.spent += first
    sw.last = first
    if clock is not None:
        clock[0] = math.inf
    secs, n = cfg.measure(solver, first)
    note = ""
    if run.runtime_warnings:
        note = (f"{run.runtime_warnings} NumPy RuntimeWarning(s) (overflow/invalid "
                "value) during the solve")
    if run.retcode != "Success":
        secs = None  # a failed solve has no error to plot against
    return base + [rel_error(run.u, ref, atol), secs, n, run.nf, run.njac, run.nlu,
                   run.naccept, run.nreject, run.retcode, note, extra]


def warm_up() -> None:
    """One small solve per solver first, so that no measured solve pays for first-call costs
    (plugin loading, imports, caches)."""
    prob = all_problems()[0]
    for label in ("Rodas5P", "Rodas5P-FD", "Rodas4", "Rosenbrock23", "AutoTsit5Rodas5P",
                  "BDF", "Radau", "LSODA"):
        make_solver(prob, label, 1e-3, prob.atol(1e-3))()
    # the sparse paths (SuperLU, colouring code) on a small tridiagonal problem of its own,
    # so no pattern of the benchmark is coloured in advance
    import scipy.sparse as sp

    n = 20
    lap = sp.diags([np.ones(n - 1), -2.0 * np.ones(n), np.ones(n - 1)], [-1, 0, 1],
                   format="csc") * 100.0
    small = StiffProblem("warm", "warm-up", lambda u, p, t: lap @ u - u**3,
                         lambda u, p, t: sp.csc_matrix(lap - sp.diags(3.0 * u**2)),
                         np.linspace(0.0, 1.0, n), (0.0, 0.1), None, atol_factor=1.0,
                         jac_sparsity=(lap != 0).astype(float))
    for label in methods_for(small):
        make_solver(small, label, 1e-3, 1e-3)()


# ------------------------------------------------------------------------------- reporting
def curves(rows: list[list[Any]]) -> dict[str, list[tuple[float, float]]]:
    """``{method: [(error, seconds), ...]}`` over the successful rows of one problem."""
    out: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        out.setdefault(r[1], [])
        if r[6] is not None and r[7] is not None and r[6] > 0:
            out[r[1]].append((r[6], r[7]))
    return out


def print_table(prob: StiffProblem, rows: list[list[Any]]) -> None:
    table = []
    for r in rows:
        steps = (r[12] or 0) + (r[13] or 0)
        per_step = r[7] / steps * 1e6 if r[7] is not None and steps else None
        table.append([r[1], r[4], r[6], r[7], r[8], r[9], r[10], r[11], r[12],
                      "n/a" if r[2] == "scipy" and r[12] is not None else r[13],
                      None if per_step is None else round(per_step), r[14]])
    print(format_table(("method", "rtol", "error", "s/solve", "N", "nf", "njac", "nLU",
                        "naccept", "nreject", "us/step", "retcode"), table))
    for r in rows:
        if r[15] and r[14] not in ("skipped",):
            print(f"  note: {r[1]} rtol={r[4]:g}: {r[15]}")
    skipped: dict[tuple[str, str], int] = {}
    for r in rows:
        if r[14] == "skipped":
            skipped[(r[1], r[15])] = skipped.get((r[1], r[15]), 0) + 1
    for (label, why), count in skipped.items():
        print(f"  note: {label}: {count} tolerance(s) skipped: {why}")
    print("  (us/step: seconds per solve / attempted steps; SciPy reports accepted steps only)")


def best_at(cv: dict[str, list[tuple[float, float]]], methods: Sequence[str],
            target: float) -> tuple[str | None, float | None]:
    found = [(t, m) for m in methods if m in cv and (t := interp_time(cv[m], target)) is not None]
    if not found:
        return None, None
    t, m = min(found)
    return m, t


def ratio(num: float | None, den: float | None) -> float | None:
    return None if num is None or den is None else num / den


def judged_ratios(prob: StiffProblem, rows: list[list[Any]]) -> list[list[Any]]:
    """Per target error: Rodas5P's time, the better of SciPy BDF and Radau (on the
    Brusselator both with ``jac_sparsity``) and the ratios, BDF's and LSODA's ratios too."""
    cv = curves(rows)
    scipy_best = [m for m in ("BDF", "Radau") if m in cv]
    table = []
    for target in TARGETS:
        t_ade = interp_time(cv["Rodas5P"], target)
        m_sp, t_sp = best_at(cv, scipy_best, target)
        t_bdf = interp_time(cv["BDF"], target)
        t_lsoda = interp_time(cv["LSODA"], target)
        table.append([prob.name, target, t_ade, m_sp, t_sp, ratio(t_sp, t_ade),
                      ratio(t_bdf, t_ade), t_lsoda, ratio(t_lsoda, t_ade)])
    print(f"\nJudged ratio, {prob.title} (ratio = scipy s / Rodas5P s; >= 1: autodiffeq "
          "faster; n/a: target outside a curve's error range)")
    print(format_table(("target err", "Rodas5P s", "BDF/Radau best", "its s", "ratio",
                        "BDF ratio", "LSODA s", "LSODA ratio"), [r[1:] for r in table]))
    return table


def plot(path: Path, title: str, cv: dict[str, list[tuple[float, float]]],
         dashed: Sequence[str]) -> None:
    """Log-log work-precision PNG: error on x, seconds per solve on y."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = "osD^v<>ph*"
    fig, ax = plt.subplots(figsize=(7.5, 5.2), dpi=120)
    for i, (name, pts) in enumerate(cv.items()):  # points joined in rtol order
        if not pts:
            continue
        ax.loglog([e for e, _ in pts], [s for _, s in pts],
                  linestyle="--" if name in dashed else "-", marker=markers[i % len(markers)],
                  label=name)
    ax.set_xlabel("final-time error (max relative error, components with |ref| > atol)")
    ax.set_ylabel("seconds per solve")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: rtol 1e-4, 1e-6, 1e-8, one timing per point")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    cfg = Settings(quick=args.quick)
    start = time.perf_counter()
    print(f"stiff work-precision benchmark ({'quick' if cfg.quick else 'full'} run); timing: "
          + ("one solve (or a 0.02 s loop)" if cfg.quick else
             "best of 5 loops of >= 0.05 s (solves < 0.3 s), best of 3 (< 2 s), of 2 (< 4 s), "
             "else 1 solve")
          + f"; OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}")
    warm_up()
    all_rows: list[list[Any]] = []
    all_ratios: list[list[Any]] = []
    for prob in all_problems():
        rtols = ", ".join(f"{r:g}" for r in cfg.rtols(prob))
        print(f"\n=== {prob.title}: {prob.description}; t in {prob.tspan}; rtol in {{{rtols}}}"
              f", atol = rtol * {prob.atol_factor:g}", flush=True)
        if prob.jac_sparsity is not None:
            print("large problem: each method's sweep has a time budget (s): "
                  + ", ".join(f"{m} {cfg.budget(prob, m):g}" for m in methods_for(prob)))
        elif not cfg.quick:
            print(f"rtol {EXTRA_RTOLS[0]:g}, {EXTRA_RTOLS[1]:g} and {EXTRA_TIGHT_RTOLS[0]:g} are "
                  "extra points so that the curves reach the 1e-4 and 1e-8 targets")
        ref = reference(prob, cfg.quick)
        rows = benchmark(prob, ref, cfg)
        all_rows += rows
        print()
        print_table(prob, rows)
        png = args.out / f"work_precision_{prob.name}.png"
        plot(png, f"Stiff work-precision: {prob.title}", curves(rows),
             dashed=(*SCIPY_METHODS, *LARGE_SCIPY_METHODS))
        print(f"wrote {png}")
        all_ratios += judged_ratios(prob, rows)
        print(f"[{time.perf_counter() - start:.0f} s elapsed]", flush=True)
    write_csv(args.out / "stiff.csv", CSV_HEADERS, all_rows)
    print(f"\nwrote {args.out / 'stiff.csv'}")
    print("\nSummary of judged ratios (scipy best of BDF/Radau s / Rodas5P s; LSODA s / "
          "Rodas5P s)")
    print(format_table(("problem", "target err", "ratio", "best scipy", "BDF ratio",
                        "LSODA ratio"),
                       [[r[0], r[1], r[5], r[3], r[6], r[8]] for r in all_ratios]))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
