"""The default algorithm, ``solve(prob)`` without ``alg``: SciML's switching default
(Tsit5 or Vern7 while non-stiff, Rodas5P while stiff), checked on the classic stiff problems
against SciPy's Radau, on switching back, mass matrices, the strict backend and a backend
without LU; and explicit solvers on ROBER stopping at ``maxiters`` with a stiffness warning."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.linalg import expm

import autodiffeq as ade

from ..conftest import lotka_volterra
from .conftest import (
    ROBER_MASS,
    ROBER_T1,
    ROBER_TIMES,
    ROBER_U0,
    VDP_EPS,
    VDP_T1,
    VDP_TIMES,
    VDP_U0,
    rober,
    rober_dae,
    scaled_error,
    switches,
    vdp,
)

NONSTIFF, STIFF = 0, 1


# --------------------------------------------------------------------------- ROBER, VdP
@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({}, "AutoTsit5Rodas5P"),  # solve()'s own defaults: rtol 1e-3, atol 1e-6
        ({"rtol": 1e-6, "atol": 1e-10}, "AutoTsit5Rodas5P"),
        ({"rtol": 1e-8, "atol": 1e-14}, "AutoVern7Rodas5P"),
    ],
)
def test_default_solves_rober_to_1e11(kwargs, expected, rober_ref):
    prob = ade.ODEProblem(rober, ROBER_U0, (0.0, ROBER_T1))
    sol = ade.solve(prob, saveat=ROBER_TIMES, dense=True, **kwargs)
    assert sol.retcode == "Success"
    assert sol.alg.name == expected
    np.testing.assert_array_equal(sol.t, ROBER_TIMES)
    rtol, atol = kwargs.get("rtol", 1e-3), kwargs.get("atol", 1e-6)
    # global error over eleven decades of t: within a small multiple of the tolerances
    assert scaled_error(sol.u, rober_ref, rtol, atol) < 10
    # ROBER turns stiff once and stays stiff
    assert [kind for _, kind in switches(sol)] == ["stiff"]


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({}, "AutoTsit5Rodas5P"),
        ({"rtol": 1e-6, "atol": 1e-6}, "AutoTsit5Rodas5P"),
        ({"rtol": 1e-8, "atol": 1e-8}, "AutoVern7Rodas5P"),
    ],
)
def test_default_solves_van_der_pol_mu_1e6(kwargs, expected, vdp_ref):
    prob = ade.ODEProblem(vdp, VDP_U0, (0.0, VDP_T1), VDP_EPS)
    sol = ade.solve(prob, saveat=VDP_TIMES, dense=True, **kwargs)
    assert sol.retcode == "Success"
    assert sol.alg.name == expected
    rtol, atol = kwargs.get("rtol", 1e-3), kwargs.get("atol", 1e-6)
    assert scaled_error(sol.u, vdp_ref, rtol, atol) < 20
    # stiff on the slow branches from the start; the fast jumps (near t = 0.807 and 1.614)
    # may be taken by the explicit method, which then hands back
    kinds = [kind for _, kind in switches(sol)]
    assert kinds and kinds[0] == "stiff" and kinds[-1] == "stiff"
    assert switches(sol)[0][0] < 1e-3


@pytest.mark.parametrize(
    "rtol, atol",
    [(1e-3, 1e-6), (1e-6, 1e-10), (1e-6, 1e-14), (1e-8, 1e-14), (1e-10, 1e-14), (1e-12, 1e-16)],
)
def test_rober_switches_to_stiff_early(rtol, atol):
    """The bound from the stiffness estimate: y2 reaches its quasi-steady value
    sqrt(k1 y1 / k2) = 3.65e-5 with the time constant 1 / (2 k2 y2) = 4.6e-4, so the fast
    transient has decayed by t ~ 0.005 (ten time constants). From then on the dominant
    eigenvalue of df/du is lambda ~ -2 k2 y2 = -2.2e3, a thousand times faster than the
    solution (y1' / y1 = -0.04), and an explicit step is bounded by boundary / |lambda|:
    1.6e-3 for Tsit5 (boundary 3.5), 2.1e-3 for Vern7 (4.64). Every such step is a stiff vote
    once it exceeds 0.2 of that bound; ``maxstiffstep = 10`` net votes, checked every step once
    one has been cast (every fourth before), take at most (10 + 4) * 2.1e-3 = 0.03: so the
    switch comes before t = 0.05. (The former rule switched at t = 1.8 for rtol 1e-6,
    atol 1e-14 and at t = 23 for rtol 1e-8, atol 1e-14; at rtol 1e-12 the explicit step sits
    at a quarter of the stability bound, which a fixed 0.9-of-the-boundary test never sees.)"""
    prob = ade.ODEProblem(rober, ROBER_U0, (0.0, 1.0))
    sol = ade.solve(prob, rtol=rtol, atol=atol)
    assert sol.success
    log = switches(sol)
    assert log and log[0][1] == "stiff" and log[0][0] < 0.05
    assert len(log) == 1


def _lorenz(u, p, t):
    return np.array([10.0 * (u[1] - u[0]), u[0] * (28.0 - u[2]) - u[1],
                     u[0] * u[1] - 8.0 / 3.0 * u[2]])


def _brusselator(u, p, t):
    return np.array([1.0 + u[0] ** 2 * u[1] - 4.0 * u[0], 3.0 * u[0] - u[0] ** 2 * u[1]])


def _van_der_pol_mu1(u, p, t):
    return np.array([u[1], (1.0 - u[0] ** 2) * u[1] - u[0]])


@pytest.mark.parametrize("rtol", [1e-2, 1e-3, 1e-6, 1e-9])
@pytest.mark.parametrize(
    "f, u0, t1",
    [(_lorenz, [1.0, 0.0, 0.0], 20.0), (_brusselator, [1.5, 3.0], 20.0),
     (_van_der_pol_mu1, [2.0, 0.0], 20.0)],
    ids=["lorenz", "brusselator", "van_der_pol_mu1"],
)
def test_default_stays_explicit_on_nonstiff_problems(f, u0, t1, rtol):
    """Non-stiff problems never switch, even at loose tolerances where accuracy-limited steps
    come close to the explicit method's stability boundary: the stiffness ratio
    rho ||u|| / ||f(u)|| of these problems stays far below the threshold."""
    sol = ade.solve(ade.ODEProblem(f, np.array(u0), (0.0, t1)), rtol=rtol, atol=rtol * 1e-3)
    assert sol.success
    assert switches(sol) == [] and sol.dense_output.stepper.active == NONSTIFF


# --------------------------------------------------------------------------- switching back
def _stiff_then_nonstiff(u, p, t):
    """u' = -lambda(t) (u - cos t) - sin t: u = cos t for u(0) = 1; lambda = 1e5 for t < 5
    (stiff), 0.5 afterwards (non-stiff)."""
    lam = 1e5 if t < 5.0 else 0.5
    return -lam * (u - np.cos(t)) - np.sin(t)


@pytest.mark.parametrize("rtol, expected", [(1e-6, "AutoTsit5Rodas5P"),
                                            (1e-9, "AutoVern7Rodas5P")])
def test_default_switches_back_when_stiffness_ends(rtol, expected):
    prob = ade.ODEProblem(_stiff_then_nonstiff, np.array([1.0]), (0.0, 20.0))
    sol = ade.solve(prob, rtol=rtol, atol=rtol * 1e-2, tstops=[5.0])
    assert sol.success and sol.alg.name == expected
    log = switches(sol)
    # once to stiff early (|lambda| dt hits the boundary at dt ~ 3.5e-5), once back after
    # t = 5; no flip-flopping in either regime
    assert [kind for _, kind in log] == ["stiff", "nonstiff"]
    assert log[0][0] < 0.01 and 5.0 <= log[1][0] < 8.0
    # dense output over steps of both components (Verner's lazy extra stages included)
    times = np.linspace(0.0, 20.0, 161)
    assert np.max(np.abs(sol(times)[:, 0] - np.cos(times))) < 100 * rtol
    assert np.max(np.abs(sol.u[:, 0] - np.cos(sol.t))) < 100 * rtol


# --------------------------------------------------------------------------- tolerances
def test_tight_tolerances_use_the_vern7_component(lv_problem):
    tight = ade.solve(lv_problem, rtol=1e-10, atol=1e-12)
    moderate = ade.solve(lv_problem, rtol=1e-6, atol=1e-8)
    assert tight.alg.name == "AutoVern7Rodas5P" and moderate.alg.name == "AutoTsit5Rodas5P"
    assert tight.dense_output.stepper.names == ("Vern7", "Rodas5P")
    assert moderate.dense_output.stepper.names == ("Tsit5", "Rodas5P")
    for sol, rtol in ((tight, 1e-10), (moderate, 1e-6)):
        assert switches(sol) == [] and sol.dense_output.stepper.active == NONSTIFF
        times = np.linspace(0.0, 10.0, 21)
        ref = solve_ivp(lambda t, u: lotka_volterra(u, lv_problem.p, t), (0.0, 10.0),
                        [1.0, 1.0], method="DOP853", rtol=1e-13, atol=1e-13, t_eval=times)
        assert np.max(np.abs(sol(times) - ref.y.T)) < 100 * rtol * np.max(np.abs(ref.y))
    # Vern7 needs far fewer steps than Tsit5 would at rtol 1e-10
    plain_tsit5 = ade.solve(lv_problem, "Tsit5", rtol=1e-10, atol=1e-12)
    assert tight.stats.naccept < plain_tsit5.stats.naccept / 2


# --------------------------------------------------------------------------- mass matrices
@pytest.mark.parametrize("rtol, expected", [(1e-6, "AutoTsit5Rodas5P"),
                                            (1e-8, "AutoVern7Rodas5P")])
def test_default_on_a_mass_matrix_problem_starts_and_stays_stiff(rtol, expected, rober_ref):
    """ROBER as an index-1 DAE (y1 + y2 + y3 = 1 replacing the third equation) to 1e11; the
    explicit components cannot take a singular mass matrix, so the composite runs Rodas5P."""
    atol = rtol * 1e-6
    prob = ade.ODEProblem(rober_dae, ROBER_U0, (0.0, ROBER_T1), mass_matrix=ROBER_MASS)
    sol = ade.solve(prob, rtol=rtol, atol=atol, saveat=ROBER_TIMES, dense=True)
    assert sol.retcode == "Success" and sol.alg.name == expected
    stepper = sol.dense_output.stepper
    assert stepper.active == STIFF and switches(sol) == []
    assert scaled_error(sol.u, rober_ref, rtol, atol) < 10
    np.testing.assert_allclose(np.sum(sol.u, axis=1), 1.0, atol=1e-12)


# --------------------------------------------------------------------------- backends
def test_default_on_the_array_api_strict_backend():
    xp = pytest.importorskip("array_api_strict")
    c, s = math.cos(0.3), math.sin(0.3)
    q = np.array([[c, -s], [s, c]])
    a_host = q @ np.diag([-1e4, -1.0]) @ q.T  # symmetric, eigenvalues -1e4 and -1
    a = xp.asarray(a_host)

    def f(u, p, t):
        return a @ u

    u0 = np.array([1.0, 2.0])
    prob = ade.ODEProblem(f, xp.asarray(u0), (0.0, 5.0))
    sol = ade.solve(prob, rtol=1e-6, atol=1e-9, backend="array_api_strict")
    assert sol.success and sol.alg.name == "AutoTsit5Rodas5P"
    assert isinstance(sol.u, type(xp.asarray([0.0])))
    log = switches(sol)
    assert [kind for _, kind in log] == ["stiff"] and log[0][0] < 0.01
    times = np.array([0.5, 1.0, 2.5, 5.0])
    exact = np.stack([expm(a_host * t) @ u0 for t in times])
    dense = np.asarray(sol.backend.to_host(sol(times)))
    assert np.max(np.abs(dense - exact)) < 1e-5


class _NumpyWithoutLU(ade.Backend):
    """NumPy arrays, but no ``"lu"`` capability (as a backend without linear solvers)."""

    name = "numpy_without_lu"
    xp = np
    array_type = np.ndarray


class _WithoutLUPlugin:
    @ade.hookimpl
    def autodiffeq_register_backends(self, register):
        register(ade.BackendSpec(name="numpy_without_lu", factory=_NumpyWithoutLU,
                                 capabilities=()))


def test_default_without_lu_falls_back_to_the_plain_explicit_methods(lv_problem):
    from autodiffeq_plugins import autoswitch, explicit, numpy_backend, rosenbrock

    reg = ade.Registry(entry_points=False)
    for plugin in (numpy_backend, explicit, rosenbrock, autoswitch):
        reg.register_plugin(plugin)
    reg.register_plugin(_WithoutLUPlugin(), name="without_lu")
    be = "numpy_without_lu"
    moderate = ade.solve(lv_problem, backend=be, registry=reg, rtol=1e-6, atol=1e-8)
    tight = ade.solve(lv_problem, backend=be, registry=reg, rtol=1e-10, atol=1e-12)
    assert moderate.alg.name == "Tsit5" and tight.alg.name == "Vern7"
    assert moderate.success and tight.success
    assert ade.solve(lv_problem, registry=reg).alg.name == "AutoTsit5Rodas5P"  # with LU
    with pytest.raises(ade.UnsupportedCombination, match="lu"):
        ade.solve(lv_problem, "AutoTsit5Rodas5P", backend=be, registry=reg)


# --------------------------------------------------------------------------- explicit on ROBER
@pytest.mark.parametrize("alg", ["Tsit5", "DP5"])
def test_explicit_solver_on_rober_stops_at_maxiters_and_names_a_stiff_solver(alg):
    prob = ade.ODEProblem(rober, ROBER_U0, (0.0, ROBER_T1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sol = ade.solve(prob, alg, maxiters=2000)
    assert sol.retcode == "MaxIters"
    assert sol.stats.nsteps == 2000 and sol.t[-1] < 100.0  # nowhere near 1e11
    stiff = [w for w in caught if issubclass(w.category, ade.StiffnessWarning)]
    assert len(stiff) == 1
    assert "Rodas5P" in str(stiff[0].message)
    assert any(issubclass(w.category, ade.SolverWarning) for w in caught)


# --------------------------------------------------------------------------- the estimate
def test_stiffness_estimate_is_the_spectral_radius():
    """While stability limits the explicit steps, the local error estimate is dominated by
    the stiff mode, so the directional derivative of f along it is the dominant eigenvalue
    (1e3 here, with the solution's own mode at 1)."""
    c, s = math.cos(0.7), math.sin(0.7)
    q = np.array([[c, -s], [s, c]])
    a = q @ np.diag([-1e3, -1.0]) @ q.T
    prob = ade.ODEProblem(lambda u, p, t: a @ u, np.array([1.0, 0.5]), (0.0, 1.0))
    # never switch, so the explicit component keeps estimating
    sol = ade.solve(prob, "AutoTsit5Rodas5P", rtol=1e-6, atol=1e-12, maxstiffstep=10**9)
    assert sol.success and switches(sol) == []
    assert sol.dense_output.stepper.eigen_estimate == pytest.approx(1e3, rel=0.02)


@pytest.mark.parametrize(
    "option",
    [{"maxstiffstep": 0}, {"maxnonstiffstep": 1.5}, {"nonstifftol": -1.0},
     {"stifftol": float("nan")}, {"nonstifftol": "high"}],
)
def test_invalid_switching_options_are_rejected(option):
    prob = ade.ODEProblem(lambda u, p, t: -u, [1.0], (0.0, 1.0))
    with pytest.raises(ade.InvalidArgument):
        ade.solve(prob, "AutoTsit5Rodas5P", **option)


# --------------------------------------------------------------------------- hysteresis
def _hires(y, p, t):
    """HIRES (Schäfer 1975; Hairer & Wanner II, IV.10): eight-species plant physiology."""
    return np.array([
        -1.71 * y[0] + 0.43 * y[1] + 8.32 * y[2] + 0.0007,
        1.71 * y[0] - 8.75 * y[1],
        -10.03 * y[2] + 0.43 * y[3] + 0.035 * y[4],
        8.32 * y[1] + 1.71 * y[2] - 1.12 * y[3],
        -1.745 * y[4] + 0.43 * y[5] + 0.43 * y[6],
        -280.0 * y[5] * y[7] + 0.69 * y[3] + 1.71 * y[4] - 0.43 * y[5] + 0.69 * y[6],
        280.0 * y[5] * y[7] - 1.81 * y[6],
        -280.0 * y[5] * y[7] + 1.81 * y[6],
    ])


HIRES_U0 = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0057]


def test_switching_back_and_forth_backs_off():
    """At rtol 1e-10 HIRES turns stiff gradually: for a while the explicit method grows its
    step into the stiff range and the stiff one shrinks its step into the explicit range.
    Each quick return to the stiff component doubles the steps it must make before it may
    hand back (10, 20, 40, ...), so the stiff stretches grow geometrically and the switches
    stay few; the solution stays accurate throughout."""
    t1 = 5.0
    prob = ade.ODEProblem(_hires, np.array(HIRES_U0), (0.0, t1))
    rtol, atol = 1e-10, 1e-14
    sol = ade.solve(prob, rtol=rtol, atol=atol)
    assert sol.success and sol.alg.name == "AutoVern7Rodas5P"
    log = switches(sol)
    kinds = [kind for _, kind in log]
    assert kinds[0] == "stiff" and kinds[-1] == "stiff" and len(kinds) <= 7
    assert all(a != b for a, b in zip(kinds, kinds[1:]))  # strictly alternating
    times = [t for t, _ in log] + [t1]
    steps = [int(np.sum((sol.t > a) & (sol.t <= b))) for a, b in zip(times, times[1:])]
    handed_back = steps[0:-1:2]  # stiff stretches that ended in a hand-back
    for k, n in enumerate(handed_back):
        assert n >= 10 * 2**k
    ref = solve_ivp(lambda t, u: _hires(u, None, t), (0.0, t1), HIRES_U0, method="Radau",
                    rtol=1e-13, atol=1e-16, t_eval=[t1])
    assert scaled_error(sol.u[-1], ref.y[:, -1], rtol, atol) < 20
