"""Bad input gets a clear error naming the argument; nothing is silently wrong."""

from __future__ import annotations

import numpy as np
import pytest

import autodiffeq as ade


def f(u, p, t):
    return -u


@pytest.mark.parametrize(
    ("u0", "error", "text"),
    [
        (np.array([1.0, np.nan]), ade.InvalidArgument, "u0 contains NaN or inf"),
        ([1.0, np.inf], ade.InvalidArgument, "u0 contains NaN or inf"),
        ("abc", ade.InvalidType, "u0 must be a number"),
        (None, ade.InvalidType, "u0 must be a number"),
        ([1.0, "x"], ade.InvalidType, "u0 must be numeric"),
        (np.array([1 + 2j]), ade.InvalidType, "u0 is complex"),
    ],
)
def test_bad_u0(u0, error, text):
    with pytest.raises(error, match=text):
        ade.ODEProblem(f, u0, (0.0, 1.0))


@pytest.mark.parametrize(
    ("tspan", "error", "text"),
    [
        ((0.0, 0.0), ade.InvalidArgument, "tspan is empty"),
        ((0.0,), ade.InvalidArgument, "exactly two entries"),
        ((0.0, 1.0, 2.0), ade.InvalidArgument, "exactly two entries"),
        ((0.0, np.inf), ade.InvalidArgument, "t1 must be finite"),
        ((np.nan, 1.0), ade.InvalidArgument, "t0 must be finite"),
        ("ab", ade.InvalidType, "tspan must be a pair"),
        (1.0, ade.InvalidType, "tspan must be a pair"),
        ((0.0, "1"), ade.InvalidType, "t1 must be a real number"),
    ],
)
def test_bad_tspan(tspan, error, text):
    with pytest.raises(error, match=text):
        ade.ODEProblem(f, [1.0], tspan)


def test_errors_are_also_builtin_exceptions():
    with pytest.raises(ValueError):
        ade.ODEProblem(f, [np.nan], (0.0, 1.0))
    with pytest.raises(TypeError):
        ade.ODEProblem("not callable", [1.0], (0.0, 1.0))
    assert issubclass(ade.UnsupportedCombination, ade.AutodiffeqError)


def test_f_not_callable():
    with pytest.raises(ade.InvalidType, match="f must be callable"):
        ade.ODEProblem(42, [1.0], (0.0, 1.0))


def test_f_wrong_shape_and_dtype():
    prob = ade.ODEProblem(lambda u, p, t: np.zeros(3), [1.0, 2.0], (0.0, 1.0))
    with pytest.raises(ade.ShapeMismatch, match=r"f returned shape \(3,\) but the state u0 has "
                                                r"shape \(2,\)"):
        ade.solve(prob)
    prob32 = ade.ODEProblem(lambda u, p, t: np.zeros(2), np.ones(2, np.float32), (0.0, 1.0))
    with pytest.raises(ade.ShapeMismatch, match="f returned dtype float64 but the state has "
                                                "dtype float32"):
        ade.solve(prob32)
    with pytest.raises(ade.InvalidType, match="f returned None"):
        ade.solve(ade.ODEProblem(lambda u, p, t: None, [1.0], (0.0, 1.0)))
    with pytest.raises(ade.InvalidType, match="f must return an array of numbers"):
        ade.solve(ade.ODEProblem(lambda u, p, t: ["a"], [1.0], (0.0, 1.0)))


def test_f_returning_a_list_is_accepted():
    prob = ade.ODEProblem(lambda u, p, t: [-u[0], -2 * u[1]], [1.0, 1.0], (0.0, 1.0))
    sol = ade.solve(prob, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(sol.u[-1], [np.exp(-1), np.exp(-2)], rtol=1e-6)


def test_exception_in_f_gets_a_note():
    def bad(u, p, t):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom") as info:
        ade.solve(ade.ODEProblem(bad, [1.0], (0.0, 1.0)))
    assert any("first call" in note for note in info.value.__notes__)


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"rtol": -1e-3}, ade.InvalidArgument, "rtol must be non-negative"),
        ({"atol": -1.0}, ade.InvalidArgument, "atol must be non-negative"),
        ({"rtol": 0.0, "atol": 0.0}, ade.InvalidArgument, "both zero"),
        ({"rtol": np.nan}, ade.InvalidArgument, "rtol must be finite"),
        ({"atol": np.ones(3)}, ade.ShapeMismatch, "atol has shape"),
        ({"saveat": [0.5, 2.0]}, ade.InvalidArgument, "saveat time 2.0 is outside tspan"),
        ({"saveat": [0.5, 0.2]}, ade.InvalidArgument, "saveat must be strictly increasing"),
        ({"saveat": -0.1}, ade.InvalidArgument, "saveat spacing must be"),
        ({"saveat": []}, ade.InvalidArgument, "saveat is empty"),
        ({"tstops": [1.5]}, ade.InvalidArgument, "tstops time 1.5 is outside tspan"),
        ({"dt": 0.0}, ade.InvalidArgument, "dt must be a finite positive"),
        ({"dt": np.nan}, ade.InvalidArgument, "dt must be a finite positive"),
        ({"maxiters": 0}, ade.InvalidArgument, "maxiters must be a positive integer"),
        ({"dtmin": 1.0, "dtmax": 0.1}, ade.InvalidArgument, "dtmin"),
        ({"adaptive": "yes"}, ade.InvalidType, "adaptive must be"),
        ({"backend": 3}, ade.InvalidType, "backend must be"),
        ({"nonsense_option": 1}, ade.InvalidArgument, "unknown option"),
    ],
)
def test_bad_solve_options(decay_problem, kwargs, error, text):
    with pytest.raises(error, match=text):
        ade.solve(decay_problem, "Tsit5", **kwargs)


def test_fixed_step_needs_dt(decay_problem):
    with pytest.raises(ade.InvalidArgument, match="dt is required for a fixed-step solve"):
        ade.solve(decay_problem, "RK4")
    with pytest.raises(ade.InvalidArgument, match="dt is required"):
        ade.solve(decay_problem, "Tsit5", adaptive=False)


def test_adaptive_without_estimate_is_unsupported(decay_problem):
    with pytest.raises(ade.UnsupportedCombination, match="no error estimate"):
        ade.solve(decay_problem, "RK4", adaptive=True, dt=0.1)


def test_bad_alg_and_problem_types(decay_problem):
    with pytest.raises(ade.InvalidType, match="alg must be"):
        ade.solve(decay_problem, 3)
    with pytest.raises(ade.InvalidType, match="prob must be an autodiffeq problem"):
        ade.solve("problem")


def test_dense_output_errors(decay_problem):
    sol = ade.solve(decay_problem, "Tsit5")
    with pytest.raises(ade.DenseOutputError, match="outside the solved interval"):
        sol(1.5)
    with pytest.raises(ade.DenseOutputError, match="outside the solved interval"):
        sol(np.array([0.5, -0.1]))
    with pytest.raises(ade.DenseOutputError, match="scalar or 1-D"):
        sol(np.zeros((2, 2)))
    saved = ade.solve(decay_problem, "Tsit5", saveat=[0.5])
    with pytest.raises(ade.DenseOutputError, match="no dense output"):
        saved(0.5)


def test_remake_validates_and_rejects_unknown_fields(decay_problem):
    with pytest.raises(ade.InvalidArgument):
        decay_problem.remake(u0=[np.nan, 1.0])
    with pytest.raises(ade.InvalidType, match="unknown fields"):
        decay_problem.remake(y0=[1.0])
    assert decay_problem.remake(tspan=(0.0, 2.0)).tspan == (0.0, 2.0)


def test_integer_u0_is_promoted(decay_problem):
    prob = ade.ODEProblem(f, [1, 2], (0.0, 1.0))
    assert prob.u0.dtype == np.float64
    assert ade.solve(prob).u.dtype == np.float64


def test_unsupported_float16():
    prob = ade.ODEProblem(f, np.ones(2, np.float16), (0.0, 1.0))
    with pytest.raises(ade.InvalidType, match="float16"):
        ade.solve(prob)


def test_mismatched_tolerance_shapes(decay_problem):
    with pytest.raises(ade.ShapeMismatch, match="do not broadcast"):
        ade.solve(decay_problem, rtol=np.ones(3) * 1e-3, atol=np.ones(2) * 1e-6)


def test_nf_counts_every_call_for_array_states():
    calls = []

    def f(u, p, t):
        calls.append(t)
        return -u

    prob = ade.ODEProblem(f, np.ones((2, 2)), (0.0, 1.0))
    sol = ade.solve(prob, "Tsit5")
    assert sol.stats.nf == len(calls)


def test_first_step_respects_dtmin():
    prob = ade.ODEProblem(lambda u, p, t: -u, [1.0], (0.0, 10.0))
    with pytest.warns(ade.SolverWarning, match="DtLessThanMin"):
        sol = ade.solve(prob, "Tsit5", dtmin=0.5, dt=0.01)  # then asks for less than 0.5
    assert sol.t[1] - sol.t[0] >= 0.5 - 1e-12
