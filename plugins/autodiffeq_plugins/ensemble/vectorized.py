"""The vectorised executor: all trajectories of a batch stepped together as one ``(B, n)``
array, each with its own time, step size, accept/reject decision and error norm.

**How one stepper serves B step sizes.** Trajectory ``b`` at time ``t_b`` with step ``h_b``
is, in the local time ``tau = (t - t_b) / h_b``, the problem

    dv/dtau = h_b f(v, p_b, t_b + tau h_b),    v(0) = u_b,

and a Runge–Kutta step of size 1 on it is exactly the step of size ``h_b`` on the original
(its stages are ``h_b k_i`` at ``t_b + c_i h_b``; its embedded error estimate
``sum_i e_i (h_b k_i)`` is the original's). So the family's own registered stepper, made for
the flat state of all ``B`` trajectories, takes every trajectory's step at once with the
step sizes in the right-hand side; the PI controller (OrdinaryDiffEq's defaults, as the
driver's), the weighted RMS error norm (per trajectory), Hairer's starting step, ``dtmin``,
``maxiters`` and the retcodes are applied per trajectory. Trajectories that finish drop
out: the arrays are compacted whenever fewer than half of their rows are still running.

Saved times come from each step's dense output, evaluated per trajectory at its own
``theta = (t_save - t_b) / h_b`` (:meth:`~autodiffeq.Stepper.interpolate` on the scaled
step), so every trajectory takes the steps of its separate solve (the two agree to
rounding; the stage sums are BLAS products over the batch, so the last bits depend on the
batch). ``tstops`` and ``t1`` are stepped onto exactly; a method with only linear dense
output steps onto its save times too. Without ``saveat`` every accepted step is saved.

**The vectorised ``f`` contract.** ``f(U, P, T)`` is called with ``U`` of shape
``(B, *u0.shape)``, ``P`` the trajectories' parameters stacked along a leading axis (``None``
when the problems have none) and ``T`` of shape ``(B,) + (1,) * u0.ndim`` (so that it
broadcasts against ``U``), and returns ``(B, *u0.shape)``. Write ``f`` with ``...``
indexing (``u[..., 0]``, ``p[..., 1]``) and it serves single solves and batches alike. Before
stepping, the executor compares ``f`` on the first trajectories as a batch with ``f`` on each
alone and refuses, with the reason, an ``f`` that does not take a batch.

Supported: ODE problems (without mass matrix), the explicit Runge–Kutta family (``alg=None``:
the non-stiff default, Tsit5, or Vern7 at ``rtol < 1e-7``) and the Rosenbrock family (the
scaled system's Jacobian is ``h_b df/du`` per trajectory, block diagonal: it is found by
colour-compressed finite differences, as many colours as one trajectory's Jacobian needs, and
each step factors the block-diagonal ``W`` by sparse LU; the time derivative ``h_b^2 df/dt``
as the family finds it); SDE problems on a fixed grid (:func:`solve_sde_batch`: every
trajectory's own Brownian path, bit for bit its separate solve). Other problem types
and families raise :class:`~autodiffeq.UnsupportedCombination` naming the executors that
solve them. A problem that autograd differentiates is solved as one system of all
trajectories (shared steps, the error norm the largest of the trajectories' own), which the
sensitivity methods differentiate.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from autodiffeq.backend import parameters_on_backend
from autodiffeq.controller import ErrorNorm
from autodiffeq.ensemble import EnsembleJob, TrajectoryResult
from autodiffeq.errors import InvalidArgument, UnsupportedCombination
from autodiffeq.problems import ODEProblem, SDEProblem
from autodiffeq.request import (
    build_request,
    check_saveat,
    check_tstops,
    problem_type_of,
    resolve_registry,
)
from autodiffeq.solution import Solution, Stats
from autodiffeq.stepper import RHS

#: option values the vectorised executor takes (others are refused with the reason)
_REFUSED = {
    "callback": "callbacks (events)",
    "observers": "step observers",
    "internalnorm": "a custom error norm",
    "error_components": "error_components",
    "brownian": "a Brownian path",
}
_EPS = float(np.finfo(np.float64).eps)
#: compact the arrays when fewer than this fraction of their rows still run
_COMPACT_BELOW = 0.5
#: the families whose steppers the time scaling (module docstring) serves exactly; the
#: default among them is the explicit one
FAMILY = "explicit_rk"
FAMILIES = ("explicit_rk", "rosenbrock")


class VectorizedExecutor:
    """All trajectories of each batch stepped together (module docstring)."""

    def run(self, job: EnsembleJob, batches: list[list[int]]
            ) -> Iterator[list[TrajectoryResult]]:
        for batch in batches:
            probs = [job.problem(i) for i in batch]
            reg = resolve_registry(job.registry)
            ptype = problem_type_of(reg, probs[0])
            if any(ptype.adapter.traced(p) for p in probs):
                sols = _solve_traced(job, probs)
            elif getattr(ptype.adapter, "stochastic", False):
                sols = solve_sde_batch(job, probs, batch)
            else:
                sols = BatchedSolve(job, probs).run()
            yield [job.finish(i, sol) for i, sol in zip(batch, sols)]

    def __repr__(self) -> str:
        return "VectorizedExecutor()"


def _unsupported(what: str) -> UnsupportedCombination:
    return UnsupportedCombination(
        f"ensemble='vectorized' does not support {what} (yet); ensemble='serial', 'threads', "
        f"'processes' or 'dask' solve each trajectory with every feature",
        ("serial", "threads", "processes", "dask"))


def _unsupported_gradient(what: str) -> UnsupportedCombination:
    return UnsupportedCombination(
        f"ensemble='vectorized' does not support {what}; ensemble='serial' differentiates "
        f"each trajectory's solve", ("serial",))


class RowOps:
    """Row gathers and scatters of ``(rows, ...)`` backend arrays by host index arrays.

    On NumPy they are plain fancy indexing (in place). Other backends get the array API's
    own operations: ``take`` with the indices moved to the device, and a scatter as
    ``where`` over a row mask (a new array), since the standard has no integer-array
    assignment; this is what lets the executor run on CuPy (and on ``array_api_strict``,
    which proves it uses nothing else)."""

    def __init__(self, be: Any) -> None:
        self.be, self.xp = be, be.xp
        self.native = be.xp is np

    def take(self, A: Any, idx: np.ndarray) -> Any:
        """``A[idx]`` (rows)."""
        if self.native:
            return A[idx]
        return self.xp.take(A, self.be.asarray(np.asarray(idx, dtype=np.int64)), axis=0)

    def put(self, A: Any, idx: np.ndarray, V: Any) -> Any:
        """``A`` with rows ``idx`` set to ``V``'s rows; returns the result (``A`` itself,
        updated in place, on NumPy)."""
        if self.native:
            A[idx, ...] = V
            return A
        xp, be = self.xp, self.be
        rows = A.shape[0]
        pos = np.zeros(rows, dtype=np.int64)
        pos[idx] = np.arange(len(idx))
        mask = np.zeros((rows,) + (1,) * (A.ndim - 1), dtype=bool)
        mask.reshape(rows)[idx] = True
        spread = xp.take(V, be.asarray(pos), axis=0)
        return xp.where(be.asarray(mask), spread, A)

    def host(self, x: Any) -> Any:
        """A host array (NumPy) or backend array ``x`` as a backend array."""
        return x if self.native else self.be.asarray(x)


def _stack_parameters(probs: list[Any]) -> Any:
    ps = [p.p for p in probs]
    if all(p is None for p in ps):
        return None
    try:
        arrays = [np.asarray(p, dtype=np.float64) for p in ps]
    except (TypeError, ValueError):
        raise _unsupported("parameters that are not arrays of numbers") from None
    if len({a.shape for a in arrays}) != 1:
        raise InvalidArgument(
            "ensemble='vectorized' stacks the trajectories' parameters: every p must have "
            f"the same shape, got {sorted({a.shape for a in arrays})}")
    return np.stack(arrays)


def _choose_solver(reg: Any, alg: Any, rtol: float) -> Any:
    if alg is not None:
        spec = reg.solver(alg) if isinstance(alg, str) else alg
        if spec.family not in FAMILIES:
            usable = [s.name for s in reg.solvers() if s.family in FAMILIES]
            raise UnsupportedCombination(
                f"ensemble='vectorized' steps explicit Runge-Kutta and Rosenbrock methods; "
                f"{spec.name!r} is of the {spec.family!r} family. Use one of "
                f"{', '.join(usable)}, or another executor for {spec.name!r}", tuple(usable))
        return spec
    target = 7 if rtol < 1e-7 else 5
    candidates = [s for s in reg.solvers()
                  if s.family == FAMILY and s.adaptive and s.default_priority > 0]
    return max(candidates, key=lambda s: (-abs(s.order - target), s.default_priority))


class BatchedSolve:
    """One batch of ODE trajectories stepped together (module docstring)."""

    def __init__(self, job: EnsembleJob, probs: list[Any]) -> None:
        self.job = job
        self.probs = probs
        reg = resolve_registry(job.registry)
        self.reg = reg
        first = probs[0]
        ptype = problem_type_of(reg, first)
        if ptype.name != "ODE":
            raise _unsupported(f"{ptype.name} problems")
        opts = dict(job.options)
        for name, what in _REFUSED.items():
            value = opts.get(name)
            if value not in (None, (), []):
                raise _unsupported(what)
        if opts.get("dense"):
            raise UnsupportedCombination(
            "ensemble='vectorized' keeps no dense output (sol(t)): pass saveat=..., or use "
            "ensemble='serial' or 'threads' for dense output", ("serial", "threads"))
        if opts.get("controller") not in (None, "PI"):
            raise _unsupported("controllers other than PI")
        if any(getattr(p, "mass_matrix", None) is not None for p in probs):
            raise _unsupported("mass matrices")
        opts["dense"] = False
        opts.setdefault("progress", False)
        opts.setdefault("seed", None)
        spec = _choose_solver(reg, job.alg, float(np.max(np.asarray(opts.get("rtol", 1e-3)))))
        request = build_request(first, spec, opts, dict(job.alg_options), reg, ptype)
        self.request = request
        self.spec = spec
        self.be = request.backend
        self.xp = self.be.xp
        self.shape = request.shape
        self.n = int(np.prod(self.shape, dtype=np.int64))
        self.dtype = request.dtype
        self.f = first.f
        for i, p in enumerate(probs):
            if p.f is not first.f:
                raise InvalidArgument(
                    f"ensemble='vectorized' calls one f for the batch: trajectory {i}'s "
                    f"problem has another f (prob_func may change u0, p and tspan)")
        self.ops = RowOps(self.be)
        P = _stack_parameters(probs)
        self.P = None if P is None else self.ops.host(P)
        # saves between steps from the method's dense output (a step's interpolant, one
        # theta per trajectory): the steps are then those of a separate solve; a method
        # with only linear dense output steps onto its save times instead
        self.interpolate_saves = (self.job.options.get("saveat") is not None
                                  and spec.dense_order >= 2)
        self._init_states()

    # ------------------------------------------------------------------ setup
    def _init_states(self) -> None:
        probs, be = self.probs, self.be
        host = [be.to_host(p.u0) if be.is_native(p.u0) else p.u0 for p in probs]
        shapes = [np.shape(u) for u in host]
        for i, shape in enumerate(shapes):
            if tuple(shape) != self.shape:
                raise InvalidArgument(
                    f"trajectory {i}: u0 has shape {tuple(shape)}, the batch's is "
                    f"{self.shape} (the vectorised executor stacks the states)")
        stacked = np.asarray(host, dtype=np.float64).reshape(len(probs), self.n)
        finite = np.all(np.isfinite(stacked), axis=1)
        if not np.all(finite):
            raise InvalidArgument(
                f"trajectory {int(np.argmin(finite))}: u0 contains NaN or inf")
        self.U0 = be.asarray(stacked, dtype=self.dtype)
        spans = np.array([[float(p.tspan[0]), float(p.tspan[1])] for p in probs])
        self.t0, self.t1 = spans[:, 0].copy(), spans[:, 1].copy()
        dirs = np.sign(self.t1 - self.t0)
        if np.any(dirs == 0):
            raise InvalidArgument("a trajectory's tspan is empty (t0 == t1)")
        if np.any(dirs != dirs[0]):
            raise InvalidArgument("ensemble='vectorized' needs every tspan in one direction")
        self.tdir = float(dirs[0])
        self._init_stops(spans)

    def _init_stops(self, spans: np.ndarray) -> None:
        """Each trajectory's stops (its ``saveat`` and ``tstops`` times and ``t1``), which
        of them are saved, and whether ``t0`` is: computed once per distinct time span."""
        saveat = self.job.options.get("saveat")
        tstops = self.job.options.get("tstops", ())
        uniq, which = np.unique(spans, axis=0, return_inverse=True)
        which = np.asarray(which).reshape(-1)
        per_span = []
        interpolate = self.interpolate_saves
        for t0, t1 in uniq:
            sv = check_saveat(saveat, t0, t1, self.tdir)
            ts = check_tstops(tstops, t0, t1, self.tdir)
            sv_list = [] if sv is None or interpolate else [float(x) for x in sv]
            times = sorted(set(sv_list) | {float(x) for x in ts} | {float(t1)},
                           key=lambda x, d=self.tdir: d * x)
            times = [x for x in times if self.tdir * (x - t0) > 0]
            is_save = (np.isin(np.asarray(times), sv) if sv is not None and not interpolate
                       else np.zeros(len(times), dtype=bool))
            per_span.append((np.asarray(times), is_save, sv,
                             sv is not None and bool(np.any(sv == t0))))
        width = max(len(x[0]) for x in per_span)
        stops_u = np.full((len(uniq), width + 1), self.tdir * math.inf)
        save_u = np.zeros((len(uniq), width + 1), dtype=bool)
        for k, (times, is_save, _, _) in enumerate(per_span):
            stops_u[k, :len(times)] = times
            save_u[k, :len(times)] = is_save
        self.stops = stops_u[which]
        self.is_save = save_u[which]
        self.nstops = np.array([len(x[0]) for x in per_span], dtype=np.int64)[which]
        self.save_t0 = np.array([x[3] for x in per_span], dtype=bool)[which]
        self.max_saves = max((len(x[2]) for x in per_span if x[2] is not None), default=0)
        # with interpolated saves: each trajectory's save times after t0, padded
        self.save_times = np.full((len(which), self.max_saves + 1), self.tdir * math.inf)
        if interpolate:
            table = np.full((len(uniq), self.max_saves + 1), self.tdir * math.inf)
            for k, (_, _, sv, at_t0) in enumerate(per_span):
                if sv is not None:
                    later = np.asarray(sv)[1:] if at_t0 else np.asarray(sv)
                    table[k, :len(later)] = later
            self.save_times = table[which]
        self.next_save = self.save_times[:, 0].copy()  # each trajectory's next save time
        self.save_every = saveat is None

    # ------------------------------------------------------------------ f
    def _batched_f(self, U: Any, P: Any, T: np.ndarray) -> Any:
        B = U.shape[0]
        Tb = self.xp.reshape(self.ops.host(T), (B,) + (1,) * len(self.shape))
        out = self.f(self.xp.reshape(U, (B, *self.shape)), P, Tb)
        out = self.xp.asarray(out, dtype=self.dtype)
        if tuple(out.shape) != (B, *self.shape):
            raise InvalidArgument(
                f"ensemble='vectorized': f(U, P, T) on a batch of {B} returned shape "
                f"{tuple(out.shape)}, expected {(B, *self.shape)} (see the vectorised f "
                f"contract in the docs)")
        return self.xp.reshape(out, (B, self.n))

    def _check_batched_f(self) -> None:
        """``f`` on the first trajectories as a batch equals ``f`` on each alone."""
        k = min(3, len(self.probs))
        P = None if self.P is None else self.P[:k, ...]
        U = self.U0[:k, ...]
        T = self.t0[:k].copy()
        try:
            batch = np.asarray(self.be.to_host(self._batched_f(U, P, T)))
        except InvalidArgument:
            raise
        except Exception as exc:
            raise InvalidArgument(
                f"ensemble='vectorized' calls f on a batch, f(U, P, T) with U of shape "
                f"(B, {', '.join(map(str, self.shape))}), P the stacked parameters and T of "
                f"shape (B, {', '.join(['1'] * len(self.shape))}) (so that it broadcasts "
                f"against U), and this f raised {type(exc).__name__}: {exc}. Write f with "
                f"u[..., i] / p[..., j] indexing, and u[..., i:i+1] where a term in t joins "
                f"a component (docs: the vectorised f contract), or use ensemble='serial'"
                ) from exc
        for b in range(k):
            p = self.probs[b]
            alone = np.asarray(self.be.to_host(self.xp.asarray(
                p.f(self.xp.reshape(self.U0[b, ...], self.shape),
                    parameters_on_backend(p.p, self.be), float(T[b])),
                dtype=self.dtype)), dtype=np.float64).reshape(-1)
            scale = np.max(np.abs(alone)) + np.finfo(np.float64).tiny
            if not np.allclose(batch[b], alone, rtol=1e-10, atol=1e-12 * scale):
                raise InvalidArgument(
                    f"ensemble='vectorized': f on a batch does not give trajectory {b}'s f "
                    f"(f(U, P, T)[{b}] = {batch[b]} but f(u0, p, t0) = {alone}): f must treat "
                    f"the leading axis as the trajectories (u[..., i], p[..., j]; T has "
                    f"shape (B, 1, ...), so that it broadcasts against U: a term like "
                    f"cos(t) added to u[..., 0] needs u[..., 0:1]; see the docs), or use "
                    f"ensemble='serial'")

    # ------------------------------------------------------------------ solve
    def run(self) -> list[Solution]:
        self._check_batched_f()
        # a trajectory that diverges overflows on its way to its retcode: no warnings
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return self._integrate()

    def _integrate(self) -> list[Solution]:
        req, xp, be = self.request, self.xp, self.be
        B, n, tdir = len(self.probs), self.n, self.tdir
        rtol = _per_component(req.rtol_b, n, be)
        atol = _per_component(req.atol_b, n, be)
        spec = self.spec
        probe = spec.factory(RHS(lambda u, p, t: u, None, (n,), self.dtype, be), be)
        order, error_order = probe.order, probe.error_order
        k_err = min(order, error_order or order - 1) + 1
        adaptive = bool(req.adaptive) and error_order is not None
        beta1, beta2 = 0.7 / k_err, 0.4 / k_err
        safety, qmin, qmax, qoldinit = 0.9, 0.2, 10.0, 1e-4
        dtmin, dtmax, maxiters = float(req.dtmin), float(req.dtmax), int(req.maxiters)
        tiny = 4 * np.finfo(np.float64).eps

        t = self.t0.copy()
        U = xp.asarray(self.U0, copy=True)
        P = self.P
        ops = self.ops
        F0 = self._batched_f(U, P, t)
        span = np.abs(self.t1 - self.t0)
        if req.dt is not None:
            dt = np.full(B, abs(float(req.dt)))
        else:
            dt = self._starting_steps(U, F0, t, rtol, atol, order, span, dtmax)
        qold = np.full(B, qoldinit)
        attempts = np.zeros(B, dtype=np.int64)
        naccept = np.zeros(B, dtype=np.int64)
        retcode = np.array(["Success"] * B, dtype=object)
        nstop = np.zeros(B, dtype=np.int64)
        nsave = np.zeros(B, dtype=np.int64)
        stops, is_save, nstops = self.stops, self.is_save, self.nstops
        recorder = _Recorder(self, B)
        rows = np.arange(B)  # the trajectories the arrays' rows hold
        running = np.ones(B, dtype=bool)  # per row
        stepper = None
        per_attempt = 0
        width = B
        state: dict[str, Any] = {}

        def scaled(y: Any, _p: Any, tau: float) -> Any:
            Y = xp.reshape(y, (width, n))
            out = self._batched_f(Y, state["P"], state["t"] + tau * state["h"])
            return xp.reshape(out * state["h_col"], (width * n,))

        while np.any(running):
            if stepper is None or np.count_nonzero(running) < _COMPACT_BELOW * width:
                keep = np.nonzero(running)[0]
                rows, running = rows[keep], running[keep]
                U, F0 = ops.take(U, keep), ops.take(F0, keep)
                width = len(rows)
                state["P"] = None if P is None else ops.take(P, rows)
                rhs = RHS(scaled, None, (width * n,), self.dtype, be,
                          problem=self._proxy(scaled, width))
                stepper = spec.factory(rhs, be, **_stepper_options(spec, self.job))
            idx = rows
            # each running row's step: its controller's, cut to its next stop
            h = dt[idx]
            t_row = t[idx]
            nxt = stops[idx, nstop[idx]]
            to_stop = tdir * (nxt - t_row)
            hits = running & (h >= to_stop * (1 - tiny))
            h_eff = np.where(running, np.where(hits, to_stop, h), 0.0)
            state["t"], state["h"] = ops.host(t_row), ops.host(tdir * h_eff)
            state["h_col"] = h_col = be.asarray((tdir * h_eff).reshape(width, 1),
                                                dtype=self.dtype)
            U_flat = xp.reshape(U, (width * n,))
            stepper.init(0.0, U_flat, xp.reshape(F0 * h_col, (width * n,)))
            nf_before = stepper.nf
            u_flat, err_flat = stepper.step(0.0, U_flat, 1.0)
            per_attempt = stepper.nf - nf_before
            U_new = xp.reshape(u_flat, (width, n))
            attempts[idx[running]] += 1
            finite_dev = xp.all(xp.isfinite(U_new), axis=1)
            if adaptive:
                E = xp.reshape(err_flat, (width, n))
                sc = atol + xp.maximum(xp.abs(U), xp.abs(U_new)) * rtol
                # one device-to-host read per step: the rows' squared norms and finiteness
                both = np.asarray(be.to_host(xp.stack(
                    [xp.mean((E / sc) ** 2, axis=1), xp.astype(finite_dev, E.dtype)])),
                    dtype=np.float64)
                finite = both[1] != 0.0
                eest = np.where(finite, np.sqrt(both[0]), np.inf)
                accept = running & (eest <= 1.0)
                # the controller (autodiffeq.controller.PIController), per trajectory
                with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
                    grow = eest ** beta1 / safety
                    q = np.where(eest == 0.0, 1.0 / qmax,
                                 np.clip(grow / qold[idx] ** beta2, 1.0 / qmax, 1.0 / qmin))
                    if np.all(accept | ~running):
                        new_dt = h_eff / q
                    else:
                        q_rej = np.where(np.isfinite(eest), np.minimum(1.0 / qmin, grow),
                                         1.0 / qmin)
                        new_dt = np.where(accept, h_eff / q, h_eff / q_rej)
                # after a step cut short to land on a stop the controller's step resumes
                # (no growth from the short step's small error)
                new_dt = np.where(accept & hits, np.minimum(new_dt, h), new_dt)
                sel = idx[running]
                dt[sel] = np.minimum(new_dt, dtmax)[running]
                qold[idx[accept]] = np.maximum(eest[accept], qoldinit)
            else:
                finite = np.asarray(be.to_host(finite_dev))
                accept = running & finite
            acc = np.nonzero(accept)[0]
            if acc.size:
                b_acc = idx[acc]
                t_new = np.where(hits, nxt, t_row + tdir * h_eff)[acc]
                if self.interpolate_saves:
                    self._interpolated_saves(stepper, recorder, nsave, acc, b_acc, t_row,
                                             tdir * h_eff, t_new, U, U_new, width)
                t[b_acc] = t_new
                if acc.size == width:  # every row accepted: no gathers
                    if ops.native:
                        U[...] = U_new
                    else:
                        U = U_new
                    U_acc = U
                    F0 = self._batched_f(U, state["P"], t_new)
                else:
                    U_acc = ops.take(U_new, acc)
                    U = ops.put(U, acc, U_acc)
                    F0 = ops.put(F0, acc, self._batched_f(
                        U_acc, None if P is None else ops.take(P, b_acc), t_new))
                naccept[b_acc] += 1
                hit_acc = hits[acc]
                saving = hit_acc & is_save[b_acc, nstop[b_acc]]
                recorder.record(b_acc, t_new, U_acc, saving)
                nstop[b_acc[hit_acc]] += 1
                done = hit_acc & (nstop[b_acc] >= nstops[b_acc])
                running[acc[done]] = False
            # failures end a trajectory with its retcode and its states so far (only a
            # rejected or non-finite attempt can fail; maxiters is checked every step)
            if np.all(accept | ~running) and not np.any(attempts[idx] >= maxiters):
                continue
            bad_nonfinite = running & ~finite & (not adaptive)
            retcode[idx[bad_nonfinite]] = "Unstable"
            if adaptive:
                # the driver's floor: what t can resolve where it is, and a tiny fraction
                # of the span
                floor = np.maximum(np.maximum(dtmin, 1e-12 * _EPS * span[idx]),
                                   4 * _EPS * np.abs(t[idx]))
                small = running & (dt[idx] < floor)
                retcode[idx[small & ~finite]] = "Unstable"
                retcode[idx[small & finite]] = "DtLessThanMin"
                bad_nonfinite = bad_nonfinite | small
            maxed = running & ~bad_nonfinite & (attempts[idx] >= maxiters)
            retcode[idx[maxed]] = "MaxIters"
            running &= ~(bad_nonfinite | maxed)
        sols = []
        for b, prob in enumerate(self.probs):
            ts, us = recorder.trajectory(b)
            stats = Stats(nf=int(2 + attempts[b] * per_attempt + naccept[b]),
                          nsteps=int(attempts[b]), naccept=int(naccept[b]),
                          nreject=int(attempts[b] - naccept[b]))
            sols.append(Solution(ts, us, str(retcode[b]), stats, spec, prob, be, self.shape,
                                 None, self.job.options))
        return sols

    def _interpolated_saves(self, stepper: Any, recorder: _Recorder, nsave: np.ndarray,
                            acc: np.ndarray, b_acc: np.ndarray, t_row: np.ndarray,
                            h_signed: np.ndarray, t_new: np.ndarray, U: Any, U_new: Any,
                            width: int) -> None:
        """Save every save time the accepted rows ``acc`` (trajectories ``b_acc``) stepped
        past, from the step's dense output at ``theta = (t_save - t) / h`` per row
        (:meth:`~autodiffeq.Stepper.interpolate` of the scaled step, ``dt = 1``); a save
        time at the step's end takes the step's value itself."""
        xp, n, tdir = self.xp, self.n, self.tdir
        next_save = self.next_save
        data = None
        while True:
            nxt = next_save[b_acc]
            cross = tdir * (nxt - t_new) <= 0.0
            if not np.any(cross):
                return
            r, bs, ts = acc[cross], b_acc[cross], nxt[cross]
            if data is None:
                data = stepper.dense_data()
                data = stepper.complete_dense_data(0.0, 1.0, xp.reshape(U, (width * n,)),
                                                   data)
                data = xp.reshape(data, (data.shape[0], width, n))
            theta = np.clip((ts - t_row[r]) / h_signed[r], 0.0, 1.0)
            ops = self.ops
            rows_data = xp.permute_dims(xp.take(data, self.be.asarray(r), axis=1)
                                        if not ops.native else data[:, r, :], (1, 0, 2))
            ones = self.be.asarray(np.ones(len(r)), dtype=self.dtype)
            values = stepper.interpolate(self.be.asarray(theta, dtype=self.dtype), ones,
                                         ops.take(U, r), ops.take(U_new, r), rows_data)
            at_end = ts == t_new[cross]
            if np.any(at_end):
                end = np.nonzero(at_end)[0]
                values = ops.put(values, end, ops.take(U_new, r[end]))
            recorder.save(bs, ts, values)
            nsave[bs] += 1
            next_save[bs] = self.save_times[bs, nsave[bs]]

    def _proxy(self, scaled: Any, width: int) -> Any:
        """For a method that needs Jacobians (Rosenbrock), the problem its stepper reads
        them from: the scaled system of ``width`` trajectories, whose Jacobian is block
        diagonal (``jac_prototype``: the user's pattern, or dense ``n x n`` blocks), so it is
        found by colour-compressed differences in as many colours as one block needs and
        ``W`` is factored by the backend's sparse LU (SciPy's SuperLU on NumPy; on CuPy
        ``cupyx``'s ``splu``, which factors on the host); a backend without sparse matrices
        factors the ``(B n, B n)`` ``W`` densely."""
        if self.spec.family == FAMILY:
            return None
        import scipy.sparse as sp

        block = getattr(self.probs[0], "jac_prototype", None)
        block = (sp.csr_matrix(np.ones((self.n, self.n))) if block is None
                 else sp.csr_matrix(block))
        pattern = sp.kron(sp.identity(width, format="csr"), block, format="csc")
        return ODEProblem(scaled, self.xp.zeros((width * self.n,), dtype=self.dtype),
                          (0.0, 1.0), None, jac_prototype=pattern)

    def _starting_steps(self, U: Any, F0: Any, t: np.ndarray, rtol: Any, atol: Any,
                        order: float, span: np.ndarray, dtmax: float) -> np.ndarray:
        """Hairer's starting step (:func:`autodiffeq.controller.initial_step`) per
        trajectory, evaluated for all at once."""
        xp, be, tdir = self.xp, self.be, self.tdir
        sc = atol + xp.abs(U) * rtol

        def rms(x: Any) -> np.ndarray:
            return np.sqrt(np.asarray(be.to_host(xp.mean(x * x, axis=1)), dtype=np.float64))

        d0, d1 = rms(U / sc), rms(F0 / sc)
        with np.errstate(divide="ignore", invalid="ignore"):
            h0 = np.where((d0 < 1e-5) | (d1 < 1e-5) | ~np.isfinite(d0) | ~np.isfinite(d1),
                          1e-6, 0.01 * d0 / d1)
        eps = np.finfo(np.float64).eps
        floor = np.minimum(span, np.maximum(64 * eps * np.abs(t), 1e-12 * eps * span))
        h0 = np.maximum(np.minimum(np.minimum(h0, span), dtmax), floor)
        h0c = be.asarray((tdir * h0).reshape(-1, 1), dtype=self.dtype)
        F1 = self._batched_f(U + h0c * F0, self.P, t + tdir * h0)
        d2 = rms((F1 - F0) / sc) / h0
        dmax = np.maximum(d1, d2)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            h1 = np.where(~np.isfinite(dmax), h0 * 1e-3,
                          np.where(dmax <= 1e-15, np.maximum(1e-6, h0 * 1e-3),
                                   (0.01 / dmax) ** (1.0 / (order + 1))))
        return np.maximum(np.minimum(np.minimum(np.minimum(100 * h0, h1), span), dtmax), floor)


class _Recorder:
    """The saved states: with ``saveat``, slots per trajectory filled as its save times are
    reached; without, every accepted step, kept in the order taken and sorted out by
    trajectory at the end."""

    def __init__(self, solve: BatchedSolve, B: int) -> None:
        self.solve = solve
        self.ops = solve.ops
        xp, n = solve.xp, solve.n
        self.every = solve.save_every
        self.count = np.zeros(B, dtype=np.int64)
        self._shared: np.ndarray | None = None
        if self.every:
            self.chunks: list[tuple[np.ndarray, np.ndarray, Any]] = [
                (np.arange(B), solve.t0.copy(), solve.U0)]
            return
        m = max(1, solve.max_saves)
        self.T = np.full((B, m), np.nan)
        self.U = xp.zeros((B, m, n), dtype=solve.dtype)
        self._U_rows = xp.reshape(self.U, (B * m, n))  # a view: one row per (trajectory, slot)
        first = solve.save_t0
        if np.any(first):
            rows = np.nonzero(first)[0]
            self.T[rows, 0] = solve.t0[rows]
            self._put_rows(rows * m, self.ops.take(solve.U0, rows))
            self.count[rows] = 1

    def record(self, b: np.ndarray, t: np.ndarray, U: Any, saving: np.ndarray) -> None:
        if self.every:
            # (a copy: U may be the live state array, updated in place by the next step)
            self.chunks.append((b, t, self.solve.xp.asarray(U, copy=True)))
            return
        if np.any(saving):
            bs = b[saving]
            k = self.count[bs]
            self.T[bs, k] = t[saving]
            self._put_rows(bs * self.T.shape[1] + k, self.ops.take(U, np.nonzero(saving)[0]))
            self.count[bs] += 1

    def _put_rows(self, slot: np.ndarray, values: Any) -> None:
        """Rows ``slot`` of the ``(B m, n)`` view of the saved states set to ``values``."""
        if self.ops.native:
            self._U_rows[slot, :] = values
            return
        self._U_rows = self.ops.put(self._U_rows, slot, values)
        self.U = self.solve.xp.reshape(self._U_rows, self.U.shape)

    def save(self, bs: np.ndarray, t: np.ndarray, values: Any) -> None:
        """Interpolated saves: trajectory ``bs[j]`` at ``t[j]`` is ``values[j]``."""
        slot = bs * self.T.shape[1] + self.count[bs]  # rows of the (B m, n) view
        self.T.reshape(-1)[slot] = t
        self._put_rows(slot, values)
        self.count[bs] += 1

    def trajectory(self, b: int) -> tuple[np.ndarray, Any]:
        solve, xp = self.solve, self.solve.xp
        if self.every:
            if not hasattr(self, "_order"):
                self._b = np.concatenate([c[0] for c in self.chunks])
                self._t = np.concatenate([c[1] for c in self.chunks])
                self._u = xp.concat([c[2] for c in self.chunks], axis=0)
                self._order = np.argsort(self._b, kind="stable")
                self._starts = np.searchsorted(self._b[self._order],
                                               np.arange(len(solve.probs) + 1))
            sel = self._order[self._starts[b]:self._starts[b + 1]]
            return self._t[sel], xp.reshape(self.ops.take(self._u, sel),
                                            (len(sel), *solve.shape))
        k = int(self.count[b])
        times = self.T[b, :k]
        # trajectories with the same saved times share one array of them
        shared = self._shared
        if shared is None or len(shared) != k or not np.array_equal(shared, times):
            shared = self._shared = times.copy()
        return shared, xp.reshape(self.U[b, :k, :], (k, *solve.shape))


def _per_component(tol: Any, n: int, be: Any) -> Any:
    """A tolerance as a scalar or a ``(1, n)`` row that broadcasts over the batch."""
    if getattr(tol, "ndim", 0):
        return be.xp.reshape(tol, (1, n))
    return float(tol)


def _stepper_options(spec: Any, job: EnsembleJob) -> dict[str, Any]:
    options = dict(job.alg_options)
    if "stiffness_detection" in spec.options:
        options.setdefault("stiffness_detection", False)
    return options


class MaxRMSNorm(ErrorNorm):
    """The largest of the trajectories' own weighted RMS norms, for one solve of ``B``
    stacked trajectories: a step is accepted only when every trajectory would accept it.
    It reads the first ``B n`` entries of the flat state (an augmented system, e.g. forward
    sensitivities carried along, is controlled by the trajectories' states)."""

    def __init__(self, B: int, n: int, rtol: float, atol: float) -> None:
        self.B, self.n, self.rtol, self.atol = B, n, rtol, atol
        self._au: Any = None
        self._au_new: Any = None

    def start(self, u: Any) -> None:
        self._au = np.abs(np.asarray(u)[: self.B * self.n]).reshape(self.B, self.n)

    def __call__(self, u_new: Any, err: Any) -> float:
        m = self.B * self.n
        self._au_new = np.abs(np.asarray(u_new)[:m]).reshape(self.B, self.n)
        sc = self.atol + np.maximum(self._au, self._au_new) * self.rtol
        e = np.asarray(err)[:m].reshape(self.B, self.n) / sc
        return float(np.sqrt(np.max(np.mean(e * e, axis=1))))

    def accept(self) -> None:
        self._au = self._au_new


def _solve_traced(job: EnsembleJob, probs: list[Any]) -> list[Solution]:
    """A batch that autograd differentiates: one solve of the stacked system (shared steps,
    :class:`MaxRMSNorm`), which the solve's sensitivity method differentiates, split into
    the trajectories' solutions."""
    import autograd.numpy as anp

    from autodiffeq.solve import solve

    first = probs[0]
    reg = resolve_registry(job.registry)
    ptype = problem_type_of(reg, first)
    if ptype.name != "ODE":
        raise _unsupported_gradient(f"gradients through {ptype.name} problems")
    spans = {(float(p.tspan[0]), float(p.tspan[1])) for p in probs}
    if len(spans) != 1:
        raise _unsupported_gradient("gradients when prob_func changes tspan (the "
                                    "differentiated batch is one solve on a shared time "
                                    "span)")
    if any(p.f is not first.f for p in probs):
        raise InvalidArgument("ensemble='vectorized' calls one f for the batch: prob_func "
                              "may change u0, p and tspan, not f")
    for name, what in _REFUSED.items():
        if job.options.get(name) not in (None, (), []):
            raise _unsupported(what)
    shape = tuple(np.shape(first.u0))
    n = int(np.prod(shape, dtype=np.int64))
    B = len(probs)
    U0 = anp.stack([anp.reshape(p.u0, (n,)) for p in probs])
    P = None if all(p.p is None for p in probs) else anp.stack([p.p for p in probs])
    f = first.f
    t_shape = (B,) + (1,) * len(shape)

    def stacked_f(U: Any, P: Any, t: float) -> Any:
        return anp.reshape(f(anp.reshape(U, (B, *shape)), P, np.full(t_shape, t)), (B, n))

    opts = dict(job.options)
    rtol = float(np.max(np.asarray(opts.get("rtol", 1e-3))))
    atol = float(np.max(np.asarray(opts.get("atol", 1e-6))))
    if np.ndim(opts.get("rtol", 0)) or np.ndim(opts.get("atol", 0)):
        raise _unsupported("per-component tolerances with gradients")
    opts["internalnorm"] = MaxRMSNorm(B, n, rtol, atol)
    comb = ODEProblem(stacked_f, U0, next(iter(spans)), P)
    sol = solve(comb, job.alg, registry=job.registry, **opts, **job.alg_options)
    m = len(sol.t)
    return [_part(sol, b, shape, m, prob) for b, prob in enumerate(probs)]


def _part(sol: Solution, b: int, shape: tuple[int, ...], m: int, prob: Any) -> Solution:
    import autograd.numpy as anp

    u = anp.reshape(sol.u[:, b, :], (m, *shape))
    part = Solution(sol.t, u, sol.retcode, sol.stats, sol.alg, prob, sol.backend, shape,
                    None, sol.options)
    part.sensealg = sol.sensealg
    return part


def solve_sde_batch(job: EnsembleJob, probs: list[Any], indices: list[int]
                    ) -> list[Solution]:
    """A batch of SDE trajectories on one fixed grid: one solve of the stacked system, its
    noise a :class:`~autodiffeq.brownian.StackedBrownianPath` of the trajectories' own paths
    (trajectory ``i``'s from the seed ``(seed, i)``), and its steps those the core driver
    takes for each trajectory alone. Elementwise arithmetic, shared times and the same
    queries of each path make every trajectory's numbers those of its separate solve, bit for
    bit. A batch in which a trajectory fails is solved again one trajectory at a time (the
    others are unaffected, and the failure gets its own retcode and states)."""
    from autodiffeq.brownian import BrownianPath, StackedBrownianPath
    from autodiffeq.solve import solve

    first = probs[0]
    opts = dict(job.options)
    reg = resolve_registry(job.registry)
    spec = None if job.alg is None else (reg.solver(job.alg) if isinstance(job.alg, str)
                                         else job.alg)
    fixed = opts.get("adaptive") is False or (spec is not None and not spec.adaptive)
    if not fixed or opts.get("dt") is None:
        raise UnsupportedCombination(
            "ensemble='vectorized' steps SDE trajectories on one fixed grid: pass "
            "adaptive=False and dt=... (adaptive SDE steps refine each trajectory's own "
            "Brownian path; ensemble='serial', 'threads', 'processes' or 'dask' solve them)",
            ("serial", "threads", "processes", "dask"))
    for name, what in _REFUSED.items():
        if opts.get(name) not in (None, (), []):
            raise _unsupported(what)
    if opts.get("dense"):
        raise UnsupportedCombination(
            "ensemble='vectorized' keeps no dense output (sol(t)): pass saveat=..., or use "
            "ensemble='serial' or 'threads' for dense output", ("serial", "threads"))
    if first.noise == "general":
        raise _unsupported("general noise (g is a matrix per trajectory)")
    for i, p in enumerate(probs):
        if (p.f is not first.f or p.g is not first.g or p.noise != first.noise
                or p.interpretation != first.interpretation):
            raise InvalidArgument(
                f"ensemble='vectorized' calls one f and one g for the batch: trajectory "
                f"{i}'s problem has another f, g, noise or interpretation")
        if tuple(p.tspan) != tuple(first.tspan):
            raise _unsupported("SDE trajectories with different time spans")
    ptype = problem_type_of(reg, first)
    request = build_request(first, job.alg, {**opts, "seed": job.seed_of(indices[0]),
                                             "dense": False, "progress": False},
                            dict(job.alg_options), reg, ptype)
    be = request.backend
    xp = be.xp
    shape = tuple(request.shape)
    n = int(np.prod(shape, dtype=np.int64))
    B = len(probs)
    host = [be.to_host(p.u0) if be.is_native(p.u0) else p.u0 for p in probs]
    for i, u in enumerate(host):
        if tuple(np.shape(u)) != shape:
            raise InvalidArgument(f"trajectory {i}: u0 has shape {np.shape(u)}, the batch's "
                                  f"is {shape}")
    U0 = xp.concat([xp.reshape(be.asarray(u, dtype=request.dtype), (n,)) for u in host])
    P = _stack_parameters(probs)
    P = None if P is None else RowOps(be).host(P)
    f, g = first.f, first.g

    def stacked_f(U: Any, P: Any, t: float) -> Any:
        return xp.reshape(f(xp.reshape(U, (B, *shape)), P, t), (B * n,))

    def stacked_g(U: Any, P: Any, t: float) -> Any:
        return xp.reshape(g(xp.reshape(U, (B, *shape)), P, t), (B * n,))

    _check_sde_batch(f, g, probs, P, be, request.dtype, shape)
    # trajectory i's path from its own seed (seed, i): the same path as its separate solve
    paths = [BrownianPath(p.tspan, p.noise_shape, seed=job.seed_of(i), backend=be)
             for i, p in zip(indices, probs)]
    repeat = n if first.noise == "scalar" else 1
    stacked = SDEProblem(stacked_f, stacked_g, U0, first.tspan, P,
                         noise="additive" if first.noise == "additive" else "diagonal",
                         interpretation=first.interpretation)
    options = {k: v for k, v in opts.items() if k not in ("seed", "brownian")}
    sol = solve(stacked, request.solver, brownian=StackedBrownianPath(paths, repeat),
                registry=job.registry, **options, **job.alg_options)
    if sol.retcode not in ("Success", "Terminated"):
        return [job.solve_problem(p, i) for i, p in zip(indices, probs)]
    m = len(sol.t)
    out = []
    u = xp.reshape(sol.u, (m, B, *shape))
    for b, prob in enumerate(probs):
        part = Solution(sol.t, u[:, b, ...], sol.retcode, sol.stats, sol.alg, prob, be,
                        shape, None, job.options)
        part.W = paths[b]
        out.append(part)
    return out


def _check_sde_batch(f: Any, g: Any, probs: list[Any], P: Any, be: Any, dtype: Any,
                     shape: tuple[int, ...]) -> None:
    """``f`` and ``g`` on the first trajectories as a batch (``U`` of shape ``(B, *shape)``,
    ``P`` stacked, ``t`` a shared scalar) equal ``f`` and ``g`` on each alone."""
    k = min(3, len(probs))
    t0 = float(probs[0].tspan[0])
    U = np.stack([np.asarray(be.to_host(p.u0) if be.is_native(p.u0) else p.u0,
                             dtype=np.float64) for p in probs[:k]])
    for name, fn in (("f", f), ("g", g)):
        try:
            batch = np.asarray(be.to_host(fn(be.asarray(U, dtype=dtype),
                                             None if P is None else P[:k, ...], t0)),
                               dtype=np.float64)
        except Exception as exc:
            raise InvalidArgument(
                f"ensemble='vectorized' calls {name} on a batch, {name}(U, P, t) with U of "
                f"shape (B, {', '.join(map(str, shape))}), P the stacked parameters and t "
                f"a number, and this {name} raised {type(exc).__name__}: {exc}. Write it "
                f"with u[..., i] / p[..., j] indexing (docs: the vectorised f contract) or "
                f"use ensemble='serial'") from exc
        for b, p in enumerate(probs[:k]):
            alone = np.asarray(be.to_host(fn(be.asarray(U[b], dtype=dtype),
                                             parameters_on_backend(p.p, be), t0)),
                               dtype=np.float64)
            if batch.shape[1:] != alone.shape or not np.allclose(
                    batch[b], alone, rtol=1e-10,
                    atol=1e-12 * (np.max(np.abs(alone)) + np.finfo(np.float64).tiny)):
                raise InvalidArgument(
                    f"ensemble='vectorized': {name} on a batch does not give trajectory "
                    f"{b}'s {name} ({name}(U, P, t)[{b}] = {batch[b] if batch.ndim else batch}"
                    f" but {name}(u0, p, t0) = {alone}): the leading axis must be the "
                    f"trajectories, for U and for P (p[..., j], not p[j]); or use "
                    f"ensemble='serial'")
