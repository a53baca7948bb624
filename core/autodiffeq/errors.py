"""The exception hierarchy.

Every error autodiffeq raises derives from :class:`AutodiffeqError` and also from the builtin
exception a Python user would expect (``ValueError``, ``TypeError``, ``KeyError``, ...), so
``except ValueError`` keeps working in code that embeds the library. Numerical failure in the
middle of a solve is not an exception: it is reported by ``Solution.retcode``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AutodiffeqError(Exception):
    """Base class of all errors raised by autodiffeq."""


class InvalidArgument(AutodiffeqError, ValueError):
    """An argument has the wrong value (non-finite ``u0``, reversed tolerances, ...)."""


class InvalidType(AutodiffeqError, TypeError):
    """An argument has the wrong type (``f`` not callable, non-numeric ``u0``, ...)."""


class ShapeMismatch(InvalidArgument):
    """An array has a shape (or dtype) other than the one required."""


class UnknownName(AutodiffeqError, KeyError):
    """A solver, backend or other plugin name is not registered."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        known = sorted(known)
        close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.5)
        if not close:
            lowered = {k.lower(): k for k in known}
            if str(name).lower() in lowered:
                close = [lowered[str(name).lower()]]
        hint = f" Did you mean {close[0]!r}?" if close else ""
        listing = ", ".join(known) if known else "(none registered)"
        plural = kind[:-1] + "ies" if kind.endswith("y") else kind + "s"
        self.kind, self.name, self.known, self.closest = kind, name, known, close[:1]
        super().__init__(f"unknown {kind} {name!r}.{hint} Registered {plural}: {listing}.")

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class DuplicateName(AutodiffeqError, ValueError):
    """Two plugins registered the same name."""


class PluginError(AutodiffeqError, RuntimeError):
    """A plugin failed to load or registered something invalid."""


class UnsupportedCombination(AutodiffeqError, ValueError):
    """A solver, backend, sensitivity method and problem that cannot work together.

    ``reason`` says why; ``alternatives`` lists registered names that would work.
    """

    def __init__(self, reason: str, alternatives: Iterable[str] = ()) -> None:
        self.reason = reason
        self.alternatives = tuple(alternatives)
        message = reason
        if self.alternatives:
            message = message.rstrip()
            if not message.endswith((".", ":", ";")):
                message += "."
            message += " Alternatives: " + ", ".join(self.alternatives) + "."
        super().__init__(message)


class BackendUnavailable(AutodiffeqError, RuntimeError):
    """A registered backend cannot be used on this machine (library or device missing)."""


class DenseOutputError(AutodiffeqError, ValueError):
    """``sol(t)`` was asked for something the solution cannot interpolate."""


__all__ = [
    "AutodiffeqError",
    "InvalidArgument",
    "InvalidType",
    "ShapeMismatch",
    "UnknownName",
    "DuplicateName",
    "PluginError",
    "UnsupportedCombination",
    "BackendUnavailable",
    "DenseOutputError",
]


class StiffnessWarning(UserWarning):
    """A non-stiff solver detected that the problem is stiff."""


class SolverWarning(UserWarning):
    """A solve ended without success (its ``retcode`` says why), or recovered from a problem
    of ``f`` that the user should know about."""
