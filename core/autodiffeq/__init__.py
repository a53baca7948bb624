"""autodiffeq: differential-equation solvers as differentiable layers.

A small core (problems, solution, registry, configuration, the integration driver and the
gradient interface) plus plugins that contribute solver families, array backends and
sensitivity methods through pluggy. Importing this package defines things and nothing else:
no plugin (and none of CuPy, Dask, matplotlib or tqdm) is imported until it is used.
"""

from __future__ import annotations

from .backend import Backend
from .brownian import BrownianPath
from .callbacks import CallbackSet, ContinuousCallback, DiscreteCallback
from .config import config_context, get_config, set_config
from .controller import (
    Controller,
    ErrorNorm,
    PIController,
    PredictiveController,
    WeightedRMSNorm,
)
from .dae import consistent_initial_state
from .ensemble import EnsembleProblem, EnsembleSolution, trajectory_seed
from .errors import (
    AutodiffeqError,
    BackendUnavailable,
    DenseOutputError,
    DuplicateName,
    InvalidArgument,
    InvalidType,
    PluginError,
    ShapeMismatch,
    UnknownName,
    UnsupportedCombination,
)
from .hookspecs import hookimpl, hookspec
from .local_sensitivity import LocalSensitivities, local_sensitivities
from .problems import DDEProblem, ODEProblem, SDEProblem
from .registry import Compatibility, PluginLoadWarning, Registry, registry
from .replay import ReplayWarning
from .rhs_derivatives import DerivativeWarning, RHSDerivatives
from .sensitivity import (
    ForwardRecord,
    GradientRequest,
    SensitivityMethod,
    sensitivity_method,
)
from .solution import Solution, Stats
from .solve import SolverWarning, StiffnessWarning, solve
from .specs import (
    BackendSpec,
    EnsembleSpec,
    ProblemTypeSpec,
    Requirement,
    SensitivitySpec,
    SolverSpec,
)
from .stepper import RHS, Stepper
from .validation import array_namespace

__version__ = "0.1.0"

__all__ = [
    "array_namespace",
    "BrownianPath",
    "EnsembleProblem",
    "EnsembleSolution",
    "trajectory_seed",
    "SDEProblem",
    "AutodiffeqError",
    "Backend",
    "BackendSpec",
    "BackendUnavailable",
    "CallbackSet",
    "ContinuousCallback",
    "Controller",
    "DiscreteCallback",
    "ErrorNorm",
    "PIController",
    "PredictiveController",
    "ProblemTypeSpec",
    "Requirement",
    "WeightedRMSNorm",
    "Compatibility",
    "DenseOutputError",
    "DerivativeWarning",
    "ReplayWarning",
    "ForwardRecord",
    "GradientRequest",
    "DuplicateName",
    "EnsembleSpec",
    "InvalidArgument",
    "InvalidType",
    "LocalSensitivities",
    "DDEProblem",
    "ODEProblem",
    "PluginError",
    "PluginLoadWarning",
    "RHS",
    "RHSDerivatives",
    "Registry",
    "SensitivityMethod",
    "SensitivitySpec",
    "ShapeMismatch",
    "Solution",
    "SolverSpec",
    "SolverWarning",
    "Stats",
    "Stepper",
    "StiffnessWarning",
    "UnknownName",
    "UnsupportedCombination",
    "config_context",
    "consistent_initial_state",
    "get_config",
    "hookimpl",
    "hookspec",
    "local_sensitivities",
    "registry",
    "sensitivity_method",
    "set_config",
    "solve",
]


def __getattr__(name: str) -> object:
    """Problem classes that plugins register (``ade.SDEProblem`` from an SDE plugin, ...) are
    attributes of the package too, looked up in the default registry on first use, so a new
    problem type needs no change here; ``ade.nn`` imports the neural-network subpackage."""
    if name == "nn":  # the neural-network subpackage, imported on first use
        import importlib

        return importlib.import_module(".nn", __name__)
    if name.endswith("Problem") and not name.startswith("_"):
        for spec in registry().problem_types():
            if spec.problem_class.__name__ == name:
                return spec.problem_class
    raise AttributeError(f"module 'autodiffeq' has no attribute {name!r}")
