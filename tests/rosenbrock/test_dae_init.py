"""Mass-matrix DAEs: consistent initialisation (structural and SVD splits of M), the errors
when it is impossible, the starting step scaled by M, and a right-hand side that raises at
trial points."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import autodiffeq as ade
from autodiffeq.dae import MassMatrixSplit

from .conftest import ROBER_MASS, rober_dae

ROBER_T1 = 40.0


def _rotation() -> np.ndarray:
    a, b = 0.7, -0.4
    Rz = np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0],
                   [0.0, 0.0, 1.0]])
    Rx = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(b), -math.sin(b)],
                   [0.0, math.sin(b), math.cos(b)]])
    return Rz @ Rx


def test_inconsistent_algebraic_component_is_corrected():
    consistent = ade.solve(ade.ODEProblem(rober_dae, [1.0, 0.0, 0.0], (0.0, ROBER_T1),
                                          mass_matrix=ROBER_MASS), "Rodas5P", rtol=1e-8,
                           atol=1e-10)
    for alg in ("Rodas5P", "Rodas4", "Rosenbrock23", None):
        prob = ade.ODEProblem(rober_dae, [1.0, 0.0, 0.7], (0.0, ROBER_T1),
                              mass_matrix=ROBER_MASS)
        sol = ade.solve(prob, alg, rtol=1e-8, atol=1e-10)
        assert sol.success
        # the differential components are kept, the algebraic one solves y1 + y2 + y3 = 1
        np.testing.assert_allclose(sol.u[0], [1.0, 0.0, 0.0], atol=1e-12)
        tol = 1e-6 if alg == "Rosenbrock23" else 1e-7
        np.testing.assert_allclose(sol.u[-1], consistent.u[-1], rtol=tol, atol=1e-9)


def test_non_diagonal_singular_mass_matrix_uses_the_svd_split():
    """ROBER's DAE in rotated coordinates u = Q v: (Q^T M Q) v' = Q^T f(Q v). The mass matrix
    has no zero row or column, so the split comes from its null spaces."""
    Q = _rotation()
    M = Q.T @ ROBER_MASS @ Q
    split = MassMatrixSplit(M, 3)
    assert not split.structural and split.k == 1
    prob = ade.ODEProblem(lambda v, p, t: Q.T @ rober_dae(Q @ v, p, t),
                          Q.T @ np.array([1.0, 0.0, 0.4]), (0.0, ROBER_T1), mass_matrix=M)
    sol = ade.solve(prob, "Rodas5P", rtol=1e-8, atol=1e-10)
    ref = ade.solve(ade.ODEProblem(rober_dae, [1.0, 0.0, 0.0], (0.0, ROBER_T1),
                                   mass_matrix=ROBER_MASS), "Rodas5P", rtol=1e-8, atol=1e-10)
    assert sol.success
    np.testing.assert_allclose(Q @ sol.u[0], [1.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(Q @ sol.u[-1], ref.u[-1], rtol=1e-7, atol=1e-9)


def test_consistent_u0_is_left_as_given():
    u0 = np.array([1.0, 0.0, 1e-13])  # inconsistent by far less than atol
    sol = ade.solve(ade.ODEProblem(rober_dae, u0, (0.0, 1.0), mass_matrix=ROBER_MASS),
                    "Rodas5P", rtol=1e-6, atol=1e-10)
    # (also a component starting at 1e-13 next to O(1) ones: the difference Jacobian's
    # increment for it must not be relative to 1e-13, or the algebraic row's column is lost)
    assert sol.success
    np.testing.assert_array_equal(sol.u[0], u0)


def test_sparse_mass_matrix_and_user_jacobian_path():
    import scipy.sparse as sp

    def jac(u, p, t):
        y1, y2, y3 = u
        return np.array([[-0.04, 1e4 * y3, 1e4 * y2],
                         [0.04, -6e7 * y2 - 1e4 * y3, -1e4 * y2],
                         [1.0, 1.0, 1.0]])

    prob = ade.ODEProblem(rober_dae, [1.0, 0.0, 2.0], (0.0, 1.0),
                          mass_matrix=sp.csr_matrix(ROBER_MASS), jac=jac)
    assert np.allclose(ade.consistent_initial_state(prob), [1.0, 0.0, 0.0], atol=1e-14)
    sol = ade.solve(prob, "Rodas5P", rtol=1e-6, atol=1e-10)
    assert sol.success and abs(sol.u[0].sum() - 1.0) < 1e-14


def test_index_two_problem_is_refused_with_a_clear_error():
    # 0 = u1 - sin t does not involve the algebraic variable u2: N^T J Z = 0 (index 2)
    prob = ade.ODEProblem(lambda u, p, t: np.array([u[1], u[0] - np.sin(t)]), [0.0, 1.0],
                          (0.0, 1.0), mass_matrix=np.diag([1.0, 0.0]))
    with pytest.raises(ade.InvalidArgument, match="not index 1"):
        ade.solve(prob, "Rodas5P")


@pytest.mark.parametrize("jac", [True, False])
@pytest.mark.parametrize("angle", [0.0, math.atan2(0.8, 0.6), 1.1])
def test_index_two_is_found_whatever_the_form_of_the_mass_matrix(angle, jac):
    """The index-2 problem above in rotated coordinates u = Q v, (Q^T M Q) v' = Q^T f(Q v):
    N^T J Z is zero up to rounding, so the relative test must find it (an exact-zero test
    only caught the diagonal form)."""
    c, s = math.cos(angle), math.sin(angle)
    Q = np.array([[c, -s], [s, c]])
    M = Q.T @ np.diag([1.0, 0.0]) @ Q
    A = np.array([[0.0, 1.0], [1.0, 0.0]])

    def f(v, p, t):
        return Q.T @ (A @ (Q @ v) - np.array([0.0, np.sin(t)]))

    prob = ade.ODEProblem(f, Q.T @ np.array([0.0, 1.0]), (0.0, 1.0), mass_matrix=M,
                          jac=(Q.T @ A @ Q) if jac else None)
    with pytest.raises(ade.InvalidArgument, match="not index 1"):
        ade.solve(prob, "Rodas5P")


def _bad_mass_matrices():
    import scipy.sparse as sp

    return [
        pytest.param(np.diag([1.0, np.nan]), ade.InvalidArgument, id="non-finite"),
        pytest.param(sp.csr_matrix(np.diag([1.0, np.inf])), ade.InvalidArgument,
                     id="sparse-non-finite"),
        pytest.param(np.eye(2) * (1 + 1j), ade.InvalidType, id="complex"),
        pytest.param(lambda u, p, t: np.eye(2), ade.InvalidType, id="callable"),
        pytest.param("identity", ade.InvalidType, id="string"),
    ]


@pytest.mark.parametrize("M, error", _bad_mass_matrices())
def test_mass_matrix_is_validated_when_the_problem_is_made(M, error):
    with pytest.raises(error, match="mass_matrix"):
        ade.ODEProblem(lambda u, p, t: -u, [1.0, 2.0], (0.0, 1.0), mass_matrix=M)


def test_unsolvable_algebraic_equation_is_refused_with_a_clear_error():
    # 0 = u2^2 + 1 has no real solution
    prob = ade.ODEProblem(lambda u, p, t: np.array([-u[0], u[1] ** 2 + 1.0]), [1.0, 0.5],
                          (0.0, 1.0), mass_matrix=np.diag([1.0, 0.0]))
    with pytest.raises(ade.InvalidArgument, match="u0 is not consistent.*did not converge"):
        ade.solve(prob, "Rodas5P")


#: the differentiated solves' tolerances, and the tighter ones of the difference quotients
GRAD_RTOL, GRAD_ATOL = 1e-10, 1e-13
FD_RTOL, FD_ATOL, FD_STEP = 1e-12, 1e-15, 1e-6


def _assert_matches_differences_on_the_manifold(g, loss, u0):
    """``g[:2]`` against central differences of ``loss`` (plain solves at ``FD_RTOL``, which
    correct y3 for the perturbed y1, y2: the derivative along the consistent manifold) at the
    step ``h = FD_STEP``, within a bound on their error: the truncation ``c h^2``, estimated
    from the differences at ``h`` and ``2 h`` as ``|D_2h - D_h| / 3`` (doubled for the
    higher-order terms and the estimate's own noise), plus the noise of two solves each
    within ``eps = FD_RTOL |loss| + FD_ATOL`` (``eps / h``, doubled likewise), plus ``g``'s own
    error (its solve's ``GRAD_RTOL`` relative to the largest sensitivity, 10x for growth).
    The y2 direction is strongly nonlinear (y2' ~ -3e7 y2^2 near y2 = 0), so ``h`` cannot
    be larger; y2 = -h is harmless at this step."""

    def central(h):
        return np.array([(loss(u0 + h * e, FD_RTOL, FD_ATOL) - loss(u0 - h * e, FD_RTOL, FD_ATOL))
                         / (2 * h) for e in np.eye(3)[:2]])

    h = FD_STEP
    fd, fd_2h = central(h), central(2 * h)
    eps = FD_RTOL * abs(loss(u0, FD_RTOL, FD_ATOL)) + FD_ATOL
    bound = 2.0 * (np.abs(fd_2h - fd) / 3.0 + eps / h) + 10 * GRAD_RTOL * np.max(np.abs(g))
    assert np.all(np.abs(g[:2] - fd) <= bound), (g[:2], fd, bound)


@pytest.mark.filterwarnings("ignore::autodiffeq.DerivativeWarning")
def test_differentiated_solve_needs_a_consistent_u0():
    from autograd import grad

    prob = ade.ODEProblem(rober_dae, [1.0, 0.0, 0.3], (0.0, 1.0), mass_matrix=ROBER_MASS)

    def loss(u0, rtol=GRAD_RTOL, atol=GRAD_ATOL):
        return ade.solve(prob.remake(u0=u0), "Rodas5P", rtol=rtol, atol=atol,
                         saveat=[1.0], sensealg="ForwardSensitivity").u[-1, 0]

    with pytest.raises(ade.InvalidArgument, match="consistent_initial_state"):
        grad(loss)(np.array([1.0, 0.0, 0.3]))
    u0 = np.asarray(ade.consistent_initial_state(prob))
    g = grad(loss)(u0)
    # the forward sensitivities' consistent S0 gives the derivative along the manifold; was
    # rtol=1e-4 against differences at h = 1e-7 of rtol-1e-10 solves, whose error bound
    # (1e-10 / 1e-7) is 1e-3 and which another CPU missed by 1.14e-4
    _assert_matches_differences_on_the_manifold(g, loss, u0)


def test_starting_step_is_scaled_by_the_mass_matrix():
    """C u1' = -u1 / R with C = 1e-6, R = 1e3 (time constant 1e-3) and an algebraic u2 = 2 u1:
    f alone is 1e-3, so without M the starting-step estimate took the whole interval."""
    C, R = 1e-6, 1e3
    prob = ade.ODEProblem(lambda u, p, t: np.array([-u[0] / R, u[1] - 2.0 * u[0]]),
                          [1.0, 2.0], (0.0, 0.01), mass_matrix=np.diag([C, 0.0]))
    sol = ade.solve(prob, "Rodas5P", rtol=1e-6, atol=1e-9)
    assert sol.success
    assert sol.t[1] < 1e-3  # the first step resolves the time constant
    tau = R * C
    np.testing.assert_allclose(sol.u[:, 0], np.exp(-sol.t / tau), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(sol.u[:, 1], 2.0 * sol.u[:, 0], rtol=1e-10, atol=1e-12)


def test_f_raising_at_a_trial_point_rejects_the_step():
    """``f`` raises OverflowError (as math.exp does) outside |u| <= 1.05, where only the trial
    stages of the too-large first step go: the step is rejected, as with an inf result, and
    the solve says what happened."""

    def f(u, p, t):
        return np.array([-50.0 * (u[0] - math.cos(t)), u[0] - u[1]])

    def exploding(u, p, t):
        if abs(u[0]) > 1.05 or abs(u[1]) > 1.05:
            math.exp(1000.0)
        return f(u, p, t)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sol = ade.solve(ade.ODEProblem(exploding, [0.0, 0.0], (0.0, 5.0)), "Rodas5P",
                        rtol=1e-6, dt=4.0)
    assert sol.success and sol.stats.nreject >= 1
    messages = [str(w.message) for w in caught if issubclass(w.category, ade.SolverWarning)]
    assert any("OverflowError" in m and "rejected" in m for m in messages)
    ref = ade.solve(ade.ODEProblem(f, [0.0, 0.0], (0.0, 5.0)), "Rodas5P", rtol=1e-8)
    np.testing.assert_allclose(sol.u[-1], ref.u[-1], rtol=1e-5, atol=1e-7)
    with pytest.raises(OverflowError):  # fixed steps cannot retry
        ade.solve(ade.ODEProblem(exploding, [0.0, 0.0], (0.0, 5.0)), "Rodas5P",
                  adaptive=False, dt=4.0)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow at float32 trial stages
def test_consistent_initialisation_on_the_strict_backend_and_in_float32():
    be = ade.registry().get_backend("array_api_strict")
    xp = be.xp

    def rober_strict(u, p, t):
        y1, y2, y3 = u[0], u[1], u[2]
        return xp.stack([-0.04 * y1 + 1e4 * y2 * y3, 0.04 * y1 - 3e7 * y2**2 - 1e4 * y2 * y3,
                         y1 + y2 + y3 - 1.0])

    prob = ade.ODEProblem(rober_strict, xp.asarray([1.0, 0.0, 0.5]), (0.0, 1.0),
                          mass_matrix=ROBER_MASS)
    sol = ade.solve(prob, "Rodas5P", rtol=1e-6, atol=1e-10, backend="array_api_strict")
    assert sol.success and be.is_native(sol.u)
    np.testing.assert_allclose(be.to_host(sol.u[0, ...]), [1.0, 0.0, 0.0], atol=1e-12)
    u32 = np.array([1.0, 0.0, 0.5], dtype=np.float32)
    sol32 = ade.solve(ade.ODEProblem(rober_dae, u32, (0.0, 1.0), mass_matrix=ROBER_MASS),
                      "Rodas5P", rtol=1e-4, atol=1e-7)
    assert sol32.success and sol32.u.dtype == np.float32
    np.testing.assert_allclose(sol32.u[0], [1.0, 0.0, 0.0], atol=1e-7)


def rober_dae_traceable(u, p, t):
    import autograd.numpy as anp

    y1, y2, y3 = u[0], u[1], u[2]
    return anp.stack([-0.04 * y1 + 1e4 * y2 * y3, 0.04 * y1 - 3e7 * y2**2 - 1e4 * y2 * y3,
                      y1 + y2 + y3 - 1.0])


@pytest.mark.parametrize("sensealg", ["ForwardSensitivity", "DiscreteAdjoint", "ReverseMode"])
def test_consistent_initial_state_is_differentiable_in_u0(sensealg):
    """Through the correction the derivative is the projector onto the consistent manifold:
    every method then gives ForwardSensitivity's projected gradient (zero for y3), which
    differences of plain (correcting) solves confirm."""
    from autograd import grad

    prob = ade.ODEProblem(rober_dae_traceable, [1.0, 0.0, 0.3], (0.0, 1.0),
                          mass_matrix=ROBER_MASS)

    def loss(u0, rtol=GRAD_RTOL, atol=GRAD_ATOL):
        u0c = ade.consistent_initial_state(prob.remake(u0=u0))
        return ade.solve(prob.remake(u0=u0c), "Rodas5P", rtol=rtol, atol=atol,
                         saveat=[1.0], sensealg=sensealg).u[-1, 0]

    u0 = np.array([1.0, 0.0, 0.3])
    g = grad(loss)(u0)
    assert g[2] == pytest.approx(0.0, abs=1e-12)
    # was rtol=1e-4 against differences at h = 1e-7 of rtol-1e-10 solves (see above)
    _assert_matches_differences_on_the_manifold(g, loss, u0)


def test_consistent_initial_state_refuses_a_correction_that_depends_on_traced_p():
    from autograd import grad

    def dae(u, p, t):
        import autograd.numpy as anp

        return anp.stack([-u[0], u[1] - p[0] * u[0]])  # algebraic: u2 = p u1

    def loss(p):
        prob = ade.ODEProblem(dae, [1.0, 0.0], (0.0, 1.0), p, mass_matrix=np.diag([1.0, 0.0]))
        return ade.consistent_initial_state(prob)[1]

    with pytest.raises(ade.InvalidType, match="getval"):
        grad(loss)(np.array([2.0]))


@pytest.mark.parametrize("sensealg", ["DiscreteAdjoint", "ReverseMode"])
def test_methods_that_trace_f_refuse_an_untraceable_f_clearly(sensealg):
    from autograd import grad

    prob = ade.ODEProblem(rober_dae, [1.0, 0.0, 0.0], (0.0, 1.0), mass_matrix=ROBER_MASS)

    def loss(u0):
        return ade.solve(prob.remake(u0=u0), "Rodas5P", saveat=[1.0],
                         sensealg=sensealg).u[-1, 0]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ade.UnsupportedCombination, match="autograd.numpy"):
            grad(loss)(np.array([1.0, 0.0, 0.0]))
