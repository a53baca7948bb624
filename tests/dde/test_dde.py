"""Delay equations through the method of steps: accuracy against exact solutions and an
independent reference, discontinuities, steps longer than the lag, state-dependent lags, a
stiff delay equation, and clear errors for bad input.

Independent reference: SciPy's ``solve_ivp`` (DOP853 or Radau, rtol 1e-12) run interval by
interval over ``[k tau, (k+1) tau]`` (the method of steps done by hand), each interval reading
its delayed term from the previous interval's dense output. Tolerances: the error an
adaptive solve must meet is a multiple of its ``rtol`` (global error grows over the span
while ``rtol`` bounds the local one: 100x, as in the ODE conformance kit).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import autodiffeq as ade
from autodiffeq.testing.dde import polynomial_exact

P_LV = np.array([1.5, 1.0, 3.0, 1.0])


def delayed_lv(u, h, p, t):
    x, y = u[0], u[1]
    xd = h(p, t - 1.0)[0]
    return np.array([p[0] * xd - p[1] * x * y, -p[2] * y + p[3] * x * y])


def ones2(p, s):
    return np.ones(2)


def method_of_steps_reference(rhs, hist, tau, t1, u0, method="DOP853"):
    """``u(t1)`` of ``u' = rhs(t, u, past)`` by SciPy, interval by interval (module doc)."""
    pieces = []

    def past(s):
        if s <= 0.0:
            return hist(s)
        for a, b, sol in pieces:
            if a - 1e-12 <= s <= b + 1e-12:
                return sol(min(max(s, a), b))
        raise AssertionError(f"no piece holds s={s}")

    t, u = 0.0, np.asarray(u0, dtype=float)
    while t < t1 - 1e-14:
        b = min(t + tau, t1)
        sol = solve_ivp(lambda tt, uu: rhs(tt, uu, past), (t, b), u, method=method,
                        rtol=1e-12, atol=1e-14, dense_output=True)
        assert sol.success
        pieces.append((t, b, sol.sol))
        t, u = b, sol.y[:, -1]
    return u


@pytest.fixture(scope="module")
def lv_reference():
    def rhs(t, u, past):
        return np.array([P_LV[0] * past(t - 1.0)[0] - P_LV[1] * u[0] * u[1],
                         -P_LV[2] * u[1] + P_LV[3] * u[0] * u[1]])
    return method_of_steps_reference(rhs, lambda s: np.ones(2), 1.0, 10.0, np.ones(2))


@pytest.mark.parametrize("alg", ["Tsit5", "Vern7", "Rodas5P", None])
@pytest.mark.parametrize("rtol", [1e-6, 1e-9])
def test_delayed_lotka_volterra_against_an_independent_reference(alg, rtol, lv_reference):
    prob = ade.DDEProblem(delayed_lv, None, ones2, (0.0, 10.0), P_LV, constant_lags=[1.0])
    sol = ade.solve(prob, alg, rtol=rtol, atol=rtol * 1e-2)
    assert sol.retcode == "Success"
    err = np.max(np.abs(sol.u[-1] - lv_reference) / np.abs(lv_reference))
    assert err <= 100 * rtol, f"{alg}: relative error {err:.2e} at rtol {rtol:g}"
    # the discontinuity at t0 carried by the lag, up to the method's order
    for k in range(1, math.ceil(sol.alg.order) + 1):
        assert float(k) in sol.t.tolist()


def test_exact_polynomial_solution_and_discontinuities_of_two_lags():
    """u' = -u(t-1) (exact: piecewise polynomial), plus a second lag that f does not use: the
    stops are t0 + k1 * 0.7 + k2 * 1.0 up to the method's order, and the solution is exact."""
    prob = ade.DDEProblem(lambda u, h, p, t: -h(p, t - 1.0), None,
                          lambda p, s: np.ones(1), (0.0, 4.0), constant_lags=[0.7, 1.0])
    sol = ade.solve(prob, "Tsit5", rtol=1e-8, atol=1e-10)
    for k, t in enumerate(sol.t):
        assert abs(sol.u[k, 0] - polynomial_exact(t)[0]) <= 1e-12
    wanted = sorted({round(a * 0.7 + b * 1.0, 12) for a in range(6) for b in range(6)
                     if 0 < a + b <= 5 and a * 0.7 + b * 1.0 <= 4.0})
    got = np.asarray(sol.t)
    for t in wanted:
        assert np.min(np.abs(got - t)) <= 1e-12, f"discontinuity {t} not stepped onto"


def test_steps_longer_than_the_lag_iterate_to_the_tolerance():
    tau = 0.05

    def f(u, h, p, t):
        return -2.0 * h(p, t - tau) + 0.5 * u

    ref = method_of_steps_reference(lambda t, u, past: -2.0 * past(t - tau) + 0.5 * u,
                                    lambda s: np.ones(1), tau, 3.0, np.ones(1))
    prob = ade.DDEProblem(f, None, lambda p, s: np.ones(1), (0.0, 3.0), constant_lags=[tau])
    for alg in ("Tsit5", "Rodas5P"):
        errors = []
        for rtol in (1e-4, 1e-7):
            sol = ade.solve(prob, alg, rtol=rtol, atol=rtol * 1e-2)
            errors.append(abs(sol.u[-1, 0] - ref[0]) / abs(ref[0]))
            assert errors[-1] <= 100 * rtol, (alg, rtol, errors[-1])
        assert sol.stats.extra["fixedpoint_steps"] > 0, "the steps never exceeded the lag"
        assert errors[1] < errors[0]


def test_fixed_point_failure_rejects_the_step_instead_of_accepting_it():
    """With one fixed-point attempt allowed nothing converges on a stiff delayed feedback: the
    steps are rejected and retried smaller, and the answer is still accurate."""
    from autodiffeq_plugins.dde import stepper as mos

    tau = 0.01
    prob = ade.DDEProblem(lambda u, h, p, t: -30.0 * h(p, t - tau), None,
                          lambda p, s: np.ones(1), (0.0, 0.5), constant_lags=[tau])
    ref = method_of_steps_reference(lambda t, u, past: -30.0 * past(t - tau),
                                    lambda s: np.ones(1), tau, 0.5, np.ones(1))
    old = mos.MAX_FIXEDPOINT_ITERS
    try:
        mos.MethodOfSteps.__init__.__defaults__ = (1, mos.FIXEDPOINT_TOL)
        sol = ade.solve(prob, "Tsit5", rtol=1e-6, atol=1e-9)
    finally:
        mos.MethodOfSteps.__init__.__defaults__ = (old, mos.FIXEDPOINT_TOL)
    assert sol.retcode == "Success"
    assert abs(sol.u[-1, 0] - ref[0]) <= 1e-4 * max(1.0, abs(ref[0]))


def test_state_dependent_lag_manufactured_solution():
    """u = sin t + 2 solves u' = cos t + (h(t - tau(u)) - (sin(t - tau(u)) + 2)) with
    tau(u) = 0.5 + 0.1 u and the history the same function: lookups at solution-dependent
    times must be read from the dense output accurately."""
    def tau(u, p, t):
        return 0.5 + 0.1 * u[0]

    def f(u, h, p, t):
        s = t - tau(u, p, t)
        return np.array([math.cos(t) + h(p, s)[0] - (math.sin(s) + 2.0)])

    prob = ade.DDEProblem(f, None, lambda p, s: np.array([math.sin(s) + 2.0]), (0.0, 8.0),
                          dependent_lags=[tau])
    for rtol in (1e-5, 1e-8):
        sol = ade.solve(prob, "Tsit5", rtol=rtol, atol=rtol * 1e-2)
        err = max(abs(sol.u[k, 0] - (math.sin(t) + 2.0)) for k, t in enumerate(sol.t))
        assert err <= 100 * rtol, (rtol, err)


def test_state_dependent_lag_discontinuity_is_located():
    """u' = -u(t - tau(u)), tau = 1 + 0.5 u, h = 1 for t <= 0: the derivative jumps where
    t - tau(u(t)) crosses 0; the tracker finds that time (it satisfies the equation to the
    solve's accuracy) and carries it on."""
    def tau(u, p, t):
        return 1.0 + 0.5 * u[0]

    prob = ade.DDEProblem(lambda u, h, p, t: -h(p, t - tau(u, p, t)), None,
                          lambda p, s: np.ones(1), (0.0, 4.0), dependent_lags=[tau])
    sol = ade.solve(prob, "Tsit5", rtol=1e-9, atol=1e-11)
    assert sol.stats.extra["discontinuities_located"] >= 1
    # before the crossing u = 1 - t exactly (the lookups all fall before 0): the crossing
    # t* solves t - 1 - 0.5 (1 - t) = 0, i.e. t* = 1
    assert abs(sol(0.9)[0] - 0.1) <= 1e-9


def test_state_dependent_discontinuities_become_steps():
    """u' = -u(t - tau(u)), tau = 1 + u^2 / 2, h = 1: declaring the lag makes the solver step
    onto each located discontinuity (t - tau(u(t)) = xi for the earlier ones): sol.t holds
    them, and the solution is more accurate for the same tolerance than without them."""
    def tau(u, p, t):
        return 1.0 + 0.5 * u[0] ** 2

    def f(u, h, p, t):
        return -h(p, t - tau(u, p, t))

    def hist(p, s):
        return np.ones(1)

    tracked = ade.DDEProblem(f, None, hist, (0.0, 6.0), dependent_lags=[tau])
    untracked = ade.DDEProblem(f, None, hist, (0.0, 6.0))
    ref = ade.solve(tracked, "Vern7", rtol=1e-13, atol=1e-15).u[-1, 0]
    sol = ade.solve(tracked, "Tsit5", rtol=1e-6, atol=1e-8)
    first = [t for k, t in enumerate(sol.t) if abs(t - tau(sol.u[k], None, t)) <= 1e-7]
    assert first, "the first discontinuity t - tau(u(t)) = 0 is not a step point"
    assert sol.stats.extra["discontinuities_located"] >= 2
    err_tracked = abs(sol.u[-1, 0] - ref)
    err_untracked = abs(ade.solve(untracked, "Tsit5", rtol=1e-6, atol=1e-8).u[-1, 0] - ref)
    assert err_tracked <= 1e-6 and err_tracked * 10 < err_untracked, (err_tracked,
                                                                    err_untracked)


def test_vern7_steps_longer_than_the_lag():
    """Vern7's lazily computed interpolation stages look inside the step itself when the step
    is longer than the lag: they are computed with the step's last fixed-point trial (no
    recursion), and the solve is as accurate as asked."""
    prob = ade.DDEProblem(lambda u, h, p, t: -h(p, t - 0.2), None, lambda p, s: np.ones(1),
                          (0.0, 10.0), constant_lags=[0.2])
    ref = ade.solve(prob, "Tsit5", rtol=1e-12, atol=1e-14).u[-1, 0]
    for rtol in (1e-4, 1e-8):
        sol = ade.solve(prob, "Vern7", rtol=rtol, atol=rtol * 1e-2)
        assert sol.stats.extra["fixedpoint_steps"] > 0
        assert abs(sol.u[-1, 0] - ref) <= 100 * rtol * max(1.0, abs(ref))


def test_state_dependent_lag_with_an_exact_solution():
    """Paul's problem (C. A. H. Paul, 1992): y' = y y(ln y - 1) / (t + 1), y = 1 for t <= 0;
    exact t + 1 on [0, e - 1], exp((t + 1)/e) on [e - 1, e^2 - 1], (e / (3 - ln(t + 1)))^e
    after. A trial stage that looks into the future (a bad state in an oversized step) is a
    rejected step, not an error."""
    def log(v):
        return math.log(v) if v > 0.0 else -745.0

    def f(u, h, p, t):
        return u * h(p, log(u[0]) - 1.0) / (t + 1.0)

    def tau(u, p, t):
        return t + 1.0 - log(u[0])

    e = math.e
    exact = (e / (3.0 - math.log(11.0))) ** e
    prob = ade.DDEProblem(f, None, lambda p, s: np.ones(1), (0.0, 10.0), dependent_lags=[tau])
    for alg in ("Tsit5", "Vern7", None):
        for rtol in (1e-4, 1e-7):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ade.SolverWarning)
                sol = ade.solve(prob, alg, rtol=rtol, atol=rtol * 1e-2)
            assert sol.retcode == "Success"
            assert abs(sol.u[-1, 0] - exact) <= 100 * rtol * exact, (alg, rtol)


def test_a_jump_at_t0_is_read_from_the_right_side():
    """u0 = 0 but h = 2 (the state jumps at t0): u' = -u(t-1) has the exact solution
    -2t on [0, 1], -2 + (t-1)^2 on [1, 2], -1 + 2 (t-2) - (t-2)^3 / 3 on [2, 3]: every
    method of order >= 3 reproduces it to rounding (a stage at the end of a step reads the
    history before the jump, a stage after it the state after it)."""
    prob = ade.DDEProblem(lambda u, h, p, t: -h(p, t - 1.0), np.zeros(1),
                          lambda p, s: 2.0 * np.ones(1), (0.0, 3.0), constant_lags=[1.0])
    exact = {2.0: -1.0, 3.0: -1.0 + 2.0 - 1.0 / 3.0}
    for alg in ("Tsit5", "Vern7", "BS3", "Rodas5P", None):
        sol = ade.solve(prob, alg, rtol=1e-4, atol=1e-6, saveat=[2.0, 3.0])
        for k, t in enumerate(sol.t):
            assert abs(sol.u[k, 0] - exact[t]) <= 1e-12, (alg, t, sol.u[k, 0])


def test_stiff_delay_equation_with_rodas5p():
    """u' = -1000 (u - cos t) + u(t - 1): Rodas5P is accurate in few steps; an explicit
    method needs stability-bound steps."""
    def rhs(t, u, past):
        return -1000.0 * (u - math.cos(t)) + past(t - 1.0)

    ref = method_of_steps_reference(rhs, lambda s: np.zeros(1), 1.0, 3.0, np.zeros(1),
                                    method="Radau")
    prob = ade.DDEProblem(lambda u, h, p, t: -1000.0 * (u - math.cos(t)) + h(p, t - 1.0),
                          None, lambda p, s: np.zeros(1), (0.0, 3.0), constant_lags=[1.0])
    sol = ade.solve(prob, "Rodas5P", rtol=1e-7, atol=1e-9)
    assert abs(sol.u[-1, 0] - ref[0]) <= 1e-5 * max(1.0, abs(ref[0]))
    explicit = ade.solve(prob, "Tsit5", rtol=1e-7, atol=1e-9)
    assert sol.stats.naccept * 5 < explicit.stats.naccept, (sol.stats, explicit.stats)
    default = ade.solve(prob, rtol=1e-7, atol=1e-9)  # switches to Rodas5P
    assert abs(default.u[-1, 0] - ref[0]) <= 1e-5 * max(1.0, abs(ref[0]))


def test_matrix_state_and_float32():
    prob = ade.DDEProblem(lambda u, h, p, t: -h(p, t - 0.5) * p, None,
                          lambda p, s: np.ones((2, 2), dtype=np.float32), (0.0, 2.0),
                          np.float32(0.8), constant_lags=[0.5])
    sol = ade.solve(prob, "Tsit5", rtol=1e-5, atol=1e-7)
    assert sol.u.dtype == np.float32 and sol.u.shape[1:] == (2, 2)
    ref = ade.solve(ade.DDEProblem(lambda u, h, p, t: -0.8 * h(p, t - 0.5), None,
                                   lambda p, s: np.ones(1), (0.0, 2.0), constant_lags=[0.5]),
                    "Vern7", rtol=1e-10, atol=1e-12, saveat=[2.0])
    assert np.max(np.abs(sol.u[-1] - ref.u[-1, 0])) <= 1e-4


# --------------------------------------------------------------------------- bad input
def _f(u, h, p, t):
    return -h(p, t - 1.0)


def _h(p, s):
    return np.ones(1)


@pytest.mark.parametrize("lags, what", [
    ([0.0], "constant_lags[0] must be a finite positive number"),
    ([-1.0], "constant_lags[0] must be a finite positive number"),
    ([math.nan], "constant_lags[0] must be a finite positive number"),
    ([1.0, math.inf], "constant_lags[1] must be a finite positive number"),
    (["a"], "constant_lags[0] must be a real number"),
])
def test_bad_lags_are_named(lags, what):
    with pytest.raises((ValueError, TypeError), match=r"constant_lags\[\d\]") as info:
        ade.DDEProblem(_f, None, _h, (0.0, 1.0), constant_lags=lags)
    assert what in str(info.value)


def test_bad_problem_definitions_are_named():
    with pytest.raises(TypeError, match="h must be callable"):
        ade.DDEProblem(_f, None, np.ones(1), (0.0, 1.0))
    with pytest.raises(TypeError, match="dependent_lags\\[0\\] must be callable"):
        ade.DDEProblem(_f, None, _h, (0.0, 1.0), dependent_lags=[0.5])
    with pytest.raises(ValueError, match="backwards"):
        ade.DDEProblem(_f, None, _h, (1.0, 0.0))
    with pytest.raises(ValueError, match="u0 contains NaN"):
        ade.DDEProblem(_f, np.array([np.nan]), _h, (0.0, 1.0))


def test_wrong_signatures_and_shapes_are_named():
    wrong_f = ade.DDEProblem(lambda u, p, t: -u, None, _h, (0.0, 1.0), constant_lags=[1.0])
    with pytest.raises(TypeError, match=r"f\(u, h, p, t\)"):
        ade.solve(wrong_f, "Tsit5")
    wrong_h = ade.DDEProblem(_f, np.ones(1), lambda s: np.ones(1), (0.0, 1.0))
    with pytest.raises(TypeError, match=r"h\(p, s\)"):
        ade.solve(wrong_h, "Tsit5")
    calls = {"n": 0}

    def bad_shape(p, s):
        calls["n"] += 1
        return np.ones(3) if calls["n"] > 1 else np.ones(1)

    with pytest.raises(ValueError, match=r"h\(p, s\) returned shape \(3,\)"):
        ade.solve(ade.DDEProblem(_f, None, bad_shape, (0.0, 1.0), constant_lags=[1.0]),
                  "Tsit5")
    with pytest.raises(ValueError, match=r"returned shape \(2,\).*u0 has shape \(1,\)"):
        ade.solve(ade.DDEProblem(_f, np.ones(1), lambda p, s: np.ones(2), (0.0, 1.0),
                                 constant_lags=[1.0]), "Tsit5")


def test_a_lookup_of_the_future_is_an_error():
    prob = ade.DDEProblem(lambda u, h, p, t: -h(p, t + 0.1), None, _h, (0.0, 1.0))
    with pytest.raises(ValueError, match="future"):
        ade.solve(prob, "Tsit5")


def test_solver_without_dense_output_is_refused_with_alternatives():
    import autodiffeq_plugins.dde
    import autodiffeq_plugins.explicit
    import autodiffeq_plugins.numpy_backend
    from autodiffeq_plugins.explicit import tableau_solver_spec
    from autodiffeq_plugins.explicit.tableaus import TABLEAUS

    spec = tableau_solver_spec(TABLEAUS["RK4"], name="RK4NoDense", dense_order=0)
    local = ade.Registry(entry_points=False)
    for module in (autodiffeq_plugins.numpy_backend, autodiffeq_plugins.explicit,
                   autodiffeq_plugins.dde):
        local.register_plugin(module, module.__name__.rsplit(".", 1)[-1])

    class Extra:
        @ade.hookimpl
        def autodiffeq_register_solvers(self, register):
            register(spec)

    local.register_plugin(Extra(), "extra")
    prob = ade.DDEProblem(_f, None, _h, (0.0, 1.0), constant_lags=[1.0])
    with pytest.raises(ade.UnsupportedCombination, match="dense output") as info:
        ade.solve(prob, "RK4NoDense", registry=local, dt=0.1, adaptive=False)
    assert "Tsit5" in info.value.alternatives


def test_ode_only_solvers_named_for_an_ode_problem_type_mismatch():
    """An ODE solver works on a DDE; the registry says so."""
    prob = ade.DDEProblem(_f, None, _h, (0.0, 1.0), constant_lags=[1.0])
    assert ade.registry().compatible("Tsit5", "numpy", None, prob)


def test_an_error_in_f_names_the_delay_call():
    def f(u, h, p, t):
        raise ZeroDivisionError("boom")

    with pytest.raises(ZeroDivisionError) as info:
        ade.solve(ade.DDEProblem(f, None, _h, (0.0, 1.0), constant_lags=[1.0]), "Tsit5")
    assert any("f(u0, h, p, t0)" in note for note in info.value.__notes__)
