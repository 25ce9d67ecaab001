"""Burst detection in Beam: the burst model (``transforms.burst_model``) applied per
topic, in event-time order.

Batch: topics are spread over ``BATCH_SHARDS`` shards, each shard's counts of every
window gathered (``GatherShardCountsFn``) and each topic's windows judged at once
(``JudgeShardFn``). Streaming: ``transforms.bursts_streaming.DetectBurstsFn`` keeps
each shard of topics' history in state and judges a window once the watermark has
passed it; both judge with ``judge_window`` in event-time order, so both give the
same rows.
"""

from collections.abc import Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows, TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from schemas.records import WindowTables
from transforms.burst_counts import (
    BURSTS_TAG,
    EPISODES_TAG,
    column_values,
    topic_shard,
    topic_window_counts,
)
from transforms.burst_model import (
    Burst,
    BurstParams,
    Episode,
    WindowCount,
    judge_topic,
)
from transforms.bursts_streaming import STATE_SHARDS, DetectBurstsFn, counts_by_shard

# Batch: topics are judged in this many shards, the step's parallelism; each window
# sends a part to every shard (so each knows the stream's start), and each bundle
# gathers its parts per shard before the shuffle.
BATCH_SHARDS = 16


# A window's topic counts of one shard, as plain values (which Beam's default coder
# encodes without pickling): (start_us, end_us, window participants, kinds, topics,
# posts, participants), the last four one item per topic row.
ShardCounts = tuple[int, int, int, list, list, list, list]


def shard_window_counts(
    element: WindowTables, shards: int
) -> list[tuple[int, ShardCounts]]:
    """A window's tables -> (shard, its ``ShardCounts``) for every shard, one with no
    topic rows included: every shard learns of every window, so each knows the
    stream's first window without waiting for a side input."""
    start_us, end_us, by_table = element
    (window_participants,) = column_values(by_table["volume"], "participants")
    topics = by_table["topics"]
    filled: dict[int, ShardCounts] = {}
    for row in zip(
        column_values(topics, "kind"),
        column_values(topics, "topic"),
        column_values(topics, "posts"),
        column_values(topics, "participants"),
        strict=True,
    ):
        shard = topic_shard(row[:2], shards)
        part = filled.get(shard)
        if part is None:
            columns = ([], [], [], [])
            part = filled[shard] = (start_us, end_us, window_participants, *columns)
        for column, value in zip(part[3:], row, strict=True):
            column.append(value)
    # Shards without rows of this window share one part with empty columns.
    empty = (start_us, end_us, window_participants, (), (), (), ())
    return [(shard, filled.get(shard, empty)) for shard in range(shards)]


def judge_shard(
    parts: Iterable[ShardCounts],
    stream_start_us: int,
    params: BurstParams,
    window_us: int,
) -> tuple[list[tuple[tuple[str, str], Burst]], list[tuple[tuple[str, str], Episode]]]:
    """All windows' counts of one shard -> its topics' bursts and episodes, each topic
    judged over all its windows at once (``judge_topic``), in (kind, topic) order."""
    by_topic: dict[tuple[str, str], list[WindowCount]] = {}
    for start_us, end_us, window_participants, kinds, topics, posts, people in parts:
        for kind, topic, count, participants in zip(
            kinds, topics, posts, people, strict=True
        ):
            by_topic.setdefault((kind, topic), []).append(
                WindowCount(
                    start_us,
                    end_us,
                    count,
                    participants,
                    window_participants,
                    stream_start_us,
                )
            )
    bursts, episodes = [], []
    for key in sorted(by_topic):
        # judge_topic returns at once for a topic that cannot burst (may_burst).
        found, closed = judge_topic(by_topic[key], params, window_us)
        bursts.extend((key, burst) for burst in found)
        episodes.extend((key, episode) for episode in closed)
    return bursts, episodes


class GatherShardCountsFn(beam.CombineFn):
    """A shard's ``ShardCounts`` of every window -> (the earliest window start, the
    parts with topic rows). Beam lifts it: each bundle gathers its windows' parts
    per shard before the shuffle, so a few elements per shard cross it, not one per
    topic and window."""

    def create_accumulator(self) -> list:
        return [None, []]

    def add_input(self, accumulator: list, part: ShardCounts) -> list:
        if accumulator[0] is None or part[0] < accumulator[0]:
            accumulator[0] = part[0]
        if part[3]:
            accumulator[1].append(part)
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[list]) -> list:
        merged = self.create_accumulator()
        for first, parts in accumulators:
            if first is not None and (merged[0] is None or first < merged[0]):
                merged[0] = first
            merged[1].extend(parts)
        return merged

    def extract_output(self, accumulator: list) -> tuple:
        return accumulator[0], accumulator[1]


class JudgeShardFn(beam.DoFn):
    """(shard, (stream start, [ShardCounts])) -> ((kind, topic), Burst) on the main
    output and ((kind, topic), Episode) on ``EPISODES_TAG``: batch, all windows of
    a shard's topics at once (``judge_shard``)."""

    def __init__(self, params: BurstParams, window_us: int):
        self._params = params
        self._window_us = window_us
        self._bursts = Metrics.counter(self.__class__, "bursting_windows")

    def process(self, element):
        _, (stream_start_us, parts) = element
        bursts, episodes = judge_shard(
            parts, stream_start_us, self._params, self._window_us
        )
        self._bursts.inc(len(bursts))
        yield from bursts
        for key_episode in episodes:
            yield beam.pvalue.TaggedOutput(EPISODES_TAG, key_episode)


class DetectBursts(beam.PTransform):
    """PCollection[(start_us, end_us, {"volume", "topics": pa.Table})] (the output of
    ``AggregateWindows``) -> {"bursts": ((kind, topic), Burst),
    "episodes": ((kind, topic), Episode)}.

    ``streaming`` False: each window's topic counts go to ``batch_shards`` shards
    by topic (every shard gets every window, for the stream's start, the earliest
    window), gathered per shard and judged a topic at a time (``judge_topic``).
    True: windows are judged as the watermark passes them (``DetectBurstsFn``, its
    state keyed by ``topic_shard`` over ``state_shards`` shards) and the stream
    starts at the earliest window the detector has seen when it judges, which the
    watermark makes the stream's first. Both judge with
    ``judge_window`` in event-time order, so both give the same rows.
    """

    def __init__(
        self,
        params: BurstParams,
        window_us: int,
        streaming: bool = False,
        state_shards: int = STATE_SHARDS,
        batch_shards: int = BATCH_SHARDS,
    ):
        super().__init__()
        self._params = params
        self._window_us = window_us
        self._streaming = streaming
        self._state_shards = state_shards
        self._batch_shards = batch_shards

    def expand(self, windows: beam.PCollection):
        global_windows = windows | "GlobalWindow" >> beam.WindowInto(GlobalWindows())
        if self._streaming:
            # Each count carries its own window's start for now: the detector sets the
            # stream's start when it judges (windows may fire in any order).
            shards = self._state_shards
            sharded = tuple[
                int, tuple[int, tuple[tuple[tuple[str, str], WindowCount], ...]]
            ]
            counts = global_windows | "TopicCountsByShard" >> beam.FlatMap(
                lambda element: (
                    TimestampedValue(item, Timestamp(micros=element[1] - 1))
                    for item in counts_by_shard(
                        element[0], topic_window_counts(element, element[0]), shards
                    )
                )
            ).with_output_types(sharded)
            judge = beam.ParDo(
                DetectBurstsFn(self._params, self._window_us)
            ).with_input_types(sharded)
        else:
            shards = self._batch_shards
            counts = (
                global_windows
                | "CountsByShard"
                >> beam.FlatMap(lambda element: shard_window_counts(element, shards))
                | "GatherByShard" >> beam.CombinePerKey(GatherShardCountsFn())
            )
            judge = beam.ParDo(JudgeShardFn(self._params, self._window_us))
        results = counts | "Judge" >> judge.with_outputs(EPISODES_TAG, main=BURSTS_TAG)
        return {BURSTS_TAG: results[BURSTS_TAG], EPISODES_TAG: results[EPISODES_TAG]}
