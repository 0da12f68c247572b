"""The results store's budgets (issue 24), measured, not asserted.

    python benchmarks/bench_store.py [--repeat 3] [--json benchmarks/store.json] [--no-synthetic]

Each figure is the median of --repeat runs, each in a fresh process, on the committed store
(reports/results):

* ``read``: reading every committed result (harness.results.read over result_files), s;
* ``report_cold``: ``harness report`` with an empty cache folder (a fresh clone), s and peak
  resident memory (MB); ``report_warm``: the same again with that cache, s;
* ``store``: the committed store's size (MB; its index files, its outcomes);
* ``synthetic``: a matrix ten times today's: every case family copied ten times under new
  names (same inputs, so every copy is a case of its own to judge), each release's results
  copied to the copies, packed into a store under build/bench/synthetic10x: its size, and
  ``harness report`` on it with an empty cache (s, the median of --repeat; peak MB).

Budgets (2-core machine): read <= 1 s; report <= 5 s cold, <= 1.5 s warm, <= 1 GB; the 10x
matrix: report <= 30 s cold, <= 4 GB, store <= 100 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

from common import emit  # noqa: E402

BUDGETS = {
    "read_seconds": 1.0,
    "report_cold_seconds": 5.0,
    "report_warm_seconds": 1.5,
    "report_peak_mb": 1024,
    "synthetic_report_cold_seconds": 30.0,
    "synthetic_report_peak_mb": 4096,
    "synthetic_store_mb": 100,
}
STORE = ROOT / "reports" / "results"
COPIES = 10
READ = """
import time
t = time.perf_counter()
from harness.results import read, result_files
n = sum(len(read(p).results) for p in result_files([{store!r}]))
print(n, time.perf_counter() - t)
"""


# a fixed pure-Python loop: how fast this machine runs Python now (the same machine varies by
# 20% from hour to hour; the figures of two runs compare through it)
CALIBRATE = """
import time
t = time.perf_counter()
s = 0
for i in range(20_000_000):
    s += i
print(time.perf_counter() - t)
"""


# runs a command and prints its peak resident memory (KB on Linux) as the last line of stderr
PEAK = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:]).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""


def _timed(cmd, env=None) -> tuple[float, float, str]:
    """(wall seconds, peak resident MB, stdout) of a command in a fresh process."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", PEAK, *map(str, cmd)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return wall, int(proc.stderr.split()[-1]) / 1024, proc.stdout


def _report(store, cases=(), cache=None) -> tuple[float, float]:
    env = {**os.environ, "HARNESS_CACHE_DIR": str(cache)}
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "harness", "report", "--results", str(store), "--out", out]
        if cases:
            cmd += ["--cases", *map(str, cases)]
        wall, peak, _ = _timed(cmd, env)
    return wall, peak


def _size_mb(paths) -> float:
    return sum(p.stat().st_size for p in paths if p.is_file()) / 1e6


def _plain_dumper():
    import yaml

    class Plain(yaml.SafeDumper):
        def ignore_aliases(self, data):  # the case files take no aliases
            return True

    return Plain


def synthetic(dest: Path) -> tuple[Path, list[Path]]:
    """The 10x store and its case files (see the module docstring); rebuilt each time."""
    import yaml

    from harness import results
    from harness.cases import load_cases

    _Plain = _plain_dumper()
    shutil.rmtree(dest, ignore_errors=True)
    case_dir = dest / "cases"
    case_dir.mkdir(parents=True)
    files = []
    for src in sorted((ROOT / "cases").glob("*.yaml")):
        doc = yaml.safe_load(src.read_text())
        families = []
        for fam in doc["families"]:
            for k in range(COPIES):
                families.append({**fam, "name": fam["name"] if k == 0 else f"{fam['name']}.s{k}"})
        doc["families"] = families
        files.append(case_dir / src.name)
        files[-1].write_text(yaml.dump(doc, Dumper=_Plain, sort_keys=False))
    copies, rank = {}, {}
    for k, case in enumerate(load_cases(files)):
        copies.setdefault(re.sub(r"\.s\d+(?=-|/)", "", case.id, count=1), []).append(case.id)
        rank[case.id] = k
    store = dest / "results"
    for index in results.result_files([STORE]):
        rf = results.read(index)
        out = [{**r, "id": cid} for r in rf.results for cid in copies.get(r["id"], [r["id"]])]
        out.sort(key=lambda r: (r["run"], rank.get(r["id"], -1)))  # in plan order, as a run writes them
        results.write_index(store / index.parent.name / index.name, rf.runs, out)
    return store, files


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--no-synthetic", action="store_true", help="skip the 10x matrix")
    parser.add_argument("--readme", help="rewrite the store-figures block of this README with the figures")
    parser.add_argument("--from-json", help="take the figures from this file instead of measuring")
    args = parser.parse_args(argv)
    if args.from_json:
        result = json.loads(Path(args.from_json).read_text())
        if args.readme:
            _readme(args.readme, result)
        return result
    med = statistics.median
    calibration = []  # this machine's speed now: the figures of two runs compare through it
    for _ in range(3):
        _, _, out = _timed([sys.executable, "-c", CALIBRATE])
        calibration.append(float(out))
    reads = []
    for _ in range(args.repeat):
        _, _, out = _timed([sys.executable, "-c", READ.format(store=str(STORE))])
        n, seconds = out.split()
        reads.append(float(seconds))
    colds, warms, peaks = [], [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as cache:
            wall, peak = _report(STORE, cache=cache)
            colds.append(wall)
            peaks.append(peak)
            warms.append(_report(STORE, cache=cache)[0])
    files = [p for p in STORE.rglob("*") if p.is_file()]
    result = {
        "calibration_seconds": round(med(calibration), 3),
        "results": int(n),
        "read_seconds": round(med(reads), 3),
        "report_cold_seconds": round(med(colds), 2),
        "report_warm_seconds": round(med(warms), 2),
        "report_peak_mb": round(max(peaks)),
        "store_mb": round(_size_mb(files), 2),
        "store_index_mb": round(_size_mb([p for p in files if p.name.endswith(".index")]), 2),
        "store_outcomes_mb": round(_size_mb([p for p in files if "outcomes" in p.parts]), 2),
        "store_largest_file_mb": round(max(p.stat().st_size for p in files) / 1e6, 2),
        "index_per_release_mb": round(max(p.stat().st_size for p in files if p.name.endswith(".index")) / 1e6, 3),
    }
    if not args.no_synthetic:
        store, cases = synthetic(ROOT / "build" / "bench" / "synthetic10x")
        syn_files = [p for p in store.rglob("*") if p.is_file()]
        walls, peaks = [], []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as cache:
                wall, peak = _report(store, cases, cache)
            walls.append(wall)
            peaks.append(peak)
        wall, peak = med(walls), max(peaks)
        records = sum(len(line) > 0 and not line.startswith("{") for p in syn_files if p.name.endswith(".index")
                      for line in p.read_text().split("\n"))  # fmt: skip
        result.update(
            synthetic_results=records,
            synthetic_store_mb=round(_size_mb(syn_files), 2),
            synthetic_report_cold_seconds=round(wall, 1),
            synthetic_report_peak_mb=round(peak),
        )
    result["budgets"] = BUDGETS
    result["met"] = {k: result[k] <= v for k, v in BUDGETS.items() if k in result}
    summary = ", ".join(f"{k} {result[k]}" for k in BUDGETS if k in result)
    emit(result, f"store: {summary}", args.json)
    if args.readme:
        _readme(args.readme, result)
    return result


ROWS = (  # (figure, key, unit, budget key)
    ("reading every committed result", "read_seconds", "s", "read_seconds"),
    ("`harness report`, cold (fresh clone, empty cache)", "report_cold_seconds", "s", "report_cold_seconds"),
    ("`harness report`, warm", "report_warm_seconds", "s", "report_warm_seconds"),
    ("`harness report`, peak memory", "report_peak_mb", "MB", "report_peak_mb"),
    ("the committed store (index files / outcomes)", "store_mb", "MB", None),
    ("one release's index (the largest)", "index_per_release_mb", "MB", None),
    ("10x matrix: its store", "synthetic_store_mb", "MB", "synthetic_store_mb"),
    ("10x matrix: `harness report`, cold", "synthetic_report_cold_seconds", "s", "synthetic_report_cold_seconds"),
    ("10x matrix: `harness report`, peak memory", "synthetic_report_peak_mb", "MB", "synthetic_report_peak_mb"),
)


def _readme(path, result: dict) -> None:
    """The figures as a table between README's store-figures markers."""
    lines = [
        f"Measured by `benchmarks/bench_store.py` (medians of its runs; {result['results']:,} committed results, "
        f"the 10x matrix {result.get('synthetic_results', 0):,}; 2 cores; this machine's speed then: a fixed "
        f"20-million-step Python loop took {result.get('calibration_seconds', '?')} s):",
        "",
        "| figure | measured | budget |",
        "| --- | --- | --- |",
    ]
    for label, key, unit, budget in ROWS:
        if key not in result:
            continue
        value = f"{result[key]} {unit}"
        if key == "store_mb":
            value += f" ({result['store_index_mb']} / {result['store_outcomes_mb']})"
        limit = result["budgets"].get(budget) if budget else None
        verdict = "" if limit is None else (f"≤ {limit} {unit}: " + ("met" if result[key] <= limit else "**not met**"))
        lines.append(f"| {label} | {value} | {verdict} |")
    text = Path(path).read_text()
    begin = text.index("<!-- store-figures:begin")
    begin = text.index("\n", begin) + 1
    end = text.index("<!-- store-figures:end -->")
    Path(path).write_text(text[:begin] + "\n".join(lines) + "\n" + text[end:])


if __name__ == "__main__":
    main()
