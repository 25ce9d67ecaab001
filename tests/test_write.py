"""Parquet output: each row in its own window's partition, whole files, clean names,
reruns replacing tables."""

import datetime
import os
import re

import apache_beam as beam
import polars as pl
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.transforms.window import FixedWindows, TimestampedValue

from schemas import tables
from schemas.records import PostSummary
from transforms import aggregate, window_posts, write
from transforms.aggregate import AggregateWindows
from transforms.rolling import WriteRollingTables, pane_file_name
from transforms.write import (
    WriteWindowTables,
    concat_window_tables,
    table_rows,
    window_columns,
    write_empty_tables,
    write_parquet_atomically,
)

HOUR = 3600
# 50 windows, spanning three Beijing dates, posts out of order so that one bundle
# carries many windows (the case where Beam's WriteToParquet misfiles rows).
WINDOWS = 50
BASE = int(datetime.datetime(2026, 11, 20, 10, tzinfo=datetime.UTC).timestamp())


def _sample_posts():
    posts = []
    for index in range(WINDOWS * 3):
        hour = (index * 17) % WINDOWS
        posts.append(
            (
                BASE + hour * HOUR + index,
                PostSummary(f"p{index}", index % 7, False, (("hashtag", f"t{hour}"),)),
            )
        )
    return posts


def _write_sample(
    root: str,
    windowing: dict | None,
    writer: beam.PTransform,
    spill_dir: str | None = None,
) -> None:
    with TestPipeline() as pipeline:
        (
            pipeline
            | beam.Create(_sample_posts())
            | beam.Map(lambda pair: TimestampedValue(pair[1], pair[0]))
            | AggregateWindows(
                FixedWindows(HOUR), windowing=windowing, spill_dir=spill_dir
            )
            | writer
        )


def _assert_rows_in_their_windows(root: str) -> None:
    topics = pl.scan_parquet(
        f"{root}/topics/**/*.parquet", hive_partitioning=True
    ).collect()
    # Topic t<h> is posted only in hour h: each row's topic names its window.
    hours = ((topics["window_start"].dt.epoch("s") - BASE) // HOUR).to_list()
    assert [f"t{hour}" for hour in hours] == topics["topic"].to_list()
    assert topics["posts"].sum() == WINDOWS * 3
    local_dates = topics["window_start"].dt.convert_time_zone("Asia/Shanghai").dt.date()
    assert (local_dates == topics["date"]).all()
    volume = pl.scan_parquet(
        f"{root}/volume/**/*.parquet", hive_partitioning=True
    ).collect()
    assert volume.height == WINDOWS and volume["window_start"].n_unique() == WINDOWS


@pytest.mark.parametrize(
    "spilled", [False, True], ids=["in-memory", "spilled-to-files"]
)
def test_batch_writes_one_file_per_table_and_date(tmp_path, monkeypatch, spilled):
    root = str(tmp_path / "out")
    spill_dir = str(tmp_path / "spill") if spilled else None
    # The sample's windows are small: park every window's tables and rows in files.
    monkeypatch.setattr(write, "PARK_MIN_TOPIC_ROWS", 0)
    monkeypatch.setattr(window_posts, "SPILL_ROWS", 1)
    _write_sample(
        root, None, WriteWindowTables(root, "Asia/Shanghai", spill_dir), spill_dir
    )
    assert os.path.isdir(str(tmp_path / "spill")) == spilled
    for table in ("volume", "topics"):
        folders = sorted(os.listdir(os.path.join(root, table)))
        assert folders == ["date=2026-11-20", "date=2026-11-21", "date=2026-11-22"]
        for folder in folders:
            assert os.listdir(os.path.join(root, table, folder)) == [
                folder[5:].replace("-", "") + ".parquet"
            ]
    _assert_rows_in_their_windows(root)


def test_every_row_lands_in_its_own_window_partition(tmp_path):
    root = str(tmp_path)
    # The streaming writer: each window's pane is a file of its own.
    _write_sample(root, {}, WriteRollingTables(root, "Asia/Shanghai"))
    for table in ("volume", "topics"):
        files = sorted(pl.Series(os.listdir(os.path.join(root, table))).to_list())
        assert files, table
        seen_windows = 0
        for dirpath, _, names in os.walk(os.path.join(root, table)):
            for name in names:
                assert re.fullmatch(r"\d{8}T\d{6}Z-pane\d{6}\.parquet", name), name
                frame = pl.read_parquet(os.path.join(dirpath, name))
                starts = frame["window_start"].unique().to_list()
                assert len(starts) == 1, f"{name} holds rows of {len(starts)} windows"
                micros = int(starts[0].timestamp() * 1_000_000)
                assert pane_file_name(micros, 0) == name
                local = (
                    starts[0]
                    .astimezone(datetime.timezone(datetime.timedelta(hours=8)))
                    .date()
                )
                assert os.path.basename(dirpath) == f"date={local.isoformat()}"
                seen_windows += 1
        assert seen_windows == WINDOWS
    _assert_rows_in_their_windows(root)


def test_files_carry_the_table_schema_and_zstd(tmp_path):
    path = str(tmp_path / "x" / "date=2026-11-22" / "20261122T000000Z.parquet")
    write_parquet_atomically(tables.VOLUME.empty_table(), path)
    parquet = pq.ParquetFile(path)
    assert parquet.schema_arrow.equals(tables.VOLUME)
    assert (
        parquet.metadata.num_row_groups == 0
        or parquet.metadata.row_group(0).column(0).compression == "ZSTD"
    )
    assert os.listdir(os.path.dirname(path)) == [
        "20261122T000000Z.parquet"
    ]  # no temporary left


def test_empty_tables_get_a_schema_file(tmp_path):
    filled = write_empty_tables(str(tmp_path), "2026-11-23")
    assert set(filled) == set(tables.TABLES)
    frame = pl.scan_parquet(
        f"{tmp_path}/bursts/**/*.parquet", hive_partitioning=True
    ).collect()
    assert frame.height == 0 and "score" in frame.columns


def _window_aggregates() -> list[tuple[int, int, aggregate.WindowAggregate]]:
    """Three windows' aggregates: two with topics, one without."""
    windows = []
    for hour, topics in enumerate(
        [(("hashtag", "a"), ("mention", "b")), (), (("hashtag", "a"),)]
    ):
        posts = aggregate.WindowPosts()
        for author in range(3):
            aggregate.add_post(
                posts, PostSummary(f"{hour}{author}", author, author == 1, topics)
            )
        start = (BASE + hour * HOUR) * 1_000_000
        windows.append(
            (start, start + HOUR * 1_000_000, aggregate.aggregate_window(posts))
        )
    return windows


def test_column_lists_make_the_same_date_tables_as_window_tables():
    windows = _window_aggregates()
    as_tables = [
        (start, end, aggregate.window_tables(result, start, end))
        for start, end, result in windows
    ]
    as_columns = [
        (start, end, window_columns(result)) for start, end, result in reversed(windows)
    ]
    expected = concat_window_tables(as_tables)
    got = concat_window_tables(as_columns)
    assert sorted(got) == sorted(expected) == ["topics", "volume"]
    for name in expected:
        assert got[name].schema.equals(tables.TABLES[name])
        assert got[name].equals(expected[name]), name
    assert [table_rows(part[2]["topics"]) for part in as_columns] == [1, 0, 2]
