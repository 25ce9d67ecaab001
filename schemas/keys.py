"""Where a worker finds the pseudonym key: the record that travels in the pipeline
instead of the key (``transforms.privacy.resolve_key_source`` makes it on the
submitter, ``transforms.privacy.load_key_from_source`` reads it on each worker).
"""

from typing import NamedTuple


class PseudonymKeySource(NamedTuple):
    """A key file's absolute ``path`` or the name ``env_var`` of an environment
    variable holding the hex key (exactly one of them is set), and ``fingerprint``,
    the submitter's key's fingerprint, which the key a worker reads must match.
    Holds no key material: it is pickled into the job graph."""

    path: str | None
    env_var: str | None
    fingerprint: str

    def describe(self) -> str:
        """Where the key is read, for messages: ``file PATH`` or ``$NAME``."""
        return f"file {self.path}" if self.path else f"${self.env_var}"
