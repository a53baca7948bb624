"""Pathwise derivatives of SDE solves: the discrete solution on a fixed Brownian path.

With the path ``W`` held fixed (``sol.W`` of the forward solve: each step's noise
``(dW_k, I_(1,0),k)`` is a constant), an SDE solve on the accepted grid is the composition of
deterministic step maps

    u_{k+1} = Phi(u_k, p; t_k, dt_k, dW_k, I_k),

(:meth:`functional_sde_step` of the SDE steppers). Its derivatives are the pathwise
derivatives of the numerical solution, which converge to those of the SDE's solution
(Kunita's stochastic flows; Li, Wong, Chen & Duvenaud, "Scalable gradients for stochastic
differential equations", AISTATS 2020). ``ReverseMode`` and ``ForwardMode`` trace the replay
with autograd; ``DiscreteAdjoint`` runs the transposed steps backwards, one autograd VJP of
the step map per step (no global tape).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from autodiffeq.replay import unflattener
from autodiffeq.sde_terms import SDERHS
from autodiffeq.sensitivity import ForwardRecord, GradientRequest

from .stacking import stack_rows


class SDESteps:
    """The step maps of one SDE solve on its path (module docstring)."""

    def __init__(self, request: GradientRequest, record: ForwardRecord) -> None:
        import autograd.numpy as anp

        prob = request.prob
        self.request = request
        self.ts = record.ts
        self.shape = tuple(prob.shape)
        self.n = int(np.prod(self.shape, dtype=np.int64))
        self.n_p = request.n_p
        path = record.solution.W
        self.unflatten = unflattener(prob.p, anp.reshape)
        be = request.backend
        dtype = be.asarray(np.zeros(1)).dtype
        rhs = SDERHS(prob.f, prob.g, prob.p, self.shape, dtype, be, prob, path,
                     convert_f=True, convert_g=True, registry=request.registry)
        self.stepper = request.solver.factory(rhs, be,
                                              **request.solve_options.get("alg_options", {}))
        host = be.to_host
        self.noise = [
            tuple(np.asarray(host(x), dtype=np.float64)
                  for x in path.increment_and_integral(float(self.ts[k]),
                                                       float(self.ts[k + 1])))
            for k in range(len(self.ts) - 1)
        ]
        shape, n = self.shape, self.n
        g_shape = (n, int(prob.noise_dim)) if prob.noise == "general" else (n,)
        user_f, user_g = prob.f, prob.g

        def f_flat(u: Any, p: Any, t: float) -> Any:
            return anp.reshape(user_f(anp.reshape(u, shape), p, t), (n,))

        def g_flat(u: Any, p: Any, t: float) -> Any:
            return anp.reshape(user_g(anp.reshape(u, shape), p, t), g_shape)

        self.f_flat, self.g_flat = f_flat, g_flat

    def params(self, p_flat: Any) -> Any:
        return self.unflatten(p_flat) if self.n_p else self.request.prob.p

    def step(self, k: int, u: Any, p_flat: Any) -> Any:
        t = float(self.ts[k])
        dt = float(self.ts[k + 1]) - t
        return self.stepper.functional_sde_step(self.f_flat, self.g_flat, u,
                                                self.params(p_flat), t, dt, self.noise[k])


def replay_sde(request: GradientRequest, record: ForwardRecord) -> Any:
    """``(u0_flat, p_flat) -> saved states (nsave, n)`` on the forward solve's path."""
    steps = SDESteps(request, record)
    wanted = set(int(i) for i in record.save_index)
    order = list(record.save_index)

    def replay(args: tuple[Any, Any]) -> Any:
        u, p_flat = args
        saved = {0: u} if 0 in wanted else {}
        for k in range(len(steps.ts) - 1):
            u = steps.step(k, u, p_flat)
            if k + 1 in wanted:
                saved[k + 1] = u
        return stack_rows([saved[int(i)] for i in order])

    return replay


def discrete_vjp(request: GradientRequest, record: ForwardRecord, g: Any
                 ) -> tuple[Any, Any]:
    """``DiscreteAdjoint`` on an SDE solve: ``lam_k = (dPhi_k/du)^T lam_{k+1} + g_k`` and
    ``mu += (dPhi_k/dp)^T lam_{k+1}`` from the states kept by the forward solve."""
    from autograd import make_vjp

    steps = SDESteps(request, record)
    be = request.backend
    us = np.asarray(be.to_host(record.us), dtype=np.float64)
    g = np.asarray(be.to_host(g), dtype=np.float64)
    n_steps = len(steps.ts) - 1
    G = np.zeros((n_steps + 1, steps.n))
    np.add.at(G, np.asarray(record.save_index, dtype=np.int64), g)
    p_flat = request.p_flat
    want_p = request.n_p > 0
    lam = G[n_steps].copy()
    mu = np.zeros(request.n_p)
    for k in range(n_steps - 1, -1, -1):
        def one_step(args: tuple[Any, Any], k: int = k) -> Any:
            return steps.step(k, args[0], args[1])

        vjp, _ = make_vjp(one_step)((us[k], p_flat))
        lam_u, lam_p = vjp(lam)
        lam = lam_u + G[k]
        if want_p:
            mu = mu + lam_p
    return lam, (mu if want_p else None)
