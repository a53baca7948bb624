"""The SRI step a solve takes (stage sums as products over the stacked stages) and the step
formula the pathwise gradients trace (``functional_sde_step``) are the same map: on the same
state, time, step and noise they agree to rounding, with the same error estimate, for every
SRI tableau and noise kind, in float64 and float32."""

from __future__ import annotations

import math

import numpy as np
import pytest

import autodiffeq as ade
from autodiffeq.brownian import StackedBrownianPath
from autodiffeq.pipeline import make_stepper
from autodiffeq.request import build_request, problem_type_of, split_options

N = 80  # at least rossler.STACKED_MIN_SIZE: the stacked step is what runs


def drift(u, p, t):
    return p[0] * u * (1.0 - u) + 0.1 * math.sin(t)


def diffusion(u, p, t):
    return p[1] * u * (1.0 + 0.1 * t)


def additive(u, p, t):
    return p[1] * (1.0 + 0.5 * t) * np.ones_like(u)


CASES = {
    "diagonal": dict(g=diffusion, noise="diagonal", shape=(N,)),
    "scalar": dict(g=diffusion, noise="scalar", shape=()),
    "additive": dict(g=additive, noise="additive", shape=(N,)),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", list(CASES))
@pytest.mark.parametrize("alg", ["SRIW1", "SOSRI", "SRIW2", "SOSRI2"])
def test_solve_step_equals_traced_formula(alg, kind, dtype) -> None:
    case = CASES[kind]
    u0 = np.linspace(0.2, 0.8, N).astype(dtype)
    p0 = np.array([1.0, 0.4], dtype=dtype)
    prob = ade.SDEProblem(drift, case["g"], u0, (0.0, 1.0), p0, noise=case["noise"])
    W = ade.BrownianPath((0.0, 1.0), case["shape"], seed=7)
    reg = ade.registry()
    options, rest = split_options(dict(dt=0.1, brownian=W))
    request = build_request(prob, alg, options, rest, reg, problem_type_of(reg, prob))
    prepared = request.problem_type.adapter.prepare(request)
    stepper = make_stepper(request, prepared)
    rhs = stepper.rhs
    assert stepper.stacked_sums(rhs)  # the products, not the formula, make the solve's steps
    stepper.init(0.0, prepared.u0, prepared.f0)
    u = prepared.u0
    eps = float(np.finfo(dtype).eps)
    for k, dt in enumerate((0.1, 0.05, 0.2, 0.125)):
        t = 0.1 * k
        fast, err = stepper.step(t, u, dt)
        noise = rhs.increments(t, dt)
        reference = stepper.functional_sde_step(rhs.fp, rhs.gp, u, rhs.p, t, dt, noise)
        ref_err = stepper.formula(rhs.fp, rhs.gp, u, rhs.p, t, dt, noise, True)[1]
        assert fast.dtype == u.dtype and err is not None and err.shape == u.shape
        # a few dozen operations per stage, each rounding once
        np.testing.assert_allclose(fast, reference, rtol=0,
                                   atol=100 * eps * float(np.max(np.abs(reference))))
        np.testing.assert_allclose(err, ref_err, rtol=0,
                                   atol=100 * eps * float(np.max(np.abs(reference))))
        assert not np.array_equal(fast, u)
        u = fast


def test_small_states_and_stacked_trajectories_keep_the_elementwise_formula() -> None:
    """Below STACKED_MIN_SIZE entries, and for trajectories stepped together on a stacked
    path, the step is the formula (so an ensemble's trajectory is the same to the last bit
    however it is solved)."""
    reg = ade.registry()
    for n, stacked in ((5, False), (80, True)):
        prob = ade.SDEProblem(drift, diffusion, np.full(n, 0.5), (0.0, 1.0), [1.0, 0.4])
        paths = [ade.BrownianPath((0.0, 1.0), (n,), seed=s) for s in range(2)]
        for path in (paths[0], StackedBrownianPath(paths)):
            if path is not paths[0]:
                prob = prob.remake(u0=np.full(2 * n, 0.5))
            options, rest = split_options(dict(dt=0.1, brownian=path))
            request = build_request(prob, "SOSRI", options, rest, reg,
                                    problem_type_of(reg, prob))
            stepper = make_stepper(request, request.problem_type.adapter.prepare(request))
            expected = stacked and path is paths[0]
            assert stepper.stacked_sums(stepper.rhs) is expected
