"""Solve semantics: accuracy against independent references, retcodes, saving, stopping,
dense output, statistics and warnings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
from scipy.integrate import solve_ivp

import autodiffeq as ade

from .conftest import lotka_volterra

ADAPTIVE = ["BS3", "DP5", "Tsit5", "Vern7"]


def _scipy_reference(f, u0, tspan, p, t_eval):
    ref = solve_ivp(lambda t, u: f(u, p, t), tspan, u0, method="DOP853", rtol=1e-13,
                    atol=1e-13, t_eval=t_eval)
    return ref.y.T


@pytest.mark.parametrize("alg", ADAPTIVE)
@pytest.mark.parametrize("rtol", [1e-4, 1e-7])
def test_lotka_volterra_matches_scipy_reference(alg, rtol, lv_problem):
    times = np.linspace(0.0, 10.0, 11)
    sol = ade.solve(lv_problem, alg, rtol=rtol, atol=rtol * 1e-2, saveat=times)
    ref = _scipy_reference(lotka_volterra, [1.0, 1.0], (0.0, 10.0), lv_problem.p, times)
    assert sol.retcode == "Success"
    np.testing.assert_array_equal(sol.t, times)
    # global error over 10 time units: within a modest multiple of the tolerance
    assert np.max(np.abs(sol.u - ref)) < 50 * rtol * np.max(np.abs(ref))


def _van_der_pol(u, p, t):
    return np.array([u[1], p * (1 - u[0] ** 2) * u[1] - u[0]])


@pytest.mark.parametrize("alg", ADAPTIVE)
def test_van_der_pol_nonstiff_dense_output_matches_scipy(alg):
    prob = ade.ODEProblem(_van_der_pol, [2.0, 0.0], (0.0, 6.0), 1.0)
    sol = ade.solve(prob, alg, rtol=1e-8, atol=1e-10)
    times = np.linspace(0.0, 6.0, 37)
    ref = _scipy_reference(_van_der_pol, [2.0, 0.0], (0.0, 6.0), 1.0, times)
    assert np.max(np.abs(sol(times) - ref)) < 1e-5


def test_default_algorithm_depends_on_tolerance(decay_problem):
    # SciML's default: a non-stiff method that switches to Rodas5P when the problem turns
    # stiff; Tsit5 at moderate tolerances, Vern7 below rtol = 1e-7
    moderate = ade.solve(decay_problem)
    assert moderate.alg.name == "AutoTsit5Rodas5P"
    assert ade.solve(decay_problem, rtol=1e-7, atol=1e-9).alg.name == "AutoTsit5Rodas5P"
    tight = ade.solve(decay_problem, rtol=1e-10, atol=1e-12)
    assert tight.alg.name == "AutoVern7Rodas5P"
    # u' = -u is not stiff: both stay explicit and are as accurate as asked
    for sol, rtol in ((moderate, 1e-3), (tight, 1e-10)):
        assert sol.success and sol.dense_output.stepper.switches == []
        np.testing.assert_allclose(sol.u[-1], np.exp(-1.0) * np.array([1.0, 2.0]),
                                   rtol=10 * rtol)


def test_default_algorithm_is_stiff_aware():
    # u' = -1e4 (u - cos t) - sin t (u = cos t): the explicit Tsit5 would need ~1e4 steps of
    # |dt| <= 3.5e-4 to cross [0, 1]; the default switches to Rodas5P and needs few
    prob = ade.ODEProblem(lambda u, p, t: -1e4 * (u - np.cos(t)) - np.sin(t), [1.0],
                          (0.0, 1.0))
    sol = ade.solve(prob, rtol=1e-6, atol=1e-9)
    assert sol.success and sol.alg.name == "AutoTsit5Rodas5P"
    assert sol.stats.nsteps < 200
    times = np.linspace(0.0, 1.0, 11)
    np.testing.assert_allclose(sol(times)[:, 0], np.cos(times), atol=1e-5)


def test_tstops_are_hit_exactly():
    # u' = |t - 0.3|: f has a kink at 0.3; each side is a polynomial that Tsit5 integrates
    # exactly, so with the kink on a step boundary the answer is exact: u(1) = 0.29
    prob = ade.ODEProblem(lambda u, p, t: np.array([abs(t - 0.3)]), [0.0], (0.0, 1.0))
    sol = ade.solve(prob, "Tsit5", tstops=[0.3], rtol=1e-3, atol=1e-3)
    assert 0.3 in sol.t
    # exact up to rounding: a few eps of u per stage sum and step (was 1e-14, ~45 eps)
    assert abs(sol.u[-1, 0] - 0.29) < 4 * 7 * sol.stats.naccept * np.finfo(float).eps
    without = ade.solve(prob, "Tsit5", rtol=1e-3, atol=1e-3)
    assert abs(without.u[-1, 0] - 0.29) > 1e-10


def test_saveat_spacing_includes_endpoints(decay_problem):
    sol = ade.solve(decay_problem, "Tsit5", saveat=0.25)
    np.testing.assert_array_equal(sol.t, [0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(sol.u, np.exp(-sol.t)[:, None] * [1.0, 2.0], rtol=1e-3)
    uneven = ade.solve(decay_problem, "Tsit5", saveat=0.3)
    np.testing.assert_allclose(uneven.t, [0.0, 0.3, 0.6, 0.9, 1.0])
    assert uneven.t[-1] == 1.0


def test_backward_integration_and_saveat(decay_problem):
    prob = decay_problem.remake(tspan=(1.0, 0.0), u0=np.exp(-1.0) * np.array([1.0, 2.0]))
    sol = ade.solve(prob, "Vern7", rtol=1e-10, atol=1e-12, saveat=[0.8, 0.3, 0.0])
    np.testing.assert_allclose(sol.u, np.exp(-sol.t)[:, None] * [1.0, 2.0], rtol=1e-9)
    with pytest.raises(ade.InvalidArgument, match="decreasing"):
        ade.solve(prob, saveat=[0.0, 0.5])


def test_dense_output_scalar_and_vector_shapes():
    prob = ade.ODEProblem(lambda u, p, t: -u, np.ones((3, 2)), (0.0, 1.0))
    sol = ade.solve(prob, "Tsit5", rtol=1e-9, atol=1e-12)
    assert sol(0.5).shape == (3, 2)
    assert sol(np.array([0.1, 0.2, 0.9])).shape == (3, 3, 2)
    np.testing.assert_allclose(sol(0.5), np.exp(-0.5) * np.ones((3, 2)), rtol=1e-7)
    np.testing.assert_allclose(sol(sol.t), sol.u, rtol=1e-13)  # exact at the nodes


def test_scalar_state():
    prob = ade.ODEProblem(lambda u, p, t: -2.0 * u, 1.0, (0.0, 1.0))
    sol = ade.solve(prob, rtol=1e-9, atol=1e-12)
    assert sol.u.shape == (len(sol.t),)
    assert abs(float(sol(1.0)) - np.exp(-2.0)) < 1e-8


def test_per_component_atol_is_used():
    prob = ade.ODEProblem(lambda u, p, t: np.array([-u[0], -1e-6 * u[1]]), [1.0, 1e-8],
                          (0.0, 1.0))
    loose = ade.solve(prob, "Tsit5", rtol=1e-12, atol=[1e-12, 1.0])
    tight = ade.solve(prob, "Tsit5", rtol=1e-12, atol=1e-14)
    assert loose.stats.nsteps <= tight.stats.nsteps


def test_dtmax_limits_steps(decay_problem):
    sol = ade.solve(decay_problem, "Tsit5", dtmax=0.01)
    assert np.max(np.diff(sol.t)) <= 0.01 + 1e-15
    assert sol.stats.naccept >= 100


def test_maxiters_retcode_keeps_states(decay_problem):
    with pytest.warns(ade.SolverWarning, match="MaxIters"):
        sol = ade.solve(decay_problem, "Tsit5", maxiters=5, rtol=1e-12, atol=1e-14)
    assert sol.retcode == "MaxIters" and not sol.success
    assert len(sol.t) == sol.stats.naccept + 1 and sol.t[-1] < 1.0
    np.testing.assert_allclose(sol.u[-1], np.exp(-sol.t[-1]) * np.array([1.0, 2.0]),
                               rtol=1e-9)


def test_dtmin_retcode():
    prob = ade.ODEProblem(lambda u, p, t: u * u, [1.0], (0.0, 2.0))  # blows up at t = 1
    with pytest.warns(ade.SolverWarning):
        sol = ade.solve(prob, "Tsit5", dtmin=1e-6)
    assert sol.retcode == "DtLessThanMin"
    assert 0.99 < sol.t[-1] < 1.0


def test_unstable_retcode_on_non_finite_state():
    prob = ade.ODEProblem(lambda u, p, t: u * u, [1.0], (0.0, 2.0))
    with pytest.warns(ade.SolverWarning), np.errstate(all="ignore"):
        fixed = ade.solve(prob, "RK4", dt=0.01, adaptive=False)
    assert fixed.retcode == "Unstable"
    assert np.all(np.isfinite(fixed.u))  # states up to the failure are kept, all finite
    with pytest.warns(ade.SolverWarning), np.errstate(all="ignore"):
        adaptive = ade.solve(prob, "Tsit5")
    assert adaptive.retcode in {"Unstable", "DtLessThanMin"}
    assert 0.99 < adaptive.t[-1] < 1.0


def test_stats_count_work(decay_problem):
    sol = ade.solve(decay_problem, "Tsit5", rtol=1e-8, atol=1e-10)
    st = sol.stats
    assert st.nsteps == st.naccept + st.nreject
    # FSAL: 6 evaluations per attempted step + validation call + initial-step estimate
    assert st.nf == 6 * st.nsteps + 2
    assert dict(st.as_dict())["nf"] == st.nf
    rk4 = ade.solve(decay_problem, "RK4", dt=0.1, adaptive=False)
    assert rk4.stats.nf == 4 * 10 + 1  # k1 of each step is the previous step's f(u_new)


def test_fixed_step_hits_end_exactly(decay_problem):
    sol = ade.solve(decay_problem, "RK4", dt=0.1, adaptive=False)
    assert len(sol.t) == 11 and sol.t[-1] == 1.0
    sol = ade.solve(decay_problem, "RK4", dt=0.3, adaptive=False)
    np.testing.assert_allclose(sol.t, [0.0, 0.3, 0.6, 0.9, 1.0])


def test_explicit_solver_on_stiff_problem_stops_at_maxiters_and_warns():
    # Robertson's chemical kinetics (ROBER): stiff
    def rober(u, p, t):
        k1, k2, k3 = 0.04, 3e7, 1e4
        y1, y2, y3 = u
        return np.array([-k1 * y1 + k3 * y2 * y3, k1 * y1 - k2 * y2 * y2 - k3 * y2 * y3,
                         k2 * y2 * y2])

    prob = ade.ODEProblem(rober, [1.0, 0.0, 0.0], (0.0, 1e5))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sol = ade.solve(prob, "Tsit5", maxiters=20_000)
    assert sol.retcode == "MaxIters"
    kinds = {type(w.message) for w in caught}
    assert ade.StiffnessWarning in kinds and ade.SolverWarning in kinds
    assert any("looks stiff" in str(w.message) for w in caught)


def test_progress_bar_runs(capsys, decay_problem):
    sol = ade.solve(decay_problem.remake(tspan=(0.0, 50.0)), "Tsit5", progress=True)
    assert sol.success
    assert "solve t in [0, 50]" in capsys.readouterr().err


def test_solution_repr_and_len(decay_problem):
    sol = ade.solve(decay_problem, "Tsit5")
    assert "Success" in repr(sol) and "Tsit5" in repr(sol)
    assert len(sol) == len(sol.t)


def test_float32_stays_float32():
    prob = ade.ODEProblem(lambda u, p, t: -u, np.ones(3, np.float32), (0.0, 1.0))
    sol = ade.solve(prob, "Tsit5", rtol=1e-5, atol=1e-6)
    assert sol.u.dtype == np.float32 and sol(0.5).dtype == np.float32
    np.testing.assert_allclose(sol.u[-1], np.exp(-1.0), rtol=1e-4)


def test_p_of_any_kind_passes_through():
    prob = ade.ODEProblem(lambda u, p, t: -p["k"] * u, [1.0], (0.0, 1.0), {"k": 2.0})
    assert abs(ade.solve(prob, rtol=1e-9).u[-1, 0] - np.exp(-2)) < 1e-7


def test_solver_spec_object_as_alg(decay_problem):
    spec = ade.registry().solver("DP5")
    assert ade.solve(decay_problem, spec).alg is spec


def test_stiffness_detection_can_be_turned_off():
    prob = ade.ODEProblem(lambda u, p, t: -1000.0 * u, [1.0], (0.0, 10.0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ade.solve(prob, "DP5", stiffness_detection=False)
    assert not any(isinstance(w.message, ade.StiffnessWarning) for w in caught)
    with pytest.warns(ade.StiffnessWarning):
        ade.solve(prob, "DP5")


@pytest.mark.parametrize("t0", [0.0, 1.7e9])
def test_step_uses_the_time_actually_advanced(t0):
    # u' = 1 is integrated exactly by every RK method: no drift from rounding of t + dt
    prob = ade.ODEProblem(lambda u, p, t: np.ones_like(u), [0.0], (t0, t0 + 10.0))
    sol = ade.solve(prob, "Tsit5", dtmax=1e-3)
    assert sol.success and abs(sol.u[-1, 0] - 10.0) < 1e-9


def test_failing_start_at_t_zero_does_not_spin():
    prob = ade.ODEProblem(lambda u, p, t: -u / np.sqrt(t), [1.0], (0.0, 1.0))
    with pytest.warns(ade.SolverWarning), np.errstate(all="ignore"):
        sol = ade.solve(prob, "Tsit5")
    assert sol.retcode in {"Unstable", "DtLessThanMin"} and sol.stats.nsteps < 1000


def test_zero_atol_with_a_component_that_stays_zero():
    prob = ade.ODEProblem(lambda u, p, t: np.array([u[1], -u[0], 0.0 * u[2]]), [1.0, 0.0, 0.0],
                          (0.0, 1.0))
    sol = ade.solve(prob, "Tsit5", rtol=1e-6, atol=0.0)
    assert sol.success
    np.testing.assert_allclose(sol.u[-1], [np.cos(1.0), -np.sin(1.0), 0.0], atol=1e-5)


def test_too_tight_rtol_for_float32_warns():
    prob = ade.ODEProblem(lambda u, p, t: -u, np.ones(2, np.float32), (0.0, 1.0))
    with pytest.warns(ade.SolverWarning, match="below what float32 can resolve"):
        sol = ade.solve(prob, "Vern7", rtol=1e-12)
    np.testing.assert_allclose(sol.u[-1], np.exp(-1.0), rtol=1e-5)


def test_fixed_steps_do_not_drift():
    prob = ade.ODEProblem(lambda u, p, t: -u, [1.0], (0.0, 3e4))
    sol = ade.solve(prob, "Euler", dt=0.3, adaptive=False, saveat=[3e4], dense=False)
    assert sol.stats.naccept == 100_000


def test_failed_solve_with_saveat_keeps_the_last_state(decay_problem):
    with pytest.warns(ade.SolverWarning, match="MaxIters"):
        sol = ade.solve(decay_problem, "Tsit5", maxiters=3, rtol=1e-12, atol=1e-14,
                        saveat=[1.0])
    assert sol.retcode == "MaxIters" and len(sol.t) == 1 and 0 < sol.t[0] < 1.0
    np.testing.assert_allclose(sol.u[-1], np.exp(-sol.t[-1]) * np.array([1.0, 2.0]),
                               rtol=1e-9)


@pytest.mark.parametrize("alg", ["Tsit5", "Vern7", "Rodas5P"])
def test_error_components_steps_only_on_the_leading_entries(alg):
    """Extra trailing components that the norm does not see leave the steps unchanged."""

    def lv(u, p, t):
        return np.array([1.5 * u[0] - u[0] * u[1], -3.0 * u[1] + u[0] * u[1]])

    def augmented(y, p, t):  # LV plus a fast, unrelated decay the norm must ignore
        return np.concatenate([lv(y[:2], p, t), -50.0 * y[2:]])

    def lv_jac(u, p, t):
        return np.array([[1.5 - u[1], -u[0]], [u[1], -3.0 + u[0]]])

    def augmented_jac(y, p, t):  # exact Jacobians: Rodas is not a W-method
        return scipy.linalg.block_diag(lv_jac(y[:2], p, t), -50.0 * np.eye(2))

    base = ade.solve(
        ade.ODEProblem(lv, [1.0, 1.0], (0.0, 5.0), jac=lv_jac), alg, rtol=1e-6, atol=1e-9
    )
    prob = ade.ODEProblem(augmented, [1.0, 1.0, 1.0, -2.0], (0.0, 5.0), jac=augmented_jac)
    rtol = np.full(4, 1e-6)
    sol = ade.solve(prob, alg, rtol=rtol, atol=1e-9, error_components=2)
    # the same steps, up to rounding in the error estimate (a difference of nearly equal
    # stage sums, which BLAS rounds differently for another state length)
    assert sol.stats.naccept == base.stats.naccept and sol.stats.nreject == base.stats.nreject
    # that rounding, ~(stages) eps |u| / (rtol |u|) relative in the estimate (10 stages for
    # Vern7), moves each step by about as much; it accumulates over the steps into the times,
    # and the states follow through f (|du| <= max |f| |dt|); was rtol=1e-8: the times
    # differed by 2.6e-9 here
    drift = base.stats.naccept * 10 * np.finfo(float).eps / 1e-6
    np.testing.assert_allclose(sol.t, base.t, rtol=0, atol=drift * 5.0)
    f_max = max(np.max(np.abs(lv(u, None, 0.0))) for u in base.u)
    np.testing.assert_allclose(sol.u[:, :2], base.u, rtol=0, atol=f_max * drift * 5.0)
    full = ade.solve(prob, alg, rtol=1e-6, atol=1e-9)
    assert len(full.t) != len(base.t)  # with all entries under control the steps differ


@pytest.mark.parametrize("bad", [0, 5, 1.5, True, "2"])
def test_error_components_is_checked(bad):
    prob = ade.ODEProblem(lambda u, p, t: -u, np.ones(4), (0.0, 1.0))
    with pytest.raises((ade.InvalidArgument, ade.InvalidType), match="error_components"):
        ade.solve(prob, "Tsit5", error_components=bad)
