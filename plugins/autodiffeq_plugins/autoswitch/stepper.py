"""The stiffness-switching composite stepper.

Two component steppers share one right-hand side. While the non-stiff one is active it checks
stiffness every step (Hairer's estimate ``|dt| * rho`` against its stability boundary, where
``rho`` approximates the spectral radius of ``df/du`` from its last two stages); after
``maxstiffstep`` consecutive stability-bound steps the stiff component takes over. While the
stiff one is active its own estimate of ``rho`` (e.g. ``||J||_inf``) is compared with what the
explicit method could do at the current step size; after ``maxnonstiffstep`` consecutive steps
that the explicit method could take stably, it switches back (and never sooner than
``maxstiffstep`` steps after the last switch: hysteresis).

A switch re-initialises the incoming component at the current point with one evaluation of
``f``. Each step's dense-output data is tagged with the component that made it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from autodiffeq.backend import Backend
from autodiffeq.errors import UnknownName, UnsupportedCombination
from autodiffeq.stepper import RHS, Stepper

NONSTIFF, STIFF = 0, 1


class AutoSwitchStepper(Stepper):
    """Runs ``nonstiff`` or ``stiff`` (registered solver names), switching on stiffness."""

    def __init__(
        self,
        nonstiff: str,
        stiff: str,
        rhs: RHS,
        backend: Backend,
        *,
        maxstiffstep: int = 10,
        maxnonstiffstep: int = 3,
        jac_mode: str = "auto",
    ) -> None:
        super().__init__(rhs, backend)
        registry = rhs.registry
        if registry is None:
            import autodiffeq

            registry = autodiffeq.registry()
        try:
            ns_spec = registry.solver(nonstiff)
            st_spec = registry.solver(stiff)
        except UnknownName as exc:
            raise UnsupportedCombination(
                f"the auto-switching solver needs the registered solvers {nonstiff!r} and "
                f"{stiff!r}: {exc}"
            ) from None
        self.components = (
            ns_spec.factory(rhs, backend, stiffness_detection=True, stiffness_check_every=1),
            st_spec.factory(rhs, backend, jac_mode=jac_mode),
        )
        boundary = self.components[NONSTIFF].stability_boundary
        if boundary is None:
            raise UnsupportedCombination(
                f"{nonstiff!r} declares no stability boundary, so stiffness cannot be detected"
            )
        self.boundary = 0.9 * boundary
        self.order = min(c.order for c in self.components)
        self.error_order = min(c.error_order or 0 for c in self.components)
        self.maxstiffstep = int(maxstiffstep)
        self.maxnonstiffstep = int(maxnonstiffstep)
        problem = rhs.problem
        self.active = STIFF if getattr(problem, "mass_matrix", None) is not None else NONSTIFF
        self.stepped = self.active
        self._count = 0
        self._since_switch = 0
        self._dt = 0.0
        self.switches: list[tuple[float, str]] = []
        self._nf_before = 0
        # dense data of both components is padded to one height (tag row + stages)
        self._heights = tuple(int(c.dense_data().shape[0]) for c in self.components)
        self._height = max(self._heights)

    # the driver reads nf; keep it the sum of the components' counts plus our own evaluations
    def _sync_counts(self) -> None:
        self.nf = self._nf_before + sum(c.nf for c in self.components)
        for key in ("njac", "nfactor", "nlinsolve"):
            total = sum(c.stats.get(key, 0) for c in self.components)
            if total:
                self.stats[key] = total

    def init(self, t0: float, u0: Any, f0: Any) -> None:
        self.components[self.active].init(t0, u0, f0)
        self._initialised = {self.active}

    def step(self, t: float, u: Any, dt: float) -> tuple[Any, Any]:
        self.stepped = self.active
        self._dt = dt
        out = self.components[self.active].step(t, u, dt)
        self._sync_counts()
        return out

    def accept(self, t_new: float, u_new: Any) -> None:
        comp = self.components[self.active]
        comp.accept(t_new, u_new)
        self._since_switch += 1
        if self.active == NONSTIFF:
            ratio = getattr(comp, "stiffness_ratio", None)
            stiff_step = ratio is not None and ratio > 1.0
            self._count = self._count + 1 if stiff_step else 0
            if self._count >= self.maxstiffstep:
                self._switch(STIFF, t_new, u_new)
        else:
            rho = comp.eigen_estimate
            if rho is not None and self._since_switch >= self.maxstiffstep:
                explicit_ok = abs(self._dt) * rho < self.boundary
                self._count = self._count + 1 if explicit_ok else 0
                if self._count >= self.maxnonstiffstep:
                    self._switch(NONSTIFF, t_new, u_new)
        self._sync_counts()

    def _switch(self, to: int, t: float, u: Any) -> None:
        f0 = self.rhs.f(u, t)
        self._nf_before += 1
        self.components[to].init(t, u, f0)
        self.active = to
        self._count = 0
        self._since_switch = 0
        self.switches.append((t, "stiff" if to == STIFF else "nonstiff"))

    # ------------------------------------------------------------------ dense output
    def dense_data(self) -> Any:
        xp = self.xp
        data = self.components[self.stepped].dense_data()
        tag = xp.full((1, data.shape[1]), float(self.stepped), dtype=data.dtype)
        parts = [tag, data]
        pad = self._height - data.shape[0]
        if pad:
            parts.append(xp.zeros((pad, data.shape[1]), dtype=data.dtype))
        return xp.concat(parts, axis=0)

    def complete_dense_data(self, t: float, dt: float, u: Any, data: Any) -> Any:
        xp = self.xp
        which = int(float(data[0, 0]))
        height = self._heights[which]
        inner = self.components[which].complete_dense_data(t, dt, u, data[1 : 1 + height, ...])
        if inner.shape[0] == height:
            return data
        parts = [data[:1, ...], inner]
        pad = self._height - inner.shape[0]
        if pad > 0:
            parts.append(xp.zeros((pad, data.shape[1]), dtype=data.dtype))
        return xp.concat(parts, axis=0)

    def interpolate(self, theta: Any, dt: Any, u0: Any, u1: Any, data: Any) -> Any:
        xp = self.xp
        tags = np.asarray(self.backend.to_host(data[:, 0, 0])).astype(int)
        out = None
        for which in (NONSTIFF, STIFF):
            rows = np.nonzero(tags == which)[0]
            if rows.size == 0:
                continue
            idx = xp.asarray(rows)
            rows_data = xp.take(data, idx, axis=0)
            values = self.components[which].interpolate(
                xp.take(theta, idx, axis=0), xp.take(dt, idx, axis=0),
                xp.take(u0, idx, axis=0), xp.take(u1, idx, axis=0),
                rows_data[:, 1 : 1 + self._heights[which], ...],
            )
            if rows.size == tags.size:
                return values
            if out is None:
                out = xp.zeros(u0.shape, dtype=u0.dtype)
            out[idx, ...] = values
        return out
