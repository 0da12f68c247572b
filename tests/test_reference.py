"""The analytic reference against SciPy and mpmath, and its 'undefined' rules."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special

from harness import reference

RNG = np.random.default_rng(7)


def _pair(shape):
    p = special.softmax(RNG.normal(size=shape), axis=-1)
    logq = special.log_softmax(RNG.normal(size=shape), axis=-1)
    return logq, p


@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "batchmean"])
def test_documented_matches_scipy_rel_entr(reduction):
    logq, p = _pair((4, 5))
    pointwise = special.rel_entr(p, np.exp(logq))
    expected = {"none": pointwise, "sum": pointwise.sum(), "mean": pointwise.mean(), "batchmean": pointwise.sum() / 4}[
        reduction
    ]
    ref = reference.documented(logq, p, reduction, log_target=False)
    np.testing.assert_allclose(ref.forward.value, expected, rtol=1e-12)
    ref_log = reference.documented(logq, np.log(p), reduction, log_target=True)
    np.testing.assert_allclose(ref_log.forward.value, expected, rtol=1e-12)


def test_math_is_scipy_kl_div_per_row_averaged():
    logq, p = _pair((3, 6))
    q = np.exp(logq)
    per_row = special.kl_div(p, q).sum(-1)  # x log(x/y) - x + y sums to KL for normalised rows
    for reduction, expected in (("sum", per_row.sum()), ("mean", per_row.mean()), ("batchmean", per_row.mean())):
        ref = reference.math(logq, p, "logprob", "prob", reduction, "intended")
        np.testing.assert_allclose(ref.forward.value, expected, rtol=1e-12)


def test_mean_and_1d_batchmean_differ_from_math_as_documented():
    logq, p = _pair((5,))
    kl = special.rel_entr(p, np.exp(logq)).sum()
    assert np.isclose(reference.documented(logq, p, "batchmean", False).forward.value, kl / 5)
    assert np.isclose(reference.math(logq, p, "logprob", "prob", "batchmean", "intended").forward.value, kl)
    scalar = reference.documented(np.array(-0.5), np.array(0.25), "batchmean", False).forward.value
    assert np.isclose(scalar, 0.25 * (np.log(0.25) + 0.5))  # a 0-d input is not divided


@given(t=st.floats(1e-300, 1e3), x=st.floats(-1e3, 1e3))
@settings(max_examples=200, deadline=None)
def test_pointwise_and_gradients_against_mpmath(t, x):
    mpmath.mp.dps = 50
    for log_target in (False, True):
        tt = t if not log_target else float(np.log(t))

        def f(xv, tv, lt=log_target):
            return mpmath.exp(tv) * (tv - xv) if lt else tv * (mpmath.log(tv) - xv)

        ref = reference.documented(np.array([x]), np.array([tt]), "none", log_target)
        want = f(mpmath.mpf(x), mpmath.mpf(tt))
        mag = float(ref.forward.magnitude[0])
        assert abs(ref.forward.value[0] - float(want)) <= 1e-13 * max(mag, 1e-300)
        h_t = mpmath.mpf(tt) * mpmath.mpf("1e-25") if not log_target else mpmath.mpf("1e-25")  # keeps t > 0
        t_mp, x_mp = mpmath.mpf(tt), mpmath.mpf(x)
        gx = mpmath.diff(lambda v, t_mp=t_mp: f(v, t_mp), x_mp, h=mpmath.mpf("1e-25"))
        gt = mpmath.diff(lambda v, x_mp=x_mp: f(x_mp, v), t_mp, h=h_t)
        for arg, want_grad in (("first", gx), ("second", gt)):
            g = ref.grads[arg]
            assert abs(g.value[0] - float(want_grad)) <= 1e-12 * max(float(g.magnitude[0]), 1e-300)
        # second order: d/d(outer) of dL/d(inner), by mpmath's numerical differentiation of f
        # at 50 digits (partial orders (n_x, n_t)); the mixed partials both ways
        for outer, inner in reference.SECOND_ORDER:
            n_x = (outer == "first") + (inner == "first")
            orders = (n_x, 2 - n_x)
            with mpmath.workdps(
                420
            ):  # a step as small as 1e-320, squared, against f near 1e-297: 343 digits, and 77 more
                want2 = mpmath.diff(f, (x_mp, t_mp), orders, h=mpmath.mpf("1e-20") * (1 if log_target else t_mp))
            g = ref.grads[reference.second_key(outer, inner)]
            assert not g.undefined[0]
            tol = 1e-10 * max(float(g.magnitude[0]), 1e-100)  # an exact 0: mpmath leaves ~1e-130
            assert abs(g.value[0] - float(want2)) <= tol, (outer, inner, log_target, x, tt, g.value[0], want2)


def test_zero_targets_use_the_limit_and_mark_the_derivative_undefined():
    ref = reference.documented(np.array([-1.0, -2.0]), np.array([0.0, 1.0]), "none", False)
    assert ref.forward.value[0] == 0.0 and not ref.forward.undefined[0]
    assert ref.grads["second"].undefined.tolist() == [True, False]
    ref_log = reference.documented(np.array([-1.0]), np.array([-np.inf]), "none", True)
    assert ref_log.forward.value[0] == 0.0 and ref_log.grads["second"].value[0] == 0.0


def test_negative_probabilities_are_undefined_not_invented():
    ref = reference.documented(np.array([[-1.0, -1.0]]), np.array([[0.5, -0.5]]), "sum", False)
    assert ref.forward.all_undefined
    m = reference.math(np.array([[-1.0, -1.0]]), np.array([[0.5, -0.5]]), "logprob", "prob", "sum", "intended")
    assert m.forward.all_undefined


def test_mean_over_an_empty_batch_is_undefined_and_sum_is_zero():
    empty = np.zeros((0, 5))
    assert reference.documented(empty, empty, "mean", False).forward.all_undefined
    assert reference.documented(empty, empty, "batchmean", False).forward.all_undefined
    assert reference.documented(empty, empty, "sum", False).forward.value == 0.0


def test_nan_inputs_propagate_as_expected_nan():
    ref = reference.documented(np.array([np.nan, -1.0]), np.array([0.5, 0.5]), "none", False)
    assert np.isnan(ref.forward.value[0]) and not ref.forward.undefined[0]


def test_broadcast_gradients_sum_back_to_the_target_shape():
    logq, _ = _pair((4, 5))
    p = special.softmax(RNG.normal(size=(1, 5)), axis=-1)
    ref = reference.documented(logq, p, "sum", False)
    assert ref.grads["second"].value.shape == (1, 5)
    np.testing.assert_allclose(ref.grads["second"].value[0], (np.log(p[0]) + 1 - logq).sum(0))
    assert reference.documented(logq, np.ones((3, 5)) / 5, "sum", False).broadcast_error
