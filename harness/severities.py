"""How much a behaviour change matters, declared once: the severities, most severe first.

harness/findings.py gives every phase transition of a changed case one severity (the
first row whose rule holds, in this order) and orders the behaviour changes by it; the
page, README and summary.json read the titles and the order from here.  A new severity
is one row here plus its rule in :func:`harness.findings.severity_of`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Severity:
    name: str
    title: str  # how the report heads the changes of this severity
    meaning: str  # the rule, in words (for legends and summary.json)


TABLE: tuple[Severity, ...] = (
    Severity(
        "silent",
        "Silent value changes in correct usage",
        "correct usage computes other values than the release before, with no error, nan or inf to show it",
    ),
    Severity(
        "failure",
        "New nan, inf or error in correct usage or at a boundary",
        "correct or boundary usage now gives nan or inf, or raises, where the release before did not",
    ),
    Severity(
        "changed",
        "Other changes in correct usage or at a boundary",
        "correct or boundary usage behaves otherwise, neither better nor worse by its verdicts",
    ),
    Severity(
        "fix",
        "Fixes",
        "a call that failed, was not implemented or disagreed with the maths now agrees with it",
    ),
    Severity("invalid", "Invalid input", "inputs outside the documented domain get another outcome"),
    Severity("misuse", "Misuse", "a wrong call for the KL meant (swapped arguments, 'mean', ...) gets another outcome"),
    Severity(
        "wording",
        "Wording only",
        "the message of an exception or a warning changed, or the sign of a zero: nothing a result depends on",
    ),
)
NAMES: tuple[str, ...] = tuple(s.name for s in TABLE)
BY_NAME: dict[str, Severity] = {s.name: s for s in TABLE}
RANK: dict[str, int] = {s.name: i for i, s in enumerate(TABLE)}
WORDING = "wording"


def worst(*names) -> str:
    """The most severe of the given severities."""
    return min(names, key=RANK.__getitem__)
