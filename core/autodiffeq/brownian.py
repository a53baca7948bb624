"""Brownian paths: one Wiener process that every SDE solver and sensitivity method reads.

A :class:`BrownianPath` is a sample of an ``m``-dimensional Wiener process ``W`` on a time
span, together with its time integral

    K(t) = int_{t_lo}^{t} W(r) dr,

so that, on any interval ``[s, t]`` (``h = t - s``), it gives the increment and the iterated
integral the order-1.5 methods need,

    dW = W(t) - W(s),      I_(1,0) = int_s^t (W(r) - W(s)) dr = K(t) - K(s) - h W(s),

(the space-time Lévy area of Foster, Lyons & Oberhauser 2020 is ``H = I_(1,0)/h - dW/2``).
The pair ``X = (W, K)`` is a Gauss–Markov process, so the path is kept as *knots*: the exact
values of ``X`` at the times it has been asked about. A query

* at a knot returns the stored value;
* after the last knot extends the path with an independent step: for ``h > 0``,
  ``dW = sqrt(h) z1`` and ``I_(1,0) = h (dW/2 + sqrt(h) z2 / (2 sqrt 3))``, ``z ~ N(0, I)``
  (``Var I_(1,0) = h**3/3``, ``Cov(dW, I_(1,0)) = h**2/2``);
* between two knots ``a < m < b`` draws ``X(m)`` from its exact conditional law given
  ``X(a)`` and ``X(b)`` (a Brownian bridge for the pair; closed form below), and stores it.

So the values are exact at any times, asked in any order, and consistent with everything
asked before: a rejected step's endpoint stays part of the path and the retried, shorter step
sees the bridge between its ends (the "rejection sampling with memory" of Rackauckas & Nie
2017, without their stack bookkeeping); dense saves, a second solve with ``brownian=sol.W`` and
an adjoint running backwards read the same path.

Why not a virtual Brownian tree (diffrax's ``VirtualBrownianTree``, constant memory): it
answers a query at an arbitrary time only to a tolerance (the last level is interpolated),
and each query walks ``O(log(1/tol))`` levels, each a draw for the whole state; here every
value is exact and a forward step costs one draw. The price is memory: two numbers per
component per distinct time asked (as much as saving the solution at every step).

Fixed steps are fast: when the path is extended by the same step ``h`` as the extension
before, it extends by 2, 4, ... up to 256 steps of ``h`` at once (one vectorised draw); a
fixed-step solve then finds its step ends already stored. This only decides when values are
drawn, never their law, and it is deterministic, so a seeded path gives the same values for
the same sequence of queries (``same seed, same bits``).

Bridge law (``rho = (m - a)/(b - a)``, ``sigma = 1 - rho``, ``q = 3 rho^2 - 3 rho + 1``; with
``w2 = W(b) - W(a)``, ``k2 = K(b) - K(a) - h W(a)`` and ``w, k`` the same for ``m``):

    E[w | .] = rho (3 rho - 2) w2 + 6 rho sigma k2 / h
    E[k | .] = -rho^2 sigma h w2 + rho^2 (3 - 2 rho) k2
    w = E[w] + sqrt(h) L00 z1,   k = E[k] + h^1.5 (L10 z1 + L11 z2)
    L00 = sqrt(rho sigma q),  L10 = rho^1.5 sigma^2 (1 - 2 rho) / (2 sqrt(sigma q)),
    L11 = sqrt(rho^3 sigma^3 / (12 q))

(the conditional Gaussian of ``(W, int W)``; see e.g. Foster, Lyons & Oberhauser, "An
optimal polynomial approximation of Brownian motion", SIAM J. Numer. Anal. 58 (2020)).
"""

from __future__ import annotations

import bisect
import math
import numbers
from typing import Any

import numpy as np

from .errors import InvalidArgument, InvalidType
from .validation import check_tspan

#: the longest run of equal steps drawn at once when the path is extended by a fixed step
MAX_RUN = 256
#: and at most this many numbers per run (a run's arrays stay in cache)
RUN_ELEMENTS = 2 ** 15
#: paths at least this wide build a run row by row, narrower ones with running sums
_ROWWISE_SIZE = 64

_SQRT3 = math.sqrt(3.0)
#: times closer than this (relative) are the same time of the path
_TIME_RESOLUTION = 16 * float(np.finfo(np.float64).eps)


def _noise_shape(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (int(shape),)
    try:
        dims = tuple(shape)
    except TypeError:
        raise InvalidType(
            f"shape must be a tuple of non-negative integers, got {shape!r}") from None
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 0:
            raise InvalidType(f"shape must be a tuple of non-negative integers, got {shape!r}")
    return tuple(int(d) for d in dims)


def _running_sum(xp: Any, x: Any) -> None:
    """``x[j] = x[0] + ... + x[j]`` along axis 0, in place, added in that order (NumPy's
    ``cumsum``; the array API's ``cumulative_sum`` elsewhere)."""
    cumsum = getattr(xp, "cumsum", None)
    if cumsum is not None:
        cumsum(x, axis=0, out=x)
    else:
        x[...] = xp.cumulative_sum(x, axis=0)


def check_seed(seed: Any, name: str = "seed") -> int | np.random.SeedSequence | None:
    """``seed`` must be ``None``, a non-negative integer or a ``numpy.random.SeedSequence``
    (an ensemble's trajectory seeds are: :func:`autodiffeq.trajectory_seed`)."""
    if seed is None or isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise InvalidArgument(f"{name} must be a non-negative integer, a "
                              f"numpy.random.SeedSequence or None, got {seed!r}")
    return int(seed)


def _resolve_backend(backend: Any) -> Any:
    from .backend import Backend

    if isinstance(backend, Backend):
        return backend
    from .registry import registry
    from .request import resolve_backend

    return resolve_backend(registry(), backend)


class BrownianPath:
    """A seeded Wiener path on ``tspan`` with values of shape ``shape`` (module docstring).

    Args:
        tspan: ``(t0, t1)``; queries must lie in the closed interval. ``W(t)`` is measured
            from ``t0`` (``W(t0) = 0``).
        shape: the shape of ``W`` (for an SDE: ``u``'s shape for diagonal and additive noise,
            ``()`` for scalar noise, ``(m,)`` for general noise).
        seed: a non-negative integer (or a ``numpy.random.SeedSequence``) making the path
            reproducible, or ``None``.
        backend: a backend name or :class:`~autodiffeq.Backend` (default: the configured
            one); the draws come from its generator and the values live on it.

    ``W(t)`` is ``W(t) - W(t0)``; ``W(s, t)`` is the increment ``W(t) - W(s)``; both have
    ``shape``. Values are kept in float64 (a float32 solve reads them rounded once, so
    long paths do not accumulate float32 rounding).
    """

    def __init__(self, tspan: Any, shape: Any, seed: Any = None,
                 backend: Any = None) -> None:
        t0, t1 = check_tspan(tspan)
        self.tspan = (t0, t1)
        self.shape = _noise_shape(shape)
        self.seed = check_seed(seed)
        be = _resolve_backend(backend)
        if "rng" not in be.capabilities:
            from .errors import UnsupportedCombination

            raise UnsupportedCombination(
                f"backend {be.name!r} has no random generator (capability 'rng'), so it cannot "
                "carry a Brownian path", ())
        self.backend = be
        self._xp = be.xp
        self.dtype = be.dtype(np.dtype(np.float64))
        self.size = int(np.prod(self.shape, dtype=np.int64))
        self._rng = be.rng(self.seed)
        self._lo, self._hi = min(t0, t1), max(t0, t1)
        # knots: sorted times and the values (W, K = int W), each flat of length size
        self._times: list[float] = [self._lo]
        zero = self._xp.zeros((self.size,), dtype=self.dtype)
        self._values: list[tuple[Any, Any]] = [(zero, zero)]
        self._run = 1
        self._last_step: float | None = None
        self._origin, self._steps = self._lo, 0  # a run of equal steps: start, steps so far

    #: independent trajectories this path drives side by side (see StackedBrownianPath)
    trajectories = 1

    def __getstate__(self) -> dict[str, Any]:
        # the array namespace is a module: it travels as the backend's name (which pickles
        # by name) and is taken from the backend again on arrival
        state = dict(self.__dict__)
        state.pop("_xp", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._xp = self.backend.xp

    # ------------------------------------------------------------------ public queries
    def __call__(self, s: Any, t: Any = None) -> Any:
        """``W(s) - W(t0)`` (one argument) or ``W(t) - W(s)`` (two), of :attr:`shape`."""
        if t is None:
            w = self._value(float(s))[0] - self._value(self.tspan[0])[0]
        else:
            w = self._value(float(t))[0] - self._value(float(s))[0]
        return self._xp.reshape(w, self.shape)

    def increment(self, s: float, t: float, dtype: Any = None) -> Any:
        """The flat increment ``W(t) - W(s)`` (length :attr:`size`) in ``dtype``."""
        w = self._value(t)[0] - self._value(s)[0]
        return w if dtype is None or dtype == self.dtype else self._xp.astype(w, dtype)

    def increment_and_integral(self, s: float, t: float, dtype: Any = None
                               ) -> tuple[Any, Any]:
        """``(dW, I_(1,0))`` on ``[s, t]``, flat: ``dW = W(t) - W(s)`` and
        ``I_(1,0) = int_s^t (W(r) - W(s)) dr`` (for ``t < s`` the same integrals taken
        from ``s`` backwards: ``-int_t^s (W(r) - W(s)) dr``)."""
        ws, ks = self._value(s)
        wt, kt = self._value(t)
        w = wt - ws
        area = (kt - ks) - (t - s) * ws
        if dtype is not None and dtype != self.dtype:
            w, area = self._xp.astype(w, dtype), self._xp.astype(area, dtype)
        return w, area

    def levy_area(self, s: float, t: float) -> Any:
        """The space-time Lévy area ``H = I_(1,0)/h - dW/2`` on ``[s, t]`` (``shape``)."""
        w, area = self.increment_and_integral(float(s), float(t))
        return self._xp.reshape(area / (float(t) - float(s)) - 0.5 * w, self.shape)

    @property
    def times(self) -> np.ndarray:
        """The times at which the path's values are fixed so far (sorted)."""
        return np.asarray(self._times, dtype=np.float64)

    def covers(self, tspan: Any) -> bool:
        """Whether every time of ``tspan`` lies inside this path's span."""
        a, b = float(tspan[0]), float(tspan[1])
        return self._lo <= min(a, b) and max(a, b) <= self._hi

    def __repr__(self) -> str:
        return (f"BrownianPath(tspan={self.tspan}, shape={self.shape}, seed={self.seed}, "
                f"backend={self.backend.name!r}, knots={len(self._times)})")

    # ------------------------------------------------------------------ knots
    def _value(self, t: float) -> Any:
        times = self._times
        i = bisect.bisect_left(times, t)
        if i < len(times) and times[i] == t:
            return self._values[i]
        tol = _TIME_RESOLUTION * abs(t)
        if not self._lo - tol <= t <= self._hi + tol:
            raise InvalidArgument(
                f"time {t!r} is outside the Brownian path's span {self.tspan}")
        t = min(max(t, self._lo), self._hi)
        # a time within rounding of a knot is that knot: step ends computed as t + dt and as
        # t0 + k dt differ in the last bits, and must not cost a bridge draw
        if i < len(times) and times[i] - t <= tol:
            return self._values[i]
        if i and t - times[i - 1] <= tol:
            return self._values[i - 1]
        if i == len(times):
            self._extend(t)
            return self._values[i]
        return self._bridge(i - 1, i, t)

    def _normals(self, shape: tuple[int, ...]) -> Any:
        return self.backend.normal(self._rng, shape, self.dtype)

    def _extend(self, t: float) -> None:
        """Draw the path forward from the last knot to ``t`` (module docstring)."""
        t_last = self._times[-1]
        h = t - t_last
        last_step = self._last_step
        if last_step is not None and abs(h - last_step) <= 1e-9 * abs(last_step):
            # equal steps: draw ahead, up to MAX_RUN steps and RUN_ELEMENTS numbers at once
            # (larger blocks would leave the cache and cost more than they save)
            self._run = min(2 * self._run, MAX_RUN, max(1, RUN_ELEMENTS // max(self.size, 1)))
            self._steps += 1
        else:
            self._run = 1
            self._origin, self._steps = t_last, 1
        self._last_step = h
        # the times ahead as a fixed-step driver computes them, origin + m dt (repeated
        # addition would drift from them by more than the time resolution)
        step = (t - self._origin) / self._steps
        times = [t]
        while len(times) < self._run:
            nxt = self._origin + (self._steps + len(times)) * step
            if nxt > self._hi:
                break
            times.append(nxt)
        self._steps += len(times) - 1
        count = len(times)
        sq = math.sqrt(h)
        c_w, c_k = 0.5 * h * sq, (0.5 / _SQRT3) * h * sq
        w, k = self._values[-1]
        # W and K built in the buffer of the normals (dW = sqrt(h) z_w, K increment =
        # c_k z_k + c_w z_w + h W_before), with the same additions in the same order either
        # row by row (wide paths: no temporaries) or as running sums down the run (narrow
        # paths, whose long runs of tiny rows would cost a Python step each)
        z = self._normals((2, count, self.size))
        if self.size >= _ROWWISE_SIZE:
            for j in range(count):
                zw, zk = z[0, j, ...], z[1, j, ...]
                zk *= c_k
                zk += c_w * zw
                zk += h * w
                zk += k
                zw *= sq
                zw += w
                w, k = zw, zk
                self._values.append((w, k))
            self._times.extend(times)
            return
        zw, zk = z[0, ...], z[1, ...]
        zk *= c_k
        zk += c_w * zw
        zw *= sq
        zw[0, ...] += w
        _running_sum(self._xp, zw)
        zk[0, ...] += h * w
        if count > 1:
            zk[1:, ...] += h * zw[:-1, ...]
        zk[0, ...] += k
        _running_sum(self._xp, zk)
        self._values.extend((zw[j, ...], zk[j, ...]) for j in range(count))
        self._times.extend(times)

    def _bridge(self, ia: int, ib: int, t: float) -> Any:
        """Draw the knot at ``t`` between knots ``ia`` and ``ib`` (module docstring)."""
        ta, tb = self._times[ia], self._times[ib]
        (wa, ka), (wb, kb) = self._values[ia], self._values[ib]
        h = tb - ta
        r = t - ta
        rho = r / h
        sig = 1.0 - rho
        q = 3.0 * rho * rho - 3.0 * rho + 1.0
        w2 = wb - wa
        k2 = kb - ka - h * wa
        z = self._normals((2, self.size))
        sq = math.sqrt(h)
        l00 = math.sqrt(max(rho * sig * q, 0.0))
        l10 = rho ** 1.5 * sig * sig * (1.0 - 2.0 * rho) / (2.0 * math.sqrt(max(sig * q, 1e-300)))
        l11 = math.sqrt(max(rho ** 3 * sig ** 3 / (12.0 * q), 0.0))
        w = ((rho * (3.0 * rho - 2.0)) * w2 + (6.0 * rho * sig / h) * k2
             + (sq * l00) * z[0, ...])
        k = ((-rho * rho * sig * h) * w2 + (rho * rho * (3.0 - 2.0 * rho)) * k2
             + (h * sq) * (l10 * z[0, ...] + l11 * z[1, ...]))
        value = (wa + w, ka + r * wa + k)
        self._times.insert(ib, t)
        self._values.insert(ib, value)
        return value

    def tiled(self, reps: int) -> TiledBrownianPath:
        """A view with ``reps`` copies of this path's values side by side (shape
        ``(reps * size,)``): the noise of an augmented system whose blocks are all driven by
        this ``W`` (the forward sensitivities of an SDE with diagonal noise)."""
        return TiledBrownianPath(self, reps)


class TiledBrownianPath(BrownianPath):
    """``reps`` copies of a :class:`BrownianPath` side by side; its values are the parent's
    (queries refine the parent), so solves on the view and on the parent read one path."""

    def __init__(self, parent: BrownianPath, reps: int) -> None:  # noqa: D107 (a view)
        self.parent = parent
        self.reps = int(reps)
        self.tspan = parent.tspan
        self.seed = parent.seed
        self.backend = parent.backend
        self._xp = parent._xp
        self.dtype = parent.dtype
        self.size = self.reps * parent.size
        self.shape = (self.size,)
        self._lo, self._hi = parent._lo, parent._hi

    @property
    def times(self) -> np.ndarray:
        return self.parent.times

    def _value(self, t: float) -> Any:
        w, k = self.parent._value(t)
        xp = self._xp
        return xp.concat([w] * self.reps), xp.concat([k] * self.reps)

    def __repr__(self) -> str:
        return f"TiledBrownianPath({self.parent!r}, reps={self.reps})"


class StackedBrownianPath(BrownianPath):
    """Independent :class:`BrownianPath` s side by side (each value repeated ``repeat``
    times): the noise of one solve of many trajectories stepped together (a vectorised
    ensemble), each driven by its own path. Every query is passed to each member in turn, so
    each member sees exactly the queries, in the same order, that a solve of its trajectory
    alone would make, and draws exactly the same values (``repeat = n`` gives a trajectory's
    scalar ``W`` to each of its ``n`` components)."""

    #: how many independent trajectories the path drives (steppers whose arithmetic could
    #: couple entries of the state, such as BLAS stage products, stay elementwise for > 1)
    trajectories: int

    def __init__(self, paths: list[BrownianPath], repeat: int = 1) -> None:  # noqa: D107
        if not paths:
            raise InvalidArgument("StackedBrownianPath needs at least one path")
        first = paths[0]
        for path in paths:
            if path.tspan != first.tspan or path.shape != first.shape or \
                    path.backend.name != first.backend.name:
                raise InvalidArgument(
                    "StackedBrownianPath: the paths must share tspan, shape and backend")
        self.paths = list(paths)
        self.repeat = int(repeat)
        self.trajectories = len(self.paths)
        self.tspan = first.tspan
        self.seed = None
        self.backend = first.backend
        self._xp = first._xp
        self.dtype = first.dtype
        self.size = len(self.paths) * first.size * self.repeat
        self.shape = (self.size,)
        self._lo, self._hi = first._lo, first._hi
        self._last: tuple[float, Any] = (math.nan, None)

    @property
    def times(self) -> np.ndarray:
        return self.paths[0].times

    def _value(self, t: float) -> Any:
        # a step reads the value at its start, which the step before read at its end
        if t == self._last[0]:
            return self._last[1]
        first = self.paths[0]
        n_knots = len(first._times)
        i = bisect.bisect_left(first._times, t)
        if i < n_knots and first._times[i] == t and all(
                len(path._times) == n_knots for path in self.paths):
            # a knot of every member (they were asked the same queries): no search, no draw
            values = [path._values[i] for path in self.paths]
        else:
            values = [path._value(t) for path in self.paths]
        xp = self._xp
        w = xp.concat([v[0] for v in values])
        k = xp.concat([v[1] for v in values])
        if self.repeat != 1:
            w, k = xp.repeat(w, self.repeat), xp.repeat(k, self.repeat)
        self._last = (t, (w, k))
        return w, k

    def __repr__(self) -> str:
        return (f"StackedBrownianPath({len(self.paths)} paths of shape {self.paths[0].shape}, "
                f"repeat={self.repeat})")
