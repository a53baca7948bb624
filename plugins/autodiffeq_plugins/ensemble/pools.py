"""Thread and process pools: each batch cut into chunks of trajectories, one task each, the
results put back in trajectory order.

``chunksize`` (default: the batch over four times the workers, so that uneven trajectories
balance) trades scheduling overhead against balance. Processes need the job to pickle:
the problem's functions, ``prob_func`` and ``output_func`` must be importable module-level
functions (not lambdas or closures); the error says which part did not pickle.
"""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from autodiffeq.ensemble import EnsembleJob, TrajectoryResult, run_batch
from autodiffeq.errors import InvalidArgument, InvalidType


def check_workers(workers: Any) -> int:
    """``workers``: a positive integer, or ``None`` for the machine's CPU count."""
    if workers is None:
        return max(1, os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InvalidArgument(f"workers must be a positive integer or None, got {workers!r}")
    return workers


def check_chunksize(chunksize: Any) -> int | None:
    if chunksize is None:
        return None
    if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
        raise InvalidArgument(
            f"chunksize must be a positive integer or None, got {chunksize!r}")
    return chunksize


def chunks(batch: list[int], workers: int, chunksize: int | None) -> list[list[int]]:
    """``batch`` cut into consecutive chunks (four per worker unless ``chunksize``)."""
    size = chunksize or max(1, math.ceil(len(batch) / (4 * workers)))
    return [batch[a:a + size] for a in range(0, len(batch), size)]


def check_pickles(job: EnsembleJob, where: str) -> None:
    """Refuse, naming the part, a job that cannot be sent to another process."""
    parts = [("the problem", job.eprob.prob), ("prob_func", job.eprob.prob_func),
             ("output_func", job.eprob.output_func), ("the solver", job.alg),
             ("the solve options", job.options), ("the registry", job.registry)]
    for name, part in parts:
        try:
            pickle.dumps(part)
        except Exception as exc:
            raise InvalidType(
                f"ensemble={where!r} sends the problem to other processes, but {name} does "
                f"not pickle ({type(exc).__name__}: {exc}); define f, g, prob_func and "
                f"output_func as module-level functions (not lambdas or closures), or use "
                f"ensemble='threads' or 'vectorized'") from None


class _PoolExecutor:
    pool_class: type[Executor]
    name = ""

    def __init__(self, workers: int | None = None, chunksize: int | None = None) -> None:
        self.workers = check_workers(workers)
        self.chunksize = check_chunksize(chunksize)

    def prepare(self, job: EnsembleJob) -> EnsembleJob:
        """The job the tasks run, checked before any starts."""
        return job

    def run(self, job: EnsembleJob, batches: list[list[int]]
            ) -> Iterator[list[TrajectoryResult]]:
        job = self.prepare(job)
        pool = self.pool_class(max_workers=self.workers)
        try:
            for batch in batches:
                futures = [pool.submit(run_batch, job, part)
                           for part in chunks(batch, self.workers, self.chunksize)]
                yield [r for fut in futures for r in fut.result()]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workers={self.workers}, chunksize={self.chunksize})"


class ThreadExecutor(_PoolExecutor):
    """A pool of ``workers`` threads (default: the CPU count). Worth it when the work per
    step is in large NumPy operations (big states), which release the GIL; for small
    states the GIL serialises the Python of the steps and ``vectorized`` is the tool."""

    pool_class = ThreadPoolExecutor
    name = "threads"


class ProcessExecutor(_PoolExecutor):
    """A pool of ``workers`` processes (default: the CPU count); the job must pickle."""

    pool_class = ProcessPoolExecutor
    name = "processes"

    def prepare(self, job: EnsembleJob) -> EnsembleJob:
        check_pickles(job, self.name)
        return job.portable()


__all__ = ["ThreadExecutor", "ProcessExecutor", "chunks", "check_workers", "check_pickles"]
