"""RQ3 — gradient cost against the number of parameters: forward, reverse and adjoint methods.

The spiral neural ODE of the paper (Rackauckas, Innes et al., "DiffEqFlux.jl – A Julia
Library for Neural Differential Equations", 2019): data from ``u' = A u^3``, ``A = [[-0.1,
2], [-2, -0.1]]``, ``u(0) = (2, 0)``, saved at 20 times in ``[0, 1.5]``; model ``u' =
MLP(u^3)``, ``nn.MLP([2, H, 2], input_transform="cube")`` (``5 H + 2`` parameters, seed 0),
in ``nn.NeuralODE(model, (0, 1.5), "Tsit5", saveat=t, rtol=1e-6, atol=1e-8,
sensealg=...)``. Loss: the sum of squared errors over the saved states. For widths ``H = 4,
8, 16, 32, 64, 128`` (22 to 642 parameters) one gradient of the loss (``autograd.grad``
through the layer) is timed for each method:

* forward: ``ForwardSensitivity`` (sensitivity equations, batched JVPs of the network),
  ``ForwardMode`` (autograd's forward mode through every step);
* reverse: ``ReverseMode`` (autograd's tape through every step), ``DiscreteAdjoint``
  (transposed steps with the network's hand-derived VJPs);
* adjoint: ``InterpolatingAdjoint``, ``BacksolveAdjoint`` (continuous adjoints).

Timing: one warm-up call, then the median of ``--repeats`` calls (3; the warm-up alone when it
took over 1 s), garbage collected before each, CPU time of this process
(``time.process_time``; BLAS limited to one thread), so another job on the machine disturbs it
less; indicative. A method whose predicted time (its last time scaled by the parameter ratio)
exceeds ``--budget`` seconds (10) is skipped at the larger widths. Prints the table (time,
forward steps, relative difference of the gradient from ``DiscreteAdjoint``'s) and the slope
of a least-squares line through ``log time`` against ``log n_params`` per method: the cost of
a forward method grows with the number of parameters (one tangent per parameter), that of a
reverse or adjoint method does not (one backward pass). Writes ``gradient_cost.png`` next to
this file (``--out PATH``), time against parameter count on log-log axes (matplotlib with the
Agg backend; skipped with a message when it is not installed).

Checks (exit status 1 when one fails): every gradient within 1e-3 relative of
``DiscreteAdjoint``'s (the discrete methods agree to rounding, the continuous adjoints to
their tolerance); each forward method's slope is at least 0.3 and above every reverse and
adjoint method's; each reverse/adjoint method's time at the largest width is within 3x of its
time at the smallest. About 20-30 s, most of it ForwardMode::

    python examples/paper/gradient_cost.py [--hidden 4,8,16,32,64,128] [--budget 10] [--out PATH]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import gc  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import autograd.numpy as anp  # noqa: E402
import numpy as np  # noqa: E402
from autograd import grad  # noqa: E402

import autodiffeq as ade  # noqa: E402
from autodiffeq import nn  # noqa: E402

A_TRUE = np.array([[-0.1, 2.0], [-2.0, -0.1]])
U0 = np.array([2.0, 0.0])
TSPAN = (0.0, 1.5)
T_SAVE = np.linspace(*TSPAN, 20)
RTOL, ATOL = 1e-6, 1e-8
#: method -> family
METHODS = {
    "ForwardSensitivity": "forward",
    "ForwardMode": "forward",
    "ReverseMode": "reverse",
    "DiscreteAdjoint": "reverse",
    "InterpolatingAdjoint": "adjoint",
    "BacksolveAdjoint": "adjoint",
}
REFERENCE = "DiscreteAdjoint"
GRAD_TOL, MIN_FORWARD_SLOPE, FLAT_RATIO = 1e-3, 0.3, 3.0
DEFAULT_OUT = Path(__file__).resolve().with_name("gradient_cost.png")


def make_data() -> np.ndarray:
    prob = ade.ODEProblem(lambda u, p, t: (u**3) @ A_TRUE, U0, TSPAN)
    return np.asarray(ade.solve(prob, "Vern7", saveat=T_SAVE, rtol=1e-10, atol=1e-12).u)


def make_gradient(hidden: int, method: str, data: np.ndarray) -> tuple[Any, np.ndarray, Any]:
    model = nn.MLP([2, hidden, 2], input_transform="cube")
    node = nn.NeuralODE(model, TSPAN, "Tsit5", sensealg=method, saveat=T_SAVE, rtol=RTOL,
                        atol=ATOL)

    def loss(p: Any) -> Any:
        return anp.sum((node(U0, p) - data) ** 2)

    return grad(loss), node.init_params(seed=0), node


def timed(fn: Any) -> tuple[float, Any]:
    gc.collect()
    t0 = time.process_time()
    out = fn()
    return time.process_time() - t0, out


def measure(g: Any, p: np.ndarray, repeats: int) -> tuple[float, np.ndarray]:
    first, value = timed(lambda: g(p))
    if first > 1.0 or repeats < 1:
        return first, np.asarray(value)
    times = [timed(lambda: g(p))[0] for _ in range(repeats)]
    return statistics.median(times), np.asarray(value)


def slope(xs: list[int], ys: list[float]) -> float:
    if len(xs) < 2:
        return float("nan")
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def plot(results: dict[str, dict[int, float]], slopes: dict[str, float], out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install '.[examples]')")
        return
    fig, ax = plt.subplots(figsize=(7.5, 5))
    styles = {"forward": ("-", "o"), "reverse": ("--", "s"), "adjoint": (":", "^")}
    for k, (method, by_n) in enumerate(results.items()):
        if not by_n:
            continue
        ls, marker = styles[METHODS[method]]
        n = sorted(by_n)
        ax.loglog(n, [1e3 * by_n[i] for i in n], ls=ls, marker=marker, color=f"C{k}",
                  label=f"{method} ({METHODS[method]}), slope {slopes[method]:.2f}")
    n_all = sorted({i for by_n in results.values() for i in by_n})
    if n_all:
        y0 = 1e3 * results[REFERENCE].get(n_all[0], 1e-2)
        ax.loglog(n_all, [y0 * i / n_all[0] for i in n_all], color="0.7", lw=0.8,
                  label="slope 1 (linear in n_params)")
    ax.set_xticks(n_all, [str(i) for i in n_all])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("number of parameters")
    ax.set_ylabel("CPU time of one gradient (ms)")
    ax.set_title("spiral neural ODE, MLP 2 -> H -> 2, Tsit5, 20 saved times", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7.5)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", default="4,8,16,32,64,128", help="hidden widths H")
    ap.add_argument("--methods", default=",".join(METHODS), help="sensitivity methods")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls after the warm-up")
    ap.add_argument("--budget", type=float, default=10.0,
                    help="skip a method once its predicted time exceeds this (s)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG path")
    args = ap.parse_args(argv)
    hiddens = [int(h) for h in args.hidden.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        ap.error(f"unknown method(s) {bad}; choose from {list(METHODS)}")
    if REFERENCE not in methods:
        methods.append(REFERENCE)
    start = time.perf_counter()
    data = make_data()
    results: dict[str, dict[int, float]] = {m: {} for m in methods}
    rows = []
    failures: list[str] = []
    print(f"spiral neural ODE, Tsit5 rtol={RTOL:g} atol={ATOL:g}, {len(T_SAVE)} saved times; "
          f"CPU time of one gradient (median of {args.repeats} after a warm-up)")
    for hidden in hiddens:
        grads: dict[str, np.ndarray] = {}
        for method in sorted(methods, key=lambda m: m != REFERENCE):  # the reference first
            g, p0, node = make_gradient(hidden, method, data)
            n = node.n_params
            done = results[method]
            if done:
                n_last = max(done)
                predicted = done[n_last] * n / n_last
                if predicted > args.budget:
                    rows.append((hidden, n, method, None, None, None,
                                 f"skipped: predicted {predicted:.0f} s > budget"))
                    print(f"  H={hidden:4d} n={n:4d} {method:<21} skipped (predicted "
                          f"{predicted:.0f} s)", flush=True)
                    continue
            t, value = measure(g, p0, args.repeats)
            grads[method] = value
            done[n] = t
            steps = node.last_solution.stats.naccept
            err = float(np.linalg.norm(value - grads[REFERENCE])
                        / np.linalg.norm(grads[REFERENCE]))
            rows.append((hidden, n, method, t, steps, err, ""))
            print(f"  H={hidden:4d} n={n:4d} {method:<21} {1e3 * t:9.1f} ms  {steps:3d} steps  "
                  f"diff {err:.1e}", flush=True)
            if not err <= GRAD_TOL:
                failures.append(f"{method} at H = {hidden}: gradient differs from "
                                f"{REFERENCE}'s by {err:.2e}")

    print()
    print("| H | n_params | method | family | ms per gradient | forward steps | "
          "rel. diff. from DiscreteAdjoint |")
    print("| ---: | ---: | --- | --- | ---: | ---: | ---: |")
    for hidden, n, method, t, steps, err, note in rows:
        if t is None:
            print(f"| {hidden} | {n} | {method} | {METHODS[method]} | {note} | | |")
        else:
            print(f"| {hidden} | {n} | {method} | {METHODS[method]} | {1e3 * t:.1f} | {steps} | "
                  f"{err:.1e} |")
    print()
    slopes = {}
    print("| method | family | slope of log time vs log n_params | slope between the two "
          "largest n | time at largest / smallest n measured |")
    print("| --- | --- | ---: | ---: | ---: |")
    for method, by_n in results.items():
        n = sorted(by_n)
        slopes[method] = slope(n, [by_n[i] for i in n])
        ratio = by_n[n[-1]] / by_n[n[0]] if n else float("nan")
        span = f"{ratio:.2f} ({n[0]} -> {n[-1]})" if n else "-"
        last = slope(n[-2:], [by_n[i] for i in n[-2:]])
        print(f"| {method} | {METHODS[method]} | {slopes[method]:.2f} | {last:.2f} | {span} |")
        if METHODS[method] != "forward" and len(n) > 1 and not ratio <= FLAT_RATIO:
            failures.append(f"{method}: time grew {ratio:.1f}x from {n[0]} to {n[-1]} "
                            f"parameters (> {FLAT_RATIO:g}x)")
    rev = [s for m, s in slopes.items() if METHODS[m] != "forward" and np.isfinite(s)]
    for method, s in slopes.items():
        if METHODS[method] == "forward" and np.isfinite(s):
            if not (s >= MIN_FORWARD_SLOPE and all(s > r for r in rev)):
                failures.append(f"{method}: slope {s:.2f}, expected >= {MIN_FORWARD_SLOPE} "
                                f"and above the reverse/adjoint slopes {np.round(rev, 2)}")
    plot(results, slopes, args.out)
    print(f"total {time.perf_counter() - start:.1f} s")
    for line in failures:
        print(f"FAILED: {line}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
