"""The stepper contract between the integration driver (core) and solver families (plugins).

The driver owns the time loop: error norm, step-size control, ``saveat``/``tstops``, dense
output storage, ``maxiters``/``dtmin`` and retcodes. A solver family supplies a
:class:`Stepper` per solve. Its lifecycle::

    stepper = spec.factory(rhs, backend, **options)
    stepper.init(t0, u0, f0)                     # f0 = f(u0, p, t0), already evaluated
    loop:
        u_new, err = stepper.step(t, u, dt)      # attempt; err is None without an estimate
        if accepted:
            stepper.accept(t + dt, u_new)        # e.g. FSAL bookkeeping, f at the new point
            data = stepper.dense_data()          # interpolation data of this step (a copy)

``u`` is always the flat state: a 1-D backend array of length ``rhs.n`` (the driver reshapes
at the boundary). :meth:`interpolate` evaluates the dense output of many steps at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .backend import Backend
from .errors import UnsupportedCombination


class RHS:
    """The right-hand side seen by a stepper: ``rhs(u_flat, t) -> du_flat``.

    Attributes:
        f: the flat callable ``f(u, t)``; calling ``rhs(u, t)`` is the same.
        fp: the flat callable in SciML order, ``fp(u, p, t)`` (with ``p = rhs.p``): the user's
            own function when no reshaping is needed, so hot loops avoid a wrapper call.
        n: number of state components; ``shape``: the user's state shape; ``dtype``: backend
            dtype of the state; ``backend``: the :class:`Backend`; ``p``: the parameters;
        problem: the user's problem (for Jacobians, mass matrices, ...).
        registry: the :class:`~autodiffeq.Registry` the solve resolves names in, so composite
            solvers can build their component steppers from registered specs.
    """

    __slots__ = (
        "f", "fp", "n", "shape", "dtype", "backend", "p", "problem", "user_f", "registry"
    )

    def __init__(
        self,
        user_f: Callable[..., Any],
        p: Any,
        shape: tuple[int, ...],
        dtype: Any,
        backend: Backend,
        problem: Any = None,
        convert_output: bool = False,
        registry: Any = None,
    ) -> None:
        self.user_f = user_f
        self.registry = registry
        self.p = p
        self.shape = tuple(shape)
        self.n = 1
        for dim in self.shape:
            self.n *= dim
        self.dtype = dtype
        self.backend = backend
        self.problem = problem
        self.f = _flat_rhs(user_f, p, self.shape, self.n, dtype, backend, convert_output)
        if len(self.shape) == 1 and not convert_output:
            self.fp = user_f  # hot loops call fp(u, p, t) directly: no wrapper layer
        else:
            f_flat = self.f

            def fp(u: Any, p: Any, t: float) -> Any:
                return f_flat(u, t)

            self.fp = fp

    def __call__(self, u: Any, t: float) -> Any:
        return self.f(u, t)


def _flat_rhs(
    f: Callable[..., Any],
    p: Any,
    shape: tuple[int, ...],
    n: int,
    dtype: Any,
    backend: Backend,
    convert_output: bool,
) -> Callable[[Any, float], Any]:
    xp = backend.xp
    if len(shape) == 1 and not convert_output:
        def rhs(u: Any, t: float) -> Any:
            return f(u, p, t)
    elif len(shape) == 1:
        def rhs(u: Any, t: float) -> Any:
            return xp.asarray(f(u, p, t), dtype=dtype)
    elif not convert_output and "autograd" in getattr(backend, "capabilities", ()):
        flat = (n,)

        def rhs(u: Any, t: float) -> Any:  # NumPy arrays: reshape methods, no wrapper
            return f(u.reshape(shape), p, t).reshape(flat)
    elif not convert_output:
        flat = (n,)

        def rhs(u: Any, t: float) -> Any:
            return xp.reshape(f(xp.reshape(u, shape), p, t), flat)
    else:
        flat = (n,)

        def rhs(u: Any, t: float) -> Any:
            return xp.reshape(xp.asarray(f(xp.reshape(u, shape), p, t), dtype=dtype), flat)
    return rhs


class Stepper:
    """Base class of steppers (one method applied to one problem).

    Subclasses set the class attributes and implement :meth:`step`; the defaults give linear
    interpolation as dense output (declare ``dense_order = 1`` in the spec then).

    Attributes:
        order: order of the method; ``error_order``: order of the embedded estimate (or
            ``None``); ``nf``: number of right-hand-side evaluations so far (the stepper counts
            its own); ``stats``: extra counters (``njac``, ``nfactor``, ``nlinsolve``, ...).
        stats: counters the stepper keeps beyond ``nf``; every one reaches ``sol.stats``.
        stiffness: set by steppers that detect stiffness to a short description when they do;
            the driver then warns once, naming the registered stiff solvers.
        eigen_estimate: where the stepper has one, an estimate of the spectral radius of
            ``df/du`` at the last accepted step (used by stiffness-switching composites).
        stability_boundary: for explicit methods, the limit of ``|dt * lambda|`` on the
            negative real axis (``None`` where it does not apply).
    """

    order: float = 1
    error_order: float | None = None
    eigen_estimate: float | None = None
    stability_boundary: float | None = None
    #: a composite stepper (one that runs other steppers, e.g. stiffness switching) lists
    #: them here and sets :attr:`last_component` to the index of the one that made the last
    #: attempted step; the driver records it per step, the dense output and the discrete
    #: sensitivity methods use that component for the step
    components: tuple[Stepper, ...] = ()
    last_component: int | None = None
    @property
    def rng(self) -> Any:
        """The backend's random generator: seeded by ``solve(..., seed=...)``, else made
        unseeded on first use (stochastic families draw from it); ``None`` on a backend
        without the ``"rng"`` capability."""
        rng = self.__dict__.get("_rng")
        if rng is None and "rng" in getattr(self.backend, "capabilities", ()):
            rng = self._rng = self.backend.rng(None)
        return rng

    @rng.setter
    def rng(self, value: Any) -> None:
        self._rng = value

    def __init__(self, rhs: RHS, backend: Backend, **options: Any) -> None:
        if options:
            raise TypeError(f"{type(self).__name__} takes no options, got {sorted(options)}")
        self.rhs = rhs
        self.backend = backend
        self.xp = backend.xp
        self.nf = 0
        self.stats: dict[str, int] = {}
        self.stiffness: str | None = None
        self._last: tuple[Any, Any] | None = None

    def init(self, t0: float, u0: Any, f0: Any) -> None:
        """Prepare for the first step from ``(t0, u0)``; ``f0 = f(u0, t0)`` is given.

        Also called after the state jumped (an event's affect, or a step retaken to end at an
        event): caches such as a first-same-as-last stage must be reset from ``f0``."""

    def step(self, t: float, u: Any, dt: float) -> tuple[Any, Any]:
        """Attempt one step of size ``dt`` (signed) from ``(t, u)``.

        Returns ``(u_new, err)`` where ``err`` is the embedded local error estimate (an array
        like ``u``) or ``None`` for methods without one. Must not change ``u``.
        """
        raise TypeError(f"{type(self).__name__} must implement step()")

    def accept(self, t_new: float, u_new: Any) -> None:
        """The last attempted step was accepted; ``(t_new, u_new)`` is the new point."""

    def dense_data(self) -> Any:
        """Interpolation data of the last accepted step (a copy the driver may keep)."""
        return None

    def complete_dense_data(self, t: float, dt: float, u: Any, data: Any) -> Any:
        """Fill in lazily computed parts of a step's interpolation data (default: none)."""
        return data

    # ------------------------------------------------------------------ differentiation
    def functional_step(self, f: Callable[..., Any], u: Any, p: Any, t: float, dt: float) -> Any:
        """The step map ``u_new = Phi(u, p; t, dt)`` written with plain array operations and no
        in-place updates, so that autograd can trace it (used by the ``ReverseMode``,
        ``ForwardMode`` and ``DiscreteAdjoint`` sensitivity methods).

        ``f(u_flat, p, t)`` is the flat right-hand side with the parameters explicit. It must
        give the same ``u_new`` as :meth:`step` (to rounding). Families that cannot be traced
        leave this raising :class:`UnsupportedCombination` and do not list themselves in those
        methods' ``solver_families``.
        """
        raise UnsupportedCombination(
            f"{type(self).__name__} has no traceable step map, so discrete sensitivity methods "
            "cannot differentiate it; use a continuous adjoint or ForwardSensitivity",
            ("ForwardSensitivity", "InterpolatingAdjoint", "QuadratureAdjoint"),
        )

    def functional_step_dense(self, f: Callable[..., Any], u: Any, p: Any, t: float,
                              dt: float) -> tuple[Any, Any]:
        """``(u_new, data)``: :meth:`functional_step` and the step's interpolation data as
        :meth:`interpolate` takes it (``data`` of :meth:`dense_data` completed by
        :meth:`complete_dense_data`), traceable by autograd. Replaying a delay equation needs
        it: later steps read this one's dense output. Optional."""
        raise UnsupportedCombination(
            f"{type(self).__name__} has no traceable dense output, so delay equations solved "
            "with it cannot be replayed (ReverseMode, ForwardMode, DiscreteAdjoint); use "
            "ForwardSensitivity",
            ("ForwardSensitivity",),
        )

    #: whether :meth:`step_vjp` can take the step's :meth:`dense_data` as ``stages`` (the
    #: stage derivatives of the forward step) instead of recomputing them
    step_vjp_uses_dense_data: bool = False

    #: whether :meth:`step_vjp` accepts ``None`` as the parameter part of
    #: ``derivatives.vjp`` (and then returns ``None`` for it): the derivatives keep the
    #: parameter cotangents and sum them once per reverse pass (``DiscreteAdjoint``)
    step_vjp_defers_p: bool = False

    def step_vjp(
        self,
        t: float,
        u: Any,
        dt: float,
        lam: Any,
        derivatives: Any,
        want_p: bool,
        stages: Any = None,
    ) -> tuple[Any, Any] | None:
        """The transposed step: ``(lam^T dPhi/du, lam^T dPhi/dp)`` for the step from ``(t, u)``
        of size ``dt``, using ``derivatives.vjp(v, y, t)`` of ``f``.

        ``stages``: the step's :meth:`dense_data` from the forward solve, passed only when
        :attr:`step_vjp_uses_dense_data` is true (saves recomputing the stages).

        Optional: ``None`` (the default) makes ``DiscreteAdjoint`` differentiate
        :meth:`functional_step` with autograd instead. Families implement it when a hand-derived
        transpose is much cheaper (explicit Runge–Kutta: one ``v^T J`` per stage).
        """
        return None

    def interpolant(self, t: float, dt: float, u0: Any, u1: Any, data: Any
                    ) -> Callable[[float], Any]:
        """``s -> u(s)`` on one step (from ``t``, of size ``dt``), for many single-point
        lookups into the same step (a delay equation's history): the values of
        :meth:`interpolate` (to rounding). Steppers may precompute per step; the default
        calls :meth:`interpolate` at one point."""
        xp = self.xp
        dtype = u0.dtype
        stacked = None if data is None else data[None, ...]
        h = xp.asarray([dt], dtype=dtype)
        u0_row, u1_row = u0[None, :], u1[None, :]

        def at(s: float) -> Any:
            theta = xp.asarray([(s - t) / dt], dtype=dtype)
            return self.interpolate(theta, h, u0_row, u1_row, stacked)[0, ...]

        return at

    def interpolate(self, theta: Any, dt: Any, u0: Any, u1: Any, data: Any) -> Any:
        """Dense output of ``m`` steps at once.

        Args:
            theta: backend array (m,) of fractions in [0, 1] of each step.
            dt: backend array (m,) of the (signed) step sizes.
            u0, u1: backend arrays (m, n): the states at both ends of each step.
            data: stacked :meth:`dense_data` of the steps (leading dimension m), or ``None``.
        Returns: backend array (m, n). The default interpolates linearly (order 1).
        """
        return u0 + theta[:, None] * (u1 - u0)


#: NumPy's float64 dtype (arrays of native float64 share this instance)
_F64 = np.dtype(np.float64)

#: ``theta -> (theta, theta**2, ..., theta**d)`` written out for the usual degrees: a tuple
#: display instead of a comprehension saves about a fifth of a delay equation's history lookup
#: (the same ``**`` on the same floats, so the same values; ``theta**1`` is ``theta``)
_POWERS: dict[int, Callable[[float], tuple[float, ...]]] = {
    1: lambda th: (th,),
    2: lambda th: (th, th ** 2),
    3: lambda th: (th, th ** 2, th ** 3),
    4: lambda th: (th, th ** 2, th ** 3, th ** 4),
    5: lambda th: (th, th ** 2, th ** 3, th ** 4, th ** 5),
    6: lambda th: (th, th ** 2, th ** 3, th ** 4, th ** 5, th ** 6),
    7: lambda th: (th, th ** 2, th ** 3, th ** 4, th ** 5, th ** 6, th ** 7),
    8: lambda th: (th, th ** 2, th ** 3, th ** 4, th ** 5, th ** 6, th ** 7, th ** 8),
}


def power_interpolant(xp: Any, t: float, dt: float, u0: Any, Q: Any) -> Callable[[float], Any]:
    """``s -> u0 + sum_m theta**(m+1) Q[m]`` with ``theta = (s - t) / dt``: a step's dense
    output in the power basis (rows of ``Q``), for :meth:`Stepper.interpolant`.

    A delay equation calls it once per lag in every evaluation of its right-hand side, so
    for float64 NumPy arrays it takes the ``ndarray.dot`` method: the same BLAS product (and
    the same bits) as ``asarray(powers) @ Q`` without the ufunc dispatch of ``@`` (about
    0.8 us of the 2 us of a point at small sizes), with the powers written out
    (:data:`_POWERS`)."""
    exps = tuple(range(1, Q.shape[0] + 1))
    if type(Q) is np.ndarray and type(u0) is np.ndarray and Q.dtype is _F64 and u0.dtype is _F64:
        array = np.array
        powers = _POWERS.get(len(exps))
        if powers is None:
            def powers(th: float) -> tuple[float, ...]:
                return tuple([th ** k for k in exps])

        def at_numpy(s: float) -> Any:
            return u0 + array(powers((s - t) / dt)).dot(Q)

        return at_numpy
    dtype = u0.dtype

    def at(s: float) -> Any:
        th = (s - t) / dt
        return u0 + xp.asarray([th ** k for k in exps], dtype=dtype) @ Q

    return at
