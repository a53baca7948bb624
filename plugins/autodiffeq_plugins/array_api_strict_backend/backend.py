"""``array_api_strict`` implementation of :class:`autodiffeq.backend.Backend`."""

from __future__ import annotations

from typing import Any

import array_api_strict as xp
import numpy as np

from autodiffeq.backend import Backend, host_generator


class ArrayApiStrictBackend(Backend):
    """Arrays are ``array_api_strict.Array``; only standard operations are available."""

    name = "array_api_strict"
    xp = xp
    device = "cpu"
    capabilities = frozenset({"lu", "rng"})
    array_type = (xp.Array if hasattr(xp, "Array") else type(xp.asarray(0.0)),)

    def asarray(self, x: Any, dtype: Any = None) -> Any:
        return xp.asarray(x) if dtype is None else xp.asarray(x, dtype=dtype)

    def to_host(self, x: Any) -> np.ndarray:
        return np.from_dlpack(x)

    def lu_factor(self, a: Any) -> Any:
        return _StrictLU(a)

    def lu_solve(self, factor: Any, b: Any) -> Any:
        return factor.solve(b)

    def rng(self, seed: Any = None) -> np.random.Generator:
        """NumPy's generator: draws are made on the host and converted by :meth:`normal` (a
        test backend; a device backend draws on the device)."""
        return host_generator(seed)


class _StrictLU:
    """A factorisation through the standard's ``linalg.solve`` (re-solves; test backend)."""

    def __init__(self, a: Any) -> None:
        self.a = a

    def solve(self, b: Any) -> Any:
        if b.ndim == 1:
            return xp.linalg.solve(self.a, b[:, None])[:, 0]
        return xp.linalg.solve(self.a, b)
