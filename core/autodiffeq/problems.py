"""Problem definitions.

An :class:`ODEProblem` is the initial-value problem

    M du/dt = f(u, p, t),   u(t0) = u0,   t in tspan = (t0, t1)

with ``f(u, p, t)`` in SciML's argument order, ``u`` of any shape and ``M`` the identity unless
a mass matrix is given. ``t1 < t0`` integrates backwards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import InvalidType
from .validation import (
    array_namespace_of,
    check_callable,
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
        """A copy with some fields replaced, e.g. ``prob.remake(p=new_p)``; validated anew."""
        fields = {fld.name: getattr(self, fld.name) for fld in dataclasses.fields(self)}
        unknown = set(changes) - set(fields)
        if unknown:
            raise InvalidType(
                f"remake() got unknown fields {sorted(unknown)}; fields: {sorted(fields)}"
            )
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
