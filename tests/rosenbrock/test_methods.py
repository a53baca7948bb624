"""The registered Rosenbrock methods through the public API: Rosenbrock23 against Shampine &
Reichelt's own formulation (one step of the stepper made by the spec's factory), the declared
capabilities and options, the plugin's public helpers (``RosenbrockTableau``,
``dense_from_rodas_H``), and a light import. The tableau data themselves are unit-tested in
``test_tableaus.py`` (internal names)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import autodiffeq as ade
from autodiffeq.stepper import RHS
from autodiffeq_plugins.rosenbrock import RosenbrockTableau, dense_from_rodas_H


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
