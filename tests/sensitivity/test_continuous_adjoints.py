"""Continuous adjoints (BacksolveAdjoint, InterpolatingAdjoint, QuadratureAdjoint) against
mathematical truth: the matrix exponential and its Fréchet derivative for ``u' = A u``, central
finite differences of tightly solved problems (ROBER with Rodas5P) and the exact discrete
gradient (DiscreteAdjoint) on explicit solvers. Continuous adjoints are accurate to the
tolerances, so the comparisons are relative errors of the size the tolerances allow."""

from __future__ import annotations

import functools
import warnings

import autograd.numpy as anp
import numpy as np
import pytest
import scipy.linalg
from autograd import grad

import autodiffeq as ade
from autodiffeq.sensitivity import GradientRequest

ADJOINTS = ["BacksolveAdjoint", "InterpolatingAdjoint", "QuadratureAdjoint"]
STIFF_ADJOINTS = ["InterpolatingAdjoint", "QuadratureAdjoint"]


def rel_err(got, ref):
    return float(np.max(np.abs(np.asarray(got) - ref)) / np.max(np.abs(ref)))


# --------------------------------------------------------------------------- Lotka-Volterra
def lotka_volterra(u, p, t):
    return anp.stack([p[0] * u[0] - p[1] * u[0] * u[1], -p[2] * u[1] + p[3] * u[0] * u[1]])


U0 = np.array([1.0, 1.0])
P0 = np.array([1.5, 1.0, 3.0, 1.0])
TS = np.linspace(0.0, 4.0, 9)


def lv_loss(p, u0=U0, sensealg="DiscreteAdjoint", rtol=1e-8, alg="Tsit5", saveat=TS):
    prob = ade.ODEProblem(lotka_volterra, u0, (0.0, 4.0), p)
    sol = ade.solve(prob, alg, saveat=saveat, rtol=rtol, atol=rtol * 1e-2, sensealg=sensealg)
    return anp.sum((sol.u - 1.0) ** 2)


@functools.cache
def lv_reference():
    """The exact discrete gradient of a tightly solved problem: the truth to about 1e-10."""
    g_p = grad(lambda p: lv_loss(p, rtol=1e-12, alg="Vern7"))(P0)
    g_u0 = grad(lambda u: lv_loss(P0, u, rtol=1e-12, alg="Vern7"))(U0)
    return g_p, g_u0


@pytest.mark.parametrize("method", ADJOINTS)
@pytest.mark.parametrize("alg", ["Tsit5", "Vern7"])
def test_saveat_loss_gradients_agree_with_the_exact_gradient(method, alg):
    ref_p, ref_u0 = lv_reference()
    g_p = grad(lambda p: lv_loss(p, sensealg=method, alg=alg))(P0)
    g_u0 = grad(lambda u: lv_loss(P0, u, sensealg=method, alg=alg))(U0)
    # rtol = 1e-8: the forward solution (and the discrete gradient) are good to ~1e-6 here
    assert rel_err(g_p, ref_p) < 1e-5
    assert rel_err(g_u0, ref_u0) < 1e-5
    disc = grad(lambda p: lv_loss(p, sensealg="DiscreteAdjoint", alg=alg))(P0)
    assert rel_err(g_p, disc) < 1e-5


@pytest.mark.parametrize("method", ADJOINTS)
def test_final_state_loss_with_every_step_saved(method):
    def loss(p, sensealg, rtol):
        prob = ade.ODEProblem(lotka_volterra, U0, (0.0, 2.0), p)
        sol = ade.solve(prob, "Tsit5", rtol=rtol, atol=rtol * 1e-2, sensealg=sensealg)
        return anp.sum(sol.u[-1] ** 2)

    ref = grad(loss)(P0, "DiscreteAdjoint", 1e-12)
    assert rel_err(grad(loss)(P0, method, 1e-9), ref) < 1e-6


# --------------------------------------------------------------------------- linear truth
def linear_truth(A, u0, times, C):
    """``L = sum_i C[i] . u(t_i)`` for ``u' = A u``: ``(L, dL/dA, dL/du0)`` from the matrix
    exponential and its Fréchet derivative (``d expm(tA)[tE] = expm_frechet(tA, tE)``)."""
    n = len(u0)
    L, dA, du0 = 0.0, np.zeros((n, n)), np.zeros(n)
    for t, c in zip(times, C):
        Et = scipy.linalg.expm(t * A)
        L += c @ Et @ u0
        du0 += Et.T @ c
        for i in range(n):
            for j in range(n):
                E = np.zeros((n, n))
                E[i, j] = 1.0
                dA[i, j] += c @ scipy.linalg.expm_frechet(t * A, t * E)[1] @ u0
    return L, dA, du0


RNG = np.random.default_rng(7)
A0 = RNG.normal(size=(3, 3)) * 0.5 - np.eye(3)
V0 = RNG.normal(size=3)
LIN_TS = np.array([0.0, 0.4, 0.9, 1.3])
LIN_C = RNG.normal(size=(len(LIN_TS), 3))


def linear_f(u, p, t):
    return anp.dot(p, u)


def linear_loss(A, u0, sensealg, rtol=1e-10, alg="Vern7", tspan=(0.0, 1.3), saveat=LIN_TS):
    prob = ade.ODEProblem(linear_f, u0, tspan, A)
    sol = ade.solve(prob, alg, saveat=saveat, rtol=rtol, atol=rtol * 1e-2, sensealg=sensealg)
    return anp.sum(LIN_C * sol.u)


@pytest.mark.parametrize("method", ADJOINTS)
def test_matrix_shaped_p_and_u0_against_the_matrix_exponential(method):
    # saved times include t0 (a jump at the very end of the backward pass)
    _, dA, du0 = linear_truth(A0, V0, LIN_TS, LIN_C)
    gA, gu = grad(linear_loss, (0, 1))(A0, V0, method)
    assert gA.shape == (3, 3)
    assert rel_err(gA, dA) < 1e-7
    assert rel_err(gu, du0) < 1e-7


@pytest.mark.parametrize("method", ADJOINTS)
def test_backwards_tspan(method):
    """t1 < t0: u(t) = expm((t - t0) A) u0 for t running down from t0 = 1.3 to 0."""
    times = 1.3 - LIN_TS  # 1.3, 0.9, 0.4, 0.0: monotone in the direction of integration
    _, dA, du0 = linear_truth(A0, V0, times - 1.3, LIN_C)
    gA, gu = grad(linear_loss, (0, 1))(A0, V0, method, tspan=(1.3, 0.0), saveat=times)
    assert rel_err(gA, dA) < 1e-7
    assert rel_err(gu, du0) < 1e-7


@pytest.mark.parametrize("method", ADJOINTS)
def test_gradient_error_shrinks_with_the_adjoint_tolerances(method):
    """Forward solved tightly; only the adjoint tolerances vary: the error follows them
    (Tsit5: about a factor 5 per decade of tolerance)."""
    _, dA, _ = linear_truth(A0, V0, LIN_TS, LIN_C)
    errors = []
    for tol in (1e-4, 1e-6, 1e-8):
        sens = ade.sensitivity_method(method, reltol=tol, abstol=tol * 1e-2)
        errors.append(rel_err(grad(linear_loss)(A0, V0, sens, rtol=1e-12, alg="Tsit5"), dA))
    assert errors[0] < 1e-6
    assert errors[1] < 0.2 * errors[0]
    assert errors[2] < 0.2 * errors[1]


def test_fixed_step_solves_use_fixed_backward_steps():
    def loss(A, sensealg):
        prob = ade.ODEProblem(linear_f, V0, (0.0, 1.3), A)
        sol = ade.solve(prob, "RK4", adaptive=False, dt=0.01, saveat=LIN_TS, sensealg=sensealg)
        return anp.sum(LIN_C * sol.u)

    _, dA, _ = linear_truth(A0, V0, LIN_TS, LIN_C)
    for method in ADJOINTS:
        assert rel_err(grad(loss)(A0, method), dA) < 1e-7  # O(dt^4)


# --------------------------------------------------------------------------- options
def test_checkpointing_gives_the_same_gradient():
    stored = grad(lambda p: lv_loss(p, sensealg="InterpolatingAdjoint"))(P0)
    sens = ade.sensitivity_method("InterpolatingAdjoint", checkpointing=True)
    chk = grad(lambda p: lv_loss(p, sensealg=sens))(P0)
    # the stretches are re-solved onto the forward steps: the same interpolant
    np.testing.assert_allclose(chk, stored, rtol=1e-12)


def test_checkpointed_record_keeps_only_checkpoint_states():
    reg = ade.registry()
    prob = ade.ODEProblem(lotka_volterra, U0, (0.0, 4.0), P0)
    request = GradientRequest(prob, reg.solver("Tsit5"), reg.get_backend("numpy"), reg,
                              {"rtol": 1e-8, "atol": 1e-10, "alg_options": {}}, TS)
    full = ade.sensitivity_method("InterpolatingAdjoint").forward(request)
    method = ade.sensitivity_method("InterpolatingAdjoint", checkpointing=True)
    chk = method.forward(request)
    n_steps = len(full.ts) - 1
    assert len(chk.ts) < len(full.ts) / 3
    assert np.all(np.isin(TS, chk.ts))
    np.testing.assert_array_equal(np.asarray(chk.u_saved), np.asarray(full.u_saved))
    g = np.ones((len(TS), 2))
    a = method.vjp(request, chk, g)
    b = ade.sensitivity_method("InterpolatingAdjoint").vjp(request, full, g)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-12)
    traj = chk.extra["trajectory"]
    assert traj.resolves <= len(chk.ts) + 4  # each stretch about once
    assert n_steps > 40


def test_backsolve_resets_u_at_about_sqrt_n_saved_steps():
    """Every step saved, a loss on the last state: u is reset at O(sqrt(N)) of them."""
    reg = ade.registry()
    prob = ade.ODEProblem(lotka_volterra, U0, (0.0, 4.0), P0)
    request = GradientRequest(prob, reg.solver("Tsit5"), reg.get_backend("numpy"), reg,
                              {"rtol": 1e-8, "atol": 1e-10, "alg_options": {}}, None)
    method = ade.sensitivity_method("BacksolveAdjoint")
    record = method.forward(request)
    n_steps = len(record.ts) - 1
    G = np.zeros((len(record.ts), 2))
    G[-1] = 1.0
    stops = method.stop_rows(record, G)
    assert stops[0] == n_steps
    assert len(stops) <= 2 * np.sqrt(n_steps) + 2
    assert np.all(np.diff(stops[::-1])[:-1] >= np.ceil(np.sqrt(n_steps)))
    plain = ade.sensitivity_method("BacksolveAdjoint", checkpointing=False)
    assert list(plain.stop_rows(record, G)) == [n_steps]


def test_backsolve_without_checkpointing():
    ref_p, _ = lv_reference()
    sens = ade.sensitivity_method("BacksolveAdjoint", checkpointing=False)
    assert rel_err(grad(lambda p: lv_loss(p, sensealg=sens))(P0), ref_p) < 1e-5


@pytest.mark.parametrize("method", ADJOINTS)
def test_finite_difference_vjps(method):
    ref_p, _ = lv_reference()
    sens = ade.sensitivity_method(method, autojacvec="fd")
    assert rel_err(grad(lambda p: lv_loss(p, sensealg=sens))(P0), ref_p) < 1e-5


def test_options_are_validated():
    with pytest.raises(ade.InvalidArgument, match="autojacvec"):
        ade.sensitivity_method("InterpolatingAdjoint", autojacvec="magic")
    with pytest.raises(ade.InvalidArgument, match="unknown option"):
        ade.sensitivity_method("QuadratureAdjoint", checkpointing=True)
    with pytest.raises(ade.InvalidArgument, match="reltol"):
        ade.sensitivity_method("BacksolveAdjoint", reltol=-1.0)
    with pytest.raises(ade.InvalidType, match="checkpointing"):
        ade.sensitivity_method("InterpolatingAdjoint", checkpointing="yes")


def test_capabilities_are_declared():
    reg = ade.registry()
    back = reg.sensitivity("BacksolveAdjoint")
    interp = reg.sensitivity("InterpolatingAdjoint")
    quad = reg.sensitivity("QuadratureAdjoint")
    for spec in (back, interp, quad):
        assert spec.mode == "reverse"
        assert spec.solver_families is None and spec.backends is None
    assert not back.stiff and interp.stiff and quad.stiff
    assert (interp.default_priority, quad.default_priority) == (8, 6)
    assert "checkpointing" in interp.options and "reltol" in quad.options


# --------------------------------------------------------------------------- stiff: ROBER
ROBER_P = np.array([0.04, 3e7, 1e4])
ROBER_U0 = np.array([1.0, 0.0, 0.0])
ROBER_TS = np.array([0.5, 2.0, 10.0])
ROBER_W = np.array([[1.0, 1e4, 1.0], [2.0, 2e4, 2.0], [3.0, 3e4, 3.0]])


def rober(u, p, t):
    y1, y2, y3 = u[0], u[1], u[2]
    return anp.stack([
        -p[0] * y1 + p[2] * y2 * y3,
        p[0] * y1 - p[1] * y2 * y2 - p[2] * y2 * y3,
        p[1] * y2 * y2,
    ])


def rober_jac(u, p, t):
    y1, y2, y3 = u
    return np.array([
        [-p[0], p[2] * y3, p[2] * y2],
        [p[0], -2 * p[1] * y2 - p[2] * y3, -p[2] * y2],
        [0.0, 2 * p[1] * y2, 0.0],
    ])


def rober_paramjac(u, p, t):
    y1, y2, y3 = u
    return np.array([[-y1, 0.0, y2 * y3], [y1, -y2 * y2, -y2 * y3], [0.0, y2 * y2, 0.0]])


def rober_loss(p, sensealg=None, rtol=1e-6, alg="Rodas5P", derivatives=True):
    kw = {"jac": rober_jac, "paramjac": rober_paramjac} if derivatives else {}
    prob = ade.ODEProblem(rober, ROBER_U0, (0.0, 10.0), p, **kw)
    sol = ade.solve(prob, alg, saveat=ROBER_TS, rtol=rtol, atol=rtol * 1e-4, sensealg=sensealg)
    return anp.sum(ROBER_W * sol.u)


@functools.cache
def rober_fd():
    """Central differences (relative step 1e-4) of the loss solved with rtol = 1e-11."""
    out = np.zeros(3)
    for j in range(3):
        h = 1e-4 * ROBER_P[j]
        e = np.zeros(3)
        e[j] = h
        out[j] = (rober_loss(ROBER_P + e, rtol=1e-11) - rober_loss(ROBER_P - e, rtol=1e-11)) / (
            2 * h
        )
    return out


@pytest.mark.parametrize("method", STIFF_ADJOINTS)
def test_rober_rate_constants_with_rodas5p_against_finite_differences(method):
    g = grad(rober_loss)(ROBER_P, method)
    assert rel_err(g, rober_fd()) < 1e-5
    for j in range(3):  # each component, however small (dL/dk2 ~ 1e-8)
        assert abs(g[j] - rober_fd()[j]) < 1e-4 * abs(rober_fd()[j])


@pytest.mark.slow
@pytest.mark.parametrize("method", STIFF_ADJOINTS)
@pytest.mark.parametrize(
    ("alg", "user_derivatives", "tol"),
    [
        ("Rodas5P", False, 1e-5),  # autograd vector-Jacobian products and Jacobians
        ("Rodas4", True, 1e-5),
        ("Rosenbrock23", True, 1e-3),  # order 2, dense order 2: QuadratureAdjoint ~6e-5
        ("AutoTsit5Rodas5P", False, 1e-5),
    ],
)
def test_rober_other_stiff_solvers(method, alg, user_derivatives, tol):
    g = grad(rober_loss)(ROBER_P, method, 1e-6, alg, user_derivatives)
    assert rel_err(g, rober_fd()) < tol


def test_rober_checkpointing_with_rodas5p():
    stored = grad(rober_loss)(ROBER_P, "InterpolatingAdjoint")
    sens = ade.sensitivity_method("InterpolatingAdjoint", checkpointing=True)
    np.testing.assert_allclose(grad(rober_loss)(ROBER_P, sens), stored, rtol=1e-10)


def test_checkpointing_with_a_stiffness_switching_solver():
    """A composite's replayed steps may switch differently; the stretches are then re-solved
    adaptively, and the gradient agrees to the tolerances."""
    stored = grad(rober_loss)(ROBER_P, "InterpolatingAdjoint", 1e-6, "AutoTsit5Rodas5P")
    sens = ade.sensitivity_method("InterpolatingAdjoint", checkpointing=True)
    chk = grad(rober_loss)(ROBER_P, sens, 1e-6, "AutoTsit5Rodas5P")
    assert rel_err(chk, stored) < 1e-6
    assert rel_err(chk, rober_fd()) < 1e-5


def test_backsolve_is_rejected_for_stiff_solvers():
    with pytest.raises(ade.UnsupportedCombination, match="stiff"):
        grad(rober_loss)(ROBER_P, "BacksolveAdjoint")
    assert not ade.registry().compatible("Rodas5P", "numpy", "BacksolveAdjoint")
    assert not ade.registry().compatible("AutoTsit5Rodas5P", "numpy", "BacksolveAdjoint")


def test_mass_matrix_problems_are_declared_unsupported():
    def loss(p):
        prob = ade.ODEProblem(rober, ROBER_U0, (0.0, 1.0), p, mass_matrix=np.eye(3))
        return anp.sum(ade.solve(prob, "Rodas5P", sensealg="InterpolatingAdjoint").u)

    with pytest.raises(ade.UnsupportedCombination, match="mass-matrix"):
        grad(loss)(ROBER_P)


def test_default_reverse_choice_for_rosenbrock_is_an_adjoint():
    reg = ade.registry()
    chosen = {}

    def loss(u0):
        prob = ade.ODEProblem(lambda u, p, t: -u, u0, (0.0, 1.0))
        sol = ade.solve(prob, "Rodas5P", rtol=1e-8, atol=1e-10)
        chosen["name"] = sol.sensealg
        return anp.sum(sol.u[-1])

    g = grad(loss)(np.ones(120))
    np.testing.assert_allclose(g, np.exp(-1.0), rtol=1e-6)
    spec = reg.solver("Rodas5P")
    usable = [s for s in reg.sensitivities()
              if s.mode == "reverse" and reg.compatible(spec, "numpy", s)]
    assert chosen["name"] == max(usable, key=lambda s: s.default_priority).name
    if not reg.compatible(spec, "numpy", "DiscreteAdjoint"):
        assert chosen["name"] == "InterpolatingAdjoint"


# --------------------------------------------------------------------------- array API
def strict_rober(u, p, t):
    xp = u.__array_namespace__()
    k = xp.asarray(p, dtype=u.dtype)
    y1, y2, y3 = u[0], u[1], u[2]
    return xp.stack([
        -k[0] * y1 + k[2] * y2 * y3,
        k[0] * y1 - k[1] * y2 * y2 - k[2] * y2 * y3,
        k[1] * y2 * y2,
    ])


def strict_jac(u, p, t):
    xp = u.__array_namespace__()
    return xp.asarray(rober_jac(np.from_dlpack(u), np.asarray(p), t))


def strict_paramjac(u, p, t):
    xp = u.__array_namespace__()
    return xp.asarray(rober_paramjac(np.from_dlpack(u), np.asarray(p), t))


@pytest.mark.parametrize("method", STIFF_ADJOINTS)
def test_array_api_strict_with_user_derivatives(method):
    pytest.importorskip("array_api_strict")

    def loss(p, u0):
        prob = ade.ODEProblem(strict_rober, u0, (0.0, 10.0), p, jac=strict_jac,
                              paramjac=strict_paramjac)
        sol = ade.solve(prob, "Rodas5P", saveat=ROBER_TS, rtol=1e-6, atol=1e-10,
                        sensealg=method, backend="array_api_strict")
        return anp.sum(ROBER_W * sol.u)

    g_p, g_u0 = grad(loss, (0, 1))(ROBER_P, ROBER_U0)
    assert rel_err(g_p, rober_fd()) < 1e-5
    # the same computation on NumPy (rounding differs, so the adaptive steps may too)
    np_p, np_u0 = grad(_rober_p_u0_loss, (0, 1))(ROBER_P, ROBER_U0, method)
    assert rel_err(g_p, np_p) < 1e-6
    assert rel_err(g_u0, np_u0) < 1e-6


def _rober_p_u0_loss(p, u0, method):
    prob = ade.ODEProblem(rober, u0, (0.0, 10.0), p, jac=rober_jac, paramjac=rober_paramjac)
    sol = ade.solve(prob, "Rodas5P", saveat=ROBER_TS, rtol=1e-6, atol=1e-10, sensealg=method)
    return anp.sum(ROBER_W * sol.u)


@pytest.mark.parametrize("method", ADJOINTS)
def test_array_api_strict_explicit_solver_replays_f(method):
    """An array-API ``f`` on the strict backend: recorded once on the host through
    autograd's namespace and replayed with array_api_strict calls (exact products, no
    DerivativeWarning)."""
    pytest.importorskip("array_api_strict")

    def f(u, p, t):
        xp = u.__array_namespace__()
        A = xp.reshape(xp.asarray(p, dtype=u.dtype), (3, 3))
        return A @ u

    def loss(A, u0):
        prob = ade.ODEProblem(f, u0, (0.0, 1.3), A)
        sol = ade.solve(prob, "Tsit5", saveat=LIN_TS, rtol=1e-10, atol=1e-12,
                        sensealg=method, backend="array_api_strict")
        return anp.sum(LIN_C * sol.u)

    _, dA, du0 = linear_truth(A0, V0, LIN_TS, LIN_C)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ade.DerivativeWarning)
        gA, gu = grad(loss, (0, 1))(A0, V0)
    assert rel_err(gA, dA) < 1e-7  # exact products; the solves are good to ~1e-9
    assert rel_err(gu, du0) < 1e-7


@pytest.mark.parametrize("method", ["InterpolatingAdjoint", "DiscreteAdjoint"])
def test_array_api_strict_unreplayable_f_falls_back_to_differences(method):
    """An operation without an array-API replay rule (``maximum``): ``"auto"`` falls back
    to finite differences with a warning; ``autojacvec="autograd"`` names the operation."""
    pytest.importorskip("array_api_strict")

    def f(u, p, t):
        xp = u.__array_namespace__()
        A = xp.reshape(xp.asarray(p, dtype=u.dtype), (3, 3))
        return A @ u + 0.0 * xp.maximum(u, -1e3)

    def loss(A, u0, sensealg):
        prob = ade.ODEProblem(f, u0, (0.0, 1.3), A)
        sol = ade.solve(prob, "Tsit5", saveat=LIN_TS, rtol=1e-10, atol=1e-12,
                        sensealg=sensealg, backend="array_api_strict")
        return anp.sum(LIN_C * sol.u)

    _, dA, _ = linear_truth(A0, V0, LIN_TS, LIN_C)
    with pytest.warns(ade.DerivativeWarning):
        gA = grad(loss)(A0, V0, method)
    assert rel_err(gA, dA) < 1e-6  # finite-difference products: ~1e-8 each
    forced = ade.sensitivity_method(method, autojacvec="autograd")
    with pytest.raises(ade.UnsupportedCombination, match="maximum"):
        grad(loss)(A0, V0, forced)
