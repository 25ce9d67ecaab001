"""Posts: validation of one input record, with privacy applied on the way in.

``parse_post`` takes one decoded record (a JSON object or a Parquet row) and returns a
``Post`` whose author is already a keyed pseudonym and whose text is already masked,
or raises ``InvalidPost`` with a reason a person can act on. Nothing downstream ever
holds the raw ``user_id`` or unmasked text.
"""

import datetime
import json
import math
import re
from typing import Any

import orjson

from schemas.records import Post
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
# Stages a record can fail in, as the dead letters' ``stage`` column names them.
STAGE_PARSE = "parse"
STAGE_PRIVACY = "privacy"
# Weibo caps a post at 2,000 characters; 5,000 keeps every post of it whole (and a
# repost quoting its chain), while the masking patterns and the segmenter, which
# cost more than linear time on some texts, only ever see a bounded prefix.
MAX_TEXT_CHARS = 5_000
# Weibo ids are 16-digit numbers or 9-character base62 mids; anything far longer is
# not an id, and ids are the keys that aggregation and deduplication hold.
MAX_ID_CHARS = 256
# The longest created_at string worth parsing (RFC 3339 with nanoseconds is 35).
_MAX_DATE_CHARS = 64
# orjson refuses JSON nested deeper than this; the standard library would recurse.
MAX_NESTING = 1024
_BOM = "\ufeff"
_UTF8_BOM = _BOM.encode("utf-8")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Characters a masking pattern can span (digits, e-mail characters, separators): a
# cut inside such a run could leave half a number that no pattern recognises.
_MASKABLE_CHARS = frozenset(
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ._%+-@()（） "
)
# How far back from a cut a partial number or e-mail address is dropped: longer
# than any e-mail address (254) or printed card number.
_MASKABLE_TAIL_CHARS = 320
_WEIBO_DATE = re.compile(
    r"(?:mon|tue|wed|thu|fri|sat|sun)\s+"
    r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)\s+(\d{1,2})\s+"
    r"(\d{2}):(\d{2}):(\d{2})\s+([+-])(\d{2}):?(\d{2})\s+(\d{4})",
    re.IGNORECASE,
)
_MONTHS = ("jan feb mar apr may jun jul aug sep oct nov dec").split()


class InvalidPost(ValueError):
    """A record that cannot be counted; ``str(error)`` is the dead letter's reason and
    ``stage`` the step that refused it."""

    def __init__(self, reason: str, stage: str = STAGE_PARSE):
        super().__init__(reason)
        self.stage = stage


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
    (integers beyond 64 bits, escaped lone surrogates, which ``parse_post`` judges
    field by field) and gives the error message when both refuse. A UTF-8 byte-order
    mark at the start is ignored (editors on Windows write one at a file's start).
    Nesting deeper than ``MAX_NESTING`` is refused without recursing.
    """
    if isinstance(line, bytes):
        line = line.rstrip(b"\r\n").removeprefix(_UTF8_BOM)
    else:
        line = line.rstrip("\r\n").removeprefix(_BOM)
    if not line.strip():
        raise InvalidPost("blank line: expected a JSON object")
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        if str(error).startswith("depth limit exceeded"):
            raise InvalidPost(
                f"not valid JSON: nested deeper than {MAX_NESTING} levels"
            ) from None
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
    except RecursionError:
        raise InvalidPost("not valid JSON: nested too deeply") from None


def has_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (only a JSON escape such as
    ``"\\ud800"`` can put one there): such a string cannot be written as UTF-8."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")  # fails on surrogates only; faster than a search
    except UnicodeEncodeError:
        return True
    return False


def without_surrogates(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD (the replacement
    character)."""
    return _SURROGATE.sub("\ufffd", text) if has_surrogate(text) else text


def cut_for_masking(text: str, max_chars: int) -> str:
    """``text`` cut to at most ``max_chars`` characters such that masking the result
    sees only whole numbers and addresses: after a cut, the run of characters a
    masking pattern could span that ends at the cut is dropped (at most
    ``_MASKABLE_TAIL_CHARS`` of them), so no half phone number survives unmasked.
    """
    if len(text) <= max_chars:
        return text
    end = max_chars
    if text[end] in _MASKABLE_CHARS:
        stop = max(0, max_chars - _MASKABLE_TAIL_CHARS)
        while end > stop and text[end - 1] in _MASKABLE_CHARS:
            end -= 1
    return text[:end]


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
    if len(text) > MAX_ID_CHARS:
        raise InvalidPost(f"{field}: longer than {MAX_ID_CHARS} characters")
    if has_surrogate(text):
        # An id is a key and a pseudonym's input: replacing the surrogate would make
        # two different ids one, so the record is refused (the value is not quoted:
        # it may be an author id).
        raise InvalidPost(
            f"{field}: not valid Unicode (holds a lone surrogate escape such as "
            "\\ud800)"
        )
    return text


def parse_created_at(value: Any) -> int:
    """Return the event time of ``created_at`` in microseconds since the epoch (UTC).

    Accepted forms, all with a UTC offset:

    - ISO-8601 / RFC 3339 strings, ``T`` and ``Z`` in either case and ``T`` or a
      space between date and time: ``2012-09-11T11:34:22+08:00``,
      ``2012-09-11T03:34:22Z``, ``2012-09-11t03:34:22z``,
      ``2012-09-11 11:34:22+08:00``, ``2012-09-11T03:34:22.123456+00:00``;
    - Weibo's API form, English day and month names in any case:
      ``Tue Sep 11 11:34:22 +0800 2012``;
    - integer epoch seconds or epoch milliseconds, told apart by magnitude
      (``1347334462``, ``1347334462000``), or a float holding such an integer;
    - a timezone-aware ``datetime`` (Parquet timestamp columns).

    Anything else, a string without an offset, or a time outside 1990..2200 raises
    ``InvalidPost``.
    """
    if isinstance(value, bool):
        raise InvalidPost(
            f"created_at: expected ISO-8601 or epoch, got {_type_name(value)}"
        )
    if isinstance(value, int):
        micros = value * (1_000 if abs(value) >= _EPOCH_MILLIS_THRESHOLD else 1_000_000)
    elif isinstance(value, str):
        micros = _aware_micros(_parse_date_string(value), value)
    elif isinstance(value, datetime.datetime):
        micros = _aware_micros(value, value)
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return parse_created_at(int(value))
    elif value is None:
        raise InvalidPost("created_at: missing (required)")
    else:
        raise InvalidPost(
            "created_at: expected ISO-8601 string or integer epoch, got "
            + _type_name(value)
        )
    if not _EARLIEST_US <= micros < _LATEST_US:
        raise InvalidPost(f"created_at: {_quote(value)} is outside 1990..2200")
    return micros


def _parse_date_string(value: str) -> datetime.datetime:
    """An ISO-8601 / RFC 3339 or Weibo API date string -> a datetime (naive when the
    string has no offset)."""
    text = value.strip() if len(value) <= _MAX_DATE_CHARS else ""
    weibo = _WEIBO_DATE.fullmatch(text)
    try:
        if weibo:
            return _weibo_datetime(weibo)
        # ISO-8601 letters (T, Z) are case-blind; fromisoformat takes upper case only.
        return datetime.datetime.fromisoformat(text.upper())
    except ValueError:
        raise InvalidPost(
            f"created_at: {_quote(value)} is not ISO-8601 or epoch"
        ) from None


def _weibo_datetime(match: re.Match) -> datetime.datetime:
    """``Tue May 31 17:46:55 +0800 2011`` (matched by ``_WEIBO_DATE``) -> a datetime.
    Parsed by hand: ``strptime``'s ``%a``/``%b`` follow the process locale."""
    month, day, hour, minute, second, sign, off_h, off_m, year = match.groups()
    offset = datetime.timedelta(hours=int(off_h), minutes=int(off_m))
    return datetime.datetime(
        int(year),
        _MONTHS.index(month.lower()) + 1,
        int(day),
        int(hour),
        int(minute),
        int(second),
        tzinfo=datetime.timezone(-offset if sign == "-" else offset),
    )


def _aware_micros(moment: datetime.datetime, original: Any) -> int:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidPost(f"created_at: {_quote(original)} has no UTC offset")
    delta = moment - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_post(record: dict, key: bytes) -> Post:
    """Validate one decoded record and return it as a ``Post``.

    ``key`` is the pseudonymization key: ``user_id`` is replaced by its keyed hash and
    ``text`` is PII-masked here (the author's own id in it too), before any other
    step sees the post. The post keeps the first ``MAX_TEXT_CHARS`` characters of its
    text, what topics are taken from, and lone surrogates in ``text`` and ``source``
    become U+FFFD. Raises
    ``InvalidPost`` naming the first field at fault (or, stage ``privacy``, the
    masking or pseudonymizing step that failed).
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
    if source is not None:
        source = without_surrogates(source[:MAX_ID_CHARS])
    text = without_surrogates(cut_for_masking(text, MAX_TEXT_CHARS))
    try:
        author = pseudonymize_to_int(user_id, key)
        masked = mask_pii(text, account_id=user_id)
    except Exception as error:  # noqa: BLE001 - any failure is this record's alone.
        raise InvalidPost(
            f"privacy: {type(error).__name__}: {error}", STAGE_PRIVACY
        ) from None
    return Post(
        id=post_id,
        author=author,
        event_time_us=event_time_us,
        text=masked,
        repost_of=repost_of,
        source=source,
    )
