"""The stiffness-switching composite stepper.

Two component steppers (registered solvers, looked up by name) share one right-hand side; one
of them is *active* and makes the steps. The design follows OrdinaryDiffEq.jl's ``AutoSwitch``
(Rackauckas & Nie, *DifferentialEquations.jl*, J. Open Res. Softw. 5 (2017); its
``AutoSwitch``/``is_stiff`` code): estimate the spectral radius ``rho`` of ``df/du``, compare
``|dt| rho`` with the explicit method's stability boundary on the negative real axis (Hairer &
Wanner, *Solving ODEs II*, IV.2; Shampine 1977), count the verdicts and switch when the count
passes ``maxstiffstep``. The rules below differ from OrdinaryDiffEq's where measurements on
Robertson's problem (ROBER), HIRES, OREGO and Van der Pol showed a need:

**The eigenvalue estimate.** While the non-stiff component is active, ``rho`` is the norm of the
directional derivative of ``f`` along the step's embedded error estimate ``err``::

    rho = ||f(u + h v) - f(u)|| / h,   v = err / ||err||,   h = sqrt(eps) max(1, ||u||)

at the new point (two evaluations of ``f``). When a stiff mode limits the step, it dominates the
error estimate, so this measures exactly that mode. Hairer's estimate from the last two stages,
``||k_s - k_{s-1}|| / ||Y_s - Y_{s-1}||`` (DOPRI5, OrdinaryDiffEq), measures along the stage
difference instead: on ROBER (``rtol=1e-6, atol=1e-12``) Tsit5 runs at ``|dt lambda| = 3.50``,
its boundary, while that estimate reads 2.6; the error direction reads 3.50.

**The stiffness test.** A check votes *stiff* when both

- ``|dt| rho > nonstifftol * boundary`` (default 0.2): the step is a sizeable fraction of what
  stability allows for the mode, and
- ``rho ||u|| / ||f(u)|| >= stiffness_ratio`` (default 50): the mode is much faster than the
  solution itself changes, i.e. it is a decayed transient that the explicit method only has to
  keep stable (the classical stiffness ratio; ``f(u)`` comes free with the estimate).

A fixed fraction of the boundary alone (OrdinaryDiffEq: 0.9) does not work: the step of an
error-controlled explicit method on a stiff problem settles where its *error estimator*, not
only its stability function, holds the stiff mode down, which is well inside the boundary at
tight tolerances (ROBER: Tsit5 at 0.87-1.0 of it for ``rtol`` 1e-3 to 1e-8 but 0.57 at 1e-10 and
0.25 at 1e-12; Vern7 at 0.65 for 1e-10), while accuracy-limited steps of non-stiff problems
reach 0.7-1.4 of it at loose tolerances (Lotka-Volterra, Brusselator, Lorenz at ``rtol=1e-2``).
The stiffness ratio separates the two: on six non-stiff test problems (Lotka-Volterra, Van der
Pol mu = 1, Kepler, Brusselator, Lorenz, Arenstorf; ``rtol`` 1e-2 to 1e-10, Tsit5 and Vern7)
it stayed below 47 on every step and below 39 on every step with ``|dt| rho > 0.2 boundary``;
on the stiff ones (ROBER, HIRES, OREGO, Van der Pol mu = 1e3 and 1e6, Prothero-Robinson) it
exceeded 100 on nine steps in ten of the stiff stretch, and 1e3 to 1e7 on most.

**A decaying counter.** A stiff vote adds one to the count, any other check takes one off (not
below zero), so a run of stiff steps interrupted by an odd non-stiff one still switches, while
isolated stiff votes on a non-stiff problem die out. Checks are made every ``CHECK_EVERY``
accepted steps, and on every step while the count is positive or the last check voted stiff,
so a non-stiff solve pays two evaluations of ``f`` every few steps (7-8% more evaluations of
``f`` than plain Tsit5 on the non-stiff problems above). The rule this replaces (Hairer's
stage estimate, 0.9 of the boundary, ten *consecutive* stiff checks) switched on ROBER at
t = 1.8 for ``rtol=1e-6, atol=1e-14`` and at t = 23 for ``rtol=1e-8``; this one at t = 0.01 to
0.02 for every ``rtol`` from 1e-3 to 1e-12.

**Back to non-stiff, with hysteresis.** While the stiff component is active, its own estimate
(``eigen_estimate``: ``||J||_inf`` for the Rosenbrock family, an upper bound on the spectral
radius) says whether the explicit method would be stable at the current step: after
``maxnonstiffstep`` *consecutive* steps with ``|dt| rho < stifftol * boundary`` (default 0.2),
and not before the stiff component has made a minimum number of steps, the non-stiff component
resumes. That minimum starts at ``maxstiffstep`` and doubles whenever the composite comes back
to the stiff component within ``QUICK_RETURN * maxstiffstep`` explicit steps (exponential
back-off), so the number of switches in a stretch where both components are marginal grows
only logarithmically with its length. Problems with a mass matrix start stiff; the stiff
component gives no estimate there (the eigenvalues are those of ``M^{-1} J``), so they stay
stiff.

A switch re-initialises the incoming component at the current point with one evaluation of
``f``. The stepper is a composite in the core's sense: it lists its ``components`` and sets
``last_component`` to the one that made each step, so the driver records it per step and the
dense output and the discrete sensitivity methods hand each step to the component that made it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from autodiffeq.backend import Backend
from autodiffeq.errors import InvalidArgument, UnknownName, UnsupportedCombination
from autodiffeq.stepper import RHS, Stepper

NONSTIFF, STIFF = 0, 1

#: accepted steps between stiffness checks while nothing looks suspicious
CHECK_EVERY = 4
#: a return to the stiff component within this many times ``maxstiffstep`` explicit steps
#: counts as flip-flopping (see :meth:`AutoSwitchStepper._switch`)
QUICK_RETURN = 4


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidArgument(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _positive_float(value: Any, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{name} must be a positive number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(v) or v <= 0:
        raise InvalidArgument(f"{name} must be a positive number, got {value!r}")
    return v


class AutoSwitchStepper(Stepper):
    """Runs ``nonstiff`` or ``stiff`` (registered solver names), switching on stiffness.

    Options (names as OrdinaryDiffEq's ``AutoSwitch``; the module docstring gives the rules
    and the measurements behind the defaults):
        maxstiffstep: net stiff votes before switching to the stiff component; also the fewest
            steps the stiff component makes before it may hand back (default 10).
        maxnonstiffstep: consecutive steps the explicit method could take stably before
            switching back to it (default 3).
        nonstifftol: a check votes stiff only if ``|dt| rho > nonstifftol * boundary``
            (default 0.2) ...
        stiffness_ratio: ... and ``rho ||u|| / ||f(u)|| >= stiffness_ratio`` (default 50).
        stifftol: the stiff component hands back when ``|dt| rho < stifftol * boundary``
            (default 0.2).
        jac_mode: passed to the stiff component (how it gets ``df/du``).

    Attributes:
        names: the registered names of the (non-stiff, stiff) components.
        active: which component makes the next step (``NONSTIFF`` = 0, ``STIFF`` = 1).
        switches: ``(t, "stiff" | "nonstiff")`` for each switch, in order.
        eigen_estimate: the last estimate of the spectral radius of ``df/du``.
        stiffness_ratio: the last ``rho ||u|| / ||f(u)||`` measured while non-stiff.
    """

    def __init__(
        self,
        nonstiff: str,
        stiff: str,
        rhs: RHS,
        backend: Backend,
        *,
        maxstiffstep: int = 10,
        maxnonstiffstep: int = 3,
        nonstifftol: float = 0.2,
        stifftol: float = 0.2,
        stiffness_ratio: float = 50.0,
        jac_mode: str = "auto",
    ) -> None:
        super().__init__(rhs, backend)
        self.maxstiffstep = _positive_int(maxstiffstep, "maxstiffstep")
        self.maxnonstiffstep = _positive_int(maxnonstiffstep, "maxnonstiffstep")
        self.nonstifftol = _positive_float(nonstifftol, "nonstifftol")
        self.stifftol = _positive_float(stifftol, "stifftol")
        self.min_ratio = _positive_float(stiffness_ratio, "stiffness_ratio")
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
        # the composite estimates stiffness itself; the component's own test (and its
        # StiffnessWarning) would only cost time
        ns_options = {"stiffness_detection": False} if "stiffness_detection" in (
            ns_spec.options or ()
        ) else {}
        self.names = (ns_spec.name, st_spec.name)
        self.components = (
            ns_spec.factory(rhs, backend, **ns_options),
            st_spec.factory(rhs, backend, jac_mode=jac_mode),
        )
        boundary = self.components[NONSTIFF].stability_boundary
        if not boundary:
            raise UnsupportedCombination(
                f"{nonstiff!r} declares no stability boundary, so stiffness cannot be detected"
            )
        self.boundary = float(boundary)
        # the driver sizes the first step and the PI controller from these: the lower orders
        # are the safe choice for both components
        self.order = min(c.order for c in self.components)
        self.error_order = min(c.error_order or c.order - 1 for c in self.components)
        problem = rhs.problem
        self.active = STIFF if getattr(problem, "mass_matrix", None) is not None else NONSTIFF
        self.last_component = self.active
        self.switches: list[tuple[float, str]] = []
        self._stiff_count = 0
        self._nonstiff_count = 0
        self._since_switch = 0
        self._since_check = 0
        self._suspicious = False
        self._hold = self.maxstiffstep  # fewest steps of the stiff component before handing back
        #: the last stiffness ratio ``rho ||u|| / ||f(u)||`` measured while non-stiff
        self.stiffness_ratio: float | None = None
        self._t = 0.0
        self._u: Any = None
        self._dt = 0.0
        self._err: Any = None
        self._sqrt_eps = math.sqrt(float(np.finfo(backend.host_dtype(rhs.dtype)).eps))
        #: accepted steps between stiffness checks while nothing looks suspicious
        self.check_every = CHECK_EVERY

    # counters: the components count their own work; nf adds the composite's evaluations (the
    # stiffness estimates, the re-initialisation at a switch, and what the driver adds)
    @property  # type: ignore[override]
    def nf(self) -> int:
        components = self.__dict__.get("components", ())
        return self._own_nf + sum(c.nf for c in components)

    @nf.setter
    def nf(self, value: int) -> None:
        components = self.__dict__.get("components", ())
        if not components:
            self._own_nf = int(value)
        else:
            self._own_nf = int(value) - sum(c.nf for c in components)

    @property  # type: ignore[override]
    def stats(self) -> dict[str, int]:
        totals = dict(self._stats)
        for key in ("njac", "nfactor", "nlinsolve"):
            total = sum(c.stats.get(key, 0) for c in self.__dict__.get("components", ()))
            if total:
                totals[key] = total
        return totals

    @stats.setter
    def stats(self, value: dict[str, int]) -> None:
        self._stats = dict(value)

    def init(self, t0: float, u0: Any, f0: Any) -> None:
        self.components[self.active].init(t0, u0, f0)

    def step(self, t: float, u: Any, dt: float) -> tuple[Any, Any]:
        self.last_component = self.active
        self._t, self._u, self._dt = t, u, dt
        u_new, err = self.components[self.active].step(t, u, dt)
        self._err = err
        return u_new, err

    def accept(self, t_new: float, u_new: Any) -> None:
        self.components[self.active].accept(t_new, u_new)
        self._since_switch += 1
        if self.active == NONSTIFF:
            self._check_nonstiff(t_new, u_new)
        else:
            self._check_stiff(t_new, u_new)

    # ------------------------------------------------------------------ switching rules
    def _check_nonstiff(self, t_new: float, u_new: Any) -> None:
        """The decaying-counter test while the explicit component is active."""
        self._since_check += 1
        if not (self._stiff_count > 0 or self._suspicious or self._since_check >= self.check_every):
            return
        self._since_check = 0
        estimate = self._error_direction_estimate(t_new, u_new)
        if estimate is None:
            return
        rho, ratio = estimate
        self.eigen_estimate = rho
        self.stiffness_ratio = ratio
        stiff = ratio >= self.min_ratio and abs(self._dt) * rho > self.nonstifftol * self.boundary
        self._suspicious = stiff
        self._stiff_count = self._stiff_count + 1 if stiff else max(0, self._stiff_count - 1)
        if self._stiff_count >= self.maxstiffstep:
            self._switch(STIFF, t_new, u_new)

    def _check_stiff(self, t_new: float, u_new: Any) -> None:
        """``maxnonstiffstep`` consecutive steps at which the explicit method would be stable
        hand back, once the stiff component has made its minimum number of steps."""
        if self._since_switch < self._hold:
            return
        rho = self.components[STIFF].eigen_estimate
        if rho is None:
            return
        self.eigen_estimate = rho
        explicit_ok = abs(self._dt) * rho < self.stifftol * self.boundary
        self._nonstiff_count = self._nonstiff_count + 1 if explicit_ok else 0
        if self._nonstiff_count >= self.maxnonstiffstep:
            self._switch(NONSTIFF, t_new, u_new)

    def _error_direction_estimate(self, t: float, u: Any) -> tuple[float, float] | None:
        """``(rho, ratio)``: ``rho = ||J v||`` for the unit vector ``v`` along the last step's
        error estimate, by a forward difference of ``f`` at ``(t, u)``, and the stiffness
        ratio ``rho ||u|| / ||f(u)||`` (``None`` when there is no direction)."""
        err = self._err
        if err is None:
            return None
        xp = self.xp
        norm_err = math.sqrt(float(xp.sum(err * err)))
        if not (norm_err > 0.0 and math.isfinite(norm_err)):
            return None
        norm_u = math.sqrt(float(xp.sum(u * u)))
        if not math.isfinite(norm_u):
            return None
        h = self._sqrt_eps * max(1.0, norm_u)
        f = self.rhs.f
        f0 = xp.asarray(f(u, t), copy=True)  # a user's f may reuse its output buffer
        f1 = f(u + (h / norm_err) * err, t)
        self._own_nf += 2
        diff = f1 - f0
        rho = math.sqrt(float(xp.sum(diff * diff))) / h
        norm_f = math.sqrt(float(xp.sum(f0 * f0)))
        if not (math.isfinite(rho) and math.isfinite(norm_f)):
            return None
        ratio = rho * norm_u / norm_f if norm_f > 0.0 else math.inf
        return rho, ratio

    def _switch(self, to: int, t: float, u: Any) -> None:
        if to == STIFF:
            # back-off against flip-flopping: a return to the stiff component soon after it
            # handed over doubles how long it must run before it may hand over again
            quick = bool(self.switches) and self._since_switch < QUICK_RETURN * self.maxstiffstep
            self._hold = 2 * self._hold if quick else self.maxstiffstep
        f0 = self.rhs.f(u, t)
        self._own_nf += 1
        self.components[to].init(t, u, f0)
        self.active = to
        self._stiff_count = 0
        self._nonstiff_count = 0
        self._since_switch = 0
        self._since_check = 0
        self._suspicious = False
        self.switches.append((t, "stiff" if to == STIFF else "nonstiff"))

    # ------------------------------------------------------------------ dense output
    def dense_data(self) -> Any:
        """The interpolation data of the last step, as its component made it (the driver
        records which component that was, :attr:`last_component`)."""
        comp = self.components[self.last_component]
        data = comp.dense_data()
        if data is None:
            raise UnsupportedCombination(
                f"component {type(comp).__name__} of the auto-switching solver has no dense "
                "output"
            )
        return data

    def complete_dense_data(self, t: float, dt: float, u: Any, data: Any) -> Any:
        return self.components[self.last_component].complete_dense_data(t, dt, u, data)

    def interpolate(self, theta: Any, dt: Any, u0: Any, u1: Any, data: Any) -> Any:
        return self.components[self.last_component].interpolate(theta, dt, u0, u1, data)
