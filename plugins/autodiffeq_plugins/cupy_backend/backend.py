"""CuPy implementation of :class:`autodiffeq.backend.Backend` (imported only when used).

Where the arrays live: on the current CUDA device for the whole solve. A host NumPy ``u0`` or
``p`` is moved to the device once, when the solve starts (:meth:`CupyBackend.asarray`);
``f`` must compute with ``u``'s namespace and return device arrays (a host array from ``f``
is refused by the solve's first call, naming ``f``). The solvers read one scalar back per
step (the error norm the step-size controller needs; fixed-step solves none); results stay
on the device in :class:`~autodiffeq.Solution` until ``sol.to_host()`` or
``backend.to_host``.

Linear algebra:

* dense LU: cuSOLVER ``getrf``/``getrs`` called directly (as :mod:`cupyx.scipy.linalg`
  does, but without its checks, which read the pivot status back to the host on every call
  and would add two synchronisations per factorisation). A singular ``W`` gives ``inf`` or
  ``nan`` in the solution, which the step-size control rejects like any failed step (the same
  contract as the NumPy backend's LAPACK path).
* sparse LU: ``cupyx.scipy.sparse.linalg.splu``. **The factorisation runs on the host**
  (SciPy's SuperLU; the matrix's values are copied to the host once per factorisation); the
  triangular solves run on the device (cuSPARSE). Rosenbrock methods factor ``W`` once per
  step and solve with it once per stage, so the stage solves stay on the device.

Random numbers: ``cupy.random.default_rng(seed)`` (XORWOW), seeded with the same ``seed``
arguments as the NumPy backend (an ``int``, a ``numpy.random.SeedSequence`` or ``None``).
The guarantee is the same (one seed, one backend, the same draws), the streams are not:
a seed gives different numbers on CuPy and on NumPy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from autodiffeq.backend import Backend


class CupyBackend(Backend):
    """Arrays are ``cupy.ndarray`` on the current device; see the module docstring."""

    name = "cupy"
    device = "gpu"
    capabilities = frozenset({"lu", "sparse", "rng"})

    def __init__(self) -> None:
        import cupy

        self.xp = cupy
        self.array_type = (cupy.ndarray,)
        # one allocation and one kernel launch: a broken installation or an unusable device
        # fails here, where the registry reports it as BackendUnavailable
        probe = cupy.arange(4, dtype=cupy.float64)
        float((probe * probe).sum())
        self._workspace: dict[tuple[int, Any], Any] = {}

    # ---------------------------------------------------------------- arrays
    def asarray(self, x: Any, dtype: Any = None) -> Any:
        """``x`` on the device (host data is copied once)."""
        return self.xp.asarray(x) if dtype is None else self.xp.asarray(x, dtype=dtype)

    def to_host(self, x: Any) -> np.ndarray:
        """A NumPy copy of ``x`` (device arrays are copied; host data passes through)."""
        if isinstance(x, self.array_type):
            return self.xp.asnumpy(x)
        return np.asarray(x)

    @property
    def sparse(self) -> Any:
        """``cupyx.scipy.sparse`` (SciPy's sparse API on the device)."""
        import cupyx.scipy.sparse

        return cupyx.scipy.sparse

    # -------------------------------------------------------- linear algebra
    def lu_factor(self, a: Any) -> Any:
        """LU with partial pivoting: cuSOLVER ``getrf`` for a dense ``a``; a
        ``cupyx.scipy.sparse`` matrix goes to ``splu`` (host factorisation, device solves)."""
        sparse = self.sparse
        if sparse.issparse(a):
            from cupyx.scipy.sparse.linalg import splu

            return ("splu", splu(sparse.csc_matrix(a)))
        return ("dense", *self._getrf(a))

    def lu_solve(self, factor: Any, b: Any) -> Any:
        if factor[0] == "splu":
            return factor[1].solve(b)
        _, lu, ipiv = factor
        return self._getrs(lu, ipiv, b)

    def _cusolver(self, dtype: Any) -> tuple[Any, Any, Any]:
        from cupy_backends.cuda.libs import cusolver

        char = np.dtype(dtype).char
        if char == "d":
            return cusolver.dgetrf_bufferSize, cusolver.dgetrf, cusolver.dgetrs
        if char == "f":
            return cusolver.sgetrf_bufferSize, cusolver.sgetrf, cusolver.sgetrs
        raise TypeError(f"the CuPy backend factors float32 and float64 matrices, got {dtype}")

    def _getrf(self, a: Any) -> tuple[Any, Any]:
        """``getrf`` on a Fortran-ordered copy of ``a``; pivots stay 1-based (cuSOLVER's)."""
        from cupy.cuda import device

        xp = self.xp
        lu = xp.array(a, order="F", copy=True)
        n = lu.shape[0]
        if lu.ndim != 2 or lu.shape[1] != n:
            raise ValueError(f"lu_factor needs a square matrix, got shape {lu.shape}")
        buffer_size, getrf, _ = self._cusolver(lu.dtype)
        handle = device.get_cusolver_handle()
        key = (n, lu.dtype)
        scratch = self._workspace.get(key)
        if scratch is None:
            size = buffer_size(handle, n, n, lu.data.ptr, n)
            scratch = (xp.empty(max(size, 1), dtype=lu.dtype), xp.empty(1, dtype=np.int32))
            self._workspace[key] = scratch
        work, info = scratch
        ipiv = xp.empty((n,), dtype=np.intc)
        getrf(handle, n, n, lu.data.ptr, n, work.data.ptr, ipiv.data.ptr, info.data.ptr)
        return lu, ipiv

    def _getrs(self, lu: Any, ipiv: Any, b: Any) -> Any:
        from cupy.cuda import cublas, device

        xp = self.xp
        n = lu.shape[0]
        x = xp.array(b, dtype=lu.dtype, order="F", copy=True)
        nrhs = 1 if x.ndim == 1 else x.shape[1]
        _, _, getrs = self._cusolver(lu.dtype)
        info = self._workspace[(n, lu.dtype)][1]
        getrs(device.get_cusolver_handle(), cublas.CUBLAS_OP_N, n, nrhs, lu.data.ptr, n,
              ipiv.data.ptr, x.data.ptr, n, info.data.ptr)
        return x if x.ndim == 1 else xp.ascontiguousarray(x)

    # ------------------------------------------------------------------ RNG
    def rng(self, seed: Any = None) -> Any:
        """``cupy.random.default_rng(seed)`` (XORWOW): the same seeds as the NumPy backend,
        another stream."""
        return self.xp.random.default_rng(seed)

    def normal(self, rng: Any, shape: tuple[int, ...], dtype: Any) -> Any:
        return rng.standard_normal(shape, dtype=dtype)
