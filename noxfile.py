"""One nox session per PyTorch release, generated from harness/releases.toml.

    nox                      the default set (an old, a mid and the newest release), the report,
                             and the gate: do this machine's results behave as the published ones
    nox -t all               every release 1.6 -> newest, then the report
    nox -t legacy            releases before 1.13
    nox -s "run(torch='2.5')"  one release
    nox -t cuda              CUDA builds on the CUDA device (skipped without a GPU)
    nox -s report            rebuild reports/ from the committed raw results (no torch)
    nox -s gate              the results against reports/baseline.json (drift listed, not failed)

Environment variables:
    HARNESS_TORCH_INDEX   package index for torch (default: the PyTorch CPU index where it is
                          reachable, else PyPI, whose Linux wheels are CUDA builds); torch is
                          pinned to it, every other package comes from PyPI
    HARNESS_DEVICES       devices for run sessions, comma separated (default: auto = cpu [+ cuda])
    HARNESS_RESULTS       results folder (default: reports/results)
    HARNESS_REPORT_OUT    folder the report session writes (default: reports)
    HARNESS_PRUNE=1       remove each environment and its large wheels from the uv cache once
                          its results are written (keeps disk at about one environment)
    HARNESS_JOBS          workers per run (default: one per core, at most 4; `harness run --jobs`)
Each session's results go to RESULTS/<release>/<device>.jsonl, replacing only its own.
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
RESULTS = Path(os.environ.get("HARNESS_RESULTS", ROOT / "reports" / "results"))
REPORT_OUT = Path(os.environ.get("HARNESS_REPORT_OUT", ROOT / "reports"))
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


def _default_index(session, release: catalogue.Release, cuda: bool) -> str:
    """Where torch comes from: the catalogue entry's or $HARNESS_TORCH_INDEX; otherwise the
    PyTorch CPU index when it can be reached (a CPU build, about 0.2-0.9 GB installed), else
    PyPI (Linux wheels there are CUDA builds: about 3-5 GB per release installed)."""
    if cuda:
        return catalogue.PYPI
    if release.index or os.environ.get(catalogue.INDEX_ENV):
        return catalogue.torch_index(release)
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
    timing = {
        "release": release.key,
        "torch": release.torch,
        "python": release.python,
        "install_seconds": round(install_s, 1),
    }
    prune = os.environ.get("HARNESS_PRUNE") == "1"
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
        str(out_dir / "{device}.jsonl"),
        *session.posargs,
    )
    timing["run_seconds"] = round(time.perf_counter() - t1, 1)
    timing["devices"] = sorted(p.stem for p in out_dir.glob("*.jsonl"))
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


@nox.session(python=False, tags=["default", "all"])
def report(session):
    """Evaluate every results file and write reports/ (Markdown, HTML, JSON); needs no torch."""
    readme = ["--readme", str(ROOT / "README.md")] if REPORT_OUT.resolve() == (ROOT / "reports").resolve() else []
    _host(session, "report", "--results", str(RESULTS), "--out", str(REPORT_OUT), *readme)


@nox.session(python=False, tags=["default", "all"])
def gate(session):
    """The results against the published baseline: says whether this machine's results
    behave as the published ones (value drift within tolerance is listed, not failed)."""
    baseline = ROOT / "reports" / "baseline.json"
    if not baseline.exists():
        session.skip(f"no published baseline at {baseline}")
    cmd = [sys.executable, "-m", "harness", "gate", "--baseline", str(baseline), "--results", str(RESULTS)]
    session.log(" ".join(cmd))
    code = subprocess.run(cmd, cwd=ROOT).returncode
    if code == 0:
        session.log("this machine's results behave as the published report's")
    elif code == 1:
        session.warn("this machine's results behave differently from the published report's: the cases are above")
    else:
        session.error(f"the gate could not compare (exit {code})")
