"""The evidence behind the findings: silent misuses, the seed post's claims, CUDA against
CPU, families × releases, warnings, and where every result came from."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pandas as pd

from .. import axes, claims, phases, verdicts
from ..versions import release_key, release_of
from .base import Cell, Section, Table
from .glance import misuse_key
from .model import PROBLEMS, ReportData
from .text import axis_text, device_key, fmt_float, ranges

# misuse reason prefix -> the corrected call
PITFALL_FIX = {
    "arguments swapped": "F.kl_div(log_q, p, reduction='batchmean')  # prediction (log-probs) first, target second",
    "input holds probabilities": "F.kl_div(torch.log_softmax(logits, -1), p, reduction='batchmean')",
    "target holds log-probabilities": "F.kl_div(log_q, log_p, reduction='batchmean', log_target=True)",
    "target holds probabilities": "F.kl_div(log_q, p, reduction='batchmean')  # log_target=False (the default)",
    "'mean' divides": "F.kl_div(log_q, p, reduction='batchmean')",
    "'batchmean' on 1-d": "F.kl_div(log_q.unsqueeze(0), p.unsqueeze(0), reduction='batchmean')",
    "'batchmean' divides by size(0)": "F.kl_div(log_q.flatten(0, -2), p.flatten(0, -2), reduction='batchmean')",
}

CLAIM_STYLE = dict(
    zip(
        claims.STATUSES,
        [("✓", "🟩", "pass"), ("◐", "🟨", "unsupported"), ("✗", "🟥", "error"), ("–", "⬜", "undefined")]
        + [("·", "⬜", "undefined"), ("↺", "🟪", "stale")],
        strict=True,
    )
)


def _claim_runs(d: ReportData, rows: list) -> list:
    """Consecutive releases with the same status and measurement, as (range, row, releases)."""
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
    return [(ranges(set(m), d.releases), r, [d.releases[i] for i in sorted(set(m))]) for m, r in out]


def _cuda_vs_cpu(d: ReportData) -> pd.DataFrame:
    """:func:`harness.oracle.cuda_vs_cpu` of the frame, asked once per distinct pair: its
    answer for a case run on both devices of a release depends on the case and on what each
    device returned (verdict, output shape and bits), which most releases repeat."""
    from ..oracle import cuda_vs_cpu

    n = len(d.frame)
    column = {
        c: np.fromiter(d.col(c), dtype=object, count=n)
        for c in ("release", "id", "family", "dtype", "verdict", "output", "device", *phases.NAMES)
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
    # the answer depends on the verdicts of the case and of each phase (oracle._comparable_verdicts)
    verdict = pd.factorize(
        np.fromiter((str(v) for v in zip(column["verdict"], *(column[p] for p in phases.NAMES))), dtype=object, count=n)
    )[0]
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


def _axis_order(d: ReportData, axis: str, values) -> list:
    if axis == "family":
        return sorted(values, key=lambda v: (d.family_rank.get(v, 10**6), v))
    ref = [axis_text(x) for x in axes.BY_NAME[axis].values] if axis in axes.BY_NAME else []
    return sorted(values, key=lambda v: (ref.index(v) if v in ref else len(ref), v))


def _split_warning(text: str) -> tuple[str, str]:
    cat, _, msg = text.partition(": ")
    return (cat, msg) if msg else ("", text)


def _dtype_release_tokens(d: ReportData, rows) -> dict:
    """The dtype and release filter tokens of some of the frame's rows, in display order."""
    dtypes, releases = set(rows["dtype"].tolist()), set(rows["release"].tolist())
    return {
        "dtype": " ".join(dt for dt in axes.BY_NAME["dtype"].values if dt in dtypes),
        "release": " ".join(r for r in d.releases if r in releases),
    }


def sec_misuse(d: ReportData) -> Section:
    """Calls that succeed but are the wrong call for the KL the user means, with the fix."""
    from .casepages import case_href

    cols = ["pitfall_reason", "id", "rk", "device", "family", "warnings", "dtype", "release"]
    # the wrong calls only (a misuse reason names the mistake and its fix); a pitfall of another
    # scope (rounding, an empty batch, ...) is a boundary or invalid behaviour (harness.report.edges)
    f = d.frame.loc[d.frame["pitfall"].astype(bool) & (d.frame["scope"] == "misuse"), cols] if len(d.frame) else d.frame
    intro = (
        "Calls that run and do what the documentation says, but do not compute the KL divergence the user "
        "means, KL(target ‖ prediction) per distribution. On every release where they appear they return a "
        "number; 'silent' counts the results that came with no warning either."
    )
    items, data = [], []
    for reason, g in f.groupby("pitfall_reason", sort=True) if len(f) else ():
        problem, _, fix = reason.partition(": ")
        code = next((c for p, c in PITFALL_FIX.items() if reason.startswith(p)), "")
        ids = sorted(set(g["id"].tolist()), key=d.case_index.get)
        silent = int(sum(1 for w in g["warnings"].tolist() if not w))
        row = {
            "pitfall": problem,
            "fix": fix or "",
            "code": code,
            "cases": len(ids),
            "results": len(g),
            "silent": silent,
            "releases": ranges(set(g["rk"].tolist()), d.releases),
            "devices": sorted(set(g["device"].tolist()), key=device_key),
            "families": _axis_order(d, "family", set(g["family"].tolist())),
            "examples": ids[:3],
        }
        data.append(row)
        filters = {"scope": "misuse", "device": " ".join(row["devices"]), **_dtype_release_tokens(d, g)}
        per = []  # per device and dtype: how often, where, how many silent
        for (dev, dt), gg in sorted(
            g.groupby(["device", "dtype"], sort=False),
            key=lambda kv: (device_key(kv[0][0]), axes.BY_NAME["dtype"].values.index(kv[0][1])),
        ):
            per.append(
                {
                    "device": dev,
                    "dtype": dt,
                    "cases": gg["id"].nunique(),
                    "silent": int(sum(1 for w in gg["warnings"].tolist() if not w)),
                    "results": len(gg),
                    "releases": ranges(set(gg["rk"].tolist()), d.releases),
                    "filters": {"device": dev, **_dtype_release_tokens(d, gg)},
                }
            )
        items.append(
            {
                **row,
                "per": per,
                "key": misuse_key(reason),
                "filters": filters,
                "example_links": [(cid, case_href(d, cid)) for cid in ids[:3]],
            }
        )
    data.sort(key=lambda r: (-r["cases"], r["pitfall"]))
    items.sort(key=lambda r: (-r["cases"], r["pitfall"]))
    table = Table(
        ["misuse", "fix", "corrected call", "cases", "silent results", "releases"],
        [
            [
                r["pitfall"],
                r["fix"],
                Cell(r["code"], code=True),
                str(r["cases"]),
                f"{r['silent']} of {r['results']}",
                r["releases"],
            ]
            for r in items
        ],
    )
    return Section(
        "pitfalls",
        "Silent misuse",
        data,
        {"intro": intro, "items": items, "tables": [table]},
        filterable=True,
        anchor="misuse",
    )


def sec_claims(d: ReportData) -> Section:
    """Published claims vs reality: the seed post's printed outputs and advice, per release."""
    frame = d.frame.copy(deep=False)  # evaluate_claims reads it only
    frame.attrs = {"snippets": d.snippets}
    df = claims.evaluate_claims(frame) if len(frame) or d.snippets else pd.DataFrame()
    intro = (
        "Each printed line and each piece of advice of the seed post (cases/claims/seed-post.yaml), checked on "
        "every release: holds, holds for the wrong reason, or does not hold (stale: the results were made from "
        "other inputs, so no status until the release runs again). Snippets run verbatim in each "
        "release's environment (CPU); advice is checked against the case matrix."
    )
    items, data = [], []
    if not df.empty:
        df = df[df["status"] != "not run"] if (df["status"] != "not run").any() else df
        for claim_id, g in df.groupby("claim", sort=False):
            first = g.iloc[0]
            spans = []
            for dev, gd in g.groupby("device", sort=False):
                rows = sorted(gd.to_dict("records"), key=lambda r: release_key(r["release"]))
                for span, row, rels in _claim_runs(d, rows):
                    sym, square, cls = CLAIM_STYLE[row["status"]]
                    seen = (
                        f"prints {row['printed']!r}"
                        if row["kind"] == "example" and row.get("printed") is not None
                        else str(row.get("detail") or "")
                    )
                    spans.append(
                        {
                            "symbol": sym,
                            "square": square,
                            "verdict": cls,
                            "status": row["status"],
                            "releases": span,
                            "device": dev,
                            "seen": seen,
                            "filters": {"release": " ".join(rels), "device": dev},
                        }
                    )
                    data.append(
                        {"claim": claim_id, "device": dev, "releases": span, "status": row["status"], "seen": seen}
                    )
            ref = ""
            if first["kind"] == "example" and not (
                isinstance(first.get("reference"), float)
                and math.isnan(first["reference"])
                and math.isnan(first["meant"])
            ):
                ref = (
                    f"Reference for this call on the post's inputs (float32): documented formula "
                    f"{fmt_float(first['reference'])}, the KL the post means {fmt_float(first['meant'])}."
                )
            items.append(
                {
                    "title": f"{claim_id}: {first['statement']}",
                    "spans": spans,
                    "explanation": " ".join(x for x in (first["explanation"], ref) if x),
                    "fix": first["fix"],
                }
            )
    ctx = {"intro": intro, "claims": items}
    return Section("claims", "Published claims vs reality", data, ctx, filterable=True)


def sec_cuda(d: ReportData) -> Section:
    """Second oracle: CUDA against CPU on the same release and inputs."""
    intro = (
        "The same inputs on CUDA and on CPU of one release, compared with each other (a second oracle beside the "
        "analytic reference): same bits, close within the dtype tolerance, different values, or a different "
        "verdict; stale: one side's result was made from other inputs (run it again)."
    )
    comp = _cuda_vs_cpu(d) if len(d.frame) else pd.DataFrame()
    if comp.empty:
        return Section(
            "cuda",
            "CUDA vs CPU",
            [],
            {"intro": intro, "tables": [], "notes": ["No release has both CUDA and CPU results."]},
        )
    kinds = ["same", "close", "differ", "outcome differs", "stale"]
    counts = comp.groupby(["release", "agreement"]).size().unstack(fill_value=0).reindex(columns=kinds, fill_value=0)
    rels = sorted(counts.index, key=release_key)
    summary = [[rel, *[int(counts.loc[rel, k]) for k in kinds], int(counts.loc[rel].sum())] for rel in rels]
    bad = comp[comp["agreement"].isin(["differ", "outcome differs"])]
    bad = bad.assign(ix=[d.case_index.get(i, 0) for i in bad["id"]]).sort_values(["release", "ix"], kind="mergesort")
    shown = set(zip(bad["release"].tolist(), bad["id"].tolist()))
    value = {
        (rel, cid, dev): v
        for rel, cid, dev, v in zip(d.col("release"), d.col("id"), d.col("device"), d.col("value"))
        if (rel, cid) in shown
    }
    detail = [
        [
            r.release,
            Cell(r.id, code=True),
            r.agreement,
            f"{r.cpu_verdict}: {value[(r.release, r.id, 'cpu')]}",
            f"{r.cuda_verdict}: {value[(r.release, r.id, 'cuda')]}",
        ]
        for r in bad.itertuples(index=False)
    ]
    groups = bad.groupby(["release", "family", "dtype", "agreement"]).size().reset_index(name="cases")
    tables = [
        Table(
            ["release", *kinds, "cases"],
            [[str(x) for x in row] for row in summary],
            row_attrs=[{"release": row[0]} for row in summary],
        )
    ]
    if len(groups):
        tables.append(
            Table(
                ["release", "family", "dtype", "agreement", "cases"],
                [[str(x) for x in row] for row in groups.values.tolist()],
                row_attrs=[{"release": row[0], "dtype": row[2]} for row in groups.values.tolist()],
            )
        )
        tables.append(
            Table(
                ["release", "case", "agreement", "cpu", "cuda"],
                detail,
                markdown=False,
                caption=f"every differing case ({len(detail)})",
                row_attrs=[{"release": r.release, "dtype": r.dtype} for r in bad.itertuples(index=False)],
            )
        )
    data = {
        "counts": {row[0]: dict(zip(kinds, row[1:-1])) for row in summary},
        "differences": [
            {
                "release": r.release,
                "case": r.id,
                "agreement": r.agreement,
                "cpu": f"{r.cpu_verdict}: {value[(r.release, r.id, 'cpu')]}",
                "cuda": f"{r.cuda_verdict}: {value[(r.release, r.id, 'cuda')]}",
            }
            for r in bad.itertuples(index=False)
        ],
    }
    return Section(
        "cuda",
        "CUDA vs CPU",
        data,
        {"intro": intro, "tables": tables, "notes": [] if len(groups) else ["No differences."]},
        filterable=True,
    )


def sec_families(d: ReportData) -> Section:
    """Families × releases: how many of each family's cases pass (the share, not the worst
    verdict), per device; HTML only (README's tables stay narrow)."""
    from .casepages import family_slug

    if not len(d.frame):
        return Section("matrix", "Families × releases", {}, {"intro": "No results.", "tables": []}, markdown=False)
    tables, data = [], {}
    fam_of = d.col("family")
    for dev in d.data_devices:
        rels = [r for r in d.data_releases if d.cells[(r, dev)]["results"]]
        flat = Counter(
            (fam, rel, v)
            for fam, rel, dv, v in zip(fam_of, d.col("release"), d.col("device"), d.col("verdict"))
            if dv == dev
        )  # counted in one pass, then grouped: one Counter per (family, release), not per row
        counts: dict = {}
        for (fam, rel, v), n in flat.items():
            c = counts.get((fam, rel))
            if c is None:
                c = counts[(fam, rel)] = Counter()
            c[v] = n
        fams = _axis_order(d, "family", {f for f, _ in counts})
        rows, attrs = [], []
        for fam in fams:
            row = [Cell(fam, href=f"cases/{family_slug(fam)}.html")]
            for rel in rels:
                c = counts.get((fam, rel))
                if not c:
                    row.append(Cell("·", "not run", filters={"release": rel}))
                    continue
                n = sum(c.values())
                ok = c.get("pass", 0) + c.get("expected-error", 0)
                bad = sum(c.get(v, 0) for v in PROBLEMS)
                worst = "pass" if ok == n else ("error" if bad else min(c, key=verdicts.RANK.get))
                tip = ", ".join(f"{v} {c[v]}" for v in verdicts.NAMES if c.get(v))
                row.append(Cell(f"{ok}/{n}", worst, title=tip, filters={"release": rel}))
            rows.append(row)
            attrs.append({"verdict": " ".join(sorted({v for rel in rels for v in counts.get((fam, rel), ())}))})
            data.setdefault(dev, {})[fam] = {rel: dict(counts[(fam, rel)]) for rel in rels if (fam, rel) in counts}
        tables.append(
            Table(
                ["family", *(Cell(rel, filters={"release": rel}) for rel in rels)],
                rows,
                cls="matrix",
                caption=f"{dev}: cases that pass (or raise as documented) of those run; hover for every verdict",
                markdown=False,
                row_attrs=attrs,
                attrs={"device": dev},
            )
        )
    intro = (
        "Per input family and release, how many cases match the reference. The colour is green when all do, red "
        "when some fail, and otherwise the most severe other verdict (not implemented, undefined reference)."
    )
    ctx = {"intro": intro, "tables": tables}
    return Section("matrix", "Families × releases", data, ctx, markdown=False, filterable=True)


def sec_warnings(d: ReportData) -> Section:
    counts = Counter(
        (text, rk, dev)
        for texts, rk, dev in zip(d.col("warnings"), d.col("rk"), d.col("device"))
        if isinstance(texts, list)
        for text in texts
    )
    items: dict = {}
    for (text, rk, dev), n in sorted(counts.items()):
        items.setdefault(text, {}).setdefault(dev, {})[int(rk)] = int(n)
    rows = []
    for text, by_dev in items.items():
        texts = []
        for dev in sorted(by_dev, key=device_key):
            per_rel = by_dev[dev]
            parts, run = [], []
            for rk in sorted(per_rel):  # runs of equal counts over adjacent releases
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
                "_filters": {
                    "release": " ".join(d.releases[rk] for rk in sorted(all_rks)),
                    "device": " ".join(sorted(by_dev, key=device_key)),
                },
            }
        )
    rows.sort(key=lambda r: (r["first"], -r["total"], r["category"], r["message"]))
    intro = (
        f"{len(rows)} distinct warnings (category and message), with the number of results (case runs) that "
        "emitted each."
    )
    table = Table(
        ["category", "message", "seen in", "results per device and release"],
        [[r["category"], r["message"], r["releases"], r["per_release"]] for r in rows],
        cls="warnings",
        row_attrs=[r["_filters"] for r in rows],
    )
    data = [{k: v for k, v in r.items() if k not in ("first", "_filters")} for r in rows]
    return Section(
        "warnings",
        "Warnings",
        data,
        {"intro": intro, "tables": [table] if rows else [], "notes": [] if rows else ["No warnings recorded."]},
        filterable=True,
    )


def environment_summary(d: ReportData) -> dict:
    """Origin of the report: the newest run's date (from the results), the harness
    versions that made them, and a short summary of the machines."""
    import re

    started = sorted(str(r.get("started")) for r in d.runs if r.get("started"))
    harness = sorted({str(r.get("harness")) for r in d.runs if r.get("harness")})
    systems = set()
    for r in d.runs:
        plat = str(r.get("env", {}).get("platform", ""))
        m = re.match(r"([A-Za-z]+)-.*?-(x86_64|aarch64|arm64|AMD64|i686)", plat)
        if m:
            systems.add(f"{m.group(1)} {m.group(2)}")
    pythons = sorted({str(r.get("env", {}).get("python", "")) for r in d.runs} - {""}, key=release_key)
    return {
        "newest_run": started[-1] if started else None,
        "newest_date": started[-1][:10] if started else None,
        "oldest_run": started[0] if started else None,
        "harness_versions": harness,
        "systems": sorted(systems),
        "pythons": pythons,
        "python_span": (pythons[0] if len(pythons) == 1 else f"{pythons[0]}–{pythons[-1]}") if pythons else "",
        "runs": len(d.runs),
        "files": len(d.files),
    }


def sec_environment(d: ReportData) -> Section:
    headers = ["release", "device", "torch", "Python", "platform", "device name", "started", "harness", "file"]
    rows, data = [], []
    for run in d.runs:
        env = run.get("env", {})
        rows.append(
            [
                str(x)
                for x in (
                    release_of(env.get("torch")),
                    run.get("device", ""),
                    env.get("torch") or "",
                    env.get("python") or "",
                    env.get("platform") or "",
                    env.get("device_name") or "",
                    run.get("started") or "",
                    run.get("harness") or "",
                    run["source"],
                )
            ]
        )
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
    intro = "One line per run header (a run of one release on one device; a resumed run adds a header)."
    run_attrs = [{"release": row[0], "device": row[1]} for row in rows]
    tables = [Table(headers, rows, cls="env", row_attrs=run_attrs)] if rows else []
    if file_rows:
        tables.append(
            Table(
                ["file", "release", "device", "run headers", "results", "cases in run", "note"],
                file_rows,
                caption="Results files",
                row_attrs=[{"release": f["release"], "device": f["device"]} for f in d.files],
            )
        )
    return Section(
        "environment",
        "Environment of each run",
        {"runs": data, "files": d.files, "notes": d.notes},
        {"intro": intro, "tables": tables, "notes": list(d.notes) or ([] if rows else ["No runs."])},
        filterable=True,
    )
