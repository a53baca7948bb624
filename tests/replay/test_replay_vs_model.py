"""The engine's replayed derivatives of a user-written network against the hand-derived
ones :class:`autodiffeq.nn.MLP` carries (two independent derivations of the same maths),
for every activation and input transform, batched and not."""

from __future__ import annotations

import autograd.numpy as anp
import numpy as np
import pytest

from autodiffeq.nn import ACTIVATIONS, INPUT_TRANSFORMS, MLP
from autodiffeq.replay import ReplayedFunction, layout_of


def user_network(mlp: MLP):
    """The same network as ``mlp`` written the way a user would, with autograd.numpy and a
    flat ``p`` unpacked inside ``f`` (only the model's own activation/transform callables
    are reused)."""

    def f(u, p, t):
        h = mlp._g(u)
        layers = mlp.unflatten(p)
        for W, b in layers[:-1]:
            h = mlp._sigma(anp.dot(h, W) + b)
        W, b = layers[-1]
        return anp.dot(h, W) + b

    return f


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("transform", sorted(INPUT_TRANSFORMS))
@pytest.mark.parametrize("batch", [None, 3])
def test_replayed_network_matches_the_models_hand_derived_products(activation, transform,
                                                                   batch):
    mlp = MLP((2, 7, 5, 2), activation=activation, input_transform=transform)
    p = mlp.init(seed=1)
    f = user_network(mlp)
    rng = np.random.default_rng(2)
    shape = (2,) if batch is None else (batch, 2)
    rf = ReplayedFunction(f, layout_of(p), shape)
    for _ in range(3):
        u = rng.uniform(0.2, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
        v = rng.standard_normal(shape)
        y, flat = rf.vjp(v, u, [p], 0.0)
        scale_y = np.abs(mlp(u, p, 0.0)).max()
        np.testing.assert_allclose(y, mlp(u, p, 0.0), rtol=0, atol=1e-12 * scale_y)
        gu, gp = mlp.vjp(v, u, p, 0.0)
        ref = np.concatenate([np.ravel(gu), np.ravel(gp)])
        assert np.abs(flat - ref).max() <= 1e-10 * np.abs(ref).max()
        du, dp = rng.standard_normal(shape), rng.standard_normal(p.shape)
        _, dy = rf.jvp(u, [p], 0.0, du, [dp])
        jv = mlp.jvp(du, dp, u, p, 0.0)
        assert np.abs(np.ravel(dy) - np.ravel(jv)).max() <= 1e-10 * np.abs(jv).max()
    assert rf.disabled is None and rf.n_traces == 1
