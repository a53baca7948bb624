"""A bouncing ball: events, a terminal event and a gradient through the bounces.

    dx/dt = v,    dv/dt = -g,        x(0) = 1 m, v(0) = 0, g = 9.81 m/s^2

The ball bounces where the height x reaches 0 going down (a ``ContinuousCallback`` with
``direction=-1``) and leaves with ``v -> -e v`` (coefficient of restitution e = 0.8). With
t1 = sqrt(2 x0 / g) the n-th bounce is at

    t_n = t1 (1 + 2 (e + e^2 + ... + e^(n-1))),    so    dt_n/de = 2 t1 sum_k k e^(k-1),

and the flight after bounce k rises to e^(2k) x0. The example

1. solves with the bounce callback and a terminal callback that stops the solve at the top
   of the first flight lower than 20 cm (after the 4th bounce: e^8 x0 = 0.168 m), and prints
   the bounce times, the stop time and the apex against the formulas;
2. plots the trajectory from the dense output ``sol(t)``, which jumps at each bounce
   (``bouncing_ball.png`` next to this file, or ``--out PATH``; matplotlib with Agg);
3. differentiates the 3rd bounce time with respect to e through ``ade.solve`` with
   ``autograd.grad`` (``ForwardSensitivity`` and ``DiscreteAdjoint``) and prints it next to
   the analytic value and central finite differences of tightly solved problems.

It exits with status 1 if a number disagrees with its analytic value. Run from anywhere::

    python examples/bouncing_ball.py [--out PATH]

Requires matplotlib (``pip install ".[examples]"``).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import autograd.numpy as anp
import numpy as np
from autograd import grad

import autodiffeq as ade

G, E, X0 = 9.81, 0.8, 1.0
H_MIN = 0.2  # stop at the top of the first flight lower than this (m)
N_GRAD = 3  # differentiate the time of this bounce
RTOL, ATOL = 1e-10, 1e-12
DEFAULT_OUT = Path(__file__).resolve().with_name("bouncing_ball.png")


def ball(u, p, t):
    """Free fall ``f(u, p, t)`` with ``p = [g, e]`` (written with autograd.numpy)."""
    return anp.stack([u[1], -p[0] + 0.0 * u[0]])


def hits_ground(u, t):
    """Event condition: the height, which crosses zero downwards at a bounce."""
    return u[0]


def bounce(u, p, t):
    """Affect: reverse and damp the velocity, ``v -> -e v`` (``e = p[1]``)."""
    return anp.stack([u[0], -p[1] * u[1]])


def top_of_low_flight(u, t):
    """Terminal condition: ``v`` (zero at the top of a flight) once the height this flight
    reaches, ``x + v^2 / (2 g)``, is below ``H_MIN``; else the constant 1. That height only
    changes at bounces, so the condition is smooth inside every flight; after the first bounce
    too weak to reach ``H_MIN`` it is ``v > 0``, which crosses zero downwards at the top."""
    x, v = u[0], u[1]
    return v if x + v * v / (2 * G) < H_MIN else 1.0


def bounce_time(n: int, e: float = E) -> float:
    t1 = math.sqrt(2 * X0 / G)
    return t1 * (1 + 2 * sum(e**k for k in range(1, n)))


def bounce_time_de(n: int, e: float = E) -> float:
    t1 = math.sqrt(2 * X0 / G)
    return 2 * t1 * sum(k * e ** (k - 1) for k in range(1, n))


def bounce_callback() -> ade.ContinuousCallback:
    return ade.ContinuousCallback(hits_ground, bounce, direction=-1)


def simulate() -> tuple[ade.Solution, bool]:
    """Bounce until the first flight lower than ``H_MIN``; compare with the formulas."""
    prob = ade.ODEProblem(ball, np.array([X0, 0.0]), (0.0, 10.0), np.array([G, E]))
    stop = ade.ContinuousCallback(top_of_low_flight, direction=-1, terminal=True)
    # Tsit5 integrates a parabola exactly, so without dtmax its steps would grow without
    # bound; a step much longer than a flight could hold a whole flight (two crossings of
    # x = 0) between two of the condition's sample points (interp_points=10 per step).
    # Steps of at most 0.05 s keep every flight (>= 0.37 s here) well resolved.
    sol = ade.solve(prob, "Tsit5", rtol=RTOL, atol=ATOL, dtmax=0.05,
                    callback=ade.CallbackSet(bounce_callback(), stop))
    bounces = sol.t_events[0]
    n = len(bounces)  # the first flight lower than H_MIN follows bounce n
    exact = np.array([bounce_time(k) for k in range(1, n + 1)])
    v1 = math.sqrt(2 * G * X0)
    t_stop = bounce_time(n) + E**n * v1 / G
    apex = E ** (2 * n) * X0
    top = np.asarray(sol.u[-1])

    print(f"[1] Tsit5, rtol={RTOL:g}, atol={ATOL:g}: retcode {sol.retcode} after {n} bounces "
          f"({sol.stats.naccept} steps)")
    print(f"    {'bounce':>6} {'t (solve)':>14} {'t (analytic)':>14} {'rel. error':>10} "
          f"{'v before':>10} {'v after':>10}")
    for k, (tk, uk) in enumerate(zip(bounces, np.asarray(sol.u_events[0])), start=1):
        after = np.asarray(sol(tk))[1]  # sol(t) is right-continuous: the state after
        print(f"    {k:6d} {tk:14.10f} {exact[k - 1]:14.10f} "
              f"{abs(tk / exact[k - 1] - 1):10.1e} {uk[1]:10.6f} {after:10.6f}")
    print(f"    stop at the top of flight {n}: t = {sol.t[-1]:.10f} (analytic {t_stop:.10f}), "
          f"height {top[0]:.10f} m (analytic e^{2 * n} x0 = {apex:.10f} m)")

    ok = (sol.retcode == "Terminated" and n == 4
          and np.allclose(bounces, exact, rtol=1e-7, atol=0)
          and abs(sol.t[-1] - t_stop) <= 1e-7 * t_stop and abs(top[0] - apex) <= 1e-7)
    return sol, ok


def plot(sol: ade.Solution, out: Path, n: int = 1000) -> None:
    """Height and velocity from the dense output, which jumps at each bounce."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = np.linspace(sol.t[0], sol.t[-1], n)
    us = np.asarray(sol(ts))
    bounces = sol.t_events[0]

    fig, (ax_x, ax_v) = plt.subplots(2, 1, figsize=(8, 6), sharex=True,
                                     constrained_layout=True)
    ax_x.plot(ts, us[:, 0], color="C0")
    ax_x.plot(bounces, np.zeros(len(bounces)), "o", color="C3", label="bounces (t_events)")
    ax_x.plot(sol.t[-1], np.asarray(sol.u[-1])[0], "s", color="k", label="terminal event")
    ax_x.axhline(H_MIN, color="0.6", lw=0.8, ls="--", label=f"{H_MIN:g} m")
    ax_x.set_ylabel("height x (m)")
    ax_x.legend(loc="upper right")
    ax_v.plot(ts, us[:, 1], color="C1")
    ax_v.set_xlabel("t (s)")
    ax_v.set_ylabel("velocity v (m/s)")
    fig.suptitle(f"Bouncing ball, e = {E:g}: Tsit5 dense output sol(t) across the bounces")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def nth_bounce_time(p, sensealg=None, rtol=RTOL):
    # t in [0, 2] holds three bounces (the 4th is at 2.21 s)
    prob = ade.ODEProblem(ball, np.array([X0, 0.0]), (0.0, 2.0), p)
    sol = ade.solve(prob, "Tsit5", rtol=rtol, atol=rtol * 1e-2, dtmax=0.05,
                    callback=bounce_callback(), sensealg=sensealg)
    return sol.t_events[0][N_GRAD - 1]


def gradient() -> bool:
    """d t_n / d e through ade.solve, analytically and by central differences."""
    p = np.array([G, E])
    exact = bounce_time_de(N_GRAD)
    h = 1e-6
    fd = (float(nth_bounce_time(p + [0.0, h], rtol=1e-12))
          - float(nth_bounce_time(p - [0.0, h], rtol=1e-12))) / (2 * h)
    print(f"[3] d t_{N_GRAD} / d e at e = {E:g} (t_{N_GRAD} = {bounce_time(N_GRAD):.10f} s)")
    print(f"    {'analytic':<34} {exact:.10f}")
    ok = True
    for method in ("ForwardSensitivity", "DiscreteAdjoint"):
        value = grad(lambda p, m=method: nth_bounce_time(p, m))(p)[1]
        print(f"    {'autograd.grad, ' + method:<34} {value:.10f}   "
              f"rel. error {abs(value / exact - 1):.1e}")
        ok &= abs(value - exact) <= 1e-6 * abs(exact)
    print(f"    {'central differences':<34} {fd:.10f}   rel. error {abs(fd / exact - 1):.1e}")
    return ok and abs(fd - exact) <= 1e-5 * abs(exact)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the example; returns the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"PNG to write (default: {DEFAULT_OUT})"
    )
    args = parser.parse_args(argv)

    sol, ok_events = simulate()
    plot(sol, args.out)
    print(f"[2] trajectory (dense output across the jumps) plotted to {args.out}")
    ok_grad = gradient()
    if not (ok_events and ok_grad):
        print("MISMATCH: a result disagrees with its analytic value")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
