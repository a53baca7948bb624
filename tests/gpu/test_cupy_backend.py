"""The CuPy backend: its unavailability path on any machine, and on a machine with a usable
GPU (pytest's ``gpu`` marker) solves, derivatives, random draws and ensembles against the
NumPy backend and analytic truth. The conformance and gradient kits run on ``cupy`` through
tests/test_conformance_*.py (also marked ``gpu``)."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import textwrap

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import autodiffeq as ade
from autodiffeq.registry import Registry
from autodiffeq_plugins import cupy_backend

REASON = ade.registry().backend("cupy").unavailable_reason()


def _skip_without_gpu() -> None:
    if REASON is not None:
        pytest.skip(f"backend 'cupy' is unavailable here: {REASON}")


# ----------------------------------------------------------- any machine: unavailability
def test_nothing_imports_cupy_until_the_backend_is_used() -> None:
    """``import autodiffeq``, listing the plugins (the probe asks the driver through ctypes)
    and a NumPy solve leave CuPy unimported."""
    code = textwrap.dedent("""
        import sys, numpy as np, autodiffeq as ade
        from autodiffeq.cli import main
        reg = ade.registry()
        reg.available_backends()
        [b.capabilities_dict() for b in reg.backends()]
        main(["plugins"])
        ade.solve(ade.ODEProblem(lambda u, p, t: -u, np.ones(2), (0.0, 1.0)), backend="numpy")
        print("CUPY_IMPORTED" if "cupy" in sys.modules else "CUPY_NOT_IMPORTED")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().endswith("CUPY_NOT_IMPORTED")
    assert "cupy" in out  # the backend is listed, with its state


def test_listing_names_the_reason() -> None:
    spec = ade.registry().backend("cupy")
    assert spec.device == "gpu"
    info = spec.capabilities_dict()
    assert info["available"] is (REASON is None)
    assert info["unavailable_reason"] == REASON


@pytest.fixture
def fresh_probe():
    cupy_backend.gpu_unavailable_reason.cache_clear()
    yield cupy_backend.gpu_unavailable_reason
    cupy_backend.gpu_unavailable_reason.cache_clear()


def test_reason_when_cupy_is_not_installed(monkeypatch, fresh_probe) -> None:
    real = cupy_backend.importlib.util.find_spec
    monkeypatch.setattr(cupy_backend.importlib.util, "find_spec",
                        lambda name, *a: None if name == "cupy" else real(name, *a))
    reason = fresh_probe()
    assert "CuPy is not installed" in reason and "autodiffeq[cupy]" in reason


class _FakeDriver:
    """Stands in for libcuda: each entry point returns the code it was given."""

    def __init__(self, init: int = 0, count: int = 1, version: int = 13000) -> None:
        self.init, self.count, self.version = init, count, version

    def cuInit(self, flags):  # noqa: N802 (the driver's names)
        return self.init

    def cuGetErrorName(self, code, out):  # noqa: N802
        ctypes.cast(out, ctypes.POINTER(ctypes.c_char_p))[0] = b"CUDA_ERROR_NO_DEVICE"
        return 0

    def cuDeviceGetCount(self, out):  # noqa: N802
        ctypes.cast(out, ctypes.POINTER(ctypes.c_int))[0] = self.count
        return 0

    def cuDriverGetVersion(self, out):  # noqa: N802
        ctypes.cast(out, ctypes.POINTER(ctypes.c_int))[0] = self.version
        return 0


@pytest.mark.parametrize("driver, expected", [
    (None, "no NVIDIA driver found"),
    (_FakeDriver(init=100), "cuInit returned CUDA_ERROR_NO_DEVICE (100)"),
    (_FakeDriver(count=0), "reports no device"),
    (_FakeDriver(version=11040), "supports CUDA 11.4 but the installed cupy-cuda12x needs "
                                 "CUDA 12"),
    (_FakeDriver(version=12020), None),
], ids=["no-driver", "init-fails", "no-device", "driver-too-old", "usable"])
def test_reasons_from_the_driver(monkeypatch, fresh_probe, driver, expected) -> None:
    def cdll(name):
        if driver is None:
            raise OSError(f"{name}: cannot open shared object file")
        return driver

    monkeypatch.setattr(cupy_backend.importlib.util, "find_spec", lambda name, *a: object())
    monkeypatch.setattr(cupy_backend.ctypes, "CDLL", cdll)
    monkeypatch.setattr(cupy_backend, "_cupy_wheel_cuda_major", lambda: ("cupy-cuda12x", 12))
    reason = fresh_probe()
    if expected is None:
        assert reason is None
    else:
        assert expected in reason


@pytest.mark.parametrize("name, major", [("cupy-cuda12x", 12), ("cupy-cuda11x", 11),
                                         ("cupy-cuda13x", 13), ("cupy-cuda102", 10),
                                         ("cupy", None), ("cupy-rocm-5-0", None)])
def test_cuda_major_of_wheel(name, major) -> None:
    assert cupy_backend.cuda_major_of_wheel(name) == major


@pytest.mark.skipif(REASON is None, reason="a GPU is usable here")
def test_solve_on_cupy_without_a_gpu_is_a_clear_error() -> None:
    prob = ade.ODEProblem(lambda u, p, t: -u, np.ones(2), (0.0, 1.0))
    with pytest.raises(ade.BackendUnavailable) as err:
        ade.solve(prob, backend="cupy")
    message = str(err.value)
    assert REASON in message and "Usable backends:" in message and "numpy" in message


def test_a_backend_that_fails_to_start_names_the_failure() -> None:
    """Where the driver answers but CuPy cannot allocate (a broken installation, an exhausted
    device, or, on this machine, CuPy without a driver) the error is BackendUnavailable
    with CuPy's own message and the usable backends."""
    if REASON is None:
        pytest.skip("a GPU is usable here: the factory succeeds")
    reg = Registry(entry_points=True)
    spec = reg.backend("cupy")
    object.__setattr__(spec, "probe", lambda: None)  # frozen spec: as if the driver answered
    try:
        with pytest.raises(ade.BackendUnavailable, match="failed to start") as err:
            reg.get_backend("cupy")
    finally:
        object.__setattr__(spec, "probe", cupy_backend.gpu_unavailable_reason)
    assert "Usable backends:" in str(err.value) and "numpy" in str(err.value)


def test_array_namespace(monkeypatch) -> None:
    """``ade.array_namespace``: autograd.numpy for NumPy data (f stays traceable), the
    library's namespace otherwise; CuPy arrays define no ``__array_namespace__`` (CuPy 13-14),
    so the ``cupy`` module is theirs."""
    import types

    import autograd.numpy as anp_module

    assert ade.array_namespace(np.ones(2), 1.0) is anp_module
    assert ade.array_namespace(autograd.numpy.ones(2)) is anp_module
    fake_cupy = types.ModuleType("cupy")
    FakeArray = type("ndarray", (), {"__module__": "cupy._core.core"})
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    assert ade.array_namespace(np.ones(2), FakeArray()) is fake_cupy
    xps = pytest.importorskip("array_api_strict")
    assert ade.array_namespace(xps.asarray([1.0])) is xps
    with pytest.raises(ade.InvalidType, match="two libraries"):
        ade.array_namespace(xps.asarray([1.0]), FakeArray())


# --------------------------------------------------------------- with a usable GPU
def _lotka_volterra(u, p, t):
    xp = ade.array_namespace(u)
    return xp.stack([p[0] * u[0] - p[1] * u[0] * u[1], -p[2] * u[1] + p[3] * u[0] * u[1]])


P_LV = np.array([1.5, 1.0, 3.0, 1.0])


@pytest.mark.gpu
@pytest.mark.parametrize("alg", ["Tsit5", "Vern7", "Rodas5P"])
def test_solve_on_the_gpu_matches_numpy(alg) -> None:
    _skip_without_gpu()
    import cupy

    prob = ade.ODEProblem(_lotka_volterra, np.array([1.0, 1.0]), (0.0, 10.0), P_LV)
    ts = np.linspace(0.0, 10.0, 11)
    gpu = ade.solve(prob, alg, backend="cupy", saveat=ts, rtol=1e-10, atol=1e-12)
    cpu = ade.solve(prob, alg, saveat=ts, rtol=1e-10, atol=1e-12)
    assert isinstance(gpu.u, cupy.ndarray)
    ref = np.asarray(cpu.u)
    err = np.max(np.abs(cupy.asnumpy(gpu.u) - ref) / (np.abs(ref) + 1e-3))
    assert err < 1e-7, err  # both within ~1e-9 of the truth at rtol 1e-10



@pytest.mark.gpu
def test_host_arrays_from_f_are_refused() -> None:
    _skip_without_gpu()
    prob = ade.ODEProblem(lambda u, p, t: np.zeros(2), np.ones(2), (0.0, 1.0))
    with pytest.raises(ade.InvalidType, match="f returned a numpy.ndarray"):
        ade.solve(prob, "Tsit5", backend="cupy")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_and_float64(dtype) -> None:
    _skip_without_gpu()
    import cupy

    prob = ade.ODEProblem(lambda u, p, t: -u, np.ones(3, dtype=dtype), (0.0, 1.0))
    sol = ade.solve(prob, "Tsit5", backend="cupy", rtol=1e-5, atol=1e-7)
    assert sol.u.dtype == cupy.dtype(dtype)
    got = float(cupy.asnumpy(sol.u[-1])[0])
    assert abs(got - np.exp(-1.0)) < (1e-3 if dtype == np.float32 else 1e-5)


@pytest.mark.gpu
def test_dense_and_sparse_lu_agree_with_numpy() -> None:
    """Rodas5P on a stiff linear system with a dense and with a sparse Jacobian
    (cuSOLVER getrf/getrs; splu factored on the host, solved on the device)."""
    _skip_without_gpu()
    import cupy
    import scipy.sparse as sp

    n = 40
    A = (sp.diags([1.0, -2.0, 1.0], [-1, 0, 1], shape=(n, n)) * 400.0).toarray()

    def f(u, p, t):
        xp = ade.array_namespace(u)
        return xp.asarray(A, dtype=u.dtype) @ u if xp is not np else A @ u

    u0 = np.sin(np.linspace(0, np.pi, n))
    for kw in ({}, {"jac_prototype": sp.csr_matrix(A != 0)}):
        prob = ade.ODEProblem(f, u0, (0.0, 0.1), **kw)
        gpu = ade.solve(prob, "Rodas5P", backend="cupy", rtol=1e-8, atol=1e-10)
        cpu = ade.solve(prob, "Rodas5P", rtol=1e-8, atol=1e-10)
        a, b = cupy.asnumpy(gpu.u[-1]), np.asarray(cpu.u[-1])
        assert np.max(np.abs(a - b)) < 1e-6 * np.max(np.abs(b)) + 1e-10


@pytest.mark.gpu
def test_seeded_draws_repeat_and_are_normal() -> None:
    _skip_without_gpu()
    import cupy

    be = ade.registry().get_backend("cupy")
    a = be.normal(be.rng(7), (200_000,), cupy.float64)
    b = be.normal(be.rng(np.random.SeedSequence(7)), (200_000,), cupy.float64)
    c = be.normal(be.rng(8), (200_000,), cupy.float32)
    assert bool(cupy.all(a == b)) and c.dtype == cupy.float32
    x = cupy.asnumpy(a)
    # mean and variance of 2e5 standard normals: standard errors 2.2e-3 and 3.2e-3
    assert abs(x.mean()) < 5 * 2.2e-3 and abs(x.var() - 1.0) < 5 * 3.2e-3


@pytest.mark.gpu
def test_vectorized_ensemble_on_the_gpu_matches_numpy() -> None:
    _skip_without_gpu()
    import cupy

    def f(u, p, t):
        xp = ade.array_namespace(u)
        x, y = u[..., 0:1], u[..., 1:2]
        a, b, c, d = p[..., 0:1], p[..., 1:2], p[..., 2:3], p[..., 3:4]
        return xp.concat([a * x - b * x * y, -c * y + d * x * y], axis=-1)

    prob = ade.ODEProblem(f, np.array([1.0, 1.0]), (0.0, 10.0), P_LV)
    eprob = ade.EnsembleProblem(
        prob, prob_func=lambda pr, i, r: pr.remake(u0=np.array([1.0 + 0.01 * i, 1.0])))
    kw = dict(trajectories=64, ensemble="vectorized", rtol=1e-8, atol=1e-10,
              saveat=np.linspace(0.0, 10.0, 6))
    gpu = ade.solve(eprob, "Tsit5", backend="cupy", **kw)
    cpu = ade.solve(eprob, "Tsit5", **kw)
    for a, b in zip(gpu, cpu):
        ref = np.asarray(b.u)
        assert isinstance(a.u, cupy.ndarray)
        assert np.max(np.abs(cupy.asnumpy(a.u) - ref) / (np.abs(ref) + 1e-3)) < 1e-6


@pytest.mark.gpu
def test_neural_ode_gradient_on_the_gpu() -> None:
    """``DiscreteAdjoint`` through ``nn.MLP`` on the device: the gradient of the NumPy run."""
    _skip_without_gpu()
    mlp = ade.nn.MLP([2, 32, 2])
    theta = np.asarray(mlp.init(0))
    u0 = np.array([2.0, 0.0])
    ts = np.linspace(0.0, 1.0, 5)

    def loss(theta, backend):
        prob = ade.ODEProblem(mlp, u0, (0.0, 1.0), theta)  # its own vjp, on the device
        sol = ade.solve(prob, "Tsit5", saveat=ts, rtol=1e-8, atol=1e-10,
                        sensealg="DiscreteAdjoint", backend=backend)
        return anp.sum(sol.u ** 2)

    g_gpu = np.asarray(autograd.grad(loss)(theta, "cupy"))
    g_cpu = autograd.grad(loss)(theta, "numpy")
    assert np.max(np.abs(g_gpu - g_cpu)) < 1e-6 * np.max(np.abs(g_cpu))


@pytest.mark.gpu
def test_methods_that_trace_f_with_autograd_name_the_ones_that_work() -> None:
    _skip_without_gpu()
    prob = ade.ODEProblem(lambda u, p, t: -p * u, np.ones(1), (0.0, 1.0), np.array([0.5]))

    def loss(p):
        return ade.solve(prob.remake(p=p), "Tsit5", sensealg="ReverseMode",
                         backend="cupy").u[-1][0]

    with pytest.raises(ade.UnsupportedCombination, match="DiscreteAdjoint"):
        autograd.grad(loss)(np.array([0.5]))
