"""Output on an object store (``s3://``, ``gs://``): a folder per run, a pointer
written last.

An object store has no rename, let alone an atomic one, so the local layout's
symlink switch (``transforms.publish``) cannot work there. Layout, for
``--output s3://bucket/out``::

    s3://bucket/out/_current.json          the pointer, written last
    s3://bucket/out/runs/<run_id>/<table>/date=YYYY-MM-DD/*.parquet
    s3://bucket/out/runs/<run_id>/_run.json

A batch run writes every table and ``_run.json`` under its own run folder, each
object in one upload (S3 and GCS make an object visible whole or not at all), then
writes ``_current.json`` naming the run, in one upload too. A reader reads the
pointer once and scans the folder it names: it sees the whole run the pointer named
when it looked, never a mix of two runs. The pointer also names the run it replaced
(``previous``), whose folder stays for readers still scanning it; the run before
that is removed once the new pointer is written, and so is any other run folder
older than ``STALE_RUN_SECONDS`` (runs killed before publishing, runs that lost a
race for the pointer).

There is no lock on an object store: two runs writing one output at once each write
a whole run folder, and the last pointer written wins. Streaming output stays on a
local or shared folder (its pane files are renamed into place).
"""

import datetime
import io
import json
import re
import threading
from collections.abc import Callable

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from schemas.tables import CURRENT_POINTER as POINTER
from schemas.tables import RUN_MANIFEST, RUNS_FOLDER

SPILL_FOLDER = "_spill"
# A run folder the pointer does not name is removed once it is this old (from the
# start time in its run id): a batch run must finish within it.
STALE_RUN_SECONDS = 2 * 24 * 3600
# The package that brings each scheme's filesystem to Beam.
EXTRA_OF_SCHEME = {
    "s3": "apache-beam[aws], the s3 extra: pip install -e '.[s3]'",
    "gs": "apache-beam[gcp]",
    "azfs": "apache-beam[azure]",
}
RUN_ID_PATTERN = re.compile(r"^(\d{8}T\d{6})-[0-9a-f]+$")
# Per thread: the S3 client in use and the pipeline options it was made from.
_CLIENTS = threading.local()


def scheme(path: str) -> str | None:
    """``s3`` for ``s3://bucket/x``; None for a local path."""
    return FileSystems.get_scheme(path)


def is_remote(path: str) -> bool:
    """True when ``path`` names a location on a filesystem other than the local
    one (any ``scheme://`` path)."""
    return scheme(path) is not None


def filesystem_problem(path: str) -> str | None:
    """Why Beam has no filesystem for ``path``'s scheme here (one line), or None
    when the path is local or its filesystem is available."""
    name = scheme(path)
    if name is None:
        return None
    hint = EXTRA_OF_SCHEME.get(name)
    missing = f"no filesystem for {name}:// in this installation" + (
        f" (it needs {hint})" if hint else ""
    )
    try:
        FileSystems.get_filesystem(path)
    except Exception:  # noqa: BLE001 - Beam raises ValueError or BeamIOError.
        return missing
    if name == "s3":
        from apache_beam.io.aws import s3io

        if not s3io.BOTO3_INSTALLED:
            return missing
    return None


def join(root: str, *parts: str) -> str:
    """``root/part/part``: object paths always use ``/``."""
    return "/".join([root.rstrip("/"), *(part.strip("/") for part in parts)])


def one_line(error: BaseException) -> str:
    """An error of a filesystem (Beam nests them in dicts) as one short line."""
    text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:297] + "..."


# --- Objects ----------------------------------------------------------------------


def _filesystems() -> type[FileSystems]:
    """Beam's ``FileSystems``, given empty pipeline options where no pipeline set
    any (a report reading the tables): Beam's S3 filesystem needs options, and
    boto3 then takes endpoint and keys from the environment (``AWS_*``)."""
    if FileSystems._pipeline_options is None:
        from apache_beam.options.pipeline_options import PipelineOptions

        FileSystems.set_options(PipelineOptions([]))
    return FileSystems


def _s3io():
    """Beam's S3 client for this thread and the current pipeline options.

    Beam's S3 filesystem makes a boto3 session and client for every call, which
    costs more than writing a small object; a run writes and reads many (tables by
    date, spilled values). One per thread: Beam's client keeps the state of the
    download in progress."""
    from apache_beam.io.aws import s3io

    options = _filesystems()._pipeline_options
    cached = getattr(_CLIENTS, "s3io", None)
    if cached is None or cached[0] is not options:
        cached = (options, s3io.S3IO(options=options))
        _CLIENTS.s3io = cached
    return cached[1]


def create(path: str):
    """A binary file object writing the object ``path``; it appears whole when the
    file object is closed."""
    if scheme(path) == "s3":
        return _s3io().open(path, "wb")
    return _filesystems().create(path, compression_type=CompressionTypes.UNCOMPRESSED)


def write_bytes(path: str, data: bytes) -> None:
    with create(path) as handle:
        handle.write(data)


def read_bytes(path: str) -> bytes:
    if scheme(path) == "s3":
        opened = _s3io().open(path, "rb")
    else:
        uncompressed = CompressionTypes.UNCOMPRESSED
        opened = _filesystems().open(path, compression_type=uncompressed)
    with opened as f:
        return f.read()


def write_parquet(table: pa.Table, path: str, compression: str) -> None:
    """Write ``table`` as the object ``path`` in one upload."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression=compression)
    write_bytes(path, buffer.getvalue())


def list_files(prefix: str) -> list[str]:
    """Every object under ``prefix`` (a folder path), at any depth."""
    if scheme(prefix) == "s3":
        # Beam's client lists a missing prefix as empty; other errors raise.
        return sorted(path for path, _ in _s3io().list_files(join(prefix, "")))
    pattern = join(prefix, "**")
    try:
        found = _filesystems().match([pattern])[0].metadata_list
    except Exception:  # noqa: BLE001 - no such prefix: nothing under it.
        return []
    return sorted(metadata.path for metadata in found)


def delete_tree(prefix: str) -> list[str]:
    """Delete every object under ``prefix``; return their paths."""
    paths = list_files(prefix)
    if paths:
        FileSystems.delete(paths)
    return paths


# --- Publishing -------------------------------------------------------------------


def run_root(output: str, run_id: str) -> str:
    """The folder run ``run_id`` writes its tables into."""
    return join(output, RUNS_FOLDER, run_id)


def pointer_path(output: str) -> str:
    return join(output, POINTER)


def read_pointer(output: str) -> dict | None:
    """The pointer's content (``run_id``, ``folder``, ``previous``,
    ``published_at``), or None when no run was published yet."""
    path = pointer_path(output)
    if not _filesystems().exists(path):
        return None
    return json.loads(read_bytes(path))


def resolve(output: str) -> str:
    """The folder of the run the pointer names now (the reader's first step), or
    ``output`` itself when nothing was published there yet."""
    pointer = read_pointer(output)
    if pointer is None:
        return output
    return join(output, pointer["folder"])


def _no_step(name: str) -> None:
    pass


def publish(
    output: str, run_id: str, after_step: Callable[[str], None] = _no_step
) -> dict:
    """Make run ``run_id`` (its folder already holding every table and
    ``_run.json``) the one ``output`` names: one upload of the pointer. Returns the
    pointer written. ``after_step(name)`` is called after the upload (fault tests).
    """
    old = read_pointer(output)
    pointer = {
        "run_id": run_id,
        "folder": f"{RUNS_FOLDER}/{run_id}",
        "previous": None if old is None else old["run_id"],
        "replaced_previous": None if old is None else old.get("previous"),
        "published_at": datetime.datetime.now(datetime.UTC).isoformat(
            timespec="seconds"
        ),
    }
    # One line: valid JSON, and NDJSON that ``polars.read_ndjson`` reads from any
    # store polars reaches (the reader's recipe needs nothing but polars).
    data = json.dumps(pointer, sort_keys=True) + "\n"
    write_bytes(pointer_path(output), data.encode("utf-8"))
    after_step("pointer")
    return pointer


def run_started(run_id: str) -> datetime.datetime | None:
    """The UTC start a run id (``transforms.publish.new_run_id``) records."""
    match = RUN_ID_PATTERN.match(run_id)
    if match is None:
        return None
    start = datetime.datetime.strptime(match.group(1), "%Y%m%dT%H%M%S")
    return start.replace(tzinfo=datetime.UTC)


def run_folders(output: str) -> dict[str, list[str]]:
    """The objects of every run folder under ``output``, by run id."""
    runs = join(output, RUNS_FOLDER)
    folders: dict[str, list[str]] = {}
    for path in list_files(runs):
        run_id = path[len(runs) + 1 :].split("/", 1)[0]
        folders.setdefault(run_id, []).append(path)
    return folders


def remove_old_runs(
    output: str, pointer: dict, now: datetime.datetime | None = None
) -> list[str]:
    """After ``pointer`` was written: remove the run it pushed out (the run the
    replaced pointer called previous) and every run folder it does not name that
    started more than ``STALE_RUN_SECONDS`` ago. Runs still being written by
    another process are younger than that and stay. Returns the run ids removed.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    kept = {pointer["run_id"], pointer.get("previous")}
    removed = []
    for run_id, paths in sorted(run_folders(output).items()):
        if run_id in kept:
            continue
        started = run_started(run_id)
        stale = started is not None and (
            (now - started).total_seconds() > STALE_RUN_SECONDS
        )
        if run_id == pointer.get("replaced_previous") or stale:
            FileSystems.delete(paths)
            removed.append(run_id)
    return removed


def prepare(output: str, run_id: str) -> str:
    """The folder run ``run_id`` writes to (objects need no folders created)."""
    return run_root(output, run_id)


def discard(output: str, run_id: str) -> None:
    """Remove what a run that failed before publishing wrote."""
    delete_tree(run_root(output, run_id))


def probe_problem(output: str) -> str | None:
    """Why ``output`` cannot take the tables (write and delete a probe object under
    its runs folder: a missing bucket or bad credentials show only then), or None.
    """
    problem = filesystem_problem(output)
    if problem:
        return problem
    probe = join(output, RUNS_FOLDER, f".probe-{datetime.datetime.now().timestamp()}")
    try:
        write_bytes(probe, b"probe")
        FileSystems.delete([probe])
    except Exception as error:  # noqa: BLE001 - any filesystem's own error.
        return f"not writable ({one_line(error)})"
    return None


def manifest_path(root: str) -> str:
    return join(root, RUN_MANIFEST)
