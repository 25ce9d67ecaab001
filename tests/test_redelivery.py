"""A redelivered post counts once, in the window of its earliest copy (batch: across
the whole run); its other copies are that window's duplicates."""

import gzip
import json

import apache_beam as beam
import pytest
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms import window
from apache_beam.utils.timestamp import Timestamp

from tests.conftest import read_table, run_volume, streaming_options
from tests.test_streaming import (
    DAY_US,
    HOUR_US,
    RecordFn,
    at,
    describe_late,
    post,
    read_at,
    recorded,
)
from transforms.aggregate import AggregateWindows
from transforms.extract import ExtractTopicsFn
from transforms.late import (
    LATE_POSTS,
    CountLatePosts,
    SplitLatePosts,
    streaming_windowing,
)
from transforms.redelivery import CountCopiesOnce, counted_time


def _record(post_id: str, user: str, at: str, text: str, parent=None) -> dict:
    record = {"id": post_id, "user_id": user, "created_at": at, "text": text}
    if parent is not None:
        record["repost_of"] = parent
    return record


@pytest.fixture(scope="module")
def redelivered_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("redelivery")
    records = [
        _record("7001", "alice", "2026-11-20T10:10:00+00:00", "#地震# 震感强烈"),
        _record("7002", "bob", "2026-11-20T10:20:00+00:00", "转发微博", "7001"),
        _record("7003", "carol", "2026-11-20T12:05:00+00:00", "#天气# 晴"),
        # The same ids again, 2.5 hours later (a crawler's second visit), and the
        # repost a third time even later, listed before its first copy's hour.
        _record("7001", "alice", "2026-11-20T12:40:00+00:00", "#地震# 震感强烈"),
        _record("7002", "bob", "2026-11-20T12:50:00+00:00", "转发微博", "7001"),
        _record("7002", "bob", "2026-11-20T15:20:00+00:00", "转发微博", "7001"),
        "{not json",
    ]
    path = folder / "posts.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for record in records:
            line = record if isinstance(record, str) else json.dumps(record)
            handle.write(line + "\n")
    out = folder / "out"
    result = run_volume(
        ["--input", str(path), "--output", str(out), "--topic-kinds", "hashtag"]
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return out, len(records)


def _hour(frame, hour: int):
    return frame.filter(frame["window_start"].dt.hour() == hour)


def test_copies_hours_apart_count_once_in_the_first_window(redelivered_run):
    out, _ = redelivered_run
    volume = read_table(str(out), "volume").sort("window_start")
    first = _hour(volume, 10)
    assert first["posts"].to_list() == [2]
    assert first["duplicates"].to_list() == [3]
    later = _hour(volume, 12)
    assert later["posts"].to_list() == [1] and later["duplicates"].to_list() == [0]
    assert _hour(volume, 15).height == 0


def test_accounting_identity_holds_with_redelivered_copies(redelivered_run):
    out, lines = redelivered_run
    volume = read_table(str(out), "volume")
    dead = read_table(str(out), "dead_letters")
    assert volume["posts"].sum() + volume["duplicates"].sum() + dead.height == lines


def test_topics_count_a_redelivered_post_once(redelivered_run):
    out, _ = redelivered_run
    topics = read_table(str(out), "topics").filter(topic="地震")
    assert topics["window_start"].dt.hour().to_list() == [10]
    assert topics["posts"].to_list() == [2]
    assert topics["participants"].to_list() == [2]


def test_a_copy_counts_at_its_first_copy_time():
    assert counted_time(None, 50) == 50
    assert counted_time(10, 50) == 10


def _describe_volume(element) -> list:
    """(start_us, end_us, tables) -> [window start hour, posts, duplicates]."""
    start_us, _, by_table = element
    row = by_table["volume"].to_pylist()[0]
    return [(start_us - DAY_US) / HOUR_US, row["posts"], row["duplicates"]]


@pytest.mark.streaming
def test_streaming_copy_hours_later_counts_in_the_first_window(prism, tmp_path):
    """Lateness 6 h, 1 h windows. a1 at 8:10; the watermark moves to 10:40 and a1
    comes again with created_at 10:40 (2.5 h later), with b1 of 10:30: the copy is
    counted as a duplicate in window 8-9, not as a post of window 10-11. A copy read
    after 8-9 closed for good (9:00 + 6 h), while the id is remembered (7 days), is
    counted in late_posts there."""
    events = (
        TestStream()
        .advance_watermark_to(Timestamp(micros=at(8)))
        .add_elements(read_at(8, post("a1", 8 + 1 / 6)))
        .advance_processing_time(20)
        .advance_watermark_to(Timestamp(micros=at(10.5)))
        .add_elements(read_at(10.5, post("a1", 10 + 2 / 3), post("b1", 10.5, 2)))
        .advance_processing_time(20)
        .advance_watermark_to(Timestamp(micros=at(15.5)))
        .add_elements(read_at(15.5, post("a1", 15.5)))
        .advance_processing_time(20)
        .advance_watermark_to_infinity()
    )
    window_fn = window.FixedWindows(3600)
    lateness = 6 * 3600
    panes_path, late_path = tmp_path / "panes.jsonl", tmp_path / "late.jsonl"
    with beam.Pipeline(options=streaming_options(prism)) as pipeline:
        split = (
            pipeline
            | events
            | CountCopiesOnce(window_fn, 7 * 86_400)
            | SplitLatePosts(window_fn, lateness)
        )
        (
            split["posts"]
            | beam.ParDo(ExtractTopicsFn(("hashtag",)))
            | AggregateWindows(window_fn, windowing=streaming_windowing(lateness, 10))
            | "RecordPanes" >> beam.ParDo(RecordFn(str(panes_path), _describe_volume))
        )
        (
            split[LATE_POSTS]
            | CountLatePosts(flush_seconds=10)
            | "RecordLate" >> beam.ParDo(RecordFn(str(late_path), describe_late))
        )
    latest = {}
    for start, posts, duplicates, _, index in recorded(panes_path):
        if index >= latest.get(start, (-1,))[0]:
            latest[start] = (index, posts, duplicates)
    assert {start: row[1:] for start, row in latest.items()} == {
        8.0: (1, 1),
        10.0: (1, 0),
    }, latest
    assert max(recorded(late_path), key=lambda row: row[-1])[:2] == [8.0, 1]
