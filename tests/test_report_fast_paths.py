"""The report's fast paths give what their plain definitions give: rows by case, the
family counts, the CUDA oracle asked once per distinct pair, shared outputs and the JSON
line reader."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from harness import evaluation as ev
from harness import oracle, report, results
from harness.report.evidence import _cuda_vs_cpu
from harness.results import json_lines, read

ROOT = Path(__file__).resolve().parent.parent
REAL = sorted((ROOT / "reports" / "results").glob("*/cpu.index"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Three real releases (first 400 records each) on CPU, and on CUDA with some values
    nudged, some errors and a case missing."""
    assert len(REAL) >= 3, "the committed store has results"
    tmp = tmp_path_factory.mktemp("fast")
    rng = random.Random(3)
    for src in REAL[:3]:
        lines = json_lines(read(src)).splitlines()[:400]
        out = tmp / "results" / src.parent.name
        out.mkdir(parents=True)
        (out / "cpu.jsonl").write_text("\n".join(lines) + "\n")
        header, recs = json.loads(lines[0]), [json.loads(x) for x in lines[1:]]
        header = {**header, "device": "cuda", "env": {**header["env"], "device": "cuda"}}
        cuda = []
        for rec in recs[1:]:
            rec = {**rec, "device": "cuda"}
            if rec.get("output") and rec["output"]["values"] and rng.random() < 0.2:
                rec["output"] = {**rec["output"], "values": [v * (1 + 1e-6) for v in rec["output"]["values"]]}
            elif rng.random() < 0.05:
                rec = {**rec, "output": None, "error": {"type": "RuntimeError", "message": "x", "phase": "forward"}}
            cuda.append(rec)
        (out / "cuda.jsonl").write_text("\n".join(json.dumps(r, sort_keys=True) for r in [header, *cuda]) + "\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_CACHE_DIR", str(tmp / "cache"))
        return report.load([tmp / "results"])


def test_rows_and_family_counts_follow_their_definitions(data):
    from harness.report.evidence import sec_families
    from harness.report.text import device_key

    d = data
    by_case: dict = {}
    for row in d.rows:
        by_case.setdefault(row.id, []).append(row)
    by_case = {cid: sorted(rows, key=lambda r: (device_key(r.device), r.rk)) for cid, rows in sorted(by_case.items())}
    assert d.rows_by_case == by_case
    counts = sec_families(d).data
    for dev in d.data_devices:
        plain: dict = {}
        for (fam, rel, verdict), n in Counter(
            (d.cases[r.id].family.label, r.release, r.verdict) for r in d.rows if r.device == dev
        ).items():
            plain.setdefault(fam, {}).setdefault(rel, {})[verdict] = n
        assert counts[dev] == plain


def test_cuda_oracle_once_per_distinct_pair_gives_every_pair(data):
    def rows(frame):
        cols = ("release", "id", "family", "dtype", "cpu_verdict", "cuda_verdict", "agreement", "max_abs_diff")
        return sorted(tuple(repr(v) for v in row) for row in zip(*(frame[c].tolist() for c in cols)))

    full = oracle.cuda_vs_cpu(data.frame, data.cases)
    fast = _cuda_vs_cpu(data)
    assert rows(fast) == rows(full)
    assert {"same", "close"} <= set(full["agreement"])  # not only the shortcut is exercised


def test_shared_outputs_are_only_equal_ones():
    same: dict = {}
    a = ev._shared_output({"dtype": "float32", "shape": [2], "values": [1.0, 0.0]}, same)
    assert ev._shared_output({"dtype": "float32", "shape": [2], "values": [1.0, 0.0]}, same) is a
    assert ev._shared_output({"dtype": "float32", "shape": [2], "values": [1.0, -0.0]}, same) is not a
    assert ev._shared_output({"dtype": "float32", "shape": [2], "values": [1, 0.0]}, same) is not a
    assert ev._shared_output({"dtype": "float64", "shape": [2], "values": [1.0, 0.0]}, same) is not a
    odd = {"values": [1.0, 0.0], "shape": [2], "dtype": "float32"}  # another key order: its own
    assert ev._shared_output(odd, same) == odd and list(ev._shared_output(odd, same)) == list(odd)


@pytest.mark.parametrize(
    "line",
    [
        '{"a": 1, "b": [1.5, NaN, -Infinity], "c": {"d": null}}',
        '  {"a": 1}',
        '{"a": 1}  ',
        '{"a": 1}\r',
        "[1, 2]",
        '{"a": 1} {"b": 2}',
        '{"a": ',
        "\ufeff{}",
        '"text"',
        "{}",
    ],
)
def test_line_reader_is_json_loads(line):
    def outcome(loads):
        try:
            return "ok", json.dumps(loads(line))
        except ValueError as exc:
            return type(exc).__name__, str(exc)

    assert outcome(results._loads) == outcome(json.loads)
