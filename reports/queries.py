"""The questions analysts ask of the tables, each a function returning a DataFrame."""

import datetime

import polars as pl

from reports.tables import scan
from schemas.sketch import merged_estimate

# Topics ranked by summed window participants before the exact merge: the merge is
# per topic, so only this many times the requested number are merged.
CANDIDATE_FACTOR = 5


def _in_period(
    frame: pl.LazyFrame, start: datetime.datetime | None, end: datetime.datetime | None
) -> pl.LazyFrame:
    if start is not None:
        frame = frame.filter(pl.col("window_start") >= start)
    if end is not None:
        frame = frame.filter(pl.col("window_start") < end)
    return frame


def hot_topics(
    output: str,
    start: datetime.datetime | None = None,
    end: datetime.datetime | None = None,
    kinds: tuple[str, ...] | None = None,
    limit: int = 10,
) -> pl.DataFrame:
    """Which topics drew the most distinct people in [start, end)?

    Participants are the union of the windows' sketches, not their sum: a person who
    posts every hour counts once. Columns: kind, topic, participants, posts, reposts,
    windows (how many windows mention it), peak_window_start.
    """
    topics = _in_period(scan(output, "topics"), start, end)
    if kinds:
        topics = topics.filter(pl.col("kind").is_in(list(kinds)))
    candidates = (
        topics.group_by("kind", "topic")
        .agg(
            pl.col("posts").sum(),
            pl.col("reposts").sum(),
            pl.len().alias("windows"),
            pl.col("participants").sum().alias("summed_participants"),
            pl.col("window_start").sort_by("participants").last().alias("peak_window_start"),
            pl.col("participants_sketch"),
        )
        .sort("summed_participants", "topic", descending=[True, False])
        .head(limit * CANDIDATE_FACTOR)
        .collect()
    )
    if candidates.is_empty():
        return pl.DataFrame(
            schema={
                "kind": pl.String, "topic": pl.String, "participants": pl.Int64,
                "posts": pl.Int64, "reposts": pl.Int64, "windows": pl.UInt32,
                "peak_window_start": pl.Datetime("us", "UTC"),
            }
        )
    merged = candidates.with_columns(
        pl.Series(
            "participants",
            [merged_estimate(blobs) for blobs in candidates["participants_sketch"].to_list()],
            dtype=pl.Int64,
        )
    )
    return (
        merged.sort(["participants", "posts", "topic"], descending=[True, True, False])
        .head(limit)
        .select("kind", "topic", "participants", "posts", "reposts", "windows", "peak_window_start")
    )


def volume_totals(output: str) -> dict[str, int]:
    """Distinct posts, redelivered duplicates and dead letters of the whole output."""
    volume = scan(output, "volume").select("posts", "duplicates", "participants_sketch").collect()
    dead = scan(output, "dead_letters").select(pl.len()).collect().item()
    posts = int(volume["posts"].sum())
    duplicates = int(volume["duplicates"].sum())
    return {
        "posts": posts,
        "duplicates": duplicates,
        "dead_letters": dead,
        "input_lines": posts + duplicates + dead,
        "participants": merged_estimate(volume["participants_sketch"].to_list()),
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


def bursts(output: str, limit: int | None = None) -> pl.DataFrame:
    """Which topics burst, when, and how strongly (strongest first)."""
    frame = (
        scan(output, "bursts")
        .drop("date")
        .sort(["score", "window_start"], descending=[True, False])
        .collect()
    )
    return frame if limit is None else frame.head(limit)
