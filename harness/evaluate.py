"""Stage 5: verdicts.  Each result record is compared with the analytic reference.

The verdicts are declared in :mod:`harness.verdicts`.  Separately, ``pitfall`` marks a call that
succeeds and matches the documented semantics but is not the KL divergence the user
meant (swapped arguments, 'mean', probabilities as input, ...).

Everything here is a pure function of a case and a record; reading and judging many results
files, and the caches that make that fast, are :mod:`harness.evaluation`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import axes, phases, reference, tensors
from .inputs import call_inputs
from .memo import Memo
from .verdicts import worst

if TYPE_CHECKING:
    from typing import Callable

    from .cases import Case


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


def compare(got: dict, ref: reference.Quantity, tol: dict, against: str = "documented") -> Comparison:
    """Compare a recorded tensor with a reference quantity: an exact one ({shape, values})
    here, a summarised one (harness.tensors) by the check made against the ``against``
    reference ('documented' or 'math') when it was recorded."""
    if tensors.is_summary(got):
        return _compare_summary(got, ref, tol, against)
    fast = _compare_small(got, ref, tol)
    if fast is not None:
        return fast
    out = np.asarray(got["values"], dtype=np.float64).reshape(got["shape"])
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


SMALL = 64  # elements: below this, a pass is found in plain Python (numpy's per-call overhead is larger)
_PLAIN = Memo(1 << 16)  # id(Quantity) -> (the Quantity, its values and magnitudes as floats, or None)


def _plain(ref: reference.Quantity):
    """(values, magnitudes) of a small reference whose every element is defined and
    finite, as Python floats; None otherwise (compare's numpy path then decides)."""
    if not 0 < ref.value.size <= SMALL:
        return None
    hit = _PLAIN.get(id(ref))
    if hit is not None and hit[0] is ref:
        return hit[1]
    plain = None
    if not ref.undefined.any() and np.isfinite(ref.value).all():
        plain = (ref.value.ravel().tolist(), ref.magnitude.ravel().tolist(), tuple(ref.value.shape))
    _PLAIN.put(id(ref), (ref, plain))
    return plain


def _compare_small(got: dict, ref: reference.Quantity, tol: dict) -> Comparison | None:
    """compare's verdict where it is a pass of a small tensor against a defined, finite
    reference, found in plain Python with the same float64 operations; None for anything
    else (the numpy path judges it, and words the detail).  Only a pass is returned: where
    the plain check finds an element beyond tolerance, numpy's decides."""
    plain = _plain(ref)
    if plain is None:
        return None
    rv, mv, shape = plain
    vals = got["values"]
    if len(vals) != len(rv) or tuple(got["shape"]) != shape:
        return None
    atol, rtol = tol["atol"], tol["rtol"]
    max_abs, max_rel = 0.0, float("-inf")
    for o, r, m in zip(vals, rv, mv):
        o = float(o)
        if not math.isfinite(o):
            return None
        err = abs(o - r)
        if err > atol + rtol * max(abs(r), m) or m != m:
            return None
        if err > max_abs:
            max_abs = err
        if r != 0:
            rel = err / abs(r)
            if rel > max_rel:
                max_rel = rel
    return Comparison("pass", "", max_abs, max_rel if max_rel != float("-inf") else float("nan"))


def _compare_summary(got: dict, ref: reference.Quantity, tol: dict, against: str) -> Comparison:
    if tuple(got["shape"]) != tuple(ref.value.shape):
        return Comparison("mismatch", f"shape {list(got['shape'])}, expected {list(ref.value.shape)}")
    chk = (got.get("checks") or {}).get(against)
    if chk is None:
        return Comparison("stale", f"recorded as a summary without a check against the {against} reference: run again")
    if chk.get("tolerance") != tol:
        return Comparison("stale", f"summary checked with tolerance {chk.get('tolerance')}, now {tol}: run again")
    nan = float("nan")
    return Comparison(
        chk["verdict"],
        chk["detail"],
        nan if chk["abs"] is None else chk["abs"],
        nan if chk["rel"] is None else chk["rel"],
    )


def summarizer(cases_by_id: dict):
    """A function that bounds a result record while the run is recorded: each tensor the
    runner decoded as an array (more than harness.tensors.LIMIT elements) becomes its
    summary, with the checks against the case's references that the verdict needs (the
    documented forward and gradients, and the meant KL for the forward: the pitfall).
    A record of an unknown case is summarised without checks (judged stale)."""
    memo: dict = {}

    def refs(case):
        if memo.get("id") != case.id:
            memo.clear()
            memo.update(id=case.id, refs=case_references(case))
        return memo["refs"]

    def one(case, t, quantities):
        arr = np.asarray(t["array"], dtype=np.float64).reshape(t["shape"])
        checks = {}
        if case is not None:
            tol = tolerance(case)
            for name, q in quantities().items():
                c = compare({"shape": t["shape"], "values": arr.reshape(-1)}, q, tol)
                checks[name] = tensors.check(c.verdict, c.detail, arr, q.value, ~q.undefined, case.dtype, tol)
        return tensors.summarize(arr, t["dtype"], checks)

    def summarize(rec: dict) -> dict:
        case = cases_by_id.get(rec.get("id"))
        out = rec.get("output")
        if isinstance(out, dict) and "array" in out:
            rec["output"] = one(
                case, out, lambda: {"documented": refs(case).documented.forward, "math": refs(case).math.forward}
            )
        for name, g in list((rec.get("grads") or {}).items()):
            if isinstance(g, dict) and "array" in g:
                rec["grads"][name] = one(case, g, lambda name=name: {"documented": refs(case).documented.grads[name]})
        return rec

    return summarize


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


@dataclass
class CaseReference:
    documented: reference.Reference
    math: reference.Reference


def case_references(case: Case) -> CaseReference:
    """Both references for a case (independent of the release; computed, never cached
    here: :class:`harness.evaluation.Evaluation` keeps them for a run)."""
    ci = call_inputs(case)
    return CaseReference(
        reference.documented(ci.first, ci.second, case.reduction, case.log_target),
        reference.math(
            ci.meant_input, ci.meant_target, ci.input_meaning, ci.target_meaning, case.reduction, case.order
        ),
    )


def misuse_reason(case: Case) -> str | None:
    """Why the call is the wrong one for the KL the user means, judged from the case alone
    (first matching rule), or None."""
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
    return None


def case_scope(case: Case) -> str:
    """The case's domain scope (harness.scopes): its family's, or 'misuse' for a wrong call."""
    return "misuse" if misuse_reason(case) else case.family.scope


def pitfall_reason(case: Case) -> str:
    """Why a documented-correct call is not the KL the user meant (first matching rule)."""
    return misuse_reason(case) or "result differs from KL(target || input) for the inputs' meaning"


def evaluate_record(
    case: Case,
    rec: dict,
    digest: str | None = None,
    references: CaseReference | Callable[[], CaseReference] | None = None,
) -> dict:
    """One verdict row (a flat dict) for one result record: a function of the case and the
    record alone.  ``digest``: the case's input digest (a record of other inputs is stale);
    ``references``: the case's :func:`case_references`, or a function giving them (asked
    only when the record needs them), None to compute them here."""
    row = {
        "id": case.id,
        "family": case.family.label,
        "generator": case.family.generator,
        "scope": case_scope(case),
        **case.axes(),
        "device": rec.get("device"),
        "status": rec.get("status", "ok"),
        "verdict": "pass",
        "forward": None,
        "grad": None,
        **{p.name: None for p in phases.GRADIENTS},
        "detail": "",
        "pitfall": False,
        "pitfall_reason": "",
        "max_abs_err": float("nan"),
        "max_rel_err": float("nan"),
        "warnings": [f"{w['category']}: {w['message']}" for w in rec.get("warnings", [])],
        "output": rec.get("output"),
        "seconds": rec.get("seconds"),
    }
    status = rec.get("status", "ok")
    if status in ("crash", "timeout"):
        row.update(verdict=status, forward=status, detail=rec.get("detail", ""))
        return row
    if digest is not None and rec.get("digest") not in (None, digest):
        row.update(verdict="stale", forward="stale", detail="inputs changed since this result was recorded")
        return row
    if references is None:
        ref = case_references(case)
    else:
        ref = references() if callable(references) else references
    tol = tolerance(case)
    expected_error = bool(case.family.expect_error or ref.documented.broadcast_error)
    if rec.get("error"):
        fwd, detail = classify_error(rec["error"], expected_error)
        row.update(verdict=fwd, forward=fwd, detail=detail)
        return row
    if expected_error:
        row.update(
            verdict="mismatch",
            forward="mismatch",
            detail=f"expected an error ({ref.documented.broadcast_error or 'declared'}), got a value",
        )
        return row
    cmp = compare(rec["output"], ref.documented.forward, tol)
    row.update(forward=cmp.verdict, detail=cmp.detail, max_abs_err=cmp.max_abs, max_rel_err=cmp.max_rel)
    grad_verdicts, grad_details = [], []
    if case.family.grad:
        for phase in phases.GRADIENTS:
            arg = phase.grad_of
            if phases.not_recorded(
                phase, rec.get("grads"), rec.get("grad_errors")
            ):  # made before the phase: not judged
                continue
            if phases.error_of(phase, rec):
                v, d = classify_error(phases.error_of(phase, rec), False)
            elif phases.output_of(phase, rec) is None:
                v, d = "error", "no gradient recorded"
            else:
                c = compare(phases.output_of(phase, rec), ref.documented.grads[arg], tol)
                v, d = c.verdict, c.detail
            grad_verdicts.append(v)
            row[phase.name] = v
            if v != "pass":
                grad_details.append(f"grad[{arg}] {v}: {d}")
        row["grad"] = worst(*grad_verdicts)
    row["verdict"] = worst(cmp.verdict, row["grad"])
    if grad_details:
        row["detail"] = "; ".join(x for x in [row["detail"]] + grad_details if x)
    if cmp.verdict in ("pass", "undefined"):  # the call did what the documentation says
        meant = compare(rec["output"], ref.math.forward, tol, against="math")
        if meant.verdict != "pass":
            row.update(pitfall=True, pitfall_reason=pitfall_reason(case))
    return row


# The verdict columns (the report reads them); reading and judging many results files, with
# their caches, is :mod:`harness.evaluation`.

VERDICT_FIELDS = (
    "verdict",  # the case's: the worst of its phases
    *phases.NAMES,  # each phase's own ("forward", "grad_input", "grad_target")
    "grad",  # the worst of the gradients
    "detail",
    "pitfall",
    "pitfall_reason",
    "max_abs_err",
    "max_rel_err",
)
CASE_COLUMNS = ("id", "family", "generator", "scope", *axes.NAMES)
COLUMNS = (
    *CASE_COLUMNS,
    "device",
    "status",
    *VERDICT_FIELDS,
    "warnings",
    "output",
    "grads",  # {argument: tensor} as recorded
    "errors",  # {phase: "Type: message"} of the phases that raised
    "seconds",
    "torch",
    "release",
    "python",
    "source",
    "cuda",
    "device_name",
)
