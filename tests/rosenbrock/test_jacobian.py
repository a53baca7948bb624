"""Jacobians and time derivatives through the public API: user, second- and first-order
finite differences give the same solutions; the work counters and the reuse of J on rejected
steps; autonomy detection; the W-method property of Rosenbrock23. (The difference formulas
themselves are tested in ``tests/test_derivatives.py``, the plugin's Jacobian classes in
``test_jacobian_internals.py``.)"""

from __future__ import annotations

import math

import numpy as np
import pytest

import autodiffeq as ade
from autodiffeq.stepper import RHS
from autodiffeq.testing import fit_order

from .conftest import METHODS, rober, rober_jac, scaled_error

STAGES = {"Rosenbrock23": 3, "Rodas3P": 5, "Rodas4": 6, "Rodas5P": 8}
# f evaluations per step attempt (stages minus those reusing an earlier argument)
STAGE_EVALS = {"Rosenbrock23": 2, "Rodas3P": 2, "Rodas4": 5, "Rodas5P": 7}


@pytest.mark.parametrize("alg", METHODS)
def test_user_and_finite_difference_jacobians_give_the_same_solution(alg):
    rtol, atol = 1e-7, 1e-11
    sols = {}
    for mode, jac in (("user", rober_jac), ("fd", None), ("fd_forward", None)):
        prob = ade.ODEProblem(rober, [1.0, 0.0, 0.0], (0.0, 1e5), jac=jac)
        sols[mode] = ade.solve(prob, alg, rtol=rtol, atol=atol, jac_mode=mode)
        assert sols[mode].success
    ref = sols["user"].u[-1]
    # second-order differences are as good as the exact Jacobian: as many steps, and a result
    # within a small part of the tolerance (measured: below 1e-2 for the Rodas methods, 0.16
    # for Rosenbrock23, whose predictive step-size control reacts to the tiny differences)
    assert sols["fd"].stats.naccept == sols["user"].stats.naccept
    assert scaled_error(sols["fd"].u[-1], ref, rtol, atol) < 0.25
    # first-order ones (J to ~1e-8) cost accuracy at this tolerance (measured: up to 6x
    # the tolerance for Rodas3P) but stay in the same regime
    assert scaled_error(sols["fd_forward"].u[-1], ref, rtol, atol) < 20.0


@pytest.mark.parametrize("alg", METHODS)
@pytest.mark.parametrize("mode", ["user", "fd", "fd_forward"])
def test_work_counters_and_jacobian_reuse_on_rejected_steps(alg, mode):
    """One J per accepted step point (rejected retries reuse it and only refactor W), one
    LU per attempt, one solve per stage; every f evaluation is counted. (``autonomous=True``:
    no autonomy probes; their once-per-solve cost is checked in
    ``test_autonomous_option_skips_the_time_derivative``.)"""
    prob = ade.ODEProblem(rober, [1.0, 0.0, 0.0], (0.0, 1e5),
                          jac=rober_jac if mode == "user" else None)
    st = ade.solve(prob, alg, rtol=1e-6, atol=1e-10, jac_mode=mode, autonomous=True).stats
    assert st.nreject > 0
    assert st.njac == st.naccept
    assert st.nfactor == st.nsteps
    assert st.nlinsolve == STAGES[alg] * st.nsteps
    per_jacobian = {"user": 0, "fd": 2 * 3, "fd_forward": 3}[mode]
    # f(u_n) at each new step point except t0 (Rosenbrock23 takes it from its last stage)
    f_at_points = 0 if alg == "Rosenbrock23" else st.naccept - 1
    expected = 2 + STAGE_EVALS[alg] * st.nsteps + f_at_points + st.naccept * per_jacobian
    assert st.nf == expected


def test_constant_jacobian_matrix_is_evaluated_once():
    A = np.array([[-100.0, 1.0], [0.0, -0.5]])
    prob = ade.ODEProblem(lambda u, p, t: A @ u, [1.0, 1.0], (0.0, 5.0), jac=A)
    sol = ade.solve(prob, "Rodas4", rtol=1e-8, atol=1e-10)
    assert sol.stats.njac == 1
    exact = np.array([math.exp(-500.0) + (math.exp(-2.5) - math.exp(-500.0)) / 99.5,
                      math.exp(-2.5)])
    np.testing.assert_allclose(sol.u[-1], exact, rtol=1e-6, atol=1e-12)


def test_jacobian_of_an_array_shaped_state():
    """``jac`` receives ``u`` in the user's shape and returns the (n, n) Jacobian of the
    flattened state."""
    K = np.array([[-50.0, 1.0], [2.0, -3.0]])

    def f(u, p, t):  # u of shape (2, 2): each column is an independent 2x2 linear system
        return K @ u - 0.1 * u**2

    def jac(u, p, t):
        assert u.shape == (2, 2)
        flat = u.reshape(-1)
        return np.kron(K, np.eye(2)) - 0.2 * np.diag(flat)

    u0 = np.array([[1.0, 0.5], [-1.0, 2.0]])
    a = ade.solve(ade.ODEProblem(f, u0, (0.0, 2.0), jac=jac), "Rodas5P", rtol=1e-9,
                  atol=1e-12)
    b = ade.solve(ade.ODEProblem(f, u0, (0.0, 2.0)), "Rodas5P", rtol=1e-9, atol=1e-12)
    assert a.u.shape[1:] == (2, 2)
    np.testing.assert_allclose(a.u[-1], b.u[-1], rtol=1e-8, atol=1e-12)


def test_jacobian_options_are_validated():
    prob = ade.ODEProblem(rober, [1.0, 0.0, 0.0], (0.0, 1.0))
    with pytest.raises(ade.InvalidArgument, match="needs ODEProblem"):
        ade.solve(prob, "Rodas5P", jac_mode="user")
    with pytest.raises(ade.InvalidArgument, match="jac_mode must be one of"):
        ade.solve(prob, "Rodas5P", jac_mode="ad")
    with pytest.raises(ade.InvalidArgument, match="autonomous"):
        ade.solve(prob, "Rodas5P", autonomous="yes")
    bad = prob.remake(jac=lambda u, p, t: np.eye(2))
    with pytest.raises(ade.ShapeMismatch, match="expected \\(3, 3\\)"):
        ade.solve(bad, "Rodas5P")


def test_autonomous_option_skips_the_time_derivative():
    """ROBER does not depend on t: detected once (a few probe evaluations, however long the
    solve), so the default gives the same steps as ``autonomous=True``; ``autonomous=False``
    spends one evaluation per step point finding that f did not change in t (and gives the
    same result)."""
    probes = []
    for t1 in (1e3, 1e5):
        prob = ade.ODEProblem(rober, [1.0, 0.0, 0.0], (0.0, t1), jac=rober_jac)
        a = ade.solve(prob, "Rodas5P", rtol=1e-6, atol=1e-10)
        b = ade.solve(prob, "Rodas5P", rtol=1e-6, atol=1e-10, autonomous=True)
        c = ade.solve(prob, "Rodas5P", rtol=1e-6, atol=1e-10, autonomous=False)
        np.testing.assert_array_equal(a.u, b.u)
        np.testing.assert_array_equal(a.u, c.u)
        assert c.stats.nf - b.stats.nf == c.stats.naccept
        probes.append(a.stats.nf - b.stats.nf)
    assert probes[0] == probes[1] and 0 < probes[0] <= 10


def _fixed_step_order(alg, jac, counts=(16, 32, 64, 128)):
    def f(u, p, t):  # u' = -u^3 + v^3 + v', v = 1 + sin(2t)/2: u = v
        v = 1.0 + 0.5 * math.sin(2.0 * t)
        return -(u**3) + v**3 + math.cos(2.0 * t)

    prob = ade.ODEProblem(f, [1.0], (0.0, 2.0), jac=jac)
    exact = 1.0 + 0.5 * math.sin(4.0)
    errors = []
    for n in counts:
        sol = ade.solve(prob, alg, dt=2.0 / n, adaptive=False, saveat=[2.0], dense=False)
        errors.append(abs(float(sol.u[-1, 0]) - exact))
    return fit_order([2.0 / n for n in counts], errors)


def test_rosenbrock23_keeps_order_2_with_any_jacobian():
    """A W-method: with J replaced by zero it is still second order, while Rodas5P (which
    needs the exact J for order 5) drops to order 2."""
    zero = np.zeros((1, 1))
    assert abs(_fixed_step_order("Rosenbrock23", zero) - 2.0) < 0.25
    assert abs(_fixed_step_order("Rodas5P", None) - 5.0) < 0.25
    assert _fixed_step_order("Rodas5P", zero) < 2.5


def test_eigen_estimate_bounds_the_spectral_radius():
    """The Stepper contract's ``eigen_estimate`` (read by stiffness-switching composites):
    ``||J||_inf`` at the last step's start; ``None`` before a step and with a mass matrix."""
    reg = ade.registry()
    be = reg.get_backend("numpy")
    u0 = np.array([1.0, 0.0, 0.0])
    prob = ade.ODEProblem(rober, u0, (0.0, 1.0), jac=rober_jac)
    stepper = reg.solver("Rodas5P").factory(RHS(rober, None, (3,), np.float64, be, prob), be)
    assert stepper.eigen_estimate is None
    stepper.init(0.0, u0, rober(u0, None, 0.0))
    u1, _ = stepper.step(0.0, u0, 1e-3)
    stepper.accept(1e-3, u1)
    J = rober_jac(u0, None, 0.0)
    assert stepper.eigen_estimate == pytest.approx(np.max(np.abs(J).sum(axis=1)))
    assert stepper.eigen_estimate >= np.max(np.abs(np.linalg.eigvals(J)))
    with_mass = prob.remake(mass_matrix=np.eye(3))
    stepper = reg.solver("Rodas5P").factory(
        RHS(rober, None, (3,), np.float64, be, with_mass), be)
    stepper.init(0.0, u0, rober(u0, None, 0.0))
    stepper.step(0.0, u0, 1e-3)
    assert stepper.eigen_estimate is None


@pytest.mark.parametrize("alg", METHODS)
def test_f_returning_one_output_buffer(alg):
    """A user's ``f`` may write into and return the same array every call: the values the
    stepper keeps across calls (f(u_n), reused stages, FSAL, finite differences) are copies."""
    out = np.empty(3)

    def rober_inplace(u, p, t):
        out[:] = rober(u, p, t)
        return out

    kwargs = {"rtol": 1e-6, "atol": 1e-10}
    a = ade.solve(ade.ODEProblem(rober_inplace, [1.0, 0.0, 0.0], (0.0, 100.0)), alg, **kwargs)
    b = ade.solve(ade.ODEProblem(rober, [1.0, 0.0, 0.0], (0.0, 100.0)), alg, **kwargs)
    assert a.stats.naccept == b.stats.naccept
    np.testing.assert_allclose(a.u, b.u, rtol=1e-13, atol=1e-16)
