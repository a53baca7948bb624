"""Backend configuration: precedence, contexts per thread, environment, errors."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import autodiffeq as ade


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    monkeypatch.delenv("AUTODIFFEQ_BACKEND", raising=False)
    ade.set_config(backend=None)
    yield
    ade.set_config(backend=None)


def _backend_of(prob, **kwargs):
    return ade.solve(prob, "Tsit5", **kwargs).backend.name


def test_precedence(monkeypatch, decay_problem):
    assert _backend_of(decay_problem) == "numpy"
    monkeypatch.setenv("AUTODIFFEQ_BACKEND", "array_api_strict")
    prob = decay_problem  # numpy u0 is converted at the boundary
    assert ade.get_config("backend") == "array_api_strict"
    ade.set_config(backend="numpy")
    assert ade.get_config("backend") == "numpy"
    with ade.config_context(backend="array_api_strict"):
        assert _backend_of(prob) == "array_api_strict"
        assert _backend_of(prob, backend="numpy") == "numpy"
        with ade.config_context(backend="numpy"):
            assert _backend_of(prob) == "numpy"
        assert ade.get_config("backend") == "array_api_strict"
    assert _backend_of(prob) == "numpy"


def test_context_does_not_leak_into_other_threads():
    seen = {}
    entered = threading.Event()
    release = threading.Event()

    def inside():
        with ade.config_context(backend="array_api_strict"):
            entered.set()
            release.wait(5)
            seen["inside"] = ade.get_config("backend")

    def outside():
        entered.wait(5)
        seen["outside"] = ade.get_config("backend")
        release.set()

    threads = [threading.Thread(target=inside), threading.Thread(target=outside)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"inside": "array_api_strict", "outside": "numpy"}


def test_unknown_backend_lists_installed(decay_problem):
    with pytest.raises(ade.UnknownName) as info:
        ade.solve(decay_problem, backend="nmupy")
    message = str(info.value)
    assert "Did you mean 'numpy'" in message and "array_api_strict" in message


def test_bad_environment_value_reported_at_use_not_import(decay_problem):
    env = dict(os.environ, AUTODIFFEQ_BACKEND="no-such-backend")
    code = (
        "import autodiffeq as ade, numpy as np\n"
        "prob = ade.ODEProblem(lambda u, p, t: -u, [1.0], (0.0, 1.0))\n"
        "try:\n    ade.solve(prob)\n"
        "except ade.UnknownName as e:\n    print('ERR', e)\n"
        "print(ade.solve(prob, backend='numpy').retcode)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert "ERR unknown backend 'no-such-backend'" in out.stdout
    assert "environment variable AUTODIFFEQ_BACKEND" in out.stdout
    assert out.stdout.strip().endswith("Success")


def test_unknown_config_key_and_bad_type():
    with pytest.raises(ade.InvalidArgument, match="unknown configuration key"):
        ade.set_config(backnd="numpy")
    with pytest.raises(ade.InvalidType):
        with ade.config_context(backend=3):
            pass


def test_strict_backend_results_stay_on_backend():
    import array_api_strict as xps

    prob = ade.ODEProblem(lambda u, p, t: -u, xps.asarray([1.0, 2.0]), (0.0, 1.0))
    sol = ade.solve(prob, "Tsit5", backend="array_api_strict", rtol=1e-8, atol=1e-10)
    assert isinstance(sol.u, type(xps.asarray(0.0)))
    np.testing.assert_allclose(np.from_dlpack(sol.u[-1, ...]), np.exp(-1) * np.array([1, 2]),
                               rtol=1e-7)
