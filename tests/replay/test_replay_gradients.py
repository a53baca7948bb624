"""Gradients through ``solve`` of right-hand sides that the derivative engine records and
replays, including value-dependent Python control flow, for every sensitivity method.

Truth: central differences of the loss computed with SciPy's DOP853 at rtol 1e-12 on the
same ``f`` (an independent solver); differences with ``h = 1e-6 (1 + |x|)`` are accurate to
~1e-9 relative here, the solves under test (rtol 1e-9) to ~1e-7, so agreement to 1e-5
relative (of the gradient's norm) is demanded.
"""

from __future__ import annotations

import warnings

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad
from scipy.integrate import solve_ivp

import autodiffeq as ade
from autodiffeq.replay import replayed

TS = np.linspace(0.0, 3.0, 7)
U0 = np.array([1.2, 0.0])
P0 = np.array([1.0, 1.5, 0.2])


def signed_square_oscillator(u, p, t):
    """``x'' = -k x|x| - c x'``: the sign is a Python branch on a traced value (C1 at 0), and
    the solution crosses ``x = 0`` several times, so both branches replay in one solve."""
    x, v = u[0], u[1]
    if x > 0:
        s = x * x
    else:
        s = -(x * x)
    return anp.stack([p[0] * v, -p[1] * s - p[2] * v])


def _exp_series(x):
    """``exp(x)`` summed until the terms vanish: the loop count depends on ``x``, so each
    magnitude of ``x`` is another recorded path (more than the engine keeps)."""
    term = 1.0 + 0.0 * x
    total = term
    k = 1
    while anp.abs(term) > 1e-17 * anp.abs(total):
        term = term * x / k
        total = total + term
        k += 1
    return total


def series_oscillator(u, p, t):
    return anp.stack([p[0] * u[1], -p[1] * u[0] * _exp_series(-0.3 * u[0] * u[0])
                      - p[2] * u[1]])


def _loss_reference(f, u0, p):
    sol = solve_ivp(lambda t, y: np.asarray(f(y, p, t), dtype=np.float64), (0.0, TS[-1]), u0,
                    method="DOP853", t_eval=TS, rtol=1e-12, atol=1e-14)
    return float(np.sum(sol.y ** 2))


_TRUTH: dict = {}


def truth(f):
    if f not in _TRUTH:
        x0 = np.concatenate([U0, P0])
        g = np.zeros_like(x0)
        for i in range(x0.size):
            h = 1e-6 * (1.0 + abs(x0[i]))
            xp, xm = x0.copy(), x0.copy()
            xp[i] += h
            xm[i] -= h
            plus = _loss_reference(f, xp[:2], xp[2:])
            g[i] = (plus - _loss_reference(f, xm[:2], xm[2:])) / (2 * h)
        _TRUTH[f] = g
    return _TRUTH[f]


def gradient(f, alg, sensealg):
    def loss(x):
        prob = ade.ODEProblem(f, x[:2], (0.0, TS[-1]), x[2:])
        sol = ade.solve(prob, alg, saveat=TS, rtol=1e-9, atol=1e-11, sensealg=sensealg)
        return anp.sum(sol.u ** 2)

    with warnings.catch_warnings():
        warnings.simplefilter("error", ade.ReplayWarning)
        return grad(loss)(np.concatenate([U0, P0]))


NONSTIFF_METHODS = ["DiscreteAdjoint", "InterpolatingAdjoint", "BacksolveAdjoint",
                    "QuadratureAdjoint", "ForwardSensitivity", "ReverseMode", "ForwardMode"]
STIFF_METHODS = ["DiscreteAdjoint", "InterpolatingAdjoint", "QuadratureAdjoint",
                 "ForwardSensitivity", "ReverseMode", "ForwardMode"]
CASES = [("Tsit5", m) for m in NONSTIFF_METHODS] + [
    pytest.param("Rodas5P", m, marks=[] if m in ("DiscreteAdjoint", "ForwardSensitivity")
                 else pytest.mark.slow) for m in STIFF_METHODS]


@pytest.mark.parametrize("alg,method", CASES)
def test_branching_rhs_gradient_matches_differences(alg, method):
    g = gradient(signed_square_oscillator, alg, method)
    ref = truth(signed_square_oscillator)
    err = np.linalg.norm(g - ref) / np.linalg.norm(ref)
    assert err < 1e-5, f"{alg}/{method}: relative error {err:.2e}"
    rf, _ = replayed(signed_square_oscillator, P0, (2,), np.float64)
    assert rf.disabled is None and len(rf.variants) == 2  # both branches recorded, replayed


@pytest.mark.parametrize("method", ["DiscreteAdjoint", "InterpolatingAdjoint",
                                    "ForwardSensitivity", "ReverseMode"])
def test_too_many_paths_fall_back_to_autograd_with_correct_gradients(method):
    g = gradient(series_oscillator, "Tsit5", method)
    ref = truth(series_oscillator)
    err = np.linalg.norm(g - ref) / np.linalg.norm(ref)
    assert err < 1e-5, f"{method}: relative error {err:.2e}"
    rf, _ = replayed(series_oscillator, P0, (2,), np.float64)
    assert rf.disabled is not None and "paths" in rf.disabled


def test_parameters_as_a_dict_of_arrays_match_the_flat_vector():
    """The same network with p as a dict and as one flat vector: the same gradient, returned
    in the dict's structure, for every method (and the dict entries vs differences)."""
    rng = np.random.default_rng(0)
    H = 6
    params = {"W1": rng.standard_normal((2, H)) * 0.5, "b1": rng.standard_normal(H) * 0.1,
              "W2": rng.standard_normal((H, 2)) * 0.3, "b2": np.zeros(2)}
    flat = np.concatenate([params[k].ravel() for k in sorted(params)])

    def f_dict(u, p, t):
        return anp.tanh(u ** 3 @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]

    sizes = {k: params[k].size for k in sorted(params)}

    def f_flat(u, p, t):
        parts, i = {}, 0
        for k in sorted(sizes):
            parts[k] = anp.reshape(p[i:i + sizes[k]], params[k].shape)
            i += sizes[k]
        return f_dict(u, parts, t)

    u0 = np.array([1.5, 0.0])

    def loss(p, f, method):
        sol = ade.solve(ade.ODEProblem(f, u0, (0.0, 1.0), p), "Tsit5", saveat=TS[:4] / 3,
                        rtol=1e-9, atol=1e-11, sensealg=method)
        return anp.sum(sol.u ** 2)

    for method in NONSTIFF_METHODS:
        g_dict = grad(loss)(params, f_dict, method)
        g_flat = grad(loss)(flat, f_flat, method)
        assert isinstance(g_dict, dict) and set(g_dict) == set(params)
        got = np.concatenate([g_dict[k].ravel() for k in sorted(params)])
        scale = np.abs(g_flat).max()
        assert np.abs(got - g_flat).max() <= 1e-8 * scale, method


A_GLOBAL = np.array([[0.0, 1.0], [-1.0, 0.0]])


def rotation(u, p, t):
    return p[0] * (A_GLOBAL @ u)


def test_rebinding_a_global_is_not_replayed_stale():
    """A global array rebound between solves (as in a notebook): the recording referenced
    the old object, so the function is recorded again; the gradient follows the new one."""
    global A_GLOBAL

    def grad_p(sensealg="DiscreteAdjoint"):
        def loss(p):
            prob = ade.ODEProblem(rotation, np.array([1.0, 0.0]), (0.0, 1.0), p)
            sol = ade.solve(prob, "Tsit5", saveat=[1.0], rtol=1e-10, atol=1e-12,
                            sensealg=sensealg)
            return anp.sum(sol.u[-1] * np.array([1.0, 2.0]))

        return grad(loss)(np.array([1.0]))

    first = grad_p()
    saved = A_GLOBAL
    try:
        A_GLOBAL = np.array([[-1.0, 0.0], [0.0, -2.0]])  # u' = p diag(-1, -2) u
        second = grad_p()
    finally:
        A_GLOBAL = saved
    # d/dp [exp(-p) * 1 + 2 * 0] at p = 1 for u0 = (1, 0)
    exact = -np.exp(-1.0)
    assert abs(second[0] - exact) <= 1e-7 * abs(exact)
    assert abs(first[0] - exact) > 0.1  # the rotation's gradient is different
