"""Behaviour changes in plain words: each with the cases it covers, a reproduction sliced
to the fewest elements (run in every release by harness.reproductions), what its
example case recorded on both sides, and the upstream reason where it is known."""

from __future__ import annotations

import numpy as np

from .. import phases as phases_mod
from .. import severities, tensors
from ..versions import release_key
from .base import Section
from .glance import change_verdicts
from .model import ReportData
from .text import axis_text, call_text, fmt_float, fmt_output, fmt_values, literal, visible


def _example(bc, published: dict | None = None):
    """(CaseChange, position) that shows ``bc`` with the fewest elements, among its leads as
    severe as the change (where there are such): the case of its published reproduction
    (``published``: harness.reproductions' snippets) while that case still leads the
    change, so the snippet the releases ran stays; else a member with an elementwise output
    and a changed element if there is one, else the first member.  A change of warnings is
    shown by a float32/float64 member (whose backward runs on every release, so the warning
    can appear)."""
    from .. import findings as findings_mod

    members = [ch for ch in bc.cases if ch.severity == bc.severity] or bc.cases  # shows why it is this severe
    known = (published or {}).get(bc.key, {}).get("case")
    for ch in members:
        if ch.case_id == known:
            return ch, (ch.positions[0] if ch.positions and "/none/" in ch.case_id else None)
    if bc.phase == findings_mod.WARNINGS:
        members = [ch for ch in members if "/float32/" in ch.case_id or "/float64/" in ch.case_id] or members
    for ch in members:
        if ch.positions and "/none/" in ch.case_id:
            return ch, ch.positions[0]
    return members[0], None


def repro_lines(case, phase: str, position) -> list:
    """At most 10 lines of Python showing the change: the case's call on one element
    (elementwise outputs) or on its whole inputs."""
    from ..inputs import call_inputs

    ci = call_inputs(case)
    first, second = ci.first, ci.second
    if position is not None:
        a, b = np.broadcast_arrays(first, second)
        first, second = a.reshape(-1)[[position]], b.reshape(-1)[[position]]
    p = phases_mod.BY_NAME.get(phase)
    grad = p is not None and p.grad_of is not None
    rg = ", requires_grad=True" if grad else ""
    var = {"first": "x", "second": "t"}
    lines = [
        "import torch",
        'nan, inf = float("nan"), float("inf")',
        f"x = torch.tensor({literal(first, case.dtype)}, dtype=torch.{case.dtype}{rg})  # input",
        f"t = torch.tensor({literal(second, case.dtype)}, dtype=torch.{case.dtype}{rg})  # target",
    ]
    lines.append(f"loss = {call_text(case, 'x', 't')}")
    if grad and " of " in p.grad_of:  # double backward: d/d(outer) of the summed d/d(inner)
        outer, _, inner = p.grad_of.partition(" of ")
        lines.append(f"(g,) = torch.autograd.grad(loss.sum(), [{var[inner]}], create_graph=True)")
        lines.append(f"(h,) = torch.autograd.grad(g.sum(), [{var[outer]}], allow_unused=True)")
        lines.append(f"print(torch.zeros_like({var[outer]}) if h is None else h)  # None: does not depend on it")
    elif grad:
        lines.append("loss.backward(torch.ones_like(loss))")
        lines.append(f"print({var[p.grad_of]}.grad)")
    else:
        lines.append("print(loss)")
    return lines


def phase_text(row, phase: str, position) -> str:

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
    if tensors.is_summary(t):
        return fmt_output(t)
    vals = t["values"]
    if position is not None and position < len(vals):
        return fmt_float(vals[position])
    return fmt_values(t["shape"], vals)


def _stale_explanations(changes, matching) -> list:
    """Explanations that match no behaviour change, neither its leading transition nor one
    of its consequences."""
    if matching is None:
        return []
    seen = {(bc.since, ph, f, t) for bc in changes for ph, f, t, _ in bc.consequences}
    return [e for e in matching.stale if (e.since, e.phase, e.from_, e.to) not in seen]


def reproduction_snippets(d: ReportData) -> dict:
    """{change key: snippet} for every behaviour change (harness.reproductions' format)."""

    from .. import reproductions

    published = reproductions.load()
    out = {}
    for bc in d.behaviour.changes:
        ch, pos = _example(bc, published)
        out[bc.key] = {
            "title": bc.title,
            "since": bc.since,
            "previous": bc.previous,
            "case": ch.case_id,
            "code": repro_lines(d.cases[ch.case_id], _snippet_phase(d, bc, ch), pos),
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


def _causes(items: list, changes: list, matching) -> list:
    """The changes grouped by cause, one heading per release step: the first upstream
    reference of each change's explanation (its consequences' too, where the lead has
    none), then the changes no entry explains; each change under one heading, in number order."""
    from ..versions import release_key

    heads: dict = {}
    for k, (item, bc) in enumerate(zip(items, changes)):
        expl = matching.explained.get(k) if matching is not None else None
        ref = expl.upstream[0] if expl and expl.upstream else None
        key = (bc.device, bc.since, (ref.kind, str(ref.id)) if ref else None)
        if key not in heads:
            heads[key] = {
                "device": bc.device,
                "since": bc.since,
                "previous": bc.previous,
                "ref": {"text": _upstream_text(ref), "url": ref.url} if ref else None,
                "changes": [],
            }
        heads[key]["changes"].append(
            {"number": item["number"], "key": item["key"], "title": item["title"], "severity": item["severity"]}
        )
    return sorted(
        heads.values(),
        key=lambda h: (h["device"], release_key(h["since"]), h["ref"] is None, h["changes"][0]["number"]),
    )


def _upstream_text(ref) -> str:
    """An upstream reference (harness.explanations.Ref) as link text: 'PR #49004'."""
    label = {"pr": "PR", "issue": "issue", "commit": "commit"}[ref.kind]
    ident = f"#{ref.id}" if ref.kind != "commit" else str(ref.id)[:12]
    return f"{label} {ident}"


def _change_filters(bc) -> dict:
    return {
        "release": bc.since,
        "device": bc.device,
        "dtype": " ".join(bc.scope.get("dtype", ())),
        "phase": " ".join(p for p in bc.phases_seen if p in phases_mod.NAMES),
        "scope": " ".join(bc.scopes),
        "verdict": change_verdicts(bc),
    }


def sec_changes(d: ReportData) -> Section:
    """Behaviour changes between consecutive releases, each with its reproduction."""
    from .. import findings as findings_mod
    from .. import reproductions
    from .casepages import case_href

    b = d.behaviour
    matching = d.explained
    run_snippets = reproductions.load()
    examples = {bc.key: _example(bc, run_snippets) for bc in b.changes}
    frame_by = {}  # (case id, release, device) -> row, for the examples' rows only
    ids, rels, devs = d.col("id"), d.col("release"), d.col("device")
    for i in d.rows_of(ch.case_id for ch, _ in examples.values()):
        frame_by[(ids[i], rels[i], devs[i])] = i
    items, data = [], []
    number = {bc.key: k + 1 for k, bc in enumerate(b.changes)}
    by_transition = {e.key: e for e in (matching.all if matching is not None else ())}
    for k, bc in enumerate(b.changes):
        expl = matching.explained.get(k) if matching is not None else None
        ch, pos = examples[bc.key]
        case = d.cases[ch.case_id]
        lines = repro_lines(case, _snippet_phase(d, bc, ch), pos)
        recorded = {}
        for rel in (bc.previous, bc.since):
            i = frame_by.get((ch.case_id, rel, bc.device))
            recorded[rel] = phase_text(d.frame.iloc[i], bc.phase, pos) if i is not None else "not run"
        covers = [(a, ", ".join(axis_text(v) for v in vals)) for a, vals in bc.scope.items() if vals]
        facts = [
            ("severity", severities.BY_NAME[bc.severity].title.lower()),
            ("since", f"{bc.since} (last release without it: {bc.previous}), {bc.device}"),
            ("cases", f"{bc.count}, {bc.direction}"),
            ("phases", ", ".join(findings_mod.PHASE_LABEL[p] for p in bc.phases_seen)),
            ("domain", ", ".join(bc.scopes)),
            ("covers", "; ".join(f"{a}: {v}" for a, v in covers)),
        ]
        consequences = [
            {
                "phase": ph,
                "from": f,
                "to": t,
                "cases": n,
                "text": f"{findings_mod.PHASE_LABEL[ph]}: {findings_mod.state_words(t, ph)} "
                f"(was: {findings_mod.state_words(f, ph)}), {n} case{'s' if n != 1 else ''}",
                "explanation": (e := by_transition.get((bc.since, ph, f, t))) and e.explanation,
            }
            for ph, f, t, n in bc.consequences
        ]
        if consequences:
            facts.append(("with it", "; ".join(c["text"] for c in consequences)))
        if bc.related:
            facts.append(("related", ", ".join(f"#{number[key]}" for key in bc.related)))
        committed = run_snippets.get(bc.key)
        printed = {rel: _printed(d, bc.key, rel, bc.device, lines) for rel in (bc.previous, bc.since)}
        if committed is None or committed.get("code") != lines:
            printed_note = (
                "this snippet has not been run in the releases yet (python -m harness reproductions, then nox)"
            )
            printed = {}
        elif None in printed.values():
            printed_note = "not run yet in " + ", ".join(rel for rel, p in printed.items() if p is None)
            printed = {rel: p for rel, p in printed.items() if p is not None}
        else:
            printed_note = ""
        upstream = (
            [{"kind": u.kind, "id": u.id, "url": u.url, "text": _upstream_text(u)} for u in expl.upstream]
            if expl
            else []
        )
        items.append(
            {
                "key": bc.key,
                "number": k + 1,
                "title": bc.title,
                "severity": bc.severity,
                "consequences": consequences,
                "related": [{"key": key, "number": number[key]} for key in bc.related],
                "since": bc.since,
                "previous": bc.previous,
                "device": bc.device,
                "direction": bc.direction,
                "count": bc.count,
                "facts": facts,
                "explanation": expl.explanation if expl else None,
                "upstream": upstream,
                "code": "\n".join(lines),
                "printed": printed,
                "printed_note": printed_note,
                "recorded": recorded,
                "example": ch.case_id,
                "example_href": case_href(d, ch.case_id),
                "filters": _change_filters(bc),
            }
        )
        data.append(
            {
                "key": bc.key,
                "title": bc.title,
                "severity": bc.severity,
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
                "covers": {a: [axis_text(v) for v in vals] for a, vals in bc.scope.items()},
                "consequences": [{k: c[k] for k in ("phase", "from", "to", "cases")} for c in consequences],
                "related": list(bc.related),
                "explained": bool(expl),
                "explanation": expl.explanation if expl else None,
                "upstream": [{"kind": u["kind"], "id": u["id"], "url": u["url"]} for u in upstream],
                "reproduction": lines,
                "example": ch.case_id,
                "recorded": recorded,
                "printed": printed,
                "case_ids": [c.case_id for c in bc.cases],
            }
        )
    stale_expl = _stale_explanations(b.changes, matching)
    drift = [
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
    ]
    summary = {
        "changes": data,
        "drift": drift,
        "unexplained": [
            b.changes[i].key for i in (matching.unexplained if matching is not None else range(len(b.changes)))
        ],
        "stale_explanations": [f"{e.since} {e.phase}: {e.from_} -> {e.to}" for e in stale_expl],
        "refused_explanations": [problem for _, problem in (matching.refused if matching is not None else ())],
    }
    causes = _causes(items, b.changes, matching)
    summary["causes"] = [
        {
            "since": h["since"],
            "device": h["device"],
            "upstream": h["ref"]["url"] if h["ref"] else None,
            "changes": [c["key"] for c in h["changes"]],
        }
        for h in causes
    ]
    intro = (
        "Every phase of every case is compared between consecutive tested releases on the same device: the class "
        "of every element (finite, 0, -0, inf, -inf, nan), the exception and its message, the warnings. Each "
        "phase that changed belongs to exactly one behaviour change: a case's most severe change leads, what "
        "follows from it (a gradient that had none, the warnings) comes with it. The changes are ordered by "
        "severity, most severe first; each has the cases it covers, a reproduction sliced to the fewest elements, "
        "what the snippet printed in both releases and the upstream reason where it is known. Changes of wording "
        "only (a message, the sign of a zero) take one line per release step. Value drift within tolerance is "
        "listed separately."
    )
    groups, wording = [], {}
    for item, bc in zip(items, b.changes):
        if bc.wording:
            wording.setdefault((bc.device, bc.previous, bc.since), []).append(item)
            continue
        if not groups or groups[-1]["severity"] != bc.severity:
            sev = severities.BY_NAME[bc.severity]
            groups.append({"severity": sev.name, "title": sev.title, "meaning": sev.meaning, "changes": []})
        groups[-1]["changes"].append(item)
    wording_lines = [
        {"device": dev, "previous": prev, "since": rel, "changes": found}
        for (dev, prev, rel), found in sorted(wording.items(), key=lambda kv: (kv[0][0], release_key(kv[0][2])))
    ]
    from .base import Cell

    changes_md = [
        [
            Cell(str(c["number"]), href="#" + c["key"]),
            c["severity"],
            c["since"],
            c["device"],
            c["title"],
            f"{c['count']}, {c['direction']}",
            "explained" if c["explanation"] else "unexplained",
        ]
        for c in items
    ]
    drift_md = [
        [
            x["since"],
            x["previous"],
            x["device"],
            str(x["cases"]),
            f"{x['max_ulps']:g}",
            ", ".join(x["dtypes"]),
            ", ".join(x["phases"]),
        ]
        for x in drift
    ]
    ctx = {
        "changes_md": changes_md,
        "drift_md": drift_md,
        "intro": intro,
        "changes": items,
        "groups": groups,
        "causes": causes,
        "wording": wording_lines,
        "wording_meaning": severities.BY_NAME[severities.WORDING].meaning,
        "drift": drift,
        "stale": [f"{e.since} {e.phase}: {e.from_} → {e.to}" for e in stale_expl],
        "refused": summary["refused_explanations"],
        "unexplained": len(summary["unexplained"]),
    }
    return Section("behaviour", "Behaviour changes", summary, ctx, filterable=True, anchor="changes")
