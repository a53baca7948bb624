"""Shape-specialised derivative rules for the commonest primitives.

Each rule returns Python expressions (strings) for the VJP or JVP of one recorded operation,
written for the shapes seen when the function was recorded; every other primitive goes
through autograd's own registries (``primitive_vjps`` / ``primitive_jvps``, i.e. the rules
``defvjp`` / ``defjvp`` registered), evaluated on the replayed values. The expressions are
the textbook derivatives (e.g. ``d tanh(x) = (1 - tanh(x)^2) dx``);
``tests/replay/test_replay_engine.py`` checks them against autograd's own at random points,
and every new recording is checked once against autograd where it is made.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from autograd.numpy import numpy_wrapper as anp
from autograd.numpy.numpy_boxes import ArrayBox

Shape = tuple[int, ...]

#: elementwise unary primitives: VJP/JVP factor from (x, ans) names
UNARY_FACTOR: dict[Any, Callable[[str, str], str]] = {
    anp.tanh: lambda x, y: f"(1.0 - {y} * {y})",
    anp.exp: lambda x, y: y,
    anp.sin: lambda x, y: f"COS({x})",
    anp.cos: lambda x, y: f"(-SIN({x}))",
    anp.log: lambda x, y: f"(1.0 / {x})",
    anp.sqrt: lambda x, y: f"(0.5 / {y})",
    anp.square: lambda x, y: f"(2.0 * {x})",
    anp.sinh: lambda x, y: f"COSH({x})",
    anp.cosh: lambda x, y: f"SINH({x})",
}

GETITEM = ArrayBox.__getitem__
RESHAPES = (anp.reshape, anp.ravel, anp.squeeze, anp.expand_dims)
MATMULS = (anp.dot, anp.matmul)


def unbroadcast_axes(from_shape: Shape, to_shape: Shape) -> tuple[int, ...] | None:
    """Axes to sum a cotangent of ``from_shape`` over to get ``to_shape`` (``None``: equal)."""
    if tuple(from_shape) == tuple(to_shape):
        return None
    lead = len(from_shape) - len(to_shape)
    axes = list(range(lead))
    for i, d in enumerate(to_shape):
        if d == 1 and from_shape[lead + i] != 1:
            axes.append(lead + i)
    return tuple(axes)


def power_factor(x: str, exponent: Any) -> str | None:
    """``d(x**c)/dx`` for a constant real scalar ``c``."""
    if np.ndim(exponent) != 0 or not np.isrealobj(exponent):
        return None
    c = float(exponent)
    if c == 2.0:
        return f"(2.0 * {x})"
    if c == 3.0:
        return f"(3.0 * ({x} * {x}))"
    if c == 1.0:
        return "1.0"
    return f"({c!r} * {x} ** {c - 1.0!r})"


def matmul_vjp(a: str, b: str, g: str, sa: Shape, sb: Shape, argnum: int) -> str | None:
    """Cotangent of ``a @ b`` (1-D or 2-D operands) for operand ``argnum``."""
    na, nb = len(sa), len(sb)
    if na not in (1, 2) or nb not in (1, 2):
        return None
    if argnum == 0:
        if na == 1 and nb == 1:
            return f"({g} * {b})"
        if na == 1:
            return f"DOT({b}, {g})"
        if nb == 1:
            return f"({g}[:, None] * {b})"
        return f"DOT({g}, {b}.T)"
    if na == 1 and nb == 1:
        return f"({g} * {a})"
    if na == 1:
        return f"({a}[:, None] * {g})"
    if nb == 1:
        return f"DOT({g}, {a})"
    if sa[0] == 1:  # one row (a batch of one): an outer product, cheaper by broadcasting
        return f"({a}.T * {g})"
    return f"DOT({a}.T, {g})"
