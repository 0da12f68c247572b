"""scripts/downloads.py: the download figures README quotes, from pylock.toml sizes (no network here)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("downloads", ROOT / "scripts" / "downloads.py")
downloads = importlib.util.module_from_spec(spec)
spec.loader.exec_module(downloads)

LOCK = """
lock-version = "1.0"
[[packages]]
name = "torch"
wheels = [{ url = "https://x/torch.whl", size = 3000000000 }]
[[packages]]
name = "two-wheels"
wheels = [{ url = "https://x/a.whl", size = 5 }, { url = "https://x/b.whl", size = 7 }]
[[packages]]
name = "sdist-only"
sdist = { url = "https://x/s.tar.gz", size = 11 }
"""


def test_wheel_bytes_sums_one_wheel_per_package():
    assert downloads.wheel_bytes(LOCK) == (3_000_000_000 + 7 + 11, 3)


def test_committed_figures_match_readme():
    """README's downloads block is what the committed figures render to, so it is never typed."""
    data = json.loads((ROOT / "benchmarks" / "downloads.json").read_text())
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("\n", readme.index(downloads.BEGIN)) + 1 : readme.index(downloads.END)]
    assert block == "\n".join(downloads.readme_block(data)) + "\n"
    releases = {r["release"] for r in data["releases"]}
    assert {"1.10", "2.5"} <= releases and all(set(data["platforms"]) <= set(r) for r in data["releases"])


def test_block_totals_and_missing_wheels(tmp_path):
    data = {
        "platforms": ["A", "B"],
        "releases": [
            {"release": "1.10", "python": "3.8", "default": True, "A": {"mb": 1500}, "B": {"error": "no wheels"}},
            {"release": "2.5", "python": "3.12", "default": False, "A": {"mb": 500}, "B": {"mb": 80}},
        ],
    }
    lines = downloads.readme_block(data)
    assert "| default job (1.10) | 1.5 GB | 0.0 GB (1 without a wheel) |" in lines
    assert "| `nox -t all` (2 releases) | 2.0 GB | 0.1 GB (1 without a wheel) |" in lines
    assert "| 1.10 (Python 3.8) | 1.50 GB | no wheel |" in lines
    readme = tmp_path / "README.md"
    readme.write_text(f"x\n{downloads.BEGIN} (gen) -->\nold\n{downloads.END}\ny\n")
    downloads.write_readme(readme, data)
    assert readme.read_text().splitlines()[2:-2] == lines
