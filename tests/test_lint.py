"""The whole tree passes ``ruff check`` and ``ruff format --check`` (the settings in pyproject.toml)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is not importable")


def _ruff(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def _shown(out: subprocess.CompletedProcess) -> str:
    return f"ruff {' '.join(out.args[3:])} exited {out.returncode}:\n{out.stdout}{out.stderr}"


def test_tree_passes_ruff_check():
    out = _ruff("check", ".", cwd=ROOT)
    assert out.returncode == 0, _shown(out)


def test_tree_is_ruff_formatted():
    out = _ruff("format", "--check", ".", cwd=ROOT)
    assert out.returncode == 0, _shown(out)


def test_ruff_checks_can_fail(tmp_path):
    """The two checks above are not vacuous: ruff, run as they run it, rejects a bad file and accepts a good one."""
    config = '[tool.ruff]\nline-length = 120\n\n[tool.ruff.lint]\nselect = ["E", "F"]\n'
    (tmp_path / "pyproject.toml").write_text(config)
    good = tmp_path / "good.py"
    good.write_text('x = {"a": 1}\n')
    assert _ruff("check", "--no-cache", ".", cwd=tmp_path).returncode == 0
    assert _ruff("format", "--no-cache", "--check", ".", cwd=tmp_path).returncode == 0
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nx = {  'a':1 }\n")  # unused import (F401), not ruff-formatted
    check = _ruff("check", "--no-cache", ".", cwd=tmp_path)
    assert check.returncode == 1 and "F401" in check.stdout, _shown(check)
    fmt = _ruff("format", "--no-cache", "--check", ".", cwd=tmp_path)
    assert fmt.returncode == 1 and "bad.py" in fmt.stdout + fmt.stderr, _shown(fmt)
    assert bad.read_text() == "import os\nx = {  'a':1 }\n"  # --check only reports, never rewrites
