"""The command line, and a broken third-party plugin seen through real entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_plugins_text_and_json():
    out = _run("-m", "autodiffeq", "plugins")
    assert out.returncode == 0, out.stderr
    assert "explicit  (autodiffeq" in out.stdout
    assert "Tsit5" in out.stdout and "order=5" in out.stdout and "dense-order=4" in out.stdout
    assert "backend  numpy" in out.stdout
    data = json.loads(_run("-m", "autodiffeq", "plugins", "--json").stdout)
    explicit = next(p for p in data["plugins"] if p["name"] == "explicit")
    tsit5 = next(s for s in explicit["solvers"] if s["name"] == "Tsit5")
    assert tsit5["family"] == "explicit_rk" and tsit5["adaptive"] is True
    assert data["failed"] == []


@pytest.fixture
def broken_plugin_path(tmp_path: Path) -> dict:
    """A fake installed distribution whose autodiffeq plugin raises on import."""
    dist = tmp_path / "brokenplug-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[autodiffeq]\nbroken = brokenplug_mod\n")
    (tmp_path / "brokenplug_mod.py").write_text("raise ImportError('deliberately broken')\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    return env


def test_broken_plugin_does_not_break_import_solve_or_cli(broken_plugin_path):
    code = textwrap.dedent(
        """
        import warnings
        import autodiffeq as ade
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            prob = ade.ODEProblem(lambda u, p, t: -u, [1.0], (0.0, 1.0))
            print(ade.solve(prob, "Tsit5").retcode)
        print([type(w.message).__name__ for w in caught])
        print([(f.name, f.distribution, f.phase) for f in ade.registry().failed_plugins()])
        """
    )
    out = _run("-c", code, env=broken_plugin_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "Success"
    assert "PluginLoadWarning" in lines[1]
    assert lines[2] == "[('broken', 'brokenplug', 'import')]"
    cli = _run("-m", "autodiffeq", "plugins", env=broken_plugin_path)
    assert cli.returncode == 0
    assert "failed plugins:" in cli.stdout and "deliberately broken" in cli.stdout
    strict = _run("-m", "autodiffeq", "plugins", "--strict", env=broken_plugin_path)
    assert strict.returncode == 1
