"""Reposts are participation: credit each repost to the topics of its chain's root,
and count a redelivered post once, in the window of its earliest copy.

A repost names the post it spreads in ``repost_of``: the root itself (Weibo's API)
or its direct parent (the cascades), so chains have any depth. A repost counts as a
post of its own text's topics and of every topic of the post at the root of its
chain (a set union); the root is the first post up the chain that is not a repost.
When the chain leaves the input (an ancestor missing), runs into a cycle or a
self-repost, nothing is credited: the repost keeps its own topics. The root's text is
analysed once; reposts take its (kind, topic) pairs as they are.

Batch (``CreditReposts``) resolves every chain in one gather: each post's light edge
(id key, parent key, event time: 25 bytes) is combined into numpy arrays on one
worker, and ``resolve_chains`` jumps pointers there, in a number of array passes
that grows with the log of the deepest chain, and no shuffle round at all beyond
the one gather. The edges are what a distributed pointer-jumping round would
shuffle anyway, once per round and with the topics riding along; one worker holds
them for a hundred million posts in about 2.5 GB. The same gather gives each id's
earliest event time, so every copy of a redelivered id is restamped to it and the
per-window de-duplication (``transforms.aggregate``) counts the later copies as
duplicates of the first window.
"""

from array import array
from collections.abc import Iterable
from typing import NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from transforms.aggregate import PostSummary, post_id_key

Pair = tuple[str, str]


def credited_topics(own: tuple[Pair, ...], root: tuple[Pair, ...]) -> tuple[Pair, ...]:
    """A repost's topics: its own, then its root's not already among them."""
    if not root:
        return own
    return tuple(dict.fromkeys(own + root))


class ChainEdges:
    """Accumulator: one row per post copy (id key, parent key, repost flag, time)."""

    __slots__ = ("ids", "parents", "is_repost", "times")

    def __init__(self) -> None:
        self.ids = array("q")
        self.parents = array("q")
        self.is_repost = bytearray()
        self.times = array("q")

    def add(self, id_key: int, parent_key: int | None, time_us: int) -> None:
        self.ids.append(id_key)
        self.parents.append(0 if parent_key is None else parent_key)
        self.is_repost.append(parent_key is not None)
        self.times.append(time_us)

    def extend(self, other: "ChainEdges") -> None:
        self.ids.extend(other.ids)
        self.parents.extend(other.parents)
        self.is_repost.extend(other.is_repost)
        self.times.extend(other.times)

    def __getstate__(self) -> tuple:
        return (
            self.ids.tobytes(),
            self.parents.tobytes(),
            bytes(self.is_repost),
            self.times.tobytes(),
        )

    def __setstate__(self, state: tuple) -> None:
        self.__init__()
        ids, parents, is_repost, times = state
        self.ids.frombytes(ids)
        self.parents.frombytes(parents)
        self.is_repost.extend(is_repost)
        self.times.frombytes(times)


class ChainLookup(NamedTuple):
    """What each post copy needs from the resolved chains, for the ids that need
    anything: sorted ``keys``; each one's earliest event time, its root's key and
    whether it is credited (a repost whose chain reaches a root in the input);
    ``roots``: the sorted keys of the roots credited reposts point to."""

    keys: np.ndarray
    first_times: np.ndarray
    root_keys: np.ndarray
    credited: np.ndarray
    roots: np.ndarray
    # Pointer-jumping passes the resolution took (about log2 of the deepest chain).
    passes: int

    def find(self, id_key: int) -> int:
        """The row of ``id_key``, or -1."""
        at = int(np.searchsorted(self.keys, id_key))
        return at if at < len(self.keys) and self.keys[at] == id_key else -1

    def is_root(self, id_key: int) -> bool:
        at = int(np.searchsorted(self.roots, id_key))
        return at < len(self.roots) and self.roots[at] == id_key


def resolve_chains(edges: ChainEdges, credit: bool = True) -> ChainLookup:
    """Resolve every repost chain to its root, and every id to its earliest copy.

    Copies of an id take the parent of the earliest copy (ties: the smallest parent
    key). Pointer jumping: each id points at its parent (a root, or an id whose
    parent is missing, at itself), and every pass replaces each pointer by its
    pointer's pointer, so after k passes an id points 2**k steps up; it stops when
    no pointer changes, or after log2(ids) + 1 passes (only cycles keep changing).
    An id is credited when it is a repost and its final pointer is a fixed point
    that is not a repost: a cycle's members are all reposts, and a chain cut by a
    missing parent ends on a repost, so neither credits anything.
    """
    ids = np.frombuffer(edges.ids, dtype=np.int64)
    parents = np.frombuffer(edges.parents, dtype=np.int64)
    is_repost = np.frombuffer(bytes(edges.is_repost), dtype=np.bool_)
    times = np.frombuffer(edges.times, dtype=np.int64)
    if not len(ids):
        empty = np.zeros(0, dtype=np.int64)
        return ChainLookup(empty, empty, empty, np.zeros(0, np.bool_), empty, 0)
    order = np.lexsort((parents, ~is_repost, times, ids))
    sorted_ids = ids[order]
    first = np.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1]))
    copies = np.diff(np.append(np.flatnonzero(first), len(ids)))
    keep = order[first]
    keys, first_times = ids[keep], times[keep]
    has_parent, parent_keys = is_repost[keep], parents[keep]
    count = len(keys)
    self_index = np.arange(count)
    pointer, passes = self_index, 0
    credited = np.zeros(count, dtype=np.bool_)
    if credit and count:
        at = np.minimum(np.searchsorted(keys, parent_keys), count - 1)
        found = has_parent & (keys[at] == parent_keys)
        pointer = np.where(found, at, self_index)
        for _ in range(count.bit_length() + 1):
            jumped = pointer[pointer]
            passes += 1
            if np.array_equal(jumped, pointer):
                break
            pointer = jumped
        settled = pointer[pointer] == pointer
        credited = has_parent & settled & ~has_parent[pointer]
    needed = credited | (copies > 1)
    root_keys = keys[pointer]
    return ChainLookup(
        keys=keys[needed],
        first_times=first_times[needed],
        root_keys=root_keys[needed],
        credited=credited[needed],
        roots=np.unique(root_keys[credited]),
        passes=passes,
    )


def chain_edge(summary: PostSummary, time_us: int) -> tuple[int, int | None, int]:
    """A post copy's light edge: (its id key, its parent's id key or None, time)."""
    parent = summary[4] if len(summary) > 4 else None
    return (
        post_id_key(summary[0]),
        None if parent is None else post_id_key(parent),
        time_us,
    )


class GatherChainsFn(beam.CombineFn):
    """Edges of all posts -> ``ChainLookup`` (in one worker: see the module doc)."""

    def __init__(self, credit: bool = True):
        self._credit = credit

    def create_accumulator(self) -> ChainEdges:
        return ChainEdges()

    def add_input(self, accumulator: ChainEdges, edge: tuple) -> ChainEdges:
        accumulator.add(*edge)
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[ChainEdges]) -> ChainEdges:
        iterator = iter(accumulators)
        merged = next(iterator, None) or ChainEdges()
        for other in iterator:
            merged.extend(other)
        return merged

    def extract_output(self, accumulator: ChainEdges) -> ChainLookup:
        return resolve_chains(accumulator, self._credit)


class GatherRootTopicsFn(beam.CombineFn):
    """(root key, time, topics) of root copies -> {root key: topics of its earliest
    copy} (ties between copies of one time: the smallest topics)."""

    def create_accumulator(self) -> dict:
        return {}

    def add_input(self, accumulator: dict, row: tuple) -> dict:
        key, time_us, topics = row
        held = accumulator.get(key)
        if held is None or (time_us, topics) < held:
            accumulator[key] = (time_us, topics)
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[dict]) -> dict:
        iterator = iter(accumulators)
        merged = next(iterator, None) or {}
        for other in iterator:
            for key, held in other.items():
                self.add_input(merged, (key, *held))
        return merged

    def extract_output(self, accumulator: dict) -> dict:
        return {key: topics for key, (_, topics) in accumulator.items()}


def credit_summary(
    summary: tuple, time_us: int, lookup: ChainLookup, root_topics: dict
) -> tuple[PostSummary, int]:
    """One post copy -> (its summary with credited topics, its counted event time)."""
    post_id, author, is_repost, topics = summary[0], summary[1], summary[2], summary[3]
    row = lookup.find(post_id_key(post_id))
    if row >= 0:
        time_us = int(lookup.first_times[row])
        if lookup.credited[row]:
            topics = credited_topics(
                tuple(topics), root_topics.get(int(lookup.root_keys[row]), ())
            )
    return PostSummary(post_id, author, is_repost, tuple(topics)), time_us


class RootTopicsFn(beam.DoFn):
    """Summary rows of roots that credited reposts point to -> (key, time, topics)."""

    def process(self, summary, lookup, timestamp=beam.DoFn.TimestampParam):
        key = post_id_key(summary[0])
        if lookup.is_root(key):
            yield key, timestamp.micros, tuple(summary[3])


class CreditFn(beam.DoFn):
    """Summary row -> credited ``PostSummary`` stamped with its id's first time."""

    def __init__(self):
        self._credited = Metrics.counter(self.__class__, "reposts_credited")
        self._restamped = Metrics.counter(self.__class__, "copies_restamped")

    def process(self, summary, lookup, root_topics, timestamp=beam.DoFn.TimestampParam):
        credited, time_us = credit_summary(
            summary, timestamp.micros, lookup, root_topics
        )
        if len(credited.topics) != len(summary[3]):
            self._credited.inc()
        if time_us != timestamp.micros:
            self._restamped.inc()
        yield TimestampedValue(credited, Timestamp(micros=time_us))


def _as_row(summary):
    # A plain tuple: Beam encodes it in about 60% of a NamedTuple's bytes, and the
    # summaries wait between stages once, for the chains to be resolved.
    return tuple(summary)


class CreditReposts(beam.PTransform):
    """PCollection[PostSummary] (event-time stamped, batch) -> the same posts with
    reposts credited to their roots' topics (when ``credit``) and every copy of an
    id stamped with its earliest copy's event time."""

    def __init__(self, credit: bool = True):
        super().__init__()
        self._credit = credit

    def expand(self, summaries: beam.PCollection) -> beam.PCollection:
        rows = summaries | "SummaryRows" >> beam.Map(_as_row)
        lookup = beam.pvalue.AsSingleton(
            rows
            | "ChainEdges"
            >> beam.Map(
                lambda row, t=beam.DoFn.TimestampParam: chain_edge(row, t.micros)
            )
            | "ResolveChains" >> beam.CombineGlobally(GatherChainsFn(self._credit))
        )
        root_topics = beam.pvalue.AsSingleton(
            rows
            | "RootTopics" >> beam.ParDo(RootTopicsFn(), lookup)
            | "GatherRootTopics" >> beam.CombineGlobally(GatherRootTopicsFn())
        )
        return rows | "Credit" >> beam.ParDo(CreditFn(), lookup, root_topics)
