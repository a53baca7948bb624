"""autodiffeq.nn.MLP: hand-derived VJP/JVP against autograd and finite differences, batched
and unbatched, input transforms, and its use as a neural-ODE right-hand side."""

from __future__ import annotations

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad, make_jvp, make_vjp

import autodiffeq as ade
from autodiffeq.nn import ACTIVATIONS, INPUT_TRANSFORMS, MLP

SMOOTH = ["tanh", "sigmoid", "softplus", "identity"]
SHAPES = [(3,), (5, 3)]  # unbatched and a batch of 5


def _point(mlp: MLP, shape: tuple[int, ...], seed: int = 0):
    rng = np.random.default_rng(seed)
    p = mlp.init(rng) + 0.1 * rng.standard_normal(mlp.n_params)  # non-zero biases
    u = rng.uniform(-1.2, 1.2, size=shape)
    v = rng.standard_normal(shape[:-1] + (mlp.sizes[-1],))
    du = rng.standard_normal(shape)
    dp = rng.standard_normal(mlp.n_params)
    return p, u, v, du, dp


def _forward_rounding(mlp: MLP, u, p, activation="tanh", transform=None):
    """A first-order bound on the rounding error of the network's value at ``u``: each layer's
    sums of n terms are off by at most n eps times the sum of the terms' magnitudes (Higham,
    *Accuracy and Stability*, 3.1), the error of a layer's input goes through |W| (every
    activation is 1-Lipschitz), and the transform and activations add a few eps of their
    values. Two computations of the value in different orders (batched or single products,
    ``np.dot`` or ``@``) differ by at most twice this (its largest entry: the atol)."""
    eps = np.finfo(np.float64).eps
    h = np.asarray(u if transform is None else INPUT_TRANSFORMS[transform][0](u))
    err = 4 * eps * np.abs(h)
    layers = mlp.unflatten(p)
    for i, (W, b) in enumerate(layers):
        W, b = np.asarray(W), np.asarray(b)
        z = h @ W + b
        err = err @ np.abs(W) + (W.shape[0] + 1) * eps * (np.abs(h) @ np.abs(W) + np.abs(b))
        if i < len(layers) - 1:
            h = ACTIVATIONS[activation][0](z)
            err = err + 4 * eps * np.abs(h)
    return err


def _autograd_vjp(mlp: MLP, v, u, p):
    vjp, _ = make_vjp(lambda args: mlp(args[0], args[1], 0.0))((u, p))
    return vjp(v)


def _autograd_jvp(mlp: MLP, du, dp, u, p):
    return make_jvp(lambda args: mlp(args[0], args[1], 0.0))((u, p))((du, dp))[1]


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("transform", [None, "cube", "square"])
@pytest.mark.parametrize("shape", SHAPES)
def test_vjp_and_jvp_match_autograd(activation, transform, shape):
    mlp = MLP((3, 6, 4, 2), activation=activation, input_transform=transform)
    p, u, v, du, dp = _point(mlp, shape)
    gu, gp = mlp.vjp(v, u, p, 0.0)
    ref_u, ref_p = _autograd_vjp(mlp, v, u, p)
    assert gu.shape == u.shape and gp.shape == (mlp.n_params,)
    np.testing.assert_allclose(gu, ref_u, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(gp, ref_p, rtol=1e-12, atol=1e-13)
    jv = mlp.jvp(du, dp, u, p, 0.0)
    assert jv.shape == v.shape
    np.testing.assert_allclose(jv, _autograd_jvp(mlp, du, dp, u, p), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("activation", SMOOTH)
@pytest.mark.parametrize("shape", SHAPES)
def test_vjp_and_jvp_match_finite_differences(activation, shape):
    mlp = MLP((3, 5, 2), activation=activation, input_transform="cube")
    p, u, v, du, dp = _point(mlp, shape, seed=1)
    h = 1e-6

    def f(uu, pp):
        return mlp(uu, pp, 0.0)

    # directional derivative of f along (du, dp), by central differences
    fd_dir = (f(u + h * du, p + h * dp) - f(u - h * du, p - h * dp)) / (2 * h)
    np.testing.assert_allclose(mlp.jvp(du, dp, u, p, 0.0), fd_dir, rtol=1e-7, atol=1e-8)
    # transposition: <v, J (du, dp)> = <J^T v, (du, dp)>
    gu, gp = mlp.vjp(v, u, p, 0.0)
    np.testing.assert_allclose(np.sum(gu * du) + gp @ dp, np.sum(v * fd_dir), rtol=1e-7)
    # v^T J column by column against differences of u
    fd_u = np.zeros(u.size)
    for j in range(u.size):
        e = np.zeros(u.size)
        e[j] = h
        e = e.reshape(u.shape)
        fd_u[j] = np.sum(v * (f(u + e, p) - f(u - e, p))) / (2 * h)
    np.testing.assert_allclose(gu.reshape(-1), fd_u, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("shape", SHAPES)
def test_jvp_with_one_tangent_missing(shape):
    mlp = MLP((3, 7, 2), input_transform="cube")
    p, u, _, du, dp = _point(mlp, shape, seed=2)
    zeros_u, zeros_p = np.zeros_like(u), np.zeros_like(p)
    np.testing.assert_allclose(
        mlp.jvp(du, None, u, p), _autograd_jvp(mlp, du, zeros_p, u, p), rtol=1e-12, atol=1e-14
    )
    np.testing.assert_allclose(
        mlp.jvp(None, dp, u, p), _autograd_jvp(mlp, zeros_u, dp, u, p), rtol=1e-12, atol=1e-14
    )
    assert np.all(mlp.jvp(None, None, u, p) == 0.0)
    assert mlp.jvp(None, None, u, p).shape == shape[:-1] + (2,)


def test_batched_rows_equal_unbatched_calls():
    mlp = MLP((3, 8, 2), activation="tanh", input_transform="cube")
    p, u, v, du, dp = _point(mlp, (4, 3), seed=3)
    out = mlp(u, p, 0.0)
    gu, gp = mlp.vjp(v, u, p, 0.0)
    jv = mlp.jvp(du, dp, u, p, 0.0)
    gp_sum = np.zeros(mlp.n_params)
    for i in range(4):
        # batched (matrix) and single (vector) products round differently: twice the
        # forward pass's rounding bound (was rtol=1e-14, 10x the 1-ulp difference here)
        np.testing.assert_allclose(out[i], mlp(u[i], p, 0.0), rtol=0,
                                   atol=2 * np.max(_forward_rounding(mlp, u[i], p, "tanh", "cube")))
        gu_i, gp_i = mlp.vjp(v[i], u[i], p, 0.0)
        np.testing.assert_allclose(gu[i], gu_i, rtol=1e-13)
        gp_sum += gp_i
        np.testing.assert_allclose(jv[i], mlp.jvp(du[i], dp, u[i], p, 0.0), rtol=1e-13)
    np.testing.assert_allclose(gp, gp_sum, rtol=1e-12, atol=1e-14)


def test_input_transform_cube_is_u_cubed():
    mlp_cube = MLP((2, 5, 2), input_transform="cube")
    mlp_plain = MLP((2, 5, 2))
    p, u, v, _, _ = _point(mlp_cube, (2,), seed=4)
    np.testing.assert_allclose(mlp_cube(u, p, 0.0), mlp_plain(u**3, p, 0.0), rtol=1e-14)
    gu_plain, gp_plain = mlp_plain.vjp(v, u**3, p, 0.0)
    gu, gp = mlp_cube.vjp(v, u, p, 0.0)
    np.testing.assert_allclose(gu, gu_plain * 3 * u**2, rtol=1e-13)
    np.testing.assert_allclose(gp, gp_plain, rtol=1e-13)


def test_custom_input_transform_pair():
    mlp = MLP((2, 4, 2), input_transform=(anp.sin, np.cos))
    p, u, v, du, dp = _point(mlp, (3, 2), seed=5)
    ref_u, ref_p = _autograd_vjp(mlp, v, u, p)
    gu, gp = mlp.vjp(v, u, p)
    np.testing.assert_allclose(gu, ref_u, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(gp, ref_p, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(
        mlp.jvp(du, dp, u, p), _autograd_jvp(mlp, du, dp, u, p), rtol=1e-12, atol=1e-14
    )


def test_parameters_layout_init_and_round_trip():
    mlp = MLP((2, 50, 2))
    assert mlp.n_params == 2 * 50 + 50 + 50 * 2 + 2
    p = mlp.init(seed=0)
    assert p.shape == (mlp.n_params,) and p.dtype == np.float64
    np.testing.assert_array_equal(p, mlp.init(seed=0))
    np.testing.assert_array_equal(p, mlp.init(np.random.default_rng(0)))
    layers = mlp.unflatten(p)
    assert [(W.shape, b.shape) for W, b in layers] == [((2, 50), (50,)), ((50, 2), (2,))]
    assert np.all(layers[0][1] == 0.0) and np.all(layers[1][1] == 0.0)  # zero biases
    limit = np.sqrt(6.0 / 52)
    assert np.all(np.abs(layers[0][0]) <= limit) and np.std(layers[0][0]) > 0.3 * limit
    np.testing.assert_array_equal(mlp.flatten(layers), p)
    # the layout is W_1 row-major, b_1, W_2, b_2
    W1, b1 = layers[0]
    u = np.array([0.3, -0.7])
    # np.dot inside the model, @ here: twice the forward rounding bound (was rtol=1e-14)
    np.testing.assert_allclose(
        mlp(u, p, 0.0), np.tanh(u @ W1 + b1) @ layers[1][0] + layers[1][1], rtol=0,
        atol=2 * np.max(_forward_rounding(mlp, u, p)),
    )


def test_in_place_parameter_updates_are_seen():
    mlp = MLP((2, 4, 2))
    p = mlp.init(seed=1)
    u = np.array([0.5, 0.25])
    before = mlp(u, p, 0.0)
    p *= 2.0
    assert not np.allclose(mlp(u, p, 0.0), before)
    np.testing.assert_allclose(mlp(u, p, 0.0), mlp(u, p.copy(), 0.0), rtol=1e-15)
    np.testing.assert_allclose(mlp.vjp(u, u, p)[1], mlp.vjp(u, u, p.copy())[1], rtol=1e-15)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sizes": (2,)},
        {"sizes": (2, 0, 2)},
        {"sizes": (2, 3, 2), "activation": "swish"},
        {"sizes": (2, 3, 2), "input_transform": "cubic"},
        {"sizes": (2, 3, 2), "input_transform": (np.sin, None)},
    ],
)
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        MLP(**kwargs)


def test_wrong_parameter_count():
    mlp = MLP((2, 3, 2))
    with pytest.raises(ValueError, match="parameters"):
        mlp(np.zeros(2), np.zeros(mlp.n_params + 1), 0.0)
    with pytest.raises(ValueError, match="layers"):
        mlp.flatten(mlp.unflatten(mlp.init(0))[:1])


# --------------------------------------------------------------------------- as an ODE layer
SPIRAL_A = np.array([[-0.1, 2.0], [-2.0, -0.1]])
TS = np.linspace(0.0, 1.5, 6)


def _spiral_loss(mlp: MLP, u0, sensealg: str, rtol: float = 1e-7):
    def loss(p):
        prob = ade.ODEProblem(mlp, u0, (0.0, 1.5), p)
        sol = ade.solve(prob, "Tsit5", saveat=TS, rtol=rtol, atol=rtol * 1e-2, sensealg=sensealg)
        return anp.sum((sol.u - 0.5) ** 2)

    return loss


class _CountingMLP(MLP):
    """An MLP that counts calls of its hand-written VJP."""

    calls = 0

    def vjp(self, v, u, p, t=None):
        type(self).calls += 1
        return super().vjp(v, u, p, t)


@pytest.mark.parametrize("u0", [np.array([2.0, 0.0]), np.array([[2.0, 0.0], [1.0, 0.5]])])
def test_discrete_adjoint_uses_the_model_vjp_and_matches_reverse_mode(u0):
    mlp = _CountingMLP((2, 8, 2), input_transform="cube")
    p0 = mlp.init(seed=2)
    _CountingMLP.calls = 0
    g_adj = grad(_spiral_loss(mlp, u0, "DiscreteAdjoint"))(p0)
    assert _CountingMLP.calls > 0
    g_rev = grad(_spiral_loss(mlp, u0, "ReverseMode"))(p0)
    np.testing.assert_allclose(g_adj, g_rev, rtol=1e-10, atol=1e-12)


def test_rhs_derivatives_choose_the_model():
    mlp = MLP((2, 5, 2), input_transform="cube")
    p = mlp.init(seed=3)
    backend = ade.registry().get_backend("numpy")
    derivs = ade.RHSDerivatives(mlp, p, (2,), backend, np.float64)
    assert derivs.mode == "user"
    u, v = np.array([0.4, -0.9]), np.array([1.0, 2.0])
    gu, gp = derivs.vjp(v, u, 0.0)
    ref_u, ref_p = _autograd_vjp(mlp, v, u, p)
    np.testing.assert_allclose(gu, ref_u, rtol=1e-13)
    np.testing.assert_allclose(gp, ref_p, rtol=1e-13)
    du, dp = np.array([0.1, 0.2]), np.linspace(-1, 1, mlp.n_params)
    np.testing.assert_allclose(
        derivs.jvp(du, dp, u, 0.0), _autograd_jvp(mlp, du, dp, u, p), rtol=1e-12
    )


def test_gradient_through_solve_matches_finite_differences():
    mlp = MLP((2, 4, 2), input_transform="cube")
    p0 = mlp.init(seed=4) + 0.05
    u0 = np.array([2.0, 0.0])
    g = grad(_spiral_loss(mlp, u0, "DiscreteAdjoint"))(p0)
    tight = _spiral_loss(mlp, u0, "DiscreteAdjoint", rtol=1e-11)
    h = 1e-6
    fd = np.array([(tight(p0 + h * e) - tight(p0 - h * e)) / (2 * h) for e in np.eye(mlp.n_params)])
    # small components are limited by the discretisation error, relative to the largest
    np.testing.assert_allclose(g, fd, rtol=1e-4, atol=2e-6 * np.max(np.abs(fd)))


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("shape", SHAPES)
def test_value_and_jvps_equal_one_jvp_per_tangent(activation, shape):
    mlp = MLP((3, 6, 4, 2), activation=activation, input_transform="cube")
    p, u, _, _, _ = _point(mlp, shape, seed=6)
    rng = np.random.default_rng(7)
    k = 5
    dU = rng.standard_normal((k, *shape))
    dP = rng.standard_normal((k, mlp.n_params))
    for tu, tp in ((dU, dP), (None, dP), (dU, None)):
        f, jv = mlp.value_and_jvps(tu, tp, u, p, 0.0)
        # twice the forward rounding bound (was rtol=1e-14)
        np.testing.assert_allclose(
            f, mlp(u, p, 0.0), rtol=0,
            atol=2 * np.max(_forward_rounding(mlp, u, p, activation, "cube")))
        assert jv.shape == (k, *shape[:-1], 2)
        for j in range(k):
            ref = _autograd_jvp(
                mlp,
                np.zeros(shape) if tu is None else tu[j],
                np.zeros(mlp.n_params) if tp is None else tp[j],
                u, p,
            )
            np.testing.assert_allclose(jv[j], ref, rtol=1e-12, atol=1e-13)
    # the cached layout of dP must follow a changed array object
    dP2 = rng.standard_normal((k, mlp.n_params))
    _, jv2 = mlp.value_and_jvps(None, dP2, u, p)
    np.testing.assert_allclose(jv2[0], mlp.jvp(None, dP2[0], u, p), rtol=1e-12, atol=1e-13)
    with pytest.raises(ValueError, match="dU or dP"):
        mlp.value_and_jvps(None, None, u, p)
    with pytest.raises(ValueError, match="dP must be"):
        mlp.value_and_jvps(None, np.ones((k, 3)), u, p)


def test_value_and_jvps_tangent_layout_cache_is_safe():
    mlp = MLP((2, 4, 2), input_transform="cube")
    p, u, _, _, _ = _point(mlp, (2,), seed=8)
    dP = np.eye(mlp.n_params)[:3]
    _, first = mlp.value_and_jvps(None, dP, u, p)
    dP *= 2.0  # a writeable array may change in place: its layout is not cached
    _, second = mlp.value_and_jvps(None, dP, u, p)
    np.testing.assert_allclose(second, 2.0 * first, rtol=1e-14)
    frozen = np.eye(mlp.n_params)[:3]
    frozen.flags.writeable = False
    _, a = mlp.value_and_jvps(None, frozen, u, p)
    _, b = mlp.value_and_jvps(None, frozen, u, p)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, first, rtol=1e-14)


def test_value_and_jvps_in_chunks_equal_one_pass(monkeypatch):
    import autodiffeq.nn as nn

    mlp = MLP((3, 6, 2), input_transform="cube")
    p, u, _, _, _ = _point(mlp, (4, 3), seed=9)
    rng = np.random.default_rng(10)
    k = 11
    dU = rng.standard_normal((k, 4, 3))
    dP = rng.standard_normal((k, mlp.n_params))
    f_one, one = mlp.value_and_jvps(dU, dP, u, p)
    # 4 states x widest layer 6 = 24 entries per direction: chunks of 2 directions
    monkeypatch.setattr(nn, "TANGENT_CHUNK_ELEMENTS", 48)
    f_chunked, chunked = mlp.value_and_jvps(dU, dP, u, p)
    np.testing.assert_array_equal(f_chunked, f_one)
    np.testing.assert_allclose(chunked, one, rtol=1e-13, atol=1e-14)
    _, only_p = mlp.value_and_jvps(None, dP, u, p)
    np.testing.assert_allclose(only_p[5], mlp.jvp(None, dP[5], u, p), rtol=1e-12, atol=1e-14)
