"""A neural SDE trained on paths of a stochastic process: drift and diffusion are networks.

Data: paths of the mean-reverting process with state-dependent noise (Itô)

    dX = 2 (1 - X) dt + (0.1 + 0.2 X^2) dW,        t in [0, 2],

started at ``X(0) = -0.5`` and at ``X(0) = 2`` (2000 paths each, seed 0; SOSRI with fixed
steps ``dt = 0.01``), summarised by the mean and the standard deviation over the paths of each
start at ``t = 0.1, 0.2, ..., 2``. Model:

    dX = f_theta(X) dt + g_theta(X) dW,    f_theta = MLP(1 -> 16 -> 1),
                                           g_theta = softplus(MLP(1 -> 16 -> 1)),

two tanh networks (:class:`autodiffeq.nn.MLP`, 49 parameters each), their parameters one flat
array ``p`` (``p[:49]`` the drift's, ``p[49:]`` the diffusion's); the softplus keeps the
diffusion positive. ``MLP`` works inside SDE solves and their gradients: its forward pass is
written with ``autograd.numpy``, so the pathwise gradient methods, which trace ``f`` and ``g``
with autograd step by step, trace it; and it takes a batch ``(B, 1)`` of states, so ``B``
paths are one state of shape ``(B, 1)`` with diagonal noise. The network acts on each path's
own state, so ``g_i`` depends on ``u_i`` only, as the order-1.5 SRI methods assume of diagonal
noise.

Loss (moment matching: a model path is not meant to follow a data path, only their laws should
agree):

    loss(p) = sum over starts and t_i of (mean_model - mean_data)^2 + (std_model - std_data)^2

over 64 model paths per start, solved with SRIW1 (fixed ``dt = 0.1``) on a fresh seeded
Brownian path at every iteration (``ade.BrownianPath(..., seed=iteration)``: stochastic
gradients, as in training on mini-batches), differentiated with ``DiscreteAdjoint``
(``--sensealg``). Training: autograd's Adam (``--iters`` iterations, default 300). The final
loss is measured on 1000 held-out paths per start (seed 10^6), next to the loss of the true SDE
on the same paths (the Monte Carlo floor). Writes ``neural_sde.png`` (data and model mean +-
std and sample paths, the loss history, the learned drift and diffusion against the true ones)
next to this file, or ``--out PATH`` (matplotlib with the Agg backend; skipped with a message
when it is not installed). Exits with status 1 unless the held-out loss fell at least
100-fold. About 20 s of CPU time::

    python examples/neural_sde.py [--iters 300] [--sensealg ReverseMode] [--out PATH]
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
from autograd import grad
from autograd.misc.optimizers import adam

import autodiffeq as ade
from autodiffeq.nn import MLP

X0 = np.array([-0.5, 2.0])  # the two starts
TSPAN = (0.0, 2.0)
SAVEAT = np.linspace(0.0, 2.0, 21)
DATA_PATHS, DATA_SEED, DATA_DT = 2000, 0, 0.01
TRAIN_PATHS, TRAIN_DT = 64, 0.1
TEST_PATHS, TEST_SEED = 1000, 10**6
ALG = "SRIW1"
HIDDEN = 16
#: loss of a solve that failed (the optimiser stepped into a blow-up): large, zero gradient
FAILED_LOSS = 1e4
DEFAULT_OUT = Path(__file__).resolve().with_name("neural_sde.png")


def true_drift(u: Any, p: Any, t: float) -> Any:
    return 2.0 * (1.0 - u)


def true_diffusion(u: Any, p: Any, t: float) -> Any:
    return 0.1 + 0.2 * u**2


def starts(paths: int) -> np.ndarray:
    """``paths`` copies of each start, as one state of shape ``(2 * paths, 1)``."""
    return np.repeat(X0, paths)[:, None]


def moments(u: Any) -> tuple[Any, Any]:
    """Mean and standard deviation over the paths of each start at ``t > 0``:
    ``u`` of shape ``(len(SAVEAT), 2 * paths, 1)`` -> two arrays ``(len(SAVEAT) - 1, 2)``."""
    v = anp.reshape(u[1:], (len(SAVEAT) - 1, len(X0), -1))
    return anp.mean(v, axis=2), anp.std(v, axis=2)  # t = 0 left out: std 0 there


def make_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    prob = ade.SDEProblem(true_drift, true_diffusion, starts(DATA_PATHS), TSPAN)
    sol = ade.solve(prob, "SOSRI", seed=DATA_SEED, dt=DATA_DT, adaptive=False, saveat=SAVEAT)
    u = np.asarray(sol.u)
    mean, std = moments(u)
    sample = u[:, [0, 1, 2, DATA_PATHS, DATA_PATHS + 1, DATA_PATHS + 2], 0]
    return mean, std, sample


class NeuralSDE:
    """Drift and diffusion networks with one flat parameter array."""

    def __init__(self) -> None:
        self.drift_net = MLP((1, HIDDEN, 1), activation="tanh")
        self.diffusion_net = MLP((1, HIDDEN, 1), activation="tanh")
        self.split = self.drift_net.n_params
        self.n_params = self.split + self.diffusion_net.n_params

    def init(self, seed: int) -> np.ndarray:
        return np.concatenate([self.drift_net.init(seed), self.diffusion_net.init(seed + 1)])

    def f(self, u: Any, p: Any, t: float) -> Any:
        return self.drift_net(u, p[: self.split])

    def g(self, u: Any, p: Any, t: float) -> Any:
        return anp.logaddexp(0.0, self.diffusion_net(u, p[self.split :]))  # softplus > 0

    def problem(self, p: Any, paths: int) -> ade.SDEProblem:
        return ade.SDEProblem(self.f, self.g, starts(paths), TSPAN, p, noise="diagonal")


def make_loss(model: NeuralSDE, mean: np.ndarray, std: np.ndarray, paths: int,
              sensealg: str | None) -> Any:
    """``loss(p, seed)``: the moment mismatch of ``paths`` model paths per start on the
    Brownian path of ``seed``."""

    def loss(p: Any, seed: int) -> Any:
        prob = model.problem(p, paths)
        W = ade.BrownianPath(TSPAN, prob.noise_shape, seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ade.SolverWarning)
            sol = ade.solve(prob, ALG, brownian=W, dt=TRAIN_DT, adaptive=False,
                            saveat=SAVEAT, sensealg=sensealg)
        if sol.retcode != "Success" or len(sol.t) != len(SAVEAT):
            return FAILED_LOSS + 0.0 * anp.sum(p)
        m, s = moments(sol.u)
        return anp.sum((m - mean) ** 2) + anp.sum((s - std) ** 2)

    return loss


def true_test_loss(mean: np.ndarray, std: np.ndarray) -> float:
    """The loss of the true SDE on the held-out paths (same solver and steps as the model)."""
    prob = ade.SDEProblem(true_drift, true_diffusion, starts(TEST_PATHS), TSPAN)
    sol = ade.solve(prob, ALG, seed=TEST_SEED, dt=TRAIN_DT, adaptive=False, saveat=SAVEAT)
    m, s = moments(np.asarray(sol.u))
    return float(np.sum((m - mean) ** 2) + np.sum((s - std) ** 2))


def plot(model: NeuralSDE, p: np.ndarray, data: tuple[np.ndarray, np.ndarray, np.ndarray],
         history: list[tuple[int, float]], out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install '.[plot]')")
        return

    mean, std, sample = data
    t = np.linspace(*TSPAN, 81)
    sol = ade.solve(model.problem(p, TEST_PATHS), ALG, seed=TEST_SEED, dt=TRAIN_DT / 4,
                    adaptive=False, saveat=t)
    u = np.asarray(sol.u)[:, :, 0]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    ax = axes[0]
    for k in range(len(X0)):
        paths = u[:, k * TEST_PATHS:(k + 1) * TEST_PATHS]
        m, s = paths.mean(axis=1), paths.std(axis=1)
        ax.fill_between(t, m - s, m + s, color=f"C{k}", alpha=0.2, lw=0)
        ax.plot(t, m, color=f"C{k}", lw=2, label=f"model mean +- std, X0 = {X0[k]}")
        ax.plot(t, paths[:, :3], color=f"C{k}", lw=0.6, alpha=0.7)
        ax.errorbar(SAVEAT[1:], mean[:, k], yerr=std[:, k], fmt="o", color="k", ms=3,
                    capsize=2, lw=0.8, label="data mean +- std" if k == 0 else None)
    ax.plot(SAVEAT, sample, color="0.4", lw=0.6, ls=":")
    ax.set_xlabel("t")
    ax.set_title("paths (dotted: data, solid: model)", fontsize=10)
    ax.legend(fontsize=7)
    it, val = zip(*history, strict=True)
    axes[1].semilogy(it, val, ".-")
    axes[1].set_xlabel("Adam iteration")
    axes[1].set_title("training loss (64 paths per start, a new path each step)", fontsize=10)
    x = np.linspace(-0.8, 2.8, 200)[:, None]
    ax = axes[2]
    ax.plot(x, true_drift(x, None, 0.0), "k--", label="true drift 2 (1 - x)")
    ax.plot(x, model.f(x, p, 0.0), "C0", label="learned drift")
    ax.plot(x, true_diffusion(x, None, 0.0), "k:", label="true diffusion 0.1 + 0.2 x^2")
    ax.plot(x, model.g(x, p, 0.0), "C3", label="learned diffusion")
    ax.axvspan(-0.5, 2.0, color="0.9", zorder=0)
    ax.set_xlabel("x")
    ax.set_title("drift and diffusion (shaded: range of the starts)", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=300, help="Adam iterations (300)")
    ap.add_argument("--step-size", type=float, default=0.02, help="Adam step size (0.02)")
    ap.add_argument("--every", type=int, default=25, help="print the loss every N iterations")
    ap.add_argument("--sensealg", default="DiscreteAdjoint",
                    help="DiscreteAdjoint (default), ReverseMode, ForwardMode, or 'auto'")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG path")
    args = ap.parse_args(argv)
    sensealg = None if args.sensealg == "auto" else args.sensealg
    start = time.perf_counter()

    mean, std, sample = make_data()
    floor = true_test_loss(mean, std)
    model = NeuralSDE()
    p0 = model.init(seed=0)
    train_loss = make_loss(model, mean, std, TRAIN_PATHS, sensealg)
    test_loss = make_loss(model, mean, std, TEST_PATHS, None)
    loss0 = float(test_loss(p0, TEST_SEED))
    print(f"data: {DATA_PATHS} paths per start X0 = {X0.tolist()}; model: {model.n_params} "
          f"parameters, {TRAIN_PATHS} paths per start, {ALG} dt={TRAIN_DT}, "
          f"sensealg={args.sensealg}")
    print(f"held-out loss ({TEST_PATHS} paths per start): {loss0:.4g} at the start; the true "
          f"SDE scores {floor:.3g}")

    history: list[tuple[int, float]] = []
    loss_grad = grad(train_loss)

    def callback(p: np.ndarray, i: int, g: np.ndarray) -> None:
        # the loss of the step's own path, recomputed (the gradient call does not return it)
        if i % args.every == 0 or i == args.iters - 1:
            value = float(train_loss(p, i))
            history.append((i, value))
            print(f"  adam {i:4d}  loss {value:10.4g}  |grad| {np.linalg.norm(g):9.3g}  "
                  f"({time.perf_counter() - start:.1f} s)")

    t0 = time.perf_counter()
    p = adam(lambda p, i: loss_grad(p, i), p0.copy(), callback=callback,
             num_iters=args.iters, step_size=args.step_size)
    print(f"{args.iters} Adam iterations in {time.perf_counter() - t0:.1f} s")
    loss1 = float(test_loss(p, TEST_SEED))
    print(f"final loss (held-out paths): {loss1:.4g} (from {loss0:.4g}; true SDE: "
          f"{floor:.3g})")
    x = np.array([[-0.5], [0.0], [1.0], [2.0]])
    print("        x        " + "  ".join(f"{v:6.2f}" for v in x[:, 0]))
    for name, fn, ref in (("drift", model.f, true_drift), ("diffusion", model.g,
                                                            true_diffusion)):
        print(f"  {name:<9} learned " + "  ".join(f"{v:6.3f}" for v in fn(x, p, 0.0)[:, 0]))
        print(f"  {name:<9} true    " + "  ".join(f"{v:6.3f}" for v in ref(x, None, 0.0)[:, 0]))
    plot(model, p, (mean, std, sample), history, args.out)
    print(f"total {time.perf_counter() - start:.1f} s")
    if not loss1 * 100 <= loss0:
        print("FAILED: the held-out loss did not fall 100-fold", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
