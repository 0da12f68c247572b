"""Stage 1: case files (YAML) -> validated families -> expanded cases with stable ids.

A case file lists input *families*; each family is expanded over the product of its
axes (reduction, log_target, order, dtype, api) minus declared exclusions.  Validation
is strict: every problem is reported as ``file:line: path: message`` and nothing runs.
"""

from __future__ import annotations

import functools
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from . import axes, scopes

AXES = axes.NAMES  # the case axes, declared in harness/axes.py
DEFAULT_AXES: dict[str, list] = axes.defaults()
BUILTIN_EXCLUDES = [dict(rule) for rule in axes.BUILTIN_EXCLUDES]

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "cases" / "schema.json"
# Limits that keep loading a hostile file bounded in time and memory (a real case file
# is a few kB with a few hundred YAML nodes).  Each is checked before anything is built.
MAX_FILE_BYTES = 256 * 1024
MAX_NODES = 20_000  # YAML nodes per file (scalars, lists, mappings)
MAX_SCHEMA_NODES = 4_000  # of them outside literal tensors (JSON Schema validation costs ~70 us a node)
MAX_NESTING = 64  # YAML nesting depth
MAX_FAMILIES = 500  # families per file
MAX_EXCLUDE = 64  # rules per exclude list
MAX_CASES = 50_000  # expanded cases per load
MAX_ELEMENTS = 1_000_000  # per tensor, and per broadcast result; refused before anything is allocated
MAX_LITERAL_ITEMS = 4096  # items per list of a literal tensor (as the schema says)
MAX_LITERAL_RANK = 8
LITERAL_SPECIALS = ("nan", "inf", "-inf", "-0.0")
_MAX_MESSAGE = 400


def _one_line(text, limit: int) -> str:
    """``text`` with every non-printable character escaped (no newlines, no terminal
    escapes), cut to ``limit`` characters."""
    text = str(text)
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class CaseFileError(Exception):
    """A case file is malformed; ``str()`` is one line: ``file:line: where: what``."""

    def __init__(self, path, line, where, message):
        self.path = _one_line(path, 1000)
        self.line = line if isinstance(line, int) and line > 0 else 1
        self.where = _one_line(where, 200)
        self.message = _one_line(message, _MAX_MESSAGE)
        super().__init__(f"{self.path}:{self.line}: {self.where + ': ' if self.where else ''}{self.message}")


# ---------------------------------------------------------------- YAML with line numbers


class _Mapping(dict):
    """dict that remembers the line of itself and of each key."""

    line = 0
    key_lines: dict


class _Sequence(list):
    line = 0
    item_lines: list


try:  # libyaml's parser: the same events as PyYAML's, scanned in C (several times faster)
    from yaml.cyaml import CParser as _CParser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    _CParser = None

if _CParser is not None:

    class _Base(_CParser, yaml.composer.Composer, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
        """libyaml events, composed and constructed in Python (so the hooks below apply)."""

        get_single_node = yaml.composer.Composer.get_single_node
        check_node = yaml.composer.Composer.check_node
        get_node = yaml.composer.Composer.get_node

        def __init__(self, stream):
            _CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

else:  # pragma: no cover
    _Base = yaml.SafeLoader


class _LineLoader(_Base):
    """Safe loader that records line numbers and refuses duplicate keys, aliases, deep
    nesting and too many nodes; whatever goes wrong is a CaseFileError with a line."""

    def __init__(self, stream, path):
        super().__init__(stream)
        self._path = path
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            raise CaseFileError(self._path, line, "", "YAML aliases (*name) are not allowed")
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise CaseFileError(self._path, line, "", f"more than {MAX_NODES} YAML nodes")
        self._depth += 1
        if self._depth > MAX_NESTING:
            raise CaseFileError(self._path, line, "", f"nesting deeper than {MAX_NESTING} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node):
        # deep: every nested constructor (also the generator-based ones such as !!set)
        # runs inside construct_object below, where its errors get a line
        data = self.construct_object(node, deep=True)
        self.constructed_objects, self.recursive_objects = {}, {}
        return data

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep=deep)
        except (CaseFileError, yaml.YAMLError):
            raise
        except Exception as exc:  # e.g. !!int 999...(5000 digits), !!bool maybe, !!timestamp 2001-02-30
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            value = f" {node.value[:40]!r}" if isinstance(node.value, str) else ""
            detail = str(exc).split("\n")[0][:120]
            raise CaseFileError(
                self._path,
                node.start_mark.line + 1,
                "",
                f"cannot read {tag} value{value} ({type(exc).__name__}: {detail})",
            ) from None

    def construct_mapping(self, node, deep=False):
        if not isinstance(node, yaml.MappingNode):
            raise CaseFileError(self._path, node.start_mark.line + 1, "", f"{node.tag} needs a mapping")
        result = _Mapping()
        result.line = node.start_mark.line + 1
        result.key_lines = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise CaseFileError(self._path, line, "", "YAML merge keys (<<) are not allowed")
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise CaseFileError(self._path, line, "", "mapping key is not a scalar") from None
            if key in result:
                raise CaseFileError(
                    self._path,
                    line,
                    repr(key) if not isinstance(key, str) else key,
                    f"duplicate key (first at line {result.key_lines[key]})",
                )
            result[key] = self.construct_object(value_node, deep=True)
            result.key_lines[key] = line
        return result

    def construct_sequence(self, node, deep=False):
        if not isinstance(node, yaml.SequenceNode):
            raise CaseFileError(self._path, node.start_mark.line + 1, "", f"{node.tag} needs a sequence")
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


def _canonical(value):
    """Hashable stand-in with JSON Schema's notion of equality (1 == 1.0, True != 1)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    if isinstance(value, list):
        return ("array", tuple(_canonical(v) for v in value))
    if isinstance(value, dict):
        return ("object", frozenset((_canonical(k), _canonical(v)) for k, v in value.items()))
    if value is None:
        return ("null",)
    return ("other", repr(value))


def _unique_items(validator, unique, instance, schema):
    """uniqueItems in linear time (jsonschema's fallback for mixed types is quadratic)."""
    from jsonschema.exceptions import ValidationError

    if not unique or not validator.is_type(instance, "array"):
        return
    seen = set()
    for item in instance:
        key = _canonical(item)
        if key in seen:
            yield ValidationError(f"{item!r} is listed twice"[:300])
            return
        seen.add(key)


def _schema_validator(schema_path: Path = SCHEMA_PATH):
    return _validator(Path(schema_path))


@functools.lru_cache(maxsize=8)  # one per schema file (cases, claims)
def _validator(schema_path: Path):
    import jsonschema  # host-only dependency, loaded when case files are read

    cls = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"uniqueItems": _unique_items})
    return cls(schema(schema_path))


def schema(schema_path: Path = SCHEMA_PATH) -> dict:
    """The case-file schema: the file, with its axis definitions from harness.axes (the
    file carries the same, for editors; a test keeps the two equal)."""
    data = json.loads(Path(schema_path).read_text())
    if Path(schema_path) == SCHEMA_PATH:
        data["$defs"].update(axes.schema_defs())
        data["$defs"]["scope"] = {
            "enum": list(scopes.NAMES),
            "description": "; ".join(f"{sc.name}: {sc.meaning}" for sc in scopes.SCOPES),
        }
    return data


def write_schema(out: Path = SCHEMA_PATH) -> None:
    """Write the case-file schema with the axis definitions of harness.axes (after an axis
    changed: ``python -m harness schema``)."""
    data = schema(SCHEMA_PATH)
    for name in axes.NAMES:  # each axis' values are inlined in the generated definitions
        data["$defs"].pop(name, None)
    Path(out).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def check_schema(doc, path, schema_path: Path = SCHEMA_PATH, instance=None) -> None:
    """Validate a line-aware YAML document against a JSON Schema; raise CaseFileError
    at the line of the most relevant problem.  ``instance``: the plain form of ``doc``
    to validate, when the caller has already made (and trimmed) it."""
    from jsonschema.exceptions import best_match

    if not isinstance(doc, _Mapping):
        raise CaseFileError(path, getattr(doc, "line", 1), "", "top level must be a mapping")
    err = best_match(_schema_validator(schema_path).iter_errors(_plain(doc) if instance is None else instance))
    if err is not None:
        at = list(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})), key=repr)
            at += extra[:1]  # point at the unknown key's own line
        raise CaseFileError(path, _line_of(doc, at), _fmt_path(err.absolute_path), _schema_message(err))


def read_yaml(path: Path):
    """Parse one YAML file into line-aware objects, or raise CaseFileError."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise CaseFileError(path, 1, "", f"cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        line = raw[:MAX_FILE_BYTES].count(b"\n") + 1
        raise CaseFileError(path, line, "", f"file is larger than {MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise CaseFileError(path, line, "", f"not valid UTF-8 (byte {exc.start})") from None
    loader = None
    try:
        loader = _LineLoader(text, path)
        return loader.get_single_data()
    except CaseFileError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        kind = "YAML" if isinstance(exc, yaml.constructor.ConstructorError) else "YAML syntax"  # tags vs. syntax
        raise CaseFileError(path, line, "", f"{kind}: {exc.problem or exc.context}") from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, other controls)
        before = raw[: exc.position] if _CParser is not None else text[: exc.position]
        line = before.count(b"\n" if isinstance(before, bytes) else "\n") + 1
        raise CaseFileError(path, line, "", f"character #x{exc.character:04x} is not allowed in YAML") from None
    except yaml.YAMLError as exc:
        raise CaseFileError(
            path, 1, "", f"YAML: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    except RecursionError:
        raise CaseFileError(path, 1, "", "nesting too deep") from None
    except Exception as exc:  # the YAML library failed in a way not foreseen above
        raise CaseFileError(path, 1, "", f"cannot load ({type(exc).__name__}: {exc})") from None
    finally:
        if loader is not None:
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
    scope: str
    axes: dict
    exclude: list
    tolerance: dict
    description: str
    source: str
    line: int
    advice: str = ""  # what to do instead where these inputs give something else than the maths

    @functools.cached_property
    def label(self) -> str:
        """Readable family id: name plus shape, e.g. ``softmax-4x5``."""
        if self.generator == "literal":
            return self.name
        return f"{self.name}-{shape_label(self.shape)}"


@dataclass(frozen=True)
class Case:
    """One expanded case: a family and one value of every axis (``values``, in
    harness.axes order; each also readable as an attribute: ``case.dtype``)."""

    family: Family
    values: tuple
    id: str = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "id", axes.case_id(self.family.label, self.values))

    def __getattr__(self, name):
        if name.startswith("_") or name == "values":  # not an axis (e.g. while unpickling)
            raise AttributeError(name)
        try:
            return self.values[AXES.index(name)]
        except ValueError:
            raise AttributeError(name) from None

    def axes(self) -> dict:
        return dict(zip(AXES, self.values))


def _axis_property(k: int) -> property:
    return property(lambda self: self.values[k], doc=f"the case's value of axis {AXES[k]!r}")


for _k, _name in enumerate(AXES):  # case.dtype etc.: a property each (faster than __getattr__, which stays)
    setattr(Case, _name, _axis_property(_k))


def shape_label(shape) -> str:
    return "scalar" if len(shape) == 0 else "x".join(str(s) for s in shape)


def _as_list(value):
    return list(value) if isinstance(value, list) else [value]


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _broadcast(a: tuple, b: tuple) -> tuple | None:
    """NumPy/torch broadcast of two shapes, or None when they cannot broadcast."""
    out = []
    for x, y in itertools.zip_longest(reversed(a), reversed(b), fillvalue=1):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            return None
    return tuple(reversed(out))


def _literal_shape(value, path, line, where, depth=0) -> tuple:
    """Shape of a literal tensor (a number, 'nan'/'inf'/'-inf'/'-0.0', or nested lists of
    them); raise CaseFileError at the offending item's line on anything else."""
    if isinstance(value, list):
        if depth >= MAX_LITERAL_RANK:
            raise CaseFileError(path, line, where, f"more than {MAX_LITERAL_RANK} nested lists")
        lines = getattr(value, "item_lines", None) or [line] * len(value)
        if len(value) > MAX_LITERAL_ITEMS:
            raise CaseFileError(path, lines[MAX_LITERAL_ITEMS], where, f"more than {MAX_LITERAL_ITEMS} items")
        shape = None
        for i, (item, item_line) in enumerate(zip(value, lines)):
            s = _literal_shape(item, path, item_line, f"{where}[{i}]", depth + 1)
            if shape is None:
                shape = s
            elif s != shape:
                raise CaseFileError(
                    path,
                    item_line,
                    f"{where}[{i}]",
                    f"ragged nested list: shape {list(s)} differs from {list(shape)} before it",
                )
        return (len(value),) + (shape or ())
    if isinstance(value, str) and value in LITERAL_SPECIALS:
        return ()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            float(value)
        except OverflowError:
            raise CaseFileError(path, line, where, f"{str(value)[:20]}... does not fit a float64") from None
        return ()
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    raise CaseFileError(
        path, line, where, f"{shown} is not a number or one of {', '.join(repr(s) for s in LITERAL_SPECIALS)}"
    )


def _count_nodes(doc, path, skip) -> None:
    """Raise when the document has more than MAX_SCHEMA_NODES nodes outside ``skip``
    (ids of the literal tensors, which are checked by _literal_shape instead)."""
    count, stack = 0, [(doc, getattr(doc, "line", 1))]
    while stack:
        node, line = stack.pop()
        count += 1
        if count > MAX_SCHEMA_NODES:
            raise CaseFileError(path, line, "", f"more than {MAX_SCHEMA_NODES} YAML nodes outside literal tensors")
        if isinstance(node, _Mapping):  # children pushed in reverse: visited in document order
            count += len(node)  # the keys
            stack.extend((v, node.key_lines.get(k, line)) for k, v in reversed(node.items()) if id(v) not in skip)
        elif isinstance(node, _Sequence):
            stack.extend(reversed(list(zip(node, node.item_lines))))


def _precheck(doc, path) -> dict:
    """Size limits and literal tensors, before the schema (whose cost grows with every
    node, ~70 us each, and whose recursive literal rule is slowest of all): returns
    {(family index, 'input'|'target'): shape}."""
    shapes = {}
    for key, limit in (("families", MAX_FAMILIES), ("exclude", MAX_EXCLUDE)):
        value = doc.get(key)
        if isinstance(value, _Sequence) and len(value) > limit:
            raise CaseFileError(path, value.item_lines[limit], key, f"more than {limit} items")
    families = doc.get("families")
    literals = set()
    for i, fam in enumerate(families if isinstance(families, _Sequence) else []):
        if not isinstance(fam, _Mapping):
            continue
        excl = fam.get("exclude")
        if isinstance(excl, _Sequence) and len(excl) > MAX_EXCLUDE:
            raise CaseFileError(
                path, excl.item_lines[MAX_EXCLUDE], f"families[{i}].exclude", f"more than {MAX_EXCLUDE} items"
            )
        for key in ("input", "target"):
            if key in fam:
                where = f"families[{i}].{key}"
                shape = _literal_shape(fam[key], path, fam.key_lines[key], where)
                if _numel(shape) > MAX_ELEMENTS:
                    raise CaseFileError(
                        path, fam.key_lines[key], where, f"{_numel(shape)} elements exceed {MAX_ELEMENTS}"
                    )
                shapes[(i, key)] = shape
                if isinstance(fam[key], _Sequence):  # (a scalar may be a shared object such as a small int)
                    literals.add(id(fam[key]))
    _count_nodes(doc, path, literals)
    return shapes


def _check_semantics(doc, path, literal_shapes: dict) -> None:
    """Checks JSON Schema cannot express; raise CaseFileError on the first."""
    for i, fam in enumerate(doc["families"]):
        where = f"families[{i}]"
        line = fam.line
        gen = fam["generator"]
        # JSON Schema's "integer" admits 4.0; a shape, seed or count must be a true int
        for key in ("shape", "target_shape"):
            for j, item in enumerate(fam.get(key, ())):
                if not isinstance(item, int):
                    raise CaseFileError(
                        path, fam[key].item_lines[j], f"{where}.{key}[{j}]", f"{item!r} is not an integer"
                    )
        checks = [("seed", fam.get("seed", 0), fam.key_lines.get("seed", line))]
        for holder in ("params", "tolerance"):
            for k, v in fam.get(holder, {}).items():
                for k2, v2 in v.items() if isinstance(v, dict) else [(None, v)]:
                    at = f"{holder}.{k}" + (f".{k2}" if k2 else "")
                    at_line = v.key_lines[k2] if k2 else fam[holder].key_lines[k]
                    checks.append((at, v2, at_line))
        for at, value, at_line in checks:
            if at in ("seed", "params.count") and not isinstance(value, int):
                raise CaseFileError(path, at_line, f"{where}.{at}", f"{value!r} is not an integer")
            if isinstance(value, float) and value != value:
                raise CaseFileError(path, at_line, f"{where}.{at}", "must be a number, not NaN")
        if gen == "literal":
            for key in ("input", "target", "meaning"):
                if key not in fam:
                    raise CaseFileError(path, line, where, f"literal generator needs '{key}'")
            for key in ("shape", "target_shape", "seed", "params"):
                if key in fam:
                    raise CaseFileError(path, fam.key_lines[key], f"{where}.{key}", "not used by the literal generator")
            first, second = literal_shapes[(i, "input")], literal_shapes[(i, "target")]
            at_key = "target"
        else:
            if "shape" not in fam:
                raise CaseFileError(path, line, where, f"generator '{gen}' needs 'shape'")
            for key in ("input", "target", "meaning"):
                if key in fam:
                    raise CaseFileError(
                        path, fam.key_lines[key], f"{where}.{key}", "only the literal generator takes it"
                    )
            for key in ("shape", "target_shape"):
                if key in fam and _numel(fam[key]) > MAX_ELEMENTS:
                    raise CaseFileError(
                        path, fam.key_lines[key], f"{where}.{key}", f"{_numel(fam[key])} elements exceed {MAX_ELEMENTS}"
                    )
            first, second = tuple(fam["shape"]), tuple(fam.get("target_shape", fam["shape"]))
            at_key = "target_shape" if "target_shape" in fam else "shape"
        both = _broadcast(first, second)  # shapes that cannot broadcast are an expected error, not a size
        if both is not None and _numel(both) > MAX_ELEMENTS:
            raise CaseFileError(
                path,
                fam.key_lines[at_key],
                f"{where}.{at_key}",
                f"{list(first)} and {list(second)} broadcast to {_numel(both)} elements, more than {MAX_ELEMENTS}",
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
                scope=str(fam.get("scope", scopes.DEFAULT)),
                axes=axes,
                exclude=BUILTIN_EXCLUDES + file_excl + list(fam.get("exclude", [])),
                tolerance={k: dict(v) for k, v in dict(fam.get("tolerance", {})).items()},
                description=str(fam.get("description", "")),
                source=str(path),
                line=fam.line,
                advice=" ".join(str(fam.get("advice", "")).split()),
            )
        )
    return out


def load_file(path) -> list[Family]:
    """Load and validate one case file; raise CaseFileError naming file and line."""
    path = Path(path)
    doc = read_yaml(path)
    if not isinstance(doc, _Mapping):
        raise CaseFileError(
            path, getattr(doc, "line", 1), "", "top level must be a mapping with 'version' and 'families'"
        )
    literal_shapes = _precheck(doc, path)
    instance = _plain(doc)
    for i, key in literal_shapes:  # already checked: keep the schema off big literals
        instance["families"][i][key] = 0
    check_schema(doc, path, instance=instance)
    _check_semantics(doc, path, literal_shapes)
    families = _build_families(doc, path)
    total = 0
    for fam in families:
        n = len(_combos(fam))
        if n == 0:
            raise CaseFileError(path, fam.line, fam.name, "its axes and exclusions leave no case to run")
        total += n
        if total > MAX_CASES:
            raise CaseFileError(path, fam.line, fam.name, f"the file expands to more than {MAX_CASES} cases")
    return families


def _plain(obj):
    """Line-aware YAML objects -> plain JSON-like values for jsonschema."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def _schema_message(err) -> str:
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})), key=repr)
        allowed = ", ".join(sorted(err.schema.get("properties", {})))
        shown = ", ".join(repr(e) if len(repr(e)) <= 60 else repr(e)[:57] + "..." for e in extra[:5])
        return f"unknown key {shown}{', ...' if len(extra) > 5 else ''} (allowed: {allowed})"
    if err.validator == "enum":
        shown = repr(err.instance) if len(repr(err.instance)) <= 80 else repr(err.instance)[:77] + "..."
        return f"{shown} is not one of {', '.join(repr(v) for v in err.validator_value)}"
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
                fam.source,
                fam.line,
                fam.name,
                f"duplicate family id '{fam.label}' (also at {other.source}:{other.line})",
            )
        seen[fam.label] = fam
    return families


def _combos(family: Family) -> list[tuple]:
    """The family's axis combinations (in AXES order) left after its exclusions, in
    itertools.product order.  Exclusions are applied as bit masks over the combinations,
    so the cost is linear in the number of rules, not rules x combinations."""
    combos = list(itertools.product(*(family.axes[a] for a in AXES)))
    masks: dict = {a: {} for a in AXES}  # axis -> value -> combinations having it
    for bit, values in enumerate(combos):
        for axis, value in zip(AXES, values):
            masks[axis][value] = masks[axis].get(value, 0) | (1 << bit)
    everything = (1 << len(combos)) - 1
    excluded = 0
    for rule in family.exclude:
        hit = everything
        for axis, wanted in rule.items():
            any_of = 0
            for value in _as_list(wanted):
                any_of |= masks[axis].get(value, 0)
            hit &= any_of
        excluded |= hit
    return [values for bit, values in enumerate(combos) if not excluded >> bit & 1]


def expand(family: Family) -> list[Case]:
    """All cases of one family: the product of its axes minus exclusions, in a fixed order."""
    return [Case(family, values) for values in _combos(family)]


def default_case_files(root: Path | None = None) -> list[Path]:
    root = root or SCHEMA_PATH.parent
    return sorted(p for p in root.glob("*.yaml"))


def load_cases(paths=None) -> list[Case]:
    """Load case files (default: every cases/*.yaml) and expand them."""
    paths = list(paths) if paths else default_case_files()
    families = load_families(paths)
    total = 0
    for fam in families:
        total += len(_combos(fam))
        if total > MAX_CASES:
            raise CaseFileError(fam.source, fam.line, fam.name, f"the case files expand to more than {MAX_CASES} cases")
    cases = [c for fam in families for c in expand(fam)]
    ids = set()
    for c in cases:
        if c.id in ids:  # cannot happen when family ids are unique, kept as a guard
            raise CaseFileError(c.family.source, c.family.line, c.family.name, f"duplicate case id {c.id}")
        ids.add(c.id)
    return cases
