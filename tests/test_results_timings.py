"""Run-to-run fields (start time, workers, seconds) live in a sidecar: an identical rerun
writes the results file byte for byte again, and reading merges the sidecar back."""

from __future__ import annotations

import json

from harness.results import Writer, read, result_files, timings_path


def _write(path, started, seconds):
    with Writer(path, append=False) as w:
        w.write({"record": "run", "schema": 1, "device": "cpu", "started": started, "jobs": 2,
                 "env": {"torch": "2.5.1", "import_seconds": seconds}})  # fmt: skip
        for cid in ("a", "b"):
            w.write({"record": "result", "id": cid, "device": "cpu", "status": "ok", "seconds": seconds})


def test_an_identical_rerun_writes_the_same_results_file(tmp_path):
    a, b = tmp_path / "a" / "cpu.jsonl", tmp_path / "b" / "cpu.jsonl"
    _write(a, "2026-01-01T00:00:00+00:00", 0.5)
    _write(b, "2026-02-02T00:00:00+00:00", 0.7)
    assert a.read_bytes() == b.read_bytes()
    assert b"seconds" not in a.read_bytes() and b"started" not in a.read_bytes()
    assert timings_path(a).read_bytes() != timings_path(b).read_bytes()
    rf = read(b)
    assert rf.runs[0]["started"] == "2026-02-02T00:00:00+00:00" and rf.runs[0]["jobs"] == 2
    assert rf.runs[0]["env"] == {"torch": "2.5.1", "import_seconds": 0.7}
    assert [r["seconds"] for r in rf.results] == [0.7, 0.7]
    assert result_files([tmp_path]) == [a, b]  # the sidecars are not results files


def test_files_without_a_sidecar_and_older_inline_files_read(tmp_path):
    path = tmp_path / "cpu.jsonl"
    _write(path, "2026-01-01T00:00:00+00:00", 0.5)
    timings_path(path).unlink()
    rf = read(path)
    assert "seconds" not in rf.results[0] and "started" not in rf.runs[0]
    old = tmp_path / "old.jsonl"
    header = {"record": "run", "schema": 1, "device": "cpu", "started": "x", "env": {"import_seconds": 1.0}}
    old.write_text(json.dumps(header) + "\n" + json.dumps({"record": "result", "id": "a", "device": "cpu",
                                                          "seconds": 2.0}) + "\n")  # fmt: skip
    rf = read(old)
    assert rf.runs[0]["started"] == "x" and rf.results[0]["seconds"] == 2.0
