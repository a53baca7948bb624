"""Module-level problem functions for the ensemble tests (picklable by reference, so the
process and Dask executors can send them), written for a single state and for a batch."""

from __future__ import annotations

import autograd.numpy as anp
import numpy as np

MU, SIGMA = 1.5, 0.5
P_LV = np.array([1.5, 1.0, 3.0, 1.0])


def lotka_volterra(u, p, t):
    """Lotka–Volterra with ``...`` indexing: u of shape (2,) or (B, 2), p (4,) or (B, 4)."""
    x, y = u[..., 0], u[..., 1]
    a, b, c, d = p[..., 0], p[..., 1], p[..., 2], p[..., 3]
    return anp.stack([a * x - b * x * y, -c * y + d * x * y], axis=-1)


def lotka_volterra_indexed(u, p, t):
    """The same written with u[0] / p[0]: right for one state, wrong for a batch."""
    a, b, c, d = p[0], p[1], p[2], p[3]
    return np.array([a * u[0] - b * u[0] * u[1], -c * u[1] + d * u[0] * u[1]])


def vary_lv(prob, i, repeat):
    return prob.remake(u0=np.array([1.0 + 0.05 * i, 1.0 - 0.03 * i]),
                       p=P_LV * (1.0 + 0.02 * i))


def robertson(u, p, t):
    y1, y2, y3 = u[..., 0], u[..., 1], u[..., 2]
    k1, k2, k3 = p[..., 0], p[..., 1], p[..., 2]
    return np.stack([-k1 * y1 + k3 * y2 * y3, k1 * y1 - k2 * y2 ** 2 - k3 * y2 * y3,
                     k2 * y2 ** 2], axis=-1)


def vary_robertson(prob, i, repeat):
    return prob.remake(p=np.array([0.04, 3e7, 1e4]) * (1.0 + 0.1 * i))


def blow_up(u, p, t):
    """u' = u^2: u(t) = u0 / (1 - u0 t) blows up at t = 1/u0."""
    return u * u


def vary_blow_up(prob, i, repeat):
    return prob.remake(u0=np.array([(0.2, 0.4, 1.0)[i]]))


def drift(u, p, t):
    """Logistic drift with a time-dependent forcing (one state or a batch)."""
    return p[..., :1] * u * (1.0 - u / 10.0) + 0.1 * np.cos(t)


def diffusion(u, p, t):
    return p[..., 1:2] * u


def vary_sde(prob, i, repeat):
    return prob.remake(p=np.array([1.0 + 0.1 * i, 0.2 + 0.02 * i]),
                       u0=np.array([1.0, 2.0]) * (1.0 + 0.01 * i))


def gbm_drift(u, p, t):
    return MU * u


def gbm_diffusion(u, p, t):
    return SIGMA * u


def drift_indexed(u, p, t):
    """A drift written with p[0]: right alone, wrong (every trajectory gets the first's
    parameter) on a batch."""
    return -p[0] * u
