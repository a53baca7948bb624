"""The tableau-driven Rosenbrock stepper.

One class runs every method of the family; a method is a :class:`RosenbrockTableau`. A step
from ``(t, u)`` of size ``dt`` (Hairer & Wanner, *Solving ODEs II*, IV.7, (7.24)–(7.25);
VI.4 for ``M``)::

    W = M / (gamma dt) - J                                   factored once per step
    y_i = u + A[i, :i] @ U[:i],   F_i = f(y_i, t + alpha_i dt)
    U[i] = W^{-1} (F_i + M (C[i, :i] @ U[:i]) / dt + gamma_i dt f_t)
    u_new = u + m @ U,            err = (m - mhat) @ U

with the stages ``U`` stacked in one preallocated ``(s, n)`` buffer so that each stage sum is
a single product ``[A[i, :i]; C[i, :i]] @ U[:i]``. ``J`` and ``f_t`` come from
:mod:`.jacobian` once per step point and are reused when the driver retries a rejected step
from the same ``(t, u)`` (only ``W`` is refactored for the new ``dt``). ``f(u_n, t_n)`` is
evaluated lazily at the start of a step, or taken over from a stage evaluated at
``(u_new, t + dt)`` (Rosenbrock23's third stage: first same as last). Stages with the same
argument as an earlier one reuse its ``f`` value.

Dense output: ``u(theta) = u_n + sum_k theta**(k+1) D[k]`` with ``D = P^T @ U`` stored per
step (``P`` from the tableau). Only ``backend.xp`` and the backend's ``lu_factor`` /
``lu_solve`` are used, so the stepper runs on every backend with the ``"lu"`` capability.
"""

from __future__ import annotations

import warnings
from typing import Any

from autodiffeq.backend import Backend
from autodiffeq.stepper import RHS, Stepper

from .jacobian import as_square_matrix, jacobian_source, time_derivative
from .tableau import RosenbrockTableau


class RosenbrockStepper(Stepper):
    """A Rosenbrock method given by a :class:`RosenbrockTableau` (any backend with LU).

    Options:
        jac_mode: ``"auto"`` (the problem's ``jac`` if given, else ``"fd"``), ``"user"``
            (require ``ODEProblem(jac=...)``), ``"fd"`` (second-order finite differences,
            ``2n`` evaluations of ``f``) or ``"fd_forward"`` (first-order, ``n``
            evaluations; cheaper, ``sqrt(eps)``-accurate). See :mod:`.jacobian`.
        autonomous: ``f`` does not depend on ``t``: skip ``f_t`` (otherwise one evaluation
            per step detects an ``f`` that does not change with ``t``, three estimate
            ``f_t``).
    """

    def __init__(
        self,
        tableau: RosenbrockTableau,
        rhs: RHS,
        backend: Backend,
        *,
        jac_mode: str = "auto",
        autonomous: bool = False,
    ) -> None:
        super().__init__(rhs, backend)
        if getattr(rhs.problem, "jac_prototype", None) is not None:
            warnings.warn(
                f"{tableau.name}: ODEProblem(jac_prototype=...) is not used yet by the Rosenbrock "
                "solvers; the Jacobian is formed and factored as a dense matrix",
                UserWarning,
                stacklevel=4,
            )
        xp = backend.xp
        tab = tableau
        self.tableau = tab
        self.order = tab.order
        self.error_order = tab.error_order
        s = tab.stages
        n = rhs.n
        dtype = rhs.dtype
        self.s = s
        self.stats = {"njac": 0, "nfactor": 0, "nlinsolve": 0}
        self._jac = jacobian_source(rhs, jac_mode)
        if not isinstance(autonomous, bool):
            raise TypeError(f"autonomous must be True or False, got {autonomous!r}")
        self._autonomous = autonomous
        self._dot = backend.dot
        self._lu_factor = backend.lu_factor
        self._lu_solve = backend.lu_solve

        mass = getattr(rhs.problem, "mass_matrix", None)
        self._M = None if mass is None else as_square_matrix(
            mass, backend, dtype, n, "mass_matrix"
        )
        self._eye = xp.eye(n, dtype=dtype) if self._M is None else None
        self._inv_gamma = 1.0 / float(tab.gamma)

        # per stage: [A[i, :i]; C[i, :i]] as one (2, i) block, and which parts are nonzero
        self._alpha = [float(a) for a in tab.alpha]
        self._gammas = [float(g) for g in tab.gammas]
        self._sources = tab.stage_sources()
        self._blocks: list[Any] = [None]
        self._has_c: list[bool] = [False]
        for i in range(1, s):
            rows = [[float(x) for x in tab.A[i, :i]], [float(x) for x in tab.C[i, :i]]]
            self._blocks.append(backend.asarray(rows, dtype=dtype))
            self._has_c.append(any(x != 0.0 for x in rows[1]))
        self._needed = {src for i, src in enumerate(self._sources) if src != i}
        weights = [[float(x) for x in tab.m]]
        self.adaptive = tab.m_error is not None
        if self.adaptive:
            weights.append([float(x) for x in tab.m_error])
        self._weights = backend.asarray(weights, dtype=dtype)
        self._fsal = tab.fsal_stage
        self._K = xp.zeros((s, n), dtype=dtype)
        self._Kp = [self._K[:i, ...] for i in range(s + 1)]

        if tab.dense is not None:
            P = tab.dense
            self._PT = backend.asarray(
                [[float(P[i, k]) for i in range(s)] for k in range(P.shape[1])], dtype=dtype
            )
            self._powers = backend.asarray(
                [float(k + 1) for k in range(P.shape[1])], dtype=dtype
            )
        else:
            self._PT = None

        # f(u_n, t_n) and the linearisation (J, f_t) at the current step point
        self._f0: Any = None
        self._f0_key: tuple[float, Any] | None = None
        self._lin_key: tuple[float, Any] | None = None
        self._J: Any = None
        self._ft: Any = None
        self._fsal_f: Any = None
        self._rho: tuple[Any, float] | None = None

    # ---------------------------------------------------------------- lifecycle
    def init(self, t0: float, u0: Any, f0: Any) -> None:
        self._f0 = self._keep(f0)
        self._f0_key = (t0, u0)
        self._lin_key = None
        self._fsal_f = None

    def accept(self, t_new: float, u_new: Any) -> None:
        if self._fsal_f is not None:
            self._f0 = self._fsal_f
            self._f0_key = (t_new, u_new)
        self._fsal_f = None

    def _keep(self, value: Any) -> Any:
        """A private copy of an ``f`` value that must outlive later calls of ``f`` (a user's
        ``f`` may return the same output buffer every time)."""
        return self.xp.asarray(value, copy=True)

    def _f_at(self, t: float, u: Any) -> Any:
        key = self._f0_key
        if key is None or key[0] != t or key[1] is not u:
            self._f0 = self._keep(self.rhs.f(u, t))
            self.nf += 1
            self._f0_key = (t, u)
        return self._f0

    def _linearise(self, t: float, u: Any, f0: Any, dt: float) -> None:
        """``J`` and ``f_t`` at ``(t, u)`` unless already computed there (a retried step)."""
        key = self._lin_key
        if key is not None and key[0] == t and key[1] is u:
            return
        if not (self._jac.constant and self._J is not None):
            self._J, nf = self._jac(u, t, f0)
            self.nf += nf
            self.stats["njac"] += 1
        if self._autonomous:
            self._ft = None
        else:
            self._ft, nf = time_derivative(self.rhs, u, t, f0, dt)
            self.nf += nf
        self._lin_key = (t, u)

    @property
    def eigen_estimate(self) -> float | None:  # type: ignore[override]
        """``||J||_inf`` at the start of the last step, a bound on the spectral radius of
        ``df/du`` (the Stepper contract's estimate for stiffness-switching composites);
        ``None`` before the first step and with a mass matrix (the eigenvalues are then
        those of ``M^{-1} J``). Computed on first access for each Jacobian."""
        J = self._J
        if J is None or self._M is not None:
            return None
        if self._rho is None or self._rho[0] is not J:
            xp = self.xp
            self._rho = (J, float(xp.max(xp.sum(xp.abs(J), axis=1))))
        return self._rho[1]

    # --------------------------------------------------------------------- step
    def step(self, t: float, u: Any, dt: float) -> tuple[Any, Any]:
        f0 = self._f_at(t, u)
        self._linearise(t, u, f0, dt)
        scale = self._inv_gamma / dt
        W = (self._eye if self._M is None else self._M) * scale - self._J
        lu = self._lu_factor(W)
        self.stats["nfactor"] += 1
        solve = self._lu_solve
        dot = self._dot
        K = self._K
        Kp = self._Kp
        M = self._M
        ft = self._ft
        fp = self.rhs.fp
        p = self.rhs.p
        inv_dt = 1.0 / dt
        fvals: dict[int, Any] = {0: f0}
        needed = self._needed
        fsal = self._fsal
        y_fsal = None
        for i in range(self.s):
            if i == 0:
                r = f0
            else:
                sums = dot(self._blocks[i], Kp[i])
                src = self._sources[i]
                if src != i:
                    r = fvals[src]
                else:
                    y = u + sums[0, ...]
                    r = fp(y, p, t + self._alpha[i] * dt)
                    self.nf += 1
                    if i in needed:
                        r = fvals[i] = self._keep(r)
                    if i == fsal:
                        y_fsal = y
                        r = self._fsal_f = self._keep(r)
                if self._has_c[i]:
                    cu = sums[1, ...] * inv_dt
                    r = r + (cu if M is None else M @ cu)
            g = self._gammas[i]
            if g != 0.0 and ft is not None:
                r = r + (g * dt) * ft
            K[i, ...] = solve(lu, r)
        self.stats["nlinsolve"] += self.s
        update = dot(self._weights, K)
        u_new = u + update[0, ...] if y_fsal is None else y_fsal
        err = update[1, ...] if self.adaptive else None
        return u_new, err

    # ------------------------------------------------------------ dense output
    def dense_data(self) -> Any:
        if self._PT is None:
            return None
        return self._dot(self._PT, self._K)

    def interpolate(self, theta: Any, dt: Any, u0: Any, u1: Any, data: Any) -> Any:
        if data is None:
            return super().interpolate(theta, dt, u0, u1, data)
        powers = theta[:, None] ** self._powers[None, :]  # (m, deg)
        return u0 + (powers[:, None, :] @ data)[:, 0, :]
