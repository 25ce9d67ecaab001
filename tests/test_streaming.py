"""Streaming pieces: the landing folder protocol, lateness, rolling files (plain
pytest), and event time on Prism with TestStream (marker ``streaming``).

The TestStream tests feed posts the way ``transforms.landing`` emits them: each
stamped with the watermark it was read under, the TestStream's watermark advanced
to that stamp first.
"""

import datetime
import gzip
import json
import os
import time

import apache_beam as beam
import polars as pl
import pyarrow as pa
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms import window
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Timestamp

from reports.panes import latest_panes_expression, pane_of_file, read_latest_panes
from schemas import tables
from schemas.records import Post
from tests.conftest import streaming_options
from tests.fakes import FakeValue
from transforms.aggregate import AggregateWindows
from transforms.extract import ExtractTopicsFn
from transforms.landing import (
    LaggingWatermarkEstimator,
    LandingRestriction,
    LandingTracker,
)
from transforms.landing_folder import (
    END_MARKER,
    drop_file,
    in_time_order,
    is_landing_file,
    list_landing,
    next_watermark_us,
    replay,
    replay_batches,
)
from transforms.late import (
    LATE_POSTS,
    CountLatePosts,
    RunningLateCountFn,
    SplitLatePosts,
    is_beyond_lateness,
    streaming_windowing,
)
from transforms.rolling import (
    prune_all_superseded,
    prune_superseded,
    write_pane,
    write_snapshot,
)

HOUR_US = 3_600_000_000
# 2026-11-20 00:00 UTC.
DAY_US = 1_795_132_800 * 1_000_000


def at(hour: float) -> int:
    """Epoch µs of ``hour`` hours after DAY_US."""
    return DAY_US + int(hour * HOUR_US)


# --- Plain functions -------------------------------------------------------------


@pytest.mark.parametrize(
    ("end_hour", "lateness_hours", "watermark_hour", "beyond"),
    [
        (9, 2, 8.5, False),
        (9, 2, 10.99, False),
        (9, 2, 11, True),
        (9, 0, 9, True),
        (9, 0, 8.99, False),
    ],
    ids=[
        "open-window",
        "late-within-lateness",
        "at-expiry",
        "no-lateness-at-end",
        "no-lateness-before-end",
    ],
)
def test_is_beyond_lateness(end_hour, lateness_hours, watermark_hour, beyond):
    assert (
        is_beyond_lateness(at(end_hour), lateness_hours * HOUR_US, at(watermark_hour))
        is beyond
    )


@pytest.mark.parametrize(
    ("current", "times", "wall", "expected"),
    [
        (at(1), [at(2), at(1.5)], at(100), at(2)),
        (at(3), [at(2)], at(100), at(3)),
        (at(1), [at(5)], at(4), at(4)),
        (at(1), [], at(100), at(1)),
        (at(1), [at(2) + 1_234], at(100), at(2) + 1_000),
    ],
    ids=[
        "latest-event",
        "never-back",
        "capped-by-wall-clock",
        "nothing-read",
        "whole-milliseconds",
    ],
)
def test_next_watermark(current, times, wall, expected):
    assert next_watermark_us(current, times, wall) == expected


@pytest.mark.parametrize(
    ("name", "taken"),
    [
        ("posts.jsonl", True),
        ("posts.jsonl.gz", True),
        ("part-1.parquet", True),
        (".posts.jsonl.1234.tmp", False),
        ("_END", False),
        ("_posts.jsonl", False),
        ("README.md", False),
    ],
    ids=[
        "jsonl",
        "gz",
        "parquet",
        "temporary",
        "end-marker",
        "underscore",
        "other-suffix",
    ],
)
def test_is_landing_file(name, taken):
    assert is_landing_file(f"/landing/{name}") is taken


def test_list_landing_orders_by_arrival_and_sees_the_end(tmp_path):
    drop_file(str(tmp_path), "b.jsonl", b"{}\n")
    os.utime(tmp_path / "b.jsonl", (1_000, 1_000))
    drop_file(str(tmp_path), "a.jsonl", b"{}\n")
    (tmp_path / ".c.jsonl.tmp").write_bytes(b"{}\n")
    files, ended = list_landing(str(tmp_path))
    assert [os.path.basename(file.path) for file in files] == ["b.jsonl", "a.jsonl"]
    assert not ended
    drop_file(str(tmp_path), END_MARKER, b"")
    assert list_landing(str(tmp_path))[1]


def test_landing_tracker_checkpoint_keeps_names_read():
    tracker = LandingTracker(LandingRestriction(frozenset({"/l/old.jsonl"})))
    assert tracker.try_claim(("read", "/l/new.jsonl"))
    assert tracker.try_claim(("forget", "/l/old.jsonl"))
    primary, residual = tracker.try_split(0)
    assert primary.finished and not residual.finished
    assert residual.seen == frozenset({"/l/new.jsonl"})
    # After the checkpoint nothing more may be claimed in this bundle.
    assert not tracker.try_claim(("read", "/l/later.jsonl"))
    assert tracker.try_split(0.5) is None


def test_landing_progress_survives_the_sdks_unsampled_output_bytes():
    """Prism asks a slow bundle to split; the SDK first replaces the reading element's
    completed work with its output bytes, NaN before any output was sampled. The split
    point must still be a number, or the bundle (and the streaming run) fails."""
    from apache_beam.runners.worker.bundle_processor import DataInputOperation

    tracker = LandingTracker(
        LandingRestriction(frozenset({"/l/a.jsonl", "/l/b.jsonl"}))
    )
    progress = tracker.current_progress().with_completed(float("nan"))
    assert 0 < progress.fraction_completed < 1
    split = DataInputOperation._compute_split(0, progress.fraction_completed, 4, 0.5, 4)
    assert split is not None and split[-1] >= 1
    tracker.try_claim(("finish", None))
    assert tracker.current_progress().fraction_completed == 1.0


def test_the_watermark_is_reported_a_lag_after_it_is_proposed():
    clock = [0]
    estimator = LaggingWatermarkEstimator((None, (), 5_000_000), clock=lambda: clock[0])
    estimator.propose(Timestamp(micros=at(8)))
    clock[0] = 2_000_000
    estimator.propose(Timestamp(micros=at(9)))
    estimator.propose(Timestamp(micros=at(8.5)))  # never back
    assert estimator.current_watermark() is None
    assert estimator.latest() == Timestamp(micros=at(9))
    clock[0] = 5_000_000
    assert estimator.current_watermark() == Timestamp(micros=at(8))
    # The state survives a checkpoint.
    restored = LaggingWatermarkEstimator(
        estimator.get_estimator_state(), clock=lambda: 7_000_000
    )
    assert restored.current_watermark() == Timestamp(micros=at(9))
    restored.finish()
    assert restored.current_watermark() == MAX_TIMESTAMP


def _line(post_id: str, hour: float) -> bytes:
    moment = datetime.datetime.fromtimestamp(at(hour) / 1e6, datetime.UTC)
    return json.dumps(
        {"id": post_id, "user_id": "u1", "created_at": moment.isoformat(), "text": "x"}
    ).encode()


def test_replay_batches_paces_by_event_time_and_keeps_stragglers_in_place():
    lines = [
        _line("1", 0),
        _line("2", 0.5),
        _line("3", 0.25),
        b"not json",
        _line("4", 2),
    ]
    # 3600x: an hour of posts per second; files close every half second of replay.
    batches = list(
        replay_batches(lines, speed=3600, batch_seconds=0.5, batch_lines=100)
    )
    assert [(due, [line.strip() for line in batch]) for due, batch in batches] == [
        (0.0, [lines[0]]),
        (0.5, [lines[1], lines[2], lines[3]]),
        (2.0, [lines[4]]),
    ]


def test_in_time_order_sorts_cascades_and_keeps_timeless_lines_with_their_neighbour():
    # As in the real cascades: a source, its reposts, then an older cascade.
    lines = [
        _line("a", 5),
        _line("a-r1", 6),
        b"not json",
        _line("b", 1),
        _line("a-r2", 6),
        _line("b-r1", 2),
    ]
    assert in_time_order(lines) == [
        lines[3],
        lines[5],
        lines[0],
        lines[1],
        lines[2],
        lines[4],
    ]
    assert in_time_order([b"{}", _line("x", 0)]) == [b"{}", _line("x", 0)]


def test_replay_without_pacing_cuts_files_by_lines(tmp_path):
    lines = [_line(str(index), index / 10) for index in range(25)]
    waits = []
    files, count = replay(
        lines, str(tmp_path), speed=0, batch_lines=10, sleep=waits.append
    )
    assert (files, count, waits) == (3, 25, [])
    dropped = sorted(path.name for path in tmp_path.iterdir())
    assert dropped == [
        "replay-000001.jsonl",
        "replay-000002.jsonl",
        "replay-000003.jsonl",
    ]
    assert (tmp_path / "replay-000003.jsonl").read_bytes().count(b"\n") == 5


def test_replay_command_feeds_a_gz_file_and_ends_the_stream(tmp_path):
    source = tmp_path / "posts.jsonl.gz"
    with gzip.open(source, "wb") as handle:
        handle.write(b"\n".join(_line(str(index), index) for index in range(3)) + b"\n")
    from pipelines import replay as replay_command

    landing = tmp_path / "landing"
    assert (
        replay_command.run(
            [
                "--input",
                str(source),
                "--landing",
                str(landing),
                "--speed",
                "0",
                "--end-stream",
            ]
        )
        == 0
    )
    files, ended = list_landing(str(landing))
    assert ended and len(files) == 1
    assert (
        replay_command.run(
            ["--input", str(tmp_path / "missing.gz"), "--landing", str(landing)]
        )
        == 2
    )


def test_snapshots_replace_each_other_and_the_latest_is_the_table(tmp_path):
    """``open_events`` is a whole state: each snapshot a new file; an older one is
    not written after a newer, is deleted after the grace period, and the latest,
    empty or not, is what a reader reads."""
    from tests.test_events import HOUR_US, _member
    from transforms.event_model import EventParams, assemble_events
    from transforms.events import events_table

    root = str(tmp_path)
    member = _member("hashtag", "雅安地震", 30, range(0, 60))
    (event,) = assemble_events([member], HOUR_US, EventParams(min_participants=1))
    growing = events_table([(event, [])], at(8))
    first = write_snapshot(growing, root, "open_events", at(8), "UTC")
    assert read_latest_panes(root, "open_events")["label"].to_list() == ["雅安地震"]
    none_open = tables.OPEN_EVENTS.empty_table()
    second = write_snapshot(none_open, root, "open_events", at(9), "UTC", 60)
    assert first != second and os.path.exists(first)
    assert write_snapshot(growing, root, "open_events", at(8.5), "UTC") is None
    # The event closed: the latest snapshot, empty, is the table.
    assert read_latest_panes(root, "open_events").height == 0
    assert prune_all_superseded(root) >= 1 and not os.path.exists(first)
    assert os.path.exists(second)


def test_panes_are_new_files_and_a_stale_pane_is_not_written(tmp_path):
    folder = str(tmp_path)
    start = at(8)
    first = write_pane(pa.table({"posts": [2]}), folder, start, 0, "EARLY")
    final = write_pane(pa.table({"posts": [5]}), folder, start, 3, "ON_TIME")
    assert first != final
    # Out of order: pane 1 arrives after pane 3 and is not written.
    assert write_pane(pa.table({"posts": [3]}), folder, start, 1, "EARLY") is None
    assert pane_of_file(final) == (3, "ON_TIME")
    # Pane 0 stays (a reader may have listed it) until the grace period is over.
    assert sorted(os.listdir(folder)) == [
        "20261120T080000Z-pane000000.parquet",
        "20261120T080000Z-pane000003.parquet",
    ]
    assert prune_superseded(folder, grace_seconds=10, now=time.time() + 11) == [
        "20261120T080000Z-pane000000.parquet"
    ]
    assert os.listdir(folder) == ["20261120T080000Z-pane000003.parquet"]
    # An empty pane writes nothing where the window has no file yet.
    assert (
        write_pane(
            pa.table({"posts": pa.array([], pa.int64())}), folder, at(9), 0, "EARLY"
        )
        is None
    )


def test_a_reader_takes_the_latest_pane_of_each_window(tmp_path):
    folder = tmp_path / "volume" / "date=2026-11-20"
    for start, pane, posts in [(at(8), 0, 2), (at(8), 2, 5), (at(9), 0, 7)]:
        row = {
            "window_start": [start],
            "window_end": [start + HOUR_US],
            "posts": [posts],
        }
        write_pane(pa.table(row), str(folder), start, pane, "EARLY", grace_seconds=3600)
    frame = pl.scan_parquet(
        f"{tmp_path}/volume/**/*.parquet",
        hive_partitioning=True,
        include_file_paths="file",
    )
    latest = (
        frame.filter(latest_panes_expression())
        .drop("file")
        .collect()
        .sort("window_start")
    )
    assert latest["posts"].to_list() == [5, 7]
    # A plain scan still sees the superseded pane until it is pruned.
    assert frame.collect()["posts"].sum() == 14
    assert read_latest_panes(str(tmp_path), "volume").sort("window_start")[
        "posts"
    ].to_list() == [5, 7]


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--output", "{tmp}/out"], {}, "--streaming needs --landing FOLDER"),
        (
            ["--landing", "{tmp}", "--output", "{tmp}/out", "--input", "{tmp}/x.jsonl"],
            {},
            "--input is for batch runs",
        ),
        (
            [
                "--landing",
                "{tmp}",
                "--output",
                "{tmp}/out",
                "--early-results-every",
                "1h",
                "--allowed-lateness",
                "30m",
            ],
            {},
            "--early-results-every must be shorter than --allowed-lateness",
        ),
        (
            ["--landing", "{tmp}", "--output", "{tmp}/out"],
            {"YUQING_PRISM": "", "YUQING_CACHE": "{tmp}/cache"},
            "build it once with deploy/prism/build.sh",
        ),
    ],
    ids=[
        "no-landing",
        "input-given",
        "early-not-shorter-than-lateness",
        "prism-not-built",
    ],
)
def test_streaming_usage_errors_are_one_line(
    args, env, expected, tmp_path, monkeypatch, capsys
):
    from pipelines import volume

    for name, value in env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    monkeypatch.setenv("YUQING_PSEUDONYM_KEY", "00" * 32)
    assert volume.run(["--streaming", *(arg.format(tmp=tmp_path) for arg in args)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "\n" not in error and expected in error, (
        error
    )


def test_a_local_streaming_run_is_named_for_prism_without_a_five_minute_deadline(
    tmp_path,
):
    from apache_beam.options.pipeline_options import (
        DebugOptions,
        PortableOptions,
        PrismRunnerOptions,
        StandardOptions,
    )

    from pipelines.runners import (
        PRISM_NO_SPLITS,
        STREAM_DEADLINE_SECONDS,
        with_local_streaming_runner,
    )

    binary = tmp_path / "prism"
    argv = ["--streaming", f"--prism_location={binary}"]
    options = with_local_streaming_runner(argv, PipelineOptions(argv))
    assert options.view_as(StandardOptions).runner == "PrismRunner"
    assert options.view_as(PrismRunnerOptions).prism_location == str(binary)
    # Beam's default (300 s) also bounds the job's state stream: a longer streaming
    # run failed with DEADLINE_EXCEEDED after five minutes.
    assert (
        options.view_as(PortableOptions).job_server_timeout == STREAM_DEADLINE_SECONDS
    )
    # Prism's splits of bundles with timers fire some timers twice and lose others.
    assert PRISM_NO_SPLITS in options.view_as(DebugOptions).experiments
    batch = PipelineOptions(["--runner=DirectRunner"])
    assert with_local_streaming_runner([], batch) is batch


# --- Event time on Prism ---------------------------------------------------------


def post(post_id: str, hour: float, author: int = 1, text: str = "#a#") -> Post:
    return Post(post_id, author, at(hour), text, None, None)


def read_at(watermark_hour: float, *posts: Post) -> list[TimestampedValue]:
    """Posts as the landing source emits them: stamped with the watermark."""
    return [
        TimestampedValue(item, Timestamp(micros=at(watermark_hour))) for item in posts
    ]


class RecordFn(beam.DoFn):
    """Appends each element, with its pane, as a JSON line to ``path`` (the
    TestStream's results are checked after the run: ``assert_that`` needs a
    GroupByKey, which an unbounded global window refuses)."""

    def __init__(self, path: str, describe):
        self._path = path
        self._describe = describe

    def process(self, element, pane=beam.DoFn.PaneInfoParam):
        with open(self._path, "a", encoding="utf-8") as handle:
            handle.write(
                json.dumps([*self._describe(element), int(pane.timing), pane.index])
                + "\n"
            )


def describe_volume(element) -> list:
    """(start_us, end_us, tables) -> [window start hour, posts, duplicates]."""
    start_us, _, by_table = element
    row = by_table["volume"].to_pylist()[0]
    return [(start_us - DAY_US) / HOUR_US, row["posts"], row["duplicates"]]


def describe_late(element) -> list:
    start_us, _, by_table = element
    return [
        (start_us - DAY_US) / HOUR_US,
        by_table["late_posts"].to_pylist()[0]["posts"],
    ]


def recorded(path) -> list[list]:
    return (
        [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        if path.exists()
        else []
    )


EARLY, ON_TIME, LATE = 0, 1, 2
LATENESS_HOURS = 2


@pytest.mark.streaming
def test_panes_and_late_posts_land_where_the_readme_says(prism, tmp_path):
    """One hour windows, 2 h allowed lateness, early panes every 10 s.

    Window 8-9: a1, a2 and a redelivered a1 show in an EARLY pane; a3 follows; the
    watermark passes 9:00 (ON_TIME); b1 and another copy of a2 arrive at 9:30, late
    but within the lateness (LATE pane, the copy dropped against the earlier pane);
    c1 arrives at 11:30, after 9:00 + 2 h: beyond the lateness, so it is counted in
    late_posts for window 8-9, not in the window, and so is c2 a firing later.
    Window 9-10: d1, read at 11:30, is late but within its lateness (its window
    closes at 12:00).
    """
    events = (
        TestStream()
        .advance_watermark_to(Timestamp(micros=at(8)))
        .add_elements(read_at(8, post("a1", 8.1), post("a2", 8.2, 2), post("a1", 8.1)))
        .advance_processing_time(20)
        .add_elements(read_at(8, post("a3", 8.3, 3)))
        .advance_processing_time(20)
        .advance_watermark_to(Timestamp(micros=at(9.5)))
        .add_elements(read_at(9.5, post("b1", 8.4, 4), post("a2", 8.2, 2)))
        .advance_processing_time(20)
        .advance_watermark_to(Timestamp(micros=at(11.5)))
        .add_elements(read_at(11.5, post("c1", 8.5, 5), post("d1", 9.75, 6)))
        .advance_processing_time(20)
        .add_elements(read_at(11.5, post("c2", 8.6, 7)))
        .advance_processing_time(20)
        .advance_watermark_to_infinity()
    )
    window_fn = window.FixedWindows(3600)
    panes_path, late_path = tmp_path / "panes.jsonl", tmp_path / "late.jsonl"
    with beam.Pipeline(options=streaming_options(prism)) as pipeline:
        split = pipeline | events | SplitLatePosts(window_fn, LATENESS_HOURS * 3600)
        (
            split["posts"]
            | beam.ParDo(ExtractTopicsFn(("hashtag",)))
            | AggregateWindows(
                window_fn, windowing=streaming_windowing(LATENESS_HOURS * 3600, 10)
            )
            | "RecordPanes" >> beam.ParDo(RecordFn(str(panes_path), describe_volume))
        )
        (
            split[LATE_POSTS]
            | CountLatePosts(flush_seconds=10)
            | "RecordLate" >> beam.ParDo(RecordFn(str(late_path), describe_late))
        )
    # Beyond the lateness: c1 and, a firing later, c2, counted for window 8-9 and
    # nowhere else; the highest pane holds both.
    assert max(recorded(late_path), key=lambda row: row[-1])[:2] == [8.0, 2]
    by_window = {}
    for start, posts, duplicates, timing, index in recorded(panes_path):
        by_window.setdefault(start, []).append((index, timing, posts, duplicates))
    assert sorted(by_window) == [8.0, 9.0], by_window
    eight = sorted(by_window[8.0])
    # The latest pane holds everything on time or late within the lateness (a1, a2,
    # a3, b1), the two redelivered copies dropped, one of them across panes.
    assert eight[-1][2:] == (4, 2), eight
    assert {EARLY, ON_TIME, LATE} <= {timing for _, timing, _, _ in eight}, eight
    # Early results: a pane with a1 and a2 only, before a3 arrived.
    assert (EARLY, 2, 1) in [pane[1:] for pane in eight], eight
    # Late within the lateness: a LATE pane that includes b1.
    assert any(timing == LATE and posts == 4 for _, timing, posts, _ in eight), eight
    # Panes accumulate: none holds more than the latest.
    assert all(posts <= 4 for _, _, posts, _ in eight), eight
    # d1, read at 11:30 for window 9-10 (open until 12:00): counted.
    assert sorted(by_window[9.0])[-1][2:] == (1, 0), by_window[9.0]


@pytest.mark.streaming
def test_without_lateness_a_post_read_at_the_window_end_is_late(prism, tmp_path):
    """Allowed lateness 0, no early panes: the window fires once, ON_TIME; a post of
    it read when the watermark is at its end is counted in late_posts only."""
    events = (
        TestStream()
        .advance_watermark_to(Timestamp(micros=at(8)))
        .add_elements(read_at(8, post("a1", 8.1)))
        .advance_watermark_to(Timestamp(micros=at(9)))
        .add_elements(read_at(9, post("b1", 8.5, 2)))
        .advance_processing_time(20)
        .advance_watermark_to_infinity()
    )
    window_fn = window.FixedWindows(3600)
    panes_path, late_path = tmp_path / "panes.jsonl", tmp_path / "late.jsonl"
    with beam.Pipeline(options=streaming_options(prism)) as pipeline:
        split = pipeline | events | SplitLatePosts(window_fn, 0)
        (
            split["posts"]
            | beam.ParDo(ExtractTopicsFn(("hashtag",)))
            | AggregateWindows(window_fn, windowing=streaming_windowing(0, 0))
            | "RecordPanes" >> beam.ParDo(RecordFn(str(panes_path), describe_volume))
        )
        (
            split[LATE_POSTS]
            | CountLatePosts(flush_seconds=5)
            | "RecordLate" >> beam.ParDo(RecordFn(str(late_path), describe_late))
        )
    panes = sorted(recorded(panes_path), key=lambda row: row[-1])
    # Prism 2.77 adds a LATE pane with nothing new when the window expires.
    assert {tuple(row[:3]) for row in panes} == {(8.0, 1, 0)}, panes
    assert panes[0][3:] == [ON_TIME, 0], panes
    assert max(recorded(late_path), key=lambda row: row[-1])[:2] == [8.0, 1]


def test_late_counts_add_up_and_number_their_own_panes():
    """Each firing brings the late posts since the previous one; the running count
    is numbered by the step that adds it up, so the highest pane a reader keeps is
    the highest count even if firings arrive out of order."""
    count_fn, counted, bounds = RunningLateCountFn(), FakeValue(), (at(8), at(9))
    outputs = [
        output
        for since_last in (3, 2, 4)
        for output in count_fn.process(
            (bounds, since_last),
            timestamp=Timestamp(micros=at(12)),
            window=window.GlobalWindow(),
            counted=counted,
        )
    ]
    assert [(output.value, output.pane_info.index) for output in outputs] == [
        ((bounds, 3), 0),
        ((bounds, 5), 1),
        ((bounds, 9), 2),
    ]
    assert [output.pane_info.is_first for output in outputs] == [True, False, False]
