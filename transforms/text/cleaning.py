"""Post text made ready for segmentation, and token tests shared by entities and
keywords.

    >>> clean_text("转发[泪] http://t.cn/zY1QWp0 //@张三: 宁波ＡＢＣ <PHONE>")
    '转发 宁波ABC'
    >>> split_protected("雅安地震 今天", ["雅安地震"])
    [('雅安地震', True), (' 今天', False)]
"""

import re
import unicodedata
from collections.abc import Iterable

from transforms.privacy import PLACEHOLDERS

# Applied after NFKC, so full-width forms (＠, ：, ｈｔｔｐ) are already ASCII. URLs
# are ASCII-only, which stops them at the first CJK character; Weibo truncates many
# links to a bare "http:".
_URL = re.compile(
    r"(?:https?:(?://[A-Za-z0-9\-._~:/?#@!$&'()*+,;=%]*)?"
    r"|(?<![A-Za-z0-9.])(?:www\.|t\.cn/)[A-Za-z0-9\-._~:/?#@!$&'()*+,;=%]*)",
    re.IGNORECASE,
)
# Weibo emoticon codes: [泪], [哈哈], [good], [江南style].
_EMOTICON = re.compile(r"\[[^\[\]\s]{1,10}\]")
# Same shapes as transforms.topics, applied to NFKC text: `//@name:` repost-chain
# marks, then `@name` mentions (their own topic kind).
_REPOST_CHAIN_MARK = re.compile(r"//\s*@[\w\-]{1,30}\s*:?")
_MENTION = re.compile(r"(?<![A-Za-z0-9_.])@[\w\-]{1,30}")
_HTML_ENTITY = re.compile(r"&(?:amp|lt|gt|quot|nbsp|#\d{1,5});")
# A token is a word when it has a letter or a digit; `_` and punctuation are not.
_WORD_CHAR = re.compile(r"[^\W_]")
# A number, a percentage, a time or a date: not a name and not a keyword.
_DIGITS = re.compile(r"[\d.,%:/\-+]+")


def clean_text(text: str) -> str:
    """Return ``text`` ready for segmentation.

    NFKC folds full-width forms; URLs (``http://t.cn/...``, bare ``http:``, ``www.``),
    ``[emoticon]`` codes, ``//@name:`` repost-chain marks, ``@mentions``, HTML
    entities and the masked-PII placeholders of ``transforms.privacy`` become spaces;
    runs of whitespace collapse to one space. Punctuation stays (it separates
    sentences); it is dropped at the token level.
    """
    for placeholder in PLACEHOLDERS:
        if placeholder in text:
            text = text.replace(placeholder, " ")
    text = unicodedata.normalize("NFKC", text)
    if ":" in text or "www." in text or "t.cn" in text:
        text = _URL.sub(" ", text)
    if "[" in text:
        text = _EMOTICON.sub(" ", text)
    if "@" in text:
        text = _REPOST_CHAIN_MARK.sub(" ", text)
        text = _MENTION.sub(" ", text)
    if "&" in text:
        text = _HTML_ENTITY.sub(" ", text)
    return " ".join(text.split())


def is_word(token: str) -> bool:
    """Whether a token can be a topic: it has a letter or digit (not only ``_``)."""
    return _WORD_CHAR.search(token) is not None


def is_number(token: str) -> bool:
    """Whether a token is only digits and number punctuation (``3.5``, ``12:30``)."""
    return _DIGITS.fullmatch(token) is not None


def split_protected(text: str, terms: Iterable[str]) -> list[tuple[str, bool]]:
    """Cut ``text`` around occurrences of ``terms`` (matched case-insensitively).

    Returns ``(piece, protected)`` pairs in order; a protected piece is one whole
    occurrence of a term, which the caller keeps as one token. Longer terms win over
    terms they contain.
    """
    wanted = sorted({term for term in terms if term}, key=len, reverse=True)
    if not wanted:
        return [(text, False)] if text else []
    folded = text.lower()
    if len(folded) != len(text):  # a rare letter whose lower case is longer
        folded = text
    taken: list[tuple[int, int]] = []
    for term in wanted:
        start = folded.find(term)
        while start != -1:
            end = start + len(term)
            if all(end <= low or start >= high for low, high in taken):
                taken.append((start, end))
            start = folded.find(term, end)
    if not taken:
        return [(text, False)]
    taken.sort()
    pieces: list[tuple[str, bool]] = []
    position = 0
    for start, end in taken:
        if start > position:
            pieces.append((text[position:start], False))
        pieces.append((text[start:end], True))
        position = end
    if position < len(text):
        pieces.append((text[position:], False))
    return pieces
