"""Hostile strings (HTML, Markdown pipes, ANSI escapes, very long text) in case files,
warnings, exception messages and environment fields render safely in every format."""

from __future__ import annotations

import json
from html.parser import HTMLParser

from harness import report
from harness.cases import load_cases
from tests.test_report import _result, _write

LONG = "A" * 200_000
ANSI = "\x1b[31mRED\x1b[0m\x07"
NASTY = f"<img src=x onerror=alert(1)> | col | `code` [link](javascript:alert(1)) {ANSI} <!-- --> ]]> {LONG}"

CASE_FILE = """\
version: 1
families:
  - name: softmax
    description: "<b>bold</b> | pipe | \\x1b[31m ansi"
    generator: softmax
    shape: [4, 5]
    seed: 7
    axes: {reduction: [sum, mean], log_target: [false], order: [intended], dtype: [float64], api: [functional]}
"""


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attrs = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(name for name, _ in attrs)


def test_hostile_strings_are_neutralised_everywhere(tmp_path):
    cases_path = tmp_path / "cases.yaml"
    cases_path.write_text(CASE_FILE)
    cases = load_cases([cases_path])
    recs = [
        _result(cases[0], warnings=[("UserWarning", NASTY)]),
        _result(cases[1], error={"type": "RuntimeError", "message": NASTY, "phase": "forward"}),
    ]
    _write(tmp_path / "results" / "2.0" / "cpu.jsonl", "2.0.1", "cpu", recs, len(cases))
    out = tmp_path / "out"
    report.write_report([tmp_path / "results"], out, case_paths=[cases_path], expected_releases=["2.0"])
    md = (out / "README.md").read_text()
    page = (out / "index.html").read_text()
    raw = (out / "summary.json").read_text()
    summary = json.loads(raw)  # valid JSON whatever the strings
    for text in (md, page):
        assert "<img" not in text and "<b>bold" not in text and "\x1b" not in text and "\x07" not in text
        assert "A" * 20_000 not in text  # very long text is clipped
    parser = _Tags()
    parser.feed(page)
    assert "img" not in parser.tags
    assert {a for a in parser.attrs if a.startswith("on")} <= {"onsubmit"}  # the page's own filter form only
    assert "javascript:" not in page.replace("javascript:alert(1)", "")  # only as escaped text
    # every Markdown table row keeps its column count: pipes in data never split a cell
    tables = []
    for block in md.split("\n\n"):
        rows = [ln for ln in block.splitlines() if ln.startswith("|")]
        if len(rows) > 2:
            tables.append(block)
            widths = {ln.replace("\\|", "").count("|") for ln in rows}
            assert len(widths) == 1, block[:300]
    assert any("UserWarning" in t for t in tables)  # the table holding the hostile warning was among those checked
    # summary.json is data for machines: the warning comes back as the very text recorded (neither clipped nor
    # escaped), the control characters only as JSON escapes in the file; the error is counted
    assert [(w["category"], w["message"], w["total"]) for w in summary["warnings"]] == [("UserWarning", NASTY, 1)]
    assert "\x1b" not in raw and "\x07" not in raw and "\\u001b[31mRED" in raw
    counts = {(h["release"], h["device"]): h["counts"] for h in summary["verdict_counts"]}
    assert counts[("2.0", "cpu")] == {"error": 1, "pass": 1}
    assert json.loads(json.dumps(summary)) == summary
