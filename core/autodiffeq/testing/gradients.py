"""Gradient conformance: sensitivity methods checked against mathematics (docs/gradients.md;
docs/plugin_authors.md, the conformance kit).

Every ``check_gradient_*`` function differentiates a loss through ``ade.solve`` with one
solver, one sensitivity method (``sensealg=``) and one backend, compares the result with an
independent truth and either returns a :class:`GradientReport` or raises
:class:`~autodiffeq.testing.ConformanceError` (an ``AssertionError``) saying what was measured
and what was allowed; pytest is not needed. autograd drives the differentiation through
``solve`` (``autograd.grad``, ``autograd.make_jvp``); the right-hand sides are traced by
autograd only on NumPy (the sensitivity methods' default source of derivatives): on other
backends they are written with the array-API namespace of ``u`` and carry their own
derivatives (``ODEProblem(jac=, paramjac=, vjp=, jvp=)``).

**What the truth is.** The exact derivatives of the saved states with respect to ``u0`` and
``p`` come from the problem: the matrix exponential and its Fréchet derivative
(:func:`scipy.linalg.expm_frechet`) for the linear problem ``U' = P U``, and the forward
sensitivity equations ``S' = (df/du) S + df/dp`` integrated by SciPy's DOP853 at
``rtol = 1e-13`` for the nonlinear one (independent of every plugin under test; its own error,
about ``1e-12``, is below :data:`REFERENCE_FLOOR`).

**What a method must match.** A gradient through a solve is correct in one of two ways, and a
check passes if either holds:

* *the exact derivative of the computed (discrete) solution*, with the step sizes held fixed
  as docs/gradients.md says (``ReverseMode``, ``ForwardMode`` and ``DiscreteAdjoint`` are of this
  kind). The kit measures it independently of the method: it replays the solve's accepted
  step sequence as a fixed-step solve (``adaptive=False`` with every step end a ``tstop``),
  checks that the replay reproduces the solve, and takes fourth-order central differences of
  the replayed map, which is smooth in ``u0`` and ``p`` (about ``1e-11`` accurate). The
  method must agree with it to :data:`DISCRETE_TOL`, whatever the solver's order or step;
* *an approximation of the exact gradient as good as the solve allows* (continuous adjoints,
  forward sensitivity equations with their own error control): the relative error against
  the truth must be at most ``max(TOLERANCE_FACTOR * rtol, DISCRETISATION_FACTOR * e_disc,
  REFERENCE_FLOOR)``, where ``e_disc`` is the measured error of the discrete solution's own
  gradient (for fixed steps the only measure of the discretisation's accuracy; for
  adaptive solves the tolerance usually dominates).

Errors are norm-wise relative: ``||g - g_ref||_2 / ||g_ref||_2`` over the concatenated
``(u0, p)`` gradient. Low-order fixed-step solvers therefore need no special tolerances: the
first criterion is exact for methods that differentiate the discrete solution, and the second
scales with the measured discretisation error for those that approximate the continuous one.

**Agreement between methods.** :func:`check_gradient_agreement` computes every compatible
method's gradient on the same solve. Where the solve's discretisation error is large enough to
tell the two kinds apart (``e_disc >= SEPARATION * DISCRETE_TOL``), the methods that
reproduce the discrete derivative must agree with one another to rounding
(:data:`ROUNDING_TOL`, e.g. ``DiscreteAdjoint`` against ``ReverseMode``), and every pair must
agree within the sum of the two methods' allowances.
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UnsupportedCombination
from ..problems import ODEProblem
from ..registry import Registry
from ..registry import registry as default_registry
from ..rhs_derivatives import DerivativeWarning
from ..solve import SolverWarning, solve
from ..specs import SensitivitySpec, SolverSpec
from ..validation import array_namespace_of, is_traced
from .checks import CheckReport, ConformanceError

#: two gradients of the same discrete map computed by different (exact) routes agree to this
#: (norm-wise relative): rounding error accumulated over the steps, with a wide margin
ROUNDING_TOL = 1e-10
#: a gradient equal to the finite-difference derivative of the replayed discrete solution to
#: this (relative) is its exact derivative; the differences themselves are ~1e-11 accurate
DISCRETE_TOL = 1e-9
#: the discrete and continuous kinds of method can be told apart only where the discrete
#: solution's gradient error exceeds DISCRETE_TOL by this factor
SEPARATION = 100.0
#: an approximation of the continuous gradient may err by this multiple of ``rtol`` (the
#: built-in continuous methods measure at most about 2 x rtol on the kit's problems)
TOLERANCE_FACTOR = 100.0
#: ... or by this multiple of the discrete solution's own gradient error
DISCRETISATION_FACTOR = 10.0
#: accuracy of the reference derivatives, below which no error is held against a method
REFERENCE_FLOOR = 1e-9
#: relative step of the fourth-order central differences of the replayed discrete map
FD_STEP = 2.0**-12
#: tolerances of the SciPy reference solve of the forward sensitivity equations
REFERENCE_RTOL = 1e-13

_STEPPING = ("rtol", "atol", "dt", "adaptive", "dtmin", "dtmax", "tstops", "maxiters")


@dataclass
class GradientReport(CheckReport):
    """What a passing gradient check measured (``sensitivity``: the method checked)."""

    sensitivity: str = ""


# --------------------------------------------------------------------------- problems
def _namespace(u: Any, p: Any) -> tuple[Any, Any]:
    """The array namespace for ``f(u, p, t)`` and ``p`` converted into it: autograd.numpy
    while autograd traces (on NumPy), otherwise the namespace of ``u``."""
    if is_traced(u) or is_traced(p):
        import autograd.numpy as anp

        return anp, p
    xp = array_namespace_of(u)
    if xp is None:
        return np, p
    return xp, xp.asarray(p)


@dataclass(frozen=True, eq=False)
class GradientProblem:
    """An ODE whose solution's derivatives with respect to ``u0`` and ``p`` are known.

    Attributes:
        name: identifier used in reports.
        f, jac, paramjac: ``f(u, p, t)``, ``df/du`` (n, n) and ``df/dp`` (n, m), written with
            the array namespace of ``u`` (autograd.numpy while traced), so they run on every
            backend and on the host.
        u0, p: host arrays (any shapes); ``tspan``; ``saveat``: the saved times of the
            "saved" loss (``t0`` included, so its cotangent reaches ``u0`` directly).
        vjp, jvp: optional user products (``ODEProblem(vjp=, jvp=)``).
        always_user_derivatives: give ``jac``/``paramjac``/``vjp``/``jvp`` to the problem on
            NumPy too; otherwise NumPy gets ``jac`` only (for Rosenbrock-type solvers) and the
            sensitivity methods trace ``f`` with autograd, their default on NumPy.
        exact: ``exact(times) -> (U, S)``: states (k, n) and sensitivities (k, n, n + m)
            ``d u(t) / d (u0, p)`` (flat, row-major); ``None``: computed by
            :func:`reference_sensitivities` from the forward sensitivity equations.
        description: the equation.
    """

    name: str
    f: Callable[..., Any]
    jac: Callable[..., Any]
    paramjac: Callable[..., Any]
    u0: np.ndarray
    p: np.ndarray
    tspan: tuple[float, float]
    saveat: tuple[float, ...]
    description: str
    vjp: Callable[..., Any] | None = None
    jvp: Callable[..., Any] | None = None
    always_user_derivatives: bool = False
    exact: Callable[[Sequence[float]], tuple[np.ndarray, np.ndarray]] | None = None

    @property
    def n(self) -> int:
        """Number of state components."""
        return int(self.u0.size)

    @property
    def m(self) -> int:
        """Number of parameters."""
        return int(self.p.size)

    def build(self, u0: Any, p: Any, backend: Any) -> ODEProblem:
        """The :class:`ODEProblem` for ``u0`` and ``p`` (host arrays or autograd boxes) with
        the derivatives appropriate to ``backend`` (a :class:`~autodiffeq.Backend`)."""
        if self.always_user_derivatives or "autograd" not in getattr(backend, "capabilities", ()):
            return ODEProblem(self.f, u0, self.tspan, p, jac=self.jac, paramjac=self.paramjac,
                              vjp=self.vjp, jvp=self.jvp)
        return ODEProblem(self.f, u0, self.tspan, p, jac=self.jac)


# Lotka-Volterra with a forcing term: nonlinear and non-autonomous, u (2,), p (4,)
def _lv_f(u: Any, p: Any, t: float) -> Any:
    xp, p = _namespace(u, p)
    x, y = u[0], u[1]
    return xp.stack([p[0] * x - p[1] * x * y, -p[2] * y + p[3] * x * y + 0.1 * math.cos(t)])


def _lv_jac(u: Any, p: Any, t: float) -> Any:
    xp, p = _namespace(u, p)
    x, y = u[0], u[1]
    return xp.reshape(xp.stack([p[0] - p[1] * y, -p[1] * x, p[3] * y, -p[2] + p[3] * x]),
                      (2, 2))


def _lv_paramjac(u: Any, p: Any, t: float) -> Any:
    xp, _ = _namespace(u, p)
    x, y = u[0], u[1]
    z = xp.zeros_like(x)
    return xp.reshape(xp.stack([x, -x * y, z, z, z, z, -y, x * y]), (2, 4))


LOTKA_VOLTERRA = GradientProblem(
    name="lotka_volterra",
    f=_lv_f,
    jac=_lv_jac,
    paramjac=_lv_paramjac,
    u0=np.array([1.0, 0.5]),
    p=np.array([1.5, 1.0, 3.0, 1.0]),
    tspan=(0.0, 1.5),
    saveat=(0.0, 0.3, 0.8, 1.2, 1.5),
    description="x' = a x - b x y, y' = -c y + d x y + cos(t)/10 (nonlinear, forced)",
)


# U' = P U with a (3, 3) parameter matrix P and a (3, 2) state: exact via expm / expm_frechet
_P0 = np.array([[-0.5, 1.0, 0.2], [-0.8, -0.3, 0.4], [0.1, -0.6, -0.7]])
_U0 = np.array([[1.0, -0.5], [0.5, 0.25], [-1.0, 2.0]])


def _lin_f(u: Any, p: Any, t: float) -> Any:
    _, P = _namespace(u, p)
    return P @ u


def _lin_jac(u: Any, p: Any, t: float) -> Any:
    # d(PU)[i,k] / dU[j,l] = P[i,j] delta_kl
    xp, P = _namespace(u, p)
    eye = xp.eye(2, dtype=u.dtype)
    return xp.reshape(xp.reshape(P, (3, 1, 3, 1)) * xp.reshape(eye, (1, 2, 1, 2)), (6, 6))


def _lin_paramjac(u: Any, p: Any, t: float) -> Any:
    # d(PU)[i,k] / dP[a,b] = delta_ia U[b,k]
    xp, _ = _namespace(u, p)
    eye = xp.eye(3, dtype=u.dtype)
    return xp.reshape(xp.reshape(eye, (3, 1, 3, 1)) * xp.reshape(u.T, (1, 2, 1, 3)), (6, 9))


def _lin_vjp(v: Any, u: Any, p: Any, t: float) -> tuple[Any, Any]:
    _, P = _namespace(u, p)
    return P.T @ v, v @ u.T


def _lin_jvp(v: Any, u: Any, p: Any, t: float) -> Any:
    _, P = _namespace(u, p)
    return P @ v


_LIN_CACHE: dict[float, tuple[np.ndarray, np.ndarray]] = {}


def _lin_exact_at(t: float) -> tuple[np.ndarray, np.ndarray]:
    """``vec U(t)`` and ``d vec U(t) / d (vec U0, vec P)`` (row-major) for ``U' = P U``."""
    from scipy.linalg import expm_frechet

    hit = _LIN_CACHE.get(t)
    if hit is not None:
        return hit
    n, m = _U0.size, _P0.size
    S = np.zeros((n, n + m))
    E = np.eye(_P0.shape[0])
    if t != 0.0:
        for col in range(m):
            D = np.zeros(m)
            D[col] = t
            E, L = expm_frechet(t * _P0, D.reshape(_P0.shape))
            S[:, n + col] = (L @ _U0).reshape(-1)
    S[:, :n] = np.kron(E, np.eye(_U0.shape[1]))
    _LIN_CACHE[t] = ((E @ _U0).reshape(-1), S)
    return _LIN_CACHE[t]


def _lin_exact(times: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    pairs = [_lin_exact_at(float(t)) for t in times]
    return np.stack([u for u, _ in pairs]), np.stack([s for _, s in pairs])


LINEAR_MATRIX = GradientProblem(
    name="linear_matrix",
    f=_lin_f,
    jac=_lin_jac,
    paramjac=_lin_paramjac,
    vjp=_lin_vjp,
    jvp=_lin_jvp,
    u0=_U0,
    p=_P0,
    tspan=(0.0, 1.5),
    saveat=(0.0, 0.3, 0.9, 1.5),
    always_user_derivatives=True,
    exact=_lin_exact,
    description="U' = P U, U (3, 2), P (3, 3): U(t) = expm(t P) U0, dU/dP by expm_frechet",
)

GRADIENT_PROBLEMS: tuple[GradientProblem, ...] = (LOTKA_VOLTERRA, LINEAR_MATRIX)

_REFERENCE_CACHE: dict[tuple[int, tuple[float, ...]], tuple[Any, np.ndarray, np.ndarray]] = {}


def reference_sensitivities(
    problem: GradientProblem, times: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """States ``U`` (k, n) and sensitivities ``S`` (k, n, n + m) at ``times``: the problem's
    exact ones, or the forward sensitivity equations ``S' = J S + [0 | df/dp]``,
    ``S(t0) = [I | 0]`` solved by SciPy's DOP853 at ``rtol = 1e-13`` (cached)."""
    times_t = tuple(float(t) for t in times)
    key = (id(problem), times_t)
    hit = _REFERENCE_CACHE.get(key)
    if hit is not None and hit[0] is problem:
        return hit[1], hit[2]
    if problem.exact is not None:
        U, S = problem.exact(times_t)
    else:
        U, S = _sensitivity_equations(problem, times_t)
    _REFERENCE_CACHE[key] = (problem, U, S)
    return U, S


def _sensitivity_equations(
    problem: GradientProblem, times: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    from scipy.integrate import solve_ivp

    n, m = problem.n, problem.m
    shape, p = problem.u0.shape, problem.p

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        u = y[:n].reshape(shape)
        S = y[n:].reshape(n, n + m)
        J = np.asarray(problem.jac(u, p, t), dtype=float).reshape(n, n)
        Fp = np.asarray(problem.paramjac(u, p, t), dtype=float).reshape(n, m)
        dS = J @ S
        dS[:, n:] += Fp
        du = np.asarray(problem.f(u, p, t), dtype=float).reshape(-1)
        return np.concatenate([du, dS.reshape(-1)])

    y0 = np.concatenate([problem.u0.reshape(-1), np.eye(n, n + m).reshape(-1)])
    t0, t1 = problem.tspan
    sol = solve_ivp(rhs, (t0, t1), y0, method="DOP853", t_eval=np.asarray(times),
                    rtol=REFERENCE_RTOL, atol=REFERENCE_RTOL * 1e-2)
    if not sol.success:
        raise RuntimeError(f"reference solve of {problem.name} failed: {sol.message}")
    Y = sol.y.T
    return Y[:, :n], Y[:, n:].reshape(len(times), n, n + m)


# --------------------------------------------------------------------------- options
#: the most fixed steps a gradient check takes (tight level; the probe takes half)
FIXED_STEPS_MAX = 100


def gradient_options(spec: SolverSpec, span: float, level: str = "tight") -> dict[str, Any]:
    """Solve options of the gradient checks, from the solver's declared orders.

    ``"tight"`` (accuracy checks): adaptive solvers ``rtol = 10**-min(8, 1.5 q)`` with ``q =
    min(order, error_order + 1)`` the order the step-size controller works with (1e-8 for
    Vern7, 3e-8 for Tsit5 and Rodas5P, 1e-6 for Rodas4, 3e-5 for BS3, 1e-3 for Heun): the
    number of steps, about ``rtol**(-1/q)``, is then much the same for every order, so
    low-order solvers stay affordable (their allowance is correspondingly wider);
    ``atol = rtol / 100``. Fixed-step solvers ``dt = span / max(40, ceil(10**(3 / order)))``,
    at most :data:`FIXED_STEPS_MAX` steps (a first-order solver then costs what a
    second-order one does, not 25x: the allowance scales with the measured discretisation
    error, as for adaptive low-order solvers). ``"probe"`` (agreement): ``rtol = max(1e-4,
    tight rtol)`` or ``dt = span / max(20, ceil(10**(2 / order)))`` (at most half as many
    steps), coarse enough that the discrete solution's gradient differs measurably from the
    exact one. ``"fixed"``: the probe's fixed steps for every solver.
    """
    if level not in ("tight", "probe", "fixed"):
        raise ValueError(f"level must be 'tight', 'probe' or 'fixed', got {level!r}")
    if level == "fixed" or not spec.adaptive:
        least, digits, most = (40, 3.0, FIXED_STEPS_MAX) if level == "tight" \
            else (20, 2.0, FIXED_STEPS_MAX // 2)
        steps = min(most, max(least, math.ceil(10.0 ** (digits / max(spec.order, 1)))))
        return {"adaptive": False, "dt": span / steps}
    q = min(spec.order, (spec.error_order or spec.order - 1) + 1)
    rtol = 10.0 ** -min(8.0, 1.5 * q)
    if level == "probe":
        rtol = max(rtol, 1e-4)
    return {"rtol": rtol, "atol": rtol * 1e-2}


def _allowance(options: dict[str, Any], e_disc: float | None) -> float:
    allow = REFERENCE_FLOOR
    if options.get("adaptive", True) is not False and "rtol" in options:
        allow = max(allow, TOLERANCE_FACTOR * float(options["rtol"]))
    if e_disc is not None:
        allow = max(allow, DISCRETISATION_FACTOR * e_disc)
    return allow


# --------------------------------------------------------------------------- set-up
@dataclass
class _Setup:
    """One differentiated solve: problem, solver, backend, options, loss and inputs."""

    problem: GradientProblem
    solver: SolverSpec
    backend: Any
    registry: Registry
    options: dict[str, Any]
    loss: str = "saved"  # "saved": every saveat state; "final": the last state, saveat=None
    wrt: str = "both"  # "both", "u0" or "p"
    _weights: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.loss not in ("saved", "final"):
            raise ValueError(f"loss must be 'saved' or 'final', got {self.loss!r}")
        if self.wrt not in ("both", "u0", "p"):
            raise ValueError(f"wrt must be 'both', 'u0' or 'p', got {self.wrt!r}")
        rng = np.random.default_rng(zlib.crc32(f"{self.problem.name}:{self.loss}".encode()))
        rows = len(self.problem.saveat) if self.loss == "saved" else 1
        self._weights = rng.normal(size=(rows, self.problem.n))

    @property
    def saveat(self) -> np.ndarray | None:
        """The ``saveat`` of the solve (``None`` for the final-state loss: every step)."""
        return np.asarray(self.problem.saveat) if self.loss == "saved" else None

    @property
    def times(self) -> tuple[float, ...]:
        """Times of the states the loss reads."""
        return self.problem.saveat if self.loss == "saved" else (self.problem.tspan[1],)

    @property
    def x0(self) -> np.ndarray:
        """The differentiated inputs, flat: ``u0``, ``p`` or both concatenated."""
        parts = []
        if self.wrt in ("both", "u0"):
            parts.append(self.problem.u0.reshape(-1))
        if self.wrt in ("both", "p"):
            parts.append(self.problem.p.reshape(-1))
        return np.concatenate(parts).astype(np.float64)

    def split(self, x: Any) -> tuple[Any, Any]:
        """``(u0, p)`` from the differentiated inputs ``x`` (host array or autograd box)."""
        import autograd.numpy as anp

        prob, n = self.problem, self.problem.n
        u0, p, offset = prob.u0, prob.p, 0
        if self.wrt in ("both", "u0"):
            u0 = anp.reshape(x[:n], prob.u0.shape)
            offset = n
        if self.wrt in ("both", "p"):
            p = anp.reshape(x[offset:offset + prob.m], prob.p.shape)
        return u0, p

    def describe(self) -> str:
        """Problem, loss, inputs and options, for messages."""
        opts = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in self.options.items())
        return (f"problem {self.problem.name}, {self.loss}-state loss w.r.t. "
                f"{'(u0, p)' if self.wrt == 'both' else self.wrt}, {opts}")

    def solve(self, x: Any, sensealg: Any = None, **overrides: Any) -> Any:
        """``ade.solve`` at inputs ``x`` with the set-up's options and ``overrides``; a failed
        solve is a :class:`ConformanceError`."""
        u0, p = self.split(x)
        options = {**self.options, **overrides}
        saveat = options.pop("saveat", self.saveat)
        sol = solve(self.problem.build(u0, p, self.backend), self.solver, saveat=saveat,
                    backend=self.backend.name, registry=self.registry, sensealg=sensealg,
                    **options)
        if sol.retcode != "Success":
            raise ConformanceError(
                f"{self.solver.name} on {self.backend.name}: the solve failed with retcode "
                f"{sol.retcode} ({self.describe()})"
            )
        return sol

    def outputs(self, x: Any, sensealg: Any = None) -> Any:
        """The saved states the loss reads (host array, or an autograd box when traced)."""
        u = self.solve(x, sensealg).u
        if not is_traced(u):
            u = np.asarray(self.backend.to_host(u), dtype=np.float64)
        return u

    def loss_of(self, U: Any) -> Any:
        """``sum(W * U) + sum(U**2) / 2`` over the states the loss reads."""
        import autograd.numpy as anp

        n = self.problem.n
        if self.loss == "final":
            U = anp.reshape(U[-1], (1, n))
        else:
            U = anp.reshape(U, (len(self.problem.saveat), n))
        return anp.sum(self._weights * U) + 0.5 * anp.sum(U * U)

    def value(self, x: Any, sensealg: Any = None) -> Any:
        """The loss at inputs ``x`` (traceable by autograd)."""
        return self.loss_of(self.outputs(x, sensealg))

    def true_gradient(self) -> np.ndarray:
        """The exact gradient of the loss with respect to the differentiated inputs."""
        U, S = reference_sensitivities(self.problem, self.times)
        G = self._weights + U  # dL/dU at the read states
        full = np.einsum("kn,knj->j", G, S)
        return self._select(full)

    def true_directional(self, v: np.ndarray) -> np.ndarray:
        """Exact ``J v`` of the saved states (k, n) for the tangent ``v`` of the inputs."""
        _, S = reference_sensitivities(self.problem, self.times)
        n, m = self.problem.n, self.problem.m
        full = np.zeros(n + m)
        if self.wrt == "both":
            full[:] = v
        elif self.wrt == "u0":
            full[:n] = v
        else:
            full[n:] = v
        return np.einsum("knj,j->kn", S, full)

    def _select(self, full: np.ndarray) -> np.ndarray:
        n = self.problem.n
        if self.wrt == "u0":
            return full[:n]
        if self.wrt == "p":
            return full[n:]
        return full


def _setup(
    solver: str | SolverSpec,
    backend: str,
    registry: Registry | None,
    sensitivity: str | SensitivitySpec | None = None,
    check_compatible: bool = True,
) -> tuple[Registry, SolverSpec, Any, SensitivitySpec | None]:
    reg = registry if registry is not None else default_registry()
    spec = reg.solver(solver)
    be = reg.get_backend(backend)
    sens = reg.sensitivity(sensitivity) if sensitivity is not None else None
    if check_compatible:
        reg.compatible(spec, be.name, sens, "ODE").raise_if_incompatible()
    return reg, spec, be, sens


def _relative(a: np.ndarray, b: np.ndarray, scale: float) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / scale)


def _fmt(x: np.ndarray, k: int = 4) -> str:
    vals = ", ".join(f"{v:.10g}" for v in np.asarray(x)[:k])
    return f"[{vals}{', ...' if np.size(x) > k else ''}]"


def _central_differences(fun: Callable[[np.ndarray], float], x0: np.ndarray) -> np.ndarray:
    """Fourth-order central differences of a smooth scalar function."""
    g = np.empty(x0.size)
    for j in range(x0.size):
        h = FD_STEP * max(1.0, abs(float(x0[j])))
        e = np.zeros(x0.size)
        e[j] = h
        g[j] = (8.0 * (fun(x0 + e) - fun(x0 - e)) - (fun(x0 + 2 * e) - fun(x0 - 2 * e))) / (
            12.0 * h
        )
    return g


# --------------------------------------------------------------------------- discrete solution
@dataclass
class _Replay:
    """The solve's accepted step sequence as a fixed-step map ``x -> saved states``."""

    run: Callable[[np.ndarray], np.ndarray] | None
    reason: str = ""
    steps: int = 0


@dataclass
class _Discrete:
    """The derivative of the discrete solution, measured by the kit (or why it is not)."""

    gradient: np.ndarray | None
    reason: str = ""
    steps: int = 0


# keyed by ids; each entry keeps its problem and registry so that a reused id cannot hit it
_REPLAY_CACHE: dict[tuple[Any, ...], tuple[Any, Any, _Replay]] = {}
_DISCRETE_CACHE: dict[tuple[Any, ...], tuple[Any, Any, _Discrete]] = {}


def _setup_key(setup: _Setup, with_loss: bool = True) -> tuple[Any, ...]:
    key = (id(setup.registry), id(setup.problem), setup.solver.name, setup.backend.name,
           tuple(sorted(setup.options.items())), setup.loss == "final", setup.wrt)
    return key + ((setup.loss,) if with_loss else ())


def replay_map(setup: _Setup) -> _Replay:
    """The discrete solution as a function of the differentiated inputs (cached).

    The solve is repeated as a sensitivity method sees it (stepping onto every ``saveat``
    time, every step saved); its accepted step ends become ``tstops`` of a fixed-step solve
    (``adaptive=False``, ``dt`` = the whole span), which must reproduce the saved states to
    ``1e-12``. That map is smooth in ``(u0, p)``.
    """
    key = _setup_key(setup, with_loss=False)
    hit = _REPLAY_CACHE.get(key)
    if hit is not None and hit[0] is setup.problem and hit[1] is setup.registry:
        return hit[2]
    result = _make_replay(setup)
    _REPLAY_CACHE[key] = (setup.problem, setup.registry, result)
    return result


def _make_replay(setup: _Setup) -> _Replay:
    prob = setup.problem
    saveat = setup.saveat
    stops = np.unique(saveat) if saveat is not None else ()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DerivativeWarning)
            grid_sol = setup.solve(setup.x0, None, saveat=None, tstops=stops, dense=False)
    except ConformanceError as exc:
        return _Replay(None, str(exc))
    grid = np.asarray(grid_sol.t, dtype=np.float64)
    states = np.asarray(setup.backend.to_host(grid_sol.u), dtype=np.float64)
    states = states.reshape(len(grid), prob.n)
    if saveat is not None:
        rows = np.clip(np.searchsorted(grid, saveat), 0, len(grid) - 1)
        if not np.array_equal(grid[rows], saveat):
            return _Replay(None, "the solve did not step onto every saveat time")
        states = states[rows]
    t0, t1 = prob.tspan
    solver_opts = {k: v for k, v in setup.options.items() if k not in _STEPPING}

    def make_run(on: _Setup) -> Callable[[np.ndarray], np.ndarray]:
        def run(x: np.ndarray) -> np.ndarray:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DerivativeWarning)
                sol = on.solve(x, None, saveat=saveat, adaptive=False, dt=abs(t1 - t0),
                               tstops=grid[1:-1], dense=False, **solver_opts)
            out = np.asarray(on.backend.to_host(sol.u), dtype=np.float64)
            return out.reshape(len(sol.t), prob.n)

        return run

    # the same steps on NumPy are the same map up to rounding and much cheaper to evaluate
    # than on a strict test backend; the replay must reproduce this backend's states anyway
    candidates = [setup]
    reg = setup.registry
    if setup.backend.name != "numpy" and "numpy" in reg.available_backends() and (
        reg.compatible(setup.solver, "numpy", None, "ODE")
    ):
        host = _Setup(prob, setup.solver, reg.get_backend("numpy"), reg, setup.options,
                      setup.loss, setup.wrt)
        candidates.insert(0, host)
    reason = ""
    for on in candidates:
        run = make_run(on)
        try:
            again = run(setup.x0)
        except (ConformanceError, UnsupportedCombination) as exc:
            reason = f"the step sequence could not be replayed: {exc}"
            continue
        if again.shape != states.shape:
            reason = "the fixed-step replay saved a different number of states"
            continue
        scale = max(1.0, float(np.max(np.abs(states))))
        mismatch = float(np.max(np.abs(again - states)) / scale)
        if mismatch > 1e-12:
            reason = (
                f"the fixed-step replay of the accepted steps does not reproduce the solve "
                f"(difference {mismatch:.1e}), so its derivative is not the solve's"
            )
            continue
        return _Replay(run, steps=len(grid) - 1)
    return _Replay(None, reason)


def discrete_gradient(setup: _Setup) -> _Discrete:
    """The gradient of the loss of the *discrete* solution (step sequence held fixed): fourth-
    order central differences of :func:`replay_map` (cached)."""
    key = _setup_key(setup)
    hit = _DISCRETE_CACHE.get(key)
    if hit is not None and hit[0] is setup.problem and hit[1] is setup.registry:
        return hit[2]
    replay = replay_map(setup)
    if replay.run is None:
        result = _Discrete(None, replay.reason)
    else:
        run = replay.run
        grad = _central_differences(lambda x: float(setup.loss_of(run(x))), setup.x0)
        result = _Discrete(grad, steps=replay.steps)
    _DISCRETE_CACHE[key] = (setup.problem, setup.registry, result)
    return result


# --------------------------------------------------------------------------- method gradients
def _notes(caught: Iterable[warnings.WarningMessage]) -> list[str]:
    out = []
    for w in caught:
        if issubclass(w.category, (DerivativeWarning, SolverWarning)):
            text = f"{w.category.__name__}: {w.message}"
            if text not in out:
                out.append(text)
    return out


def method_gradient(setup: _Setup, sensealg: Any) -> tuple[np.ndarray, list[str]]:
    """The loss gradient by ``autograd.grad`` through ``solve(..., sensealg=sensealg)``; a
    method without a reverse mode (``UnsupportedCombination`` from its VJP) is asked for
    Jacobian-vector products along the unit vectors instead. Returns the gradient and the
    derivative/solver warnings raised meanwhile."""
    from autograd import grad, make_jvp

    x0 = setup.x0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            g = np.asarray(grad(lambda x: setup.value(x, sensealg))(x0), dtype=np.float64)
        except UnsupportedCombination as no_vjp:
            try:
                jvp = make_jvp(lambda x: setup.value(x, sensealg))(x0)
                g = np.array([float(jvp(e)[1]) for e in np.eye(x0.size)])
            except UnsupportedCombination as no_jvp:
                raise ConformanceError(
                    f"sensitivity method {sensealg!r} with {setup.solver.name} gave neither a "
                    f"gradient ({no_vjp}) nor Jacobian-vector products ({no_jvp})"
                ) from no_jvp
    return g, _notes(caught)


def _judge(
    check: str,
    setup: _Setup,
    sensitivity: str,
    g: np.ndarray,
    g_true: np.ndarray,
    disc: _Discrete,
    notes: list[str],
) -> dict[str, Any]:
    """Apply the two criteria of the module docstring; the measured values, or raise."""
    scale = float(np.linalg.norm(g_true)) or 1.0
    err_true = _relative(g, g_true, scale)
    e_disc = err_disc = None
    if disc.gradient is not None:
        e_disc = _relative(disc.gradient, g_true, scale)
        err_disc = _relative(g, disc.gradient, scale)
    allow = _allowance(setup.options, e_disc)
    measured = {"error": err_true, "allowed": allow, "discrete_error": e_disc,
                "error_vs_discrete": err_disc, "steps": disc.steps, "notes": notes}
    finite = bool(np.all(np.isfinite(g)))
    exact_discrete = finite and err_disc is not None and err_disc <= DISCRETE_TOL
    # "discrete" only where the discrete derivative is measurably not the exact one
    if exact_discrete and e_disc is not None and e_disc >= SEPARATION * DISCRETE_TOL:
        measured["kind"] = "discrete"
        return measured
    if finite and err_true <= allow:
        measured["kind"] = "accurate"
        return measured
    if exact_discrete:
        measured["kind"] = "discrete"
        return measured
    if e_disc is None:
        discrete = f"the derivative of the discrete solution is unavailable ({disc.reason})"
    else:
        discrete = (
            f"it differs from the derivative of the discrete solution by {err_disc:.2e} "
            f"(an exact one would be within {DISCRETE_TOL:.0e}; that derivative is itself "
            f"{e_disc:.2e} from the exact gradient)"
        )
    raise ConformanceError(
        f"{check}: {setup.solver.name} with sensealg={sensitivity} on {setup.backend.name} "
        f"({setup.describe()}): the gradient differs from the exact one by {err_true:.2e} "
        f"(relative; allowed {allow:.1e} = max({TOLERANCE_FACTOR:g} x rtol, "
        f"{DISCRETISATION_FACTOR:g} x the discrete solution's gradient error, "
        f"{REFERENCE_FLOOR:.0e})), and {discrete}. gradient {_fmt(g)}, exact {_fmt(g_true)}"
        + (f", discrete {_fmt(disc.gradient)}" if disc.gradient is not None else "")
        + ("; warnings: " + " | ".join(notes) if notes else "")
    )


def _accuracy_check(
    check: str, setup: _Setup, sens: SensitivitySpec
) -> GradientReport:
    g, notes = method_gradient(setup, sens.name)
    measured = _judge(check, setup, sens.name, g, setup.true_gradient(),
                      discrete_gradient(setup), notes)
    return GradientReport(check, setup.solver.name, setup.backend.name, setup.problem.name,
                          measured, sensitivity=sens.name)


# --------------------------------------------------------------------------- checks
def check_gradient_fd(
    solver: str | SolverSpec,
    sensitivity: str | SensitivitySpec,
    backend: str = "numpy",
    registry: Registry | None = None,
    problem: GradientProblem = LOTKA_VOLTERRA,
    *,
    loss: str = "saved",
    wrt: str = "both",
    options: dict[str, Any] | None = None,
) -> GradientReport:
    """The gradient with respect to ``u0`` and ``p`` of a loss on the saved states of a
    nonlinear, non-autonomous problem, at tight tolerances (:func:`gradient_options`), equals
    the derivative of the discrete solution (central differences of the replayed steps) or
    approximates the exact one (forward sensitivity equations at ``rtol = 1e-13``) within
    the allowance of the module docstring."""
    reg, spec, be, sens = _setup(solver, backend, registry, sensitivity)
    assert sens is not None
    opts = dict(options) if options is not None else gradient_options(
        spec, abs(problem.tspan[1] - problem.tspan[0]), "tight")
    setup = _Setup(problem, spec, be, reg, opts, loss, wrt)
    return _accuracy_check("grad-fd", setup, sens)


def check_gradient_analytic(
    solver: str | SolverSpec,
    sensitivity: str | SensitivitySpec,
    backend: str = "numpy",
    registry: Registry | None = None,
) -> GradientReport:
    """``U' = P U`` with a matrix-shaped state (3, 2) and parameter (3, 3) and user-supplied
    derivatives, against the matrix exponential and its Fréchet derivative, judged as
    :func:`check_gradient_fd`: a loss on the saved states (``t0`` among them) with respect to
    ``(U0, P)``, and a loss on the final state of a solve saving every step (``saveat=None``:
    every output but the last has a zero cotangent) with respect to ``P`` alone and to ``U0``
    alone (the other input not traced)."""
    reg, spec, be, sens = _setup(solver, backend, registry, sensitivity)
    assert sens is not None
    problem = LINEAR_MATRIX
    opts = gradient_options(spec, abs(problem.tspan[1] - problem.tspan[0]), "tight")
    measured: dict[str, Any] = {}
    for loss, wrt in (("saved", "both"), ("final", "p"), ("final", "u0")):
        setup = _Setup(problem, spec, be, reg, opts, loss, wrt)
        report = _accuracy_check("grad-analytic", setup, sens)
        measured[f"{loss}/{wrt}"] = report.measured
    return GradientReport("grad-analytic", spec.name, be.name, problem.name, measured,
                          sensitivity=sens.name)


def check_gradient_fixed_step(
    solver: str | SolverSpec,
    sensitivity: str | SensitivitySpec,
    backend: str = "numpy",
    registry: Registry | None = None,
) -> GradientReport:
    """The cheap check every solver gets: a coarse fixed-step solve (``adaptive=False``,
    ``gradient_options(level="fixed")``) of the nonlinear problem; the gradient must be the
    exact derivative of the discrete solution or within ``DISCRETISATION_FACTOR`` times that
    derivative's own error of the exact gradient."""
    reg, spec, be, sens = _setup(solver, backend, registry, sensitivity)
    assert sens is not None
    problem = LOTKA_VOLTERRA
    opts = gradient_options(spec, abs(problem.tspan[1] - problem.tspan[0]), "fixed")
    return _accuracy_check("grad-fixed", _Setup(problem, spec, be, reg, opts), sens)


def check_gradient_transpose(
    solver: str | SolverSpec,
    sensitivity: str | SensitivitySpec,
    backend: str = "numpy",
    registry: Registry | None = None,
) -> GradientReport:
    """``w . (J v) == (J^T w) . v`` for the Jacobian ``J`` of the saved states with respect to
    ``(u0, p)``, with ``J v`` from ``autograd.make_jvp`` and ``J^T w`` from ``autograd.grad``
    through ``solve(..., sensealg=sensitivity)``.

    Passes when the two agree to :data:`ROUNDING_TOL` (relative to ``|w| |J v|``), or when
    each is within the method's allowance of the exact value (a method whose two products are
    independent approximations). Solved at the tolerances of :func:`check_gradient_fd`. A
    method lacking one product must raise :class:`UnsupportedCombination` with a reason for it
    (an explicit ``sensealg`` never falls back to another method); a ``mode="forward"`` method
    must have the JVP, and a ``mode="reverse"`` method with a JVP must have the VJP too.
    """
    from autograd import grad, make_jvp

    reg, spec, be, sens = _setup(solver, backend, registry, sensitivity)
    assert sens is not None
    problem = LOTKA_VOLTERRA
    opts = gradient_options(spec, abs(problem.tspan[1] - problem.tspan[0]), "tight")
    setup = _Setup(problem, spec, be, reg, opts)
    rng = np.random.default_rng(11)
    x0 = setup.x0
    v = rng.normal(size=x0.size)
    w = rng.normal(size=(len(problem.saveat), *problem.u0.shape))
    where = f"{spec.name} with sensealg={sens.name} on {be.name}"
    jv = wj = None
    missing: dict[str, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DerivativeWarning)
        try:
            _, jv = make_jvp(lambda x: setup.outputs(x, sens.name))(x0)(v)
            jv = np.asarray(jv, dtype=np.float64)
        except UnsupportedCombination as exc:
            missing["jvp"] = str(exc)
        if not missing:  # without a JVP there is nothing to transpose (the VJP: grad-fd)
            try:
                wj = np.asarray(
                    grad(lambda x: _dot(w, setup.outputs(x, sens.name)))(x0), dtype=np.float64
                )
            except UnsupportedCombination as exc:
                missing["vjp"] = str(exc)
    for product, mode in (("jvp", "forward"), ("vjp", "reverse")):
        if product in missing:
            if sens.mode == mode:
                raise ConformanceError(
                    f"grad-transpose: {where}: a mode={mode!r} method must provide the "
                    f"{product.upper()}, but it raised UnsupportedCombination: "
                    f"{missing[product]}"
                )
            if not missing[product].strip():
                raise ConformanceError(f"grad-transpose: {where}: UnsupportedCombination "
                                       f"for the missing {product.upper()} has no reason")
    if jv is None or wj is None:
        return GradientReport("grad-transpose", spec.name, be.name, problem.name,
                              {"unsupported": missing}, sensitivity=sens.name)
    a = float(np.sum(w * jv))
    b = float(wj @ v)
    exact_jv = setup.true_directional(v).reshape(jv.shape)
    exact = float(np.sum(w * exact_jv))
    scale = float(np.linalg.norm(w) * np.linalg.norm(exact_jv)) or 1.0
    gap = abs(a - b) / scale
    allow = _allowance(opts, _transpose_discrete_error(setup, v, w, exact, scale))
    measured = {"w.Jv": a, "JTw.v": b, "exact": exact, "gap": gap, "allowed": allow}
    if gap <= ROUNDING_TOL:
        measured["kind"] = "transposes"
    elif abs(a - exact) / scale <= allow and abs(b - exact) / scale <= allow:
        measured["kind"] = "both accurate"
    else:
        raise ConformanceError(
            f"grad-transpose: {where} ({setup.describe()}): w.(J v) = {a:.15g} but "
            f"(J^T w).v = {b:.15g}: they differ by {gap:.2e} relative to |w||Jv| (transposes "
            f"agree within {ROUNDING_TOL:.0e}), and are not both within {allow:.1e} of the "
            f"exact {exact:.15g}"
        )
    return GradientReport("grad-transpose", spec.name, be.name, problem.name, measured,
                          sensitivity=sens.name)


def _dot(w: np.ndarray, U: Any) -> Any:
    import autograd.numpy as anp

    return anp.sum(w * U)


def _transpose_discrete_error(
    setup: _Setup, v: np.ndarray, w: np.ndarray, exact: float, scale: float
) -> float | None:
    """Error of the discrete solution's ``w . (J v)`` (directional central differences of
    :func:`replay_map`): the discretisation part of the transposition check's allowance."""
    replay = replay_map(setup)
    if replay.run is None:
        return None
    run, x0 = replay.run, setup.x0

    def along(s: float) -> float:
        return float(np.sum(w.reshape(-1) * run(x0 + s * v).reshape(-1)))

    h = FD_STEP * max(1.0, float(np.max(np.abs(x0)))) / max(1.0, float(np.linalg.norm(v)))
    d = (8.0 * (along(h) - along(-h)) - (along(2 * h) - along(-2 * h))) / (12.0 * h)
    return abs(d - exact) / scale


def check_gradient_agreement(
    solver: str | SolverSpec,
    backend: str = "numpy",
    registry: Registry | None = None,
    sensitivities: Iterable[str] | None = None,
) -> CheckReport:
    """Every compatible sensitivity method (or those named) differentiates the same solve
    (``gradient_options(level="probe")``, coarse enough for the discrete solution's gradient
    to differ measurably from the exact one). Methods that reproduce the derivative of the
    discrete solution must agree with each other to :data:`ROUNDING_TOL`; every pair must
    agree within the sum of the two methods' allowances."""
    reg, spec, be, _ = _setup(solver, backend, registry)
    wanted = set(sensitivities) if sensitivities is not None else None
    methods = [s for s in reg.sensitivities()
               if (wanted is None or s.name in wanted) and reg.compatible(spec, be.name, s,
                                                                           "ODE")]
    problem = LOTKA_VOLTERRA
    opts = gradient_options(spec, abs(problem.tspan[1] - problem.tspan[0]), "probe")
    setup = _Setup(problem, spec, be, reg, opts)
    g_true = setup.true_gradient()
    scale = float(np.linalg.norm(g_true)) or 1.0
    disc = discrete_gradient(setup)
    e_disc = None if disc.gradient is None else _relative(disc.gradient, g_true, scale)
    separated = e_disc is not None and e_disc >= SEPARATION * DISCRETE_TOL
    grads: dict[str, np.ndarray] = {}
    allow: dict[str, float] = {}
    exact_kind: list[str] = []
    for s in methods:
        g, _ = method_gradient(setup, s.name)
        grads[s.name] = g
        if separated and _relative(g, disc.gradient, scale) <= DISCRETE_TOL:
            exact_kind.append(s.name)
            allow[s.name] = e_disc + DISCRETE_TOL
        else:
            allow[s.name] = _allowance(opts, e_disc)
    gaps: dict[str, float] = {}
    failures: list[str] = []
    names = list(grads)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            gap = _relative(grads[a], grads[b], scale)
            gaps[f"{a}/{b}"] = gap
            limit = (ROUNDING_TOL if a in exact_kind and b in exact_kind
                     else allow[a] + allow[b])
            if not gap <= limit:
                failures.append(f"{a} vs {b}: {gap:.2e} > {limit:.1e}")
    measured = {"methods": names, "discrete_exact": exact_kind, "separated": separated,
                "discrete_error": e_disc, "gaps": gaps}
    if failures:
        raise ConformanceError(
            f"grad-agree: {spec.name} on {be.name} ({setup.describe()}): methods disagree "
            f"(relative to |exact gradient|; methods reproducing the discrete derivative: "
            f"{exact_kind or 'none'}, which must agree to {ROUNDING_TOL:.0e}): "
            + "; ".join(failures)
            + ". gradients: " + ", ".join(f"{k} {_fmt(v)}" for k, v in grads.items())
        )
    return CheckReport("grad-agree", spec.name, be.name, problem.name, measured)


def check_gradient_unsupported(
    solver: str | SolverSpec,
    sensitivity: str | SensitivitySpec,
    backend: str = "numpy",
    registry: Registry | None = None,
) -> GradientReport:
    """A combination that ``registry.compatible(solver, backend, sensitivity)`` declares
    unsupported raises :class:`UnsupportedCombination` carrying that reason, for
    ``autograd.grad`` and ``autograd.make_jvp`` through ``solve(..., sensealg=name)``. For a
    compatible combination there is nothing to check (``measured["checked"] == 0``)."""
    from autograd import grad, make_jvp

    reg, spec, be, sens = _setup(solver, backend, registry, sensitivity,
                                 check_compatible=False)
    assert sens is not None
    problem = LOTKA_VOLTERRA
    compat = reg.compatible(spec, be.name, sens, "ODE")
    if compat:
        return GradientReport("grad-unsupported", spec.name, be.name, problem.name,
                              {"checked": 0}, sensitivity=sens.name)
    setup = _Setup(problem, spec, be, reg,
                   gradient_options(spec, abs(problem.tspan[1] - problem.tspan[0]), "probe"))
    where = f"{spec.name} with sensealg={sens.name} on {be.name}"
    attempts = {
        "autograd.grad": lambda: grad(lambda x: setup.value(x, sens.name))(setup.x0),
        "autograd.make_jvp": lambda: make_jvp(lambda x: setup.value(x, sens.name))(
            setup.x0)(np.ones(setup.x0.size)),
    }
    for what, attempt in attempts.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                attempt()
        except UnsupportedCombination as exc:
            if compat.reason not in str(exc):
                raise ConformanceError(
                    f"grad-unsupported: {where}: {what} raised UnsupportedCombination, but "
                    f"without the declared reason {compat.reason!r}: {exc}"
                ) from exc
            continue
        except Exception as exc:
            raise ConformanceError(
                f"grad-unsupported: {where} is declared unsupported ({compat.reason}) but "
                f"{what} raised {type(exc).__name__}: {exc} instead of UnsupportedCombination"
            ) from exc
        raise ConformanceError(
            f"grad-unsupported: {where} is declared unsupported ({compat.reason}) but "
            f"{what} through solve() did not raise UnsupportedCombination"
        )
    return GradientReport("grad-unsupported", spec.name, be.name, problem.name,
                          {"checked": len(attempts), "reason": compat.reason},
                          sensitivity=sens.name)


#: the per-(solver, method, backend) checks of the full gradient matrix, by case name
FULL_CHECKS: dict[str, Callable[..., CheckReport]] = {
    "grad-fd": check_gradient_fd,
    "grad-analytic": check_gradient_analytic,
    "grad-transpose": check_gradient_transpose,
}
#: the cheap per-(solver, method, backend) checks every compatible solver gets
CHEAP_CHECKS: dict[str, Callable[..., CheckReport]] = {
    "grad-fixed": check_gradient_fixed_step,
}


def representative_solvers(specs: Iterable[SolverSpec]) -> set[str]:
    """The solvers whose full gradient matrix belongs to the fast run, chosen from
    capabilities alone: per solver family, the adaptive solver the default-solver choice
    prefers (order closest to 5, then the highest ``default_priority``, then the higher
    order) and the highest-order fixed-step solver. Built-ins: Tsit5, RK4, Rodas5P and
    AutoTsit5Rodas5P."""
    families: dict[str, list[SolverSpec]] = {}
    for s in specs:
        families.setdefault(s.family, []).append(s)
    chosen: set[str] = set()
    for members in families.values():
        adaptive = [s for s in members if s.adaptive]
        if adaptive:
            best = min(adaptive, key=lambda s: (abs(s.order - 5), -s.default_priority,
                                                -s.order))
            chosen.add(best.name)
        fixed = [s for s in members if not s.adaptive]
        if fixed:
            chosen.add(max(fixed, key=lambda s: s.order).name)
    return chosen
