"""Personal information: masking in text and keyed pseudonyms for authors.

Pure functions; the pipeline applies them at ingest, before any other step sees a
post. Masks replace a match with a placeholder token, so a phone number can never
become a topic, a keyword or part of a dead letter::

    >>> mask_pii("call 13812345678 or mail a.b@example.com")
    'call <PHONE> or mail <EMAIL>'
"""

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

PLACEHOLDER_PHONE = "<PHONE>"
PLACEHOLDER_ID_CARD = "<IDCARD>"
PLACEHOLDER_EMAIL = "<EMAIL>"
PLACEHOLDER_BANK_CARD = "<BANKCARD>"
PLACEHOLDERS = (
    PLACEHOLDER_PHONE,
    PLACEHOLDER_ID_CARD,
    PLACEHOLDER_EMAIL,
    PLACEHOLDER_BANK_CARD,
)

KEY_ENV_VAR = "YUQING_PSEUDONYM_KEY"
KEY_FILE_ENV_VAR = "YUQING_PSEUDONYM_KEY_FILE"
DEFAULT_KEY_FILE = Path("~/.config/yuqing/pseudonym.key")

_EMAIL = re.compile(
    r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"
)
# 18 digits, the last may be X; whether it is an ID card is decided by its checksum.
_ID_CARD_CANDIDATE = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
# 16-19 digits, optionally grouped by single spaces or hyphens as cards are printed.
_BANK_CARD_CANDIDATE = re.compile(r"(?<![\d\-])\d(?:[ \-]?\d){15,18}(?![\d\-])")
# Mobile: 1[3-9]x, 11 digits, optionally +86/0086 and 3-4-4 separators.
_MOBILE = re.compile(
    r"(?<![\d+])(?:(?:\+|00)?86[ \-]?)?1[3-9]\d(?:[ \-]?\d{4}){2}(?!\d)"
)
# Landline: area code 0xx/0xxx with a separator or parentheses, then 7-8 digits;
# or the same written as one 11-12 digit run.
_LANDLINE = re.compile(
    r"(?<![\d+])(?:(?:\+|00)?86[ \-]?)?"
    r"(?:\(0\d{2,3}\)\s?|（0\d{2,3}）\s?|0\d{2,3}[ \-]|0[1-9]\d{1,2}(?=\d{7,8}(?!\d)))"
    r"\d{7,8}(?:[ \-]?\d{1,4})?(?!\d)"
)
_ID_CARD_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CARD_CHECK_CHARS = "10X98765432"
# "user_id": <value> inside a raw line that may not even parse as JSON.
_USER_ID_FIELD = re.compile(r'("user_id"\s*:\s*)("(?:[^"\\]|\\.)*"?|[^,}\s]+)')


def is_valid_id_card(number: str) -> bool:
    """Whether an 18-character string passes GB 11643's ISO 7064 MOD 11-2 checksum."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    total = sum(
        int(digit) * weight
        for digit, weight in zip(number[:17], _ID_CARD_WEIGHTS, strict=True)
    )
    return _ID_CARD_CHECK_CHARS[total % 11] == number[17].upper()


def passes_luhn(digits: str) -> bool:
    """Whether a string of digits passes the Luhn checksum that bank cards carry."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _mask_id_card(match: re.Match) -> str:
    return PLACEHOLDER_ID_CARD if is_valid_id_card(match.group(0)) else match.group(0)


def _mask_bank_card(match: re.Match) -> str:
    digits = re.sub(r"[ \-]", "", match.group(0))
    return PLACEHOLDER_BANK_CARD if passes_luhn(digits) else match.group(0)


def mask_pii(text: str) -> str:
    """Return ``text`` with e-mail addresses, ID-card numbers, bank-card numbers and
    mainland phone numbers replaced by placeholder tokens.

    Order matters: e-mails first (they hold digits), then checksum-verified ID cards,
    then Luhn-valid bank cards, then phone numbers, so a long number is judged whole
    before a phone-shaped part of it could be.
    """
    if not any(char.isdigit() or char == "@" for char in text):
        return text
    text = _EMAIL.sub(PLACEHOLDER_EMAIL, text)
    text = _ID_CARD_CANDIDATE.sub(_mask_id_card, text)
    text = _BANK_CARD_CANDIDATE.sub(_mask_bank_card, text)
    text = _MOBILE.sub(PLACEHOLDER_PHONE, text)
    return _LANDLINE.sub(PLACEHOLDER_PHONE, text)


def mask_raw_line(raw: str, max_chars: int) -> str:
    """Return a rejected input line fit for ``dead_letters``.

    Any ``"user_id": value`` is replaced by ``"user_id": "<masked>"`` (whether or not
    the line parses), personal information in the rest is masked, and the result is
    cut to ``max_chars`` characters. Masking runs before cutting, so a cut can never
    expose half of a number.
    """
    masked = _USER_ID_FIELD.sub(r'\1"<masked>"', raw)
    return mask_pii(masked)[:max_chars]


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


def load_or_create_key(key_file: str | None = None) -> bytes:
    """Return the pseudonymization key.

    Taken from, in order: the environment variable ``YUQING_PSEUDONYM_KEY`` (hex or
    text), the file ``key_file`` or ``$YUQING_PSEUDONYM_KEY_FILE``, or
    ``~/.config/yuqing/pseudonym.key``. A missing file is created once with 32 random
    bytes and owner-only permissions (0600) and reused by later runs.
    """
    from_env = os.environ.get(KEY_ENV_VAR)
    if from_env:
        try:
            return bytes.fromhex(from_env)
        except ValueError:
            return from_env.encode("utf-8")
    path = Path(
        key_file or os.environ.get(KEY_FILE_ENV_VAR) or DEFAULT_KEY_FILE
    ).expanduser()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # O_EXCL: two runs starting at once must not each write a different key.
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
    return bytes.fromhex(path.read_text().strip())
