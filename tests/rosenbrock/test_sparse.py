"""Sparse and dense Jacobian paths, Jacobian modes (user, autograd, finite differences)
giving the same solutions, ``tgrad``, autonomy detection, and the dense fallback on a backend
without capability "sparse", through the public API (``ade.solve``, the spec's factory and the
stepper's documented properties). The Jacobian sources themselves are unit-tested in
``test_jacobian_internals.py``.

Truth: SciPy ``solve_ivp`` Radau at rtol 1e-10 with the analytic Jacobian, the analytic
Jacobian itself, and closed-form solutions.
"""

from __future__ import annotations

import math

import autograd.numpy as anp
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.integrate import solve_ivp

import autodiffeq as ade
from autodiffeq.derivatives import color_columns
from autodiffeq.stepper import RHS

from .conftest import scaled_error

# ------------------------------------------------------------------------------------------
# A 2-D diffusion-reaction system (Brusselator kinetics) on an N x N periodic grid:
#     u_t = D lap u + A + u^2 v - (B + 1) u,    v_t = D lap v + B u - u^2 v
# state [u.ravel(), v.ravel()], 5-point Laplacian with spacing 1/N.
N = 8
NN = N * N
A_, B_, D_ = 1.0, 3.0, 0.02


def _laplacian(n: int) -> sp.csr_matrix:
    one = sp.lil_matrix((n, n))
    for i in range(n):
        one[i, i] = -2.0
        one[i, (i + 1) % n] = 1.0
        one[i, (i - 1) % n] = 1.0
    eye = sp.identity(n, format="csr")
    return ((sp.kron(one.tocsr(), eye) + sp.kron(eye, one.tocsr())) * n * n).tocsr()


LAP = _laplacian(N)
LAP_DENSE = LAP.toarray()
XS = (np.arange(N) + 0.5) / N
X, Y = np.meshgrid(XS, XS, indexing="ij")
U0 = np.concatenate([(1.0 + 0.5 * np.sin(2 * np.pi * X) * np.cos(2 * np.pi * Y)).ravel(),
                     (3.0 + 0.2 * np.cos(2 * np.pi * X)).ravel()])
T1 = 1.0


def rd(w, p, t):
    u, v = w[:NN], w[NN:]
    uuv = u * u * v
    return np.concatenate([D_ * (LAP @ u) + A_ + uuv - (B_ + 1.0) * u,
                           D_ * (LAP @ v) + B_ * u - uuv])


def rd_autograd(w, p, t):
    """The same right-hand side, traceable by autograd (dense Laplacian product)."""
    u, v = w[:NN], w[NN:]
    uuv = u * u * v
    return anp.concatenate([D_ * anp.dot(LAP_DENSE, u) + A_ + uuv - (B_ + 1.0) * u,
                            D_ * anp.dot(LAP_DENSE, v) + B_ * u - uuv])


def rd_jac_sparse(w, p, t):
    u, v = w[:NN], w[NN:]
    L = D_ * LAP
    return sp.bmat([[L + sp.diags(2 * u * v - (B_ + 1.0)), sp.diags(u * u)],
                    [sp.diags(B_ - 2 * u * v), L - sp.diags(u * u)]], format="csc")


def rd_jac_dense(w, p, t):
    return rd_jac_sparse(w, p, t).toarray()


PATTERN = (abs(rd_jac_sparse(U0 + 1.0, None, 0.0)) > 0).astype(float).tocsc()


@pytest.fixture(scope="module")
def rd_ref():
    """SciPy Radau, rtol 1e-10, analytic sparse Jacobian."""
    sol = solve_ivp(lambda t, w: rd(w, None, t), (0.0, T1), U0, method="Radau", rtol=1e-10,
                    atol=1e-12, jac=lambda t, w: rd_jac_sparse(w, None, t))
    assert sol.success
    return sol.y[:, -1]


def _stepper(prob, alg="Rodas5P", backend="numpy", **options):
    reg = ade.registry()
    be = reg.get_backend(backend)
    u0 = be.asarray(prob.u0)
    rhs = RHS(prob.f, prob.p, prob.shape, u0.dtype, be, prob)
    return reg.solver(alg).factory(rhs, be, **options), be, rhs


# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alg", ["Rosenbrock23", "Rodas4", "Rodas5P"])
def test_sparse_and_dense_paths_agree_on_a_2d_diffusion_reaction_problem(alg, rd_ref):
    rtol, atol = 1e-7, 1e-9
    runs = {
        "sparse_fd": ade.ODEProblem(rd, U0, (0.0, T1), jac_prototype=PATTERN),
        "dense_fd": ade.ODEProblem(rd, U0, (0.0, T1)),
        "user_sparse": ade.ODEProblem(rd, U0, (0.0, T1), jac=rd_jac_sparse),
        "user_dense": ade.ODEProblem(rd, U0, (0.0, T1), jac=rd_jac_dense),
    }
    sols = {k: ade.solve(prob, alg, rtol=rtol, atol=atol) for k, prob in runs.items()}
    bound = 100.0 if alg == "Rosenbrock23" else 3.0  # second order: error / tol grows
    for key, sol in sols.items():
        assert sol.success, key
        assert scaled_error(sol.u[-1], rd_ref, rtol, atol) < bound, key
    # the same method with J exact vs exact-in-sparse-storage: the same numbers to rounding
    np.testing.assert_allclose(sols["user_sparse"].u[-1], sols["user_dense"].u[-1],
                               rtol=1e-9, atol=1e-12)
    # sparse vs dense differences: J agrees to ~1e-9, so the solutions agree far below tol
    assert scaled_error(sols["sparse_fd"].u[-1], sols["dense_fd"].u[-1], rtol, atol) < 1e-2


def test_the_sparse_path_is_taken_and_counts_its_work():
    prob = ade.ODEProblem(rd, U0, (0.0, T1), jac_prototype=PATTERN)
    stepper, _, _ = _stepper(prob)
    assert stepper.jac_mode == "sparse_fd"
    ncolors = int(color_columns(PATTERN).max()) + 1  # the colouring the solver uses
    assert ncolors <= 12  # 5-point stencil x 2 coupled species (128 columns)
    u0 = np.asarray(U0)
    stepper.init(0.0, u0, rd(u0, None, 0.0))
    stepper.step(0.0, u0, 1e-3)
    assert stepper.sparse_jacobian
    sol = ade.solve(prob, "Rodas5P", rtol=1e-6, atol=1e-8)
    st = sol.stats
    assert st.njac == st.naccept and st.nfactor == st.nsteps
    assert st.nlinsolve == 8 * st.nsteps
    # validation call, initial step, autonomy probes (rd does not depend on t), f at each
    # step point but the first, 7 stage evaluations per attempt, 2 per colour per Jacobian
    expected = 2 + 7 + (st.naccept - 1) + 7 * st.nsteps + 2 * ncolors * st.njac
    assert st.nf == expected


def test_user_jacobian_returning_scipy_sparse_takes_the_sparse_path():
    prob = ade.ODEProblem(rd, U0, (0.0, T1), jac=rd_jac_sparse)
    stepper, _, _ = _stepper(prob)
    u0 = np.asarray(U0)
    stepper.init(0.0, u0, rd(u0, None, 0.0))
    stepper.step(0.0, u0, 1e-3)
    assert stepper.jac_mode == "user" and stepper.sparse_jacobian
    # a dense user Jacobian keeps the dense path even with a prototype
    prob = ade.ODEProblem(rd, U0, (0.0, T1), jac=rd_jac_dense, jac_prototype=PATTERN)
    stepper, _, _ = _stepper(prob)
    stepper.init(0.0, u0, rd(u0, None, 0.0))
    stepper.step(0.0, u0, 1e-3)
    assert stepper.jac_mode == "user" and not stepper.sparse_jacobian


@pytest.mark.parametrize("alg", ["Rodas4", "Rodas5P"])
def test_sparse_jacobian_with_a_sparse_mass_matrix(alg, rober_ref_1e5):
    """ROBER as an index-1 DAE, mass matrix and Jacobian pattern both sparse: same answer as
    SciPy Radau on the ODE form, constraint kept."""
    from .conftest import ROBER_MASS, rober_dae

    rtol, atol = 1e-6, 1e-10
    prob = ade.ODEProblem(rober_dae, [1.0, 0.0, 0.0], (0.0, 1e5),
                          mass_matrix=sp.csc_matrix(ROBER_MASS),
                          jac_prototype=sp.csc_matrix(np.ones((3, 3))))
    sol = ade.solve(prob, alg, rtol=rtol, atol=atol)
    assert sol.success
    assert scaled_error(sol.u[-1], rober_ref_1e5.y[:, -1], rtol, atol) < 3.0
    assert np.max(np.abs(sol.u.sum(axis=1) - 1.0)) < 1e-10
    dense = ade.solve(prob.remake(mass_matrix=ROBER_MASS, jac_prototype=None), alg,
                      rtol=rtol, atol=atol, jac_mode="fd")
    assert scaled_error(sol.u[-1], dense.u[-1], rtol, atol) < 0.1


# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["user", "autograd", "fd", "fd_forward", "sparse_fd"])
def test_every_jacobian_mode_gives_the_reference_solution(mode, rd_ref):
    rtol, atol = 1e-7, 1e-9
    prob = ade.ODEProblem(rd_autograd, U0, (0.0, T1), jac=rd_jac_sparse, jac_prototype=PATTERN)
    sol = ade.solve(prob, "Rodas5P", rtol=rtol, atol=atol, jac_mode=mode)
    assert sol.success
    bound = 10.0 if mode == "fd_forward" else 3.0
    assert scaled_error(sol.u[-1], rd_ref, rtol, atol) < bound


def test_auto_mode_resolution():
    cases = [
        ({"jac": rd_jac_sparse, "jac_prototype": PATTERN}, "user"),
        ({"jac_prototype": PATTERN}, "sparse_fd"),
        ({}, "autograd"),  # f in autograd.numpy: the exact Jacobian, recorded and replayed
    ]
    for kwargs, mode in cases:
        stepper, _, _ = _stepper(ade.ODEProblem(rd_autograd, U0, (0.0, T1), **kwargs))
        assert stepper.jac_mode == mode


def test_auto_mode_falls_back_to_differences_for_an_unrecordable_f():
    def rd_plain(w, p, t):  # builds its result with np.array of traced entries
        return np.array([float(x) for x in np.ravel(rd_autograd(np.asarray(w), p, t))])

    stepper, be, _ = _stepper(ade.ODEProblem(rd_plain, U0, (0.0, T1)))
    u0 = be.asarray(U0).reshape(-1)
    J, nf = stepper._jac(u0, 0.0, rd_plain(U0, None, 0.0).reshape(-1))
    assert stepper.jac_mode == "fd" and nf > 0
    J_exact, _ = _stepper(ade.ODEProblem(rd_autograd, U0, (0.0, T1)))[0]._jac(
        u0, 0.0, rd_plain(U0, None, 0.0).reshape(-1))
    scale = np.abs(J_exact).max()
    assert np.abs(np.asarray(J) - J_exact).max() <= 1e-5 * scale  # differences: ~eps^(2/3)


def test_a_dense_0_1_array_is_a_valid_prototype(rd_ref):
    rtol, atol = 1e-7, 1e-9
    prob = ade.ODEProblem(rd, U0, (0.0, T1), jac_prototype=PATTERN.toarray())
    sol = ade.solve(prob, "Rodas5P", rtol=rtol, atol=atol)
    assert sol.success and scaled_error(sol.u[-1], rd_ref, rtol, atol) < 3.0
    assert sol.stats.nf < 2 * 2 * NN * sol.stats.njac  # compressed, not 2n per Jacobian


def test_jacobian_mode_errors():
    plain = ade.ODEProblem(rd, U0, (0.0, 0.1))
    with pytest.raises(ade.InvalidArgument, match="jac_prototype"):
        ade.solve(plain, "Rodas5P", jac_mode="sparse_fd")
    # autograd cannot trace a plain-NumPy f (np.concatenate of traced arrays): a clear error
    with pytest.raises(ade.UnsupportedCombination, match="autograd"):
        ade.solve(plain, "Rodas5P", jac_mode="autograd")
    with pytest.raises(ade.ShapeMismatch, match="jac_prototype"):
        ade.solve(plain.remake(jac_prototype=sp.identity(3)), "Rodas5P")


# ------------------------------------------------------------------------------------------
def test_strict_backend_falls_back_to_dense_linear_algebra(rd_ref):
    """array_api_strict has no capability "sparse": the declared fallback is dense. The
    colour-compressed differences still work (dense J), and a scipy.sparse user Jacobian is
    densified; both solve the problem."""
    reg = ade.registry()
    be = reg.get_backend("array_api_strict")
    assert "sparse" not in be.capabilities
    spec = reg.solver("Rodas5P")
    assert "sparse" not in spec.requires and "dense LU elsewhere" in spec.description
    xp = be.xp
    lap = xp.asarray(LAP_DENSE)

    def rd_strict(w, p, t):
        u, v = w[:NN], w[NN:]
        uuv = u * u * v
        return xp.concat([D_ * (lap @ u) + A_ + uuv - (B_ + 1.0) * u,
                          D_ * (lap @ v) + B_ * u - uuv])

    def jac_strict(w, p, t):
        return rd_jac_sparse(be.to_host(w), p, t)  # scipy.sparse from a strict-backend f

    rtol, atol = 1e-7, 1e-9
    for kwargs in ({"jac_prototype": PATTERN}, {"jac": jac_strict}):
        prob = ade.ODEProblem(rd_strict, xp.asarray(U0), (0.0, T1), **kwargs)
        stepper, _, _ = _stepper(prob, backend="array_api_strict")
        u0 = xp.asarray(U0)
        stepper.init(0.0, u0, rd_strict(u0, None, 0.0))
        stepper.step(0.0, u0, 1e-3)
        assert not stepper.sparse_jacobian and be.is_native(stepper._J)
        sol = ade.solve(prob, "Rodas5P", rtol=rtol, atol=atol, backend="array_api_strict")
        assert sol.success and be.is_native(sol.u)
        assert scaled_error(be.to_host(sol.u[-1, ...]), rd_ref, rtol, atol) < 3.0


def test_autograd_mode_needs_the_autograd_capability():
    be = ade.registry().get_backend("array_api_strict")
    prob = ade.ODEProblem(lambda u, p, t: -u, be.xp.asarray([1.0, 2.0]), (0.0, 1.0))
    with pytest.raises(ade.UnsupportedCombination, match="autograd"):
        ade.solve(prob, "Rodas5P", jac_mode="autograd", backend="array_api_strict")


# ------------------------------------------------------------------------------------------
def _zero_start(u, p, t):
    """u0' = 1 - u0, u1' = t u0 from u = (0, 1): t enters only through u0, which is 0 at t0.
    Exact: u0 = 1 - exp(-t), u1 = 1 + t^2/2 - 1 + (t + 1) exp(-t)."""
    return np.array([1.0 - u[0], t * u[0]])


def _zero_start_exact(t):
    return np.array([1.0 - math.exp(-t), t * t / 2.0 + (t + 1.0) * math.exp(-t)])


def test_autonomy_detection():
    """ROBER-like autonomous f is detected; f = u sin(t) is not; a t-dependence hidden by a
    component that is zero at t0 is caught by the perturbed-state probe; a problem whose
    t-dependence is invisible at the probes can be forced with autonomous=False."""
    cases = [
        (lambda u, p, t: -u * u, [1.0, 2.0], True),
        (lambda u, p, t: u * math.sin(t), [1.0, 2.0], False),
        (_zero_start, [0.0, 1.0], False),
    ]
    for f, u0, verdict in cases:
        prob = ade.ODEProblem(f, u0, (0.0, 2.0))
        stepper, _, _ = _stepper(prob)
        u = np.asarray(u0, dtype=float)
        stepper.init(0.0, u, f(u, None, 0.0))
        stepper.step(0.0, u, 1e-2)
        assert stepper.autonomous is verdict
    sol = ade.solve(ade.ODEProblem(_zero_start, [0.0, 1.0], (0.0, 2.0)), "Rodas5P",
                    rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sol.u[-1], _zero_start_exact(2.0), rtol=1e-8)

    def f_forced(u, p, t):  # f(u, t) = -u + s(t) with s = 0 outside (0.2, 0.3)
        return -u + (1.0 if 0.2 < t < 0.3 else 0.0)

    stepper, _, _ = _stepper(ade.ODEProblem(f_forced, [1.0], (0.0, 1.0)), autonomous=False)
    u = np.array([1.0])
    stepper.init(0.0, u, f_forced(u, None, 0.0))
    stepper.step(0.0, u, 1e-2)
    assert stepper.autonomous is False


def test_tgrad_is_used_instead_of_differences():
    """u' = -50 (u - cos t) - sin t has u = cos t + (u0 - 1) exp(-50 t); with tgrad the
    stepper spends no evaluations on f_t."""

    def f(u, p, t):
        return -50.0 * (u - math.cos(t)) - math.sin(t)

    def tgrad(u, p, t):
        return np.array([-50.0 * math.sin(t) - math.cos(t)])

    def exact(t):
        return math.cos(t) + 1.0 * math.exp(-50.0 * t)

    prob = ade.ODEProblem(f, [2.0], (0.0, 3.0), tgrad=tgrad)
    a = ade.solve(prob, "Rodas5P", rtol=1e-8, atol=1e-10)
    b = ade.solve(prob.remake(tgrad=None), "Rodas5P", rtol=1e-8, atol=1e-10)
    for sol in (a, b):
        assert abs(float(sol.u[-1, 0]) - exact(3.0)) < 1e-8
    # with tgrad: validation call, initial step, f(u_n) at each point but the first, 7 stage
    # evaluations per attempt, a 2-evaluation difference Jacobian per point; nothing for f_t
    st = a.stats
    assert st.nf == 2 + (st.naccept - 1) + 7 * st.nsteps + 2 * st.naccept
    # without: one autonomy probe (f already differs at the first), three f_t nodes per point
    st = b.stats
    assert st.nf == 2 + 1 + (st.naccept - 1) + 7 * st.nsteps + (2 + 3) * st.naccept


def test_tgrad_is_validated_and_kept_by_remake():
    def tgrad(u, p, t):
        return 0.0 * u

    prob = ade.ODEProblem(lambda u, p, t: -u, [1.0], (0.0, 1.0), tgrad=tgrad)
    assert prob.tgrad is tgrad
    assert prob.remake(u0=[2.0]).tgrad is tgrad
    assert prob.remake(tgrad=None).tgrad is None
    with pytest.raises(ade.InvalidType, match="tgrad"):
        ade.ODEProblem(lambda u, p, t: -u, [1.0], (0.0, 1.0), tgrad=3.0)
    bad = ade.ODEProblem(lambda u, p, t: -u, [1.0, 2.0], (0.0, 1.0),
                         tgrad=lambda u, p, t: np.zeros(3))
    with pytest.raises(ade.ShapeMismatch, match="tgrad"):
        ade.solve(bad, "Rodas5P", autonomous=False)
