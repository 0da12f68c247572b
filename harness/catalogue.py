"""The release catalogue (harness/releases.toml) and interpreter discovery.

Standard library and packaging (which nox itself depends on) only, so noxfile.py can import
it before anything else is installed.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .versions import NIGHTLY, is_before, release_key, release_of

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the host runs 3.11+
    tomllib = None

CATALOGUE = Path(__file__).resolve().parent / "releases.toml"
PYPI = "https://pypi.org/simple"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"  # PyTorch's CPU wheels
INDEX_ENV = "HARNESS_TORCH_INDEX"


@dataclass(frozen=True)
class Release:
    torch: str  # exact version, or "nightly"
    python: str  # "3.8"
    extra: tuple = ()
    tags: tuple = ()
    index: str | None = None
    pre: bool = False
    note: str = ""
    all_tags: tuple = field(default=(), compare=False)

    @property
    def key(self) -> str:
        """Release label used in session ids and result paths ('2.5', 'nightly'; see harness.versions)."""
        return release_of(self.torch)

    @property
    def sort_key(self) -> tuple:
        return release_key(self.torch)

    def requirements(self) -> list[str]:
        torch_req = "torch" if self.torch == "nightly" else f"torch=={self.torch}"
        return [torch_req, *self.extra]


def load(path: Path = CATALOGUE) -> list[Release]:
    """Parse the catalogue; raise ValueError naming the entry on any problem."""
    data = tomllib.loads(Path(path).read_text())
    allowed = {"torch", "python", "extra", "tags", "index", "pre", "note"}
    out = []
    for i, raw in enumerate(data.get("releases", [])):
        unknown = set(raw) - allowed
        if unknown or "torch" not in raw or "python" not in raw:
            raise ValueError(f"{path}: releases[{i}]: needs torch and python; unknown keys {sorted(unknown)}")
        if not re.fullmatch(r"\d+\.\d+", raw["python"]):
            raise ValueError(f"{path}: releases[{i}]: python must be 'X.Y', got {raw['python']!r}")
        rel = Release(
            torch=raw["torch"],
            python=raw["python"],
            extra=tuple(raw.get("extra", ())),
            tags=tuple(raw.get("tags", ())),
            index=raw.get("index"),
            pre=bool(raw.get("pre", False)),
            note=raw.get("note", ""),
        )
        tags = {"all", *rel.tags}
        if rel.torch != NIGHTLY and is_before(rel.torch, "1.13"):
            tags.add("legacy")
        if rel.torch == "nightly":
            tags.discard("all")  # nightly runs only when asked for
        out.append(Release(**{**rel.__dict__, "all_tags": tuple(sorted(tags))}))
    return out


def torch_index(release: Release) -> str:
    """Where torch comes from: the entry's own index, else $HARNESS_TORCH_INDEX, else PyPI."""
    return release.index or os.environ.get(INDEX_ENV) or PYPI


def _version_of(exe: str) -> str | None:
    try:
        out = subprocess.run(
            [exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def pyenv_root() -> Path | None:
    env = os.environ.get("PYENV_ROOT")
    if env:
        return Path(env)
    default = Path.home() / ".pyenv"
    return default if default.is_dir() else None


def find_interpreter(version: str) -> str | None:
    """An interpreter for 'X.Y': on PATH, among pyenv's versions, or managed by uv."""
    candidates = []
    on_path = shutil.which(f"python{version}")
    if on_path:
        candidates.append(on_path)
    root = pyenv_root()
    if root:
        pattern = str(root / "versions" / f"{version}.*" / "bin" / f"python{version}")
        candidates.extend(sorted(glob.glob(pattern), reverse=True))
    for exe in candidates:
        if "shims" not in exe and _version_of(exe) == version:
            return exe
    uv = shutil.which("uv")
    if uv:
        try:
            out = subprocess.run(
                [uv, "python", "find", "--no-project", version], capture_output=True, text=True, timeout=60
            )
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    return None


def missing_interpreter_message(version: str) -> str:
    return (
        f"no Python {version} found (looked on PATH for python{version}, in pyenv's versions, "
        f"and for uv-managed Pythons): install one with `uv python install {version}` "
        f"or `pyenv install {version}`"
    )


# ------------------------------------------------------------------ installing one release

TORCH_INDEX_NAME = "torch"  # the name of torch's own index in an environment's project file


def environment_project(release: Release, index: str | None = None) -> str:
    """A pyproject.toml for one release's environment, installed with
    ``uv pip install -r <it>``.  torch is pinned to its index with uv's documented
    mechanism (``[tool.uv.sources]`` naming an ``explicit`` ``[[tool.uv.index]]``): torch
    comes only from that index, every other package only from the default index (PyPI).
    Passing the CPU index as ``--index-url`` with PyPI as ``--extra-index-url`` does not
    do this: uv ranks the extra index first, so PyPI's CUDA build wins."""
    index = torch_index(release) if index is None else index
    deps = ", ".join(json.dumps(r) for r in release.requirements())
    lines = [
        "[project]",
        f'name = "kldiv-env-{release.key.replace(".", "-")}"',
        'version = "0"',
        f"dependencies = [{deps}]",
    ]
    if index.rstrip("/") != PYPI:
        lines += [
            "",
            "[tool.uv.sources]",
            f'torch = {{ index = "{TORCH_INDEX_NAME}" }}',
            "",
            "[[tool.uv.index]]",
            f'name = "{TORCH_INDEX_NAME}"',
            f"url = {json.dumps(index)}",
            "explicit = true  # only for the packages pinned to it: torch",
        ]
    return "\n".join(lines) + "\n"


def is_cpu_index(index: str) -> bool:
    """A CPU wheel index: its path ends in /cpu (download.pytorch.org/whl/cpu, .../nightly/cpu)."""
    return re.search(r"/cpu(/simple)?/?$", index) is not None


def build_problem(
    version: str, release: Release, index: str, cuda: bool = False, platform: str = sys.platform
) -> str | None:
    """Why the torch ``version`` installed for ``release`` is not the build that was asked
    for (None when it is): a CPU index gives a ``+cpu`` build, a CUDA session a CUDA build
    (PyPI's Linux wheels, no ``+cpu``), the nightly a ``.dev`` version, and a release its
    own version.  On macOS (``platform`` "darwin") every torch wheel is a CPU build and
    none carries ``+cpu``, on either index."""
    from packaging.version import InvalidVersion, Version

    try:
        got = Version(version)
    except InvalidVersion:
        return f"torch reports version {version!r}, which is not a version"
    if release.torch == "nightly":
        if got.dev is None:
            return f"the nightly session installed torch {version}, not a nightly (.dev) build: {index} was not used"
    elif got.public != Version(release.torch).public:
        return f"asked for torch {release.torch}, installed {version}"
    local = got.local or ""
    if platform == "darwin":
        return "there are no CUDA builds of torch for macOS" if cuda else None
    if cuda and local == "cpu":
        return f"the CUDA session installed the CPU build torch {version}"
    if not cuda and is_cpu_index(index) and local != "cpu":
        return (
            f"a CPU index is configured ({index}) but torch {version} is not its +cpu build: "
            "it came from another index (check the index pinning)"
        )
    return None
