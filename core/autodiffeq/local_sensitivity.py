"""Local sensitivity analysis: the full ``du(t_i)/dp`` and ``du(t_i)/du0`` of a solve.

:func:`local_sensitivities` is autodiffeq's counterpart of SciML's
``ODEForwardSensitivityProblem`` + ``extract_local_sensitivities`` (SciMLSensitivity.jl
documentation, "Forward local sensitivity analysis"): it solves the forward sensitivity
equations (Hairer, Nørsett & Wanner, *Solving ODEs I*, I.14)::

    M u' = f(u, p, t),                      u(t0) = u0,
    M S' = (df/du) S + (df/dp) [0 | I],     S(t0) = [I | 0],     S = du/d(u0, p),

together with the state, with the same solver and error control, and returns ``S`` at the
saved times, reshaped to the shapes of ``u``, ``u0`` and ``p``. No autograd is needed in the
user's code: the derivatives of ``f`` come from the problem (``jac=``, ``paramjac=``,
``vjp=``), from autograd when ``f`` is traceable (NumPy backend), or from finite differences.

The work is done by the registered sensitivity method ``"ForwardSensitivity"`` (a plugin);
without it this function raises :class:`~autodiffeq.UnsupportedCombination`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InvalidArgument, InvalidType, UnknownName, UnsupportedCombination
from .problems import ODEProblem
from .registry import Registry
from .request import (
    check_saveat,
    check_tolerances,
    resolve_backend,
    resolve_registry,
    resolve_solver,
    split_options,
)
from .sensitivity import GradientRequest, sensitivity_method
from .solution import Stats
from .validation import contains_traced, is_traced, parameter_array

#: the registered method that computes local sensitivities
METHOD = "ForwardSensitivity"

_WRT = ("u0", "p")
_REJECTED = {
    "sensealg": "local_sensitivities always uses the forward sensitivity equations "
    "(ForwardSensitivity); choose their derivative source with autojacvec=",
    "dense": "local_sensitivities returns values at the saved times only (no dense output); "
    "pass the times you need as saveat=",
    "callback": "local_sensitivities does not take events; differentiate a solve with "
    "callbacks through ade.solve with sensealg='ForwardSensitivity' instead",
    "observers": "local_sensitivities runs an augmented solve whose steps an observer would "
    "not recognise",
    "backend": "pass backend= as the keyword of local_sensitivities itself",
}


@dataclass
class LocalSensitivities:
    """Saved states and their sensitivities.

    Attributes:
        t: host array ``(nsave,)`` of the saved times.
        u: backend array ``(nsave, *u0.shape)`` of the states.
        du_du0: backend array ``(nsave, *u0.shape, *u0.shape)``,
            ``du_du0[i, a..., b...] = d u(t_i)[a...] / d u0[b...]``; ``None`` when ``"u0"``
            is not in ``wrt``.
        du_dp: backend array ``(nsave, *u0.shape, *p.shape)``,
            ``du_dp[i, a..., c...] = d u(t_i)[a...] / d p[c...]``; ``None`` when ``"p"`` is
            not in ``wrt``.
        retcode: the solve's return code (``"Success"``, ...); a failed solve has the times
            it reached only.
        stats: work counters of the augmented solve (its ``nf`` counts evaluations of the
            augmented right-hand side).
        alg: the name of the solver used; ``wrt``: the differentiated inputs.
    """

    t: np.ndarray
    u: Any
    du_du0: Any
    du_dp: Any
    retcode: str
    stats: Stats
    alg: str
    wrt: tuple[str, ...]

    def __repr__(self) -> str:
        shapes = ", ".join(
            f"{name}={tuple(getattr(self, name).shape)}"
            for name in ("u", "du_du0", "du_dp")
            if getattr(self, name) is not None
        )
        return (f"LocalSensitivities(alg={self.alg!r}, retcode={self.retcode!r}, "
                f"nsave={len(self.t)}, {shapes})")


def _check_wrt(wrt: Any) -> tuple[str, ...]:
    items = (wrt,) if isinstance(wrt, str) else wrt
    try:
        items = tuple(items)
    except TypeError:
        raise InvalidType(
            f"wrt must be 'u0', 'p' or a tuple of them, got {type(wrt).__name__}"
        ) from None
    if not items:
        raise InvalidArgument("wrt is empty: pass 'u0', 'p' or ('u0', 'p')")
    for item in items:
        if item not in _WRT:
            raise InvalidArgument(f"wrt entries must be 'u0' or 'p', got {item!r}")
    if len(set(items)) != len(items):
        raise InvalidArgument(f"wrt has repeated entries: {items!r}")
    return tuple(name for name in _WRT if name in items)


def _parameters(p: Any, backend: Any) -> np.ndarray:
    if p is None:
        raise InvalidArgument(
            "wrt includes 'p' but the problem has no parameters (p=None); pass wrt='u0'"
        )
    if backend.is_native(p):
        p = backend.to_host(p)
    arr = parameter_array(p, "for sensitivities with respect to it")
    if arr.size == 0:
        raise InvalidArgument("p is empty: there is nothing to differentiate; pass wrt='u0'")
    return arr


def local_sensitivities(
    prob: ODEProblem,
    alg: Any = None,
    *,
    saveat: Any = None,
    wrt: str | tuple[str, ...] = ("u0", "p"),
    autojacvec: str = "auto",
    backend: str | None = None,
    registry: Registry | None = None,
    **solve_kwargs: Any,
) -> LocalSensitivities:
    """Solve ``prob`` with its forward sensitivities ``du/du0`` and ``du/dp`` (module doc).

    Args:
        prob: the :class:`~autodiffeq.ODEProblem` (plain arrays, not autograd boxes; ``p``
            is passed to ``f`` as a NumPy float array when ``"p"`` is in ``wrt``).
        alg: solver name or spec, or ``None`` for the default choice of :func:`solve`.
        saveat: save times as in :func:`solve`; default every step of the augmented solve.
        wrt: ``"u0"``, ``"p"`` or both (default).
        autojacvec: where the derivatives of ``f`` come from: ``"auto"``, ``"user"``,
            ``"autograd"`` or ``"fd"`` (see :class:`~autodiffeq.RHSDerivatives`).
        backend, registry: as in :func:`solve`.
        **solve_kwargs: tolerances and other options of :func:`solve` and of the solver
            (``rtol``, ``atol``, ``dt``, ``tstops``, ``jac_mode``, ...). ``atol`` and
            ``rtol`` apply to the sensitivities too (error control over the whole
            augmented state, as SciML's default).

    Returns:
        A :class:`LocalSensitivities` with ``t``, ``u``, ``du_du0``, ``du_dp``, ``retcode``
        and ``stats``.

    Example::

        res = ade.local_sensitivities(prob, "Rodas5P", saveat=ts, rtol=1e-8, atol=1e-10)
        res.du_dp[-1]          # d u(ts[-1]) / d p, shape (*u0.shape, *p.shape)
    """

    if not isinstance(prob, ODEProblem):
        raise InvalidType(f"prob must be an ODEProblem, got {type(prob).__name__}")
    if is_traced(prob.u0) or contains_traced(prob.p):
        raise InvalidType(
            "local_sensitivities takes plain arrays in prob.u0 and prob.p, not values being "
            "differentiated by autograd; to differentiate through a solve, call ade.solve "
            "inside the function autograd differentiates"
        )
    for name, why in _REJECTED.items():
        if name in solve_kwargs:
            raise InvalidArgument(f"local_sensitivities() does not take {name}=: {why}")
    if not isinstance(autojacvec, str):
        raise InvalidType(f"autojacvec must be a string, got {type(autojacvec).__name__}")
    reg = resolve_registry(registry)
    names = _check_wrt(wrt)
    be = resolve_backend(reg, backend)
    if "p" in names:
        prob = prob.remake(p=_parameters(prob.p, be))
    options, alg_options = split_options(solve_kwargs)
    for name in ("saveat", "sensealg", "dense", "callback", "observers", "backend"):
        options.pop(name)
    rtol_s, _ = check_tolerances(options["rtol"], options["atol"])
    spec = resolve_solver(reg, alg, prob, be, rtol_s)
    t0, t1 = prob.tspan
    save_times = check_saveat(saveat, t0, t1, 1.0 if t1 > t0 else -1.0)
    try:
        sens_spec = reg.sensitivity(METHOD)
    except UnknownName:
        raise UnsupportedCombination(
            f"local_sensitivities needs the sensitivity method {METHOD!r}, which no installed "
            "plugin registers (it ships in autodiffeq_plugins.forward_sensitivity)",
            (),
        ) from None
    reg.compatible(spec, be.name, sens_spec, prob).raise_if_incompatible()
    # the sensitivities are a result here, so they are error-controlled like the state
    method = sensitivity_method(METHOD, reg, autojacvec=autojacvec, error_control="all")
    if not hasattr(method, "sensitivities"):
        raise UnsupportedCombination(
            f"the registered {METHOD!r} method ({type(method).__name__}) does not provide "
            "sensitivities(request, record)",
            (),
        )
    request = GradientRequest(
        prob=prob,
        solver=spec,
        backend=be,
        registry=reg,
        solve_options={**options, "alg_options": alg_options},
        saveat=save_times,
        wrt_u0="u0" in names,
        wrt_p="p" in names,
    )
    record = method.forward(request)
    du_du0, du_dp = method.sensitivities(request, record)
    xp = be.xp
    shape = request.shape
    nsave = len(record.save_index)
    u = xp.reshape(record.u_saved, (nsave, *shape))
    if du_du0 is not None:
        du_du0 = xp.reshape(du_du0, (nsave, *shape, *shape))
    if du_dp is not None:
        du_dp = xp.reshape(du_dp, (nsave, *shape, *np.shape(prob.p)))
    fwd = record.solution
    return LocalSensitivities(
        t=record.t_saved,
        u=u,
        du_du0=du_du0,
        du_dp=du_dp,
        retcode=fwd.retcode,
        stats=fwd.stats,
        alg=spec.name,
        wrt=names,
    )


__all__ = ["LocalSensitivities", "local_sensitivities"]
