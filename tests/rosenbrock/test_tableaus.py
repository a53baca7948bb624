"""The shipped Rosenbrock tableaux from first principles: order conditions (Hairer & Wanner
II, Table IV.7.1, up to order 4), consistency of the transformed coefficients, L- and
A-stability, the dense-output form, Rosenbrock23 against Shampine & Reichelt's own
formulation, and the registered capabilities."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import autodiffeq as ade
from autodiffeq.stepper import RHS
from autodiffeq_plugins.rosenbrock import RosenbrockTableau, dense_from_rodas_H
from autodiffeq_plugins.rosenbrock.tableaus import (
    RODAS3P,
    RODAS4,
    RODAS5P,
    ROSENBROCK23,
    TABLEAUS,
)

NAMES = list(TABLEAUS)


def order_conditions(tab: RosenbrockTableau, b: np.ndarray) -> list[tuple[int, float]]:
    """Residuals of the Rosenbrock order conditions up to order 4 for weights ``b`` in the
    classical form: ``beta_ij = alpha_ij + gamma_ij`` (j < i), ``beta'_i = sum_j beta_ij``,
    ``alpha_i = sum_j alpha_ij`` (Hairer & Wanner II, Table IV.7.1)."""
    alpha, Gamma, _ = tab.classical()
    g = tab.gamma
    B = alpha + Gamma - np.diag(np.diag(Gamma))
    a = alpha.sum(axis=1)
    bp = B.sum(axis=1)
    return [
        (1, b.sum() - 1.0),
        (2, b @ bp - (0.5 - g)),
        (3, b @ a**2 - 1.0 / 3.0),
        (3, b @ (B @ bp) - (1.0 / 6.0 - g + g * g)),
        (4, b @ a**3 - 0.25),
        (4, b @ (a * (alpha @ bp)) - (1.0 / 8.0 - g / 3.0)),
        (4, b @ (B @ a**2) - (1.0 / 12.0 - g / 3.0)),
        (4, b @ (B @ (B @ bp)) - (1.0 / 24.0 - g / 2.0 + 1.5 * g * g - g**3)),
    ]


def _check_order(tab: RosenbrockTableau, b: np.ndarray, order: int) -> None:
    residuals = order_conditions(tab, b)
    for q, r in residuals:
        if q <= order:
            assert abs(r) < 1e-13, (tab.name, q, r)
    if order < 4:  # and the next order fails: the declared order is the exact one
        assert max(abs(r) for q, r in residuals if q == order + 1) > 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_transformed_coefficients_are_consistent(name):
    """``alpha_i`` and ``gamma_i`` recomputed from ``(A, C, gamma)`` match the tabulated ones
    (catches transcription errors in ``A``, ``C`` and ``d``)."""
    tab = TABLEAUS[name]
    alpha, Gamma, _ = tab.classical()
    np.testing.assert_allclose(alpha.sum(axis=1), tab.alpha, atol=1e-14)
    np.testing.assert_allclose(Gamma.sum(axis=1), tab.gammas, atol=1e-14)
    np.testing.assert_allclose(np.diag(Gamma), tab.gamma, rtol=1e-13)


@pytest.mark.parametrize("name", NAMES)
def test_order_conditions_of_the_solution(name):
    tab = TABLEAUS[name]
    _check_order(tab, tab.classical()[2], min(tab.order, 4))


@pytest.mark.parametrize("name", NAMES)
def test_order_conditions_of_the_embedded_solution(name):
    tab = TABLEAUS[name]
    _, Gamma, _ = tab.classical()
    mhat = tab.m - tab.m_error
    _check_order(tab, mhat @ Gamma, min(tab.error_order, 4))


def test_rosenbrock23_is_a_w_method():
    """Order 2 for any matrix in place of ``J``: sum b_i alpha_i = 1/2 and
    sum b_i gamma_ij (j < i) = -gamma separately (HW II, IV.7, W-methods)."""
    alpha, Gamma, b = ROSENBROCK23.classical()
    assert ROSENBROCK23.w_method
    assert abs(b @ alpha.sum(axis=1) - 0.5) < 1e-15
    off = Gamma - np.diag(np.diag(Gamma))
    assert abs(b @ off.sum(axis=1) + ROSENBROCK23.gamma) < 1e-15


@pytest.mark.parametrize("name", NAMES)
def test_l_stability(name):
    tab = TABLEAUS[name]
    # A-stable: |R| <= 1 on the imaginary axis and in the left half-plane ...
    y = np.logspace(-3, 8, 300)
    assert np.max(np.abs(tab.stability_function(1j * y))) <= 1.0 + 1e-12
    x, yy = np.meshgrid(-np.logspace(-2, 6, 40), np.linspace(-1e3, 1e3, 41))
    assert np.max(np.abs(tab.stability_function((x + 1j * yy).ravel()))) <= 1.0 + 1e-12
    # ... and R(z) -> 0 as z -> -inf (L-stable)
    assert abs(tab.stability_function(-1e10)[0]) < 1e-8
    # R(z) approximates e^z to (at least) the method's order
    z = np.array([-0.1, -0.05])
    d = np.abs(tab.stability_function(z) - np.exp(z))
    assert np.log2(d[0] / d[1]) > tab.order + 1 - 0.15


@pytest.mark.parametrize("tab", [RODAS3P, RODAS4, RODAS5P], ids=lambda t: t.name)
def test_rodas_methods_are_stiffly_accurate(tab):
    """``u_new`` is the argument of the last stage plus its increment and ``alpha_s = 1``:
    the methods solve the algebraic part of index-1 DAEs exactly at each step."""
    s = tab.stages
    assert tab.alpha[-1] == 1.0 and tab.m[-1] == 1.0
    np.testing.assert_array_equal(tab.m[: s - 1], tab.A[-1, : s - 1])


@pytest.mark.parametrize("name", NAMES)
def test_dense_output_ends_at_the_step_solution(name):
    tab = TABLEAUS[name]
    np.testing.assert_allclose(tab.dense.sum(axis=1), tab.m, atol=1e-12)


def test_dense_polynomial_is_the_rodas_H_form():
    rng = np.random.default_rng(1)
    H = rng.normal(size=(3, 5))
    m = rng.normal(size=5)
    U = rng.normal(size=(5, 4))
    u0 = rng.normal(size=4)
    P = dense_from_rodas_H(H, m)
    u1 = u0 + m @ U
    k = H @ U
    for theta in (0.0, 0.3, 0.77, 1.0):
        julia = (1 - theta) * u0 + theta * (
            u1 + (1 - theta) * (k[0] + theta * (k[1] + theta * k[2]))
        )
        ours = u0 + (theta ** np.arange(1, P.shape[1] + 1)) @ (P.T @ U)
        np.testing.assert_allclose(ours, julia, rtol=1e-13, atol=1e-13)


def test_stage_reuse_and_first_same_as_last():
    assert ROSENBROCK23.fsal_stage == 2
    assert RODAS4.fsal_stage is None and RODAS5P.fsal_stage is None
    # Rodas3P: stage 3 is evaluated at (u, t) like stage 1, stage 5 at stage 4's argument
    assert RODAS3P.stage_sources() == (0, 1, 0, 3, 3)
    assert RODAS5P.stage_sources() == tuple(range(8))


def test_tableau_validation():
    with pytest.raises(ValueError, match="strictly lower"):
        RosenbrockTableau(name="bad", gamma=0.5, A=np.eye(2), C=np.zeros((2, 2)),
                          alpha=np.zeros(2), gammas=np.zeros(2), m=np.ones(2), order=1)


# ---------------------------------------------------------------- Rosenbrock23 vs ode23s
_MM = np.array([[1.5, 0.2], [0.1, 0.8]])
_AA = np.array([[-3.0, 1.0], [0.5, -2.0]])
_C = np.array([0.7, -0.4])


def _f(u, p, t):  # nonlinear, quadratic in t (the third-order f_t difference is exact)
    return _AA @ u - 0.25 * u**3 + t * t * _C


def _jac(u, p, t):
    return _AA - 0.75 * np.diag(u**2)


def _shampine_reichelt_step(u, t, h):
    """One step of ode23s in Shampine & Reichelt's form (SIAM J. Sci. Comput. 1997, and the
    mass-matrix version of Shampine, Reichelt & Kierzenka 1999)."""
    d = 1.0 / (2.0 + np.sqrt(2.0))
    e32 = 6.0 + np.sqrt(2.0)
    T = 2.0 * t * _C
    W = _MM - h * d * _jac(u, None, t)
    F0 = _f(u, None, t)
    k1 = np.linalg.solve(W, F0 + h * d * T)
    F1 = _f(u + 0.5 * h * k1, None, t + 0.5 * h)
    k2 = np.linalg.solve(W, F1 - _MM @ k1) + k1
    u_new = u + h * k2
    F2 = _f(u_new, None, t + h)
    k3 = np.linalg.solve(W, F2 - e32 * (_MM @ k2 - F1) - 2.0 * (_MM @ k1 - F0) + h * d * T)
    err = h / 6.0 * (k1 - 2.0 * k2 + k3)

    def dense(theta):
        c1 = theta * (1 - theta) / (1 - 2 * d)
        c2 = theta * (theta - 2 * d) / (1 - 2 * d)
        return u + h * (c1 * k1 + c2 * k2)

    return u_new, err, dense


def test_rosenbrock23_table_is_shampine_reichelts_method():
    reg = ade.registry()
    be = reg.get_backend("numpy")
    u0 = np.array([0.8, -0.3])
    t0, h = 0.3, 0.1
    prob = ade.ODEProblem(_f, u0, (t0, t0 + h), mass_matrix=_MM, jac=_jac)
    stepper = reg.solver("Rosenbrock23").factory(RHS(_f, None, (2,), np.float64, be, prob), be)
    stepper.init(t0, u0, _f(u0, None, t0))
    u_new, err = stepper.step(t0, u0, h)
    ref_u, ref_err, ref_dense = _shampine_reichelt_step(u0, t0, h)
    np.testing.assert_allclose(u_new, ref_u, rtol=1e-12, atol=1e-14)
    # err = sum (m - mhat) U = u_new - u3 is ode23s' estimate up to sign
    np.testing.assert_allclose(err, -ref_err, rtol=1e-8, atol=1e-16)
    stepper.accept(t0 + h, u_new)
    data = stepper.dense_data()
    thetas = np.array([0.1, 0.5, 0.9])
    ours = stepper.interpolate(thetas, np.full(3, h), np.tile(u0, (3, 1)),
                               np.tile(u_new, (3, 1)), np.stack([data] * 3))
    np.testing.assert_allclose(ours, [ref_dense(th) for th in thetas], rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------- registration
def test_registered_specs_declare_honest_capabilities():
    reg = ade.registry()
    expected = {"Rosenbrock23": (2, 3, 2, True), "Rodas3P": (3, 2, 3, False),
                "Rodas4": (4, 3, 3, False), "Rodas5P": (5, 4, 4, False)}
    for name, (order, error_order, dense_order, fsal) in expected.items():
        spec = reg.solver(name)
        assert (spec.order, spec.error_order, spec.dense_order, spec.fsal) == (
            order, error_order, dense_order, fsal)
        assert spec.family == "rosenbrock" and spec.plugin == "rosenbrock"
        assert spec.stiff and spec.mass_matrix and spec.needs_jacobian and spec.adaptive
        assert spec.requires == ("lu",) and spec.default_priority == 0
        assert set(spec.options) == {"jac_mode", "autonomous"}
        assert spec.reference


def test_unknown_option_is_rejected():
    prob = ade.ODEProblem(lambda u, p, t: -u, [1.0], (0.0, 1.0))
    with pytest.raises(ade.InvalidArgument, match="jac_mode"):
        ade.solve(prob, "Rodas5P", jac_mode="complex-step")
    with pytest.raises(ade.InvalidArgument, match="unknown option"):
        ade.solve(prob, "Rodas5P", linsolve="krylov")


def test_importing_the_plugin_is_light():
    code = (
        "import sys, autodiffeq_plugins.rosenbrock, autodiffeq as ade; "
        "ade.registry().solvers(); "
        "print('scipy' in sys.modules, 'autodiffeq_plugins.rosenbrock.stepper' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]
