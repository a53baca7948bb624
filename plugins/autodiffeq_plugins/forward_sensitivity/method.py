"""Forward sensitivity equations solved together with the state (continuous forward method).

For ``M u' = f(u, p, t)``, ``u(t0) = u0``, the sensitivity ``S(t) = du(t)/dx`` with respect to
the differentiated inputs ``x = (u0, p)`` (flat: ``n`` state components, ``m`` parameters,
``k = n_u0 + m`` columns, ``n_u0 = n`` when ``u0`` is differentiated and 0 otherwise) obeys
the variational equations (Hairer, Nørsett & Wanner, *Solving ODEs I*, I.14, Theorems 14.1 and
14.3)::

    M S' = J(u, t) S + F_p(u, t) E,      S(t0) = [I_n | 0],
    J = df/du (n x n),   F_p = df/dp (n x m),   E = [0 | I_m] (m x k),

i.e. ``s_j' = J s_j`` for a ``u0`` column and ``s_j' = J s_j + df/dp_j`` for a ``p`` column.
:class:`ForwardSensitivity` integrates the augmented state ``y = [u, s_1, ..., s_k]`` (length
``N = n (k + 1)``) with the *same* solver and the same tolerances; with ``error_control="all"``
the error control covers all of ``y`` — SciMLSensitivity's ``ForwardSensitivity`` default
(``ODEForwardSensitivityProblem``) —
so the returned states come from that augmented solve. With ``error_control="state"`` (our
default: the value of a differentiated solve then equals the plain solve's) the step-size
control sees ``u`` alone; the augmented solve then takes the plain solve's steps,
and since a Runge–Kutta method applied to the variational equations is the derivative of
the method applied to the equation (internal differentiation: Hairer, Nørsett & Wanner,
I.14; for Rosenbrock methods with the exact ``J_aug`` below, by the symmetry of second
derivatives), ``S`` is then the exact derivative of the discrete solution with the step
sizes held fixed — the gradient ``DiscreteAdjoint`` and ``ReverseMode`` compute, from the
other side. Gradients are then products with ``S``
at the saved times: ``g -> sum_i g_i^T S(t_i)`` (VJP) and ``(du0, dp) -> S(t_i) [du0; dp]``
(JVP). It costs one solve of an ``n (k + 1)``-dimensional system: best for few inputs (the
``sensealg=None`` choice for ``len(u0) + len(p) <= 100``, docs/gradients.md).

Products ``J S + F_p E`` (:class:`AugmentedSystem`), from :class:`~autodiffeq.RHSDerivatives`:

* ``"matrices"``: ``[J | F_p]`` as full matrices, then one product. Used with the user's
  ``ODEProblem(jac=, paramjac=)`` (one call each) and with finite differences (``2 (n + m)``
  evaluations of ``f``; a central difference per direction would cost ``2 k``, which is no
  less when ``u0`` is differentiated).
* ``"rows"``: ``[J | F_p]`` row by row from vector-Jacobian products: with autograd one trace
  of ``f`` and ``n`` reverse passes; with the user's or the model's ``vjp``, ``n`` calls.
* ``"columns"``: ``k`` Jacobian-vector products ``J s_j + F_p e_j`` (autograd forward mode),
  chosen over ``"rows"`` only when ``k < n`` (parameters alone differentiated, and fewer
  parameters than states).
* ``"batched"``: all ``k`` products and ``f`` in one call of the model's
  ``value_and_jvps`` (e.g. :class:`autodiffeq.nn.MLP`: the tangents are a leading axis of
  one forward pass), used when the model has it and the problem gives no ``jac``.

Stiff solvers (Rosenbrock, auto-switching) factor ``W = M_aug / (gamma dt) - J_aug``. Rodas
methods are *not* W-methods: their order needs the exact Jacobian of the system they
integrate (Hairer & Wanner, *Solving ODEs II*, IV.7; an approximate one gives a W-method
only when the order conditions of W-methods hold, which Rodas4/Rodas5P do not satisfy). The
augmented problem therefore carries the exact block lower-triangular Jacobian::

    J_aug = [[J,   0,  ...,  0],
             [H_1, J,  ...,  0],
             [...            ...],
             [H_k, 0,  ...,  J]],    H_j = d(J s_j + F_p e_j)/du  (second derivatives of f),

with ``H`` from autograd (forward mode over the reverse-mode ``[J | F_p]``: ``n`` tangent
passes) or, without autograd, from central differences of ``J S + F_p E`` in ``u`` (exact to
rounding when ``J`` comes from the user and ``f`` is quadratic, as ROBER is). Dropping ``H``
breaks the order conditions for the sensitivities: measured on Van der Pol (mu = 10) with
fixed steps, the observed orders fall from 4.4 to 1.1 (Rodas4) and from 4.9 to 2.3
(Rodas5P), and Rodas5P on ROBER over [0, 100] at rtol 1e-6 needs about 26000 steps instead
of 97. The test suite checks the fixed-step orders with ``H``.

Cost: each right-hand side of the augmented system costs one ``[J | F_p]`` (or ``k`` JVPs);
a stiff step also costs one ``J_aug`` (``H``: ``n`` autograd tangent passes or ``2 n``
products) and a dense LU of the ``N x N`` matrix ``W_aug`` (the Rosenbrock stepper does not
exploit its block structure), so stiff forward sensitivities suit small ``n (k + 1)``; for
many inputs an adjoint method is the better choice.

Mass matrices: ``M_aug = I_{k+1} (x) M`` (block diagonal). For a singular ``M`` (index-1 DAE)
the algebraic rows ``0 = N^T f`` (``N`` spanning the left null space of ``M``) imply
``N^T (J S + F_p E) = 0``; ``S(t0)`` is made consistent by correcting it along the algebraic
directions ``Z`` (right null space): ``S0 = [I | 0] + Z C`` with ``(N^T J Z) C = -N^T (J [I|0]
+ F_p E)`` (the linearised consistent initialisation). The output at ``t0`` is ``u0`` itself,
so its sensitivity stays ``[I | 0]``.

Sources: Hairer, Nørsett & Wanner, *Solving ODEs I*, I.14; Hairer & Wanner, *Solving ODEs
II*, IV.7 and VI.4; SciMLSensitivity.jl documentation, "Forward sensitivity analysis"
(``ForwardSensitivity``, ``ODEForwardSensitivityProblem``, ``extract_local_sensitivities``).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np

from autodiffeq.errors import InvalidArgument, UnsupportedCombination
from autodiffeq.problems import ODEProblem
from autodiffeq.rhs_derivatives import MODES, DerivativeWarning
from autodiffeq.sensitivity import ForwardRecord, GradientRequest, SensitivityMethod

logger = logging.getLogger("autodiffeq")


class AugmentedSystem:
    """The state and its forward sensitivities as one ODE problem (see the module doc).

    Layout of the flat augmented state: ``y = [u, s_1, ..., s_k]`` (each block ``n`` long);
    ``S^T`` is ``reshape(y[n:], (k, n))``.

    Args:
        request: the differentiated solve.
        autojacvec: source of the right-hand-side derivatives (``"auto"``, ``"user"``,
            ``"autograd"`` or ``"fd"``; see :class:`~autodiffeq.RHSDerivatives`).
    """

    def __init__(self, request: GradientRequest, autojacvec: str = "auto") -> None:
        self.request = request
        self.backend = request.backend
        self.xp = request.backend.xp
        self.derivs = request.derivatives(autojacvec)
        self.shape = request.shape
        self.n = request.n
        self.n_u0 = self.n if request.wrt_u0 else 0
        self.m = self.derivs.m
        self.k = self.n_u0 + self.m
        self.dtype = self.backend.asarray(request.prob.u0).dtype
        self.p_flat = (
            np.zeros(0) if self.m == 0
            else request.p_flat
        )
        if self.derivs.mode == "autograd" and self.derivs.replay is None and not self._traces():
            if autojacvec == "autograd":
                raise UnsupportedCombination(
                    "autojacvec='autograd': autograd cannot trace f (write it with "
                    "autograd.numpy, e.g. anp.stack instead of np.array of entries)",
                    ("user", "fd"),
                )
            warnings.warn(
                "derivatives of f fall back to finite differences: autograd cannot trace f "
                "(write it with autograd.numpy, or pass ODEProblem(jac=..., paramjac=...)); "
                "slower and accurate only to about 1e-8",
                DerivativeWarning,
                stacklevel=6,
            )
            self.derivs = request.derivatives("fd")
        self.strategy = self._choose_strategy()
        # E^T (k x m): the parameter columns of S pick up df/dp
        et = np.zeros((self.k, self.m))
        et[self.n_u0:, :] = np.eye(self.m)
        self._et = self.backend.asarray(et, dtype=self.dtype)
        if isinstance(self._et, np.ndarray):
            self._et.flags.writeable = False  # constant: a model may cache its layout
        self.nprod = 0
        logger.debug(
            "ForwardSensitivity: n=%d, k=%d sensitivity columns, J S by %s (%s derivatives)",
            self.n, self.k, self.strategy, self.derivs.mode,
        )

    def _traces(self) -> bool:
        """Whether autograd really traces ``f``: one reverse pass at ``(u0, p)`` that must
        produce a float vector (an ``f`` that builds its result with ``np.array`` of traced
        entries gives an object array that autograd silently treats as a constant)."""
        from autograd import make_vjp

        n = self.n
        d = self.derivs
        u0 = np.asarray(self.request.prob.u0, dtype=np.float64).reshape(-1)
        z = np.concatenate([u0, self.p_flat])
        t0 = self.request.prob.tspan[0]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                vjp, out = make_vjp(lambda zz: d.flat_f(zz[:n], zz[n:], t0))(z)
                grad = vjp(np.ones(n))
        except Exception:  # noqa: BLE001 - any failure to trace means "not traceable"
            return False
        out = np.asarray(out)
        return out.dtype.kind == "f" and out.shape == (n,) and np.shape(grad) == z.shape

    # ------------------------------------------------------------------ strategy
    def _choose_strategy(self) -> str:
        mode = self.derivs.mode
        prob = self.request.prob
        if mode == "fd":
            return "matrices"
        if mode == "user":
            if prob.jac is not None and (self.m == 0 or prob.paramjac is not None):
                return "matrices"
            if self.derivs.batched_jvps:
                return "batched"
            return "rows"
        return "rows" if self.n <= self.k else "columns"

    # ------------------------------------------------------------------ pieces
    def f(self, u: Any, t: float) -> Any:
        """``f`` on the flat state as a flat backend array."""
        xp = self.xp
        prob = self.request.prob
        out = prob.f(xp.reshape(u, self.shape), prob.p, t)
        return xp.reshape(self.backend.asarray(out, dtype=self.dtype), (self.n,))

    def full_jacobian(self, u: Any, t: float, want_f: bool = True) -> tuple[Any, Any]:
        """``(f(u, t), [J | F_p])`` with ``[J | F_p]`` of shape ``(n, n + m)``; the first is
        ``None`` unless ``want_f`` (autograd's reverse pass gives it anyway)."""
        xp = self.xp
        d = self.derivs
        if self.strategy == "rows" and d.mode == "autograd":
            full = d.full_rows(u, t, self.m > 0)  # f recorded once and replayed
            if full is not None:
                return (
                    self.backend.asarray(full[0], dtype=self.dtype),
                    self.backend.asarray(full[1], dtype=self.dtype),
                )
            from autograd import make_vjp

            n = self.n
            z = np.concatenate([np.asarray(u, dtype=np.float64), self.p_flat])
            vjp, fz = make_vjp(lambda zz: d.flat_f(zz[:n], zz[n:], t))(z)
            eye = np.eye(n)
            rows = np.stack([vjp(eye[i]) for i in range(n)])
            return (
                self.backend.asarray(fz, dtype=self.dtype),
                self.backend.asarray(rows, dtype=self.dtype),
            )
        if self.strategy == "rows":
            eye = np.eye(self.n)
            rows = []
            for i in range(self.n):
                gu, gp = d.vjp(self.backend.asarray(eye[i], dtype=self.dtype), u, t, self.m > 0)
                rows.append(gu if self.m == 0 else xp.concat([gu, gp]))
            jf = xp.stack(rows, axis=0)
        else:  # "matrices", or "columns" when the full matrix is needed (stiff solvers)
            jf = d.jac(u, t)
            if self.m > 0:
                jf = xp.concat([jf, d.paramjac(u, t)], axis=1)
        return (self.f(u, t) if want_f else None), xp.asarray(jf, dtype=self.dtype)

    def _z(self, st: Any) -> Any:
        """``[S^T | E^T]`` (k x (n + m)): the directions ``(s_j, e_j)`` of the products."""
        return self.xp.concat([st, self._et], axis=1) if self.m > 0 else st

    def products(self, u: Any, st: Any, t: float, want_f: bool = True) -> tuple[Any, Any]:
        """``(f(u, t), (J S + F_p E)^T)``; ``st`` is ``S^T`` (k x n); the first is ``None``
        unless ``want_f``."""
        xp = self.xp
        self.nprod += 1
        if self.strategy == "batched":
            return self.derivs.value_and_jvps(st, self._et if self.m > 0 else None, u, t)
        if self.strategy == "columns":
            et = self._et
            if self.derivs.replay is not None:  # one replayed forward sweep for all k
                fu, dst = self.derivs.value_and_jvps(st, et if self.m > 0 else None, u, t)
                return (fu if want_f else None), xp.asarray(dst, dtype=self.dtype)
            cols = [
                self.derivs.jvp(st[j, ...], et[j, ...] if self.m > 0 else None, u, t)
                for j in range(self.k)
            ]
            dst = xp.stack([xp.asarray(c, dtype=self.dtype) for c in cols], axis=0)
            return (self.f(u, t) if want_f else None), dst
        fu, jf = self.full_jacobian(u, t, want_f)
        return fu, self._z(st) @ xp.matrix_transpose(jf)

    def second_derivatives(self, u: Any, st: Any, t: float) -> Any:
        """``H`` as ``(k, n, n)``: ``H[j] = d(J s_j + F_p e_j)/du`` (module doc)."""
        xp = self.xp
        n = self.n
        # autograd nested twice costs ~20 ms per call on ROBER; with f recorded and replayed
        # (autodiffeq.replay) the exact products are cheap and their central differences in
        # u are accurate to ~eps^(2/3), ample for the Rosenbrock matrix this feeds
        if self.derivs.mode == "autograd" and self.derivs.replay is None:
            import autograd.numpy as anp
            from autograd import jacobian, make_jvp

            d = self.derivs
            z_dir = np.asarray(self._z(st), dtype=np.float64)
            p_flat = self.p_flat

            def products_of(uu: Any) -> Any:
                jf = jacobian(lambda zz: d.flat_f(zz[:n], zz[n:], t))(
                    anp.concatenate([uu, p_flat])
                )
                return anp.dot(z_dir, anp.transpose(jf))  # (k, n)

            with warnings.catch_warnings():  # f linear in u: "output independent of input"
                warnings.simplefilter("ignore", UserWarning)
                tangent = make_jvp(products_of)(np.asarray(u, dtype=np.float64))
                eye = np.eye(n)
                cols = np.stack([tangent(eye[c])[1] for c in range(n)], axis=-1)  # (k, n, n)
            return self.backend.asarray(cols, dtype=self.dtype)
        # central differences of the (exact or differenced) products in u
        eps = float(np.finfo(self.backend.host_dtype(self.dtype)).eps)
        u_h = np.asarray(self.backend.to_host(u), dtype=np.float64)
        floor = max(1e-3 * float(np.max(np.abs(u_h))) if n else 0.0, 1e-8)
        cols = []
        for c in range(n):
            h = eps ** (1.0 / 3.0) * max(abs(float(u_h[c])), floor)
            e = np.zeros(n)
            e[c] = h
            de = self.backend.asarray(e, dtype=self.dtype)
            plus = self.products(u + de, st, t, want_f=False)[1]
            minus = self.products(u - de, st, t, want_f=False)[1]
            cols.append((plus - minus) / (2.0 * h))
        return xp.stack(cols, axis=-1)

    # ------------------------------------------------------------------ augmented problem
    def rhs(self, y: Any, _p: Any, t: float) -> Any:
        """The augmented right-hand side ``[f(u); vec((J S + F_p E)^T)]``."""
        xp = self.xp
        n, k = self.n, self.k
        u = y[:n]
        st = xp.reshape(y[n:], (k, n))
        fu, dst = self.products(u, st, t)
        return xp.concat([fu, xp.reshape(dst, (k * n,))])

    def _rhs_function(self) -> Any:
        """:meth:`rhs`, or for a model with batched products on NumPy the same right-hand
        side with the bookkeeping hoisted out (it runs once per stage)."""
        if self.strategy != "batched" or not isinstance(self._et, np.ndarray):
            return self.rhs
        n, k = self.n, self.k
        shape = self.shape
        model = self.derivs.model_jvps
        p = self.request.prob.p
        directions = self._et if self.m > 0 else None
        derivs = self.derivs
        if derivs.p_shape is not None and directions is not None:
            directions = directions.reshape(k, *derivs.p_shape)
            directions.flags.writeable = False
        st_shape = (k, *shape)

        def rhs_batched(y: Any, _p: Any, t: float) -> Any:
            derivs.nf += 1
            fu, dst = model(y[n:].reshape(st_shape), directions, y[:n].reshape(shape), p, t)
            out = np.empty(n * (k + 1), dtype=y.dtype)
            out[:n] = fu.reshape(-1)
            out[n:] = dst.reshape(-1)
            return out

        return rhs_batched

    def jac(self, y: Any, _p: Any, t: float) -> Any:
        """The exact augmented Jacobian (block lower triangular, module doc)."""
        xp = self.xp
        n, k = self.n, self.k
        u = y[:n]
        st = xp.reshape(y[n:], (k, n))
        J = self.full_jacobian(u, t, want_f=False)[1][:, :n]
        H = self.second_derivatives(u, st, t)  # (k, n, n)
        eye_k = xp.eye(k, dtype=self.dtype)
        block = xp.reshape(eye_k[:, None, :, None] * J[None, :, None, :], (k * n, k * n))
        top = xp.concat([J, xp.zeros((n, k * n), dtype=self.dtype)], axis=1)
        bottom = xp.concat([xp.reshape(H, (k * n, n)), block], axis=1)
        return xp.concat([top, bottom], axis=0)

    def initial_sensitivity(self) -> tuple[Any, Any]:
        """``(S0^T, S_init^T)``: the consistent initial value used by the solve and ``[I | 0]^T``
        (they differ only for a singular mass matrix)."""
        n, k = self.n, self.k
        s_init = np.zeros((k, n))
        s_init[: self.n_u0, :] = np.eye(self.n_u0, n)
        s_init_b = self.backend.asarray(s_init, dtype=self.dtype)
        mass = self.request.prob.mass_matrix
        if mass is None:
            return s_init_b, s_init_b
        import scipy.linalg

        M = self.host_mass()
        Z = scipy.linalg.null_space(M)
        if Z.shape[1] == 0:
            return s_init_b, s_init_b
        N = scipy.linalg.null_space(M.T)
        prob = self.request.prob
        u0 = self.backend.asarray(prob.u0, dtype=self.dtype)
        u0 = self.xp.reshape(u0, (n,))
        jf = self.full_jacobian(u0, prob.tspan[0], want_f=False)[1]
        jf_h = np.asarray(self.backend.to_host(jf), dtype=np.float64)
        J = jf_h[:, :n]
        et = np.asarray(self.backend.to_host(self._et), dtype=np.float64)
        rhs0 = J @ s_init.T + (jf_h[:, n:] @ et.T if self.m > 0 else 0.0)  # (n, k)
        A = N.T @ J @ Z
        try:
            C = -np.linalg.solve(A, N.T @ rhs0)
        except np.linalg.LinAlgError:
            raise InvalidArgument(
                "ForwardSensitivity: the mass-matrix problem is not index 1 at (u0, t0) (the "
                "algebraic equations' Jacobian N^T J Z is singular), so consistent initial "
                "sensitivities cannot be computed"
            ) from None
        s0 = s_init + (Z @ C).T
        return self.backend.asarray(s0, dtype=self.dtype), s_init_b

    def host_mass(self) -> np.ndarray:
        mass = self.request.prob.mass_matrix
        if hasattr(mass, "toarray"):
            mass = mass.toarray()
        if self.backend.is_native(mass):
            mass = self.backend.to_host(mass)
        return np.asarray(mass, dtype=np.float64).reshape(self.n, self.n)

    def problem(self, s0t: Any) -> ODEProblem:
        """The augmented :class:`~autodiffeq.ODEProblem` starting from ``S(t0) = s0t^T``."""
        xp = self.xp
        prob = self.request.prob
        u0 = xp.reshape(self.backend.asarray(prob.u0, dtype=self.dtype), (self.n,))
        y0 = xp.concat([u0, xp.reshape(s0t, (self.k * self.n,))])
        mass = None
        if prob.mass_matrix is not None:
            mass = np.kron(np.eye(self.k + 1), self.host_mass())
        return ODEProblem(
            self._rhs_function(), y0, prob.tspan, None,
            mass_matrix=mass,
            jac=self.jac if self.request.solver.needs_jacobian else None,
        )

    def tolerances(self) -> dict[str, Any]:
        """``rtol``/``atol`` arrays of the state's shape repeated for every sensitivity block
        (scalars stay as they are)."""
        out = {}
        for name in ("rtol", "atol"):
            value = self.request.solve_options.get(name)
            if value is None or np.ndim(value) == 0:
                continue
            flat = np.broadcast_to(np.asarray(value, dtype=np.float64), self.shape).reshape(-1)
            out[name] = np.tile(flat, self.k + 1)
        return out


class ForwardSensitivity(SensitivityMethod):
    """Forward sensitivity equations solved with the state by the same solver (module doc).

    Options:
        autojacvec: where ``J``, ``df/dp`` and their products come from: ``"auto"`` (user
            derivatives, else autograd on the NumPy backend, else finite differences),
            ``"user"``, ``"autograd"`` or ``"fd"``.
        error_control: ``"state"`` (default): the step-size control sees ``u`` only
            (``solve``'s ``error_components``), so the solve takes the steps of the plain
            solve, the differentiated value equals the undifferentiated one, and ``S`` is
            the exact derivative of that discrete solution (step sizes held fixed, as the
            discrete methods treat them; module doc); ``"all"`` (SciMLSensitivity's
            default, and :func:`autodiffeq.local_sensitivities`'): it sees ``u`` and ``S``,
            so the sensitivities are accurate to the tolerances on their own, at the price
            of more steps and a value that differs from the plain solve's within the
            tolerances.

    Besides ``vjp`` and ``jvp``, :meth:`sensitivities` returns the full ``du/du0`` and
    ``du/dp`` at the saved times (used by :func:`autodiffeq.local_sensitivities`).
    """

    name = "ForwardSensitivity"

    def __init__(self, autojacvec: str = "auto", error_control: str = "state") -> None:
        if autojacvec not in MODES:
            raise InvalidArgument(f"autojacvec must be one of {MODES}, got {autojacvec!r}")
        if error_control not in ("all", "state"):
            raise InvalidArgument(
                f"error_control must be 'all' or 'state', got {error_control!r}"
            )
        self.autojacvec = autojacvec
        self.error_control = error_control

    def forward(self, request: GradientRequest) -> ForwardRecord:
        if getattr(request.prob, "problem_type", "ODE") == "DDE":
            from .dde import forward as dde_forward

            return dde_forward(request, self.error_control, _save_index)
        if getattr(request.prob, "problem_type", "ODE") == "SDE":
            from .sde import forward as sde_forward

            return sde_forward(request, self.error_control, _save_index)
        aug = AugmentedSystem(request, self.autojacvec)
        s0t, s_init = aug.initial_sensitivity()
        user = request.solve_options.get("error_components")
        control = {"error_components": user} if user is not None else {}
        if self.error_control == "state":  # the steps the plain solve takes
            control = {"error_components": aug.n if user is None else min(int(user), aug.n)}
        aug_prob = aug.problem(s0t)
        options = {**aug.tolerances(), **control}
        log: list[tuple[Any, ...]] = []
        if request.callbacks:
            options["callback"] = [augmented_callback(aug, i, cb, log)
                                   for i, cb in enumerate(request.callbacks)]
        sol = request.solve(prob=aug_prob, **options)
        log = list(log)  # a dense re-solve (sol(t)) appends again
        xp = request.backend.xp
        n, k = aug.n, aug.k
        ts = np.asarray(sol.t, dtype=np.float64)
        ys = xp.reshape(sol.u, (len(ts), n * (k + 1)))
        index = _save_index(request, ts)
        saved = xp.take(ys, xp.asarray(index), axis=0)
        st = xp.reshape(saved[:, n:], (len(index), k, n))
        if request.prob.mass_matrix is not None and len(index):
            # the output at t0 is u0 itself: its sensitivity is [I | 0] (module doc)
            at_t0 = xp.reshape(xp.asarray(index == 0), (len(index), 1, 1))
            st = xp.where(at_t0, s_init[None, ...], st)
        record = ForwardRecord(
            sol, ts, ys[:, :n], index,
            {"st": st, "n_u0": aug.n_u0, "k": k, "s_init": s_init,
             "augmented": (aug_prob, options),
             "events": [(i, t, u_minus) for i, t, u_minus, *_ in log],
             # the total derivative of the event state u(t*): S- + f(u-) dt*/dx
             "event_sensitivities": [(s_minus + np.outer(f_minus, dtdx), dtdx)
                                     for *_, s_minus, dtdx, f_minus in log]},
        )
        if log:
            _move_rows_at_events(request, record, log)
        logger.debug(
            "ForwardSensitivity: %d steps of the %d-dimensional augmented system",
            len(ts) - 1, n * (k + 1),
        )
        return record

    def vjp(self, request: GradientRequest, record: ForwardRecord, g: Any,
            events: tuple[Any, Any] | None = None) -> tuple[Any, Any]:
        """``S^T g`` over the saved states, plus for each event ``g_t dt*/dx + S(t*-)^T g_u``
        (the cotangents of its time and state)."""
        g_u0, g_p = self.interpolation_vjp(request, record, record.extra["st"], g)
        if not events or not record.extra["event_sensitivities"]:
            return g_u0, g_p
        be = request.backend
        g_t = np.asarray(be.to_host(events[0]), dtype=np.float64).reshape(-1)
        g_ue = np.asarray(be.to_host(events[1]), dtype=np.float64).reshape(len(g_t), -1)
        extra = np.zeros(record.extra["k"])
        for j, (s_minus, dtdx) in enumerate(record.extra["event_sensitivities"]):
            extra += g_t[j] * dtdx + s_minus.T @ g_ue[j]
        n_u0 = record.extra["n_u0"]
        dtype = record.extra["st"].dtype
        if g_u0 is not None:
            g_u0 = g_u0 + be.asarray(extra[:n_u0], dtype=dtype)
        if g_p is not None:
            g_p = g_p + be.asarray(extra[n_u0:], dtype=dtype)
        return g_u0, g_p

    def jvp(self, request: GradientRequest, record: ForwardRecord, du0: Any, dp: Any) -> Any:
        """The tangent of the saved states; with callbacks also of the event times and
        states, ``(dU, dt_events, du_events)``."""
        d_u = self.interpolation_jvp(request, record, record.extra["st"], du0, dp)
        if not request.callbacks:
            return d_u
        be = request.backend
        n_u0 = record.extra["n_u0"]
        parts = []
        if n_u0:
            parts.append(np.zeros(n_u0) if du0 is None
                         else np.asarray(be.to_host(du0), dtype=np.float64).reshape(-1))
        if request.n_p:
            parts.append(np.zeros(request.n_p) if dp is None
                         else np.asarray(be.to_host(dp), dtype=np.float64).reshape(-1))
        v = np.concatenate(parts) if parts else np.zeros(0)
        sens = record.extra["event_sensitivities"]
        d_t = np.asarray([dtdx @ v for _, dtdx in sens])
        d_ue = (np.stack([s_minus @ v for s_minus, _ in sens]) if sens
                else np.zeros((0, request.n)))
        return d_u, d_t, d_ue

    def interpolate(
        self, request: GradientRequest, record: ForwardRecord, ts: np.ndarray
    ) -> tuple[Any, Any]:
        """``u(ts)`` and ``S(ts)^T`` from the dense output of the augmented system: the
        interpolant is linear in the stages, and the sensitivity stages are the derivatives
        of the state stages, so ``S(t)`` is the derivative of the interpolated ``u(t)`` (with
        ``error_control="state"`` exactly, for the steps taken). The augmented solve is
        repeated once with dense output on the first call (the same steps)."""
        xp = request.backend.xp
        extra = record.extra
        dense = extra.get("dense")
        if dense is None:
            aug_prob, options = extra["augmented"]
            dense = extra["dense"] = request.solve(prob=aug_prob, dense=True, **options)
        n, k = request.n, extra["k"]
        values = xp.reshape(dense.dense_output(ts), (len(ts), n * (k + 1)))
        st = xp.reshape(values[:, n:], (len(ts), k, n))
        if getattr(request.prob, "mass_matrix", None) is not None:
            # the output at t0 is u0 itself: its sensitivity is [I | 0] (module doc)
            at_t0 = xp.reshape(xp.asarray(ts == request.prob.tspan[0]), (len(ts), 1, 1))
            st = xp.where(at_t0, extra["s_init"][None, ...], st)
        return values[:, :n], st

    def interpolation_vjp(
        self, request: GradientRequest, record: ForwardRecord, data: Any, g: Any
    ) -> tuple[Any, Any]:
        xp = request.backend.xp
        st = data  # (nsave, k, n)
        n_u0 = record.extra["n_u0"]
        g_all = xp.sum(st * g[:, None, :], axis=(0, 2))  # (k,)
        g_u0 = g_all[:n_u0] if request.wrt_u0 else None
        g_p = g_all[n_u0:] if request.n_p > 0 else None
        return g_u0, g_p

    def interpolation_jvp(
        self, request: GradientRequest, record: ForwardRecord, data: Any, du0: Any, dp: Any
    ) -> Any:
        xp = request.backend.xp
        st = data
        n_u0 = record.extra["n_u0"]
        dtype = st.dtype
        parts = []
        if n_u0:
            parts.append(xp.zeros((n_u0,), dtype=dtype) if du0 is None
                         else xp.asarray(du0, dtype=dtype))
        if request.n_p:
            parts.append(xp.zeros((request.n_p,), dtype=dtype) if dp is None
                         else xp.asarray(dp, dtype=dtype))
        v = xp.concat(parts)
        return xp.sum(st * v[None, :, None], axis=1)

    def sensitivities(self, request: GradientRequest, record: ForwardRecord) -> tuple[Any, Any]:
        """``(du/du0, du/dp)`` at the saved times as backend arrays ``(nsave, n, n)`` and
        ``(nsave, n, m)`` (``None`` for an input not differentiated)."""
        xp = request.backend.xp
        st = xp.permute_dims(record.extra["st"], (0, 2, 1))  # (nsave, n, k)
        n_u0 = record.extra["n_u0"]
        du_du0 = st[:, :, :n_u0] if request.wrt_u0 else None
        du_dp = st[:, :, n_u0:] if request.n_p > 0 else None
        return du_du0, du_dp

    def __repr__(self) -> str:
        return (
            f"ForwardSensitivity(autojacvec={self.autojacvec!r}, "
            f"error_control={self.error_control!r})"
        )


def _move_rows_at_events(request: GradientRequest, record: ForwardRecord,
                         log: list[tuple[Any, ...]]) -> None:
    """A state saved at a continuous event's time (both sides of a jump, the end of a
    terminal solve) moves with that time: its sensitivity is ``S + f(u) dt*/dx``."""
    be = request.backend
    times = {}
    for i, t, *_rest in log:
        if request.callbacks[i].continuous:
            times.setdefault(t, _rest[2])  # dt*/dx
    if not times:
        return
    t_saved = record.t_saved
    rows = [r for r, t in enumerate(t_saved) if float(t) in times]
    if not rows:
        return
    st = np.array(be.to_host(record.extra["st"]), dtype=np.float64)
    saved = np.asarray(be.to_host(record.u_saved), dtype=np.float64)
    for r in rows:
        t = float(t_saved[r])
        st[r] += np.outer(times[t], request.f_host(saved[r], t))
    record.extra["st"] = be.asarray(st, dtype=record.extra["st"].dtype)


def augmented_callback(aug: AugmentedSystem, index: int, cb: Any,
                       log: list[tuple[Any, ...]]) -> Any:
    """The user's callback ``cb`` on the augmented state ``y = [u, S^T]``: the condition
    reads ``u``; the affect updates ``u`` and applies the saltation update to ``S``
    (Hiskens & Pai, *IEEE TCAS-I* 47, 2000)::

        dt*/dx = -(g_u S- + g_p) / D,   D = g_u . f(u-) + g_t,
        S+ = A_u S- + A_p + (A_u f(u-) + A_t - f(u+)) dt*/dx

    (``A``: the affect's Jacobians, ``g``: the condition's gradient; a discrete callback's
    time is a step end, so ``dt*/dx = 0``). Each event appends ``(index, t*, u-, S-,
    dt*/dx, f(u-))`` to ``log`` (``f(u-) = 0`` for a discrete callback)."""
    from autodiffeq.callbacks import ContinuousCallback, DiscreteCallback, event_jacobians

    be = aug.backend
    xp = aug.xp
    n, k, n_u0, m = aug.n, aug.k, aug.n_u0, aug.m
    shape = aug.shape
    prob = aug.request.prob
    p_flat = aug.p_flat if m > 0 else None

    def shaped(u: Any) -> Any:
        return u if len(shape) == 1 else xp.reshape(u, shape)

    def condition(y: Any, t: float) -> Any:
        return cb.call_condition(shaped(y[:n]), prob.p, t)

    def affect(y: Any, t: float) -> Any:
        host = np.asarray(be.to_host(y), dtype=np.float64)
        if cb.affect is None:
            # the state is left as it is, so are its sensitivities (S+ = S- as f+ = f-):
            # only the event time's derivative is recorded
            u_minus = host[:n]
            s_minus = host[n:].reshape(k, n).T
            jac = event_jacobians(cb, shape, u_minus, prob.p, p_flat, t)
            dtdx = np.zeros(k)
            f_minus = np.zeros(n)
            if cb.continuous:
                f_minus = aug.request.f_host(u_minus, t)
                D, g_u = jac.time_sensitivity(f_minus)
                g_x = g_u @ s_minus
                if m:
                    g_x[n_u0:] += jac.g_p
                dtdx = -g_x / D
            log.append((index, float(t), u_minus.copy(), s_minus.copy(), dtdx, f_minus))
            return y
        u_minus = host[:n]
        s_minus = host[n:].reshape(k, n).T  # (n, k)
        jac = event_jacobians(cb, shape, u_minus, prob.p, p_flat, t)
        u_plus_b = cb.call_affect(shaped(xp.asarray(y[:n], copy=True)), prob.p, t)
        u_plus = np.asarray(be.to_host(be.asarray(u_plus_b)), dtype=np.float64).reshape(-1)
        if u_plus.shape != (n,):
            from autodiffeq.errors import ShapeMismatch

            raise ShapeMismatch(f"affect of callback {index} returned {u_plus.size} values, "
                                f"but the state has {n}")
        s_plus = jac.A_u @ s_minus
        if m:
            s_plus[:, n_u0:] += jac.A_p
        dtdx = np.zeros(k)
        f_minus = np.zeros(n)
        if cb.continuous:
            f_minus = aug.request.f_host(u_minus, t)
            f_plus = aug.request.f_host(u_plus, t)
            D, g_u = jac.time_sensitivity(f_minus)
            g_x = g_u @ s_minus
            if m:
                g_x[n_u0:] += jac.g_p
            dtdx = -g_x / D
            s_plus += np.outer(jac.A_u @ f_minus + jac.A_t - f_plus, dtdx)
        log.append((index, float(t), u_minus.copy(), s_minus.copy(), dtdx, f_minus))
        return be.asarray(np.concatenate([u_plus, s_plus.T.reshape(-1)]), dtype=y.dtype)

    if cb.continuous:
        return ContinuousCallback(condition, affect, direction=cb.direction,
                                  terminal=cb.terminal, interp_points=cb.interp_points)
    return DiscreteCallback(condition, affect, terminal=cb.terminal)


def _save_index(request: GradientRequest, ts: np.ndarray) -> np.ndarray:
    """Rows of the step grid ``ts`` that are outputs (as ``record_from_solution`` does)."""
    if request.saveat is None:
        return np.arange(len(ts))
    tdir = 1.0 if request.prob.tspan[1] > request.prob.tspan[0] else -1.0
    # the last grid point at each time: after an event, the state after it
    pos = np.searchsorted(tdir * ts, tdir * request.saveat, side="right") - 1
    pos = np.clip(pos, 0, len(ts) - 1)
    hit = ts[pos] == request.saveat
    return pos[hit]
