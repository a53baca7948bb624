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
