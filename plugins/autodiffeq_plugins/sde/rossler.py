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

from autodiffeq.controller import PIController

from .base import SDEStepper
from .tableaus import SRATableau, SRITableau


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
