"""Published claims vs reality: the seed post's examples and advice, checked per release.

Example claims are lines a published snippet prints; the snippet runs verbatim in the
worker on every release (plan entries ``claim/<snippet>``).  Advice claims are
propositions checked against the case matrix's verdict rows.  Each (claim, release,
device) gets one status: holds, holds (wrong reason), does not hold, not applicable,
not run -- with the measured value and an explanation grounded in the reference.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import reference
from .cases import CaseFileError, check_schema, read_yaml
from .inputs import round_to_dtype

if TYPE_CHECKING:
    import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
CLAIMS_PATH = ROOT / "cases" / "claims" / "seed-post.yaml"
SCHEMA_PATH = ROOT / "cases" / "claims.schema.json"
PREFIX = "claim/"
STATUSES = ["holds", "holds (wrong reason)", "does not hold", "not applicable", "not run", "stale"]
STALE_DETAIL = "made from other inputs than today's cases: run the release again"


class _Stale(Exception):
    """A row an advice check reads was made from other inputs: it gives no status."""


NUMBER = re.compile(r"[-+]?(?:nan|inf|\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)")


@dataclass(frozen=True)
class Snippet:
    id: str
    code: str
    note: str = ""


@dataclass(frozen=True)
class Claim:
    id: str
    kind: str
    explanation: str
    fix: str
    snippet: str | None = None
    line: int | None = None
    printed: str | None = None
    author_says: str | None = None
    call: dict = field(default_factory=dict)
    args: dict = field(default_factory=dict)
    meaning: dict = field(default_factory=dict)
    tolerance: float | None = None
    text: str | None = None
    check: str | None = None

    @property
    def statement(self) -> str:
        return self.text or f'prints "{self.printed}"'


def load(path=CLAIMS_PATH) -> tuple[list[Snippet], list[Claim]]:
    """Read and validate a claims file (errors name file and line, like case files)."""
    path = Path(path)
    doc = read_yaml(path)
    check_schema(doc, path, SCHEMA_PATH)
    snippets = [Snippet(s["id"], s["code"], s.get("note", "")) for s in doc["snippets"]]
    known = {s.id for s in snippets}
    claims = []
    for i, raw in enumerate(doc["claims"]):
        example = raw["kind"] == "example"
        need = ("snippet", "line", "printed", "call", "args", "meaning") if example else ("text", "check")
        for key in need:
            if key not in raw:
                raise CaseFileError(path, raw.line, f"claims[{i}]", f"a {raw['kind']} claim needs '{key}'")
        if raw["kind"] == "example" and raw["snippet"] not in known:
            raise CaseFileError(
                path, raw.key_lines["snippet"], f"claims[{i}].snippet", f"unknown snippet {raw['snippet']!r}"
            )
        claims.append(Claim(**{k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}))
    return snippets, claims


def plan_entries(snippets) -> list[dict]:
    """Worker plan entries that run each snippet verbatim."""
    return [{"id": PREFIX + s.id, "snippet": s.code, "values": []} for s in snippets]


# ------------------------------------------------------------------ examples


def _last_number(text: str | None) -> float | None:
    found = NUMBER.findall(text or "")
    return float(found[-1]) if found else None


def _tolerance(claim: Claim) -> float:
    """How close a measured value must be: the declared tolerance, else half a unit of
    the last printed decimal (0.00000 -> 5e-6), else 1e-9 relative for full reprs."""
    if claim.tolerance is not None:
        return claim.tolerance
    shown = NUMBER.findall(claim.printed or "")[-1]
    if "e" in shown.lower() or "." not in shown:
        return abs(float(shown)) * 1e-9
    decimals = len(shown.split(".")[1])
    return 0.5 * 10.0**-decimals if decimals > 1 else abs(float(shown)) * 1e-9


def _encode(values: np.ndarray, meaning: str) -> np.ndarray:
    return np.log(values) if meaning == "logprob" else values


def call_is_kl(claim: Claim) -> bool:
    """Does this call compute KL(second || first) for arguments holding what ``meaning``
    says, for *any* distributions?  Checked on random ones with the reference."""
    rng = np.random.default_rng(0)
    q = rng.dirichlet(np.ones(4), size=3)
    p = rng.dirichlet(np.ones(4), size=3)
    first, second = _encode(q, claim.meaning["first"]), _encode(p, claim.meaning["second"])
    doc = reference.documented(first, second, claim.call["reduction"], claim.call["log_target"])
    meant = reference.math(
        first, second, claim.meaning["first"], claim.meaning["second"], claim.call["reduction"], "intended"
    )
    if doc.forward.undefined.any():
        return False
    return bool(np.allclose(doc.forward.value, meant.forward.value, rtol=1e-9, atol=1e-12))


def reference_values(claim: Claim) -> tuple[float, float]:
    """(documented value of the call, KL the author means) on the post's inputs in float32."""
    first = round_to_dtype(np.array(claim.args["first"], dtype=float), "float32")
    second = round_to_dtype(np.array(claim.args["second"], dtype=float), "float32")
    doc = reference.documented(first, second, claim.call["reduction"], claim.call["log_target"])
    meant = reference.math(
        first, second, claim.meaning["first"], claim.meaning["second"], claim.call["reduction"], "intended"
    )

    def val(q):
        return float("nan") if q.forward.all_undefined else float(q.forward.value)

    return val(doc), val(meant)


def judge_example(claim: Claim, record: dict | None) -> dict:
    """Status of one printed-line claim given the snippet's result record."""
    doc_value, meant_value = reference_values(claim)
    out = {
        "expected": claim.printed,
        "reference": doc_value,
        "meant": meant_value,
        "printed": None,
        "identical": False,
        "measured": None,
    }
    if record is None:
        return {**out, "status": "not run", "detail": "no result for this snippet"}
    if record.get("status") in ("crash", "timeout"):
        return {**out, "status": "does not hold", "detail": f"snippet {record['status']}: {record.get('detail', '')}"}
    printed = record.get("printed") or []
    line = printed[claim.line - 1] if len(printed) >= claim.line else None
    out.update(printed=line, identical=line == claim.printed, measured=_last_number(line))
    if line is None:
        err = record.get("error") or {}
        why = f"raises {err.get('type')}: {err.get('message')}" if err else f"printed {len(printed)} line(s)"
        return {**out, "status": "does not hold", "detail": why}
    claimed = _last_number(claim.printed)
    measured = out["measured"]
    holds = measured is not None and not math.isnan(measured) and abs(measured - claimed) <= _tolerance(claim)
    if not holds:
        return {**out, "status": "does not hold", "detail": f"prints {line!r}, the post prints {claim.printed!r}"}
    is_kl = call_is_kl(claim)
    if (claim.author_says == "correct") != is_kl:
        said = "the post calls it correct" if claim.author_says == "correct" else "the post calls it incorrect"
        what = "computes the KL divergence" if is_kl else "does not compute the KL divergence in general"
        return {**out, "status": "holds (wrong reason)", "detail": f"value reproduced, but {said} and the call {what}"}
    return {**out, "status": "holds", "detail": "value reproduced"}


# ------------------------------------------------------------------ advice


def _row(rows, family, reduction, lt, order="intended"):
    """The float64 functional-form row of one case."""
    from .axes import case_id

    values = {"reduction": reduction, "log_target": lt, "order": order, "dtype": "float64", "api": "functional"}
    row = rows.get(case_id(family, values))
    if row is not None and row.get("verdict") == "stale":
        raise _Stale
    return row


def _is_kl(row) -> bool:
    return row["forward"] == "pass" and not row["pitfall"]


def _value(row):
    out = row.get("output") if row is not None else None
    if not out or not out.get("values"):
        return None
    return out["values"][0] if len(out["values"]) == 1 else out["values"]


def _check_batchmean_not_mean(rows, release):
    b, m = _row(rows, "softmax-4x5", "batchmean", False), _row(rows, "softmax-4x5", "mean", False)
    if b is None or m is None:
        return "not run", None, "case rows missing"
    holds = _is_kl(b) and not _is_kl(m)
    return (
        ("holds" if holds else "does not hold"),
        {"batchmean": _value(b), "mean": _value(m)},
        f"batchmean {'is' if _is_kl(b) else 'is not'} the KL; mean {'is' if _is_kl(m) else 'is not'}",
    )


def _check_mean_from_2(rows, release):
    from .versions import is_before

    if is_before(release, "2.0.0.dev0"):  # 2.0 and every build of it on
        return "not applicable", None, "a prediction about 2.0 and later"
    b, m = _row(rows, "softmax-4x5", "batchmean", False), _row(rows, "softmax-4x5", "mean", False)
    if b is None or m is None:
        return "not run", None, "case rows missing"
    same = _is_kl(m)
    return (
        ("holds" if same else "does not hold"),
        {"batchmean": _value(b), "mean": _value(m)},
        "'mean' equals 'batchmean'" if same else "'mean' still divides by every element",
    )


def _check_log_target_probs(rows, release):
    t, f = _row(rows, "prob-target", "batchmean", True), _row(rows, "prob-target", "batchmean", False)
    if t is None or f is None:
        return "not run", None, "case rows missing"
    holds = _is_kl(t) and not _is_kl(f)
    detail = (
        f"with probability targets log_target=True {'gives' if _is_kl(t) else 'does not give'} the KL; "
        f"log_target=False {'gives' if _is_kl(f) else 'does not give'} it"
    )
    measured = {"log_target=True": _value(t), "log_target=False": _value(f)}
    return ("holds" if holds else "does not hold"), measured, detail


def _check_never_swap(rows, release):
    rs = [_row(rows, "softmax-4x5", "batchmean", lt, "swapped") for lt in (False, True)]
    if any(r is None for r in rs):
        return "not run", None, "case rows missing"
    wrong = [not _is_kl(r) for r in rs]
    return (
        ("holds" if all(wrong) else "does not hold"),
        {"log_target=False": _value(rs[0]), "log_target=True": _value(rs[1])},
        "swapped calls are not the KL for either log_target" if all(wrong) else "a swapped call gave the KL",
    )


def _check_symmetric(rows, release):
    a = _row(rows, "softmax-4x5", "batchmean", True)
    b = _row(rows, "softmax-4x5", "batchmean", True, "swapped")
    va, vb = _value(a), _value(b)
    if va is None or vb is None:
        return "not run", None, "case rows missing"
    same = math.isclose(va, vb, rel_tol=1e-6)
    return (
        ("holds" if same else "does not hold"),
        {"KL(p||q)": va, "KL(q||p)": vb},
        "equal" if same else f"KL(p||q) = {va:.6g} but KL(q||p) = {vb:.6g}",
    )


CHECKS = {
    "batchmean_not_mean": _check_batchmean_not_mean,
    "mean_matches_batchmean_from_2": _check_mean_from_2,
    "log_target_true_for_probabilities": _check_log_target_probs,
    "swapped_is_not_kl": _check_never_swap,
    "kl_is_symmetric": _check_symmetric,
}


def evaluate_claims(frame, claims=None) -> pd.DataFrame:
    """One row per (claim, release, device): status, measured, detail, explanation, fix."""
    import pandas as pd

    from .versions import release_key

    if claims is None:
        _, claims = load()
    snippet_records = frame.attrs.get("snippets", [])
    if frame.attrs:  # pandas deep-copies attrs on every operation: work on a frame without them
        frame = frame.copy(deep=False)
        frame.attrs = {}
    keys = sorted(
        {(r["release"], r["device"]) for r in snippet_records}
        | (set(zip(frame["release"].tolist(), frame["device"].tolist())) if len(frame) else set()),
        key=lambda k: (release_key(k[0]), k[1]),
    )
    by_release = {}
    if len(frame):  # the checks read the rows _row() names: float64, functional (not the whole frame)
        used = frame[(frame["dtype"] == "float64") & (frame["api"] == "functional")]
        cols = list(used.columns)
        for (rel, dev), group in used.groupby(["release", "device"]):
            by_release[(rel, dev)] = {
                row["id"]: row for row in (dict(zip(cols, vals)) for vals in zip(*(group[c].tolist() for c in cols)))
            }
    snippets = {(r["release"], r["device"], r["id"]): r for r in snippet_records}
    rows = []
    for claim in claims:
        for rel, dev in keys:
            base = {
                "claim": claim.id,
                "kind": claim.kind,
                "statement": claim.statement,
                "release": rel,
                "device": dev,
                "explanation": claim.explanation,
                "fix": claim.fix,
            }
            if claim.kind == "example":
                res = judge_example(claim, snippets.get((rel, dev, PREFIX + claim.snippet)))
                rows.append({**base, **res})
            else:
                try:
                    status, measured, detail = CHECKS[claim.check](by_release.get((rel, dev), {}), rel)
                except _Stale:
                    status, measured, detail = "stale", None, STALE_DETAIL
                rows.append({**base, "status": status, "measured": measured, "detail": detail})
    return pd.DataFrame(rows)
