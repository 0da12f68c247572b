"""Stage 6: findings.  What the verdict rows say, in the terms a user asks about.

* **Behaviour changes**: between consecutive releases with results on one device, every
  phase of every case is compared: the class of every element (finite, 0, -0, inf, -inf,
  nan, also where the reference is undefined), the exception (type and message), the
  warnings.  Each phase that differs is one *phase transition* (``phase: FROM → TO``) with
  a severity (harness.severities).  Every transition belongs to exactly one behaviour
  change: a case's most severe transition at a step leads, and the transitions that follow
  from it join its change as *consequences* (a gradient that had none because the forward
  raised, the warnings, a gradient that changed the same way); every other transition
  leads a change of its own.  Changes are clustered by step, phase, what changed and
  severity, then described by the axes they cover and titled so that no two titles are
  equal; changes that share cases at one step point to each other (``related``).
* **Drift**: a case whose outcome did not change but whose values did (bits) is drift:
  counted per step with its largest difference in units in the last place of its dtype.
* **Phase verdicts**: per release, device, scope, dtype and phase, how many cases pass.

No torch: this reads the verdict frame (harness.evaluation) and the cases' inputs.

Fast because most of a case's releases agree: each row's outcome of every phase (its
values' bits, its exception) and its warnings are summed up once, column by column, in a
signature; consecutive releases are compared by signature, and only where they differ is
the transition or the drift worked out.
"""

from __future__ import annotations

import functools
import math
import operator
import struct
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from . import axes, phases, scopes, severities, tensors, verdicts
from .evaluate import case_scope, tolerance
from .inputs import call_inputs
from .versions import release_key

CLASS_ORDER = tensors.CLASSES
WARNINGS = "warnings"  # the pseudo-phase of warnings, after every phase
PHASE_LABEL = {**{p.name: p.label for p in phases.PHASES}, WARNINGS: "warnings"}
PHASE_ORDER = (*phases.NAMES, WARNINGS)
# ulp of each dtype at 1.0 (spacing doubles with each binade): for drift in ulps
MANTISSA_BITS, MIN_EXPONENT = tensors.MANTISSA_BITS, tensors.MIN_EXPONENT


# ------------------------------------------------------------------ outcomes


@dataclass(frozen=True)
class Outcome:
    """One phase of one case in one release on one device."""

    kind: str  # value | error | not implemented | no gradient | crash | timeout | stale | not run
    classes: tuple = ()  # per element, for a value (CLASS_ORDER names); a summary's: (class, count) pairs
    error: str = ""  # exception type, for error / not implemented
    message: str = ""  # its message, normalised
    bits: bytes = b""  # the values' float64 bits (a summary's digest: harness.tensors.bits), for drift
    ulp: float = 0.0  # a summary's largest error against the documented reference, in ulps

    @property
    def summary(self) -> bool:
        return tensors.is_summary_bits(self.bits)

    def same_behaviour(self, other: Outcome) -> bool:
        return (self.kind, self.classes, self.error, self.message) == (
            other.kind,
            other.classes,
            other.error,
            other.message,
        )


def element_classes(values) -> tuple:
    return tuple(map(tensors.element_class, values))


def _counts(o: Outcome) -> Counter:
    """{class: count} of a value outcome, exact or summarised."""
    return Counter(dict(o.classes)) if o.summary else Counter(o.classes)


@functools.lru_cache(maxsize=1 << 14)
def normalise_message(message: str) -> str:
    """An exception message without what varies from build to build: C++ backtraces,
    addresses, file paths and line numbers."""
    import re

    text = str(message).split("\nException raised from")[0].strip()
    text = re.sub(r"0x[0-9a-fA-F]+", "0x…", text)
    text = re.sub(r"\(Triggered internally at [^)]*\)", "", text)
    text = re.sub(r"\(.*?[/\\].*?:\d+\)", "", text)  # (path/file.cpp:123)
    return " ".join(text.split())[:300]


def _tensor_outcome(tensor, memo: dict | None = None) -> Outcome:
    """The outcome of a recorded tensor (``memo``: by object, for one compute(): the
    evaluation shares one object between equal outputs)."""
    hit = memo.get(id(tensor)) if memo is not None else None
    if hit is None:
        import struct

        if tensors.is_summary(tensor):
            counts = tensors.class_counts(tensor)
            check = (tensor.get("checks") or {}).get("documented") or {}
            hit = Outcome(
                "value",
                tuple((c, n) for c, n in counts.items() if n),
                bits=tensors.bits(tensor),
                ulp=float(check.get("ulp") or 0.0),
            )
        else:
            vals = tensor.get("values") or []
            hit = Outcome("value", element_classes(vals), bits=struct.pack(f"<{len(vals)}d", *vals))
        if memo is not None:
            memo[id(tensor)] = hit
    return hit


def outcome(row, phase: phases.Phase, memo: dict | None = None) -> Outcome:
    """The outcome of ``phase`` in a verdict row (a namedtuple of the frame's columns)."""
    if row.status in ("crash", "timeout"):
        return Outcome(row.status)
    if row.verdict == "stale":
        return Outcome("stale")
    err = (row.errors or {}).get(phase.name) if isinstance(row.errors, dict) else None
    if err:
        etype, _, msg = err.partition(": ")
        kind = "not implemented" if getattr(row, phase.name) == "unsupported" else "error"
        return Outcome(kind, error=etype, message=normalise_message(msg))
    if phase.grad_of is None:
        tensor = row.output
    else:
        tensor = (row.grads or {}).get(phase.grad_of) if isinstance(row.grads, dict) else None
        if tensor is None:
            if phases.not_recorded(phase, row.grads, row.errors):
                return Outcome("not run")  # recorded before double backward was (not judged)
            return Outcome("no gradient")
    if not isinstance(tensor, dict):
        return Outcome("not run")
    return _tensor_outcome(tensor, memo)


# Warnings that come from the environment a run had, not from kl_div (emitted once per process,
# by whichever case came first): never a behaviour change of the op.
ENVIRONMENT_WARNINGS = ("Failed to initialize NumPy",)


def warnings_outcome(row) -> frozenset:
    """The warnings of a row, each normalised (what varies from build to build removed),
    without the environment's (ENVIRONMENT_WARNINGS)."""
    return frozenset(normalise_message(w) for w in row.warnings or () if not any(e in w for e in ENVIRONMENT_WARNINGS))


# ------------------------------------------------------------------ transitions


def _classes_text(classes) -> str:
    present = set(classes)
    return "/".join(c for c in CLASS_ORDER if c in present) or "value"


def transition(a: Outcome, b: Outcome) -> tuple[str, str, tuple]:
    """(FROM, TO, changed element positions) describing how ``a`` became ``b``."""
    if a.kind == b.kind == "value" and (a.summary or b.summary):  # counts, no positions
        ca, cb = _counts(a), _counts(b)
        if sum(ca.values()) != sum(cb.values()):
            return f"shape {sum(ca.values())} values", f"shape {sum(cb.values())} values", ()
        fewer = [c for c in CLASS_ORDER if ca[c] > cb[c]]
        more = [c for c in CLASS_ORDER if cb[c] > ca[c]]
        return "/".join(fewer) or "value", "/".join(more) or "value", ()
    if a.kind == b.kind == "value":
        if len(a.classes) != len(b.classes):
            return f"shape {len(a.classes)} values", f"shape {len(b.classes)} values", ()
        changed = tuple(i for i, (x, y) in enumerate(zip(a.classes, b.classes)) if x != y)
        return _classes_text(a.classes[i] for i in changed), _classes_text(b.classes[i] for i in changed), changed
    if a.kind == b.kind and a.kind in ("error", "not implemented") and a.error == b.error:
        text = _outcome_text(a)
        return text, f"{text} (new message)", ()
    return _outcome_text(a), _outcome_text(b), ()


def _outcome_text(o: Outcome) -> str:
    if o.kind == "error":
        return o.error
    return o.kind


def _warning_categories(ws) -> list:
    return sorted({w.split(":", 1)[0] for w in ws})


def warnings_transition(a: frozenset, b: frozenset) -> tuple[str, str]:
    gone, new = a - b, b - a
    if gone and new:
        cats = _warning_categories(gone | new)
        return "/".join(_warning_categories(gone)), "/".join(f"{c} (new message)" for c in cats)
    if new:
        return "none", "/".join(_warning_categories(new))
    return "/".join(_warning_categories(gone)), "none"


# ------------------------------------------------------------------ where (inputs)

FEATURES = (  # (name, argument, predicate on its values), the most specific first
    ("target < 0", "second", lambda v: np.isfinite(v) & (v < 0)),
    ("target = 0", "second", lambda v: v == 0),
    ("target = -inf", "second", lambda v: v == -np.inf),
    ("target = inf", "second", lambda v: v == np.inf),
    ("target = nan", "second", np.isnan),
    ("target < 0 or nan", "second", lambda v: (v < 0) | np.isnan(v)),
    ("target ≤ 0 or nan", "second", lambda v: ~(v > 0)),  # where a 'target > 0' test fails
    ("input = -inf", "first", lambda v: v == -np.inf),
    ("input = inf", "first", lambda v: v == np.inf),
    ("input = nan", "first", np.isnan),
)
FEATURE_NAMES = tuple(name for name, _, _ in FEATURES)


def input_features(case, positions: tuple, memo: dict | None = None, phase: str = "forward") -> frozenset | None:
    """The FEATURES that hold at *every* one of ``positions`` of the phase's tensor: the
    broadcast elements of an elementwise forward output, the elements of a gradient whose
    arguments have one shape; None where that cannot be said (a reduced forward, no
    positions, arguments that do not broadcast or, for a gradient, differ in shape).
    ``memo``: for one compute(), the arguments' feature masks by what they depend on."""
    if not positions or (phase == "forward" and case.reduction != "none") or phase not in phases.NAMES:
        return None
    key = (id(case.family), case.dtype, case.log_target, case.order)  # what call_inputs reads
    masks = memo.get(key) if memo is not None else None
    if masks is None:
        masks = _feature_masks(case)
        if memo is not None:
            memo[key] = masks
    if masks is _UNBROADCASTABLE:
        return None
    size, _, by_element, same_shape = masks
    if max(positions) >= size or (phase != "forward" and not same_shape):
        return None
    where = list(positions)
    return frozenset(name for name, mask in by_element if mask[where].all())


def where_text(features) -> tuple:
    """What a title says of the features every changed element shares: the first (most
    specific) one of the target's, then of the input's."""
    named = []
    for arg in ("second", "first"):
        first = next((name for name, a, _ in FEATURES if a == arg and name in features), None)
        if first:
            named.append(first)
    return tuple(named)


_UNBROADCASTABLE = object()


def _feature_masks(case):
    """(elements, the features present anywhere, ((feature, per-element mask), ...), whether
    both arguments have one shape) of the case's broadcast arguments, or _UNBROADCASTABLE."""
    ci = call_inputs(case)
    try:
        first, second = np.broadcast_arrays(ci.first, ci.second)
    except ValueError:
        return _UNBROADCASTABLE
    flat = {"first": first.reshape(-1), "second": second.reshape(-1)}
    by_element = tuple((name, np.asarray(pred(flat[arg]), dtype=bool)) for name, arg, pred in FEATURES)
    anywhere = frozenset(name for name, mask in by_element if mask.size and mask.any())
    return flat["first"].size, anywhere, by_element, np.shape(ci.first) == np.shape(ci.second)


# ------------------------------------------------------------------ changes


@dataclass
class CaseChange:
    """One phase of one case at one release step: what it was, what it is, how severe."""

    case_id: str
    device: str
    previous: str
    since: str
    phase: str
    from_: str
    to: str
    positions: tuple
    old_verdict: str
    new_verdict: str
    severity: str = "changed"  # harness.severities
    lead: bool = True  # False: a consequence of a leading transition of its case at this step
    follows: object = field(default=None, compare=False, repr=False)  # that transition (None: the case's lead)


@dataclass
class BehaviourChange:
    device: str
    previous: str  # the last release without it
    since: str  # the first release with it
    phase: str  # of its leading transitions
    from_: str
    to: str
    severity: str = "changed"  # harness.severities: of its cases, with their consequences
    members: list = field(default_factory=list)  # every CaseChange it holds: leading ones, then consequences
    where: tuple = ()  # input features every changed element of its cases shares
    scope: dict = field(default_factory=dict)  # axis -> values covered
    scopes: tuple = ()  # domain scopes covered
    phases_seen: tuple = ()  # every phase among its members
    direction: str = "changed"  # fixed | broke | changed | mixed
    consequences: tuple = ()  # ((phase, from, to, cases), ...): its members that follow from the lead
    related: tuple = ()  # keys of the other changes of the same cases at the same step
    key: str = ""  # a stable anchor (set by compute: device, step, phase, transition)
    title: str = ""  # unique among the changes (set by compute)

    @property
    def cases(self) -> list:
        """Its leading transitions: one per case, in case order."""
        return [m for m in self.members if m.lead]

    @property
    def count(self) -> int:
        return sum(m.lead for m in self.members)

    @property
    def wording(self) -> bool:
        return self.severity == severities.WORDING


def change_key(device: str, since: str, phase: str, from_: str, to: str) -> str:
    import re

    text = f"{device}-{since}-{phase}-{from_}-to-{to}"
    return "bc-" + re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


@dataclass
class Drift:
    device: str
    previous: str
    since: str
    cases: int
    max_ulps: float
    dtypes: tuple
    phases: tuple


@dataclass
class Findings:
    changes: list  # BehaviourChange, by device, step, phase
    case_changes: list  # every CaseChange (each in exactly one BehaviourChange)
    drift: list  # Drift per device and step
    steps: list  # (device, previous, release) compared
    phase_counts: dict  # (release, device, scope, dtype, phase) -> Counter of verdicts


def _direction(old: str, new: str) -> str:
    old_bad, new_bad = verdicts.BY_NAME[old].problem or old == "unsupported", verdicts.BY_NAME[new].problem
    if old_bad and not new_bad and new != "unsupported":
        return "fixed"
    if new_bad and not old_bad:
        return "broke"
    return "changed"


SMALL = 64  # values compared in plain Python below this many (numpy's overhead is larger; same results)


def _beyond_tolerance(a: bytes, b: bytes, tol: dict) -> tuple:
    """Positions where two finite values differ by more than the case's tolerance ``tol``
    (harness.evaluate.tolerance, relative to the larger of the two)."""
    atol, rtol = tol["atol"], tol["rtol"]
    if len(a) == len(b) and len(a) <= 8 * SMALL:  # the same IEEE operations, one value at a time
        xs, ys = struct.unpack(f"<{len(a) // 8}d", a), struct.unpack(f"<{len(b) // 8}d", b)
        isfinite = math.isfinite
        return tuple(
            i
            for i, (x, y) in enumerate(zip(xs, ys))
            if isfinite(x) and isfinite(y) and abs(x - y) > atol + rtol * max(abs(x), abs(y))
        )
    x = np.frombuffer(a, dtype=np.float64)
    y = np.frombuffer(b, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bound = atol + rtol * np.maximum(np.abs(x), np.abs(y))
        bad = np.isfinite(x) & np.isfinite(y) & (np.abs(x - y) > bound)
    return tuple(np.flatnonzero(bad).tolist())


@functools.lru_cache(maxsize=64)
def _significant(dtype: str, atol: float) -> float:
    """The magnitude below which a difference means nothing: the tolerance's atol or the
    dtype's smallest normal, whichever is larger."""
    return max(atol, float(np.exp2(MIN_EXPONENT.get(dtype, -1022))))


def _ulps(a: bytes, b: bytes, dtype: str, atol: float = 0.0) -> float:
    """The largest difference of two values in units in the last place of ``dtype``, where
    the values are significant (see _significant), finite and differ."""
    floor = _significant(dtype, atol)
    if len(a) == len(b) and len(a) <= 8 * SMALL:  # which values count, in plain Python (the same tests)
        xs, ys = struct.unpack(f"<{len(a) // 8}d", a), struct.unpack(f"<{len(b) // 8}d", b)
        isfinite = math.isfinite
        both = [
            i
            for i, (x, y) in enumerate(zip(xs, ys))
            if isfinite(x) and isfinite(y) and x != y and max(abs(x), abs(y)) >= floor
        ]
        if not both:
            return 0.0
        x = np.array([xs[i] for i in both], dtype=np.float64)
        y = np.array([ys[i] for i in both], dtype=np.float64)
        mag = np.maximum(np.abs(x), np.abs(y))
    else:
        x = np.frombuffer(a, dtype=np.float64)
        y = np.frombuffer(b, dtype=np.float64)
        mag = np.maximum(np.abs(x), np.abs(y))
        both = np.isfinite(x) & np.isfinite(y) & (x != y) & (mag >= floor)
        if not both.any():
            return 0.0
        x, y, mag = x[both], y[both], mag[both]
    ulp = np.exp2(np.floor(np.log2(mag)) - MANTISSA_BITS.get(dtype, 52))
    return float((np.abs(x - y) / ulp).max())


COLUMNS = (
    "id",
    "device",
    "release",
    "scope",
    "dtype",
    "status",
    "verdict",
    *phases.NAMES,
    "output",
    "grads",
    "errors",
    "warnings",
)


def _columns(frame) -> dict:
    """The frame's COLUMNS as plain lists (far faster to walk than the frame)."""
    if not len(frame):
        return {}
    if frame.attrs:  # pandas deep-copies attrs for every column taken out: a view without them
        frame = type(frame)(frame, copy=False)
    return {c: frame[c].tolist() for c in COLUMNS}


_NOT_RUN = "not run"  # the signature of a phase whose tensor is not a tensor
WIDTH = len(phases.PHASES) + 1  # a signature: each phase, then the warnings (a crash: 2 entries)


def _signatures(cols: dict) -> tuple[list, list]:
    """For each row of the columns: a signature of everything :func:`_case_change`
    compares (each phase's outcome, with its bits, and the warnings), and whether the row
    is stale.  Equal signatures: equal outcomes, no change and no drift; unequal ones are
    only worth a closer look (the signature is finer than the outcome: an error's raw
    text, the warnings as recorded).  Made a column at a time."""
    from itertools import compress

    status, verdict, errors, output, grads, warnings = (
        cols[c] for c in ("status", "verdict", "errors", "output", "grads", "warnings")
    )
    n = len(status)
    sig_cols = []  # per phase: the signature of its outcome in each row
    for p in phases.PHASES:
        if p.grad_of is None:
            col = output  # anything but a tensor (a dict): not run
        else:
            arg = p.grad_of  # None: no gradient; anything else but a tensor: not run
            col = [g.get(arg) if isinstance(g, dict) else None for g in grads]
        objects = dict(zip(map(id, col), col))  # each distinct object once (they live in the columns)
        objects.pop(id(None), None)
        sig_of = {}
        for key, t in objects.items():
            if not isinstance(t, dict):
                sig_of[key] = _NOT_RUN
                continue
            if tensors.is_summary(t):
                sig_of[key] = tensors.bits(t)
                continue
            try:
                vals = t.get("values") or []
                total = sum(vals)
                if type(vals) is list and 0.0 not in vals and total == total:
                    sig_of[key] = vals  # no zero (-0 == 0) and no nan (nan != nan): equal lists, equal bits
                else:
                    sig_of[key] = struct.pack(f"<{len(vals)}d", *vals)  # the bits: the classes follow from them
            except Exception:  # noqa: BLE001 - unpackable: equal to nothing, _case_change decides
                sig_of[key] = object()
        sig_cols.append(list(map(sig_of.get, map(id, col))))
    for i in compress(range(n), errors):  # a phase that raised: its exception, as recorded
        errs = errors[i]
        if isinstance(errs, dict):
            for p, sig_col in zip(phases.PHASES, sig_cols):
                err = errs.get(p.name)
                if err:
                    sig_col[i] = (err, cols[p.name][i] == "unsupported")
    sigs = list(zip(*sig_cols, warnings))
    stale = [False] * n
    for i in compress(range(n), map(operator.eq, verdict, ["stale"] * n)):
        sigs[i], stale[i] = None, True
    for st in ("crash", "timeout"):
        for i in compress(range(n), map(operator.eq, status, [st] * n)):
            sigs[i], stale[i] = (st, warnings[i]), False  # every phase: the crash; the warnings still count
    return sigs, stale


def _phase_counts(cols: dict, rows: list | None) -> dict:
    """(release, device, scope, dtype, phase) -> Counter of the phase's verdicts, over
    ``rows`` (None: all), keys and counts in the order of their first row."""
    names = ("release", "device", "scope", "dtype", *phases.NAMES)
    columns = [cols[c] for c in names]
    if rows is not None:
        columns = [[col[i] for i in rows] for col in columns]
    phase_counts: dict = defaultdict(Counter)
    for (rel, dev, scope, dtype, *verdicts_), n in Counter(zip(*columns)).items():  # distinct rows, first seen first
        for name, v in zip(phases.NAMES, verdicts_):
            if v is not None and v == v:
                phase_counts[(rel, dev, scope, dtype, name)][v] += n
    return dict(phase_counts)


def compute(frame, cases_by_id: dict) -> Findings:
    """Findings of a verdict frame (harness.evaluation) for the cases ``cases_by_id``."""
    with _gc_paused():
        return _compute(_columns(frame), cases_by_id)


class _gc_paused:
    """No cyclic garbage collection while the many short-lived tuples of one compute are
    made (it would scan the frame's millions of objects again and again); restored after."""

    def __enter__(self):
        import gc

        self.was = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc):
        import gc

        if self.was:
            gc.enable()


def _compute(cols: dict, cases_by_id: dict) -> Findings:
    if not cols:
        return Findings([], [], [], [], {})
    order = {cid: i for i, cid in enumerate(cases_by_id)}
    ids = cols["id"]
    rows = [i for i, cid in enumerate(ids) if cid in order]
    phase_counts = _phase_counts(cols, None if len(rows) == len(ids) else rows)
    # every case's runs in release order, by device then case order (a stable sort: equal
    # releases keep the frame's order); each two consecutive runs of a case: a release step
    devices, releases = cols["device"], cols["release"]
    all_rows = len(rows) == len(ids)
    kept = (lambda col: col) if all_rows else (lambda col: [col[i] for i in rows])
    dev_names = sorted(set(kept(devices)))
    rel_names = sorted(set(kept(releases)), key=release_key)
    dev_rank = {d: k for k, d in enumerate(dev_names)}
    rel_rank = {r: k for k, r in enumerate(rel_names)}
    a_dev = np.fromiter(map(dev_rank.__getitem__, kept(devices)), dtype=np.int64, count=len(rows))
    a_case = np.fromiter(map(order.__getitem__, kept(ids)), dtype=np.int64, count=len(rows))
    a_rel = np.fromiter(map(rel_rank.__getitem__, kept(releases)), dtype=np.int64, count=len(rows))
    perm = np.lexsort((a_rel, a_case, a_dev))
    pairs = np.flatnonzero((a_dev[perm[1:]] == a_dev[perm[:-1]]) & (a_case[perm[1:]] == a_case[perm[:-1]]))
    before, after = perm[pairs], perm[pairs + 1]  # positions in rows
    n_rel = max(len(rel_names), 1)
    step_codes = np.unique((a_dev[before] * n_rel + a_rel[before]) * n_rel + a_rel[after])
    steps = [
        (dev_names[c // n_rel // n_rel], rel_names[c // n_rel % n_rel], rel_names[c % n_rel])
        for c in step_codes.tolist()
    ]
    # only where the signatures differ is there anything to look at
    sigs, stale = _signatures(cols)
    rows_arr = np.asarray(rows, dtype=np.int64)
    prev_of, cur_of = rows_arr[before].tolist(), rows_arr[after].tolist()
    sig_at, stale_at = sigs.__getitem__, stale.__getitem__
    differ = np.fromiter(map(operator.ne, map(sig_at, prev_of), map(sig_at, cur_of)), dtype=bool, count=len(prev_of))
    comparable = ~(
        np.fromiter(map(stale_at, prev_of), dtype=bool, count=len(prev_of))
        | np.fromiter(map(stale_at, cur_of), dtype=bool, count=len(prev_of))
    )
    case_changes, drift_acc = [], defaultdict(list)
    scope_of: dict = {}  # case id -> its domain scope
    memo: dict = {}  # id(tensor) -> Outcome; the tensors live in the columns for the whole call
    from collections import namedtuple

    Row = namedtuple("Row", COLUMNS)
    columns = [cols[c] for c in COLUMNS]
    for k in np.flatnonzero(differ & comparable).tolist():
        i, j = prev_of[k], cur_of[k]
        prev, cur = Row._make([col[i] for col in columns]), Row._make([col[j] for col in columns])
        differs = tuple(map(operator.ne, sigs[i], sigs[j])) if len(sigs[i]) == len(sigs[j]) == WIDTH else None
        case = cases_by_id[cur.id]
        found = _case_change(case, cur.device, prev.release, cur.release, prev, cur, drift_acc, memo, differs)
        if found:
            scope = scope_of.get(cur.id)
            if scope is None:
                scope = scope_of[cur.id] = case_scope(case)
            case_changes += _lead(found, scope)
    changes = _cluster(case_changes, cases_by_id, scope_of)
    drift = []
    for (device, prev_rel, rel), items in sorted(drift_acc.items(), key=lambda kv: (kv[0][0], release_key(kv[0][2]))):
        drift.append(
            Drift(
                device,
                prev_rel,
                rel,
                len({cid for cid, _, _, _ in items}),
                max(u for _, u, _, _ in items),
                tuple(sorted({d for _, _, d, _ in items}, key=axes.BY_NAME["dtype"].values.index)),
                tuple(p for p in phases.NAMES if any(ph == p for _, _, _, ph in items)),
            )
        )
    steps_sorted = sorted(steps, key=lambda s: (s[0], release_key(s[2])))
    return Findings(changes, case_changes, drift, steps_sorted, phase_counts)


def _phase_verdict(row, phase: str) -> str:
    """A row's verdict of ``phase``; the case's where the phase has none of its own (an
    earlier phase raised)."""
    v = getattr(row, phase)
    return v if isinstance(v, str) else row.verdict or "pass"


def _case_change(case, device, prev_rel, rel, prev, cur, drift_acc, memo, differs=None) -> list:
    """The phase transitions of one case from row ``prev`` to row ``cur`` (CaseChange, in
    phase order, the warnings last; empty: none), its drift added to ``drift_acc``.
    ``differs``: per phase, then the warnings, whether their signatures (:func:`_signatures`)
    differ (equal: the same outcome, bits and warnings, nothing to compare); None: all."""
    found = []  # (phase, from, to, positions, old verdict, new verdict)
    for k, p in enumerate(phases.PHASES):
        if differs is not None and not differs[k]:
            continue
        a, b = outcome(prev, p, memo), outcome(cur, p, memo)
        if "stale" in (a.kind, b.kind):
            return []  # made from other inputs: not comparable
        if not a.same_behaviour(b):
            frm, to, pos = transition(a, b)
            found.append((p.name, frm, to, pos, _phase_verdict(prev, p.name), _phase_verdict(cur, p.name)))
        elif a.kind == "value" and a.bits != b.bits and (a.summary or b.summary):
            # no values to compare: beyond tolerance where the verdict against the reference
            # changed; else drift of at most the two errors against it
            old_v, new_v = getattr(prev, p.name), getattr(cur, p.name)
            if old_v != new_v:
                found.append((p.name, "value", "other value", (), old_v, new_v))
            else:
                drift_acc[(device, prev_rel, rel)].append((case.id, a.ulp + b.ulp, cur.dtype, p.name))
        elif a.kind == "value" and a.bits != b.bits:
            tol = tolerance(case)
            beyond = _beyond_tolerance(a.bits, b.bits, tol)
            if beyond:
                found.append(
                    (p.name, "value", "other value", beyond, _phase_verdict(prev, p.name), _phase_verdict(cur, p.name))
                )
            else:
                ulps = _ulps(a.bits, b.bits, case.dtype, tol["atol"])
                drift_acc[(device, prev_rel, rel)].append((case.id, ulps, cur.dtype, p.name))
    wa, wb = (warnings_outcome(prev), warnings_outcome(cur)) if differs is None or differs[-1] else ((), ())
    if wa != wb:
        frm, to = warnings_transition(wa, wb)
        found.append((WARNINGS, frm, to, (), prev.verdict, cur.verdict))
    return [CaseChange(case.id, device, prev_rel, rel, *f) for f in found]


# ------------------------------------------------------------------ severity

_FAILING = frozenset({"nan", "inf", "-inf"})
_VALUE_WORDS = frozenset({"value", "other value"})


def _parts(descriptor: str) -> set:
    return set(descriptor.split("/"))


def _is_values(descriptor: str) -> bool:
    """A transition side made of values: element classes, 'value', 'other value'."""
    return descriptor in _VALUE_WORDS or _parts(descriptor) <= set(CLASS_ORDER)


def wording_only(phase: str, from_: str, to: str) -> bool:
    """Nothing a result depends on changed: an exception's or a warning's message, or the
    sign of a zero."""
    if to.endswith("(new message)"):
        return True
    return phase != WARNINGS and from_ != to and (_parts(from_) | _parts(to)) <= {"0", "-0"}


def _new_failure(from_: str, to: str) -> bool:
    """The new side has nan, inf or an error that the old side did not have."""
    if _is_values(to):
        return bool((_parts(to) & _FAILING) - _parts(from_))
    if to in ("none", "no gradient"):
        return False
    return _is_values(from_)  # raises now (or dies) where it computed


def severity_of(ch: CaseChange, scope: str) -> str:
    """The severity of one phase transition of a case of domain ``scope`` (the rules of
    harness.severities, in its order; wording first: it is never more than that)."""
    if wording_only(ch.phase, ch.from_, ch.to):
        return "wording"
    fixed = _direction(ch.old_verdict, ch.new_verdict) == "fixed"
    if scope in ("valid", "boundary") and not fixed:
        if ch.phase != WARNINGS and _new_failure(ch.from_, ch.to):
            return "failure"
        if scope == "valid" and _is_values(ch.from_) and _is_values(ch.to) and ch.phase != WARNINGS:
            return "silent"
        return "changed"
    if fixed:
        return "fix"
    return "invalid" if scope == "invalid" else "misuse" if scope == "misuse" else "changed"


def _lead(found: list, scope: str) -> list:
    """The transitions of one case at one step, with their severities: the most severe leads
    (the first in phase order among equals), a gradient that had none before and the
    warnings only where nothing else changed; a transition that follows from the lead (such
    a gradient, the warnings, a phase that changed the same way) is its consequence; of the
    others, the first of each way of changing (from, to) leads a change of its own and the
    phases after it that changed that way are its consequences."""
    for ch in found:
        ch.severity = severity_of(ch, scope)
    followers = [ch for ch in found if ch.from_ == "no gradient" or ch.phase == WARNINGS]
    lead = min([ch for ch in found if ch not in followers] or found, key=lambda ch: severities.RANK[ch.severity])
    by_way: dict = {(lead.from_, lead.to): lead}  # (from, to) -> the transition that leads that way
    for ch in sorted(found, key=lambda ch: severities.RANK[ch.severity]):  # stable: phase order among equals
        if ch is lead:
            continue
        if ch.from_ == "no gradient" or ch.phase == WARNINGS:
            ch.lead = False
            continue
        first = by_way.setdefault((ch.from_, ch.to), ch)
        if first is not ch:  # changed the same way as a phase before it: one change, this its consequence
            ch.lead, ch.follows = False, (None if first is lead else first)
    return found


def _cluster(case_changes: list, cases_by_id: dict, scope_of: dict) -> list:
    """Behaviour changes of the transitions: a case's leading transitions cluster by device,
    step, phase and what changed; the consequences join their lead's change, whose
    severity is the worst of its members'."""
    by_key: dict = {}
    of_unit: dict = {}  # (case, device, step) -> the cluster key of its lead
    units: dict = {}
    for ch in case_changes:
        units.setdefault((ch.case_id, ch.device, ch.since), []).append(ch)
    for unit_key, unit in units.items():
        leads = [ch for ch in unit if ch.lead]
        followers = [ch for ch in unit if not ch.lead]
        first = min(leads, key=lambda ch: severities.RANK[ch.severity])
        for ch in leads:
            key = (ch.device, ch.previous, ch.since, ch.phase, ch.from_, ch.to)
            bc = by_key.get(key)
            if bc is None:
                bc = by_key[key] = BehaviourChange(ch.device, ch.previous, ch.since, ch.phase, ch.from_, ch.to)
            bc.members.append(ch)
            of_unit[id(ch)] = bc
            if ch is first:
                of_unit[unit_key] = bc
        for ch in followers:
            of_unit[unit_key if ch.follows is None else id(ch.follows)].members.append(ch)
    features: dict = {}  # the arguments' feature masks, shared by the cases of a family
    order = {cid: i for i, cid in enumerate(cases_by_id)}
    changes = [_describe(bc, cases_by_id, features, order, scope_of) for bc in by_key.values()]
    changes.sort(
        key=lambda b: (
            severities.RANK[b.severity],
            b.device,
            release_key(b.since),
            PHASE_ORDER.index(b.phase),
            -b.count,
            b.from_,
            b.to,
        )
    )
    _name(changes)
    step_of: dict = {}
    for bc in changes:
        for m in bc.members:
            step_of.setdefault((m.case_id, m.device, m.since), []).append(bc)
    for bc in changes:
        seen = {}
        for m in bc.members:
            for other in step_of[(m.case_id, m.device, m.since)]:
                if other is not bc:
                    seen[other.key] = None
        bc.related = tuple(o.key for o in changes if o.key in seen)
    return changes


def _describe(bc: BehaviourChange, cases_by_id: dict, memo: dict, order: dict, scope_of: dict) -> BehaviourChange:
    """Sort a change's members and work out what it covers (``memo``: feature masks;
    ``order``: case id -> position; ``scope_of``: case id -> scope, as known)."""
    bc.members.sort(key=lambda m: (not m.lead, PHASE_ORDER.index(m.phase), order.get(m.case_id, 0)))
    leads = bc.cases
    members = [cases_by_id[ch.case_id] for ch in leads]
    present = [set(values) for values in zip(*(c.values for c in members))] if members else [set() for _ in axes.AXES]
    bc.scope = {a.name: tuple(v for v in a.values if v in seen) for a, seen in zip(axes.AXES, present)}
    member_scopes = {scope_of.get(c.id) or case_scope(c) for c in members}
    bc.scopes = tuple(s for s in scopes.NAMES if s in member_scopes)
    if bc.phase in phases.NAMES:
        shared = None
        for ch, case in zip(leads, members):
            feats = input_features(case, ch.positions, memo, bc.phase)
            if feats is not None:
                shared = feats if shared is None else shared & feats
        bc.where = where_text(shared or ())
    # its leads' worst severity; a consequence raises it only where it is a new failure or a
    # silent value change itself (a gradient that was missing and is still not implemented is not)
    bc.severity = severities.worst(*(m.severity for m in bc.members if m.lead or m.severity in ("silent", "failure")))
    dirs = {_direction(ch.old_verdict, ch.new_verdict) for ch in leads}
    bc.direction = dirs.pop() if len(dirs) == 1 else "mixed"
    follow = Counter((m.phase, m.from_, m.to) for m in bc.members if not m.lead)
    bc.consequences = tuple(
        (ph, f, t, n) for (ph, f, t), n in sorted(follow.items(), key=lambda kv: (PHASE_ORDER.index(kv[0][0]), kv[0]))
    )
    seen = {m.phase for m in bc.members}
    bc.phases_seen = tuple(p for p in PHASE_ORDER if p in seen)
    return bc


# ------------------------------------------------------------------ titles


def state_words(descriptor: str, phase: str) -> str:
    """A transition side in plain words."""
    if descriptor.endswith(" (new message)"):
        return f"{state_words(descriptor[: -len(' (new message)')], phase)}, with a new message"
    if descriptor == "value":
        return "computes" if phase in phases.NAMES else "a value"
    if descriptor == "other value":
        return "other values (beyond tolerance)"
    if descriptor == "none":
        return "no warning"
    if descriptor in ("not implemented", "no gradient", "crash", "timeout"):
        return {"crash": "the process dies", "timeout": "times out"}.get(descriptor, descriptor)
    if _parts(descriptor) <= set(CLASS_ORDER):
        names = descriptor.split("/")
        return " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
    if phase == WARNINGS:
        return f"warns {descriptor}"
    return f"raises {descriptor}"


def _scope_text(bc: BehaviourChange, axes_named: tuple) -> str:
    parts = []
    for name in ("dtype", *axes_named):
        vals = bc.scope.get(name, ())
        if len(vals) == 1:
            value = vals[0]
            parts.append(
                str(value) if name == "dtype" else f"{name}={value!r}" if name == "reduction" else f"{name}={value}"
            )
    if bc.scopes and set(bc.scopes) <= {"invalid", "misuse"}:
        parts.append(" and ".join("misuse" if s == "misuse" else "invalid input" for s in bc.scopes))
    return ", ".join(parts)


def _title(bc: BehaviourChange, axes_named: tuple = ()) -> str:
    scope = _scope_text(bc, axes_named)
    now, was = state_words(bc.to, bc.phase), state_words(bc.from_, bc.phase)
    now = f"{now} now" if bc.to == "value" and bc.phase in phases.NAMES else now
    where = f" where {' and '.join(bc.where)}" if bc.where else ""
    head = f"{scope}, {PHASE_LABEL[bc.phase]}" if scope else PHASE_LABEL[bc.phase].capitalize()
    return f"{head}: {now} (was: {was}){where}"


_DISTINGUISH = ("log_target", "reduction", "order")  # axes a title names when it must, in this order


def _name(changes: list) -> None:
    """Set each change's key (unique: the severity joins where two share one) and title
    (unique: the axes that set colliding changes apart join, then the release step)."""
    seen_keys: dict = {}
    for bc in changes:
        key = change_key(bc.device, bc.since, bc.phase, bc.from_, bc.to)
        bc.key = key if key not in seen_keys else f"{key}-{bc.severity}"
        seen_keys[bc.key] = bc
    titles = {}
    for bc in changes:
        bc.title = _title(bc)
        titles.setdefault(bc.title, []).append(bc)
    for group in [g for g in titles.values() if len(g) > 1]:
        named = tuple(
            a
            for a in _DISTINGUISH
            if len({bc.scope.get(a, ()) for bc in group}) > 1 and all(bc.scope.get(a) for bc in group)
        )
        for bc in group:
            bc.title = _title(bc, named)
    counts = Counter(bc.title for bc in changes)
    for bc in changes:
        if counts[bc.title] > 1:
            bc.title += (
                f" (from {bc.since}, {bc.device})" if len({c.device for c in changes}) > 1 else f" (from {bc.since})"
            )


# ------------------------------------------------------------------ explanations against the data


def check_explanations(found: Findings, explanations, cases_by_id: dict) -> list:
    """(explanation, problem) for each explanation (harness.explanations.Explanation) whose
    ``condition`` the results contradict: among the phase transitions it explains (its
    step, phase, from and to; leads and consequences alike), a case without one of the
    condition's axis values, scopes or broadcasting, or a changed element where its
    ``where`` feature does not hold.  The problem reads ``file:line: what is wrong``."""
    by_transition: dict = {}
    for ch in found.case_changes:
        by_transition.setdefault((ch.since, ch.phase, ch.from_, ch.to), []).append(ch)
    memo: dict = {}
    out = []
    for e in explanations:
        members = by_transition.get(e.key, [])
        if not e.condition or not members:
            continue
        found = _condition_problem(dict(e.condition), members, cases_by_id, memo)
        if found:
            key, problem = found
            line = dict(e.condition_lines).get(key, e.line)
            out.append((e, f"{e.source}:{line}: {e.since} {e.phase}: {e.from_} -> {e.to}: {problem}"))
    return out


def _condition_problem(cond: dict, members: list, cases_by_id: dict, memo: dict) -> tuple | None:
    """(the condition key, what is wrong) for the first member that contradicts ``cond``."""
    checked = 0
    for ch in members:
        case = cases_by_id.get(ch.case_id)
        if case is None:
            continue
        for name in ("reduction", "log_target", "order", "dtype"):
            if name in cond:
                allowed = cond[name] if isinstance(cond[name], tuple) else (cond[name],)
                if getattr(case, name) not in allowed:
                    return name, f"condition {name}: {cond[name]!r}, but case {ch.case_id} has {getattr(case, name)!r}"
        if "scope" in cond and case_scope(case) not in cond["scope"]:
            return "scope", f"condition scope: {list(cond['scope'])}, but case {ch.case_id} is {case_scope(case)!r}"
        if "broadcast" in cond:
            shapes = (id(case.family), case.order)  # what the arguments' shapes depend on
            broadcast = memo.get(shapes)
            if broadcast is None:
                ci = call_inputs(case)
                broadcast = memo[shapes] = np.shape(ci.first) != np.shape(ci.second)
            if broadcast != cond["broadcast"]:
                return (
                    "broadcast",
                    f"condition broadcast: {cond['broadcast']}, but case {ch.case_id} "
                    f"has {'' if broadcast else 'no '}broadcasting",
                )
        if "where" in cond:
            if cond["where"] not in FEATURE_NAMES:
                return (
                    "where",
                    f"condition where: unknown feature {cond['where']!r} (known: {', '.join(FEATURE_NAMES)})",
                )
            feats = input_features(case, ch.positions, memo, ch.phase)
            if feats is not None:
                checked += 1
                if cond["where"] not in feats:
                    return "where", (
                        f"condition where: {cond['where']!r} does not hold at every changed element of case "
                        f"{ch.case_id} ({ch.phase}, elements {list(ch.positions)[:8]})"
                    )
    if "where" in cond and not checked:
        return (
            "where",
            f"condition where: {cond['where']!r} cannot be checked: no case shows which of its elements changed",
        )
    return None


# ------------------------------------------------------------------ cached


FINDINGS_CACHE_VERSION = 2


@functools.lru_cache(maxsize=1)
def _source_fingerprint() -> str:
    """Every harness module's source (the findings depend on the frame, and the frame on
    whichever code made it and left rows out), with the versions of NumPy, pandas, Python."""
    import hashlib
    import platform
    from pathlib import Path

    import pandas as pd

    here = Path(__file__).resolve().parent
    h = hashlib.sha256(
        f"{FINDINGS_CACHE_VERSION} {np.__version__} {pd.__version__} {platform.python_version()}".encode()
    )
    for path in sorted(here.rglob("*.py")):
        h.update(path.relative_to(here).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def cache_key(frame, cases_by_id: dict, evaluation) -> str | None:
    """The key of the findings of ``frame`` in the cache (see :func:`compute_cached`), or
    None where they cannot be keyed: no evaluation, no cache folder, or a file it judged
    without a digest (:meth:`harness.evaluation.Evaluation.evaluate`)."""
    import hashlib

    files = getattr(evaluation, "evaluated", None)
    if evaluation is None or evaluation.folder is None or files is None or any(d is None for _, d in files):
        return None
    if len(frame) and not files:
        return None  # rows from somewhere else
    from .evaluation import fingerprint

    cases_fp = evaluation.fingerprint if cases_by_id is evaluation.cases else fingerprint(cases_by_id)
    h = hashlib.sha256(f"{_source_fingerprint()}\n{cases_fp}\n".encode())
    for _, digest in files:  # each file's bytes, as judged (its cache entry's key)
        h.update(digest.encode() + b"\n")
    # which of their rows the frame holds, in which order (a caller may leave some out)
    h.update(f"rows {len(frame)}\n".encode())
    if len(frame):
        view = type(frame)(frame, copy=False) if frame.attrs else frame  # attrs: deep-copied per column
        for c in ("id", "release", "device", "source"):
            if c in view.columns:
                h.update(f"{c}\0".encode() + "\x1f".join(map(str, view[c].tolist())).encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def compute_cached(frame, cases_by_id: dict, evaluation=None, key: str | None = None) -> Findings:
    """:func:`compute` ``(frame, cases_by_id)``, kept on disk next to the evaluation's
    cache (``evaluation.folder``): a later run with the same inputs reads it back instead.

    ``evaluation``: the :class:`harness.evaluation.Evaluation` whose ``evaluate_file``
    judged the results files ``frame`` was made of (:func:`harness.evaluation.frame_of`,
    rows possibly left out by harness code, e.g. repeated results).  The key: those files'
    digests (their bytes and the evaluation's fingerprint: verdict code, case files, case
    ids), the fingerprint of ``cases_by_id`` (the same where it is the evaluation's
    cases), every harness module's source and the frame's rows (id, release, device,
    source).  Without an evaluation, a cache folder or digests, it is
    :func:`compute`.  The Findings returned are equal to :func:`compute`'s.  ``key``: the
    :func:`cache_key` of these arguments, where the caller has it already."""
    key = key if key is not None else cache_key(frame, cases_by_id, evaluation)
    if key is None:
        return compute(frame, cases_by_id)
    import pickle

    from .evaluation import _dump, _prune

    path = evaluation.folder / f"findings-{key[:40]}.pickle"
    try:
        with open(path, "rb") as f, _gc_paused():
            hit = pickle.load(f)
        if hit.get("version") == FINDINGS_CACHE_VERSION and hit.get("key") == key:
            return hit["findings"]
    except Exception:  # noqa: BLE001 - a missing or unusable entry is a miss
        pass
    found = compute(frame, cases_by_id)
    if _dump(path, {"version": FINDINGS_CACHE_VERSION, "key": key, "findings": found}):
        _prune(path.parent)
    return found
