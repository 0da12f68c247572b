"""Synthetic results for the report benchmark, made from real ones.

    python benchmarks/synth_results.py [--source reports/results] [--out build/bench/synthetic]
                                       [--releases 24] [--cases 3000]

Every release's CPU file is its real CPU results cut to the same ``--cases`` case ids
(plus the published-claims snippets, CPU only, as in a real run): releases differ as
they really do.  Its CUDA file is that release's CPU results relabelled to a CUDA device
(an H200, as the real CUDA run), with the real CUDA outcome swapped in for every case
where the real CUDA run differs from the real CPU run of its release: the report's
CUDA-vs-CPU and change sections see realistic differences.  With fewer real releases
than ``--releases``, the newest ones are reused under new version numbers.
Deterministic: the same source gives byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OUTCOME = ("status", "output", "grads", "error", "grad_errors", "warnings", "detail", "stderr")


def _read(path: Path):
    """(first run header, {case id: record}) of a results file in either format."""
    from harness.results import read

    rf = read(path)
    results = {}
    for r in rf.results:
        rec = {k: v for k, v in r.items() if k != "run"}
        results[rec["id"]] = dict(rec)
    return (rf.runs[0] if rf.runs else None), results


def _files(source: Path, device: str) -> list:
    from harness.results import result_files

    return [f for f in result_files([source]) if f.name.split(".")[0] == device]


def _write(path: Path, header: dict, results: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({**header, "cases": len(results)}, sort_keys=True)]
    lines += [json.dumps(r, sort_keys=True) for r in results]
    path.write_text("\n".join(lines) + "\n")


def _relabel(header: dict, version: str) -> dict:
    env = dict(header["env"])
    local = env["torch"].split("+", 1)
    env["torch"] = version + (f"+{local[1]}" if len(local) > 1 else "")
    return {**header, "env": env}


def generate(source: Path, out: Path, releases: int = 24, n_cases: int = 3000) -> dict:
    from harness.versions import release_key, release_of

    files = _files(source, "cpu")
    real = sorted(((release_of(_read(f)[0]["env"]["torch"]), f) for f in files), key=lambda x: release_key(x[0]))
    if not real:
        raise SystemExit(f"no cpu results under {source}")
    loaded = [(rel, *_read(f)) for rel, f in real]
    common = set.intersection(*(set(r) for _, _, r in loaded))
    first_ids = list(loaded[0][2])  # the plan's order
    claims = [i for i in first_ids if i.startswith("claim/") and i in common]
    ids = [i for i in first_ids if not i.startswith("claim/") and i in common][:n_cases]
    # the real CUDA outcome wherever it differs from the CPU of the same release
    cuda_swap, cuda_env = {}, None
    for cuda_file in _files(source, "cuda"):
        _, cpu = _read(next(f for f in _files(source, "cpu") if f.parent == cuda_file.parent))
        cuda_header, cuda = _read(cuda_file)
        cuda_env = cuda_env or cuda_header["env"]
        for cid, rec in cuda.items():
            if cid in cpu and any(rec.get(k) != cpu[cid].get(k) for k in OUTCOME):
                cuda_swap.setdefault(cid, {k: rec[k] for k in OUTCOME if k in rec})
    if out.exists():
        shutil.rmtree(out)
    plan = loaded[:releases]
    newest = list(loaded)
    major, minor = (int(x) for x in loaded[-1][0].split(".")[:2])
    while len(plan) < releases:  # reuse the newest real releases under new versions
        minor += 1
        rel, header, res = newest[-1 - (len(plan) - len(loaded)) % len(newest)]
        plan.append((f"{major}.{minor}", _relabel(header, f"{major}.{minor}.0"), res))
    counts = {"releases": len(plan), "cases": len(ids), "results": 0, "cuda_differs": len(set(cuda_swap) & set(ids))}
    for rel, header, res in plan:
        cpu = [res[i] for i in claims + ids]
        _write(out / rel / "cpu.jsonl", header, cpu)
        env = {
            **header["env"],
            "device": "cuda",
            "cuda_available": True,
            "device_name": (cuda_env or {}).get("device_name", "NVIDIA H200"),
            "cudnn": (cuda_env or {}).get("cudnn"),
            "threads": (cuda_env or {}).get("threads", 16),
        }
        cuda = [{**res[i], **cuda_swap.get(i, {}), "device": "cuda"} for i in ids]
        _write(out / rel / "cuda.jsonl", {**header, "device": "cuda", "env": env}, cuda)
        counts["results"] += len(cpu) + len(cuda)
    return counts


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=str(ROOT / "reports" / "results"))
    ap.add_argument("--out", default=str(ROOT / "build" / "bench" / "synthetic"))
    ap.add_argument("--releases", type=int, default=24)
    ap.add_argument("--cases", type=int, default=3000)
    args = ap.parse_args(argv)
    counts = generate(Path(args.source), Path(args.out), args.releases, args.cases)
    print(f"synthetic results: {counts} -> {args.out}")
    return counts


if __name__ == "__main__":
    main()
