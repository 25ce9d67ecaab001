"""Folding: original text -> the text the recognizers read, with an index map."""

import unicodedata

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


FOLD_TABLE = _FoldTable()


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
    folded = text.translate(FOLD_TABLE)
    if len(folded) == len(text) and FOLD_TABLE.irregular.isdisjoint(text):
        return Folded(folded, None, None)
    pieces, starts, ends = [], [], []
    for index, char in enumerate(text):
        piece = FOLD_TABLE[ord(char)]
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
        piece = "".join(FOLD_TABLE[ord(part)] for part in char)
        pieces.append(piece)
        starts.extend([index] * len(piece))
        ends.extend([index + width] * len(piece))
        index += width
    return Folded("".join(pieces), starts, ends)
