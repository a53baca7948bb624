"""The result of a solve: saved times and states, dense output, retcode and statistics."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from .errors import DenseOutputError

_EPS = float(np.finfo(np.float64).eps)


@dataclass
class Stats:
    """Work counters of a solve (names may grow; also readable like a mapping).

    Attributes:
        nf: right-hand-side evaluations (including the validation call and Hairer's initial
            step estimate).
        nsteps: step attempts (``naccept + nreject``).
        naccept, nreject: accepted and rejected steps.
        njac, nfactor, nlinsolve: Jacobians, matrix factorisations and linear solves.
    """

    nf: int = 0
    nsteps: int = 0
    naccept: int = 0
    nreject: int = 0
    njac: int = 0
    nfactor: int = 0
    nlinsolve: int = 0

    def __getitem__(self, key: str) -> int:
        return getattr(self, key)

    def keys(self) -> list[str]:
        return [f.name for f in fields(self)]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.keys()}


class DenseOutput:
    """Piecewise interpolant over the accepted steps of a solve (evaluated vectorised).

    Holds the step boundaries ``ts`` (host, monotone), the states there (backend, (N+1, n))
    and each step's interpolation data; evaluation groups query times by step and calls the
    stepper's ``interpolate`` once. Data that a stepper computes lazily (Verner's extra stages)
    is completed per step on first use.
    """

    def __init__(self, stepper: Any, ts: list[float], us: list[Any], data: list[Any]) -> None:
        self.stepper = stepper
        self.xp = stepper.xp
        self.ts = np.asarray(ts, dtype=np.float64)
        self.us = self.xp.stack(us) if us else None
        self._data = data
        self._completed: dict[int, Any] = {}
        self.tdir = 1.0 if len(ts) < 2 or ts[-1] >= ts[0] else -1.0

    @property
    def interval(self) -> tuple[float, float]:
        return float(self.ts[0]), float(self.ts[-1])

    def _step_data(self, idx: np.ndarray) -> Any:
        xp = self.xp
        if self._data and self._data[0] is None:
            return None
        rows = []
        for i in idx.tolist():
            got = self._completed.get(i)
            if got is None:
                h = float(self.ts[i + 1] - self.ts[i])
                got = self.stepper.complete_dense_data(
                    float(self.ts[i]), h, self.us[i, ...], self._data[i]
                )
                self._completed[i] = got
            rows.append(got)
        return xp.stack(rows)

    def __call__(self, t: np.ndarray) -> Any:
        """States at the host times ``t`` (1-D), as a backend array (len(t), n)."""
        xp = self.xp
        t0, t1 = self.interval
        lo, hi = min(t0, t1), max(t0, t1)
        slack = 64 * _EPS * max(abs(t0), abs(t1), 1.0)
        bad = (t < lo - slack) | (t > hi + slack) | ~np.isfinite(t)
        if bad.any():
            first = float(t[np.argmax(bad)])
            raise DenseOutputError(
                f"sol(t): t={first!r} is outside the solved interval [{t0}, {t1}]"
            )
        t = np.clip(t, lo, hi)
        key = self.tdir * self.ts
        idx = np.searchsorted(key, self.tdir * t, side="right") - 1
        idx = np.clip(idx, 0, len(self.ts) - 2)
        h = self.ts[idx + 1] - self.ts[idx]
        theta = (t - self.ts[idx]) / h
        uniq, inverse = np.unique(idx, return_inverse=True)
        data_u = self._step_data(uniq)
        data = None if data_u is None else xp.take(data_u, xp.asarray(inverse), axis=0)
        dtype = self.us.dtype
        ii = xp.asarray(idx)
        u0 = xp.take(self.us, ii, axis=0)
        u1 = xp.take(self.us, ii + 1, axis=0)
        return self.stepper.interpolate(
            xp.asarray(theta, dtype=dtype), xp.asarray(h, dtype=dtype), u0, u1, data
        )


class Solution:
    """The solution of a differential equation.

    Attributes:
        t: 1-D NumPy array of the saved times.
        u: backend array of the saved states, shape ``(len(t), *u0.shape)``.
        retcode: ``"Success"``, ``"MaxIters"``, ``"DtLessThanMin"``, ``"Unstable"``, ...
        stats: :class:`Stats` work counters.
        alg: the :class:`~autodiffeq.specs.SolverSpec` used; ``prob``: the problem;
        backend: the :class:`~autodiffeq.backend.Backend` the arrays live on.
        sensealg: the sensitivity method of a differentiated solve (``None`` otherwise).

    Calling ``sol(t)`` interpolates: ``t`` a scalar gives an array of ``u0``'s shape, a 1-D
    array gives shape ``(len(t), *u0.shape)``. Available when solved with ``dense=True`` (the
    default when ``saveat`` is not given).
    """

    def __init__(
        self,
        t: np.ndarray,
        u: Any,
        retcode: str,
        stats: Stats,
        alg: Any,
        prob: Any,
        backend: Any,
        shape: tuple[int, ...],
        dense_output: DenseOutput | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.t = t
        self.u = u
        self.retcode = retcode
        self.stats = stats
        self.alg = alg
        self.prob = prob
        self.backend = backend
        self.shape = shape
        self.dense_output = dense_output
        self.options = dict(options or {})
        self.sensealg: str | None = None

    @property
    def success(self) -> bool:
        """``retcode == "Success"``."""
        return self.retcode == "Success"

    @property
    def dense(self) -> bool:
        return self.dense_output is not None

    def __call__(self, t: Any) -> Any:
        _refuse_traced_time(t)
        if self.dense_output is None:
            raise DenseOutputError(
                "this solution has no dense output: solve with dense=True (the default "
                "when saveat is not given) to call sol(t)"
            )
        scalar = np.ndim(t) == 0
        try:
            times = np.asarray(t, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise DenseOutputError(f"sol(t): t must be a number or 1-D array, got {t!r}") from None
        if np.ndim(t) > 1:
            raise DenseOutputError(f"sol(t): t must be a scalar or 1-D, got shape {np.shape(t)}")
        values = self.dense_output(times)
        xp = self.backend.xp
        if scalar:
            return xp.reshape(values[0, ...], self.shape)
        return xp.reshape(values, (times.shape[0], *self.shape))

    def __len__(self) -> int:
        return len(self.t)

    def __repr__(self) -> str:
        name = getattr(self.alg, "name", self.alg)
        span = f"[{self.t[0]:g}, {self.t[-1]:g}]" if len(self.t) else "[]"
        return (
            f"Solution(retcode={self.retcode!r}, alg={name!r}, {len(self.t)} saved points "
            f"in t={span}, nf={self.stats.nf}, nsteps={self.stats.nsteps})"
        )


def _is_close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-300)


def _refuse_traced_time(t: Any) -> None:
    """Derivatives with respect to the time argument of ``sol(t)`` are not offered."""
    from .validation import is_traced

    if is_traced(t) or (isinstance(t, (list, tuple)) and any(is_traced(x) for x in t)):
        from .errors import UnsupportedCombination

        raise UnsupportedCombination(
            "sol(t) is not differentiable with respect to t (only with respect to u0 and p); "
            "for du/dt evaluate f(sol(t), p, t)",
            (),
        )
