"""Numbers people write: ID numbers, bank cards and phone numbers, found in folded text
as (start, end, placeholder) spans."""

import datetime
import re
from collections.abc import Iterator

import phonenumbers
from stdnum import luhn
from stdnum.cn import ric

from transforms.privacy.placeholders import (
    PLACEHOLDER_BANK_CARD,
    PLACEHOLDER_ID_CARD,
    PLACEHOLDER_PHONE,
)

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


def number_spans(text: str) -> Iterator[tuple[int, int, str]]:
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
