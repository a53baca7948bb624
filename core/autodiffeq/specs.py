"""Frozen descriptions of what plugins register: solvers, backends, sensitivity methods and
ensemble executors.

Capabilities are data on these specs. The registry, the compatibility check, the default
algorithm choice and the conformance kit read them; nothing is special-cased by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

PROBLEM_TYPES = ("ODE", "SDE", "DDE")

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class SolverSpec:
    """A registered solver (one method of one family).

    Attributes:
        name: the name users pass as ``alg`` (``"Tsit5"``).
        factory: ``factory(rhs, backend, **options) -> Stepper`` (see :mod:`autodiffeq.stepper`).
        family: the solver family (``"explicit_rk"``).
        order: classical order of the method.
        adaptive: whether the method has an error estimate (adaptive stepping).
        error_order: order of the embedded solution used for the error estimate.
        dense_order: order of the dense output ``sol(t)``.
        fsal: first-same-as-last.
        stiff: suited to stiff problems (A-/L-stable, implicit or Rosenbrock).
        problem_types: problem kinds the solver integrates (``"ODE"``, ``"SDE"``, ``"DDE"``).
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
    order: int = 1
    adaptive: bool = False
    error_order: int | None = None
    dense_order: int = 1
    fsal: bool = False
    stiff: bool = False
    problem_types: tuple[str, ...] = ("ODE",)
    mass_matrix: bool = False
    needs_jacobian: bool = False
    backends: tuple[str, ...] | None = None
    requires: tuple[str, ...] = ()
    components: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    default_priority: int = 0
    expected_failures: Mapping[str, str] = field(
        default_factory=lambda: _EMPTY, hash=False, compare=False
    )
    description: str = ""
    reference: str = ""
    plugin: str = ""
    distribution: str = ""
    version: str = ""

    kind = "solver"

    def with_provenance(self, plugin: str, distribution: str, version: str) -> SolverSpec:
        return replace(self, plugin=plugin, distribution=distribution, version=version)

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
    probe: Callable[[], str | None] = field(default=lambda: None)
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
    """A registered ensemble executor (``"serial"``, ``"threads"``, ``"vectorized"``, ...)."""

    name: str
    factory: Callable[..., Any]
    backends: tuple[str, ...] | None = None
    description: str = ""
    plugin: str = ""
    distribution: str = ""
    version: str = ""

    kind = "ensemble"

    def with_provenance(self, plugin: str, distribution: str, version: str) -> EnsembleSpec:
        return replace(self, plugin=plugin, distribution=distribution, version=version)


Spec = SolverSpec | BackendSpec | SensitivitySpec | EnsembleSpec

__all__ = ["SolverSpec", "BackendSpec", "SensitivitySpec", "EnsembleSpec", "PROBLEM_TYPES"]
