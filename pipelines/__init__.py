"""Pipeline assembly, options and entry points (``python -m pipelines.volume``)."""

import logging


class _DropOptionalGcpNotice(logging.Filter):
    """Beam logs at import that Google Cloud client libraries are missing; this
    project never talks to GCP, so the line is noise in every run's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "apitools not found" not in record.getMessage()


logging.getLogger().addFilter(_DropOptionalGcpNotice())
