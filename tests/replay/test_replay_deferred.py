"""Parameter cotangents summed once per reverse pass, and forward sweeps kept for it.

Truth: the engine's immediate VJP (itself checked against autograd in
``test_replay_engine.py``) summed call by call; the deferred sweep must give the same state
cotangent at every call and the same parameter cotangent in total, to rounding (relative
1e-10 of the largest entry, as in ``test_replay_engine.py``: the sums are taken in another
order). At the solver level, a
discrete adjoint with kept forward sweeps must equal one without them.
"""

from __future__ import annotations

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad

import autodiffeq as ade
from autodiffeq.replay import (
    DeferredCotangents,
    ForwardTape,
    ReplayedFunction,
    float_leaves,
    layout_of,
)

from .test_replay_engine import CASES, assert_close, branch

pytestmark = pytest.mark.filterwarnings("ignore:Output seems independent of input")


def weight_first(u, p, t):  # W @ x layers (the weight on the left), x a vector
    return p["A"] @ anp.tanh(p["B"] @ u + p["c"]) * anp.cos(t)


def weight_first_batched(u, p, t):  # W @ X with X (2, B): columns are the batch
    return p["A"] @ anp.tanh(p["B"] @ u)


def parameter_output(u, p, t):  # part of the output depends on the parameters only
    return anp.concatenate([p[:1] ** 2, u[1:] * p[1:2]])


EXTRA = {
    "weight_first": (weight_first, lambda r: r.standard_normal(3), lambda r: {
        "A": r.standard_normal((3, 4)), "B": r.standard_normal((4, 3)),
        "c": r.standard_normal(4)}),
    "weight_first_batched": (weight_first_batched, lambda r: r.standard_normal((2, 5)),
                             lambda r: {"A": r.standard_normal((2, 3)),
                                        "B": r.standard_normal((3, 2))}),
    "parameter_output": (parameter_output, lambda r: r.standard_normal(2),
                         lambda r: r.standard_normal(2)),
    "branch": (branch, lambda r: r.standard_normal(3), lambda r: r.standard_normal(3)),
}
ALL = {**CASES, **EXTRA}
#: functions whose layers must take the deferred path (not the immediate fallback)
DEFERRED = {"spiral_flat", "spiral_dict", "batch_of_one", "mlp_layers", "matrix_state",
            "weight_first", "weight_first_batched"}


def _immediate_sum(rf, leaves, calls):
    gus, gp = [], None
    for g, u, t in calls:
        _, flat = rf.vjp(g, u, leaves, t)
        gus.append(flat[:rf.n])
        gp = flat[rf.n:] if gp is None else gp + flat[rf.n:]
    return gus, gp


def _calls(f, make_u, p, rng, k):
    out = []
    for j in range(k):
        u = make_u(rng)
        if f is branch:  # both sides of the branch: two recorded paths in one pass
            u = np.abs(u) * (1 if j % 2 else -1)
        t = float(rng.uniform(0, 2))
        out.append((rng.standard_normal(np.shape(f(u, p, t))), u, t))
    return out


def _setup(name, seed, k):
    """``f``, its parameters, ``k`` calls ``(g, u, t)``, its ReplayedFunction and leaves."""
    rng = np.random.default_rng(seed)
    f, make_u, make_p = ALL[name]
    p = make_p(rng)
    calls = _calls(f, make_u, p, rng, k)
    return f, p, calls, ReplayedFunction(f, layout_of(p), np.shape(calls[0][1])), \
        float_leaves(p)


@pytest.mark.parametrize("name", sorted(ALL))
def test_deferred_sweep_sums_to_the_immediate_products(name):
    f, p, calls, rf, leaves = _setup(name, 3, 5)
    gus_ref, gp_ref = _immediate_sum(rf, leaves, calls)
    acc = DeferredCotangents(rf.m)
    vjp_u = rf.bound_vjp_deferred(leaves, acc)
    for (g, u, t), gu_ref in zip(calls, gus_ref, strict=True):
        assert_close(vjp_u(g, u, t), gu_ref, f"{name}: state cotangent")
    total = acc.total()
    if rf.m:
        assert_close(total, gp_ref, f"{name}: parameter cotangent")
    if name in DEFERRED:
        assert any(v.deferred for v in rf.variants), f"{name}: not deferred"


def test_bounded_memory_sums_early_and_still_agrees():
    f, p, calls, rf, leaves = _setup("mlp_layers", 4, 7)
    _, gp_ref = _immediate_sum(rf, leaves, calls)
    acc = DeferredCotangents(rf.m)
    vjp_u = rf.bound_vjp_deferred(leaves, acc)
    for g, u, t in calls:
        vjp_u(g, u, t)
        acc.bound_memory(limit_bytes=1)  # sums at every call
        assert all(not lst for *_, lists in acc._paths.values() for lst in lists)
    assert_close(acc.total(), gp_ref, "parameter cotangent")


def test_taped_evaluations_give_their_own_reverse_sweeps():
    f, p, calls, rf, leaves = _setup("spiral_dict", 5, 4)
    tape = ForwardTape()
    value = rf.bound_taping(leaves, tape)
    for _, u, t in calls:
        assert_close(value(u, t), f(u, p, t), "value")
    gus_ref, gp_ref = _immediate_sum(rf, leaves, calls[1:])
    acc = DeferredCotangents(rf.m)
    for (g, u, t), gu_ref in zip(calls[1:], gus_ref, strict=True):
        back, var, P, kept_leaves = tape.entries[(t, u.tobytes())]
        assert_close(back(g, acc.lists(var, P, kept_leaves)), gu_ref, "state cotangent")
    assert_close(acc.total(), gp_ref, "parameter cotangent")
    # the tape holds what it says and stops at its capacity
    full = ForwardTape(capacity=1)
    value = rf.bound_taping(leaves, full)
    for _, u, t in calls:
        value(u, t)
    assert len(full.entries) == 1


def _spiral_problem():
    H = 16
    rng = np.random.default_rng(0)
    p = {"W1": rng.standard_normal((2, H)) * 0.4, "b1": np.zeros(H),
         "W2": rng.standard_normal((H, 2)) * 0.4, "b2": np.zeros(2)}

    def f(u, p, t):
        return anp.tanh(u ** 3 @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]

    ts = np.linspace(0, 1.5, 8)

    def loss(p):
        sol = ade.solve(ade.ODEProblem(f, np.array([2.0, 0.0]), (0.0, 1.5), p), "Tsit5",
                        saveat=ts, rtol=1e-6, atol=1e-8, sensealg="DiscreteAdjoint")
        return anp.sum(sol.u ** 2)

    return loss, p


def test_discrete_adjoint_with_kept_sweeps_equals_one_without(monkeypatch):
    """The kept forward sweeps are found (the transposed steps form the stage states bit for
    bit as the forward steps did) and change nothing but the cost."""
    import autodiffeq_plugins.discrete_sensitivity.methods as methods

    looked_up = {"hits": 0, "misses": 0}

    class CountingDict(dict):
        def get(self, key, default=None):
            out = dict.get(self, key, default)
            looked_up["hits" if out is not None else "misses"] += 1
            return out

    class CountingTape(ForwardTape):
        def __init__(self, capacity=10**7):
            super().__init__(capacity)
            self.entries = CountingDict()

    loss, p = _spiral_problem()
    monkeypatch.setattr(methods, "ForwardTape", CountingTape)
    with_tape = grad(loss)(p)
    # nearly every stage is found (a stage time rounded differently, or the first
    # evaluation, which records f, is not)
    assert looked_up["misses"] * 5 <= looked_up["hits"], looked_up
    monkeypatch.setattr(methods, "ForwardTape", lambda capacity: None)
    without = grad(loss)(p)
    for k in p:
        assert_close(with_tape[k], without[k], f"dL/d{k}")
