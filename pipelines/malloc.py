"""How the pipeline's processes hand freed memory back to the system (glibc only).

glibc's malloc keeps what a process frees for reuse: in one arena per thread that
allocated it (up to eight per core), and, once blocks of several MB have been freed,
with a trim threshold it raises to 32 MB. Beam's FnApiRunner passes each stage's
output around as buffers of that size from gRPC threads, so a batch run's processes
would keep far more memory than they hold live. A fixed trim threshold (which also
stops the threshold from rising) and two arenas hand it back; docs/performance.md
has the figures and the commands that measure them. Dask sets the same threshold for
its workers (``distributed.nanny.pre-spawn-environ``).
"""

import ctypes
import ctypes.util
import os

# The variables glibc reads when a process starts; worker processes inherit them.
MALLOC_SETTINGS = {"MALLOC_ARENA_MAX": "2", "MALLOC_TRIM_THRESHOLD_": "65536"}
# mallopt(3) parameters, for this process, which started before they were set.
_M_TRIM_THRESHOLD = -1
_M_ARENA_MAX = -8


def hand_back_freed_memory() -> bool:
    """Set ``MALLOC_SETTINGS`` for the worker processes this one starts (a value the
    user set is kept) and apply them to this process; True where glibc took them."""
    for name, value in MALLOC_SETTINGS.items():
        os.environ.setdefault(name, value)
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
        arenas = int(os.environ["MALLOC_ARENA_MAX"])
        threshold = int(os.environ["MALLOC_TRIM_THRESHOLD_"])
    except (OSError, AttributeError, ValueError):  # not glibc (macOS), or not numbers
        return False
    return bool(mallopt(_M_ARENA_MAX, arenas) and mallopt(_M_TRIM_THRESHOLD, threshold))
