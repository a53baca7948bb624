"""Discrete sensitivity methods (ReverseMode, ForwardMode, DiscreteAdjoint) against the
matrix-exponential truth, finite differences and each other."""

from __future__ import annotations

import autograd.numpy as anp
import numpy as np
import pytest
import scipy.linalg
from autograd import grad, jacobian, make_jvp

import autodiffeq as ade

METHODS = ["DiscreteAdjoint", "ReverseMode", "ForwardMode"]


def lotka_volterra(u, p, t):
    return anp.stack([p[0] * u[0] - p[1] * u[0] * u[1], -p[2] * u[1] + p[3] * u[0] * u[1]])


U0 = np.array([1.0, 1.0])
P0 = np.array([1.5, 1.0, 3.0, 1.0])
TS = np.linspace(0.0, 4.0, 9)


def lv_loss(p, u0=U0, sensealg="DiscreteAdjoint", rtol=1e-8, alg="Tsit5"):
    prob = ade.ODEProblem(lotka_volterra, u0, (0.0, 4.0), p)
    sol = ade.solve(prob, alg, saveat=TS, rtol=rtol, atol=rtol * 1e-2, sensealg=sensealg)
    return anp.sum((sol.u - 1.0) ** 2)


def central_fd(fun, x, h=1e-6):
    out = np.zeros(x.size)
    for j in range(x.size):
        e = np.zeros(x.size)
        e[j] = h
        out[j] = (fun(x + e) - fun(x - e)) / (2 * h)
    return out


@pytest.mark.parametrize("method", METHODS)
def test_gradients_agree_with_finite_differences(method):
    g_p = grad(lambda p: lv_loss(p, sensealg=method))(P0)
    g_u0 = grad(lambda u: lv_loss(P0, u, sensealg=method))(U0)
    fd_p = central_fd(lambda p: lv_loss(p, rtol=1e-11), P0)
    fd_u0 = central_fd(lambda u: lv_loss(P0, u, rtol=1e-11), U0)
    # plus the differences' noise: two solves each within ~1e-11 |loss|, over 2h (h = 1e-6);
    # the truncation (~h^2) is negligible
    noise = 1e-11 * abs(lv_loss(P0, rtol=1e-11)) / 1e-6
    np.testing.assert_allclose(g_p, fd_p, rtol=1e-5, atol=noise)
    np.testing.assert_allclose(g_u0, fd_u0, rtol=1e-5, atol=noise)


@pytest.mark.parametrize("alg", ["Tsit5", "Vern7", "DP5", "BS3", "RK4"])
def test_discrete_adjoint_matches_reverse_mode_to_rounding(alg):
    kwargs = {"alg": alg, "rtol": 1e-6}
    if alg == "RK4":
        kwargs = {"alg": alg, "rtol": 1e-6}
        ref = grad(lambda p: _fixed_loss(p, "ReverseMode"))(P0)
        got = grad(lambda p: _fixed_loss(p, "DiscreteAdjoint"))(P0)
    else:
        ref = grad(lambda p: lv_loss(p, sensealg="ReverseMode", **kwargs))(P0)
        got = grad(lambda p: lv_loss(p, sensealg="DiscreteAdjoint", **kwargs))(P0)
    # rounding of sums over the steps is relative to the gradient's largest entry (measured
    # 4e-15 of it; rtol alone came within 3x for the smallest entry)
    np.testing.assert_allclose(got, ref, rtol=1e-11, atol=1e-12 * np.max(np.abs(ref)))


def _fixed_loss(p, sensealg):
    prob = ade.ODEProblem(lotka_volterra, U0, (0.0, 4.0), p)
    sol = ade.solve(prob, "RK4", dt=0.05, adaptive=False, saveat=TS, sensealg=sensealg)
    return anp.sum((sol.u - 1.0) ** 2)


def _linear(p_shape):
    """u' = A(p) u with A = p reshaped to 3x3: exact solution expm(t A) u0."""

    def f(u, p, t):
        return anp.dot(anp.reshape(p, (3, 3)), u)

    return f


def test_matrix_shaped_p_against_matrix_exponential_frechet_derivative():
    rng = np.random.default_rng(3)
    A = rng.normal(size=(3, 3)) * 0.5 - np.eye(3)
    u0 = rng.normal(size=3)
    c = rng.normal(size=3)
    T = 1.3

    def f(u, p, t):
        return anp.dot(p, u)

    def loss(P, sensealg):
        prob = ade.ODEProblem(f, u0, (0.0, T), P)
        sol = ade.solve(prob, "Vern7", saveat=[T], rtol=1e-12, atol=1e-14, sensealg=sensealg)
        return anp.sum(c * sol.u[-1])

    exact = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            E = np.zeros((3, 3))
            E[i, j] = 1.0
            _, dexp = scipy.linalg.expm_frechet(T * A, T * E)
            exact[i, j] = c @ dexp @ u0
    for method in METHODS:
        g = grad(loss)(A, method)
        assert g.shape == (3, 3)
        np.testing.assert_allclose(g, exact, rtol=1e-8, atol=1e-10)


def test_jvp_and_vjp_are_transposes():
    rng = np.random.default_rng(0)
    v_in = rng.normal(size=4)

    def saved(p, sensealg):
        prob = ade.ODEProblem(lotka_volterra, U0, (0.0, 4.0), p)
        return ade.solve(prob, "Tsit5", saveat=TS, rtol=1e-8, sensealg=sensealg).u

    w_out = rng.normal(size=(len(TS), 2))
    _, jv = make_jvp(lambda p: saved(p, "ForwardMode"))(P0)(v_in)
    vj = grad(lambda p: anp.sum(w_out * saved(p, "DiscreteAdjoint")))(P0)
    np.testing.assert_allclose(np.sum(w_out * jv), vj @ v_in, rtol=1e-10)
    J = jacobian(lambda p: saved(p, "ReverseMode"))(P0)
    np.testing.assert_allclose(np.tensordot(J, v_in, axes=1), jv, rtol=1e-9, atol=1e-12)


def test_final_state_loss_and_every_step_outputs():
    def loss(p):
        prob = ade.ODEProblem(lotka_volterra, U0, (0.0, 2.0), p)
        sol = ade.solve(prob, "Tsit5", rtol=1e-10, atol=1e-12, sensealg="DiscreteAdjoint")
        assert len(sol.t) > 5 and sol.t[-1] == 2.0
        return anp.sum(sol.u[-1] ** 2)

    def plain(p):
        sol = ade.solve(ade.ODEProblem(lotka_volterra, U0, (0.0, 2.0), p), "Vern7",
                        rtol=1e-12, atol=1e-14, saveat=[2.0])
        return float(np.sum(sol.u[-1] ** 2))

    np.testing.assert_allclose(grad(loss)(P0), central_fd(plain, P0), rtol=1e-6)


@pytest.mark.parametrize("sensealg", ["DiscreteAdjoint", "ReverseMode", "InterpolatingAdjoint"])
def test_dense_output_of_a_traced_solve_is_a_clear_error(sensealg):
    def loss(p):
        sol = ade.solve(ade.ODEProblem(lotka_volterra, U0, (0.0, 1.0), p), "Tsit5",
                        sensealg=sensealg)
        return anp.sum(sol(0.5))

    with pytest.raises(ade.UnsupportedCombination, match="saveat") as info:
        grad(loss)(P0)
    assert "ForwardSensitivity" in str(info.value)


def test_traced_value_inside_a_parameter_dict():
    """``p = {"k": x}`` built inside the loss (a container holding a traced number): the
    gradient reaches ``x``. Analytic: ``u(1) = u0 exp(-k)``, so ``d sum(u(1))/dk =
    -sum(u0) exp(-k)``."""
    def loss(x):
        prob = ade.ODEProblem(lambda u, p, t: -p["k"] * u, U0, (0.0, 1.0),
                              {"k": x, "name": "decay"})
        sol = ade.solve(prob, "Tsit5", saveat=[1.0], rtol=1e-11, atol=1e-13,
                        sensealg="DiscreteAdjoint")
        return anp.sum(sol.u)

    k = 0.7
    exact = -np.sum(U0) * np.exp(-k)
    assert abs(grad(loss)(k) - exact) <= 1e-8 * abs(exact)


def test_unknown_sensealg_names_the_closest_match():
    with pytest.raises(ade.UnknownName, match="DiscreteAdjoint"):
        grad(lambda p: lv_loss(p, sensealg="DiscretAdjoint"))(P0)


def test_checkpointed_discrete_adjoint_equals_the_stored_one():
    stored = grad(lambda p: lv_loss(p, sensealg="DiscreteAdjoint"))(P0)
    method = ade.sensitivity_method("DiscreteAdjoint", checkpoint_every=4)
    chk = grad(lambda p: lv_loss(p, sensealg=method))(P0)
    # the same discrete gradient; stored (forward) and recomputed stages differ by rounding
    np.testing.assert_allclose(chk, stored, rtol=1e-10)


@pytest.mark.parametrize("alg", ["Tsit5", "Vern7", "Rodas5P"])
def test_memory_stays_bounded_on_a_long_solve(alg, monkeypatch):
    """With a budget of 40 numbers (20 two-component states) a 1000-step solve keeps at most
    20 checkpoints and no per-step arrays, and gives the stored solve's gradient."""
    import autodiffeq_plugins.discrete_sensitivity.methods as dm

    held = {}
    original_forward = dm.DiscreteAdjoint.forward

    def spy(self, request):
        record = original_forward(self, request)
        held["record"] = record
        return record

    def loss(p, sensealg="DiscreteAdjoint"):
        prob = ade.ODEProblem(lotka_volterra, U0, (0.0, 40.0), p)
        sol = ade.solve(prob, alg, saveat=np.linspace(0.0, 40.0, 5), rtol=1e-7, atol=1e-9,
                        sensealg=sensealg)
        return anp.sum((sol.u - 1.0) ** 2)

    stored = grad(loss)(P0)
    monkeypatch.setattr(dm, "MEMORY_BUDGET", 40)
    monkeypatch.setattr(dm.DiscreteAdjoint, "forward", spy)
    bounded = grad(loss)(P0)
    record = held["record"]
    n_steps = len(record.ts) - 1
    assert n_steps > 300
    assert len(record.extra["checkpoints"]) <= 20 and record.extra["every"] >= 16
    assert record.us is None and record.extra["stages"] is None
    np.testing.assert_allclose(bounded, stored, rtol=1e-9)
    if alg != "Rodas5P":  # ReverseMode's tape over 1000 Rosenbrock steps is slow
        np.testing.assert_allclose(bounded, grad(loss)(P0, "ReverseMode"), rtol=1e-9)


def test_default_sensealg_is_forward_for_small_and_adjoint_for_large_problems():
    prob = ade.ODEProblem(lotka_volterra, U0, (0.0, 1.0), P0)
    chosen = {}

    def loss(p, u0):
        sol = ade.solve(prob.remake(p=p, u0=u0), "Tsit5")
        chosen["name"] = sol.sensealg
        return anp.sum(sol.u[-1])

    grad(loss)(P0, U0)
    assert ade.registry().sensitivity(chosen["name"]).mode == "forward"

    def big(u0):
        sol = ade.solve(ade.ODEProblem(lambda u, p, t: -u, u0, (0.0, 1.0)), "Tsit5")
        chosen["name"] = sol.sensealg
        return anp.sum(sol.u[-1])

    g = grad(big)(np.ones(150))
    np.testing.assert_allclose(g, np.exp(-1.0) * np.ones(150), rtol=1e-3)
    assert ade.registry().sensitivity(chosen["name"]).mode == "reverse"


def robertson(u, p, t):
    k1, k2, k3 = p[0], p[1], p[2]
    return anp.stack([
        -k1 * u[0] + k3 * u[1] * u[2],
        k1 * u[0] - k2 * u[1] ** 2 - k3 * u[1] * u[2],
        k2 * u[1] ** 2,
    ])


def test_rosenbrock_discrete_methods_on_rober_against_finite_differences():
    """ROBER's rate constants: the discrete adjoint of Rodas5P (per-step VJPs of the
    exact-Jacobian step) equals ReverseMode to rounding and finite differences of tight
    solves to the tolerance."""
    p0 = np.array([0.04, 3e7, 1e4])
    u0 = np.array([1.0, 0.0, 0.0])
    ts = np.array([0.5, 2.0, 10.0])
    weights = np.array([1.0, 1e4, 1.0])

    def loss(p, sensealg, rtol=1e-7):
        prob = ade.ODEProblem(robertson, u0, (0.0, 10.0), p)
        sol = ade.solve(prob, "Rodas5P", saveat=ts, rtol=rtol, atol=1e-12, sensealg=sensealg)
        return anp.sum(weights * sol.u**2)

    adjoint = grad(loss)(p0, "DiscreteAdjoint") * p0
    reverse = grad(loss)(p0, "ReverseMode") * p0
    np.testing.assert_allclose(adjoint, reverse, rtol=1e-10)
    fd = central_fd(lambda q: loss(q * p0, None, rtol=1e-11), np.ones(3), h=1e-5)
    np.testing.assert_allclose(adjoint, fd, rtol=1e-5)


@pytest.mark.parametrize("method", [None, "DiscreteAdjoint", "InterpolatingAdjoint"])
def test_loss_calling_solve_several_times(method):
    """Two solves on different data inside one loss (nested use), and value_and_grad."""
    from autograd import value_and_grad

    starts = [np.array([1.0, 1.0]), np.array([0.5, 2.0])]

    def loss(p, rtol=1e-9, sensealg=method):
        total = 0.0
        for u0 in starts:
            prob = ade.ODEProblem(lotka_volterra, u0, (0.0, 2.0), p)
            sol = ade.solve(prob, "Tsit5", saveat=[1.0, 2.0], rtol=rtol, atol=rtol * 1e-2,
                            sensealg=sensealg)
            total = total + anp.sum((sol.u - 1.0) ** 2)
        return total

    value, g = value_and_grad(loss)(P0)
    # the traced solve steps onto the save times, the plain one interpolates: same to rtol
    np.testing.assert_allclose(value, loss(P0), rtol=1e-8)
    fd = central_fd(lambda p: loss(p, rtol=1e-12, sensealg=None), P0)
    np.testing.assert_allclose(g, fd, rtol=1e-5)


def test_nan_in_differentiated_p_is_a_clear_error():
    with pytest.raises(ade.InvalidArgument, match="p contains NaN"):
        grad(lambda p: lv_loss(p))(np.array([1.5, np.nan, 3.0, 1.0]))


@pytest.mark.parametrize("sensealg", ["DiscreteAdjoint", "ReverseMode", "ForwardMode"])
def test_mass_matrix_dae_gradients_of_the_discrete_methods(sensealg):
    """u1' = -a u1 + u2, 0 = u2 - b u1 (index 1): u1 = exp((b - a) t), u2 = b u1."""

    def f(u, p, t):
        return anp.stack([-p[0] * u[0] + u[1], u[1] - p[1] * u[0]])

    a, b, T = 1.0, 0.5, 1.0

    def loss(p):
        prob = ade.ODEProblem(f, np.array([1.0, 0.5]), (0.0, T), p,
                              mass_matrix=np.diag([1.0, 0.0]))
        sol = ade.solve(prob, "Rodas5P", saveat=[T], rtol=1e-10, atol=1e-12, sensealg=sensealg)
        return sol.u[-1, 1]

    u1 = np.exp((b - a) * T)
    np.testing.assert_allclose(grad(loss)(np.array([a, b])), [-b * T * u1, u1 + b * T * u1],
                               rtol=1e-9)


def test_continuous_adjoints_declare_no_mass_matrix():
    reg = ade.registry()
    dae = ade.ODEProblem(lambda u, p, t: -u, np.ones(2), (0.0, 1.0),
                         mass_matrix=np.diag([1.0, 0.0]))
    for name in ("BacksolveAdjoint", "InterpolatingAdjoint", "QuadratureAdjoint"):
        assert not reg.sensitivity(name).mass_matrix
        compat = reg.compatible("Rodas5P", "numpy", name, dae)
        assert not compat and "mass-matrix" in compat.reason
        assert "DiscreteAdjoint" in compat.alternatives
    assert reg.compatible("Rodas5P", "numpy", "DiscreteAdjoint", dae)

    # many inputs: sensealg=None picks a reverse method that can take the DAE
    def f(u, p, t):
        return anp.concatenate([-p * u[:-1] + u[-1], anp.stack([u[-1] - 0.5 * u[0]])])

    n = 120
    u0 = np.ones(n + 1)
    u0[-1] = 0.5
    mass = np.diag(np.r_[np.ones(n), 0.0])
    chosen = {}

    def loss(p):
        prob = ade.ODEProblem(f, u0, (0.0, 0.5), p, mass_matrix=mass)
        sol = ade.solve(prob, "Rodas5P", saveat=[0.5], rtol=1e-6)
        chosen["name"] = sol.sensealg
        return anp.sum(sol.u)

    grad(loss)(np.linspace(1.0, 2.0, n))
    assert chosen["name"] == "DiscreteAdjoint"


# ----------------------------------------------------------------------------- misuse
def _decay(p, **kwargs):
    prob = ade.ODEProblem(lambda u, p, t: -p * u, np.array([2.0]), (0.0, 1.0), p)
    return ade.solve(prob, "Tsit5", rtol=1e-10, atol=1e-12, **kwargs)


@pytest.mark.parametrize("sensealg", [None, "DiscreteAdjoint", "ForwardSensitivity",
                                      "InterpolatingAdjoint", "ReverseMode"])
def test_higher_order_derivatives_are_refused_not_zero(sensealg):
    from autograd import hessian

    def value(p):
        return anp.sum(_decay(p, saveat=[1.0], sensealg=sensealg).u)

    np.testing.assert_allclose(grad(value)(np.array([0.7])), [-2 * np.exp(-0.7)], rtol=1e-8)
    with pytest.raises(ade.UnsupportedCombination, match="higher-order"):
        grad(lambda p: grad(value)(p)[0])(np.array([0.7]))
    with pytest.raises(ade.UnsupportedCombination, match="higher-order"):
        hessian(value)(np.array([0.7]))


def test_automatic_choice_falls_back_to_a_forward_method_on_the_same_steps():
    """sensealg=None with > 100 inputs picks an adjoint; make_jvp (without saveat: every
    step an output) and sol(t) then use a forward method on the adjoint's step grid."""
    from autograd import make_jvp

    n = 60
    p = np.linspace(0.1, 1.0, n)

    def states(p):
        prob = ade.ODEProblem(lambda u, p, t: -p * u, np.ones(n), (0.0, 1.0), p)
        return ade.solve(prob, "Tsit5", rtol=1e-8, atol=1e-10)

    sol = states(p)
    _, tangent = make_jvp(lambda q: states(q).u)(p)(np.ones(n))
    assert tangent.shape == (len(sol.t), n)
    exact = -sol.t[:, None] * np.exp(-np.outer(sol.t, p))
    np.testing.assert_allclose(tangent, exact, atol=1e-7)
    g = grad(lambda q: anp.sum(states(q)([0.3, 0.7])))(p)
    np.testing.assert_allclose(g, -(0.3 * np.exp(-0.3 * p) + 0.7 * np.exp(-0.7 * p)),
                               atol=1e-7)


@pytest.mark.parametrize("sensealg", ["DiscreteAdjoint", "ReverseMode", "InterpolatingAdjoint",
                                      "ForwardSensitivity"])
def test_float32_parameters_stay_float32(sensealg):
    def loss(p, u0):
        prob = ade.ODEProblem(lotka_volterra, u0, (0.0, 1.0), p)
        return anp.sum(ade.solve(prob, "Tsit5", saveat=0.5, sensealg=sensealg).u)

    g = grad(loss)(P0.astype(np.float32), np.ones(2, np.float32))
    ref = grad(loss)(P0, np.ones(2))  # the float64 run
    np.testing.assert_allclose(g, ref, rtol=1e-3)


def test_misuse_gives_errors_that_name_the_problem():
    u0 = np.array([1.0, 2.0])
    with pytest.raises(ade.InvalidType, match="other than u0 and p"):
        grad(lambda k: anp.sum(ade.solve(
            ade.ODEProblem(lambda u, p, t: -k * u, u0, (0.0, 1.0)), "Tsit5").u))(0.7)
    with pytest.raises(ade.UnsupportedCombination, match="time span"):
        grad(lambda T: anp.sum(ade.solve(
            ade.ODEProblem(lambda u, p, t: -p * u, u0, (0.0, T), 1.0), "Tsit5").u))(1.0)
    with pytest.raises(ade.UnsupportedCombination, match="save times"):
        grad(lambda T: anp.sum(ade.solve(
            ade.ODEProblem(lambda u, p, t: -p * u, u0, (0.0, 1.0), 1.0), "Tsit5",
            saveat=[T]).u))(0.5)
    with pytest.raises(ade.UnsupportedCombination, match="respect to t"):
        grad(lambda T: anp.sum(ade.solve(
            ade.ODEProblem(lambda u, p, t: -p * u, u0, (0.0, 1.0), 1.0), "Tsit5")(T)))(0.5)
    with pytest.raises(ade.InvalidArgument, match="checkpoint_every"):
        ade.sensitivity_method("DiscreteAdjoint", checkpoint_every=True)
    with pytest.raises(ade.InvalidArgument, match=r"index \(1,\)"):
        grad(lambda p: anp.sum(_decay(p).u))(np.array([1.0, np.nan]))
    assert _decay(np.array([1.0])).sensealg is None


# ----------------------------------------------------------------------------- composites
def _rober(u, p, t):
    return anp.stack([-p[0] * u[0] + p[2] * u[1] * u[2],
                      p[0] * u[0] - p[1] * u[1] ** 2 - p[2] * u[1] * u[2],
                      p[1] * u[1] ** 2])


ROBER_P = np.array([0.04, 3e7, 1e4])
ROBER_W = np.array([[1.0, 1e4, 1.0], [-1.0, 2e4, 3.0], [0.5, -1e4, 2.0]])


def _rober_loss(p, sensealg, alg="AutoTsit5Rodas5P", rtol=1e-8, **kwargs):
    prob = ade.ODEProblem(_rober, np.array([1.0, 0.0, 0.0]), (0.0, 100.0), p)
    sol = ade.solve(prob, alg, saveat=np.array([1.0, 10.0, 100.0]), rtol=rtol,
                    atol=rtol * 1e-4, sensealg=sensealg, **kwargs)
    return anp.sum(ROBER_W * sol.u)


@pytest.fixture(scope="module")
def rober_tight_gradient():
    return grad(_rober_loss)(ROBER_P, "DiscreteAdjoint", "Rodas5P", 1e-10)


@pytest.mark.parametrize("budget", [None, 60])
def test_discrete_adjoint_through_the_stiffness_switching_composite(
    budget, monkeypatch, rober_tight_gradient
):
    """AutoTsit5Rodas5P on ROBER switches to Rodas5P: each step is transposed by the
    component that made it (also when recomputed from checkpoints), giving the exact
    discrete gradient that ForwardSensitivity (state) computes forwards, and the gradient
    of the continuous solution to the tolerance."""
    import autodiffeq_plugins.discrete_sensitivity.methods as dm

    if budget is not None:
        monkeypatch.setattr(dm, "MEMORY_BUDGET", budget)
    g = grad(_rober_loss)(ROBER_P, "DiscreteAdjoint")
    fs = grad(_rober_loss)(ROBER_P, "ForwardSensitivity")
    np.testing.assert_allclose(g, fs, rtol=1e-7)
    np.testing.assert_allclose(g, rober_tight_gradient, rtol=1e-5)


def test_composites_are_differentiated_through_their_components():
    reg = ade.registry()
    prob = ade.ODEProblem(_rober, np.array([1.0, 0.0, 0.0]), (0.0, 1.0), ROBER_P)
    # a composite is supported when every component's family is (no solver is named)
    for method in ("DiscreteAdjoint", "ReverseMode", "ForwardMode"):
        assert reg.compatible("AutoTsit5Rodas5P", "numpy", method, prob)
    # Rosenbrock steps are traced by autograd, which the strict backend does not offer
    assert not reg.compatible("AutoTsit5Rodas5P", "array_api_strict", "DiscreteAdjoint", prob)

    # many inputs and the default solver: sensealg=None now picks DiscreteAdjoint
    n = 110
    chosen = {}

    def loss(p):
        sol = ade.solve(ade.ODEProblem(lambda u, p, t: -p * u, np.ones(n), (0.0, 1.0), p),
                        saveat=[1.0], rtol=1e-8, atol=1e-10)
        chosen["alg"], chosen["sensealg"] = sol.alg.name, sol.sensealg
        return anp.sum(sol.u)

    p = np.linspace(0.5, 1.5, n)
    np.testing.assert_allclose(grad(loss)(p), -np.exp(-p), rtol=1e-5)
    assert chosen == {"alg": "AutoVern7Rodas5P", "sensealg": "DiscreteAdjoint"}  # rtol < 1e-7


@pytest.mark.parametrize("container", [list, tuple])
@pytest.mark.parametrize("sensealg", [None, "DiscreteAdjoint"])
def test_gradient_comes_back_in_the_container_of_p(container, sensealg):
    def f(u, p, t):
        return anp.stack([-p[0] * u[0], -p[1] * u[1]])

    def loss(p):
        prob = ade.ODEProblem(f, np.ones(2), (0.0, 1.0), p)
        return anp.sum(ade.solve(prob, "Tsit5", saveat=[1.0], rtol=1e-10, atol=1e-12,
                                 sensealg=sensealg).u)

    g = grad(loss)(container([0.5, 1.0]))
    assert type(g) is container
    np.testing.assert_allclose(g, [-np.exp(-0.5), -np.exp(-1.0)], rtol=1e-8)
