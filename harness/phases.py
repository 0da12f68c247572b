"""The phases of a case, declared once: what is computed and judged on its own.

A case's forward value and each gradient are judged separately (harness/evaluate.py),
compared separately between releases (harness/findings.py) and shown separately ("forward
✓, ∂input ✗ not implemented").  A later phase (e.g. second order) is one entry here, plus
its reference and the worker's computation.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Phase:
    name: str  # column name of its verdict
    label: str  # as shown to people
    grad_of: str | None  # None: the forward value; else the positional argument ("first" = input, "second" = target)
    doc: str


PHASES: tuple[Phase, ...] = (
    Phase("forward", "forward", None, "the loss value"),
    Phase("grad_input", "∂input", "first", "gradient of the summed loss w.r.t. the input argument"),
    Phase("grad_target", "∂target", "second", "gradient of the summed loss w.r.t. the target argument"),
)
NAMES: tuple[str, ...] = tuple(p.name for p in PHASES)
BY_NAME: dict[str, Phase] = {p.name: p for p in PHASES}
GRADIENTS: tuple[Phase, ...] = tuple(p for p in PHASES if p.grad_of)


def output_of(phase: Phase, rec: dict):
    """The recorded tensor of ``phase`` in a result record (None if there is none)."""
    if phase.grad_of is None:
        return rec.get("output")
    return (rec.get("grads") or {}).get(phase.grad_of)


def error_of(phase: Phase, rec: dict):
    """The recorded exception of ``phase`` ({type, message, phase}) or None."""
    if phase.grad_of is None:
        return rec.get("error")
    return (rec.get("grad_errors") or {}).get(phase.grad_of)
