"""Bad results never replace a good report: `harness report` on an empty, corrupt, truncated
or unknown-schema results file exits 2 with one line naming the file (and line), and writes
nothing; a report that is written goes to a temporary folder first."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from harness import results
from harness.report import assemble
from tests.conftest import ROOT

HEADER = {"record": "run", "schema": 1, "device": "cpu", "env": {"torch": "9.9.0", "python": "3.11"}}
BAD = {
    "empty": ("", "no results"),
    "corrupt": (json.dumps(HEADER) + "\nnot json\n", ":2: not a JSON object"),
    "truncated": (json.dumps(HEADER) + '\n{"record": "result", "id": "x", "dev', ":2: truncated last line"),
    "unknown schema": (json.dumps({**HEADER, "schema": 99}) + "\n", ":1: results schema 99"),
}


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A small store (two committed releases, every 12th result) and the report made from it."""
    tmp = tmp_path_factory.mktemp("published")
    store = tmp / "results"
    for rel in ("2.4", "2.5"):
        rf = results.read(ROOT / "reports" / "results" / rel / "cpu.index")
        results.write_index(store / rel / "cpu.index", rf.runs, rf.results[::12])
    out = tmp / "report"
    proc = _report(store, out, tmp / "cache")
    assert proc.returncode == 0, proc.stderr
    return store, out, _files(out)


def _report(store, out, cache):
    env = {**os.environ, "HARNESS_CACHE_DIR": str(cache)}
    return subprocess.run(
        [sys.executable, "-m", "harness", "report", "--results", str(store), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )


def _files(out) -> dict:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_results_never_replace_a_report(published, kind, tmp_path):
    store, out, before = published
    text, expected = BAD[kind]
    bad = store / "9.9" / "cpu.jsonl"
    bad.parent.mkdir(exist_ok=True)
    bad.write_text(text)
    try:
        proc = _report(store, out, tmp_path / "cache")
    finally:
        bad.unlink()
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}") and expected in lines[0], lines
    assert "the report was not written" in lines[0] and "Traceback" not in proc.stderr
    assert _files(out) == before  # every page as it was, none deleted
    assert len([n for n in before if n.startswith("cases/")]) > 3


def test_a_broken_index_of_the_store_is_refused_too(published, tmp_path):
    store, out, before = published
    index = store / "2.5" / "cpu.index"
    good = index.read_bytes()
    index.write_bytes(good.replace(b"\t", b" ", 1))
    try:
        proc = _report(store, out, tmp_path / "cache")
    finally:
        index.write_bytes(good)
    assert proc.returncode == 2 and f"error: {index}:2: expected" in proc.stderr
    assert _files(out) == before


def test_files_go_into_place_only_once_all_are_written(tmp_path, monkeypatch):
    """The report's files are written to a temporary folder first: a write that fails
    leaves the old files as they were, and no temporary folder behind."""
    out = tmp_path / "out"
    (out / "cases").mkdir(parents=True)
    (out / "index.html").write_text("old")
    (out / "cases" / "a.html").write_text("old page")
    real = type(out).write_bytes

    def failing(path, data):
        if path.name == "b.html":
            raise OSError("disk full")
        return real(path, data)

    monkeypatch.setattr(type(out), "write_bytes", failing)
    with pytest.raises(OSError, match="disk full"):
        assemble._replace_files(out, {"index.html": b"new", "cases/b.html": b"new page"}, stale="cases/*.html")
    assert (out / "index.html").read_text() == "old" and (out / "cases" / "a.html").read_text() == "old page"
    assert sorted(p.name for p in out.iterdir()) == ["cases", "index.html"]
    monkeypatch.undo()
    assemble._replace_files(out, {"index.html": b"new", "cases/b.html": b"new page"}, stale="cases/*.html")
    assert (out / "index.html").read_text() == "new" and sorted(p.name for p in (out / "cases").iterdir()) == ["b.html"]
