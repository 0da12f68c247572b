"""A warm `nox` rerun of the default set against its floor.

    python benchmarks/bench_nox.py [--repeat 3] [--json out.json]

The default set is what plain `nox` runs: run(torch=...) for each release tagged
``default`` in harness/releases.toml, then the report over every results file.  Its
environments must exist under .nox/ (a first, cold `nox` made them; --setup makes them
here, without HARNESS_PRUNE, so they are kept).  The benchmark does not touch reports/:
each rerun writes to build/bench/nox/ (HARNESS_RESULTS, HARNESS_REPORT_OUT) a fresh copy
of reports/results, so the report step reads every release, as a real rerun would.

floor = sum over the default releases of (torch import + matrix run after the import),
each measured directly with that environment's python: ``python -c "import torch"``,
and ``python -m harness run --python ENV`` minus the worker's own import time.
The figure is warm rerun / floor (median of --repeat each).
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

from common import emit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WORK = ROOT / "build" / "bench" / "nox"


def default_releases() -> list:
    from harness import catalogue

    return [r for r in catalogue.load() if "default" in r.all_tags]


def env_python(key: str) -> Path:
    return ROOT / ".nox" / f"run-torch-{key.replace('.', '-')}" / "bin" / "python"


def _nox_env(results: Path, report: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_PRUNE"}  # keep the environments
    env.update(HARNESS_RESULTS=str(results), HARNESS_REPORT_OUT=str(report))
    return env


def _fresh_results(source: Path) -> Path:
    results = WORK / "results"
    if results.exists():
        shutil.rmtree(results)
    shutil.copytree(source, results, ignore=shutil.ignore_patterns("timing.json"))
    return results


def nox_rerun(source: Path, log: Path) -> dict:
    results = _fresh_results(source)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(
            ["nox"], cwd=ROOT, env=_nox_env(results, WORK / "report"), stdout=f, stderr=subprocess.STDOUT
        )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"nox failed (exit {proc.returncode}); see {log}")
    sessions = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"\* (\S+): success, took (?:(\d+) seconds|.*)", log.read_text())
        if m.group(2)
    }
    timings = {}
    for r in default_releases():
        t = results / r.key / "timing.json"
        if t.exists():
            timings[r.key] = json.loads(t.read_text())
    return {"wall": wall, "sessions": sessions, "timing": timings}


def nox_startup() -> float:
    """`nox -l`: importing the noxfile (catalogue, interpreter discovery) and listing."""
    t0 = time.perf_counter()
    subprocess.run(["nox", "-l"], cwd=ROOT, capture_output=True, check=True)
    return time.perf_counter() - t0


def import_seconds(python: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([str(python), "-c", "import torch"], check=True, capture_output=True)
    return time.perf_counter() - t0


def matrix_run(python: Path, plan: Path, tmp: Path) -> dict:
    out = tmp / "run.jsonl"
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "run",
            "--plan",
            str(plan),
            "--python",
            str(python),
            "--device",
            "cpu",
            "--out",
            str(out),
            "--quiet",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - t0
    header = json.loads(out.read_text().split("\n", 1)[0])
    imp = header["env"]["import_seconds"]
    return {"wall": wall, "worker_import": imp, "after_import": wall - imp}


def floor(plan: Path, repeat: int) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in default_releases():
            py = env_python(r.key)
            imports = [import_seconds(py) for _ in range(repeat)]
            runs = [matrix_run(py, plan, Path(tmp)) for _ in range(repeat)]
            out[r.key] = {
                "import_seconds": statistics.median(imports),
                "run_after_import_seconds": statistics.median(x["after_import"] for x in runs),
                "run_wall_seconds": statistics.median(x["wall"] for x in runs),
            }
            out[r.key]["floor_seconds"] = out[r.key]["import_seconds"] + out[r.key]["run_after_import_seconds"]
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--source", default=str(ROOT / "reports" / "results"), help="results the report step reads")
    ap.add_argument("--setup", action="store_true", help="create missing environments with a cold `nox` first")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    missing = [r.key for r in default_releases() if not env_python(r.key).exists()]
    if missing and not args.setup:
        raise SystemExit(
            f"no environment under .nox/ for {', '.join(missing)}: run `nox` once (without "
            "HARNESS_PRUNE), or pass --setup"
        )
    result = {}
    if missing:
        cold = nox_rerun(Path(args.source), WORK / "cold.log")
        result["cold_seconds"] = round(cold["wall"], 1)
    plan = WORK / "plan.json"
    subprocess.run(
        [sys.executable, "-m", "harness", "plan", "--out", str(plan)], cwd=ROOT, check=True, capture_output=True
    )
    reruns = []
    for i in range(args.repeat):  # alternate with the floor's parts so load drifts hit both alike
        reruns.append(nox_rerun(Path(args.source), WORK / f"warm-{i}.log"))
    parts = floor(plan, args.repeat)
    startup = statistics.median(nox_startup() for _ in range(args.repeat))
    warm = statistics.median(r["wall"] for r in reruns)
    fl = sum(p["floor_seconds"] for p in parts.values())
    mid = sorted(reruns, key=lambda r: r["wall"])[len(reruns) // 2]
    result.update(
        {
            "releases": [r.key for r in default_releases()],
            "warm_rerun_seconds": round(warm, 2),
            "warm_rerun_all": [round(r["wall"], 2) for r in reruns],
            "floor_seconds": round(fl, 2),
            "ratio": round(warm / fl, 2),
            "floor_parts": {k: {n: round(v, 2) for n, v in p.items()} for k, p in parts.items()},
            "nox_list_seconds": round(startup, 2),
            "sessions_seconds": mid["sessions"],
            "session_timing": {
                k: {n: t.get(n) for n in ("install_seconds", "run_seconds", "total_seconds")}
                for k, t in mid["timing"].items()
            },
            "repeat": args.repeat,
        }
    )
    return emit(
        result,
        f"warm `nox` rerun {result['warm_rerun_seconds']} s; floor {result['floor_seconds']} s "
        f"(torch imports + matrix runs); ratio x{result['ratio']} (target <= 1.3)",
        args.json,
    )


if __name__ == "__main__":
    main()
