"""Forward sensitivities of a delay equation: the sensitivity equations are a delay equation
with the same lags, solved together with the state by the same solver.

For ``u' = f(u, h, p, t)`` and a direction ``x_j`` (an entry of ``u0`` or of ``p``), the
sensitivity ``S_j = du/dx_j`` satisfies

    S_j'(t) = d/de f(u + e S_j, h + e H_j, p + e dp_j, t)  at e = 0,

where ``H_j(s) = S_j(s)`` is the sensitivity's own history: for ``s > t0`` the solution's
(looked up exactly like ``u``'s own past), for ``s <= t0`` the derivative of the history,
``dh(p, s)/dp_j`` for a parameter and ``0`` for an entry of ``u0`` (``u0`` is an input of its
own; where it was taken from the history, autograd carries its dependence on ``p``), with
``S_j(t0) = e_j`` for ``u0`` and ``0`` for ``p`` (Bellen & Zennaro, *Numerical Methods for
Delay Differential Equations*, 2003; Hale & Verduyn Lunel, *Introduction to Functional
Differential Equations*, 1993, ch. 2: differentiability with respect to initial data and
parameters). With more directions than state components, ``S'`` comes from the Jacobian of
``f`` with respect to the state, the history values it read and ``p``: ``n`` reverse sweeps of
one autograd recording; otherwise each direction is one forward-mode sweep through ``f``
(written with ``autograd.numpy``); ``h``'s parameter derivatives are forward sweeps. The
augmented state ``[u, S_1, ..., S_k]`` is an ordinary delay equation for the registered
delay-equation solvers, with the problem's own constant and dependent lags: its
discontinuities are the state's.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

import autodiffeq as ade
from autodiffeq.errors import UnsupportedCombination
from autodiffeq.sensitivity import ForwardRecord, GradientRequest

from .augmented import sensitivity_record, tiled_tolerances


def _forward_derivative(fn: Any) -> Any:
    from autograd import make_jvp

    def derivative(x: float) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Output seems independent of input"
            return make_jvp(fn)(x)(1.0)[1]

    return derivative


class AugmentedDelayEquation:
    """``[u, S_1, ..., S_k]`` of a :class:`~autodiffeq.DDEProblem` (module doc)."""

    def __init__(self, request: GradientRequest) -> None:
        prob = request.prob
        if request.backend.name != "numpy" and "autograd" not in request.backend.capabilities:
            raise UnsupportedCombination(
                "ForwardSensitivity differentiates a delay equation's f with autograd, which "
                f"backend {request.backend.name!r} does not support", ())
        self.request = request
        self.prob = prob
        self.shape = tuple(prob.shape)
        self.n = int(np.prod(self.shape, dtype=np.int64))
        self.n_u0 = self.n if request.wrt_u0 else 0
        self.m = request.n_p
        self.k = self.n_u0 + self.m
        self.p_flat = request.p_flat
        self.t0 = float(prob.tspan[0])
        import autograd.numpy as anp

        from autodiffeq.replay import unflattener

        p = prob.p
        self._p_of = unflattener(p, anp.reshape) if self.m else (lambda flat: p)

    # ------------------------------------------------------------------ pieces
    def _direction(self, j: int) -> np.ndarray:
        """``dp`` of direction ``j`` (zero for a ``u0`` direction)."""
        dp = np.zeros(self.m)
        if j >= self.n_u0:
            dp[j - self.n_u0] = 1.0
        return dp

    def history(self, p_aug: Any, s: float) -> np.ndarray:
        """``[h(p, s), dh/dx_1, ..., dh/dx_k]`` (flat) for ``s < t0``."""
        h, p0 = self.prob.h, self.p_flat
        base = np.reshape(np.asarray(h(self._p_of(p0), s), dtype=np.float64), -1)
        parts = [base, np.zeros(self.n_u0 * self.n)]
        for j in range(self.n_u0, self.k):
            dp = self._direction(j)
            d = _forward_derivative(lambda e, dp=dp: h(self._p_of(p0 + e * dp), s))(0.0)
            parts.append(np.reshape(np.asarray(d, dtype=np.float64), -1) * np.ones(self.n))
        return np.concatenate(parts)

    def f(self, U: Any, H: Any, p_aug: Any, t: float) -> np.ndarray:
        n, k, shape = self.n, self.k, self.shape
        f, p0 = self.prob.f, self.p_flat
        u = np.reshape(U[:n], shape)
        S = np.reshape(U[n:], (k, n))
        reads: list[tuple[float, Any]] = []

        def h_u(p_: Any, s: float) -> Any:
            full = H(p_aug, s)
            reads.append((float(s), full))
            return np.reshape(full[:n], shape)

        value = np.reshape(np.asarray(f(u, h_u, self._p_of(p0), t), dtype=np.float64), -1)
        if k > n:  # more directions than outputs: n reverse sweeps of one recording
            rates = self._rates_by_rows(u, S, reads, t)
            if rates is not None:
                return np.concatenate([value, rates.reshape(-1)])
        out = [value]
        for j in range(k):
            dp = self._direction(j)
            Sj = np.reshape(S[j], shape)

            def along(e: Any, j: int = j, dp: Any = dp, Sj: Any = Sj) -> Any:
                def h_e(p_: Any, s: float) -> Any:
                    full = H(p_aug, s)
                    return (np.reshape(full[:n], shape)
                            + e * np.reshape(full[n * (1 + j):n * (2 + j)], shape))

                return f(u + e * Sj, h_e, self._p_of(p0 + e * dp), t)

            d = _forward_derivative(along)(0.0)
            out.append(np.reshape(np.asarray(d, dtype=np.float64), -1) * np.ones(n))
        return np.concatenate(out)

    def _rates_by_rows(self, u: Any, S: Any, reads: list[tuple[float, Any]], t: float
                       ) -> np.ndarray | None:
        """``S' (k, n)`` from the Jacobian of ``f`` with respect to the state, the history
        values it read (at the times ``reads`` recorded) and ``p``, by ``n`` reverse sweeps of
        one autograd recording (instead of ``k`` forward sweeps):

            S_j' = J_u S_j + sum_l J_{h_l} S_j(s_l) + J_p dp_j.

        ``None`` when ``f`` reads its history differently when traced (other times or
        order): the forward sweeps are used then."""
        import autograd.numpy as anp
        from autograd import jacobian

        n, m, shape, f, p0 = self.n, self.m, self.shape, self.prob.f, self.p_flat
        L = len(reads)
        times = [s for s, _ in reads]
        hv0 = np.concatenate([np.reshape(full[:n], -1) for _, full in reads]) if L else \
            np.zeros(0)
        x0 = np.concatenate([np.reshape(u, -1), hv0, p0])

        class _Mismatch(Exception):
            pass

        def g(x: Any) -> Any:
            uu, hv, pp = x[:n], x[n:n + L * n], x[n + L * n:]
            count = [0]

            def h_g(p_: Any, s: float) -> Any:
                i = count[0]
                count[0] += 1
                if i >= L or float(s) != times[i]:
                    raise _Mismatch
                return anp.reshape(hv[i * n:(i + 1) * n], shape)

            return anp.reshape(f(anp.reshape(uu, shape), h_g, self._p_of(pp), t), (n,))

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                J = np.asarray(jacobian(g)(x0), dtype=np.float64).reshape(n, -1)
        except _Mismatch:
            return None
        J_u, J_p = J[:, :n], J[:, n + L * n:]
        rates = S @ J_u.T
        for i, (_, full) in enumerate(reads):
            hs = np.reshape(full[n:], (self.k, n))  # the directions' histories at s_i
            rates = rates + hs @ J[:, n + i * n:n + (i + 1) * n].T
        if m:
            rates[self.n_u0:, :] += J_p.T
        return rates

    def problem(self) -> Any:
        """The augmented :class:`~autodiffeq.DDEProblem`."""
        n, k = self.n, self.k
        u0 = np.reshape(np.asarray(self.prob.u0, dtype=np.float64), -1)
        s0 = np.zeros((k, n))
        s0[: self.n_u0, :] = np.eye(self.n_u0, n)
        U0 = np.concatenate([u0, s0.reshape(-1)])
        prob = self.prob
        dep = tuple(
            (lambda U, p_, t, tau=tau: tau(np.reshape(U[:n], self.shape), prob.p, t))
            for tau in prob.dependent_lags)
        return ade.DDEProblem(self.f, U0, self.history, prob.tspan, None,
                              constant_lags=prob.constant_lags, dependent_lags=dep)


def forward(request: GradientRequest, error_control: str,
            save_index: Any) -> ForwardRecord:
    """The ForwardSensitivity record of a delay equation (``record.extra`` as the ODE path:
    ``st`` the saved sensitivities ``(nsave, k, n)``, ``n_u0``, ``k``)."""
    if request.callbacks:
        raise UnsupportedCombination(
            "ForwardSensitivity does not differentiate delay equations with callbacks", ())
    aug = AugmentedDelayEquation(request)
    n, k = aug.n, aug.k
    options: dict[str, Any] = {}
    if error_control == "state":  # the steps of the plain solve: the error sees u only
        options["error_components"] = n
    options.update(tiled_tolerances(request, aug.shape, k))
    aug_prob = aug.problem()
    sol = request.solve(prob=aug_prob, **options)
    # a delay equation's solve keeps its dense history: sol(t) of the augmented state
    # without solving again
    return sensitivity_record(request, sol, n, k, aug.n_u0, (aug_prob, options), save_index,
                              dense=sol)
