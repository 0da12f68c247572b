"""The first answers: one grid of behaviours × releases, and one line per release.

Grid rows, in the order users ask:

* correct usage (the ``valid`` scope) per device, dtype and phase: ✓ every case matches
  the reference, ✗ some fail, – not implemented;
* each behaviour change: its old state up to the last release without it, its new
  state from the first release with it (that cell is marked as the boundary);
* each silent misuse: ✗ where the wrong call returns a number without error or warning.

The cell states are declared once in :data:`STATES` (symbol, meaning, colours); the page's
CSS and legend are made from it.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import NamedTuple

import numpy as np

from .. import axes, phases, tensors, verdicts
from ..versions import release_key
from .base import Cell, Section
from .model import PROBLEMS, ReportData
from .text import device_key, ranges

OK_VERDICTS = ("pass", "expected-error")  # a phase that does what the documentation says


class State(NamedTuple):
    name: str
    symbol: str
    meaning: str
    background: str
    foreground: str
    short: str = ""  # the legend's words


STATES = (
    State("ok", "✓", "matches the reference (or refuses, as documented)", "#1b5e20", "#ffffff", "matches"),
    State("fail", "✗", "some cases fail: an error, nan or a mismatch", "#b71c1c", "#ffffff", "fails"),
    State("limit", "–", "not implemented in this release", "#eceff1", "#263238", "not implemented"),
    State("part", "◐", "works, but some cases are not implemented", "#e8f5e9", "#1b5e20", "partly implemented"),
    State("stale", "↺", "results made from other inputs: run them again", "#f3e5f5", "#4a148c", "stale: run again"),
    State("old", "○", "the behaviour before the change", "#ffffff", "#37474f", "before the change"),
    State("new", "●", "the behaviour after the change", "#0d47a1", "#ffffff", "after the change"),
    State(
        "silent",
        "✗",
        "the wrong call returns a number, without error or warning",
        "#b71c1c",
        "#ffffff",
        "silent misuse",
    ),
    State("warned", "⚠", "the wrong call returns a number, with a warning", "#fff3e0", "#6d3300", "misuse, warned"),
    State("refused", "⊘", "the wrong call is refused with an error", "#1b5e20", "#ffffff", "misuse refused"),
    State("nr", "·", "not run", "#fafafa", "#595959", "not run"),
)
STATE = {s.name: s for s in STATES}


def css() -> str:
    """The grid's cell colours, from STATES."""
    return "\n".join(f".s-{s.name}{{background:{s.background};color:{s.foreground}}}" for s in STATES)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", str(text)).strip("-").lower()


def usage_key(device: str, dtype: str, phase: str) -> str:
    return f"u-{slug(device)}-{dtype}-{phase}"


def misuse_key(reason: str) -> str:
    return "m-" + slug(reason.split(":")[0])


def usage_state(counts: Counter) -> tuple[str, str]:
    """(state, text) of correct usage in one release: every case matches, some fail (how
    many), stale, or not implemented (how many)."""
    n = sum(counts.values())
    if not n:
        return "nr", ""
    bad = sum(counts.get(v, 0) for v in PROBLEMS if v != "stale")
    missing = sum(counts.get(v, 0) for v in verdicts.LIMITS)
    if bad:
        return "fail", f"{bad}/{n}"
    if counts.get("stale", 0):
        return "stale", str(counts["stale"])
    if missing == n:
        return "limit", ""
    if missing:
        return "part", f"{n - missing}/{n}"
    return "ok", ""


def _forward_error(errors) -> bool:
    """The forward raised (a row's errors: phase -> message)."""
    return isinstance(errors, dict) and "forward" in errors


def misuse_outcome(errors, pitfall: bool, warnings) -> str:
    """What a misuse got: refused (the forward raised), same (it happens to give the KL
    meant), warned (a number, with a warning) or silent (a number, neither)."""
    return _misuse_kind(_forward_error(errors), bool(pitfall), bool(warnings))


def _misuse_kind(refused: bool, pitfall: bool, warned: bool) -> str:
    if refused:
        return "refused"
    if not pitfall:
        return "same"
    return "warned" if warned else "silent"


def _misuse_rows(d: ReportData) -> dict:
    """misuse reason (its words before ':') -> (release, device) -> Counter of silent /
    warned / refused / same (the misuse happens to give the KL meant)."""
    from ..evaluate import misuse_reason

    out: dict = {}
    reasons = {cid: misuse_reason(c) for cid, c in d.cases.items()}
    errors, warnings, pitfall = d.col("errors"), d.col("warnings"), d.col("pitfall")
    ids, releases, devices = d.col("id"), d.col("release"), d.col("device")
    rows = np.flatnonzero((d.frame["scope"] == "misuse").to_numpy()).tolist()  # the misuse rows only
    # each distinct (case, release, device, refused, pitfall, warned) once, then counted
    seen = Counter(
        (ids[i], releases[i], devices[i], _forward_error(errors[i]), bool(pitfall[i]), bool(warnings[i])) for i in rows
    )
    for (cid, rel, dev, refused, pit, warned), n in seen.items():
        reason = reasons.get(cid)
        if not reason:
            continue
        kind = _misuse_kind(refused, pit, warned)
        per_step = out.setdefault(reason, {})
        c = per_step.get((rel, dev))
        if c is None:
            c = per_step[(rel, dev)] = Counter()
        c[kind] += n
    return out


def misuse_state(c: Counter) -> tuple[str, str]:
    n = sum(c.values())
    if not n:
        return "nr", ""
    if c["silent"]:
        return "silent", f"{c['silent']}/{n}"
    if c["warned"]:
        return "warned", f"{c['warned']}/{n}"
    return "refused" if c["refused"] else "ok", ""


def _side(verdict_names) -> str | None:
    """The grid state of one side of a change from its cases' verdicts, when they agree on
    one: all not implemented, some failing, or all as documented; else None."""
    vs = set(verdict_names)
    if vs and vs <= set(verdicts.LIMITS):
        return "limit"
    if vs & set(PROBLEMS):
        return "fail"
    if vs and vs <= set(OK_VERDICTS):
        return "ok"
    return None


def _judged_members(d: ReportData, bc) -> list:
    """The cases of a change whose verdicts its grid row shows: its correct-usage cases,
    else its boundary cases (a misuse or invalid input that errors is no failure of torch);
    none: the row shows only before and after."""
    from ..evaluate import case_scope

    by_scope: dict = {}
    for ch in bc.cases:
        by_scope.setdefault(case_scope(d.cases[ch.case_id]), []).append(ch)
    return by_scope.get("valid") or by_scope.get("boundary") or []  # correct usage first, then its extremes


def _change_verdicts_by_release(d: ReportData) -> dict:
    """(change key) -> {release: the phase verdicts of its judged members there}, from each
    release's own results (the change's phase; the case's verdict for a warnings change, or
    where the phase has none of its own because an earlier one raised)."""
    wanted: dict = {}  # (case id, device) -> [(change key, column)]
    for bc in d.behaviour.changes:
        column = bc.phase if bc.phase in phases.NAMES else "verdict"
        for ch in _judged_members(d, bc):
            wanted.setdefault((ch.case_id, bc.device), []).append((bc.key, column))
    out: dict = {}
    if not wanted:
        return out
    cols, releases = {c: d.col(c) for c in ("verdict", *phases.NAMES)}, d.col("release")
    ids, devices = d.col("id"), d.col("device")
    for i in d.rows_of(cid for cid, _ in wanted):  # their rows only
        for change, column in wanted.get((ids[i], devices[i]), ()):
            v = cols[column][i]  # a phase without a verdict of its own (the forward raised): the case's
            out.setdefault(change, {}).setdefault(releases[i], []).append(
                v if isinstance(v, str) else cols["verdict"][i]
            )
    return out


def grid(d: ReportData) -> dict:
    """The grid: columns (releases with results), row groups, each row's cells."""
    releases = d.data_releases
    devices = d.data_devices
    present = {(r, dv) for r, dv in zip(d.col("release"), d.col("device"))}
    counts = d.behaviour.phase_counts
    dtypes = axes.BY_NAME["dtype"].values
    groups = []
    for dev in devices:
        rows = []
        for dt in dtypes:
            for p in phases.PHASES:
                key = usage_key(dev, dt, p.name)
                cells = []
                for rel in releases:
                    if (rel, dev) not in present:
                        cells.append(_cell(key, rel, "nr", "", f"{dt} {p.label} on {dev}: not run in {rel}", None))
                        continue
                    state, text = usage_state(counts.get((rel, dev, "valid", dt, p.name), Counter()))
                    tip = f"{dt} {p.label} on {dev} in {rel}: {STATE[state].meaning}" + (f" ({text})" if text else "")
                    cells.append(_cell(key, rel, state, text, tip, "#" + key))
                rows.append(
                    {
                        "id": key,
                        "label": f"{dt} · {p.label}",
                        "href": "#" + key,
                        "cells": cells,
                        "filters": {
                            "device": dev,
                            "dtype": dt,
                            "phase": p.name,
                            "scope": "valid",
                            "verdict": _verdict_tokens(counts, dev, dt, p.name, releases),
                        },
                    }
                )
        groups.append({"title": f"Correct usage on {dev}", "rows": rows})
    later = groups[1:]  # the other devices' usage after the changes and misuses of all
    del groups[1:]
    number = {bc.key: k + 1 for k, bc in enumerate(d.behaviour.changes)}
    by_release = _change_verdicts_by_release(d)
    rows = []
    for bc in d.behaviour.changes:
        if bc.wording:  # a message or the sign of a zero: listed with the changes, one line per step
            continue
        since_rk = release_key(bc.since)
        own = by_release.get(bc.key, {})
        cells = []
        for rel in releases:
            if (rel, bc.device) not in present:
                cells.append(_cell(bc.key, rel, "nr", "", f"not run on {bc.device} in {rel}", None))
                continue
            after = release_key(rel) >= since_rk
            # each release's own verdicts where its judged cases agree; else before/after the change
            state = (_side(own[rel]) if rel in own else None) or ("new" if after else "old")
            tip = f"#{number[bc.key]} {'with' if after else 'without'} the change in {rel} ({bc.device})"
            cells.append(_cell(bc.key, rel, state, "", tip, "#" + bc.key, since=rel == bc.since))
        rows.append(
            {
                "id": "row-" + bc.key,
                "label": f"#{number[bc.key]} {bc.title}" + (f" ({bc.device})" if len(devices) > 1 else ""),
                "href": "#" + bc.key,
                "cells": cells,
                "filters": {
                    "device": bc.device,
                    "dtype": " ".join(bc.scope.get("dtype", ())),
                    "phase": " ".join(p for p in bc.phases_seen if p in phases.NAMES),
                    "scope": " ".join(bc.scopes),
                    "verdict": change_verdicts(bc),
                },
            }
        )
    if rows:
        groups.append(
            {
                "title": "Behaviour changes, most severe first (the boundary is the first release with the change; "
                "wording-only changes are listed under Behaviour changes)",
                "rows": rows,
            }
        )
    rows = []
    for reason, by in sorted(_misuse_rows(d).items()):
        key = misuse_key(reason)
        for dev in devices:
            cells = []
            for rel in releases:
                c = by.get((rel, dev), Counter())
                state, text = misuse_state(c)
                tip = f"{reason.split(':')[0]} on {dev} in {rel}: {STATE[state].meaning}" + (
                    f" ({text})" if text else ""
                )
                cells.append(_cell(key + "-" + slug(dev), rel, state, text, tip, "#" + key if c else None))
            rows.append(
                {
                    "id": "row-" + key + "-" + slug(dev),
                    "label": reason.split(":")[0] + (f" ({dev})" if len(devices) > 1 else ""),
                    "href": "#" + key,
                    "cells": cells,
                    "filters": {"device": dev, "scope": "misuse"},
                }
            )
    if rows:
        groups.append({"title": "Misuse: the wrong call for the KL you mean", "rows": rows})
    groups += later
    return {"releases": releases, "groups": groups, "states": STATES}


def _verdict_tokens(counts, dev, dt, phase, releases) -> str:
    """The verdicts the correct-usage cases of one dtype and phase have on any release."""
    seen = set()
    for rel in releases:
        seen |= set(counts.get((rel, dev, "valid", dt, phase), ()))
    return " ".join(v for v in verdicts.NAMES if v in seen)


def change_verdicts(bc) -> str:
    """The verdicts a change's cases have on either side of it (for the verdict filter)."""
    seen = {ch.old_verdict for ch in bc.cases} | {ch.new_verdict for ch in bc.cases}
    return " ".join(v for v in verdicts.NAMES if v in seen)


def _cell(row: str, rel: str, state: str, text: str, tip: str, href, since: bool = False) -> dict:
    return {
        "id": f"g-{row}-{slug(rel)}",
        "release": rel,
        "state": state,
        "symbol": STATE[state].symbol,
        "text": text,
        "title": tip,
        "href": href,
        "since": since,
    }


def answers(d: ReportData) -> list[dict]:
    """Per release and device with results: the answers, in the order users ask them
    (summary.json's glance.releases)."""
    b = d.behaviour
    by_step: dict = {}
    for bc in b.changes:
        by_step.setdefault((bc.device, bc.since), []).append(bc)
    drift = {(x.device, x.since): x for x in b.drift}
    first_of = {(dev, rel): prev for dev, prev, rel in b.steps}
    keys = sorted(
        {(r, dv) for r, dv in zip(d.col("release"), d.col("device"))}
        | {key for key, cell in d.cells.items() if cell["files"]},  # unreadable or empty files too
        key=lambda k: (device_key(k[1]), release_key(k[0])),
    )
    scope, verdict, pitfall = d.col("scope"), d.col("verdict"), d.col("pitfall")
    errors, outputs, warnings = d.col("errors"), d.col("output"), d.col("warnings")
    groups: dict = {}
    for i, key in enumerate(zip(d.col("release"), d.col("device"))):
        groups.setdefault(key, []).append(i)
    out = []
    for rel, dev in keys:
        idx = groups.get((rel, dev), [])
        valid = Counter(verdict[i] for i in idx if scope[i] == "valid")
        boundary = [i for i in idx if scope[i] == "boundary"]
        invalid = [i for i in idx if scope[i] == "invalid"]
        misuse = [i for i in idx if scope[i] == "misuse"]
        inv = Counter()
        for i in invalid:
            if _forward_error(errors[i]):
                inv["error"] += 1
            elif isinstance(outputs[i], dict) and tensors.kind(outputs[i]) == "nan":
                inv["nan"] += 1
            else:
                inv["a number"] += 1
        silent = sum(misuse_outcome(errors[i], pitfall[i], warnings[i]) == "silent" for i in misuse)
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
        cell = d.cells[(rel, dev)]
        if cell["status"] == "partial":
            status = f"partial ({cell['recorded']}/{cell['expected']} recorded)"
        elif cell["status"] in ("crashed", "crashes", "unreadable", "no results"):
            status = cell["status"]
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


def answer_texts(r: dict) -> dict:
    """The words of one answers() row, as the tables show them."""
    cu = r["correct_usage"]
    if cu["problems"]:
        usage = f"✗ {cu['problems']} of {cu['cases']} fail"
    elif cu["stale"]:
        usage = f"↺ {cu['stale']} of {cu['cases']} stale"
    else:
        usage = f"✓ all {cu['cases']} match" + (
            f" ({cu['not_implemented']} not implemented)" if cu["not_implemented"] else ""
        )
    inv = r["invalid"]
    return {
        "usage": usage,
        "boundary": f"{r['boundary']['differ_from_limit']} of {r['boundary']['cases']} differ from the limit",
        "invalid": f"error {inv['error']} · nan {inv['nan']} · a number {inv['a number']}",
        "misuse": f"{r['misuse']['silent']} of {r['misuse']['cases']} silent",
    }


def _answers_with_text(d: ReportData) -> list:
    rows = answers(d)
    number = {bc.key: k + 1 for k, bc in enumerate(d.behaviour.changes)}
    for r in rows:
        r_text = answer_texts(r)
        r["_text"] = r_text
        r["_links"] = [(k, number[k]) for k in r["changes"]]
        r["_md"] = [
            r["release"],
            r["status"],
            r_text["usage"],
            Cell(r_text["boundary"], href="#edges"),  # the behaviours behind the count, named
            Cell(r_text["invalid"], href="#edges"),
            Cell(r_text["misuse"], href="#misuse"),
            r["changed"],
        ]
    return rows


def sec_glance(d: ReportData) -> Section:
    rows = sec_glance_answers(d)
    phase_verdicts = [
        {"release": rel, "device": dev, "scope": sc, "dtype": dt, "phase": ph, "counts": dict(sorted(c.items()))}
        for (rel, dev, sc, dt, ph), c in sorted(
            d.behaviour.phase_counts.items(),
            key=lambda kv: (device_key(kv[0][1]), release_key(kv[0][0]), kv[0][2:]),
        )
    ]
    data = {
        "releases": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
        "phase_verdicts": phase_verdicts,
    }
    ctx = {"grid": grid(d), "answers": rows, "usage_md": _usage_tables(d)}
    return Section("glance", "At a glance", data, ctx, filterable=True)


def _usage_tables(d: ReportData) -> dict:
    """device -> Table of releases (rows) × dtypes, one symbol per phase (README.md)."""
    from .base import Table

    counts = d.behaviour.phase_counts
    dtypes = axes.BY_NAME["dtype"].values
    out = {}
    for dev in d.data_devices:
        rows = []
        for rel in d.data_releases:
            row = [rel]
            seen = False
            for dt in dtypes:
                parts = []
                for p in phases.PHASES:
                    c = counts.get((rel, dev, "valid", dt, p.name))
                    state, text = usage_state(c or Counter())
                    seen |= bool(c)
                    parts.append(STATE[state].symbol + (f" {text}" if text else ""))
                row.append(" ".join(parts))
            if seen:
                rows.append(row)
        if rows:
            out[dev] = Table(["release", *dtypes], rows)
    return out


ODD_SHOWN = 16  # cases listed under a dtype and phase that does not pass; the rest are on the family pages


def usage_detail(d: ReportData) -> list[dict]:
    """Per device, dtype and phase of correct usage: per release the counts and the cases
    that fail or are not implemented (the grid's usage cells link here)."""
    from .casepages import case_href

    counts = d.behaviour.phase_counts
    dtypes = axes.BY_NAME["dtype"].values
    bad_cases: dict = {}
    for cid, rel, dev, sc, dt, *pv in zip(
        d.col("id"),
        d.col("release"),
        d.col("device"),
        d.col("scope"),
        d.col("dtype"),
        *(d.col(p) for p in phases.NAMES),
    ):
        if sc != "valid":
            continue
        for p, v in zip(phases.NAMES, pv):
            if v is not None and v == v and v not in OK_VERDICTS:
                bad_cases.setdefault((dev, dt, p, v), {}).setdefault(cid, []).append(rel)
    out = []
    for dev in d.data_devices:
        for dt in dtypes:
            for p in phases.PHASES:
                per_rel = []
                for rel in d.data_releases:
                    c = counts.get((rel, dev, "valid", dt, p.name))
                    if not c:
                        continue
                    state, text = usage_state(c)
                    per_rel.append(
                        {
                            "release": rel,
                            "state": state,
                            "symbol": STATE[state].symbol,
                            "counts": ", ".join(f"{v} {c[v]}" for v in verdicts.NAMES if c.get(v)),
                        }
                    )
                if not per_rel:
                    continue
                odd = []
                for (dv, dt2, p2, v), cases in sorted(bad_cases.items()):
                    if (dv, dt2, p2) != (dev, dt, p.name):
                        continue
                    for cid, rels in sorted(cases.items(), key=lambda kv: d.case_index.get(kv[0], 0)):
                        at = ranges([d.releases.index(r) for r in rels if r in d.releases], d.releases)
                        odd.append({"verdict": v, "case": cid, "href": case_href(d, cid), "releases": at})
                out.append(
                    {
                        "verdict": _verdict_tokens(counts, dev, dt, p.name, d.data_releases),
                        "key": usage_key(dev, dt, p.name),
                        "device": dev,
                        "dtype": dt,
                        "phase": p.name,
                        "label": f"{dt} {p.label} on {dev}",
                        "releases": per_rel,
                        "odd": odd[:ODD_SHOWN],
                        "odd_more": max(0, len(odd) - ODD_SHOWN),
                    }
                )
    return out


def sec_usage(d: ReportData) -> Section:
    items = usage_detail(d)
    intro = (
        "Correct usage: arguments as the documentation describes them (log-probabilities as input, "
        "probabilities or log-probabilities as target, finite values). Per dtype and phase, the verdicts of every "
        "release, and the cases that do not match."
    )
    return Section(
        "usage",
        "Correct usage per dtype and phase",
        None,
        {"intro": intro, "items": items},
        markdown=False,
        filterable=True,
    )


def sec_releases(d: ReportData) -> Section:
    """The answers of every release and device in words (the page shows them after the
    behaviour changes; README.md in its first section; summary.json under glance)."""
    return Section(
        "per_release",
        "Per release, in words",
        None,
        {"answers": sec_glance_answers(d)},
        markdown=False,
        filterable=True,
        anchor="releases",
    )


def sec_glance_answers(d: ReportData) -> list:
    if "answers" not in d.memo:
        d.memo["answers"] = _answers_with_text(d)
    return d.memo["answers"]
