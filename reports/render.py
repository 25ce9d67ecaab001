"""A report (title, rows, side tables, charts) rendered as a terminal table, CSV,
JSON or one self-contained HTML file (charts embedded as PNG data, no external
links, so it can be mailed or archived as is)."""

import base64
import dataclasses
import datetime
import html
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from reports.periods import Period

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FORMATS = ("table", "csv", "json", "html")


@dataclasses.dataclass
class Section:
    """A side table of a report (shown in table and HTML output, listed in JSON)."""

    heading: str
    frame: pl.DataFrame
    # Shown before the report's main table (the hot report leads with events).
    leads: bool = False


@dataclasses.dataclass
class Report:
    """What one command found. ``rows`` is the main table (all that CSV carries);
    ``charts`` maps a file stem to a function drawing that chart, so charts are only
    drawn for the formats and options that need them."""

    name: str
    title: str
    rows: pl.DataFrame
    period: Period | None
    timezone: str
    notes: list[str] = dataclasses.field(default_factory=list)
    sections: list[Section] = dataclasses.field(default_factory=list)
    charts: dict[str, Callable[[], "Figure"]] = dataclasses.field(default_factory=dict)


def display_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Values as a person reads them, as text: local times to the minute, growth as
    a percentage (``new`` where the previous period had none), scores to one decimal,
    flags as ``yes``, blanks where a value does not apply."""
    columns = []
    for name, dtype in frame.schema.items():
        if isinstance(dtype, pl.Datetime):
            columns.append(pl.col(name).dt.strftime("%Y-%m-%d %H:%M"))
        elif name == "growth":
            percent = (pl.col(name) * 100).round(0).cast(pl.Int64)
            text = (
                pl.when(percent >= 0).then(pl.lit("+")).otherwise(pl.lit(""))
                + percent.cast(pl.String)
                + "%"
            )
            if "previous_participants" in frame.columns:
                missing = (
                    pl.when(pl.col("previous_participants") == 0)
                    .then(pl.lit("new"))
                    .otherwise(pl.lit(""))
                )
            else:
                missing = pl.lit("")
            columns.append(
                pl.when(pl.col(name).is_null())
                .then(missing)
                .otherwise(text)
                .alias(name)
            )
        elif dtype in (pl.Float32, pl.Float64):
            columns.append(pl.col(name).round(1))
        elif dtype == pl.Boolean:
            columns.append(
                pl.when(pl.col(name))
                .then(pl.lit("yes"))
                .otherwise(pl.lit(""))
                .alias(name)
            )
    shown = frame.with_columns(columns) if columns else frame
    # Blank, not "null", where a value does not apply.
    return shown.with_columns(pl.all().cast(pl.String).fill_null(""))


def render_frame(frame: pl.DataFrame, max_rows: int = 20) -> str:
    """A DataFrame as a compact text table for a terminal."""
    with pl.Config(
        tbl_rows=max_rows,
        tbl_cols=-1,
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
        tbl_formatting="ASCII_MARKDOWN",
        fmt_str_lengths=40,
        tbl_width_chars=200,
    ):
        return str(frame)


def as_table(report: Report, max_rows: int = 50) -> str:
    lines = [report.title, "=" * len(report.title)]
    lines.extend(report.notes)

    def add_section(section: Section) -> None:
        lines.extend(["", section.heading])
        lines.append(
            "(none)"
            if section.frame.is_empty()
            else render_frame(display_frame(section.frame), max_rows)
        )

    for section in report.sections:
        if section.leads:
            add_section(section)
    lines.append("")
    if report.rows.is_empty():
        lines.append("(no rows)")
    else:
        lines.append(render_frame(display_frame(report.rows), max_rows))
    for section in report.sections:
        if not section.leads:
            add_section(section)
    return "\n".join(lines) + "\n"


def as_csv(report: Report) -> str:
    """The main rows; timestamps ISO 8601 with the report timezone's offset."""
    return report.rows.write_csv(datetime_format="%Y-%m-%dT%H:%M:%S%:z")


def _records(frame: pl.DataFrame) -> list[dict]:
    return json.loads(frame.write_json())


def as_json(report: Report) -> str:
    document = {
        "report": report.name,
        "title": report.title,
        "period": report.period.as_dict() if report.period else None,
        "timezone": report.timezone,
        "notes": report.notes,
        "rows": _records(report.rows),
        "sections": {
            section.heading: _records(section.frame) for section in report.sections
        },
    }
    return json.dumps(document, ensure_ascii=False, indent=1) + "\n"


STYLE = """
body { font-family: "Report CJK", "Noto Sans SC", "PingFang SC", "Microsoft YaHei",
                    sans-serif;
       margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.7em; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f4f6f7; }
p.note { color: #555; margin: 0.2em 0; }
img { max-width: 100%; }
"""


def html_table(frame: pl.DataFrame) -> str:
    if frame.is_empty():
        return "<p class='note'>(none)</p>"
    shown = display_frame(frame)
    numeric = {name for name, dtype in frame.schema.items() if dtype.is_numeric()}
    head = "".join(f"<th>{html.escape(name)}</th>" for name in shown.columns)
    body = []
    for row in shown.iter_rows():
        cells = "".join(
            f"<td class='number'>{_cell(value)}</td>"
            if name in numeric
            else f"<td>{_cell(value)}</td>"
            for name, value in zip(shown.columns, row, strict=True)
        )
        body.append(f"<tr>{cells}</tr>")
    return (
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _cell(value: str) -> str:
    return html.escape(value)


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def font_face(text: str) -> str:
    """An ``@font-face`` rule embedding the CJK chart font, cut down to the non-ASCII
    characters of ``text`` (a few kilobytes), so Chinese shows on a machine without
    Chinese fonts too. Empty when there is no such character or font."""
    from reports.fonts import cjk_font_path

    characters = "".join(sorted({char for char in text if ord(char) > 0x7F}))
    path = cjk_font_path()
    if not characters or path is None:
        return ""
    from fontTools import subset

    options = subset.Options()
    font = subset.load_font(path, options)
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=characters)
    subsetter.subset(font)
    buffer = io.BytesIO()
    subset.save_font(font, buffer, options)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (
        "@font-face { font-family: 'Report CJK'; "
        f"src: url(data:font/otf;base64,{data}) format('opentype'); }}"
    )


def as_html(report: Report, pngs: dict[str, bytes]) -> str:
    """One HTML document; ``pngs`` are the report's charts, drawn."""
    parts = [
        f"<title>{html.escape(report.title)}</title><style>{{fonts}}{STYLE}</style></head><body>",
        f"<h1>{html.escape(report.title)}</h1>",
    ]
    parts.extend(f"<p class='note'>{html.escape(note)}</p>" for note in report.notes)
    for name, png in pngs.items():
        parts.append(
            f"<figure><img alt='{html.escape(name)}' "
            f"src='{png_data_uri(png)}'></figure>"
        )
    for section in report.sections:
        if section.leads:
            parts.append(f"<h2>{html.escape(section.heading)}</h2>")
            parts.append(html_table(section.frame))
    parts.append(html_table(report.rows))
    for section in report.sections:
        if not section.leads:
            parts.append(f"<h2>{html.escape(section.heading)}</h2>")
            parts.append(html_table(section.frame))
    generated = datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()
    parts.append(
        f"<p class='note'>Generated {generated} "
        f"by python -m reports {html.escape(report.name)}.</p>"
    )
    parts.append("</body></html>")
    head = ["<!DOCTYPE html>", "<html lang='zh-CN'><head><meta charset='utf-8'>"]
    text_parts = [part for part in parts if not part.startswith("<figure>")]
    parts[0] = parts[0].replace("{fonts}", font_face("".join(text_parts)), 1)
    return "\n".join(head + parts) + "\n"


def draw_charts(report: Report) -> dict[str, bytes]:
    from reports.charts import png_bytes

    return {name: png_bytes(draw()) for name, draw in report.charts.items()}


def write_charts(pngs: dict[str, bytes], folder: str | Path) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, png in pngs.items():
        path = folder / f"{name}.png"
        path.write_bytes(png)
        paths.append(path)
    return paths


def render(report: Report, fmt: str, pngs: dict[str, bytes] | None = None) -> str:
    if fmt == "table":
        return as_table(report)
    if fmt == "csv":
        return as_csv(report)
    if fmt == "json":
        return as_json(report)
    if fmt == "html":
        return as_html(report, pngs if pngs is not None else draw_charts(report))
    raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
