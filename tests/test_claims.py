"""Claims: loading, judging printed lines, advice checks, a claim that changes with the release."""

from __future__ import annotations

import json

import pytest

from harness import claims
from harness.cases import CaseFileError
from harness.evaluation import verdict_frame


def _results(tmp_path, release_printed: dict) -> list:
    """Result files holding only the example2 snippet's record, one per release."""
    paths = []
    for torch_version, printed in release_printed.items():
        path = tmp_path / torch_version / "cpu.jsonl"
        path.parent.mkdir(parents=True)
        header = {"record": "run", "schema": 1, "device": "cpu", "env": {"torch": torch_version, "python": "3.8"}}
        rec = {
            "record": "result",
            "status": "ok",
            "id": "claim/example2",
            "device": "cpu",
            "output": None,
            "grads": {},
            "grad_errors": {},
            "error": None,
            "warnings": [],
            "printed": printed,
        }
        path.write_text(json.dumps(header) + "\n" + json.dumps(rec) + "\n")
        paths.append(path)
    return paths


def test_shipped_claims_load_and_cover_every_example_line():
    snippets, cl = claims.load()
    examples = [c for c in cl if c.kind == "example"]
    advice = [c for c in cl if c.kind == "advice"]
    assert len(examples) == 5 and len(advice) >= 3
    assert {c.snippet for c in examples} == {s.id for s in snippets}


def test_a_claim_that_holds_on_old_releases_and_not_on_new(tmp_path):
    lines = [
        "a",
        "b",
        "log_target=False, loss is {}",
        "log_target=False, loss is -2.7026482385394957e-08",
        "log_target=True, loss is 0.0",
    ]
    old = [ln.format("0.0") for ln in lines]
    new = [ln.format("nan") for ln in lines]
    frame = verdict_frame(_results(tmp_path, {"1.6.0": old, "2.13.0": new}))
    df = claims.evaluate_claims(frame).set_index(["claim", "release"])
    assert df.loc[("example2-probabilities-as-input", "1.6"), "status"] == "holds (wrong reason)"
    assert df.loc[("example2-probabilities-as-input", "2.13"), "status"] == "does not hold"
    # the post calls the swapped call incorrect, yet it is the right call
    assert df.loc[("example2-swapped", "2.13"), "status"] == "holds (wrong reason)"
    assert df.loc[("example2-swapped", "2.13"), "identical"]
    # no result rows for the matrix: advice is not run, never guessed
    assert df.loc[("advice-batchmean", "2.13"), "status"] == "not run"


def test_a_snippet_that_raises_does_not_hold():
    _, cl = claims.load()
    claim = next(c for c in cl if c.id == "example1-log-target-true")
    rec = {"status": "ok", "printed": [], "error": {"type": "TypeError", "message": "unexpected keyword 'log_target'"}}
    res = claims.judge_example(claim, rec)
    assert res["status"] == "does not hold" and "TypeError" in res["detail"]


@pytest.mark.parametrize(
    "claim_id, is_kl",
    [
        ("example1-log-target-true", False),
        ("example1-log-target-false", False),
        ("example2-probabilities-as-input", False),
        ("example2-swapped", True),
        ("example2-log-target-same", False),
    ],
)
def test_which_calls_compute_the_kl(claim_id, is_kl):
    claim = next(c for c in claims.load()[1] if c.id == claim_id)
    assert claims.call_is_kl(claim) is is_kl


def test_reference_values_ground_the_explanations():
    claim = next(c for c in claims.load()[1] if c.id == "example1-log-target-false")
    documented, meant = claims.reference_values(claim)
    assert documented == pytest.approx(-1.10352, abs=5e-6)  # what the post printed
    assert meant == pytest.approx(0.0, abs=1e-12)  # the KL between identical distributions


def test_claims_file_errors_name_the_line(tmp_path):
    bad = tmp_path / "claims.yaml"
    bad.write_text(
        "version: 1\nsnippets:\n  - {id: s, code: 'x = 1'}\nclaims:\n"
        "  - {id: c, kind: example, snippet: nope, line: 1, printed: '0', call: {reduction: sum, "
        "log_target: false}, args: {first: [1], second: [1]}, meaning: {first: prob, second: prob}, "
        "explanation: e, fix: f}\n"
    )
    with pytest.raises(CaseFileError, match=r"claims.yaml:5: claims\[0\].snippet: unknown snippet 'nope'"):
        claims.load(bad)


def test_advice_read_from_stale_results_gets_no_status():
    """A row made from other inputs says nothing about the advice: 'stale', not 'does not hold'."""
    import pandas as pd

    from harness import claims
    from harness.axes import case_id

    def row(reduction, verdict):
        values = {"reduction": reduction, "log_target": False, "dtype": "float64", "api": "functional"}
        return {"id": case_id("softmax-4x5", values), "release": "2.11", "device": "cuda", "dtype": "float64",
                "api": "functional", "verdict": verdict, "forward": verdict, "pitfall": False,
                "output": {"dtype": "float64", "shape": [], "values": [0.5]}}  # fmt: skip

    _, all_claims = claims.load()
    advice = [c for c in all_claims if c.kind != "example" and c.check == "batchmean_not_mean"]
    fresh = claims.evaluate_claims(pd.DataFrame([row("batchmean", "pass"), row("mean", "pass")]), advice)
    assert fresh["status"].tolist() == ["does not hold"]  # mean passing as the KL: the advice fails
    stale = claims.evaluate_claims(pd.DataFrame([row("batchmean", "stale"), row("mean", "pass")]), advice)
    assert stale["status"].tolist() == ["stale"] and stale["detail"].tolist() == [claims.STALE_DETAIL]
