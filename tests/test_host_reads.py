"""How often a solve reads a value back from the array library to the host: on a GPU each
read is a device synchronisation, so the step loop keeps to one per step (the error norm
the step-size controller needs). Counted on ``array_api_strict`` (the same code paths as
CuPy: the solvers use only the Backend interface and the array API), by wrapping the
conversions a host read goes through (``float``, ``bool``, ``int``, DLPack export)."""

from __future__ import annotations

import collections

import numpy as np
import pytest

import autodiffeq as ade

xps = pytest.importorskip("array_api_strict")


@pytest.fixture
def reads(monkeypatch):
    Array = type(xps.asarray(0.0))
    counts: collections.Counter[str] = collections.Counter()
    for name in ("__float__", "__bool__", "__int__", "__index__", "__complex__",
                 "__dlpack__", "__array__", "tolist", "item"):
        original = getattr(Array, name, None)
        if original is None:
            continue

        def counted(self, *args, _original=original, _name=name, **kwargs):
            counts[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Array, name, counted)
    return counts


def _lotka_volterra(u, p, t):
    xp = u.__array_namespace__()
    return xp.stack([p[0] * u[0] - p[1] * u[0] * u[1], -p[2] * u[1] + p[3] * u[0] * u[1]])


@pytest.mark.parametrize("alg", ["Tsit5", "Vern7", "BS3", "Rodas5P"])
@pytest.mark.parametrize("saveat", [None, np.linspace(0.0, 10.0, 11)], ids=["dense", "saveat"])
def test_one_host_read_per_step(reads, alg, saveat) -> None:
    prob = ade.ODEProblem(_lotka_volterra, xps.asarray([1.0, 1.0]), (0.0, 10.0),
                          xps.asarray([1.5, 1.0, 3.0, 1.0]))
    kw = {} if saveat is None else {"saveat": saveat}
    ade.solve(prob, alg, backend="array_api_strict", rtol=1e-6, atol=1e-8, **kw)  # warm
    reads.clear()
    sol = ade.solve(prob, alg, backend="array_api_strict", rtol=1e-6, atol=1e-8, **kw)
    attempts = sol.stats.naccept + sol.stats.nreject
    total = sum(reads.values())
    # one read per attempt (the error norm), a few to choose the first step and, for the
    # explicit methods, two per stiffness check (every 16 accepted steps by default):
    # measured 1.08-1.17 reads per attempt; saving and dense output add none
    assert attempts <= total <= 1.25 * attempts + 8, (dict(reads), attempts)


def test_fixed_steps_read_one_flag_per_step(reads) -> None:
    """Without error control the one read is the finiteness of the new state (a solve that
    blows up stops with retcode Unstable and its states so far)."""
    prob = ade.ODEProblem(_lotka_volterra, xps.asarray([1.0, 1.0]), (0.0, 1.0),
                          xps.asarray([1.5, 1.0, 3.0, 1.0]))
    ade.solve(prob, "RK4", dt=0.01, adaptive=False, backend="array_api_strict")
    reads.clear()
    sol = ade.solve(prob, "RK4", dt=0.01, adaptive=False, backend="array_api_strict")
    assert sol.stats.naccept == 100
    # one per step, and one for the final state
    assert reads["__bool__"] == 101 and sum(reads.values()) <= 101 + 4, dict(reads)
