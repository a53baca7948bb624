"""Events and callbacks (``ContinuousCallback``, ``DiscreteCallback``, ``CallbackSet``):
acceptance tests written against the specified API, with the truth taken from mathematics
(analytic event times and states) or from SciPy's ``solve_ivp(events=...)`` at rtol 1e-12,
never from autodiffeq's own output.

Tolerances. An event time is the root of the condition along the computed solution, so its
error is the solution's error divided by the condition's slope at the root, plus the root
finder's time resolution. The solves below use ``rtol=1e-10, atol=1e-12``; their global
errors are a few ``rtol`` times the solution's scale, so times and states are compared with
``1e3 * rtol`` relative to their scale (``1e3 * (rtol * scale + atol)`` absolute). Conditions
that depend on ``t`` only are solved to the root finder's resolution, a few ulps; they are
compared with ``TRES = 1e-10``, far below any mistake that matters (an event put at a step end
or at a sampling point is off by 1e-2 or more).

Every ``ade.ContinuousCallback`` & co. is referenced inside the tests only, so that this module
imports (and is collected) before the feature exists.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import autodiffeq as ade

RTOL, ATOL = 1e-10, 1e-12
REL = 1e3 * RTOL  # relative tolerance on event times and states of the tight solves
TRES = 1e-10  # time resolution allowed for conditions that depend on t only

# alg=None is the default (AutoVern7Rodas5P at rtol < 1e-7).
ALGS = [None, "Tsit5", "Vern7", "Rodas5P"]


def close(a, b, scale, rel=REL, atol=ATOL):
    """``|a - b| <= rel * scale + 1e3 * atol`` elementwise; with the defaults that is
    ``1e3 * (rtol * scale + atol)`` (see the module docstring)."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    assert np.broadcast_shapes(a.shape, b.shape) == a.shape, (a.shape, b.shape)
    tol = rel * np.abs(np.asarray(scale, dtype=float)) + 1e3 * atol
    err = np.abs(a - b)
    assert np.all(err <= tol), f"max |a - b| = {err.max():.3e} > {np.min(tol):.3e}\n{a}\n{b}"


# --------------------------------------------------------------------------- bouncing ball
# u = [x, v], x' = v, v' = -g. Dropped from x0 at rest, it first hits the ground at
#   t1 = sqrt(2 x0 / g) with speed v1 = g t1 = sqrt(2 g x0).
# The k-th bounce (k >= 1) sends it up with speed e^k v1; the flight lasts 2 e^k v1 / g, so
#   t_{k+1} = t_k + 2 e^k v1 / g,   i.e.   t_n = t1 (1 + 2 sum_{k=1}^{n-1} e^k),
# the velocity just before bounce n is -e^{n-1} v1 and just after it e^n v1.
# Zeno point: t1 (1 + 2 e / (1 - e)) = 4.06 s for x0 = 1, e = 0.8; bounces at
# 0.4515, 1.1739, 1.7518, 2.2142, 2.5841, 2.8800, ...: t in [0, 2.7] holds exactly 5.
# The solution is a parabola, integrated exactly, so steps grow quickly; but a step that
# starts at bounce k cannot be longer than 2.7 - t_k, so its condition samples (10 per step)
# are at most (2.7 - t_k) / 10 apart: 0.225, 0.153, 0.095, 0.049 s, always less than the
# flight that follows (0.72, 0.58, 0.46, 0.37 s). No flight can hide between two samples.
G, E, X0 = 9.81, 0.8, 1.0
T1 = math.sqrt(2 * X0 / G)
V1 = G * T1
T_END = 2.7
N_BOUNCES = 5
BALL_SCALE = max(X0, V1)  # magnitude of the state


def bounce_time(n, x0=X0, g=G, e=E):
    t1 = math.sqrt(2 * x0 / g)
    return t1 * (1 + 2 * sum(e**k for k in range(1, n)))


BOUNCES = np.array([bounce_time(n) for n in range(1, N_BOUNCES + 1)])


def ball_exact(t):
    """The analytic piecewise-parabolic trajectory [x(t), v(t)], right-continuous at bounces."""
    t = float(t)
    if t < BOUNCES[0]:
        return np.array([X0 - 0.5 * G * t * t, -G * t])
    k = int(np.searchsorted(BOUNCES, t, side="right"))  # bounces at or before t
    s = t - BOUNCES[k - 1]
    up = E**k * V1  # speed just after bounce k
    return np.array([up * s - 0.5 * G * s * s, up - G * s])


def ball_f(u, p, t):
    return np.array([u[1], -G])


def ball_affect(u, t):
    return np.array([u[0], -E * u[1]])


def ball_problem(tspan=(0.0, T_END)):
    return ade.ODEProblem(ball_f, np.array([X0, 0.0]), tspan)


def ball_callback():
    return ade.ContinuousCallback(lambda u, t: u[0], ball_affect, direction=-1)


def test_analytic_ball_truth_is_self_consistent():
    """The formulas above against each other: x = 0 at each bounce, speeds scale by e."""
    for k, tk in enumerate(BOUNCES, start=1):
        left = ball_exact(tk - 1e-12)
        right = ball_exact(tk)
        assert abs(left[0]) < 1e-10 and abs(right[0]) < 1e-10
        assert left[1] == pytest.approx(-(E ** (k - 1)) * V1, rel=1e-9)
        assert right[1] == pytest.approx(E**k * V1, rel=1e-12)


@pytest.mark.parametrize("alg", ALGS)
def test_bouncing_ball_bounce_times_and_states(alg):
    sol = ade.solve(ball_problem(), alg, rtol=RTOL, atol=ATOL, callback=ball_callback())
    assert sol.retcode == "Success"
    assert sol.t[-1] == T_END
    assert isinstance(sol.t_events, list) and len(sol.t_events) == 1
    t_ev = sol.t_events[0]
    assert isinstance(t_ev, np.ndarray) and t_ev.ndim == 1
    assert len(t_ev) == N_BOUNCES
    close(t_ev, BOUNCES, scale=BOUNCES)

    u_ev = np.asarray(sol.u_events[0])
    assert u_ev.shape == (N_BOUNCES, 2)
    # States BEFORE the affect: on the ground, falling with speed e^{k-1} v1.
    close(u_ev[:, 0], 0.0, scale=BALL_SCALE)
    close(u_ev[:, 1], [-(E**k) * V1 for k in range(N_BOUNCES)], scale=BALL_SCALE)

    # Just after each bounce: the dense output is right-continuous at the event time.
    for k, tk in enumerate(t_ev, start=1):
        close(np.asarray(sol(tk))[1], E**k * V1, scale=BALL_SCALE)
    # The final state follows the last parabola (this also fails if the FSAL derivative of
    # the pre-bounce state were reused after an affect).
    close(np.asarray(sol.u[-1]), ball_exact(T_END), scale=BALL_SCALE)


@pytest.mark.parametrize("alg", ["Tsit5", "Rodas5P"])
def test_ball_saves_the_event_time_twice_before_and_after_the_affect(alg):
    sol = ade.solve(ball_problem(), alg, rtol=RTOL, atol=ATOL, callback=ball_callback())
    t = sol.t
    u = np.asarray(sol.u)
    assert np.all(np.diff(t) >= 0)
    dup = np.flatnonzero(t[1:] == t[:-1])
    assert len(dup) == N_BOUNCES
    np.testing.assert_array_equal(t[dup], sol.t_events[0])
    for i, k in zip(dup, range(N_BOUNCES)):
        before, after = u[i], u[i + 1]
        close(before, np.asarray(sol.u_events[0])[k], scale=BALL_SCALE)
        # The saved pair differs exactly by the affect.
        np.testing.assert_array_equal(after, ball_affect(before, t[i]))
        assert before[1] < 0 < after[1]


@pytest.mark.parametrize("alg", ["Tsit5", "Vern7", "Rodas5P"])
def test_ball_saveat_and_dense_output_across_jumps(alg):
    # saveat times keep >= 0.014 from every bounce (nearest: 2.2 vs 2.2142), far more than
    # the event time's error, so each lies unambiguously on one parabola.
    ts = np.linspace(0.0, T_END, 28)
    assert np.min(np.abs(ts[:, None] - BOUNCES[None, :])) > 0.01
    sol = ade.solve(ball_problem(), alg, rtol=RTOL, atol=ATOL, callback=ball_callback(),
                    saveat=ts, dense=True)
    assert sol.retcode == "Success"
    np.testing.assert_array_equal(sol.t, ts)
    assert len(sol.t_events[0]) == N_BOUNCES
    close(np.asarray(sol.u), np.array([ball_exact(t) for t in ts]), scale=BALL_SCALE)

    # sol(t) on either side of each jump: the pre-bounce and the post-bounce parabola.
    dt = 1e-6  # >> the event time's error (~1e-12 here), << the flight times
    for k, tk in enumerate(BOUNCES, start=1):
        left, right = np.asarray(sol(tk - dt)), np.asarray(sol(tk + dt))
        close(left, ball_exact(tk - dt), scale=BALL_SCALE)
        close(right, ball_exact(tk + dt), scale=BALL_SCALE)
        assert left[1] == pytest.approx(-(E ** (k - 1)) * V1, rel=1e-4)
        assert right[1] == pytest.approx(E**k * V1, rel=1e-4)
    # A vector of times spanning all jumps at once.
    grid = np.linspace(0.0, T_END, 271)
    grid = grid[np.min(np.abs(grid[:, None] - BOUNCES[None, :]), axis=1) > 1e-6]
    close(np.asarray(sol(grid)), np.array([ball_exact(t) for t in grid]), scale=BALL_SCALE)


# ------------------------------------------------------------------------ terminal events
@pytest.mark.parametrize("alg", ALGS)
def test_terminal_event_on_a_linear_solution(alg):
    # u' = 1, u0 = 0: u = t, so u - 0.5 vanishes at t = 0.5 (exact polynomial solution: the
    # root is limited by the time resolution only).
    prob = ade.ODEProblem(lambda u, p, t: np.ones(1), np.zeros(1), (0.0, 1.0))
    cb = ade.ContinuousCallback(lambda u, t: u[0] - 0.5, terminal=True)
    sol = ade.solve(prob, alg, rtol=RTOL, atol=ATOL, callback=cb)
    assert sol.retcode == "Terminated"
    assert sol.t[-1] == pytest.approx(0.5, abs=TRES)
    assert np.asarray(sol.u[-1])[0] == pytest.approx(0.5, abs=TRES)
    assert len(sol.t_events[0]) == 1
    assert sol.t_events[0][0] == sol.t[-1]
    with pytest.raises(ade.DenseOutputError):
        sol(0.75)  # beyond where the solve stopped


@pytest.mark.parametrize("alg", ALGS)
def test_terminal_event_on_a_decaying_exponential(alg):
    # u' = -k u, u0 = 2: u = 2 exp(-k t) = 0.5 at t* = log(4) / k.
    k = 1.3
    t_star = math.log(4.0) / k
    prob = ade.ODEProblem(lambda u, p, t: -k * u, np.array([2.0]), (0.0, 5.0))
    cb = ade.ContinuousCallback(lambda u, t: u[0] - 0.5, direction=-1, terminal=True)
    sol = ade.solve(prob, alg, rtol=RTOL, atol=ATOL, callback=cb)
    assert sol.retcode == "Terminated"
    assert sol.t[-1] == pytest.approx(t_star, rel=REL)
    close(sol.t_events[0], [t_star], scale=t_star)
    close(np.asarray(sol.u_events[0]), [[0.5]], scale=2.0)
    close(np.asarray(sol.u[-1]), [0.5], scale=2.0)


def test_terminal_event_applies_its_affect_first():
    k = 1.3
    t_star = math.log(4.0) / k
    prob = ade.ODEProblem(lambda u, p, t: -k * u, np.array([2.0]), (0.0, 5.0))
    cb = ade.ContinuousCallback(lambda u, t: u[0] - 0.5, lambda u, t: 10.0 * u, terminal=True)
    sol = ade.solve(prob, "Tsit5", rtol=RTOL, atol=ATOL, callback=cb)
    assert sol.retcode == "Terminated"
    assert sol.t[-1] == pytest.approx(t_star, rel=REL)
    u_before = np.asarray(sol.u_events[0])[0]
    close(u_before, [0.5], scale=2.0)  # u_events: before the affect
    np.testing.assert_allclose(np.asarray(sol.u[-1]), 10.0 * u_before, rtol=1e-15)


def test_terminal_event_with_the_wrong_direction_does_not_stop():
    # The decaying exponential only crosses 0.5 downwards: direction=+1 never fires.
    prob = ade.ODEProblem(lambda u, p, t: -1.3 * u, np.array([2.0]), (0.0, 5.0))
    cb = ade.ContinuousCallback(lambda u, t: u[0] - 0.5, direction=1, terminal=True)
    sol = ade.solve(prob, "Tsit5", rtol=RTOL, atol=ATOL, callback=cb)
    assert sol.retcode == "Success"
    assert sol.t[-1] == 5.0
    assert sol.t_events[0].shape == (0,)
    assert np.asarray(sol.u_events[0]).shape == (0, 1)


# ------------------------------------------------------------------------------ direction
# Harmonic oscillator x'' = -x as u = [x, v]: from t0 = 1 with u0 = [sin 1, cos 1] the
# solution is x = sin t, v = cos t. (t0 = 1 rather than 0 keeps the condition x away from
# zero at the initial time, whose treatment is not part of the API.) Roots of x in (1, 20):
# k pi, k = 1..6; x goes up through 0 at even k, down at odd k.
def oscillator(u, p, t):
    return np.array([u[1], -u[0]])


def oscillator_problem(tspan=(1.0, 20.0)):
    t0 = tspan[0]
    return ade.ODEProblem(oscillator, np.array([math.sin(t0), math.cos(t0)]), tspan)


ROOTS = np.pi * np.arange(1, 7)


@pytest.mark.parametrize("alg", ALGS)
@pytest.mark.parametrize(
    ("direction", "expected"),
    [(0, ROOTS), (1, ROOTS[1::2]), (-1, ROOTS[0::2])],
    ids=["any", "up", "down"],
)
def test_direction_selects_the_crossings(alg, direction, expected):
    cb = ade.ContinuousCallback(lambda u, t: u[0], direction=direction)
    sol = ade.solve(oscillator_problem(), alg, rtol=RTOL, atol=ATOL, callback=cb)
    assert sol.retcode == "Success"
    t_ev = sol.t_events[0]
    assert len(t_ev) == len(expected)
    close(t_ev, expected, scale=expected)  # |dx/dt| = 1 at the roots
    u_ev = np.asarray(sol.u_events[0])
    close(u_ev[:, 0], 0.0, scale=1.0)
    close(u_ev[:, 1], np.cos(expected), scale=1.0)
    # affect=None changes nothing: no duplicated times, the trajectory is sin t throughout.
    assert np.all(np.diff(sol.t) > 0)
    close(np.asarray(sol.u[-1]), [math.sin(20.0), math.cos(20.0)], scale=1.0)


@pytest.mark.parametrize("alg", ALGS)
def test_backwards_integration_finds_events_in_decreasing_order(alg):
    # From t = 10 back to t = 0.5: roots 3 pi, 2 pi, pi in that order. (Not down to t = 0,
    # where x = sin 0 = 0 would put a root on the end point, found or not depending on the
    # sign of the solution's error there.)
    cb = ade.ContinuousCallback(lambda u, t: u[0])
    sol = ade.solve(oscillator_problem((10.0, 0.5)), alg, rtol=RTOL, atol=ATOL, callback=cb)
    assert sol.retcode == "Success"
    expected = np.pi * np.array([3.0, 2.0, 1.0])
    close(sol.t_events[0], expected, scale=expected)
    close(np.asarray(sol.u_events[0])[:, 1], np.cos(expected), scale=1.0)
    assert np.all(np.diff(sol.t) < 0)


@pytest.mark.parametrize("alg", ["Tsit5", "Rodas5P"])
def test_backwards_terminal_event(alg):
    cb = ade.ContinuousCallback(lambda u, t: u[0], terminal=True)
    sol = ade.solve(oscillator_problem((10.0, 0.0)), alg, rtol=RTOL, atol=ATOL, callback=cb)
    assert sol.retcode == "Terminated"
    assert sol.t[-1] == pytest.approx(3 * np.pi, rel=REL)
    close(np.asarray(sol.u[-1]), [0.0, -1.0], scale=1.0)  # [sin 3pi, cos 3pi]


def test_affect_on_a_backwards_solve():
    # u' = 1 from u(2) = 2 backwards: u = t. At t = 1 (u = 1) the affect adds 5; below t = 1
    # the solution is u = t + 5, so u(0) = 5.
    prob = ade.ODEProblem(lambda u, p, t: np.ones(1), np.array([2.0]), (2.0, 0.0))
    cb = ade.ContinuousCallback(lambda u, t: u[0] - 1.0, lambda u, t: u + 5.0)
    sol = ade.solve(prob, "Tsit5", rtol=RTOL, atol=ATOL, callback=cb)
    assert sol.retcode == "Success"
    close(sol.t_events[0], [1.0], scale=2.0)
    close(np.asarray(sol.u[-1]), [5.0], scale=7.0)
    close(np.asarray(sol(1.5)), [1.5], scale=7.0)
    close(np.asarray(sol(0.5)), [5.5], scale=7.0)


# ---------------------------------------------------------------- a reference from SciPy
def lotka_volterra(u, p, t):
    return np.array([1.5 * u[0] - u[0] * u[1], -3.0 * u[1] + u[0] * u[1]])


def _scipy_events(level, direction):
    def event(t, u):
        return u[0] - level

    event.direction = direction
    ref = solve_ivp(lambda t, u: lotka_volterra(u, None, t), (0.0, 10.0), [1.0, 1.0],
                    method="DOP853", rtol=1e-12, atol=1e-14, events=event)
    assert ref.success
    return ref.t_events[0], ref.y_events[0]


@pytest.mark.parametrize("alg", ALGS)
@pytest.mark.parametrize("direction", [0, 1, -1])
def test_events_of_a_nonlinear_system_against_scipy(alg, direction):
    # Lotka-Volterra, prey crossing x = 2 (no closed form): 6 crossings on [0, 10], slopes
    # |x'| >= 2.4 there, so time errors are below the state errors.
    t_ref, y_ref = _scipy_events(2.0, direction)
    assert len(t_ref) == {0: 6, 1: 3, -1: 3}[direction]
    prob = ade.ODEProblem(lotka_volterra, np.array([1.0, 1.0]), (0.0, 10.0))
    cb = ade.ContinuousCallback(lambda u, t: u[0] - 2.0, direction=direction)
    sol = ade.solve(prob, alg, rtol=RTOL, atol=ATOL, callback=cb)
    assert len(sol.t_events[0]) == len(t_ref)
    close(sol.t_events[0], t_ref, scale=10.0)
    close(np.asarray(sol.u_events[0]), y_ref, scale=5.0)


# ------------------------------------------------------------- several events in one step
# u' = 0 with dt=1 on [0, 1]: the error estimate is zero, so the first step covers the whole
# interval and every root of a t-only condition lies in it.
def _flat_problem(u0=0.0):
    return ade.ODEProblem(lambda u, p, t: np.zeros(1), np.array([u0]), (0.0, 1.0))


@pytest.mark.parametrize("alg", ALGS)
def test_two_events_in_one_step_fire_in_time_order(alg):
    # Given in the opposite order: late (t = 0.6, u -> 10 u) first, early (t = 0.3,
    # u -> u + 1) second. In time order: 0 -> 1 at t = 0.3, then 1 -> 10 at t = 0.6.
    # In list order it would be 0 -> 0 -> 1.
    late = ade.ContinuousCallback(lambda u, t: t - 0.6, lambda u, t: 10.0 * u)
    early = ade.ContinuousCallback(lambda u, t: t - 0.3, lambda u, t: u + 1.0)
    sol = ade.solve(_flat_problem(), alg, dt=1.0, rtol=RTOL, atol=ATOL,
                    callback=ade.CallbackSet(late, early))
    assert sol.retcode == "Success"
    assert len(sol.t_events) == 2
    np.testing.assert_allclose(sol.t_events[0], [0.6], rtol=0, atol=TRES)
    np.testing.assert_allclose(sol.t_events[1], [0.3], rtol=0, atol=TRES)
    np.testing.assert_array_equal(np.asarray(sol.u_events[1]), [[0.0]])
    np.testing.assert_array_equal(np.asarray(sol.u_events[0]), [[1.0]])  # early's affect done
    np.testing.assert_array_equal(np.asarray(sol.u[-1]), [10.0])
    assert np.asarray(sol(0.45))[0] == 1.0


@pytest.mark.parametrize("alg", ALGS)
@pytest.mark.parametrize(("direction", "ks"), [(0, range(1, 7)), (1, range(2, 7, 2))])
def test_interior_sampling_catches_all_roots_of_one_step(alg, direction, ks):
    # sin(20 t + 0.3) has roots (k pi - 0.3) / 20 (k = 1..6) in (0, 1), spaced pi / 20 =
    # 0.157 apart: more than the spacing of 10 samples of a step of length <= 1, so each
    # root is bracketed. It rises through zero at even k. (The phase 0.3 keeps the
    # condition nonzero at both ends: sin(0.3) > 0, sin(20.3) > 0.)
    cb = ade.ContinuousCallback(lambda u, t: np.sin(20.0 * t + 0.3), direction=direction,
                                interp_points=10)
    sol = ade.solve(_flat_problem(), alg, dt=1.0, rtol=RTOL, atol=ATOL, callback=cb)
    expected = np.array([(k * np.pi - 0.3) / 20 for k in ks])
    np.testing.assert_allclose(sol.t_events[0], expected, rtol=0, atol=TRES)


@pytest.mark.parametrize("alg", ["Tsit5", "Vern7", "Rodas5P"])
def test_two_roots_with_equal_signs_at_the_step_ends(alg):
    # (t - 0.35)(t - 0.55) is positive at both ends of the single step [0, 1]; the two roots
    # are 0.2 apart, so an interior sample lies between them.
    cb = ade.ContinuousCallback(lambda u, t: (t - 0.35) * (t - 0.55))
    sol = ade.solve(_flat_problem(), alg, dt=1.0, rtol=RTOL, atol=ATOL, callback=cb)
    np.testing.assert_allclose(sol.t_events[0], [0.35, 0.55], rtol=0, atol=TRES)


def test_condition_and_affect_with_parameters():
    # 3 positional parameters: p is passed. u' = 1 from 0 crosses p[0] = 0.7 at t = 0.7,
    # where u -> u - p[1] = 0.7 - 0.5; then u(1) = 0.2 + 0.3 = 0.5.
    prob = ade.ODEProblem(lambda u, p, t: np.ones(1), np.zeros(1), (0.0, 1.0),
                          np.array([0.7, 0.5]))
    cb = ade.ContinuousCallback(lambda u, p, t: u[0] - p[0], lambda u, p, t: u - p[1])
    sol = ade.solve(prob, "Tsit5", rtol=RTOL, atol=ATOL, callback=cb)
    np.testing.assert_allclose(sol.t_events[0], [0.7], rtol=0, atol=TRES)
    assert np.asarray(sol.u[-1])[0] == pytest.approx(0.5, abs=TRES)


# --------------------------------------------------------------------- DiscreteCallback
@pytest.mark.parametrize("alg", ["Tsit5", "Vern7", "Rodas5P"])
def test_discrete_callback_runs_after_every_accepted_step(alg):
    calls = []

    def affect(u, t):
        calls.append(t)
        return u

    cb = ade.DiscreteCallback(lambda u, t: True, affect)
    prob = ade.ODEProblem(lambda u, p, t: -u, np.array([1.0]), (0.0, 5.0))
    sol = ade.solve(prob, alg, rtol=1e-6, atol=1e-9, callback=cb)
    assert sol.retcode == "Success"
    assert len(calls) == sol.stats.naccept > 1
    step_ends = np.unique(sol.t)[1:]  # every accepted step's end time
    np.testing.assert_array_equal(np.array(calls), step_ends)
    np.testing.assert_array_equal(sol.t_events[0], step_ends)
    close(np.asarray(sol.u[-1]), [math.exp(-5.0)], scale=1.0, rel=1e3 * 1e-6, atol=1e-9)


@pytest.mark.parametrize("alg", [None, "Tsit5", "Vern7", "Rodas5P"])
def test_discrete_callback_at_tstops(alg):
    # u' = -u, u0 = 1, u -> u + 1 at t = 1 and t = 2 (steps end exactly there: tstops).
    #   u(1-) = e^-1,              u(1+) = e^-1 + 1
    #   u(2-) = e^-2 + e^-1,       u(2+) = e^-2 + e^-1 + 1
    #   u(3)  = e^-3 + e^-2 + e^-1
    e1 = math.exp(-1.0)
    cb = ade.DiscreteCallback(lambda u, t: t == 1.0 or t == 2.0, lambda u, t: u + 1.0)
    prob = ade.ODEProblem(lambda u, p, t: -u, np.array([1.0]), (0.0, 3.0))
    sol = ade.solve(prob, alg, rtol=RTOL, atol=ATOL, tstops=[1.0, 2.0], callback=cb)
    assert sol.retcode == "Success"
    np.testing.assert_array_equal(sol.t_events[0], [1.0, 2.0])
    close(np.asarray(sol.u_events[0]), [[e1], [e1**2 + e1]], scale=2.0)
    close(np.asarray(sol.u[-1]), [e1**3 + e1**2 + e1], scale=2.0)
    # Saved twice at each event, before and after.
    for te in (1.0, 2.0):
        i = np.flatnonzero(sol.t == te)
        assert len(i) == 2
        assert np.asarray(sol.u[i[1]])[0] == pytest.approx(np.asarray(sol.u[i[0]])[0] + 1.0)


def test_discrete_callback_with_parameters_and_terminal():
    # Stops at the end of the first accepted step where u < p[0] = 0.5; u = exp(-t) crosses
    # 0.5 at log 2, so that step ends at or after log 2 and the one before it ends before.
    prob = ade.ODEProblem(lambda u, p, t: -u, np.array([1.0]), (0.0, 5.0), np.array([0.5]))
    cb = ade.DiscreteCallback(lambda u, p, t: u[0] < p[0], lambda u, p, t: u, terminal=True)
    sol = ade.solve(prob, "Tsit5", rtol=1e-8, atol=1e-10, callback=cb)
    assert sol.retcode == "Terminated"
    t_end = sol.t[-1]
    assert list(sol.t_events[0]) == [t_end]
    assert t_end >= math.log(2.0) * (1 - 1e-6)
    previous = np.unique(sol.t)[-2]
    assert previous <= math.log(2.0) * (1 + 1e-6)
    assert np.asarray(sol.u[-1])[0] < 0.5


# ---------------------------------------------------------------- structure of t_events
def test_t_events_and_u_events_structure_for_several_callbacks():
    # x = sin t, v = cos t on (1, 20): x vanishes at k pi (6 roots), v at pi/2 + k pi
    # (6 roots: 1.57 ... 17.28); |x| <= 1 never reaches 5.
    cb_x = ade.ContinuousCallback(lambda u, t: u[0])
    cb_v = ade.ContinuousCallback(lambda u, t: u[1])
    never = ade.ContinuousCallback(lambda u, t: u[0] - 5.0)
    prob = oscillator_problem()
    v_roots = np.pi / 2 + np.pi * np.arange(6)

    for callback in ([ade.CallbackSet(cb_x, cb_v), never],
                     (ade.CallbackSet(cb_x, cb_v), never),
                     ade.CallbackSet(ade.CallbackSet(cb_x, cb_v), never)):
        sol = ade.solve(prob, "Tsit5", rtol=RTOL, atol=ATOL, callback=callback)
        assert isinstance(sol.t_events, list) and isinstance(sol.u_events, list)
        assert len(sol.t_events) == len(sol.u_events) == 3
        for arr in sol.t_events:
            assert isinstance(arr, np.ndarray) and arr.ndim == 1
        close(sol.t_events[0], ROOTS, scale=20.0)
        close(sol.t_events[1], v_roots, scale=20.0)
        assert sol.t_events[2].shape == (0,)
        assert np.asarray(sol.u_events[0]).shape == (6, 2)
        assert np.asarray(sol.u_events[1]).shape == (6, 2)
        assert np.asarray(sol.u_events[2]).shape == (0, 2)
        close(np.asarray(sol.u_events[1])[:, 0], np.sin(v_roots), scale=1.0)

    sol = ade.solve(prob, "Tsit5", rtol=RTOL, atol=ATOL, callback=cb_v)
    assert len(sol.t_events) == 1
    close(sol.t_events[0], v_roots, scale=20.0)


def test_u_events_keep_the_state_shape():
    # A (2, 2) matrix state u' = -u, u0 = [[1, 2], [3, 4]]: u[0, 0] = exp(-t) = 0.5 at log 2.
    u0 = np.array([[1.0, 2.0], [3.0, 4.0]])
    prob = ade.ODEProblem(lambda u, p, t: -u, u0, (0.0, 1.0))
    cb = ade.ContinuousCallback(lambda u, t: u[0, 0] - 0.5)
    sol = ade.solve(prob, "Tsit5", rtol=RTOL, atol=ATOL, callback=cb)
    assert np.asarray(sol.u_events[0]).shape == (1, 2, 2)
    close(sol.t_events[0], [math.log(2.0)], scale=1.0)
    close(np.asarray(sol.u_events[0])[0], 0.5 * u0, scale=4.0)


def test_solve_without_callbacks_has_empty_event_lists():
    sol = ade.solve(oscillator_problem(), "Tsit5")
    assert sol.t_events == []
    assert sol.u_events == []


# ---------------------------------------------------------------------------- bad input
def _recording_problem():
    """u' = -u on (0, 1), remembering every time f is called (to see integration start)."""
    seen = []

    def f(u, p, t):
        seen.append(t)
        return -u

    return ade.ODEProblem(f, np.array([1.0]), (0.0, 1.0)), seen


def _expect_error_before_integrating(error, match, make_callback):
    # dt is given so that no initial-step estimate evaluates f beyond t0: any call of f at
    # t > 0 is a trial step.
    prob, seen = _recording_problem()
    with pytest.raises(error, match=match):
        ade.solve(prob, "Tsit5", dt=0.1, callback=make_callback())
    assert all(t == 0.0 for t in seen)  # no trial step was taken


def test_condition_not_callable():
    _expect_error_before_integrating(ade.InvalidType, "condition",
                                     lambda: ade.ContinuousCallback(42))
    _expect_error_before_integrating(ade.InvalidType, "condition",
                                     lambda: ade.DiscreteCallback("x", lambda u, t: u))


def test_affect_not_callable():
    _expect_error_before_integrating(ade.InvalidType, "affect",
                                     lambda: ade.ContinuousCallback(lambda u, t: u[0], 3.0))
    _expect_error_before_integrating(ade.InvalidType, "affect",
                                     lambda: ade.DiscreteCallback(lambda u, t: True, 3.0))


@pytest.mark.parametrize("direction", [2, -2, 0.5])
def test_direction_out_of_range(direction):
    _expect_error_before_integrating(
        ade.InvalidArgument, "direction",
        lambda: ade.ContinuousCallback(lambda u, t: u[0], direction=direction))


@pytest.mark.parametrize(
    "make_callback",
    [
        lambda: 42,
        lambda: (lambda u, t: u[0]),  # a bare function is not a callback
        lambda: [ade.ContinuousCallback(lambda u, t: u[0]), "not a callback"],
        lambda: ade.CallbackSet(ade.ContinuousCallback(lambda u, t: u[0]), 42),
    ],
    ids=["int", "function", "list-member", "set-member"],
)
def test_callback_argument_that_is_not_a_callback(make_callback):
    _expect_error_before_integrating(ade.InvalidType, "(?i)callback", make_callback)


def test_errors_derive_from_the_builtins():
    assert issubclass(ade.InvalidType, TypeError)
    assert issubclass(ade.InvalidArgument, ValueError)
    assert issubclass(ade.ShapeMismatch, ValueError)
    with pytest.raises(TypeError):
        ade.solve(_recording_problem()[0], callback=ade.ContinuousCallback(42))
    with pytest.raises(ValueError):
        ade.solve(_recording_problem()[0],
                  callback=ade.ContinuousCallback(lambda u, t: u[0], direction=5))


@pytest.mark.parametrize("kind", ["continuous", "discrete"])
def test_affect_returning_the_wrong_shape(kind):
    prob = ade.ODEProblem(lambda u, p, t: np.ones(2), np.zeros(2), (0.0, 1.0))
    if kind == "continuous":
        cb = ade.ContinuousCallback(lambda u, t: u[0] - 0.5, lambda u, t: np.zeros(3))
    else:
        cb = ade.DiscreteCallback(lambda u, t: True, lambda u, t: np.zeros(3))
    with pytest.raises(ade.ShapeMismatch, match="affect"):
        ade.solve(prob, "Tsit5", callback=cb)


def test_event_loop_stops_with_a_retcode_and_a_warning():
    # u' = 1 from u0 = -1; two callbacks A and B, both with condition u (crossing upwards at
    # t = 1) and an affect that puts the state back at u = -1e-300, strictly below the root.
    # Whichever fires first (say A) leaves the state below the root, where B's condition is
    # negative; B's condition is positive at any later point (u = -1e-300 + s for s >= one
    # ulp of t ~ 2.2e-16), so B crosses at t* + 1e-300, i.e. at the same time up to the
    # time resolution; its affect puts the state back below the root, so A crosses at once,
    # and so on without end. (This holds whether the callback that just fired takes its
    # sign at the restart from the new state or from further along the next step; a single
    # callback would loop only under the first reading.) Reaching t = 3 one ulp at a time
    # would take ~1e16 events: the solve must notice and stop with "EventLoop".
    # maxiters turns a missing loop detection into a failure instead of a hang.
    prob = ade.ODEProblem(lambda u, p, t: np.ones(1), np.array([-1.0]), (0.0, 3.0))

    def back_below(u, t):
        return np.array([-1e-300])

    a = ade.ContinuousCallback(lambda u, t: u[0], back_below)
    b = ade.ContinuousCallback(lambda u, t: u[0], back_below)
    with pytest.warns(ade.SolverWarning, match="EventLoop"):
        sol = ade.solve(prob, "Tsit5", rtol=1e-8, atol=1e-10, callback=[a, b],
                        maxiters=100_000)
    assert sol.retcode == "EventLoop"
    assert not sol.success
    t_ev = np.concatenate(sol.t_events)
    assert 2 <= len(t_ev) <= 10_000
    np.testing.assert_allclose(t_ev, 1.0, rtol=0, atol=1e-6)
    assert sol.t[-1] == pytest.approx(1.0, abs=1e-6)


# ----------------------------------------------------------------------------- review cases
def _scipy_bounces(g, c, e, x0, t_end):
    """Reference: SciPy DOP853 at rtol 1e-12, restarted at each impact (x = 0, v -> -e v)."""
    from scipy.integrate import solve_ivp

    def hit(t, y):
        return y[0]

    hit.terminal, hit.direction = True, -1
    t0, u, times = 0.0, np.array([x0, 0.0]), []
    while True:
        r = solve_ivp(lambda t, y: [y[1], -g - c * y[1]], (t0, t_end), u, method="DOP853",
                      events=hit, rtol=1e-12, atol=1e-14)
        if r.status != 1:
            return np.array(times), r.y[:, -1]
        t0 = float(r.t_events[0][0])
        times.append(t0)
        u = np.array([0.0, -e * r.y_events[0][0][1]])


@pytest.mark.parametrize("alg", [None, "Tsit5", "Vern7", "Rodas5P"])
def test_a_reflecting_affect_fires_once_per_crossing(alg):
    """A ball with drag and direction=0: the step onto each impact ends a local error beyond
    the root, and the reflected motion crosses back over it within ~1e-8 s. That is not an
    event (the crossing is measured from what is left at the event): 5 bounces in [0, 2.5],
    as the SciPy reference, and the final state agrees."""
    g, c, e = 9.81, 0.3, 0.8
    prob = ade.ODEProblem(lambda u, p, t: np.array([u[1], -g - c * u[1]]), [1.0, 0.0],
                          (0.0, 2.5))
    cb = ade.ContinuousCallback(lambda u, t: u[0], lambda u, t: np.array([u[0], -e * u[1]]))
    sol = ade.solve(prob, alg, callback=cb, rtol=1e-8, atol=1e-10)
    times, final = _scipy_bounces(g, c, e, 1.0, 2.5)
    assert len(sol.t_events[0]) == len(times) == 5
    # event times and the state: within 1e3 times the tolerance after five restarts
    tol = 1e3 * (1e-8 + 1e-10)
    assert np.max(np.abs(sol.t_events[0] - times)) < tol
    assert np.max(np.abs(np.asarray(sol.u[-1]) - final)) < tol * 10  # |v| ~ 10


@pytest.mark.parametrize("alg, kw", [(None, {"rtol": 1e-3}), ("Rodas5P", {"rtol": 1e-3}),
                                     ("RK4", {"dt": 0.1})])
def test_a_reflecting_affect_at_loose_tolerances(alg, kw):
    """x'' = -x from (0, 1), affect v -> -v/2 at every zero of x: after the k-th event the
    solution is (-1/2)^k (sin t, cos t), the events are at pi, 2 pi, 3 pi, and
    u(10) = -(1/8) (sin 10, cos 10). Loose tolerances and fixed steps leave the condition
    further beyond the root after each step onto an event; it must still fire once each."""
    prob = ade.ODEProblem(lambda u, p, t: np.array([u[1], -u[0]]), [0.0, 1.0], (0.0, 10.0))
    cb = ade.ContinuousCallback(lambda u, t: u[0], lambda u, t: np.array([u[0], -0.5 * u[1]]))
    sol = ade.solve(prob, alg, callback=cb, **kw)
    assert len(sol.t_events[0]) == 3
    exact = -0.125 * np.array([math.sin(10.0), math.cos(10.0)])
    # loose solves (rtol 1e-3, or RK4 at dt 0.1 over 10 time units): 1e-2 of the O(0.1) state
    assert np.max(np.abs(np.asarray(sol.u[-1]) - exact)) < 1e-3


def test_callbacks_with_the_same_root_fire_together():
    prob = ade.ODEProblem(lambda u, p, t: np.array([1.0]), [-1.0], (0.0, 3.0))
    sol = ade.solve(prob, callback=[ade.ContinuousCallback(lambda u, t: u[0]),
                                    ade.ContinuousCallback(lambda u, t: t - 1.0)])
    assert [len(t) for t in sol.t_events] == [1, 1]
    close(np.concatenate(sol.t_events), np.array([1.0, 1.0]), scale=1.0)


def test_time_first_callbacks_warn():
    with pytest.warns(ade.SolverWarning, match="condition"):
        ade.ContinuousCallback(lambda t, y: y - 0.5, terminal=True)


def test_a_boolean_or_nan_condition_is_an_error():
    prob = ade.ODEProblem(lambda u, p, t: np.array([1.0]), [-1.0], (0.0, 3.0))
    with pytest.raises(ade.InvalidType, match="bool"):
        ade.solve(prob, callback=ade.ContinuousCallback(lambda u, t: u[0] > 0))
    with pytest.raises(ade.InvalidArgument, match="NaN"):
        ade.solve(prob, callback=ade.ContinuousCallback(lambda u, t: np.nan * u[0]))
    two = ade.ODEProblem(lambda u, p, t: np.ones(2), [-1.0, -2.0], (0.0, 3.0))
    with pytest.raises(ade.InvalidType, match="True or False"):
        ade.solve(two, callback=ade.DiscreteCallback(lambda u, t: u > 0, lambda u, t: u))


def test_terminal_affect_is_the_dense_output_at_the_end():
    prob = ade.ODEProblem(lambda u, p, t: np.array([1.0]), [0.0], (0.0, 3.0))
    cb = ade.ContinuousCallback(lambda u, t: u[0] - 0.5, lambda u, t: u + 4.5, terminal=True)
    sol = ade.solve(prob, "Tsit5", callback=cb)
    assert sol.retcode == "Terminated" and sol.success  # ended as asked
    assert float(sol.u[-1, 0]) == pytest.approx(5.0)
    assert float(sol(sol.t[-1])[0]) == pytest.approx(5.0)
    assert float(sol(0.25)[0]) == pytest.approx(0.25)
