"""The pytest plugin of the conformance kit (entry point ``pytest11``: ``autodiffeq``).

Loaded automatically wherever autodiffeq is installed. It adds:

* ``--autodiffeq-backend NAME`` (repeatable): run conformance cases only on these backends;
* ``--autodiffeq-strict-plugins``: make plugin import/registration failures errors;
* the fixture ``autodiffeq_registry``: the default registry (strict if asked);
* the marker ``autodiffeq_conformance`` on every conformance case, so ``-m
  autodiffeq_conformance`` selects (or deselects) them.

It imports nothing heavy: the kit itself is imported only by test modules that use it.
"""

from __future__ import annotations

from typing import Any

import pytest

_selected_backends: list[str] | None = None
_strict_plugins = False


def selected_backends() -> list[str] | None:
    """Backends chosen with ``--autodiffeq-backend``, or ``None`` for all available."""
    return _selected_backends


def strict_plugins() -> bool:
    """Whether ``--autodiffeq-strict-plugins`` was given."""
    return _strict_plugins


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("autodiffeq", "autodiffeq conformance kit")
    group.addoption(
        "--autodiffeq-backend",
        action="append",
        default=None,
        metavar="NAME",
        help="run autodiffeq conformance cases only on this backend (repeatable)",
    )
    group.addoption(
        "--autodiffeq-strict-plugins",
        action="store_true",
        default=False,
        help="fail when an autodiffeq plugin cannot be imported or registered",
    )


def pytest_configure(config: Any) -> None:
    global _selected_backends, _strict_plugins
    _selected_backends = config.getoption("--autodiffeq-backend")
    _strict_plugins = bool(config.getoption("--autodiffeq-strict-plugins"))
    config.addinivalue_line(
        "markers", "autodiffeq_conformance: a case of the autodiffeq conformance kit"
    )
    config.addinivalue_line(
        "markers", "slow: a long conformance case (exhaustive matrix); deselect with -m 'not slow'"
    )
    config.addinivalue_line(
        "markers", "gpu: a case on a GPU backend (skipped, with the reason, without a GPU); "
        "select with -m gpu"
    )


@pytest.fixture
def autodiffeq_registry() -> Any:
    """The registry of every installed plugin (strict with ``--autodiffeq-strict-plugins``)."""
    from autodiffeq.registry import Registry

    return Registry(entry_points=True, strict=_strict_plugins)
