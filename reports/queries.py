"""The questions analysts ask of the tables, each a function returning a DataFrame.

Every function takes the pipeline's output folder and, where it makes sense, a
:class:`~reports.periods.Period` (``None``: everything the folder holds). Timestamps
come back in the period's timezone (the default timezone without a period), so a
printed or exported row reads in local time; they are the same instants as the
tables' UTC columns.

Distinct people over more than one window are always merged from the windows'
``participants_sketch``, never summed: someone who posts every hour is one
participant of the day, not 24.
"""

import datetime
import heapq
from zoneinfo import ZoneInfo

import datasketches
import polars as pl

from reports.periods import Period
from reports.tables import scan
from schemas.sketch import DEFAULT_LG_K, merged_estimate
from schemas.timezone import DEFAULT_TIMEZONE
from schemas.topics import TOPIC_KINDS, normalize_typed_topic

KINDS = TOPIC_KINDS
# Kind -> its place in TOPIC_KINDS, for listing kinds in a fixed order.
KIND_ORDER = {kind: place for place, kind in enumerate(TOPIC_KINDS)}
# A union's HLL estimate can exceed the sum of its parts' estimates by the sketch's
# error (about 0.8% at lg_k 14); candidates are pruned only when their summed
# participants fall below the current k-th best by more than this margin.
SKETCH_MARGIN = 0.03

HOT_TOPICS_SCHEMA = {
    "rank": pl.UInt32,
    "kind": pl.String,
    "topic": pl.String,
    "participants": pl.Int64,
    "posts": pl.Int64,
    "reposts": pl.Int64,
    "windows": pl.UInt32,
    "peak_window_start": pl.Datetime("us", "UTC"),
    "previous_participants": pl.Int64,
    "previous_posts": pl.Int64,
    "growth": pl.Float64,
    # The kinds the topic appears as in the period ("hashtag, keyword"): a ranking
    # over several kinds lists a topic once, as its strongest kind.
    "kinds": pl.String,
}


def _in_period(frame: pl.LazyFrame, period: Period | None) -> pl.LazyFrame:
    if period is None:
        return frame
    return frame.filter(
        (pl.col("window_start") >= period.start) & (pl.col("window_start") < period.end)
    )


def _timezone(period: Period | None) -> str:
    return DEFAULT_TIMEZONE if period is None else period.timezone


def _local_times(frame: pl.DataFrame, timezone: str) -> pl.DataFrame:
    """Every timezone-aware column converted to ``timezone`` (same instants)."""
    columns = [
        pl.col(name).dt.convert_time_zone(timezone)
        for name, dtype in frame.schema.items()
        if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None
    ]
    return frame.with_columns(columns) if columns else frame


def _lg_k(blobs: list[bytes]) -> int:
    """The precision the run wrote its sketches with, so merges keep it."""
    if not blobs:
        return DEFAULT_LG_K
    return datasketches.hll_sketch.deserialize(blobs[0]).lg_config_k


def _merge_candidates(candidates: pl.DataFrame, limit: int | None) -> pl.DataFrame:
    """Merged participants of the topics that can reach the top ``limit``.

    ``candidates`` is sorted by summed window participants, an upper bound of the
    merged figure; once that bound falls below the k-th best merged figure, no later
    topic can enter the top k, so only the head of the list is merged.
    """
    sketches = candidates["participants_sketch"].to_list()
    summed = candidates["summed_participants"].to_list()
    lg_k = _lg_k(sketches[0]) if sketches else DEFAULT_LG_K
    merged: list[int] = []
    best: list[int] = []  # min-heap of the k best merged figures so far
    for blobs, upper in zip(sketches, summed, strict=True):
        if (
            limit is not None
            and len(best) >= limit
            and upper * (1 + SKETCH_MARGIN) < best[0]
        ):
            break
        value = merged_estimate(blobs, lg_k)
        merged.append(value)
        if limit is not None:
            if len(best) < limit:
                heapq.heappush(best, value)
            elif value > best[0]:
                heapq.heapreplace(best, value)
    return candidates.head(len(merged)).with_columns(
        pl.Series("participants", merged, dtype=pl.Int64)
    )


def hot_topics(
    output: str,
    period: Period | None = None,
    kinds: tuple[str, ...] | None = None,
    limit: int | None = 10,
) -> pl.DataFrame:
    """Which topics drew the most distinct people in the period, and how does that
    compare with the period before?

    Ranked by participants merged from the windows' sketches (a person who posts
    every hour counts once), then posts, then topic. Columns: rank, kind, topic,
    participants, posts, reposts, windows (how many windows mention the topic),
    peak_window_start (its window with the most participants), previous_participants
    and previous_posts (the same topic in the previous period; 0 when it was absent),
    growth (participants / previous_participants - 1; null when the topic is new).
    The previous_* and growth columns are null without a period (the whole folder) and
    when the folder holds no window of the previous period.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1 (or None for all), not {limit}")
    topics = _in_period(scan(output, "topics"), period)
    if kinds:
        topics = topics.filter(pl.col("kind").is_in(list(kinds)))
    candidates = (
        topics.group_by("kind", "topic")
        .agg(
            pl.col("posts").sum(),
            pl.col("reposts").sum(),
            pl.len().alias("windows"),
            pl.col("participants").sum().alias("summed_participants"),
            pl.col("window_start")
            .sort_by(["participants", "window_start"], descending=[True, False])
            .first()
            .alias("peak_window_start"),
            pl.col("participants_sketch"),
        )
        .sort(["summed_participants", "kind", "topic"], descending=[True, False, False])
        .collect()
    )
    timezone = _timezone(period)
    if candidates.is_empty():
        return _local_times(pl.DataFrame(schema=HOT_TOPICS_SCHEMA), timezone)
    kinds_of = candidates.group_by("topic").agg(
        pl.col("kind")
        .sort_by(pl.col("kind").replace_strict(KIND_ORDER, return_dtype=pl.Int64))
        .str.join(", ")
        .alias("kinds")
    )
    several = candidates["kind"].n_unique() > 1
    # A topic listed as several kinds takes one place: merge enough to fill the top.
    merge_limit = limit * len(KIND_ORDER) if several and limit is not None else limit
    ranked = _merge_candidates(candidates, merge_limit).sort(
        ["participants", "posts", "kind", "topic"],
        descending=[True, True, False, False],
    )
    if several:
        ranked = ranked.unique("topic", keep="first", maintain_order=True)
    ranked = (
        ranked.head(limit if limit is not None else candidates.height)
        .join(kinds_of, on="topic", how="left")
        .with_row_index("rank", offset=1)
    )
    previous = _previous_figures(output, ranked, period)
    result = (
        ranked.join(previous, on=["kind", "topic"], how="left")
        .with_columns(
            pl.when(pl.col("previous_participants") > 0)
            .then(pl.col("participants") / pl.col("previous_participants") - 1)
            .otherwise(None)
            .alias("growth")
        )
        .select(list(HOT_TOPICS_SCHEMA))
        .cast(HOT_TOPICS_SCHEMA)
    )
    return _local_times(result, timezone)


def _previous_figures(
    output: str, ranked: pl.DataFrame, period: Period | None
) -> pl.DataFrame:
    """previous_participants and previous_posts of the ranked topics."""
    keys = ranked.select("kind", "topic")
    if period is None:
        return keys.with_columns(
            pl.lit(None, dtype=pl.Int64).alias("previous_participants"),
            pl.lit(None, dtype=pl.Int64).alias("previous_posts"),
        )
    covered = (
        _in_period(scan(output, "volume"), period.previous())
        .select(pl.len())
        .collect()
        .item()
    )
    if not covered:  # the folder does not reach back that far: unknown, not zero
        return _previous_figures(output, ranked, None)
    before = (
        _in_period(scan(output, "topics"), period.previous())
        .join(keys.lazy(), on=["kind", "topic"], how="semi")
        .group_by("kind", "topic")
        .agg(pl.col("posts").sum(), pl.col("participants_sketch"))
        .collect()
    )
    sketches = before["participants_sketch"].to_list()
    lg_k = _lg_k(sketches[0]) if sketches else DEFAULT_LG_K
    before = before.select(
        "kind",
        "topic",
        pl.Series(
            "previous_participants",
            [merged_estimate(b, lg_k) for b in sketches],
            dtype=pl.Int64,
        ),
        pl.col("posts").alias("previous_posts"),
    )
    return keys.join(before, on=["kind", "topic"], how="left").with_columns(
        pl.col("previous_participants", "previous_posts").fill_null(0)
    )


def summed_participants(
    output: str, topic: str, kind: str, period: Period | None = None
) -> int:
    """What summing the windows' participants would claim for a topic.

    Wrong for any span longer than one window (people who post in several windows
    count several times); here to show by how much, next to :func:`hot_topics`.
    """
    frame = _in_period(scan(output, "topics"), period).filter(
        (pl.col("kind") == kind) & (pl.col("topic") == normalize_typed_topic(topic))
    )
    return int(frame.select(pl.col("participants").sum()).collect().item() or 0)


def topic_kinds(output: str, topic: str, period: Period | None = None) -> pl.DataFrame:
    """Under which kinds does a topic appear, with how many posts (most first)?"""
    return (
        _in_period(scan(output, "topics"), period)
        .filter(pl.col("topic") == normalize_typed_topic(topic))
        .group_by("kind")
        .agg(pl.col("posts").sum())
        .with_columns(
            pl.col("kind")
            .replace_strict(
                {kind: order for order, kind in enumerate(KINDS)}, default=len(KINDS)
            )
            .alias("order")
        )
        .sort(["posts", "order"], descending=[True, False])
        .drop("order")
        .collect()
    )


def similar_topics(
    output: str, text: str, period: Period | None = None, limit: int = 5
) -> pl.DataFrame:
    """Which topics contain ``text`` (for a user who typed part of a topic)?"""
    return (
        _in_period(scan(output, "topics"), period)
        .filter(pl.col("topic").str.contains(normalize_typed_topic(text), literal=True))
        .group_by("kind", "topic")
        .agg(pl.col("posts").sum())
        .sort(["posts", "kind", "topic"], descending=[True, False, False])
        .head(limit)
        .collect()
    )


TIMELINE_SCHEMA = {
    "window_start": pl.Datetime("us", "UTC"),
    "window_end": pl.Datetime("us", "UTC"),
    "kind": pl.String,
    "topic": pl.String,
    "posts": pl.Int64,
    "participants": pl.Int64,
    "reposts": pl.Int64,
    "bursting": pl.Boolean,
    "expected": pl.Float64,
    "score": pl.Float64,
}


def topic_timeline(
    output: str, topic: str, kind: str | None = None, period: Period | None = None
) -> pl.DataFrame:
    """How did one topic's posts, participants and reposts move window by window, and
    in which windows did it burst?

    One row per window of the run in the period (windows without the topic read 0,
    so a chart shows its quiet hours), oldest first. ``topic`` is taken as a user
    types it (see :func:`~schemas.topics.normalize_typed_topic`). Without ``kind``,
    the kind under which the topic has the most posts (hashtag first on a tie).
    ``bursting``, ``expected`` and ``score`` come from the ``bursts`` table (null
    expected/score where not bursting). Empty when the topic does not occur in the
    period.
    """
    name = normalize_typed_topic(topic)
    timezone = _timezone(period)
    if kind is None:
        kinds = topic_kinds(output, name, period)
        if kinds.is_empty():
            return _local_times(pl.DataFrame(schema=TIMELINE_SCHEMA), timezone)
        kind = kinds["kind"][0]
    rows = _in_period(scan(output, "topics"), period).filter(
        (pl.col("kind") == kind) & (pl.col("topic") == name)
    )
    if rows.select(pl.len()).collect().item() == 0:
        return _local_times(pl.DataFrame(schema=TIMELINE_SCHEMA), timezone)
    windows = pl.concat(
        [
            _in_period(scan(output, "volume"), period).select(
                "window_start", "window_end"
            ),
            rows.select("window_start", "window_end"),
        ]
    ).unique()
    bursts = (
        scan(output, "bursts")
        .filter((pl.col("kind") == kind) & (pl.col("topic") == name))
        .select("window_start", "expected", "score")
    )
    result = (
        windows.join(
            rows.select("window_start", "posts", "participants", "reposts"),
            on="window_start",
            how="left",
        )
        .join(bursts, on="window_start", how="left")
        .with_columns(
            pl.lit(kind).alias("kind"),
            pl.lit(name).alias("topic"),
            pl.col("posts", "participants", "reposts").fill_null(0),
            pl.col("score").is_not_null().alias("bursting"),
        )
        .sort("window_start")
        .select(list(TIMELINE_SCHEMA))
        .collect()
        .cast(TIMELINE_SCHEMA)
    )
    return _local_times(result, timezone)


def burst_episodes(
    output: str,
    period: Period | None = None,
    kinds: tuple[str, ...] | None = None,
    limit: int | None = None,
) -> pl.DataFrame:
    """Which topics burst during the period: when did each episode begin, peak and
    end, and how strong was it?

    Episodes overlapping the period (one that began the evening before and went on
    past midnight counts for both days), strongest peak first, then earliest onset.
    Columns as in the ``burst_episodes`` table: kind, topic, onset, peak_window_start,
    end, windows, peak_participants, peak_score, posts.
    """
    frame = scan(output, "burst_episodes").drop("date")
    if period is not None:
        frame = frame.filter(
            (pl.col("onset") < period.end) & (pl.col("end") > period.start)
        )
    if kinds:
        frame = frame.filter(pl.col("kind").is_in(list(kinds)))
    frame = frame.sort(
        ["peak_score", "onset", "kind", "topic"], descending=[True, False, False, False]
    ).collect()
    if limit is not None:
        frame = frame.head(limit)
    return _local_times(frame, _timezone(period))


def bursts(
    output: str, limit: int | None = None, period: Period | None = None
) -> pl.DataFrame:
    """Which (topic, window) pairs burst, and how strongly (strongest first)?"""
    frame = (
        _in_period(scan(output, "bursts"), period)
        .drop("date")
        .sort(
            ["score", "window_start", "kind", "topic"],
            descending=[True, False, False, False],
        )
        .collect()
    )
    frame = frame if limit is None else frame.head(limit)
    return _local_times(frame, _timezone(period))


VOLUME_COLUMNS = [
    "window_start",
    "window_end",
    "posts",
    "participants",
    "reposts",
    "duplicates",
]


def volume_timeline(output: str, period: Period | None = None) -> pl.DataFrame:
    """How many distinct posts, authors, reposts and redelivered duplicates did each
    window have? One row per window, oldest first."""
    frame = (
        _in_period(scan(output, "volume"), period)
        .select(VOLUME_COLUMNS)
        .sort("window_start")
        .collect()
    )
    return _local_times(frame, _timezone(period))


def daily_volume(
    output: str, period: Period | None = None, timezone: str | None = None
) -> pl.DataFrame:
    """How much was posted each local day, and by how many distinct people?

    One row per local calendar day (in the period's timezone, else ``timezone``,
    else the default). Columns: date, windows, posts, reposts, duplicates,
    participants (merged from the day's window sketches).
    """
    zone = timezone or _timezone(period)
    days = (
        _in_period(scan(output, "volume"), period)
        .with_columns(
            pl.col("window_start")
            .dt.convert_time_zone(zone)
            .dt.date()
            .alias("local_date")
        )
        .group_by("local_date")
        .agg(
            pl.len().alias("windows"),
            pl.col("posts").sum(),
            pl.col("reposts").sum(),
            pl.col("duplicates").sum(),
            pl.col("participants_sketch"),
        )
        .sort("local_date")
        .collect()
    )
    sketches = days["participants_sketch"].to_list()
    lg_k = _lg_k(sketches[0]) if sketches else DEFAULT_LG_K
    return days.select(
        pl.col("local_date").alias("date"),
        pl.col("windows").cast(pl.UInt32),
        "posts",
        "reposts",
        "duplicates",
        pl.Series(
            "participants", [merged_estimate(b, lg_k) for b in sketches], dtype=pl.Int64
        ),
    )


def volume_totals(output: str, period: Period | None = None) -> dict[str, int]:
    """Distinct posts, redelivered duplicates, dead letters, late posts (streaming:
    beyond the allowed lateness), input lines and merged participants of the period
    (dead letters and input lines: of the whole run, as rejected lines have no event
    time)."""
    volume = (
        _in_period(scan(output, "volume"), period)
        .select("posts", "duplicates", "participants_sketch")
        .collect()
    )
    dead = scan(output, "dead_letters").select(pl.len()).collect().item()
    late = int(
        _in_period(scan(output, "late_posts"), period)
        .select(pl.col("posts").sum())
        .collect()
        .item()
        or 0
    )
    posts = int(volume["posts"].sum())
    duplicates = int(volume["duplicates"].sum())
    sketches = volume["participants_sketch"].to_list()
    return {
        "posts": posts,
        "duplicates": duplicates,
        "dead_letters": dead,
        "late_posts": late,
        "input_lines": posts + duplicates + dead + late,
        "participants": merged_estimate(sketches, _lg_k(sketches)),
    }


def dead_letter_reasons(output: str, limit: int = 5) -> pl.DataFrame:
    """The most frequent reasons lines were rejected (the part before the value)."""
    return (
        scan(output, "dead_letters")
        .with_columns(pl.col("error").str.replace(r":\s.*$", "").alias("reason"))
        .group_by("reason")
        .agg(pl.len().alias("lines"), pl.col("source").first().alias("example"))
        .sort("lines", "reason", descending=[True, False])
        .head(limit)
        .collect()
    )


def latest_day(output: str, timezone: str = DEFAULT_TIMEZONE) -> datetime.date | None:
    """The local date of the last window the folder holds (the default report day)."""
    last = scan(output, "volume").select(pl.col("window_start").max()).collect().item()
    if last is None:
        return None
    return last.astimezone(ZoneInfo(timezone)).date()


def latest_complete_day(
    output: str, timezone: str = DEFAULT_TIMEZONE
) -> datetime.date | None:
    """The last local day that ends before the folder's last window ends: the day a
    daily report covers (a stream still running, or a sample whose stragglers spill
    past midnight, leaves a partial day after it). None for an empty folder."""
    first, last = (
        scan(output, "volume")
        .select(pl.col("window_start").min(), pl.col("window_end").max())
        .collect()
        .row(0)
    )
    if last is None:
        return None
    zone = ZoneInfo(timezone)
    complete = last.astimezone(zone).date() - datetime.timedelta(days=1)
    if complete < first.astimezone(zone).date():
        return latest_day(
            output, timezone
        )  # less than a whole day: the only one there is
    return complete


def timezone_mismatches(output: str, timezone: str) -> int:
    """How many volume windows sit in a ``date=`` partition other than their local
    date in ``timezone``: non-zero means the run was partitioned in another timezone
    than the one the report is asked for."""
    frame = scan(output, "volume").filter(
        pl.col("window_start").dt.convert_time_zone(timezone).dt.date()
        != pl.col("date")
    )
    return int(frame.select(pl.len()).collect().item())


def events(
    output: str, period: Period | None = None, limit: int | None = None
) -> pl.DataFrame:
    """Which events happened in the period, most people first: label, onset, peak,
    end, participants, growth (the peak window's people over the first window's,
    minus one), posts, reposts, the top topics and the representative posts' texts
    (each cut to one line), one row per event overlapping the period."""
    frame = scan(output, "events").drop("date")
    if period is not None:
        frame = frame.filter(
            (pl.col("onset") < period.end) & (pl.col("end") > period.start)
        )
    found = frame.sort(
        ["participants", "onset", "event_id"], descending=[True, False, False]
    ).collect()
    if limit is not None:
        found = found.head(limit)
    first = (
        scan(output, "event_windows")
        .drop("date")
        .filter(pl.col("event_id").is_in(found["event_id"].to_list()))
        .sort("window_start")
        .group_by("event_id")
        .agg(pl.col("participants").first().alias("first_participants"))
        .collect()
    )
    found = found.join(first, on="event_id", how="left")
    rows = found.select(
        "event_id",
        "label",
        "onset",
        "peak_window_start",
        "end",
        "participants",
        (pl.col("peak_participants") / pl.col("first_participants") - 1).alias(
            "growth"
        ),
        "posts",
        "reposts",
        # A topic once, whichever kinds it bursts as (a hashtag and its keyword).
        pl.col("topics")
        .list.eval(pl.element().struct.field("topic").unique(maintain_order=True))
        .list.head(3)
        .list.join(", ")
        .alias("top_topics"),
        pl.col("representative_posts")
        .list.head(3)
        .list.eval(
            pl.element()
            .struct.field("text")
            .str.replace_all(r"\s+", " ")
            .str.slice(0, 60)
        )
        .list.join(" | ")
        .alias("representative_posts"),
    )
    return _local_times(rows, _timezone(period))


def event_timelines(output: str, event_ids: list[str]) -> pl.DataFrame:
    """The ``event_windows`` rows of these events: people per window, in time order."""
    return (
        scan(output, "event_windows")
        .drop("date")
        .filter(pl.col("event_id").is_in(event_ids))
        .sort("event_id", "window_start")
        .collect()
    )
