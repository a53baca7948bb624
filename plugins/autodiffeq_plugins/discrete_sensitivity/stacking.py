"""Stacking the saved states of a replay in chunks.

autograd's forward-mode rule for ``stack``/``concatenate`` builds, for each of the ``k``
inputs, a full-size result with zeros for the others: ``O(k^2)`` work, which made
``ForwardMode`` quadratic in the number of saved states (1000 saved steps of a 2-state ODE:
10 s). Stacking in chunks of ``sqrt(k)`` rows and then the chunks costs ``O(k^1.5)``, the
same values.
"""

from __future__ import annotations

import math
from typing import Any


def stack_rows(rows: list[Any]) -> Any:
    """``autograd.numpy.stack(rows)``, in chunks of about ``sqrt(len(rows))`` rows."""
    import autograd.numpy as anp

    k = len(rows)
    if k <= 64:
        return anp.stack(rows)
    size = math.isqrt(k - 1) + 1
    return anp.concatenate([anp.stack(rows[i:i + size]) for i in range(0, k, size)])
