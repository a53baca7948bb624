"""Small neural networks that carry their own derivatives (docs/gradients.md).

A :class:`MLP` is a right-hand side ``f(u, p, t)`` whose parameters are **one flat array**
``p``, so that ``autograd.grad`` with respect to ``p`` works through :func:`autodiffeq.solve`
like for any other problem. Its forward pass is written with ``autograd.numpy`` (autograd can
trace it, which :class:`~autodiffeq.sensitivity.ReverseMode` and ``ForwardMode`` need), and it
has hand-derived vector-Jacobian and Jacobian-vector products in plain NumPy (matrix products,
no tape): :class:`~autodiffeq.rhs_derivatives.RHSDerivatives` finds ``f.vjp`` / ``f.jvp`` on
the model and prefers them to autograd, which is what makes the adjoint methods fast on neural
ODEs.

The network, for sizes ``(n_0, n_1, ..., n_L)``, input transform ``g`` and activation
``sigma`` (applied elementwise on every hidden layer; the last layer is linear)::

    h_0 = g(u)                                   (n_0,) or batched (B, n_0)
    z_l = h_{l-1} W_l + b_l,   W_l: (n_{l-1}, n_l),   b_l: (n_l,)
    h_l = sigma(z_l)           l = 1 .. L-1
    f   = z_L

Reverse mode (``vjp(v, u, p, t)``), with ``delta_L = v``::

    dL/dW_l = h_{l-1}^T delta_l,      dL/db_l = sum over the batch of delta_l,
    delta_{l-1} = (delta_l W_l^T) * sigma'(z_{l-1})        l = L .. 2,
    v^T df/du   = (delta_1 W_1^T) * g'(u).

Forward mode (``jvp(du, dp, u, p, t)``), with ``dh_0 = g'(u) * du``::

    dz_l = dh_{l-1} W_l + h_{l-1} dW_l + db_l,   dh_l = sigma'(z_l) * dz_l,   df = dz_L.

``value_and_jvps(dU, dP, u, p, t)`` runs the same recursion for ``k`` tangents at once (a
leading axis on ``dh_l`` and ``dz_l``) next to one forward pass, and returns ``f`` too: what
:class:`~autodiffeq.sensitivity` forward methods need per stage (``f`` and ``J S + F_p E``).

``p`` is laid out layer by layer: ``W_1`` (row-major), ``b_1``, ``W_2``, ``b_2``, ...

On another array-API library (CuPy, ``array_api_strict``: ``u`` one of its arrays, ``p`` too)
the forward pass and every product run in that library, by :mod:`.mlp_array_api`.

Example::

    import autodiffeq as ade
    from autodiffeq.nn import MLP

    mlp = MLP((2, 50, 2), activation="tanh", input_transform="cube")
    p0 = mlp.init(seed=0)
    prob = ade.ODEProblem(mlp, [2.0, 0.0], (0.0, 1.5), p0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import autograd.numpy as anp
import numpy as np
from autograd.tracer import Box

from . import mlp_array_api

__all__ = ["ACTIVATIONS", "INPUT_TRANSFORMS", "MLP", "TANGENT_CHUNK_ELEMENTS"]

#: :meth:`MLP.value_and_jvps` processes directions in chunks whose tangent arrays (directions
#: x batch x widest layer) have at most this many entries (16 MiB of float64)
TANGENT_CHUNK_ELEMENTS = 2**21


def _sigmoid(z: Any) -> Any:
    return 0.5 * (anp.tanh(0.5 * z) + 1.0)


def _softplus(z: Any) -> Any:
    return anp.logaddexp(0.0, z)


def _relu(z: Any) -> Any:
    return anp.maximum(z, 0.0)


def _identity(z: Any) -> Any:
    return z


#: activation name -> (sigma, traceable by autograd; sigma'(z, h) in NumPy, h = sigma(z))
ACTIVATIONS: dict[str, tuple[Callable[[Any], Any], Callable[[Any, Any], Any]]] = {
    "tanh": (anp.tanh, lambda z, h: 1.0 - h * h),
    "sigmoid": (_sigmoid, lambda z, h: h * (1.0 - h)),
    "softplus": (_softplus, lambda z, h: 0.5 * (np.tanh(0.5 * z) + 1.0)),
    "relu": (_relu, lambda z, h: (z > 0).astype(h.dtype)),
    "identity": (_identity, lambda z, h: np.ones_like(h)),
}

#: input transform name -> (g (traceable by autograd), g'(u) in NumPy), elementwise
INPUT_TRANSFORMS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "identity": (_identity, lambda u: np.ones_like(u)),
    "cube": (lambda u: u**3, lambda u: 3.0 * u * u),
    "square": (lambda u: u**2, lambda u: 2.0 * u),
}


class MLP:
    """A fully connected network ``f(u, p, t)`` with flat parameters and its own derivatives.

    Args:
        sizes: layer widths ``(n_in, hidden..., n_out)``, at least two entries.
        activation: hidden-layer nonlinearity, a key of :data:`ACTIVATIONS` (``"tanh"``,
            ``"sigmoid"``, ``"softplus"``, ``"relu"``, ``"identity"``); the output layer is
            linear.
        input_transform: elementwise map applied to ``u`` before the first layer: ``None``
            (identity), a key of :data:`INPUT_TRANSFORMS` (``"cube"`` gives ``u**3`` as in the
            spiral example of Rackauckas et al.), or a pair ``(g, dg)`` of an autograd-traceable
            ``g`` and its elementwise derivative ``dg`` in NumPy.

    The state ``u`` may be one vector ``(n_in,)`` or a batch ``(B, n_in)`` (then ``f`` is
    ``(B, n_out)``); ``t`` is ignored (the network is autonomous). Methods:
    :meth:`init` (random parameters), :meth:`__call__` (the forward pass), :meth:`vjp`,
    :meth:`jvp`, :meth:`unflatten` and :meth:`flatten`.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "tanh",
        input_transform: str | tuple[Callable[[Any], Any], Callable[[Any], Any]] | None = None,
    ) -> None:
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) < 2 or any(s < 1 for s in sizes):
            raise ValueError(f"sizes must be at least two positive widths, got {sizes}")
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}"
            )
        if input_transform is None:
            input_transform = "identity"
        if isinstance(input_transform, str):
            if input_transform not in INPUT_TRANSFORMS:
                raise ValueError(
                    f"unknown input_transform {input_transform!r}; choose one of "
                    f"{sorted(INPUT_TRANSFORMS)} or pass a pair (g, dg)"
                )
            self._g, self._dg = INPUT_TRANSFORMS[input_transform]
            self.input_transform: str = input_transform
            self._identity_input = input_transform == "identity"
        else:
            g, dg = input_transform
            if not (callable(g) and callable(dg)):
                raise ValueError("input_transform must be a name or a pair of callables (g, dg)")
            self._g, self._dg = g, dg
            self.input_transform = getattr(g, "__name__", "custom")
            self._identity_input = False
        self.sizes = sizes
        self.activation = activation
        self._sigma, self._dsigma = ACTIVATIONS[activation]
        self._sigma_np = np.tanh if activation == "tanh" else self._sigma
        # (start of W, end of W = start of b, end of b, fan-in, fan-out) for every layer
        self._slices: list[tuple[int, int, int, int, int]] = []
        offset = 0
        for n_a, n_b in zip(sizes[:-1], sizes[1:], strict=True):
            w_end = offset + n_a * n_b
            self._slices.append((offset, w_end, w_end + n_b, n_a, n_b))
            offset = w_end + n_b
        self.n_params = offset
        self._max_width = max(sizes)
        # (p, its layer views): one attribute, so that a thread never sees a mismatched pair
        self._cache: tuple[Any, list[tuple[np.ndarray, np.ndarray]]] = (None, [])
        self._tangent_cache: tuple[Any, tuple[int, int], list] = (None, (0, 0), [])

    def __repr__(self) -> str:
        return (
            f"MLP(sizes={self.sizes}, activation={self.activation!r}, "
            f"input_transform={self.input_transform!r}, n_params={self.n_params})"
        )

    # ------------------------------------------------------------------ parameters
    def init(self, seed: int | np.random.Generator | None = None, scale: float = 1.0) -> np.ndarray:
        """Random parameters: Glorot-uniform weights (``U(-a, a)``, ``a = scale *
        sqrt(6 / (fan_in + fan_out))``) and zero biases, as a flat float64 array."""
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        p = np.zeros(self.n_params)
        for w0, w1, _b1, n_a, n_b in self._slices:
            a = scale * np.sqrt(6.0 / (n_a + n_b))
            p[w0:w1] = rng.uniform(-a, a, size=n_a * n_b)
        return p

    def init_params(self, seed: int | np.random.Generator | None = None,
                    scale: float = 1.0) -> np.ndarray:
        """:meth:`init` under the name every :mod:`autodiffeq.nn` layer uses."""
        return self.init(seed, scale)

    def unflatten(self, p: Any) -> list[tuple[Any, Any]]:
        """The layers ``[(W_1, b_1), ..., (W_L, b_L)]`` of flat ``p`` (views where possible;
        works on autograd boxes too)."""
        p = anp.reshape(p, (-1,))
        if p.shape[0] != self.n_params:
            raise ValueError(f"expected {self.n_params} parameters, got {p.shape[0]}")
        return [
            (anp.reshape(p[w0:w1], (n_a, n_b)), p[w1:b1]) for w0, w1, b1, n_a, n_b in self._slices
        ]

    def _layers_np(self, p: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`unflatten` for plain arrays (views, no autograd dispatch).

        The views of the last C-contiguous float64 array are kept: they stay valid when that
        array is changed in place, and a solve passes the same ``p`` to every call.
        """
        cache = self._cache
        if p is cache[0]:
            return cache[1]
        flat = np.asarray(p, dtype=np.float64).reshape(-1)
        if flat.shape[0] != self.n_params:
            raise ValueError(f"expected {self.n_params} parameters, got {flat.shape[0]}")
        layers = [
            (flat[w0:w1].reshape(n_a, n_b), flat[w1:b1]) for w0, w1, b1, n_a, n_b in self._slices
        ]
        if isinstance(p, np.ndarray) and p.dtype == np.float64 and p.flags.c_contiguous:
            self._cache = (p, layers)
        return layers

    def _dp_layers(self, dp: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        """Layer views of a tangent ``dp`` (not cached)."""
        flat = np.asarray(dp, dtype=np.float64).reshape(-1)
        if flat.shape[0] != self.n_params:
            raise ValueError(f"expected {self.n_params} parameter tangents, got {flat.shape[0]}")
        return [
            (flat[w0:w1].reshape(n_a, n_b), flat[w1:b1]) for w0, w1, b1, n_a, n_b in self._slices
        ]

    def flatten(self, layers: Sequence[tuple[Any, Any]]) -> np.ndarray:
        """Inverse of :meth:`unflatten`: one flat array from ``[(W_l, b_l), ...]``."""
        if len(layers) != len(self._slices):
            raise ValueError(f"expected {len(self._slices)} layers, got {len(layers)}")
        parts = []
        for (W, b), (_w0, _w1, _b1, n_a, n_b) in zip(layers, self._slices, strict=True):
            W, b = np.asarray(W, dtype=np.float64), np.asarray(b, dtype=np.float64)
            if W.shape != (n_a, n_b) or b.shape != (n_b,):
                raise ValueError(f"layer shapes {W.shape}, {b.shape}; expected {(n_a, n_b)}")
            parts += [W.reshape(-1), b]
        return np.concatenate(parts)

    # ------------------------------------------------------------------ forward pass
    def __call__(self, u: Any, p: Any, t: Any = None) -> Any:
        """``f(u, p, t)``: the network at ``u`` ((n_in,) or (B, n_in)); traceable by autograd
        in both ``u`` and ``p``."""
        if not (isinstance(u, Box) or isinstance(p, Box)):
            xp = mlp_array_api.foreign_namespace(u)
            if xp is not None:  # CuPy, array_api_strict, ...: standard operations only
                return mlp_array_api.forward(self, xp, u, p)
            return self._call_np(np.asarray(u), p)
        h = self._g(u)
        layers = self.unflatten(p)
        last = len(layers) - 1
        for i, (W, b) in enumerate(layers):
            z = anp.dot(h, W) + b
            h = z if i == last else self._sigma(z)
        return h

    def _call_np(self, u: np.ndarray, p: Any) -> np.ndarray:
        """The forward pass on plain arrays, without autograd's dispatch (the solver's
        right-hand side calls when nothing is traced)."""
        h = u if self._identity_input else self._g(u)
        layers = self._layers_np(p)
        for W, b in layers[:-1]:
            h = self._sigma_np(np.dot(h, W) + b)
        W, b = layers[-1]
        return np.dot(h, W) + b

    def _forward(self, u: np.ndarray, layers: list[tuple[Any, Any]]) -> tuple[list, list]:
        """Plain-NumPy forward pass keeping the layer inputs ``h_{l-1}`` and the
        pre-activations ``z_l`` of the hidden layers."""
        hs = [u if self._identity_input else self._g(u)]
        zs = []
        for W, b in layers[:-1]:
            z = np.dot(hs[-1], W) + b
            zs.append(z)
            hs.append(self._sigma_np(z))
        return hs, zs

    # ------------------------------------------------------------------ derivatives
    def vjp(self, v: Any, u: Any, p: Any, t: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """``(v^T df/du, v^T df/dp)`` at ``(u, p)``: the first shaped like ``u``, the second
        flat like ``p`` (plain NumPy, one forward and one backward pass; another array-API
        library's arrays stay in it)."""
        xp = mlp_array_api.foreign_namespace(u)
        if xp is not None:
            return mlp_array_api.vjp(self, xp, v, u, p)
        u = np.asarray(u, dtype=np.float64)
        v = np.asarray(v, dtype=np.float64)
        if u.ndim == 2 and u.shape[0] == 1:  # a batch of one: the cheaper unbatched products
            gu, gp = self.vjp(v[0], u[0], p, t)
            return gu[None, :], gp
        layers = self._layers_np(p)
        hs, zs = self._forward(u, layers)
        gp = np.empty(self.n_params)
        batched = u.ndim == 2
        tanh = self.activation == "tanh"
        delta = v
        for li in range(len(layers) - 1, -1, -1):
            W = layers[li][0]
            w0, w1, b1, n_a, n_b = self._slices[li]
            h = hs[li]
            gW = gp[w0:w1].reshape(n_a, n_b)
            if batched:
                np.dot(h.T, delta, out=gW)
                np.add.reduce(delta, axis=0, out=gp[w1:b1])
                delta = np.dot(delta, W.T)
            else:  # np.dot (BLAS) is much faster than np.multiply.outer for thin outputs
                np.dot(h[:, None], delta[None, :], out=gW)
                gp[w1:b1] = delta
                delta = np.dot(W, delta)
            if li > 0:
                h = hs[li]
                if tanh:  # sigma' = 1 - h^2, in place
                    d = h * h
                    np.subtract(1.0, d, out=d)
                    delta *= d
                else:
                    delta *= self._dsigma(zs[li - 1], h)
        if not self._identity_input:
            delta *= self._dg(u)
        return delta, gp

    def value_and_jvps(
        self, dU: Any, dP: Any, u: Any, p: Any, t: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(f(u, p), [df/du dU_j + df/dp dP_j]_j)`` for ``k`` tangents in one pass.

        ``dU`` is ``(k, *u.shape)`` and ``dP`` is ``(k, n_params)``; either may be ``None``
        (zero), not both. The products are ``(k, *f.shape)``. Plain NumPy: the tangents ride
        along the forward pass as a leading axis (matrix products over the stacked
        directions, no loop over them), in chunks of directions whose per-layer tangent
        arrays stay under :data:`TANGENT_CHUNK_ELEMENTS` entries (bounded memory for many
        directions on a large batch).
        """
        if dU is None and dP is None:
            raise ValueError("value_and_jvps needs dU or dP")
        xp = mlp_array_api.foreign_namespace(u)
        if xp is not None:
            return mlp_array_api.value_and_jvps(self, xp, dU, dP, u, p)
        if type(u) is not np.ndarray or u.dtype != np.float64:
            u = np.asarray(u, dtype=np.float64)
        lead = u.shape[:-1]  # the state's batch axes: () or (B,)
        if dU is not None:
            if type(dU) is not np.ndarray or dU.dtype != np.float64:
                dU = np.asarray(dU, dtype=np.float64)
            if dU.shape[1:] != u.shape:
                raise ValueError(f"dU must be (k, *{u.shape}), got {dU.shape}")
        k = (dU if dU is not None else dP).shape[0]
        if dU is not None and dP is not None and np.shape(dP)[0] != k:
            raise ValueError(
                f"dU and dP must hold the same number of tangents, got {k} and {np.shape(dP)[0]}"
            )
        per_direction = self._max_width * (math.prod(lead) if lead else 1)
        chunk = max(1, TANGENT_CHUNK_ELEMENTS // per_direction)
        chunks = self._tangent_layers(dP, len(lead), chunk) if dP is not None else None
        if k <= chunk:
            return self._jvps_pass(u, p, dU, None if chunks is None else chunks[0], k, lead)
        out = np.empty((k, *lead, self.sizes[-1]))
        for c, c0 in enumerate(range(0, k, chunk)):
            c1 = min(c0 + chunk, k)
            f, out[c0:c1] = self._jvps_pass(
                u, p, None if dU is None else dU[c0:c1],
                None if chunks is None else chunks[c], c1 - c0, lead,
            )
        return f, out

    def _jvps_pass(
        self, u: np.ndarray, p: Any, dU: Any, d_layers: Any, k: int, lead: tuple[int, ...]
    ) -> tuple[np.ndarray, np.ndarray]:
        """One forward pass with ``k`` stacked tangents (:meth:`value_and_jvps`)."""
        layers = self._layers_np(p)
        h = u if self._identity_input else self._g(u)
        dh = None
        if dU is not None:
            dh = dU if self._identity_input else self._dg(u) * dU
        tanh = self.activation == "tanh"
        last = len(layers) - 1
        for li, (W, b) in enumerate(layers):
            n_a, n_b = W.shape
            z = np.dot(h, W)
            z += b
            dz = None
            if dh is not None:  # (k, *lead, n_a) @ W as one 2-D product
                dz = np.dot(dh, W) if not lead else (
                    np.dot(dh.reshape(-1, n_a), W).reshape(k, *lead, n_b)
                )
            if d_layers is not None:
                dW, db = d_layers[li]  # (n_a, k n_b), (k, *1s, n_b)
                hw = np.dot(h, dW)  # h dW_j for every j, one product
                dz_p = np.moveaxis(hw.reshape(*lead, k, n_b), -2, 0) if lead else (
                    hw.reshape(k, n_b)
                )
                # in place: a chained ``a + b + c`` with a broadcast operand measured 10x
                # slower (NumPy's temporary elision) on (k, B, n_b) arrays
                if dz is None:
                    dz = dz_p + db
                else:
                    dz += dz_p
                    dz += db
            if li == last:
                return z, dz
            h = self._sigma_np(z)
            if tanh:  # sigma' = 1 - h^2
                d = h * h
                np.subtract(1.0, d, out=d)
                dz *= d
            else:
                dz *= self._dsigma(z, h)
            dh = dz
        raise AssertionError("unreachable: an MLP has at least one layer")

    def _tangent_layers(
        self, dP: Any, batch_dims: int, chunk: int
    ) -> list[list[tuple[np.ndarray, np.ndarray]]]:
        """``dP`` (k, n_params), in chunks of ``chunk`` directions, as per-layer ``(dW, db)``:
        ``dW`` laid out ``(n_a, k n_b)`` so that ``h dW_j`` for all ``j`` is one matrix
        product, ``db`` as ``(k, n_b)`` with ``batch_dims`` unit axes before ``n_b`` (to
        broadcast over a batch of states). Those of the last ``dP`` are kept when it is a
        read-only array (it cannot change under the cache): forward sensitivities pass the
        same constant, read-only directions at every stage."""
        cache = self._tangent_cache
        if cache[0] is dP and cache[1] == (batch_dims, chunk):
            return cache[2]
        flat = np.asarray(dP, dtype=np.float64)
        k = flat.shape[0]
        flat = flat.reshape(k, -1)
        if flat.shape[1] != self.n_params:
            raise ValueError(f"dP must be (k, {self.n_params}), got {np.shape(dP)}")
        ones = (1,) * batch_dims
        out = []
        for c0 in range(0, k, chunk):
            part = flat[c0:c0 + chunk]
            m = part.shape[0]
            out.append([
                (
                    np.ascontiguousarray(
                        part[:, w0:w1].reshape(m, n_a, n_b).transpose(1, 0, 2)
                    ).reshape(n_a, m * n_b),
                    np.ascontiguousarray(part[:, w1:b1]).reshape(m, *ones, n_b),
                )
                for w0, w1, b1, n_a, n_b in self._slices
            ])
        if isinstance(dP, np.ndarray) and not dP.flags.writeable:
            self._tangent_cache = (dP, (batch_dims, chunk), out)
        return out

    def jvp(self, du: Any, dp: Any, u: Any, p: Any, t: Any = None) -> np.ndarray:
        """``df/du du + df/dp dp`` at ``(u, p)``, shaped like ``f``; ``du`` or ``dp`` may be
        ``None`` (zero). Plain NumPy, one forward pass with tangents."""
        xp = mlp_array_api.foreign_namespace(u)
        if xp is not None:
            return mlp_array_api.jvp(self, xp, du, dp, u, p)
        u = np.asarray(u, dtype=np.float64)
        layers = self._layers_np(p)
        d_layers = None if dp is None else self._dp_layers(dp)
        h = u if self._identity_input else self._g(u)
        dh = None
        if du is not None:
            du = np.asarray(du, dtype=np.float64)
            dh = du if self._identity_input else self._dg(u) * du
        last = len(layers) - 1
        for li, (W, b) in enumerate(layers):
            z = np.dot(h, W) + b
            dz = None if dh is None else np.dot(dh, W)
            if d_layers is not None:
                dW, db = d_layers[li]
                dz_p = np.dot(h, dW) + db
                dz = dz_p if dz is None else dz + dz_p
            if li == last:
                h = z
                dh = dz
            else:
                h = self._sigma_np(z)
                dh = None if dz is None else self._dsigma(z, h) * dz
        if dh is None:
            return np.zeros_like(h)
        return dh
