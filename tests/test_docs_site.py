"""The documentation site builds with ``mkdocs build --strict`` (warnings are errors: a
broken link, a missing anchor, a docstring the API reference cannot parse)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_site_builds_strictly(tmp_path) -> None:
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (extra 'docs')")
    pytest.importorskip("mkdocstrings", reason="mkdocstrings is not installed (extra 'docs')")
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
         "-d", str(tmp_path / "site")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "solve" / "index.html").stat().st_size > 10_000
    assert (tmp_path / "site" / "layers" / "index.html").exists()
