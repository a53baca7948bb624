"""Replays stack their saved states in chunks (autograd's forward rule for one big stack is
quadratic): the same values, gradients and tangents as one stack."""

import autograd
import autograd.numpy as anp
import numpy as np
from autograd import make_jvp

from autodiffeq_plugins.discrete_sensitivity.stacking import stack_rows


def test_chunked_stack_equals_one_stack_with_derivatives() -> None:
    x0 = np.linspace(0.1, 1.0, 3)
    for k in (1, 64, 65, 200):
        def rows(x, k=k):
            return [x * (i + 1.0) + anp.sin(x) * i for i in range(k)]

        np.testing.assert_array_equal(stack_rows(rows(x0)), np.stack(rows(x0)))
        weights = np.arange(3.0 * k).reshape(k, 3)
        g_chunked = autograd.grad(
            lambda x, w=weights, rows=rows: anp.sum(w * stack_rows(rows(x))))(x0)
        g_plain = autograd.grad(
            lambda x, w=weights, rows=rows: anp.sum(w * anp.stack(rows(x))))(x0)
        np.testing.assert_allclose(g_chunked, g_plain, rtol=1e-14)
        v = np.array([1.0, -2.0, 0.5])
        _, t_chunked = make_jvp(lambda x, rows=rows: stack_rows(rows(x)))(x0)(v)
        _, t_plain = make_jvp(lambda x, rows=rows: anp.stack(rows(x)))(x0)(v)
        np.testing.assert_allclose(t_chunked, t_plain, rtol=1e-14)
