"""Fitting the parameters of a delay differential equation: the delayed Lotka–Volterra model
of the paper.

    dx/dt =  a x(t - 1) - b x y        (prey: births one time unit after the fact)
    dy/dt = -c y + d x y               (predators)

with the constant history ``x(s) = y(s) = 1`` for ``s <= 0`` (so ``u0 = h(p, 0) = (1, 1)``,
``DDEProblem(..., u0=None)``) and ``t`` in ``[0, 10]`` (Rackauckas, Innes et al.,
"DiffEqFlux.jl – A Julia Library for Neural Differential Equations", 2019, the delay
differential equation layer). The example

1. generates data from the true parameters ``p* = (1.5, 1, 3, 1)`` (a tight solve, Vern7 at
   rtol 1e-10, saved at ``t = 0, 0.1, ..., 10``) with a little Gaussian noise (standard
   deviation ``--noise``, default 0.01, fixed seed);
2. checks the gradient of the loss

       loss(p) = sum over t_i of |u(t_i; p) - data_i|^2

   through ``ade.solve`` (``ForwardSensitivity``, ``ReverseMode`` and ``DiscreteAdjoint``,
   Tsit5 at rtol 1e-8) against central finite differences of rtol-1e-12 solves at the
   starting point;
3. fits ``p`` from ``p0 = (1.2, 0.8, 2.5, 1.2)`` with SciPy's BFGS
   (``scipy.optimize.minimize(method="BFGS", jac=True)``), the loss and its gradient from
   ``autograd.value_and_grad`` through the DDE solve (Tsit5, rtol 1e-6, atol 1e-8,
   ``--sensealg``, default ``ForwardSensitivity``);
4. prints the loss before and after and the recovered parameters, and plots the data with
   the trajectories of ``p0`` and of the fit (``dde_lotka_volterra.png`` next to this file, or
   ``--out PATH``; matplotlib with the Agg backend).

The delay couples every time to the one a unit earlier, so the solver steps onto the
discontinuities ``t = 1, 2, ..., 5`` of the solution's derivatives that the lag carries from
``t = 0`` (Tsit5 is of order 5); the solve's ``sol.t`` contains them. The script exits with
status 1 if the gradient disagrees with the differences or the fitted parameters are not
within 2 % of the truth. About 30 s of CPU time::

    python examples/dde_lotka_volterra.py [--sensealg ReverseMode] [--noise 0.01] [--out PATH]

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
from scipy.optimize import minimize

import autodiffeq as ade

P_TRUE = np.array([1.5, 1.0, 3.0, 1.0])
P0 = np.array([1.2, 0.8, 2.5, 1.2])
TSPAN = (0.0, 10.0)
TAU = 1.0
SAVEAT = np.linspace(0.0, 10.0, 101)  # every 0.1
RTOL, ATOL = 1e-6, 1e-8
#: loss of a solve that failed (the line search stepped into a blow-up): large, zero gradient
FAILED_LOSS = 1e8
DEFAULT_OUT = Path(__file__).resolve().with_name("dde_lotka_volterra.png")


def delayed_lv(u: Any, h: Any, p: Any, t: float) -> Any:
    """Right-hand side ``f(u, h, p, t)``; ``h(p, t - TAU)`` is the state one lag ago (written
    with autograd.numpy so that the gradient methods can trace it)."""
    x, y = u[0], u[1]
    x_lagged = h(p, t - TAU)[0]
    return anp.array([p[0] * x_lagged - p[1] * x * y, -p[2] * y + p[3] * x * y])


def history(p: Any, s: float) -> Any:
    """``h(p, s)`` for ``s <= 0``: both populations at 1."""
    return anp.ones(2)


def problem(p: Any) -> ade.DDEProblem:
    return ade.DDEProblem(delayed_lv, None, history, TSPAN, p, constant_lags=[TAU])


def make_data(noise: float, seed: int = 0) -> np.ndarray:
    sol = ade.solve(problem(P_TRUE), "Vern7", saveat=SAVEAT, rtol=1e-10, atol=1e-12)
    rng = np.random.default_rng(seed)
    return np.asarray(sol.u) + noise * rng.standard_normal((len(SAVEAT), 2))


def make_loss(data: np.ndarray, sensealg: str | None, rtol: float = RTOL,
              atol: float = ATOL) -> Any:
    """``loss(p) = sum |u(t_i; p) - data_i|^2``; a failed solve gets :data:`FAILED_LOSS` so
    that a line search backs off."""

    def loss(p: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ade.SolverWarning)
            sol = ade.solve(problem(p), "Tsit5", saveat=SAVEAT, rtol=rtol, atol=atol,
                            sensealg=sensealg)
        if sol.retcode != "Success" or len(sol.t) != len(SAVEAT):
            return FAILED_LOSS + 0.0 * anp.sum(p)
        return anp.sum((sol.u - data) ** 2)

    return loss


def check_gradient(data: np.ndarray) -> bool:
    """Gradients at ``P0`` through the solve against central differences of tight solves."""
    print("[2] gradient of the loss at p0 (Tsit5 rtol 1e-8) against central differences "
          "(rtol 1e-12 solves, step 1e-5)")
    tight = make_loss(data, None, 1e-12, 1e-14)
    step = 1e-5
    fd = np.array([(tight(P0 + step * e) - tight(P0 - step * e)) / (2 * step)
                   for e in np.eye(4)])
    print(f"    finite differences     {np.array2string(fd, precision=8)}")
    ok = True
    for method in ("ForwardSensitivity", "ReverseMode", "DiscreteAdjoint"):
        t0 = time.perf_counter()
        g = grad(make_loss(data, method, 1e-8, 1e-10))(P0)
        err = np.max(np.abs(g - fd)) / np.max(np.abs(fd))
        print(f"    {method:<22} {np.array2string(g, precision=8)}  relative difference "
              f"{err:.1e} ({time.perf_counter() - t0:.2f} s)")
        ok &= bool(err < 1e-5)
    return ok


def fit(data: np.ndarray, sensealg: str | None) -> np.ndarray:
    """BFGS from ``P0``; returns the fitted parameters."""
    loss = make_loss(data, sensealg)
    value_grad = value_and_grad(loss)
    last: dict[str, float] = {}

    def fun(p: np.ndarray) -> tuple[float, np.ndarray]:
        value, g = value_grad(p)
        last["loss"], last["grad"] = float(value), float(np.linalg.norm(g))
        return float(value), np.asarray(g, dtype=np.float64)

    def callback(p: np.ndarray) -> None:
        # the last evaluation BFGS made is the accepted point's
        print(f"    BFGS {callback.count:3d}  loss {last['loss']:12.6g}  |grad| "
              f"{last['grad']:9.3g}  p = {np.array2string(p, precision=5)}")
        callback.count += 1

    callback.count = 1  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    res = minimize(fun, P0, jac=True, method="BFGS", callback=callback,
                   options={"maxiter": 100, "gtol": 1e-3})
    print(f"    {res.nit} iterations, {res.nfev} loss and gradient evaluations in "
          f"{time.perf_counter() - t0:.1f} s: {res.message}")
    return np.asarray(res.x)


def plot(data: np.ndarray, p_fit: np.ndarray, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.linspace(*TSPAN, 500)
    before = ade.solve(problem(P0), "Tsit5", rtol=RTOL, atol=ATOL)(t)
    after = ade.solve(problem(p_fit), "Tsit5", rtol=RTOL, atol=ATOL)(t)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), sharey=True)
    for ax, u, title in ((axes[0], before, f"start: p0 = {np.round(P0, 3)}"),
                         (axes[1], after, f"fitted: p = {np.round(p_fit, 3)}")):
        for j, (name, colour) in enumerate((("prey x", "C0"), ("predators y", "C1"))):
            ax.plot(SAVEAT, data[:, j], ".", color=colour, ms=4, label=f"data {name}")
            ax.plot(t, u[:, j], "-", color=colour, label=f"model {name}")
        for k in range(1, 6):
            ax.axvline(k * TAU, color="gray", lw=0.5, ls=":")
        ax.set_xlabel("t")
        ax.set_title(title, fontsize=10)
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle("delayed Lotka-Volterra: x' = a x(t-1) - b x y, y' = -c y + d x y")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"[5] wrote {out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sensealg", default="ForwardSensitivity",
                    help="sensitivity method for the fit: ForwardSensitivity (default), "
                         "DiscreteAdjoint, ReverseMode, ForwardMode, or 'auto' to let "
                         "autodiffeq choose")
    ap.add_argument("--noise", type=float, default=0.01, help="noise on the data (0.01)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG path")
    args = ap.parse_args(argv)
    sensealg = None if args.sensealg == "auto" else args.sensealg
    start = time.perf_counter()

    data = make_data(args.noise)
    sol = ade.solve(problem(P_TRUE), "Tsit5", rtol=RTOL, atol=ATOL)
    stops = [t for t in (1.0, 2.0, 3.0, 4.0, 5.0) if t in sol.t.tolist()]
    print(f"[1] data: {len(SAVEAT)} times, noise {args.noise:g}; one Tsit5 solve at p*: "
          f"{sol.stats.naccept} steps, nf={sol.stats.nf}, discontinuities stepped onto: "
          f"{stops}")

    grad_ok = check_gradient(data)

    loss = make_loss(data, None)
    print(f"[3] fit with BFGS, sensealg={args.sensealg}, Tsit5 rtol={RTOL:g} atol={ATOL:g}")
    loss0 = float(loss(P0))
    p_fit = fit(data, sensealg)
    loss1 = float(loss(p_fit))
    rel = np.abs(p_fit - P_TRUE) / np.abs(P_TRUE)
    floor = 2 * len(SAVEAT) * args.noise**2  # the loss the data's noise alone gives
    print(f"[4] loss {loss0:.6g} -> {loss1:.6g} (noise floor ~ {floor:.3g})")
    print(f"    true      p = {np.array2string(P_TRUE, precision=5)}")
    print(f"    start     p = {np.array2string(P0, precision=5)}")
    print(f"    recovered p = {np.array2string(p_fit, precision=5)} (relative error "
          f"{', '.join(f'{v:.1e}' for v in rel)})")
    plot(data, p_fit, args.out)
    print(f"total {time.perf_counter() - start:.1f} s")

    failed = []
    if not grad_ok:
        failed.append("the gradient disagrees with central differences")
    if not np.all(rel < 0.02):
        failed.append("the fitted parameters are not within 2 % of the truth")
    for message in failed:
        print(f"FAILED: {message}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
