"""What installing each release downloads, per platform, from the package index's own metadata.

For every catalogue release (or the ones named) and every platform below, uv resolves the
release's environment (``harness.catalogue.environment_project``: torch pinned, its extras)
for that platform and Python, without installing anything, and writes a pylock.toml, whose
wheels carry their ``size`` in bytes (PEP 751).  The sum is what a cold uv cache downloads
for that environment; a resolution that fails (no wheel of that torch for that platform and
Python) is recorded with uv's reason.

    python scripts/downloads.py --json benchmarks/downloads.json --readme README.md

needs uv and the index (PyPI) reachable; nothing is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import catalogue  # noqa: E402

# (label, uv --python-platform, macOS version to target): the platforms a newcomer is likely
# to be on.  uv targets macOS 13.0 unless MACOSX_DEPLOYMENT_TARGET says otherwise; torch's
# arm64 wheels from 2.12 on are tagged macosx_14_0, so the Apple-silicon column asks for 14.0.
PLATFORMS = (
    ("Linux x86_64", "x86_64-manylinux_2_28", None),
    ("macOS 14+ arm64", "aarch64-apple-darwin", "14.0"),
    ("macOS x86_64", "x86_64-apple-darwin", None),
)
BEGIN = "<!-- downloads:begin"
END = "<!-- downloads:end -->"


def wheel_bytes(lock_text: str) -> tuple[int, int]:
    """(bytes, packages) of a pylock.toml: each package's largest listed wheel (its sdist
    where it has no wheel); uv lists one wheel per package for a single target platform."""
    lock = tomllib.loads(lock_text)
    total = 0
    for package in lock.get("packages", []):
        sizes = [w.get("size", 0) for w in package.get("wheels", [])]
        if not sizes and "sdist" in package:
            sizes = [package["sdist"].get("size", 0)]
        total += max(sizes, default=0)
    return total, len(lock.get("packages", []))


def resolve(release: catalogue.Release, platform: str, macos: str | None = None, uv: str = "uv") -> dict:
    """Resolve one release's environment for ``platform``: {"mb", "packages"} or {"error"}."""
    index = catalogue.torch_index(release)
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "pyproject.toml"
        project.write_text(catalogue.environment_project(release, index))
        out = Path(tmp) / "pylock.toml"
        cmd = [
            uv,
            "pip",
            "compile",
            str(project),
            "-q",
            "--python-version",
            release.python,
            "--python-platform",
            platform,
            "-o",
            str(out),
            "--no-header",
        ]
        if release.pre:
            cmd.append("--prerelease=allow")
        env = dict(os.environ, **({"MACOSX_DEPLOYMENT_TARGET": macos} if macos else {}))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
            reason = next((line for line in lines if "no wheels" in line or "not available" in line), None)
            return {"error": (reason or (lines[-1] if lines else f"uv exited {proc.returncode}"))[:300]}
        total, packages = wheel_bytes(out.read_text())
    return {"mb": round(total / 1e6), "packages": packages}


def measure(releases: list[catalogue.Release], jobs: int = 8) -> dict:
    """Every (release, platform) resolved, ``jobs`` uv processes at a time (each mostly waits
    on the index)."""
    work = [(release, platform) for release in releases for platform in PLATFORMS]
    with ThreadPoolExecutor(jobs) as pool:
        got = list(pool.map(lambda w: resolve(w[0], w[1][1], w[1][2]), work))
    rows = {}
    for (release, (label, _, _)), entry in zip(work, got):
        row = rows.setdefault(
            release.key,
            {
                "release": release.key,
                "torch": release.torch,
                "python": release.python,
                "default": "default" in release.tags,
            },
        )
        row[label] = entry
    return {"platforms": [p[0] for p in PLATFORMS], "index": catalogue.PYPI, "releases": list(rows.values())}


def _cell(entry: dict) -> str:
    return f"{entry['mb'] / 1000:.2f} GB" if "mb" in entry else "no wheel"


def _sum(rows: list[dict], label: str) -> str:
    got = [r[label] for r in rows]
    total = sum(e["mb"] for e in got if "mb" in e) / 1000
    missing = sum("mb" not in e for e in got)
    return f"{total:.1f} GB" + (f" ({missing} without a wheel)" if missing else "")


def readme_block(data: dict) -> list[str]:
    labels = data["platforms"]
    releases = [r for r in data["releases"] if r["release"] != "nightly"]
    default = [r for r in releases if r["default"]]
    lines = [
        "What a cold uv cache downloads for each release's environment from PyPI (the wheels' sizes in the index's "
        "metadata, resolved by `uv pip compile` for each platform; `python scripts/downloads.py --readme README.md`):",
        "",
        "| | " + " | ".join(labels) + " |",
        "| --- |" + " --- |" * len(labels),
        "| default job ("
        + ", ".join(r["release"] for r in default)
        + ") | "
        + " | ".join(_sum(default, label) for label in labels)
        + " |",
        f"| `nox -t all` ({len(releases)} releases) | " + " | ".join(_sum(releases, label) for label in labels) + " |",
    ]
    for row in releases:
        lines.append(
            f"| {row['release']} (Python {row['python']}) | " + " | ".join(_cell(row[label]) for label in labels) + " |"
        )
    return lines


def write_readme(path: Path, data: dict) -> None:
    text = path.read_text()
    begin = text.index("\n", text.index(BEGIN)) + 1
    end = text.index(END)
    path.write_text(text[:begin] + "\n".join(readme_block(data)) + "\n" + text[end:])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("releases", nargs="*", help="release keys (default: every release but the nightly)")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--readme", help="rewrite the downloads block of this README from --json's figures")
    parser.add_argument("--from-json", help="do not resolve: read the figures from this file")
    args = parser.parse_args(argv)
    if args.from_json:
        data = json.loads(Path(args.from_json).read_text())
    else:
        releases = [r for r in catalogue.load() if r.torch != "nightly"]
        if args.releases:
            releases = [r for r in releases if r.key in args.releases]
        data = measure(releases)
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=1) + "\n")
    if args.readme:
        write_readme(Path(args.readme), data)
    print("\n".join(readme_block(data)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
