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

from autodiffeq.errors import InvalidArgument
from autodiffeq.sensitivity import (
    ForwardRecord,
    GradientRequest,
    SensitivityMethod,
    record_from_solution,
)


def _p_flat(request: GradientRequest) -> np.ndarray:
    if request.n_p == 0:
        return np.zeros(0)
    return np.asarray(request.prob.p, dtype=np.float64).reshape(-1)


def _replay(request: GradientRequest, record: ForwardRecord) -> Any:
    """``(u0_flat, p_flat) -> saved states (nsave, n)`` by re-running the accepted steps with
    the traceable step map (autograd.numpy operations only)."""
    import autograd.numpy as anp

    stepper = request.make_stepper()
    derivs = request.derivatives()
    f = derivs.flat_f
    ts = record.ts
    wanted = set(int(i) for i in record.save_index)
    order = list(record.save_index)

    def replay(args: tuple[Any, Any]) -> Any:
        u, p = args
        saved = {0: u} if 0 in wanted else {}
        for k in range(len(ts) - 1):
            u = stepper.functional_step(f, u, p, float(ts[k]), float(ts[k + 1] - ts[k]))
            if k + 1 in wanted:
                saved[k + 1] = u
        return anp.stack([saved[int(i)] for i in order])

    return replay


def _inputs(request: GradientRequest) -> tuple[np.ndarray, np.ndarray]:
    u0 = np.asarray(request.backend.to_host(request.prob.u0), dtype=np.float64).reshape(-1)
    return u0, _p_flat(request)


class ReverseMode(SensitivityMethod):
    """autograd's reverse mode through the whole solve: one tape over every stage of every
    step (memory grows with the number of steps; NumPy backend and traceable ``f`` only)."""

    name = "ReverseMode"

    def forward(self, request: GradientRequest) -> ForwardRecord:
        from autograd import make_vjp

        record = record_from_solution(request, request.solve())
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


class DiscreteAdjoint(SensitivityMethod):
    """The exact gradient of the discrete solution by transposed steps, no tape.

    Options:
        checkpoint_every: keep the state of every k-th step for the reverse pass and recompute
            the steps in between (memory ``N/k + k`` states instead of ``N``); ``"auto"`` keeps
            every state when ``N * n <= 10**7`` and uses ``k = ceil(sqrt(N))`` above.
        autojacvec: where ``v^T df/du`` and ``v^T df/dp`` come from (``"auto"``, ``"user"``,
            ``"autograd"``, ``"fd"``; see :mod:`autodiffeq.rhs_derivatives`).
    """

    name = "DiscreteAdjoint"

    def __init__(self, checkpoint_every: int | str = "auto", autojacvec: str = "auto") -> None:
        if checkpoint_every != "auto" and (
            not isinstance(checkpoint_every, int) or checkpoint_every < 1
        ):
            raise InvalidArgument(
                f"checkpoint_every must be 'auto' or a positive int, got {checkpoint_every!r}"
            )
        self.checkpoint_every = checkpoint_every
        self.autojacvec = autojacvec

    def forward(self, request: GradientRequest) -> ForwardRecord:
        reuse = request.make_stepper().step_vjp_uses_dense_data and self.checkpoint_every in (
            "auto", 1
        )
        sol = request.solve(dense=True) if reuse else request.solve()
        record = record_from_solution(request, sol)
        n_steps = len(record.ts) - 1
        k = self.checkpoint_every
        if k == "auto":
            k = 1 if n_steps * request.n <= 10**7 else max(1, math.ceil(math.sqrt(n_steps)))
        xp = request.backend.xp
        keep = np.arange(0, n_steps + 1, k)
        record.extra["every"] = k
        record.extra["checkpoints"] = (
            record.us if k == 1 else xp.take(record.us, xp.asarray(keep), axis=0)
        )
        # the forward steps' stage derivatives (their dense data), kept while they fit in the
        # same memory bound as the states: the reverse pass then evaluates no f
        dense = sol.dense_output
        stages = None
        if reuse and k == 1 and dense is not None and len(dense._data) == n_steps:
            first = dense._data[0] if n_steps else None
            size = 0 if first is None else int(np.prod(first.shape))
            if first is not None and n_steps * size <= 10**7:
                stages = dense._data
        record.extra["stages"] = stages
        sol.dense_output = None
        return record

    def vjp(self, request: GradientRequest, record: ForwardRecord, g: Any) -> tuple[Any, Any]:
        be = request.backend
        xp = be.xp
        want_p = request.wrt_p and request.n_p > 0
        stepper = request.make_stepper()
        derivs = request.derivatives(self.autojacvec)
        G = be.asarray(record.step_cotangents(g, be), dtype=record.us.dtype)
        ts = record.ts
        n_steps = len(ts) - 1
        every = record.extra["every"]
        checkpoints = record.extra["checkpoints"]
        lam = G[n_steps, ...]
        lam_p = None
        segment: list[Any] = []
        seg_start = -1
        for k in range(n_steps - 1, -1, -1):
            if every == 1:
                u_k = checkpoints[k, ...]
            else:
                start = (k // every) * every
                if start != seg_start:
                    segment = self._recompute(stepper, ts, checkpoints[start // every, ...],
                                              start, min(start + every, n_steps))
                    seg_start = start
                u_k = segment[k - start]
            t, dt = float(ts[k]), float(ts[k + 1] - ts[k])
            stages = record.extra.get("stages")
            out = stepper.step_vjp(t, u_k, dt, lam, derivs, want_p,
                                   stages=None if stages is None else stages[k])
            if out is None:
                out = self._autograd_step_vjp(request, stepper, derivs, t, u_k, dt, lam, want_p)
            lam, dp = out
            if want_p:
                lam_p = dp if lam_p is None else lam_p + dp
            lam = lam + G[k, ...]
        if want_p and lam_p is None:
            lam_p = xp.zeros((request.n_p,), dtype=lam.dtype)
        return lam, lam_p

    @staticmethod
    def _recompute(stepper: Any, ts: np.ndarray, u: Any, start: int, stop: int) -> list[Any]:
        """States at steps ``start..stop-1`` from the checkpoint at ``start`` (same steps)."""
        states = [u]
        for k in range(start, stop - 1):
            t, dt = float(ts[k]), float(ts[k + 1] - ts[k])
            stepper.init(t, u, stepper.rhs.f(u, t))
            u, _ = stepper.step(t, u, dt)
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

        def phi(args: tuple[Any, Any]) -> Any:
            return stepper.functional_step(derivs.flat_f, args[0], args[1], t, dt)

        vjp, _ = make_vjp(phi)((np.asarray(u, dtype=np.float64), _p_flat(request)))
        gu, gp = vjp(np.asarray(lam, dtype=np.float64))
        return gu, (gp if want_p else None)
