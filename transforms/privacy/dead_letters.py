"""Dead letters: a rejected line with every value masked, the ``user_id`` field's value
replaced whatever its form."""

import ast
import json
import re

from transforms.privacy.folding import fold_escaped
from transforms.privacy.masking import mask_escaped, mask_pii
from transforms.privacy.placeholders import PLACEHOLDER_USER_ID

# A Python-repr dead letter is parsed with ast.literal_eval only up to this size.
MAX_LITERAL_CHARS = 100_000

_USER_ID_KEY = re.compile(r"""(["']?)user_id\1\s*[:=]\s*""")
# How far back from an ellipsis a value cut short may reach.
_MAX_CUT_RUN = 64


def _mask_value(value: object, account: str | None) -> object:
    """A decoded value with every string, number and key masked, and every
    ``user_id`` field's value replaced whatever its type."""
    if isinstance(value, dict):
        return {
            _mask_value(key, account): (
                PLACEHOLDER_USER_ID if key == "user_id" else _mask_value(item, account)
            )
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_mask_value(item, account) for item in value]
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        text = str(value)
        masked = mask_pii(text, account)
        return value if masked == text else masked
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        value = str(value)
    return mask_pii(value, account)


def _account_of(record: object) -> str | None:
    """The author id a decoded record names: its ``user_id`` value, or the first
    string or number inside an object-valued one."""
    if not isinstance(record, dict):
        return None
    value = record.get("user_id")
    while isinstance(value, (dict, list)) and value:
        value = next(iter(value.values())) if isinstance(value, dict) else value[0]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return str(value).strip() or None


def _decode(text: str) -> tuple[object, str] | None:
    """(value, how to re-encode it) of a line that decodes as JSON or as a Python
    literal (a dict written with ``repr``), else None."""
    stripped = text.strip().lstrip("\ufeff")
    if not stripped:
        return None
    try:
        return json.loads(stripped), "json"
    except (ValueError, RecursionError):
        pass
    if stripped[0] in "{[" and len(stripped) <= MAX_LITERAL_CHARS:
        try:
            return ast.literal_eval(stripped), "repr"
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            pass
    return None


def _user_id_value_end(text: str, start: int) -> int:
    """End of the value starting at ``text[start]`` in a line that does not decode:
    a quoted string (escapes honoured, unterminated: to the end), a bracketed
    object or array (strings inside honoured), or a bare token."""
    length = len(text)
    if start >= length:
        return start
    opener = text[start]
    if opener in "\"'":
        index = start + 1
        while index < length and text[index] != opener:
            index += 2 if text[index] == "\\" else 1
        return min(index + 1, length)
    if opener in "{[":
        depth, index, quote = 0, start, None
        while index < length:
            char = text[index]
            if quote:
                if char == "\\":
                    index += 1
                elif char == quote:
                    quote = None
            elif char in "\"'":
                quote = char
            elif char in "{[":
                depth += 1
            elif char in "}]":
                depth -= 1
                if depth == 0:
                    return index + 1
            index += 1
        return length
    index = start
    while index < length and text[index] not in ",}] \t\r\n":
        index += 1
    return index


def _mask_undecodable(text: str) -> tuple[str, str | None]:
    """(masked line, the author id it names) for a line that does not decode."""
    pieces, position, account = [], 0, None
    for match in _USER_ID_KEY.finditer(text):
        if match.start() < position:
            continue
        end = _user_id_value_end(text, match.end())
        value = text[match.end() : end]
        if account is None and len(value) >= 2 and value[0] in "\"'":
            account = fold_escaped(value.strip("\"'")).text or None
        elif account is None and value and value[0] not in "{[":
            account = value
        pieces.append(text[position : match.end()])
        pieces.append(f'"{PLACEHOLDER_USER_ID}"')
        position = end
    pieces.append(text[position:])
    return mask_escaped("".join(pieces), account), account


def mask_dead_letter(raw: bytes | str | dict, error: str = "") -> tuple[str, str]:
    """Return (raw line, reason) of a rejected input line, fit for ``dead_letters``.

    What decodes (JSON, a Python-literal dict, a Parquet row) is masked value by
    value and re-encoded: the ``user_id`` field's value is replaced whatever its type
    (string, number, object), and every other string, number and key is masked like
    post text, including whole-token occurrences of the author's id. A line that does
    not decode has its ``user_id`` value found by pattern and the rest masked with
    escapes read as what they stand for. Other occurrences of the id's characters
    (``"user_id": "a"``) are left alone. The reason is masked the same way.
    """
    if isinstance(raw, dict):
        decoded: tuple[object, str] | None = (raw, "json")
        text = ""
    else:
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        decoded = _decode(text)
    if decoded is not None:
        value, encoding = decoded
        account = _account_of(value)
        masked_value = _mask_value(value, account)
        if encoding == "repr":
            masked = repr(masked_value)
        else:
            masked = json.dumps(masked_value, ensure_ascii=False, default=str)
    else:
        masked, account = _mask_undecodable(text)
    return masked, _mask_reason(error, account)


def _mask_reason(error: str, account: str | None) -> str:
    """A reason with no personal value: escapes read, the author id masked, and
    digits cut off by an ellipsis (a quoted value shortened mid-number) hidden."""
    masked = mask_escaped(error, account)
    if "..." not in masked:
        return masked
    pieces, position = [], 0
    at = masked.find("...")
    while at != -1:
        start = at
        while (
            start > position
            and at - start < _MAX_CUT_RUN
            and (masked[start - 1].isalnum() or masked[start - 1] in "-. _")
        ):
            start -= 1
        if any(char.isdigit() for char in masked[start:at]):
            pieces.append(masked[position:start])
            pieces.append("<CUT>")
            position = at
        at = masked.find("...", at + 3)
    pieces.append(masked[position:])
    return "".join(pieces)


def mask_raw_line(raw: str, max_chars: int) -> str:
    """A rejected line masked as ``mask_dead_letter`` does, cut to ``max_chars``
    characters after masking (a cut never exposes half of a number)."""
    return mask_dead_letter(raw)[0][:max_chars]
