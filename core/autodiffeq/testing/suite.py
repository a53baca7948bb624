"""The conformance matrix: every check for every compatible (solver x backend) pair.

:func:`conformance_cases` enumerates :class:`Case` objects from the registry's capabilities;
:func:`conformance_suite` turns them into one parametrised pytest test function, so a
third-party package needs a two-line test file::

    from autodiffeq.testing import conformance_suite
    test_my_plugin = conformance_suite(plugin="my_plugin")
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..registry import Registry
from ..registry import registry as default_registry
from ..specs import SolverSpec
from . import checks
from .problems import CONVERGENCE_PROBLEMS


@dataclass(frozen=True)
class Case:
    """One conformance check on one solver, backend (and problem)."""

    check: str
    solver: str
    backend: str
    problem: str = ""
    run: Callable[[], Any] = field(default=lambda: None, compare=False, repr=False)
    expected_failure: str | None = None

    @property
    def id(self) -> str:
        parts = [self.check, self.solver, self.backend] + ([self.problem] if self.problem else [])
        return "-".join(parts)


def _expected(spec: SolverSpec, extra: Mapping[str, str], check: str, problem: str) -> str | None:
    for source in (extra, spec.expected_failures):
        for key in (f"{check}[{problem}]", check, f"{spec.name}:{check}",
                    f"{spec.name}:{check}[{problem}]"):
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
) -> list[Case]:
    """Every applicable conformance case for the selected solvers on the usable backends.

    Args:
        registry: where to look (default: the default registry with all installed plugins).
        plugin: only solvers registered by this plugin (entry-point name) or these plugins.
        solvers: only these solver names.
        backends: only these backends (default: every backend available here).
        expected_failures: ``{"check": reason}``, ``{"check[problem]": reason}`` or
            ``{"Solver:check": reason}`` declared failures (in addition to each spec's own
            ``expected_failures``); they become strict xfails.
    """
    reg = registry if registry is not None else default_registry()
    extra = dict(expected_failures or {})
    plugins = {plugin} if isinstance(plugin, str) else (set(plugin) if plugin else None)
    wanted = set(solvers) if solvers is not None else None
    specs = [
        s for s in reg.solvers()
        if "ODE" in s.problem_types
        and (plugins is None or s.plugin in plugins)
        and (wanted is None or s.name in wanted)
    ]
    if wanted is not None:
        missing = wanted - {s.name for s in specs}
        if missing:
            raise LookupError(f"solvers {sorted(missing)} are not registered")
    usable = [b for b in reg.backends() if b.unavailable_reason() is None]
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
            add("unsupported", spec, b, "",
                lambda s=spec, b=b: checks.check_unsupported(s, b, reg))
            if bspec.testing_only:
                add("no_host_leak", spec, b, "",
                    lambda s=spec, b=b: checks.check_no_host_leak(s, b, reg))
    return cases


def conformance_suite(
    *,
    plugin: str | Iterable[str] | None = None,
    solvers: Iterable[str] | None = None,
    backends: Iterable[str] | None = None,
    expected_failures: Mapping[str, str] | None = None,
    registry: Registry | Callable[[], Registry] | None = None,
) -> Callable[..., None]:
    """A pytest test function running every conformance case (see :func:`conformance_cases`).

    Assign it to a ``test_*`` name in a test module. Test ids are stable:
    ``check-Solver-backend[-problem]``. Declared expected failures are strict xfails, so a
    fixed plugin must drop its declaration.
    """
    import pytest

    from .pytest_plugin import selected_backends, strict_plugins

    reg = registry() if callable(registry) else registry
    if reg is None and strict_plugins():
        reg = Registry(entry_points=True, strict=True)
    if backends is None:
        backends = selected_backends()
    cases = conformance_cases(reg, plugin=plugin, solvers=solvers, backends=backends,
                              expected_failures=expected_failures)
    if not cases:
        raise LookupError(
            f"no conformance cases: no registered ODE solver matches plugin={plugin!r}, "
            f"solvers={solvers!r} on an available backend"
        )
    params = [
        pytest.param(
            case,
            id=case.id,
            marks=[pytest.mark.autodiffeq_conformance]
            + (
                [pytest.mark.xfail(strict=True, reason=case.expected_failure)]
                if case.expected_failure
                else []
            ),
        )
        for case in cases
    ]

    @pytest.mark.parametrize("conformance_case", params)
    def test_conformance(conformance_case: Case) -> None:
        conformance_case.run()

    return test_conformance
