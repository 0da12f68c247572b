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

from .memo import Memo

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
    if is_index(path):
        return read_index(path, warn)
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
    """Expand files and directories (recursively: JSON Lines files, *.jsonl, and the store's
    index files, *.index) into a sorted file list."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            found = [*p.rglob("*.jsonl"), *p.rglob(f"*{INDEX_SUFFIX}")]
            out.extend(sorted(f for f in found if OUTCOMES_DIR not in f.relative_to(p).parts))
        else:
            out.append(p)
    return out


# ------------------------------------------------------------------ the store
#
# A folder of committed results (reports/results) that repeats nothing:
#
#   <root>/outcomes/<device>/<x>.outcomes   each distinct outcome of any case on that device,
#                                           once: "<hash> <json>" lines sorted by hash, sharded
#                                           by the hash's first hex digit <x>
#   <root>/<release>/<device>.index         per release: its run header(s) as JSON lines, then
#                                           one "<shared>\t<rest of the case id>\t<input digest>\t<hash>"
#                                           line per result, the case id front-coded: its first
#                                           <shared> characters are the line above's (0 after a header)
#   <root>/<release>/<device>.index.timings when each run started, its workers and torch's
#                                           import time: one line per run header (a rerun
#                                           changes these lines only; a case's seconds are
#                                           kept in the run's own JSON Lines file, not here)
#
# An outcome is a result record without what names it (id, device, input digest, run) and
# without its timings: what the call did (status, values, exception, warnings, printed
# text).  Its hash is the sha256 of its canonical JSON, so equal outcomes (other releases,
# other API forms, other cases raising the same error) are one line, and a folder of
# index files is merged with another by taking the union of the outcome lines.  Tensor
# values are exact bytes: little-endian, in the narrowest of float16/bfloat16/float32/
# float64 that gives back the same float64 bits (their dtype's, as recorded).

INDEX_SUFFIX = ".index"
OUTCOMES_DIR = "outcomes"
OUTCOMES_SUFFIX = ".outcomes"
HASH_CHARS = 16  # hex characters of an outcome's hash (64 bits); a collision is refused when written
NAMING = ("record", "id", "device", "digest", "run")  # a record's fields that are not its outcome
_ENCODINGS = (("f16", "<f2"), ("bf16", None), ("f32", "<f4"), ("f64", "<f8"))


def device_folder(device: str) -> str:
    """The file-name form of a device ('cuda:1' -> 'cuda1'), as the runner names results files."""
    return str(device).replace(":", "")


def _pack_values(values) -> tuple[str, str] | None:
    """(encoding, base64 bytes) of float64 numbers in the narrowest encoding that keeps their
    bits; None where they are not plain numbers."""
    import base64

    import numpy as np

    try:
        f64 = np.asarray(values, dtype="<f8")
    except (TypeError, ValueError):
        return None
    if f64.ndim != 1 or (len(values) and not all(type(v) in (float, int) for v in values[:64])):
        return None
    raw = f64.tobytes()
    for name, np_dtype in _ENCODINGS:
        with np.errstate(all="ignore"):
            if name == "bf16":
                enc = (f64.astype("<f4").view("<u4") >> 16).astype("<u2")
                back = (enc.astype("<u4") << 16).view("<f4").astype("<f8")
            else:
                enc = f64.astype(np_dtype)
                back = enc.astype("<f8")
        if back.tobytes() == raw:
            return name, base64.b64encode(enc.tobytes()).decode("ascii")
    return None  # unreachable: f64 always round-trips


def _unpack_values(name: str, text: str) -> list:
    import base64

    import numpy as np

    raw = base64.b64decode(text)
    if name == "bf16":
        return (np.frombuffer(raw, dtype="<u2").astype("<u4") << 16).view("<f4").astype("<f8").tolist()
    return np.frombuffer(raw, dtype=dict(_ENCODINGS)[name]).astype("<f8").tolist()


def _encode_tensor(t):
    """An exact tensor {dtype, shape, values} -> {dtype, shape, <encoding>: base64}; anything
    else (a summary, None) as it is."""
    if type(t) is not dict or "values" not in t or set(t) - {"dtype", "shape", "values"}:
        return t
    packed = _pack_values(t["values"]) if isinstance(t["values"], list) else None
    if packed is None:
        return t
    out = {k: v for k, v in t.items() if k != "values"}
    out[packed[0]] = packed[1]
    return out


def _decode_tensor(t):
    if type(t) is dict:
        for name, _ in _ENCODINGS:
            if name in t:
                out = {k: v for k, v in t.items() if k != name}
                out["values"] = _unpack_values(name, t[name])
                return out
    return t


def encode_outcome(rec: dict) -> tuple[str, str]:
    """(hash, canonical JSON) of a result record's outcome (see the store above)."""
    import hashlib

    out = {k: v for k, v in rec.items() if k not in NAMING and k not in VOLATILE["result"]}
    if "output" in out:
        out["output"] = _encode_tensor(out["output"])
    if isinstance(out.get("grads"), dict):
        out["grads"] = {k: _encode_tensor(v) for k, v in out["grads"].items()}
    text = json.dumps(out, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS], text


def decode_outcome(text: str) -> dict:
    out = _loads(text)
    if "output" in out:
        out["output"] = _decode_tensor(out["output"])
    if isinstance(out.get("grads"), dict):
        out["grads"] = {k: _decode_tensor(v) for k, v in out["grads"].items()}
    return out


def store_root(index_path) -> Path:
    """The store an index file belongs to: the folder above its release's."""
    return Path(index_path).resolve().parent.parent


def _shard_files(root: Path, device: str) -> list[Path]:
    folder = Path(root) / OUTCOMES_DIR / device_folder(device)
    return sorted(folder.glob(f"*{OUTCOMES_SUFFIX}")) if folder.is_dir() else []


def read_outcomes(root, device: str) -> dict:
    """{hash: canonical JSON} of the outcomes stored for ``device`` (texts, decoded when used)."""
    out = {}
    for path in _shard_files(root, device):
        for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            h, sep, text = raw.partition(" ")
            if not sep or len(h) != HASH_CHARS or not text.startswith("{"):
                raise ResultsError(f"{path}:{lineno}: not '<hash> <outcome JSON>'")
            out[h] = text
    return out


_OUTCOMES = Memo(64)  # (root, device) -> (the shards' sizes and times, {hash: text}, {hash: decoded})


def _outcomes(root: Path, device: str) -> tuple[dict, dict]:
    """The stored outcomes of a device, read once per process while the shards are unchanged."""
    key = (str(root), device)
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in _shard_files(root, device))
    hit = _OUTCOMES.get(key)
    if hit is None or hit[0] != stamp:
        hit = _OUTCOMES.put(key, (stamp, read_outcomes(root, device), {}))
    return hit[1], hit[2]


class StoredRecord(dict):
    """A result record read from the store: the record itself (a dict like any other), and
    ``outcome``, the hash of its outcome (records with equal hashes share its objects)."""

    __slots__ = ("outcome",)


def is_index(path) -> bool:
    return Path(path).name.endswith(INDEX_SUFFIX)


def read_index(path, warn=None) -> ResultFile:
    """Read an index file of the store: every result as the record it was (values as
    float64 numbers), records with equal outcomes sharing their tensors."""
    path = Path(path)
    out = ResultFile(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    root = store_root(path)
    texts = bases = device = None
    cid = ""  # the case id of the line above (front coding)
    run = -1
    append = out.results.append
    for lineno, raw in enumerate(text.split("\n"), 1):
        if not raw:
            continue
        if raw[0] == "{":
            try:
                rec = _loads(raw)
            except ValueError as exc:
                problem = _short(str(exc), 120, quote=False)
                raise ResultsError(f"{path}:{lineno}: not a JSON object ({problem})") from None
            if rec.get("record") != "run" or rec.get("schema") != SCHEMA_VERSION:
                raise ResultsError(f"{path}:{lineno}: expected a run header of results schema {SCHEMA_VERSION}")
            out.runs.append(rec)
            device, cid, run = rec.get("device"), "", run + 1
            texts, decoded = _outcomes(root, device)
            bases = {}  # outcome hash -> its record but for id, input digest and run
            continue
        try:
            shared, rest, digest, h = raw.split("\t")
            shared = int(shared)
            if run < 0 or not 0 <= shared <= len(cid):
                raise ValueError
        except ValueError:
            expected = "'<shared>\\t<rest of the case id>\\t<input digest>\\t<outcome hash>' after a run header"
            raise ResultsError(f"{path}:{lineno}: expected {expected}") from None
        cid = cid[:shared] + rest
        base = bases.get(h)
        if base is None:
            body = decoded.get(h)
            if body is None:
                t = texts.get(h)
                if t is None:
                    raise ResultsError(
                        f"{path}:{lineno}: outcome {h} is not in {root / OUTCOMES_DIR / device_folder(device)}: "
                        "the store is incomplete"
                    )
                body = decoded[h] = decode_outcome(t)
            base = bases[h] = {"record": "result", **body, "device": device}
        rec = StoredRecord(base)
        rec["id"], rec["digest"], rec["run"] = cid, digest or None, run
        rec.outcome = h
        append(rec)
    _merge_timings(out)
    return out


def _write_if_changed(path: Path, data: bytes) -> bool:
    if path.exists() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    _replace(path, data)
    return True


def add_outcomes(root, device: str, new: dict) -> int:
    """Add {hash: canonical JSON} to a device's outcomes (shards rewritten only where they
    change); a hash already stored with another text is refused.  Returns how many were new."""
    root = Path(root)
    have = read_outcomes(root, device)
    added = {}
    for h, text in new.items():
        old = have.get(h)
        if old is None:
            added[h] = text
        elif old != text:
            raise ResultsError(f"{root / OUTCOMES_DIR}: two outcomes share the hash {h}: raise HASH_CHARS")
    if added:
        _write_outcomes(root, device, {**have, **added})
    return len(added)


def _write_outcomes(root: Path, device: str, outcomes: dict) -> None:
    folder = root / OUTCOMES_DIR / device_folder(device)
    shards: dict = {}
    for h in sorted(outcomes):
        shards.setdefault(h[0], []).append(f"{h} {outcomes[h]}\n")
    for name in {p.name for p in _shard_files(root, device)} - {f"{x}{OUTCOMES_SUFFIX}" for x in shards}:
        (folder / name).unlink()
    for x, lines in shards.items():
        _write_if_changed(folder / f"{x}{OUTCOMES_SUFFIX}", "".join(lines).encode())


def write_index(path, runs: list, results: list) -> None:
    """Write one release's results (``runs``: headers; ``results``: records, each with 'run'
    = its header's index) as an index file of the store above it, their outcomes added to
    that store; the runs' run-to-run fields go to the index's timings sidecar.  Atomic per file;
    the same results write the same bytes."""
    path = Path(path)
    root = store_root(path)
    by_run: dict = {}
    for r in results:
        by_run.setdefault(r.get("run", 0), []).append(r)
    lines, side, new = [], [], {}
    for k, header in enumerate(runs):
        stable, timings = split_volatile(header)
        lines.append(json.dumps(stable, sort_keys=True))
        side.append(json.dumps(timings, sort_keys=True))
        device = header.get("device")
        per_device = new.setdefault(device, {})
        prev = ""
        for r in by_run.get(k, ()):
            if r.get("device") != device:
                raise ResultsError(f"{path}: a {r.get('device')} result under a {device} run header")
            h, text = encode_outcome(r)
            per_device[h] = text
            cid = r["id"]
            shared = len(os.path.commonprefix([prev, cid]))
            lines.append(f"{shared}\t{cid[shared:]}\t{r.get('digest') or ''}\t{h}")
            prev = cid
    for device, outcomes in new.items():
        add_outcomes(root, device, outcomes)
    _write_if_changed(path, ("\n".join(lines) + "\n").encode())
    _write_if_changed(timings_path(path), ("\n".join(side) + "\n").encode())


def index_path_for(results_path) -> Path:
    """Where the store keeps the results of a JSON Lines file: the same name, INDEX_SUFFIX."""
    p = Path(results_path)
    return p.with_name(p.name[: -len(".jsonl")] + INDEX_SUFFIX if p.name.endswith(".jsonl") else p.name + INDEX_SUFFIX)


def pack(results_path, index_path=None) -> Path:
    """Put a JSON Lines results file into the store (as ``index_path``, by default beside it:
    index_path_for); the JSON Lines file is left as it is.  Returns the index path."""
    rf = read(results_path)
    target = Path(index_path) if index_path else index_path_for(results_path)
    write_index(target, rf.runs, rf.results)
    return target


def prune_outcomes(root) -> int:
    """Drop the outcomes that no index file under ``root`` refers to; returns how many went."""
    root = Path(root)
    used: dict = {}
    for index in sorted(root.rglob(f"*{INDEX_SUFFIX}")):
        device = None
        for raw in index.read_text(encoding="utf-8").split("\n"):
            if raw.startswith("{"):
                device = device_folder(_loads(raw).get("device"))
            elif raw:
                used.setdefault(device, set()).add(raw.rsplit("\t", 1)[-1])
    dropped = 0
    folder = root / OUTCOMES_DIR
    for dev_dir in sorted(folder.iterdir()) if folder.is_dir() else ():
        have = read_outcomes(root, dev_dir.name)
        keep = {h: t for h, t in have.items() if h in used.get(dev_dir.name, ())}
        if len(keep) != len(have):
            dropped += len(have) - len(keep)
            _write_outcomes(root, dev_dir.name, keep)
    return dropped


def migrate(root) -> list[tuple[Path, Path]]:
    """Convert every JSON Lines results file under ``root`` into the store (no torch): each
    becomes an index file beside it and its outcomes join the store; the JSON Lines file
    and its sidecar are removed once the index reads back as the same records.  Returns
    (old, new) paths."""
    root = Path(root)
    done = []
    for path in sorted(root.rglob("*.jsonl")):
        if OUTCOMES_DIR in path.relative_to(root).parts:
            continue
        before = read(path)
        target = index_path_for(path)
        write_index(target, before.runs, before.results)
        after = read_index(target)
        if _comparable(after) != _comparable(before):
            raise ResultsError(f"{target}: does not read back as {path}: not migrated")
        path.unlink()
        if timings_path(path).exists():
            timings_path(path).unlink()
        done.append((path, target))
    prune_outcomes(root)
    return done


def json_lines(rf: ResultFile) -> str:
    """A file's records (from either format) as the JSON Lines the Writer writes: each run
    header, then its results, stable fields only (what varies from run to run left out)."""
    by_run: dict = {}
    for r in rf.results:
        by_run.setdefault(r.get("run", 0), []).append(r)
    lines = []
    for k, header in enumerate(rf.runs):
        lines.append(json.dumps(split_volatile(header)[0], sort_keys=True))
        for r in by_run.get(k, ()):
            rec = split_volatile({x: v for x, v in r.items() if x != "run"})[0]
            lines.append(json.dumps(rec, sort_keys=True))
    return "\n".join(lines) + "\n"


def _comparable(rf: ResultFile):
    """A file's records as comparable values (NaN-safe: the JSON text, sorted keys), without
    the cases' seconds (the store keeps the runs' timings only)."""
    results = [{k: v for k, v in r.items() if k not in VOLATILE["result"]} for r in rf.results]
    return json.dumps([rf.runs, results], sort_keys=True)
