"""The NumPy backend plugin (CPU): arrays are ``numpy.ndarray``, dense LU from SciPy."""

from __future__ import annotations

from typing import Any

import autodiffeq as ade


def _make_backend() -> Any:
    from .backend import NumpyBackend

    return NumpyBackend()


@ade.hookimpl
def autodiffeq_register_backends(register: Any) -> None:
    register(
        ade.BackendSpec(
            name="numpy",
            factory=_make_backend,
            device="cpu",
            capabilities=("lu", "sparse", "rng", "autograd"),
            description="NumPy arrays on the CPU; LU from SciPy.",
        )
    )
