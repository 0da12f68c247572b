"""Every benchmark of issue 8, one command; the figures go to benchmarks/results.json.

    python benchmarks/run_all.py [--repeat 3] [--setup] [--skip-nox] [--out benchmarks/results.json]

(a) runner throughput on the full matrix and (b) its overhead over a bare loop making the
same calls (benchmarks/bench_runner.py), on each default release whose environment exists
under .nox/ (else on this interpreter's torch); (c) `python -m harness report` on synthetic
results of 24 releases x 2 devices x 3,000 cases (benchmarks/bench_report.py); (d) a warm
`nox` rerun of the default set against its floor (benchmarks/bench_nox.py; needs the
default environments: run `nox` once, or pass --setup).  Medians of --repeat runs each.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

TARGETS = {"overhead_ratio": 1.5, "runner_seconds_after_import": 5.0, "report_seconds": 3.0, "nox_ratio": 1.3}


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        kb = int(next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")).split()[1])
        mem = round(kb / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in load] if load else None,
    }


def _git() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        return sha + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "?"


def main(argv=None) -> dict:
    import bench_nox
    import bench_report
    import bench_runner

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--setup", action="store_true", help="create the default .nox environments first (cold nox)")
    ap.add_argument("--skip-nox", action="store_true", help="leave out (d)")
    ap.add_argument("--source", default=str(ROOT / "reports" / "results"), help="real results (c) and (d) use")
    ap.add_argument("--out", default=str(HERE / "results.json"))
    args = ap.parse_args(argv)
    out = {
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": _git(),
        "machine": machine(),
        "targets": TARGETS,
        "repeat": args.repeat,
    }

    # (a), (b): per default release with an environment; else this interpreter
    runner = {}
    envs = [(r.key, bench_nox.env_python(r.key)) for r in bench_nox.default_releases()]
    envs = [(k, p) for k, p in envs if p.exists()]
    if not envs and importlib.util.find_spec("torch") is not None:
        envs = [("host", Path(sys.executable))]
    for key, py in envs:
        print(f"== (a)(b) runner vs bare loop on torch {key}", flush=True)
        runner[key] = bench_runner.main(["--python", str(py), "--repeat", str(args.repeat)])
    out["runner"] = runner

    print("== (c) report of 24 releases x 2 devices x 3,000 cases", flush=True)
    out["report"] = bench_report.main(["--repeat", str(args.repeat), "--source", args.source])

    if not args.skip_nox:
        print("== (d) warm nox rerun of the default set", flush=True)
        nox_args = ["--repeat", str(args.repeat), "--source", args.source] + (["--setup"] if args.setup else [])
        try:
            out["nox"] = bench_nox.main(nox_args)
        except SystemExit as exc:  # no environments: say so, keep the rest
            out["nox"] = {"skipped": str(exc)}

    met = {}
    for key, r in runner.items():
        met[f"overhead_ratio[{key}]"] = r["overhead_ratio"] <= TARGETS["overhead_ratio"]
        met[f"runner_seconds_after_import[{key}]"] = (
            r["runner_seconds_after_import"] <= TARGETS["runner_seconds_after_import"]
        )
    met["report_seconds[warm]"] = out["report"]["warm_seconds"] <= TARGETS["report_seconds"]
    if "cold_seconds" in out["report"]:
        met["report_seconds[cold]"] = out["report"]["cold_seconds"] <= TARGETS["report_seconds"]
    if "ratio" in out.get("nox", {}):
        met["nox_ratio"] = out["nox"]["ratio"] <= TARGETS["nox_ratio"]
    out["targets_met"] = met
    try:  # figures measured by hand on an older checkout (--root) are kept
        old = json.loads(Path(args.out).read_text())
        out.update({k: old[k] for k in ("before", "previous", "notes") if k in old})
    except (OSError, ValueError):
        pass
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(met, indent=1))
    print(f"-> {args.out}")
    return out


if __name__ == "__main__":
    main()
