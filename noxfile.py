"""One nox session per PyTorch release, generated from harness/releases.toml.

    nox                      the default set (an old, a mid and the newest release), the report,
                             and the gate: do this machine's results behave as the published ones
    nox -t all               every release 1.6 -> newest, then the report
    nox -t legacy            releases before 1.13
    nox -s "run(torch='2.5')"  one release
    nox -t cuda              CUDA builds on the CUDA device (skipped without a GPU)
    nox -s report            the report of the committed results with this machine's runs in
                             place of theirs (no torch), in build/work/report/
    nox -s gate              this machine's results against reports/baseline.json (drift listed,
                             not failed)
    nox -s publish           put this machine's runs (build/journal) into reports/results and
                             rewrite reports/ and README's findings: the one session that changes
                             the checkout

A plain `nox` writes only below build/ (ignored by git): the checkout stays as it was.

Environment variables:
    HARNESS_TORCH_INDEX   package index for torch (default: the PyTorch CPU index where it is
                          reachable, else PyPI, whose Linux wheels are CUDA builds); torch is
                          pinned to it, every other package comes from PyPI
    HARNESS_DEVICES       devices for run sessions, comma separated (default: auto = cpu [+ cuda])
    HARNESS_WORK          this machine's working folder (default: build/work): its results
                          store (results/) and its report (report/)
    HARNESS_RESULTS       results folder, the store runs pack into (default: $HARNESS_WORK/results)
    HARNESS_JOURNAL       where each run writes its JSON Lines results as it goes (default:
                          build/journal); a session then packs them into the store at
                          HARNESS_RESULTS; when both name one folder they stay JSON Lines (CI jobs)
    HARNESS_REPORT_OUT    folder the report session writes (default: $HARNESS_WORK/report)
    HARNESS_PRUNE         1: remove each environment and its large wheels from the uv cache once
                          its results are written (keeps disk at about one environment); 0: keep
                          them all.  Unset: removed when the nox run selects more release sessions
                          than the default set (`nox -t all`, `-t legacy`, `-t cuda`: one at a time,
                          about 10 GB free is enough), kept otherwise (plain `nox` reruns warm)
    HARNESS_DISK_CHECK=0  skip the free-space check made before each release is installed
    HARNESS_JOBS          workers per run (default: one per core, at most 4; `harness run --jobs`)
Each session's results go to JOURNAL/<release>/<device>.jsonl, then into the store as
RESULTS/<release>/<device>.index (harness.results), replacing only its own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from harness import catalogue  # noqa: E402  (standard library only)

nox.options.default_venv_backend = "uv"
nox.options.reuse_venv = "yes"
nox.options.tags = ["default"]

RELEASES = catalogue.load()
PUBLISHED = ROOT / "reports"  # the published report and its results store (committed)
WORK = Path(os.environ.get("HARNESS_WORK", ROOT / "build" / "work"))  # this machine's (ignored by git)
RESULTS = Path(os.environ.get("HARNESS_RESULTS", WORK / "results"))
JOURNAL = Path(os.environ.get("HARNESS_JOURNAL", ROOT / "build" / "journal"))
REPORT_OUT = Path(os.environ.get("HARNESS_REPORT_OUT", WORK / "report"))
PLAN = ROOT / "build" / "plan.json"
_PLAN_BUILT = False


def _host(session, *args):
    """Run a harness command with the host interpreter (the one running nox)."""
    session.run(sys.executable, "-m", "harness", *args, external=True)


def _plan_key() -> str:
    """What the plan is made from: case and claim files, the harness, NumPy, Python."""
    import hashlib
    from importlib import metadata

    h = hashlib.sha256(f"{sys.version} numpy {metadata.version('numpy')}".encode())
    for path in sorted([*(ROOT / "cases").rglob("*"), *(ROOT / "harness").glob("*.py")]):
        if path.is_file():
            h.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _plan(session) -> Path:
    """Generate every input once (and again only when what it is made from changed);
    every release runs the same plan."""
    global _PLAN_BUILT
    if not _PLAN_BUILT:
        key, stamp = _plan_key(), PLAN.with_suffix(".key")
        if not (PLAN.exists() and stamp.exists() and stamp.read_text() == key):
            _host(session, "plan", "--out", str(PLAN))
            stamp.write_text(key)
        _PLAN_BUILT = True
    return PLAN


def _ensure_bytecode(session, venv_python: str) -> None:
    """Compile the environment's modules once (new environments are compiled by uv at
    install): with PYTHONDONTWRITEBYTECODE set, or a read-only site, every torch import
    would compile its sources again (2-3x its import time)."""
    site = next(Path(session.virtualenv.location).glob("lib/python*/site-packages"), None)
    if site is None or not (site / "torch").is_dir() or (site / "torch" / "__pycache__").is_dir():
        return
    session.run(
        venv_python, "-m", "compileall", "-q", "-j", "0", str(site), external=True, silent=True, success_codes=[0, 1]
    )  # 1: some file that is not Python 3 (a test fixture): not ours to fix


def _reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=10):
            return True
    except Exception:  # noqa: BLE001 - any failure means "not here"
        return False


def _du_mb(*paths) -> float:
    """Disk used by these folders together (hard links between them counted once)."""
    out = subprocess.run(["du", "-smc", *map(str, paths)], capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1].split()[0]) if out.returncode == 0 else float("nan")


def _uv_cache_dir() -> str | None:
    try:
        return subprocess.run(["uv", "cache", "dir"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _prune(session, venv_python: str) -> None:
    """Drop the environment and its big wheels (torch, triton, nvidia-*) from uv's cache."""
    listed = subprocess.run(
        ["uv", "pip", "list", "--python", venv_python, "--format", "json"], capture_output=True, text=True
    )
    names = [p["name"] for p in json.loads(listed.stdout or "[]")]
    big = [n for n in names if n in ("torch", "triton") or n.startswith("nvidia-")]
    if big:
        session.run("uv", "cache", "clean", *big, external=True, silent=True)
    shutil.rmtree(session.virtualenv.location, ignore_errors=True)


# Disk a release's install adds, in MiB (as `du -m`), where its committed timing.json has no
# measured disk_mb.env.  The environment is the figure: uv hard-links it from its cache, so the
# two hold one copy (disk_mb.env_and_cache also counts whatever else the cache already held).
DISK_MB_CUDA = 7000  # PyPI's CUDA builds: the largest measured, torch 2.10's 6,998 MiB (reports/results/2.10)
DISK_MB_CPU = 1000  # CPU-index builds: about 0.2-0.9 GB installed (not measured: that index is unreachable here)
DISK_MARGIN_MB = 1536  # downloads and temporary files: `nox -t all` peaked 8.5 GB above its start (df)
# with 7.3 GB for its largest environment (du)
DISK_CHECK_ENV = "HARNESS_DISK_CHECK"
COMMITTED_RESULTS = ROOT / "reports" / "results"
DEFAULT_SET = [r for r in RELEASES if "default" in r.all_tags]


def _gb(mb: float) -> str:
    return f"{mb * 2**20 / 1e9:.1f} GB"


def _disk_estimate_mb(release: catalogue.Release, index: str, results: Path = COMMITTED_RESULTS) -> float:
    """Disk this release's install adds: its measured environment (disk_mb.env in its
    committed timing.json) where that was measured from the same kind of build (files
    without torch_index were measured from PyPI: this machine cannot reach the CPU index),
    else the declared figure for its kind of build (a CPU index's, or a CUDA build's)."""
    try:
        timing = json.loads((results / release.key / "timing.json").read_text())
    except (OSError, ValueError):
        timing = {}
    measured = (timing.get("disk_mb") or {}).get("env")
    same_kind = catalogue.is_cpu_index(timing.get("torch_index", catalogue.PYPI)) == catalogue.is_cpu_index(index)
    if measured and same_kind:
        return float(measured)
    return DISK_MB_CPU if catalogue.is_cpu_index(index) else DISK_MB_CUDA


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_disk(session, release: catalogue.Release, index: str) -> None:
    """Stop before an install that would not fit, saying what to do: uv running out of space
    half-way through a 3-7 GB CUDA build says only 'No space left on device'.  Checked on
    each filesystem the install writes (the environments' folder and uv's cache: one copy
    each where they differ); an environment that already holds torch is reused, not checked."""
    if os.environ.get(DISK_CHECK_ENV) == "0":
        return
    env = Path(session.virtualenv.location)
    if next(env.glob("lib/python*/site-packages/torch"), None) is not None:
        return
    need = _disk_estimate_mb(release, index) + DISK_MARGIN_MB
    cache = _uv_cache_dir()
    folders = {}
    for folder in [_existing(env.parent)] + ([_existing(Path(cache))] if cache else []):
        folders.setdefault(folder.stat().st_dev, folder)
    for folder in folders.values():
        free = shutil.disk_usage(folder).free / 2**20
        if free < need:
            session.error(
                f"not enough disk for torch {release.torch}: {_gb(free)} free in {folder}, about {_gb(need)} "
                "needed; free some space (old environments in .nox/), set HARNESS_PRUNE=1 to keep one "
                f"environment at a time, or point UV_CACHE_DIR or nox --envdir at a larger disk "
                f"({DISK_CHECK_ENV}=0 skips this check)"
            )


def _release_sessions_selected(session) -> int:
    """How many release sessions (run, cuda) this nox run selected, done or to come.  nox
    has no public API for it: its manifest is read through the session's runner, and where
    that is not there every release is assumed (so environments are removed, not kept)."""
    try:
        manifest = session._runner.manifest
        return sum(f"{kind}(torch='{r.key}')" in manifest for kind in ("run", "cuda") for r in RELEASES)
    except AttributeError:
        return len(RELEASES)


def _prune_after(session) -> bool:
    """Whether this environment is removed once its results are written: as HARNESS_PRUNE
    says (1 or 0); unset, when the run selects more release sessions than the default set,
    so that `nox -t all` holds one environment at a time (every release kept would be
    24 x 3-7 GB) while plain `nox` keeps its three for warm reruns (benchmarks/bench_nox.py)."""
    setting = os.environ.get("HARNESS_PRUNE")
    if setting in ("0", "1"):
        prune = setting == "1"
        if prune:
            session.log("HARNESS_PRUNE=1: this environment is removed after its results")
        return prune
    selected = _release_sessions_selected(session)
    if selected <= len(DEFAULT_SET):
        return False
    session.log(
        f"this run selects {selected} release sessions, more than the default set's {len(DEFAULT_SET)}: "
        "this environment is removed after its results, so one is kept at a time "
        "(set HARNESS_PRUNE=0 to keep them all)"
    )
    return True


def _default_index(session, release: catalogue.Release, cuda: bool) -> str:
    """Where torch comes from: the catalogue entry's or $HARNESS_TORCH_INDEX; otherwise the
    PyTorch CPU index when it can be reached (a CPU build, about 0.2-0.9 GB installed), else
    PyPI (Linux wheels there are CUDA builds: about 3-5 GB per release installed)."""
    if cuda:
        return catalogue.PYPI
    if release.index or os.environ.get(catalogue.INDEX_ENV):
        return catalogue.torch_index(release)
    if sys.platform == "darwin":  # PyPI's macOS wheels are CPU builds, the same as the CPU index's
        return catalogue.PYPI
    global _CPU_REACHABLE
    if _CPU_REACHABLE is None:
        _CPU_REACHABLE = _reachable(catalogue.CPU_INDEX.rstrip("/") + "/torch/")
    if _CPU_REACHABLE:
        return catalogue.CPU_INDEX
    session.warn(
        f"the PyTorch CPU index {catalogue.CPU_INDEX} is not reachable from here: installing PyPI's torch, a CUDA "
        "build (about 3-5 GB per release installed; HARNESS_PRUNE=1 keeps one at a time)"
    )
    return catalogue.PYPI


_CPU_REACHABLE = None  # asked once per nox run


def _release_session(session, release: catalogue.Release, devices: list[str], cuda: bool = False) -> None:
    t0 = time.perf_counter()
    index = _default_index(session, release, cuda)
    if release.torch == "nightly" and not _reachable(index.rstrip("/") + "/torch/"):
        session.skip(f"nightly index {index} is not reachable from here")
    # torch pinned to its index (uv's [tool.uv.sources] + explicit index), the rest from PyPI
    project = ROOT / "build" / "envs" / release.key / "pyproject.toml"
    project.parent.mkdir(parents=True, exist_ok=True)
    project.write_text(catalogue.environment_project(release, index))
    session.log(
        f"torch {release.torch} from {index}" + ("" if index == catalogue.PYPI else "; other packages from PyPI")
    )
    prune = _prune_after(session)
    _check_disk(session, release, index)
    session.install("-r", str(project), "--compile-bytecode", *(["--prerelease=allow"] if release.pre else []))
    venv_python = str(Path(session.virtualenv.location) / "bin" / "python")
    version = subprocess.run(
        [venv_python, "-c", "from importlib.metadata import version; print(version('torch'))"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    problem = catalogue.build_problem(version, release, index, cuda=cuda)
    if problem:
        session.error(f"{problem} (environment {session.virtualenv.location})")
    session.log(f"installed torch {version}")
    _ensure_bytecode(session, venv_python)
    install_s = time.perf_counter() - t0
    plan = _plan(session)
    out_dir = RESULTS / release.key
    journal = JOURNAL / release.key
    timing = {
        "release": release.key,
        "torch": release.torch,
        "python": release.python,
        "install_seconds": round(install_s, 1),
        "torch_index": index,  # which kind of build disk_mb measured (_disk_estimate_mb)
    }
    if prune:  # full-history mode: measure the disk this environment holds with the cache
        cache = _uv_cache_dir()
        env_dir = session.virtualenv.location
        timing["disk_mb"] = {"env": _du_mb(env_dir), "uv_cache": _du_mb(cache), "env_and_cache": _du_mb(env_dir, cache)}
    t1 = time.perf_counter()
    device_args = [arg for d in devices for arg in ("--device", d)]
    _host(
        session,
        "run",
        "--plan",
        str(plan),
        "--python",
        venv_python,
        *device_args,
        "--out",
        str(journal / "{device}.jsonl"),
        *session.posargs,
    )
    timing["run_seconds"] = round(time.perf_counter() - t1, 1)
    timing["devices"] = sorted(p.stem for p in journal.glob("*.jsonl"))
    if journal.resolve() != out_dir.resolve():  # into the store: each outcome once, an index per device
        _host(session, "store", "pack", *map(str, sorted(journal.glob("*.jsonl"))), "--into", str(out_dir))
    timing["total_seconds"] = round(time.perf_counter() - t0, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "timing.json").write_text(json.dumps(timing, indent=1, sort_keys=True) + "\n")
    if prune:
        _prune(session, venv_python)


_FOUND = {v: catalogue.find_interpreter(v) for v in sorted({r.python for r in RELEASES})}  # once per version
_INTERPRETERS = {r.key: _FOUND[r.python] for r in RELEASES}
for _exe in _FOUND.values():  # pyenv's interpreters are not on PATH: appended, so "3.8" finds python3.8
    if _exe and str(Path(_exe).parent) not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.environ.get("PATH", "") + os.pathsep + str(Path(_exe).parent)


def _params(tags_for, releases=RELEASES):
    """(python, torch) per release; python is the catalogue's version string ('3.8', so
    that `nox -p 3.8` selects), or False when no interpreter for it is found (the session
    then says what to install)."""
    return [
        nox.param(r.python if _INTERPRETERS[r.key] else False, r.key, id=f"torch='{r.key}'", tags=tags_for(r))
        for r in releases
    ]


def _release(session, key) -> catalogue.Release:
    rel = next(r for r in RELEASES if r.key == key)
    if _INTERPRETERS[key] is None:
        session.error(catalogue.missing_interpreter_message(rel.python))
    return rel


def _devices() -> list[str]:
    return [d.strip() for d in os.environ.get("HARNESS_DEVICES", "auto").split(",") if d.strip()]


@nox.session
@nox.parametrize("python,torch", _params(lambda r: list(r.all_tags)))
def run(session, torch):
    """Install one torch release (Python from the catalogue) and run the case matrix on it."""
    _release_session(session, _release(session, torch), _devices())


@nox.session
@nox.parametrize("python,torch", _params(lambda r: ["cuda"], [r for r in RELEASES if r.torch != "nightly"]))
def cuda(session, torch):
    """Run one release's CUDA build (PyPI's Linux wheels) on the GPU; skipped without one."""
    rel = _release(session, torch)
    if shutil.which("nvidia-smi") is None:
        session.skip("no NVIDIA GPU on this machine (nvidia-smi not found)")
    _release_session(session, rel, ["cuda"], cuda=True)  # CUDA wheels come from PyPI


def report_inputs(published: Path, local: Path) -> list[str]:
    """The results files a local report reads: the published store's, where this machine
    has no run of the same release and device, then this machine's (``local``)."""
    from harness.results import result_files

    mine = result_files([local]) if local.exists() and local.resolve() != published.resolve() else []
    ran = {(p.parent.name, p.name.split(".")[0]) for p in mine}  # (release, device)
    theirs = [p for p in result_files([published]) if (p.parent.name, p.name.split(".")[0]) not in ran]
    return [str(p) for p in [*theirs, *mine]]


@nox.session(python=False, tags=["default", "all"])
def report(session):
    """The report (Markdown, HTML, JSON) of the published results with this machine's runs in
    place of theirs, in HARNESS_REPORT_OUT (build/work/report); needs no torch.  Writing
    reports/ itself is `nox -s publish`'s."""
    if REPORT_OUT.resolve() == PUBLISHED.resolve():
        session.error("HARNESS_REPORT_OUT is the published reports/: use `nox -s publish` to rewrite it")
    _host(session, "report", "--results", *report_inputs(PUBLISHED / "results", RESULTS), "--out", str(REPORT_OUT))
    session.log(f"report: {REPORT_OUT / 'index.html'} (publish this machine's runs with `nox -s publish`)")


@nox.session(python=False)
def publish(session):
    """Put this machine's runs (the JSON Lines journals under HARNESS_JOURNAL) into the
    published store reports/results, one release and device at a time, with their timing,
    then rewrite reports/ and README's findings from it.  The same journals published
    again write the same bytes: `git status` shows only what the runs changed."""
    journals = sorted(JOURNAL.glob("*/*.jsonl"))
    if not journals:
        session.error(f"nothing to publish: no runs under {JOURNAL} (run `nox` first)")
    for folder in sorted({p.parent for p in journals}):
        store = PUBLISHED / "results" / folder.name
        _host(session, "store", "pack", *map(str, sorted(folder.glob("*.jsonl"))), "--into", str(store))
        timing = RESULTS / folder.name / "timing.json"
        if timing.exists() and timing.resolve() != (store / "timing.json").resolve():
            shutil.copyfile(timing, store / "timing.json")
    _host(
        session,
        "report",
        "--results",
        str(PUBLISHED / "results"),
        "--out",
        str(PUBLISHED),
        "--readme",
        str(ROOT / "README.md"),
    )


@nox.session(python=False, tags=["default", "all"])
def gate(session):
    """The results against the published baseline: says whether this machine's results
    behave as the published ones (value drift within tolerance is listed, not failed)."""
    baseline = ROOT / "reports" / "baseline.json"
    if not baseline.exists():
        session.skip(f"no published baseline at {baseline}")
    if not RESULTS.exists():
        session.skip(f"no results of this machine in {RESULTS} yet: run the release sessions first (`nox`)")
    cmd = [sys.executable, "-m", "harness", "gate", "--baseline", str(baseline), "--results", str(RESULTS)]
    session.log(" ".join(cmd))
    code = subprocess.run(cmd, cwd=ROOT).returncode
    if code == 0:
        session.log("this machine's results behave as the published report's")
    elif code == 1:
        session.warn("this machine's results behave differently from the published report's: the cases are above")
    else:
        session.error(f"the gate could not compare (exit {code})")
