"""Forward sensitivities of an SDE on a fixed Brownian path: the sensitivity equations are an
SDE driven by the same ``W``, solved together with the state by the same solver.

For ``du = f(u, p, t) dt + g(u, p, t) dW`` and a direction ``x_j`` (an entry of ``u0`` or of
``p``), the pathwise derivative ``S_j = du/dx_j`` satisfies (Kunita, *Stochastic Flows and
Stochastic Differential Equations*, 1990, ch. 4: the derivative flow)

    dS_j = (J_f S_j + df/dp_j) dt + (J_g S_j + dg/dp_j) dW,     S_j(t0) = e_j or 0,

in the problem's own interpretation (the derivative of an Itô equation is Itô, of a
Stratonovich one Stratonovich). The augmented state ``[u, S_1, ..., S_k]`` has the noise kind
of the problem: with diagonal or additive noise block ``j`` is driven by the same ``W`` as
``u`` (the path :meth:`~autodiffeq.BrownianPath.tiled`), with scalar and general noise ``W``
itself. Each component of a block depends only on the state component its ``W`` drives (when
``g_i`` depends on ``u_i`` only), so the order-1.5 methods keep their order. With the error
control on ``u`` (``error_control="state"``, the default) the solve takes the plain solve's
steps on the same path, and ``S`` is the derivative of that discrete solution. The products
``J S_j + df/dp_j`` are forward-mode autograd sweeps through ``f`` and ``g`` (written with
``autograd.numpy``), one per direction.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import autodiffeq as ade
from autodiffeq.errors import UnsupportedCombination
from autodiffeq.replay import unflattener
from autodiffeq.sensitivity import ForwardRecord, GradientRequest

from .augmented import sensitivity_record, tiled_tolerances


class AugmentedSDE:
    """The drift and diffusion of ``[u, S_1, ..., S_k]`` (module docstring)."""

    def __init__(self, request: GradientRequest) -> None:
        import autograd.numpy as anp

        prob = request.prob
        if "autograd" not in getattr(request.backend, "capabilities", ()):
            raise UnsupportedCombination(
                "ForwardSensitivity differentiates an SDE's f and g with autograd, which "
                f"backend {request.backend.name!r} lacks", ())
        self.request = request
        self.shape = tuple(prob.shape)
        self.n = n = int(np.prod(self.shape, dtype=np.int64))
        self.n_u0 = n if request.wrt_u0 else 0
        self.m = request.n_p
        self.k = self.n_u0 + self.m
        self.p_flat = request.p_flat if self.m else np.zeros(0)
        unflatten = unflattener(prob.p, anp.reshape)
        params = (lambda q: unflatten(q)) if self.m else (lambda q: prob.p)
        shape = self.shape
        g_shape = (n, int(prob.noise_dim)) if prob.noise == "general" else (n,)
        self.g_shape = g_shape

        def f_flat(u: Any, q: Any, t: float) -> Any:
            return anp.reshape(prob.f(anp.reshape(u, shape), params(q), t), (n,))

        def g_flat(u: Any, q: Any, t: float) -> Any:
            return anp.reshape(prob.g(anp.reshape(u, shape), params(q), t), g_shape)

        self.f_flat, self.g_flat = f_flat, g_flat

    def _columns(self, fn: Any, y: Any, t: float) -> list[Any]:
        """``[fn(u), d fn . (S_1, e_1), ..., d fn . (S_k, e_k)]``."""
        from autograd import make_jvp

        n, k, m = self.n, self.k, self.m
        u = y[:n]
        x = np.concatenate([u, self.p_flat])
        jvp = make_jvp(lambda z: fn(z[:n], z[n:], t))(x)
        out = None
        columns = []
        for j in range(k):
            tangent = np.zeros(n + m)
            tangent[:n] = y[n * (j + 1): n * (j + 2)]
            if j >= self.n_u0:
                tangent[n + j - self.n_u0] = 1.0
            out, d = jvp(tangent)
            columns.append(d)
        if out is None:
            out = fn(u, self.p_flat, t)
        return [out, *columns]

    def drift(self, y: Any, _p: Any, t: float) -> Any:
        return np.concatenate(self._columns(self.f_flat, y, t))

    def diffusion(self, y: Any, _p: Any, t: float) -> Any:
        return np.concatenate(self._columns(self.g_flat, y, t), axis=0)

    def problem(self) -> Any:
        prob = self.request.prob
        s0 = np.zeros((self.k, self.n))
        s0[: self.n_u0, :] = np.eye(self.n_u0, self.n)
        u0 = np.asarray(self.request.backend.to_host(prob.u0), dtype=np.float64).reshape(-1)
        y0 = np.concatenate([u0, s0.reshape(-1)]).astype(np.asarray(prob.u0).dtype)
        return ade.SDEProblem(self.drift, self.diffusion, y0, prob.tspan, None,
                              noise=prob.noise, noise_dim=prob.noise_dim,
                              interpretation=prob.interpretation)


def forward(request: GradientRequest, error_control: str, save_index: Any) -> ForwardRecord:
    """The ForwardSensitivity record of an SDE solve (``record.extra`` as the ODE path)."""
    if request.callbacks:
        raise UnsupportedCombination(
            "ForwardSensitivity does not differentiate SDE solves with callbacks", ())
    aug = AugmentedSDE(request)
    prob, n, k = request.prob, aug.n, aug.k
    path = request.solve_options.get("brownian")
    if path is None:
        path = ade.BrownianPath(prob.tspan, prob.noise_shape,
                                seed=request.solve_options.get("seed"), backend=request.backend)
    aug_path = path.tiled(k + 1) if prob.noise in ("diagonal", "additive") else path
    options: dict[str, Any] = {"brownian": aug_path, "seed": None}
    if error_control == "state":  # the steps of the plain solve: the error sees u only
        options["error_components"] = n
    options.update(tiled_tolerances(request, aug.shape, k))
    aug_prob = aug.problem()
    sol = request.solve(prob=aug_prob, **options)
    sol.W = path
    return sensitivity_record(request, sol, n, k, aug.n_u0, (aug_prob, options), save_index)
