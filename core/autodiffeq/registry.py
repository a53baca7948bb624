"""The plugin registry, built on pluggy.

A :class:`Registry` owns one ``pluggy.PluginManager("autodiffeq")``. Plugins come from the
entry-point group ``"autodiffeq"`` (built-in and third-party alike) or are registered by hand
with :meth:`Registry.register_plugin`. Loading is lazy (nothing is imported until the catalogue
is first needed) and guarded (a plugin that fails to import or register is skipped with a
warning and reported by :meth:`Registry.failed_plugins`; ``strict=True`` re-raises instead).
"""

from __future__ import annotations

import importlib
import importlib.metadata as importlib_metadata
import logging
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .errors import (
    BackendUnavailable,
    DuplicateName,
    PluginError,
    UnknownName,
    UnsupportedCombination,
)
from .specs import (
    BackendSpec,
    EnsembleSpec,
    ProblemTypeSpec,
    Requirement,
    SensitivitySpec,
    SolverSpec,
)

logger = logging.getLogger("autodiffeq.registry")

_SPEC_TYPES = {
    "solver": SolverSpec,
    "backend": BackendSpec,
    "sensitivity": SensitivitySpec,
    "ensemble": EnsembleSpec,
    "problem_type": ProblemTypeSpec,
}

#: the problem types the core itself provides, as ``"module:attribute"`` of a
#: :class:`ProblemTypeSpec` (imported when the catalogue is first built). Plugins add theirs
#: through the hook ``autodiffeq_register_problem_types``, so a new problem type (SDE, DDE,
#: ...) touches no core module.
CORE_PROBLEM_TYPES = ("autodiffeq.ode_adapter:ODE_PROBLEM_TYPE",)


class PluginLoadWarning(UserWarning):
    """A plugin could not be loaded or registered and was skipped."""


@dataclass(frozen=True)
class FailedPlugin:
    """A plugin that was skipped, with the error that stopped it."""

    name: str
    distribution: str
    version: str
    phase: str  # "import" or "register"
    error: str


@dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin and what it registered."""

    name: str
    distribution: str
    version: str
    registered: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Compatibility:
    """The answer of :meth:`Registry.compatible`: truthy when the combination works."""

    ok: bool
    reason: str = ""
    alternatives: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.ok

    def raise_if_incompatible(self) -> None:
        if not self.ok:
            raise UnsupportedCombination(self.reason, self.alternatives)


def _problem_type(problem: Any) -> str | None:
    if problem is None:
        return None
    if isinstance(problem, str):
        return problem
    return getattr(problem, "problem_type", None)


class Registry:
    """A catalogue of solvers, backends, sensitivity methods and ensemble executors.

    Args:
        entry_points: load the plugins advertised in the entry-point group ``"autodiffeq"``.
            ``Registry(entry_points=False)`` gives an isolated, empty registry to which plugins
            are added with :meth:`register_plugin`.
        strict: re-raise plugin import and registration errors instead of skipping the
            plugin with a warning (for plugin authors' CI).
        plugins: plugin modules or objects to register immediately.
    """

    def __init__(
        self, entry_points: bool = True, *, strict: bool = False, plugins: Iterable[Any] = ()
    ) -> None:
        self._use_entry_points = entry_points
        self.strict = strict
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._lock = threading.RLock()
        self._entry_points_loaded = False
        self._catalogue: dict[str, dict[str, Any]] | None = None
        self._failed: list[FailedPlugin] = []
        self._register_failures: list[FailedPlugin] = []
        self._provenance: dict[str, tuple[str, str]] = {}
        self._direct: dict[str, dict[str, Any]] = {kind: {} for kind in _SPEC_TYPES}
        self._backend_instances: dict[str, Any] = {}
        for plugin in plugins:
            self.register_plugin(plugin)

    # ------------------------------------------------------------------ plugins
    def register_plugin(self, plugin: Any, name: str | None = None) -> str:
        """Register a plugin (a module or object with ``@hookimpl`` functions).

        ``name`` defaults to pluggy's choice (a module's full name, an object's id). Returns
        the plugin's name. Its specs are collected the next time the catalogue is read; a spec
        name already taken is then refused: :class:`DuplicateName` in a strict registry, a
        :class:`PluginLoadWarning` (and the later plugin's specs skipped) otherwise.
        """
        with self._lock:
            plugin_name = self._pm.register(plugin, name=name)
            if plugin_name is None:
                raise PluginError(f"plugin {name or plugin!r} is blocked or already registered")
            if plugin_name not in self._provenance:
                self._provenance[plugin_name] = _distribution_of(plugin)
            self._catalogue = None
            self._backend_instances.clear()
            return plugin_name

    def unregister_plugin(self, name: str) -> None:
        """Remove a plugin and everything it registered."""
        with self._lock:
            if not self._pm.has_plugin(name):
                raise UnknownName("plugin", name, [n for n, _ in self._pm.list_name_plugin()])
            self._pm.unregister(name=name)
            self._catalogue = None
            self._backend_instances.clear()

    def register(self, spec: Any) -> None:
        """Register one spec directly (outside any plugin); duplicates raise at once."""
        kind = _kind_of(spec)
        with self._lock:
            catalogue = self._ensure_catalogue()
            if spec.name in catalogue[kind]:
                other = catalogue[kind][spec.name]
                raise DuplicateName(
                    f"{kind} {spec.name!r} is already registered by plugin {other.plugin!r} "
                    f"(distribution {other.distribution or 'unknown'}); refusing the second "
                    "registration by direct Registry.register()"
                )
            spec = spec.with_provenance("<direct>", "", "")
            _validate_spec(spec)
            self._direct[kind][spec.name] = spec
            catalogue[kind][spec.name] = spec

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded or not self._use_entry_points:
            return
        # marked loaded only once every entry point has been tried: a failure that escapes
        # (a PluginLoadWarning turned into an error) leaves the next call to try again and
        # fail the same way, rather than find a half-loaded catalogue
        self._load_each_entry_point()
        self._entry_points_loaded = True

    def _load_each_entry_point(self) -> None:
        for ep in importlib_metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else ""
            dist_version = dist.version if dist is not None else ""
            if self._pm.has_plugin(ep.name):
                continue
            try:
                module = ep.load()
                self._pm.register(module, name=ep.name)
            except Exception as exc:
                failure = FailedPlugin(ep.name, dist_name, dist_version, "import", _describe(exc))
                if self.strict:
                    raise PluginError(
                        f"plugin {ep.name!r} (distribution {dist_name}) failed to load: "
                        f"{failure.error}"
                    ) from exc
                if all(f.name != failure.name for f in self._failed):
                    self._failed.append(failure)
                warnings.warn(
                    f"autodiffeq plugin {ep.name!r} from distribution {dist_name!r} failed to "
                    f"load and was skipped: {failure.error}",
                    PluginLoadWarning,
                    stacklevel=4,
                )
                continue
            self._provenance[ep.name] = (dist_name, dist_version)

    def _ensure_catalogue(self) -> dict[str, dict[str, Any]]:
        catalogue = self._catalogue
        if catalogue is not None:
            return catalogue
        with self._lock:
            if self._catalogue is not None:
                return self._catalogue
            self._load_entry_points()
            self._check_pending()
            catalogue = {kind: dict(self._direct[kind]) for kind in _SPEC_TYPES}
            for ref in CORE_PROBLEM_TYPES:
                module_name, attr = ref.split(":")
                core_spec = getattr(importlib.import_module(module_name), attr)
                catalogue["problem_type"].setdefault(core_spec.name, core_spec)
            self._register_failures = []
            for kind, hook_name in hookspecs.REGISTRATION_HOOKS.items():
                hook = getattr(self._pm.hook, hook_name)
                for impl in hook.get_hookimpls():  # registration order
                    self._collect(kind, impl, catalogue)
            self._catalogue = catalogue
            return catalogue

    def _check_pending(self) -> None:
        """A hook implementation whose name matches no hook (``autodiffeq_register_solver``
        for ``..._solvers``) is an error in a strict registry and a warning otherwise."""
        try:
            self._pm.check_pending()
        except pluggy.PluginValidationError as exc:
            message = (f"a plugin implements an unknown hook: {exc} (the hooks are "
                       f"{', '.join(sorted(hookspecs.REGISTRATION_HOOKS.values()))})")
            if self.strict:
                raise PluginError(message) from exc
            warnings.warn(message, PluginLoadWarning, stacklevel=4)

    def _collect(self, kind: str, impl: Any, catalogue: dict[str, dict[str, Any]]) -> None:
        plugin_name = impl.plugin_name
        dist, version = self._provenance.get(plugin_name, ("", ""))
        collected: dict[str, Any] = {}

        def register(spec: Any) -> None:
            if not isinstance(spec, _SPEC_TYPES[kind]):
                raise PluginError(
                    f"plugin {plugin_name!r} passed {type(spec).__name__} to the {kind} "
                    f"registration hook; expected {_SPEC_TYPES[kind].__name__}"
                )
            spec = spec.with_provenance(plugin_name, dist, version)
            _validate_spec(spec)
            if spec.name in catalogue[kind] or spec.name in collected:
                other = catalogue[kind].get(spec.name) or collected[spec.name]
                raise DuplicateName(
                    f"{kind} {spec.name!r} is registered twice: by plugin {other.plugin!r} "
                    f"(distribution {other.distribution or 'unknown'}) and by plugin "
                    f"{plugin_name!r} (distribution {dist or 'unknown'})"
                )
            collected[spec.name] = spec

        try:
            impl.function(register=register)
        except Exception as exc:
            if self.strict:
                if isinstance(exc, (PluginError, DuplicateName)):
                    raise
                raise PluginError(
                    f"plugin {plugin_name!r} failed in {impl.function.__name__}: {_describe(exc)}"
                ) from exc
            failure = FailedPlugin(plugin_name, dist, version, "register", _describe(exc))
            self._register_failures.append(failure)
            warnings.warn(
                f"autodiffeq plugin {plugin_name!r} failed to register its {kind}s and they "
                f"were skipped: {failure.error}",
                PluginLoadWarning,
                stacklevel=5,
            )
            return
        catalogue[kind].update(collected)

    # ---------------------------------------------------------------- listings
    def solvers(self) -> list[SolverSpec]:
        """Every registered solver spec, in registration order."""
        return list(self._ensure_catalogue()["solver"].values())

    def backends(self) -> list[BackendSpec]:
        """Every registered backend spec (available on this machine or not)."""
        return list(self._ensure_catalogue()["backend"].values())

    def sensitivities(self) -> list[SensitivitySpec]:
        """Every registered sensitivity-method spec."""
        return list(self._ensure_catalogue()["sensitivity"].values())

    def ensembles(self) -> list[EnsembleSpec]:
        """Every registered ensemble-executor spec."""
        return list(self._ensure_catalogue()["ensemble"].values())

    def problem_types(self) -> list[ProblemTypeSpec]:
        """Every registered problem type (the core's ODE and those plugins add)."""
        return list(self._ensure_catalogue()["problem_type"].values())

    def problem_type_for(self, problem: Any) -> ProblemTypeSpec | None:
        """The registered problem type of ``problem`` (``None`` if it is not a problem)."""
        name = getattr(problem, "problem_type", None)
        spec = self._ensure_catalogue()["problem_type"].get(name) if isinstance(
            name, str) else None
        if spec is not None and isinstance(problem, spec.problem_class):
            return spec
        for spec in self.problem_types():
            if isinstance(problem, spec.problem_class):
                return spec
        return None

    def failed_plugins(self) -> list[FailedPlugin]:
        """Plugins skipped because they failed to import or to register."""
        self._ensure_catalogue()
        return [*self._failed, *self._register_failures]

    def plugins(self) -> list[PluginInfo]:
        """Loaded plugins with their distribution, version and registered names."""
        catalogue = self._ensure_catalogue()
        infos = []
        for name, _plugin in self._pm.list_name_plugin():
            dist, version = self._provenance.get(name, ("", ""))
            registered = {
                kind: tuple(s.name for s in specs.values() if s.plugin == name)
                for kind, specs in catalogue.items()
            }
            infos.append(PluginInfo(name, dist, version, registered))
        return infos

    def _get(self, kind: str, name: str) -> Any:
        specs = self._ensure_catalogue()[kind]
        try:
            return specs[name]
        except (KeyError, TypeError):
            raise UnknownName(kind, name, specs.keys()) from None

    def solver(self, name: str | SolverSpec) -> SolverSpec:
        """The solver spec called ``name``; unknown names raise :class:`UnknownName`."""
        if isinstance(name, SolverSpec):
            return name
        return self._get("solver", name)

    def backend(self, name: str | BackendSpec) -> BackendSpec:
        """The backend spec called ``name``."""
        if isinstance(name, BackendSpec):
            return name
        return self._get("backend", name)

    def sensitivity(self, name: str | SensitivitySpec) -> SensitivitySpec:
        """The sensitivity-method spec called ``name``."""
        if isinstance(name, SensitivitySpec):
            return name
        return self._get("sensitivity", name)

    def ensemble(self, name: str | EnsembleSpec) -> EnsembleSpec:
        """The ensemble-executor spec called ``name``."""
        if isinstance(name, EnsembleSpec):
            return name
        return self._get("ensemble", name)

    def available_backends(self) -> list[str]:
        """Names of the backends usable on this machine."""
        return [b.name for b in self.backends() if b.unavailable_reason() is None]

    def get_backend(self, name: str | BackendSpec) -> Any:
        """The :class:`~autodiffeq.backend.Backend` instance for ``name`` (created once)."""
        try:
            spec = self.backend(name)
        except UnknownName:
            raise UnknownName("backend", name, [b.name for b in self.backends()]) from None
        with self._lock:
            instance = self._backend_instances.get(spec.name)
            if instance is not None:
                return instance
            reason = spec.unavailable_reason()
            if reason is not None:
                usable = ", ".join(self.available_backends()) or "(none)"
                raise BackendUnavailable(
                    f"backend {spec.name!r} is registered but unavailable here: {reason}. "
                    f"Usable backends: {usable}."
                )
            try:
                instance = spec.factory()
            except Exception as exc:
                usable = ", ".join(b for b in self.available_backends() if b != spec.name)
                raise BackendUnavailable(
                    f"backend {spec.name!r} failed to start: {_describe(exc)}. "
                    f"Usable backends: {usable or '(none)'}."
                ) from exc
            self._backend_instances[spec.name] = instance
            return instance

    # ----------------------------------------------------------- compatibility
    def compatible(
        self,
        solver: str | SolverSpec,
        backend: str | BackendSpec | None = None,
        sensealg: str | SensitivitySpec | None = None,
        problem: Any = None,
        *,
        features: tuple[str, ...] = (),
    ) -> Compatibility:
        """Whether ``solver`` can run ``problem`` on ``backend`` with ``sensealg``.

        What the problem asks of the solver and of the sensitivity method is data: the
        :class:`~autodiffeq.specs.Requirement` tuples of its problem type's adapter.
        ``features`` names solve features the sensitivity method must declare (``"events"``
        when callbacks are given). Returns a :class:`Compatibility` that is truthy when it can,
        and otherwise carries the reason and registered alternatives. Unknown names raise
        :class:`UnknownName`.
        """
        spec = self.solver(solver)
        ptype = _problem_type(problem)
        adapter = None
        wraps: tuple[str, ...] = ()
        if problem is not None and not isinstance(problem, str):
            ptspec = self.problem_type_for(problem)
            adapter = None if ptspec is None else ptspec.adapter
            wraps = () if ptspec is None else tuple(ptspec.wraps)

        def alternatives(pred: Callable[[SolverSpec], bool]) -> tuple[str, ...]:
            return tuple(s.name for s in self.solvers() if s.name != spec.name and pred(s))

        def solves(s: SolverSpec) -> bool:  # the problem type, or one its adapter wraps
            return ptype in s.problem_types or any(w in s.problem_types for w in wraps)

        if ptype is not None and not solves(spec):
            return Compatibility(
                False,
                f"solver {spec.name!r} integrates {', '.join(spec.problem_types)} problems, "
                f"not {ptype} problems.",
                alternatives(solves),
            )
        if spec.components:
            names = {s.name for s in self.solvers()}
            absent = [c for c in spec.components if c not in names]
            if absent:
                return Compatibility(
                    False,
                    f"solver {spec.name!r} runs the solvers {list(spec.components)}, and this "
                    f"registry lacks {absent} (register the plugin that provides them).",
                    alternatives(lambda s: not s.components and (ptype is None or solves(s))),
                )
        reqs = () if adapter is None else tuple(adapter.requirements(problem))
        for req in reqs:
            if not req.met_by(spec):
                return Compatibility(
                    False,
                    f"solver {spec.name!r} does not support {req.what}.",
                    alternatives(lambda s: all(r.met_by(s) for r in reqs) and solves(s)),
                )
        if backend is not None:
            bspec = self.backend(backend)
            if spec.backends is not None and bspec.name not in spec.backends:
                return Compatibility(
                    False,
                    f"solver {spec.name!r} runs on backends {', '.join(spec.backends)}, "
                    f"not {bspec.name!r}.",
                    alternatives(lambda s: s.backends is None or bspec.name in s.backends),
                )
            missing = [cap for cap in spec.requires if cap not in bspec.capabilities]
            if missing:
                return Compatibility(
                    False,
                    f"solver {spec.name!r} needs backend capabilities {missing} that backend "
                    f"{bspec.name!r} lacks.",
                    alternatives(lambda s: all(c in bspec.capabilities for c in s.requires)),
                )
        if sensealg is not None:
            sens = self.sensitivity(sensealg)
            needs = () if adapter is None else tuple(adapter.sensitivity_requirements(problem))
            needs += tuple(_FEATURES[f] for f in features)
            reason = self._sensitivity_obstacle(spec, backend, sens, needs, ptype)
            if reason is not None:
                # the alternatives: the methods that would work here, all checks passed
                return Compatibility(False, reason, tuple(
                    s.name for s in self.sensitivities()
                    if s.name != sens.name
                    and self._sensitivity_obstacle(spec, backend, s, needs, ptype) is None
                ))
        return Compatibility(True)

    def _families(self, spec: SolverSpec) -> tuple[str, ...]:
        """The solver families a sensitivity method must handle for ``spec``: its own, or for
        a composite (``spec.composite``) those of its components."""
        if spec.composite and spec.components:
            return _component_families(self, spec)
        return (spec.family,)

    def _sensitivity_obstacle(
        self, spec: SolverSpec, backend: Any, sens: SensitivitySpec,
        needs: tuple[Requirement, ...], ptype: str | None,
    ) -> str | None:
        """Why ``sens`` cannot differentiate ``spec`` on ``backend`` for ``problem``, or
        ``None`` if it can."""
        if ptype is not None and ptype not in sens.problem_types:
            return f"sensitivity method {sens.name!r} does not support {ptype} problems."
        families = self._families(spec)
        if sens.solver_families is not None and not all(
                f in sens.solver_families for f in families):
            return (f"sensitivity method {sens.name!r} supports solver families "
                    f"{', '.join(sens.solver_families)}, not {spec.family!r} ({spec.name}).")
        for req in needs:
            if not req.met_by(sens):
                return f"sensitivity method {sens.name!r} does not differentiate {req.what}."
        if not sens.stiff and spec.stiff:
            return (f"sensitivity method {sens.name!r} is not suited to stiff problems (it is "
                    f"declared unstable on them), and {spec.name!r} is a stiff solver.")
        if backend is not None:
            bspec = self.backend(backend)
            if any(f in sens.autograd_families for f in families) and (
                    "autograd" not in bspec.capabilities):
                return (f"sensitivity method {sens.name!r} traces {spec.family} steps with "
                        f"autograd, which backend {bspec.name!r} does not support.")
            if sens.backends is not None and bspec.name not in sens.backends:
                return (f"sensitivity method {sens.name!r} runs on backends "
                        f"{', '.join(sens.backends)}, not {bspec.name!r}.")
        return None


#: solve features a sensitivity method must declare (``compatible(..., features=...)``)
_FEATURES = {
    "events": Requirement("events", "solves with callbacks (events)"),
}


def _component_families(registry: Registry, spec: SolverSpec) -> tuple[str, ...]:
    families: list[str] = []
    for name in spec.components:
        try:
            comp = registry.solver(name)
        except UnknownName:
            continue
        families.extend(registry._families(comp))
    return tuple(families)


def _kind_of(spec: Any) -> str:
    for kind, cls in _SPEC_TYPES.items():
        if isinstance(spec, cls):
            return kind
    raise PluginError(f"expected a SolverSpec, BackendSpec, SensitivitySpec, EnsembleSpec or "
                      f"ProblemTypeSpec, got {type(spec).__name__}")


def _validate_spec(spec: Any) -> None:
    where = f"{spec.kind} spec from plugin {spec.plugin!r}"
    if not isinstance(spec.name, str) or not spec.name.strip():
        raise PluginError(f"{where}: name must be a non-empty string, got {spec.name!r}")
    if not callable(spec.factory):
        raise PluginError(f"{where} {spec.name!r}: factory must be callable")
    if isinstance(spec, SolverSpec):
        if isinstance(spec.order, bool) or not isinstance(spec.order, (int, float)) or not (
                spec.order > 0):
            raise PluginError(f"{where} {spec.name!r}: order must be a positive number")
        if not isinstance(spec.dense_order, int) or spec.dense_order < 0:
            raise PluginError(f"{where} {spec.name!r}: dense_order must be an int >= 0")
        if spec.adaptive and spec.error_order is None:
            raise PluginError(f"{where} {spec.name!r}: an adaptive solver needs error_order")
        bad = [p for p in spec.problem_types if not isinstance(p, str) or not p]
        if bad or not spec.problem_types:
            raise PluginError(
                f"{where} {spec.name!r}: problem_types must be a non-empty tuple of names "
                f"(\"ODE\", \"SDE\", ...), got {spec.problem_types!r}"
            )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _distribution_of(plugin: Any) -> tuple[str, str]:
    module = getattr(plugin, "__module__", None) if not hasattr(plugin, "__file__") else None
    top = (getattr(plugin, "__name__", None) if module is None else module) or ""
    top = top.split(".")[0]
    if not top:
        return "", ""
    try:
        dists = importlib_metadata.packages_distributions().get(top, [])
        if dists:
            return dists[0], importlib_metadata.version(dists[0])
    except Exception:  # metadata lookups are best-effort provenance only
        pass
    return "", ""


_default_registry: Registry | None = None
_default_lock = threading.Lock()


def registry() -> Registry:
    """The default registry: every plugin installed in the environment (built lazily)."""
    global _default_registry
    if _default_registry is None:
        with _default_lock:
            if _default_registry is None:
                _default_registry = Registry(entry_points=True)
    return _default_registry


def reset_default_registry() -> None:
    """Forget the default registry (the next :func:`registry` call reloads entry points)."""
    global _default_registry
    with _default_lock:
        _default_registry = None
