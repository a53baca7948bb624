"""The example third-party package (examples/thirdparty_solver): registered through a real
entry point, usable by name, listed by the CLI, and its two-line conformance test passes —
and fails when it declares a false order."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "thirdparty_solver"


def _install_as_distribution(root: Path, src: Path) -> dict:
    """Make ``src`` importable and advertise its entry point, as pip would, via a
    ``.dist-info`` folder on PYTHONPATH (no network, no build)."""
    dist = root / "autodiffeq_heun_example-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: autodiffeq-heun-example\nVersion: 0.1.0\n"
    )
    (dist / "entry_points.txt").write_text(
        "[autodiffeq]\nexample_heun = autodiffeq_heun_example\n"
    )
    shutil.copytree(src / "autodiffeq_heun_example", root / "autodiffeq_heun_example")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    return env


@pytest.fixture
def example_env(tmp_path: Path) -> dict:
    site = tmp_path / "site"
    site.mkdir()
    return _install_as_distribution(site, EXAMPLE / "src")


def _pytest(env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )


def test_example_plugin_usable_listed_and_conformant(example_env, tmp_path):
    code = (
        "import autodiffeq as ade\n"
        "prob = ade.ODEProblem(lambda u, p, t: -u, [1.0], (0.0, 1.0))\n"
        "sol = ade.solve(prob, 'ExampleHeun', rtol=1e-6, atol=1e-8)\n"
        "print(sol.retcode, abs(float(sol.u[-1, 0]) - 0.36787944117144233) < 1e-4)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=example_env, capture_output=True,
                         text=True, timeout=120)
    assert out.stdout.split() == ["Success", "True"], out.stderr
    cli = subprocess.run([sys.executable, "-m", "autodiffeq", "plugins"], env=example_env,
                         capture_output=True, text=True, timeout=120)
    assert "example_heun  (autodiffeq-heun-example 0.1.0)" in cli.stdout
    assert "ExampleHeun" in cli.stdout
    run = _pytest(example_env, EXAMPLE)
    assert run.returncode == 0, run.stdout[-3000:]
    assert " passed" in run.stdout and "failed" not in run.stdout


def test_example_plugin_with_false_order_fails_conformance(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(EXAMPLE / "src", src)
    init = src / "autodiffeq_heun_example" / "__init__.py"
    text = init.read_text()
    assert "order=2," in text
    init.write_text(text.replace("order=2,", "order=3,", 1))
    site = tmp_path / "site"
    site.mkdir()
    env = _install_as_distribution(site, src)
    shutil.copytree(EXAMPLE / "tests", tmp_path / "tests")
    shutil.copy(EXAMPLE / "pyproject.toml", tmp_path / "pyproject.toml")
    run = _pytest(env, tmp_path)
    assert run.returncode == 1
    assert "measured convergence order 2.0" in run.stdout
    assert "declares order 3" in run.stdout
