"""The derivative engine for user functions: record ``f`` once with autograd, replay it.

See :mod:`.engine` for what is replayed and when a function falls back to autograd, and
docs/derivatives.md for the user-facing description.
"""

from .codegen import Program, Stale
from .engine import (
    DeferredCotangents,
    ForwardTape,
    ReplayedFunction,
    ReplayUnavailable,
    ReplayWarning,
    replayed,
    replaying_rhs,
)
from .pytree import ParamLayout, flatten, float_leaves, is_container, layout_of, unflattener
from .record import Graph, record

__all__ = [
    "DeferredCotangents",
    "ForwardTape",
    "Graph",
    "ParamLayout",
    "Program",
    "ReplayUnavailable",
    "ReplayWarning",
    "ReplayedFunction",
    "Stale",
    "flatten",
    "float_leaves",
    "is_container",
    "layout_of",
    "record",
    "replayed",
    "replaying_rhs",
    "unflattener",
]
