"""Rolling Parquet for streaming: one immutable file per table, window and pane.

Each pane of a window is a new file,
``ROOT/<table>/date=<local date>/<window start>-pane<NNNNNN>.parquet``
(``20121113T080000Z-pane000003.parquet``), written whole and renamed into place,
and never changed afterwards. A file is never rewritten in place because a reader
may be reading it: polars plans a scan from each file's footer and opens the file
again to read it, and a file replaced in between makes the read fail.

Panes accumulate (each holds the whole window so far), so the file with the highest
pane number is the window's latest result. A pane's file makes the window's earlier
ones *superseded*; they are deleted once superseded for ``SUPERSEDED_GRACE_SECONDS``
(on the next write into the same folder), and all at once when the run ends.
Readers live in ``reports.panes``.

Panes of one window can reach the writer out of order when the runner runs bundles
in parallel: a pane is not written when a later one is there already. The pane's
index and timing (EARLY, ON_TIME, LATE) go into the Parquet key-value metadata
(``schemas.panes``); the index, not the timing, orders a window's results, as not
every runner reports the timing reliably after the first ON_TIME pane.
"""

import os
import re
import threading
import time
from collections.abc import Iterable

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics
from apache_beam.utils.windowed_value import PaneInfo, PaneInfoTiming

from schemas import tables
from schemas.panes import PANE_INDEX_KEY, PANE_TIMING_KEY
from schemas.records import WindowTables
from transforms.windows import local_date
from transforms.write import partition_dir, window_file_name, write_parquet_atomically

TIMING_NAMES = {
    PaneInfoTiming.EARLY: "EARLY",
    PaneInfoTiming.ON_TIME: "ON_TIME",
    PaneInfoTiming.LATE: "LATE",
    PaneInfoTiming.UNKNOWN: "UNKNOWN",
}
SUPERSEDED_GRACE_SECONDS = 10.0
# 20121113T080000Z-pane000003.parquet -> window "20121113T080000Z", pane 3.
PANE_FILE = re.compile(r"^(?P<window>\d{8}T\d{6}Z)-pane(?P<pane>\d+)\.parquet$")
# 20121113T080000Z-snapshot.parquet -> a table's whole content as of that time.
SNAPSHOT_FILE = re.compile(
    r"^(?P<as_of>\d{8}T\d{6}Z)" + re.escape(tables.SNAPSHOT_SUFFIX) + "$"
)
# Check-then-write and pruning must not interleave between bundles of one process.
_LOCK = threading.Lock()


def pane_file_name(start_us: int, pane_index: int) -> str:
    """``20121113T080000Z-pane000003.parquet``."""
    return (
        window_file_name(start_us).removesuffix(".parquet")
        + f"-pane{pane_index:06d}.parquet"
    )


def window_panes(folder: str) -> dict[str, list[tuple[int, str]]]:
    """Window -> [(pane index, file name)] of the pane files in one partition folder."""
    panes: dict[str, list[tuple[int, str]]] = {}
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return panes
    for name in names:
        match = PANE_FILE.match(name)
        if match:
            panes.setdefault(match["window"], []).append((int(match["pane"]), name))
    return panes


def prune_superseded(
    folder: str, grace_seconds: float, now: float | None = None
) -> list[str]:
    """Delete the pane files of ``folder`` superseded (by a later pane of the same
    window) for at least ``grace_seconds``; returns the names deleted."""
    now = time.time() if now is None else now
    deleted = []
    for panes in window_panes(folder).values():
        panes.sort()
        latest = os.path.join(folder, panes[-1][1])
        try:
            superseded_for = now - os.path.getmtime(latest)
        except FileNotFoundError:
            continue
        if superseded_for < grace_seconds:
            continue
        for _, name in panes[:-1]:
            try:
                os.remove(os.path.join(folder, name))
                deleted.append(name)
            except FileNotFoundError:
                pass
    return deleted


def prune_all_superseded(root: str) -> int:
    """Delete every superseded pane and snapshot file under ``root`` (at the end of
    a run)."""
    deleted = 0
    with _LOCK:
        for folder, _, _ in os.walk(root):
            deleted += len(prune_superseded(folder, grace_seconds=0))
        for table in tables.TABLES:
            deleted += len(prune_snapshots(os.path.join(root, table), 0))
    return deleted


def snapshot_file_name(as_of_us: int) -> str:
    """``20121113T080000Z-snapshot.parquet``."""
    return window_file_name(as_of_us).removesuffix(".parquet") + tables.SNAPSHOT_SUFFIX


def table_snapshots(table_root: str) -> list[tuple[str, str]]:
    """(as of, path) of a table's snapshot files over all its partitions, oldest
    first (the UTC names sort in time order)."""
    found = []
    for folder, _, names in os.walk(table_root):
        for name in names:
            match = SNAPSHOT_FILE.match(name)
            if match:
                found.append((match["as_of"], os.path.join(folder, name)))
    return sorted(found)


def prune_snapshots(table_root: str, grace_seconds: float) -> list[str]:
    """Delete a table's snapshots older than its latest once the latest has been
    there ``grace_seconds`` (a reader may be scanning them); returns the paths."""
    snapshots = table_snapshots(table_root)
    if len(snapshots) < 2:
        return []
    try:
        superseded_for = time.time() - os.path.getmtime(snapshots[-1][1])
    except FileNotFoundError:
        return []
    if superseded_for < grace_seconds:
        return []
    deleted = []
    for _, path in snapshots[:-1]:
        try:
            os.remove(path)
            deleted.append(path)
        except FileNotFoundError:
            pass
    return deleted


def write_snapshot(
    table: pa.Table,
    root: str,
    name: str,
    as_of_us: int,
    timezone: str,
    grace_seconds: float = SUPERSEDED_GRACE_SECONDS,
) -> str | None:
    """Write the whole of table ``name`` as it stands at ``as_of_us``, one new file
    under the local date of ``as_of_us``, unless a snapshot as of that time or later
    is there; returns the path written, or None. Earlier snapshots are deleted a
    grace period later, as superseded panes are."""
    table_root = os.path.join(root, name)
    stamp = window_file_name(as_of_us).removesuffix(".parquet")
    with _LOCK:
        snapshots = table_snapshots(table_root)
        if snapshots and snapshots[-1][0] >= stamp:
            return None
        folder = partition_dir(root, name, local_date(as_of_us, timezone))
        path = os.path.join(folder, snapshot_file_name(as_of_us))
        write_parquet_atomically(table, path)
        prune_snapshots(table_root, grace_seconds)
        return path


def with_pane(table: pa.Table, pane_index: int, timing: str) -> pa.Table:
    """``table`` with the pane's index and timing in its schema metadata."""
    metadata = dict(table.schema.metadata or {})
    metadata[PANE_INDEX_KEY] = str(pane_index).encode()
    metadata[PANE_TIMING_KEY] = timing.encode()
    return table.replace_schema_metadata(metadata)


def write_pane(
    table: pa.Table,
    folder: str,
    start_us: int,
    pane_index: int,
    timing: str,
    grace_seconds: float = SUPERSEDED_GRACE_SECONDS,
) -> str | None:
    """Write one pane of a window into a partition folder, unless a later pane of
    that window is there; returns the path written, or None. An empty table is
    written only when it supersedes an earlier pane. Prunes the folder afterwards."""
    window = window_file_name(start_us).removesuffix(".parquet")
    with _LOCK:
        existing = window_panes(folder).get(window, [])
        if any(index >= pane_index for index, _ in existing) or (
            table.num_rows == 0 and not existing
        ):
            return None
        path = os.path.join(folder, pane_file_name(start_us, pane_index))
        write_parquet_atomically(with_pane(table, pane_index, timing), path)
        prune_superseded(folder, grace_seconds)
        return path


class WritePanesFn(beam.DoFn):
    """(window_start_us, window_end_us, {table: pa.Table}) in its pane ->
    paths written."""

    def __init__(self, root: str, timezone: str):
        self._root = root
        self._timezone = timezone
        self._written = Metrics.counter(self.__class__, "panes_written")
        self._stale = Metrics.counter(self.__class__, "stale_panes_skipped")

    def process(
        self,
        element: WindowTables,
        pane=beam.DoFn.PaneInfoParam,
    ) -> Iterable[str]:
        start_us, _, by_table = element
        pane = pane or PaneInfo(True, True, PaneInfoTiming.UNKNOWN, 0, 0)
        date = local_date(start_us, self._timezone)
        for name, table in sorted(by_table.items()):
            if name not in tables.TABLES:
                continue  # read by later steps only (the events' evidence)
            folder = partition_dir(self._root, name, date)
            path = write_pane(
                table.cast(tables.TABLES[name]),
                folder,
                start_us,
                pane.index,
                TIMING_NAMES[pane.timing],
            )
            if path:
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
        return panes | "WritePanes" >> beam.ParDo(
            WritePanesFn(self._root, self._timezone)
        )
