"""One validated solve request, built in one place for every problem type.

:func:`build_request` turns the arguments of :func:`autodiffeq.solve` into a
:class:`SolveRequest`: the resolved backend and solver (checked for compatibility with the
problem, the backend, the sensitivity method and the callbacks), validated tolerances, time
options, ``saveat``/``tstops``, callbacks and the initial state. ``solve``, the DAE set-up
(:mod:`autodiffeq.dae`), the gradient interface (:mod:`autodiffeq.sensitivity`) and
:func:`autodiffeq.local_sensitivities` all validate through this module, so an option means the
same everywhere and the lists of option names live here alone (:data:`SOLVE_OPTIONS`).
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import config
from .backend import Backend
from .brownian import check_seed
from .callbacks import Callback, normalize_callbacks
from .errors import (
    BackendUnavailable,
    InvalidArgument,
    InvalidType,
    ShapeMismatch,
    SolverWarning,
    UnknownName,
    UnsupportedCombination,
)
from .registry import Registry
from .registry import registry as default_registry
from .specs import ProblemTypeSpec, SensitivitySpec, SolverSpec
from .validation import array_namespace_of, check_positive_number, is_traced

#: the keyword options of :func:`autodiffeq.solve` other than ``alg`` and the solver's own
#: options, with their defaults
SOLVE_OPTIONS: dict[str, Any] = {
    "rtol": 1e-3,
    "atol": 1e-6,
    "dt": None,
    "adaptive": None,
    "saveat": None,
    "tstops": (),
    "dense": None,
    "maxiters": 1_000_000,
    "dtmin": None,
    "dtmax": None,
    "backend": None,
    "sensealg": None,
    "seed": None,
    "progress": False,
    "error_components": None,
    "callback": None,
    "controller": None,
    "internalnorm": None,
    "observers": (),
    "brownian": None,
}


#: option names of DifferentialEquations.jl, SciPy, torchdiffeq and diffrax, with ours
FOREIGN_OPTIONS: dict[str, str] = {
    "reltol": "rtol",
    "abstol": "atol",
    "save_everystep": "saveat=None (every step) or saveat=[...]",
    "saveat_everystep": "saveat",
    "save_idxs": "saveat plus indexing sol.u[:, idxs]",
    "t_eval": "saveat",
    "first_step": "dt",
    "max_step": "dtmax",
    "dt0": "dt",
    "dense_output": "dense",
    "method": "alg (the second argument)",
    "solver": "alg (the second argument)",
    "stepsize_controller": "controller",
    "max_steps": "maxiters",
    "adjoint": "sensealg",
    "adjoint_method": "sensealg",
    "callbacks": "callback",
    "events": "callback=ade.ContinuousCallback(...)",
}


def split_options(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(solve options, solver options)`` from keyword arguments: the names in
    :data:`SOLVE_OPTIONS` (defaults filled in) and the rest."""
    options = dict(SOLVE_OPTIONS)
    alg_options = {}
    for key, value in kwargs.items():
        if key in SOLVE_OPTIONS:
            options[key] = value
        else:
            alg_options[key] = value
    return options, alg_options


def resolve_registry(registry: Any) -> Registry:
    reg = registry if registry is not None else default_registry()
    if not isinstance(reg, Registry):
        raise InvalidType(f"registry must be an autodiffeq.Registry, got {type(reg).__name__}")
    return reg


@dataclass
class SolveRequest:
    """A validated solve: everything the pipeline needs, nothing left to check.

    Attributes:
        prob, problem_type: the problem and its registered :class:`ProblemTypeSpec`.
        solver, backend, registry: the resolved solver spec, backend and registry.
        alg_options: the solver's own options.
        rtol, atol: the tolerances as given (host), after the dtype's floor;
            ``rtol_b``/``atol_b``: on the backend (0-d or flat arrays of the state's length).
        adaptive, dt, dtmin, dtmax, maxiters, progress, seed: as validated.
        saveat: host array of save times or ``None``; ``tstops``: host array of stops.
        dense: whether dense output is kept.
        u0: the flat initial state on the backend; ``dtype``: its backend dtype;
            ``shape``: the user's state shape.
        callbacks: the callbacks, flattened; ``controller``, ``internalnorm``,
            ``error_components``, ``observers``: driver options.
        sensealg: the ``sensealg`` argument (only checked for compatibility here).
    """

    prob: Any
    problem_type: ProblemTypeSpec
    solver: SolverSpec
    backend: Backend
    registry: Registry
    alg_options: dict[str, Any]
    rtol: Any
    atol: Any
    rtol_b: Any
    atol_b: Any
    adaptive: bool
    dt: float | None
    dtmin: float
    dtmax: float
    maxiters: int
    saveat: np.ndarray | None
    tstops: np.ndarray
    dense: bool
    progress: bool
    seed: Any
    u0: Any
    dtype: Any
    shape: tuple[int, ...]
    callbacks: tuple[Callback, ...] = ()
    controller: Any = None
    internalnorm: Any = None
    error_components: int | None = None
    observers: tuple[Any, ...] = ()
    sensealg: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def t0(self) -> float:
        return float(self.prob.tspan[0])

    @property
    def t1(self) -> float:
        return float(self.prob.tspan[1])

    @property
    def n(self) -> int:
        return int(self.u0.shape[0])


def problem_type_of(reg: Registry, prob: Any) -> ProblemTypeSpec:
    """The registered problem type of ``prob`` (``InvalidType`` if it is not a problem)."""
    spec = reg.problem_type_for(prob)
    if spec is None:
        known = ", ".join(s.problem_class.__name__ for s in reg.problem_types()) or "none"
        raise InvalidType(
            f"prob must be an autodiffeq problem ({known}), got {type(prob).__name__}"
        )
    return spec


def build_request(prob: Any, alg: Any, options: dict[str, Any], alg_options: dict[str, Any],
                  reg: Registry, ptype: ProblemTypeSpec | None = None) -> SolveRequest:
    """Validate a solve of ``prob`` with ``alg`` and ``options`` (see :data:`SOLVE_OPTIONS`)."""
    if ptype is None:
        ptype = problem_type_of(reg, prob)
    progress = options["progress"]
    if not isinstance(progress, bool):
        raise InvalidType(f"progress must be True or False, got {progress!r}")
    callbacks = normalize_callbacks(options["callback"])
    observers = options["observers"] or ()
    if callable(getattr(observers, "on_step", None)):
        observers = (observers,)  # one observer given on its own
    observers = tuple(observers)
    for obs in observers:
        if not callable(getattr(obs, "on_step", None)):
            raise InvalidType(
                "observers must be objects with on_step(t, t_new, u, u_new, stepper, "
                f"component); got {type(obs).__name__}"
            )
    seed = check_seed(options["seed"])
    extra = {}
    for name in ("brownian",):
        value = options.get(name)
        if value is None:
            continue
        if name not in ptype.options:
            takers = [s.name for s in reg.problem_types() if name in s.options]
            raise InvalidArgument(
                f"{name}= applies to {' and '.join(takers) or 'other'} problems, not to "
                f"{ptype.name} problems")
        extra[name] = value
    be = resolve_backend(reg, options["backend"])
    rtol, atol = options["rtol"], options["atol"]
    rtol_s, atol_s = check_tolerances(rtol, atol)
    spec = resolve_solver(reg, alg, prob, be, rtol_s)
    sensealg = options["sensealg"]
    features = ("events",) if callbacks else ()
    sens = sensealg if isinstance(sensealg, (str, SensitivitySpec)) else None
    reg.compatible(spec, be.name, sens, prob, features=features).raise_if_incompatible()
    unknown = sorted(set(alg_options) - set(spec.options))
    if unknown:
        accepted = ", ".join(spec.options) if spec.options else "none"
        hints = [f"{name} -> {FOREIGN_OPTIONS[name]}" for name in unknown
                 if name in FOREIGN_OPTIONS]
        hint = f" (the names here: {'; '.join(hints)})" if hints else ""
        raise InvalidArgument(
            f"unknown option(s) {unknown} for solver {spec.name!r}{hint}; it accepts: "
            f"{accepted}; and every solve takes {', '.join(SOLVE_OPTIONS)}"
        )

    t0, t1 = prob.tspan
    tdir = 1.0 if t1 > t0 else -1.0
    adaptive = options["adaptive"]
    if adaptive is None:
        adaptive = spec.adaptive
    elif not isinstance(adaptive, bool):
        raise InvalidType(f"adaptive must be True, False or None, got {adaptive!r}")
    if adaptive and not spec.adaptive:
        raise UnsupportedCombination(
            f"solver {spec.name!r} has no error estimate, so it cannot step adaptively; pass "
            "adaptive=False with a step dt, or choose an adaptive solver.",
            [s.name for s in reg.solvers() if s.adaptive and ptype.name in s.problem_types],
        )
    dt = options["dt"]
    if dt is not None:
        dt = check_positive_number(abs(dt) if is_real(dt) else dt, "dt")
    if not adaptive and dt is None:
        why = ("adaptive=False" if options["adaptive"] is False
               else f"solver {spec.name!r} has no error estimate, so it steps with a fixed dt")
        raise InvalidArgument(
            f"dt is required for a fixed-step solve ({why}, solver {spec.name!r}): "
            "pass solve(..., dt=step)"
        )
    maxiters = options["maxiters"]
    if not isinstance(maxiters, numbers.Integral) or isinstance(maxiters, bool) or maxiters < 1:
        raise InvalidArgument(f"maxiters must be a positive integer, got {maxiters!r}")
    dtmin, dtmax = options["dtmin"], options["dtmax"]
    dtmin_v = 0.0 if dtmin is None else check_positive_number(dtmin, "dtmin", allow_zero=True)
    dtmax_v = math.inf if dtmax is None else check_positive_number(dtmax, "dtmax")
    if dtmin_v > dtmax_v:
        raise InvalidArgument(f"dtmin ({dtmin_v}) is larger than dtmax ({dtmax_v})")
    save_times = check_saveat(options["saveat"], t0, t1, tdir)
    stop_times = check_tstops(options["tstops"], t0, t1, tdir)
    dense = options["dense"]
    if dense is None:
        dense = save_times is None
    elif not isinstance(dense, bool):
        raise InvalidType(f"dense must be True, False or None, got {dense!r}")

    shape = tuple(prob.shape)
    u0_flat, dtype = initial_state(prob.u0, be)
    n = int(u0_flat.shape[0])
    error_components = options["error_components"]
    if error_components is not None and (
        not isinstance(error_components, numbers.Integral)
        or isinstance(error_components, bool)
        or not 1 <= error_components <= n
    ):
        raise InvalidArgument(
            f"error_components must be None or an integer from 1 to the state size {n}, "
            f"got {error_components!r}"
        )
    internalnorm = options["internalnorm"]
    if internalnorm is not None and not (
            callable(internalnorm) and callable(getattr(internalnorm, "start", None))
            and callable(getattr(internalnorm, "accept", None))):
        raise InvalidType(
            "internalnorm must be an error norm object with start(u), __call__(u_new, err) "
            f"and accept() (see autodiffeq.controller.ErrorNorm); got {internalnorm!r}"
        )
    eps = float(np.finfo(be.host_dtype(dtype)).eps)
    if rtol_s < 4 * eps:
        warnings.warn(
            f"rtol={rtol_s:g} is below what {be.host_dtype(dtype)} can resolve; using "
            f"rtol={4 * eps:.3g} where it is smaller",
            SolverWarning,
            stacklevel=3,
        )
        rtol = np.maximum(np.asarray(rtol, dtype=np.float64), 4 * eps)
    # atol = 0 is allowed; a component that stays exactly 0 must not give 0/0 in the norm
    tiny = float(np.finfo(be.host_dtype(dtype)).tiny)
    atol = np.maximum(np.asarray(atol, dtype=np.float64), tiny)
    return SolveRequest(
        prob=prob,
        problem_type=ptype,
        solver=spec,
        backend=be,
        registry=reg,
        alg_options=dict(alg_options),
        rtol=rtol,
        atol=atol,
        rtol_b=tolerance_on_backend(rtol, rtol_s, "rtol", shape, be, dtype, n),
        atol_b=tolerance_on_backend(atol, atol_s, "atol", shape, be, dtype, n),
        adaptive=adaptive,
        dt=dt,
        dtmin=dtmin_v,
        dtmax=dtmax_v,
        maxiters=int(maxiters),
        saveat=save_times,
        tstops=stop_times,
        dense=dense,
        progress=progress,
        seed=seed,
        u0=u0_flat,
        dtype=dtype,
        shape=shape,
        callbacks=callbacks,
        controller=options["controller"],
        internalnorm=internalnorm,
        error_components=None if error_components is None else int(error_components),
        observers=observers,
        sensealg=sensealg,
        extra=extra,
    )


# --------------------------------------------------------------------------- resolution
def resolve_backend(reg: Registry, backend: Any) -> Backend:
    if backend is not None and not isinstance(backend, str):
        raise InvalidType(f"backend must be a backend name (str), got {type(backend).__name__}")
    name = config.get_config("backend", backend)
    try:
        return reg.get_backend(name)
    except UnknownName:
        source = config.config_source("backend", backend)
        usable = ", ".join(reg.available_backends()) or "(none)"
        raise _unknown_backend(name, source, usable, reg) from None
    except BackendUnavailable as exc:
        source = config.config_source("backend", backend)
        raise BackendUnavailable(f"{exc} (backend {name!r} from {source})") from None


def _unknown_backend(name: str, source: str, usable: str, reg: Registry) -> UnknownName:
    err = UnknownName("backend", name, [b.name for b in reg.backends()])
    err.args = (f"{err.args[0]} Usable here: {usable}. (backend {name!r} from {source})",)
    return err


def choose_default_solver(reg: Registry, prob: Any, backend: Backend, rtol: float) -> SolverSpec:
    """The default solver: SciML-style, by capabilities (nothing is chosen by name).

    Candidates are adaptive solvers for the problem type with ``default_priority > 0`` that are
    compatible with the problem and backend (fixed-step ones where no adaptive one is). Tight
    tolerances (``rtol < 1e-7``) prefer order 7,
    others order 5 (the split of OrdinaryDiffEq.jl's default algorithm, Rackauckas & Nie 2017);
    among solvers of the preferred order the highest ``default_priority`` wins.

    With the built-in plugins this gives the stiffness-switching composites, as SciML's
    default does: ``AutoTsit5Rodas5P`` at moderate tolerances and ``AutoVern7Rodas5P`` at tight
    ones (priority 20; they declare the order of their non-stiff component, start stiff on
    mass-matrix problems and switch to Rodas5P when stiffness is detected). Where they are not
    compatible, e.g. on a backend without the ``"lu"`` capability that Rosenbrock methods need,
    the plain ``Tsit5`` / ``Vern7`` (priority 10) are chosen instead.
    """
    target = 7 if rtol < 1e-7 else 5
    usable = [s for s in reg.solvers()
              if s.default_priority > 0 and reg.compatible(s, backend.name, None, prob)]
    # adaptive solvers first; where none fits (an SDE with general noise: Euler–Maruyama),
    # a fixed-step one, which then asks for dt
    candidates = [s for s in usable if s.adaptive] or usable
    if not candidates:
        raise UnsupportedCombination(
            f"no registered solver can be chosen by default for this {prob.problem_type} "
            f"problem on backend {backend.name!r}; pass alg=... explicitly.",
            [s.name for s in reg.solvers() if prob.problem_type in s.problem_types],
        )
    return max(candidates, key=lambda s: (-abs(s.order - target), s.default_priority))


def resolve_solver(
    reg: Registry, alg: Any, prob: Any, backend: Backend, rtol: float
) -> SolverSpec:
    if alg is None:
        return choose_default_solver(reg, prob, backend, rtol)
    if isinstance(alg, SolverSpec):
        return alg
    if isinstance(alg, str):
        return reg.solver(alg)
    raise InvalidType(
        f"alg must be a solver name (str), a SolverSpec or None, got {type(alg).__name__}"
    )


# --------------------------------------------------------------------------- checks
def is_real(x: Any) -> bool:
    return isinstance(x, (numbers.Real, np.generic)) and not isinstance(x, bool)


def _tolerance_scalar(value: Any, name: str) -> float:
    """The smallest entry of a tolerance (scalar or array), validated."""
    if is_real(value):
        v = float(value)
        if not math.isfinite(v):
            raise InvalidArgument(f"{name} must be finite, got {value!r}")
        if v < 0:
            raise InvalidArgument(f"{name} must be non-negative, got {value!r}")
        return v
    else:
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidType(
                f"{name} must be a number or an array of numbers, got {value!r}"
            ) from None
        if arr.size == 0:
            raise InvalidArgument(f"{name} is empty")
    if not np.all(np.isfinite(arr)):
        raise InvalidArgument(f"{name} must be finite, got {value!r}")
    if np.any(arr < 0):
        raise InvalidArgument(f"{name} must be non-negative, got {value!r}")
    return float(arr.min())


def check_tolerances(rtol: Any, atol: Any) -> tuple[float, float]:
    r = _tolerance_scalar(rtol, "rtol")
    a = _tolerance_scalar(atol, "atol")
    if r == 0 and a == 0:
        raise InvalidArgument("rtol and atol are both zero: at least one must be positive")
    if is_real(rtol) and is_real(atol):
        return r, a
    try:
        both = np.asarray(rtol, dtype=float) + np.asarray(atol, dtype=float)
    except ValueError:
        raise ShapeMismatch(
            f"rtol (shape {np.shape(rtol)}) and atol (shape {np.shape(atol)}) do not broadcast "
            "together"
        ) from None
    if np.any(both == 0):
        raise InvalidArgument("rtol and atol are both zero for some component")
    return r, a


def tolerance_on_backend(
    value: Any, scalar: float, name: str, shape: tuple[int, ...], be: Backend, dtype: Any, n: int
) -> Any:
    if is_real(value) or np.ndim(value) == 0:
        # a 0-d array of the state's dtype: cheaper than a Python float in array arithmetic
        # and never promotes a float32 state
        return be.asarray(np.asarray(float(value)), dtype=dtype)
    arr = np.asarray(value, dtype=np.float64)
    try:
        arr = np.broadcast_to(arr, shape)
    except ValueError:
        raise ShapeMismatch(
            f"{name} has shape {arr.shape}, which does not broadcast to u0's shape {shape}"
        ) from None
    return be.asarray(arr.reshape(n), dtype=dtype)


def check_saveat(saveat: Any, t0: float, t1: float, tdir: float) -> np.ndarray | None:
    if saveat is None:
        return None
    if is_traced(saveat) or (
        isinstance(saveat, (list, tuple)) and any(is_traced(s) for s in saveat)
    ):
        raise UnsupportedCombination(
            "saveat is traced by autograd: derivatives with respect to the save times are "
            "not supported (only with respect to u0 and p)",
            (),
        )
    if is_real(saveat):
        step = float(saveat)
        if not math.isfinite(step) or step <= 0:
            raise InvalidArgument(f"saveat spacing must be a finite positive number, got {step}")
        span = abs(t1 - t0)
        count = int(math.floor(span / step * (1 + 1e-12)))
        times = t0 + tdir * step * np.arange(count + 1)
        if abs(times[-1] - t1) <= 1e-9 * step:
            times[-1] = t1
        else:
            times = np.append(times, t1)
        if not np.all(tdir * np.diff(times) > 0):
            raise InvalidArgument(
                f"saveat spacing {step:g} is below the resolution of the times near t0={t0:g}"
            )
        return times
    try:
        times = np.asarray(saveat, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidType(f"saveat must be a number or an array of times, got {saveat!r}") from None
    if times.ndim != 1:
        raise InvalidArgument(f"saveat must be 1-D, got shape {times.shape}")
    if times.size == 0:
        raise InvalidArgument("saveat is empty; pass None to save every step")
    if not np.all(np.isfinite(times)):
        raise InvalidArgument("saveat contains NaN or inf")
    lo, hi = min(t0, t1), max(t0, t1)
    outside = (times < lo) | (times > hi)
    if outside.any():
        raise InvalidArgument(
            f"saveat time {float(times[np.argmax(outside)])!r} is outside tspan ({t0}, {t1})"
        )
    if times.size > 1 and not np.all(tdir * np.diff(times) > 0):
        direction = "increasing" if tdir > 0 else "decreasing (tspan runs backwards)"
        raise InvalidArgument(f"saveat must be strictly {direction} without repeats")
    return times


def check_tstops(tstops: Any, t0: float, t1: float, tdir: float) -> np.ndarray:
    if tstops is None:
        return np.empty(0)
    try:
        times = np.asarray(tstops, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InvalidType(f"tstops must be an array of times, got {tstops!r}") from None
    if not np.all(np.isfinite(times)):
        raise InvalidArgument("tstops contains NaN or inf")
    lo, hi = min(t0, t1), max(t0, t1)
    outside = (times < lo) | (times > hi)
    if outside.any():
        raise InvalidArgument(
            f"tstops time {float(times[np.argmax(outside)])!r} is outside tspan ({t0}, {t1})"
        )
    times = np.unique(times)
    times = times[(times != t0) & (times != t1)]
    return times if tdir > 0 else times[::-1].copy()


def initial_state(u0: Any, be: Backend) -> tuple[Any, Any]:
    """``u0`` as a flat backend array and the backend dtype of the state."""
    xp = be.xp
    if array_namespace_of(u0) is not None:
        if not be.is_native(u0):
            raise InvalidType(
                f"u0 is a {type(u0).__module__}.{type(u0).__name__} array, which backend "
                f"{be.name!r} cannot use directly; pass a NumPy array or an array of the "
                "backend's own type"
            )
        arr = u0
        host_dtype = be.host_dtype(arr.dtype)
    else:
        host = np.asarray(u0)
        host_dtype = host.dtype
        arr = None
    if host_dtype.kind in "biu":
        host_dtype = np.dtype(np.float64)
    if host_dtype not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise InvalidType(f"u0 has dtype {host_dtype}; supported dtypes are float64 and float32")
    dtype = be.dtype(host_dtype)
    if arr is None:
        arr = be.asarray(np.asarray(u0, dtype=host_dtype), dtype=dtype)
    elif arr.dtype != dtype:
        arr = xp.astype(arr, dtype)
    n = 1
    for d in arr.shape:
        n *= d
    flat = xp.reshape(arr, (n,))
    if flat is arr:
        flat = xp.asarray(arr, copy=True)
    return flat, dtype




@dataclass
class PreparedSolve:
    """What a problem type's adapter prepares for the driver from a :class:`SolveRequest`.

    Attributes:
        rhs: the :class:`~autodiffeq.stepper.RHS` the stepper integrates (its ``f`` and, for
            other problem types, further terms such as a diffusion or a history).
        u0: the flat initial state (possibly corrected, e.g. made consistent for a DAE).
        f0: ``rhs.f(u0, t0)``, already evaluated.
        derivative: maps values of ``f`` to ``u'`` for the starting-step estimate (``None``:
            ``u' = f``).
        stepper_options: extra keyword arguments for the solver's factory.
        history_consumers: callables given the live dense history of the solve before the
            first step (a delay equation's right-hand side reads its past there).
        stop_consumers: callables given the live stop schedule before the first step (a delay
            equation adds the discontinuities it propagates).
        wrap_stepper: ``wrap_stepper(stepper) -> stepper``, applied to the solver's stepper
            (a delay equation's method of steps wraps the ODE stepper); ``None``: as it is.
        observers: step observers the problem type adds (a delay equation locates the
            discontinuities of its state-dependent lags after each step).
        solution_attrs: attributes set on the :class:`~autodiffeq.Solution` (an SDE solve's
            Brownian path as ``sol.W``).
    """

    rhs: Any
    u0: Any
    f0: Any
    derivative: Any = None
    stepper_options: dict[str, Any] = field(default_factory=dict)
    history_consumers: tuple[Any, ...] = ()
    stop_consumers: tuple[Any, ...] = ()
    wrap_stepper: Any = None
    observers: tuple[Any, ...] = ()
    solution_attrs: dict[str, Any] = field(default_factory=dict)
