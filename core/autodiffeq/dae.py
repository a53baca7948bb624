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

from .errors import InvalidArgument, InvalidType
from .request import check_tolerances, initial_state, resolve_backend, resolve_registry
from .validation import contains_traced, is_traced, unbox

#: dense SVD split up to this many states (beyond, only structural splits)
SVD_MAX_SIZE = 2000
#: Newton iterations of the consistent initialisation
NEWTON_MAX_ITERATIONS = 30
#: converged when the scaled correction is below this fraction of the tolerances
NEWTON_TOLERANCE = 1e-6


def host_matrix(M: Any, n: int) -> Any:
    """``M`` on the host: a SciPy sparse matrix stays sparse (CSR), anything else becomes a
    dense float64 ``(n, n)`` NumPy array (``ODEProblem`` has checked its shape and values)."""
    if hasattr(M, "tocsr") and hasattr(M, "nnz"):
        M = M.tocsr().astype(np.float64)
    else:
        if not isinstance(M, np.ndarray):
            try:
                M = np.from_dlpack(M)
            except Exception:  # noqa: BLE001 - lists and other array-likes
                M = np.asarray(M)
        M = np.asarray(M, dtype=np.float64)
    return M.reshape(n, n)


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

    def algebraic_rows(self, J: Any) -> Any:
        """``N^T J`` (``k x n``) from a dense or sparse host ``J`` (sparse stays sparse)."""
        return J[self.alg_rows] if self.structural else self._N.T @ J

    def algebraic_rows_norm(self, J: Any) -> float:
        """``||N^T J||_F`` from a dense or sparse host ``J``."""
        rows = self.algebraic_rows(J)
        values = rows.data if hasattr(rows, "toarray") else np.asarray(rows)
        return float(np.linalg.norm(np.asarray(values).ravel()))

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


def _reduced_jacobian_by_differences(
    split: MassMatrixSplit, f: Callable[[np.ndarray], np.ndarray], u: np.ndarray,
    fu: np.ndarray, eps: float,
) -> np.ndarray:
    """``N^T J Z`` by forward differences of ``f`` along the columns of ``Z``."""
    Z = split.null_directions()
    cols = []
    for j in range(split.k):
        z = Z[:, j]
        h = math.sqrt(eps) * max(1.0, float(np.max(np.abs(u[z != 0.0]), initial=0.0)))
        cols.append(split.residual(f(u + h * z) - fu) / h)
    return np.stack(cols, axis=1)


def _algebraic_rows_norm_by_differences(
    split: MassMatrixSplit, f: Callable[[np.ndarray], np.ndarray], u: np.ndarray,
    fu: np.ndarray, eps: float,
) -> float:
    """An estimate of ``||N^T J||`` (the scale that ``N^T J Z`` is singular against): the
    largest of ``||N^T J v|| sqrt(n)`` over three random unit directions ``v``."""
    rng = np.random.default_rng(12345)
    h = math.sqrt(eps) * max(1.0, float(np.max(np.abs(u), initial=0.0)))
    best = 0.0
    for _ in range(3):
        v = rng.standard_normal(split.n)
        v /= np.linalg.norm(v)
        best = max(best, float(np.linalg.norm(split.residual(f(u + h * v) - fu))) / h)
    return best * math.sqrt(split.n)


def _numerically_singular(G: np.ndarray, scale: float, floor: float) -> bool:
    """Whether ``G = N^T J Z`` is singular relative to ``||N^T J||``: its smallest singular
    value is below ``floor`` times that scale (or ``G`` is not finite)."""
    if not np.all(np.isfinite(G)):
        return True
    smallest = float(np.linalg.svd(G, compute_uv=False).min()) if G.size else 1.0
    reference = max(scale, float(np.abs(G).max(initial=0.0)))
    return not smallest > floor * reference


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
            J = jac(u)
            G = split.reduced_jacobian(J)
            scale = split.algebraic_rows_norm(J)
            floor = 1e3 * split.n * eps  # rounding of an exact Jacobian
        else:
            G = _reduced_jacobian_by_differences(split, f, u, fu, eps)
            scale = _algebraic_rows_norm_by_differences(split, f, u, fu, eps)
            floor = 1e3 * math.sqrt(eps)  # the error of forward differences
        if _numerically_singular(G, scale, floor):
            raise InvalidArgument(
                "u0: the mass-matrix problem is not index 1 at the initial point: the Jacobian "
                f"of {split.describe()} with respect to those components is (numerically) "
                "singular, so they are not determined by the algebraic equations"
                + ("" if jac is not None else " (with a difference Jacobian this can also "
                   "mean that f is too flat there to difference: pass ODEProblem(jac=...))")
                + "; check the mass matrix and f, or pass consistent initial values"
            )
        dw = -np.linalg.solve(G, r)
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
        f"correcting it failed: Newton's method on {split.describe()} did not converge in "
        f"{iteration + 1} iterations (damped; algebraic residual {r0_norm:.3g} at u0, "
        f"{float(np.linalg.norm(r)):.3g} where it stopped); pass consistent initial values, "
        "or a u0 closer to them"
    )


class _HostProblem:
    """A mass-matrix problem's ``f`` and ``jac`` at ``t0`` as host (NumPy float64) callables
    on the flat state, and its split."""

    def __init__(self, prob: Any, backend: Any, dtype: Any, n: int) -> None:
        self.split = MassMatrixSplit(prob.mass_matrix, n)
        self.n = n
        self.backend, self.dtype = backend, dtype
        self.eps = float(np.finfo(backend.host_dtype(dtype)).eps)
        self._prob = prob
        self._shape = tuple(prob.shape)
        self._t0 = float(prob.tspan[0])
        self.jac = self._jac if prob.jac is not None else None

    def to_host(self, x: Any) -> np.ndarray:
        if not isinstance(x, np.ndarray) and self.backend.is_native(x):
            x = self.backend.to_host(x)
        return np.asarray(x, dtype=np.float64).reshape(-1)

    def on_backend(self, u: np.ndarray, shaped: bool = True) -> Any:
        be = self.backend
        ub = be.asarray(u.astype(be.host_dtype(self.dtype)), dtype=self.dtype)
        return ub if not shaped or len(self._shape) == 1 else be.xp.reshape(ub, self._shape)

    def f(self, u: np.ndarray) -> np.ndarray:
        prob = self._prob
        return self.to_host(prob.f(self.on_backend(u), prob.p, self._t0))

    def _jac(self, u: np.ndarray) -> Any:
        prob = self._prob
        J = prob.jac(self.on_backend(u), prob.p, self._t0) if callable(prob.jac) else prob.jac
        if hasattr(J, "tocsr") and hasattr(J, "nnz"):
            return J.tocsr()
        return self.to_host(J).reshape(self.n, self.n)

    def correct(self, u0_flat: Any, rtol: Any, atol: Any) -> np.ndarray | None:
        """:func:`consistent_state` of the backend state ``u0_flat`` (host result)."""
        rt = np.broadcast_to(self.to_host(rtol), (self.n,))
        at = np.broadcast_to(self.to_host(atol), (self.n,))
        return consistent_state(self.split, self.f, self.jac, self.to_host(u0_flat), rt, at,
                                self.eps)

    def algebraic_rows(self, u: np.ndarray) -> np.ndarray:
        """``N^T J`` (``k x n``, dense) at ``u``: from ``jac``, or by forward differences
        (``n`` evaluations of ``f``)."""
        split = self.split
        if self.jac is not None:
            rows = split.algebraic_rows(self.jac(u))
            return rows.toarray() if hasattr(rows, "toarray") else np.asarray(rows)
        fu = self.f(u)
        out = np.empty((split.k, self.n))
        for j in range(self.n):
            h = math.sqrt(self.eps) * max(1.0, abs(float(u[j])))
            e = np.zeros(self.n)
            e[j] = h
            out[:, j] = split.residual(self.f(u + e) - fu) / h
        return out


def start_of_mass_matrix_problem(
    prob: Any, backend: Any, dtype: Any, u0_flat: Any, rtol: Any, atol: Any
) -> tuple[Any | None, Callable[[Any], Any]]:
    """For :func:`autodiffeq.solve`: ``(u0 made consistent, or None if it is consistent
    within the tolerances; the map f -> M^+ f on backend arrays for the starting step)``."""
    n = int(u0_flat.shape[0])
    host = _HostProblem(prob, backend, dtype, n)
    split = host.split
    corrected = host.correct(u0_flat, rtol, atol)
    u0_new = None if corrected is None else host.on_backend(corrected, shaped=False)

    def derivative(fval: Any) -> Any:
        return host.on_backend(split.derivative(host.to_host(fval)), shaped=False)

    return u0_new, derivative


def _differentiable_correction(host: _HostProblem, u0: Any, corrected: np.ndarray) -> Any:
    """``corrected`` as a function of the traced ``u0`` (flat): its derivative is the
    projector onto the consistent manifold's tangent along the algebraic directions,
    ``P = I - Z (N^T J Z)^{-1} N^T J`` at the corrected point (the implicit-function
    derivative of ``N^T f(u0 + Z w) = 0`` with the differential part of ``u0`` kept)."""
    from autograd.extend import defjvp, defvjp, primitive

    rows = host.algebraic_rows(corrected)  # N^T J
    Z = host.split.null_directions()
    P = np.eye(host.n) - Z @ np.linalg.solve(rows @ Z, rows)
    value = host.on_backend(corrected, shaped=False)

    @primitive
    def corrected_state(u: Any) -> Any:
        return value

    defvjp(corrected_state, lambda ans, u: lambda g: P.T @ g)
    defjvp(corrected_state, lambda g, ans, u: P @ g)
    return corrected_state(u0)


def consistent_initial_state(
    prob: Any, *, rtol: float = 1e-8, atol: float = 1e-10, backend: str | None = None
) -> Any:
    """``prob.u0`` made consistent with the algebraic equations of a mass-matrix problem, in
    ``u0``'s shape: the correction :func:`autodiffeq.solve` applies (see :mod:`autodiffeq.dae`),
    here to a tolerance of its own. ``u0`` itself if it is consistent within the tolerances
    or the problem has no mass matrix.

    Differentiated solves start from ``u0`` as given, so a differentiated function calls this
    first. With a traced ``u0`` the correction is differentiated (the projector onto the
    consistent manifold, as ``ForwardSensitivity``'s consistent ``S0``). If the correction
    depends on a traced ``p``, compute it from ``p``'s value (it is then data for the
    derivatives): an :class:`InvalidType` says so.
    """
    if prob.mass_matrix is None:
        return prob.u0
    check_tolerances(rtol, atol)
    be = resolve_backend(resolve_registry(None), backend)
    plain = prob.remake(u0=unbox(prob.u0), p=unbox(prob.p))
    u0_flat, dtype = initial_state(plain.u0, be)
    n = int(u0_flat.shape[0])
    host = _HostProblem(plain, be, dtype, n)
    corrected = host.correct(u0_flat, rtol, atol)
    if corrected is None:
        return prob.u0
    if contains_traced(prob.p):
        raise InvalidType(
            "consistent_initial_state: correcting this u0 depends on p, which is being "
            "differentiated, and the correction is differentiable with respect to u0 only; "
            "compute it from p's value to treat it as data: "
            "consistent_initial_state(prob.remake(p=autograd.tracer.getval(p)))"
        )
    shape = tuple(prob.shape)
    if is_traced(prob.u0):
        import autograd.numpy as anp

        flat = _differentiable_correction(host, anp.reshape(prob.u0, (n,)), corrected)
        return flat if len(shape) == 1 else anp.reshape(flat, shape)
    value = host.on_backend(corrected, shaped=False)
    return value if len(shape) == 1 else be.xp.reshape(value, shape)


def require_consistent(prob: Any, backend: Any, rtol: Any, atol: Any) -> None:
    """For differentiated solves: raise :class:`InvalidArgument` unless ``prob.u0`` (plain)
    is consistent within the tolerances."""
    u0_flat, dtype = initial_state(prob.u0, backend)
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
