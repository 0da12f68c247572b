"""The results store (harness.results): each distinct outcome once per device, per-release
index files, values as exact bytes; JSON Lines files still read, and migrated without torch."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import gate, results
from harness.results import ResultsError, Writer, read, read_index, result_files
from tests.conftest import ROOT

STORE = ROOT / "reports" / "results"
FILE_LIMIT = 10 * 1024 * 1024
RECORD_LIMIT = 64 * 1024


def _tensor(dtype, values, shape=None):
    return {"dtype": dtype, "shape": [len(values)] if shape is None else shape, "values": values}


def _records(torch="2.5.1", started="2026-01-01T00:00:00+00:00", seconds=0.5):
    header = {"record": "run", "schema": 1, "device": "cpu", "started": started, "jobs": 2, "cases": 4,
              "env": {"torch": torch, "python": "3.11", "import_seconds": seconds}}  # fmt: skip
    special = [0.0, -0.0, math.inf, -math.inf, math.nan, 1.5, 65504.0, 2.0**-24]
    out = [header]
    for k, (cid, dtype, values) in enumerate(
        [
            ("a/float16/functional", "float16", special),
            ("a/float16/module", "float16", special),  # the same outcome as the line above
            ("a/bfloat16/functional", "bfloat16", [0.1015625, -3.0e38, math.nan]),
            ("a/float64/functional", "float64", [0.1, 1 / 3, -0.0]),
        ]
    ):
        out.append(
            {
                "record": "result",
                "id": cid,
                "device": "cpu",
                "digest": f"{k:016x}",
                "status": "ok",
                "seconds": seconds,
                "error": None,
                "grad_errors": {},
                "warnings": [{"category": "UserWarning", "message": "w"}],
                "output": _tensor(dtype, values),
                "grads": {"first": _tensor(dtype, values)},
            }  # fmt: skip
        )
    out.append(
        {
            "record": "result",
            "id": "b/float32/functional",
            "device": "cpu",
            "digest": "ffff000000000000",
            "status": "ok",
            "error": {"type": "RuntimeError", "message": "not implemented for 'Half'"},
            "grad_errors": {},
            "warnings": [],
            "output": None,
            "grads": {},
        }  # fmt: skip
    )
    return out


def _journal(path: Path, records) -> Path:
    with Writer(path, append=False) as w:
        for r in records:
            w.write(r)
    return path


def _plain(rf):
    return json.dumps([rf.runs, [{k: v for k, v in r.items() if k != "seconds"} for r in rf.results]], sort_keys=True)


def test_an_index_reads_back_as_the_records_it_was_made_from(tmp_path):
    journal = _journal(tmp_path / "journal" / "cpu.jsonl", _records())
    index = results.pack(journal, tmp_path / "store" / "2.5" / "cpu.index")
    assert _plain(read(index)) == _plain(read(journal))
    lines = index.read_text().splitlines()
    assert lines[0].startswith("{") and "started" not in lines[0]  # the run's timings are in the sidecar
    ids, prev = [], ""
    for ln in lines[1:]:  # front-coded: the characters shared with the line above, then the rest
        shared, rest = ln.split("\t")[:2]
        ids.append(prev[: int(shared)] + rest)
        prev = ids[-1]
    assert ids == [r["id"] for r in _records()[1:]]
    assert lines[2].startswith(f"{len('a/float16/')}\tmodule\t")
    outcomes = results.read_outcomes(tmp_path / "store", "cpu")
    assert len(outcomes) == 4  # the two API forms with equal outcomes share one line
    assert all("values" not in t and "0.1" not in t for t in outcomes.values())  # bytes, not decimal text
    assert read(index).runs[0]["started"] == "2026-01-01T00:00:00+00:00"  # merged back from the sidecar


def test_a_rerun_writes_the_same_bytes_and_a_second_release_adds_only_its_index(tmp_path):
    store = tmp_path / "store"
    first = results.pack(_journal(tmp_path / "j1" / "cpu.jsonl", _records()), store / "2.5" / "cpu.index")
    before = {p: p.read_bytes() for p in store.rglob("*") if p.is_file() and not p.name.endswith(".timings")}
    again = _records(started="2026-02-02T00:00:00+00:00", seconds=0.9)
    results.pack(_journal(tmp_path / "j2" / "cpu.jsonl", again), first)
    assert {p: p.read_bytes() for p in before} == before
    assert read(first).runs[0]["started"] == "2026-02-02T00:00:00+00:00"
    # a release that behaves alike: a new index, no new outcome
    results.pack(_journal(tmp_path / "j3" / "cpu.jsonl", _records(torch="2.6.0")), store / "2.6" / "cpu.index")
    assert {p: p.read_bytes() for p in before if "outcomes" in p.parts} == {
        p: b for p, b in before.items() if "outcomes" in p.parts
    }
    assert sorted(p.relative_to(store).as_posix() for p in result_files([store])) == ["2.5/cpu.index", "2.6/cpu.index"]


def test_packing_in_any_order_gives_the_same_store(tmp_path):
    journals = []
    for k, torch in enumerate(("2.5.1", "2.6.0")):
        recs = _records(torch=torch)
        recs[1]["output"] = _tensor("float64", [float(k)])  # each release one outcome of its own
        journals.append((torch[:3], _journal(tmp_path / f"j{k}" / "cpu.jsonl", recs)))
    for name, order in (("x", journals), ("y", journals[::-1])):
        for rel, j in order:
            results.pack(j, tmp_path / name / rel / "cpu.index")
    files = sorted(p.relative_to(tmp_path / "x") for p in (tmp_path / "x").rglob("*") if p.is_file())
    for f in files:
        if f.name.endswith(".timings"):
            continue
        assert (tmp_path / "x" / f).read_bytes() == (tmp_path / "y" / f).read_bytes(), f


def test_an_outcome_missing_from_the_store_names_file_and_line(tmp_path):
    index = results.pack(_journal(tmp_path / "j" / "cpu.jsonl", _records()), tmp_path / "s" / "2.5" / "cpu.index")
    shutil.rmtree(tmp_path / "s" / "outcomes")
    with pytest.raises(ResultsError, match=r"cpu\.index:2: outcome [0-9a-f]{16} is not in .*incomplete"):
        read_index(index)
    index.write_text(index.read_text().replace("\t", " ", 1))
    with pytest.raises(ResultsError, match=r"cpu\.index:2: expected"):
        read_index(index)
    index.write_text(index.read_text().replace("0 a/", "99\ta/", 1))  # shares more than the line above has
    with pytest.raises(ResultsError, match=r"cpu\.index:2: expected"):
        read_index(index)


def test_prune_drops_only_unreferenced_outcomes(tmp_path):
    store = tmp_path / "s"
    index = results.pack(_journal(tmp_path / "j" / "cpu.jsonl", _records()), store / "2.5" / "cpu.index")
    results.add_outcomes(store, "cpu", dict([results.encode_outcome({"status": "ok", "output": None})]))
    assert len(results.read_outcomes(store, "cpu")) == 5
    assert results.prune_outcomes(store) == 1 and len(results.read_outcomes(store, "cpu")) == 4
    assert _plain(read(index))


def test_migration_keeps_verdicts_findings_and_the_report(tmp_path):
    """Three committed releases written back as JSON Lines, then migrated: the same records,
    verdict frame, findings and report (but for the file names it shows)."""
    from harness.evaluation import verdict_frame
    from harness.report import write_report

    legacy = tmp_path / "legacy"
    for rel in ("1.12", "1.13", "2.0"):
        rf = read(STORE / rel / "cpu.index")
        _journal(
            legacy / rel / "cpu.jsonl", [*rf.runs, *({k: v for k, v in r.items() if k != "run"} for r in rf.results)]
        )
    migrated = tmp_path / "migrated"
    shutil.copytree(legacy, migrated)
    done = results.migrate(migrated)
    assert len(done) == 3 and not list(migrated.rglob("*.jsonl"))
    for rel in ("1.12", "1.13", "2.0"):
        assert _plain(read(migrated / rel / "cpu.index")) == _plain(read(legacy / rel / "cpu.jsonl"))
    a, b = verdict_frame([legacy]), verdict_frame([migrated])
    cols = [c for c in a.columns if c not in ("source", "seconds")]
    assert a[cols].astype(str).equals(b[cols].astype(str))
    out_a, out_b = write_report([legacy], tmp_path / "ra"), write_report([migrated], tmp_path / "rb")
    assert len(out_a["data"].behaviour.changes) == len(out_b["data"].behaviour.changes) > 0
    for name in ("summary.json", "README.md", "index.html"):
        text_a = (tmp_path / "ra" / name).read_text().replace("cpu.jsonl", "cpu.index")
        assert text_a == (tmp_path / "rb" / name).read_text(), name


def test_show_prints_one_record_with_its_values():
    cid = "softmax-4x5/batchmean/log_target=false/intended/float32/functional"
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "show", "2.5", cid], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["id"] == cid and shown["release"] == "2.5" and len(shown["output"]["values"]) == 1
    assert len(shown["grads"]["first"]["values"]) == 20
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "show", "2.5", "no/such/case"], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 2 and "no result for case 'no/such/case'" in proc.stderr


# ------------------------------------------------------------------ guards on what is committed


def test_committed_results_are_in_the_store_and_bounded():
    files = [p for p in STORE.rglob("*") if p.is_file()]
    assert files and not [p for p in files if p.suffix == ".jsonl"], "committed results are packed: harness store"
    too_big = [f"{p} ({p.stat().st_size:,} bytes)" for p in files if p.stat().st_size > FILE_LIMIT]
    assert not too_big, too_big
    for p in files:
        if p.name.endswith((results.OUTCOMES_SUFFIX, results.INDEX_SUFFIX)):
            longest = max(map(len, p.read_bytes().split(b"\n")))
            assert longest <= RECORD_LIMIT, f"{p}: a record of {longest:,} bytes"
    total = sum(p.stat().st_size for p in files)
    assert total <= 15 * 1024 * 1024, f"the committed store takes {total:,} bytes"


def test_the_baseline_is_small_and_reads_back():
    path = ROOT / "reports" / "baseline.json"
    assert path.stat().st_size <= 1024 * 1024
    blocks = gate.load_baseline(path)
    assert len(blocks) >= 24 and gate.dumps(blocks) == path.read_text()


def test_a_results_files_cache_entry_follows_its_timings(tmp_path):
    """An identical rerun writes the same index and other timings (when it started): the
    evaluation cache must not hand back the earlier run's."""
    import shutil

    from harness.cases import load_cases
    from harness.evaluation import Evaluation
    from harness.results import timings_path

    store = tmp_path / "results"
    shutil.copytree(ROOT / "reports" / "results" / "outcomes", store / "outcomes")
    shutil.copytree(ROOT / "reports" / "results" / "2.5", store / "2.5")
    index = store / "2.5" / "cpu.index"
    cases = {c.id: c for c in load_cases()}
    cache = tmp_path / "cache"
    first = Evaluation(cases, cache).evaluate_file(index)
    side = timings_path(index)
    side.write_text(side.read_text().replace(first.runs[0]["started"], "2030-01-01T00:00:00+00:00", 1))
    again = Evaluation(cases, cache).evaluate_file(index)
    assert first.runs[0]["started"] != "2030-01-01T00:00:00+00:00"
    assert again.runs[0]["started"] == "2030-01-01T00:00:00+00:00"
