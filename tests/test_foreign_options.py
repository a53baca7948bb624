"""Option names of DifferentialEquations.jl, SciPy, torchdiffeq and diffrax are refused with
ours named."""

from __future__ import annotations

import numpy as np
import pytest

import autodiffeq as ade


@pytest.mark.parametrize("name, ours", [("reltol", "rtol"), ("abstol", "atol"),
                                        ("t_eval", "saveat"), ("save_everystep", "saveat"),
                                        ("first_step", "dt"), ("max_steps", "maxiters"),
                                        ("adjoint", "sensealg")])
def test_foreign_option_names_suggest_ours(name, ours) -> None:
    prob = ade.ODEProblem(lambda u, p, t: -u, np.ones(1), (0.0, 1.0))
    with pytest.raises(ade.InvalidArgument, match=f"{name} -> {ours}") as err:
        ade.solve(prob, "Tsit5", **{name: 1})
    assert "stiffness_detection" in str(err.value) and "rtol" in str(err.value)
