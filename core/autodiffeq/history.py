"""The dense history of a solve: the accepted steps, readable while the solve runs.

:class:`DenseHistory` holds, per accepted step, its start time, the states at both ends, the
stepper's interpolation data and (for a composite stepper) which component made it. It is
filled by the integration driver and can be evaluated at any time already passed during the
solve (the history lookup of a delay equation) and afterwards (``sol(t)``). A jump of the state
(an event's affect) is kept as a step boundary with two states: evaluation is right-continuous
there (at the event time it gives the state after the jump), except at the end of the solve.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import DenseOutputError

_EPS = float(np.finfo(np.float64).eps)


class DenseHistory:
    """Accepted steps of one solve (see the module docstring).

    Attributes:
        ts: step start times and the final time (host floats; a jump repeats a time).
        us: the states at those times (backend arrays; at a repeated time the second is the
            state after the jump).
        data: per step, the stepper's interpolation data (or ``None``); a jump has none.
        made_by: per step, the index of the composite's component that made it (``None`` for
            a plain stepper); ``-1`` marks a jump.
    """

    def __init__(self, stepper: Any, t0: float, u0: Any, tdir: float) -> None:
        self.stepper = stepper
        self.xp = stepper.xp
        self.composite = bool(getattr(stepper, "components", ()))
        self.tdir = tdir
        self.ts: list[float] = [t0]
        self.us: list[Any] = [u0]
        self.data: list[Any] = []
        self.made_by: list[int] | None = [] if self.composite else None
        self._completed: dict[int, Any] = {}
        self._stacked: tuple[int, Any] | None = None

    def __len__(self) -> int:
        return len(self.data)

    def append_step(self, t_new: float, u_new: Any, data: Any, component: int | None) -> None:
        self.ts.append(t_new)
        self.us.append(u_new)
        self.data.append(data)
        if self.made_by is not None:
            self.made_by.append(-1 if component is None else int(component))

    def append_jump(self, t: float, u_plus: Any) -> None:
        """The state jumps at ``t`` (the end of the last step) to ``u_plus``."""
        self.ts.append(t)
        self.us.append(u_plus)
        self.data.append(_JUMP)
        if self.made_by is not None:
            self.made_by.append(-1)

    @property
    def interval(self) -> tuple[float, float]:
        return float(self.ts[0]), float(self.ts[-1])

    def solver_of(self, i: int) -> Any:
        """The stepper (or composite component) that made step ``i``."""
        if self.made_by is None:
            return self.stepper
        return self.stepper.components[self.made_by[i]]

    def _states(self) -> Any:
        count = len(self.us)
        if self._stacked is None or self._stacked[0] != count:
            self._stacked = (count, self.xp.stack(self.us))
        return self._stacked[1]

    def _step_data(self, i: int) -> Any:
        got = self._completed.get(i)
        if got is None:
            data = self.data[i]
            if data is None:
                return None
            h = float(self.ts[i + 1] - self.ts[i])
            got = self.solver_of(i).complete_dense_data(float(self.ts[i]), h, self.us[i], data)
            self._completed[i] = got
        return got

    def __call__(self, t: np.ndarray) -> Any:
        """States at the host times ``t`` (1-D), as a backend array ``(len(t), n)``."""
        xp = self.xp
        if len(self.data) == 0:
            raise DenseOutputError("sol(t): the solve made no step, there is nothing to "
                                   "interpolate")
        ts = np.asarray(self.ts, dtype=np.float64)
        t0, t1 = float(ts[0]), float(ts[-1])
        lo, hi = min(t0, t1), max(t0, t1)
        slack = 64 * _EPS * max(abs(t0), abs(t1), 1.0)
        bad = (t < lo - slack) | (t > hi + slack) | ~np.isfinite(t)
        if bad.any():
            first = float(t[np.argmax(bad)])
            raise DenseOutputError(
                f"sol(t): t={first!r} is outside the solved interval [{t0}, {t1}]"
            )
        t = np.clip(t, lo, hi)
        key = self.tdir * ts
        idx = np.searchsorted(key, self.tdir * t, side="right") - 1
        idx = np.clip(idx, 0, len(ts) - 2)
        # a jump is a zero-length step: at its time, the step after it (right-continuous);
        # a solve that ended on a jump (a terminal event with an affect) gives the state
        # after it at its final time
        is_jump = np.asarray([self.data[i] is _JUMP for i in idx.tolist()], dtype=bool)
        end_jump = None
        if is_jump.any():
            idx = np.where(is_jump, idx - 1, idx)
            if self.data[-1] is _JUMP:
                end_jump = t == ts[-1]
        h = ts[idx + 1] - ts[idx]
        theta = (t - ts[idx]) / h
        states = self._states()
        dtype = states.dtype
        if self.made_by is None:
            groups = [(self.stepper, np.arange(len(t)))]
        else:
            made = np.asarray(self.made_by, dtype=np.int64)[idx]
            groups = [(self.stepper.components[c], np.flatnonzero(made == c))
                      for c in np.unique(made).tolist()]
        pieces, order = [], []
        for solver, sel in groups:
            i_sel = idx[sel]
            uniq, inverse = np.unique(i_sel, return_inverse=True)
            rows = [self._step_data(int(i)) for i in uniq.tolist()]
            data = None
            if rows and rows[0] is not None:
                data = xp.take(xp.stack(rows), xp.asarray(inverse.reshape(-1)), axis=0)
            ii = xp.asarray(i_sel)
            values = solver.interpolate(
                xp.asarray(theta[sel], dtype=dtype), xp.asarray(h[sel], dtype=dtype),
                xp.take(states, ii, axis=0), xp.take(states, ii + 1, axis=0), data,
            )
            if len(groups) == 1:
                return _at_end(xp, values, end_jump, self.us[-1])
            pieces.append(values)
            order.append(sel)
        # back to the order of the query times
        perm = np.concatenate(order)
        inverse = np.empty_like(perm)
        inverse[perm] = np.arange(perm.size)
        values = xp.take(xp.concat(pieces, axis=0), xp.asarray(inverse), axis=0)
        return _at_end(xp, values, end_jump, self.us[-1])


#: interior Chebyshev nodes per step at which :meth:`DenseHistory.derivative` samples the
#: interpolant: its fit is exact for interpolants of degree below this (Vern7's is 7)
DERIVATIVE_NODES = 12


def _derivative(history: DenseHistory, t: np.ndarray, k: int) -> np.ndarray:
    """The ``k``-th time derivative of the dense output at host times ``t``: each step's
    interpolant (a polynomial in ``theta``) sampled at :data:`DERIVATIVE_NODES` interior
    Chebyshev nodes of the step, fitted exactly in the Chebyshev basis and differentiated
    (``d^k u/dt^k = h^-k d^k u/dtheta^k``). Works for every stepper, through the
    interpolation contract alone. Host array ``(len(t), n)``."""
    from numpy.polynomial import chebyshev as C

    ts = np.asarray(history.ts, dtype=np.float64)
    key = history.tdir * ts
    idx = np.clip(np.searchsorted(key, history.tdir * t, side="right") - 1, 0, len(ts) - 2)
    # a jump is a zero-length step: take the step before it
    idx = np.asarray([i - 1 if history.data[i] is _JUMP else i for i in idx.tolist()])
    m = DERIVATIVE_NODES
    nodes = 0.5 * (1.0 - np.cos((2 * np.arange(m) + 1) * np.pi / (2 * m)))  # in (0, 1)
    out = None
    for i in np.unique(idx).tolist():
        sel = np.flatnonzero(idx == i)
        t_a, h = float(ts[i]), float(ts[i + 1] - ts[i])
        samples = np.asarray(history.stepper.backend.to_host(history(t_a + h * nodes)),
                             dtype=np.float64)
        coef = C.chebfit(2.0 * nodes - 1.0, samples, m - 1)  # x = 2 theta - 1
        deriv = C.chebder(coef, k) * (2.0 / h) ** k
        values = C.chebval(2.0 * (t[sel] - t_a) / h - 1.0, deriv).T
        if out is None:
            out = np.empty((len(t), samples.shape[1]))
        out[sel] = values.reshape(len(sel), -1)
    return out


def _at_end(xp: Any, values: Any, end_jump: np.ndarray | None, u_last: Any) -> Any:
    """``values`` with the rows at the final time of a solve that ended on a jump replaced by
    the state after the jump."""
    if end_jump is None or not end_jump.any():
        return values
    mask = xp.reshape(xp.asarray(end_jump), (len(end_jump), 1))
    return xp.where(mask, u_last[None, :], values)


class _Jump:
    """Marker of a jump in :attr:`DenseHistory.data`."""

    def __repr__(self) -> str:
        return "<jump>"


_JUMP = _Jump()
