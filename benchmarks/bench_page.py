"""The report page in headless Chromium: first paint, load time, bytes and DOM elements.

    python benchmarks/bench_page.py [PAGE] [--runs 5] [--json benchmarks/page.json]

PAGE is a rendered report (default reports/index.html), opened as file:// by
tests/browser/check.mjs (needs /usr/bin/chromium and `npm ci --prefix tests/browser`); the
timings are medians of --runs fresh loads at 1440x900.  Timings are machine-dependent
(milliseconds on this machine, one Chromium, cold start excluded only by the median); bytes and
DOM elements are not.  Budgets: at most 1,000,000 bytes and 20,000 elements (tests/test_browser.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

from common import emit  # noqa: E402

BUDGETS = {"bytes": 1_000_000, "dom_elements": 20_000}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("page", nargs="?", default=str(ROOT / "reports" / "index.html"))
    ap.add_argument("--runs", type=int, default=5, help="page loads whose timings are taken (median)")
    ap.add_argument("--json", default=str(HERE / "page.json"), help="write the figures here ('' for nowhere)")
    args = ap.parse_args(argv)
    page = Path(args.page).resolve()
    with tempfile.TemporaryDirectory(prefix="bench-page-") as tmp:
        proc = subprocess.run(
            ["node", str(ROOT / "tests" / "browser" / "check.mjs"), str(page), tmp, "--skip-axe"]
            + ["--timing-runs", str(args.runs)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        if proc.returncode != 0:
            sys.exit(f"bench_page: check.mjs failed:\n{proc.stderr[-3000:]}")
        check = json.loads((Path(tmp) / "check.json").read_text())
    timing = check["timing"]
    try:
        page_name = str(page.relative_to(ROOT))
    except ValueError:
        page_name = str(page)
    result = {
        "page": page_name,
        "first_contentful_paint_ms": timing["first_contentful_paint_ms"],
        "load_event_end_ms": timing["load_event_end_ms"],
        "dom_content_loaded_ms": timing["dom_content_loaded_ms"],
        "bytes": check["bytes"],
        "dom_elements": check["dom_elements"],
        "runs": args.runs,
        "runs_ms": timing["runs"],
        "browser": f"Chromium {check['browser']} (headless)",
        "machine": f"{platform.machine()}, {platform.system()}, {os.cpu_count()} cores",
        "machine_dependent": ["first_contentful_paint_ms", "load_event_end_ms", "dom_content_loaded_ms", "runs_ms"],
        "budgets": BUDGETS,
    }
    result["met"] = {k: result[k] <= v for k, v in BUDGETS.items()}
    text = ", ".join(f"{k} {result[k]} ({'ok' if result['met'][k] else 'over'} {v})" for k, v in BUDGETS.items())
    summary = (
        f"page: first paint {result['first_contentful_paint_ms']} ms, load {result['load_event_end_ms']} ms "
        f"(median of {args.runs}; machine-dependent); {text}"
    )
    return emit(result, summary, args.json or None)


if __name__ == "__main__":
    main()
