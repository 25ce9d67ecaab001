"""The detector's outputs as tables: ``bursts`` (one row per topic and bursting
window) and ``burst_episodes`` (one row per run of consecutive bursting windows),
each row filed under the local date of its window (bursts) or onset (episodes)."""

from collections.abc import Iterable
from typing import NamedTuple

import apache_beam as beam
import pyarrow as pa

from schemas import tables
from transforms.burst_counts import BURSTS_TAG, EPISODES_TAG
from transforms.burst_model import Burst, Episode
from transforms.write import WriteRowsByDate

# Table column -> attribute of the detector's row, per output table.
BURST_COLUMNS = {
    "window_start": "start_us",
    "window_end": "end_us",
    "posts": "posts",
    "participants": "participants",
    "expected": "expected",
    "score": "score",
}
EPISODE_COLUMNS = {
    "onset": "onset_us",
    "peak_window_start": "peak_start_us",
    "end": "end_us",
    "windows": "windows",
    "peak_participants": "peak_participants",
    "peak_score": "peak_score",
    "posts": "posts",
}


def keyed_rows_table(
    rows: Iterable[tuple[tuple[str, str], NamedTuple]],
    schema: pa.Schema,
    columns: dict[str, str],
) -> pa.Table:
    """((kind, topic), row) pairs -> a table of ``schema``, in time order (the first
    mapped column), then kind and topic; ``columns`` maps column names to row
    attributes."""
    first = next(iter(columns.values()))
    rows = sorted(rows, key=lambda row: (getattr(row[1], first), row[0]))
    data = {"kind": [key[0] for key, _ in rows], "topic": [key[1] for key, _ in rows]}
    data.update(
        {
            column: [getattr(row, name) for _, row in rows]
            for column, name in columns.items()
        }
    )
    return pa.Table.from_pydict(data, schema=schema)


def bursts_table(rows: Iterable[tuple[tuple[str, str], Burst]]) -> pa.Table:
    return keyed_rows_table(rows, tables.BURSTS, BURST_COLUMNS)


def episodes_table(rows: Iterable[tuple[tuple[str, str], Episode]]) -> pa.Table:
    return keyed_rows_table(rows, tables.BURST_EPISODES, EPISODE_COLUMNS)


def _row_instant(attribute: str):
    """((kind, topic), row) -> the row's ``attribute`` (epoch microseconds)."""
    return lambda keyed: getattr(keyed[1], attribute)


def _row_key(attribute: str):
    """((kind, topic), row) -> a string naming the row, for content-named files."""
    return lambda keyed: f"{keyed[0]}{getattr(keyed[1], attribute)}"


class WriteBurstTables(beam.PTransform):
    """``DetectBursts``' outputs ({BURSTS_TAG: ((kind, topic), Burst), EPISODES_TAG:
    ((kind, topic), Episode)}) -> the ``bursts`` and ``burst_episodes`` files under
    ``ROOT/<table>/date=<local date>/``; in streaming (``firing_seconds`` set) a file
    per firing, as ``WriteRowsByDate`` does."""

    def __init__(self, root: str, timezone: str, firing_seconds: int | None = None):
        super().__init__()
        self._root = root
        self._timezone = timezone
        self._firing_seconds = firing_seconds

    def expand(self, bursts: dict) -> beam.pvalue.PDone:
        outputs = (
            (BURSTS_TAG, "bursts", bursts_table, "start_us"),
            (EPISODES_TAG, "burst_episodes", episodes_table, "onset_us"),
        )
        for tag, table, to_table, instant in outputs:
            bursts[tag] | f"Write_{table}" >> WriteRowsByDate(
                self._root,
                table,
                self._timezone,
                instant_of=_row_instant(instant),
                to_table=to_table,
                row_key=_row_key(instant),
                firing_seconds=self._firing_seconds,
            )
        return beam.pvalue.PDone(bursts[BURSTS_TAG].pipeline)
