"""Case files: validation with file and line, expansion, stable ids."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from harness.cases import AXES, CaseFileError, expand, load_cases, load_file
from tests.conftest import ROOT

VALID = """
version: 1
families:
  - name: soft
    generator: softmax
    shape: [2, 3]
    seed: 1
"""


def test_shipped_case_files_expand_to_enough_cases_with_unique_ids():
    cases = load_cases()
    ids = [c.id for c in cases]
    assert len(cases) >= 2000
    assert len(ids) == len(set(ids))
    assert "softmax-4x5/batchmean/log_target=true/swapped/float16/module" in ids


def test_every_axis_value_is_covered():
    cases = load_cases()
    for axis in AXES:
        seen = {getattr(c, axis) for c in cases}
        assert len(seen) >= 2, axis


def test_legacy_api_never_asked_for_batchmean():
    assert not [c for c in load_cases() if c.api.startswith("legacy") and c.reduction == "batchmean"]


def test_ids_are_stable_when_unrelated_families_are_added(write_cases):
    before = {c.id for c in load_cases([write_cases(VALID, "a.yaml")])}
    more = (
        VALID
        + """
  - name: other
    generator: identical
    shape: [3]
"""
    )
    after = {c.id for c in load_cases([write_cases(more, "b.yaml")])}
    assert before < after


def test_product_minus_exclusions(write_cases):
    text = (
        VALID
        + """
    axes: {reduction: [sum, mean], dtype: [float32], api: [module], order: [intended]}
    exclude: [{reduction: mean, log_target: true}]
"""
    )
    (fam,) = load_file(write_cases(text))
    ids = [c.id for c in expand(fam)]
    assert ids == [
        "soft-2x3/sum/log_target=false/intended/float32/module",
        "soft-2x3/sum/log_target=true/intended/float32/module",
        "soft-2x3/mean/log_target=false/intended/float32/module",
    ]


@pytest.mark.parametrize(
    "snippet, line, words",
    [
        ("    colour: red\n", 7, ["unknown key 'colour'"]),
        ("    axes: {reduction: [meen]}\n", 7, ["'meen' is not one of"]),
        ("    axes: {dtype: [float8]}\n", 7, ["'float8'"]),
        ("    axes: {reduction: []}\n", 7, ["must not be empty"]),
        ("    params: {scale: big}\n", 7, ["families[0].params.scale", "not of type 'number'"]),
        ("    shape: [2, 3]\n", 7, ["duplicate key"]),
    ],
)
def test_validation_errors_name_file_line_and_key(write_cases, snippet, line, words):
    path = write_cases(VALID + snippet)
    with pytest.raises(CaseFileError) as err:
        load_file(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:{line}:"), msg
    assert "\n" not in msg
    for w in words:
        assert w in msg


def test_duplicate_family_ids_across_files(write_cases):
    a, b = write_cases(VALID, "a.yaml"), write_cases(VALID, "b.yaml")
    with pytest.raises(CaseFileError, match=r"duplicate family id 'soft-2x3' \(also at .*a.yaml:3\)"):
        load_cases([a, b])


def test_yaml_syntax_error_has_a_line(write_cases):
    path = write_cases("version: 1\nfamilies:\n  - name: [unclosed\n")
    with pytest.raises(CaseFileError, match=r":\d+: YAML syntax"):
        load_file(path)


def test_python_tags_are_refused_not_executed(write_cases, tmp_path):
    marker = tmp_path / "pwned"
    path = write_cases(f"version: 1\nfamilies: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(CaseFileError):
        load_file(path)
    assert not marker.exists()


def test_literal_generator_needs_its_arguments(write_cases):
    path = write_cases("version: 1\nfamilies:\n  - name: lit\n    generator: literal\n    input: [1.0]\n")
    with pytest.raises(CaseFileError, match=r":3: families\[0\]: literal generator needs 'target'"):
        load_file(path)


def test_schema_accepts_shipped_files_and_rejects_unknown_keys():
    schema = json.loads((ROOT / "cases" / "schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for path in sorted((ROOT / "cases").glob("*.yaml")):
        assert not list(validator.iter_errors(yaml.safe_load(path.read_text()))), path
    assert list(validator.iter_errors({"version": 1, "families": [], "bogus": 1}))


def test_cli_refuses_malformed_file_without_traceback(write_cases):
    import subprocess
    import sys

    path = write_cases(VALID + "    colour: red\n")
    out = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--cases", str(path)], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert f"{path}:7:" in out.stderr
