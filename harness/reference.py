"""Stage 4: the analytic reference, float64 NumPy, no torch.

Two semantics:

* ``documented`` -- what PyTorch's documentation defines for the call as made:
  pointwise ``t * (log t - x)`` (or ``exp(t) * (t - x)`` with log_target), then the
  reduction ('mean' = sum / numel, 'batchmean' = sum / input.size(0), a 0-d input is
  not divided).  ``x`` is the first argument, ``t`` the second, whatever they hold.
* ``math`` -- the KL divergence the user means between the two distributions,
  KL(p || q) = sum p (log p - log q) along the last axis, using the *intended* roles of
  the data; 'mean' and 'batchmean' both mean "average KL per distribution".

Conventions: 0 * log 0 = 0 and exp(-inf) * (...) = 0 are taken as their limits.  Where a
value is mathematically undefined for the inputs (log of a negative probability,
0 * inf, the derivative of t log t at t = 0, a mean over nothing) the element is marked
*undefined* instead of inventing a number.  NaN inputs propagate as IEEE NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import phases


@dataclass
class Quantity:
    """A reference array: values, which elements are undefined, and the magnitude of
    the terms that produced each value (for tolerances that scale with cancellation)."""

    value: np.ndarray
    undefined: np.ndarray
    magnitude: np.ndarray

    @property
    def all_undefined(self) -> bool:
        return bool(self.undefined.size) and bool(self.undefined.all())


@dataclass
class Reference:
    """Forward value and gradients w.r.t. the call's arguments ('first', 'second')."""

    forward: Quantity | None
    grads: dict
    broadcast_error: str | None = None


def _q(value, undefined, magnitude):
    value = np.asarray(value, dtype=np.float64)
    return Quantity(
        value,
        np.broadcast_to(np.asarray(undefined, bool), value.shape).copy(),
        np.abs(np.asarray(magnitude, dtype=np.float64)) + np.zeros(value.shape),
    )


def _xlogx(t):
    """t * log t with 0 log 0 = 0; negative t -> nan (callers mark it undefined)."""
    with np.errstate(all="ignore"):
        return np.where(t == 0, 0.0, t * np.log(np.where(t == 0, 1.0, t)))


def _pointwise(x, t, log_target):
    """Documented pointwise loss, its gradients and magnitudes (all broadcast)."""
    with np.errstate(all="ignore"):
        if not log_target:
            tx = np.where((t == 0) & np.isfinite(x), 0.0, t * x)
            val = _xlogx(t) - tx
            und = (t < 0) | ((t == 0) & np.isinf(x))
            mag = np.abs(_xlogx(t)) + np.abs(tx)
            gx = -t
            gx_und = und.copy()  # no gradient where the value itself is undefined
            gx_mag = np.abs(t)
            logt = np.log(np.where(t > 0, t, 1.0))
            gt = np.where(t > 0, logt + 1.0 - x, np.nan)
            gt_und = t <= 0
            gt_mag = np.abs(logt) + 1.0 + np.abs(x)
        else:
            et = np.exp(t)
            lim = np.isneginf(t)  # exp(-inf) * (...) -> 0 when (...) is finite
            val = np.where(lim & np.isfinite(x), 0.0, et * (t - x))
            und = lim & np.isinf(x)
            mag = et * (np.abs(np.where(lim, 0.0, t)) + np.abs(np.where(lim, 0.0, x)))
            gx, gx_und, gx_mag = -et, und.copy(), et
            gt = np.where(lim & np.isfinite(x), 0.0, et * (t - x + 1.0))
            gt_und = und.copy()
            gt_mag = et * (np.abs(np.where(lim, 0.0, t)) + np.abs(np.where(lim, 0.0, x)) + 1.0)
    return (val, und, mag), (gx, gx_und, gx_mag), (gt, gt_und, gt_mag)


def _second(x, t, log_target):
    """The documented pointwise loss's second derivatives (f_xx, f_xt, f_tt), each as
    (value, undefined, magnitude); f_tx = f_xt.  Without log_target, l = t log t - t x:
    f_xx = 0, f_xt = -1, f_tt = 1/t (undefined at t <= 0: log t has no derivative there).
    With it, l = exp(t) (t - x): f_xx = 0, f_xt = -exp(t), f_tt = exp(t) (t - x + 2), whose
    limits at t = -inf are 0 for a finite x.  Where the loss itself is undefined, so are they.
    Each is the derivative's formula at the point: f_xx = 0 and (without log_target) f_xt = -1
    do not depend on x or t, so a nan argument does not reach them.  The Hessian of the
    summed pointwise loss is diagonal (within the broadcast), so these are all of it."""
    with np.errstate(all="ignore"):
        zero = np.zeros(np.broadcast(x, t).shape)
        if not log_target:
            und = (t < 0) | ((t == 0) & np.isinf(x))
            ftt = np.where(t > 0, 1.0 / np.where(t > 0, t, 1.0), np.where(np.isnan(t), np.nan, np.inf))
            return (zero, und, zero), (zero - 1.0, und.copy(), zero + 1.0), (ftt, und | (t <= 0), np.abs(ftt))
        et = np.exp(t) + zero
        lim = np.isneginf(t)
        und = lim & np.isinf(x)
        ftt = np.where(lim & np.isfinite(x), 0.0, et * (t - x + 2.0))
        mtt = et * (np.abs(np.where(lim, 0.0, t)) + np.abs(np.where(lim, 0.0, x)) + 2.0)
        return (zero, und, zero), (-et, und.copy(), et), (ftt, und.copy(), mtt)


# The second-order quantities a case records, as harness.phases declares them: (outer,
# inner) for the derivative w.r.t. an argument of the summed first-order gradient w.r.t. another.
SECOND_ORDER = tuple(tuple(p.grad_of.split(" of ")) for p in phases.SECOND_ORDER)


def second_key(outer: str, inner: str) -> str:
    """The name under which a record and a Reference hold d/d(outer) of sum(dL/d(inner))."""
    return f"{outer} of {inner}"


def _reduce(val, und, mag, reduction, divisor):
    """Apply a reduction; divisor 0 makes the value undefined (mean over nothing)."""
    if reduction == "none":
        return _q(val, und, mag)
    with np.errstate(all="ignore"):
        s, m, u = np.sum(np.where(und, 0.0, val)), np.sum(mag), bool(np.any(und))
        if divisor == 0:
            return _q(np.nan, True, 0.0)
        return _q(s / divisor, u, m / divisor)


def _sum_to_shape(arr, shape):
    """Gradient of a broadcast: sum over the broadcast axes back to ``shape``."""
    while arr.ndim > len(shape):
        arr = arr.sum(axis=0)
    for ax, n in enumerate(shape):
        if n == 1 and arr.shape[ax] != 1:
            arr = arr.sum(axis=ax, keepdims=True)
    return arr


def _grad(g, und, mag, scale, shape):
    with np.errstate(all="ignore"):
        gs = np.where(und, 0.0, g) * scale
        return _q(
            _sum_to_shape(gs, shape),
            _sum_to_shape(und.astype(np.int64), shape) > 0,
            _sum_to_shape(np.abs(mag * scale), shape),
        )


def _broadcast(a, b):
    try:
        return np.broadcast_arrays(a, b), None
    except ValueError:
        return (None, None), f"shapes {list(a.shape)} and {list(b.shape)} do not broadcast"


def documented(first, second, reduction, log_target) -> Reference:
    """What the documentation defines for kl_div(first, second, ...)."""
    (x, t), err = _broadcast(first, second)
    if err:
        return Reference(None, {}, err)
    (v, vu, vm), (gx, gxu, gxm), (gt, gtu, gtm) = _pointwise(x, t, log_target)
    n = v.size
    if reduction == "batchmean":
        divisor = first.shape[0] if first.ndim else 1
    elif reduction == "mean":
        divisor = n
    else:
        divisor = 1
    scale = 1.0 if reduction in ("none", "sum") else (1.0 / divisor if divisor else np.nan)
    fwd = _reduce(v, vu, vm, reduction, divisor)
    grads = {"first": _grad(gx, gxu, gxm, scale, first.shape), "second": _grad(gt, gtu, gtm, scale, second.shape)}
    fxx, fxt, ftt = _second(x, t, log_target)
    pointwise2 = {
        ("first", "first"): fxx,
        ("first", "second"): fxt,
        ("second", "first"): fxt,
        ("second", "second"): ftt,
    }
    shapes = {"first": first.shape, "second": second.shape}
    for outer, inner in SECOND_ORDER:
        # the inner gradient's sum is sum(scale * f_inner) over the broadcast elements (the sum
        # back to the inner argument's shape does not change a sum): its derivative w.r.t. the
        # outer argument is scale * f_(inner, outer) summed back to the outer argument's shape
        grads[second_key(outer, inner)] = _grad(*pointwise2[(outer, inner)], scale, shapes[outer])
    if reduction != "none" and divisor == 0:
        grads = {k: _q(np.full(g.value.shape, np.nan), True, 0.0) for k, g in grads.items()}
    return Reference(fwd, grads)


def math(meant_input, meant_target, input_meaning, target_meaning, reduction, order) -> Reference:
    """KL(p || q) the user means, with p from the target and q from the input."""
    (inp, tgt), err = _broadcast(meant_input, meant_target)
    if err:
        return Reference(None, {}, err)
    with np.errstate(all="ignore"):
        p = np.exp(tgt) if target_meaning == "logprob" else tgt
        logp = tgt if target_meaning == "logprob" else np.log(np.where(tgt > 0, tgt, 1.0))
        logq = inp if input_meaning == "logprob" else np.log(np.where(inp > 0, inp, 1.0))
        q_bad = (inp < 0) if input_meaning == "prob" else np.zeros(inp.shape, bool)
        q_zero = (inp == 0) if input_meaning == "prob" else np.isneginf(inp)
        p_bad = p < 0
        zero_p = p == 0
        val = np.where(zero_p, 0.0, p * (np.where(p > 0, logp, 0.0) - np.where(q_zero, 0.0, logq)))
        val = np.where(~zero_p & q_zero, np.inf, val)
        und = p_bad | q_bad
        mag = np.abs(val)
        # gradients w.r.t. the data as the user holds it
        g_in = -p if input_meaning == "logprob" else -p / inp
        g_tg = (logp - logq + 1.0) if target_meaning == "prob" else p * (logp - logq + 1.0)
        g_tg_und = und | (zero_p & (target_meaning == "prob")) | q_zero
        g_in_und = und | q_zero
    k = inp.shape[-1] if inp.ndim else 1
    n_dist = (inp.size // k) if k else 0
    divisor = {"none": 1, "sum": 1}.get(reduction, n_dist)
    scale = 1.0 if reduction in ("none", "sum") else (1.0 / divisor if divisor else np.nan)
    fwd = _reduce(val, und, mag, reduction, divisor)
    gi = _grad(g_in, g_in_und, np.abs(g_in), scale, meant_input.shape)
    gt = _grad(g_tg, g_tg_und, np.abs(g_tg), scale, meant_target.shape)
    grads = {"first": gt, "second": gi} if order == "swapped" else {"first": gi, "second": gt}
    return Reference(fwd, grads)
