"""A rerun leaves the checkout clean: `nox -s report` writes below build/ only, and
`nox -s publish` of the same results as the published ones rewrites reports/ byte for byte,
in a temporary clone of this checkout (the real sessions, run by nox; no torch)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def _git(cwd, *args) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """This checkout as a clone: HEAD, then the working tree's changes to tracked files on top
    (what a commit of them would hold), committed there so that `git status` starts clean."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout")
    dest = tmp_path_factory.mktemp("clone") / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True)
    diff = _git(ROOT, "diff", "HEAD", "--binary")
    if diff:
        subprocess.run(["git", "apply", "--whitespace=nowarn"], cwd=dest, input=diff, text=True, check=True)
    for path in _git(ROOT, "ls-files", "--others", "--exclude-standard").splitlines():
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / path, target)
    _git(dest, "add", "-A")
    _git(dest, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "as tested")
    assert _git(dest, "status", "--porcelain") == ""
    return dest


def _nox(clone, *args):
    out = subprocess.run(
        [sys.executable, "-m", "nox", "--no-install", *args], cwd=clone, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out.stdout + out.stderr


def test_the_local_report_writes_below_build_only(clone):
    log = _nox(clone, "-s", "report")
    assert (clone / "build" / "work" / "report" / "index.html").is_file(), log
    assert _git(clone, "status", "--porcelain") == ""


def test_publishing_the_published_results_again_changes_nothing(clone):
    """A journal of release 2.5 made from its published records (with their timings), then
    `nox -s publish`: the store, reports/ and README come out byte for byte as committed."""
    from harness import results

    journal = clone / "build" / "journal" / "2.5"
    journal.mkdir(parents=True)
    published = clone / "reports" / "results" / "2.5"
    rf = results.read(published / "cpu.index")
    (journal / "cpu.jsonl").write_text(results.json_lines(rf))
    shutil.copyfile(published / "cpu.index.timings", journal / "cpu.jsonl.timings")
    log = _nox(clone, "-s", "publish")
    assert "store:" in log and "report:" in log, log
    assert _git(clone, "status", "--porcelain") == ""


def test_publish_without_runs_says_so(clone):
    shutil.rmtree(clone / "build" / "journal", ignore_errors=True)
    out = subprocess.run([sys.executable, "-m", "nox", "-s", "publish"], cwd=clone, capture_output=True, text=True)
    assert out.returncode != 0 and "nothing to publish" in out.stdout + out.stderr
    assert _git(clone, "status", "--porcelain") == ""
