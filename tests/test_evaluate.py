"""Verdicts: each class reached from a synthetic record; pitfalls flagged."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.cases import load_cases
from harness.evaluate import TOLERANCES, case_references, evaluate_record, worst
from harness.inputs import input_digest, plan_entry
from harness.versions import release_of

CASES = {c.id: c for c in load_cases()}


def _rec(values, shape=(), grads=None, **extra):
    rec = {
        "status": "ok",
        "device": "cpu",
        "output": {"shape": list(shape), "dtype": "float64", "values": list(np.ravel(values))},
        "grads": grads or {},
        "grad_errors": {},
        "error": None,
        "warnings": [],
    }
    rec.update(extra)
    return rec


def _ref_record(case_id, scale=1.0, shift=0.0):
    """A record holding the reference values themselves (optionally perturbed)."""
    case = CASES[case_id]
    ref = case_references(case).documented
    grads = {
        k: {"shape": list(q.value.shape), "dtype": "float64", "values": list(q.value.ravel())}
        for k, q in ref.grads.items()
    }
    return case, _rec(ref.forward.value * scale + shift, ref.forward.value.shape, grads)


def test_reference_values_pass_and_flag_no_pitfall_for_the_right_call():
    case, rec = _ref_record("softmax-4x5/batchmean/log_target=false/intended/float32/functional")
    row = evaluate_record(case, rec)
    assert (row["verdict"], row["forward"], row["grad"], row["pitfall"]) == ("pass", "pass", "pass", False)


def test_tolerance_scales_with_dtype():
    cid = "softmax-4x5/sum/log_target=false/intended/{}/functional"
    c32, rec32 = _ref_record(cid.format("float32"), scale=1 + 50 * TOLERANCES["float32"]["rtol"])
    assert evaluate_record(c32, rec32)["forward"] == "mismatch"
    c16, rec16 = _ref_record(cid.format("float16"), scale=1 + 50 * TOLERANCES["float32"]["rtol"])
    assert evaluate_record(c16, rec16)["forward"] == "pass"


def test_mismatch_reports_errors():
    case, rec = _ref_record("softmax-4x5/sum/log_target=false/intended/float64/module", shift=0.5)
    row = evaluate_record(case, rec)
    assert row["verdict"] == "mismatch" and row["max_abs_err"] == pytest.approx(0.5)


def test_nan_where_reference_is_finite():
    case, rec = _ref_record("zeros-4x5/sum/log_target=true/intended/float64/module")
    rec["output"]["values"] = [float("nan")]
    assert evaluate_record(case, rec)["forward"] == "nan"


@pytest.mark.parametrize(
    "err, expected",
    [
        ({"type": "TypeError", "message": "__init__() got an unexpected keyword argument 'log_target'"}, "unsupported"),
        ({"type": "RuntimeError", "message": "\"log_vml_cpu\" not implemented for 'Half'"}, "unsupported"),
        ({"type": "RuntimeError", "message": "something else broke"}, "error"),
    ],
)
def test_errors_are_classified(err, expected):
    case = CASES["softmax-4x5/sum/log_target=true/intended/float16/module"]
    row = evaluate_record(case, {"status": "ok", "output": None, "error": err, "warnings": []})
    assert row["verdict"] == expected


def test_target_gradient_not_implemented_is_unsupported_not_error():
    case, rec = _ref_record("softmax-4x5/sum/log_target=false/intended/float64/module")
    del rec["grads"]["second"]
    rec["grad_errors"] = {
        "second": {"type": "RuntimeError", "message": "the derivative for 'target' is not implemented"}
    }
    row = evaluate_record(case, rec)
    assert (row["forward"], row["grad"], row["verdict"]) == ("pass", "unsupported", "unsupported")


def test_shapes_that_cannot_broadcast_expect_an_error():
    case = CASES["broadcast_bad-4x5/sum/log_target=false/intended/float32/module"]
    err = {"type": "RuntimeError", "message": "The size of tensor a (4) must match"}
    assert evaluate_record(case, {"status": "ok", "error": err, "warnings": []})["verdict"] == "expected-error"
    assert evaluate_record(case, _rec(1.0))["verdict"] == "mismatch"


@pytest.mark.parametrize("status", ["crash", "timeout"])
def test_crash_and_timeout_pass_through(status):
    case = CASES["softmax-4x5/sum/log_target=false/intended/float32/module"]
    row = evaluate_record(case, {"status": status, "detail": "killed by signal SIGABRT"})
    assert row["verdict"] == status


def test_results_for_changed_inputs_are_stale():
    case, rec = _ref_record("softmax-4x5/sum/log_target=false/intended/float32/module")
    rec["digest"] = "0000"
    assert evaluate_record(case, rec, input_digest(plan_entry(case, {})))["verdict"] == "stale"


def test_undefined_reference_reports_what_torch_returned():
    case = CASES["negative-4x5/sum/log_target=false/intended/float64/module"]
    row = evaluate_record(case, _rec(float("nan"), grads={}))
    assert row["forward"] == "undefined" and "torch returned nan" in row["detail"]


@pytest.mark.parametrize(
    "case_id, reason",
    [
        ("softmax-4x5/mean/log_target=false/intended/float64/functional", "'mean'"),
        ("softmax-5/batchmean/log_target=false/intended/float64/functional", "1-d"),
        ("softmax-2x3x4/batchmean/log_target=false/intended/float64/functional", "size(0)"),
        ("post-example1/batchmean/log_target=false/intended/float32/module", "probabilities"),
    ],
)
def test_pitfalls_are_flagged_with_their_reason(case_id, reason):
    case, rec = _ref_record(case_id)
    row = evaluate_record(case, rec)
    assert row["forward"] == "pass" and row["pitfall"] and reason in row["pitfall_reason"]


def test_worst_and_release_labels():
    assert worst("pass", "unsupported", None) == "unsupported"
    assert worst("mismatch", "crash") == "crash"
    assert release_of("1.10.2+cu102") == "1.10" and release_of(None) == "?"


# ------------------------------------------------------------------ judging files in worker processes


def _columns_text(frame):
    """Every column of a frame, exactly (repr: -0.0, nan, int vs float, dict order), and its attrs."""
    view = type(frame)(frame, copy=False)
    return {c: repr(view[c].tolist()) for c in frame.columns}, repr(frame.attrs)


def test_files_judged_in_worker_processes_give_the_same_frame(tmp_path):
    """prefetch judges the files the cache lacks in two workers; evaluate_file then reads
    them back: the same frame, row for row, as judging them in this process; a truncated
    file and a file that is not JSON Lines are left to evaluate_file."""
    import json

    from harness.evaluation import Evaluation, frame_of
    from harness.results import ResultsError, json_lines, read
    from tests.conftest import ROOT

    real = sorted((ROOT / "reports" / "results").glob("*/cpu.index"))[:3]
    assert len(real) == 3, "the committed store has results"
    paths = []
    for src in real:
        path = tmp_path / "results" / src.parent.name / "cpu.jsonl"
        path.parent.mkdir(parents=True)
        path.write_text("\n".join(json_lines(read(src)).splitlines()[:300]) + "\n")
        paths.append(path)
    truncated = tmp_path / "results" / "truncated" / "cpu.jsonl"
    truncated.parent.mkdir()
    truncated.write_text(paths[0].read_text()[:-40])
    bad = tmp_path / "results" / "bad" / "cpu.jsonl"
    bad.parent.mkdir()
    bad.write_text("not json\n")
    everything = [*paths, truncated, bad]
    ids = {json.loads(x).get("id") for p in paths for x in p.read_text().splitlines()}
    cases = {cid: case for cid, case in CASES.items() if cid in ids}

    def judged(evaluation):
        files, warnings = [], []
        for path in everything:
            try:
                files.append(evaluation.evaluate_file(path, warn=warnings.append))
            except ResultsError as exc:
                warnings.append(str(exc))
        return frame_of(files), warnings

    here = Evaluation(cases, cache=tmp_path / "here")
    expected, expected_warnings = judged(here)
    there = Evaluation(cases, cache=tmp_path / "there")
    assert there.prefetch(everything, jobs=2) == 3  # not the truncated file (never kept), nor the bad one
    assert len(list((tmp_path / "there").glob("*.pickle"))) == 3 + 1  # the good files' entries, the verdicts
    frame, warnings = judged(there)
    assert len(frame) == len(expected) > 3 * 250
    assert _columns_text(frame) == _columns_text(expected)
    assert warnings == expected_warnings and len(warnings) == 2  # the truncated line, the bad file
    assert there.prefetch(everything, jobs=2) == 0  # all in the cache now (but those two)
    # what the workers judged joined this evaluation: the same memos as judging here
    assert set(there.verdicts.data) == set(here.verdicts.data)
    assert there.digests.data == here.digests.data
    assert set(there.references.data) >= set(here.references.data)
    there.save()
    again = Evaluation(cases, cache=tmp_path / "there")
    again._read_judged_store(tmp_path / "there" / f"judged-{again.fingerprint[:40]}.pickle")
    assert set(again.verdicts.data) == set(here.verdicts.data)


def test_prefetch_does_nothing_without_a_cache_folder_or_with_one_job(tmp_path):
    from harness.evaluation import Evaluation

    assert Evaluation(CASES, cache=None).prefetch([tmp_path / "a.jsonl", tmp_path / "b.jsonl"]) == 0
    assert Evaluation(CASES, cache=tmp_path / "c").prefetch([tmp_path / "a.jsonl"], jobs=1) == 0


def test_the_api_form_never_changes_a_verdict_on_the_committed_results():
    """The evaluation shares verdicts between the API forms of a call (harness.axes: api is
    not judged): judged afresh, record by record, the forms that recorded the same outcome
    get the same verdict fields (an old, a middle and the newest release, and the CUDA run)."""
    from harness import axes
    from harness.evaluate import VERDICT_FIELDS, case_references, evaluate_record
    from harness.inputs import input_digest, plan_entry
    from harness.results import read
    from tests.conftest import ROOT

    assert not axes.BY_NAME["api"].judged and all(a.judged for a in axes.AXES if a.name != "api")
    store = ROOT / "reports" / "results"
    files = [store / "1.6" / "cpu.index", store / "1.13" / "cpu.index", store / "2.11" / "cuda.index"]
    files.append(sorted(store.glob("*/cpu.index"), key=lambda p: tuple(map(int, p.parent.name.split("."))))[-1])
    refs, digests = {}, {}
    compared = 0
    for path in files:
        groups: dict = {}
        for rec in read(path).results:
            case = CASES.get(rec["id"])
            if case is None:
                continue
            judged = (case.family.label, *(case.values[i] for i in axes.JUDGED))
            content = json.dumps({k: v for k, v in rec.items() if k not in ("id", "digest", "run")}, sort_keys=True)
            groups.setdefault((judged, content), []).append((case, rec))
        for members in groups.values():
            if len(members) < 2:
                continue
            seen = set()
            for case, rec in members:
                key = case.family.label, *(case.values[i] for i in axes.JUDGED)
                if key not in refs:
                    refs[key] = case_references(case)
                if case.id not in digests:
                    digests[case.id] = input_digest(plan_entry(case, {}))
                row = evaluate_record(case, rec, digests[case.id], refs[key])
                seen.add(json.dumps([str(row[f]) for f in VERDICT_FIELDS]))
                compared += 1
            assert len(seen) == 1, [c.id for c, _ in members]
    assert compared > 5000


def test_the_plain_python_pass_of_compare_agrees_with_numpy():
    """compare's plain-Python path for small tensors (evaluate._compare_small) gives exactly
    what the numpy path gives: the same verdict, detail and errors, on values that pass,
    that fail by an ulp, that are nan or inf, against references with zeros."""
    import numpy as np
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from harness import evaluate, reference

    finite = st.floats(-1e3, 1e3, allow_nan=False, width=64)

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(finite, min_size=1, max_size=evaluate.SMALL),
        st.data(),
        st.sampled_from([0.0, 1e-12, 1e-6]),
        st.sampled_from([0.0, 1e-9, 1e-5]),
    )
    def check(ref_values, data, atol, rtol):
        n = len(ref_values)
        r = np.asarray(ref_values)
        noise = data.draw(st.lists(st.sampled_from([0.0, 1e-15, -1e-9, 1e-4, np.nan, np.inf]), min_size=n, max_size=n))
        got = {"shape": [n], "values": [float(v + e) for v, e in zip(ref_values, noise)]}
        mag = np.abs(r) * data.draw(st.sampled_from([0.0, 1.0, 2.0]))
        ref = reference.Quantity(r.copy(), np.zeros(n, dtype=bool), mag)
        tol = {"atol": atol, "rtol": rtol}
        fast = evaluate.compare(got, ref, tol)
        small, evaluate.SMALL = evaluate.SMALL, 0
        try:
            slow = evaluate.compare(got, ref, tol)
        finally:
            evaluate.SMALL = small
            assert (fast.verdict, fast.detail) == (slow.verdict, slow.detail)
        for a, b in ((fast.max_abs, slow.max_abs), (fast.max_rel, slow.max_rel)):
            assert a == b or (a != a and b != b)

    check()
    ref = reference.Quantity(np.array([0.5, 0.0, -2.0]), np.zeros(3, dtype=bool), np.array([0.5, 0.0, 2.0]))
    plain = evaluate._compare_small(
        {"shape": [3], "values": [0.5, 0.0, -2.0 + 1e-12]}, ref, {"atol": 0.0, "rtol": 1e-9}
    )
    assert plain is not None and plain.verdict == "pass" and plain.max_abs > 0  # the plain path is taken
