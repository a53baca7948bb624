"""Long cases, run in the separate slow job (``pytest -m slow``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import autodiffeq as ade

ROOT = Path(__file__).resolve().parents[1]


def _kepler(u, p, t):
    r3 = (u[0] ** 2 + u[1] ** 2) ** 1.5
    return np.array([u[2], u[3], -u[0] / r3, -u[1] / r3])


def _kepler_exact(t, e):
    """Position of the two-body orbit with eccentricity e starting at pericentre (mu = 1,
    semi-major axis 1): solve Kepler's equation M = E - e sin E by Newton's method."""
    E = t
    for _ in range(50):
        E = E - (E - e * np.sin(E) - t) / (1 - e * np.cos(E))
    return np.array([np.cos(E) - e, np.sqrt(1 - e * e) * np.sin(E)])


@pytest.mark.slow
@pytest.mark.parametrize("alg", ["Tsit5", "Vern7", "DP5"])
def test_kepler_orbit_twenty_periods(alg):
    e = 0.6
    u0 = np.array([1 - e, 0.0, 0.0, np.sqrt((1 + e) / (1 - e))])
    t1 = 20 * 2 * np.pi
    prob = ade.ODEProblem(_kepler, u0, (0.0, t1))
    sol = ade.solve(prob, alg, rtol=1e-11, atol=1e-13, saveat=np.linspace(0, t1, 41))
    exact = np.array([_kepler_exact(t, e) for t in sol.t])
    assert np.max(np.abs(sol.u[:, :2] - exact)) < 1e-6
    energy = 0.5 * (sol.u[:, 2] ** 2 + sol.u[:, 3] ** 2) - 1 / np.hypot(sol.u[:, 0], sol.u[:, 1])
    assert np.max(np.abs(energy + 0.5)) < 1e-8


@pytest.mark.slow
def test_nonstiff_benchmark_quick_run(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "nonstiff.py"), "--quick", "--out",
         str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert "Speedup at target error" in out.stdout
    assert (tmp_path / "work_precision_lotka_volterra.png").stat().st_size > 10_000


@pytest.mark.slow
def test_user_function_benchmark_quick_run(tmp_path):
    """The user-written-f benchmark runs (Lotka–Volterra, DiscreteAdjoint, one timed call per
    row) and reports the replayed autograd f, the difference fallback and the hand-written
    derivatives, each with its gradient error against the reference."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "user_functions.py"), "--quick",
         "--problems", "lv", "--methods", "DiscreteAdjoint", "--no-torch", "--budget", "5",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert "derivative sources: autograd: autograd, numpy FD: fd, numpy+jac: user" in out.stdout
    assert (tmp_path / "user_functions.csv").stat().st_size > 0


@pytest.mark.slow
def test_main_example_runs(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "lotka_volterra.py"), "--out",
         str(tmp_path / "lv.png")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "lv.png").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.parametrize(
    "script, png",
    [
        ("lotka_volterra_training.py", "lotka_volterra_training.png"),
        ("neural_ode_spiral.py", "neural_ode_spiral.png"),
        ("rober_sensitivities.py", "rober_sensitivities.png"),
        ("stiff_brusselator.py", None),
        ("bouncing_ball.py", "bouncing_ball.png"),
    ],
)
def test_gradient_and_stiff_examples_run_and_converge(tmp_path, script, png):
    """Each example checks its own result (loss fell 100-fold, sensitivities match finite
    differences, ...) and exits non-zero otherwise."""
    args = [sys.executable, str(ROOT / "examples" / script)]
    if png is not None:
        args += ["--out", str(tmp_path / png)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    if png is not None:
        assert (tmp_path / png).stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dde_lotka_volterra", "mackey_glass", "stiff_dde"])
def test_delay_equation_examples_run(name, tmp_path):
    """Each delay-equation example checks itself (fitted parameters, errors against its
    independent SciPy reference) and exits 1 when a check fails."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{name}.py"), "--out",
         str(tmp_path / f"{name}.png")],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert (tmp_path / f"{name}.png").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sde_lotka_volterra", "neural_sde", "ensemble_monte_carlo",
                                  "ensemble_dask"])
def test_sde_and_ensemble_examples_run(name, tmp_path):
    """Each example checks itself and exits 1 when a check fails: the SDE examples (the
    pathwise gradient against central differences and the fitted parameters; the held-out
    loss of the neural SDE fell 100-fold), the ensemble examples (Monte Carlo means against
    the analytic ones, executors bit for bit against each other)."""
    if name == "ensemble_dask":
        pytest.importorskip("distributed", reason="dask.distributed (extra 'dask')")
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{name}.py"), "--out",
         str(tmp_path / f"{name}.png")],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert (tmp_path / f"{name}.png").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dde", "sde", "ensemble"])
def test_family_benchmark_quick_run(name, tmp_path):
    """benchmarks/dde.py, sde.py and ensemble.py run (peers that are not installed are
    skipped with a message)."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), "--quick", "--out",
         str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert (tmp_path / f"{name}.csv").stat().st_size > 100


@pytest.mark.slow
def test_gpu_benchmark_code_runs_on_the_cpu(tmp_path):
    """benchmarks/gpu.py's code paths with ``--backend numpy`` (what the GPU run executes with
    CuPy; peers that are not installed are skipped), on a small Brusselator."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--quick", "--backend", "numpy",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert (tmp_path / "gpu.csv").stat().st_size > 100


@pytest.mark.slow
def test_layers_chapter_code_trains(tmp_path):
    """The code of docs/layers.md runs as a reader runs it, block after block, and its
    trainings reduce their losses at least tenfold."""
    import re

    text = (ROOT / "docs" / "layers.md").read_text()
    script = tmp_path / "layers_doc.py"
    script.write_text("\n".join(re.findall(r"```python\n(.*?)```", text, re.S)))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    falls = re.findall(r"loss ([0-9.e+-]+) -> ([0-9.e+-]+)", out.stdout)
    assert len(falls) == 2, out.stdout
    for before, after in falls:
        assert float(after) < float(before) / 10, out.stdout


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lotka_volterra_fit", "stiff_rober", "gradient_cost",
                                  "neural_ode_sde_dde", "neural_ode_gpu"])
def test_paper_experiments_run(name, tmp_path):
    """The paper's experiments (examples/paper/, docs/paper.md) check themselves (routes
    agree and recover the parameters; explicit methods fail on ROBER and Rosenbrock succeeds;
    forward cost grows with the parameters, adjoint cost stays flat; the neural DEs train)
    and exit 1 when a check fails."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "paper" / f"{name}.py"), "--out",
         str(tmp_path / f"{name}.png")],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert (tmp_path / f"{name}.png").stat().st_size > 10_000
