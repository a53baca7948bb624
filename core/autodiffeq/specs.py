"""Frozen descriptions of what plugins register: solvers, backends, sensitivity methods and
ensemble executors.

Capabilities are data on these specs. The registry, the compatibility check, the default
algorithm choice and the conformance kit read them; nothing is special-cased by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

#: the problem types the built-in plugins know (listings; the registry's problem-type specs
#: are the authority)
PROBLEM_TYPES = ("ODE", "SDE", "DDE")



class FrozenMapping(Mapping[str, str]):
    """A read-only mapping that pickles (specs travel to worker processes and Dask)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, str] | None = None) -> None:
        self._data = dict(data or {})

    def __getitem__(self, key: str) -> str:
        return self._data[key]

    def __iter__(self) -> Any:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"FrozenMapping({self._data!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenMapping, (self._data,))


def _no_expected_failures() -> FrozenMapping:
    return FrozenMapping()


@dataclass(frozen=True)
class SolverSpec:
    """A registered solver (one method of one family).

    Attributes:
        name: the name users pass as ``alg`` (``"Tsit5"``).
        factory: ``factory(rhs, backend, **options) -> Stepper`` (see :mod:`autodiffeq.stepper`).
        family: the solver family (``"explicit_rk"``).
        order: classical order of the method (for stochastic solvers the strong order; a
            float where it is fractional, e.g. 0.5 or 1.5).
        weak_order: for stochastic solvers, the weak order (``None`` otherwise).
        adaptive: whether the method has an error estimate (adaptive stepping).
        error_order: order of the embedded solution used for the error estimate.
        dense_order: order of the dense output ``sol(t)``.
        fsal: first-same-as-last.
        stiff: suited to stiff problems (A-/L-stable, implicit or Rosenbrock).
        problem_types: problem kinds the solver integrates (``"ODE"``, ``"SDE"``, ``"DDE"``).
        noise_types: for stochastic solvers, the noise kinds it handles (``"diagonal"``,
            ``"scalar"``, ``"additive"``, ``"general"``).
        interpretations: for stochastic solvers, the stochastic integrals it approximates
            (``"ito"``, ``"stratonovich"``).
        strong_orders: for stochastic solvers, the strong order per noise kind where it
            differs from ``order`` (Euler–Maruyama: ``{"additive": 1.0}``).
        composite: it runs other registered solvers (its stepper lists them in
            ``components`` and sets ``last_component``), as ``AutoTsit5Rodas5P`` does.
        mass_matrix: whether a (non-identity) mass matrix is supported.
        needs_jacobian: whether it uses ``df/du``.
        backends: names of the backends it runs on, or ``None`` for every backend.
        requires: backend capabilities it needs (``"lu"``, ``"sparse"``, ...).
        components: names of other registered solvers it runs (a composite such as
            ``AutoTsit5Rodas5P``); a registry without one of them reports it incompatible
            (so the default choice passes it over).
        options: names of solver options (``solve(..., name=value)``) it accepts.
        default_priority: among solvers of equal suitability, the default choice prefers the
            highest; 0 means "never chosen by default".
        expected_failures: conformance checks this solver is declared to fail, mapped to why.
        description, reference: prose and the literature source.
        plugin, distribution, version: filled in by the registry (provenance).
    """

    name: str
    factory: Callable[..., Any]
    family: str = ""
    order: float = 1
    adaptive: bool = False
    error_order: float | None = None
    dense_order: int = 1
    fsal: bool = False
    stiff: bool = False
    problem_types: tuple[str, ...] = ("ODE",)
    weak_order: float | None = None
    noise_types: tuple[str, ...] = ()
    interpretations: tuple[str, ...] = ()
    strong_orders: Mapping[str, float] = field(
        default_factory=_no_expected_failures, hash=False, compare=False
    )
    composite: bool = False
    mass_matrix: bool = False
    needs_jacobian: bool = False
    backends: tuple[str, ...] | None = None
    requires: tuple[str, ...] = ()
    components: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    default_priority: int = 0
    expected_failures: Mapping[str, str] = field(
        default_factory=_no_expected_failures, hash=False, compare=False
    )
    description: str = ""
    reference: str = ""
    plugin: str = ""
    distribution: str = ""
    version: str = ""

    kind = "solver"

    def __post_init__(self) -> None:
        for name in ("expected_failures", "strong_orders"):
            value = getattr(self, name)
            if not isinstance(value, FrozenMapping):
                object.__setattr__(self, name, FrozenMapping(value))

    def with_provenance(self, plugin: str, distribution: str, version: str) -> SolverSpec:
        return replace(self, plugin=plugin, distribution=distribution, version=version)

    def strong_order(self, noise: str) -> float:
        """The strong order on noise of kind ``noise`` (stochastic solvers)."""
        return float(self.strong_orders.get(noise, self.order))

    def capabilities(self) -> dict[str, Any]:
        """The capability fields as a plain dict (for listings and JSON)."""
        return {
            "family": self.family,
            "order": self.order,
            "adaptive": self.adaptive,
            "error_order": self.error_order,
            "dense_order": self.dense_order,
            "fsal": self.fsal,
            "stiff": self.stiff,
            "problem_types": list(self.problem_types),
            "weak_order": self.weak_order,
            "noise_types": list(self.noise_types),
            "interpretations": list(self.interpretations),
            "strong_orders": dict(self.strong_orders),
            "composite": self.composite,
            "mass_matrix": self.mass_matrix,
            "needs_jacobian": self.needs_jacobian,
            "backends": None if self.backends is None else list(self.backends),
            "requires": list(self.requires),
            "components": list(self.components),
            "options": list(self.options),
            "expected_failures": dict(self.expected_failures),
        }


@dataclass(frozen=True)
class BackendSpec:
    """A registered array backend.

    Attributes:
        name: the name users pass as ``backend=``.
        factory: ``factory() -> Backend``; called only when the backend is used.
        probe: ``probe() -> str | None``: ``None`` when usable here, else why not. Must be
            cheap and must not import the heavy library unless it is installed.
        device: ``"cpu"`` or ``"gpu"``.
        capabilities: what the backend offers (``"lu"``, ``"sparse"``, ``"autograd"``, ...).
        testing_only: a backend meant for the conformance kit (``array_api_strict``).
    """

    name: str
    factory: Callable[[], Any]
    probe: Callable[[], str | None] = field(default_factory=lambda: _always_available)
    device: str = "cpu"
    capabilities: tuple[str, ...] = ()
    testing_only: bool = False
    description: str = ""
    plugin: str = ""
    distribution: str = ""
    version: str = ""

    kind = "backend"

    def with_provenance(self, plugin: str, distribution: str, version: str) -> BackendSpec:
        return replace(self, plugin=plugin, distribution=distribution, version=version)

    def unavailable_reason(self) -> str | None:
        """``None`` if the backend can be used on this machine, else the reason."""
        try:
            return self.probe()
        except Exception as exc:  # a probe must never break listing
            return f"probe failed: {type(exc).__name__}: {exc}"

    def capabilities_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "capabilities": list(self.capabilities),
            "testing_only": self.testing_only,
            "available": self.unavailable_reason() is None,
            "unavailable_reason": self.unavailable_reason(),
        }


@dataclass(frozen=True)
class SensitivitySpec:
    """A registered sensitivity (gradient) method.

    Attributes:
        name: the name users pass as ``sensealg=``.
        factory: ``factory(**options) -> sensitivity method object``.
        mode: ``"forward"`` or ``"reverse"``.
        problem_types, backends, solver_families: what it supports (``None``: any).
        stiff: whether it is usable on stiff problems.
        mass_matrix: whether it differentiates mass-matrix problems (DAEs in the form
            ``M u' = f``); a method that cannot is incompatible with them.
        options: names of the options its factory accepts.
        default_priority: ``sensealg=None`` picks, among compatible methods of the wanted
            mode (forward for few inputs, reverse for many), the highest; 0: never by default.
        autograd_families: solver families for which the method traces the step with
            autograd, so it needs a backend with the ``"autograd"`` capability there.
        events: whether it differentiates solves with callbacks (events), including the
            event times' dependence on ``u0`` and ``p``.
    """

    name: str
    factory: Callable[..., Any]
    mode: str = "reverse"
    problem_types: tuple[str, ...] = ("ODE",)
    backends: tuple[str, ...] | None = None
    solver_families: tuple[str, ...] | None = None
    stiff: bool = True
    mass_matrix: bool = True
    options: tuple[str, ...] = ()
    default_priority: int = 0
    autograd_families: tuple[str, ...] = ()
    events: bool = False
    description: str = ""
    reference: str = ""
    plugin: str = ""
    distribution: str = ""
    version: str = ""

    kind = "sensitivity"

    def with_provenance(self, plugin: str, distribution: str, version: str) -> SensitivitySpec:
        return replace(self, plugin=plugin, distribution=distribution, version=version)


@dataclass(frozen=True)
class EnsembleSpec:
    """A registered ensemble executor (``"serial"``, ``"threads"``, ``"vectorized"``, ...).

    Attributes:
        name: the name ``solve(..., ensemble=name)`` takes.
        factory: ``factory(**options) -> executor``, an object with ``run(job, batches)``
            (see :mod:`autodiffeq.ensemble`).
        options: the ``solve`` keywords that go to ``factory`` (``("client",)`` for Dask).
        traced: whether it solves in the calling thread, so that autograd can differentiate
            through it (a loss over an ensemble); others refuse a differentiated problem.
        backends: the backends it runs on (``None``: any).
        description: prose.
    """

    name: str
    factory: Callable[..., Any]
    options: tuple[str, ...] = ()
    traced: bool = False
    backends: tuple[str, ...] | None = None
    description: str = ""
    plugin: str = ""
    distribution: str = ""
    version: str = ""

    kind = "ensemble"

    def with_provenance(self, plugin: str, distribution: str, version: str) -> EnsembleSpec:
        return replace(self, plugin=plugin, distribution=distribution, version=version)


@dataclass(frozen=True)
class Requirement:
    """A capability a problem asks of a solver or sensitivity spec: the spec's field
    ``capability`` must be truthy (``value=True``) or contain ``value``; ``what`` names the
    feature in the incompatibility message ("a mass matrix (ODEProblem(mass_matrix=...))")."""

    capability: str
    what: str
    value: Any = True

    def met_by(self, spec: Any) -> bool:
        have = getattr(spec, self.capability, None)
        if self.value is True:
            return bool(have)
        return have is not None and self.value in have


@dataclass(frozen=True)
class ProblemTypeSpec:
    """A registered problem type and the adapter that prepares its solves.

    Attributes:
        name: the type's name (``"ODE"``), matched against ``SolverSpec.problem_types`` and
            the problem's ``problem_type`` attribute.
        problem_class: the problem class (``ODEProblem``).
        adapter: an object with ``requirements(prob)`` and ``sensitivity_requirements(prob)``
            (tuples of :class:`Requirement`), ``traced(prob)`` (whether autograd is
            differentiating its inputs) and ``prepare(request)`` (the right-hand-side terms,
            initial state and first derivative for the driver: see
            :mod:`autodiffeq.ode_adapter` for the ODE one).
        description: prose.
        wraps: problem types whose solvers also solve this one through the adapter (a
            delay equation's method of steps runs any ODE solver with dense output:
            ``("ODE",)``); the adapter's ``requirements`` say what it needs of them.
        options: names of :func:`autodiffeq.solve` options that only this problem type
            takes (``("brownian",)`` for SDEs); the request keeps their values in
            ``SolveRequest.extra`` and refuses them for other problem types.
        plugin, distribution, version: filled in by the registry (provenance).
    """

    name: str
    problem_class: type
    adapter: Any
    description: str = ""
    wraps: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    plugin: str = ""
    distribution: str = ""
    version: str = ""

    kind = "problem_type"

    @property
    def factory(self) -> Any:  # every spec has a callable factory: the problem class
        return self.problem_class

    def with_provenance(self, plugin: str, distribution: str, version: str) -> ProblemTypeSpec:
        return replace(self, plugin=plugin, distribution=distribution, version=version)


def _always_available() -> str | None:
    """The default backend probe: usable everywhere."""
    return None


Spec = SolverSpec | BackendSpec | SensitivitySpec | EnsembleSpec | ProblemTypeSpec

__all__ = ["SolverSpec", "BackendSpec", "SensitivitySpec", "EnsembleSpec", "ProblemTypeSpec",
           "Requirement", "PROBLEM_TYPES"]
