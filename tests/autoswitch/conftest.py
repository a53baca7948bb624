"""Stiff test problems for the switching solvers, and SciPy Radau references (computed once
per session, at tolerances far below the ones tested)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

# Robertson's chemical kinetics (ROBER; Hairer & Wanner II, IV.1 and IV.10)
K1, K2, K3 = 0.04, 3e7, 1e4
ROBER_U0 = [1.0, 0.0, 0.0]
ROBER_T1 = 1e11
ROBER_TIMES = np.concatenate([[0.0], np.logspace(-5, 11, 33)])


def rober(u, p, t):
    y1, y2, y3 = u[0], u[1], u[2]
    return np.array([-K1 * y1 + K3 * y2 * y3, K1 * y1 - K2 * y2 * y2 - K3 * y2 * y3,
                     K2 * y2 * y2])


def rober_jac(u, p, t):
    y2, y3 = u[1], u[2]
    return np.array([[-K1, K3 * y3, K3 * y2],
                     [K1, -2 * K2 * y2 - K3 * y3, -K3 * y2],
                     [0.0, 2 * K2 * y2, 0.0]])


def rober_dae(u, p, t):
    """ROBER as an index-1 DAE: the third equation replaced by y1 + y2 + y3 = 1."""
    y1, y2, y3 = u[0], u[1], u[2]
    return np.array([-K1 * y1 + K3 * y2 * y3, K1 * y1 - K2 * y2 * y2 - K3 * y2 * y3,
                     y1 + y2 + y3 - 1.0])


ROBER_MASS = np.diag([1.0, 1.0, 0.0])

# Van der Pol with mu = 1e6 in Hairer's scaled form (VDPOL of the Test Set for IVP Solvers):
# y1' = y2, y2' = ((1 - y1^2) y2 - y1) / eps, eps = 1/mu = 1e-6, y(0) = (2, 0), t in [0, 2]
VDP_EPS = 1e-6
VDP_U0 = [2.0, 0.0]
VDP_T1 = 2.0
VDP_TIMES = np.linspace(0.0, VDP_T1, 41)


def vdp(u, eps, t):
    return np.array([u[1], ((1.0 - u[0] ** 2) * u[1] - u[0]) / eps])


def vdp_jac(u, eps, t):
    return np.array([[0.0, 1.0], [(-2.0 * u[0] * u[1] - 1.0) / eps, (1.0 - u[0] ** 2) / eps]])


def _radau(f, jac, u0, t1, p, times, rtol, atol):
    ref = solve_ivp(lambda t, u: f(u, p, t), (0.0, t1), u0, method="Radau", rtol=rtol,
                    atol=atol, jac=lambda t, u: jac(u, p, t), t_eval=times)
    assert ref.success
    return ref.y.T


@pytest.fixture(scope="session")
def rober_ref():
    """SciPy Radau (rtol 1e-10, atol 1e-16, exact Jacobian) on ROBER at ``ROBER_TIMES``."""
    return _radau(rober, rober_jac, ROBER_U0, ROBER_T1, None, ROBER_TIMES, 1e-10, 1e-16)


@pytest.fixture(scope="session")
def vdp_ref():
    """SciPy Radau (rtol = atol = 1e-10, exact Jacobian) on VDPOL at ``VDP_TIMES``."""
    return _radau(vdp, vdp_jac, VDP_U0, VDP_T1, VDP_EPS, VDP_TIMES, 1e-10, 1e-10)


def scaled_error(u, ref, rtol, atol):
    """``max |u - ref| / (atol + rtol |ref|)``: 1 means "as accurate as the tolerances"."""
    u = np.asarray(u, dtype=float)
    ref = np.asarray(ref, dtype=float)
    return float(np.max(np.abs(u - ref) / (atol + rtol * np.abs(ref))))


def switches(sol):
    """The ``(t, "stiff" | "nonstiff")`` switches of a dense solve with a switching solver."""
    return list(sol.dense_output.stepper.switches)
