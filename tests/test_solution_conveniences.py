"""Solution conveniences: components of the dense output (``idxs``) and ``sol.plot``."""

from __future__ import annotations

import numpy as np
import pytest

import autodiffeq as ade

RATES = np.array([1.0, 2.0, 3.0])


def solution() -> ade.Solution:
    prob = ade.ODEProblem(lambda u, p, t: -RATES * u, np.ones(3), (0.0, 1.0))
    return ade.solve(prob, "Tsit5", rtol=1e-9, atol=1e-9)


def test_idxs_selects_components_of_the_dense_output() -> None:
    sol = solution()
    t = np.array([0.2, 0.5, 0.9])
    exact = np.exp(-np.outer(t, RATES))
    # the interpolant's error at rtol 1e-9 (Tsit5's 4th-order dense output)
    np.testing.assert_allclose(sol(t, idxs=[0, 2]), exact[:, [0, 2]], rtol=1e-6)
    np.testing.assert_allclose(sol(0.5, idxs=1), np.exp(-1.0), rtol=1e-6)
    np.testing.assert_array_equal(sol(t, idxs=[2]), sol(t)[:, [2]])
    for bad in (5, -4, [[0, 1]], "a"):
        with pytest.raises(ade.DenseOutputError):
            sol(0.5, idxs=bad)


def test_plot_draws_each_component() -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    sol = solution()
    ax = sol.plot()
    assert len(ax.lines) == 6  # a dense curve and the saved states per component
    ax = sol.plot(idxs=[1], dense=False)
    assert len(ax.lines) == 1
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), sol.t)


@pytest.mark.parametrize("alg, tol1, tol2", [("Vern7", 1e-9, 1e-7), ("Tsit5", 1e-7, 1e-5),
                                             ("Rodas5P", 1e-6, 1e-4)])
def test_derivatives_of_the_interpolant(alg, tol1, tol2) -> None:
    """sol(t, deriv=k) against f and df/dt along the solution: the interpolant's own
    accuracy (a derivative loses one order of the dense output per k; tolerances scaled by
    each method's dense order at rtol = 1e-10)."""
    prob = ade.ODEProblem(lambda u, p, t: -RATES * u + np.sin(t), np.ones(3), (0.0, 2.0))
    sol = ade.solve(prob, alg, rtol=1e-10, atol=1e-10)
    t = np.linspace(0.05, 1.95, 9)
    u = sol(t)
    f = -RATES * u + np.sin(t)[:, None]
    df = -RATES * f + np.cos(t)[:, None]
    np.testing.assert_allclose(sol(t, deriv=1), f, rtol=0, atol=tol1 * np.max(np.abs(f)))
    np.testing.assert_allclose(sol(t, deriv=2), df, rtol=0, atol=tol2 * np.max(np.abs(df)))
    np.testing.assert_allclose(sol(0.5, deriv=1, idxs=2), sol(np.array([0.5]), deriv=1)[0, 2],
                               rtol=1e-14)
    assert sol(0.5, deriv=1).shape == (3,)
    for bad in (-1, 1.5, True):
        with pytest.raises(ade.DenseOutputError, match="deriv"):
            sol(0.5, deriv=bad)
