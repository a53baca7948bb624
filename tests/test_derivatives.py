"""Jacobians by finite differences (dense and coloured sparse) and autograd, against exact
derivatives."""

from __future__ import annotations

import autograd.numpy as anp
import numpy as np
import scipy.sparse as sp

from autodiffeq.derivatives import (
    color_columns,
    jacobian_autograd,
    jacobian_fd_dense,
    jacobian_fd_sparse,
    time_derivative_fd,
)


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


def test_time_derivative():
    def f(u, t):
        return u * np.cos(t)

    u = np.array([2.0])
    ft, nf = time_derivative_fd(f, u, 0.7, f(u, 0.7), 1e-3)
    np.testing.assert_allclose(ft, -2.0 * np.sin(0.7), rtol=1e-6)


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
    assert np.abs(J2.toarray() - exact).max() < 1e-9
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
