"""Gradients through delay-equation solves (ForwardSensitivity, ReverseMode, ForwardMode,
DiscreteAdjoint), against central differences of tightly solved
losses (relative 1e-6 of the largest entry: the difference quotient's own error at step 1e-5
is about 1e-9 of it, the solves' about 1e-9) and against each other.

The delayed Lotka–Volterra system of the paper with a history that depends on a parameter
and ``u0=None`` (the state at ``t0`` is the history's), so every path a parameter takes is
exercised: through ``f``, through the history before ``t0``, through ``u0``, and through the
solution's own past; and a small lag (0.05), so that steps are longer than the lag and the
fixed-point iteration is differentiated too.
"""

from __future__ import annotations

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad

import autodiffeq as ade

METHODS = ["ReverseMode", "ForwardMode", "ForwardSensitivity", "DiscreteAdjoint"]
TS = np.linspace(0.0, 4.0, 9)


def lv(u, h, p, t):
    xd = h(p, t - 1.0)[0]
    return anp.array([p[0] * xd - p[1] * u[0] * u[1], -p[2] * u[1] + p[3] * u[0] * u[1]])


def lv_history(p, s):
    return anp.array([1.0, 1.0]) * (1.0 + 0.1 * p[0]) + 0.05 * s


def lv_loss(p, sensealg, rtol=1e-9):
    prob = ade.DDEProblem(lv, None, lv_history, (0.0, 4.0), p, constant_lags=[1.0])
    sol = ade.solve(prob, "Tsit5", saveat=TS, rtol=rtol, atol=rtol * 1e-2,
                    sensealg=sensealg)
    return anp.sum(sol.u ** 2)


def small_lag(u, h, p, t):
    return -p[0] * h(p, t - 0.05) + p[1] * u


def small_lag_loss(p, sensealg, rtol=1e-9):
    prob = ade.DDEProblem(small_lag, None, lambda p, s: anp.ones(1) * p[2], (0.0, 2.0), p,
                          constant_lags=[0.05])
    sol = ade.solve(prob, "Tsit5", saveat=[1.0, 2.0], rtol=rtol, atol=rtol * 1e-2,
                    sensealg=sensealg)
    return anp.sum(sol.u ** 2)


def central(loss, x, h=1e-5):
    return np.array([(loss(x + h * e, None, 1e-12) - loss(x - h * e, None, 1e-12)) / (2 * h)
                     for e in np.eye(len(x))])


@pytest.fixture(scope="module")
def lv_truth():
    p0 = np.array([1.5, 1.0, 3.0, 1.0])
    return p0, central(lv_loss, p0)


@pytest.fixture(scope="module")
def small_lag_truth():
    q0 = np.array([2.0, 0.5, 1.2])
    return q0, central(small_lag_loss, q0)


def _close(got, want, what, rtol=1e-6):
    err = np.max(np.abs(got - want)) / np.max(np.abs(want))
    assert err <= rtol, f"{what}: relative error {err:.2e}"


@pytest.mark.parametrize("method", METHODS)
def test_delayed_lotka_volterra_gradient(method, lv_truth):
    p0, truth = lv_truth
    _close(grad(lambda p: lv_loss(p, method))(p0), truth, method)


@pytest.mark.parametrize("method", METHODS)
def test_steps_longer_than_the_lag_gradient(method, small_lag_truth):
    q0, truth = small_lag_truth
    _close(grad(lambda p: small_lag_loss(p, method))(q0), truth, method)


def test_gradient_with_respect_to_u0_and_dict_parameters():
    def f(u, h, p, t):
        return -p["k"] * h(p, t - 0.5) + p["c"]

    def loss(u0, p, method):
        prob = ade.DDEProblem(f, u0, lambda p, s: anp.ones(2), (0.0, 2.0), p,
                              constant_lags=[0.5])
        return anp.sum(ade.solve(prob, "Vern7", saveat=[1.0, 2.0], rtol=1e-10, atol=1e-12,
                                 sensealg=method).u ** 3)

    u0 = np.array([1.3, 0.7])
    p = {"k": np.array([0.8, 1.1]), "c": 0.2}
    fd_u0 = np.array([(loss(u0 + 1e-6 * e, p, None) - loss(u0 - 1e-6 * e, p, None)) / 2e-6
                      for e in np.eye(2)])
    for method in METHODS:
        g_u0 = grad(lambda u, m=method: loss(u, p, m))(u0)
        g_p = grad(lambda q, m=method: loss(u0, q, m))(p)
        _close(g_u0, fd_u0, f"{method} d/du0")
        dk = np.array([(loss(u0, {**p, "k": p["k"] + 1e-6 * e}, None)
                        - loss(u0, {**p, "k": p["k"] - 1e-6 * e}, None)) / 2e-6
                       for e in np.eye(2)])
        _close(g_p["k"], dk, f"{method} d/dk")


def test_discrete_adjoint_transposes_the_replay_reverse_mode_differentiates():
    """DiscreteAdjoint (step by step) and ReverseMode (one tape) differentiate the same
    discrete map: they agree to rounding, far below the solve's error."""
    q0 = np.array([2.0, 0.5, 1.2])
    a = grad(lambda p: small_lag_loss(p, "DiscreteAdjoint"))(q0)
    b = grad(lambda p: small_lag_loss(p, "ReverseMode"))(q0)
    assert np.max(np.abs(a - b)) <= 1e-10 * np.max(np.abs(b))


@pytest.mark.parametrize("method", ["BacksolveAdjoint", "InterpolatingAdjoint",
                                    "QuadratureAdjoint"])
def test_other_methods_are_declared_unsupported_with_alternatives(method):
    with pytest.raises(ade.UnsupportedCombination, match="DDE") as info:
        grad(lambda p: lv_loss(p, method))(np.array([1.5, 1.0, 3.0, 1.0]))
    assert "ForwardSensitivity" in info.value.alternatives


def test_stiff_solver_gradients_forward_sensitivity_and_declared_replays():
    """With Rodas5P, ForwardSensitivity differentiates the stiff delay equation; the replaying
    methods need a traceable dense output the Rosenbrock family does not provide, and say so."""
    def f(u, h, p, t):
        return -p[0] * (u - anp.cos(t)) + p[1] * h(p, t - 1.0)

    def loss(p, method, rtol=1e-8):
        prob = ade.DDEProblem(f, None, lambda p, s: anp.zeros(1), (0.0, 2.5), p,
                              constant_lags=[1.0])
        return anp.sum(ade.solve(prob, "Rodas5P", saveat=[1.5, 2.5], rtol=rtol,
                                 atol=rtol * 1e-2, sensealg=method).u ** 2)

    p0 = np.array([200.0, 0.7])
    # steps of 1e-3 relative: the truncation error is about 1e-6 of the derivative (the
    # check allows 1e-5), the solves' noise below it
    fd = np.array([(loss(p0 + h * e, None, 1e-12) - loss(p0 - h * e, None, 1e-12)) / (2 * h)
                   for h, e in zip(1e-3 * p0, np.eye(2), strict=True)])
    _close(grad(lambda p: loss(p, "ForwardSensitivity"))(p0), fd, "ForwardSensitivity", 1e-5)
    for method in ("ReverseMode", "DiscreteAdjoint"):
        with pytest.raises(ade.UnsupportedCombination, match="ForwardSensitivity"):
            grad(lambda p, m=method: loss(p, m))(p0)


def test_forward_sensitivity_by_rows_equals_by_directions(monkeypatch):
    """With more directions than state components the sensitivity right-hand side comes from
    n reverse sweeps (the Jacobian's rows); it equals the k forward sweeps to rounding."""
    from autodiffeq_plugins.forward_sensitivity import dde as sensitivity_dde

    p0 = np.array([1.5, 1.0, 3.0, 1.0])
    by_rows = grad(lambda p: lv_loss(p, "ForwardSensitivity", 1e-7))(p0)
    monkeypatch.setattr(sensitivity_dde.AugmentedDelayEquation, "_rates_by_rows",
                        lambda self, *args: None)
    by_directions = grad(lambda p: lv_loss(p, "ForwardSensitivity", 1e-7))(p0)
    assert np.max(np.abs(by_rows - by_directions)) <= 1e-10 * np.max(np.abs(by_directions))
