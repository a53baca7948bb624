"""Rosenbrock methods as data, in Hairer & Wanner's transformed form.

A Rosenbrock (Rosenbrock–Wanner, ROW) method for ``M u' = f(u, t)`` with ``s`` stages takes
one step of size ``dt`` from ``(t, u)`` as (Hairer & Wanner, *Solving ODEs II*, 2nd ed. 1996,
Sect. IV.7, eqs. (7.24)–(7.25) and VI.4 for the mass matrix)::

    W = M / (gamma dt) - J,            J = df/du (u, t),  f_t = df/dt (u, t)
    W U_i = f(u + sum_{j<i} a_ij U_j, t + alpha_i dt)
            + sum_{j<i} (c_ij / dt) M U_j + gamma_i dt f_t,          i = 1..s
    u_new = u + sum_i m_i U_i,         err = sum_i (m_i - mhat_i) U_i

so every stage solves with the same matrix ``W``, factored once per step. The transformed
coefficients relate to the classical ones ``(alpha_ij, gamma_ij, b_i)`` by
``Gamma^{-1} = diag(1/gamma) - C``, ``(a_ij) = (alpha_ij) Gamma^{-1}``,
``(m_i) = (b_i) Gamma^{-1}`` and ``gamma_i = sum_{j<=i} gamma_ij`` (HW II, (7.25)).

Dense output on a step with ``theta = (t - t_n) / dt`` is a polynomial in ``theta`` over the
stage increments ``U_i`` (no ``dt`` factor: ``U_i`` are increments, not slopes)::

    u(theta) = u_n + sum_i b_i(theta) U_i,     b_i(theta) = sum_k P[i, k] theta**(k + 1)

For the Rodas family this is OrdinaryDiffEq's form with the matrix ``H`` (rows ``l = 1..r``)::

    u(theta) = (1 - theta) u_n + theta (u_{n+1} + (1 - theta)(k_1 + theta k_2 + ...
               + theta**(r-1) k_r)),          k_l = sum_i H[l, i] U_i

which :func:`dense_from_rodas_H` rewrites as ``P`` (Steinebach 2023; HW II, IV.7 "dense
output"), so the stepper runs one polynomial form for every method.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class RosenbrockTableau:
    """A Rosenbrock method in transformed form (see the module docstring for the equations).

    Attributes:
        name: registered solver name (``"Rodas5P"``).
        gamma: the diagonal coefficient (``W = M / (gamma dt) - J``).
        A: ``(a_ij)``, strictly lower triangular, shape (s, s).
        C: ``(c_ij)``, strictly lower triangular, shape (s, s).
        alpha: stage times ``alpha_i`` (OrdinaryDiffEq's ``c``), shape (s,).
        gammas: ``gamma_i`` multiplying ``dt f_t`` (OrdinaryDiffEq's ``d``), shape (s,).
        m: solution weights, shape (s,).
        m_error: ``m - mhat`` of the embedded solution (OrdinaryDiffEq's ``btilde``), or
            ``None`` for a fixed-step method.
        order: order of ``u_new`` with the exact Jacobian; ``error_order``: order of the
            embedded solution ``mhat``.
        dense: ``P`` of the dense output (shape (s, deg)); ``None``: linear interpolation.
        dense_order: order of the dense output (global error ``O(dt**dense_order)``).
        w_method: the order holds for any matrix in place of ``J`` (a W-method).
        source, description: literature reference and prose.
    """

    name: str
    gamma: float
    A: np.ndarray
    C: np.ndarray
    alpha: np.ndarray
    gammas: np.ndarray
    m: np.ndarray
    order: int
    m_error: np.ndarray | None = None
    error_order: int | None = None
    dense: np.ndarray | None = None
    dense_order: int = 1
    w_method: bool = False
    source: str = ""
    description: str = field(default="")

    def __post_init__(self) -> None:
        s = len(self.m)
        for label, arr in (("A", self.A), ("C", self.C)):
            if arr.shape != (s, s) or np.any(np.triu(arr) != 0):
                raise ValueError(f"{self.name}: {label} must be strictly lower triangular "
                                 f"of shape ({s}, {s})")
        for label, vec in (("alpha", self.alpha), ("gammas", self.gammas)):
            if vec.shape != (s,):
                raise ValueError(f"{self.name}: {label} must have shape ({s},)")
        if self.m_error is not None and self.m_error.shape != (s,):
            raise ValueError(f"{self.name}: m_error must have shape ({s},)")
        if self.dense is not None and (self.dense.ndim != 2 or self.dense.shape[0] != s):
            raise ValueError(f"{self.name}: dense must have shape ({s}, degree)")

    @property
    def stages(self) -> int:
        return len(self.m)

    @property
    def adaptive(self) -> bool:
        return self.m_error is not None

    @property
    def fsal_stage(self) -> int | None:
        """The stage evaluated at ``(u_new, t + dt)``, if any: its ``f`` is the next step's
        ``f(u_n)`` (first same as last), e.g. the third stage of Rosenbrock23."""
        s = self.stages
        for i in range(1, s):
            if (
                self.alpha[i] == 1.0
                and np.all(self.m[i:] == 0.0)
                and np.array_equal(self.A[i, :i], self.m[:i])
            ):
                return i
        return None

    def stage_sources(self) -> tuple[int, ...]:
        """For each stage, the earliest stage with the same argument (same ``alpha`` and row
        of ``A``; itself if none), whose ``f`` value it reuses: e.g. the Rodas methods' fourth
        stage, or a stage at ``(u, t)`` reusing ``f(u, t)`` of the first."""
        sources = []
        for i in range(self.stages):
            src = i
            for j in range(i):
                if self.alpha[i] == self.alpha[j] and np.array_equal(self.A[i], self.A[j]):
                    src = j
                    break
            sources.append(src)
        return tuple(sources)

    def classical(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The untransformed coefficients ``(alpha_ij, gamma_ij, b_i)`` (HW II, (7.4)),
        ``gamma_ij`` including the diagonal ``gamma``: for checking order conditions."""
        s = self.stages
        gamma_inv = np.eye(s) / self.gamma - self.C
        Gamma = np.linalg.inv(gamma_inv)
        return self.A @ Gamma, Gamma, self.m @ Gamma

    def stability_function(self, z: complex | np.ndarray) -> np.ndarray:
        """``R(z)`` of the method on ``u' = lambda u`` (``z = dt lambda``): ``u_new = R(z) u``.

        From the classical form, ``R(z) = 1 + z b^T (I - z (alpha + Gamma))^{-1} 1``.
        """
        alpha, Gamma, b = self.classical()
        B = alpha + Gamma
        s = self.stages
        zs = np.atleast_1d(np.asarray(z, dtype=complex))
        ones = np.ones(s)
        out = np.empty(zs.shape, dtype=complex)
        for k, zk in enumerate(zs):
            out[k] = 1.0 + zk * (b @ np.linalg.solve(np.eye(s) - zk * B, ones))
        return out


def dense_from_rodas_H(H: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``P`` of the polynomial form from OrdinaryDiffEq's Rodas matrix ``H`` (r, s).

    ``theta m + theta (1 - theta) sum_l theta**(l-1) H[l]`` gives the coefficients of
    ``theta**1 .. theta**(r+1)``: ``m + H[1]``, ``H[l] - H[l-1]`` (l = 2..r), ``-H[r]``.
    """
    H = np.asarray(H, dtype=np.float64)
    r, s = H.shape
    P = np.zeros((s, r + 1))
    P[:, 0] = m + H[0]
    for k in range(1, r):
        P[:, k] = H[k] - H[k - 1]
    P[:, r] = -H[r - 1]
    return P
