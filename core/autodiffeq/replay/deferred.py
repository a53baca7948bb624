"""Parameter cotangents summed once per reverse pass: the reverse sweep split at the
parameters.

A discrete adjoint needs ``sum_i g_i^T df/dp (u_i, t_i)`` over every stage of every step,
not each term. Where ``f`` uses a weight ``W`` in ``x @ W`` (a layer), each term is an outer
product ``x_i g_i^T``, and their sum is one matrix product ``X^T G`` of the stacked factors:
one BLAS call per reverse pass instead of a rank-one update, a reshape and a concatenation
per stage (the same rewrite as transposing a scan of vector-Jacobian products in JAX). For
a :class:`~.codegen.Program` whose wanted inputs are ``u`` and all parameter leaves,
:func:`deferred_functions` writes

* ``forward_deferred(P, *x) -> (y, back)``, ``back(g, A) -> g^T df/du`` (flat, fresh): the
  reverse sweep stops at the values that depend on the parameters only
  (``program.param_only``: the leaves and what ``prep`` computes from them); the cotangent
  each of them receives is appended to a list of ``A``, or, for the weight of a ``@``, its
  two factors to two lists;
* ``finish(P, A, *leaves) -> sum g^T df/dp`` (flat, in :mod:`.pytree` order): the sums of
  the lists, then the reverse sweep through the parameter-only operations, once.

The arrays passed to ``back`` (the cotangent is copied) and the state passed to
``forward_deferred`` are kept until ``finish``: they must not be modified in between.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from .codegen import Program, _assemble
from .flavors import UnsupportedOperation
from .record import Op
from .rules import MATMULS


def _sum_list(items: list[Any], shape: tuple[int, ...]) -> Any:
    """The sum of the same-shaped arrays ``items`` (zeros of ``shape`` when empty)."""
    if not items:
        return np.zeros(shape)
    return items[0] if len(items) == 1 else np.array(items).sum(axis=0)


def _outer_sum(left: list[Any], right: list[Any], shape: tuple[int, ...]) -> Any:
    """``sum_i l_i^T r_i`` (rows of ``l_i`` paired with rows of ``r_i``; a 1-D factor is one
    row) as one product ``L^T R`` of the stacked rows: ``shape`` is ``(width of l, width of
    r)``."""
    if not left:
        return np.zeros(shape)
    L = np.concatenate(left).reshape(-1, shape[0])
    R = np.concatenate(right).reshape(-1, shape[1])
    return L.T @ R


class DeferredLayout:
    """What ``back`` appends where: ``n_lists`` lists, and for each parameter-only value
    the lists holding its cotangent (``("dense", k, i)``) or the factors of it
    (``("outer", k, i_left, i_right)``)."""

    def __init__(self) -> None:
        self.slots: list[tuple] = []
        self.n_lists = 0
        #: how many array entries one call of ``back`` keeps
        self.entries_per_call = 0
        #: how many numbers the forward values of one call hold (what ``back`` closes over)
        self.forward_numbers = 0

    def new_list(self) -> int:
        self.n_lists += 1
        return self.n_lists - 1


def _outer_factors(prog: Program, op: Op, gk: str, body: list[str],
                   layout: DeferredLayout) -> frozenset[int]:
    """For ``a @ W`` or ``W @ b`` with ``W`` a 2-D parameter-only value: append the factors
    of ``W``'s cotangent (``a^T g``, ``g b^T``) instead of forming it; the operands handled."""
    if op.fun not in MATMULS or op.kwargs or len(op.args) != 2:
        return frozenset()
    k = op.out
    parent = dict(zip(op.argnums, op.parents, strict=True))
    args = prog._arg_exprs(op)
    shapes = [tuple(np.shape(a)) if i not in parent else prog._shape(parent[i])
              for i, a in enumerate(op.args)]
    handled = set()
    for i in (0, 1):
        w = parent.get(i)
        if w is None or w not in prog.param_only or w not in prog.active:
            continue
        other = 1 - i
        if len(shapes[i]) != 2 or len(shapes[other]) not in (1, 2):
            continue
        if other in parent and parent[other] in prog.param_only:
            continue  # the whole product is parameter-only
        x = args[other]
        if i == 1:  # a @ W: W_bar += a^T g (rows of a and of g paired)
            left, right = x, gk
        elif len(shapes[other]) == 1:  # W @ b: W_bar += g b^T
            left, right = gk, x
        else:  # W @ B: W_bar += G B^T (columns paired)
            left, right = f"{gk}.T", f"{x}.T"
        layout.entries_per_call += (int(np.prod(shapes[other], dtype=np.int64))
                                    + int(np.prod(prog._shape(k), dtype=np.int64)))
        li, ri = layout.new_list(), layout.new_list()
        body.append(f"A[{li}].append({left})")
        body.append(f"A[{ri}].append({right})")
        layout.slots.append(("outer", w, li, ri))
        handled.add(i)
    return frozenset(handled)


def deferred_functions(prog: Program) -> tuple[Any, Any, DeferredLayout]:
    """``(forward_deferred, finish, layout)`` for ``prog`` (module doc). Raises
    :class:`UnsupportedOperation` when the split does not apply (not NumPy, or not every
    parameter leaf wanted)."""
    g = prog.graph
    n_leaves = g.n_inputs - 2
    if not prog.numpy:
        raise UnsupportedOperation("deferred parameter cotangents (NumPy replay only)")
    if tuple(prog.wanted) != tuple(range(1 + n_leaves)):
        raise UnsupportedOperation("deferred parameter cotangents need u and every leaf")
    prog.ns.setdefault("SUMLIST", _sum_list)
    prog.ns.setdefault("OUTERSUM", _outer_sum)
    param = prog.param_only
    layout = DeferredLayout()

    layout.forward_numbers = sum(
        int(np.prod(prog._shape(op.out), dtype=np.int64)) for op in g.ops
        if op.out in prog.needed and op.out not in param)
    # ---- the reverse sweep down to the parameter-only values
    lines = [f"def forward_deferred({prog._signature()}):"]
    lines += prog._forward_lines("    ")
    lines.append("    def back(g, A):")
    body: list[str] = ["g = COPY(g)"]
    contrib: dict[int, list[tuple]] = defaultdict(list)
    if g.output is not None and g.output in prog.active:
        contrib[g.output].append(("dense", "g"))
    for op in reversed(g.ops):
        k = op.out
        if k not in prog.active or k < g.n_inputs or k in param:
            continue
        gk = prog._materialize(k, contrib, body)
        skip = _outer_factors(prog, op, gk, body, layout)
        prog._vjp_of(op, gk, contrib, body, skip)
    n_u = int(np.prod(prog._shape(0), dtype=np.int64))
    ret = f"ZEROS({n_u})"
    if 0 in prog.active and contrib.get(0):
        ret = f"COPY({prog._ravel(prog._materialize(0, contrib, body))})"
    for k in sorted(contrib):
        if not contrib[k]:
            continue
        if k not in param:  # cannot happen: every other value was swept
            raise UnsupportedOperation(f"a cotangent left at value {k}")
        gk = prog._materialize(k, contrib, body)
        layout.entries_per_call += int(np.prod(prog._shape(k), dtype=np.int64))
        li = layout.new_list()
        body.append(f"A[{li}].append({gk})")
        layout.slots.append(("dense", k, li))
    body.append(f"return {ret}")
    lines += ["        " + b for b in body]
    lines.append(f"    return {prog._output_expr()}, back")
    forward = prog._compile("forward_deferred", lines)

    # ---- once per pass: the sums, then through the parameter-only operations
    sig = ", ".join(f"v{j}" for j in range(1, 1 + n_leaves))
    lines = [f"def finish(P, A{', ' if sig else ''}{sig}):"]
    if prog.hoisted:
        lines.append(f"    {''.join(f'v{k}, ' for k in prog.hoisted)}= P")
    body = []
    contrib = defaultdict(list)
    for slot in layout.slots:
        shape = prog.const(prog._shape(slot[1]))
        if slot[0] == "dense":
            expr = f"SUMLIST(A[{slot[2]}], {shape})"
        else:
            expr = f"OUTERSUM(A[{slot[2]}], A[{slot[3]}], {shape})"
        name = f"S{len(body)}"
        body.append(f"{name} = {expr}")
        contrib[slot[1]].append(("dense", name))
    for op in reversed(g.ops):
        k = op.out
        if k not in prog.active or k < g.n_inputs or k not in param or not contrib.get(k):
            continue
        gk = prog._materialize(k, contrib, body)
        prog._vjp_of(op, gk, contrib, body)
    parts: list[tuple[str, str]] = []
    for j in range(1, 1 + n_leaves):
        size = int(np.prod(prog._shape(j), dtype=np.int64))
        pieces = prog._pieces(j, contrib.get(j, []))
        if pieces is not None:
            parts += pieces
        elif j in prog.active and contrib.get(j):
            parts.append(("vec", prog._ravel(prog._materialize(j, contrib, body))))
        else:
            parts.append(("vec", f"ZEROS({size})"))
    body.append(f"return {_assemble(parts) if parts else 'ZEROS(0)'}")
    lines += ["    " + b for b in body]
    finish = prog._compile("finish", lines)
    return forward, finish, layout
