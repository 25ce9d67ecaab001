"""Personal information: masking in text and keyed pseudonyms for authors.

Pure functions; the pipeline applies them at ingest, before any other step sees a
post. Masks replace a match with a placeholder token, so a phone number can never
become a topic, a keyword or part of a dead letter::

    >>> mask_pii("call 13812345678 or mail a.b@example.com")
    'call <PHONE> or mail <EMAIL>'
    >>> mask_pii("电话１３９．１２３４．５６７８")
    '电话<PHONE>'

Matching runs on what the text means, not on how it is written: every character is
folded first (NFKC, so full-width digits and ``＠``/``．`` become ASCII; every kind of
space becomes a space; zero-width characters vanish; letters are lower-cased), and
the recognizers run on the folded text. Each folded character remembers which
characters of the original it came from, so the output is the original text with
only the matched spans replaced.

Recognizers are precise rather than greedy: an ID number must carry a valid province,
birth date and (18 digits) checksum; a bank card an issuer prefix, a length that
issuer uses and a valid Luhn digit; a phone number must be valid in the numbering
plan (``phonenumbers``); an e-mail needs a domain with a top-level label. Every
recognizer does a bounded amount of work per character, so masking takes time linear
in the text's length whatever the text is.
"""

import ast
import datetime
import hashlib
import hmac
import json
import os
import re
import secrets
import socket
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import phonenumbers
from stdnum import luhn
from stdnum.cn import ric

from schemas.keys import PseudonymKeySource

PLACEHOLDER_PHONE = "<PHONE>"
PLACEHOLDER_ID_CARD = "<IDCARD>"
PLACEHOLDER_EMAIL = "<EMAIL>"
PLACEHOLDER_BANK_CARD = "<BANKCARD>"
PLACEHOLDER_ACCOUNT = "<ACCOUNT>"
PLACEHOLDER_USER_ID = "<masked>"
PLACEHOLDERS = (
    PLACEHOLDER_PHONE,
    PLACEHOLDER_ID_CARD,
    PLACEHOLDER_EMAIL,
    PLACEHOLDER_BANK_CARD,
    PLACEHOLDER_ACCOUNT,
)

KEY_ENV_VAR = "YUQING_PSEUDONYM_KEY"
KEY_FILE_ENV_VAR = "YUQING_PSEUDONYM_KEY_FILE"
DEFAULT_KEY_FILE = Path("~/.config/yuqing/pseudonym.key")
KEY_BYTES = 32
_FINGERPRINT_MESSAGE = b"yuqing-key-fingerprint"

# An author id shorter than this is not looked for in text: "a" or "42" written in a
# post says nothing about who wrote it, and replacing every such token garbles text.
MIN_ACCOUNT_ID_CHARS = 3
# A Python-repr dead letter is parsed with ast.literal_eval only up to this size.
MAX_LITERAL_CHARS = 100_000

# ---------------------------------------------------------------------------
# Folding: original text -> the text the recognizers read, with an index map.

# Characters that render as nothing; written between digits they hide a number.
_INVISIBLE = frozenset(
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b\u200c\u200d\u200e"
    "\u200f\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062\u2063\u2064\u2066"
    "\u2067\u2068\u2069\u3164\ufeff\uffa0"
)
# Dashes and dots NFKC leaves alone but people use between digit groups.
_EXTRA_FOLDS = {
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u30fc\uff70", "-"),
    **dict.fromkeys("\u3002\uff61\u00b7\u30fb\u2027\u2219", "."),
}


class _FoldTable(dict):
    """``str.translate`` table: code point -> folded text, computed once per
    character. Characters that fold to other than exactly one character are noted in
    ``irregular``: only texts holding one of them need a full index map."""

    def __init__(self) -> None:
        super().__init__()
        self.irregular: set[str] = set()

    def __missing__(self, code: int) -> str:
        char = chr(code)
        if char in _INVISIBLE:
            folded = ""
        elif char in _EXTRA_FOLDS:
            folded = _EXTRA_FOLDS[char]
        elif char.isspace() or unicodedata.category(char) == "Zs":
            folded = " "
        else:
            folded = unicodedata.normalize("NFKC", char)
            lowered = folded.lower()
            if len(lowered) == len(folded):
                folded = lowered
        if len(folded) != 1:
            self.irregular.add(char)
        self[code] = folded
        return folded


_FOLD = _FoldTable()


class Folded:
    """A folded text and, for each of its characters, the span of the original text
    it came from (``None``: character for character the same positions)."""

    __slots__ = ("text", "starts", "ends")

    def __init__(self, text: str, starts: list[int] | None, ends: list[int] | None):
        self.text = text
        self.starts = starts
        self.ends = ends

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """The span of the original text that folded characters [start, end) came
        from (characters folded away between them included)."""
        if self.starts is None:
            return start, end
        return self.starts[start], self.ends[end - 1]


def fold(text: str) -> Folded:
    """Fold ``text`` for matching (module docstring); linear in its length."""
    folded = text.translate(_FOLD)
    if len(folded) == len(text) and _FOLD.irregular.isdisjoint(text):
        return Folded(folded, None, None)
    pieces, starts, ends = [], [], []
    for index, char in enumerate(text):
        piece = _FOLD[ord(char)]
        pieces.append(piece)
        starts.extend([index] * len(piece))
        ends.extend([index + 1] * len(piece))
    return Folded("".join(pieces), starts, ends)


_SIMPLE_ESCAPES = {
    "n": " ",
    "r": " ",
    "t": " ",
    "b": " ",
    "f": " ",
    "v": " ",
    "a": " ",
    "0": " ",
    "/": "/",
    "\\": "\\",
    '"': '"',
    "'": "'",
}
_HEX = frozenset("0123456789abcdefABCDEF")


def _escape_at(text: str, index: int) -> tuple[str, int] | None:
    """The character a JSON or Python escape at ``text[index]`` (a backslash) stands
    for and the escape's length, or None when no escape starts there."""
    kind = text[index + 1 : index + 2]
    if kind in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[kind], 2
    digits = {"u": 4, "x": 2, "U": 8}.get(kind)
    if digits is None:
        return None
    code = text[index + 2 : index + 2 + digits]
    if len(code) != digits or not _HEX.issuperset(code):
        return None
    value = int(code, 16)
    length = 2 + digits
    # A UTF-16 surrogate pair written as two \u escapes is one character.
    if (
        kind == "u"
        and 0xD800 <= value < 0xDC00
        and text[index + 6 : index + 8] == "\\u"
    ):
        low = text[index + 8 : index + 12]
        if len(low) == 4 and _HEX.issuperset(low) and 0xDC00 <= int(low, 16) < 0xE000:
            value = 0x10000 + ((value - 0xD800) << 10) + (int(low, 16) - 0xDC00)
            length = 12
    if value > 0x10FFFF or 0xD800 <= value < 0xE000:
        return " ", length
    return chr(value), length


def fold_escaped(text: str) -> Folded:
    """Fold a raw line whose strings may be written with JSON or Python escapes
    (``\\u0031``, ``\\n``, ``\\x31``): each escape reads as the character it stands
    for, so ``\\n110101...`` and ``\\u0031\\u0031...`` are seen as the digits they
    are. The index map points at the escapes in ``text``."""
    if "\\" not in text:
        return fold(text)
    pieces, starts, ends = [], [], []
    index, length = 0, len(text)
    while index < length:
        char = text[index]
        width = 1
        if char == "\\":
            escape = _escape_at(text, index)
            if escape is not None:
                char, width = escape
        piece = "".join(_FOLD[ord(part)] for part in char)
        pieces.append(piece)
        starts.extend([index] * len(piece))
        ends.extend([index + width] * len(piece))
        index += width
    return Folded("".join(pieces), starts, ends)


# ---------------------------------------------------------------------------
# Recognizers: folded text -> (start, end, placeholder) spans of it.

# ID numbers: GB 11643 province codes (first two digits).
_PROVINCES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 "
    "61 62 63 64 65 71 81 82 83 91".split()
)
# Bank cards: (lowest prefix, highest prefix, lengths, ambiguous). Ambiguous ranges
# share their shape with common non-card numbers (JCB's 3528-3589 with Weibo's
# 16-digit post ids), so a number there is a card only when printed in groups or
# after a word about cards or accounts.
_CARD_RANGES = (
    ("62", "62", frozenset(range(16, 20)), False),  # UnionPay
    ("81", "81", frozenset({16}), False),  # UnionPay 8100-8171
    ("60", "60", frozenset({16, 19}), False),  # domestic (BOC 6013..), Discover
    ("9555", "9559", frozenset({16, 19}), False),  # domestic debit (ICBC, ABC, CMB..)
    ("4", "4", frozenset({16}), False),  # Visa
    ("51", "55", frozenset({16}), False),  # Mastercard
    ("2221", "2720", frozenset({16}), False),  # Mastercard
    ("34", "34", frozenset({15}), False),  # American Express
    ("37", "37", frozenset({15}), False),  # American Express
    ("300", "305", frozenset({14}), False),  # Diners Club
    ("36", "36", frozenset({14}), False),  # Diners Club
    ("38", "39", frozenset({14}), False),  # Diners Club
    ("3528", "3589", frozenset(range(16, 20)), True),  # JCB
)
_CARD_FIRST_DIGITS = frozenset(low[0] for low, _, _, _ in _CARD_RANGES)
_CARD_CONTEXT = re.compile(
    r"卡|card|银行|账户|帐户|账号|帐号|转账|汇款|打款|收款|付款|信用|储蓄|visa|jcb|"
    r"mastercard|unionpay|银联|借记|还款"
)
_CARD_CONTEXT_CHARS = 16
# Labels that say the number after them is a reference, not a card.
_REFERENCE_LABEL = re.compile(
    r"(?:订单|下单|单号|编号|流水|交易号|运单|快递|物流|工单|批次|序列号|微博|帖子|"
    r"order|tracking|ref|mid|sn)[^\d]{0,4}$"
)
_REFERENCE_LABEL_CHARS = 12
# Digit groups and what joins them: spaces, hyphens, dots, slashes or parentheses,
# one to three of them ("139 - 1234 - 5678", "(010) 1234 5678").
_DIGIT_CHAIN = re.compile(r"\d+(?:[ \-./()]{1,3}\d+)*")
_DIGIT_RUN = re.compile(r"\d+")
_LONGEST_NUMBER = 20
_SHORTEST_NUMBER = 10
_PHONE_SHAPE = re.compile(r"(?:(?:00)?86)?(?:1[3-9]\d{9}|0?[1-9]\d{8,10})")
# A landline in national form without its trunk 0: a 2-digit area code (10, 2x)
# and 8 local digits, or a 3-digit one and 7 or 8; local numbers start with 2-8.
_LANDLINE = re.compile(r"(?:10|2\d)[2-8]\d{7}|[3-9]\d\d[2-8]\d{6,7}")
_PHONE_TYPES = frozenset(
    {
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    }
)


def is_valid_id_card(number: str) -> bool:
    """Whether an 18-character string is a resident ID number: a province code, a
    real birth date and GB 11643's ISO 7064 MOD 11-2 check character."""
    number = number.upper()
    if len(number) != 18 or not number[:17].isdigit() or number[:2] not in _PROVINCES:
        return False
    if not (number[17].isdigit() or number[17] == "X"):
        return False
    return _born(number[6:14]) and ric.calc_check_digit(number) == number[17]


def is_valid_old_id_card(number: str) -> bool:
    """Whether a 15-digit string is a first-generation ID number: a province code
    and a real birth date ``YYMMDD`` of the 1900s (those numbers carry no check)."""
    return (
        len(number) == 15
        and number.isdigit()
        and number[:2] in _PROVINCES
        and _born("19" + number[6:12])
    )


def _born(yyyymmdd: str) -> bool:
    try:
        day = datetime.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    return datetime.date(1900, 1, 1) <= day <= datetime.date.today()


def passes_luhn(digits: str) -> bool:
    """Whether a string of digits passes the Luhn checksum that bank cards carry."""
    return digits.isdigit() and luhn.is_valid(digits)


def card_issuer_range(digits: str) -> tuple[str, str, frozenset, bool] | None:
    """The issuer range (as in ``_CARD_RANGES``) whose prefix and length fit."""
    if digits[:1] not in _CARD_FIRST_DIGITS or not 13 <= len(digits) <= 19:
        return None
    for low, high, lengths, ambiguous in _CARD_RANGES:
        if len(digits) in lengths and low <= digits[: len(low)] <= high:
            return low, high, lengths, ambiguous
    return None


def is_bank_card(digits: str, grouped: bool = True, context: str = "") -> bool:
    """Whether ``digits`` is a payment card number: an issuer prefix, a length that
    issuer uses, and a valid Luhn check digit. A number in an ambiguous range
    counts only when ``grouped`` (printed in groups) or ``context`` (the text just
    before it) speaks of cards or accounts; after a reference label (order number,
    post id) it never counts."""
    issuer = card_issuer_range(digits)
    if issuer is None or not passes_luhn(digits):
        return False
    if _REFERENCE_LABEL.search(context[-_REFERENCE_LABEL_CHARS:]):
        return False
    if issuer[3] and not grouped:
        return bool(_CARD_CONTEXT.search(context[-_CARD_CONTEXT_CHARS:]))
    return True


def is_phone_number(digits: str, international: bool = False) -> bool:
    """Whether ``digits`` is a Chinese phone number by the numbering plan: a mobile
    number, or a landline with its area code (national form starts with the trunk
    ``0``), optionally after ``0086`` (``86`` alone only before a mobile number),
    or any valid number of any country after ``+``."""
    if international:
        text = "+" + digits
    elif _PHONE_SHAPE.fullmatch(digits) is None:
        return False
    elif digits.startswith("0086"):
        text = "+" + digits[2:]
    elif digits.startswith("86") and len(digits) == 13 and digits[2] == "1":
        text = "+" + digits  # a mobile number after its country code
    elif digits[0] == "1" and len(digits) == 11 or digits[0] == "0":
        text = digits
    else:
        return False
    try:
        number = phonenumbers.parse(text, "CN")
    except phonenumbers.NumberParseException:
        return False
    if phonenumbers.is_valid_number(number):
        return phonenumbers.number_type(number) in _PHONE_TYPES
    # libphonenumber knows one local length per city; a landline written with the
    # plan's shape but another length (7 digits where the city has 8) is still one.
    return number.country_code == 86 and bool(
        _LANDLINE.fullmatch(str(number.national_number))
    )


def _classify_number(
    digits: str, international: bool, grouped: bool, context: str
) -> str | None:
    """The placeholder for a run of digits (a trailing ``x`` allowed), or None."""
    if len(digits) == 18 and is_valid_id_card(digits):
        return PLACEHOLDER_ID_CARD
    if not digits.isdigit():
        return None
    if len(digits) == 15 and is_valid_old_id_card(digits):
        return PLACEHOLDER_ID_CARD
    if not international and is_bank_card(digits, grouped, context):
        return PLACEHOLDER_BANK_CARD
    if is_phone_number(digits, international):
        return PLACEHOLDER_PHONE
    return None


def _number_spans(text: str) -> Iterator[tuple[int, int, str]]:
    """Spans of ``text`` (folded) that are ID, card or phone numbers.

    Each chain of digit groups is tried group-run by group-run (at most 20 digits
    each, so the work per digit is bounded); at each group the longest run that is a
    number wins, and the search goes on after it. A run counts only when grouped as
    people write a number: one group, one digit at a time (``1 3 9 1 2 ...``), or
    groups of three or more after a first group of two or more (``+86 139 1234
    5678``, ``6222 0000 ...``), not short groups as in versions and dates
    (``18.9.6.14.90345``).
    """
    for chain in _DIGIT_CHAIN.finditer(text):
        groups = [
            (run.start(), run.end())
            for run in _DIGIT_RUN.finditer(text, chain.start(), chain.end())
        ]
        first = 0
        while first < len(groups):
            found = None
            digits = ""
            first_size = groups[first][1] - groups[first][0]
            single_digits, wide_groups = first_size == 1, first_size >= 2
            for last in range(first, len(groups)):
                group_start, end = groups[last]
                if last > first:
                    size = end - group_start
                    single_digits = single_digits and size == 1
                    # After a country code, a two-digit area code ("+86 10 ...").
                    wide_groups = wide_groups and (
                        size >= 3
                        or last == first + 1
                        and size == 2
                        and text[groups[first][0] : groups[first][1]] in ("86", "0086")
                    )
                    if not (single_digits or wide_groups):
                        break
                    # A parenthesis closes an area or country code, nothing longer:
                    # "(010)1234 5678", not "爸爸(410494910) 2012".
                    before = groups[last - 1]
                    joiner = text[before[1] : group_start]
                    if ("(" in joiner or ")" in joiner) and before[1] - before[0] > 4:
                        break
                digits += text[group_start:end]
                if len(digits) > _LONGEST_NUMBER:
                    break
                with_check = digits
                if len(digits) == 17 and text[end : end + 1] == "x":
                    with_check, end = digits + "x", end + 1
                if len(with_check) < _SHORTEST_NUMBER:
                    continue
                start = groups[first][0]
                international = start > 0 and text[start - 1] == "+"
                context = text[max(0, start - _CARD_CONTEXT_CHARS) : start]
                kind = _classify_number(
                    with_check, international, last > first, context
                )
                if kind is not None:
                    # "(010)12345678": the area code's parenthesis goes with it.
                    opened = (
                        kind == PLACEHOLDER_PHONE
                        and start > 0
                        and text[start - 1] == "("
                        and ")" in text[start:end]
                    )
                    found = (start - (international or opened), end, kind, last)
            if found is None:
                first += 1
                continue
            yield found[:3]
            first = found[3] + 1


# E-mail: RFC 5322's dot-atom local part (any letter, so Unicode local parts too)
# and a domain of letter/digit/hyphen labels (IDN included).
_LOCAL_SYMBOLS = frozenset(".!#$%&'*+/=?^_`{|}~-")
_MAX_LOCAL = 64
_MAX_DOMAIN = 253
# Internationalized top-level domains people write in Chinese text; a CJK label
# after a dot is a top-level domain only when it starts with one of these.
_IDN_TLDS = tuple(
    sorted(
        "中国 中國 公司 网络 網絡 网址 在线 商城 集团 我爱你 手机 政务 公益 香港 "
        "台湾 台灣 新加坡 游戏 企业 娱乐 移动 联通 时尚 信息 商标 网店 购物 中文网 "
        "广东 佛山 八卦 慈善 招聘 点看 健康 珠宝 餐厅 食品 世界 大众汽车 "
        "онлайн рф".split(),
        key=len,
        reverse=True,
    )
)


_MAIL_TLDS = frozenset(
    "com net org cn edu gov info io me co uk de jp kr fr ru hk tw mo sg us ca au nz "
    "biz cc tv xyz top vip club site online mobi asia in it es nl se ch".split()
) | frozenset(_IDN_TLDS)


def _is_local_char(char: str) -> bool:
    return char.isalnum() or char in _LOCAL_SYMBOLS


def _is_label_char(char: str) -> bool:
    return char.isalnum() or char == "-"


def _local_start(text: str, at: int) -> int | None:
    """Where the local part before ``text[at] == '@'`` starts, or None."""
    start = at
    while start > 0 and at - start < _MAX_LOCAL and _is_local_char(text[start - 1]):
        start -= 1
    local = text[start:at]
    # Prose glued before an ASCII address ("邮箱zhangsan@..."): the address is the
    # ASCII tail; a wholly non-ASCII local part ("张三@例子.中国") is kept whole.
    if not local.isascii():
        tail = len(local)
        while tail > 0 and local[tail - 1].isascii():
            tail -= 1
        if tail < len(local) and any(char.isalnum() for char in local[tail:]):
            start += tail
    while start < at and text[start] == ".":
        start += 1
    return start if start < at else None


def _domain_end(text: str, at: int) -> int | None:
    """Where the domain after ``text[at] == '@'`` ends, or None when none follows."""
    labels: list[tuple[int, int]] = []
    position, limit = at + 1, min(len(text), at + 1 + _MAX_DOMAIN)
    while position < limit:
        end = position
        while end < limit and _is_label_char(text[end]):
            end += 1
        if end == position:
            break
        labels.append((position, end))
        if end < limit and text[end] == ".":
            position = end + 1
        else:
            break
    while labels:
        start, end = labels[-1]
        tld = _top_level_label(text[start:end])
        if len(labels) >= 2 and tld:
            return start + tld
        labels.pop()
    return None


def _top_level_label(label: str) -> int:
    """How much of ``label`` is a top-level domain (0: none): ASCII letters (or an
    ``xn--`` punycode label), or a known internationalized one; text glued after it
    (``com联系我``) is not part of it."""
    label = label.rstrip("-")
    if label.startswith("xn--"):
        end = 4
        while end < len(label) and label[end].isascii() and _is_label_char(label[end]):
            end += 1
        return end if end > 4 else 0
    end = 0
    while end < len(label) and label[end].isascii() and label[end].isalpha():
        end += 1
    if end >= 2:
        # "com2" or "com-x" is no top-level domain; "com联系我" is "com".
        if end < len(label) and label[end].isascii():
            return 0
        return end
    if end == 0:
        for tld in _IDN_TLDS:
            if label.startswith(tld):
                return len(tld)
    return 0


def _email_spans(text: str) -> Iterator[tuple[int, int, str]]:
    """Spans of e-mail addresses in ``text`` (folded): bounded work per ``@``."""
    at = text.find("@")
    while at != -1:
        start = _local_start(text, at)
        end = _domain_end(text, at) if start is not None else None
        # "@李涛@lee.green" is two mentions; "@zhangsan@qq.com" an address: after
        # an "@", only a top-level domain that mail commonly uses makes an address.
        if (
            start is not None
            and end is not None
            and start > 0
            and text[start - 1] == "@"
            and text[text.rfind(".", at, end) + 1 : end] not in _MAIL_TLDS
        ):
            end = None
        if start is not None and end is not None:
            yield start, end, PLACEHOLDER_EMAIL
            at = text.find("@", end)
        else:
            at = text.find("@", at + 1)


def fold_account_id(account_id: str) -> str:
    """An author id as ``account_spans`` looks for it (folded like the text)."""
    return account_id.strip().translate(_FOLD)


def _is_id_char(char: str) -> bool:
    return char.isascii() and (char.isalnum() or char == "_")


def _account_spans(text: str, account: str) -> Iterator[tuple[int, int, str]]:
    """Whole-token occurrences of the folded author id ``account`` in ``text``: not
    glued to ASCII letters, digits or ``_`` on a side where the id has them."""
    if len(account) < MIN_ACCOUNT_ID_CHARS:
        return
    check_before = _is_id_char(account[0])
    check_after = _is_id_char(account[-1])
    at = text.find(account)
    while at != -1:
        end = at + len(account)
        if not (check_before and at > 0 and _is_id_char(text[at - 1])) and not (
            check_after and end < len(text) and _is_id_char(text[end])
        ):
            yield at, end, PLACEHOLDER_ACCOUNT
            at = text.find(account, end)
        else:
            at = text.find(account, at + 1)


def _maybe_personal(text: str) -> bool:
    """Cheap test: could ``text`` hold a number or an e-mail at all?"""
    return _MAYBE_PERSONAL.search(text) is not None


# Digits of any script, circled and parenthesized digits (NFKC folds them to
# ASCII digits) and at-signs.
_MAYBE_PERSONAL = re.compile(r"[\d@＠﹫\u2460-\u249b\u24ea-\u24ff\u2776-\u2793]")


def _replace_spans(
    original: str, folded: Folded, spans: list[tuple[int, int, str]]
) -> str:
    """``original`` with the (folded) ``spans`` replaced by their placeholders; of
    overlapping spans the one starting first (then the longest) wins."""
    if not spans:
        return original
    spans.sort(key=lambda span: (span[0], -span[1]))
    pieces, position, covered = [], 0, -1
    for start, end, placeholder in spans:
        if start < covered:
            continue
        covered = end
        first, last = folded.original_span(start, end)
        pieces.append(original[position:first])
        pieces.append(placeholder)
        position = last
    pieces.append(original[position:])
    return "".join(pieces)


def _mask_folded(original: str, folded: Folded, account: str) -> str:
    spans: list[tuple[int, int, str]] = []
    if account:
        spans.extend(_account_spans(folded.text, account))
    if _maybe_personal(folded.text):
        spans.extend(_email_spans(folded.text))
        # Digits inside an e-mail address are the address's, not a phone number.
        emails = [
            (start, end) for start, end, kind in spans if kind == PLACEHOLDER_EMAIL
        ]
        spans.extend(
            span
            for span in _number_spans(folded.text)
            if not any(start <= span[0] < end for start, end in emails)
        )
    return _replace_spans(original, folded, spans)


def mask_pii(text: str, account_id: str | None = None) -> str:
    """Return ``text`` with e-mail addresses, ID-card numbers, bank-card numbers,
    Chinese phone numbers and, when given, the author's own ``account_id`` (as a
    whole token) replaced by placeholder tokens; the rest of ``text`` is unchanged.
    """
    account = fold_account_id(account_id) if account_id else ""
    if not account and not _maybe_personal(text):
        return text
    return _mask_folded(text, fold(text), account)


def mask_escaped(text: str, account_id: str | None = None) -> str:
    """``mask_pii`` for text that may hold JSON or Python escapes (a raw line that
    did not decode, an error message quoting a value): what the escapes stand for
    is matched, and the escapes themselves are replaced."""
    account = fold_account_id(account_id) if account_id else ""
    return _mask_folded(text, fold_escaped(text), account)


# ---------------------------------------------------------------------------
# Dead letters: a rejected line with every value masked.

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


# ---------------------------------------------------------------------------
# Pseudonyms and the key.


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
