"""The tableau-driven Rosenbrock stepper.

One class runs every method of the family; a method is a :class:`RosenbrockTableau`. A step
from ``(t, u)`` of size ``dt`` (Hairer & Wanner, *Solving ODEs II*, IV.7, (7.24)–(7.25);
VI.4 for ``M``)::

    W = M / (gamma dt) - J                                   factored once per step
    y_i = u + A[i, :i] @ U[:i],   F_i = f(y_i, t + alpha_i dt)
    U[i] = W^{-1} (F_i + M (C[i, :i] @ U[:i]) / dt + gamma_i dt f_t)
    u_new = u + m @ U,            err = (m - mhat) @ U

Implementation: ``u``, ``f_t`` and the stages live in one preallocated ``(s + 2, n)`` matrix
``K = [u; f_t; U_1; ...; U_s]``, and each stage's two sums are one product with a ``(2, i + 2)``
coefficient block ``[[1, 0, A[i, :i]], [0, gamma_i dt, C[i, :i] / dt]]`` (with a mass matrix,
three rows: the ``C`` part is multiplied by ``M``). The blocks of all stages are refreshed in
place once per step for the new ``dt`` and read through views made at construction, so a stage
costs one small matrix product, one ``f`` call, one addition and one LU solve. ``u_new`` and
``err`` come from one more product with ``[[1, 0, m], [0, 0, m - mhat]]`` (for the stiffly
accurate Rodas methods, ``u_new = y_s + U_s`` and ``err`` is one stage: no product). On NumPy
with a dense ``J`` and no mass matrix the products write into per-stage buffers and the solves
work in place (:meth:`RosenbrockStepper._step_lapack`).

``J`` comes from :mod:`.jacobian` (user, autograd or finite differences, dense or sparse) once
per step point and is reused when the driver retries a rejected step from the same ``(t, u)``;
``f_t`` likewise (from ``ODEProblem(tgrad=...)``, by finite differences, or not at all for an
autonomous ``f``, detected once at the first step). ``f(u_n, t_n)`` is
evaluated lazily at the start of a step, or taken over from a stage evaluated at
``(u_new, t + dt)`` (Rosenbrock23's third stage: first same as last). Stages with the same
argument as an earlier one reuse its ``f`` value.

Linear algebra: with a dense ``J``, ``W`` is a dense backend array factored by the backend's
``lu_factor`` (LAPACK ``getrf`` on NumPy). With a sparse ``J`` (a ``scipy.sparse`` ``jac``, or
``ODEProblem(jac_prototype=...)`` with colour-compressed differences) on a backend with
capability ``"sparse"``, ``W = M / (gamma dt) - J`` is assembled as a sparse CSC matrix
(``M`` sparse or the sparse identity) and the same ``lu_factor`` hands it to SuperLU
(``splu``). Backends without ``"sparse"`` get the Jacobian densified and factor densely (the
declared fallback; see the plugin's module docstring).

Dense output: ``u(theta) = u_n + sum_k theta**(k+1) D[k]`` with ``D = P^T @ U`` stored per
step (``P`` from the tableau).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from autodiffeq.backend import Backend
from autodiffeq.controller import PredictiveController
from autodiffeq.derivatives import TIME_FD_FRACTION, TIME_FD_ORDER, derivative_weights
from autodiffeq.jacobians import (
    TimeDerivative,
    as_square_matrix,
    jacobian_source,
    sparse_namespace,
)
from autodiffeq.stepper import RHS, Stepper, power_interpolant

from .tableau import RosenbrockTableau


class RosenbrockStepper(Stepper):
    """A Rosenbrock method given by a :class:`RosenbrockTableau` (any backend with LU).

    Options:
        jac_mode: where ``J`` comes from: ``"auto"`` (the problem's ``jac`` if given, else
            colour-compressed differences if it has a ``jac_prototype``, else ``"fd"``),
            ``"user"``, ``"autograd"``, ``"fd"`` (second-order differences, ``2n``
            evaluations of ``f``), ``"fd_forward"`` (first order, ``n`` evaluations) or
            ``"sparse_fd"``. See :mod:`.jacobian`.
        autonomous: ``True``: ``f`` does not depend on ``t``, skip ``f_t``; ``False``: always
            compute ``f_t`` (from ``ODEProblem(tgrad=...)`` or by differences); ``None``
            (default): ``tgrad`` if given, else decide once at the start by probing ``f``
            (:func:`.jacobian.looks_autonomous`, a few evaluations).

    Step sizes: Gustafsson's predictive controller
    (:class:`~autodiffeq.controller.PredictiveController`), as Hairer's RODAS uses, rather
    than the PI controller of the explicit methods. On the stiff benchmark problems it
    reaches the same errors in 5-40 % less time (fewer steps in the fast transitions of Van
    der Pol and the early transient of ROBER).
    """

    controller_class = PredictiveController

    def __init__(
        self,
        tableau: RosenbrockTableau,
        rhs: RHS,
        backend: Backend,
        *,
        jac_mode: str = "auto",
        autonomous: bool | None = None,
    ) -> None:
        super().__init__(rhs, backend)
        xp = backend.xp
        tab = tableau
        self.tableau = tab
        self.order = tab.order
        self.error_order = tab.error_order
        s = tab.stages
        n = rhs.n
        dtype = rhs.dtype
        self.s = s
        self._njac = 0
        self._nfactor = 0  # one factorisation and s linear solves per step attempt
        self._tder = TimeDerivative(rhs, autonomous)
        self._jac = jacobian_source(rhs, jac_mode)
        self._sparse = sparse_namespace(backend)
        self._dense_type = backend.array_type or ()
        self._dot = backend.dot
        self._lu_factor = backend.lu_factor
        self._lu_solve = backend.lu_solve

        mass = getattr(rhs.problem, "mass_matrix", None)
        self._has_mass = mass is not None
        self._M: Any = None  # dense M (backend array), made on demand
        self._M_sparse: Any = None  # sparse M, made on demand
        if mass is not None:
            if self._sparse is not None and self._sparse.issparse(mass):
                if tuple(mass.shape) != (n, n):
                    as_square_matrix(mass, backend, dtype, n, "mass_matrix")  # raises
                self._M_sparse = self._sparse.csc_matrix(mass, dtype=backend.host_dtype(dtype))
            else:
                self._M = as_square_matrix(mass, backend, dtype, n, "mass_matrix")
        self._eye: Any = None  # dense identity, made on demand
        self._sparse_w: SparseW | None = None
        self._inv_gamma = 1.0 / float(tab.gamma)

        # coefficient blocks over K = [u; f_t; U_1..U_s]: rows (y, C-part [, gamma-part])
        rows = 3 if self._has_mass else 2
        host_A = [[[0.0] * (s + 2) for _ in range(rows)] for _ in range(s)]
        host_C = [[[0.0] * (s + 2) for _ in range(rows)] for _ in range(s)]
        host_G = [[[0.0] * (s + 2) for _ in range(rows)] for _ in range(s)]
        grow = rows - 1  # the row carrying gamma_i dt f_t
        self._alpha = [float(a) for a in tab.alpha]
        self._gammas = [float(g) for g in tab.gammas]
        self._has_c: list[bool] = []
        for i in range(s):
            host_A[i][0][0] = 1.0
            for j in range(i):
                host_A[i][0][j + 2] = float(tab.A[i, j])
                host_C[i][1][j + 2] = float(tab.C[i, j])
            host_G[i][grow][1] = float(tab.gammas[i])
            self._has_c.append(any(float(tab.C[i, j]) != 0.0 for j in range(i)))
        # only rows 1.. depend on dt; they are refreshed in place, row 0 is constant
        self._TC = backend.asarray([blk[1:] for blk in host_C], dtype=dtype)
        self._TG = backend.asarray([blk[1:] for blk in host_G], dtype=dtype)
        self._T = backend.asarray(host_A, dtype=dtype)
        self._T_dt: float | None = None
        self._T_ft = False
        self._T_lower = self._T[:, 1:, :]
        self._Tv = [self._T[i, :, : i + 2] for i in range(s)]
        self._sources = tab.stage_sources()
        self._needed = {src for i, src in enumerate(self._sources) if src != i}
        self._evals = sum(1 for i, src in enumerate(self._sources) if i > 0 and src == i)
        weights = [[1.0, 0.0] + [float(x) for x in tab.m]]
        self.adaptive = tab.m_error is not None
        if self.adaptive:
            weights.append([0.0, 0.0] + [float(x) for x in tab.m_error])
        self._weights = backend.asarray(weights, dtype=dtype)
        self._fsal = tab.fsal_stage
        self._K = xp.zeros((s + 2, n), dtype=dtype)
        self._Kv = [self._K[: i + 2, ...] for i in range(s)]
        self._rows = [self._K[j, ...] for j in range(s + 2)]  # row views (NumPy fast path)
        self._U = self._K[2:, ...]
        self._ft_row_zero = True
        # per stage i >= 1, without and with f_t: (i, alpha_i, source stage, keep F_i, is
        # the FSAL stage, what to add to F_i: 0 nothing, 1 the second row of the sums; with a
        # mass matrix bit 2: M times the second row, bit 4: the third row)
        self._plans = (self._stage_plan(False), self._stage_plan(True))
        # the NumPy fast path (see :meth:`_step_lapack`): per stage its bound product with the
        # whole coefficient block ``T[i].dot`` (contiguous, so the product goes straight to
        # BLAS: 0.25 us against 0.45 us for the strided ``T[i, :, :i + 2]``; the view sees
        # the in-place refreshes of T, and the columns of later stages are zero), the whole
        # stage buffer, the sums buffer with its rows (stage state, right-hand-side
        # addition), and the stage's row of the stage buffer
        self._fast_plans: tuple[tuple[Any, ...], ...] | None = None
        kernels = getattr(backend, "dense_lapack", None)
        if type(self._K) is np.ndarray and not self._has_mass and kernels is not None:
            self._getrf, self._getrs = kernels(self._K.dtype)
            self._eye = np.eye(n, dtype=self._K.dtype)
            sums = np.zeros((s, 2, n), dtype=self._K.dtype)
            self._fast_plans = tuple(
                tuple((self._T[i].dot, self._K, sums[i], sums[i, 0], sums[i, 1], alpha,
                       self._rows[i + 2], None if (src == i and not kept and not fsal)
                       else (i, src, kept, fsal, add))
                      for i, alpha, src, kept, fsal, add in plan)
                for plan in self._plans
            )
        # u_new = y_s + U_s when m = [A[s-1, :s-1], 1] (stiffly accurate, the Rodas methods),
        # and err = U_k when m - mhat = e_k: no weight products
        m = [float(x) for x in tab.m]
        last = s - 1
        self._u_from_last = (
            self._fsal is None and s > 1 and self._sources[last] == last
            and m[last] == 1.0 and all(m[j] == float(tab.A[last, j]) for j in range(last))
        )
        self._err_row: int | None = None
        if self.adaptive:
            me = [float(x) for x in tab.m_error]
            units = [k for k, x in enumerate(me) if x != 0.0]
            if len(units) == 1 and me[units[0]] == 1.0:
                self._err_row = units[0] + 2
        self._last_stage_finish = self._u_from_last and self._err_row is not None

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
        self._J_is_sparse = False
        self._ft: Any = None
        self._fsal_f: Any = None
        self._rho: tuple[Any, float] | None = None

    def _stage_plan(self, with_ft: bool) -> tuple[tuple[int, float, int, bool, bool, int], ...]:
        plan = []
        for i in range(1, self.s):
            src = self._sources[i]
            c_part = self._has_c[i]
            g_part = with_ft and self._gammas[i] != 0.0
            if self._has_mass:
                add = (2 if c_part else 0) + (4 if g_part else 0)
            else:
                add = 1 if (c_part or g_part) else 0
            plan.append((i, self._alpha[i], src, src == i and i in self._needed,
                         src == i and i == self._fsal, add))
        return tuple(plan)

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

    @property  # type: ignore[override]
    def stats(self) -> dict[str, int]:
        """Jacobians, LU factorisations and linear solves so far (``Solution.stats``)."""
        return {"njac": self._njac, "nfactor": self._nfactor,
                "nlinsolve": self._nfactor * self.s}

    @stats.setter
    def stats(self, value: dict[str, int]) -> None:
        self._njac = int(value.get("njac", 0))
        self._nfactor = int(value.get("nfactor", 0))

    @property
    def jac_mode(self) -> str:
        """The resolved Jacobian source (``"user"``, ``"autograd"``, ``"fd"``, ...)."""
        return self._jac.mode

    @property
    def sparse_jacobian(self) -> bool:
        """Whether the last Jacobian (and so ``W`` and its LU) was sparse."""
        return self._J_is_sparse

    @property
    def autonomous(self) -> bool:
        """Whether ``f_t`` is skipped (forced, or detected at the first step)."""
        return bool(self._tder.autonomous)

    def _keep(self, value: Any) -> Any:
        """A private copy of an ``f`` value that must outlive later calls of ``f`` (a user's
        ``f`` may return the same output buffer every time)."""
        return self.xp.asarray(value, copy=True)

    def _f_at(self, t: float, u: Any) -> Any:
        """``f(u, t)``, evaluated (the caller found no value for this point) and kept."""
        rhs = self.rhs
        f0 = self._f0 = self._keep(rhs.fp(u, rhs.p, t))
        self.nf += 1
        self._f0_key = (t, u)
        return f0

    def _linearise(self, t: float, u: Any, f0: Any, dt: float) -> None:
        """``J`` and ``f_t`` at ``(t, u)``; the caller skips it where they were computed
        already (a step retried from the same point)."""
        jac = self._jac
        if not (jac.constant and self._J is not None):
            J, nf = jac(u, t, f0)
            if nf:
                self.nf += nf
            self._njac += 1
            self._J = J
            self._J_is_sparse = (self._sparse is not None and not isinstance(J, self._dense_type)
                                 and self._sparse.issparse(J))
        tder = self._tder
        if not tder.detected:  # once, at the first step (init must not call f: the driver
            self.nf += tder.detect(t, u, f0)  # may still read an f0 buffer f overwrites)
        if tder.autonomous:
            ft = None
            if self._ft is None and self._ft_row_zero:
                self._lin_key = (t, u)
                return
        else:
            ft, nf = tder(u, t, f0, dt)
            self.nf += nf
        self._ft = ft
        K = self._K
        if ft is not None:
            K[1, ...] = ft
            self._ft_row_zero = False
        elif not self._ft_row_zero:
            K[1, ...] = 0.0
            self._ft_row_zero = True
        self._lin_key = (t, u)

    def _w_matrix(self, scale: float) -> Any:
        """``W = M * scale - J`` (``scale = 1 / (gamma dt)``), sparse when ``J`` is."""
        J = self._J
        if self._J_is_sparse:
            if self._sparse_w is None:
                M = self._M_sparse
                if M is None and self._has_mass:
                    M = self._M_sparse = self._sparse.csc_matrix(self.backend.to_host(self._M))
                self._sparse_w = SparseW(self._sparse, self.xp, self.rhs.n, M)
            return self._sparse_w(J, scale)
        M = self._M
        if M is None:
            if self._has_mass:
                M = self._M = as_square_matrix(self._M_sparse.toarray(), self.backend,
                                               self.rhs.dtype, self.rhs.n, "mass_matrix")
            else:
                if self._eye is None:
                    self._eye = self.xp.eye(self.rhs.n, dtype=self.rhs.dtype)
                M = self._eye
        return M * scale - J

    @property
    def eigen_estimate(self) -> float | None:  # type: ignore[override]
        """``||J||_inf`` at the start of the last step, a bound on the spectral radius of
        ``df/du`` (the Stepper contract's estimate for stiffness-switching composites);
        ``None`` before the first step and with a mass matrix (the eigenvalues are then
        those of ``M^{-1} J``). Computed on first access for each Jacobian."""
        J = self._J
        if J is None or self._has_mass:
            return None
        if self._rho is None or self._rho[0] is not J:
            if self._J_is_sparse:
                rho = float(abs(J).sum(axis=1).max()) if J.shape[0] else 0.0
            else:
                xp = self.xp
                rho = float(xp.max(xp.sum(xp.abs(J), axis=1)))
            self._rho = (J, rho)
        return self._rho[1]

    # --------------------------------------------------------------------- step
    def step(self, t: float, u: Any, dt: float) -> tuple[Any, Any]:
        key = self._f0_key
        f0 = self._f0 if key is not None and key[0] == t and key[1] is u else self._f_at(t, u)
        key = self._lin_key
        if key is None or key[0] != t or key[1] is not u:
            self._linearise(t, u, f0, dt)
        if self._fast_plans is not None and not self._J_is_sparse:
            return self._step_lapack(t, u, dt, f0)
        scale = self._inv_gamma / dt
        if self._J_is_sparse or self._has_mass or self._eye is None:
            W = self._w_matrix(scale)
        else:
            W = self._eye * scale - self._J
        lu = self._lu_factor(W)
        self._nfactor += 1
        ft = self._ft
        if dt != self._T_dt or (ft is not None) != self._T_ft:
            self._refresh_coefficients(dt, ft)
        K = self._K
        M = None
        if self._has_mass:
            M = self._M_sparse if self._M_sparse is not None else self._M
        fvals: dict[int, Any] = {0: f0}
        K[0, ...] = u
        # stage 1: y_1 = u, so F_1 = f0
        g0 = self._gammas[0]
        r0 = f0 if ft is None or g0 == 0.0 else f0 + (g0 * dt) * ft
        y, y_fsal = self._stages(lu, r0, fvals, t, dt, ft is not None, M)
        self.nf += self._evals
        return self._finish(y, y_fsal)

    def _refresh_coefficients(self, dt: float, ft: Any) -> None:
        """The ``dt``-dependent rows of the stage coefficient blocks, in place."""
        if ft is None:  # the f_t column multiplies a zero row: C / dt only
            self._T_lower[...] = self._TC * (1.0 / dt)
        else:
            self._T_lower[...] = self._TC * (1.0 / dt) + self._TG * dt
        self._T_dt = dt
        self._T_ft = ft is not None

    def _finish(self, y: Any, y_fsal: Any) -> tuple[Any, Any]:
        """``u_new`` and the error estimate from the last stage state (and the FSAL stage's
        state, if any) and the stage buffer."""
        K = self._K
        if self._u_from_last:
            u_new = y + K[self.s + 1, ...]
        elif y_fsal is not None:
            u_new = y_fsal
        else:
            u_new = self._dot(self._weights[0, ...], K)
        if not self.adaptive:
            return u_new, None
        # the error estimate may be a view of the stage buffer: the driver consumes it
        # before the next step
        row = self._err_row
        return u_new, (K[row, ...] if row is not None else self._dot(self._weights[1, ...], K))

    def _stages(
        self, lu: Any, r0: Any, fvals: dict[int, Any], t: float, dt: float, with_ft: bool,
        M: Any,
    ) -> tuple[Any, Any]:
        """The stages ``W U_i = f(y_i) + sum_j C_ij / dt U_j (+ gamma_i dt f_t)`` into the
        stage buffer; returns the last stage state and the FSAL stage's (or ``None``). The
        general path, for every backend (NumPy with a dense ``J`` and no mass matrix takes
        :meth:`_step_lapack`)."""
        K, Kv, Tv = self._K, self._Kv, self._Tv
        fp, p = self.rhs.fp, self.rhs.p
        solve = self._lu_solve
        dot = self._dot
        keep = self._keep
        K[2, ...] = solve(lu, r0)
        y = y_fsal = None
        for i, alpha, src, kept, fsal, add in self._plans[with_ft]:
            sums = dot(Tv[i], Kv[i])
            if src != i:
                r = fvals[src]
            else:
                y = sums[0, ...]
                r = fp(y, p, t + alpha * dt)
                if kept:
                    r = fvals[i] = keep(r)
                if fsal:
                    y_fsal = y
                    r = self._fsal_f = keep(r)
            if add == 1:
                r = r + sums[1, ...]
            elif add:
                if add & 2:
                    r = r + M @ sums[1, ...]
                if add & 4:
                    r = r + sums[2, ...]
            K[i + 2, ...] = solve(lu, r)
        return y, y_fsal

    def _step_lapack(self, t: float, u: Any, dt: float, f0: Any) -> tuple[Any, Any]:
        """:meth:`step` on NumPy with a dense ``J`` and no mass matrix, at the floor of four
        NumPy calls per stage: the stage sums go into a per-stage buffer (``ndarray.dot`` with
        ``out``, through plans of bound products made at construction), ``f`` is called on
        its first row, and each right-hand side is formed in its row of the stage buffer and
        solved there (LAPACK ``getrs`` with ``overwrite_b``). The same arithmetic as the
        general path (:meth:`_stages`); on Van der Pol 23.5 -> 18.5 us per step (with the
        positional LAPACK calls of the NumPy backend).

        ``f`` receives a view of the sums buffer of its stage, overwritten only at the same
        stage of the next step (like the stage arguments of OrdinaryDiffEq's in-place
        caches); the FSAL stage's state, which becomes ``u_new``, is copied.
        """
        lu_m, piv, _info = self._getrf(self._eye * (self._inv_gamma / dt) - self._J)
        # (info > 0: W is singular; the solves give inf/nan, which the driver rejects)
        getrs = self._getrs
        ft = self._ft
        with_ft = ft is not None
        if with_ft or self._T_ft:
            if dt != self._T_dt or with_ft != self._T_ft:
                self._refresh_coefficients(dt, ft)
        elif dt != self._T_dt:
            np.multiply(self._TC, 1.0 / dt, self._T_lower)
            self._T_dt = dt
        self._nfactor += 1
        self.nf += self._evals
        fp, p = self.rhs.fp, self.rhs.p
        add_to = np.add
        rows = self._rows
        rows[0][...] = u
        # later stages' rows enter the products with zero coefficients: clear what the last
        # attempt left there (0 * nan would be nan after a failed attempt)
        self._U.fill(0.0)
        # stage 1: y_1 = u, so F_1 = f0
        row = rows[2]
        g0 = self._gammas[0]
        if with_ft and g0 != 0.0:
            add_to(f0, (g0 * dt) * ft, out=row)
        else:
            row[...] = f0
        getrs(lu_m, piv, row, 0, 1)  # trans=0, overwrite_b=1
        fvals: dict[int, Any] | None = None
        y = y_fsal = None
        for dot_i, K_i, S_i, y, c_i, alpha, row, special in self._fast_plans[with_ft]:
            dot_i(K_i, S_i)
            if special is None:  # a fresh f evaluation, used once
                add_to(fp(y, p, t + alpha * dt), c_i, row)
            else:
                if fvals is None:
                    fvals = {0: f0}
                i, src, kept, fsal, add = special
                if src != i:
                    r = fvals[src]
                else:
                    r = fp(y, p, t + alpha * dt)
                    if kept:
                        r = fvals[i] = self._keep(r)
                    if fsal:
                        y_fsal = y.copy()
                        r = self._fsal_f = self._keep(r)
                if add:
                    add_to(r, c_i, out=row)
                else:
                    row[...] = r
            getrs(lu_m, piv, row, 0, 1)  # trans=0, overwrite_b=1
        if self._last_stage_finish:  # u_new = y_s + U_s, err = U_k (Rodas)
            return y + row, rows[self._err_row]
        return self._finish(y, y_fsal)

    # ------------------------------------------------------------ differentiation
    def functional_step(self, f: Any, u: Any, p: Any, t: float, dt: float) -> Any:
        """The Rosenbrock step map with the exact Jacobian, traceable by autograd:

            J = df/du (u, p, t),   W = M / (gamma dt) - J,
            W U_i = f(u + sum_j a_ij U_j, p, t + alpha_i dt) + sum_j (c_ij / dt) M U_j
                    + gamma_i dt f_t,
            u_new = u + sum_i m_i U_i

        (Hairer & Wanner II, IV.7). ``J`` comes from autograd (so its dependence on ``u`` and
        ``p`` is differentiated too, as the discrete adjoint of a Rosenbrock method requires);
        ``f_t`` by the same one-sided difference as :meth:`step`, or not at all for an
        autonomous ``f``. With a finite-difference Jacobian in the forward solve, the replayed
        map differs from the computed one by the difference error of ``J`` (the gradient is
        that of the exact-Jacobian method along the same steps).
        """
        import autograd.numpy as anp
        from autograd import jacobian
        from autograd.tracer import getval

        tab = self.tableau
        n = self.rhs.n
        tder = self._tder
        if not tder.detected:
            u_plain = self.xp.asarray(np.asarray(getval(u)), dtype=self.rhs.dtype)
            self.nf += tder.detect(t, u_plain, self.rhs.f(u_plain, t))
        J = jacobian(lambda uu: f(uu, p, t))(u)
        ft = None
        if not tder.autonomous:
            h = max(TIME_FD_FRACTION * abs(dt), 16.0 * np.finfo(np.float64).eps * abs(t),
                    1e-300)
            h = -h if dt < 0 else h
            nodes = [(t + k * h) - t for k in range(1, TIME_FD_ORDER + 1)]
            f0 = f(u, p, t)
            ft = 0.0
            for x, w in zip(nodes, derivative_weights(nodes), strict=True):
                ft = ft + w * (f(u, p, t + x) - f0)
        if self._has_mass:
            mass = self._M_sparse.toarray() if self._M_sparse is not None else self._M
            M = np.asarray(self.backend.to_host(mass), dtype=np.float64)
        else:
            M = np.eye(n)
        W = M * (self._inv_gamma / dt) - J
        A = np.asarray(tab.A, dtype=np.float64)
        C = np.asarray(tab.C, dtype=np.float64)
        U: list[Any] = []
        for i in range(self.s):
            y = u
            r_extra = 0.0
            for j in range(i):
                if A[i, j] != 0.0:
                    y = y + A[i, j] * U[j]
                if C[i, j] != 0.0:
                    r_extra = r_extra + (C[i, j] / dt) * anp.dot(M, U[j])
            r = f(y, p, t + self._alpha[i] * dt) + r_extra
            if ft is not None and self._gammas[i] != 0.0:
                r = r + (self._gammas[i] * dt) * ft
            U.append(_linear_solve(W, r))
        u_new = u
        for i, m_i in enumerate(np.asarray(tab.m, dtype=np.float64)):
            if m_i != 0.0:
                u_new = u_new + m_i * U[i]
        return u_new

    # ------------------------------------------------------------ dense output
    def dense_data(self) -> Any:
        if self._PT is None:
            return None
        return self._dot(self._PT, self._U)

    def interpolant(self, t: float, dt: float, u0: Any, u1: Any, data: Any) -> Any:
        """``s -> u0 + sum_m theta**(m+1) data_m`` (the data are in the power basis)."""
        if data is None:
            return super().interpolant(t, dt, u0, u1, data)
        return power_interpolant(self.xp, t, dt, u0, data)

    def interpolate(self, theta: Any, dt: Any, u0: Any, u1: Any, data: Any) -> Any:
        if data is None:
            return super().interpolate(theta, dt, u0, u1, data)
        powers = theta[:, None] ** self._powers[None, :]  # (m, deg)
        return u0 + (powers[:, None, :] @ data)[:, 0, :]


def _define_linear_solve() -> Any:
    """``x = W^{-1} r`` as an autograd primitive with both derivatives (autograd's own
    ``solve`` has no forward mode):

        dx = W^{-1} (dr - dW x),        rbar = W^{-T} xbar,    Wbar = -rbar x^T.
    """
    import autograd.numpy as anp
    from autograd.extend import defjvp, defvjp, primitive

    @primitive
    def linear_solve(W: Any, r: Any) -> Any:
        return np.linalg.solve(W, r)

    defvjp(
        linear_solve,
        lambda x, W, r: lambda g: -anp.outer(anp.linalg.solve(anp.transpose(W), g), x),
        lambda x, W, r: lambda g: anp.linalg.solve(anp.transpose(W), g),
    )
    defjvp(
        linear_solve,
        lambda dW, x, W, r: linear_solve(W, -anp.dot(dW, x)),
        lambda dr, x, W, r: linear_solve(W, dr),
    )
    return linear_solve


_LINEAR_SOLVE: Any = None


def _linear_solve(W: Any, r: Any) -> Any:
    global _LINEAR_SOLVE
    if _LINEAR_SOLVE is None:
        _LINEAR_SOLVE = _define_linear_solve()
    return _LINEAR_SOLVE(W, r)


class SparseW:
    """Assembles ``W = M * scale - J`` for a sparse CSC ``J`` (``M`` sparse, or the identity)
    on one fixed structure, the union of ``J``'s, ``M``'s and the diagonal: per step only the
    values are written (``W.data[J entries] = -J.data``, ``W.data[M entries] += scale M.data``).

    Sparse arithmetic (``M * scale - J``) would prune entries that happen to be zero, so ``W``'s
    structure would change with the values (the Brusselator's ``u^2`` couplings vanish where
    ``u = 0``): the LU could then not recognise a structure it has seen (its symmetric
    fill-reducing order and cached checks), and the arithmetic costs more than the scatter.
    The structure is rebuilt only when ``J``'s changes.
    """

    def __init__(self, sparse: Any, xp: Any, n: int, M: Any = None) -> None:
        self.sparse = sparse
        self.xp = xp
        self.n = n
        if M is None:
            M = sparse.identity(n, format="csc")
        M = sparse.csc_matrix(M)
        M.sum_duplicates()
        M.sort_indices()
        self.M = M
        self._jkey: tuple[Any, Any] | None = None
        self._indptr: Any = None
        self._indices: Any = None
        self._jpos: Any = None
        self._mpos: Any = None

    def _rebuild(self, J: Any) -> None:
        sp = self.sparse
        xp = self.xp
        n = self.n
        ones = sp.csc_matrix((xp.ones(J.nnz), J.indices, J.indptr), shape=(n, n))
        mones = sp.csc_matrix((xp.ones(self.M.nnz), self.M.indices, self.M.indptr), shape=(n, n))
        S = sp.csc_matrix(abs(ones) + abs(mones))  # union (no cancellation: all positive)
        S.sum_duplicates()
        S.sort_indices()
        self._indptr, self._indices = S.indptr, S.indices
        keys = xp.repeat(xp.arange(n), xp.diff(S.indptr)) * n + S.indices
        jcols = xp.repeat(xp.arange(n), xp.diff(J.indptr))
        mcols = xp.repeat(xp.arange(n), xp.diff(self.M.indptr))
        self._jpos = xp.searchsorted(keys, jcols * n + J.indices)
        self._mpos = xp.searchsorted(keys, mcols * n + self.M.indices)
        self._mdata = self.M.data
        self._nnz = int(S.nnz)
        self._jkey = (J.indptr, J.indices)
        self._jcopy = (J.indptr.copy(), J.indices.copy())

    def _same_structure(self, J: Any) -> bool:
        key = self._jkey
        if key is None:
            return False
        if key[0] is J.indptr and key[1] is J.indices:
            return True
        xp = self.xp
        ip, ix = self._jcopy
        return (ip.shape == J.indptr.shape and ix.shape == J.indices.shape
                and bool(xp.all(ip == J.indptr)) and bool(xp.all(ix == J.indices)))

    def __call__(self, J: Any, scale: float) -> Any:
        if not (J.format == "csc" and J.has_canonical_format):
            J = self.sparse.csc_matrix(J)
            J.sum_duplicates()
        if not self._same_structure(J):
            self._rebuild(J)
        xp = self.xp
        data = xp.zeros(self._nnz, dtype=J.dtype)
        data[self._jpos] = -J.data
        data[self._mpos] += scale * self._mdata
        return self.sparse.csc_matrix((data, self._indices, self._indptr),
                                      shape=(self.n, self.n))

