"""The output folder: one run folder per run, one pointer switched atomically.

Layout, for ``--output /data/out``::

    /data/out -> .out.runs/<run_id>       the pointer: a relative symlink
    /data/.out.runs/<run_id>/<table>/date=YYYY-MM-DD/*.parquet, _run.json
    /data/.out.runs/_previous -> <run_id> the run the pointer named before
    /data/.out.lock                       held (flock) by the run writing the output

A run writes its tables and ``_run.json`` into its own run folder, then publishes
them all at once by renaming a new symlink over the pointer (``os.replace``, one
atomic rename): a reader sees the whole previous run or the whole new one. The
previous run's folder stays until the next run publishes (a grace period for
readers still scanning it); every other run folder is removed when a run starts and
after it publishes. ``DIR/<table>/**/*.parquet`` keeps working through the pointer;
a reader that must not mix two runs resolves the pointer once
(``os.path.realpath(DIR)``) and scans under the resolved folder.

An output folder of the older layout (tables directly inside a real ``DIR``) is moved
into a run folder once, by the first run that publishes into it: the real folder and
the new pointer swap places in one ``renameat2(RENAME_EXCHANGE)`` where Linux offers
it (else a rename, then the pointer: readers find no output between the two).
"""

import ctypes
import ctypes.util
import datetime
import errno
import fcntl
import os
import shutil
import uuid

from schemas.tables import RUN_MANIFEST, TABLES

RUNS_SUFFIX = ".runs"
LOCK_SUFFIX = ".lock"
PREVIOUS_LINK = "_previous"
LINK_INFIX = ".link-"
# Leftovers of the older layout inside a run folder: staging of killed runs.
OLD_LAYOUT_LEFTOVERS = (".staging-", ".replaced-")
LEGACY_RUN_PREFIX = "legacy-"
# renameat2's flag (linux/fs.h): swap two names atomically.
RENAME_EXCHANGE = 2
AT_FDCWD = -100


class OutputLocked(Exception):
    """Another process holds the output's lock; the message names it."""


def new_run_id() -> str:
    """The UTC start as ``%Y%m%dT%H%M%S``, a dash and 8 hex digits: run ids sort
    by start time and are unique per run."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
    return f"{now}-{uuid.uuid4().hex[:8]}"


def runs_dir(output: str) -> str:
    """``/data/.out.runs`` for ``/data/out``: beside the output, same filesystem."""
    parent, name = os.path.split(os.path.abspath(output).rstrip(os.sep))
    return os.path.join(parent, f".{name}{RUNS_SUFFIX}")


def lock_path(output: str) -> str:
    parent, name = os.path.split(os.path.abspath(output).rstrip(os.sep))
    return os.path.join(parent, f".{name}{LOCK_SUFFIX}")


def _link_prefix(output: str) -> str:
    """``.out.link-``: the temporary pointers of ``out``'s runs (beside it)."""
    return f".{os.path.basename(os.path.abspath(output).rstrip(os.sep))}{LINK_INFIX}"


def output_path(given: str) -> str:
    """The output path a run works on: ``given`` made absolute, and, when it is a
    symlink of the user's own (not a pointer of ours), the folder it names."""
    path = os.path.abspath(given)
    if os.path.islink(path) and not _is_pointer(path):
        return os.path.realpath(path)
    return path


def foreign_entries(output: str) -> list[str]:
    """What a real output folder (the older layout) holds besides tables, their
    manifest and a killed run's staging: a folder with anything else is not the
    pipeline's to move."""
    if os.path.islink(output) or not os.path.isdir(output):
        return []
    own = {*TABLES, RUN_MANIFEST}
    return sorted(
        name
        for name in os.listdir(output)
        if name not in own and not name.startswith((*OLD_LAYOUT_LEFTOVERS, ".probe-"))
    )


def _is_pointer(output: str) -> bool:
    target = os.readlink(output).rstrip(os.sep)
    return os.path.dirname(target) == os.path.basename(runs_dir(output))


def run_dir(output: str, run_id: str) -> str:
    """The folder run ``run_id`` writes its tables into."""
    return os.path.join(runs_dir(output), run_id)


def current_run(output: str) -> str | None:
    """The run id the pointer names, or None (no pointer yet, or an older layout)."""
    if not os.path.islink(output) or not _is_pointer(output):
        return None
    return os.path.basename(os.readlink(output).rstrip(os.sep))


def previous_run(output: str) -> str | None:
    """The run the pointer named before the current one, or None."""
    link = os.path.join(runs_dir(output), PREVIOUS_LINK)
    return os.readlink(link) if os.path.islink(link) else None


def resolve(output: str) -> str:
    """The folder holding the tables of the run ``output`` names now: the reader's
    recipe is to resolve once and read everything under the result."""
    return os.path.realpath(output)


# --- The lock -------------------------------------------------------------------


class OutputLock:
    """An exclusive ``flock`` on the lock file beside ``output``, held until
    ``release`` (or the process ends: the kernel drops it with the last descriptor).
    The holder writes its pid and start time into the file, for the refusal message.
    """

    def __init__(self, output: str):
        self.path = lock_path(output)
        self._fd: int | None = None

    def acquire(self) -> "OutputLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip()
            os.close(fd)
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise OutputLocked(
                f"another run is writing this output ({holder or 'pid unknown'}); "
                "wait for it to finish or stop it"
            ) from None
        started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}, started {started}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# --- Publishing -----------------------------------------------------------------


def _no_step(name: str) -> None:
    pass


def _exchange(first: str, second: str) -> bool:
    """Swap two paths atomically (Linux ``renameat2``); False where unsupported."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(
        AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second), RENAME_EXCHANGE
    )
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), second)


def publish(output: str, run_id: str, after_step=_no_step) -> None:
    """Make run ``run_id`` (its folder already holding every table and ``_run.json``)
    the one ``output`` names, in one atomic rename.

    ``after_step(name)`` is called after each filesystem operation (for fault tests).
    The caller holds the output's lock.
    """
    runs = runs_dir(output)
    target = os.path.join(os.path.basename(runs), run_id)
    temporary = os.path.join(os.path.dirname(runs), f"{_link_prefix(output)}{run_id}")
    old_run = current_run(output)
    os.symlink(target, temporary)
    after_step("link")
    if old_run is not None:
        _set_previous(runs, old_run, after_step)
    if os.path.isdir(output) and not os.path.islink(output):
        _publish_over_old_layout(output, run_id, temporary, after_step)
        return
    os.replace(temporary, output)
    after_step("switch")


def _set_previous(runs: str, run_id: str, after_step) -> None:
    link = os.path.join(runs, PREVIOUS_LINK)
    temporary = f"{link}.{uuid.uuid4().hex}.tmp"
    os.symlink(run_id, temporary)
    after_step("previous-link")
    os.replace(temporary, link)
    after_step("previous")


def _publish_over_old_layout(
    output: str, run_id: str, temporary: str, after_step
) -> None:
    """Swap a real output folder (older layout) for the pointer; the old tables
    become the previous run, in a run folder of their own."""
    runs = runs_dir(output)
    legacy = f"{LEGACY_RUN_PREFIX}{run_id}"
    if _exchange(temporary, output):
        after_step("exchange")
        os.replace(temporary, os.path.join(runs, legacy))
        after_step("legacy")
    else:
        os.replace(output, os.path.join(runs, legacy))
        after_step("legacy")
        os.replace(temporary, output)
        after_step("switch")
    _set_previous(runs, legacy, after_step)


# --- Cleaning -------------------------------------------------------------------


def prepare(output: str, run_id: str) -> str:
    """Create the run folder of ``run_id`` (and the runs folder); return its path.
    Removes what killed runs left first. The caller holds the output's lock."""
    remove_leftovers(output)
    folder = run_dir(output, run_id)
    os.makedirs(folder)
    return folder


def remove_leftovers(output: str, keep: tuple[str, ...] = ()) -> list[str]:
    """Remove every run folder but the current, the previous and ``keep``, the
    temporary pointers of killed runs, and the older layout's staging folders
    inside the output. Returns the paths removed. The caller holds the lock."""
    runs = runs_dir(output)
    parent = os.path.dirname(runs)
    kept = {current_run(output), previous_run(output), PREVIOUS_LINK, *keep}
    removed = []
    if os.path.isdir(runs):
        for name in os.listdir(runs):
            if name not in kept:
                removed.append(os.path.join(runs, name))
    for name in os.listdir(parent) if os.path.isdir(parent) else ():
        if name.startswith(_link_prefix(output)):
            removed.append(os.path.join(parent, name))
    if os.path.isdir(output):
        for name in os.listdir(output):
            if name.startswith(OLD_LAYOUT_LEFTOVERS):
                removed.append(os.path.join(output, name))
    for path in removed:
        if os.path.islink(path) or os.path.isfile(path):
            os.remove(path)
        else:
            shutil.rmtree(path, ignore_errors=True)
    return removed


def discard(output: str, run_id: str) -> None:
    """Remove the folder of a run that failed before publishing."""
    shutil.rmtree(run_dir(output, run_id), ignore_errors=True)
