"""Shared fixtures: case files written into tmp_path, the repository root."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch is not importable in the test interpreter")


@pytest.fixture
def write_cases(tmp_path):
    """write_cases(text) -> path of a case file holding the dedented text."""

    def write(text: str, name: str = "cases.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write


@pytest.fixture(autouse=True, scope="session")
def _evaluation_cache(tmp_path_factory):
    """Verdicts cached by the tests go to a temporary folder, not the checkout's build/cache."""
    import os

    old = os.environ.get("HARNESS_CACHE_DIR")
    os.environ["HARNESS_CACHE_DIR"] = str(tmp_path_factory.mktemp("evaluate-cache"))
    yield
    if old is None:
        os.environ.pop("HARNESS_CACHE_DIR", None)
    else:
        os.environ["HARNESS_CACHE_DIR"] = old
