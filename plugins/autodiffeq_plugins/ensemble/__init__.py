"""Ensemble executors: ``serial``, ``threads``, ``processes`` and ``dask`` (and
``vectorized``, all trajectories of a batch stepped together), registered as
:class:`~autodiffeq.EnsembleSpec` entries like any third-party executor would be.

Each executor's ``run(job, batches)`` yields, batch by batch and in order, the trajectories'
results (see :mod:`autodiffeq.ensemble`). Heavy imports (Dask) happen when an executor is
made, never when the catalogue is listed.
"""

from __future__ import annotations

from typing import Any

import autodiffeq as ade

from .pools import ProcessExecutor, ThreadExecutor
from .serial import SerialExecutor
from .vectorized import VectorizedExecutor


def _dask(**options: Any) -> Any:
    from .dask_executor import DaskExecutor

    return DaskExecutor(**options)


EXECUTORS = (
    ade.EnsembleSpec(
        name="serial", factory=SerialExecutor, traced=True,
        description="one trajectory after another in the calling thread (gradients flow)"),
    ade.EnsembleSpec(
        name="threads", factory=ThreadExecutor, options=("workers", "chunksize"),
        description="a thread pool (NumPy releases the GIL in large array operations)"),
    ade.EnsembleSpec(
        name="processes", factory=ProcessExecutor, options=("workers", "chunksize"),
        description="a process pool (the problem and functions must pickle)"),
    ade.EnsembleSpec(
        name="vectorized", factory=VectorizedExecutor, traced=True,
        description="all trajectories of a batch stepped together as one (B, n) array, each "
                    "with its own adaptive steps; f must take a batch (see the docs)"),
    ade.EnsembleSpec(
        name="dask", factory=_dask,
        options=("client", "workers", "chunksize", "inner"),
        description="batches as tasks on a dask.distributed cluster (client=..., or a "
                    "LocalCluster started and closed for the solve); extra 'dask'"),
)


@ade.hookimpl
def autodiffeq_register_ensembles(register: Any) -> None:
    for spec in EXECUTORS:
        register(spec)


__all__ = ["EXECUTORS", "SerialExecutor", "ThreadExecutor", "ProcessExecutor",
           "VectorizedExecutor"]
