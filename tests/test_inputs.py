"""Inputs: seeded, identical on every call, rounded exactly once to each dtype."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.cases import load_cases
from harness.inputs import call_inputs, decode, encode, round_to_dtype
from harness.runner import build_plan
from tests.conftest import ROOT, needs_torch


def test_plan_is_identical_across_processes():
    """A fresh interpreter generates byte-identical inputs (no hidden global RNG state)."""
    code = (
        "import json,sys; from harness.cases import load_cases; from harness.runner import build_plan; "
        "sys.stdout.write(json.dumps(build_plan(load_cases()), sort_keys=True))"
    )
    a = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    b = json.dumps(build_plan(load_cases()), sort_keys=True)
    assert a == b


@given(st.floats(allow_nan=True, allow_infinity=True, width=64))
@settings(max_examples=500, deadline=None)
def test_rounding_matches_numpy_casts(x):
    for dtype, np_type in (("float16", np.float16), ("float32", np.float32)):
        with np.errstate(over="ignore"):
            expected = np.array(x).astype(np_type).astype(np.float64)
        got = round_to_dtype(np.array([x]), dtype)[0]
        assert (np.isnan(got) and np.isnan(expected)) or got == expected, (x, dtype, got, expected)


@needs_torch
@given(st.floats(allow_nan=False, allow_infinity=True, width=64))
@settings(max_examples=300, deadline=None)
def test_bfloat16_rounding_is_exact_and_representable(x):
    import torch

    got = round_to_dtype(np.array([x]), "bfloat16")[0]
    # representable: converting to bfloat16 and back changes nothing
    back = torch.tensor([got], dtype=torch.float64).to(torch.bfloat16).double().item()
    assert back == got or (np.isinf(got) and np.isinf(back))
    # nearest: no bfloat16 value lies strictly closer to x
    if np.isfinite(got) and np.isfinite(x) and got != 0:
        ulp = 2.0 ** (max(np.frexp(got)[1] - 1, -126) - 7)  # subnormals share the smallest ulp
        assert abs(got - x) <= ulp / 2 * (1 + 1e-12)


def test_encode_decode_is_lossless_for_special_values():
    arr = np.array([[np.nan, np.inf, -np.inf], [-0.0, 5e-324, 1.7976931348623157e308]])
    back = decode(json.loads(json.dumps(encode(arr))))
    assert np.array_equal(np.isnan(back), np.isnan(arr))
    assert np.array_equal(back[~np.isnan(arr)], arr[~np.isnan(arr)])
    assert np.signbit(back[1, 0])


@pytest.mark.parametrize(
    "case_id",
    [
        "softmax-4x5/sum/log_target=false/intended/float16/module",
        "zeros-4x5/sum/log_target=true/intended/bfloat16/module",
    ],
)
def test_values_handed_to_torch_are_exactly_the_dtype_values(case_id):
    case = next(c for c in load_cases() if c.id == case_id)
    ci = call_inputs(case)
    for arr in (ci.first, ci.second):
        assert np.array_equal(round_to_dtype(arr, case.dtype), arr, equal_nan=True)


def test_swapped_order_swaps_the_call_arguments_only():
    cases = {c.id: c for c in load_cases()}
    a = call_inputs(cases["softmax-4x5/sum/log_target=false/intended/float32/module"])
    b = call_inputs(cases["softmax-4x5/sum/log_target=false/swapped/float32/module"])
    assert np.array_equal(a.first, b.second) and np.array_equal(a.second, b.first)
    assert np.array_equal(a.meant_input, b.meant_input)


def test_generated_families_have_their_promised_properties():
    cases = {c.id: c for c in load_cases()}

    def data(cid):
        return call_inputs(cases[cid])

    soft = data("softmax-4x5/sum/log_target=false/intended/float64/module")
    assert np.allclose(soft.second.sum(-1), 1) and np.allclose(np.exp(soft.first).sum(-1), 1)
    zeros = data("zeros-4x5/sum/log_target=false/intended/float64/module")
    assert ((zeros.second == 0).sum(-1) == 2).all()
    assert (data("negative-4x5/sum/log_target=false/intended/float64/module").second < 0).any()
    nonfinite = data("nonfinite-5x4/sum/log_target=false/intended/float64/module")
    assert np.isnan(nonfinite.first).any() and np.isinf(nonfinite.second).any()
    assert data("empty-0x5/sum/log_target=false/intended/float64/module").first.shape == (0, 5)
    huge16 = data("huge_logits-4x5/sum/log_target=false/intended/float16/module")
    assert np.isneginf(huge16.first).any()  # log-probabilities overflow float16


def _within_half_ulp(got: float, exact) -> bool:
    """``got`` is the float64 nearest to the high-precision value ``exact``."""
    import math

    import mpmath

    if math.isinf(got):
        return exact > np.finfo(np.float64).max
    err = abs(mpmath.mpf(got) - exact)
    gap = mpmath.mpf(math.nextafter(abs(got), math.inf)) - mpmath.mpf(abs(got))
    return err <= gap / 2


@given(st.floats(min_value=-745.0, max_value=709.0, allow_nan=False))
@settings(max_examples=300, deadline=None)
def test_exp_is_correctly_rounded(x):
    """inputs.exp is the float64 nearest to exp(x) (checked at 300 bits): one value on every
    machine, unlike NumPy's exp, whose AVX512F kernel differs from the C library's."""
    import mpmath

    from harness.inputs import exp

    with mpmath.workprec(300):
        assert _within_half_ulp(float(exp(np.array([x]))[0]), mpmath.exp(mpmath.mpf(x)))


@given(st.floats(min_value=5e-324, allow_infinity=False, allow_nan=False))
@settings(max_examples=300, deadline=None)
def test_log_is_correctly_rounded(x):
    import mpmath

    from harness.inputs import log

    with mpmath.workprec(300):
        assert _within_half_ulp(float(log(np.array([x]))[0]), mpmath.log(mpmath.mpf(x)))


def test_exp_and_log_special_values():
    from harness.inputs import exp, log

    e = exp(np.array([-np.inf, np.inf, np.nan, -800.0, 800.0, 0.0, -0.0]))
    assert e[0] == 0 and e[1] == np.inf and np.isnan(e[2]) and e[3] == 0 and e[4] == np.inf and e[5] == e[6] == 1
    with np.errstate(all="ignore"):
        g = log(np.array([0.0, -0.0, -1.0, np.inf, np.nan, 1.0]))
    assert g[0] == g[1] == -np.inf and np.isnan(g[2]) and g[3] == np.inf and np.isnan(g[4]) and g[5] == 0
    assert exp(np.float64(0.5)).shape == () and float(exp(np.float64(0.0))) == 1.0  # 0-d in, 0-d out


def test_committed_cpu_results_were_made_from_the_inputs_generated_here():
    """Every committed CPU result's input digest is the one this machine's plan gives: the
    inputs are machine-independent, so no committed result reads 'stale' anywhere."""
    from harness.results import read

    digests = {e["id"]: e["digest"] for e in build_plan(load_cases())["cases"]}
    files = sorted((ROOT / "reports" / "results").glob("*/cpu.index"))
    assert files, "the committed store has results"
    stale = {}
    for path in files:
        for rec in read(path).results:
            if rec["id"] in digests and rec.get("digest") != digests[rec["id"]]:
                stale.setdefault(path.parent.name, []).append(rec["id"])
    assert not stale, {k: (len(v), v[:3]) for k, v in stale.items()}


@pytest.mark.parametrize("fn", ["exp", "log"])
def test_the_long_double_route_gives_mpmaths_correctly_rounded_bits(fn):
    """exp/log through the C library's long double, with mpmath near halfway points, give
    exactly the bits of mpmath alone (correct rounding), from subnormal to huge."""
    from harness.inputs import correctly_rounded

    rng = np.random.default_rng(7)
    if fn == "exp":
        x = np.concatenate([rng.normal(0, 1, 20000), rng.uniform(-745, 709, 20000), rng.normal(0, 1e-9, 2000)])
    else:
        x = np.concatenate(
            [rng.uniform(0.5, 2, 20000), np.exp(rng.uniform(-740, 709, 20000)), [5e-324, 1e-310, 1.7e308]]
        )
        x = x[x > 0]
    x = np.unique(x)
    fast, exact = correctly_rounded(x, fn), correctly_rounded(x, fn, long_double=False)
    assert np.array_equal(fast.view(np.int64), exact.view(np.int64))
