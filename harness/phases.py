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
    grad_of: str | None  # None: the forward value; else the key of its tensor in a record's grads: the
    # positional argument ("first" = input, "second" = target), or "OUTER of INNER" for the
    # derivative w.r.t. OUTER of the summed gradient w.r.t. INNER (harness.reference.second_key)
    doc: str


PHASES: tuple[Phase, ...] = (
    Phase("forward", "forward", None, "the loss value"),
    Phase("grad_input", "∂input", "first", "gradient of the summed loss w.r.t. the input argument"),
    Phase("grad_target", "∂target", "second", "gradient of the summed loss w.r.t. the target argument"),
    # second order (double backward): d/d(outer) of the sum of the first-order gradient
    # w.r.t. (inner), i.e. a Hessian-vector product with a vector of ones.  The loss is
    # pointwise, so its Hessian is diagonal within the broadcast and these four are all of it.
    Phase(
        "grad2_input",
        "∂²input",
        "first of first",
        "second derivative w.r.t. the input: ∂/∂input of the summed ∂input (created with create_graph=True)",
    ),
    Phase(
        "grad2_target_input",
        "∂target ∂input",
        "second of first",
        "mixed second derivative: ∂/∂target of the summed ∂input",
    ),
    Phase(
        "grad2_input_target",
        "∂input ∂target",
        "first of second",
        "mixed second derivative: ∂/∂input of the summed ∂target",
    ),
    Phase(
        "grad2_target",
        "∂²target",
        "second of second",
        "second derivative w.r.t. the target: ∂/∂target of the summed ∂target",
    ),
)
NAMES: tuple[str, ...] = tuple(p.name for p in PHASES)
BY_NAME: dict[str, Phase] = {p.name: p for p in PHASES}
GRADIENTS: tuple[Phase, ...] = tuple(p for p in PHASES if p.grad_of)
SECOND_ORDER: tuple[Phase, ...] = tuple(p for p in GRADIENTS if " of " in p.grad_of)


def argument_of(phase: Phase) -> str | None:
    """The argument whose shape the phase's tensor has ("first", "second"; None: the forward)."""
    return None if phase.grad_of is None else phase.grad_of.split(" of ")[0]


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


# the keys under which a record holds each order: its grads' (grad_of) and its errors' (name)
_FIRST_KEYS = frozenset(k for p in GRADIENTS if p not in SECOND_ORDER for k in (p.grad_of, p.name))
_SECOND_KEYS = frozenset(k for p in SECOND_ORDER for k in (p.grad_of, p.name))


def _holds(keys: frozenset, grads, errors) -> bool:
    return any(k in keys for k in (grads or ())) or any(k in keys for k in (errors or ()))


def holds_second_order(grads, errors) -> bool:
    """Whether a record (its grads: key -> tensor, and its errors: key -> error, keyed by
    ``grad_of`` or by phase name) holds the second order: any of its keys, value or error."""
    return _holds(_SECOND_KEYS, grads, errors)


def holds_first_order(grads, errors) -> bool:
    return _holds(_FIRST_KEYS, grads, errors)


def not_recorded(phase: Phase, grads, errors) -> bool:
    """A second-order phase of a record that has first-order gradients (values or errors)
    but nothing of the second order: it was made before double backward was recorded
    (harness.worker), so the phase is not judged.  (Without first-order gradients, because
    the forward failed, it has no gradient, like the first order.)"""
    if phase not in SECOND_ORDER or (grads is not None and not isinstance(grads, dict)):
        return False
    errors = errors if isinstance(errors, dict) else None
    return holds_first_order(grads, errors) and not holds_second_order(grads, errors)
