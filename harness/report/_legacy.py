"""Stage 6: the compatibility report.

``python -m harness report --results DIR --out DIR`` reads every results file, evaluates
it (:mod:`harness.evaluate`) and writes three files:

* ``README.md``    GitHub-flavoured Markdown (tabulate): the summary sections;
* ``index.html``   one self-contained page (inline CSS and one small inline script for the
  filters; everything stays readable with scripts off), with per-case detail;
* ``summary.json`` the same findings for machines.

The report is a list of sections.  A section is a function ``(ReportData) -> Section``
(or ``None`` to leave it out) listed in :data:`SECTIONS`; the page, the Markdown and the
JSON are those sections assembled in order, so adding a section is adding a function.

Deterministic: everything is sorted and formatted the same way every time, the only
times shown are those recorded in the results, and paths are shown relative to the
results folder, so the same results give byte-identical files.  Nothing is invented:
a release or device without results says so.
"""

from __future__ import annotations

import html
import itertools
import json
import math
import re
import struct
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from itertools import compress
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pandas as pd

from .. import axes, claims, verdicts
from ..evaluate import COLUMNS as EVAL_COLUMNS
from ..evaluate import tolerance
from ..memo import Memo
from ..verdicts import NAMES as SEVERITY
from ..verdicts import RANK
from ..versions import release_key, release_of

TITLE = "KLDivLoss / F.kl_div compatibility report"
AXES = ("family", *axes.NAMES)  # grouping axes, in display order
PROBLEMS = verdicts.PROBLEMS  # verdicts that are a defect or a doubt
STANDARD_DEVICES = ("cpu", "cuda")  # always shown, as 'not run' where no results exist
INLINE_LIMIT = 64  # reproduction snippets inline tensors up to this many elements
VALUES_SHOWN = 8  # values shown per output in tables
VALUES_SHOWN_DETAIL = 24  # ... and in per-case detail
NOT_RUN = "not run"

NOT_RUN_STYLE = ("·", "⬜")
STATUS_MEANING = {
    NOT_RUN: "no results file",
    "unreadable": "results file exists but cannot be read",
    "no results": "results file holds no results (the run ended before the first case)",
    "crashed": "every result is a crash or timeout",
    "partial": "fewer results than the run header's case count (interrupted or still running)",
    "crashes": "some cases crashed or timed out",
    "failures": "correct usage fails: some correct-usage cases error, return nan or mismatch",
    "stale": "correct-usage results made from other inputs: run them again",
    "limited": "no failures; some features unsupported",
    "ok": "no failures, nothing unsupported",
}
STATUS_CLASS = {
    NOT_RUN: "nr",
    "unreadable": "bad",
    "no results": "bad",
    "crashed": "bad",
    "partial": "warn",
    "crashes": "bad",
    "failures": "warn",
    "stale": "warn",
    "limited": "meh",
    "ok": "good",
}
MEANING_TEXT = {"logprob": "log-probabilities", "prob": "probabilities"}

# pitfall reason prefix -> the corrected call
PITFALL_FIX = {
    "arguments swapped": "F.kl_div(log_q, p, reduction='batchmean')  # prediction (log-probs) first, target second",
    "input holds probabilities": "F.kl_div(torch.log_softmax(logits, -1), p, reduction='batchmean')",
    "target holds log-probabilities": "F.kl_div(log_q, log_p, reduction='batchmean', log_target=True)",
    "target holds probabilities": "F.kl_div(log_q, p, reduction='batchmean')  # log_target=False (the default)",
    "'mean' divides": "F.kl_div(log_q, p, reduction='batchmean')",
    "'batchmean' on 1-d": "F.kl_div(log_q.unsqueeze(0), p.unsqueeze(0), reduction='batchmean')",
    "'batchmean' divides by size(0)": "F.kl_div(log_q.flatten(0, -2), p.flatten(0, -2), reduction='batchmean')",
}


# ------------------------------------------------------------------ escaping and formatting


class Raw(str):
    """A string that is already HTML (not escaped again by html_table)."""


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


MAX_TEXT = 10_000  # characters of any one text shown; longer ones are cut with a note


def visible(text: str) -> str:
    """Control characters (ANSI escapes, bells, ...) as visible \\xNN text; very long
    text cut to MAX_TEXT characters."""
    if len(text) > MAX_TEXT:
        text = f"{text[:MAX_TEXT]}… ({len(text) - MAX_TEXT} more characters)"
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


_ESCAPED = Memo(1 << 18)  # text -> esc(text): the page repeats few texts many times


def esc(value) -> str:
    """HTML-escape anything (text and attribute values); control characters made visible."""
    if type(value) is str:
        hit = _ESCAPED.get(value)
        if hit is None:
            hit = _ESCAPED[value] = html.escape(visible(value), quote=True)
        return hit
    return html.escape(visible("" if value is None else str(value)), quote=True)


_MD_SPECIAL = re.compile(r"([\\`*\[\]|])")


def md_escape(value) -> str:
    """Escape text for Markdown, table cells included: HTML is neutralised, Markdown
    punctuation that could start code, emphasis, links or a cell break is backslashed,
    newlines become <br>."""
    text = visible("" if value is None else str(value))
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "<br>")


def md_table(headers, rows) -> str:
    """A GitHub Markdown table; every cell is escaped here (numbers are not reparsed)."""
    from tabulate import tabulate

    cells = [[md_escape(c) for c in row] for row in rows]
    return tabulate(cells, headers=[md_escape(h) for h in headers], tablefmt="github", disable_numparse=True)


def html_table(headers, rows, cls: str = "", row_attrs=None) -> str:
    """An HTML table; cells are escaped unless they are :class:`Raw`."""
    out = ['<div class="wrap"><table' + (f' class="{esc(cls)}"' if cls else "") + "><thead><tr>"]
    out += [f"<th>{h if isinstance(h, Raw) else esc(h)}</th>" for h in headers]
    out.append("</tr></thead><tbody>")
    for i, row in enumerate(rows):
        attrs = row_attrs[i] if row_attrs else ""
        out.append(f"<tr{attrs}>" + "".join(f"<td>{c if isinstance(c, Raw) else esc(c)}</td>" for c in row) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _special_text(v: float) -> str | None:
    """Text of nan, +-inf and signed zero (the values with one exact spelling), else None."""
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0:
        return "-0.0" if math.copysign(1.0, v) < 0 else "0.0"
    return None


_FLOAT_TEXT = Memo(1 << 20)  # finite non-zero value -> fmt_float text (zeros differ by sign, equal as keys)


def fmt_float(v) -> str:
    """Stable short float text: 6 significant digits, signed zero and specials kept."""
    v = float(v)
    text = _FLOAT_TEXT.get(v) if v else None
    if text is None:
        special = _special_text(v)
        if special is not None:
            return special
        s = format(v, ".6g")
        text = _FLOAT_TEXT[v] = s if any(c in s for c in ".e") else s + ".0"
    return text


def fmt_values(shape, values, limit=VALUES_SHOWN, undefined=None) -> str:
    """An output or reference array as one line of text."""
    shape = list(shape)
    if not shape:
        return "undefined" if undefined is not None and undefined[0] else fmt_float(values[0])
    if not len(values):
        return f"empty, shape {'x'.join(map(str, shape))}"
    shown = ["undef" if undefined is not None and undefined[i] else fmt_float(v) for i, v in enumerate(values[:limit])]
    more = ", …" if len(values) > limit else ""
    return f"[{', '.join(shown)}{more}] shape {'x'.join(map(str, shape))}"


def fmt_output(out, limit=VALUES_SHOWN) -> str:
    return "" if out is None else fmt_values(out["shape"], out["values"], limit)


def device_key(device: str) -> tuple:
    base = device.split(":")[0]
    order = STANDARD_DEVICES.index(base) if base in STANDARD_DEVICES else len(STANDARD_DEVICES)
    return (order, device)


def ranges(indices, labels) -> str:
    """Sorted indices into ``labels`` -> '1.6–1.9, 1.11' (runs of adjacent indices)."""
    out, start, prev = [], None, None
    for i in sorted(set(indices)):
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            out.append((start, prev))
            start = prev = i
    if start is not None:
        out.append((start, prev))
    return ", ".join(labels[a] if a == b else f"{labels[a]}–{labels[b]}" for a, b in out)


def index_runs(indices) -> list[tuple[int, int]]:
    out = []
    for i in sorted(set(indices)):
        if out and out[-1][1] == i - 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


_BADGES = Memo(1 << 12)  # (verdict, text) -> badge


def badge(verdict: str, text: str | None = None) -> Raw:
    """A verdict as colour and symbol (HTML)."""
    key = (verdict, text)
    if key not in _BADGES:
        v = verdicts.BY_NAME.get(verdict)
        sym = v.symbol if v else NOT_RUN_STYLE[0]
        label = sym if text is None else f"{sym} {text}"
        title = "" if text == verdict else f' title="{esc(verdict)}"'
        _BADGES[key] = Raw(f'<span class="v v-{esc(verdict)}"{title}>{esc(label)}</span>')
    return _BADGES[key]


def md_badge(verdict: str, text: str | None = None) -> str:
    v = verdicts.BY_NAME.get(verdict)
    sym, square = (v.symbol, v.square) if v else NOT_RUN_STYLE
    return f"{square}{sym}" + (f" {text}" if text else "")


def _json_safe(obj):
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, (np.floating,)):
        return _json_safe(float(obj))
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _axis_text(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    return str(value)


# ------------------------------------------------------------------ loading


@dataclass
class Section:
    """One part of the report.  ``markdown`` and ``html`` are the body (no heading);
    an empty ``markdown`` leaves the section out of README.md.  ``data`` (JSON-able)
    goes to summary.json under ``key``, which is also the HTML anchor."""

    key: str
    title: str
    markdown: str
    html: str
    data: object = None


class Row(NamedTuple):
    """The columns of one result the sections read one by one (see :class:`ReportData`)."""

    id: str
    device: str
    release: str
    rk: int
    verdict: str
    state: str
    value: str
    detail: str
    warnings: list
    output: dict | None
    output_id: int
    pitfall: bool
    pitfall_reason: str


@dataclass
class ReportData:
    """Everything the sections draw on.  ``frame`` has one row per (case, release,
    device) with the columns :data:`harness.evaluate.COLUMNS` plus ``value``
    (display text), ``kind`` (finite/nan/inf/empty), ``state`` (verdict and what came
    back; two results with equal state behave alike), ``output_id`` (equal for outputs
    of equal shape and float64 bits; -1 for none) and ``rk`` (index of the release in
    ``releases``)."""

    frame: pd.DataFrame
    cases: dict
    releases: list  # every release shown: the catalogue plus any found, in order
    devices: list  # every device shown: cpu, cuda and any other found
    files: list  # per results file: path, release, device, runs, results, expected, note
    runs: list  # run headers, each with 'source' (path relative to the results folder)
    notes: list = field(default_factory=list)
    snippets: list = field(default_factory=list)  # records of the published claims' snippets
    evaluation: object = field(default=None, repr=False)  # the harness.evaluation.Evaluation that judged frame
    explanations_path: Path | None = None  # default: harness.explanations.EXPLANATIONS_PATH
    _lists: dict = field(default_factory=dict, init=False, repr=False)

    # -------------------------------------------------------------- derived views

    def col(self, name: str) -> list:
        """A column of ``frame`` as a list, made once (iterating a pandas column is slow)."""
        out = self._lists.get(name)
        if out is None:
            out = self._lists[name] = self.frame[name].tolist()
        return out

    @cached_property
    def behaviour(self):
        """The findings (harness.findings.Findings): behaviour changes, drift, phase verdicts."""
        from .. import findings

        return findings.compute(self.frame, self.cases)

    @cached_property
    def explained(self):
        """The explanations matched to the behaviour changes (harness.explanations.Matching),
        or None where the explanations file is absent."""
        from .. import explanations

        path = Path(self.explanations_path or explanations.EXPLANATIONS_PATH)
        if not path.exists():
            return None
        return explanations.match(explanations.load(path), self.behaviour.changes)

    @cached_property
    def case_index(self) -> dict:
        return {cid: i for i, cid in enumerate(self.cases)}

    @cached_property
    def family_rank(self) -> dict:
        """family label -> position in the case files."""
        out: dict = {}
        for c in self.cases.values():
            out.setdefault(c.family.label, len(out))
        return out

    @cached_property
    def data_releases(self) -> list:
        found = set(self.frame["release"].tolist()) if len(self.frame) else set()
        return [r for r in self.releases if r in found]

    @cached_property
    def data_devices(self) -> list:
        found = set(self.frame["device"].tolist()) if len(self.frame) else set()
        return [d for d in self.devices if d in found]

    @cached_property
    def cells(self) -> dict:
        """(release, device) -> status, counts and coverage."""
        counts: dict = {}
        valid_counts: dict = {}  # of the correct-usage cases: only their problems make 'failures'
        if len(self.frame):
            release, device = self.col("release"), self.col("device")
            for (rel, dev, verdict), n in sorted(Counter(zip(release, device, self.col("verdict"))).items()):
                counts.setdefault((rel, dev), {})[verdict] = n
            valid = Counter(
                (rel, dev, v)
                for rel, dev, v, sc in zip(release, device, self.col("verdict"), self.col("scope"))
                if sc == "valid"
            )
            for (rel, dev, verdict), n in valid.items():
                valid_counts.setdefault((rel, dev), {})[verdict] = n
            pit = Counter(compress(zip(release, device), self.col("pitfall")))
            torch_v: dict = {}
            for rel, dev, version in Counter(zip(release, device, self.col("torch"))):  # each triple once
                torch_v.setdefault((rel, dev), set()).add(version)
            torch_v = {key: ", ".join(sorted(versions)) for key, versions in torch_v.items()}
        changed = self.events.groupby(["to", "device"])["id"].nunique() if len(self.events) else {}
        out = {}
        for rel in self.releases:
            for dev in self.devices:
                files = [f for f in self.files if f["release"] == rel and f["device"] == dev]
                c = counts.get((rel, dev), {})
                n = sum(c.values())
                expected = max([f["expected"] or 0 for f in files], default=0)
                recorded = sum(f["results"] for f in files)
                cell = {
                    "release": rel,
                    "device": dev,
                    "results": n,
                    "recorded": recorded,
                    "expected": expected or None,
                    "counts": c,
                    "files": [f["path"] for f in files],
                    "pitfalls": 0,
                    "changed": None,
                    "torch": "",
                }
                if n:
                    cell["pitfalls"] = int(pit[(rel, dev)])
                    cell["torch"] = torch_v[(rel, dev)]
                    first = next(r for r in self.releases if counts.get((r, dev)))
                    if rel != first:  # the first tested release on a device has nothing to compare with
                        cell["changed"] = int(changed.get((rel, dev), 0)) if len(self.events) else 0
                cell["status"] = _status(n, c, expected, files, recorded, valid_counts.get((rel, dev), {}))
                out[(rel, dev)] = cell
        return out

    @cached_property
    def case_axes(self) -> dict:
        """id -> tuple of axis values as text, in AXES order."""
        return {cid: (c.family.label, *(_axis_text(v) for v in c.values)) for cid, c in self.cases.items()}

    @cached_property
    def ids_present(self) -> dict:
        """(device, release) -> set of case ids with a result."""
        if not len(self.frame):
            return {}
        return {key: set(ids.tolist()) for key, ids in self.frame.groupby(["device", "release"], sort=False)["id"]}

    @cached_property
    def events(self) -> pd.DataFrame:
        """Every change between consecutive tested releases of one case on one device."""
        return _events(self)

    @cached_property
    def rows(self) -> list:
        """One :class:`Row` per row of ``frame``, in its order."""
        return list(map(Row._make, zip(*(self.col(c) for c in Row._fields))))

    @cached_property
    def case_codes(self) -> np.ndarray:
        """Per row of ``frame``: the position of its case in ``cases``."""
        index = self.case_index
        return np.fromiter((index[cid] for cid in self.col("id")), dtype=np.int64, count=len(self.frame))

    @cached_property
    def row_order(self) -> list:
        """Indices of ``frame``'s rows sorted by case id, device and release (each such
        triple is unique: no ties)."""
        if not len(self.frame):
            return []
        ids = list(self.cases)
        id_rank = np.empty(len(ids), dtype=np.int64)
        id_rank[sorted(range(len(ids)), key=ids.__getitem__)] = np.arange(len(ids))
        dev_rank = {dev: i for i, dev in enumerate(sorted(set(self.col("device")), key=device_key))}
        devs = np.fromiter((dev_rank[dev] for dev in self.col("device")), dtype=np.int64, count=len(self.frame))
        return np.lexsort((np.asarray(self.col("rk")), devs, id_rank[self.case_codes])).tolist()

    @cached_property
    def rows_by_case(self) -> dict:
        """id -> list of :class:`Row`, ordered by device and release; ids in sorted order."""
        ranked = [self.rows[i] for i in self.row_order]
        bounds = self.case_bounds
        return {ranked[a].id: ranked[a:b] for a, b in zip(bounds, bounds[1:])}

    @cached_property
    def case_bounds(self) -> list:
        """Where the rows of each case start in ``row_order``, then where they all end."""
        codes = self.case_codes[np.asarray(self.row_order, dtype=np.int64)]
        return [0, *(np.flatnonzero(codes[1:] != codes[:-1]) + 1).tolist(), len(codes)] if len(codes) else []

    @cached_property
    def detailed_set(self) -> set:
        return set(self.detailed_ids)

    @cached_property
    def detailed_ids(self) -> list:
        """Cases shown in full: outcome varies across releases/devices, or a problem verdict."""
        if not len(self.frame):
            return []
        order, bounds = np.asarray(self.row_order, dtype=np.int64), self.case_bounds
        state = np.fromiter(self.col("state"), dtype=object, count=len(order))[order]
        first = np.repeat(state[bounds[:-1]], np.diff(bounds))  # each row: its case's first state
        problem = np.fromiter((v in PROBLEMS for v in self.col("verdict")), dtype=bool, count=len(order))[order]
        shown = np.logical_or.reduceat((state != first) | problem, bounds[:-1])
        shown = set(self.case_codes[order[bounds[:-1]]][shown].tolist())
        changed = set(self.events["id"]) if len(self.events) else set()
        return [cid for k, cid in enumerate(self.cases) if k in shown or cid in changed]


def _status(n, counts, expected, files, recorded, valid=None) -> str:
    """The status word of a release and device; 'failures' only when correct usage fails
    (``valid``: the verdict counts of its correct-usage cases)."""
    if not files and not n:
        return NOT_RUN
    if not n:
        return "unreadable" if any(f["note"].startswith("unreadable") for f in files) else "no results"
    bad = sum(counts.get(v, 0) for v in verdicts.RUN_FAILURES)
    if bad == n:
        return "crashed"
    if expected and recorded < expected:
        return "partial"
    if bad:
        return "crashes"
    valid = counts if valid is None else valid
    if sum(valid.get(v, 0) for v in PROBLEMS if v != "stale"):
        return "failures"
    if valid.get("stale", 0):
        return "stale"
    if sum(valid.get(v, 0) for v in verdicts.LIMITS):
        return "limited"
    return "ok"


def _display_path(path: Path, roots) -> str:
    for root in roots:
        try:
            rel = path.resolve().relative_to(root.resolve() if root.is_dir() else root.resolve().parent)
            return rel.as_posix()
        except ValueError:
            continue
    return path.name


def _release_from_path(path: Path) -> str:
    name = path.parent.name
    return name if re.fullmatch(r"\d+\.\d+|nightly", name) else "?"


COLUMNS = list(EVAL_COLUMNS)


def load(results_paths, case_paths=None, expected_releases=None) -> ReportData:
    """Read and evaluate results files (files or folders, searched for ``*.jsonl``).

    ``expected_releases``: the releases to show even without results (default: the
    release catalogue).  A file that cannot be read is reported, not fatal."""
    from ..cases import load_cases
    from ..evaluation import Evaluation, frame_of
    from ..results import ResultsError, result_files

    roots = [Path(p) for p in results_paths]
    for root in roots:
        if not root.exists():
            raise FileNotFoundError(f"results path {root} does not exist")
    if expected_releases is None:
        from .. import catalogue

        expected_releases = [r.key for r in catalogue.load()]
    cases = load_cases(case_paths)
    cases_by_id = {c.id: c for c in cases}
    evaluation = Evaluation(cases_by_id)
    good, sources, files, notes = [], [], [], []
    for path in result_files(roots):
        shown = _display_path(path, roots)
        info = {
            "path": shown,
            "release": _release_from_path(path),
            "device": path.stem,
            "runs": 0,
            "results": 0,
            "expected": None,
            "note": "",
            "torch": None,
        }
        try:
            rf = evaluation.evaluate_file(path, warn=lambda msg: None)  # read and judged, or cached
        except (ResultsError, OSError, UnicodeDecodeError) as exc:
            info["note"] = "unreadable: " + str(exc).replace(str(path), shown)
            files.append(info)
            notes.append(f"{shown}: {info['note']}")
            continue
        if rf.runs:
            last = rf.runs[-1]
            info.update(
                release=release_of(last.get("env", {}).get("torch")),
                device=last.get("device", path.stem),
                runs=len(rf.runs),
                torch=last.get("env", {}).get("torch"),
                expected=max(int(r.get("cases") or 0) for r in rf.runs) or None,
            )
        info["results"] = rf.results
        if rf.dropped_tail:
            info["note"] = "truncated last line dropped (interrupted run)"
            notes.append(f"{shown}: {info['note']}")
        files.append(info)
        good.append(rf)
        sources.append(str(Path(shown)))  # the frame's 'source': relative to the results folder
    frame = frame_of(good, sources) if good else pd.DataFrame()
    unknown = frame.attrs.get("unknown_ids", 0)
    runs = frame.attrs.get("runs", [])
    snippets = frame.attrs.get("snippets", [])
    frame.attrs = {}  # pandas deep-copies attrs on every operation
    if frame.empty:
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    if unknown:
        notes.append(f"{unknown} results name cases that are not in the case files; they are not shown")
    repeated = frame.duplicated(subset=["id", "release", "device"], keep="last")
    if repeated.any():
        frame = frame[~repeated].reset_index(drop=True)
        notes.append(
            f"{int(repeated.sum())} repeated results of the same case, release and device: the last one is used"
        )
    releases = set(expected_releases) | set(frame["release"].tolist()) | {f["release"] for f in files}
    if any("dev" in r for r in releases):
        releases.discard("nightly")  # the nightly build shows under its own version
    releases = sorted(releases, key=release_key)
    devices = sorted(
        set(STANDARD_DEVICES) | set(frame["device"].tolist()) | {f["device"] for f in files}, key=device_key
    )
    rank = {r: i for i, r in enumerate(releases)}
    frame["rk"] = [rank[r] for r in frame["release"].tolist()]
    _derive(frame)
    files.sort(key=lambda f: (release_key(f["release"]), device_key(f["device"]), f["path"]))
    runs = sorted(
        runs,
        key=lambda r: (
            release_key(release_of(r.get("env", {}).get("torch"))),
            device_key(str(r.get("device"))),
            str(r.get("started")),
            r["source"],
        ),
    )
    return ReportData(
        frame=frame,
        cases=cases_by_id,
        releases=releases,
        devices=devices,
        files=files,
        runs=runs,
        notes=notes,
        snippets=snippets,
        evaluation=evaluation,
    )


def _kind(out) -> str | None:
    if out is None:
        return None
    vals = out.get("values") or []
    if not vals:
        return "empty"
    if any(v != v for v in vals):
        return "nan"
    if any(v in (math.inf, -math.inf) for v in vals):
        return "inf"
    return "finite"


def _what(verdict, detail) -> str:
    """What a result without a value was: the exception type, or the unsupported reason."""
    if verdict in verdicts.LIMITS:  # the reason it is not available
        return detail
    return (detail or "").split(":", 1)[0][:80]


_DERIVED = Memo(1 << 20)
_OUTPUT_IDS = (
    itertools.count()
)  # unique for the process, whatever the memo drops  # (shape, float64 bits) -> (kind, text, output id)


def _kind_and_text(out) -> tuple:
    """(_kind(out), fmt_output(out), output id), once per distinct output (shape and
    float64 bits: many releases return the same values).  Outputs with equal ids have
    equal shapes and bits; -1 is an output that is not plain numbers."""
    try:
        vals = out["values"]
        key = (tuple(out["shape"]), struct.pack(f"<{len(vals)}d", *vals))
        hit = _DERIVED.get(key)
    except Exception:  # noqa: BLE001 - not a plain output: no memo
        return _kind(out), fmt_output(out), -1
    if hit is None:
        hit = _DERIVED[key] = (_kind(out), fmt_output(out), next(_OUTPUT_IDS))
    return hit


def _derived(verdict, out, detail) -> tuple:
    """(kind, state, value, output id) of one result (see :class:`ReportData`)."""
    k, text, output_id = _kind_and_text(out) if out is not None else (None, None, -1)
    if verdict in verdicts.RUN_FAILURES or verdict == "stale":  # no output to describe
        state = verdict
    elif out is None:
        state = f"{verdict}: {_what(verdict, detail)}"
    else:
        state = f"{verdict}, {k}"
    if out is None:
        text = str(detail or "")
        text = text if len(text) <= 160 else text[:157] + "…"
    return k, state, text, output_id


def _derive(frame: pd.DataFrame) -> None:
    derived: dict = {}  # once per verdict and output (one object per distinct one in a results file) or detail
    rows = []
    for verdict, out, detail in zip(frame["verdict"].tolist(), frame["output"].tolist(), frame["detail"].tolist()):
        key = (verdict, id(out)) if out is not None else (verdict, None, detail)
        hit = derived.get(key)
        if hit is None:
            hit = derived[key] = _derived(verdict, out, detail)
        rows.append(hit)
    kinds, states, values, output_ids = zip(*rows) if rows else ((), (), (), ())
    frame["kind"] = list(kinds)
    frame["state"] = list(states)
    frame["value"] = list(values)
    frame["output_id"] = list(output_ids)


# ------------------------------------------------------------------ changes


def _same_bits(x, y) -> bool:
    """Two value lists hold bit-identical float64 values."""
    if type(x) is not list or type(y) is not list or len(x) != len(y):
        return False
    try:
        return struct.pack(f"<{len(x)}d", *x) == struct.pack(f"<{len(y)}d", *y)
    except (struct.error, TypeError, OverflowError):
        return False


def _values_differ(a, b, tol) -> bool:
    """Two recorded outputs differ: shape, nan/inf pattern, or beyond the dtype tolerance."""
    if a is None or b is None:
        return (a is None) != (b is None)
    if list(a["shape"]) != list(b["shape"]):
        return True
    if a["values"] == b["values"] or _same_bits(a["values"], b["values"]):  # the common case, without NumPy
        return False
    x = np.asarray(a["values"], dtype=np.float64)
    y = np.asarray(b["values"], dtype=np.float64)
    if (np.isnan(x) != np.isnan(y)).any() or (np.isinf(x) != np.isinf(y)).any():
        return True
    inf = np.isinf(x)
    if (x[inf] != y[inf]).any():
        return True
    fin = np.isfinite(x)
    bound = tol["atol"] + tol["rtol"] * np.maximum(np.abs(x[fin]), np.abs(y[fin]))
    return bool((np.abs(x[fin] - y[fin]) > bound).any())


def change_kind(prev: Row, cur: Row, case) -> str | None:
    """How ``cur`` differs from ``prev`` (two results of one case): 'verdict', 'outcome'
    (same verdict, other value class or exception), 'value' (beyond the dtype tolerance;
    passing values are not compared, both agree with the reference), 'message' (same
    exception, other text), or None."""
    if prev.verdict != cur.verdict:
        return "verdict"
    if prev.state != cur.state:
        return "outcome"
    if (
        cur.verdict != "pass"
        and prev.output is not None
        and not 0 <= prev.output_id == cur.output_id
        and _values_differ(prev.output, cur.output, tolerance(case))
    ):  # (equal ids: equal shapes and bits)
        return "value"
    if prev.output is None and cur.output is None and prev.detail != cur.detail:
        return "message"
    return None


def _events(d: ReportData) -> pd.DataFrame:
    cols = [
        "device",
        "id",
        "from",
        "to",
        "kind",
        "old_state",
        "new_state",
        "old_verdict",
        "new_verdict",
        "old_value",
        "new_value",
        "new_detail",
    ]
    rows = []
    order = d.row_order
    if len(order) > 1:
        # consecutive rows of one case and device that may differ (see change_kind): another
        # verdict or state, a value to compare, or a message; the rest are alike
        index = np.asarray(order)

        def shifted(values):
            values = np.asarray(values)[index]
            return values[:-1], values[1:]

        def column(name):
            return shifted(np.fromiter(d.col(name), dtype=object, count=len(index)))

        (id0, id1), (dev0, dev1), (v0, v1), (s0, s1), (det0, det1) = map(
            column, ("id", "device", "verdict", "state", "detail")
        )
        no_out0, no_out1 = shifted([out is None for out in d.col("output")])
        out0, out1 = shifted(d.col("output_id"))
        values_differ = (out0 < 0) | (out0 != out1)  # equal ids: equal shapes and bits
        maybe = (
            (id0 == id1)
            & (dev0 == dev1)
            & (
                (v0 != v1)
                | (s0 != s1)
                | ((v1 != "pass") & ~no_out0 & values_differ)
                | (no_out0 & no_out1 & (det0 != det1))
            )
        )
        for k in np.flatnonzero(maybe).tolist():
            prev, cur = d.rows[order[k]], d.rows[order[k + 1]]
            kind = change_kind(prev, cur, d.cases[cur.id])
            if kind:
                rows.append(
                    [
                        cur.device,
                        cur.id,
                        prev.release,
                        cur.release,
                        kind,
                        prev.state,
                        cur.state,
                        prev.verdict,
                        cur.verdict,
                        prev.value,
                        cur.value,
                        cur.detail,
                    ]
                )
    return pd.DataFrame(rows, columns=cols)


_BIT_INDEX: list = [(None, [], {}, [])]  # the last index given to _bit_index: (index, ids, positions, masks)


# ------------------------------------------------------------------ sections


def _status_html(status: str) -> str:
    return f'<span class="st st-{STATUS_CLASS[status]}" title="{esc(STATUS_MEANING[status])}">{esc(status)}</span>'


def sec_headline(d: ReportData) -> Section:
    cells = d.cells
    present = [v for v in SEVERITY if any(c["counts"].get(v) for c in cells.values())] or ["pass"]
    grid_md, grid_html = [], []
    for rel in d.releases:
        md_row, html_row = [rel], [rel]
        for dev in d.devices:
            c = cells[(rel, dev)]
            bits = []
            if c["status"] == "partial":
                bits.append(f"{c['recorded']}/{c['expected']} recorded")
            if c["results"]:
                bits.append(f"{sum(c['counts'].get(v, 0) for v in PROBLEMS)} problems")
            if c["changed"]:
                bits.append(f"{c['changed']} changed")
            extra = f" ({', '.join(bits)})" if bits else ""
            md_row.append(c["status"] + extra)
            html_row.append(Raw(_status_html(c["status"]) + f'<span class="muted">{esc(extra)}</span>'))
        grid_md.append(md_row)
        grid_html.append(html_row)
    headers = ["release", "device", "status", "results", *present, "pitfalls", "changed", "torch"]
    rows_md, rows_html = [], []
    for rel in d.releases:
        for dev in d.devices:
            c = cells[(rel, dev)]
            if c["status"] == NOT_RUN and dev not in d.data_devices:
                continue  # a device with no results anywhere is shown in the grid only
            n = c["results"]
            res = (
                ""
                if c["status"] == NOT_RUN
                else (f"{c['recorded']}/{c['expected']}" if c["status"] == "partial" else str(n))
            )
            counts = [str(c["counts"].get(v, 0)) if n else "" for v in present]
            base = [rel, dev, c["status"], res]
            tail = [str(c["pitfalls"]) if n else "", "" if c["changed"] is None else str(c["changed"]), c["torch"]]
            rows_md.append(base + counts + tail)
            hcounts = [badge(v, str(c["counts"][v])) if c["counts"].get(v) else ("" if not n else "0") for v in present]
            hstatus = Raw(_status_html(c["status"]))
            rows_html.append([rel, dev, hstatus, res] + hcounts + tail)
    legend = [[s, STATUS_MEANING[s]] for s in STATUS_MEANING]
    intro = (
        f"One line per release and device. *problems*: results with verdict {', '.join(PROBLEMS[:-1])} or "
        f"{PROBLEMS[-1]}. *changed*: cases whose outcome or value differs from the previous tested release "
        "on the same device (see *What changed*)."
    )
    md = "\n\n".join(
        [
            md_table(["release", *d.devices], grid_md),
            md_escape("Counts per verdict (results: evaluated results; recorded/planned where the run is partial):"),
            md_table(headers, rows_md),
            intro,
            "<details><summary>Status words</summary>\n\n" + md_table(["status", "meaning"], legend) + "\n\n</details>",
        ]
    )
    h = "".join(
        [
            html_table(["release", *d.devices], grid_html, "grid"),
            f"<p>{esc(intro.replace('*', ''))}</p>",
            html_table(headers, rows_html, "headline"),
            "<details><summary>Status words</summary>",
            html_table(["status", "meaning"], legend, "small"),
            "</details>",
        ]
    )
    data = [{k: v for k, v in c.items()} for c in (cells[(r, dv)] for r in d.releases for dv in d.devices)]
    return Section("headline", "Headline: status per release and device", md, h, data)


def _matrix_counts(d: ReportData, dev: str) -> dict:
    """(axis, value) -> release -> {verdict: n} for one device (plus ('all', 'all cases') row)."""
    on = np.fromiter(d.col("device"), dtype=object, count=len(d.frame)) == dev
    cases, rks = d.case_codes[on], np.asarray(d.col("rk"), dtype=np.int64)[on]
    verdict_codes, verdicts = pd.factorize(np.fromiter(d.col("verdict"), dtype=object, count=len(d.frame))[on])
    n_rel, n_verdict = len(d.releases), len(verdicts)
    groups = [("all", np.zeros(len(d.cases), dtype=np.int64), ["all cases"])]
    for a, axis in enumerate(AXES):
        codes, values = pd.factorize(np.fromiter((x[a] for x in d.case_axes.values()), dtype=object))
        groups.append((axis, codes, values.tolist()))
    out: dict = {}
    for axis, case_value, values in groups:  # count (value, release, verdict) triples as one number each
        counts = np.bincount((case_value[cases] * n_rel + rks) * n_verdict + verdict_codes)
        keys = np.flatnonzero(counts)
        value, rest = np.divmod(keys, n_rel * n_verdict)
        counts = counts[keys]
        found = [
            (values[v], d.releases[r], verdicts[c], n)
            for v, r, c, n in zip(
                value.tolist(), (rest // n_verdict).tolist(), (rest % n_verdict).tolist(), counts.tolist()
            )
        ]
        for val, rel, verdict, n in sorted(found):  # the order a sorted groupby gives
            out.setdefault((axis, val), {}).setdefault(rel, {})[verdict] = n
    return out


def _axis_order(d: ReportData, axis: str, values) -> list:
    if axis == "family":
        return sorted(values, key=lambda v: (d.family_rank.get(v, 10**6), v))
    ref = [_axis_text(x) for x in axes.BY_NAME[axis].values] if axis in axes.BY_NAME else []
    return sorted(values, key=lambda v: (ref.index(v) if v in ref else len(ref), v))


def _cell(counts: dict | None):
    """(worst verdict, problem count, tooltip) of one matrix cell, or None if not run."""
    if not counts:
        return None
    worst = min(counts, key=RANK.get)
    problems = sum(counts.get(v, 0) for v in PROBLEMS)
    tip = ", ".join(f"{v} {counts[v]}" for v in SEVERITY if counts.get(v))
    return worst, problems, tip


def sec_matrix(d: ReportData) -> Section:
    md_parts = [
        md_escape(
            "Each cell: the most severe verdict among the group's cases in that release (colour and symbol), and "
            f"the number of cases with a problem verdict ({', '.join(PROBLEMS)}) when there "
            "are any. '·' = not run."
        )
    ]
    legend = " ".join(f"{md_badge(v)} {v}" for v in SEVERITY) + f" {NOT_RUN_STYLE[1]}{NOT_RUN_STYLE[0]} not run"
    md_parts.append(legend)
    html_parts = [
        "<p>Each cell shows the most severe verdict among the group's cases in that release (colour and "
        "symbol) and, when there are any, the number of cases with a problem verdict "
        f"({', '.join(PROBLEMS)}). Hover a cell for all counts. A blank '·' cell was not run.</p>"
    ]
    data = {}
    rels = d.data_releases
    if not rels:
        return Section("matrix", "Matrix: case groups × releases", "No results.", "<p>No results.</p>", {})
    for dev in d.data_devices:
        rels = [r for r in d.data_releases if (r, dev) in d.cells and d.cells[(r, dev)]["results"]]
        missing = [r for r in d.data_releases if r not in rels]
        counts = _matrix_counts(d, dev)
        data[dev] = {f"{a}={v}": counts[(a, v)] for (a, v) in sorted(counts)}
        md_rows, hrows = [], []
        order = [("all", "all cases")]
        for axis in AXES:
            vals = _axis_order(d, axis, {v for (a, v) in counts if a == axis})
            order += [(axis, v) for v in vals]
        last_axis = None
        for axis, val in order:
            label = val if axis == "all" else f"{axis}={val}"
            md_cells, hcells = [label], []
            for rel in rels:
                cell = _cell(counts[(axis, val)].get(rel))
                if cell is None:
                    md_cells.append(NOT_RUN_STYLE[1] + NOT_RUN_STYLE[0])
                    hcells.append(f'<td class="nr" title="{esc(rel)}: not run">·</td>')
                else:
                    worst, problems, tip = cell
                    text = str(problems) if problems else ""
                    md_cells.append(md_badge(worst, text))
                    sym = verdicts.BY_NAME[worst].symbol
                    hcells.append(
                        f'<td class="v-{esc(worst)}" title="{esc(rel)} {esc(dev)} {esc(label)}: {esc(tip)}">'
                        f"{esc(sym)}{' ' + esc(text) if text else ''}</td>"
                    )
            md_rows.append(md_cells)
            if axis != last_axis and axis != "all":
                hrows.append(f'<tr class="axis"><th colspan="{len(rels) + 1}">by {esc(axis)}</th></tr>')
            last_axis = axis
            hrows.append(f"<tr><th>{esc(label)}</th>{''.join(hcells)}</tr>")
        gap = f"Not run on {dev}: {', '.join(missing)}." if missing else ""
        md_parts.append(
            f"**{md_escape(dev)}**"
            + (f" — {md_escape(gap)}" if gap else "")
            + "\n\n"
            + md_table(["group", *rels], md_rows)
        )
        head = "".join(f"<th>{esc(r)}</th>" for r in rels)
        gap_html = f'<p class="muted">{esc(gap)}</p>' if gap else ""
        html_parts.append(
            f'<h3>{esc(dev)}</h3>{gap_html}<div class="wrap"><table class="matrix"><thead><tr>'
            f"<th>group</th>{head}</tr></thead><tbody>{''.join(hrows)}</tbody></table></div>"
        )
    return Section("matrix", "Matrix: case groups × releases", "\n\n".join(md_parts), "".join(html_parts), data)


_TOKENS = Memo(1 << 16)  # (devices, pairs) -> _tokens text: many cases have the same outcomes


def _tokens(d: ReportData, pairs) -> str:
    """Filter tokens 'device:release_from-release_to:verdict' (indices), for the page script."""
    key = (tuple(d.devices), tuple(pairs))
    if key in _TOKENS:
        return _TOKENS[key]
    dev_index = {dv: i for i, dv in enumerate(d.devices)}
    by = {}
    for dev, rk, verdict in pairs:
        by.setdefault((dev_index[dev], verdict), []).append(rk)
    out = []
    for (di, verdict), rks in sorted(by.items()):
        for a, b in index_runs(rks):
            out.append(f"{di}:{a}-{b}:{verdict}" if a != b else f"{di}:{a}:{verdict}")
    text = _TOKENS[key] = " ".join(out)
    return text


def _filter_attrs(d: ReportData, cid: str, pairs, cls: str = "f") -> str:
    return (
        f' class="{cls}" data-id="{esc(cid)}" data-a="{esc("|".join(d.case_axes[cid]))}"'
        f' data-t="{esc(_tokens(d, pairs))}"'
    )


def _id_html(cid: str) -> str:
    """A case id that may break after its slashes."""
    return "/<wbr>".join(esc(part) for part in cid.split("/"))


def _case_link(d: ReportData, cid: str) -> Raw:
    if cid in d.detailed_set:
        return Raw(f'<a class="cid" href="#{esc(case_anchor(cid))}">{_id_html(cid)}</a>')
    return Raw(f'<code class="cid">{_id_html(cid)}</code>')


def _split_warning(text: str) -> tuple[str, str]:
    cat, _, msg = text.partition(": ")
    return (cat, msg) if msg else ("", text)


def sec_warnings(d: ReportData) -> Section:
    counts = Counter(
        (text, rk, dev)
        for texts, rk, dev in zip(d.col("warnings"), d.col("rk"), d.col("device"))
        if isinstance(texts, list)
        for text in texts
    )
    if not counts:
        return Section("warnings", "Warnings", "No warnings recorded.", "<p>No warnings recorded.</p>", [])
    items: dict = {}
    for (text, rk, dev), n in sorted(counts.items()):  # the order of a sorted groupby
        items.setdefault(text, {}).setdefault(dev, {})[int(rk)] = int(n)
    rows = []
    for text, by_dev in items.items():
        texts = []
        for dev in sorted(by_dev, key=device_key):
            per_rel = by_dev[dev]
            # runs of equal counts over adjacent releases: '1.6–1.9: 120; 2.0: 12'
            parts, run = [], []
            for rk in sorted(per_rel):
                if run and rk == run[-1] + 1 and per_rel[rk] == per_rel[run[-1]]:
                    run.append(rk)
                else:
                    if run:
                        parts.append((run, per_rel[run[0]]))
                    run = [rk]
            parts.append((run, per_rel[run[0]]))
            texts.append(f"{dev} " + "; ".join(f"{ranges(r, d.releases)}: {n}" for r, n in parts))
        all_rks = {rk for per_rel in by_dev.values() for rk in per_rel}
        cat, msg = _split_warning(text)
        rows.append(
            {
                "category": cat,
                "message": msg,
                "releases": ranges(all_rks, d.releases),
                "devices": sorted(by_dev, key=device_key),
                "per_release": " · ".join(texts),
                "total": sum(n for per_rel in by_dev.values() for n in per_rel.values()),
                "first": min(all_rks),
            }
        )
    rows.sort(key=lambda r: (r["first"], -r["total"], r["category"], r["message"]))
    headers = ["category", "message", "seen in", "devices", "results per device and release"]
    table = [[r["category"], r["message"], r["releases"], ", ".join(r["devices"]), r["per_release"]] for r in rows]
    intro = (
        f"{len(rows)} distinct warnings (category and message, deduplicated), with the number of results "
        "(case runs) that emitted each."
    )
    data = [{k: v for k, v in r.items() if k != "first"} for r in rows]
    return Section(
        "warnings",
        "Warnings",
        md_escape(intro) + "\n\n" + md_table(headers, table),
        f"<p>{esc(intro)}</p>" + html_table(headers, table, "warnings"),
        data,
    )


def sec_pitfalls(d: ReportData) -> Section:
    cols = ["pitfall_reason", "id", "rk", "device", "family"]  # what is read below
    f = d.frame.loc[d.frame["pitfall"].astype(bool), cols] if len(d.frame) else d.frame
    intro = (
        "Calls that succeed and do what the documentation says, but do not compute the KL divergence the "
        "user means: KL(target ‖ prediction) per distribution. Each reason names the fix."
    )
    if not len(f):
        return Section(
            "pitfalls", "Pitfalls", md_escape(intro) + "\n\nNone found.", f"<p>{esc(intro)}</p><p>None found.</p>", []
        )
    rows = []
    for reason, g in f.groupby("pitfall_reason", sort=True):
        problem, _, fix = reason.partition(": ")
        code = next((c for p, c in PITFALL_FIX.items() if reason.startswith(p)), "")
        ids = sorted(set(g["id"].tolist()), key=d.case_index.get)
        rows.append(
            {
                "pitfall": problem,
                "fix": fix or "",
                "code": code,
                "cases": len(ids),
                "results": len(g),
                "releases": ranges(set(g["rk"].tolist()), d.releases),
                "devices": sorted(set(g["device"].tolist()), key=device_key),
                "families": _axis_order(d, "family", set(g["family"].tolist())),
                "examples": ids[:3],
            }
        )
    rows.sort(key=lambda r: (-r["cases"], r["pitfall"]))
    headers = ["pitfall", "fix", "corrected call", "cases", "results", "releases", "devices", "examples"]
    md_rows = [
        [
            r["pitfall"],
            r["fix"],
            r["code"],
            r["cases"],
            r["results"],
            r["releases"],
            ", ".join(r["devices"]),
            "\n".join(r["examples"]),
        ]
        for r in rows
    ]
    h_rows = [
        [
            r["pitfall"],
            r["fix"],
            Raw(f"<code>{esc(r['code'])}</code>"),
            r["cases"],
            r["results"],
            r["releases"],
            ", ".join(r["devices"]),
            Raw("<br>".join(_case_link(d, i) for i in r["examples"])),
        ]
        for r in rows
    ]
    return Section(
        "pitfalls",
        "Pitfalls",
        md_escape(intro) + "\n\n" + md_table(headers, md_rows),
        f"<p>{esc(intro)}</p>" + html_table(headers, h_rows, "pitfalls"),
        rows,
    )


def sec_environment(d: ReportData) -> Section:
    headers = [
        "release",
        "device",
        "torch",
        "git",
        "CUDA",
        "cuDNN",
        "Python",
        "platform",
        "device name",
        "threads",
        "import s",
        "started",
        "harness",
        "cases",
        "file",
    ]
    rows, data = [], []
    for run in d.runs:
        env = run.get("env", {})
        imp = env.get("import_seconds")
        row = [
            release_of(env.get("torch")),
            str(run.get("device", "")),
            env.get("torch") or "",
            (env.get("torch_git") or "")[:12],
            env.get("cuda") or "",
            env.get("cudnn") or "",
            env.get("python") or "",
            env.get("platform") or "",
            env.get("device_name") or "",
            env.get("threads") or "",
            "" if imp is None else f"{float(imp):.2f}",
            run.get("started") or "",
            run.get("harness") or "",
            run.get("cases") or "",
            run["source"],
        ]
        rows.append([str(x) for x in row])
        data.append(
            {
                "source": run["source"],
                "device": run.get("device"),
                "started": run.get("started"),
                "harness": run.get("harness"),
                "cases": run.get("cases"),
                "env": env,
            }
        )
    file_rows = [
        [
            f["path"],
            f["release"],
            f["device"],
            str(f["runs"]),
            str(f["results"]),
            "" if f["expected"] is None else str(f["expected"]),
            f["note"],
        ]
        for f in d.files
    ]
    fh = ["file", "release", "device", "run headers", "results", "cases in run", "note"]
    intro = "One line per run header (a run of one release on one device; a resumed run adds a header)."
    md = md_escape(intro) + "\n\n" + (md_table(headers, rows) if rows else "No runs.")
    md += "\n\nResults files:\n\n" + (md_table(fh, file_rows) if file_rows else "None.")
    if d.notes:
        md += "\n\n" + "\n".join(f"- {md_escape(n)}" for n in d.notes)
    h = f"<p>{esc(intro)}</p>" + (html_table(headers, rows, "env") if rows else "<p>No runs.</p>")
    h += "<h3>Results files</h3>" + (html_table(fh, file_rows) if file_rows else "<p>None.</p>")
    if d.notes:
        h += "<ul>" + "".join(f"<li>{esc(n)}</li>" for n in d.notes) + "</ul>"
    return Section("environment", "Environment of each run", md, h, {"runs": data, "files": d.files, "notes": d.notes})


# ------------------------------------------------------------------ per case


def case_anchor(cid: str) -> str:
    return "case-" + re.sub(r"[^A-Za-z0-9_.-]", "_", cid)


_SHORT_CACHE = Memo(1 << 18)


def short_literal(v: float, dtype: str) -> str:
    """The shortest decimal that gives back exactly ``v`` in ``dtype`` (v is representable
    there), both converting directly and through float32 (as some torch builds do)."""
    v = float(v)
    key = (v, dtype)
    hit = _SHORT_CACHE.get(key) if v else None  # zeros differ by sign, equal as keys: not kept
    if hit is not None:
        return hit
    special = _special_text(v)
    if special is not None:
        return special
    if dtype == "float64":
        return repr(v)
    if key not in _SHORT_CACHE:
        from ..inputs import round_to_dtype

        text = repr(v)
        cands = [format(v, f".{digits}g") for digits in range(1, 18)]  # every length in one NumPy call
        xs = np.array([float(c) for c in cands])
        back = round_to_dtype(np.concatenate([xs, xs.astype(np.float32).astype(np.float64)]), dtype)
        ok = (back[: len(cands)] == v) & (back[len(cands) :] == v)
        if ok.any():
            cand = cands[int(np.argmax(ok))]  # the shortest that works
            text = cand if any(c in cand for c in ".e") else cand + ".0"
        _SHORT_CACHE[key] = text
    return _SHORT_CACHE[key]


_LITERALS = Memo(1 << 14)  # (dtype, shape, float64 bytes) -> _literal text: cases share their inputs


def _literal(array: np.ndarray, dtype: str = "float64") -> str:
    def nest(a):
        if isinstance(a, list):
            return "[" + ", ".join([nest(x) for x in a]) + "]"
        return short_literal(a, dtype)

    array = np.asarray(array, dtype=np.float64)
    key = (dtype, array.shape, array.tobytes())
    if key not in _LITERALS:
        _LITERALS[key] = nest(array.tolist())  # Python floats: the same values, far faster to walk
    return _LITERALS[key]


def call_text(case, first: str, second: str) -> str:
    """The case's kl_div call as Python, on the variables ``first`` and ``second`` (the
    worker's _call: its API form, reduction or legacy arguments, log_target when True)."""
    from ..worker import _legacy

    if case.api in ("legacy_module", "legacy_functional"):
        kw = [f"{k}={v!r}" for k, v in _legacy(case.reduction).items()]
    else:
        kw = [f"reduction={case.reduction!r}"]
    if case.log_target:
        kw.append("log_target=True")
    if case.api in ("module", "legacy_module"):
        return f"torch.nn.KLDivLoss({', '.join(kw)})({first}, {second})"
    return f"torch.nn.functional.kl_div({first}, {second}, {', '.join(kw)})"


def reproduction(case, devices) -> str:
    """Python that builds the case's exact tensors and makes its call (as the worker does)."""
    from ..inputs import call_inputs

    ci = call_inputs(case)
    dt = f"torch.{case.dtype}"
    grad = case.family.grad
    ins, tgs = MEANING_TEXT[ci.input_meaning], MEANING_TEXT[ci.target_meaning]
    if case.order == "swapped":
        comments = (
            f"input position, holding the target ({tgs}): arguments swapped",
            f"target position, holding the prediction ({ins})",
        )
    else:
        comments = (f"input: the prediction as {ins}", f"target: {tgs}")
    dev = devices[0] if devices else "cpu"
    rg = ", requires_grad=True" if grad else ""
    lines = [f"# {case.id}", "import torch", ""]
    big = max(ci.first.size, ci.second.size) > INLINE_LIMIT
    if big:
        lines = [
            f"# {case.id}",
            f"# {ci.first.size} + {ci.second.size} input values are too many to inline: run this in the harness",
            "# checkout, where the case files and the seeded generator rebuild the exact values.",
            "import torch",
            "from harness.cases import load_cases",
            "from harness.inputs import call_inputs",
            "",
            f"ci = call_inputs({{c.id: c for c in load_cases()}}[{case.id!r}])",
        ]
    else:
        lines.append('nan, inf = float("nan"), float("inf")')
    lines.append(f"device = {dev!r}  # results for this case: {', '.join(devices) or 'none'}")
    for name, arr, comment in (("first", ci.first, comments[0]), ("second", ci.second, comments[1])):
        if big:
            expr = f"torch.tensor(ci.{name}.tolist(), dtype=torch.float64).to(device=device, dtype={dt})" + (
                ".requires_grad_()" if grad else ""
            )
        elif arr.size == 0:
            expr = f"torch.empty({tuple(arr.shape)!r}, dtype={dt}, device=device{rg})"
        else:
            expr = f"torch.tensor({_literal(arr, case.dtype)}, dtype={dt}, device=device{rg})"
        lines.append(f"# {comment}")
        lines.append(f"{name} = {expr}")
    lines += [f"loss = {call_text(case, 'first', 'second')}", "print(loss)"]
    if grad:
        lines += ["loss.backward(torch.ones_like(loss))", "print(first.grad, second.grad)"]
    return "\n".join(lines) + "\n"


def _clip(text, limit) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


_REFERENCE_TEXT = Memo(1 << 16)  # (dtype, shape, value bytes, undefined bytes) -> text: cases share references


def _reference_text(q) -> str:
    if q is None:
        return ""
    key = (q.value.dtype.str, q.value.shape, q.value.tobytes(), q.undefined.tobytes())
    if key not in _REFERENCE_TEXT:
        vals = q.value.reshape(-1).tolist()
        und = q.undefined.reshape(-1).tolist()
        _REFERENCE_TEXT[key] = fmt_values(q.value.shape, vals, VALUES_SHOWN_DETAIL, und)
    return _REFERENCE_TEXT[key]


def _case_runs(d: ReportData, cid: str) -> list:
    """A case's results split into runs of tested releases (per device) between changes
    (:func:`change_kind`); each run shows its first result."""
    case = d.cases[cid]
    out = []
    for r in d.rows_by_case[cid]:
        last = out[-1] if out else None
        if last and last["first"].device == r.device and change_kind(last["first"], r, case) is None:
            last["rks"].append(r.rk)
        else:
            out.append({"first": r, "rks": [r.rk]})
    return out


_DETAIL_VALUES = Memo(1 << 18)  # output id -> the output as text in per-case detail


def _detail_value(r: Row) -> str:
    """A result's value as shown in per-case detail (more values than in tables)."""
    if r.output is None:
        return r.value
    if r.output_id < 0:  # not plain numbers: no id to share it by
        return fmt_output(r.output, VALUES_SHOWN_DETAIL)
    if r.output_id not in _DETAIL_VALUES:
        _DETAIL_VALUES[r.output_id] = fmt_output(r.output, VALUES_SHOWN_DETAIL)
    return _DETAIL_VALUES[r.output_id]


def _case_detail(d: ReportData, cid: str) -> str:
    from ..evaluate import case_references

    case = d.cases[cid]
    fam = case.family
    rows = d.rows_by_case[cid]
    devices = sorted({r.device for r in rows}, key=device_key)
    pairs = [(r.device, r.rk, r.verdict) for r in rows]
    runs = _case_runs(d, cid)
    timeline = []  # one line per device for the summary
    for dev in devices:
        bits = [
            badge(run["first"].verdict) + esc(" " + ranges(run["rks"], d.releases))
            for run in runs
            if run["first"].device == dev
        ]
        timeline.append(f'<span class="tl">{esc(dev)}: {" ".join(bits)}</span>')
    table = []
    for run in runs:
        r = run["first"]
        value = _detail_value(r)
        detail = "" if r.detail == r.value else _clip(r.detail, 400)
        table.append([ranges(run["rks"], d.releases), r.device, badge(r.verdict, r.verdict), value, detail])
    warned: dict = {}
    for r in rows:
        for w in r.warnings if isinstance(r.warnings, list) else ():
            warned.setdefault(w, {}).setdefault(r.device, []).append(r.rk)
    warn_html = "".join(
        f'<li>{esc(_clip(w, 400))} <span class="muted">('
        + esc(
            "; ".join(
                f"{dev} {ranges(rks, d.releases)}" for dev, rks in sorted(where.items(), key=lambda x: device_key(x[0]))
            )
        )
        + ")</span></li>"
        for w, where in sorted(warned.items())
    )
    ref = d.evaluation.reference(case) if d.evaluation is not None else case_references(case)
    tol = tolerance(case)
    if ref.documented.broadcast_error:
        doc_text = f"raises ({ref.documented.broadcast_error})"
        math_text = doc_text
    else:
        doc_text = _reference_text(ref.documented.forward)
        math_text = _reference_text(ref.math.forward)
    src = f"{Path(fam.source).name}:{fam.line}"
    meaning = (
        f"input holds {fam.meaning.get('input')}, target holds {fam.meaning.get('target')}"
        if fam.generator == "literal"
        else f"generator {fam.generator}, seed {fam.seed}"
    )
    info = [
        (
            "inputs",
            f"values in the snippet below; {meaning}; "
            f"shape {list(fam.shape) if fam.generator != 'literal' else 'literal'}"
            f"{'; target shape ' + str(list(fam.target_shape)) if fam.target_shape else ''}; "
            f"gradients {'checked' if fam.grad else 'not checked'}"
            f"{'; an error is expected' if fam.expect_error else ''}",
        ),
        ("tolerance", f"rtol {tol['rtol']:g}, atol {tol['atol']:g} ({case.dtype})"),
        ("reference (documented)", doc_text),
        ("KL the user means", math_text),
        ("case file", src),
    ]
    pitfalls = sorted({r.pitfall_reason for r in rows if r.pitfall})
    if pitfalls:
        info.append(("pitfall", "; ".join(pitfalls)))
    if warn_html:
        info.append(("warnings", Raw(f"<ul>{warn_html}</ul>")))
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{v if isinstance(v, Raw) else esc(v)}</dd>" for k, v in info)
    return (
        f'<details id="{esc(case_anchor(cid))}"{_filter_attrs(d, cid, pairs, "f cased")}><summary><code>{esc(cid)}'
        f'</code> {" ".join(timeline)}</summary><div class="case"><dl>{dl}</dl>'
        + html_table(["releases", "device", "verdict", "value (first of the run)", "detail"], table, "runs")
        + f"<pre><code>{esc(reproduction(case, devices))}</code></pre></div></details>"
    )


def sec_cases(d: ReportData) -> Section:
    detailed = d.detailed_ids
    with_rows = [cid for cid in d.cases if cid in d.rows_by_case]
    compact = [cid for cid in with_rows if cid not in d.detailed_set]
    intro = (
        f"{len(with_rows)} cases have results. Full detail — inputs, reference values, the outcome per "
        f"release and device, and a reproduction snippet — is given for the {len(detailed)} cases whose "
        f"outcome varies across releases or devices or that have a problem verdict ({', '.join(PROBLEMS)}) "
        f"somewhere. The other {len(compact)} cases have one outcome everywhere and are listed "
        "compactly (value from the newest release). Snippets inline tensors up to "
        f"{INLINE_LIMIT} elements; larger inputs are rebuilt with the harness. Grouped by input family."
    )
    fams: dict = {}
    for cid in with_rows:
        fams.setdefault(d.cases[cid].family.label, []).append(cid)
    parts = [f"<p>{esc(intro)}</p>"]
    md_rows = []
    per_family = Counter(zip(d.col("family"), d.col("verdict")))  # results per family and verdict
    for fam, ids in fams.items():
        det = [c for c in ids if c in d.detailed_set]
        rest = [c for c in ids if c not in d.detailed_set]
        worst_counts = {v: per_family[(fam, v)] for v in SEVERITY if per_family.get((fam, v))}
        summary_badges = "results: " + " ".join(badge(v, str(worst_counts[v])) for v in SEVERITY if worst_counts.get(v))
        md_rows.append(
            [
                fam,
                str(len(ids)),
                str(len(det)),
                ", ".join(f"{v} {worst_counts[v]}" for v in SEVERITY if worst_counts.get(v)),
            ]
        )
        body = "".join(_case_detail(d, cid) for cid in det)
        if rest:
            rows, attrs = [], []
            for cid in rest:
                rs = d.rows_by_case[cid]
                last = rs[-1] if len({r.device for r in rs}) == 1 else max(rs, key=lambda r: r.rk)
                cover = "; ".join(
                    f"{dev} {ranges([r.rk for r in rs if r.device == dev], d.releases)}"
                    for dev in sorted({r.device for r in rs}, key=device_key)
                )
                rows.append(
                    [
                        Raw(f'<code class="cid">{_id_html(cid)}</code>'),
                        badge(last.verdict, last.verdict),
                        last.value,
                        cover,
                        last.pitfall_reason,
                    ]
                )
                attrs.append(_filter_attrs(d, cid, [(r.device, r.rk, r.verdict) for r in rs]))
            table = html_table(["case", "verdict", "value", "runs", "pitfall"], rows, "compact", attrs)
            body += f'<div class="fg">{table}</div>'
        family = d.cases[ids[0]].family
        parts.append(
            f'<details class="fg fam"><summary><b>{esc(fam)}</b> — <span class="fc">{len(ids)}</span> '
            f"of {len(ids)} cases ({len(det)} in detail) {summary_badges}</summary>"
            f'<p class="muted">{esc(family.description)}</p>{body}</details>'
        )
    md = (
        md_escape(intro.split(" Snippets")[0])
        + " "
        + md_escape("Per-case detail is in index.html.")
        + "\n\n"
        + md_table(["family", "cases", "in detail", "results per verdict"], md_rows)
    )
    data = {"cases_with_results": len(with_rows), "detailed": detailed, "compact": len(compact)}
    return Section("cases", "Cases", md, "".join(parts), data)


# claim status (harness.claims.STATUSES, in order) -> (symbol, Markdown square, verdict class used for the colour)
CLAIM_STYLE = dict(
    zip(
        claims.STATUSES,
        [("✓", "🟩", "pass"), ("◐", "🟨", "unsupported"), ("✗", "🟥", "error"), ("–", "⬜", "undefined")]
        + [("·", "⬜", "undefined")],
        strict=True,
    )
)


def _claim_runs(d: ReportData, rows: list) -> list:
    """Consecutive releases with the same status and measurement, as (range, row)."""
    out, prev, members, last = [], None, [], None
    for row in rows:
        key = (row["status"], str(row.get("printed") if row["kind"] == "example" else row.get("detail")))
        if prev is not None and key != prev:
            out.append((members, last))
            members = []
        members.append(d.releases.index(row["release"]) if row["release"] in d.releases else 0)
        prev, last = key, row
    if members:
        out.append((members, last))
    return [(ranges(set(m), d.releases), r) for m, r in out]


def sec_claims(d: ReportData) -> Section:
    """Published claims vs reality: the seed post's printed outputs and advice, per release."""
    from .. import claims as claims_mod

    frame = d.frame.copy(deep=False)  # evaluate_claims reads it only
    frame.attrs = {"snippets": d.snippets}
    df = claims_mod.evaluate_claims(frame) if len(frame) or d.snippets else pd.DataFrame()
    intro = (
        "Each printed line and each piece of advice of the seed post (cases/claims/seed-post.yaml), "
        "checked on every release: holds, holds for the wrong reason, or does not hold. Snippets run "
        "verbatim in each release's environment (CPU); advice is checked against the case matrix."
    )
    if df.empty:
        return Section(
            "claims",
            "Published claims vs reality",
            md_escape(intro) + "\n\nNo results.",
            f"<p>{esc(intro)}</p><p>No results.</p>",
            [],
        )
    df = df[df["status"] != "not run"] if (df["status"] != "not run").any() else df
    md_parts, html_parts, data = [md_escape(intro)], [f"<p>{esc(intro)}</p>"], []
    for claim_id, g in df.groupby("claim", sort=False):
        first = g.iloc[0]
        md_lines, html_items = [], []
        for dev, gd in g.groupby("device", sort=False):
            rows = sorted(gd.to_dict("records"), key=lambda r: release_key(r["release"]))
            for span, row in _claim_runs(d, rows):
                sym, square, cls = CLAIM_STYLE[row["status"]]
                seen = (
                    f"prints {row['printed']!r}"
                    if row["kind"] == "example" and row.get("printed") is not None
                    else str(row.get("detail") or "")
                )
                md_lines.append(
                    f"- {square} {sym} **{md_escape(row['status'])}** on {md_escape(span)} ({dev}): {md_escape(seen)}"
                )
                html_items.append(
                    f'<li><span class="v v-{cls}">{sym}</span> <b>{esc(row["status"])}</b> on '
                    f"{esc(span)} ({esc(dev)}): {esc(seen)}</li>"
                )
                data.append({"claim": claim_id, "device": dev, "releases": span, "status": row["status"], "seen": seen})
        ref = ""
        if first["kind"] == "example" and not (
            isinstance(first.get("reference"), float) and math.isnan(first["reference"]) and math.isnan(first["meant"])
        ):
            ref = (
                f"Reference for this call on the post's inputs (float32): documented formula "
                f"{fmt_float(first['reference'])}, the KL the post means {fmt_float(first['meant'])}."
            )
        title = f"{claim_id}: {first['statement']}"
        md_parts.append(
            f"**{md_escape(title)}**\n\n"
            + "\n".join(md_lines)
            + "\n\n"
            + md_escape(" ".join(x for x in (first["explanation"], ref) if x))
            + f"\n\nFix: {md_escape(first['fix'])}"
        )
        html_parts.append(
            f"<h3>{esc(title)}</h3><ul>{''.join(html_items)}</ul><p>{esc(first['explanation'])} "
            f"{esc(ref)}</p><p>Fix: <code>{esc(first['fix'])}</code></p>"
        )
    return Section("claims", "Published claims vs reality", "\n\n".join(md_parts), "".join(html_parts), data)


def _cuda_vs_cpu(d: ReportData) -> pd.DataFrame:
    """:func:`harness.oracle.cuda_vs_cpu` of the frame, asked once per distinct pair: its
    answer for a case run on both devices of a release depends on the case and on what each
    device returned (verdict, output shape and bits), which most releases repeat."""
    from ..oracle import cuda_vs_cpu

    n = len(d.frame)
    column = {
        c: np.fromiter(d.col(c), dtype=object, count=n)
        for c in ("release", "id", "family", "dtype", "verdict", "output", "device")
    }
    cpu, cuda = np.flatnonzero(column["device"] == "cpu"), np.flatnonzero(column["device"] == "cuda")
    where = d.case_codes * len(d.releases) + np.asarray(d.col("rk"), dtype=np.int64)  # (case, release)
    _, on_cpu, on_cuda = np.intersect1d(where[cpu], where[cuda], assume_unique=True, return_indices=True)
    cpu, cuda = cpu[on_cpu], cuda[on_cuda]  # the rows of each pair
    if not len(cpu):
        return pd.DataFrame()
    # what came back: equal output ids for equal outputs; an output that is not plain numbers is its own
    returned = np.asarray(d.col("output_id"), dtype=np.int64)
    odd = (returned < 0) & np.fromiter((out is not None for out in d.col("output")), dtype=bool, count=n)
    returned = np.where(odd, -2 - np.arange(n), returned)
    verdict = pd.factorize(column["verdict"])[0]
    keys = np.stack([d.case_codes[cpu], verdict[cpu], verdict[cuda], returned[cpu], returned[cuda]], axis=1)
    _, first, which = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    asked = np.sort(np.concatenate([cpu[first], cuda[first]]))
    comp = cuda_vs_cpu(
        pd.DataFrame({c: v[asked] for c, v in column.items()}, dtype=object),
        d.cases,
        d.evaluation.reference if d.evaluation is not None else None,
    )
    answer = dict(
        zip(
            zip(comp["release"].tolist(), comp["id"].tolist()),
            zip(comp["agreement"].tolist(), comp["max_abs_diff"].tolist()),
        )
    )
    agreement, diff = zip(*(answer[key] for key in zip(column["release"][cpu[first]], column["id"][cpu[first]])))
    which = which.reshape(-1)
    return pd.DataFrame(
        {
            "release": column["release"][cpu],
            "id": column["id"][cpu],
            "family": column["family"][cpu],
            "dtype": column["dtype"][cpu],
            "cpu_verdict": column["verdict"][cpu],
            "cuda_verdict": column["verdict"][cuda],
            "agreement": np.array(agreement, dtype=object)[which],
            "max_abs_diff": np.array(diff, dtype=np.float64)[which],
        }
    )


def sec_cuda_vs_cpu(d: ReportData) -> Section:
    """Second oracle: CUDA against CPU on the same release and inputs."""
    intro = (
        "The same inputs on CUDA and on CPU of one release, compared with each other (a second oracle "
        "beside the analytic reference): same bits, close within the dtype tolerance, different values, "
        "or a different verdict; *stale*: one side's result was made from other inputs (run it again)."
    )
    comp = _cuda_vs_cpu(d) if len(d.frame) else pd.DataFrame()
    if comp.empty:
        text = "No release has both CUDA and CPU results: CUDA is not run here."
        return Section(
            "cuda",
            "CUDA vs CPU",
            md_escape(intro) + "\n\n" + md_escape(text),
            f"<p>{esc(intro)}</p><p>{esc(text)}</p>",
            [],
        )
    kinds = ["same", "close", "differ", "outcome differs", "stale"]
    counts = comp.groupby(["release", "agreement"]).size().unstack(fill_value=0).reindex(columns=kinds, fill_value=0)
    rels = sorted(counts.index, key=release_key)
    summary = [[rel, *[int(counts.loc[rel, k]) for k in kinds], int(counts.loc[rel].sum())] for rel in rels]
    headers = ["release", *kinds, "cases"]
    bad = comp[comp["agreement"].isin(["differ", "outcome differs"])]
    bad = bad.assign(ix=[d.case_index.get(i, 0) for i in bad["id"]]).sort_values(["release", "ix"], kind="mergesort")
    shown = set(zip(bad["release"].tolist(), bad["id"].tolist()))
    value = {
        (rel, cid, dev): v
        for rel, cid, dev, v in zip(d.col("release"), d.col("id"), d.col("device"), d.col("value"))
        if (rel, cid) in shown
    }
    detail = []
    for r in bad.itertuples(index=False):
        detail.append(
            [
                r.release,
                r.id,
                r.agreement,
                f"{r.cpu_verdict}: {value[(r.release, r.id, 'cpu')]}",
                f"{r.cuda_verdict}: {value[(r.release, r.id, 'cuda')]}",
            ]
        )
    dh = ["release", "case", "agreement", "cpu", "cuda"]
    groups = bad.groupby(["release", "family", "dtype", "agreement"]).size().reset_index(name="cases")
    gh = ["release", "family", "dtype", "agreement", "cases"]
    md = (
        md_escape(intro)
        + "\n\n"
        + md_table(headers, summary)
        + "\n\n"
        + (md_table(gh, groups.values.tolist()) if len(groups) else "No differences.")
    )
    h = (
        f"<p>{esc(intro)}</p>"
        + html_table(headers, summary, "cuda")
        + (
            html_table(gh, groups.values.tolist()) + "<details><summary>every differing case "
            f"({len(detail)})</summary>" + html_table(dh, detail) + "</details>"
            if detail
            else "<p>No differences.</p>"
        )
    )
    data = {
        "counts": {row[0]: dict(zip(kinds, row[1:-1])) for row in summary},
        "differences": [dict(zip(dh, row)) for row in detail],
    }
    return Section("cuda", "CUDA vs CPU", md, h, data)


# The report, in order.  Each entry: (ReportData) -> Section | None.
# ------------------------------------------------------------------ findings: at a glance, behaviour changes

OK_VERDICTS = ("pass", "expected-error")  # a phase that does what the documentation says


def _glance_cell(counts: Counter) -> tuple[str, str]:
    """(text, verdict class) of a correct-usage cell: every case of it matches, some do
    not (how many), or the dtype/phase is not implemented (how many)."""
    n = sum(counts.values())
    bad = sum(counts.get(v, 0) for v in PROBLEMS)
    missing = sum(counts.get(v, 0) for v in verdicts.LIMITS)
    if not n:
        return "", "nr"
    if bad:
        return f"✗ {bad}/{n}", "error"
    if missing == n:
        return "– not implemented", "unsupported"
    if missing:
        return f"✓ {n - missing}, – {missing}", "unsupported"
    return "✓", "pass"


def _glance(d: ReportData) -> list[dict]:
    """Per release and device with results: the answers, in the order users ask them."""
    f = d.frame
    if not len(f):
        return []
    b = d.behaviour
    by_step: dict = {}
    for bc in b.changes:
        by_step.setdefault((bc.device, bc.since), []).append(bc)
    drift = {(x.device, x.since): x for x in b.drift}
    first_of = {}
    for dev, prev, rel in b.steps:
        first_of[(dev, rel)] = prev
    out = []
    keys = sorted(
        {(r, dv) for r, dv in zip(d.col("release"), d.col("device"))},
        key=lambda k: (device_key(k[1]), release_key(k[0])),
    )
    scope, verdict, pitfall = d.col("scope"), d.col("verdict"), d.col("pitfall")
    errors, outputs = d.col("errors"), d.col("output")
    groups: dict = {}
    for i, key in enumerate(zip(d.col("release"), d.col("device"))):
        groups.setdefault(key, []).append(i)
    for rel, dev in keys:
        idx = groups[(rel, dev)]
        valid = Counter(verdict[i] for i in idx if scope[i] == "valid")
        boundary = [i for i in idx if scope[i] == "boundary"]
        invalid = [i for i in idx if scope[i] == "invalid"]
        misuse = [i for i in idx if scope[i] == "misuse"]
        inv = Counter()
        for i in invalid:
            if isinstance(errors[i], dict) and "forward" in errors[i]:
                inv["error"] += 1
            elif isinstance(outputs[i], dict) and any(v != v for v in outputs[i]["values"]):
                inv["nan"] += 1
            else:
                inv["a number"] += 1
        silent = sum(1 for i in misuse if pitfall[i] and not (isinstance(errors[i], dict) and "forward" in errors[i]))
        n_valid = sum(valid.values())
        valid_bad = sum(valid.get(v, 0) for v in PROBLEMS if v != "stale")
        valid_stale = valid.get("stale", 0)
        valid_missing = sum(valid.get(v, 0) for v in verdicts.LIMITS)
        if not n_valid:
            status = "no correct-usage cases"
        elif valid_bad:
            status = "failures"
        elif valid_stale:
            status = f"stale ({valid_stale} results made from other inputs: run again)"
        elif valid_missing:
            status = "limited"
        else:
            status = "ok"
        changes = by_step.get((dev, rel), [])
        dr = drift.get((dev, rel))
        prev = first_of.get((dev, rel))
        if prev is None:
            changed = "first tested release"
        elif changes or dr:
            parts = [f"{len(changes)} behaviour change{'s' if len(changes) != 1 else ''}"] if changes else []
            if dr:
                parts.append(f"drift in {dr.cases} cases (≤ {dr.max_ulps:g} ulp)")
            changed = f"vs {prev}: " + ", ".join(parts)
        else:
            changed = f"vs {prev}: nothing"
        out.append(
            {
                "release": rel,
                "device": dev,
                "status": status,
                "correct_usage": {
                    "cases": n_valid,
                    "problems": valid_bad,
                    "stale": valid_stale,
                    "not_implemented": valid_missing,
                },
                "boundary": {
                    "cases": len(boundary),
                    "differ_from_limit": sum(1 for i in boundary if verdict[i] in ("nan", "mismatch", "error")),
                },
                "invalid": {"cases": len(invalid), **{k: inv[k] for k in ("error", "nan", "a number")}},
                "misuse": {"cases": len(misuse), "silent": silent},
                "changed": changed,
                "changes": [bc.key for bc in changes],
            }
        )
    return out


def sec_glance(d: ReportData) -> Section:
    """The first answers: correct usage per release, boundary, invalid input, misuse, change."""
    rows = _glance(d)
    number = {bc.key: k + 1 for k, bc in enumerate(d.behaviour.changes)}  # as numbered in Behaviour changes
    intro = (
        "Per release and device: does correct usage (arguments as the documentation describes them) match the "
        "reference; how many boundary cases differ from the mathematical limit; what invalid input gets; how many "
        "misuses (swapped arguments, 'mean', probabilities as input) return a number without any error; and what "
        "changed against the release before. A release reads *failures* only when correct usage fails."
    )
    headers = ["release", "device", "status", "correct usage", "boundary", "invalid input", "silent misuse", "changed"]
    md_rows, html_rows = [], []
    for r in rows:
        cu = r["correct_usage"]
        usage = (
            f"✗ {cu['problems']} of {cu['cases']} fail"
            if cu["problems"]
            else f"? {cu['stale']} of {cu['cases']} stale"
            if cu["stale"]
            else f"✓ all {cu['cases']} match"
            + (f" ({cu['not_implemented']} not implemented)" if cu["not_implemented"] else "")
        )
        bd = f"{r['boundary']['differ_from_limit']} of {r['boundary']['cases']} differ from the limit"
        inv = r["invalid"]
        invalid = f"error {inv['error']} · nan {inv['nan']} · a number {inv['a number']}"
        mis = f"{r['misuse']['silent']} of {r['misuse']['cases']}"
        cells = [r["release"], r["device"], r["status"], usage, bd, invalid, mis, r["changed"]]
        md_rows.append(cells)
        links = " ".join(f'<a href="#{esc(k)}">#{number[k]}</a>' for k in r["changes"])
        word = r["status"].split(" (")[0]
        status_html = Raw(f'<span class="st st-{STATUS_CLASS.get(word, "warn")}">{esc(r["status"])}</span>')
        html_rows.append(
            cells[:2] + [status_html] + cells[3:7] + [Raw(esc(r["changed"]) + (f" {links}" if links else ""))]
        )
    grid_md, grid_html, ghead = _usage_grid(d)
    md = "\n\n".join(
        [
            md_escape(intro),
            md_table(headers, md_rows) if md_rows else "No results.",
            md_escape(
                "Correct usage per dtype and phase (✓ every case matches the reference; ✗ failing/total; "
                "– not implemented):"
            ),
            md_table(ghead, grid_md) if grid_md else "",
        ]
    )
    h = (
        f"<p>{esc(intro.replace('*', ''))}</p>"
        + (html_table(headers, html_rows, "glance") if html_rows else "<p>No results.</p>")
        + "<p>Correct usage per dtype and phase (✓ every case matches the reference; ✗ failing/total; – not "
        "implemented):</p>" + (html_table(ghead, grid_html, "grid usage") if grid_html else "")
    )
    phase_verdicts = [
        {"release": rel, "device": dev, "scope": sc, "dtype": dt, "phase": ph, "counts": dict(sorted(c.items()))}
        for (rel, dev, sc, dt, ph), c in sorted(
            d.behaviour.phase_counts.items(),
            key=lambda kv: (device_key(kv[0][1]), release_key(kv[0][0]), kv[0][2:]),
        )
    ]
    return Section("glance", "At a glance", md, h, {"releases": rows, "phase_verdicts": phase_verdicts})


def _usage_grid(d: ReportData):
    counts = d.behaviour.phase_counts
    dtypes = axes.BY_NAME["dtype"].values
    from .. import phases as phases_mod

    ghead = ["release", "device"] + [f"{dt} {p.label}" for dt in dtypes for p in phases_mod.PHASES]
    md_rows, html_rows = [], []
    keys = sorted({(r, dv) for (r, dv, _, _, _) in counts}, key=lambda k: (device_key(k[1]), release_key(k[0])))
    for rel, dev in keys:
        md_row, html_row = [rel, dev], [rel, dev]
        for dt in dtypes:
            for p in phases_mod.PHASES:
                text, cls = _glance_cell(counts.get((rel, dev, "valid", dt, p.name), Counter()))
                md_row.append(text)
                html_row.append(Raw(f'<span class="v v-{esc(cls)}">{esc(text)}</span>' if text else ""))
        md_rows.append(md_row)
        html_rows.append(html_row)
    return md_rows, html_rows, ghead


def _example(bc):
    """(CaseChange, position) that shows ``bc`` with the fewest elements: a member with an
    elementwise output and a changed element if there is one, else the first member.  A
    change of warnings is shown by a float32/float64 member (whose backward runs on every
    release, so the warning can appear)."""
    from .. import findings as findings_mod

    members = bc.cases
    if bc.phase == findings_mod.WARNINGS:
        members = [ch for ch in bc.cases if "/float32/" in ch.case_id or "/float64/" in ch.case_id] or bc.cases
    for ch in members:
        if ch.positions and "/none/" in ch.case_id:
            return ch, ch.positions[0]
    return members[0], None


def _repro_lines(case, phase: str, position) -> list:
    """At most 10 lines of Python showing the change: the case's call on one element
    (elementwise outputs) or on its whole inputs."""
    from ..inputs import call_inputs

    ci = call_inputs(case)
    first, second = ci.first, ci.second
    if position is not None:
        a, b = np.broadcast_arrays(first, second)
        first, second = a.reshape(-1)[[position]], b.reshape(-1)[[position]]
    grad = phase in ("grad_input", "grad_target")
    rg = ", requires_grad=True" if grad else ""
    lines = [
        "import torch",
        'nan, inf = float("nan"), float("inf")',
        f"x = torch.tensor({_literal(first, case.dtype)}, dtype=torch.{case.dtype}{rg})  # input",
        f"t = torch.tensor({_literal(second, case.dtype)}, dtype=torch.{case.dtype}{rg})  # target",
    ]
    lines.append(f"loss = {call_text(case, 'x', 't')}")
    if grad:
        lines.append("loss.backward(torch.ones_like(loss))")
        lines.append(f"print({'x' if phase == 'grad_input' else 't'}.grad)")
    else:
        lines.append("print(loss)")
    return lines


def _phase_text(row, phase: str, position) -> str:
    from .. import phases as phases_mod

    if row is None:
        return "?"
    if phase == "warnings":
        return "; ".join(row["warnings"]) or "no warning"
    p = phases_mod.BY_NAME[phase]
    err = (row["errors"] or {}).get(phase) if isinstance(row["errors"], dict) else None
    if err:
        return visible(err.split("\n")[0])[:200]
    t = (
        row["output"]
        if p.grad_of is None
        else (row["grads"] or {}).get(p.grad_of)
        if isinstance(row["grads"], dict)
        else None
    )
    if not isinstance(t, dict):
        return "no value"
    vals = t["values"]
    if position is not None and position < len(vals):
        return fmt_float(vals[position])
    return fmt_values(t["shape"], vals)


def sec_behaviour(d: ReportData) -> Section:
    """Behaviour changes between consecutive releases, each with its reproduction."""
    from .. import findings as findings_mod
    from .. import reproductions

    b = d.behaviour
    matching = d.explained
    run_snippets = reproductions.load()
    frame_by = {}
    if len(d.frame):
        for i, key in enumerate(zip(d.col("id"), d.col("release"), d.col("device"))):
            frame_by[key] = i
    intro = (
        "Every phase of every case is compared between consecutive tested releases on the same device: the class "
        "of every element (finite, 0, -0, inf, -inf, nan), the exception and its message, the warnings. Changed "
        "cases are grouped by release, phase and what changed; each group is one behaviour change below, with the "
        "cases it covers, a reproduction sliced to the fewest elements, what the case recorded on both sides and "
        "the upstream reason where it is known. Value drift within tolerance is listed separately."
    )
    md, h, data = [md_escape(intro)], [f"<p>{esc(intro)}</p>"], []
    if not b.changes:
        md.append("No behaviour changes between consecutive tested releases.")
        h.append("<p>No behaviour changes between consecutive tested releases.</p>")
    summary_rows = []
    for k, bc in enumerate(b.changes):
        expl = matching.explained.get(k) if matching is not None else None
        summary_rows.append(
            [
                str(k + 1),
                bc.since,
                bc.previous,
                bc.device,
                bc.title,
                str(bc.count),
                bc.direction,
                "explained" if expl else "unexplained",
            ]
        )
    if summary_rows:
        sh = ["#", "since", "last without", "device", "behaviour change", "cases", "direction", "reason"]
        md.append(md_table(sh, summary_rows))
        h.append(
            html_table(
                sh,
                [
                    r[:4] + [Raw(f'<a href="#{esc(bc.key)}">{esc(r[4])}</a>')] + r[5:]
                    for r, bc in zip(summary_rows, b.changes)
                ],
                "changes",
            )
        )
    for k, bc in enumerate(b.changes):
        expl = matching.explained.get(k) if matching is not None else None
        ch, pos = _example(bc)
        case = d.cases[ch.case_id]
        lines = _repro_lines(case, _snippet_phase(d, bc, ch), pos)
        before = after = "?"
        for rel, which in ((bc.previous, "before"), (bc.since, "after")):
            i = frame_by.get((ch.case_id, rel, bc.device))
            text = _phase_text(d.frame.iloc[i], bc.phase, pos) if i is not None else "not run"
            if which == "before":
                before = text
            else:
                after = text
        scope_text = "; ".join(f"{a}: {', '.join(_axis_text(v) for v in vals)}" for a, vals in bc.scope.items() if vals)
        facts = [
            ("since", f"{bc.since} (last release without it: {bc.previous}), {bc.device}"),
            ("cases", f"{bc.count}, {bc.direction}"),
            ("phases", ", ".join(findings_mod.PHASE_LABEL[p] for p in bc.phases_seen)),
            ("domain", ", ".join(bc.scopes)),
            ("covers", scope_text),
        ]
        if bc.also:
            also = "; ".join(f"{findings_mod.PHASE_LABEL[ph]}: {f} → {t} ({n})" for ph, f, t, n in bc.also[:4])
            facts.append(("also", also))
        if expl:
            refs = ", ".join(_upstream_text(u) for u in expl.upstream)
            facts.append(("why", f"{expl.explanation} ({refs})"))
        else:
            facts.append(("why", "unexplained: no entry in cases/explanations.yaml matches this change"))
        shown = f"{bc.previous}: {before}\n{bc.since}: {after}"
        committed = run_snippets.get(bc.key)
        printed = {rel: _printed(d, bc.key, rel, bc.device, lines) for rel in (bc.previous, bc.since)}
        if committed is None or committed.get("code") != lines:
            printed_text = (
                "this snippet has not been run in the releases yet (python -m harness reproductions, then nox)"
            )
            printed = {}
        elif None in printed.values():
            missing = ", ".join(rel for rel, p in printed.items() if p is None)
            printed_text = f"not run yet in {missing}"
            printed = {rel: p for rel, p in printed.items() if p is not None}
        else:
            printed_text = f"{bc.previous}: {printed[bc.previous]}\n{bc.since}: {printed[bc.since]}"
        md.append(f'<a id="{esc(bc.key)}"></a>\n\n### {k + 1}. {md_escape(bc.title)}')
        md.append("\n".join(f"- **{md_escape(a)}**: {md_escape(b_)}" for a, b_ in facts))
        recorded = f"- {md_escape(bc.previous)}: {md_escape(before)}\n- {md_escape(bc.since)}: {md_escape(after)}"
        code = "\n".join(lines)  # numbers and names only: nothing from the results
        prints = "\n".join(f"- {md_escape(x)}" for x in printed_text.split("\n"))
        md.append(
            f"```python\n{code}\n```\n\nPrinted by this snippet, run by each release's worker:\n\n{prints}\n\n"
            f"Recorded by case {md_escape(ch.case_id)}:\n\n{recorded}"
        )
        dl = "".join(f"<dt>{esc(a)}</dt><dd>{esc(b_)}</dd>" for a, b_ in facts)
        h.append(
            f'<div class="case" id="{esc(bc.key)}"><h3>{k + 1}. {esc(bc.title)}</h3><dl>{dl}</dl>'
            f"<pre>{esc(chr(10).join(lines))}</pre><p>Printed by this snippet, run by each release's worker:</p>"
            f"<pre>{esc(printed_text)}</pre><p>Recorded (case <code>{esc(ch.case_id)}</code>):</p>"
            f"<pre>{esc(shown)}</pre></div>"
        )
        data.append(
            {
                "key": bc.key,
                "title": bc.title,
                "since": bc.since,
                "previous": bc.previous,
                "device": bc.device,
                "phase": bc.phase,
                "from": bc.from_,
                "to": bc.to,
                "where": list(bc.where),
                "cases": bc.count,
                "direction": bc.direction,
                "phases": list(bc.phases_seen),
                "scopes": list(bc.scopes),
                "covers": {a: [_axis_text(v) for v in vals] for a, vals in bc.scope.items()},
                "also": [{"phase": ph, "from": f, "to": t, "cases": n} for ph, f, t, n in bc.also],
                "explained": bool(expl),
                "explanation": expl.explanation if expl else None,
                "upstream": [{"kind": u.kind, "id": u.id, "url": u.url} for u in expl.upstream] if expl else [],
                "reproduction": lines,
                "example": ch.case_id,
                "recorded": {bc.previous: before, bc.since: after},
                "printed": printed,
                "case_ids": [c.case_id for c in bc.cases],
            }
        )
    stale_expl = _stale_explanations(b.changes, matching)
    if stale_expl:
        stale = "; ".join(f"{e.since} {e.phase}: {e.from_} → {e.to}" for e in stale_expl)
        md.append(md_escape(f"Stale explanations (they match no observed change): {stale}"))
        h.append(f'<p class="note">Stale explanations (they match no observed change): {esc(stale)}</p>')
    drift_rows = [
        [x.since, x.previous, x.device, str(x.cases), f"{x.max_ulps:g}", ", ".join(x.dtypes), ", ".join(x.phases)]
        for x in b.drift
    ]
    dh = ["since", "previous", "device", "cases", "largest (ulp)", "dtypes", "phases"]
    md.append("### Drift within tolerance\n\n" + (md_table(dh, drift_rows) if drift_rows else "None."))
    h.append(
        "<h3>Drift within tolerance</h3>" + (html_table(dh, drift_rows, "small") if drift_rows else "<p>None.</p>")
    )
    summary = {
        "changes": data,
        "drift": [
            {
                "since": x.since,
                "previous": x.previous,
                "device": x.device,
                "cases": x.cases,
                "max_ulps": x.max_ulps,
                "dtypes": list(x.dtypes),
                "phases": list(x.phases),
            }
            for x in b.drift
        ],
        "unexplained": [
            b.changes[i].key for i in (matching.unexplained if matching is not None else range(len(b.changes)))
        ],
        "stale_explanations": [f"{e.since} {e.phase}: {e.from_} -> {e.to}" for e in stale_expl],
    }
    return Section("behaviour", "Behaviour changes", "\n\n".join(md), "".join(h), summary)


def _stale_explanations(changes, matching) -> list:
    """Explanations that match no behaviour change, neither its primary transition nor one
    that rode along ('also')."""
    if matching is None:
        return []
    seen = {(bc.since, ph, f, t) for bc in changes for ph, f, t, _ in bc.also}
    return [e for e in matching.stale if (e.since, e.phase, e.from_, e.to) not in seen]


def reproduction_snippets(d: ReportData) -> dict:
    """{change key: snippet} for every behaviour change (harness.reproductions' format)."""

    out = {}
    for bc in d.behaviour.changes:
        ch, pos = _example(bc)
        out[bc.key] = {
            "title": bc.title,
            "since": bc.since,
            "previous": bc.previous,
            "case": ch.case_id,
            "code": _repro_lines(d.cases[ch.case_id], _snippet_phase(d, bc, ch), pos),
        }
    return out


def _snippet_phase(d: ReportData, bc, ch) -> str:
    """The phase a reproduction computes: the change's own; for a change of warnings, the
    backward too when the case has gradients (warnings such as a resized output come from it)."""
    from .. import findings as findings_mod

    if bc.phase != findings_mod.WARNINGS:
        return bc.phase
    return "grad_input" if d.cases[ch.case_id].family.grad else "forward"


def _printed(d: ReportData, key: str, release: str, device: str = "cpu", code=None) -> str | None:
    """What the reproduction snippet of ``key`` printed when run by a release's worker
    (only a run of exactly ``code``, when given: its input digest must match)."""
    from .. import reproductions
    from ..inputs import input_digest

    digest = input_digest(reproductions.plan_entries({key: {"code": code}})[0]) if code is not None else None
    for r in d.snippets:
        if r.get("id") == reproductions.PREFIX + key and r.get("release") == release and r.get("device") == device:
            if digest is not None and r.get("digest") != digest:
                continue  # a run of an older version of the snippet
            if r.get("error"):
                err = r["error"]
                return visible(
                    f"{err.get('type')}: {str(err.get('message')).splitlines()[0] if err.get('message') else ''}"
                )
            text = " ".join(line.strip() for line in r.get("printed") or []) or "(printed nothing)"
            warned = [f"{w.get('category')}: {str(w.get('message'))[:300]}" for w in r.get("warnings") or []]
            return visible(text + "".join(f" [warns {w}]" for w in warned))
    return None


def _upstream_text(ref) -> str:
    """An upstream reference (harness.explanations.Ref) as text with its address."""
    label = {"pr": "PR", "issue": "issue", "commit": "commit"}[ref.kind]
    ident = f"#{ref.id}" if ref.kind != "commit" else str(ref.id)[:12]
    return f"{label} {ident} <{ref.url}>"


SECTIONS: list[Callable[[ReportData], Section | None]] = [
    sec_glance,
    sec_behaviour,
    sec_headline,
    sec_matrix,
    sec_claims,
    sec_cuda_vs_cpu,
    sec_warnings,
    sec_pitfalls,
    sec_environment,
    sec_cases,
]


# ------------------------------------------------------------------ assembly

CSS = """
body{font:14px/1.45 "DejaVu Sans",system-ui,sans-serif;margin:0 1.5em 4em;color:#1b1b1b;background:#fff}
h1{font-size:1.55em;margin:.6em 0 .2em}h2{border-bottom:2px solid #ddd;margin-top:1.6em;padding-top:.3em}
h3{margin:1em 0 .3em}nav a{margin-right:1em}[hidden]{display:none!important}
table{border-collapse:collapse;margin:.4em 0}th,td{border:1px solid #ccc;padding:2px 6px;vertical-align:top;
text-align:left}th{background:#f1f3f5}.wrap{overflow-x:auto;max-width:100%}
code,pre{font-family:"DejaVu Sans Mono",monospace;font-size:12px}pre{background:#f6f8fa;border:1px solid #ddd;
padding:8px;overflow-x:auto;white-space:pre;margin:.4em 0}
.muted{color:#666}.note{background:#f6f8fa;border-left:4px solid #999;padding:4px 8px}
.v{display:inline-block;min-width:1.2em;text-align:center;border-radius:3px;padding:0 3px;font-weight:bold;
white-space:nowrap}
%(verdicts)s
.nr{color:#999;background:#fafafa}
.st{font-weight:bold;padding:0 4px;border-radius:3px}.st-good{background:#66bb6a}.st-meh{background:#dcedc8}
.st-warn{background:#ffb74d}.st-bad{background:#d32f2f;color:#fff}.st-nr{background:#eee;color:#777}
.matrix td{text-align:center;white-space:nowrap;font-size:12px;min-width:2.6em}.matrix th{white-space:nowrap}
.matrix tr.axis th{background:#e3e7ea;text-align:left}.matrix tbody th,.matrix thead th:first-child{position:sticky;
left:0;z-index:1}
.cols{display:flex;flex-wrap:wrap;gap:2em;align-items:flex-start}.small td{font-size:12px}
details{margin:3px 0}summary{cursor:pointer}details.fg>summary{padding:2px 4px;background:#f6f8fa}
details.fam{border:1px solid #ddd;margin:4px 0}details.fam>*:not(summary){margin-left:1em}
.case{border-left:3px solid #bbb;padding-left:8px;margin:4px 0 10px}.case dl{display:grid;
grid-template-columns:max-content 1fr;gap:1px 10px;margin:.3em 0}.case dt{font-weight:bold}.case dd{margin:0}
.tl{margin-left:.8em;font-size:12px}.arrow{display:inline-block;width:1em}.dir-worse .arrow{color:#c62828}
.dir-better .arrow{color:#2e7d32}
#filters{position:sticky;top:0;z-index:5;background:#fffbe6;border:1px solid #e0d080;padding:6px 8px;
display:flex;flex-wrap:wrap;gap:4px 12px;align-items:center;font-size:13px}#fstatus{font-weight:bold}
td{max-width:60em;overflow-wrap:break-word}.cid{overflow-wrap:normal;word-break:normal}
"""
CSS = CSS.replace("%(verdicts)s", verdicts.css())  # the badge colours, from the verdict table

SCRIPT = """
(function () {
  var form = document.getElementById('filters');
  if (!form) { return; }
  form.hidden = false;
  var AX = form.getAttribute('data-axes').split(' ');
  var RELS = form.getAttribute('data-releases').split(' '), DEVS = form.getAttribute('data-devices').split(' ');
  var items = Array.prototype.map.call(document.querySelectorAll('.f'), function (e) {
    var t = (e.getAttribute('data-t') || '').split(' ').filter(Boolean).map(function (s) {
      var p = s.split(':'), r = p[1].split('-');
      return [+p[0], +r[0], +(r.length > 1 ? r[1] : r[0]), p[2]];
    });
    return {e: e, a: (e.getAttribute('data-a') || '').split('|'), t: t,
            id: (e.getAttribute('data-id') || '').toLowerCase()};
  });
  var groups = document.querySelectorAll('.fg');
  function val(n) { var x = form.elements.namedItem(n); return x ? x.value : ''; }
  function apply() {
    var v = val('verdict'), r = val('release'), d = val('device'), q = val('q').toLowerCase();
    var ax = AX.map(val), shown = 0;
    var active = v || r || d || q || ax.some(Boolean);
    var ri = r === '' ? -1 : RELS.indexOf(r), di = d === '' ? -1 : DEVS.indexOf(d);
    items.forEach(function (it) {
      var ok = true, i;
      for (i = 0; ok && i < AX.length; i++) { if (ax[i] && it.a[i] !== ax[i]) { ok = false; } }
      if (ok && q && it.id.indexOf(q) < 0) { ok = false; }
      if (ok && (v || r || d)) {
        ok = it.t.some(function (t) {
          return (di < 0 || t[0] === di) && (ri < 0 || (t[1] <= ri && ri <= t[2])) && (!v || t[3] === v);
        });
      }
      it.e.hidden = !ok;
      if (ok) { shown++; }
    });
    Array.prototype.forEach.call(groups, function (g) {
      var n = g.querySelectorAll('.f:not([hidden])').length, c = g.querySelector('.fc');
      g.hidden = n === 0;
      if (c) { c.textContent = n; }
    });
    document.getElementById('fstatus').textContent =
      active ? shown + ' of ' + items.length + ' case rows match' : items.length + ' case rows';
  }
  function save() {
    var parts = [];
    Array.prototype.forEach.call(form.elements, function (x) {
      if (x.name && x.value) { parts.push(x.name + '=' + encodeURIComponent(x.value)); }
    });
    try { history.replaceState(null, '', parts.length ? '#f:' + parts.join('&') : location.pathname); } catch (e) {}
  }
  // a filtered view can be linked: index.html#f:verdict=nan&dtype=float16
  if (location.hash.indexOf('#f:') === 0) {
    location.hash.slice(3).split('&').forEach(function (kv) {
      var i = kv.indexOf('='), x = form.elements.namedItem(kv.slice(0, i));
      if (i > 0 && x) { x.value = decodeURIComponent(kv.slice(i + 1)); }
    });
  }
  form.addEventListener('change', function () { apply(); save(); });
  form.addEventListener('input', apply);
  form.addEventListener('reset', function () { setTimeout(function () { apply(); save(); }, 0); });
  apply();
})();
"""


def _filters_html(d: ReportData) -> str:
    def select(name, label, options):
        opts = '<option value="">any</option>' + "".join(
            f'<option value="{esc(v)}">{esc(t)}</option>' for v, t in options
        )
        return f'<label>{esc(label)} <select name="{esc(name)}">{opts}</select></label>'

    parts = [
        "<b>Filter cases</b>",
        select("verdict", "verdict", [(v.name, f"{v.symbol} {v.name}") for v in verdicts.TABLE]),
        select("release", "in release", [(r, r) for r in d.data_releases]),
        select("device", "on device", [(x, x) for x in d.data_devices]),
    ]
    for axis in AXES:
        vals = _axis_order(d, axis, {a[AXES.index(axis)] for a in d.case_axes.values()})
        parts.append(select(axis, axis, [(v, v) for v in vals]))
    parts.append('<label>id contains <input name="q" type="search" size="18"></label>')
    parts.append(
        '<button type="reset">reset</button><span id="fstatus"></span>'
        '<span class="muted">(applies to the Cases section; the view can be linked)</span>'
    )
    return (
        f'<form id="filters" hidden onsubmit="return false" data-axes="{esc(" ".join(AXES))}" '
        f'data-releases="{esc(" ".join(d.releases))}" '
        f'data-devices="{esc(" ".join(d.devices))}">' + "".join(parts) + "</form>"
        '<noscript><p class="note">The filters need JavaScript. With scripts off every case is listed and the '
        "collapsible parts still open and close.</p></noscript>"
    )


def _header(d: ReportData) -> tuple[str, str]:
    n = len(d.frame)
    rels = d.data_releases
    span = f"{rels[0]} to {rels[-1]}" if rels else "none"
    line = (
        f"{n} results from {len(d.files)} results files: {len(rels)} of {len(d.releases)} releases have "
        f"results ({span}); devices with results: {', '.join(d.data_devices) or 'none'}; "
        f"{len(d.cases)} cases in the case files."
    )
    legend_md = " · ".join(f"{md_badge(v.name)} {v.name}: {v.meaning}" for v in verdicts.TABLE)
    files = (
        "The full report, with every changed case, per-case detail and filters, is [index.html](index.html) "
        "(one self-contained file: download it and open it in a browser); the same findings for machines are in "
        "[summary.json](summary.json)."
    )
    md = f"# {TITLE}\n\n{md_escape(line)}\n\n{files}\n\nVerdicts: {md_escape(legend_md)}"
    legend_html = "".join(f"<li>{badge(v.name)} <b>{esc(v.name)}</b>: {esc(v.meaning)}</li>" for v in verdicts.TABLE)
    h = (
        f"<h1>{esc(TITLE)}</h1><p>{esc(line)}</p><details><summary>Verdicts: colours and symbols</summary>"
        f'<ul>{legend_html}<li><span class="v nr">·</span> not run</li></ul></details>'
    )
    return md, h


def render(d: ReportData, sections=None) -> dict:
    """Assemble the report: {'README.md': str, 'index.html': str, 'summary.json': str}."""
    built = [s for s in (fn(d) for fn in (sections if sections is not None else SECTIONS)) if s is not None]
    md_head, html_head = _header(d)
    toc = " ".join(f'<a href="#{esc(s.key)}">{esc(s.title)}</a>' for s in built)
    md = [md_head, ""]
    md += [f"- [{md_escape(s.title)}](#{s.key})" for s in built if s.markdown]
    for s in built:
        if s.markdown:
            md += ["", f'<a id="{esc(s.key)}"></a>', "", f"## {md_escape(s.title)}", "", s.markdown.rstrip()]
    body = [html_head, f"<nav>{toc}</nav>", _filters_html(d)]
    body += [f'<section id="{esc(s.key)}"><h2>{esc(s.title)}</h2>{s.html}</section>' for s in built]
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(TITLE)}</title><style>{CSS}</style></head><body>\n"
        + "\n".join(body)
        + f"\n<script>{SCRIPT}</script>\n</body></html>\n"
    )
    summary = {
        "title": TITLE,
        "schema": 1,
        "releases": d.releases,
        "releases_with_results": d.data_releases,
        "devices": d.devices,
        "results": len(d.frame),
        "cases": len(d.cases),
    }
    for s in built:
        summary[s.key] = s.data
    text = json.dumps(_json_safe(summary), indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False)
    return {"README.md": "\n".join(md) + "\n", "index.html": page, "summary.json": text + "\n"}


README_BEGIN = "<!-- findings:begin (generated by python -m harness report --readme README.md; do not edit) -->"
README_END = "<!-- findings:end -->"


def readme_excerpt(summary: dict, link: str = "reports/README.md") -> str:
    """The project README's findings, generated from a report's summary.json data."""
    rows = summary["glance"]["releases"]
    lines = []
    for dev in sorted({r["device"] for r in rows}, key=device_key):
        mine = [r for r in rows if r["device"] == dev]
        ok = [r["release"] for r in mine if r["status"] in ("ok", "limited")]
        others = [f"{r['release']}: {r['status']}" for r in mine if r["status"] not in ("ok", "limited")]
        limited = [r["release"] for r in mine if r["status"] == "limited"]
        text = f"- **{md_escape(dev)}**: correct usage matches the reference on {len(ok)} of {len(mine)} releases"
        if limited:
            text += f" (some dtypes or gradients not implemented on {md_escape(', '.join(limited))})"
        if others:
            text += f"; {md_escape(', '.join(others))}"
        lines.append(text + ".")
    changes = summary["behaviour"]["changes"]
    lines.append("")
    lines.append(f"{len(changes)} behaviour changes between consecutive releases ([all of them]({link}#behaviour)):")
    lines.append("")
    for c in changes:
        why = "explained" if c["explained"] else "*unexplained*"
        lines.append(
            f"- **{md_escape(c['since'])}** ({md_escape(c['device'])}, last without: {md_escape(c['previous'])}): "
            f"{md_escape(c['title'])}: {c['cases']} cases, {c['direction']}; {why}"
        )
    return "\n".join([README_BEGIN, *lines, README_END])


def update_readme(path, excerpt: str) -> bool:
    """Replace the generated block of a README (between README_BEGIN and README_END);
    False when the file has no such block."""
    path = Path(path)
    text = path.read_text()
    start, end = text.find(README_BEGIN), text.find(README_END)
    if start < 0 or end < start:
        return False
    path.write_text(text[:start] + excerpt + text[end + len(README_END) :])
    return True


def write_report(results_paths, out_dir, case_paths=None, expected_releases=None, explanations_path=None) -> dict:
    """Load, render and write the three files (all rendered before any is written: bad
    input leaves the old report as it was); returns {name: (path, bytes, ReportData)}."""
    d = load(results_paths, case_paths, expected_releases)
    d.explanations_path = explanations_path
    files = render(d)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, text in files.items():
        path = out / name
        data = text.encode("utf-8")
        path.write_bytes(data)
        written[name] = (path, len(data))
    return {"files": written, "data": d}
