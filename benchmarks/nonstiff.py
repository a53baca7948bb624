"""Non-stiff work-precision benchmark: autodiffeq (Tsit5, Vern7, DP5) vs SciPy solve_ivp.

Run from the repository root:

    python benchmarks/nonstiff.py            # full run (a few minutes at most)
    python benchmarks/nonstiff.py --quick    # smoke run (one timing measurement per point)
    python benchmarks/nonstiff.py --out DIR  # where the CSV and PNGs go (benchmarks/results/)

See benchmarks/README.md for what is measured and how the speedup ratios are defined.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _common import format_table, interp_time, plot_work_precision, time_call, write_csv
from scipy.integrate import solve_ivp

import autodiffeq as ade

ADE_METHODS = ("Tsit5", "Vern7", "DP5")
SCIPY_METHODS = ("RK45", "DOP853", "LSODA")
RTOLS = tuple(10.0**-k for k in range(4, 11))
TARGETS = tuple(10.0**-k for k in range(5, 10))
REF_RTOL, REF_ATOL = 1e-13, 1e-15
CSV_HEADERS = (
    "problem", "method", "library", "rtol", "atol", "error", "seconds", "nf", "steps", "retcode"
)


@dataclass
class Problem:
    name: str
    title: str
    f: Callable[[np.ndarray, Any, float], np.ndarray]
    u0: np.ndarray
    tspan: tuple[float, float]
    p: Any
    atol_factor: float  # atol = rtol * atol_factor
    extra_targets: tuple[float, ...] = ()  # reported besides TARGETS, not judged


def lotka_volterra(u: np.ndarray, p: np.ndarray, t: float) -> np.ndarray:
    a, b, c, d = p
    x, y = u
    return np.array([a * x - b * x * y, -c * y + d * x * y])


def lorenz96(u: np.ndarray, p: float, t: float) -> np.ndarray:
    # du_i/dt = (u_{i+1} - u_{i-2}) u_{i-1} - u_i + F, cyclic
    return (np.roll(u, -1) - np.roll(u, 2)) * np.roll(u, 1) - u + p


def problems() -> list[Problem]:
    u96 = np.full(1000, 8.0)
    u96[0] += 0.01
    return [
        Problem("lotka_volterra", "Lotka-Volterra", lotka_volterra, np.array([1.0, 1.0]),
                (0.0, 10.0), np.array([1.5, 1.0, 3.0, 1.0]), 1e-3),
        # From the uniform state the perturbation grows ~e^(8t): errors are amplified ~1e6-1e7
        # by t = 2, so errors below ~1e-6 are not resolvable (see README); hence extra targets.
        Problem("lorenz96", "Lorenz-96 (N=1000, F=8)", lorenz96, u96, (0.0, 2.0), 8.0, 1.0,
                (1e-1, 1e-2, 1e-3, 1e-4)),
    ]


@dataclass
class Run:
    u: np.ndarray
    nf: int
    steps: int  # accepted steps
    retcode: str


def make_solver(prob: Problem, method: str, rtol: float, atol: float) -> Callable[[], Run]:
    """A zero-argument callable doing one solve (final state only, no dense output)."""
    t0, t1 = prob.tspan
    if method in ADE_METHODS:
        ode = ade.ODEProblem(prob.f, prob.u0, prob.tspan, prob.p)

        def run_ade() -> Run:
            sol = ade.solve(ode, method, rtol=rtol, atol=atol, saveat=[t1], dense=False)
            return Run(np.asarray(sol.u[-1]), sol.stats.nf, sol.stats.naccept, sol.retcode)

        return run_ade
    f, p = prob.f, prob.p

    def fun(t: float, u: np.ndarray) -> np.ndarray:
        return f(u, p, t)

    def run_scipy() -> Run:
        sol = solve_ivp(fun, prob.tspan, prob.u0, method=method, rtol=rtol, atol=atol,
                        t_eval=None, dense_output=False)
        return Run(sol.y[:, -1], sol.nfev, len(sol.t) - 1, "Success" if sol.success else "Fail")

    return run_scipy


def reference(prob: Problem) -> tuple[np.ndarray, float]:
    """DOP853 at rtol 1e-13, checked against Vern7 at the same tolerances (max abs diff)."""
    ref = make_solver(prob, "DOP853", REF_RTOL, REF_ATOL)()
    ref2 = make_solver(prob, "Vern7", REF_RTOL, REF_ATOL)()
    diff = float(np.max(np.abs(ref.u - ref2.u)))
    print(f"{prob.title}: reference DOP853 (rtol={REF_RTOL:g}, atol={REF_ATOL:g}) vs Vern7 "
          f"(same tolerances): max abs difference {diff:.2e}")
    return ref.u, diff


def benchmark(prob: Problem, ref: np.ndarray, repeat: int, min_time: float) -> list[list[Any]]:
    """All rows (see CSV_HEADERS) for one problem."""
    rows = []
    for rtol in RTOLS:
        atol = rtol * prob.atol_factor
        for method in ADE_METHODS + SCIPY_METHODS:
            solver = make_solver(prob, method, rtol, atol)
            run = solver()
            err = float(np.max(np.abs(run.u - ref)))
            secs = time_call(solver, repeat=repeat, min_time=min_time)
            lib = "autodiffeq" if method in ADE_METHODS else "scipy"
            rows.append([prob.name, method, lib, rtol, atol, err, secs, run.nf, run.steps,
                         run.retcode])
    return rows


def curves(rows: list[list[Any]]) -> dict[str, list[tuple[float, float]]]:
    """``{method: [(error, seconds), ...]}`` from a problem's rows."""
    out: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        out.setdefault(r[1], []).append((r[5], r[6]))
    return out


def best_at(cv: dict[str, list[tuple[float, float]]], methods: tuple[str, ...],
            target: float) -> tuple[str | None, float | None]:
    """The fastest of ``methods`` at error ``target`` (interpolated), or ``(None, None)``."""
    found = [(t, m) for m in methods if (t := interp_time(cv[m], target)) is not None]
    if not found:
        return None, None
    t, m = min(found)
    return m, t


def ratio(num: float | None, den: float | None) -> float | None:
    return None if num is None or den is None else num / den


def speedups(heading: str, rows: list[list[Any]], targets: tuple[float, ...],
             ref_diff: float) -> None:
    """Print the ratios: best of (Tsit5, Vern7) vs best of (RK45, DOP853), and LSODA's."""
    cv = curves(rows)
    table = []
    for target in targets:
        m_ade, t_ade = best_at(cv, ("Tsit5", "Vern7"), target)
        m_sp, t_sp = best_at(cv, ("RK45", "DOP853"), target)
        t_lsoda = interp_time(cv["LSODA"], target)
        table.append([target, m_ade, t_ade, m_sp, t_sp, ratio(t_sp, t_ade), t_lsoda,
                      ratio(t_lsoda, t_ade), "yes" if target < 10 * ref_diff else ""])
    print(f"\n{heading} (ratio = scipy s / ade s; >= 1: autodiffeq faster)")
    print(format_table(("target err", "ade best", "ade s", "scipy best", "scipy s",
                        "speedup", "LSODA s", "LSODA ratio", "< 10x ref diff"), table))


def overhead(repeat: int, min_time: float) -> None:
    """Per-step overhead of Tsit5 on u' = -u (2 states): (solve - nf * f) / steps."""
    def f(u: np.ndarray, p: Any, t: float) -> np.ndarray:
        return -u

    u0 = np.array([1.0, 2.0])
    t1 = 410.0  # rtol 1e-6 with a negligible atol: constant relative accuracy, ~2000 steps
    ode = ade.ODEProblem(f, u0, (0.0, t1))
    kw: dict[str, Any] = dict(rtol=1e-6, atol=1e-300, saveat=[t1], dense=False)
    sol = ade.solve(ode, "Tsit5", **kw)
    t_solve = time_call(lambda: ade.solve(ode, "Tsit5", **kw), repeat=repeat, min_time=min_time)

    def f_loop(n: int = 1000) -> None:
        for _ in range(n):
            f(u0, None, 0.0)

    t_f = time_call(f_loop, repeat=repeat, min_time=min_time) / 1000
    nf, steps = sol.stats.nf, sol.stats.naccept
    per_step = (t_solve - nf * t_f) / steps
    print(f"\nPer-step overhead, Tsit5 on u' = -u (2 states, t in [0, {t1:g}], rtol 1e-6): "
          f"{steps} steps ({sol.stats.nreject} rejected), nf={nf}, solve {t_solve * 1e3:.2f} ms, "
          f"f call {t_f * 1e6:.3f} us -> overhead {per_step * 1e6:.1f} us/step")

    sp = solve_ivp(lambda t, u: f(u, None, t), (0.0, t1), u0, method="RK45", rtol=1e-6,
                   atol=1e-300)
    t_sp = time_call(lambda: solve_ivp(lambda t, u: f(u, None, t), (0.0, t1), u0,
                                       method="RK45", rtol=1e-6, atol=1e-300),
                     repeat=repeat, min_time=min_time)
    sp_steps = len(sp.t) - 1
    print(f"  for comparison, SciPy RK45 on the same problem: {sp_steps} steps, nf={sp.nfev}, "
          f"overhead {(t_sp - sp.nfev * t_f) / sp_steps * 1e6:.1f} us/step")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fast smoke run (noisier timings)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    repeat, min_time = (1, 0.02) if args.quick else (3, 0.2)

    all_rows = []
    for prob in problems():
        ref, ref_diff = reference(prob)
        rows = benchmark(prob, ref, repeat, min_time)
        all_rows += rows
        print(f"\n{prob.title}: atol = rtol * {prob.atol_factor:g}, t in {prob.tspan}")
        print(format_table(("method", "rtol", "error", "s/solve", "nf", "steps", "retcode"),
                           [[r[1], r[3], r[5], r[6], r[7], r[8], r[9]] for r in rows]))
        png = args.out / f"work_precision_{prob.name}.png"
        plot_work_precision(png, f"Work-precision: {prob.title}", curves(rows),
                            dashed=SCIPY_METHODS)
        print(f"wrote {png}")
        speedups(f"Speedup at target error, {prob.title}", rows, TARGETS, ref_diff)
        if prob.extra_targets:
            speedups(f"Extra targets (not judged), {prob.title}", rows, prob.extra_targets,
                     ref_diff)
    write_csv(args.out / "nonstiff.csv", CSV_HEADERS, all_rows)
    print(f"\nwrote {args.out / 'nonstiff.csv'}")
    overhead(repeat, min_time)
    if not math.isfinite(sum(r[5] for r in all_rows)):
        print("warning: some runs produced non-finite errors")


if __name__ == "__main__":
    main()
