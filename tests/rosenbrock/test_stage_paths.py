"""The Rosenbrock stepper's NumPy fast path (per-stage sums buffers, in-place LAPACK solves)
against its general path (the array-API code that runs on every backend): the same steps and
the same values, for every method (Rosenbrock23's FSAL stage, Rodas3P's reused stage values),
with and without a time derivative, and with an ``f`` that returns one buffer every time."""

from __future__ import annotations

import numpy as np
import pytest

import autodiffeq as ade

from .conftest import METHODS, VDP_EPS


def vdp_short(u, p, t):
    return np.array([u[1], ((1.0 - u[0] ** 2) * u[1] - u[0]) / (1e3 * VDP_EPS)])


def forced(u, p, t):
    """A stiff, non-autonomous linear system: its stages need ``f_t``."""
    return np.array([-50.0 * (u[0] - np.cos(t)), -2.0 * u[1] + u[0] * np.sin(3.0 * t)])


PROBLEMS = {
    "autonomous": (vdp_short, [2.0, -0.66], (0.0, 0.5)),
    "non-autonomous": (forced, [0.0, 1.0], (0.0, 2.0)),
}


def _assert_same_steps_to_rounding(fast, general, be, span, stages=8):
    """The two paths take the same steps to the same values up to rounding. They may sum
    the stages in different orders (identical here, but BLAS kernels differ across CPUs):
    the error estimates then differ by ~stages eps / rtol (rtol 1e-6) relative, each step by
    about as much, accumulating at worst linearly over the steps into the times; the states
    are compared at the same times (the general solve's dense output at the fast path's
    times), where only the rounding of the values remains (rtol 1e-10, atol 1e-12: ~1e4
    times eps |u| per step)."""
    assert (fast.stats.naccept, fast.stats.nreject) == (general.stats.naccept,
                                                        general.stats.nreject)
    drift = fast.stats.naccept * stages * np.finfo(np.float64).eps / 1e-6
    np.testing.assert_allclose(fast.t, general.t, rtol=0, atol=drift * span)
    np.testing.assert_allclose(fast.u, be.to_host(general(be.xp.asarray(fast.t))),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("alg", METHODS)
@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_fast_path_takes_the_steps_of_the_general_path(alg, name):
    f, u0, tspan = PROBLEMS[name]
    be = ade.registry().get_backend("array_api_strict")
    xp = be.xp

    def f_strict(u, p, t):
        return xp.asarray(f(np.asarray(be.to_host(u)), p, t))

    fast = ade.solve(ade.ODEProblem(f, u0, tspan), alg, rtol=1e-6, atol=1e-8)
    general = ade.solve(ade.ODEProblem(f_strict, xp.asarray(u0), tspan), alg, rtol=1e-6,
                        atol=1e-8, backend="array_api_strict")
    assert fast.success and general.success
    # was t at rtol=1e-12 and u at their own times: exact only while both paths round alike
    _assert_same_steps_to_rounding(fast, general, be, tspan[1] - tspan[0])


@pytest.mark.parametrize("alg", METHODS)
def test_f_returning_one_buffer_every_time_gives_the_same_solution(alg):
    out = np.empty(2)

    def f_buffer(u, p, t):
        out[0] = u[1]
        out[1] = ((1.0 - u[0] ** 2) * u[1] - u[0]) / (1e3 * VDP_EPS)
        return out

    ref = ade.solve(ade.ODEProblem(vdp_short, [2.0, -0.66], (0.0, 0.5)), alg, rtol=1e-6)
    sol = ade.solve(ade.ODEProblem(f_buffer, [2.0, -0.66], (0.0, 0.5)), alg, rtol=1e-6)
    assert sol.stats.naccept == ref.stats.naccept
    np.testing.assert_array_equal(sol.u, ref.u)


def test_fast_path_keeps_float32():
    A = np.array([[-100.0, 1.0], [0.0, -0.5]], dtype=np.float32)
    u0 = np.array([1.0, 1.0], dtype=np.float32)
    sol = ade.solve(ade.ODEProblem(lambda u, p, t: A @ u, u0, (0.0, 2.0)), "Rodas5P",
                    rtol=1e-5, atol=1e-6)
    assert sol.u.dtype == np.float32
    from scipy.linalg import expm

    exact = expm(A.astype(np.float64) * 2.0) @ u0.astype(np.float64)
    assert np.max(np.abs(sol.u[-1] - exact)) < 1e-5


def nan_outside(u, p, t):
    """Non-finite outside |u| <= 1.05, where only the trial stages of a too-large step go."""
    if abs(u[0]) > 1.05 or abs(u[1]) > 1.05:
        return np.array([np.nan, np.nan])
    return np.array([-50.0 * (u[0] - np.cos(t)), u[0] - u[1]])


@pytest.mark.parametrize("alg", METHODS)
def test_fast_path_recovers_from_a_non_finite_attempt_as_the_general_path_does(alg):
    """The fast path's products run over every stage row (zero coefficients for later
    stages), so rows left non-finite by a failed attempt must not leak into the retry."""
    be = ade.registry().get_backend("array_api_strict")
    xp = be.xp

    def f_strict(u, p, t):
        return xp.asarray(nan_outside(np.asarray(be.to_host(u)), p, t))

    kw = dict(rtol=1e-6, atol=1e-8, dt=4.0)
    fast = ade.solve(ade.ODEProblem(nan_outside, [0.0, 0.0], (0.0, 5.0)), alg, **kw)
    general = ade.solve(ade.ODEProblem(f_strict, xp.asarray([0.0, 0.0]), (0.0, 5.0)), alg,
                        backend="array_api_strict", **kw)
    assert fast.success and fast.stats.nreject >= 1
    _assert_same_steps_to_rounding(fast, general, be, 5.0)  # was u at their own times
