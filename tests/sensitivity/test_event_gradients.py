"""Gradients through solves with events (``ForwardSensitivity`` and ``DiscreteAdjoint``):
event times and states as functions of ``p`` and ``u0`` against analytic derivatives, a loss
of the final state against central finite differences of an independent SciPy integration
(``solve_ivp`` restarted at each event), the two methods against each other, and the methods
that must refuse events.

An event time t*(x) is defined implicitly by ``g(u(t*; x), x, t*) = 0``; its derivative is
``dt*/dx = -(g_u S + g_p) / (g_u f + g_t)`` (implicit function theorem, ``S = du/dx`` just
before the event) and the state after the affect ``a`` has the sensitivity
``S+ = a_u S- + a_p + (a_u f- + a_t - f+) dt*/dx`` (the saltation update; Hiskens & Pai,
IEEE TCAS-I 47, 2000). The tests check the results, not these formulas.

Tolerances: the solves run at ``rtol=1e-10, atol=1e-12``. The derivatives of a solve accurate
to ``rtol`` are accurate to about ``rtol`` times the conditioning of the map; ``1e4 * rtol``
relative (``GRAD_REL``) allows for that and still fails for a missing saltation or
implicit-function term, which are O(1) relative errors here.
"""

from __future__ import annotations

import math

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad, jacobian
from scipy.integrate import solve_ivp

import autodiffeq as ade

METHODS = ["ForwardSensitivity", "DiscreteAdjoint"]
UNSUPPORTED = ["ReverseMode", "ForwardMode", "BacksolveAdjoint", "InterpolatingAdjoint",
               "QuadratureAdjoint"]

RTOL, ATOL = 1e-10, 1e-12
GRAD_REL = 1e4 * RTOL


# --------------------------------------------------------------- analytic bouncing ball
# u = [x, v], x' = v, v' = -g, bounce at x = 0 (direction -1) with v -> -e v; p = [g, e].
# Dropped from x0 with upward speed v0 (v0 = 0 below): the first impact is at
#   t1 = (v0 + sqrt(v0^2 + 2 g x0)) / g     with speed   v1 = sqrt(v0^2 + 2 g x0),
# and t_n = t1 + (2 v1 / g) S_n, S_n = sum_{k=1}^{n-1} e^k. At v0 = 0 (t1 = sqrt(2 x0/g),
# v1 = g t1): t_n = t1 (1 + 2 S_n), so
#   dt_n/dg = -t_n / (2 g),   dt_n/de = 2 t1 sum_{k=1}^{n-1} k e^{k-1},
#   dt_n/dx0 = t_n / (2 x0),  dt_n/dv0 = dt1/dv0 + (2 S_n / g) dv1/dv0 = 1/g + 0.
# Velocity just before bounce n: w_n = -e^{n-1} v1 = -e^{n-1} sqrt(2 g x0 + v0^2), so
#   dw_n/dg = w_n / (2 g),  dw_n/de = -(n-1) e^{n-2} v1,  dw_n/dx0 = w_n / (2 x0),
#   dw_n/dv0 = -e^{n-1} v0 / v1 = 0;
# and the height there is identically 0: its derivatives vanish.
G, E, X0 = 9.81, 0.8, 1.0
P_BALL = np.array([G, E])
U0_BALL = np.array([X0, 0.0])
T_BALL = 2.0  # bounces at 0.4515, 1.1739, 1.7518 (then 2.2142): three in [0, 2]
# (A step from bounce k is at most 2 - t_k long, so the condition's 10 samples per step are
# closer than the next flight lasts: no flight can hide between two samples.)


def ball(u, p, t):
    return anp.stack([u[1], -p[0] + 0.0 * u[0]])


def ball_callback():
    return ade.ContinuousCallback(lambda u, t: u[0],
                                  lambda u, p, t: anp.stack([u[0], -p[1] * u[1]]),
                                  direction=-1)


def ball_solve(p=P_BALL, u0=U0_BALL, sensealg=None, alg="Tsit5"):
    prob = ade.ODEProblem(ball, u0, (0.0, T_BALL), p)
    return ade.solve(prob, alg, rtol=RTOL, atol=ATOL, callback=ball_callback(),
                     sensealg=sensealg)


def t_n(n, g=G, e=E, x0=X0):
    return math.sqrt(2 * x0 / g) * (1 + 2 * sum(e**k for k in range(1, n)))


def dt_n(n, g=G, e=E, x0=X0):
    """[dt_n/dg, dt_n/de], [dt_n/dx0, dt_n/dv0] at v0 = 0."""
    t1 = math.sqrt(2 * x0 / g)
    tn = t_n(n, g, e, x0)
    dp = [-tn / (2 * g), 2 * t1 * sum(k * e ** (k - 1) for k in range(1, n))]
    du0 = [tn / (2 * x0), 1.0 / g]
    return np.array(dp), np.array(du0)


def dw_n(n, g=G, e=E, x0=X0):
    """Derivatives of the velocity just before bounce n: [d/dg, d/de], [d/dx0, d/dv0]."""
    v1 = math.sqrt(2 * g * x0)
    w = -(e ** (n - 1)) * v1
    dp = [w / (2 * g), -(n - 1) * e ** (n - 2) * v1 if n > 1 else 0.0]
    du0 = [w / (2 * x0), 0.0]
    return np.array(dp), np.array(du0)


def test_analytic_derivatives_match_differences_of_the_formulas():
    """The closed forms above against central differences of t_n and w_n themselves (also
    the general-v0 formula for dt_n/dv0)."""
    h = 1e-6

    def t_general(g, e, x0, v0, n):
        v1 = math.sqrt(v0 * v0 + 2 * g * x0)
        return (v0 + v1) / g + 2 * v1 / g * sum(e**k for k in range(1, n))

    for n in (1, 2, 3):
        dp, du0 = dt_n(n)
        fd = [(t_general(G + h, E, X0, 0, n) - t_general(G - h, E, X0, 0, n)) / (2 * h),
              (t_general(G, E + h, X0, 0, n) - t_general(G, E - h, X0, 0, n)) / (2 * h),
              (t_general(G, E, X0 + h, 0, n) - t_general(G, E, X0 - h, 0, n)) / (2 * h),
              (t_general(G, E, X0, h, n) - t_general(G, E, X0, -h, n)) / (2 * h)]
        np.testing.assert_allclose(np.concatenate([dp, du0]), fd, rtol=1e-7)
        assert t_general(G, E, X0, 0.0, n) == pytest.approx(t_n(n), rel=1e-14)

        def w(g, e, x0, n=n):
            return -(e ** (n - 1)) * math.sqrt(2 * g * x0)

        dp, du0 = dw_n(n)
        fd = [(w(G + h, E, X0) - w(G - h, E, X0)) / (2 * h),
              (w(G, E + h, X0) - w(G, E - h, X0)) / (2 * h),
              (w(G, E, X0 + h) - w(G, E, X0 - h)) / (2 * h)]
        np.testing.assert_allclose(np.concatenate([dp, du0[:1]]), fd, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("sensealg", METHODS)
@pytest.mark.parametrize("n", [1, 2, 3])
def test_bounce_time_gradient_is_analytic(sensealg, n):
    g_p = grad(lambda p: ball_solve(p=p, sensealg=sensealg).t_events[0][n - 1])(P_BALL)
    g_u0 = grad(lambda u0: ball_solve(u0=u0, sensealg=sensealg).t_events[0][n - 1])(U0_BALL)
    exact_p, exact_u0 = dt_n(n)
    np.testing.assert_allclose(g_p, exact_p, rtol=GRAD_REL, atol=GRAD_REL * np.abs(exact_p).max())
    np.testing.assert_allclose(g_u0, exact_u0, rtol=GRAD_REL)


@pytest.mark.parametrize("sensealg", METHODS)
def test_jacobian_of_all_bounce_times(sensealg):
    J = jacobian(lambda p: ball_solve(p=p, sensealg=sensealg).t_events[0])(P_BALL)
    assert J.shape == (3, 2)
    exact = np.array([dt_n(n)[0] for n in (1, 2, 3)])
    np.testing.assert_allclose(J, exact, rtol=GRAD_REL, atol=GRAD_REL * np.abs(exact).max())


@pytest.mark.parametrize("sensealg", METHODS)
@pytest.mark.parametrize("n", [1, 3])
def test_event_state_gradient_is_analytic(sensealg, n):
    """u_events (the state before the affect) moves with the event time: the height stays
    0, the velocity is -e^{n-1} sqrt(2 g x0)."""

    def event_state(p, u0):
        return ball_solve(p=p, u0=u0, sensealg=sensealg).u_events[0][n - 1]

    exact_p, exact_u0 = dw_n(n)
    scale = math.sqrt(2 * G * X0)
    Jp = jacobian(lambda p: event_state(p, U0_BALL))(P_BALL)  # (2 state, 2 params)
    Ju = jacobian(lambda u0: event_state(P_BALL, u0))(U0_BALL)
    np.testing.assert_allclose(Jp[1], exact_p, rtol=GRAD_REL, atol=GRAD_REL * scale)
    np.testing.assert_allclose(Ju[1], exact_u0, rtol=GRAD_REL, atol=GRAD_REL * scale)
    np.testing.assert_allclose(Jp[0], 0.0, atol=GRAD_REL * scale)
    np.testing.assert_allclose(Ju[0], 0.0, atol=GRAD_REL * scale)


# ------------------------------------------------- a ball with drag: finite differences
# x' = v, v' = -g - c v, bounce at x = h (condition uses p) with v -> -e v;
# p = [g, e, c, h], u0 = [1, 0.5]. Bounces at 0.4914, 1.1317, 1.6157, 1.9868, ...
# (Zeno at ~3.34): T = 1.8 is 0.18 away from the nearest, so the number of bounces before T
# does not change under the finite-difference steps.
P_DRAG = np.array([9.81, 0.8, 0.3, 0.1])
U0_DRAG = np.array([1.0, 0.5])
T_DRAG = 1.8


def drag(u, p, t):
    return anp.stack([u[1], -p[0] - p[2] * u[1]])


def drag_callback():
    return ade.ContinuousCallback(lambda u, p, t: u[0] - p[3],
                                  lambda u, p, t: anp.stack([u[0], -p[1] * u[1]]),
                                  direction=-1)


def drag_loss(p, u0, sensealg=None, alg="Tsit5"):
    prob = ade.ODEProblem(drag, u0, (0.0, T_DRAG), p)
    sol = ade.solve(prob, alg, rtol=RTOL, atol=ATOL, saveat=[T_DRAG],
                    callback=drag_callback(), sensealg=sensealg)
    return anp.sum(sol.u[-1] ** 2)


def scipy_drag_final_state(p, u0, T=T_DRAG):
    """Independent reference: DOP853 at rtol 1e-13 with a terminal event at x = h,
    restarted after each bounce from [x, -e v]."""
    g, e, c, h = p

    def hit(t, u):
        return u[0] - h

    hit.terminal = True
    hit.direction = -1
    t0, u = 0.0, np.array(u0, dtype=float)
    for _ in range(20):
        r = solve_ivp(lambda t, u: [u[1], -g - c * u[1]], (t0, T), u, method="DOP853",
                      rtol=1e-13, atol=1e-15, events=hit)
        assert r.success
        if r.status != 1:
            return r.y[:, -1], t0
        t0, y = r.t_events[0][0], r.y_events[0][0]
        u = np.array([y[0], -e * y[1]])
    raise AssertionError("too many bounces")


def central_fd(fun, x, rel=1e-5):
    x = np.asarray(x, dtype=float)
    out = np.zeros(x.size)
    for j in range(x.size):
        step = rel * max(abs(x[j]), 1.0)
        e = np.zeros(x.size)
        e[j] = step
        out[j] = (fun(x + e) - fun(x - e)) / (2 * step)
    return out


def _reference_gradients():
    # Central differences, step 1e-5 relative: truncation error ~ step^2 |L'''| / 6 ~ 1e-10
    # relative; the reference solves' errors (~1e-13) divided by the step add ~1e-8. The
    # comparison below uses 1e-5 relative, with 1e-5 * max|grad| absolute for small entries.
    def loss_ref(p, u0):
        return float(np.sum(scipy_drag_final_state(p, u0)[0] ** 2))

    fd_p = central_fd(lambda p: loss_ref(p, U0_DRAG), P_DRAG)
    fd_u0 = central_fd(lambda u0: loss_ref(P_DRAG, u0), U0_DRAG)
    return fd_p, fd_u0


FD_REL = 1e-5


def test_reference_has_three_bounces_before_T():
    _, last_bounce = scipy_drag_final_state(P_DRAG, U0_DRAG)
    assert 1.6 < last_bounce < 1.62
    # the plain (undifferentiated) solve agrees with the reference
    prob = ade.ODEProblem(drag, U0_DRAG, (0.0, T_DRAG), P_DRAG)
    sol = ade.solve(prob, "Tsit5", rtol=RTOL, atol=ATOL, callback=drag_callback())
    assert len(sol.t_events[0]) == 3
    np.testing.assert_allclose(np.asarray(sol.u[-1]),
                               scipy_drag_final_state(P_DRAG, U0_DRAG)[0],
                               rtol=0, atol=1e3 * (RTOL * 5 + ATOL))


@pytest.mark.parametrize("sensealg", METHODS)
def test_final_state_loss_gradient_against_finite_differences(sensealg):
    fd_p, fd_u0 = _reference_gradients()
    g_p = grad(lambda p: drag_loss(p, U0_DRAG, sensealg))(P_DRAG)
    g_u0 = grad(lambda u0: drag_loss(P_DRAG, u0, sensealg))(U0_DRAG)
    np.testing.assert_allclose(g_p, fd_p, rtol=FD_REL, atol=FD_REL * np.abs(fd_p).max())
    np.testing.assert_allclose(g_u0, fd_u0, rtol=FD_REL, atol=FD_REL * np.abs(fd_u0).max())


def test_the_two_methods_agree():
    # Both differentiate solves accurate to rtol = 1e-10; they agree to ~rtol times the
    # conditioning: 1e4 * rtol.
    g = {m: grad(lambda p, m=m: drag_loss(p, U0_DRAG, m))(P_DRAG) for m in METHODS}
    gu = {m: grad(lambda u0, m=m: drag_loss(P_DRAG, u0, m))(U0_DRAG) for m in METHODS}
    a, b = METHODS
    np.testing.assert_allclose(g[a], g[b], rtol=GRAD_REL, atol=GRAD_REL * np.abs(g[b]).max())
    np.testing.assert_allclose(gu[a], gu[b], rtol=GRAD_REL,
                               atol=GRAD_REL * np.abs(gu[b]).max())


@pytest.mark.parametrize("sensealg", UNSUPPORTED)
def test_other_methods_refuse_events(sensealg):
    with pytest.raises(ade.UnsupportedCombination) as info:
        grad(lambda p: drag_loss(p, U0_DRAG, sensealg))(P_DRAG)
    message = str(info.value)
    assert "ForwardSensitivity" in message and "DiscreteAdjoint" in message


# ------------------------------------------------------------------- a terminal event
# u' = -k u, u(0) = u0, terminal at u = 1/2: t* = log(2 u0) / k, so
#   dt*/dk = -log(2 u0) / k^2,   dt*/du0 = 1 / (k u0);
# the state saved at t* is 1/2 whatever k and u0 are: its derivatives vanish
# (S + f dt*/dk = -t* / 2 + (-k / 2)(-log(2 u0) / k^2) = 0).
K = 1.3


def decay(u, p, t):
    return -p[0] * u


def terminal_solve(p, u0, sensealg, alg):
    prob = ade.ODEProblem(decay, u0, (0.0, 5.0), p)
    cb = ade.ContinuousCallback(lambda u, t: u[0] - 0.5, direction=-1, terminal=True)
    return ade.solve(prob, alg, rtol=RTOL, atol=ATOL, callback=cb, sensealg=sensealg)


@pytest.mark.parametrize("alg", ["Tsit5", "Vern7", "Rodas5P"])
@pytest.mark.parametrize("sensealg", METHODS)
def test_terminal_time_gradient_is_analytic(sensealg, alg):
    p, u0 = np.array([K]), np.array([1.0])
    t_star = math.log(2.0) / K
    sol = terminal_solve(p, u0, None, alg)
    assert sol.retcode == "Terminated"
    assert sol.t[-1] == pytest.approx(t_star, rel=1e3 * RTOL)

    g_p = grad(lambda p: terminal_solve(p, u0, sensealg, alg).t_events[0][0])(p)
    g_u0 = grad(lambda u0: terminal_solve(p, u0, sensealg, alg).t_events[0][0])(u0)
    np.testing.assert_allclose(g_p, [-math.log(2.0) / K**2], rtol=GRAD_REL)
    np.testing.assert_allclose(g_u0, [1.0 / K], rtol=GRAD_REL)


@pytest.mark.parametrize("alg", ["Tsit5", "Rodas5P"])
@pytest.mark.parametrize("sensealg", METHODS)
def test_state_saved_at_a_terminal_event_has_zero_derivative(sensealg, alg):
    """sol.u[-1] is u(t*(p); p) = 1/2 for every k and u0: the event time's dependence
    (f dt*/dx) cancels the sensitivity at fixed time (S = -t*/2 for k)."""
    p, u0 = np.array([K]), np.array([1.0])
    t_star = math.log(2.0) / K
    g_p = grad(lambda p: terminal_solve(p, u0, sensealg, alg).u[-1][0])(p)
    g_u0 = grad(lambda u0: terminal_solve(p, u0, sensealg, alg).u[-1][0])(u0)
    np.testing.assert_allclose(g_p, [0.0], atol=GRAD_REL * 0.5 * t_star)
    np.testing.assert_allclose(g_u0, [0.0], atol=GRAD_REL * 0.5)


@pytest.mark.parametrize("sensealg", ["ForwardSensitivity", "DiscreteAdjoint"])
def test_an_affect_written_with_plain_numpy_is_differentiated(sensealg):
    """``np.array([...])`` of traced entries hides the affect from autograd (an object array:
    a silently zero Jacobian); the event derivatives fall back to differences. The second
    bounce time t2 = t1 (1 + 2 e) with t1 = sqrt(2 x0 / g): d t2 / d x0 = t2 / (2 x0)."""
    g, e, x0 = 9.81, 0.8, 1.0

    def ball(u, p, t):
        return anp.stack([u[1], -g + 0.0 * u[0]])

    cb = ade.ContinuousCallback(lambda u, t: u[0], lambda u, t: np.array([u[0], -e * u[1]]),
                                direction=-1)

    def t2(x):
        prob = ade.ODEProblem(ball, anp.stack([x, 0.0]), (0.0, 1.5))
        return ade.solve(prob, "Tsit5", rtol=1e-10, atol=1e-12, callback=cb,
                         sensealg=sensealg).t_events[0][1]

    exact = math.sqrt(2 * x0 / g) * (1 + 2 * e) / (2 * x0)
    # differences of the affect (step eps^(1/3)) are exact for a linear affect; the solve
    # contributes its tolerance
    assert grad(t2)(x0) == pytest.approx(exact, rel=1e-6)
