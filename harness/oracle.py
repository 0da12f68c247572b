"""A second oracle: CUDA results against CPU results of the same release and inputs.

The analytic reference judges each device alone; this compares the devices with each
other, which also catches differences where the reference is undefined (both return
*something*: do they return the same thing?).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import numpy as np

from . import phases, tensors, verdicts
from .evaluate import TOLERANCES

if TYPE_CHECKING:
    import pandas as pd


def _values(output):
    if not output or tensors.is_summary(output):
        return None
    return np.array(output["values"], dtype=np.float64).reshape(output["shape"])


def _identical(a, b) -> bool:
    """Same shape and bit-identical values: what compare_outputs calls 'same', found
    without NumPy (False may still be 'same': 0.0 and -0.0)."""
    if not (isinstance(a, dict) and isinstance(b, dict) and a.get("shape") == b.get("shape")):
        return False
    if tensors.is_summary(a) or tensors.is_summary(b):
        return tensors.bits(a) == tensors.bits(b)
    va, vb = a.get("values"), b.get("values")
    if not isinstance(va, list) or not isinstance(vb, list) or len(va) != len(vb):
        return False
    if va == vb:  # equal numbers (0.0 == -0.0 is 'same' there too); NaNs only as one object
        return True
    try:
        return struct.pack(f"<{len(va)}d", *va) == struct.pack(f"<{len(vb)}d", *vb)
    except (struct.error, TypeError, OverflowError):
        return False


def _bits(out):
    """(shape, float64 bytes) of an output, or None: what compare_outputs depends on."""
    try:
        return tuple(out["shape"]), tensors.bits(out)
    except Exception:  # noqa: BLE001 - no output, or not plain numbers
        return None


def compare_outputs(a, b, dtype: str, magnitude=None) -> tuple[str, float]:
    """'same' / 'close' / 'differ' for two recorded outputs of one case, and the max
    absolute difference.  NaN matches NaN; infinities must match exactly.  The tolerance
    is the dtype's, scaled like the reference's by the magnitude of the summed terms
    (``magnitude``, same shape) where given: cancellation leaves rounding of that size."""
    if tensors.is_summary(a) or tensors.is_summary(b):  # no values: digests, classes, checks
        if not (isinstance(a, dict) and isinstance(b, dict)) or a.get("shape") != b.get("shape"):
            return "differ", float("nan")
        if tensors.bits(a) == tensors.bits(b):
            return "same", 0.0
        checks = [(t.get("checks") or {}).get("documented") or {} for t in (a, b)]
        if tensors.class_counts(a) == tensors.class_counts(b) and all(c.get("verdict") == "pass" for c in checks):
            return "close", float(sum(c.get("abs") or 0.0 for c in checks))  # both within tolerance of one reference
        return "differ", float("nan")
    va, vb = _values(a), _values(b)
    if va is None or vb is None:
        return ("same", 0.0) if va is None and vb is None else ("differ", float("nan"))
    if va.shape != vb.shape:
        return "differ", float("nan")
    if np.array_equal(va, vb, equal_nan=True):
        return "same", 0.0
    nan_a, nan_b = np.isnan(va), np.isnan(vb)
    if (
        (nan_a != nan_b).any()
        or (np.isinf(va) | np.isinf(vb))[~nan_a].any()
        and not np.array_equal(va[np.isinf(va)], vb[np.isinf(va)])
    ):
        return "differ", float("nan")
    fin = np.isfinite(va) & np.isfinite(vb)
    diff = np.abs(va[fin] - vb[fin])
    tol = TOLERANCES[dtype]
    scale = np.maximum(np.abs(va), np.abs(vb))
    if magnitude is not None and np.shape(magnitude) == va.shape:
        scale = np.maximum(scale, magnitude)
    bound = tol["atol"] + tol["rtol"] * scale[fin]
    worst = float(diff.max()) if diff.size else 0.0
    return ("close" if (diff <= bound).all() else "differ"), worst


_FIRST = tuple(p.name for p in phases.PHASES if p not in phases.SECOND_ORDER)
_SECOND = tuple(p.name for p in phases.SECOND_ORDER)


def _comparable_verdicts(r) -> tuple:
    """The two sides' verdicts over the phases both hold: where one side was recorded before
    the double backward (first-order gradients judged, the second order not), the worst of
    the forward and first-order verdicts of each, else the cases' own verdicts."""

    def side(suffix):
        return (
            [getattr(r, f"{name}_{suffix}", None) for name in _FIRST],
            [getattr(r, f"{name}_{suffix}", None) for name in _SECOND],
        )

    sides = [side("cpu"), side("cuda")]
    older = any(
        any(isinstance(v, str) for v in first[1:]) and not any(isinstance(v, str) for v in second)
        for first, second in sides
    )
    if not older:
        return r.verdict_cpu, r.verdict_cuda
    return tuple(verdicts.worst(*(v for v in first if isinstance(v, str))) for first, _ in sides)


def cuda_vs_cpu(frame, cases: dict | None = None, references=None) -> pd.DataFrame:
    """One row per case run on both devices of a release: outcome and value agreement.
    With ``cases`` (id -> Case) the tolerance scales with the reference's term magnitudes;
    ``references``: Case -> CaseReference (e.g. ``Evaluation.reference``), by default
    :func:`harness.evaluate.case_references` once per case."""
    import pandas as pd

    from .evaluate import case_references

    if references is None:
        computed: dict = {}  # this call's: case id -> references

        def references(case):
            hit = computed.get(case.id)
            if hit is None:
                hit = computed[case.id] = case_references(case)
            return hit

    if frame.empty or not {"cpu", "cuda"} <= set(frame["device"].tolist()):
        return pd.DataFrame(
            columns=["release", "id", "family", "dtype", "cpu_verdict", "cuda_verdict", "agreement", "max_abs_diff"]
        )
    cols = ["release", "id", "family", "dtype", "verdict", "output", *(c for c in phases.NAMES if c in frame.columns)]
    cpu = frame[frame["device"] == "cpu"][cols]
    cuda = frame[frame["device"] == "cuda"][cols]
    both = cpu.merge(cuda, on=["release", "id", "family", "dtype"], suffixes=("_cpu", "_cuda"))
    rows, seen = [], {}
    for r in both.itertuples(index=False):
        if _identical(r.output_cpu, r.output_cuda):  # the common case: no reference needed
            kind, diff = "same", 0.0
        else:
            key = (r.id, r.dtype, _bits(r.output_cpu), _bits(r.output_cuda))  # releases repeat pairs
            if key[2] is None or key[3] is None or key not in seen:
                magnitude = None
                if cases and r.id in cases:
                    fwd = references(cases[r.id]).documented.forward
                    magnitude = fwd.magnitude if fwd is not None else None
                seen[key] = compare_outputs(r.output_cpu, r.output_cuda, r.dtype, magnitude)
            kind, diff = seen[key]
        v_cpu, v_cuda = _comparable_verdicts(r)
        if "stale" in (r.verdict_cpu, r.verdict_cuda):  # made from other inputs: nothing to compare
            kind, diff = "stale", float("nan")
        elif v_cpu != v_cuda:
            kind = "outcome differs"
        rows.append(
            {
                "release": r.release,
                "id": r.id,
                "family": r.family,
                "dtype": r.dtype,
                "cpu_verdict": r.verdict_cpu,
                "cuda_verdict": r.verdict_cuda,
                "agreement": kind,
                "max_abs_diff": diff,
            }
        )
    return pd.DataFrame(rows)
