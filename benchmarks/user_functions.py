"""Derivatives of user-written right-hand sides: one gradient through ``ade.solve`` per method.

What a user writes is a function ``f(u, p, t)``. This script measures what one gradient of a
loss through :func:`autodiffeq.solve` costs, for every registered sensitivity method, when that
``f`` is given in three ways (one row each, the ``variant`` column):

* ``autograd``: ``f`` written with ``autograd.numpy`` and nothing else (the headline: what a
  user writes; the library records ``f`` once and replays the recording for ``f`` and the
  derivatives its method needs, :mod:`autodiffeq.replay`);
* ``numpy FD``: ``f`` written in plain NumPy in a way autograd cannot trace (``np.array([...])``
  of the state's entries, ``np.dot``), so the derivatives of ``f`` fall back to central finite
  differences (the one-time :class:`autodiffeq.DerivativeWarning` is silenced). autograd 1.9
  traces ufuncs, ``@`` and ``reshape`` on plain NumPy code, so an ``f`` of those alone would be
  traced: the ``derivs`` column shows the derivative source the library chose for each variant
  (``autograd``, ``fd`` or ``user``), probed with :class:`autodiffeq.RHSDerivatives`;
* ``numpy+jac``: the same plain-NumPy ``f`` with hand-written ``ODEProblem(jac=, paramjac=)``
  (``derivs = user``).

The spiral also has ``autograd dict-p`` (the autograd ``f`` with ``p`` a dict
``{"W1", "b1", "W2", "b2"}``; a row is kept with the library's error when it refuses parameter
containers) and ``nn.MLP`` (:class:`autodiffeq.nn.MLP`, the library's network with
hand-derived products: the yardstick for a neural right-hand side). More variants can be
appended through :data:`VARIANT_HOOKS` (a variant may set sensitivity-method options).

Problems (``--problems``; parameters ``p`` are what is differentiated):

* ``lv``: Lotka-Volterra ``u' = [a x - b x y, -c y + d x y]``, ``p = [1.5, 1, 3, 1]``,
  ``u0 = [1, 1]``, ``t`` in ``[0, 10]``, Tsit5, ``rtol = 1e-8, atol = 1e-10``, 101 saved times
  (``linspace(0, 10, 101)``); loss: the sum of squares of the saved states.
* ``rober``: ROBER ``y1' = -k1 y1 + k3 y2 y3``, ``y2' = k1 y1 - k2 y2^2 - k3 y2 y3``,
  ``y3' = k2 y2^2``, ``p = [k1, k2, k3] = [0.04, 3e7, 1e4]``, ``u0 = [1, 0, 0]``, ``t`` in
  ``[0, 1e5]``, Rodas5P, ``rtol = 1e-6, atol = 1e-10``, saved at ``t = 0`` and 30 log-spaced
  times ``1e-5 ... 1e5``; loss: the sum of squares of the saved states. Only methods
  compatible with a stiff solver are timed (the others are listed with the reason).
* ``spiral``: the spiral neural ODE of ``gradients.py`` written by hand,
  ``u' = tanh(u^3 W1 + b1) W2 + b2``, ``2 -> H -> 2`` (``--hidden``, default 64;
  ``5 H + 2`` parameters, a flat ``p`` in :class:`autodiffeq.nn.MLP`'s layout unpacked inside
  ``f``, Glorot weights from seed 0, zero biases), ``u0 = [2, 0]``, ``t`` in ``[0, 1.5]``,
  20 saved times, Tsit5, ``rtol = 1e-6, atol = 1e-8``; loss: the sum of squared differences
  to data from ``u' = A u^3``, ``A = [[-0.1, 2], [-2, -0.1]]`` (as in ``gradients.py``).
  Also printed: the CPU time of ONE call of each ``f`` and of ONE autograd VJP of the
  autograd ``f`` (``autograd.make_vjp`` over ``(u, p)``, then the product with a vector), of
  ``f`` and of one VJP by replay (:mod:`autodiffeq.replay`), next to the MLP's hand-derived
  ``vjp`` and the hand-written ``jac``/``paramjac`` products.

torchdiffeq (when ``torch`` and ``torchdiffeq`` import; ``--no-torch`` leaves it out): ``odeint``
(backpropagation through the solver) and ``odeint_adjoint``, ``dopri5``, the same tolerances,
float64, the same ``f`` in torch, ``loss.backward()``, for ``lv`` and ``spiral``.

A gradient is ``autograd.grad`` of the loss with respect to ``p`` (the forward solve
included), with ``sensealg=<method>`` and the method's default options; methods that are not
compatible with the problem's solver, or that raise ``UnsupportedCombination`` (for example
ReverseMode and ForwardMode on an ``f`` autograd cannot trace) are listed with the reason.

Timing (the conventions of ``gradients.py``, whose helpers it uses): BLAS and torch on one
thread, the process's CPU time (``--clock wall`` for wall time), glibc malloc keeping freed
memory, the garbage collector run before each call. Each row: one warm-up call, then the median
of 5 calls (3 above 0.5 s, 1 above 2 s; 1 with ``--quick``), with at most ``--budget`` seconds
(default 20) spent on the row: fewer repeats when they would not fit, just the warm-up when one
call takes over half the budget, and a row whose single call exceeds the budget is flagged
(``over budget``). A call is stopped after ``max(2 * budget, 30)`` s of wall time. With several
``--hidden`` sizes a (method, variant) is skipped when predicted to exceed the budget from its
time at the previous size (scaled by the parameter count, squared for forward methods).

Accuracy: ``err = |g - g_ref| / |g_ref|`` (2-norms) against a reference from DiscreteAdjoint
with the hand-written ``jac``/``paramjac`` at ``rtol = 1e-12, atol = 1e-14`` (lv),
``1e-10, 1e-14`` (rober; DiscreteAdjoint transposes Rosenbrock steps by tracing ``f``, so the
reference uses the autograd ``f`` together with the hand-written derivatives) and
``1e-10, 1e-12`` (spiral). Without ``--quick`` the reference is cross-checked against
ForwardSensitivity with the hand-written derivatives at the same tolerances.

Output: a table per problem (ms per gradient, err, ``x FD = t(numpy FD) / t`` and ``x hand =
t(numpy+jac) / t`` for the same method: above 1 means the row is faster), a summary line per
method (autograd f against FD and hand-written), and ``user_functions.csv`` (and
``user_functions_fcost.csv`` for the spiral's f timings) in ``--out``.

    python benchmarks/user_functions.py                   # all problems, about 4 min on 2 cores
    python benchmarks/user_functions.py --quick           # one timed call per row
    python benchmarks/user_functions.py --problems lv --methods DiscreteAdjoint,ReverseMode
    python benchmarks/user_functions.py --problems spiral --hidden 16,64 --budget 10 --no-torch
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import gc  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import autograd.numpy as anp  # noqa: E402
import numpy as np  # noqa: E402
from _common import format_table, write_csv  # noqa: E402
from autograd import grad, make_vjp  # noqa: E402
from gradients import (  # noqa: E402
    A_TRUE,
    CLOCK,
    DEFAULT_OUT,
    CallTimeout,
    _now,
    keep_freed_memory,
    rel_err,
    spiral_torch_field,
    spiral_user_f,
    timed,
    torch_modules,
)

import autodiffeq as ade  # noqa: E402
from autodiffeq.nn import MLP  # noqa: E402

TORCH_METHODS = ("torchdiffeq.odeint", "torchdiffeq.odeint_adjoint")
V_AUTOGRAD, V_DICT, V_FD, V_HAND, V_MLP = (
    "autograd",
    "autograd dict-p",
    "numpy FD",
    "numpy+jac",
    "nn.MLP",
)


# --------------------------------------------------------------------------- problems
@dataclass
class Variant:
    """One way of giving the right-hand side."""

    name: str
    f: Callable[..., Any]
    p: Any  # the parameters as passed to ODEProblem (flat array, or a container)
    problem_kw: dict[str, Any] = field(default_factory=dict)  # jac=, paramjac=, vjp=, ...
    #: options for every sensitivity method of this variant's rows (for example a derivative
    #: source); a method whose spec does not list an option gets the row "unsupported"
    method_options: dict[str, Any] = field(default_factory=dict)
    #: the gradient (of ``p``'s structure) as a flat array in the reference's layout
    flat: Callable[[Any], np.ndarray] = lambda g: np.asarray(g, dtype=np.float64).reshape(-1)


@dataclass
class Problem:
    """One problem: the ODE, its solver settings, loss data, variants and reference."""

    key: str
    title: str
    solver: str
    u0: np.ndarray
    tspan: tuple[float, float]
    t_save: np.ndarray
    rtol: float
    atol: float
    ref_tols: tuple[float, float]
    data: np.ndarray  # loss = sum((saved states - data)^2)
    n_params: int
    variants: list[Variant]
    #: variants to try, in order, for the reference and its cross-check (hand-written
    #: derivatives); not table rows
    ref_variants: list[Variant]
    #: ``torch -> (module, [parameter tensors in the flat layout])`` or None
    torch_model: Callable[[Any], tuple[Any, list[Any]]] | None = None
    hidden: int | None = None

    def loss(self, U: Any) -> Any:
        return anp.sum((U - self.data) ** 2)


#: callables ``problem -> list[Variant]`` whose variants are appended to every problem's
#: rows (for example a row for a right-hand-side compiler or replay module); empty here
VARIANT_HOOKS: list[Callable[[Problem], list[Variant]]] = []


def lotka_volterra() -> Problem:
    def f_autograd(u: Any, p: Any, t: Any) -> Any:
        x, y = u[0], u[1]
        a, b, c, d = p[0], p[1], p[2], p[3]
        return anp.array([a * x - b * x * y, -c * y + d * x * y])

    def f_numpy(u: Any, p: Any, t: Any) -> np.ndarray:
        x, y = u
        a, b, c, d = p
        return np.array([a * x - b * x * y, -c * y + d * x * y])

    def jac(u: Any, p: Any, t: Any) -> np.ndarray:
        x, y = u
        a, b, c, d = p
        return np.array([[a - b * y, -b * x], [d * y, -c + d * x]])

    def paramjac(u: Any, p: Any, t: Any) -> np.ndarray:
        x, y = u
        return np.array([[x, -x * y, 0.0, 0.0], [0.0, 0.0, -y, x * y]])

    p0 = np.array([1.5, 1.0, 3.0, 1.0])
    hand = Variant(V_HAND, f_numpy, p0, {"jac": jac, "paramjac": paramjac})

    def torch_model(torch: Any) -> tuple[Any, list[Any]]:
        class Field(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.p = torch.nn.Parameter(torch.tensor(p0))

            def forward(self, t: Any, u: Any) -> Any:
                a, b, c, d = self.p
                x, y = u[0], u[1]
                return torch.stack([a * x - b * x * y, -c * y + d * x * y])

        module = Field()
        return module, [module.p]

    return Problem(
        key="lv",
        title="Lotka-Volterra (4 parameters), Tsit5, rtol 1e-8, atol 1e-10, 101 saves",
        solver="Tsit5",
        u0=np.array([1.0, 1.0]),
        tspan=(0.0, 10.0),
        t_save=np.linspace(0.0, 10.0, 101),
        rtol=1e-8,
        atol=1e-10,
        ref_tols=(1e-12, 1e-14),
        data=np.zeros(2),
        n_params=4,
        variants=[Variant(V_AUTOGRAD, f_autograd, p0), Variant(V_FD, f_numpy, p0), hand],
        ref_variants=[hand],
        torch_model=torch_model,
    )


def rober() -> Problem:
    def f_autograd(u: Any, p: Any, t: Any) -> Any:
        y1, y2, y3 = u[0], u[1], u[2]
        k1, k2, k3 = p[0], p[1], p[2]
        return anp.array([-k1 * y1 + k3 * y2 * y3, k1 * y1 - k2 * y2**2 - k3 * y2 * y3, k2 * y2**2])

    def f_numpy(u: Any, p: Any, t: Any) -> np.ndarray:
        y1, y2, y3 = u
        k1, k2, k3 = p
        return np.array([-k1 * y1 + k3 * y2 * y3, k1 * y1 - k2 * y2**2 - k3 * y2 * y3, k2 * y2**2])

    def jac(u: Any, p: Any, t: Any) -> np.ndarray:
        y1, y2, y3 = u
        k1, k2, k3 = p
        return np.array(
            [
                [-k1, k3 * y3, k3 * y2],
                [k1, -2.0 * k2 * y2 - k3 * y3, -k3 * y2],
                [0.0, 2.0 * k2 * y2, 0.0],
            ]
        )

    def paramjac(u: Any, p: Any, t: Any) -> np.ndarray:
        y1, y2, y3 = u
        return np.array([[-y1, 0.0, y2 * y3], [y1, -(y2**2), -y2 * y3], [0.0, y2**2, 0.0]])

    p0 = np.array([0.04, 3e7, 1e4])
    derivs = {"jac": jac, "paramjac": paramjac}
    hand = Variant(V_HAND, f_numpy, p0, derivs)
    return Problem(
        key="rober",
        title="ROBER (3 parameters), Rodas5P, rtol 1e-6, atol 1e-10, t to 1e5, 31 saves",
        solver="Rodas5P",
        u0=np.array([1.0, 0.0, 0.0]),
        tspan=(0.0, 1e5),
        t_save=np.concatenate([[0.0], np.logspace(-5.0, 5.0, 30)]),
        rtol=1e-6,
        atol=1e-10,
        ref_tols=(1e-10, 1e-14),
        data=np.zeros(3),
        n_params=3,
        variants=[Variant(V_AUTOGRAD, f_autograd, p0), Variant(V_FD, f_numpy, p0), hand],
        ref_variants=[hand, Variant("autograd+jac", f_autograd, p0, derivs)],
    )


SPIRAL_KEYS = ("W1", "b1", "W2", "b2")


def spiral(hidden: int) -> Problem:
    h = hidden
    mlp = MLP((2, h, 2), activation="tanh", input_transform="cube")
    p0 = mlp.init(seed=0)
    f_autograd = spiral_user_f(h)  # the same function as gradients.py's "[user f]" rows

    def unpack_np(p: np.ndarray) -> tuple[np.ndarray, ...]:
        return (
            p[: 2 * h].reshape(2, h),
            p[2 * h : 3 * h],
            p[3 * h : 5 * h].reshape(h, 2),
            p[5 * h :],
        )

    def f_numpy(u: Any, p: Any, t: Any) -> np.ndarray:
        W1, b1, W2, b2 = unpack_np(p)
        return np.dot(np.tanh(np.dot(u**3, W1) + b1), W2) + b2

    def f_dict(u: Any, p: Any, t: Any) -> Any:
        return anp.dot(anp.tanh(anp.dot(u**3, p["W1"]) + p["b1"]), p["W2"]) + p["b2"]

    def jac(u: Any, p: Any, t: Any) -> np.ndarray:
        W1, b1, W2, _ = unpack_np(p)
        z = np.tanh(np.dot(u**3, W1) + b1)
        return np.dot(W2.T * (1.0 - z * z), W1.T) * (3.0 * u * u)

    def paramjac(u: Any, p: Any, t: Any) -> np.ndarray:
        W1, b1, W2, _ = unpack_np(p)
        x = u**3
        z = np.tanh(np.dot(x, W1) + b1)
        G = (W2 * (1.0 - z * z)[:, None]).T  # (2, H): d f_k / d (x W1 + b1)_j
        dW1 = G[:, None, :] * x[None, :, None]  # (2, 2, H): d f_k / d W1[i, j]
        dW2 = np.einsum("kl,j->kjl", np.eye(2), z)  # (2, H, 2): d f_k / d W2[j, l]
        return np.concatenate([dW1.reshape(2, -1), G, dW2.reshape(2, -1), np.eye(2)], axis=1)

    W1, b1, W2, b2 = (np.array(a) for a in unpack_np(p0))
    p_dict = {"W1": W1, "b1": b1, "W2": W2, "b2": b2}
    u0 = np.array([2.0, 0.0])
    tspan = (0.0, 1.5)
    t_save = np.linspace(*tspan, 20)
    truth = ade.solve(
        ade.ODEProblem(lambda u, p, t: u**3 @ A_TRUE.T, u0, tspan),
        "Tsit5",
        saveat=t_save,
        rtol=1e-10,
        atol=1e-12,
    )
    hand = Variant(V_HAND, f_numpy, p0, {"jac": jac, "paramjac": paramjac})

    def torch_model(torch: Any) -> tuple[Any, list[Any]]:
        module = spiral_torch_field(torch, W1, b1, W2, b2)
        return module, [module.W1, module.b1, module.W2, module.b2]

    return Problem(
        key="spiral",
        title=(
            f"spiral neural ODE 2 -> {h} -> 2 ({mlp.n_params} parameters), Tsit5, rtol 1e-6, "
            "atol 1e-8, 20 saves"
        ),
        solver="Tsit5",
        u0=u0,
        tspan=tspan,
        t_save=t_save,
        rtol=1e-6,
        atol=1e-8,
        ref_tols=(1e-10, 1e-12),
        data=np.asarray(truth.u),
        n_params=mlp.n_params,
        variants=[
            Variant(V_AUTOGRAD, f_autograd, p0),
            Variant(
                V_DICT,
                f_dict,
                p_dict,
                flat=lambda g: np.concatenate([np.ravel(g[k]) for k in SPIRAL_KEYS]),
            ),
            Variant(V_FD, f_numpy, p0),
            hand,
            Variant(V_MLP, mlp, p0),
        ],
        ref_variants=[hand],
        torch_model=torch_model,
        hidden=h,
    )


def check_hand_derivatives(prob: Problem) -> float:
    """Largest relative difference between the hand-written ``jac``/``paramjac`` and
    autograd's Jacobians of the autograd ``f`` at a point near ``u0`` (a test of this file)."""
    from autograd import jacobian

    f = next(v.f for v in prob.variants if v.name == V_AUTOGRAD)
    hand = next(v for v in prob.variants if v.name == V_HAND)
    u = np.asarray(prob.u0, dtype=np.float64) * 0.9 + 0.05
    p = np.asarray(hand.p, dtype=np.float64)
    worst = 0.0
    for mine, theirs in (
        (hand.problem_kw["jac"](u, p, 0.0), jacobian(lambda uu: f(uu, p, 0.0))(u)),
        (hand.problem_kw["paramjac"](u, p, 0.0), jacobian(lambda pp: f(u, pp, 0.0))(p)),
    ):
        scale = np.maximum(np.abs(theirs), 1e-300)
        diff = np.where(np.abs(theirs) > 0, np.abs(mine - theirs) / scale, np.abs(mine))
        worst = max(worst, float(diff.max()))
    return worst


# --------------------------------------------------------------------------- gradients
def ade_gradient(
    prob: Problem, var: Variant, sensealg: Any, tols: tuple[float, float] | None = None
) -> Callable[[], np.ndarray]:
    """``() -> flat d loss / d p`` through ``ade.solve`` with ``sensealg``."""
    rtol, atol = tols or (prob.rtol, prob.atol)

    def loss(p: Any) -> Any:
        ode = ade.ODEProblem(var.f, prob.u0, prob.tspan, p, **var.problem_kw)
        sol = ade.solve(
            ode, prob.solver, saveat=prob.t_save, rtol=rtol, atol=atol, sensealg=sensealg
        )
        return prob.loss(sol.u)

    g = grad(loss)
    return lambda: var.flat(g(var.p))


def sensealg_for(spec: Any, var: Variant) -> Any:
    """The method name, or a configured method when the variant sets options."""
    if not var.method_options:
        return spec.name
    return ade.sensitivity_method(spec.name, **var.method_options)


def derivative_source(prob: Problem, var: Variant) -> str:
    """Where the library takes ``f``'s derivatives from for this variant (``"user"``,
    ``"autograd"`` — recorded and replayed — or ``"fd"``)."""
    try:
        ode = ade.ODEProblem(var.f, prob.u0, prob.tspan, var.p, **var.problem_kw)
        backend = ade.registry().get_backend("numpy")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            derivs = ade.RHSDerivatives(
                var.f, var.p, np.shape(prob.u0), backend, np.float64, problem=ode
            )
        return str(derivs.mode)
    except Exception as exc:  # the probe is informative only
        return f"? ({type(exc).__name__})"


def torch_gradient(
    torch: Any, torchdiffeq: Any, prob: Problem, adjoint: bool
) -> tuple[Callable[[], np.ndarray], Callable[[], int]]:
    """``(fn, nfe)``: ``fn()`` is one gradient by torchdiffeq (dopri5, float64, the problem's
    tolerances) as a flat array; ``nfe()`` the f evaluations of its last forward pass."""
    module, params = prob.torch_model(torch)
    calls = [0]
    inner = module.forward

    def counted(t: Any, u: Any) -> Any:
        calls[0] += 1
        return inner(t, u)

    module.forward = counted
    y0 = torch.tensor(prob.u0)
    ts = torch.tensor(prob.t_save)
    data = torch.tensor(prob.data)
    solve = torchdiffeq.odeint_adjoint if adjoint else torchdiffeq.odeint
    forward_nfe = [0]

    def fn() -> np.ndarray:
        module.zero_grad(set_to_none=True)
        calls[0] = 0
        U = solve(module, y0, ts, rtol=prob.rtol, atol=prob.atol, method="dopri5")
        forward_nfe[0] = calls[0]
        ((U - data) ** 2).sum().backward()
        return np.concatenate([q.grad.detach().numpy().reshape(-1) for q in params])

    return fn, lambda: forward_nfe[0]


# --------------------------------------------------------------------------- timing
def measure_row(
    fn: Callable[[], Any], budget: float, hard_limit: float, quick: bool
) -> tuple[float, Any, int, str]:
    """``(seconds per call, result, timed calls, note)``: a warm-up call, then the median of
    5 calls (3 over 0.5 s, 1 over 2 s, 1 with ``quick``), at most ``budget`` seconds in all;
    the warm-up's time alone when no repeat fits (calls = 0)."""
    first, out = timed(fn, hard_limit)
    if first > budget:
        return first, out, 0, f"over budget: one call {first:.3g} s > {budget:g} s, not repeated"
    nominal = 1 if quick else (5 if first < 0.5 else 3 if first < 2.0 else 1)
    fit = int((budget - first) // first) if first > 0 else nominal
    repeats = min(nominal, fit)
    if repeats <= 0:
        return first, out, 0, "warm-up call only (budget)"
    samples = [timed(fn, hard_limit)[0] for _ in range(repeats)]
    return statistics.median(samples), out, repeats, ""


def per_call(fn: Callable[[], Any], min_time: float, repeat: int = 3) -> float:
    """Best-of-``repeat`` seconds per call of a fast ``fn`` (:data:`CLOCK`), each measurement
    looping long enough to take ``min_time``; garbage collector off."""
    fn()
    number, best = 1, float("inf")
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        while True:  # find the loop count
            start = _now()
            for _ in range(number):
                fn()
            total = _now() - start
            if total >= min_time:
                break
            number *= 10 if total < min_time / 10 else 2
        best = total / number
        for _ in range(repeat - 1):
            start = _now()
            for _ in range(number):
                fn()
            best = min(best, (_now() - start) / number)
    finally:
        if gc_was_on:
            gc.enable()
    return best


# --------------------------------------------------------------------------- the run
@dataclass
class Row:
    problem: str
    n_params: int
    method: str
    mode: str
    variant: str
    derivs: str = ""
    seconds: float | None = None
    err: float | None = None
    calls: int = 0
    note: str = ""


def reference(prob: Problem, cross_check: bool) -> np.ndarray:
    """DiscreteAdjoint with the hand-written derivatives at the reference tolerances (the
    first of ``prob.ref_variants`` it accepts); optionally cross-checked by
    ForwardSensitivity."""
    start = time.perf_counter()
    for var in prob.ref_variants:
        try:
            ref = ade_gradient(prob, var, "DiscreteAdjoint", prob.ref_tols)()
        except ade.UnsupportedCombination as exc:
            print(f"  reference: DiscreteAdjoint refuses f '{var.name}': {str(exc)[:90]}...")
            continue
        break
    else:
        raise RuntimeError("no reference gradient")
    rtol, atol = prob.ref_tols
    print(
        f"  reference: DiscreteAdjoint, f '{var.name}' (derivs {derivative_source(prob, var)}), "
        f"rtol {rtol:g}, atol {atol:g}: {time.perf_counter() - start:.1f} s"
    )
    if cross_check:
        start = time.perf_counter()
        for check_var in prob.ref_variants:
            try:
                other = ade_gradient(prob, check_var, "ForwardSensitivity", prob.ref_tols)()
            except ade.UnsupportedCombination:
                continue
            print(
                f"  cross-check: ForwardSensitivity, f '{check_var.name}', same tolerances: "
                f"relative difference {rel_err(other, ref):.1e} "
                f"({time.perf_counter() - start:.1f} s)"
            )
            break
    return ref


def forward_stats(prob: Problem) -> str:
    var = prob.ref_variants[0]
    ode = ade.ODEProblem(var.f, prob.u0, prob.tspan, var.p, **var.problem_kw)
    sol = ade.solve(ode, prob.solver, saveat=prob.t_save, rtol=prob.rtol, atol=prob.atol)
    st = sol.stats
    return f"{prob.solver} forward solve: {st.naccept} steps, {st.nf} f evaluations"


def run_problem(
    prob: Problem,
    methods: Sequence[Any],
    torch_mods: tuple[Any, Any] | None,
    budget: float,
    quick: bool,
    previous: dict[tuple[str, str, str], tuple[int, float]],
) -> list[Row]:
    """Every (method, variant) row of ``prob``; ``previous`` maps (problem, method, variant)
    to (parameters, seconds) at the previous size, for the budget prediction."""
    print(f"\n== {prob.key}: {prob.title}", flush=True)
    print(f"  {forward_stats(prob)}")
    print(
        f"  hand-written jac/paramjac vs autograd: max rel. diff {check_hand_derivatives(prob):.1e}"
    )
    ref = reference(prob, cross_check=not quick)
    variants = prob.variants + [v for hook in VARIANT_HOOKS for v in hook(prob)]
    sources = {v.name: derivative_source(prob, v) for v in variants}
    print("  derivative sources: " + ", ".join(f"{k}: {s}" for k, s in sources.items()))
    reg = ade.registry()
    hard_limit = max(2 * budget, 30.0)
    rows: list[Row] = []

    def predicted_too_slow(row: Row) -> str:
        last = previous.get((prob.key, row.method, row.variant))
        if last is None or last[0] == prob.n_params:
            return ""
        params, seconds = last
        power = 2 if row.mode == "forward" else 1
        guess = seconds * (prob.n_params / params) ** power
        if guess > budget:
            return (
                f"skipped: predicted {guess:.3g} s per gradient (> budget {budget:g} s; "
                f"{seconds:.3g} s at {params} parameters)"
            )
        return ""

    def record(row: Row, fn: Callable[[], Any], container: bool = False) -> None:
        row.note = predicted_too_slow(row)
        if not row.note:
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    warnings.simplefilter("ignore", ade.DerivativeWarning)
                    row.seconds, g, row.calls, row.note = measure_row(fn, budget, hard_limit, quick)
                row.err = rel_err(g, ref)
                messages = sorted({str(w.message).split("\n")[0][:70] for w in caught})
                if messages:
                    row.note = (row.note + " warned: " + "; ".join(messages)).strip()
                previous[(prob.key, row.method, row.variant)] = (prob.n_params, row.seconds)
            except CallTimeout:
                row.note = f"stopped: one call over {hard_limit:g} s (wall)"
                previous[(prob.key, row.method, row.variant)] = (prob.n_params, hard_limit)
            except ade.UnsupportedCombination as exc:
                row.note = f"unsupported: {str(exc).splitlines()[0][:110]}"
            except Exception as exc:  # one row's failure must not stop the benchmark
                what = "failed"
                if container:
                    what = "skipped (the solve refuses a parameter container)"
                row.note = f"{what}: {type(exc).__name__}: {str(exc).splitlines()[0][:110]}"
        rows.append(row)
        shown = "" if row.seconds is None else f"{row.seconds * 1e3:10.2f} ms  err {row.err:.1e}"
        print(f"  {row.method:26s} {row.variant:16s} {shown} {row.note}", flush=True)

    for spec in methods:
        for var in variants:
            row = Row(prob.key, prob.n_params, spec.name, spec.mode, var.name, sources[var.name])
            ode = ade.ODEProblem(var.f, prob.u0, prob.tspan, var.p, **var.problem_kw)
            compat = reg.compatible(prob.solver, "numpy", spec, ode)
            if not compat:
                row.note = f"incompatible: {str(compat.reason)[:110]}"
                rows.append(row)
                print(f"  {row.method:26s} {row.variant:16s} {row.note}", flush=True)
                continue
            unknown = set(var.method_options) - set(spec.options)
            if unknown:
                row.note = f"unsupported: {spec.name} takes no option {sorted(unknown)}"
                rows.append(row)
                continue
            record(
                row,
                lambda spec=spec, var=var: ade_gradient(prob, var, sensealg_for(spec, var))(),
                container=not isinstance(var.p, np.ndarray),
            )

    if torch_mods is not None and prob.torch_model is not None:
        torch, torchdiffeq = torch_mods
        for name in TORCH_METHODS:
            fn, nfe = torch_gradient(torch, torchdiffeq, prob, adjoint=name.endswith("adjoint"))
            row = Row(prob.key, prob.n_params, name, "torch", "torch", "torch.autograd")
            record(row, fn)
            if row.seconds is not None:
                row.note = (row.note + f" forward nfe {nfe()}").strip()
    return rows


def f_costs(prob: Problem, quick: bool) -> list[list[Any]]:
    """Microseconds of one call of each spiral f, and of one VJP, printed; CSV rows."""
    by = {v.name: v for v in prob.variants}
    u = np.asarray(prob.u0, dtype=np.float64) * 0.8 + 0.1
    t = 0.3
    v = np.array([0.7, -0.4])
    p = by[V_AUTOGRAD].p
    f_ag = by[V_AUTOGRAD].f
    mlp = by[V_MLP].f
    jac, paramjac = by[V_HAND].problem_kw["jac"], by[V_HAND].problem_kw["paramjac"]

    def g(args: tuple[Any, Any]) -> Any:
        return f_ag(args[0], args[1], t)

    def autograd_vjp() -> Any:
        vjp, _ = make_vjp(g)((u, p))
        return vjp(v)

    def hand_vjp() -> Any:
        return v @ jac(u, p, t), v @ paramjac(u, p, t)

    # the VJPs agree (a check of this file)
    a_u, a_p = autograd_vjp()
    m_u, m_p = mlp.vjp(v, u, p, t)
    h_u, h_p = hand_vjp()
    agree = max(
        rel_err(np.concatenate([x_u, x_p]), np.concatenate([a_u, a_p]))
        for x_u, x_p in ((m_u, m_p), (h_u, h_p))
    )
    from autodiffeq.replay import replayed

    rf, leaves = replayed(f_ag, p, np.shape(u), np.float64)
    _, flat = rf.vjp(v, u, leaves, t)
    agree = max(agree, rel_err(flat, np.concatenate([a_u, a_p])))
    assert rf.disabled is None, rf.disabled
    items = [
        ("f call", V_AUTOGRAD, lambda: f_ag(u, p, t)),
        ("f by replay (autodiffeq.replay)", V_AUTOGRAD, lambda: rf.value(u, leaves, t)),
        ("VJP: replayed (forward + backward)", V_AUTOGRAD, lambda: rf.vjp(v, u, leaves, t)),
        ("f call", V_DICT, lambda: by[V_DICT].f(u, by[V_DICT].p, t)),
        ("f call", V_FD, lambda: by[V_FD].f(u, p, t)),
        ("f call", V_MLP, lambda: mlp(u, p, t)),
        ("VJP: make_vjp (trace) only", V_AUTOGRAD, lambda: make_vjp(g)((u, p))),
        ("VJP: make_vjp + vjp(v)", V_AUTOGRAD, autograd_vjp),
        ("VJP: v^T jac, v^T paramjac", V_HAND, hand_vjp),
        ("VJP: MLP.vjp (hand-derived)", V_MLP, lambda: mlp.vjp(v, u, p, t)),
    ]
    min_time = 0.02 if quick else 0.2
    rows = []
    for what, variant, fn in items:
        rows.append([prob.key, prob.n_params, what, variant, per_call(fn, min_time) * 1e6])
    base = rows[0][-1]
    print(f"\n### {prob.key} H = {prob.hidden}: cost of f and of one VJP ({CLOCK['name']} clock)\n")
    print(
        format_table(
            ["what", "f", "us per call", "x f call (autograd)"],
            [[r[2], r[3], r[4], r[4] / base] for r in rows],
        )
    )
    print(f"  (VJPs of the autograd f, its replay, the MLP and jac/paramjac agree to "
          f"{agree:.1e})")
    return rows


# --------------------------------------------------------------------------- reporting
def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return num / den


HEADERS = [
    "problem",
    "params",
    "method",
    "variant",
    "derivs",
    "ms",
    "err",
    "x FD",
    "x hand",
    "calls",
    "note",
]


def table_rows(rows: list[Row]) -> list[list[Any]]:
    """Table/CSV rows with the ratios to the FD and hand-written rows of the same method."""
    times = {(r.problem, r.n_params, r.method, r.variant): r.seconds for r in rows}
    out = []
    for r in rows:
        key = (r.problem, r.n_params, r.method)
        out.append(
            [
                r.problem,
                r.n_params,
                r.method,
                r.variant,
                r.derivs,
                None if r.seconds is None else r.seconds * 1e3,
                r.err,
                _ratio(times.get((*key, V_FD)), r.seconds),
                _ratio(times.get((*key, V_HAND)), r.seconds),
                r.calls,
                r.note,
            ]
        )
    return out


def print_tables(rows: list[Row]) -> list[list[Any]]:
    all_rows = table_rows(rows)
    for key in dict.fromkeys((r[0], r[1]) for r in all_rows):
        mine = [r for r in all_rows if (r[0], r[1]) == key]
        print(f"\n### {key[0]} ({key[1]} parameters): ms per gradient\n")
        print(format_table(HEADERS[2:], [r[2:-1] + [r[-1][:60]] for r in mine]))
        summary(mine)
    return all_rows


def summary(rows: list[list[Any]]) -> None:
    """Per method: the autograd f against plain NumPy with FD and with hand-written jac."""
    print("\n  autograd f: time / t(numpy FD), time / t(numpy+jac)  (above 1: autograd slower)")
    times = {(r[2], r[3]): r[5] for r in rows}
    for method in dict.fromkeys(r[2] for r in rows):
        ag = times.get((method, V_AUTOGRAD))
        if ag is None:
            continue
        fd, hand = times.get((method, V_FD)), times.get((method, V_HAND))
        cells = [
            f"vs FD {'n/a' if fd is None else f'{ag / fd:.2f}x'}",
            f"vs hand {'n/a' if hand is None else f'{ag / hand:.2f}x'}",
        ]
        mlp = times.get((method, V_MLP))
        if mlp is not None:
            cells.append(f"vs nn.MLP {ag / mlp:.2f}x")
        print(f"  {method:26s} {ag:9.2f} ms: " + ", ".join(cells))


def _csv_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one timed call per row, no cross-check")
    ap.add_argument(
        "--problems", type=_csv_list, default=["lv", "rober", "spiral"], help="lv,rober,spiral"
    )
    ap.add_argument(
        "--methods",
        type=_csv_list,
        default=None,
        help="sensitivity methods (default: all registered); 'torchdiffeq' keeps its rows",
    )
    ap.add_argument("--hidden", type=lambda s: [int(x) for x in _csv_list(s)], default=[64])
    ap.add_argument(
        "--budget", type=float, default=20.0, help="seconds spent at most on one row (20)"
    )
    ap.add_argument("--no-torch", action="store_true", help="leave torchdiffeq out")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    ap.add_argument("--system-malloc", action="store_true", help="leave glibc's malloc alone")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = ap.parse_args(argv)
    CLOCK["name"] = args.clock
    malloc_note = "unchanged (--system-malloc)" if args.system_malloc else keep_freed_memory()

    builders = {"lv": lambda: [lotka_volterra()], "rober": lambda: [rober()]}
    builders["spiral"] = lambda: [spiral(h) for h in args.hidden]
    unknown = [p for p in args.problems if p not in builders]
    if unknown:
        ap.error(f"unknown problems {unknown}; choose from {sorted(builders)}")

    reg = ade.registry()
    methods = sorted(reg.sensitivities(), key=lambda s: (s.mode, s.name))
    want_torch = not args.no_torch
    if args.methods is not None:
        names = {s.name for s in methods}
        bad = [m for m in args.methods if m not in names and m != "torchdiffeq"]
        if bad:
            ap.error(f"unknown methods {bad}; registered: {sorted(names)} (or torchdiffeq)")
        methods = [s for s in methods if s.name in args.methods]
        want_torch = want_torch and "torchdiffeq" in args.methods
    torch_mods, torch_note = torch_modules(want_torch, "left out")
    print(
        f"autodiffeq {ade.__version__}, numpy {np.__version__}, Python "
        f"{platform.python_version()}; OPENBLAS_NUM_THREADS="
        f"{os.environ.get('OPENBLAS_NUM_THREADS')}; {args.clock} clock; malloc {malloc_note}"
    )
    print(f"sensitivity methods: {', '.join(f'{s.name} ({s.mode})' for s in methods)}")
    print(f"torchdiffeq: {torch_note}")
    print(f"budget {args.budget:g} s per row; problems {', '.join(args.problems)}")

    start = time.perf_counter()
    rows: list[Row] = []
    fcost_rows: list[list[Any]] = []
    previous: dict[tuple[str, str, str], tuple[int, float]] = {}
    for key in args.problems:
        for prob in builders[key]():
            rows += run_problem(prob, methods, torch_mods, args.budget, args.quick, previous)
            if prob.key == "spiral":
                fcost_rows += f_costs(prob, args.quick)

    csv_rows = print_tables(rows)
    write_csv(args.out / "user_functions.csv", HEADERS, csv_rows)
    print(f"\nwrote {args.out / 'user_functions.csv'}")
    if fcost_rows:
        write_csv(
            args.out / "user_functions_fcost.csv",
            ["problem", "params", "what", "f", "us per call"],
            fcost_rows,
        )
        print(f"wrote {args.out / 'user_functions_fcost.csv'}")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
