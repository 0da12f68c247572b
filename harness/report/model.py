"""The report's data model: every results file read and judged (harness.evaluation),
one verdict frame, and the views the sections draw on (built once, on demand)."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from itertools import compress
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from .. import tensors, verdicts
from ..evaluate import COLUMNS as EVAL_COLUMNS
from ..memo import Memo
from ..versions import release_key, release_of
from .text import STANDARD_DEVICES, device_key, fmt_output

PROBLEMS = verdicts.PROBLEMS  # verdicts that are a defect or a doubt
NOT_RUN = "not run"
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
    # what makes a results file unusable, one line each with its full path (and line): a
    # report made from them would not be the whole story (write_report refuses it)
    problems: list = field(default_factory=list)
    snippets: list = field(default_factory=list)  # records of the published claims' snippets
    evaluation: object = field(default=None, repr=False)  # the harness.evaluation.Evaluation that judged frame
    explanations_path: Path | None = None  # default: harness.explanations.EXPLANATIONS_PATH
    memo: dict = field(default_factory=dict, init=False, repr=False)  # views the layers above compute once
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

        return findings.compute_cached(self.frame, self.cases, self.evaluation, key=self.findings_key)

    @cached_property
    def findings_key(self) -> str | None:
        """harness.findings.cache_key of this data (the findings' and the rendered report's
        cache key start from it), made once."""
        from .. import findings

        return findings.cache_key(self.frame, self.cases, self.evaluation)

    @cached_property
    def explained(self):
        """The explanations matched to the behaviour changes (harness.explanations.Matching),
        or None where the explanations file is absent."""
        from .. import explanations, findings

        path = Path(self.explanations_path or explanations.EXPLANATIONS_PATH)
        if not path.exists():
            return None
        entries = explanations.load(path)
        refused = findings.check_explanations(self.behaviour, entries, self.cases)
        return explanations.match(entries, self.behaviour.changes, refused)

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
        changed = Counter(
            (since, dev) for _, dev, since in {(ch.case_id, ch.device, ch.since) for ch in self.behaviour.case_changes}
        )
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
                        cell["changed"] = int(changed.get((rel, dev), 0))
                cell["status"] = _status(n, c, expected, files, recorded, valid_counts.get((rel, dev), {}))
                out[(rel, dev)] = cell
        return out

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

    def rows_of(self, ids) -> list:
        """Positions in ``frame`` of the rows of the cases ``ids``, in frame order (a section
        that shows a few cases indexes their rows only)."""
        if not len(self.frame):
            return []
        return np.flatnonzero(self.frame["id"].isin(set(ids)).to_numpy()).tolist()

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
    good, sources, files, notes, problems = [], [], [], [], []
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
            rf = evaluation.evaluate_file(path, warn=problems.append)  # read and judged, or cached
        except (ResultsError, OSError, UnicodeDecodeError) as exc:
            info["note"] = "unreadable: " + str(exc).replace(str(path), shown)
            files.append(info)
            notes.append(f"{shown}: {info['note']}")
            problems.append(str(exc) if str(path) in str(exc) else f"{path}: {exc}")
            continue
        if not rf.runs:
            problems.append(f"{path}: no results (an empty file: run the release again or remove it)")
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
        problems=problems,
        snippets=snippets,
        evaluation=evaluation,
    )


def _kind(out) -> str | None:
    if out is None:
        return None
    return tensors.kind(out)


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
        key = (tuple(out["shape"]), tensors.bits(out))
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
