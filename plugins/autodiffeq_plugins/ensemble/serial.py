"""The serial executor: trajectories one after another in the calling thread."""

from __future__ import annotations

from collections.abc import Iterator

from autodiffeq.ensemble import EnsembleJob, TrajectoryResult, run_batch


class SerialExecutor:
    """Solve each batch's trajectories in order, here (so autograd can differentiate a loss
    over the ensemble through each trajectory's sensitivity method)."""

    def run(self, job: EnsembleJob, batches: list[list[int]]
            ) -> Iterator[list[TrajectoryResult]]:
        for batch in batches:
            yield run_batch(job, batch)

    def __repr__(self) -> str:
        return "SerialExecutor()"


__all__ = ["SerialExecutor"]
