"""The streaming burst detector: ``DetectBurstsFn`` keeps each shard of topics'
history in state and judges a window once the watermark has passed it, with
event-time timers; windows a topic is absent from decay its history, and a topic
idle for ``idle_windows`` is expired by a timer at the same point as in batch, so
both give the same rows (``transforms.bursts``).
"""

import heapq
from collections.abc import Iterable
from typing import NamedTuple

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms import userstate
from apache_beam.utils.timestamp import Timestamp

from transforms.burst_counts import EPISODES_TAG, topic_shard
from transforms.burst_model import (
    Burst,
    BurstParams,
    Episode,
    TopicHistory,
    WindowCount,
    is_later_pane,
    judge_window,
    latest_panes,
)

# How far ahead the streaming detector's near state reaches, in windows (and in
# windows with counts, where they are sparse): the bag of later counts is read
# once per this many windows judged.
SOON_WINDOWS = 168


# Keys of the streaming detector's state: topics are spread over this many shards.
# It bounds what a runner keeps per key and the step's parallelism; every pane
# costs a state read and write per shard it touches, and every window a timer per
# shard, so a few shards keep up with a fast replay where many fall behind
# (docs/streaming.md, benchmarks/streaming_memory.py).
STATE_SHARDS = 4


# The streaming detector's waiting counts: (topic key, window start) -> the count of
# the latest pane seen for that topic and window.
PendingCounts = dict[tuple[tuple[str, str], int], WindowCount]


def keep_latest_pane(
    pending: PendingCounts, key: tuple[str, str], count: WindowCount
) -> bool:
    """Store ``count`` in ``pending`` (in place) if it is a later pane of its topic
    and window than the one there (``is_later_pane``) -> whether it was stored: a
    window's early panes are replaced, not piled up, while it waits for the
    watermark."""
    slot = (key, count.start_us)
    if not is_later_pane(count, pending.get(slot)):
        return False
    pending[slot] = count
    return True


def take_ready_counts(
    pending: PendingCounts, now_us: int
) -> list[tuple[tuple[str, str], WindowCount]]:
    """Remove from ``pending`` (in place) and return the counts whose window ended
    at or before ``now_us``."""
    ready = [slot for slot, count in pending.items() if count.end_us <= now_us]
    return [(slot[0], pending.pop(slot)) for slot in ready]


class SoonCounts(NamedTuple):
    """The streaming detector's counts of windows ending by ``horizon_us`` (latest
    pane per topic and window); counts of later windows wait apart, in a bag that is
    read only when a timer passes the horizon. ``first_start_us``: the earliest
    window start seen, which is the stream's first once the watermark has passed
    it."""

    horizon_us: int
    counts: PendingCounts
    first_start_us: int | None = None


def route_counts(
    soon: SoonCounts, keyed_counts: Iterable[tuple[tuple[str, str], WindowCount]]
) -> tuple[set[int], list[tuple[tuple[str, str], WindowCount]]]:
    """Counts arriving -> (window ends of those stored in ``soon`` (in place), the
    pairs of windows past its horizon, for the bag)."""
    stored_ends, later = set(), []
    for key, count in keyed_counts:
        if count.end_us > soon.horizon_us:
            later.append((key, count))
        elif keep_latest_pane(soon.counts, key, count):
            stored_ends.add(count.end_us)
    return stored_ends, later


def refill_soon(
    soon: SoonCounts,
    later: Iterable[tuple[tuple[str, str], WindowCount]],
    now_us: int,
    windows: int,
    window_us: int,
) -> tuple[SoonCounts, list[tuple[tuple[str, str], WindowCount]]]:
    """Move the bag's counts of windows ending within ``windows`` windows of
    ``now_us``, and of its next ``windows`` windows with counts however far, into
    ``soon`` -> (``soon`` with its horizon past them, the pairs still later). A
    backfill delivers years of windows before the watermark moves; moving them a
    stretch at a time keeps each timer's reads to the windows near it, and a
    stretch of at least ``windows`` windows with counts keeps a sparse one from
    costing a read per timer."""
    later = list(later)
    ends = heapq.nsmallest(windows, {count.end_us for _, count in later})
    horizon_us = max([now_us + windows * window_us, soon.horizon_us, *ends[-1:]])
    counts, still_later = soon.counts, []
    for key, count in later:
        if count.end_us > horizon_us:
            still_later.append((key, count))
        else:
            keep_latest_pane(counts, key, count)
    return soon._replace(horizon_us=horizon_us, counts=counts), still_later


def counts_by_shard(
    window_start_us: int,
    keyed_counts: Iterable[tuple[tuple[str, str], WindowCount]],
    shards: int,
) -> list[tuple[int, tuple[int, tuple[tuple[tuple[str, str], WindowCount], ...]]]]:
    """A pane's ((kind, topic), WindowCount) pairs -> (shard, (the window's start,
    the pairs of that shard)) for every shard, one element per shard rather than one
    per topic: the streaming detector then reads and writes a shard's state once per
    pane, not once per topic of it, and every shard learns of every window (for the
    stream's start) even one with none of its topics."""
    grouped: dict[int, list[tuple[tuple[str, str], WindowCount]]] = {
        shard: [] for shard in range(shards)
    }
    for key, count in keyed_counts:
        grouped[topic_shard(key, shards)].append((key, count))
    return [
        (shard, (window_start_us, tuple(pairs))) for shard, pairs in grouped.items()
    ]


def with_stream_start(
    ready: list[tuple[tuple[str, str], WindowCount]], stream_start_us: int | None
) -> list[tuple[tuple[str, str], WindowCount]]:
    """Counts about to be judged, their stream start set to ``stream_start_us`` (left
    as they are when it is None)."""
    if stream_start_us is None:
        return ready
    return [
        (key, count._replace(stream_start_us=stream_start_us)) for key, count in ready
    ]


def judge_ready_counts(
    histories: dict[tuple[str, str], TopicHistory],
    ready: Iterable[tuple[tuple[str, str], WindowCount]],
    params: BurstParams,
    window_us: int,
) -> tuple[
    list[tuple[tuple[str, str], Burst]], list[tuple[tuple[str, str], Episode]], int
]:
    """Judge counts whose windows the watermark has passed against ``histories``
    (updated in place) -> (bursts, closed episodes, panes skipped as late).

    Each topic's windows are judged in event-time order, the latest pane of each; a
    pane of a window its topic has already been judged on is skipped.
    """
    by_topic: dict[tuple[str, str], list[WindowCount]] = {}
    for key, count in ready:
        by_topic.setdefault(key, []).append(count)
    bursts, episodes, late = [], [], 0
    for key, counts in by_topic.items():
        history = histories.get(key)
        for count in latest_panes(counts):
            if history is not None and count.end_us <= history.last_end_us:
                late += 1
                continue
            history, burst, closed = judge_window(history, count, params, window_us)
            episodes.extend((key, episode) for episode in closed)
            if burst is not None:
                bursts.append((key, burst))
        if history is not None:
            histories[key] = history
    return bursts, episodes, late


def close_quiet_episodes(
    histories: dict[tuple[str, str], TopicHistory], now_us: int, window_us: int
) -> tuple[list[tuple[tuple[str, str], Episode]], set[int]]:
    """Episodes whose next window ended before ``now_us`` without a burst, removed
    from ``histories``; and the window ends at which the still open ones must be
    looked at again."""
    closed, recheck = [], set()
    for key, history in histories.items():
        if history.episode is None:
            continue
        if history.episode.end_us < now_us:
            closed.append((key, history.episode))
            histories[key] = history._replace(episode=None)
        else:
            recheck.add(history.episode.end_us + window_us)
    return closed, recheck


def expire_idle_topics(
    histories: dict[tuple[str, str], TopicHistory], now_us: int, idle_us: int
) -> tuple[list[tuple[tuple[str, str], Episode]], int]:
    """Drop topics with no count for ``idle_us`` before ``now_us`` (``judge_window``
    would start them afresh anyway) -> (their open episodes, how many were dropped)."""
    idle = [
        key
        for key, history in histories.items()
        if history.last_end_us + idle_us <= now_us
    ]
    episodes = [
        (key, histories[key].episode)
        for key in idle
        if histories[key].episode is not None
    ]
    for key in idle:
        del histories[key]
    return episodes, len(idle)


class DetectBurstsFn(beam.DoFn):
    """(shard, ((kind, topic), WindowCount) pairs of one pane) -> ((kind, topic),
    Burst) on the main output and ((kind, topic), Episode) on ``EPISODES_TAG``.

    Streaming. State is kept per shard of topics (``topic_shard``), not per topic: a
    runner may keep bookkeeping for every key a stateful step has seen, for as long
    as the step's window lives (by its source, Prism keeps an emptied state entry per
    key), and the detector runs in the global window, so per-topic keys would grow it
    with every new hashtag or mention; a fixed number of shards bounds that
    (``STATE_SHARDS`` says how many and why). A pane's counts arrive as one element
    per shard (``counts_by_shard``).

    A shard holds its topics' histories in one value and, in another, the latest
    pane's count per topic and window until the watermark passes the window's end
    (an event-time timer per window end, so windows are judged in event-time order
    however they arrive). Every pane of a window repeats all its topics, so keeping
    only the latest bounds that state by the open windows' topics, not by the panes
    fired (a bag of every pane, rewritten at each timer, would grow with every early
    pane). Counts of windows beyond the next
    ``soon_windows`` windows wait in a bag of their own (``SoonCounts``), so a
    backfill, which delivers years of windows before their timers fire, costs each
    timer the windows near it, not all of them. A timer one window after a burst
    closes its episode when the topic falls silent; topics idle for ``idle_windows``
    are dropped at the next timer of their shard, and a shard whose topics have all
    gone idle is cleared by its expiry timer. (Batch runs judge each topic's grouped
    counts with ``judge_topic`` instead: keyed state costs Beam's state cache a size
    estimate per access, a large share of a batch run.)
    """

    SOON = userstate.ReadModifyWriteStateSpec("soon", PickleCoder())
    LATER = userstate.BagStateSpec("later", PickleCoder())
    HISTORIES = userstate.ReadModifyWriteStateSpec("histories", PickleCoder())
    FLUSH = userstate.TimerSpec("flush", userstate.TimeDomain.WATERMARK)
    EXPIRE = userstate.TimerSpec("expire", userstate.TimeDomain.WATERMARK)

    def __init__(
        self, params: BurstParams, window_us: int, soon_windows: int = SOON_WINDOWS
    ):
        self._params = params
        self._window_us = window_us
        self._idle_us = params.idle_windows * window_us
        self._soon_windows = soon_windows
        self._bursts = Metrics.counter(self.__class__, "bursting_windows")
        self._late = Metrics.counter(self.__class__, "counts_after_judgement")
        self._expired = Metrics.counter(self.__class__, "topics_expired")

    def process(
        self,
        element: tuple[
            int, tuple[int, tuple[tuple[tuple[str, str], WindowCount], ...]]
        ],
        soon_state=beam.DoFn.StateParam(SOON),
        later_state=beam.DoFn.StateParam(LATER),
        flush=beam.DoFn.TimerParam(FLUSH),
    ):
        _, (window_start_us, keyed_counts) = element
        soon = soon_state.read() or SoonCounts(0, {})
        earlier = soon.first_start_us is None or window_start_us < soon.first_start_us
        if earlier:
            soon = soon._replace(first_start_us=window_start_us)
        stored_ends, later = route_counts(soon, keyed_counts)
        if stored_ends or earlier:
            soon_state.write(soon)
        if later:
            later_state.add(tuple(later))
        for end_us in stored_ends | {count.end_us for _, count in later}:
            flush.set(Timestamp(micros=end_us), dynamic_timer_tag=str(end_us))

    @userstate.on_timer(FLUSH)
    def on_flush(
        self,
        fired_at=beam.DoFn.TimestampParam,
        soon_state=beam.DoFn.StateParam(SOON),
        later_state=beam.DoFn.StateParam(LATER),
        histories_state=beam.DoFn.StateParam(HISTORIES),
        flush=beam.DoFn.TimerParam(FLUSH),
        expire=beam.DoFn.TimerParam(EXPIRE),
    ):
        now_us = fired_at.micros
        histories = histories_state.read() or {}
        soon = soon_state.read() or SoonCounts(0, {})
        refilled = now_us > soon.horizon_us
        if refilled:
            later = [pair for batch in later_state.read() for pair in batch]
            soon, still_later = refill_soon(
                soon, later, now_us, self._soon_windows, self._window_us
            )
            later_state.clear()
            if still_later:
                later_state.add(tuple(still_later))
        ready = with_stream_start(
            take_ready_counts(soon.counts, now_us), soon.first_start_us
        )
        bursts, episodes, late = judge_ready_counts(
            histories, ready, self._params, self._window_us
        )
        self._late.inc(late)
        self._bursts.inc(len(bursts))
        yield from bursts
        if refilled or ready:
            soon_state.write(soon)
        closed, recheck = close_quiet_episodes(histories, now_us, self._window_us)
        for end_us in recheck:
            flush.set(Timestamp(micros=end_us), dynamic_timer_tag=str(end_us))
        for key_episode in episodes + closed + self._drop_idle(histories, now_us):
            yield beam.pvalue.TaggedOutput(EPISODES_TAG, key_episode)
        self._store(histories, histories_state, expire)

    @userstate.on_timer(EXPIRE)
    def on_expire(
        self,
        fired_at=beam.DoFn.TimestampParam,
        histories_state=beam.DoFn.StateParam(HISTORIES),
        expire=beam.DoFn.TimerParam(EXPIRE),
    ):
        histories = histories_state.read() or {}
        for key_episode in self._drop_idle(histories, fired_at.micros):
            yield beam.pvalue.TaggedOutput(EPISODES_TAG, key_episode)
        self._store(histories, histories_state, expire)

    def _drop_idle(
        self, histories, now_us: int
    ) -> list[tuple[tuple[str, str], Episode]]:
        """``expire_idle_topics`` on the shard's histories, counted in the
        ``topics_expired`` metric; returns the episodes still open in them."""
        expired, dropped = expire_idle_topics(histories, now_us, self._idle_us)
        self._expired.inc(dropped)
        return expired

    def _store(self, histories, histories_state, expire) -> None:
        """Write the shard's histories back (or clear them when none is left) and set
        the expiry timer to when the last of them goes idle."""
        if not histories:
            histories_state.clear()
            return
        histories_state.write(histories)
        latest_us = max(history.last_end_us for history in histories.values())
        expire.set(Timestamp(micros=latest_us + self._idle_us))
