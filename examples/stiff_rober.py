"""Robertson's chemical kinetics (ROBER) to t = 1e11: an explicit solver gives up, a
Rosenbrock solver and the default (stiffness-switching) solver do not.

    y1' = -k1 y1 + k3 y2 y3
    y2' =  k1 y1 - k2 y2^2 - k3 y2 y3
    y3' =  k2 y2^2

with k1 = 0.04, k2 = 3e7, k3 = 1e4 and y(0) = (1, 0, 0) (Hairer & Wanner II, IV.1). The
reaction rates differ by eleven orders of magnitude, so the problem is very stiff. The example

1. runs the explicit Tsit5 with ``maxiters=20000``: it detects the stiffness (a
   ``StiffnessWarning``) and stops with retcode ``MaxIters`` long before t = 1e11;
2. solves the problem with ``Rodas5P`` (analytic Jacobian, log-spaced ``saveat``);
3. solves it with the default algorithm, ``ade.solve(prob)`` without ``alg``: at this tight
   tolerance that is ``AutoVern7Rodas5P``, which starts with Vern7 and hands over to Rodas5P
   as soon as the initial transient has decayed (t ~ 0.02);
4. checks the conservation law y1 + y2 + y3 = 1 at every saved time;
5. compares both with SciPy's Radau at the same times;
6. plots y1, 1e4 * y2 and y3 on a logarithmic time axis (``stiff_rober.png`` next to this file,
   or ``--out PATH``).

Run::

    python examples/stiff_rober.py [--out PATH]

Needs the Rosenbrock solver plugin, SciPy and matplotlib.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.integrate import solve_ivp

import autodiffeq as ade

K = (0.04, 3e7, 1e4)  # k1, k2, k3
U0 = (1.0, 0.0, 0.0)
T1 = 1e11
RTOL, ATOL = 1e-8, 1e-14
SAVEAT = np.concatenate([[0.0], np.logspace(-6, 11, 171)])
DEFAULT_OUT = Path(__file__).resolve().with_name("stiff_rober.png")


def rober(u: np.ndarray, k: Sequence[float], t: float) -> np.ndarray:
    """Right-hand side ``f(u, p, t)`` of the Robertson problem."""
    k1, k2, k3 = k
    y1, y2, y3 = u[0], u[1], u[2]
    return np.array([-k1 * y1 + k3 * y2 * y3, k1 * y1 - k2 * y2 * y2 - k3 * y2 * y3,
                     k2 * y2 * y2])


def rober_jac(u: np.ndarray, k: Sequence[float], t: float) -> np.ndarray:
    """Analytic Jacobian ``df/du``."""
    k1, k2, k3 = k
    y2, y3 = u[1], u[2]
    return np.array([[-k1, k3 * y3, k3 * y2],
                     [k1, -2.0 * k2 * y2 - k3 * y3, -k3 * y2],
                     [0.0, 2.0 * k2 * y2, 0.0]])


def explicit_attempt(prob: ade.ODEProblem) -> None:
    print("[1] explicit Tsit5, rtol=1e-6, maxiters=20000")
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sol = ade.solve(prob, "Tsit5", rtol=1e-6, atol=1e-10, maxiters=20_000, dense=False)
    for w in caught:
        print(f"    caught {type(w.message).__name__}: {w.message}")
    stiff = [w for w in caught if issubclass(w.category, ade.StiffnessWarning)]
    print(f"    retcode {sol.retcode} after {sol.stats.nsteps} step attempts "
          f"({time.perf_counter() - t0:.2f} s); reached t = {sol.t[-1]:.3g} of {T1:g}")
    if sol.retcode != "MaxIters" or not stiff:
        print("    (unexpected: Tsit5 was expected to stop with MaxIters and a StiffnessWarning)")


def rosenbrock_solve(prob: ade.ODEProblem) -> ade.Solution:
    print(f"[2] Rodas5P with the analytic Jacobian, rtol={RTOL:g}, atol={ATOL:g}, "
          f"{len(SAVEAT)} log-spaced saveat times")
    t0 = time.perf_counter()
    sol = ade.solve(prob, "Rodas5P", rtol=RTOL, atol=ATOL, saveat=SAVEAT)
    st = sol.stats
    print(f"    retcode {sol.retcode} in {time.perf_counter() - t0:.2f} s: {st.naccept} steps "
          f"({st.nreject} rejected), nf={st.nf}, njac={st.njac}, nfactor={st.nfactor}")
    print(f"    y(1e11) = {np.array2string(np.asarray(sol.u[-1]), precision=6)}")
    if not sol.success:
        sys.exit("Rodas5P failed")
    return sol


def default_solve(prob: ade.ODEProblem) -> ade.Solution:
    print(f"[3] the default algorithm, ade.solve(prob) without alg, rtol={RTOL:g}, atol={ATOL:g}")
    t0 = time.perf_counter()
    # dense=True keeps the stepper (and its switch log) next to the saveat values
    sol = ade.solve(prob, rtol=RTOL, atol=ATOL, saveat=SAVEAT, dense=True)
    st = sol.stats
    print(f"    {sol.alg.name}: retcode {sol.retcode} in {time.perf_counter() - t0:.2f} s: "
          f"{st.naccept} steps ({st.nreject} rejected), nf={st.nf}, njac={st.njac}, "
          f"nfactor={st.nfactor}")
    stepper = sol.dense_output.stepper
    for t, kind in stepper.switches:
        print(f"    switched to the {kind} component "
              f"({stepper.names[0] if kind == 'nonstiff' else stepper.names[1]}) at t = {t:.3g}")
    if not sol.success:
        sys.exit("the default algorithm failed")
    return sol


def check_conservation(sols: dict[str, ade.Solution]) -> None:
    for name, sol in sols.items():
        drift = np.abs(np.asarray(sol.u).sum(axis=1) - 1.0)
        i = int(np.argmax(drift))
        print(f"[4] {name} conservation: max |y1 + y2 + y3 - 1| = {drift[i]:.2e} "
              f"(at t = {sol.t[i]:.3g})")


def compare_radau(sols: dict[str, ade.Solution]) -> np.ndarray:
    print("[5] SciPy Radau (rtol=1e-10, atol=1e-16, analytic Jacobian) at the same times")
    t0 = time.perf_counter()
    ref = solve_ivp(lambda t, u: rober(u, K, t), (0.0, T1), U0, method="Radau", rtol=1e-10,
                    atol=1e-16, t_eval=SAVEAT, jac=lambda t, u: rober_jac(u, K, t))
    if not ref.success:
        sys.exit(f"Radau failed: {ref.message}")
    print(f"    Radau: {len(ref.t)} saved points, nfev={ref.nfev}, "
          f"{time.perf_counter() - t0:.2f} s")
    theirs = ref.y.T
    for name, sol in sols.items():
        ours = np.asarray(sol.u)
        print(f"    {name}:")
        for j in range(3):
            mask = np.abs(theirs[:, j]) > 1e-8
            rel = np.abs(ours[mask, j] - theirs[mask, j]) / np.abs(theirs[mask, j])
            absdiff = np.max(np.abs(ours[:, j] - theirs[:, j]))
            print(f"      y{j + 1}: max abs difference {absdiff:.2e}; max relative difference "
                  f"{rel.max():.2e} over the {mask.sum()} times where |y{j + 1}| > 1e-8; at "
                  f"t = 1e11: {abs(ours[-1, j] - theirs[-1, j]) / abs(theirs[-1, j]):.2e}")
    return theirs


def plot(sol: ade.Solution, ref: np.ndarray, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = sol.t[1:]
    u = np.asarray(sol.u)[1:]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for j, (scale, name) in enumerate([(1.0, "y1"), (1e4, "1e4 * y2"), (1.0, "y3")]):
        ax.semilogx(t, scale * u[:, j], label=f"{name} (Rodas5P)")
        ax.semilogx(t[::10], scale * ref[1::10, j], "k.", ms=4,
                    label="SciPy Radau" if j == 0 else None)
    ax.set_xlabel("t")
    ax.set_ylabel("concentration")
    ax.set_title("ROBER, k = (0.04, 3e7, 1e4)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    print(f"[6] wrote {out}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG path")
    args = ap.parse_args(argv)
    prob = ade.ODEProblem(rober, U0, (0.0, T1), K, jac=rober_jac)
    explicit_attempt(prob)
    sol = rosenbrock_solve(prob)
    default = default_solve(prob)
    sols = {"Rodas5P": sol, f"default ({default.alg.name})": default}
    check_conservation(sols)
    ref = compare_radau(sols)
    plot(sol, ref, args.out)


if __name__ == "__main__":
    main()
