"""Stage 5: verdicts.  Each result record is compared with the analytic reference.

Verdicts (most to least severe): crash, timeout, error, nan, mismatch, unsupported,
undefined, expected-error, stale, pass.  Separately, ``pitfall`` marks a call that
succeeds and matches the documented semantics but is not the KL divergence the user
meant (swapped arguments, 'mean', probabilities as input, ...).
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import reference
from .inputs import call_inputs

if TYPE_CHECKING:
    import pandas as pd

    from .cases import Case

SEVERITY = [
    "crash",
    "timeout",
    "error",
    "nan",
    "mismatch",
    "unsupported",
    "undefined",
    "expected-error",
    "stale",
    "pass",
]
RANK = {v: i for i, v in enumerate(SEVERITY)}

# rtol, atol per dtype; error bound = atol + rtol * max(|reference|, magnitude of the summed terms)
TOLERANCES = {
    "float64": {"rtol": 1e-9, "atol": 1e-12},
    "float32": {"rtol": 2e-5, "atol": 1e-6},
    "bfloat16": {"rtol": 4e-2, "atol": 1e-3},
    "float16": {"rtol": 6e-3, "atol": 1e-4},
}

# (pattern on "Type: message", reason) -> unsupported, not an error
UNSUPPORTED = [
    (r"unexpected keyword argument 'log_target'", "log_target argument absent in this release"),
    (r"not implemented for '(Half|BFloat16)'", "dtype not implemented for this op/device"),
    (r"derivative for .*target.* is not implemented", "gradient w.r.t. target not implemented"),
    (r"torch has no dtype", "dtype absent in this release"),
]


def tolerance(case: Case) -> dict:
    return {**TOLERANCES[case.dtype], **case.family.tolerance.get(case.dtype, {})}


@dataclass
class Comparison:
    verdict: str
    detail: str = ""
    max_abs: float = float("nan")
    max_rel: float = float("nan")


def _describe(values: np.ndarray) -> str:
    if values.size == 0:
        return "empty"
    if np.isnan(values).any():
        return "nan"
    if np.isinf(values).any():
        return "inf"
    return "finite"


def compare(got: dict, ref: reference.Quantity, tol: dict) -> Comparison:
    """Compare a recorded tensor {shape, values} with a reference quantity."""
    out = np.array(got["values"], dtype=np.float64).reshape(got["shape"])
    if tuple(out.shape) != tuple(ref.value.shape):
        return Comparison("mismatch", f"shape {list(out.shape)}, expected {list(ref.value.shape)}")
    defined = ~ref.undefined
    if ref.undefined.size and not defined.any():
        return Comparison("undefined", f"reference undefined; torch returned {_describe(out)}")
    o, r, m = out[defined], ref.value[defined], ref.magnitude[defined]
    r_nan, o_nan = np.isnan(r), np.isnan(o)
    bad = np.isfinite(r) & ~np.isfinite(o)
    if bad.any():
        return Comparison("nan", f"{int(bad.sum())} of {r.size} values {_describe(o[bad])} where reference is finite")
    if (o_nan & ~r_nan).any():
        return Comparison("mismatch", f"{int((o_nan & ~r_nan).sum())} values nan where reference is infinite")
    if (r_nan & ~o_nan).any():
        return Comparison("mismatch", "reference is nan (nan input) but torch returned a number")
    both_inf = np.isinf(r)
    if (both_inf & (o != r)).any():
        return Comparison("mismatch", "infinite reference not matched")
    fin = np.isfinite(r)
    if not fin.any():
        return Comparison("pass", _undefined_note(ref))
    err = np.abs(o[fin] - r[fin])
    bound = tol["atol"] + tol["rtol"] * np.maximum(np.abs(r[fin]), m[fin])
    max_abs = float(err.max())
    nonzero = r[fin] != 0
    max_rel = float((err[nonzero] / np.abs(r[fin][nonzero])).max()) if nonzero.any() else float("nan")
    if (err > bound).any():
        return Comparison("mismatch", f"max abs err {max_abs:.3g}, max rel err {max_rel:.3g}", max_abs, max_rel)
    return Comparison("pass", _undefined_note(ref), max_abs, max_rel)


def _undefined_note(ref):
    n = int(ref.undefined.sum())
    return f"{n} undefined element(s) not compared" if n else ""


def classify_error(err: dict, expected: bool) -> tuple[str, str]:
    message = str(err.get("message")).split("\nException raised from")[0]
    text = f"{err.get('type')}: {message}"
    if expected:
        return "expected-error", text
    for pattern, reason in UNSUPPORTED:
        if re.search(pattern, text):
            return "unsupported", reason
    return "error", text


def worst(*verdicts) -> str:
    vs = [v for v in verdicts if v]
    return min(vs, key=lambda v: RANK[v]) if vs else "pass"


@dataclass
class CaseReference:
    documented: reference.Reference
    math: reference.Reference


_REF_CACHE: dict = {}  # id -> (case, CaseReference)
_REF_STORED: dict = {}  # id -> the pickled (case, CaseReference) of a store, read when first needed


def case_reference(case: Case) -> CaseReference:
    """Both references for a case; independent of the release, so cached (by id, for an
    equal case: another case file may use the same id for other inputs)."""
    hit = _REF_CACHE.get(case.id)
    if hit is None:
        _load_ref_stores()
        stored = _REF_STORED.pop(case.id, None)
        if stored is not None:
            import pickle

            hit = _REF_CACHE[case.id] = pickle.loads(stored)
    if hit is None or (hit[0] is not case and hit[0] != case):
        ci = call_inputs(case)
        hit = _REF_CACHE[case.id] = (
            case,
            CaseReference(
                reference.documented(ci.first, ci.second, case.reduction, case.log_target),
                reference.math(
                    ci.meant_input, ci.meant_target, ci.input_meaning, ci.target_meaning, case.reduction, case.order
                ),
            ),
        )
    elif hit[0] is not case:  # an equal case (e.g. from a store): keep this one, later checks are identities
        hit = _REF_CACHE[case.id] = (case, hit[1])
    return hit[1]


def pitfall_reason(case: Case) -> str:
    """Why a documented-correct call is not the KL the user meant (first matching rule)."""
    fam = case.family
    meaning = fam.meaning
    if case.order == "swapped":
        return "arguments swapped: kl_div(input, target) takes the prediction (log q) first"
    if fam.generator == "literal" and meaning["input"] == "prob":
        return "input holds probabilities: pass log-probabilities (log_softmax) as input"
    if fam.generator == "literal" and (meaning["target"] == "logprob") != case.log_target:
        is_log = meaning["target"] == "logprob"
        return f"target holds {'log-' if is_log else ''}probabilities: set log_target={is_log}"
    ndim = len(fam.shape) if fam.generator != "literal" else None
    if case.reduction == "mean":
        return "'mean' divides by every element, not per distribution: use reduction='batchmean'"
    if case.reduction == "batchmean" and ndim == 1:
        return "'batchmean' on 1-d input divides by the number of classes: add a batch dimension"
    if case.reduction == "batchmean" and ndim is not None and ndim >= 3:
        return "'batchmean' divides by size(0) only: inner dimensions are summed, not averaged"
    return "result differs from KL(target || input) for the inputs' meaning"


def evaluate_record(case: Case, rec: dict, digest: str | None = None) -> dict:
    """One verdict row (a flat dict) for one result record."""
    row = {
        "id": case.id,
        "family": case.family.label,
        "generator": case.family.generator,
        **case.axes(),
        "device": rec.get("device"),
        "status": rec.get("status", "ok"),
        "verdict": "pass",
        "forward": None,
        "grad": None,
        "detail": "",
        "pitfall": False,
        "pitfall_reason": "",
        "max_abs_err": float("nan"),
        "max_rel_err": float("nan"),
        "warnings": [f"{w['category']}: {w['message']}" for w in rec.get("warnings", [])],
        "output": rec.get("output"),
        "seconds": rec.get("seconds"),
    }
    status = rec.get("status", "ok")
    if status in ("crash", "timeout"):
        row.update(verdict=status, forward=status, detail=rec.get("detail", ""))
        return row
    if digest is not None and rec.get("digest") not in (None, digest):
        row.update(verdict="stale", forward="stale", detail="inputs changed since this result was recorded")
        return row
    ref = case_reference(case)
    tol = tolerance(case)
    expected_error = bool(case.family.expect_error or ref.documented.broadcast_error)
    if rec.get("error"):
        fwd, detail = classify_error(rec["error"], expected_error)
        row.update(verdict=fwd, forward=fwd, detail=detail)
        return row
    if expected_error:
        row.update(
            verdict="mismatch",
            forward="mismatch",
            detail=f"expected an error ({ref.documented.broadcast_error or 'declared'}), got a value",
        )
        return row
    cmp = compare(rec["output"], ref.documented.forward, tol)
    row.update(forward=cmp.verdict, detail=cmp.detail, max_abs_err=cmp.max_abs, max_rel_err=cmp.max_rel)
    grad_verdicts, grad_details = [], []
    if case.family.grad:
        for arg in ("first", "second"):
            if arg in rec.get("grad_errors", {}):
                v, d = classify_error(rec["grad_errors"][arg], False)
            elif rec.get("grads", {}).get(arg) is None:
                v, d = "error", "no gradient recorded"
            else:
                c = compare(rec["grads"][arg], ref.documented.grads[arg], tol)
                v, d = c.verdict, c.detail
            grad_verdicts.append(v)
            if v != "pass":
                grad_details.append(f"grad[{arg}] {v}: {d}")
        row["grad"] = worst(*grad_verdicts)
    row["verdict"] = worst(cmp.verdict, row["grad"])
    if grad_details:
        row["detail"] = "; ".join(x for x in [row["detail"]] + grad_details if x)
    if cmp.verdict in ("pass", "undefined"):  # the call did what the documentation says
        meant = compare(rec["output"], ref.math.forward, tol)
        if meant.verdict != "pass":
            row.update(pitfall=True, pitfall_reason=pitfall_reason(case))
    return row


# ------------------------------------------------------------------ many results, fast
#
# A verdict depends on the case and on what the record holds (status, digest, error, output,
# gradients), not on the release or device: many releases return identical values for a
# case, so each distinct (case, content) is judged once per process (``_Judge``).  Whole
# results files are cached on disk as verdict columns, keyed by the file's bytes and a
# fingerprint of the harness code and case files (``evaluate_file``).

VERDICT_FIELDS = ("verdict", "forward", "grad", "detail", "pitfall", "pitfall_reason", "max_abs_err", "max_rel_err")
COLUMNS = (
    "id",
    "family",
    "generator",
    "reduction",
    "log_target",
    "order",
    "dtype",
    "api",
    "device",
    "status",
    *VERDICT_FIELDS,
    "warnings",
    "output",
    "seconds",
    "torch",
    "release",
    "python",
    "source",
    "cuda",
    "device_name",
)
CACHE_VERSION = 1
# the modules a verdict row depends on (a change to any of them empties the cache)
VERDICT_CODE = ("__init__.py", "cases.py", "evaluate.py", "inputs.py", "reference.py", "results.py", "runner.py")
CACHE_ENTRIES = 256  # results files kept in the cache (oldest dropped first)


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


def _grads_key(grads):
    if type(grads) is dict:
        return ("G",) + tuple([(k, _tensor_key(grads[k])) for k in sorted(grads)])
    return _frozen(grads)


class _Judge:
    """Verdict fields per (case, record content), each distinct one judged once; with a
    store (a file per fingerprint), also across processes, with the cases' input digests."""

    def __init__(self):
        self.memo: dict = {}
        self.digests: dict = {}
        self.case_fields: dict = {}
        self.texts: dict = {}  # one object per distinct text of the fields (see _shared)
        self.store: Path | None = None
        self.stored = (0, 0)

    def use_store(self, path: Path) -> None:
        """Judge with what was stored at ``path`` (same fingerprint: same verdicts)."""
        import pickle

        if self.store == path:
            return
        self.memo, self.digests, self.store = {}, {}, path
        try:
            with open(path, "rb") as f, _quiet_gc():
                data = pickle.load(f)
            if data.get("version") == CACHE_VERSION:
                self.memo, self.digests = data["memo"], data["digests"]
        except Exception:  # noqa: BLE001 - missing or unusable: start empty
            pass
        self.stored = (len(self.memo), len(self.digests))

    def save_store(self) -> None:

        now = (len(self.memo), len(self.digests))
        if self.store is None or self.stored == now:
            return
        if _dump(self.store, {"version": CACHE_VERSION, "memo": self.memo, "digests": self.digests}):
            self.stored = now

    def digest(self, case) -> str:
        d = self.digests.get(case.id)
        if d is None:
            from .inputs import plan_entry
            from .runner import input_digest

            d = self.digests[case.id] = input_digest(plan_entry(case, {}))
        return d

    def fields(self, case) -> tuple:
        f = self.case_fields.get(case.id)
        if f is None:
            axes = case.axes()
            f = self.case_fields[case.id] = tuple(
                _shared(x, self.texts)
                for x in (case.id, case.family.label, case.family.generator, *(axes[a] for a in COLUMNS[3:8]))
            )
        return f

    def verdict(self, case, rec, output_key) -> tuple:
        """The verdict fields of ``rec``; ``output_key`` is ``_tensor_key(rec.get("output"))``."""
        digest = self.digest(case)
        try:
            key = (
                case.id,
                rec.get("status", "ok"),
                rec.get("detail"),
                rec.get("digest") in (None, digest),
                _frozen(rec.get("error")),
                output_key,
                _grads_key(rec.get("grads")),
                _frozen(rec.get("grad_errors")),
            )
            hit = self.memo.get(key)
        except TypeError:  # something unhashable: judge it without the memo
            key, hit = None, None
        if hit is None:
            row = evaluate_record(case, rec, digest)
            hit = tuple(_shared(row[f], self.texts) for f in VERDICT_FIELDS)
            if key is not None:
                self.memo[key] = hit
        return hit


_JUDGES: dict = {}


def _judge(cases_by_id: dict, fp: str | None = None) -> _Judge:
    """The judge of this case set (case ids alone do not say what a case is)."""
    fp = fp or fingerprint(cases_by_id)
    if fp not in _JUDGES:
        _JUDGES[fp] = _Judge()
    return _JUDGES[fp]


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


_REF_STORES: dict = {}  # path -> [cases_by_id, references it held when loaded (None: not loaded yet)]


def _use_ref_store(path: Path, cases_by_id: dict) -> None:
    """References kept at ``path`` for this case set: read when the first reference is
    needed (each is checked against its case when used, see case_reference)."""
    _REF_STORES.setdefault(path, [cases_by_id, None])


def _load_ref_stores() -> None:
    """Read the reference stores not read yet (each reference stays pickled until used)."""
    import pickle

    pending = [(path, entry) for path, entry in _REF_STORES.items() if entry[1] is None]
    for path, entry in pending:
        entry[1] = 0
        try:
            with open(path, "rb") as f:
                data = pickle.load(f)
            if data.get("version") == CACHE_VERSION:
                for cid, stored in data["refs"].items():
                    if cid not in _REF_CACHE:
                        _REF_STORED.setdefault(cid, stored)
                entry[1] = len(data["refs"])
        except Exception:  # noqa: BLE001 - missing or unusable: none kept
            pass


def save_caches() -> None:
    """Keep what this process computed for later ones (verdicts, input digests, the
    references of the case set): call at the end, when no more references are added."""
    for judge in _JUDGES.values():
        judge.save_store()
    for path, entry in _REF_STORES.items():
        cases, n = entry
        if n is None:  # never needed: nothing new to keep
            continue
        refs = {
            cid: hit
            for cid, case in cases.items()
            if (hit := _REF_CACHE.get(cid)) is not None and (hit[0] is case or hit[0] == case)
        }
        unread = {cid: _REF_STORED[cid] for cid in cases if cid in _REF_STORED and cid not in refs}
        if len(refs) + len(unread) > n:
            import pickle

            refs = {cid: pickle.dumps(hit, protocol=pickle.HIGHEST_PROTOCOL) for cid, hit in refs.items()}
            if _dump(path, {"version": CACHE_VERSION, "refs": {**refs, **unread}}):
                entry[1] = len(refs) + len(unread)


def _evaluate_results(cases_by_id: dict, results, runs, source: str, judge: _Judge):
    """Rows (tuples in COLUMNS order), claim snippets and the unknown-id count of one file."""
    rows, snippets, unknown = [], [], 0
    same: dict = {}  # text -> one object for all equal texts: the cache stores (and reads back) each once
    output_keys: dict = {}  # id(output) -> its _tensor_key (the outputs are kept in the rows: ids stay theirs)
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
    for rec in results:
        if rec["id"].startswith("claim/"):  # published snippets, judged by harness.claims
            env = runs[rec["run"]].get("env", {})
            snippets.append({**rec, "release": release_of(env.get("torch")), "torch": env.get("torch")})
            continue
        case = cases_by_id.get(rec["id"])
        if case is None:
            unknown += 1
            continue
        output = _shared_output(rec.get("output"), same)  # equal outputs: one object, one key
        if id(output) not in output_keys:
            output_keys[id(output)] = _tensor_key(output)
        verdict = judge.verdict(case, rec, output_keys[id(output)])
        warnings = [f"{w['category']}: {w['message']}" for w in rec.get("warnings", [])]
        rows.append(
            judge.fields(case)
            + (_shared(rec.get("device"), same), _shared(rec.get("status", "ok"), same))
            + verdict
            + ([_shared(w, same) for w in warnings], output, rec.get("seconds"))
            + run_fields[rec["run"]]
        )
    return rows, snippets, unknown


def _shared(value, same: dict):
    """``value``, or an equal text seen before (one object, kept once by pickle)."""
    return same.setdefault(value, value) if type(value) is str else value


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
            and all(type(n) is int for n in out["shape"])
            and all(type(v) is float for v in out["values"])
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


def evaluate(cases_by_id: dict, result_files) -> pd.DataFrame:
    """Verdict rows for every result in the given ResultFile objects, as a DataFrame."""
    rows, snippets = [], []
    unknown = 0
    judge = _judge(cases_by_id)
    with _quiet_gc():
        for rf in result_files:
            r, s, u = _evaluate_results(cases_by_id, rf.results, rf.runs, str(rf.path), judge)
            rows += r
            snippets += s
            unknown += u
        frame = _frame(rows)
    frame.attrs["unknown_ids"] = unknown
    frame.attrs["snippets"] = snippets
    frame.attrs["runs"] = [{**run, "source": str(rf.path)} for rf in result_files for run in rf.runs]
    return frame


class _quiet_gc:
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


_CODE: list = []


def fingerprint(cases_by_id: dict) -> str:
    """What a verdict depends on besides the record: the harness code, the case files and
    the case set, NumPy and Python."""
    import hashlib
    import platform

    if not _CODE:
        h = hashlib.sha256(f"{CACHE_VERSION} {np.__version__} {platform.python_version()}".encode())
        here = Path(__file__).resolve().parent
        for name in VERDICT_CODE:
            h.update(name.encode() + b"\0" + (here / name).read_bytes())
        _CODE.append(h.digest())
    h = hashlib.sha256(_CODE[0])
    for src in sorted({str(c.family.source) for c in cases_by_id.values()}):
        try:
            h.update(src.encode() + b"\0" + Path(src).read_bytes())
        except OSError:
            h.update(src.encode() + b"\0?")
    h.update("\n".join(cases_by_id).encode())
    return h.hexdigest()


def evaluate_file(
    cases_by_id: dict, path, warn=None, cache: Path | None | bool = True, fp: str | None = None
) -> EvaluatedFile:
    """Read and judge one results file, through the cache (``cache``: a folder, True for
    :func:`cache_dir`, False/None for none; ``fp``: :func:`fingerprint` of ``cases_by_id``
    when the caller has it).  Raises what :func:`harness.results.read` raises."""
    import hashlib
    import pickle

    from .results import ResultsError, read

    path = Path(path)
    folder = cache_dir() if cache is True else (cache or None)
    fp = fp or fingerprint(cases_by_id)
    judge = _judge(cases_by_id, fp)
    entry = None
    if folder is not None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ResultsError(f"{path}: cannot read: {exc.strerror or exc}") from None
        h = hashlib.sha256(fp.encode())
        h.update(data)
        entry = Path(folder) / f"{h.hexdigest()[:40]}.pickle"
        _use_ref_store(entry.parent / f"refs-{fp[:40]}.pickle", cases_by_id)
        try:
            with open(entry, "rb") as f, _quiet_gc():
                hit = pickle.load(f)
            if hit.get("version") == CACHE_VERSION:
                return EvaluatedFile(
                    path, hit["runs"], hit["results"], False, hit["columns"], hit["snippets"], hit["unknown"]
                )
        except Exception:  # noqa: BLE001 - a missing or unusable entry is a miss
            pass
    if entry is not None:
        judge.use_store(entry.parent / f"judged-{fp[:40]}.pickle")
    with _quiet_gc():
        rf = read(path, warn=warn)
        rows, snippets, unknown = _evaluate_results(cases_by_id, rf.results, rf.runs, "", judge)
        columns = _columns(rows)
    judge.save_store()
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


def _prune(folder: Path) -> None:
    entries = sorted(folder.glob("*.pickle"), key=lambda p: p.stat().st_mtime)
    for old in entries[:-CACHE_ENTRIES]:
        try:
            old.unlink()
        except OSError:
            pass


def frame_of(files: list, sources: list | None = None) -> pd.DataFrame:
    """The verdict DataFrame of evaluated files ('source' = ``sources[i]`` or the path),
    with the attrs :func:`evaluate` sets."""
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
    with _quiet_gc():
        frame = pd.DataFrame(data) if data["id"] else pd.DataFrame()
    frame.attrs["unknown_ids"] = unknown
    frame.attrs["snippets"] = snippets
    frame.attrs["runs"] = runs
    return frame


def release_of(torch_version) -> str:
    """'2.5.1+cu124' -> '2.5'; dev builds keep their full version."""
    if not torch_version:
        return "?"
    base = str(torch_version).split("+")[0]
    if "dev" in base or "a" in base.split(".")[-1]:
        return base
    return ".".join(base.split(".")[:2])


def release_sort_key(release: str) -> tuple:
    nums = [int(x) for x in re.findall(r"\d+", release)[:3]]
    return tuple(nums) + (release,)
