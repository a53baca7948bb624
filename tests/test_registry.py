"""The pluggy registry: registration, provenance, duplicates, guarded loading, compatibility."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types
import warnings

import numpy as np
import pytest

import autodiffeq as ade

registry_module = importlib.import_module("autodiffeq.registry")


def _solver_plugin(name: str, spec_name: str, **fields):
    module = types.ModuleType(name)

    class Euler(ade.Stepper):
        order = 1

        def step(self, t, u, dt):
            return u + dt * self.rhs.f(u, t), None

    def register_solvers(register):
        register(ade.SolverSpec(name=spec_name, factory=Euler, order=1, **fields))

    module.autodiffeq_register_solvers = ade.hookimpl(register_solvers)
    return module


def _numpy_backend_plugin():
    from autodiffeq_plugins import numpy_backend

    return numpy_backend


def test_default_registry_lists_builtin_plugins():
    reg = ade.registry()
    names = {s.name for s in reg.solvers()}
    assert {"Euler", "Midpoint", "Heun", "Ralston", "RK4", "BS3", "DP5", "Tsit5",
            "Vern7"} <= names
    tsit5 = reg.solver("Tsit5")
    assert (tsit5.order, tsit5.adaptive, tsit5.fsal, tsit5.dense_order) == (5, True, True, 4)
    assert tsit5.plugin == "explicit" and tsit5.distribution == "autodiffeq"
    assert {b.name for b in reg.backends()} >= {"numpy", "array_api_strict"}


def test_isolated_registry_is_empty_then_usable():
    reg = ade.Registry(entry_points=False)
    assert reg.solvers() == [] and reg.backends() == []
    reg.register_plugin(_numpy_backend_plugin(), name="np")
    reg.register_plugin(_solver_plugin("mine", "MyEuler"))
    assert [s.name for s in reg.solvers()] == ["MyEuler"]
    prob = ade.ODEProblem(lambda u, p, t: -u, [1.0], (0.0, 1.0))
    sol = ade.solve(prob, "MyEuler", dt=1e-3, adaptive=False, registry=reg)
    assert abs(sol.u[-1, 0] - np.exp(-1.0)) < 1e-3
    with pytest.raises(ade.UnknownName):
        ade.solve(prob, "Tsit5", registry=reg)  # not in the isolated registry


def test_duplicate_names_refused_naming_both_providers():
    reg = ade.Registry(entry_points=False, strict=True)
    reg.register_plugin(_solver_plugin("first_plugin", "Twin"))
    reg.register_plugin(_solver_plugin("second_plugin", "Twin"))
    with pytest.raises(ade.DuplicateName) as info:
        reg.solvers()
    assert "first_plugin" in str(info.value) and "second_plugin" in str(info.value)
    # without strict mode the second registration is skipped with a warning
    lenient = ade.Registry(entry_points=False)
    lenient.register_plugin(_solver_plugin("first_plugin", "Twin"))
    lenient.register_plugin(_solver_plugin("second_plugin", "Twin"))
    with pytest.warns(ade.PluginLoadWarning, match="registered twice"):
        specs = lenient.solvers()
    assert [s.plugin for s in specs] == ["first_plugin"]
    assert [f.name for f in lenient.failed_plugins()] == ["second_plugin"]


def test_direct_register_duplicate_raises():
    reg = ade.Registry(entry_points=False)
    reg.register_plugin(_solver_plugin("p", "One"))
    with pytest.raises(ade.DuplicateName, match="already registered by plugin 'p'"):
        reg.register(ade.SolverSpec(name="One", factory=lambda *a, **k: None))


def test_invalid_spec_is_reported():
    module = types.ModuleType("bad")
    module.autodiffeq_register_solvers = ade.hookimpl(
        lambda register: register(ade.SolverSpec(name="", factory=None))
    )
    reg = ade.Registry(entry_points=False, strict=True)
    reg.register_plugin(module)
    with pytest.raises(ade.PluginError, match="name must be a non-empty string"):
        reg.solvers()


def test_unknown_solver_name_lists_names_and_closest_match(decay_problem):
    with pytest.raises(ade.UnknownName) as info:
        ade.solve(decay_problem, "Tsit4")
    message = str(info.value)
    assert "Did you mean 'Tsit5'" in message and "Vern7" in message
    assert isinstance(info.value, KeyError)


class _FakeEntryPoint:
    def __init__(self, name, target):
        self.name = name
        self.target = target
        self.dist = None

    def load(self):
        return self.target()


def _broken():
    raise ImportError("this plugin is broken on purpose")


def test_plugin_that_fails_to_import_is_skipped(monkeypatch):
    real = registry_module.importlib_metadata.entry_points

    def fake_entry_points(group):
        eps = list(real(group=group))
        return [*eps, _FakeEntryPoint("broken", _broken)]

    monkeypatch.setattr(registry_module.importlib_metadata, "entry_points", fake_entry_points)
    reg = ade.Registry()
    with pytest.warns(ade.PluginLoadWarning, match="broken"):
        names = [s.name for s in reg.solvers()]
    assert "Tsit5" in names
    failed = reg.failed_plugins()
    assert [(f.name, f.phase) for f in failed] == [("broken", "import")]
    assert "broken on purpose" in failed[0].error
    strict = ade.Registry(strict=True)
    with pytest.raises(ade.PluginError, match="broken on purpose"):
        strict.solvers()
    # the warning turned into an error: every call raises, none finds a half-loaded catalogue
    erroring = ade.Registry()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ade.PluginLoadWarning)
        for _ in range(2):
            with pytest.raises(ade.PluginLoadWarning, match="broken"):
                erroring.solvers()
    with pytest.warns(ade.PluginLoadWarning, match="broken"):
        assert "Tsit5" in [s.name for s in erroring.solvers()]
    assert [f.name for f in erroring.failed_plugins()] == ["broken"]


def test_compatible_answers_with_reason_and_alternatives():
    reg = ade.registry()
    assert reg.compatible("Tsit5", "numpy", None, "ODE")
    answer = reg.compatible("Tsit5", "numpy", None, "SDE")
    assert not answer and "SDE" in answer.reason
    with pytest.raises(ade.UnsupportedCombination):
        answer.raise_if_incompatible()
    prob = ade.ODEProblem(lambda u, p, t: -u, [1.0, 1.0], (0.0, 1.0), mass_matrix=np.eye(2))
    answer = reg.compatible("Tsit5", "numpy", None, prob)
    assert not answer and "mass matrix" in answer.reason
    with pytest.raises(ade.UnsupportedCombination, match="mass matrix"):
        ade.solve(prob, "Tsit5")


def test_solver_restricted_backend_is_unsupported():
    reg = ade.Registry(entry_points=False)
    reg.register_plugin(_numpy_backend_plugin(), name="np")
    from autodiffeq_plugins import array_api_strict_backend

    reg.register_plugin(array_api_strict_backend, name="strict")
    reg.register_plugin(_solver_plugin("onlynp", "NpOnly", backends=("numpy",)))
    prob = ade.ODEProblem(lambda u, p, t: -u, [1.0], (0.0, 1.0))
    with pytest.raises(ade.UnsupportedCombination, match="runs on backends numpy"):
        ade.solve(prob, "NpOnly", dt=0.1, adaptive=False, backend="array_api_strict",
                  registry=reg)


def test_listing_is_lazy_and_import_is_light():
    code = (
        "import sys, time; t = time.perf_counter(); import autodiffeq as ade; "
        "dt = time.perf_counter() - t; "
        "heavy = [m for m in ('autodiffeq_plugins', 'cupy', 'dask', 'matplotlib', 'tqdm', "
        "'scipy', 'array_api_strict') if m in sys.modules]; "
        "print(heavy); ade.registry().solvers(); ade.registry().backends(); "
        "print([m for m in ('cupy', 'dask', 'matplotlib', 'tqdm') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    lines = out.stdout.strip().splitlines()
    assert lines == ["[]", "[]"], out.stdout
    assert out.stderr == ""


def test_plugins_info_has_provenance():
    infos = {i.name: i for i in ade.registry().plugins()}
    assert infos["explicit"].distribution == "autodiffeq"
    assert "Tsit5" in infos["explicit"].registered["solver"]
    assert infos["numpy"].registered["backend"] == ("numpy",)


def test_registry_thread_safe_building():
    import threading

    reg = ade.Registry()
    results = []

    def work():
        with warnings.catch_warnings():
            results.append(len(reg.solvers()))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and results[0] >= 9


def test_backend_instances_follow_plugin_changes():
    reg = ade.Registry(entry_points=False)
    reg.register_plugin(_numpy_backend_plugin(), name="np")
    first = reg.get_backend("numpy")
    reg.unregister_plugin("np")
    with pytest.raises(ade.UnknownName):
        reg.get_backend("numpy")
    with pytest.raises(ade.UnknownName):
        reg.unregister_plugin("np")
    reg.register_plugin(_numpy_backend_plugin(), name="np")
    assert reg.get_backend("numpy") is not first
