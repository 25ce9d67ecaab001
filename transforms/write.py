"""Parquet output: files per table and date (batch) or window (streaming), each
written whole or not at all.

Layout (``../shared/CONTRACT.md``): ``ROOT/<table>/date=YYYY-MM-DD/<file>.parquet``,
``date`` being the window start's date in the configured timezone. Each file is
written under a temporary name in its final folder and renamed into place, so a
reader (polars scanning ``**/*.parquet``) sees either the old file or the new one,
never a half-written one. A batch run writes one file per table and date
(``20121113.parquet``); a streaming run writes one immutable file per window and
pane (``transforms/rolling.py``, named from ``window_file_name``).

Beam's ``WriteToParquet`` misfiles rows when several windows fire in one bundle and
names files with brackets; this writer keys every file by its window explicitly.
"""

import datetime
import hashlib
import json
import os
import uuid
from collections.abc import Iterable

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics
from apache_beam.transforms import trigger, window

from schemas import tables
from schemas.records import DeadLetter, WindowTables
from schemas.tables import RUN_MANIFEST
from transforms import object_store
from transforms.aggregate import WindowAggregate
from transforms.spill import park, unpark
from transforms.windows import local_date

COMPRESSION = "zstd"
# A window's tables go to a file of their own from this many topic rows (about 64 KB
# with their sketches): a file per small window costs more than the window itself
# where windows are many and sparse (docs/performance.md).
PARK_MIN_TOPIC_ROWS = 200
EMPTY_FILE_NAME = "empty.parquet"


def window_file_name(start_us: int) -> str:
    """``20121113T080000Z.parquet``: the window's UTC start, clean characters only."""
    start = datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=start_us)
    return start.strftime("%Y%m%dT%H%M%SZ") + ".parquet"


def partition_dir(root: str, table: str, date: str) -> str:
    return os.path.join(root, table, f"date={date}")


def replace_atomically(path: str, write) -> None:
    """Create or replace ``path`` whole: ``write(temporary)`` writes a temporary
    sibling, which is then renamed into place (and removed if writing fails).

    The temporary name ends in ``.tmp``, so no reader's ``*.parquet`` or ``*.json``
    glob picks it up.
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.{uuid.uuid4().hex}.tmp"
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_parquet_atomically(table: pa.Table, path: str) -> None:
    """Write ``table`` to ``path`` (zstd), whole or not at all: on an object store
    (``scheme://`` path) in one upload, which an object store shows whole."""
    if object_store.is_remote(path):
        object_store.write_parquet(table, path, COMPRESSION)
        return
    replace_atomically(
        path,
        lambda temporary: pq.write_table(table, temporary, compression=COMPRESSION),
    )


def _source_order(letter: DeadLetter) -> tuple[str, int]:
    """``file:line`` sorted by file, then line as a number."""
    path, _, line = letter.source.rpartition(":")
    return path, int(line) if line.isdigit() else 0


def dead_letters_table(letters: Iterable[DeadLetter]) -> pa.Table:
    letters = sorted(letters, key=_source_order)
    return pa.Table.from_pydict(
        {
            "raw": [letter.raw for letter in letters],
            "error": [letter.error for letter in letters],
            "source": [letter.source for letter in letters],
            "stage": [letter.stage for letter in letters],
            "read_at": [letter.read_at_us for letter in letters],
        },
        schema=tables.DEAD_LETTERS,
    )


def content_file_name(keys: Iterable[str]) -> str:
    """A file name fixed by the rows it holds, so a retried write replaces itself."""
    digest = hashlib.sha1("\n".join(sorted(keys)).encode("utf-8")).hexdigest()[:16]
    return f"part-{digest}.parquet"


def write_empty_tables(root: str, date: str) -> list[str]:
    """Give every table without files one empty file carrying its schema.

    ``polars.scan_parquet`` of a table needs at least one file to know the columns;
    an empty file in ``date=<date>`` makes a run with, say, no bursts still readable.
    Returns the tables that got one.
    """
    filled = []
    remote = object_store.is_remote(root)
    for name, schema in tables.TABLES.items():
        folder = os.path.join(root, name)
        files = (
            object_store.list_files(folder)
            if remote
            else (file for _, _, files in os.walk(folder) for file in files)
        )
        has_files = any(file.endswith(".parquet") for file in files)
        if not has_files:
            write_parquet_atomically(
                schema.empty_table(),
                os.path.join(partition_dir(root, name, date), EMPTY_FILE_NAME),
            )
            filled.append(name)
    return filled


class WriteDeadLettersFn(beam.DoFn):
    """(date, [DeadLetter]) -> the file written for that date's dead letters."""

    def __init__(self, root: str):
        self._root = root

    def process(self, element: tuple[str, Iterable[DeadLetter]]) -> Iterable[str]:
        date, letters = element
        table = dead_letters_table(letters)
        path = os.path.join(
            partition_dir(self._root, "dead_letters", date),
            content_file_name(table.column("source").to_pylist()),
        )
        write_parquet_atomically(table, path)
        yield path


class WriteDeadLetters(beam.PTransform):
    """PCollection[DeadLetter] -> files under ``ROOT/dead_letters/date=<read date>/``.

    Dead letters have no event time; they are grouped by the date they were read.
    A batch run writes them once at the end; a streaming run (``flush_seconds`` set)
    flushes every that many seconds of processing time, each flush a file of its own.
    """

    def __init__(self, root: str, timezone: str, flush_seconds: int | None = None):
        super().__init__()
        self._root = root
        self._timezone = timezone
        self._flush_seconds = flush_seconds

    def expand(self, letters: beam.PCollection) -> beam.PCollection:
        timezone = self._timezone
        if self._flush_seconds:
            letters = letters | "FlushPeriodically" >> beam.WindowInto(
                window.GlobalWindows(),
                trigger=trigger.Repeatedly(
                    trigger.AfterProcessingTime(self._flush_seconds)
                ),
                accumulation_mode=trigger.AccumulationMode.DISCARDING,
            )
        return (
            letters
            | "ByReadDate"
            >> beam.Map(
                lambda letter: (local_date(letter.read_at_us, timezone), letter)
            )
            | "GroupByReadDate" >> beam.GroupByKey()
            | "WriteDeadLetterFiles" >> beam.ParDo(WriteDeadLettersFn(self._root))
        )


def date_file_name(date: str) -> str:
    """``20121113.parquet``: the file of a batch run holding all windows of one date."""
    return date.replace("-", "") + ".parquet"


def window_columns(aggregate: WindowAggregate) -> dict[str, dict[str, list]]:
    """A window's ``volume`` and ``topics`` rows (and the topics' top carriers, read
    by the events only) as plain column lists, without
    ``window_start`` and ``window_end`` (the window's element carries them): what a
    batch run passes between its steps. Beam's default coder encodes lists of
    numbers, strings and bytes without pickling, where a ``pa.Table`` per window
    costs an Arrow table to build and a pickle at every shuffle; the tables are
    built once per date (``concat_window_tables``)."""
    return {
        "volume": {
            "posts": [aggregate.posts],
            "participants": [aggregate.participants],
            "reposts": [aggregate.reposts],
            "duplicates": [aggregate.duplicates],
            "participants_sketch": [aggregate.participants_sketch],
        },
        "topics": dict(aggregate.topic_columns),
        **(
            {}
            if aggregate.carrier_columns is None
            else {tables.TOP_CARRIERS_NAME: dict(aggregate.carrier_columns)}
        ),
    }


def published_tables(element: WindowTables) -> WindowTables:
    """A window's tables without those only later steps read (not in
    ``schemas.tables.TABLES``, such as the events' top carriers)."""
    start_us, end_us, by_table = element
    return (
        start_us,
        end_us,
        {name: table for name, table in by_table.items() if name in tables.TABLES},
    )


def table_rows(table: pa.Table | dict[str, list]) -> int:
    """Rows of a window's table: a ``pa.Table`` or ``window_columns``' lists."""
    if isinstance(table, pa.Table):
        return table.num_rows
    return len(next(iter(table.values()), ()))


def _columns_table(
    name: str, parts: list[tuple[int, int, dict[str, list]]]
) -> pa.Table:
    """Windows' column lists of table ``name`` -> one table of its schema, the
    windows' bounds filled in."""
    schema = tables.TABLES[name]
    data: dict[str, list] = {column: [] for column in schema.names}
    for start_us, end_us, columns in parts:
        rows = table_rows(columns)
        data["window_start"].extend([start_us] * rows)
        data["window_end"].extend([end_us] * rows)
        for column, values in columns.items():
            data[column].extend(values)
    return pa.Table.from_pydict(data, schema=schema)


def concat_window_tables(
    windows: Iterable[WindowTables],
) -> dict[str, pa.Table]:
    """Many windows' tables (``pa.Table``s, or ``window_columns``' lists) -> one
    table per name of ``schemas.tables.TABLES``, rows in window order."""
    ordered = sorted(windows, key=lambda element: element[0])
    names = sorted(
        {
            name
            for _, _, by_table in ordered
            for name in by_table
            if name in tables.TABLES
        }
    )
    concatenated = {}
    for name in names:
        parts = [
            (start_us, end_us, by_table[name])
            for start_us, end_us, by_table in ordered
            if name in by_table
        ]
        if all(isinstance(part[2], pa.Table) for part in parts):
            concatenated[name] = pa.concat_tables(
                [part[2].cast(tables.TABLES[name]) for part in parts]
            )
        else:
            concatenated[name] = _columns_table(name, parts)
    return concatenated


class WriteDateTablesFn(beam.DoFn):
    """(date, [(start_us, end_us, {table: pa.Table or column lists})]) -> one file
    per table and date."""

    def __init__(self, root: str):
        self._root = root
        self._files = Metrics.counter(self.__class__, "files_written")

    def process(self, element) -> Iterable[str]:
        date, windows = element
        for name, table in concat_window_tables(windows).items():
            if table.num_rows == 0:
                continue
            path = os.path.join(
                partition_dir(self._root, name, date), date_file_name(date)
            )
            write_parquet_atomically(table, path)
            self._files.inc()
            yield path


class WriteWindowTables(beam.PTransform):
    """PCollection[(start_us, end_us, {table: pa.Table or ``window_columns``'
    lists})] -> written file paths, in batch: the windows are grouped by local date
    and each table gets one file per date, since a run over years of hourly windows
    would otherwise leave tens of thousands of small files for every scan to open.
    (Streaming writes each pane as it fires:
    ``transforms.rolling.WriteRollingTables``.)
    """

    def __init__(self, root: str, timezone: str, spill_dir: str | None = None):
        """``spill_dir``: where each window's tables of some size wait for the
        grouping by date (``transforms.spill.park``), so the shuffle holds their
        files' names."""
        super().__init__()
        self._root = root
        self._timezone = timezone
        self._spill_dir = spill_dir

    def expand(self, windows: beam.PCollection) -> beam.PCollection:
        timezone, spill_dir = self._timezone, self._spill_dir
        windows = windows | "PublishedTables" >> beam.Map(published_tables)
        if spill_dir is not None:
            windows = windows | "ParkTables" >> beam.Map(
                lambda element: (
                    *element[:2],
                    park(
                        element[2],
                        table_rows(element[2]["topics"]) >= PARK_MIN_TOPIC_ROWS,
                        spill_dir,
                    ),
                )
            )
        by_date = (
            windows
            | "ByDate"
            >> beam.Map(lambda element: (local_date(element[0], timezone), element))
            | "GroupByDate" >> beam.GroupByKey()
        )
        if spill_dir is not None:
            by_date = by_date | "LoadTables" >> beam.MapTuple(
                lambda date, parked: (
                    date,
                    [(*element[:2], unpark(element[2])) for element in parked],
                )
            )
        return by_date | "WriteDateFiles" >> beam.ParDo(WriteDateTablesFn(self._root))


class WriteRowsFn(beam.DoFn):
    """(date, rows) -> one file of ``table`` in that date's partition.

    ``per_firing`` (streaming): the file is named by its rows' content, so each firing
    adds a file and a retried firing replaces its own; otherwise one file per date.
    """

    def __init__(self, root: str, table: str, to_table, row_key, per_firing: bool):
        self._root = root
        self._table = table
        self._to_table = to_table
        self._row_key = row_key
        self._per_firing = per_firing

    def process(self, element) -> Iterable[str]:
        date, rows = element
        rows = list(rows)
        name = (
            content_file_name(map(self._row_key, rows))
            if self._per_firing
            else date_file_name(date)
        )
        path = os.path.join(partition_dir(self._root, self._table, date), name)
        write_parquet_atomically(self._to_table(rows), path)
        yield path


class WriteRowsByDate(beam.PTransform):
    """PCollection[row] -> files of ``table`` under ``date=<local date of the row>``.

    ``instant_of(row)`` is the row's time in epoch microseconds (its partition date),
    ``to_table(rows)`` builds the table, ``row_key(row)`` a string unique to the row.
    In streaming (``firing_seconds`` set) rows are gathered in fixed windows of that
    many seconds of event time and each window's rows become a file.
    """

    def __init__(
        self,
        root: str,
        table: str,
        timezone: str,
        instant_of,
        to_table,
        row_key,
        firing_seconds: int | None = None,
    ):
        super().__init__()
        self._root = root
        self._table = table
        self._timezone = timezone
        self._instant_of = instant_of
        self._to_table = to_table
        self._row_key = row_key
        self._firing_seconds = firing_seconds

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        if self._firing_seconds:
            rows = rows | "GatherPerWindow" >> beam.WindowInto(
                window.FixedWindows(self._firing_seconds)
            )
        timezone, instant_of = self._timezone, self._instant_of
        return (
            rows
            | "ByDate"
            >> beam.Map(lambda row: (local_date(instant_of(row), timezone), row))
            | "GroupByDate" >> beam.GroupByKey()
            | "WriteFiles"
            >> beam.ParDo(
                WriteRowsFn(
                    self._root,
                    self._table,
                    self._to_table,
                    self._row_key,
                    bool(self._firing_seconds),
                )
            )
        )


def write_run_manifest(folder: str, manifest: dict) -> str:
    """Write ``manifest`` as ``folder/_run.json`` (atomically); return its path."""
    path = os.path.join(folder, RUN_MANIFEST)
    if object_store.is_remote(folder):
        text = json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True)
        object_store.write_bytes(path, text.encode("utf-8"))
        return path

    def dump(temporary: str) -> None:
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, ensure_ascii=False, indent=1, sort_keys=True)

    replace_atomically(path, dump)
    return path
