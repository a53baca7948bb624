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
        import scipy.linalg

        return scipy.linalg.lu_factor(a, check_finite=False)

    def lu_solve(self, factor: Any, b: Any) -> Any:
        import scipy.linalg

        return scipy.linalg.lu_solve(factor, b, check_finite=False)

    def rng(self, seed: int | None = None) -> np.random.Generator:
        return np.random.default_rng(seed)
