"""Report rendering time: `python -m harness report` end to end (read + evaluate + render)
on synthetic results of 24 releases x 2 devices x 3,000 cases (benchmarks/synth_results.py).

    python benchmarks/bench_report.py [--repeat 3] [--json out.json] [--root OTHER_CHECKOUT]

cold: an empty evaluation cache (every file read and judged); warm: the cache filled by the
run before (files unchanged since the last report: the usual case).  --root runs another
checkout's harness on the same files (e.g. the commit before an optimisation).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import emit

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
SYNTH = ROOT / "build" / "bench" / "synthetic"


def _report(root: Path, results: Path, out: Path, cache: Path) -> float:
    env = {**os.environ, "HARNESS_CACHE_DIR": str(cache)}
    env.pop("HARNESS_CACHE", None)
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "harness", "report", "--results", str(results), "--out", str(out)],
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - t0


def main(argv=None) -> dict:
    from synth_results import generate

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--source", default=str(ROOT / "reports" / "results"), help="real results to build from")
    ap.add_argument("--releases", type=int, default=24)
    ap.add_argument("--cases", type=int, default=3000)
    ap.add_argument("--root", default=str(ROOT), help="checkout whose harness renders (default: this one)")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold (empty cache) runs")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    counts = generate(Path(args.source), SYNTH, args.releases, args.cases)
    root = Path(args.root)
    cold, warm = [], []
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        out = Path(tmp) / "out"
        for i in range(args.repeat):
            cache = Path(tmp) / f"cache-{i}"
            first = _report(root, SYNTH, out, cache)  # fills this empty cache
            if not args.no_cold:
                cold.append(first)
            warm.append(_report(root, SYNTH, out, cache))
        sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir())}
    result = {
        "results": counts["results"],
        "releases": counts["releases"],
        "devices": 2,
        "cases": counts["cases"],
        "root": str(root),
        "warm_seconds": round(statistics.median(warm), 2),
        "warm_all": [round(x, 2) for x in warm],
        "output_bytes": sizes,
        "repeat": args.repeat,
    }
    if cold:
        result["cold_seconds"] = round(statistics.median(cold), 2)
        result["cold_all"] = [round(x, 2) for x in cold]
    return emit(
        result,
        f"report of {counts['results']} results: {result['warm_seconds']} s with the evaluation cache"
        + (f", {result['cold_seconds']} s without" if cold else "")
        + " (target <= 3)",
        args.json,
    )


if __name__ == "__main__":
    main()
