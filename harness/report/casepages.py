"""Per-case detail, one static page per input family (``cases/<family>.html``), and the
index of families on the main page.

The four API forms (module, functional and the two legacy ones) of a case are one row
where their results agree on every release and device, and split where they differ;
the data stays per form.  Every case id keeps its own anchor.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from .. import axes, verdicts
from .base import Section
from .model import ReportData
from .text import VALUES_SHOWN_DETAIL, axis_text, clip, device_key, fmt_output, fmt_values, ranges, reproduction

API = axes.NAMES.index("api")  # the API form's place among the axes (and, after the family, in case ids)


def family_slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", label)


def case_anchor(cid: str) -> str:
    return "case-" + re.sub(r"[^A-Za-z0-9_.-]", "_", cid)


def group_of(cid: str) -> str:
    """The id of a case without its API form ('*' in its place)."""
    parts = cid.split("/")
    parts[1 + API] = "*"
    return "/".join(parts)


def case_href(d: ReportData, cid: str, from_page: bool = False) -> str:
    """The link to a case's detail, from the main page (or from a family page)."""
    fam = family_slug(d.cases[cid].family.label)
    return ("" if from_page else "cases/") + f"{fam}.html#{case_anchor(cid)}"


def _signature(rows) -> tuple:
    """What a form returned on each release and device: equal signatures, equal results."""
    return tuple((r.device, r.release, r.verdict, r.state, r.output_id, r.detail) for r in rows)


def _runs(rows) -> list:
    """Consecutive releases of one device with the same verdict and value, as runs."""
    out = []
    for r in rows:
        last = out[-1] if out else None
        key = (r.device, r.verdict, r.state, r.output_id if r.output_id >= 0 else r.value, r.detail)
        if last and last["key"] == key:
            last["rks"].append(r.rk)
        else:
            out.append({"key": key, "first": r, "rks": [r.rk]})
    return out


def _reference_text(q) -> str:
    if q is None:
        return ""
    return fmt_values(
        q.value.shape, q.value.reshape(-1).tolist(), VALUES_SHOWN_DETAIL, q.undefined.reshape(-1).tolist()
    )


def _group_detail(d: ReportData, ids: list) -> dict:
    from ..evaluate import case_references, case_scope, tolerance

    case = d.cases[ids[0]]
    fam = case.family
    rows = d.rows_by_case[ids[0]]
    devices = sorted({r.device for r in rows}, key=device_key)
    spans = _runs(rows)
    for span in spans:
        span["releases"] = ranges(span["rks"], d.releases)
    runs = []
    for run in spans:
        r = run["first"]
        value = fmt_output(r.output, VALUES_SHOWN_DETAIL) if r.output is not None else r.value
        runs.append(
            {
                "releases": run["releases"],
                "device": r.device,
                "verdict": r.verdict,
                "value": value,
                "detail": "" if r.detail == r.value else clip(r.detail, 400),
            }
        )
    warned: dict = {}
    for r in rows:
        for w in r.warnings if isinstance(r.warnings, list) else ():
            warned.setdefault(w, {}).setdefault(r.device, []).append(r.rk)
    warnings = [
        {
            "text": clip(w, 400),
            "where": "; ".join(
                f"{dev} {ranges(rks, d.releases)}" for dev, rks in sorted(where.items(), key=lambda x: device_key(x[0]))
            ),
        }
        for w, where in sorted(warned.items())
    ]
    ref = d.evaluation.reference(case) if d.evaluation is not None else case_references(case)
    tol = tolerance(case)
    if ref.documented.broadcast_error:
        doc_text = math_text = f"raises ({ref.documented.broadcast_error})"
    else:
        doc_text, math_text = _reference_text(ref.documented.forward), _reference_text(ref.math.forward)
    pitfalls = sorted({r.pitfall_reason for r in rows if r.pitfall})
    meaning = (
        f"input holds {fam.meaning.get('input')}, target holds {fam.meaning.get('target')}"
        if fam.generator == "literal"
        else f"generator {fam.generator}, seed {fam.seed}"
    )
    info = [
        (
            "inputs",
            f"{meaning}; gradients {'checked' if fam.grad else 'not checked'}"
            f"{'; an error is expected' if fam.expect_error else ''}",
        ),
        ("tolerance", f"rtol {tol['rtol']:g}, atol {tol['atol']:g} ({case.dtype})"),
        ("reference (documented formula)", doc_text),
        ("KL the user means", math_text),
        ("case file", f"{Path(fam.source).name}:{fam.line}"),
    ]
    if pitfalls:
        info.append(("misuse", "; ".join(pitfalls)))
    timeline = []
    for dev in devices:
        timeline.append(
            {
                "device": dev,
                "runs": [
                    {"verdict": run["first"].verdict, "releases": run["releases"]}
                    for run in spans
                    if run["first"].device == dev
                ],
            }
        )
    forms = [d.cases[c].api for c in ids]
    return {
        "anchor": case_anchor(ids[0]),
        "anchors": [case_anchor(c) for c in ids[1:]],
        "id": ids[0] if len(ids) == 1 else group_of(ids[0]).replace("*", "{" + ",".join(forms) + "}"),
        "forms": forms,
        "timeline": timeline,
        "runs": runs,
        "info": info,
        "warnings": warnings,
        "code": reproduction(case, devices),
        "problem": any(verdicts.BY_NAME[r.verdict].problem for r in rows),
        "varies": len({(r.verdict, r.state) for r in rows}) > 1,
        "filters": {
            "device": " ".join(devices),
            "release": " ".join(sorted({r.release for r in rows}, key=d.releases.index)),
            "dtype": case.dtype,
            "scope": case_scope(case),
            "verdict": " ".join(sorted({r.verdict for r in rows})),
            **{
                a.name: " ".join(sorted({axis_text(getattr(d.cases[c], a.name)) for c in ids}))
                for a in axes.AXES
                if a.name != "dtype"
            },
        },
    }


def family_pages(d: ReportData) -> dict:
    """family label -> {'slug', 'label', 'description', 'items'} for every family with
    results (made once per ReportData)."""
    if "family_pages" not in d.memo:
        d.memo["family_pages"] = _family_pages(d)
    return d.memo["family_pages"]


def _family_pages(d: ReportData) -> dict:
    by_family: dict = {}
    for cid in d.cases:
        if cid in d.rows_by_case:
            by_family.setdefault(d.cases[cid].family.label, {}).setdefault(group_of(cid), []).append(cid)
    pages = {}
    for label, groups in by_family.items():
        items = []
        for _, ids in groups.items():
            sigs: dict = {}
            for cid in ids:
                sigs.setdefault(_signature(d.rows_by_case[cid]), []).append(cid)
            split = len(sigs) > 1
            for members in sigs.values():
                item = _group_detail(d, members)
                item["split"] = split
                items.append(item)
        fam = d.cases[next(iter(groups.values()))[0]].family
        pages[label] = {"slug": family_slug(label), "label": label, "description": fam.description, "items": items}
    return pages


def sec_cases(d: ReportData) -> Section:
    pages = family_pages(d)
    per_family = Counter(zip(d.col("family"), d.col("verdict")))
    rows, data = [], []
    for label, page in pages.items():
        n_cases = sum(len(i["forms"]) for i in page["items"])
        split = sum(1 for i in page["items"] if i["split"])
        counts = {v: per_family[(label, v)] for v in verdicts.NAMES if per_family.get((label, v))}
        rows.append(
            {
                "label": label,
                "href": f"cases/{page['slug']}.html",
                "description": page["description"],
                "cases": n_cases,
                "rows": len(page["items"]),
                "split": split,
                "counts": counts,
            }
        )
        data.append({k: v for k, v in rows[-1].items() if k != "description"})
    intro = (
        f"{sum(r['cases'] for r in rows)} cases with results in {len(rows)} input families. Each family's page "
        "lists its cases with inputs, reference values, the outcome per release and device, and a reproduction. "
        "The four API forms share one row where their results agree on every release and device."
    )
    from .base import Cell

    families_md = [
        [r["label"], str(r["cases"]), str(r["rows"]), str(r["split"]), Cell("page", href=r["href"])] for r in rows
    ]
    ctx = {"intro": intro, "families": rows, "families_md": families_md}
    return Section("cases", "Cases", data, ctx, filterable=True)
