"""BrownianPath: the law of its increments and integrals (moments against their exact values,
tolerances of several standard errors of the Monte Carlo estimates), consistency on
sub-intervals in any query order, determinism, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

import autodiffeq as ade

N = 40_000
#: a Monte Carlo moment of N samples is within this many standard errors
Z = 5.0


def _close(estimate: float, exact: float, std_error: float) -> None:
    assert abs(estimate - exact) <= Z * std_error, (estimate, exact, std_error)


def test_increment_and_integral_law_in_any_order() -> None:
    W = ade.BrownianPath((0.0, 2.0), (N,), seed=1)
    # asked out of order: the end first, then points inside (bridges), then a forward step
    w_all, a_all = W.increment_and_integral(0.0, 1.0)
    pieces = [(0.0, 0.3), (0.3, 0.75), (0.75, 1.0), (1.0, 1.6)]
    draws = [W.increment_and_integral(s, t) for s, t in reversed(pieces)][::-1]
    for (s, t), (w, a) in zip(pieces, draws, strict=True):
        h = t - s
        # Var dW = h, Var I10 = h^3/3, Cov = h^2/2; the std error of a sample variance
        # of N Gaussians is var * sqrt(2/N)
        _close(float(np.mean(w * w)), h, h * math.sqrt(2 / N))
        _close(float(np.mean(a * a)), h ** 3 / 3, h ** 3 / 3 * math.sqrt(2 / N))
        _close(float(np.mean(w * a)), h ** 2 / 2, h ** 2 * math.sqrt(1 / N))
        _close(float(np.mean(w)), 0.0, math.sqrt(h / N))
    # independent increments on disjoint intervals
    for (w1, a1), (w2, a2) in zip(draws, draws[1:], strict=False):
        _close(float(np.mean(w1 * w2)), 0.0, math.sqrt(np.var(w1) * np.var(w2) / N))
        _close(float(np.mean(a1 * a2)), 0.0, math.sqrt(np.var(a1) * np.var(a2) / N))
    # the pieces add up exactly: W additive, I10 additive with the shift (t - s) W(s)
    (w0, a0), (w1, a1), (w2, a2) = draws[:3]
    # (to rounding: a few float64 operations on values of the size of the largest |W|)
    rounding = 64 * np.finfo(np.float64).eps * max(1.0, float(np.max(np.abs(w_all))))
    np.testing.assert_allclose(w0 + w1 + w2, w_all, rtol=0, atol=rounding)
    np.testing.assert_allclose(a0 + (a1 + 0.45 * w0) + (a2 + 0.25 * (w0 + w1)), a_all,
                               rtol=0, atol=rounding)


def test_point_values_and_levy_area() -> None:
    W = ade.BrownianPath((1.0, 3.0), (N,), seed=2)
    assert np.all(W(1.0) == 0)
    w = W(2.5)
    _close(float(np.var(w)), 1.5, 1.5 * math.sqrt(2 / N))
    np.testing.assert_array_equal(W(1.5, 2.5), W(2.5) - W(1.5))
    H = W.levy_area(1.5, 2.5)  # space-time Levy area: N(0, h/12), independent of dW
    _close(float(np.var(H)), 1 / 12, 1 / 12 * math.sqrt(2 / N))
    _close(float(np.mean(H * W(1.5, 2.5))), 0.0, math.sqrt(1 / 12 / N))


def test_same_seed_same_queries_same_bits_and_fixed_step_runs() -> None:
    def walk(seed: int) -> tuple[ade.BrownianPath, list]:
        W = ade.BrownianPath((0.0, 1.0), (3,), seed=seed)
        out = []
        t = 0.0
        for k in range(40):
            t1 = (k + 1) / 40
            out.append(W.increment(t, t1))
            t = t1
        return W, out
    Wa, a = walk(7)
    Wb, b = walk(7)
    _, c = walk(8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])
    # equal steps are drawn ahead in runs, never more points than asked beyond the last run
    assert len(Wa.times) <= 41 + 32


def test_time_resolution_and_span_errors() -> None:
    W = ade.BrownianPath((0.0, 1.0), 2, seed=0)
    x = W(0.3)
    np.testing.assert_array_equal(W(0.1 + 0.2), x)  # 0.30000000000000004 is the same time
    with pytest.raises(ade.InvalidArgument, match="outside the Brownian path's span"):
        W(1.5)
    with pytest.raises(ade.InvalidArgument, match="seed"):
        ade.BrownianPath((0.0, 1.0), 2, seed=-1)
    with pytest.raises(ade.InvalidType, match="shape"):
        ade.BrownianPath((0.0, 1.0), "x")
    with pytest.raises(ade.InvalidArgument, match="tspan"):
        ade.BrownianPath((1.0, 1.0), 2)


@pytest.mark.parametrize("shape", [(), (5,), (70,)])
def test_row_by_row_and_running_sum_builds_are_the_same_path(shape, monkeypatch) -> None:
    """A run of fixed steps is built row by row (wide paths) or with running sums (narrow
    ones): the same additions in the same order, so the same bits."""
    import autodiffeq.brownian as brownian

    values = []
    for threshold in (1, 10 ** 9):
        monkeypatch.setattr(brownian, "_ROWWISE_SIZE", threshold)
        W = ade.BrownianPath((0.0, 1.0), shape, seed=11)
        steps = [W.increment_and_integral(k / 50, (k + 1) / 50) for k in range(50)]
        values.append((steps, W(0.333)))
    for (wa, ka), (wb, kb) in zip(values[0][0], values[1][0]):
        np.testing.assert_array_equal(wa, wb)
        np.testing.assert_array_equal(ka, kb)
    np.testing.assert_array_equal(values[0][1], values[1][1])
