"""NumPy implementation of :class:`autodiffeq.backend.Backend`."""

from __future__ import annotations

from typing import Any

import numpy as np

from autodiffeq.backend import Backend


class NumpyBackend(Backend):
    """Arrays are ``numpy.ndarray`` (and NumPy scalars); linear algebra from SciPy."""

    name = "numpy"
    xp = np
    device = "cpu"
    capabilities = frozenset({"lu", "sparse", "rng", "autograd"})
    array_type = (np.ndarray, np.generic)
    # ndarray.dot skips the __array_function__ dispatch of np.dot and np.matmul: about half
    # the cost on the small operands of stage sums and norms (the state is always 1-D here)
    dot = staticmethod(np.ndarray.dot)

    def to_host(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def lu_factor(self, a: Any) -> Any:
        """LU with partial pivoting straight from LAPACK ``getrf`` (SciPy's ``get_lapack_funcs``):
        the ``scipy.linalg.lu_factor``/``lu_solve`` wrappers cost ~14 µs per call, which is
        most of a Rosenbrock step on small systems. Sparse matrices go to ``splu``."""
        import scipy.sparse as sp

        if sp.issparse(a):
            from scipy.sparse.linalg import splu

            return ("splu", splu(sp.csc_matrix(a)))
        from scipy.linalg import get_lapack_funcs

        a = np.asarray(a)
        getrf, getrs = get_lapack_funcs(("getrf", "getrs"), (a,))
        lu, piv, _info = getrf(a)  # info > 0: singular; the solve then yields inf/nan,
        return ("lapack", lu, piv, getrs)  # which the driver rejects as a failed step

    def lu_solve(self, factor: Any, b: Any) -> Any:
        if factor[0] == "splu":
            return factor[1].solve(b)
        _, lu, piv, getrs = factor
        x, _info = getrs(lu, piv, b)
        return x

    def rng(self, seed: int | None = None) -> np.random.Generator:
        return np.random.default_rng(seed)
