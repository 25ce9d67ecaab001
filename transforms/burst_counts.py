"""A window's topic counts as the burst detector reads them, and the shard a topic
belongs to: shared by the batch and the streaming detector."""

import zlib
from collections.abc import Iterable

from schemas.records import WindowTables
from transforms.burst_model import (
    WindowCount,
)

# The detector's outputs: its bursts and its episodes.
BURSTS_TAG = "bursts"
EPISODES_TAG = "episodes"


def column_values(table, name: str) -> list:
    """A column of a window's table as a list: ``table`` a ``pa.Table`` or a dict of
    column lists (``transforms.write.window_columns``)."""
    if isinstance(table, dict):
        return table[name]
    return table.column(name).to_pylist()


def topic_window_counts(
    element: WindowTables, stream_start_us: int
) -> Iterable[tuple[tuple[str, str], WindowCount]]:
    """A window's tables -> ((kind, topic), WindowCount) for each topic row."""
    start_us, end_us, by_table = element
    (window_participants,) = column_values(by_table["volume"], "participants")
    topics = by_table["topics"]
    columns = zip(
        column_values(topics, "kind"),
        column_values(topics, "topic"),
        column_values(topics, "posts"),
        column_values(topics, "participants"),
        strict=True,
    )
    for kind, topic, posts, participants in columns:
        yield (
            (kind, topic),
            WindowCount(
                start_us,
                end_us,
                posts,
                participants,
                window_participants,
                stream_start_us,
            ),
        )


def topic_shard(key: tuple[str, str], shards: int) -> int:
    """The state shard of a (kind, topic): the same in every process (``hash`` of a
    string is salted per process)."""
    kind, topic = key
    return zlib.crc32(f"{kind}\x00{topic}".encode()) % shards
