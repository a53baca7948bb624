"""RQ4 — a neural ODE trained on the GPU backend when there is one, on NumPy otherwise.

The spiral neural ODE of ``docs/layers.md`` (section 1) and of the paper (Rackauckas, Innes
et al., "DiffEqFlux.jl – A Julia Library for Neural Differential Equations", 2019): data from
``u' = A u^3``, ``A = [[-0.1, 2], [-2, -0.1]]``, ``u(0) = (2, 0)``, 30 saved times in
``[0, 1.5]``; model ``nn.MLP([2, 50, 2], input_transform="cube")``, i.e.
``u' = tanh(u^3 W1 + b1) W2 + b2`` (252 parameters, seed 0), in ``nn.NeuralODE(model,
(0, 1.5), "Tsit5", saveat=t, rtol=1e-6, atol=1e-6, sensealg="DiscreteAdjoint",
backend=...)``; loss the mean squared error; autograd's Adam, ``--iters`` iterations (300)
with step size 0.02. The same code runs on every backend: ``nn.MLP`` computes with the
state's own array library (NumPy, CuPy, ``array_api_strict``), so on CuPy the state, the
parameters and the adjoint stay on the device.

Which backend (``--backend auto``, the default): ``"cupy"`` when
``ade.registry().available_backends()`` contains it, else ``"numpy"``, after printing why the
``cupy`` backend is unavailable (its own reason, ``ade.registry().backend("cupy")
.unavailable_reason()``: CuPy not installed, no NVIDIA driver, no device, ...; see
``docs/gpu.md``). ``--backend array_api_strict`` runs the non-NumPy code path on the CPU
(slowly: that backend checks every operation against the array API standard).

Gradient check: before training, the gradient of the loss at the initial parameters on a
non-NumPy backend (the chosen one, or ``array_api_strict`` when NumPy runs and it is
installed) is compared with NumPy's; the script prints the relative difference (one
gradient on each backend, under a second on the CPU).

Prints the backends, the gradient check, the loss every 50 iterations, the time per
iteration and the loss before and after (``docs/layers.md``: 2.85 -> 0.0115 on NumPy);
writes ``neural_ode_gpu.png`` next to this file (``--out PATH``): the data and the trained
model in the phase plane, and the loss history (matplotlib with the Agg backend; skipped with
a message when it is not installed). Exits with status 1 unless the loss fell 100-fold. About
6 s on NumPy::

    python examples/paper/neural_ode_gpu.py [--backend auto] [--iters 300] [--out PATH]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import autograd.numpy as anp
import numpy as np
from autograd import grad, value_and_grad
from autograd.misc.optimizers import adam
from autograd.tracer import isbox

import autodiffeq as ade
from autodiffeq import nn

A_TRUE = np.array([[-0.1, 2.0], [-2.0, -0.1]])
U0 = np.array([2.0, 0.0])
TSPAN = (0.0, 1.5)
T_SAVE = np.linspace(*TSPAN, 30)
LAYERS = [2, 50, 2]
SOLVE_KW = {"saveat": T_SAVE, "rtol": 1e-6, "atol": 1e-6, "sensealg": "DiscreteAdjoint"}
DEFAULT_OUT = Path(__file__).resolve().with_name("neural_ode_gpu.png")


def make_model() -> nn.MLP:
    return nn.MLP(LAYERS, input_transform="cube")


def make_data() -> np.ndarray:
    prob = ade.ODEProblem(lambda u, p, t: (u**3) @ A_TRUE, U0, TSPAN)
    return np.asarray(ade.solve(prob, saveat=T_SAVE, rtol=1e-10, atol=1e-10).u)


def unavailable_reason(name: str) -> str | None:
    """Why backend ``name`` cannot run here (``None`` when it can)."""
    try:
        return ade.registry().backend(name).unavailable_reason()
    except ade.UnknownName:
        return f"no autodiffeq plugin registers a backend named {name!r}"


def to_host(backend: Any, x: Any) -> Any:
    """``x`` on the host: a differentiated solve already returns NumPy (autograd's boxes,
    kept so the loss stays differentiable); a plain solve returns backend arrays."""
    return x if isinstance(x, np.ndarray) or isbox(x) else np.asarray(backend.to_host(x))


def loss_gradient(backend: str, data: np.ndarray, p0: np.ndarray) -> np.ndarray:
    """The gradient of the training loss at ``p0``, the model solved on ``backend``."""
    be = ade.registry().get_backend(backend)
    node = nn.NeuralODE(make_model(), TSPAN, "Tsit5", backend=backend, **SOLVE_KW)
    return to_host(be, grad(lambda q: anp.mean((to_host(be, node(U0, q)) - data) ** 2))(p0))


def gradient_check(backend: str, data: np.ndarray) -> tuple[bool, str]:
    """One loss gradient of the same ``nn.MLP`` neural ODE on ``backend`` and on NumPy:
    (whether it ran, the line to print)."""
    p0 = make_model().init_params(seed=0)
    g_np = loss_gradient("numpy", data, p0)
    try:
        g_xp = loss_gradient(backend, data, p0)
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return False, (f"gradient check: nn.MLP's neural ODE fails on {backend!r}: "
                       f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    rel = float(np.linalg.norm(g_xp - g_np) / np.linalg.norm(g_np))
    return True, (f"gradient check: the loss gradient of the same nn.MLP neural ODE on "
                  f"{backend!r} is within {rel:.1e} (relative) of NumPy's at the initial "
                  f"parameters")


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
    print(f"available backends: {available}")
    if args.backend == "auto":
        why = unavailable_reason("cupy")
        backend = "numpy" if why else "cupy"
        if why:
            print(f"no GPU backend: 'cupy' is unavailable: {why}; running on NumPy")
    else:
        backend = args.backend
        if backend not in available:
            print(f"backend {backend!r} is not available here: {unavailable_reason(backend)} "
                  f"(available: {available})", file=sys.stderr)
            return 1
    be = reg.get_backend(backend)
    print(f"backend: {backend!r} on {getattr(be, 'device', '?')}")

    data = make_data()
    check_backend = backend if backend != "numpy" else "array_api_strict"
    if check_backend in available:
        ok, line = gradient_check(check_backend, data)
        print(line)
        if not ok and backend != "numpy":
            print(f"nn.MLP cannot train on {backend!r}; stopping", file=sys.stderr)
            return 1
    else:
        print("gradient check skipped: no non-NumPy backend available (pip install "
              "array-api-strict to check the non-NumPy path on the CPU)")

    model = make_model()
    node = nn.NeuralODE(model, TSPAN, "Tsit5", backend=backend, **SOLVE_KW)
    print(f"model: nn.MLP({LAYERS}, input_transform='cube'), {node.n_params} parameters; "
          f"Tsit5, DiscreteAdjoint, {len(T_SAVE)} saved times; Adam step 0.02, "
          f"{args.iters} iterations")

    def loss(p: Any, it: int = 0) -> Any:
        return anp.mean((to_host(be, node(U0, p)) - data) ** 2)

    value_grad = value_and_grad(loss)
    history: list[float] = []

    def gradient(p: np.ndarray, it: int) -> np.ndarray:
        value, g = value_grad(p)
        history.append(float(value))
        if it % 50 == 0:
            print(f"  adam {it:4d}  loss {float(value):.4g}", flush=True)
        return to_host(be, g)

    p0 = node.init_params(seed=0)
    t0 = time.perf_counter()
    p = adam(gradient, p0, step_size=0.02, num_iters=args.iters)
    elapsed = time.perf_counter() - t0
    initial, final = history[0], float(loss(p))
    print(f"backend {backend!r}: {args.iters} iterations in {elapsed:.1f} s "
          f"({1e3 * elapsed / max(args.iters, 1):.1f} ms each); loss {initial:.3g} -> "
          f"{final:.3g} ({initial / final:.0f}x)")

    dense = nn.NeuralODE(model, TSPAN, "Tsit5", backend=backend, saveat=np.linspace(*TSPAN, 200),
                         rtol=1e-6, atol=1e-6)
    plot(data, to_host(be, dense(U0, p0)), to_host(be, dense(U0, p)), history, backend, args.out)
    print(f"total {time.perf_counter() - start:.1f} s")
    if not final * 100 <= initial:
        print(f"FAILED: the loss fell only from {initial:.3g} to {final:.3g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
