"""Recording a function's primitive operations once, with autograd's own tracer.

``record(f, inputs)`` calls ``f`` on autograd boxes whose nodes are :class:`RecordNode`:
every autograd primitive applied to a traced value appends an :class:`Op` to a
:class:`Graph` (the raw function, its constant arguments, which arguments are traced values),
instead of building autograd's one-use VJP closures. The graph is then replayed on new
values (:mod:`.codegen`) with plain array calls.

Value-dependent behaviour is caught, not assumed away:

* comparisons and other non-differentiable primitives (``u > 0``, ``argmax``, ``where``'s
  mask) are recorded as operations too, so a mask is recomputed on replay;
* Python control flow on a traced value (``if u[0] > 0:``, ``max(a, b)``, ``while``) calls
  ``bool`` on a box: the outcome is recorded as a *guard*, re-checked on every replay — a
  different outcome makes the replay stale and the function is traced again on that branch;
* a traced value leaving autograd (``float(u[0])``, ``math.sin(t)``, ``np.asarray(u)``
  producing an object array) fails the trace or is detected, and the function is not
  replayed (autograd is used on every call instead).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from autograd.core import VJPNode, primitive_vjps, sparse_object_types
from autograd.numpy import numpy_wrapper as anp
from autograd.tracer import Box, Node, new_box, notrace_primitives, register_notrace, trace_stack

#: non-differentiable primitives that depend only on shapes and dtypes (static on replay)
_SHAPE_ONLY = (anp.ndim, anp.shape, anp.size, anp.result_type, anp.iscomplexobj,
               anp.isscalar, anp.zeros_like, anp.ones_like, anp.empty_like)


class RecordNode(Node):
    """An autograd node that appends its primitive call to a :class:`Graph`."""

    __slots__ = ("graph", "index")

    def __init__(self, value: Any, fun: Any, args: tuple, kwargs: dict,
                 parent_argnums: tuple[int, ...], parents: tuple[RecordNode, ...]) -> None:
        graph = parents[0].graph
        self.graph = graph
        self.index = graph.add(value, fun, args, kwargs, parent_argnums, parents)

    def initialize_root(self, graph: Graph, index: int) -> None:  # type: ignore[override]
        self.graph = graph
        self.index = index


for _fun in _SHAPE_ONLY:
    register_notrace(RecordNode, _fun)
# comparisons of traced scalars give numpy bools and integer scalars: box them while
# recording (under autograd's own nodes these primitives are never traced, so this changes
# nothing for plain autograd)
for _type in (bool, np.bool_, int, np.int8, np.int16, np.int32, np.int64, np.uint8,
              np.uint16, np.uint32, np.uint64):
    if _type not in Box.type_mappings:
        Box.type_mappings[_type] = Box.type_mappings[np.ndarray]

_plain_bool = Box.__bool__


def _guarded_bool(self: Box) -> bool:
    """``bool(box)``: recorded as a guard when the box belongs to a recording."""
    outcome = _plain_bool(self)
    node = self._node
    if type(node) is RecordNode:
        node.graph.guards.append((node.index, outcome))
    return outcome


Box.__bool__ = _guarded_bool  # type: ignore[method-assign]
Box.__nonzero__ = _guarded_bool  # type: ignore[attr-defined]


@dataclass
class Op:
    """One primitive call: ``values[out] = raw(*args, **kwargs)`` where the arguments at
    ``argnums`` are the values ``parents`` (the others are the constants in ``args``)."""

    out: int
    fun: Any  # the autograd primitive (key of autograd's VJP/JVP registries)
    raw: Any  # the unwrapped function
    args: tuple
    kwargs: dict
    argnums: tuple[int, ...]
    parents: tuple[int, ...]

    @property
    def name(self) -> str:
        return getattr(self.raw, "__name__", None) or getattr(self.fun, "__name__", "op")


@dataclass
class Graph:
    """A recorded function: inputs ``0 .. n_inputs-1``, then one value per :class:`Op`."""

    n_inputs: int
    ops: list[Op] = field(default_factory=list)
    #: recorded value of every input and op output (for shapes, dtypes and the self-check)
    values: list[Any] = field(default_factory=list)
    #: ``(value index, outcome of bool())`` for Python control flow on traced values
    guards: list[tuple[int, bool]] = field(default_factory=list)
    output: int | None = None
    constant_output: Any = None
    #: why the graph must not be replayed (``None``: it may)
    unreplayable: str | None = None

    def add(self, value: Any, fun: Any, args: tuple, kwargs: dict,
            argnums: tuple[int, ...], parents: tuple[RecordNode, ...]) -> int:
        index = len(self.values)
        if type(value) in sparse_object_types:
            self.unreplayable = ("f differentiates with autograd inside (a nested gradient "
                                 "with sparse cotangents)")
        for i, a in enumerate(args):
            if i not in argnums and isinstance(a, np.ndarray) and a.dtype == object:
                self.unreplayable = (f"{getattr(fun, '__name__', fun)} got an object array "
                                     "(a traced value left autograd, e.g. via np.asarray)")
        self.values.append(value)
        self.ops.append(Op(index, fun, getattr(fun, "fun", fun), tuple(args), dict(kwargs),
                           tuple(argnums), tuple(p.index for p in parents)))
        return index

    def shape(self, k: int) -> tuple[int, ...]:
        return tuple(np.shape(self.values[k]))

    def is_float(self, k: int) -> bool:
        v = self.values[k]
        try:
            return np.result_type(v).kind in "fc"
        except TypeError:  # not an array (e.g. autograd's SparseObject inside a nested grad)
            return False

    def differentiable(self, op: Op) -> bool:
        """Whether gradients flow through ``op`` (not a comparison, rounding, index, ...)."""
        if op.fun in notrace_primitives[VJPNode]:
            return False
        if op.fun is anp.asarray:  # no autograd rule; the identity when the dtype is kept
            return self.is_float(op.out) and self.same_dtype_asarray(op)
        return self.is_float(op.out) and op.fun in primitive_vjps

    def same_dtype_asarray(self, op: Op) -> bool:
        """``asarray(x)`` / ``asarray(x, dtype=x.dtype)`` of a traced value (the identity)."""
        if op.fun is not anp.asarray or op.argnums != (0,) or len(op.args) != 1:
            return False
        if set(op.kwargs) - {"dtype"}:
            return False
        dtype = op.kwargs.get("dtype")
        try:
            return dtype is None or np.dtype(dtype) == np.result_type(self.values[op.parents[0]])
        except TypeError:
            return False


def record(fun: Any, inputs: list[Any]) -> Graph:
    """Call ``fun(*inputs)`` once on recording boxes; the recorded :class:`Graph`.

    Raises whatever ``fun`` raises on boxes (e.g. ``TypeError`` from ``float(box)``)."""
    graph = Graph(n_inputs=len(inputs))
    with trace_stack.new_trace() as trace_id:
        boxes = []
        for i, x in enumerate(inputs):
            node = RecordNode.new_root(graph, i)
            graph.values.append(x)
            boxes.append(new_box(x, trace_id, node))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = fun(*boxes)
        if isinstance(out, Box) and out._trace == trace_id:
            graph.output = out._node.index
        elif isinstance(out, Box):
            graph.unreplayable = "the output is traced by an enclosing autograd trace"
        else:
            arr = np.asarray(out)
            if arr.dtype == object:
                graph.unreplayable = ("the output is an object array (built with np.array of "
                                      "traced values: use autograd.numpy.array or stack)")
            graph.constant_output = arr
    return graph
