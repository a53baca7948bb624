"""Monte Carlo with an SDE ensemble: geometric Brownian motion, ten thousand trajectories.

    du = mu u dt + sigma u dW,    u(0) = 1,    t in [0, 1],    mu = 1, sigma = 0.5,

has known moments and quantiles (``u(t)`` is log-normal): ``E u(t) = exp(mu t)``, and the
``q``-quantile is ``exp((mu - sigma^2/2) t + sigma sqrt(t) z_q)`` with ``z_q`` the standard
normal one. Euler–Maruyama's own mean is also known exactly: each step multiplies the mean
by ``1 + mu dt`` (the increments have mean zero), so after ``k`` steps it is
``(1 + mu dt)^k``, which is *not* ``exp(mu k dt)``: EM's weak error (order 1) is a bias that
enough trajectories resolve.

The example

1. solves ``N = --trajectories`` (default 10,000) trajectories with
   ``ade.EnsembleProblem(prob)`` and ``ensemble="vectorized"``: all of them stepped as one
   ``(N, 1)`` array on a fixed grid (``dt = 1/32``), trajectory ``i`` driven by its own
   Brownian path drawn from the seed ``(seed, i)``; with ``EM`` (a fixed-step method:
   ``dt=`` is all it needs) and with ``SRIW1`` (weak order 2; adaptive, so it also needs
   ``adaptive=False``);
2. prints the Monte Carlo mean at ``t = 1`` against EM's discrete mean and against the exact
   mean, in standard errors (``esol.std() / sqrt(N)``), and the 5 % and 95 % quantiles
   (``esol.quantile``) against the exact log-normal ones, in the standard errors of a sample
   quantile (``sqrt(q (1 - q) / N) / density``); both methods read the same Brownian paths
   (trajectory ``i`` of either from the seed ``(seed, i)``), so their errors are correlated;
3. solves the first five trajectories again with ``ensemble="serial"``, the first twenty
   with ``ensemble="vectorized"`` in batches of 7 (``batch_size=7``: trajectory ``i`` reads
   the path of ``(seed, i)`` whichever batch holds it), and trajectory 4321 alone
   (``ade.solve(prob, seed=ade.trajectory_seed(seed, 4321))``), and checks that they are the
   vectorised ensemble's numbers bit for bit;
4. writes ``ensemble_monte_carlo.png`` next to this file (or ``--out PATH``): the mean and
   the 5–95 % band (``esol.plot``) with the exact curves and a few paths, and the histogram
   of ``u(1)`` against the log-normal density (matplotlib with the Agg backend; skipped with
   a message when matplotlib is not installed).

It exits with status 1 if the EM mean is more than 4 standard errors from EM's discrete mean,
the SRIW1 mean more than 4 from the exact one, or a bit-for-bit check fails. About 6 s on
2 cores (10 s with other jobs running; indicative): the two vectorised ensembles, 2-4 s each,
take most of it (the noise is drawn trajectory by trajectory, each from its own seed). With
the default seed it prints, at ``t = 1``: the EM mean 0.5 standard errors from EM's own mean
and 3.5 below ``exp(mu)`` (its weak error shows), its 95 % quantile 3 below the exact one;
SRIW1 within 0.75 of every exact value::

    python examples/ensemble_monte_carlo.py [--trajectories 10000] [--seed 2024] [--out PATH]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import norm

import autodiffeq as ade

MU, SIGMA = 1.0, 0.5
TSPAN = (0.0, 1.0)
DT = 1.0 / 32
SAVEAT = np.linspace(0.0, 1.0, 33)  # every step
DEFAULT_OUT = Path(__file__).resolve().with_name("ensemble_monte_carlo.png")


def drift(u: Any, p: Any, t: float) -> Any:
    """``f(u, p, t) = mu u``: elementwise, so it serves one trajectory (``u`` of shape (1,))
    and the vectorised batch (``u`` of shape (N, 1)) alike."""
    return MU * u


def diffusion(u: Any, p: Any, t: float) -> Any:
    return SIGMA * u


def exact_quantile(q: float, t: Any) -> Any:
    return np.exp((MU - SIGMA**2 / 2) * t + SIGMA * np.sqrt(t) * norm.ppf(q))


def lognormal_pdf(x: Any, t: float) -> Any:
    s = SIGMA * math.sqrt(t)
    m = (MU - SIGMA**2 / 2) * t
    return np.exp(-((np.log(x) - m) ** 2) / (2 * s * s)) / (x * s * math.sqrt(2 * math.pi))


def monte_carlo(prob: ade.SDEProblem, alg: str, n: int, seed: int) -> ade.EnsembleSolution:
    # EM steps on dt= alone; an adaptive method (SRIW1) is put on the fixed grid with
    # adaptive=False (the vectorised executor steps SDEs on one fixed grid)
    fixed = {} if alg == "EM" else {"adaptive": False}
    start = time.perf_counter()
    esol = ade.solve(ade.EnsembleProblem(prob), alg, trajectories=n, ensemble="vectorized",
                     seed=seed, dt=DT, saveat=SAVEAT, **fixed)
    print(f"  {alg:<6} {n} trajectories, vectorized: {time.perf_counter() - start:.1f} s, "
          f"esol.u.shape = {esol.u.shape}, success = {esol.success}")
    return esol


def report_moments(esol: ade.EnsembleSolution, alg: str, n: int) -> dict[str, float]:
    """The mean and quantiles at t = 1 against the exact values, in standard errors."""
    mean = float(esol.mean()[-1, 0])
    se = float(esol.std()[-1, 0]) / math.sqrt(n)
    exact = math.exp(MU * TSPAN[1])
    z = {"exact": (mean - exact) / se}
    print(f"  {alg:<6} mean u(1) = {mean:.5f} +- {se:.5f} (one standard error)")
    print(f"         exact E u(1) = exp(mu) = {exact:.5f}: {z['exact']:+.2f} standard errors")
    if alg == "EM":
        discrete = (1.0 + MU * DT) ** round(TSPAN[1] / DT)
        z["discrete"] = (mean - discrete) / se
        print(f"         EM's own mean (1 + mu dt)^32 = {discrete:.5f}: "
              f"{z['discrete']:+.2f} standard errors (bias of EM: {discrete - exact:+.5f})")
    for q in (0.05, 0.95):
        est = float(esol.quantile(q)[-1, 0])
        ex = float(exact_quantile(q, 1.0))
        se_q = math.sqrt(q * (1 - q) / n) / float(lognormal_pdf(ex, 1.0))
        print(f"         {q:.0%} quantile {est:.5f}, exact {ex:.5f}: "
              f"{(est - ex) / se_q:+.2f} standard errors")
    return z


def check_bit_for_bit(prob: ade.SDEProblem, esol: ade.EnsembleSolution, seed: int) -> bool:
    """The vectorised ensemble's trajectories are those of the serial executor, of the
    vectorised executor in other batches, and of trajectory i solved alone from
    ade.trajectory_seed(seed, i), to the last bit."""
    eprob = ade.EnsembleProblem(prob)
    serial = ade.solve(eprob, "EM", trajectories=5, ensemble="serial", seed=seed, dt=DT,
                       saveat=SAVEAT)
    same_serial = np.array_equal(np.asarray(serial.u), np.asarray(esol.u[:5]))
    m = min(20, len(esol))
    batches = ade.solve(eprob, "EM", trajectories=m, ensemble="vectorized", batch_size=7,
                        seed=seed, dt=DT, saveat=SAVEAT)
    same_batches = np.array_equal(np.asarray(batches.u), np.asarray(esol.u[:m]))
    i = min(4321, len(esol) - 1)
    alone = ade.solve(prob, "EM", seed=ade.trajectory_seed(seed, i), dt=DT, saveat=SAVEAT)
    same_alone = np.array_equal(np.asarray(alone.u), np.asarray(esol.u[i]))
    print(f"  serial executor, trajectories 0-4: identical bit for bit: {same_serial}")
    print(f"  vectorized in batches of 7, trajectories 0-{m - 1}: identical bit for bit: "
          f"{same_batches}")
    print(f"  trajectory {i} alone, seed=ade.trajectory_seed({seed}, {i}): "
          f"identical bit for bit: {same_alone} (u(1) = {float(alone.u[-1, 0]):.15f})")
    return same_serial and same_batches and same_alone


def plot(em: ade.EnsembleSolution, sri: ade.EnsembleSolution, out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("[4] matplotlib is not installed: no plot (pip install '.[plot]')")
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    t = em.t
    for i in range(12):
        ax1.plot(t, np.asarray(em.u[i, :, 0]), color="0.6", lw=0.6,
                 label="EM paths" if i == 0 else None)
    em.plot(quantiles=(0.05, 0.95), ax=ax1, color="C0")
    ax1.plot(t, np.exp(MU * t), "k--", lw=1.2, label="exact mean exp(mu t)")
    ax1.plot(t, exact_quantile(0.05, t), "k:", lw=1.2, label="exact 5 %, 95 % quantiles")
    ax1.plot(t, exact_quantile(0.95, t), "k:", lw=1.2)
    ax1.set_ylabel("u")
    ax1.set_title(f"GBM, {len(em)} trajectories (EM, dt = 1/32, vectorized)")
    ax1.legend(fontsize=8, loc="upper left")
    u1 = np.asarray(sri.u[:, -1, 0])
    ax2.hist(u1, bins=120, range=(0, 8), density=True, color="C1", alpha=0.6,
             label=f"SRIW1, {len(sri)} trajectories")
    x = np.linspace(0.01, 8, 400)
    ax2.plot(x, lognormal_pdf(x, 1.0), "k-", lw=1.2, label="exact log-normal density")
    ax2.set_xlabel("u(1)")
    ax2.set_title("distribution at t = 1")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"[4] wrote {out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trajectories", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    n, seed = args.trajectories, args.seed

    prob = ade.SDEProblem(drift, diffusion, np.array([1.0]), TSPAN)
    print(f"[1] geometric Brownian motion, mu = {MU}, sigma = {SIGMA}, seed = {seed}")
    em = monte_carlo(prob, "EM", n, seed)
    sri = monte_carlo(prob, "SRIW1", n, seed)
    print("[2] moments at t = 1")
    z_em = report_moments(em, "EM", n)
    z_sri = report_moments(sri, "SRIW1", n)
    print("[3] reproducibility")
    same = check_bit_for_bit(prob, em, seed)
    plot(em, sri, args.out)
    ok = abs(z_em["discrete"]) < 4 and abs(z_sri["exact"]) < 4 and same
    print("OK" if ok else "FAILED: a check above did not hold")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
