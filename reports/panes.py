"""Reading the tables of a running stream, whose windows have several pane files.

A streaming run (``transforms.rolling``) writes each pane of a window as a new file,
``ROOT/<table>/date=<local date>/<window start>-pane<NNNNNN>.parquet``, never
changed afterwards. Panes accumulate (each holds the whole window so far), so the
file with the highest pane number is the window's latest result; superseded files
are deleted a grace period after a later pane arrives, and all at once when the run
ends. A reader of a running stream keeps, per window, the rows of the highest pane
(:func:`latest_panes_expression`), and retries a scan that lost a file to a deletion
between listing and reading (:func:`read_latest_panes` does both). After the run
only the latest file of each window is left, and a plain scan is right.

The pane's timing (EARLY, ON_TIME, LATE) is in the Parquet key-value metadata
(:func:`pane_of_file`); the pane index is what orders a window's results, as not
every runner reports the timing reliably after the first ON_TIME pane.

A table that is a whole state rather than per-window results (``open_events``) is
written as snapshots, ``<as of>-snapshot.parquet``; the latest file is the table
(:func:`latest_snapshot`), even when it is empty.
"""

import glob
import os
import time

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.panes import PANE_INDEX_KEY, PANE_TIMING_KEY
from schemas.tables import PANE_OF_PATH_PATTERN, SNAPSHOT_SUFFIX


def latest_panes_expression():
    """A polars filter keeping, per window, the rows of its highest pane, over a scan
    made with ``include_file_paths="file"`` (files without a pane count as pane 0)::

        frame = pl.scan_parquet(f"{out}/volume/**/*.parquet", hive_partitioning=True,
                                include_file_paths="file")
        frame.filter(latest_panes_expression()).drop("file").collect()
    """
    import polars as pl

    pane = (
        pl.col("file").str.extract(PANE_OF_PATH_PATTERN, 1).cast(pl.Int64).fill_null(0)
    )
    return pane == pane.max().over("window_start")


def latest_snapshot(root: str, table: str) -> str | None:
    """The path of a snapshot table's latest snapshot (``open_events``), or None
    when it has none: the UTC names sort in time order."""
    found = glob.glob(os.path.join(root, table, "*", f"*{SNAPSHOT_SUFFIX}"))
    return max(found, key=os.path.basename) if found else None


def read_latest_panes(root: str, table: str, attempts: int = 5):
    """A table of a running (or finished) stream as a ``polars.DataFrame``: per
    window, the rows of its highest pane; of a snapshot table (``open_events``),
    the rows of its latest snapshot. A superseded file can be deleted between
    the scan's listing and its reading (after the writer's grace period); the scan
    is then retried. Tables without ``window_start`` (``dead_letters``) are read whole.
    """
    import polars as pl

    for attempt in range(attempts):
        try:
            snapshot = latest_snapshot(root, table)
            if snapshot is not None:
                return pl.scan_parquet(snapshot, hive_partitioning=True).collect()
            frame = pl.scan_parquet(
                f"{root}/{table}/**/*.parquet",
                hive_partitioning=True,
                include_file_paths="file",
            )
            if "window_start" in frame.collect_schema().names():
                frame = frame.filter(latest_panes_expression())
            return frame.drop("file").collect()
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def pane_of_file(path: str) -> tuple[int, str] | None:
    """(pane index, timing) recorded in a pane file, or None if it has none."""
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowInvalid):
        return None
    if PANE_INDEX_KEY not in metadata:
        return None
    return int(metadata[PANE_INDEX_KEY]), metadata.get(
        PANE_TIMING_KEY, b"UNKNOWN"
    ).decode()
