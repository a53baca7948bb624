"""Stiffness switching by name: AutoTsit5Rodas5P and AutoVern7Rodas5P switch to the stiff method
when the problem becomes stiff and back when it stops being stiff, with accuracy checked against
SciPy's Radau and analytic solutions; both run the conformance kit (as their non-stiff
component on its non-stiff problems, so with the declared orders 5 and 7)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import autodiffeq as ade
from autodiffeq.testing import conformance_suite

test_autoswitch_conformance = conformance_suite(plugin="autoswitch")


class SwitchLog(list):
    """A step observer (public API) listing ``(t, component)`` wherever the component that
    makes the steps changes (0: non-stiff, 1: stiff), as the driver reports it."""

    last = 0

    def on_step(self, t, t_new, u, u_new, stepper, component):
        if component != self.last:
            self.append((t, component))
            self.last = component


def _vdp(u, p, t):
    return np.array([u[1], p * (1 - u[0] ** 2) * u[1] - u[0]])


def _vdp_jac(u, p, t):
    return np.array([[0.0, 1.0], [-2.0 * p * u[0] * u[1] - 1.0, p * (1 - u[0] ** 2)]])


def test_van_der_pol_stiff_is_solved_accurately():
    log = SwitchLog()
    prob = ade.ODEProblem(_vdp, [2.0, 0.0], (0.0, 3000.0), 1000.0)
    sol = ade.solve(prob, "AutoTsit5Rodas5P", rtol=1e-7, atol=1e-9, saveat=[1000.0, 3000.0],
                    observers=[log])
    ref = solve_ivp(lambda t, u: _vdp(u, 1000.0, t), (0, 3000), [2.0, 0.0], method="Radau",
                    rtol=1e-10, atol=1e-12, t_eval=[1000.0, 3000.0],
                    jac=lambda t, u: _vdp_jac(u, 1000.0, t)).y.T
    assert sol.success
    assert np.max(np.abs(sol.u[:, 0] - ref[:, 0])) < 1e-4
    assert log and log[0][1] == 1  # switched to the stiff component


@pytest.mark.parametrize("alg", ["AutoTsit5Rodas5P", "AutoVern7Rodas5P"])
def test_switches_both_ways_and_stays_accurate(alg):
    """u' = -lambda(t) (u - cos t) - sin t has the solution u = cos t for u(0) = 1; it is stiff
    while lambda = 1e5 (t < 5) and non-stiff afterwards (lambda = 0.5)."""
    log = SwitchLog()

    def f(u, p, t):
        lam = 1e5 if t < 5.0 else 0.5
        return -lam * (u - np.cos(t)) - np.sin(t)

    prob = ade.ODEProblem(f, np.array([1.0]), (0.0, 20.0))
    sol = ade.solve(prob, alg, rtol=1e-6, atol=1e-8, tstops=[5.0], observers=[log])
    assert sol.success
    times = np.linspace(0.0, 20.0, 81)
    assert np.max(np.abs(sol(times)[:, 0] - np.cos(times))) < 1e-4
    directions = [to for _, to in log]
    assert 1 in directions and 0 in directions
    assert directions.index(1) < len(directions) - 1 - directions[::-1].index(0)


@pytest.mark.parametrize("alg", ["AutoTsit5Rodas5P", "AutoVern7Rodas5P"])
def test_mass_matrix_problems_start_stiff(alg):
    M = np.diag([1.0, 0.0])

    def f(u, p, t):  # u0' = -u0 + u1, 0 = u1 - 2 u0   ->  u0' = u0
        return np.array([-u[0] + u[1], u[1] - 2 * u[0]])

    prob = ade.ODEProblem(f, np.array([1.0, 2.0]), (0.0, 1.0), mass_matrix=M)
    sol = ade.solve(prob, alg, rtol=1e-8, atol=1e-10)
    assert sol.success and abs(sol.u[-1, 0] - np.e) < 1e-6
    assert sol.dense_output.stepper.active == 1 and sol.dense_output.stepper.switches == []


def test_missing_component_is_an_unsupported_combination():
    from autodiffeq_plugins import autoswitch, explicit, numpy_backend

    reg = ade.Registry(entry_points=False)
    for plugin in (numpy_backend, explicit, autoswitch):
        reg.register_plugin(plugin)
    prob = ade.ODEProblem(lambda u, p, t: -u, [1.0], (0.0, 1.0))
    with pytest.raises(ade.UnsupportedCombination, match="Rodas5P"):
        ade.solve(prob, "AutoTsit5Rodas5P", registry=reg)


def test_registry_without_a_component_passes_the_composite_over():
    """Declared components: an embedding registry with the explicit solvers and the
    composites but no Rosenbrock plugin reports the composite incompatible, and solve(prob)
    picks a plain explicit solver instead of failing."""
    from autodiffeq_plugins import autoswitch, explicit, numpy_backend

    reg = ade.Registry(entry_points=False)
    for plugin in (numpy_backend, explicit, autoswitch):
        reg.register_plugin(plugin)
    prob = ade.ODEProblem(lambda u, p, t: -u, [1.0], (0.0, 1.0))
    compat = reg.compatible("AutoTsit5Rodas5P", "numpy", None, prob)
    assert not compat and "Rodas5P" in compat.reason and "Tsit5" in compat.alternatives
    sol = ade.solve(prob, registry=reg, rtol=1e-6, atol=1e-9)
    assert sol.success and sol.alg.name == "Tsit5"
    assert abs(sol.u[-1, 0] - np.exp(-1.0)) < 1e-5
    assert ade.registry().compatible("AutoTsit5Rodas5P", "numpy", None, prob)
