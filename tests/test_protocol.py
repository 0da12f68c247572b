"""One plan protocol (harness/worker.py PROTOCOL), checked on both sides.

* build_plan writes PROTOCOL into every plan.
* ``python -m harness run --plan FILE`` with a plan of an older or a newer protocol is a
  clear error (exit 3, saying which side is older) before any worker, or torch, starts.
* A worker handed such a plan anyway answers with a fatal event and a non-zero exit,
  which the supervisor turns into RunnerError and the command line into exit 3.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness import cli, runner
from harness.cases import load_cases
from harness.runner import RunnerError, build_plan
from harness.worker import PROTOCOL, protocol_problem
from tests.conftest import ROOT, needs_torch

CASES = """\
version: 1
description: a few small cases
families:
  - name: protocol
    generator: softmax
    shape: [2, 3]
    seed: 3
"""

# (plan protocol, the words the message must hold)
MISMATCHES = {
    "older": (PROTOCOL - 1, ["is older than this worker's protocol", "python -m harness plan"]),
    "newer": (PROTOCOL + 1, ["is newer than this worker's protocol", "update the harness"]),
    "missing": (None, ["without a protocol number", "is older than", "python -m harness plan"]),
}


@pytest.fixture
def plan(write_cases):
    return build_plan(load_cases([write_cases(CASES)]))


def _plan_file(tmp_path, plan, protocol):
    plan = dict(plan)
    if protocol is None:
        plan.pop("protocol")
    else:
        plan["protocol"] = protocol
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    return path


def test_build_plan_carries_the_worker_protocol(plan):
    assert plan["protocol"] == PROTOCOL
    assert protocol_problem(plan["protocol"]) is None
    runner.check_protocol(plan)  # no error


@pytest.mark.parametrize("side", sorted(MISMATCHES))
def test_check_protocol_names_the_older_side(side):
    protocol, words = MISMATCHES[side]
    plan = {"cases": []} if protocol is None else {"protocol": protocol, "cases": []}
    with pytest.raises(RunnerError) as info:
        runner.check_protocol(plan)
    for word in words:
        assert word in str(info.value)
    assert str(PROTOCOL) in str(info.value)


@pytest.mark.parametrize("side", sorted(MISMATCHES))
def test_run_refuses_a_plan_of_another_protocol_before_starting_a_worker(tmp_path, plan, side):
    """No torch needed: the interpreter named by --python does not even exist, so any
    attempt to start a worker would fail differently (and say so)."""
    protocol, words = MISMATCHES[side]
    path = _plan_file(tmp_path, plan, protocol)
    out = tmp_path / "out-{device}.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--plan", str(path), "--device", "cpu", "--out", str(out)]
        + ["--python", str(tmp_path / "no-such-python"), "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == cli.EXIT_ENV == 3, proc.stderr
    assert proc.stderr.startswith(f"error: {path}: "), proc.stderr
    for word in words:
        assert word in proc.stderr
    assert proc.stdout == ""
    assert not list(tmp_path.glob("out-*"))


def test_run_devices_and_run_check_the_protocol_too(tmp_path, plan):
    stale = {**plan, "protocol": PROTOCOL - 1}
    for call in (
        lambda: runner.run_devices(stale, tmp_path / "{device}.jsonl", devices=["cpu"], python="/no/such/python"),
        lambda: runner.run(None, tmp_path / "cpu.jsonl", python="/no/such/python", plan=stale),
    ):
        with pytest.raises(RunnerError, match="is older than this worker's protocol"):
            call()
    assert not list(tmp_path.glob("*.jsonl"))


@needs_torch
@pytest.mark.parametrize("side", ["older", "newer"])
def test_worker_refuses_a_plan_of_another_protocol(tmp_path, plan, side):
    protocol, words = MISMATCHES[side]
    path = _plan_file(tmp_path, plan, protocol)
    indices = tmp_path / "indices.json"
    indices.write_text(json.dumps([0]))
    proc = subprocess.run(
        [sys.executable, str(runner.WORKER), str(path), str(indices), "cpu"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [e["event"] for e in events] == ["fatal"], proc.stdout
    for word in words:
        assert word in events[0]["message"]


@needs_torch
def test_supervisor_turns_the_workers_fatal_event_into_exit_3(tmp_path, plan, monkeypatch, capsys):
    """With the host's own check out of the way, the worker's check still stops the run:
    RunnerError naming the device, exit 3 with the worker's message, no results."""
    monkeypatch.setattr(runner, "check_protocol", lambda plan: None)
    path = _plan_file(tmp_path, plan, PROTOCOL - 1)
    out = tmp_path / "out-{device}.jsonl"
    code = cli.main(["run", "--plan", str(path), "--device", "cpu", "--out", str(out), "--quiet", "--jobs", "1"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_ENV, err
    assert f"error: cpu: plan protocol {PROTOCOL - 1} is older than this worker's protocol {PROTOCOL}" in err
    assert not list(tmp_path.glob("out-*"))
