"""The harness modules follow the pipeline: each imports only its own layer or lower ones,
and no harness modules import each other in a circle.

Every import counts, at the top of a file or inside a function, except those under
``if TYPE_CHECKING:`` (annotations only, never run).  A module on disk with no layer
below is a failure: a new module gets a layer here.
"""

from __future__ import annotations

import ast

from tests.conftest import ROOT

# The one layer map: a module may import its own layer (without a circle) or a lower one.
LAYERS = {
    0: (
        "__init__",
        "axes",
        "memo",
        "phases",
        "scopes",
        "verdicts",
        "versions",
        "results",
        "severities",
        "tensors",
    ),  # vocabulary
    1: ("cases",),
    2: ("inputs",),
    3: ("catalogue", "worker", "runner"),  # run
    4: ("reference",),
    5: ("evaluate", "explanations", "evaluation", "oracle", "claims", "reproductions"),
    6: ("findings",),
    7: ("report", "gate"),
    8: ("cli", "__main__"),
}
LAYER = {name: level for level, names in LAYERS.items() for name in names}
PACKAGE = "harness"


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Imports(ast.NodeVisitor):
    """(line, target module, import text) for each run-time import of a harness module."""

    def __init__(self, known):
        self.known, self.found = known, []

    def visit_If(self, node):
        if _type_checking(node.test):  # annotations only: not run
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def _add(self, node, target):
        self.found.append((node.lineno, target, ast.get_source_segment(self.source, node) or ast.dump(node)))

    def visit_Import(self, node):
        for alias in node.names:
            parts = alias.name.split(".")
            if parts[0] == PACKAGE:
                self._add(node, parts[1] if len(parts) > 1 else "__init__")

    def visit_ImportFrom(self, node):
        if node.level > 1:
            return  # above the package
        if node.level == 1:
            parts = node.module.split(".") if node.module else []
        elif node.module and node.module.split(".")[0] == PACKAGE:
            parts = node.module.split(".")[1:]
        else:
            return  # not a harness import
        if parts:
            self._add(node, parts[0])
            return
        for alias in node.names:  # from . import x / from harness import x
            self._add(node, alias.name if alias.name in self.known else "__init__")


def imports_of(name: str, source: str, known) -> list:
    visitor = _Imports(known)
    visitor.source = source
    visitor.visit(ast.parse(source, filename=f"{PACKAGE}/{name}.py"))
    return [(line, target, text) for line, target, text in visitor.found if target != name]


def check(sources: dict, layer: dict = LAYER) -> list:
    """Problems in ``sources`` (module name -> source text): modules without a layer,
    imports of a higher layer, import circles.  Each names file, line and import."""
    problems = [
        f"{PACKAGE}/{name}.py: module has no layer; add it to LAYERS in tests/test_layers.py"
        for name in sorted(sources)
        if name not in layer
    ]
    known = set(sources) | set(layer)
    edges = {}  # module -> {target: (line, text)} (first import of each target)
    for name in sorted(sources):
        edges[name] = {}
        for line, target, text in imports_of(name, sources[name], known):
            edges[name].setdefault(target, (line, text))
            where = f"{PACKAGE}/{name}.py:{line}: {text}"
            if target not in layer:
                problems.append(f"{where}: imports {target!r}, which has no layer")
            elif name in layer and layer[target] > layer[name]:
                problems.append(
                    f"{where}: layer {layer[name]} ({name}) imports layer {layer[target]} ({target}); "
                    "imports go to the same or a lower layer"
                )
    problems += [_describe(cycle, edges) for cycle in _cycles(edges)]
    return problems


def _cycles(edges: dict) -> list:
    """One circle (list of modules, first repeated at the end) per strongly connected
    group of modules that import each other."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v):  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return [_circle_in(group, edges) for group in groups]


def _circle_in(group: set, edges: dict) -> list:
    """A shortest circle through the group's first module (breadth first)."""
    start = min(group)
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        for w in sorted(edges[path[-1]]):
            if w == start:
                return path + [start]
            if w in group and w not in seen:
                seen.add(w)
                paths.append(path + [w])
    raise AssertionError(f"no circle in {group}")  # a strongly connected group always has one


def _describe(circle: list, edges: dict) -> str:
    steps = [f"{PACKAGE}/{a}.py:{edges[a][b][0]}: {edges[a][b][1]}" for a, b in zip(circle, circle[1:])]
    return f"import circle {' -> '.join(circle)}: " + "; ".join(steps)


def _sources() -> dict:
    return {path.stem: path.read_text() for path in sorted((ROOT / PACKAGE).glob("*.py"))}


def test_harness_modules_follow_the_pipeline_layers():
    problems = check(_sources())
    assert not problems, "\n".join(problems)


# Inside the report package (layer 7 as a whole), the same rule: text and the section type,
# then the data model, then the sections (data only), then their assembly into files.
REPORT_LAYERS = {
    0: ("text", "base"),
    1: ("model",),
    2: ("glance", "changes", "edges", "evidence", "casepages"),
    3: ("assemble",),
    4: ("__init__",),
}
REPORT_LAYER = {name: level for level, names in REPORT_LAYERS.items() for name in names}


def _report_sources() -> dict:
    return {path.stem: path.read_text() for path in sorted((ROOT / PACKAGE / "report").glob("*.py"))}


def _outer_imports(name: str, source: str) -> list:
    """(line, harness module, text) for each import a report module makes of the package
    above it (``from .. import x`` / ``from ..x import y``)."""
    found = []
    for node in ast.walk(ast.parse(source, filename=f"{PACKAGE}/report/{name}.py")):
        if isinstance(node, ast.ImportFrom) and node.level == 2:
            targets = (
                [node.module.split(".")[0]]
                if node.module
                else [a.name if a.name in LAYER else "__init__" for a in node.names]
            )
            found += [(node.lineno, t, ast.get_source_segment(source, node)) for t in targets]
    return found


def test_report_package_follows_its_own_layers():
    sources = _report_sources()
    problems = [p.replace(f"{PACKAGE}/", f"{PACKAGE}/report/") for p in check(sources, REPORT_LAYER)]
    for name, source in sources.items():
        for line, target, text in _outer_imports(name, source):
            if LAYER.get(target, 99) > LAYER["report"]:
                problems.append(f"{PACKAGE}/report/{name}.py:{line}: {text}: imports {target!r} above the report")
    assert not problems, "\n".join(problems)
    assert {t for src in sources.values() for _, t, _ in _outer_imports("x", src)} >= {"verdicts", "findings"}


def test_every_import_is_seen():
    """The checker finds what the package really imports (guards against a checker that
    silently sees nothing)."""
    sources = _sources()
    found = {target for name in ("cli", "runner") for _, target, _ in imports_of(name, sources[name], set(LAYER))}
    assert {"runner", "results", "worker", "__init__"} <= found


def test_checker_catches_a_planted_violation():
    problems = check(
        {
            "cases": "import json\n\n\ndef f():\n    from .report import write_report\n",
            "report": "from .cases import load_cases\n",
            "inputs": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .report import Data\n",
        }
    )
    assert len(problems) == 2, problems
    layer, circle = problems
    assert layer.startswith("harness/cases.py:5: from .report import write_report: layer 1 (cases)")
    assert circle == (
        "import circle cases -> report -> cases: harness/cases.py:5: from .report import write_report; "
        "harness/report.py:1: from .cases import load_cases"
    )


def test_checker_catches_same_layer_circles_and_unmapped_modules():
    problems = check(
        {
            "evaluate": "from . import claims\n",
            "claims": "import harness.evaluate\n",
            "fresh": "from harness.results import read\n",
        }
    )
    assert problems[0] == "harness/fresh.py: module has no layer; add it to LAYERS in tests/test_layers.py"
    assert problems[1].startswith("import circle claims -> evaluate -> claims: harness/claims.py:1: import harness")
    assert len(problems) == 2, problems
    # a module in the map but not (yet) on disk is fine
    assert check({"results": "import json\n", "cases": "from .results import read\n"}) == []


def test_layer_map_names_each_module_once():
    names = [name for names in LAYERS.values() for name in names]
    assert len(names) == len(set(names))
    assert (ROOT / PACKAGE / "__init__.py").is_file()


def test_no_module_keeps_an_unbounded_memo_and_no_test_reaches_private_globals():
    """Module-level state is constants or bounded memos (harness.memo.Memo, lru_cache):
    no ``NAME = {}`` / ``[]`` at module level; and tests never touch a module's private
    upper-case globals (``module._CACHE``), so a fresh object is all a test needs."""
    found = []
    for path in sorted((ROOT / "harness").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
            value = getattr(node, "value", None)
            if (
                isinstance(target, ast.Name)
                and isinstance(value, (ast.Dict, ast.List, ast.Set))
                and not (getattr(value, "keys", None) or getattr(value, "elts", None))
            ):
                found.append(f"harness/{path.name}:{node.lineno}: {target.id} = empty {type(value).__name__}")
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and node.attr[1:].replace("_", "").isupper()
            ):
                found.append(f"tests/{path.name}:{node.lineno}: .{node.attr}")
    assert not found, "\n".join(found)
