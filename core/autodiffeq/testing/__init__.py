"""The conformance kit: checks that a solver plugin does what its capabilities declare.

Usable without pytest (each ``check_*`` raises :class:`ConformanceError` or returns a
:class:`CheckReport`) and from pytest with :func:`conformance_suite`. The gradient checks
(``check_gradient_*``, :mod:`autodiffeq.testing.gradients`) do the same for sensitivity
methods. The pytest plugin (entry point ``pytest11``) adds ``--autodiffeq-backend`` to restrict
the backends.
"""

from .checks import (
    CheckReport,
    ConformanceError,
    check_adaptive_tolerance,
    check_backward,
    check_convergence_order,
    check_dense_order,
    check_float32,
    check_no_host_leak,
    check_saveat,
    check_unsupported,
    fit_order,
)
from .gradients import (
    GRADIENT_PROBLEMS,
    GradientProblem,
    GradientReport,
    check_gradient_agreement,
    check_gradient_analytic,
    check_gradient_fd,
    check_gradient_fixed_step,
    check_gradient_transpose,
    check_gradient_unsupported,
)
from .problems import ANALYTIC_PROBLEMS, AnalyticProblem
from .suite import Case, conformance_cases, conformance_suite

__all__ = [
    "ANALYTIC_PROBLEMS",
    "AnalyticProblem",
    "Case",
    "CheckReport",
    "ConformanceError",
    "GRADIENT_PROBLEMS",
    "GradientProblem",
    "GradientReport",
    "check_adaptive_tolerance",
    "check_backward",
    "check_convergence_order",
    "check_dense_order",
    "check_float32",
    "check_gradient_agreement",
    "check_gradient_analytic",
    "check_gradient_fd",
    "check_gradient_fixed_step",
    "check_gradient_transpose",
    "check_gradient_unsupported",
    "check_no_host_leak",
    "check_saveat",
    "check_unsupported",
    "conformance_cases",
    "conformance_suite",
    "fit_order",
]
