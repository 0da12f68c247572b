"""Hostile and malformed case files (issue 7, part 1).

Every document here must be refused with ``harness.cases.CaseFileError`` whose ``str()``
is one printable line ``file:LINE: ...`` -- never another exception, never code
execution, in bounded time and memory (a 10^9-element tensor is refused before anything
is allocated).  A property-based test draws several hundred documents from mutations of
cases/core.yaml and from hand-made hostile strategies; deterministic tests pin the exact
line and key for each kind of error; CLI tests check exit code 2 and a one-line message.
"""

from __future__ import annotations

import copy
import datetime
import re
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass
from datetime import timedelta

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from harness import cases as C
from harness.cases import CaseFileError, load_cases, load_file
from tests.conftest import ROOT

LOAD_SECONDS = 1.0  # CPU seconds per load; typical is a few milliseconds, the largest allowed inputs ~0.3 s
PEAK_BYTES = 64 * 2**20  # Python allocations while loading the worst documents
CORE_TEXT = (ROOT / "cases" / "core.yaml").read_text()
CORE = yaml.safe_load(CORE_TEXT)
SCHEMA_KEYS = {
    "version",
    "description",
    "axes",
    "exclude",
    "families",
    "name",
    "generator",
    "shape",
    "target_shape",
    "seed",
    "params",
    "input",
    "target",
    "meaning",
    "grad",
    "expect_error",
    "tolerance",
    "reduction",
    "log_target",
    "order",
    "dtype",
    "api",
    "scale",
    "eps",
    "count",
    "float16",
    "bfloat16",
    "float32",
    "float64",
    "rtol",
    "atol",
}
MINIMAL = "version: 1\nfamilies:\n  - name: f\n    generator: softmax\n    shape: [4, 5]\n"
FAMILIES = "families:\n  - {name: f, generator: zeros, shape: [2]}\n"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("hostile")


def _marker(workdir):
    return workdir / "pwned"


def _lines(data: bytes) -> int:
    """Upper bound for a reported line: YAML also breaks lines at NEL, LS and PS."""
    text = data.decode("utf-8", "replace")
    return max(text.count("\n") + 1, len(text.splitlines()) + 1)


def refuse(path, data: bytes, marker=None):
    """Write ``data`` to ``path``; both loaders must refuse it with a one-line
    file:line message, quickly.  Returns (line, message)."""
    path.write_bytes(data)
    results = []
    for load in (load_file, lambda p: load_cases([p])):
        t0, c0 = time.perf_counter(), time.process_time()
        with pytest.raises(CaseFileError) as err:  # any other exception type fails the test
            load(path)
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        # CPU time: the bound is the loader's work, not how busy the machine is
        assert cpu < LOAD_SECONDS and wall < 10 * LOAD_SECONDS, f"load took {cpu:.2f}s CPU, {wall:.2f}s"
        results.append(str(err.value))
    msg = results[0]
    assert results[1] == msg
    assert len(msg.splitlines()) == 1 and msg.isprintable(), repr(msg)
    assert len(msg) < 1200
    m = re.match(re.escape(str(path)) + r":(\d+): \S", msg)
    assert m, msg
    line = int(m.group(1))
    assert 1 <= line <= _lines(data), (line, msg)
    if marker is not None:
        assert not marker.exists(), "a YAML tag ran code"
    return line, msg


@dataclass
class Doc:
    kind: str
    data: bytes
    line: int | None = None  # exact expected line, when the generator knows it
    words: tuple = ()  # substrings the message must contain


MARKER_TOKEN = "@@MARKER@@"  # replaced by the real marker path in the test


# ---------------------------------------------------------------- raw YAML snippets, each invalid anywhere


def _python_tags():
    m = MARKER_TOKEN
    return [
        f'!!python/object/apply:os.system ["touch {m}"]',
        f'!!python/object/apply:subprocess.call [["touch", "{m}"]]',
        f'!!python/object/new:subprocess.Popen [["touch", "{m}"]]',
        f"!!python/object/apply:builtins.exec [\"open('{m}', 'w').close()\"]",
        f"!!python/object/apply:builtins.eval [\"open('{m}', 'w')\"]",
        "!!python/name:os.system",
        "!!python/module:os",
        "!!python/object:harness.cases.Case {}",
        f'!<tag:yaml.org,2002:python/object/apply:os.system> ["touch {m}"]',
    ]


def _raw_snippets(draw):
    """(snippet, words) that fail in the YAML layer, at the snippet's own line."""
    n = draw(st.integers(65, 400))
    choice = draw(
        st.sampled_from(
            [
                "tag",
                "alias",
                "nest_seq",
                "nest_map",
                "budget",
                "hugeint",
                "badint",
                "badfloat",
                "badbool",
                "badtime",
                "badbinary",
                "setseq",
                "mapseq",
                "seqmap",
                "unknowntag",
                "dupflow",
                "valuetag",
            ]
        )
    )
    if choice == "tag":
        return draw(st.sampled_from(_python_tags())), ("python",)
    return {
        "alias": ("*undefined_anchor", ("alias",)),
        "nest_seq": ("[" * n + "]" * n, ("nesting",)),
        "nest_map": ("{a: " * n + "1" + "}" * n, ("nesting",)),
        "budget": ("[" + ", ".join("1" for _ in range(C.MAX_NODES + 5)) + "]", ("YAML nodes",)),
        "hugeint": ("9" * draw(st.integers(4301, 9000)), ("!!int",)),
        "badint": ("!!int abc", ("!!int",)),
        "badfloat": ("!!float one", ("!!float",)),
        "badbool": ("!!bool maybe", ("!!bool",)),
        "badtime": ("!!timestamp 2001-02-30", ("!!timestamp",)),
        "badbinary": ('!!binary "a"', ("base64",)),
        "setseq": ("!!set [1, 2]", ("mapping",)),
        "mapseq": ("!!map [1, 2]", ("mapping",)),
        "seqmap": ("!!seq {a: 1}", ("sequence",)),
        "unknowntag": ("!custom value", ("!custom",)),
        "dupflow": ("{a: 1, b: 2, a: 3}", ("duplicate key",)),
        "valuetag": ("=", ("tag",)),
    }[choice]


# Python values that are invalid at every position of cores.yaml's document
UNIVERSAL_BAD = [
    None,
    {"zz_unknown": 1},
    [{}],
    -1,
    float("nan"),
    datetime.date(2001, 2, 3),
    b"\x00\xff",
    {1, 2},
    float("inf"),
]


def _paths(node, prefix=()):
    """Every position (key path) below the root of a plain document."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append(prefix + (k,))
            out.extend(_paths(v, prefix + (k,)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.append(prefix + (i,))
            out.extend(_paths(v, prefix + (i,)))
    return out


def _mappings(node, prefix=()):
    out = [prefix] if isinstance(node, dict) else []
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for k, v in children:
        out.extend(_mappings(v, prefix + (k,)))
    return out


def _get(doc, path):
    for p in path:
        doc = doc[p]
    return doc


def _dump(doc) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=False, width=10**9)


hostile_keys = st.one_of(
    st.text(min_size=1, max_size=40).filter(lambda k: k not in SCHEMA_KEYS),
    st.sampled_from(
        [
            "\x1b[31mred\x1b[0m",
            "a\nb",
            "<script>alert(1)</script>",
            "| pipe | table |",
            "x" * 1000,
            "\u2028",
            "\x00",
            "${HOME}",
            "$(touch x)",
            "__class__",
            "families ",
            "Version",
        ]
    ),
    st.integers(),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
)


@st.composite
def mutated_core(draw):
    """cases/core.yaml with one mutation that must make it invalid."""
    doc = copy.deepcopy(CORE)
    kind = draw(
        st.sampled_from(
            ["unknown_key", "drop_required", "bad_value", "raw_value", "empty", "dup_key", "bad_bytes", "control_char"]
        )
    )
    if kind == "unknown_key":
        where = draw(st.sampled_from(_mappings(doc)))
        key = draw(hostile_keys)
        if key in _get(doc, where):
            key = f"zz{key}"
        _get(doc, where)[key] = draw(st.one_of(st.integers(), st.text(max_size=20), st.none()))
        return Doc("core: unknown key", _dump(doc).encode())
    if kind == "drop_required":
        fam = draw(st.integers(0, len(doc["families"]) - 1))
        path = draw(
            st.sampled_from(
                [
                    ("version",),
                    ("families",),
                    ("families", fam, "name"),
                    ("families", fam, "generator"),
                    ("families", fam, "shape"),
                ]
            )
        )
        del _get(doc, path[:-1])[path[-1]]
        return Doc("core: required key dropped", _dump(doc).encode(), words=(repr(path[-1]),))
    if kind == "bad_value":
        path = draw(st.sampled_from(_paths(doc)))
        _get(doc, path[:-1])[path[-1]] = draw(st.sampled_from(UNIVERSAL_BAD))
        return Doc("core: value of a wrong type", _dump(doc).encode())
    if kind == "raw_value":
        path = draw(st.sampled_from(_paths(doc)))
        snippet, words = _raw_snippets(draw)
        _get(doc, path[:-1])[path[-1]] = "@@RAW@@"
        text = _dump(doc)
        line = text[: text.index("'@@RAW@@'")].count("\n") + 1
        return Doc("core: hostile YAML value", text.replace("'@@RAW@@'", snippet).encode(), line, words)
    if kind == "empty":
        fam = draw(st.integers(0, len(doc["families"]) - 1))
        axis = draw(st.sampled_from(C.AXES))
        where = draw(st.sampled_from(["families", "file_axes", "family_axes"]))
        if where == "families":
            doc["families"] = []
        elif where == "file_axes":
            doc["axes"] = {axis: []}
        else:
            doc["families"][fam]["axes"] = {axis: []}
        return Doc("core: empty families or axis", _dump(doc).encode(), words=("must not be empty",))
    text = _dump(doc)
    lines = text.splitlines(keepends=True)
    if kind == "dup_key":
        candidates = [i for i, ln in enumerate(lines) if re.match(r"^\s*[a-z_]+: \S", ln)]
        i = draw(st.sampled_from(candidates))
        key = re.match(r"^\s*([a-z_]+):", lines[i]).group(1)
        lines.insert(i + 1, lines[i])
        return Doc("core: duplicate key", "".join(lines).encode(), i + 2, ("duplicate key", key))
    data = text.encode()
    pos = draw(st.integers(0, len(data)))
    if kind == "bad_bytes":
        bad = draw(
            st.sampled_from(
                [b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80", b"\xf8\x88\x80\x80", b"\xe2\x82"]
            )
        )
        return Doc(
            "core: invalid UTF-8", data[:pos] + bad + data[pos:], data[:pos].count(b"\n") + 1, ("not valid UTF-8",)
        )
    ctrl = draw(st.sampled_from([c for c in range(32) if c not in (9, 10, 13)] + [127]))
    return Doc(
        "core: control character",
        data[:pos] + bytes([ctrl]) + data[pos:],
        data[:pos].count(b"\n") + 1,
        ("not allowed",),
    )


@st.composite
def alias_bomb(draw):
    depth, width = draw(st.integers(2, 12)), draw(st.integers(2, 12))
    style = draw(st.sampled_from(["seq", "map", "merge"]))
    lines = ["version: 1", f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, depth):
        if style == "seq":
            lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
        elif style == "map":
            lines.append(f"a{i}: &a{i} {{{', '.join(f'k{j}: *a{i - 1}' for j in range(width))}}}")
        else:
            lines.append(f"a{i}: &a{i} {{<<: *a{i - 1}, k{i}: 1}}")
    lines.append(f"families: *a{depth - 1}")
    return Doc("alias bomb", ("\n".join(lines) + "\n").encode(), 3, ("alias",))


@st.composite
def deep_nesting(draw):
    n = draw(st.integers(C.MAX_NESTING + 1, 5000))
    style = draw(st.sampled_from(["flow_seq", "flow_map", "block_seq", "block_map", "mixed"]))
    if style == "flow_seq":
        text = "version: 1\nfamilies: " + "[" * n + "]" * n + "\n"
    elif style == "flow_map":
        text = "version: 1\nfamilies: " + "{a: " * n + "1" + "}" * n + "\n"
    elif style == "block_seq":
        text = "version: 1\nfamilies:\n" + "- " * n + "1\n"
        return Doc("deep nesting", text.encode(), 3, ("nesting",))
    elif style == "mixed":
        text = "version: 1\nfamilies: " + "[{a: " * (n // 2 + 1) + "1" + "}]" * (n // 2 + 1) + "\n"
    else:
        n = min(n, 300)  # indentation grows quadratically
        text = "version: 1\nfamilies:\n" + "".join("  " * (i + 1) + "a:\n" for i in range(n)) + "  " * (n + 1) + "1\n"
        return Doc("deep nesting", text.encode(), words=("nesting",))
    return Doc("deep nesting", text.encode(), 2, ("nesting",))


@st.composite
def huge_numbers(draw):
    """Numbers and shapes past every limit; the expected line is the offending key's."""
    kind = draw(
        st.sampled_from(
            [
                "seed_digits",
                "shape_item",
                "shape_product",
                "broadcast",
                "billion",
                "literal_int",
                "float_item",
                "inf_item",
                "float_seed",
                "float_count",
                "nan_param",
                "scale_max",
                "int_digits",
            ]
        )
    )
    head = "version: 1\nfamilies:\n  - name: f\n    generator: softmax\n"  # lines 1-4
    if kind == "seed_digits":
        return Doc(
            "huge number",
            (head + f"    shape: [2]\n    seed: {'9' * draw(st.integers(11, 4300))}\n").encode(),
            6,
            ("seed",),
        )
    if kind == "int_digits":
        digits = "7" * draw(st.integers(4301, 20000))
        return Doc("huge number", (head + f"    shape: [2]\n    seed: {digits}\n").encode(), 6, ("!!int",))
    if kind == "shape_item":
        item = draw(st.one_of(st.integers(4097, 10**30), st.integers(max_value=-1)))
        return Doc("huge shape", (head + f"    shape: [3, {item}]\n").encode(), 5, ("shape",))
    if kind == "shape_product":
        dims = draw(st.lists(st.integers(1, 4096), min_size=1, max_size=3))
        dims.append(C.MAX_ELEMENTS // C._numel(dims) + 1)  # the product passes the limit ...
        dims = [min(d, 4096) for d in dims] if C._numel([min(d, 4096) for d in dims]) > C.MAX_ELEMENTS else [1024] * 3
        draw(st.randoms()).shuffle(dims)  # ... with every dimension within the schema's 4096
        return Doc("huge shape", (head + f"    shape: {dims}\n").encode(), 5, ("elements exceed",))
    if kind == "billion":
        return Doc("huge shape", (head + "    shape: [1000, 1000, 1000]\n").encode(), 5, ("1000000000 elements",))
    if kind == "broadcast":
        a, b = draw(st.integers(1001, 4096)), draw(st.integers(1001, 4096))
        return Doc(
            "broadcast bomb", (head + f"    shape: [{a}, 1]\n    target_shape: [1, {b}]\n").encode(), 6, ("broadcast",)
        )
    if kind == "literal_int":
        digits = "9" * draw(st.integers(310, 4300))
        text = (
            "version: 1\nfamilies:\n  - name: f\n    generator: literal\n    meaning: {input: prob, target: prob}\n"
            f"    target: [1, 2]\n    input: [1, {digits}]\n"
        )
        return Doc("huge literal number", text.encode(), 7, ("float64",))
    if kind == "float_item":
        return Doc("float shape", (head + "    shape: [4.0, 5]\n").encode(), 5, ("not an integer",))
    if kind == "inf_item":
        item = draw(st.sampled_from([".inf", "-.inf", ".nan", "1.0e999"]))
        return Doc("float shape", (head + f"    shape: [{item}]\n").encode(), 5, ("shape",))
    if kind == "float_seed":
        return Doc("float seed", (head + "    shape: [2]\n    seed: 3.0\n").encode(), 6, ("not an integer",))
    if kind == "float_count":
        text = head.replace("softmax", "zeros") + "    shape: [2, 3]\n    params: {count: 1.0}\n"
        return Doc("float count", text.encode(), 6, ("not an integer",))
    if kind == "nan_param":
        key = draw(st.sampled_from(["scale", "eps"]))
        return Doc("nan parameter", (head + f"    shape: [2]\n    params: {{{key}: .nan}}\n").encode(), 6, ("NaN",))
    return Doc("huge parameter", (head + "    shape: [2]\n    params: {scale: 1.0e300}\n").encode(), 6, ("scale",))


@st.composite
def big_literals(draw):
    kind = draw(st.sampled_from(["items", "nodes", "rank", "ragged", "element"]))
    head = (
        "version: 1\nfamilies:\n  - name: f\n    generator: literal\n"
        "    meaning: {input: prob, target: prob}\n    target: [1]\n"
    )  # lines 1-6; input is line 7
    if kind == "items":
        n = draw(st.integers(C.MAX_LITERAL_ITEMS + 1, C.MAX_NODES - 100))
        return Doc(
            "big literal",
            (head + f"    input: [{', '.join('0.5' for _ in range(n))}]\n").encode(),
            7,
            ("more than 4096 items",),
        )
    if kind == "nodes":
        n = draw(st.integers(C.MAX_NODES + 1, 3 * C.MAX_NODES))
        rows = ", ".join("[1, 2, 3, 4]" for _ in range(n // 4 + 1))
        return Doc("big literal", (head + f"    input: [{rows}]\n").encode(), 7, ("YAML nodes",))
    if kind == "rank":
        n = draw(st.integers(C.MAX_LITERAL_RANK + 1, C.MAX_NESTING - 6))
        return Doc(
            "deep literal", (head + "    input: " + "[" * n + "1" + "]" * n + "\n").encode(), 7, ("nested lists",)
        )
    if kind == "ragged":
        return Doc(
            "ragged literal", (head + "    input:\n      - [1, 2]\n      - [1, 2, 3]\n").encode(), 9, ("ragged",)
        )
    bad = draw(st.sampled_from(["true", "null", "abc", "{a: 1}", "'NaN'", "!!binary aGk=", "2001-01-01", "'1'"]))
    return Doc(
        "bad literal element",
        (head + f"    input:\n      - [1, 2]\n      - [3, {bad}]\n").encode(),
        9,
        ("input[1][1]",),
    )


@st.composite
def non_utf8(draw):
    kind = draw(st.sampled_from(["utf16", "latin1", "random"]))
    if kind == "utf16":
        return Doc("non-UTF-8", CORE_TEXT.encode("utf-16"), 1, ("not valid UTF-8",))
    if kind == "latin1":
        text = MINIMAL + "    description: caf\xe9 na\xefve\n"
        return Doc("non-UTF-8", text.encode("latin-1"), 6, ("not valid UTF-8",))
    base = draw(st.sampled_from([CORE_TEXT, MINIMAL])).encode()
    pos = draw(st.integers(0, len(base)))
    junk = (
        draw(st.binary(max_size=8))
        + draw(st.sampled_from([b"\xff", b"\xc0\x80", b"\xed\xa0\x80"]))
        + draw(st.binary(max_size=8))
    )  # (0xff, overlong NUL and a UTF-16 surrogate are never UTF-8)
    return Doc("non-UTF-8", base[:pos] + junk + base[pos:], None, ("not valid UTF-8",))


@st.composite
def duplicate_keys(draw):
    where = draw(st.sampled_from(["top", "family", "params", "meaning", "axes", "tolerance", "flow"]))
    if where == "top":
        return Doc("duplicate key", (MINIMAL + "version: 1\n").encode(), 6, ("version", "duplicate key"))
    if where == "family":
        key = draw(st.sampled_from(["name: g", "generator: zeros", "shape: [2]"]))
        return Doc("duplicate key", (MINIMAL + f"    {key}\n").encode(), 6, (key.split(":")[0], "duplicate key"))
    if where == "params":
        return Doc(
            "duplicate key",
            (MINIMAL + "    params:\n      scale: 1.0\n      scale: 2.0\n").encode(),
            8,
            ("scale", "duplicate key"),
        )
    if where == "meaning":
        text = (
            "version: 1\nfamilies:\n  - name: f\n    generator: literal\n    input: [1]\n    target: [1]\n"
            "    meaning: {input: prob, target: prob, input: logprob}\n"
        )
        return Doc("duplicate key", text.encode(), 7, ("input", "duplicate key"))
    if where == "axes":
        text = MINIMAL + "    axes:\n      dtype: [float32]\n      dtype: [float64]\n"
        return Doc("duplicate key", text.encode(), 8, ("dtype", "duplicate key"))
    if where == "tolerance":
        text = (
            MINIMAL + "    tolerance:\n      float32: {rtol: 0.1, atol: 0.1}\n      float32: {rtol: 0.2, atol: 0.2}\n"
        )
        return Doc("duplicate key", text.encode(), 8, ("float32", "duplicate key"))
    key = draw(st.sampled_from(["1", "true", "null", "'x'", "1.5"]))
    return Doc("duplicate key", f"version: 1\n{key}: a\nfamilies: []\n{key}: b\n".encode(), 4, ("duplicate key",))


@st.composite
def python_tags(draw):
    tag = draw(st.sampled_from(_python_tags()))
    where = draw(st.sampled_from(["top_value", "family_value", "in_list", "as_key", "document", "families"]))
    if where == "top_value":
        return Doc("python tag", f"version: 1\ndescription: {tag}\nfamilies: []\n".encode(), 2, ("python",))
    if where == "family_value":
        return Doc("python tag", (MINIMAL + f"    seed: {tag}\n").encode(), 6, ("python",))
    if where == "in_list":
        text = f"version: 1\nfamilies:\n  - name: f\n    shape: [1, {tag}]\n"
        return Doc("python tag", text.encode(), 4, ())  # (in flow context some are already a syntax error)
    if where == "as_key":
        return Doc("python tag", f"version: 1\n? {tag}\n: 1\nfamilies: []\n".encode(), 2, ("python",))
    if where == "document":
        return Doc("python tag", f"--- {tag}\n".encode(), 1, ("python",))
    return Doc("python tag", f"version: 1\nfamilies: {tag}\n".encode(), 2, ("python",))


def _yaml_key(key) -> str:
    """``key`` as a one-line YAML scalar: strings double-quoted with every character
    outside printable ASCII escaped, other scalars as YAML writes them."""
    if not isinstance(key, str):
        return yaml.safe_dump(key).splitlines()[0]
    out = []
    for ch in key:
        if ch in '"\\':
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


@st.composite
def unknown_keys(draw):
    entry = f"{_yaml_key(draw(hostile_keys))}: 1"
    where = draw(st.sampled_from(["top", "family", "params", "meaning", "axes", "exclude"]))
    if where == "top":
        return Doc("unknown key", (MINIMAL + f"{entry}\n").encode(), 6, ("unknown key",))
    if where == "family":
        return Doc("unknown key", (MINIMAL + f"    {entry}\n").encode(), 6, ("unknown key",))
    if where == "params":
        return Doc("unknown key", (MINIMAL + f"    params: {{{entry}}}\n").encode(), 6, ("unknown key",))
    if where == "axes":
        return Doc("unknown key", (MINIMAL + f"    axes: {{{entry}}}\n").encode(), 6, ("unknown key",))
    if where == "exclude":
        return Doc("unknown key", (MINIMAL + f"    exclude: [{{{entry}}}]\n").encode(), 6, ())
    text = (
        "version: 1\nfamilies:\n  - name: f\n    generator: literal\n    input: [1]\n    target: [1]\n"
        f"    meaning: {{input: prob, target: prob, {entry}}}\n"
    )
    return Doc("unknown key", text.encode(), 7, ())


STRUCTURAL = [
    ("", 1, "top level"),
    ("\n\n", 1, "top level"),
    ("# only a comment\n", 1, "top level"),
    ("---\n", 1, "top level"),
    ("...\n", 1, "YAML syntax"),
    ("[]\n", 1, "top level"),
    ("42\n", 1, "top level"),
    ("'text'\n", 1, "top level"),
    ("null\n", 1, "top level"),
    ("- version: 1\n", 1, "top level"),
    ("version: 1\n", 1, "'families'"),
    ("families: []\n", 1, "'version'"),
    ("version: 1\nfamilies: []\n", 2, "must not be empty"),
    ("version: 1\nfamilies: {}\n", 2, "not of type 'array'"),
    ("version: 2\n" + FAMILIES, 1, "version"),
    ("version: 1\nfamilies: []\n---\nversion: 1\n", 3, "another document"),
    ("version: 1\nfamilies:\n  - name: f\n\tgenerator: zeros\n", 4, "YAML syntax"),
    ("version: 1\nfamilies: [\n", 3, "YAML syntax"),
    ("version: 1\nfamilies: 'unterminated\n", 3, "YAML syntax"),
    ('version: 1\ndescription: "bad \\q escape"\n', 2, "YAML syntax"),
    ("version: 1\n  families: []\n", 2, "YAML"),
    ("version: 1\nfamilies: &a [*a]\n", 2, "alias"),
    ("!!set {a, b}\n", 1, "top level"),
    ("!!omap [a: 1]\n", 1, "top level"),
    ("version: 1\nfamilies:\n  - <<: {name: f}\n", 3, "merge"),
    ("version: 1\n? [a, b]\n: 1\n", 2, "not a scalar"),
    ("version: 1\n? {a: 1}\n: 1\n", 2, "not a scalar"),
    ("version: 1\nfamilies:\n  - name: f\n    generator: zeros\n    shape: [2]\n    exclude: [{}]\n", 6, "exclude"),
    ("version: 1\nfamilies:\n  - name: f\n    generator: literal\n    input: [1]\n", 3, "needs 'target'"),
    ("version: 1\nfamilies:\n  - name: f\n    generator: zeros\n", 3, "needs 'shape'"),
    (
        "version: 1\nfamilies:\n  - name: f\n    generator: zeros\n    shape: [2]\n    input: [1]\n",
        6,
        "only the literal",
    ),
    (
        "version: 1\nfamilies:\n  - name: f\n    generator: zeros\n    shape: [2]\n"
        "    axes: {api: [legacy_module]}\n    exclude: [{reduction: [none, sum, mean]}]\n",
        3,
        "no case to run",
    ),
    ("version: 1\nfamilies:\n  - name: Bad Name\n    generator: zeros\n    shape: [2]\n", 3, "does not match"),
    ("version: 1\nfamilies:\n  - name: f\n    generator: gaussian\n    shape: [2]\n", 4, "'gaussian' is not one of"),
    ("version: 1\ndescription: !!binary aGk=\n" + FAMILIES, 2, "not of type 'string'"),
    ("version: 1\ndescription: 2001-01-01\n" + FAMILIES, 2, "not of type 'string'"),
    ("%YAML 9.9\n---\nversion: 1\n", 1, "YAML"),
    ("%TAG ! tag:evil.com,2000:\n--- !x\n", 2, "YAML"),
]


@st.composite
def structural(draw):
    text, line, word = draw(st.sampled_from(STRUCTURAL))
    return Doc("structure", text.encode(), line, (word,))


@st.composite
def over_limits(draw):
    kind = draw(st.sampled_from(["file", "families", "exclude", "schema_nodes", "cases"]))
    if kind == "file":
        pad = draw(st.integers(C.MAX_FILE_BYTES + 1, 2 * C.MAX_FILE_BYTES))
        return Doc("over a limit", ("version: 1\n#" + "x" * pad + "\n").encode(), None, ("larger than",))
    if kind == "families":
        n = draw(st.integers(C.MAX_FAMILIES + 1, C.MAX_FAMILIES + 50))
        fams = "".join(f"  - {{name: f{i}, generator: zeros, shape: [2]}}\n" for i in range(n))
        return Doc("over a limit", f"version: 1\nfamilies:\n{fams}".encode(), C.MAX_FAMILIES + 3, ("more than",))
    if kind == "exclude":
        n = draw(st.integers(C.MAX_EXCLUDE + 1, 3 * C.MAX_EXCLUDE))
        rules = "".join("  - {dtype: float16}\n" for _ in range(n))
        return Doc("over a limit", (MINIMAL + f"exclude:\n{rules}").encode(), 7 + C.MAX_EXCLUDE, ("more than",))
    if kind == "schema_nodes":
        n = draw(st.integers(C.MAX_SCHEMA_NODES, 3 * C.MAX_SCHEMA_NODES))
        return Doc(
            "over a limit", (MINIMAL + f"    description: [{', '.join(['x'] * n)}]\n").encode(), 6, ("YAML nodes",)
        )
    n = C.MAX_CASES // 224 + draw(st.integers(1, 10))
    fams = "".join(f"  - {{name: f{i}, generator: softmax, shape: [2]}}\n" for i in range(n))
    return Doc("over a limit", f"version: 1\nfamilies:\n{fams}".encode(), None, ("more than",))


@st.composite
def garbage(draw):
    data = draw(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(lambda t: t.encode("utf-8", "replace"))))
    return Doc("garbage", data)


hostile_documents = st.one_of(
    mutated_core(),
    mutated_core(),
    mutated_core(),
    mutated_core(),  # (one_of weighs its branches alike)
    alias_bomb(),
    deep_nesting(),
    huge_numbers(),
    big_literals(),
    non_utf8(),
    duplicate_keys(),
    python_tags(),
    unknown_keys(),
    structural(),
    over_limits(),
    garbage(),
)


@settings(
    max_examples=400,
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(doc=hostile_documents)
def test_every_hostile_document_is_refused_with_one_line(doc, workdir):
    marker = _marker(workdir)
    data = doc.data.replace(MARKER_TOKEN.encode(), str(marker).encode())
    event(doc.kind)
    line, msg = refuse(workdir / "hostile.yaml", data, marker)
    if doc.line is not None:
        assert line == doc.line, msg
    for word in doc.words:
        assert word in msg, (word, msg)


@settings(max_examples=150, deadline=timedelta(seconds=5), suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_byte_edits_of_a_valid_file_load_or_fail_cleanly(data, workdir):
    """Fuzz: flip, delete or insert bytes in core.yaml; the result may still be a valid
    case file, but anything else is a one-line CaseFileError."""
    raw = bytearray(CORE_TEXT.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        op = data.draw(st.sampled_from(["flip", "delete", "insert"]))
        if op == "flip":
            raw[pos] = data.draw(st.integers(0, 255))
        elif op == "delete":
            del raw[pos : pos + data.draw(st.integers(1, 40))]
        else:
            raw[pos:pos] = data.draw(
                st.sampled_from(
                    [
                        b"[",
                        b"{",
                        b"&a ",
                        b"*a",
                        b"!!",
                        b": ",
                        b"\n  ",
                        b"- ",
                        b"'",
                        b'"',
                        b"\t",
                        b"#",
                        b"\xff",
                        b"\x00",
                        b"<<: ",
                    ]
                )
            )
    path = workdir / "fuzzed.yaml"
    path.write_bytes(bytes(raw))
    t0 = time.perf_counter()
    try:
        load_cases([path])
        event("still valid")
    except CaseFileError as exc:
        msg = str(exc)
        assert len(msg.splitlines()) == 1 and msg.isprintable()
        assert re.match(re.escape(str(path)) + r":\d+: \S", msg)
        event("refused")
    assert time.perf_counter() - t0 < LOAD_SECONDS


# ---------------------------------------------------------------- every error kind, exact line and key


def _family(extra: str = "", generator: str = "softmax", shape: str = "[4, 5]") -> str:
    """A one-family file; ``extra`` lines start at line 6."""
    return f"version: 1\nfamilies:\n  - name: f\n    generator: {generator}\n    shape: {shape}\n{extra}"


LITERAL = (
    "version: 1\nfamilies:\n  - name: lit\n    generator: literal\n    meaning: {input: prob, target: prob}\n"
    "    target: [[0.5, 0.5]]\n"
)  # input at line 7


@pytest.mark.parametrize(
    "text, line, words",
    [
        # YAML layer
        ("version: 1\nfamilies: [\n  1,\n  {a: b\n", 5, ["YAML syntax"]),
        ("version: 1\nfamilies:\n\t- name: f\n", 3, ["YAML syntax", "cannot start any token"]),
        ("version: 1\nx: &x [1, 2]\nfamilies: *x\n", 3, ["aliases"]),
        ("version: 1\nfamilies:\n  - <<: {name: f}\n", 3, ["merge keys"]),
        (_family("    grad: true\n    grad: false\n"), 7, ["grad: duplicate key (first at line 6)"]),
        ("version: 1\nfamilies: []\nversion: 1\n", 3, ["version: duplicate key (first at line 1)"]),
        (_family("    params:\n      eps: 0.1\n      eps: 0.2\n"), 8, ["eps: duplicate key"]),
        ("version: 1\n? [1]\n: x\n", 2, ["mapping key is not a scalar"]),
        (
            _family("    seed: !!python/object/apply:os.system ['echo hi']\n"),
            6,
            ["YAML: could not determine a constructor", "python/object/apply:os.system"],
        ),
        ("version: 1\nfamilies: !mytag x\n", 2, ["'!mytag'"]),
        (_family("    seed: !!int twelve\n"), 6, ["!!int", "'twelve'"]),
        (_family("    grad: !!bool perhaps\n"), 6, ["!!bool", "'perhaps'"]),
        (_family("    description: !!timestamp 2001-02-30\n"), 6, ["!!timestamp", "day is out of range"]),
        (_family("    seed: " + "1" * 5000 + "\n"), 6, ["!!int", "4300 digits"]),
        ("version: 1\nfamilies: " + "[" * 80 + "]" * 80 + "\n", 2, ["nesting deeper than 64"]),
        (
            "version: 1\nfamilies: [\n" + "  1,\n" * (C.MAX_NODES + 10) + "]\n",
            C.MAX_NODES - 2,
            ["more than 20000 YAML nodes"],
        ),
        ("version: 1\ndescription: ok\n# caf\x00\n", 3, ["#x0000 is not allowed"]),
        ("version: 1\n\n\ndescription: \x1b[31mred\n", 4, ["#x001b is not allowed"]),
        # structure and schema
        ("- 1\n- 2\n", 1, ["top level must be a mapping"]),
        ("version: 1\n", 1, ["'families' is a required property"]),
        ("version: 1\nfamilies: []\n", 2, ["families: must not be empty"]),
        (_family("    colour: red\n"), 6, ["families[0]: unknown key 'colour'"]),
        ("version: 1\n~: 1\n3: 2\nfamilies: []\n", 3, ["unknown key 3, None"]),
        (_family("    params: {scale: 1.0, sigma: 2}\n"), 6, ["families[0].params: unknown key 'sigma'"]),
        (_family("    axes: {reduction: []}\n"), 6, ["families[0].axes.reduction: must not be empty"]),
        (
            "version: 1\naxes: {dtype: []}\nfamilies:\n  - {name: f, generator: zeros, shape: [2]}\n",
            2,
            ["axes.dtype: must not be empty"],
        ),
        (_family("    axes: {dtype: [float32, float32]}\n"), 6, ["float32' is listed twice"]),
        (_family("    axes: {reduction: [0, '0', 1, '1', 2, '2']}\n"), 6, ["axes.reduction"]),
        (_family("    seed: -1\n"), 6, ["families[0].seed", "less than the minimum"]),
        (_family("    grad: 'yes'\n"), 6, ["families[0].grad", "not of type 'boolean'"]),
        (_family(shape="'4x5'"), 5, ["families[0].shape", "not of type 'array'"]),
        ("version: '1'\nfamilies:\n  - {name: f, generator: zeros, shape: [2]}\n", 1, ["version", "1 was expected"]),
        (_family(shape="[2, 4097]"), 5, ["families[0].shape[1]", "greater than the maximum of 4096"]),
        (_family(shape="[1, 2, 3, 4, 5]"), 5, ["families[0].shape", "too long"]),
        (_family("    description: !!binary aGVsbG8=\n"), 6, ["families[0].description", "not of type 'string'"]),
        # semantics
        (_family(shape="[4.0, 5]"), 5, ["families[0].shape[0]: 4.0 is not an integer"]),
        (_family(shape="[1000, 1000, 1000]"), 5, ["families[0].shape: 1000000000 elements exceed 1000000"]),
        (
            _family("    target_shape: [1, 1000, 1]\n", shape="[1000, 1, 1000]"),
            6,
            ["families[0].target_shape", "broadcast to 1000000000 elements"],
        ),
        (_family("    seed: 2.0\n"), 6, ["families[0].seed: 2.0 is not an integer"]),
        (
            _family("    params: {count: 1.0}\n", generator="zeros"),
            6,
            ["families[0].params.count: 1.0 is not an integer"],
        ),
        (_family("    params: {scale: .nan}\n"), 6, ["families[0].params.scale: must be a number, not NaN"]),
        (_family("    tolerance:\n      float32: {rtol: .nan, atol: 0}\n"), 7, ["tolerance.float32.rtol", "NaN"]),
        (_family("    input: [1.0]\n"), 6, ["families[0].input: only the literal generator takes it"]),
        (
            _family(generator="zeros", shape="[2]\n    axes: {api: [legacy_functional], reduction: [batchmean]}"),
            3,
            ["f: its axes and exclusions leave no case to run"],
        ),
        (LITERAL + "    input: [[0.5, 0.5], [0.5]]\n", 7, ["families[0].input[1]: ragged nested list"]),
        (
            LITERAL + "    input:\n      - [0.5, 0.5]\n      - [0.5, yes]\n",
            9,
            ["families[0].input[1][1]: True is not a number"],
        ),
        (LITERAL + "    input: [1, " + "9" * 400 + "]\n", 7, ["families[0].input[1]", "does not fit a float64"]),
        (LITERAL + "    input: " + "[" * 9 + "1" + "]" * 9 + "\n", 7, ["more than 8 nested lists"]),
        (LITERAL + "    input: [" + ", ".join(["1"] * 5000) + "]\n", 7, ["families[0].input: more than 4096 items"]),
        (
            LITERAL.replace("target: [[0.5, 0.5]]", "target: [" + ", ".join(["[0]"] * 2000) + "]")
            + "    input: [["
            + ", ".join(["0"] * 2000)
            + "]]\n",
            6,
            ["families[0].target", "broadcast to 4000000 elements"],
        ),
        (
            LITERAL + "    input: [[0.5, 0.5]]\n    seed: 1\n",
            8,
            ["families[0].seed: not used by the literal generator"],
        ),
        (LITERAL + "    input: {a: 1}\n", 7, ["families[0].input: {'a': 1} is not a number"]),
        # limits
        (
            "version: 1\nfamilies:\n"
            + "".join(f"  - {{name: f{i}, generator: zeros, shape: [2]}}\n" for i in range(501)),
            503,
            ["families: more than 500 items"],
        ),
        (
            _family("    exclude:\n" + "      - {dtype: float16}\n" * 65),
            71,
            ["families[0].exclude: more than 64 items"],
        ),
    ],
    ids=lambda v: v[0][:60] if isinstance(v, list) else "",
)
def test_error_kind_names_exact_line_and_key(tmp_path, text, line, words):
    got_line, msg = refuse(tmp_path / "case.yaml", text.encode())
    assert got_line == line, msg
    for word in words:
        assert word in msg, (word, msg)


def test_exact_line_of_invalid_utf8_and_the_byte_offset(tmp_path):
    data = b"version: 1\nfamilies:\n  - name: f\n    description: caf\xe9\n"
    line, msg = refuse(tmp_path / "latin1.yaml", data)
    assert line == 4
    offset = data.index(b"\xe9")
    assert f"not valid UTF-8 (byte {offset})" in msg


def test_hostile_key_names_are_escaped_into_one_line(tmp_path):
    data = b'version: 1\nfamilies: []\n"\\e[2J\\e[31mred\\nsecond line\\u2028\\r": 1\n'
    line, msg = refuse(tmp_path / "ansi.yaml", data)
    assert line == 3
    assert "\\x1b[2J" in msg and "\\n" in msg and "\\u2028" in msg and "\x1b" not in msg


def test_long_values_are_cut_in_messages(tmp_path):
    data = ("version: 1\nfamilies:\n  - name: f\n    generator: '" + "g" * 100_000 + "'\n    shape: [2]\n").encode()
    line, msg = refuse(tmp_path / "long.yaml", data)
    assert line == 4 and len(msg) < 600


def test_file_larger_than_the_limit_is_refused_without_reading_it_all(tmp_path):
    data = b"version: 1\n" + b"# padding\n" * (C.MAX_FILE_BYTES // 10 + 10)
    line, msg = refuse(tmp_path / "big.yaml", data)
    assert "larger than" in msg and line > 1


def test_missing_file_and_directory_are_case_file_errors(tmp_path):
    for path in (tmp_path / "absent.yaml", tmp_path):
        with pytest.raises(CaseFileError, match=re.escape(str(path)) + r":1: cannot read"):
            load_file(path)


def test_python_tags_never_run(tmp_path):
    # the loader is built on the safe constructor only, never the full or unsafe one
    assert issubclass(C._LineLoader, yaml.constructor.SafeConstructor)
    assert not issubclass(C._LineLoader, yaml.constructor.FullConstructor)
    marker = tmp_path / "pwned"
    for i, tag in enumerate(_python_tags()):
        tag = tag.replace(MARKER_TOKEN, str(marker))
        for text in (f"version: 1\nfamilies: {tag}\n", f"--- {tag}\n", f"version: 1\nfamilies:\n  - [{tag}]\n"):
            refuse(tmp_path / f"tag{i}.yaml", text.encode(), marker)
    assert not marker.exists()


def test_cases_limit_counts_every_file_of_a_load(write_cases, monkeypatch):
    monkeypatch.setattr(C, "MAX_CASES", 300)
    a = write_cases(_family(), "a.yaml")  # 224 cases each: one file is within the limit
    b = write_cases(_family().replace("name: f", "name: g"), "b.yaml")
    assert len(load_cases([a])) == 224
    with pytest.raises(CaseFileError, match=re.escape(str(b)) + r":3: g: the case files expand to more than 300"):
        load_cases([a, b])


WORST = {
    "billion laughs": "version: 1\n"
    + "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9) if i else ', '.join(['lol'] * 9)}]\n" for i in range(10)),
    "10^9-element tensor": _family(shape="[1000, 1000, 1000]"),
    "10^9-element broadcast": _family("    target_shape: [1, 1000, 1]\n", shape="[1000, 1, 1000]"),
    "literal broadcast": LITERAL.replace("target: [[0.5, 0.5]]", "target: [" + ", ".join(["[0]"] * 4000) + "]")
    + "    input: [["
    + ", ".join(["0"] * 4000)
    + "]]\n",
    "node budget": "version: 1\nfamilies: [" + "1, " * (C.MAX_NODES * 3) + "]\n",
    "schema nodes": _family("    description: [" + "x, " * (3 * C.MAX_SCHEMA_NODES) + "]\n"),
    "deep nesting": "version: 1\nfamilies: " + "[" * 50_000 + "]" * 50_000 + "\n",
    "many cases": "version: 1\nfamilies:\n"
    + "".join(f"  - {{name: f{i}, generator: softmax, shape: [2]}}\n" for i in range(C.MAX_CASES // 224 + 10)),
}


@pytest.mark.parametrize("name", list(WORST))
def test_worst_documents_stay_within_memory_and_time(tmp_path, name):
    path = tmp_path / "worst.yaml"
    data = WORST[name].encode()
    assert len(data) <= C.MAX_FILE_BYTES, "keep the worst case under the size limit so it is really parsed"
    path.write_bytes(data)
    tracemalloc.start()
    try:
        with pytest.raises(CaseFileError):
            load_cases([path])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < PEAK_BYTES, f"{name}: {peak / 2**20:.1f} MiB"
    refuse(path, data)  # and the timing, without tracemalloc's overhead


def test_refusing_a_huge_tensor_allocates_nothing(tmp_path, monkeypatch):
    """The size check runs in the loader: input generation is never reached."""
    import harness.inputs

    def boom(*a, **k):
        raise AssertionError("inputs generated for a refused case file")

    monkeypatch.setattr(harness.inputs, "family_data", boom)
    monkeypatch.setattr(harness.inputs, "call_inputs", boom)
    path = tmp_path / "huge.yaml"
    path.write_text(_family(shape="[1000, 1000, 1000]"))
    with pytest.raises(CaseFileError, match=r":5: families\[0\]\.shape: 1000000000 elements"):
        load_cases([path])


# ---------------------------------------------------------------- the command line


CLI_BAD = {
    "syntax": ("version: 1\nfamilies: [\n", 3),
    "python tag": ("version: 1\nfamilies: !!python/object/apply:os.system ['touch @@MARKER@@']\n", 2),
    "non-utf8": (b"version: 1\ndescription: \xff\xfe\n", 2),
    "10^9 tensor": (_family(shape="[1000, 1000, 1000]"), 5),
    "alias bomb": (WORST["billion laughs"], 3),
    "ansi key": ('version: 1\nfamilies: []\n"\\e[31m\\nline": 1\n', 3),
    "deep": ("version: 1\nfamilies: " + "[" * 5000 + "]" * 5000 + "\n", 2),
}


@pytest.mark.parametrize("name", list(CLI_BAD))
def test_cli_run_refuses_bad_case_file_with_exit_2_and_one_line(tmp_path, name):
    text, line = CLI_BAD[name]
    marker = tmp_path / "pwned"
    data = text if isinstance(text, bytes) else text.replace(MARKER_TOKEN, str(marker)).encode()
    path = tmp_path / "bad.yaml"
    path.write_bytes(data)
    out = tmp_path / "out.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--cases", str(path), "--device", "cpu", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {path}:{line}: "), lines[0]
    assert "Traceback" not in proc.stderr and "\x1b" not in proc.stderr
    assert not out.exists() and not marker.exists()


@pytest.mark.parametrize("args", [["run", "--device", "cpu"], ["plan"]])
def test_cli_missing_case_file_is_exit_2(tmp_path, args):
    path = tmp_path / "absent.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "harness", *args, "--cases", str(path), "--out", str(tmp_path / "o.json")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {path}:1: cannot read: No such file or directory"]


def test_pure_python_yaml_fallback_reports_the_same_lines(tmp_path, monkeypatch):
    """Without libyaml the loader falls back to PyYAML's pure-Python parser: same
    refusals, same lines, same words (only slower)."""
    import importlib.util

    monkeypatch.setitem(sys.modules, "yaml.cyaml", None)  # `from yaml.cyaml import CParser` fails
    spec = importlib.util.spec_from_file_location("harness._cases_without_libyaml", ROOT / "harness" / "cases.py")
    pure = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, pure)
    spec.loader.exec_module(pure)
    assert pure._CParser is None and issubclass(pure._LineLoader, yaml.SafeLoader)
    table = next(m for m in test_error_kind_names_exact_line_and_key.pytestmark if m.name == "parametrize").args[1]
    path = tmp_path / "case.yaml"
    for text, line, words in list(table) + [(t, n, [w]) for t, n, w in STRUCTURAL]:
        path.write_bytes(text.encode())
        with pytest.raises(pure.CaseFileError) as err:
            pure.load_file(path)
        msg = str(err.value)
        assert msg.startswith(f"{path}:{line}: ") and all(w in msg for w in words), (text[:80], msg)
