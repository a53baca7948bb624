"""A stiff delay equation: Rodas5P against an explicit solver and the stiffness-switching
default, checked against an independent SciPy Radau reference.

    du/dt = -lam (u(t) - cos t) + u(t - 1),     u(s) = 0 for s <= 0,     t in [0, 10],

with lam = 1e4. The state is pulled onto the slow manifold ``u ~ cos t + u(t - 1) / lam``
within ``1 / lam`` of every time, so the problem is stiff: an explicit method is held to
steps of about ``3.3 / lam`` by stability, not by accuracy, while a Rosenbrock method steps
as the smooth solution allows. (It is a Prothero–Robinson-type equation with a delayed
forcing; on these Rosenbrock methods without Steinebach's "P" conditions, such as Rodas4,
suffer order reduction and take many more steps.) The example

1. computes the reference with SciPy: ``solve_ivp`` with Radau (rtol 1e-12, the analytic
   Jacobian ``-lam``) interval by interval over ``[k, k + 1]``, each interval reading
   ``u(t - 1)`` from the previous interval's dense output (the method of steps by hand);
   on ``[0, 1]`` the history is 0 and the exact solution
   ``u = (lam^2 cos t + lam sin t - lam^2 e^(-lam t)) / (lam^2 + 1)`` checks the reference;
2. solves with Rodas5P at rtol 1e-6 and 1e-8, with Rodas4 at rtol 1e-6, with the default
   algorithm (``ade.solve(prob)`` without ``alg``: AutoTsit5Rodas5P at 1e-6,
   AutoVern7Rodas5P at 1e-8, which start explicitly and switch to Rodas5P once the initial
   layer has decayed; the switches are printed) and with the explicit Tsit5 at rtol 1e-6
   (a ``StiffnessWarning``, and a hundred times the steps);
3. prints, for each, the steps, evaluations, Jacobians, time, the error at t = 10, the largest
   error over the step ends and the largest error of the dense output ``sol(t)`` on a grid of
   step 1e-3 (between the steps of a Rosenbrock method the interpolant is not
   error-controlled: on this problem it is about a hundred times less accurate than the step
   ends);
4. plots ``u`` with the Rodas5P steps, the errors against ``t`` and the step sizes of every
   solver (``stiff_dde.png`` next to this file, or ``--out PATH``).

The script exits with status 1 if Rodas5P fails or its error at the step ends (which include
t = 10) exceeds 100 * rtol. About 5 s::

    python examples/stiff_dde.py [--lam 1e4] [--out PATH]

Requires matplotlib (``pip install ".[examples]"``).
"""

from __future__ import annotations

import argparse
import bisect
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy.integrate import solve_ivp

import autodiffeq as ade

TAU = 1.0
T1 = 10.0
DEFAULT_OUT = Path(__file__).resolve().with_name("stiff_dde.png")


def stiff_delayed(u: Any, h: Any, lam: float, t: float) -> Any:
    """Right-hand side ``f(u, h, p, t)`` with ``p = lam``."""
    return -lam * (u - np.cos(t)) + h(lam, t - TAU)


def history(lam: float, s: float) -> np.ndarray:
    """``u(s) = 0`` for ``s <= 0``."""
    return np.zeros(1)


def exact_first_interval(lam: float, t: np.ndarray) -> np.ndarray:
    """The solution on ``[0, 1]``, where ``u(t - 1) = 0``."""
    return (lam**2 * np.cos(t) + lam * np.sin(t) - lam**2 * np.exp(-lam * t)) / (lam**2 + 1)


def radau_reference(lam: float) -> tuple[Callable[[np.ndarray], np.ndarray], int]:
    """The method of steps by hand (module docstring); returns ``u(t)`` (vectorised) and the
    number of evaluations."""
    starts: list[float] = []
    pieces: list[Any] = []

    def past(s: float) -> float:
        if s <= 0.0:
            return 0.0
        i = bisect.bisect_right(starts, s) - 1
        return float(pieces[i](s)[0])

    def rhs(t: float, u: np.ndarray) -> np.ndarray:
        return -lam * (u - np.cos(t)) + past(t - TAU)

    t, u, nfev = 0.0, np.zeros(1), 0
    while t < T1:
        b = min(t + TAU, T1)
        res = solve_ivp(rhs, (t, b), u, method="Radau", rtol=1e-12, atol=1e-14,
                        jac=lambda t, u: np.array([[-lam]]), dense_output=True)
        if not res.success:
            sys.exit(f"SciPy Radau failed on [{t}, {b}]: {res.message}")
        starts.append(t)
        pieces.append(res.sol)
        nfev += res.nfev
        t, u = b, res.y[:, -1]
    return (lambda ts: np.array([past(s) for s in np.atleast_1d(ts)])), nfev


def run(prob: ade.DDEProblem, alg: str | None, rtol: float, reference: Any,
        grid: np.ndarray, ref_grid: np.ndarray) -> dict[str, Any]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        sol = ade.solve(prob, alg, rtol=rtol, atol=rtol * 1e-2)
        seconds = time.perf_counter() - start
    u_steps = np.asarray(sol.u)[:, 0]
    err_steps = np.abs(u_steps - reference(sol.t))
    err_dense = np.abs(np.asarray(sol(grid))[:, 0] - ref_grid)
    return {"sol": sol, "seconds": seconds, "err_end": err_steps[-1],
            "err_steps": err_steps.max(), "err_dense": err_dense.max(),
            "warnings": [w for w in caught
                         if issubclass(w.category, (ade.SolverWarning, ade.StiffnessWarning))]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lam", type=float, default=1e4, help="stiffness lam (1e4)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG path")
    args = ap.parse_args(argv)
    lam = args.lam
    start = time.perf_counter()

    reference, nfev = radau_reference(lam)
    first = np.linspace(0.0, 1.0, 1001)
    check = np.max(np.abs(reference(first) - exact_first_interval(lam, first)))
    print(f"[1] SciPy Radau reference (rtol 1e-12, 10 intervals of length 1): nfev={nfev}, "
          f"{time.perf_counter() - start:.2f} s; u(10) = {reference(T1)[0]:.12f}; on [0, 1] "
          f"it differs from the exact solution by at most {check:.1e}")

    prob = ade.DDEProblem(stiff_delayed, None, history, (0.0, T1), lam, constant_lags=[TAU])
    grid = np.linspace(0.0, T1, 10_001)
    ade.solve(prob, "Rodas5P", rtol=1e-3)  # warm-up: the timings below are of the solves
    ref_grid = reference(grid)
    print(f"[2] u' = -{lam:g} (u - cos t) + u(t - 1), u = 0 before t = 0, t in [0, {T1:g}]")
    print(f"    {'solver':<25} {'rtol':>5} {'steps':>6} {'rej':>4} {'nf':>7} {'njac':>5} "
          f"{'time':>8}  {'err t=10':>8} {'steps':>8} {'dense':>8}")
    runs: list[tuple[str, float, dict[str, Any]]] = []
    for alg, rtol in (("Rodas5P", 1e-6), ("Rodas5P", 1e-8), ("Rodas4", 1e-6), (None, 1e-6),
                      (None, 1e-8), ("Tsit5", 1e-6)):
        r = run(prob, alg, rtol, reference, grid, ref_grid)
        sol, st = r["sol"], r["sol"].stats
        name = sol.alg.name if alg is not None else f"default {sol.alg.name}"
        runs.append((name, rtol, r))
        print(f"    {name:<25} {rtol:>5.0e} {st.naccept:>6} {st.nreject:>4} {st.nf:>7} "
              f"{st.njac:>5} {r['seconds'] * 1e3:>6.0f} ms  {r['err_end']:>8.1e} "
              f"{r['err_steps']:>8.1e} {r['err_dense']:>8.1e}  {sol.retcode}")
        for w in r["warnings"]:
            print(f"        {w.category.__name__}: {w.message}")
        if alg is None:
            stepper = sol.dense_output.stepper
            switches = ", ".join(
                f"to {stepper.names[0] if kind == 'nonstiff' else stepper.names[1]} at "
                f"t = {t:.4g}" for t, kind in stepper.switches)
            print(f"        switched {switches}")

    rodas = {rtol: r for name, rtol, r in runs if name == "Rodas5P"}
    tsit5 = next(r for name, _, r in runs if name == "Tsit5")
    ratio = tsit5["sol"].stats.naccept / rodas[1e-6]["sol"].stats.naccept
    print(f"[3] at rtol 1e-6 Tsit5 took {ratio:.0f} times the steps of Rodas5P "
          f"({tsit5['seconds'] / rodas[1e-6]['seconds']:.0f} times the time)")
    plot(lam, [(name, rtol, r["sol"]) for name, rtol, r in runs if rtol == 1e-6], reference,
         grid, ref_grid, args.out)
    print(f"total {time.perf_counter() - start:.1f} s")

    failed = []
    for rtol, r in rodas.items():
        if not r["sol"].success:
            failed.append(f"Rodas5P at rtol {rtol:g}: retcode {r['sol'].retcode}")
        elif not r["err_steps"] <= 100 * rtol:
            failed.append(f"Rodas5P at rtol {rtol:g}: error {r['err_steps']:.2e} at the step "
                          "ends exceeds 100 * rtol")
    for message in failed:
        print(f"FAILED: {message}", file=sys.stderr)
    return 1 if failed else 0


def plot(lam: float, sols: list[tuple[str, float, ade.Solution]], reference: Any,
         grid: np.ndarray, ref_grid: np.ndarray, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rodas = next(sol for name, _, sol in sols if name == "Rodas5P")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    axes[0].plot(grid, np.asarray(rodas(grid))[:, 0], label="u (Rodas5P dense output)")
    axes[0].plot(rodas.t, np.asarray(rodas.u)[:, 0], "k.", ms=4, label="Rodas5P steps")
    axes[0].set_xlabel("t")
    axes[0].set_title(f"u' = -{lam:g} (u - cos t) + u(t - 1), u = 0 for t <= 0", fontsize=10)
    axes[0].legend(fontsize=8)
    for k, (name, _, sol) in enumerate(sols):
        err = np.abs(np.asarray(sol(grid))[:, 0] - ref_grid)
        axes[1].semilogy(grid[1:], np.maximum(err[1:], 1e-16), lw=0.6, color=f"C{k}",
                         zorder=len(sols) - k, label=f"{name}: dense output")
    steps_err = np.abs(np.asarray(rodas.u)[:, 0] - reference(rodas.t))
    axes[1].semilogy(rodas.t[1:], np.maximum(steps_err[1:], 1e-16), "k.", ms=4,
                     zorder=len(sols) + 1, label="Rodas5P: step ends")
    axes[1].set_xlabel("t")
    axes[1].set_ylabel("|u - u_ref|")
    axes[1].set_title("error against SciPy Radau at rtol 1e-6", fontsize=10)
    axes[1].legend(fontsize=7)
    for k, (name, _, sol) in enumerate(sols):
        ts = np.asarray(sol.t)
        axes[2].semilogy(ts[1:], np.diff(ts), ".", ms=2, color=f"C{k}", label=name)
    for k in range(1, 10):
        axes[2].axvline(k * TAU, color="gray", lw=0.5, ls=":")
    axes[2].set_xlabel("t")
    axes[2].set_ylabel("step size")
    axes[2].set_title("accepted steps at rtol 1e-6", fontsize=10)
    axes[2].legend(fontsize=8, markerscale=4)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"[4] wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
