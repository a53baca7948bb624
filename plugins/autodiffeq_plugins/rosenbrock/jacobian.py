"""Jacobian and time-derivative acquisition for the Rosenbrock family.

A Rosenbrock step needs ``J = df/du`` and ``f_t = df/dt`` at ``(u_n, t_n)`` (Hairer & Wanner,
*Solving ODEs II*, IV.7). This module hides where they come from behind one interface::

    jac = jacobian_source(rhs, mode)        # a JacobianSource
    J, nf = jac(u, t, f0)                   # (n x n) backend array, f evaluations used
    ft, nf = time_derivative(rhs, u, t, f0, dt)     # third order in t

Sources (``mode``): ``"user"`` — ``ODEProblem(jac=...)``, a callable ``jac(u, p, t)`` (``u`` in
the user's shape) or a constant matrix; ``"fd"`` — second-order one-sided differences, two
evaluations per column, increments scaled to each component; ``"fd_forward"`` — first-order
forward differences, one evaluation per column (:class:`FiniteDifferenceJacobian`);
``"auto"`` — the user's Jacobian when given, else ``"fd"``. Later sources (autograd,
colour-compressed sparse differences) plug in here without touching the stepper.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from typing import Any

from autodiffeq.backend import Backend
from autodiffeq.derivatives import fd_increments
from autodiffeq.errors import InvalidArgument, ShapeMismatch
from autodiffeq.stepper import RHS

JAC_MODES = ("auto", "user", "fd", "fd_forward")


class JacobianSource(abc.ABC):
    """``source(u, t, f0) -> (J, nf)``: the Jacobian at ``(u, t)`` as an ``(n, n)`` backend
    array and the number of right-hand-side evaluations it cost.

    Attributes:
        mode: ``"user"``, ``"fd"`` or ``"fd_forward"`` (resolved).
        constant: ``J`` does not depend on ``(u, t)`` (a constant user matrix), so a stepper
            may compute it once.
    """

    mode: str = ""
    constant: bool = False

    @abc.abstractmethod
    def __call__(self, u: Any, t: float, f0: Any) -> tuple[Any, int]:
        """The Jacobian at ``(u, t)`` (``f0 = f(u, t)``) and the ``f`` evaluations it cost."""


class UserJacobian(JacobianSource):
    """``ODEProblem(jac=...)``: a callable ``jac(u, p, t)`` or a constant matrix."""

    mode = "user"

    def __init__(self, jac: Any, rhs: RHS) -> None:
        self.rhs = rhs
        if callable(jac):
            self._jac = jac
            self._value = None
        else:
            self._jac = None
            self._value = as_square_matrix(jac, rhs.backend, rhs.dtype, rhs.n, "jac")
            self.constant = True

    def __call__(self, u: Any, t: float, f0: Any) -> tuple[Any, int]:
        if self._value is not None:
            return self._value, 0
        rhs = self.rhs
        xp = rhs.backend.xp
        u_user = u if len(rhs.shape) == 1 else xp.reshape(u, rhs.shape)
        return as_square_matrix(self._jac(u_user, rhs.p, t), rhs.backend, rhs.dtype, rhs.n,
                                "jac(u, p, t)"), 0


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
    up). The tolerance ``atol`` would be the natural floor, but steppers do not see it.
    """

    SCALE_FRACTION = 1e-3

    def __init__(self, rhs: RHS, order: int = 2) -> None:
        if order not in (1, 2):
            raise ValueError(f"finite-difference order must be 1 or 2, got {order}")
        self.rhs = rhs
        self.order = order
        self.mode = "fd" if order == 2 else "fd_forward"
        xp = rhs.backend.xp
        self._eye = xp.eye(rhs.n, dtype=rhs.dtype)
        self._scale: Any = None

    def typical(self, u: Any) -> Any:
        """Update the running scale with ``u``; return the increment floor ``typical``."""
        xp = self.rhs.backend.xp
        au = xp.abs(u)
        if self._scale is None:
            # components that start at zero take the largest initial magnitude as their scale
            largest = float(xp.max(au)) if au.shape[0] else 0.0
            prior = largest if 0.0 < largest < math.inf else 1.0
            self._scale = xp.where(au > 0, au, xp.asarray(prior, dtype=u.dtype))
        else:
            self._scale = xp.maximum(self._scale, au)
        return self.SCALE_FRACTION * self._scale

    def __call__(self, u: Any, t: float, f0: Any) -> tuple[Any, int]:
        xp = self.rhs.backend.xp
        J = fd_jacobian(self.rhs.f, u, t, f0, xp, self.typical(u), self.order, self._eye)
        return J, self.order * u.shape[0]


def fd_jacobian(
    f: Callable[[Any, float], Any],
    u: Any,
    t: float,
    f0: Any,
    xp: Any,
    typical: Any = 1.0,
    order: int = 2,
    eye: Any = None,
) -> Any:
    """Finite-difference Jacobian of ``f(u, t)`` at ``u`` (``f0 = f(u, t)``, not a buffer
    that ``f`` overwrites), one-sided, first or second order (see
    :class:`FiniteDifferenceJacobian`); ``order * n`` evaluations of ``f``. Increments
    ``eps**(1/(order+1)) * max(|u_j|, typical_j)``. Each value of ``f`` is consumed before the
    next call, so ``f`` may return the same output buffer every time."""
    n = u.shape[0]
    eps = float(xp.finfo(u.dtype).eps)
    if eye is None:
        eye = xp.eye(n, dtype=u.dtype)
    if order == 1:
        h = fd_increments(xp, u, eps, typical)  # sqrt(eps) * max(|u|, typical), exact
        cols = [(f(u + h[j] * eye[j, ...], t) - f0) / h[j] for j in range(n)]
        return xp.stack(cols, axis=1)
    step = eps ** (1.0 / 3.0) * xp.maximum(xp.abs(u), xp.asarray(typical, dtype=u.dtype))
    a = (u + step) - u
    b = (u + 2.0 * step) - u
    ca = b / (a * (b - a))
    cb = a / (b * (b - a))
    c0 = ca - cb  # = (a + b) / (a b): the weights sum to zero
    cols = []
    for j in range(n):
        e = eye[j, ...]
        col = f(u + a[j] * e, t) * ca[j] - f0 * c0[j]  # formed before f is called again
        cols.append(col - f(u + b[j] * e, t) * cb[j])
    return xp.stack(cols, axis=1)


def jacobian_source(rhs: RHS, mode: str = "auto") -> JacobianSource:
    """The Jacobian source for ``rhs``'s problem under ``mode`` (see :data:`JAC_MODES`)."""
    if mode not in JAC_MODES:
        raise InvalidArgument(f"jac_mode must be one of {JAC_MODES}, got {mode!r}")
    jac = getattr(rhs.problem, "jac", None)
    if mode == "user" and jac is None:
        raise InvalidArgument("jac_mode='user' needs ODEProblem(jac=...)")
    if mode in ("auto", "user") and jac is not None:
        return UserJacobian(jac, rhs)
    return FiniteDifferenceJacobian(rhs, order=1 if mode == "fd_forward" else 2)


#: order of the one-sided difference for ``f_t`` (``TIME_FD_ORDER`` extra evaluations)
TIME_FD_ORDER = 3
#: its node spacing as a fraction of the step
TIME_FD_FRACTION = 1e-2


def time_derivative(rhs: RHS, u: Any, t: float, f0: Any, dt: float) -> tuple[Any, int]:
    """``df/dt (u, t)`` by a one-sided third-order difference toward ``t + dt``; returns
    ``(f_t, number of f evaluations)``, with ``f_t = None`` when ``f`` does not change at all
    over the first node (an autonomous ``f``: one evaluation instead of three).

    Nodes ``t + x_k``, ``x_k ~ k h`` (k = 0..3, spacings as actually represented), weights
    ``L_k'(0)`` of the Lagrange basis (``-11/6, 3, -3/2, 1/3`` over ``h`` when exact), with
    ``h = TIME_FD_FRACTION * |dt|`` (at least ``16 eps |t|``, the resolution of ``t``), in
    the direction of the step so that ``f`` is never evaluated before ``t0``.

    Why this accuracy and this spacing: ``f_t`` enters a step as ``dt**2 f_t / 2``. Rounding
    (``~7 eps |f| / h``) then contributes ``~3 eps |dt f| / TIME_FD_FRACTION`` per step, a
    global ``~1e-13`` relative; truncation (``h**3 |d4f/dt4| / 4``) contributes
    ``~1e-7 dt**5 |d4f/dt4|``, below every method's own local error. A spacing tied to ``|t|``
    instead of ``|dt|`` is wrong at large ``t`` (a step of 0.1 at ``t = 1e3`` would difference
    over 0.1), and a forward difference (error ``sqrt(eps)``) leaves a global error
    ``~1e-8 dt`` that hides the order of Rodas4 and Rodas5P below errors of ``1e-11``.
    """
    xp = rhs.backend.xp
    eps = _dtype_eps(rhs.backend, u)
    p = TIME_FD_ORDER
    h = max(TIME_FD_FRACTION * abs(dt), 16.0 * eps * abs(t), 1e-300)
    h = -h if dt < 0 else h
    nodes = [(t + k * h) - t for k in range(1, p + 1)]
    weights = derivative_weights(nodes)
    first = rhs.f(u, t + nodes[0])
    if bool(xp.all(first == f0)):
        return None, 1
    acc = first * weights[0]
    for x, w in zip(nodes[1:], weights[1:]):
        acc = acc + rhs.f(u, t + x) * w
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


def as_square_matrix(value: Any, backend: Backend, dtype: Any, n: int, what: str) -> Any:
    """``value`` (host data, a sparse matrix or a backend array) as an ``(n, n)`` backend
    array of ``dtype``."""
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


def _dtype_eps(backend: Backend, u: Any) -> float:
    return float(backend.xp.finfo(u.dtype).eps)

