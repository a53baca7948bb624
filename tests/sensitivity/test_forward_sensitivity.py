"""ForwardSensitivity (forward sensitivity equations solved with the state) through
``ade.solve``: against the matrix exponential and its Fréchet derivative, analytic solutions,
finite differences of tightly solved problems and DiscreteAdjoint; explicit, Rosenbrock and
auto-switching solvers; NumPy and array_api_strict."""

from __future__ import annotations

import warnings

import autograd.numpy as anp
import numpy as np
import pytest
import scipy.linalg
from autograd import grad, jacobian, make_jvp

import autodiffeq as ade

SENS = "ForwardSensitivity"


def lotka_volterra(u, p, t):
    return anp.stack([p[0] * u[0] - p[1] * u[0] * u[1], -p[2] * u[1] + p[3] * u[0] * u[1]])


U0 = np.array([1.0, 1.0])
P0 = np.array([1.5, 1.0, 3.0, 1.0])
TS = np.linspace(0.0, 4.0, 9)


def lv_loss(p, u0=U0, sensealg=SENS, rtol=1e-8, alg="Tsit5"):
    prob = ade.ODEProblem(lotka_volterra, u0, (0.0, 4.0), p)
    sol = ade.solve(prob, alg, saveat=TS, rtol=rtol, atol=rtol * 1e-2, sensealg=sensealg)
    return anp.sum((sol.u - 1.0) ** 2)


def central_fd(fun, x, rel=1e-6):
    """Central differences of a scalar or array function, step ``rel * max(|x_j|, 1)``."""
    x = np.asarray(x, dtype=np.float64)
    cols = []
    for j in range(x.size):
        h = rel * max(abs(x.flat[j]), 1.0)
        e = np.zeros(x.size)
        e[j] = h
        e = e.reshape(x.shape)
        cols.append((np.asarray(fun(x + e)) - np.asarray(fun(x - e))) / (2 * h))
    return np.stack(cols, axis=-1)


# ----------------------------------------------------------------------------- registration
def test_registered_as_a_forward_method_for_every_family():
    spec = ade.registry().sensitivity(SENS)
    assert spec.mode == "forward" and spec.default_priority == 10
    assert spec.solver_families is None and spec.backends is None and spec.stiff
    prob = ade.ODEProblem(lotka_volterra, U0, (0.0, 1.0), P0)
    for alg in ("Tsit5", "Vern7", "Rodas5P", "Rodas4", "AutoTsit5Rodas5P"):
        for backend in ("numpy", "array_api_strict"):
            assert ade.registry().compatible(alg, backend, SENS, prob)


def test_chosen_by_default_for_few_inputs():
    def loss(p):
        sol = ade.solve(ade.ODEProblem(lotka_volterra, U0, (0.0, 1.0), p), "Tsit5",
                        saveat=[1.0], rtol=1e-8)
        assert sol.sensealg == SENS
        return anp.sum(sol.u)

    grad(loss)(P0)


# ----------------------------------------------------------------------------- explicit solvers
def test_gradients_match_discrete_adjoint_and_finite_differences():
    g_p, g_u0 = grad(lv_loss, argnum=(0, 1))(P0, U0)
    ref_p, ref_u0 = grad(lv_loss, argnum=(0, 1))(P0, U0, "DiscreteAdjoint", 1e-9)
    np.testing.assert_allclose(g_p, ref_p, rtol=1e-5)
    np.testing.assert_allclose(g_u0, ref_u0, rtol=1e-5)
    fd_p = central_fd(lambda p: float(lv_loss(p, sensealg=None, rtol=1e-11)), P0)
    # plus the differences' noise: two solves each within ~1e-11 |loss|, over 2h (h = 1e-6
    # max(|p_j|, 1)); the truncation (~h^2) is negligible
    noise = 1e-11 * abs(float(lv_loss(P0, sensealg=None, rtol=1e-11))) / (
        1e-6 * np.maximum(np.abs(P0), 1.0))
    assert np.all(np.abs(g_p - fd_p) <= 1e-5 * np.abs(fd_p) + noise), (g_p, fd_p, noise)


@pytest.mark.parametrize("alg", ["Tsit5", "Vern7", "BS3", "Rodas5P", "Rodas4"])
def test_state_error_control_is_the_exact_discrete_derivative(alg):
    """error_control="state": the forward solve's own steps, so S is the derivative of the
    discrete solution, the gradient DiscreteAdjoint computes in reverse (to rounding)."""
    method = ade.sensitivity_method(SENS, error_control="state")
    g_p, g_u0 = grad(lv_loss, argnum=(0, 1))(P0, U0, method, 1e-6, alg)
    ref_p, ref_u0 = grad(lv_loss, argnum=(0, 1))(P0, U0, "DiscreteAdjoint", 1e-6, alg)
    # Rosenbrock: the augmented time derivative comes from a difference quotient when f
    # is not autonomous; LV is autonomous, so the agreement is to rounding for every family
    scale = np.max(np.abs(ref_p))
    np.testing.assert_allclose(g_p, ref_p, rtol=1e-10, atol=1e-11 * scale)
    np.testing.assert_allclose(g_u0, ref_u0, rtol=1e-10, atol=1e-11 * scale)
    # and the default (sensitivities under error control) is a different, more accurate one
    all_ = ade.sensitivity_method(SENS, error_control="all")
    g_all = grad(lv_loss)(P0, U0, all_, 1e-6, alg)
    assert np.max(np.abs(g_all - ref_p)) > 1e-12 * np.max(np.abs(ref_p))
    # "state" is the default
    np.testing.assert_array_equal(grad(lv_loss)(P0, U0, SENS, 1e-6, alg), g_p)


@pytest.mark.parametrize("batch", [None, 3])
def test_neural_ode_batched_products_and_state_error_control(batch):
    from autodiffeq.nn import MLP

    mlp = MLP((2, 8, 2), input_transform="cube")
    p0 = mlp.init(seed=0)
    u0 = np.array([2.0, 0.0]) if batch is None else np.linspace(1.0, 2.0, 2 * batch).reshape(
        batch, 2)
    ts = np.linspace(0.0, 1.5, 6)

    def loss(p, u0, sensealg):
        prob = ade.ODEProblem(mlp, u0, (0.0, 1.5), p)
        sol = ade.solve(prob, "Tsit5", saveat=ts, rtol=1e-6, atol=1e-8, sensealg=sensealg)
        return anp.sum(sol.u**2)

    state = ade.sensitivity_method(SENS, error_control="state")
    g = grad(loss, argnum=(0, 1))(p0, u0, state)
    ref = grad(loss, argnum=(0, 1))(p0, u0, "DiscreteAdjoint")
    for a, b in zip(g, ref, strict=True):
        # the same discrete derivative summed in another order: rounding relative to the
        # gradient's largest entry (measured 3e-15 of it; with atol=1e-14 a small entry came
        # within 1.15x of its tolerance)
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12 * np.max(np.abs(b)))
    g_all = grad(loss, argnum=(0, 1))(p0, u0, ade.sensitivity_method(SENS, error_control="all"))
    for a, b in zip(g_all, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-8)


def test_batched_products_are_used_for_a_model_with_value_and_jvps(caplog):
    import logging

    from autodiffeq.nn import MLP

    mlp = MLP((2, 4, 2))
    prob = ade.ODEProblem(mlp, np.array([1.0, 0.5]), (0.0, 0.5), mlp.init(seed=1))
    with caplog.at_level(logging.DEBUG, logger="autodiffeq"):
        grad(lambda p: anp.sum(ade.solve(prob.remake(p=p), "Tsit5", saveat=[0.5],
                                         sensealg=SENS).u))(prob.p)
    assert "J S by batched" in caplog.text


def test_error_control_option_is_checked():
    with pytest.raises(ade.InvalidArgument, match="error_control"):
        ade.sensitivity_method(SENS, error_control="none")


def test_default_keeps_the_value_of_the_plain_solve_and_the_users_error_components():
    """The default (error_control="state") takes the plain solve's steps: value_and_grad's
    value is the undifferentiated value (with saveat: of the solve stepping onto the saved
    times, as every differentiated solve does), and a user's error_components is respected."""
    from autograd import value_and_grad

    ts = np.linspace(0.0, 10.0, 11)
    rows: dict[str, int] = {}

    def loss(p, kwargs):
        prob = ade.ODEProblem(lotka_volterra, U0, (0.0, 10.0), p)
        if not isinstance(p, np.ndarray) and "saveat" in kwargs:
            kwargs = {**kwargs, "tstops": ts}  # the steps of a differentiated solve
        sol = ade.solve(prob, "Tsit5", rtol=1e-5, sensealg=SENS, **kwargs)
        rows["traced" if not isinstance(p, np.ndarray) else "plain"] = len(sol.t)
        return anp.sum((sol.u - 1.0) ** 2)

    for kwargs in ({"saveat": ts}, {}, {"error_components": 1}):
        value, _ = value_and_grad(loss)(P0, kwargs)
        plain = loss(P0, {**kwargs, "tstops": ts} if "saveat" in kwargs else kwargs)
        np.testing.assert_allclose(value, plain, rtol=1e-9)
        assert rows["traced"] == rows["plain"]


@pytest.mark.parametrize("error_control", ["all", "state"])
def test_dense_output_is_differentiable_against_the_matrix_exponential(error_control):
    """sol(t) between steps: u(t) = expm(t A) u0, derivatives by the Fréchet derivative."""
    rng = np.random.default_rng(11)
    A = rng.normal(size=(3, 3)) * 0.5 - np.eye(3)
    u0 = rng.normal(size=3)
    c = rng.normal(size=3)
    times = np.array([0.0, 0.37, 1.21, 2.0])
    method = ade.sensitivity_method(SENS, error_control=error_control)

    def value(A, u0, t=times):
        prob = ade.ODEProblem(lambda u, p, t: p @ u, u0, (0.0, 2.0), A)
        sol = ade.solve(prob, "Tsit5", rtol=1e-10, atol=1e-12, saveat=[2.0], dense=True,
                        sensealg=method)
        return anp.sum(sol(t) @ c)

    g_A, g_u0 = grad(value, argnum=(0, 1))(A, u0)
    exact_A = np.zeros_like(A)
    exact_u0 = np.zeros(3)
    for t in times:
        part_A, part_u0 = _expm_truth(A, u0, t, c) if t > 0 else (np.zeros_like(A), c)
        exact_A += part_A
        exact_u0 += part_u0
    np.testing.assert_allclose(g_A, exact_A, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(g_u0, exact_u0, rtol=1e-7, atol=1e-9)
    # the value itself is the interpolant: exact to the tolerance
    exact = sum(c @ scipy.linalg.expm(t * A) @ u0 for t in times)
    assert abs(value(A, u0) - exact) < 1e-8
    # a scalar time gives one state; JVP along a direction of A equals the VJP's pairing
    dA = rng.normal(size=(3, 3))
    tangent = make_jvp(lambda a: value(a, u0, 0.9))(A)(dA)[1]
    np.testing.assert_allclose(tangent, np.sum(grad(value)(A, u0, 0.9) * dA), rtol=1e-10)
    def single(a):
        sol = ade.solve(ade.ODEProblem(lambda u, p, t: p @ u, u0, (0.0, 2.0), a), "Tsit5",
                        sensealg=method)
        assert anp.shape(sol(0.9)) == (3,) and anp.shape(sol([0.9, 1.0])) == (2, 3)
        return anp.sum(sol(0.9))

    grad(single)(A)

    def no_dense(a):
        sol = ade.solve(ade.ODEProblem(lambda u, p, t: p @ u, u0, (0.0, 2.0), a), "Tsit5",
                        saveat=[1.0, 2.0], sensealg=method)
        return anp.sum(sol(0.9))

    with pytest.raises(ade.DenseOutputError, match="dense=True"):
        grad(no_dense)(A)


def test_dense_output_of_a_neural_ode_matches_discrete_gradients():
    """error_control="state": sol(t) is the Tsit5 interpolant of the steps of the forward
    solve, and its gradient that of the interpolated discrete solution (checked against
    central differences with the steps held fixed: dt from the unperturbed solve)."""
    from autodiffeq.nn import MLP

    mlp = MLP((2, 6, 2), input_transform="cube")
    p0 = mlp.init(seed=2)
    u0 = np.array([2.0, 0.0])
    t_query = np.array([0.3, 0.77, 1.1])
    method = ade.sensitivity_method(SENS, error_control="state")

    def loss(p):
        prob = ade.ODEProblem(mlp, u0, (0.0, 1.5), p)
        sol = ade.solve(prob, "Tsit5", rtol=1e-6, atol=1e-8, sensealg=method)
        return anp.sum(sol(t_query) ** 2)

    g = grad(loss)(p0)
    steps = ade.solve(ade.ODEProblem(mlp, u0, (0.0, 1.5), p0), "Tsit5", rtol=1e-6, atol=1e-8,
                      tstops=[1.5]).t

    def fixed(p):
        prob = ade.ODEProblem(mlp, u0, (0.0, 1.5), p)
        sol = ade.solve(prob, "Tsit5", adaptive=False, dt=1.0, tstops=steps[1:-1])
        return float(np.sum(sol(t_query) ** 2))

    np.testing.assert_allclose(g, central_fd(fixed, p0, rel=1e-5), rtol=1e-6,
                               atol=1e-8 * np.max(np.abs(g)))


def test_dense_output_outside_the_interval_is_an_error():
    prob = ade.ODEProblem(lotka_volterra, U0, (0.0, 1.0), P0)

    def loss(p):
        return anp.sum(ade.solve(prob.remake(p=p), "Tsit5", sensealg=SENS)(1.5))

    with pytest.raises(ade.DenseOutputError, match="outside"):
        grad(loss)(P0)


def _expm_truth(A, u0, T, c):
    """``d(c . expm(T A) u0)/dA`` (Fréchet derivative) and ``/du0``."""
    exact = np.zeros_like(A)
    for i in range(A.shape[0]):
        for j in range(A.shape[1]):
            E = np.zeros_like(A)
            E[i, j] = 1.0
            _, dexp = scipy.linalg.expm_frechet(T * A, T * E)
            exact[i, j] = c @ dexp @ u0
    return exact, scipy.linalg.expm(T * A).T @ c


@pytest.mark.parametrize(
    ("alg", "tol", "rtol_check"),
    [("Vern7", 1e-12, 1e-9), ("Tsit5", 1e-10, 1e-7), ("Rodas5P", 1e-10, 1e-7)],
)
def test_matrix_shaped_p_against_the_matrix_exponential(alg, tol, rtol_check):
    rng = np.random.default_rng(3)
    A = rng.normal(size=(3, 3)) * 0.5 - np.eye(3)
    u0 = rng.normal(size=3)
    c = rng.normal(size=3)
    T = 1.3

    def f(u, p, t):
        return anp.dot(p, u)

    def loss(P, x0):
        sol = ade.solve(ade.ODEProblem(f, x0, (0.0, T), P), alg, saveat=[T], rtol=tol,
                        atol=tol * 1e-2, sensealg=SENS)
        return anp.sum(c * sol.u[-1])

    exact_A, exact_u0 = _expm_truth(A, u0, T, c)
    g_A, g_u0 = grad(loss, argnum=(0, 1))(A, u0)
    assert g_A.shape == (3, 3)
    np.testing.assert_allclose(g_A, exact_A, rtol=rtol_check, atol=rtol_check)
    np.testing.assert_allclose(g_u0, exact_u0, rtol=rtol_check, atol=rtol_check)


def test_exponential_decay_final_state_loss_every_step_output():
    """u' = -k u: u(T) = u0 exp(-k T), du/dk = -T u(T), du/du0 = exp(-k T)."""

    def f(u, p, t):
        return -p * u

    u0 = np.array([1.0, 2.0])
    k = np.array([0.7, 1.3])
    T = 2.0

    def final(k_, x0):
        sol = ade.solve(ade.ODEProblem(f, x0, (0.0, T), k_), "DP5", rtol=1e-11, atol=1e-13,
                        sensealg=SENS)
        assert len(sol.t) > 5 and sol.t[-1] == T
        return anp.sum(sol.u[-1] ** 2)

    uT = u0 * np.exp(-k * T)
    g_k, g_u0 = grad(final, argnum=(0, 1))(k, u0)
    np.testing.assert_allclose(g_k, 2 * uT * (-T * uT), rtol=1e-9)
    np.testing.assert_allclose(g_u0, 2 * uT * np.exp(-k * T), rtol=1e-9)


def test_scalar_p_and_backwards_integration():
    """u' = -k u integrated from t=1 back to t=0: u(0) = u1 exp(k)."""

    def f(u, p, t):
        return -p * u

    u1 = np.array([0.5, 1.5])

    def loss(k):
        sol = ade.solve(ade.ODEProblem(f, u1, (1.0, 0.0), k), "Tsit5", saveat=[0.5, 0.0],
                        rtol=1e-11, atol=1e-13, sensealg=SENS)
        return anp.sum(sol.u)

    k = 0.8
    expected = np.sum(u1) * (0.5 * np.exp(0.5 * k) + np.exp(k))
    np.testing.assert_allclose(grad(loss)(k), expected, rtol=1e-9)


def test_jvp_vjp_transposition_and_jacobian():
    rng = np.random.default_rng(0)
    v_in = rng.normal(size=4)
    w_out = rng.normal(size=(len(TS), 2))

    def saved(p):
        prob = ade.ODEProblem(lotka_volterra, U0, (0.0, 4.0), p)
        return ade.solve(prob, "Tsit5", saveat=TS, rtol=1e-8, sensealg=SENS).u

    _, jv = make_jvp(saved)(P0)(v_in)
    vj = grad(lambda p: anp.sum(w_out * saved(p)))(P0)
    np.testing.assert_allclose(np.sum(w_out * jv), vj @ v_in, rtol=1e-12)
    J = jacobian(saved)(P0)
    np.testing.assert_allclose(np.tensordot(J, v_in, axes=1), jv, rtol=1e-12, atol=1e-14)
    # against ForwardMode (autograd's forward mode through the steps of a plain solve)
    _, jv_ref = make_jvp(lambda p: ade.solve(
        ade.ODEProblem(lotka_volterra, U0, (0.0, 4.0), p), "Tsit5", saveat=TS, rtol=1e-8,
        sensealg="ForwardMode").u)(P0)(v_in)
    np.testing.assert_allclose(jv, jv_ref, rtol=1e-4, atol=1e-5)


def test_jvp_with_respect_to_u0_only():
    def saved(x0):
        prob = ade.ODEProblem(lambda u, p, t: -p * u, x0, (0.0, 1.0), 2.0)
        return ade.solve(prob, "Tsit5", saveat=[0.0, 1.0], rtol=1e-11, atol=1e-13,
                         sensealg=SENS).u

    _, jv = make_jvp(saved)(np.array([1.0, 3.0]))(np.array([1.0, -1.0]))
    np.testing.assert_allclose(jv, [[1.0, -1.0], [np.exp(-2.0), -np.exp(-2.0)]], rtol=1e-9)


def test_parameters_only_with_fewer_parameters_than_states():
    """k < n: the products J S + df/dp are built column by column (forward-mode JVPs).
    A chain u_1' = -a u_1, u_i' = u_{i-1} - u_i: u_n(T) depends on a analytically via the
    matrix exponential of the chain matrix."""
    n = 5

    def f(u, p, t):
        first = -p[0] * u[:1]
        rest = u[:-1] - u[1:]
        return anp.concatenate([first, rest])

    u0 = np.linspace(1.0, 2.0, n)
    T = 1.5

    def A_of(a):
        A = -np.eye(n) + np.eye(n, k=-1)
        A[0, 0] = -a
        return A

    def loss(p):
        sol = ade.solve(ade.ODEProblem(f, u0, (0.0, T), p), "Vern7", saveat=[T],
                        rtol=1e-12, atol=1e-14, sensealg=SENS)
        return sol.u[-1, -1]

    a = 0.4
    E = np.zeros((n, n))
    E[0, 0] = -1.0
    _, dexp = scipy.linalg.expm_frechet(T * A_of(a), T * E)
    np.testing.assert_allclose(grad(loss)(np.array([a])), [(dexp @ u0)[-1]], rtol=1e-9)


@pytest.mark.filterwarnings("ignore:Output seems independent of input")
def test_user_vjp_and_finite_difference_derivatives():
    def f(u, p, t):
        return np.array([p[0] * u[0] - p[1] * u[0] * u[1], -p[2] * u[1] + p[3] * u[0] * u[1]])

    def vjp(v, u, p, t):
        J = np.array([[p[0] - p[1] * u[1], -p[1] * u[0]], [p[3] * u[1], -p[2] + p[3] * u[0]]])
        Fp = np.array([[u[0], -u[0] * u[1], 0.0, 0.0], [0.0, 0.0, -u[1], u[0] * u[1]]])
        return v @ J, v @ Fp

    ref = grad(lv_loss)(P0)

    def loss(p, **kwargs):
        prob = ade.ODEProblem(f, U0, (0.0, 4.0), p, **kwargs)
        sol = ade.solve(prob, "Tsit5", saveat=TS, rtol=1e-8, atol=1e-10, sensealg=SENS)
        return anp.sum((sol.u - 1.0) ** 2)

    np.testing.assert_allclose(grad(lambda p: loss(p, vjp=vjp))(P0), ref, rtol=1e-9)
    with pytest.warns(ade.DerivativeWarning):
        g_fd = grad(loss)(P0)  # np.array of entries: autograd cannot trace f
    np.testing.assert_allclose(g_fd, ref, rtol=1e-5)


def test_autojacvec_option_and_errors():
    method = ade.sensitivity_method(SENS, autojacvec="fd")

    def loss(p, sensealg):
        prob = ade.ODEProblem(lotka_volterra, U0, (0.0, 4.0), p)
        sol = ade.solve(prob, "Tsit5", saveat=TS, rtol=1e-8, atol=1e-10, sensealg=sensealg)
        return anp.sum((sol.u - 1.0) ** 2)

    np.testing.assert_allclose(grad(loss)(P0, method), grad(loss)(P0, SENS), rtol=1e-5)
    with pytest.raises(ade.InvalidArgument, match="autojacvec"):
        ade.sensitivity_method(SENS, autojacvec="magic")
    untraceable = ade.ODEProblem(
        lambda u, p, t: np.array([-p[0] * u[0]]), np.array([1.0]), (0.0, 1.0), np.array([1.0])
    )
    with pytest.raises(ade.UnsupportedCombination, match="autograd cannot trace"):
        grad(lambda p: anp.sum(ade.solve(untraceable.remake(p=p), "Tsit5",
                                         sensealg=ade.sensitivity_method(
                                             SENS, autojacvec="autograd")).u))(np.array([1.0]))


# ----------------------------------------------------------------------------- stiff solvers
def rober_np(u, p, t):
    k1, k2, k3 = p
    y1, y2, y3 = u
    return np.array([-k1 * y1 + k3 * y2 * y3, k1 * y1 - k2 * y2**2 - k3 * y2 * y3, k2 * y2**2])


def rober_ad(u, p, t):
    k1, k2, k3 = p[0], p[1], p[2]
    return anp.stack([-k1 * u[0] + k3 * u[1] * u[2],
                      k1 * u[0] - k2 * u[1] ** 2 - k3 * u[1] * u[2],
                      k2 * u[1] ** 2])


def rober_jac(u, p, t):
    k1, k2, k3 = p
    y1, y2, y3 = u
    return np.array([[-k1, k3 * y3, k3 * y2],
                     [k1, -2 * k2 * y2 - k3 * y3, -k3 * y2],
                     [0.0, 2 * k2 * y2, 0.0]])


def rober_paramjac(u, p, t):
    y1, y2, y3 = u
    return np.array([[-y1, 0.0, y2 * y3], [y1, -y2**2, -y2 * y3], [0.0, y2**2, 0.0]])


ROBER_P = np.array([0.04, 3e7, 1e4])
ROBER_U0 = np.array([1.0, 0.0, 0.0])
ROBER_TS = np.array([1.0, 10.0, 100.0])
ROBER_W = np.array([[1.0, 1e4, 1.0], [-1.0, 2e4, 3.0], [0.5, -1e4, 2.0]])  # y2 ~ 1e-5


def rober_loss(p, u0=ROBER_U0, alg="Rodas5P", rtol=1e-8, sensealg=SENS, user=True,
               f=rober_np):
    derivs = {"jac": rober_jac, "paramjac": rober_paramjac} if user else {}
    prob = ade.ODEProblem(f, u0, (0.0, 100.0), p, **derivs)
    sol = ade.solve(prob, alg, saveat=ROBER_TS, rtol=rtol, atol=rtol * 1e-4, sensealg=sensealg)
    return anp.sum(ROBER_W * sol.u)


@pytest.fixture(scope="module")
def rober_fd():
    """Central differences (relative step h = 1e-4 in each rate) of Rodas5P solves at rtol
    1e-12, Richardson-extrapolated with those at 2h (``D_h + (D_h - D_2h) / 3``: the h^2
    truncation, 7.7e-7 relative for k1, removed), and a bound on their error: the size of
    that correction (far above the remaining O(h^4)) plus the noise of the combination,
    (4/3 + 1/6) eps / h for solves each within eps ~ 1e-12 times the loss's terms
    (|W| |u|); both doubled."""

    def plain(p):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ade.DerivativeWarning)
            return float(rober_loss(p, rtol=1e-12, sensealg=None))

    fd = central_fd(plain, ROBER_P, rel=1e-4)
    fd_2h = central_fd(plain, ROBER_P, rel=2e-4)
    prob = ade.ODEProblem(rober_np, ROBER_U0, (0.0, 100.0), ROBER_P)
    u = ade.solve(prob, "Rodas5P", saveat=ROBER_TS, rtol=1e-12, atol=1e-16).u
    eps = 1e-12 * float(np.sum(np.abs(ROBER_W * u)))
    h = 1e-4 * np.maximum(np.abs(ROBER_P), 1.0)
    return fd + (fd - fd_2h) / 3.0, 2.0 * (np.abs(fd - fd_2h) / 3.0 + 1.5 * eps / h)


def _assert_matches_rober_fd(g, rober_fd, rtol):
    """``g`` within the differences' error bound plus its own solve's error (``rtol``)."""
    fd, bound = rober_fd
    assert np.all(np.abs(g - fd) <= bound + rtol * np.abs(fd)), (g, fd, bound)


@pytest.mark.parametrize("alg", ["Rodas5P", "Rodas4", "AutoTsit5Rodas5P"])
def test_rober_gradient_with_rosenbrock_matches_finite_differences(alg, rober_fd):
    g = grad(rober_loss)(ROBER_P, alg=alg)
    # was rtol=1e-6 against the differences alone, whose truncation in k1 is 7.7e-7
    # relative; g's own error: 10x its solve's rtol (1e-8), measured 5e-8
    _assert_matches_rober_fd(g, rober_fd, 1e-7)


@pytest.mark.slow
def test_rober_gradient_with_autograd_second_derivatives(rober_fd):
    """No user derivatives: J, df/dp by autograd and the augmented Jacobian's second-derivative
    blocks by forward-over-reverse autograd."""
    g = grad(rober_loss)(ROBER_P, rtol=1e-7, user=False, f=rober_ad)
    _assert_matches_rober_fd(g, rober_fd, 1e-6)  # was rtol=1e-6 (see above); g: 10x rtol


def test_rober_gradient_with_respect_to_u0():
    def plain(x0):
        return float(rober_loss(ROBER_P, u0=x0, rtol=1e-11, sensealg=None))

    x0 = np.array([1.0, 1e-6, 0.0])
    g = grad(lambda x: rober_loss(ROBER_P, u0=x, rtol=1e-7))(x0)
    for j in (0, 2):  # y2 lives at 1e-5: differences in it need solves tighter than 1e-12
        e = np.zeros(3)
        e[j] = 1e-4
        np.testing.assert_allclose(g[j], (plain(x0 + e) - plain(x0 - e)) / 2e-4, rtol=1e-5)


def test_rober_sensitivities_conserve_the_total_mass():
    """y1 + y2 + y3 is constant, so 1^T du/du0 = 1^T and 1^T du/dp = 0 at every time."""
    prob = ade.ODEProblem(rober_np, ROBER_U0, (0.0, 100.0), ROBER_P, jac=rober_jac,
                          paramjac=rober_paramjac)
    res = ade.local_sensitivities(prob, "Rodas5P", saveat=ROBER_TS, rtol=1e-7, atol=1e-11)
    np.testing.assert_allclose(res.du_du0.sum(axis=1), np.ones((3, 3)), atol=1e-12)
    scale = np.abs(res.du_dp).max(axis=(0, 1))
    np.testing.assert_allclose(res.du_dp.sum(axis=1) / scale, 0.0, atol=1e-12)


@pytest.mark.parametrize(("alg", "rtol", "check"),
                         [("Rodas5P", 1e-6, 1e-8), ("Rodas4", 1e-6, 1e-6),
                          ("Rosenbrock23", 1e-5, 1e-3)])
def test_stiff_linear_system_against_the_matrix_exponential(alg, rtol, check):
    """u' = A u with eigenvalues -1, -10, -1000 (p = A, matrix-shaped); the sensitivities
    under error control (error_control="all"), so accurate to the tolerance."""
    rng = np.random.default_rng(5)
    Q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    A = Q @ np.diag([-1.0, -10.0, -1000.0]) @ Q.T
    u0 = np.array([1.0, -0.5, 2.0])
    c = np.array([0.3, 1.0, -2.0])
    T = 2.0
    method = ade.sensitivity_method(SENS, error_control="all")

    def loss(P, x0):
        sol = ade.solve(ade.ODEProblem(lambda u, p, t: anp.dot(p, u), x0, (0.0, T), P), alg,
                        saveat=[T], rtol=rtol, atol=rtol * 1e-2, sensealg=method)
        return anp.sum(c * sol.u[-1])

    exact_A, exact_u0 = _expm_truth(A, u0, T, c)
    g_A, g_u0 = grad(loss, argnum=(0, 1))(A, u0)
    np.testing.assert_allclose(g_A, exact_A, rtol=0, atol=check * np.abs(exact_A).max())
    np.testing.assert_allclose(g_u0, exact_u0, rtol=0, atol=check * np.abs(exact_u0).max())


def van_der_pol(u, p, t):
    return anp.stack([u[1], p[0] * (1.0 - u[0] ** 2) * u[1] - u[0] + p[1] * u[0] ** 3])


@pytest.fixture(scope="module")
def van_der_pol_reference():
    prob = ade.ODEProblem(van_der_pol, np.array([2.0, 0.0]), (0.0, 0.5), np.array([10.0, 0.1]))
    return prob, ade.local_sensitivities(prob, "Vern7", saveat=[0.5], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize(("alg", "order"), [("Rodas4", 4), ("Rodas5P", 5)])
def test_rosenbrock_sensitivities_converge_with_the_methods_order(alg, order,
                                                                   van_der_pol_reference):
    """Fixed steps on Van der Pol (mu = 10): the sensitivity error falls like dt**order only
    because the augmented Jacobian includes the second-derivative blocks H (without them the
    observed orders are about 1 for Rodas4 and 2 for Rodas5P)."""
    prob, ref = van_der_pol_reference
    errors = []
    for steps in (10, 20, 40):
        res = ade.local_sensitivities(prob, alg, saveat=[0.5], dt=0.5 / steps, adaptive=False)
        errors.append(max(np.abs(res.du_dp - ref.du_dp).max(),
                          np.abs(res.du_du0 - ref.du_du0).max()))
    observed = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(observed > order - 0.7), observed


def test_mass_matrix_dae_gradients():
    """u1' = -a u1 + u2, 0 = u2 - b u1: u1 = exp((b - a) t), u2 = b u1 (index 1)."""

    def f(u, p, t):
        return anp.stack([-p[0] * u[0] + u[1], u[1] - p[1] * u[0]])

    M = np.diag([1.0, 0.0])
    a, b, T = 1.0, 0.5, 1.0

    def loss(p):
        prob = ade.ODEProblem(f, np.array([1.0, 0.5]), (0.0, T), p, mass_matrix=M)
        sol = ade.solve(prob, "Rodas5P", saveat=[T], rtol=1e-10, atol=1e-12, sensealg=SENS)
        return sol.u[-1, 1]

    u1 = np.exp((b - a) * T)
    np.testing.assert_allclose(grad(loss)(np.array([a, b])), [-b * T * u1, u1 + b * T * u1],
                               rtol=1e-9)


# ----------------------------------------------------------------------------- array_api_strict
def _lv_strict(u, p, t):
    xp = u.__array_namespace__()
    P = xp.asarray(p, dtype=u.dtype)
    return xp.stack([P[0] * u[0] - P[1] * u[0] * u[1], -P[2] * u[1] + P[3] * u[0] * u[1]])


def _lv_strict_jac(u, p, t):
    xp = u.__array_namespace__()
    P = xp.asarray(p, dtype=u.dtype)
    return xp.stack([xp.stack([P[0] - P[1] * u[1], -P[1] * u[0]]),
                     xp.stack([P[3] * u[1], -P[2] + P[3] * u[0]])])


def _lv_strict_paramjac(u, p, t):
    xp = u.__array_namespace__()
    z = xp.zeros_like(u[0])
    return xp.stack([xp.stack([u[0], -u[0] * u[1], z, z]),
                     xp.stack([z, z, -u[1], u[0] * u[1]])])


def _strict_loss(p, u0, alg, backend, user=True):
    derivs = {"jac": _lv_strict_jac, "paramjac": _lv_strict_paramjac} if user else {}
    prob = ade.ODEProblem(_lv_strict, u0, (0.0, 1.0), p, **derivs)
    sol = ade.solve(prob, alg, saveat=[0.5, 1.0], rtol=1e-6, atol=1e-8, sensealg=SENS,
                    backend=backend)
    return anp.sum((sol.u - 1.0) ** 2)


@pytest.mark.parametrize("alg", ["Tsit5", "Rodas5P"])
def test_array_api_strict_with_user_derivatives(alg):
    pytest.importorskip("array_api_strict")
    u0 = np.array([1.0, 0.5])
    g_p, g_u0 = grad(_strict_loss, argnum=(0, 1))(P0, u0, alg, "array_api_strict")
    r_p, r_u0 = grad(_strict_loss, argnum=(0, 1))(P0, u0, alg, "numpy")
    np.testing.assert_allclose(g_p, r_p, rtol=1e-10)
    np.testing.assert_allclose(g_u0, r_u0, rtol=1e-10)
    ref = grad(lambda p: lv_loss_short(p, u0))(P0)
    np.testing.assert_allclose(g_p, ref, rtol=1e-4)


def lv_loss_short(p, u0):
    prob = ade.ODEProblem(lotka_volterra, u0, (0.0, 1.0), p)
    sol = ade.solve(prob, "Vern7", saveat=[0.5, 1.0], rtol=1e-12, atol=1e-14,
                    sensealg="DiscreteAdjoint")
    return anp.sum((sol.u - 1.0) ** 2)


def test_array_api_strict_replays_f():
    """No derivatives given, an array-API f on the strict backend: f is recorded on the host
    and its Jacobian rows replayed with array_api_strict calls (exact, no warning)."""
    pytest.importorskip("array_api_strict")
    u0 = np.array([1.0, 0.5])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ade.DerivativeWarning)
        g = grad(_strict_loss)(P0, u0, "Tsit5", "array_api_strict", False)
    r = grad(_strict_loss)(P0, u0, "Tsit5", "array_api_strict", True)  # user derivatives
    np.testing.assert_allclose(g, r, rtol=1e-10)  # the same exact products, rounding apart


@pytest.mark.slow
def test_array_api_strict_rosenbrock_replays_f():
    pytest.importorskip("array_api_strict")
    u0 = np.array([1.0, 0.5])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ade.DerivativeWarning)
        g = grad(_strict_loss)(P0, u0, "Rodas5P", "array_api_strict", False)
    np.testing.assert_allclose(g, grad(lambda p: lv_loss_short(p, u0))(P0), rtol=1e-5)
