"""Mass-matrix problems ``M u' = f(u, p, t)`` with a constant, possibly singular ``M``
(index-1 DAEs): the split into differential and algebraic parts, consistent initial values,
and the derivative ``u'`` that the starting-step estimate needs.

With ``N`` (``n x k``) spanning the left null space of ``M`` (``N^T M = 0``) and ``Z`` its
right null space (``M Z = 0``), the algebraic equations are ``0 = N^T f(u, p, t)``, and the
problem has index 1 where ``N^T J Z`` is nonsingular (``J = df/du``; Hairer & Wanner,
*Solving ODEs II*, VI.1). The split is found

- structurally when the zero rows and zero columns of ``M`` are equally many and the block
  that remains is nonsingular (a diagonal ``M``, or the common ``[[M_dd, 0], [0, 0]]`` up to
  permutations): ``N`` and ``Z`` are then coordinate vectors, nothing of size ``n x n`` is
  factored, and a sparse ``M`` stays sparse;
- otherwise from a singular value decomposition (dense ``M`` of up to
  :data:`SVD_MAX_SIZE` states).

**Consistent initial values** (as OrdinaryDiffEq's default for mass-matrix DAEs,
``BrownFullBasicInit``; Brown, Hindmarsh & Petzold, *SIAM J. Sci. Comput.* 19, 1998): ``u0``'s
differential part is kept and ``u0`` is corrected along ``Z``, ``u = u0 + Z w``, by Newton's
method on ``N^T f(u0 + Z w, p, t0) = 0`` with the matrix ``N^T J Z`` (``J`` from
``ODEProblem(jac=...)`` or by differences along ``Z``), damped by halving while the residual
does not decrease. A ``u0`` whose first Newton correction is within the tolerances
(scaled RMS norm at most 1) counts as consistent and is left as it is.

**Starting step**: :func:`autodiffeq.controller.initial_step` estimates ``|u'|`` from ``f``;
with a mass matrix ``u' ~ M^+ f`` (the pseudo-inverse: ``M_dd^{-1}`` on the differential
part, zero on the algebraic one). Taking ``f`` itself would be off by the scale of ``M``
(a circuit's capacitances of 1e-6 made the first step the whole interval).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import InvalidArgument, ShapeMismatch

#: dense SVD split up to this many states (beyond, only structural splits)
SVD_MAX_SIZE = 2000
#: Newton iterations of the consistent initialisation
NEWTON_MAX_ITERATIONS = 30
#: converged when the scaled correction is below this fraction of the tolerances
NEWTON_TOLERANCE = 1e-6


def host_matrix(M: Any, n: int) -> Any:
    """``M`` on the host: a SciPy sparse matrix stays sparse (CSR), anything else becomes a
    dense float64 ``(n, n)`` NumPy array."""
    if hasattr(M, "tocsr") and hasattr(M, "nnz"):
        M = M.tocsr().astype(np.float64)
    else:
        if not isinstance(M, np.ndarray):
            try:
                M = np.from_dlpack(M)
            except Exception:  # noqa: BLE001 - lists and other array-likes
                M = np.asarray(M)
        M = np.asarray(M, dtype=np.float64)
    if tuple(M.shape) != (n, n):
        raise ShapeMismatch(f"mass_matrix has shape {tuple(M.shape)}; expected ({n}, {n}) for a "
                            f"state of {n} components")
    return M


class MassMatrixSplit:
    """The differential/algebraic split of a constant mass matrix (see the module doc).

    Attributes:
        k: the number of algebraic equations (``0`` for a nonsingular ``M``).
        structural: whether ``N`` and ``Z`` are coordinate vectors (index sets).
    """

    def __init__(self, M: Any, n: int) -> None:
        self.n = n
        M = host_matrix(M, n)
        sparse = not isinstance(M, np.ndarray)
        absM = abs(M)
        rows = np.asarray(absM.sum(axis=1)).ravel() > 0.0
        cols = np.asarray(absM.sum(axis=0)).ravel() > 0.0
        self.structural = False
        if rows.sum() == cols.sum():
            block = M[rows][:, cols] if sparse else M[np.ix_(rows, cols)]
            solve = _block_solver(block, sparse)
            if solve is not None:
                self.structural = True
                self.k = int(n - rows.sum())
                self._diff_rows, self._diff_cols = np.flatnonzero(rows), np.flatnonzero(cols)
                self.alg_rows, self.alg_cols = np.flatnonzero(~rows), np.flatnonzero(~cols)
                self._block_solve = solve
                return
        if n > SVD_MAX_SIZE:
            raise InvalidArgument(
                f"mass_matrix: cannot split this {n} x {n} singular mass matrix into "
                "differential and algebraic parts (its zero rows and columns do not mark them, "
                f"and an SVD is limited to {SVD_MAX_SIZE} states); permute the problem so that "
                "M = [[M_dd, 0], [0, 0]] with M_dd nonsingular"
            )
        dense = M.toarray() if sparse else M
        U, s, Vt = np.linalg.svd(dense)
        rank = int(np.sum(s > s[0] * n * np.finfo(np.float64).eps)) if s.size and s[0] > 0 else 0
        self.k = n - rank
        self._N = U[:, rank:]
        self._Z = Vt[rank:].T
        self._pinv = (Vt[:rank].T / s[:rank]) @ U[:, :rank].T

    # ------------------------------------------------------------------ the split
    def residual(self, fval: np.ndarray) -> np.ndarray:
        """The algebraic residual ``N^T f`` (``k`` entries)."""
        return fval[self.alg_rows] if self.structural else self._N.T @ fval

    def along_null(self, w: np.ndarray) -> np.ndarray:
        """``Z w``: a change of the state along the algebraic directions."""
        if self.structural:
            du = np.zeros(self.n)
            du[self.alg_cols] = w
            return du
        return self._Z @ w

    def null_directions(self) -> np.ndarray:
        """``Z`` as a dense ``(n, k)`` array (for differences along it)."""
        if self.structural:
            Z = np.zeros((self.n, self.k))
            Z[self.alg_cols, np.arange(self.k)] = 1.0
            return Z
        return self._Z

    def reduced_jacobian(self, J: Any) -> np.ndarray:
        """``N^T J Z`` (``k x k``) from a dense or sparse host ``J``."""
        if self.structural:
            block = J[self.alg_rows][:, self.alg_cols]
            return block.toarray() if hasattr(block, "toarray") else np.asarray(block)
        JZ = J @ self._Z
        return self._N.T @ np.asarray(JZ)

    def derivative(self, fval: np.ndarray) -> np.ndarray:
        """``M^+ f``: ``u'`` on the differential part, zero on the algebraic one."""
        if self.structural:
            v = np.zeros(self.n)
            v[self._diff_cols] = self._block_solve(fval[self._diff_rows])
            return v
        return self._pinv @ fval

    def describe(self) -> str:
        """The algebraic part in words, for error messages."""
        if self.structural:
            return (f"the algebraic equations 0 = f_i(u, p, t) for the zero rows i = "
                    f"{_short(self.alg_rows)} of the mass matrix, solved for the components "
                    f"{_short(self.alg_cols)} of u")
        return (f"the {self.k} algebraic equations 0 = N^T f(u, p, t) (N spanning the left "
                "null space of the mass matrix), solved along its right null space")


def _block_solver(block: Any, sparse: bool) -> Callable[[np.ndarray], np.ndarray] | None:
    """A solver with the nonsingular block ``M_dd``, or ``None`` if it is singular."""
    if block.shape[0] == 0:
        return lambda b: b
    if sparse:
        from scipy.sparse.linalg import splu

        try:
            lu = splu(block.tocsc())
        except RuntimeError:  # "Factor is exactly singular"
            return None
        diag = np.abs(lu.U.diagonal())
        if diag.min() <= block.shape[0] * np.finfo(np.float64).eps * diag.max():
            return None
        return lu.solve
    import scipy.linalg

    with warnings.catch_warnings():  # a singular block is an answer here, not a problem
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        lu, piv = scipy.linalg.lu_factor(block, check_finite=False)
    diag = np.abs(np.diag(lu))
    if diag.min() <= block.shape[0] * np.finfo(np.float64).eps * diag.max():
        return None
    return lambda b: scipy.linalg.lu_solve((lu, piv), b, check_finite=False)


def _short(idx: np.ndarray) -> str:
    shown = ", ".join(str(int(i)) for i in idx[:8])
    return f"[{shown}{', ...' if idx.size > 8 else ''}]"


def _scaled_norm(du: np.ndarray, u: np.ndarray, rtol: np.ndarray, atol: np.ndarray) -> float:
    return float(np.sqrt(np.mean((du / (atol + rtol * np.abs(u))) ** 2)))


def consistent_state(
    split: MassMatrixSplit,
    f: Callable[[np.ndarray], np.ndarray],
    jac: Callable[[np.ndarray], Any] | None,
    u0: np.ndarray,
    rtol: np.ndarray,
    atol: np.ndarray,
    eps: float = float(np.finfo(np.float64).eps),
) -> np.ndarray | None:
    """``u0`` corrected along the algebraic directions so that ``N^T f(u) = 0``, or ``None``
    when ``u0`` is consistent within the tolerances (see the module doc).

    ``f(u)`` and ``jac(u)`` are host callables at ``t0`` (``jac`` ``None``: forward differences
    along ``Z``, ``k`` evaluations of ``f``, increments for the precision ``eps`` of ``f``).
    Raises :class:`InvalidArgument` when the algebraic equations cannot be solved (not index 1
    at ``u0``, or Newton's method fails).
    """
    if split.k == 0:
        return None
    u = np.array(u0, dtype=np.float64)
    fu = f(u)
    r = split.residual(fu)
    r0_norm = float(np.linalg.norm(r))
    for iteration in range(NEWTON_MAX_ITERATIONS):
        if jac is not None:
            G = split.reduced_jacobian(jac(u))
        else:
            Z = split.null_directions()
            cols = []
            for j in range(split.k):
                z = Z[:, j]
                h = math.sqrt(eps) * max(1.0, float(np.max(np.abs(u[z != 0.0]), initial=0.0)))
                cols.append(split.residual(f(u + h * z) - fu) / h)
            G = np.stack(cols, axis=1)
        try:
            dw = -np.linalg.solve(G, r)
        except np.linalg.LinAlgError:
            raise InvalidArgument(
                "u0: the mass-matrix problem is not index 1 at the initial point (the Jacobian "
                f"of {split.describe()} is singular), so consistent initial values cannot be "
                "computed; check the mass matrix and f, or pass consistent initial values"
            ) from None
        du = split.along_null(dw)
        step = _scaled_norm(du, u, rtol, atol)
        if not math.isfinite(step):
            break
        if iteration == 0 and step <= 1.0:
            return None  # consistent within the tolerances: u0 is kept as given
        if step <= NEWTON_TOLERANCE:
            return u
        rnorm = float(np.linalg.norm(r))
        lam = 1.0
        while True:
            u_try = u + lam * du
            try:
                f_try = f(u_try)
                r_try = split.residual(f_try)
                ok = bool(np.all(np.isfinite(r_try))) and (
                    float(np.linalg.norm(r_try)) < rnorm or lam * step <= 1.0
                )
            except (ArithmeticError, ValueError):  # a trial point outside f's domain
                ok = False
            if ok or lam < 1e-4:
                break
            lam *= 0.5
        if not ok:
            break
        u, fu, r = u_try, f_try, r_try
    raise InvalidArgument(
        "u0 is not consistent with the mass-matrix problem's algebraic equations, and "
        f"correcting it failed: Newton's method on {split.describe()} did not converge from "
        f"u0 (algebraic residual {r0_norm:.3g} at u0); pass consistent initial values"
    )


def start_of_mass_matrix_problem(
    prob: Any, backend: Any, dtype: Any, u0_flat: Any, rtol: Any, atol: Any
) -> tuple[Any | None, Callable[[Any], Any]]:
    """For :func:`autodiffeq.solve`: ``(u0 made consistent, or None if it is consistent
    within the tolerances; the map f -> M^+ f on backend arrays for the starting step)``."""
    n = int(u0_flat.shape[0])
    split = MassMatrixSplit(prob.mass_matrix, n)
    shape = tuple(prob.shape)
    t0 = float(prob.tspan[0])

    def to_host(x: Any) -> np.ndarray:
        if not isinstance(x, np.ndarray) and backend.is_native(x):
            x = backend.to_host(x)
        return np.asarray(x, dtype=np.float64).reshape(-1)

    def on_backend(u: np.ndarray) -> Any:
        ub = backend.asarray(u.astype(backend.host_dtype(dtype)), dtype=dtype)
        return ub if len(shape) == 1 else backend.xp.reshape(ub, shape)

    def f_host(u: np.ndarray) -> np.ndarray:
        return to_host(prob.f(on_backend(u), prob.p, t0))

    jac_host = None
    jac = prob.jac
    if jac is not None:
        def jac_host(u: np.ndarray) -> Any:
            J = jac(on_backend(u), prob.p, t0) if callable(jac) else jac
            if hasattr(J, "tocsr") and hasattr(J, "nnz"):
                return J.tocsr()
            return to_host(J).reshape(n, n)

    rt = np.broadcast_to(to_host(rtol), (n,))
    at = np.broadcast_to(to_host(atol), (n,))
    eps = float(np.finfo(backend.host_dtype(dtype)).eps)
    corrected = consistent_state(split, f_host, jac_host, to_host(u0_flat), rt, at, eps)
    u0_new = None
    if corrected is not None:
        u0_new = backend.asarray(corrected.astype(backend.host_dtype(dtype)), dtype=dtype)

    def derivative(fval: Any) -> Any:
        return backend.asarray(split.derivative(to_host(fval)).astype(backend.host_dtype(dtype)),
                               dtype=dtype)

    return u0_new, derivative


def consistent_initial_state(
    prob: Any, *, rtol: float = 1e-8, atol: float = 1e-10, backend: str | None = None
) -> Any:
    """``prob.u0`` made consistent with the algebraic equations of a mass-matrix problem, in
    ``u0``'s shape: the correction :func:`autodiffeq.solve` applies (see :mod:`autodiffeq.dae`),
    here to a tolerance of its own. ``u0`` itself if it is consistent within the tolerances
    or the problem has no mass matrix.

    Differentiated solves start from ``u0`` as given, so a problem whose consistent algebraic
    values depend on the parameters being fitted calls this with the current parameters
    first (the derivatives then treat the algebraic part of ``u0`` as data).
    """
    from .solve import _check_tolerances, _initial_state, _resolve_backend
    from .validation import unbox

    if prob.mass_matrix is None:
        return prob.u0
    from .registry import registry

    _check_tolerances(rtol, atol)
    be = _resolve_backend(registry(), backend)
    plain = prob.remake(u0=unbox(prob.u0), p=unbox(prob.p))
    u0_flat, dtype = _initial_state(plain.u0, be)
    corrected, _ = start_of_mass_matrix_problem(plain, be, dtype, u0_flat, rtol, atol)
    if corrected is None:
        return prob.u0
    shape = tuple(prob.shape)
    return corrected if len(shape) == 1 else be.xp.reshape(corrected, shape)


def require_consistent(prob: Any, backend: Any, rtol: Any, atol: Any) -> None:
    """For differentiated solves: raise :class:`InvalidArgument` unless ``prob.u0`` (plain)
    is consistent within the tolerances."""
    from .solve import _initial_state

    u0_flat, dtype = _initial_state(prob.u0, backend)
    corrected, _ = start_of_mass_matrix_problem(prob, backend, dtype, u0_flat, rtol, atol)
    if corrected is not None:
        change = np.max(np.abs(np.asarray(backend.to_host(corrected), dtype=np.float64)
                               - np.asarray(backend.to_host(u0_flat), dtype=np.float64)))
        raise InvalidArgument(
            "u0 is not consistent with the algebraic equations of the mass-matrix problem "
            f"(making it consistent changes it by up to {change:.3g}). A differentiated solve "
            "starts from u0 as given, since its derivatives cannot pass through the "
            "correction: pass u0 = autodiffeq.consistent_initial_state(prob) (computed with "
            "the current parameters) instead"
        )
