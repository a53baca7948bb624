"""RQ5 — neural ODE, neural SDE and neural DDE layers trained on the same data, then
extrapolated beyond the training window.

Data: the pendulum ``x' = v, v' = -4 sin x`` from ``u(0) = (1, 0)`` (a tight Vern7 solve;
period 3.3), observed at ``t = 0, 0.2, ..., 3`` (16 times, nine tenths of a period); the
models are then run on ``[0, 6]`` and compared with the true trajectory there. Three layers of
``autodiffeq.nn`` (``docs/layers.md``), each with a ``2 -> 16 -> 2`` tanh network
(``nn.MLP``) at its heart:

* neural ODE: ``nn.NeuralODE(MLP([2, 16, 2]), (0, 3), "Tsit5", saveat=t, rtol=1e-6)``
  (82 parameters), ``DiscreteAdjoint``;
* neural SDE: ``nn.NeuralSDE(MLP([2, 16, 2]), nn.Dense(2, 2, "softplus"), (0, 3), "EM",
  dt=0.05)`` (88 parameters; Itô, diagonal noise), 8 paths as one ``(8, 2)`` state, fitted
  on the mean over the paths, a fresh seeded Brownian path at every iteration (stochastic
  gradients), ``DiscreteAdjoint``;
* neural DDE: ``nn.NeuralDDE(MLP([4, 16, 2]), (0, 3), lags=[0.5], alg="RK4", dt=0.1,
  adaptive=False)`` (the network sees ``[u(t), u(t - 0.5)]``; history: ``u(0)`` held
  constant; 114 parameters), ``DiscreteAdjoint``. Fixed RK4 steps because a DDE gradient
  traces every step with autograd (about 3.5 ms a step here, against about 0.25 ms for the
  neural ODE's): adaptive Tsit5 at ``rtol = 1e-4`` costs about 2.3x as much per iteration.

Loss: the mean squared error over the 16 observed states (for the SDE: of the mean over its
paths). Training: autograd's Adam (``autograd.misc.optimizers.adam``), ``--iters``
iterations each (ODE 500, SDE 300, DDE 200; step size 0.02, 0.02, 0.03), from seed 0. Prints
each layer's time, its final training loss (for the SDE on 256 paths with a fixed held-out
seed) and the root-mean-square error against the truth on the training window ``[0, 3]`` and
on the extrapolation window ``(3, 6]`` (SDE: of the mean of 256 paths). Writes
``neural_ode_sde_dde.png`` next to this file (``--out PATH``): the three training-loss curves
side by side, and the three models against the truth on ``[0, 6]`` (matplotlib with the Agg
backend; skipped with a message when it is not installed). Exits with status 1 unless every
training loss fell at least 20-fold and every model's error on ``(3, 6]`` is below half the
root-mean-square of the truth there (the model keeps oscillating in phase, roughly). About
45 s, half of it the DDE::

    python examples/paper/neural_ode_sde_dde.py [--iters 500,300,200] [--out PATH]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import autograd.numpy as anp
import numpy as np
from autograd import value_and_grad
from autograd.misc.optimizers import adam

import autodiffeq as ade
from autodiffeq import nn

OMEGA2 = 4.0  # x'' = -OMEGA2 sin x
U0 = np.array([1.0, 0.0])
T_TRAIN = np.linspace(0.0, 3.0, 16)
T_ALL = np.linspace(0.0, 6.0, 31)  # the training times, then (3, 6]
HIDDEN = 16
SDE_PATHS, SDE_EVAL_PATHS, SDE_EVAL_SEED, SDE_DT = 8, 256, 10**6, 0.05
LAG = 0.5
STEP_SIZES = {"ODE": 0.02, "SDE": 0.02, "DDE": 0.03}
LOSS_DROP, EXTRAP_TOL = 20.0, 0.5  # loss fell 20-fold; RMSE on (3, 6] < 0.5 RMS(truth)
FAILED_LOSS = 1e3  # loss of a solve that failed: large, zero gradient
DEFAULT_OUT = Path(__file__).resolve().with_name("neural_ode_sde_dde.png")


def pendulum(u: np.ndarray, p: Any, t: float) -> np.ndarray:
    return np.array([u[1], -OMEGA2 * np.sin(u[0])])


def truth(t: np.ndarray) -> np.ndarray:
    prob = ade.ODEProblem(pendulum, U0, (0.0, float(t[-1])))
    return np.asarray(ade.solve(prob, "Vern7", saveat=t, rtol=1e-12, atol=1e-12).u)


def layers(t1: float, saveat: np.ndarray) -> dict[str, Any]:
    """The three layers on ``[0, t1]`` (the same models, so the same parameters, on any
    ``t1``)."""
    return {
        "ODE": nn.NeuralODE(nn.MLP([2, HIDDEN, 2]), (0.0, t1), "Tsit5", saveat=saveat,
                            rtol=1e-6, atol=1e-8, sensealg="DiscreteAdjoint"),
        "SDE": nn.NeuralSDE(nn.MLP([2, HIDDEN, 2]), nn.Dense(2, 2, "softplus"), (0.0, t1),
                            "EM", saveat=saveat, dt=SDE_DT, adaptive=False,
                            sensealg="DiscreteAdjoint"),
        "DDE": nn.NeuralDDE(nn.MLP([2 * 2, HIDDEN, 2]), (0.0, t1), lags=[LAG], alg="RK4",
                            saveat=saveat, dt=0.1, adaptive=False, sensealg="DiscreteAdjoint"),
    }


def predict(name: str, layer: Any, p: Any, seed: int, paths: int) -> Any:
    """The layer's saved states ``(len(t), 2)``; for the SDE the mean over ``paths`` paths."""
    if name == "SDE":
        return anp.mean(layer(np.tile(U0, (paths, 1)), p, seed=seed), axis=1)
    return layer(U0, p)


def make_loss(name: str, layer: Any, data: np.ndarray) -> Any:
    def loss(p: Any, it: int = 0) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ade.SolverWarning)
            u = predict(name, layer, p, seed=it, paths=SDE_PATHS)
        if getattr(layer.last_solution, "retcode", "Success") != "Success":
            return FAILED_LOSS + 0.0 * anp.sum(p)
        return anp.mean((u - data) ** 2)

    return loss


def train(name: str, layer: Any, data: np.ndarray, iters: int) -> tuple[np.ndarray, list[float],
                                                                          float]:
    loss = make_loss(name, layer, data)
    value_grad = value_and_grad(loss)
    history: list[float] = []

    def gradient(p: np.ndarray, it: int) -> np.ndarray:
        value, g = value_grad(p, it)
        history.append(float(value))
        return g

    t0 = time.perf_counter()
    p = adam(gradient, layer.init_params(seed=0), step_size=STEP_SIZES[name], num_iters=iters)
    return p, history, time.perf_counter() - t0


def evaluate(name: str, layer: Any, p: np.ndarray) -> np.ndarray:
    return np.asarray(predict(name, layer, p, seed=SDE_EVAL_SEED, paths=SDE_EVAL_PATHS))


def plot(histories: dict[str, list[float]], preds: dict[str, np.ndarray], u_all: np.ndarray,
         out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install '.[examples]')")
        return
    fig = plt.figure(figsize=(14, 7.5))
    grid = fig.add_gridspec(2, 3, height_ratios=[1, 1.25])
    for k, (name, hist) in enumerate(histories.items()):
        ax = fig.add_subplot(grid[0, k])
        ax.semilogy(hist, color=f"C{k}", lw=0.8)
        ax.set_xlabel("Adam iteration")
        note = " (8 paths, a new seed each iteration)" if name == "SDE" else ""
        ax.set_title(f"neural {name}: training loss{note}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    t_dense = np.linspace(0.0, 6.0, 121)
    for j, label in enumerate(("x", "v")):
        ax = fig.add_subplot(grid[1, 0:2] if j == 0 else grid[1, 2])
        ax.axvspan(0.0, 3.0, color="0.92", zorder=0)
        ax.plot(t_dense, truth(t_dense)[:, j], "k-", lw=1.2, label="truth")
        ax.plot(T_TRAIN, u_all[: len(T_TRAIN), j], "ko", ms=3.5, label="training data")
        for k, (name, u) in enumerate(preds.items()):
            ax.plot(T_ALL, u[:, j], "--", color=f"C{k}", marker=".", ms=4,
                    label=f"neural {name}" + (" (mean of 256 paths)" if name == "SDE" else ""))
        ax.set_xlabel("t (shaded: training window)")
        ax.set_ylabel(label)
        ax.set_title(f"{label}(t): fitted on [0, 3], extrapolated to 6", fontsize=10)
        if j == 0:
            ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", default="500,300,200", help="Adam iterations: ODE,SDE,DDE")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG path")
    args = ap.parse_args(argv)
    iters = dict(zip(("ODE", "SDE", "DDE"), (int(i) for i in args.iters.split(","))))
    start = time.perf_counter()
    u_all = truth(T_ALL)
    data = u_all[: len(T_TRAIN)]
    train_layers = layers(3.0, T_TRAIN)
    long_layers = layers(6.0, T_ALL)
    print(f"pendulum x' = v, v' = -{OMEGA2:g} sin x, u(0) = {U0.tolist()}; "
          f"{len(T_TRAIN)} observations on [0, 3]; extrapolation to 6")
    histories, preds, params, rows, failures = {}, {}, {}, [], []
    for name, layer in train_layers.items():
        p, history, elapsed = train(name, layer, data, iters[name])
        histories[name] = history
        params[name] = p
        initial = float(np.mean((evaluate(name, layer, layer.init_params(seed=0)) - data) ** 2))
        final = float(np.mean((evaluate(name, layer, p) - data) ** 2))
        steps = layer.last_solution.stats.naccept
        u = evaluate(name, long_layers[name], p)
        preds[name] = u
        inside = T_ALL <= 3.0
        rmse_in = float(np.sqrt(np.mean((u[inside] - u_all[inside]) ** 2)))
        rmse_out = float(np.sqrt(np.mean((u[~inside] - u_all[~inside]) ** 2)))
        rel_out = rmse_out / float(np.sqrt(np.mean(u_all[~inside] ** 2)))
        rows.append((name, layer.n_params, iters[name], elapsed, steps, initial, final, rmse_in,
                     rmse_out, rel_out))
        print(f"  neural {name}: {layer.n_params} parameters, {iters[name]} Adam iterations in "
              f"{elapsed:.1f} s ({1e3 * elapsed / iters[name]:.0f} ms each; {steps} steps per "
              f"solve at the end), loss {initial:.3g} "
              f"-> {final:.3g}; RMSE on [0, 3] {rmse_in:.3g}, on (3, 6] {rmse_out:.3g} "
              f"({100 * rel_out:.0f} % of the truth's RMS there)", flush=True)
        if not final * LOSS_DROP <= initial:
            failures.append(f"neural {name}: loss fell only from {initial:.3g} to {final:.3g}")
        if not rel_out <= EXTRAP_TOL:
            failures.append(f"neural {name}: extrapolation RMSE {rmse_out:.3g} is "
                            f"{100 * rel_out:.0f} % of the truth's RMS "
                            f"(> {100 * EXTRAP_TOL:.0f} %)")
    print()
    print("| layer | parameters | Adam iterations | training time (s) | ms per iteration | "
          "steps per solve | "
          "initial loss | final training loss | RMSE on [0, 3] | RMSE on (3, 6] | "
          "RMSE on (3, 6] / RMS of truth |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, n, it, elapsed, steps, initial, final, rmse_in, rmse_out, rel_out in rows:
        print(f"| neural {name} | {n} | {it} | {elapsed:.1f} | {1e3 * elapsed / it:.0f} | "
              f"{steps} | {initial:.3g} | {final:.2e} | {rmse_in:.3f} | {rmse_out:.3f} | "
              f"{100 * rel_out:.0f} % |")
    print("(SDE: losses and errors of the mean of 256 paths on a held-out seed; training "
          "itself saw 8 paths per iteration)")
    sde = train_layers["SDE"]
    sigma0, sigma = (np.asarray(sde.diffusion(U0, sde.chain.split(q)[1]))
                     for q in (sde.init_params(seed=0), params["SDE"]))
    print(f"neural SDE: diffusion at u(0) {np.array2string(sigma0, precision=3)} at the start, "
          f"{np.array2string(sigma, precision=3)} after training")
    plot(histories, preds, u_all, args.out)
    print(f"total {time.perf_counter() - start:.1f} s")
    for line in failures:
        print(f"FAILED: {line}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
