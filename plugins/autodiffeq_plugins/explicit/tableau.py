"""Butcher tableaux of explicit Runge–Kutta methods, with embedded error estimates and
continuous (dense-output) extensions.

A method is data: ``c``, ``A`` and ``b`` define the step

    k_i = f(u_n + dt * sum_j A[i, j] k_j, t_n + c_i dt),   i = 1..s
    u_{n+1} = u_n + dt * sum_i b_i k_i

and ``b_error`` the embedded local error estimate ``err = dt * sum_i b_error_i k_i``
(``b_error = b - b_hat`` with ``b_hat`` the embedded lower-order weights).

Dense output on a step with ``theta = (t - t_n) / dt`` in [0, 1] is

    u(theta) = u_n + dt * sum_j b_j(theta) k_j,    b_j(theta) = sum_m P[j, m] theta**(m + 1)

over the *interpolation stages* ``k_1..k_s`` followed, for methods that are not FSAL, by
``k_end = f(u_{n+1}, t_{n+1})`` (which is also the next step's first stage, so it costs nothing
but at the end of the solve), followed by any ``extra`` stages (Verner's lazy interpolation
stages), computed only for steps where dense output is needed.

References: Hairer, Nørsett & Wanner, *Solving ODEs I* (2nd ed., 1993), II.1–II.6.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class ExtraStages:
    """Stages computed after an accepted step to enable a higher-order interpolant.

    ``c`` has shape (e,), ``A`` shape (e, s_interp + e): row i combines the ordinary
    interpolation stages and the extra stages before it (strictly lower in that block).
    """

    c: np.ndarray
    A: np.ndarray


@dataclass(frozen=True, eq=False)
class ButcherTableau:
    """An explicit Runge–Kutta method as data.

    Attributes:
        name: registered solver name (``"Tsit5"``).
        c, A, b: the Butcher tableau (``A`` strictly lower triangular, shape (s, s)).
        order: classical order of ``b``.
        b_error: ``b - b_hat`` of the embedded pair, or ``None`` (fixed-step only).
        error_order: order of the embedded solution ``b_hat`` (``None`` without one).
        fsal: first-same-as-last: the last stage is ``f(u_{n+1}, t_{n+1})`` (``c[-1] == 1``,
            ``A[-1] == b``).
        dense: interpolation coefficient matrix ``P`` (rows: interpolation stages, columns:
            powers theta**1 .. theta**deg); ``None`` selects cubic Hermite interpolation.
        dense_order: order of the dense output (global error ``O(dt**dense_order)``).
        extra: extra stages for the interpolant, or ``None``.
        stability_boundary: where the method's stability region meets the negative real
            axis (``|dt * lambda|`` limit), used by stiffness detection; ``None`` disables it.
        source: literature reference for the coefficients.
    """

    name: str
    c: np.ndarray
    A: np.ndarray
    b: np.ndarray
    order: int
    b_error: np.ndarray | None = None
    error_order: int | None = None
    fsal: bool = False
    dense: np.ndarray | None = None
    dense_order: int | None = None
    extra: ExtraStages | None = None
    stability_boundary: float | None = None
    source: str = ""
    description: str = field(default="")

    @property
    def stages(self) -> int:
        return len(self.b)

    @property
    def n_interp_stages(self) -> int:
        """Number of interpolation stages before the extra ones: s, plus k_end if not FSAL."""
        return self.stages + (0 if self.fsal else 1)
