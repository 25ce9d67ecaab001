"""Burst detection: the judgement of one window, and the detector as a transform in
batch and in streaming."""

import math
import os
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import tables
from tests.fakes import FakeBag, FakeTimer, FakeValue
from transforms.burst_counts import (
    BURSTS_TAG,
    EPISODES_TAG,
    topic_shard,
    topic_window_counts,
)
from transforms.burst_model import (
    BurstParams,
    WindowCount,
    judge_topic,
    judge_window,
    latest_panes,
    may_burst,
)
from transforms.bursts import DetectBursts, judge_shard, shard_window_counts
from transforms.bursts_streaming import DetectBurstsFn, counts_by_shard

HOUR_US = 3_600_000_000
PARAMS = BurstParams(
    threshold=4.0,
    min_participants=20,
    min_ratio=2.0,
    half_life_windows=24,
    warmup_windows=12,
    idle_windows=48,
)
# Diurnal totals of all participants per hour, quiet at night, peak in the evening.
DIURNAL = [
    300,
    200,
    120,
    80,
    60,
    70,
    130,
    250,
    400,
    500,
    550,
    600,
    620,
    560,
    520,
    560,
    600,
    620,
    650,
    700,
    800,
    850,
    820,
    560,
]


def count(
    hour: int, participants: int, total: int, stream_start_hour: int = 0
) -> WindowCount:
    return WindowCount(
        hour * HOUR_US,
        (hour + 1) * HOUR_US,
        participants,
        participants,
        total,
        stream_start_hour * HOUR_US,
    )


def judge_series(series: list[WindowCount], params: BurstParams = PARAMS):
    """Judge counts in order; return the bursting hours and all closed episodes."""
    history, flagged, episodes = None, [], []
    for item in series:
        history, burst, closed = judge_window(history, item, params, HOUR_US)
        episodes.extend(closed)
        if burst is not None:
            flagged.append(item.start_us // HOUR_US)
    return flagged, episodes, history


def stationary(hours: int, share: float) -> list[WindowCount]:
    """A topic holding ``share`` of every window's participants, rounded like counts."""
    return [
        count(hour, round(share * DIURNAL[hour % 24]), DIURNAL[hour % 24])
        for hour in range(hours)
    ]


def test_surge_is_flagged_in_its_first_window():
    series = stationary(72, 0.02)
    series[50] = count(50, 120, DIURNAL[50 % 24] + 100)
    flagged, _, _ = judge_series(series)
    assert flagged == [50]


def test_diurnal_background_is_not_flagged():
    # Shares stay put while all traffic swings tenfold between 4 am and 9 pm.
    flagged, _, _ = judge_series(stationary(24 * 7, 0.05))
    assert flagged == []


def test_new_topic_needs_minimum_participants():
    quiet = [count(hour, 0, DIURNAL[hour % 24]) for hour in range(30)]
    few = quiet[:20] + [count(20, 12, 800)]
    many = quiet[:20] + [count(20, 40, 800)]
    assert judge_series([item for item in few if item.participants])[0] == []
    assert judge_series([item for item in many if item.participants])[0] == [20]


def test_minimum_support_of_a_new_topic_counts_the_window_before():
    # 12 people late in hour 20 and 12 more early in hour 21: neither window alone
    # reaches the support of 20, the two together do; a gap between them does not.
    straddling = [count(20, 12, 800), count(21, 12, 800)]
    assert judge_series(straddling)[0] == [21]
    apart = [count(20, 12, 800), count(22, 12, 800)]
    assert judge_series(apart)[0] == []


def test_minimum_support_of_a_known_topic_is_its_window_alone():
    # A topic drawing a few people every hour doubles, twice, below the support.
    series = [count(hour, 3, 800) for hour in range(40)]
    series[38], series[39] = count(38, 12, 800), count(39, 12, 800)
    assert judge_series(series)[0] == []


def test_nothing_bursts_during_warmup():
    flagged, _, _ = judge_series([count(hour, 300, 800) for hour in (3, 4)])
    assert flagged == []


def test_expected_follows_the_window_volume():
    history = None
    for item in stationary(48, 0.1):
        history, _, _ = judge_window(history, item, PARAMS, HOUR_US)
    quiet_night = count(48, 6, 60)
    busy_evening = count(48, 85, 850)
    assert judge_window(history, quiet_night, PARAMS, HOUR_US)[1] is None
    assert judge_window(history, busy_evening, PARAMS, HOUR_US)[1] is None
    # Debiased from the stream's start: the expectation is the topic's 10% share.
    flagged_night = judge_window(history, count(48, 30, 60), PARAMS, HOUR_US)[1]
    assert flagged_night is not None
    assert flagged_night.expected == pytest.approx(6, rel=0.05)
    flagged_evening = judge_window(history, count(48, 200, 850), PARAMS, HOUR_US)[1]
    assert flagged_evening.expected == pytest.approx(85, rel=0.05)
    assert math.isclose(flagged_evening.expected / flagged_night.expected, 850 / 60)


def test_consecutive_bursting_windows_form_one_episode():
    series = stationary(60, 0.02)
    for hour, extra in ((40, 300), (41, 200), (42, 120)):
        series[hour] = count(hour, extra, DIURNAL[hour % 24] + extra)
    flagged, episodes, history = judge_series(series)
    assert flagged == [40, 41, 42]
    (episode,) = episodes
    assert (episode.onset_us, episode.end_us, episode.windows) == (
        40 * HOUR_US,
        43 * HOUR_US,
        3,
    )
    assert (episode.peak_start_us, episode.peak_participants) == (40 * HOUR_US, 300)
    assert history.episode is None


def test_idle_topic_starts_afresh():
    early = [count(hour, 30, 600) for hour in range(20)]
    flagged, _, history = judge_series(early)
    assert flagged == [] and history.mean > 0
    later = count(20 + PARAMS.idle_windows, 30, 600)
    reset, burst, _ = judge_window(history, later, PARAMS, HOUR_US)
    assert burst is not None and burst.expected == 0.0  # judged as a new topic
    within = count(20 + PARAMS.idle_windows - 1, 30, 600)
    kept, _, _ = judge_window(history, within, PARAMS, HOUR_US)
    assert kept.mean > reset.mean


def test_judge_topic_orders_the_windows_and_closes_the_last_episode():
    series = stationary(60, 0.02)
    for hour, extra in ((40, 300), (58, 250), (59, 200)):
        series[hour] = count(hour, extra, DIURNAL[hour % 24] + extra)
    flagged, closed, history = judge_series(series)
    shuffled = series[1::2] + series[::2]
    bursts, episodes = judge_topic(shuffled, PARAMS, HOUR_US)
    assert [burst.start_us // HOUR_US for burst in bursts] == flagged == [40, 58, 59]
    # The episode still open after hour 59 is closed at the end of the input.
    assert episodes == closed + [history.episode]
    assert [(episode.onset_us // HOUR_US, episode.windows) for episode in episodes] == [
        (40, 1),
        (58, 2),
    ]


@settings(max_examples=200, deadline=None, database=None, derandomize=True)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0, 0, 0, 1, 2]),
            # Quiet windows, and surges on either side of half the support (10).
            st.sampled_from([0, 1, 2, 3, 9, 10, 12, 15, 19, 25, 40]),
            st.integers(40, 400),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_judge_topic_equals_judging_every_window_in_order(steps):
    """Skipping a topic that never reaches half the minimum support changes nothing:
    ``judge_topic`` gives what judging every window in order gives, with or without
    gaps between windows."""
    # The stream began warmup_windows before the topic's first window.
    series, hour = [], PARAMS.warmup_windows
    for gap, participants, total in steps:
        hour += gap + 1
        series.append(count(hour, participants, total))
    flagged, closed, history = judge_series(series)
    bursts, episodes = judge_topic(series, PARAMS, HOUR_US)
    assert [burst.start_us // HOUR_US for burst in bursts] == flagged
    last = [history.episode] if history.episode is not None else []
    assert episodes == closed + last


def test_a_topic_below_half_the_minimum_support_never_bursts():
    """Fewer than half the minimum support in every window: no burst, even for a new
    topic whose window before counts toward its support."""
    half = PARAMS.min_participants // 2
    assert not may_burst(half - 1, PARAMS) and may_burst(half, PARAMS)
    straddling = [count(hour, 0, 500) for hour in range(20)]
    straddling += [count(20, half, 500), count(21, half, 500)]
    assert [b.start_us // HOUR_US for b in judge_topic(straddling, PARAMS, HOUR_US)[0]]
    assert judge_series(straddling)[0] == [21]
    below = straddling[:-2] + [count(20, half - 1, 500), count(21, half - 1, 500)]
    assert judge_topic(below, PARAMS, HOUR_US) == ([], [])


def test_latest_pane_of_each_window_wins():
    early = count(3, 10, 100)
    final = count(3, 25, 180)
    other = count(1, 5, 90)
    assert latest_panes([final, other, early]) == [other, final]


# --- The transform -----------------------------------------------------------------


def window_element(
    hour: int, total: int, topics: dict[str, int]
) -> tuple[int, int, dict[str, pa.Table]]:
    """A window as ``AggregateWindows`` emits it, with hashtag topics."""
    start, end = hour * HOUR_US, (hour + 1) * HOUR_US
    volume = pa.Table.from_pydict(
        {
            "window_start": [start],
            "window_end": [end],
            "posts": [total],
            "participants": [total],
            "reposts": [0],
            "duplicates": [0],
            "participants_sketch": [b""],
        },
        schema=tables.VOLUME,
    )
    names = sorted(topics)
    rows = len(names)
    topic_table = pa.Table.from_pydict(
        {
            "window_start": [start] * rows,
            "window_end": [end] * rows,
            "kind": ["hashtag"] * rows,
            "topic": names,
            "posts": [topics[name] for name in names],
            "participants": [topics[name] for name in names],
            "participants_sketch": [b""] * rows,
            "reposts": [0] * rows,
        },
        schema=tables.TOPICS,
    )
    return start, end, {"volume": volume, "topics": topic_table}


BASE_HOUR = 24 * 20_000  # an hour in 2024, so timestamps are ordinary


def stream_windows() -> list[tuple[int, int, dict[str, pa.Table]]]:
    """40 hours of a steady topic and a quiet one; a surge of 'quake' at hour 30 and
    the steady topic silent after hour 32."""
    elements = []
    for offset in range(40):
        hour = BASE_HOUR + offset
        total = DIURNAL[hour % 24]
        topics = {"quake": max(1, round(0.01 * total))}
        if offset < 32:
            topics["steady"] = round(0.05 * total)
        if offset == 30:
            topics["quake"] = 150
            total += 150
        elements.append(window_element(hour, total, topics))
    return elements


def rows_of(results):
    bursts = results[BURSTS_TAG] | "BurstRows" >> beam.MapTuple(
        lambda key, burst: (key, burst.start_us // HOUR_US - BASE_HOUR)
    )
    episodes = results[EPISODES_TAG] | "EpisodeRows" >> beam.MapTuple(
        lambda key, episode: (
            key,
            episode.onset_us // HOUR_US - BASE_HOUR,
            episode.windows,
        )
    )
    return bursts, episodes


def test_detect_bursts_in_batch():
    with TestPipeline() as pipeline:
        results = (
            pipeline | beam.Create(stream_windows()) | DetectBursts(PARAMS, HOUR_US)
        )
        bursts, episodes = rows_of(results)
        assert_that(bursts, equal_to([(("hashtag", "quake"), 30)]), label="Bursts")
        assert_that(
            episodes, equal_to([(("hashtag", "quake"), 30, 1)]), label="Episodes"
        )


def as_column_lists(element):
    """A window element with its tables as the batch pipeline passes them: column
    lists without the window bounds (``transforms.write.window_columns``)."""
    start, end, by_table = element
    return (
        start,
        end,
        {
            name: {
                column: table.column(column).to_pylist()
                for column in table.column_names
                if column not in ("window_start", "window_end")
            }
            for name, table in by_table.items()
        },
    )


def test_every_shard_hears_of_every_window_and_each_topic_goes_to_its_own():
    element = window_element(BASE_HOUR, 500, {"quake": 40, "rain": 3, "tea": 9})
    parts = dict(shard_window_counts(as_column_lists(element), 4))
    assert sorted(parts) == [0, 1, 2, 3]
    for shard, part in parts.items():
        assert part[:3] == (element[0], element[1], 500)
        assert all(topic_shard(("hashtag", name), 4) == shard for name in part[4])
    assert sorted(name for part in parts.values() for name in part[4]) == [
        "quake",
        "rain",
        "tea",
    ]
    assert parts == dict(shard_window_counts(element, 4))


def test_judging_a_shard_gives_each_topics_own_judgement():
    elements = stream_windows()
    start = elements[0][0]
    parts = [
        part
        for element in elements
        for shard, part in shard_window_counts(element, 2)
        if shard == topic_shard(("hashtag", "quake"), 2)
    ]
    bursts, episodes = judge_shard(parts, start, PARAMS, HOUR_US)
    counts = [
        count
        for element in elements
        for key, count in (
            (key, count._replace(stream_start_us=start))
            for key, count in topic_window_counts(element, start)
        )
        if key == ("hashtag", "quake")
    ]
    expected_bursts, expected_episodes = judge_topic(counts, PARAMS, HOUR_US)
    quake = ("hashtag", "quake")
    assert [burst for key, burst in bursts if key == quake] == expected_bursts
    assert [episode for key, episode in episodes if key == quake] == expected_episodes
    assert [key for key, _ in bursts] == [quake]


@pytest.mark.parametrize("shards", [1, 3, 16])
def test_batch_detector_reads_column_lists_and_any_shard_count(shards):
    with TestPipeline() as pipeline:
        results = (
            pipeline
            | beam.Create([as_column_lists(item) for item in stream_windows()])
            | DetectBursts(PARAMS, HOUR_US, batch_shards=shards)
        )
        bursts, episodes = rows_of(results)
        assert_that(bursts, equal_to([(("hashtag", "quake"), 30)]), label="Bursts")
        assert_that(
            episodes, equal_to([(("hashtag", "quake"), 30, 1)]), label="Episodes"
        )


def windows_as_they_fire(elements) -> TestStream:
    """Windows reaching the detector as they fire: in groups of four, the watermark
    passing each group's last window, in reverse order within a group."""
    stream = TestStream()
    for first in range(0, len(elements), 4):
        group = elements[first : first + 4]
        stream = stream.add_elements(
            [
                TimestampedValue(element, element[1] / 1e6 - 1e-6)
                for element in reversed(group)
            ]
        )
        stream = stream.advance_watermark_to(group[-1][1] / 1e6)
    return stream.advance_watermark_to_infinity()


def streaming_pipeline(elements) -> TestPipeline:
    options = PipelineOptions(["--streaming", "--runner=BundleBasedDirectRunner"])
    pipeline = TestPipeline(options=options)
    return pipeline, pipeline | windows_as_they_fire(elements)


def test_detect_bursts_in_streaming_matches_batch():
    pipeline, windows = streaming_pipeline(stream_windows())
    results = windows | DetectBursts(PARAMS, HOUR_US, streaming=True)
    bursts, episodes = rows_of(results)
    assert_that(bursts, equal_to([(("hashtag", "quake"), 30)]), label="Bursts")
    assert_that(episodes, equal_to([(("hashtag", "quake"), 30, 1)]), label="Episodes")
    pipeline.run().wait_until_finish()


class ShardHarness:
    """One shard of ``DetectBurstsFn`` with in-memory state and timers."""

    def __init__(self, detector: DetectBurstsFn):
        self.detector = detector
        self.soon, self.later, self.histories = FakeValue(), FakeBag(), FakeValue()
        self.flush, self.expire = FakeTimer(), FakeTimer()

    def send(self, *pairs):
        element = (3, (pairs[0][1].start_us, tuple(pairs)))
        self.detector.process(
            element, soon_state=self.soon, later_state=self.later, flush=self.flush
        )

    def fire(self, hour):
        return list(
            self.detector.on_flush(
                fired_at=Timestamp(micros=hour * HOUR_US),
                soon_state=self.soon,
                later_state=self.later,
                histories_state=self.histories,
                flush=self.flush,
                expire=self.expire,
            )
        )

    def waiting(self):
        """The counts the shard holds, near and later."""
        near = list(self.soon.value.counts.values()) if self.soon.value else []
        return near + [count for batch in self.later.items for _, count in batch]


def test_idle_topics_are_dropped_from_their_shard():
    shard = ShardHarness(
        DetectBurstsFn(BurstParams(warmup_windows=2, idle_windows=5), HOUR_US)
    )
    steady, quake = ("hashtag", "steady"), ("hashtag", "quake")

    def window(hour, *keys):
        shard.send(*((key, count(hour, 30, 600)) for key in keys))
        return shard.fire(hour + 1)

    for hour in range(3):
        window(hour, steady, quake)
    assert set(shard.histories.value) == {steady, quake} and shard.waiting() == []
    for hour in range(3, 8):
        window(hour, quake)
    # Five windows after its last count, 'steady' is dropped at the shard's next timer.
    assert set(shard.histories.value) == {quake}
    # The shard expires when its last topic goes idle.
    assert shard.expire.timers[""] == Timestamp(micros=(8 + 5) * HOUR_US)
    list(
        shard.detector.on_expire(
            fired_at=shard.expire.timers[""],
            histories_state=shard.histories,
            expire=shard.expire,
        )
    )
    assert shard.histories.value is None


def test_counts_wait_for_the_watermark_to_pass_their_window():
    shard = ShardHarness(
        DetectBurstsFn(BurstParams(warmup_windows=2, idle_windows=5), HOUR_US)
    )
    key = ("hashtag", "steady")
    for hour in (9, 8):
        shard.send((key, count(hour, 30, 600)))
    assert sorted(shard.flush.timers) == [str(9 * HOUR_US), str(10 * HOUR_US)]
    shard.fire(9)
    assert shard.histories.value[key].last_end_us == 9 * HOUR_US
    assert [waiting.start_us for waiting in shard.waiting()] == [9 * HOUR_US]


def test_a_topic_keeps_its_shard_in_every_process():
    code = (
        "from transforms.burst_counts import topic_shard; "
        "print(topic_shard(('hashtag', '雅安地震'), 256))"
    )
    project = Path(__file__).resolve().parents[1]
    shards = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=project,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert shards == {f"{topic_shard(('hashtag', '雅安地震'), 256)}\n"}


# --- On Prism, the local streaming runner -------------------------------------------

from tests.conftest import streaming_options  # noqa: E402


def prism_stream(prism_path: str, params: BurstParams):
    """The windows of ``stream_windows`` through the streaming detector on Prism;
    returns (pipeline, results)."""
    pipeline = beam.Pipeline(options=streaming_options(prism_path))
    windows = pipeline | windows_as_they_fire(stream_windows())
    return pipeline, windows | DetectBursts(params, HOUR_US, streaming=True)


@pytest.mark.streaming
def test_streaming_detector_on_prism_matches_batch(prism):
    pipeline, results = prism_stream(prism, PARAMS)
    bursts, episodes = rows_of(results)
    assert_that(bursts, equal_to([(("hashtag", "quake"), 30)]), label="Bursts")
    assert_that(episodes, equal_to([(("hashtag", "quake"), 30, 1)]), label="Episodes")
    pipeline.run().wait_until_finish()


@pytest.mark.streaming
def test_idle_topics_are_expired_on_prism(prism):
    from apache_beam.metrics.metric import MetricsFilter

    pipeline, _ = prism_stream(prism, BurstParams(warmup_windows=2, idle_windows=5))
    result = pipeline.run()
    result.wait_until_finish()
    expired = result.metrics().query(MetricsFilter().with_name("topics_expired"))[
        "counters"
    ]
    # 'steady' falls silent after hour 32 and is expired 5 windows later; 'quake' when
    # the watermark reaches the end of the stream.
    assert sum(counter.committed for counter in expired) == 2


def test_a_windows_panes_replace_each_other_while_it_waits():
    """Every pane repeats all of a window's topics; the shard keeps one count per
    topic and window (the latest pane), however many panes fire before the
    watermark passes, and judges that one."""
    params = BurstParams(warmup_windows=0, idle_windows=5, min_participants=1)
    shard = ShardHarness(DetectBurstsFn(params, HOUR_US))
    key = ("hashtag", "quake")
    shard.send((key, count(0, 3, 600)))
    shard.fire(1)
    for participants in (5, 9, 14):
        shard.send((key, count(4, participants, 600)))
    # An earlier pane arriving after a later one (bundles run in parallel) is ignored.
    shard.send((key, count(4, 9, 600)))
    assert shard.waiting() == [count(4, 14, 600)]
    assert str(5 * HOUR_US) in shard.flush.timers
    shard.fire(5)
    assert shard.waiting() == []
    history = judge_window(
        judge_window(None, count(0, 3, 600), params, HOUR_US)[0],
        count(4, 14, 600),
        params,
        HOUR_US,
    )[0]
    assert shard.histories.value[key] == history


def test_a_backfill_is_judged_as_in_batch_reading_later_windows_a_stretch_at_a_time():
    """A backfill delivers every window before any timer fires. The shard judges
    them in order as the timers fire, as a batch run does, and reads the counts of
    later windows once per ``soon_windows`` windows, not at every timer, also where
    the windows with counts lie hours apart."""
    params = BurstParams(warmup_windows=2, idle_windows=48, min_participants=5)
    shard = ShardHarness(DetectBurstsFn(params, HOUR_US, soon_windows=4))
    key = ("hashtag", "quake")
    hours = [*range(10), *range(30, 300, 27)]
    series = [count(hour, 40 if hour == 9 else 4, 600) for hour in hours]
    for item in reversed(series):
        shard.send((key, item))
    outputs = [output for hour in hours for output in shard.fire(hour + 1)]
    bursts = [
        output for output in outputs if not isinstance(output, beam.pvalue.TaggedOutput)
    ]
    batch_bursts, _ = judge_topic(series, params, HOUR_US)
    assert bursts == [(key, burst) for burst in batch_bursts] and len(bursts) == 1
    assert shard.waiting() == []
    assert len(series) == 20 and shard.later.reads == 5


def test_a_panes_counts_reach_the_detector_one_element_per_shard():
    keys = [("hashtag", f"topic{number}") for number in range(40)] + [
        ("mention", "任志强")
    ]
    pairs = [(key, count(4, 10, 600)) for key in keys]
    elements = counts_by_shard(4 * HOUR_US, pairs, 8)
    # Every shard hears of the window, with or without topics of its own in it.
    assert [shard for shard, _ in elements] == list(range(8))
    assert {start for _, (start, _) in elements} == {4 * HOUR_US}
    assert sorted(
        pair for _, (_, shard_pairs) in elements for pair in shard_pairs
    ) == sorted(pairs)
    assert all(
        topic_shard(key, 8) == shard
        for shard, (_, shard_pairs) in elements
        for key, _ in shard_pairs
    )


def test_the_stream_starts_at_the_earliest_window_seen_before_judging():
    """Windows can fire in any order when many close at once (a replay, a
    backfill): a shard that hears of hour 5 first still judges with the stream
    starting at hour 2, as a batch run does, once hour 2 has arrived."""
    params = BurstParams(warmup_windows=0, idle_windows=48, min_participants=1)
    shard = ShardHarness(DetectBurstsFn(params, HOUR_US))
    late_key, early_key = ("hashtag", "later"), ("hashtag", "earlier")
    shard.send((late_key, count(5, 30, 600, stream_start_hour=5)))
    shard.send((early_key, count(2, 30, 600, stream_start_hour=2)))
    shard.fire(3)
    shard.fire(6)
    expected = judge_window(
        None, count(5, 30, 600, stream_start_hour=2), params, HOUR_US
    )[0]
    assert shard.histories.value[late_key] == expected
    assert (
        shard.histories.value[late_key]
        != judge_window(None, count(5, 30, 600, stream_start_hour=5), params, HOUR_US)[
            0
        ]
    )
