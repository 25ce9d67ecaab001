"""The reports the command line prints, each a :class:`~reports.render.Report` built
from :mod:`reports.queries` and drawn by :mod:`reports.charts` (notebooks may call
these too)."""

import re

import polars as pl

from reports import queries
from reports.labels import topic_label
from reports.periods import Period
from reports.render import Report, Section


def _charts():
    """reports.charts, imported when a chart is drawn: table, CSV and JSON output
    need no matplotlib (the base install has none)."""
    from reports import charts

    return charts


class TopicNotFound(LookupError):
    """The topic does not occur in the period; ``suggestions`` holds near names."""

    def __init__(self, topic: str, suggestions: pl.DataFrame):
        self.topic = topic
        self.suggestions = suggestions
        names = ", ".join(
            topic_label(kind, name)
            for kind, name in suggestions.select("kind", "topic").iter_rows()
        )
        hint = f"; topics containing it: {names}" if names else ""
        super().__init__(f"topic {topic!r} does not occur in the period{hint}")


def _period_note(period: Period | None, timezone: str) -> str:
    if period is None:
        return f"Period: everything in the output folder (times in {timezone})."
    return f"Period: {period.label}, local midnight to midnight in {timezone}."


def _stem(period: Period | None) -> str:
    if period is None:
        return "all"
    return (
        period.first_day.isoformat()
        if period.days == 1
        else f"week-{period.first_day.isoformat()}"
    )


def _file_part(text: str) -> str:
    """``text`` usable in a file name (topics may hold '/', spaces, quotes)."""
    return re.sub(r"[^\w.-]+", "_", text).strip("_") or "topic"


def _local_events(
    output: str, period: Period | None, zone: str, top: int | None
) -> pl.DataFrame:
    """The events overlapping the period (``queries.events``), times in ``zone``."""
    return queries.events(output, period, limit=top).with_columns(
        pl.col("onset", "peak_window_start", "end").dt.convert_time_zone(zone)
    )


def _events_chart(output: str, events: pl.DataFrame, title: str):
    """A function drawing the timelines of ``events`` (``charts.events_chart``)."""
    return lambda: _charts().events_chart(
        events, queries.event_timelines(output, events["event_id"].to_list()), title
    )


# Events the hot report leads with.
EVENTS_IN_HOT = 5


def hot_report(
    output: str,
    period: Period,
    kinds: tuple[str, ...] | None = ("hashtag",),
    top: int = 10,
) -> Report:
    """The daily or weekly hot-topic list: who drew the most people, and the change."""
    hot = queries.hot_topics(output, period, kinds=kinds, limit=top)
    totals = queries.volume_totals(output, period)
    previous = period.previous()
    kind_text = ", ".join(kinds) if kinds else "all kinds"
    span = "day" if period.days == 1 else "week"
    notes = [
        _period_note(period, period.timezone),
        f"Topics: {kind_text}; ranked by distinct participants merged over the {span} "
        f"(not summed over windows); growth against {previous.label}.",
        f"Overall: {totals['posts']:,} posts by "
        f"{totals['participants']:,} distinct authors.",
    ]
    covered = queries.daily_volume(output, previous).height
    if covered == 0:
        notes.append(f"No growth: the output folder holds nothing of {previous.label}.")
    elif covered < previous.days:
        notes.append(
            f"The output folder holds only {covered} of the {previous.days} days of "
            f"{previous.label}: growth is overstated."
        )
    events = _local_events(output, period, period.timezone, EVENTS_IN_HOT)
    return Report(
        name="hot",
        title=f"热门话题 Hot topics {period.label}",
        rows=hot,
        period=period,
        timezone=period.timezone,
        notes=notes,
        sections=[
            Section("Events (most people first)", events, leads=True),
            Section("Volume by day", queries.daily_volume(output, period)),
        ],
        charts={
            **(
                {}
                if events.is_empty()
                else {
                    f"events-{_stem(period)}": _events_chart(
                        output, events, f"舆情事件 events {period.label}"
                    )
                }
            ),
            f"hot-topics-{_stem(period)}": lambda: _charts().top_topics_chart(
                hot, title=f"热门话题 hot topics {period.label}"
            ),
            f"volume-{_stem(period)}": lambda: _charts().volume_chart(
                queries.volume_timeline(output, period),
                title=f"总体声量 overall volume {period.label}",
            ),
        },
    )


def timeline_report(
    output: str,
    topic: str,
    kind: str | None = None,
    period: Period | None = None,
    timezone: str | None = None,
) -> Report:
    """One topic window by window, burst windows marked; its burst episodes aside."""
    timeline = queries.topic_timeline(output, topic, kind=kind, period=period)
    zone = period.timezone if period else (timezone or queries.DEFAULT_TIMEZONE)
    if timeline.is_empty():
        raise TopicNotFound(topic, queries.similar_topics(output, topic, period))
    timeline = timeline.with_columns(
        pl.col("window_start", "window_end").dt.convert_time_zone(zone)
    )
    kind, name = timeline["kind"][0], timeline["topic"][0]
    episodes = queries.burst_episodes(output, period, kinds=(kind,))
    episodes = episodes.filter(pl.col("topic") == name).with_columns(
        pl.col("onset", "peak_window_start", "end").dt.convert_time_zone(zone)
    )
    label = topic_label(kind, name)
    other_kinds = queries.topic_kinds(output, name, period).filter(
        pl.col("kind") != kind
    )
    notes = [
        _period_note(period, zone),
        f"{label}: {int(timeline['posts'].sum()):,} posts "
        f"in {timeline.height} windows; "
        f"{int(timeline['bursting'].sum())} bursting windows.",
    ]
    if not other_kinds.is_empty():
        notes.append(
            "Also found as: "
            + ", ".join(other_kinds["kind"])
            + " (choose with --kind)."
        )
    return Report(
        name="timeline",
        title=f"话题走势 Timeline of {label}",
        rows=timeline,
        period=period,
        timezone=zone,
        notes=notes,
        sections=[Section("Burst episodes", episodes)],
        charts={
            f"timeline-{kind}-{_file_part(name)}-{_stem(period)}": lambda: (
                _charts().timeline_chart(timeline)
            ),
        },
    )


def bursts_report(
    output: str,
    period: Period | None = None,
    kinds: tuple[str, ...] | None = None,
    timezone: str | None = None,
    top: int | None = None,
) -> Report:
    """What burst and when: the burst episodes, strongest first, with the strongest
    episode's topic drawn as a timeline."""
    zone = period.timezone if period else (timezone or queries.DEFAULT_TIMEZONE)
    episodes = queries.burst_episodes(
        output, period, kinds=kinds, limit=top
    ).with_columns(
        pl.col("onset", "peak_window_start", "end").dt.convert_time_zone(zone)
    )
    drawn = {
        f"bursts-{_stem(period)}": lambda: _charts().episodes_chart(
            episodes,
            title=f"爆发事件 burst episodes {period.label if period else ''}".strip(),
        )
    }
    if not episodes.is_empty():
        kind, name = episodes["kind"][0], episodes["topic"][0]

        def strongest():
            timeline = queries.topic_timeline(output, name, kind=kind, period=period)
            return _charts().timeline_chart(
                timeline.with_columns(
                    pl.col("window_start", "window_end").dt.convert_time_zone(zone)
                )
            )

        drawn[f"timeline-{kind}-{_file_part(name)}-{_stem(period)}"] = strongest
    kind_text = ", ".join(kinds) if kinds else "all kinds"
    return Report(
        name="bursts",
        title=f"爆发事件 Burst episodes {period.label if period else ''}".strip(),
        rows=episodes,
        period=period,
        timezone=zone,
        notes=[
            _period_note(period, zone),
            f"Topics: {kind_text}. "
            "An episode is a run of consecutive bursting windows of one topic; "
            "listed when it overlaps the period, strongest peak score first.",
        ],
        charts=drawn,
    )


def events_report(
    output: str,
    period: Period | None = None,
    timezone: str | None = None,
    top: int | None = None,
) -> Report:
    """What happened: the events overlapping the period, most people first, with
    when each began and peaked, its growth, top topics and what its representative
    posts say."""
    zone = period.timezone if period else (timezone or queries.DEFAULT_TIMEZONE)
    rows = _local_events(output, period, zone, top)
    label = period.label if period else ""
    return Report(
        name="events",
        title=f"舆情事件 Events {label}".strip(),
        rows=rows,
        period=period,
        timezone=zone,
        notes=[
            _period_note(period, zone),
            "An event is the topics that burst together, carried by the same posts "
            "or people; participants are distinct people over all its topics and "
            "windows. Growth: people in its peak window over its first window's.",
        ],
        charts={
            f"events-{_stem(period)}": _events_chart(
                output, rows, f"舆情事件 events {label}".strip()
            )
        },
    )


def volume_report(
    output: str,
    period: Period | None = None,
    timezone: str | None = None,
    by: str = "day",
) -> Report:
    """Overall volume: posts, reposts, duplicates and distinct authors by local day
    (participants merged per day) or by window."""
    zone = period.timezone if period else (timezone or queries.DEFAULT_TIMEZONE)
    if by == "day":
        rows = queries.daily_volume(output, period, timezone=zone)
    elif by == "window":
        rows = queries.volume_timeline(output, period).with_columns(
            pl.col("window_start", "window_end").dt.convert_time_zone(zone)
        )
    else:
        raise ValueError(f"by must be 'day' or 'window', not {by!r}")
    totals = queries.volume_totals(output, period)
    label = period.label if period else ""
    return Report(
        name="volume",
        title=f"总体声量 Volume {label}".strip(),
        rows=rows,
        period=period,
        timezone=zone,
        notes=[
            _period_note(period, zone),
            f"{totals['posts']:,} distinct posts by "
            f"{totals['participants']:,} distinct authors (merged over the period), "
            f"{totals['duplicates']:,} redelivered duplicates dropped.",
        ],
        charts={
            f"volume-{_stem(period)}": lambda: _charts().volume_chart(
                queries.volume_timeline(output, period).with_columns(
                    pl.col("window_start", "window_end").dt.convert_time_zone(zone)
                ),
                title=f"总体声量 overall volume {label}".strip(),
            )
        },
    )
