"""Training the parameters of an ODE layer: the Lotka–Volterra example of the paper.

The Lotka–Volterra system

    dx/dt =  a x - b x y        (prey)
    dy/dt = -c y + d x y        (predators)

with ``u0 = (1, 1)`` and ``t`` in ``[0, 10]`` is a layer whose parameters ``p = (a, b, c, d)``
(starting from ``p0 = (1.5, 1, 3, 1)``) are trained so that the populations stay near 1:

    loss(p) = sum over t_i = 0, 0.1, ..., 10 of |u(t_i; p) - 1|^2

(Rackauckas, Innes et al., "DiffEqFlux.jl – A Julia Library for Neural Differential
Equations", 2019). The gradient of the loss goes through ``ade.solve`` with autograd: the solve
is one autograd primitive whose derivative comes from a sensitivity method (``--sensealg``;
the default lets autodiffeq choose, which for these 6 inputs is a forward method). Training is

1. autograd's Adam (``autograd.misc.optimizers.adam``) for ``--adam-iters`` iterations, then
2. SciPy's BFGS (``scipy.optimize.minimize(method="BFGS", jac=True)``) with the same gradient.

The loss is printed every ``--every`` iterations; a PNG of both populations before and after
training is written (``--out``, default ``lotka_volterra_training.png`` next to the script).
The script exits with status 1 if training did not reduce the loss at least 100-fold. Runs in
a few seconds::

    python examples/lotka_volterra_training.py [--adam-iters 50] [--out PATH]

Requires matplotlib (``pip install ".[examples]"``).
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
from autograd import grad, value_and_grad
from autograd.misc.optimizers import adam
from scipy.optimize import minimize

import autodiffeq as ade

P0 = np.array([1.5, 1.0, 3.0, 1.0])
U0 = np.array([1.0, 1.0])
TSPAN = (0.0, 10.0)
SAVEAT = np.linspace(0.0, 10.0, 101)  # every 0.1
RTOL, ATOL = 1e-6, 1e-8
#: loss of a solve that failed (the optimiser stepped into a blow-up): large, zero gradient
FAILED_LOSS = 1e8
SIGNS = np.array([1.0, -1.0])
DEFAULT_OUT = Path(__file__).resolve().with_name("lotka_volterra_training.png")


def lotka_volterra(u: Any, p: Any, t: float) -> Any:
    """Right-hand side ``f(u, p, t)``, written with autograd.numpy so autograd can trace it."""
    # [a x - b x y, -c y + d x y] = SIGNS * ((a, c) * (x, y) - (b, d) * x y), vectorised so that
    # autograd records few operations per call
    return SIGNS * (p[::2] * u - p[1::2] * (u[0] * u[1]))


def predict(p: Any, sensealg: str | None = None, saveat: Any = SAVEAT) -> Any:
    """The saved states ``u(t_i; p)``, shape ``(len(saveat), 2)`` (a Solution)."""
    prob = ade.ODEProblem(lotka_volterra, U0, TSPAN, p)
    return ade.solve(prob, "Tsit5", saveat=saveat, rtol=RTOL, atol=ATOL, sensealg=sensealg)


def make_loss(sensealg: str | None) -> Any:
    """``loss(p) = sum |u(t_i) - 1|^2`` over the saved states; a failed solve gets
    :data:`FAILED_LOSS` so that a line search backs off."""

    def loss(p: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ade.SolverWarning)
            sol = predict(p, sensealg)
        if len(sol.t) != len(SAVEAT) or not np.all(np.isfinite(np.asarray(sol.t))):
            return FAILED_LOSS + 0.0 * anp.sum(p)
        return anp.sum((sol.u - 1.0) ** 2)

    return loss


def train(
    adam_iters: int, step_size: float, bfgs_iters: int, every: int, sensealg: str | None
) -> tuple[np.ndarray, list[tuple[int, float]]]:
    """Adam, then BFGS; returns the final parameters and the loss history as
    ``(iteration, loss)`` pairs (BFGS iterations counted on from the Adam ones)."""
    loss = make_loss(sensealg)
    loss_grad = grad(loss)
    history: list[tuple[int, float]] = []

    def adam_callback(p: np.ndarray, i: int, g: np.ndarray) -> None:
        if i % every == 0 or i == adam_iters - 1:
            value = float(loss(p))
            history.append((i, value))
            print(f"  adam {i:4d}  loss {value:12.6g}  |grad| {np.linalg.norm(g):10.4g}")

    t0 = time.perf_counter()
    p = adam(
        lambda p, i: loss_grad(p),
        P0.copy(),
        callback=adam_callback,
        num_iters=adam_iters,
        step_size=step_size,
    )
    adam_loss = float(loss(p))
    history.append((adam_iters, adam_loss))
    print(
        f"after {adam_iters} Adam iterations ({time.perf_counter() - t0:.1f} s): loss "
        f"{adam_loss:.6g} at p = {np.round(p, 4)}"
    )

    value_grad = value_and_grad(loss)
    count = [0]

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, g = value_grad(x)
        return float(value), np.asarray(g, dtype=np.float64)

    def bfgs_callback(x: np.ndarray) -> None:
        count[0] += 1
        value = float(loss(x))
        history.append((adam_iters + count[0], value))
        print(f"  bfgs {count[0]:4d}  loss {value:12.6g}")

    t0 = time.perf_counter()
    res = minimize(
        fun,
        p,
        jac=True,
        method="BFGS",
        callback=bfgs_callback,
        options={"maxiter": bfgs_iters, "gtol": 1e-10},
    )
    final = (adam_iters + int(res.nit), float(loss(res.x)))
    if history[-1][0] == final[0]:
        history[-1] = final
    else:
        history.append(final)
    print(
        f"BFGS: {res.nit} iterations, {res.nfev} loss/gradient evaluations "
        f"({time.perf_counter() - t0:.1f} s), {res.message}"
    )
    print(f"final loss {final[1]:.6g} at p = {np.round(res.x, 4)}")
    return np.asarray(res.x), history


def plot(p_final: np.ndarray, history: list[tuple[int, float]], adam_iters: int, out: Path) -> None:
    """Populations before and after training, and the loss history."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.linspace(*TSPAN, 400)
    before = np.asarray(predict(P0, saveat=t).u)
    after = np.asarray(predict(p_final, saveat=t).u)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, u, title in (
        (axes[0], before, f"before: p = {np.round(P0, 3)}"),
        (axes[1], after, f"after: p = {np.round(p_final, 3)}"),
    ):
        ax.plot(t, u[:, 0], label="prey x")
        ax.plot(t, u[:, 1], label="predators y")
        ax.axhline(1.0, color="gray", lw=0.8, ls="--")
        ax.set_xlabel("t")
        ax.set_title(title, fontsize=10)
        ax.legend(loc="upper right")
    axes[1].set_ylim(axes[0].get_ylim())
    its, values = np.array(history).T
    axes[2].semilogy(its, np.maximum(values, 1e-300), "o-", ms=3)
    axes[2].axvline(adam_iters, color="gray", lw=0.8, ls=":")
    axes[2].set_xlabel(f"iteration (Adam up to {adam_iters}, then BFGS)")
    axes[2].set_ylabel("loss")
    axes[2].set_title("loss sum |u(t_i) - 1|^2", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adam-iters", type=int, default=50, help="Adam iterations (50)")
    ap.add_argument("--step-size", type=float, default=0.05, help="Adam step size (0.05)")
    ap.add_argument("--bfgs-iters", type=int, default=100, help="BFGS iteration limit (100)")
    ap.add_argument("--every", type=int, default=10, help="print the loss every N iterations")
    ap.add_argument(
        "--sensealg",
        default="DiscreteAdjoint",
        help="sensitivity method (default DiscreteAdjoint; 'auto' lets autodiffeq choose)",
    )
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG path")
    args = ap.parse_args(argv)
    if args.sensealg == "auto":
        args.sensealg = None

    t0 = time.perf_counter()
    probe = predict(P0 + 0.0 * anp.zeros(4), args.sensealg)  # untraced: shows the forward solve
    print(f"Lotka-Volterra layer: {len(probe.t)} saved states, Tsit5 rtol={RTOL} atol={ATOL}")
    p_final, history = train(
        args.adam_iters, args.step_size, args.bfgs_iters, args.every, args.sensealg
    )
    initial, final = history[0][1], history[-1][1]
    plot(p_final, history, args.adam_iters, args.out)
    print(
        f"loss {initial:.6g} -> {final:.6g} (reduced {initial / max(final, 1e-300):.3g}x) "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    if not final < initial / 100:
        print("training did not reduce the loss 100-fold", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
