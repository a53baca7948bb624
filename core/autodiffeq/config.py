"""Configuration: which backend (and later other defaults) a solve uses.

Precedence, highest first: the per-call argument (``solve(..., backend="cupy")``), the innermost
:func:`config_context`, :func:`set_config`, the environment variable ``AUTODIFFEQ_BACKEND``,
the built-in default ``"numpy"``. Contexts are ``contextvars``-based, so a context entered in
one thread (or asyncio task) does not leak into another.

The environment is read when a solve resolves its backend, never at import, so a bad value can
not break ``import autodiffeq``; it is reported when used.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

from .errors import InvalidArgument, InvalidType

DEFAULTS: dict[str, Any] = {"backend": "numpy"}
ENVIRONMENT = {"backend": "AUTODIFFEQ_BACKEND"}

_global: dict[str, Any] = {}
_global_lock = threading.Lock()
_context: contextvars.ContextVar[MappingProxyType] = contextvars.ContextVar(
    "autodiffeq_config", default=MappingProxyType({})
)


def _check(options: dict[str, Any]) -> None:
    for key, value in options.items():
        if key not in DEFAULTS:
            raise InvalidArgument(
                f"unknown configuration key {key!r}; known keys: {', '.join(sorted(DEFAULTS))}"
            )
        if key == "backend" and value is not None and not isinstance(value, str):
            raise InvalidType(f"configuration 'backend' must be a backend name (str), got "
                              f"{type(value).__name__}")


def set_config(**options: Any) -> None:
    """Set process-wide defaults, e.g. ``set_config(backend="cupy")``; ``None`` unsets."""
    _check(options)
    with _global_lock:
        for key, value in options.items():
            if value is None:
                _global.pop(key, None)
            else:
                _global[key] = value


@contextlib.contextmanager
def config_context(**options: Any) -> Iterator[None]:
    """Temporarily override configuration in this thread/task::

        with ade.config_context(backend="array_api_strict"):
            sol = ade.solve(prob)
    """
    _check(options)
    merged = dict(_context.get())
    merged.update({k: v for k, v in options.items() if v is not None})
    token = _context.set(MappingProxyType(merged))
    try:
        yield
    finally:
        _context.reset(token)


def get_config(key: str | None = None, explicit: Any = None) -> Any:
    """The effective value of ``key`` (or all keys as a dict) after applying precedence."""
    if key is None:
        return {k: get_config(k) for k in DEFAULTS}
    if key not in DEFAULTS:
        raise InvalidArgument(f"unknown configuration key {key!r}")
    if explicit is not None:
        return explicit
    context = _context.get()
    if key in context:
        return context[key]
    if key in _global:
        return _global[key]
    env_name = ENVIRONMENT.get(key)
    if env_name:
        value = os.environ.get(env_name, "").strip()
        if value:
            return value
    return DEFAULTS[key]


def config_source(key: str, explicit: Any = None) -> str:
    """Where the effective value of ``key`` comes from (for error messages)."""
    if explicit is not None:
        return "argument"
    if key in _context.get():
        return "config_context"
    if key in _global:
        return "set_config"
    env_name = ENVIRONMENT.get(key)
    if env_name and os.environ.get(env_name, "").strip():
        return f"environment variable {env_name}"
    return "default"
