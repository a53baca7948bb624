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

    def __call__(self, t: Any, idxs: Any = None, deriv: int = 0) -> Any:
        """The dense output at ``t`` (a number: ``u0``'s shape; a 1-D array: ``(len(t),
        *u0.shape)``), or only the flat components ``idxs`` (an int or a sequence of them:
        the last axis is then those components). ``deriv=k`` gives the ``k``-th time
        derivative of the interpolant instead (each step's interpolating polynomial
        differentiated, :func:`autodiffeq.history._derivative`; as accurate as the dense
        output's order allows: ``du/dt`` of an order-4 interpolant is order 3)."""
        if deriv:
            values = self._derivative(t, deriv)
        else:
            values = self._dense(t)
        if idxs is None:
            return values
        return self._components(values, idxs, np.ndim(t) == 0)

    def _components(self, values: Any, idxs: Any, scalar: bool) -> Any:
        n = int(np.prod(self.shape, dtype=np.int64))
        try:
            index = np.asarray(idxs, dtype=np.int64)
        except (TypeError, ValueError):
            raise DenseOutputError(f"idxs must be an int or a sequence of ints, got {idxs!r}"
                                   ) from None
        if index.ndim > 1 or np.any(index < -n) or np.any(index >= n):
            raise DenseOutputError(f"idxs {idxs!r} is out of range for a state of {n} "
                                   f"components")
        xp = self.backend.xp
        flat = xp.reshape(values, (n,) if scalar else (-1, n))
        return flat[..., index] if index.ndim else flat[..., int(index)]

    def plot(self, idxs: Any = None, ax: Any = None, dense: bool = True, **kwargs: Any) -> Any:
        """The solution's components over time (matplotlib, extra ``plot``): the dense
        output on a fine grid when there is one (``dense=True``), the saved states as
        markers; ``idxs`` picks flat components. Returns the axes."""
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("Solution.plot needs matplotlib: pip install "
                              "'autodiffeq[plot]'") from exc
        n = int(np.prod(self.shape, dtype=np.int64))
        comps = list(range(n)) if idxs is None else list(np.atleast_1d(idxs))
        if ax is None:
            _, ax = plt.subplots()
        saved = np.asarray(self.backend.to_host(self.u), dtype=np.float64).reshape(len(self.t),
                                                                                  n)
        fine = None
        if dense and self.dense_output is not None and len(self.t) > 1:
            grid = np.linspace(self.t[0], self.t[-1], max(200, 4 * len(self.t)))
            fine = (grid, np.asarray(self.backend.to_host(self._dense(grid)),
                                     dtype=np.float64).reshape(len(grid), n))
        for c in comps:
            if fine is not None:
                line, = ax.plot(fine[0], fine[1][:, c], label=f"u[{c}]", **kwargs)
                ax.plot(self.t, saved[:, c], ".", color=line.get_color(), markersize=3)
            else:
                ax.plot(self.t, saved[:, c], ".-", label=f"u[{c}]", **kwargs)
        ax.set_xlabel("t")
        ax.legend()
        return ax

    def _derivative(self, t: Any, k: Any) -> Any:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise DenseOutputError(f"deriv must be a non-negative integer, got {k!r}")
        self._dense(t)  # the same checks of t and of the dense output
        from .history import _derivative

        scalar = np.ndim(t) == 0
        times = np.asarray(t, dtype=np.float64).reshape(-1)
        host = _derivative(self.dense_output, times, int(k))
        values = self.backend.asarray(host, dtype=self.u.dtype) if hasattr(self.u, "dtype") \
            else host
        xp = self.backend.xp
        if scalar:
            return xp.reshape(values[0, ...], self.shape)
        return xp.reshape(values, (times.shape[0], *self.shape))

    def _dense(self, t: Any) -> Any:
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
