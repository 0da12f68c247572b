"""The release catalogue and the nox sessions generated from it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from harness import catalogue, results
from harness.versions import is_before
from tests.conftest import ROOT

RELEASES = catalogue.load()
STABLE = [r for r in RELEASES if r.torch != "nightly"]


def test_catalogue_is_sorted_without_duplicates_from_1_6():
    keys = [r.sort_key for r in STABLE]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert len({r.key for r in RELEASES}) == len(RELEASES)
    assert STABLE[0].torch == "1.6.0" and len(STABLE) >= 20


def test_every_entry_has_an_interpreter_rule_and_requirements():
    for rel in RELEASES:
        assert rel.python.count(".") == 1 and rel.python.startswith("3.")
        assert rel.requirements()[0].startswith("torch")
        assert "all" in rel.all_tags or rel.torch == "nightly"


def test_legacy_tag_and_default_set():
    legacy = {r.key for r in RELEASES if "legacy" in r.all_tags}
    assert legacy == {r.key for r in STABLE if is_before(r.torch, "1.13")}
    default = [r for r in RELEASES if "default" in r.all_tags]
    assert any(is_before(r.torch, "1.13") for r in default)
    assert any(is_before("2.0", r.torch) and is_before(r.torch, STABLE[-1].torch) for r in default)
    assert STABLE[-1] in default


def test_catalogue_errors_name_the_entry(tmp_path):
    bad = tmp_path / "releases.toml"
    bad.write_text('releases = [ { torch = "2.0.1", python = "three" } ]\n')
    with pytest.raises(ValueError, match=r"releases\[0\]: python must be 'X.Y'"):
        catalogue.load(bad)


def test_index_is_configurable(monkeypatch):
    rel = STABLE[-1]
    monkeypatch.delenv(catalogue.INDEX_ENV, raising=False)
    assert catalogue.torch_index(rel) == catalogue.PYPI
    monkeypatch.setenv(catalogue.INDEX_ENV, "https://download.pytorch.org/whl/cpu")
    assert catalogue.torch_index(rel) == "https://download.pytorch.org/whl/cpu"


def test_missing_interpreter_message_says_what_to_install():
    assert catalogue.find_interpreter("3.99") is None
    msg = catalogue.missing_interpreter_message("3.99")
    assert "uv python install 3.99" in msg and "pyenv install 3.99" in msg


def _nox_list(*args):
    if subprocess.run([sys.executable, "-m", "nox", "--version"], capture_output=True).returncode != 0:
        pytest.skip(f"nox is not runnable as {sys.executable} -m nox")
    out = subprocess.run([sys.executable, "-m", "nox", "-l", "--json", *args], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def sessions():
    return _nox_list("-t", "all", "nightly", "cuda")


def test_nox_lists_one_run_session_per_release_with_tags(sessions):
    by_name = {s["session"]: s for s in sessions}
    for rel in RELEASES:
        s = by_name[f"run(torch='{rel.key}')"]
        assert set(rel.all_tags) <= set(s["tags"])
    assert "default" in by_name["report"]["tags"]
    assert {s["session"] for s in sessions if "cuda" in s["tags"]} == {f"cuda(torch='{r.key}')" for r in STABLE}


def test_nox_default_selection_is_the_default_set_the_report_and_the_gate():
    selected = [s["session"] for s in _nox_list()]
    default = [f"run(torch='{r.key}')" for r in RELEASES if "default" in r.all_tags]
    assert selected == default + ["report", "gate"]  # in this order: the gate says whether they agree


@pytest.mark.slow
def test_one_real_nox_session_on_the_newest_release(tmp_path):
    """Installs the newest torch with uv (minutes on a cold cache) and runs the whole matrix."""
    if os.environ.get("HARNESS_SKIP_SLOW") == "1":
        pytest.skip("HARNESS_SKIP_SLOW=1")
    newest = STABLE[-1]
    store, journal = tmp_path / "store", tmp_path / "journal"
    env = {**os.environ, "HARNESS_RESULTS": str(store), "HARNESS_JOURNAL": str(journal), "HARNESS_DEVICES": "cpu"}
    out = subprocess.run(
        [sys.executable, "-m", "nox", "-s", f"run(torch='{newest.key}')"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=3000,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = (journal / newest.key / "cpu.jsonl").read_text().splitlines()
    header = json.loads(lines[0])
    assert header["env"]["torch"].startswith(newest.torch)
    assert len(lines) - 1 == header["cases"] >= 2000
    # packed into the store: the same records, each outcome once
    packed = results.read(store / newest.key / "cpu.index")
    assert len(packed.results) == header["cases"] and packed.runs[0]["env"]["torch"] == header["env"]["torch"]
    assert 0 < len(results.read_outcomes(store, "cpu")) < header["cases"]
    timing = json.loads((store / newest.key / "timing.json").read_text())
    assert timing["install_seconds"] >= 0 and "cpu" in timing["devices"] and timing["run_seconds"] > 0


def test_nox_sessions_declare_python_as_version_strings():
    """`nox -p 3.8` selects the releases whose catalogue entry says Python 3.8."""
    sessions = _nox_list("-p", "3.8", "-t", "all")
    want = {f"run(torch='{r.key}')" for r in RELEASES if r.python == "3.8" and r.torch != "nightly"}
    assert want and {s["session"] for s in sessions if s["session"].startswith("run(")} == want
