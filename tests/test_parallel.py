"""Several workers per device (``harness run --jobs N``): the cases are shared out, every
case is run and recorded exactly once, crashes and hangs in one share leave the others
running, a worker that cannot start stops the whole run, and the results equal a
one-worker run's apart from timings and line order."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from harness import results, runner
from harness.cases import load_cases
from harness.runner import RunnerError, default_jobs, jobs_for, run
from tests.conftest import ROOT, needs_torch

CASES = (
    "version: 1\nfamilies:\n  - name: par\n    generator: softmax\n    shape: [3, 4]\n"
    "    axes: {reduction: [sum, mean, none], log_target: [false, true], order: [intended], "
    "dtype: [float32, float64], api: [functional, module]}\n"
)


@pytest.fixture
def cases(tmp_path):
    path = tmp_path / "cases.yaml"
    path.write_text(CASES)
    found = load_cases([path])
    assert len(found) == 24
    return found


def _by_id(path):
    rf = results.read(path)
    by_id = {}
    for rec in rf.results:
        assert rec["id"] not in by_id, f"{rec['id']} recorded twice"
        by_id[rec["id"]] = rec
    return rf, by_id


def _comparable(rec):
    """A result without what legitimately differs between runs."""
    return {k: v for k, v in rec.items() if k not in ("seconds", "run")}


def test_jobs_default_to_cores_on_cpu_and_one_on_a_gpu(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7}, raising=False)
    assert default_jobs("cpu") == runner.MAX_JOBS == 4
    assert default_jobs("cuda") == default_jobs("cuda:1") == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert default_jobs("cpu") == 2


def test_jobs_are_limited_by_the_number_of_cases(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    per = runner.CASES_PER_JOB
    assert jobs_for("cpu", None, 1) == 1
    assert jobs_for("cpu", None, per) == 1
    assert jobs_for("cpu", None, per + 1) == 2
    assert jobs_for("cpu", None, 100 * per) == runner.MAX_JOBS
    assert jobs_for("cpu", 8, 100 * per) == 8  # asked for: more than the default ceiling
    assert jobs_for("cpu", 3, 2) == 1  # never an idle worker
    assert jobs_for("cuda", None, 100 * per) == 1


@needs_torch
def test_shared_out_run_equals_a_one_worker_run(tmp_path, cases, monkeypatch):
    monkeypatch.setattr(runner, "CASES_PER_JOB", 1)
    one, three = tmp_path / "one.jsonl", tmp_path / "three.jsonl"
    (s1,) = run(cases, one, jobs=1)
    (s3,) = run(cases, three, jobs=3)
    assert (s1.jobs, s3.jobs) == (1, 3)
    assert s3.finished == s1.finished == len(cases) and s3.restarts == 0
    rf1, a = _by_id(one)
    rf3, b = _by_id(three)
    assert set(a) == set(b) == {c.id for c in cases}
    assert all(_comparable(a[i]) == _comparable(b[i]) for i in a)
    assert len(rf3.runs) == 1 and rf3.runs[0]["jobs"] == 3 and rf1.runs[0]["jobs"] == 1


@needs_torch
def test_crash_and_hang_in_one_share_leave_the_others_running(tmp_path, cases, monkeypatch):
    monkeypatch.setattr(runner, "CASES_PER_JOB", 1)
    ids = [c.id for c in cases]
    # round-robin over 2 workers: even indices go to the first, odd to the second
    hooks = {ids[0]: "crash", ids[2]: "hang", ids[5]: "exit", ids[23]: "crash"}
    env = {**os.environ, "HARNESS_TEST_HOOKS": "1"}
    out = tmp_path / "out.jsonl"
    (summary,) = run(cases, out, hooks=hooks, timeout=3.0, env=env, jobs=2)
    rf, by_id = _by_id(out)
    assert set(by_id) == set(ids)
    assert [by_id[i]["status"] for i in (ids[0], ids[2], ids[5], ids[23])] == ["crash", "timeout", "crash", "crash"]
    assert all(by_id[i]["status"] == "ok" for i in ids if i not in hooks)
    assert (summary.jobs, summary.finished, summary.crashed, summary.timed_out) == (2, 20, 3, 1)
    assert summary.restarts == 3  # a fresh worker after each failure but the last case's
    assert len(rf.runs) == 1, "one header however many workers"


def test_a_worker_that_cannot_start_stops_every_share(tmp_path, cases, monkeypatch):
    monkeypatch.setattr(runner, "CASES_PER_JOB", 1)
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'no torch here' >&2\nexit 1\n")
    broken.chmod(0o755)
    out = tmp_path / "out.jsonl"
    with pytest.raises(RunnerError, match="no torch here"):
        run(cases, out, python=str(broken), jobs=3)
    assert not out.exists(), "nothing ran, so no results file"


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_bad_jobs_are_refused(tmp_path, value):
    out = str(tmp_path / "r.jsonl")
    base = [sys.executable, "-m", "harness", "run", "--filter", "softmax-5/*", "--out", out]
    env = {**os.environ, "HARNESS_JOBS": value}
    by_env = subprocess.run(base, cwd=ROOT, env=env, capture_output=True, text=True)
    by_flag = subprocess.run([*base, "--jobs", value], cwd=ROOT, capture_output=True, text=True)
    assert by_env.returncode == 2 and "HARNESS_JOBS" in by_env.stderr and repr(value) in by_env.stderr
    assert by_flag.returncode == 2 and "--jobs" in by_flag.stderr
    assert not (tmp_path / "r.jsonl").exists()


@needs_torch
def test_interrupted_shared_out_run_stops_every_worker_and_resumes(tmp_path):
    """SIGTERM to `harness run` with two workers: both workers end, the finished results
    are kept, and --resume runs exactly the rest."""
    from tests.test_resume import _children, _result_count, _wait_gone

    plan, out = tmp_path / "plan.json", tmp_path / "out.jsonl"
    subprocess.run(
        [sys.executable, "-m", "harness", "plan", "--out", str(plan)], cwd=ROOT, check=True, capture_output=True
    )
    cmd = [
        sys.executable,
        "-m",
        "harness",
        "run",
        "--plan",
        str(plan),
        "--device",
        "cpu",
        "--out",
        str(out),
        "--jobs",
        "2",
        "--quiet",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers = []
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        workers = _children(proc.pid)
        if len(workers) == 2 and _result_count(out) >= 200:
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.005)
    _, err = proc.communicate(timeout=60)
    assert len(workers) == 2, "the run ended before two workers were seen"
    assert proc.returncode != 0 and "--resume" in err
    assert all(_wait_gone(pid, 10) for pid in workers), "a worker outlived the interrupted run"
    kept = {r["id"] for r in results.read(out).results}
    total = len(json.loads(plan.read_text())["cases"])
    assert 200 <= len(kept) < total

    second = subprocess.run([*cmd, "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert f"{total - len(kept)} finished" in second.stdout and f"{len(kept)} resumed" in second.stdout
    rf, by_id = _by_id(out)
    assert len(by_id) == total
