"""Lazy scans of the output tables, as ``../shared/CONTRACT.md`` says to read them.

The output folder is a pointer to the run folder of the latest run
(``transforms.publish``): a report resolves it once (``resolve_output``) and reads
every table under the resolved folder, so a run publishing meanwhile never mixes
two runs' tables into one report.
"""

import json
import os

import polars as pl

from schemas.tables import PANE_OF_PATH_PATTERN, RUN_MANIFEST, TABLES


def resolve_output(output: str) -> str:
    """The folder of the run ``output`` names now: the folder itself in the older
    layout, the run folder its pointer names in the current one."""
    return os.path.realpath(output)


def scan(output: str, table: str) -> pl.LazyFrame:
    """``table`` of ``output`` as a LazyFrame with its ``date`` partition column.

    A table with no files (a run that never wrote it) scans as an empty frame of the
    table's schema, so queries need no special case. Windowed tables of a running
    stream keep only each window's latest pane (``schemas.tables.PANE_OF_PATH_PATTERN``).
    """
    pattern = os.path.join(output, table, "**", "*.parquet")
    folder = os.path.join(output, table)
    has_files = os.path.isdir(folder) and any(
        name.endswith(".parquet") for _, _, names in os.walk(folder) for name in names
    )
    if not has_files:
        empty = pl.from_arrow(TABLES[table].empty_table())
        return empty.lazy().with_columns(pl.lit(None, dtype=pl.Date).alias("date"))
    if "window_start" not in TABLES[table].names:
        return pl.scan_parquet(pattern, hive_partitioning=True)
    # While a streaming run goes on, a window can have several pane files: each holds
    # the whole window so far, so only the highest pane's rows count.
    frame = pl.scan_parquet(pattern, hive_partitioning=True, include_file_paths="_file")
    pane = (
        pl.col("_file").str.extract(PANE_OF_PATH_PATTERN, 1).cast(pl.Int64).fill_null(0)
    )
    return frame.filter(pane == pane.max().over("window_start")).drop("_file")


def row_counts(output: str) -> dict[str, int]:
    """Rows per table of an output folder."""
    return {
        table: scan(output, table).select(pl.len()).collect().item() for table in TABLES
    }


def run_manifest(output: str) -> dict:
    """The ``_run.json`` the pipeline left beside the tables (window, timezone,
    sketch precision...), or an empty dict for a folder without one."""
    try:
        with open(os.path.join(output, RUN_MANIFEST), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}
