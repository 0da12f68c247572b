"""What every benchmark script does with its figures."""

from __future__ import annotations

import json
from pathlib import Path


def emit(result: dict, summary: str, json_path: str | None) -> dict:
    """Print the figures as JSON and a one-line summary; also write them to ``json_path``."""
    text = json.dumps(result, indent=1)
    print(text)
    print(summary)
    if json_path:
        Path(json_path).write_text(text + "\n")
    return result
