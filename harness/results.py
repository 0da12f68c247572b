"""Result records: JSON Lines files, one 'run' header per segment, then one 'result' per case.

A file holds the results of one release on one or more devices.  Every result belongs to
the latest header above it.  Lines are appended and flushed as each case finishes, so an
interrupted run loses nothing but a possibly truncated last line, which is detected.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

SCHEMA_VERSION = 1


class ResultsError(Exception):
    """A results file cannot be used (wrong schema, not JSON Lines, ...)."""


@dataclass
class ResultFile:
    path: Path
    runs: list = field(default_factory=list)  # header dicts, in file order
    results: list = field(default_factory=list)  # result dicts, each with 'run' = index into runs
    dropped_tail: bool = False


def read(path, repair: bool = False, warn=None) -> ResultFile:
    """Read a results file.  A truncated last line is dropped with a message
    (and cut from the file when ``repair``); any other bad line is an error."""
    path = Path(path)
    warn = warn or (lambda msg: print(msg, file=sys.stderr))
    out = ResultFile(path)
    data = path.read_bytes()
    lines = data.split(b"\n")
    good_bytes = 0
    for lineno, raw in enumerate(lines, 1):
        is_last = lineno == len(lines)
        if not raw.strip():
            good_bytes += len(raw) + (0 if is_last else 1)
            continue
        try:
            rec = json.loads(raw.decode("utf-8"))
            if not isinstance(rec, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError) as exc:
            if is_last:  # no newline after it: the write was cut off
                out.dropped_tail = True
                warn(f"{path}:{lineno}: truncated last line dropped (interrupted run)")
                break
            raise ResultsError(f"{path}:{lineno}: not a JSON object ({exc})") from None
        kind = rec.get("record")
        if kind == "run":
            if rec.get("schema") != SCHEMA_VERSION:
                raise ResultsError(
                    f"{path}:{lineno}: results schema {rec.get('schema')!r}, this harness reads {SCHEMA_VERSION}; "
                    "rerun the release or use a matching harness version"
                )
            out.runs.append(rec)
        elif kind == "result":
            if not out.runs:
                raise ResultsError(f"{path}:{lineno}: result before any run header")
            rec["run"] = len(out.runs) - 1
            out.results.append(rec)
        else:
            raise ResultsError(f"{path}:{lineno}: unknown record kind {kind!r}")
        good_bytes += len(raw) + (0 if is_last else 1)
    if out.dropped_tail and repair:
        with open(path, "r+b") as f:
            f.truncate(good_bytes)
    return out


class Writer:
    """Appends records, one line each, flushed at once (fsync on close)."""

    def __init__(self, path, append: bool):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        needs_newline = (append and self.path.exists() and self.path.stat().st_size > 0
                         and not _ends_with_newline(self.path))
        self._f = open(self.path, "a" if append else "w", encoding="utf-8")
        if needs_newline:
            self._f.write("\n")

    def write(self, rec: dict) -> None:
        self._f.write(json.dumps(rec, sort_keys=True) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _ends_with_newline(path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def result_files(paths) -> list[Path]:
    """Expand files and directories (recursively, *.jsonl) into a sorted file list."""
    out = []
    for p in map(Path, paths):
        out.extend(sorted(p.rglob("*.jsonl")) if p.is_dir() else [p])
    return out
