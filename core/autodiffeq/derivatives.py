"""Derivatives of right-hand sides: Jacobians ``df/du`` and ``df/dt``.

Shared by stiff solvers (W = M/(gamma dt) - J) and, later, sensitivity methods. Sources, in
the order a caller normally tries them:

1. the user's ``ODEProblem(jac=...)``;
2. autograd (NumPy backend, ``f`` written with ``autograd.numpy``);
3. finite differences — dense (one evaluation per column) or, given a sparsity pattern,
   compressed by column colouring (Curtis, Powell & Reid 1974): columns that share no row are
   perturbed together, so a banded or stencil Jacobian costs a handful of evaluations.

Forward differences use the increment ``h_j = sqrt(eps) * max(|u_j|, typical)`` (Hairer &
Wanner II, IV.8; Shampine & Reichelt 1997).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

FlatRHS = Callable[[Any, float], Any]


def fd_increments(xp: Any, u: Any, dtype_eps: float, typical: float = 1.0) -> Any:
    """Forward-difference increments ``sqrt(eps) * max(|u|, typical)`` (exactly
    representable: ``(u + h) - u``)."""
    h = math.sqrt(dtype_eps) * xp.maximum(xp.abs(u), xp.asarray(typical, dtype=u.dtype))
    return (u + h) - u


def jacobian_fd_dense(f: FlatRHS, u: Any, t: float, f0: Any, xp: Any) -> tuple[Any, int]:
    """Dense forward-difference Jacobian; returns ``(J, number of f evaluations)``."""
    n = u.shape[0]
    eps = float(np.finfo(np.dtype(str(u.dtype).split(".")[-1])).eps)
    h = fd_increments(xp, u, eps)
    cols = []
    eye = xp.eye(n, dtype=u.dtype)
    for j in range(n):
        du = h[j] * eye[j, ...]
        cols.append((f(u + du, t) - f0) / h[j])
    return xp.stack(cols, axis=1), n


def color_columns(pattern: Any) -> np.ndarray:
    """Greedy colouring of the columns of a sparsity pattern so that no two columns of one
    colour share a nonzero row (largest-first order). Returns the colour of each column."""
    import scipy.sparse as sp

    S = sp.csc_matrix(pattern, dtype=bool)
    n = S.shape[1]
    R = S.tocsr()
    order = np.argsort(-np.diff(S.indptr), kind="stable")
    colors = np.full(n, -1, dtype=np.int64)
    for j in order:
        rows = S.indices[S.indptr[j] : S.indptr[j + 1]]
        # columns sharing a row with j
        neighbours = np.unique(np.concatenate([R.indices[R.indptr[r] : R.indptr[r + 1]]
                                               for r in rows])) if rows.size else []
        used = set(colors[neighbours].tolist()) if len(neighbours) else set()
        c = 0
        while c in used:
            c += 1
        colors[j] = c
    return colors


def jacobian_fd_sparse(
    f: FlatRHS, u: np.ndarray, t: float, f0: np.ndarray, pattern: Any, colors: np.ndarray
) -> tuple[Any, int]:
    """Compressed forward-difference Jacobian (NumPy backend) as a ``scipy.sparse.csc_matrix``
    with the given sparsity ``pattern``; one evaluation of ``f`` per colour."""
    import scipy.sparse as sp

    S = sp.csc_matrix(pattern, dtype=bool)
    eps = float(np.finfo(u.dtype).eps)
    h = fd_increments(np, u, eps)
    rows, cols = S.nonzero()
    values = np.empty(rows.shape[0], dtype=u.dtype)
    ncolors = int(colors.max()) + 1 if colors.size else 0
    for c in range(ncolors):
        mask = colors == c
        du = np.where(mask, h, 0.0)
        df = (f(u + du, t) - f0)
        sel = mask[cols]
        values[sel] = df[rows[sel]] / h[cols[sel]]
    return sp.csc_matrix((values, (rows, cols)), shape=S.shape), ncolors


def jacobian_autograd(f_user: Callable[..., Any], u: np.ndarray, p: Any, t: float,
                      shape: tuple[int, ...]) -> np.ndarray:
    """Exact Jacobian by autograd's reverse mode (``f`` written with ``autograd.numpy``)."""
    import autograd

    n = u.shape[0]

    def flat(v: Any) -> Any:
        return autograd.numpy.reshape(f_user(autograd.numpy.reshape(v, shape), p, t), (n,))

    return np.asarray(autograd.jacobian(flat)(u))


def time_derivative_fd(f: FlatRHS, u: Any, t: float, f0: Any, dt: float) -> tuple[Any, int]:
    """Forward-difference ``df/dt`` with increment ``sqrt(eps) * max(|t|, |dt|)``."""
    eps = float(np.finfo(np.float64).eps)
    h = math.sqrt(eps) * max(abs(t), abs(dt), 1e-5)
    h = (t + h) - t
    return (f(u, t + h) - f0) / h, 1
