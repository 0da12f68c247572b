"""The findings' budgets (issue 13) on the committed results, measured, not asserted.

    python benchmarks/bench_findings.py [--repeat 3] [--json benchmarks/findings.json]

* ``harness report`` over reports/results: cold (empty evaluation cache) and warm (second
  run), wall seconds, median of --repeat (budget: 5 s cold, 3 s warm on a 2-core machine);
* findings.compute alone on the evaluated frame;
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


def _report(out: Path, cache: Path) -> float:
    env = {**os.environ, "HARNESS_CACHE_DIR": str(cache)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness", "report", "--out", str(out)], cwd=ROOT, env=env, check=True,
                   capture_output=True)  # fmt: skip
    return time.perf_counter() - t0


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    cold, warm = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            cache, out = Path(tmp) / f"cache{i}", Path(tmp) / f"out{i}"
            cold.append(_report(out, cache))
            warm.append(_report(out, cache))
        summary = json.loads((Path(tmp) / "out0" / "summary.json").read_text())
    from harness import findings
    from harness.cases import load_cases
    from harness.evaluation import verdict_frame

    frame = verdict_frame([ROOT / "reports" / "results"])
    cases = {c.id: c for c in load_cases()}
    t0 = time.perf_counter()
    findings.compute(frame, cases)
    compute_s = time.perf_counter() - t0
    changes = summary["behaviour"]["changes"]
    result = {
        "report_cold_seconds": round(statistics.median(cold), 2),
        "report_warm_seconds": round(statistics.median(warm), 2),
        "findings_compute_seconds": round(compute_s, 2),
        "behaviour_changes": len(changes),
        "reproduction_lines": max(len(c["reproduction"]) for c in changes) if changes else 0,
        "results": len(frame),
        "budgets": BUDGETS,
        "repeat": args.repeat,
    }
    met = {k: result[k] <= v for k, v in BUDGETS.items()}
    result["met"] = met
    text = ", ".join(f"{k} {result[k]} ({'ok' if met[k] else 'over'} {BUDGETS[k]})" for k in BUDGETS)
    return emit(result, f"findings: {text}; compute {result['findings_compute_seconds']} s", args.json)


if __name__ == "__main__":
    main()
