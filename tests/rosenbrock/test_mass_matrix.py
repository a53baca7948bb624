"""Mass matrices: ``M u' = A u`` against the matrix exponential, a manufactured nonlinear
non-autonomous problem, and ROBER as an index-1 DAE (singular ``M``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.linalg import expm, solve

import autodiffeq as ade
from autodiffeq.testing import fit_order

from .conftest import METHODS, ROBER_MASS, rober_dae, scaled_error

ORDERS = {"Rosenbrock23": 2, "Rodas3P": 3, "Rodas4": 4, "Rodas5P": 5}

M = np.array([[2.0, 0.5, 0.0], [0.3, 1.5, 0.2], [0.0, 0.4, 1.0]])
A = np.array([[-1.0, 3.0, 0.0], [-2.0, -1.0, 1.0], [0.5, 0.3, -4.0]])
U0 = np.array([1.0, -0.5, 2.0])
T1 = 2.0


def _errors(prob, exact, alg, counts):
    errors = []
    for n in counts:
        sol = ade.solve(prob, alg, dt=T1 / n, adaptive=False, saveat=[T1], dense=False)
        errors.append(float(np.max(np.abs(np.asarray(sol.u[-1]) - exact))))
    return errors


# step counts in each method's asymptotic range (errors between ~1e-4 and ~1e-12)
COUNTS = {"Rosenbrock23": (32, 64, 128), "Rodas3P": (32, 64, 128), "Rodas4": (16, 32, 64),
          "Rodas5P": (8, 16, 32)}


@pytest.mark.parametrize("alg", METHODS)
def test_linear_mass_matrix_convergence(alg):
    """``M u' = A u``: exact ``expm(M^{-1} A t) u0``. Rodas5P's stability function matches
    ``e^z`` to order 6, so on this linear constant-coefficient problem it converges faster
    than its order (one-sided check); the others show their order."""
    exact = expm(solve(M, A) * T1) @ U0
    prob = ade.ODEProblem(lambda u, p, t: A @ u, U0, (0.0, T1), mass_matrix=M)
    counts = COUNTS[alg]
    slope = fit_order([T1 / n for n in counts], _errors(prob, exact, alg, counts))
    if alg == "Rodas5P":
        assert slope > ORDERS[alg] - 0.25
    else:
        assert abs(slope - ORDERS[alg]) < 0.25


def _phi(t):
    return np.array([math.sin(t), math.cos(2 * t), 1.0 + 0.5 * t * t])


def _dphi(t):
    return np.array([math.cos(t), -2 * math.sin(2 * t), t])


def _manufactured(u, p, t):
    """``M u' = A u + g(u) - A phi - g(phi) + M phi'`` with ``g(u) = -u**3 / 4``: u = phi."""
    g = -0.25 * u**3
    ph = _phi(t)
    return A @ u + g - (A @ ph - 0.25 * ph**3) + M @ _dphi(t)


@pytest.mark.parametrize("alg", METHODS)
def test_nonlinear_nonautonomous_mass_matrix_convergence(alg):
    prob = ade.ODEProblem(_manufactured, _phi(0.0), (0.0, T1), mass_matrix=M)
    # Rodas5P reaches its asymptotic order late here (local slopes 4.3, 4.7, 4.8, 4.9)
    counts = (64, 128, 256) if alg == "Rodas5P" else COUNTS[alg]
    errors = _errors(prob, _phi(T1), alg, counts)
    slope = fit_order([T1 / n for n in counts], errors)
    assert abs(slope - ORDERS[alg]) < 0.3, (slope, errors)


@pytest.mark.parametrize("alg", METHODS)
def test_invertible_mass_matrix_is_the_same_method_as_the_explicit_ode(alg):
    """With ``M`` invertible, the method applied to ``M u' = f`` is the method applied to
    ``u' = M^{-1} f`` (with ``J = M^{-1} df/du``): the same numbers up to the rounding of the
    finite-difference ``f_t`` (a wrong mass-matrix term would differ by ~1e-3 at this step)."""

    def jac(u, p, t):
        return A - 0.75 * np.diag(u**2)

    with_mass = ade.ODEProblem(_manufactured, _phi(0.0), (0.0, T1), mass_matrix=M, jac=jac)
    plain = ade.ODEProblem(lambda u, p, t: solve(M, _manufactured(u, p, t)), _phi(0.0),
                           (0.0, T1), jac=lambda u, p, t: solve(M, jac(u, p, t)))
    a = ade.solve(with_mass, alg, dt=T1 / 20, adaptive=False)
    b = ade.solve(plain, alg, dt=T1 / 20, adaptive=False)
    np.testing.assert_allclose(a.u, b.u, rtol=1e-9, atol=1e-11)
    ts = np.linspace(0.0, T1, 37)
    np.testing.assert_allclose(a(ts), b(ts), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("alg", METHODS)
def test_rober_dae_against_the_ode_reference(alg, rober_ref_1e5):
    """Index-1 DAE (third equation y1 + y2 + y3 = 1, M = diag(1, 1, 0)) against SciPy's Radau
    on the ODE form; the constraint holds at every step and in the dense output."""
    rtol, atol = 1e-6, 1e-10
    prob = ade.ODEProblem(rober_dae, [1.0, 0.0, 0.0], (0.0, 1e5), mass_matrix=ROBER_MASS)
    sol = ade.solve(prob, alg, rtol=rtol, atol=atol)
    assert sol.success
    bound = 100.0 if alg == "Rosenbrock23" else 3.0
    assert scaled_error(sol.u[-1], rober_ref_1e5.y[:, -1], rtol, atol) < bound
    ts = np.array([1e-3, 1.0, 1e3, 5e4])
    assert scaled_error(sol(ts), rober_ref_1e5.sol(ts).T, rtol, atol) < bound
    assert np.max(np.abs(sol.u.sum(axis=1) - 1.0)) < 1e-10
    assert np.max(np.abs(np.asarray(sol(ts)).sum(axis=1) - 1.0)) < 1e-10


def test_dae_with_inconsistent_algebraic_guess_is_projected_by_the_first_step():
    """Rodas methods are stiffly accurate: after one step the constraint holds even from an
    inconsistent y3 (the algebraic variable is determined by the last stage)."""
    prob = ade.ODEProblem(rober_dae, [1.0, 0.0, 0.3], (0.0, 1e-3), mass_matrix=ROBER_MASS)
    sol = ade.solve(prob, "Rodas5P", dt=1e-4, adaptive=False)
    assert abs(float(np.sum(sol.u[1])) - 1.0) < 1e-12


def test_mass_matrix_on_the_strict_backend_and_in_float32():
    exact = expm(solve(M, A) * T1) @ U0
    reg = ade.registry()
    be = reg.get_backend("array_api_strict")
    xp = be.xp
    A_b = xp.asarray(A)
    prob = ade.ODEProblem(lambda u, p, t: A_b @ u, xp.asarray(U0), (0.0, T1),
                          mass_matrix=M, jac=A)
    sol = ade.solve(prob, "Rodas4", rtol=1e-8, atol=1e-10, backend="array_api_strict")
    assert be.is_native(sol.u)
    assert np.max(np.abs(be.to_host(sol.u[-1, ...]) - exact)) < 1e-7
    prob32 = ade.ODEProblem(lambda u, p, t: A.astype(np.float32) @ u, U0.astype(np.float32),
                            (0.0, T1), mass_matrix=M)
    sol32 = ade.solve(prob32, "Rodas5P", rtol=1e-5, atol=1e-6)
    assert sol32.u.dtype == np.float32 and sol32(1.0).dtype == np.float32
    assert np.max(np.abs(sol32.u[-1] - exact)) < 1e-4


def test_mass_matrix_of_the_wrong_size_is_rejected():
    with pytest.raises(ade.ShapeMismatch, match="mass_matrix"):
        ade.ODEProblem(lambda u, p, t: -u, [1.0, 2.0], (0.0, 1.0), mass_matrix=np.eye(3))
