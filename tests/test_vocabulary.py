"""The vocabulary is declared once: verdicts (harness.verdicts) and case axes (harness.axes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from harness import axes, cases, cli, verdicts
from harness.cases import load_cases
from tests.conftest import ROOT


def test_verdict_table_is_complete_and_ordered():
    names = [v.name for v in verdicts.TABLE]
    assert len(set(names)) == len(names) and names[0] == "crash" and names[-1] == "pass"
    assert verdicts.RANK == {n: i for i, n in enumerate(names)}
    assert set(verdicts.PROBLEMS) == {"crash", "timeout", "error", "nan", "mismatch", "stale"}
    assert verdicts.worst("pass", None, "nan", "mismatch") == "nan" and verdicts.worst() == "pass"
    for v in verdicts.TABLE:
        assert len(v.symbol) == 1 and v.meaning and v.background.startswith("#")


def _contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two #rrggbb colours."""

    def lum(c):
        c = "#" + "".join(x * 2 for x in c[1:]) if len(c) == 4 else c
        rgb = [int(c[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        lin = [x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4 for x in rgb]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_report_styles_and_legends_come_from_the_tables():
    from harness.report import assemble, glance

    css = assemble._css()
    html, md = assemble._environments()
    macros = html.get_template("_macros.html.j2").module
    for v in verdicts.TABLE:
        assert v.css in css
        assert f'class="v v-{v.name}"' in str(macros.badge(v.name)) and v.symbol in str(macros.badge(v.name))
        assert _contrast(v.background, v.foreground) >= 4.5, v.name
    for st in glance.STATES:
        assert f".s-{st.name}{{background:{st.background};color:{st.foreground}}}" in css
        assert _contrast(st.background, st.foreground) >= 4.5, st.name
        assert st.symbol in str(macros.legend()) and st.short in str(macros.legend())
    assert len({st.name for st in glance.STATES}) == len(glance.STATES)


def test_gate_refuses_a_baseline_with_an_unknown_verdict(tmp_path):
    import pytest

    from harness import gate

    path = tmp_path / "baseline.json"
    block = {"release": "2.5", "device": "cpu", "torch": "2.5.1", "cases": {"a": "passed 0123456789ab"}}
    path.write_text(json.dumps({"schema": 2, "blocks": [block]}))
    with pytest.raises(gate.BaselineError, match="'passed 0123456789ab'"):
        gate.load_baseline(path)
    block["cases"]["a"] = "pass 0123456789ab"
    path.write_text(json.dumps({"schema": 2, "blocks": [block]}))
    assert gate.load_baseline(path)[("2.5", "cpu")].cases == {"a": "pass 0123456789ab"}
    # the schema written today: its entries are checked the same way
    blocks = [{k: v for k, v in block.items() if k != "cases"}]
    path.write_text(
        json.dumps({"schema": gate.SCHEMA, "blocks": blocks, "entries": ["passed -"], "cases": {"a": "0*1"}})
    )
    with pytest.raises(gate.BaselineError, match="'passed -'"):
        gate.load_baseline(path)


def test_case_ids_and_attributes_follow_the_axis_declaration():
    case = load_cases()[0]
    assert case.id == axes.case_id(case.family.label, case.values)
    assert case.id.split("/")[1:] == [a.id_part(v) for a, v in zip(axes.AXES, case.values)]
    assert case.axes() == dict(zip(axes.NAMES, case.values))
    assert case.dtype == case.values[axes.NAMES.index("dtype")]


def test_committed_schema_carries_the_declared_axes(tmp_path):
    """cases/schema.json (read by editors) holds what harness.axes declares; after an axis
    changes, regenerate it: python -m harness schema."""
    committed = json.loads(cases.SCHEMA_PATH.read_text())
    assert committed == {**cases.schema(), "$defs": {**cases.schema()["$defs"]}}
    assert committed["$defs"]["axes"] == axes.schema_defs()["axes"]
    assert committed["$defs"]["excludeRule"] == axes.schema_defs()["excludeRule"]
    out = tmp_path / "schema.json"
    assert cli.main(["schema", "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == committed and out.read_text() == cases.SCHEMA_PATH.read_text()


TRIAL = """    Axis("layout", ("contiguous", "transposed"), "string", True, "memory layout of both arguments"),
)  # fmt: skip"""


def test_a_trial_axis_is_one_declaration(tmp_path):
    """A copy of the harness with one more axis declared in harness/axes.py (and nothing
    else changed) validates case files that use it, expands over it, puts it in case ids
    and plan entries, and builds a plan."""
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "harness", tree / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "cases", tree / "cases")
    shutil.copy(ROOT / "pyproject.toml", tree)
    src = (tree / "harness" / "axes.py").read_text()
    assert src.count(")  # fmt: skip") == 1
    (tree / "harness" / "axes.py").write_text(src.replace(")  # fmt: skip", TRIAL))
    (tree / "cases" / "trial.yaml").write_text(
        "version: 1\ndescription: trial\nfamilies:\n  - name: trial\n    generator: softmax\n    shape: [2, 3]\n"
        "    seed: 1\n    axes: {reduction: [sum], log_target: [false], order: [intended], dtype: [float64],"
        " api: [functional], layout: [transposed]}\n"
    )
    code = (
        "import json; from harness.cases import load_cases; from harness.runner import build_plan; "
        "cs = load_cases(['cases/trial.yaml', 'cases/core.yaml']); p = build_plan(cs); "
        "print(json.dumps([cs[0].id, cs[0].layout, p['cases'][0].get('layout'), len(cs)]))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    cid, layout, in_plan, n = json.loads(out.stdout)
    assert cid == "trial-2x3/sum/log_target=false/intended/float64/functional/transposed"
    assert layout == in_plan == "transposed"
    assert n == 1 + 2 * sum(1 for c in load_cases([ROOT / "cases" / "core.yaml"]))  # every family x 2 layouts
    # ... and the report groups and filters by it: a results file for the trial case, rendered
    header = {"record": "run", "schema": 1, "device": "cpu", "cases": 1, "env": {"torch": "2.5.1"}}
    result = {"record": "result", "id": cid, "device": "cpu", "status": "ok", "error": None, "warnings": []}
    result["output"] = {"dtype": "float64", "shape": [], "values": [0.5]}
    (tree / "res" / "2.5").mkdir(parents=True)
    (tree / "res" / "2.5" / "cpu.jsonl").write_text(json.dumps(header) + "\n" + json.dumps(result) + "\n")
    cmd = [sys.executable, "-m", "harness", "report", "--results", "res", "--out", "rep", "--cases", "cases/trial.yaml"]
    out = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, env={**os.environ, "HARNESS_CACHE": "off"})
    assert out.returncode == 0, out.stderr
    page = (tree / "rep" / "cases" / "trial-2x3.html").read_text()
    assert '<select name="layout"><option value="">any</option><option value="contiguous">' in page
    assert 'data-layout="transposed"' in page and 'data-api="functional"' in page
    bad = tree / "cases" / "bad.yaml"
    bad.write_text((tree / "cases" / "trial.yaml").read_text().replace("[transposed]", "[diagonal]"))
    out = subprocess.run(
        [sys.executable, "-c", "from harness.cases import load_cases; load_cases(['cases/bad.yaml'])"],
        cwd=tree,
        capture_output=True,
        text=True,
    )
    assert (
        "bad.yaml:8: families[0].axes.layout[0]:" in out.stderr
        and "'diagonal' is not one of 'contiguous', 'transposed'" in out.stderr
    )


def test_readme_names_every_phase():
    """README's Phases section names each phase as the report labels it."""
    from harness import phases

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Phases") : readme.index("### Verdicts")]
    assert [p.label for p in phases.PHASES if p.label not in section] == []


def test_summary_schema_names_the_phases_of_harness_phases():
    """summary.schema.json's phase enum is harness.phases' names and the warnings: one vocabulary."""
    from harness import phases

    schema = json.loads((ROOT / "reports" / "summary.schema.json").read_text())
    assert schema["$defs"]["phase"]["enum"] == [*phases.NAMES, "warnings"]


def test_the_worker_records_the_second_order_under_the_phases_keys():
    """harness/worker.py runs with the standard library and torch only, so it spells the
    second-order keys itself: they must be harness.phases' (and the reference's)."""
    from harness import phases, reference, worker

    declared = {p.grad_of for p in phases.SECOND_ORDER}
    assert {f"{outer} of {inner}" for outer, inner in worker.SECOND_ORDER} == declared
    assert {reference.second_key(*pair) for pair in reference.SECOND_ORDER} == declared
