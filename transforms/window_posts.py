"""A window's posts, column-wise: ``WindowPosts``, the accumulator the per-window
aggregation folds posts into, its packed form for shuffles and spill files, and the
integer keys post ids are held as.
"""

import hashlib
import zlib
from array import array
from collections.abc import Iterable, Sequence

import numpy as np

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
    carriers: array,
) -> tuple:
    """A ``WindowPosts``'s rows as (rows, count type, code type, one zlib block): the
    form accumulators cross the shuffle in, and wait in the runner's buffers in.

    Ids and authors stay 64-bit; carriers are stored as their difference from the
    id (zero for a post that carries itself, which zlib all but erases); repost
    flags become bits, each row's topic count and
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
            (
                np.frombuffer(carriers, dtype=np.int64)
                - np.frombuffer(ids, dtype=np.int64)
            ).tobytes(),
            np.packbits(np.frombuffer(reposts, dtype=np.uint8)).tobytes(),
            counts.astype(count_type).tobytes(),
            codes.astype(code_type).tobytes(),
        )
    )
    return rows, count_type.str, code_type.str, zlib.compress(block, PACK_LEVEL)


def unpack_rows(
    packed: tuple,
) -> tuple[array, array, bytearray, array, array, array]:
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
    carriers = _array(
        "q",
        np.frombuffer(take(8 * rows), dtype=np.int64)
        + np.frombuffer(ids, dtype=np.int64),
    )
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
    return (
        ids,
        authors,
        reposts,
        _array("q", ends),
        _array("i", codes.astype(np.int32)),
        carriers,
    )


def _array(typecode: str, buffer) -> array:
    """An ``array`` of the raw bytes of ``buffer`` (``array(typecode, view)`` would
    read a byte view item by item)."""
    result = array(typecode)
    result.frombytes(memoryview(buffer).cast("B"))
    return result


# Rows a WindowPosts with a spill folder keeps as arrays before it writes them out.
SPILL_ROWS = 4_096
# A WindowPosts's rows: the arrays holding them, in ``pack_rows``' order.
ROW_ARRAYS = ("ids", "authors", "reposts", "topic_ends", "topic_codes", "carriers")
# Fewer rows than this cross a shuffle as their arrays' bytes, unpacked (one item
# per array of ROW_ARRAYS, told from ``pack_rows``' four items by their count).
PACK_MIN_ROWS = 256
RAW_COLUMNS = len(ROW_ARRAYS)


class WindowPosts:
    """Accumulator: the posts of a window, column-wise, redelivered copies included.

    A post costs a few machine words, not Python objects: its id key
    (``post_id_key``), pseudonymous author, repost flag and carrier (the id key of
    the post whose spread it is: the root of its repost chain when it is credited,
    else itself; what ``events`` are told apart by) in typed arrays, and its
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
        "carriers",
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
        self.carriers = array("q")

    def _array_rows(self) -> tuple:
        return tuple(getattr(self, name) for name in ROW_ARRAYS)

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
            for column, raw in zip(self._array_rows(), packed, strict=True):
                # The repost flags are a bytearray, the other columns typed arrays.
                if isinstance(column, bytearray):
                    column.extend(raw)
                else:
                    column.frombytes(raw)
        else:
            for name, column in zip(ROW_ARRAYS, unpack_rows(packed), strict=True):
                setattr(self, name, column)
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
        carrier: int | None = None,
    ) -> None:
        """Add one post (a copy of an id already here included); ``carrier`` is the
        id key of the post whose spread it is (None: itself)."""
        self.ids.append(id_key)
        self.carriers.append(id_key if carrier is None else carrier)
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
        carriers,
        recode: np.ndarray | None = None,
    ) -> None:
        """Append rows given as arrays, their codes translated by ``recode``."""
        offset = len(self.topic_codes)
        codes = np.frombuffer(topic_codes, dtype=np.int32)
        if recode is not None:
            codes = recode[codes]
        self.ids.extend(ids)
        self.carriers.extend(carriers)
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
