"""The Van der Pol oscillator with mu = 1e6: relaxation oscillations with the default
(stiffness-switching) solver and with Rosenbrock.

Hairer's unscaled form, with eps = 1 / mu = 1e-6 (the problem VDPOL of the Test Set for IVP
Solvers, extended from t = 2 to t = 6)::

    y1' = y2
    y2' = ((1 - y1^2) y2 - y1) / eps

y(0) = (2, 0). The solution creeps along the slow manifold y2 = y1 / (1 - y1^2) and jumps
between its branches in a time of order eps: the Jacobian has an eigenvalue of size ~1/eps
on the slow parts, so the problem is very stiff. The example

1. solves with the *default* solver (``ade.solve(prob)`` without ``alg``): at rtol = 1e-7
   that is ``AutoTsit5Rodas5P``, which runs Rodas5P on the slow branches and hands the fast
   jumps to Tsit5 (its switches are printed);
2. solves with ``Rodas5P`` and the analytic Jacobian;
3. runs the explicit ``Tsit5`` with ``maxiters=20000``: it warns that the problem is stiff and
   stops with retcode ``MaxIters`` far from t = 6;
4. compares the default and Rodas5P with SciPy's Radau (rtol = 1e-11) on a grid of 601 times
   and at t = 6 (and at t = 2 with the Test Set's published reference value);
5. plots y1 and y2 against t (``stiff_van_der_pol.png`` next to this file, or ``--out``).

Run::

    python examples/stiff_van_der_pol.py [--out PATH]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.integrate import solve_ivp

import autodiffeq as ade

EPS = 1e-6
U0 = (2.0, 0.0)
TSPAN = (0.0, 6.0)
RTOL, ATOL = 1e-7, 1e-7
SAVEAT = np.linspace(*TSPAN, 601)
VDPOL_T2 = np.array([0.1706167732170483e1, -0.8928097010247975e0])  # Test Set, y(2)
DEFAULT_OUT = Path(__file__).resolve().with_name("stiff_van_der_pol.png")


def van_der_pol(u: np.ndarray, eps: float, t: float) -> np.ndarray:
    y1, y2 = u[0], u[1]
    return np.array([y2, ((1.0 - y1 * y1) * y2 - y1) / eps])


def van_der_pol_jac(u: np.ndarray, eps: float, t: float) -> np.ndarray:
    y1, y2 = u[0], u[1]
    return np.array([[0.0, 1.0], [(-2.0 * y1 * y2 - 1.0) / eps, (1.0 - y1 * y1) / eps]])


def describe(name: str, sol: ade.Solution, seconds: float) -> None:
    st = sol.stats
    print(f"    {name}: retcode {sol.retcode}, {seconds:.2f} s, {st.naccept} steps "
          f"({st.nreject} rejected), nf={st.nf}, njac={st.njac}, nfactor={st.nfactor}")


def check_t2(prob: ade.ODEProblem, alg: str | None) -> None:
    """y(2) against the Test Set's reference value."""
    at2 = ade.solve(prob.remake(tspan=(0.0, 2.0)), alg, rtol=RTOL, atol=ATOL, saveat=[2.0])
    err2 = np.max(np.abs(np.asarray(at2.u[-1]) - VDPOL_T2) / np.abs(VDPOL_T2))
    print(f"    y(2) vs the Test Set reference: max relative error {err2:.2e}")


def default_solver(prob: ade.ODEProblem) -> ade.Solution:
    print(f"[1] ade.solve(prob) with the default solver, rtol={RTOL:g}, atol={ATOL:g}")
    t0 = time.perf_counter()
    # dense=True keeps the stepper (and its switch log) next to the saveat values
    sol = ade.solve(prob, rtol=RTOL, atol=ATOL, saveat=SAVEAT, dense=True)
    describe(f"default solver {sol.alg.name}", sol, time.perf_counter() - t0)
    if not sol.success:
        sys.exit("the default solver failed")
    stepper = sol.dense_output.stepper
    names = dict(zip(("nonstiff", "stiff"), stepper.names))
    print("    switches: " + ", ".join(f"t = {t:.6g} -> {names[kind]}"
                                       for t, kind in stepper.switches))
    check_t2(prob, None)
    return sol


def solve(prob: ade.ODEProblem, alg: str, step: int) -> ade.Solution:
    print(f"[{step}] {alg} with the analytic Jacobian, rtol={RTOL:g}, atol={ATOL:g}")
    t0 = time.perf_counter()
    sol = ade.solve(prob, alg, rtol=RTOL, atol=ATOL, saveat=SAVEAT)
    describe(alg, sol, time.perf_counter() - t0)
    if not sol.success:
        sys.exit(f"{alg} failed")
    check_t2(prob, alg)
    return sol


def explicit_attempt(prob: ade.ODEProblem) -> None:
    print("[3] explicit Tsit5, maxiters=20000")
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sol = ade.solve(prob, "Tsit5", rtol=RTOL, atol=ATOL, maxiters=20_000, dense=False)
    for w in caught:
        print(f"    caught {type(w.message).__name__}: {w.message}")
    describe("Tsit5", sol, time.perf_counter() - t0)
    print(f"    it reached t = {sol.t[-1]:.4g} of {TSPAN[1]:g}")


def compare(sols: dict[str, ade.Solution]) -> np.ndarray:
    print("[4] SciPy Radau (rtol=atol=1e-11, analytic Jacobian) at the same times")
    t0 = time.perf_counter()
    ref = solve_ivp(lambda t, u: van_der_pol(u, EPS, t), TSPAN, U0, method="Radau",
                    rtol=1e-11, atol=1e-11, t_eval=SAVEAT,
                    jac=lambda t, u: van_der_pol_jac(u, EPS, t))
    if not ref.success:
        sys.exit(f"Radau failed: {ref.message}")
    print(f"    Radau: {time.perf_counter() - t0:.2f} s, nfev={ref.nfev}, njev={ref.njev}, "
          f"nlu={ref.nlu}")
    y = ref.y.T
    for name, sol in sols.items():
        u = np.asarray(sol.u)
        end = np.abs(u[-1] - y[-1]) / np.abs(y[-1])
        grid = np.max(np.abs(u[:, 0] - y[:, 0]))
        print(f"    {name}: relative error at t = 6: y1 {end[0]:.2e}, y2 {end[1]:.2e}; "
              f"max |y1 - y1_radau| over the grid {grid:.2e}")
    return y


def plot(sols: dict[str, ade.Solution], ref: np.ndarray, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 6), dpi=120, sharex=True)
    for (name, sol), style in zip(sols.items(), ("-", "--")):
        u = np.asarray(sol.u)
        ax1.plot(sol.t, u[:, 0], style, label=name)
        ax2.plot(sol.t, u[:, 1], style, label=name)
    ax1.plot(SAVEAT[::8], ref[::8, 0], "k.", ms=3, label="SciPy Radau")
    ax2.plot(SAVEAT[::8], ref[::8, 1], "k.", ms=3, label="SciPy Radau")
    ax1.set_ylabel("y1")
    ax2.set_ylabel("y2 (symlog)")
    ax2.set_yscale("symlog", linthresh=1.0)
    ax2.set_xlabel("t")
    ax1.set_title("Van der Pol, eps = 1e-6 (mu = 1e6)")
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    print(f"[5] wrote {out}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG path")
    args = ap.parse_args(argv)
    prob = ade.ODEProblem(van_der_pol, U0, TSPAN, EPS, jac=van_der_pol_jac)
    default = default_solver(prob)
    sols = {f"default ({default.alg.name})": default, "Rodas5P": solve(prob, "Rodas5P", 2)}
    explicit_attempt(prob)
    ref = compare(sols)
    plot(sols, ref, args.out)


if __name__ == "__main__":
    main()
