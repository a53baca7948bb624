""":class:`~autodiffeq.nn.MLP` on any array-API library (CuPy, ``array_api_strict``).

The MLP's NumPy paths are written for speed on the CPU (in-place updates, BLAS into
preallocated buffers, cached views). When its state ``u`` is another library's array, the
same recursions (the equations in :mod:`autodiffeq.nn.mlp`) run here with only standard
operations of ``u``'s namespace, so a neural ODE keeps its state, its parameters and its
derivatives on the device: the forward pass, ``vjp`` (reverse mode), ``jvp`` and
``value_and_jvps`` (``k`` tangents as a leading axis, one matrix product per layer, without
the NumPy path's chunking of many directions).

``p`` (and ``dp``, ``dP``) must be arrays of the same library; a solve moves a host ``p`` to
the backend once (:func:`autodiffeq.backend.parameters_on_backend`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from autograd.tracer import Box

from ..validation import array_namespace_of

#: activation name -> (sigma(xp, z), sigma'(xp, z, h) with h = sigma(z)), standard operations
ACTIVATIONS_XP: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "tanh": (lambda xp, z: xp.tanh(z), lambda xp, z, h: 1.0 - h * h),
    "sigmoid": (lambda xp, z: 0.5 * (xp.tanh(0.5 * z) + 1.0), lambda xp, z, h: h * (1.0 - h)),
    "softplus": (lambda xp, z: xp.logaddexp(xp.zeros_like(z), z),
                 lambda xp, z, h: 0.5 * (xp.tanh(0.5 * z) + 1.0)),
    "relu": (lambda xp, z: xp.where(z > 0, z, xp.zeros_like(z)),
             lambda xp, z, h: xp.astype(z > 0, h.dtype)),
    "identity": (lambda xp, z: z, lambda xp, z, h: xp.ones_like(h)),
}


def foreign_namespace(u: Any) -> Any:
    """The array namespace of ``u`` when it is neither NumPy data nor an autograd box (the
    NumPy paths take those), else ``None``."""
    if isinstance(u, (np.ndarray, np.generic, Box, float, int, list, tuple)):
        return None
    return array_namespace_of(u)


def _layers(mlp: Any, xp: Any, p: Any, what: str = "parameters") -> list[tuple[Any, Any]]:
    flat = xp.reshape(p, (-1,))
    if flat.shape[0] != mlp.n_params:
        raise ValueError(f"expected {mlp.n_params} {what}, got {flat.shape[0]}")
    return [(xp.reshape(flat[w0:w1], (n_a, n_b)), flat[w1:b1])
            for w0, w1, b1, n_a, n_b in mlp._slices]


def _input(mlp: Any, u: Any) -> Any:
    return u if mlp._identity_input else mlp._g(u)


def forward(mlp: Any, xp: Any, u: Any, p: Any) -> Any:
    """``f(u, p)``: ``h_0 = g(u)``, ``z_l = h_{l-1} W_l + b_l``, ``h_l = sigma(z_l)``."""
    sigma = ACTIVATIONS_XP[mlp.activation][0]
    layers = _layers(mlp, xp, p)
    h = _input(mlp, u)
    for W, b in layers[:-1]:
        h = sigma(xp, h @ W + b)
    W, b = layers[-1]
    return h @ W + b


def vjp(mlp: Any, xp: Any, v: Any, u: Any, p: Any) -> tuple[Any, Any]:
    """``(v^T df/du, v^T df/dp)``: the backward recursion of :mod:`autodiffeq.nn.mlp`."""
    sigma, dsigma = ACTIVATIONS_XP[mlp.activation]
    layers = _layers(mlp, xp, p)
    hs = [_input(mlp, u)]
    zs = []
    for W, b in layers[:-1]:
        zs.append(hs[-1] @ W + b)
        hs.append(sigma(xp, zs[-1]))
    batched = u.ndim == 2
    grads: list[tuple[Any, Any]] = []
    delta = v
    for li in range(len(layers) - 1, -1, -1):
        W = layers[li][0]
        h = hs[li]
        if batched:
            grads.append((xp.matrix_transpose(h) @ delta, xp.sum(delta, axis=0)))
            delta = delta @ xp.matrix_transpose(W)
        else:
            grads.append((h[:, None] * delta[None, :], delta))
            delta = W @ delta
        if li > 0:
            delta = delta * dsigma(xp, zs[li - 1], hs[li])
    if not mlp._identity_input:
        delta = delta * mlp._dg(u)
    gp = xp.concat([xp.reshape(x, (-1,)) for gW, gb in reversed(grads) for x in (gW, gb)])
    return delta, gp


def value_and_jvps(mlp: Any, xp: Any, dU: Any, dP: Any, u: Any, p: Any) -> tuple[Any, Any]:
    """``(f, [df/du dU_j + df/dp dP_j]_j)`` for ``k`` tangents, ``dU`` ``(k, *u.shape)``
    and ``dP`` ``(k, n_params)`` (either may be ``None``): the tangents are a leading axis
    that the matrix products broadcast over."""
    if dU is None and dP is None:
        raise ValueError("value_and_jvps needs dU or dP")
    sigma, dsigma = ACTIVATIONS_XP[mlp.activation]
    layers = _layers(mlp, xp, p)
    lead = tuple(u.shape[:-1])
    k = (dU if dU is not None else dP).shape[0]
    if dU is not None and tuple(dU.shape[1:]) != tuple(u.shape):
        raise ValueError(f"dU must be (k, *{tuple(u.shape)}), got {tuple(dU.shape)}")
    if dU is not None and dP is not None and dP.shape[0] != k:
        raise ValueError(
            f"dU and dP must hold the same number of tangents, got {k} and {dP.shape[0]}")
    if dP is not None and (dP.ndim != 2 or dP.shape[1] != mlp.n_params):
        raise ValueError(f"dP must be (k, {mlp.n_params}), got {tuple(dP.shape)}")
    h = _input(mlp, u)
    dh = None
    if dU is not None:
        dh = dU if mlp._identity_input else mlp._dg(u) * dU
    ones = (1,) * len(lead)
    last = len(layers) - 1
    for li, (W, b) in enumerate(layers):
        w0, w1, b1, n_a, n_b = mlp._slices[li]
        z = h @ W + b
        dz = None if dh is None else dh @ W
        if dP is not None:
            dW = xp.reshape(dP[:, w0:w1], (k, n_a, n_b))
            db = xp.reshape(dP[:, w1:b1], (k, *ones, n_b))
            if lead:  # (1, *lead, n_a) @ (k, 1.., n_a, n_b): the tangents broadcast
                dW = xp.reshape(dW, (k, *ones[1:], n_a, n_b))
                dz_p = xp.reshape(h, (1, *lead, n_a)) @ dW + db
            else:
                dz_p = h @ dW + db
            dz = dz_p if dz is None else dz + dz_p
        if li == last:
            return z, dz
        h = sigma(xp, z)
        dz = dz * dsigma(xp, z, h)
        dh = dz
    raise AssertionError("unreachable: an MLP has at least one layer")


def jvp(mlp: Any, xp: Any, du: Any, dp: Any, u: Any, p: Any) -> Any:
    """``df/du du + df/dp dp`` (either may be ``None``), shaped like ``f``."""
    if du is None and dp is None:
        return xp.zeros_like(forward(mlp, xp, u, p))
    dU = None if du is None else du[None, ...]
    dP = None if dp is None else xp.reshape(dp, (1, mlp.n_params))
    return value_and_jvps(mlp, xp, dU, dP, u, p)[1][0, ...]
