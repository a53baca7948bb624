"""Delay equations replayed step by step, traceable by autograd: ``ReverseMode`` and
``ForwardMode`` (one tape over the replay) and ``DiscreteAdjoint`` (the transposed steps).

Each accepted step of the forward solve is taken again with the traceable step map that also
returns the step's interpolation data (:meth:`Stepper.functional_step_dense`); the history
``h(p, s)`` the replayed ``f`` reads is the user's history (with the differentiated
parameters) for ``s <= t0`` and, after it, the continuous extension of the replayed step
holding ``s``. So the derivative follows every path by which a step depends on earlier ones:
through the state, and through the interpolants of the steps its lags reach back into.

A step longer than a lag is iterated as the method of steps iterates it (first attempt from
the last step's interpolant continued, then from the step's own previous attempt), until two
successive end states agree to :data:`FIXEDPOINT_TOL` in the solve's error norm (the forward
solve's criterion), at most :data:`MAX_FIXEDPOINT_ITERS` times. Step sizes are those of the
forward solve, constants of the replay (as for ODEs).

``DiscreteAdjoint`` transposes this discrete map step by step (no tape over the solve): a
first, untraced pass records each step's state, interpolation data, number of fixed-point
attempts and the earlier steps it read; the reverse pass then takes, from the last step to the
first, the vector-Jacobian product of one step (autograd on that step alone) with respect to
its state, the parameters and the states and data of the earlier steps it read, and adds
those to their cotangents. A step's cotangents are complete when its turn comes: everything
that reads it comes later.
"""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np

from autodiffeq.errors import UnsupportedCombination
from autodiffeq.replay import unflattener
from autodiffeq.sensitivity import ForwardRecord, GradientRequest

from .stacking import stack_rows

#: the fixed-point criterion of the method of steps (two successive end states agree to this
#: in units of the error norm), and its attempt limit
FIXEDPOINT_TOL = 1e-2
MAX_FIXEDPOINT_ITERS = 10


def _value(x: Any) -> np.ndarray:
    while hasattr(x, "_value"):
        x = x._value
    return np.asarray(x, dtype=np.float64)


class DelaySteps:
    """The accepted steps of a delay-equation solve, to be taken again (module doc)."""

    def __init__(self, request: GradientRequest, record: ForwardRecord) -> None:
        if request.callbacks:
            raise UnsupportedCombination(
                "delay equations with callbacks are not replayed (ReverseMode, ForwardMode, "
                "DiscreteAdjoint); use ForwardSensitivity without callbacks", ())
        if "autograd" not in getattr(request.backend, "capabilities", ()):
            raise UnsupportedCombination(
                f"replaying a delay equation traces its steps with autograd, which backend "
                f"{request.backend.name!r} does not support", ("ForwardSensitivity",))
        prob = request.prob
        self.prob = prob
        self.n_p = request.n_p
        stepper = request.make_stepper()
        self.ts = record.ts
        made_by = record.extra.get("made_by")
        self.solvers = [stepper if made_by is None else stepper.components[c] for c in
                        (made_by or [None] * (len(self.ts) - 1))]
        self.shape = tuple(prob.shape)
        self.n = int(np.prod(self.shape, dtype=np.int64))
        self.t0 = float(prob.tspan[0])
        self.rtol = float(np.min(request.solve_options.get("rtol", 1e-3)))
        self.atol = float(np.min(request.solve_options.get("atol", 1e-6)))
        import autograd.numpy as anp

        self.unflatten = unflattener(prob.p, anp.reshape)
        self.starts = [float(t) for t in self.ts[:-1]]

    def params(self, p_flat: Any) -> Any:
        return self.unflatten(p_flat) if self.n_p else self.prob.p

    def _evaluate(self, step: tuple, s: float) -> Any:
        import autograd.numpy as anp

        t, dt, u, u_new, data, solver = step
        theta = np.asarray([(s - t) / dt])
        value = solver.interpolate(theta, np.asarray([dt]), anp.reshape(u, (1, self.n)),
                                   anp.reshape(u_new, (1, self.n)), data[None, ...])[0]
        return anp.reshape(value, self.shape)

    def step(self, k: int, u: Any, p_flat: Any, earlier: Any, reads: set[int] | None = None,
             attempts: int | None = None) -> tuple[Any, Any, int]:
        """Step ``k`` from ``u``: ``(u_new, data, fixed-point attempts)``. ``earlier(j)`` gives
        step ``j``'s ``(t, dt, u_j, u_j+1, data_j, solver)``; the indices read are added to
        ``reads``; ``attempts`` fixes the number of fixed-point attempts (``None``: iterate to
        the criterion)."""
        import autograd.numpy as anp

        t, dt = float(self.ts[k]), float(self.ts[k + 1] - self.ts[k])
        solver, shape, n = self.solvers[k], self.shape, self.n
        p = self.params(p_flat)
        user_f, user_h = self.prob.f, self.prob.h
        state: dict[str, Any] = {"trial": None, "inside": False, "t": t}

        def read(j: int, s: float) -> Any:
            if reads is not None:
                reads.add(j)
            return self._evaluate(earlier(j), s)

        def history(p_: Any, s: Any) -> Any:
            s = float(s)
            if s < self.t0:
                return user_h(p, s)
            if s == self.t0:  # a jump at t0: the side the stage sees, as the solve reads it
                if state["t"] == t + dt:
                    return user_h(p, s)
                if not k:
                    return anp.reshape(u, shape)
            if k and s <= float(self.ts[k]):
                return read(min(bisect.bisect_right(self.starts, s) - 1, k - 1), s)
            state["inside"] = True
            if state["trial"] is not None:
                return self._evaluate(state["trial"], s)
            if k:  # the last step's interpolant continued
                return read(k - 1, s)
            return anp.reshape(u, shape)

        def f_flat(y: Any, p_: Any, tt: float) -> Any:
            state["t"] = tt
            return anp.reshape(user_f(anp.reshape(y, shape), history, p, tt), (n,))

        u_new, data = solver.functional_step_dense(f_flat, u, p_flat, t, dt)
        done = 0
        if state["inside"] and attempts != 0:
            limit = MAX_FIXEDPOINT_ITERS if attempts is None else attempts
            while done < limit:
                state["trial"] = (t, dt, u, u_new, data, solver)
                u_prev = u_new
                u_new, data = solver.functional_step_dense(f_flat, u, p_flat, t, dt)
                done += 1
                if attempts is None:
                    a, b, c = _value(u_new), _value(u_prev), _value(u)
                    scale = self.atol + self.rtol * np.maximum(np.abs(c), np.abs(a))
                    if float(np.sqrt(np.mean(((a - b) / scale) ** 2))) <= FIXEDPOINT_TOL:
                        break
        return u_new, data, done

    def step_record(self, k: int, u: Any, u_new: Any, data: Any) -> tuple:
        return (float(self.ts[k]), float(self.ts[k + 1] - self.ts[k]), u, u_new, data,
                self.solvers[k])


def replay_delay_equation(request: GradientRequest, record: ForwardRecord) -> Any:
    """``(u0_flat, p_flat) -> saved states (nsave, n)`` of the delay equation (module doc)."""
    steps = DelaySteps(request, record)
    wanted = set(int(i) for i in record.save_index)
    order = list(record.save_index)

    def replay(args: tuple[Any, Any]) -> Any:
        u, p_flat = args
        taken: list[tuple] = []
        saved = {0: u} if 0 in wanted else {}
        for k in range(len(steps.ts) - 1):
            u_new, data, _ = steps.step(k, u, p_flat, taken.__getitem__)
            taken.append(steps.step_record(k, u, u_new, data))
            u = u_new
            if k + 1 in wanted:
                saved[k + 1] = u
        return stack_rows([saved[int(i)] for i in order])

    return replay


def discrete_forward(request: GradientRequest, record: ForwardRecord) -> ForwardRecord:
    """The untraced pass of ``DiscreteAdjoint`` (module doc), kept in ``record.extra``."""
    steps = DelaySteps(request, record)
    u = np.reshape(np.asarray(request.backend.to_host(request.prob.u0), dtype=np.float64), -1)
    p_flat = request.p_flat
    taken: list[tuple] = []
    reads: list[list[int]] = []
    attempts: list[int] = []
    for k in range(len(steps.ts) - 1):
        read: set[int] = set()
        u_new, data, done = steps.step(k, u, p_flat, taken.__getitem__, read)
        taken.append(steps.step_record(k, u, u_new, data))
        reads.append(sorted(read))
        attempts.append(done)
        u = u_new
    record.extra["dde"] = (steps, taken, reads, attempts)
    return record


def discrete_vjp(request: GradientRequest, record: ForwardRecord, g: Any
                 ) -> tuple[Any, Any]:
    """The transposed steps of ``DiscreteAdjoint`` (module doc): ``(g_u0, g_p)``."""
    import autograd.numpy as anp
    from autograd import make_vjp

    steps, taken, reads, attempts = record.extra["dde"]
    g = np.asarray(g, dtype=np.float64)
    n_steps = len(taken)
    u_bar = [np.zeros(steps.n) for _ in range(n_steps + 1)]
    data_bar = [np.zeros_like(np.asarray(step[4])) for step in taken]
    for row, k in enumerate(record.save_index):
        u_bar[int(k)] = u_bar[int(k)] + g[row]
    p_flat = request.p_flat
    p_bar = np.zeros(request.n_p)
    for k in range(n_steps - 1, -1, -1):
        js = reads[k]

        def one_step(args: tuple, k: int = k, js: list[int] = js) -> Any:
            u, p, hist = args
            view = dict(zip(js, hist, strict=True))

            def earlier(i: int) -> tuple:
                u_i, u_i1, d_i = view[i]
                t_i, dt_i, *_, solver = taken[i]
                return (t_i, dt_i, u_i, u_i1, d_i, solver)

            u_new, data, _ = steps.step(k, u, p, earlier, attempts=attempts[k])
            return anp.concatenate([u_new, anp.reshape(data, (-1,))])  # one traced output

        hist_in = tuple((taken[j][2], taken[j][3], taken[j][4]) for j in js)
        vjp, _ = make_vjp(one_step)((taken[k][2], p_flat, hist_in))
        gu, gp, ghist = vjp(np.concatenate([u_bar[k + 1], data_bar[k].reshape(-1)]))
        u_bar[k] = u_bar[k] + gu
        if request.n_p:
            p_bar = p_bar + gp
        for j, (gu_j, gu_j1, gd_j) in zip(js, ghist, strict=True):
            u_bar[j] = u_bar[j] + gu_j
            u_bar[j + 1] = u_bar[j + 1] + gu_j1
            data_bar[j] = data_bar[j] + gd_j
    return u_bar[0], (p_bar if request.n_p else None)
