"""Layers and differential-equation layers: output shapes, gradients of layer outputs and
of composed networks against finite differences for several sensitivity methods, bad input."""

from __future__ import annotations

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import autodiffeq as ade

nn = ade.nn
U0 = np.array([2.0, 0.0])


def fd_gradient(fun, x, eps=1e-6):
    """Central differences of a scalar function along each coordinate."""
    g = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = eps
        g[i] = (fun(x + e) - fun(x - e)) / (2 * eps)
    return g


def assert_gradient(fun, x, rtol=1e-5) -> None:
    g = autograd.grad(fun)(x)
    fd = fd_gradient(fun, x)
    # finite differences carry ~eps^2 truncation and the solves' tolerance-level noise
    np.testing.assert_allclose(g, fd, rtol=rtol, atol=rtol * np.max(np.abs(fd)))


def test_dense_and_chain_shapes_parameters_and_gradients() -> None:
    chain = nn.Chain(nn.Dense(3, 5, "tanh"), nn.Dense(5, 2, "softplus"))
    assert chain.n_params == 3 * 5 + 5 + 5 * 2 + 2
    p = chain.init_params(0)
    np.testing.assert_array_equal(p, chain.init_params(0))
    assert not np.array_equal(p, chain.init_params(1))
    X = np.random.default_rng(0).normal(size=(7, 3))
    assert chain(X, p).shape == (7, 2) and chain(X[0], p).shape == (2,)
    # rows of a batch are the single-row outputs
    np.testing.assert_allclose(chain(X, p)[3], chain(X[3], p), rtol=1e-14)
    assert_gradient(lambda q: anp.sum(chain(X, q) ** 2), p)
    assert_gradient(lambda x: anp.sum(chain(anp.reshape(x, (7, 3)), p) ** 3), X.ravel())


@pytest.mark.parametrize("sensealg", ["ReverseMode", "ForwardMode", "DiscreteAdjoint",
                                      "ForwardSensitivity", "InterpolatingAdjoint",
                                      "BacksolveAdjoint"])
def test_neural_ode_gradient_matches_finite_differences(sensealg) -> None:
    model = nn.Chain(nn.Dense(2, 8, "tanh"), nn.Dense(8, 2))
    layer = nn.NeuralODE(model, (0.0, 1.0), "Tsit5", sensealg=sensealg,
                         saveat=np.linspace(0.0, 1.0, 4), rtol=1e-10, atol=1e-10)
    p = layer.init_params(0)
    out = layer(U0, p)
    assert out.shape == (4, 2)
    np.testing.assert_array_equal(out[0], U0)
    # the continuous adjoints solve the adjoint equation to the tolerance: 1e-10 -> ~1e-7
    rtol = 1e-4 if "Adjoint" in sensealg and sensealg != "DiscreteAdjoint" else 1e-5
    assert_gradient(lambda q: anp.sum(layer(U0, q) ** 2), p, rtol=rtol)
    assert_gradient(lambda x: anp.sum(layer(x, p)[-1]), U0, rtol=rtol)


def test_neural_ode_with_mlp_and_batched_states() -> None:
    mlp = nn.MLP([2, 16, 2], input_transform="cube")
    layer = nn.NeuralODE(mlp, (0.0, 1.5), saveat=np.linspace(0.0, 1.5, 5), rtol=1e-9,
                         atol=1e-9, sensealg="DiscreteAdjoint")
    p = layer.init_params(0)
    assert p.shape == (mlp.n_params,)
    X = np.array([[2.0, 0.0], [0.5, -1.0], [1.0, 1.0]])
    batch = layer(X, p)
    assert batch.shape == (5, 3, 2)
    np.testing.assert_allclose(batch[:, 1], layer(X[1], p), rtol=1e-6, atol=1e-8)
    assert_gradient(lambda q: anp.sum(layer(X, q)[-1] ** 2), p)


def test_classifier_dense_node_dense_gradient() -> None:
    """The paper's "neural ODE layer inside a network": Dense -> NeuralODE -> Dense."""
    clf = nn.Chain(nn.Dense(2, 3),
                   nn.NeuralODE(nn.Dense(3, 3, "tanh"), (0.0, 1.0), output="final",
                                rtol=1e-10, atol=1e-10),
                   nn.Dense(3, 1, "sigmoid"))
    X = np.random.default_rng(1).normal(size=(10, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(float)[:, None]
    q = clf.init_params(2)
    assert clf(X, q).shape == (10, 1)

    def loss(q):
        prob = clf(X, q)
        return -anp.mean(y * anp.log(prob) + (1 - y) * anp.log(1 - prob))

    assert_gradient(loss, q)


def test_neural_sde_and_neural_dde_gradients() -> None:
    sde = nn.NeuralSDE(nn.Dense(2, 2, "tanh"), nn.Dense(2, 2, "sigmoid"), (0.0, 1.0), "EM",
                       sensealg="DiscreteAdjoint", saveat=[0.5, 1.0], dt=1 / 64,
                       adaptive=False)
    ps = sde.init_params(0)
    assert sde.n_params == 2 * (2 * 2 + 2)
    out = sde(U0, ps, seed=3)
    assert out.shape == (2, 2)
    np.testing.assert_array_equal(out, sde(U0, ps, seed=3))  # same seed, same path
    assert not np.array_equal(out, sde(U0, ps, seed=4))
    assert_gradient(lambda q: anp.sum(sde(U0, q, seed=3) ** 2), ps)

    dde = nn.NeuralDDE(nn.Dense(4, 2, "tanh"), (0.0, 2.0), lags=[0.5],
                       saveat=np.linspace(0.0, 2.0, 5), rtol=1e-10, atol=1e-10)
    pd = dde.init_params(1)
    assert dde(U0, pd).shape == (5, 2)
    assert_gradient(lambda q: anp.sum(dde(U0, q)[-1] ** 2), pd, rtol=1e-4)


def test_layers_refuse_bad_input_with_the_expected_size() -> None:
    layer = nn.NeuralODE(nn.Dense(2, 2), (0.0, 1.0))
    p = layer.init_params(0)
    with pytest.raises(ade.ShapeMismatch, match=r"expected \(6,\)"):
        layer(U0, p[:-1])
    with pytest.raises(ade.ShapeMismatch, match="u0 has shape"):
        layer(np.ones(3), p)
    with pytest.raises(ade.AutodiffeqError, match="floating point"):
        layer(U0, np.arange(6))
    with pytest.raises(ade.ShapeMismatch, match="width 2 to 3"):
        nn.NeuralODE(nn.Dense(2, 3), (0.0, 1.0))
    with pytest.raises(ade.ShapeMismatch, match=r"width 4"):
        nn.NeuralDDE(nn.Dense(2, 2), (0.0, 1.0), lags=[0.5])
    with pytest.raises(ade.AutodiffeqError, match="n_params"):
        nn.NeuralODE(lambda u, p, t: u, (0.0, 1.0))
    with pytest.raises(ade.AutodiffeqError, match="activation"):
        nn.Dense(2, 2, "swish")
    with pytest.raises(ade.AutodiffeqError, match="output"):
        nn.NeuralODE(nn.Dense(2, 2), (0.0, 1.0), output="last")


def test_nn_is_an_attribute_of_the_package() -> None:
    import autodiffeq

    assert autodiffeq.nn.NeuralODE is nn.NeuralODE


def test_mlp_has_init_params_like_the_layers() -> None:
    mlp = nn.MLP([2, 4, 2])
    np.testing.assert_array_equal(mlp.init_params(0), mlp.init(0))
    assert mlp.init_params(0).shape == (mlp.n_params,)
