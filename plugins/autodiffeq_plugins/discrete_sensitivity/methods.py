"""Sensitivity methods that differentiate the discrete solution (the step map) itself.

A solve on the accepted step grid ``t_0 < t_1 < ... < t_N`` is the composition

    u_{k+1} = Phi(u_k, p; t_k, dt_k),    k = 0..N-1,

with the step sizes held fixed (they are constants of the solution, as in diffrax and
SciMLSensitivity's discrete adjoints). Three ways to differentiate it:

* :class:`ReverseMode` — autograd records one tape through every step of the replayed solve
  (the paper's reverse mode through the solver; Rackauckas & Innes 2019, §3).
* :class:`ForwardMode` — autograd's forward mode through the same replay.
* :class:`DiscreteAdjoint` — no tape: the transposed steps ``lam_k = (dPhi/du_k)^T lam_{k+1}
  + g_k``, ``mu += (dPhi/dp)^T lam_{k+1}`` run backwards from checkpointed states, with the
  per-step transpose derived from the tableau (:meth:`Stepper.step_vjp`) where the family
  provides one and from autograd on :meth:`Stepper.functional_step` otherwise (Sandu 2006,
  "On the properties of Runge–Kutta discrete adjoints"). It gives the same gradient as
  :class:`ReverseMode` to rounding error.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from autodiffeq.errors import InvalidArgument, UnsupportedCombination
from autodiffeq.replay import ForwardTape
from autodiffeq.sensitivity import (
    ForwardRecord,
    GradientRequest,
    SensitivityMethod,
    record_from_solution,
)

from .stacking import stack_rows


def _p_flat(request: GradientRequest) -> np.ndarray:
    if request.n_p == 0:
        return np.zeros(0)
    return request.p_flat


def require_traceable(derivs: Any, what: str) -> None:
    """Raise :class:`UnsupportedCombination` unless autograd can trace ``f`` (``what``: the
    method and what it traces)."""
    if not derivs.traceable:
        raise UnsupportedCombination(
            f"{what} by tracing f with autograd, and this f cannot be traced (e.g. it builds "
            "its result with numpy, np.array([...]) of the traced entries, which gives an "
            "object array): write f with autograd.numpy (anp.stack / anp.array), or use "
            "sensealg='ForwardSensitivity' or 'InterpolatingAdjoint', which need only "
            "values of f",
            ("ForwardSensitivity", "InterpolatingAdjoint", "QuadratureAdjoint"),
        )


def _replay(request: GradientRequest, record: ForwardRecord) -> Any:
    """``(u0_flat, p_flat) -> saved states (nsave, n)`` by re-running the accepted steps with
    the traceable step map (autograd.numpy operations only)."""
    if _delay_equation(request):
        from .dde_replay import replay_delay_equation

        return replay_delay_equation(request, record)
    if _stochastic(request):
        from .sde_replay import replay_sde

        return replay_sde(request, record)
    stepper = request.make_stepper()
    derivs = request.derivatives()
    require_traceable(derivs, "ReverseMode and ForwardMode replay the solve")
    f = derivs.flat_f
    ts = record.ts
    wanted = set(int(i) for i in record.save_index)
    order = list(record.save_index)
    made_by = record.extra.get("made_by")
    solvers = [stepper if made_by is None else stepper.components[c] for c in
               (made_by or [None] * (len(ts) - 1))]

    def replay(args: tuple[Any, Any]) -> Any:
        u, p = args
        saved = {0: u} if 0 in wanted else {}
        for k in range(len(ts) - 1):
            u = solvers[k].functional_step(f, u, p, float(ts[k]), float(ts[k + 1] - ts[k]))
            if k + 1 in wanted:
                saved[k + 1] = u
        return stack_rows([saved[int(i)] for i in order])

    return replay


def _delay_equation(request: GradientRequest) -> bool:
    return getattr(request.prob, "problem_type", "ODE") == "DDE"


def _stochastic(request: GradientRequest) -> bool:
    return getattr(request.prob, "problem_type", "ODE") == "SDE"


def _inputs(request: GradientRequest) -> tuple[np.ndarray, np.ndarray]:
    u0 = np.asarray(request.backend.to_host(request.prob.u0), dtype=np.float64).reshape(-1)
    return u0, _p_flat(request)


class ComponentLog:
    """A step observer keeping which component of a composite stepper made each step (the
    driver reports it), so a replay runs each step with the method that made it."""

    def __init__(self) -> None:
        self.made_by: list[int] = []

    def on_step(self, t: float, t_new: float, u: Any, u_new: Any, stepper: Any,
                component: int | None) -> None:
        self.made_by.append(-1 if component is None else int(component))


def _replayable_forward(request: GradientRequest) -> ForwardRecord:
    """The forward solve of the replaying methods, with the composite's step makers."""
    log = ComponentLog()
    record = record_from_solution(request, request.solve(observers=(log,)))
    record.extra["made_by"] = log.made_by if request.solver.composite else None
    return record


class ReverseMode(SensitivityMethod):
    """autograd's reverse mode through the whole solve: one tape over every stage of every
    step (memory grows with the number of steps; NumPy backend and traceable ``f`` only).
    A composite solver's steps are replayed by the components that made them."""

    name = "ReverseMode"

    def forward(self, request: GradientRequest) -> ForwardRecord:
        from autograd import make_vjp

        record = _replayable_forward(request)
        vjp, _ = make_vjp(_replay(request, record))(_inputs(request))
        record.extra["tape"] = vjp
        return record

    def vjp(self, request: GradientRequest, record: ForwardRecord, g: Any) -> tuple[Any, Any]:
        g_u0, g_p = record.extra["tape"](np.asarray(g, dtype=np.float64))
        return g_u0, (g_p if request.n_p else None)

    def jvp(self, request: GradientRequest, record: ForwardRecord, du0: Any, dp: Any) -> Any:
        return _replay_jvp(request, record, du0, dp)


def _replay_jvp(request: GradientRequest, record: ForwardRecord, du0: Any, dp: Any) -> Any:
    from autograd import make_jvp

    u0, p = _inputs(request)
    du0 = np.zeros_like(u0) if du0 is None else np.asarray(du0, dtype=np.float64)
    dp = np.zeros_like(p) if (dp is None or p.size == 0) else np.asarray(dp, dtype=np.float64)
    _, tangent = make_jvp(_replay(request, record))((u0, p))((du0, dp))
    return tangent


class ForwardMode(SensitivityMethod):
    """autograd's forward mode through the solve (tangents carried through every stage of
    every step); cheap for few inputs, NumPy backend and traceable ``f`` only."""

    name = "ForwardMode"

    def forward(self, request: GradientRequest) -> ForwardRecord:
        return _replayable_forward(request)

    def jvp(self, request: GradientRequest, record: ForwardRecord, du0: Any, dp: Any) -> Any:
        return _replay_jvp(request, record, du0, dp)

    def vjp(self, request: GradientRequest, record: ForwardRecord, g: Any) -> tuple[Any, Any]:
        """A VJP from forward mode: one tangent solve per input (``n + m`` of them), which is
        how forward methods serve ``autograd.grad`` for small problems."""
        u0, p = _inputs(request)
        n, m = u0.size, p.size
        g = np.asarray(g, dtype=np.float64)
        g_u0 = np.zeros(n)
        g_p = np.zeros(m)
        for j in range(n if request.wrt_u0 else 0):
            e = np.zeros(n)
            e[j] = 1.0
            g_u0[j] = np.sum(g * _replay_jvp(request, record, e, None))
        for j in range(m if request.wrt_p else 0):
            e = np.zeros(m)
            e[j] = 1.0
            g_p[j] = np.sum(g * _replay_jvp(request, record, None, e))
        return g_u0, (g_p if m else None)


#: DiscreteAdjoint keeps at most this many numbers of states (and, separately, of forward
#: stage data) from the forward solve; beyond it, states are thinned to every k-th step
MEMORY_BUDGET = 10**7


class StepCheckpoints:
    """Step ends of a solve with states at every ``stride``-th step, in bounded memory.

    A step observer of the driver (``on_step`` after each accepted step, ``on_jump`` at each
    event). All step ends are kept (host floats; an event adds its time a second time, a
    zero-length "jump step" from the state before to the state after it); states are kept at
    the steps divisible by ``stride`` and on both sides of every jump. With ``stride=None``
    the stride starts at 1 and doubles, dropping every other checkpoint, whenever more than
    ``max_states`` are held, so about ``max_states`` states are kept and a reverse pass
    recomputes at most ``stride - 1`` steps per checkpoint (Griewank & Walther, *Evaluating
    Derivatives*, 2nd ed., ch. 12, for checkpointing schedules; this is the simple
    equidistant one, chosen online because the number of steps is not known in advance).
    The forward steps' dense data (the explicit stages) are kept too while the stride is 1
    and their total size stays within ``stage_budget`` numbers. For a composite stepper the
    component that made each step is kept (``made_by``, as the driver reports it).
    """

    def __init__(
        self, t0: float, u0: Any, max_states: int, stride: int | None = None,
        stage_budget: int = 0,
    ) -> None:
        self.ts: list[float] = [float(t0)]
        self.states: dict[int, Any] = {0: u0}
        self.fixed = stride is not None
        self.stride = 1 if stride is None else int(stride)
        self.max_states = max(2, int(max_states))
        self.stages: list[Any] | None = [] if stage_budget > 0 and self.stride == 1 else None
        self._stage_room = stage_budget
        #: which component of a composite stepper made each step (``None``: not a composite)
        self.made_by: list[int] | None = None
        #: jump steps: grid index of the state before the event -> the event's record
        self.jumps: dict[int, Any] = {}
        #: every event in order: (grid index of the state before it, its record)
        self.events: list[tuple[int, Any]] = []

    def on_step(self, t: float, t_new: float, u: Any, u_new: Any, stepper: Any,
                component: int | None) -> None:
        k = len(self.ts)
        self.ts.append(float(t_new))
        if component is not None:
            if self.made_by is None:
                self.made_by = [-1] * (k - 1)
            self.made_by.append(int(component))
        elif self.made_by is not None:
            self.made_by.append(-1)
        if k % self.stride == 0:
            self.states[k] = u_new
            if not self.fixed and len(self.states) > self.max_states:
                self.stride *= 2
                keep = {j for i in self.jumps for j in (i, i + 1)}
                self.states = {i: v for i, v in self.states.items()
                               if i % self.stride == 0 or i in keep}
                self.stages = None
        if self.stages is not None:
            data = stepper.dense_data()
            size = 0 if data is None else math.prod(data.shape)
            self._stage_room -= size
            if data is None or self._stage_room < 0:
                self.stages = None
            else:
                self.stages.append(data)

    def on_jump(self, t: float, u_minus: Any, u_plus: Any, event: Any) -> None:
        k = len(self.ts) - 1
        self.events.append((k, event))
        if u_plus is u_minus:  # the event left the state as it was: no jump step
            return
        self.states[k] = u_minus
        self.states[k + 1] = u_plus
        self.jumps[k] = event
        self.ts.append(float(t))
        if self.made_by is not None:
            self.made_by.append(-1)
        if self.stages is not None:
            self.stages.append(None)


def moving_rows_cotangent(request: GradientRequest, record: ForwardRecord, g: Any,
                          g_t: Any, event_grid: list[tuple[int, Any]]) -> Any:
    """The cotangents of the event times plus those of the saved states at event times:
    a state saved at a continuous event's time (both sides of a jump, the end of a terminal
    solve) moves with it, ``d u(t*)/dx = S + f(u) dt*/dx``, so its cotangent ``g_r`` adds
    ``f(u_r) . g_r`` to the event time's."""
    be = request.backend
    g_t = np.array(np.asarray(be.to_host(g_t), dtype=np.float64).reshape(-1))
    times = {}
    for j, (_, ev) in enumerate(event_grid):
        if request.callbacks[ev.index].continuous:
            times.setdefault(float(ev.t), j)
    if not times:
        return be.asarray(g_t)
    t_saved = np.asarray(record.t_saved, dtype=np.float64)
    rows = [r for r, t in enumerate(t_saved) if float(t) in times]
    if rows:
        saved = np.asarray(be.to_host(record.u_saved), dtype=np.float64)
        g_h = np.asarray(be.to_host(g), dtype=np.float64)
        for r in rows:
            t = float(t_saved[r])
            g_t[times[t]] += float(request.f_host(saved[r], t) @ g_h[r])
    return be.asarray(g_t)


def transposed_jump(request: GradientRequest, event: Any, lam_plus: Any,
                    g_t: Any, g_u: Any, want_p: bool) -> tuple[Any, Any]:
    """The adjoint of an event: ``(lam-, p-bar)`` from the cotangent ``lam+`` of the state
    after it and the cotangents ``g_t``, ``g_u`` of the event's time and state.

    With ``a`` the affect, ``g`` the condition and ``D = g_u . f(u-) + g_t``, the forward
    (saltation) update of the sensitivities is ``S+ = A_u S- + A_p + w dt*/dx`` with
    ``w = A_u f(u-) + A_t - f(u+)`` and ``dt*/dx = -(g_u S- + g_p) / D`` (implicit function
    theorem; Hiskens & Pai, *IEEE TCAS-I* 47, 2000). Its transpose, with the cotangents of
    the event time ``g_t`` and of the event state ``u(t*) `` (``g_u-bar``; that state moves
    with ``t*``, ``d u(t*)/dx = S- + f(u-) dt*/dx``)::

        T = g_t + w . lam+ + f(u-) . g_u-bar,   lam- = A_u^T lam+ - (T / D) g_u + g_u-bar,
        p-bar = A_p^T lam+ - (T / D) g_p.

    A discrete callback's time is a step end, fixed: ``T`` does not enter.
    """
    from autodiffeq.callbacks import event_jacobians

    be = request.backend
    cb = request.callbacks[event.index]
    u_minus = np.asarray(be.to_host(event.u_minus), dtype=np.float64).reshape(-1)
    u_plus = np.asarray(be.to_host(event.u_plus), dtype=np.float64).reshape(-1)
    lam = np.asarray(be.to_host(lam_plus), dtype=np.float64).reshape(-1)
    p_flat = _p_flat(request) if request.n_p else None
    jac = event_jacobians(cb, request.shape, u_minus, request.prob.p, p_flat, event.t)
    lam_minus = jac.A_u.T @ lam
    p_bar = jac.A_p.T @ lam if p_flat is not None else None
    if cb.continuous:
        f_minus = request.f_host(u_minus, event.t)
        f_plus = request.f_host(u_plus, event.t)
        D, _ = jac.time_sensitivity(f_minus)
        w = jac.A_u @ f_minus + jac.A_t - f_plus
        T = float(w @ lam) + (0.0 if g_t is None else float(g_t))
        if g_u is not None:
            # the event state u(t*) moves with t*: d u-/dx = S- + f(u-) dt*/dx
            T += float(f_minus @ np.asarray(be.to_host(g_u), dtype=np.float64).reshape(-1))
        lam_minus = lam_minus - (T / D) * jac.g_u
        if p_bar is not None:
            p_bar = p_bar - (T / D) * jac.g_p
    if g_u is not None:
        lam_minus = lam_minus + np.asarray(be.to_host(g_u), dtype=np.float64).reshape(-1)
    dtype = lam_plus.dtype
    return (be.asarray(lam_minus, dtype=dtype),
            None if (p_bar is None or not want_p) else be.asarray(p_bar, dtype=dtype))


class DiscreteAdjoint(SensitivityMethod):
    """The exact gradient of the discrete solution by transposed steps, no tape.

    Memory: with ``saveat`` the forward solve keeps only checkpoints
    (:class:`StepCheckpoints`): every state while ``N n <= 10**7`` numbers
    (:data:`MEMORY_BUDGET`), then every k-th with ``k`` doubling as needed, and the reverse
    pass recomputes the steps between checkpoints (at most ``k - 1`` per checkpoint). The
    cotangents are kept for the saved steps only. Without ``saveat`` every step is an output
    and its state is kept anyway.

    Options:
        checkpoint_every: ``"auto"`` (the budget above) or a fixed ``k``: keep the state of
            every k-th step and recompute the steps in between (memory ``N/k + k`` states
            instead of ``N``).
        autojacvec: where ``v^T df/du`` and ``v^T df/dp`` come from (``"auto"``, ``"user"``,
            ``"autograd"``, ``"fd"``; see :mod:`autodiffeq.rhs_derivatives`).
    """

    name = "DiscreteAdjoint"

    def __init__(self, checkpoint_every: int | str = "auto", autojacvec: str = "auto") -> None:
        if checkpoint_every != "auto" and (
            not isinstance(checkpoint_every, int) or isinstance(checkpoint_every, bool)
            or checkpoint_every < 1
        ):
            raise InvalidArgument(
                f"checkpoint_every must be 'auto' or a positive int, got {checkpoint_every!r}"
            )
        self.checkpoint_every = checkpoint_every
        self.autojacvec = autojacvec

    def forward(self, request: GradientRequest) -> ForwardRecord:
        if _delay_equation(request):
            from .dde_replay import discrete_forward

            return discrete_forward(request, _replayable_forward(request))
        if _stochastic(request):
            return _replayable_forward(request)
        reuse = request.scratch_stepper().step_vjp_uses_dense_data and self.checkpoint_every in (
            "auto", 1
        )
        n = request.n
        xp = request.backend.xp
        fixed = None if self.checkpoint_every == "auto" else int(self.checkpoint_every)
        t0 = float(request.prob.tspan[0])
        u0 = xp.reshape(request.backend.asarray(request.prob.u0), (n,))
        # the reverse sweeps of the stage evaluations, for the transposed steps (with the
        # stages kept, the reverse pass meets the same stage states bit for bit)
        tape = (ForwardTape(MEMORY_BUDGET) if reuse and request.wrt_p and request.n_p > 0
                else None)
        if request.saveat is None:
            # every step is an output: its state is kept by the solve anyway
            rec = StepCheckpoints(t0, u0, max_states=2**62, stride=fixed,
                                  stage_budget=MEMORY_BUDGET if reuse else 0)
            sol = request.solve(observers=(rec,), tape=tape)
            record = record_from_solution(request, sol)
        else:
            rec = StepCheckpoints(t0, u0, max_states=MEMORY_BUDGET // max(n, 1), stride=fixed,
                                  stage_budget=MEMORY_BUDGET if reuse else 0)
            sol = request.solve(saveat=request.saveat, observers=(rec,), tape=tape)
            ts = np.asarray(rec.ts, dtype=np.float64)
            t_out = np.asarray(sol.t, dtype=np.float64)
            hit = np.isin(t_out, request.saveat)  # a failed solve appends where it stopped
            tdir = 1.0 if request.prob.tspan[1] > request.prob.tspan[0] else -1.0
            # the last grid point at each time: after a jump, the state after it
            index = np.searchsorted(tdir * ts, tdir * t_out[hit], side="right") - 1
            saved = xp.reshape(sol.u, (len(t_out), n))
            saved = xp.take(saved, xp.asarray(np.flatnonzero(hit)), axis=0)
            record = ForwardRecord(sol, ts, None, index, {"saved": saved})
        record.extra["every"] = rec.stride
        record.extra["checkpoints"] = rec.states
        record.extra["stages"] = rec.stages
        record.extra["made_by"] = rec.made_by
        record.extra["jumps"] = rec.jumps
        record.extra["event_grid"] = rec.events
        record.extra["tape"] = tape if rec.stages is not None else None
        return record

    def vjp(self, request: GradientRequest, record: ForwardRecord, g: Any,
            events: tuple[Any, Any] | None = None) -> tuple[Any, Any]:
        """The transposed steps (module doc); at an event, the transposed jump (the adjoint
        of the saltation update, :func:`transposed_jump`) with the cotangents ``events =
        (g_t, g_u)`` of the event times and states, in the order the events happened."""
        if _delay_equation(request):
            if events is not None:
                raise UnsupportedCombination(
                    "DiscreteAdjoint does not differentiate delay equations with callbacks",
                    ("ForwardSensitivity",))
            from .dde_replay import discrete_vjp

            return discrete_vjp(request, record, g)
        if _stochastic(request):
            if events is not None:
                raise UnsupportedCombination(
                    "DiscreteAdjoint does not differentiate SDE solves with callbacks", ())
            from .sde_replay import discrete_vjp as sde_vjp

            return sde_vjp(request, record, g)
        be = request.backend
        xp = be.xp
        want_p = request.wrt_p and request.n_p > 0
        stepper = request.scratch_stepper()
        derivs = request.derivatives(self.autojacvec)
        # cotangents of the saved states, by step (several outputs may share a step)
        G: dict[int, Any] = {}
        for row, k in enumerate(record.save_index):
            k = int(k)
            G[k] = g[row, ...] if k not in G else G[k] + g[row, ...]
        ts = record.ts
        n_steps = len(ts) - 1
        every = record.extra["every"]
        checkpoints = record.extra["checkpoints"]
        stages = record.extra.get("stages")
        made_by = record.extra.get("made_by")
        jumps = record.extra.get("jumps") or {}
        event_grid = record.extra.get("event_grid") or []
        if events is not None and event_grid:
            events = (moving_rows_cotangent(request, record, g, events[0], event_grid),
                      events[1])
        event_order = {id(ev): j for j, (_, ev) in enumerate(event_grid)}
        lam_p = None
        for j, (k, ev) in enumerate(event_grid):
            if k in jumps and jumps[k] is ev:
                continue  # transposed at its jump step below
            # an event that left the state as it was: its time and state depend on the
            # state there, a cotangent of that grid point (transposed_jump with lam+ = 0)
            if events is None:
                continue
            zero = xp.zeros((request.n,), dtype=g.dtype)
            d_u, d_p = transposed_jump(request, ev, zero, events[0][j], events[1][j, ...],
                                       want_p)
            G[k] = d_u if k not in G else G[k] + d_u
            if want_p and d_p is not None:
                lam_p = d_p if lam_p is None else lam_p + d_p
        # parameter cotangents of the stages kept and summed once (steppers that allow it)
        p_acc = derivs.p_accumulator() if want_p else None
        deferring = derivs.deferring(p_acc, record.extra.get("tape")) if want_p else derivs
        composite = stepper
        if made_by is not None:  # a composite: each step is transposed by its component
            if len(made_by) != n_steps:
                raise RuntimeError("DiscreteAdjoint: the composite's step record is incomplete")
            stages = None
        lam = G.get(n_steps)
        if lam is None:
            lam = xp.zeros((request.n,), dtype=checkpoints[0].dtype)
        segment: list[Any] = []
        seg_start = -1
        for k in range(n_steps - 1, -1, -1):
            if k in jumps:
                ev = event_order[id(jumps[k])]
                g_t = None if events is None else events[0][ev]
                g_u = None if events is None else events[1][ev, ...]
                lam, dp = transposed_jump(request, jumps[k], lam, g_t, g_u, want_p)
                if want_p and dp is not None:
                    lam_p = dp if lam_p is None else lam_p + dp
                if k in G:
                    lam = lam + G[k]
                continue
            if every == 1 or k in checkpoints:
                u_k = checkpoints[k]
            else:
                start = (k // every) * every
                if start != seg_start:
                    segment = self._recompute(composite, ts, checkpoints[start],
                                              start, min(start + every, n_steps), made_by,
                                              jumps)
                    seg_start = start
                u_k = segment[k - start]
            t, dt = float(ts[k]), float(ts[k + 1] - ts[k])
            if made_by is not None:
                stepper = composite.components[made_by[k]]
            out = stepper.step_vjp(t, u_k, dt, lam,
                                   deferring if stepper.step_vjp_defers_p else derivs, want_p,
                                   stages=None if stages is None else stages[k])
            if out is None:
                out = self._autograd_step_vjp(request, stepper, derivs, t, u_k, dt, lam, want_p)
            lam, dp = out
            if want_p:
                p_acc.bound_memory()
                if dp is not None:
                    lam_p = dp if lam_p is None else lam_p + dp
            if k in G:
                lam = lam + G[k]
        if want_p:
            kept = p_acc.total()
            if kept is not None:
                lam_p = kept if lam_p is None else lam_p + kept
        if want_p and lam_p is None:
            lam_p = xp.zeros((request.n_p,), dtype=lam.dtype)
        return lam, lam_p

    @staticmethod
    def _recompute(
        stepper: Any, ts: np.ndarray, u: Any, start: int, stop: int,
        made_by: list[int] | None = None, jumps: dict[int, Any] | None = None,
    ) -> list[Any]:
        """States at steps ``start..stop-1`` from the checkpoint at ``start`` (same steps; a
        composite's steps by the components that made them)."""
        states = [u]
        for k in range(start, stop - 1):
            t, dt = float(ts[k]), float(ts[k + 1] - ts[k])
            if jumps is not None and k in jumps:
                u = jumps[k].u_plus
                states.append(u)
                continue
            sub = stepper if made_by is None else stepper.components[made_by[k]]
            sub.init(t, u, sub.rhs.f(u, t))
            u, _ = sub.step(t, u, dt)
            states.append(u)
        return states

    @staticmethod
    def _autograd_step_vjp(
        request: GradientRequest,
        stepper: Any,
        derivs: Any,
        t: float,
        u: Any,
        dt: float,
        lam: Any,
        want_p: bool,
    ) -> tuple[Any, Any]:
        from autograd import make_vjp

        require_traceable(derivs, f"DiscreteAdjoint transposes {type(stepper).__name__} steps")

        def phi(args: tuple[Any, Any]) -> Any:
            return stepper.functional_step(derivs.flat_f, args[0], args[1], t, dt)

        vjp, _ = make_vjp(phi)((np.asarray(u, dtype=np.float64), _p_flat(request)))
        gu, gp = vjp(np.asarray(lam, dtype=np.float64))
        return gu, (gp if want_p else None)

