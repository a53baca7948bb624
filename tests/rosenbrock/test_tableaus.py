"""The Rosenbrock plugin's own unit tests of its tableau data: these import the plugin's
internal names (``autodiffeq_plugins.rosenbrock.tableaus`` and ``RosenbrockTableau``'s
helpers such as ``classical()``) on purpose. The registered methods' public behaviour is
tested through ``ade.solve``/``ade.registry()`` in the other modules (``test_methods.py``).

Checked from first principles: the order conditions (Hairer & Wanner II, Table IV.7.1, up to
order 4), consistency of the transformed coefficients, L- and A-stability, stiff accuracy, the
dense-output end point and the stage reuse.

Coefficient identities hold to rounding only, so each is checked against a bound on the
rounding of the quantities involved rather than a fixed tolerance: :func:`_with_rounding`.
"""

from __future__ import annotations

import numpy as np
import pytest

from autodiffeq_plugins.rosenbrock import RosenbrockTableau
from autodiffeq_plugins.rosenbrock.tableaus import (
    RODAS3P,
    RODAS4,
    RODAS5P,
    ROSENBROCK23,
    TABLEAUS,
)

NAMES = list(TABLEAUS)
EPS = float(np.finfo(np.float64).eps)
#: rounding allowance per inner product of n terms: ROUNDING * n * eps times the sum of the
#: terms' magnitudes (Higham's gamma_n = n eps, times 8 for the chains of up to four products
#: in one condition and the first-order bound on the inverted Gamma)
ROUNDING = 8.0


def _classical_bounds(tab: RosenbrockTableau) -> tuple[np.ndarray, np.ndarray]:
    """First-order bounds, in units of eps, on the rounding of ``classical()``'s ``Gamma`` and
    ``alpha = A Gamma``: the inverse of ``Gamma^{-1} = diag(1/gamma) - C`` is off by about
    ``|Gamma| |Gamma^{-1}| |Gamma|`` (Higham, *Accuracy and Stability*, 14.1), and the
    product adds its terms' magnitudes ``|A| |Gamma|``."""
    s = tab.stages
    _, Gamma, _ = tab.classical()
    Gamma_inv = np.eye(s) / tab.gamma - tab.C
    d_Gamma = np.abs(Gamma) @ np.abs(Gamma_inv) @ np.abs(Gamma)
    d_alpha = np.abs(tab.A) @ (np.abs(Gamma) + d_Gamma)
    return d_alpha, d_Gamma


def _with_rounding(tab: RosenbrockTableau, w: np.ndarray, conditions):
    """``[(q, residual, allowance)]`` for ``conditions(alpha, Gamma, b) -> [(q, lhs, rhs)]``
    of the classical coefficients with weights ``b = w Gamma``. The allowance is
    ``ROUNDING * s * eps`` times the first-order bound on the rounding of ``lhs - rhs``:
    ``lhs`` evaluated on the magnitudes of the coefficients (the terms summed), plus its change
    when each coefficient moves by its own rounding bound, plus ``|rhs|``."""
    alpha, Gamma, _ = tab.classical()
    d_alpha, d_Gamma = _classical_bounds(tab)
    b = w @ Gamma
    d_b = np.abs(w) @ (np.abs(Gamma) + d_Gamma)
    exact = conditions(alpha, Gamma, b)
    low = conditions(np.abs(alpha), np.abs(Gamma), np.abs(b))
    high = conditions(np.abs(alpha) + EPS * d_alpha, np.abs(Gamma) + EPS * d_Gamma,
                      np.abs(b) + EPS * d_b)
    scale = ROUNDING * tab.stages * EPS
    return [(q, lhs - rhs, scale * ((hi - lo) / EPS + lo + abs(rhs)))
            for (q, lhs, rhs), (_, lo, _), (_, hi, _) in zip(exact, low, high)]


def order_conditions(tab: RosenbrockTableau):
    """The Rosenbrock order conditions up to order 4 as ``conditions(alpha, Gamma, b)`` for
    :func:`_with_rounding`, in the classical form: ``beta_ij = alpha_ij + gamma_ij``
    (j < i), ``beta'_i = sum_j beta_ij``, ``alpha_i = sum_j alpha_ij`` (Hairer & Wanner II,
    Table IV.7.1)."""
    g = tab.gamma

    def conditions(alpha, Gamma, b):
        B = alpha + Gamma - np.diag(np.diag(Gamma))
        a = alpha.sum(axis=1)
        bp = B.sum(axis=1)
        return [
            (1, b.sum(), 1.0),
            (2, b @ bp, 0.5 - g),
            (3, b @ a**2, 1.0 / 3.0),
            (3, b @ (B @ bp), 1.0 / 6.0 - g + g * g),
            (4, b @ a**3, 0.25),
            (4, b @ (a * (alpha @ bp)), 1.0 / 8.0 - g / 3.0),
            (4, b @ (B @ a**2), 1.0 / 12.0 - g / 3.0),
            (4, b @ (B @ (B @ bp)), 1.0 / 24.0 - g / 2.0 + 1.5 * g * g - g**3),
        ]

    return conditions


def _check_order(tab: RosenbrockTableau, w: np.ndarray, order: int) -> None:
    """The conditions up to ``order`` hold to rounding for the weights ``b = w Gamma``."""
    residuals = _with_rounding(tab, w, order_conditions(tab))
    for q, r, allowance in residuals:
        if q <= order:
            assert abs(r) <= allowance, (tab.name, q, r, allowance)
    if order < 4:  # and the next order fails: the declared order is the exact one
        assert max(abs(r) for q, r, _ in residuals if q == order + 1) > 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_transformed_coefficients_are_consistent(name):
    """``alpha_i`` and ``gamma_i`` recomputed from ``(A, C, gamma)`` match the tabulated ones
    (catches transcription errors in ``A``, ``C`` and ``d``), to the rounding of the row sums
    of ``A Gamma`` and of the inverted ``Gamma``."""
    tab = TABLEAUS[name]
    alpha, Gamma, _ = tab.classical()
    d_alpha, d_Gamma = _classical_bounds(tab)
    s = tab.stages
    # ROUNDING * s * eps times (the row sums' terms + their rounding bounds + the tabulated
    # value's own rounding): was atol=1e-14, which another CPU's LAPACK exceeded (1.07e-14)
    allow_alpha = ROUNDING * s * EPS * (np.abs(alpha).sum(axis=1) + d_alpha.sum(axis=1)
                                        + np.abs(tab.alpha))
    allow_gammas = ROUNDING * s * EPS * (np.abs(Gamma).sum(axis=1) + d_Gamma.sum(axis=1)
                                         + np.abs(tab.gammas))
    allow_gamma = ROUNDING * s * EPS * (np.diag(d_Gamma) + tab.gamma)  # was rtol=1e-13
    for err, allowance in ((alpha.sum(axis=1) - tab.alpha, allow_alpha),
                           (Gamma.sum(axis=1) - tab.gammas, allow_gammas),
                           (np.diag(Gamma) - tab.gamma, allow_gamma)):
        assert np.all(np.abs(err) <= allowance), (err, allowance)


@pytest.mark.parametrize("name", NAMES)
def test_order_conditions_of_the_solution(name):
    tab = TABLEAUS[name]
    _check_order(tab, tab.m, min(tab.order, 4))


@pytest.mark.parametrize("name", NAMES)
def test_order_conditions_of_the_embedded_solution(name):
    tab = TABLEAUS[name]
    _check_order(tab, tab.m - tab.m_error, min(tab.error_order, 4))


def test_rosenbrock23_is_a_w_method():
    """Order 2 for any matrix in place of ``J``: sum b_i alpha_i = 1/2 and
    sum b_i gamma_ij (j < i) = -gamma separately (HW II, IV.7, W-methods)."""
    assert ROSENBROCK23.w_method
    g = ROSENBROCK23.gamma

    def conditions(alpha, Gamma, b):
        off = Gamma - np.diag(np.diag(Gamma))
        return [(2, b @ alpha.sum(axis=1), 0.5), (2, b @ off.sum(axis=1), -g)]

    # was a fixed 1e-15 (2.5x the residual of 3.9e-16 here)
    for _, r, allowance in _with_rounding(ROSENBROCK23, ROSENBROCK23.m, conditions):
        assert abs(r) <= allowance, (r, allowance)


@pytest.mark.parametrize("name", NAMES)
def test_l_stability(name):
    tab = TABLEAUS[name]
    # A-stable: |R| <= 1 on the imaginary axis and in the left half-plane ...
    y = np.logspace(-3, 8, 300)
    assert np.max(np.abs(tab.stability_function(1j * y))) <= 1.0 + 1e-12
    x, yy = np.meshgrid(-np.logspace(-2, 6, 40), np.linspace(-1e3, 1e3, 41))
    assert np.max(np.abs(tab.stability_function((x + 1j * yy).ravel()))) <= 1.0 + 1e-12
    # ... and R(z) -> 0 as z -> -inf (L-stable)
    assert abs(tab.stability_function(-1e10)[0]) < 1e-8
    # R(z) approximates e^z to (at least) the method's order
    z = np.array([-0.1, -0.05])
    d = np.abs(tab.stability_function(z) - np.exp(z))
    assert np.log2(d[0] / d[1]) > tab.order + 1 - 0.15


@pytest.mark.parametrize("tab", [RODAS3P, RODAS4, RODAS5P], ids=lambda t: t.name)
def test_rodas_methods_are_stiffly_accurate(tab):
    """``u_new`` is the argument of the last stage plus its increment and ``alpha_s = 1``:
    the methods solve the algebraic part of index-1 DAEs exactly at each step."""
    s = tab.stages
    assert tab.alpha[-1] == 1.0 and tab.m[-1] == 1.0
    np.testing.assert_array_equal(tab.m[: s - 1], tab.A[-1, : s - 1])


@pytest.mark.parametrize("name", NAMES)
def test_dense_output_ends_at_the_step_solution(name):
    tab = TABLEAUS[name]
    k = tab.dense.shape[1]
    # k terms summed per row: ROUNDING * k * eps times their magnitudes (was atol=1e-12)
    allowance = ROUNDING * k * EPS * (np.abs(tab.dense).sum(axis=1) + np.abs(tab.m))
    assert np.all(np.abs(tab.dense.sum(axis=1) - tab.m) <= allowance)


def test_stage_reuse_and_first_same_as_last():
    assert ROSENBROCK23.fsal_stage == 2
    assert RODAS4.fsal_stage is None and RODAS5P.fsal_stage is None
    # Rodas3P: stage 3 is evaluated at (u, t) like stage 1, stage 5 at stage 4's argument
    assert RODAS3P.stage_sources() == (0, 1, 0, 3, 3)
    assert RODAS5P.stage_sources() == tuple(range(8))
