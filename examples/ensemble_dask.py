"""An ODE parameter sweep on a Dask cluster: 2,400 Lotka–Volterra systems.

    x' = a x - b x y,    y' = -c y + d x y,    x(0) = y(0) = 1,    t in [0, 30],

on a 60 x 40 grid of the prey's growth rate ``a`` in ``[0.5, 2.5]`` and the predators' death
rate ``c`` in ``[1, 4]`` (``b = d = 1``). Each trajectory keeps two numbers
(``output_func``, computed where the trajectory was solved, so only they travel back): the
largest prey population over the saved times, and the largest relative drift of the
conserved quantity ``V = d x - c log x + b y - a log y``, a check of each trajectory's
accuracy (Tsit5 at ``rtol = atol = 1e-10``, saved every 0.05).

The example

1. solves the sweep in this process with ``ensemble="vectorized"``: all 2,400 trajectories
   stepped together as one ``(2400, 2)`` array, each with its own adaptive steps;
2. starts a ``distributed.LocalCluster`` of 2 single-threaded worker processes, prints
   ``client.dashboard_link`` (the dashboard itself needs ``bokeh``) and solves the sweep on
   it with ``ensemble="dask", client=client, inner="vectorized"``, ``batch_size=1200`` and
   ``chunksize=600``: two batches of two tasks, each task a vectorised solve of 600
   trajectories on a worker, the results gathered in trajectory order; then, on the same
   client, a Monte Carlo of 1,000 geometric Brownian motions (``EM``, ``dt = 1/32``,
   ``seed=7``) in four vectorised chunks of 250;
3. compares: with the same batches in this process (``ensemble="vectorized",
   batch_size=600``) the sweep's numbers are the Dask ones bit for bit (a batch gives the
   same bits wherever it is solved); against the single batch of step 1 they agree to
   rounding (1e-15 to 1e-12 relative) but not bit for bit: each trajectory takes its own
   steps whatever its batch, but the stage sums are BLAS products over the batch's whole
   array, whose rounding depends on its size. The SDE trajectories are those of one
   in-process vectorised batch (and so of the serial executor) bit for bit: trajectory ``i``
   reads the Brownian path of ``(seed, i)`` in whatever chunk it lands, and an SDE batch's
   arithmetic is elementwise;
4. solves it once more with ``ensemble="dask", workers=2`` and no client: the solve starts
   a ``LocalCluster`` of its own and closes it afterwards (its start-up is in that time);
5. writes ``ensemble_dask.png`` next to this file (or ``--out PATH``): the largest prey
   population over the ``(a, c)`` grid and the conservation drift (matplotlib, Agg backend;
   skipped with a message when matplotlib is not installed).

Needs ``dask.distributed``: ``pip install "autodiffeq[dask]"`` (the script says so and exits
with status 1 without it). It exits with status 1 if the Dask results differ from the
in-process ones or a trajectory of the sweep drifts by more than ``1e-6`` (the saved states
are the method's dense output between steps: of the largest drift, 3.4e-8, the steps
themselves account for 1.3e-8, the interpolation for the rest). About 17 s on 2 cores
(30 s with other jobs running; all times indicative), of which the cluster start-ups take a
few seconds: on two cores the cluster is no faster than the in-process vectorised solve
(2.4-4.5 s in process, 3.4-7.9 s on the cluster in our runs: four chunks of 600 each step
until their slowest trajectory finishes, and each pays the per-step Python); the cluster
pays off with more cores or machines (``client=`` for a cluster started elsewhere)::

    python examples/ensemble_dask.py [--workers 2] [--out PATH]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import autodiffeq as ade

A_GRID = np.linspace(0.5, 2.5, 60)
C_GRID = np.linspace(1.0, 4.0, 40)
_A, _C = np.meshgrid(A_GRID, C_GRID, indexing="ij")
#: trajectory i's parameters (a, b, c, d): row i of the flattened grid (a major)
PARAMS = np.stack([_A.ravel(), np.ones(_A.size), _C.ravel(), np.ones(_A.size)], axis=1)
N = len(PARAMS)
TSPAN = (0.0, 30.0)
SAVEAT = np.linspace(0.0, 30.0, 601)
TOL = 1e-10
SDE_N = 1000
DEFAULT_OUT = Path(__file__).resolve().with_name("ensemble_dask.png")


def lotka_volterra(u: Any, p: Any, t: Any) -> Any:
    """``f(u, p, t)`` with ``...`` indexing: ``u`` of shape (2,) and ``p`` of shape (4,) for
    one trajectory, ``(B, 2)`` and ``(B, 4)`` for a vectorised batch."""
    x, y = u[..., 0], u[..., 1]
    a, b, c, d = p[..., 0], p[..., 1], p[..., 2], p[..., 3]
    return np.stack([a * x - b * x * y, -c * y + d * x * y], axis=-1)


def prob_func(prob: ade.ODEProblem, i: int, repeat: int) -> ade.ODEProblem:
    return prob.remake(p=PARAMS[i])


def output_func(sol: Any, i: int) -> tuple[np.ndarray, bool]:
    """Keep (max prey, max relative drift of the conserved V) of trajectory i."""
    a, b, c, d = sol.prob.p
    x, y = np.asarray(sol.u[:, 0]), np.asarray(sol.u[:, 1])
    v = d * x - c * np.log(x) + b * y - a * np.log(y)
    return np.array([x.max(), np.max(np.abs(v - v[0])) / abs(v[0])]), False


def sweep(**executor: Any) -> ade.EnsembleSolution:
    prob = ade.ODEProblem(lotka_volterra, np.array([1.0, 1.0]), TSPAN, PARAMS[0])
    eprob = ade.EnsembleProblem(prob, prob_func=prob_func, output_func=output_func)
    return ade.solve(eprob, "Tsit5", trajectories=N, saveat=SAVEAT, rtol=TOL, atol=TOL,
                     **executor)


def gbm_drift(u: Any, p: Any, t: float) -> Any:
    """Geometric Brownian motion ``du = u dt + 0.5 u dW``, elementwise (takes a batch)."""
    return 1.0 * u


def gbm_noise(u: Any, p: Any, t: float) -> Any:
    return 0.5 * u


def monte_carlo(**executor: Any) -> ade.EnsembleSolution:
    """1,000 GBM trajectories, trajectory i from the seed (7, i); EM is a fixed-step method,
    so dt= is all the vectorised executor needs."""
    prob = ade.SDEProblem(gbm_drift, gbm_noise, np.array([1.0]), (0.0, 1.0))
    return ade.solve(ade.EnsembleProblem(prob), "EM", trajectories=SDE_N, seed=7,
                     dt=1.0 / 32, saveat=np.linspace(0.0, 1.0, 33), **executor)


def timed(label: str, run: Any = None, **executor: Any) -> ade.EnsembleSolution:
    start = time.perf_counter()
    esol = (run or sweep)(**executor)
    print(f"  {label:<58} {time.perf_counter() - start:6.2f} s  "
          f"success={esol.success}  u.shape={esol.u.shape}")
    return esol


def plot(u: np.ndarray, out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("[5] matplotlib is not installed: no plot (pip install '.[plot]')")
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    extent = (C_GRID[0], C_GRID[-1], A_GRID[0], A_GRID[-1])
    shape = (len(A_GRID), len(C_GRID))
    im = ax1.imshow(u[:, 0].reshape(shape), origin="lower", aspect="auto", extent=extent,
                    cmap="viridis", norm=matplotlib.colors.LogNorm())
    fig.colorbar(im, ax=ax1, label="max prey x(t), t in [0, 30]")
    ax1.set_xlabel("predator death rate c")
    ax1.set_ylabel("prey growth rate a")
    ax1.set_title(f"Lotka–Volterra sweep, {N} trajectories (Dask)")
    im = ax2.imshow(np.log10(u[:, 1].reshape(shape)), origin="lower", aspect="auto",
                    extent=extent, cmap="magma")
    fig.colorbar(im, ax=ax2, label="log10 max |V(t) - V(0)| / |V(0)|")
    ax2.set_xlabel("predator death rate c")
    ax2.set_title(f"drift of the conserved quantity (Tsit5, rtol {TOL:g})")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"[5] wrote {out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        sys.exit('this example needs dask.distributed: pip install "autodiffeq[dask]"')

    print(f"[1] in this process: {N} trajectories")
    local = timed("ensemble='vectorized' (one batch)", ensemble="vectorized")

    print(f"[2] a LocalCluster of {args.workers} worker processes")
    half, quarter = N // 2, N // 4
    start = time.perf_counter()
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        print(f"  cluster started in {time.perf_counter() - start:.2f} s; dashboard: "
              f"{client.dashboard_link}")
        on_dask = timed("ensemble='dask', client=client, inner='vectorized' (4 tasks)",
                        ensemble="dask", client=client, inner="vectorized",
                        batch_size=half, chunksize=quarter)
        sde_dask = timed(f"SDE: {SDE_N} GBM, EM, dask, 4 vectorised chunks", monte_carlo,
                         ensemble="dask", client=client, inner="vectorized",
                         chunksize=SDE_N // 4)

    print("[3] the same trajectories solved elsewhere")
    same_batches = timed(f"ensemble='vectorized', batch_size={quarter}",
                         ensemble="vectorized", batch_size=quarter)
    same = np.array_equal(on_dask.u, same_batches.u)
    print(f"  Dask = in-process batches of {quarter}, bit for bit: {same}")
    rel = float(np.max(np.abs(on_dask.u[:, 0] - local.u[:, 0]) / np.abs(local.u[:, 0])))
    print(f"  Dask against the single batch: largest relative difference of the max prey "
          f"{rel:.1e} (rounding)")
    sde_local = timed(f"SDE: {SDE_N} GBM, EM, ensemble='vectorized' (one batch)", monte_carlo,
                      ensemble="vectorized")
    same_sde = np.array_equal(sde_dask.u, sde_local.u)
    mean = float(sde_dask.mean()[-1, 0])
    se = float(sde_dask.std()[-1, 0]) / np.sqrt(SDE_N)
    print(f"  SDE: Dask chunks of {SDE_N // 4} = one in-process batch, bit for bit: {same_sde} "
          f"(mean u(1) = {mean:.3f} +- {se:.3f}; EM's own mean (1 + dt)^32 = "
          f"{(1 + 1 / 32) ** 32:.3f})")

    print("[4] without client=: the solve starts and closes a LocalCluster of its own")
    own = timed(f"ensemble='dask', workers={args.workers}, inner='vectorized'",
                ensemble="dask", workers=args.workers, inner="vectorized",
                batch_size=half, chunksize=quarter)
    same_own = np.array_equal(own.u, same_batches.u)
    print(f"  = in-process batches of {quarter}, bit for bit: {same_own}")

    drift = float(np.max(local.u[:, 1]))
    worst = int(np.argmax(local.u[:, 1]))
    print(f"  largest drift of V over the sweep: {drift:.1e} (a = {PARAMS[worst, 0]:.3f}, "
          f"c = {PARAMS[worst, 2]:.3f}); largest prey population "
          f"{float(np.max(local.u[:, 0])):.2f}")
    plot(np.asarray(on_dask.u), args.out)
    ok = (same and same_own and same_sde and rel < 1e-9 and drift < 1e-6 and local.success
          and sde_dask.success)
    print("OK" if ok else "FAILED: a check above did not hold")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
