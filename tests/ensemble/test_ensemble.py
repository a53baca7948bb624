"""Ensembles: every executor against separate solves and analytic results, seeds, reductions,
failures, bad input and gradients."""

from __future__ import annotations

import importlib.util
import pickle
from contextlib import nullcontext

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import autodiffeq as ade

from .problems import (
    MU,
    P_LV,
    blow_up,
    diffusion,
    drift,
    drift_indexed,
    gbm_diffusion,
    gbm_drift,
    lotka_volterra,
    lotka_volterra_indexed,
    robertson,
    vary_blow_up,
    vary_lv,
    vary_robertson,
    vary_sde,
)

HAVE_DASK = importlib.util.find_spec("distributed") is not None
EXECUTORS = ["serial", "threads", "processes", "vectorized",
             pytest.param("dask", marks=pytest.mark.skipif(
                 not HAVE_DASK, reason="dask.distributed is not installed (extra 'dask')"))]
SAVEAT = np.linspace(0.0, 10.0, 11)
N_LV = 6


def lv_ensemble() -> ade.EnsembleProblem:
    prob = ade.ODEProblem(lotka_volterra, np.array([1.0, 1.0]), (0.0, 10.0), P_LV)
    return ade.EnsembleProblem(prob, prob_func=vary_lv)


def executor_options(name: str) -> dict:
    return {"workers": 2} if name in ("threads", "processes", "dask") else {}


def reference_lv(i: int) -> np.ndarray:
    prob = vary_lv(ade.ODEProblem(lotka_volterra, np.array([1.0, 1.0]), (0.0, 10.0), P_LV),
                   i, 0)
    sol = solve_ivp(lambda t, u: lotka_volterra(u, prob.p, t), (0.0, 10.0), prob.u0,
                    method="DOP853", rtol=1e-13, atol=1e-13, t_eval=SAVEAT)
    return sol.y.T


def max_rel_error(u: np.ndarray, ref: np.ndarray) -> float:
    """Max relative error with a floor of 1e-6 of the solution's size."""
    floor = 1e-6 * np.max(np.abs(ref))
    return float(np.max(np.abs(u - ref) / np.maximum(np.abs(ref), floor)))


# --------------------------------------------------------------------------- ODE executors
@pytest.mark.parametrize("executor", EXECUTORS)
def test_every_executor_gives_each_trajectory_its_separate_solve(executor) -> None:
    rtol = 1e-6
    esol = ade.solve(lv_ensemble(), "Tsit5", trajectories=N_LV, ensemble=executor,
                     saveat=SAVEAT, rtol=rtol, atol=rtol, **executor_options(executor))
    assert esol.u.shape == (N_LV, len(SAVEAT), 2) and esol.success
    assert esol.executor == executor and len(esol) == N_LV
    np.testing.assert_array_equal(esol.t, SAVEAT)
    for i in range(N_LV):
        prob_i = vary_lv(lv_ensemble().prob, i, 0)
        alone = ade.solve(prob_i, "Tsit5", saveat=SAVEAT, rtol=rtol, atol=rtol)
        assert isinstance(esol[i], ade.Solution) and esol[i].prob.p[0] == prob_i.p[0]
        if executor == "vectorized":
            # its own steps (saved times are stops), so its own error at the tolerance
            # asked: both within the error that tolerance gives on this problem
            ref = reference_lv(i)
            assert max_rel_error(np.asarray(alone.u), ref) < 200 * rtol
            assert max_rel_error(np.asarray(esol.u[i]), ref) < 200 * rtol
        else:
            np.testing.assert_array_equal(esol.u[i], alone.u)


def test_vectorized_error_is_tolerance_proportional() -> None:
    """Each trajectory meets its own tolerance: 1000x tighter gives >= 100x smaller errors
    (explicit methods' global error is about proportional to the tolerance)."""
    errors = []
    for rtol in (1e-5, 1e-8):
        esol = ade.solve(lv_ensemble(), "Tsit5", trajectories=N_LV, ensemble="vectorized",
                         saveat=SAVEAT, rtol=rtol, atol=rtol)
        errors.append(max(max_rel_error(np.asarray(esol.u[i]), reference_lv(i))
                          for i in range(N_LV)))
    assert errors[1] < errors[0] / 100, errors
    # per-trajectory steps: the trajectories do not all take the same number
    steps = [s.stats.naccept for s in esol]
    assert len(set(steps)) > 1 and all(s.stats.nreject >= 0 for s in esol)


def test_vectorized_rosenbrock_on_stiff_trajectories_matches_separate_solves() -> None:
    prob = ade.ODEProblem(robertson, np.array([1.0, 0.0, 0.0]), (0.0, 1e4),
                          np.array([0.04, 3e7, 1e4]))
    eprob = ade.EnsembleProblem(prob, prob_func=vary_robertson)
    ts = np.logspace(-2, 4, 7)
    esol = ade.solve(eprob, "Rodas5P", trajectories=4, ensemble="vectorized", saveat=ts,
                     rtol=1e-6, atol=1e-10)
    assert esol.success
    for i in range(4):
        tight = ade.solve(vary_robertson(prob, i, 0), "Rodas5P", saveat=ts, rtol=1e-10,
                          atol=1e-14)
        u, ref = np.asarray(esol.u[i]), np.asarray(tight.u)
        # components of very different size (y2 ~ 1e-5): error relative to each one's scale
        scale = np.max(np.abs(ref), axis=0)
        assert np.max(np.abs(u - ref) / scale) < 100 * 1e-6
        np.testing.assert_allclose(u.sum(axis=1), 1.0, rtol=1e-6)  # mass conservation


def test_vectorized_saves_every_step_without_saveat() -> None:
    esol = ade.solve(lv_ensemble(), "Tsit5", trajectories=3, ensemble="vectorized",
                     rtol=1e-6, atol=1e-6)
    assert isinstance(esol.u, list) and esol.t is None
    for i in range(3):
        sol = esol[i]
        assert sol.t[0] == 0.0 and sol.t[-1] == 10.0 and np.all(np.diff(sol.t) > 0)
        assert len(sol.t) == sol.stats.naccept + 1
        prob_i = vary_lv(lv_ensemble().prob, i, 0)
        ref = solve_ivp(lambda t, u, p=prob_i.p: lotka_volterra(u, p, t), (0.0, 10.0),
                        prob_i.u0, method="DOP853", rtol=1e-13, atol=1e-13, t_eval=sol.t)
        assert max_rel_error(np.asarray(sol.u), ref.y.T) < 200 * 1e-6
    with pytest.raises(ade.AutodiffeqError, match="saved at shared times"):
        esol.mean()


# --------------------------------------------------------------------------- SDE ensembles
def sde_ensemble(noise: str = "diagonal") -> ade.EnsembleProblem:
    prob = ade.SDEProblem(drift, diffusion, np.array([1.0, 2.0]), (0.0, 1.0),
                          np.array([1.0, 0.3]), noise=noise)
    return ade.EnsembleProblem(prob, prob_func=vary_sde)


@pytest.mark.parametrize("alg", ["EM", "SRIW1", "SOSRI", "RKMil"])
@pytest.mark.parametrize("noise", ["diagonal", "scalar"])
def test_sde_ensembles_are_bit_for_bit_across_executors(alg, noise) -> None:
    names = ["serial", "threads", "processes", "vectorized"] + (["dask"] if HAVE_DASK and
                                                               alg == "SRIW1" else [])
    opts = dict(trajectories=5, seed=42, dt=1.0 / 32, adaptive=False, saveat=[0.5, 1.0])
    results = {name: ade.solve(sde_ensemble(noise), alg, ensemble=name,
                               **executor_options(name), **opts) for name in names}
    base = np.asarray(results["serial"].u)
    for name, esol in results.items():
        np.testing.assert_array_equal(np.asarray(esol.u), base, err_msg=name)
        assert esol.seed == 42
    # trajectory i alone, from its seed, is the same solve
    prob_3 = vary_sde(sde_ensemble(noise).prob, 3, 0)
    alone = ade.solve(prob_3, alg, seed=ade.trajectory_seed(42, 3), dt=1.0 / 32,
                      adaptive=False, saveat=[0.5, 1.0])
    np.testing.assert_array_equal(np.asarray(alone.u), base[3])
    assert not np.array_equal(base[0], base[1])
    other = ade.solve(sde_ensemble(noise), alg, ensemble="serial", **{**opts, "seed": 43})
    assert not np.array_equal(np.asarray(other.u), base)


def test_adaptive_sde_ensemble_serial_matches_separate_solves_and_vectorized_refuses() -> None:
    esol = ade.solve(sde_ensemble(), "SOSRI", trajectories=3, seed=5, saveat=[1.0])
    for i in range(3):
        alone = ade.solve(vary_sde(sde_ensemble().prob, i, 0), "SOSRI",
                          seed=ade.trajectory_seed(5, i), saveat=[1.0])
        np.testing.assert_array_equal(np.asarray(esol.u[i]), np.asarray(alone.u))
    with pytest.raises(ade.UnsupportedCombination, match="fixed grid"):
        ade.solve(sde_ensemble(), "SOSRI", trajectories=3, seed=5, ensemble="vectorized")


def test_monte_carlo_mean_matches_the_analytic_mean() -> None:
    """Euler–Maruyama on GBM has the exact weak mean E u_n = u0 (1 + mu dt)^n (independent
    increments of mean zero): the ensemble mean is within 4 standard errors of it."""
    prob = ade.SDEProblem(gbm_drift, gbm_diffusion, np.array([1.0]), (0.0, 1.0))
    n_steps, N = 32, 4000
    esol = ade.solve(ade.EnsembleProblem(prob), "EM", trajectories=N, seed=1,
                     ensemble="vectorized", dt=1.0 / n_steps, adaptive=False,
                     saveat=[0.5, 1.0])
    mean, std = np.asarray(esol.mean()), np.asarray(esol.std())
    assert mean.shape == (2, 1)
    for k, steps in enumerate((n_steps // 2, n_steps)):
        exact = (1.0 + MU / n_steps) ** steps
        assert abs(mean[k, 0] - exact) < 4 * std[k, 0] / np.sqrt(N)
    q = esol.quantile([0.1, 0.5, 0.9])
    assert q.shape == (3, 2, 1) and np.all(np.diff(q[:, -1, 0]) > 0)
    np.testing.assert_allclose(np.asarray(esol.var()), std ** 2, rtol=1e-12)


def test_unseeded_sde_ensemble_records_a_seed_that_reproduces_it() -> None:
    first = ade.solve(sde_ensemble(), "EM", trajectories=3, dt=0.05, adaptive=False)
    again = ade.solve(sde_ensemble(), "EM", trajectories=3, dt=0.05, adaptive=False,
                      seed=first.seed)
    assert isinstance(first.seed, int)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(np.asarray(a.u), np.asarray(b.u))


# --------------------------------------------------------------------------- user functions
def test_output_func_rerun_and_reduction_in_batches() -> None:
    calls = []

    def output(sol, i):
        rerun = i == 2 and len([c for c in calls if c == 2]) < 2
        calls.append(i)
        return float(sol.u[-1, 0]), rerun

    esol = ade.solve(ade.EnsembleProblem(lv_ensemble().prob, prob_func=vary_lv,
                                         output_func=output),
                     trajectories=4, saveat=[10.0], rtol=1e-8, atol=1e-8)
    assert esol.reruns == [0, 0, 2, 0] and esol.u.shape == (4,)
    np.testing.assert_allclose(esol.u, [reference_lv(i)[-1, 0] for i in range(4)],
                               rtol=1e-5)

    seen = []

    def reduction(acc, values, indices):
        seen.append(list(indices))
        acc = acc + sum(float(v.u[-1, 0]) for v in values)
        return acc, len(seen) == 2  # stop after two batches

    esol = ade.solve(ade.EnsembleProblem(lv_ensemble().prob, prob_func=vary_lv,
                                         reduction=reduction, u_init=0.0),
                     trajectories=7, batch_size=3, saveat=[10.0], ensemble="vectorized")
    assert seen == [[0, 1, 2], [3, 4, 5]] and len(esol) == 6
    assert isinstance(esol.u, float)
    with pytest.raises(ade.AutodiffeqError, match="reduction"):
        esol[0]


def test_a_failing_trajectory_keeps_its_retcode_and_the_others_finish() -> None:
    prob = ade.ODEProblem(blow_up, np.array([0.2]), (0.0, 2.0))
    eprob = ade.EnsembleProblem(prob, prob_func=vary_blow_up)
    for executor in ("serial", "vectorized"):
        with pytest.warns(ade.SolverWarning) if executor == "serial" else nullcontext():
            esol = ade.solve(eprob, "Tsit5", trajectories=3, ensemble=executor, rtol=1e-6,
                             atol=1e-6)
        # u0 = 0.2 and 0.4 live past t = 2; u0 = 1.0 blows up at t = 1
        assert esol.retcodes[0] == "Success" and esol.retcodes[1] == "Success"
        assert esol.retcodes[2] in ("Unstable", "DtLessThanMin"), esol.retcodes
        assert not esol.success
        assert esol[2].t[-1] < 1.0 + 1e-3 and len(esol[2].t) > 1
        for i in (0, 1):
            u0 = 0.2 * (i + 1)
            np.testing.assert_allclose(esol[i].u[-1, 0], u0 / (1 - 2 * u0), rtol=1e-4)


def test_statistics_and_plot() -> None:
    esol = ade.solve(lv_ensemble(), trajectories=5, saveat=SAVEAT, ensemble="vectorized")
    u = np.asarray(esol.u)
    # the same statistics computed by NumPy directly: summation order may differ, so a few
    # roundings of the values' size (5 trajectories) are allowed
    scale = 16 * np.finfo(np.float64).eps * np.max(np.abs(u))
    np.testing.assert_allclose(esol.mean(), u.mean(axis=0), rtol=0, atol=scale)
    np.testing.assert_allclose(esol.var(), u.var(axis=0, ddof=1), rtol=0,
                               atol=scale * np.max(np.abs(u)))
    np.testing.assert_allclose(esol.quantile(0.5), np.median(u, axis=0), rtol=0, atol=scale)
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    ax = esol.plot()
    assert len(ax.lines) == 2
    assert "EnsembleSolution(5 trajectories" in repr(esol)


def test_progress_bar() -> None:
    pytest.importorskip("tqdm")
    esol = ade.solve(lv_ensemble(), trajectories=3, saveat=[10.0], progress=True,
                     batch_size=1)
    assert esol.success and len(esol) == 3


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("executor", ["serial", "vectorized"])
def test_gradient_of_an_ensemble_loss_matches_finite_differences(executor) -> None:
    U0 = np.array([[1.0, 1.0], [1.2, 0.8], [0.7, 1.3]])

    def loss(p):
        prob = ade.ODEProblem(lotka_volterra, U0[0], (0.0, 5.0), p)
        eprob = ade.EnsembleProblem(
            prob, prob_func=lambda pr, i, r: pr.remake(u0=U0[i], p=p * (1.0 + 0.1 * i)))
        esol = ade.solve(eprob, "Tsit5", trajectories=3, ensemble=executor, saveat=[5.0],
                         rtol=1e-10, atol=1e-10)
        return anp.mean(esol.u[:, -1, :] ** 2)

    g = autograd.grad(loss)(P_LV)
    eps = 1e-6
    fd = np.array([(loss(P_LV + eps * e) - loss(P_LV - eps * e)) / (2 * eps)
                   for e in np.eye(4)])
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-7 * np.max(np.abs(fd)))


def test_gradients_are_refused_by_executors_in_other_threads() -> None:
    def loss(p):
        prob = ade.ODEProblem(lotka_volterra, np.array([1.0, 1.0]), (0.0, 1.0), p)
        return anp.sum(ade.solve(ade.EnsembleProblem(prob), trajectories=2,
                                 ensemble="threads", saveat=[1.0]).u)

    with pytest.raises(ade.UnsupportedCombination, match="serial"):
        autograd.grad(loss)(P_LV)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad", [0, -3, 2.5, True, None, "4"])
def test_trajectories_must_be_a_positive_integer(bad) -> None:
    with pytest.raises(ade.AutodiffeqError, match="trajectories"):
        ade.solve(lv_ensemble(), trajectories=bad)


def test_bad_input_is_refused_with_the_reason() -> None:
    eprob = lv_ensemble()
    with pytest.raises(ade.UnknownName) as err:
        ade.solve(eprob, trajectories=2, ensemble="gpu-cluster")
    assert "vectorized" in str(err.value) and "dask" in str(err.value)
    with pytest.raises(ade.AutodiffeqError, match="batch_size"):
        ade.solve(eprob, trajectories=2, batch_size=0)
    with pytest.raises(ade.AutodiffeqError, match="must return a ODEProblem"):
        ade.solve(ade.EnsembleProblem(eprob.prob, prob_func=lambda p, i, r: None),
                  trajectories=2)
    with pytest.raises(ade.AutodiffeqError, match=r"\(value, rerun\)"):
        ade.solve(ade.EnsembleProblem(eprob.prob, output_func=lambda s, i: 1.0),
                  trajectories=2)
    with pytest.raises(ade.AutodiffeqError, match="EnsembleProblem"):
        ade.solve(eprob.prob, trajectories=2)
    with pytest.raises(ade.AutodiffeqError, match="seed is for stochastic"):
        ade.solve(eprob, trajectories=2, seed=1)
    with pytest.raises(ade.AutodiffeqError, match="problem"):
        ade.EnsembleProblem(np.zeros(3))
    with pytest.raises(ade.AutodiffeqError, match="prob_func"):
        ade.EnsembleProblem(eprob.prob, prob_func=3)
    with pytest.raises(ade.AutodiffeqError, match="workers"):
        ade.solve(eprob, trajectories=2, ensemble="threads", workers=0)
    with pytest.raises(ade.AutodiffeqError, match="ensemble='vectorized' takes no options"):
        ade.solve(eprob, trajectories=2, ensemble="vectorized", workers=2)


def test_processes_refuse_a_problem_that_does_not_pickle() -> None:
    prob = ade.ODEProblem(lambda u, p, t: -u, np.array([1.0]), (0.0, 1.0))
    with pytest.raises(ade.AutodiffeqError, match="does not pickle") as err:
        ade.solve(ade.EnsembleProblem(prob), trajectories=2, ensemble="processes")
    assert "module-level" in str(err.value)
    # threads share the process: the lambda is fine there
    assert ade.solve(ade.EnsembleProblem(prob), trajectories=2, ensemble="threads").success


@pytest.mark.skipif(not HAVE_DASK, reason="dask.distributed is not installed (extra 'dask')")
def test_dask_refuses_a_client_that_is_not_one() -> None:
    with pytest.raises(ade.AutodiffeqError, match="distributed.Client"):
        ade.solve(lv_ensemble(), trajectories=2, ensemble="dask", client="tcp://x:8786")


def test_vectorized_checks_that_f_takes_a_batch() -> None:
    prob = ade.ODEProblem(lotka_volterra_indexed, np.array([1.0, 1.0]), (0.0, 1.0), P_LV)
    eprob = ade.EnsembleProblem(prob, prob_func=vary_lv)
    with pytest.raises(ade.AutodiffeqError, match="batch") as err:
        ade.solve(eprob, trajectories=4, ensemble="vectorized")
    assert "u[..., i]" in str(err.value) or "leading axis" in str(err.value)
    # the serial executor solves it
    assert ade.solve(eprob, trajectories=4).success
    with pytest.raises(ade.UnsupportedCombination, match="family"):
        ade.solve(lv_ensemble(), "ImplicitEuler" if "ImplicitEuler" in
                  [s.name for s in ade.registry().solvers()] else "AutoTsit5Rodas5P",
                  trajectories=2, ensemble="vectorized")
    with pytest.raises(ade.UnsupportedCombination, match="callbacks"):
        ade.solve(lv_ensemble(), trajectories=2, ensemble="vectorized",
                  callback=ade.DiscreteCallback(lambda u, t: False, lambda u, t: u))


def test_solutions_and_paths_pickle() -> None:
    esol = ade.solve(sde_ensemble(), "EM", trajectories=2, seed=1, dt=0.1, adaptive=False,
                     saveat=[0.5, 1.0])  # (dense output holds the solver's closures)
    sol = pickle.loads(pickle.dumps(esol[0]))
    np.testing.assert_array_equal(np.asarray(sol.u), np.asarray(esol[0].u))
    np.testing.assert_array_equal(sol.W(1.0), esol[0].W(1.0))
    assert sol.backend.name == "numpy"


@pytest.mark.skipif(not HAVE_DASK, reason="dask.distributed is not installed (extra 'dask')")
def test_dask_client_serves_repeated_solves_in_order() -> None:
    """On a given client: equal solves one after another (the job is scattered under a key
    of its own each time), the vectorized inner executor, results in trajectory order."""
    import logging

    import distributed

    logging.getLogger("distributed").setLevel(logging.ERROR)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        runs = [ade.solve(lv_ensemble(), "Tsit5", trajectories=N_LV, ensemble="dask",
                          client=client, inner=inner, chunksize=2, saveat=SAVEAT)
                for inner in ("serial", "serial", "vectorized")]
    local = ade.solve(lv_ensemble(), "Tsit5", trajectories=N_LV, saveat=SAVEAT)
    np.testing.assert_array_equal(runs[0].u, local.u)
    np.testing.assert_array_equal(runs[1].u, local.u)
    for i in range(N_LV):
        assert max_rel_error(np.asarray(runs[2].u[i]), reference_lv(i)) < 200 * 1e-3


def test_sde_seeds_follow_the_trajectory_index_in_every_batch_and_chunk() -> None:
    """Trajectory i draws from (seed, i) whatever batch or Dask chunk it is solved in."""
    opts = dict(trajectories=8, seed=3, dt=1.0 / 16, saveat=[1.0])
    serial = np.asarray(ade.solve(sde_ensemble(), "EM", **opts).u)
    assert len({float(x) for x in serial[:, -1, 0]}) == 8  # eight different paths
    for extra in ({"ensemble": "vectorized", "batch_size": 3},
                  {"ensemble": "vectorized", "batch_size": 1},
                  *([{"ensemble": "dask", "inner": "vectorized", "workers": 2,
                      "chunksize": 3}] if HAVE_DASK else [])):
        got = np.asarray(ade.solve(sde_ensemble(), "EM", **opts, **extra).u)
        np.testing.assert_array_equal(got, serial, err_msg=str(extra))


def test_vectorized_sde_checks_that_f_takes_a_batch() -> None:
    prob = ade.SDEProblem(drift_indexed, diffusion, np.array([1.0, 2.0]), (0.0, 1.0),
                          np.array([1.0, 0.3]))
    eprob = ade.EnsembleProblem(prob, prob_func=vary_sde)
    with pytest.raises(ade.AutodiffeqError, match="does not give trajectory"):
        ade.solve(eprob, "EM", trajectories=4, seed=1, dt=0.1, ensemble="vectorized")


def test_statistics_leave_out_a_failed_trajectory() -> None:
    prob = ade.ODEProblem(blow_up, np.array([0.2]), (0.0, 2.0))
    esol = ade.solve(ade.EnsembleProblem(prob, prob_func=vary_blow_up), "Tsit5",
                     trajectories=3, ensemble="vectorized", saveat=[0.5, 1.5])
    assert esol.retcodes[2] != "Success" and isinstance(esol.u, list)
    np.testing.assert_array_equal(esol.stats_t, [0.5, 1.5])
    exact = np.array([[u0 / (1 - u0 * t) for u0 in (0.2, 0.4)] for t in (0.5, 1.5)])
    np.testing.assert_allclose(np.asarray(esol.mean())[:, 0], exact.mean(axis=1), rtol=1e-3)


def test_processes_refuse_dense_output() -> None:
    with pytest.raises(ade.UnsupportedCombination, match="dense"):
        ade.solve(lv_ensemble(), trajectories=2, ensemble="processes", dense=True)


def test_safety_copy_protects_container_parameters_and_dense_is_refused_where_lost() -> None:
    prob = ade.ODEProblem(lambda u, p, t: -p["k"] * u, np.ones(1), (0.0, 1.0), {"k": 1.0})

    def bump(pr, i, repeat):
        pr.p["k"] += 1.0  # in place: must not reach the base problem or the others
        return pr

    esol = ade.solve(ade.EnsembleProblem(prob, prob_func=bump), trajectories=3,
                     saveat=[1.0])
    assert prob.p == {"k": 1.0} and [s.prob.p["k"] for s in esol] == [2.0, 2.0, 2.0]
    with pytest.raises(ade.UnsupportedCombination, match="no dense output") as err:
        ade.solve(sde_ensemble(), "EM", trajectories=2, seed=1, dt=0.1,
                  ensemble="vectorized", dense=True)
    assert "processes" not in str(err.value)


def _namespace_lotka_volterra(u, p, t):
    """Lotka–Volterra in the array namespace of its input (NumPy or any array-API library)
    and with ``...`` indexing, so one function serves single solves and batches."""
    xp = u.__array_namespace__()
    x, y = u[..., 0:1], u[..., 1:2]
    a, b, c, d = p[..., 0:1], p[..., 1:2], p[..., 2:3], p[..., 3:4]
    return xp.concat([a * x - b * x * y, -c * y + d * x * y], axis=-1)


def _namespace_drift(u, p, t):
    return p[..., 0:1] * u


def _namespace_diffusion(u, p, t):
    return p[..., 1:2] * u


@pytest.mark.parametrize("saveat", [None, SAVEAT, np.array([0.0, 3.3, 10.0])],
                         ids=["every-step", "grid", "uneven"])
def test_vectorized_on_a_standard_only_backend_takes_numpys_steps(saveat) -> None:
    """The vectorised executor uses only array-API operations on non-NumPy backends (row
    gathers by ``take``, scatters by ``where``; the property CuPy needs): on
    ``array_api_strict``, which rejects everything else, it runs, and every trajectory takes
    the steps of the NumPy run with the same numbers (the operations are the same, so no
    tolerance is needed beyond equality)."""
    xps = pytest.importorskip("array_api_strict")
    prob = ade.ODEProblem(_namespace_lotka_volterra, np.array([1.0, 1.0]), (0.0, 10.0), P_LV)
    eprob = ade.EnsembleProblem(prob, prob_func=vary_lv)
    kw = dict(trajectories=N_LV, ensemble="vectorized", rtol=1e-8, atol=1e-10)
    if saveat is not None:
        kw["saveat"] = saveat
    on_numpy = ade.solve(eprob, "Tsit5", **kw)
    strict = ade.solve(eprob, "Tsit5", backend="array_api_strict", **kw)
    for a, b in zip(on_numpy, strict):
        assert isinstance(b.u, type(xps.asarray(0.0)))
        assert b.stats.naccept == a.stats.naccept and b.stats.nreject == a.stats.nreject
        np.testing.assert_array_equal(np.asarray(b.t), np.asarray(a.t))
        np.testing.assert_array_equal(np.from_dlpack(b.u), np.asarray(a.u))
    if saveat is SAVEAT:  # and both are right: the reference at the saved times
        for i, sol in enumerate(strict):
            ref = reference_lv(i)
            err = np.max(np.abs(np.from_dlpack(sol.u) - ref) / (np.abs(ref) + 1e-3))
            assert err < 1e-5, (i, err)


def test_vectorized_sde_on_a_standard_only_backend() -> None:
    """SDE ensembles on the fixed grid: the same bits on ``array_api_strict`` as on NumPy
    and as each trajectory's separate solve (the draws are made on the host there)."""
    pytest.importorskip("array_api_strict")
    prob = ade.SDEProblem(_namespace_drift, _namespace_diffusion, np.array([1.0]), (0.0, 1.0),
                          np.array([1.5, 0.5]))
    eprob = ade.EnsembleProblem(
        prob, prob_func=lambda pr, i, r: pr.remake(p=np.array([1.5, 0.5 + 0.01 * i])))
    kw = dict(trajectories=5, seed=3, dt=0.01, adaptive=False, saveat=[0.5, 1.0])
    on_numpy = ade.solve(eprob, "SRIW1", ensemble="vectorized", **kw)
    strict = ade.solve(eprob, "SRIW1", ensemble="vectorized", backend="array_api_strict", **kw)
    alone = ade.solve(eprob, "SRIW1", ensemble="serial", backend="array_api_strict", **kw)
    for a, b, c in zip(on_numpy, strict, alone):
        np.testing.assert_array_equal(np.from_dlpack(b.u), np.asarray(a.u))
        np.testing.assert_array_equal(np.from_dlpack(b.u), np.from_dlpack(c.u))


def _namespace_robertson(u, p, t):
    xp = u.__array_namespace__()
    y1, y2, y3 = u[..., 0:1], u[..., 1:2], u[..., 2:3]
    k1, k2, k3 = p[..., 0:1], p[..., 1:2], p[..., 2:3]
    return xp.concat([-k1 * y1 + k3 * y2 * y3, k1 * y1 - k2 * y2 ** 2 - k3 * y2 * y3,
                      k2 * y2 ** 2], axis=-1)


def test_vectorized_rosenbrock_on_a_backend_without_sparse_matrices() -> None:
    """Rosenbrock steps of the batch on ``array_api_strict``, which has no sparse matrices:
    the block-diagonal ``W`` is factored densely there (by sparse LU on NumPy), so the
    values differ by the LU's rounding only; the steps are the same."""
    pytest.importorskip("array_api_strict")
    prob = ade.ODEProblem(_namespace_robertson, np.array([1.0, 0.0, 0.0]), (0.0, 1e4),
                          np.array([0.04, 3e7, 1e4]))
    eprob = ade.EnsembleProblem(prob, prob_func=vary_robertson)
    kw = dict(trajectories=3, ensemble="vectorized", rtol=1e-6, atol=1e-10,
              saveat=np.array([0.0, 1.0, 100.0, 1e4]))
    on_numpy = ade.solve(eprob, "Rodas5P", **kw)
    strict = ade.solve(eprob, "Rodas5P", backend="array_api_strict", **kw)
    for a, b in zip(on_numpy, strict):
        assert b.stats.naccept == a.stats.naccept and b.stats.nreject == a.stats.nreject
        # LU rounding (~1e-16 relative), amplified by the steps' stability: 1e-9 of the
        # largest component is six orders of magnitude above it and three below rtol
        np.testing.assert_allclose(np.from_dlpack(b.u), np.asarray(a.u), rtol=0, atol=1e-9)
