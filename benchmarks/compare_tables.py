#!/usr/bin/env python
"""Whether two outputs of the pipeline hold the same tables.

  .venv/bin/python benchmarks/compare_tables.py OUT_A OUT_B
  .venv/bin/python benchmarks/compare_tables.py OUT_A OUT_B --sketches estimate

Every table under either output (``OUT/<table>/date=.../*.parquet``; an output that
is a pointer to its run folder is resolved first) is read with polars, the date
partition kept as a column. Columns that say when a run read or wrote something
(``read_at``, ``written_at``) are dropped; rows are sorted by every remaining
column. Sketch columns (``*_sketch``) are compared byte for byte by default, or by
their HLL estimates with ``--sketches estimate`` (for runs that fed the sketches in
different orders). Prints one verdict per table; exits 1 when any table differs.
"""

import argparse
import os
import sys
from pathlib import Path

import polars as pl

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from schemas.sketch import merged_estimate  # noqa: E402

RUN_TIME_COLUMNS = frozenset({"read_at", "written_at"})
SKETCH_SUFFIX = "_sketch"


def table_names(root: Path) -> list[str]:
    """The tables with at least one Parquet file under ``root``."""
    if not root.is_dir():
        return []
    return sorted(
        entry.name
        for entry in root.iterdir()
        if entry.is_dir() and any(entry.glob("**/*.parquet"))
    )


def read_table(root: Path, table: str) -> pl.DataFrame:
    """Every row of one table, with its ``date`` partition as a column."""
    return pl.read_parquet(f"{root}/{table}/**/*.parquet", hive_partitioning=True)


def comparable(frame: pl.DataFrame, sketches: str) -> pl.DataFrame:
    """``frame`` without run-time columns, sketches as bytes or estimates, rows in
    a canonical order."""
    frame = frame.drop([name for name in frame.columns if name in RUN_TIME_COLUMNS])
    if sketches == "estimate":
        frame = frame.with_columns(
            pl.col(name).map_elements(
                lambda sketch: merged_estimate([sketch]), return_dtype=pl.Int64
            )
            for name in frame.columns
            if name.endswith(SKETCH_SUFFIX)
        )
    frame = frame.select(sorted(frame.columns))
    return frame.sort(frame.columns, nulls_last=True) if frame.height else frame


def table_verdict(a: pl.DataFrame, b: pl.DataFrame) -> str:
    """``equal`` or what differs between two comparable frames."""
    if a.columns != b.columns:
        return f"differ in columns: {a.columns} vs {b.columns}"
    if a.height != b.height:
        return f"differ: {a.height:,} vs {b.height:,} rows"
    if a.schema != b.schema:
        return f"differ in types: {dict(a.schema)} vs {dict(b.schema)}"
    if a.equals(b):
        return "equal"
    columns = [name for name in a.columns if not a[name].equals(b[name])]
    return "differ in " + ", ".join(columns)


def compare_outputs(a: Path, b: Path, sketches: str = "bytes") -> dict[str, str]:
    """Table name -> verdict, for every table of either output."""
    a, b = Path(os.path.realpath(a)), Path(os.path.realpath(b))
    verdicts = {}
    in_a, in_b = set(table_names(a)), set(table_names(b))
    for table in sorted(in_a | in_b):
        if table not in in_a or table not in in_b:
            verdicts[table] = f"only in {a if table in in_a else b}"
            continue
        verdicts[table] = table_verdict(
            comparable(read_table(a, table), sketches),
            comparable(read_table(b, table), sketches),
        )
    return verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("a", type=Path, help="An output folder (or its pointer).")
    parser.add_argument("b", type=Path, help="The other output folder.")
    parser.add_argument(
        "--sketches",
        choices=("bytes", "estimate"),
        default="bytes",
        help="Compare sketch columns byte for byte (default) or by estimate.",
    )
    args = parser.parse_args(argv)
    verdicts = compare_outputs(args.a, args.b, args.sketches)
    if not verdicts:
        print("no tables in either output")
        return 1
    for table, verdict in verdicts.items():
        rows = ""
        if verdict == "equal":
            height = read_table(Path(os.path.realpath(args.a)), table).height
            rows = f" ({height:,} rows)"
        print(f"{table:<16} {verdict}{rows}")
    same = all(verdict == "equal" for verdict in verdicts.values())
    print("tables equal" if same else "tables DIFFER")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
