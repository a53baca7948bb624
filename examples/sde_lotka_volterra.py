"""Fitting the drift of a stochastic differential equation: the stochastic Lotka–Volterra model
of the paper, with multiplicative (diagonal) noise.

    du1 = ( a u1 - b u1 u2) dt + s1 u1 dW1        (prey)
    du2 = (-c u2 + d u1 u2) dt + s2 u2 dW2        (predators)

with ``u(0) = (1, 1)``, ``t`` in ``[0, 10]`` and ``s1 = s2 = 0.1`` (Rackauckas, Innes et al.,
"DiffEqFlux.jl – A Julia Library for Neural Differential Equations", 2019, the stochastic
differential equation layer). Many paths are one state: ``u`` has shape ``(2, P)``, row 0 the
prey and row 1 the predators of ``P`` independent paths, and with ``noise="diagonal"`` each of
the ``2 P`` components has its own Wiener process, so one solve gives ``P`` paths. (The
component ``g_i = s u_i`` depends on ``u_i`` only, as the order-1.5 SRI methods assume.)

The example

1. generates data from the true parameters ``p* = (1.5, 1, 3, 1)``: the mean over 4000 paths
   (seed 1; SRIW1 with fixed steps ``dt = 0.01``) at ``t = 0, 0.25, ..., 10``;
2. fixes one Brownian path for ``P = --paths`` (default 256) other paths
   (``ade.BrownianPath(..., seed=2)``) and defines the loss

       loss(p) = sum over t_i of |mean over paths of u(t_i; p) - data_i|^2

   through ``ade.solve(..., brownian=W)`` (SRIW1, fixed ``dt = 0.05``): on a fixed path the
   solve is a deterministic function of ``p``, and its gradient is the pathwise one;
3. checks the gradient at the starting point (``DiscreteAdjoint`` and ``ReverseMode``)
   against central finite differences of the same discrete solution (same path, same steps);
4. fits ``(a, b, c, d)`` from ``p0 = (1.2, 0.8, 2.5, 1.2)`` with SciPy's BFGS
   (``scipy.optimize.minimize(method="BFGS", jac=True)``), the loss and its gradient from
   ``autograd.value_and_grad`` through the SDE solve (``--sensealg``, default
   ``DiscreteAdjoint``);
5. prints the loss before and after (and at ``p*`` on the same path: the Monte Carlo floor of
   ``P`` paths against the data's 4000), the true and fitted parameters, and plots 20 paths
   of the fitted model with the means of the data, of the start and of the fit
   (``sde_lotka_volterra.png`` next to this file, or ``--out PATH``; matplotlib with the Agg
   backend, skipped with a message when matplotlib is not installed).

The noise levels are not fitted: the mean over paths hardly depends on them. The fitted
parameters differ from ``p*`` by the Monte Carlo error of a mean over ``P`` paths (up to about
1 % at ``P = 256``; more paths, less error, slower). The script exits with status 1 if the
gradient disagrees with the differences or a fitted parameter is more than 5 % from the
truth. About 15 s of CPU time::

    python examples/sde_lotka_volterra.py [--paths 256] [--sensealg ReverseMode] [--out PATH]
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
from scipy.optimize import minimize

import autodiffeq as ade

P_TRUE = np.array([1.5, 1.0, 3.0, 1.0])
P0 = np.array([1.2, 0.8, 2.5, 1.2])
SIGMA = np.array([0.1, 0.1])
TSPAN = (0.0, 10.0)
SAVEAT = np.linspace(0.0, 10.0, 41)  # every 0.25
DATA_PATHS, DATA_SEED, DATA_DT = 4000, 1, 0.01
FIT_SEED, FIT_DT = 2, 0.05
ALG = "SRIW1"
#: loss of a solve that failed (the line search stepped into a blow-up): large, zero gradient
FAILED_LOSS = 1e8
DEFAULT_OUT = Path(__file__).resolve().with_name("sde_lotka_volterra.png")


def drift(u: Any, p: Any, t: float) -> Any:
    """``f(u, p, t)`` on ``u`` of shape ``(2, P)`` (written with autograd.numpy, so that the
    gradient methods can trace it)."""
    x, y = u[0], u[1]
    return anp.stack([p[0] * x - p[1] * x * y, -p[2] * y + p[3] * x * y])


def diffusion(u: Any, p: Any, t: float) -> Any:
    """``g(u, p, t)``: multiplicative noise ``s_i u_i`` on each component (diagonal noise)."""
    return SIGMA[:, None] * u


def problem(p: Any, paths: int) -> ade.SDEProblem:
    return ade.SDEProblem(drift, diffusion, np.ones((2, paths)), TSPAN, p, noise="diagonal")


def make_data() -> np.ndarray:
    """The mean over :data:`DATA_PATHS` paths at :data:`SAVEAT`, shape ``(len(SAVEAT), 2)``."""
    sol = ade.solve(problem(P_TRUE, DATA_PATHS), ALG, seed=DATA_SEED, dt=DATA_DT,
                    adaptive=False, saveat=SAVEAT)
    return np.asarray(sol.u).mean(axis=2)  # sol.u: (len(SAVEAT), 2, DATA_PATHS)


def make_loss(data: np.ndarray, W: ade.BrownianPath, sensealg: str | None) -> Any:
    """``loss(p) = sum |mean_paths u(t_i; p) - data_i|^2`` on the fixed path ``W``; a failed
    solve gets :data:`FAILED_LOSS` so that a line search backs off."""
    paths = W.shape[1]

    def loss(p: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ade.SolverWarning)
            sol = ade.solve(problem(p, paths), ALG, brownian=W, dt=FIT_DT, adaptive=False,
                            saveat=SAVEAT, sensealg=sensealg)
        if sol.retcode != "Success" or len(sol.t) != len(SAVEAT):
            return FAILED_LOSS + 0.0 * anp.sum(p)
        return anp.sum((anp.mean(sol.u, axis=2) - data) ** 2)

    return loss


def check_gradient(data: np.ndarray, W: ade.BrownianPath) -> bool:
    """The gradient at ``P0`` against central differences of the same discrete solution."""
    print("[2] gradient of the loss at p0 against central differences (same path, same steps,"
          " step 1e-6)")
    plain = make_loss(data, W, None)
    step = 1e-6
    fd = np.array([(plain(P0 + step * e) - plain(P0 - step * e)) / (2 * step)
                   for e in np.eye(4)])
    print(f"    finite differences {np.array2string(fd, precision=6)}")
    ok = True
    for method in ("DiscreteAdjoint", "ReverseMode"):
        t0 = time.perf_counter()
        g = grad(make_loss(data, W, method))(P0)
        err = float(np.max(np.abs(g - fd)) / np.max(np.abs(fd)))
        print(f"    {method:<18} {np.array2string(g, precision=6)}  relative difference "
              f"{err:.1e} ({time.perf_counter() - t0:.2f} s)")
        ok &= err < 1e-6
    return ok


def fit(loss: Any) -> np.ndarray:
    """BFGS from ``P0``; returns the fitted parameters."""
    value_grad = value_and_grad(loss)
    last: dict[str, float] = {}

    def fun(p: np.ndarray) -> tuple[float, np.ndarray]:
        value, g = value_grad(p)
        last["loss"], last["grad"] = float(value), float(np.linalg.norm(g))
        return float(value), np.asarray(g, dtype=np.float64)

    def callback(p: np.ndarray) -> None:
        print(f"    BFGS {callback.count:3d}  loss {last['loss']:11.5g}  |grad| "
              f"{last['grad']:9.3g}  p = {np.array2string(p, precision=5)}")
        callback.count += 1

    callback.count = 1  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    res = minimize(fun, P0, jac=True, method="BFGS", callback=callback,
                   options={"maxiter": 60, "gtol": 1e-4})
    print(f"    {res.nit} iterations, {res.nfev} loss and gradient evaluations in "
          f"{time.perf_counter() - t0:.1f} s: {res.message}")
    return np.asarray(res.x)


def plot(data: np.ndarray, W: ade.BrownianPath, p_fit: np.ndarray, out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("[5] matplotlib is not installed: no plot (pip install '.[plot]')")
        return

    t = np.linspace(*TSPAN, 201)  # on the fixed step grid: every 0.05
    paths = W.shape[1]
    u = {}
    for name, p in (("start p0", P0), ("fit", p_fit)):
        sol = ade.solve(problem(p, paths), ALG, brownian=W, dt=FIT_DT, adaptive=False,
                        saveat=t)
        u[name] = np.asarray(sol.u)  # (len(t), 2, paths)
    means = {name: v.mean(axis=2) for name, v in u.items()}
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), sharey=True)
    for j, (ax, name) in enumerate(zip(axes, ("prey u1", "predators u2"), strict=True)):
        ax.plot(t, u["fit"][:, j, :20], color="0.75", lw=0.6)
        ax.plot([], [], color="0.75", lw=0.6, label="20 of the fitted model's paths")
        ax.plot(SAVEAT, data[:, j], "o", color="k", ms=3.5, label=f"data: mean of {DATA_PATHS}")
        ax.plot(t, means["start p0"][:, j], "--", color="C1", label=f"mean of {paths}, p0")
        ax.plot(t, means["fit"][:, j], "-", color="C0", lw=2, label=f"mean of {paths}, fitted")
        ax.set_xlabel("t")
        ax.set_title(name)
    axes[0].legend(loc="upper right", fontsize=8)
    fig.suptitle("stochastic Lotka-Volterra, multiplicative noise 0.1: fitted p = "
                 f"{np.round(p_fit, 3)} (true {P_TRUE})", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"[5] wrote {out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paths", type=int, default=256, help="paths of the fitted model (256)")
    ap.add_argument("--sensealg", default="DiscreteAdjoint",
                    help="sensitivity method for the fit: DiscreteAdjoint (default), "
                         "ReverseMode, ForwardMode, or 'auto' to let autodiffeq choose")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG path")
    args = ap.parse_args(argv)
    sensealg = None if args.sensealg == "auto" else args.sensealg
    start = time.perf_counter()

    data = make_data()
    print(f"[1] data: mean of {DATA_PATHS} paths at {len(SAVEAT)} times ({ALG}, dt={DATA_DT}, "
          f"seed {DATA_SEED}), {time.perf_counter() - start:.1f} s")
    W = ade.BrownianPath(TSPAN, (2, args.paths), seed=FIT_SEED)

    grad_ok = check_gradient(data, W)

    loss = make_loss(data, W, sensealg)
    print(f"[3] fit with BFGS, {args.paths} paths on a fixed Brownian path (seed {FIT_SEED}), "
          f"{ALG} dt={FIT_DT}, sensealg={args.sensealg}")
    loss0 = float(loss(P0))
    p_fit = fit(loss)
    loss1, floor = float(loss(p_fit)), float(loss(P_TRUE))
    rel = np.abs(p_fit - P_TRUE) / np.abs(P_TRUE)
    print(f"[4] loss {loss0:.6g} -> {loss1:.6g} (at p* on the same path: {floor:.4g}, the "
          f"Monte Carlo error of {args.paths} paths)")
    print(f"    true   p = {np.array2string(P_TRUE, precision=5)}")
    print(f"    start  p = {np.array2string(P0, precision=5)}")
    print(f"    fitted p = {np.array2string(p_fit, precision=5)} (relative error "
          f"{', '.join(f'{v:.1e}' for v in rel)})")
    plot(data, W, p_fit, args.out)
    print(f"total {time.perf_counter() - start:.1f} s")

    failed = []
    if not grad_ok:
        failed.append("the gradient disagrees with central differences")
    if not np.all(rel < 0.05):
        failed.append("the fitted parameters are not within 5 % of the truth")
    for message in failed:
        print(f"FAILED: {message}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
