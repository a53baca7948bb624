"""RQ1 — gradients through the solver: Lotka–Volterra parameters fitted with every gradient route.

The Lotka–Volterra system of the paper (Rackauckas, Innes et al., "DiffEqFlux.jl – A Julia
Library for Neural Differential Equations", 2019)

    dx/dt =  a x - b x y,        dy/dt = -c y + d x y,        u(0) = (1, 1),   t in [0, 10],

with the true parameters ``p* = (a, b, c, d) = (1.5, 1, 3, 1)``. Data: the noise-free states at
``t = 0, 0.25, ..., 10`` (41 times) from a tight reference solve (Vern7, ``rtol = atol =
1e-12``). The parameters are fitted from ``p0 = (1.2, 0.8, 2.8, 0.8)`` by minimising

    loss(p) = sum_i |u(t_i; p) - u_data(t_i)|^2        (Tsit5, rtol 1e-6, atol 1e-8)

with SciPy's L-BFGS-B (``scipy.optimize.minimize(..., jac=True)``, the value and gradient
from ``autograd.value_and_grad`` through ``ade.solve``), once for each gradient route
(``sensealg=``): reverse (``ReverseMode``: autograd's tape through the steps;
``DiscreteAdjoint``: transposed steps), forward (``ForwardMode``: autograd's forward mode
through the steps; ``ForwardSensitivity``: the forward sensitivity equations) and continuous
adjoints (``InterpolatingAdjoint``, ``BacksolveAdjoint``). Same data, start, optimiser and
options for all.

Prints a table: per route the CPU time of one loss-and-gradient evaluation (median over the
fit's evaluations, ``time.process_time``: indicative), L-BFGS iterations and evaluations, the
final loss, the largest relative error of the fitted parameters and the wall time of the fit.
Checks (exit status 1 when one fails):

1. every route recovers ``p*`` to 1e-3 relative (each parameter);
2. the gradients of all routes at ``p0`` agree: computed at ``rtol = 1e-8, atol = 1e-10``,
   each within 1e-6 relative (2-norm) of the ``DiscreteAdjoint`` gradient. (The discrete
   routes differentiate the same discrete solution and agree to rounding; the continuous
   adjoints approximate the derivative of the exact solution, so their distance to the
   others falls with the tolerance: it is also printed at the fit's ``rtol = 1e-6``.)

Writes ``lotka_volterra_fit.png`` next to this file (``--out PATH``): the data against the
start and the fitted trajectories, and a bar chart of the time per gradient (matplotlib with
the Agg backend; skipped with a message when it is not installed). About 45 s on a 2-core
machine, most of it the two autograd-through-the-steps routes::

    python examples/paper/lotka_volterra_fit.py [--routes ReverseMode,DiscreteAdjoint] [--out PATH]
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
P_START = np.array([1.2, 0.8, 2.8, 0.8])
U0 = np.array([1.0, 1.0])
TSPAN = (0.0, 10.0)
T_DATA = np.linspace(0.0, 10.0, 41)
RTOL, ATOL = 1e-6, 1e-8  # the fit's tolerances
CHECK_RTOL, CHECK_ATOL = 1e-8, 1e-10  # the gradient comparison's
#: route name -> family (the paper's forward / reverse / adjoint)
ROUTES = {
    "ReverseMode": "reverse",
    "DiscreteAdjoint": "reverse",
    "ForwardMode": "forward",
    "ForwardSensitivity": "forward",
    "InterpolatingAdjoint": "adjoint",
    "BacksolveAdjoint": "adjoint",
}
REFERENCE = "DiscreteAdjoint"
PARAM_TOL, GRAD_TOL = 1e-3, 1e-6
FAILED_LOSS = 1e8  # loss of a solve that failed (a line search stepped into a blow-up)
SIGNS = np.array([1.0, -1.0])
DEFAULT_OUT = Path(__file__).resolve().with_name("lotka_volterra_fit.png")


def lotka_volterra(u: Any, p: Any, t: float) -> Any:
    """``f(u, p, t)`` with autograd.numpy (traceable: ReverseMode and ForwardMode need it):
    ``[a x - b x y, -c y + d x y] = SIGNS * ((a, c) u - (b, d) x y)``."""
    return SIGNS * (p[::2] * u - p[1::2] * (u[0] * u[1]))


def trajectory(p: Any, saveat: Any, rtol: float = RTOL, atol: float = ATOL,
               sensealg: str | None = None, alg: str = "Tsit5") -> Any:
    prob = ade.ODEProblem(lotka_volterra, U0, TSPAN, p)
    return ade.solve(prob, alg, saveat=saveat, rtol=rtol, atol=atol, sensealg=sensealg)


def make_data() -> np.ndarray:
    return np.asarray(trajectory(P_TRUE, T_DATA, 1e-12, 1e-12, alg="Vern7").u)


def make_loss(data: np.ndarray, sensealg: str, rtol: float = RTOL, atol: float = ATOL) -> Any:
    def loss(p: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ade.SolverWarning)
            sol = trajectory(p, T_DATA, rtol, atol, sensealg)
        if sol.retcode != "Success" or len(sol.t) != len(T_DATA):
            return FAILED_LOSS + 0.0 * anp.sum(p)
        return anp.sum((sol.u - data) ** 2)

    return loss


def fit(data: np.ndarray, route: str) -> dict[str, Any]:
    """L-BFGS-B from ``P_START`` with ``route``'s gradients; the CPU time of every
    loss-and-gradient evaluation is kept."""
    value_grad = value_and_grad(make_loss(data, route))
    times: list[float] = []
    first_grad: list[np.ndarray] = []

    def fun(p: np.ndarray) -> tuple[float, np.ndarray]:
        t0 = time.process_time()
        value, g = value_grad(p)
        times.append(time.process_time() - t0)
        g = np.asarray(g, dtype=np.float64)
        if not first_grad:
            first_grad.append(g)
        return float(value), g

    wall = time.perf_counter()
    res = minimize(fun, P_START.copy(), jac=True, method="L-BFGS-B", options={"maxiter": 100})
    wall = time.perf_counter() - wall
    return {"route": route, "family": ROUTES[route], "x": res.x, "loss": float(res.fun),
            "nit": int(res.nit), "nfev": int(res.nfev), "message": str(res.message),
            "t_grad": float(np.median(times)), "wall": wall, "g0": first_grad[0],
            "err": float(np.max(np.abs(res.x - P_TRUE) / P_TRUE))}


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def plot(data: np.ndarray, fits: list[dict[str, Any]], out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install '.[examples]')")
        return
    t = np.linspace(*TSPAN, 400)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.3), gridspec_kw={"width_ratios": [1.5, 1]})
    ax = axes[0]
    start = np.asarray(trajectory(P_START, t).u)
    ax.plot(t, start[:, 0], color="0.6", ls=":", label="start p0 (x, y)")
    ax.plot(t, start[:, 1], color="0.6", ls=":")
    styles = ["-", "--", "-.", ":", (0, (5, 1)), (0, (1, 1))]
    for k, f in enumerate(fits):
        u = np.asarray(trajectory(f["x"], t).u)
        for j, color in enumerate(("C0", "C3")):
            ax.plot(t, u[:, j], color=color, ls=styles[k % len(styles)], lw=1.2,
                    label=f"fit: {f['route']}" if j == 0 else None)
    ax.plot(T_DATA, data[:, 0], "ko", ms=3.5, label="data (prey x)")
    ax.plot(T_DATA, data[:, 1], "ks", ms=3.5, mfc="none", label="data (predators y)")
    ax.set_ylim(-0.3, 12.5)  # room for the legend
    ax.set_xlabel("t")
    ax.set_title("Lotka–Volterra: data, start and the six fits (on top of each other)",
                 fontsize=10)
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    ax = axes[1]
    names = [f["route"] for f in fits]
    colors = {"reverse": "C0", "forward": "C1", "adjoint": "C2"}
    ax.barh(names, [1e3 * f["t_grad"] for f in fits],
            color=[colors[f["family"]] for f in fits])
    ax.invert_yaxis()
    ax.set_xlabel("CPU time per loss + gradient (ms)")
    ax.set_title("blue: reverse, orange: forward, green: adjoint", fontsize=10)
    for k, f in enumerate(fits):
        ax.text(1e3 * f["t_grad"], k, f" {1e3 * f['t_grad']:.0f}", va="center", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--routes", default=",".join(ROUTES),
                    help="comma-separated sensitivity methods (default: all six)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG path")
    args = ap.parse_args(argv)
    routes = [r for r in args.routes.split(",") if r]
    unknown = [r for r in routes if r not in ROUTES]
    if unknown:
        ap.error(f"unknown route(s) {unknown}; choose from {list(ROUTES)}")
    start = time.perf_counter()
    data = make_data()
    print(f"Lotka-Volterra, p* = {P_TRUE.tolist()}, {len(T_DATA)} noise-free data points; "
          f"start p0 = {P_START.tolist()}; Tsit5 rtol={RTOL:g} atol={ATOL:g}; L-BFGS-B")

    # 1. the gradients at p0 at a tight tolerance: do the routes agree?
    grads = {}
    for route in dict.fromkeys(routes + [REFERENCE]):
        grads[route] = np.asarray(grad(make_loss(data, route, CHECK_RTOL, CHECK_ATOL))(P_START))
    ref = grads[REFERENCE]
    print(f"gradient at p0 (rtol {CHECK_RTOL:g}, {REFERENCE}): {np.array2string(ref, precision=6)}")

    # 2. the fits
    fits = []
    for route in routes:
        f = fit(data, route)
        fits.append(f)
        print(f"  {route:<21} {f['nit']:3d} iterations, {f['nfev']:3d} evaluations, loss "
              f"{f['loss']:.3e}, p = {np.array2string(f['x'], precision=6)} "
              f"({f['wall']:.1f} s)", flush=True)
    g0_ref = next((f["g0"] for f in fits if f["route"] == REFERENCE), None)

    print()
    print("| route | family | ms per gradient | iterations | evaluations | final loss | "
          "max rel. error of p | grad. diff. at p0, rtol 1e-8 | grad. diff., rtol 1e-6 | "
          "fit wall s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    failures = []
    for f in fits:
        d_tight = rel(grads[f["route"]], ref)
        d_fit = rel(f["g0"], g0_ref) if g0_ref is not None else float("nan")
        print(f"| {f['route']} | {f['family']} | {1e3 * f['t_grad']:.1f} | {f['nit']} | "
              f"{f['nfev']} | {f['loss']:.2e} | {f['err']:.1e} | {d_tight:.1e} | "
              f"{d_fit:.1e} | {f['wall']:.1f} |")
        if not f["err"] <= PARAM_TOL:
            failures.append(f"{f['route']}: fitted p off by {f['err']:.2e} relative "
                            f"(> {PARAM_TOL:g}); {f['message']}")
        if not d_tight <= GRAD_TOL:
            failures.append(f"{f['route']}: gradient at p0 differs from {REFERENCE}'s by "
                            f"{d_tight:.2e} relative (> {GRAD_TOL:g})")
    print()
    fastest = min(fits, key=lambda f: f["t_grad"])
    slowest = max(fits, key=lambda f: f["t_grad"])
    print(f"fastest gradient: {fastest['route']} ({1e3 * fastest['t_grad']:.1f} ms); slowest: "
          f"{slowest['route']} ({1e3 * slowest['t_grad']:.1f} ms, "
          f"{slowest['t_grad'] / fastest['t_grad']:.0f}x); times are CPU times, indicative")
    plot(data, fits, args.out)
    print(f"total {time.perf_counter() - start:.1f} s")
    if failures:
        for line in failures:
            print(f"FAILED: {line}", file=sys.stderr)
        return 1
    print(f"all {len(fits)} routes recover p* to {PARAM_TOL:g} relative and agree on the "
          f"gradient at p0 to {GRAD_TOL:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
