"""The verdicts, declared once: name, rank, whether it is a problem, symbol, colours, meaning.

The table is ordered from the most to the least severe (a verdict's rank is its
position).  Evaluation judges records into these names (harness/evaluate.py); the
gate, the report's legend, styles and prose, and the command line read them from here.
A new verdict is one row plus its judging rule.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    name: str
    kind: str  # "run": the run failed; "defect"; "doubt"; "limit": not available; "neutral"; "ok"
    symbol: str  # one character, for tables
    square: str  # Markdown colour square (GitHub renders no CSS)
    background: str  # CSS colours of its badge
    foreground: str
    meaning: str  # one line, for legends

    @property
    def problem(self) -> bool:
        """A defect or a doubt: what a headline counts as 'problems'."""
        return self.kind in ("run", "defect", "doubt")

    @property
    def css(self) -> str:
        return f".v-{self.name}{{background:{self.background};color:{self.foreground}}}"


TABLE: tuple[Verdict, ...] = (
    Verdict("crash", "run", "✖", "🟥", "#4a0000", "#fff", "the worker process died"),
    Verdict("timeout", "run", "⌛", "🟥", "#7a1020", "#fff", "no result within the time limit"),
    Verdict("error", "defect", "✗", "🟥", "#d32f2f", "#fff", "raised an exception it should not"),
    Verdict("nan", "defect", "N", "🟧", "#b33c00", "#fff", "nan/inf where the reference is finite"),
    Verdict("mismatch", "defect", "≠", "🟧", "#ffb74d", "#000", "differs from the documented formula beyond tolerance"),
    Verdict("unsupported", "limit", "–", "🟨", "#cfd8dc", "#000", "argument or dtype absent in this release"),
    Verdict("undefined", "neutral", "?", "🟦", "#b3e5fc", "#000", "reference undefined for these inputs; value not judged"),  # noqa: E501
    Verdict("expected-error", "ok", "⊘", "🟩", "#c5e1a5", "#000", "raised, as it should"),
    Verdict("stale", "doubt", "↺", "🟪", "#e1bee7", "#000", "inputs changed since the result was recorded"),
    Verdict("pass", "ok", "✓", "🟩", "#66bb6a", "#000", "matches the documented formula"),
)  # fmt: skip

BY_NAME: dict[str, Verdict] = {v.name: v for v in TABLE}
NAMES: tuple[str, ...] = tuple(v.name for v in TABLE)  # most severe first
RANK: dict[str, int] = {v.name: i for i, v in enumerate(TABLE)}
PROBLEMS: tuple[str, ...] = tuple(v.name for v in TABLE if v.problem)
RUN_FAILURES: tuple[str, ...] = tuple(v.name for v in TABLE if v.kind == "run")
LIMITS: tuple[str, ...] = tuple(v.name for v in TABLE if v.kind == "limit")
PASS = "pass"


def worst(*verdicts) -> str:
    """The most severe of the given verdicts (None ignored); 'pass' for none."""
    vs = [v for v in verdicts if v]
    return min(vs, key=RANK.__getitem__) if vs else PASS


def css() -> str:
    """The badge style of every verdict, one rule a line."""
    return "\n".join(v.css for v in TABLE)
