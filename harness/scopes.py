"""Domain scopes, declared once: what a case's arguments are, relative to what the
documentation says kl_div takes.  Each family declares its scope in its case file; a case
whose call is the wrong one for the KL the user means is 'misuse' whatever its family."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scope:
    name: str
    title: str  # how the report heads it
    meaning: str


SCOPES: tuple[Scope, ...] = (
    Scope(
        "valid",
        "Correct usage",
        "what the documentation says the arguments hold: log-probability input, probability (or, with "
        "log_target=True, log-probability) target, finite",
    ),
    Scope(
        "boundary",
        "Boundary values",
        "valid but extreme: exact zeros, underflow, near one-hot, an empty batch, broadcasting",
    ),
    Scope("invalid", "Invalid input", "outside the domain: negative probabilities, nan, inf, shapes that do not fit"),
    Scope(
        "misuse",
        "Misuse",
        "valid arguments, but the wrong call for the KL the user means: swapped arguments, 'mean', "
        "probabilities passed as input, ...",
    ),
)
NAMES: tuple[str, ...] = tuple(s.name for s in SCOPES)
BY_NAME: dict[str, Scope] = {s.name: s for s in SCOPES}
DEFAULT = "valid"
