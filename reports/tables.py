"""Lazy scans of the output tables, as ``../shared/CONTRACT.md`` says to read them.

The output folder is a pointer to the run folder of the latest run
(``transforms.publish``): a report resolves it once (``resolve_output``) and reads
every table under the resolved folder, so a run publishing meanwhile never mixes
two runs' tables into one report. On an object store (``s3://``, ``gs://``) the
pointer is ``_current.json``, followed the same way (``reports.remote``; credentials and
endpoint from the environment).
"""

import json
import os
from collections.abc import Sequence

import polars as pl

from reports import remote
from schemas.tables import PANE_OF_PATH_PATTERN, RUN_MANIFEST, TABLES


def resolve_output(output: str) -> str:
    """The folder of the run ``output`` names now: the folder itself in the older
    layout, the run folder its pointer names in the current one (or its
    ``_current.json`` names, on an object store)."""
    if remote.is_remote(output):
        return remote.resolve(output)
    return os.path.realpath(output)


class KeyMismatch(ValueError):
    """Output folders whose tables were made with different pseudonym keys (or with
    no recorded key): their sketches count the same person as two, so they are never
    combined. ``str(error)`` is one line."""


def key_fingerprint(output: str) -> str | None:
    """The fingerprint of the pseudonym key that made ``output``'s tables, from its
    ``_run.json`` (None when the folder records none)."""
    return run_manifest(output).get("key_fingerprint")


def check_same_key(outputs: Sequence[str]) -> str:
    """The one key fingerprint of several output folders, or ``KeyMismatch`` when
    they differ or one records none: authors are pseudonymized by a keyed hash, so
    sketches of different keys hold different pseudonyms for the same person."""
    prints = {folder: key_fingerprint(folder) for folder in outputs}
    unknown = [folder for folder, value in prints.items() if value is None]
    if unknown:
        raise KeyMismatch(
            f"refusing to combine outputs: {', '.join(unknown)} records no pseudonym "
            "key fingerprint in _run.json, so its sketches may count people twice"
        )
    if len(set(prints.values())) > 1:
        listed = ", ".join(
            f"{folder} (key {value})" for folder, value in prints.items()
        )
        raise KeyMismatch(
            "refusing to merge participant sketches made with different pseudonym "
            f"keys: {listed}; rerun them with one --pseudonym-key-file"
        )
    return next(iter(prints.values()))


def scan(output: str | Sequence[str], table: str) -> pl.LazyFrame:
    """``table`` of ``output`` as a LazyFrame with its ``date`` partition column.

    ``output`` may be several folders (runs over different days or inputs): their
    rows are combined, after ``check_same_key`` made sure their sketches merge.

    A table with no files (a run that never wrote it) scans as an empty frame of the
    table's schema, so queries need no special case. Windowed tables of a running
    stream keep only each window's latest pane
    (``schemas.tables.PANE_OF_PATH_PATTERN``).
    """
    if not isinstance(output, str):
        outputs = list(output)
        if len(outputs) == 1:
            return scan(outputs[0], table)
        check_same_key(outputs)
        return pl.concat(
            [scan(folder, table) for folder in outputs], how="vertical_relaxed"
        )
    pattern = os.path.join(output, table, "**", "*.parquet")
    folder = os.path.join(output, table)
    storage = remote.storage_options(output)
    if storage is not None:
        has_files = any(name.endswith(".parquet") for name in remote.list_files(folder))
    else:
        has_files = os.path.isdir(folder) and any(
            name.endswith(".parquet")
            for _, _, names in os.walk(folder)
            for name in names
        )
    if not has_files:
        empty = pl.from_arrow(TABLES[table].empty_table())
        return empty.lazy().with_columns(pl.lit(None, dtype=pl.Date).alias("date"))
    if "window_start" not in TABLES[table].names:
        return pl.scan_parquet(pattern, hive_partitioning=True, storage_options=storage)
    # While a streaming run goes on, a window can have several pane files: each holds
    # the whole window so far, so only the highest pane's rows count.
    frame = pl.scan_parquet(
        pattern,
        hive_partitioning=True,
        include_file_paths="_file",
        storage_options=storage,
    )
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
        if remote.is_remote(output):
            return json.loads(remote.read_text(remote.join(output, RUN_MANIFEST)))
        with open(os.path.join(output, RUN_MANIFEST), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}
