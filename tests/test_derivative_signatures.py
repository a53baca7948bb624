"""Every derivative signature of docs/derivatives.md, consumed by the library.

For states of shape (2,) (Lotka–Volterra) and (3, 2) (a coupled cubic system) with a flat ``p``
of 4 entries, each user-supplied derivative (``ODEProblem(jac=, paramjac=, vjp=, jvp=,
tgrad=)`` and a model's ``f.vjp``, ``f.jvp``, ``f.value_and_jvps``) is handed to the consumers
the document names, and the result is checked against references independent of the library:

* gradients through ``ade.solve`` (``rtol=1e-8``) against central differences of SciPy DOP853
  solves at ``rtol=1e-12`` (noise ~1e-12 / h = 1e-7 relative, truncation ~h^2 = 1e-10),
  compared at 1e-5 relative to the gradient's largest entry;
* stiff solves (Rodas5P, ``rtol=1e-8``) against SciPy's Radau at ``rtol=1e-10``, compared at
  1e-5 relative to the solution's largest entry; and, since error control hides a wrong
  Jacobian or ``f_t`` (it only costs steps), fixed-step Rodas5P must show an observed order
  above 4 (a wrong one drops it to about 2).

``f`` converts its result with ``np.asarray(..., dtype=float)``, so autograd cannot trace it:
gradients can only come from the user's derivatives (or from differences, which would warn).
Counters check that the user's functions were really called.
"""

from __future__ import annotations

import functools
import warnings
from collections import Counter

import autograd.numpy as anp
import numpy as np
import pytest
import scipy.sparse as sp
from autograd import grad
from scipy.integrate import solve_ivp
from scipy.linalg import expm

import autodiffeq as ade

TSPAN = (0.0, 1.5)
TIMES = (0.5, 1.5)
SOLVE_RTOL, SOLVE_ATOL = 1e-8, 1e-10
REF_RTOL, REF_ATOL = 1e-12, 1e-14
COMPARE = 1e-5  # relative to the magnitude of the compared quantity

CALLS: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()


# --------------------------------------------------------------------------- problems
class LotkaVolterra:
    """u' = [a x - b x y, -c y + d x y], u (2,), p = [a, b, c, d]."""

    shape = (2,)
    u0 = np.array([1.0, 0.5])
    p0 = np.array([1.5, 1.0, 3.0, 1.0])

    @staticmethod
    def f(u, p, t):
        x, y = u
        return np.asarray([p[0] * x - p[1] * x * y, -p[2] * y + p[3] * x * y], dtype=float)

    @staticmethod
    def J(u, p):  # (n, n)
        x, y = u
        return np.array([[p[0] - p[1] * y, -p[1] * x], [p[3] * y, -p[2] + p[3] * x]])

    @staticmethod
    def Fp(u, p):  # (n, m)
        x, y = u
        return np.array([[x, -x * y, 0.0, 0.0], [0.0, 0.0, -y, x * y]])

    @classmethod
    def jac_value(cls, u, p):
        return cls.J(u, p)

    @classmethod
    def paramjac_value(cls, u, p):
        return cls.Fp(u, p)


M3 = np.array([[-2.0, 1.0, 0.0], [0.5, -3.0, 1.0], [0.0, 1.0, -1.5]])
SWAP = np.array([[0.0, 1.0], [1.0, 0.0]])


class Coupled:
    """u' = a M u - b u^3 + c u[:, ::-1] + d, u (3, 2), p = [a, b, c, d] (stiff for a = 100)."""

    shape = (3, 2)
    u0 = np.arange(6.0).reshape(3, 2) / 5.0 + 0.1
    p0 = np.array([1.0, 0.3, 0.4, 0.2])

    @staticmethod
    def f(u, p, t):
        return np.asarray(p[0] * (M3 @ u) - p[1] * u**3 + p[2] * u[:, ::-1] + p[3], dtype=float)

    @staticmethod
    def jac_value(u, p):  # shape + shape = (3, 2, 3, 2): n*n entries, row-major
        I2, I3 = np.eye(2), np.eye(3)
        J = p[0] * np.einsum("ik,jl->ijkl", M3, I2) + p[2] * np.einsum("ik,jl->ijkl", I3, SWAP)
        return J - 3.0 * p[1] * np.einsum("ij,ik,jl->ijkl", u**2, I3, I2)

    @staticmethod
    def paramjac_value(u, p):  # shape + p.shape = (3, 2, 4)
        return np.stack([M3 @ u, -(u**3), u[:, ::-1], np.ones_like(u)], axis=-1)

    @classmethod
    def J(cls, u, p):
        return cls.jac_value(u, p).reshape(6, 6)

    @classmethod
    def Fp(cls, u, p):
        return cls.paramjac_value(u, p).reshape(6, 4)


PROBLEMS = {(2,): LotkaVolterra, (3, 2): Coupled}
SHAPES = list(PROBLEMS)


# --------------------------------------------------------------------------- user functions
def make_jac(P):
    def jac(u, p, t):
        CALLS["jac"] += 1
        assert u.shape == P.shape and isinstance(t, float)
        return P.jac_value(u, p)

    return jac


def make_paramjac(P):
    def paramjac(u, p, t):
        CALLS["paramjac"] += 1
        assert u.shape == P.shape
        return P.paramjac_value(u, p)

    return paramjac


def make_vjp(P, key="vjp"):
    def vjp(v, u, p, t):  # (v^T J shaped like u, v^T F_p flat (m,))
        CALLS[key] += 1
        assert v.shape == P.shape and u.shape == P.shape and isinstance(t, float)
        vf = v.reshape(-1)
        gu = (P.J(u, p).T @ vf).reshape(P.shape)
        return gu, (None if p is None else P.Fp(u, p).T @ vf)

    return vjp


def make_jvp(P):
    def jvp(du, u, p, t):  # J du, shaped like u
        CALLS["jvp"] += 1
        assert du.shape == P.shape and u.shape == P.shape
        return (P.J(u, p) @ du.reshape(-1)).reshape(P.shape)

    return jvp


class Model:
    """A right-hand side object carrying its own products (like ``autodiffeq.nn.MLP``)."""

    def __init__(self, P, vjp=True, jvp=True, batched=True):
        self.P = P
        if vjp:
            self.vjp = make_vjp(P, "model.vjp")
        if jvp:
            self.jvp = self._jvp
        if batched:
            self.value_and_jvps = self._value_and_jvps

    def __call__(self, u, p, t):
        return self.P.f(u, p, t)

    def _product(self, du, dp, u, p):
        out = np.zeros(self.P.shape)
        if du is not None:
            out += (self.P.J(u, p) @ np.reshape(du, -1)).reshape(self.P.shape)
        if dp is not None:
            out += (self.P.Fp(u, p) @ np.reshape(dp, -1)).reshape(self.P.shape)
        return out

    def _jvp(self, du, dp, u, p, t):
        CALLS["model.jvp"] += 1
        assert du is None or du.shape == self.P.shape
        return self._product(du, dp, u, p)

    def _value_and_jvps(self, dU, dP, u, p, t):
        CALLS["model.value_and_jvps"] += 1
        k = (dU if dU is not None else dP).shape[0]
        assert dU is None or dU.shape == (k, *self.P.shape)
        assert dP is None or dP.shape == (k, 4)
        rows = [
            self._product(None if dU is None else dU[j], None if dP is None else dP[j], u, p)
            for j in range(k)
        ]
        return self(u, p, t), np.stack(rows)


# --------------------------------------------------------------------------- references
def _weights(shape):
    return np.random.default_rng(7).standard_normal((len(TIMES), *shape))


def _scipy_states(P, u0, p, method="DOP853", rtol=REF_RTOL, atol=REF_ATOL, times=TIMES):
    def rhs(t, y):
        return P.f(y.reshape(P.shape), p, t).reshape(-1)

    sol = solve_ivp(
        rhs, TSPAN, np.reshape(u0, -1), method=method, t_eval=times, rtol=rtol, atol=atol
    )
    assert sol.success
    return sol.y.T.reshape(len(times), *P.shape)


@functools.cache
def fd_gradient(shape):
    """Central differences of ``L(u0, p) = sum(w * u(TIMES))`` from SciPy solves."""
    P = PROBLEMS[shape]
    w = _weights(shape)
    n = P.u0.size
    z0 = np.concatenate([P.u0.reshape(-1), P.p0])

    def loss(z):
        return float(np.sum(w * _scipy_states(P, z[:n].reshape(shape), z[n:])))

    g = np.empty_like(z0)
    for j in range(z0.size):
        h = 1e-5 * max(1.0, abs(z0[j]))
        e = np.zeros_like(z0)
        e[j] = h
        g[j] = (loss(z0 + e) - loss(z0 - e)) / (2.0 * h)
    return g


def ade_gradient(P, sensealg, alg="Tsit5", wrt="both", f=None, p=None, **derivs):
    """Gradient of the same loss through ``ade.solve`` (u0 and p packed as one vector)."""
    n = P.u0.size
    w = _weights(P.shape)
    f = P.f if f is None else f
    p = P.p0 if p is None else p

    def loss(z):
        u0 = anp.reshape(z[:n], P.shape) if wrt != "p" else P.u0
        pp = z[n:] if wrt != "u0" else p
        prob = ade.ODEProblem(f, u0, TSPAN, pp, **derivs)
        sol = ade.solve(
            prob, alg, saveat=list(TIMES), rtol=SOLVE_RTOL, atol=SOLVE_ATOL, sensealg=sensealg
        )
        return anp.sum(w * sol.u)

    return grad(loss)(np.concatenate([P.u0.reshape(-1), p]))


def assert_close(actual, reference, what=""):
    err = np.max(np.abs(np.asarray(actual) - reference))
    scale = np.max(np.abs(reference))
    assert err <= COMPARE * scale, f"{what}: error {err:.3e} > {COMPARE:g} * {scale:.3e}"


def method(name, autojacvec="user"):
    return ade.sensitivity_method(name, autojacvec=autojacvec)


def derivatives(P, kind):
    """(f, ODEProblem keyword arguments, counters that must be non-zero) for a signature."""
    if kind == "jac+paramjac":
        return P.f, {"jac": make_jac(P), "paramjac": make_paramjac(P)}, ("jac", "paramjac")
    if kind == "vjp":
        return P.f, {"vjp": make_vjp(P)}, ("vjp",)
    if kind == "model.vjp":
        return Model(P, batched=False), {}, ("model.vjp",)
    if kind == "model.value_and_jvps":
        return Model(P), {}, ("model.value_and_jvps",)
    raise AssertionError(kind)


# --------------------------------------------------------------------------- gradients
CASES = [
    ("jac+paramjac", "DiscreteAdjoint"),
    ("jac+paramjac", "InterpolatingAdjoint"),
    ("jac+paramjac", "ForwardSensitivity"),
    ("vjp", "DiscreteAdjoint"),
    ("vjp", "InterpolatingAdjoint"),
    ("vjp", "QuadratureAdjoint"),
    ("vjp", "ForwardSensitivity"),
    ("model.vjp", "DiscreteAdjoint"),
    ("model.vjp", "ForwardSensitivity"),
    ("model.value_and_jvps", "ForwardSensitivity"),
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize(("kind", "name"), CASES)
def test_gradient_from_user_derivatives(shape, kind, name):
    P = PROBLEMS[shape]
    f, kw, used = derivatives(P, kind)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ade.DerivativeWarning)
        g = ade_gradient(P, method(name), f=f, **kw)
    assert_close(g, fd_gradient(shape), f"{kind} / {name}")
    for key in used:
        assert CALLS[key] > 0, f"{key} was not called"
    if kind == "model.value_and_jvps":  # the batched products replace the vjp rows
        assert CALLS["model.vjp"] == 0


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_local_sensitivities_use_jac_and_paramjac(shape):
    P = PROBLEMS[shape]
    prob = ade.ODEProblem(P.f, P.u0, TSPAN, P.p0, jac=make_jac(P), paramjac=make_paramjac(P))
    res = ade.local_sensitivities(
        prob, "Tsit5", saveat=list(TIMES), rtol=SOLVE_RTOL, atol=SOLVE_ATOL, autojacvec="user"
    )
    assert res.du_dp.shape == (len(TIMES), *shape, 4)
    w = _weights(shape)
    nt = len(TIMES)
    g_p = np.einsum("ti,tik->k", w.reshape(nt, -1), np.reshape(res.du_dp, (nt, -1, 4)))
    assert_close(g_p, fd_gradient(shape)[P.u0.size :], "local_sensitivities du_dp")
    assert CALLS["jac"] > 0 and CALLS["paramjac"] > 0


def test_wrong_vjp_is_detected():
    """Negative control: the comparison catches a derivative with one wrong entry."""
    P = LotkaVolterra
    good = make_vjp(P)

    def bad(v, u, p, t):
        gu, gp = good(v, u, p, t)
        return gu, gp * np.array([1.0, 1.0, 1.0, 1.01])

    g = ade_gradient(P, method("DiscreteAdjoint"), vjp=bad)
    with pytest.raises(AssertionError):
        assert_close(g, fd_gradient((2,)))


# --------------------------------------------------------------------------- p None / m == 0
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kind", ["jac", "vjp"])
def test_p_none(shape, kind):
    """``p=None`` reaches jac/vjp as ``None``; vjp may return ``(gu, None)``; gradient wrt u0."""
    P = PROBLEMS[shape]
    seen = []

    def f(u, p, t):
        return P.f(u, P.p0, t)

    def jac(u, p, t):
        seen.append(p)
        return P.jac_value(u, P.p0)

    def vjp(v, u, p, t):
        seen.append(p)
        return (P.J(u, P.p0).T @ v.reshape(-1)).reshape(P.shape), None

    kw = {"jac": jac} if kind == "jac" else {"vjp": vjp}
    n = P.u0.size
    w = _weights(shape)

    def loss(u0):
        prob = ade.ODEProblem(f, anp.reshape(u0, shape), TSPAN, None, **kw)
        sol = ade.solve(
            prob,
            "Tsit5",
            saveat=list(TIMES),
            rtol=SOLVE_RTOL,
            atol=SOLVE_ATOL,
            sensealg=method("DiscreteAdjoint"),
        )
        return anp.sum(w * sol.u)

    g = grad(loss)(P.u0.reshape(-1))
    assert seen and all(p is None for p in seen)
    assert_close(g, fd_gradient(shape)[:n], f"p=None, {kind}")


def test_jac_alone_suffices_when_p_is_not_differentiated():
    P = Coupled
    n = P.u0.size
    g = ade_gradient(P, method("DiscreteAdjoint"), wrt="u0", jac=make_jac(P))
    assert_close(g[:n], fd_gradient(P.shape)[:n], "jac alone, wrt u0")
    assert CALLS["jac"] > 0


# --------------------------------------------------------------------------- jvp signatures
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("source", ["problem", "model"])
def test_jvp_signatures(shape, source):
    """``ODEProblem(jvp=)`` as ``jvp(du, u, p, t)`` and the model's ``jvp(du, dp, u, p, t)``
    and ``value_and_jvps``, through the derivative layer (``RHSDerivatives``)."""
    P = PROBLEMS[shape]
    if source == "problem":
        prob = ade.ODEProblem(
            P.f, P.u0, TSPAN, P.p0, jac=make_jac(P), paramjac=make_paramjac(P), jvp=make_jvp(P)
        )
    else:
        prob = ade.ODEProblem(Model(P), P.u0, TSPAN, P.p0)
    be = ade.registry().get_backend("numpy")
    d = ade.RHSDerivatives(prob.f, prob.p, prob.shape, be, np.dtype(np.float64), prob, "user")
    assert d.mode == "user"
    rng = np.random.default_rng(1)
    u = P.u0.reshape(-1) + 0.1
    du, dp = rng.standard_normal(u.size), rng.standard_normal(4)
    expected = P.J(u.reshape(P.shape), P.p0) @ du + P.Fp(u.reshape(P.shape), P.p0) @ dp
    np.testing.assert_allclose(d.jvp(du, dp, u, 0.3), expected, rtol=1e-12, atol=1e-12)
    assert CALLS["jvp" if source == "problem" else "model.jvp"] == 1
    dU, dP = rng.standard_normal((3, u.size)), rng.standard_normal((3, 4))
    fu, rows = d.value_and_jvps(dU, dP, u, 0.3)
    np.testing.assert_allclose(fu, P.f(u.reshape(P.shape), P.p0, 0.3).reshape(-1), rtol=1e-14)
    expected_rows = dU @ P.J(u.reshape(P.shape), P.p0).T + dP @ P.Fp(u.reshape(P.shape), P.p0).T
    np.testing.assert_allclose(rows, expected_rows, rtol=1e-12, atol=1e-12)
    if source == "model":
        assert d.batched_jvps and CALLS["model.value_and_jvps"] == 1


def test_problem_jvp_alone_is_not_user_derivatives():
    P = LotkaVolterra
    with pytest.raises(ade.UnsupportedCombination):
        ade_gradient(P, method("DiscreteAdjoint"), jvp=make_jvp(P))
    with pytest.raises(ade.UnsupportedCombination):  # a model without vjp: the same
        ade_gradient(P, method("ForwardSensitivity"), f=Model(P, vjp=False))
    assert CALLS["jvp"] == 0 and CALLS["model.value_and_jvps"] == 0


# --------------------------------------------------------------------------- order of sources
def test_problem_vjp_takes_precedence_over_model_vjp():
    P = LotkaVolterra
    g = ade_gradient(P, method("DiscreteAdjoint"), f=Model(P, batched=False), vjp=make_vjp(P))
    assert_close(g, fd_gradient((2,)))
    assert CALLS["vjp"] > 0 and CALLS["model.vjp"] == 0


def test_auto_prefers_user_derivatives_to_autograd():
    def traceable(u, p, t):
        return anp.stack([p[0] * u[0] - p[1] * u[0] * u[1], -p[2] * u[1] + p[3] * u[0] * u[1]])

    P = LotkaVolterra
    g = ade_gradient(P, method("DiscreteAdjoint", "auto"), f=traceable, vjp=make_vjp(P))
    assert_close(g, fd_gradient((2,)))
    assert CALLS["vjp"] > 0


def test_auto_falls_back_to_differences_with_warning():
    P = LotkaVolterra
    with pytest.warns(ade.DerivativeWarning):
        g = ade_gradient(P, method("DiscreteAdjoint", "auto"))
    assert_close(g, fd_gradient((2,)), "finite-difference fallback")
    with pytest.raises(ade.UnsupportedCombination):
        ade_gradient(P, method("DiscreteAdjoint", "user"))


def test_discrete_adjoint_traces_rosenbrock_steps():
    """Rosenbrock steps of DiscreteAdjoint trace f with autograd whatever the user gives."""
    P = LotkaVolterra
    with pytest.raises(ade.UnsupportedCombination):
        ade_gradient(P, method("DiscreteAdjoint"), alg="Rodas5P", vjp=make_vjp(P))


# --------------------------------------------------------------------------- stiff solvers
def _stiff_p(P):
    return np.array([100.0, 0.3, 0.4, 0.2]) if P is Coupled else P.p0


def _radau(P, p, times):
    return _scipy_states(P, P.u0, p, method="Radau", rtol=1e-10, atol=1e-12, times=times)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_stiff_solver_uses_callable_jac(shape):
    P = PROBLEMS[shape]
    p = _stiff_p(P)
    prob = ade.ODEProblem(P.f, P.u0, TSPAN, p, jac=make_jac(P))
    sol = ade.solve(
        prob, "Rodas5P", saveat=list(TIMES), rtol=SOLVE_RTOL, atol=SOLVE_ATOL, jac_mode="user"
    )
    assert_close(sol.u, _radau(P, p, TIMES), "Rodas5P with jac")
    assert CALLS["jac"] == sol.stats.njac > 0


def observed_order(solve_with_dt, reference, dts=(0.1, 0.05)):
    """Order of a fixed-step method from its errors at two step sizes. Rodas5P is a fifth-order
    method only with the exact ``J`` (and ``f_t``): not a W-method, so a wrong one drops the
    order to about 2 (measured: 1.5-2.4 for a 1% error or a transposed ``J``)."""
    errors = [np.max(np.abs(solve_with_dt(dt) - reference)) for dt in dts]
    return np.log(errors[0] / errors[1]) / np.log(dts[0] / dts[1])


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_user_jac_gives_rodas5p_its_order(shape):
    """Fixed steps (no error control to hide a wrong ``J``): order about 5 (4.8-5.1 here)."""
    P = PROBLEMS[shape]
    prob = ade.ODEProblem(P.f, P.u0, TSPAN, P.p0, jac=make_jac(P))
    ref = _scipy_states(P, P.u0, P.p0, method="Radau", rtol=1e-13, atol=1e-15)

    def solve_with_dt(dt):
        return ade.solve(prob, "Rodas5P", saveat=list(TIMES), adaptive=False, dt=dt).u

    assert observed_order(solve_with_dt, ref) > 4.0
    assert CALLS["jac"] > 0


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_user_jac_reshaped_row_major(shape):
    """A ``jac`` result with n*n entries (``shape + shape``) is read as the row-major (n, n)."""
    P = PROBLEMS[shape]
    prob = ade.ODEProblem(P.f, P.u0, TSPAN, P.p0, jac=make_jac(P), paramjac=make_paramjac(P))
    be = ade.registry().get_backend("numpy")
    d = ade.RHSDerivatives(prob.f, prob.p, prob.shape, be, np.dtype(np.float64), prob, "user")
    u = P.u0.reshape(-1)
    n, eps = u.size, 1e-6
    cols = []
    for j in range(n):
        e = np.zeros(n)
        e[j] = eps
        fp, fm = (P.f((u + s * e).reshape(P.shape), P.p0, 0.0).reshape(-1) for s in (1, -1))
        cols.append((fp - fm) / (2 * eps))
    np.testing.assert_allclose(d.jac(u, 0.0), np.stack(cols, axis=1), rtol=1e-7, atol=1e-8)
    assert d.paramjac(u, 0.0).shape == (n, 4)
    assert CALLS["jac"] == 1 and CALLS["paramjac"] == 1


def _linear(shape):
    """u' = A u (A acting on the rows of a (3, 2) state, or on a (2,) state): constant J."""
    if shape == (2,):
        A = np.array([[-100.0, 1.0], [0.0, -0.5]])
        return A, A, np.array([1.0, 1.0])
    A = np.array([[-100.0, 1.0, 0.0], [0.0, -2.0, 1.0], [0.0, 0.0, -0.5]])
    return A, np.kron(A, np.eye(2)), np.ones((3, 2))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("form", ["array", "sparse", "callable-sparse"])
def test_constant_and_sparse_jac_in_stiff_solver(shape, form):
    A, J, u0 = _linear(shape)

    def f(u, p, t):
        CALLS["f"] += 1
        return A @ u

    def jac_sparse(u, p, t):
        CALLS["jac"] += 1
        return sp.csr_matrix(J)

    jac = {"array": J, "sparse": sp.csr_matrix(J), "callable-sparse": jac_sparse}[form]
    sol = ade.solve(
        ade.ODEProblem(f, u0, (0.0, 1.0), jac=jac),
        "Rodas5P",
        saveat=[1.0],
        rtol=SOLVE_RTOL,
        atol=SOLVE_ATOL,
    )
    exact = (expm(J) @ u0.reshape(-1)).reshape(u0.shape)
    assert_close(sol.u[-1], exact, f"constant jac ({form})")
    nf_user = CALLS["f"]
    CALLS["f"] = 0
    ade.solve(
        ade.ODEProblem(f, u0, (0.0, 1.0)), "Rodas5P", saveat=[1.0], rtol=SOLVE_RTOL, atol=SOLVE_ATOL
    )
    assert nf_user < CALLS["f"]  # no difference Jacobian: the user's matrix was used
    if form == "callable-sparse":
        assert CALLS["jac"] > 0


def test_constant_jac_in_sensitivity_method():
    A, J, u0 = _linear((3, 2))
    w = np.array([[1.0, -2.0], [0.5, 3.0], [-1.0, 0.25]])

    def loss(z):
        prob = ade.ODEProblem(
            lambda u, p, t: A @ u, anp.reshape(z, (3, 2)), (0.0, 1.0), None, jac=J
        )
        sol = ade.solve(
            prob,
            "Tsit5",
            saveat=[1.0],
            rtol=SOLVE_RTOL,
            atol=SOLVE_ATOL,
            sensealg=method("DiscreteAdjoint"),
        )
        return anp.sum(w * sol.u[-1])

    assert_close(grad(loss)(u0.reshape(-1)), expm(J).T @ w.reshape(-1), "constant jac, VJP")


def test_tgrad_in_stiff_solver():
    calls = Counter()

    def f(u, p, t):
        return np.array([-p[0] * (u[0] - np.cos(t)), u[0] - u[1]])

    def jac(u, p, t):
        return np.array([[-p[0], 0.0], [1.0, -1.0]])

    def tgrad(u, p, t):
        calls["tgrad"] += 1
        assert u.shape == (2,)
        return np.array([-p[0] * np.sin(t), 0.0])

    p = np.array([50.0])
    sol = ade.solve(
        ade.ODEProblem(f, [0.0, 0.0], (0.0, 2.0), p, jac=jac, tgrad=tgrad),
        "Rodas5P",
        saveat=[1.0, 2.0],
        rtol=SOLVE_RTOL,
        atol=SOLVE_ATOL,
    )
    ref = solve_ivp(
        lambda t, y: f(y, p, t),
        (0.0, 2.0),
        [0.0, 0.0],
        method="Radau",
        t_eval=[1.0, 2.0],
        rtol=1e-10,
        atol=1e-12,
    )
    assert_close(sol.u, ref.y.T, "Rodas5P with tgrad")
    assert calls["tgrad"] > 0
    # fixed steps: the exact f_t keeps the order (4.6 here; 2.0 with f_t off by 1%)
    p = np.array([5.0])
    prob = ade.ODEProblem(f, [0.0, 0.0], (0.0, 2.0), p, jac=jac, tgrad=tgrad)
    ref = solve_ivp(
        lambda t, y: f(y, p, t),
        (0.0, 2.0),
        [0.0, 0.0],
        method="Radau",
        t_eval=[1.0, 2.0],
        rtol=1e-13,
        atol=1e-15,
    )
    calls.clear()

    def solve_with_dt(dt):
        return ade.solve(prob, "Rodas5P", saveat=[1.0, 2.0], adaptive=False, dt=dt).u

    assert observed_order(solve_with_dt, ref.y.T) > 4.0
    assert calls["tgrad"] > 0
