"""The 2-D Brusselator on a 32 x 32 periodic grid (2048 states): Rodas5P with a sparse Jacobian.

BRUSS-2D (Hairer & Wanner, *Solving ODEs II*, IV.10; parameters as in the SciML benchmarks'
``prob_ode_brusselator_2d``)::

    u_t = B + u^2 v - (A + 1) u + alpha (u_xx + u_yy) + f(x, y, t)
    v_t = A u - u^2 v           + alpha (v_xx + v_yy)

with ``A = 3.4, B = 1, alpha = 10``, grid ``x_i = y_i = i / 31`` (``i = 0..31``, spacing
``dx = 1/31``), periodic neighbours and the 5-point Laplacian; forcing ``f = 5`` where
``(x - 0.3)^2 + (y - 0.6)^2 <= 0.1^2`` and ``t >= 1.1``, else 0; ``u(x, y, 0) = 22 (y (1 -
y))^1.5``, ``v(x, y, 0) = 27 (x (1 - x))^1.5``, ``t in [0, 11.5]``. The state is
``[u.ravel(), v.ravel()]``; ``benchmarks/stiff_problems.py`` defines the same problem.

Each row of the Jacobian has at most 6 nonzeros (4 neighbours, itself, the other species at
the same point), so the example passes only the sparsity pattern,
``ODEProblem(jac_prototype=pattern)``: Rodas5P then computes ``J`` by finite differences
compressed by column colouring (2 x 12 evaluations of ``f`` instead of 2 x 2048), keeps it as a
``scipy.sparse`` CSC matrix and factors ``W = I / (gamma dt) - J`` with SuperLU. The example

1. solves it with Rodas5P (rtol = atol = 1e-6) and with SciPy's BDF given the same pattern
   (``jac_sparsity``, rtol = atol = 1e-6), timing both;
2. measures both errors at ``t = 11.5`` against SciPy BDF with ``jac_sparsity`` at
   rtol = 1e-10, atol = 1e-12 (an independent reference);
3. prints the work counters (f evaluations, Jacobians, LU factorisations, linear solves);
4. plots ``u`` on the grid at t = 11.5 and ``u`` at the grid point (0.3, 0.6) against time
   from Rodas5P's dense output (``stiff_brusselator.png`` next to this file, or ``--out``).

Run (5-10 s, most of it the tight-tolerance reference)::

    python examples/stiff_brusselator.py [--out PATH]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # SuperLU is erratic with threaded BLAS on few cores

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402

import autodiffeq as ade  # noqa: E402

N = 32
A, B, ALPHA = 3.4, 1.0, 10.0
DX = 1.0 / (N - 1)
TSPAN = (0.0, 11.5)
RTOL = ATOL = 1e-6
DEFAULT_OUT = Path(__file__).resolve().with_name("stiff_brusselator.png")


def periodic_laplacian(n: int) -> sp.csr_matrix:
    """5-point Laplacian on an ``n x n`` periodic grid (C-order ravel), scaled by 1/dx^2."""
    one = sp.diags([np.ones(n - 1), -2.0 * np.ones(n), np.ones(n - 1)], [-1, 0, 1],
                   format="lil")
    one[0, n - 1] = 1.0
    one[n - 1, 0] = 1.0
    eye = sp.identity(n, format="csr")
    return ((sp.kron(one.tocsr(), eye) + sp.kron(eye, one.tocsr())) / DX**2).tocsr()


XS = np.linspace(0.0, 1.0, N)
X, Y = np.meshgrid(XS, XS, indexing="ij")  # X[i, j] = x_i, Y[i, j] = y_j
LAP = ALPHA * periodic_laplacian(N)
SPOT = 5.0 * (((X - 0.3) ** 2 + (Y - 0.6) ** 2) <= 0.1**2).ravel()
NN = N * N
U0 = np.concatenate([(22.0 * (Y * (1.0 - Y)) ** 1.5).ravel(),
                     (27.0 * (X * (1.0 - X)) ** 1.5).ravel()])


def brusselator(w: np.ndarray, p: object, t: float) -> np.ndarray:
    u, v = w[:NN], w[NN:]
    uuv = u * u * v
    du = LAP @ u + B + uuv - (A + 1.0) * u
    if t >= 1.1:
        du += SPOT
    return np.concatenate([du, LAP @ v + A * u - uuv])


def sparsity_pattern() -> sp.csc_matrix:
    """Nonzeros of the Jacobian: the Laplacian's in each species block, plus the diagonal
    of every block (the reaction terms couple u and v at the same point)."""
    lap = (LAP != 0).astype(float)
    eye = sp.identity(NN)
    return (sp.bmat([[lap + eye, eye], [eye, lap + eye]]) != 0).astype(float).tocsc()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG to write")
    args = ap.parse_args(argv)
    pattern = sparsity_pattern()
    print(f"2-D Brusselator, {N} x {N} periodic grid: {2 * NN} states, Jacobian pattern with "
          f"{pattern.nnz} nonzeros ({pattern.nnz / (2 * NN) ** 2:.2%} of a dense matrix)")

    def fun(t: float, w: np.ndarray) -> np.ndarray:
        return brusselator(w, None, t)

    t0 = time.perf_counter()
    ref = solve_ivp(fun, TSPAN, U0, method="BDF", rtol=1e-10, atol=1e-12, jac_sparsity=pattern)
    t_ref = time.perf_counter() - t0
    if not ref.success:
        print(f"reference solve failed: {ref.message}")
        return 1
    u_ref = ref.y[:, -1]
    print(f"reference: SciPy BDF, jac_sparsity, rtol 1e-10, atol 1e-12 ({len(ref.t) - 1} "
          f"steps, {t_ref:.1f} s)")

    def error(u: np.ndarray) -> float:
        return float(np.max(np.abs(u - u_ref)) / np.max(np.abs(u_ref)))

    prob = ade.ODEProblem(brusselator, U0, TSPAN, jac_prototype=pattern)
    ade.solve(prob.remake(tspan=(0.0, 0.01)), "Rodas5P")  # warm-up: imports, colouring
    t0 = time.perf_counter()
    sol = ade.solve(prob, "Rodas5P", rtol=RTOL, atol=ATOL)
    t_ade = time.perf_counter() - t0
    if not sol.success:
        print(f"Rodas5P failed: {sol.retcode}")
        return 1
    st = sol.stats
    t0 = time.perf_counter()
    bdf = solve_ivp(fun, TSPAN, U0, method="BDF", rtol=RTOL, atol=ATOL, jac_sparsity=pattern)
    t_bdf = time.perf_counter() - t0

    print(f"\nrtol = atol = {RTOL:g}; error = max |u - ref| / max |ref| at t = {TSPAN[1]}")
    print(f"{'solver':>26}  {'seconds':>8}  {'error':>8}  {'nf':>6}  {'njac':>5}  "
          f"{'nLU':>5}  {'nsolve':>6}  {'steps':>6}")
    print(f"{'autodiffeq Rodas5P':>26}  {t_ade:8.2f}  {error(sol.u[-1]):8.1e}  {st.nf:6d}  "
          f"{st.njac:5d}  {st.nfactor:5d}  {st.nlinsolve:6d}  {st.naccept:6d}"
          f" (+{st.nreject} rejected)")
    print(f"{'SciPy BDF (jac_sparsity)':>26}  {t_bdf:8.2f}  {error(bdf.y[:, -1]):8.1e}  "
          f"{bdf.nfev:6d}  {bdf.njev:5d}  {bdf.nlu:5d}  {'n/a':>6}  {len(bdf.t) - 1:6d}")
    print("(nf includes the finite-difference Jacobians: 2 evaluations per column colour)")

    ts = np.linspace(*TSPAN, 600)
    k = int(np.argmin((X.ravel() - 0.3) ** 2 + (Y.ravel() - 0.6) ** 2))
    trace = np.asarray(sol(ts))[:, k]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return 0
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.4), dpi=110)
    im = ax1.imshow(sol.u[-1][:NN].reshape(N, N).T, origin="lower", extent=(0, 1, 0, 1),
                    cmap="viridis")
    fig.colorbar(im, ax=ax1, label="u")
    ax1.set_title(f"u(x, y) at t = {TSPAN[1]} (Rodas5P)")
    ax1.set_xlabel("x")
    ax1.set_ylabel("y")
    ax2.plot(ts, trace, label="Rodas5P, dense output")
    ax2.plot(ref.t, ref.y[k], "k:", lw=1, label="SciPy BDF, rtol 1e-10")
    ax2.axvline(1.1, color="grey", lw=0.8, ls="--", label="forcing on (t = 1.1)")
    ax2.set_xlabel("t")
    ax2.set_ylabel(f"u at (x, y) = ({X.ravel()[k]:.2f}, {Y.ravel()[k]:.2f})")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
