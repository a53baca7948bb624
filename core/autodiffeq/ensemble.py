"""Ensembles: one problem solved for many trajectories (SciML's ``EnsembleProblem``).

An :class:`EnsembleProblem` wraps a problem with three optional user functions:

* ``prob_func(prob, i, repeat) -> problem``: trajectory ``i``'s problem (``i = 0 .. N-1``,
  ``repeat = 0`` on the first attempt, ``1, 2, ...`` on reruns), e.g.
  ``prob.remake(u0=u0s[i])``; by default every trajectory solves ``prob`` itself;
* ``output_func(sol, i) -> (value, rerun)``: what is kept of trajectory ``i``'s solution
  (default ``(sol, False)``); ``rerun=True`` solves the trajectory again with ``repeat + 1``;
* ``reduction(acc, values, indices) -> (acc, done)``: folds each batch's values into an
  accumulator (starting from ``u_init``); ``done=True`` stops before the next batch.

``solve(eprob, alg, trajectories=N, ensemble=..., batch_size=..., seed=...)`` cuts the
trajectories ``0 .. N-1`` into batches of ``batch_size`` (default: one batch), hands each to
the executor (a registered :class:`~autodiffeq.specs.EnsembleSpec`: ``"serial"``,
``"threads"``, ``"processes"``, ``"vectorized"``, ``"dask"``, ...) and returns an
:class:`EnsembleSolution` in trajectory order.

**Seeds.** Trajectory ``i`` of a stochastic problem is solved with the seed
``SeedSequence(seed, spawn_key=(i,))`` (:func:`trajectory_seed`; the ``i``-th child of
``numpy.random.SeedSequence(seed).spawn(N)``; a rerun ``r > 0`` uses ``spawn_key=(i, r)``), so
its result depends on ``(seed, i)`` only, never on the executor, the batch size or the other
trajectories. With ``seed=None`` a fresh root entropy is drawn and kept in
``EnsembleSolution.seed``, which reproduces the run.

**Executors** implement ``run(job, batches)``: for each batch of indices (in order), yield
the list of :class:`TrajectoryResult` of those indices, computed with
:meth:`EnsembleJob.solve_trajectory` (or, for an executor that solves a batch at once, with
:meth:`EnsembleJob.problem` and :meth:`EnsembleJob.finish`). The job pickles when its
problem and functions do (module-level functions for ``processes``; Dask uses cloudpickle).
"""

from __future__ import annotations

import copy
import numbers
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .errors import InvalidArgument, InvalidType, UnsupportedCombination

__all__ = ["EnsembleProblem", "EnsembleSolution", "EnsembleJob", "TrajectoryResult",
           "trajectory_seed", "solve_ensemble"]


class EnsembleProblem:
    """A problem solved for many trajectories (module docstring).

    Args:
        prob: the base problem (an ``ODEProblem``, ``SDEProblem``, ``DDEProblem``, ...).
        prob_func: ``prob_func(prob, i, repeat) -> problem`` of the same type (default: the
            base problem for every trajectory).
        output_func: ``output_func(sol, i) -> (value, rerun)`` (default ``(sol, False)``).
        reduction: ``reduction(acc, values, indices) -> (acc, done)`` per batch (default:
            none: every trajectory's value is kept).
        u_init: the reduction's initial accumulator.
        safetycopy: pass ``prob_func`` a copy of ``prob`` with its arrays and its ``dict`` /
            ``list`` parameters copied (so a ``prob_func`` that changes ``prob.u0`` or
            ``prob.p`` in place cannot leak one trajectory into the next); with ``False`` it
            receives ``prob`` itself.
    """

    def __init__(self, prob: Any, prob_func: Callable[..., Any] | None = None,
                 output_func: Callable[..., Any] | None = None,
                 reduction: Callable[..., Any] | None = None, u_init: Any = None,
                 safetycopy: bool = True) -> None:
        if isinstance(prob, EnsembleProblem):
            raise InvalidType("EnsembleProblem(prob): prob is already an EnsembleProblem")
        if not hasattr(prob, "problem_type"):
            raise InvalidType(
                f"EnsembleProblem(prob): prob must be a problem (ODEProblem, SDEProblem, "
                f"DDEProblem, ...), got {type(prob).__name__}")
        for name, fn in (("prob_func", prob_func), ("output_func", output_func),
                         ("reduction", reduction)):
            if fn is not None and not callable(fn):
                raise InvalidType(f"EnsembleProblem({name}=...) must be callable or None, "
                                  f"got {type(fn).__name__}")
        self.prob = prob
        self.prob_func = prob_func
        self.output_func = output_func
        self.reduction = reduction
        self.u_init = u_init
        self.safetycopy = bool(safetycopy)

    @property
    def problem_type(self) -> str:
        return "Ensemble"

    def __repr__(self) -> str:
        parts = [type(self.prob).__name__]
        parts += [name for name in ("prob_func", "output_func", "reduction")
                  if getattr(self, name) is not None]
        return f"EnsembleProblem({', '.join(parts)})"


def trajectory_seed(seed: int, i: int, repeat: int = 0) -> np.random.SeedSequence:
    """The seed of trajectory ``i`` (attempt ``repeat``) of an ensemble solved with ``seed``:
    ``SeedSequence(seed, spawn_key=(i,))`` (``(i, repeat)`` for a rerun), the ``i``-th child
    of ``SeedSequence(seed).spawn(N)``. ``solve(prob_i, seed=trajectory_seed(seed, i))``
    reproduces trajectory ``i`` alone."""
    key = (int(i),) if repeat == 0 else (int(i), int(repeat))
    return np.random.SeedSequence(int(seed), spawn_key=key)


@dataclass
class TrajectoryResult:
    """One trajectory's outcome: its index, the kept value (``output_func``'s, or the
    :class:`~autodiffeq.Solution`), the retcode of its last solve and the number of reruns."""

    index: int
    value: Any
    retcode: str
    reruns: int = 0


@dataclass
class EnsembleJob:
    """Everything a worker needs to solve trajectories (picklable when the problem and the
    user functions are).

    Attributes:
        eprob: the :class:`EnsembleProblem`.
        alg: the solver name or spec (``None``: the default).
        options: the per-trajectory ``solve`` options (without ``seed``).
        seed: the root seed of a stochastic problem (``None`` for a deterministic one).
        registry: the :class:`~autodiffeq.Registry` to solve in (``None``: the default, as
            in a worker process).
        traced: whether the executor may solve problems autograd is differentiating (it
            solves in the calling thread); otherwise such a problem is refused.
    """

    eprob: EnsembleProblem
    alg: Any
    options: dict[str, Any]
    seed: int | None
    registry: Any = None
    traced: bool = False
    alg_options: dict[str, Any] = field(default_factory=dict)

    def portable(self) -> EnsembleJob:
        """The job as sent to other processes: the solutions keep no dense output (it holds
        the solver's closures, which do not travel, and would be shipped back for every
        trajectory); ``dense=True`` is refused with the executors that do."""
        if self.options.get("dense"):
            raise UnsupportedCombination(
                "dense=True: dense output holds the solver's closures and does not travel "
                "between processes; solve with saveat=... (or use ensemble='serial' or "
                "'threads')", ("serial", "threads"))
        return replace(self, options={**self.options, "dense": False})

    def problem(self, i: int, repeat: int = 0) -> Any:
        """Trajectory ``i``'s problem (``prob_func`` applied to a copy of the base)."""
        eprob = self.eprob
        base = eprob.prob
        if eprob.prob_func is None:
            return base
        if eprob.safetycopy:
            base = _safety_copy(base)
        prob = eprob.prob_func(base, i, repeat)
        if type(prob) is not type(eprob.prob):
            raise InvalidType(
                f"EnsembleProblem(prob_func=...) must return a {type(eprob.prob).__name__} "
                f"(the base problem's type) for trajectory {i}, got {type(prob).__name__}")
        return prob

    def seed_of(self, i: int, repeat: int = 0) -> Any:
        return None if self.seed is None else trajectory_seed(self.seed, i, repeat)

    def solve_problem(self, prob: Any, i: int, repeat: int = 0) -> Any:
        """Solve trajectory ``i``'s problem with its seed and the job's options."""
        from .request import problem_type_of, resolve_registry
        from .solve import solve

        if not self.traced and problem_type_of(resolve_registry(self.registry),
                                               prob).adapter.traced(prob):
            raise UnsupportedCombination(
                f"trajectory {i}'s problem is being differentiated by autograd, which this "
                f"ensemble executor cannot carry (it solves in other threads or processes): "
                f"use ensemble='serial' or 'vectorized'", ("serial", "vectorized"))
        options = dict(self.options)
        if self.seed is not None:
            options["seed"] = self.seed_of(i, repeat)
        return solve(prob, self.alg, registry=self.registry, **options, **self.alg_options)

    def finish(self, i: int, sol: Any, repeat: int = 0) -> TrajectoryResult:
        """Apply ``output_func`` to trajectory ``i``'s solution, rerunning it (serially)
        while ``output_func`` asks to."""
        while True:
            if self.eprob.output_func is None:
                value, rerun = sol, False
            else:
                out = self.eprob.output_func(sol, i)
                if not (isinstance(out, tuple) and len(out) == 2):
                    raise InvalidType(
                        f"EnsembleProblem(output_func=...) must return (value, rerun), got "
                        f"{type(out).__name__} for trajectory {i}")
                value, rerun = out
            if not rerun:
                return TrajectoryResult(i, value, str(sol.retcode), repeat)
            repeat += 1
            sol = self.solve_problem(self.problem(i, repeat), i, repeat)

    def solve_trajectory(self, i: int) -> TrajectoryResult:
        """Trajectory ``i`` from its problem to its kept value."""
        return self.finish(i, self.solve_problem(self.problem(i), i))


def _safety_copy(prob: Any) -> Any:
    """A copy of ``prob`` whose NumPy array fields are copies and whose ``dict``/``list``
    fields (parameters as containers) are deep copies, so that a ``prob_func`` that changes
    ``u0`` or ``p`` in place cannot change the base problem (problems are frozen; their
    arrays and containers are what can be mutated). Other fields are shared; arrays autograd
    is differentiating are left as they are (a copy would cut the gradient)."""
    fields = getattr(prob, "__dict__", None)
    if fields is None:
        return copy.copy(prob)
    new = object.__new__(type(prob))
    state = new.__dict__
    state.update(fields)
    for name, value in fields.items():
        if type(value) is np.ndarray:
            state[name] = value.copy()
        elif isinstance(value, (dict, list)):  # parameters as containers: copied deeply
            state[name] = copy.deepcopy(value)
    return new


def run_batch(job: EnsembleJob, indices: Sequence[int]) -> list[TrajectoryResult]:
    """Solve ``indices`` one after the other (what the serial executor and each task of the
    pools and of Dask run)."""
    return [job.solve_trajectory(int(i)) for i in indices]


class EnsembleSolution:
    """The result of an ensemble solve.

    Attributes:
        u: without a reduction, the kept values stacked along a leading trajectory axis when
            they stack (solutions: ``(N, len(t), *u0.shape)`` when every trajectory saved the
            same times; values of ``output_func``: when they are arrays of one shape),
            otherwise a list; with a reduction, the accumulator.
        t: the shared saved times (solutions that share them), else ``None``.
        retcodes: each trajectory's retcode (of its last solve).
        reruns: how many times ``output_func`` asked each trajectory to be solved again.
        seed: the root seed of a stochastic ensemble (pass it back to reproduce it).
        executor: the executor's name; ``elapsed``: wall seconds.

    ``len(esol)``, ``esol[i]`` (trajectory ``i``'s value: a :class:`~autodiffeq.Solution`
    or ``output_func``'s; not kept under a reduction), iteration, and the per-time summary
    statistics :meth:`mean`, :meth:`var`, :meth:`std`, :meth:`quantile` over the successful
    trajectories; :meth:`plot` draws mean and quantile bands (extra ``plot``).
    """

    def __init__(self, values: list[Any] | None, retcodes: list[str], reruns: list[int],
                 reduced: Any, reduction: bool, seed: int | None, executor: str,
                 elapsed: float) -> None:
        self._values = values
        self.retcodes = retcodes
        self.reruns = reruns
        self.seed = seed
        self.executor = executor
        self.elapsed = elapsed
        self.t: np.ndarray | None = None
        if reduction:
            self.u = reduced
        else:
            self.u, self.t = _stack(values or [])

    @property
    def success(self) -> bool:
        """Whether every trajectory ended as asked (``"Success"`` or ``"Terminated"``)."""
        return all(r in ("Success", "Terminated") for r in self.retcodes)

    def __len__(self) -> int:
        return len(self.retcodes)

    def __getitem__(self, i: int) -> Any:
        if self._values is None:
            raise InvalidArgument(
                "this ensemble was solved with a reduction: the trajectories' values were "
                "folded into esol.u and not kept")
        return self._values[i]

    def __iter__(self) -> Iterator[Any]:
        for i in range(len(self)):
            yield self[i]

    # ------------------------------------------------------------------ statistics
    def _successful(self) -> Any:
        """The successful trajectories' saved states, stacked (``(k, len(t), *shape)``);
        a failed trajectory (fewer saved times) is left out."""
        keep = [i for i, r in enumerate(self.retcodes) if r in ("Success", "Terminated")]
        if not keep:
            raise InvalidArgument("no trajectory of this ensemble succeeded")
        if self.t is not None:
            u = self.u
            return u if len(keep) == len(self) else u[np.asarray(keep), ...]
        from .solution import Solution

        values = [self._values[i] for i in keep] if self._values is not None else []
        if values and all(isinstance(v, Solution) for v in values):
            stacked, t = _stack(values)
            if t is not None:
                self._stats_t = t
                return stacked
        raise InvalidArgument(
            "summary statistics need solutions saved at shared times: solve with saveat=... "
            "(the successful trajectories here saved different times)")

    @property
    def stats_t(self) -> np.ndarray | None:
        """The times of :meth:`mean`, :meth:`var`, ... (``t``, or the successful
        trajectories' shared times when a failed one saved fewer)."""
        if self.t is not None:
            return self.t
        try:
            self._successful()
        except InvalidArgument:
            return None
        return getattr(self, "_stats_t", None)

    def mean(self) -> Any:
        """The mean over successful trajectories at each saved time: ``(len(t), *shape)``."""
        u = self._successful()
        return _xp(u).mean(u, axis=0)

    def var(self, ddof: int = 1) -> Any:
        """The variance (``ddof=1``: unbiased) at each saved time."""
        u = self._successful()
        xp = _xp(u)
        m = xp.mean(u, axis=0)
        return xp.sum((u - m) ** 2, axis=0) / (u.shape[0] - ddof)

    def std(self, ddof: int = 1) -> Any:
        """The standard deviation at each saved time."""
        v = self.var(ddof)
        return _xp(v).sqrt(v)

    def quantile(self, q: Any) -> Any:
        """Quantiles ``q`` (a number or a sequence in ``[0, 1]``) at each saved time
        (NumPy's ``quantile``, linear interpolation): ``(len(q), len(t), *shape)`` or, for a
        number, ``(len(t), *shape)``."""
        u = self._successful()
        return np.quantile(np.asarray(u), q, axis=0)

    def plot(self, components: Sequence[int] | None = None, quantiles: tuple[float, float]
             = (0.05, 0.95), ax: Any = None, **kwargs: Any) -> Any:
        """Mean and a ``quantiles`` band of each component over time (matplotlib, extra
        ``plot``); returns the axes."""
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("EnsembleSolution.plot needs matplotlib: pip install "
                              "'autodiffeq[plot]'") from exc
        mean = np.asarray(self.mean())
        lo, hi = self.quantile(list(quantiles))
        flat = mean.reshape(mean.shape[0], -1)
        lo, hi = lo.reshape(flat.shape), hi.reshape(flat.shape)
        if ax is None:
            _, ax = plt.subplots()
        for c in (range(flat.shape[1]) if components is None else components):
            line, = ax.plot(self.stats_t, flat[:, c], label=f"u[{c}] mean", **kwargs)
            ax.fill_between(self.stats_t, lo[:, c], hi[:, c], color=line.get_color(),
                            alpha=0.25,
                            label=f"u[{c}] {quantiles[0]:g}-{quantiles[1]:g} quantiles")
        ax.set_xlabel("t")
        ax.legend()
        return ax

    def __repr__(self) -> str:
        failed = sum(r not in ("Success", "Terminated") for r in self.retcodes)
        return (f"EnsembleSolution({len(self)} trajectories, executor={self.executor!r}, "
                f"{failed} failed, {self.elapsed:.3g} s)")


def _xp(u: Any) -> Any:
    from .validation import is_traced

    if is_traced(u):
        import autograd.numpy as anp

        return anp
    from .validation import array_namespace_of

    return array_namespace_of(u) or np


def _stack(values: list[Any]) -> tuple[Any, np.ndarray | None]:
    """``(stacked or list, shared times or None)`` (see :class:`EnsembleSolution`)."""
    if not values:
        return values, None
    from .solution import Solution
    from .validation import is_traced

    if all(isinstance(v, Solution) for v in values):
        t0 = values[0].t
        if all(v.t is t0 or (len(v.t) == len(t0) and np.array_equal(v.t, t0))
               for v in values):
            arrays = [v.u for v in values]
            return _stack_arrays(arrays, any(is_traced(a) for a in arrays)), np.asarray(t0)
        return values, None
    shapes = {getattr(v, "shape", None) for v in values}
    if len(shapes) == 1 and None not in shapes:
        return _stack_arrays(values, any(is_traced(v) for v in values)), None
    if all(isinstance(v, numbers.Number) for v in values):
        return np.asarray(values), None
    return values, None


def _stack_arrays(arrays: list[Any], traced: bool) -> Any:
    if traced:
        import autograd.numpy as anp

        return anp.stack(arrays)
    from .validation import array_namespace_of

    xp = array_namespace_of(arrays[0]) or np
    return xp.stack(arrays)


def _check_trajectories(trajectories: Any) -> int:
    if (isinstance(trajectories, bool) or not isinstance(trajectories, numbers.Integral)
            or trajectories < 1):
        raise InvalidArgument(
            f"trajectories must be a positive integer (the number of trajectories to "
            f"solve), got {trajectories!r}")
    return int(trajectories)


def _check_batch_size(batch_size: Any, n: int) -> int:
    if batch_size is None:
        return n
    if (isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral)
            or batch_size < 1):
        raise InvalidArgument(
            f"batch_size must be a positive integer or None (one batch), got {batch_size!r}")
    return min(int(batch_size), n)


def solve_ensemble(eprob: EnsembleProblem, alg: Any, trajectories: Any, ensemble: Any,
                   batch_size: Any, seed: Any, progress: bool, options: dict[str, Any],
                   alg_options: dict[str, Any], registry: Any) -> EnsembleSolution:
    """The ensemble branch of :func:`autodiffeq.solve` (module docstring)."""
    from .request import problem_type_of, resolve_registry

    reg = resolve_registry(registry)
    n = _check_trajectories(trajectories)
    size = _check_batch_size(batch_size, n)
    if not isinstance(ensemble, str):
        raise InvalidType(f"ensemble must be an executor name, got {type(ensemble).__name__}")
    spec = reg.ensemble(ensemble)
    executor_options = {k: alg_options.pop(k) for k in list(alg_options)
                        if k in spec.options}
    for name in alg_options:
        owners = [e.name for e in reg.ensembles() if name in e.options]
        if owners:
            raise InvalidArgument(
                f"{name}= is an option of ensemble={' / '.join(map(repr, owners))}; "
                f"ensemble={spec.name!r} takes "
                f"{', '.join(spec.options) if spec.options else 'no options'}")
    if spec.backends is not None:
        from .request import resolve_backend

        backend = resolve_backend(reg, options.get("backend")).name
        if backend not in spec.backends:
            raise UnsupportedCombination(
                f"ensemble={spec.name!r} runs on backend(s) {', '.join(spec.backends)}, not "
                f"{backend!r}", tuple(e.name for e in reg.ensembles()
                                      if e.backends is None or backend in e.backends))
    ptype = problem_type_of(reg, eprob.prob)
    stochastic = bool(getattr(ptype.adapter, "stochastic", False))
    if seed is not None and not stochastic:
        raise InvalidArgument(
            f"seed is for stochastic problems; this ensemble's problem is a "
            f"{type(eprob.prob).__name__}")
    if stochastic:
        from .brownian import check_seed

        seed = check_seed(seed)
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(2, np.uint64)[0] >> 1)
    traced = ptype.adapter.traced(eprob.prob)
    if traced and not spec.traced:
        capable = [e.name for e in reg.ensembles() if e.traced]
        raise UnsupportedCombination(
            f"ensemble={spec.name!r} cannot carry gradients (autograd traces in one thread "
            f"of one process)", tuple(capable))
    if options.get("brownian") is not None:
        raise InvalidArgument(
            "brownian= is one path; an ensemble draws trajectory i's path from "
            "(seed, i): pass seed= instead")
    job = EnsembleJob(eprob, alg, options, seed if stochastic else None, registry,
                      spec.traced, alg_options)
    executor = spec.factory(**executor_options)
    batches = [list(range(a, min(a + size, n))) for a in range(0, n, size)]
    bar = _progress_bar(progress, n)
    values: list[Any] | None = [] if eprob.reduction is None else None
    retcodes: list[str] = []
    reruns: list[int] = []
    acc = eprob.u_init
    start = time.perf_counter()
    results = executor.run(job, batches)
    try:
        for batch, res in zip(batches, results):
            if [r.index for r in res] != batch:
                raise InvalidType(
                    f"ensemble executor {spec.name!r} returned trajectories "
                    f"{[r.index for r in res][:8]} for the batch {batch[:8]}: executors must "
                    f"return each batch's results in order")
            retcodes += [r.retcode for r in res]
            reruns += [r.reruns for r in res]
            if bar is not None:
                bar.update(len(res))
            if values is not None:
                values += [r.value for r in res]
                continue
            out = eprob.reduction(acc, [r.value for r in res], batch)
            if not (isinstance(out, tuple) and len(out) == 2):
                raise InvalidType(
                    f"EnsembleProblem(reduction=...) must return (acc, done), got "
                    f"{type(out).__name__}")
            acc, done = out
            if done:
                break
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()
        if bar is not None:
            bar.close()
    esol = EnsembleSolution(values, retcodes, reruns, acc, eprob.reduction is not None,
                            seed if stochastic else None, spec.name,
                            time.perf_counter() - start)
    return esol


def _progress_bar(progress: bool, total: int) -> Any:
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError as exc:
        raise ImportError("progress=True needs tqdm: pip install 'autodiffeq[progress]'"
                          ) from exc
    return tqdm(total=total, desc="trajectories", unit="traj")
