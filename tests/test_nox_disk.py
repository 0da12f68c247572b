"""The nox sessions' disk check and their default pruning, on noxfile.py's helpers with a
fake session (no torch, no network, no nox session run)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import catalogue
from tests.conftest import ROOT

GB = 1e9
MB = 2**20


@pytest.fixture(scope="module")
def noxfile():
    """noxfile.py as a module (importing it appends interpreter folders to PATH: restored)."""
    path = os.environ.get("PATH", "")
    spec = importlib.util.spec_from_file_location("noxfile_under_test", ROOT / "noxfile.py")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    finally:
        os.environ["PATH"] = path
    return module


class Stop(Exception):
    """What session.error and session.skip raise here (nox raises its own)."""


class FakeSession:
    """Records what a session says; `selected` is the signatures nox selected for this run."""

    def __init__(self, location: Path, selected=None):
        location.mkdir(parents=True, exist_ok=True)
        self.virtualenv = SimpleNamespace(location=str(location))
        if selected is not None:
            self._runner = SimpleNamespace(manifest=set(selected))
        self.logs, self.warnings, self.errors, self.installs = [], [], [], []

    def log(self, msg):
        self.logs.append(msg)

    def warn(self, msg):
        self.warnings.append(msg)

    def error(self, msg):
        self.errors.append(msg)
        raise Stop(msg)

    def skip(self, msg):
        raise Stop(msg)

    def install(self, *args):
        self.installs.append(args)


def _release(noxfile, key):
    return next(r for r in noxfile.RELEASES if r.key == key)


def _timing(results: Path, key: str, **fields) -> None:
    (results / key).mkdir(parents=True)
    (results / key / "timing.json").write_text(json.dumps({"release": key, **fields}))


# (a) the estimate


def test_estimate_reads_the_measured_environment(noxfile, tmp_path):
    rel = _release(noxfile, "2.5")
    _timing(tmp_path, rel.key, disk_mb={"env": 4321.0, "uv_cache": 9000.0, "env_and_cache": 9100.0})
    assert noxfile._disk_estimate_mb(rel, catalogue.PYPI, tmp_path) == 4321.0
    # figures without torch_index were measured from PyPI's CUDA builds: not a CPU build's
    assert noxfile._disk_estimate_mb(rel, catalogue.CPU_INDEX, tmp_path) == noxfile.DISK_MB_CPU


def test_estimate_uses_a_measurement_of_the_same_kind_of_build(noxfile, tmp_path):
    rel = _release(noxfile, "2.5")
    _timing(tmp_path, rel.key, torch_index=catalogue.CPU_INDEX, disk_mb={"env": 800.0})
    assert noxfile._disk_estimate_mb(rel, catalogue.CPU_INDEX + "/", tmp_path) == 800.0
    assert noxfile._disk_estimate_mb(rel, catalogue.PYPI, tmp_path) == noxfile.DISK_MB_CUDA


@pytest.mark.parametrize("content", [None, "{not json", json.dumps({"release": "2.5", "install_seconds": 3})])
def test_estimate_falls_back_to_the_default_per_kind_of_build(noxfile, tmp_path, content):
    rel = _release(noxfile, "2.5")
    if content is not None:
        (tmp_path / rel.key).mkdir()
        (tmp_path / rel.key / "timing.json").write_text(content)
    assert noxfile._disk_estimate_mb(rel, catalogue.PYPI, tmp_path) == noxfile.DISK_MB_CUDA
    assert noxfile._disk_estimate_mb(rel, catalogue.CPU_INDEX, tmp_path) == noxfile.DISK_MB_CPU
    assert noxfile.DISK_MB_CPU < noxfile.DISK_MB_CUDA


def test_every_release_needs_at_most_about_10_gb(noxfile):
    """The committed measurements (and the defaults) keep the whole matrix, one environment
    at a time, under about 10 GB free."""
    for rel in noxfile.RELEASES:
        index = rel.index or catalogue.PYPI
        need = (noxfile._disk_estimate_mb(rel, index) + noxfile.DISK_MARGIN_MB) * MB
        assert need <= 10 * GB, rel.key
    measured = json.loads((ROOT / "reports" / "results" / "2.10" / "timing.json").read_text())["disk_mb"]["env"]
    assert noxfile._disk_estimate_mb(_release(noxfile, "2.10"), catalogue.PYPI) == measured


# (b) the check


@pytest.fixture
def disk(noxfile, tmp_path, monkeypatch):
    """A fake free space for every folder (calls recorded), uv's cache under tmp_path."""
    monkeypatch.delenv(noxfile.DISK_CHECK_ENV, raising=False)
    monkeypatch.setattr(noxfile, "_uv_cache_dir", lambda: str(tmp_path / "uv-cache" / "not-made-yet"))
    state = SimpleNamespace(free=100 * GB, asked=[])

    def disk_usage(path):
        state.asked.append(Path(path))
        return SimpleNamespace(total=200 * GB, used=200 * GB - state.free, free=state.free)

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    return state


def test_check_stops_with_one_clear_line_when_the_release_does_not_fit(noxfile, tmp_path, disk):
    rel = _release(noxfile, "2.10")
    session = FakeSession(tmp_path / ".nox" / "run-torch-2-10")
    disk.free = 3 * GB
    with pytest.raises(Stop):
        noxfile._check_disk(session, rel, catalogue.PYPI)
    (msg,) = session.errors
    need = (noxfile._disk_estimate_mb(rel, catalogue.PYPI) + noxfile.DISK_MARGIN_MB) * MB
    assert "\n" not in msg
    assert "torch 2.10.0" in msg and "3.0 GB free" in msg and f"about {need / GB:.1f} GB needed" in msg
    assert str(tmp_path / ".nox") in msg
    for advice in ("HARNESS_PRUNE=1", "UV_CACHE_DIR", "--envdir", "HARNESS_DISK_CHECK=0"):
        assert advice in msg
    # the environments' folder and uv's cache are on one filesystem here: asked once
    assert disk.asked == [tmp_path / ".nox"]


def test_check_passes_when_the_release_fits(noxfile, tmp_path, disk):
    rel = _release(noxfile, "2.10")
    need = (noxfile._disk_estimate_mb(rel, catalogue.PYPI) + noxfile.DISK_MARGIN_MB) * MB
    disk.free = need + 1
    session = FakeSession(tmp_path / ".nox" / "run-torch-2-10")
    noxfile._check_disk(session, rel, catalogue.PYPI)
    assert session.errors == [] and disk.asked
    disk.free = need - MB
    with pytest.raises(Stop):
        noxfile._check_disk(session, rel, catalogue.PYPI)


def test_a_cpu_build_needs_less(noxfile, tmp_path, disk):
    disk.free = 3 * GB  # too little for a CUDA build, enough for a CPU one
    session = FakeSession(tmp_path / ".nox" / "run-torch-2-5")
    noxfile._check_disk(session, _release(noxfile, "2.5"), catalogue.CPU_INDEX)
    assert session.errors == []


def test_check_is_skipped_with_harness_disk_check_0(noxfile, tmp_path, disk, monkeypatch):
    monkeypatch.setenv("HARNESS_DISK_CHECK", "0")
    disk.free = 0
    session = FakeSession(tmp_path / ".nox" / "run-torch-2-10")
    noxfile._check_disk(session, _release(noxfile, "2.10"), catalogue.PYPI)
    assert session.errors == [] and disk.asked == []


def test_check_is_skipped_for_a_reused_environment(noxfile, tmp_path, disk):
    env = tmp_path / ".nox" / "run-torch-2-10"
    (env / "lib" / "python3.12" / "site-packages" / "torch").mkdir(parents=True)
    disk.free = 0
    session = FakeSession(env)
    noxfile._check_disk(session, _release(noxfile, "2.10"), catalogue.PYPI)
    assert session.errors == [] and disk.asked == []


def test_release_session_checks_before_it_installs(noxfile, tmp_path, disk, monkeypatch):
    monkeypatch.setenv(catalogue.INDEX_ENV, catalogue.PYPI)  # no look for the CPU index
    monkeypatch.setattr(noxfile, "ROOT", tmp_path)  # build/envs/<release>/pyproject.toml goes here
    monkeypatch.delenv("HARNESS_PRUNE", raising=False)
    disk.free = 1 * GB
    session = FakeSession(tmp_path / ".nox" / "run-torch-2-10", selected=[])
    with pytest.raises(Stop, match="not enough disk for torch 2.10.0"):
        noxfile._release_session(session, _release(noxfile, "2.10"), ["cpu"])
    assert session.installs == []


# (c) the default pruning


def _signatures(releases, kinds=("run",)):
    return [f"{kind}(torch='{r.key}')" for kind in kinds for r in releases] + ["report", "gate"]


@pytest.fixture
def no_prune_setting(monkeypatch):
    monkeypatch.delenv("HARNESS_PRUNE", raising=False)


def test_the_default_set_keeps_its_environments(noxfile, tmp_path, no_prune_setting):
    session = FakeSession(tmp_path / "env", selected=_signatures(noxfile.DEFAULT_SET))
    assert noxfile._prune_after(session) is False and session.logs == []
    one = FakeSession(tmp_path / "env", selected=_signatures(noxfile.RELEASES[:1]))
    assert noxfile._prune_after(one) is False


@pytest.mark.parametrize("kinds", [("run",), ("cuda",)])
def test_more_release_sessions_than_the_default_set_keep_one_at_a_time(noxfile, tmp_path, no_prune_setting, kinds):
    session = FakeSession(tmp_path / "env", selected=_signatures(noxfile.RELEASES, kinds))
    assert noxfile._prune_after(session) is True
    (msg,) = session.logs
    assert "removed after its results" in msg and "HARNESS_PRUNE=0 to keep them all" in msg


def test_harness_prune_overrides_the_default(noxfile, tmp_path, monkeypatch):
    every = FakeSession(tmp_path / "env", selected=_signatures(noxfile.RELEASES))
    monkeypatch.setenv("HARNESS_PRUNE", "0")
    assert noxfile._prune_after(every) is False
    one = FakeSession(tmp_path / "env", selected=_signatures(noxfile.RELEASES[:1]))
    monkeypatch.setenv("HARNESS_PRUNE", "1")
    assert noxfile._prune_after(one) is True and "HARNESS_PRUNE=1" in one.logs[-1]


def test_without_nox_manifest_environments_are_removed(noxfile, tmp_path, no_prune_setting):
    session = FakeSession(tmp_path / "env")  # no _runner: nox's internals changed
    assert noxfile._release_sessions_selected(session) == len(noxfile.RELEASES)
    assert noxfile._prune_after(session) is True


def _nox_selected(*args) -> list[str]:
    if subprocess.run([sys.executable, "-m", "nox", "--version"], capture_output=True).returncode != 0:
        pytest.skip(f"nox is not runnable as {sys.executable} -m nox")
    out = subprocess.run([sys.executable, "-m", "nox", "-l", "--json", *args], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return [s["session"] for s in json.loads(out.stdout)]


def test_the_count_matches_the_names_nox_selects(noxfile, tmp_path, no_prune_setting):
    """The signatures counted are the ones nox gives its sessions: plain `nox` keeps,
    `nox -t all` and `nox -t legacy` remove."""
    plain = FakeSession(tmp_path / "env", selected=_nox_selected())
    assert noxfile._release_sessions_selected(plain) == len(noxfile.DEFAULT_SET)
    assert noxfile._prune_after(plain) is False
    for tag in ("all", "legacy"):
        selected = _nox_selected("-t", tag)
        session = FakeSession(tmp_path / "env", selected=selected)
        assert noxfile._release_sessions_selected(session) == sum(s.startswith("run(") for s in selected)
        assert noxfile._prune_after(session) is True
