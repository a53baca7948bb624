"""Shared fixtures: small problems and helpers."""

from __future__ import annotations

import numpy as np
import pytest

import autodiffeq as ade


def lotka_volterra(u, p, t):
    a, b, c, d = p
    return np.array([a * u[0] - b * u[0] * u[1], -c * u[1] + d * u[0] * u[1]])


@pytest.fixture
def lv_problem() -> ade.ODEProblem:
    return ade.ODEProblem(lotka_volterra, np.array([1.0, 1.0]), (0.0, 10.0),
                          np.array([1.5, 1.0, 3.0, 1.0]))


@pytest.fixture
def decay_problem() -> ade.ODEProblem:
    return ade.ODEProblem(lambda u, p, t: -u, np.array([1.0, 2.0]), (0.0, 1.0))
