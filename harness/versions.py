"""Release labels and their one ordering (packaging.version).

A release label is what results are grouped by: ``'2.5'`` for every 2.5.x build, the
full public version of a pre-release or dev build (``'2.16.0rc1'``,
``'2.16.0.dev20261201'``), ``'nightly'`` for the catalogue's nightly entry, ``'?'`` when
unknown.  :func:`release_key` orders any of these and any full torch version
(``'1.13.1'``, ``'2.16.0.dev20261201+cpu'``, ``'2.5.1+cu121'``): numerically by
packaging.version (dev < rc < final, local builds after their public version), then
``'nightly'`` (newer than every numbered release), then anything that is not a version.
"""

from __future__ import annotations

from packaging.version import InvalidVersion, Version

NIGHTLY = "nightly"
UNKNOWN = "?"
_ZERO = Version("0")


def parse(text) -> Version | None:
    try:
        return Version(str(text))
    except InvalidVersion:
        return None


def release_key(release) -> tuple:
    """Sort key of a release label or torch version (see the module docstring)."""
    text = str(release)
    if text == NIGHTLY:
        return (1, _ZERO, text)
    v = parse(text)
    return (0, v, text) if v is not None else (2, _ZERO, text)


def sort_releases(releases) -> list:
    return sorted(releases, key=release_key)


def release_of(torch_version) -> str:
    """'2.5.1+cu124' -> '2.5'; a pre-release or dev build keeps its public version
    ('2.16.0.dev20261201+cpu' -> '2.16.0.dev20261201'); None -> '?'."""
    if not torch_version:
        return UNKNOWN
    text = str(torch_version)
    if text == NIGHTLY:
        return text
    v = parse(text)
    if v is None:
        return text.split("+")[0]
    if v.is_prerelease or v.is_devrelease:
        return v.public
    return f"{v.major}.{v.minor}"


def is_before(release, other) -> bool:
    return release_key(release) < release_key(other)
