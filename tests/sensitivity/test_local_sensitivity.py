"""``ade.local_sensitivities``: full du/du0 and du/dp at the saved times, without autograd in
the user's code; against analytic solutions, the matrix exponential's Fréchet derivative,
autograd through ``solve`` and finite differences; argument validation."""

from __future__ import annotations

import autograd.numpy as anp
import numpy as np
import pytest
import scipy.linalg
from autograd import jacobian

import autodiffeq as ade
import autodiffeq_plugins.explicit
import autodiffeq_plugins.numpy_backend


def decay(u, p, t):
    return -p * u


U0 = np.array([1.0, 2.0])
K = np.array([0.7, 1.3])
TS = np.array([0.0, 0.5, 1.0, 2.0])


def test_exponential_decay_against_the_analytic_sensitivities():
    """u_i' = -k_i u_i: u_i = u0_i exp(-k_i t), du_i/dk_i = -t u_i, du_i/du0_i = exp(-k_i t)."""
    res = ade.local_sensitivities(ade.ODEProblem(decay, U0, (0.0, 2.0), K), "Tsit5",
                                  saveat=TS, rtol=1e-11, atol=1e-13)
    assert isinstance(res, ade.LocalSensitivities)
    np.testing.assert_array_equal(res.t, TS)
    assert res.u.shape == (4, 2) and res.du_du0.shape == (4, 2, 2) and res.du_dp.shape == (4, 2, 2)
    e = np.exp(-np.outer(TS, K))
    np.testing.assert_allclose(res.u, U0 * e, rtol=1e-10)
    np.testing.assert_allclose(res.du_du0, e[:, :, None] * np.eye(2), rtol=1e-10, atol=1e-14)
    expected_p = (-TS[:, None] * U0 * e)[:, :, None] * np.eye(2)
    np.testing.assert_allclose(res.du_dp, expected_p, rtol=1e-10, atol=1e-14)
    assert res.retcode == "Success" and res.stats.naccept > 0 and res.alg == "Tsit5"
    assert res.wrt == ("u0", "p")
    assert "LocalSensitivities" in repr(res)


def test_matrix_state_and_matrix_parameters_against_the_frechet_derivative():
    """U' = A U with U (2 x 3) and p = A (2 x 2): U(t) = expm(t A) U0,
    dU/dA[i, j] = L(tA, t E_ij) U0, dU/dU0 = expm(t A) (x) I."""
    rng = np.random.default_rng(1)
    A = rng.normal(size=(2, 2)) - np.eye(2)
    U0m = rng.normal(size=(2, 3))

    def f(u, p, t):
        return anp.dot(p, u)

    ts = np.array([0.4, 1.0])
    res = ade.local_sensitivities(ade.ODEProblem(f, U0m, (0.0, 1.0), A), "Vern7", saveat=ts,
                                  rtol=1e-12, atol=1e-14)
    assert res.du_dp.shape == (2, 2, 3, 2, 2)
    assert res.du_du0.shape == (2, 2, 3, 2, 3)
    for i, t in enumerate(ts):
        E_t = scipy.linalg.expm(t * A)
        np.testing.assert_allclose(res.u[i], E_t @ U0m, rtol=1e-10)
        for a in range(2):
            for b in range(2):
                E = np.zeros((2, 2))
                E[a, b] = 1.0
                _, dexp = scipy.linalg.expm_frechet(t * A, t * E)
                np.testing.assert_allclose(res.du_dp[i, :, :, a, b], dexp @ U0m, atol=1e-10)
        expected_u0 = np.einsum("ac,bd->abcd", E_t, np.eye(3))
        np.testing.assert_allclose(res.du_du0[i], expected_u0, atol=1e-10)


def test_agrees_with_autograd_through_solve():
    def lv(u, p, t):
        return anp.stack([p[0] * u[0] - p[1] * u[0] * u[1], -p[2] * u[1] + p[3] * u[0] * u[1]])

    p0 = np.array([1.5, 1.0, 3.0, 1.0])
    u0 = np.array([1.0, 1.0])
    ts = np.linspace(0.0, 2.0, 5)
    res = ade.local_sensitivities(ade.ODEProblem(lv, u0, (0.0, 2.0), p0), "Tsit5", saveat=ts,
                                  wrt="p", rtol=1e-8, atol=1e-10)

    def saved(p):
        method = ade.sensitivity_method("ForwardSensitivity", error_control="all")
        return ade.solve(ade.ODEProblem(lv, u0, (0.0, 2.0), p), "Tsit5", saveat=ts, rtol=1e-8,
                         atol=1e-10, sensealg=method).u

    # the same augmented system (u0 not differentiated) under the same error control
    # (local_sensitivities controls the sensitivities too), so the same steps: equal to rounding
    np.testing.assert_allclose(res.du_dp, jacobian(saved)(p0), rtol=1e-13, atol=1e-14)

    def plain(p):
        return np.asarray(ade.solve(ade.ODEProblem(lv, u0, (0.0, 2.0), p), "Vern7", saveat=ts,
                                    rtol=1e-12, atol=1e-14).u)

    fd = np.stack([(plain(p0 + e) - plain(p0 - e)) / 2e-6 for e in np.eye(4) * 1e-6], -1)
    np.testing.assert_allclose(res.du_dp, fd, rtol=1e-6, atol=1e-7)


def test_every_step_output_starts_with_the_identity():
    res = ade.local_sensitivities(ade.ODEProblem(decay, U0, (0.0, 1.0), K), "DP5", rtol=1e-6)
    assert len(res.t) > 3 and res.t[0] == 0.0 and res.t[-1] == 1.0
    assert np.all(np.diff(res.t) > 0)
    np.testing.assert_array_equal(res.du_du0[0], np.eye(2))
    np.testing.assert_array_equal(res.du_dp[0], np.zeros((2, 2)))


def test_wrt_selects_the_inputs():
    prob = ade.ODEProblem(decay, U0, (0.0, 1.0), K)
    tols = {"rtol": 1e-10, "atol": 1e-12}
    only_p = ade.local_sensitivities(prob, "Tsit5", saveat=[1.0], wrt="p", **tols)
    only_u0 = ade.local_sensitivities(prob, "Tsit5", saveat=[1.0], wrt=("u0",), **tols)
    assert only_p.du_du0 is None and only_p.du_dp.shape == (1, 2, 2)
    assert only_u0.du_dp is None and only_u0.du_du0.shape == (1, 2, 2)
    np.testing.assert_allclose(np.diag(only_p.du_dp[0]), -U0 * np.exp(-K), rtol=1e-8)
    np.testing.assert_allclose(np.diag(only_u0.du_du0[0]), np.exp(-K), rtol=1e-8)
    # parameters that are not differentiated may be anything f understands
    opaque = ade.ODEProblem(lambda u, p, t: -p["k"] * u, U0, (0.0, 1.0), {"k": 2.0})
    res = ade.local_sensitivities(opaque, "Tsit5", saveat=[1.0], wrt="u0", **tols)
    np.testing.assert_allclose(res.du_du0[0], np.exp(-2.0) * np.eye(2), rtol=1e-8)


def test_rosenbrock_with_a_mass_matrix_dae():
    """u1' = -a u1 + u2, 0 = u2 - b u1: u1 = exp((b - a) t), u2 = b u1. The algebraic
    component's initial value does not influence later states (du/du0[:, 1] = 0 for t > 0)."""

    def f(u, p, t):
        return anp.stack([-p[0] * u[0] + u[1], u[1] - p[1] * u[0]])

    a, b = 1.0, 0.5
    prob = ade.ODEProblem(f, np.array([1.0, b]), (0.0, 1.0), np.array([a, b]),
                          mass_matrix=np.diag([1.0, 0.0]))
    ts = np.array([0.0, 0.5, 1.0])
    for alg in ("Rodas5P", "Rodas4"):
        res = ade.local_sensitivities(prob, alg, saveat=ts, rtol=1e-10, atol=1e-12)
        e = np.exp((b - a) * ts)
        du_dp = np.zeros((3, 2, 2))
        du_dp[:, 0, 0], du_dp[:, 0, 1] = -ts * e, ts * e
        du_dp[:, 1, 0], du_dp[:, 1, 1] = -b * ts * e, e + b * ts * e
        du_du0 = np.zeros((3, 2, 2))
        du_du0[:, 0, 0], du_du0[:, 1, 0] = e, b * e
        du_dp[0], du_du0[0] = 0.0, np.eye(2)  # the output at t0 is u0 itself
        np.testing.assert_allclose(res.du_dp, du_dp, atol=1e-10)
        np.testing.assert_allclose(res.du_du0, du_du0, atol=1e-10)


@pytest.mark.filterwarnings("ignore:Output seems independent of input")
def test_user_derivatives_and_finite_differences_without_autograd():
    """f written with plain NumPy (not traceable): user jac/paramjac, then differences."""

    def f(u, p, t):
        return np.array([-p[0] * u[0] + p[1] * u[1], -p[1] * u[1] * u[0]])

    def jac(u, p, t):
        return np.array([[-p[0], p[1]], [-p[1] * u[1], -p[1] * u[0]]])

    def paramjac(u, p, t):
        return np.array([[-u[0], u[1]], [0.0, -u[1] * u[0]]])

    p0 = np.array([0.5, 0.8])
    u0 = np.array([1.0, 0.5])
    user = ade.local_sensitivities(ade.ODEProblem(f, u0, (0.0, 2.0), p0, jac=jac,
                                                  paramjac=paramjac),
                                   "Tsit5", saveat=[1.0, 2.0], rtol=1e-10, atol=1e-12)
    with pytest.warns(ade.DerivativeWarning):
        fd = ade.local_sensitivities(ade.ODEProblem(f, u0, (0.0, 2.0), p0), "Tsit5",
                                     saveat=[1.0, 2.0], rtol=1e-10, atol=1e-12)

    def final(p):
        return np.asarray(ade.solve(ade.ODEProblem(f, u0, (0.0, 2.0), p), "Vern7",
                                    saveat=[1.0, 2.0], rtol=1e-12, atol=1e-14).u)

    truth = np.stack([(final(p0 + e) - final(p0 - e)) / 2e-6 for e in np.eye(2) * 1e-6], -1)
    np.testing.assert_allclose(user.du_dp, truth, atol=1e-7)
    np.testing.assert_allclose(fd.du_dp, truth, atol=1e-6)


def test_array_api_strict_returns_backend_arrays():
    pytest.importorskip("array_api_strict")

    def f(u, p, t):
        xp = u.__array_namespace__()
        return -xp.asarray(p, dtype=u.dtype) * u

    def jac(u, p, t):
        xp = u.__array_namespace__()
        return -xp.asarray(np.diag(p), dtype=u.dtype)

    def paramjac(u, p, t):
        xp = u.__array_namespace__()
        return -(xp.eye(2, dtype=u.dtype) * u)  # d(-p_i u_i)/dp_j = -u_i delta_ij

    prob = ade.ODEProblem(f, U0, (0.0, 1.0), K, jac=jac, paramjac=paramjac)
    backend = ade.registry().get_backend("array_api_strict")
    for alg in ("Tsit5", "Rodas5P"):
        res = ade.local_sensitivities(prob, alg, saveat=[0.5, 1.0], rtol=1e-8, atol=1e-10,
                                      backend="array_api_strict")
        assert backend.is_native(res.du_dp) and backend.is_native(res.u)
        e = np.exp(-np.outer([0.5, 1.0], K))
        np.testing.assert_allclose(backend.to_host(res.du_du0), e[:, :, None] * np.eye(2),
                                   rtol=1e-6, atol=1e-12)
        expected_p = (-np.array([0.5, 1.0])[:, None] * U0 * e)[:, :, None] * np.eye(2)
        np.testing.assert_allclose(backend.to_host(res.du_dp), expected_p, rtol=1e-6,
                                   atol=1e-12)


def test_per_component_tolerances_cover_the_sensitivities():
    res = ade.local_sensitivities(ade.ODEProblem(decay, U0, (0.0, 1.0), K), "Tsit5",
                                  saveat=[1.0], rtol=np.array([1e-10, 1e-9]),
                                  atol=np.array([1e-12, 1e-12]))
    np.testing.assert_allclose(np.diag(res.du_du0[0]), np.exp(-K), rtol=1e-7)


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"wrt": "x"}, ade.InvalidArgument, "wrt"),
        ({"wrt": ()}, ade.InvalidArgument, "wrt"),
        ({"wrt": ("p", "p")}, ade.InvalidArgument, "wrt"),
        ({"wrt": 3}, ade.InvalidType, "wrt"),
        ({"sensealg": "ForwardSensitivity"}, ade.InvalidArgument, "sensealg"),
        ({"dense": True}, ade.InvalidArgument, "dense"),
        ({"saveat": [5.0]}, ade.InvalidArgument, "saveat"),
        ({"autojacvec": "magic"}, ade.InvalidArgument, "autojacvec"),
        ({"autojacvec": 1}, ade.InvalidType, "autojacvec"),
        ({"rtol": -1.0}, ade.InvalidArgument, "rtol"),
        ({"no_such_option": 1}, ade.InvalidArgument, "no_such_option"),
        ({"registry": "default"}, ade.InvalidType, "registry"),
    ],
)
def test_invalid_arguments_are_named(kwargs, error, match):
    prob = ade.ODEProblem(decay, U0, (0.0, 1.0), K)
    with pytest.raises(error, match=match):
        ade.local_sensitivities(prob, "Tsit5", **kwargs)


def test_invalid_problems_and_parameters():
    with pytest.raises(ade.InvalidType, match="prob"):
        ade.local_sensitivities("not a problem")
    no_p = ade.ODEProblem(lambda u, p, t: -u, U0, (0.0, 1.0))
    with pytest.raises(ade.InvalidArgument, match="p=None"):
        ade.local_sensitivities(no_p, "Tsit5")
    opaque = ade.ODEProblem(lambda u, p, t: -p["k"] * u, U0, (0.0, 1.0), {"k": 2.0})
    with pytest.raises(ade.InvalidType, match="p must be an array"):
        ade.local_sensitivities(opaque, "Tsit5", wrt="p")

    def traced(x):
        return ade.local_sensitivities(ade.ODEProblem(decay, x, (0.0, 1.0), K), "Tsit5").u

    with pytest.raises(ade.InvalidType, match="autograd"):
        jacobian(traced)(U0)


def test_without_forward_sensitivity_registered():
    reg = ade.Registry(entry_points=False,
                       plugins=[autodiffeq_plugins.numpy_backend, autodiffeq_plugins.explicit])
    with pytest.raises(ade.UnsupportedCombination, match="ForwardSensitivity"):
        ade.local_sensitivities(ade.ODEProblem(decay, U0, (0.0, 1.0), K), "Tsit5",
                                registry=reg, backend="numpy")
