"""Continuous adjoint sensitivity methods: ``BacksolveAdjoint``, ``InterpolatingAdjoint`` and
``QuadratureAdjoint``.

For ``u' = f(u, p, t)``, ``u(t0) = u0`` and a loss ``L = sum_i g_i . u(t_i)`` on the saved
states (``g_i`` the cotangents autograd hands to the solve), the adjoint ``lambda(t)`` solves,
backwards from the last saved time ``t_N`` to ``t0`` (Cao, Li, Petzold & Serban 2003, "Adjoint
sensitivity analysis for differential-algebraic equations: the adjoint DAE system and its
numerical solution", SIAM J. Sci. Comput. 24(3); Chen, Rubanova, Bettencourt & Duvenaud 2018,
"Neural ordinary differential equations", NeurIPS; SciMLSensitivity.jl's documentation)::

    lambda' = -J(u(t), t)^T lambda,            J = df/du,          lambda(t_N) = g_N,
    mu'     = -F_p(u(t), t)^T lambda,          F_p = df/dp,        mu(t_N) = 0,
    lambda(t_i) <- lambda(t_i) + g_i            at every earlier saved time t_i (a jump),

and then ``dL/du0 = lambda(t0)`` and ``dL/dp = mu(t0) = int_{t0}^{t_N} lambda^T F_p dt``.
Between two saved times the system is smooth; at each saved time the integration stops, the
jump is added and a new backward solve starts (the saved times are step ends of the forward
solve, :meth:`GradientRequest.solve`). ``J^T lambda`` and ``F_p^T lambda`` are vector-Jacobian
products of ``f`` (:class:`autodiffeq.RHSDerivatives`, option ``autojacvec``).

The three methods differ in where ``u(t)`` comes from and how ``mu`` is obtained:

* :class:`BacksolveAdjoint` integrates ``u`` backwards together with ``lambda`` and ``mu``
  (the augmented system ``[u, lambda, mu]``, Chen et al. 2018). No forward trajectory is kept
  beyond the saved states, but re-integrating ``u`` backwards is unstable when the forward
  problem is stiff or dissipative, so the method declares stiff problems unsupported. With
  ``checkpointing=True`` (default, as in SciMLSensitivity) ``u`` is reset to the stored
  forward state at every saved time.
* :class:`InterpolatingAdjoint` takes ``u(t)`` from the forward solution's dense output and
  integrates ``[lambda, mu]`` backwards. With ``checkpointing=True`` only the states at
  checkpoints (the saved times and every ``ceil(sqrt(N))``-th step) are kept; each forward
  stretch between checkpoints is re-solved densely when the backward pass reaches it.
* :class:`QuadratureAdjoint` integrates ``lambda`` alone backwards (interpolated ``u``) and
  computes ``mu`` afterwards by Gauss–Legendre quadrature of ``lambda^T F_p`` on every
  interval between consecutive step ends of the ``lambda`` solve and of the forward solve
  (on each such interval both dense outputs are polynomials, so the integrand is smooth).

Every backward solve uses the forward solver (``request.solver``) with the method's own
tolerances (options ``reltol``/``abstol``, default: the forward ``rtol``/``atol``, the smallest
entry where they are arrays). For solvers that use ``df/du`` (Rosenbrock, stiffness switching)
the exact Jacobian of the backward system is passed as ``ODEProblem(jac=...)``: ``-J^T`` for
``lambda`` alone and, for ``[lambda, mu]``, the block lower-triangular matrix
``[[-J^T, 0], [-F_p^T, 0]]`` (``mu`` does not feed back), so no augmented system is ever
differenced and the solver keeps its order. Mass-matrix problems (DAEs) are not supported:
their adjoint needs consistent jump conditions on the algebraic components (Cao et al. 2003).
"""

from __future__ import annotations

import abc
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from autodiffeq.errors import (
    AutodiffeqError,
    InvalidArgument,
    InvalidType,
    UnsupportedCombination,
)
from autodiffeq.problems import ODEProblem
from autodiffeq.rhs_derivatives import MODES, RHSDerivatives
from autodiffeq.sensitivity import (
    ForwardRecord,
    GradientRequest,
    SensitivityMethod,
    record_from_solution,
)
from autodiffeq.solution import DenseOutput, Solution
from autodiffeq.solve import SolverWarning, solve
from autodiffeq.stepper import RHS

#: solver options that describe the forward ``f`` and must not reach the backward solves
#: (the backward system is non-autonomous and brings its own exact Jacobian)
_FORWARD_ONLY_OPTIONS = ("jac_mode", "autonomous")


# --------------------------------------------------------------------------- trajectories
class _DenseTrajectory:
    """``u(t)`` from a dense forward solution: flat backend states at host times."""

    def __init__(self, dense: DenseOutput | None, u_first: Any, xp: Any) -> None:
        self.dense = dense
        self.u_first = u_first  # a solve that stopped at its first step has no interpolant
        self.xp = xp

    def __call__(self, t: float) -> Any:
        if self.dense is None:
            return self.u_first
        return self.dense(np.asarray([t], dtype=np.float64))[0, ...]

    def many(self, times: np.ndarray) -> Any:
        """States at the host times ``times`` (1-D): backend (len(times), n)."""
        if self.dense is None:
            return self.xp.stack([self.u_first] * len(times))
        return self.dense(np.asarray(times, dtype=np.float64))


class _CheckpointedTrajectory:
    """``u(t)`` from states kept only at checkpoints: the stretch between two checkpoints is
    re-solved densely when the backward pass first asks for a time in it, with the same solver
    and options, retracing the forward solve's steps (:meth:`_resolve`), so the interpolant is
    the one the forward solve had. The two most recently used stretches are cached: a backward
    step that crosses a checkpoint evaluates on both sides of it."""

    CACHE = 2

    def __init__(
        self,
        request: GradientRequest,
        ck_ts: np.ndarray,
        ck_us: Any,
        step_ends: np.ndarray,
    ) -> None:
        self.request = request
        self.ck_ts = ck_ts
        self.ck_us = ck_us
        self.step_ends = step_ends
        self.tdir = 1.0 if len(ck_ts) < 2 or ck_ts[-1] >= ck_ts[0] else -1.0
        self._cache: dict[int, DenseOutput] = {}
        self._order: list[int] = []
        self.resolves = 0  # how many stretches were re-solved (for tests and diagnostics)

    def _stretch(self, j: int) -> DenseOutput:
        got = self._cache.get(j)
        if got is not None:
            self._order.remove(j)
            self._order.append(j)
            return got
        dense = self._resolve(j)
        self.resolves += 1
        self._cache[j] = dense
        self._order.append(j)
        while len(self._order) > self.CACHE:
            del self._cache[self._order.pop(0)]
        return dense

    def _resolve(self, j: int) -> DenseOutput:
        """The dense solution of stretch ``j``: first a replay of the forward steps (fixed
        steps no shorter than any forward step, clipped onto every forward step end: no error
        control, no rejections, so a deterministic stepper retraces the forward solve
        exactly); where that does not reproduce the next checkpoint to the forward tolerances
        (a stepper whose choices depend on its history, such as a stiffness-switching
        composite), an adaptive re-solve stepping onto the same step ends."""
        request = self.request
        xp = request.backend.xp
        t_a, t_b = float(self.ck_ts[j]), float(self.ck_ts[j + 1])
        key = self.tdir * self.step_ends
        inner = self.step_ends[(key > self.tdir * t_a) & (key < self.tdir * t_b)]
        grid = np.concatenate([[t_a], inner, [t_b]])
        prob = request.prob.remake(u0=xp.reshape(self.ck_us[j, ...], request.shape),
                                   tspan=(t_a, t_b))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sol = request.solve(prob, tstops=inner, dense=True, adaptive=False,
                                dt=float(np.max(np.abs(np.diff(grid)))))
        if self._reproduces(sol, j):
            return sol.dense_output
        adaptive = request.solve_options.get("adaptive")
        if adaptive is None:
            adaptive = request.solver.adaptive
        overrides: dict[str, Any] = {"tstops": inner, "dense": True}
        if adaptive:
            overrides["dt"] = abs(float(grid[1]) - t_a)
        sol = request.solve(prob, **overrides)
        if not sol.success or sol.dense_output is None:
            raise AutodiffeqError(
                f"re-solving the forward stretch [{t_a}, {t_b}] for the checkpointed adjoint "
                f"failed (retcode {sol.retcode!r})"
            )
        return sol.dense_output

    def _reproduces(self, sol: Solution, j: int) -> bool:
        if not sol.success or sol.dense_output is None or sol.t[-1] != self.ck_ts[j + 1]:
            return False
        xp = self.request.backend.xp
        so = self.request.solve_options
        rtol = _scalar_tolerance(so.get("rtol", 1e-3), "rtol")
        atol = _scalar_tolerance(so.get("atol", 1e-6), "atol")
        end = xp.reshape(sol.u[-1, ...], (self.request.n,))
        ref = self.ck_us[j + 1, ...]
        scale = rtol * xp.maximum(xp.abs(end), xp.abs(ref)) + atol
        return bool(xp.all(xp.abs(end - ref) <= scale))

    def _locate(self, t: float) -> int:
        for j in reversed(self._order):  # prefer a cached stretch that contains t
            a, b = self.tdir * self.ck_ts[j], self.tdir * self.ck_ts[j + 1]
            if a <= self.tdir * t <= b:
                return j
        j = int(np.searchsorted(self.tdir * self.ck_ts, self.tdir * t, side="right")) - 1
        return min(max(j, 0), len(self.ck_ts) - 2)

    def __call__(self, t: float) -> Any:
        return self._stretch(self._locate(t))(np.asarray([t], dtype=np.float64))[0, ...]

    def many(self, times: np.ndarray) -> Any:
        xp = self.request.backend.xp
        return xp.stack([self(float(t)) for t in times])


# --------------------------------------------------------------------------- helpers
def _shrunk_record(
    request: GradientRequest, record: ForwardRecord, rows: np.ndarray, **extra: Any
) -> ForwardRecord:
    """``record`` keeping only the step-grid rows ``rows`` (sorted, including 0 and every
    output row): the outputs stay where :class:`ForwardRecord` finds them, and the states of
    all other steps are released."""
    xp = request.backend.xp
    us = xp.take(record.us, xp.asarray(rows), axis=0)
    ts = record.ts[rows]
    fwd = record.solution
    sol = Solution(
        t=ts,
        u=xp.reshape(us, (len(rows), *request.shape)),
        retcode=fwd.retcode,
        stats=fwd.stats,
        alg=fwd.alg,
        prob=fwd.prob,
        backend=fwd.backend,
        shape=fwd.shape,
        dense_output=None,
        options=fwd.options,
    )
    save_index = np.searchsorted(rows, record.save_index)
    return ForwardRecord(sol, ts, us, save_index, dict(extra))


def _check_problem(request: GradientRequest, method: str) -> None:
    if request.prob.mass_matrix is not None:
        raise UnsupportedCombination(
            f"{method} does not support mass-matrix problems (DAEs): their adjoint needs "
            "consistent jumps of the algebraic components; use a forward sensitivity method",
            ("ForwardSensitivity", "ForwardMode"),
        )


def _scalar_tolerance(value: Any, name: str) -> float:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise InvalidArgument(f"{name} must be a finite non-negative number, got {value!r}")
    return float(np.min(arr))


# --------------------------------------------------------------------------- base class
class ContinuousAdjoint(SensitivityMethod, abc.ABC):
    """Shared machinery of the continuous adjoints: options, backward solves segment by
    segment with the jumps ``lambda += g_i`` at the saved times (module docstring).

    Options:
        abstol, reltol: tolerances of the backward solves (default: the forward ``atol`` and
            ``rtol``; the smallest entry of an array tolerance).
        autojacvec: where ``lambda^T df/du`` and ``lambda^T df/dp`` come from: ``"auto"``,
            ``"user"``, ``"autograd"`` or ``"fd"`` (see :mod:`autodiffeq.rhs_derivatives`).
    """

    name = ""

    def __init__(
        self,
        abstol: float | None = None,
        reltol: float | None = None,
        autojacvec: str = "auto",
    ) -> None:
        if autojacvec not in MODES:
            raise InvalidArgument(f"autojacvec must be one of {MODES}, got {autojacvec!r}")
        self.abstol = None if abstol is None else _scalar_tolerance(abstol, "abstol")
        self.reltol = None if reltol is None else _scalar_tolerance(reltol, "reltol")
        self.autojacvec = autojacvec

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(abstol={self.abstol}, reltol={self.reltol}, "
            f"autojacvec={self.autojacvec!r})"
        )

    # ------------------------------------------------------------------ backward solves
    def tolerances(self, request: GradientRequest) -> tuple[float, float]:
        """``(reltol, abstol)`` of the backward solves."""
        so = request.solve_options
        rtol = self.reltol if self.reltol is not None else _scalar_tolerance(
            so.get("rtol", 1e-3), "rtol"
        )
        atol = self.abstol if self.abstol is not None else _scalar_tolerance(
            so.get("atol", 1e-6), "atol"
        )
        return rtol, atol

    def backward_solve(
        self,
        request: GradientRequest,
        rhs: Callable[[Any, float], Any],
        y0: Any,
        t_hi: float,
        t_lo: float,
        jac: Callable[[Any, Any, float], Any] | None = None,
        dense: bool = False,
    ) -> Solution:
        """Solve ``y' = rhs(y, t)`` from ``(t_hi, y0)`` to ``t_lo`` with the forward solver.

        Only the final state is saved, unless ``dense`` (then every step is saved and the
        solution has dense output). ``jac(y, p, t)`` is the exact Jacobian, given to solvers
        that use one.
        """
        so = request.solve_options
        rtol, atol = self.tolerances(request)
        options: dict[str, Any] = {
            "rtol": rtol,
            "atol": atol,
            "backend": request.backend.name,
            "registry": request.registry,
        }
        for key in ("maxiters", "dtmin", "dtmax", "adaptive"):
            if so.get(key) is not None:
                options[key] = so[key]
        if so.get("adaptive") is False or (
            so.get("adaptive") is None and not request.solver.adaptive
        ):
            options["dt"] = so.get("dt")
        stops = np.asarray(so.get("tstops", ()), dtype=np.float64).reshape(-1)
        lo, hi = min(t_lo, t_hi), max(t_lo, t_hi)
        options["tstops"] = stops[(stops > lo) & (stops < hi)]
        alg_options = dict(so.get("alg_options", {}))
        for key in _FORWARD_ONLY_OPTIONS:
            alg_options.pop(key, None)
        options.update(alg_options)
        if dense:
            options["dense"] = True
        else:
            options["saveat"] = [t_lo]
            options["dense"] = False
        wants_jac = request.solver.needs_jacobian and jac is not None
        prob = ODEProblem(
            lambda y, p, t: rhs(y, t), y0, (t_hi, t_lo), None, jac=jac if wants_jac else None
        )
        sol = solve(prob, request.solver, **options)
        if not sol.success:
            warnings.warn(
                f"{self.name}: the backward (adjoint) solve over [{t_lo:.10g}, {t_hi:.10g}] "
                f"stopped with retcode {sol.retcode!r}; the gradient is not reliable",
                SolverWarning,
                stacklevel=2,
            )
        return sol

    # ------------------------------------------------------------------ the reverse pass
    def vjp(self, request: GradientRequest, record: ForwardRecord, g: Any) -> tuple[Any, Any]:
        """Backwards from the last saved time: one backward solve per stretch between saved
        times (:meth:`segment`), the jump ``lambda += g_i`` at each saved time. On an SDE
        solve: the stochastic adjoint on the same path (:mod:`.sde_backsolve`)."""
        if getattr(request.prob, "problem_type", "ODE") == "SDE":
            from .sde_backsolve import vjp as sde_vjp

            return sde_vjp(request, record, g, getattr(self, "checkpointing", True))
        be = request.backend
        xp = be.xp
        dtype = record.us.dtype
        n = request.n
        want_p = request.wrt_p and request.n_p > 0
        G = record.step_cotangents(g, be)
        rows = self.stop_rows(record, G)
        derivs = request.derivatives(self.autojacvec)
        lam = (
            be.asarray(G[rows[0]], dtype=dtype)
            if len(rows)
            else xp.zeros((n,), dtype=dtype)
        )
        mu = xp.zeros((request.n_p,), dtype=dtype) if want_p else None
        state: dict[str, Any] = {}
        outputs = set(int(i) for i in rows)
        i_hi = int(rows[0]) if len(rows) else 0
        targets = [int(i) for i in rows[1:]] + ([] if 0 in outputs else [0])
        for i_lo in targets:
            if i_lo == i_hi:
                continue
            t_hi, t_lo = float(record.ts[i_hi]), float(record.ts[i_lo])
            if t_hi != t_lo:
                lam, mu = self.segment(
                    request, record, derivs, state, i_hi, i_lo, t_hi, t_lo, lam, mu
                )
            if i_lo in outputs:
                lam = lam + be.asarray(G[i_lo], dtype=dtype)
            i_hi = i_lo
        return (lam if request.wrt_u0 else None), mu

    def stop_rows(self, record: ForwardRecord, G: np.ndarray) -> np.ndarray:
        """Rows of ``record.ts`` where the backward integration stops, latest first: the saved
        times with a nonzero cotangent (a zero one is no jump, so those segments merge)."""
        rows = np.unique(record.save_index)[::-1]
        return rows[np.any(G[rows] != 0, axis=1)]

    @abc.abstractmethod
    def segment(
        self,
        request: GradientRequest,
        record: ForwardRecord,
        derivs: RHSDerivatives,
        state: dict[str, Any],
        i_hi: int,
        i_lo: int,
        t_hi: float,
        t_lo: float,
        lam: Any,
        mu: Any,
    ) -> tuple[Any, Any]:
        """Carry ``(lambda, mu)`` from ``t_hi`` (row ``i_hi`` of ``record.ts``) back to
        ``t_lo`` (row ``i_lo``); ``state`` persists across the segments of one pass."""

    # ------------------------------------------------------------------ pieces
    @staticmethod
    def is_zero(xp: Any, *arrays: Any) -> bool:
        return all(a is None or not bool(xp.any(a != 0)) for a in arrays)

    @staticmethod
    def cast(xp: Any, x: Any, dtype: Any) -> Any:
        return xp.asarray(x, dtype=dtype)

    @staticmethod
    def lam_fp(derivs: RHSDerivatives, lam: Any, u: Any, t: float) -> Any:
        """``F_p^T lambda`` alone (from ``paramjac`` where that avoids forming ``J``)."""
        xp = derivs.xp
        prob = derivs.problem
        if derivs.mode == "fd" or (
            derivs.mode == "user" and derivs.user_vjp is None and prob.paramjac is not None
        ):
            return xp.matrix_transpose(derivs.paramjac(u, t)) @ lam
        return derivs.vjp(lam, u, t, True)[1]


def _adjoint_jacobian(
    derivs: RHSDerivatives, u: Any, t: float, n: int, m: int, dtype: Any
) -> Any:
    """Jacobian of ``(lambda, mu) -> (-J^T lambda, -F_p^T lambda)``: ``[[-J^T, 0],
    [-F_p^T, 0]]`` (only ``-J^T`` when ``m == 0``)."""
    xp = derivs.xp
    top = -xp.matrix_transpose(xp.asarray(derivs.jac(u, t), dtype=dtype))
    if m == 0:
        return top
    bottom = -xp.matrix_transpose(xp.asarray(derivs.paramjac(u, t), dtype=dtype))
    return xp.concat(
        [
            xp.concat([top, xp.zeros((n, m), dtype=dtype)], axis=1),
            xp.concat([bottom, xp.zeros((m, m), dtype=dtype)], axis=1),
        ],
        axis=0,
    )


# --------------------------------------------------------------------------- Backsolve
class _CheckpointingAdjoint(ContinuousAdjoint):
    """A continuous adjoint with the ``checkpointing`` option (its meaning and default,
    :attr:`checkpointing_default`, are the subclass's)."""

    checkpointing_default = False

    def __init__(
        self,
        abstol: float | None = None,
        reltol: float | None = None,
        autojacvec: str = "auto",
        checkpointing: bool | None = None,
    ) -> None:
        super().__init__(abstol, reltol, autojacvec)
        if checkpointing is None:
            checkpointing = self.checkpointing_default
        if not isinstance(checkpointing, bool):
            raise InvalidType(f"checkpointing must be True or False, got {checkpointing!r}")
        self.checkpointing = checkpointing

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", checkpointing={self.checkpointing})"


class BacksolveAdjoint(_CheckpointingAdjoint):
    """Continuous adjoint with ``u`` re-integrated backwards alongside ``lambda`` and ``mu``:
    the augmented system (Chen et al. 2018, "Neural ordinary differential equations")

        d/dt [u, lambda, mu] = [f(u, p, t), -J^T lambda, -F_p^T lambda]

    from ``[u(t_N), g_N, 0]`` at the last saved time back to ``t0``. Memory: the saved states
    only. Unstable where the forward flow contracts strongly (stiff or dissipative problems:
    backwards the contraction becomes growth), hence declared unsupported for stiff solvers.

    Options (besides those of :class:`ContinuousAdjoint`):
        checkpointing: reset ``u`` to the stored forward state at the saved times (default
            ``True``, as SciMLSensitivity does), which bounds the drift of the backward ``u``:
            at every saved time with a cotangent, and at the others no closer than
            ``ceil(sqrt(N))`` forward steps to the previous reset (so a solve that saves every
            one of its ``N`` steps is restarted ``O(sqrt(N))`` times, not ``N`` times).
    """

    name = "BacksolveAdjoint"

    checkpointing_default = True

    def forward(self, request: GradientRequest) -> ForwardRecord:
        if getattr(request.prob, "problem_type", "ODE") == "SDE":
            from .sde_backsolve import forward as sde_forward

            return sde_forward(request)
        _check_problem(request, self.name)
        record = record_from_solution(request, request.solve())
        rows = np.union1d(np.unique(record.save_index), [0])
        n_steps = len(record.ts) - 1
        return _shrunk_record(request, record, rows, step=rows,
                              every=max(1, math.ceil(math.sqrt(n_steps))))

    def stop_rows(self, record: ForwardRecord, G: np.ndarray) -> np.ndarray:
        jumps = super().stop_rows(record, G)
        if not self.checkpointing or len(jumps) == 0:
            return jumps
        step, every = record.extra["step"], record.extra["every"]
        chosen = set(int(i) for i in jumps)
        last = int(step[jumps[0]])
        for row in np.unique(record.save_index)[::-1]:
            row = int(row)
            if row >= jumps[0]:
                continue  # above the last jump lambda is zero: nothing to integrate
            if row in chosen or last - int(step[row]) >= every:
                chosen.add(row)
                last = int(step[row])
        return np.asarray(sorted(chosen, reverse=True), dtype=np.int64)

    def segment(
        self,
        request: GradientRequest,
        record: ForwardRecord,
        derivs: RHSDerivatives,
        state: dict[str, Any],
        i_hi: int,
        i_lo: int,
        t_hi: float,
        t_lo: float,
        lam: Any,
        mu: Any,
    ) -> tuple[Any, Any]:
        xp = request.backend.xp
        if self.checkpointing and self.is_zero(xp, lam):  # u is reset at the next save
            return lam, mu
        n = request.n
        dtype = record.us.dtype
        want_p = mu is not None
        u_hi = state.get("u")
        if self.checkpointing or u_hi is None:
            u_hi = record.us[i_hi, ...]
        f = state.get("f")
        if f is None:
            prob = request.prob
            f = RHS(prob.f, prob.p, request.shape, dtype, request.backend, prob,
                    convert_output=True, registry=request.registry).f
            state["f"] = f
        m = request.n_p if want_p else 0

        def rhs(y: Any, t: float) -> Any:
            u = y[:n]
            fused = derivs.value_and_vjp(y[n:2 * n], u, t, want_p)  # f on the way (replay)
            if fused is None:
                gu, gp = derivs.vjp(y[n:2 * n], u, t, want_p)
                fu = f(u, t)
            else:
                fu, gu, gp = fused
            parts = [self.cast(xp, fu, dtype), -self.cast(xp, gu, dtype)]
            if want_p:
                parts.append(-self.cast(xp, gp, dtype))
            return xp.concat(parts)

        y0 = xp.concat([u_hi, lam] + ([mu] if want_p else []))
        sol = self.backward_solve(request, rhs, y0, t_hi, t_lo)
        y = xp.reshape(sol.u[-1, ...], (2 * n + m,))
        state["u"] = y[:n]
        return y[n:2 * n], (y[2 * n:] if want_p else None)


# --------------------------------------------------------------------------- Interpolating
class InterpolatingAdjoint(_CheckpointingAdjoint):
    """Continuous adjoint with ``u(t)`` from the forward solve's dense output: ``[lambda, mu]``
    integrated backwards (SciMLSensitivity's ``InterpolatingAdjoint``; Cao et al. 2003)

        lambda' = -J(u(t), t)^T lambda,    mu' = -F_p(u(t), t)^T lambda.

    Stable wherever the forward solve is (the backward ``lambda`` system has the eigenvalues of
    ``J`` reflected in time), so it suits stiff problems with Rosenbrock solvers; they receive
    the exact block-triangular Jacobian ``[[-J^T, 0], [-F_p^T, 0]]``.

    Options (besides those of :class:`ContinuousAdjoint`):
        checkpointing: keep only the states at checkpoints (the saved times and every
            ``ceil(sqrt(N))``-th of the ``N`` forward steps) instead of the whole dense
            solution, and re-solve each stretch between checkpoints densely (with the forward
            solver, onto the forward step ends) when the backward pass reaches it: memory
            ``O(sqrt(N))`` states plus one stretch's interpolation data, for about one extra
            forward solve.
    """

    name = "InterpolatingAdjoint"

    def forward(self, request: GradientRequest) -> ForwardRecord:
        _check_problem(request, self.name)
        if not self.checkpointing:
            sol = request.solve(dense=True)
            record = record_from_solution(request, sol)
            record.extra["trajectory"] = _DenseTrajectory(
            sol.dense_output, record.us[0, ...], request.backend.xp
        )
            return record
        record = record_from_solution(request, request.solve())
        n_steps = len(record.ts) - 1
        every = max(1, math.ceil(math.sqrt(n_steps)))
        rows = np.union1d(
            np.union1d(np.unique(record.save_index), np.arange(0, n_steps + 1, every)),
            [0, n_steps],
        )
        shrunk = _shrunk_record(request, record, rows)
        shrunk.extra["trajectory"] = _CheckpointedTrajectory(
            request, shrunk.ts, shrunk.us, record.ts.copy()
        )
        return shrunk

    def segment(
        self,
        request: GradientRequest,
        record: ForwardRecord,
        derivs: RHSDerivatives,
        state: dict[str, Any],
        i_hi: int,
        i_lo: int,
        t_hi: float,
        t_lo: float,
        lam: Any,
        mu: Any,
    ) -> tuple[Any, Any]:
        xp = request.backend.xp
        if self.is_zero(xp, lam):  # nothing to carry back until the next jump
            return lam, mu
        n = request.n
        dtype = record.us.dtype
        want_p = mu is not None
        m = request.n_p if want_p else 0
        traj = record.extra["trajectory"]

        def rhs(y: Any, t: float) -> Any:
            gu, gp = derivs.vjp(y[:n] if want_p else y, traj(t), t, want_p)
            if not want_p:
                return -self.cast(xp, gu, dtype)
            return xp.concat([-self.cast(xp, gu, dtype), -self.cast(xp, gp, dtype)])

        def jac(y: Any, p: Any, t: float) -> Any:
            return _adjoint_jacobian(derivs, traj(t), t, n, m, dtype)

        y0 = xp.concat([lam, mu]) if want_p else lam
        sol = self.backward_solve(request, rhs, y0, t_hi, t_lo, jac=jac)
        y = xp.reshape(sol.u[-1, ...], (n + m,))
        return (y[:n], y[n:]) if want_p else (y, None)


# --------------------------------------------------------------------------- Quadrature
class QuadratureAdjoint(ContinuousAdjoint):
    """Continuous adjoint in two stages (SciMLSensitivity's ``QuadratureAdjoint``):
    ``lambda' = -J(u(t), t)^T lambda`` alone backwards with ``u(t)`` from the forward dense
    output, then

        dL/dp = int_{t0}^{t_N} lambda(t)^T F_p(u(t), t) dt

    by ``q``-point Gauss–Legendre quadrature on every interval between consecutive step ends
    of the ``lambda`` solve and of the forward solve, where both interpolants are polynomials
    (exact for degree ``2q - 1``, local error ``O(h^(2q+1))``; ``q = max(2, dense_order // 2 +
    1)``, of higher order than the dense outputs, whose accuracy bounds that of ``dL/dp``).
    The backward system is ``n``-dimensional whatever the number of parameters (Rosenbrock
    solvers factor ``n x n`` matrices and get the exact Jacobian ``-J^T``).
    """

    name = "QuadratureAdjoint"

    def forward(self, request: GradientRequest) -> ForwardRecord:
        _check_problem(request, self.name)
        sol = request.solve(dense=True)
        record = record_from_solution(request, sol)
        record.extra["trajectory"] = _DenseTrajectory(
            sol.dense_output, record.us[0, ...], request.backend.xp
        )
        return record

    def nodes(self, request: GradientRequest) -> tuple[np.ndarray, np.ndarray]:
        """Gauss–Legendre nodes and weights on [-1, 1] for the solver's dense order."""
        q = max(2, int(request.solver.dense_order) // 2 + 1)
        x, w = np.polynomial.legendre.leggauss(q)
        return x, w

    def segment(
        self,
        request: GradientRequest,
        record: ForwardRecord,
        derivs: RHSDerivatives,
        state: dict[str, Any],
        i_hi: int,
        i_lo: int,
        t_hi: float,
        t_lo: float,
        lam: Any,
        mu: Any,
    ) -> tuple[Any, Any]:
        xp = request.backend.xp
        if self.is_zero(xp, lam):
            return lam, mu
        n = request.n
        dtype = record.us.dtype
        traj = record.extra["trajectory"]

        def rhs(y: Any, t: float) -> Any:
            return -self.cast(xp, derivs.vjp(y, traj(t), t, False)[0], dtype)

        def jac(y: Any, p: Any, t: float) -> Any:
            return _adjoint_jacobian(derivs, traj(t), t, n, 0, dtype)

        want_p = mu is not None
        sol = self.backward_solve(request, rhs, lam, t_hi, t_lo, jac=jac, dense=want_p)
        lam_lo = xp.reshape(sol.u[-1, ...], (n,))
        if not want_p:
            return lam_lo, None
        # breakpoints: step ends of the lambda solve and of the forward solve in [t_lo, t_hi]
        lo, hi = min(t_lo, t_hi), max(t_lo, t_hi)
        fwd = record.ts[(record.ts > lo) & (record.ts < hi)]
        bp = np.unique(np.concatenate([np.asarray(sol.t, dtype=np.float64), fwd, [lo, hi]]))
        x, w = self.nodes(request)
        mid = 0.5 * (bp[1:] + bp[:-1])
        half = 0.5 * (bp[1:] - bp[:-1])
        times = (mid[:, None] + half[:, None] * x[None, :]).reshape(-1)
        weights = (half[:, None] * w[None, :]).reshape(-1)
        if t_hi < t_lo:  # a backwards tspan: the forward integral runs from hi to lo
            weights = -weights
        us = traj.many(times)
        if sol.dense_output is None:
            lams = xp.stack([lam_lo] * len(times))
        else:
            lams = sol.dense_output(times)
        acc = xp.zeros((request.n_p,), dtype=dtype)
        for k in range(len(times)):
            vp = self.lam_fp(derivs, lams[k, ...], us[k, ...], float(times[k]))
            acc = acc + float(weights[k]) * self.cast(xp, vp, dtype)
        return lam_lo, mu + acc


__all__ = [
    "BacksolveAdjoint",
    "ContinuousAdjoint",
    "InterpolatingAdjoint",
    "QuadratureAdjoint",
]
