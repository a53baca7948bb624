"""The tableau-driven explicit Runge–Kutta stepper.

One class runs every method of the family; a method is a :class:`ButcherTableau`. Stage sums
are matrix products over the stacked stages: with ``K`` the (s, n) stage buffer and
``M = [A; b; b_error]`` scaled by ``dt`` once per step,

    Y_i = u + (dt A)[i, :i] @ K[:i],   K[i] = f(Y_i, t + c_i dt),
    u_new = u + (dt b) @ K,            err = (dt b_error) @ K.

Buffers (``K``, the scaled coefficients and their row views) are allocated once per solve.
First-same-as-last methods reuse the last stage as the next step's first; other methods
evaluate ``f(u_new)`` at acceptance, which is the next step's first stage and also the
end-point derivative used by Hermite dense output, so it costs nothing extra.

Stiffness detection (Hairer & Wanner, *Solving ODEs II*, IV.2; Shampine 1977) for FSAL
methods and methods whose last two stages share a node (Vern7):
``rho = ||k_s - k_{s-1}|| / ||Y_s - Y_{s-1}||`` estimates the dominant eigenvalue;
``|dt| * rho`` beyond the stability boundary on many sampled steps means the step size is
limited by stability, not accuracy.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from autodiffeq.backend import Backend
from autodiffeq.stepper import RHS, Stepper, power_interpolant

from .tableau import ButcherTableau

# cubic Hermite basis in powers theta**1..theta**3 (Hairer, Nørsett & Wanner I, II.6)
_H01 = np.array([0.0, 3.0, -2.0])  # weight of (u1 - u0)
_H10 = np.array([1.0, -2.0, 1.0])  # weight of dt * f(u0)
_H11 = np.array([0.0, -1.0, 1.0])  # weight of dt * f(u1)


def interpolation_matrix(tab: ButcherTableau) -> np.ndarray:
    """``P`` with ``b_j(theta) = sum_m P[j, m] theta**(m+1)`` over the interpolation stages.

    Methods without their own continuous extension get cubic Hermite interpolation from
    ``f(u_n)`` (the first stage) and ``f(u_{n+1})`` (the FSAL stage or ``k_end``).
    """
    if tab.dense is not None:
        return np.asarray(tab.dense, dtype=np.float64)
    s_int = tab.n_interp_stages
    P = np.zeros((s_int, 3))
    b = np.zeros(s_int)
    b[: tab.stages] = tab.b
    P += b[:, None] * _H01[None, :]
    P[0] += _H10
    P[s_int - 1] += _H11
    return P


@functools.lru_cache(maxsize=128)
def used_stages(tab: ButcherTableau) -> int:
    """Stages that influence ``u_new`` (an FSAL method's last stage only feeds the error
    estimate): one past the last stage with a non-zero weight in ``b`` or in ``A``."""
    A = np.asarray(tab.A, dtype=np.float64)
    b = np.asarray(tab.b, dtype=np.float64)
    used = b != 0
    for i in range(tab.stages - 1, -1, -1):
        if used[i]:
            used[:i] |= A[i, :i] != 0
    return int(np.nonzero(used)[0][-1]) + 1


class ExplicitRKStepper(Stepper):
    """Explicit Runge–Kutta method given by a Butcher tableau (any backend).

    Options:
        stiffness_detection: check every ``stiffness_check_every`` accepted steps (default 16)
            whether the step size is bounded by stability (FSAL methods with a stability
            boundary); ``stiffness_ratio`` holds the last estimate of ``|dt| * |lambda|``
            relative to 90% of the boundary (above 1: the step is stability-bound).
    """

    CHECK_EVERY = 16
    STIFF_HITS = 15

    def __init__(
        self,
        tableau: ButcherTableau,
        rhs: RHS,
        backend: Backend,
        *,
        stiffness_detection: bool = True,
        stiffness_check_every: int = 16,
    ) -> None:
        super().__init__(rhs, backend)
        xp = backend.xp
        tab = tableau
        self.tableau = tab
        self.order = tab.order
        self.error_order = tab.error_order
        s = tab.stages
        self.s = s
        self.fsal = tab.fsal
        self.adaptive = tab.b_error is not None
        dtype = rhs.dtype
        n = rhs.n
        self.c = [float(ci) for ci in tab.c]
        self._dot = backend.dot
        rows = [np.asarray(tab.A, dtype=np.float64), np.asarray(tab.b, dtype=np.float64)[None]]
        rows.append(
            np.asarray(tab.b_error, dtype=np.float64)[None]
            if tab.b_error is not None
            else np.zeros((1, s))
        )
        M = np.vstack(rows)
        # Augmented layout: row 0 of the stage buffer holds u and column 0 of the coefficient
        # matrix its weight (1 for stage and solution rows, 0 for the error row), so each
        # stage state u + dt * A[i, :i] @ K[:i] is a single product.
        M_aug = np.zeros((s + 2, s + 1))
        M_aug[:, 1:] = M
        M_aug[: s + 1, 0] = 1.0
        self._M = backend.asarray(M, dtype=dtype)
        self._dtM_aug = backend.asarray(M_aug, dtype=dtype)
        self._dtM_aug = xp.asarray(self._dtM_aug, copy=True)
        self._dtM = self._dtM_aug[:, 1:]  # the scaled coefficients, rescaled in place per step
        self._rows = [self._dtM_aug[i, : i + 1] for i in range(s)]
        self._b_row = self._dtM_aug[s, : s + 1]
        self._e_row = self._dtM[s + 1, :]
        self.n_interp = tab.n_interp_stages
        self._Kaug = xp.zeros((self.n_interp + 1, n), dtype=dtype)
        self.K = self._Kaug[1:, ...]
        self._Kp = [self._Kaug[: i + 1, ...] for i in range(s + 1)]
        self._Ks = self.K[:s, ...]
        self._Ks_aug = self._Kaug[: s + 1, ...]
        self._be_rows = self._dtM_aug[s : s + 2, : s + 1]
        self._stages = [
            ((i, Ellipsis), self._rows[i], self._Kp[i], self.c[i]) for i in range(1, s)
        ]
        self._shift_from = s - 1 if self.fsal else s
        self._shift = False
        P = interpolation_matrix(tab)
        self._P = backend.asarray(P, dtype=dtype)
        # P^T for interpolant(): made on first use (a view), not in every step's
        self._PT: Any = None
        self._powers = backend.asarray(np.arange(1, P.shape[1] + 1, dtype=np.float64), dtype=dtype)
        if tab.extra is not None:
            self._extra_c = [float(x) for x in tab.extra.c]
            self._extra_A = backend.asarray(np.asarray(tab.extra.A, dtype=np.float64), dtype=dtype)
        boundary = tab.stability_boundary
        self.stability_boundary = boundary
        # Hairer's estimate needs two stages at the same node: the FSAL pairs (DP5, Tsit5,
        # BS3 with its k_end) and Verner's pairs whose last two stages sit at c = 1
        same_node = len(self.c) >= 2 and self.c[-1] == self.c[-2]
        self._detect = bool(
            stiffness_detection and (self.fsal or same_node) and boundary and self.adaptive
        )
        # stability-limited steps hover just inside the boundary (PI control keeps them
        # there), so the test uses 90% of it, as Hairer's DOPRI5 uses 3.25 of 3.3
        self._boundary = 0.9 * boundary if boundary else 0.0
        self.CHECK_EVERY = max(1, int(stiffness_check_every))
        self._since_check = 0
        self._stiff_hits = 0
        #: |dt| * |lambda| estimate over the (90%) stability boundary at the last check
        self.stiffness_ratio: float | None = None
        self._y_prev = None
        self._dt_last = 0.0

    def init(self, t0: float, u0: Any, f0: Any) -> None:
        self.K[0, ...] = f0
        self._shift = False

    def step(self, t: float, u: Any, dt: float) -> tuple[Any, Any]:
        K = self.K
        if self._shift:
            K[0, ...] = K[self._shift_from, ...]
            self._shift = False
        dtM = self._dtM
        dtM[...] = self._M
        dtM *= dt
        self._Kaug[0, ...] = u
        fp = self.rhs.fp
        p = self.rhs.p
        dot = self._dot
        y = u
        check = self._detect and self._since_check >= self.CHECK_EVERY - 1
        y_prev = None
        last = self.s - 1
        for index, row, Kpart, ci in self._stages:
            if check and index[0] == last:
                y_prev = y
            y = dot(row, Kpart)
            K[index] = fp(y, p, t + ci * dt)
        self.nf += self.s - 1
        if self.fsal:
            u_new = y
            err = dot(self._e_row, self._Ks) if self.adaptive else None
        elif self.adaptive:
            update = dot(self._be_rows, self._Ks_aug)
            u_new = update[0, ...]
            err = update[1, ...]
        else:
            u_new = dot(self._b_row, self._Ks_aug)
            err = None
        if check:
            self._y_prev = (y_prev, y)
            self._dt_last = dt
        else:
            self._y_prev = None
        return u_new, err

    def accept(self, t_new: float, u_new: Any) -> None:
        if not self.fsal:
            self.K[self.s, ...] = self.rhs.f(u_new, t_new)
            self.nf += 1
        self._shift = True
        if self._detect:
            if self._y_prev is not None:
                self._since_check = 0
                self._check_stiffness()
            else:
                self._since_check += 1

    def _check_stiffness(self) -> None:
        """Hairer's test on the last two stages (both at c = 1 for DP5/Tsit5-type pairs)."""
        y_prev, y_last = self._y_prev
        self._y_prev = None
        dk = self.K[self.s - 1, ...] - self.K[self.s - 2, ...]
        dy = y_last - y_prev
        num = float(dk @ dk)
        den = float(dy @ dy)
        if den > 0 and math.isfinite(num):
            self.eigen_estimate = math.sqrt(num / den)
            ratio = abs(self._dt_last) * self.eigen_estimate
            self.stiffness_ratio = ratio / self._boundary
            if ratio > self._boundary:
                self._stiff_hits += 1
                if self._stiff_hits >= self.STIFF_HITS and self.stiffness is None:
                    self.stiffness = (
                        f"|dt|*|lambda| ~ {ratio:.3g} exceeded the stability boundary "
                        f"{self._boundary:g} on {self._stiff_hits} sampled steps"
                    )
            else:
                self._stiff_hits = max(0, self._stiff_hits - 1)

    def dense_data(self) -> Any:
        return self.xp.asarray(self.K, copy=True)

    # ------------------------------------------------------------------ differentiation
    def _used_stages(self) -> int:
        """Stages that influence ``u_new`` (:func:`used_stages`)."""
        return used_stages(self.tableau)

    def functional_step(self, f: Any, u: Any, p: Any, t: float, dt: float) -> Any:
        """``u + dt * sum_i b_i k_i`` with ``k_i = f(u + dt * sum_j A_ij k_j, p, t + c_i dt)``,
        written with autograd.numpy and no in-place updates (traceable)."""
        import autograd.numpy as anp

        tab = self.tableau
        A = np.asarray(tab.A, dtype=np.float64)
        s = self._used_stages()
        ks: list[Any] = []
        for i in range(s):
            y = u if i == 0 else u + dt * anp.dot(A[i, :i], anp.stack(ks))
            ks.append(f(y, p, t + self.c[i] * dt))
        b = np.asarray(tab.b, dtype=np.float64)[:s]
        return u + dt * anp.dot(b, anp.stack(ks))

    def functional_step_dense(self, f: Any, u: Any, p: Any, t: float, dt: float
                              ) -> tuple[Any, Any]:
        """:meth:`functional_step` that also returns the step's interpolation data (every
        interpolation stage: the method's stages, ``k_end`` for a method that is not FSAL,
        Verner's extra stages) as :meth:`interpolate` takes it, traceable."""
        import autograd.numpy as anp

        tab = self.tableau
        A = np.asarray(tab.A, dtype=np.float64)
        ks: list[Any] = []
        for i in range(tab.stages):
            y = u if i == 0 else u + dt * anp.dot(A[i, :i], anp.stack(ks))
            ks.append(f(y, p, t + self.c[i] * dt))
        u_new = u + dt * anp.dot(np.asarray(tab.b, dtype=np.float64), anp.stack(ks))
        if not tab.fsal:
            ks.append(f(u_new, p, t + dt))
        if tab.extra is not None:
            extra_A = np.asarray(tab.extra.A, dtype=np.float64)
            for j, cj in enumerate(self._extra_c):
                width = self.n_interp + j
                y = u + dt * anp.dot(extra_A[j, :width], anp.stack(ks[:width]))
                ks.append(f(y, p, t + cj * dt))
        return u_new, anp.stack(ks)

    step_vjp_uses_dense_data = True  # dense data are the stage derivatives k_1..k_s
    step_vjp_defers_p = True  # a None parameter part leaves lam_p None

    def step_vjp(
        self,
        t: float,
        u: Any,
        dt: float,
        lam: Any,
        derivatives: Any,
        want_p: bool,
        stages: Any = None,
    ) -> tuple[Any, Any]:
        """Transposed Runge–Kutta step (the discrete adjoint; Hairer, Lubich & Wanner,
        *Geometric Numerical Integration*, VI.4; Sandu 2006): with ``Y_i`` the stage states,

            kbar_i = dt b_i lam + dt sum_{j>i} A_ji ybar_j,
            (ybar_i, pbar_i) = kbar_i^T (df/du, df/dp) at (Y_i, t + c_i dt),
            lam_u = lam + sum_i ybar_i,   lam_p = sum_i pbar_i,

        taken from the last stage down. The stage derivatives ``k_i`` are the forward step's
        (``stages``, its dense data) or recomputed from ``u``; no tape either way.
        """
        xp = self.xp
        s = self._used_stages()
        n = self.rhs.n
        dtype = self.rhs.dtype
        f = self.rhs.f
        dtA = self._M[:s, :s] * dt
        ys: Any = []  # the stage states Y_i
        if stages is not None:
            # the stage states formed exactly as :meth:`step` formed them (the same products
            # of the same operands in the same buffers: the same bits, so derivatives kept
            # from the forward evaluations are found), Y_i = [1, dt A_i] @ [u; k_1..k_i-1]
            dtM = self._dtM
            dtM[...] = self._M
            dtM *= dt
            self._Kaug[0, ...] = u
            self.K[:s, ...] = stages[:s, ...]
            dot = self._dot
            ys = [u] + [dot(self._rows[i], self._Kp[i]) for i in range(1, s)]
        else:
            K = xp.zeros((s, n), dtype=dtype)
            for i in range(s):
                y = u if i == 0 else u + dtA[i, :i] @ K[:i, ...]
                ys.append(y)
                K[i, ...] = f(y, t + self.c[i] * dt)
            self.nf += s
        # Z = [ybar_0 .. ybar_{s-1}, lam]: kbar_i = C[i] @ Z with C[i, j] = dt A_ji (j > i)
        # and C[i, s] = dt b_i, one product per stage (rows j <= i of Z are still zero)
        C = self._adjoint_coefficients(s) * dt
        Z = xp.zeros((s + 1, n), dtype=lam.dtype)
        Z[s, ...] = lam
        lam_p = None
        vjp = derivatives.vjp
        times = [float(t + ci * dt) for ci in self.c[:s]]
        for i in range(s - 1, -1, -1):
            ybar, pbar = vjp(C[i, ...] @ Z, ys[i], times[i], want_p)
            Z[i, ...] = ybar
            if pbar is not None:
                lam_p = pbar if lam_p is None else lam_p + pbar
        return lam + xp.sum(Z[:s, ...], axis=0), lam_p

    def _adjoint_coefficients(self, s: int) -> Any:
        """``C`` (s, s+1) of the transposed stages: ``C[i, j] = A_ji`` for ``j > i`` and
        ``C[i, s] = b_i`` (times ``dt`` per step)."""
        C = getattr(self, "_C_adjoint", None)
        if C is None:
            M = self._M
            C = self.xp.zeros((s, s + 1), dtype=M.dtype)
            C[:, :s] = self.xp.matrix_transpose(M[:s, :s])
            C[:, s] = M[self.s, :s]
            self._C_adjoint = C
        return C

    def complete_dense_data(self, t: float, dt: float, u: Any, data: Any) -> Any:
        extra = self.tableau.extra
        if extra is None:
            return data
        xp = self.xp
        n_base = self.n_interp
        n_extra = len(self._extra_c)
        if data.shape[0] == n_base + n_extra:
            return data
        f = self.rhs.f
        dtA = self._extra_A * dt  # the same products as scaling each row in turn
        if type(data) is np.ndarray and data.dtype == dtA.dtype == np.float64:
            # a delay equation completes every step it looks into: the ndarray.dot method is
            # the same BLAS product (the same bits) as @ without its ufunc dispatch, and row
            # n_base + j is written before any product reads it
            full = np.empty((n_base + n_extra, data.shape[1]))
            full[:n_base, ...] = data
            for j in range(n_extra):
                width = n_base + j
                y = u + dtA[j, :width].dot(full[:width, ...])
                full[n_base + j, ...] = f(y, t + self._extra_c[j] * dt)
        else:
            full = xp.concat([data, xp.zeros((n_extra, data.shape[1]), dtype=data.dtype)],
                             axis=0)
            for j in range(n_extra):
                width = n_base + j
                y = u + dtA[j, :width] @ full[:width, ...]
                full[n_base + j, ...] = f(y, t + self._extra_c[j] * dt)
        self.nf += n_extra
        return full

    def interpolant(self, t: float, dt: float, u0: Any, u1: Any, data: Any) -> Any:
        """``s -> u0 + sum_m theta**(m+1) Q_m`` with ``Q = dt P^T K`` formed once per step."""
        PT = self._PT
        if PT is None:
            PT = self._PT = self.xp.matrix_transpose(self._P)
        if type(data) is np.ndarray and data.dtype == PT.dtype == np.float64:
            # once per step of a delay equation: the ndarray.dot method is the same BLAS
            # product as @ on the same (transposed) operand, without the ufunc dispatch
            Q = PT.dot(data) * dt
        else:
            Q = (PT @ data) * dt  # (deg, n)
        return power_interpolant(self.xp, t, dt, u0, Q)

    def interpolate(self, theta: Any, dt: Any, u0: Any, u1: Any, data: Any) -> Any:
        xp = self.xp
        powers = theta[:, None] ** self._powers[None, :]  # (m, deg)
        B = powers @ xp.matrix_transpose(self._P)  # (m, stages)
        if data.shape[1] != B.shape[1]:
            raise ValueError(
                f"{self.tableau.name}: interpolation data has {data.shape[1]} stages, the "
                f"interpolant needs {B.shape[1]} (call complete_dense_data first)"
            )
        weights = (B * dt[:, None])[:, None, :]  # (m, 1, stages)
        return u0 + (weights @ data)[:, 0, :]
