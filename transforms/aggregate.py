"""Per-window aggregates: distinct posts, participants and topics of one window.

The logic is plain functions over a ``WindowPosts`` accumulator (a window's posts,
column-wise); ``AggregateWindowFn`` wraps them as a Beam ``CombineFn`` so the runner
lifts it: each bundle first folds its posts into one accumulator per window, only
those accumulators cross the shuffle, and the tables are built once per window. A
windowed GroupByKey keyed per topic would shuffle one element per topic mention and
pay Beam's per-key trigger bookkeeping for each; this shuffles one element per bundle
and window.
"""

from collections.abc import Iterable
from typing import NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.transforms.window import FixedWindows, WindowFn
from apache_beam.utils.timestamp import Timestamp

from schemas import tables
from schemas.records import PostSummary, WindowTables
from schemas.sketch import DEFAULT_LG_K, estimate, new_sketch
from transforms.carriers import carrier_columns
from transforms.window_posts import WindowPosts, post_id_key


class WindowAggregate(NamedTuple):
    """A window's results: one volume row, the topic rows and the topics' top
    carriers (``top_carriers``), column-wise."""

    posts: int
    reposts: int
    duplicates: int
    participants: int
    participants_sketch: bytes
    topic_columns: dict[str, list]
    carrier_columns: dict[str, list] | None = None


def add_post(accumulator: WindowPosts, post: PostSummary) -> WindowPosts:
    """Fold one post into the accumulator (copies are resolved by ``distinct_rows``);
    its carrier is its own id unless the summary names one."""
    carrier = post[5] if len(post) > 5 else None
    accumulator.append(post_id_key(post[0]), post[1], post[2], post[3], carrier)
    return accumulator


def merge_window_posts(accumulators: Iterable[WindowPosts]) -> WindowPosts:
    """Merge accumulators into the first: all their rows, copies included."""
    iterator = iter(accumulators)
    merged = next(iterator, None) or WindowPosts()
    for other in iterator:
        merged.extend(other)
    return merged


def distinct_rows(accumulator: WindowPosts) -> list[int]:
    """One row per distinct post id, in ascending id-key order.

    Of copies that differ, the one with the smallest (author, repost flag, topics)
    is kept, so the result does not depend on which copy arrived first or in which
    bundle.
    """
    if not len(accumulator):
        return []
    accumulator.unpack()
    ids = np.frombuffer(accumulator.ids, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1])))
    rows = order[starts].tolist()
    sizes = np.diff(np.append(starts, len(ids)))
    for group in np.flatnonzero(sizes > 1).tolist():
        copies = order[starts[group] : starts[group] + sizes[group]].tolist()
        rows[group] = min(copies, key=accumulator.row_summary)
    return rows


def aggregate_window(
    accumulator: WindowPosts,
    lg_k: int = DEFAULT_LG_K,
    carriers_from: int | None = None,
) -> WindowAggregate:
    """Count a window's distinct posts, reposts and participants, overall and per topic.

    Participants are HLL estimates (``lg_k`` sets the precision: relative standard
    error about 1.04 / sqrt(2 ** lg_k)); below a few hundred authors DataSketches
    keeps a list of coupons and the estimate is exact in practice. Topic rows come
    sorted by kind, then participants descending, then topic. Topics of at least
    ``carriers_from`` posts get their top carriers (``top_carriers``) in
    ``carrier_columns`` (kind, topic, post_key, posts, reposts): the events' evidence
    of which posts spread them (None: no carriers, where no events are built).

    Authors enter the sketches in post-id order: an HLL sketch's bytes (and its HIP
    estimate) depend on the order of updates, and the order posts reach the
    accumulator depends on how the runner split the bundles, so without it one and
    two workers would write different sketches for the same posts.
    """
    accumulator.unpack()
    rows = distinct_rows(accumulator)
    authors, reposts, ends, codes = (
        accumulator.authors,
        accumulator.reposts,
        accumulator.topic_ends,
        accumulator.topic_codes,
    )
    everyone = new_sketch(lg_k)
    repost_total = 0
    # Per topic code: [posts, reposts, sketch].
    per_code: list[list | None] = [None] * len(accumulator.pairs)
    for row in rows:
        author = authors[row]
        is_repost = reposts[row]
        everyone.update(author)
        repost_total += is_repost
        for code in codes[ends[row - 1] if row else 0 : ends[row]]:
            entry = per_code[code]
            if entry is None:
                entry = per_code[code] = [0, 0, new_sketch(lg_k)]
            entry[0] += 1
            entry[1] += is_repost
            entry[2].update(author)
    pairs = accumulator.pairs
    found = sorted(
        (
            (pairs[code], entry, estimate(entry[2]))
            for code, entry in enumerate(per_code)
            if entry is not None
        ),
        key=lambda row: (row[0][0], -row[2], row[0][1]),
    )
    columns: dict[str, list] = {
        "kind": [key[0] for key, _, _ in found],
        "topic": [key[1] for key, _, _ in found],
        "posts": [entry[0] for _, entry, _ in found],
        "participants": [participants for _, _, participants in found],
        "participants_sketch": [entry[2].serialize_compact() for _, entry, _ in found],
        "reposts": [entry[1] for _, entry, _ in found],
    }
    return WindowAggregate(
        posts=len(rows),
        reposts=repost_total,
        duplicates=len(accumulator) - len(rows),
        participants=estimate(everyone),
        participants_sketch=everyone.serialize_compact(),
        topic_columns=columns,
        carrier_columns=None
        if carriers_from is None
        else carrier_columns(accumulator, rows, per_code, carriers_from),
    )


def window_tables(
    aggregate: WindowAggregate, window_start_us: int, window_end_us: int
) -> dict[str, pa.Table]:
    """The ``volume`` and ``topics`` rows of one window as tables of their schemas,
    and the topics' top carriers (``schemas.tables.TOP_CARRIERS``: the events'
    evidence, not written)."""
    volume = pa.Table.from_pydict(
        {
            "window_start": [window_start_us],
            "window_end": [window_end_us],
            "posts": [aggregate.posts],
            "participants": [aggregate.participants],
            "reposts": [aggregate.reposts],
            "duplicates": [aggregate.duplicates],
            "participants_sketch": [aggregate.participants_sketch],
        },
        schema=tables.VOLUME,
    )
    rows = len(aggregate.topic_columns["topic"])
    topics = pa.Table.from_pydict(
        {
            "window_start": [window_start_us] * rows,
            "window_end": [window_end_us] * rows,
            **aggregate.topic_columns,
        },
        schema=tables.TOPICS,
    )
    result = {"volume": volume, "topics": topics}
    if aggregate.carrier_columns is not None:
        carriers = aggregate.carrier_columns
        rows = len(carriers["topic"])
        result[tables.TOP_CARRIERS_NAME] = pa.Table.from_pydict(
            {"window_start": [window_start_us] * rows, **carriers},
            schema=tables.TOP_CARRIERS,
        )
    return result


class AggregateWindowFn(beam.CombineFn):
    """PostSummary -> WindowAggregate, per window, counting redelivered copies once."""

    def __init__(
        self,
        lg_k: int = DEFAULT_LG_K,
        spill_dir: str | None = None,
        carriers_from: int | None = None,
    ):
        """``carriers_from``: the fewest posts of a topic whose top carriers are
        kept for the events (``transforms.events.evidence_floor``); None keeps
        none (streaming builds no events)."""
        self._lg_k = lg_k
        self._spill_dir = spill_dir
        self._carriers_from = carriers_from

    def create_accumulator(self) -> WindowPosts:
        return WindowPosts(self._spill_dir)

    def add_input(self, accumulator: WindowPosts, post: PostSummary) -> WindowPosts:
        return add_post(accumulator, post)

    def merge_accumulators(self, accumulators: Iterable[WindowPosts]) -> WindowPosts:
        return merge_window_posts(accumulators)

    def extract_output(self, accumulator: WindowPosts) -> WindowAggregate:
        return aggregate_window(accumulator, self._lg_k, self._carriers_from)


def window_bounds(window_fn: WindowFn, event_time_us: int) -> tuple[int, int]:
    """The (start, end) in epoch microseconds of the window ``window_fn`` puts an
    event of that time in (a non-merging window function with one window per event).

    ``FixedWindows`` are computed here with Beam's own formula on integer
    microseconds: its ``assign`` builds five ``Timestamp`` objects per post.
    """
    if type(window_fn) is FixedWindows:
        size = window_fn.size.micros
        start = event_time_us - (event_time_us - window_fn.offset.micros) % size
        return start, start + size
    (assigned,) = window_fn.assign(
        WindowFn.AssignContext(Timestamp(micros=event_time_us))
    )
    return assigned.start.micros, assigned.end.micros


class KeyByWindowFn(beam.DoFn):
    """Timestamped element -> ((window_start_us, window_end_us), element)."""

    def __init__(self, window_fn: WindowFn):
        self._window_fn = window_fn

    def process(self, element, timestamp=beam.DoFn.TimestampParam):
        yield window_bounds(self._window_fn, timestamp.micros), element


class AggregateWindows(beam.PTransform):
    """PCollection[PostSummary] (timestamped by event time) ->
    PCollection[(start_us, end_us, {"volume": pa.Table, "topics": pa.Table})],
    one element per window that has posts (per pane, in streaming).

    ``windowing`` None (batch): each post is keyed by the bounds of its window under
    ``window_fn`` and combined per key in the global window. A windowed combine gives
    the same rows but pays Beam's per-window trigger bookkeeping, which dominates a
    run over years of hourly windows. Streaming passes ``windowing`` (the keyword
    arguments of ``beam.WindowInto``: trigger, allowed lateness, accumulation mode),
    so windows fire on the watermark as Beam defines it, on every runner; the combine
    is still keyed by the window's bounds. A runner keeps a key's pending elements
    together, and Prism pops all of them at every trigger firing of that key: with one
    key for all windows (``CombineGlobally``) each early or late pane would cost every
    open window's posts, and the stream would run ahead of the burst detector
    (docs/streaming.md).
    """

    def __init__(
        self,
        window_fn: WindowFn,
        lg_k: int = DEFAULT_LG_K,
        windowing: dict | None = None,
        spill_dir: str | None = None,
        carriers_from: int | None = None,
    ):
        super().__init__()
        self._window_fn = window_fn
        self._lg_k = lg_k
        self._windowing = windowing
        self._spill_dir = spill_dir
        self._carriers_from = carriers_from

    def expand(self, posts: beam.PCollection) -> beam.PCollection:
        if self._windowing is not None:
            posts = posts | "WindowByEventTime" >> beam.WindowInto(
                self._window_fn, **self._windowing
            )
        return (
            posts
            | "KeyByWindow" >> beam.ParDo(KeyByWindowFn(self._window_fn))
            | "CombinePerWindowKey"
            >> beam.CombinePerKey(
                AggregateWindowFn(self._lg_k, self._spill_dir, self._carriers_from)
            )
            | "ToTables"
            >> beam.MapTuple(
                lambda bounds, aggregate: (*bounds, window_tables(aggregate, *bounds))
            ).with_output_types(WindowTables)
        )
