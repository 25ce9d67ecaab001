"""Masking a text: the recognizers' spans of its folded form replaced in the original,
the author's own account id included."""

import re
from collections.abc import Iterator

from transforms.privacy.emails import email_spans
from transforms.privacy.folding import FOLD_TABLE, Folded, fold, fold_escaped
from transforms.privacy.numbers import number_spans
from transforms.privacy.placeholders import PLACEHOLDER_ACCOUNT, PLACEHOLDER_EMAIL

# An author id shorter than this is not looked for in text: "a" or "42" written in a
# post says nothing about who wrote it, and replacing every such token garbles text.
MIN_ACCOUNT_ID_CHARS = 3


def fold_account_id(account_id: str) -> str:
    """An author id as ``account_spans`` looks for it (folded like the text)."""
    return account_id.strip().translate(FOLD_TABLE)


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
        spans.extend(email_spans(folded.text))
        # Digits inside an e-mail address are the address's, not a phone number.
        emails = [
            (start, end) for start, end, kind in spans if kind == PLACEHOLDER_EMAIL
        ]
        spans.extend(
            span
            for span in number_spans(folded.text)
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
