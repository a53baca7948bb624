"""Derivatives of the right-hand side that sensitivity methods need.

For ``f(u, p, t)`` with flat state ``u`` (n,) and flat parameters ``p`` (m,):

    J = df/du (n, n),   F_p = df/dp (n, m),
    jvp:  J du + F_p dp,          vjp:  (v^T J, v^T F_p).

Sources, in the order ``mode="auto"`` tries them (docs/gradients.md, "Derivatives of the
right-hand side"):

1. ``"user"``: derivatives given on the problem (``ODEProblem(vjp=, jvp=, jac=, paramjac=)``)
   or carried by the model: an ``f`` object with ``f.vjp(v, u, p, t)`` (and optionally
   ``f.jvp(du, dp, u, p, t)`` and ``f.value_and_jvps(dU, dP, u, p, t)``, many tangents in one
   pass), such as :class:`autodiffeq.nn.MLP`;
2. ``"autograd"``: autograd traces ``f`` (NumPy backend; checked once on the first call);
3. ``"fd"``: central finite differences, with a one-time :class:`DerivativeWarning` (a vector-
   Jacobian product by differences needs the whole Jacobian: ``2 (n + m)`` evaluations).

A sensitivity method can force a source with its ``autojacvec`` option (SciMLSensitivity's
name for the same choice).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from .backend import Backend, parameters_on_backend
from .errors import InvalidArgument, UnsupportedCombination
from .jacobians import as_square_matrix, jacobian_source
from .replay import (
    DeferredCotangents,
    ForwardTape,
    ReplayUnavailable,
    flatten,
    is_container,
    layout_of,
    replayed,
)

MODES = ("auto", "user", "autograd", "fd")


class DerivativeWarning(UserWarning):
    """Derivatives of ``f`` fall back to finite differences (slower, less accurate)."""


class RHSDerivatives:
    """``J v``, ``v^T J`` and ``v^T df/dp`` of one problem's right-hand side.

    Args:
        f: the user's ``f(u, p, t)`` (``u`` of the user's ``shape``).
        p: the parameters (primal values; an array of any shape, or ``None``).
        shape: the state's shape; ``backend``: where the arrays live; ``dtype``: state dtype.
        problem: the problem, for user-supplied derivatives.
        mode: one of :data:`MODES`.
        wrt_p: whether derivatives with respect to ``p`` are wanted (otherwise ``p`` may be
            anything and ``m = 0``).
    """

    def __init__(
        self,
        f: Callable[..., Any],
        p: Any,
        shape: tuple[int, ...],
        backend: Backend,
        dtype: Any,
        problem: Any = None,
        mode: str = "auto",
        wrt_p: bool = True,
    ) -> None:
        if mode not in MODES:
            raise InvalidArgument(f"autojacvec must be one of {MODES}, got {mode!r}")
        self.f = f
        self.p = p
        #: ``p`` as ``f`` and the user's derivative functions see it in a solve: a host
        #: NumPy ``p`` moved once to a non-NumPy backend (the same object on NumPy)
        self.p_call = parameters_on_backend(p, backend)
        self.shape = tuple(shape)
        self.n = int(np.prod(self.shape, dtype=np.int64))
        self.backend = backend
        self.xp = backend.xp
        self.dtype = dtype
        self.problem = problem
        # parameters that are not differentiated are passed through untouched; a container
        # of arrays (dict, list, tuple) is differentiated as the flat vector of its float
        # leaves (:mod:`autodiffeq.replay.pytree`)
        self.layout = None if (p is None or not wrt_p) else layout_of(p)
        self.p_container = self.layout is not None and is_container(p)
        if self.layout is None:
            self.p_shape = None
        elif self.p_container:
            self.p_shape = (self.layout.size,)
        else:
            self.p_shape = tuple(np.shape(p))
        self.m = 0 if self.layout is None else self.layout.size
        self._replay: Any = None
        self._vjps: dict[tuple[int, Any], tuple[Any, Any]] = {}
        #: reshape on the backend (NumPy's method: no Python-level wrapper on hot paths)
        self._reshape = _reshape_method if self._autograd_backend() else self.xp.reshape
        self.nf = 0
        model_vjp = getattr(f, "vjp", None)
        model_jvp = getattr(f, "jvp", None)
        user_vjp = getattr(problem, "vjp", None)
        user_jvp = getattr(problem, "jvp", None)
        #: ``vjp(v, u, p, t) -> (v^T J, v^T df/dp)`` from the problem, else from the model
        self.user_vjp = user_vjp if user_vjp is not None else (
            model_vjp if callable(model_vjp) else None
        )
        #: ``jvp(du, u, p, t)`` from the problem, or the model's ``jvp(du, dp, u, p, t)``
        self.user_jvp = user_jvp
        self.model_jvp = model_jvp if callable(model_jvp) else None
        model_jvps = getattr(f, "value_and_jvps", None)
        #: the model's ``value_and_jvps(dU, dP, u, p, t) -> (f, [J dU_j + F_p dP_j]_j)``
        self.model_jvps = model_jvps if callable(model_jvps) else None
        self.mode = self._choose(mode)

    # ------------------------------------------------------------------ choice of source
    def _user_available(self) -> bool:
        prob = self.problem
        if self.user_vjp is not None:
            return True
        if prob is None:
            return False
        return prob.jac is not None and (self.m == 0 or prob.paramjac is not None)

    def _choose(self, mode: str) -> str:
        if mode == "user":
            if not self._user_available():
                raise UnsupportedCombination(
                    "autojacvec='user' needs derivatives on the problem: ODEProblem(vjp=...) or "
                    "jac=... (and paramjac=... when p is differentiated)",
                    ("autograd", "fd"),
                )
            return "user"
        if mode == "autograd":
            if not self._autograd_backend():
                why = self._array_api_replay()
                if why is not None:
                    raise UnsupportedCombination(
                        f"autojacvec='autograd' on backend {self.backend.name!r}: autograd "
                        f"cannot trace its arrays, and the recording of f cannot be "
                        f"replayed there ({why})",
                        ("user", "fd"),
                    )
            return "autograd"
        if mode == "fd":
            return "fd"
        if self._user_available():
            return "user"
        if self._autograd_backend() and self._traceable():
            return "autograd"
        if not self._autograd_backend() and self._array_api_replay() is None:
            return "autograd"
        warnings.warn(
            "derivatives of f fall back to finite differences (pass ODEProblem(vjp=...) or "
            "jac=/paramjac=, or write f with autograd.numpy on the NumPy backend): slower and "
            "accurate only to about 1e-8",
            DerivativeWarning,
            stacklevel=4,
        )
        return "fd"

    def _array_api_replay(self) -> str | None:
        """On a backend autograd cannot trace: record ``f`` (called on host values through
        autograd's array namespace) and replay it with the backend's array-API calls
        (:mod:`autodiffeq.replay.flavors`). ``None`` when that works, else why not."""
        xp = self.xp
        prob = self.problem
        u0 = getattr(prob, "u0", None)
        try:
            u = (self.backend.asarray(u0, dtype=self.dtype) if u0 is not None
                 else xp.ones(self.shape, dtype=self.dtype) * 0.5)
            u = xp.reshape(u, self.shape)
            t0 = float(prob.tspan[0]) if prob is not None else 0.0
            rf, leaves = replayed(self.f, self.p, self.shape, self.dtype, backend=self.backend)
            rf.value(u, leaves, t0)
        except ReplayUnavailable as exc:
            return str(exc)
        except Exception as exc:  # noqa: BLE001 - e.g. p cannot be moved: no replay
            return f"{type(exc).__name__}: {exc}"
        self._replay = (rf, leaves)
        return None

    def _autograd_backend(self) -> bool:
        """Whether autograd can trace ``f`` on this backend's arrays: the backend declares
        the ``"autograd"`` capability (chosen by capability, never by name)."""
        return "autograd" in getattr(self.backend, "capabilities", ())

    @property
    def traceable(self) -> bool:
        """Whether autograd can trace ``f`` (one trial trace, made once)."""
        cached = getattr(self, "_traceable_result", None)
        if cached is None:
            cached = self._traceable_result = (self.mode == "autograd" or (
                self._autograd_backend() and self._traceable()))
        return cached

    def _traceable(self) -> bool:
        """Whether autograd traces ``f``: ``f`` already recorded for replay (once per
        function and signature), or recorded now, or else one trial trace by autograd at a
        representative point (a function that autograd traces but the replay gives up on,
        e.g. too many branches)."""
        from autograd import make_vjp

        rf, leaves = replayed(self.f, self.p, self.shape, self.dtype)
        if rf.variants:
            return True
        if rf.disabled is None:
            try:
                rf.value(np.ones(self.shape) * 0.5, leaves, 0.0)
                return True
            except ReplayUnavailable:
                pass

        u = np.ones(self.n) * 0.5
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # autograd: "Output seems independent..."
                vjp, out = make_vjp(self._flat_tuple(0.0))((u, self._p_flat_host()))
            # f that builds its result with np.array(...) of traced entries gives an object
            # array that autograd treats as a constant (silently zero derivatives)
            if np.asarray(out).dtype == object:
                return False
            vjp(np.ones(np.shape(out)))
        except Exception:
            return False
        return True

    # ------------------------------------------------------------------ helpers
    def _p_flat_host(self) -> np.ndarray:
        if self.m == 0:
            return np.zeros(0)
        if self.p_container:
            return np.asarray(flatten(self.p)[0], dtype=np.float64)
        return np.asarray(self.p, dtype=np.float64).reshape(-1)

    def unflatten_p(self, p_flat: Any, reshape: Callable[[Any, Any], Any]) -> Any:
        """``p`` in the user's form (array shape or container) from its flat vector."""
        if self.p_shape is None:
            return self.p
        if self.p_container:
            return self.layout.unflatten(p_flat, reshape)
        return reshape(p_flat, self.p_shape)

    # ------------------------------------------------------------------ replay
    @property
    def replay(self) -> Any:
        """``(ReplayedFunction, leaves)`` of ``f`` when its derivatives come from autograd
        and it can be recorded once and replayed (:mod:`autodiffeq.replay`), else ``None``."""
        r = self._replay
        if r is None:
            r = False
            if self.mode == "autograd" and not self._autograd_backend():
                r = False if self._array_api_replay() is not None else self._replay
            elif self.mode == "autograd":
                rf, leaves = replayed(self.f, self.p, self.shape, self.dtype)
                if not rf.variants and rf.disabled is None:  # record now, at u0 if known
                    prob = self.problem
                    u0 = getattr(prob, "u0", None)
                    u = (np.reshape(np.asarray(u0, dtype=self.dtype), self.shape)
                         if u0 is not None else np.ones(self.shape) * 0.5)
                    t0 = float(prob.tspan[0]) if prob is not None else 0.0
                    try:
                        rf.value(u, leaves, t0)
                    except ReplayUnavailable:
                        pass
                if rf.disabled is None:
                    r = (rf, leaves)
            self._replay = r
        if r and r[0].disabled is not None:
            self._replay = r = False
        return r or None

    def _bound_vjp(self, r: tuple[Any, Any], want_p: bool) -> Any:
        """The replayed VJP bound to this ``p`` (:meth:`ReplayedFunction.bound_vjp`), made
        once per ``want_p``."""
        key = (id(r[0]), want_p)
        bound = self._vjps.get(key)
        if bound is None or bound[0] is not r[0]:
            bound = self._vjps[key] = (r[0], r[0].bound_vjp(r[1], want_p))
        return bound[1]

    def _leaves_from_flat(self, p_flat: Any) -> list[Any]:
        """The float leaves of ``p`` with values from ``p_flat`` (all of ``p`` is recorded
        as inputs, so a replay also takes new parameter values)."""
        rf, leaves = self._replay
        if self.m == 0:
            return leaves
        return rf.layout.split(p_flat)

    def full_rows(self, u: Any, t: float, want_p: bool = True) -> tuple[Any, Any] | None:
        """``(f(u, t), [J | F_p])`` (``(n, n + m)``; ``F_p`` only when ``want_p``) by one
        replayed forward and ``n`` backward sweeps, or ``None`` when ``f`` is not replayed."""
        r = self.replay
        if r is None:
            return None
        want_p = want_p and self.m > 0
        xp = self.xp
        try:
            y, rows = r[0].jacobian(xp.reshape(u, self.shape), r[1], t, want_p)
        except ReplayUnavailable as exc:
            self._no_fallback(exc)
            return None
        self.nf += 1
        return xp.reshape(y, (self.n,)), rows

    def _no_fallback(self, exc: Exception) -> None:
        """autograd is the fallback of a replay given up mid-solve, on NumPy only."""
        if not self._autograd_backend():
            raise UnsupportedCombination(
                f"the recording of f can no longer be replayed on backend "
                f"{self.backend.name!r} ({exc}), and autograd cannot trace its arrays",
                ("user", "fd"),
            ) from exc

    def _flat_tuple(self, t: float) -> Callable[[tuple[Any, Any]], Any]:
        """``g((u_flat, p_flat)) = flat f`` for autograd."""
        import autograd.numpy as anp

        f, shape, n = self.f, self.shape, self.n

        def g(args: tuple[Any, Any]) -> Any:
            u, pf = args
            return anp.reshape(f(anp.reshape(u, shape), self.unflatten_p(pf, anp.reshape), t),
                               (n,))

        return g

    def flat_f(self, u: Any, p_flat: Any, t: float) -> Any:
        """``f`` on a flat state and flat parameters (traceable by autograd when f is)."""
        import autograd.numpy as anp

        if self.replay is not None:
            try:
                return replayed_rhs(u, p_flat, t, self)
            except ReplayUnavailable:
                pass
        pp = self.unflatten_p(p_flat, anp.reshape)
        return anp.reshape(self.f(anp.reshape(u, self.shape), pp, t), (self.n,))

    def _f_backend(self, u: Any, p: Any, t: float) -> Any:
        xp = self.xp
        self.nf += 1
        out = self.f(xp.reshape(u, self.shape), p, t)
        return xp.reshape(xp.asarray(out, dtype=self.dtype), (self.n,))

    def _p_shaped(self, p_flat: Any) -> Any:
        return self.unflatten_p(p_flat, self.xp.reshape)

    def _host(self, x: Any) -> np.ndarray:
        return np.asarray(self.backend.to_host(x), dtype=np.float64)

    def _to_backend(self, x: Any) -> Any:
        return self.backend.asarray(np.asarray(x), dtype=self.dtype)

    # ------------------------------------------------------------------ products
    def vjp(self, v: Any, u: Any, t: float, want_p: bool = True) -> tuple[Any, Any]:
        """``(v^T J, v^T df/dp)`` at ``(u, t)``; the second is ``None`` unless ``want_p``."""
        want_p = want_p and self.m > 0
        r = self.replay
        if r is not None:
            try:
                shape, reshape = self.shape, self._reshape
                _, flat = self._bound_vjp(r, want_p)(
                    v if v.shape == shape else reshape(v, shape),
                    u if u.shape == shape else reshape(u, shape), t)
            except ReplayUnavailable as exc:
                self._no_fallback(exc)
            else:
                self.nf += 1
                n = self.n
                return flat[:n], (flat[n:] if want_p else None)
        if self.mode == "autograd":
            from autograd import make_vjp

            self.nf += 1
            vjp, _ = make_vjp(self._flat_tuple(t))((u, self._p_flat_host()))
            gu, gp = vjp(v)
            return gu, (gp if want_p else None)
        if self.mode == "user":
            return self._user_vjp(v, u, t, want_p)
        J = self.jac(u, t)
        gu = self.xp.matrix_transpose(J) @ v
        gp = self.xp.matrix_transpose(self.paramjac(u, t)) @ v if want_p else None
        return gu, gp

    def p_accumulator(self) -> DeferredCotangents:
        """A sum of parameter cotangents for :meth:`vjp_deferred` (``.total()``: the flat
        sum ``(m,)``, or ``None`` when nothing was added)."""
        return DeferredCotangents(self.m)

    def deferring(self, acc: DeferredCotangents, tape: ForwardTape | None = None) -> Any:
        """These derivatives with ``vjp(v, u, t, want_p)`` returning ``(v^T J, None)`` and
        ``v^T df/dp`` added to ``acc`` instead: a replayed ``f`` keeps the factors and sums
        them once (:mod:`autodiffeq.replay.deferred`: the outer products of a layer's
        weight become one matrix product per reverse pass). The ``u`` and ``v`` passed must
        not be modified before ``acc.total()``. A ``tape`` of the forward solve's
        evaluations (:class:`~autodiffeq.replay.engine.ForwardTape`) supplies the reverse
        sweeps of the evaluations it holds."""
        return _Deferring(self, acc, tape)

    def value_and_vjp(self, v: Any, u: Any, t: float, want_p: bool = True
                      ) -> tuple[Any, Any, Any] | None:
        """``(f(u, t), v^T J, v^T df/dp)`` flat, from one fused replayed sweep (``f`` is
        evaluated on the way to the products), or ``None`` when ``f`` is not replayed (call
        ``f`` and :meth:`vjp` then)."""
        r = self.replay
        if r is None:
            return None
        want_p = want_p and self.m > 0
        shape, reshape = self.shape, self._reshape
        try:
            y, flat = self._bound_vjp(r, want_p)(
                v if v.shape == shape else reshape(v, shape),
                u if u.shape == shape else reshape(u, shape), t)
        except ReplayUnavailable as exc:
            self._no_fallback(exc)
            return None
        self.nf += 1
        n = self.n
        y = y if y.shape == (n,) else reshape(y, (n,))
        return y, flat[:n], (flat[n:] if want_p else None)

    def jvp(self, du: Any, dp: Any, u: Any, t: float) -> Any:
        """``J du + df/dp dp`` at ``(u, t)`` (``du`` or ``dp`` may be ``None``)."""
        xp = self.xp
        r = self.replay
        if r is not None:
            try:
                want_p = dp is not None and self.m > 0
                du_s = (xp.zeros(self.shape, dtype=self.dtype) if du is None
                        else xp.reshape(du, self.shape))
                _, out = r[0].jvp(xp.reshape(u, self.shape), r[1], t, du_s,
                                  r[0].layout.split(dp, xp.reshape) if want_p else None)
            except ReplayUnavailable as exc:
                self._no_fallback(exc)
            else:
                self.nf += 1
                return xp.reshape(out, (self.n,))
        if self.mode == "autograd":
            from autograd import make_jvp

            self.nf += 1
            du_h = np.zeros(self.n) if du is None else du
            dp_h = np.zeros(self.m) if (dp is None or self.m == 0) else dp
            jvp = make_jvp(self._flat_tuple(t))((u, self._p_flat_host()))
            return jvp((du_h, dp_h))[1]
        out = xp.zeros((self.n,), dtype=self.dtype)
        if self.mode == "user" and self.model_jvp is not None and self.user_jvp is None:
            self.nf += 1
            du_s = None if du is None else xp.reshape(du, self.shape)
            dp_s = None if (dp is None or self.m == 0) else self._p_shaped(dp)
            jv = self.model_jvp(du_s, dp_s, xp.reshape(u, self.shape), self.p_call, t)
            return xp.reshape(xp.asarray(jv, dtype=self.dtype), (self.n,))
        if du is not None:
            if self.mode == "user" and self.user_jvp is not None:
                jv = self.user_jvp(
                    xp.reshape(du, self.shape), xp.reshape(u, self.shape), self.p_call, t
                )
                out = out + xp.reshape(xp.asarray(jv, dtype=self.dtype), (self.n,))
            else:
                out = out + self.jac(u, t) @ du
        if dp is not None and self.m > 0:
            out = out + self.paramjac(u, t) @ dp
        return out

    @property
    def batched_jvps(self) -> bool:
        """Whether :meth:`value_and_jvps` is one call of the model's own batched products
        (and not a loop over directions)."""
        prob = self.problem
        user_matrices = prob is not None and (
            prob.jac is not None or getattr(prob, "jvp", None) is not None
        )
        return self.mode == "user" and self.model_jvps is not None and not user_matrices

    def value_and_jvps(self, dU: Any, dP: Any, u: Any, t: float) -> tuple[Any, Any]:
        """``(f(u, t), rows J dU_j + F_p dP_j)`` for ``k`` tangents at once: ``dU`` is
        ``(k, n)`` (or ``None``: zero), ``dP`` is ``(k, m)`` (or ``None``); the products are
        ``(k, n)``. One call of the model's ``value_and_jvps`` when it has one
        (:attr:`batched_jvps`), else ``k`` calls of :meth:`jvp`."""
        xp = self.xp
        if self.batched_jvps:
            self.nf += 1
            k = (dU if dU is not None else dP).shape[0]
            dU_s = None if dU is None else _shaped(xp, dU, (k, *self.shape))
            # the same dP object at every call (no new view), so a model may cache its layout
            dP_s = None if (dP is None or self.m == 0) else _shaped(xp, dP, (k, *self.p_shape))
            fu, jv = self.model_jvps(dU_s, dP_s, _shaped(xp, u, self.shape), self.p_call, t)
            jv = xp.asarray(jv, dtype=self.dtype)
            return self._flat(fu, self.n), _shaped(xp, jv, (k, self.n))
        k = (dU if dU is not None else dP).shape[0]
        full = self.full_rows(u, t, dP is not None) if k >= self.n else None
        if full is not None:
            fu, R = full
            out = 0.0 if dU is None else dU @ R[:, :self.n].T
            if dP is not None and self.m > 0:
                out = out + dP @ R[:, self.n:].T
            return fu, out
        batched = self._replayed_jvps(dU, dP, u, t, k)
        if batched is not None:
            return batched
        rows = [
            self.jvp(None if dU is None else dU[j, ...], None if dP is None else dP[j, ...], u, t)
            for j in range(k)
        ]
        return self._f_backend(u, self.p_call, t), xp.stack(rows, axis=0)

    def _replayed_jvps(self, dU: Any, dP: Any, u: Any, t: float, k: int
                       ) -> tuple[Any, Any] | None:
        """``value_and_jvps`` by one replayed forward sweep shared by the ``k`` tangents
        (``None`` when ``f`` is not replayed)."""
        r = self.replay
        if r is None:
            return None
        xp = self.xp
        rf = r[0]
        dU_s = (xp.zeros((k, *self.shape), dtype=self.dtype) if dU is None
                else xp.reshape(dU, (k, *self.shape)))
        dleaves = None
        if dP is not None and self.m > 0:
            layout = rf.layout
            dleaves = [xp.reshape(dP[:, off:off + size], (k, *shape)) for shape, size, off
                       in zip(layout.shapes, layout.sizes, layout.offsets, strict=True)]
        try:
            y, dY = rf.jvps(xp.reshape(u, self.shape), r[1], t, dU_s, dleaves)
        except ReplayUnavailable as exc:
            self._no_fallback(exc)
            return None
        self.nf += 1
        return xp.reshape(y, (self.n,)), xp.reshape(dY, (k, self.n))

    def _user_vjp(self, v: Any, u: Any, t: float, want_p: bool) -> tuple[Any, Any]:
        xp = self.xp
        if self.user_vjp is not None:
            self.nf += 1
            if len(self.shape) == 1:  # hot path (adjoints call this once per stage)
                gu, gp = self.user_vjp(v, u, self.p_call, t)
            else:
                gu, gp = self.user_vjp(
                    xp.reshape(v, self.shape), xp.reshape(u, self.shape), self.p_call, t
                )
            gu = self._flat(gu, self.n)
            return gu, (self._flat(gp, self.m) if want_p else None)
        gu = xp.matrix_transpose(self.jac(u, t)) @ v
        gp = xp.matrix_transpose(self.paramjac(u, t)) @ v if want_p else None
        return gu, gp

    def _flat(self, x: Any, size: int) -> Any:
        """``x`` as a flat backend array of the state dtype (no copy when it already is)."""
        if getattr(x, "shape", None) == (size,) and getattr(x, "dtype", None) == self.dtype:
            return x
        return self.xp.reshape(self.xp.asarray(x, dtype=self.dtype), (size,))

    # ------------------------------------------------------------------ full matrices
    def jac(self, u: Any, t: float) -> Any:
        """``df/du`` (n, n) as a dense backend array, from the core's Jacobian sources
        (:func:`autodiffeq.jacobians.jacobian_source`: the user's ``jac``, autograd, or
        second-order differences with the stiff solvers' increments)."""
        prob = self.problem
        if self.mode == "user" and (prob is None or prob.jac is None):
            return self._rows_from_vjp(u, t)[0]
        full = self.full_rows(u, t, want_p=False)
        if full is not None:
            return full[1]
        source = self._jacobian_source()
        f0 = self._f_backend(u, self.p_call, t) if source.mode.endswith("fd") else None
        J, nf = source(u, t, f0)
        self.nf += nf
        return as_square_matrix(J, self.backend, self.dtype, self.n, "the Jacobian")

    def _jacobian_source(self) -> Any:
        source = getattr(self, "_jac_source", None)
        if source is None:
            from .stepper import RHS

            rhs = RHS(self.f, self.p_call, self.shape, self.dtype, self.backend, self.problem,
                      convert_output=True)
            mode = {"user": "user", "autograd": "autograd"}.get(self.mode, "fd")
            source = self._jac_source = jacobian_source(rhs, mode)
        return source

    def paramjac(self, u: Any, t: float) -> Any:
        """``df/dp`` (n, m) as a dense backend array."""
        prob = self.problem
        xp = self.xp
        if self.m == 0:
            return xp.zeros((self.n, 0), dtype=self.dtype)
        if self.mode == "user" and prob is not None and prob.paramjac is not None:
            Fp = prob.paramjac(xp.reshape(u, self.shape), self.p_call, t)
            return xp.reshape(xp.asarray(Fp, dtype=self.dtype), (self.n, self.m))
        if self.mode == "user" and self.user_vjp is not None:
            return self._rows_from_vjp(u, t)[1]
        full = self.full_rows(u, t, want_p=True)
        if full is not None:
            return full[1][:, self.n:]
        if self.mode == "autograd":
            from autograd import jacobian

            self.nf += self.m
            g = self._flat_tuple(t)
            return jacobian(lambda pp: g((u, pp)))(self._p_flat_host())
        p0 = self._to_backend(self._p_flat_host())
        return self._fd_columns(lambda q: self._f_backend(u, self._p_shaped(q), t), p0, self.m)

    def _rows_from_vjp(self, u: Any, t: float) -> tuple[Any, Any]:
        """``(J, df/dp)`` row by row from the user's (or model's) ``vjp`` with unit vectors."""
        xp = self.xp
        rows_u, rows_p = [], []
        want_p = self.m > 0
        for i in range(self.n):
            e = np.zeros(self.n)
            e[i] = 1.0
            gu, gp = self._user_vjp(self._to_backend(e), u, t, want_p)
            rows_u.append(gu)
            if want_p:
                rows_p.append(gp)
        J = xp.stack(rows_u, axis=0)
        Fp = xp.stack(rows_p, axis=0) if want_p else xp.zeros((self.n, 0), dtype=self.dtype)
        return J, Fp

    def _fd_columns(self, g: Callable[[Any], Any], x: Any, m: int) -> Any:
        """Central differences of ``g`` at ``x`` column by column: (n, m)."""
        xp = self.xp
        eps = float(np.finfo(self.backend.host_dtype(self.dtype)).eps)
        x_h = self._host(x)
        cols = []
        for j in range(m):
            h = eps ** (1 / 3) * max(1.0, abs(float(x_h[j])))
            e = np.zeros(m)
            e[j] = h
            de = self._to_backend(e)
            cols.append((g(x + de) - g(x - de)) / (2 * h))
        if not cols:
            return xp.zeros((self.n, 0), dtype=self.dtype)
        return xp.stack(cols, axis=1)


def _shaped(xp: Any, x: Any, shape: tuple[int, ...]) -> Any:
    """``x`` reshaped to ``shape``; ``x`` itself when it already has it."""
    return x if tuple(x.shape) == shape else xp.reshape(x, shape)


def _reshape_method(x: Any, shape: tuple[int, ...]) -> Any:
    return x.reshape(shape)


def _any_box(*xs: Any) -> bool:
    from autograd.tracer import isbox

    return any(isbox(x) for x in xs)


def _define_replayed_rhs() -> Any:
    """``replayed_rhs(u_flat, p_flat, t, derivs)``: the flat right-hand side as one autograd
    primitive whose VJP and JVP are replays (for methods that trace the whole solve with
    autograd: each stage is one node of their tape instead of every operation of ``f``)."""
    from autograd.extend import defjvp_argnums, defvjp_argnums, primitive

    @primitive
    def rhs(u: Any, p_flat: Any, t: float, derivs: RHSDerivatives) -> Any:
        rf, _ = derivs.replay
        return np.reshape(rf.value(np.reshape(u, derivs.shape), derivs._leaves_from_flat(p_flat),
                                   t), (derivs.n,))

    def vjp_maker(argnums: tuple[int, ...], ans: Any, args: tuple, kwargs: dict) -> Any:
        u, p_flat, t, derivs = args
        want_p = 1 in argnums and derivs.m > 0

        def vjp(g: Any) -> tuple[Any, ...]:
            try:
                if _any_box(g, u, p_flat):  # differentiated again (e.g. a traced Jacobian)
                    raise ReplayUnavailable("higher-order")
                rf, _ = derivs.replay
                _, flat = rf.vjp(np.reshape(g, derivs.shape), np.reshape(u, derivs.shape),
                                 derivs._leaves_from_flat(p_flat), t, want_p)
            except (ReplayUnavailable, TypeError):  # replay given up since the forward pass
                from autograd import make_vjp

                back, _ = make_vjp(derivs._flat_tuple(t))((u, p_flat))
                return tuple(back(g)[i] for i in argnums)
            out = {0: flat[:derivs.n], 1: flat[derivs.n:] if want_p else np.zeros_like(p_flat)}
            return tuple(out[i] for i in argnums)

        return vjp

    def jvp_maker(argnums: tuple[int, ...], gs: tuple, ans: Any, args: tuple,
                  kwargs: dict) -> Any:
        u, p_flat, t, derivs = args
        tangents = dict(zip(argnums, gs, strict=True))
        du = tangents.get(0)
        du = np.zeros(derivs.shape) if du is None else np.reshape(du, derivs.shape)
        dp = tangents.get(1)
        try:
            if _any_box(du, dp, u, p_flat):
                raise ReplayUnavailable("higher-order")
            rf, _ = derivs.replay
            dleaves = None if (dp is None or derivs.m == 0) else rf.layout.split(dp)
            _, dy = rf.jvp(np.reshape(u, derivs.shape), derivs._leaves_from_flat(p_flat), t,
                           du, dleaves)
        except (ReplayUnavailable, TypeError):  # replay given up since the forward pass
            from autograd import make_jvp

            dp_full = np.zeros_like(p_flat) if dp is None else dp
            dy = make_jvp(derivs._flat_tuple(t))((u, p_flat))((np.reshape(du, -1), dp_full))[1]
        return np.reshape(dy, (derivs.n,))

    defvjp_argnums(rhs, vjp_maker)
    defjvp_argnums(rhs, jvp_maker)
    return rhs


replayed_rhs = _define_replayed_rhs()


class _Deferring:
    """:meth:`RHSDerivatives.deferring`: ``vjp`` keeps the parameter part in ``acc``; every
    other attribute is the wrapped derivatives'."""

    def __init__(self, derivatives: RHSDerivatives, acc: DeferredCotangents,
                 tape: ForwardTape | None) -> None:
        self._derivatives = derivatives
        self._acc = acc
        self._bound: Any = None
        self.vjp = self._make_vjp(tape.entries if tape is not None and tape.entries else None)

    def _make_vjp(self, taped: dict | None) -> Callable[..., tuple[Any, Any]]:
        d, acc = self._derivatives, self._acc
        shape, n, reshape = d.shape, d.n, d._reshape

        def vjp(v: Any, u: Any, t: float, want_p: bool = True) -> tuple[Any, Any]:
            if not want_p:
                return d.vjp(v, u, t, False)
            if taped is not None:
                hit = taped.get((float(t), u.tobytes()))
                if hit is not None:  # this very evaluation's reverse sweep
                    back, var, P, leaves = hit
                    out = back(v if v.shape == shape else reshape(v, shape),
                               acc.lists(var, P, leaves))
                    d.nf += 1
                    return (out if out.shape == (n,) else reshape(out, (n,))), None
            r = d.replay
            if r is not None and d.m > 0 and reshape is _reshape_method:  # NumPy replay
                bound = self._bound
                if bound is None or bound[0] is not r[0]:
                    bound = self._bound = (r[0], r[0].bound_vjp_deferred(r[1], acc))
                try:
                    out = bound[1](v if v.shape == shape else reshape(v, shape),
                                   u if u.shape == shape else reshape(u, shape), t)
                except ReplayUnavailable as exc:
                    d._no_fallback(exc)
                else:
                    d.nf += 1
                    return (out if out.shape == (n,) else reshape(out, (n,))), None
            gu, gp = d.vjp(v, u, t, True)
            if gp is not None:
                acc.add(gp)
            return gu, None

        return vjp

    def __getattr__(self, name: str) -> Any:
        return getattr(self._derivatives, name)
