"""Stiff test problems and SciPy reference solutions (computed once per session)."""

from __future__ import annotations

import numpy as np
import pytest

METHODS = ("Rosenbrock23", "Rodas3P", "Rodas4", "Rodas5P")

# Robertson's chemical kinetics (ROBER; Hairer & Wanner II, IV.1 and IV.10)
K1, K2, K3 = 0.04, 3e7, 1e4


def rober(u, p, t):
    y1, y2, y3 = u
    return np.array([-K1 * y1 + K3 * y2 * y3, K1 * y1 - K2 * y2 * y2 - K3 * y2 * y3,
                     K2 * y2 * y2])


def rober_jac(u, p, t):
    y1, y2, y3 = u
    return np.array([[-K1, K3 * y3, K3 * y2],
                     [K1, -2 * K2 * y2 - K3 * y3, -K3 * y2],
                     [0.0, 2 * K2 * y2, 0.0]])


def rober_dae(u, p, t):
    """ROBER as an index-1 DAE: the third equation replaced by y1 + y2 + y3 = 1."""
    y1, y2, y3 = u
    return np.array([-K1 * y1 + K3 * y2 * y3, K1 * y1 - K2 * y2 * y2 - K3 * y2 * y3,
                     y1 + y2 + y3 - 1.0])


ROBER_MASS = np.diag([1.0, 1.0, 0.0])

# Van der Pol in Hairer & Wanner's scaled form (VDPOL, II IV.10): eps = 1e-6 (mu = 1e3)
VDP_EPS = 1e-6
VDP_U0 = [2.0, -0.66]
VDP_T1 = 2.0


def vdp(u, p, t):
    return np.array([u[1], ((1.0 - u[0] ** 2) * u[1] - u[0]) / VDP_EPS])


def vdp_jac(u, p, t):
    return np.array([[0.0, 1.0],
                     [(-2.0 * u[0] * u[1] - 1.0) / VDP_EPS, (1.0 - u[0] ** 2) / VDP_EPS]])


def _radau(f, jac, u0, t1, rtol, atol):
    from scipy.integrate import solve_ivp

    sol = solve_ivp(lambda t, u: f(u, None, t), (0.0, t1), u0, method="Radau", rtol=rtol,
                    atol=atol, jac=lambda t, u: jac(u, None, t), dense_output=True)
    assert sol.success
    return sol


@pytest.fixture(scope="session")
def rober_ref_1e5():
    """SciPy Radau (rtol 1e-12, atol 1e-14) on ROBER over [0, 1e5], with dense output."""
    return _radau(rober, rober_jac, [1.0, 0.0, 0.0], 1e5, 1e-12, 1e-14)


@pytest.fixture(scope="session")
def rober_ref_1e11():
    """SciPy Radau (rtol 1e-12, atol 1e-14) on ROBER over [0, 1e11]."""
    return _radau(rober, rober_jac, [1.0, 0.0, 0.0], 1e11, 1e-12, 1e-14)


@pytest.fixture(scope="session")
def vdp_ref():
    """SciPy Radau (rtol = atol = 1e-11) on VDPOL over [0, 2]."""
    return _radau(vdp, vdp_jac, VDP_U0, VDP_T1, 1e-11, 1e-11)


def scaled_error(u, ref, rtol, atol):
    """``max |u - ref| / (atol + rtol |ref|)``: 1 means "as accurate as the tolerances"."""
    u = np.asarray(u, dtype=float)
    ref = np.asarray(ref, dtype=float)
    return float(np.max(np.abs(u - ref) / (atol + rtol * np.abs(ref))))
