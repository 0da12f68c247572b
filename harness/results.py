"""Result records: JSON Lines files, one 'run' header per segment, then one 'result' per case.

A file holds the results of one release on one or more devices.  Every result belongs to
the latest header above it.  Lines are appended and flushed as each case finishes, so an
interrupted run loses nothing but a possibly truncated last line, which is detected.

What varies from one run of the same results to the next (when it started, how many
workers, how long each case and the import took) goes to a sidecar file beside it,
``<name>.timings`` (:data:`VOLATILE`), so an identical rerun writes the results file byte
for byte again.  :func:`read` merges the sidecar back where there is one; older files that
hold these fields inline read as they are.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

SCHEMA_VERSION = 1
TIMINGS_SUFFIX = ".timings"  # cpu.jsonl -> cpu.jsonl.timings (not a *.jsonl: never read as results)
# fields that differ between two runs of the same results, kept in the sidecar
VOLATILE = {"run": ("started", "jobs"), "env": ("import_seconds",), "result": ("seconds",)}


def timings_path(path) -> Path:
    path = Path(path)
    return path.with_name(path.name + TIMINGS_SUFFIX)


def split_volatile(rec: dict) -> tuple[dict, dict | None]:
    """(the record without its run-to-run fields, those fields as a sidecar line or None)."""
    kind = rec.get("record")
    if kind not in ("run", "result"):
        return rec, None
    stable, side = dict(rec), {"record": kind}
    for key in VOLATILE[kind]:
        if key in stable:
            side[key] = stable.pop(key)
    if kind == "run" and isinstance(stable.get("env"), dict):
        env = dict(stable["env"])
        for key in VOLATILE["env"]:
            if key in env:
                side.setdefault("env", {})[key] = env.pop(key)
        stable["env"] = env
    if kind == "result":
        side.update(id=rec.get("id"), device=rec.get("device"))
    return stable, side


def _merge_timings(out: ResultFile) -> None:
    """Put the sidecar's fields back into the runs and results read (the k-th run line of
    the sidecar belongs to the k-th run header; a result line to the run above it)."""
    side = timings_path(out.path)
    if not side.exists():
        return
    try:
        lines = side.read_bytes().split(b"\n")
    except OSError:
        return
    run, by_key = -1, {}
    for raw in lines:
        try:
            rec = _loads(raw.decode("utf-8")) if raw.strip() else None
        except (ValueError, UnicodeDecodeError):
            continue  # a cut line: timings are informational
        if not isinstance(rec, dict):
            continue
        if rec.get("record") == "run":
            run += 1
            if run < len(out.runs):
                header = out.runs[run]
                for key in VOLATILE["run"]:
                    if key in rec:
                        header.setdefault(key, rec[key])
                if isinstance(rec.get("env"), dict) and isinstance(header.get("env"), dict):
                    for key, value in rec["env"].items():
                        header["env"].setdefault(key, value)
        elif rec.get("record") == "result":
            by_key[(run, rec.get("id"), rec.get("device"))] = rec
    if by_key:
        for r in out.results:
            hit = by_key.get((r["run"], r["id"], r["device"]))
            if hit is not None:
                for key in VOLATILE["result"]:
                    if key in hit:
                        r.setdefault(key, hit[key])


_scan = json.JSONDecoder().scan_once  # the scanner json.loads uses


def _loads(text: str):
    """``json.loads(text)``, without its per-call overhead for a line as the Writer
    writes it (an object, nothing around it); anything else goes through json.loads."""
    if text[:1] == "{":
        try:
            value, end = _scan(text, 0)
            if end == len(text):
                return value
        except (StopIteration, ValueError):
            pass
    return json.loads(text)


class ResultsError(Exception):
    """A results file cannot be used (wrong schema, not JSON Lines, ...)."""


@dataclass
class ResultFile:
    path: Path
    runs: list = field(default_factory=list)  # header dicts, in file order
    results: list = field(default_factory=list)  # result dicts, each with 'run' = index into runs
    dropped_tail: bool = False


def _short(value, limit: int = 80, quote: bool = True) -> str:
    """``value`` for a one-line message: repr-like, non-ASCII and control characters
    escaped (no terminal escapes), cut to ``limit``."""
    text = ascii(value) if quote or not isinstance(value, str) else ascii(value)[1:-1]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read(path, repair: bool = False, warn=None) -> ResultFile:
    """Read a results file.  A truncated last line (what an interrupted write leaves:
    the start of a JSON object and no newline) is dropped with a message, and cut from
    the file when ``repair``; any other bad line is an error naming file and line."""
    path = Path(path)
    warn = warn or (lambda msg: print(msg, file=sys.stderr))
    out = ResultFile(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    lines = data.split(b"\n")
    good_bytes = 0
    for lineno, raw in enumerate(lines, 1):
        is_last = lineno == len(lines)
        if not raw.strip():
            good_bytes += len(raw) + (0 if is_last else 1)
            continue
        try:
            rec = _loads(raw.decode("utf-8"))
            if not isinstance(rec, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            # No newline after it and it starts like every record the Writer writes:
            # the write was cut off.  Anything else is not ours: refuse it, never cut it.
            if is_last and raw.lstrip().startswith(b"{"):
                out.dropped_tail = True
                warn(f"{path}:{lineno}: truncated last line dropped ({len(raw)} bytes; interrupted run)")
                break
            raise ResultsError(f"{path}:{lineno}: not a JSON object ({_short(str(exc), 120, quote=False)})") from None
        kind = rec.get("record")
        if kind == "run":
            if rec.get("schema") != SCHEMA_VERSION:
                raise ResultsError(
                    f"{path}:{lineno}: results schema {_short(rec.get('schema'))}, this harness reads "
                    f"{SCHEMA_VERSION}; rerun the release or use a matching harness version"
                )
            out.runs.append(rec)
        elif kind == "result":
            if not out.runs:
                raise ResultsError(f"{path}:{lineno}: result before any run header")
            for key in ("id", "device"):
                if not isinstance(rec.get(key), str):
                    raise ResultsError(f"{path}:{lineno}: result without a string {key!r}")
            rec["run"] = len(out.runs) - 1
            out.results.append(rec)
        else:
            raise ResultsError(f"{path}:{lineno}: unknown record kind {_short(kind)}")
        good_bytes += len(raw) + (0 if is_last else 1)
    if out.dropped_tail and repair:
        with open(path, "r+b") as f:
            f.truncate(good_bytes)
    _merge_timings(out)
    return out


class Writer:
    """Appends records, one line each, flushed at once (fsync on close).

    The file is opened at the first record, not before: a run whose worker cannot start
    (torch missing, a bad --python) leaves an existing results file as it was instead
    of emptying it."""

    def __init__(self, path, append: bool):
        self.path = Path(path)
        self.append = append
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = None
        self._side = None  # the sidecar of run-to-run fields (timings_path)

    @staticmethod
    def _open_one(path: Path, append: bool):
        needs_newline = append and path.exists() and path.stat().st_size > 0 and not _ends_with_newline(path)
        f = open(path, "a" if append else "w", encoding="utf-8")
        if needs_newline:
            f.write("\n")
        return f

    def _open(self):
        self._f = self._open_one(self.path, self.append)
        self._side = self._open_one(timings_path(self.path), self.append)

    def write(self, rec: dict) -> None:
        if self._f is None:
            self._open()
        stable, side = split_volatile(rec)
        self._f.write(json.dumps(stable, sort_keys=True) + "\n")
        self._f.flush()
        if side is not None:
            self._side.write(json.dumps(side, sort_keys=True) + "\n")
            self._side.flush()

    def close(self) -> None:
        if self._f is None:
            return
        for f in (self._f, self._side):
            f.flush()
            os.fsync(f.fileno())
            f.close()
        self._f = self._side = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _replace(path: Path, data: bytes) -> None:
    """Rewrite a file atomically (a temporary file beside it, then a rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def drop_results(path, drop) -> int:
    """Rewrite a results file without the results for which ``drop(record)`` is true
    (run headers, every other line and their order kept); atomic.  Returns how many went."""
    path = Path(path)
    kept, dropped = [], 0
    for raw in path.read_bytes().split(b"\n"):
        if raw.strip():
            rec = _loads(raw.decode("utf-8"))
            if rec.get("record") == "result" and drop(rec):
                dropped += 1
                continue
        kept.append(raw)
    if dropped:
        _replace(path, b"\n".join(kept))
    return dropped


def sort_in_plan_order(path, ids) -> bool:
    """Rewrite a results file with each run's results in plan order (``ids``, the plan's
    case ids in order; then by device), whatever order the workers finished them in: the
    same results give the same bytes.  Run headers and the results after each stay
    together; every line's bytes are kept.  Atomic; True when the order changed."""
    path = Path(path)
    rank = {cid: i for i, cid in enumerate(ids)}
    data = path.read_bytes()
    lines = [raw for raw in data.split(b"\n") if raw.strip()]
    out, segment = [], []  # segment: (plan rank, id, device, line) of the current run's results
    for raw in lines:
        rec = _loads(raw.decode("utf-8"))
        if rec.get("record") == "result":
            segment.append((rank.get(rec.get("id"), len(rank)), str(rec.get("id")), str(rec.get("device")), raw))
            continue
        out.extend(x[3] for x in sorted(segment, key=lambda x: x[:3]))
        segment = []
        out.append(raw)
    out.extend(x[3] for x in sorted(segment, key=lambda x: x[:3]))
    text = b"\n".join(out) + b"\n" if out else b""
    if text == data:
        return False
    _replace(path, text)
    return True


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
