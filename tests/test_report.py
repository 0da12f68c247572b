"""The compatibility report (harness/report/) on small synthetic result sets.

Results files are written directly in the results format (a run header, then result
records) for cases of a small case file, with values taken from the reference, so the
verdicts are known: pass, nan, error, crash."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import phases, report
from harness.cases import load_cases
from harness.cli import main
from harness.evaluate import case_references
from harness.inputs import call_inputs, input_digest, plan_entry, round_to_dtype
from harness.report import assemble, casepages, glance, text
from harness.report.base import Cell, Section, Table
from harness.versions import release_key

HOSTILE = "<script>alert(1)</script> | `x`"
HOSTILE_HTML = "&lt;script&gt;alert(1)&lt;/script&gt; | `x`"
HOSTILE_MD = r"&lt;script&gt;alert(1)&lt;/script&gt; \| \`x\`"
EXPECTED = ["1.7", "1.8", "1.9", "1.10", "2.0", "2.1"]

CASE_FILE = """\
version: 1
families:
  - name: softmax
    description: "A batch of 4 distributions over 5 classes."
    generator: softmax
    shape: [4, 5]
    seed: 7
    axes:
      reduction: [none, sum, mean, batchmean]
      log_target: [false, true]
      order: [intended]
      dtype: [float64]
      api: [module, functional]
"""


def _tensor(arr, dtype="float64"):
    arr = np.asarray(arr, dtype=np.float64)
    return {"shape": list(arr.shape), "dtype": dtype, "values": arr.reshape(-1).tolist()}


def _result(case, device="cpu", output=None, error=None, warnings=(), status="ok"):
    """A result record; by default the reference values themselves (verdict pass)."""
    ref = case_references(case).documented
    rec = {
        "record": "result",
        "status": status,
        "id": case.id,
        "device": device,
        "seconds": 0.001,
        "digest": input_digest(plan_entry(case, {})),
        "error": error,
        "output": None,
        "grads": {},
        "grad_errors": {},
        "warnings": [{"category": c, "message": m} for c, m in warnings],
    }
    if status != "ok":
        rec["detail"] = "killed by signal SIGSEGV"
    elif error is None:
        rec["output"] = _tensor(ref.forward.value if output is None else output)
        rec["grads"] = {k: _tensor(g.value) for k, g in ref.grads.items()}
    return rec


def _write(path: Path, torch_version, device, records, cases_in_plan):
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {
        "record": "run",
        "schema": 1,
        "device": device,
        "harness": "0.1.0",
        "resumed": False,
        "started": "2026-01-01T00:00:00+00:00",
        "cases": cases_in_plan,
        "env": {
            "torch": torch_version,
            "torch_git": "0123456789abcdef",
            "cuda": None,
            "cudnn": None,
            "python": "3.8.18",
            "platform": "Linux-test",
            "machine": "x86_64",
            "device": device,
            "device_name": "x86_64",
            "threads": 2,
            "import_seconds": 0.5,
        },
    }
    lines = [header, *records]
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in lines))


def _changed(case):
    return case.reduction == "sum" and case.log_target


@pytest.fixture
def synthetic(tmp_path):
    """results/ with: 1.7 cpu all pass; 1.8 cpu + cuda all pass; 1.9 cpu with 2 nan cases
    (reduction=sum, log_target=true), one error and a warning carrying a hostile string;
    1.10 absent; 2.0 an empty file; 2.1 every case crashed."""
    case_file = tmp_path / "cases.yaml"
    case_file.write_text(CASE_FILE)
    cases = load_cases([case_file])
    assert len(cases) == 16
    root = tmp_path / "results"
    n = len(cases)
    _write(root / "1.7" / "cpu.jsonl", "1.7.1", "cpu", [_result(c) for c in cases], n)
    _write(root / "1.8" / "cpu.jsonl", "1.8.1", "cpu", [_result(c) for c in cases], n)
    _write(root / "1.8" / "cuda.jsonl", "1.8.1+cu102", "cuda", [_result(c, "cuda") for c in cases], n)
    recs = []
    error_case = next(c for c in cases if c.reduction == "none" and not c.log_target and c.api == "module")
    for c in cases:
        if _changed(c):
            recs.append(_result(c, output=np.nan))
        elif c is error_case:
            recs.append(_result(c, error={"type": "RuntimeError", "message": HOSTILE, "phase": "forward"}))
        else:
            recs.append(_result(c, warnings=[("UserWarning", HOSTILE)] if c.reduction == "mean" else ()))
    _write(root / "1.9" / "cpu.jsonl", "1.9.1", "cpu", recs, n)
    (root / "2.0").mkdir()
    (root / "2.0" / "cpu.jsonl").write_text("")
    _write(root / "2.1" / "cpu.jsonl", "2.1.2", "cpu", [_result(c, status="crash") for c in cases], n)
    return {"root": root, "cases": cases, "case_file": case_file, "error_case": error_case}


def _load(s):
    return report.load([s["root"]], [s["case_file"]], expected_releases=EXPECTED)


def _complete(s):
    """The fixture without its empty 2.0 file: a report is written only from results that
    can all be read (an empty file is refused: test_bad_results_never_replace_a_report)."""
    (s["root"] / "2.0" / "cpu.jsonl").unlink(missing_ok=True)
    return s


def _render(s, out):
    _complete(s)
    return report.write_report([s["root"]], out, [s["case_file"]], expected_releases=EXPECTED)


def _answers(files) -> dict:
    return {(r["release"], r["device"]): r for r in json.loads(files["summary.json"])["glance"]["releases"]}


def test_statuses_and_answers_per_release(synthetic):
    d = _load(synthetic)
    assert d.releases == EXPECTED
    assert d.devices == ["cpu", "cuda"]
    cells = d.cells
    assert cells[("1.7", "cpu")]["counts"] == {"pass": 16}
    assert cells[("1.7", "cpu")]["status"] == "ok"
    assert cells[("1.9", "cpu")]["counts"] == {"pass": 13, "nan": 2, "error": 1}
    assert cells[("1.9", "cpu")]["status"] == "failures"
    changed_19 = {ch.case_id for ch in d.behaviour.case_changes if ch.since == "1.9" and ch.device == "cpu"}
    assert cells[("1.9", "cpu")]["changed"] == len(changed_19) >= 3  # the nans, the error, the warnings
    assert cells[("1.8", "cuda")]["status"] == "ok"
    assert cells[("1.10", "cpu")]["status"] == "not run"  # missing release
    assert cells[("2.0", "cpu")]["status"] == "no results"  # empty file
    assert cells[("2.1", "cpu")]["status"] == "crashed"  # every case crashed
    assert cells[("2.1", "cpu")]["counts"] == {"crash": 16}
    for rel in ("1.7", "1.9", "1.10", "2.0", "2.1"):  # never invented: CUDA only ran on 1.8
        assert cells[(rel, "cuda")]["status"] == "not run" and cells[(rel, "cuda")]["counts"] == {}

    files = report.render(d)
    answers = _answers(files)
    assert answers[("1.7", "cpu")]["status"] == "ok"
    assert answers[("1.9", "cpu")]["status"] == "failures"
    assert answers[("1.9", "cpu")]["correct_usage"] == {
        "cases": 12,
        "problems": 3,
        "stale": 0,
        "not_implemented": 0,
    }  # mean: misuse
    assert answers[("2.0", "cpu")]["status"] == "no results"
    assert answers[("2.1", "cpu")]["status"] == "crashed"
    assert ("1.10", "cpu") not in answers and ("1.9", "cuda") not in answers  # no file: no answer invented
    md = files["README.md"]
    row = next(line for line in md.splitlines() if re.match(r"\| 1\.9 +\| failures ", line))
    assert "✗ 3 of 12 fail" in row and "vs 1.8:" in row
    # the grid: correct usage of float64 forward per release; 1.10 has no column (no results anywhere)
    g = glance.grid(d)
    assert g["releases"] == ["1.7", "1.8", "1.9", "2.1"]
    row = next(r for r in g["groups"][0]["rows"] if r["id"] == "u-cpu-float64-forward")
    assert [c["state"] for c in row["cells"]] == ["ok", "ok", "fail", "fail"]
    cuda = next(gr for gr in g["groups"] if gr["title"] == "Correct usage on cuda")
    assert [c["state"] for c in cuda["rows"][-3]["cells"]] == ["nr", "ok", "nr", "nr"]
    page = files["index.html"]
    for c in row["cells"]:
        assert f'id="{c["id"]}"' in page


def test_change_found_with_first_release_and_pattern(synthetic):
    d = _load(synthetic)
    # the crash of 2.1 covers every case, since 1.9: the empty 2.0 and missing 1.10 are skipped; the
    # changes group by what each case was before (a value or the hostile error)
    crashes = sorted((bc.previous, bc.from_, bc.to, bc.count) for bc in d.behaviour.changes if bc.since == "2.1")
    assert crashes == [("1.9", "RuntimeError", "crash", 1), ("1.9", "value", "crash", 15)]
    assert not any(bc.since in ("1.8", "1.10", "2.0") for bc in d.behaviour.changes)
    # CUDA ran once: nothing to compare, no change invented
    assert not any(bc.device == "cuda" for bc in d.behaviour.changes)
    # the 1.9 nan is one change of the forward, over exactly the two changed cases
    b = d.behaviour
    at_19 = [bc for bc in b.changes if bc.since == "1.9" and bc.phase == "forward"]
    (nan_bc,) = [bc for bc in at_19 if bc.to == "nan"]
    assert (nan_bc.previous, nan_bc.to, nan_bc.count) == ("1.8", "nan", 2)
    assert {ch.case_id for ch in nan_bc.cases} == {c.id for c in synthetic["cases"] if _changed(c)}
    assert nan_bc.scope["reduction"] == ("sum",) and nan_bc.scope["log_target"] == (True,)
    files = report.render(d)
    md, page = files["README.md"], files["index.html"]
    assert re.search(rf"^#### \d+\. {re.escape(text.md_escape(nan_bc.title))}$", md, re.M)
    assert f'<article class="fi change dir-{nan_bc.direction}" id="{nan_bc.key}"' in page
    # its grid row: before the change (1.7, 1.8) and after it (1.9: the boundary; 2.1)
    row = next(r for g in glance.grid(d)["groups"] for r in g["rows"] if r["id"] == "row-" + nan_bc.key)
    states = [(c["release"], c["state"], c["since"]) for c in row["cells"]]
    assert states == [("1.7", "ok", False), ("1.8", "ok", False), ("1.9", "fail", True), ("2.1", "fail", False)]


def test_hostile_strings_are_escaped_everywhere(synthetic, tmp_path):
    out = tmp_path / "out"
    _render(synthetic, out)
    pages = {p.relative_to(out).as_posix(): p.read_text() for p in out.rglob("*.html")}
    md = (out / "README.md").read_text()
    for name, page in pages.items():
        assert "<script>alert" not in page and HOSTILE not in page, name
        assert page.count("<script") == 1, name  # exactly one script element: its own
    page = pages["index.html"]
    assert "<script>alert" not in md and HOSTILE not in md
    family = pages["cases/softmax-4x5.html"]
    assert family.count(HOSTILE_HTML) >= 2  # the warning and the error message
    assert f"RuntimeError: {HOSTILE_HTML}" in family
    assert HOSTILE_HTML in page  # the warnings table
    assert HOSTILE_MD in md  # the warnings table
    # every Markdown table row still has the header's number of cells
    for block in re.findall(r"((?:^\|.*\|\n)+)", md, re.M):
        rows = block.splitlines()
        widths = {len(re.findall(r"(?<!\\)\|", r)) for r in rows}
        assert len(widths) == 1, rows[:3]


def test_markdown_escaping_and_tables():
    assert text.md_escape("a|b\nc <d> `e` [f](g) *h*") == r"a\|b<br>c &lt;d&gt; \`e\` \[f\](g) \*h\*"
    table = assemble.md_table(Table(["x", "1.10"], [["a|b", "1.10"], [Cell("<i>", "pass", href="#k"), "y"]]))
    assert "1.10" in table and r"a\|b" in table  # release labels are not reparsed as numbers
    assert "[🟩✓ &lt;i&gt;](#k)" in table
    assert text.md_code("a`b|c") == "``a`b¦c``"
    assert str(assemble.md_fence("x = '```'")).startswith("````python\n")


def test_readme_does_not_depend_on_wcwidth(synthetic, tmp_path):
    """tabulate pads emoji by display width only when wcwidth imports: the report must not
    depend on it (rendered once with wcwidth importable, once with it blocked)."""
    _complete(synthetic)
    code = (
        "import sys\n"
        "if sys.argv[1] == 'blocked':\n"
        "    sys.modules['wcwidth'] = None\n"
        "from harness import report\n"
        "report.write_report([sys.argv[2]], sys.argv[3], [sys.argv[4]], expected_releases=sys.argv[5].split(','))\n"
    )
    outs = []
    for mode in ("blocked", "free"):
        out = tmp_path / mode
        args = [sys.executable, "-c", code, mode, str(synthetic["root"]), str(out), str(synthetic["case_file"])]
        subprocess.run([*args, ",".join(EXPECTED)], check=True, cwd=Path(__file__).resolve().parent.parent)
        outs.append(out)
    for name in ("README.md", "index.html", "summary.json"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name


def test_rendering_is_deterministic(synthetic, tmp_path):
    _complete(synthetic)
    a, b = tmp_path / "a", tmp_path / "b"
    _render(synthetic, a)
    # the same records in another order give the same report
    shuffled = tmp_path / "shuffled"
    import shutil

    shutil.copytree(synthetic["root"], shuffled)
    f = shuffled / "1.9" / "cpu.jsonl"
    lines = f.read_text().splitlines(keepends=True)
    f.write_text(lines[0] + "".join(reversed(lines[1:])))
    report.write_report([shuffled], b, [synthetic["case_file"]], expected_releases=EXPECTED)
    names = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    assert "cases/softmax-4x5.html" in names
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
        assert str(tmp_path) not in (a / name).read_text()  # no absolute paths leak into the outputs


def test_empty_folder_and_unreadable_file(tmp_path, synthetic):
    empty = tmp_path / "nothing"
    empty.mkdir()
    d = report.load([empty], [synthetic["case_file"]], expected_releases=["1.7", "1.8"])
    files = report.render(d)
    assert {c["status"] for c in d.cells.values()} == {"not run"}
    page = files["index.html"]
    assert "<p>No behaviour changes between consecutive tested releases.</p>" in page
    assert json.loads(files["summary.json"])["glance"]["releases"] == []
    bad = synthetic["root"] / "1.8" / "cpu.jsonl"
    bad.write_text('{"record": "run", "schema": 1}\nnot json\n{"record": "result"}\n')
    d = _load(synthetic)
    assert d.cells[("1.8", "cpu")]["status"] == "unreadable"
    assert any("1.8/cpu.jsonl" in n and "unreadable" in n for n in d.notes)
    files = report.render(d)
    assert "unreadable" in files["README.md"]
    assert _answers(files)[("1.8", "cpu")]["status"] == "unreadable"
    with pytest.raises(FileNotFoundError):
        report.load([tmp_path / "missing"], [synthetic["case_file"]])


def test_partial_run_is_flagged(synthetic):
    root, cases = synthetic["root"], synthetic["cases"]
    _write(root / "1.8" / "cpu.jsonl", "1.8.1", "cpu", [_result(c) for c in cases[:5]], len(cases))
    d = _load(synthetic)
    assert d.cells[("1.8", "cpu")]["status"] == "partial"
    files = report.render(d)
    assert _answers(files)[("1.8", "cpu")]["status"] == "partial (5/16 recorded)"
    assert "partial (5/16 recorded)" in files["README.md"]


def test_api_forms_merge_where_they_agree(synthetic):
    d = _load(synthetic)
    pages = casepages.family_pages(d)
    items = pages["softmax-4x5"]["items"]
    # 8 (reduction, log_target) pairs x 2 forms; the error case's forms differ in 1.9: split
    err = synthetic["error_case"]
    split = [i for i in items if i["split"]]
    assert {tuple(i["forms"]) for i in split} == {("module",), ("functional",)}
    assert all(casepages.group_of(i["id"]) == casepages.group_of(err.id) for i in split)
    merged = [i for i in items if not i["split"]]
    assert len(merged) == 7 and all(i["forms"] == ["module", "functional"] for i in merged)
    assert sum(len(i["forms"]) for i in items) == 16
    files = report.render(d)
    page = files["cases/softmax-4x5.html"]
    for c in synthetic["cases"]:  # every case keeps its own anchor
        assert f'id="{casepages.case_anchor(c.id)}"' in page


def test_per_case_detail_and_reproduction(synthetic):
    d = _load(synthetic)
    page = report.render(d)["cases/softmax-4x5.html"]
    case = next(c for c in synthetic["cases"] if _changed(c) and c.api == "module")
    anchor = casepages.case_anchor(case.id)
    start = page.index(f'id="{anchor}"')
    block = page[start : page.index("</details>", start)]
    assert "reference (documented formula)" in block and "KL the user means" in block
    assert "1.7–1.8" in block and "1.9" in block and "2.1" in block  # per-release runs
    assert "torch.nn.KLDivLoss(reduction=&#39;sum&#39;, log_target=True)(first, second)" in block


def _snippet_tensors(code: str) -> dict:
    """The literal tensors of a reproduction snippet, as float64 arrays."""
    out = {}
    pattern = r"^(first|second) = torch\.tensor\((\[.*\]|[^,]+), dtype=torch\.\w+, device="
    for name, lit in re.findall(pattern, code, re.M):
        out[name] = np.array(eval(lit, {"nan": float("nan"), "inf": float("inf")}), dtype=np.float64)
    return out


def test_reproduction_snippets_rebuild_the_exact_inputs():
    """Every case of the real case files: the snippet compiles, calls the case's API form,
    and its literals give back the exact inputs in the case dtype (shortest decimals)."""
    seen = set()
    for case in load_cases():
        code = text.reproduction(case, ["cpu"])
        compile(code, case.id, "exec")
        if case.api == "legacy_module" and case.reduction == "sum":
            assert "torch.nn.KLDivLoss(size_average=False, reduce=True" in code
        if case.api == "functional" and case.log_target:
            assert code.count("log_target=True") == 1
        key = (case.family.label, case.dtype, case.log_target, case.order)
        if key in seen:
            continue
        seen.add(key)
        ci = call_inputs(case)
        tensors = _snippet_tensors(code)
        for name, want in (("first", ci.first), ("second", ci.second)):
            if want.size > text.INLINE_LIMIT:
                assert "call_inputs" in code
                continue
            if want.size == 0:
                assert f"{name} = torch.empty({tuple(want.shape)!r}" in code
                continue
            got = tensors[name]
            assert got.shape == want.shape, case.id
            for path in (got, got.astype(np.float32).astype(np.float64)):  # direct and via float32
                back = round_to_dtype(path, case.dtype) if case.dtype != "float64" else got
                np.testing.assert_array_equal(back, want, err_msg=case.id)
                num = ~np.isnan(want)  # -0.0 stays -0.0 (the sign of a nan is not data)
                assert (np.signbit(back[num]) == np.signbit(want[num])).all(), case.id


def test_sections_are_pluggable(synthetic):
    d = _load(synthetic)

    def sec_extra(data):
        return Section("extra", "Extra <section>", {"n": 1}, {"intro": "extra *md*", "tables": []})

    files = report.render(d, [glance.sec_glance, sec_extra])
    assert "## Extra &lt;section&gt;" in files["README.md"] and r"extra \*md\*" in files["README.md"]
    assert '<section id="extra">\n<h2>Extra &lt;section&gt;</h2>' in files["index.html"]
    assert "<p>extra *md*</p>" in files["index.html"]
    assert json.loads(files["summary.json"])["extra"] == {"n": 1}


def test_cli_report_subcommand(synthetic, tmp_path, capsys):
    _complete(synthetic)
    out = tmp_path / "cli-out"
    rc = main(
        ["report", "--results", str(synthetic["root"]), "--out", str(out), "--cases", str(synthetic["case_file"]),
         "--pages-url", "https://example.org/kl/", "--commit", "abc1234"]
    )  # fmt: skip
    assert rc == 0
    assert {p.name for p in out.iterdir()} == {"README.md", "index.html", "summary.json", "cases"}
    assert capsys.readouterr().out.startswith("report: ")
    md = (out / "README.md").read_text()
    assert "[https://example.org/kl/](https://example.org/kl/)" in md and "results commit abc1234" in md
    assert json.loads((out / "summary.json").read_text())["origin"]["commit"] == "abc1234"
    assert main(["report", "--results", str(tmp_path / "nope"), "--out", str(out)]) == 2


def test_rendered_report_is_kept_and_read_back_only_when_nothing_changed(synthetic, tmp_path, monkeypatch):
    """The render cache: a second report of the same results reads the files back (byte
    for byte); other results, another template or other explanations render again."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    calls = []
    real = assemble.render
    monkeypatch.setattr(assemble, "render", lambda *a, **k: calls.append(1) or real(*a, **k))

    def written(out):
        _render(synthetic, out)
        return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    first = written(tmp_path / "a")
    assert written(tmp_path / "b") == first and len(calls) == 1  # read back
    templates = tmp_path / "templates"
    import shutil

    shutil.copytree(assemble.TEMPLATES, templates)
    (templates / "html" / "sec_cases.html.j2").write_text("<p>another template</p>\n")
    monkeypatch.setattr(assemble, "TEMPLATES", templates)
    other = written(tmp_path / "c")
    assert len(calls) == 2 and "another template" in other["index.html"].decode()
    monkeypatch.setattr(assemble, "TEMPLATES", assemble.HERE / "templates")
    f = synthetic["root"] / "1.7" / "cpu.jsonl"
    f.write_text(f.read_text().replace('"started": "2026-01-01', '"started": "2026-01-02'))
    assert written(tmp_path / "d") != first and len(calls) == 3  # other results


PUBLISHED = Path(__file__).resolve().parent.parent / "reports"


def _md_tables(md: str) -> list:
    return [block.splitlines() for block in re.findall(r"((?:^\|.*\|\n)+)", md, re.M)]


def test_published_readme_tables_fit_github():
    """reports/README.md reads on GitHub: no table wider than 10 columns (releases go in rows)."""
    md = (PUBLISHED / "README.md").read_text()
    tables = _md_tables(md)
    assert len(tables) >= 5
    for rows in tables:
        cols = len(re.findall(r"(?<!\\)\|", rows[0])) - 1
        assert cols <= 10, rows[0][:200]
    assert "[index.html](index.html)" in md


def test_published_report_is_what_the_committed_results_render(tmp_path):
    """reports/ is generated, never edited: rendering the committed results gives its files
    byte for byte (after new results or harness changes: python -m harness report --readme README.md)."""
    out = tmp_path / "out"
    report.write_report([PUBLISHED / "results"], out)
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    committed = sorted(
        p.relative_to(PUBLISHED).as_posix()
        for p in [*PUBLISHED.glob("*.*"), *PUBLISHED.glob("cases/*")]
        if p.name not in ("baseline.json", "summary.schema.json")
    )
    assert names == committed
    for name in names:
        assert (out / name).read_bytes() == (PUBLISHED / name).read_bytes(), (
            f"reports/{name} is stale: python -m harness report --readme README.md"
        )


def test_change_rows_of_the_grid_show_each_releases_own_results():
    """A change's grid cell at a release is what that release's results of its cases say
    (not the verdicts at the change's step): where they all raised 'not implemented' the
    cell says so, even before the change, and where they all pass it is a pass."""
    from harness.report import glance

    d = report.load([PUBLISHED / "results"])
    grid = glance.grid(d)
    rows = {r["id"]: r for g in grid["groups"] for r in g["rows"]}
    frame = d.frame
    checked = {"limit": 0, "ok": 0, "limit before the change": 0}
    assert not any("row-" + bc.key in rows for bc in d.behaviour.changes if bc.wording)  # listed, not gridded
    for bc in d.behaviour.changes:
        if bc.wording:
            continue
        members = {ch.case_id for ch in glance._judged_members(d, bc)}
        column = bc.phase if bc.phase in phases.NAMES else "verdict"
        mine = frame[frame["id"].isin(members) & (frame["device"] == bc.device)]
        for cell in rows["row-" + bc.key]["cells"]:
            at = mine[mine["release"] == cell["release"]]
            verdicts = set(at[column].where(at[column].notna(), at["verdict"]))  # no phase verdict: the case's
            if verdicts and verdicts <= {"unsupported"}:
                assert cell["state"] == "limit", (bc.key, cell["release"])
                checked["limit"] += 1
                checked["limit before the change"] += release_key(cell["release"]) < release_key(bc.since)
            elif verdicts and verdicts <= {"pass", "expected-error"}:
                assert cell["state"] == "ok", (bc.key, cell["release"])
                checked["ok"] += 1
    assert all(checked.values()), checked


def test_boundary_and_invalid_behaviours_are_named_with_what_to_do():
    """Each boundary or invalid input kind whose results differ from the limit or the formula
    is listed once per phase and outcome, with releases, a reproduction and advice; the list
    is what the frame says (recounted here), and the misuse table names one mistake and its
    fix per row."""
    import json

    from harness.report import edges, evidence

    d = report.load([PUBLISHED / "results"])
    listed = edges.behaviours(d)
    assert listed and all(b["advice"] and 1 <= len(b["reproduction"]) <= 10 for b in listed)
    keys = [(b["family"], b["phase"], b["what"]) for b in listed]
    assert len(keys) == len(set(keys))
    f = d.frame
    expected = set()
    for p in phases.NAMES:
        bad = f[f["scope"].isin(["boundary", "invalid"]) & f[p].isin(edges.PROBLEM)]
        expected |= {(fam, p, v) for fam, v in zip(bad["family"], bad[p])}
    assert expected == {k for k in keys if k[2] != "pitfall"}
    zeros = next(b for b in listed if b["family"] == "zeros-4x5" and b["phase"] == "forward")
    assert zeros["what"] == "nan" and dict(zeros["covers"])["log_target"] == ["true"]
    misuse = evidence.sec_misuse(d).data
    assert misuse and all(r["fix"] and r["code"] for r in misuse)
    summary = json.loads((PUBLISHED / "summary.json").read_text())
    assert [(b["family"], b["phase"], b["what"]) for b in summary["edges"]] == keys
