"""End to end on the torch installed in the test interpreter: run -> evaluate via the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.evaluation import verdict_frame
from tests.conftest import ROOT, needs_torch

pytestmark = [needs_torch, pytest.mark.torch]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e") / "{device}.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--device", "cpu", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out.parent / "cpu.jsonl", proc


def test_every_case_is_recorded_once_with_the_environment(full_run):
    path, proc = full_run
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    header, results = lines[0], lines[1:]
    assert header["record"] == "run" and header["env"]["torch"] and header["env"]["python"]
    assert len(results) == header["cases"] >= 2000
    assert len({r["id"] for r in results}) == len(results)
    assert proc.stdout.startswith("run: torch") and "0 crash, 0 timeout" in proc.stdout
    # in plan order, whichever worker finished first
    ids = [r["id"] for r in results]
    from harness.cases import load_cases

    order = {c.id: k for k, c in enumerate(load_cases())}
    in_cases = [i for i in ids if i in order]  # (the claims' and reproductions' snippets come first, as planned)
    assert in_cases == sorted(in_cases, key=order.get) and ids[len(ids) - len(in_cases) :] == in_cases
    # the machine, for telling drift from one machine to another apart
    env = header["env"]
    for key in ("cpu_model", "cpu_flags", "libc", "blas", "cpu_capability", "interop_threads"):
        assert key in env, key
    assert env["libc"] and env["threads"] >= 1


def test_evaluate_prints_counts_and_known_behaviour(full_run):
    path, _ = full_run
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "evaluate", str(path)], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    assert "pass" in proc.stdout and proc.stdout.strip().splitlines()[-1].startswith("evaluate:")
    frame = verdict_frame([path]).set_index("id")
    # the well-posed call is right in every dtype
    for dtype in ("float32", "float64"):
        assert frame.loc[f"softmax-4x5/batchmean/log_target=false/intended/{dtype}/functional", "verdict"] == "pass"
    # 'mean' computes what the documentation says, which is not the KL divergence
    row = frame.loc["softmax-4x5/mean/log_target=false/intended/float64/functional"]
    assert row["forward"] == "pass" and row["pitfall"]
    assert any("'mean' divides" in w for w in row["warnings"])
    # shapes that cannot broadcast raise
    assert frame.loc["broadcast_bad-4x5/sum/log_target=false/intended/float32/module", "verdict"] == "expected-error"


def test_fail_on_exit_code(full_run):
    path, _ = full_run
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "evaluate", str(path), "--fail-on", "expected-error"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 1
