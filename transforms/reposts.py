"""Reposts are participation: credit each repost to the topics of its chain's root,
and count a redelivered post once, in the window of its earliest copy (batch).

A repost names the post it spreads in ``repost_of``: the root itself (Weibo's API)
or its direct parent (the cascades), so chains have any depth. A repost counts as a
post of its own text's topics and of every topic of the post at the root of its
chain (a set union); the root is the first post up the chain that is not a repost.
When the chain leaves the input (an ancestor missing), runs into a cycle or a
self-repost, nothing is credited: the repost keeps its own topics. The root's text is
analysed once; reposts take its (kind, topic) pairs as they are.

``AggregateCreditedWindows`` resolves every chain in one gather: each post's light
edge (id key, parent key, event time: 25 bytes) is combined, as posts are read, into
numpy arrays on one worker, and ``resolve_chains`` jumps pointers there, in a number
of array passes that grows with the log of the deepest chain, with no shuffle round
beyond that one gather. The edges are what a distributed pointer-jumping round
would shuffle anyway, once per round; one worker holds them for a hundred million
posts in about 2.5 GB. The same gather gives each id's earliest event time. The
posts themselves are folded into per-window rows (``transforms.aggregate``) as
before; once the roots' topics are gathered from those rows, each window's rows of
credited reposts gain their root's topic codes and every copy of a redelivered id
moves to the window of its earliest copy, where the per-window de-duplication counts
it as a duplicate. The other rows move in bulk.
"""

from array import array
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import WindowFn

from schemas.records import PostSummary
from schemas.sketch import DEFAULT_LG_K
from transforms.aggregate import (
    AggregateWindowFn,
    KeyByWindowFn,
    window_bounds,
)
from transforms.window_posts import WindowPosts, post_id_key
from transforms.write import window_columns

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


class GatherChainPartsFn(GatherChainsFn):
    """``ChainEdges`` of file slices (``transforms.slice_windows``) ->
    ``ChainLookup``."""

    def add_input(self, accumulator: ChainEdges, edges: ChainEdges) -> ChainEdges:
        accumulator.extend(edges)
        return accumulator


class RootTopics(NamedTuple):
    """The topics of the roots credited reposts point to, compact: root i (of the
    sorted ``keys``) has the pairs ``pairs[c]`` for c in ``codes[ends[i-1]:ends[i]]``.
    Arrays, not a tuple of tuples per root: every process that reads the side input
    decodes all of it."""

    keys: np.ndarray
    ends: np.ndarray
    codes: np.ndarray
    pairs: list[Pair]

    def topics_of(self, key: int) -> tuple[Pair, ...]:
        """The topics of root ``key`` (none for a root not held)."""
        at = int(np.searchsorted(self.keys, key))
        if at == len(self.keys) or self.keys[at] != key:
            return ()
        start = int(self.ends[at - 1]) if at else 0
        pairs = self.pairs
        return tuple(pairs[code] for code in self.codes[start : self.ends[at]])


class GatherRootTopicsFn(beam.CombineFn):
    """(root key, topics) of root copies -> ``RootTopics``; of copies that differ,
    the smallest topics, as the per-window de-duplication keeps. Pairs are held
    once each (interned), whichever window they came from."""

    def create_accumulator(self) -> tuple[dict, dict]:
        # ({root key: topics}, {pair: the same pair}).
        return {}, {}

    def add_input(self, accumulator: tuple[dict, dict], row: tuple) -> tuple:
        roots, interned = accumulator
        key, topics = row
        held = roots.get(key)
        if held is None or topics < held:
            roots[key] = tuple(interned.setdefault(pair, pair) for pair in topics)
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[tuple]) -> tuple:
        iterator = iter(accumulators)
        merged = next(iterator, None) or self.create_accumulator()
        for roots, _ in iterator:
            for row in roots.items():
                self.add_input(merged, row)
        return merged

    def extract_output(self, accumulator: tuple[dict, dict]) -> RootTopics:
        roots, _ = accumulator
        keys = sorted(roots)
        codes_of: dict[Pair, int] = {}
        codes, ends = array("i"), array("q")
        for key in keys:
            codes.extend(
                codes_of.setdefault(pair, len(codes_of)) for pair in roots[key]
            )
            ends.append(len(codes))
        return RootTopics(
            keys=np.array(keys, dtype=np.int64),
            ends=np.frombuffer(ends, dtype=np.int64).copy(),
            codes=np.frombuffer(codes, dtype=np.int32).copy(),
            pairs=list(codes_of),
        )


def _row_pairs(posts: WindowPosts, row: int) -> tuple[Pair, ...]:
    pairs = posts.pairs
    return tuple(pairs[code] for code in posts.row_topics(row))


def select_rows(posts: WindowPosts, keep: np.ndarray) -> WindowPosts:
    """A new ``WindowPosts`` (sharing ``posts``'s pairs) of the rows where ``keep``
    (a boolean per row of ``posts``, whose rows are all in its arrays)."""
    ends = np.frombuffer(posts.topic_ends, dtype=np.int64)
    counts = np.diff(ends, prepend=0)
    codes = np.frombuffer(posts.topic_codes, dtype=np.int32)
    part = WindowPosts()
    part.pairs = posts.pairs
    for name, column, dtype in (
        ("ids", posts.ids, np.int64),
        ("authors", posts.authors, np.int64),
        ("carriers", posts.carriers, np.int64),
    ):
        getattr(part, name).frombytes(
            np.frombuffer(column, dtype=dtype)[keep].tobytes()
        )
    part.reposts.extend(np.frombuffer(posts.reposts, dtype=np.uint8)[keep].tobytes())
    part.topic_ends.frombytes(np.cumsum(counts[keep], dtype=np.int64).tobytes())
    part.topic_codes.frombytes(codes[np.repeat(keep, counts)].tobytes())
    return part


def window_root_topics(
    posts: WindowPosts, lookup: ChainLookup
) -> Iterator[tuple[int, tuple[Pair, ...]]]:
    """(id key, topics) of the rows of a window that are roots of credited reposts."""
    if not len(lookup.roots) or not len(posts):
        return
    posts.unpack()
    ids = np.frombuffer(posts.ids, dtype=np.int64)
    # A binary search in the sorted roots: ``np.isin`` would sort or hash all the
    # roots again for every window, a cost of the run's size per window.
    at = np.minimum(np.searchsorted(lookup.roots, ids), len(lookup.roots) - 1)
    for row in np.flatnonzero(lookup.roots[at] == ids).tolist():
        yield int(ids[row]), _row_pairs(posts, row)


def credit_window(
    bounds: tuple[int, int],
    posts: WindowPosts,
    lookup: ChainLookup,
    root_topics: RootTopics,
    bounds_of: Callable[[int], tuple[int, int]],
    spill_dir: str | None = None,
) -> list[tuple[tuple[int, int], WindowPosts]]:
    """A window's rows, credited and regrouped: each row of an id in ``lookup`` goes
    to the window of its id's earliest copy (``bounds_of`` its time), and a credited
    repost's topics gain its root's (``root_topics``) and its carrier is its root. A
    window without such rows is returned as it is."""
    if not len(posts) or not len(lookup.keys):
        return [(bounds, posts)]
    posts.unpack()
    ids = np.frombuffer(posts.ids, dtype=np.int64)
    at = np.minimum(np.searchsorted(lookup.keys, ids), len(lookup.keys) - 1)
    found = lookup.keys[at] == ids
    if not found.any():
        return [(bounds, posts)]
    outputs: dict[tuple[int, int], WindowPosts] = {}
    if not found.all():
        # The rows of ids without copies or credit stay as they are, in bulk.
        outputs[bounds] = WindowPosts(spill_dir)
        outputs[bounds].extend(select_rows(posts, ~found))
    authors, reposts, carriers = posts.authors, posts.reposts, posts.carriers
    for row, entry in zip(
        np.flatnonzero(found).tolist(), at[found].tolist(), strict=True
    ):
        topics = _row_pairs(posts, row)
        target = bounds_of(int(lookup.first_times[entry]))
        carrier = carriers[row]
        if lookup.credited[entry]:
            carrier = int(lookup.root_keys[entry])
            topics = credited_topics(topics, root_topics.topics_of(carrier))
        output = outputs.get(target)
        if output is None:
            output = outputs[target] = WindowPosts(spill_dir)
        output.append(int(ids[row]), authors[row], reposts[row], topics, carrier)
    return list(outputs.items())


class CollectWindowPostsFn(AggregateWindowFn):
    """PostSummary -> the window's ``WindowPosts`` itself (aggregated later)."""

    def extract_output(self, accumulator: WindowPosts) -> WindowPosts:
        return accumulator


class CollectWindowPartsFn(CollectWindowPostsFn):
    """A window's ``WindowPosts`` parts -> the window's ``WindowPosts``."""

    def add_input(self, accumulator: WindowPosts, posts: WindowPosts) -> WindowPosts:
        accumulator.extend(posts)
        return accumulator


class MergeWindowPostsFn(AggregateWindowFn):
    """A window's ``WindowPosts`` parts -> its ``WindowAggregate``."""

    def add_input(self, accumulator: WindowPosts, posts: WindowPosts) -> WindowPosts:
        accumulator.extend(posts)
        return accumulator


class RootTopicsFn(beam.DoFn):
    """(bounds, WindowPosts) -> (root key, topics) of its roots of credited reposts."""

    def process(self, keyed, lookup):
        yield from window_root_topics(keyed[1], lookup)


class CreditWindowFn(beam.DoFn):
    """(bounds, WindowPosts) -> (bounds, WindowPosts) credited and regrouped."""

    def __init__(self, window_fn: WindowFn, spill_dir: str | None):
        self._window_fn = window_fn
        self._spill_dir = spill_dir
        self._moved = Metrics.counter(self.__class__, "windows_with_rows_moved")

    def process(self, keyed, lookup, root_topics):
        bounds, posts = keyed
        parts = credit_window(
            bounds,
            posts,
            lookup,
            root_topics,
            lambda time_us: window_bounds(self._window_fn, time_us),
            self._spill_dir,
        )
        if len(parts) > 1:
            self._moved.inc()
        yield from parts


class CreditWindows(beam.PTransform):
    """PCollection[PostSummary] (event-time stamped, batch), or {"parts": (bounds,
    WindowPosts) per file slice and window, "edges": ChainEdges per slice}
    (``transforms.slice_windows``) -> PCollection[(bounds, WindowPosts)]: every
    window's rows with reposts credited (when ``credit``) and
    every copy of an id moved to its earliest copy's window; a window may come in
    several parts (``MergeWindowPostsFn`` joins them).

    Only light values wait between stages: each post's edge (25 bytes, combined as
    it is read) and the windows' packed or spilled rows. The summaries themselves
    are never held between stages: Beam's FnApiRunner keeps a materialised
    collection in memory, decoded again for each stage that reads it.
    """

    def __init__(self, window_fn: WindowFn, credit: bool = True, spill_dir=None):
        super().__init__()
        self._window_fn = window_fn
        self._credit = credit
        self._spill_dir = spill_dir

    def expand(self, summaries) -> beam.PCollection:
        if isinstance(summaries, dict):
            # Gathered per file slice already (``transforms.slice_windows``).
            chains = summaries["edges"] | "ResolveChains" >> beam.CombineGlobally(
                GatherChainPartsFn(self._credit)
            )
            windows = summaries["parts"] | "CollectWindows" >> beam.CombinePerKey(
                CollectWindowPartsFn(spill_dir=self._spill_dir)
            )
        else:
            chains = (
                summaries
                | "ChainEdges"
                >> beam.Map(
                    lambda summary, t=beam.DoFn.TimestampParam: chain_edge(
                        summary, t.micros
                    )
                )
                | "ResolveChains" >> beam.CombineGlobally(GatherChainsFn(self._credit))
            )
            windows = (
                summaries
                | "KeyByWindow" >> beam.ParDo(KeyByWindowFn(self._window_fn))
                | "CollectWindows"
                >> beam.CombinePerKey(CollectWindowPostsFn(spill_dir=self._spill_dir))
            )
        lookup = beam.pvalue.AsSingleton(chains)
        root_topics = beam.pvalue.AsSingleton(
            windows
            | "RootTopics" >> beam.ParDo(RootTopicsFn(), lookup)
            | "GatherRootTopics" >> beam.CombineGlobally(GatherRootTopicsFn())
        )
        return windows | "Credit" >> beam.ParDo(
            CreditWindowFn(self._window_fn, self._spill_dir), lookup, root_topics
        )


class AggregateCreditedWindows(beam.PTransform):
    """Batch: PCollection[PostSummary], or window parts and chain edges per file
    slice (``CreditWindows``) -> PCollection[(start_us, end_us, tables)], as
    ``transforms.aggregate.AggregateWindows`` gives, with reposts credited and
    redelivered ids counted once in their first window; each table as column lists
    (``transforms.write.window_columns``)."""

    def __init__(
        self,
        window_fn: WindowFn,
        lg_k: int = DEFAULT_LG_K,
        credit: bool = True,
        spill_dir: str | None = None,
        carriers_from: int | None = None,
    ):
        super().__init__()
        self._window_fn = window_fn
        self._lg_k = lg_k
        self._credit = credit
        self._spill_dir = spill_dir
        self._carriers_from = carriers_from

    def expand(self, summaries) -> beam.PCollection:
        return (
            summaries
            | "CreditWindows"
            >> CreditWindows(self._window_fn, self._credit, self._spill_dir)
            | "MergeParts"
            >> beam.CombinePerKey(
                MergeWindowPostsFn(self._lg_k, self._spill_dir, self._carriers_from)
            )
            | "ToTables"
            >> beam.MapTuple(
                lambda bounds, aggregate: (*bounds, window_columns(aggregate))
            ).with_output_types(tuple[int, int, dict[str, dict[str, list]]])
        )
