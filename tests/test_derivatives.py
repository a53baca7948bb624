"""Jacobians by finite differences (dense and coloured sparse) and autograd, and the time
derivative by differences, against exact derivatives."""

from __future__ import annotations

import math

import autograd.numpy as anp
import numpy as np
import scipy.sparse as sp

from autodiffeq.derivatives import (
    color_columns,
    derivative_weights,
    jacobian_autograd,
    jacobian_fd_dense,
    jacobian_fd_sparse,
    time_derivative_fd,
)

EPS = float(np.finfo(np.float64).eps)


def _stencil(N: int) -> sp.csr_matrix:
    n = N * N
    e = np.ones(n)
    return (sp.diags([e[:-N], e[:-1], -4 * e, e[:-1], e[:-N]], [-N, -1, 0, 1, N])).tocsr()


def test_colouring_is_valid_and_small():
    A = _stencil(30)
    colors = color_columns(A != 0)
    # valid: no two columns of one colour share a row
    S = sp.csc_matrix(A != 0)
    for c in range(colors.max() + 1):
        counts = np.asarray(S[:, colors == c].sum(axis=1)).ravel()
        assert counts.max() <= 1
    assert colors.max() + 1 <= 7  # a 5-point stencil needs 5; greedy stays close


def test_sparse_fd_jacobian_of_a_stencil_problem():
    A = _stencil(40)

    def f(u, t):
        return A @ u + np.sin(u) * t

    u = np.random.default_rng(0).random(A.shape[0])
    colors = color_columns(A != 0)
    J, nf = jacobian_fd_sparse(f, u, 2.0, f(u, 2.0), A != 0, colors)
    exact = A + sp.diags(2.0 * np.cos(u))
    assert nf == colors.max() + 1 <= 7
    assert abs(J - exact).max() < 1e-6


def test_dense_fd_and_autograd_agree_with_exact():
    def f_user(u, p, t):
        return anp.array([p * u[0] * u[1], anp.sin(u[1]) + t * u[0]])

    u = np.array([1.0, 2.0])
    exact = np.array([[3.0 * 2.0, 3.0 * 1.0], [0.5, np.cos(2.0)]])
    J_ad = jacobian_autograd(f_user, u, 3.0, 0.5, (2,))
    np.testing.assert_allclose(J_ad, exact, rtol=1e-14)
    J_fd, nf = jacobian_fd_dense(lambda v, t: f_user(v, 3.0, t), u, 0.5, f_user(u, 3.0, 0.5), np)
    assert nf == 2
    np.testing.assert_allclose(J_fd, exact, rtol=1e-6)


def _fd_allowance(order, u, typical, f_size, d_next):
    """A bound on a one-sided difference's error per column: the weights (summing to 2/h for
    first order, ~4/a for the second-order nodes) times a few roundings of f (4 eps |f|),
    plus the truncation (h/2 |f''|, or a b/6 |f'''| ~ a^2/3 |f'''|; ``d_next`` bounds that
    derivative), with the increments h = eps**(1/2), a = eps**(1/3) times max(|u|, typical)."""
    h = EPS ** (1.0 / (order + 1)) * np.maximum(np.abs(u), typical)
    weights, truncation = (2.0 / h, h / 2.0) if order == 1 else (4.0 / h, h * h / 3.0)
    return weights * 4 * EPS * f_size + truncation * d_next


def test_dense_fd_orders_with_a_per_component_increment_floor():
    def f(u, t):
        return np.array([u[0] * u[1], np.sin(u[1]) + t * u[0]])

    u = np.array([1.0, 2.0])
    typical = np.array([1.0, 10.0])
    exact = np.array([[2.0, 1.0], [0.5, math.cos(2.0)]])
    for order in (1, 2):
        J, nf = jacobian_fd_dense(f, u, 0.5, f(u, 0.5), np, typical=typical, order=order)
        assert nf == 2 * order
        # |f| <= 2.5; |sin'''|, |sin''| <= 1
        allowance = _fd_allowance(order, u, typical, 2.5, 1.0)
        assert np.all(np.abs(J - exact) <= allowance[None, :]), (order, J - exact, allowance)


def test_dense_fd_on_the_strict_backend():
    import autodiffeq as ade

    be = ade.registry().get_backend("array_api_strict")
    xp = be.xp

    def f(u, t):
        return xp.stack([u[0] * u[1], xp.sin(u[1]) + t * u[0]])

    u = xp.asarray([1.0, 2.0])
    J, nf = jacobian_fd_dense(f, u, 0.5, f(u, 0.5), xp, order=2)
    assert be.is_native(J) and nf == 4
    np.testing.assert_allclose(be.to_host(J), [[2.0, 1.0], [0.5, math.cos(2.0)]], rtol=1e-9)


def test_dense_fd_with_f_returning_one_buffer():
    out = np.empty(2)

    def f(u, t):
        out[:] = [u[0] * u[1], u[1] ** 2]
        return out

    u = np.array([1.5, -2.0])
    f0 = f(u, 0.0).copy()
    for order in (1, 2):
        J, _ = jacobian_fd_dense(f, u, 0.0, f0, np, order=order)
        np.testing.assert_allclose(J, [[-2.0, 1.5], [0.0, -4.0]], rtol=1e-6, atol=1e-9)


def test_time_derivative_is_third_order_accurate_and_detects_autonomous_f():
    def f(u, t):
        return u * math.sin(3.0 * t)

    u = np.array([1.0, -2.0])
    for t, dt in ((0.0, 0.1), (1.3, 1e-3), (50.0, -0.05), (1e3, 1e-2)):
        ft, nf = time_derivative_fd(f, u, t, f(u, t), dt)
        assert nf == 3
        np.testing.assert_allclose(ft, 3.0 * u * math.cos(3.0 * t), rtol=1e-7)
    # truncation falls like the cube of the spacing (a hundredth of the step)
    errs = [abs(time_derivative_fd(f, u, 0.4, f(u, 0.4), dt)[0][0] - 3.0 * math.cos(1.2))
            for dt in (0.8, 0.4)]
    assert 2.7 < math.log2(errs[0] / errs[1]) < 3.3

    def still(u, t):
        return -u

    assert time_derivative_fd(still, u, 1.0, still(u, 1.0), 0.1) == (None, 1)
    np.testing.assert_allclose(derivative_weights([1.0, 2.0, 3.0]), [3.0, -1.5, 1.0 / 3.0])


def test_time_derivative_nodes_stay_inside_the_step():
    seen = []

    def f(u, t):
        seen.append(t)
        return u * t

    u = np.array([1.0])
    time_derivative_fd(f, u, 2.0, f(u, 2.0), -1e-6)
    assert all(2.0 - 1e-6 <= t <= 2.0 for t in seen)


def test_time_derivative_on_the_strict_backend():
    import autodiffeq as ade

    be = ade.registry().get_backend("array_api_strict")
    xp = be.xp

    def f(u, t):
        return u * math.cos(t)

    u = xp.asarray([2.0])
    ft, nf = time_derivative_fd(f, u, 0.7, f(u, 0.7), 1e-3, xp)
    assert be.is_native(ft) and nf == 3
    np.testing.assert_allclose(be.to_host(ft), [-2.0 * math.sin(0.7)], rtol=1e-9)


def _valid(pattern, colors) -> bool:
    S = sp.csc_matrix(pattern != 0).astype(int)
    for c in range(colors.max() + 1):
        if np.asarray(S[:, colors == c].sum(axis=1)).max() > 1:
            return False
    return True


def test_colouring_of_random_and_unsymmetric_patterns_is_valid():
    rng = np.random.default_rng(1)
    for density in (0.01, 0.05, 0.2):
        P = sp.random(120, 120, density=density, random_state=rng, format="csr") != 0
        colors = color_columns(P)
        assert _valid(P, colors)
        # never more colours than the densest row has entries plus the greedy bound
        assert colors.max() + 1 <= P.shape[0]
    dense = np.tril(np.ones((6, 6)))  # a dense 0/1 array: a full lower triangle
    colors = color_columns(dense)
    assert _valid(dense, colors) and colors.max() + 1 == 6


def test_second_order_compressed_differences_and_the_strict_backend():
    """Second-order compressed differences agree with the exact Jacobian to ~1e-9 (first
    order: ~1e-6); on array_api_strict the same plan returns a dense native array."""
    import array_api_strict as xps

    import autodiffeq as ade
    from autodiffeq.derivatives import SparsityPlan

    A = _stencil(12)

    def f(u, t):
        return A @ u + np.sin(u) * t

    u = np.random.default_rng(2).random(A.shape[0])
    exact = (A + sp.diags(2.0 * np.cos(u))).toarray()
    plan = SparsityPlan(A != 0, np, sparse=sp)
    J1, nf1 = plan.jacobian(f, u, 2.0, f(u, 2.0), order=1)
    J2, nf2 = plan.jacobian(f, u, 2.0, f(u, 2.0), order=2)
    assert nf2 == 2 * nf1 == 2 * plan.ncolors
    assert np.abs(J1.toarray() - exact).max() < 1e-6
    # second order: _fd_allowance with |u| <= 1, f's terms |A||u| + t |sin u| <= 10 and
    # third derivatives <= t = 2 (5.9e-9; was 1e-9, 4.5x the error measured here)
    assert np.abs(J2.toarray() - exact).max() < _fd_allowance(2, 1.0, 1.0, 10.0, 2.0)
    be = ade.registry().get_backend("array_api_strict")
    A_s = xps.asarray(A.toarray())

    def f_s(v, t):
        return A_s @ v + xps.sin(v) * t

    plan_s = SparsityPlan(A != 0, xps, be.asarray, sparse=None)
    v = xps.asarray(u)
    J, nf = plan_s.jacobian(f_s, v, 2.0, f_s(v, 2.0), order=2)
    assert be.is_native(J) and nf == 2 * plan_s.ncolors
    np.testing.assert_allclose(be.to_host(J), exact, atol=1e-9)


def test_autograd_jacobian_refuses_an_untraceable_f():
    """A plain ``numpy.array`` of traced scalars detaches the output: autograd would return
    zeros with a warning; jacobian_autograd raises instead."""
    import pytest

    from autodiffeq.derivatives import AutogradUntraceable

    def f_plain(u, p, t):
        return np.array([u[0] * u[1], -u[1]])

    with pytest.raises(AutogradUntraceable, match="independent|does not depend"):
        jacobian_autograd(f_plain, np.array([1.0, 2.0]), None, 0.0, (2,))

    def f_inplace(u, p, t):
        out = np.empty(2)
        out[:] = anp.array([u[0], u[1]])
        return out

    with pytest.raises(AutogradUntraceable):
        jacobian_autograd(f_inplace, np.array([1.0, 2.0]), None, 0.0, (2,))
