"""Record types that cross steps of the pipeline, in one place.

Each is a ``NamedTuple``: cheap to pickle across Beam's shuffles, and a plain tuple
to code that indexes it. ``transforms/`` builds and reads them; nothing here
imports a transform.
"""

from typing import NamedTuple

import pyarrow as pa

# A topic: (kind, topic), kind one of ``schemas.topics.TOPIC_KINDS``.
TopicKey = tuple[str, str]


class Post(NamedTuple):
    """One valid post after ingest: author pseudonymized, text masked and cut to its
    first ``transforms.posts.MAX_TEXT_CHARS`` characters (what topics are taken
    from)."""

    id: str
    author: int
    event_time_us: int
    text: str
    repost_of: str | None
    source: str | None


class PostSummary(NamedTuple):
    """What aggregation needs of one post: no text, no raw author id."""

    id: str
    author: int
    is_repost: bool
    # (kind, topic) pairs, each at most once per post.
    topics: tuple[TopicKey, ...]
    # The id the post reposts (``transforms.reposts`` resolves chains with it); None
    # for an original post.
    repost_of: str | None = None
    # The id key of the post whose spread it is part of (its chain's root, once a
    # stream has credited it); None: itself. Batch finds roots per window instead.
    carrier: int | None = None


class DeadLetter(NamedTuple):
    """A rejected input line, already masked: safe to write and to show."""

    raw: str
    error: str
    source: str
    stage: str
    read_at_us: int


# One window's tables, as aggregation hands them to the writers, the burst
# detector and the events: (start_us, end_us, {table name: its rows for
# [start_us, end_us)}), the names those of ``schemas.tables.TABLES`` (``volume``,
# ``topics``) and ``schemas.tables.TOP_CARRIERS_NAME``. Each table is a
# ``pa.Table`` (streaming) or plain column lists, {column: list} without the
# window's bounds (batch: ``transforms.write.window_columns``). A plain tuple, not a
# NamedTuple: Beam's tuple coder carries it across shuffles as it is.
WindowTables = tuple[int, int, dict[str, pa.Table | dict[str, list]]]


class EventMember(NamedTuple):
    """A bursting (kind, topic, window) with what the events are assembled from: its
    counts, its participants' sketch and its top carriers, (post key, posts,
    reposts) each, most posts first (``schemas.tables.TOP_CARRIERS``)."""

    kind: str
    topic: str
    start_us: int
    end_us: int
    posts: int
    reposts: int
    participants: int
    sketch: bytes
    carriers: tuple[tuple[int, int, int], ...]


class SourcePost(NamedTuple):
    """A post that may represent an event: its id, event time and masked text (never
    its author)."""

    id: str
    created_at_us: int
    text: str
