"""Boundary and invalid inputs, named: each input kind (a case family of the boundary or
invalid scope) whose results differ from the mathematical limit or the documented
formula, per phase and verdict: the calls it happens to, since which release (or on every
release), a reproduction, what a release recorded, and what to do instead (the family's
``advice`` in its case file), and where such an input gets a result other than the KL
its arguments mean (an empty batch's 'batchmean', a negative target)."""

from __future__ import annotations

from .. import axes, phases, verdicts
from ..evaluate import misuse_reason
from .base import Section
from .changes import phase_text, repro_lines
from .model import ReportData
from .text import axis_text, device_key, ranges

PROBLEM = ("error", "nan", "mismatch")  # verdicts that differ from the limit or the formula
WHAT = {
    "nan": "nan or inf where the limit is finite",
    "mismatch": "another value than the formula, beyond tolerance",
    "error": "raises, where the formula has a value",
    "pitfall": "a result other than the KL its arguments mean",
}


def _pattern(cases) -> list:
    """(axis, values) the cases cover, api left out (every form behaves alike)."""
    out = []
    for k, a in enumerate(axes.AXES):
        if a.name == "api":
            continue
        seen = {c.values[k] for c in cases}
        out.append((a.name, [axis_text(v) for v in a.values if v in seen]))
    return out


def behaviours(d: ReportData) -> list[dict]:
    """The listed behaviours, by scope (boundary, then invalid), family and phase."""
    if not len(d.frame):
        return []
    import numpy as np

    ids, devs, rks = d.col("id"), d.col("device"), d.col("rk")
    edge = d.frame["scope"].isin(["boundary", "invalid"]).to_numpy()
    groups: dict = {}  # (device, family, phase, what) -> {case id: set of release ranks}

    def add(i, phase, what):
        groups.setdefault((devs[i], d.cases[ids[i]].family.label, phase, what), {}).setdefault(ids[i], set()).add(
            rks[i]
        )

    for p in phases.PHASES:
        col = d.col(p.name)
        for i in np.flatnonzero(edge & d.frame[p.name].isin(PROBLEM).to_numpy()).tolist():
            add(i, p.name, col[i])
    reasons: dict = {}
    for i in np.flatnonzero(edge & d.frame["pitfall"].astype(bool).to_numpy()).tolist():  # not the KL meant
        cid = ids[i]
        if cid not in reasons:
            reasons[cid] = misuse_reason(d.cases[cid])
        if not reasons[cid]:
            add(i, "forward", "pitfall")
    listed = {cid for by_case in groups.values() for cid in by_case}
    tested_of: dict = {}  # (device, case id) -> the release ranks it has results for
    frame_at = {}  # (case id, release, device) -> row
    for i in d.rows_of(listed):
        tested_of.setdefault((devs[i], ids[i]), set()).add(rks[i])
        frame_at[(ids[i], d.releases[rks[i]], devs[i])] = i
    order = {s: k for k, s in enumerate(("boundary", "invalid"))}
    merged: dict = {}  # (family, phase, what) -> {device: {case id: ranks}}
    for (dev, fam, phase, what), by_case in groups.items():
        merged.setdefault((fam, phase, what), {})[dev] = by_case
    out = []
    for (fam, phase, what), by_device in merged.items():
        all_ids = {cid for by_case in by_device.values() for cid in by_case}
        cases = sorted((d.cases[cid] for cid in all_ids), key=lambda c: d.case_index[c.id])
        family = cases[0].family
        when, first = [], []
        for dev in sorted(by_device, key=device_key):
            by_case = by_device[dev]
            seen = set().union(*by_case.values())
            tested = set().union(*(tested_of.get((dev, cid), set()) for cid in by_case))
            span = ranges(seen, d.releases)
            when.append(
                f"{dev}: " + (f"every tested release ({ranges(tested, d.releases)})" if seen == tested else span)
            )
            first.append(min(seen))
        dev = sorted(by_device, key=device_key)[0]
        by_case = by_device[dev]
        example = next((c for c in cases if c.reduction == "none" and c.id in by_case), None) or next(
            c for c in cases if c.id in by_case
        )
        rel = d.releases[max(by_case[example.id])]
        i = frame_at.get((example.id, rel, dev))
        recorded = phase_text(d.frame.iloc[i], phase, None) if i is not None else "not run"
        rks_all = {rk for by_case in by_device.values() for r in by_case.values() for rk in r}
        out.append(
            {
                "family": fam,
                "scope": family.scope,
                "input": family.description,
                "phase": phase,
                "phase_label": phases.BY_NAME[phase].label,
                "what": what,
                "what_text": WHAT[what],
                "cases": len(cases),
                "covers": _pattern(cases),
                "devices": sorted(by_device, key=device_key),
                "releases": "; ".join(when),
                "advice": family.advice,
                "example": example.id,
                "reproduction": repro_lines(example, phase, None),
                "recorded": {"release": rel, "device": dev, "text": recorded},
                "filters": {
                    "device": " ".join(sorted(by_device, key=device_key)),
                    "scope": family.scope,
                    "phase": phase,
                    "dtype": " ".join(dt for dt in axes.BY_NAME["dtype"].values if any(c.dtype == dt for c in cases)),
                    "release": " ".join(d.releases[k] for k in sorted(rks_all)),
                    "verdict": what if what in verdicts.BY_NAME else "",
                },
            }
        )
    out.sort(key=lambda b: (order.get(b["scope"], 3), b["family"], phases.NAMES.index(b["phase"]), b["what"]))
    return out


def sec_edges(d: ReportData) -> Section | None:
    """The section: each listed behaviour with its reproduction and what to do instead."""
    from .casepages import case_href

    items = behaviours(d)
    data = [{k: v for k, v in b.items() if k != "filters"} for b in items]
    for b in items:
        b["example_href"] = case_href(d, b["example"])
        b["covers_text"] = "; ".join(f"{a}: {', '.join(v)}" for a, v in b["covers"])
    intro = (
        "Valid but extreme inputs (boundary) are judged against the mathematical limit, inputs outside the "
        "documented domain (invalid) against the documented formula. Each input kind and phase that gets "
        "something else is listed once, with the calls it happens to, the releases, a reproduction on the "
        "case's own inputs and what to do instead."
    )
    return Section("edges", "Boundary and invalid inputs", data, {"intro": intro, "items": items}, filterable=True)
