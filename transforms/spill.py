"""Values parked in files while a batch run waits at a shuffle.

Beam's FnApiRunner runs a batch pipeline one stage at a time and keeps each stage's
output in memory, encoded, in several copies (its shuffle buffer, the bundle it
sends, the data channel, the worker's input), until the next stage has read it. A
value written to a file of its own and replaced by the file's name costs a few
bytes there instead. The folder must be readable by every worker: a batch run uses
``SPILL_FOLDER`` inside its staging folder, which every worker writes tables to and
publishing removes. On an object store (``transforms.object_store``) the files are
objects under the run folder, so workers on other machines read them too.
"""

import os
import pickle
import uuid
from typing import Any, NamedTuple

from transforms import object_store

SPILL_FOLDER = "_spill"


class Spilled(NamedTuple):
    """A value parked in a file by ``park``."""

    path: str


def spill(value: Any, spill_dir: str) -> str:
    """Pickle ``value`` into a new file in ``spill_dir``; return its path. Each file
    has a name of its own, so a retried bundle writes new files and leaves the old
    ones unread."""
    path = os.path.join(spill_dir, f"{uuid.uuid4().hex}.pickle")
    if object_store.is_remote(spill_dir):
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        object_store.write_bytes(path, data)
        return path
    os.makedirs(spill_dir, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump(value, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def unspill(path: str) -> Any:
    """The value ``spill`` wrote to ``path``."""
    if object_store.is_remote(path):
        return pickle.loads(object_store.read_bytes(path))
    with open(path, "rb") as handle:
        return pickle.load(handle)


def park(value: Any, worth_a_file: bool, spill_dir: str) -> Any:
    """``Spilled`` with the file ``spill`` wrote ``value`` to, or, where a file would
    cost more than it saves (a write, an open and a read per value), the value
    itself."""
    return Spilled(spill(value, spill_dir)) if worth_a_file else value


def unpark(value: Any) -> Any:
    """What ``park`` was given."""
    return unspill(value.path) if isinstance(value, Spilled) else value
