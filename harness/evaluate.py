"""Stage 5: verdicts.  Each result record is compared with the analytic reference.

Verdicts (most to least severe): crash, timeout, error, nan, mismatch, unsupported,
undefined, expected-error, stale, pass.  Separately, ``pitfall`` marks a call that
succeeds and matches the documented semantics but is not the KL divergence the user
meant (swapped arguments, 'mean', probabilities as input, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import reference
from .inputs import call_inputs

if TYPE_CHECKING:
    import pandas as pd

    from .cases import Case

SEVERITY = ["crash", "timeout", "error", "nan", "mismatch", "unsupported", "undefined", "expected-error",
            "stale", "pass"]
RANK = {v: i for i, v in enumerate(SEVERITY)}

# rtol, atol per dtype; error bound = atol + rtol * max(|reference|, magnitude of the summed terms)
TOLERANCES = {
    "float64": {"rtol": 1e-9, "atol": 1e-12},
    "float32": {"rtol": 2e-5, "atol": 1e-6},
    "bfloat16": {"rtol": 4e-2, "atol": 1e-3},
    "float16": {"rtol": 6e-3, "atol": 1e-4},
}

# (pattern on "Type: message", reason) -> unsupported, not an error
UNSUPPORTED = [
    (r"unexpected keyword argument 'log_target'", "log_target argument absent in this release"),
    (r"not implemented for '(Half|BFloat16)'", "dtype not implemented for this op/device"),
    (r"derivative for .*target.* is not implemented", "gradient w.r.t. target not implemented"),
    (r"torch has no dtype", "dtype absent in this release"),
]


def tolerance(case: Case) -> dict:
    return {**TOLERANCES[case.dtype], **case.family.tolerance.get(case.dtype, {})}


@dataclass
class Comparison:
    verdict: str
    detail: str = ""
    max_abs: float = float("nan")
    max_rel: float = float("nan")


def _describe(values: np.ndarray) -> str:
    if values.size == 0:
        return "empty"
    if np.isnan(values).any():
        return "nan"
    if np.isinf(values).any():
        return "inf"
    return "finite"


def compare(got: dict, ref: reference.Quantity, tol: dict) -> Comparison:
    """Compare a recorded tensor {shape, values} with a reference quantity."""
    out = np.array(got["values"], dtype=np.float64).reshape(got["shape"])
    if tuple(out.shape) != tuple(ref.value.shape):
        return Comparison("mismatch", f"shape {list(out.shape)}, expected {list(ref.value.shape)}")
    defined = ~ref.undefined
    if ref.undefined.size and not defined.any():
        return Comparison("undefined", f"reference undefined; torch returned {_describe(out)}")
    o, r, m = out[defined], ref.value[defined], ref.magnitude[defined]
    r_nan, o_nan = np.isnan(r), np.isnan(o)
    bad = np.isfinite(r) & ~np.isfinite(o)
    if bad.any():
        return Comparison("nan", f"{int(bad.sum())} of {r.size} values {_describe(o[bad])} where reference is finite")
    if (o_nan & ~r_nan).any():
        return Comparison("mismatch", f"{int((o_nan & ~r_nan).sum())} values nan where reference is infinite")
    if (r_nan & ~o_nan).any():
        return Comparison("mismatch", "reference is nan (nan input) but torch returned a number")
    both_inf = np.isinf(r)
    if (both_inf & (o != r)).any():
        return Comparison("mismatch", "infinite reference not matched")
    fin = np.isfinite(r)
    if not fin.any():
        return Comparison("pass", _undefined_note(ref))
    err = np.abs(o[fin] - r[fin])
    bound = tol["atol"] + tol["rtol"] * np.maximum(np.abs(r[fin]), m[fin])
    max_abs = float(err.max())
    nonzero = r[fin] != 0
    max_rel = float((err[nonzero] / np.abs(r[fin][nonzero])).max()) if nonzero.any() else float("nan")
    if (err > bound).any():
        return Comparison("mismatch", f"max abs err {max_abs:.3g}, max rel err {max_rel:.3g}", max_abs, max_rel)
    return Comparison("pass", _undefined_note(ref), max_abs, max_rel)


def _undefined_note(ref):
    n = int(ref.undefined.sum())
    return f"{n} undefined element(s) not compared" if n else ""


def classify_error(err: dict, expected: bool) -> tuple[str, str]:
    message = str(err.get("message")).split("\nException raised from")[0]
    text = f"{err.get('type')}: {message}"
    if expected:
        return "expected-error", text
    for pattern, reason in UNSUPPORTED:
        if re.search(pattern, text):
            return "unsupported", reason
    return "error", text


def worst(*verdicts) -> str:
    vs = [v for v in verdicts if v]
    return min(vs, key=lambda v: RANK[v]) if vs else "pass"


@dataclass
class CaseReference:
    documented: reference.Reference
    math: reference.Reference


_REF_CACHE: dict = {}


def case_reference(case: Case) -> CaseReference:
    """Both references for a case; independent of the release, so cached."""
    if case.id not in _REF_CACHE:
        ci = call_inputs(case)
        _REF_CACHE[case.id] = CaseReference(
            reference.documented(ci.first, ci.second, case.reduction, case.log_target),
            reference.math(ci.meant_input, ci.meant_target, ci.input_meaning, ci.target_meaning,
                           case.reduction, case.order),
        )
    return _REF_CACHE[case.id]


def pitfall_reason(case: Case) -> str:
    """Why a documented-correct call is not the KL the user meant (first matching rule)."""
    fam = case.family
    meaning = fam.meaning
    if case.order == "swapped":
        return "arguments swapped: kl_div(input, target) takes the prediction (log q) first"
    if fam.generator == "literal" and meaning["input"] == "prob":
        return "input holds probabilities: pass log-probabilities (log_softmax) as input"
    if fam.generator == "literal" and (meaning["target"] == "logprob") != case.log_target:
        is_log = meaning["target"] == "logprob"
        return f"target holds {'log-' if is_log else ''}probabilities: set log_target={is_log}"
    ndim = len(fam.shape) if fam.generator != "literal" else None
    if case.reduction == "mean":
        return "'mean' divides by every element, not per distribution: use reduction='batchmean'"
    if case.reduction == "batchmean" and ndim == 1:
        return "'batchmean' on 1-d input divides by the number of classes: add a batch dimension"
    if case.reduction == "batchmean" and ndim is not None and ndim >= 3:
        return "'batchmean' divides by size(0) only: inner dimensions are summed, not averaged"
    return "result differs from KL(target || input) for the inputs' meaning"


def evaluate_record(case: Case, rec: dict, digest: str | None = None) -> dict:
    """One verdict row (a flat dict) for one result record."""
    row = {
        "id": case.id, "family": case.family.label, "generator": case.family.generator, **case.axes(),
        "device": rec.get("device"), "status": rec.get("status", "ok"),
        "verdict": "pass", "forward": None, "grad": None, "detail": "", "pitfall": False, "pitfall_reason": "",
        "max_abs_err": float("nan"), "max_rel_err": float("nan"),
        "warnings": [f"{w['category']}: {w['message']}" for w in rec.get("warnings", [])],
        "output": rec.get("output"), "seconds": rec.get("seconds"),
    }
    status = rec.get("status", "ok")
    if status in ("crash", "timeout"):
        row.update(verdict=status, forward=status, detail=rec.get("detail", ""))
        return row
    if digest is not None and rec.get("digest") not in (None, digest):
        row.update(verdict="stale", forward="stale", detail="inputs changed since this result was recorded")
        return row
    ref = case_reference(case)
    tol = tolerance(case)
    expected_error = bool(case.family.expect_error or ref.documented.broadcast_error)
    if rec.get("error"):
        fwd, detail = classify_error(rec["error"], expected_error)
        row.update(verdict=fwd, forward=fwd, detail=detail)
        return row
    if expected_error:
        row.update(verdict="mismatch", forward="mismatch",
                   detail=f"expected an error ({ref.documented.broadcast_error or 'declared'}), got a value")
        return row
    cmp = compare(rec["output"], ref.documented.forward, tol)
    row.update(forward=cmp.verdict, detail=cmp.detail, max_abs_err=cmp.max_abs, max_rel_err=cmp.max_rel)
    grad_verdicts, grad_details = [], []
    if case.family.grad:
        for arg in ("first", "second"):
            if arg in rec.get("grad_errors", {}):
                v, d = classify_error(rec["grad_errors"][arg], False)
            elif rec.get("grads", {}).get(arg) is None:
                v, d = "error", "no gradient recorded"
            else:
                c = compare(rec["grads"][arg], ref.documented.grads[arg], tol)
                v, d = c.verdict, c.detail
            grad_verdicts.append(v)
            if v != "pass":
                grad_details.append(f"grad[{arg}] {v}: {d}")
        row["grad"] = worst(*grad_verdicts)
    row["verdict"] = worst(cmp.verdict, row["grad"])
    if grad_details:
        row["detail"] = "; ".join(x for x in [row["detail"]] + grad_details if x)
    if cmp.verdict in ("pass", "undefined"):  # the call did what the documentation says
        meant = compare(rec["output"], ref.math.forward, tol)
        if meant.verdict != "pass":
            row.update(pitfall=True, pitfall_reason=pitfall_reason(case))
    return row


def evaluate(cases_by_id: dict, result_files) -> pd.DataFrame:
    """Verdict rows for every result in the given ResultFile objects, as a DataFrame."""
    import pandas as pd

    from .inputs import plan_entry
    from .runner import input_digest

    digests: dict = {}
    rows, snippets = [], []
    unknown = 0
    for rf in result_files:
        for rec in rf.results:
            if rec["id"].startswith("claim/"):  # published snippets, judged by harness.claims
                env = rf.runs[rec["run"]].get("env", {})
                snippets.append({**rec, "release": release_of(env.get("torch")), "torch": env.get("torch")})
                continue
            case = cases_by_id.get(rec["id"])
            if case is None:
                unknown += 1
                continue
            if case.id not in digests:
                digests[case.id] = input_digest(plan_entry(case, {}))
            row = evaluate_record(case, rec, digests[case.id])
            run = rf.runs[rec["run"]]
            env = run.get("env", {})
            row.update(torch=env.get("torch"), release=release_of(env.get("torch")), python=env.get("python"),
                       source=str(rf.path), cuda=env.get("cuda"), device_name=env.get("device_name"))
            rows.append(row)
    frame = pd.DataFrame(rows)
    frame.attrs["unknown_ids"] = unknown
    frame.attrs["snippets"] = snippets
    frame.attrs["runs"] = [{**run, "source": str(rf.path)} for rf in result_files for run in rf.runs]
    return frame


def release_of(torch_version) -> str:
    """'2.5.1+cu124' -> '2.5'; dev builds keep their full version."""
    if not torch_version:
        return "?"
    base = str(torch_version).split("+")[0]
    if "dev" in base or "a" in base.split(".")[-1]:
        return base
    return ".".join(base.split(".")[:2])


def release_sort_key(release: str) -> tuple:
    nums = [int(x) for x in re.findall(r"\d+", release)[:3]]
    return tuple(nums) + (release,)
