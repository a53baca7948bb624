"""Pathwise gradients through SDE solves: geometric Brownian motion against its analytic
pathwise derivative, finite differences on the same path and fixed steps, and the methods
against each other."""

from __future__ import annotations

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import autodiffeq as ade

N = 6
T = 1.0
U0 = np.linspace(0.5, 1.5, N)
P0 = np.array([1.5, 0.5])
WEIGHTS = np.arange(1.0, N + 1.0)


def drift(u, p, t):
    return p[0] * u


def diffusion(u, p, t):
    return p[1] * u


PROB = ade.SDEProblem(drift, diffusion, U0, (0.0, T), P0)


def exact_loss(u0, p, WT):
    return anp.sum(WEIGHTS * u0 * anp.exp((p[0] - 0.5 * p[1] ** 2) * T + p[1] * WT))


@pytest.mark.parametrize("sensealg", ["ReverseMode", "ForwardMode", "DiscreteAdjoint",
                                      "ForwardSensitivity"])
@pytest.mark.parametrize("alg, dt", [("SRIW1", 2.0 ** -8), ("SOSRI", 2.0 ** -8),
                                     ("RKMil", 2.0 ** -10), ("EM", 2.0 ** -10)])
def test_pathwise_gradient_matches_analytic_and_fd(alg, dt, sensealg) -> None:
    W = ade.BrownianPath((0.0, T), (N,), seed=11)

    def loss(u0, p):
        sol = ade.solve(PROB.remake(u0=u0, p=p), alg, dt=dt, adaptive=False, brownian=W,
                        saveat=[T], sensealg=sensealg)
        return anp.sum(WEIGHTS * sol.u[-1])

    g_p = autograd.grad(loss, 1)(U0, P0)
    g_u = autograd.grad(loss, 0)(U0, P0)
    WT = W(T)
    a_p = autograd.grad(exact_loss, 1)(U0, P0, WT)
    a_u = autograd.grad(exact_loss, 0)(U0, P0, WT)
    # the discrete solution's derivative converges to the pathwise one at the strong order
    order = ade.registry().solver(alg).order
    tol = 20 * dt ** order
    assert np.max(np.abs(g_p - a_p) / np.abs(a_p)) < tol
    assert np.max(np.abs(g_u - a_u) / np.abs(a_u)) < tol
    # finite differences of the same discrete solution (same steps, same path): the gradient
    # of what was computed, to the central difference's truncation and rounding
    eps = 1e-6
    fd = np.array([(loss(U0, P0 + eps * e) - loss(U0, P0 - eps * e)) / (2 * eps)
                   for e in np.eye(2)])
    np.testing.assert_allclose(g_p, fd, rtol=1e-6)


def test_methods_agree_on_adaptive_steps_and_general_noise() -> None:
    B = np.array([[0.3, 0.1], [0.2, 0.4], [0.1, 0.1]])

    def g_general(u, p, t):
        return p[1] * B * u[:, None]

    prob = ade.SDEProblem(drift, g_general, np.ones(3), (0.0, T), P0, noise="general",
                          noise_dim=2)
    W = ade.BrownianPath((0.0, T), (2,), seed=3)
    grads = {}
    for sensealg in ("ReverseMode", "ForwardMode", "DiscreteAdjoint", "ForwardSensitivity"):
        def loss(p, s=sensealg):
            sol = ade.solve(prob.remake(p=p), "EM", dt=0.01, adaptive=False, brownian=W,
                            sensealg=s)
            return anp.sum(sol.u[-1] ** 2)
        grads[sensealg] = autograd.grad(loss)(P0)
    for g in grads.values():
        np.testing.assert_allclose(g, grads["ReverseMode"], rtol=1e-10)
    # adaptive: the gradient of the accepted steps, against the analytic pathwise derivative
    W = ade.BrownianPath((0.0, T), (N,), seed=5)

    def loss_adaptive(p):
        sol = ade.solve(PROB.remake(p=p), "SRIW1", rtol=1e-3, atol=1e-3, brownian=W,
                        saveat=[0.5, T], sensealg="DiscreteAdjoint")
        return anp.sum(WEIGHTS * sol.u[-1])

    g = autograd.grad(loss_adaptive)(P0)
    a = autograd.grad(exact_loss, 1)(U0, P0, W(T))
    np.testing.assert_allclose(g, a, rtol=1e-2)  # the solve's accuracy at rtol 1e-3

    # ForwardSensitivity with its error control on u takes the plain solve's steps on the
    # same path: the derivative of the same discrete solution as DiscreteAdjoint's
    def loss_fs(p, s):
        sol = ade.solve(PROB.remake(p=p), "SOSRI", rtol=1e-2, atol=1e-2, seed=4,
                        saveat=[0.5, T], sensealg=s)
        return anp.sum(WEIGHTS * sol.u[-1])

    np.testing.assert_allclose(autograd.grad(loss_fs)(P0, "ForwardSensitivity"),
                               autograd.grad(loss_fs)(P0, "DiscreteAdjoint"), rtol=1e-10)


def test_unseeded_gradient_uses_one_path_and_unsupported_methods() -> None:
    def loss(p):
        sol = ade.solve(PROB.remake(p=p), "SRIW1", dt=0.05, adaptive=False,
                        sensealg="DiscreteAdjoint")
        return anp.sum(sol.u[-1])
    g = autograd.grad(loss)(P0)  # no seed: one path is fixed for all solves of the gradient
    assert np.all(np.isfinite(g))
    sol = ade.solve(PROB.remake(p=anp.array(P0)), "SRIW1", seed=1)
    assert isinstance(sol.W, ade.BrownianPath)
    with pytest.raises(ade.UnsupportedCombination, match="SDE problems") as err:
        autograd.grad(lambda p: anp.sum(ade.solve(
            PROB.remake(p=p), "SRIW1", seed=1, sensealg="InterpolatingAdjoint").u))(P0)
    assert "DiscreteAdjoint" in str(err.value)


@pytest.mark.parametrize("interpretation, alg", [("ito", "SRIW1"), ("stratonovich", "RKMil")])
def test_stochastic_backsolve_adjoint_converges_to_the_pathwise_gradient(interpretation,
                                                                         alg) -> None:
    """The adjoint SDE solved backwards on the same path by the Heun method: its error falls
    like dt (GBM's noise is commutative) towards the analytic pathwise derivative."""
    W = ade.BrownianPath((0.0, T), (N,), seed=11)
    prob = ade.SDEProblem(drift, diffusion, U0, (0.0, T), P0, interpretation=interpretation)
    c = 0.5 if interpretation == "ito" else 0.0
    WT = W(T)
    exact = autograd.grad(lambda p: anp.sum(
        WEIGHTS * U0 * anp.exp((p[0] - c * p[1] ** 2) * T + p[1] * WT)))(P0)
    errors = []
    for dt in (2.0 ** -6, 2.0 ** -9):
        def loss(p, dt=dt):
            sol = ade.solve(prob.remake(p=p), alg, dt=dt, adaptive=False, brownian=W,
                            saveat=[T], sensealg="BacksolveAdjoint")
            return anp.sum(WEIGHTS * sol.u[-1])
        # relative to the gradient's size: a component near zero (d/dsigma vanishes where
        # W(T) = 2 c sigma T) has no relative accuracy to speak of
        errors.append(np.max(np.abs(autograd.grad(loss)(P0) - exact)) / np.max(np.abs(exact)))
    assert errors[1] < 20 * 2.0 ** -9
    assert errors[1] < errors[0] / 4  # order ~1: 8x smaller for 8x smaller steps


def test_backsolve_matches_discrete_methods_on_scalar_and_additive_noise() -> None:
    cases = [
        (ade.SDEProblem(drift, diffusion, U0, (0.0, T), P0, noise="scalar"), "SRIW1", ()),
        (ade.SDEProblem(lambda u, p, t: -p[0] * u ** 3,
                        lambda u, p, t: p[1] * anp.ones_like(u), U0, (0.0, T), P0,
                        noise="additive"), "SOSRA", (N,)),
    ]
    for prob, alg, shape in cases:
        W = ade.BrownianPath((0.0, T), shape, seed=3)
        def loss(p, s, prob=prob, alg=alg, W=W):
            return anp.sum(ade.solve(prob.remake(p=p), alg, dt=2.0 ** -10, adaptive=False,
                                     brownian=W, sensealg=s, saveat=[0.5, T]).u ** 2)

        grads = [autograd.grad(loss)(P0, s) for s in ("BacksolveAdjoint", "DiscreteAdjoint")]
        # the Heun adjoint's O(dt) error against the exact derivative of the discrete solve
        # (relative to the gradient's size, not per component: one may be near zero)
        np.testing.assert_allclose(grads[0], grads[1], rtol=0,
                                   atol=20 * 2.0 ** -10 * np.max(np.abs(grads[1])))
    general = ade.SDEProblem(drift, lambda u, p, t: p[1] * anp.ones((N, 2)) * u[:, None], U0,
                             (0.0, T), P0, noise="general", noise_dim=2)
    with pytest.raises(ade.UnsupportedCombination, match="general"):
        autograd.grad(lambda p: anp.sum(ade.solve(general.remake(p=p), "EM", dt=0.1, seed=1,
                                                  sensealg="BacksolveAdjoint").u))(P0)
