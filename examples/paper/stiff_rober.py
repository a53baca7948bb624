"""RQ2 — the full solver suite on a stiff problem: ROBER with explicit, adaptive explicit,
default and Rosenbrock solvers.

Robertson's chemical kinetics (Hairer & Wanner II, IV.1), the paper's argument for shipping
stiff solvers with the differentiable layer:

    y1' = -k1 y1 + k3 y2 y3,   y2' = k1 y1 - k2 y2^2 - k3 y2 y3,   y3' = k2 y2^2,

``k = (0.04, 3e7, 1e4)``, ``y(0) = (1, 0, 0)``, ``t`` in ``[0, 1e5]``. The script runs

1. fixed-step RK4 (``ade.solve(prob, "RK4", dt=..., adaptive=False)``) with ``dt = 1e-2`` and
   ``1e-3``: both blow up (retcode ``Unstable``); the number of steps RK4 would need just to
   stay stable, ``int rho(J(y(t))) / 2.785 dt`` along the reference solution (2.785: RK4's
   stability interval on the negative real axis), is printed;
2. adaptive Tsit5 at ``rtol = 1e-6, atol = 1e-10`` capped at ``maxiters = 200_000``: it warns
   that the problem looks stiff and stops with ``MaxIters`` far from ``t = 1e5`` (how far, and
   how many steps it would need at its last step size, is printed);
3. the default algorithm (``ade.solve(prob, rtol=1e-6, atol=1e-10)``: ``AutoTsit5Rodas5P``,
   which switches to Rodas5P when it detects stiffness) and ``Rodas5P`` itself: a few hundred
   steps; steps, rejections, ``f`` evaluations, Jacobians and time (best of 3: indicative);
4. their accuracy at 41 log-spaced times in ``[1e-5, 1e5]`` against a reference (Rodas5P at
   ``rtol = 1e-12, atol = 1e-16``, itself checked against SciPy's Radau at the same
   tolerances), and the conservation law ``y1 + y2 + y3 = 1``.

Writes ``stiff_rober.png`` next to this file (``--out PATH``): the three species (``y2``
scaled by 1e4) on a logarithmic time axis, with the reference, and the step sizes of Tsit5,
the default and Rodas5P against ``t`` (matplotlib with the Agg backend; skipped with a message
when it is not installed). Exits with status 1 unless both explicit runs fail, and the default
and Rodas5P succeed in fewer than 1000 steps, within 100 (atol + rtol |y|) of the reference at
every saved time and conserve mass to 1e-10. About 10 s::

    python examples/paper/stiff_rober.py [--out PATH]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.integrate import solve_ivp

import autodiffeq as ade

K = (0.04, 3e7, 1e4)
U0 = np.array([1.0, 0.0, 0.0])
TSPAN = (0.0, 1e5)
RTOL, ATOL = 1e-6, 1e-10
SAVEAT = np.concatenate([[0.0], np.logspace(-5, 5, 41)])
MAXITERS = 200_000
RK4_DTS = (1e-2, 1e-3)
RK4_STABILITY = 2.785  # RK4's stability interval on the negative real axis: [-2.785, 0]
SCALED_TOL, MASS_TOL, MAX_STEPS = 100.0, 1e-10, 1000
DEFAULT_OUT = Path(__file__).resolve().with_name("stiff_rober.png")


def rober(u: Any, k: Sequence[float], t: float) -> np.ndarray:
    k1, k2, k3 = k
    y1, y2, y3 = u[0], u[1], u[2]
    return np.array([-k1 * y1 + k3 * y2 * y3, k1 * y1 - k2 * y2 * y2 - k3 * y2 * y3,
                     k2 * y2 * y2])


def rober_jac(u: Any, k: Sequence[float], t: float) -> np.ndarray:
    k1, k2, k3 = k
    y2, y3 = u[1], u[2]
    return np.array([[-k1, k3 * y3, k3 * y2],
                     [k1, -2.0 * k2 * y2 - k3 * y3, -k3 * y2],
                     [0.0, 2.0 * k2 * y2, 0.0]])


def quiet_solve(*args: Any, **kw: Any) -> tuple[ade.Solution, float, list[str]]:
    """``ade.solve`` with its warnings collected (not printed) and its wall time."""
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        sol = ade.solve(*args, **kw)
        elapsed = time.perf_counter() - t0
    names = [f"{w.category.__name__}: {w.message}" for w in caught
             if issubclass(w.category, (ade.SolverWarning, ade.StiffnessWarning))]
    return sol, elapsed, names


def best_of(n: int, *args: Any, **kw: Any) -> tuple[ade.Solution, float]:
    runs = [quiet_solve(*args, **kw) for _ in range(n)]
    return runs[-1][0], min(r[1] for r in runs)


def rel_errors(u: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per species: the largest relative error over the times where the species > 1e-8."""
    out = []
    for j in range(3):
        mask = np.abs(ref[:, j]) > 1e-8
        out.append(np.max(np.abs(u[mask, j] - ref[mask, j]) / np.abs(ref[mask, j])))
    return np.array(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG path")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    failures: list[str] = []
    prob = ade.ODEProblem(rober, U0, TSPAN, K, jac=rober_jac)
    print(f"ROBER, k = {K}, t in [0, {TSPAN[1]:g}]")

    # reference: Rodas5P at rtol 1e-12, checked against SciPy Radau
    ref_sol, t_ref, _ = quiet_solve(prob, "Rodas5P", rtol=1e-12, atol=1e-16, saveat=SAVEAT)
    ref = np.asarray(ref_sol.u)
    t0 = time.perf_counter()
    radau = solve_ivp(lambda t, u: rober(u, K, t), TSPAN, U0, method="Radau", rtol=1e-12,
                      atol=1e-16, t_eval=SAVEAT, jac=lambda t, u: rober_jac(u, K, t))
    t_radau = time.perf_counter() - t0
    ref_vs_radau = rel_errors(radau.y.T, ref)
    print(f"reference: Rodas5P rtol 1e-12 ({ref_sol.stats.naccept} steps, {t_ref:.2f} s); "
          f"SciPy Radau rtol 1e-12 ({radau.nfev} f evaluations, {t_radau:.2f} s) agrees to "
          f"{ref_vs_radau.max():.1e} relative")

    # 1. fixed-step RK4
    print("[1] fixed-step explicit RK4")
    rk4_runs = []
    for dt in RK4_DTS:
        sol, elapsed, _ = quiet_solve(prob, "RK4", dt=dt, adaptive=False, dense=False)
        rk4_runs.append((dt, sol))
        print(f"    dt = {dt:g}: retcode {sol.retcode} after {sol.stats.nsteps} steps at "
              f"t = {sol.t[-1]:.4g} ({elapsed:.2f} s); |y| = {np.max(np.abs(sol.u[-1])):.2e}")
        if sol.retcode == "Success":
            failures.append(f"RK4 with dt = {dt:g} was expected to fail")
    tt = np.logspace(-6, 5, 2000)
    dense_ref, _, _ = quiet_solve(prob, "Rodas5P", rtol=1e-10, atol=1e-14, saveat=tt)
    rho = np.array([np.max(np.abs(np.linalg.eigvals(rober_jac(u, K, 0.0))))
                    for u in np.asarray(dense_ref.u)])
    n_stable = float(np.trapezoid(rho / RK4_STABILITY, tt))
    print(f"    to stay stable RK4 needs dt < 2.785 / rho(J): rho(J) grows to {rho[-1]:.3g}, "
          f"so at least {n_stable:.2e} steps")

    # 2. adaptive Tsit5, capped
    print(f"[2] adaptive explicit Tsit5, rtol={RTOL:g}, atol={ATOL:g}, maxiters={MAXITERS}")
    tsit, t_tsit, msgs = quiet_solve(prob, "Tsit5", rtol=RTOL, atol=ATOL, maxiters=MAXITERS,
                                     dense=False)
    for m in msgs:
        print(f"    {m[:150]}{'...' if len(m) > 150 else ''}")
    last_dt = float(np.median(np.diff(tsit.t[-100:])))
    more = (TSPAN[1] - tsit.t[-1]) / last_dt
    print(f"    retcode {tsit.retcode}: {tsit.stats.nsteps} steps, nf = {tsit.stats.nf}, "
          f"{t_tsit:.2f} s, reached t = {tsit.t[-1]:.4g} of {TSPAN[1]:g}; at its last step size "
          f"{last_dt:.2e} it would need {more:.1e} more steps")
    if tsit.retcode == "Success":
        failures.append("Tsit5 was expected to stop with MaxIters")

    # 3-4. the default solver and Rodas5P
    print(f"[3] stiff-aware solvers, rtol={RTOL:g}, atol={ATOL:g} (time: best of 3)")
    print("| solver | retcode | steps | rejected | f evals | Jacobians | LU | time (ms) | "
          "max rel. error y1, y2, y3 | rel. error at t = 1e5 | scaled error | "
          "max abs(y1+y2+y3-1) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: |")
    stiff_sols: dict[str, ade.Solution] = {}
    for label, alg in (("default", None), ("Rodas5P", "Rodas5P")):
        solve_args = (prob,) if alg is None else (prob, alg)
        sol, elapsed = best_of(3, *solve_args, rtol=RTOL, atol=ATOL)
        saved, _, _ = quiet_solve(*solve_args, rtol=RTOL, atol=ATOL, saveat=SAVEAT)
        u = np.asarray(saved.u)
        rel = rel_errors(u, ref)
        final = np.abs(u[-1] - ref[-1]) / np.abs(ref[-1])
        scaled = float(np.max(np.abs(u - ref) / (ATOL + RTOL * np.abs(ref))))
        mass = float(np.max(np.abs(u.sum(axis=1) - 1.0)))
        st = sol.stats
        name = f"{label} ({sol.alg.name})" if alg is None else label
        stiff_sols[name] = sol
        print(f"| {name} | {sol.retcode} | {st.naccept} | {st.nreject} | {st.nf} | {st.njac} | "
              f"{st.nfactor} | {1e3 * elapsed:.1f} | "
              f"{', '.join(f'{e:.1e}' for e in rel)} | "
              f"{', '.join(f'{e:.1e}' for e in final)} | {scaled:.1f} | {mass:.1e} |")
        if not sol.success or st.nsteps >= MAX_STEPS:
            failures.append(f"{name}: retcode {sol.retcode} after {st.nsteps} steps")
        if not (scaled <= SCALED_TOL and mass <= MASS_TOL):
            failures.append(f"{name}: error {scaled:.3g} x (atol + rtol |y|), mass drift "
                            f"{mass:.2e}")
    print("    (relative errors over the times where the species exceeds 1e-8; scaled error: "
          "max |y - y_ref| / (atol + rtol |y_ref|))")
    steps = ", ".join(f"{s.stats.naccept} ({name})" for name, s in stiff_sols.items())
    print(f"    Tsit5 stopped after {tsit.stats.nsteps} steps at t = {tsit.t[-1]:.3g}; the "
          f"stiff-aware solvers cross all of [0, 1e5] in {steps} steps")

    plot(ref_sol, tsit, stiff_sols, args.out)
    print(f"total {time.perf_counter() - start:.1f} s")
    for line in failures:
        print(f"FAILED: {line}", file=sys.stderr)
    return 1 if failures else 0


def plot(ref: ade.Solution, tsit: ade.Solution, sols: dict[str, ade.Solution],
         out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install '.[examples]')")
        return
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    ax = axes[0]
    t_ref, u_ref = ref.t[1:], np.asarray(ref.u)[1:]
    rodas = sols["Rodas5P"]
    t_r, u_r = rodas.t[1:], np.asarray(rodas.u)[1:]
    for j, (scale, name) in enumerate([(1.0, "y1"), (1e4, "1e4 * y2"), (1.0, "y3")]):
        ax.semilogx(t_ref, scale * u_ref[:, j], color=f"C{j}", lw=1.5, label=f"{name} (reference)")
        ax.semilogx(t_r, scale * u_r[:, j], "o", color=f"C{j}", ms=2.5, mfc="none")
    ax.plot([], [], "ko", ms=3, mfc="none", label="Rodas5P steps (rtol 1e-6)")
    ax.set_xlabel("t")
    ax.set_ylabel("concentration")
    ax.set_title("ROBER, k = (0.04, 3e7, 1e4)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[1]
    t_ts = np.asarray(tsit.t)
    ax.loglog(t_ts[1:], np.diff(t_ts), color="C3", lw=0.8,
              label=f"Tsit5 ({tsit.retcode} after {tsit.stats.nsteps} steps)")
    for k, (name, sol) in enumerate(sols.items()):
        t = np.asarray(sol.t)
        ax.loglog(t[1:], np.diff(t), ".-", color=f"C{k}", ms=3, lw=0.8,
                  label=f"{name}: {sol.stats.naccept} steps")
    ax.set_xlabel("t")
    ax.set_ylabel("step size")
    ax.set_title("accepted step sizes (rtol 1e-6, atol 1e-10)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
