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
