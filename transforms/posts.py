"""Posts: validation of one input record, with privacy applied on the way in.

``parse_post`` takes one decoded record (a JSON object or a Parquet row) and returns a
``Post`` whose author is already a keyed pseudonym and whose text is already masked,
or raises ``InvalidPost`` with a reason a person can act on. Nothing downstream ever
holds the raw ``user_id`` or unmasked text.
"""

import datetime
import json
import math
from typing import Any, NamedTuple

import orjson

from transforms.privacy import mask_pii, pseudonymize_to_int

# Epoch values at or above this are milliseconds: 1e11 seconds is the year 5138,
# 1e11 milliseconds is March 1973.
_EPOCH_MILLIS_THRESHOLD = 100_000_000_000
# Event times outside these bounds are typos, not posts (1990-01-01 .. 2200-01-01).
_EARLIEST_US = 631_152_000 * 1_000_000
_LATEST_US = 7_258_118_400 * 1_000_000
_REQUIRED = ("id", "user_id", "created_at", "text")
_COUNTERS = ("reposts", "comments", "likes")
_QUOTE_LIMIT = 40


class InvalidPost(ValueError):
    """A record that cannot be counted; ``str(error)`` is the dead letter's reason."""


class Post(NamedTuple):
    """One valid post after ingest: author pseudonymized, text masked."""

    id: str
    author: int
    event_time_us: int
    text: str
    repost_of: str | None
    source: str | None


def _quote(value: Any) -> str:
    """A short printable rendering of an offending value for an error message."""
    text = repr(value)
    return text if len(text) <= _QUOTE_LIMIT else text[: _QUOTE_LIMIT - 3] + "..."


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", bool: "boolean", float: "number"}.get(
        type(value), type(value).__name__
    )


def decode_json_line(line: bytes | str) -> dict:
    """Decode one JSON Lines line into a dict, or raise ``InvalidPost`` saying why.

    orjson is tried first for speed; the standard library decodes what orjson refuses
    (integers beyond 64 bits) and gives the error message when both refuse.
    """
    line = line.rstrip(b"\r\n" if isinstance(line, bytes) else "\r\n")
    if not line.strip():
        raise InvalidPost("blank line: expected a JSON object")
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        record = _decode_with_stdlib(line)
    else:
        # orjson turns integers beyond 64 bits into floats; such ids must stay exact.
        if isinstance(record, dict) and any(
            isinstance(record.get(field), float) for field in _REQUIRED
        ):
            record = _decode_with_stdlib(line)
    if not isinstance(record, dict):
        raise InvalidPost(f"expected a JSON object, got {_type_name(record)}")
    return record


def _decode_with_stdlib(line: bytes | str) -> object:
    try:
        text = line.decode("utf-8") if isinstance(line, bytes) else line
    except UnicodeDecodeError:
        raise InvalidPost("line is not valid UTF-8") from None
    try:
        return json.loads(text)
    except ValueError as error:
        raise InvalidPost(f"not valid JSON: {error}") from None


def _identifier(record: dict, field: str, required: bool) -> str | None:
    value = record.get(field)
    if value is None:
        if required:
            raise InvalidPost(f"{field}: missing (required)")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidPost(
            f"{field}: expected a string or integer, got {_type_name(value)}"
        )
    text = str(value).strip()
    if not text:
        if required:
            raise InvalidPost(f"{field}: empty string")
        return None
    return text


def parse_created_at(value: Any) -> int:
    """Return the event time of ``created_at`` in microseconds since the epoch (UTC).

    Accepts an ISO-8601 string with a UTC offset (``2012-09-11T11:34:22+08:00``,
    ``...Z``), integer epoch seconds, or integer epoch milliseconds (told apart by
    magnitude), or a timezone-aware datetime (Parquet timestamp columns).
    """
    if isinstance(value, bool):
        raise InvalidPost(
            f"created_at: expected ISO-8601 or epoch, got {_type_name(value)}"
        )
    if isinstance(value, int):
        micros = value * (1_000 if abs(value) >= _EPOCH_MILLIS_THRESHOLD else 1_000_000)
    elif isinstance(value, str):
        try:
            moment = datetime.datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidPost(
                f"created_at: {_quote(value)} is not ISO-8601 or epoch"
            ) from None
        micros = _aware_micros(moment, value)
    elif isinstance(value, datetime.datetime):
        micros = _aware_micros(value, value)
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return parse_created_at(int(value))
    elif value is None:
        raise InvalidPost("created_at: missing (required)")
    else:
        raise InvalidPost(
            f"created_at: expected ISO-8601 string or integer epoch, got {_type_name(value)}"
        )
    if not _EARLIEST_US <= micros < _LATEST_US:
        raise InvalidPost(f"created_at: {_quote(value)} is outside 1990..2200")
    return micros


def _aware_micros(moment: datetime.datetime, original: Any) -> int:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidPost(f"created_at: {_quote(original)} has no UTC offset")
    delta = moment - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_post(record: dict, key: bytes) -> Post:
    """Validate one decoded record and return it as a ``Post``.

    ``key`` is the pseudonymization key: ``user_id`` is replaced by its keyed hash and
    ``text`` is PII-masked here (the author's own id in it too), before any other
    step sees the post. Raises
    ``InvalidPost`` naming the first field at fault.
    """
    missing = [field for field in _REQUIRED if record.get(field) is None]
    if missing:
        raise InvalidPost(f"{', '.join(missing)}: missing (required)")
    post_id = _identifier(record, "id", required=True)
    user_id = _identifier(record, "user_id", required=True)
    event_time_us = parse_created_at(record["created_at"])
    text = record["text"]
    if not isinstance(text, str):
        raise InvalidPost(f"text: expected a string, got {_type_name(text)}")
    repost_of = _identifier(record, "repost_of", required=False)
    for counter in _COUNTERS:
        value = record.get(counter)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int)
        ):
            raise InvalidPost(
                f"{counter}: expected an integer, got {_type_name(value)}"
            )
    source = record.get("source")
    if source is not None and not isinstance(source, str):
        raise InvalidPost(f"source: expected a string, got {_type_name(source)}")
    return Post(
        id=post_id,
        author=pseudonymize_to_int(user_id, key),
        event_time_us=event_time_us,
        text=mask_pii(text, account_id=user_id),
        repost_of=repost_of,
        source=source,
    )
