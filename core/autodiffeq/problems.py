"""Problem definitions.

An :class:`ODEProblem` is the initial-value problem

    M du/dt = f(u, p, t),   u(t0) = u0,   t in tspan = (t0, t1)

with ``f(u, p, t)`` in SciML's argument order, ``u`` of any shape and ``M`` the identity unless
a mass matrix is given. ``t1 < t0`` integrates backwards.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import InvalidArgument, InvalidType
from .validation import (
    array_namespace_of,
    check_callable,
    check_lags,
    check_mass_matrix,
    check_state,
    check_tspan,
    is_traced,
)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class ODEProblem:
    """An ordinary differential equation ``M du/dt = f(u, p, t)``, ``u(t0) = u0``.

    Args:
        f: right-hand side ``f(u, p, t) -> du/dt`` returning an array of ``u``'s shape
            and dtype.
        u0: initial state, a real array of any shape (integers are promoted to float64;
            float32 stays float32).
        tspan: ``(t0, t1)``, finite and distinct; ``t1 < t0`` integrates backwards.
        p: parameters passed through to ``f`` (array, tuple, dict, anything).
        mass_matrix: constant mass matrix ``M`` (``n x n`` for ``n = u0.size``), possibly
            singular (index-1 DAE); solvers declare whether they support it.
        jac: ``jac(u, p, t) -> df/du`` as an ``n x n`` array or sparse matrix.
        jac_prototype: sparsity pattern of the Jacobian (array or scipy.sparse matrix).
        paramjac: ``paramjac(u, p, t) -> df/dp``.
        vjp: ``vjp(v, u, p, t) -> (v^T df/du, v^T df/dp)``.
        jvp: ``jvp(v, u, p, t) -> df/du v``.
        tgrad: ``tgrad(u, p, t) -> df/dt`` (an array of ``u``'s shape): the time derivative
            stiff (Rosenbrock) solvers need for a non-autonomous ``f``; without it they
            difference ``f`` in ``t`` (or skip the term when ``f`` does not depend on ``t``).
    """

    f: Callable[..., Any]
    u0: Any
    tspan: tuple[float, float]
    p: Any = None
    mass_matrix: Any = None
    jac: Any = None
    jac_prototype: Any = None
    paramjac: Any = None
    vjp: Any = None
    jvp: Any = None
    tgrad: Any = None

    problem_type = "ODE"

    def __init__(
        self,
        f: Callable[..., Any],
        u0: Any,
        tspan: Any,
        p: Any = None,
        *,
        mass_matrix: Any = None,
        jac: Any = None,
        jac_prototype: Any = None,
        paramjac: Any = None,
        vjp: Any = None,
        jvp: Any = None,
        tgrad: Any = None,
    ) -> None:
        check_callable(f, "f")
        check_state(u0, "u0")
        t0, t1 = check_tspan(tspan)
        for name, value in (("jac", jac), ("paramjac", paramjac), ("vjp", vjp), ("jvp", jvp),
                            ("tgrad", tgrad)):
            if value is not None and name != "jac":
                check_callable(value, name)
        if jac is not None and not callable(jac) and not hasattr(jac, "shape"):
            raise InvalidType("jac must be callable or a constant matrix")
        if mass_matrix is not None:
            check_mass_matrix(mass_matrix, u0)
        set_ = object.__setattr__
        set_(self, "f", f)
        set_(self, "u0", _normalise_state(u0))
        set_(self, "tspan", (t0, t1))
        set_(self, "p", p)
        set_(self, "mass_matrix", mass_matrix)
        set_(self, "jac", jac)
        set_(self, "jac_prototype", jac_prototype)
        set_(self, "paramjac", paramjac)
        set_(self, "vjp", vjp)
        set_(self, "jvp", jvp)
        set_(self, "tgrad", tgrad)

    def remake(self, **changes: Any) -> ODEProblem:
        """A copy with some fields replaced, e.g. ``prob.remake(p=new_p)``; the new fields
        are validated (the others were when this problem was made)."""
        fields = {name: getattr(self, name) for name in _field_names(type(self))}
        unknown = set(changes) - set(fields)
        if unknown:
            raise InvalidType(
                f"remake() got unknown fields {sorted(unknown)}; fields: {sorted(fields)}"
            )
        if changes.keys() <= {"u0", "p"}:
            # the common case (an ensemble's prob_func, a parameter sweep): only the new
            # state needs checking, so thousands of remakes cost little
            new = object.__new__(type(self))
            set_ = object.__setattr__
            for name, value in fields.items():
                set_(new, name, value)
            if "u0" in changes:
                u0 = changes["u0"]
                check_state(u0, "u0")
                if self.mass_matrix is not None:
                    check_mass_matrix(self.mass_matrix, u0)
                set_(new, "u0", _normalise_state(u0))
            if "p" in changes:
                set_(new, "p", changes["p"])
            return new
        fields.update(changes)
        f, u0, tspan, p = fields.pop("f"), fields.pop("u0"), fields.pop("tspan"), fields.pop("p")
        return type(self)(f, u0, tspan, p, **fields)

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the state ``u``."""
        return tuple(self.u0.shape)

    def __repr__(self) -> str:
        shape = getattr(self.u0, "shape", None)
        name = getattr(self.f, "__name__", type(self.f).__name__)
        extra = ", mass_matrix=..." if self.mass_matrix is not None else ""
        return f"ODEProblem(f={name}, u0 shape={shape}, tspan={self.tspan}{extra})"



@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(fld.name for fld in dataclasses.fields(cls))


def _normalise_state(u0: Any) -> Any:
    """Host data becomes a NumPy float array (ints promoted to float64); arrays of another
    array-API library (CuPy, array_api_strict) and autograd boxes (a ``u0`` being
    differentiated) are kept as they are."""
    if array_namespace_of(u0) is not None or is_traced(u0):
        return u0
    arr = np.asarray(u0)
    if arr.dtype.kind in "biu":
        arr = arr.astype(np.float64)
    return arr


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class DDEProblem:
    """A delay differential equation ``du/dt = f(u, h, p, t)`` with history ``h``.

    ``f`` reads the past through ``h(p, s)``: the given history for ``s <= t0``, the solution
    itself for ``t0 < s <= t`` (a lookup of the future, ``s > t``, is an error). Delays are
    written in ``f`` (``h(p, t - tau)``); the lags are declared so that solvers can track the
    discontinuities they propagate (Bellen & Zennaro, *Numerical Methods for Delay
    Differential Equations*, 2003, ch. 4).

    Args:
        f: right-hand side ``f(u, h, p, t) -> du/dt`` (an array of ``u``'s shape and dtype).
        u0: the state at ``t0``; ``None`` means ``h(p, t0)``. It may differ from ``h(p, t0)``
            (a jump at ``t0``).
        h: the history ``h(p, s) -> u(s)`` for ``s <= t0`` (an array of ``u``'s shape).
        tspan: ``(t0, t1)``, finite, ``t1 > t0``.
        p: parameters, passed to ``f``, ``h`` and the dependent lags.
        constant_lags: the constant delays ``tau > 0`` that ``f`` uses.
        dependent_lags: callables ``tau(u, p, t) -> float`` (state-dependent delays ``f``
            uses).
    """

    f: Callable[..., Any]
    u0: Any
    h: Callable[..., Any]
    tspan: tuple[float, float]
    p: Any = None
    constant_lags: tuple[float, ...] = ()
    dependent_lags: tuple[Callable[..., Any], ...] = ()
    #: whether ``u0`` was taken from the history (``u0=None``): ``remake(p=...)`` takes it
    #: again from the new parameters
    u0_from_history: bool = False

    problem_type = "DDE"

    def __init__(
        self,
        f: Callable[..., Any],
        u0: Any,
        h: Callable[..., Any],
        tspan: Any,
        p: Any = None,
        *,
        constant_lags: Any = (),
        dependent_lags: Any = (),
    ) -> None:
        check_callable(f, "f")
        check_callable(h, "h")
        t0, t1 = check_tspan(tspan)
        if t1 < t0:
            raise InvalidArgument(
                f"tspan runs backwards ({t0} -> {t1}): a delay equation is integrated forwards "
                "from its history")
        lags = check_lags(constant_lags)
        dep = tuple(dependent_lags) if isinstance(dependent_lags, (list, tuple)) else (
            dependent_lags,)
        for i, tau in enumerate(dep):
            check_callable(tau, f"dependent_lags[{i}]")
        from_history = u0 is None
        if from_history:
            try:
                u0 = h(p, t0)
            except Exception as exc:
                exc.add_note("autodiffeq: raised by h(p, t0), the history at t0 (u0=None)")
                raise
            if u0 is None:
                raise InvalidType("h(p, t0) returned None: the history must return the state "
                                  "(an array of numbers)")
        check_state(u0, "u0" if not from_history else "h(p, t0) (u0=None)")
        set_ = object.__setattr__
        set_(self, "f", f)
        set_(self, "u0", _normalise_state(u0))
        set_(self, "h", h)
        set_(self, "tspan", (t0, t1))
        set_(self, "p", p)
        set_(self, "constant_lags", lags)
        set_(self, "dependent_lags", dep)
        set_(self, "u0_from_history", from_history)

    def remake(self, **changes: Any) -> DDEProblem:
        """A copy with some fields replaced (``f``, ``u0``, ``h``, ``tspan``, ``p``,
        ``constant_lags``, ``dependent_lags``); validated anew. With ``u0`` taken from the
        history, a new ``p`` or ``h`` takes it again unless ``u0`` is given."""
        names = ("f", "u0", "h", "tspan", "p", "constant_lags", "dependent_lags")
        unknown = set(changes) - set(names)
        if unknown:
            raise InvalidType(
                f"remake() got unknown fields {sorted(unknown)}; fields: {sorted(names)}")
        fields = {name: getattr(self, name) for name in names}
        if self.u0_from_history and "u0" not in changes:
            fields["u0"] = None
        fields.update(changes)
        return DDEProblem(fields["f"], fields["u0"], fields["h"], fields["tspan"],
                          fields["p"], constant_lags=fields["constant_lags"],
                          dependent_lags=fields["dependent_lags"])

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the state ``u``."""
        return tuple(self.u0.shape)

    def __repr__(self) -> str:
        name = getattr(self.f, "__name__", type(self.f).__name__)
        return (f"DDEProblem(f={name}, u0 shape={getattr(self.u0, 'shape', None)}, "
                f"tspan={self.tspan}, constant_lags={self.constant_lags}, "
                f"dependent_lags={len(self.dependent_lags)})")


#: the noise kinds of :class:`SDEProblem`
NOISE_KINDS = ("diagonal", "scalar", "additive", "general")
#: the stochastic integrals an :class:`SDEProblem` can be read in
INTERPRETATIONS = ("ito", "stratonovich")


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class SDEProblem:
    """A stochastic differential equation ``du = f(u, p, t) dt + g(u, p, t) dW``.

    Args:
        f: the drift ``f(u, p, t)`` (an array of ``u``'s shape and dtype).
        g: the diffusion ``g(u, p, t)``: an array of ``u``'s shape for ``noise`` ``"diagonal"``,
            ``"scalar"`` and ``"additive"``; of shape ``(*u.shape, noise_dim)`` for
            ``"general"``.
        u0: the initial state (any shape; float64 or float32).
        tspan: ``(t0, t1)``, finite, ``t1 > t0``.
        p: parameters passed to ``f`` and ``g``.
        noise: how ``W`` enters:

            * ``"diagonal"``: ``W`` has ``u``'s shape; component ``i`` of ``u`` is driven by
              ``g_i dW_i`` (the order-1 and order-1.5 methods assume, as Rößler 2010 does,
              that ``g_i`` depends on ``u_i`` only);
            * ``"scalar"``: one Wiener process drives every component (``g dW``);
            * ``"additive"``: as diagonal, and ``g`` does not depend on ``u`` (methods for
              additive noise exploit it: SRA1, SOSRA);
            * ``"general"``: ``W`` has shape ``(noise_dim,)`` and ``g`` returns a matrix per
              component: ``du_i = ... + sum_j g_ij dW_j``.
        noise_dim: the number of Wiener processes, for ``noise="general"`` only.
        interpretation: ``"ito"`` (default) or ``"stratonovich"``: which stochastic integral
            ``g dW`` means.
    """

    f: Callable[..., Any]
    g: Callable[..., Any]
    u0: Any
    tspan: tuple[float, float]
    p: Any = None
    noise: str = "diagonal"
    noise_dim: int | None = None
    interpretation: str = "ito"

    problem_type = "SDE"

    def __init__(
        self,
        f: Callable[..., Any],
        g: Callable[..., Any],
        u0: Any,
        tspan: Any,
        p: Any = None,
        *,
        noise: str = "diagonal",
        noise_dim: int | None = None,
        interpretation: str = "ito",
    ) -> None:
        check_callable(f, "f")
        check_callable(g, "g")
        check_state(u0, "u0")
        t0, t1 = check_tspan(tspan)
        if t1 < t0:
            raise InvalidArgument(
                f"tspan runs backwards ({t0} -> {t1}): an SDE is integrated forwards in time "
                "(its noise is adapted to the forward filtration)")
        noise = _choice(noise, NOISE_KINDS, "noise")
        interpretation = _choice(interpretation, INTERPRETATIONS, "interpretation")
        if noise == "general":
            if noise_dim is None:
                raise InvalidArgument(
                    "noise_dim is required for noise='general': the number of Wiener "
                    "processes (g returns an array of shape (*u.shape, noise_dim))")
            if (isinstance(noise_dim, bool) or not isinstance(noise_dim, (int, np.integer))
                    or noise_dim < 1):
                raise InvalidArgument(
                    f"noise_dim must be a positive integer, got {noise_dim!r}")
            noise_dim = int(noise_dim)
        elif noise_dim is not None:
            raise InvalidArgument(
                f"noise_dim is only for noise='general'; with noise={noise!r} the noise has "
                f"{'one component' if noise == 'scalar' else 'the shape of u'} (got "
                f"noise_dim={noise_dim!r})")
        set_ = object.__setattr__
        set_(self, "f", f)
        set_(self, "g", g)
        set_(self, "u0", _normalise_state(u0))
        set_(self, "tspan", (t0, t1))
        set_(self, "p", p)
        set_(self, "noise", noise)
        set_(self, "noise_dim", noise_dim)
        set_(self, "interpretation", interpretation)

    def remake(self, **changes: Any) -> SDEProblem:
        """A copy with some fields replaced (``f``, ``g``, ``u0``, ``tspan``, ``p``,
        ``noise``, ``noise_dim``, ``interpretation``); validated anew."""
        names = ("f", "g", "u0", "tspan", "p", "noise", "noise_dim", "interpretation")
        unknown = set(changes) - set(names)
        if unknown:
            raise InvalidType(
                f"remake() got unknown fields {sorted(unknown)}; fields: {sorted(names)}")
        fields = {name: getattr(self, name) for name in names}
        if "noise" in changes and changes["noise"] != "general" and "noise_dim" not in changes:
            fields["noise_dim"] = None
        fields.update(changes)
        return SDEProblem(fields["f"], fields["g"], fields["u0"], fields["tspan"], fields["p"],
                          noise=fields["noise"], noise_dim=fields["noise_dim"],
                          interpretation=fields["interpretation"])

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the state ``u``."""
        return tuple(self.u0.shape)

    @property
    def noise_shape(self) -> tuple[int, ...]:
        """The shape of ``W``: ``u``'s for diagonal and additive noise, ``()`` for scalar,
        ``(noise_dim,)`` for general."""
        if self.noise == "scalar":
            return ()
        if self.noise == "general":
            return (int(self.noise_dim),)
        return self.shape

    @property
    def g_shape(self) -> tuple[int, ...]:
        """The shape ``g`` must return."""
        if self.noise == "general":
            return (*self.shape, int(self.noise_dim))
        return self.shape

    def __repr__(self) -> str:
        name = getattr(self.f, "__name__", type(self.f).__name__)
        dim = f", noise_dim={self.noise_dim}" if self.noise == "general" else ""
        return (f"SDEProblem(f={name}, u0 shape={getattr(self.u0, 'shape', None)}, "
                f"tspan={self.tspan}, noise={self.noise!r}{dim}, "
                f"interpretation={self.interpretation!r})")


def _choice(value: Any, choices: tuple[str, ...], name: str) -> str:
    if not isinstance(value, str):
        raise InvalidType(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    low = value.lower()
    if low not in choices:
        raise InvalidArgument(
            f"unknown {name} {value!r}; choose one of {', '.join(map(repr, choices))}")
    return low
