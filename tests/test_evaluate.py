"""Verdicts: each class reached from a synthetic record; pitfalls flagged."""

from __future__ import annotations

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
