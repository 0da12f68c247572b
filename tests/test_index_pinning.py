"""torch comes from the configured index and everything else from PyPI: proved with uv
against two fake package indexes served on localhost (stub wheels torch==X on the
"PyPI" one, torch==X+cpu on the "CPU" one), the way the nox sessions install.

Also proves the reason for the pinning: with the CPU index as --index-url and PyPI as
--extra-index-url, uv takes torch from PyPI (it ranks the extra index first)."""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from functools import partial
from pathlib import Path

import pytest

from harness import catalogue

UV = shutil.which("uv")
pytestmark = pytest.mark.skipif(UV is None, reason="uv is not installed")


def _wheel(folder: Path, name: str, version: str) -> Path:
    """A minimal pure-Python wheel of ``name`` at ``version`` (its module records the version)."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"__version__ = {version!r}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},,\n" for path in files) + f"{dist}/RECORD,,\n"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for arc, text in {**files, f"{dist}/RECORD": record}.items():
            z.writestr(arc, text)
    return path


def _index(root: Path, name: str, wheels: dict) -> None:
    """A PEP 503 simple index at root/name/simple/ holding ``wheels`` {project: [wheel paths]}."""
    simple = root / name / "simple"
    for project, paths in wheels.items():
        page = simple / project
        page.mkdir(parents=True)
        links = []
        for w in paths:
            shutil.copy(w, page / w.name)
            digest = hashlib.sha256(w.read_bytes()).hexdigest()
            links.append(f'<a href="{w.name}#sha256={digest}">{w.name}</a>')
        (page / "index.html").write_text("<!DOCTYPE html><html><body>" + "".join(links) + "</body></html>\n")
    (simple / "index.html").write_text(
        "<!DOCTYPE html><html><body>" + "".join(f'<a href="{p}/">{p}</a>' for p in wheels) + "</body></html>\n"
    )


@pytest.fixture(scope="module")
def indexes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("indexes")
    built = tmp / "built"
    built.mkdir()
    plain, cpu, filler = (
        _wheel(built, "torch", "2.5.1"),
        _wheel(built, "torch", "2.5.1+cpu"),
        _wheel(built, "filler", "1.0"),
    )
    root = tmp / "www"
    _index(root, "pypi", {"torch": [plain], "filler": [filler]})
    _index(root, "cpu", {"torch": [cpu]})
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield {"pypi": f"{base}/pypi/simple", "cpu": f"{base}/cpu/simple", "tmp": tmp}
    server.shutdown()


def _uv(*args, cwd=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_"))}
    env["UV_CACHE_DIR"] = str(Path(cwd) / "uv-cache")
    return subprocess.run([UV, "--no-config", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def _installed(indexes, name: str, install_args: list) -> dict:
    """Install into a fresh venv; {project: version} found there."""
    tmp = indexes["tmp"] / name
    tmp.mkdir()
    made = _uv("venv", str(tmp / "venv"), "--python", sys.executable, cwd=tmp)
    assert made.returncode == 0, made.stderr
    py = str(tmp / "venv" / "bin" / "python")
    got = _uv("pip", "install", "--python", py, *install_args, cwd=tmp)
    assert got.returncode == 0, got.stderr
    listed = _uv("pip", "list", "--python", py, "--format", "freeze", cwd=tmp)
    return dict(line.split("==", 1) for line in listed.stdout.split() if "==" in line)


def test_the_environment_project_takes_torch_from_its_index_and_the_rest_from_pypi(indexes):
    release = catalogue.Release(torch="2.5.1", python="3.11", extra=("filler==1.0",))
    project = indexes["tmp"] / "pinned-project" / "pyproject.toml"
    project.parent.mkdir()
    project.write_text(catalogue.environment_project(release, indexes["cpu"]))
    got = _installed(indexes, "pinned", ["-r", str(project), "--default-index", indexes["pypi"]])
    assert got["torch"] == "2.5.1+cpu" and got["filler"] == "1.0"
    assert catalogue.build_problem(got["torch"], release, indexes["cpu"]) is None


def test_index_url_with_pypi_as_extra_index_gets_pypis_build(indexes):
    """What the sessions did before: uv prefers the extra index, so torch comes from "PyPI"."""
    args = ["torch==2.5.1", "--index-url", indexes["cpu"], "--extra-index-url", indexes["pypi"]]
    got = _installed(indexes, "extra", args)
    assert got["torch"] == "2.5.1"
    problem = catalogue.build_problem(got["torch"], catalogue.Release(torch="2.5.1", python="3.11"), indexes["cpu"])
    assert problem and "not its +cpu build" in problem


def test_without_a_torch_index_the_project_pins_nothing():
    release = catalogue.Release(torch="2.5.1", python="3.11")
    text = catalogue.environment_project(release, catalogue.PYPI)
    assert "tool.uv" not in text and 'dependencies = ["torch==2.5.1"]' in text


def test_build_checks():
    rel = catalogue.Release(torch="2.5.1", python="3.11")
    nightly = catalogue.Release(torch="nightly", python="3.12", index="https://download.pytorch.org/whl/nightly/cpu")
    cpu = "https://download.pytorch.org/whl/cpu"
    assert catalogue.build_problem("2.5.1+cpu", rel, cpu) is None
    assert catalogue.build_problem("2.5.1", rel, catalogue.PYPI) is None
    assert "CPU build" in catalogue.build_problem("2.5.1+cpu", rel, catalogue.PYPI, cuda=True)
    assert "installed 2.4.1" in catalogue.build_problem("2.4.1+cpu", rel, cpu)
    assert catalogue.build_problem("2.12.0.dev20261201+cpu", nightly, nightly.index) is None
    assert "not a nightly" in catalogue.build_problem("2.11.0+cpu", nightly, nightly.index)
    assert "not its +cpu build" in catalogue.build_problem("2.5.1", rel, cpu, platform="linux")


def test_build_checks_on_macos():
    """macOS wheels are CPU builds without +cpu, from PyPI or the CPU index: accepted there,
    refused on Linux; a CUDA session on macOS is refused with the reason."""
    rel = catalogue.Release(torch="2.5.1", python="3.12")
    cpu = "https://download.pytorch.org/whl/cpu"
    assert catalogue.build_problem("2.5.1", rel, cpu, platform="darwin") is None
    assert catalogue.build_problem("2.5.1", rel, catalogue.PYPI, platform="darwin") is None
    assert "installed 2.4.1" in catalogue.build_problem("2.4.1", rel, cpu, platform="darwin")
    assert "no CUDA builds" in catalogue.build_problem("2.5.1", rel, catalogue.PYPI, cuda=True, platform="darwin")
