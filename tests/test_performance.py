"""The fast paths (issue 8) give what the slow ones give: the evaluation cache and the
per-content memo, the oracle's bit-identity shortcuts."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest

from harness import evaluation as ev
from harness import oracle
from harness.cases import load_cases
from harness.evaluate import evaluate_record
from harness.memo import Memo
from harness.results import json_lines, read

ROOT = Path(__file__).resolve().parent.parent
REAL = sorted((ROOT / "reports" / "results").glob("*/cpu.index"))


def _canon(frame) -> dict:
    def c(v):
        return "nan" if isinstance(v, float) and math.isnan(v) else json.dumps(v, sort_keys=True)

    return {col: [c(v) for v in frame[col].tolist()] for col in frame.columns}


def test_committed_results_are_found():
    assert len(REAL) >= 2, "the committed store has results: the tests below read them"


def test_cached_and_memoised_verdicts_equal_fresh_ones(tmp_path, monkeypatch):
    files = []
    for i, src in enumerate(REAL[:3]):  # three releases: many identical values, some not
        lines = json_lines(read(src)).splitlines()[:400]
        path = tmp_path / f"r{i}" / "cpu.jsonl"
        path.parent.mkdir()
        path.write_text("\n".join(lines) + "\n")
        files.append(path)
    cases = {c.id: c for c in load_cases()}
    fresh = ev.Evaluation(cases, cache=None).evaluate([read(p) for p in files])  # every record judged (memo only)
    digests = ev.Evaluation(cases, cache=None)
    slow = {}
    for p in files:  # no memo at all: evaluate_record on every record
        for rec in read(p).results:
            case = cases.get(rec["id"])
            if case is not None:
                slow.setdefault(p, []).append(evaluate_record(case, rec, digests.digest(case))["verdict"])
    assert fresh["verdict"].tolist() == [v for p in files for v in slow.get(p, [])]
    cache = tmp_path / "cache"
    cold_run = ev.Evaluation(cases, cache)
    cold = ev.frame_of([cold_run.evaluate_file(p) for p in files])
    cold_run.save()
    warm_run = ev.Evaluation(cases, cache)  # a fresh process: nothing judged yet
    warm = ev.frame_of([warm_run.evaluate_file(p) for p in files])  # from the cache files
    assert _canon(fresh) == _canon(cold) == _canon(warm)
    assert fresh.attrs == cold.attrs == warm.attrs
    assert list(fresh.dtypes) == list(warm.dtypes)
    monkeypatch.setattr(ev, "VERDICT_ENTRIES", 8)  # memos far too small: most entries dropped, the same verdicts
    monkeypatch.setattr(ev, "CASE_ENTRIES", 4)
    monkeypatch.setattr(ev, "TEXT_ENTRIES", 16)
    small = ev.Evaluation(cases, cache=None)
    assert _canon(small.evaluate([read(p) for p in files])) == _canon(fresh)
    assert len(small.verdicts) <= 8 and len(small.references) <= 4 and len(small.texts) <= 16


def test_memo_keeps_at_most_its_size_and_drops_the_oldest():
    memo = Memo(8)
    for i in range(20):
        assert memo.put(i, str(i)) == str(i)
        assert len(memo) <= 8
    assert 19 in memo and 0 not in memo and memo.get(19) == "19"
    assert len(Memo(3, {i: i for i in range(10)})) == 3 and 9 in Memo(3, {i: i for i in range(10)})


def test_changed_file_is_judged_again(tmp_path):
    src = REAL[0]
    lines = json_lines(read(src)).splitlines()[:50]
    path = tmp_path / "cpu.jsonl"
    path.write_text("\n".join(lines) + "\n")
    cases = {c.id: c for c in load_cases()}
    cache = tmp_path / "cache"
    run = ev.Evaluation(cases, cache)
    before = run.evaluate_file(path)
    recs = [json.loads(x) for x in lines]
    for r in recs:  # a different value everywhere: no verdict may come from the cache
        if r.get("record") == "result" and r.get("output") and r["output"]["values"]:
            r["output"]["values"] = [v + 1.0 for v in r["output"]["values"]]
    path.write_text("\n".join(json.dumps(r, sort_keys=True) for r in recs) + "\n")
    after = run.evaluate_file(path)
    fresh = ev.Evaluation(cases, cache=None).evaluate([read(path)])
    assert after.columns["verdict"] == fresh["verdict"].tolist()
    assert after.columns["verdict"] != before.columns["verdict"]


@pytest.mark.parametrize(
    "a,b,identical,kind,same_bits,differ",
    [
        ([1.0, 2.0], [1.0, 2.0], True, "same", True, False),
        ([0.0], [-0.0], True, "same", False, False),  # equal numbers, other bits
        ([float("nan")], [float("nan")], True, "same", True, False),  # two NaN objects, same bits
        ([1.0], [1.0000001], False, "close", False, True),  # within float32's tolerance, not zero tolerance
        ([1.0], [2.0], False, "differ", False, True),
        ([float("inf")], [float("inf")], True, "same", True, False),
        ([float("inf")], [float("-inf")], False, "differ", False, True),
        ([], [], True, "same", True, False),
    ],
)
def test_bit_identity_shortcuts_agree_with_numpy(a, b, identical, kind, same_bits, differ):
    """Each shortcut gives the expected answer, and the slow NumPy path agrees with it."""
    x = {"shape": [len(a)], "dtype": "float32", "values": a}
    y = {"shape": [len(b)], "dtype": "float32", "values": b}
    assert oracle._identical(x, y) is identical
    got_kind, _ = oracle.compare_outputs(x, y, "float32")
    assert got_kind == kind
    if identical:  # the shortcut's True stands for the slow path's 'same' (its False may still be 'same')
        assert oracle.compare_outputs(x, y, "float32") == ("same", 0.0)
    packed = struct.pack(f"<{len(a)}d", *a) == struct.pack(f"<{len(b)}d", *b)  # as findings signs values
    numpy_bits = np.asarray(a, dtype=np.float64).tobytes() == np.asarray(b, dtype=np.float64).tobytes()
    assert numpy_bits is same_bits is packed


@pytest.mark.skipif(__import__("importlib").util.find_spec("torch") is None, reason="needs torch")
def test_worker_reads_tensor_bytes_exactly_like_packing_floats():
    """The worker's raw-memory fast path (issue 8) gives the bytes struct.pack gives, for
    every dtype, non-finite values, -0.0, views that are not contiguous and empty tensors."""
    import base64

    import torch

    from harness import worker

    values = torch.tensor([[0.0, -0.0, 1.5, -2.25e-300], [math.inf, -math.inf, math.nan, 3.0e38]], dtype=torch.float64)
    tensors = [values, values.t(), values[:, ::2], values[0, 2], values[:0]]
    tensors += [values.to(d) for d in (torch.float32, torch.float16, torch.bfloat16)]
    tensors.append(values.clone().requires_grad_(True) * 2)
    for t in tensors:
        flat = t.detach().double().reshape(-1).tolist()
        slow = struct.pack(f"<{len(flat)}d", *flat)
        assert worker._f64_bytes(t) == slow, t
        rec = worker._values(t)
        assert base64.b64decode(rec["f64"]) == slow and rec["shape"] == list(t.shape)
        assert rec["dtype"] == str(t.dtype).replace("torch.", "")


@pytest.mark.skipif(__import__("importlib").util.find_spec("torch") is None, reason="needs torch")
def test_worker_gives_every_case_its_own_input_tensor():
    """Input arrays are built once per worker; each case still gets a fresh tensor, so a
    case that sets requires_grad or writes into its input cannot reach the next one."""
    import torch

    from harness import worker

    arrays = {"k": {"shape": [2, 2], "values": [0.1, 0.2, 0.3, 0.4]}}
    sources = {}
    first = worker.input_tensor(torch, arrays, "k", torch.float64, "cpu", sources)
    first.requires_grad_(True)
    with torch.no_grad():
        first.add_(1.0)
    second = worker.input_tensor(torch, arrays, "k", torch.float64, "cpu", sources)
    third = worker.input_tensor(torch, arrays, "k", torch.float16, "cpu", sources)
    assert not second.requires_grad and second.data_ptr() != first.data_ptr()
    assert second.tolist() == [[0.1, 0.2], [0.3, 0.4]]
    expected_half = torch.tensor([[0.1, 0.2], [0.3, 0.4]], dtype=torch.float64).half()
    assert third.dtype == torch.float16 and third.tolist() == expected_half.tolist()
    assert set(sources) == {"k"}
