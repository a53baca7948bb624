"""``solve``: validate the request, resolve solver and backend, run the driver, build the
:class:`~autodiffeq.solution.Solution`."""

from __future__ import annotations

import logging
import math
import numbers
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import config
from .backend import Backend
from .driver import DriverOptions, integrate
from .errors import (
    BackendUnavailable,
    InvalidArgument,
    InvalidType,
    ShapeMismatch,
    SolverWarning,
    StiffnessWarning,
    UnknownName,
    UnsupportedCombination,
)
from .problems import ODEProblem
from .registry import Registry
from .registry import registry as default_registry
from .solution import DenseOutput, Solution, Stats
from .specs import SensitivitySpec, SolverSpec
from .stepper import RHS
from .validation import array_namespace_of, check_positive_number, contains_traced, is_traced

logger = logging.getLogger("autodiffeq")


def solve(
    prob: Any,
    alg: str | SolverSpec | None = None,
    *,
    rtol: Any = 1e-3,
    atol: Any = 1e-6,
    dt: float | None = None,
    adaptive: bool | None = None,
    saveat: Any = None,
    tstops: Any = (),
    dense: bool | None = None,
    maxiters: int = 1_000_000,
    dtmin: float | None = None,
    dtmax: float | None = None,
    backend: str | None = None,
    sensealg: Any = None,
    seed: int | None = None,
    progress: bool = False,
    error_components: int | None = None,
    registry: Registry | None = None,
    _step_recorder: Any = None,
    **alg_options: Any,
) -> Solution:
    """Solve a differential-equation problem.

    Args:
        prob: the problem (:class:`~autodiffeq.ODEProblem`).
        alg: a registered solver name (``"Tsit5"``, ``"Vern7"``, ...), a
            :class:`~autodiffeq.SolverSpec`, or ``None`` for a default chosen by the
            problem and the tolerances.
        rtol, atol: relative and absolute tolerances (scalars or arrays of ``u0``'s shape).
        dt: initial step (adaptive) or the step (``adaptive=False``).
        adaptive: adaptive step-size control; default: whether the solver has an error
            estimate.
        saveat: a number (save every ``saveat`` from ``t0``, and at ``t1``) or an array of
            times inside ``tspan``, monotone in the direction of integration; ``sol.t`` is then
            exactly these times. Default: save every step.
        tstops: times the integrator must step to exactly (discontinuities).
        dense: keep dense output for ``sol(t)``; default ``saveat is None``.
        maxiters: maximum number of step attempts (then ``retcode="MaxIters"``).
        dtmin, dtmax: bounds on ``|dt|``.
        backend: array backend name (overrides :func:`config_context`, :func:`set_config`
            and ``AUTODIFFEQ_BACKEND``).
        sensealg: sensitivity method for gradients through the solve.
        seed: random seed (stochastic problems).
        progress: show a tqdm progress bar.
        error_components: the step-size control (error norm and starting step) uses only
            the first ``error_components`` entries of the flat state; the others are
            integrated on the steps those choose (default ``None``: all entries). For
            augmented systems such as forward sensitivities (``S' = J S + F_p`` carried along
            ``u`` on ``u``'s steps).
        registry: the :class:`Registry` to resolve names in (default: :func:`registry`).
        _step_recorder: internal (sensitivity methods): an object whose
            ``record(t, u, stepper)`` is called after every accepted step.
        **alg_options: options of the solver (listed in its spec's ``options``).
    """
    reg = registry if registry is not None else default_registry()
    if not isinstance(reg, Registry):
        raise InvalidType(f"registry must be an autodiffeq.Registry, got {type(reg).__name__}")
    if not isinstance(prob, ODEProblem):
        raise InvalidType(
            f"prob must be an autodiffeq problem (ODEProblem, ...), got {type(prob).__name__}"
        )
    if not isinstance(progress, bool):
        raise InvalidType(f"progress must be True or False, got {progress!r}")
    if is_traced(prob.u0) or contains_traced(prob.p):
        from .sensitivity import solve_traced

        return solve_traced(
            prob,
            alg,
            dict(
                rtol=rtol, atol=atol, dt=dt, adaptive=adaptive, saveat=saveat, tstops=tstops,
                dense=dense, maxiters=maxiters, dtmin=dtmin, dtmax=dtmax, backend=backend,
                sensealg=sensealg, seed=seed, progress=progress,
                error_components=error_components, registry=reg, **alg_options,
            ),
        )

    be = _resolve_backend(reg, backend)
    rtol_s, atol_s = _check_tolerances(rtol, atol)
    spec = _resolve_solver(reg, alg, prob, be, rtol_s)
    if isinstance(sensealg, (str, SensitivitySpec)):
        reg.compatible(spec, be.name, sensealg, prob).raise_if_incompatible()
    else:
        reg.compatible(spec, be.name, None, prob).raise_if_incompatible()
    if spec.options is not None:
        unknown = sorted(set(alg_options) - set(spec.options))
        if unknown:
            accepted = ", ".join(spec.options) if spec.options else "none"
            raise InvalidArgument(
                f"unknown option(s) {unknown} for solver {spec.name!r}; it accepts: {accepted}"
            )

    t0, t1 = prob.tspan
    tdir = 1.0 if t1 > t0 else -1.0
    if adaptive is None:
        adaptive = spec.adaptive
    elif not isinstance(adaptive, bool):
        raise InvalidType(f"adaptive must be True, False or None, got {adaptive!r}")
    if adaptive and not spec.adaptive:
        raise UnsupportedCombination(
            f"solver {spec.name!r} has no error estimate, so it cannot step adaptively; pass "
            "adaptive=False with a step dt, or choose an adaptive solver.",
            [s.name for s in reg.solvers() if s.adaptive and "ODE" in s.problem_types],
        )
    if dt is not None:
        dt = check_positive_number(abs(dt) if _is_real(dt) else dt, "dt")
    if not adaptive and dt is None:
        raise InvalidArgument(
            f"dt is required for a fixed-step solve (adaptive=False, solver {spec.name!r}): "
            "pass solve(..., dt=step)"
        )
    if not isinstance(maxiters, numbers.Integral) or isinstance(maxiters, bool) or maxiters < 1:
        raise InvalidArgument(f"maxiters must be a positive integer, got {maxiters!r}")
    dtmin_v = 0.0 if dtmin is None else check_positive_number(dtmin, "dtmin", allow_zero=True)
    dtmax_v = math.inf if dtmax is None else check_positive_number(dtmax, "dtmax")
    if dtmin_v > dtmax_v:
        raise InvalidArgument(f"dtmin ({dtmin_v}) is larger than dtmax ({dtmax_v})")
    save_times = _check_saveat(saveat, t0, t1, tdir)
    stop_times = _check_tstops(tstops, t0, t1, tdir)
    if dense is None:
        dense = save_times is None
    elif not isinstance(dense, bool):
        raise InvalidType(f"dense must be True, False or None, got {dense!r}")

    shape = prob.shape
    u0_flat, dtype = _initial_state(prob.u0, be)
    n = int(u0_flat.shape[0])
    if error_components is not None and (
        not isinstance(error_components, numbers.Integral)
        or isinstance(error_components, bool)
        or not 1 <= error_components <= n
    ):
        raise InvalidArgument(
            f"error_components must be None or an integer from 1 to the state size {n}, "
            f"got {error_components!r}"
        )
    eps = float(np.finfo(be.host_dtype(dtype)).eps)
    if rtol_s < 4 * eps:
        warnings.warn(
            f"rtol={rtol_s:g} is below what {be.host_dtype(dtype)} can resolve; using "
            f"rtol={4 * eps:.3g} where it is smaller",
            SolverWarning,
            stacklevel=2,
        )
        rtol = np.maximum(np.asarray(rtol, dtype=np.float64), 4 * eps)
    # atol = 0 is allowed; a component that stays exactly 0 must not give 0/0 in the norm
    tiny = float(np.finfo(be.host_dtype(dtype)).tiny)
    atol = np.maximum(np.asarray(atol, dtype=np.float64), tiny)
    rtol_b = _tolerance_on_backend(rtol, rtol_s, "rtol", shape, be, dtype, n)
    atol_b = _tolerance_on_backend(atol, atol_s, "atol", shape, be, dtype, n)

    f0, convert = _first_call(prob, u0_flat, shape, be, dtype, t0)
    initial_derivative = None
    if prob.mass_matrix is not None:
        from .dae import start_of_mass_matrix_problem

        u0_consistent, initial_derivative = start_of_mass_matrix_problem(
            prob, be, dtype, u0_flat, rtol, atol
        )
        if u0_consistent is not None:
            logger.info("mass-matrix problem: u0's algebraic components corrected to make it "
                        "consistent")
            u0_flat = u0_consistent
            f0, convert = _first_call(prob, u0_flat, shape, be, dtype, t0)
    rhs = RHS(prob.f, prob.p, shape, dtype, be, prob, convert_output=convert, registry=reg)

    try:
        stepper = spec.factory(rhs, be, **alg_options)
    except TypeError as exc:
        raise InvalidArgument(f"solver {spec.name!r} rejected its options: {exc}") from exc

    opts = DriverOptions(
        rtol=rtol_b,
        atol=atol_b,
        adaptive=adaptive,
        dt=dt,
        dtmin=dtmin_v,
        dtmax=dtmax_v,
        maxiters=int(maxiters),
        saveat=save_times,
        tstops=stop_times,
        save_everystep=save_times is None,
        dense=dense,
        progress=progress,
        error_components=None if error_components is None else int(error_components),
        recorder=_step_recorder,
        derivative=initial_derivative,
    )

    def on_stiffness(message: str, t: float) -> None:
        stiff = [s.name for s in reg.solvers() if s.stiff and "ODE" in s.problem_types]
        advice = (
            "a stiff solver would be faster and more robust: " + ", ".join(stiff)
            if stiff
            else "no stiff solver is registered; install or register one (e.g. Rodas5P)"
        )
        warnings.warn(
            f"{spec.name}: the problem looks stiff at t={t:.6g} ({message}); {advice}",
            StiffnessWarning,
            stacklevel=4,
        )

    result = integrate(stepper, t0, t1, u0_flat, f0, opts, on_stiffness)

    xp = be.xp
    t_saved = np.asarray(result.t, dtype=np.float64)
    if result.u:
        u_saved = xp.reshape(xp.stack(result.u), (len(result.u), *shape))
    else:
        u_saved = xp.zeros((0, *shape), dtype=dtype)
    stats = Stats(
        nf=result.nf + 1,
        nsteps=result.naccept + result.nreject,
        naccept=result.naccept,
        nreject=result.nreject,
    )
    for key, value in stepper.stats.items():
        if hasattr(stats, key):
            setattr(stats, key, value)
    dense_output = None
    if dense and len(result.dense_t) >= 2:
        dense_output = DenseOutput(stepper, result.dense_t, result.dense_u, result.dense_data)
    if result.retcode != "Success":
        warnings.warn(
            f"{spec.name}: solve stopped at t={result.t_final:.10g} of [{t0:.10g}, {t1:.10g}] "
            f"with retcode {result.retcode!r} after {stats.nsteps} steps"
            + (" (the problem looks stiff)" if result.stiffness else ""),
            SolverWarning,
            stacklevel=2,
        )
    logger.debug("solve %s on %s: %s, stats %s", spec.name, be.name, result.retcode, stats)
    return Solution(
        t=t_saved,
        u=u_saved,
        retcode=result.retcode,
        stats=stats,
        alg=spec,
        prob=prob,
        backend=be,
        shape=shape,
        dense_output=dense_output,
        options={"rtol": rtol, "atol": atol, "adaptive": adaptive, "alg_options": alg_options},
    )


# --------------------------------------------------------------------------- resolution
def _resolve_backend(reg: Registry, backend: Any) -> Backend:
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
    compatible with the problem and backend. Tight tolerances (``rtol < 1e-7``) prefer order 7,
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
    candidates = [
        s
        for s in reg.solvers()
        if s.adaptive
        and s.default_priority > 0
        and reg.compatible(s, backend.name, None, prob)
    ]
    if not candidates:
        raise UnsupportedCombination(
            f"no registered solver can be chosen by default for this {prob.problem_type} "
            f"problem on backend {backend.name!r}; pass alg=... explicitly.",
            [s.name for s in reg.solvers() if prob.problem_type in s.problem_types],
        )
    return max(candidates, key=lambda s: (-abs(s.order - target), s.default_priority))


def _resolve_solver(
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
def _is_real(x: Any) -> bool:
    return isinstance(x, (numbers.Real, np.generic)) and not isinstance(x, bool)


def _tolerance_scalar(value: Any, name: str) -> float:
    """The smallest entry of a tolerance (scalar or array), validated."""
    if _is_real(value):
        v = float(value)
        arr = np.asarray([v])
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


def _check_tolerances(rtol: Any, atol: Any) -> tuple[float, float]:
    r = _tolerance_scalar(rtol, "rtol")
    a = _tolerance_scalar(atol, "atol")
    if r == 0 and a == 0:
        raise InvalidArgument("rtol and atol are both zero: at least one must be positive")
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


def _tolerance_on_backend(
    value: Any, scalar: float, name: str, shape: tuple[int, ...], be: Backend, dtype: Any, n: int
) -> Any:
    if _is_real(value) or np.ndim(value) == 0:
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


def _check_saveat(saveat: Any, t0: float, t1: float, tdir: float) -> np.ndarray | None:
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
    if _is_real(saveat):
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


def _check_tstops(tstops: Any, t0: float, t1: float, tdir: float) -> np.ndarray:
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


def _initial_state(u0: Any, be: Backend) -> tuple[Any, Any]:
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


def _first_call(
    prob: Any, u0_flat: Any, shape: Sequence[int], be: Backend, dtype: Any, t0: float
) -> tuple[Any, bool]:
    """Call ``f(u0, p, t0)`` once and check what it returns; returns (f0_flat, convert)."""
    xp = be.xp
    u0_shaped = u0_flat if len(shape) == 1 else xp.reshape(u0_flat, tuple(shape))
    try:
        out = prob.f(u0_shaped, prob.p, t0)
    except Exception as exc:
        exc.add_note("autodiffeq: raised by f(u0, p, t0), the first call of the right-hand side")
        raise
    convert = False
    if out is None:
        raise InvalidType(
            "f returned None; f(u, p, t) must return du/dt as an array (autodiffeq's "
            "right-hand sides are out-of-place)"
        )
    if is_traced(out):
        raise InvalidType(
            "f returned a value traced by autograd through a variable other than u0 and p "
            "(e.g. one captured from an enclosing function): solve differentiates with "
            "respect to u0 and p only, so pass that variable through p"
        )
    if not be.is_native(out):
        if isinstance(out, (np.ndarray, np.generic)) or array_namespace_of(out) is not None:
            raise InvalidType(
                f"f returned a {type(out).__module__}.{type(out).__name__} but backend "
                f"{be.name!r} works with {be.array_type_name()}; compute f with the array "
                "namespace of its input (u.__array_namespace__())"
            )
        try:
            host = np.asarray(out, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidType(
                f"f must return an array of numbers, got {type(out).__name__}: {out!r}"
            ) from None
        if host.shape != tuple(shape):
            raise ShapeMismatch(
                f"f returned shape {host.shape} but the state u0 has shape {tuple(shape)}"
            )
        convert = True
        return be.asarray(host.reshape(-1), dtype=dtype), convert
    got_shape = tuple(out.shape)
    if got_shape != tuple(shape):
        raise ShapeMismatch(
            f"f returned shape {got_shape} but the state u0 has shape {tuple(shape)}"
        )
    if out.dtype != dtype:
        raise ShapeMismatch(
            f"f returned dtype {be.host_dtype(out.dtype)} but the state has dtype "
            f"{be.host_dtype(dtype)}; f must return du/dt with u's dtype"
        )
    n = u0_flat.shape[0]
    return (out if len(shape) == 1 else xp.reshape(out, (n,))), convert
