"""Checks of user input that give errors naming the argument and what was wrong."""

from __future__ import annotations

import math
import numbers
import sys
from typing import Any

import numpy as np

from .errors import InvalidArgument, InvalidType, ShapeMismatch, UnsupportedCombination


def is_traced(x: Any) -> bool:
    """Whether ``x`` is an autograd box (a value being differentiated).

    autograd is only consulted if it is already imported: nothing can be traced otherwise.
    """
    tracer = sys.modules.get("autograd.tracer")
    return tracer is not None and isinstance(x, tracer.Box)


def contains_traced(x: Any) -> bool:
    """Whether ``x`` is, or holds in a dict/list/tuple, an autograd box."""
    if is_traced(x):
        return True
    if isinstance(x, dict):
        return any(contains_traced(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        return any(contains_traced(v) for v in x)
    return False


def unbox(x: Any) -> Any:
    """The plain value inside (possibly nested) autograd boxes; ``x`` itself otherwise."""
    while is_traced(x):
        x = x._value
    return x


def unbox_tree(x: Any) -> Any:
    """``x`` with every autograd box unboxed, inside dicts, lists and tuples too."""
    x = unbox(x)
    if isinstance(x, dict):
        return {k: unbox_tree(v) for k, v in x.items()}
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return type(x)(*(unbox_tree(v) for v in x))
    if isinstance(x, (list, tuple)):
        return type(x)(unbox_tree(v) for v in x)
    return x


def traced_flat(p: Any) -> Any:
    """The float leaves of the (possibly traced) container ``p`` concatenated into one flat
    vector that autograd differentiates back to the leaves, in the order of
    :func:`autodiffeq.replay.flatten`."""
    import autograd.numpy as anp

    from .replay.pytree import _is_float_leaf

    leaves: list[Any] = []

    def walk(x: Any) -> None:
        value = unbox(x)
        if isinstance(value, dict):
            keys = sorted(value.keys()) if _sortable(value) else sorted(value.keys(), key=repr)
            for k in keys:
                walk(x[k])
        elif isinstance(value, (list, tuple)):
            for i in range(len(value)):
                walk(x[i])
        elif _is_float_leaf(value) or (is_traced(x) and isinstance(value, (int, float))):
            leaves.append(anp.reshape(x, (-1,)))

    walk(p)
    if not leaves:
        return anp.zeros(0)
    return anp.concatenate(leaves)


def _sortable(d: dict) -> bool:
    try:
        sorted(d.keys())
    except TypeError:
        return False
    return True


def check_parameter_leaves(p: Any) -> None:
    """Every float leaf of the container ``p`` is finite."""
    from .replay.pytree import float_leaves

    for i, leaf in enumerate(float_leaves(p)):
        if not np.all(np.isfinite(np.asarray(leaf))):
            raise InvalidArgument(f"p contains NaN or inf (in its float leaf number {i})")


def array_namespace_of(x: Any) -> Any | None:
    """The array-API namespace of ``x`` if it is a non-NumPy array-API array, else ``None``.

    CuPy arrays (CuPy 13 and 14) do not define ``__array_namespace__``, but the ``cupy``
    module implements the standard's functions: it is their namespace."""
    if isinstance(x, (np.ndarray, np.generic)):
        return None
    get = getattr(x, "__array_namespace__", None)
    if get is not None:
        return get()
    if type(x).__module__.partition(".")[0] == "cupy":
        return sys.modules.get("cupy")
    return None


def array_namespace(*xs: Any) -> Any:
    """The namespace to compute with on the arrays ``xs`` (what ``f`` should use to run on
    every backend): ``autograd.numpy`` for NumPy arrays, numbers and autograd's boxes (so a
    traced ``f`` stays differentiable), else the arrays' own array-API namespace (``cupy``
    for CuPy arrays, ``array_api_strict`` for its arrays)::

        def f(u, p, t):
            xp = ade.array_namespace(u)
            return xp.stack([p[0] * u[0] - p[1] * u[0] * u[1], ...])

    Raises :class:`InvalidType` when the arrays come from two different libraries."""
    found = None
    for x in xs:
        xp = array_namespace_of(x)
        if xp is None:
            continue
        if found is not None and xp is not found:
            raise InvalidType(f"arrays of two libraries ({found.__name__} and {xp.__name__}) "
                              f"passed to array_namespace")
        found = xp
    if found is not None:
        return found
    import autograd.numpy as anp

    return anp


def host_view(x: Any, name: str) -> np.ndarray:
    """``x`` as a NumPy array for validation, or a clear error if it is not numeric."""
    x = unbox(x)
    if isinstance(x, (np.ndarray, np.generic)):
        return np.asarray(x)
    xp = array_namespace_of(x)
    if xp is not None:
        try:
            return np.from_dlpack(x)
        except Exception:
            try:
                return np.asarray(x)
            except Exception:  # device arrays (CuPy): validated on the device instead
                return None  # type: ignore[return-value]
    if isinstance(x, (str, bytes)) or x is None:
        raise InvalidType(f"{name} must be a number or an array of numbers, got {x!r}")
    try:
        arr = np.asarray(x)
    except Exception as exc:
        raise InvalidType(
            f"{name} must be a number or an array of numbers, got {type(x).__name__}: {exc}"
        ) from None
    return arr


def check_state(x: Any, name: str = "u0") -> None:
    """``x`` must be a finite, real, numeric array (any shape)."""
    if type(x) is np.ndarray and x.dtype.kind == "f" and np.isfinite(x).all():
        return  # the common case, checked in a microsecond (ensembles check thousands)
    arr = host_view(x, name)
    if arr is None:
        xp = array_namespace_of(x)
        if not bool(xp.all(xp.isfinite(x))):
            raise InvalidArgument(f"{name} contains NaN or inf")
        return
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        if arr.dtype.kind == "c":
            raise InvalidType(f"{name} is complex ({arr.dtype}); only real states are supported")
        raise InvalidType(
            f"{name} must be numeric, got an array of dtype {arr.dtype} "
            f"(from {type(x).__name__})"
        )
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))
        where = tuple(int(i) for i in bad[0]) if bad.size else ()
        raise InvalidArgument(
            f"{name} contains NaN or inf ({int((~np.isfinite(arr)).sum())} entries, first at "
            f"index {where})"
        )


def parameter_array(p: Any, purpose: str) -> np.ndarray:
    """``p`` as a finite floating-point NumPy array for differentiation with respect to it
    (float32/float64 kept, anything else as float64)."""
    try:
        arr = np.asarray(p)
        if arr.dtype not in (np.float32, np.float64):
            arr = np.asarray(p, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidType(
            f"p must be an array of numbers {purpose} (flatten containers, e.g. with "
            f"autograd.misc.flatten), got {type(p).__name__}"
        ) from None
    bad = ~np.isfinite(arr)
    if bad.any():
        where = np.argwhere(bad)[0] if arr.ndim else ()
        raise InvalidArgument(
            f"p contains NaN or inf (first at index {tuple(int(i) for i in where)})"
        )
    return arr


def trace_depth(x: Any) -> int:
    """How many autograd boxes wrap ``x`` (nested differentiation: 2 or more)."""
    depth = 0
    while is_traced(x):
        x = x._value
        depth += 1
    return depth


def check_tspan(tspan: Any, name: str = "tspan") -> tuple[float, float]:
    """``tspan`` must be two finite, distinct real numbers; it may run backwards."""
    if isinstance(tspan, (str, bytes)) or tspan is None:
        raise InvalidType(f"{name} must be a pair (t0, t1) of numbers, got {tspan!r}")
    try:
        items = list(tspan)
    except TypeError:
        raise InvalidType(f"{name} must be a pair (t0, t1) of numbers, got {tspan!r}") from None
    if len(items) != 2:
        raise InvalidArgument(f"{name} must have exactly two entries (t0, t1), got {len(items)}")
    values = []
    for label, item in zip(("t0", "t1"), items, strict=True):
        if is_traced(item):
            raise UnsupportedCombination(
                f"{name} {label} is traced by autograd: derivatives with respect to the time "
                "span are not supported (only with respect to u0 and p)",
                (),
            )
        if isinstance(item, bool) or not isinstance(item, (numbers.Real, np.ndarray, np.generic)):
            raise InvalidType(f"{name} {label} must be a real number, got {item!r}")
        try:
            value = float(item)
        except (TypeError, ValueError):
            raise InvalidType(f"{name} {label} must be a real number, got {item!r}") from None
        if not math.isfinite(value):
            raise InvalidArgument(f"{name} {label} must be finite, got {value}")
        values.append(value)
    t0, t1 = values
    if t0 == t1:
        raise InvalidArgument(f"{name} is empty: t0 == t1 == {t0}")
    return t0, t1


def check_callable(f: Any, name: str) -> None:
    if not callable(f):
        raise InvalidType(f"{name} must be callable, got {type(f).__name__}: {f!r}")


def check_lags(lags: Any, name: str = "constant_lags") -> tuple[float, ...]:
    """Constant delays: finite positive real numbers (a number or a sequence of them)."""
    if isinstance(lags, (str, bytes)) or lags is None:
        raise InvalidType(f"{name} must be a sequence of positive numbers, got {lags!r}")
    items = list(lags) if isinstance(lags, (list, tuple, np.ndarray)) else [lags]
    out = []
    for i, tau in enumerate(items):
        if is_traced(tau):
            raise UnsupportedCombination(
                f"{name}[{i}] is traced by autograd: derivatives with respect to a constant "
                "lag are not supported (differentiate with respect to p)", ())
        out.append(check_positive_number(tau, f"{name}[{i}]"))
    return tuple(out)


def check_positive_number(value: Any, name: str, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.generic)):
        raise InvalidType(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise InvalidArgument(f"{name} must be a finite {kind} number, got {value}")
    return value


def check_mass_matrix(M: Any, u0: Any) -> None:
    """``M`` must be a constant, finite, real ``n x n`` matrix (``n = u0.size``): an array of
    numbers or a ``scipy.sparse`` matrix."""
    if callable(M) and not hasattr(M, "shape"):
        raise InvalidType(
            "mass_matrix must be a constant matrix (an array or a scipy.sparse matrix); a "
            "mass matrix that depends on u or t is not supported"
        )
    if isinstance(M, (str, bytes)):
        raise InvalidType(f"mass_matrix must be a constant matrix (an array or a scipy.sparse "
                          f"matrix), got {M!r}")
    u0 = unbox(u0)
    u0_shape = tuple(u0.shape) if hasattr(u0, "shape") else np.shape(u0)
    n = math.prod(u0_shape)
    sparse = hasattr(M, "tocsr") and hasattr(M, "nnz")
    if sparse:
        values: np.ndarray | None = np.asarray(M.tocsr().data)
        shape = tuple(M.shape)
    else:
        values = host_view(M, "mass_matrix")  # None: a device array, checked where used
        shape = tuple(M.shape) if values is None else values.shape
    if shape != (n, n):
        raise ShapeMismatch(f"mass_matrix has shape {shape}; expected ({n}, {n}) for a state "
                            f"of {n} components (u0 has shape {u0_shape})")
    if values is None:
        return
    if values.dtype.kind not in "fiub":
        kind = "complex" if values.dtype.kind == "c" else f"non-numeric ({values.dtype})"
        raise InvalidType(f"mass_matrix must hold real numbers, got {kind} values")
    if not bool(np.all(np.isfinite(values))):
        bad = np.argwhere(~np.isfinite(M.toarray() if sparse else values))
        raise InvalidArgument(f"mass_matrix has non-finite entries (first at index "
                              f"{tuple(int(i) for i in bad[0])})")
