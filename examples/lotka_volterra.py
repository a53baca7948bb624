"""Lotka–Volterra predator–prey model solved with autodiffeq.

    dx/dt =  a x - b x y        (prey)
    dy/dt = -c y + d x y        (predators)

with p = (a, b, c, d) = (1.5, 1, 3, 1), u0 = (1, 1) and t in [0, 10]. The example

1. solves the problem with several explicit Runge–Kutta solvers (adaptive Tsit5, Vern7, DP5
   and BS3; fixed-step RK4) and compares each final state with an independent SciPy
   reference (``solve_ivp``, DOP853 at rtol = atol = 1e-13);
2. evaluates the Tsit5 dense output ``sol(t)`` on a fine grid and plots both populations and
   the phase portrait to a PNG;
3. shows ``saveat``: the solution saved at exactly the requested times;
4. runs a long solve (t in [0, 2000], Vern7 at rtol 1e-10) with a tqdm progress bar.

Run from anywhere::

    python examples/lotka_volterra.py [--out PATH]

Requires matplotlib and tqdm (``pip install ".[examples]"``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.integrate import solve_ivp

import autodiffeq as ade

P = (1.5, 1.0, 3.0, 1.0)
U0 = (1.0, 1.0)
TSPAN = (0.0, 10.0)
RTOL, ATOL = 1e-6, 1e-8
DEFAULT_OUT = Path(__file__).resolve().with_name("lotka_volterra.png")

# (solver name, keyword arguments of ade.solve)
SOLVERS: list[tuple[str, dict[str, object]]] = [
    ("Tsit5", {"rtol": RTOL, "atol": ATOL}),
    ("Vern7", {"rtol": RTOL, "atol": ATOL}),
    ("DP5", {"rtol": RTOL, "atol": ATOL}),
    ("BS3", {"rtol": RTOL, "atol": ATOL}),
    ("RK4", {"adaptive": False, "dt": 0.01}),
]


def lotka_volterra(u: np.ndarray, p: Sequence[float], t: float) -> np.ndarray:
    """Right-hand side ``f(u, p, t)`` of the Lotka–Volterra system (SciML argument order)."""
    a, b, c, d = p
    x, y = u
    return np.array([a * x - b * x * y, -c * y + d * x * y])


def reference_final_state(t1: float) -> np.ndarray:
    """The state at ``t1`` from SciPy's DOP853 at rtol = atol = 1e-13 (an independent code)."""
    ref = solve_ivp(
        lambda t, u: lotka_volterra(u, P, t),
        (TSPAN[0], t1),
        U0,
        method="DOP853",
        rtol=1e-13,
        atol=1e-13,
    )
    if not ref.success:
        raise RuntimeError(f"SciPy reference failed: {ref.message}")
    return ref.y[:, -1]


def compare_solvers(prob: ade.ODEProblem) -> dict[str, ade.Solution]:
    """Solve ``prob`` with each solver in :data:`SOLVERS` and print a comparison table."""
    u_ref = reference_final_state(prob.tspan[1])
    print(f"[1] solvers on t in {prob.tspan}; adaptive ones at rtol={RTOL:g}, atol={ATOL:g}")
    print(f"    reference u(10) = {np.array2string(u_ref, precision=10)} (SciPy DOP853, 1e-13)")
    print(
        f"    {'solver':<6} {'retcode':<8} {'u(10)':<26} {'max |err|':>9} "
        f"{'nf':>5} {'steps':>5} {'rejected':>8}"
    )
    sols: dict[str, ade.Solution] = {}
    for name, kwargs in SOLVERS:
        sol = ade.solve(prob, name, **kwargs)
        u_end = np.asarray(sol.u[-1])
        err = float(np.max(np.abs(u_end - u_ref)))
        state = np.array2string(u_end, precision=8, floatmode="fixed")
        label = name if kwargs.get("adaptive", True) else f"{name}*"
        print(
            f"    {label:<6} {sol.retcode:<8} {state:<26} {err:9.2e} "
            f"{sol.stats.nf:5d} {sol.stats.naccept:5d} {sol.stats.nreject:8d}"
        )
        sols[name] = sol
    print("    (* fixed step dt=0.01; steps = accepted steps, nf = right-hand-side calls)")
    return sols


def plot_solution(sol: ade.Solution, out: Path, n: int = 500) -> None:
    """Plot ``sol``'s dense output at ``n`` times: populations vs t and the phase portrait."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0, t1 = sol.prob.tspan
    ts = np.linspace(t0, t1, n)
    us = np.asarray(sol(ts))  # dense output, shape (n, 2)
    x, y = us[:, 0], us[:, 1]

    fig, (ax_t, ax_phase) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    ax_t.plot(ts, x, label="prey x")
    ax_t.plot(ts, y, label="predators y")
    ax_t.plot(sol.t, np.asarray(sol.u)[:, 0], ".", ms=3, color="C0", alpha=0.6)
    ax_t.plot(sol.t, np.asarray(sol.u)[:, 1], ".", ms=3, color="C1", alpha=0.6)
    ax_t.set_xlabel("t")
    ax_t.set_ylabel("population")
    ax_t.set_title(f"{sol.alg.name} dense output ({n} points; dots: steps)")
    ax_t.set_ylim(0.0, 1.2 * float(max(x.max(), y.max())))  # room for the legend
    ax_t.legend(loc="upper center", ncol=2)

    ax_phase.plot(x, y, color="C2")
    ax_phase.plot(x[0], y[0], "o", color="k", label="u0")
    ax_phase.set_xlabel("prey x")
    ax_phase.set_ylabel("predators y")
    ax_phase.set_title("phase portrait")
    ax_phase.legend(loc="upper right")

    fig.suptitle("Lotka–Volterra, p = [1.5, 1, 3, 1], u0 = [1, 1]")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def show_saveat(prob: ade.ODEProblem) -> None:
    """Save the Tsit5 solution only at t = 0, 0.5, ..., 10 and print those times."""
    sol = ade.solve(prob, "Tsit5", saveat=0.5)  # default tolerances rtol=1e-3, atol=1e-6
    print(f"[3] saveat=0.5 (Tsit5): {sol.retcode}, {sol.stats.naccept} steps")
    print(f"    sol.t = [{', '.join(f'{t:g}' for t in sol.t)}]")
    print(f"    sol.u.shape = {tuple(sol.u.shape)}; dense output kept: {sol.dense}")


def long_solve_with_progress(t1: float = 2000.0) -> None:
    """Solve over ``[0, t1]`` with Vern7 at rtol 1e-10 with a tqdm progress bar."""
    prob = ade.ODEProblem(lotka_volterra, U0, (0.0, t1), p=P)
    print(f"[4] long solve: t in [0, {t1:g}], Vern7, rtol=1e-10, atol=1e-12, progress=True")
    sys.stdout.flush()  # the bar goes to stderr; keep the two in order
    start = time.perf_counter()
    sol = ade.solve(prob, "Vern7", rtol=1e-10, atol=1e-12, progress=True)
    elapsed = time.perf_counter() - start
    sys.stderr.flush()
    err = float(np.max(np.abs(np.asarray(sol.u[-1]) - reference_final_state(t1))))
    print(
        f"    {sol.retcode}: {sol.stats.naccept} steps ({sol.stats.nreject} rejected), "
        f"nf={sol.stats.nf}, {elapsed:.2f} s; max |err| at t={t1:g}: {err:.2e}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the example; returns the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"PNG to write (default: {DEFAULT_OUT})"
    )
    args = parser.parse_args(argv)

    prob = ade.ODEProblem(lotka_volterra, U0, TSPAN, p=P)
    sols = compare_solvers(prob)

    plot_solution(sols["Tsit5"], args.out)
    print(f"[2] dense output sol(np.linspace(0, 10, 500)) of Tsit5 plotted to {args.out}")

    show_saveat(prob)
    long_solve_with_progress()
    return 0 if all(sol.success for sol in sols.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
