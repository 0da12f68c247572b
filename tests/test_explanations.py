"""Explanations of behaviour changes: the committed file, strict loading with lines, matching."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from harness import catalogue, explanations, phases
from harness.cases import CaseFileError

RELEASES = ["1.6", "1.7", "1.8", "1.12", "1.13", "2.0", "2.1", "nightly"]

GOOD = """\
version: 1
explanations:
  - since: "1.13"
    phase: forward
    from: "0"
    to: nan
    explanation: The rewrite uses xlogy.
    upstream:
      - pr: 80334
        note: composite
      - issue: 69230
  - since: "2.1"
    phase: forward
    from: not implemented
    to: value
    explanation: Half on CPU.
    upstream:
      - commit: 0123abcd
"""


@dataclass
class Change:
    since: str
    phase: str
    from_: str
    to: str


def _write(tmp_path, text: str):
    path = tmp_path / "explanations.yaml"
    path.write_text(text)
    return path


def _refused(tmp_path, text: str, line: int, message: str) -> CaseFileError:
    path = _write(tmp_path, text)
    with pytest.raises(CaseFileError) as info:
        explanations.load(path, releases=RELEASES)
    err = info.value
    assert str(err).startswith(f"{path}:{line}: "), str(err)
    assert err.line == line
    assert re.search(message, str(err)), str(err)
    return err


def test_committed_file_loads_and_every_entry_cites_upstream():
    entries = explanations.load()
    assert entries
    known = {r.key for r in catalogue.load()}
    for e in entries:
        assert e.since in known
        assert e.upstream, e
        assert all(ref.kind in ("pr", "issue", "commit") for ref in e.upstream)
        assert e.explanation.strip()
        assert e.line > 0
    keys = {(e.since, e.phase) for e in entries}
    assert {("1.8", "forward"), ("1.13", "forward"), ("2.1", "forward")} <= keys


def test_committed_file_is_not_read_as_a_case_file():
    """cases/*.yaml are case files (harness.cases.default_case_files); this one lives apart."""
    from harness.cases import default_case_files

    assert explanations.EXPLANATIONS_PATH not in default_case_files()
    assert explanations.EXPLANATIONS_PATH.is_file()


def test_a_good_file_loads_with_lines_and_references(tmp_path):
    first, second = explanations.load(_write(tmp_path, GOOD), releases=RELEASES)
    assert first.key == ("1.13", "forward", "0", "nan")
    assert first.transition == "forward: 0 → nan" == first.heading
    assert first.line == 3 and second.line == 12
    assert [(r.kind, r.id, r.note) for r in first.upstream] == [("pr", 80334, "composite"), ("issue", 69230, "")]
    assert first.upstream[0].url == "https://github.com/pytorch/pytorch/pull/80334"
    assert second.upstream[0].url == "https://github.com/pytorch/pytorch/commit/0123abcd"


def test_typo_key_is_refused_at_its_line(tmp_path):
    text = GOOD.replace("    explanation: Half on CPU.", "    explaination: Half on CPU.")
    _refused(tmp_path, text, 16, r"explanations\[1\]: unknown key 'explaination'")


def test_unknown_release_is_refused_with_the_known_ones(tmp_path):
    text = GOOD.replace('since: "2.1"', 'since: "1.14"')
    err = _refused(tmp_path, text, 12, r"explanations\[1\]\.since: unknown release '1\.14'")
    assert "(known: 1.6, 1.7, 1.8, 1.12, 1.13, 2.0, 2.1, nightly)" in str(err)


def test_default_releases_are_the_catalogue(tmp_path):
    text = GOOD.replace('since: "2.1"', 'since: "1.14"')
    with pytest.raises(CaseFileError, match=r":12: .*unknown release '1\.14' \(known: 1\.6, 1\.7, .*, nightly\)"):
        explanations.load(_write(tmp_path, text))


def test_unquoted_release_is_refused(tmp_path):
    text = GOOD.replace('since: "2.1"', "since: 2.10")
    _refused(tmp_path, text, 12, r"quote it")


def test_unknown_phase_is_refused(tmp_path):
    text = GOOD.replace("    phase: forward\n    from: not", "    phase: backward\n    from: not")
    known = ", ".join((*phases.NAMES, "warnings"))
    _refused(tmp_path, text, 13, re.escape(f"unknown phase 'backward' (known: {known})"))


def test_unknown_descriptor_is_refused(tmp_path):
    text = GOOD.replace("    to: nan\n", "    to: nann\n")
    _refused(tmp_path, text, 6, r"explanations\[0\]\.to: unknown transition descriptor 'nann'")


def test_duplicate_entry_names_the_first_line(tmp_path):
    text = GOOD + GOOD.split("explanations:\n")[1].split('  - since: "2.1"')[0]
    _refused(tmp_path, text, 19, r"explanations\[2\]: duplicate explanation of 1\.13 .*\(first at line 3\)")


def test_missing_explanation_is_refused(tmp_path):
    text = GOOD.replace("    explanation: Half on CPU.\n", "")
    _refused(tmp_path, text, 12, r"explanations\[1\]: 'explanation' is a required property")


def test_empty_upstream_and_bad_references_are_refused(tmp_path):
    text = GOOD.replace("    upstream:\n      - commit: 0123abcd\n", "    upstream: []\n")
    _refused(tmp_path, text, 17, r"explanations\[1\]\.upstream: must not be empty")
    for bad in ("note: searched, found nothing", 'pr: "80334"', "pr: 1\n        issue: 2", "commit: xyz"):
        text = GOOD.replace("      - commit: 0123abcd", f"      - {bad}")
        _refused(tmp_path, text, 18, r"explanations\[1\]\.upstream\[0\]")


def test_yaml_syntax_error_has_its_line(tmp_path):
    text = GOOD.replace("    to: value\n", "    to: value: oops\n")
    _refused(tmp_path, text, 15, r"YAML syntax: mapping values are not allowed")


@pytest.mark.parametrize(
    "text",
    [
        "finite",
        "0",
        "-0",
        "nan",
        "inf",
        "-inf",
        "0/inf",
        "finite/nan/-inf",
        "value",
        "not implemented",
        "no gradient",
        "crash",
        "timeout",
        "none",
        "RuntimeError",
        "RuntimeError (new message)",
        "UserWarning (new message)",
        "NotImplementedException",
    ],
)
def test_descriptor_grammar_accepts(text):
    assert explanations.is_descriptor(text)


@pytest.mark.parametrize(
    "text",
    ["nann", "", "0/", "0//inf", "0/0", "Value", "runtimeError", "RuntimeErr", "RuntimeError (new)", "nan ", 0, None],
)
def test_descriptor_grammar_refuses(text):
    assert not explanations.is_descriptor(text)


def test_match_pairs_exact_changes_and_reports_the_rest(tmp_path):
    entries = explanations.load(_write(tmp_path, GOOD), releases=RELEASES)
    changes = [
        Change("1.13", "forward", "0", "nan"),  # explained
        Change("1.13", "forward", "0", "-0"),  # same since/phase, other transition: unexplained
        Change("1.13", "forward", "0", "nan"),  # the same change on another case: explained too
    ]
    m = explanations.match(entries, changes)
    assert m.explained == {0: entries[0], 2: entries[0]}
    assert m.unexplained == [1]
    assert m.stale == [entries[1]]
    assert explanations.match([], []) == explanations.Matching({}, [], [])


def test_report_refuses_a_bad_explanations_file_and_writes_nothing(tmp_path):
    """A typo in the explanations is an input error (exit 2, file:line) and no report file is
    written half-way."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    bad = tmp_path / "explanations.yaml"
    text = (ROOT / "cases" / "explanations" / "explanations.yaml").read_text()
    bad.write_text(text.replace("    explanation: >-", "    explaination: >-", 1))
    line = next(i for i, ln in enumerate(bad.read_text().splitlines(), 1) if "explaination" in ln)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "harness", "report", "--out", str(out), "--explanations", str(bad),
         "--results", str(ROOT / "reports" / "results" / "1.12"), str(ROOT / "reports" / "results" / "1.13")],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert f"{bad}:{line}:" in result.stderr and "explaination" in result.stderr
    assert not out.exists() or not any(out.iterdir())
