"""What the forward sensitivities of the other problem types (delay and stochastic equations)
share with each other: the tolerances of the augmented state ``[u, S_1, ..., S_k]`` and the
record made from its solve."""

from __future__ import annotations

from typing import Any

import numpy as np

from autodiffeq.sensitivity import ForwardRecord, GradientRequest


def tiled_tolerances(request: GradientRequest, shape: tuple[int, ...], k: int
                     ) -> dict[str, Any]:
    """``rtol``/``atol`` arrays of the state's shape repeated for every sensitivity block
    (scalars stay as they are, and are not returned)."""
    out = {}
    for name in ("rtol", "atol"):
        value = request.solve_options.get(name)
        if value is not None and np.ndim(value) > 0:
            flat = np.broadcast_to(np.asarray(value, dtype=np.float64), shape).reshape(-1)
            out[name] = np.tile(flat, k + 1)
    return out


def sensitivity_record(request: GradientRequest, sol: Any, n: int, k: int, n_u0: int,
                       augmented: tuple[Any, dict[str, Any]], save_index: Any,
                       **extra: Any) -> ForwardRecord:
    """The ForwardSensitivity record of a solve of ``[u, S_1, ..., S_k]`` (``extra`` as the
    ODE path keeps it: ``st`` the saved sensitivities ``(nsave, k, n)``, ``n_u0``, ``k``)."""
    xp = request.backend.xp
    ts = np.asarray(sol.t, dtype=np.float64)
    ys = xp.reshape(sol.u, (len(ts), n * (k + 1)))
    index = save_index(request, ts)
    saved = xp.take(ys, xp.asarray(index), axis=0)
    st = xp.reshape(saved[:, n:], (len(index), k, n))
    s_init = np.zeros((k, n))
    s_init[:n_u0, :] = np.eye(n_u0, n)
    return ForwardRecord(sol, ts, ys[:, :n], index,
                         {"st": st, "n_u0": n_u0, "k": k, "s_init": s_init,
                          "augmented": augmented, "events": [], "event_sensitivities": [],
                          **extra})
