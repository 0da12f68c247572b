"""Regression gate: the current results against a committed baseline.

``python -m harness gate --baseline reports/baseline.json`` exits 1, listing each case, when
a case *behaves* differently:

* for a release/device already in the baseline, a case's verdict or behaviour changed, or a
  case in the baseline has no current result;
* a release/device not in the baseline behaves differently from the release before it on
  the same device (the nearest older release among the baseline and the current results).

Behaviour is what harness.findings compares: per phase, what came back (a value, an error, not
implemented, ...), the class of every element (finite, 0, -0, inf, -inf, nan), the exception
type and its normalised message; and the warnings.  A value that moved while all of that
stayed (the verdict too: a passing value is within the dtype's tolerance of the reference)
is *drift*: listed, counted, and a failure only with ``--exact``.

``--update-baseline`` rewrites the baseline from the current results.

Baseline format (JSON, keys sorted, one block per release and device, ordered by release)::

    {"schema": 2, "blocks": [{"release": "2.5", "device": "cpu", "torch": "2.5.1",
                              "cases": {"<case id>": "<verdict> <behaviour> <value>", ...}}, ...]}

Both hashes are the first 12 hex digits of a SHA-256: the behaviour's, and the output's
shape, dtype and values (``-`` where the call returned no output; -0.0 equals 0.0 and every
NaN every other NaN).  A schema 1 baseline (no behaviour hash) is still read: its value
changes then count as behaviour changes.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from . import findings, phases, tensors, verdicts
from .memo import Memo
from .versions import release_key

SCHEMA = 3
SCHEMAS = (1, 2, 3)  # read; SCHEMA written (3: each distinct entry once, each case's entries run-length coded)
HASH_LEN = 12
_H = rf"(?:[0-9a-f]{{{HASH_LEN}}}|-)"
_ENTRY = re.compile(rf"^([a-z][a-z-]*) (?:({_H}) )?({_H})$")  # verdict [behaviour] value
OLDER = "-"  # a snapshot entry's behaviour hash when the record predates a phase (not compared)
REGRESSIONS = ("verdict", "behaviour", "missing")  # change kinds that fail the gate; "drift" only with --exact
MARKDOWN_BUDGET = 900_000  # $GITHUB_STEP_SUMMARY takes at most 1 MiB per step


class BaselineError(Exception):
    """The baseline file is missing or malformed (one line, naming the file)."""


# --- values ------------------------------------------------------------------------------


def _canon(v) -> str:
    v = float(v)
    if math.isnan(v):
        return "nan"
    if v == 0.0:
        return "0"  # -0.0 == 0.0
    return repr(v)  # shortest repr that round-trips: exact


_HASHES = Memo(1 << 20)


def value_hash(output) -> str:
    """Stable hash of a recorded output {shape, dtype, values}; '-' when there is none.
    Computed once per distinct output (shape, dtype and float64 bits)."""
    if not isinstance(output, dict):
        return "-"
    if tensors.is_summary(output):  # its digest stands for its values
        blob = json.dumps([output["shape"], output["dtype"], output["sha256"]])
        return hashlib.sha256(blob.encode()).hexdigest()[:HASH_LEN]
    try:
        vals = output.get("values") or []
        key = (tuple(output.get("shape") or []), output.get("dtype"), struct.pack(f"<{len(vals)}d", *vals))
        hit = _HASHES.get(key)
    except Exception:  # noqa: BLE001 - not plain numbers: hashed as it is
        return _value_hash(output)
    if hit is None:
        hit = _HASHES[key] = _value_hash(output)
    return hit


def _value_hash(output) -> str:
    blob = json.dumps(
        [list(output.get("shape") or []), output.get("dtype"), [_canon(v) for v in output.get("values") or []]],
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:HASH_LEN]


_BEHAVIOURS = Memo(1 << 16)


def behaviour_hash(row) -> str | None:
    """Hash of a verdict row's behaviour (harness.findings' outcome of every phase, without
    the values' bits, and its warnings).  A phase the record does not hold because it was
    made before the phase existed (the second order, harness.phases.not_recorded) is left
    out; when its case has gradients, the row has no behaviour hash (None): its snapshot
    entry says OLDER and the gate does not compare it (its verdict lacks those phases)."""
    parts = []
    for p in phases.PHASES:
        o = findings.outcome(row, p)
        if o.kind == "not run" and phases.not_recorded(p, row.grads, row.errors):
            return None
        parts.append((p.name, o.kind, o.classes, o.error, o.message))
    key = (tuple(parts), tuple(sorted(findings.warnings_outcome(row))))
    hit = _BEHAVIOURS.get(key)
    if hit is None:
        hit = _BEHAVIOURS[key] = hashlib.sha256(repr(key).encode()).hexdigest()[:HASH_LEN]
    return hit


def _split(entry: str) -> tuple:
    """(verdict, behaviour hash or None, value hash) of a baseline entry."""
    m = _ENTRY.match(entry)
    return m.group(1), m.group(2), m.group(3)


# --- snapshots -----------------------------------------------------------------------------


@dataclass
class Block:
    """One release on one device: case id -> '<verdict> <hash>'."""

    release: str
    device: str
    torch: str | None = None
    cases: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)  # current results only, for the listing

    @property
    def label(self) -> str:
        return f"{self.release}/{self.device}"

    def to_json(self) -> dict:
        return {"release": self.release, "device": self.device, "torch": self.torch, "cases": dict(self.cases)}


def _sort_key(key):
    release, device = key
    return release_key(release), device


def snapshot(frame) -> dict:
    """Verdict frame -> {(release, device): Block}.  A case recorded twice keeps its last row."""
    blocks: dict = {}
    cols = ["id", "device", "release", "torch", "status", "verdict", *phases.NAMES, "output", "grads", "errors"]
    cols.append("warnings")
    for row in frame[cols].itertuples(index=False):
        key = (str(row.release), str(row.device))
        block = blocks.get(key)
        if block is None:
            block = blocks[key] = Block(*key, torch=row.torch if isinstance(row.torch, str) else None)
        output = row.output if isinstance(row.output, dict) else None
        behaviour = behaviour_hash(row)
        block.cases[row.id] = f"{row.verdict} {OLDER if behaviour is None else behaviour} {value_hash(output)}"
        block.outputs[row.id] = output
    return blocks


def dumps(blocks: dict) -> str:
    """Schema 3: the blocks (release, device, torch) in order; each distinct entry once
    ('entries', sorted); per case, its entry in each block in block order, run-length
    coded as 'INDEX*COUNT' words ('-' for a block without the case).  Most cases behave
    alike on many consecutive releases: a few words each, whatever the number of releases."""
    ordered = [blocks[k] for k in sorted(blocks, key=_sort_key)]
    entries = sorted({e for b in ordered for e in b.cases.values()})
    number = {e: str(i) for i, e in enumerate(entries)}
    cases = {}
    for cid in sorted({c for b in ordered for c in b.cases}):
        words, last, count = [], None, 0
        for b in ordered:
            e = b.cases.get(cid)
            code = "-" if e is None else number[e]
            if code == last:
                count += 1
                continue
            if last is not None:
                words.append(f"{last}*{count}")
            last, count = code, 1
        words.append(f"{last}*{count}")
        cases[cid] = " ".join(words)
    data = {
        "schema": SCHEMA,
        "blocks": [{"release": b.release, "device": b.device, "torch": b.torch} for b in ordered],
        "entries": entries,
        "cases": cases,
    }
    return json.dumps(data, indent=0, sort_keys=True) + "\n"


def _expand(data: dict, bad) -> list:
    """Schema 3 -> the schema 1/2 list of blocks with their 'cases' objects."""
    entries, raw_blocks, cases = data.get("entries"), data.get("blocks"), data.get("cases")
    if not isinstance(entries, list) or not isinstance(cases, dict) or not isinstance(raw_blocks, list):
        raise bad("schema 3 needs 'blocks' (a list), 'entries' (a list) and 'cases' (an object)")
    out = [dict(b, cases={}) if isinstance(b, dict) else b for b in raw_blocks]
    for cid, text in cases.items():
        k = 0
        for word in str(text).split():
            code, star, count = word.partition("*")
            if not star or not count.isdigit() or not (code == "-" or (code.isdigit() and int(code) < len(entries))):
                raise bad(f"case {cid!r}: expected 'INDEX*COUNT' words, got {word!r}")
            for _ in range(int(count)):
                if k >= len(out):
                    raise bad(f"case {cid!r}: more entries than blocks")
                if code != "-" and isinstance(out[k], dict):
                    out[k]["cases"][cid] = entries[int(code)]
                k += 1
    return out


def write_baseline(path, blocks: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(blocks))


def load_baseline(path) -> dict:
    """Read and validate a baseline; BaselineError (one line, naming the file) on any problem."""
    path = Path(path)
    if not path.is_file():
        raise BaselineError(
            f"baseline {path} not found; create it with 'python -m harness gate --update-baseline --baseline {path}'"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BaselineError(f"baseline {path}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise BaselineError(f"baseline {path}: cannot read ({exc})") from None

    def bad(msg):
        return BaselineError(f"baseline {path}: {msg}")

    if not isinstance(data, dict) or data.get("schema") not in SCHEMAS:
        got = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise bad(f"expected a JSON object with schema {SCHEMA}, got {got!r}")
    if not isinstance(data.get("blocks"), list):
        raise bad("'blocks' must be a list")
    raw_blocks = _expand(data, bad) if data["schema"] == 3 else data["blocks"]
    blocks = {}
    for i, raw in enumerate(raw_blocks):
        if not isinstance(raw, dict) or not all(isinstance(raw.get(k), str) for k in ("release", "device")):
            raise bad(f"blocks[{i}] needs string 'release' and 'device'")
        if raw.get("torch") is not None and not isinstance(raw["torch"], str):
            raise bad(f"blocks[{i}] ({raw['release']}/{raw['device']}): 'torch' must be a string")
        cases = raw.get("cases")
        if not isinstance(cases, dict):
            raise bad(f"blocks[{i}] ({raw['release']}/{raw['device']}): 'cases' must be an object")
        for case_id, entry in cases.items():
            match = _ENTRY.match(entry) if isinstance(entry, str) else None
            if match is None or match.group(1) not in verdicts.BY_NAME:
                raise bad(
                    f"blocks[{i}] ({raw['release']}/{raw['device']}): case {case_id!r}: "
                    f"expected '<verdict> <behaviour> <value>' (hashes of {HASH_LEN} hex digits or -) with a "
                    f"verdict among {', '.join(verdicts.NAMES)}, got {entry!r}"
                )
        key = (raw["release"], raw["device"])
        if key in blocks:
            raise bad(f"blocks[{i}]: {key[0]}/{key[1]} appears twice")
        blocks[key] = Block(*key, torch=raw.get("torch"), cases=dict(cases))
    return blocks


# --- comparison ----------------------------------------------------------------------------


@dataclass
class Change:
    case_id: str
    kind: str  # "verdict", "behaviour", "missing" (REGRESSIONS) or "drift"
    old: str
    new: str | None = None
    old_output: dict | None = None
    new_output: dict | None = None

    def what(self) -> str:
        old_v = self.old.split(" ")[0]
        if self.kind == "missing":
            return f"{old_v} in the baseline, no current result"
        new_v = self.new.split(" ")[0]
        if self.kind == "verdict":
            return f"{old_v} -> {new_v}"
        text = f"{'behaviour' if self.kind == 'behaviour' else 'value drifted'} ({new_v})"
        if self.old_output is not None:
            text += f", was {_short(self.old_output)}"
        if self.new_output is not None:
            text += f", now {_short(self.new_output)}"
        return text

    def describe(self) -> str:
        return f"{self.case_id}: {self.what()}"

    def ulps(self) -> float | None:
        """How far the values moved, in units in the last place of their dtype (the largest
        over the elements finite on both sides); None where the old values are not known
        (a baseline file keeps hashes only) or either side is a summary."""
        a, b = self.old_output, self.new_output
        if not (isinstance(a, dict) and isinstance(b, dict)) or tensors.is_summary(a) or tensors.is_summary(b):
            return None
        import numpy as np

        x = np.asarray(a.get("values") or [], dtype=np.float64)
        y = np.asarray(b.get("values") or [], dtype=np.float64)
        if x.shape != y.shape or b.get("dtype") not in tensors.MANTISSA_BITS:
            return None
        both = np.isfinite(x) & np.isfinite(y)
        return float(tensors.ulps(y[both], x[both], b["dtype"]).max()) if both.any() else 0.0


def _short(output: dict, n: int = 4) -> str:
    if tensors.is_summary(output):
        return tensors.describe(output)
    values = output.get("values") or []
    shown = ", ".join(repr(float(v)) for v in values[:n]) + (f", ... ({len(values)} values)" if len(values) > n else "")
    return shown if output.get("shape") == [] else f"[{shown}]"


@dataclass
class BlockResult:
    block: Block
    status: str  # "baseline": compared with its baseline; "new": with the release before it;
    #              "first": new, nothing older to compare with; "not-run": baseline only
    against: Block | None = None
    against_source: str = ""  # "baseline" or "current"
    compared: int = 0
    added: int = 0  # current cases the reference lacks
    unmatched: int = 0  # reference cases without a current result (new releases: not a failure)
    stale: int = 0  # made from other inputs on one side: not comparable (listed, run them again)
    older: int = 0  # recorded before a phase existed (the double backward) on one side: not comparable
    changes: list = field(default_factory=list)
    exact: bool = False  # drift fails too

    @property
    def regressions(self) -> list:
        return [c for c in self.changes if c.kind in REGRESSIONS or (self.exact and c.kind == "drift")]

    @property
    def drift(self) -> list:
        return [c for c in self.changes if c.kind == "drift"]

    @property
    def failed(self) -> bool:
        return bool(self.regressions)

    def against_text(self) -> str:
        if self.status == "baseline":
            torch = self.against.torch
            return "baseline" + (f" (torch {torch})" if torch and torch != self.block.torch else "")
        if self.status == "new":
            return f"{self.against.label} (torch {self.against.torch}, {self.against_source}); new release"
        if self.status == "first":
            return "nothing older on this device; new release"
        return "not in the current results"


def _compare_cases(result: BlockResult, ref: Block, cur: Block, missing_fails: bool, ref_outputs: dict) -> None:
    for case_id in sorted(set(ref.cases) | set(cur.cases)):
        old, new = ref.cases.get(case_id), cur.cases.get(case_id)
        if new is None:
            result.unmatched += 1
            if missing_fails:
                result.changes.append(Change(case_id, "missing", old))
            continue
        if old is None:
            result.added += 1
            continue
        (old_v, old_b, old_h), (new_v, new_b, new_h) = _split(old), _split(new)
        if "stale" in (old_v, new_v):  # other inputs than today's plan: nothing to compare
            result.stale += 1
            continue
        if OLDER in (old_b, new_b):  # recorded before a phase existed: its verdict lacks that phase
            result.older += 1
            continue
        result.compared += 1
        if old_v != new_v:
            result.changes.append(Change(case_id, "verdict", old, new))
        elif old_b != new_b and None not in (old_b, new_b):
            result.changes.append(
                Change(case_id, "behaviour", old, new, ref_outputs.get(case_id), cur.outputs.get(case_id))
            )
        elif old_h != new_h:
            kind = "behaviour" if None in (old_b, new_b) else "drift"  # no behaviour hash: exact, as schema 1
            result.changes.append(Change(case_id, kind, old, new, ref_outputs.get(case_id), cur.outputs.get(case_id)))


def compare(baseline: dict, current: dict, exact: bool = False) -> list:
    """Every current block checked, then the baseline blocks with no current results;
    ``exact``: value drift fails too."""
    results = []
    for key in sorted(current, key=_sort_key):
        cur = current[key]
        if key in baseline:
            res = BlockResult(cur, "baseline", baseline[key], "baseline")
            _compare_cases(res, baseline[key], cur, True, baseline[key].outputs)
        else:
            older = [
                k for k in set(baseline) | set(current) if k[1] == key[1] and release_key(k[0]) < release_key(key[0])
            ]
            if not older:
                res = BlockResult(cur, "first")
                res.added = len(cur.cases)
            else:
                prev = max(older, key=_sort_key)
                ref, source = (current[prev], "current") if prev in current else (baseline[prev], "baseline")
                res = BlockResult(cur, "new", ref, source)
                _compare_cases(res, ref, cur, False, ref.outputs)
        res.exact = exact
        results.append(res)
    for key in sorted(set(baseline) - set(current), key=_sort_key):
        results.append(BlockResult(baseline[key], "not-run"))
    return results


# --- output --------------------------------------------------------------------------------


def _counts(res: BlockResult) -> str:
    if res.status == "not-run":
        return f"{len(res.block.cases)} cases not checked"
    if res.status == "first":
        return f"{len(res.block.cases)} cases"
    parts = [f"{res.compared} compared"]
    kinds = {k: sum(c.kind == k for c in res.changes) for k in ("verdict", "behaviour", "missing", "drift")}
    words = {"verdict": "verdict changed", "behaviour": "behaviour changed", "missing": "missing", "drift": "drifted"}
    parts += [f"{n} {words[k]}" for k, n in kinds.items() if n]
    if res.stale:
        parts.append(f"{res.stale} stale (made from other inputs: run them again)")
    if res.older:
        parts.append(f"{res.older} recorded before the double backward was (not compared: run them again)")
    if res.added:
        parts.append(f"{res.added} not in the reference")
    if res.unmatched and res.status == "new":
        parts.append(f"{res.unmatched} of the reference's not run")
    return ", ".join(parts)


def headline(results: list) -> str:
    failed = [r for r in results if r.failed]
    n = sum(len(r.regressions) for r in failed)
    drift = sum(len(r.drift) for r in results)
    drift_text = f"; {drift} case{'s' * (drift != 1)} drifted within tolerance" if drift else ""
    if failed:
        blocks = f"{len(failed)} release/device block{'s' * (len(failed) != 1)}"
        return f"FAILED: {n} case{'s' * (n != 1)} changed in {blocks}{drift_text}"
    checked = sum(r.status != "not-run" for r in results)
    return f"passed: no behaviour changes in {checked} release/device block{'s' * (checked != 1)}{drift_text}"


def drift_summary(results: list) -> str:
    """The value drift within tolerance in a line: how many cases in how many blocks, their
    dtypes, and the largest move in ulps where the old values are known."""
    drifts = [(res, c) for res in results for c in res.drift]
    if not drifts:
        return "no value drift"
    blocks = {res.block.label for res, _ in drifts}
    dtypes = sorted({c.new_output["dtype"] for _, c in drifts if isinstance(c.new_output, dict)})
    ulps = [u for _, c in drifts if (u := c.ulps()) is not None]
    text = (
        f"{len(drifts)} case{'s' * (len(drifts) != 1)} drifted within tolerance in {len(blocks)} "
        f"release/device block{'s' * (len(blocks) != 1)} ({', '.join(dtypes) or 'no dtype'})"
    )
    if ulps:
        text += f"; largest move {max(ulps):.3g} ulp" + ("" if len(ulps) == len(drifts) else f" (of {len(ulps)} known)")
    else:
        text += "; their old values are not in the baseline file (ulps unknown: gate against a results folder)"
    return text


def format_text(results: list, baseline_path, verbose: bool = False) -> str:
    """The verdict first; then every behaviour change (they fail the gate); then the value
    drift in a line (each drifted case with ``verbose``); then a line per release/device."""
    failed = [r for r in results if r.failed]
    lines = [f"gate: {headline(results)}", f"gate: current results against {baseline_path}"]
    if failed:
        lines.append("behaviour changes (they fail the gate):")
        for res in failed:
            lines.append(f"  {res.block.label} vs {res.against_text()}:")
            lines.extend(f"      {c.describe()}" for c in res.regressions)
    lines.append(f"drift (listed, not failed; --exact fails on it): {drift_summary(results)}")
    if verbose:
        for res in results:
            lines.extend(f"      {res.block.label} {c.describe()}" for c in res.drift)
    elif any(r.drift for r in results):
        lines.append("      (each drifted case: --verbose)")
    lines.append("release/device blocks:")
    width = max((len(r.block.label) for r in results), default=0)
    for res in results:
        torch = f"torch {res.block.torch}" if res.block.torch else ""
        mark = "CHANGED" if res.failed else ("ok" if res.status in ("baseline", "new") else "-")
        lines.append(f"  {res.block.label:<{width}}  {torch:<14} vs {res.against_text()}: {_counts(res)}  [{mark}]")
    return "\n".join(lines) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def format_markdown(results: list, baseline_path, budget: int = MARKDOWN_BUDGET) -> str:
    failed = any(r.failed for r in results)
    out = [
        f"## Regression gate: {'❌' if failed else '✅'} {headline(results)}",
        "",
        f"Baseline `{baseline_path}`: each case's verdict and behaviour (per phase: what came back, element "
        "classes, exception and message; warnings); value drift within tolerance is listed, not failed.",
        "",
        "| Release | Device | torch | Compared with | Cases | Changed |",
        "|---|---|---|---|---|---:|",
    ]
    for res in results:
        out.append(
            f"| {res.block.release} | {res.block.device} | {res.block.torch or ''} | "
            f"{_md_escape(res.against_text())} | {_md_escape(_counts(res))} | "
            f"{len(res.regressions) if res.status != 'not-run' else ''} |"
        )
    used = sum(len(line) + 1 for line in out)
    for res in (r for r in results if r.failed):
        out += [
            "",
            f"### {res.block.label}: {len(res.changes)} changed, vs {_md_escape(res.against_text())}",
            "",
            "<details open><summary>cases</summary>",
            "",
        ]
        for i, change in enumerate(res.changes):
            line = f"- `{change.case_id}`: {_md_escape(change.what())}"
            if used + len(line) > budget:
                out.append(f"- ... and {len(res.changes) - i} more (the job log lists every case)")
                break
            out.append(line)
            used += len(line) + 1
        out += ["", "</details>"]
    return "\n".join(out) + "\n"
