"""Unit tests of the Jacobian machinery the Rosenbrock plugin uses: the core's
``autodiffeq.jacobians`` (the Jacobian source classes, the increment scale, the autonomy
probes), and, on purpose, two internal names: the stepper's stored Jacobian and the NumPy
backend's LAPACK wrapper that the stepper's fast path calls. The public behaviour of
the same machinery is tested through ``ade.solve`` in ``test_jacobian.py``,
``test_sparse.py`` and ``test_stage_paths.py``."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.linalg import get_lapack_funcs

import autodiffeq as ade
from autodiffeq.jacobians import (
    AUTONOMY_PROBES,
    AutogradJacobian,
    FiniteDifferenceJacobian,
    SparseFiniteDifferenceJacobian,
    UserJacobian,
    looks_autonomous,
)
from autodiffeq.stepper import RHS
from autodiffeq_plugins.numpy_backend.backend import _positional_getrs

from .conftest import K1, K2, K3, rober, rober_jac
from .test_sparse import NN, PATTERN, T1, U0, _stepper, rd, rd_autograd, rd_jac_dense, rd_jac_sparse

EPS = float(np.finfo(np.float64).eps)


def _numpy_rhs(f, n, prob=None):
    be = ade.registry().get_backend("numpy")
    return RHS(f, None, (n,), np.float64, be, prob)


def test_finite_difference_jacobian_accuracy_on_rober():
    """At a late ROBER state (y2 ~ 1e-13, y3 ~ 1): second-order differences agree with the
    exact Jacobian to ~1e-9, first-order ones to ~1e-5 (entries relative to their column)."""
    u = np.array([2.08e-8, 8.33e-14, 0.99999998])
    f0 = rober(u, None, 0.0)
    exact = rober_jac(u, None, 0.0)
    scale = np.max(np.abs(exact), axis=0)  # per column
    for order, tol in ((2, 1e-9), (1, 1e-5)):
        source = FiniteDifferenceJacobian(_numpy_rhs(rober, 3), order=order)
        source.typical(np.array([1.0, 0.0, 0.0]))  # the scale seen from u0 = (1, 0, 0)
        J, nf = source(u, 0.0, f0)
        assert nf == order * 3
        assert np.max(np.abs(J - exact) / scale) < tol


def test_components_starting_at_zero_keep_a_usable_increment():
    """ROBER's DAE form made y3 (0 at t0, 1e-12 one step later) get an increment of 1e-17
    with purely relative increments: its column was rounding noise and the solve blew up."""
    source = FiniteDifferenceJacobian(_numpy_rhs(rober, 3))
    typical = source.typical(np.array([1.0, 0.0, 0.0]))
    np.testing.assert_allclose(typical, FiniteDifferenceJacobian.SCALE_FRACTION)
    u = np.array([0.9999998, 2.3e-7, 2.2e-12])
    J, _ = source(u, 0.0, rober(u, None, 0.0))
    # f is quadratic, so the second-order differences are exact up to rounding: the weights
    # (sum ~4 / a_j over the nodes) times the rounding of f's terms (a few eps times their
    # size), with a_j = eps**(1/3) max(|u_j|, typical_j); 64 eps for the margin. Was
    # rtol=1e-7, atol=1e-8: 6x the error measured for the y2, y3 columns (a_j ~ 6e-9)
    a = EPS ** (1.0 / 3.0) * np.maximum(np.abs(u), typical)
    terms = K1 * abs(u[0]) + K2 * u[1] ** 2 + K3 * abs(u[1] * u[2])
    allowance = 64 * EPS * terms / a
    err = np.abs(J - rober_jac(u, None, 0.0))
    assert np.all(err <= allowance[None, :]), (err, allowance)


def test_jacobian_sources_agree_with_the_analytic_jacobian():
    """user (exact) = autograd (exact, to rounding); dense and colour-compressed second-order
    differences to ~1e-8 relative to each column's scale; first order to ~1e-5."""
    w = U0 + 0.3 * np.cos(np.arange(2 * NN))
    exact = rd_jac_dense(w, None, 0.0)
    f0 = rd(w, None, 0.0)
    scale = np.max(np.abs(exact), axis=0)
    prob = ade.ODEProblem(rd_autograd, U0, (0.0, T1), jac=rd_jac_sparse, jac_prototype=PATTERN)
    be = ade.registry().get_backend("numpy")
    rhs = RHS(rd_autograd, None, (2 * NN,), np.float64, be, prob)
    J_user, nf = UserJacobian(rd_jac_sparse, rhs)(w, 0.0, f0)
    assert nf == 0 and sp.issparse(J_user)
    np.testing.assert_allclose(J_user.toarray(), exact, rtol=1e-15)
    J_ad, nf = AutogradJacobian(rhs)(w, 0.0, f0)
    assert nf == 0
    np.testing.assert_allclose(J_ad, exact, rtol=1e-13, atol=1e-12)
    for order, tol in ((2, 1e-8), (1, 1e-5)):
        J_fd, nf = FiniteDifferenceJacobian(rhs, order=order)(w, 0.0, f0)
        assert nf == order * 2 * NN
        assert np.max(np.abs(J_fd - exact) / scale) < tol
        source = SparseFiniteDifferenceJacobian(rhs, PATTERN, order=order)
        J_sp, nf = source(w, 0.0, f0)
        assert nf == order * source.ncolors < order * 2 * NN
        assert np.max(np.abs(J_sp.toarray() - exact) / scale) < tol


def test_the_sparse_path_stores_j_sparse():
    prob = ade.ODEProblem(rd, U0, (0.0, T1), jac_prototype=PATTERN)
    stepper, _, _ = _stepper(prob)
    u0 = np.asarray(U0)
    stepper.init(0.0, u0, rd(u0, None, 0.0))
    stepper.step(0.0, u0, 1e-3)
    assert stepper.sparse_jacobian and sp.issparse(stepper._J)
    assert stepper._J.format == "csc"
    assert stepper._jac.ncolors <= 12
    np.testing.assert_allclose(stepper._J.toarray(), rd_jac_dense(u0, None, 0.0), rtol=1e-8,
                               atol=1e-8)


def test_autonomy_detection_costs_the_probes_and_one_perturbed_pair():
    rhs = _numpy_rhs(rober, 3)
    u0 = np.array([1.0, 0.0, 0.0])
    verdict, nf = looks_autonomous(rhs, 0.0, u0, rhs.f(u0, 0.0), 1e3)
    assert verdict and nf == len(AUTONOMY_PROBES) + 2


def test_getrs_is_called_positionally_or_through_a_keyword_wrapper():
    getrf, getrs = get_lapack_funcs(("getrf", "getrs"), (np.zeros((2, 2)),))
    assert _positional_getrs(getrs) is getrs  # SciPy's signature (lu, piv, b, [trans, ...])
    W = np.array([[4.0, 1.0], [2.0, 3.0]])
    rhs = np.array([1.0, 2.0])
    lu, piv, _ = getrf(W)

    def residual_allowance(x):
        # LU's backward error: |W x - b| <= ~2 n eps |L||U||x| (Higham, Thm 9.4; here
        # |L||U| ~ |W|), 8x for the residual's own rounding (was rtol=1e-14 on W x)
        return 8 * 2 * 2 * EPS * np.abs(W) @ np.abs(x)

    b = rhs.copy()
    x, info = getrs(lu, piv, b, 0, 1)
    assert info == 0 and x is b  # solved in place
    assert np.all(np.abs(W @ b - rhs) <= residual_allowance(b))

    calls = []

    def keyword_only(lu, piv, b, *, trans=0, overwrite_b=0):
        calls.append((trans, overwrite_b))
        return getrs(lu, piv, b, trans=trans, overwrite_b=overwrite_b)

    wrapped = _positional_getrs(keyword_only)  # no f2py docstring: wrapped
    assert wrapped is not keyword_only
    x, _ = wrapped(lu, piv, rhs.copy(), 0, 1)
    assert calls == [(0, 1)]
    assert np.all(np.abs(W @ x - rhs) <= residual_allowance(x))
