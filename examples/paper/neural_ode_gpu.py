"""RQ4 — a neural ODE trained on the GPU backend when there is one, on NumPy otherwise.

The spiral neural ODE of ``docs/layers.md`` (section 1) and of the paper (Rackauckas, Innes
et al., "DiffEqFlux.jl – A Julia Library for Neural Differential Equations", 2019): data from
``u' = A u^3``, ``A = [[-0.1, 2], [-2, -0.1]]``, ``u(0) = (2, 0)``, 30 saved times in
``[0, 1.5]``; model ``u' = tanh(u^3 W1 + b1) W2 + b2`` (2 -> 50 -> 2, 252 parameters, seed
0) in ``nn.NeuralODE(model, (0, 1.5), "Tsit5", saveat=t, rtol=1e-6, atol=1e-6,
sensealg="DiscreteAdjoint", backend=...)``; loss the mean squared error; autograd's Adam,
``--iters`` iterations (300) with step size 0.02.

Which backend (``--backend auto``, the default): ``"cupy"`` when
``ade.registry().available_backends()`` contains it, else ``"numpy"``; the script says which
ran and why (whether CuPy imports, whether a backend named ``"cupy"`` is registered).
``--backend array_api_strict`` runs the non-NumPy code path on the CPU (slowly: that backend
checks every operation against the array API standard).

What runs where: on NumPy the model is ``nn.MLP([2, 50, 2], input_transform="cube")`` (its
hand-derived derivatives make the adjoint fast). ``nn.MLP`` (and ``nn.Dense``) compute with
``autograd.numpy``, so they cannot run on another backend; the script probes that (one forward
solve of ``nn.NeuralODE(nn.MLP(...), backend=...)`` on the chosen backend, or on
``array_api_strict`` when NumPy runs) and says so, and on a non-NumPy backend it trains the
same network written with the array API (``u.__array_namespace__()``, the same parameter
layout as ``nn.MLP``), which ``nn.NeuralODE`` and ``DiscreteAdjoint`` accept on any backend.
The probe also checks that this array-API network gives the same right-hand side and the
same gradient as ``nn.MLP`` (to 1e-9).

Prints the backends, the probes, the loss every 50 iterations, the time per iteration and the
loss before and after (``docs/layers.md``: 2.85 -> 0.0115 on NumPy); writes
``neural_ode_gpu.png`` next to this file (``--out PATH``): the data and the trained model in
the phase plane, and the loss history (matplotlib with the Agg backend; skipped with a message
when it is not installed). Exits with status 1 unless the loss fell 100-fold. About 6 s on
NumPy::

    python examples/paper/neural_ode_gpu.py [--backend auto] [--iters 300] [--out PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

import autograd.numpy as anp
import numpy as np
from autograd import grad, value_and_grad
from autograd.misc.optimizers import adam

import autodiffeq as ade
from autodiffeq import nn

A_TRUE = np.array([[-0.1, 2.0], [-2.0, -0.1]])
U0 = np.array([2.0, 0.0])
TSPAN = (0.0, 1.5)
T_SAVE = np.linspace(*TSPAN, 30)
HIDDEN = 50
SOLVE_KW = {"saveat": T_SAVE, "rtol": 1e-6, "atol": 1e-6, "sensealg": "DiscreteAdjoint"}
DEFAULT_OUT = Path(__file__).resolve().with_name("neural_ode_gpu.png")


class ArrayAPISpiralNet(nn.Layer):
    """``tanh(u^3 W1 + b1) W2 + b2`` with the array namespace of ``u``: runs on any array-API
    backend (CuPy, array_api_strict, NumPy). Parameters laid out as ``nn.MLP``'s: ``W1``
    (row-major, 2 x H), ``b1``, ``W2`` (H x 2), ``b2``."""

    def __init__(self, hidden: int) -> None:
        self.hidden = hidden
        self.n_params = 5 * hidden + 2
        self._mlp = nn.MLP([2, hidden, 2], input_transform="cube")

    def init_params(self, seed: Any = None) -> np.ndarray:
        return np.asarray(self._mlp.init(seed))

    def __call__(self, u: Any, p: Any) -> Any:
        xp = u.__array_namespace__()
        h = self.hidden
        W1 = xp.reshape(p[: 2 * h], (2, h))
        W2 = xp.reshape(p[3 * h : 5 * h], (h, 2))
        return xp.tanh((u**3) @ W1 + p[2 * h : 3 * h]) @ W2 + p[5 * h :]


def make_data() -> np.ndarray:
    prob = ade.ODEProblem(lambda u, p, t: (u**3) @ A_TRUE, U0, TSPAN)
    return np.asarray(ade.solve(prob, saveat=T_SAVE, rtol=1e-10, atol=1e-10).u)


def cupy_status() -> tuple[bool, bool, bool]:
    """(CuPy importable, a backend named "cupy" registered, and usable here)."""
    importable = importlib.util.find_spec("cupy") is not None
    reg = ade.registry()
    registered = any(spec.name == "cupy" for spec in reg.backends())
    return importable, registered, "cupy" in reg.available_backends()


def probe(backend: str, data: np.ndarray) -> dict[str, Any]:
    """Can ``nn.MLP`` run inside ``nn.NeuralODE`` on ``backend``? Does the array-API network
    run there, and does it match ``nn.MLP`` on NumPy (value and gradient)?"""
    out: dict[str, Any] = {}
    p0 = nn.MLP([2, HIDDEN, 2], input_transform="cube").init(0)
    try:
        node = nn.NeuralODE(nn.MLP([2, HIDDEN, 2], input_transform="cube"), TSPAN, "Tsit5",
                            backend=backend, **SOLVE_KW)
        node(U0, p0)
        out["mlp"] = None
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        out["mlp"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    net = ArrayAPISpiralNet(HIDDEN)
    mlp = nn.MLP([2, HIDDEN, 2], input_transform="cube")
    u = np.array([[0.3, -1.2], [2.0, 0.0]])
    out["rhs_diff"] = float(np.max(np.abs(net(u, p0) - mlp(u, p0, None))))
    grads = {}
    for name, model, be in (("mlp", mlp, "numpy"), ("xp", net, backend)):
        node = nn.NeuralODE(model, TSPAN, "Tsit5", backend=be, **SOLVE_KW)
        target = ade.registry().get_backend(be).asarray(data)
        try:
            grads[name] = np.asarray(grad(lambda q, n=node, d=target: anp.mean((n(U0, q) - d)
                                                                               ** 2))(p0))
        except Exception as exc:  # noqa: BLE001
            out["xp_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            return out
    out["grad_diff"] = float(np.linalg.norm(grads["xp"] - grads["mlp"])
                             / np.linalg.norm(grads["mlp"]))
    return out


def plot(data: np.ndarray, before: np.ndarray, after: np.ndarray, history: list[float],
         backend: str, out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install '.[examples]')")
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3))
    ax = axes[0]
    ax.plot(data[:, 0], data[:, 1], "ko", ms=4, label="data (u' = A u^3)")
    ax.plot(before[:, 0], before[:, 1], ":", color="0.5", label="model at the start")
    ax.plot(after[:, 0], after[:, 1], "C0-", lw=1.5, label="trained model")
    ax.set_xlabel("u1")
    ax.set_ylabel("u2")
    ax.set_title(f"spiral neural ODE, backend '{backend}'", fontsize=10)
    ax.legend(fontsize=8)
    axes[1].semilogy(history)
    axes[1].set_xlabel("Adam iteration")
    axes[1].set_ylabel("mean squared error")
    axes[1].set_title("training loss", fontsize=10)
    axes[1].grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="auto",
                    help="auto (cupy when available, else numpy), numpy, cupy, array_api_strict")
    ap.add_argument("--iters", type=int, default=300, help="Adam iterations (300)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG path")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    reg = ade.registry()
    available = reg.available_backends()
    importable, registered, usable = cupy_status()
    print(f"available backends: {available}; CuPy importable: {importable}; a backend named "
          f"'cupy' registered: {registered}")
    if args.backend == "auto":
        backend = "cupy" if usable else "numpy"
        if not usable:
            why = ("CuPy is not installed" if not importable else
                   "CuPy is installed but no autodiffeq plugin registers a 'cupy' backend")
            if importable and registered:
                why = "the 'cupy' backend is registered but not usable here (no GPU?)"
            print(f"no GPU backend: {why}; running on NumPy")
    else:
        backend = args.backend
        if backend not in available:
            print(f"backend {backend!r} is not available here (available: {available})",
                  file=sys.stderr)
            return 1
    device = getattr(reg.get_backend(backend), "device", "?")
    print(f"backend: {backend!r} on {device}")

    data = make_data()
    probe_backend = backend if backend != "numpy" else "array_api_strict"
    if probe_backend in available:
        res = probe(probe_backend, data)
        if res["mlp"] is None:
            print(f"probe: nn.MLP runs inside nn.NeuralODE on backend {probe_backend!r}")
        else:
            print(f"probe: nn.MLP cannot run on the non-NumPy backend {probe_backend!r}: "
                  f"{res['mlp']}")
        if "xp_error" in res:
            print(f"probe: the array-API network fails on {probe_backend!r} too: "
                  f"{res['xp_error']}")
        else:
            print(f"probe: the array-API network runs on {probe_backend!r}: right-hand side "
                  f"within {res['rhs_diff']:.1e} of nn.MLP's, gradient of the loss within "
                  f"{res['grad_diff']:.1e} (relative) of nn.MLP's on NumPy")
        if backend != "numpy" and "xp_error" in res:
            print(f"autodiffeq's layers cannot train this network on {backend!r}; stopping",
                  file=sys.stderr)
            return 1
    else:
        print("probe skipped: no non-NumPy backend available (pip install array-api-strict "
              "to check the non-NumPy path on the CPU)")

    if backend == "numpy":
        model: Any = nn.MLP([2, HIDDEN, 2], input_transform="cube")
        label = "nn.MLP([2, 50, 2], input_transform='cube')"
    else:
        model = ArrayAPISpiralNet(HIDDEN)
        label = "the array-API network (nn.MLP cannot run off NumPy)"
    node = nn.NeuralODE(model, TSPAN, "Tsit5", backend=backend, **SOLVE_KW)
    be = reg.get_backend(backend)
    target = be.asarray(data)
    print(f"model: {label}, {node.n_params} parameters; Tsit5, DiscreteAdjoint, "
          f"{len(T_SAVE)} saved times; Adam step 0.02, {args.iters} iterations")

    def loss(p: Any, it: int = 0) -> Any:
        return anp.mean((node(U0, p) - target) ** 2)

    value_grad = value_and_grad(loss)
    history: list[float] = []

    def gradient(p: np.ndarray, it: int) -> np.ndarray:
        value, g = value_grad(p)
        history.append(float(value))
        if it % 50 == 0:
            print(f"  adam {it:4d}  loss {float(value):.4g}", flush=True)
        return np.asarray(g)

    p0 = node.init_params(seed=0)
    t0 = time.perf_counter()
    p = adam(gradient, p0, step_size=0.02, num_iters=args.iters)
    elapsed = time.perf_counter() - t0
    initial, final = history[0], float(loss(p))
    print(f"backend {backend!r}: {args.iters} iterations in {elapsed:.1f} s "
          f"({1e3 * elapsed / max(args.iters, 1):.1f} ms each); loss {initial:.3g} -> "
          f"{final:.3g} ({initial / final:.0f}x)")

    def host(u: Any) -> np.ndarray:
        return np.asarray(be.to_host(u))

    dense = nn.NeuralODE(model, TSPAN, "Tsit5", backend=backend, saveat=np.linspace(*TSPAN, 200),
                         rtol=1e-6, atol=1e-6)
    plot(data, host(dense(U0, p0)), host(dense(U0, p)), history, backend, args.out)
    print(f"total {time.perf_counter() - start:.1f} s")
    if not final * 100 <= initial:
        print(f"FAILED: the loss fell only from {initial:.3g} to {final:.3g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
