"""Jacobians ``df/du`` and time derivatives ``df/dt`` of a right-hand side: the core's one
derivative layer for full matrices, used by the stiff solvers (``W = M/(gamma dt) - J``), the
sensitivity methods (:class:`~autodiffeq.rhs_derivatives.RHSDerivatives` ``jac``) and anything a
plugin builds on them. Products (``v^T J``, ``J v``) live in
:mod:`autodiffeq.rhs_derivatives`; the difference formulas and the colouring in
:mod:`autodiffeq.derivatives`. Strategies are chosen from the problem and the backend's
declared capabilities (``"sparse"``, ``"autograd"``), never by a backend's name.

A Rosenbrock step needs ``J = df/du`` and ``f_t = df/dt`` at ``(u_n, t_n)`` (Hairer & Wanner,
*Solving ODEs II*, IV.7). This module hides where they come from behind one interface::

    jac = jacobian_source(rhs, mode)        # a JacobianSource
    J, nf = jac(u, t, f0)                   # dense (n x n) backend array or sparse CSC matrix
    ft, nf = TimeDerivative(rhs, autonomous)(u, t, f0, dt)     # third order in t

Jacobian sources (solver option ``jac_mode``, :data:`JAC_MODES`):

- ``"user"``: ``ODEProblem(jac=...)``, a callable ``jac(u, p, t)`` (``u`` in the user's shape)
  or a constant matrix; a ``scipy.sparse`` result selects the sparse linear algebra.
- ``"autograd"``: exact, by reverse mode: the replayed recording of ``f`` when it can be
  recorded, else autograd tracing ``f`` at every call (NumPy backend, ``f`` written with
  ``autograd.numpy``); one forward and ``n`` backward passes.
- ``"fd"``: dense second-order one-sided differences, ``2n`` evaluations
  (:class:`FiniteDifferenceJacobian`, the increments scaled per component, differenced by
  :func:`autodiffeq.derivatives.jacobian_fd_dense`); ``"fd_forward"``: first order, ``n``
  evaluations.
- ``"sparse_fd"``: second-order differences compressed by column colouring of
  ``ODEProblem(jac_prototype=...)`` (Curtis, Powell & Reid 1974): ``2 x (number of colours)``
  evaluations, e.g. 24 for the 2048-state 2-D Brusselator; the Jacobian is a
  ``scipy.sparse`` CSC matrix on backends with capability ``"sparse"`` and a dense array
  (same compression) elsewhere.
- ``"auto"`` (default): the user's ``jac`` if given, else ``"sparse_fd"`` if a
  ``jac_prototype`` is given, else the exact Jacobian of ``f`` recorded once and replayed
  (:class:`ReplayedJacobian`, :mod:`autodiffeq.replay`), else ``"fd"`` (an ``f`` that cannot
  be recorded).

Why ``"auto"`` prefers the replayed Jacobian: it is exact, and cheaper than differences.
Measured on the 2-core development machine (NumPy 2.4, autograd 1.9, one source call):
ROBER (n = 3) 28 us replayed against 100 us for second-order differences; a 1-D
reaction-diffusion ``f`` (n = 10/50/200) 139/622/2720 us against 207/962/4991 us (one replayed
forward sweep and ``n`` backward sweeps of straight-line NumPy, against ``2n`` calls of ``f``).
autograd's own ``jacobian`` (``jac_mode="autograd"`` before the replay) cost about 5x the
differences, because it re-traced ``f`` at every call.

Time derivative (:class:`TimeDerivative`): ``ODEProblem(tgrad=...)`` if given; nothing for an
autonomous ``f`` (solver option ``autonomous``, or detected once per solve by
:func:`looks_autonomous`); else :func:`autodiffeq.derivatives.time_derivative_fd`.
"""

from __future__ import annotations

import abc
import math
import sys
import warnings
from typing import Any

from .backend import Backend
from .derivatives import (
    AutogradUntraceable,
    SparsityPlan,
    jacobian_autograd,
    jacobian_fd_dense,
    time_derivative_fd,
)
from .errors import InvalidArgument, ShapeMismatch, UnsupportedCombination
from .stepper import RHS

JAC_MODES = ("auto", "user", "autograd", "fd", "fd_forward", "sparse_fd")


def sparse_namespace(backend: Backend) -> Any:
    """The backend's ``scipy.sparse``-like namespace when it has capability ``"sparse"`` (the
    NumPy backend: ``scipy.sparse``), else ``None`` (sparse Jacobians are then densified and
    factored with the dense LU)."""
    if "sparse" not in getattr(backend, "capabilities", ()):
        return None
    return getattr(backend, "sparse", None)


class JacobianSource(abc.ABC):
    """``source(u, t, f0) -> (J, nf)``: the Jacobian at ``(u, t)`` as an ``(n, n)`` backend
    array or sparse matrix and the number of right-hand-side evaluations it cost.

    Attributes:
        mode: the resolved mode (``"user"``, ``"autograd"``, ``"fd"``, ``"fd_forward"``,
            ``"sparse_fd"``).
        constant: ``J`` does not depend on ``(u, t)`` (a constant user matrix), so a stepper
            may compute it once.
    """

    mode: str = ""
    constant: bool = False

    @abc.abstractmethod
    def __call__(self, u: Any, t: float, f0: Any) -> tuple[Any, int]:
        """The Jacobian at ``(u, t)`` (``f0 = f(u, t)``) and the ``f`` evaluations it cost."""


class UserJacobian(JacobianSource):
    """``ODEProblem(jac=...)``: a callable ``jac(u, p, t)`` or a constant matrix. Sparse
    values stay sparse (CSC) on backends with capability ``"sparse"``."""

    mode = "user"

    def __init__(self, jac: Any, rhs: RHS) -> None:
        self.rhs = rhs
        self._sparse = sparse_namespace(rhs.backend)
        self._n = rhs.n
        self._dtype = rhs.dtype
        self._array_type = getattr(rhs.backend, "array_type", ())
        self._flat = len(rhs.shape) == 1
        self._square = (self._n, self._n)
        if callable(jac):
            self._jac = jac
            self._value = None
        else:
            self._jac = None
            self._value = self._convert(jac, "jac")
            self.constant = True

    def _convert(self, value: Any, what: str) -> Any:
        rhs = self.rhs
        if self._sparse is not None and self._sparse.issparse(value):
            n = self._n
            if value.shape != (n, n):
                raise ShapeMismatch(f"{what} has shape {tuple(value.shape)}; expected ({n}, {n}) "
                                    f"for a state of {n} components")
            value = self._sparse.csc_matrix(value, dtype=rhs.backend.host_dtype(rhs.dtype))
            return value
        return as_square_matrix(value, rhs.backend, rhs.dtype, rhs.n, what)

    def __call__(self, u: Any, t: float, f0: Any) -> tuple[Any, int]:
        if self._value is not None:
            return self._value, 0
        rhs = self.rhs
        u_user = u if self._flat else rhs.backend.xp.reshape(u, rhs.shape)
        J = self._jac(u_user, rhs.p, t)
        # fast path: already a backend array of the right shape and dtype
        if isinstance(J, self._array_type) and J.shape == self._square \
                and J.dtype == self._dtype:
            return J, 0
        return self._convert(J, "jac(u, p, t)"), 0


class FiniteDifferenceJacobian(JacobianSource):
    """Dense finite differences, column by column, one-sided in the ``+e_j`` direction.

    ``order=2`` (``jac_mode="fd"``, the default): two evaluations per column, with the nodes
    ``u, u + a_j e_j, u + b_j e_j`` (``b_j ~ 2 a_j``, spacings as represented)::

        J[:, j] = -(a+b)/(a b) f(u) + b/(a (b-a)) f(u + a e_j) - a/(b (b-a)) f(u + b e_j)

    with ``a_j = eps**(1/3) * max(|u_j|, typical_j)``: error ``O(eps**(2/3))`` (3.7e-11).
    ``order=1`` (``jac_mode="fd_forward"``): ``(f(u + h_j e_j) - f(u)) / h_j`` with
    ``h_j = sqrt(eps) * max(|u_j|, typical_j)``, one evaluation per column, error
    ``O(sqrt(eps))`` (1.5e-8). Rosenbrock methods need the exact ``J`` for their order, and
    a first-order difference leaves a global error of about ``1e-10 dt`` (it hides the order
    of Rodas4/Rodas5P below errors of 1e-12 and costs extra steps at tight tolerances on
    stiff problems), hence the second-order default.

    ``typical_j = SCALE_FRACTION * s_j`` with ``s_j`` the component's scale: the largest
    ``|u_j|`` met so far in the solve, starting from ``|u0_j|``, or from ``max_k |u0_k|`` (1
    if all are zero) for a component that starts at zero. A fixed ``typical = 1`` (Julia's
    FiniteDiff default) makes a forward-difference increment far larger than components living
    at 1e-5..1e-13 (ROBER's ``y2``), so the columns of terms nonlinear in them are badly wrong
    and Rodas4/Rodas5P take 2-4x more steps; purely relative increments fail for components
    near zero: ROBER's ``y3`` (zero at ``t0``, 1e-12 after a step) then gets an increment of
    1e-17 and its column drowns in the rounding of ``f``'s O(0.04) terms (the DAE form blows
    up), as does a ``y3`` that starts at 1e-13 if it is taken at its own scale: components
    starting below ``sqrt(eps)`` times the largest count as starting at zero. The tolerance
    ``atol`` would be the natural floor, but steppers do not see it.
    """

    SCALE_FRACTION = 1e-3

    def __init__(self, rhs: RHS, order: int = 2) -> None:
        if order not in (1, 2):
            raise ValueError(f"finite-difference order must be 1 or 2, got {order}")
        self.rhs = rhs
        self.order = order
        self.mode = "fd" if order == 2 else "fd_forward"
        self._scale: Any = None

    def typical(self, u: Any) -> Any:
        """Update the running scale with ``u``; return the increment floor ``typical``."""
        xp = self.rhs.backend.xp
        au = xp.abs(u)
        if self._scale is None:
            # components that start at zero, or negligibly close to it (below sqrt(eps) times
            # the largest), take the largest initial magnitude as their scale
            largest = float(xp.max(au)) if au.shape[0] else 0.0
            prior = largest if 0.0 < largest < math.inf else 1.0
            negligible = au <= math.sqrt(sys.float_info.epsilon) * prior
            self._scale = xp.where(negligible, xp.asarray(prior, dtype=u.dtype), au)
        else:
            self._scale = xp.maximum(self._scale, au)
        return self.SCALE_FRACTION * self._scale

    def __call__(self, u: Any, t: float, f0: Any) -> tuple[Any, int]:
        return jacobian_fd_dense(self.rhs.f, u, t, f0, self.rhs.backend.xp, self.typical(u),
                                 self.order)


class SparseFiniteDifferenceJacobian(FiniteDifferenceJacobian):
    """``jac_mode="sparse_fd"``: the differences of :class:`FiniteDifferenceJacobian`
    (same increments and running scale), compressed by a column colouring of
    ``ODEProblem(jac_prototype=...)`` (:class:`autodiffeq.derivatives.SparsityPlan`): one
    evaluation per colour and order, so the cost does not grow with ``n`` for a stencil."""

    def __init__(self, rhs: RHS, pattern: Any, order: int = 2) -> None:
        super().__init__(rhs, order)
        self.mode = "sparse_fd"
        be = rhs.backend
        n = rhs.n
        if not hasattr(pattern, "shape"):  # nested lists of 0/1
            import numpy as np

            pattern = np.asarray(pattern, dtype=float)
        shape = getattr(pattern, "shape", None)
        if shape is None or tuple(shape) != (n, n):
            raise ShapeMismatch(f"jac_prototype has shape {shape}; expected ({n}, {n}) for a "
                                f"state of {n} components")
        self.plan = _plan_for(pattern, be)

    @property
    def ncolors(self) -> int:
        return self.plan.ncolors

    def __call__(self, u: Any, t: float, f0: Any) -> tuple[Any, int]:
        return self.plan.jacobian(self.rhs.f, u, t, f0, self.typical(u), self.order)


_PLANS: dict[tuple[int, str], tuple[Any, SparsityPlan]] = {}


def _plan_for(pattern: Any, backend: Backend) -> SparsityPlan:
    """The :class:`SparsityPlan` of ``pattern`` on ``backend``: colourings are cached per
    pattern object (a repeated solve of one problem colours once); a pattern whose structure
    changed in place gets a new plan."""
    key = (id(pattern), backend.name)
    sig = _structure_signature(pattern)
    hit = _PLANS.get(key)
    if hit is not None and hit[0] is not None and _same_signature(hit[0], sig):
        return hit[1]
    plan = SparsityPlan(pattern, backend.xp, backend.asarray, sparse_namespace(backend))
    if len(_PLANS) > 32:
        _PLANS.clear()
    _PLANS[key] = (sig, plan)
    return plan


def _structure_signature(pattern: Any) -> Any:
    """A copy of the pattern's structure, to recognise it again (``None``: not cacheable)."""
    import numpy as np

    try:
        import scipy.sparse as sp
    except ImportError:  # pragma: no cover - SciPy is a dependency
        return None
    if sp.issparse(pattern):
        S = sp.csc_matrix(pattern)
        return ("sparse", S.shape, S.indptr.copy(), S.indices.copy(), S.data != 0)
    if isinstance(pattern, np.ndarray):
        return ("dense", pattern != 0)
    return None


def _same_signature(a: Any, b: Any) -> bool:
    import numpy as np

    if b is None or a[0] != b[0] or len(a) != len(b):
        return False
    for x, y in zip(a[1:], b[1:]):
        if isinstance(x, np.ndarray):
            if not (isinstance(y, np.ndarray) and x.shape == y.shape and np.array_equal(x, y)):
                return False
        elif x != y:
            return False
    return True


class AutogradJacobian(JacobianSource):
    """``jac_mode="autograd"``: the exact Jacobian by autograd (NumPy backend).

    ``f`` must be traceable (written with ``autograd.numpy``); the first call checks it and
    raises :class:`~autodiffeq.UnsupportedCombination` when it is not, naming the cause."""

    mode = "autograd"

    def __init__(self, rhs: RHS) -> None:
        if "autograd" not in getattr(rhs.backend, "capabilities", ()):
            raise UnsupportedCombination(
                f"jac_mode='autograd' needs a backend with capability 'autograd' (NumPy), not "
                f"{rhs.backend.name!r}",
                ("jac_mode='fd'", "jac_mode='user'"),
            )
        self.rhs = rhs

    def __call__(self, u: Any, t: float, f0: Any) -> tuple[Any, int]:
        rhs = self.rhs
        try:
            J = jacobian_autograd(rhs.user_f, u, rhs.p, t, rhs.shape)
        except AutogradUntraceable as exc:
            raise UnsupportedCombination(
                f"jac_mode='autograd': {exc}", ("jac_mode='fd'", "jac_mode='user'")
            ) from exc
        return J, 0


class ReplayedJacobian(JacobianSource):
    """The exact Jacobian from ``f`` recorded once and replayed (:mod:`autodiffeq.replay`):
    one forward and ``n`` backward sweeps of straight-line NumPy code, no tracing per call.

    ``"auto"`` uses it when ``f`` can be recorded (written with ``autograd.numpy``, or with
    the array API on another backend, replayed there with the backend's own calls when every
    operation has an array-API rule, :mod:`autodiffeq.replay.flavors`); when it cannot (or
    takes too many value-dependent paths), ``fallback`` is used from then on (``"fd"`` under
    ``"auto"``, autograd on every call under ``"autograd"``)."""

    def __init__(self, rhs: RHS, fallback: JacobianSource) -> None:
        self.rhs = rhs
        self.fallback = fallback
        self._replay: Any = None
        self.mode = "autograd"

    def __call__(self, u: Any, t: float, f0: Any) -> tuple[Any, int]:
        from .replay import ReplayUnavailable, replayed

        if self._replay is not False:
            rhs = self.rhs
            try:
                if self._replay is None:
                    self._replay = replayed(rhs.user_f, rhs.p, rhs.shape, u.dtype,
                                            backend=rhs.backend)
                rf, leaves = self._replay
                shaped = u if tuple(u.shape) == rhs.shape else rhs.backend.xp.reshape(
                    u, rhs.shape)
                _, rows = rf.jacobian(shaped, leaves, t, want_p=False)
                return rows, 0
            except ReplayUnavailable:
                self._replay = False
                self.mode = self.fallback.mode
        return self.fallback(u, t, f0)


def jacobian_source(rhs: RHS, mode: str = "auto") -> JacobianSource:
    """The Jacobian source for ``rhs``'s problem under ``mode`` (see :data:`JAC_MODES`)."""
    if mode not in JAC_MODES:
        raise InvalidArgument(f"jac_mode must be one of {JAC_MODES}, got {mode!r}")
    problem = rhs.problem
    jac = getattr(problem, "jac", None)
    pattern = getattr(problem, "jac_prototype", None)
    if mode == "user" and jac is None:
        raise InvalidArgument("jac_mode='user' needs ODEProblem(jac=...)")
    if mode == "sparse_fd" and pattern is None:
        raise InvalidArgument("jac_mode='sparse_fd' needs ODEProblem(jac_prototype=...)")
    if mode in ("auto", "user") and jac is not None:
        return UserJacobian(jac, rhs)
    if mode == "autograd":
        return ReplayedJacobian(rhs, AutogradJacobian(rhs))
    if mode == "sparse_fd" or (mode == "auto" and pattern is not None):
        return SparseFiniteDifferenceJacobian(rhs, pattern)
    fd = FiniteDifferenceJacobian(rhs, order=1 if mode == "fd_forward" else 2)
    if mode == "auto":  # exact when f can be recorded (any backend: autodiffeq.replay)
        return ReplayedJacobian(rhs, fd)
    return fd


# ------------------------------------------------------------------------- time derivative
#: fractions of the time span at which :func:`looks_autonomous` probes ``f``
AUTONOMY_PROBES = (0.0123456789, 0.381966, 0.618034, 0.854102, 1.0)


def looks_autonomous(rhs: RHS, t0: float, u0: Any, f0: Any, t1: float | None) -> tuple[bool, int]:
    """Whether ``f`` looks independent of ``t``: ``f(u0, t)`` equals ``f0 = f(u0, t0)``
    *exactly* at the times ``t0 + c (t1 - t0)`` for ``c`` in :data:`AUTONOMY_PROBES`, and
    ``f(v, t0) == f(v, t1)`` at a perturbed state ``v = 1.0625 u0 + s/32`` (``s`` the largest
    ``|u0_j|``, or 1), which catches a ``t``-dependence multiplied by components that are zero
    at ``t0``. Returns ``(verdict, number of f evaluations)``.

    Exact equality makes this cheap and safe: an ``f`` that depends smoothly on ``t`` changes
    its value between the probes (rounding cannot make a genuinely different value equal),
    and anything raising, warning or non-finite counts as "not autonomous". What it cannot
    see is a dependence confined between the probes (a pulse switched on and off inside the
    span): force ``autonomous=False`` then. A ``t``-dependence only through a step at one
    instant (forcing switched on at ``t = 1.1``) has ``f_t = 0`` on either side, so treating
    it as autonomous is right even where the probes miss the step. A right-hand side whose
    function has the attribute ``__autodiffeq_time_dependent__ = True`` is not autonomous
    without probing.
    """
    if getattr(rhs.user_f, "__autodiffeq_time_dependent__", False):
        return False, 0  # declared by its maker (a delay equation's f reads its past)
    xp = rhs.backend.xp
    f = rhs.f
    if t1 is None or t1 == t0:
        span = max(1.0, abs(t0))
    else:
        span = t1 - t0
    times = [t0 + c * span for c in AUTONOMY_PROBES]
    nf = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            for t in times:
                nf += 1
                ft = f(u0, t)
                if not bool(xp.all(ft == f0)):
                    return False, nf
            au = xp.abs(u0)
            s = float(xp.max(au)) if u0.shape[0] else 1.0
            s = s if 0.0 < s < math.inf else 1.0
            v = u0 * 1.0625 + s / 32.0
            nf += 1
            fa = xp.asarray(f(v, t0), copy=True)
            nf += 1
            fb = f(v, times[-1])
            same = bool(xp.all(fa == fb)) and bool(xp.all(xp.isfinite(fa)))
        except Exception:  # noqa: BLE001 - a probe that fails means "do not assume"
            return False, nf
    return same, nf


class TimeDerivative:
    """``f_t`` at a step point: from ``ODEProblem(tgrad=...)``, ``None`` for an autonomous
    ``f``, else :func:`autodiffeq.derivatives.time_derivative_fd` (``(f_t, f evaluations)``
    from :meth:`__call__`)."""

    def __init__(self, rhs: RHS, autonomous: bool | None) -> None:
        if autonomous is not None and not isinstance(autonomous, bool):
            raise InvalidArgument(f"autonomous must be True, False or None, got {autonomous!r}")
        self.rhs = rhs
        self.autonomous = autonomous
        tgrad = getattr(rhs.problem, "tgrad", None)
        self._tgrad = tgrad if autonomous is not True else None
        self.mode = ("autonomous" if autonomous else "tgrad" if self._tgrad is not None
                     else "fd")
        self.detected = autonomous is not None or self._tgrad is not None

    def detect(self, t0: float, u0: Any, f0: Any) -> int:
        """Decide autonomy once (``autonomous=None`` and no ``tgrad``); returns the ``f``
        evaluations spent."""
        if self.detected:
            return 0
        self.detected = True
        tspan = getattr(self.rhs.problem, "tspan", None)
        t1 = None if tspan is None else float(tspan[1])
        verdict, nf = looks_autonomous(self.rhs, t0, u0, f0, t1)
        if verdict:
            self.autonomous = True
            self.mode = "autonomous"
        return nf

    def __call__(self, u: Any, t: float, f0: Any, dt: float) -> tuple[Any, int]:
        if self.autonomous:
            return None, 0
        if self._tgrad is not None:
            rhs = self.rhs
            be = rhs.backend
            u_user = u if len(rhs.shape) == 1 else be.xp.reshape(u, rhs.shape)
            ft = be.asarray(self._tgrad(u_user, rhs.p, t), dtype=rhs.dtype)
            if tuple(ft.shape) != (rhs.n,):
                size = math.prod(ft.shape)
                if size != rhs.n:
                    raise ShapeMismatch(f"tgrad(u, p, t) has shape {tuple(ft.shape)}; expected "
                                        f"the state's shape {rhs.shape}")
                ft = be.xp.reshape(ft, (rhs.n,))
            return ft, 0
        return time_derivative_fd(self.rhs.f, u, t, f0, dt, self.rhs.backend.xp)


def as_square_matrix(value: Any, backend: Backend, dtype: Any, n: int, what: str) -> Any:
    """``value`` (host data, a sparse matrix or a backend array) as a dense ``(n, n)``
    backend array of ``dtype``."""
    if hasattr(value, "toarray"):  # scipy.sparse (host)
        value = value.toarray()
    arr = backend.asarray(value, dtype=dtype)
    size = 1
    for dim in arr.shape:
        size *= dim
    if size != n * n:
        raise ShapeMismatch(f"{what} has shape {tuple(arr.shape)}; expected ({n}, {n}) for a "
                            f"state of {n} components")
    if tuple(arr.shape) != (n, n):
        arr = backend.xp.reshape(arr, (n, n))
    return arr
