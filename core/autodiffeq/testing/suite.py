"""The conformance matrix: every check for every compatible (solver x backend) pair, and every
gradient check for every compatible (solver x sensitivity method x backend) triple.

:func:`conformance_cases` enumerates :class:`Case` objects from the registry's capabilities;
:func:`conformance_suite` turns them into one parametrised pytest test function, so a
third-party package needs a two-line test file::

    from autodiffeq.testing import conformance_suite
    test_my_plugin = conformance_suite(plugin="my_plugin")

A plugin's gradient cases are those of its solvers with every registered sensitivity method
and of its sensitivity methods with every registered solver (:mod:`.gradients`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..registry import Registry
from ..registry import registry as default_registry
from ..specs import SensitivitySpec, SolverSpec
from . import checks
from . import dde as dde_checks
from . import gradients as gradient_checks
from . import sde as sde_checks
from .problems import CONVERGENCE_PROBLEMS

#: solvers whose delay-equation checks also run on test-only backends in the fast run
DDE_FAST_SOLVERS = ("Tsit5", "Rodas5P")
#: SDE solvers whose checks also run on test-only backends in the default (fast) selection
SDE_FAST_SOLVERS = ("EM", "SRIW1")


@dataclass(frozen=True)
class Case:
    """One conformance check on one solver, backend (and problem or sensitivity method).

    ``slow`` cases belong to the exhaustive matrix: :func:`conformance_suite` marks them
    ``pytest.mark.slow``.
    """

    check: str
    solver: str
    backend: str
    problem: str = ""
    run: Callable[[], Any] = field(default=lambda: None, compare=False, repr=False)
    expected_failure: str | None = None
    sensitivity: str = ""
    slow: bool = False
    methods: tuple[str, ...] = ()  # the sensitivity methods a "grad-agree" case compares
    #: why the case cannot run here (its backend is registered but unavailable), else None
    unavailable: str | None = None
    #: the backend's device ("cpu", "gpu"): GPU cases carry pytest's ``gpu`` marker
    device: str = "cpu"

    @property
    def id(self) -> str:
        """``check-Solver-backend[-problem]``; gradient cases ``check-Solver-Sensitivity-backend``
        (``grad-fd-Tsit5-DiscreteAdjoint-numpy``) or, comparing methods,
        ``grad-agree-Solver-backend``."""
        parts = [self.check, self.solver] + ([self.sensitivity] if self.sensitivity else [])
        parts += [self.backend] + ([self.problem] if self.problem else [])
        return "-".join(parts)


def _expected(spec: SolverSpec, extra: Mapping[str, str], check: str, problem: str) -> str | None:
    for source in (extra, spec.expected_failures):
        for key in (f"{check}[{problem}]", check, f"{spec.name}:{check}",
                    f"{spec.name}:{check}[{problem}]"):
            if key in source:
                return source[key]
    return None


def _expected_gradient(
    solver: SolverSpec, extra: Mapping[str, str], check: str, sensitivity: str, case_id: str
) -> str | None:
    keys = (case_id, f"{solver.name}:{sensitivity}:{check}", f"{sensitivity}:{check}",
            f"{solver.name}:{check}", check)
    for source in (extra, solver.expected_failures):
        for key in keys:
            if key in source:
                return source[key]
    return None


def conformance_cases(
    registry: Registry | None = None,
    *,
    plugin: str | Iterable[str] | None = None,
    solvers: Iterable[str] | None = None,
    backends: Iterable[str] | None = None,
    expected_failures: Mapping[str, str] | None = None,
    gradients: bool | str = True,
    sensitivities: Iterable[str] | None = None,
    gradient_solvers: Iterable[str] | None = None,
    unavailable_devices: Iterable[str] = (),
) -> list[Case]:
    """Every applicable conformance case for the selected solvers on the usable backends.

    Args:
        registry: where to look (default: the default registry with all installed plugins).
        plugin: only solvers and sensitivity methods registered by this plugin (entry-point
            name) or these plugins.
        solvers: only these solver names.
        backends: only these backends (default: every backend available here).
        expected_failures: ``{"check": reason}``, ``{"check[problem]": reason}`` or
            ``{"Solver:check": reason}`` declared failures (in addition to each spec's own
            ``expected_failures``); they become strict xfails. Gradient cases are matched by
            their id (``"grad-fd-Tsit5-DiscreteAdjoint-numpy"``), ``"Solver:Sensitivity:check"``,
            ``"Sensitivity:check"``, ``"Solver:check"`` or ``"check"``.
        gradients: include the gradient cases (``True``), leave them out (``False``) or give
            only them (``"only"``).
        sensitivities: only these sensitivity methods in gradient cases.
        gradient_solvers: the solvers whose full gradient matrix is part of the fast run;
            the full-matrix cases of the others are marked ``slow`` (default:
            :func:`~autodiffeq.testing.gradients.representative_solvers`).
        unavailable_devices: also enumerate the cases of registered backends on these devices
            (``"gpu"``) that are unavailable here, from their declared capabilities; such a
            case carries the reason in :attr:`Case.unavailable` (the suite skips it with it),
            so a machine without a GPU lists every GPU case it does not run.
    """
    reg = registry if registry is not None else default_registry()
    extra = dict(expected_failures or {})
    plugins = {plugin} if isinstance(plugin, str) else (set(plugin) if plugin else None)
    wanted = set(solvers) if solvers is not None else None
    if gradients not in (True, False, "only"):
        raise ValueError(f"gradients must be True, False or 'only', got {gradients!r}")
    ode_solvers = [s for s in reg.solvers() if "ODE" in s.problem_types]
    specs = [
        s for s in ode_solvers
        if (plugins is None or s.plugin in plugins)
        and (wanted is None or s.name in wanted)
    ]
    if wanted is not None:
        missing = wanted - {s.name for s in reg.solvers()}
        if missing:
            raise LookupError(f"solvers {sorted(missing)} are not registered")
    if gradients == "only":
        specs = []
    devices = set(unavailable_devices)
    usable = [b for b in reg.backends()
              if b.unavailable_reason() is None or b.device in devices]
    if backends is not None:
        chosen = set(backends)
        usable = [b for b in usable if b.name in chosen]
    cases: list[Case] = []

    def add(check: str, spec: SolverSpec, backend: str, problem: str,
            fn: Callable[[], Any]) -> None:
        cases.append(Case(check, spec.name, backend, problem, fn,
                          _expected(spec, extra, check, problem)))

    for spec in specs:
        for bspec in usable:
            b = bspec.name
            if not reg.compatible(spec, b, None, "ODE"):
                add("unsupported", spec, b, "",
                    lambda s=spec, b=b: checks.check_unsupported(s, b, reg))
                continue
            for problem in CONVERGENCE_PROBLEMS:
                add("convergence", spec, b, problem.name,
                    lambda s=spec, b=b, p=problem: checks.check_convergence_order(s, b, p, reg))
            add("dense_order", spec, b, "logistic",
                lambda s=spec, b=b: checks.check_dense_order(s, b, registry=reg))
            if spec.adaptive:
                add("adaptive_tolerance", spec, b, "logistic",
                    lambda s=spec, b=b: checks.check_adaptive_tolerance(s, b, registry=reg))
            add("saveat", spec, b, "", lambda s=spec, b=b: checks.check_saveat(s, b, reg))
            add("backward", spec, b, "", lambda s=spec, b=b: checks.check_backward(s, b, reg))
            add("float32", spec, b, "", lambda s=spec, b=b: checks.check_float32(s, b, reg))
            add("events", spec, b, "oscillator",
                lambda s=spec, b=b: checks.check_events(s, b, reg))
            add("unsupported", spec, b, "",
                lambda s=spec, b=b: checks.check_unsupported(s, b, reg))
            if bspec.testing_only or bspec.device != "cpu":
                add("no_host_leak", spec, b, "",
                    lambda s=spec, b=b: checks.check_no_host_leak(s, b, reg))
            if dde_checks.dde_compatible(reg, spec, b):
                # delay equations through the method of steps; on test-only backends (they
                # prove the absence of host leaks) the exhaustive matrix runs all but two
                for check, fn in dde_checks.DDE_CHECKS.items():
                    cases.append(Case(
                        check, spec.name, b, "", lambda f=fn, s=spec, b=b: f(s, b, reg),
                        _expected(spec, extra, check, ""),
                        slow=bspec.testing_only and spec.name not in DDE_FAST_SOLVERS))
    sde_solvers = [s for s in reg.solvers() if "SDE" in s.problem_types
                   and (plugins is None or s.plugin in plugins)
                   and (wanted is None or s.name in wanted)] if gradients != "only" else []
    for spec in sde_solvers:
        for bspec in usable:
            b = bspec.name
            if not reg.compatible(spec, b, None, "SDE"):
                continue
            for check, fn in sde_checks.sde_checks_for(spec).items():
                cases.append(Case(
                    check, spec.name, b, "", lambda f=fn, s=spec, b=b: f(s, b, reg),
                    _expected(spec, extra, check, ""),
                    slow=bspec.testing_only and spec.name not in SDE_FAST_SOLVERS))
    if gradients:
        cases += _gradient_cases(
            reg, [s for s in ode_solvers if wanted is None or s.name in wanted],
            [b.name for b in usable], plugins, sensitivities, gradient_solvers, extra,
        )
    where = {b.name: (b.unavailable_reason(), b.device) for b in usable}
    return [replace(c, unavailable=where[c.backend][0], device=where[c.backend][1])
            if where[c.backend] != (None, "cpu") else c for c in cases]


def _gradient_cases(
    reg: Registry,
    solver_specs: list[SolverSpec],
    backends: list[str],
    plugins: set[str] | None,
    sensitivities: Iterable[str] | None,
    gradient_solvers: Iterable[str] | None,
    extra: Mapping[str, str],
) -> list[Case]:
    """The gradient cases (see :mod:`.gradients`) of every (solver, method, backend) triple
    in which the solver or the method belongs to the selected plugins."""
    wanted = set(sensitivities) if sensitivities is not None else None
    methods = [m for m in reg.sensitivities() if wanted is None or m.name in wanted]
    if wanted is not None:
        missing = wanted - {m.name for m in methods}
        if missing:
            raise LookupError(f"sensitivity methods {sorted(missing)} are not registered")

    def selected(solver: SolverSpec, method: SensitivitySpec) -> bool:
        return plugins is None or solver.plugin in plugins or method.plugin in plugins

    pairs = [(s, m) for s in solver_specs for m in methods if selected(s, m)]
    in_pairs = {s.name: s for s, _ in pairs}
    full = (set(gradient_solvers) if gradient_solvers is not None
            else gradient_checks.representative_solvers(in_pairs.values()))
    # the cheap checks run on test-only backends (array_api_strict) in the exhaustive matrix:
    # the full matrix of the representative solvers covers those backends in the fast run
    testing_only = {b.name for b in reg.backends() if b.testing_only}
    cases: list[Case] = []

    def add(check: str, spec: SolverSpec, backend: str, sens: str, fn: Callable[[], Any],
            slow: bool = False, compared: tuple[str, ...] = ()) -> None:
        case = Case(check, spec.name, backend, "", fn, None, sens, slow, compared)
        reason = _expected_gradient(spec, extra, check, sens, case.id)
        cases.append(replace(case, expected_failure=reason))

    for b in backends:
        by_solver: dict[str, None] = {}
        for spec, method in pairs:
            if not reg.compatible(spec, b, None, "ODE"):
                continue  # the solver's own "unsupported" case covers this backend
            m = method.name
            if not reg.compatible(spec, b, method, "ODE"):
                add("grad-unsupported", spec, b, m,
                    lambda s=spec, m=m, b=b: gradient_checks.check_gradient_unsupported(
                        s, m, b, reg))
                continue
            by_solver[spec.name] = None
            slow = spec.name not in full
            for check, fn in gradient_checks.CHEAP_CHECKS.items():
                add(check, spec, b, m, lambda f=fn, s=spec, m=m, b=b: f(s, m, b, reg),
                    b in testing_only)
            for check, fn in gradient_checks.FULL_CHECKS.items():
                add(check, spec, b, m, lambda f=fn, s=spec, m=m, b=b: f(s, m, b, reg), slow)
            if reg.compatible(spec, b, method, "ODE", features=("events",)) and (
                    "autograd" in reg.backend(b).capabilities):
                add("grad-events", spec, b, m,
                    lambda s=spec, m=m, b=b: checks.check_event_gradient(s, m, b, reg), slow)
        for name in by_solver:
            # every compatible method, not only the selected ones: a plugin's method is
            # compared with all the others
            spec = in_pairs[name]
            names = tuple(m.name for m in methods if reg.compatible(spec, b, m, "ODE"))
            if len(names) >= 2:
                add("grad-agree", spec, b, "",
                    lambda s=spec, b=b, ms=names: gradient_checks.check_gradient_agreement(
                        s, b, reg, ms),
                    name not in full, names)
    return cases


#: gradient cases already parametrised in this process, by (registry, id, expected failure,
#: methods compared) -> the test module that runs them
_GRADIENT_OWNERS: dict[tuple[Any, ...], str] = {}


def conformance_suite(
    *,
    plugin: str | Iterable[str] | None = None,
    solvers: Iterable[str] | None = None,
    backends: Iterable[str] | None = None,
    expected_failures: Mapping[str, str] | None = None,
    registry: Registry | Callable[[], Registry] | None = None,
    gradients: bool | str = True,
    sensitivities: Iterable[str] | None = None,
    gradient_solvers: Iterable[str] | None = None,
) -> Callable[..., None]:
    """A pytest test function running every conformance case (see :func:`conformance_cases`).

    Assign it to a ``test_*`` name in a test module. Test ids are stable:
    ``check-Solver-backend[-problem]`` and, for gradient cases,
    ``grad-<check>-Solver-Sensitivity-backend`` (``grad-agree-Solver-backend``). Declared
    expected failures are strict xfails, so a fixed plugin must drop its declaration. Cases
    of the exhaustive gradient matrix (solvers outside ``gradient_solvers``) are marked
    ``slow``.

    A gradient case belongs to both its solver's and its method's plugin, so two suites of one
    test session can select the same case (a solver plugin's and a sensitivity plugin's): it
    runs in the first test module collected and is skipped, naming that module, in the others.
    """
    import pytest

    from .pytest_plugin import selected_backends, strict_plugins

    reg = registry() if callable(registry) else registry
    reg_key: Any = "default" if reg is None else id(reg)
    if reg is None and strict_plugins():
        reg = Registry(entry_points=True, strict=True)
    if backends is None:
        backends = selected_backends()
    cases = conformance_cases(reg, plugin=plugin, solvers=solvers, backends=backends,
                              expected_failures=expected_failures, gradients=gradients,
                              sensitivities=sensitivities, gradient_solvers=gradient_solvers,
                              unavailable_devices=("gpu",))
    if not cases:
        raise LookupError(
            f"no conformance cases: no registered ODE solver or sensitivity method matches "
            f"plugin={plugin!r}, solvers={solvers!r} on an available backend"
        )
    owner = sys._getframe(1).f_globals.get("__name__", "?")
    params = []
    for case in cases:
        marks: list[Any] = [pytest.mark.autodiffeq_conformance]
        if case.expected_failure:
            marks.append(pytest.mark.xfail(strict=True, reason=case.expected_failure))
        if case.slow:
            marks.append(pytest.mark.slow)
        if case.device == "gpu":
            marks.append(pytest.mark.gpu)
        if case.unavailable is not None:
            marks.append(pytest.mark.skip(
                reason=f"backend {case.backend!r} is unavailable here: {case.unavailable}"))
        if case.check.startswith("grad-"):
            key = (reg_key, case.id, case.expected_failure, case.methods)
            first = _GRADIENT_OWNERS.setdefault(key, owner)
            if first != owner:
                marks.append(pytest.mark.skip(reason=f"run by the conformance suite in {first}"))
        params.append(pytest.param(case, id=case.id, marks=marks))

    @pytest.mark.parametrize("conformance_case", params)
    def test_conformance(conformance_case: Case) -> None:
        conformance_case.run()

    return test_conformance
