"""The gradient conformance matrix over every registered solver x sensitivity method x backend,
and tests of the gradient kit itself: its truths, its problems' derivatives, that it rejects
wrong gradients, and its suite integration (ids, tiers, expected failures, opt-out)."""

from __future__ import annotations

import dataclasses
import types

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import jacobian

import autodiffeq as ade
from autodiffeq.testing import (
    ConformanceError,
    check_gradient_agreement,
    check_gradient_fd,
    check_gradient_transpose,
    check_gradient_unsupported,
    conformance_cases,
    conformance_suite,
)
from autodiffeq.testing import gradients as kit
from autodiffeq.testing import suite as suite_module
from autodiffeq_plugins.discrete_sensitivity import DiscreteAdjoint, ForwardMode

# Every gradient case of every installed solver and sensitivity plugin (a case also selected
# by a solver plugin's own suite runs there, and is skipped here naming that module).
test_gradient_conformance = conformance_suite(gradients="only")


# --------------------------------------------------------------------------- the truths
def test_sensitivity_equations_reference_matches_matrix_exponential():
    by_equations = dataclasses.replace(kit.LINEAR_MATRIX, name="linear_by_equations",
                                       exact=None)
    times = kit.LINEAR_MATRIX.saveat
    U_exact, S_exact = kit.reference_sensitivities(kit.LINEAR_MATRIX, times)
    U_ref, S_ref = kit.reference_sensitivities(by_equations, times)
    np.testing.assert_allclose(U_ref, U_exact, rtol=0, atol=1e-12)
    np.testing.assert_allclose(S_ref, S_exact, rtol=0, atol=1e-11)


def test_exact_sensitivities_match_finite_differences_of_the_matrix_exponential():
    from scipy.linalg import expm

    t = 0.9
    _, S = kit.reference_sensitivities(kit.LINEAR_MATRIX, (t,))
    U0, P0 = kit.LINEAR_MATRIX.u0, kit.LINEAR_MATRIX.p
    x0 = np.concatenate([U0.ravel(), P0.ravel()])

    def U(x):
        return (expm(t * x[6:].reshape(3, 3)) @ x[:6].reshape(3, 2)).ravel()

    h = 1e-6
    fd = np.stack([(U(x0 + h * e) - U(x0 - h * e)) / (2 * h) for e in np.eye(15)], axis=1)
    np.testing.assert_allclose(S[0], fd, rtol=0, atol=1e-8)


@pytest.mark.parametrize("problem", kit.GRADIENT_PROBLEMS, ids=lambda p: p.name)
def test_problem_derivatives_match_autograd(problem):
    rng = np.random.default_rng(5)
    u = problem.u0 + 0.1 * rng.normal(size=problem.u0.shape)
    p, t, n, m = problem.p, 0.7, problem.n, problem.m

    def f_flat(x):
        return anp.reshape(problem.f(anp.reshape(x[:n], u.shape),
                                     anp.reshape(x[n:], p.shape), t), (n,))

    J = jacobian(f_flat)(np.concatenate([u.ravel(), p.ravel()]))
    # the same formulas evaluated in another order: a few ulps of the largest term (scaled
    # by the entries' size and, for the products, by the length of the sums)
    v = rng.normal(size=u.shape)
    tol = 256 * np.finfo(float).eps * (1.0 + np.max(np.abs(J))) * max(n, m, 1)
    np.testing.assert_allclose(np.asarray(problem.jac(u, p, t)).reshape(n, n), J[:, :n],
                               rtol=0, atol=tol)
    np.testing.assert_allclose(np.asarray(problem.paramjac(u, p, t)).reshape(n, m), J[:, n:],
                               rtol=0, atol=tol)
    tol_v = tol * (1.0 + np.max(np.abs(v)))
    if problem.vjp is not None:
        gu, gp = problem.vjp(v, u, p, t)
        np.testing.assert_allclose(np.ravel(gu), v.ravel() @ J[:, :n], rtol=0, atol=tol_v)
        np.testing.assert_allclose(np.ravel(gp), v.ravel() @ J[:, n:], rtol=0, atol=tol_v)
    if problem.jvp is not None:
        np.testing.assert_allclose(np.ravel(problem.jvp(v, u, p, t)), J[:, :n] @ v.ravel(),
                                   rtol=0, atol=tol_v)


@pytest.mark.parametrize("problem", kit.GRADIENT_PROBLEMS, ids=lambda p: p.name)
def test_problems_compute_in_the_array_namespace_of_u(problem):
    xps = pytest.importorskip("array_api_strict")
    u = xps.asarray(problem.u0)
    for value in (problem.f(u, problem.p, 0.3), problem.jac(u, problem.p, 0.3),
                  problem.paramjac(u, problem.p, 0.3)):
        assert type(value) is type(u)


# --------------------------------------------------------------------------- wrong gradients fail
class _LosesFirstCotangent(DiscreteAdjoint):
    """A plausible bug: the cotangent of the first saved state (t0) is dropped."""

    def vjp(self, request, record, g):
        g = request.backend.xp.asarray(g, copy=True)
        g[0, ...] = 0.0
        return super().vjp(request, record, g)


class _SlightlyScaled(DiscreteAdjoint):
    """A gradient 0.1 % too large: neither the discrete derivative nor accurate enough."""

    def vjp(self, request, record, g):
        g_u0, g_p = super().vjp(request, record, g)
        return g_u0 * 1.001, (None if g_p is None else g_p * 1.001)


class _SkewedTangent(ForwardMode):
    """Forward and reverse products that are not transposes of each other."""

    def jvp(self, request, record, du0, dp):
        return super().jvp(request, record, du0, dp) * 1.01


class _FaultyPlugin:
    @ade.hookimpl
    def autodiffeq_register_sensitivities(self, register):
        for name, factory in (("LosesFirstCotangent", _LosesFirstCotangent),
                              ("SlightlyScaled", _SlightlyScaled),
                              ("SkewedTangent", _SkewedTangent)):
            register(ade.SensitivitySpec(name=name, factory=factory, mode="reverse",
                                         backends=("numpy",), solver_families=("explicit_rk",)))


@pytest.fixture(scope="module")
def faulty_registry():
    reg = ade.Registry(entry_points=True)
    reg.register_plugin(_FaultyPlugin(), name="faulty")
    return reg


@pytest.mark.parametrize("method", ["LosesFirstCotangent", "SlightlyScaled"])
def test_wrong_gradients_fail_the_accuracy_check(faulty_registry, method):
    with pytest.raises(ConformanceError, match="differs from the exact one"):
        check_gradient_fd("Tsit5", method, "numpy", faulty_registry)


def test_a_wrong_gradient_fails_on_fixed_steps_too(faulty_registry):
    with pytest.raises(ConformanceError, match="derivative of the discrete solution"):
        kit.check_gradient_fixed_step("RK4", "LosesFirstCotangent", "numpy", faulty_registry)


def test_products_that_are_not_transposes_fail(faulty_registry):
    with pytest.raises(ConformanceError, match="not both within"):
        check_gradient_transpose("Tsit5", "SkewedTangent", "numpy", faulty_registry)


def test_agreement_check_names_the_disagreeing_methods(faulty_registry):
    with pytest.raises(ConformanceError, match="LosesFirstCotangent"):
        check_gradient_agreement("RK4", "numpy", faulty_registry,
                                 ["DiscreteAdjoint", "ReverseMode", "LosesFirstCotangent"])


def test_checks_report_what_they_measured():
    report = check_gradient_fd("RK4", "DiscreteAdjoint")
    assert report.sensitivity == "DiscreteAdjoint" and report.measured["kind"] == "discrete"
    assert report.measured["error_vs_discrete"] <= kit.DISCRETE_TOL
    agree = check_gradient_agreement("RK4", "numpy", sensitivities=["DiscreteAdjoint",
                                                                    "ReverseMode"])
    assert agree.measured["separated"]
    assert agree.measured["gaps"]["ReverseMode/DiscreteAdjoint"] <= kit.ROUNDING_TOL


def test_unsupported_combination_check():
    # Rosenbrock steps are traced with autograd by DiscreteAdjoint: not on array_api_strict
    report = check_gradient_unsupported("Rodas5P", "DiscreteAdjoint", "array_api_strict")
    assert report.measured["checked"] == 2 and "autograd" in report.measured["reason"]
    report = check_gradient_unsupported("Rodas5P", "BacksolveAdjoint")
    assert report.measured["checked"] == 2 and "stiff" in report.measured["reason"]
    assert check_gradient_unsupported("Tsit5", "DiscreteAdjoint").measured["checked"] == 0
    assert check_gradient_unsupported("Rodas5P", "DiscreteAdjoint").measured["checked"] == 0
    with pytest.raises(ade.UnsupportedCombination):
        check_gradient_fd("Rodas5P", "BacksolveAdjoint")


# --------------------------------------------------------------------------- suite integration
def test_gradient_case_ids_tiers_and_opt_out():
    cases = conformance_cases(plugin="discrete_sensitivity", backends=["numpy"])
    ids = {c.id: c for c in cases}
    assert all(c.check.startswith("grad-") for c in cases)  # no solvers of its own
    assert "grad-fd-Tsit5-DiscreteAdjoint-numpy" in ids
    assert "grad-agree-Tsit5-numpy" in ids
    # composites are differentiated through their components by all three methods
    assert "grad-fd-AutoTsit5Rodas5P-ReverseMode-numpy" in ids
    assert "grad-fd-AutoTsit5Rodas5P-DiscreteAdjoint-numpy" in ids
    assert "grad-events-Tsit5-DiscreteAdjoint-numpy" in ids  # declared events=True
    assert "grad-events-Tsit5-ReverseMode-numpy" not in ids
    assert "grad-fd-Rodas5P-DiscreteAdjoint-numpy" in ids
    assert not ids["grad-fd-Tsit5-DiscreteAdjoint-numpy"].slow
    assert ids["grad-fd-Vern7-DiscreteAdjoint-numpy"].slow
    assert not ids["grad-fixed-Vern7-DiscreteAdjoint-numpy"].slow
    compared = set(ids["grad-agree-Tsit5-numpy"].methods)  # the plugin's and all others
    assert compared >= {"ReverseMode", "ForwardMode", "DiscreteAdjoint"}
    assert compared == {m.name for m in ade.registry().sensitivities()
                        if ade.registry().compatible("Tsit5", "numpy", m, "ODE")}
    solver_only = conformance_cases(plugin="explicit", backends=["numpy"], gradients=False)
    assert solver_only and not any(c.check.startswith("grad-") for c in solver_only)
    assert not conformance_cases(plugin="discrete_sensitivity", gradients=False)
    chosen = conformance_cases(plugin="explicit", backends=["numpy"], gradients="only",
                               sensitivities=["ReverseMode"], gradient_solvers=["Vern7"])
    assert {c.sensitivity for c in chosen} == {"ReverseMode"}
    assert {c.solver for c in chosen if not c.slow and c.check == "grad-fd"} == {"Vern7"}
    with pytest.raises(LookupError, match="NoSuchMethod"):
        conformance_cases(sensitivities=["NoSuchMethod"])


def test_representative_solvers_of_the_builtin_families():
    builtin = [s for s in ade.registry().solvers() if s.distribution == "autodiffeq"]
    assert kit.representative_solvers(builtin) >= {"Tsit5", "RK4", "Rodas5P"}
    assert "Vern7" not in kit.representative_solvers(builtin)


def test_expected_failures_are_keyed_like_the_case_ids():
    for key in ("grad-fd-Tsit5-DiscreteAdjoint-numpy", "Tsit5:DiscreteAdjoint:grad-fd",
                "DiscreteAdjoint:grad-fd", "Tsit5:grad-fd", "grad-fd"):
        cases = conformance_cases(plugin="discrete_sensitivity", backends=["numpy"],
                                  solvers=["Tsit5"], expected_failures={key: "known"})
        marked = {c.id for c in cases if c.expected_failure == "known"}
        assert "grad-fd-Tsit5-DiscreteAdjoint-numpy" in marked
        assert "grad-fixed-Tsit5-DiscreteAdjoint-numpy" not in marked


def test_a_case_selected_by_two_suites_runs_in_the_first_module_only():
    reg = ade.Registry(entry_points=True)
    source = ("from autodiffeq.testing import conformance_suite\n"
              "test_it = conformance_suite(plugin='discrete_sensitivity', solvers=['RK4'], "
              "backends=['numpy'], registry=REG)\n")
    marks = {}
    for name in ("first_suite_module", "second_suite_module"):
        module = types.ModuleType(name)
        module.REG = reg
        exec(compile(source, name, "exec"), module.__dict__)
        params = module.test_it.pytestmark[0].args[1]
        marks[name] = {p.id: [m.name for m in p.marks] for p in params}
    case = "grad-fd-RK4-DiscreteAdjoint-numpy"
    assert "skip" not in marks["first_suite_module"][case]
    assert "skip" in marks["second_suite_module"][case]
    for key in [k for k in suite_module._GRADIENT_OWNERS if k[0] == id(reg)]:
        del suite_module._GRADIENT_OWNERS[key]
