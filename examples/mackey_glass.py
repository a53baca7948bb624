"""The Mackey–Glass equation: a chaotic delay equation against an independent reference.

    dx/dt = beta x(t - tau) / (1 + x(t - tau)^n) - gamma x(t),     x(s) = 0.5 for s <= 0,

with beta = 0.2, gamma = 0.1, n = 10 and tau = 17, for t in [0, 500] (Mackey & Glass,
"Oscillation and chaos in physiological control systems", Science 197, 1977; tau = 17 is the
standard chaotic case, e.g. Farmer, "Chaotic attractors of an infinite-dimensional
dynamical system", Physica D 4, 1982). The example

1. computes an independent reference with SciPy: ``solve_ivp`` with DOP853 at rtol 1e-12,
   run interval by interval over ``[k tau, (k + 1) tau]``, each interval reading the delayed
   term ``x(t - tau)`` from the dense output of the intervals before it (the method of steps
   by hand; on each interval the equation is an ODE), and the same at rtol 1e-10 to show how
   far the reference itself can be trusted;
2. solves the problem with ``ade.solve(DDEProblem(...), alg)`` for Tsit5 and Vern7 at rtol
   1e-3, 1e-6 and 1e-9 (atol = rtol / 100), timing each solve (best of three);
3. compares each solution, through its dense output ``sol(t)`` on a grid of step 0.1, with
   the reference: the error at t = 150 (where solutions of this chaotic system still agree
   closely, so the error measures the solver rather than the chaos), the largest error over
   the whole span, and the time at which the solutions separate (the first time the difference
   exceeds 0.01; the system is chaotic, but with tau = 17 its largest Lyapunov exponent is
   only about 0.01 per time unit, so at tight tolerances that takes longer than t = 500:
   try ``--t1 2000``);
4. prints the discontinuities of the derivatives that the lag carries from t = 0 (t = 17, 34,
   ...: a method of order q steps onto the first q of them, so they are in ``sol.t``);
5. plots the series, the error against time and the delay embedding (x(t), x(t - tau)) of
   the attractor (``mackey_glass.png`` next to this file, or ``--out PATH``).

The script exits with status 1 if a solve fails or if, at rtol 1e-9, the error at t = 150
exceeds 100 * rtol. About 3 s::

    python examples/mackey_glass.py [--t1 500] [--out PATH]

Requires matplotlib (``pip install ".[examples]"``).
"""

from __future__ import annotations

import argparse
import bisect
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy.integrate import solve_ivp

import autodiffeq as ade

BETA, GAMMA, N, TAU = 0.2, 0.1, 10.0, 17.0
X_HISTORY = 0.5
T_COMPARE = 150.0
SEPARATED = 1e-2
TOLERANCES = (1e-3, 1e-6, 1e-9)
TIGHT = 1e-9
DEFAULT_OUT = Path(__file__).resolve().with_name("mackey_glass.png")


def mackey_glass(u: Any, h: Any, p: Any, t: float) -> Any:
    """Right-hand side ``f(u, h, p, t)``; ``h(p, t - TAU)`` is the state one lag ago."""
    x_lagged = h(p, t - TAU)
    return BETA * x_lagged / (1.0 + x_lagged**N) - GAMMA * u


def history(p: Any, s: float) -> np.ndarray:
    """``x(s) = 0.5`` for ``s <= 0``."""
    return np.array([X_HISTORY])


def scipy_reference(t1: float, rtol: float = 1e-12) -> tuple[Callable[[np.ndarray], np.ndarray],
                                                            int]:
    """The method of steps by hand: DOP853 on ``[k tau, (k+1) tau]``, the delayed term read
    from the earlier intervals' dense output. Returns ``x(t)`` (vectorised) and ``nfev``."""
    starts: list[float] = []
    pieces: list[Any] = []

    def past(s: float) -> float:
        if s <= 0.0:
            return X_HISTORY
        i = bisect.bisect_right(starts, s) - 1
        return float(pieces[i](s)[0])

    def rhs(t: float, x: np.ndarray) -> np.ndarray:
        xd = past(t - TAU)
        return BETA * xd / (1.0 + xd**N) - GAMMA * x

    t, x, nfev = 0.0, np.array([X_HISTORY]), 0
    while t < t1:
        b = min(t + TAU, t1)
        res = solve_ivp(rhs, (t, b), x, method="DOP853", rtol=rtol, atol=rtol * 1e-3,
                        dense_output=True)
        if not res.success:
            sys.exit(f"SciPy reference failed on [{t}, {b}]: {res.message}")
        starts.append(t)
        pieces.append(res.sol)
        nfev += res.nfev
        t, x = b, res.y[:, -1]

    def evaluate(ts: np.ndarray) -> np.ndarray:
        return np.array([past(s) for s in ts])

    return evaluate, nfev


def timed_solve(prob: ade.DDEProblem, alg: str, rtol: float) -> tuple[ade.Solution, float]:
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        sol = ade.solve(prob, alg, rtol=rtol, atol=rtol * 1e-2)
        best = min(best, time.perf_counter() - start)
    return sol, best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--t1", type=float, default=500.0, help="end time (500)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG path")
    args = ap.parse_args(argv)
    t1 = args.t1
    grid = np.round(np.arange(0.0, t1 + 1e-9, 0.1), 10)
    i_cmp = int(np.argmin(np.abs(grid - T_COMPARE)))

    start = time.perf_counter()
    reference, nfev = scipy_reference(t1)
    x_ref = reference(grid)
    print(f"[1] SciPy reference (DOP853, rtol 1e-12, {int(np.ceil(t1 / TAU))} intervals of "
          f"length tau): nfev={nfev}, {time.perf_counter() - start:.2f} s; "
          f"x({T_COMPARE:g}) = {x_ref[i_cmp]:.12f}")
    check = np.abs(scipy_reference(t1, rtol=1e-10)[0](grid) - x_ref)
    print(f"    the same at rtol 1e-10 differs from it by {check[i_cmp]:.1e} at t = "
          f"{T_COMPARE:g} and by at most {check.max():.1e} on [0, {t1:g}]")

    prob = ade.DDEProblem(mackey_glass, None, history, (0.0, t1), constant_lags=[TAU])
    print(f"[2] autodiffeq, Mackey-Glass on [0, {t1:g}] (times: best of 3)")
    print(f"    {'solver':<7} {'rtol':>6} {'steps':>6} {'nf':>7} {'time':>8}  "
          f"{'err(t=150)':>10} {'max err':>8}  separates (|diff| > {SEPARATED:g})")
    failed: list[str] = []
    solutions: dict[tuple[str, float], ade.Solution] = {}
    errors: dict[tuple[str, float], np.ndarray] = {}
    for alg in ("Tsit5", "Vern7"):
        for rtol in TOLERANCES:
            sol, seconds = timed_solve(prob, alg, rtol)
            if sol.retcode != "Success":
                failed.append(f"{alg} at rtol {rtol:g}: retcode {sol.retcode}")
                continue
            err = np.abs(np.asarray(sol(grid))[:, 0] - x_ref)
            solutions[(alg, rtol)] = sol
            errors[(alg, rtol)] = err
            apart = np.nonzero(err > SEPARATED)[0]
            where = f"at t = {grid[apart[0]]:.1f}" if len(apart) else f"not before t = {t1:g}"
            print(f"    {alg:<7} {rtol:>6.0e} {sol.stats.naccept:>6} {sol.stats.nf:>7} "
                  f"{seconds * 1e3:>6.1f} ms  {err[i_cmp]:>10.1e} {err.max():>8.1e}  {where}")
            if rtol == TIGHT and not err[i_cmp] <= 100 * rtol:
                failed.append(f"{alg} at rtol {rtol:g}: error {err[i_cmp]:.2e} at t = "
                              f"{T_COMPARE:g} exceeds 100 * rtol")

    for alg in ("Tsit5", "Vern7"):
        sol = solutions.get((alg, TIGHT))
        if sol is None:
            continue
        ts = set(np.asarray(sol.t).tolist())
        hit = [k * TAU for k in range(1, 10) if k * TAU <= t1 and k * TAU in ts]
        print(f"[3] {alg} (order {sol.alg.order:g}) stepped onto the discontinuities "
              f"t = {', '.join(f'{t:g}' for t in hit)}; fixed-point steps: "
              f"{sol.stats.extra['fixedpoint_steps']} (every step is shorter than tau)")

    if (("Vern7", TIGHT)) in solutions:
        plot(solutions[("Vern7", TIGHT)], grid, x_ref, errors, t1, args.out)
    print(f"total {time.perf_counter() - start:.1f} s")
    for message in failed:
        print(f"FAILED: {message}", file=sys.stderr)
    return 1 if failed else 0


def plot(sol: ade.Solution, grid: np.ndarray, x_ref: np.ndarray,
         errors: dict[tuple[str, float], np.ndarray], t1: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.asarray(sol(grid))[:, 0]
    fig = plt.figure(figsize=(13, 8))
    ax_series = fig.add_subplot(2, 1, 1)
    ax_series.plot(grid, x, lw=0.9, label="Vern7, rtol 1e-9")
    ax_series.plot(grid[::40], x_ref[::40], "k.", ms=3, label="SciPy method of steps")
    ax_series.set_xlabel("t")
    ax_series.set_ylabel("x(t)")
    ax_series.set_title(f"Mackey-Glass: beta={BETA:g}, gamma={GAMMA:g}, n={N:g}, tau={TAU:g}",
                        fontsize=10)
    ax_series.legend(loc="upper right", fontsize=8)

    ax_err = fig.add_subplot(2, 2, 3)
    for (alg, rtol), err in errors.items():
        ax_err.semilogy(grid[1:], np.maximum(err[1:], 1e-16), lw=0.7,
                        ls="-" if alg == "Tsit5" else "--", label=f"{alg}, rtol {rtol:g}")
    ax_err.axhline(SEPARATED, color="gray", lw=0.8, ls=":")
    ax_err.set_xlabel("t")
    ax_err.set_ylabel("|x - x_ref|")
    ax_err.set_title("error against the SciPy reference", fontsize=10)
    ax_err.legend(fontsize=7, ncol=2)

    ax_emb = fig.add_subplot(2, 2, 4)
    lag = int(round(TAU / 0.1))
    keep = grid >= min(100.0, t1 / 2)  # after the transient
    ax_emb.plot(x[lag:][keep[lag:]], x[:-lag][keep[lag:]], lw=0.5)
    ax_emb.set_xlabel("x(t)")
    ax_emb.set_ylabel(f"x(t - {TAU:g})")
    ax_emb.set_title("delay embedding of the attractor", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"[4] wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
