"""The regression gate (python -m harness gate): every exit path, on small synthetic results."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness import cli, gate
from harness.cases import load_cases
from harness.evaluate import case_references
from harness.inputs import input_digest, plan_entry


@pytest.fixture(scope="module")
def cases():
    """Three real float64 cases whose documented reference is finite everywhere and not all zero."""
    picked = []
    for case in load_cases():
        if case.dtype != "float64" or case.family.expect_error:
            continue
        ref = case_references(case).documented
        if ref.broadcast_error or ref.forward is None or ref.forward.value.size == 0:
            continue
        if not np.isfinite(ref.forward.value).all() or ref.forward.undefined.any() or not ref.forward.value.any():
            continue
        if case.family.grad and any(ref.grads.get(a) is None for a in ("first", "second")):
            continue
        picked.append(case)
        if len(picked) == 3:
            return picked
    pytest.fail("no suitable cases in cases/*.yaml")


def _tensor(q, values=None):
    values = q.value if values is None else values
    return {"shape": list(q.value.shape), "dtype": "float64", "values": np.asarray(values, float).ravel().tolist()}


def record(case, device="cpu", output=None, status="ok", seconds=0.01):
    """A result line as the runner writes it; by default the reference value itself (a pass)."""
    ref = case_references(case).documented
    rec = {
        "record": "result",
        "status": status,
        "id": case.id,
        "device": device,
        "digest": input_digest(plan_entry(case, {})),
        "output": None,
        "grads": {},
        "grad_errors": {},
        "error": None,
        "warnings": [],
        "seconds": seconds,
    }
    if status != "ok":
        rec["detail"] = "killed by signal SIGSEGV"
        return rec
    rec["output"] = _tensor(ref.forward, output)
    if case.family.grad:
        rec["grads"] = {key: _tensor(q) for key, q in ref.grads.items()}  # first and second order
    return rec


def test_a_record_made_before_double_backward_is_not_compared(cases):
    """A record without the second-order phases (made before they were recorded) has no
    behaviour hash and a verdict without them: the gate counts it apart, not compared."""
    import pandas as pd

    from harness.evaluate import evaluate_record

    grad_case = next(c for c in cases if c.family.grad)
    new = record(grad_case)
    old = {**new, "grads": {k: v for k, v in new["grads"].items() if k in ("first", "second")}}
    rows = [
        {**evaluate_record(grad_case, r), "release": "2.5", "torch": "2.5.1", "grads": r["grads"], "errors": None}
        for r in (new, old)
    ]
    assert rows[0]["grad2_target"] == "pass" and rows[1]["grad2_target"] is None  # not judged
    assert rows[0]["verdict"] == rows[1]["verdict"] == "pass"
    frame = pd.DataFrame(rows)
    new_entry, old_entry = (gate.snapshot(frame.iloc[[i]])[("2.5", "cpu")].cases[grad_case.id] for i in (0, 1))
    assert new_entry.split()[1] != gate.OLDER and old_entry.split()[1] == gate.OLDER
    assert new_entry.split()[::2] == old_entry.split()[::2]  # same verdict, same value hash
    # against each other: not compared (the older one's verdict lacks the second order)
    res = gate.compare(gate.snapshot(frame.iloc[[0]]), gate.snapshot(frame.iloc[[1]]))
    assert [(r.older, r.compared, r.changes) for r in res] == [(1, 0, [])]


def write_results(root, torch, records, device="cpu"):
    """RESULTS/<release>/<device>.jsonl: a run header, then one line per result."""
    release = ".".join(torch.split(".")[:2])
    path = root / release / f"{device}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {
        "record": "run",
        "schema": 1,
        "device": device,
        "env": {"torch": torch, "python": "3.12.0", "device": device},
    }
    path.write_text("".join(json.dumps(r, allow_nan=True) + "\n" for r in [header, *records]))
    return path


def run_gate(capsys, *args):
    code = cli.main(["gate", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def setup(tmp_path, cases, capsys):
    """Results for torch 2.5.1 and a baseline made from them."""
    results = tmp_path / "results"
    write_results(results, "2.5.1", [record(c) for c in cases])
    baseline = tmp_path / "baseline.json"
    code, out, _ = run_gate(capsys, "--update-baseline", "--baseline", baseline, "--results", results)
    assert code == cli.EXIT_OK and baseline.is_file()
    return results, baseline


def test_clean_exits_0(setup, cases, capsys, tmp_path):
    results, baseline = setup
    # timings differ between runs; they are not part of the comparison
    write_results(results, "2.5.1", [record(c, seconds=9.9) for c in cases])
    md = tmp_path / "summary.md"
    code, out, err = run_gate(capsys, "--baseline", baseline, "--results", results, "--markdown", md)
    assert code == cli.EXIT_OK, out + err
    assert "passed" in out and "2.5/cpu" in out
    assert md.read_text().startswith("## Regression gate: ✅")


def test_changed_verdict_exits_1_listing_the_case(setup, cases, capsys, tmp_path):
    results, baseline = setup
    write_results(results, "2.5.1", [record(cases[0], status="crash"), *map(record, cases[1:])])
    md = tmp_path / "summary.md"
    code, out, _ = run_gate(capsys, "--baseline", baseline, "--results", results, "--markdown", md)
    assert code == cli.EXIT_CONDITION
    assert f"{cases[0].id}: pass -> crash" in out
    assert cases[1].id not in out
    assert "FAILED: 1 case changed" in out
    text = md.read_text()
    assert text.startswith("## Regression gate: ❌") and f"`{cases[0].id}`: pass -> crash" in text


def test_value_drift_is_listed_and_fails_only_with_exact(setup, cases, capsys):
    results, baseline = setup
    k = next(i for i, c in enumerate(cases) if np.any(case_references(c).documented.forward.value != 0))
    ref = case_references(cases[k]).documented.forward.value
    nudged = np.where(ref != 0, np.nextafter(ref, np.inf), ref)  # one ulp: verdict and element classes stay
    recs = [record(c, output=nudged) if i == k else record(c) for i, c in enumerate(cases)]
    write_results(results, "2.5.1", recs)
    code, out, _ = run_gate(capsys, "--baseline", baseline, "--results", results)
    assert code == cli.EXIT_OK, out
    lines = out.splitlines()
    # the verdict first, then the drift in a line; each drifted case only with --verbose
    assert lines[0] == "gate: passed: no behaviour changes in 1 release/device block; 1 case drifted within tolerance"
    assert lines[2].startswith("drift (listed, not failed; --exact fails on it): 1 case drifted within tolerance in 1")
    assert "(float64)" in lines[2] and "ulps unknown" in lines[2] and "1 drifted" in out
    assert cases[k].id not in out and "--verbose" in out
    code, out, _ = run_gate(capsys, "--baseline", baseline, "--results", results, "--verbose")
    assert f"2.5/cpu {cases[k].id}: value drifted (pass)" in out
    assert all(c.id not in out for i, c in enumerate(cases) if i != k)
    code, out, _ = run_gate(capsys, "--baseline", baseline, "--results", results, "--exact")
    assert code == cli.EXIT_CONDITION and "FAILED: 1 case changed" in out.splitlines()[0]
    assert out.splitlines()[2] == "behaviour changes (they fail the gate):" and f"{cases[k].id}: value drifted" in out


def test_a_results_folder_as_baseline_sizes_the_drift_in_ulps(setup, cases, capsys, tmp_path):
    """--baseline may name a results folder (e.g. the committed store): the baseline is
    derived from it, with its values, so drift is sized in units in the last place."""
    results, _ = setup
    published = tmp_path / "published"
    shutil.copytree(results, published)  # the baseline's results, as committed
    k = next(i for i, c in enumerate(cases) if np.any(case_references(c).documented.forward.value != 0))
    ref = case_references(cases[k]).documented.forward.value
    nudged = np.where(ref != 0, np.nextafter(np.nextafter(ref, np.inf), np.inf), ref)  # two float64 ulps
    write_results(results, "2.5.1", [record(c, output=nudged) if i == k else record(c) for i, c in enumerate(cases)])
    code, out, _ = run_gate(capsys, "--baseline", published, "--results", results)
    assert code == cli.EXIT_OK, out
    assert "1 case drifted within tolerance in 1 release/device block (float64); largest move 2 ulp" in out


def test_an_injected_nan_or_a_new_exception_fails(setup, cases, capsys):
    results, baseline = setup
    ref = case_references(cases[1]).documented.forward.value
    with_nan = np.where(np.arange(ref.size).reshape(ref.shape) == 0, np.nan, ref)
    write_results(results, "2.5.1", [record(cases[0]), record(cases[1], output=with_nan), record(cases[2])])
    code, out, _ = run_gate(capsys, "--baseline", baseline, "--results", results)
    assert code == cli.EXIT_CONDITION and cases[1].id in out
    failing = record(cases[2])
    failing.update(output=None, grads={}, error={"type": "RuntimeError", "message": "new", "phase": "forward"})
    write_results(results, "2.5.1", [record(cases[0]), record(cases[1]), failing])
    code, out, _ = run_gate(capsys, "--baseline", baseline, "--results", results)
    assert code == cli.EXIT_CONDITION and cases[2].id in out


def test_a_new_warning_is_a_behaviour_change(setup, cases, capsys):
    results, baseline = setup
    warned = record(cases[0])
    warned["warnings"] = [{"category": "UserWarning", "message": "something new"}]
    write_results(results, "2.5.1", [warned, *map(record, cases[1:])])
    code, out, _ = run_gate(capsys, "--baseline", baseline, "--results", results)
    assert code == cli.EXIT_CONDITION and f"{cases[0].id}: behaviour (pass)" in out


GPU_HOST = Path(__file__).resolve().parent.parent / "reports" / "gpu-host" / "cpu.jsonl"
BASELINE = Path(__file__).resolve().parent.parent / "reports" / "baseline.json"


@pytest.mark.skipif(not GPU_HOST.exists(), reason="no GPU-host CPU results committed")
def test_the_gpu_hosts_cpu_pass_gates_green_against_the_baseline(tmp_path, capsys):
    """The same wheel on the same plan on another machine: values may differ by an ulp
    (drift), behaviour does not."""
    results = tmp_path / "results" / "2.11"
    results.mkdir(parents=True)
    shutil.copy(GPU_HOST, results / "cpu.jsonl")
    code, out, err = run_gate(capsys, "--baseline", BASELINE, "--results", tmp_path / "results")
    assert code == cli.EXIT_OK, out[-3000:] + err
    assert "2.11/cpu" in out and "passed: no behaviour changes" in out


def test_missing_case_in_a_baseline_release_exits_1(setup, cases, capsys):
    results, baseline = setup
    write_results(results, "2.5.1", [record(c) for c in cases[:2]])
    code, out, _ = run_gate(capsys, "--baseline", baseline, "--results", results)
    assert code == cli.EXIT_CONDITION
    assert f"{cases[2].id}: pass in the baseline, no current result" in out


def test_new_release_matching_the_previous_exits_0(setup, cases, capsys):
    results, baseline = setup
    write_results(results, "2.6.0", [record(c) for c in cases])
    code, out, err = run_gate(capsys, "--baseline", baseline, "--results", results)
    assert code == cli.EXIT_OK, out + err
    assert "2.6/cpu" in out and "vs 2.5/cpu" in out


def test_new_release_differing_from_the_previous_exits_1(setup, cases, capsys):
    results, baseline = setup
    ref = case_references(cases[2]).documented.forward.value
    write_results(
        results, "2.6.0", [record(cases[0], status="timeout"), record(cases[1]), record(cases[2], output=ref + 1.0)]
    )
    code, out, _ = run_gate(capsys, "--baseline", baseline, "--results", results)
    assert code == cli.EXIT_CONDITION
    assert f"{cases[0].id}: pass -> timeout" in out
    assert cases[2].id in out and cases[1].id not in out.split("2.6/cpu", 1)[1]


def test_new_release_is_compared_with_the_nearest_older_one(setup, cases, capsys, tmp_path):
    """2.10 follows 2.9 (not 2.1): it is compared with 2.9, which differs from the baseline's 2.5."""
    results, baseline = setup
    nan_out = np.full_like(case_references(cases[0]).documented.forward.value, np.nan)
    write_results(results, "2.9.1", [record(cases[0], output=nan_out), *map(record, cases[1:])])
    write_results(results, "2.10.0", [record(cases[0], output=nan_out), *map(record, cases[1:])])
    code, out, _ = run_gate(capsys, "--baseline", baseline, "--results", results)
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  2.")}
    assert "vs 2.9/cpu" in lines["2.10/cpu"] and "[ok]" in lines["2.10/cpu"]  # NaN == NaN
    assert "vs 2.5/cpu" in lines["2.9/cpu"] and "[CHANGED]" in lines["2.9/cpu"]
    assert code == cli.EXIT_CONDITION


def test_other_device_is_not_a_predecessor(setup, cases, capsys):
    results, baseline = setup
    ref = case_references(cases[0]).documented.forward.value
    write_results(results, "2.6.0", [record(cases[0], device="cuda", output=ref + 1.0)], device="cuda")
    code, out, err = run_gate(capsys, "--baseline", baseline, "--results", results)
    assert code == cli.EXIT_OK, out + err
    assert "2.6/cuda" in out and "nothing older on this device" in out


def test_release_in_baseline_but_not_run_is_reported_not_failed(setup, cases, capsys, tmp_path):
    _, baseline = setup
    other = tmp_path / "other"
    write_results(other, "2.6.0", [record(c) for c in cases])
    code, out, _ = run_gate(capsys, "--baseline", baseline, "--results", other)
    assert code == cli.EXIT_OK
    assert "2.5/cpu" in out and "not in the current results" in out


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ("[]", "expected a JSON object with schema 3"),
        ('{"schema": 3, "blocks": [], "entries": [], "cases": []}', "schema 3 needs"),
        (
            '{"schema": 3, "blocks": [{"release": "2.5", "device": "cpu"}], "entries": ["pass - -"],'
            ' "cases": {"x": "0*2"}}',
            "case 'x': more entries than blocks",
        ),
        (
            '{"schema": 3, "blocks": [{"release": "2.5", "device": "cpu"}], "entries": [], "cases": {"x": "3*1"}}',
            "case 'x': expected 'INDEX*COUNT' words",
        ),
        ('{"schema": 1, "blocks": {}}', "'blocks' must be a list"),
        ('{"schema": 1, "blocks": [{"release": "2.5", "device": "cpu", "cases": {"x": "pass 12"}}]}', "case 'x'"),
        (
            '{"schema": 1, "blocks": [{"release": "2.5", "device": "cpu", "cases": {}},'
            ' {"release": "2.5", "device": "cpu", "cases": {}}]}',
            "appears twice",
        ),
    ],
)
def test_malformed_baseline_exits_2_naming_the_file(setup, capsys, content, message):
    results, baseline = setup
    baseline.write_text(content)
    code, out, err = run_gate(capsys, "--baseline", baseline, "--results", results)
    assert code == cli.EXIT_INPUT
    assert len(err.strip().splitlines()) == 1
    assert str(baseline) in err and message in err


def test_missing_baseline_exits_2(setup, capsys, tmp_path):
    results, _ = setup
    missing = tmp_path / "nope" / "baseline.json"
    code, out, err = run_gate(capsys, "--baseline", missing, "--results", results)
    assert code == cli.EXIT_INPUT
    assert str(missing) in err and "not found" in err and "--update-baseline" in err


def test_missing_results_exit_2(setup, capsys, tmp_path):
    _, baseline = setup
    code, _, err = run_gate(capsys, "--baseline", baseline, "--results", tmp_path / "absent")
    assert code == cli.EXIT_INPUT and "absent" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run_gate(capsys, "--baseline", baseline, "--results", tmp_path / "empty")
    assert code == cli.EXIT_INPUT and "no results files" in err


def test_update_baseline_rewrites_deterministically(setup, cases, capsys, tmp_path):
    results, baseline = setup
    first = baseline.read_text()
    data = json.loads(first)
    assert data["schema"] == 3 and [(b["release"], b["device"], b["torch"]) for b in data["blocks"]] == [
        ("2.5", "cpu", "2.5.1")
    ]
    assert set(data["cases"]) == {c.id for c in cases}
    assert all(v.startswith("pass ") for v in data["entries"])
    assert first == json.dumps(data, indent=0, sort_keys=True) + "\n"

    # a changed result, a new release and a malformed old baseline: --update-baseline takes them all
    write_results(results, "2.5.1", [record(cases[0], status="crash"), *map(record, cases[1:])])
    write_results(results, "2.10.0", [record(c) for c in cases])
    write_results(results, "2.9.1", [record(c) for c in cases])
    baseline.write_text("{broken")
    code, out, _ = run_gate(capsys, "--update-baseline", "--baseline", baseline, "--results", results)
    assert code == cli.EXIT_OK and "3 release/device blocks" in out
    second = baseline.read_text()
    data = json.loads(second)
    assert [b["release"] for b in data["blocks"]] == ["2.5", "2.9", "2.10"]
    blocks = gate.load_baseline(baseline)
    assert re.fullmatch(r"crash [0-9a-f]{12} -", blocks[("2.5", "cpu")].cases[cases[0].id])
    code, out, _ = run_gate(capsys, "--update-baseline", "--baseline", baseline, "--results", results)
    assert baseline.read_text() == second  # same results, same bytes
    code, out, _ = run_gate(capsys, "--baseline", baseline, "--results", results)
    assert code == cli.EXIT_OK


def test_value_hash_is_exact_but_nan_equal():
    base = {"shape": [2], "dtype": "float32", "values": [1.0, float("nan")]}
    assert gate.value_hash(base) == gate.value_hash({**base, "values": [1.0, float("nan")]})
    assert gate.value_hash(base) != gate.value_hash({**base, "values": [np.nextafter(1.0, 2.0), float("nan")]})
    assert gate.value_hash(base) != gate.value_hash({**base, "dtype": "float64"})
    assert gate.value_hash(base) != gate.value_hash({**base, "shape": [2, 1]})
    assert gate.value_hash({**base, "values": [0.0, 1.0]}) == gate.value_hash({**base, "values": [-0.0, 1.0]})
    assert gate.value_hash(None) == "-"


def test_release_order():
    order = ["1.6", "1.10", "2.1", "2.9", "2.10.0.dev20251101", "2.10", "2.15"]
    assert sorted(reversed(order), key=gate.release_key) == order
