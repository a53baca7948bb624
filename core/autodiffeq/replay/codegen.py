"""From a recorded :class:`~.record.Graph` to plain Python functions.

For a graph of ``f(x_0, ..., x_k)`` (``x_0 = u``, then the parameter leaves, then ``t``) with
the inputs ``wanted`` differentiated, :class:`Program` writes and compiles:

* ``value(x_0, ..., x_k) -> y``: the recorded operations as straight-line code;
* ``forward(x_0, ..., x_k) -> (y, back)``: the same, returning ``back(g)``, a closure over
  the forward values that returns ``[g^T dy/dx_j for j in wanted]`` concatenated into one
  flat vector (reverse mode: one call of ``back`` per cotangent, so a Jacobian costs one
  forward and ``len(y)`` backward sweeps);
* ``tangent(x_0, ..., x_k, dx_j for j in wanted) -> (y, dy)``: forward mode.

Each operation's derivative is a shape-specialised expression from :mod:`.rules` where one
exists, else a call of autograd's registered VJP/JVP maker on the replayed values. Guards
(``bool`` of a traced value) and shape checks of data-dependent results raise
:class:`Stale` when a replay would leave the recorded path.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
from autograd.core import SparseObject, primitive_jvps, primitive_vjps
from autograd.numpy import numpy_wrapper as anp

from .flavors import Flavor, UnsupportedOperation, array_api_forward, numpy_flavor
from .record import Graph, Op
from .rules import (
    GETITEM,
    MATMULS,
    RESHAPES,
    UNARY_FACTOR,
    matmul_vjp,
    power_factor,
    unbroadcast_axes,
)


class Stale(Exception):
    """A replay left the recorded path (a guard or a data-dependent shape changed)."""


def _dense(x: Any) -> Any:
    return x.mut_add(x.vs.zeros()) if type(x) is SparseObject else x


def _ravel(x: Any) -> Any:
    return np.reshape(x, -1)


BASE_NAMESPACE: dict[str, Any] = {
    "np": np, "DOT": np.dot, "OUTER": np.outer, "COS": np.cos, "SIN": np.sin,
    "COSH": np.cosh, "SINH": np.sinh, "SUM": np.sum, "RESHAPE": np.reshape,
    "BT": np.broadcast_to, "ZEROS": np.zeros, "STALE": Stale, "SHAPE": np.shape,
    "DENSE": _dense, "ADD_AT": np.add.at, "CONCAT": np.concatenate, "RAVEL": _ravel,
    "ASARRAY": np.asarray, "ARRAY": np.array, "COPY": np.array, "ZSCALAR": np.float64(0.0),
}

_INLINE_TYPES = (int, bool, type(None))


class Program:
    """Source code and compiled functions for one recorded graph (see module doc)."""

    def __init__(self, graph: Graph, wanted: tuple[int, ...], flavor: Flavor | None = None
                 ) -> None:
        if graph.unreplayable:
            raise ValueError(graph.unreplayable)
        self.graph = graph = deduplicate(graph)
        self.wanted = tuple(wanted)
        self.flavor = flavor if flavor is not None else numpy_flavor(BASE_NAMESPACE)
        self.numpy = self.flavor.numpy
        self.ns: dict[str, Any] = dict(self.flavor.namespace)
        self._const_names: dict[int, str] = {}
        self._keep: list[Any] = []
        self.n_generic = 0
        self._analyse()

    # ------------------------------------------------------------------ analysis
    def _analyse(self) -> None:
        g = self.graph
        ops_by_out = {op.out: op for op in g.ops}
        self.ops_by_out = ops_by_out
        # guards and data-dependent shapes
        self.guards: dict[int, bool] = {}
        for k, outcome in g.guards:
            self.guards[k] = outcome
        self.shape_checked = {
            op.out for op in g.ops if any(not g.is_float(p) for p in op.parents)
        }
        self.stacked = _stacked_scalars(g, ops_by_out)
        # operations needed for the output and the checks
        needed: set[int] = set()
        stack = [k for k in (g.output, *self.guards, *self.shape_checked) if k is not None]
        while stack:
            k = stack.pop()
            if k in needed:
                continue
            needed.add(k)
            if k in self.stacked:
                stack.extend(self.stacked[k])
                continue
            op = ops_by_out.get(k)
            if op is not None:
                stack.extend(op.parents)
        self.needed = needed
        # values that depend on the parameter leaves only (not on u, not on t): computed
        # once per set of parameters by ``prep`` and passed in as ``P`` (unpacking a flat
        # p into weight matrices happens once per solve, not at every call)
        leaf_inputs = set(range(1, g.n_inputs - 1))
        param_only = set(leaf_inputs)
        for op in g.ops:
            sources = self.stacked.get(op.out, op.parents)
            if op.out in needed and sources and all(p in param_only for p in sources):
                param_only.add(op.out)
        self.param_only = param_only
        self.hoisted = [op.out for op in g.ops if op.out in param_only and op.out in needed]
        # values that depend on a wanted input through differentiable operations
        fwd = set(self.wanted)
        self.diff_ops: set[int] = set()
        for op in g.ops:
            if not g.differentiable(op):
                continue
            self.diff_ops.add(op.out)
            if any(p in fwd and g.is_float(p) for p in op.parents):
                fwd.add(op.out)
        # values the output depends on through differentiable operations
        reach: set[int] = set()
        if g.output is not None:
            stack = [g.output]
            while stack:
                k = stack.pop()
                if k in reach:
                    continue
                reach.add(k)
                op = ops_by_out.get(k)
                if op is not None and op.out in self.diff_ops:
                    stack.extend(p for p in op.parents if g.is_float(p))
        self.active = fwd & reach

    # ------------------------------------------------------------------ helpers
    def const(self, x: Any) -> str:
        """A name (or literal) for the constant ``x`` in the generated code."""
        if type(x) in _INLINE_TYPES:
            return repr(x)
        if type(x) is float and np.isfinite(x):
            return repr(x)
        if type(x) is tuple and all(type(e) is int for e in x):
            return repr(x)
        if not self.numpy:
            if isinstance(x, np.floating) and np.isfinite(x):
                return repr(float(x))
            if isinstance(x, np.ndarray) and x.dtype.kind in "biuf":
                x = self.flavor.to_backend(x)
        key = id(x)
        name = self._const_names.get(key)
        if name is None:
            name = f"c{len(self._const_names)}"
            self._const_names[key] = name
            self._keep.append(x)
            self.ns[name] = x
        return name

    def _arg_exprs(self, op: Op) -> list[str]:
        out = []
        for i, a in enumerate(op.args):
            if i in op.argnums:
                out.append(f"v{op.parents[op.argnums.index(i)]}")
            else:
                out.append(self.const(a))
        return out

    def _shape(self, k: int) -> tuple[int, ...]:
        return self.graph.shape(k)

    def _forward_lines(self, indent: str, hoisted: bool = False) -> list[str]:
        """Straight-line code of the needed operations: those not hoisted (with the
        unpacking of ``P``), or with ``hoisted`` only the hoisted ones (``prep``'s body)."""
        g = self.graph
        lines = []
        chosen = set(self.hoisted)
        if not hoisted:
            for k, outcome in self.guards.items():
                if k < g.n_inputs:
                    lines.append(f"{indent}if bool(v{k}) is not {outcome}: raise STALE")
            if self.hoisted:
                lines.append(f"{indent}{''.join(f'v{k}, ' for k in self.hoisted)}= P")
        for op in g.ops:
            k = op.out
            if k not in self.needed or ((k in chosen) != hoisted):
                continue
            args = self._arg_exprs(op)
            if k in self.stacked:
                sources = ", ".join(f"v{j}" for j in self.stacked[k])
                lines.append(f"{indent}v{k} = ARRAY(({sources},))")
            elif not self.numpy and self._plain_array(op):
                lines.append(f"{indent}v{k} = {args[-1]}")
            elif not self.numpy:
                in_shapes = [self._shape(op.parents[op.argnums.index(i)]) if i in op.argnums
                             else tuple(np.shape(a)) for i, a in enumerate(op.args)]
                expr = array_api_forward(op, args, self._shape(k), in_shapes, self.const)
                lines.append(f"{indent}v{k} = {expr}")
            elif op.fun is GETITEM and len(args) == 2 and not op.kwargs:
                lines.append(f"{indent}v{k} = {args[0]}[{args[1]}]")
            elif (op.fun is anp.reshape and len(args) == 2 and not op.kwargs
                  and op.argnums == (0,) and isinstance(g.values[k], np.ndarray)):
                lines.append(f"{indent}v{k} = {args[0]}.reshape({args[1]})")
            else:
                kw = f", **{self.const(op.kwargs)}" if op.kwargs else ""
                lines.append(f"{indent}v{k} = {self.const(op.raw)}({', '.join(args)}{kw})")
            if k in self.guards:
                lines.append(f"{indent}if bool(v{k}) is not {self.guards[k]}: raise STALE")
            if k in self.shape_checked:
                lines.append(f"{indent}if SHAPE(v{k}) != {self.const(self._shape(k))}: "
                             "raise STALE")
        return lines

    def _output_expr(self) -> str:
        g = self.graph
        if g.output is None:
            return self.const(g.constant_output)
        return f"v{g.output}"

    def _signature(self) -> str:
        return "P, " + ", ".join(f"v{i}" for i in range(self.graph.n_inputs))

    def prep_function(self) -> Any:
        """``prep(*x) -> P``: the values that depend on the parameter leaves only."""
        sig = ", ".join(f"v{i}" for i in range(self.graph.n_inputs))
        lines = [f"def prep({sig}):"]
        lines += self._forward_lines("    ", hoisted=True)
        lines.append(f"    return ({''.join(f'v{k}, ' for k in self.hoisted)})")
        return self._compile("prep", lines)

    def _compile(self, name: str, lines: list[str]) -> Any:
        source = "\n".join(lines)
        code = compile(source, f"<replay {name}>", "exec")
        exec(code, self.ns)  # noqa: S102 - our own generated source
        fn = self.ns[name]
        fn.source = source
        return fn

    # ------------------------------------------------------------------ value
    def value_function(self) -> Any:
        lines = [f"def value({self._signature()}):"]
        lines += self._forward_lines("    ")
        lines.append(f"    return {self._output_expr()}")
        return self._compile("value", lines)

    # ------------------------------------------------------------------ reverse mode
    def forward_function(self) -> Any:
        """``forward(*x) -> (y, back)``; ``back(g)`` -> flat ``[g^T dy/dx_j]_{j in wanted}``."""
        g = self.graph
        lines = [f"def forward({self._signature()}):"]
        lines += self._forward_lines("    ")
        lines.append("    def back(g):")
        body: list[str] = []
        contrib: dict[int, list[tuple]] = defaultdict(list)
        if g.output is not None and g.output in self.active:
            contrib[g.output].append(("dense", "g"))
        for op in reversed(g.ops):
            k = op.out
            if k not in self.active or k < g.n_inputs:
                continue
            gk = self._materialize(k, contrib, body)
            self._vjp_of(op, gk, contrib, body)
        parts: list[tuple[str, str]] = []
        for j in self.wanted:
            size = int(np.prod(self._shape(j), dtype=np.int64))
            pieces = self._pieces(j, contrib.get(j, []))
            if pieces is not None:  # entries/slices of a flat vector: assembled, not scattered
                parts += pieces
            elif j in self.active and contrib.get(j):
                gj = self._materialize(j, contrib, body)
                parts.append(("vec", self._ravel(gj)))
            else:
                parts.append(("vec", f"ZEROS({size})"))
        body.append(f"return {_assemble(parts)}")
        lines += ["        " + b for b in body]
        lines.append(f"    return {self._output_expr()}, back")
        return self._compile("forward", lines)

    def _pieces(self, j: int, entries: list[tuple]) -> list[tuple[str, str]] | None:
        """The cotangent of the 1-D input ``j`` as ordered pieces (``("scal", expr)`` for one
        entry, ``("vec", expr)`` for a run), when every contribution is a unit-step slice or
        an integer index and slices do not overlap (``u[0]``, ``p[a:b]`` unpacking)."""
        shape = self._shape(j)
        if len(shape) != 1 or not entries or any(e[0] != "scatter" for e in entries):
            return None
        scalars: dict[int, list[str]] = {}
        spans = []
        for _, idx_expr, s, _fancy in entries:
            idx = self.ns.get(idx_expr, None)
            if idx is None:
                try:
                    idx = int(idx_expr)
                except ValueError:
                    return None
            if isinstance(idx, (int, np.integer)):
                i = int(idx) % shape[0]
                scalars.setdefault(i, []).append(s)
            elif isinstance(idx, slice) and idx.step in (None, 1):
                start, stop, _ = idx.indices(shape[0])
                spans.append((start, stop, "vec", s))
            else:
                return None
        spans += [(i, i + 1, "scal", " + ".join(v)) for i, v in scalars.items()]
        spans.sort(key=lambda e: e[0])
        parts: list[tuple[str, str]] = []
        pos = 0
        for start, stop, kind, s in spans:
            if start < pos:
                return None  # overlapping: accumulate instead
            if start > pos:
                parts.append(("vec", f"ZEROS({start - pos})"))
            if stop > start:
                parts.append((kind, s))
            pos = max(pos, stop)
        if pos < shape[0]:
            parts.append(("vec", f"ZEROS({shape[0] - pos})"))
        return parts

    def _materialize(self, k: int, contrib: dict[int, list[tuple]], body: list[str]) -> str:
        entries = contrib.pop(k, [])
        dense = [e[1] for e in entries if e[0] == "dense"]
        scatter = [e for e in entries if e[0] == "scatter"]
        if not scatter:
            if len(dense) == 1:
                return dense[0]
            body.append(f"G{k} = {' + '.join(dense)}")
            return f"G{k}"
        if dense:  # a fresh writable array (a sum of numpy scalars is not one)
            body.append(f"G{k} = COPY({' + '.join(dense)})")
        else:
            value = self.graph.values[k]
            body.append(f"G{k} = ZEROS({self.const(self._shape(k))}, "
                        f"{self.const(np.result_type(value))})")
        for _, idx, s, fancy in scatter:
            if fancy:
                body.append(f"ADD_AT(G{k}, {idx}, {s})")
            elif self.numpy:
                body.append(f"G{k}[{idx}] += {s}")
            else:
                body.append(f"G{k}[{idx}] = G{k}[{idx}] + {s}")
        return f"G{k}"

    def _plain_array(self, op: Op) -> bool:
        """``array(x)`` / ``asarray(x, dtype=x.dtype)`` of a traced value: the identity."""
        if op.fun is anp.asarray:
            return self.graph.same_dtype_asarray(op)
        if op.fun is not anp._array_from_scalar_or_array or op.args[0] != () \
                or op.argnums != (2,):
            return False
        kw = op.args[1]
        if not kw:
            return True
        if set(kw) != {"dtype"}:
            return False
        try:
            return np.dtype(kw["dtype"]) == np.result_type(self.graph.values[op.parents[0]])
        except TypeError:
            return False

    def _reshape(self, expr: str, shape: tuple) -> str:
        if self.numpy:
            return f"{expr}.reshape({self.const(tuple(shape))})"
        return f"RESHAPE({expr}, {self.const(tuple(shape))})"

    def _ravel(self, expr: str) -> str:
        return f"{expr}.ravel()" if self.numpy else f"RAVEL({expr})"

    def _unbroadcast(self, expr: str, from_shape: tuple, to_shape: tuple) -> str:
        axes = unbroadcast_axes(from_shape, to_shape)
        if axes is None:
            return expr
        kept = tuple(d for i, d in enumerate(from_shape) if i not in axes)
        if all(from_shape[i] == 1 for i in axes):  # summing length-1 axes: a reshape
            return self._reshape(expr, tuple(to_shape))
        if self.numpy:  # methods: no Python-level wrapper per call
            summed = f"{expr}.sum(axis={axes!r})"
            return summed if kept == tuple(to_shape) else f"{summed}.reshape({to_shape!r})"
        summed = f"SUM({expr}, axis={axes!r})"
        return summed if kept == tuple(to_shape) else f"RESHAPE({summed}, {to_shape!r})"

    def _vjp_of(self, op: Op, gk: str, contrib: dict[int, list[tuple]],
                body: list[str], skip: frozenset[int] = frozenset()) -> None:
        """Emit the cotangents of ``op``'s active operands (but those in ``skip``) from its
        output's cotangent ``gk``, as contributions in ``contrib``."""
        g = self.graph
        k = op.out
        active_args = [i for i, p in zip(op.argnums, op.parents, strict=True)
                       if p in self.active and g.is_float(p) and i not in skip]
        if not active_args:
            return
        args = self._arg_exprs(op)
        parent = dict(zip(op.argnums, op.parents, strict=True))
        sk = self._shape(k)
        fun = op.fun
        exprs: dict[int, str] | None = None
        shapes = [tuple(np.shape(a)) if i not in parent else self._shape(parent[i])
                  for i, a in enumerate(op.args)]
        if not op.kwargs:
            if fun is anp.add and len(args) == 2:
                exprs = {i: self._unbroadcast(gk, sk, shapes[i]) for i in active_args}
            elif fun is anp.subtract and len(args) == 2:
                exprs = {i: self._unbroadcast(gk if i == 0 else f"(-{gk})", sk, shapes[i])
                         for i in active_args}
            elif fun is anp.multiply and len(args) == 2:
                exprs = {i: self._unbroadcast(f"({gk} * {args[1 - i]})", sk, shapes[i])
                         for i in active_args}
            elif fun in (anp.true_divide, anp.divide) and len(args) == 2:
                exprs = {}
                for i in active_args:
                    e = f"({gk} / {args[1]})" if i == 0 else f"(-{gk} * v{k} / {args[1]})"
                    exprs[i] = self._unbroadcast(e, sk, shapes[i])
            elif fun is anp.negative and len(args) == 1:
                exprs = {0: f"(-{gk})"}
            elif fun in UNARY_FACTOR and len(args) == 1:
                exprs = {0: f"({gk} * {UNARY_FACTOR[fun](args[0], f'v{k}')})"}
            elif fun is anp.power and active_args == [0] and 1 not in parent:
                factor = power_factor(args[0], op.args[1])
                if factor is not None:
                    e = f"({gk} * {factor})"
                    exprs = {0: self._unbroadcast(e, sk, shapes[0])}
            elif fun in MATMULS and len(args) == 2:
                exprs = {}
                for i in active_args:
                    e = matmul_vjp(args[0], args[1], gk, shapes[0], shapes[1], i)
                    if e is None:
                        exprs = None
                        break
                    exprs[i] = e
            elif fun in RESHAPES and active_args == [0]:
                exprs = {0: self._reshape(gk, shapes[0])}
            elif fun is anp.transpose and len(args) == 1 and len(shapes[0]) == 2:
                exprs = {0: f"{gk}.T"}
        if exprs is None and fun is anp.concatenate_args and not op.kwargs:
            axis = int(op.args[0]) % max(len(sk), 1)
            starts = np.cumsum([0] + [shapes[i][axis] for i in range(1, len(args))])
            exprs = {}
            for i in active_args:
                lead = ":, " * axis
                exprs[i] = f"{gk}[{lead}{int(starts[i - 1])}:{int(starts[i])}]"
        elif (exprs is None and len(active_args) == 1 and self._plain_array(op)
              and shapes[active_args[0]] == sk):
            exprs = {active_args[0]: gk}
        elif (exprs is None and fun is anp.array_from_args and op.args[0] == ()
              and not op.args[1]):
            exprs = {i: f"{gk}[{i - 2}]" for i in active_args}
        elif (exprs is None and fun is GETITEM and active_args == [0]
              and _only_new_axes(op.args[1])):
            exprs = {0: self._reshape(gk, shapes[0])}
        elif exprs is None and fun is anp.sum and active_args == [0]:
            reduced = _sum_axes(op, shapes[0])
            if reduced is not None:
                axes, keep = reduced
                kept = tuple(1 if i in axes else d for i, d in enumerate(shapes[0]))
                src = gk if keep else self._reshape(gk, kept)
                exprs = {0: f"BT({src}, {self.const(shapes[0])})"}
        if exprs is None and fun is GETITEM and active_args == [0] and not op.kwargs:
            idx_expr = args[1]
            idx = op.args[1]
            fancy = 1 in parent or _is_fancy(idx)
            if fancy and not self.numpy:
                raise UnsupportedOperation("the derivative of integer-array indexing")
            contrib[parent[0]].append(("scatter", idx_expr, gk, fancy))
            return
        if exprs is None:
            if not self.numpy:
                raise UnsupportedOperation(
                    f"the derivative of {getattr(fun, '__name__', fun)} (autograd's rule is "
                    "NumPy code)")
            self.n_generic += 1
            maker = self.const(primitive_vjps[fun])
            kw = self.const(op.kwargs)
            targets = ", ".join(f"t{k}_{i}" for i in active_args)
            body.append(f"{targets}, = {maker}({tuple(active_args)!r}, v{k}, "
                        f"({', '.join(args)},), {kw})({gk})")
            exprs = {i: f"DENSE(t{k}_{i})" for i in active_args}
        for i, e in exprs.items():
            name = f"t{k}_{i}"
            if e != name:
                body.append(f"{name} = {e}")
            contrib[parent[i]].append(("dense", name))

    # ------------------------------------------------------------------ forward mode
    def tangent_function(self) -> Any:
        """``tangent(*x, *dx_wanted) -> (y, dy)``."""
        g = self.graph
        dnames = {j: f"d{j}" for j in self.wanted}
        sig = self._signature() + "".join(f", d{j}" for j in self.wanted)
        lines = [f"def tangent({sig}):"]
        fwd = self._forward_lines("    ")
        # interleave: after each active op's forward line, its tangent
        by_value: dict[int, list[str]] = defaultdict(list)
        for op in g.ops:
            if op.out in self.active and op.out in self.needed:
                by_value[op.out] = self._jvp_lines(op, dnames)
        for line in fwd:
            lines.append(line)
            if line.strip().endswith("= P"):
                for k in self.hoisted:
                    lines += ["    " + s for s in by_value.get(k, [])]
                continue
            head = line.strip().split(" = ", 1)[0]
            if head.startswith("v") and head[1:].isdigit():
                k = int(head[1:])
                lines += ["    " + s for s in by_value.get(k, [])]
        out = g.output
        if out is not None and out in dnames:
            dy = dnames[out]
        elif out is not None and out in self.active:
            dy = f"d{out}"
        else:
            dy = f"ZEROS({self.const(np.shape(self._output_value()))})"
        lines.append(f"    return {self._output_expr()}, COPY({dy})")
        return self._compile("tangent", lines)

    def tangents_function(self) -> Any:
        """``tangents(*x, *dX_wanted) -> (y, dY)`` for ``k`` tangents at once: each ``dX`` has
        a leading axis of length ``k`` and so has ``dY``; one forward sweep shared by all
        directions (the tangent lines run once per direction)."""
        g = self.graph
        dnames = {j: f"d{j}" for j in self.wanted}
        sig = self._signature() + "".join(f", D{j}" for j in self.wanted)
        lines = [f"def tangents({sig}):"]
        lines += self._forward_lines("    ")
        body = [f"d{j} = D{j}[i]" for j in self.wanted]
        for op in g.ops:
            if op.out in self.active and op.out in self.needed:
                body += self._jvp_lines(op, dnames)
        out = g.output
        out_shape = tuple(np.shape(self._output_value()))
        k0 = f"D{self.wanted[0]}"
        lines.append(f"    K = {k0}.shape[0]")
        lines.append(f"    OUT = ZEROS((K,) + {self.const(out_shape)})")
        if out is not None and (out in dnames or out in self.active):
            lines.append("    for i in range(K):")
            lines += ["        " + b for b in body]
            lines.append(f"        OUT[i, ...] = d{out}")
        lines.append(f"    return {self._output_expr()}, OUT")
        return self._compile("tangents", lines)

    def _output_value(self) -> Any:
        g = self.graph
        return g.constant_output if g.output is None else g.values[g.output]

    def _jvp_lines(self, op: Op, dnames: dict[int, str]) -> list[str]:
        g = self.graph
        k = op.out
        if k in self.stacked:
            parts = [dnames.setdefault(j, f"d{j}") if j in self.active else "ZSCALAR"
                     for j in self.stacked[k]]
            return [f"d{k} = ARRAY(({', '.join(parts)},))"]
        parent = dict(zip(op.argnums, op.parents, strict=True))
        act = [i for i, p in parent.items() if p in self.active and g.is_float(p)]
        for i in act:
            dnames.setdefault(parent[i], f"d{parent[i]}")
        args = self._arg_exprs(op)
        d = {i: dnames[parent[i]] for i in act}
        sk = self._shape(k)
        shapes = [tuple(np.shape(a)) if i not in parent else self._shape(parent[i])
                  for i, a in enumerate(op.args)]
        fun = op.fun
        expr: str | None = None
        term_shapes: list[tuple] = []
        if not op.kwargs:
            if fun is anp.add and len(args) == 2:
                expr = " + ".join(d[i] for i in act)
                term_shapes = [shapes[i] for i in act]
            elif fun is anp.subtract and len(args) == 2:
                expr = " ".join(("" if i == 0 else "- ") + d[i] for i in act)
                if act == [1]:
                    expr = f"(-{d[1]})"
                term_shapes = [shapes[i] for i in act]
            elif fun is anp.multiply and len(args) == 2:
                expr = " + ".join(f"{d[i]} * {args[1 - i]}" for i in act)
                term_shapes = [sk]
            elif fun is anp.negative:
                expr, term_shapes = f"(-{d[0]})", [sk]
            elif fun in UNARY_FACTOR and len(args) == 1:
                expr, term_shapes = f"{d[0]} * {UNARY_FACTOR[fun](args[0], f'v{k}')}", [sk]
            elif fun is anp.power and act == [0] and 1 not in parent:
                factor = power_factor(args[0], op.args[1])
                if factor is not None:
                    expr, term_shapes = f"{d[0]} * {factor}", [sk]
            elif fun in MATMULS and len(args) == 2:
                raw = self.const(op.raw) if self.numpy else "DOT"
                terms = []
                for i in act:
                    a = list(args)
                    a[i] = d[i]
                    terms.append(f"{raw}({a[0]}, {a[1]})")
                expr, term_shapes = " + ".join(terms), [sk]
            elif fun in RESHAPES and act == [0] and fun is not anp.expand_dims:
                expr, term_shapes = f"RESHAPE({d[0]}, {self.const(sk)})", [sk]
        if fun is GETITEM and act == [0] and not op.kwargs:
            expr, term_shapes = f"{d[0]}[{args[1]}]", [sk]
        if expr is None and fun is anp.sum and act == [0] and _sum_axes(op, shapes[0]):
            axes, keep = _sum_axes(op, shapes[0])
            expr, term_shapes = f"SUM({d[0]}, axis={axes!r}, keepdims={keep})", [sk]
        if expr is None and fun is anp.concatenate_args and not op.kwargs:
            parts = [d[i] if i in d else f"ZEROS({self.const(shapes[i])})"
                     for i in range(1, len(args))]
            axis = int(op.args[0])
            expr = (f"np.concatenate(({', '.join(parts)},), axis={axis})" if self.numpy
                    else f"XP.concat([{', '.join(parts)}], axis={axis})")
            term_shapes = [sk]
        if expr is None and len(act) == 1 and self._plain_array(op):
            expr, term_shapes = d[act[0]], [sk]
        if expr is None and fun is anp.array_from_args and op.args[0] == () \
                and not op.args[1]:
            parts = [d[i] if i in d else "ZSCALAR" for i in range(2, len(args))]
            expr, term_shapes = f"ARRAY(({', '.join(parts)},))", [sk]
        if expr is None:
            if not self.numpy:
                raise UnsupportedOperation(
                    f"the tangent of {getattr(fun, '__name__', fun)} (autograd's rule is "
                    "NumPy code)")
            self.n_generic += 1
            maker = self.const(primitive_jvps[fun])
            kw = self.const(op.kwargs)
            gs = ", ".join(d[i] for i in act)
            return [f"d{k} = {maker}({tuple(act)!r}, ({gs},), v{k}, ({', '.join(args)},), "
                    f"{kw})"]
        shape = np.broadcast_shapes(*term_shapes) if term_shapes else sk
        if tuple(shape) != tuple(sk):
            expr = f"BT({expr}, {self.const(sk)})"
        return [f"d{k} = {expr}"]


def _is_fancy(idx: Any) -> bool:
    """Whether indexing with ``idx`` may repeat entries (integer arrays or lists)."""
    items = idx if isinstance(idx, tuple) else (idx,)
    for it in items:
        if isinstance(it, (list, np.ndarray)):
            if np.asarray(it).dtype != bool:
                return True
    return False


def _const_key(x: Any) -> Any:
    """A hashable identity of a constant argument: by value for plain Python data, by
    object identity for anything else (arrays)."""
    if x is None or type(x) in (int, float, bool, str, complex):
        return (type(x).__name__, x)
    if type(x) is slice:
        return ("slice", _const_key(x.start), _const_key(x.stop), _const_key(x.step))
    if type(x) in (tuple, list):
        return (type(x).__name__, tuple(_const_key(e) for e in x))
    if type(x) is dict:
        return ("dict", tuple((k, _const_key(v)) for k, v in sorted(x.items(), key=repr)))
    return ("id", id(x))


def deduplicate(graph: Graph) -> Graph:
    """The graph with repeated identical operations merged (``u[0]`` written three times
    is computed once and its cotangents accumulate in one place)."""
    from dataclasses import replace

    alias: dict[int, int] = {}
    seen: dict[Any, int] = {}
    ops = []
    for op in graph.ops:
        parents = tuple(alias.get(p, p) for p in op.parents)
        consts = tuple(_const_key(a) for i, a in enumerate(op.args) if i not in op.argnums)
        key = (id(op.fun), parents, op.argnums, consts, _const_key(op.kwargs))
        if key in seen:
            alias[op.out] = seen[key]
            continue
        seen[key] = op.out
        ops.append(op if parents == op.parents else replace(op, parents=parents))
    if not alias:
        return graph
    return replace(
        graph, ops=ops,
        guards=[(alias.get(k, k), outcome) for k, outcome in graph.guards],
        output=None if graph.output is None else alias.get(graph.output, graph.output),
    )


def _only_new_axes(idx: Any) -> bool:
    """Whether indexing with ``idx`` only inserts axes (``None``) and keeps everything
    (``:``): its transpose is a reshape."""
    items = idx if isinstance(idx, tuple) else (idx,)
    return all(it is None or (type(it) is slice and it == slice(None)) for it in items) \
        and any(it is None for it in items)


def _assemble(parts: list[tuple[str, str]]) -> str:
    """One flat vector from ordered pieces: runs of scalars become one ``ARRAY``, the rest is
    concatenated (always a fresh array)."""
    chunks: list[str] = []
    run: list[str] = []
    for kind, expr in parts:
        if kind == "scal":
            run.append(expr)
            continue
        if run:
            chunks.append(f"ARRAY(({', '.join(run)},))")
            run = []
        chunks.append(expr)
    if run:
        chunks.append(f"ARRAY(({', '.join(run)},))")
    if len(chunks) == 1:
        only = chunks[0]
        return only if only.startswith("ARRAY(") else f"COPY({only})"
    return f"CONCAT(({', '.join(chunks)},))"


def _stacked_scalars(graph: Graph, ops_by_out: dict[int, Op]) -> dict[int, list[int]]:
    """``anp.stack`` / ``anp.array`` of traced scalars, recorded as ``array(x)[None]`` per
    entry and a ``concatenate``: evaluated as one ``np.array((x_1, ..., x_k))`` (the
    intermediate values are not needed by the derivative rules of these operations)."""
    consumers: dict[int, int] = defaultdict(int)
    for op in graph.ops:
        for p in op.parents:
            consumers[p] += 1
    if graph.output is not None:
        consumers[graph.output] += 1
    out: dict[int, list[int]] = {}
    for op in graph.ops:
        if op.fun is not anp.concatenate_args or op.kwargs or op.args[0] not in (0, -1):
            continue
        if op.argnums != tuple(range(1, len(op.args))) or graph.shape(op.out) != (
                len(op.args) - 1,):
            continue
        sources = []
        for p in op.parents:
            expand = ops_by_out.get(p)
            if (expand is None or expand.fun is not GETITEM or expand.argnums != (0,)
                    or not _only_new_axes(expand.args[1]) or consumers[p] != 1):
                break
            inner = ops_by_out.get(expand.parents[0])
            if (inner is None or inner.fun is not anp._array_from_scalar_or_array
                    or inner.argnums != (2,) or inner.args[0] != () or inner.args[1]
                    or consumers[inner.out] != 1 or graph.shape(inner.parents[0]) != ()):
                break
            sources.append(inner.parents[0])
        else:
            out[op.out] = sources
    return out


def _sum_axes(op: Op, in_shape: tuple[int, ...]) -> tuple[tuple[int, ...], bool] | None:
    """``(summed axes, keepdims)`` of a recorded ``sum`` (``None``: other arguments)."""
    if set(op.kwargs) - {"axis", "keepdims"} or len(op.args) > 2:
        return None
    axis = op.kwargs.get("axis", op.args[1] if len(op.args) > 1 else None)
    keep = bool(op.kwargs.get("keepdims", False))
    ndim = len(in_shape)
    if axis is None:
        return tuple(range(ndim)), keep
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    return tuple(sorted(int(a) % max(ndim, 1) for a in axes)), keep
