"""Trace once, replay many times: derivatives of a user's ``f(u, p, t)``.

:class:`ReplayedFunction` records ``f`` with autograd's tracer once per *input signature*
(the state's shape and dtype, the parameter container's structure, its leaves' shapes and
dtypes, its non-numeric leaves), compiles the recording into straight-line NumPy code
(:mod:`.codegen`) and evaluates ``f``, ``g^T df/du``, ``g^T df/dp``, ``df/du du + df/dp dp``
and whole Jacobians by running that code on new values: no boxes, no re-tracing.

When is a recording valid? The recorded operations are valid wherever ``f`` would execute the
same operations. They may differ only when Python control flow depends on a traced value
(``if u[0] > 0``) or an index or shape does (``u[u > 0]``): each such ``bool`` is recorded as
a guard and each data-dependent shape is checked on replay; a replay that leaves the recorded
path raises :class:`~.codegen.Stale` and ``f`` is recorded again on the new path (up to
``max_variants`` paths, then autograd is used on every call). A function whose traced values
leave autograd (``float(u[0])``, ``math.exp(t)``, ``np.asarray(u)``) cannot be recorded and
is also differentiated by autograd on every call. Every new recording is checked once
against autograd itself (value and one VJP at the recording point); a mismatch disables the
replay for that function with a :class:`ReplayWarning`.
"""

from __future__ import annotations

import logging
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .codegen import BASE_NAMESPACE, Program, Stale
from .deferred import deferred_functions
from .flavors import Flavor, UnsupportedOperation, array_api_flavor, numpy_flavor
from .pytree import ParamLayout, float_leaves, layout_of, to_host_tree
from .record import Graph, record

logger = logging.getLogger("autodiffeq")

#: recordings kept per function and signature before giving up on replay
MAX_VARIANTS = 8

#: the most numbers one deferred reverse sweep may keep per call (:mod:`.deferred`)
DEFER_MAX_ENTRIES = 4096


class ReplayWarning(UserWarning):
    """A recording of ``f`` failed its self-check; autograd is used instead."""


class ReplayUnavailable(Exception):
    """``f`` cannot be replayed (the reason is the message); use autograd on each call."""


@dataclass
class _Variant:
    """One recorded path of ``f`` and its compiled programs (by wanted inputs)."""

    graph: Graph
    flavor: Flavor
    programs: dict[tuple[int, ...], Any] = field(default_factory=dict)
    prep: Any = None
    value: Any = None
    forward: dict[tuple[int, ...], Any] = field(default_factory=dict)
    tangent: dict[tuple[int, ...], Any] = field(default_factory=dict)
    tangents: dict[tuple[int, ...], Any] = field(default_factory=dict)
    #: ``(forward_deferred, finish, number of lists, numbers a sweep holds)``
    #: (:mod:`.deferred`); ``False`` when it does not apply
    deferred: Any = None

    def program(self, wanted: tuple[int, ...]) -> Program:
        prog = self.programs.get(wanted)
        if prog is None:
            prog = self.programs[wanted] = Program(self.graph, wanted, self.flavor)
        return prog


class ReplayedFunction:
    """``f(u, p, t)`` for one input signature, recorded and replayed (see module doc).

    Inputs are passed as ``(u, leaves, t)``: ``u`` in the state's shape, ``leaves`` the
    floating-point leaves of ``p`` in :mod:`.pytree` order (their values may change from call
    to call; the container's structure may not), ``t`` a float.
    """

    def __init__(self, f: Callable[..., Any], layout: ParamLayout, shape: tuple[int, ...],
                 max_variants: int = MAX_VARIANTS, backend: Any = None,
                 dtype: Any = np.float64) -> None:
        self.f = f
        #: NumPy (``backend`` ``None`` or with the ``"autograd"`` capability), else the
        #: backend's array-API namespace (:mod:`.flavors`)
        self.backend = backend
        if backend is None or "autograd" in getattr(backend, "capabilities", ()):
            self.flavor = numpy_flavor(BASE_NAMESPACE)
        else:
            self.flavor = array_api_flavor(backend, dtype)
        self.layout = layout
        self.shape = tuple(shape)
        self.n = int(np.prod(self.shape, dtype=np.int64))
        self.m = layout.size
        self.n_leaves = layout.n_leaves
        self.max_variants = max_variants
        self.variants: list[_Variant] = []
        #: why replay was given up (``None`` while it is used)
        self.disabled: str | None = None
        self.n_traces = 0
        #: identities of the objects ``f`` reads from outside when recorded (see
        #: :func:`_environment`)
        self.environment: tuple = ()
        self._wanted_all = tuple(range(1 + self.n_leaves))
        self._eye: dict[tuple, np.ndarray] = {}

    # ------------------------------------------------------------------ recording
    def _call(self, u: Any, *rest: Any) -> Any:
        p = self.layout.fill(list(rest[:-1]))
        return self.f(u, p, rest[-1])

    def _record(self, inputs: list[Any]) -> _Variant:
        if self.disabled is not None:
            raise ReplayUnavailable(self.disabled)
        if len(self.variants) >= self.max_variants:
            self._disable(f"f took more than {self.max_variants} different paths (Python "
                          "control flow on traced values); autograd is used on every call")
        no_replay = getattr(self.f, "__autodiffeq_no_replay__", None)
        if no_replay:  # f reads state outside its arguments (declared by its maker)
            self._disable(f"f cannot be recorded: {no_replay}")
        self.n_traces += 1
        host = self._host_inputs(inputs)
        try:
            graph = record(self._call, host)
        except Exception as exc:  # noqa: BLE001 - any failure means: do not replay
            self._disable(f"f cannot be recorded ({type(exc).__name__}: {exc})")
        if graph.unreplayable:
            self._disable(graph.unreplayable)
        variant = _Variant(graph, self.flavor)
        try:
            self._self_check(variant, inputs, host)
        except ReplayUnavailable:
            raise
        except UnsupportedOperation as exc:
            self._disable(f"f cannot be replayed on {self.flavor.name}: it uses {exc}")
        except Exception as exc:  # noqa: BLE001
            self._disable(f"the recording of f failed its check ({type(exc).__name__}: {exc})")
        self.variants.insert(0, variant)
        logger.debug("replay: recorded %s (%d operations, %d guards, path %d)",
                     getattr(self.f, "__name__", self.f), len(graph.ops), len(graph.guards),
                     len(self.variants))
        return variant

    def _disable(self, why: str) -> None:
        self.disabled = why
        self.variants.clear()
        logger.debug("replay of %s disabled: %s", getattr(self.f, "__name__", self.f), why)
        raise ReplayUnavailable(why)

    def _host_inputs(self, inputs: list[Any]) -> list[Any]:
        if self.flavor.numpy:
            return inputs
        to_host = self.backend.to_host
        return [np.asarray(to_host(x)) if not isinstance(x, float) else x for x in inputs]

    def _host(self, x: Any) -> Any:
        return x if self.flavor.numpy else np.asarray(self.backend.to_host(x))

    def _self_check(self, variant: _Variant, inputs: list[Any], host: list[Any]) -> None:
        """The replay reproduces ``f`` and one autograd VJP (on the host values) at the
        recording point."""
        from autograd import make_vjp

        graph = variant.graph
        expected = graph.values[graph.output] if graph.output is not None \
            else graph.constant_output
        prog = variant.program(self._wanted_all)
        variant.prep = prog.prep_function()
        variant.value = prog.value_function()
        P = variant.prep(*inputs)
        got = self._host(variant.value(P, *inputs))
        if not _close(got, expected, rtol=1e-12 if np.result_type(expected) == np.float64
                      else 1e-5):
            self._disable("replaying f does not reproduce its value (is f pure?)")
        fwd = variant.forward[self._wanted_all] = prog.forward_function()
        y, back = fwd(P, *inputs)
        rng = np.random.default_rng(0)
        g = rng.standard_normal(np.shape(expected))
        got_vjp = self._host(back(g if self.flavor.numpy else self.backend.asarray(g)))
        inputs = host
        t = inputs[-1]

        def flat_f(args: tuple) -> Any:
            return self._call(args[0], *args[1:], t)

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                vjp, _ = make_vjp(flat_f)(tuple(inputs[:-1]))
                ref = vjp(g)
        except NotImplementedError:  # autograd has no rule for a primitive (e.g. asarray)
            if not self._directional_check(inputs, g, got_vjp, flat_f):
                self._disable("replayed VJP disagrees with a difference quotient of f")
            return
        ref_flat = np.concatenate([np.reshape(np.asarray(r, dtype=np.float64), -1)
                                   for r in ref]) if ref else np.zeros(0)
        # autograd's rules and the replay's may round differently (e.g. 1/cosh^2 against
        # 1 - tanh^2): agreement to 1e4 ulps of the working precision; a wrong rule is off
        # by O(1)
        # (the least precise input or output sets it: autograd returns each input's
        # cotangent in that input's dtype)
        eps = max((float(np.finfo(np.result_type(x)).eps) for x in (expected, *inputs[:-1])
                   if np.result_type(x).kind == "f"), default=float(np.finfo(np.float64).eps))
        if not _close(got_vjp, ref_flat, rtol=max(1e-9, 1e4 * eps)):
            warnings.warn(
                f"replayed derivatives of {getattr(self.f, '__name__', 'f')} disagree with "
                "autograd's at the recording point; autograd is used instead (please report "
                "this with the function)", ReplayWarning, stacklevel=6)
            self._disable("replayed VJP disagrees with autograd's")

    @staticmethod
    def _directional_check(inputs: list[Any], g: np.ndarray, got_vjp: Any,
                           flat_f: Callable[[tuple], Any]) -> bool:
        """``g^T (df/dx) d`` from the replayed VJP against a fourth-order central difference
        of ``g^T f`` along a random direction ``d`` (when autograd has no rule to compare
        with): agreement to 1e-6 of the terms' size (a wrong rule is off by O(1))."""
        x = [np.asarray(v, dtype=np.float64) for v in inputs[:-1]]
        rng = np.random.default_rng(1)
        d = [rng.standard_normal(v.shape) for v in x]
        flat_d = np.concatenate([v.reshape(-1) for v in d])
        scale = max(max((float(np.abs(v).max(initial=0.0)) for v in x), default=0.0), 1.0)
        h = 1e-3 * scale

        def along(s: float) -> float:
            return float(np.sum(g * np.asarray(flat_f(tuple(v + s * w for v, w in
                                                               zip(x, d, strict=True))))))

        fd = (8 * (along(h) - along(-h)) - (along(2 * h) - along(-2 * h))) / (12 * h)
        got = float(np.dot(np.asarray(got_vjp, dtype=np.float64).reshape(-1), flat_d))
        size = float(np.abs(np.asarray(got_vjp)).sum()) * float(np.abs(flat_d).max())
        return abs(fd - got) <= 1e-6 * max(size, 1e-300)

    # ------------------------------------------------------------------ running
    def _run(self, kind: str, wanted: tuple[int, ...], inputs: list[Any], extra: tuple = (),
             leaves: Any = None) -> Any:
        variants = self.variants
        for i, var in enumerate(variants):
            fn = var.value if kind == "value" else getattr(var, kind).get(wanted)
            if fn is None:
                fn = self._compile(var, kind, wanted)
            try:
                out = fn(_prepared(var, inputs, leaves), *inputs, *extra)
            except Stale:
                continue
            if i:
                variants.insert(0, variants.pop(i))
            return out
        var = self._record(inputs)
        fn = var.value if kind == "value" else getattr(var, kind).get(wanted)
        if fn is None:
            fn = self._compile(var, kind, wanted)
        return fn(_prepared(var, inputs, leaves), *inputs, *extra)

    def _compile(self, var: _Variant, kind: str, wanted: tuple[int, ...]) -> Any:
        prog = var.program(wanted)
        if kind == "forward":
            fn = var.forward[wanted] = prog.forward_function()
        elif kind == "tangents":
            fn = var.tangents[wanted] = prog.tangents_function()
        else:
            fn = var.tangent[wanted] = prog.tangent_function()
        return fn

    def _inputs(self, u: Any, leaves: list[Any], t: float) -> list[Any]:
        return [u, *leaves, float(t)]

    def _wanted(self, want_p: bool) -> tuple[int, ...]:
        return self._wanted_all if want_p else (0,)

    def value(self, u: Any, leaves: list[Any], t: float) -> Any:
        """``f(u, p, t)`` by replay."""
        if self.variants:  # hot path: the most recent path, already compiled
            var = self.variants[0]
            try:
                return var.value(_prepared(var, (u, *leaves, t), leaves), u, *leaves, t)
            except Stale:
                pass
        return self._run("value", (), self._inputs(u, leaves, t), leaves=leaves)

    def vjp(self, g: Any, u: Any, leaves: list[Any], t: float, want_p: bool = True
            ) -> tuple[Any, np.ndarray]:
        """``(f, [g^T df/du, g^T df/dp])`` (flat; the ``p`` part only when ``want_p``):
        one forward and one backward sweep."""
        wanted = self._wanted_all if want_p else (0,)
        if self.variants:  # hot path: the most recent path, already compiled
            var = self.variants[0]
            fn = var.forward.get(wanted)
            if fn is not None:
                try:
                    y, back = fn(_prepared(var, (u, *leaves, t), leaves), u, *leaves, t)
                except Stale:
                    pass
                else:
                    return y, back(g)
        y, back = self._run("forward", wanted, self._inputs(u, leaves, t), leaves=leaves)
        return y, back(g)

    def bound_value(self, leaves: list[Any]) -> Callable[[Any, float], Any]:
        """``value(u, t) = f(u, p, t)`` for fixed ``leaves``: :meth:`value` with the last
        path used and its parameter-only values held in a slot, so a call on the same path
        is one call of the compiled program (the per-stage call of a solve)."""
        slot: list[Any] = [None, None]
        value = self.value

        def bound(u: Any, t: float) -> Any:
            var = slot[0]
            if var is not None:
                try:
                    return var.value(slot[1], u, *leaves, t)
                except Stale:
                    slot[0] = None
            out = value(u, leaves, t)
            if self.variants:
                var = self.variants[0]
                slot[1] = _prepared(var, (u, *leaves, t), leaves)
                slot[0] = var
            return out

        return bound

    def bound_vjp(self, leaves: list[Any], want_p: bool = True
                  ) -> Callable[[Any, Any, float], tuple[Any, Any]]:
        """``vjp(g, u, t) = (f, flat cotangents)`` for fixed ``leaves`` and ``want_p``:
        :meth:`vjp` with the last path's compiled forward sweep and parameter-only values
        held in a slot (see :meth:`bound_value`)."""
        slot: list[Any] = [None, None]
        wanted = self._wanted_all if want_p else (0,)
        vjp = self.vjp

        def bound(g: Any, u: Any, t: float) -> tuple[Any, Any]:
            fn = slot[0]
            if fn is not None:
                try:
                    y, back = fn(slot[1], u, *leaves, t)
                except Stale:
                    slot[0] = None
                else:
                    return y, back(g)
            out = vjp(g, u, leaves, t, want_p)
            if self.variants:
                var = self.variants[0]
                fn = var.forward.get(wanted)
                if fn is not None:
                    slot[1] = _prepared(var, (u, *leaves, t), leaves)
                    slot[0] = fn
            return out

        return bound

    def _deferred(self, var: _Variant) -> Any:
        """``var``'s :func:`~.deferred.deferred_functions` (compiled once), or ``None`` where
        it does not apply or one call would keep more than :data:`DEFER_MAX_ENTRIES` numbers
        (wide layers on a batch: keeping every stage's activations costs more memory
        traffic than the rank-one updates it saves)."""
        if var.deferred is None:
            try:
                fwd, finish, layout = deferred_functions(var.program(self._wanted_all))
            except UnsupportedOperation:
                var.deferred = False
            else:
                var.deferred = (False if layout.entries_per_call > DEFER_MAX_ENTRIES
                                else (fwd, finish, layout.n_lists,
                                      layout.forward_numbers + layout.entries_per_call))
        return var.deferred or None

    def bound_vjp_deferred(self, leaves: list[Any], acc: DeferredCotangents
                           ) -> Callable[[Any, Any, float], Any]:
        """``vjp_u(g, u, t) -> g^T df/du`` (flat) for fixed ``leaves``, with ``g^T df/dp``
        kept in ``acc`` for one sum at the end (:mod:`.deferred`; the immediate product
        where that does not apply)."""
        slot: list[Any] = [None, None, None]
        n = self.n
        immediate: list[Any] = []  # the plain bound VJP, once a path has no deferral

        def bound(g: Any, u: Any, t: float) -> Any:
            fn = slot[0]
            if fn is not None:
                try:
                    _, back = fn(slot[1], u, *leaves, t)
                except Stale:
                    slot[0] = None
                else:
                    return back(g, slot[2])
            if immediate:
                _, flat = immediate[0](g, u, t)
                acc.add(flat[n:])
                return flat[:n]
            self.value(u, leaves, t)  # the path of this call first (recorded if new)
            var = self.variants[0]
            d = self._deferred(var)
            if d is None:
                immediate.append(self.bound_vjp(leaves, True))
                return bound(g, u, t)
            P = _prepared(var, (u, *leaves, t), leaves)
            _, back = d[0](P, u, *leaves, t)
            slot[:] = [d[0], P, acc.lists(var, P, leaves)]
            return back(g, slot[2])

        return bound

    def bound_taping(self, leaves: list[Any], tape: ForwardTape
                     ) -> Callable[[Any, float], Any]:
        """``value(u, t)`` (:meth:`bound_value`) that also keeps each call's deferred
        reverse sweep in ``tape`` (:class:`ForwardTape`), so that a reverse pass over the
        same evaluations does not run them again."""
        slot: list[Any] = [None, None, None, 0]
        entries = tape.entries

        def bound(u: Any, t: float) -> Any:
            fn = slot[0]
            if fn is not None:
                try:
                    y, back = fn(slot[1], u, *leaves, t)
                except Stale:
                    slot[0] = None
                else:
                    if tape.held < tape.capacity:
                        entries[(float(t), u.tobytes())] = (back, slot[2], slot[1], leaves)
                        tape.held += slot[3]
                    return y
            out = self.value(u, leaves, t)
            var = self.variants[0]
            d = self._deferred(var)
            if d is not None:
                slot[:] = [d[0], _prepared(var, (u, *leaves, t), leaves), var, d[3]]
            return out

        return bound

    def jacobian(self, u: Any, leaves: list[Any], t: float, want_p: bool = True
                 ) -> tuple[Any, np.ndarray]:
        """``(f, [df/du | df/dp])``: the rows of both Jacobians, ``(len(f), n [+ m])``, from
        one forward and ``len(f)`` backward sweeps."""
        y, back = self._run("forward", self._wanted(want_p), self._inputs(u, leaves, t),
                            leaves=leaves)
        shape = tuple(y.shape)
        eye = self._eye.get(shape)
        size = int(np.prod(shape, dtype=np.int64))
        if eye is None:
            eye = np.eye(size).reshape((size, *shape))
            if not self.flavor.numpy:
                eye = [self.backend.asarray(e, dtype=self.flavor.dtype) for e in eye]
            self._eye[shape] = eye
        if not self.flavor.numpy:
            return y, self.flavor.xp.stack([back(e) for e in eye])
        rows = np.empty((size, self.n + (self.m if want_p else 0)))
        for i in range(size):
            rows[i] = back(eye[i])
        return y, rows

    def jvp(self, u: Any, leaves: list[Any], t: float, du: Any,
            dleaves: list[Any] | None = None) -> tuple[Any, Any]:
        """``(f, df/du du + df/dp dp)``; ``dleaves``: tangents of the leaves (``None``: no
        parameter tangent)."""
        inputs = self._inputs(u, leaves, t)
        if dleaves is None:
            return self._run("tangent", (0,), inputs, (du,), leaves=leaves)
        return self._run("tangent", self._wanted_all, inputs, (du, *dleaves), leaves=leaves)

    def jvps(self, u: Any, leaves: list[Any], t: float, dU: Any,
             dleaves: list[Any] | None = None) -> tuple[Any, Any]:
        """``(f, [df/du dU_j + df/dp dP_j]_j)`` for ``k`` tangents stacked on a leading axis
        (``dU``: ``(k, *u.shape)``; ``dleaves``: each ``(k, *leaf.shape)``, or ``None``): one
        forward sweep for all of them."""
        inputs = self._inputs(u, leaves, t)
        if dleaves is None:
            return self._run("tangents", (0,), inputs, (dU,), leaves=leaves)
        return self._run("tangents", self._wanted_all, inputs, (dU, *dleaves), leaves=leaves)


class ForwardTape:
    """The reverse sweeps of one solve's evaluations of ``f`` (:meth:`ReplayedFunction.
    bound_taping`), kept for the reverse pass over the same steps: a discrete adjoint then
    runs each stage's backward sweep only, not its forward sweep again.

    Keyed by the exact inputs ``(t, bytes of u)``: a lookup at the same time with a
    bitwise-equal state gets the sweep of that very evaluation; anything else misses (the
    caller evaluates again), so a hit is never a wrong derivative. Holds at most
    ``capacity`` numbers (forward values and kept factors), then stops adding."""

    def __init__(self, capacity: int = 10**7) -> None:
        self.entries: dict[tuple[float, bytes], tuple[Any, _Variant, Any, Any]] = {}
        self.capacity = capacity
        self.held = 0


class DeferredCotangents:
    """``sum g^T df/dp`` over one reverse pass, kept as the lists of factors each recorded
    path's deferred sweep appends (:mod:`.deferred`) and summed by :meth:`total`."""

    def __init__(self, m: int) -> None:
        self.m = m
        self._paths: dict[int, tuple[_Variant, Any, Any, list[list[Any]]]] = {}
        self._extra: Any = None

    def lists(self, var: _Variant, P: Any, leaves: Any) -> list[list[Any]]:
        """The lists ``var``'s deferred sweep appends to (made on the first call)."""
        hit = self._paths.get(id(var))
        if hit is None or hit[0] is not var:
            hit = self._paths[id(var)] = (var, P, leaves, [[] for _ in range(var.deferred[2])])
        return hit[3]

    def bound_memory(self, limit_bytes: int = 1 << 23) -> None:
        """Sum what is kept into one vector once the factors pass ``limit_bytes`` (they grow
        with the stages of a pass, like a tape: a wide layer on a large batch would
        otherwise hold every stage's activations)."""
        for var, P, leaves, lists in self._paths.values():
            if not lists or not lists[0]:
                continue
            per_call = sum(lst[0].nbytes if hasattr(lst[0], "nbytes") else 8
                           for lst in lists if lst)
            if per_call * len(lists[0]) > limit_bytes:
                self.add(var.deferred[1](P, lists, *leaves))
                for lst in lists:  # in place: the compiled sweeps hold these lists
                    lst.clear()

    def add(self, p_cotangent: Any) -> None:
        """A parameter cotangent computed in full (a path or product without deferral)."""
        self._extra = p_cotangent if self._extra is None else self._extra + p_cotangent

    def total(self) -> Any:
        """The flat sum of everything kept (``None`` when nothing was)."""
        out = self._extra
        for var, P, leaves, lists in self._paths.values():
            part = var.deferred[1](P, lists, *leaves)
            out = part if out is None else out + part
        return out


class BoundLeaves(list):
    """The float leaves of one ``p``, as :func:`replayed` hands them out: they also keep, per
    recorded path, the values that depend on the parameters only (``prep``), computed on the
    first call. Valid while the leaves are not modified in place: one list per solve or
    gradient (a new ``replayed`` call, a new list)."""

    __slots__ = ("preps",)

    def __init__(self, leaves: list[Any]) -> None:
        super().__init__(leaves)
        self.preps: dict[int, tuple[Any, Any]] = {}


def _prepared(var: _Variant, inputs: Any, leaves: Any) -> Any:
    """``var.prep(*inputs)``, cached in ``leaves`` when they are :class:`BoundLeaves`
    (raises :class:`Stale` when a guard of the parameters fails on this path)."""
    cache = getattr(leaves, "preps", None)
    if cache is None:
        return var.prep(*inputs)
    hit = cache.get(id(var))
    if hit is None or hit[0] is not var:
        hit = cache[id(var)] = (var, var.prep(*inputs))
    return hit[1]


def _close(a: Any, b: Any, rtol: float = 1e-12) -> bool:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape and a.size != b.size:
        return False
    a, b = a.reshape(-1), b.reshape(-1)
    scale = np.maximum(np.abs(a), np.abs(b)).max(initial=0.0)
    return bool(np.all(np.abs(a - b) <= rtol * scale + 1e-300))


# --------------------------------------------------------------------------- cache
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _static_key(template: Any) -> Any:
    from .pytree import _Leaf

    if isinstance(template, _Leaf):
        return ("leaf", template.index)
    if isinstance(template, dict):
        return ("dict", tuple((repr(k), _static_key(v)) for k, v in template.items()))
    if isinstance(template, (list, tuple)):
        return (type(template).__name__, tuple(_static_key(v) for v in template))
    try:
        hash(template)
    except TypeError:
        return ("id", id(template))
    return ("static", type(template).__name__, template)


def replayed(f: Callable[..., Any], p: Any, shape: tuple[int, ...], dtype: Any,
             backend: Any = None) -> tuple[ReplayedFunction, list[Any]]:
    """The :class:`ReplayedFunction` of ``f`` for this signature (shared by all solves of
    the same ``f``: recorded once per signature) and ``p``'s float leaves to pass it (on
    ``backend``'s arrays for a non-NumPy backend)."""
    f = getattr(f, "replay_of", f)
    numpy_like = backend is None or "autograd" in getattr(backend, "capabilities", ())
    if not numpy_like:
        p = to_host_tree(p, backend.to_host)
    layout = layout_of(p)
    leaves = float_leaves(p)
    host_dtypes = tuple(np.result_type(leaf).str for leaf in leaves)
    key = (tuple(shape), np.dtype(dtype).str if numpy_like else str(dtype),
           _static_key(layout.template), layout.shapes, host_dtypes,
           None if numpy_like else backend.name)
    if not numpy_like:
        leaves = [backend.asarray(leaf) if not isinstance(leaf, float) else leaf
                  for leaf in leaves]
    try:
        per_f = _CACHE.get(f)
    except TypeError:  # not weak-referenceable
        per_f = None
    if per_f is None:
        per_f = {}
        try:
            _CACHE[f] = per_f
        except TypeError:
            pass
    rf = per_f.get(key)
    env = _environment(f)
    if rf is None or rf.environment != env:
        rf = per_f[key] = ReplayedFunction(f, layout, tuple(shape), backend=backend,
                                           dtype=dtype)
        rf.environment = env
    return rf, BoundLeaves(leaves)


def _environment(f: Callable[..., Any]) -> tuple:
    """Identities of what ``f`` reads from outside: the globals its code names, its closure
    cells' contents, the instance of a bound method. A recording references those objects as
    constants, so rebinding one (``A = new_array`` in a notebook) must not replay the old
    object: a changed identity gives a new recording (checked once per solve)."""
    fn = getattr(f, "__func__", f)
    code = getattr(fn, "__code__", None)
    if code is None:
        return (id(getattr(f, "__self__", None)),)
    glob = getattr(fn, "__globals__", {})
    ids: list[Any] = [id(glob[name]) for name in code.co_names if name in glob]
    for cell in fn.__closure__ or ():
        try:
            ids.append(id(cell.cell_contents))
        except ValueError:  # an empty cell
            ids.append(None)
    ids.append(id(getattr(f, "__self__", None)))
    return tuple(ids)


def replaying_rhs(f: Callable[..., Any], p: Any, shape: tuple[int, ...], dtype: Any,
                  tape: ForwardTape | None = None) -> Callable[..., Any]:
    """``f`` evaluated by replaying its recording: the same values (the same NumPy
    operations, without autograd's per-call dispatch), for the solves inside a gradient.
    Calls with other parameters, with autograd boxes, or once ``f`` is not replayed go to
    ``f`` itself. ``replay_of`` names ``f`` (so that recordings are shared). With a
    ``tape``, each call's reverse sweep is kept there (:class:`ForwardTape`)."""
    from autograd.tracer import isbox

    rf, leaves = replayed(f, p, shape, dtype)
    if rf.disabled is not None:
        return f
    value = rf.bound_value(leaves) if tape is None else rf.bound_taping(leaves, tape)

    def rhs(u: Any, p_call: Any, t: Any) -> Any:
        if p_call is p and rf.disabled is None and not isbox(u) and not isbox(t):
            try:
                return value(u, t)
            except ReplayUnavailable:
                pass
        return f(u, p_call, t)

    rhs.replay_of = f  # type: ignore[attr-defined]
    rhs.__name__ = getattr(f, "__name__", "f")
    return rhs
