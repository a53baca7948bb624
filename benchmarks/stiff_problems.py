"""Stiff test problems for the benchmarks and examples: right-hand side, analytic Jacobian,
initial value, time span and parameters.

All right-hand sides use autodiffeq's argument order ``f(u, p, t)`` and return a new array;
``jac(u, p, t)`` returns a dense NumPy array, except for the Brusselator, whose Jacobian is a
``scipy.sparse.csc_matrix`` (its sparsity pattern is :func:`brusselator_pattern`).

1. **ROBER** (Robertson 1966; Hairer & Wanner II, IV.1 (1.4))::

       y1' = -k1 y1 + k3 y2 y3
       y2' =  k1 y1 - k2 y2^2 - k3 y2 y3
       y3' =  k2 y2^2

   ``k1 = 0.04, k2 = 3e7, k3 = 1e4``, ``y(0) = (1, 0, 0)``, ``t in [0, 1e5]``.

2. **HIRES** (Schaefer 1975; Hairer & Wanner II, IV.10): 8 components, plant physiology
   (light-induced growth), ``y(0) = (1, 0, 0, 0, 0, 0, 0, 0.0057)``, ``t in [0, 321.8122]``.

3. **Van der Pol**, Hairer's form with ``eps = 1e-6``, i.e. ``mu = 1/eps = 1e6`` in SciML's
   ``y2' = mu ((1 - y1^2) y2 - y1)`` (the classical ``x'' - m (1 - x^2) x' + x = 0`` with
   ``m = 1e3`` after rescaling time), exactly the problem VDPOL of the Bari/CWI *Test Set
   for IVP Solvers* (Mazzia & Magherini)::

       y1' = y2
       y2' = ((1 - y1^2) y2 - y1) / eps

   ``y(0) = (2, 0)``, ``t in [0, 2]``.

4. **2-D Brusselator** with diffusion on a 32 x 32 periodic grid (Hairer & Wanner II, IV.10,
   p. 151 "BRUSS-2D"; parameters as in the SciML benchmarks' ``prob_ode_brusselator_2d``)::

       u_t = B + u^2 v - (A + 1) u + alpha (u_xx + u_yy) + f(x, y, t)
       v_t = A u - u^2 v           + alpha (v_xx + v_yy)

   ``A = 3.4, B = 1, alpha = 10`` (SciML's value; H&W use ``alpha = 0.1``), grid
   ``x_i = y_i = i / 31, i = 0..31`` (``dx = 1/31``) with periodic neighbours, 5-point
   Laplacian; forcing ``f = 5`` where ``(x - 0.3)^2 + (y - 0.6)^2 <= 0.1^2`` and ``t >= 1.1``,
   else 0; ``u(x, y, 0) = 22 (y (1 - y))^1.5``, ``v(x, y, 0) = 27 (x (1 - x))^1.5``. The state
   is ``[u.ravel(), v.ravel()]`` (2048 components), with ``u[i, j]`` at ``(x_i, y_j)``. The time
   span is SciML's ``[0, 11.5]``: a fast initial transient, the forcing switch-on at
   ``t = 1.1`` (which no solver is told about: SciPy has no ``tstops``) and about one and a
   half oscillations. Each Jacobian row has at most 6 nonzeros (:func:`brusselator_pattern`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp


@dataclass
class StiffProblem:
    """One test problem. ``atol(rtol)`` is the absolute tolerance used with ``rtol``."""

    name: str
    title: str
    f: Callable[[np.ndarray, Any, float], np.ndarray]
    jac: Callable[[np.ndarray, Any, float], Any]
    u0: np.ndarray
    tspan: tuple[float, float]
    p: Any
    atol_factor: float  # atol = rtol * atol_factor
    description: str = ""
    jac_sparsity: Any = None  # scipy.sparse pattern (large problems only)
    ref_atol: float = 1e-14
    known_final: np.ndarray | None = field(default=None, repr=False)  # published reference

    def atol(self, rtol: float) -> float:
        return rtol * self.atol_factor


# ----------------------------------------------------------------------------------- ROBER
ROBER_P = (0.04, 3e7, 1e4)  # k1, k2, k3


def rober(u: np.ndarray, p: Any, t: float) -> np.ndarray:
    k1, k2, k3 = p
    y1, y2, y3 = u[0], u[1], u[2]
    r1 = k1 * y1
    r2 = k2 * y2 * y2
    r3 = k3 * y2 * y3
    return np.array([-r1 + r3, r1 - r2 - r3, r2])


def rober_jac(u: np.ndarray, p: Any, t: float) -> np.ndarray:
    k1, k2, k3 = p
    y2, y3 = u[1], u[2]
    return np.array([
        [-k1, k3 * y3, k3 * y2],
        [k1, -2.0 * k2 * y2 - k3 * y3, -k3 * y2],
        [0.0, 2.0 * k2 * y2, 0.0],
    ])


# ----------------------------------------------------------------------------------- HIRES
def hires(u: np.ndarray, p: Any, t: float) -> np.ndarray:
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


_HIRES_J = np.array([
    [-1.71, 0.43, 8.32, 0, 0, 0, 0, 0],
    [1.71, -8.75, 0, 0, 0, 0, 0, 0],
    [0, 0, -10.03, 0.43, 0.035, 0, 0, 0],
    [0, 8.32, 1.71, -1.12, 0, 0, 0, 0],
    [0, 0, 0, 0, -1.745, 0.43, 0.43, 0],
    [0, 0, 0, 0.69, 1.71, -0.43, 0.69, 0],
    [0, 0, 0, 0, 0, 0, -1.81, 0],
    [0, 0, 0, 0, 0, 0, 1.81, 0],
], dtype=float)


def hires_jac(u: np.ndarray, p: Any, t: float) -> np.ndarray:
    y6, y8 = u[5], u[7]
    J = _HIRES_J.copy()
    a, b = 280.0 * y8, 280.0 * y6
    J[5, 5] -= a
    J[5, 7] -= b
    J[6, 5] += a
    J[6, 7] += b
    J[7, 5] -= a
    J[7, 7] -= b
    return J


# Test Set for IVP Solvers (release 2.4), HIRES reference solution at t = 321.8122
HIRES_FINAL = np.array([
    0.7371312573325668e-3, 0.1442485726316185e-3, 0.5888729740967575e-4,
    0.1175651343283149e-2, 0.2386356198831331e-2, 0.6238968252742796e-2,
    0.2849998395185769e-2, 0.2850001604814231e-2,
])


# ------------------------------------------------------------------------------ Van der Pol
VDP_EPS = 1e-6


def van_der_pol(u: np.ndarray, eps: float, t: float) -> np.ndarray:
    y1, y2 = u[0], u[1]
    return np.array([y2, ((1.0 - y1 * y1) * y2 - y1) / eps])


def van_der_pol_jac(u: np.ndarray, eps: float, t: float) -> np.ndarray:
    y1, y2 = u[0], u[1]
    return np.array([[0.0, 1.0], [(-2.0 * y1 * y2 - 1.0) / eps, (1.0 - y1 * y1) / eps]])


# Test Set for IVP Solvers, VDPOL reference solution at t = 2
VDP_FINAL = np.array([0.1706167732170483e1, -0.8928097010247975e0])


# ---------------------------------------------------------------------------- Brusselator
BRUSS_N = 32


@dataclass(frozen=True)
class BrusselatorParams:
    A: float = 3.4
    B: float = 1.0
    alpha: float = 10.0
    N: int = BRUSS_N

    @property
    def dx(self) -> float:
        return 1.0 / (self.N - 1)


def _periodic_laplacian(N: int) -> sp.csr_matrix:
    """5-point Laplacian (without the 1/dx^2) on an N x N periodic grid, C-order ravel."""
    one = sp.diags([np.ones(N - 1), -2.0 * np.ones(N), np.ones(N - 1)], [-1, 0, 1], format="lil")
    one[0, N - 1] = 1.0
    one[N - 1, 0] = 1.0
    one = one.tocsr()
    eye = sp.identity(N, format="csr")
    return (sp.kron(one, eye) + sp.kron(eye, one)).tocsr()


class _BrusselatorData:
    def __init__(self, prm: BrusselatorParams) -> None:
        N = prm.N
        self.prm = prm
        xs = np.linspace(0.0, 1.0, N)
        X, Y = np.meshgrid(xs, xs, indexing="ij")  # X[i, j] = x_i, Y[i, j] = y_j
        self.spot = (((X - 0.3) ** 2 + (Y - 0.6) ** 2) <= 0.1**2).ravel().astype(float) * 5.0
        self.u0 = np.concatenate([(22.0 * (Y * (1.0 - Y)) ** 1.5).ravel(),
                                  (27.0 * (X * (1.0 - X)) ** 1.5).ravel()])
        self.scale = prm.alpha / prm.dx**2
        lap = _periodic_laplacian(N)
        self.lap = self.scale * lap
        # Jacobian = blockdiag(scale*L, scale*L) + [[D1, D2], [D3, D4]] (diagonal blocks)
        nn = N * N
        lap2 = sp.block_diag([self.lap, self.lap], format="csc")
        idx = np.arange(nn)
        rows = np.concatenate([idx, idx, idx + nn, idx + nn])
        cols = np.concatenate([idx, idx + nn, idx, idx + nn])
        react = sp.csc_matrix((np.ones(4 * nn), (rows, cols)), shape=(2 * nn, 2 * nn))
        pattern = (abs(lap2) + react).tocsc()
        pattern.data[:] = 1.0
        pattern.sort_indices()
        self.pattern = pattern
        # positions of the Jacobian's entries in pattern.data: constant part and reaction part
        self._const = _scatter(pattern, lap2)
        self._react_pos = _positions(pattern, rows, cols)

    def f(self, y: np.ndarray, t: float) -> np.ndarray:
        prm = self.prm
        nn = prm.N * prm.N
        u, v = y[:nn], y[nn:]
        uuv = u * u * v
        du = self.lap @ u + prm.B + uuv - (prm.A + 1.0) * u
        dv = self.lap @ v + prm.A * u - uuv
        if t >= 1.1:
            du += self.spot
        return np.concatenate([du, dv])

    def jac(self, y: np.ndarray, t: float) -> sp.csc_matrix:
        prm = self.prm
        nn = prm.N * prm.N
        u, v = y[:nn], y[nn:]
        uv2 = 2.0 * u * v
        uu = u * u
        data = self._const.copy()
        vals = np.concatenate([uv2 - (prm.A + 1.0), uu, prm.A - uv2, -uu])
        np.add.at(data, self._react_pos, vals)
        J = sp.csc_matrix((data, self.pattern.indices, self.pattern.indptr),
                          shape=self.pattern.shape)
        J.has_sorted_indices = True
        return J


def _positions(pattern: sp.csc_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Index into ``pattern.data`` of each entry ``(rows[k], cols[k])`` (must be in it)."""
    out = np.empty(len(rows), dtype=np.int64)
    for k, (r, c) in enumerate(zip(rows.tolist(), cols.tolist())):
        start, stop = pattern.indptr[c], pattern.indptr[c + 1]
        out[k] = start + np.searchsorted(pattern.indices[start:stop], r)
    return out


def _scatter(pattern: sp.csc_matrix, mat: sp.spmatrix) -> np.ndarray:
    coo = sp.coo_matrix(mat)
    data = np.zeros(pattern.nnz)
    np.add.at(data, _positions(pattern, coo.row, coo.col), coo.data)
    return data


_BRUSS_CACHE: dict[BrusselatorParams, _BrusselatorData] = {}


def _bruss(p: BrusselatorParams) -> _BrusselatorData:
    data = _BRUSS_CACHE.get(p)
    if data is None:
        data = _BRUSS_CACHE[p] = _BrusselatorData(p)
    return data


def brusselator(u: np.ndarray, p: BrusselatorParams, t: float) -> np.ndarray:
    return _bruss(p).f(u, t)


def brusselator_jac(u: np.ndarray, p: BrusselatorParams, t: float) -> sp.csc_matrix:
    return _bruss(p).jac(u, t)


def brusselator_pattern(p: BrusselatorParams | None = None) -> sp.csc_matrix:
    """The Jacobian's sparsity pattern (ones), a 2048 x 2048 ``csc_matrix`` for N = 32."""
    return _bruss(p or BrusselatorParams()).pattern.copy()


def brusselator_u0(p: BrusselatorParams | None = None) -> np.ndarray:
    return _bruss(p or BrusselatorParams()).u0.copy()


# --------------------------------------------------------------------------------- catalogue
def rober_problem(t1: float = 1e5) -> StiffProblem:
    return StiffProblem(
        "rober", "ROBER", rober, rober_jac, np.array([1.0, 0.0, 0.0]), (0.0, t1), ROBER_P,
        atol_factor=1e-6, ref_atol=1e-20,
        description="Robertson kinetics, k = (0.04, 3e7, 1e4), y0 = (1, 0, 0)",
    )


def hires_problem() -> StiffProblem:
    u0 = np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0057])
    return StiffProblem(
        "hires", "HIRES", hires, hires_jac, u0, (0.0, 321.8122), None,
        atol_factor=1e-4, ref_atol=1e-16, known_final=HIRES_FINAL,
        description="HIRES (8 components), Hairer & Wanner II",
    )


def van_der_pol_problem() -> StiffProblem:
    return StiffProblem(
        "van_der_pol", "Van der Pol (eps = 1e-6)", van_der_pol, van_der_pol_jac,
        np.array([2.0, 0.0]), (0.0, 2.0), VDP_EPS,
        atol_factor=1.0, ref_atol=1e-12, known_final=VDP_FINAL,
        description="y1' = y2, y2' = ((1 - y1^2) y2 - y1)/eps, eps = 1e-6, y0 = (2, 0)",
    )


def brusselator_problem(t1: float = 11.5) -> StiffProblem:
    prm = BrusselatorParams()
    return StiffProblem(
        "brusselator", "Brusselator 2-D (32 x 32, 2048 states)", brusselator, brusselator_jac,
        brusselator_u0(prm), (0.0, t1), prm,
        atol_factor=1.0, ref_atol=1e-12, jac_sparsity=brusselator_pattern(prm),
        description="A = 3.4, B = 1, alpha = 10, periodic, dx = 1/31",
    )


def all_problems() -> list[StiffProblem]:
    return [rober_problem(), hires_problem(), van_der_pol_problem(), brusselator_problem()]
