"""HIRES: an 8-component stiff plant-physiology model, Rodas5P vs SciPy's Radau.

The "High Irradiance RESponse" problem (Schaefer 1975; Hairer & Wanner II, IV.10; the Test
Set for IVP Solvers)::

    y1' = -1.71 y1 + 0.43 y2 + 8.32 y3 + 0.0007
    y2' =  1.71 y1 - 8.75 y2
    y3' = -10.03 y3 + 0.43 y4 + 0.035 y5
    y4' =  8.32 y2 + 1.71 y3 - 1.12 y4
    y5' = -1.745 y5 + 0.43 y6 + 0.43 y7
    y6' = -280 y6 y8 + 0.69 y4 + 1.71 y5 - 0.43 y6 + 0.69 y7
    y7' =  280 y6 y8 - 1.81 y7
    y8' = -280 y6 y8 + 1.81 y7

y(0) = (1, 0, 0, 0, 0, 0, 0, 0.0057), t in [0, 321.8122]. The example

1. solves it with ``Rodas5P`` (analytic Jacobian) at rtol = 1e-4, 1e-6 and 1e-8 and with
   SciPy's Radau at the same tolerances, printing work and the relative error at the final
   time against the Test Set's published reference solution;
2. plots the eight components (Rodas5P at rtol = 1e-8, dense output ``sol(t)`` on 2001
   log-spaced times) with Radau's solution on top (``stiff_hires.png`` next to this file,
   or ``--out PATH``).

Run::

    python examples/stiff_hires.py [--out PATH]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.integrate import solve_ivp

import autodiffeq as ade

U0 = (1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0057)
TSPAN = (0.0, 321.8122)
RTOLS = (1e-4, 1e-6, 1e-8)
ATOL_FACTOR = 1e-4  # atol = rtol * 1e-4
# Test Set for IVP Solvers (release 2.4), reference solution at t = 321.8122
Y_END = np.array([
    0.7371312573325668e-3, 0.1442485726316185e-3, 0.5888729740967575e-4,
    0.1175651343283149e-2, 0.2386356198831331e-2, 0.6238968252742796e-2,
    0.2849998395185769e-2, 0.2850001604814231e-2,
])
DEFAULT_OUT = Path(__file__).resolve().with_name("stiff_hires.png")

_J0 = np.array([
    [-1.71, 0.43, 8.32, 0, 0, 0, 0, 0],
    [1.71, -8.75, 0, 0, 0, 0, 0, 0],
    [0, 0, -10.03, 0.43, 0.035, 0, 0, 0],
    [0, 8.32, 1.71, -1.12, 0, 0, 0, 0],
    [0, 0, 0, 0, -1.745, 0.43, 0.43, 0],
    [0, 0, 0, 0.69, 1.71, -0.43, 0.69, 0],
    [0, 0, 0, 0, 0, 0, -1.81, 0],
    [0, 0, 0, 0, 0, 0, 1.81, 0],
], dtype=float)


def hires(u: np.ndarray, p: object, t: float) -> np.ndarray:
    y1, y2, y3, y4, y5, y6, y7, y8 = u
    r = 280.0 * y6 * y8
    return np.array([
        -1.71 * y1 + 0.43 * y2 + 8.32 * y3 + 0.0007,
        1.71 * y1 - 8.75 * y2,
        -10.03 * y3 + 0.43 * y4 + 0.035 * y5,
        8.32 * y2 + 1.71 * y3 - 1.12 * y4,
        -1.745 * y5 + 0.43 * y6 + 0.43 * y7,
        -r + 0.69 * y4 + 1.71 * y5 - 0.43 * y6 + 0.69 * y7,
        r - 1.81 * y7,
        -r + 1.81 * y7,
    ])


def hires_jac(u: np.ndarray, p: object, t: float) -> np.ndarray:
    J = _J0.copy()
    a, b = 280.0 * u[7], 280.0 * u[5]  # d(280 y6 y8)/dy6, d/dy8
    J[5, 5] -= a
    J[5, 7] -= b
    J[6, 5] += a
    J[6, 7] += b
    J[7, 5] -= a
    J[7, 7] -= b
    return J


def rel_err(u: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(u) - Y_END) / np.abs(Y_END)))


def compare(prob: ade.ODEProblem) -> ade.Solution:
    print("[1] Rodas5P vs SciPy Radau (both with the analytic Jacobian), atol = rtol * 1e-4;"
          " error = max relative error at t_end vs the Test Set reference")
    print(f"    {'solver':<8} {'rtol':>6} {'error':>9} {'seconds':>8} {'steps':>6} "
          f"{'nf':>6} {'njac':>5} {'nLU':>5}")
    best = None
    for rtol in RTOLS:
        atol = rtol * ATOL_FACTOR
        t0 = time.perf_counter()
        sol = ade.solve(prob, "Rodas5P", rtol=rtol, atol=atol)
        secs = time.perf_counter() - t0
        if not sol.success:
            sys.exit(f"Rodas5P failed at rtol={rtol:g}: {sol.retcode}")
        st = sol.stats
        print(f"    {'Rodas5P':<8} {rtol:>6.0e} {rel_err(sol.u[-1]):>9.2e} {secs:>8.3f} "
              f"{st.naccept:>6} {st.nf:>6} {st.njac:>5} {st.nfactor:>5}")
        t0 = time.perf_counter()
        ref = solve_ivp(lambda t, u: hires(u, None, t), TSPAN, U0, method="Radau", rtol=rtol,
                        atol=atol, jac=lambda t, u: hires_jac(u, None, t))
        secs = time.perf_counter() - t0
        print(f"    {'Radau':<8} {rtol:>6.0e} {rel_err(ref.y[:, -1]):>9.2e} {secs:>8.3f} "
              f"{len(ref.t) - 1:>6} {ref.nfev:>6} {ref.njev:>5} {ref.nlu:>5}")
        best = sol
    assert best is not None
    return best


def plot(sol: ade.Solution, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.concatenate([[0.0], np.logspace(-3, np.log10(TSPAN[1]), 2000)])
    u = np.asarray(sol(t))
    ref = solve_ivp(lambda t, u: hires(u, None, t), TSPAN, U0, method="Radau", rtol=1e-10,
                    atol=1e-14, t_eval=t[::40], jac=lambda t, u: hires_jac(u, None, t))
    fig, axes = plt.subplots(2, 4, figsize=(11, 5), dpi=110, sharex=True)
    for j, ax in enumerate(axes.ravel()):
        ax.plot(t[1:], u[1:, j], label="Rodas5P")
        ax.plot(ref.t[1:], ref.y[j, 1:], "k.", ms=3, label="Radau")
        ax.set_title(f"y{j + 1}")
        ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    for ax in axes[1]:
        ax.set_xlabel("t")
    fig.suptitle("HIRES: Rodas5P (rtol 1e-8, dense output) and SciPy Radau")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    diff = np.max(np.abs(u[::40] - ref.y.T))
    print(f"[2] dense output vs Radau (rtol 1e-10) on {len(ref.t)} times: max abs "
          f"difference {diff:.2e}")
    print(f"    wrote {out}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG path")
    args = ap.parse_args(argv)
    prob = ade.ODEProblem(hires, U0, TSPAN, jac=hires_jac)
    sol = compare(prob)
    plot(sol, args.out)


if __name__ == "__main__":
    main()
