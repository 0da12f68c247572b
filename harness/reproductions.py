"""The behaviour changes' reproductions as data: snippets that every release's worker runs.

``python -m harness reproductions`` writes cases/reproductions/reproductions.json from the
findings of the current results (the report makes each snippet: the fewest elements of a
changed case, at most 10 lines that print the changed phase).  The plan carries them like
the published claims' snippets (ids ``repro/<change key>``), so each release records what
the snippet itself prints, and the report shows both sides.
"""

from __future__ import annotations

import json
from pathlib import Path

PATH = Path(__file__).resolve().parent.parent / "cases" / "reproductions" / "reproductions.json"
PREFIX = "repro/"
VERSION = 1


def load(path: Path = PATH) -> dict:
    """{change key: {"title", "since", "previous", "case", "code": [lines]}}; {} without a file."""
    path = Path(path)
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("snippets"), dict):
        raise ValueError(f"{path}: expected {{'version': {VERSION}, 'snippets': {{...}}}}")
    return data["snippets"]


def dumps(snippets: dict) -> str:
    return json.dumps({"version": VERSION, "snippets": snippets}, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def plan_entries(snippets: dict) -> list[dict]:
    """Worker plan entries that run each snippet verbatim (on the CPU)."""
    return [{"id": PREFIX + key, "snippet": "\n".join(s["code"]), "values": []} for key, s in sorted(snippets.items())]
