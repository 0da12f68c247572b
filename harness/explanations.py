"""Why behaviour changed: the upstream story behind each change between releases.

harness/findings.py finds *behaviour changes* of kl_div between consecutive releases,
each one identified by the first release that has it (``since``), the phase it shows in
(``forward``, ``grad_input``, ``grad_target``, ``warnings``) and a transition
``from`` -> ``to`` (shown as "PHASE: FROM → TO").  This module reads the data file that
explains such changes -- what changed and why, with the upstream pull requests, issues or
commits behind it -- and pairs its entries with the changes found (``match``).

Loading is as strict as for case files: every problem is a ``CaseFileError`` with
``file:line: where: what``.

Transition descriptors (``from`` / ``to``), one of:

- element classes, one or several joined with "/": ``finite``, ``0``, ``-0``, ``nan``,
  ``inf``, ``-inf`` (``0``, ``0/inf``, ``nan``);
- outcome kinds: ``value``, ``other value``, ``not implemented`` (optionally `` (new message)``),
  ``no gradient``, ``crash``, ``timeout``,
  ``none`` (for warnings: no warning);
- an exception or warning type, optionally with `` (new message)``: ``RuntimeError``,
  ``RuntimeError (new message)``, ``UserWarning (new message)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from . import catalogue, phases
from .cases import CaseFileError, check_schema, read_yaml

ROOT = Path(__file__).resolve().parent.parent
# In a folder of its own: harness.cases.default_case_files() reads every cases/*.yaml as a case file.
EXPLANATIONS_PATH = ROOT / "cases" / "explanations" / "explanations.yaml"
SCHEMA_PATH = ROOT / "cases" / "explanations.schema.json"

PHASE_NAMES: tuple[str, ...] = (*phases.NAMES, "warnings")
ELEMENT_CLASSES: tuple[str, ...] = ("finite", "0", "-0", "nan", "inf", "-inf")
OUTCOMES: tuple[str, ...] = (
    "value",
    "other value",  # the same element classes, values beyond the dtype's tolerance
    "not implemented",
    "not implemented (new message)",
    "no gradient",
    "crash",
    "timeout",
    "none",
)
EXCEPTION = re.compile(r"[A-Z][A-Za-z0-9_]*(?:Error|Exception|Warning)(?: \(new message\))?")
REF_KINDS: tuple[str, ...] = ("pr", "issue", "commit")
UPSTREAM = "https://github.com/pytorch/pytorch"


def is_descriptor(text) -> bool:
    """Does ``text`` follow the transition-descriptor grammar (see the module docstring)?"""
    if not isinstance(text, str):
        return False
    if text in OUTCOMES or EXCEPTION.fullmatch(text):
        return True
    classes = text.split("/")
    return all(c in ELEMENT_CLASSES for c in classes) and len(set(classes)) == len(classes)


@dataclass(frozen=True)
class Ref:
    """One upstream reference: a pull request, an issue or a commit of pytorch/pytorch."""

    kind: str  # "pr", "issue" or "commit"
    id: int | str  # the number, or the commit's hex digits
    note: str = ""

    @property
    def url(self) -> str:
        path = {"pr": "pull", "issue": "issues", "commit": "commit"}[self.kind]
        return f"{UPSTREAM}/{path}/{self.id}"

    @property
    def label(self) -> str:
        return f"{self.id}"[:12] if self.kind == "commit" else f"#{self.id}"


@dataclass(frozen=True)
class Explanation:
    since: str
    phase: str
    from_: str
    to: str
    explanation: str
    upstream: tuple[Ref, ...]
    title: str | None = None
    where: str | None = None
    condition: tuple = ()  # ((key, value), ...): what its cases have, checked against the results
    line: int = 0
    condition_lines: tuple = ()  # ((key, line), ...) of the condition's keys
    source: str = field(default="", compare=False)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.since, self.phase, self.from_, self.to)

    @property
    def transition(self) -> str:
        """The change as shown to people: "PHASE: FROM → TO"."""
        return f"{self.phase}: {self.from_} → {self.to}"

    @property
    def heading(self) -> str:
        """The human title if the file gives one, else the transition."""
        return self.title or self.transition


@dataclass
class Matching:
    explained: dict[int, Explanation]  # index of a change -> its explanation
    unexplained: list[int]  # indices of changes no entry explains
    stale: list[Explanation]  # entries that explain no change
    refused: list = field(default_factory=list)  # (Explanation, problem): a condition its cases do not meet
    all: tuple = ()  # every entry (for the consequences of a change: matched by their own transition)


def known_releases() -> list[str]:
    """Release labels of the catalogue ("1.6" ... "nightly")."""
    return [r.key for r in catalogue.load()]


def load(path=EXPLANATIONS_PATH, releases: Iterable[str] | None = None) -> list[Explanation]:
    """Read and validate an explanations file.  ``releases``: the known release labels
    (default: the catalogue's)."""
    path = Path(path)
    doc = read_yaml(path)
    _check_quoted_releases(doc, path)
    check_schema(doc, path, SCHEMA_PATH)
    known = list(known_releases() if releases is None else releases)
    out: list[Explanation] = []
    first: dict[tuple, int] = {}
    for i, raw in enumerate(doc["explanations"]):
        where = f"explanations[{i}]"
        lines = raw.key_lines
        if raw["since"] not in known:
            raise CaseFileError(
                path, lines["since"], f"{where}.since", f"unknown release {raw['since']!r} (known: {', '.join(known)})"
            )
        if raw["phase"] not in PHASE_NAMES:
            raise CaseFileError(
                path,
                lines["phase"],
                f"{where}.phase",
                f"unknown phase {raw['phase']!r} (known: {', '.join(PHASE_NAMES)})",
            )
        for key in ("from", "to"):
            if not is_descriptor(raw[key]):
                raise CaseFileError(path, lines[key], f"{where}.{key}", f"unknown transition descriptor {raw[key]!r}")
        if raw["from"] == raw["to"]:
            raise CaseFileError(path, lines["to"], f"{where}.to", f"'from' and 'to' are the same ({raw['to']!r})")
        for key in ("explanation", "title", "where"):
            if key in raw and not raw[key].strip():
                raise CaseFileError(path, lines[key], f"{where}.{key}", "must not be blank")
        entry = Explanation(
            since=raw["since"],
            phase=raw["phase"],
            from_=raw["from"],
            to=raw["to"],
            explanation=" ".join(raw["explanation"].split()),
            upstream=tuple(_ref(item) for item in raw["upstream"]),
            title=raw.get("title"),
            where=raw.get("where"),
            condition=tuple(
                (k, tuple(v) if isinstance(v, list) else v) for k, v in (raw.get("condition") or {}).items()
            ),
            line=raw.line,
            condition_lines=tuple(getattr(raw.get("condition"), "key_lines", {}).items()),
            source=str(path),
        )
        if entry.key in first:
            raise CaseFileError(
                path,
                raw.line,
                where,
                f"duplicate explanation of {entry.since} {entry.transition} (first at line {first[entry.key]})",
            )
        first[entry.key] = raw.line
        out.append(entry)
    return out


def _check_quoted_releases(doc, path) -> None:
    """``since: 1.10`` is the number 1.1 to YAML: ask for a quoted label (before the
    schema, whose message would only say 'not of type string')."""
    entries = doc.get("explanations") if isinstance(doc, dict) else None
    for i, raw in enumerate(entries if isinstance(entries, list) else ()):
        if isinstance(raw, dict) and isinstance(raw.get("since"), (int, float)) and not isinstance(raw["since"], bool):
            raise CaseFileError(
                path,
                raw.key_lines["since"],
                f"explanations[{i}].since",
                f'release labels are strings: quote it (since: "{raw["since"]}")',
            )


def _ref(item) -> Ref:
    kind = next(k for k in REF_KINDS if k in item)  # the schema allows exactly one
    return Ref(kind, item[kind], item.get("note", ""))


def match(explanations: Sequence[Explanation], changes: Sequence, refused: Sequence = ()) -> Matching:
    """Pair changes (objects with ``since``, ``phase``, ``from_``, ``to``) with the
    explanations of exactly the same four fields.  ``refused``: (explanation, problem)
    pairs of entries whose condition the results contradict (harness.findings.
    check_explanations): they explain nothing."""
    out = {id(e) for e, _ in refused}
    explanations = [e for e in explanations if id(e) not in out]
    by_key = {e.key: e for e in explanations}
    explained: dict[int, Explanation] = {}
    unexplained: list[int] = []
    used = set()
    for i, change in enumerate(changes):
        key = (change.since, change.phase, change.from_, change.to)
        if key in by_key:
            explained[i] = by_key[key]
            used.add(key)
        else:
            unexplained.append(i)
    stale = [e for e in explanations if e.key not in used]
    return Matching(explained, unexplained, stale, list(refused), tuple(explanations))
