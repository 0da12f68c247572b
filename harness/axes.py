"""The case axes, declared once.

Every case is one family (its inputs) and one value of each axis below.  This
declaration drives the case files' schema, the expansion of families into cases, case
ids, plan entries and their input digests, the evaluation columns, the report's grouping
and the page's filters.  Adding an axis is one entry here, plus what it means: the
worker's call construction (harness/worker.py) and the reference (harness/reference.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Axis:
    name: str
    values: tuple  # every allowed value, in display order; also the default set of a family
    kind: str  # JSON type of a value: "string" or "boolean"
    to_worker: bool  # passed to the worker in the plan entry (False: applied to the inputs on the host)
    doc: str
    # whether the reference and the verdict of a record depend on the value (False: it only
    # changes how torch is called, so cases that differ in it alone and recorded the same
    # outcome get the same verdict; tests/test_evaluate.py checks this on every committed result)
    judged: bool = True

    def id_part(self, value) -> str:
        """How the value is spelled in a case id."""
        if self.kind == "boolean":
            return f"{self.name}={str(value).lower()}"
        return str(value)

    def schema(self) -> dict:
        """JSON Schema of one value."""
        return {"type": "boolean"} if self.kind == "boolean" else {"enum": list(self.values)}


AXES: tuple[Axis, ...] = (
    Axis("reduction", ("none", "sum", "mean", "batchmean"), "string", True, "the reduction argument"),
    Axis("log_target", (False, True), "boolean", True, "log_target=True (passed only when True)"),
    Axis("order", ("intended", "swapped"), "string", False, "(prediction, target), or the two swapped"),
    Axis("dtype", ("float16", "bfloat16", "float32", "float64"), "string", True, "dtype of both arguments"),
    Axis("api", ("module", "functional", "legacy_module", "legacy_functional"), "string", True,
         "nn.KLDivLoss or F.kl_div, with reduction= or the legacy size_average/reduce arguments", judged=False),
)  # fmt: skip
NAMES: tuple[str, ...] = tuple(a.name for a in AXES)
BY_NAME: dict[str, Axis] = {a.name: a for a in AXES}
WORKER_AXES: tuple[str, ...] = tuple(a.name for a in AXES if a.to_worker)
JUDGED: tuple[int, ...] = tuple(i for i, a in enumerate(AXES) if a.judged)  # positions in a case's values
# The legacy size_average/reduce arguments cannot express 'batchmean'.
BUILTIN_EXCLUDES = ({"api": ["legacy_module", "legacy_functional"], "reduction": ["batchmean"]},)


def defaults() -> dict[str, list]:
    return {a.name: list(a.values) for a in AXES}


def case_id(family_label: str, values) -> str:
    """``family/<axis value>/...`` in axis order; ``values``: a tuple in AXES order, or a
    mapping (an axis it leaves out takes its first value, the axis' default)."""
    if isinstance(values, dict):
        values = tuple(values.get(a.name, a.values[0]) for a in AXES)
    return "/".join([family_label, *(a.id_part(v) for a, v in zip(AXES, values))])


def schema_defs() -> dict:
    """The case-file schema's axis definitions ($defs 'axes' and 'excludeRule')."""
    one = {a.name: a.schema() for a in AXES}
    return {
        "axes": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                n: {"type": "array", "minItems": 1, "uniqueItems": True, "items": s} for n, s in one.items()
            },
        },
        "excludeRule": {
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "description": "A combination is excluded when every listed axis takes one of the listed values.",
            "properties": {n: {"oneOf": [s, {"type": "array", "minItems": 1, "items": s}]} for n, s in one.items()},
        },
    }
