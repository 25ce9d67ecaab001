"""How the command talks: quiet logging, a progress line, the closing summary, and
failures in one line.

Beam's worker processes inherit the command's standard error and log to it at INFO
from their first line. By default (``--log-level error``, no ``--log-file``) the
process-level standard error (file descriptor 2, which the workers and the Prism
binary inherit) goes to ``/dev/null``, and the command's own messages go to a copy
of the terminal's descriptor kept aside. ``--log-file`` sends all of it to the file
instead; a lower ``--log-level`` leaves it on the terminal.
"""

import argparse
import collections
import contextlib
import errno
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from typing import NamedTuple

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.tables import TABLES
from transforms import object_store

# Seconds before the first progress line, and between two.
PROGRESS_AFTER_SECONDS = 5.0
PROGRESS_EVERY_SECONDS = 10.0
MAX_ERROR_CHARS = 400
# The last line naming an exception in a message that carries a traceback.
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b:?")
# Beam counters summed for the summary (transforms/read.py, transforms/landing.py).
LINE_COUNTERS = ("posts_parsed", "lines_rejected")


class RunFailure(Exception):
    """A failure whose message is the whole line to print."""


class ConsoleSettings(NamedTuple):
    log_level: str
    log_file: str | None
    debug: bool


def console_settings(argv: list[str]) -> ConsoleSettings:
    """The logging options of ``argv``, read before the full parse (which may fail
    and must already speak quietly)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--log-level", "--log_level", default="error")
    parser.add_argument("--log-file", "--log_file", default=None)
    parser.add_argument("--debug", action="store_true")
    known, _ = parser.parse_known_args(argv)
    level = str(known.log_level).lower()
    if level not in ("debug", "info", "warning", "error"):
        level = "error"
    return ConsoleSettings(level, known.log_file, known.debug)


@contextlib.contextmanager
def quiet_console(settings: ConsoleSettings) -> Iterator[None]:
    """Within: ``sys.stderr`` is the terminal, file descriptor 2 (inherited by every
    child process) is the log file, ``/dev/null`` when quiet, or unchanged; Python
    logging goes to the log file or the terminal at ``settings.log_level``."""
    quiet = settings.log_level == "error"
    # Quiet on a terminal: a failure's traceback, which Beam logs at ERROR as well,
    # is left to --debug; the command prints its one line.
    level = (
        logging.CRITICAL
        if quiet and not settings.log_file
        else getattr(logging, settings.log_level.upper())
    )
    target = None
    if settings.log_file:
        target = os.open(settings.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    elif quiet:
        target = os.open(os.devnull, os.O_WRONLY)
    saved_fd = os.dup(2)
    saved_stderr = sys.stderr
    terminal = open(  # noqa: SIM115 - closed in the finally below.
        os.dup(2), "w", buffering=1, encoding="utf-8", errors="backslashreplace"
    )
    if target is not None:
        sys.stderr.flush()
        os.dup2(target, 2)
        os.close(target)
        sys.stderr = terminal
    handler = (
        logging.FileHandler(settings.log_file, encoding="utf-8")
        if settings.log_file
        else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
    # Loggers given a level of their own (Beam's runners) still pass this handler.
    handler.setLevel(level)
    logging.basicConfig(level=level, handlers=[handler], force=True)
    try:
        yield
    finally:
        sys.stderr = saved_stderr
        terminal.flush()
        os.dup2(saved_fd, 2)
        os.close(saved_fd)
        terminal.close()


def failure_line(error: BaseException) -> str:
    """One line saying what failed: the exception's own first line, or, for a
    failure a worker reported with its traceback, the traceback's last exception."""
    if isinstance(error, RunFailure):
        return str(error)
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        where = f" ({error.filename})" if error.filename else ""
        return f"no space left on device{where}"
    if isinstance(error, OSError) and error.strerror:
        where = f": {error.filename}" if error.filename else ""
        return f"{error.strerror}{where}"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    named = [line for line in lines if _EXCEPTION_LINE.match(line)]
    if named:
        text = named[-1]
    else:
        text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    if "No space left on device" in text:
        step = re.search(r"\[while running '([^']+)'\]", text)
        return "no space left on device" + (
            f" (while running {step.group(1)})" if step else ""
        )
    return text[:MAX_ERROR_CHARS]


class Progress:
    """A context printing ``label: N s`` to stderr every ``PROGRESS_EVERY_SECONDS``
    once a run has taken ``PROGRESS_AFTER_SECONDS``; on a terminal, one line
    rewritten in place and cleared at the end."""

    def __init__(
        self,
        label: str,
        after: float = PROGRESS_AFTER_SECONDS,
        every: float = PROGRESS_EVERY_SECONDS,
    ):
        self._label = label
        self._after = after
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self._printed = False

    def _run(self) -> None:
        start = time.monotonic()
        if self._stop.wait(self._after):
            return
        stream = sys.stderr
        tty = stream.isatty()
        while True:
            elapsed = int(time.monotonic() - start)
            line = f"{self._label}: {elapsed} s"
            stream.write(f"\r{line}" if tty else f"{line}\n")
            stream.flush()
            self._printed = True
            if self._stop.wait(self._every if not tty else 1.0):
                break
        if tty:
            stream.write("\r\033[K")
            stream.flush()

    def __enter__(self) -> "Progress":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def table_files(root: str, table: str) -> list[str]:
    folder = os.path.join(root, table)
    if object_store.is_remote(folder):
        files = object_store.list_files(folder)
        return [path for path in files if path.endswith(".parquet")]
    return sorted(
        os.path.join(path, name)
        for path, _, names in os.walk(folder)
        for name in names
        if name.endswith(".parquet")
    )


def parquet_file(path: str) -> pq.ParquetFile:
    """The Parquet file at ``path``, local or an object store's (read whole)."""
    if object_store.is_remote(path):
        return pq.ParquetFile(pa.BufferReader(object_store.read_bytes(path)))
    return pq.ParquetFile(path)


def table_rows(root: str) -> dict[str, int]:
    """Rows per table of a run folder: one polars scan of a table's local files (a
    run over years writes a file per table and date), the footers of an object
    store's."""
    rows = {}
    for table in TABLES:
        files = table_files(root, table)
        if not files:
            rows[table] = 0
        elif object_store.is_remote(files[0]):
            rows[table] = sum(parquet_file(path).metadata.num_rows for path in files)
        else:
            rows[table] = (
                pl.scan_parquet(files, hive_partitioning=False)
                .select(pl.len())
                .collect()
                .item()
            )
    return rows


def column_sum(root: str, table: str, column: str) -> int:
    """The sum of a table's column over all its files (nulls count 0; 0 when the
    table has no such column)."""
    files = table_files(root, table)
    if not files or column not in parquet_file(files[0]).schema_arrow.names:
        return 0
    if object_store.is_remote(files[0]):
        total = 0
        for path in files:
            values = parquet_file(path).read(columns=[column]).column(column)
            total += sum(value for value in values.to_pylist() if value)
        return total
    total = (
        pl.scan_parquet(files, hive_partitioning=False)
        .select(pl.col(column).sum())
        .collect()
        .item()
    )
    return int(total or 0)


def dead_letter_reasons(root: str) -> collections.Counter:
    """Dead letters per reason, a reason being the error's text before its ':'."""
    reasons: collections.Counter = collections.Counter()
    for path in table_files(root, "dead_letters"):
        errors = parquet_file(path).read(columns=["error"]).column("error")
        for error in errors.to_pylist():
            reasons[str(error).split(":", 1)[0].strip() or "unknown"] += 1
    return reasons


def counter_totals(result) -> dict[str, int]:
    """Beam's counters of a finished run summed by name (empty when the runner
    reports none)."""
    try:
        counters = result.metrics().query()["counters"]
    except Exception:  # noqa: BLE001 - a runner without metrics.
        return {}
    totals: dict[str, int] = collections.Counter()
    for counter in counters:
        value = counter.committed
        if value is None:
            value = counter.attempted
        totals[counter.key.metric.name] += value or 0
    return dict(totals)


def run_summary(root: str, result=None) -> list[str]:
    """The closing lines of a run: lines read, posts, duplicates, dead letters by
    reason, rows per table; from the written tables and Beam's counters."""
    rows = table_rows(root)
    posts = column_sum(root, "volume", "posts")
    duplicates = column_sum(root, "volume", "duplicates")
    reasons = dead_letter_reasons(root)
    dead = sum(reasons.values())
    counters = counter_totals(result) if result is not None else {}
    lines_read = sum(counters.get(name, 0) for name in LINE_COUNTERS)
    if not lines_read:
        late = column_sum(root, "late_posts", "posts")
        lines_read = posts + duplicates + dead + late
    summary = [
        f"read {lines_read:,} lines: {posts:,} posts, {duplicates:,} duplicates, "
        f"{dead:,} dead letters"
    ]
    if reasons:
        summary.append(
            "dead letters by reason: "
            + ", ".join(
                f"{reason} {count:,}" for reason, count in reasons.most_common()
            )
        )
    summary.append(
        f"wrote {len(rows)} tables: "
        + ", ".join(f"{table} {count:,} rows" for table, count in rows.items())
    )
    return summary
