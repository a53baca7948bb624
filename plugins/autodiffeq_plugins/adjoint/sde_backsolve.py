"""The stochastic adjoint (``BacksolveAdjoint`` on SDE solves): the adjoint SDE solved
backwards on the forward solve's Brownian path (Li, Wong, Chen & Duvenaud, "Scalable gradients
for stochastic differential equations", AISTATS 2020 — the method of torchsde's
``sdeint_adjoint``).

In Stratonovich form, ``du = b(u, p, t) dt + g(u, p, t) o dW`` (for an Itô problem
``b = f - c/2`` with the Itô–Stratonovich correction ``c_i = sum_j g_j dg_i/du_j``: for
diagonal noise with ``g_i`` depending on ``u_i`` only ``c = g * dg/du`` (elementwise), for
scalar noise ``c = J_g g``, for additive noise ``c = 0``), the loss gradient ``a = dL/du(t)``
and ``a_p = dL/dp`` obey, backwards from ``a(T) = dL/du(T)``, ``a_p(T) = 0``,

    du   =  b dt + g o dW,
    da   = -(J_b^T a) dt - sum_i a_i grad_u g_i o dW_i,
    da_p = -(J_{b,p}^T a) dt - sum_i a_i grad_p g_i o dW_i,

a Stratonovich SDE in ``(u, a, a_p)`` driven by the same ``W``: time reversal of a Stratonovich
equation reads the path backwards. It is integrated by the stochastic Heun method on the
forward solve's steps (from ``t_{k+1}`` to ``t_k``, ``dW = W(t_k) - W(t_{k+1})``), adding the
saved states' cotangents at their times; the noise terms are vector–Jacobian products of
``g`` with ``a * dW`` (one reverse sweep). The backward ``u`` is reset to the forward solve's
state at the saved times when ``checkpointing`` is on (SciMLSensitivity's default).

Its error is that of the Heun method on the adjoint SDE (strong order 1 for commutative noise,
0.5 in general), independent of the forward method's order: the discrete methods
(``DiscreteAdjoint``, ``ForwardSensitivity``) give the exact derivative of the computed
solution instead. Memory: the saved states and the path.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from autodiffeq.errors import UnsupportedCombination
from autodiffeq.replay import unflattener
from autodiffeq.sensitivity import ForwardRecord, GradientRequest, record_from_solution


def forward(request: GradientRequest) -> ForwardRecord:
    if request.prob.noise == "general":
        raise UnsupportedCombination(
            "BacksolveAdjoint on SDEs handles diagonal, scalar and additive noise; for general "
            "noise use the discrete methods", ("DiscreteAdjoint", "ForwardSensitivity",
                                              "ReverseMode"))
    if "autograd" not in getattr(request.backend, "capabilities", ()):
        raise UnsupportedCombination(
            f"BacksolveAdjoint on SDEs differentiates f and g with autograd, which backend "
            f"{request.backend.name!r} lacks", ())
    return record_from_solution(request, request.solve())


class _AdjointTerms:
    """The drift and noise terms of the adjoint SDE in ``(u, a, a_p)`` (module docstring)."""

    def __init__(self, request: GradientRequest) -> None:
        import autograd.numpy as anp
        from autograd import elementwise_grad, make_jvp

        prob = request.prob
        self.n = n = request.n
        self.m = request.n_p
        shape = tuple(prob.shape)
        params = unflattener(prob.p, anp.reshape) if self.m else (lambda q: prob.p)
        noise = prob.noise

        def f(u: Any, q: Any, t: float) -> Any:
            return anp.reshape(prob.f(anp.reshape(u, shape), params(q), t), (n,))

        def g(u: Any, q: Any, t: float) -> Any:
            return anp.reshape(prob.g(anp.reshape(u, shape), params(q), t), (n,))

        if prob.interpretation == "stratonovich" or noise == "additive":
            b = f
        elif noise == "diagonal":
            def b(u: Any, q: Any, t: float) -> Any:
                dg = elementwise_grad(lambda v: g(v, q, t))(u)
                return f(u, q, t) - 0.5 * g(u, q, t) * dg
        else:  # scalar: c = J_g g
            def b(u: Any, q: Any, t: float) -> Any:
                gu = g(u, q, t)
                _, jg = make_jvp(lambda v: g(v, q, t))(u)(gu)
                return f(u, q, t) - 0.5 * jg
        self.b, self.g = b, g
        self.scalar = noise == "scalar"
        self.p_flat = request.p_flat if self.m else np.zeros(0)

    def _vjp(self, fn: Any, u: Any, t: float, v: Any) -> tuple[Any, Any, Any]:
        from autograd import make_vjp

        vjp, value = make_vjp(lambda x: fn(x[: self.n], x[self.n:], t))(
            np.concatenate([u, self.p_flat]))
        both = vjp(v)
        return value, both[: self.n], both[self.n:]

    def drift(self, u: Any, a: Any, t: float) -> tuple[Any, Any, Any]:
        value, au, ap = self._vjp(self.b, u, t, a)
        return value, -au, -ap

    def noise(self, u: Any, a: Any, t: float, dw: Any) -> tuple[Any, Any, Any]:
        weight = a * dw if not self.scalar else a * dw[0]
        value, au, ap = self._vjp(self.g, u, t, weight)
        return value * dw, -au, -ap


def vjp(request: GradientRequest, record: ForwardRecord, g: Any,
        checkpointing: bool) -> tuple[Any, Any]:
    """The adjoint SDE backwards over the forward steps (module docstring)."""
    be = request.backend
    path = record.solution.W
    terms = _AdjointTerms(request)
    ts = record.ts
    us = np.asarray(be.to_host(record.us), dtype=np.float64)
    G = record.step_cotangents(g, be)
    saved = set(int(i) for i in record.save_index)
    n_steps = len(ts) - 1
    u = us[n_steps].copy()
    a = G[n_steps].copy()
    ap = np.zeros(terms.m)
    for k in range(n_steps - 1, -1, -1):
        t, t_new = float(ts[k + 1]), float(ts[k])
        h = t_new - t
        dw = np.asarray(be.to_host(path.increment(t, t_new)), dtype=np.float64)
        fu, fa, fp = terms.drift(u, a, t)
        gu, ga, gp = terms.noise(u, a, t, dw)
        u1, a1 = u + h * fu + gu, a + h * fa + ga
        fu1, fa1, fp1 = terms.drift(u1, a1, t_new)
        gu1, ga1, gp1 = terms.noise(u1, a1, t_new, dw)
        u = u + 0.5 * h * (fu + fu1) + 0.5 * (gu + gu1)
        a = a + 0.5 * h * (fa + fa1) + 0.5 * (ga + ga1)
        ap = ap + 0.5 * h * (fp + fp1) + 0.5 * (gp + gp1)
        if k in saved:
            a = a + G[k]
            if checkpointing:
                u = us[k].copy()
    dtype = record.us.dtype
    g_u0 = be.asarray(a, dtype=dtype) if request.wrt_u0 else None
    g_p = be.asarray(ap, dtype=dtype) if request.n_p else None
    return g_u0, g_p
