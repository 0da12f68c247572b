"""Stage 2: deterministic inputs, made once on the host with NumPy (seeded).

Each family's generator produces float64 arrays; each case rounds them to its dtype
*here*, so the values handed to torch are exactly representable and every release
sees identical bits.  The reference is computed from these rounded values.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .axes import WORKER_AXES
from .memo import Memo

if TYPE_CHECKING:
    from .cases import Case, Family

# (explicit mantissa bits, minimum normal exponent, largest finite value)
DTYPE_FORMATS = {
    "float16": (10, -14, 65504.0),
    "bfloat16": (7, -126, float.fromhex("0x1.fep127")),
    "float32": (23, -126, float.fromhex("0x1.fffffep127")),
}


def round_to_dtype(x, dtype: str) -> np.ndarray:
    """Round float64 values to ``dtype`` (round-half-even, subnormals, overflow to inf).

    The result is float64 holding values exactly representable in ``dtype``; done in
    one step from float64, so there is no double rounding (bfloat16 via float32 would).
    """
    x = np.asarray(x, dtype=np.float64)
    if dtype == "float64":
        return x.copy()
    mant, emin, largest = DTYPE_FORMATS[dtype]
    out = x.copy()
    finite = np.isfinite(x) & (x != 0)
    if finite.any():
        v = x[finite]
        _, e = np.frexp(v)  # |v| = m * 2**e, m in [0.5, 1)
        ulp_exp = np.maximum(e - 1, emin) - mant
        scaled = np.ldexp(v, -ulp_exp)
        with np.errstate(over="ignore"):  # rounding up past the largest finite value: inf below
            r = np.ldexp(np.round(scaled), ulp_exp)  # np.round is round-half-to-even
        r = np.where(np.abs(r) > largest, np.copysign(np.inf, v), r)
        out[finite] = r
    return out


# Correctly rounded exp and log.  NumPy's own float64 exp/log are not the same function on
# every CPU: with AVX512F it runs its own vector kernels, which differ from the C library by
# one ulp on a few percent of arguments, so inputs made on one machine would not be those
# made on another, and every committed float64 result would read "stale" elsewhere.  The
# correctly rounded value is one value everywhere (mpmath: same results with either backend).
_MP = None


def _mp():
    global _MP
    if _MP is None:
        import mpmath

        _MP = mpmath.MPContext()
        _MP.prec = 120  # then one rounding to float64: correctly rounded but for ~2**-60 of inputs
    return _MP


def _elementwise(x, fn, ok) -> np.ndarray:
    """``fn`` (an mpmath function) at every element where ``ok``; NumPy's value (an exact
    special case: exp(-inf) = 0, log(0) = -inf, nan, ...) elsewhere."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(all="ignore"):
        out = np.array((np.exp if fn == "exp" else np.log)(x), dtype=np.float64)  # 0-d stays an array
    mask = ok(x)
    if mask.any():
        distinct, where = np.unique(x[mask], return_inverse=True)  # each distinct value once
        out[mask] = correctly_rounded(distinct, fn)[where]
    return out


# The C library's long double exp/log (x87 extended precision: 64 significant bits, within an
# ulp or two of it) rounded to float64 is the correctly rounded value unless the long double
# lies within LD_MARGIN (relative) of a point halfway between two float64s; those few go to
# mpmath.  Where long double is no wider than double (Windows, macOS on ARM) mpmath does all.
LD_MARGIN = 2.0**-58  # 32 units of the long double's last place: far above expl/logl's error
_LD_WIDE = np.finfo(np.longdouble).nmant >= 63


def correctly_rounded(v: np.ndarray, fn: str, long_double: bool = _LD_WIDE) -> np.ndarray:
    """Correctly rounded exp or log of float64 values (all in the functions' finite domain);
    ``long_double``: take the long double route where it is safe (else mpmath for all)."""
    out = np.empty(v.shape, dtype=np.float64)
    slow = np.ones(v.shape, dtype=bool)
    if long_double:
        with np.errstate(all="ignore"):
            y = (np.exp if fn == "exp" else np.log)(v.astype(np.longdouble))
            r = y.astype(np.float64)
            d = y - r.astype(np.longdouble)  # how far the rounding moved it
            up = (np.nextafter(r, np.inf).astype(np.longdouble) - r) / 2  # the halfway points around r
            down = (r - np.nextafter(r, -np.inf).astype(np.longdouble)) / 2
            margin = np.abs(y) * LD_MARGIN
            near = (np.abs(d - up) <= margin) | (np.abs(d + down) <= margin)
        slow = near | ~np.isfinite(r) | (r == 0)
        out[~slow] = r[~slow]
    if slow.any():
        mp = _mp()
        f = getattr(mp, fn)
        out[slow] = [_to_float(mp, f(mp.mpf(float(x)))) for x in v[slow]]
    return out


_TINY = float.fromhex("0x1p-1022")  # below it float64 is subnormal: a fixed step of 2**-1074


def _to_float(mp, y) -> float:
    """The float64 nearest to mpmath's ``y`` (subnormals rounded once, at their own step)."""
    if abs(y) >= _TINY:
        return float(y)
    return math.ldexp(int(mp.nint(mp.ldexp(y, 1074))), -1074)


def exp(x) -> np.ndarray:
    """Correctly rounded float64 exp, the same bits on every machine."""
    return _elementwise(x, "exp", lambda v: np.isfinite(v) & (v > -746.0) & (v < 709.78))


def log(x) -> np.ndarray:
    """Correctly rounded float64 log, the same bits on every machine."""
    return _elementwise(x, "log", lambda v: np.isfinite(v) & (v > 0))


def _softmax(z, axis=-1):
    z = z - np.max(z, axis=axis, keepdims=True) if z.size else z
    e = exp(z)
    return e / np.sum(e, axis=axis, keepdims=True)


def _log_softmax(z, axis=-1):
    if z.ndim == 0:
        return np.zeros_like(z)
    m = np.max(z, axis=axis, keepdims=True) if z.size else 0.0
    return z - m - log(np.sum(exp(z - m), axis=axis, keepdims=True))


def _dist(rng, shape, scale):
    """A probability vector along the last axis (a 0-d 'distribution' is 1)."""
    logits = rng.normal(0.0, scale, size=shape)
    return np.ones(shape) if len(shape) == 0 else _softmax(logits)


def _log_dist(rng, shape, scale):
    logits = rng.normal(0.0, scale, size=shape)
    return np.zeros(shape) if len(shape) == 0 else _log_softmax(logits)


def _gen_softmax(fam, rng):
    scale = fam.params.get("scale", 1.0)
    p = _dist(rng, fam.target_shape or fam.shape, scale)
    return _log_dist(rng, fam.shape, scale), p


def _gen_identical(fam, rng):
    p = _dist(rng, fam.shape, fam.params.get("scale", 1.0))
    return log(p), p


def _gen_near_one_hot(fam, rng):
    eps = fam.params.get("eps", 1e-3)
    shape = fam.shape
    k = shape[-1] if shape else 1
    p = np.full(shape, eps / k)
    if len(shape) and p.size:
        idx = rng.integers(0, k, size=shape[:-1])
        np.put_along_axis(p, idx[..., None], 1.0 - eps + eps / k, axis=-1)
    elif not len(shape):
        p = np.array(1.0)
    return _log_dist(rng, shape, fam.params.get("scale", 1.0)), p


def _gen_zeros(fam, rng):
    log_q, p = _gen_softmax(fam, rng)
    count = fam.params.get("count", 1)
    if p.ndim and p.size and count:
        k = p.shape[-1]
        flat = p.reshape(-1, k)
        for row in flat:
            row[rng.choice(k, size=min(count, k - 1), replace=False)] = 0.0
            row /= row.sum()
        p = flat.reshape(p.shape)
    return log_q, p


def _gen_negative(fam, rng):
    log_q, p = _gen_softmax(fam, rng)
    if p.ndim and p.size:
        p = p - 0.5 * p.max(axis=-1, keepdims=True)  # some entries < 0, rows no longer sum to 1
    else:
        p = p - 1.5
    return log_q, p


def _gen_nonfinite(fam, rng):
    """Softmax pair with one special value per row: nan, +inf, -inf in input or target."""
    log_q, p = _gen_softmax(fam, rng)
    plan = [("input", np.nan), ("target", np.nan), ("input", -np.inf), ("input", np.inf), ("target", np.inf)]
    k = log_q.shape[-1] if log_q.ndim else 1
    lq, pp = log_q.reshape(-1, k), p.reshape(-1, p.shape[-1] if p.ndim else 1)
    for row in range(min(len(plan), lq.shape[0])):
        which, value = plan[row]
        (lq if which == "input" else pp)[row, row % k] = value
    return lq.reshape(log_q.shape), pp.reshape(p.shape)


def _gen_large_logits(fam, rng):
    """Logits of scale ~1e4: probabilities underflow to exact 0, log-probs are huge."""
    scale = fam.params.get("scale", 1e4)
    logits_p = rng.normal(0.0, scale, size=fam.shape)
    p = _softmax(logits_p) if len(fam.shape) else np.ones(fam.shape)
    return _log_dist(rng, fam.shape, scale), p


def _gen_uniform(fam, rng):
    """Every distribution uniform over the last axis: p = 1/k, log q = log(1/k); one distinct
    value each, so any size is made at once (for reductions over millions of elements)."""
    k = fam.shape[-1] if fam.shape else 1
    p = np.full(fam.shape, 1.0 / k)
    return np.full(fam.shape, float(log(np.array(1.0 / k)))), p


GENERATORS = {
    "softmax": _gen_softmax,
    "identical": _gen_identical,
    "near_one_hot": _gen_near_one_hot,
    "zeros": _gen_zeros,
    "negative": _gen_negative,
    "nonfinite": _gen_nonfinite,
    "large_logits": _gen_large_logits,
    "uniform": _gen_uniform,
}


def parse_literal(value) -> np.ndarray:
    """Nested list literal from a case file ('nan', 'inf', '-inf', '-0.0' allowed)."""
    special = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "-0.0": -0.0}

    def conv(v):
        return [conv(x) for x in v] if isinstance(v, list) else special.get(v, v) if isinstance(v, str) else float(v)

    return np.array(conv(value), dtype=np.float64)


FAMILY_ENTRIES = 256  # generated families' arrays kept (a case set has a few dozen)
_FAMILY_CACHE = Memo(FAMILY_ENTRIES)


def family_data(fam: Family):
    """(input, target-as-probability) float64 arrays for a generated family, cached."""
    key = (fam.source, fam.label)
    hit = _FAMILY_CACHE.get(key)
    if hit is None:
        rng = np.random.default_rng(fam.seed)
        with np.errstate(all="ignore"):
            hit = _FAMILY_CACHE.put(key, GENERATORS[fam.generator](fam, rng))
    return hit


def _log_target(fam: Family, p: np.ndarray) -> np.ndarray:
    """log of a generated family's target probabilities, computed once per family."""
    key = (fam.source, fam.label, "log")
    hit = _FAMILY_CACHE.get(key)
    if hit is None:
        hit = _FAMILY_CACHE.put(key, log(p))
    return hit


@dataclass(frozen=True)
class CallInputs:
    """The two arguments of one call, rounded to the case dtype, and what they mean.

    ``first``/``second`` are the positional arguments as passed (after a swap).
    ``meant_input``/``meant_target`` are the intended roles, for the 'math' reference:
    ``input_meaning``/``target_meaning`` are 'prob' or 'logprob'.
    """

    first: np.ndarray
    second: np.ndarray
    meant_input: np.ndarray
    meant_target: np.ndarray
    input_meaning: str
    target_meaning: str


CALL_ENTRIES = 8192  # cases' call inputs kept (the digest and both references ask for them)
_CALLS = Memo(CALL_ENTRIES)


def call_inputs(case: Case) -> CallInputs:
    """The case's two arguments, computed once per family, dtype, log_target and order
    (read-only arrays: every caller shares them)."""
    fam = case.family
    key = (fam.source, fam.label, case.dtype, case.log_target, case.order)
    hit = _CALLS.get(key)
    if hit is None:
        hit = _CALLS.put(key, _call_inputs(case))
    return hit


def _call_inputs(case: Case) -> CallInputs:
    fam = case.family
    if fam.generator == "literal":
        inp, tgt = parse_literal(fam.literal_input), parse_literal(fam.literal_target)
        in_mean, tg_mean = fam.meaning["input"], fam.meaning["target"]
    else:
        inp, p = family_data(fam)
        in_mean = "logprob"
        if case.log_target:
            tgt = _log_target(fam, p)
            tg_mean = "logprob"
        else:
            tgt, tg_mean = p, "prob"
    inp, tgt = round_to_dtype(inp, case.dtype), round_to_dtype(tgt, case.dtype)
    inp.flags.writeable = tgt.flags.writeable = False  # shared: a caller that writes fails loudly
    first, second = (tgt, inp) if case.order == "swapped" else (inp, tgt)
    return CallInputs(first, second, inp, tgt, in_mean, tg_mean)


def encode(array: np.ndarray) -> dict:
    """Lossless JSON form: shape plus flat float list (JSON NaN/Infinity, -0.0 kept)."""
    return {"shape": list(array.shape), "values": [float(v) for v in array.reshape(-1)]}


def decode(obj: dict) -> np.ndarray:
    return np.array(obj["values"], dtype=np.float64).reshape(obj["shape"])


def array_key(encoded: dict) -> str:
    """Content address of an encoded array (plans store each distinct array once)."""
    return hashlib.sha256(json.dumps(encoded, sort_keys=True).encode()).hexdigest()[:20]


def plan_entry(case: Case, arrays: dict) -> dict:
    """What the in-environment worker needs for one case (stdlib-only JSON); the two
    arguments are stored in ``arrays`` by content key."""
    ci = call_inputs(case)
    values = case.axes()
    entry = {"id": case.id, **{name: values[name] for name in WORKER_AXES}, "grad": case.family.grad}
    for name, arr in (("first", ci.first), ("second", ci.second)):
        key, enc = _encoded(arr)
        arrays[key] = enc
        entry[name] = key
    return entry


def input_digest(entry: dict) -> str:
    """Stable digest of what a case feeds torch (array keys are content hashes);
    detects stale results after edits."""
    keys = (*WORKER_AXES, "grad", "first", "second", "snippet", "values")
    blob = json.dumps({k: entry[k] for k in keys if k in entry}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


ENCODED_ENTRIES = 4096  # distinct arrays kept encoded (a case set has a few hundred)
_ENCODED = Memo(ENCODED_ENTRIES)  # (shape, dtype, bytes) -> (content key, encoded): cases share most arrays


def _encoded(arr: np.ndarray) -> tuple:
    """``array_key(encode(arr))`` and ``encode(arr)``, computed once per distinct array."""
    ident = (arr.shape, arr.dtype.str, arr.tobytes())
    hit = _ENCODED.get(ident)
    if hit is None:
        enc = encode(arr)
        hit = _ENCODED.put(ident, (array_key(enc), enc))
    return hit
