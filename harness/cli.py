"""Command line: ``python -m harness {run,evaluate,...}``.

Exit codes (all commands):
  0  done (a run that recorded crashes or timeouts still completed)
  1  evaluate --fail-on / gate: the checked condition was met
  2  invalid input: a malformed case file, results file or argument
  3  the torch environment cannot run the worker (torch missing, CUDA unavailable)
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import signal
import sys
import time
from pathlib import Path

EXIT_OK, EXIT_CONDITION, EXIT_INPUT, EXIT_ENV = 0, 1, 2, 3
EPILOG = __doc__.split("\n\n", 1)[1]


GATE_WORDS = """what the gate says, per case of a release/device block:
  verdict changed     its verdict differs from the baseline's (pass -> crash, ...): fails the gate
  behaviour changed   same verdict, but what a phase did differs (element classes, exception or its
                      message, warnings): fails the gate
  missing             the baseline has the case, the current results do not: fails the gate
  drifted             same behaviour, other values, within the dtype's tolerance: listed, fails only
                      with --exact ("value drifted (VERDICT)")
  stale               made from other inputs on one side: not compared (run it again)
  recorded before the double backward was
                      a result without the second-order phases on one side: not compared
  not checked         a baseline block with no current results
  new release         a block the baseline lacks: compared with the release before it
"""


def _err(msg):
    print(f"error: {msg}", file=sys.stderr)


def _selected(case_id, filters) -> bool:
    return any(fnmatch.fnmatchcase(case_id, f) or f in case_id for f in filters)


def _load_cases(paths, filters=()):
    from .cases import load_cases

    cases = load_cases(paths or None)
    return [c for c in cases if _selected(c.id, filters)] if filters else cases


def _build_plan(args) -> tuple:
    """(plan, cases) for the selected cases; the published claims' snippets and the behaviour
    changes' reproductions ride along unless case files or filters narrow the run."""
    from . import claims, reproductions
    from .runner import build_plan

    narrowed = args.cases or args.filter
    extra = [] if narrowed else claims.plan_entries(claims.load()[0]) + reproductions.plan_entries(reproductions.load())
    cases = _load_cases(args.cases, args.filter)
    return build_plan(cases, extra_entries=extra), cases


def cmd_plan(args) -> int:
    """Expand the case files and generate every input once, for runs elsewhere."""
    import json

    plan, _ = _build_plan(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(plan))
    print(f"plan: {len(plan['cases'])} cases -> {out}")
    return EXIT_OK


def cmd_schema(args) -> int:
    """Write cases/schema.json with the axes declared in harness/axes.py."""
    from .cases import SCHEMA_PATH, write_schema

    write_schema(Path(args.out) if args.out else SCHEMA_PATH)
    print(f"schema: {args.out or SCHEMA_PATH}")
    return EXIT_OK


def cmd_reproductions(args) -> int:
    """Write the behaviour changes' reproduction snippets (harness.reproductions) from the results."""
    from . import reproductions
    from .report import load, reproduction_snippets

    d = load(args.results, args.cases)
    snippets = reproduction_snippets(d)
    out = Path(args.out) if args.out else reproductions.PATH
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(reproductions.dumps(snippets))
    print(f"reproductions: {len(snippets)} snippets -> {out}")
    return EXIT_OK


def _python_problem(python) -> str | None:
    """Why ``--python`` cannot be the torch environment's interpreter (None: it can, as far
    as can be told before it runs torch): missing, a directory, not executable, not a Python."""
    import shutil
    import subprocess

    if python is None:
        return None
    found = shutil.which(python) if os.sep not in python else python
    path = Path(found or python)
    if not path.exists():
        return f"--python {python}: no such file"
    if path.is_dir():
        return f"--python {python}: a directory, not a Python interpreter"
    if not os.access(path, os.X_OK):
        return f"--python {python}: not executable"
    try:
        proc = subprocess.run(
            [str(path), "-c", "import sys; print(sys.version_info[0])"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"--python {python}: cannot be run ({exc})"
    if proc.returncode != 0 or proc.stdout.strip() != "3":
        return f"--python {python}: not a Python 3 interpreter"
    return None


def _out_problem(out) -> str | None:
    """Why the results cannot be written where ``--out`` says (None: they can)."""
    target = Path(str(out).replace("{device}", "cpu"))
    if target.is_dir():
        return f"--out {out}: {target} is a folder; name a results file (e.g. {target / 'results-{device}.jsonl'})"
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"--out {out}: cannot make the folder {folder}: {exc.strerror or exc}"
    if not os.access(folder, os.W_OK):
        return f"--out {out}: the folder {folder} cannot be written"
    return None


def cmd_run(args) -> int:
    import json

    from .evaluate import summarizer
    from .runner import RunnerError, check_protocol, run_devices

    if args.plan:  # prebuilt plan: no case files, NumPy or YAML needed here
        try:
            plan = json.loads(Path(args.plan).read_text(encoding="utf-8"))
            if not isinstance(plan, dict) or not isinstance(plan.get("cases"), list):
                raise ValueError("not a plan (an object with a 'cases' list)")
        except (OSError, ValueError) as exc:
            _err(f"--plan {args.plan}: cannot be used: {getattr(exc, 'strerror', None) or exc}")
            return EXIT_INPUT
        try:
            check_protocol(plan)  # before any worker (and its torch) starts
        except RunnerError as exc:
            _err(f"{args.plan}: {exc}")
            return EXIT_ENV
        if args.filter:
            plan["cases"] = [e for e in plan["cases"] if _selected(e["id"], args.filter)]
        cases = plan["cases"]
        try:  # the case files, for the checks of summarised tensors (judged stale without them)
            by_id = {c.id: c for c in _load_cases(args.cases)}
        except Exception:  # noqa: BLE001 - a GPU host without NumPy or the case files
            by_id = {}
    else:
        plan, selected = _build_plan(args)
        cases = plan["cases"]
        by_id = {c.id: c for c in selected}
    if not cases:
        _err("no cases selected")
        return EXIT_INPUT
    problem = _python_problem(args.python) or _out_problem(args.out)  # before any worker starts
    if problem:
        _err(problem)
        return EXIT_INPUT
    python = args.python or sys.executable
    jobs, given = args.jobs, str(args.jobs)
    if jobs is None and os.environ.get("HARNESS_JOBS", "").strip():
        given = os.environ["HARNESS_JOBS"].strip()
        jobs = int(given) if given.isdigit() else 0
    if jobs is not None and jobs < 1:
        _err(f"--jobs / HARNESS_JOBS: expected a whole number >= 1, got {given!r}")
        return EXIT_INPUT
    progress = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    try:
        summaries = run_devices(
            plan,
            args.out,
            devices=args.device or ["auto"],
            python=python,
            timeout=args.timeout,
            resume=args.resume,
            progress=progress,
            jobs=jobs,
            summarize=summarizer(by_id),
        )
    except RunnerError as exc:
        _err(str(exc))
        return EXIT_ENV
    torch_version = next((s.env["torch"] for s in reversed(summaries) if "torch" in s.env), "?")
    total = {k: sum(getattr(s, k) for s in summaries) for k in ("finished", "crashed", "timed_out", "skipped")}
    print(
        f"run: torch {torch_version} on {', '.join(s.device for s in summaries)}: {total['finished']} finished, "
        f"{total['crashed']} crash, {total['timed_out']} timeout, {total['skipped']} resumed "
        f"in {time.perf_counter() - t0:.1f}s -> {args.out}"
    )
    return EXIT_OK


def cmd_evaluate(args) -> int:
    from tabulate import tabulate

    from .evaluation import verdict_frame

    frame = verdict_frame(args.results, args.cases)
    if frame.empty:
        unknown = frame.attrs.get("unknown_ids", 0)
        if unknown:
            _err(
                f"{unknown} results, none of whose case ids are in the case files "
                f"({', '.join(args.cases) if args.cases else 'cases/*.yaml'}): pass the case files they were run from "
                "with --cases"
            )
        else:
            _err("no results to evaluate")
        return EXIT_INPUT
    counts = frame.pivot_table(index=["torch", "device"], columns="verdict", values="id", aggfunc="count", fill_value=0)
    counts["pitfalls"] = frame.groupby(["torch", "device"])["pitfall"].sum()
    counts["total"] = frame.groupby(["torch", "device"]).size()
    print(tabulate(counts.reset_index(), headers="keys", tablefmt="github", showindex=False))
    if frame.attrs.get("unknown_ids"):
        print(f"note: {frame.attrs['unknown_ids']} results name cases not in the case files (skipped)", file=sys.stderr)
    if args.show:
        from .report.text import visible

        shown = frame[frame["verdict"].isin(args.show)].assign(detail=lambda f: f["detail"].map(visible))
        cols = ["torch", "device", "id", "verdict", "detail"]
        print(tabulate(shown[cols].values.tolist(), headers=cols, tablefmt="github", maxcolwidths=[None] * 4 + [80]))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        flat = frame.drop(columns=["output"])
        if out.suffix == ".csv":
            flat.to_csv(out, index=False)
        else:
            flat.to_json(out, orient="records", indent=1)
    total = frame["verdict"].value_counts()
    print(
        "evaluate: "
        + ", ".join(f"{k} {v}" for k, v in sorted(total.items()))
        + f"; {int(frame['pitfall'].sum())} pitfalls; {len(frame)} results"
    )
    if args.fail_on and frame["verdict"].isin(args.fail_on).any():
        return EXIT_CONDITION
    return EXIT_OK


def cmd_report(args) -> int:
    """Evaluate every results file and write README.md, index.html and summary.json."""
    from .evaluation import quiet_gc
    from .report import write_report

    t0 = time.perf_counter()
    # Millions of objects kept to the end (rows, outputs, text): cyclic GC would only scan them
    # again and again, here and in the interpreter's last collection at exit, and free nothing.
    with quiet_gc():
        out = write_report(
            args.results,
            args.out,
            args.cases,
            explanations_path=args.explanations,
            pages_url=args.pages_url,
            commit=args.commit,
        )
        if args.readme:
            import json

            from .report import readme_excerpt, update_readme

            summary = json.loads((Path(args.out) / "summary.json").read_text())
            link = os.path.relpath(Path(args.out) / "README.md", Path(args.readme).parent)
            if not update_readme(args.readme, readme_excerpt(summary, link)):
                _err(f"{args.readme}: no generated findings block to update")
                return EXIT_INPUT
        out["data"].evaluation.save()  # what this report computed (verdicts, references) serves the next one
    d = out["data"]
    pages = [size for name, (_, size) in out["files"].items() if name.startswith("cases/")]
    sizes = ", ".join(f"{name} {size / 1e6:.2f} MB" for name, (_, size) in out["files"].items() if "/" not in name)
    sizes += f", cases/ {len(pages)} pages {sum(pages) / 1e6:.2f} MB"
    print(
        f"report: {len(d.frame)} results, {len(d.data_releases)} releases with results, "
        f"{len(d.behaviour.changes)} behaviour changes -> {args.out} ({sizes}) in {time.perf_counter() - t0:.1f}s"
    )
    for note in d.notes:
        print(f"note: {note}", file=sys.stderr)
    for _, problem in d.explained.refused if d.explained is not None else ():
        print(f"refused explanation: {problem}", file=sys.stderr)
    return EXIT_OK


def cmd_gate(args) -> int:
    """Compare the current results with the baseline (harness.gate); exit 1 on a change."""
    from .evaluation import verdict_frame
    from .gate import (
        BaselineError,
        _sort_key,
        compare,
        format_markdown,
        format_text,
        load_baseline,
        snapshot,
        write_baseline,
    )

    frame = verdict_frame(args.results, args.cases)
    if frame.empty:
        _err(f"no results to gate under {', '.join(map(str, args.results))}")
        return EXIT_INPUT
    current = snapshot(frame)
    baseline_path = Path(args.baseline)
    if args.update_baseline:
        try:
            previous = load_baseline(baseline_path) if baseline_path.exists() else {}
        except BaselineError:
            previous = {}  # a malformed baseline is what --update-baseline repairs
        write_baseline(baseline_path, current)
        dropped = sorted(set(previous) - set(current), key=_sort_key)
        changed = sum(len(r.changes) for r in compare(previous, current) if r.status == "baseline")
        text = (
            f"gate: baseline written: {len(current)} release/device blocks, "
            f"{sum(len(b.cases) for b in current.values())} cases -> {baseline_path}"
        )
        if previous:
            text += f" (replaced {changed} changed case entries"
            text += f"; dropped {', '.join(f'{r}/{d}' for r, d in dropped)})" if dropped else ")"
        print(text)
        if args.markdown:
            Path(args.markdown).write_text(f"## Regression gate: baseline updated\n\n{text[len('gate: ') :]}\n")
        return EXIT_OK
    if baseline_path.is_dir():  # a results folder (the committed store): the baseline derived from it
        baseline = snapshot(verdict_frame([baseline_path], args.cases))
    else:
        try:
            baseline = load_baseline(baseline_path)
        except BaselineError as exc:
            _err(str(exc))
            return EXIT_INPUT
    results = compare(baseline, current, exact=args.exact)
    print(format_text(results, baseline_path, verbose=args.verbose), end="")
    if args.markdown:
        Path(args.markdown).write_text(format_markdown(results, baseline_path))
    return EXIT_CONDITION if any(r.failed for r in results) else EXIT_OK


def cmd_show(args) -> int:
    """Print one recorded result as readable JSON, values included (whatever the format)."""
    import json

    from .results import device_folder, read, result_files
    from .versions import release_of

    root = Path(args.results)
    files = [f for f in result_files([root]) if f.parent.name == args.release]
    files = [f for f in files if f.name.split(".")[0] == device_folder(args.device)]
    if not files:
        _err(f"{root}: no {args.device} results of release {args.release!r}")
        return EXIT_INPUT
    for path in files:
        rf = read(path)
        for rec in rf.results:
            if rec["id"] == args.case_id:
                run = rf.runs[rec["run"]]
                shown = {
                    "file": str(path),
                    "release": release_of(run.get("env", {}).get("torch")),
                    "torch": run.get("env", {}).get("torch"),
                    **{k: v for k, v in rec.items() if k not in ("record", "run")},
                }
                print(json.dumps(shown, indent=1, sort_keys=True))
                return EXIT_OK
    _err(f"{', '.join(map(str, files))}: no result for case {args.case_id!r}")
    return EXIT_INPUT


def cmd_store(args) -> int:
    """Put JSON Lines results into the store (pack), convert a folder of them (migrate), or
    drop outcomes no index refers to (prune)."""
    from . import results

    if args.action == "migrate":
        done = results.migrate(args.paths[0] if args.paths else "reports/results")
        for old, new in done:
            print(f"store: {old} -> {new}")
        print(f"store: {len(done)} files migrated")
        return EXIT_OK
    if args.action == "prune":
        root = args.paths[0] if args.paths else "reports/results"
        print(f"store: {results.prune_outcomes(root)} outcomes no index refers to dropped from {root}")
        return EXIT_OK
    if not args.into or not args.paths:
        _err("store pack: give the JSON Lines results files and --into RELEASE_FOLDER")
        return EXIT_INPUT
    for path in results.result_files(args.paths):
        if results.is_index(path):
            continue
        target = results.pack(path, Path(args.into) / results.index_path_for(path).name)
        print(f"store: {path} -> {target}")
    if not args.keep:
        results.prune_outcomes(Path(args.into).resolve().parent)
    return EXIT_OK


def _results_option(p) -> None:
    """--results, as every command that reads results files takes it."""
    p.add_argument(
        "--results",
        nargs="+",
        default=["reports/results"],
        metavar="PATH",
        help="results files or folders (default: %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    from .verdicts import NAMES as VERDICTS

    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description="KLDivLoss cross-version regression harness",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "run",
        help="run the case matrix on a torch environment -> JSONL results",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--cases", nargs="+", metavar="YAML", help="case files (default: cases/*.yaml)")
    p.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="PATTERN",
        help="only case ids matching this glob or substring (repeatable)",
    )
    p.add_argument("--plan", metavar="JSON", help="run a plan made by 'python -m harness plan' instead of --cases")
    p.add_argument(
        "--device",
        action="append",
        metavar="DEV",
        help="cpu, cuda, cuda:N or auto (= cpu, plus cuda when available; default)",
    )
    p.add_argument("--python", metavar="EXE", help="interpreter of the torch environment (default: this one)")
    p.add_argument(
        "--out",
        default="results-{device}.jsonl",
        help="results file; '{device}' is replaced by the device (default: %(default)s)",
    )
    p.add_argument("--timeout", type=float, default=60.0, help="per-case timeout in seconds (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="keep results already in the file, run the rest")
    p.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="workers per device (default: $HARNESS_JOBS, else one per core on the CPU, at most "
        "4, and one per 500 cases; 1 on a GPU)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("reproductions", help="write the behaviour changes' reproduction snippets for the plan")
    _results_option(p)
    p.add_argument("--cases", nargs="+", metavar="YAML", help="case files (default: cases/*.yaml)")
    p.add_argument("--out", help="where to write them (default: cases/reproductions/reproductions.json)")
    p.set_defaults(func=cmd_reproductions)

    p = sub.add_parser("schema", help="write the case-file schema (cases/schema.json) from the declared axes")
    p.add_argument("--out", help="where to write it (default: cases/schema.json)")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("plan", help="expand the case files and generate all inputs into one JSON plan")
    p.add_argument("--cases", nargs="+", metavar="YAML", help="case files (default: cases/*.yaml)")
    p.add_argument("--filter", action="append", default=[], metavar="PATTERN", help="only matching case ids")
    p.add_argument("--out", default="build/plan.json", help="plan file (default: %(default)s)")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser(
        "evaluate",
        help="results -> verdicts table and counts",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("results", nargs="*", default=["reports/results"], help="results files or folders")
    p.add_argument("--cases", nargs="+", metavar="YAML", help="case files (default: cases/*.yaml)")
    p.add_argument("--show", nargs="+", choices=VERDICTS, metavar="VERDICT", help="list the cases with these verdicts")
    p.add_argument("--out", help="write every verdict row to this .csv or .json file")
    p.add_argument("--fail-on", nargs="+", choices=VERDICTS, metavar="VERDICT", help="exit 1 if any result has these")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "report",
        help="results -> reports/README.md, index.html and summary.json",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _results_option(p)
    p.add_argument("--out", default="reports", help="output folder (default: %(default)s)")
    p.add_argument("--cases", nargs="+", metavar="YAML", help="case files (default: cases/*.yaml)")
    p.add_argument("--readme", metavar="FILE", help="also rewrite the generated findings block of this README")
    p.add_argument(
        "--explanations", metavar="YAML", help="explanations of behaviour changes (default: cases/explanations/...)"
    )
    p.add_argument(
        "--pages-url",
        default=os.environ.get("HARNESS_PAGES_URL") or None,
        metavar="URL",
        help="where the report is published (GitHub Pages), linked from README.md (default: $HARNESS_PAGES_URL)",
    )
    p.add_argument(
        "--commit",
        default=os.environ.get("HARNESS_RESULTS_COMMIT") or None,
        metavar="SHA",
        help="the results' commit, shown in the report's origin beside the results' digest "
        "(default: $HARNESS_RESULTS_COMMIT; CI passes its commit)",
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "gate",
        help="compare results with a committed baseline; exit 1 listing changed cases",
        epilog=GATE_WORDS + "\n" + EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--baseline",
        default="reports/baseline.json",
        help="baseline JSON, or a results folder to derive it from, e.g. the committed reports/results "
        "(then drift is sized in ulps) (default: %(default)s)",
    )
    p.add_argument("--verbose", action="store_true", help="list every case that drifted within tolerance")
    _results_option(p)
    p.add_argument("--cases", nargs="+", metavar="YAML", help="case files (default: cases/*.yaml)")
    p.add_argument("--update-baseline", action="store_true", help="rewrite the baseline from the current results")
    p.add_argument(
        "--exact", action="store_true", help="value drift within tolerance fails too (default: listed as drift only)"
    )
    p.add_argument("--markdown", metavar="FILE", help="also write the summary as Markdown (e.g. $GITHUB_STEP_SUMMARY)")
    p.set_defaults(func=cmd_gate)

    p = sub.add_parser("show", help="print one recorded result as readable JSON, values included")
    p.add_argument("release", help="the release folder, e.g. 2.5")
    p.add_argument("case_id", help="the case id")
    p.add_argument("--device", default="cpu", help="device (default: %(default)s)")
    p.add_argument("--results", default="reports/results", help="results folder (default: %(default)s)")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser(
        "store",
        help="the results store: pack JSON Lines results into it, migrate a folder, prune unused outcomes",
    )
    p.add_argument("action", choices=("pack", "migrate", "prune"))
    p.add_argument("paths", nargs="*", help="pack: results files or folders; migrate, prune: the store folder")
    p.add_argument("--into", metavar="FOLDER", help="pack: the release folder in the store (reports/results/2.5)")
    p.add_argument("--keep", action="store_true", help="pack: keep outcomes that no index refers to any more")
    p.set_defaults(func=cmd_store)
    return parser


def main(argv=None) -> int:
    from .cases import CaseFileError
    from .results import ResultsError

    args = build_parser().parse_args(argv)

    def _terminate(signum, frame):
        raise KeyboardInterrupt  # SIGTERM: the runner's cleanup kills the worker, results are kept

    signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.func(args)
    except (CaseFileError, ResultsError, FileNotFoundError) as exc:
        _err(str(exc))
        return EXIT_INPUT
    except KeyboardInterrupt:
        _err("interrupted; finished results are kept (rerun with --resume)")
        return 130
