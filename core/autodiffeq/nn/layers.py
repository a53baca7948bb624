"""Layers: callables ``layer(x, params) -> y`` with flat parameters, composable with
:class:`Chain`, and differential-equation layers whose forward pass is a solve
(DiffEqFlux.jl's ``NeuralODE``, ``NeuralDSDE``, ``NeuralDDE``; Rackauckas et al., "DiffEqFlux.jl
- A Julia Library for Neural Differential Equations", arXiv:1902.02376, 2019).

Every layer has ``n_params`` (the length of its flat parameter vector) and
``init_params(seed)``; calling it is differentiable with autograd in both ``x`` and
``params``, so a loss over any composition is differentiated by ``autograd.grad``. A DE layer
differentiates its solve with its ``sensealg`` (any registered sensitivity method; ``None``
lets the solve choose).

* :class:`Dense` ``(n_in, n_out, activation)``: ``y = sigma(x W + b)`` on ``(..., n_in)``.
* :class:`Chain` ``(*layers)``: ``y = layer_k(... layer_1(x))``, parameters concatenated.
* :class:`NeuralODE` ``(model, tspan, ...)``: ``du/dt = model(u, p)``, ``u(t0) = x``; returns
  the saved states ``(len(t), *x.shape)`` (or ``u(t1)`` with ``output="final"``). ``x`` of
  shape ``(B, n)`` is one state of ``B`` rows (``model`` applied row by row, as
  :class:`~autodiffeq.nn.MLP` and :class:`Chain` of :class:`Dense` do).
* :class:`NeuralSDE` ``(drift, diffusion, tspan, ...)``: ``du = drift(u, p1) dt +
  diffusion(u, p2) dW`` (diagonal noise), parameters ``[p1, p2]``.
* :class:`NeuralDDE` ``(model, tspan, lags, h, ...)``: ``du/dt = model([u(t), u(t - tau_1),
  ...], p)`` with history ``h(p, t)`` before ``t0``.

A ``model`` is any callable ``model(x, params)`` (or an ``f(u, p, t)`` like ``MLP``) that has
``n_params`` and ``init_params(seed)`` (``MLP``'s ``init`` is accepted too).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import autograd.numpy as anp
import numpy as np

from ..errors import InvalidArgument, InvalidType, ShapeMismatch

ACTIVATIONS: dict[str, Callable[[Any], Any]] = {
    "identity": lambda x: x,
    "tanh": anp.tanh,
    "relu": lambda x: anp.maximum(x, 0.0),
    "sigmoid": lambda x: 0.5 * (anp.tanh(0.5 * x) + 1.0),
    "softplus": lambda x: anp.logaddexp(0.0, x),
}


def _seed_sequence(seed: Any) -> np.random.SeedSequence:
    """``seed`` (``None``, an ``int``, a ``SeedSequence`` or a ``Generator``) as a
    ``SeedSequence``."""
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, np.random.Generator):
        return np.random.SeedSequence(int(seed.integers(2 ** 63)))
    return np.random.SeedSequence(seed)


def n_params_of(model: Any, name: str = "model") -> int:
    """The parameter count of ``model`` (``n_params``), or a clear error."""
    n = getattr(model, "n_params", None)
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise InvalidType(
            f"{name} must have n_params (the length of its flat parameter vector) and "
            f"init_params(seed): an autodiffeq.nn layer, MLP or Chain; got "
            f"{type(model).__name__}")
    return int(n)


def init_params_of(model: Any, seed: Any) -> np.ndarray:
    init = getattr(model, "init_params", None) or getattr(model, "init", None)
    if init is None:
        raise InvalidType(f"{type(model).__name__} has no init_params(seed)")
    if not isinstance(model, Layer) and isinstance(seed, np.random.SeedSequence):
        seed = np.random.default_rng(seed)  # MLP.init takes an int or a Generator
    return np.asarray(init(seed), dtype=np.float64)


def check_params(params: Any, n: int, owner: str) -> Any:
    """``params`` must be a flat float vector of ``n`` entries (an autograd box passes)."""
    shape = getattr(params, "shape", None)
    if shape is None:
        raise InvalidType(f"{owner}: params must be a flat array of {n} numbers, got "
                          f"{type(params).__name__}")
    if len(shape) != 1 or shape[0] != n:
        raise ShapeMismatch(f"{owner}: params has shape {tuple(shape)}; expected ({n},) (this "
                            f"layer has {n} parameters: init_params(seed) makes them)")
    dtype = getattr(params, "dtype", None)
    if dtype is not None and not _is_float(dtype):
        raise InvalidType(f"{owner}: params must be floating point, got dtype {dtype}")
    return params


def _is_float(dtype: Any) -> bool:
    """Whether ``dtype`` (NumPy's or another array library's) is a real floating type."""
    try:
        return np.dtype(dtype).kind == "f"
    except TypeError:  # e.g. array_api_strict.float64
        return "float" in str(dtype)


def call_model(model: Any, x: Any, params: Any) -> Any:
    """``model(x, params)``, or ``model(x, params, None)`` for an ``f(u, p, t)``-style
    model such as :class:`~autodiffeq.nn.MLP`."""
    if isinstance(model, Layer):
        return model(x, params)
    return model(x, params, None)


class Layer:
    """Base of the layers: ``n_params``, ``init_params(seed)``, ``__call__(x, params)``."""

    n_params: int = 0

    def init_params(self, seed: Any = None) -> np.ndarray:
        """Random initial parameters (flat float64)."""
        return np.zeros(self.n_params)

    def __call__(self, x: Any, params: Any) -> Any:
        raise TypeError(f"{type(self).__name__} must implement __call__(x, params)")

    # the f(u, p, t) form, so a layer is a right-hand side as it is
    def rhs(self, u: Any, p: Any, t: Any = None) -> Any:
        return self(u, p)


class Dense(Layer):
    """``y = activation(x W + b)`` for ``x`` of shape ``(..., n_in)``; parameters ``[W
    (row-major, n_in x n_out), b]``, Glorot-uniform weights and zero biases at init."""

    def __init__(self, n_in: int, n_out: int, activation: str = "identity") -> None:
        if not (isinstance(n_in, (int, np.integer)) and isinstance(n_out, (int, np.integer))
                and n_in > 0 and n_out > 0):
            raise InvalidArgument(f"Dense(n_in, n_out): positive integers, got {n_in!r}, "
                                  f"{n_out!r}")
        if activation not in ACTIVATIONS:
            raise InvalidArgument(f"unknown activation {activation!r}; choose one of "
                                  f"{sorted(ACTIVATIONS)}")
        self.n_in, self.n_out, self.activation = int(n_in), int(n_out), activation
        self._sigma = ACTIVATIONS[activation]
        self.n_params = self.n_in * self.n_out + self.n_out

    def init_params(self, seed: Any = None) -> np.ndarray:
        rng = np.random.default_rng(_seed_sequence(seed))
        a = np.sqrt(6.0 / (self.n_in + self.n_out))
        return np.concatenate([rng.uniform(-a, a, self.n_in * self.n_out),
                               np.zeros(self.n_out)])

    def __call__(self, x: Any, params: Any) -> Any:
        check_params(params, self.n_params, repr(self))
        if anp.shape(x)[-1:] != (self.n_in,):
            raise ShapeMismatch(f"{self!r}: input has shape {anp.shape(x)}; expected "
                                f"(..., {self.n_in})")
        k = self.n_in * self.n_out
        W = anp.reshape(params[:k], (self.n_in, self.n_out))
        return self._sigma(anp.dot(x, W) + params[k:])

    def __repr__(self) -> str:
        return f"Dense({self.n_in}, {self.n_out}, activation={self.activation!r})"


class Chain(Layer):
    """Layers (or models with ``n_params``) applied in order; the parameters are the
    layers' concatenated, and ``init_params(seed)`` initialises each from its own child of
    ``SeedSequence(seed)``."""

    def __init__(self, *layers: Any) -> None:
        if not layers:
            raise InvalidArgument("Chain needs at least one layer")
        self.layers = layers
        sizes = [n_params_of(layer, f"Chain layer {i}") for i, layer in enumerate(layers)]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.n_params = int(self.offsets[-1])

    def init_params(self, seed: Any = None) -> np.ndarray:
        children = _seed_sequence(seed).spawn(len(self.layers))
        parts = [init_params_of(layer, child) for layer, child in zip(self.layers, children)]
        return np.concatenate(parts) if parts else np.zeros(0)

    def split(self, params: Any) -> list[Any]:
        """Each layer's slice of ``params``."""
        o = self.offsets
        return [params[o[i]:o[i + 1]] for i in range(len(self.layers))]

    def __call__(self, x: Any, params: Any) -> Any:
        check_params(params, self.n_params, "Chain")
        for layer, p in zip(self.layers, self.split(params)):
            x = call_model(layer, x, p)
        return x

    def __repr__(self) -> str:
        return "Chain(" + ", ".join(repr(layer) for layer in self.layers) + ")"


_OUTPUTS = ("trajectory", "final")


class _DELayer(Layer):
    """What the differential-equation layers share: the solve options and the output."""

    def __init__(self, tspan: Any, alg: Any, sensealg: Any, output: str,
                 solve_kw: dict[str, Any]) -> None:
        from ..validation import check_tspan

        self.tspan = check_tspan(tspan)
        if output not in _OUTPUTS:
            raise InvalidArgument(f"output must be one of {_OUTPUTS}, got {output!r}")
        self.alg, self.sensealg, self.output = alg, sensealg, output
        if output == "final":
            solve_kw.setdefault("saveat", [self.tspan[1]])
        self.solve_kw = solve_kw
        self.last_solution: Any = None

    def _result(self, sol: Any, x: Any) -> Any:
        self.last_solution = sol  # (retcode, stats, dense output of the last forward pass)
        if self.output == "final":
            return sol.u[-1]
        return sol.u

    def _check_state(self, x: Any, n: int | None, owner: str) -> None:
        shape = anp.shape(x)
        if len(shape) == 0 or (n is not None and shape[-1] != n):
            raise ShapeMismatch(f"{owner}: u0 has shape {shape}; expected (n,) or (B, n) with "
                                f"n = {n} (the model's input width)")


def _input_width(model: Any) -> int | None:
    if isinstance(model, Dense):
        return model.n_in
    if isinstance(model, Chain):
        return _input_width(model.layers[0])
    sizes = getattr(model, "sizes", None)  # MLP
    return int(sizes[0]) if sizes else None


def _output_width(model: Any) -> int | None:
    if isinstance(model, Dense):
        return model.n_out
    if isinstance(model, Chain):
        return _output_width(model.layers[-1])
    sizes = getattr(model, "sizes", None)
    return int(sizes[-1]) if sizes else None


class NeuralODE(_DELayer):
    """``u(t) = x + int_{t0}^{t} model(u(s), params) ds`` (module docstring).

    Args:
        model: the right-hand side, a layer/``MLP``/``Chain`` mapping ``(..., n)`` to
            ``(..., n)``.
        tspan: ``(t0, t1)``.
        alg: the solver (``None``: the default for the tolerances).
        sensealg: the sensitivity method of the gradients (``None``: the solve's choice).
        output: ``"trajectory"`` (the saved states, ``(len(t), *x.shape)``) or ``"final"``
            (``u(t1)``, ``x``'s shape: a layer inside a network).
        **solve_kw: options of :func:`autodiffeq.solve` (``saveat``, ``rtol``, ...).
    """

    def __init__(self, model: Any, tspan: Any, alg: Any = None, sensealg: Any = None,
                 output: str = "trajectory", **solve_kw: Any) -> None:
        self.model = model
        self.n_params = n_params_of(model)
        n_in, n_out = _input_width(model), _output_width(model)
        if n_in is not None and n_out is not None and n_in != n_out:
            raise ShapeMismatch(f"NeuralODE: the model maps width {n_in} to {n_out}; du/dt "
                                f"needs the state's width both ways")
        self.n = n_in
        super().__init__(tspan, alg, sensealg, output, solve_kw)
        model_ = model

        def f(u: Any, p: Any, t: Any) -> Any:
            return call_model(model_, u, p)

        f.__name__ = f"NeuralODE({type(model).__name__})"
        # a model that carries its own derivatives (MLP) keeps them on the right-hand side
        self.f = model if not isinstance(model, Layer) and hasattr(model, "vjp") else f

    def init_params(self, seed: Any = None) -> np.ndarray:
        return init_params_of(self.model, seed)

    def __call__(self, x: Any, params: Any) -> Any:
        from ..problems import ODEProblem
        from ..solve import solve

        check_params(params, self.n_params, "NeuralODE")
        self._check_state(x, self.n, "NeuralODE")
        prob = ODEProblem(self.f, x, self.tspan, params)
        sol = solve(prob, self.alg, sensealg=self.sensealg, **self.solve_kw)
        return self._result(sol, x)

    def __repr__(self) -> str:
        return f"NeuralODE({self.model!r}, tspan={self.tspan}, output={self.output!r})"


class NeuralSDE(_DELayer):
    """``du = drift(u, p1) dt + diffusion(u, p2) dW`` (Itô, diagonal noise), parameters
    ``[p1, p2]`` (module docstring). ``layer(x, params, seed=None)``: the noise is drawn from
    ``seed`` (a gradient with no seed uses one path for all its solves)."""

    def __init__(self, drift: Any, diffusion: Any, tspan: Any, alg: Any = None,
                 sensealg: Any = None, output: str = "trajectory", **solve_kw: Any) -> None:
        self.drift, self.diffusion = drift, diffusion
        self.chain = Chain(drift, diffusion)  # the parameter layout [p1, p2]
        self.n_params = self.chain.n_params
        self.n = _input_width(drift)
        super().__init__(tspan, alg, sensealg, output, solve_kw)
        chain = self.chain

        def f(u: Any, p: Any, t: Any) -> Any:
            return call_model(drift, u, chain.split(p)[0])

        def g(u: Any, p: Any, t: Any) -> Any:
            return call_model(diffusion, u, chain.split(p)[1])

        self.f, self.g = f, g

    def init_params(self, seed: Any = None) -> np.ndarray:
        return self.chain.init_params(seed)

    def __call__(self, x: Any, params: Any, seed: int | None = None) -> Any:
        from ..problems import SDEProblem
        from ..solve import solve

        check_params(params, self.n_params, "NeuralSDE")
        self._check_state(x, self.n, "NeuralSDE")
        prob = SDEProblem(self.f, self.g, x, self.tspan, params)
        sol = solve(prob, self.alg, sensealg=self.sensealg, seed=seed, **self.solve_kw)
        return self._result(sol, x)

    def __repr__(self) -> str:
        return f"NeuralSDE({self.drift!r}, {self.diffusion!r}, tspan={self.tspan})"


class NeuralDDE(_DELayer):
    """``du/dt = model([u(t), u(t - tau_1), ..., u(t - tau_k)], params)`` with the history
    ``h(p, t)`` for ``t <= t0`` (module docstring); the model's input width is
    ``(1 + k) n``. ``h=None`` holds the initial state constant before ``t0``."""

    def __init__(self, model: Any, tspan: Any, lags: Sequence[float], h: Any = None,
                 alg: Any = None, sensealg: Any = None, output: str = "trajectory",
                 **solve_kw: Any) -> None:
        self.model = model
        self.n_params = n_params_of(model)
        lags = tuple(float(tau) for tau in lags)
        if not lags or any(not tau > 0 for tau in lags):
            raise InvalidArgument(f"lags must be positive numbers, got {lags!r}")
        self.lags = lags
        n_in, n_out = _input_width(model), _output_width(model)
        if n_in is not None and n_out is not None and n_in != (1 + len(lags)) * n_out:
            raise ShapeMismatch(
                f"NeuralDDE: the model maps width {n_in} to {n_out}; with {len(lags)} lag(s) "
                f"its input is [u(t), u(t - tau_1), ...]: width {(1 + len(lags)) * n_out}")
        self.n = n_out
        self.h = h
        super().__init__(tspan, alg, sensealg, output, solve_kw)

        def f(u: Any, hist: Any, p: Any, t: float) -> Any:
            parts = [u] + [hist(p, t - tau) for tau in lags]
            return call_model(model, anp.concatenate(parts, axis=-1), p)

        self.f = f

    def init_params(self, seed: Any = None) -> np.ndarray:
        return init_params_of(self.model, seed)

    def __call__(self, x: Any, params: Any) -> Any:
        from ..problems import DDEProblem
        from ..solve import solve

        check_params(params, self.n_params, "NeuralDDE")
        self._check_state(x, self.n, "NeuralDDE")
        h = self.h
        if h is None:
            x0 = x

            def h(p: Any, t: float) -> Any:
                return x0

        prob = DDEProblem(self.f, x, h, self.tspan, params, constant_lags=self.lags)
        sol = solve(prob, self.alg, sensealg=self.sensealg, **self.solve_kw)
        return self._result(sol, x)

    def __repr__(self) -> str:
        return f"NeuralDDE({self.model!r}, tspan={self.tspan}, lags={self.lags})"


__all__ = ["ACTIVATIONS", "Layer", "Dense", "Chain", "NeuralODE", "NeuralSDE", "NeuralDDE",
           "check_params", "n_params_of"]
