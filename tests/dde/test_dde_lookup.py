"""The history lookup ``h(p, s)`` of a delay solve, checked value for value.

The lookup answers the common case (``t0 < s <= t``, strictly inside the accepted steps) on a
fast path: a bisection on the step times and the step's interpolant, made once and kept
(:mod:`autodiffeq_plugins.dde.history`). These tests hold it to independent answers, to the
bit: the step found by a linear scan and an interpolant made afresh from that step's data,
for lookups in any order (not only the near-monotone order of a solve), at step boundaries,
before and at ``t0``, at the end of the history; lookups made during solves with rejected
steps, several lags read out of order and steps longer than the lag (the fixed-point
iteration, whose lookups inside the step take the general path) are compared with the final
history. The NumPy fast paths of the interpolant (``ndarray.dot`` in place of ``@``) are held
to the generic expressions, and the cached signature check to a changed function.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import autodiffeq as ade
from autodiffeq.errors import InvalidType
from autodiffeq.stepper import power_interpolant

P_LV = np.array([1.5, 1.0, 3.0, 1.0])
ONES2 = np.ones(2)


def _lv(u, h, p, t):
    x, y = u[0], u[1]
    xd = h(p, t - 1.0)[0]
    return np.array([p[0] * xd - p[1] * x * y, -p[2] * y + p[3] * x * y])


def _three_lags(u, h, p, t):
    # lags read out of order (the middle one first, then the longest, then the shortest)
    a = h(p, t - 0.9)
    b = h(p, t - 1.7)
    c = h(p, t - 0.3)
    return np.array([-a[1] + 0.4 * b[0] - 0.2 * u[0], a[0] - 0.3 * c[1] + 0.1 * b[1]])


def _short_lag(u, h, p, t):
    return -2.0 * h(p, t - 0.05) + 0.5 * u


PROBLEMS = {
    "lv": (_lv, np.ones(2), lambda p, s: np.ones(2), (0.0, 6.0), P_LV, [1.0]),
    "three_lags_jump": (_three_lags, np.array([2.0, -1.0]),
                        lambda p, s: np.array([1.0 + 0.1 * s, math.cos(s)]), (0.0, 5.0),
                        None, [0.3, 0.9, 1.7]),
    "short_lag": (_short_lag, np.ones(1), lambda p, s: np.ones(1), (0.0, 2.0), None, [0.05]),
}


def _recording(f):
    """``f`` that records, per call, the lookup and every ``(s, value, end of the accepted
    history at the time)``."""
    seen: dict = {"calls": []}

    def rhs(u, h, p, t):
        seen["h"] = h

        def spy(p_, s):
            value = h(p_, s)
            hist = h.history
            end = hist.ts[-1] if hist is not None else h.t0
            seen["calls"].append((float(s), np.array(value, copy=True), end))
            return value

        return f(u, spy, p, t)

    return rhs, seen


def _fresh(lookup, s):
    """``u(s)`` from the final history, independently of the lookup: the step holding ``s``
    by a linear scan (the step after a repeated time), an interpolant made afresh."""
    hist = lookup.history
    ts = hist.ts
    i = max(k for k in range(len(hist.data)) if ts[k] <= s and ts[k] < ts[k + 1])
    data = hist._step_data(i)
    at = hist.solver_of(i).interpolant(ts[i], ts[i + 1] - ts[i], hist.us[i], hist.us[i + 1],
                                       data)
    return np.reshape(at(s), lookup.shape)


def _solve(name, alg, rtol):
    f, u0, h, tspan, p, lags = PROBLEMS[name]
    rhs, seen = _recording(f)
    prob = ade.DDEProblem(rhs, u0, h, tspan, p, constant_lags=lags)
    sol = ade.solve(prob, alg, rtol=rtol, atol=rtol * 1e-2, dense=True)
    assert sol.retcode == "Success"
    return sol, seen, p


@pytest.mark.parametrize("alg", ["Tsit5", "Vern7", "BS3", "Rodas5P", None])
@pytest.mark.parametrize("name", ["lv", "three_lags_jump"])
def test_lookups_in_any_order_match_a_linear_scan_and_a_fresh_interpolant(name, alg):
    sol, seen, p = _solve(name, alg, 1e-7)
    lookup = seen["h"]
    lookup.t_now = math.inf  # after the solve: every time is the past
    lookup.in_step = False
    ts = lookup.history.ts
    t0, t1 = ts[0], ts[-1]
    rng = np.random.default_rng(7)
    interior = [0.5 * (a + b) for a, b in zip(ts[:-1], ts[1:])]
    boundaries = list(ts[1:-1])
    random = list(rng.uniform(t0, t1, 200))
    times = np.array(interior + boundaries + random)
    rng.shuffle(times)  # out of order: far jumps back and forth
    for s in times.tolist():
        fast = lookup(p, s)
        general = lookup._lookup(p, s)
        assert np.array_equal(fast, general), s
        assert np.array_equal(fast, _fresh(lookup, s)), s
        # sol(s) evaluates the same polynomial another way: the two differ by rounding in
        # the sums of the stage terms (a few hundred ulp of the values at most); 1e-10 of the
        # values' size is far above that and three orders below the solve's error (rtol 1e-7)
        scale = float(np.max(np.abs(fast))) + 1.0
        assert np.allclose(fast, np.reshape(sol(s), lookup.shape), rtol=1e-10,
                           atol=1e-10 * scale)
    # the edges: before t0 (the history function), t0 itself, the end of the history
    h = PROBLEMS[name][2]
    assert np.array_equal(lookup(p, t0 - 0.25), h(p, t0 - 0.25))
    assert np.array_equal(lookup(p, t0), sol.u[0])
    # (the interpolant at theta = 1: the end state to rounding, as before)
    end = sol.u[-1]
    assert np.allclose(lookup(p, t1), end, rtol=1e-10,
                       atol=1e-10 * (float(np.max(np.abs(end))) + 1.0))


@pytest.mark.parametrize("alg", ["Tsit5", "Vern7", "Rodas5P"])
@pytest.mark.parametrize("name, rtol", [("lv", 1e-8), ("three_lags_jump", 1e-9),
                                        ("short_lag", 1e-4)])
def test_lookups_during_the_solve_match_the_final_history(name, rtol, alg):
    """Every lookup answered from the accepted steps while the solve ran (after rejected
    steps, between the lags' out-of-order reads, around fixed-point iterations) is the final
    history's value at that time, to the bit; lookups into the step being taken are not
    (they are the iteration's trial values) and are left out."""
    sol, seen, p = _solve(name, alg, rtol)
    lookup = seen["h"]
    t0 = lookup.t0
    checked = 0
    for s, value, end in seen["calls"]:
        if t0 < s < end:
            assert np.array_equal(value, _fresh(lookup, s)), (s, end)
            checked += 1
        elif s < t0:
            assert np.array_equal(value, PROBLEMS[name][2](p, s))
    assert checked > 0, len(seen["calls"])
    if name == "short_lag":
        assert sol.stats.extra["fixedpoint_steps"] > 0, "the steps never exceeded the lag"


def test_some_of_the_compared_solves_reject_steps():
    """The comparisons above include solves with rejected steps (a rejected step leaves the
    history and the kept interpolants as they were)."""
    rejected = [_solve(name, alg, rtol)[0].stats.nreject
                for name, rtol in (("lv", 1e-8), ("three_lags_jump", 1e-9), ("short_lag", 1e-4))
                for alg in ("Tsit5", "Vern7", "Rodas5P")]
    assert sum(rejected) > 0, rejected


def test_matrix_state_lookups_have_the_state_shape():
    def f(u, h, p, t):
        past = h(p, t - 0.5)
        assert past.shape == (2, 2)
        return -past @ p

    p = np.array([[1.0, 0.3], [0.0, 0.8]])
    rhs, seen = _recording(f)
    prob = ade.DDEProblem(rhs, np.eye(2), lambda p_, s: np.eye(2) * (1.0 + s), (0.0, 2.0), p,
                          constant_lags=[0.5])
    sol = ade.solve(prob, "Tsit5", rtol=1e-8, atol=1e-10, dense=True)
    lookup = seen["h"]
    lookup.t_now = math.inf
    for s in np.linspace(0.01, 1.99, 41).tolist():
        assert np.array_equal(lookup(p, s), _fresh(lookup, s))
    assert np.allclose(lookup(p, 1.3), np.reshape(sol(1.3), (2, 2)), rtol=1e-12)


# ------------------------------------------------------------- the NumPy fast paths
@pytest.mark.parametrize("deg, n", [(1, 2), (2, 3), (3, 1), (4, 2), (5, 300), (6, 4), (7, 5),
                                    (7, 64), (8, 2), (9, 3)])
def test_power_interpolant_numpy_path_matches_the_generic_product(deg, n):
    """The powers written out (degrees 1-8; a comprehension beyond) and ``ndarray.dot``: the
    bits of the generic ``u0 + asarray(powers) @ Q``."""
    rng = np.random.default_rng(deg * 1000 + n)
    Q = rng.standard_normal((deg, n)) * rng.uniform(0.1, 10.0, (deg, 1))
    u0 = rng.standard_normal(n)
    t, dt = 2.5, 0.0371
    at = power_interpolant(np, t, dt, u0, Q)
    for s in (t + dt * rng.uniform(0.0, 1.0, 300)).tolist() + [t, t + dt]:
        th = (s - t) / dt
        generic = u0 + np.asarray([th ** k for k in range(1, deg + 1)], dtype=u0.dtype) @ Q
        assert np.array_equal(at(s), generic)
    # float32 keeps the generic path and its dtype
    at32 = power_interpolant(np, t, dt, u0.astype(np.float32), Q.astype(np.float32))
    assert at32(t + 0.5 * dt).dtype == np.float32


@pytest.mark.parametrize("alg", ["Tsit5", "Vern7", "BS3", "DP5"])
def test_explicit_interpolant_and_extra_stages_match_the_generic_products(alg):
    """``interpolant`` (``P^T.dot(K)``) and Verner's lazily completed stages
    (``ndarray.dot``) against the ``@`` expressions they replace, on a solve's steps."""
    def f(u, p, t):
        return np.array([u[1], -u[0] + 0.1 * math.sin(t) * u[1], -0.5 * u[2] + u[0]])

    prob = ade.ODEProblem(f, np.array([1.0, 0.0, 0.5]), (0.0, 3.0))
    sol = ade.solve(prob, alg, rtol=1e-6, atol=1e-8, dense=True)
    hist = sol.dense_output
    stepper = hist.stepper
    for i in range(len(hist.data)):
        t, t_next = hist.ts[i], hist.ts[i + 1]
        dt = t_next - t
        data = hist.data[i]
        full = stepper.complete_dense_data(t, dt, hist.us[i], data)
        if stepper.tableau.extra is not None:
            expect = np.concatenate([data, np.zeros((len(stepper._extra_c), data.shape[1]))])
            for j, cj in enumerate(stepper._extra_c):
                width = stepper.n_interp + j
                y = hist.us[i] + (stepper._extra_A[j, :width] * dt) @ expect[:width, ...]
                expect[stepper.n_interp + j, ...] = f(y, None, t + cj * dt)
            assert np.array_equal(full, expect)
        at = stepper.interpolant(t, dt, hist.us[i], hist.us[i + 1], full)
        Q = (np.matrix_transpose(stepper._P) @ full) * dt
        for th in (0.0, 0.3, 0.77, 1.0):
            s = t + th * dt
            theta = (s - t) / dt
            generic = hist.us[i] + np.asarray([theta ** k for k in range(1, Q.shape[0] + 1)]) @ Q
            assert np.array_equal(at(s), generic)


# ------------------------------------------------------------- the signature check cache
def test_signature_check_is_cached_per_function_and_redone_when_it_changes():
    def f(u, h, p, t):
        return -h(p, t - 1.0)

    def hist(p, s):
        return np.ones(1)

    prob = ade.DDEProblem(f, None, hist, (0.0, 2.0), constant_lags=[1.0])
    first = ade.solve(prob, "Tsit5", rtol=1e-6, atol=1e-8, saveat=[2.0])
    again = ade.solve(prob, "Tsit5", rtol=1e-6, atol=1e-8, saveat=[2.0])
    assert np.array_equal(first.u, again.u)

    def wrong(u, h, t):
        return -u

    # new defaults holding an array: compared by identity, not with ==
    f.__defaults__ = ()
    assert np.array_equal(ade.solve(prob, "Tsit5", rtol=1e-6, atol=1e-8, saveat=[2.0]).u,
                          first.u)

    def with_array(u, h, p, t, scale=ONES2):
        return -scale[0] * h(p, t - 1.0)

    prob_array = ade.DDEProblem(with_array, None, hist, (0.0, 2.0), constant_lags=[1.0])
    ade.solve(prob_array, "Tsit5", rtol=1e-6, atol=1e-8, saveat=[2.0])
    with_array.__defaults__ = (np.ones(2),)  # == on these would be ambiguous
    again = ade.solve(prob_array, "Tsit5", rtol=1e-6, atol=1e-8, saveat=[2.0])
    assert np.array_equal(again.u, first.u)

    f.__code__ = wrong.__code__  # the same function object, now with three parameters
    with pytest.raises(InvalidType, match="f must be callable as f"):
        ade.solve(prob, "Tsit5", rtol=1e-6, atol=1e-8)
    with pytest.raises(InvalidType, match="f must be callable as f"):  # not cached as good
        ade.solve(prob, "Tsit5", rtol=1e-6, atol=1e-8)
