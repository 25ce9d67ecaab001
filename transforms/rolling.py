"""Rolling Parquet for streaming: one file per table and window, replaced pane by pane.

Each pane of a window is written to ``ROOT/<table>/date=<local date>/<window
start>.parquet`` (``20121113T080000Z.parquet``), atomically, replacing the window's
previous file. Panes accumulate (each holds the whole window so far), so the file
present is always the window's latest result and a reader scanning
``<table>/**/*.parquet`` counts every window once: there is nothing to deduplicate.

Panes of one window can reach the writer out of order when the runner runs bundles
in parallel. Every file records its pane in the Parquet key-value metadata
(``yuqing.pane_index``, ``yuqing.pane_timing``: EARLY, ON_TIME or LATE), and a pane
never replaces a file holding a later one. ``pane_of_file`` reads it back: a window
whose file says ON_TIME or LATE has seen its watermark pass; EARLY means still open.
"""

import os
import threading
from collections.abc import Iterable

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics
from apache_beam.utils.windowed_value import PaneInfo, PaneInfoTiming

from schemas import tables
from transforms.windows import local_date
from transforms.write import partition_dir, window_file_name, write_parquet_atomically

PANE_INDEX_KEY = b"yuqing.pane_index"
PANE_TIMING_KEY = b"yuqing.pane_timing"
TIMING_NAMES = {
    PaneInfoTiming.EARLY: "EARLY",
    PaneInfoTiming.ON_TIME: "ON_TIME",
    PaneInfoTiming.LATE: "LATE",
    PaneInfoTiming.UNKNOWN: "UNKNOWN",
}
# Check-then-replace must not interleave between bundles of one worker process.
_REPLACE_LOCK = threading.Lock()


def pane_of_file(path: str) -> tuple[int, str] | None:
    """(pane index, timing) recorded in a rolling file, or None if it has none."""
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowInvalid):
        return None
    if PANE_INDEX_KEY not in metadata:
        return None
    return int(metadata[PANE_INDEX_KEY]), metadata.get(PANE_TIMING_KEY, b"UNKNOWN").decode()


def with_pane(table: pa.Table, pane_index: int, timing: str) -> pa.Table:
    metadata = dict(table.schema.metadata or {})
    metadata[PANE_INDEX_KEY] = str(pane_index).encode()
    metadata[PANE_TIMING_KEY] = timing.encode()
    return table.replace_schema_metadata(metadata)


def write_pane(table: pa.Table, path: str, pane_index: int, timing: str) -> bool:
    """Write one pane's table unless ``path`` already holds a later pane; returns
    whether it was written. An empty table is written only over an existing file."""
    with _REPLACE_LOCK:
        exists = os.path.exists(path)
        if table.num_rows == 0 and not exists:
            return False
        current = pane_of_file(path) if exists else None
        if current is not None and current[0] > pane_index:
            return False
        write_parquet_atomically(with_pane(table, pane_index, timing), path)
        return True


class WritePanesFn(beam.DoFn):
    """(window_start_us, window_end_us, {table: pa.Table}) in its pane ->
    paths written."""

    def __init__(self, root: str, timezone: str):
        self._root = root
        self._timezone = timezone
        self._written = Metrics.counter(self.__class__, "panes_written")
        self._stale = Metrics.counter(self.__class__, "stale_panes_skipped")

    def process(self, element: tuple[int, int, dict[str, pa.Table]], pane=beam.DoFn.PaneInfoParam) -> Iterable[str]:
        start_us, _, by_table = element
        pane = pane or PaneInfo(True, True, PaneInfoTiming.UNKNOWN, 0, 0)
        date = local_date(start_us, self._timezone)
        for name, table in sorted(by_table.items()):
            path = os.path.join(partition_dir(self._root, name, date), window_file_name(start_us))
            if write_pane(table.cast(tables.TABLES[name]), path, pane.index, TIMING_NAMES[pane.timing]):
                self._written.inc()
                yield path
            else:
                self._stale.inc()


class WriteRollingTables(beam.PTransform):
    """PCollection[(window_start_us, window_end_us, {table: pa.Table})], one element
    per pane -> PCollection[str] of the files written."""

    def __init__(self, root: str, timezone: str):
        super().__init__()
        self._root = root
        self._timezone = timezone

    def expand(self, panes: beam.PCollection) -> beam.PCollection:
        return panes | "WritePanes" >> beam.ParDo(WritePanesFn(self._root, self._timezone))
