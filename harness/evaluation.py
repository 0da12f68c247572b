"""Stage 5, many results: read and judge whole results files, fast, through caches.

The verdict of a record is :func:`harness.evaluate.evaluate_record`, a pure function of the
case and the record.  An :class:`Evaluation` (one per run of a command, for one case set)
judges many records with it and keeps what makes that fast:

* a verdict depends on the case and on what the record holds (status, digest, error,
  output, gradients), not on the release or device: many releases return identical values
  for a case, so each distinct (case, content) is judged once;
* the cases' references and input digests are computed once;
* whole results files are cached on disk as verdict columns, keyed by the file's bytes and
  a :func:`fingerprint` of the harness code and case files (:meth:`Evaluation.evaluate_file`);
  the verdicts, digests and references also go to disk (:meth:`Evaluation.save`), for the
  next run.

Every memo held in memory has a bound (the ``*_ENTRIES`` constants; see
:class:`harness.inputs.Memo`).  Nothing is kept at module level: a fresh ``Evaluation``
is a fresh process's state.
"""

from __future__ import annotations

import functools
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import axes, phases
from .evaluate import COLUMNS, VERDICT_FIELDS, CaseReference, case_references, case_scope, evaluate_record
from .memo import Memo
from .versions import release_of

if TYPE_CHECKING:
    import pandas as pd

    from .cases import Case

CACHE_VERSION = 4
# the modules a verdict row depends on (a change to any of them empties the cache)
VERDICT_CODE = (
    "__init__.py",
    "axes.py",
    "phases.py",
    "cases.py",
    "evaluate.py",
    "evaluation.py",
    "inputs.py",
    "reference.py",
    "results.py",
    "runner.py",
    "verdicts.py",
    "versions.py",
)
CACHE_ENTRIES = 256  # results files kept in the cache folder (oldest dropped first)
# bounds of the in-memory memos of one Evaluation (a full one drops its oldest quarter)
VERDICT_ENTRIES = 1 << 20  # distinct (case, record content) judged
CASE_ENTRIES = 1 << 16  # per case id: input digest, case columns, reference
TEXT_ENTRIES = 1 << 20  # distinct texts of the verdict columns, one object each
HEAD_ENTRIES = 1 << 19  # distinct (case, outcome, device) of records read from the store


def _frozen(value):
    """An exact, hashable stand-in for a JSON value.  Lists of numbers become tuples as
    they are (equal tuples: equal values; 0.0 == -0.0, which no verdict distinguishes)."""
    if isinstance(value, dict):
        if not value:
            return ("{",)
        return ("{",) + tuple((k, _frozen(v)) for k, v in sorted(value.items()))
    if isinstance(value, list):
        if all(not isinstance(v, (dict, list)) for v in value):
            return ("[",) + tuple(value)
        return ("[",) + tuple(_frozen(v) for v in value)
    return value


def _tensor_key(t):
    """Fast path of :func:`_frozen` for the usual {dtype, shape, values} tensor: the values
    as their float64 bytes (NaN-safe, stable across processes), more than eight of them as
    a 128-bit hash of those (small)."""
    if type(t) is dict and len(t) == 3:
        try:
            vals = t["values"]
            packed = struct.pack(f"<{len(vals)}d", *vals)
            if len(vals) <= 8:
                return ("T", t["dtype"], tuple(t["shape"]), packed)
            return ("H", t["dtype"], tuple(t["shape"]), hashlib.blake2b(packed, digest_size=16).digest())
        except Exception:  # noqa: BLE001 - not a flat list of numbers: the generic form
            pass
    return _frozen(t)


_EMPTY = _frozen({})


def _grads_key(grads):
    if type(grads) is dict:
        return ("G",) + tuple([(k, _tensor_key(grads[k])) for k in sorted(grads)])
    return _frozen(grads)


def _shared(value, same: dict):
    """``value``, or an equal text seen before (one object, kept once by pickle)."""
    return same.setdefault(value, value) if type(value) is str else value


_INT, _FLOAT = frozenset((int,)), frozenset((float,))


def _shared_output(out, same: dict):
    """``out``, or an equal output tensor seen before (see :func:`_shared`): releases and
    cases often return the same values.  Only the plain form (dtype text, int shape, float
    values, in that order) is compared; any other keeps its own object, texts shared."""
    if type(out) is not dict:
        return out
    try:
        if (
            tuple(out) == ("dtype", "shape", "values")
            and type(out["dtype"]) is str
            and set(map(type, out["shape"])) <= _INT
            and set(map(type, out["values"])) <= _FLOAT
        ):
            vals = out["values"]
            key = ("output", out["dtype"], tuple(out["shape"]), struct.pack(f"<{len(vals)}d", *vals))
            if key not in same:
                same[key] = {"dtype": _shared(out["dtype"], same), "shape": out["shape"], "values": vals}
            return same[key]
    except TypeError:  # shape or values not lists
        pass
    return {_shared(k, same): _shared(v, same) for k, v in out.items()}


def _frame(rows) -> pd.DataFrame:
    import pandas as pd

    if not rows:
        return pd.DataFrame()
    return pd.DataFrame({c: list(col) for c, col in zip(COLUMNS, zip(*rows))})


def _columns(rows) -> dict:
    """Row tuples -> {column: list}, without 'source' (set when files are put together)."""
    return {c: list(col) for c, col in zip(COLUMNS, zip(*rows)) if c != "source"} if rows else {}


class quiet_gc:
    """No cyclic garbage collection while millions of long-lived objects are made (it
    would scan them again and again: half the time of reading results); afterwards they
    are moved out of the collector's way (gc.freeze)."""

    def __enter__(self):
        import gc

        self.was = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc):
        import gc

        gc.freeze()
        if self.was:
            gc.enable()


@dataclass
class EvaluatedFile:
    """One results file, read and judged: its run headers, result count, verdict columns
    ({column: list}, COLUMNS but 'source') and claim snippets."""

    path: Path
    runs: list
    results: int
    dropped_tail: bool
    columns: dict
    snippets: list
    unknown: int


def cache_dir() -> Path | None:
    """Where evaluated results files are cached: $HARNESS_CACHE_DIR, else build/cache in a
    checkout, else ~/.cache/kldiv-harness; None when $HARNESS_CACHE is 'off'."""
    import os

    if os.environ.get("HARNESS_CACHE", "").lower() in ("off", "0", "no"):
        return None
    if os.environ.get("HARNESS_CACHE_DIR"):
        return Path(os.environ["HARNESS_CACHE_DIR"])
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").exists():
        return root / "build" / "cache" / "evaluate"
    return Path.home() / ".cache" / "kldiv-harness" / "evaluate"


@functools.lru_cache(maxsize=1)
def _code_fingerprint() -> bytes:
    """The harness code a verdict depends on, with NumPy's and Python's versions."""
    import platform

    h = hashlib.sha256(f"{CACHE_VERSION} {np.__version__} {platform.python_version()}".encode())
    here = Path(__file__).resolve().parent
    for name in VERDICT_CODE:
        h.update(name.encode() + b"\0" + (here / name).read_bytes())
    return h.digest()


def fingerprint(cases_by_id: dict) -> str:
    """What a verdict depends on besides the record: the harness code, the case files and
    the case set, NumPy and Python."""
    h = hashlib.sha256(_code_fingerprint())
    for src in sorted({str(c.family.source) for c in cases_by_id.values()}):
        try:
            h.update(src.encode() + b"\0" + Path(src).read_bytes())
        except OSError:
            h.update(src.encode() + b"\0?")
    h.update("\n".join(cases_by_id).encode())
    return h.hexdigest()


def _file_bytes(path: Path) -> bytes:
    """What a results file's cache entry is keyed by: its bytes and its timings sidecar's
    (harness.results.timings_path), which read() merges into its runs: an identical rerun
    writes the same file and other timings."""
    from .results import timings_path

    data = path.read_bytes()
    try:
        return data + b"\0timings\0" + timings_path(path).read_bytes()
    except OSError:
        return data


def _dump(path: Path, data) -> bool:
    """Write a cache file atomically; False if it cannot be written."""
    import os
    import pickle

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
        return True
    except OSError:
        return False


def _prune(folder: Path) -> None:
    entries = sorted(folder.glob("*.pickle"), key=lambda p: p.stat().st_mtime)
    for old in entries[:-CACHE_ENTRIES]:
        try:
            old.unlink()
        except OSError:
            pass


class Evaluation:
    """The evaluation of results against one case set (id -> Case), for one run of a
    command: verdicts per (case, record content), input digests, case columns, texts and
    references, each judged or computed once and each memo bounded; with a cache folder
    (``cache``: a folder, True for :func:`cache_dir`, False/None for none), whole results
    files are cached there, and :meth:`save` keeps the rest for the next run.
    ``fp``: :func:`fingerprint` of ``cases_by_id`` when the caller has it."""

    def __init__(self, cases_by_id: dict, cache: Path | str | bool | None = True, fp: str | None = None):
        self.cases = cases_by_id
        self.folder = cache_dir() if cache is True else (Path(cache) if cache else None)
        self._fp = fp
        self.verdicts = Memo(VERDICT_ENTRIES)  # (case id, record content) -> verdict fields
        self.digests = Memo(CASE_ENTRIES)  # case id -> input digest
        self.case_fields = Memo(CASE_ENTRIES)  # case id -> the case columns of a row
        self.judged_as = Memo(CASE_ENTRIES)  # case id -> what its verdict depends on of it (_judged_as)
        self.texts = Memo(TEXT_ENTRIES)  # one object per distinct text of the fields (see _shared)
        # (case id, input digest, outcome hash, device) -> a stored record's row but for its run's columns
        self.heads = Memo(HEAD_ENTRIES)
        self.per_case = Memo(CASE_ENTRIES)  # case id -> (case, its case columns, its input digest), for _rows
        self.references = Memo(CASE_ENTRIES)  # case id -> (case, CaseReference)
        self.shared_references = Memo(CASE_ENTRIES)  # _judged_as(case) -> CaseReference
        # case id -> its references as stored (pickled, unpickled when used), one object for the
        # API forms of a call (they share them: _judged_as)
        self._ref_pickled = Memo(CASE_ENTRIES)
        self._judged_store: Path | None = None  # verdicts and digests kept on disk (read once)
        self._judged_new = False  # verdicts or digests added since read or written
        self._ref_store: Path | None = None  # references kept on disk
        self._ref_stored: int | None = None  # how many it held when read (None: not read yet)
        # (path, content digest) of every results file judged, in order: the digest keys the
        # file's cache entry (its bytes, the fingerprint); None where there was no cache folder
        self.evaluated: list[tuple[str, str | None]] = []
        self._keeps_stores = True  # False in a worker of prefetch(): the parent keeps what it judged

    @property
    def fingerprint(self) -> str:
        if self._fp is None:
            self._fp = fingerprint(self.cases)
        return self._fp

    # ------------------------------------------------------------------ per case

    def reference(self, case: Case) -> CaseReference:
        """Both references for a case (:func:`harness.evaluate.case_references`), kept by id
        for an equal case: another case file may use the same id for other inputs."""
        hit = self.references.get(case.id)
        if hit is None:
            self._read_ref_store()
            stored = self._ref_pickled.pop(case.id)
            if stored is not None:
                judged = self._judged_as(case)  # (the store's fingerprint covers the case files)
                ref = self.shared_references.get(judged)
                if ref is None:
                    import pickle

                    ref = self.shared_references.put(judged, pickle.loads(stored))
                hit = self.references.put(case.id, (case, ref))
        if hit is None or (hit[0] is not case and hit[0] != case):
            judged = self._judged_as(case)  # the API forms of a call share their references
            ref = self.shared_references.get(judged)
            if ref is None:
                ref = self.shared_references.put(judged, case_references(case))
            hit = self.references.put(case.id, (case, ref))
        elif hit[0] is not case:  # an equal case (e.g. from a store): keep this one, later checks are identities
            hit = self.references.put(case.id, (case, hit[1]))
        return hit[1]

    def digest(self, case: Case) -> str:
        """The case's input digest (what a record of it must carry not to be stale)."""
        d = self.digests.get(case.id)
        if d is None:
            from .inputs import input_digest, plan_entry

            d = self.digests.put(case.id, input_digest(plan_entry(case, {})))
            self._judged_new = True
        return d

    def _fields(self, case: Case) -> tuple:
        f = self.case_fields.get(case.id)
        if f is None:
            f = self.case_fields.put(
                case.id,
                tuple(
                    self._text(x)
                    for x in (case.id, case.family.label, case.family.generator, case_scope(case), *case.values)
                ),
            )
        return f

    def _judged_as(self, case: Case) -> tuple:
        """What a verdict depends on of the case: its family and the values of the judged
        axes (harness.axes.JUDGED): the API forms of a call share their verdicts."""
        hit = self.judged_as.get(case.id)
        if hit is None:
            values = case.values
            hit = self.judged_as.put(
                case.id, (case.family.source, case.family.label, *(values[i] for i in axes.JUDGED))
            )
        return hit

    def _text(self, value):
        """``value``, or an equal text seen before by this evaluation (see :func:`_shared`)."""
        if type(value) is not str:
            return value
        hit = self.texts.get(value)
        return self.texts.put(value, value) if hit is None else hit

    def verdict(self, case: Case, rec: dict, output_key, grads_key=None) -> tuple:
        """The verdict fields (VERDICT_FIELDS) of ``rec``; ``output_key`` is
        ``_tensor_key(rec.get("output"))``, ``grads_key`` ``_grads_key(rec.get("grads"))``
        (None: computed here)."""
        if grads_key is None:
            grads_key = _grads_key(rec.get("grads"))
        return self._verdict(case, self.digest(case), rec, output_key, grads_key)

    def _verdict(self, case: Case, digest: str, rec: dict, output_key, grads_key) -> tuple:
        try:
            err, grad_errors = rec.get("error"), rec.get("grad_errors")
            key = (
                self._judged_as(case),
                rec.get("status", "ok"),
                rec.get("detail"),
                rec.get("digest") in (None, digest),
                None if err is None else _frozen(err),
                output_key,
                grads_key,
                _EMPTY if type(grad_errors) is dict and not grad_errors else _frozen(grad_errors),
            )
            hit = self.verdicts.data.get(key)
        except TypeError:  # something unhashable: judge it without the memo
            key, hit = None, None
        if hit is None:
            row = evaluate_record(case, rec, digest, lambda: self.reference(case))
            hit = tuple(self._text(row[f]) for f in VERDICT_FIELDS)
            if key is not None:
                self.verdicts.put(key, hit)
                self._judged_new = True
        return hit

    # ------------------------------------------------------------------ results

    def _rows(self, results, runs, source: str):
        """Rows (tuples in COLUMNS order), claim snippets and the unknown-id count of one file."""
        rows, snippets, unknown = [], [], 0
        same: dict = {}  # text -> one object for all equal texts: the cache stores (and reads back) each once
        tensor_keys: dict = {}  # id(shared tensor) -> _tensor_key (the tensors are kept in the rows: ids stay theirs)
        per_case, case_of = self.per_case, self.per_case.data.get  # case id -> (case, its columns, its digest)
        heads, head_of = self.heads, self.heads.data.get
        run_fields = []
        for run in runs:
            env = run.get("env", {})
            run_fields.append(
                (
                    env.get("torch"),
                    release_of(env.get("torch")),
                    env.get("python"),
                    source,
                    env.get("cuda"),
                    env.get("device_name"),
                )
            )
        tails = [(None, *f) for f in run_fields]  # the columns after a row's head, for a record without seconds
        phase_args = [(p.name, p.grad_of) for p in phases.PHASES]  # as phases.error_of reads them
        for rec in results:
            # a record read from the store names its outcome (harness.results.StoredRecord): its
            # row but for the run's columns is worked out once per case, outcome and device
            outcome = getattr(rec, "outcome", None)
            if outcome is not None:
                head_key = (rec["id"], rec["digest"], outcome, rec["device"])
                head = head_of(head_key)
                if head is not None:
                    rows.append(
                        head
                        + (tails[rec["run"]] if "seconds" not in rec else (rec["seconds"], *run_fields[rec["run"]]))
                    )
                    continue
            cid = rec["id"]
            hit = case_of(cid)
            if hit is None:
                if cid.startswith(("claim/", "repro/")):  # snippets: the claims', the reproductions'
                    env = runs[rec["run"]].get("env", {})
                    snippets.append({**rec, "release": release_of(env.get("torch")), "torch": env.get("torch")})
                    continue
                case = self.cases.get(cid)
                if case is None:
                    unknown += 1
                    continue
                hit = per_case.put(cid, (case, self._fields(case), self.digest(case)))
            case, fields, digest = hit
            output = _shared_output(rec.get("output"), same)  # equal outputs: one object, one key
            output_key = tensor_keys.get(id(output))
            if output_key is None:
                output_key = tensor_keys[id(output)] = _tensor_key(output)
            raw_grads = rec.get("grads")
            grads = raw_grads or None
            if grads:
                grads = {_shared(k, same): _shared_output(t, same) for k, t in grads.items()}
            if type(raw_grads) is dict:  # _grads_key(raw_grads), from the shared tensors' keys
                keys = []
                for k in sorted(raw_grads):
                    t = grads[k]
                    tk = tensor_keys.get(id(t))
                    if tk is None:
                        tk = tensor_keys[id(t)] = _tensor_key(t)
                    keys.append((k, tk))
                grads_key = ("G", *keys)
            else:
                grads_key = _frozen(raw_grads)
            verdict = self._verdict(case, digest, rec, output_key, grads_key)
            warnings = [_shared(f"{w['category']}: {w['message']}", same) for w in rec.get("warnings", [])]
            errors = {}
            grad_errors = rec.get("grad_errors") or {}
            for name, arg in phase_args:
                err = rec.get("error") if arg is None else grad_errors.get(arg)
                if err:
                    errors[name] = _shared(f"{err.get('type')}: {err.get('message')}", same)
            head = (
                fields
                + (_shared(rec.get("device"), same), _shared(rec.get("status", "ok"), same))
                + verdict
                + (warnings, output, grads, errors or None)
            )
            if outcome is not None:
                heads.put(head_key, head)
            rows.append(head + (rec.get("seconds"),) + run_fields[rec["run"]])
        return rows, snippets, unknown

    def evaluate(self, result_files) -> pd.DataFrame:
        """Verdict rows for every result in the given ResultFile objects, as a DataFrame
        (not through the cache folder)."""
        rows, snippets = [], []
        unknown = 0
        with quiet_gc():
            for rf in result_files:
                self.evaluated.append((str(rf.path), None))  # not from its bytes: no digest
                r, s, u = self._rows(rf.results, rf.runs, str(rf.path))
                rows += r
                snippets += s
                unknown += u
            frame = _frame(rows)
        frame.attrs["unknown_ids"] = unknown
        frame.attrs["snippets"] = snippets
        frame.attrs["runs"] = [{**run, "source": str(rf.path)} for rf in result_files for run in rf.runs]
        return frame

    def _entry(self, data: bytes) -> tuple[str, Path]:
        """The digest of a results file's bytes (with the fingerprint) and its cache entry;
        names the reference store too."""
        fp = self.fingerprint
        h = hashlib.sha256(fp.encode())
        h.update(data)
        digest = h.hexdigest()
        if self._ref_store is None:
            self._ref_store = self.folder / f"refs-{fp[:40]}.pickle"
        return digest, self.folder / f"{digest[:40]}.pickle"

    def prefetch(self, paths, jobs: int | None = None) -> int:
        """Judge the results files among ``paths`` that the cache folder lacks in ``jobs``
        worker processes (default: one per core), each writing its file's cache entry, so
        that :meth:`evaluate_file` then reads every file from the cache: the same columns
        as judging them here, in a fraction of the time.  First the cases' input digests
        and references are computed, shared out among the workers, then the files.  What
        the workers judged joins this evaluation's memos (:meth:`save` keeps it).  Does
        nothing without a cache folder, with one job, with fewer than two files to judge
        or where processes cannot be forked; a file a worker cannot judge is left to
        evaluate_file (which raises what it raises), and so is a truncated one (never kept in
        the cache).  Returns how many files were judged into the cache."""
        import multiprocessing
        import os

        if self.folder is None:
            return 0
        jobs = jobs or os.cpu_count() or 1
        missing = []
        for path in paths:
            try:
                _, entry = self._entry(_file_bytes(Path(path)))
            except OSError:
                continue  # evaluate_file says why
            if not entry.exists():
                missing.append(str(path))
        if jobs < 2 or len(missing) < 2 or "fork" not in multiprocessing.get_all_start_methods():
            return 0
        jobs = min(jobs, len(missing))
        self._read_judged_store(self.folder / f"judged-{self.fingerprint[:40]}.pickle")
        self._read_ref_store()
        todo = [cid for cid in self.cases if cid not in self.digests or cid not in self.references]
        global _WORKER
        _WORKER = self  # the forked workers start from this evaluation
        try:
            ctx = multiprocessing.get_context("fork")
            if len(todo) >= 2 * jobs:  # the cases first: each worker would otherwise compute them all
                with ctx.Pool(jobs, initializer=_worker_signals) as pool:
                    for digests, refs in pool.imap_unordered(_case_work, [todo[k::jobs] for k in range(jobs)]):
                        self._merge(digests, refs)
                    pool.close()  # the workers leave on their own once the work is done (not terminated)
                    pool.join()
            judged = 0
            with ctx.Pool(jobs, initializer=_worker_signals) as pool:
                for digests, refs, verdicts, cached in pool.imap_unordered(_files_work, _chunks(missing, jobs)):
                    judged += cached
                    self._merge(digests, refs, verdicts)
                pool.close()
                pool.join()
        except OSError:  # no processes to be had: evaluate_file judges them here
            return 0
        finally:
            _WORKER = None
        self._save_judged()
        return judged

    def _merge(self, digests: dict, refs: dict, verdicts: dict | None = None) -> None:
        """Take what a worker computed: input digests, references, verdicts."""
        for cid, d in digests.items():
            if cid not in self.digests:
                self.digests.put(cid, d)
                self._judged_new = True
        for cid, ref in refs.items():
            case = self.cases.get(cid)
            if case is not None and cid not in self.references:
                self.references.put(cid, (case, ref))
        for key, hit in (verdicts or {}).items():
            if key not in self.verdicts:
                self.verdicts.put(key, hit)
                self._judged_new = True

    def evaluate_file(self, path, warn=None) -> EvaluatedFile:
        """Read and judge one results file, through the cache folder.  Raises what
        :func:`harness.results.read` raises."""
        import pickle

        from .results import ResultsError, read

        path = Path(path)
        folder = self.folder
        entry = digest = None
        if folder is not None:
            try:
                data = _file_bytes(path)
            except OSError as exc:
                raise ResultsError(f"{path}: cannot read: {exc.strerror or exc}") from None
            digest, entry = self._entry(data)
            try:
                with open(entry, "rb") as f, quiet_gc():
                    hit = pickle.load(f)
                if hit.get("version") == CACHE_VERSION:
                    self.evaluated.append((str(path), digest))
                    return EvaluatedFile(
                        path, hit["runs"], hit["results"], False, hit["columns"], hit["snippets"], hit["unknown"]
                    )
            except Exception:  # noqa: BLE001 - a missing or unusable entry is a miss
                pass
            self._read_judged_store(folder / f"judged-{self.fingerprint[:40]}.pickle")
        with quiet_gc():
            rf = read(path, warn=warn)
            rows, snippets, unknown = self._rows(rf.results, rf.runs, "")
            columns = _columns(rows)
        self.evaluated.append((str(path), digest))
        out = EvaluatedFile(path, rf.runs, len(rf.results), rf.dropped_tail, columns, snippets, unknown)
        if entry is not None and not rf.dropped_tail:  # a truncated file is rewritten soon: not worth keeping
            if _dump(
                entry,
                {
                    "version": CACHE_VERSION,
                    "runs": rf.runs,
                    "results": len(rf.results),
                    "columns": columns,
                    "snippets": snippets,
                    "unknown": unknown,
                },
            ):
                _prune(entry.parent)
        return out

    # ------------------------------------------------------------------ the stores on disk

    def _read_judged_store(self, path: Path) -> None:
        """Judge with what was stored at ``path`` (same fingerprint: same verdicts); read once."""
        import pickle

        if self._judged_store == path:
            return
        self.verdicts, self.digests = Memo(VERDICT_ENTRIES), Memo(CASE_ENTRIES)
        self._judged_store, self._judged_new = path, False
        try:
            with open(path, "rb") as f, quiet_gc():
                data = pickle.load(f)
            if data.get("version") == CACHE_VERSION:
                self.verdicts = Memo(VERDICT_ENTRIES, data["memo"])
                self.digests = Memo(CASE_ENTRIES, data["digests"])
        except Exception:  # noqa: BLE001 - missing or unusable: start empty
            pass

    def _save_judged(self) -> None:
        if self._judged_store is None or not self._judged_new or not self._keeps_stores:
            return
        if _dump(
            self._judged_store, {"version": CACHE_VERSION, "memo": self.verdicts.data, "digests": self.digests.data}
        ):
            self._judged_new = False

    def _read_ref_store(self) -> None:
        """Read the reference store, if any and not read yet (each reference stays pickled
        until used; each is checked against its case when used, see :meth:`reference`)."""
        import pickle

        if self._ref_store is None or self._ref_stored is not None:
            return
        self._ref_stored = 0
        try:
            with open(self._ref_store, "rb") as f:
                data = pickle.load(f)
            if data.get("version") == CACHE_VERSION:
                for cid, stored in data["refs"].items():
                    if cid not in self.references and cid not in self._ref_pickled:
                        self._ref_pickled.put(cid, stored)
                self._ref_stored = len(data["refs"])
        except Exception:  # noqa: BLE001 - missing or unusable: none kept
            pass

    def save(self) -> None:
        """Keep what this evaluation computed for later runs (verdicts, input digests, the
        references of the case set): call at the end, when no more references are added."""
        self._save_judged()
        if self._ref_store is None or self._ref_stored is None:  # never needed: nothing new to keep
            return
        refs = {
            cid: hit[1]
            for cid, case in self.cases.items()
            if (hit := self.references.get(cid)) is not None and (hit[0] is case or hit[0] == case)
        }
        unread = {cid: self._ref_pickled.get(cid) for cid in self.cases if cid in self._ref_pickled and cid not in refs}
        if len(refs) + len(unread) > self._ref_stored:
            import pickle

            blobs: dict = {}  # id(CaseReference) -> its pickle: the API forms share one
            for ref in refs.values():
                if id(ref) not in blobs:
                    blobs[id(ref)] = pickle.dumps(ref, protocol=pickle.HIGHEST_PROTOCOL)
            refs = {cid: blobs[id(ref)] for cid, ref in refs.items()}
            if _dump(self._ref_store, {"version": CACHE_VERSION, "refs": {**refs, **unread}}):
                self._ref_stored = len(refs) + len(unread)


_WORKER: Evaluation | None = None  # in a worker of Evaluation.prefetch: the evaluation it was forked from


def _worker_signals() -> None:
    """In a worker: SIGTERM and SIGINT do what they do by default.  A worker forked from a
    process whose Python handler turns them into exceptions (harness.cli does) could not
    be stopped while it waits on a lock, and the pool's teardown would wait for it forever
    (seen under pytest)."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _case_work(case_ids: list) -> tuple[dict, dict]:
    """In a worker: the input digests and references of some cases."""
    ev = _WORKER
    digests, refs = {}, {}
    for cid in case_ids:
        case = ev.cases[cid]
        digests[cid] = ev.digest(case)
        refs[cid] = ev.reference(case)
    return digests, refs


def _chunks(paths: list, n: int) -> list:
    """``paths`` in ``n`` runs of neighbouring releases (they return many of the same
    records: each judged once per run), of about equal size."""
    from .versions import release_key

    paths = sorted(paths, key=lambda p: (release_key(Path(p).parent.name), p))
    sizes = [Path(p).stat().st_size for p in paths]
    total, chunks, done = sum(sizes) or 1, [[] for _ in range(n)], 0
    for path, size in zip(paths, sizes):
        chunks[min(n - 1, done * n // total)].append(path)
        done += size
    return [c for c in chunks if c]


def _files_work(paths: list):
    """In a worker: judge results files into their cache entries; (the digests,
    references and verdicts computed for them, how many entries were written).  A file
    that cannot be judged is left to evaluate_file in the parent (it judges it again and
    raises); a truncated one is never kept."""
    ev = _WORKER
    ev._keeps_stores = False
    known = set(ev.digests.data), set(ev.references.data), set(ev.verdicts.data)
    cached = 0
    for path in paths:
        try:
            cached += not ev.evaluate_file(path, warn=lambda msg: None).dropped_tail
        except Exception:  # noqa: BLE001 - see above
            pass
    digests = {k: v for k, v in ev.digests.data.items() if k not in known[0]}
    refs = {k: v[1] for k, v in ev.references.data.items() if k not in known[1]}
    verdicts = {k: v for k, v in ev.verdicts.data.items() if k not in known[2]}
    return digests, refs, verdicts, cached


def frame_of(files: list, sources: list | None = None) -> pd.DataFrame:
    """The verdict DataFrame of evaluated files ('source' = ``sources[i]`` or the path),
    with the attrs :meth:`Evaluation.evaluate` sets."""
    import pandas as pd

    data = {c: [] for c in COLUMNS}
    snippets, runs, unknown = [], [], 0
    for i, ef in enumerate(files):
        source = str(sources[i] if sources else ef.path)
        n = len(ef.columns.get("id", ()))
        for c in COLUMNS:
            data[c] += [source] * n if c == "source" else ef.columns[c] if n else ()
        snippets += ef.snippets
        runs += [{**run, "source": source} for run in ef.runs]
        unknown += ef.unknown
    with quiet_gc():
        frame = pd.DataFrame(data) if data["id"] else pd.DataFrame()
    frame.attrs["unknown_ids"] = unknown
    frame.attrs["snippets"] = snippets
    frame.attrs["runs"] = runs
    return frame


def verdict_frame(result_paths, case_paths=None):
    """Cases + results files -> verdict DataFrame (shared by the evaluate and gate commands);
    each file is read and judged once, then taken from the cache (a fresh :class:`Evaluation`)."""
    from .cases import load_cases
    from .results import result_files

    cases = load_cases(case_paths or None)
    files = result_files(result_paths)
    if not files:
        raise FileNotFoundError(f"no results files under {', '.join(map(str, result_paths))}")
    evaluation = Evaluation({c.id: c for c in cases})
    # forked judging only when asked for ($HARNESS_EVAL_JOBS): on 2 cores it saves ~1 s of ~13 s,
    # and a fork of a process whose BLAS or pool threads hold a lock can hang (seen under pytest)
    jobs = os.environ.get("HARNESS_EVAL_JOBS", "").strip()
    if jobs.isdigit() and int(jobs) > 1:
        evaluation.prefetch(files, int(jobs))
    frame = frame_of([evaluation.evaluate_file(f) for f in files])
    evaluation.save()  # the verdicts and references judged here serve the next caller
    return frame
