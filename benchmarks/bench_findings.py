"""The findings' budgets (issue 13) on the committed results, measured, not asserted.

    python benchmarks/bench_findings.py [--repeat 3] [--json benchmarks/findings.json]

Each figure is wall seconds, the median of --repeat, each in a fresh process:

* ``harness report`` over reports/results end to end: cold (empty evaluation cache) and
  warm (second run) (budget: 5 s cold, 3 s warm on a 2-core machine);
* the evaluation alone (harness.evaluation.verdict_frame): cold, with its files judged in
  worker processes (Evaluation.prefetch, one per core) and in one process, and warm (every
  file read from the cache);
* findings.compute alone on the evaluated frame, the first call of a process (it makes
  the families' inputs for the 'where' of the changes) and a second call; and
  findings.compute_cached when its entry is on disk;
* behaviour changes (budget: at most 25) and the longest reproduction (budget: 10 lines).
"""

from __future__ import annotations

import argparse
import json
import os
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

BUDGETS = {"report_cold_seconds": 5.0, "report_warm_seconds": 3.0, "behaviour_changes": 25, "reproduction_lines": 10}

# run in a fresh interpreter: prints the figures of one evaluation (and findings) as JSON
PROBE = """
import json, sys, time
T = time.perf_counter
jobs = int(sys.argv[1])
t0 = T()
from harness import findings
from harness.cases import load_cases
from harness.evaluation import Evaluation, frame_of
from harness.results import result_files
cases = {c.id: c for c in load_cases()}
evaluation = Evaluation(cases)
paths = result_files(["reports/results"])
t1 = T()
evaluation.prefetch(paths, jobs=jobs)
frame = frame_of([evaluation.evaluate_file(p) for p in paths])
evaluation.save()
t2 = T()
out = {"imports": t1 - t0, "evaluation": t2 - t1, "results": len(frame)}
if len(sys.argv) > 2:
    t = T(); findings.compute(frame, cases); out["compute_first"] = T() - t
    t = T(); findings.compute(frame, cases); out["compute_again"] = T() - t
    findings.compute_cached(frame, cases, evaluation)  # its entry written (or there already)
    t = T(); findings.compute_cached(frame, cases, evaluation); out["compute_cached_hit"] = T() - t
print(json.dumps(out))
"""


def _env(cache: Path) -> dict:
    return {**os.environ, "HARNESS_CACHE_DIR": str(cache)}


def _report(out: Path, cache: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness", "report", "--out", str(out)], cwd=ROOT, env=_env(cache),
                   check=True, capture_output=True)  # fmt: skip
    return time.perf_counter() - t0


def _probe(cache: Path, jobs: int, with_findings: bool = False) -> dict:
    argv = [sys.executable, "-c", PROBE, str(jobs)] + (["findings"] if with_findings else [])
    done = subprocess.run(argv, cwd=ROOT, env=_env(cache), check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _median(values) -> float:
    return round(statistics.median(values), 2)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    jobs = os.cpu_count() or 1
    figures: dict = {k: [] for k in ("report_cold", "report_warm", "eval_cold", "eval_cold_one", "eval_warm")}
    findings_runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            cache, out = Path(tmp) / f"cache{i}", Path(tmp) / f"out{i}"
            figures["report_cold"].append(_report(out, cache))
            figures["report_warm"].append(_report(out, cache))
            figures["eval_cold"].append(_probe(Path(tmp) / f"eval{i}", jobs)["evaluation"])
            figures["eval_cold_one"].append(_probe(Path(tmp) / f"one{i}", 1)["evaluation"])
            run = _probe(Path(tmp) / f"eval{i}", jobs, with_findings=True)
            figures["eval_warm"].append(run["evaluation"])
            findings_runs.append(run)
        summary = json.loads((Path(tmp) / "out0" / "summary.json").read_text())
    changes = summary["behaviour"]["changes"]
    result = {
        "report_cold_seconds": _median(figures["report_cold"]),
        "report_warm_seconds": _median(figures["report_warm"]),
        "evaluation_cold_seconds": _median(figures["eval_cold"]),
        "evaluation_cold_one_process_seconds": _median(figures["eval_cold_one"]),
        "evaluation_warm_seconds": _median(figures["eval_warm"]),
        "findings_compute_seconds": _median(r["compute_first"] for r in findings_runs),
        "findings_compute_again_seconds": _median(r["compute_again"] for r in findings_runs),
        "findings_compute_cached_hit_seconds": _median(r["compute_cached_hit"] for r in findings_runs),
        "behaviour_changes": len(changes),
        "reproduction_lines": max(len(c["reproduction"]) for c in changes) if changes else 0,
        "results": findings_runs[0]["results"],
        "jobs": jobs,
        "budgets": BUDGETS,
        "repeat": args.repeat,
    }
    met = {k: result[k] <= v for k, v in BUDGETS.items()}
    result["met"] = met
    text = ", ".join(f"{k} {result[k]} ({'ok' if met[k] else 'over'} {BUDGETS[k]})" for k in BUDGETS)
    extra = (
        f"evaluation cold {result['evaluation_cold_seconds']} s ({jobs} workers; "
        f"{result['evaluation_cold_one_process_seconds']} s in one), warm {result['evaluation_warm_seconds']} s; "
        f"compute {result['findings_compute_seconds']} s (again {result['findings_compute_again_seconds']} s, "
        f"cached {result['findings_compute_cached_hit_seconds']} s)"
    )
    return emit(result, f"findings: {text}; {extra}", args.json)


if __name__ == "__main__":
    main()
