"""SDEProblem and SDE solves: validation and clear errors, default solvers by noise kind,
saveat, path reuse, retcodes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import autodiffeq as ade


def f(u, p, t):
    return 1.5 * u


def g(u, p, t):
    return 0.5 * u


def _prob(**kw):
    return ade.SDEProblem(f, g, np.ones(4), (0.0, 1.0), **kw)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(noise="diag"), ade.InvalidArgument, "unknown noise 'diag'"),
    (dict(noise="general"), ade.InvalidArgument, "noise_dim is required"),
    (dict(noise="general", noise_dim=0), ade.InvalidArgument, "noise_dim must be a positive"),
    (dict(noise_dim=2), ade.InvalidArgument, "noise_dim is only for noise='general'"),
    (dict(interpretation="ito2"), ade.InvalidArgument, "unknown interpretation"),
    (dict(noise=3), ade.InvalidType, "noise must be one of"),
])
def test_problem_validation(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        _prob(**kwargs)


def test_problem_input_errors_and_remake() -> None:
    with pytest.raises(ade.InvalidArgument, match="u0 contains NaN"):
        ade.SDEProblem(f, g, np.array([1.0, np.nan]), (0.0, 1.0))
    with pytest.raises(ade.InvalidArgument, match="backwards"):
        ade.SDEProblem(f, g, np.ones(2), (1.0, 0.0))
    with pytest.raises(ade.InvalidType, match="g must be callable"):
        ade.SDEProblem(f, None, np.ones(2), (0.0, 1.0))
    prob = _prob(interpretation="Stratonovich")
    assert prob.interpretation == "stratonovich"
    general = prob.remake(noise="general", noise_dim=3)
    assert general.noise_shape == (3,) and general.g_shape == (4, 3)
    assert general.remake(noise="scalar").noise_dim is None
    assert _prob(noise="scalar").noise_shape == ()
    with pytest.raises(ade.InvalidType, match="unknown fields"):
        prob.remake(q=1)


def test_g_shape_checked_on_first_call() -> None:
    bad = ade.SDEProblem(f, lambda u, p, t: np.ones(5), np.ones(4), (0.0, 1.0))
    with pytest.raises(ade.ShapeMismatch, match=r"g returned shape \(5,\), expected \(4,\)"):
        ade.solve(bad, seed=1)
    general = ade.SDEProblem(f, lambda u, p, t: np.ones(4), np.ones(4), (0.0, 1.0),
                             noise="general", noise_dim=2)
    with pytest.raises(ade.ShapeMismatch, match=r"expected \(4, 2\)"):
        ade.solve(general, "EM", dt=0.1, seed=1)


def test_defaults_and_unsupported_combinations() -> None:
    assert ade.solve(_prob(), seed=1).alg.name == "SOSRI"
    assert ade.solve(_prob(noise="scalar"), seed=1).alg.name == "SOSRI"
    additive = ade.SDEProblem(f, lambda u, p, t: 0.1 * np.ones_like(u), np.ones(4), (0.0, 1.0),
                              noise="additive")
    assert ade.solve(additive, seed=1).alg.name == "SOSRA"
    assert ade.solve(_prob(interpretation="stratonovich"), seed=1).alg.name == "RKMil"
    general = ade.SDEProblem(f, lambda u, p, t: 0.1 * np.ones((4, 2)), np.ones(4), (0.0, 1.0),
                             noise="general", noise_dim=2)
    with pytest.raises(ade.InvalidArgument, match="dt is required .* solver 'EM'"):
        ade.solve(general, seed=1)
    with pytest.raises(ade.UnsupportedCombination, match="integrates ODE problems") as err:
        ade.solve(_prob(), "Tsit5", seed=1)
    assert "SOSRI" in str(err.value)
    with pytest.raises(ade.UnsupportedCombination, match="diagonal noise") as err:
        ade.solve(_prob(), "SRA1", seed=1)
    assert "SRIW1" in str(err.value) and "EulerHeun" not in str(err.value)
    with pytest.raises(ade.UnsupportedCombination, match="Stratonovich") as err:
        ade.solve(_prob(interpretation="stratonovich"), "SRIW1", seed=1)
    assert "RKMil" in str(err.value)


def test_seed_and_brownian_errors() -> None:
    prob = _prob()
    with pytest.raises(ade.InvalidArgument, match="seed must be a non-negative integer"):
        ade.solve(prob, seed=1.5)
    with pytest.raises(ade.InvalidArgument, match="does not cover"):
        ade.solve(prob, brownian=ade.BrownianPath((0.0, 0.5), (4,)))
    with pytest.raises(ade.ShapeMismatch, match=r"needs W of shape \(4,\)"):
        ade.solve(prob, brownian=ade.BrownianPath((0.0, 1.0), (5,)))
    with pytest.raises(ade.ShapeMismatch, match=r"needs W of shape \(\)"):
        ade.solve(_prob(noise="scalar"), brownian=ade.BrownianPath((0.0, 1.0), (4,)))
    with pytest.raises(ade.InvalidType, match="BrownianPath"):
        ade.solve(prob, brownian=np.zeros(4))
    with pytest.raises(ade.InvalidArgument, match="lives on backend 'array_api_strict'"):
        ade.solve(prob, brownian=ade.BrownianPath((0.0, 1.0), (4,),
                                                  backend="array_api_strict"))
    with pytest.raises(ade.InvalidArgument, match="either seed= or brownian="):
        ade.solve(prob, seed=1, brownian=ade.BrownianPath((0.0, 1.0), (4,)))
    with pytest.raises(ade.InvalidArgument, match="applies to SDE problems, not to ODE"):
        ade.solve(ade.ODEProblem(f, np.ones(2), (0.0, 1.0)),
                  brownian=ade.BrownianPath((0.0, 1.0), (2,)))


def test_saveat_steps_onto_times_and_path_reuse() -> None:
    prob = _prob()
    times = [0.0, 0.123, 0.5, 1.0]
    sol = ade.solve(prob, "SRIW1", seed=4, saveat=times)
    assert np.array_equal(sol.t, times) and isinstance(sol.W, ade.BrownianPath)
    # the saved state at 0.123 is a step end: fixed steps of the same path through it agree
    # with the exact solution there to the method's accuracy
    exact = np.exp(1.375 * 0.123 + 0.5 * sol.W(0.123))
    assert np.max(np.abs(sol.u[1] - exact)) < 1e-3
    again = ade.solve(prob, "SRIW1", brownian=sol.W, saveat=times)
    np.testing.assert_array_equal(again.u, sol.u)
    fine = ade.solve(prob, "SRIW1", dt=2.0 ** -12, adaptive=False, brownian=sol.W, saveat=[1.0])
    np.testing.assert_allclose(fine.u[-1], np.exp(1.375 + 0.5 * sol.W(1.0)), rtol=1e-5)


def test_unstable_keeps_partial_solution() -> None:
    blowup = ade.SDEProblem(lambda u, p, t: u ** 3, g, 5 * np.ones(3), (0.0, 10.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sol = ade.solve(blowup, "EM", dt=0.1, seed=1)
    assert sol.retcode == "Unstable"
    assert 1 < len(sol.t) < 101 and np.all(np.isfinite(sol.u[:-1]))


def test_shaped_state_and_float32() -> None:
    u0 = np.ones((2, 3), dtype=np.float32)
    prob = ade.SDEProblem(f, g, u0, (0.0, 1.0))
    sol = ade.solve(prob, "SOSRI", seed=2)
    assert sol.u.dtype == np.float32 and sol.u.shape[1:] == (2, 3)
    assert sol.W.shape == (2, 3)
    exact = np.exp(1.375 + 0.5 * sol.W(1.0))
    assert np.max(np.abs(sol.u[-1] - exact) / exact) < 0.05
