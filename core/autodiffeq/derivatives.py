"""Derivatives of right-hand sides: Jacobians ``df/du`` and ``df/dt``.

Shared by stiff solvers (``W = M/(gamma dt) - J``) and sensitivity methods. Sources, in the
order a caller normally tries them:

1. the user's ``ODEProblem(jac=...)`` (and ``tgrad=...`` for ``df/dt``);
2. autograd (NumPy backend, ``f`` written with ``autograd.numpy``): :func:`jacobian_autograd`;
3. finite differences — dense (:func:`jacobian_fd_dense`, ``order`` evaluations per column)
   or, given a sparsity pattern, compressed by column colouring (Curtis, Powell & Reid 1974,
   "On the estimation of sparse Jacobian matrices"; Coleman & Moré 1983): columns that share
   no row are perturbed together, so a banded or stencil Jacobian of any size costs a handful
   of evaluations (:class:`SparsityPlan`, :func:`jacobian_fd_sparse`); ``df/dt`` by a
   third-order one-sided difference over a fraction of the step (:func:`time_derivative_fd`).

Forward differences use the increment ``h_j = sqrt(eps) * max(|u_j|, typical_j)`` (Hairer &
Wanner II, IV.8; Shampine & Reichelt 1997), error ``O(sqrt(eps))``. Second-order one-sided
differences (``order=2``) use the nodes ``u, u + a_j e_j, u + b_j e_j`` with
``a_j = eps**(1/3) max(|u_j|, typical_j)``, ``b_j ~ 2 a_j`` (spacings as represented)::

    J[:, j] = -(a+b)/(a b) f(u) + b/(a (b-a)) f(u + a e_j) - a/(b (b-a)) f(u + b e_j)

(the derivative at 0 of the quadratic through the three nodes), error ``O(eps**(2/3))``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

FlatRHS = Callable[[Any, float], Any]


def fd_increments(xp: Any, u: Any, dtype_eps: float, typical: Any = 1.0) -> Any:
    """Forward-difference increments ``sqrt(eps) * max(|u|, typical)`` (exactly
    representable: ``(u + h) - u``)."""
    h = math.sqrt(dtype_eps) * xp.maximum(xp.abs(u), xp.asarray(typical, dtype=u.dtype))
    return (u + h) - u


def second_order_nodes(xp: Any, u: Any, dtype_eps: float, typical: Any = 1.0) -> tuple[
    Any, Any, Any, Any, Any
]:
    """Spacings and weights of the one-sided second-order difference (module docstring).

    Returns ``(a, b, ca, cb, c0)`` with ``J[:, j] ~ ca_j f(u + a_j e_j) - cb_j f(u + b_j e_j)
    - c0_j f(u)``: ``ca = b / (a (b - a))``, ``cb = a / (b (b - a))``, ``c0 = ca - cb``.
    """
    step = dtype_eps ** (1.0 / 3.0) * xp.maximum(xp.abs(u), xp.asarray(typical, dtype=u.dtype))
    a = (u + step) - u
    b = (u + 2.0 * step) - u
    ca = b / (a * (b - a))
    cb = a / (b * (b - a))
    return a, b, ca, cb, ca - cb


def jacobian_fd_dense(
    f: FlatRHS,
    u: Any,
    t: float,
    f0: Any,
    xp: Any,
    typical: Any = 1.0,
    order: int = 1,
) -> tuple[Any, int]:
    """Dense one-sided finite-difference Jacobian of ``f(u, t)`` at ``u`` (``f0 = f(u, t)``,
    not a buffer that ``f`` overwrites), first or second order (module docstring), with the
    increments scaled by ``max(|u_j|, typical_j)`` (``typical``: scalar or per component);
    returns ``(J, number of f evaluations)``, ``order * n`` of them.

    The perturbed states are the rows of one ``u + diag(h)`` matrix and the columns are
    combined in one vectorised expression; each value of ``f`` is copied into a preallocated
    row before the next call, so ``f`` may return the same output buffer every time."""
    if order not in (1, 2):
        raise ValueError(f"finite-difference order must be 1 or 2, got {order}")
    n = u.shape[0]
    eps = float(xp.finfo(u.dtype).eps)
    eye = xp.eye(n, dtype=u.dtype)
    if order == 1:
        h = fd_increments(xp, u, eps, typical)  # sqrt(eps) * max(|u|, typical), exact
        Ua = u[None, :] + eye * h[None, :]
        Fa = xp.empty((n, n), dtype=u.dtype)
        for j in range(n):
            Fa[j, ...] = f(Ua[j, ...], t)
        return (xp.matrix_transpose(Fa) - f0[:, None]) / h[None, :], n
    a, b, ca, cb, c0 = second_order_nodes(xp, u, eps, typical)
    Ua = u[None, :] + eye * a[None, :]
    Ub = u[None, :] + eye * b[None, :]
    Fa = xp.empty((n, n), dtype=u.dtype)
    Fb = xp.empty((n, n), dtype=u.dtype)
    for j in range(n):
        Fa[j, ...] = f(Ua[j, ...], t)
        Fb[j, ...] = f(Ub[j, ...], t)
    J = (xp.matrix_transpose(Fa) * ca[None, :] - xp.matrix_transpose(Fb) * cb[None, :]
         - f0[:, None] * c0[None, :])
    return J, 2 * n


def _pattern_csc(pattern: Any) -> Any:
    """The sparsity pattern as a boolean ``scipy.sparse.csc_matrix`` with sorted indices and
    no explicit zeros (a dense 0/1 array or any scipy.sparse matrix)."""
    import scipy.sparse as sp

    if sp.issparse(pattern):
        S = sp.csc_matrix(pattern, copy=True)
    else:
        S = sp.csc_matrix(np.asarray(pattern))
    S.data = S.data != 0
    S.eliminate_zeros()
    S = sp.csc_matrix(S, dtype=bool)
    S.sort_indices()
    return S


def color_columns(pattern: Any) -> np.ndarray:
    """Greedy colouring of the columns of a sparsity pattern so that no two columns of one
    colour share a nonzero row (a distance-2 colouring of the column intersection graph
    ``S^T S``; Curtis, Powell & Reid 1974, Coleman & Moré 1983). Two greedy orders are tried
    (largest column first, and the natural order, which is optimal on many stencils) and the
    one with fewer colours is kept. Returns the colour of each column (``0 .. ncolors - 1``)."""
    S = _pattern_csc(pattern)
    n = S.shape[1]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    Si = S.astype(np.int32)
    G = (Si.T @ Si).tocsr()  # columns j, k adjacent when they share a row
    indptr = G.indptr.tolist()
    indices = G.indices.tolist()
    best: list[int] | None = None
    for order in (np.argsort(-np.diff(S.indptr), kind="stable").tolist(), range(n)):
        colors = [-1] * n
        for j in order:
            used = {colors[k] for k in indices[indptr[j] : indptr[j + 1]]}
            c = 0
            while c in used:
                c += 1
            colors[j] = c
        if best is None or max(colors) < max(best):
            best = colors
    return np.asarray(best, dtype=np.int64)


class SparsityPlan:
    """Column-compressed finite differences for a fixed sparsity pattern.

    Built once per pattern (colouring and index arrays on the host, the masks on the backend);
    :meth:`jacobian` then costs ``order`` evaluations of ``f`` per colour and one vectorised
    gather: with ``D[c] = f(u + sum_{j in colour c} h_j e_j)``, every stored entry is
    ``J[i, j] = (D[colour(j), i] - f(u)_i) / h_j`` (first order; second order analogously with
    the weights of :func:`second_order_nodes`), since no other column of that colour touches
    row ``i``.

    Args:
        pattern: ``(n, n)`` sparsity pattern (scipy.sparse matrix or dense 0/1 array).
        xp: the array namespace of the states (``numpy`` by default).
        asarray: converts host NumPy arrays to backend arrays (``backend.asarray``).
        sparse: a ``scipy.sparse``-like namespace: the Jacobian is returned as its
            ``csc_matrix`` with the pattern's structure; ``None``: as a dense ``(n, n)``
            backend array (entries outside the pattern are zero).
        colors: a valid column colouring to use instead of :func:`color_columns`'.
    """

    def __init__(
        self,
        pattern: Any,
        xp: Any = np,
        asarray: Callable[..., Any] | None = None,
        sparse: Any = None,
        colors: Any = None,
    ) -> None:
        S = _pattern_csc(pattern)
        if S.shape[0] != S.shape[1]:
            raise ValueError(f"the sparsity pattern must be square, got shape {S.shape}")
        self.n = int(S.shape[0])
        self.shape = (self.n, self.n)
        self.nnz = int(S.nnz)
        self.indptr = S.indptr
        self.indices = S.indices
        self.colors = (color_columns(S) if colors is None
                       else np.asarray(colors, dtype=np.int64).reshape(self.n))
        self.ncolors = int(self.colors.max()) + 1 if self.n else 0
        self.xp = xp
        self.sparse = sparse
        conv = asarray if asarray is not None else (lambda x, dtype=None: xp.asarray(x))
        self._conv = conv
        rows = S.indices.astype(np.intp)
        cols = np.repeat(np.arange(self.n, dtype=np.intp), np.diff(S.indptr))
        self.rows, self.cols = rows, cols
        # flat position of each stored entry in the (ncolors, n) block of evaluations
        self._gather = self.colors[cols] * self.n + rows
        self._gather_arrays: tuple[Any, ...] | None = None
        self._host_masks = [self.colors == c for c in range(self.ncolors)]
        self._masks: dict[Any, list[Any]] = {}
        self._dense: dict[Any, tuple[Any, Any]] = {}

    def masks(self, dtype: Any) -> list[Any]:
        """Per colour, a 0/1 backend array of ``dtype`` selecting its columns."""
        out = self._masks.get(dtype)
        if out is None:
            out = [self._conv(m.astype(np.float64), dtype=dtype) for m in self._host_masks]
            self._masks[dtype] = out
        return out

    def _gather_parts(self) -> tuple[Any, Any, Any, Any, Any]:
        """The gather positions, rows, columns and the CSC structure as arrays of the
        states' library (host NumPy arrays on NumPy; moved once elsewhere)."""
        parts = self._gather_arrays
        if parts is None:
            host = (self._gather, self.rows, self.cols, self.indices, self.indptr)
            parts = host if self.xp is np else tuple(self._conv(a) for a in host)
            self._gather_arrays = parts
        return parts

    def _dense_parts(self, dtype: Any) -> tuple[Any, Any]:
        """Dense pattern ``P`` (0/1, ``(n, n)``) and the colour of each column (backend)."""
        out = self._dense.get(dtype)
        if out is None:
            P = np.zeros(self.shape)
            P[self.rows, self.cols] = 1.0
            out = (self._conv(P, dtype=dtype), self._conv(self.colors))
            self._dense[dtype] = out
        return out

    def jacobian(
        self,
        f: FlatRHS,
        u: Any,
        t: float,
        f0: Any,
        typical: Any = 1.0,
        order: int = 1,
    ) -> tuple[Any, int]:
        """The Jacobian of ``f(u, t)`` at ``u`` (``f0 = f(u, t)``, not a buffer that ``f``
        overwrites); returns ``(J, number of f evaluations)``. ``typical``: the increment
        floor (scalar or per component). Each value of ``f`` is consumed before the next
        call, so ``f`` may return the same output buffer every time."""
        if order not in (1, 2):
            raise ValueError(f"finite-difference order must be 1 or 2, got {order}")
        xp = self.xp
        eps = float(xp.finfo(u.dtype).eps)
        masks = self.masks(u.dtype)
        nc = self.ncolors
        # the evaluations go straight into the rows of (ncolors, n) blocks (a copy each, so
        # an f that returns one buffer is fine); one gather then reads every stored entry
        if order == 1:
            h = fd_increments(xp, u, eps, typical)
            Da = xp.empty((nc, self.n), dtype=u.dtype)
            for c, m in enumerate(masks):
                Da[c, ...] = f(u + h * m, t)
            return self._assemble(Da, None, f0, (h,), u.dtype), nc
        a, b, ca, cb, c0 = second_order_nodes(xp, u, eps, typical)
        Da = xp.empty((nc, self.n), dtype=u.dtype)
        Db = xp.empty((nc, self.n), dtype=u.dtype)
        for c, m in enumerate(masks):
            Da[c, ...] = f(u + a * m, t)
            Db[c, ...] = f(u + b * m, t)
        return self._assemble(Da, Db, f0, (ca, cb, c0), u.dtype), 2 * nc

    def _assemble(self, Da: Any, Db: Any, f0: Any, w: tuple[Any, ...], dtype: Any) -> Any:
        """``J`` from the evaluation blocks ``Da`` (and ``Db`` for second order), each
        ``(ncolors, n)``, and the weights ``w``: ``(h,)`` or ``(ca, cb, c0)``."""
        xp = self.xp
        if self.sparse is not None:
            # vectorised gather of every stored entry from the stacked evaluations (a
            # backend with a scipy.sparse-like namespace, NumPy or CuPy, indexes by integer
            # arrays; the index arrays live where the values do)
            g, rows, cols, indices, indptr = self._gather_parts()
            if Db is None:
                (h,) = w
                data = (xp.reshape(Da, (-1,))[g] - f0[rows]) / h[cols]
            else:
                ca, cb, c0 = w
                data = (ca[cols] * xp.reshape(Da, (-1,))[g]
                        - cb[cols] * xp.reshape(Db, (-1,))[g] - c0[cols] * f0[rows])
            return self.sparse.csc_matrix((data, indices, indptr), shape=self.shape)
        # dense result with array-API operations only: J = P * G, G[i, j] = D[colour(j), i]
        P, colors = self._dense_parts(dtype)
        if self.ncolors == 0:
            return xp.zeros(self.shape, dtype=dtype)
        Ga = xp.take(xp.matrix_transpose(Da), colors, axis=1)  # (n, n): row i, column j
        if Db is None:
            (h,) = w
            J = (Ga - f0[:, None]) / h[None, :]
        else:
            ca, cb, c0 = w
            Gb = xp.take(xp.matrix_transpose(Db), colors, axis=1)
            J = Ga * ca[None, :] - Gb * cb[None, :] - f0[:, None] * c0[None, :]
        J = P * J
        if self.sparse is not None:
            return self.sparse.csc_matrix(J)
        return J


def jacobian_fd_sparse(
    f: FlatRHS,
    u: np.ndarray,
    t: float,
    f0: np.ndarray,
    pattern: Any,
    colors: np.ndarray | None = None,
    *,
    order: int = 1,
    typical: Any = 1.0,
    plan: SparsityPlan | None = None,
) -> tuple[Any, int]:
    """Compressed finite-difference Jacobian (NumPy) as a ``scipy.sparse.csc_matrix`` with the
    given sparsity ``pattern``; ``order`` evaluations of ``f`` per colour (see
    :class:`SparsityPlan`; pass ``plan`` to reuse one across calls). ``colors``, if given,
    must be a valid colouring such as :func:`color_columns` returns."""
    import scipy.sparse as sp

    if plan is None:
        plan = SparsityPlan(pattern, np, sparse=sp, colors=colors)
    return plan.jacobian(f, u, t, f0, typical=typical, order=order)


class AutogradUntraceable(ValueError):
    """autograd could not trace ``f`` (it raised, or its output did not depend on ``u``
    through autograd, e.g. a plain ``numpy.array([...])`` of traced scalars)."""


def jacobian_autograd(f_user: Callable[..., Any], u: np.ndarray, p: Any, t: float,
                      shape: tuple[int, ...]) -> np.ndarray:
    """Exact Jacobian ``df/du`` of the flattened ``f`` by autograd's reverse mode (one traced
    evaluation and ``n`` backward passes; ``f`` written with ``autograd.numpy``).

    Raises :class:`AutogradUntraceable` when ``f`` cannot be traced: autograd itself only warns
    ("Output seems independent of input") and returns zeros in that case.
    """
    import autograd
    import autograd.numpy as anp

    n = u.shape[0]

    def flat(v: Any) -> Any:
        return anp.reshape(f_user(anp.reshape(v, shape), p, t), (n,))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            J = autograd.jacobian(flat)(u)
        except Exception as exc:  # noqa: BLE001 - any failure means "not traceable"
            raise AutogradUntraceable(
                f"autograd cannot trace f: {type(exc).__name__}: {exc}"
            ) from exc
    for w in caught:
        if "independent of input" in str(w.message):
            raise AutogradUntraceable(
                "autograd cannot trace f: its output does not depend on u through autograd "
                "(write f with autograd.numpy, e.g. anp.array/anp.stack instead of np.array)"
            )
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return np.asarray(J, dtype=u.dtype).reshape(n, n)


#: order of the one-sided difference for ``f_t`` (``TIME_FD_ORDER`` extra evaluations)
TIME_FD_ORDER = 3
#: its node spacing as a fraction of the step
TIME_FD_FRACTION = 1e-2


def time_derivative_fd(
    f: FlatRHS, u: Any, t: float, f0: Any, dt: float, xp: Any = np
) -> tuple[Any, int]:
    """``df/dt (u, t)`` by a one-sided third-order difference toward ``t + dt``; returns
    ``(f_t, number of f evaluations)``, with ``f_t = None`` when ``f`` does not change at all
    over the first node (an ``f`` that does not depend on ``t`` here: one evaluation instead
    of three). ``xp``: the array namespace of ``u``.

    Nodes ``t + x_k``, ``x_k ~ k h`` (k = 0..3, spacings as actually represented), weights
    ``L_k'(0)`` of the Lagrange basis (``-11/6, 3, -3/2, 1/3`` over ``h`` when exact), with
    ``h = TIME_FD_FRACTION * |dt|`` (at least ``16 eps |t|``, the resolution of ``t``), in
    the direction of the step so that ``f`` is never evaluated before ``t0``.

    Why this accuracy and this spacing (for a step of size ``dt``, e.g. a Rosenbrock step,
    where ``f_t`` enters as ``dt**2 f_t / 2``): rounding (``~7 eps |f| / h``) then contributes
    ``~3 eps |dt f| / TIME_FD_FRACTION`` per step, a global ``~1e-13`` relative; truncation
    (``h**3 |d4f/dt4| / 4``) contributes ``~1e-7 dt**5 |d4f/dt4|``, below every method's own
    local error. A spacing tied to ``|t|`` instead of ``|dt|`` is wrong at large ``t`` (a step
    of 0.1 at ``t = 1e3`` would difference over 0.1), and a forward difference (error
    ``sqrt(eps)``) leaves a global error ``~1e-8 dt`` that hides the order of Rodas4 and
    Rodas5P below errors of ``1e-11``.
    """
    eps = float(xp.finfo(u.dtype).eps)
    p = TIME_FD_ORDER
    h = max(TIME_FD_FRACTION * abs(dt), 16.0 * eps * abs(t), 1e-300)
    h = -h if dt < 0 else h
    nodes = [(t + k * h) - t for k in range(1, p + 1)]
    weights = derivative_weights(nodes)
    first = f(u, t + nodes[0])
    if bool(xp.all(first == f0)):
        return None, 1
    acc = first * weights[0]
    for x, w in zip(nodes[1:], weights[1:]):
        acc = acc + f(u, t + x) * w
    return acc - f0 * sum(weights), p


def derivative_weights(nodes: list[float]) -> list[float]:
    """Weights ``w_k`` with ``g'(0) ~ sum_k w_k (g(x_k) - g(0))`` for distinct nonzero nodes
    ``x_k``: the derivatives at 0 of the Lagrange basis on ``{0, x_1, ..., x_p}``."""
    weights = []
    for k, xk in enumerate(nodes):
        num = 1.0
        den = xk  # the factor (x_k - 0)
        for m, xm in enumerate(nodes):
            if m != k:
                num *= -xm
                den *= xk - xm
        weights.append(num / den)
    return weights
