"""CUDA vs CPU: the second oracle's comparison rules."""

from __future__ import annotations

import pandas as pd

from harness.oracle import compare_outputs, cuda_vs_cpu


def _out(*values):
    return {"shape": [len(values)], "dtype": "float32", "values": list(values)}


def test_identical_close_and_different_values():
    assert compare_outputs(_out(1.0, float("nan")), _out(1.0, float("nan")), "float32") == ("same", 0.0)
    kind, diff = compare_outputs(_out(1.0), _out(1.0 + 1e-6), "float32")
    assert kind == "close" and diff > 0
    assert compare_outputs(_out(1.0), _out(1.1), "float32")[0] == "differ"
    assert compare_outputs(_out(float("nan")), _out(0.0), "float32")[0] == "differ"
    assert compare_outputs(_out(float("inf")), _out(float("-inf")), "float32")[0] == "differ"
    assert compare_outputs(None, _out(0.0), "float32")[0] == "differ"


def test_cuda_vs_cpu_joins_on_release_and_case():
    rows = [
        {
            "release": "2.11",
            "id": "a",
            "family": "f",
            "dtype": "float32",
            "device": "cpu",
            "verdict": "pass",
            "output": _out(1.0),
        },
        {
            "release": "2.11",
            "id": "a",
            "family": "f",
            "dtype": "float32",
            "device": "cuda",
            "verdict": "pass",
            "output": _out(1.0),
        },
        {
            "release": "2.11",
            "id": "b",
            "family": "f",
            "dtype": "float32",
            "device": "cpu",
            "verdict": "pass",
            "output": _out(1.0),
        },
        {
            "release": "2.11",
            "id": "b",
            "family": "f",
            "dtype": "float32",
            "device": "cuda",
            "verdict": "error",
            "output": None,
        },
        {
            "release": "2.5",
            "id": "a",
            "family": "f",
            "dtype": "float32",
            "device": "cpu",
            "verdict": "pass",
            "output": _out(1.0),
        },
    ]
    out = cuda_vs_cpu(pd.DataFrame(rows)).set_index("id")
    assert list(out.index) == ["a", "b"]  # 2.5 has no CUDA run: nothing invented
    assert out.loc["a", "agreement"] == "same" and out.loc["b", "agreement"] == "outcome differs"


def test_no_cuda_results_gives_an_empty_comparison():
    frame = pd.DataFrame(
        [
            {
                "release": "2.5",
                "id": "a",
                "family": "f",
                "dtype": "float32",
                "device": "cpu",
                "verdict": "pass",
                "output": _out(1.0),
            }
        ]
    )
    assert cuda_vs_cpu(frame).empty


def test_a_stale_side_is_not_compared():
    """A CUDA result made from other inputs than the CPU one is 'stale', not a disagreement."""
    out = {"shape": [], "dtype": "float64", "values": [1.0]}
    other = {"shape": [], "dtype": "float64", "values": [2.0]}
    common = {"release": "2.5", "id": "a", "family": "f", "dtype": "float64"}
    rows = [
        {**common, "device": "cpu", "verdict": "pass", "output": out},
        {**common, "device": "cuda", "verdict": "stale", "output": other},
    ]
    comp = cuda_vs_cpu(pd.DataFrame(rows))
    assert comp["agreement"].tolist() == ["stale"]


def test_a_side_recorded_before_the_double_backward_compares_on_the_phases_both_hold():
    """A CUDA result without the second-order phases is compared with the CPU one on the
    forward and first-order verdicts: a CPU-only second-order nan is no disagreement, a
    first-order difference still is."""
    out = {"shape": [], "dtype": "float64", "values": [1.0]}
    common = {"release": "2.5", "family": "f", "dtype": "float64", "output": out, "forward": "pass"}
    second = {"grad2_input": "pass", "grad2_target_input": "pass", "grad2_input_target": "pass", "grad2_target": "nan"}
    older = dict.fromkeys(second)
    rows = [
        {**common, "id": "a", "device": "cpu", "verdict": "nan", "grad_input": "pass", "grad_target": "pass", **second},
        {
            **common,
            "id": "a",
            "device": "cuda",
            "verdict": "pass",
            "grad_input": "pass",
            "grad_target": "pass",
            **older,
        },
        {**common, "id": "b", "device": "cpu", "verdict": "nan", "grad_input": "pass", "grad_target": "pass", **second},
        {
            **common,
            "id": "b",
            "device": "cuda",
            "verdict": "error",
            "grad_input": "error",
            "grad_target": "pass",
            **older,
        },
    ]
    comp = cuda_vs_cpu(pd.DataFrame(rows)).set_index("id")
    assert comp.loc["a", "agreement"] == "same"
    assert comp.loc["b", "agreement"] == "outcome differs"
