"""The compatibility report (harness/report.py) on small synthetic result sets.

Results files are written directly in the results format (a run header, then result
records) for cases of a small case file, with values taken from the reference, so the
verdicts are known: pass, nan, error, crash."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from harness import report
from harness.cases import load_cases
from harness.cli import main
from harness.evaluate import case_references
from harness.inputs import call_inputs, input_digest, plan_entry, round_to_dtype

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


def _render(s, out):
    return report.write_report([s["root"]], out, [s["case_file"]], expected_releases=EXPECTED)


def test_headline_counts_and_statuses(synthetic):
    d = _load(synthetic)
    assert d.releases == EXPECTED
    assert d.devices == ["cpu", "cuda"]
    cells = d.cells
    assert cells[("1.7", "cpu")]["counts"] == {"pass": 16}
    assert cells[("1.7", "cpu")]["status"] == "ok"
    assert cells[("1.9", "cpu")]["counts"] == {"pass": 13, "nan": 2, "error": 1}
    assert cells[("1.9", "cpu")]["status"] == "failures"
    assert cells[("1.9", "cpu")]["changed"] == 3
    assert cells[("1.8", "cuda")]["status"] == "ok"
    assert cells[("1.10", "cpu")]["status"] == "not run"  # missing release
    assert cells[("2.0", "cpu")]["status"] == "no results"  # empty file
    assert cells[("2.1", "cpu")]["status"] == "crashed"  # every case crashed
    assert cells[("2.1", "cpu")]["counts"] == {"crash": 16}
    for rel in ("1.7", "1.9", "1.10", "2.0", "2.1"):  # never invented: CUDA only ran on 1.8
        assert cells[(rel, "cuda")]["status"] == "not run" and cells[(rel, "cuda")]["counts"] == {}

    files = report.render(d)
    md = files["README.md"]
    assert re.search(r"^\| 1\.9 +\| failures \(3 problems, 3 changed\) +\| not run +\|$", md, re.M)
    assert re.search(r"^\| 1\.10 +\| not run +\| not run +\|$", md, re.M)
    assert re.search(r"^\| 2\.0 +\| no results +\| not run +\|$", md, re.M)
    assert re.search(r"^\| 2\.1 +\| crashed \(16 problems, 16 changed\) +\| not run +\|$", md, re.M)
    counts_table = md.split("Counts per verdict", 1)[1]  # the headline's counts, after the at-a-glance table
    row = next(line for line in counts_table.splitlines() if re.match(r"\| 1\.9 +\| cpu ", line))
    cells_md = [c.strip() for c in row.strip("|").split("|")]
    header = next(line for line in counts_table.splitlines() if line.startswith("| release ") and "| results " in line)
    names = [c.strip() for c in header.strip("|").split("|")]
    got = dict(zip(names, cells_md))
    assert (got["status"], got["results"], got["error"], got["nan"], got["pass"]) == ("failures", "16", "1", "2", "13")
    summary = json.loads(files["summary.json"])
    by = {(c["release"], c["device"]): c for c in summary["headline"]}
    assert by[("1.9", "cpu")]["counts"] == {"error": 1, "nan": 2, "pass": 13}
    assert by[("1.10", "cuda")]["status"] == "not run"
    page = files["index.html"]
    assert 'class="headline"' in page and "not run" in page


def test_change_found_with_first_release_and_pattern(synthetic):
    d = _load(synthetic)
    ev = d.events
    nan_ev = ev[ev["new_verdict"] == "nan"]
    assert sorted(nan_ev["id"]) == sorted(c.id for c in synthetic["cases"] if _changed(c))
    assert set(nan_ev["from"]) == {"1.8"} and set(nan_ev["to"]) == {"1.9"}
    # the crash of 2.1 covers every case, since 1.9: the empty 2.0 and missing 1.10 are skipped; the
    # changes group by what each case was before (a value or the hostile error)
    crashes = sorted((bc.previous, bc.from_, bc.to, bc.count) for bc in d.behaviour.changes if bc.since == "2.1")
    assert crashes == [("1.9", "RuntimeError", "crash", 1), ("1.9", "value", "crash", 15)]
    assert not any(bc.since in ("1.8", "1.10", "2.0") for bc in d.behaviour.changes)
    # CUDA ran once: nothing to compare, no change invented
    assert not any(bc.device == "cuda" for bc in d.behaviour.changes)
    # the behaviour changes: the 1.9 nan is one change of the forward, over exactly the two changed cases
    b = d.behaviour
    at_19 = [bc for bc in b.changes if bc.since == "1.9" and bc.phase == "forward"]
    (nan_bc,) = [bc for bc in at_19 if bc.to == "nan"]
    assert (nan_bc.previous, nan_bc.to, nan_bc.count) == ("1.8", "nan", 2)
    assert {ch.case_id for ch in nan_bc.cases} == {c.id for c in synthetic["cases"] if _changed(c)}
    assert nan_bc.scope["reduction"] == ("sum",) and nan_bc.scope["log_target"] == (True,)
    md = report.render(d)["README.md"]
    assert re.search(rf"^### \d+\. {re.escape(report.md_escape(nan_bc.title))}$", md, re.M)


def test_hostile_strings_are_escaped_everywhere(synthetic, tmp_path):
    out = tmp_path / "out"
    _render(synthetic, out)
    page = (out / "index.html").read_text()
    md = (out / "README.md").read_text()
    assert "<script>alert" not in page and "<script>alert" not in md
    assert HOSTILE not in page and HOSTILE not in md
    assert page.count(HOSTILE_HTML) >= 2  # the warning and the error message
    assert f"RuntimeError: {HOSTILE_HTML}" in page
    assert HOSTILE_MD in md  # the warnings table
    assert f"RuntimeError: {HOSTILE_MD}" in md  # the change finding that names the error
    # the page has exactly one script element: its own
    assert page.count("<script") == 1
    # every Markdown table row still has the header's number of cells
    for block in re.findall(r"((?:^\|.*\|\n)+)", md, re.M):
        rows = block.splitlines()
        widths = {len(re.findall(r"(?<!\\)\|", r)) for r in rows}
        assert len(widths) == 1, rows[:3]


def test_markdown_and_html_escaping_helpers():
    assert report.md_escape("a|b\nc <d> `e` [f](g) *h*") == r"a\|b<br>c &lt;d&gt; \`e\` \[f\](g) \*h\*"
    assert report.esc('"<&>') == "&quot;&lt;&amp;&gt;"
    table = report.md_table(["x", "1.10"], [["a|b", "1.10"]])
    assert "1.10" in table and r"a\|b" in table  # release labels are not reparsed as numbers
    assert report.html_table(["h"], [["<b>"], [report.Raw("<i>ok</i>")]]).count("&lt;b&gt;") == 1


def test_rendering_is_deterministic(synthetic, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _render(synthetic, a)
    _render(synthetic, b)
    for name in ("README.md", "index.html", "summary.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    # no absolute paths leak into the outputs
    for name in ("README.md", "index.html", "summary.json"):
        assert str(tmp_path) not in (a / name).read_text()


def test_empty_folder_and_unreadable_file(tmp_path, synthetic):
    empty = tmp_path / "nothing"
    empty.mkdir()
    d = report.load([empty], [synthetic["case_file"]], expected_releases=["1.7", "1.8"])
    files = report.render(d)
    assert {c["status"] for c in d.cells.values()} == {"not run"}
    page = files["index.html"]
    assert '<section id="matrix"><h2>Matrix: case groups × releases</h2><p>No results.</p></section>' in page
    assert "<p>No behaviour changes between consecutive tested releases.</p>" in page
    bad = synthetic["root"] / "1.8" / "cpu.jsonl"
    bad.write_text('{"record": "run", "schema": 1}\nnot json\n{"record": "result"}\n')
    d = _load(synthetic)
    assert d.cells[("1.8", "cpu")]["status"] == "unreadable"
    assert any("1.8/cpu.jsonl" in n and "unreadable" in n for n in d.notes)
    assert "unreadable" in report.render(d)["README.md"]
    with pytest.raises(FileNotFoundError):
        report.load([tmp_path / "missing"], [synthetic["case_file"]])


def test_partial_run_is_flagged(synthetic):
    root, cases = synthetic["root"], synthetic["cases"]
    _write(root / "1.8" / "cpu.jsonl", "1.8.1", "cpu", [_result(c) for c in cases[:5]], len(cases))
    d = _load(synthetic)
    assert d.cells[("1.8", "cpu")]["status"] == "partial"
    assert "partial (5/16 recorded" in report.render(d)["README.md"]


def test_per_case_detail_and_reproduction(synthetic, tmp_path):
    d = _load(synthetic)
    # detail for cases that changed or have a problem; here every case crashed in 2.1
    assert set(d.detailed_ids) == {c.id for c in synthetic["cases"]}
    page = report.render(d)["index.html"]
    case = next(c for c in synthetic["cases"] if _changed(c) and c.api == "functional")
    anchor = report.case_anchor(case.id)
    start = page.index(f'id="{anchor}"')
    block = page[start : page.index("</details>", start)]
    assert "reference (documented)" in block and "KL the user means" in block
    assert "1.7–1.8" in block and "1.9" in block and "2.1" in block  # per-release runs
    assert "torch.nn.functional.kl_div(first, second, reduction=&#x27;sum&#x27;, log_target=True)" in block


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
        code = report.reproduction(case, ["cpu"])
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
            if want.size > report.INLINE_LIMIT:
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
        return report.Section("extra", "Extra <section>", "extra *md*", "<p>extra html</p>", {"n": 1})

    files = report.render(d, [report.sec_headline, sec_extra])
    assert "## Extra &lt;section&gt;" in files["README.md"] and "extra *md*" in files["README.md"]
    assert '<section id="extra"><h2>Extra &lt;section&gt;</h2><p>extra html</p>' in files["index.html"]
    assert json.loads(files["summary.json"])["extra"] == {"n": 1}


def test_cli_report_subcommand(synthetic, tmp_path, capsys):
    out = tmp_path / "cli-out"
    rc = main(
        ["report", "--results", str(synthetic["root"]), "--out", str(out), "--cases", str(synthetic["case_file"])]
    )
    assert rc == 0
    assert {p.name for p in out.iterdir()} == {"README.md", "index.html", "summary.json"}
    assert capsys.readouterr().out.startswith("report: ")
    assert main(["report", "--results", str(tmp_path / "nope"), "--out", str(out)]) == 2


# ---------------------------------------------------------------- headless Chromium

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _png_pixels(data: bytes) -> np.ndarray:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes) to HxWxC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, info = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            info = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = info
    assert depth == 8 and colour in (2, 6) and interlace == 0
    bpp = 3 if colour == 2 else 4
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, 1 + width * bpp)
    out = np.zeros((height, width * bpp), dtype=np.uint8)
    prev = np.zeros(width * bpp, dtype=np.int64)
    for y in range(height):
        ftype, line = raw[y, 0], raw[y, 1:].astype(np.int64)
        if ftype == 0:
            cur = line
        elif ftype == 2:
            cur = (line + prev) % 256
        elif ftype == 1:
            cur = line.reshape(-1, bpp).cumsum(axis=0).reshape(-1) % 256
        else:
            cur = line.copy()
            for x in range(width * bpp):
                a = int(cur[x - bpp]) if x >= bpp else 0
                b = int(prev[x])
                if ftype == 3:
                    cur[x] = (cur[x] + (a + b) // 2) % 256
                else:
                    c = int(prev[x - bpp]) if x >= bpp else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                    cur[x] = (cur[x] + pred) % 256
        out[y] = cur
        prev = cur
    return out.reshape(height, width, bpp)


class _Dom(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []  # (tag, attrs dict)
        self.text = {}
        self._capture = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if attrs.get("id") == "fstatus":
            self._capture = "fstatus"

    def handle_data(self, data):
        if self._capture:
            self.text[self._capture] = self.text.get(self._capture, "") + data

    def handle_endtag(self, tag):
        self._capture = None


@pytest.mark.browser
@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless Chromium not installed (/usr/bin/chromium; Debian: apt-get install chromium)",
)
def test_html_renders_in_headless_chromium(synthetic, tmp_path):
    out = tmp_path / "out"
    _render(synthetic, out)
    page = out / "index.html"
    static = page.read_text()
    assert '<form id="filters" hidden' in static and "<noscript>" in static  # usable with scripts off
    profile = tmp_path / "profile"

    def chromium(*args):
        proc = subprocess.run(
            [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=180
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    # the DOM after the script ran, with a filter passed in the address: verdict nan
    dom = _Dom()
    dom.feed(chromium("--dump-dom", page.as_uri() + "#f:verdict=nan"))
    tags = dom.tags
    assert any(t == "table" and a.get("class") == "headline" for t, a in tags)
    assert any(t == "table" and a.get("class") == "matrix" for t, a in tags)
    form = next(a for t, a in tags if a.get("id") == "filters")
    assert "hidden" not in form  # the script revealed the filters
    names = {a.get("name") for t, a in tags if t == "select"}
    assert {"verdict", "release", "device", "family", "reduction", "log_target", "order", "dtype", "api"} <= names
    rows = [a for t, a in tags if "f" in (a.get("class") or "").split()]
    shown = [a for a in rows if "hidden" not in a]
    assert shown and len(shown) < len(rows)
    assert all(re.search(r":nan\b", a["data-t"]) for a in shown)
    assert dom.text["fstatus"] == f"{len(shown)} of {len(rows)} case rows match"

    shot = tmp_path / "shot.png"
    chromium(f"--screenshot={shot}", "--window-size=1400,1000", page.as_uri())
    pixels = _png_pixels(shot.read_bytes())
    assert pixels.shape[:2] == (1000, 1400)
    rgb = pixels[..., :3].reshape(-1, 3)
    assert (rgb != 255).any(axis=1).mean() > 0.02  # not blank
    colours = {tuple(c) for c in rgb[::7]}
    assert len(colours) > 20
    assert (0x66, 0xBB, 0x6A) in colours  # 'ok' status (1.7): the stylesheet is applied
    assert (0xFF, 0xB7, 0x4D) in colours  # 'failures' status (1.9)
    shutil.copy(shot, out / "screenshot.png")
