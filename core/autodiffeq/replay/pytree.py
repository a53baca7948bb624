"""Parameters held as containers: flatten to one vector, unflatten back.

A network's parameters are usually a dict of arrays, a list of ``(W, b)`` pairs or a tuple
of arrays. The derivative engine and the sensitivity methods work on one flat vector
``theta`` of all floating-point entries; this module maps between the two:

    leaves = [W1, b1, W2, b2]   (depth-first; dict keys in sorted order, as autograd's
                                 ``flatten`` and ``jax.tree_util`` order them)
    theta  = concatenate([ravel(leaf) for leaf in leaves])

Leaves that are not floating-point numbers (ints, bools, strings, ``None``, functions, integer
arrays) are *static*: they are passed through to ``f`` unchanged and are not differentiated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidType
from ..validation import array_namespace_of


def _is_float_leaf(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, (float, np.floating)):
        return True
    dtype = getattr(x, "dtype", None)
    if dtype is None or not hasattr(x, "shape"):
        return False
    kind = getattr(dtype, "kind", None)
    if kind is not None:
        return kind in ("f", "c")
    return "float" in str(dtype) or "complex" in str(dtype)  # array-API arrays


def _is_container(x: Any) -> bool:
    return isinstance(x, (list, tuple, Mapping))


@dataclass(frozen=True)
class ParamLayout:
    """Where each floating-point leaf of a parameter container sits in the flat vector.

    Attributes:
        template: the container with every float leaf replaced by its index (static leaves
            kept as they are).
        shapes, sizes, offsets: per float leaf.
        dtype: the flat vector's dtype (the widest float among the leaves).
        size: total number of entries ``m``.
    """

    template: Any
    shapes: tuple[tuple[int, ...], ...]
    sizes: tuple[int, ...]
    offsets: tuple[int, ...]
    dtype: Any
    scalar_leaf: tuple[bool, ...]

    @property
    def size(self) -> int:
        return int(sum(self.sizes))

    @property
    def n_leaves(self) -> int:
        return len(self.shapes)

    def unflatten(self, theta: Any, reshape: Callable[[Any, tuple[int, ...]], Any] | None = None
                  ) -> Any:
        """The container with the float leaves taken from ``theta`` (views when possible)."""
        leaves = self.split(theta, reshape)
        return _fill(self.template, leaves)

    def split(self, theta: Any, reshape: Callable[[Any, tuple[int, ...]], Any] | None = None
              ) -> list[Any]:
        """The float leaves cut from ``theta``, each in its shape."""
        if reshape is None:
            reshape = np.reshape
        out = []
        for shape, size, off, scalar in zip(self.shapes, self.sizes, self.offsets,
                                            self.scalar_leaf, strict=True):
            piece = theta[off:off + size]
            out.append(piece[0] if scalar else reshape(piece, shape))
        return out

    def fill(self, leaves: list[Any]) -> Any:
        """The container with these float leaves."""
        return _fill(self.template, leaves)


def _fill(template: Any, leaves: list[Any]) -> Any:
    if isinstance(template, _Leaf):
        return leaves[template.index]
    if isinstance(template, Mapping):
        return type(template)((k, _fill(v, leaves)) for k, v in template.items()) \
            if not isinstance(template, dict) else {k: _fill(v, leaves)
                                                      for k, v in template.items()}
    if isinstance(template, tuple) and hasattr(template, "_fields"):  # namedtuple
        return type(template)(*(_fill(v, leaves) for v in template))
    if isinstance(template, (list, tuple)):
        return type(template)(_fill(v, leaves) for v in template)
    return template


@dataclass(frozen=True)
class _Leaf:
    index: int


def float_leaves(p: Any) -> list[Any]:
    """The floating-point leaves of ``p`` in flattening order."""
    if type(p) is np.ndarray and p.dtype.kind in "fc":
        return [p]
    out: list[Any] = []
    _collect(p, out, None)
    return out


def _collect(x: Any, out: list[Any], static: list[Any] | None) -> Any:
    if isinstance(x, Mapping):
        keys = sorted(x.keys(), key=repr) if not _sortable(x) else sorted(x.keys())
        built = {k: _collect(x[k], out, static) for k in keys}
        return built
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return type(x)(*(_collect(v, out, static) for v in x))
    if isinstance(x, (list, tuple)):
        return type(x)(_collect(v, out, static) for v in x)
    if _is_float_leaf(x):
        out.append(x)
        return _Leaf(len(out) - 1)
    if static is not None:
        static.append(x)
    return x


def _sortable(m: Mapping) -> bool:
    try:
        sorted(m.keys())
    except TypeError:
        return False
    return True


def layout_of(p: Any) -> ParamLayout:
    """The :class:`ParamLayout` of ``p`` (an array, a number, or a container of them)."""
    if type(p) is np.ndarray and p.dtype.kind in "fc":  # the common case, quickly
        return ParamLayout(_Leaf(0), (p.shape,), (p.size,), (0,), p.dtype, (False,))
    leaves: list[Any] = []
    template = _collect(p, leaves, [])
    shapes = tuple(tuple(np.shape(leaf)) for leaf in leaves)
    sizes = tuple(int(np.prod(s, dtype=np.int64)) for s in shapes)
    offsets = tuple(int(o) for o in np.cumsum((0, *sizes))[:-1])
    dtypes = [np.result_type(leaf) for leaf in leaves]
    dtype = np.result_type(*dtypes) if dtypes else np.dtype(np.float64)
    scalar = tuple(not isinstance(leaf, np.ndarray) and np.ndim(leaf) == 0 for leaf in leaves)
    return ParamLayout(template, shapes, sizes, offsets, dtype, scalar)


def is_container(p: Any) -> bool:
    """Whether ``p`` is a list, tuple or mapping (not one array)."""
    return _is_container(p)


def unflattener(p: Any, reshape: Callable[[Any, tuple[int, ...]], Any]) -> Callable[[Any], Any]:
    """``flat -> p`` in ``p``'s own form: a container with its float leaves from ``flat``, an
    array of ``p``'s shape, or the one entry of a scalar ``p`` (traceable with
    ``reshape=autograd.numpy.reshape``)."""
    if is_container(p):
        layout = layout_of(p)
        return lambda flat: layout.unflatten(flat, reshape)
    shape = tuple(np.shape(p))
    return (lambda flat: reshape(flat, shape)) if shape else (lambda flat: flat[0])


def flatten(p: Any) -> tuple[np.ndarray, ParamLayout]:
    """``(theta, layout)``: the float entries of ``p`` as one host vector and how to undo it."""
    layout = layout_of(p)
    leaves = float_leaves(p)
    if not leaves:
        return np.zeros(0, dtype=layout.dtype), layout
    try:
        theta = np.concatenate([np.asarray(leaf, dtype=layout.dtype).reshape(-1)
                                for leaf in leaves])
    except (TypeError, ValueError) as exc:
        raise InvalidType(f"p: cannot flatten its array leaves ({exc})") from None
    return theta, layout


def to_host_tree(p: Any, to_host: Callable[[Any], Any]) -> Any:
    """``p`` with every array leaf that is not a NumPy array copied to the host."""
    if isinstance(p, Mapping):
        return {k: to_host_tree(v, to_host) for k, v in p.items()}
    if isinstance(p, tuple) and hasattr(p, "_fields"):
        return type(p)(*(to_host_tree(v, to_host) for v in p))
    if isinstance(p, (list, tuple)):
        return type(p)(to_host_tree(v, to_host) for v in p)
    if array_namespace_of(p) is not None:
        return np.asarray(to_host(p))
    return p
