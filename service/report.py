"""HTML reports with PNG figures beside them, written atomically.

A report is a list of sections (heading, paragraphs, tables, figures).  Figures are saved
as PNG files next to ``report.html`` and referenced relatively, so a results directory can
be copied or served as it is.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from ensembles import __version__
from service.result_files import write_atomically

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222;line-height:1.45}
h1{font-size:1.6em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left} th{background:#f3f3f3}
figure{margin:1em 0} figcaption{font-size:.9em;color:#555} img{max-width:100%}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.4em .8em}
footer{margin-top:2em;font-size:.8em;color:#777}
"""


@dataclass
class Figure:
    filename: str
    caption: str


@dataclass
class Table:
    columns: Sequence[str]
    rows: Sequence[Sequence[object]]


@dataclass
class Section:
    heading: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)  # (label, relative href)


def save_figure(fig: plt.Figure, outdir: Path, filename: str, caption: str) -> Figure:
    """Save a matplotlib figure as PNG in ``outdir`` and close it."""
    fig.savefig(outdir / filename, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Figure(filename, caption)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return html.escape(str(value))


def _section(section: Section) -> str:
    parts = [f"<h2>{html.escape(section.heading)}</h2>"]
    parts += [f'<p class="note">{html.escape(n)}</p>' for n in section.notes]
    parts += [f"<p>{html.escape(p)}</p>" for p in section.paragraphs]
    for table in section.tables:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in table.rows
        )
        parts.append(f"<table><tr>{head}</tr>{body}</table>")
    if section.links:
        parts.append("<ul>" + "".join(
            f'<li><a href="{html.escape(href)}">{html.escape(label)}</a></li>'
            for label, href in section.links) + "</ul>")
    parts += [
        f'<figure><img src="{html.escape(f.filename)}" alt="{html.escape(f.caption)}">'
        f"<figcaption>{html.escape(f.caption)}</figcaption></figure>"
        for f in section.figures
    ]
    return "\n".join(parts)


def _md_cell(value: object) -> str:
    text = f"{value:.3g}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown_section(section: Section) -> str:
    parts = [f"## {section.heading}"]
    parts += [f"> {n}" for n in section.notes]
    parts += list(section.paragraphs)
    for table in section.tables:
        parts.append("\n".join([
            "| " + " | ".join(_md_cell(c) for c in table.columns) + " |",
            "|" + "---|" * len(table.columns),
            *("| " + " | ".join(_md_cell(v) for v in row) + " |" for row in table.rows)]))
    parts += [f"- [{label}]({href})" for label, href in section.links]
    parts += [f"![{f.caption}]({f.filename})" for f in section.figures]
    return "\n\n".join(parts)


def format_ci(ci: tuple[float, float] | None, spec: str = ".3g") -> str:
    """A confidence interval as report tables show it, ``""`` when there is none."""
    return "" if ci is None else f"[{ci[0]:{spec}}, {ci[1]:{spec}}]"


def write_report(outdir: Path, title: str, sections: Sequence[Section], *,
                 markdown: bool = False) -> Path:
    """Write ``report.html`` (and ``report.md`` if asked) in ``outdir``, each atomically.

    The Markdown twin is for sinks that cannot show HTML (GitHub comments, plain e-mail).
    """
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    footer = f"esmwatch {__version__}, {stamp}"
    body = "\n".join(_section(s) for s in sections)
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}"
        f"<footer>{footer}</footer></body></html>"
    )
    if markdown:
        write_atomically(outdir / "report.md", "\n\n".join(
            [f"# {title}", *(_markdown_section(s) for s in sections), f"_{footer}_"]) + "\n")
    return write_atomically(outdir / "report.html", page)
