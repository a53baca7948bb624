"""The replay of a delay equation's accepted steps, traceable by autograd (``ReverseMode``,
``ForwardMode``).

Each accepted step of the forward solve is taken again with the traceable step map that also
returns the step's interpolation data (:meth:`Stepper.functional_step_dense`); the history
``h(p, s)`` the replayed ``f`` reads is the user's history (with the traced parameters) for
``s <= t0`` and, after it, the traced continuous extension of the replayed step holding ``s``.
So the derivative follows every path by which a step depends on earlier ones: through the
state, and through the history interpolant of the steps its lags reach back into.

A step longer than a lag is iterated as the method of steps does it (first attempt from the
last step's interpolant continued, then from the step's own previous attempt), until two
successive end states agree to :data:`FIXEDPOINT_TOL` in the solve's error norm (the forward
solve's criterion), at most :data:`MAX_FIXEDPOINT_ITERS` times. The step sizes are those of
the forward solve, constants of the replay (as for ODEs).
"""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np

from autodiffeq.errors import UnsupportedCombination
from autodiffeq.sensitivity import ForwardRecord, GradientRequest

#: the fixed-point criterion of the method of steps (two successive end states agree to this
#: in units of the error norm), and its attempt limit
FIXEDPOINT_TOL = 1e-2
MAX_FIXEDPOINT_ITERS = 10


def _value(x: Any) -> np.ndarray:
    while hasattr(x, "_value"):
        x = x._value
    return np.asarray(x, dtype=np.float64)


def _unflatten(p: Any) -> Any:
    """``p_flat -> p`` in the user's structure (traceable)."""
    import autograd.numpy as anp

    from autodiffeq.replay import is_container, layout_of

    if is_container(p):
        layout = layout_of(p)
        return lambda flat: layout.unflatten(flat, anp.reshape)
    shape = np.shape(p)
    return lambda flat: anp.reshape(flat, shape) if shape else flat[0]


def replay_delay_equation(request: GradientRequest, record: ForwardRecord) -> Any:
    """``(u0_flat, p_flat) -> saved states (nsave, n)`` of the delay equation (module doc)."""
    import autograd.numpy as anp

    if request.callbacks:
        raise UnsupportedCombination(
            "delay equations with callbacks are not replayed (ReverseMode, ForwardMode)", ())
    prob = request.prob
    stepper = request.make_stepper()
    unflatten = _unflatten(prob.p)
    ts = record.ts
    made_by = record.extra.get("made_by")
    solvers = [stepper if made_by is None else stepper.components[c] for c in
               (made_by or [None] * (len(ts) - 1))]
    shape = tuple(prob.shape)
    n = int(np.prod(shape, dtype=np.int64))
    t0 = float(prob.tspan[0])
    wanted = set(int(i) for i in record.save_index)
    order = list(record.save_index)
    rtol = float(np.min(request.solve_options.get("rtol", 1e-3)))
    atol = float(np.min(request.solve_options.get("atol", 1e-6)))
    user_f, user_h = prob.f, prob.h
    starts = [float(t) for t in ts[:-1]]

    def evaluate(step: tuple, s: float) -> Any:
        t, dt, u, u_new, data, solver = step
        theta = np.asarray([(s - t) / dt])
        return solver.interpolate(theta, np.asarray([dt]), anp.reshape(u, (1, n)),
                                  anp.reshape(u_new, (1, n)), data[None, ...])[0]

    def replay(args: tuple[Any, Any]) -> Any:
        u, p_flat = args
        p = unflatten(p_flat) if request.n_p else prob.p
        steps: list[tuple] = []
        current: dict[str, Any] = {"trial": None, "inside": False, "u": u}

        def history(p_: Any, s: Any) -> Any:
            s = float(s)
            if s <= t0:
                return user_h(p, s)
            if steps and s <= steps[-1][0] + steps[-1][1]:
                i = min(bisect.bisect_right(starts, s) - 1, len(steps) - 1)
                return anp.reshape(evaluate(steps[i], s), shape)
            current["inside"] = True
            if current["trial"] is not None:
                return anp.reshape(evaluate(current["trial"], s), shape)
            if steps:  # the last step's interpolant continued
                return anp.reshape(evaluate(steps[-1], s), shape)
            return anp.reshape(current["u"], shape)

        def f_flat(y: Any, p_: Any, t: float) -> Any:
            return anp.reshape(user_f(anp.reshape(y, shape), history, p, t), (n,))

        saved = {0: u} if 0 in wanted else {}
        for k in range(len(ts) - 1):
            t, dt = float(ts[k]), float(ts[k + 1] - ts[k])
            solver = solvers[k]
            current.update(trial=None, inside=False, u=u)
            u_new, data = solver.functional_step_dense(f_flat, u, p_flat, t, dt)
            if current["inside"]:
                for _ in range(MAX_FIXEDPOINT_ITERS):
                    current["trial"] = (t, dt, u, u_new, data, solver)
                    u_prev = u_new
                    u_new, data = solver.functional_step_dense(f_flat, u, p_flat, t, dt)
                    a, b, c = _value(u_new), _value(u_prev), _value(u)
                    scale = atol + rtol * np.maximum(np.abs(c), np.abs(a))
                    if float(np.sqrt(np.mean(((a - b) / scale) ** 2))) <= FIXEDPOINT_TOL:
                        break
            steps.append((t, dt, u, u_new, data, solver))
            u = u_new
            if k + 1 in wanted:
                saved[k + 1] = u
        return anp.stack([saved[int(i)] for i in order])

    return replay
