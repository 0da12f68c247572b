"""Runner throughput and overhead: the harness's runner against a bare loop.

    python benchmarks/bench_runner.py [--python ENV_PYTHON] [--repeat 3] [--json out.json] [--root CHECKOUT]

(a) throughput: cases per second of `harness run` over the full matrix, after torch's
    import (the worker reports its import time), with the default number of workers
    (one per core, harness.runner.jobs_for) and with one worker;
(b) overhead: the one-worker run against a bare loop in one process, making the same
    tensors and the same F.kl_div / nn.KLDivLoss / autograd.grad calls with nothing else
    (no warnings capture, no records, no supervisor).  Ratio = runner / bare loop.
Both are measured in the same invocation, alternating, median of --repeat runs.
--root runs another checkout's runner and worker (e.g. the commit before an optimisation).
"""

from __future__ import annotations

import argparse
import inspect
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import emit

ROOT = Path(__file__).resolve().parent.parent
if "--root" in sys.argv[:-1]:  # before anything imports harness
    sys.path.insert(0, sys.argv[sys.argv.index("--root") + 1])
else:
    sys.path.insert(0, str(ROOT))

BARE_LOOP = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
import torch.nn.functional as F
t1 = time.perf_counter()
plan = json.load(open(sys.argv[1]))
arrays = plan["arrays"]
legacy = {"none": {"reduce": False}, "sum": {"size_average": False, "reduce": True},
          "mean": {"size_average": True, "reduce": True}}
for c in plan["cases"]:
    if "snippet" in c:
        continue
    dtype = getattr(torch, c["dtype"])
    a = torch.tensor(arrays[c["first"]]["values"], dtype=torch.float64).reshape(arrays[c["first"]]["shape"]).to(dtype)
    b = torch.tensor(arrays[c["second"]]["values"], dtype=torch.float64).reshape(arrays[c["second"]]["shape"]).to(dtype)
    if c["grad"]:
        a.requires_grad_(True); b.requires_grad_(True)
    kw = {"log_target": True} if c["log_target"] else {}
    if c["api"].startswith("legacy"):
        kw.update(legacy[c["reduction"]])
    else:
        kw["reduction"] = c["reduction"]
    try:
        if c["api"] in ("module", "legacy_module"):
            out = torch.nn.KLDivLoss(**kw)(a, b)
        else:
            out = F.kl_div(a, b, **kw)
        out.detach().double().tolist()
        if c["grad"]:
            for leaf in (a, b):
                try:
                    torch.autograd.grad(out, [leaf], torch.ones_like(out), retain_graph=True, allow_unused=True)
                except Exception:
                    pass
    except Exception:
        pass
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "loop": t2 - t1}))
"""


def bare_loop(python, plan_path) -> dict:
    out = subprocess.run([python, "-c", BARE_LOOP, str(plan_path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def harness_run(python, plan, tmp, jobs=None) -> dict:
    from harness.runner import run

    out = Path(tmp) / "bench.jsonl"
    t0 = time.perf_counter()
    kw = {"jobs": jobs} if "jobs" in inspect.signature(run).parameters else {}  # --root before --jobs: one worker
    (summary,) = run(None, out, devices=["cpu"], python=python, plan=plan, **kw)
    wall = time.perf_counter() - t0
    return {
        "wall": wall,
        "import": summary.env["import_seconds"],
        "after_import": wall - summary.env["import_seconds"],
        "cases": summary.finished,
        "torch": summary.env["torch"],
        "jobs": getattr(summary, "jobs", 1),
    }


def main(argv=None) -> dict:
    from harness.cases import load_cases
    from harness.runner import build_plan

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", default=sys.executable, help="interpreter with torch (default: this one)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--root", help="checkout whose runner to measure (default: this one)")
    args = ap.parse_args(argv)
    plan = build_plan(load_cases())
    runs, singles, bares = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        plan_path = Path(tmp) / "plan.json"
        plan_path.write_text(json.dumps(plan))
        for _ in range(args.repeat):
            runs.append(harness_run(args.python, plan, tmp))
            singles.append(harness_run(args.python, plan, tmp, jobs=1))
            bares.append(bare_loop(args.python, plan_path))
    after = statistics.median(r["after_import"] for r in runs)
    single = statistics.median(r["after_import"] for r in singles)
    bare = statistics.median(b["loop"] for b in bares)
    result = {
        "machine": f"{platform.machine()}, {platform.processor() or '?'}, "
        f"{__import__('os').cpu_count()} cpus, Python {platform.python_version()}",
        "torch": runs[0]["torch"],
        "cases": runs[0]["cases"],
        "jobs": runs[0]["jobs"],
        "runner_seconds_after_import": round(after, 3),
        "runner_cases_per_second": round(runs[0]["cases"] / after, 1),
        "one_worker_seconds_after_import": round(single, 3),
        "torch_import_seconds": round(statistics.median(r["import"] for r in runs), 3),
        "bare_loop_seconds": round(bare, 3),
        "overhead_ratio": round(single / bare, 2),
        "repeat": args.repeat,
    }
    return emit(
        result,
        f"runner: {result['runner_cases_per_second']} cases/s ({result['cases']} cases in "
        f"{result['runner_seconds_after_import']} s after import, {result['jobs']} workers; one worker "
        f"{result['one_worker_seconds_after_import']} s); bare loop {result['bare_loop_seconds']} s; "
        f"overhead x{result['overhead_ratio']} (target <= 1.5); full matrix after import "
        f"{result['runner_seconds_after_import']} s (target <= 5)",
        args.json,
    )


if __name__ == "__main__":
    main()
