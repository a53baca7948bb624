"""The ``array_api_strict`` test backend plugin.

``array_api_strict`` implements only the Python array API standard and rejects everything
else, including NumPy arrays mixed into its operations. Every solver passing the conformance
kit on this backend proves, on a CPU, that its numerical code uses nothing but the standard,
so it will run on CuPy and other array-API libraries too.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import autodiffeq as ade


def _probe() -> str | None:
    if importlib.util.find_spec("array_api_strict") is None:
        return "the package array_api_strict is not installed (pip install autodiffeq[test])"
    return None


def _make_backend() -> Any:
    from .backend import ArrayApiStrictBackend

    return ArrayApiStrictBackend()


@ade.hookimpl
def autodiffeq_register_backends(register: Any) -> None:
    register(
        ade.BackendSpec(
            name="array_api_strict",
            factory=_make_backend,
            probe=_probe,
            device="cpu",
            capabilities=("lu", "rng"),
            testing_only=True,
            description="array_api_strict: the standard only; proves no NumPy leaks.",
        )
    )
