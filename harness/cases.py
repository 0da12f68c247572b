"""Stage 1: case files (YAML) -> validated families -> expanded cases with stable ids.

A case file lists input *families*; each family is expanded over the product of its
axes (reduction, log_target, order, dtype, api) minus declared exclusions.  Validation
is strict: every problem is reported as ``file:line: path: message`` and nothing runs.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

AXES = ("reduction", "log_target", "order", "dtype", "api")
DEFAULT_AXES: dict[str, list] = {
    "reduction": ["none", "sum", "mean", "batchmean"],
    "log_target": [False, True],
    "order": ["intended", "swapped"],
    "dtype": ["float16", "bfloat16", "float32", "float64"],
    "api": ["module", "functional", "legacy_module", "legacy_functional"],
}
# The legacy size_average/reduce arguments cannot express 'batchmean'.
BUILTIN_EXCLUDES = [{"api": ["legacy_module", "legacy_functional"], "reduction": ["batchmean"]}]

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "cases" / "schema.json"
MAX_FILE_BYTES = 1_000_000
MAX_ELEMENTS = 1_000_000  # per tensor; refused before anything is allocated
MAX_NESTING = 64


class CaseFileError(Exception):
    """A case file is malformed; ``str()`` is one line: file:line: where: what."""

    def __init__(self, path, line, where, message):
        self.path, self.line, self.where, self.message = str(path), line, where, message
        loc = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{loc}: {where + ': ' if where else ''}{message}")


# ---------------------------------------------------------------- YAML with line numbers


class _Mapping(dict):
    """dict that remembers the line of itself and of each key."""

    line = 0
    key_lines: dict


class _Sequence(list):
    line = 0
    item_lines: list


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that records line numbers, refuses duplicate keys and aliases."""

    def __init__(self, stream, path):
        super().__init__(stream)
        self._path = path
        self._depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise CaseFileError(self._path, event.start_mark.line + 1, "", "YAML aliases (*name) are not allowed")
        self._depth += 1
        if self._depth > MAX_NESTING:
            event = self.peek_event()
            raise CaseFileError(self._path, event.start_mark.line + 1, "", f"nesting deeper than {MAX_NESTING} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        result = _Mapping()
        result.line = node.start_mark.line + 1
        result.key_lines = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise CaseFileError(self._path, key_node.start_mark.line + 1, "", "mapping key is not a scalar")
            if key in result:
                raise CaseFileError(self._path, key_node.start_mark.line + 1, str(key), "duplicate key")
            result[key] = self.construct_object(value_node, deep=True)
            result.key_lines[key] = key_node.start_mark.line + 1
        return result

    def construct_sequence(self, node, deep=False):
        result = _Sequence(self.construct_object(child, deep=True) for child in node.value)
        result.line = node.start_mark.line + 1
        result.item_lines = [child.start_mark.line + 1 for child in node.value]
        return result


_LineLoader.add_constructor("tag:yaml.org,2002:map", _LineLoader.construct_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _LineLoader.construct_sequence)


def _line_of(doc, path: Iterable) -> int:
    """Best line for a JSON-path inside a document built by _LineLoader."""
    node, line = doc, getattr(doc, "line", 0)
    for part in path:
        if isinstance(node, _Mapping) and part in node:
            line = node.key_lines.get(part, line)
            node = node[part]
        elif isinstance(node, _Sequence) and isinstance(part, int) and part < len(node):
            line = node.item_lines[part]
            node = node[part]
        else:
            break
    return line


def _fmt_path(path: Iterable) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _schema_validator(schema_path: Path = SCHEMA_PATH):
    import jsonschema  # host-only dependency, loaded when case files are read

    schema = json.loads(Path(schema_path).read_text())
    return jsonschema.Draft202012Validator(schema)


def check_schema(doc, path, schema_path: Path = SCHEMA_PATH) -> None:
    """Validate a line-aware YAML document against a JSON Schema; raise CaseFileError
    at the line of the most relevant problem."""
    from jsonschema.exceptions import best_match

    if not isinstance(doc, _Mapping):
        raise CaseFileError(path, getattr(doc, "line", 1), "", "top level must be a mapping")
    err = best_match(_schema_validator(schema_path).iter_errors(_plain(doc)))
    if err is not None:
        at = list(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})), key=str)
            at += extra[:1]  # point at the unknown key's own line
        raise CaseFileError(path, _line_of(doc, at), _fmt_path(err.absolute_path), _schema_message(err))


def read_yaml(path: Path):
    """Parse one YAML file into line-aware objects, or raise CaseFileError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CaseFileError(path, 0, "", f"cannot read: {exc.strerror or exc}")
    if len(raw) > MAX_FILE_BYTES:
        raise CaseFileError(path, 0, "", f"file is larger than {MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise CaseFileError(path, line, "", f"not valid UTF-8 (byte {exc.start})")
    loader = _LineLoader(text, path)
    try:
        return loader.get_single_data()
    except CaseFileError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise CaseFileError(path, line, "", f"YAML syntax: {exc.problem or exc.context}")
    except yaml.YAMLError as exc:
        raise CaseFileError(path, 0, "", f"YAML: {str(exc).splitlines()[0]}")
    except (RecursionError, ValueError, OverflowError) as exc:
        raise CaseFileError(path, 0, "", f"cannot load: {type(exc).__name__}")
    finally:
        loader.dispose()


# ---------------------------------------------------------------- the model


@dataclass(frozen=True)
class Family:
    """One input family, validated, with its defaults resolved."""

    name: str
    generator: str
    shape: tuple
    target_shape: tuple | None
    seed: int
    params: dict
    literal_input: Any
    literal_target: Any
    meaning: dict
    grad: bool
    expect_error: bool
    axes: dict
    exclude: list
    tolerance: dict
    description: str
    source: str
    line: int

    @property
    def label(self) -> str:
        """Readable family id: name plus shape, e.g. ``softmax-4x5``."""
        if self.generator == "literal":
            return self.name
        return f"{self.name}-{shape_label(self.shape)}"


@dataclass(frozen=True)
class Case:
    """One expanded case: a family and one value of every axis."""

    family: Family
    reduction: str
    log_target: bool
    order: str
    dtype: str
    api: str
    id: str = field(init=False)

    def __post_init__(self):
        object.__setattr__(
            self,
            "id",
            f"{self.family.label}/{self.reduction}/log_target={str(self.log_target).lower()}"
            f"/{self.order}/{self.dtype}/{self.api}",
        )

    def axes(self) -> dict:
        return {a: getattr(self, a) for a in AXES}


def shape_label(shape) -> str:
    return "scalar" if len(shape) == 0 else "x".join(str(s) for s in shape)


def _as_list(value):
    return list(value) if isinstance(value, list) else [value]


def _excluded(combo: dict, rules: list) -> bool:
    return any(all(combo[k] in _as_list(v) for k, v in rule.items()) for rule in rules)


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _literal_shape(value, path, line, where):
    """Shape of a nested list literal; raises if ragged."""
    if not isinstance(value, list):
        return ()
    if not value:
        return (0,)
    shapes = {_literal_shape(v, path, line, where) for v in value}
    if len(shapes) != 1:
        raise CaseFileError(path, line, where, "ragged nested list: rows differ in length")
    return (len(value),) + shapes.pop()


def _check_semantics(doc, path) -> None:
    """Checks JSON Schema cannot express; raise CaseFileError on the first."""
    for i, fam in enumerate(doc["families"]):
        where = f"families[{i}]"
        line = fam.line
        gen = fam["generator"]
        if gen == "literal":
            for key in ("input", "target", "meaning"):
                if key not in fam:
                    raise CaseFileError(path, line, where, f"literal generator needs '{key}'")
            for key in ("input", "target"):
                _literal_shape(fam[key], path, fam.key_lines[key], f"{where}.{key}")
            for key in ("shape", "target_shape", "seed", "params"):
                if key in fam:
                    raise CaseFileError(path, fam.key_lines[key], f"{where}.{key}", "not used by the literal generator")
        else:
            if "shape" not in fam:
                raise CaseFileError(path, line, where, f"generator '{gen}' needs 'shape'")
            for key in ("input", "target", "meaning"):
                if key in fam:
                    raise CaseFileError(path, fam.key_lines[key], f"{where}.{key}", "only the literal generator takes it")
            for key in ("shape", "target_shape"):
                if key in fam and _numel(fam[key]) > MAX_ELEMENTS:
                    raise CaseFileError(
                        path, fam.key_lines[key], f"{where}.{key}", f"{_numel(fam[key])} elements exceed {MAX_ELEMENTS}"
                    )


def _build_families(doc, path) -> list[Family]:
    file_axes = {**DEFAULT_AXES, **dict(doc.get("axes", {}))}
    file_excl = list(doc.get("exclude", []))
    out = []
    for fam in doc["families"]:
        axes = {**file_axes, **dict(fam.get("axes", {}))}
        axes = {k: list(v) for k, v in axes.items()}
        out.append(
            Family(
                name=fam["name"],
                generator=fam["generator"],
                shape=tuple(fam.get("shape", ())),
                target_shape=tuple(fam["target_shape"]) if "target_shape" in fam else None,
                seed=int(fam.get("seed", 0)),
                params=dict(fam.get("params", {})),
                literal_input=fam.get("input"),
                literal_target=fam.get("target"),
                meaning=dict(fam.get("meaning", {"input": "logprob", "target": "prob"})),
                grad=bool(fam.get("grad", True)),
                expect_error=bool(fam.get("expect_error", False)),
                axes=axes,
                exclude=BUILTIN_EXCLUDES + file_excl + list(fam.get("exclude", [])),
                tolerance={k: dict(v) for k, v in dict(fam.get("tolerance", {})).items()},
                description=str(fam.get("description", "")),
                source=str(path),
                line=fam.line,
            )
        )
    return out


def load_file(path) -> list[Family]:
    """Load and validate one case file; raise CaseFileError naming file and line."""
    path = Path(path)
    doc = read_yaml(path)
    if not isinstance(doc, _Mapping):
        raise CaseFileError(path, getattr(doc, "line", 1), "", "top level must be a mapping with 'version' and 'families'")
    check_schema(doc, path)
    _check_semantics(doc, path)
    return _build_families(doc, path)


def _plain(obj):
    """Line-aware YAML objects -> plain JSON-like values for jsonschema."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def _schema_message(err) -> str:
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        allowed = ", ".join(sorted(err.schema.get("properties", {})))
        return f"unknown key {', '.join(repr(e) for e in extra)} (allowed: {allowed})"
    if err.validator == "enum":
        return f"{err.instance!r} is not one of {', '.join(repr(v) for v in err.validator_value)}"
    if err.validator == "minItems" and err.validator_value == 1:
        return "must not be empty"
    msg = err.message
    return msg if len(msg) <= 300 else msg[:297] + "..."


def load_families(paths) -> list[Family]:
    """Load several case files; ids must be unique across all of them."""
    families = []
    for p in paths:
        families.extend(load_file(p))
    seen: dict[str, Family] = {}
    for fam in families:
        if fam.label in seen:
            other = seen[fam.label]
            raise CaseFileError(
                fam.source, fam.line, fam.name, f"duplicate family id '{fam.label}' (also at {other.source}:{other.line})"
            )
        seen[fam.label] = fam
    return families


def expand(family: Family) -> list[Case]:
    """All cases of one family: the product of its axes minus exclusions, in a fixed order."""
    cases = []
    for values in itertools.product(*(family.axes[a] for a in AXES)):
        combo = dict(zip(AXES, values))
        if not _excluded(combo, family.exclude):
            cases.append(Case(family, **combo))
    return cases


def default_case_files(root: Path | None = None) -> list[Path]:
    root = root or SCHEMA_PATH.parent
    return sorted(p for p in root.glob("*.yaml"))


def load_cases(paths=None) -> list[Case]:
    """Load case files (default: every cases/*.yaml) and expand them."""
    paths = list(paths) if paths else default_case_files()
    cases = [c for fam in load_families(paths) for c in expand(fam)]
    ids = set()
    for c in cases:
        if c.id in ids:  # cannot happen when family ids are unique, kept as a guard
            raise CaseFileError(c.family.source, c.family.line, c.family.name, f"duplicate case id {c.id}")
        ids.add(c.id)
    return cases
