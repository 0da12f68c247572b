"""What a section hands the templates: plain data, no markup.

A :class:`Section` has a key (its anchor and its summary.json key), a title, the data
for machines (``data``) and the context its templates read (``ctx``).  A section whose
templates are not its own (``templates/html/<key>.html.j2``) is drawn by the generic
ones from ``ctx['intro']``, ``ctx['tables']`` (:class:`Table`) and ``ctx['notes']``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from .. import verdicts


class Cell(NamedTuple):
    """One table cell: text, and optionally a verdict (colour and symbol), a link, a
    tooltip, code style.  Plain strings are cells too."""

    text: str
    verdict: str | None = None
    href: str | None = None
    title: str | None = None
    code: bool = False
    filters: dict | None = None  # {filter name: tokens}: the page's filters hide the cell (a release column)


@dataclass
class Table:
    headers: list
    rows: list  # of lists of str | Cell
    cls: str = ""
    caption: str = ""
    markdown: bool = True  # also in README.md
    row_attrs: list | None = None  # per row: {filter name: tokens} for the page's filters
    attrs: dict | None = None  # the whole table's {filter name: tokens} (e.g. its device)


@dataclass
class Section:
    key: str
    title: str
    data: object = None  # JSON-able: summary.json[key]
    ctx: dict = field(default_factory=dict)
    markdown: bool = True  # in README.md
    filterable: bool = False  # the page's filters act on its items
    anchor: str = ""  # the page's id for it, when not its key

    @property
    def id(self) -> str:
        return self.anchor or self.key


def verdict_symbol(name: str) -> str:
    v = verdicts.BY_NAME.get(name)
    return v.symbol if v else "·"


def verdict_square(name: str) -> str:
    v = verdicts.BY_NAME.get(name)
    return v.square if v else "⬜"
