"""``autodiffeq.nn``: neural-network models for differential equations.

A separate subpackage, not part of the minimal core: nothing in the core imports it. Its models
are ordinary right-hand sides ``f(u, p, t)``; what makes them fast is that they *carry their own
derivatives* (``f.vjp``, ``f.jvp``, ``f.value_and_jvps``), which the core's derivative layer
(:class:`~autodiffeq.rhs_derivatives.RHSDerivatives`) looks for on any ``f`` by duck typing, so
a third-party model can do the same without importing this package.

- :class:`MLP` (:mod:`autodiffeq.nn.mlp`): a multilayer perceptron with hand-derived
  vector-Jacobian and Jacobian-vector products.
- Layers (:mod:`autodiffeq.nn.layers`): :class:`Dense`, :class:`Chain` and the
  differential-equation layers :class:`NeuralODE`, :class:`NeuralSDE`, :class:`NeuralDDE`:
  callables ``layer(x, params)`` with flat parameters, differentiable with autograd.
"""

from __future__ import annotations

from .layers import Chain, Dense, Layer, NeuralDDE, NeuralODE, NeuralSDE
from .mlp import ACTIVATIONS, INPUT_TRANSFORMS, MLP, TANGENT_CHUNK_ELEMENTS

__all__ = ["ACTIVATIONS", "INPUT_TRANSFORMS", "MLP", "TANGENT_CHUNK_ELEMENTS", "Layer",
           "Dense", "Chain", "NeuralODE", "NeuralSDE", "NeuralDDE"]
