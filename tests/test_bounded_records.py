"""Bounded records: a tensor above harness.tensors.LIMIT elements is recorded as its summary
(digest, element classes, errors against the reference), and every reader judges it."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import evaluate, findings, gate, tensors
from harness.cases import load_cases
from harness.evaluation import verdict_frame
from harness.runner import _bounded, _unpack
from tests.conftest import HAS_TORCH, ROOT

RECORD_LIMIT = 64 * 1024
BIG = """
version: 1
families:
  - name: big
    scope: valid
    description: A million elements, uniform distributions.
    generator: uniform
    shape: [1000, 1000]
    seed: 1
    axes: {reduction: [none, sum], log_target: [false], order: [intended], dtype: [float64, float32], api: [functional]}
"""


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "big.yaml"
    path.write_text(BIG.lstrip())
    return path


@pytest.fixture(scope="module")
def big_cases(big_file):
    return {c.id: c for c in load_cases([big_file])}


def _wire(arr: np.ndarray, dtype: str) -> dict:
    """A tensor as the worker sends it (base64 float64 bytes)."""
    a = np.ascontiguousarray(arr, dtype="<f8")
    return {"shape": list(a.shape), "dtype": dtype, "f64": base64.b64encode(a.tobytes()).decode()}


def _record(case, output: np.ndarray, grads: dict) -> dict:
    """The record the runner writes for worker output ``output``/``grads`` (float64 arrays)."""
    ev = {
        "record": "result",
        "status": "ok",
        "id": case.id,
        "device": "cpu",
        "digest": None,
        "error": None,
        "grad_errors": {},
        "warnings": [],
        "output": _unpack(_wire(output, case.dtype)),
        "grads": {k: _unpack(_wire(v, case.dtype)) for k, v in grads.items()},
    }
    return json.loads(json.dumps(_bounded(ev, evaluate.summarizer({case.id: case}))))


def _exact(case):
    ref = evaluate.case_references(case).documented
    return ref.forward.value, {k: q.value for k, q in ref.grads.items()}


def test_a_million_elements_make_a_small_record_judged_as_the_whole_tensor(big_cases):
    case = big_cases["big-1000x1000/none/log_target=false/intended/float64/functional"]
    out, grads = _exact(case)
    assert out.size == 10**6
    rec = _record(case, out, grads)
    assert len(json.dumps(rec)) < 512 * (1 + len(grads))  # far below RECORD_LIMIT, whatever the size
    assert tensors.is_summary(rec["output"]) and tensors.size(rec["output"]) == 10**6
    assert rec["output"]["classes"]["0"] + rec["output"]["classes"]["-0"] == 10**6  # KL of equal distributions
    assert rec["output"]["checks"]["documented"]["verdict"] == "pass"
    row = evaluate.evaluate_record(case, rec)
    assert (row["verdict"], row["forward"], row["grad_input"]) == ("pass", "pass", "pass")

    # one nan among a million: the summary says so, and the verdict is the whole tensor's
    bad = out.copy()
    bad[123, 456] = np.nan
    rec = _record(case, bad, grads)
    assert rec["output"]["classes"]["nan"] == 1
    row = evaluate.evaluate_record(case, rec)
    assert row["forward"] == "nan" and "1 of 1000000 values nan" in row["detail"]
    # a value off by more than the tolerance on one element: mismatch, with its error in ulps
    off = out.copy()
    off[0, 0] = 1e-3
    rec = _record(case, off, grads)
    assert evaluate.evaluate_record(case, rec)["forward"] == "mismatch"
    assert rec["output"]["checks"]["documented"]["abs"] == pytest.approx(1e-3)


def test_a_summary_judged_with_another_tolerance_or_without_checks_is_stale(big_cases):
    case = big_cases["big-1000x1000/none/log_target=false/intended/float64/functional"]
    out, grads = _exact(case)
    rec = _record(case, out, grads)
    rec["output"]["checks"]["documented"]["tolerance"] = {"rtol": 1.0, "atol": 1.0}
    assert evaluate.evaluate_record(case, rec)["forward"] == "stale"
    plain = _bounded(
        {"output": _unpack(_wire(out, case.dtype)), "grads": {}, "id": case.id}
    )  # no summariser: digest and classes only
    assert "checks" not in plain["output"] and tensors.size(plain["output"]) == 10**6


def test_findings_gate_and_oracle_read_summaries(big_cases):
    case = big_cases["big-1000x1000/none/log_target=false/intended/float64/functional"]
    out, grads = _exact(case)
    bad = out.copy()
    bad[:2, :] = np.nan
    a, b = _record(case, out, grads)["output"], _record(case, bad, grads)["output"]
    oa, ob = findings._tensor_outcome(a), findings._tensor_outcome(b)
    assert not oa.same_behaviour(ob) and oa.summary
    frm, to, positions = findings.transition(oa, ob)
    assert (frm, to, positions) == ("0", "nan", ())  # 2,000 zeros became nan; where is not known
    assert gate.value_hash(a) != gate.value_hash(b) and gate.value_hash(a) == gate.value_hash(dict(a))
    from harness.oracle import compare_outputs

    assert compare_outputs(a, dict(a), "float64")[0] == "same"
    assert compare_outputs(a, b, "float64")[0] == "differ"


def test_a_results_file_of_summaries_reads_and_judges(big_cases, big_file, tmp_path):
    case = big_cases["big-1000x1000/sum/log_target=false/intended/float32/functional"]
    case_none = big_cases["big-1000x1000/none/log_target=false/intended/float32/functional"]
    out, grads = _exact(case_none)
    rec = _record(case_none, out, grads)
    header = {"record": "run", "schema": 1, "device": "cpu", "env": {"torch": "2.5.1", "python": "3.11"}}
    path = tmp_path / "cpu.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in (header, rec)) + "\n")
    frame = verdict_frame([path], [big_file])
    assert frame.set_index("id").loc[case_none.id, "verdict"] == "pass"
    assert case.id not in set(frame["id"])


def _torch_python():
    """An interpreter with torch: $HARNESS_TEST_TORCH_PYTHON, or this one when it has torch."""
    given = os.environ.get("HARNESS_TEST_TORCH_PYTHON")
    if given:
        return given
    return sys.executable if HAS_TORCH else None


@pytest.mark.torch
@pytest.mark.skipif(
    _torch_python() is None, reason="no torch: set HARNESS_TEST_TORCH_PYTHON to an interpreter with torch"
)
def test_a_million_element_case_through_the_real_runner(tmp_path):
    cases = tmp_path / "big.yaml"
    cases.write_text(BIG.lstrip())
    out = tmp_path / "{device}.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--cases", str(cases), "--device", "cpu", "--out", str(out)]
        + ["--python", _torch_python(), "--jobs", "1", "--timeout", "300"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    path = Path(str(out).replace("{device}", "cpu"))
    lines = path.read_bytes().splitlines()
    assert len(lines) == 1 + 4 and max(map(len, lines)) < RECORD_LIMIT
    frame = verdict_frame([path], [cases]).set_index("id")
    none64 = frame.loc["big-1000x1000/none/log_target=false/intended/float64/functional"]
    assert none64["verdict"] == "pass", none64["detail"]
    assert tensors.is_summary(none64["output"]) and tensors.size(none64["output"]) == 10**6
    # a sum of a million float32 zeros: one exact value
    assert frame.loc["big-1000x1000/sum/log_target=false/intended/float32/functional", "verdict"] == "pass"


def test_exact_values_whose_bytes_start_like_a_summary_are_not_one():
    import struct

    value = struct.unpack("<d", b"S" + b"\x00" * 6 + b"\x3f")[0]  # packed bits begin with b"S"
    exact = findings._tensor_outcome({"dtype": "float64", "shape": [1], "values": [value]})
    assert exact.bits[:1] == b"S" and not exact.summary
    other = findings._tensor_outcome({"dtype": "float64", "shape": [1], "values": [float("nan")]})
    assert findings.transition(exact, other) == ("finite", "nan", (0,))
