"""Where a recording is replayed: NumPy, or any array-API namespace (e.g. CuPy).

The NumPy flavour calls the recorded raw NumPy functions and, for derivatives without a
shape-specialised rule, autograd's registered VJP/JVP makers. Another backend's arrays cannot
go through NumPy or autograd's rules, so the *array-API flavour* replays only what the
standard can express: every operation of the recording must be in :data:`ARRAY_API_FORWARD`
and have a rule in :mod:`.rules` (listed in docs/derivatives.md); otherwise the recording is
refused with :class:`UnsupportedOperation`, naming the operation.

Array-API operations with rules: ``+ - * /``, negation, ``**`` by a constant, ``@``/``dot``
of 1-D and 2-D operands, ``tanh exp log sin cos sinh cosh sqrt square``, ``reshape`` (and
``ravel``/``squeeze``/``expand_dims``), basic indexing (integers, slices, ``None``),
``stack``/``concatenate``/``array`` of traced values, ``sum``, 2-D transpose, and the
comparisons (no derivative) that guard control flow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from autograd.numpy import numpy_wrapper as anp

from .rules import GETITEM, MATMULS, RESHAPES, UNARY_FACTOR


class UnsupportedOperation(Exception):
    """The recording uses an operation the flavour cannot replay (the message names it)."""


#: infix operators of the array API for binary primitives
BINARY_OPERATORS: dict[Any, str] = {
    anp.add: "+", anp.subtract: "-", anp.multiply: "*", anp.true_divide: "/",
    anp.divide: "/", anp.greater: ">", anp.less: "<", anp.greater_equal: ">=",
    anp.less_equal: "<=", anp.equal: "==", anp.not_equal: "!=",
}

#: elementwise functions of the array API, by primitive
UNARY_FUNCTIONS: dict[Any, str] = {
    anp.tanh: "tanh", anp.exp: "exp", anp.log: "log", anp.sin: "sin", anp.cos: "cos",
    anp.sqrt: "sqrt", anp.square: "square", anp.sinh: "sinh", anp.cosh: "cosh",
}
assert set(UNARY_FUNCTIONS) == set(UNARY_FACTOR)


@dataclass
class Flavor:
    """How generated code calls arrays: the helper names it binds and whether it is NumPy."""

    name: str
    namespace: dict[str, Any]
    numpy: bool
    xp: Any = None
    to_backend: Any = None
    dtype: Any = None
    notes: list[str] = field(default_factory=list)


def numpy_flavor(base: dict[str, Any]) -> Flavor:
    return Flavor("numpy", dict(base), numpy=True, xp=np)


def array_api_flavor(backend: Any, dtype: Any) -> Flavor:
    """The flavour for ``backend`` (its ``xp`` namespace, ``asarray`` for constants)."""
    xp = backend.xp

    def zeros(shape: Any, _dtype: Any = None) -> Any:
        return xp.zeros(shape if isinstance(shape, tuple) else (int(shape),), dtype=dtype)

    def copy(x: Any) -> Any:
        return xp.asarray(x, copy=True)

    ns: dict[str, Any] = {
        "XP": xp, "RESHAPE": xp.reshape, "SUM": xp.sum, "BT": xp.broadcast_to,
        "ZEROS": zeros, "COPY": copy, "CONCAT": lambda parts: xp.concat(list(parts)),
        "ARRAY": lambda parts: xp.stack(list(parts)), "RAVEL": lambda x: xp.reshape(x, (-1,)),
        "DOT": lambda a, b: a @ b, "COS": xp.cos, "SIN": xp.sin, "COSH": xp.cosh,
        "SINH": xp.sinh, "SHAPE": lambda x: tuple(x.shape), "ZSCALAR": xp.asarray(0.0,
                                                                                  dtype=dtype),
    }
    return Flavor(f"array-api ({backend.name})", ns, numpy=False, xp=xp,
                  to_backend=lambda x: backend.asarray(np.asarray(x), dtype=None), dtype=dtype)


def _basic_index(idx: Any) -> bool:
    items = idx if isinstance(idx, tuple) else (idx,)
    return all(it is None or it is Ellipsis or type(it) in (int, slice)
               or isinstance(it, np.integer) for it in items)


def array_api_forward(op: Any, args: list[str], out_shape: tuple[int, ...],
                      in_shapes: list[tuple[int, ...]], const: Any) -> str:
    """The array-API expression of one recorded operation (raises
    :class:`UnsupportedOperation`)."""
    fun = op.fun
    name = getattr(fun, "__name__", repr(fun))
    if op.kwargs and fun is not anp.sum:
        raise UnsupportedOperation(f"{name} with keyword arguments {sorted(op.kwargs)}")
    if fun in BINARY_OPERATORS and len(args) == 2:
        return f"({args[0]} {BINARY_OPERATORS[fun]} {args[1]})"
    if fun is anp.negative:
        return f"(-{args[0]})"
    if fun in UNARY_FUNCTIONS:
        return f"XP.{UNARY_FUNCTIONS[fun]}({args[0]})"
    if fun is anp.power and 1 not in op.argnums and np.ndim(op.args[1]) == 0:
        return f"({args[0]} ** {float(op.args[1])!r})"
    if fun in MATMULS and all(len(s) in (1, 2) for s in in_shapes[:2]):
        return f"({args[0]} @ {args[1]})"
    if fun in RESHAPES:
        return f"RESHAPE({args[0]}, {out_shape!r})"
    if fun is anp.transpose and len(args) == 1 and len(in_shapes[0]) == 2:
        return f"{args[0]}.T"
    if fun is GETITEM and op.argnums == (0,) and _basic_index(op.args[1]):
        return f"{args[0]}[{args[1]}]"
    if fun is anp.concatenate_args:
        return f"XP.concat([{', '.join(args[1:])}], axis={int(op.args[0])})"
    if fun is anp._array_from_scalar_or_array and op.args[0] == () and not op.args[1]:
        return args[2]
    if fun is anp.array_from_args and op.args[0] == () and not op.args[1]:
        return f"XP.stack([{', '.join(args[2:])}])"
    if fun is anp.sum and set(op.kwargs) <= {"axis", "keepdims"}:
        axis = op.kwargs.get("axis", op.args[1] if len(op.args) > 1 else None)
        keep = bool(op.kwargs.get("keepdims", False))
        return f"XP.sum({args[0]}, axis={const(axis)}, keepdims={keep})"
    raise UnsupportedOperation(
        f"{name} (no array-API replay rule; supported: + - * / ** @, tanh exp log sin cos "
        "sinh cosh sqrt square, reshape, basic indexing, stack/concatenate, sum, .T)")
