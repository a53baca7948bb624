"""Sensitivities of ROBER's solution to its rate constants, with a Rosenbrock solver.

Robertson's chemical kinetics (Hairer & Wanner II, IV.10) is the classic stiff problem:

    y1' = -k1 y1 + k3 y2 y3
    y2' =  k1 y1 - k2 y2^2 - k3 y2 y3
    y3' =  k2 y2^2,            y(0) = (1, 0, 0),   (k1, k2, k3) = (0.04, 3e7, 1e4).

This example computes, with Rodas5P,

1. the local sensitivities ``d y(t_i) / d log k_j`` at logarithmically spaced times by the
   forward sensitivity equations (``ade.local_sensitivities``, no autograd in this code);
2. the gradient of a scalar loss on the saved states with respect to ``k`` through
   ``autograd.grad`` with three sensitivity methods (ForwardSensitivity, DiscreteAdjoint,
   InterpolatingAdjoint);

and checks both against central finite differences of tightly solved problems. It prints the
comparison, exits non-zero if any disagree beyond 1e-4 (relative), and writes
``rober_sensitivities.png`` next to this file (``--out PATH`` to choose).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import autograd.numpy as anp
import numpy as np
from autograd import grad

import autodiffeq as ade

K0 = np.array([0.04, 3e7, 1e4])
U0 = np.array([1.0, 0.0, 0.0])
TSPAN = (0.0, 1e5)
TIMES = np.logspace(-4, 5, 28)
WEIGHTS = np.array([1.0, 1e4, 1.0])  # y2 is ~1e-5: weigh it like the others


def robertson(u, k, t):
    return anp.stack([
        -k[0] * u[0] + k[2] * u[1] * u[2],
        k[0] * u[0] - k[1] * u[1] ** 2 - k[2] * u[1] * u[2],
        k[1] * u[1] ** 2,
    ])


def solve(k, rtol=1e-8, sensealg=None):
    prob = ade.ODEProblem(robertson, U0, TSPAN, k)
    return ade.solve(prob, "Rodas5P", saveat=TIMES, rtol=rtol, atol=1e-14, sensealg=sensealg)


def loss(k, sensealg=None, rtol=1e-8):
    return anp.sum(WEIGHTS * solve(k, rtol, sensealg).u ** 2)


DEFAULT_OUT = Path(__file__).resolve().with_name("rober_sensitivities.png")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG path")
    out = ap.parse_args().out
    ok = True
    # 1. local sensitivities d y / d log k (forward sensitivity equations)
    start = time.perf_counter()
    res = ade.local_sensitivities(ade.ODEProblem(robertson, U0, TSPAN, K0), "Rodas5P",
                                  saveat=TIMES, rtol=1e-8, atol=1e-14, wrt=("p",))
    elapsed = time.perf_counter() - start
    S = res.du_dp * K0  # (len(TIMES), 3, 3): d y_i / d log k_j
    print(f"local sensitivities: {res.retcode}, {elapsed:.2f} s, {res.stats.naccept} steps")
    fd = np.zeros_like(S)
    for j in range(3):
        h = 1e-6
        up = solve(K0 * np.exp(np.eye(3)[j] * h), rtol=1e-12).u
        down = solve(K0 * np.exp(-np.eye(3)[j] * h), rtol=1e-12).u
        fd[:, :, j] = (up - down) / (2 * h)
    scale = np.abs(fd).max(axis=0, keepdims=True) + 1e-300
    err = float(np.max(np.abs(S - fd) / scale))
    print(f"  max error vs finite differences (relative to each entry's range): {err:.2e}")
    ok &= err < 1e-4

    # 2. gradient of a loss through autograd.grad, three methods
    fd_grad = np.array([
        (loss(K0 * np.exp(e * 1e-6), rtol=1e-12) - loss(K0 * np.exp(-e * 1e-6), rtol=1e-12))
        / 2e-6
        for e in np.eye(3)
    ])
    print(f"gradient of the loss w.r.t. log k, finite differences: {fd_grad}")
    for method in ("ForwardSensitivity", "DiscreteAdjoint", "InterpolatingAdjoint"):
        start = time.perf_counter()
        g = grad(loss)(K0, method) * K0
        elapsed = time.perf_counter() - start
        rel = float(np.max(np.abs(g - fd_grad)) / np.max(np.abs(fd_grad)))
        print(f"  {method:21s} {g}  rel. error {rel:.1e}  ({elapsed:.2f} s)")
        ok &= rel < 1e-4

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot (pip install '.[examples]')")
    else:
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharex=True)
        names = ["k1", "k2", "k3"]
        for i, ax in enumerate(axes):
            for j in range(3):
                ax.semilogx(TIMES, S[:, i, j], label=f"d y{i + 1} / d log {names[j]}")
                ax.semilogx(TIMES, fd[:, i, j], "k:", lw=1)
            ax.set_title(f"y{i + 1}")
            ax.set_xlabel("t")
            ax.legend(fontsize=7)
        fig.suptitle("ROBER: local sensitivities (Rodas5P; dotted: finite differences)")
        fig.tight_layout()
        fig.savefig(out, dpi=120)
        print(f"wrote {out}")
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
