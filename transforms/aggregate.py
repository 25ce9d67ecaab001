"""Per-window aggregates: distinct posts, participants and topics of one window.

The logic is plain functions over a ``WindowPosts`` accumulator (a window's posts,
column-wise); ``AggregateWindowFn`` wraps them as a Beam ``CombineFn`` so the runner
lifts it: each bundle first folds its posts into one accumulator per window, only
those accumulators cross the shuffle, and the tables are built once per window. A
windowed GroupByKey keyed per topic would shuffle one element per topic mention and
pay Beam's per-key trigger bookkeeping for each; this shuffles one element per bundle
and window.
"""

import hashlib
import zlib
from array import array
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.transforms.window import FixedWindows, WindowFn
from apache_beam.utils.timestamp import Timestamp

from schemas import tables
from schemas.records import PostSummary, WindowTables
from schemas.sketch import DEFAULT_LG_K, estimate, new_sketch
from transforms.spill import spill, unspill

# The largest decimal id kept as itself: 18 digits always fit a signed 64-bit integer.
_MAX_DECIMAL_ID_DIGITS = 18


def post_id_key(post_id: str) -> int:
    """A post id as a signed 64-bit integer that stands for it in de-duplication.

    Weibo's ids are decimal numbers: a canonical decimal id of up to 18 digits is its
    own value (0 and up), so no two such ids share a key. Any other id ("007", "a1",
    a 19-digit number) takes a negative key from a 63-bit BLAKE2b digest: two such ids
    share one with probability about n**2 / 2**64 in a window of n of them, which is
    below one in ten million for a million posts in one window.
    """
    if (
        post_id.isascii()
        and post_id.isdigit()
        and len(post_id) <= _MAX_DECIMAL_ID_DIGITS
        and (post_id[0] != "0" or post_id == "0")
    ):
        return int(post_id)
    digest = hashlib.blake2b(post_id.encode("utf-8"), digest_size=8).digest()
    return -1 - (int.from_bytes(digest, "big") >> 1)


# zlib's fastest level already halves packed rows (decimal ids share their high
# bytes); higher levels cost more CPU for little more.
PACK_LEVEL = 1


def _smallest_unsigned(largest: int) -> np.dtype:
    """The narrowest unsigned integer type that holds 0..largest."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if largest <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def pack_rows(
    ids: array,
    authors: array,
    reposts: bytearray,
    topic_ends: array,
    topic_codes: array,
) -> tuple:
    """A ``WindowPosts``'s rows as (rows, count type, code type, one zlib block): the
    form accumulators cross the shuffle in, and wait in the runner's buffers in.

    Ids and authors stay 64-bit; repost flags become bits, each row's topic count and
    each topic code the narrowest integers that hold them, then zlib: a fraction of
    the arrays' size, which counts because Beam's FnApiRunner holds what crosses a
    shuffle in several copies at once (its shuffle buffer, the encoded bundle, the
    data channel). docs/performance.md has the sizes.
    """
    rows = len(ids)
    ends = np.frombuffer(topic_ends, dtype=np.int64)
    counts = np.diff(ends, prepend=0)
    count_type = _smallest_unsigned(int(counts.max(initial=0)))
    codes = np.frombuffer(topic_codes, dtype=np.int32)
    code_type = _smallest_unsigned(int(codes.max(initial=0)))
    block = b"".join(
        (
            ids.tobytes(),
            authors.tobytes(),
            np.packbits(np.frombuffer(reposts, dtype=np.uint8)).tobytes(),
            counts.astype(count_type).tobytes(),
            codes.astype(code_type).tobytes(),
        )
    )
    return rows, count_type.str, code_type.str, zlib.compress(block, PACK_LEVEL)


def unpack_rows(packed: tuple) -> tuple[array, array, bytearray, array, array]:
    """The arrays ``pack_rows`` was given, value for value."""
    rows, count_type, code_type, compressed = packed
    block = memoryview(zlib.decompress(compressed))
    count_type, code_type = np.dtype(count_type), np.dtype(code_type)
    at = 0

    def take(size: int) -> memoryview:
        nonlocal at
        at += size
        return block[at - size : at]

    ids, authors = _array("q", take(8 * rows)), _array("q", take(8 * rows))
    reposts = bytearray(
        np.unpackbits(
            np.frombuffer(take((rows + 7) // 8), dtype=np.uint8), count=rows
        ).tobytes()
    )
    ends = np.cumsum(
        np.frombuffer(take(count_type.itemsize * rows), dtype=count_type),
        dtype=np.int64,
    )
    codes = np.frombuffer(
        take(code_type.itemsize * int(ends[-1] if rows else 0)), dtype=code_type
    )
    return ids, authors, reposts, _array("q", ends), _array("i", codes.astype(np.int32))


def _array(typecode: str, buffer) -> array:
    """An ``array`` of the raw bytes of ``buffer`` (``array(typecode, view)`` would
    read a byte view item by item)."""
    result = array(typecode)
    result.frombytes(memoryview(buffer).cast("B"))
    return result


# Rows a WindowPosts with a spill folder keeps as arrays before it writes them out.
SPILL_ROWS = 4_096
# Fewer rows than this cross a shuffle as their arrays' bytes, unpacked: the five
# arrays (ids, authors, repost flags, topic ends, topic codes) of
# ``WindowPosts.__getstate__``, told from ``pack_rows``' four items by their count.
PACK_MIN_ROWS = 256
RAW_COLUMNS = 5


class WindowPosts:
    """Accumulator: the posts of a window, column-wise, redelivered copies included.

    A post costs a few machine words, not Python objects: its id key
    (``post_id_key``), pseudonymous author and repost flag in typed arrays, and its
    topics as codes into ``pairs``, the window's distinct (kind, topic) pairs (about
    50 bytes a post). Copies of one id are resolved when the window is aggregated,
    whichever bundles they arrived in, so a window's rows are all kept until then.

    With a ``spill_dir`` (batch runs: a folder every worker can read), every
    ``SPILL_ROWS`` rows are packed (``pack_rows``, about 20 bytes a post) into a file
    of their own, and only the files' names travel: a batch run completes all its
    windows at the end of its input, so Beam's FnApiRunner would hold every window's
    rows at once, in its main stage and again in several copies around the shuffle.
    ``unpack`` reads them back when the window is aggregated. The rows not spilled
    (streaming's, where windows complete as the watermark passes them, and fewer
    than ``SPILL_ROWS`` in batch) cross the shuffle packed in memory.
    """

    __slots__ = (
        "ids",
        "authors",
        "reposts",
        "topic_ends",
        "topic_codes",
        "pairs",
        "_codes",
        "_spill_dir",
        "_spilled",
        "_spilled_rows",
    )

    def __init__(self, spill_dir: str | None = None) -> None:
        self._clear_rows()
        self._spill_dir = spill_dir
        # Files of earlier rows, each with the translation of its topic codes into
        # this accumulator's (None: they are this accumulator's codes).
        self._spilled: list[tuple[str, np.ndarray | None]] = []
        self._spilled_rows = 0
        self.pairs: list[tuple[str, str]] = []
        self._codes: dict[tuple[str, str], int] = {}

    def _clear_rows(self) -> None:
        self.ids = array("q")
        self.authors = array("q")
        self.reposts = bytearray()
        # Row i's topic codes are topic_codes[topic_ends[i - 1]:topic_ends[i]].
        self.topic_ends = array("q")
        self.topic_codes = array("i")

    def _array_rows(self) -> tuple:
        return self.ids, self.authors, self.reposts, self.topic_ends, self.topic_codes

    def __getstate__(self) -> tuple:
        # Rows not yet spilled (fewer than SPILL_ROWS) travel packed: a file each
        # would cost more than they do where windows are many and small. Below
        # PACK_MIN_ROWS they travel as the arrays' bytes: packing a few rows costs
        # more than the bytes it saves.
        rows = len(self.ids)
        if not rows:
            packed = None
        elif rows < PACK_MIN_ROWS:
            packed = tuple(bytes(column) for column in self._array_rows())
        else:
            packed = pack_rows(*self._array_rows())
        return packed, self._spilled, self._spilled_rows, self._spill_dir, self.pairs

    def __setstate__(self, state: tuple) -> None:
        packed, self._spilled, self._spilled_rows, self._spill_dir, self.pairs = state
        if packed is None:
            self._clear_rows()
        elif len(packed) == RAW_COLUMNS:
            self._clear_rows()
            ids, authors, reposts, ends, codes = packed
            self.ids.frombytes(ids)
            self.authors.frombytes(authors)
            self.reposts.extend(reposts)
            self.topic_ends.frombytes(ends)
            self.topic_codes.frombytes(codes)
        else:
            self.ids, self.authors, self.reposts, self.topic_ends, self.topic_codes = (
                unpack_rows(packed)
            )
        self._codes = {pair: code for code, pair in enumerate(self.pairs)}

    def __len__(self) -> int:
        return self._spilled_rows + len(self.ids)

    def code(self, pair: tuple[str, str]) -> int:
        """The code of a (kind, topic) pair in this accumulator, added if new."""
        code = self._codes.get(pair)
        if code is None:
            code = self._codes[pair] = len(self.pairs)
            self.pairs.append(pair)
        return code

    def append(
        self,
        id_key: int,
        author: int,
        is_repost: bool,
        topics: Iterable[tuple[str, str]],
    ) -> None:
        """Add one post (a copy of an id already here included)."""
        self.ids.append(id_key)
        self.authors.append(author)
        self.reposts.append(bool(is_repost))
        self.topic_codes.extend(map(self.code, topics))
        self.topic_ends.append(len(self.topic_codes))
        if self._spill_dir is not None and len(self.ids) >= SPILL_ROWS:
            self._spill()

    def _spill(self) -> None:
        """Move the arrays' rows into a new file in the spill folder."""
        self._spilled.append(
            (spill(pack_rows(*self._array_rows()), self._spill_dir), None)
        )
        self._spilled_rows += len(self.ids)
        self._clear_rows()

    def extend(self, other: "WindowPosts") -> None:
        """Add every row of ``other``, its topic codes translated to this one's
        (its spilled rows stay in their files until ``unpack``)."""
        recode = np.array([self.code(pair) for pair in other.pairs], dtype=np.int32)
        for path, its_recode in other._spilled:
            self._spilled.append(
                (path, recode if its_recode is None else recode[its_recode])
            )
        self._spilled_rows += other._spilled_rows
        self._add_rows(*other._array_rows(), recode)

    def unpack(self) -> None:
        """Bring spilled rows back into the arrays (before the arrays' own rows)."""
        if not self._spilled:
            return
        spilled, arrays = self._spilled, self._array_rows()
        self._clear_rows()
        self._spilled, self._spilled_rows = [], 0
        for path, recode in spilled:
            self._add_rows(*unpack_rows(unspill(path)), recode)
        self._add_rows(*arrays)

    def _add_rows(
        self,
        ids,
        authors,
        reposts,
        topic_ends,
        topic_codes,
        recode: np.ndarray | None = None,
    ) -> None:
        """Append rows given as arrays, their codes translated by ``recode``."""
        offset = len(self.topic_codes)
        codes = np.frombuffer(topic_codes, dtype=np.int32)
        if recode is not None:
            codes = recode[codes]
        self.ids.extend(ids)
        self.authors.extend(authors)
        self.reposts.extend(reposts)
        self.topic_codes.frombytes(codes.astype(np.int32).tobytes())
        self.topic_ends.frombytes(
            (np.frombuffer(topic_ends, dtype=np.int64) + offset).tobytes()
        )

    def row_topics(self, row: int) -> Sequence[int]:
        """The topic codes of row ``row``."""
        return self.topic_codes[
            self.topic_ends[row - 1] if row else 0 : self.topic_ends[row]
        ]

    def row_summary(self, row: int) -> tuple:
        """Row ``row`` as (author, is_repost, (kind, topic) pairs): what copies of one
        id are compared by."""
        return (
            self.authors[row],
            bool(self.reposts[row]),
            tuple(self.pairs[code] for code in self.row_topics(row)),
        )


class WindowAggregate(NamedTuple):
    """A window's results: one volume row and the topic rows, column-wise."""

    posts: int
    reposts: int
    duplicates: int
    participants: int
    participants_sketch: bytes
    topic_columns: dict[str, list]


def add_post(accumulator: WindowPosts, post: PostSummary) -> WindowPosts:
    """Fold one post into the accumulator (copies are resolved by ``distinct_rows``)."""
    accumulator.append(post_id_key(post[0]), post[1], post[2], post[3])
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
    accumulator: WindowPosts, lg_k: int = DEFAULT_LG_K
) -> WindowAggregate:
    """Count a window's distinct posts, reposts and participants, overall and per topic.

    Participants are HLL estimates (``lg_k`` sets the precision: relative standard
    error about 1.04 / sqrt(2 ** lg_k)); below a few hundred authors DataSketches
    keeps a list of coupons and the estimate is exact in practice. Topic rows come
    sorted by kind, then participants descending, then topic.

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
    )


def window_tables(
    aggregate: WindowAggregate, window_start_us: int, window_end_us: int
) -> dict[str, pa.Table]:
    """The ``volume`` and ``topics`` rows of one window as tables of their schemas."""
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
    return {"volume": volume, "topics": topics}


class AggregateWindowFn(beam.CombineFn):
    """PostSummary -> WindowAggregate, per window, counting redelivered copies once."""

    def __init__(self, lg_k: int = DEFAULT_LG_K, spill_dir: str | None = None):
        self._lg_k = lg_k
        self._spill_dir = spill_dir

    def create_accumulator(self) -> WindowPosts:
        return WindowPosts(self._spill_dir)

    def add_input(self, accumulator: WindowPosts, post: PostSummary) -> WindowPosts:
        return add_post(accumulator, post)

    def merge_accumulators(self, accumulators: Iterable[WindowPosts]) -> WindowPosts:
        return merge_window_posts(accumulators)

    def extract_output(self, accumulator: WindowPosts) -> WindowAggregate:
        return aggregate_window(accumulator, self._lg_k)


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
    ):
        super().__init__()
        self._window_fn = window_fn
        self._lg_k = lg_k
        self._windowing = windowing
        self._spill_dir = spill_dir

    def expand(self, posts: beam.PCollection) -> beam.PCollection:
        if self._windowing is not None:
            posts = posts | "WindowByEventTime" >> beam.WindowInto(
                self._window_fn, **self._windowing
            )
        return (
            posts
            | "KeyByWindow" >> beam.ParDo(KeyByWindowFn(self._window_fn))
            | "CombinePerWindowKey"
            >> beam.CombinePerKey(AggregateWindowFn(self._lg_k, self._spill_dir))
            | "ToTables"
            >> beam.MapTuple(
                lambda bounds, aggregate: (*bounds, window_tables(aggregate, *bounds))
            ).with_output_types(WindowTables)
        )
