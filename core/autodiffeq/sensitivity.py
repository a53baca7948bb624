"""The gradient interface: ``ade.solve`` as one autograd primitive (see docs/gradients.md).

When ``u0`` or ``p`` of the problem is being differentiated (an autograd box), ``solve`` runs

    U = solve_primitive(u0, p)        # U: the saved states, shape (len(sol.t), *u0.shape)

whose vector-Jacobian product ``(dL/dU) -> (dL/du0, dL/dp)`` and Jacobian-vector product
``(du0, dp) -> dU`` are delegated to a *sensitivity method* (a plugin). Every method sees the
same forward problem: the solver steps onto every ``saveat`` time (they become ``tstops``) and
the states at those step ends are the outputs, so that the discrete methods differentiate
exactly what is returned and the continuous ones get jumps at exact times. Step sizes chosen by
the controller are treated as constants of the solution (as diffrax and SciML's discrete
adjoints do): the gradient is that of the discrete map along the accepted step sequence.

A method implements :class:`SensitivityMethod`: ``forward`` (solve and keep what the reverse
or tangent pass needs), ``vjp`` and ``jvp``, all on flat backend arrays. ``sensealg=None``
chooses like SciMLSensitivity: a forward method when ``len(u0) + len(p) <= 100``, an adjoint
otherwise (the choice is in ``sol.sensealg`` and logged at DEBUG level).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .backend import Backend
from .callbacks import normalize_callbacks
from .errors import DenseOutputError, InvalidType, UnsupportedCombination
from .pipeline import solve_request
from .problems import ODEProblem
from .registry import Registry
from .replay import ForwardTape, flatten, is_container, layout_of, replaying_rhs
from .request import (
    SOLVE_OPTIONS,
    check_saveat,
    check_tolerances,
    resolve_backend,
    resolve_solver,
    split_options,
)
from .rhs_derivatives import RHSDerivatives
from .solution import Solution
from .specs import SensitivitySpec, SolverSpec
from .validation import (
    check_parameter_leaves,
    contains_traced,
    is_traced,
    parameter_array,
    trace_depth,
    traced_flat,
    unbox,
    unbox_tree,
)

logger = logging.getLogger("autodiffeq")

#: ``sensealg=None`` uses a forward method up to this many inputs (``len(u0) + len(p)``)
FORWARD_THRESHOLD = 100


@dataclass
class GradientRequest:
    """Everything a sensitivity method needs to know about the differentiated solve.

    Attributes:
        prob: the problem with plain (unboxed) ``u0`` and ``p``.
        solver: the solver spec; ``backend``: the backend; ``registry``: the registry.
        solve_options: keyword arguments of the user's ``solve`` call other than ``alg``,
            ``saveat``, ``dense``, ``sensealg``, ``backend`` and ``registry`` (tolerances,
            ``dt``, ``tstops``, solver options, ...).
        saveat: the requested save times (host array) or ``None`` (every step).
        wrt_u0, wrt_p: which inputs are differentiated.
    """

    prob: ODEProblem
    solver: SolverSpec
    backend: Backend
    registry: Registry
    solve_options: dict[str, Any]
    saveat: np.ndarray | None
    wrt_u0: bool = True
    wrt_p: bool = True
    #: the solve's callbacks (events), flattened in the order given
    callbacks: tuple[Any, ...] = ()
    _derivatives: dict[str, Any] = field(default_factory=dict, repr=False)
    _scratch_stepper: Any = field(default=None, repr=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.prob.shape)

    @property
    def n(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def p_shape(self) -> tuple[int, ...] | None:
        """Shape of the differentiated parameters (``None`` when ``p`` is not traced; a
        container of arrays is differentiated as the flat vector of its float leaves)."""
        if self.prob.p is None or not self.wrt_p:
            return None
        if is_container(self.prob.p):
            return (layout_of(self.prob.p).size,)
        return tuple(np.shape(self.prob.p))

    @property
    def p_flat(self) -> np.ndarray:
        """The differentiated parameters as one flat float64 host vector."""
        if self.n_p == 0:
            return np.zeros(0)
        if is_container(self.prob.p):
            return np.asarray(flatten(self.prob.p)[0], dtype=np.float64)
        return np.asarray(self.prob.p, dtype=np.float64).reshape(-1)

    @property
    def n_p(self) -> int:
        ps = self.p_shape
        return 0 if ps is None else int(np.prod(ps, dtype=np.int64))

    @property
    def tstops(self) -> np.ndarray:
        """The user's ``tstops`` together with the ``saveat`` times."""
        stops = np.asarray(self.solve_options.get("tstops", ()), dtype=np.float64).reshape(-1)
        if self.saveat is not None:
            stops = np.concatenate([stops, self.saveat])
        return np.unique(stops)

    def f_host(self, u: np.ndarray, t: float) -> np.ndarray:
        """``f(u, p, t)`` of the primal problem at a flat host state, as a flat host array."""
        be = self.backend
        uu = be.asarray(np.reshape(u, self.shape), dtype=be.asarray(self.prob.u0).dtype)
        out = self.prob.f(uu, self.prob.p, t)
        return np.asarray(be.to_host(be.asarray(out)), dtype=np.float64).reshape(-1)

    def derivatives(self, mode: str = "auto", prob: ODEProblem | None = None) -> RHSDerivatives:
        """The right-hand-side derivatives of ``prob`` (default: the request's), cached."""
        prob = self.prob if prob is None else prob
        key = f"{mode}:{id(prob)}"
        if key not in self._derivatives or self._derivatives[key].problem is not prob:
            dtype = self.backend.asarray(np.zeros(1), dtype=None).dtype
            u0 = prob.u0
            if hasattr(u0, "dtype"):
                dtype = self.backend.asarray(u0).dtype
            self._derivatives[key] = RHSDerivatives(
                prob.f, prob.p, tuple(prob.shape), self.backend, dtype, prob, mode, self.wrt_p
            )
        return self._derivatives[key]

    def solve(self, prob: ODEProblem | None = None, tape: ForwardTape | None = None,
              **overrides: Any) -> Solution:
        """Solve ``prob`` (default: the request's) with the user's options, stepping onto
        every save time and saving every step, unless ``overrides`` say otherwise; with a
        ``tape``, the reverse sweeps of the replayed ``f``'s evaluations are kept there
        (:class:`~autodiffeq.replay.engine.ForwardTape`)."""
        options = dict(self.solve_options)
        alg_options = dict(options.pop("alg_options", {}))
        options["tstops"] = self.tstops
        options.update(overrides)
        options.setdefault("dense", False)
        options["backend"] = self.backend.name
        options, more = split_options(options)
        alg_options.update(more)
        return solve_request(self.fast(self.prob if prob is None else prob, tape),
                             self.solver, options, alg_options, self.registry)

    def fast(self, prob: ODEProblem, tape: ForwardTape | None = None) -> ODEProblem:
        """``prob`` with ``f`` evaluated by replaying its recording
        (:func:`autodiffeq.replay.replaying_rhs`: the same values without autograd's
        per-call dispatch) on backends with the ``"autograd"`` capability; ``prob`` itself
        for models carrying their own derivatives, or when ``f`` cannot be recorded. With a
        ``tape``, the evaluations' reverse sweeps are kept there."""
        if ("autograd" not in getattr(self.backend, "capabilities", ())
                or getattr(prob, "problem_type", "ODE") != "ODE"
                or prob.f is not self.prob.f or callable(getattr(prob.f, "vjp", None))):
            return prob  # (augmented systems of the methods are not the user's f)
        if tape is not None:
            f = replaying_rhs(prob.f, prob.p, tuple(prob.shape), np.asarray(prob.u0).dtype,
                              tape)
            return prob if f is prob.f else prob.remake(f=f)
        key = f"fast:{id(prob)}"
        cached = self._derivatives.get(key)
        if cached is None or cached[0] is not prob:  # (ids of dead problems are reused)
            dtype = np.asarray(prob.u0).dtype
            f = replaying_rhs(prob.f, prob.p, tuple(prob.shape), dtype)
            cached = self._derivatives[key] = (prob, prob if f is prob.f else prob.remake(f=f))
        return cached[1]

    def scratch_stepper(self) -> Any:
        """One stepper of the request's solver made once per request, for re-running and
        transposing steps one after another (its state is scratch: each use sets it)."""
        stepper = self._scratch_stepper
        if stepper is None:
            stepper = self._scratch_stepper = self.make_stepper()
        return stepper

    def make_stepper(self) -> Any:
        """A fresh stepper of the request's solver on its problem (for replaying steps)."""
        from .stepper import RHS

        sol_dtype = self.backend.asarray(self.prob.u0).dtype
        prob = self.fast(self.prob)
        rhs = RHS(
            prob.f, prob.p, self.shape, sol_dtype, self.backend, prob,
            convert_output=True, registry=self.registry,
        )
        return self.solver.factory(rhs, self.backend, **self.solve_options.get("alg_options", {}))


@dataclass
class ForwardRecord:
    """The forward solve of a differentiated ``solve`` on its step grid.

    Attributes:
        solution: the every-step :class:`Solution` (``solution.t`` are the step ends).
        ts: host array (N+1,) of the step ends; ``us``: backend array (N+1, n) of the states
            (``None`` when the method keeps checkpoints instead; ``extra["saved"]`` then holds
            the saved states).
        save_index: indices into ``ts`` of the outputs (the ``saveat`` times, or every step).
        extra: whatever the method keeps for its reverse/tangent pass.
    """

    solution: Solution
    ts: np.ndarray
    us: Any
    save_index: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def t_saved(self) -> np.ndarray:
        return self.ts[self.save_index]

    @property
    def u_saved(self) -> Any:
        """The saved states (nsave, n): ``extra["saved"]`` when the method kept only those
        (``us`` is then ``None``), else the rows ``save_index`` of ``us``."""
        if "saved" in self.extra:
            return self.extra["saved"]
        xp = self.solution.backend.xp
        return xp.take(self.us, xp.asarray(self.save_index), axis=0)

    def step_cotangents(self, g: Any, backend: Backend) -> np.ndarray:
        """Cotangents of the saved states scattered onto the step grid: host (N+1, n)."""
        g_h = np.asarray(backend.to_host(g), dtype=np.float64)
        out = np.zeros((len(self.ts), g_h.shape[1]))
        np.add.at(out, self.save_index, g_h)
        return out


def record_from_solution(request: GradientRequest, sol: Solution, **extra: Any) -> ForwardRecord:
    """A :class:`ForwardRecord` from an every-step solve made with ``request.solve``."""
    xp = request.backend.xp
    n = request.n
    us = xp.reshape(sol.u, (len(sol.t), n))
    ts = np.asarray(sol.t, dtype=np.float64)
    if request.saveat is None:
        index = np.arange(len(ts))
    else:
        tdir = 1.0 if request.prob.tspan[1] > request.prob.tspan[0] else -1.0
        # the last grid point at each time: after an event, the state after it
        pos = np.searchsorted(tdir * ts, tdir * request.saveat, side="right") - 1
        pos = np.clip(pos, 0, len(ts) - 1)
        hit = ts[pos] == request.saveat
        index = pos[hit]  # a failed solve stops early: only the times it reached
    return ForwardRecord(sol, ts, us, index, dict(extra))


class SensitivityMethod:
    """Base class of sensitivity methods (what a ``SensitivitySpec.factory`` returns).

    Subclasses implement :meth:`vjp` (reverse methods) and/or :meth:`jvp` (forward methods);
    a method that lacks one computes it through the other only where that is cheap, or raises
    :class:`UnsupportedCombination` naming a method that has it. The default :meth:`forward`
    solves on the step grid and keeps the states.
    """

    name: str = ""

    def __init__(self, **options: Any) -> None:
        if options:
            raise TypeError(f"{type(self).__name__} takes no options, got {sorted(options)}")

    def forward(self, request: GradientRequest) -> ForwardRecord:
        return record_from_solution(request, request.solve())

    def vjp(self, request: GradientRequest, record: ForwardRecord, g: Any) -> tuple[Any, Any]:
        """Cotangent ``g`` (backend (nsave, n)) of the saved states → ``(g_u0, g_p)``, flat
        backend arrays (``None`` for an input not differentiated)."""
        raise UnsupportedCombination(
            f"sensitivity method {self.name!r} has no reverse mode (vector-Jacobian product); "
            "use an adjoint method such as 'InterpolatingAdjoint' or 'DiscreteAdjoint'",
            ("DiscreteAdjoint", "InterpolatingAdjoint", "ReverseMode"),
        )

    def jvp(self, request: GradientRequest, record: ForwardRecord, du0: Any, dp: Any) -> Any:
        """Tangents ``du0`` (flat (n,) or ``None``) and ``dp`` (flat (m,) or ``None``) → the
        tangent of the saved states, backend (nsave, n)."""
        raise UnsupportedCombination(
            f"sensitivity method {self.name!r} has no forward mode (Jacobian-vector product); "
            "use 'ForwardSensitivity' or 'ForwardMode' with autograd.make_jvp",
            ("ForwardSensitivity", "ForwardMode"),
        )

    def interpolate(
        self, request: GradientRequest, record: ForwardRecord, ts: np.ndarray
    ) -> tuple[Any, Any]:
        """Differentiable dense output: the states at the host times ``ts`` (backend
        ``(len(ts), n)``) and the data :meth:`interpolation_vjp` / :meth:`interpolation_jvp`
        need for them. What ``sol(t)`` of a differentiated solve calls; a method that keeps no
        differentiable interpolant raises :class:`UnsupportedCombination` (the default)."""
        raise UnsupportedCombination(
            f"sol(t) is not differentiable with sensitivity method {self.name!r} (its "
            "gradient covers the saved states only): pass the times as "
            "solve(..., saveat=times) and use sol.u, or use sensealg='ForwardSensitivity', "
            "whose dense output carries the sensitivities",
            ("ForwardSensitivity",),
        )

    def interpolation_vjp(
        self, request: GradientRequest, record: ForwardRecord, data: Any, g: Any
    ) -> tuple[Any, Any]:
        """Like :meth:`vjp`, for the states :meth:`interpolate` returned with ``data``."""
        raise UnsupportedCombination(f"{self.name!r} has no differentiable dense output", ())

    def interpolation_jvp(
        self, request: GradientRequest, record: ForwardRecord, data: Any, du0: Any, dp: Any
    ) -> Any:
        """Like :meth:`jvp`, for the states :meth:`interpolate` returned with ``data``."""
        raise UnsupportedCombination(f"{self.name!r} has no differentiable dense output", ())

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# --------------------------------------------------------------------------- choice
def sensitivity_method(
    name: str, registry: Registry | None = None, **options: Any
) -> SensitivityMethod:
    """A configured sensitivity method, e.g.
    ``ade.sensitivity_method("InterpolatingAdjoint", checkpointing=True)``."""
    from .registry import registry as default_registry

    reg = registry if registry is not None else default_registry()
    spec = reg.sensitivity(name)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        from .errors import InvalidArgument

        raise InvalidArgument(
            f"unknown option(s) {unknown} for sensitivity method {spec.name!r}; it accepts: "
            + (", ".join(spec.options) or "none")
        )
    method = spec.factory(**options)
    method.name = spec.name
    return method


def choose_sensitivity(
    reg: Registry, sensealg: Any, solver: SolverSpec, backend: Backend, prob: ODEProblem,
    features: tuple[str, ...] = (),
) -> tuple[SensitivitySpec | None, SensitivityMethod]:
    """Resolve ``sensealg`` (name, spec, method object or ``None``) to a method object;
    ``features`` as in :meth:`Registry.compatible` (``("events",)`` with callbacks)."""
    if isinstance(sensealg, SensitivityMethod):
        spec = None
        if sensealg.name and sensealg.name in {s.name for s in reg.sensitivities()}:
            spec = reg.sensitivity(sensealg.name)
            reg.compatible(solver, backend.name, spec, prob,
                           features=features).raise_if_incompatible()
        return spec, sensealg
    if isinstance(sensealg, (str, SensitivitySpec)):
        spec = reg.sensitivity(sensealg)
        reg.compatible(solver, backend.name, spec, prob,
                       features=features).raise_if_incompatible()
        return spec, sensitivity_method(spec.name, reg)
    if sensealg is not None:
        raise InvalidType(
            "sensealg must be a sensitivity method name, a SensitivitySpec, a method object "
            f"(ade.sensitivity_method(...)) or None, got {type(sensealg).__name__}"
        )
    n_in = int(np.size(unbox(prob.u0))) + (
        0 if prob.p is None else layout_of(unbox_tree(prob.p)).size)
    mode = "forward" if n_in <= FORWARD_THRESHOLD else "reverse"
    usable = [s for s in reg.sensitivities()
              if reg.compatible(solver, backend.name, s, prob, features=features)]
    if not usable:
        # why each one cannot: the first reason says what is missing (often the problem type)
        reasons = [reg.compatible(solver, backend.name, s, prob, features=features).reason
                   for s in reg.sensitivities()]
        ptype = getattr(prob, "problem_type", "ODE")
        raise UnsupportedCombination(
            f"no registered sensitivity method can differentiate this {ptype} problem with "
            f"solver {solver.name!r} on backend {backend.name!r}"
            + (f" (e.g. {reasons[0]})" if reasons else ""),
            (),
        )
    preferred = [s for s in usable if s.mode == mode] or usable
    spec = max(preferred, key=lambda s: s.default_priority)
    logger.debug(
        "sensealg=None: %d inputs (len(u0) + len(p)) -> %s method %s",
        n_in, mode, spec.name,
    )
    return spec, sensitivity_method(spec.name, reg)


# --------------------------------------------------------------------------- primitive
class _Context:
    """State shared by one differentiated solve's forward pass and its VJP/JVP."""

    def __init__(
        self, request: GradientRequest, method: SensitivityMethod, auto: bool = False
    ) -> None:
        self.request = request
        self.method = method
        self.auto = auto  # chosen by sensealg=None: a JVP may use a forward method instead
        self.record: ForwardRecord | None = None
        #: what ``sol(t)`` interpolated, by the bytes of the times: (states, method data)
        self.interpolated: dict[bytes, tuple[Any, Any]] = {}
        self._fallback: tuple[SensitivityMethod, GradientRequest, Any] | None = None
        #: the traced flat parameters given to the primitive (containers: their float
        #: leaves concatenated; see :func:`traced_flat`)
        self.p_traced: Any = None

    def jvp(self, du0: Any, dp: Any) -> Any:
        request, record = self.request, self.record
        try:
            return self.method.jvp(request, record, du0, dp)
        except UnsupportedCombination:
            if not self.auto:
                raise
        method, grid, grid_record = self.forward_fallback("autograd.make_jvp")
        return method.jvp(grid, grid_record, du0, dp)

    def forward_fallback(self, what: str) -> tuple[SensitivityMethod, GradientRequest, Any]:
        """For ``sensealg=None``: a forward method on the primal solve's own step grid (fixed
        steps onto its step ends), for products the chosen method lacks (JVPs, ``sol(t)``);
        its outputs have the primal's shape. Built once."""
        if self._fallback is not None:
            return self._fallback
        request, record = self.request, self.record
        reg = request.registry
        forward = [
            s
            for s in reg.sensitivities()
            if s.mode == "forward"
            and reg.compatible(request.solver, request.backend.name, s, request.prob)
        ]
        if not forward:
            raise UnsupportedCombination(
                f"no forward sensitivity method is registered for solver {request.solver.name!r}"
                f" on this backend, so {what} cannot go through solve",
                (),
            )
        spec = max(forward, key=lambda s: s.default_priority)
        options = {"error_control": "state"} if "error_control" in spec.options else {}
        method = sensitivity_method(spec.name, reg, **options)
        t0, t1 = request.prob.tspan
        grid = replace(
            request,
            solve_options={
                **request.solve_options, "adaptive": False, "dt": abs(t1 - t0),
                "tstops": np.asarray(record.ts[1:-1]),
            },
        )
        logger.debug("%s through solve: %s has none, using %s on its step grid",
                     what, self.method.name, spec.name)
        self._fallback = (method, grid, method.forward(grid))
        return self._fallback


def _define_primitive() -> Any:
    from autograd.extend import defjvp_argnums, defvjp_argnums, primitive

    @primitive
    def solve_primitive(u0: Any, p: Any, ctx: _Context) -> np.ndarray:
        request = ctx.request
        ctx.record = ctx.method.forward(request)
        saved = request.backend.to_host(ctx.record.u_saved)
        saved = np.reshape(np.asarray(saved), (len(ctx.record.save_index), *request.shape))
        if not request.callbacks:
            return saved
        # with events the output is flat: the saved states, the event times, the states at
        # the events (solve_traced splits it again)
        events = event_list(ctx.record, request)
        times = np.asarray([e[1] for e in events], dtype=saved.dtype)
        states = (np.stack([e[2] for e in events]) if events
                  else np.zeros((0, request.n), dtype=saved.dtype))
        return np.concatenate([saved.reshape(-1), times, states.reshape(-1).astype(saved.dtype)])

    def vjp_maker(argnums: tuple[int, ...], ans: Any, args: tuple, kwargs: dict) -> Any:
        ctx = args[2]
        request, record, method = ctx.request, ctx.record, ctx.method
        be = request.backend

        def vjp(g: Any) -> tuple[Any, ...]:
            nsave = len(record.save_index)
            g = np.asarray(g)
            if request.callbacks:
                flat = g.reshape(-1)
                n_out = nsave * request.n
                n_ev = len(event_list(record, request))
                g_t = be.asarray(flat[n_out:n_out + n_ev])
                g_ue = be.asarray(np.reshape(flat[n_out + n_ev:], (n_ev, request.n)))
                g_flat = be.asarray(np.reshape(flat[:n_out], (nsave, request.n)))
                g_u0, g_p = method.vjp(request, record, g_flat, events=(g_t, g_ue))
            else:
                g_flat = be.asarray(np.reshape(g, (nsave, request.n)))
                g_u0, g_p = method.vjp(request, record, g_flat)
            out = []
            for argnum in argnums:
                if argnum == 0:
                    out.append(_host_shaped(be, g_u0, request.shape, request.prob.u0))
                else:
                    out.append(_host_shaped(be, g_p, request.p_shape, _p_like(request)))
            return tuple(out)

        return vjp

    def jvp_maker(
        argnums: tuple[int, ...], gs: tuple, ans: Any, args: tuple, kwargs: dict
    ) -> Any:
        ctx = args[2]
        request = ctx.request
        be = request.backend
        tangents = dict(zip(argnums, gs, strict=True))
        du0 = tangents.get(0)
        dp = tangents.get(1)
        du0 = None if du0 is None else be.asarray(np.reshape(np.asarray(du0), (request.n,)))
        dp = None if dp is None else be.asarray(np.reshape(np.asarray(dp), (request.n_p,)))
        out = ctx.jvp(du0, dp)
        if request.callbacks:
            d_u, d_t, d_ue = out
            return np.concatenate([np.asarray(be.to_host(x)).reshape(-1)
                                   for x in (d_u, d_t, d_ue)])
        return np.reshape(np.asarray(be.to_host(out)), np.shape(ans))

    defvjp_argnums(solve_primitive, vjp_maker)
    defjvp_argnums(solve_primitive, jvp_maker)
    return solve_primitive


def _define_interpolation_primitive() -> Any:
    """``(u0, p) -> u(ts)`` from the method's differentiable dense output (``sol(t)``)."""
    from autograd.extend import defjvp_argnums, defvjp_argnums, primitive

    def source(ctx: _Context) -> tuple[SensitivityMethod, GradientRequest, Any]:
        """The method that interpolates: the chosen one, or for ``sensealg=None`` a
        forward method on the same step grid when the chosen one cannot."""
        if ctx.auto and type(ctx.method).interpolate is SensitivityMethod.interpolate:
            return ctx.forward_fallback("sol(t)")
        return ctx.method, ctx.request, ctx.record

    def interpolated(ctx: _Context, ts: np.ndarray) -> tuple[Any, Any]:
        key = ts.tobytes()
        if key not in ctx.interpolated:
            method, request, record = source(ctx)
            ctx.interpolated[key] = method.interpolate(request, record, ts)
        return ctx.interpolated[key]

    @primitive
    def interpolation_primitive(u0: Any, p: Any, ctx: _Context, ts: np.ndarray) -> np.ndarray:
        values, _ = interpolated(ctx, ts)
        host = np.asarray(ctx.request.backend.to_host(values))
        return np.reshape(host, (len(ts), *ctx.request.shape))

    def vjp_maker(argnums: tuple[int, ...], ans: Any, args: tuple, kwargs: dict) -> Any:
        ctx, ts = args[2], args[3]
        request = ctx.request
        be = request.backend

        def vjp(g: Any) -> tuple[Any, ...]:
            _, data = interpolated(ctx, ts)
            g_flat = be.asarray(np.reshape(np.asarray(g), (len(ts), request.n)))
            method, req, record = source(ctx)
            g_u0, g_p = method.interpolation_vjp(req, record, data, g_flat)
            return tuple(
                _host_shaped(be, g_u0, request.shape, request.prob.u0) if argnum == 0
                else _host_shaped(be, g_p, request.p_shape, _p_like(request))
                for argnum in argnums
            )

        return vjp

    def jvp_maker(
        argnums: tuple[int, ...], gs: tuple, ans: Any, args: tuple, kwargs: dict
    ) -> Any:
        ctx, ts = args[2], args[3]
        request = ctx.request
        be = request.backend
        tangents = dict(zip(argnums, gs, strict=True))
        du0, dp = tangents.get(0), tangents.get(1)
        du0 = None if du0 is None else be.asarray(np.reshape(np.asarray(du0), (request.n,)))
        dp = None if dp is None else be.asarray(np.reshape(np.asarray(dp), (request.n_p,)))
        _, data = interpolated(ctx, ts)
        method, req, record = source(ctx)
        out = method.interpolation_jvp(req, record, data, du0, dp)
        return np.reshape(np.asarray(be.to_host(out)), np.shape(ans))

    defvjp_argnums(interpolation_primitive, vjp_maker)
    defjvp_argnums(interpolation_primitive, jvp_maker)
    return interpolation_primitive


def event_list(record: ForwardRecord, request: GradientRequest) -> list[tuple[int, float, Any]]:
    """The events of a differentiated solve, in the order they happened: ``(callback index,
    time, flat host state before the affect)``. A method whose forward solve is not the
    primal one (``ForwardSensitivity``'s augmented system) puts them in
    ``record.extra["events"]``."""
    got = record.extra.get("events")
    if got is None:
        be, n = request.backend, request.n
        got = [
            (r.index, float(r.t),
             np.asarray(be.to_host(r.u_minus), dtype=np.float64).reshape(-1)[:n])
            for r in getattr(record.solution, "events", [])
        ]
        record.extra["events"] = got
    return got


_PRIMITIVE: Any = None
_INTERPOLATION_PRIMITIVE: Any = None


def _p_like(request: GradientRequest) -> Any:
    """What the gradient with respect to ``p`` is shaped like (containers: flat)."""
    p = request.prob.p
    return request.p_flat if is_container(p) else p


def _host_shaped(be: Backend, x: Any, shape: tuple[int, ...] | None,
                 like: Any = None) -> Any:
    """``x`` as a host array of ``shape``, in the floating dtype of ``like`` (the input it is
    the derivative with respect to: a float32 ``p`` gets a float32 gradient)."""
    dtype = np.float64
    like_dtype = getattr(like, "dtype", None)
    if like_dtype is not None and np.dtype(like_dtype) == np.float32:
        dtype = np.float32
    if x is None or shape is None:
        return np.zeros(shape or (), dtype=dtype)
    return np.reshape(np.asarray(be.to_host(x), dtype=dtype), shape)


class TracedSolution(Solution):
    """A :class:`Solution` whose ``u`` is being differentiated (an autograd box on the host).

    ``sol.u`` has shape ``(len(sol.t), *u0.shape)``. ``sol(t)`` is differentiable where the
    sensitivity method has a differentiable dense output (``ForwardSensitivity``: the
    interpolant of the state and its sensitivities); the others raise
    :class:`UnsupportedCombination` (pass the times as ``saveat`` instead).
    """

    sensealg: str = ""
    _context: Any = None

    def __call__(self, t: Any) -> Any:
        global _INTERPOLATION_PRIMITIVE
        from .solution import _refuse_traced_time

        _refuse_traced_time(t)
        ctx = self._context
        if ctx is None:
            raise DenseOutputError(
                "this solution has no dense output: solve with dense=True (the default "
                "when saveat is not given) to call sol(t)"
            )
        try:
            times = np.asarray(t, dtype=np.float64)
        except (TypeError, ValueError):
            raise DenseOutputError(f"sol(t): t must be a number or 1-D array, got {t!r}") from None
        if times.ndim > 1:
            raise DenseOutputError(f"sol(t): t must be a scalar or 1-D, got shape {times.shape}")
        scalar = times.ndim == 0
        times = times.reshape(-1)
        if _INTERPOLATION_PRIMITIVE is None:
            _INTERPOLATION_PRIMITIVE = _define_interpolation_primitive()
        values = _INTERPOLATION_PRIMITIVE(self.prob.u0, self.prob.p, ctx, times)
        return values[0] if scalar else values


def solve_traced(prob: ODEProblem, alg: Any, options: dict[str, Any],
                 alg_options: dict[str, Any], reg: Registry) -> Solution:
    """``solve`` when ``prob.u0`` or ``prob.p`` is traced by autograd (see module doc)."""
    global _PRIMITIVE
    options = dict(options)
    sensealg = options.pop("sensealg", None)
    backend_name = options.pop("backend", None)
    saveat = options.pop("saveat", None)
    dense = options.pop("dense", None)
    if dense is not None and not isinstance(dense, bool):
        raise InvalidType(f"dense must be True, False or None, got {dense!r}")
    wrt_u0, wrt_p = is_traced(prob.u0), contains_traced(prob.p)
    if max(trace_depth(prob.u0), trace_depth(prob.p)) > 1:
        raise UnsupportedCombination(
            "higher-order derivatives through solve (grad of grad, hessian, JVP of a "
            "gradient) are not supported: the sensitivity methods give first derivatives "
            "only, and nesting them would silently yield zeros",
            (),
        )
    p_in = prob.p
    p_val = unbox_tree(prob.p)
    if wrt_p and is_container(p_val):
        # a dict / list / tuple of arrays: the solve is differentiated with respect to the
        # flat vector of its float leaves; autograd carries the gradient back to the leaves
        p_in = traced_flat(prob.p)
        check_parameter_leaves(p_val)
    elif wrt_p:
        p_val = parameter_array(p_val, "to be differentiated")
    primal = prob.remake(u0=np.asarray(unbox(prob.u0)), p=p_val)
    be = resolve_backend(reg, backend_name)
    rtol_s, _ = check_tolerances(options.get("rtol", 1e-3), options.get("atol", 1e-6))
    spec = resolve_solver(reg, alg, primal, be, rtol_s)
    t0, t1 = primal.tspan
    save_times = check_saveat(saveat, t0, t1, 1.0 if t1 > t0 else -1.0)
    options = {k: v for k, v in options.items() if k in SOLVE_OPTIONS}
    fix = getattr(reg.problem_type_for(primal).adapter, "gradient_options", None)
    if fix is not None:  # e.g. an SDE's Brownian path, fixed for every solve of the gradient
        options = fix(primal, options, be)
    alg_options = dict(alg_options)
    if getattr(primal, "mass_matrix", None) is not None:
        from .dae import require_consistent

        require_consistent(primal, be, options.get("rtol", 1e-3), options.get("atol", 1e-6))
    callbacks = normalize_callbacks(options.get("callback"))
    features = ("events",) if callbacks else ()
    _, method = choose_sensitivity(reg, sensealg, spec, be, primal, features)
    request = GradientRequest(
        prob=primal,
        solver=spec,
        backend=be,
        registry=reg,
        solve_options={**options, "alg_options": alg_options},
        saveat=save_times,
        wrt_u0=wrt_u0,
        wrt_p=wrt_p,
        callbacks=callbacks,
    )
    ctx = _Context(request, method, auto=sensealg is None)
    if _PRIMITIVE is None:
        _PRIMITIVE = _define_primitive()
    u_out = _PRIMITIVE(prob.u0, p_in, ctx)
    record = ctx.record
    fwd = record.solution
    t_events: list[Any] = []
    u_events: list[Any] = []
    if callbacks:
        events = event_list(record, request)
        n_out = len(record.save_index) * request.n
        n_ev = len(events)
        flat = u_out
        u_out = np.reshape(flat[:n_out], (len(record.save_index), *request.shape))
        times = flat[n_out:n_out + n_ev]
        states = np.reshape(flat[n_out + n_ev:], (n_ev, *request.shape))
        for i in range(len(callbacks)):
            rows = [j for j, e in enumerate(events) if e[0] == i]
            t_events.append(times[np.asarray(rows, dtype=np.int64)])
            u_events.append(states[np.asarray(rows, dtype=np.int64)])
    sol = TracedSolution(
        t=record.t_saved,
        u=u_out,
        retcode=fwd.retcode,
        stats=fwd.stats,
        alg=fwd.alg,
        prob=prob,
        backend=be,
        shape=request.shape,
        dense_output=None,
        options=fwd.options,
    )
    sol.sensealg = method.name or type(method).__name__
    sol.W = getattr(fwd, "W", None)
    sol.t_events, sol.u_events = t_events, u_events
    sol._context = ctx if (saveat is None if dense is None else dense) else None
    logger.debug("differentiated solve: %s with sensealg %s", spec.name, sol.sensealg)
    return sol
