"""The result of a solve: saved times and states, dense output, retcode and statistics."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from .errors import DenseOutputError
from .history import DenseHistory


@dataclass
class Stats:
    """Work counters of a solve (names may grow; also readable like a mapping).

    Attributes:
        nf: right-hand-side evaluations (including the validation call and Hairer's initial
            step estimate).
        nsteps: step attempts (``naccept + nreject``).
        naccept, nreject: accepted and rejected steps.
        njac, nfactor, nlinsolve: Jacobians, matrix factorisations and linear solves.
        extra: any further counters a stepper keeps (also readable as ``stats[name]`` and
            ``stats.name``).
    """

    nf: int = 0
    nsteps: int = 0
    naccept: int = 0
    nreject: int = 0
    njac: int = 0
    nfactor: int = 0
    nlinsolve: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def __getattr__(self, key: str) -> int:
        extra = self.__dict__.get("extra", {})
        if key in extra:
            return extra[key]
        raise AttributeError(f"Stats has no counter {key!r}")

    def __getitem__(self, key: str) -> int:
        if key in self.extra:
            return self.extra[key]
        if key == "extra" or key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def keys(self) -> list[str]:
        return [f.name for f in fields(self) if f.name != "extra"] + list(self.extra)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.keys()}


#: the dense output of a solve is its :class:`~autodiffeq.history.DenseHistory`
DenseOutput = DenseHistory


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
        t_events, u_events: per callback (``solve(..., callback=...)``, in the order given),
            the times it fired (1-D) and the states there before its affect
            (``(k, *u0.shape)``); empty lists for a solve without callbacks.
        W: for an SDE solve, the :class:`~autodiffeq.BrownianPath` it read (pass it as
            ``solve(..., brownian=sol.W)`` to solve again on the same noise); ``None``
            otherwise.

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
        self.t_events: list[Any] = []
        self.u_events: list[Any] = []
        self.W: Any = None

    @property
    def success(self) -> bool:
        """Whether the solve ended as asked: ``retcode`` is ``"Success"`` or ``"Terminated"``
        (a terminal callback ended it, as SciML counts it too)."""
        return self.retcode in ("Success", "Terminated")

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
