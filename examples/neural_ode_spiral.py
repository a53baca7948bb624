"""A neural ODE fitted to the spiral data of the paper.

Data: the "true" dynamics

    u' = A u^3,     A = [[-0.1, 2.0], [-2.0, -0.1]],     u(0) = (2, 0),

(``u^3`` elementwise) solved on ``t`` in ``[0, 1.5]`` and saved at 30 equally spaced times
(Rackauckas, Innes et al., "DiffEqFlux.jl – A Julia Library for Neural Differential
Equations", 2019). Model: ``u' = MLP(u^3)``, a 2 -> 50 -> 2 tanh network
(:class:`autodiffeq.nn.MLP` with ``input_transform="cube"``, 252 parameters in one flat array
``p``), solved from the same ``u(0)`` with Tsit5. Loss: the sum of squared errors over the 30
saved states,

    loss(p) = sum_i |u(t_i; p) - u_data(t_i)|^2.

``autograd.grad(loss)`` goes through ``ade.solve``; with 254 inputs the automatic choice is an
adjoint method, which takes the network's own hand-written vector-Jacobian products
(:meth:`MLP.vjp`). Training: autograd's Adam for ``--adam-iters`` iterations, then SciPy's BFGS
with the same gradient for up to ``--bfgs-iters`` iterations. The loss is printed every
``--every`` iterations; a PNG (``--out``, default ``neural_ode_spiral.png`` next to the
script) shows the data, the untrained and the trained model in the phase plane and against
``t``, and the loss history. The script exits with status 1 unless the loss fell at least
100-fold. Runs in well under a minute::

    python examples/neural_ode_spiral.py [--adam-iters 300] [--bfgs-iters 100] [--out PATH]

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
from autodiffeq.nn import MLP

A_TRUE = np.array([[-0.1, 2.0], [-2.0, -0.1]])
U0 = np.array([2.0, 0.0])
TSPAN = (0.0, 1.5)
T_DATA = np.linspace(*TSPAN, 30)
RTOL, ATOL = 1e-6, 1e-8
HIDDEN = 50
#: loss of a solve that failed (the optimiser stepped into a blow-up): large, zero gradient
FAILED_LOSS = 1e8
DEFAULT_OUT = Path(__file__).resolve().with_name("neural_ode_spiral.png")


def true_dynamics(u: np.ndarray, p: Any, t: float) -> np.ndarray:
    """``u' = A u^3`` (elementwise cube)."""
    return A_TRUE @ u**3


def make_data() -> np.ndarray:
    """The 30 saved states of the true dynamics, solved tightly (rtol 1e-10)."""
    prob = ade.ODEProblem(true_dynamics, U0, TSPAN)
    return np.asarray(ade.solve(prob, "Tsit5", saveat=T_DATA, rtol=1e-10, atol=1e-12).u)


def predict(model: MLP, p: Any, saveat: Any = T_DATA, sensealg: str | None = None) -> Any:
    """The model's solution from ``U0`` saved at ``saveat``."""
    prob = ade.ODEProblem(model, U0, TSPAN, p)
    return ade.solve(prob, "Tsit5", saveat=saveat, rtol=RTOL, atol=ATOL, sensealg=sensealg)


def make_loss(model: MLP, data: np.ndarray, sensealg: str | None, used: list[str]) -> Any:
    """``loss(p)``: sum of squared errors over the saved states; a failed solve gets
    :data:`FAILED_LOSS`. The sensitivity method in use is recorded in ``used``."""

    def loss(p: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ade.SolverWarning)
            sol = predict(model, p, sensealg=sensealg)
        name = getattr(sol, "sensealg", "")
        if name and name not in used:
            used.append(name)
        if len(sol.t) != len(T_DATA):
            return FAILED_LOSS + 0.0 * anp.sum(p)
        return anp.sum((sol.u - data) ** 2)

    return loss


def train(
    model: MLP,
    p0: np.ndarray,
    data: np.ndarray,
    args: argparse.Namespace,
) -> tuple[np.ndarray, list[tuple[int, float]], list[str]]:
    """Adam, then BFGS; returns the trained parameters, the ``(iteration, loss)`` history and
    the sensitivity methods used."""
    used: list[str] = []
    loss = make_loss(model, data, args.sensealg, used)
    loss_grad = grad(loss)
    history: list[tuple[int, float]] = []

    def adam_callback(p: np.ndarray, i: int, g: np.ndarray) -> None:
        if i % args.every == 0:
            value = float(loss(p))
            history.append((i, value))
            print(f"  adam {i:5d}  loss {value:12.6g}  |grad| {np.linalg.norm(g):10.4g}")

    t0 = time.perf_counter()
    p = adam(
        lambda p, i: loss_grad(p),
        p0.copy(),
        callback=adam_callback,
        num_iters=args.adam_iters,
        step_size=args.step_size,
    )
    history.append((args.adam_iters, float(loss(p))))
    print(
        f"after {args.adam_iters} Adam iterations ({time.perf_counter() - t0:.1f} s, "
        f"gradients by {', '.join(used)}): loss {history[-1][1]:.6g}"
    )
    if args.bfgs_iters <= 0:
        return p, history, used

    value_grad = value_and_grad(loss)
    count = [0]

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, g = value_grad(x)
        return float(value), np.asarray(g, dtype=np.float64)

    def bfgs_callback(x: np.ndarray) -> None:
        count[0] += 1
        if count[0] % args.every == 0:
            value = float(loss(x))
            history.append((args.adam_iters + count[0], value))
            print(f"  bfgs {count[0]:5d}  loss {value:12.6g}")

    t0 = time.perf_counter()
    res = minimize(
        fun,
        p,
        jac=True,
        method="BFGS",
        callback=bfgs_callback,
        options={"maxiter": args.bfgs_iters, "gtol": 1e-8},
    )
    history.append((args.adam_iters + int(res.nit), float(res.fun)))
    print(
        f"BFGS: {res.nit} iterations, {res.nfev} loss/gradient evaluations "
        f"({time.perf_counter() - t0:.1f} s): loss {res.fun:.6g}"
    )
    return np.asarray(res.x), history, used


def plot(
    model: MLP,
    p0: np.ndarray,
    p: np.ndarray,
    data: np.ndarray,
    history: list[tuple[int, float]],
    adam_iters: int,
    out: Path,
) -> None:
    """Phase plane and time series of data, untrained and trained model; loss history."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.linspace(*TSPAN, 300)
    true = np.asarray(ade.solve(ade.ODEProblem(true_dynamics, U0, TSPAN), "Tsit5", saveat=t).u)
    before = np.asarray(predict(model, p0, saveat=t).u)
    after = np.asarray(predict(model, p, saveat=t).u)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    ax = axes[0]
    ax.plot(true[:, 0], true[:, 1], color="k", lw=0.8, label="true dynamics")
    ax.plot(data[:, 0], data[:, 1], "o", color="k", ms=4, label="data (30 points)")
    ax.plot(before[:, 0], before[:, 1], "--", color="tab:gray", label="untrained model")
    ax.plot(after[:, 0], after[:, 1], color="tab:red", label="trained model")
    ax.set_xlabel("u1")
    ax.set_ylabel("u2")
    ax.set_title("phase plane", fontsize=10)
    ax.legend(fontsize=8)
    ax = axes[1]
    for j, color in ((0, "tab:blue"), (1, "tab:orange")):
        ax.plot(T_DATA, data[:, j], "o", color=color, ms=4, label=f"data u{j + 1}")
        ax.plot(t, after[:, j], color=color, label=f"trained u{j + 1}")
    ax.set_xlabel("t")
    ax.set_title("states against t", fontsize=10)
    ax.legend(fontsize=8)
    its, values = np.array(history).T
    axes[2].semilogy(its, values, "o-", ms=3)
    axes[2].axvline(adam_iters, color="gray", lw=0.8, ls=":")
    axes[2].set_xlabel(f"iteration (Adam up to {adam_iters}, then BFGS)")
    axes[2].set_ylabel("loss")
    axes[2].set_title("sum of squared errors", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adam-iters", type=int, default=300, help="Adam iterations (300)")
    ap.add_argument("--step-size", type=float, default=0.01, help="Adam step size (0.01)")
    ap.add_argument("--bfgs-iters", type=int, default=100, help="BFGS iteration limit (100)")
    ap.add_argument("--every", type=int, default=50, help="print the loss every N iterations")
    ap.add_argument("--seed", type=int, default=0, help="seed of the initial weights")
    ap.add_argument(
        "--sensealg", default=None, help="sensitivity method (default: automatic choice)"
    )
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG path")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    data = make_data()
    model = MLP((2, HIDDEN, 2), activation="tanh", input_transform="cube")
    p0 = model.init(seed=args.seed)
    print(f"spiral data: {len(T_DATA)} points on t in {TSPAN}; model {model}")
    p, history, _ = train(model, p0, data, args)
    initial, final = history[0][1], history[-1][1]
    plot(model, p0, p, data, history, args.adam_iters, args.out)
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
