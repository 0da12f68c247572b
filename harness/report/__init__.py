"""Stage 7: the compatibility report.

``python -m harness report --results DIR --out DIR`` reads every results file, evaluates
it (:mod:`harness.evaluation`), computes the findings (:mod:`harness.findings`) and writes
``index.html`` (with ``cases/<family>.html``), ``README.md`` and ``summary.json``.

The package follows the pipeline inside: :mod:`.text` (values as text) and :mod:`.base`
(what a section is) → :mod:`.model` (the verdict frame and its views) → the sections
(:mod:`.glance`, :mod:`.changes`, :mod:`.evidence`, :mod:`.casepages`: data only) →
:mod:`.assemble` (Jinja2 templates in ``templates/``, CSS and JS in ``static/``).
"""

from .assemble import README_BEGIN, README_END, TITLE, readme_excerpt, render, update_readme, write_report
from .model import ReportData, load

__all__ = [
    "README_BEGIN",
    "README_END",
    "TITLE",
    "ReportData",
    "load",
    "readme_excerpt",
    "render",
    "reproduction_snippets",
    "update_readme",
    "write_report",
]


def reproduction_snippets(d):
    """{change key: snippet} for every behaviour change (harness.reproductions' format)."""
    from .changes import reproduction_snippets as snippets

    return snippets(d)
