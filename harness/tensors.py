"""Recorded tensors, the one definition of their two forms in a result record.

* **exact** (``LIMIT`` elements or fewer): ``{"dtype", "shape", "values"}``, every value
  as recorded (float64 numbers: -0.0, inf and nan kept).
* **summary** (more than ``LIMIT`` elements): ``{"dtype", "shape", "sha256", "classes",
  "min", "max", "checks"}``: the digest of the values' float64 little-endian bytes, how
  many elements fall in each class (:data:`CLASSES`), the smallest and largest finite
  value, and, per reference it was compared with while the run was recorded (on the
  host), the verdict of that comparison with its largest absolute, relative and ulp error
  (:func:`check`).  A record stays small (a few hundred bytes) whatever the case's size.

Everything that reads a tensor's values asks this module: :func:`bits` (what equality and
drift compare), :func:`class_counts`, :func:`kind`.  NumPy is imported where needed only.
"""

from __future__ import annotations

import hashlib
import math
import struct

LIMIT = 4096  # elements above which a tensor is recorded as a summary
CLASSES = ("finite", "0", "-0", "inf", "-inf", "nan")  # what an element is, in this order
DIGEST_CHARS = 32  # hex characters of the sha256 kept (128 bits)
# explicit mantissa bits and minimum normal exponent of each dtype: the size of one ulp
MANTISSA_BITS = {"float16": 10, "bfloat16": 7, "float32": 23, "float64": 52}
MIN_EXPONENT = {"float16": -14, "bfloat16": -126, "float32": -126, "float64": -1022}


def is_summary(t) -> bool:
    """True for a summarised tensor (no values, a digest)."""
    return type(t) is dict and "values" not in t and "sha256" in t


def size(t) -> int:
    """How many elements a recorded tensor holds."""
    if is_summary(t):
        return int(sum(t["classes"].values()))
    return len(t.get("values") or ())


def bits(t) -> bytes:
    """What two tensors of one case are compared by: the float64 bytes of the values of an
    exact tensor; a summary's digest (with a prefix: never equal to packed values, whose
    length is a multiple of 8).  Equal bits: the same values."""
    if is_summary(t):
        return b"S" + bytes.fromhex(t["sha256"])
    vals = t.get("values") or []
    return struct.pack(f"<{len(vals)}d", *vals)


def is_summary_bits(b: bytes) -> bool:
    """Whether :func:`bits` came from a summary: its length is no multiple of 8 (one byte
    of prefix and the digest), unlike any packed values, whatever their first byte."""
    return len(b) % 8 != 0


def element_class(v: float) -> str:
    if v != v:
        return "nan"
    if v == math.inf:
        return "inf"
    if v == -math.inf:
        return "-inf"
    if v == 0:
        return "-0" if math.copysign(1.0, v) < 0 else "0"
    return "finite"


def class_counts(t) -> dict:
    """{class: count} of a recorded tensor, every class of CLASSES present (0 or more)."""
    if is_summary(t):
        return {c: int(t["classes"].get(c, 0)) for c in CLASSES}
    counts = dict.fromkeys(CLASSES, 0)
    for v in t.get("values") or ():
        counts[element_class(v)] += 1
    return counts


def kind(t) -> str:
    """'empty', 'nan' (some nan), 'inf' (some infinity, no nan) or 'finite'."""
    if not is_summary(t):
        vals = t.get("values") or []
        if not vals:
            return "empty"
        if any(v != v for v in vals):
            return "nan"
        if any(v in (math.inf, -math.inf) for v in vals):
            return "inf"
        return "finite"
    counts = class_counts(t)
    if not sum(counts.values()):
        return "empty"
    if counts["nan"]:
        return "nan"
    if counts["inf"] or counts["-inf"]:
        return "inf"
    return "finite"


def array_classes(arr) -> dict:
    """{class: count} of a float64 NumPy array."""
    import numpy as np

    a = np.asarray(arr, dtype=np.float64).reshape(-1)
    nan = int(np.isnan(a).sum())
    pinf, ninf = int((a == np.inf).sum()), int((a == -np.inf).sum())
    zero = a == 0
    nzero = int((zero & np.signbit(a)).sum())
    pzero = int(zero.sum()) - nzero
    return {
        "finite": a.size - nan - pinf - ninf - pzero - nzero,
        "0": pzero,
        "-0": nzero,
        "inf": pinf,
        "-inf": ninf,
        "nan": nan,
    }


def digest(arr) -> str:
    """sha256 (first DIGEST_CHARS hex) of a float64 array's little-endian C-order bytes."""
    import numpy as np

    data = np.ascontiguousarray(np.asarray(arr, dtype="<f8")).tobytes()
    return hashlib.sha256(data).hexdigest()[:DIGEST_CHARS]


def ulps(got, ref, dtype: str):
    """|got - ref| in units in the last place of ``dtype`` at ``ref`` (float64 arrays)."""
    import numpy as np

    ref = np.asarray(ref, dtype=np.float64)
    _, e = np.frexp(np.abs(ref))
    step = np.ldexp(1.0, np.maximum(e - 1, MIN_EXPONENT[dtype]) - MANTISSA_BITS[dtype])
    return np.abs(np.asarray(got, dtype=np.float64) - ref) / step


def summarize(arr, dtype: str, checks: dict | None = None) -> dict:
    """The summary form of a recorded float64 array of ``dtype``; ``checks``: {reference
    name: :func:`check`'s dict}, made by the caller that knows the references."""
    import numpy as np

    a = np.asarray(arr, dtype=np.float64)
    fin = a[np.isfinite(a)]
    out = {
        "dtype": dtype,
        "shape": list(a.shape),
        "sha256": digest(a),
        "classes": array_classes(a),
        "min": float(fin.min()) if fin.size else None,
        "max": float(fin.max()) if fin.size else None,
    }
    if checks:
        out["checks"] = checks
    return out


def check(verdict: str, detail: str, got, ref, defined, dtype: str, tolerance: dict) -> dict:
    """One comparison of a summarised tensor with a reference, as it is stored: the
    verdict and detail it got (by harness.evaluate.compare, on the whole tensor), the
    tolerance it was judged with, and the largest absolute, relative and ulp error over
    the elements where both are finite."""
    import numpy as np

    g, r = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if g.shape != r.shape:
        return {
            "verdict": verdict,
            "detail": detail,
            "tolerance": dict(tolerance),
            "abs": None,
            "rel": None,
            "ulp": None,
        }
    both = np.asarray(defined, dtype=bool) & np.isfinite(g) & np.isfinite(r)
    err = np.abs(g[both] - r[both])
    rel = err[r[both] != 0] / np.abs(r[both][r[both] != 0])
    return {
        "verdict": verdict,
        "detail": detail,
        "tolerance": dict(tolerance),
        "abs": float(err.max()) if err.size else 0.0,
        "rel": float(rel.max()) if rel.size else 0.0,
        "ulp": float(ulps(g[both], r[both], dtype).max()) if err.size else 0.0,
    }


def describe(t) -> str:
    """A summary in a line: count, classes present, range, digest."""
    counts = class_counts(t)
    n = sum(counts.values())
    present = ", ".join(f"{counts[c]:,} {c}" for c in CLASSES if counts[c])
    span = f", finite in [{t['min']:.6g}, {t['max']:.6g}]" if t.get("min") is not None else ""
    return f"{n:,} values ({present}){span}, sha256 {t['sha256'][:12]}…"
