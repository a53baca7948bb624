"""Rößler's stochastic Runge–Kutta methods of strong order 1.5: the SRI class (Itô, diagonal
and scalar noise) and the SRA class (additive noise), driven by their tableaus
(:mod:`.tableaus`).

SRI (A. Rößler, SIAM J. Numer. Anal. 48(3), 2010, eq. (6.1)), with ``h = dt``,
``chi1 = I_(1,1)/sqrt(h) = (dW^2 - h)/(2 sqrt(h))``, ``chi2 = I_(1,0)/h`` and
``chi3 = I_(1,1,1)/h = (dW^3 - 3 h dW)/(6 h)``::

    H0_i = u + h sum_j A0_ij f(H0_j) + chi2 sum_j B0_ij g(H1_j)
    H1_i = u + h sum_j A1_ij f(H0_j) + sqrt(h) sum_j B1_ij g(H1_j)
    u_new = u + h sum_i alpha_i f(H0_i)
              + sum_i (beta1_i dW + beta2_i chi1 + beta3_i chi2 + beta4_i chi3) g(H1_i)

(``f`` at ``t + c0_j h``, ``g`` at ``t + c1_j h``). SRA (additive noise, ``g`` independent of
``u``)::

    H0_i = u + h sum_j A0_ij f(H0_j) + chi2 sum_j B0_ij g(t + c1_j h)
    u_new = u + h sum_i alpha_i f(H0_i) + sum_i (beta1_i dW + beta2_i chi2) g(t + c1_i h)

Error estimate (Rackauckas & Nie, "Adaptive methods for stochastic differential equations via
natural embeddings and rejection sampling with memory", DCDS-B 22(7), 2017; as
StochasticDiffEq.jl computes it): ``E2`` is the difference between the order-1.5 solution and
its natural order-1.0 embedding (the ``beta3``/``beta4`` terms for SRI, the ``beta2`` term for
SRA), ``E1 = h sum_i f(H0_i)`` over the distinct drift stages, and the step's error is
``delta E1 + E2`` in the weighted RMS norm (``delta = 1/6`` for SRIW1, 1 otherwise).

The ``I_(1,0)`` the stages need comes from the Brownian path exactly (it keeps ``int W dt``),
so the methods reach strong order 1.5 on the path's own ``W``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from autodiffeq.controller import PIController

from .base import SDEStepper
from .tableaus import SRATableau, SRITableau

#: the smallest state whose SRI steps use the stacked stage products (SRI.stacked_sums)
STACKED_MIN_SIZE = 64


class StochasticPI(PIController):
    """PI control with StochasticDiffEq.jl's SDE defaults: growth per step at most 9/8 (steps
    grow slowly, so the path is not refined far ahead of where it is needed)."""

    def __init__(self, **overrides: Any) -> None:
        overrides.setdefault("qmax", 1.125)
        super().__init__(**overrides)


def _rows(matrix: tuple[tuple[float, ...], ...]) -> list[list[tuple[int, float]]]:
    """The nonzero entries ``(j, a_ij)`` of each row of a strictly lower-triangular matrix."""
    return [[(j, float(a)) for j, a in enumerate(row[:i]) if a != 0.0]
            for i, row in enumerate(matrix)]


def _combine(pairs: list[tuple[int, float]], values: list[Any], scale: float) -> Any:
    """``scale * sum_j a_j values[j]`` over ``pairs`` (the scale folded into the
    coefficients: one product per term), or ``None`` when there are none."""
    total = None
    for j, a in pairs:
        term = (scale * a) * values[j]
        total = term if total is None else _accumulate(total, term)
    return total


def _shifted(u: Any, part: Any) -> Any:
    """``u + part`` (``part`` fresh, so the sum is formed in its buffer), or ``u`` itself when
    ``part`` is ``None``."""
    return u if part is None else _accumulate(part, u)


def _accumulate(total: Any, term: Any) -> Any:
    """``total + term`` formed in the buffer of ``total`` (a fresh array) when both are arrays
    of one type; otherwise (an autograd box on either side) out of place."""
    if type(total) is type(term):
        total += term
        return total
    return total + term


def _scaled(total: Any, factor: Any) -> Any:
    """``total * factor`` in the buffer of ``total`` (fresh) where :func:`_accumulate` would
    add in place."""
    if type(total) is type(factor):
        total *= factor
        return total
    return total * factor


def _distinct_stages(rows_f: list[list[tuple[int, float]]],
                     rows_g: list[list[tuple[int, float]]], n: int) -> list[int]:
    """The stages whose state is not simply ``u`` (for the error estimate's drift sum)."""
    return [0] + [i for i in range(1, n) if rows_f[i] or rows_g[i]]


class RosslerMethod(SDEStepper):
    """What the SRI and SRA steppers share: the tableau's drift part and the embedded error
    estimate ``delta h sum_i f(H0_i) + E2`` (module docstring)."""

    uses_area = True
    controller_class = StochasticPI
    tableau: Any
    delta = 1.0

    def __init__(self, rhs: Any, backend: Any, **options: Any) -> None:
        super().__init__(rhs, backend, **options)
        tab = self.tableau
        self.order = tab.order
        self._a0, self._b0 = _rows(tab.A0), _rows(tab.B0)
        self._c0, self._c1 = [float(c) for c in tab.c0], [float(c) for c in tab.c1]
        self._s = len(tab.alpha)
        self._alpha = [(i, float(a)) for i, a in enumerate(tab.alpha) if a != 0.0]

    def embedded_error(self, F: list[Any], dt: float, upper: Any) -> Any:
        e1 = None
        for i in self._error_stages:
            e1 = F[i] if e1 is None else e1 + F[i]
        err = (self.delta * dt) * e1
        return err if upper is None else err + upper


class SRI(RosslerMethod):
    """An SRI method given by its tableau (module docstring)."""

    tableau: SRITableau

    def __init__(self, rhs: Any, backend: Any, **options: Any) -> None:
        super().__init__(rhs, backend, **options)
        tab = self.tableau
        self.error_order = 1.5
        self._a1, self._b1 = _rows(tab.A1), _rows(tab.B1)
        s = self._s
        self._beta_columns = [[(i, float(b[i])) for i in range(s) if b[i] != 0.0]
                              for b in (tab.beta1, tab.beta2, tab.beta3, tab.beta4)]
        # stages equal to u (no contributions) evaluate f and g at u: keep one evaluation
        self._f_same = [i for i in range(s) if not self._a0[i] and not self._b0[i]]
        self._g_same = [i for i in range(s) if not self._a1[i] and not self._b1[i]]
        self._error_stages = self.error_stages()
        self._plan = _StackedSRI(self) if self.stacked_sums(rhs) else None

    def stacked_sums(self, rhs: Any) -> bool:
        """Whether the solve's steps form their stage sums as products over the stacked
        stages (:class:`_StackedSRI`): for states of at least :data:`STACKED_MIN_SIZE`
        entries driven by one path. A BLAS product rounds an entry differently depending on
        the length of the arrays, so small states (one trajectory of an ensemble) and
        trajectories stepped together (a vectorised ensemble) keep the elementwise formula:
        a trajectory's numbers then do not depend on how it was solved, to the last bit."""
        return (not self.general and rhs.n >= STACKED_MIN_SIZE
                and getattr(rhs.path, "trajectories", 1) == 1)

    def step(self, t: float, u: Any, dt: float) -> tuple[Any, Any]:
        if self._plan is None or not self.backend.is_native(u):
            return super().step(t, u, dt)
        return self._plan.step(t, u, dt, self.rhs.increments(t, dt))

    def error_stages(self) -> list[int]:
        """The drift stages summed in ``E1``: those with distinct states."""
        return _distinct_stages(self._a0, self._b0, self._s)

    def formula(self, f: Any, g: Any, u: Any, p: Any, t: float, dt: float,
                noise: tuple[Any, Any], want_error: bool) -> tuple[Any, Any]:
        dw, area = noise
        sq = math.sqrt(dt)
        dw2 = dw * dw
        chi1 = (dw2 - dt) * (0.5 / sq)
        chi2 = area * (1.0 / dt)
        chi3 = (dw2 - 3.0 * dt) * dw * (1.0 / (6.0 * dt))
        F: list[Any] = []
        G: list[Any] = []
        f_u = g_u = None
        for i in range(self._s):
            h0 = _shifted(u, _combine(self._a0[i], F, dt))
            if self._b0[i]:
                part = chi2 * _combine(self._b0[i], G, 1.0)
                h0 = u + part if h0 is u else _accumulate(h0, part)
            h1 = _shifted(u, _combine(self._a1[i], F, dt))
            part = _combine(self._b1[i], G, sq)
            if part is not None:
                h1 = u + part if h1 is u else _accumulate(h1, part)
            tf = t + self._c0[i] * dt
            if h0 is u and tf == t:
                f_u = f(u, p, t) if f_u is None else f_u
                F.append(f_u)
            else:
                F.append(f(h0, p, tf))
            tg = t + self._c1[i] * dt
            if h1 is u and tg == t:
                g_u = g(u, p, t) if g_u is None else g_u
                G.append(g_u)
            else:
                G.append(g(h1, p, tg))
        drift = _combine(self._alpha, F, dt)
        # sum_i (b1_i dW + b2_i chi1 + ...) G_i as (sum_i b1_i G_i) dW + ...: one product
        # with each noise quantity instead of one per stage
        lower = None  # the order-1.0 noise part
        upper = None  # the order-1.5 terms (the error estimate E2)
        for column, chi in enumerate((dw, chi1, chi2, chi3)):
            weighted = _combine(self._beta_columns[column], G, 1.0)
            if weighted is None:
                continue
            weighted = _scaled(weighted, chi)
            if column < 2:
                lower = weighted if lower is None else _accumulate(lower, weighted)
            else:
                upper = weighted if upper is None else _accumulate(upper, weighted)
        u_new = _shifted(u, drift)
        if lower is not None:
            u_new = _accumulate(u_new, lower)
        if upper is not None:
            u_new = _accumulate(u_new, upper)
        return u_new, (self.embedded_error(F, dt, upper) if want_error else None)


class SRA(RosslerMethod):
    """An SRA method given by its tableau (module docstring); additive noise only, so ``g`` is
    evaluated once per node time at the step's start state."""

    tableau: SRATableau

    def __init__(self, rhs: Any, backend: Any, **options: Any) -> None:
        super().__init__(rhs, backend, **options)
        tab = self.tableau
        self.error_order = 2.0
        self._beta = [(float(tab.beta1[i]), float(tab.beta2[i])) for i in range(self._s)]
        self._error_stages = _distinct_stages(self._a0, self._b0, self._s)

    def formula(self, f: Any, g: Any, u: Any, p: Any, t: float, dt: float,
                noise: tuple[Any, Any], want_error: bool) -> tuple[Any, Any]:
        dw, area = noise
        chi2 = area * (1.0 / dt)
        dw_, chi2_ = dw, chi2
        times = self.times_dw
        g_at: dict[float, Any] = {}

        def g_node(i: int) -> Any:
            tg = t + self._c1[i] * dt
            if tg not in g_at:
                g_at[tg] = g(u, p, tg)
            return g_at[tg]

        F: list[Any] = []
        for i in range(self._s):
            h0 = u
            part = _combine(self._a0[i], F, dt)
            if part is not None:
                h0 = h0 + part
            if self._b0[i]:
                noise_part = None
                for j, b in self._b0[i]:
                    term = b * times(g_node(j), chi2_)
                    noise_part = term if noise_part is None else noise_part + term
                h0 = h0 + noise_part
            F.append(f(h0, p, t + self._c0[i] * dt))
        u_new = u + _combine(self._alpha, F, dt)
        upper = None
        for i in range(self._s):
            b1, b2 = self._beta[i]
            if b1:
                u_new = u_new + b1 * times(g_node(i), dw_)
            if b2:
                term = b2 * times(g_node(i), chi2_)
                upper = term if upper is None else upper + term
        if upper is not None:
            u_new = u_new + upper
        return u_new, (self.embedded_error(F, dt, upper) if want_error else None)


def sri_method(tab: SRITableau, delta: float = 1.0, error_stages: list[int] | None = None
               ) -> type[SRI]:
    """The stepper class of an SRI tableau."""
    attrs: dict[str, Any] = {"tableau": tab, "delta": delta, "__doc__": (
        f"{tab.name}: an SRI method (strong order {tab.order}, weak order {tab.weak_order}; "
        f"{tab.reference}).")}
    if error_stages is not None:
        attrs["error_stages"] = lambda self: list(error_stages)
    return _module_level(type(tab.name, (SRI,), attrs))


def sra_method(tab: SRATableau) -> type[SRA]:
    """The stepper class of an SRA tableau."""
    return _module_level(type(tab.name, (SRA,), {"tableau": tab, "__doc__": (
        f"{tab.name}: an SRA method for additive noise (strong order {tab.order}, weak order "
        f"{tab.weak_order}; {tab.reference}).")}))


def _module_level(cls: type) -> Any:
    """Make a generated stepper class an attribute of this module, so that specs naming it
    as their factory pickle (to worker processes and Dask) by reference."""
    cls.__module__ = __name__
    globals()[cls.__name__] = cls
    return cls


class _StackedSRI:
    """The SRI step of :meth:`SRI.formula` (diagonal, scalar and additive noise) as matrix
    products over the stacked stage values, for a solve on backend arrays (the formula stays
    the traceable reference that the pathwise gradients differentiate).

    The stage values are stacked in one buffer in the order they are computed,
    ``S = [u; F_0; G_0; F_1; G_1; ...]`` (a stage whose state is ``u`` at the same time as an
    earlier one is not evaluated again: its coefficients go to that stage's row), so that

        H1_i = [1, h A1_i, sqrt(h) B1_i] @ S[:k_i],
        H0_i = [1, h A0_i] @ S[:k_i] + I_(1,0) (B0_i / h) @ S[:k_i],

    and the update is one product ``Y = C @ S`` with the rows ``C`` = (drift
    ``[1, h alpha, 0]``, ``beta1``, ``beta2 / (2 sqrt h)``, ``beta3 / h``, ``beta4 / (6 h)``,
    the error's drift part ``delta h sum_{i in E} F_i``), after which

        u_new = Y_0 + Y_1 dW + Y_2 (dW^2 - h) + E2,   E2 = Y_3 I_(1,0) + Y_4 (dW^2 - 3h) dW,
        err = Y_5 + E2

    (the module docstring's formula with the ``chi`` factors' constants folded into ``C``).
    The coefficient matrices are scaled in place each step; nothing else is allocated but the
    products."""

    def __init__(self, method: SRI) -> None:
        self.method = method
        backend = method.backend
        rhs = method.rhs
        xp = backend.xp
        s = method._s
        empty = [not method._a0[i] and not method._b0[i] for i in range(s)]
        empty_g = [not method._a1[i] and not method._b1[i] for i in range(s)]
        # the stage whose evaluation stage i reuses (itself unless its state is u at the
        # time of an earlier such stage)
        rep_f = [next((j for j in range(i) if empty[i] and empty[j]
                       and method._c0[j] == method._c0[i]), i) for i in range(s)]
        rep_g = [next((j for j in range(i) if empty_g[i] and empty_g[j]
                       and method._c1[j] == method._c1[i]), i) for i in range(s)]
        row_f: dict[int, int] = {}
        row_g: dict[int, int] = {}
        order: list[tuple[str, int]] = []
        for i in range(s):
            if rep_f[i] == i:
                row_f[i] = 1 + len(order)
                order.append(("f", i))
            if rep_g[i] == i:
                row_g[i] = 1 + len(order)
                order.append(("g", i))
        width = 1 + len(order)
        self.evaluations = [(kind, i, 1 + k) for k, (kind, i) in enumerate(order)]
        self.nf = sum(1 for kind, _ in order if kind == "f")
        self.ng = len(order) - self.nf
        f_cols = np.zeros(width, dtype=bool)
        f_cols[list(row_f.values())] = True
        g_cols = np.zeros(width, dtype=bool)
        g_cols[list(row_g.values())] = True

        def row(f_part: list[tuple[int, float]], g_part: list[tuple[int, float]],
                with_u: bool) -> np.ndarray:
            r = np.zeros(width)
            r[0] = 1.0 if with_u else 0.0
            for j, a in f_part:
                r[row_f[rep_f[j]]] += a
            for j, b in g_part:
                r[row_g[rep_g[j]]] += b
            return r

        # stage i's products read the rows filled before its evaluations
        filled = [1 + sum(1 for _, j in order if j < i) for i in range(s)]
        stage = np.stack([row(method._a0[i], [], True) for i in range(s)]
                         + [row(method._a1[i], method._b1[i], True) for i in range(s)])
        noise_rows = np.stack([row([], method._b0[i], False) for i in range(s)])
        tab = method.tableau
        betas = [[(i, float(b[i])) for i in range(s) if b[i] != 0.0]
                 for b in (tab.beta1, tab.beta2, tab.beta3, tab.beta4)]
        final = np.stack([row(method._alpha, [], True)] + [row([], b, False) for b in betas]
                         + [row([(i, method.delta) for i in method._error_stages], [], False)])
        dtype = rhs.dtype
        self._stage = backend.asarray(stage, dtype=dtype)
        self._noise = backend.asarray(noise_rows, dtype=dtype)
        self._final = backend.asarray(final, dtype=dtype)
        self._stage_h = xp.asarray(self._stage, copy=True)
        self._noise_h = xp.asarray(self._noise, copy=True)
        self._final_h = xp.asarray(self._final, copy=True)
        self._f_cols = backend.asarray(f_cols.astype(np.float64), dtype=dtype)
        self._g_cols = backend.asarray(g_cols.astype(np.float64), dtype=dtype)
        self._S = xp.zeros((width, rhs.n), dtype=dtype)
        self._stages = []
        for i in range(s):
            k = filled[i]
            a0 = self._stage_h[i, :k]
            a1 = self._stage_h[s + i, :k]
            b0 = self._noise_h[i, :k] if method._b0[i] else None
            plain0 = not method._a0[i] and not method._b0[i]
            plain1 = not method._a1[i] and not method._b1[i]
            self._stages.append((self._S[:k, ...], a0, b0, a1, plain0, plain1,
                                 method._c0[i], method._c1[i]))
        self._eval_at = {(kind, i): r for kind, i, r in self.evaluations}
        self._dot = backend.dot
        self._xp = xp

    def _scale(self, dt: float) -> None:
        """The coefficient matrices for step ``dt``: drift columns times ``h``, noise
        columns of the stage states times ``sqrt(h)``, the ``chi`` constants on ``C``."""
        sq = math.sqrt(dt)
        fc, gc = self._f_cols, self._g_cols
        st = self._stage_h
        st[...] = self._stage
        st *= 1.0 + (dt - 1.0) * fc + (sq - 1.0) * gc
        nz = self._noise_h
        nz[...] = self._noise
        nz *= 1.0 / dt
        fin = self._final_h
        fin[...] = self._final
        fin *= 1.0 + (dt - 1.0) * fc
        fin[2, ...] *= 0.5 / sq
        fin[3, ...] *= 1.0 / dt
        fin[4, ...] *= 1.0 / (6.0 * dt)

    def step(self, t: float, u: Any, dt: float, noise: tuple[Any, Any]) -> tuple[Any, Any]:
        method = self.method
        rhs = method.rhs
        fp, gp, p = rhs.fp, rhs.gp, rhs.p
        dw, area = noise
        self._scale(dt)
        dot = self._dot
        S = self._S
        S[0, ...] = u
        at = self._eval_at
        for i, (Sk, a0, b0, a1, plain0, plain1, c0, c1) in enumerate(self._stages):
            r = at.get(("f", i))
            if r is not None:
                if plain0:
                    h0 = u
                else:
                    h0 = dot(a0, Sk)
                    if b0 is not None:
                        part = dot(b0, Sk)
                        part *= area
                        h0 += part
                S[r, ...] = fp(h0, p, t + c0 * dt)
            r = at.get(("g", i))
            if r is not None:
                # (Sk holds the rows of the earlier stages only: F_i is not read)
                h1 = u if plain1 else dot(a1, Sk)
                S[r, ...] = gp(h1, p, t + c1 * dt)
        method.nf += self.nf
        method.stats["ng"] += self.ng
        Y = dot(self._final_h, S)
        dw2 = dw * dw
        u_new = Y[0, ...]
        lower = Y[1, ...]
        lower *= dw
        u_new += lower
        second = Y[2, ...]
        second *= dw2 - dt
        u_new += second
        upper = Y[3, ...]
        upper *= area
        third = dw2
        third -= 3.0 * dt
        third *= dw
        y4 = Y[4, ...]
        y4 *= third
        upper += y4
        u_new += upper
        if not method.want_error:
            return u_new, None
        err = Y[5, ...]
        err += upper
        return u_new, err
