"""``nn.MLP`` on another array-API library (``array_api_strict`` here, CuPy on a GPU): the
forward pass and every hand-derived product in that library's operations agree with the
NumPy paths, and a neural ODE's gradient through each sensitivity method that runs there
is the NumPy run's."""

from __future__ import annotations

import itertools

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import autodiffeq as ade
from autodiffeq.nn import MLP

xps = pytest.importorskip("array_api_strict")


def S(a):  # noqa: N802 (a host array on the strict backend)
    return xps.asarray(a)


def H(a):  # noqa: N802 (back to NumPy)
    return np.from_dlpack(a)


def _scale(*arrays) -> float:
    return max(float(np.max(np.abs(a))) for a in arrays) + 1.0


# the paths differ in the order of floating-point operations only: agreement to a few
# hundred ulps of the values' size
TOL = 512 * np.finfo(np.float64).eps


@pytest.mark.parametrize("activation, transform", list(itertools.product(
    ["tanh", "sigmoid", "softplus", "relu", "identity"], ["identity", "cube"])))
@pytest.mark.parametrize("shape", [(3,), (4, 3), (2, 4, 3)], ids=["one", "batch", "2-d batch"])
def test_products_match_the_numpy_paths(activation, transform, shape) -> None:
    rng = np.random.default_rng(0)
    m = MLP([3, 7, 5, 2], activation=activation, input_transform=transform)
    p = m.init(1) + 0.1 * rng.standard_normal(m.n_params)
    u, du = rng.standard_normal(shape), rng.standard_normal(shape)
    v = rng.standard_normal(shape[:-1] + (2,))
    dp = rng.standard_normal(m.n_params)
    dU, dP = rng.standard_normal((3, *shape)), rng.standard_normal((3, m.n_params))

    def close(got, want):
        assert np.max(np.abs(H(got) - want)) <= TOL * _scale(want), (got, want)

    close(m(S(u), S(p)), m(u, p))
    if len(shape) <= 2:  # the NumPy vjp takes one state or one batch axis
        gu, gp = m.vjp(S(v), S(u), S(p))
        gu0, gp0 = m.vjp(v, u, p)
        close(gu, gu0)
        close(gp, gp0)
    close(m.jvp(S(du), S(dp), S(u), S(p)), m.jvp(du, dp, u, p))
    close(m.jvp(None, S(dp), S(u), S(p)), m.jvp(None, dp, u, p))
    close(m.jvp(S(du), None, S(u), S(p)), m.jvp(du, None, u, p))
    for a, b in ((dU, dP), (None, dP), (dU, None)):
        f1, j1 = m.value_and_jvps(None if a is None else S(a), None if b is None else S(b),
                                  S(u), S(p))
        f0, j0 = m.value_and_jvps(a, b, u, p)
        close(f1, f0)
        close(j1, j0)


@pytest.mark.parametrize("method", ["DiscreteAdjoint", "InterpolatingAdjoint",
                                    "ForwardSensitivity"])
def test_neural_ode_gradient_off_numpy(method) -> None:
    """The model's own derivatives serve every method that computes through the backend:
    the gradient on array_api_strict is the NumPy run's (the same steps; sums in another
    order), and that one matches finite differences."""
    mlp = MLP([2, 16, 2], input_transform="cube")
    theta = mlp.init(0)
    ts = np.linspace(0.0, 1.0, 5)

    def loss(theta, backend):
        prob = ade.ODEProblem(mlp, np.array([2.0, 0.0]), (0.0, 1.0), theta)
        sol = ade.solve(prob, "Tsit5", saveat=ts, rtol=1e-8, atol=1e-10, sensealg=method,
                        backend=backend)
        return anp.sum(sol.u ** 2)

    g_strict = np.asarray(autograd.grad(loss)(theta, "array_api_strict"))
    g_numpy = autograd.grad(loss)(theta, "numpy")
    assert np.max(np.abs(g_strict - g_numpy)) <= 1e-8 * np.max(np.abs(g_numpy))
    e = np.zeros_like(theta)
    for j in (0, 17, mlp.n_params - 1):
        e[:] = 0.0
        e[j] = 1e-6
        fd = (loss(theta + e, "numpy") - loss(theta - e, "numpy")) / 2e-6
        assert abs(g_numpy[j] - fd) <= 1e-5 * (abs(fd) + np.max(np.abs(g_numpy)) * 1e-2)
