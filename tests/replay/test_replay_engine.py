"""The trace-once/replay engine against autograd itself, function by function.

Truth: autograd's own ``make_vjp``/``make_jvp``/``jacobian`` of the same user function at
the same point (the engine must reproduce them to rounding: relative 1e-10 of the
largest entry), at several points per function, including points on other branches of
value-dependent control flow.
"""

from __future__ import annotations

import warnings

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import jacobian, make_jvp, make_vjp

from autodiffeq.replay import (
    ReplayedFunction,
    ReplayUnavailable,
    flatten,
    float_leaves,
    layout_of,
    replayed,
)

RTOL = 1e-10
pytestmark = pytest.mark.filterwarnings("ignore:Output seems independent of input")


def _flat(x):
    if isinstance(x, dict):
        return np.concatenate([_flat(x[k]) for k in sorted(x)]) if x else np.zeros(0)
    if isinstance(x, (list, tuple)):
        return np.concatenate([_flat(v) for v in x]) if x else np.zeros(0)
    return np.reshape(np.asarray(x, dtype=np.float64), -1)


def assert_close(got, ref, what):
    got = np.asarray(got, dtype=np.float64).reshape(-1)
    ref = np.asarray(ref, dtype=np.float64).reshape(-1)
    assert got.shape == ref.shape, what
    scale = max(np.abs(ref).max(initial=0.0), 1e-300)
    err = np.abs(got - ref).max(initial=0.0) / scale
    assert err <= RTOL, f"{what}: relative error {err:.2e}"


def check_against_autograd(f, u, p, t, rng):
    """value, VJP (u and p), Jacobians and JVP of the replay match autograd's."""
    rf = ReplayedFunction(f, layout_of(p), np.shape(u))
    leaves = float_leaves(p)
    y_ref = f(u, p, t)
    assert_close(rf.value(u, leaves, t), y_ref, "value")
    g = rng.standard_normal(np.shape(y_ref))
    layout = layout_of(p)

    def of_theta(args):
        uu, theta = args
        return f(uu, layout.unflatten(theta, anp.reshape) if layout.n_leaves else p, t)

    theta, _ = flatten(p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vjp, _ = make_vjp(of_theta)((u, theta))
        gu_ref, gp_ref = vjp(g)
    y, flat = rf.vjp(g, u, leaves, t)
    assert_close(y, y_ref, "value from vjp")
    assert_close(flat, np.concatenate([_flat(gu_ref), _flat(gp_ref)]), "vjp")
    _, flat_u = rf.vjp(g, u, leaves, t, want_p=False)
    assert_close(flat_u, _flat(gu_ref), "vjp (u only)")
    _, rows = rf.jacobian(u, leaves, t)
    J = jacobian(lambda uu: of_theta((uu, theta)))(u).reshape(np.size(y_ref), -1)
    assert_close(rows[:, :np.size(u)], J, "df/du")
    if theta.size:
        Fp = jacobian(lambda th: of_theta((u, th)))(theta).reshape(np.size(y_ref), -1)
        assert_close(rows[:, np.size(u):], Fp, "df/dp")
    du = rng.standard_normal(np.shape(u))
    dtheta = rng.standard_normal(theta.shape)
    jvp_ref = make_jvp(of_theta)((u, theta))((du, dtheta))[1]
    dleaves = layout.split(dtheta) if layout.n_leaves else []
    _, dy = rf.jvp(u, leaves, t, du, dleaves)
    assert_close(dy, jvp_ref, "jvp")
    _, dy_u = rf.jvp(u, leaves, t, du)
    assert_close(dy_u, make_jvp(of_theta)((u, theta))((du, 0 * dtheta))[1], "jvp (u only)")
    # several tangents in one sweep
    dU = rng.standard_normal((3, *np.shape(u)))
    dTheta = rng.standard_normal((3, theta.size))
    dL = [np.stack([layout.split(row)[i] for row in dTheta]) for i in range(layout.n_leaves)]
    _, dY = rf.jvps(u, leaves, t, dU, dL if layout.n_leaves else [])
    for j in range(3):
        ref = make_jvp(of_theta)((u, theta))((dU[j], dTheta[j]))[1]
        assert_close(dY[j], ref, f"jvps[{j}]")
    _, dY_u = rf.jvps(u, leaves, t, dU)
    assert_close(dY_u[1], make_jvp(of_theta)((u, theta))((dU[1], 0 * dTheta[1]))[1],
                 "jvps (u only)")
    return rf


# ----------------------------------------------------------------------------- functions
def lotka_volterra(u, p, t):
    x, y = u[0], u[1]
    a, b, c, d = p[0], p[1], p[2], p[3]
    return anp.array([a * x - b * x * y, -c * y + d * x * y])


def spiral_flat(u, p, t, H=8):
    W1 = anp.reshape(p[:2 * H], (2, H))
    b1 = p[2 * H:3 * H]
    W2 = anp.reshape(p[3 * H:5 * H], (H, 2))
    return anp.dot(anp.tanh(anp.dot(u ** 3, W1) + b1), W2) + p[5 * H:]


def spiral_dict(u, p, t):
    return anp.tanh(u ** 3 @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]


def mlp_layers(u, p, t):
    h = u
    for W, b in p[:-1]:
        h = anp.tanh(h @ W + b)
    W, b = p[-1]
    return h @ W + b


def rober(u, p, t):
    k1, k2, k3 = p
    y1, y2, y3 = u
    return anp.stack([-k1 * y1 + k3 * y2 * y3,
                      k1 * y1 - k2 * y2 ** 2 - k3 * y2 * y3,
                      k2 * y2 ** 2])


def broadcasting(u, p, t):  # u (3, 2), p = {"b": (2,), "s": scalar}
    return p["s"] * u + p["b"] - anp.sum(u, axis=0, keepdims=True) / 3.0 + u.T.T * anp.sin(t)


def branch(u, p, t):
    if u[0] > 0:
        return p * u ** 2
    return -p * u


def masked(u, p, t):
    return anp.where(u > 0, u * p, 0.1 * u) + anp.maximum(u, 0.0) * anp.abs(u)


def time_branch(u, p, t):
    rate = p[0] if t < 1.0 else p[1]
    return -rate * u + anp.cos(t)


def fancy_index(u, p, t):
    v = u[[0, 0, 1]] * p
    return anp.concatenate([v[:2], anp.expand_dims(v[2], 0)]) + anp.mean(u)


def matrix_state(u, p, t):  # u (B, 2): batched state
    return anp.tanh(u @ p["W"]) @ p["W"].T - anp.exp(-u) * anp.log1p(u ** 2)


def hamiltonian(u, p, t):
    from autograd import grad

    def H(z):
        return 0.5 * p[0] * z[1] ** 2 + p[1] * (1.0 - anp.cos(z[0]))

    dH = grad(H)(u)
    return anp.array([dH[1], -dH[0]])


def constant_rhs(u, p, t):
    return anp.zeros(2)


CASES = {
    "lotka_volterra": (lotka_volterra, lambda r: r.uniform(0.5, 2, 2),
                       lambda r: np.array([1.5, 1.0, 3.0, 1.0])),
    "spiral_flat": (spiral_flat, lambda r: r.standard_normal(2),
                    lambda r: r.standard_normal(5 * 8 + 2) * 0.5),
    "spiral_dict": (spiral_dict, lambda r: r.standard_normal(2), lambda r: {
        "W1": r.standard_normal((2, 8)), "b1": r.standard_normal(8),
        "W2": r.standard_normal((8, 2)), "b2": r.standard_normal(2)}),
    "batch_of_one": (spiral_dict, lambda r: r.standard_normal((1, 2)), lambda r: {
        "W1": r.standard_normal((2, 8)), "b1": r.standard_normal(8),
        "W2": r.standard_normal((8, 2)), "b2": r.standard_normal(2)}),
    "mlp_layers": (mlp_layers, lambda r: r.standard_normal((4, 2)), lambda r: [
        (r.standard_normal((2, 5)), r.standard_normal(5)),
        (r.standard_normal((5, 5)), r.standard_normal(5)),
        (r.standard_normal((5, 2)), r.standard_normal(2))]),
    "rober": (rober, lambda r: r.uniform(0.1, 1, 3), lambda r: (0.04, 3e7, 1e4)),
    "broadcasting": (broadcasting, lambda r: r.standard_normal((3, 2)),
                     lambda r: {"b": r.standard_normal(2), "s": 1.7, "name": "static"}),
    "masked": (masked, lambda r: r.standard_normal(5), lambda r: r.standard_normal(5)),
    "fancy_index": (fancy_index, lambda r: r.standard_normal(2),
                    lambda r: r.standard_normal(3)),
    "matrix_state": (matrix_state, lambda r: r.standard_normal((3, 2)),
                     lambda r: {"W": r.standard_normal((2, 2))}),
    "constant_rhs": (constant_rhs, lambda r: r.standard_normal(2), lambda r: np.ones(2)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_replay_matches_autograd(name):
    rng = np.random.default_rng(7)
    f, make_u, make_p = CASES[name]
    p = make_p(rng)
    for _ in range(3):
        rf = check_against_autograd(f, make_u(rng), p, float(rng.uniform(0, 2)), rng)
        assert rf.disabled is None, rf.disabled


def test_replayed_vjp_is_replayed_not_retraced():
    rng = np.random.default_rng(1)
    p = rng.standard_normal(42) * 0.5
    rf, leaves = replayed(spiral_flat, p, (2,), np.float64)
    for _ in range(20):
        rf.vjp(rng.standard_normal(2), rng.standard_normal(2), leaves, 0.3)
    assert rf.n_traces == 1 and len(rf.variants) == 1
    # the same function and signature shares the recording; a new signature records anew
    assert replayed(spiral_flat, p, (2,), np.float64)[0] is rf
    assert replayed(spiral_flat, p[:-1], (2,), np.float64)[0] is not rf


@pytest.mark.parametrize("name,f,points", [
    ("branch", branch, [np.array([1.0, 2.0]), np.array([-1.0, 2.0]), np.array([3.0, -1.0])]),
    ("time_branch", time_branch, None),
])
def test_value_dependent_branches_are_followed(name, f, points):
    """Python control flow on traced values: each replay on the other branch is detected
    (guard) and recorded anew, never a stale graph."""
    rng = np.random.default_rng(3)
    p = np.array([0.7, 1.9]) if name == "time_branch" else rng.standard_normal(2)
    rf = ReplayedFunction(f, layout_of(p), (2,))
    leaves = float_leaves(p)
    times = [0.5, 1.5, 0.2, 1.7] if points is None else [0.3] * len(points)
    points = points or [rng.standard_normal(2) for _ in times]
    for u, t in zip(points, times):
        g = rng.standard_normal(2)
        vjp, y_ref = make_vjp(lambda a, t=t: f(a[0], a[1], t))((u, p))
        gu, gp = vjp(g)
        y, flat = rf.vjp(g, u, leaves, t)
        assert_close(y, y_ref, "value")
        assert_close(flat, np.concatenate([gu, gp]), "vjp")
    assert len(rf.variants) == 2 and rf.disabled is None


def test_data_dependent_shapes_are_checked():
    def positive_part(u, p, t):
        return anp.sum(u[u > 0] * p) * u

    rf = ReplayedFunction(positive_part, layout_of(2.0), (3,))
    for u in (np.array([1.0, -1.0, 2.0]), np.array([1.0, 1.0, 2.0]), np.array([-1.0, 1, 2])):
        vjp, y_ref = make_vjp(lambda a, u=u: positive_part(a[0], a[1], 0.0))((u, 2.0))
        g = np.ones(3)
        y, flat = rf.vjp(g, u, [2.0], 0.0)
        assert_close(y, y_ref, "value")
        assert_close(flat, np.concatenate([vjp(g)[0], [vjp(g)[1]]]), "vjp")
    assert rf.n_traces == 2  # the second point changes the mask's size; the third does not


@pytest.mark.parametrize("f,why", [
    (lambda u, p, t: u * float(u[0]), "cannot be recorded"),
    (lambda u, p, t: np.asarray([u[0], u[1]]) * 1.0, "object array"),
])
def test_functions_leaving_autograd_are_not_replayed(f, why):
    rf = ReplayedFunction(f, layout_of(None), (2,))
    with pytest.raises(ReplayUnavailable, match=why):
        rf.vjp(np.ones(2), np.ones(2), [], 0.0)
    assert rf.disabled is not None


def test_nested_autograd_with_sparse_cotangents_is_not_replayed():
    rf = ReplayedFunction(hamiltonian, layout_of(np.array([1.3, 0.7])), (2,))
    with pytest.raises(ReplayUnavailable, match="nested gradient"):
        rf.vjp(np.ones(2), np.ones(2), [np.array([1.3, 0.7])], 0.0)


def test_nested_dense_gradient_is_replayed():
    """A Hamiltonian system written with autograd.grad inside f (dense inner cotangents)."""
    from autograd import grad

    def hamiltonian_flow(u, p, t):
        def H(z):
            return 0.5 * anp.sum(p * z ** 2) + anp.sum(anp.cos(z)) * 0.1

        dH = grad(H)(u)
        return anp.dot(anp.array([[0.0, 1.0], [-1.0, 0.0]]), dH)

    rng = np.random.default_rng(11)
    rf = check_against_autograd(hamiltonian_flow, rng.standard_normal(2),
                                np.array([1.3, 0.7]), 0.0, rng)
    assert rf.disabled is None


def test_too_many_paths_fall_back():
    def many(u, p, t):
        k = 0
        while k < 20 and u[0] > k:
            k += 1
        return u * k

    rf = ReplayedFunction(many, layout_of(None), (2,), max_variants=3)
    for x in (0.5, 1.5, 2.5):
        rf.vjp(np.ones(2), np.array([x, 0.0]), [], 0.0)
    with pytest.raises(ReplayUnavailable, match="paths"):
        rf.vjp(np.ones(2), np.array([3.5, 0.0]), [], 0.0)


def test_parameter_layout_round_trip():
    p = {"b": [np.ones(2), (3.0, np.arange(6.0).reshape(2, 3))], "a": np.zeros(1),
         "act": "tanh", "n": 3}
    theta, layout = flatten(p)
    assert theta.shape == (10,) and layout.size == 10
    back = layout.unflatten(theta)
    assert back["act"] == "tanh" and back["n"] == 3
    np.testing.assert_array_equal(back["b"][1][1], p["b"][1][1])
    assert isinstance(back["b"], list) and isinstance(back["b"][1], tuple)
    assert float(back["b"][1][0]) == 3.0


def test_stacked_scalars_with_shared_entries():
    """``stack`` of expressions that reuse one entry: dense and scattered cotangents of the
    same scalar are accumulated into one array."""

    def f(u, p, t):
        x = u[0] * u[0] + u[0]
        return anp.stack([x * p[0], anp.sin(x) + u[1], p[1] * u[0]])

    rng = np.random.default_rng(5)
    for _ in range(2):
        check_against_autograd(f, rng.standard_normal(2), rng.standard_normal(2), 0.0, rng)


def test_branch_on_a_parameter_is_guarded_in_the_hoisted_part():
    """Values of the parameters alone are computed once per set of leaves (``prep``); a
    Python branch on them is still a guard, checked for every new set of leaves."""

    def f(u, p, t):
        scale = p[0] if p[1] > 0 else -p[0]
        return scale * u + p[1]

    rf = ReplayedFunction(f, layout_of(np.ones(2)), (2,))
    u = np.array([0.5, -1.0])
    for p in (np.array([2.0, 1.0]), np.array([2.0, -1.0]), np.array([3.0, 1.0])):
        for leaves in ([p], replayed(f, p, (2,), np.float64)[1]):
            for _ in range(2):  # the second call uses the cached parameter values
                y = rf.value(u, leaves, 0.0)
                assert_close(y, f(u, p, 0.0), "value")
    assert len(rf.variants) == 2
