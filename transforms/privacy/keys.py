"""Pseudonyms and the key: keyed hashes of author ids, the key's sources, strength and
fingerprint."""

import hashlib
import hmac
import os
import secrets
import socket
from pathlib import Path

from schemas.keys import PseudonymKeySource

KEY_ENV_VAR = "YUQING_PSEUDONYM_KEY"
KEY_FILE_ENV_VAR = "YUQING_PSEUDONYM_KEY_FILE"
DEFAULT_KEY_FILE = Path("~/.config/yuqing/pseudonym.key")
KEY_BYTES = 32
_FINGERPRINT_MESSAGE = b"yuqing-key-fingerprint"


class PseudonymKeyError(ValueError):
    """A key that is missing, unreadable or too weak; ``str(error)`` is one line
    that never holds the key."""


class PseudonymKeyUnreadable(PseudonymKeyError):
    """A key file the system cannot read or create (a failure of the machine, not
    of the key's content)."""


class PseudonymKeyMismatch(PseudonymKeyError):
    """A worker's key is not the submitter's: their fingerprints differ."""


def pseudonymize_to_int(user_id: str, key: bytes) -> int:
    """Return the keyed pseudonym of an author id: HMAC-SHA256, first 64 bits, signed.

    Without the key the pseudonym cannot be reversed or recomputed from a guessed id;
    with the same key, the same author gets the same pseudonym in every run, so
    sketches from different runs merge. 64 bits keep the chance that two of a billion
    authors collide below 3 in 100; an int is what the sketches hash and what crosses
    a shuffle cheaply.
    """
    digest = hmac.new(key, user_id.encode("utf-8"), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def key_fingerprint(key: bytes) -> str:
    """Which key made a table, without revealing it: HMAC-SHA256 of a fixed
    constant under the key, first 8 bytes as hex. Equal keys give equal
    fingerprints; the key cannot be recovered from one."""
    return hmac.new(key, _FINGERPRINT_MESSAGE, hashlib.sha256).hexdigest()[:16]


def parse_key(text: str, where: str) -> bytes:
    """The key written as hex in ``text`` (surrounding whitespace ignored), or
    ``PseudonymKeyError`` naming ``where`` it came from when it is empty, not hex or
    shorter than 32 bytes."""
    cleaned = text.strip()
    if not cleaned:
        raise PseudonymKeyError(f"pseudonym key {where} is empty")
    try:
        key = bytes.fromhex(cleaned)
    except ValueError:
        raise PseudonymKeyError(
            f"pseudonym key {where} is not hex (expected {2 * KEY_BYTES} or more hex "
            "digits, e.g. python -c 'import secrets; print(secrets.token_hex(32))')"
        ) from None
    if len(key) < KEY_BYTES:
        raise PseudonymKeyError(
            f"pseudonym key {where} has {len(key)} bytes; at least {KEY_BYTES} "
            f"random bytes ({2 * KEY_BYTES} hex digits) are required"
        )
    return key


def load_or_create_key(key_file: str | None = None) -> bytes:
    """Return the pseudonymization key (at least 32 bytes, written as hex).

    Taken from, in order: the file ``key_file`` (``--pseudonym-key-file``), the
    environment variable ``YUQING_PSEUDONYM_KEY``, the file
    ``$YUQING_PSEUDONYM_KEY_FILE``, or ``~/.config/yuqing/pseudonym.key``. A key file
    that does not exist is created with 32 random bytes and owner-only permissions,
    atomically: runs starting at once all end with the same key. A key
    that is empty, not hex or short raises ``PseudonymKeyError``.
    """
    return resolve_key_source(key_file)[0]


def resolve_key_source(
    key_file: str | None = None, remote: str | None = None
) -> tuple[bytes, PseudonymKeySource]:
    """On the submitter: (the key, where the workers read it).

    Without ``remote``, the order and the creation of a missing file are those of
    ``load_or_create_key``; the source names the absolute path of the file read
    (workers on this machine read the same) or ``$YUQING_PSEUDONYM_KEY``.
    ``remote`` says why the workers run elsewhere (``"--runner PortableRunner"``):
    then only ``key_file`` or ``$YUQING_PSEUDONYM_KEY`` are taken, a missing file is
    never created, and without either ``PseudonymKeyError`` says what to give.
    The key itself is never part of the source.
    """
    if key_file:
        path = Path(key_file).expanduser().absolute()
        key = _read_key_file(path, create=remote is None)
        return key, PseudonymKeySource(str(path), None, key_fingerprint(key))
    from_env = os.environ.get(KEY_ENV_VAR)
    if from_env is not None:
        key = parse_key(from_env, f"in ${KEY_ENV_VAR}")
        return key, PseudonymKeySource(None, KEY_ENV_VAR, key_fingerprint(key))
    if remote is not None:
        raise PseudonymKeyError(
            f"{remote} runs its workers off this machine, so it needs "
            f"--pseudonym-key-file FILE (the key mounted at FILE on every worker, "
            f"e.g. a Secret) or ${KEY_ENV_VAR} (set on every worker as well); "
            "no key is created for such a run"
        )
    from_env_file = os.environ.get(KEY_FILE_ENV_VAR)
    path = Path(from_env_file or DEFAULT_KEY_FILE).expanduser().absolute()
    key = _read_key_file(path)
    return key, PseudonymKeySource(str(path), None, key_fingerprint(key))


def load_key_from_source(source: PseudonymKeySource) -> bytes:
    """On a worker: the key ``source`` names, read from this machine's own file or
    environment (never created), checked against the submitter's fingerprint.

    Raises ``PseudonymKeyError`` with one line naming the source, this host and the
    fingerprints (never the key) when the key is missing, malformed or another key
    (``PseudonymKeyMismatch``).
    """
    host = socket.gethostname()
    if source.path:
        path = Path(source.path)
        if not path.exists():
            raise PseudonymKeyError(
                f"pseudonym key file {path} not found on worker {host}: mount the "
                f"submitter's key (fingerprint {source.fingerprint}) there"
            )
        try:
            key = _read_key_file(path, create=False)
        except PseudonymKeyError as error:
            raise type(error)(f"{error} (on worker {host})") from None
    else:
        value = os.environ.get(source.env_var or "")
        if value is None:
            raise PseudonymKeyError(
                f"${source.env_var} is not set on worker {host}: set it to the "
                f"submitter's key (fingerprint {source.fingerprint}), or submit with "
                "--pseudonym-key-file naming a key file mounted on every worker"
            )
        key = parse_key(value, f"in ${source.env_var} on worker {host}")
    found = key_fingerprint(key)
    if found != source.fingerprint:
        raise PseudonymKeyMismatch(
            f"pseudonym key from {source.describe()} on worker {host} has "
            f"fingerprint {found}, the submitter's has {source.fingerprint}: every "
            "worker must hold the submitter's key"
        )
    return key


def _read_key_file(path: Path, create: bool = True) -> bytes:
    if not create and not path.exists():
        raise PseudonymKeyError(
            f"pseudonym key file {path} does not exist (a run whose workers are not "
            "on this machine never creates a key)"
        )
    if create and not path.exists():
        try:
            create_key_file(path)
        except OSError as error:
            raise PseudonymKeyUnreadable(
                f"cannot create pseudonym key file {path}: {error.strerror or error}"
            ) from None
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as error:
        raise PseudonymKeyUnreadable(
            f"pseudonym key file {path}: {error.strerror or error}"
        ) from None
    return parse_key(text, f"file {path}")


def create_key_file(path: Path) -> bool:
    """Create ``path`` holding a new random key unless it exists; return whether
    this call created it.

    The key is written and flushed to disk in a temporary file of the same folder
    (created exclusively, mode 0600), then linked into place: ``os.link`` fails when
    ``path`` exists, so of runs starting at once exactly one key wins, and no reader
    ever sees a partly written file.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(KEY_BYTES) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        _fsync_folder(path.parent)
        return True
    finally:
        temporary.unlink(missing_ok=True)


def _fsync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
