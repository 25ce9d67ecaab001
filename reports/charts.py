"""Charts of the report frames, as matplotlib Figures (no pyplot, no display needed).

Each function takes a frame returned by :mod:`reports.queries` and returns a Figure;
:func:`png_bytes` and :func:`save_png` turn one into PNG. Times are drawn in the
frame's own timezone (the report's). Labels are Chinese with English glosses, so
:func:`use_cjk_font` makes matplotlib's ``font.family`` the CJK font of
:mod:`reports.fonts` (process-wide, like any matplotlib style: tick labels are laid out
when a figure is drawn, after these functions return).
"""

import io
from pathlib import Path
from zoneinfo import ZoneInfo

import matplotlib
import matplotlib.dates as mdates
import polars as pl
from matplotlib.figure import Figure

from reports.fonts import font_families
from reports.labels import topic_label

POSTS_COLOR = "#9aa5b1"
PEOPLE_COLOR = "#c0392b"
PREVIOUS_COLOR = "#d5d8dc"
BURST_COLOR = "#f5b041"


def use_cjk_font() -> None:
    """Make the CJK font matplotlib's default family (idempotent)."""
    matplotlib.rcParams["font.family"] = font_families()
    matplotlib.rcParams["axes.unicode_minus"] = False


def _zone(frame: pl.DataFrame, column: str) -> ZoneInfo:
    dtype = frame.schema[column]
    return ZoneInfo(getattr(dtype, "time_zone", None) or "UTC")


def _time_axis(axes, zone: ZoneInfo) -> None:
    locator = mdates.AutoDateLocator(tz=zone, minticks=4, maxticks=10)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=zone))


def _empty(figure: Figure, axes, message: str) -> Figure:
    axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes)
    axes.set_axis_off()
    return figure


def _steps(frame: pl.DataFrame, column: str) -> tuple[list, list]:
    """x and y of a per-window step line that also covers the last window."""
    xs = frame["window_start"].to_list() + [frame["window_end"][-1]]
    ys = frame[column].to_list()
    return xs, ys + ys[-1:]


def _spans(starts: list, ends: list) -> list[tuple]:
    """Consecutive windows merged into (start, end) spans."""
    spans: list[list] = []
    for start, end in zip(starts, ends, strict=True):
        if spans and spans[-1][1] == start:
            spans[-1][1] = end
        else:
            spans.append([start, end])
    return [tuple(span) for span in spans]


def timeline_chart(timeline: pl.DataFrame, title: str | None = None) -> Figure:
    """A topic's posts and participants per window, bursting windows shaded.

    ``timeline`` as :func:`reports.queries.topic_timeline` returns it.
    """
    use_cjk_font()
    figure = Figure(figsize=(10, 4), layout="constrained")
    axes = figure.add_subplot()
    if timeline.is_empty():
        return _empty(figure, axes, "无数据 no data")
    kind, topic = timeline["kind"][0], timeline["topic"][0]
    axes.set_title(title or f"{topic_label(kind, topic)} 话题走势 timeline")
    axes.step(
        *_steps(timeline, "posts"), where="post", color=POSTS_COLOR, label="帖子 posts"
    )
    axes.step(
        *_steps(timeline, "participants"),
        where="post",
        color=PEOPLE_COLOR,
        linewidth=2,
        label="参与人数 participants",
    )
    bursting = timeline.filter(pl.col("bursting"))
    for number, (start, end) in enumerate(
        _spans(bursting["window_start"].to_list(), bursting["window_end"].to_list())
    ):
        axes.axvspan(
            start,
            end,
            color=BURST_COLOR,
            alpha=0.35,
            linewidth=0,
            label="爆发窗口 burst windows" if number == 0 else None,
        )
    peak = timeline.sort(
        ["participants", "window_start"], descending=[True, False]
    ).row(0, named=True)
    if peak["participants"]:
        axes.annotate(
            f"峰值 peak {peak['participants']:,}",
            (peak["window_start"], peak["participants"]),
            xytext=(6, 6),
            textcoords="offset points",
            color=PEOPLE_COLOR,
        )
    axes.set_ylabel("每窗口 per window")
    axes.set_ylim(
        0, max(1, int(timeline["posts"].max())) * 1.15
    )  # room for the peak label
    axes.legend(loc="upper left", frameon=False)
    axes.grid(axis="y", alpha=0.3)
    _time_axis(axes, _zone(timeline, "window_start"))
    return figure


def volume_chart(
    volume: pl.DataFrame, title: str = "总体声量 overall volume"
) -> Figure:
    """Posts and distinct authors per window (``volume`` from
    :func:`reports.queries.volume_timeline`)."""
    use_cjk_font()
    figure = Figure(figsize=(10, 3.6), layout="constrained")
    axes = figure.add_subplot()
    if volume.is_empty():
        return _empty(figure, axes, "无数据 no data")
    axes.set_title(title)
    axes.fill_between(
        *_steps(volume, "posts"),
        step="post",
        color=POSTS_COLOR,
        alpha=0.6,
        label="帖子 posts",
    )
    axes.step(
        *_steps(volume, "participants"),
        where="post",
        color=PEOPLE_COLOR,
        linewidth=1.5,
        label="发帖人数 authors",
    )
    axes.set_ylabel("每窗口 per window")
    axes.set_ylim(bottom=0)
    axes.legend(loc="upper left", frameon=False)
    axes.grid(axis="y", alpha=0.3)
    _time_axis(axes, _zone(volume, "window_start"))
    return figure


def top_topics_chart(hot: pl.DataFrame, title: str = "热门话题 hot topics") -> Figure:
    """The top topics' participants, with the previous period's as a grey bar
    (``hot`` from :func:`reports.queries.hot_topics`), largest on top."""
    use_cjk_font()
    rows = hot.height
    figure = Figure(figsize=(8, 1.2 + 0.42 * max(rows, 1)), layout="constrained")
    axes = figure.add_subplot()
    if hot.is_empty():
        return _empty(figure, axes, "无数据 no data")
    axes.set_title(title)
    labels = [
        topic_label(kind, topic)
        for kind, topic in zip(hot["kind"], hot["topic"], strict=True)
    ]
    positions = list(range(rows))[::-1]
    current = hot["participants"].to_list()
    previous = hot["previous_participants"].to_list()
    if any(value is not None for value in previous):
        axes.barh(
            positions,
            [value or 0 for value in previous],
            height=0.8,
            color=PREVIOUS_COLOR,
            label="上期 previous period",
        )
    axes.barh(
        positions,
        current,
        height=0.5,
        color=PEOPLE_COLOR,
        label="参与人数 participants",
    )
    for position, value, before, growth in zip(
        positions, current, previous, hot["growth"].to_list(), strict=True
    ):
        note = f"{value:,}"
        if growth is not None:
            note += f"  {growth:+.0%}"
        elif before == 0:
            note += "  新 new"
        axes.annotate(
            note,
            (value, position),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
        )
    axes.set_yticks(positions, labels)
    axes.set_xlabel("参与人数（去重）distinct participants")
    axes.margins(x=0.18)
    axes.legend(loc="lower right", frameon=False)
    axes.grid(axis="x", alpha=0.3)
    return figure


def episodes_chart(
    episodes: pl.DataFrame, title: str = "爆发事件 burst episodes"
) -> Figure:
    """Each burst episode as a bar from onset to end, its peak window marked
    (``episodes`` from :func:`reports.queries.burst_episodes`), strongest on top."""
    use_cjk_font()
    rows = episodes.height
    figure = Figure(figsize=(10, 1.4 + 0.42 * max(rows, 1)), layout="constrained")
    axes = figure.add_subplot()
    if episodes.is_empty():
        return _empty(figure, axes, "无爆发 no bursts")
    axes.set_title(title)
    positions = list(range(rows))[::-1]
    for position, row in zip(positions, episodes.iter_rows(named=True), strict=True):
        axes.plot(
            [row["onset"], row["end"]],
            [position, position],
            color=BURST_COLOR,
            linewidth=9,
            solid_capstyle="butt",
        )
        axes.plot(
            [row["peak_window_start"]], [position], marker="v", color=PEOPLE_COLOR
        )
        axes.annotate(
            f"{row['peak_participants']:,} 人 · {row['peak_score']:.1f}",
            (row["end"], position),
            xytext=(5, 0),
            textcoords="offset points",
            va="center",
        )
    labels = [
        topic_label(kind, topic)
        for kind, topic in zip(episodes["kind"], episodes["topic"], strict=True)
    ]
    axes.set_yticks(positions, labels)
    axes.set_ylim(-0.7, rows - 0.3)
    axes.margins(x=0.12)
    axes.grid(axis="x", alpha=0.3)
    _time_axis(axes, _zone(episodes, "onset"))
    return figure


def events_chart(
    events: pl.DataFrame, windows: pl.DataFrame, title: str = "舆情事件 events"
) -> Figure:
    """Each event's timeline: its people per window (``windows`` from
    :func:`reports.queries.event_timelines`), onset and peak marked, one panel per
    event of ``events`` (:func:`reports.queries.events`), in its order."""
    use_cjk_font()
    rows = max(events.height, 1)
    figure = Figure(figsize=(10, 0.6 + 1.6 * rows), layout="constrained")
    if events.is_empty():
        return _empty(figure, figure.add_subplot(), "无事件 no events")
    figure.suptitle(title)
    panels = figure.subplots(rows, 1, squeeze=False)[:, 0]
    for axes, event in zip(panels, events.iter_rows(named=True), strict=True):
        own = windows.filter(pl.col("event_id") == event["event_id"]).sort(
            "window_start"
        )
        axes.bar(
            own["window_start"].to_list(),
            own["participants"].to_list(),
            width=(own["window_end"] - own["window_start"]).to_list(),
            align="edge",
            color=PEOPLE_COLOR,
        )
        axes.axvline(event["onset"], color=BURST_COLOR, linestyle="--", linewidth=1)
        axes.axvline(event["peak_window_start"], color=BURST_COLOR, linewidth=1.5)
        axes.set_title(
            f"{event['label']} · {event['participants']:,} 人", loc="left", fontsize=10
        )
        axes.grid(axis="y", alpha=0.3)
        _time_axis(axes, _zone(events, "onset"))
    return figure


def png_bytes(figure: Figure, dpi: int = 110) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def save_png(figure: Figure, path: str | Path, dpi: int = 110) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(figure, dpi))
    return path
