"""Ensemble benchmark: many Lotka–Volterra trajectories, every executor against the peers.

Run from the repository root:

    python benchmarks/ensemble.py            # full run (about 3 minutes on 2 cores)
    python benchmarks/ensemble.py --quick    # smoke run (20-30 s: 500 trajectories)
    python benchmarks/ensemble.py --full     # every trajectory checked against the reference
    python benchmarks/ensemble.py --out DIR  # where the CSV, text and PNG go (benchmarks/results/)

The peers are optional: diffrax (with jax), torchdiffeq (with torch) and dask.distributed (the
``dask`` executor); ``pip install ".[bench-ensemble]"``. A peer that does not import is
skipped with a message, and the other rows run without it.

**Problem.** Lotka–Volterra, ``u' = [a x - b x y, -c y + d x y]``, ``t in [0, 10]``,
``N = 10,000`` trajectories (``--quick``: 500), trajectory ``i`` with its own parameters
``(1.5, 1, 3, 1)`` each scaled by ``uniform(0.9, 1.1)`` and its own ``u0`` uniform in
``[0.5, 1.5]^2`` (NumPy ``default_rng(20240601)``), saved at 21 times ``0, 0.5, ..., 10``,
``rtol = atol = 1e-6``. autodiffeq gets one ``f`` written with ``...`` indexing (it serves the
single solves and the vectorised batch, ``f(U, P, T)`` with ``U`` of shape ``(B, 2)``), and
``prob_func(prob, i, repeat) = prob.remake(u0=U0[i], p=P[i])`` (a module-level callable, so
that it pickles for ``processes``)::

    esol = ade.solve(ade.EnsembleProblem(prob, prob_func=...), "Tsit5", trajectories=N,
                     ensemble=executor, saveat=ts, rtol=1e-6, atol=1e-6)

**Rows** (seconds are wall time of the whole call, ``prob_func`` and the building of the
``N`` solutions included; trajectories per second = trajectories / seconds):

- autodiffeq ``Tsit5`` with each executor: ``serial``, ``threads`` (2 workers) and
  ``processes`` (2 workers, the pool's start included) on a subset of ``M`` trajectories
  (1,000; ``--quick`` 100: every ``N/M``-th), **extrapolated** to ``N`` (they cost the same per
  trajectory whatever ``N``); ``vectorized`` on all ``N`` (one batch: all trajectories stepped
  together as one ``(N, 2)`` array, each with its own adaptive steps); ``dask`` on all ``N``
  with 2 single-threaded worker processes, ``inner="vectorized"`` and ``chunksize = N/2`` (one
  vectorised chunk per worker) on a ``LocalCluster`` started once beforehand and passed as
  ``client=`` (its start-up is reported apart, not counted), plus extra rows: the default
  chunking (four chunks per worker), ``output_func`` keeping only ``sol.u`` (the workers
  send back arrays instead of ``Solution`` objects), and ``workers=2`` without ``client=``
  (the solve starts and closes its own cluster: start-up counted; not with ``--quick``).
  Each dask solve gets a job that differs by a tag in ``prob_func`` (see ``dask_rows``: equal
  jobs in consecutive solves share a scatter key, and the release of one raced the next
  solve here). **Scaling efficiency** = ``t(vectorized, one process) / (2 t(dask, 2
  workers, chunksize N/2))``.
- SciPy ``solve_ivp`` in a Python loop, ``t_eval = ts``, on the subset, extrapolated:
  ``RK45`` (the headline) and ``DOP853`` with ``fun(t, u, a, b, c, d)`` written for one
  trajectory (``x, y = u; return np.array([...])``: the fastest plain ``f``, 1.3 us a call
  against 6.6 us for the ``...``-indexed one), and ``RK45`` with autodiffeq's ``f`` (extra row).
- diffrax ``Tsit5``, ``PIDController(rtol, atol)`` (PI coefficients off: an I controller),
  ``SaveAt(ts=ts)``, ``jax.jit(jax.vmap(solve))`` over ``(u0, p)``, float64, on all ``N``:
  each trajectory keeps its own step size inside the vmapped loop, which runs until the last
  one finishes. The first call compiles: its time less a run's is reported as compile time,
  not counted; the output is converted to NumPy inside the timing.
- torchdiffeq ``odeint(method="dopri5")`` on the batch ``(N, 2)``, float64, one thread,
  ``torch.no_grad()``: **one step size for the whole batch**, its error norm the RMS over all
  ``2 N`` components (so a single trajectory's error is not held to the tolerance).

**Timing**: each full-``N`` row is the best of 5 calls (``--quick``: 2; the extra dask rows
best of 3) after a warm-up call on a few trajectories; the subset rows one call each (several
seconds). Garbage collector off during a call. BLAS and torch on one thread; JAX as it comes
(the ``cpu/wall`` column, this process's CPU time over wall time, shows it using up to two
cores); the workers of ``processes`` and ``dask`` are not in this process's CPU time.

**Accuracy.** A reference for every trajectory of the subset (``--full``: for all ``N``):
SciPy ``DOP853`` at ``rtol = 1e-12``, ``atol = 1e-14``, ``t_eval = ts``. Each row's **max
rel err** is the largest over those trajectories it solved, saved times and components of
``|u - u_ref| / max(|u_ref|, 1e-6)``, so that the speeds are compared at comparable accuracy.
**vs separate**: every autodiffeq row's trajectories at 100 indices spread over ``0 .. N-1``
(within the subset) against a separate ``ade.solve`` of that trajectory's problem, same
options: 0 for executors that run the same code per trajectory; ``vectorized`` takes the
same steps in other arithmetic (rounding-level differences), or other steps where its
version steps onto the save times instead of interpolating them (tolerance-level ones).

**SDE Monte Carlo.** Geometric Brownian motion ``du = 1.5 u dt + 0.5 u dW`` (Itô), ``u0 = 1``,
``t in [0, 1]``, ``SRIW1`` with fixed ``dt = 1/64``, ``saveat=[1]``, ``N`` trajectories from
``seed=S`` (trajectory ``i`` draws from ``(S, i)``): ``serial`` on the first 2,000 (``--quick``
200; extrapolated), ``processes`` (2 workers) and ``vectorized`` on all ``N`` (a row that
raises ``UnsupportedCombination`` is printed with the message and skipped), each checked bit
for bit against the serial trajectories it shares; the mean of ``u(1)`` against
``E u(1) = e^1.5`` with its standard error. Reference row: one solve of ``N`` paths as the
``N`` components of one state (diagonal noise: the fast way, its own noise).

Outputs (in ``--out``): ``ensemble.txt`` (the printed report), ``ensemble.csv`` (every row)
and ``ensemble.png`` (trajectories per second, log scale) when matplotlib imports.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import gc  # noqa: E402
import importlib.metadata  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from _common import format_table, write_csv  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402

import autodiffeq as ade  # noqa: E402
from autodiffeq import UnsupportedCombination  # noqa: E402

N_FULL, N_QUICK = 10_000, 500
SUB_FULL, SUB_QUICK = 1_000, 100  # trajectories of the slow (extrapolated) rows
CHECKS = 100  # trajectories compared with a separate ade.solve
SDE_SERIAL_FULL, SDE_SERIAL_QUICK = 2_000, 200
P_NOMINAL = np.array([1.5, 1.0, 3.0, 1.0])
TSPAN = (0.0, 10.0)
TS = np.linspace(0.0, 10.0, 21)
RTOL = ATOL = 1e-6
REF_RTOL, REF_ATOL = 1e-12, 1e-14
REL_FLOOR = 1e-6
SEED = 20240601
WORKERS = 2
MU, SIGMA, SDE_T, SDE_DT, SDE_SEED = 1.5, 0.5, 1.0, 1.0 / 64, 7

CSV_HEADERS = (
    "section", "library", "method", "executor", "trajectories", "timed", "seconds_timed",
    "seconds_for_N", "traj_per_s", "x_scipy_rk45", "max_rel_err", "ref_trajectories",
    "max_rel_diff_separate", "mean_steps", "max_steps", "nf_per_traj", "cpu_per_wall",
    "extra_s", "mean_u1", "se_u1", "note",
)


# --------------------------------------------------------------------------- problem
def lv(u: Any, p: Any, t: Any) -> Any:
    """Lotka–Volterra for one trajectory or a batch (``...`` indexing)."""
    x, y = u[..., 0], u[..., 1]
    a, b, c, d = p[..., 0], p[..., 1], p[..., 2], p[..., 3]
    return np.stack([a * x - b * x * y, -c * y + d * x * y], axis=-1)


def lv_plain(t: float, u: Any, a: float, b: float, c: float, d: float) -> Any:
    """Lotka–Volterra for one trajectory, as written for ``solve_ivp``."""
    x, y = u
    return np.array([a * x - b * x * y, -c * y + d * x * y])


def lv_wrapped(t: float, u: Any, p: Any) -> Any:
    return lv(u, p, t)


class Remake:
    """``prob_func``: trajectory ``i`` gets ``u0 = U0[i]``, ``p = P[i]`` (module-level, so it
    pickles for the process pool)."""

    def __init__(self, U0: np.ndarray, P: np.ndarray, tag: int = 0) -> None:
        # tag: makes otherwise equal jobs differ (see dask_rows)
        self.U0, self.P, self.tag = U0, P, tag

    def __call__(self, prob: Any, i: int, repeat: int) -> Any:
        return prob.remake(u0=self.U0[i], p=self.P[i])


def keep_u(sol: Any, i: int) -> tuple[Any, bool]:
    """``output_func`` that keeps only the saved states (not the ``Solution``)."""
    return np.asarray(sol.u), False


def gbm_f(u: Any, p: Any, t: Any) -> Any:
    return MU * u


def gbm_g(u: Any, p: Any, t: Any) -> Any:
    return SIGMA * u


def make_data(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED)
    P = P_NOMINAL * rng.uniform(0.9, 1.1, (n, 4))
    U0 = rng.uniform(0.5, 1.5, (n, 2))
    return U0, P


# --------------------------------------------------------------------------- helpers
def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, float, Any]:
    """``(best seconds, cpu/wall of that call, result of the last call)``, gc off."""
    best, ratio, res = math.inf, None, None
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            c0, w0 = time.process_time(), time.perf_counter()
            res = fn()
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        finally:
            gc.enable()
        if wall < best:
            best, ratio = wall, cpu / wall if wall > 0 else None
    return best, ratio, res


def rel_err(u: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(u - ref) / np.maximum(np.abs(ref), REL_FLOOR)))


def reference(U0: np.ndarray, P: np.ndarray, idx: np.ndarray) -> np.ndarray:
    out = np.empty((len(idx), len(TS), 2))
    for k, i in enumerate(idx):
        r = solve_ivp(lv_plain, TSPAN, U0[i], method="DOP853", t_eval=TS, rtol=REF_RTOL,
                      atol=REF_ATOL, args=tuple(P[i]))
        if not r.success:
            raise RuntimeError(f"reference solve {i} failed: {r.message}")
        out[k] = r.y.T
    return out


class Context:
    """The data, subsets, reference and separate solves shared by the rows."""

    def __init__(self, n: int, m: int, full_reference: bool, out: Callable[[str], None]):
        self.n, self.out = n, out
        self.U0, self.P = make_data(n)
        self.sub = np.arange(0, n, n // m)[:m]  # every (n/m)-th trajectory
        self.chk = self.sub[:: max(1, len(self.sub) // CHECKS)][:CHECKS]
        self.ref_idx = np.arange(n) if full_reference else self.sub
        t0 = time.perf_counter()
        self.ref = reference(self.U0, self.P, self.ref_idx)
        self.ref_pos = {int(i): k for k, i in enumerate(self.ref_idx)}
        out(f"reference: SciPy DOP853 rtol {REF_RTOL:g} atol {REF_ATOL:g} for "
            f"{len(self.ref_idx)} trajectories ({time.perf_counter() - t0:.1f} s)")
        self.prob = ade.ODEProblem(lv, self.U0[0], TSPAN, self.P[0])
        t0 = time.perf_counter()
        self.separate = np.stack([
            np.asarray(ade.solve(self.prob.remake(u0=self.U0[i], p=self.P[i]), "Tsit5",
                                 saveat=TS, rtol=RTOL, atol=ATOL).u) for i in self.chk])
        out(f"separate ade.solve of {len(self.chk)} trajectories for the executors' check "
            f"({time.perf_counter() - t0:.1f} s)")

    def eprob(self, idx: np.ndarray | None = None, tag: int = 0,
              output_func: Any = None) -> ade.EnsembleProblem:
        U0, P = (self.U0, self.P) if idx is None else (self.U0[idx], self.P[idx])
        return ade.EnsembleProblem(self.prob, prob_func=Remake(U0, P, tag),
                                   output_func=output_func)

    def errors(self, u: np.ndarray, idx: np.ndarray) -> tuple[float | None, int]:
        """Max rel err of the trajectories ``u`` (global indices ``idx``) that have a
        reference, and how many had one."""
        pos = {int(i): k for k, i in enumerate(idx)}
        both = [i for i in pos if i in self.ref_pos]
        if not both:
            return None, 0
        a = u[[pos[i] for i in both]]
        r = self.ref[[self.ref_pos[i] for i in both]]
        return rel_err(a, r), len(both)

    def vs_separate(self, u: np.ndarray, idx: np.ndarray) -> float | None:
        pos = {int(i): k for k, i in enumerate(idx)}
        if not all(int(i) in pos for i in self.chk):
            return None
        return rel_err(u[[pos[int(i)] for i in self.chk]], self.separate)


def row(section: str, library: str, method: str, executor: str, n: int, timed_n: int,
        secs: float, **kw: Any) -> dict[str, Any]:
    r = {h: None for h in CSV_HEADERS}
    r.update(section=section, library=library, method=method, executor=executor,
             trajectories=n, timed=timed_n, seconds_timed=secs,
             seconds_for_N=secs * n / timed_n, traj_per_s=timed_n / secs, note="")
    r.update(kw)
    return r


def ade_steps(esol: Any) -> dict[str, Any]:
    steps = np.array([s.stats.naccept for s in esol])
    nf = np.array([s.stats.nf for s in esol])
    return dict(mean_steps=float(steps.mean()), max_steps=int(steps.max()),
                nf_per_traj=float(nf.mean()))


# --------------------------------------------------------------------------- autodiffeq
def ode_executor_rows(ctx: Context, quick: bool, repeat: int) -> list[dict[str, Any]]:
    rows = []
    opts = dict(saveat=TS, rtol=RTOL, atol=ATOL)
    sub = ctx.sub
    for ens, kw in (("serial", {}), ("threads", {"workers": WORKERS}),
                    ("processes", {"workers": WORKERS})):
        eprob = ctx.eprob(sub)
        if ens != "serial":  # warm-up: the pool's first tasks import / start
            ade.solve(ctx.eprob(sub[:4]), "Tsit5", trajectories=4, ensemble=ens, **kw, **opts)
        secs, cw, esol = timed(lambda e=eprob, en=ens, k=kw: ade.solve(
            e, "Tsit5", trajectories=len(sub), ensemble=en, **k, **opts))
        u = np.asarray(esol.u)
        err, nref = ctx.errors(u, sub)
        label = ens + (f" ({WORKERS} workers)" if kw else "")
        rows.append(row("ODE", "autodiffeq", "Tsit5", label, ctx.n, len(sub), secs,
                        max_rel_err=err, ref_trajectories=nref,
                        max_rel_diff_separate=ctx.vs_separate(u, sub), cpu_per_wall=cw,
                        note=f"subset of {len(sub)}, extrapolated", **ade_steps(esol)))
        ctx.out(f"  {label}: {len(sub)} trajectories in {secs:.2f} s")
    eprob = ctx.eprob()
    ade.solve(ctx.eprob(sub[:10]), "Tsit5", trajectories=10, ensemble="vectorized", **opts)
    secs, cw, esol = timed(lambda: ade.solve(eprob, "Tsit5", trajectories=ctx.n,
                                             ensemble="vectorized", **opts), repeat)
    u = np.asarray(esol.u)
    idx = np.arange(ctx.n)
    err, nref = ctx.errors(u, idx)
    rows.append(row("ODE", "autodiffeq", "Tsit5", "vectorized", ctx.n, ctx.n, secs,
                    max_rel_err=err, ref_trajectories=nref,
                    max_rel_diff_separate=ctx.vs_separate(u, idx), cpu_per_wall=cw,
                    note=f"best of {repeat}",
                    **ade_steps(esol)))
    ctx.out(f"  vectorized: {ctx.n} trajectories in {secs:.3f} s (best of {repeat})")
    return rows


def dask_rows(ctx: Context, repeat: int, own_cluster: bool) -> list[dict[str, Any]]:
    try:
        import distributed
    except Exception as exc:  # noqa: BLE001 - any import failure means: skip the peer
        ctx.out(f"dask executor skipped: dask.distributed does not import "
                f"({type(exc).__name__}: {exc})")
        return []
    for name in ("distributed", "distributed.worker", "distributed.scheduler",
                 "distributed.nanny", "distributed.core", "distributed.http.proxy"):
        logging.getLogger(name).setLevel(logging.ERROR)
    rows = []
    opts = dict(saveat=TS, rtol=RTOL, atol=ATOL)
    idx = np.arange(ctx.n)
    tags = iter(range(1, 1_000_000))

    def fresh(output_func: Any = None) -> ade.EnsembleProblem:
        # Each solve gets a job that differs from the previous one (the tag): the executor
        # scatters the job with dask's content hash as its key, and two consecutive solves
        # of an equal job share that key; the first solve's release of it then races the
        # second solve's tasks ("FutureCancelledError ... lost dependencies", seen here).
        return ctx.eprob(tag=next(tags), output_func=output_func)

    def add(secs: float, cw: float | None, esol: Any, what: str, note: str,
            extra: float | None) -> None:
        u = np.asarray(esol.u)
        err, nref = ctx.errors(u, idx)
        steps = ade_steps(esol) if not isinstance(esol[0], np.ndarray) else {}
        rows.append(row("ODE", "autodiffeq", "Tsit5", f"dask ({WORKERS} workers, {what})",
                        ctx.n, ctx.n, secs, max_rel_err=err, ref_trajectories=nref,
                        max_rel_diff_separate=ctx.vs_separate(u, idx), cpu_per_wall=cw,
                        extra_s=extra, note=note, **steps))
        ctx.out(f"  dask {what}: {secs:.3f} s")

    t0 = time.perf_counter()
    cluster = distributed.LocalCluster(n_workers=WORKERS, threads_per_worker=1,
                                       processes=True, dashboard_address=":0")
    client = distributed.Client(cluster)
    start_up = time.perf_counter() - t0
    ctx.out(f"  dask LocalCluster ({WORKERS} workers x 1 thread) started in {start_up:.2f} s")
    half = math.ceil(ctx.n / WORKERS)
    try:
        # warm-up: the workers import autodiffeq and NumPy
        ade.solve(ctx.eprob(ctx.sub[:8]), "Tsit5", trajectories=8, ensemble="dask",
                  client=client, inner="vectorized", **opts)
        cases = ((half, None, f"vectorized, chunksize {half}", repeat),
                 (None, None, "vectorized, default chunks", max(2, repeat - 2)),
                 (half, keep_u, f"vectorized, chunksize {half}, output_func keeps u",
                  max(2, repeat - 2)))
        for chunk, of, what, reps in cases:
            secs, cw, esol = timed(lambda c=chunk, o=of: ade.solve(
                fresh(o), "Tsit5", trajectories=ctx.n, ensemble="dask", client=client,
                inner="vectorized", chunksize=c, **opts), reps)
            add(secs, cw, esol, what,
                f"best of {reps}; cluster start-up {start_up:.2f} s apart", start_up)
    finally:
        client.close()
        cluster.close()
    if own_cluster:
        secs, cw, esol = timed(lambda: ade.solve(
            fresh(), "Tsit5", trajectories=ctx.n, ensemble="dask", workers=WORKERS,
            inner="vectorized", **opts))
        add(secs, cw, esol, "vectorized, own cluster",
            "workers=2, no client=: cluster start and close counted", None)
    return rows


# --------------------------------------------------------------------------- peers
def scipy_rows(ctx: Context) -> list[dict[str, Any]]:
    rows = []
    sub = ctx.sub
    cases = (("RK45", lv_plain, "plain f", lambda i: tuple(ctx.P[i])),
             ("DOP853", lv_plain, "plain f", lambda i: tuple(ctx.P[i])),
             ("RK45", lv_wrapped, "autodiffeq's f", lambda i: (ctx.P[i],)))
    for method, fun, what, args in cases:
        def loop(method: str = method, fun: Any = fun, args: Any = args) -> Any:
            us, nf, ok = [], 0, True
            for i in sub:
                r = solve_ivp(fun, TSPAN, ctx.U0[i], method=method, t_eval=TS, rtol=RTOL,
                              atol=ATOL, args=args(i))
                us.append(r.y.T)
                nf += r.nfev
                ok &= bool(r.success)
            return np.array(us), nf, ok

        secs, cw, (u, nf, ok) = timed(loop)
        err, nref = ctx.errors(u, sub)
        rows.append(row("ODE", "SciPy", method, f"solve_ivp loop, {what}", ctx.n, len(sub),
                        secs, max_rel_err=err, ref_trajectories=nref, cpu_per_wall=cw,
                        nf_per_traj=nf / len(sub),
                        note=f"subset of {len(sub)}, extrapolated" + ("" if ok else
                                                                       "; FAILURES")))
        ctx.out(f"  SciPy {method} ({what}): {len(sub)} trajectories in {secs:.2f} s")
    return rows


def diffrax_rows(ctx: Context, repeat: int) -> list[dict[str, Any]]:
    try:
        import diffrax
        import jax
        import jax.numpy as jnp
    except Exception as exc:  # noqa: BLE001 - any import failure means: skip the peer
        ctx.out(f"diffrax skipped: it does not import ({type(exc).__name__}: {exc})")
        return []
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")

    def vf(t: Any, y: Any, p: Any) -> Any:
        x, yy = y[0], y[1]
        return jnp.stack([p[0] * x - p[1] * x * yy, -p[2] * yy + p[3] * x * yy])

    term = diffrax.ODETerm(vf)
    ts = jnp.asarray(TS)

    def one(u0: Any, p: Any) -> Any:
        sol = diffrax.diffeqsolve(
            term, diffrax.Tsit5(), TSPAN[0], TSPAN[1], None, u0, args=p,
            saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=diffrax.PIDController(rtol=RTOL, atol=ATOL), max_steps=16384)
        return sol.ys, sol.stats["num_accepted_steps"], sol.result == diffrax.RESULTS.successful

    fn = jax.jit(jax.vmap(one))
    U0, P = jnp.asarray(ctx.U0), jnp.asarray(ctx.P)

    def call() -> Any:
        ys, steps, ok = fn(U0, P)
        return np.asarray(ys), np.asarray(steps), np.asarray(ok)

    first, _, _ = timed(call)
    secs, cw, (u, steps, ok) = timed(call, repeat)
    compile_s = first - secs
    err, nref = ctx.errors(u, np.arange(ctx.n))
    ctx.out(f"  diffrax: compile {compile_s:.2f} s, run {secs:.3f} s (best of {repeat})")
    return [row("ODE", "diffrax", "Tsit5", "jit(vmap), per-trajectory steps", ctx.n, ctx.n,
                secs, max_rel_err=err, ref_trajectories=nref, cpu_per_wall=cw,
                mean_steps=float(steps.mean()), max_steps=int(steps.max()), extra_s=compile_s,
                note=f"best of {repeat}; compile {compile_s:.2f} s apart; interpolates saves"
                     + ("" if ok.all() else f"; {int((~ok).sum())} FAILED"))]


def torchdiffeq_rows(ctx: Context, repeat: int) -> list[dict[str, Any]]:
    try:
        import torch
        import torchdiffeq
    except Exception as exc:  # noqa: BLE001 - any import failure means: skip the peer
        ctx.out(f"torchdiffeq skipped: it does not import ({type(exc).__name__}: {exc})")
        return []
    torch.set_num_threads(1)
    Pt = torch.tensor(ctx.P, dtype=torch.float64)
    U0t = torch.tensor(ctx.U0, dtype=torch.float64)
    ts = torch.tensor(TS, dtype=torch.float64)
    calls = [0]

    class LV(torch.nn.Module):
        def forward(self, t: Any, u: Any) -> Any:
            calls[0] += 1
            x, y = u[:, 0], u[:, 1]
            return torch.stack([Pt[:, 0] * x - Pt[:, 1] * x * y,
                                -Pt[:, 2] * y + Pt[:, 3] * x * y], dim=-1)

    model = LV()

    def call() -> Any:
        calls[0] = 0
        with torch.no_grad():
            ys = torchdiffeq.odeint(model, U0t, ts, method="dopri5", rtol=RTOL, atol=ATOL)
        return ys.numpy().transpose(1, 0, 2).copy(), calls[0]

    call()
    secs, cw, (u, nfe) = timed(call, repeat)
    err, nref = ctx.errors(u, np.arange(ctx.n))
    ctx.out(f"  torchdiffeq: {secs:.3f} s (best of {repeat}), {nfe} batch evaluations")
    return [row("ODE", "torchdiffeq", "dopri5", "batched, ONE step size for all", ctx.n,
                ctx.n, secs, max_rel_err=err, ref_trajectories=nref, cpu_per_wall=cw,
                nf_per_traj=float(nfe),
                note=f"best of {repeat}; shared steps, RMS error norm over the whole batch")]


# --------------------------------------------------------------------------- SDE
def sde_rows(n: int, n_serial: int, out: Callable[[str], None]) -> list[dict[str, Any]]:
    prob = ade.SDEProblem(gbm_f, gbm_g, np.array([1.0]), (0.0, SDE_T))
    eprob = ade.EnsembleProblem(prob)
    opts = dict(dt=SDE_DT, adaptive=False, saveat=[SDE_T], seed=SDE_SEED)
    exact = math.exp(MU * SDE_T)
    rows: list[dict[str, Any]] = []
    serial_u1 = None

    def stats(u1: np.ndarray) -> dict[str, Any]:
        return dict(mean_u1=float(u1.mean()), se_u1=float(u1.std(ddof=1) / math.sqrt(len(u1))))

    for ens, kw, count in (("serial", {}, n_serial), ("processes", {"workers": WORKERS}, n),
                           ("vectorized", {}, n)):
        try:
            if ens != "serial":
                ade.solve(eprob, "SRIW1", trajectories=4, ensemble=ens, **kw, **opts)
            secs, cw, esol = timed(lambda en=ens, k=kw, c=count: ade.solve(
                eprob, "SRIW1", trajectories=c, ensemble=en, **k, **opts))
        except UnsupportedCombination as exc:
            out(f"  SDE ensemble={ens!r} skipped: UnsupportedCombination: {exc}")
            continue
        u1 = np.asarray(esol.u)[:, -1, 0]
        note = "" if count == n else f"first {count}, extrapolated"
        if serial_u1 is None:
            serial_u1 = u1
        else:
            k = min(len(serial_u1), len(u1))
            same = np.array_equal(u1[:k], serial_u1[:k])
            note = (f"first {k} bit for bit = serial" if same
                    else f"first {k} DIFFER from serial by up to "
                         f"{np.max(np.abs(u1[:k] - serial_u1[:k])):.2e}")
        fails = sum(r not in ("Success", "Terminated") for r in esol.retcodes)
        if fails:
            note += f"; {fails} failed"
        label = ens + (f" ({WORKERS} workers)" if kw else "")
        rows.append(row("SDE", "autodiffeq", "SRIW1", label, n, count, secs, cpu_per_wall=cw,
                        note=note, **stats(u1)))
        out(f"  SDE {label}: {count} trajectories in {secs:.2f} s, mean u(1) "
            f"{u1.mean():.4f} (exact {exact:.4f})")
    big = ade.SDEProblem(gbm_f, gbm_g, np.ones(n), (0.0, SDE_T))
    secs, cw, sol = timed(lambda: ade.solve(big, "SRIW1", **opts), 3)
    u1 = np.asarray(sol.u)[-1]
    rows.append(row("SDE", "autodiffeq", "SRIW1", f"one solve, {n} paths as components", n,
                    n, secs, cpu_per_wall=cw, note="best of 3; reference way (own noise)",
                    **stats(u1)))
    return rows


# --------------------------------------------------------------------------- report
def report(rows: list[dict[str, Any]], out: Callable[[str], None]) -> dict[str, Any]:
    scipy = next((r for r in rows if r["library"] == "SciPy" and r["method"] == "RK45"
                  and "plain" in r["executor"]), None)
    for r in rows:
        if scipy is not None and r["section"] == "ODE":
            r["x_scipy_rk45"] = r["traj_per_s"] / scipy["traj_per_s"]
    ode = [r for r in rows if r["section"] == "ODE"]
    n = ode[0]["trajectories"] if ode else 0
    out(f"\nLotka–Volterra, {n} trajectories (own u0 and p), 21 saved times, rtol = atol = "
        f"{RTOL:g}; traj/s = trajectories per second (extrapolated from a subset where "
        f"'timed' < {n}); x SciPy = traj/s over SciPy RK45's (plain f); max rel err against "
        f"DOP853 at rtol {REF_RTOL:g} (floor {REL_FLOOR:g}); vs sep. = max rel difference "
        f"from separate ade.solve calls")
    out(format_table(
        ("library", "method", "executor / mode", "timed", "s (timed)", "s for N", "traj/s",
         "x SciPy", "max rel err", "ref n", "vs sep.", "steps mean", "steps max", "nf/traj",
         "cpu/wall", "note"),
        [[r["library"], r["method"], r["executor"], r["timed"], r["seconds_timed"],
          r["seconds_for_N"], r["traj_per_s"], r["x_scipy_rk45"], r["max_rel_err"],
          r["ref_trajectories"], r["max_rel_diff_separate"], r["mean_steps"], r["max_steps"],
          r["nf_per_traj"], r["cpu_per_wall"], r["note"]] for r in ode]))
    sde = [r for r in rows if r["section"] == "SDE"]
    if sde:
        exact = math.exp(MU * SDE_T)
        out(f"\nSDE Monte Carlo: GBM du = {MU} u dt + {SIGMA} u dW, u0 = 1, t in [0, {SDE_T:g}], "
            f"SRIW1, dt = 1/{round(1 / SDE_DT)}, seed {SDE_SEED}; E u(1) = e^{MU} = {exact:.4f}")
        out(format_table(
            ("executor / mode", "trajectories", "timed", "s (timed)", "s for N", "traj/s",
             "mean u(1)", "std err", "(mean - exact)/se", "cpu/wall", "note"),
            [[r["executor"], r["trajectories"], r["timed"], r["seconds_timed"],
              r["seconds_for_N"], r["traj_per_s"], r["mean_u1"], r["se_u1"],
              (r["mean_u1"] - exact) / r["se_u1"], r["cpu_per_wall"], r["note"]]
             for r in sde]))

    def find(lib: str, ex: str) -> dict[str, Any] | None:
        return next((r for r in ode if r["library"] == lib and r["executor"].startswith(ex)),
                    None)

    vec = find("autodiffeq", "vectorized")
    drx = find("diffrax", "")
    tdq = find("torchdiffeq", "")
    scipy_f = next((r for r in ode if r["library"] == "SciPy" and "autodiffeq" in
                    r["executor"]), None)
    dask = next((r for r in ode if r["executor"].startswith("dask") and "chunksize" in
                 r["executor"]), None)
    judged: dict[str, Any] = {}
    out("\nJudged (one run; trajectories per second, per-trajectory steps)"
        + ("" if n == N_FULL else f" [N = {n}: the targets are for {N_FULL:,}]") + ":")
    if vec and scipy:
        judged["x_scipy"] = vec["traj_per_s"] / scipy["traj_per_s"]
        out(f"  vectorized / SciPy RK45 loop (plain f): {judged['x_scipy']:.1f}x "
            f"(target >= 100x: {'met' if judged['x_scipy'] >= 100 else 'NOT met'})")
    if vec and scipy_f:
        out(f"  vectorized / SciPy RK45 loop with autodiffeq's f: "
            f"{vec['traj_per_s'] / scipy_f['traj_per_s']:.1f}x")
    if vec and drx:
        judged["x_diffrax"] = vec["traj_per_s"] / drx["traj_per_s"]
        out(f"  vectorized / diffrax jit(vmap): {judged['x_diffrax']:.2f}x "
            f"(target >= 3x: {'met' if judged['x_diffrax'] >= 3 else 'NOT met'})")
    if vec and tdq:
        out(f"  vectorized / torchdiffeq batched (shared steps): "
            f"{vec['traj_per_s'] / tdq['traj_per_s']:.2f}x")
    if vec and dask:
        judged["efficiency"] = vec["seconds_timed"] / (WORKERS * dask["seconds_timed"])
        out(f"  dask scaling efficiency t(vectorized) / ({WORKERS} t(dask)): "
            f"{judged['efficiency']:.2f} (dask {dask['seconds_timed']:.3f} s, vectorized "
            f"{vec['seconds_timed']:.3f} s; cluster start-up {dask['extra_s']:.2f} s apart)")
    return judged


def plot(rows: list[dict[str, Any]], out_dir: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:  # noqa: BLE001 - plots are optional
        return None
    colors = {"autodiffeq": "tab:blue", "SciPy": "tab:orange", "diffrax": "tab:green",
              "torchdiffeq": "tab:red"}
    ode = [r for r in rows if r["section"] == "ODE"]
    sde = [r for r in rows if r["section"] == "SDE"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 6), dpi=110,
                             gridspec_kw={"width_ratios": [max(len(ode), 1), max(len(sde), 1)]})
    for ax, group, title in ((axes[0], ode, "Lotka–Volterra ODE, Tsit5 / peers"),
                             (axes[1], sde, "GBM SDE Monte Carlo, SRIW1")):
        labels = [f"{r['library']} {r['method']}\n{r['executor']}" for r in group]
        vals = [r["traj_per_s"] for r in group]
        bars = ax.bar(range(len(group)), vals,
                      color=[colors.get(r["library"], "grey") for r in group],
                      hatch=None)
        for b, r in zip(bars, group):
            if r["timed"] < r["trajectories"]:
                b.set_hatch("//")
        ax.set_yscale("log")
        ax.set_xticks(range(len(group)))
        ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("trajectories per second")
        ax.set_title(title, fontsize=10)
        ax.grid(True, axis="y", which="both", alpha=0.3)
    fig.suptitle("Ensembles: trajectories per second (hatched: timed on a subset, "
                 "extrapolated)", fontsize=10)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "ensemble.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def provenance() -> str:
    """The commit of the working tree, and whether core/ or plugins/ differ from it."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                              capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "core", "plugins"], cwd=root,
                               text=True, capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "autodiffeq: not a git checkout"
    return f"autodiffeq at {head}" + (" + uncommitted changes in core/plugins" if dirty else "")


def versions() -> str:
    parts = [f"python {platform.python_version()}"]
    for dist in ("numpy", "scipy", "jax", "diffrax", "torch", "torchdiffeq", "distributed"):
        try:
            parts.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{dist} not installed")
    return ", ".join(parts) + f"; {os.cpu_count()} CPUs"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke run ({N_QUICK} trajectories, subsets of {SUB_QUICK}, 2 repeats)")
    ap.add_argument("--full", action="store_true",
                    help="compute the reference for every trajectory (not a subset): adds "
                         "about 3 minutes at 10,000 trajectories")
    ap.add_argument("--trajectories", type=int, default=None,
                    help=f"N (default {N_FULL}, --quick {N_QUICK})")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--no-sde", action="store_true", help="leave out the SDE rows")
    ap.add_argument("--no-peers", action="store_true",
                    help="leave out diffrax, torchdiffeq and dask")
    args = ap.parse_args(argv)
    n = args.trajectories or (N_QUICK if args.quick else N_FULL)
    m = min(n, SUB_QUICK if args.quick else SUB_FULL)
    repeat = 2 if args.quick else 5
    lines: list[str] = []

    def out(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    start, cpu_start = time.perf_counter(), time.process_time()
    out(f"{versions()}; {provenance()}; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    ctx = Context(n, m, args.full, out)
    rows: list[dict[str, Any]] = []
    out("autodiffeq executors:")
    rows += ode_executor_rows(ctx, args.quick, repeat)
    if not args.no_sde:  # before the peers: processes fork before JAX / torch start threads
        out("SDE Monte Carlo:")
        rows += sde_rows(n, min(n, SDE_SERIAL_QUICK if args.quick else SDE_SERIAL_FULL), out)
    if not args.no_peers:
        out("dask:")
        rows += dask_rows(ctx, repeat, own_cluster=not args.quick)
    out("peers:")
    rows += scipy_rows(ctx)
    if not args.no_peers:
        rows += diffrax_rows(ctx, repeat)
        rows += torchdiffeq_rows(ctx, repeat)
    # table order: autodiffeq, SciPy, diffrax, torchdiffeq; SDE last
    order = {"autodiffeq": 0, "SciPy": 1, "diffrax": 2, "torchdiffeq": 3}
    rows.sort(key=lambda r: (r["section"] != "ODE", order.get(r["library"], 9)))
    report(rows, out)
    wall = time.perf_counter() - start
    out(f"\ntotal {wall:.0f} s (process CPU time {time.process_time() - cpu_start:.0f} s; "
        f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    write_csv(args.out / "ensemble.csv", CSV_HEADERS,
              [[r[h] for h in CSV_HEADERS] for r in rows])
    (args.out / "ensemble.txt").write_text("\n".join(lines) + "\n")
    png = plot(rows, args.out)
    print(f"wrote {args.out / 'ensemble.csv'}, {args.out / 'ensemble.txt'}"
          + (f", {png}" if png else ""))


if __name__ == "__main__":
    main()
