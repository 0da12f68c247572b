"""One release ordering (harness.versions), used by every sort in the project."""

from __future__ import annotations

import random

import pytest

from harness import versions
from harness.versions import is_before, release_key, release_of, sort_releases

ORDERED = ["1.13", "1.13.1", "2.16.0.dev20261201+cpu", "2.16.0rc1", "2.16.0", "nightly", "?"]


def test_releases_sort_by_packaging_version_then_nightly_then_unknown():
    for seed in range(20):
        shuffled = ORDERED[:]
        random.Random(seed).shuffle(shuffled)
        assert sort_releases(shuffled) == ORDERED


def test_local_versions_sort_after_their_public_version_and_before_the_next():
    assert sort_releases(["2.5.2", "2.5.1+cu121", "2.5.1", "2.5.1+cpu"]) == [
        "2.5.1",
        "2.5.1+cpu",
        "2.5.1+cu121",
        "2.5.2",
    ]
    assert is_before("1.9", "1.10") and is_before("2.9", "2.10") and not is_before("2.10", "2.9")


def test_a_final_release_and_a_dev_build_of_it_can_be_sorted_together():
    """The catalogue's old key raised TypeError here."""
    assert sort_releases(["2.16.0", "2.16.0.dev20261201+cpu"]) == ["2.16.0.dev20261201+cpu", "2.16.0"]


@pytest.mark.parametrize(
    "torch, release",
    [
        ("1.13.1", "1.13"),
        ("2.5.1+cu124", "2.5"),
        ("2.16.0.dev20261201+cpu", "2.16.0.dev20261201"),
        ("2.16.0rc1", "2.16.0rc1"),
        ("nightly", "nightly"),
        (None, "?"),
        ("", "?"),
    ],
)
def test_release_of_a_torch_version(torch, release):
    assert release_of(torch) == release


def test_every_sort_in_the_project_uses_the_one_ordering():
    """No module defines a release sort key of its own (the report, the gate, evaluate and
    the catalogue each had one, and they disagreed)."""
    import ast
    from pathlib import Path

    root = Path(versions.__file__).parent
    own = []
    for path in sorted(root.glob("*.py")):
        if path.name == "versions.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name in ("release_key", "release_sort_key", "version_tuple"):
                own.append(f"{path.name}:{node.lineno}: {node.name}")
    assert not own
    assert release_key("2.0") < release_key("nightly") < release_key("?")


def test_versions_are_ordered_by_harness_versions_only():
    """One ordering of versions: no module but harness/versions.py splits a version string
    into numbers to sort it (the report once kept its own key for Python versions)."""
    import re

    from tests.conftest import ROOT

    own = re.compile(r"int\(x\) if x\.isdigit\(\)|split\(\"\.\"\)\)|def _version_key")
    found = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in sorted((ROOT / "harness").rglob("*.py"))
        if p.name != "versions.py"
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if own.search(line)
    ]
    assert not found, found
