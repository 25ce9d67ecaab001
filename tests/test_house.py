"""Code says what and why, never when: no diary in docstrings and comments.

Scans every docstring and ``#`` comment under ``pipelines/``, ``transforms/``,
``schemas/`` and ``reports/`` for a date, a commit hash, a "until/before/used to"
history or a measured figure of a past run. Figures belong in ``docs/`` (with the
command that produces them); what changed belongs in commit messages.

``python tests/test_house.py`` prints every hit, ``file:line: rule: text``.
"""

import ast
import bisect
import io
import pathlib
import re
import tokenize

PROJECT = pathlib.Path(__file__).resolve().parents[1]
SCANNED = ("pipelines", "transforms", "schemas", "reports")

# Files not yet cleaned. The list can only shrink: a listed file that has become
# clean (or is gone) fails the test too, so whoever cleans a file removes it here.
KNOWN_UNCLEANED: frozenset[str] = frozenset()

# Calendar dates that are constants, not diary entries.
ALLOWED_DATES = {
    "1970-01-01": "the Unix epoch, which day windows are counted from",
    "1990-01-01": "the earliest plausible created_at (transforms/posts.py)",
    "2200-01-01": "the latest plausible created_at (transforms/posts.py)",
}

_UNIT = (
    r"(?:kb|kib|mb|mib|gb|gib|bytes|ms|s|sec|seconds?|min|minutes?|hours?|"
    r"posts/s|lines/s|/s|%)"
)
_NUMBER = r"(?<![\w.])\d[\d,]*(?:\.\d+)?"
_FIGURE = _NUMBER + r"\s?" + _UNIT + r"(?![\w/])"

_HISTORY = (
    r"\buntil\s+(?:\d|beam\b|prism\b|recently|now\b|commit|this (?:change|commit))",
    r"(?<!is )(?<!are )(?<!be )(?<!been )(?<!was )(?<!were )\bused to\b",
    r"\bbefore (?:this|the|that) (?:change|fix|commit|session|rewrite|refactor\w*)\b",
    r"\b(?:previously|formerly|no longer|nowadays|originally)\b",
    r"\bthis session\b|\b(?:was|were) tried\b|\btried before\b",
    r"\bearlier the same day\b",
)
_MEASURED = (
    # A figure after a word that reports a measurement.
    r"\b(?:measured|measuring|peak|rss|took|ran in|spent|saved|grew|shrank|profiled?"
    rf"|memray|replaying|brought|dominated)\b[^.;]{{0,80}}?{_FIGURE}",
    # A before and after: "1,140 -> 912 MB", "from 1,265 to 953 MB".
    rf"{_NUMBER}\s?{_UNIT}?\s?(?:->|→)\s?\d",
    rf"\bfrom\s{_NUMBER}\s?{_UNIT}?\sto\s{_FIGURE}",
    # A figure compared: "35% slower", "2.5 times smaller", "200 MB more", "against".
    rf"{_NUMBER}\s?(?:%|x|\.\d+\stimes)\s(?:faster|slower|smaller|larger|bigger)\b",
    rf"{_FIGURE}\s(?:more|less|fewer)\b",
    rf"{_FIGURE}[^.;]{{0,30}}\bagainst\s{_NUMBER}",
    # A share or cost of a run: "28% of a batch run", "0.3 s of CPU".
    rf"(?:{_NUMBER}\s?%|\ba third|\ba quarter|\bhalf)\sof\s"
    r"(?:(?:a|the|its|\w+'s|batch|real)\s){0,2}(?:runs?|cpu|time|profile|posts)\b",
    rf"{_FIGURE}\sof\scpu\b",
    # A rate: "at about 7,500/s", "0.2 hours of event time judged per second".
    rf"{_NUMBER}\s?(?:/s|posts/s|lines/s)(?![\w/])",
    r"\bper second\b",
    r"\bmeasured:",
)

# (rule name, pattern); every pattern is matched case-insensitively against prose
# with its line breaks folded into spaces, so a phrase may span lines.
RULES: tuple[tuple[str, re.Pattern], ...] = tuple(
    (name, re.compile(pattern, re.IGNORECASE))
    for name, pattern in (
        ("date", r"\b(?:19|20|21|22)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])\b"),
        (
            "commit hash",
            r"\b(?:commit\s+[0-9a-f]{7,40}|(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])"
            r"[0-9a-f]{7,40})\b",
        ),
        ("history", "|".join(_HISTORY)),
        ("measured figure", "|".join(_MEASURED)),
    )
)

_LITERAL = re.compile(r"``.*?``", re.DOTALL)
# Lines of a docstring that show code: a doctest, its output, a shell command.
_CODE_LINE = re.compile(r"^\s*(?:>>>|\.\.\.|\$ |python |\.venv/|\./)")


def prose(text: str) -> str:
    """``text`` without its code: ``literal`` spans and doctest or command lines.

    Doctest output (the lines after a ``>>>`` line up to a blank line) is code too.
    Dates and figures in examples of input or usage are not history.
    """
    lines, in_doctest = [], False
    for line in text.splitlines():
        if not line.strip():
            in_doctest = False
        elif line.lstrip().startswith(">>>"):
            in_doctest = True
        if in_doctest or _CODE_LINE.match(line):
            lines.append("")
            continue
        lines.append(line)
    return _LITERAL.sub(
        lambda match: "\n" * match.group().count("\n"), "\n".join(lines)
    )


def comments_and_docstrings(source: str) -> list[tuple[int, str]]:
    """(first line number, text) of every docstring and ``#`` comment in ``source``;
    comments on consecutive lines make one text."""
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type != tokenize.COMMENT:
            continue
        line, text = token.start[0], token.string.lstrip("#")
        if found and found[-1][0] + found[-1][1].count("\n") == line - 1:
            found[-1] = (found[-1][0], found[-1][1] + "\n" + text)
        else:
            found.append((line, text))
    for node in ast.walk(ast.parse(source)):
        if isinstance(
            node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
        ):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                found.append((body[0].lineno, body[0].value.value))
    return found


def hits_in(source: str) -> list[tuple[int, str, str]]:
    """(line number, rule, matched text) of every diary entry in ``source``."""
    hits = []
    for first_line, text in comments_and_docstrings(source):
        text = prose(text)
        folded = re.sub(r"\n[ \t]*", " ", text)
        hits.extend(_matches(folded, _line_starts(text), first_line))
    return sorted(set(hits))


def _line_starts(text: str) -> list[int]:
    """Offsets in the folded text (each line break and indentation made one space)
    at which each of ``text``'s lines starts."""
    starts, removed = [0], 0
    for match in re.finditer(r"\n[ \t]*", text):
        removed += len(match.group()) - 1
        starts.append(match.end() - removed)
    return starts


def _matches(folded: str, starts: list[int], first_line: int):
    for rule, pattern in RULES:
        for match in pattern.finditer(folded):
            if rule == "date" and match.group() in ALLOWED_DATES:
                continue
            line = bisect.bisect_right(starts, match.start()) - 1
            yield first_line + line, rule, match.group().strip()


def scanned_files() -> list[pathlib.Path]:
    return sorted(
        path for folder in SCANNED for path in (PROJECT / folder).rglob("*.py")
    )


def all_hits() -> dict[str, list[tuple[int, str, str]]]:
    """Hits per file (relative path), files without hits left out."""
    found = {}
    for path in scanned_files():
        hits = hits_in(path.read_text(encoding="utf-8"))
        if hits:
            found[path.relative_to(PROJECT).as_posix()] = hits
    return found


def _listing(found: dict[str, list[tuple[int, str, str]]]) -> str:
    return "\n".join(
        f"  {name}:{line}: {rule}: {text}"
        for name, hits in sorted(found.items())
        for line, rule, text in hits
    )


def test_no_diary_in_docstrings_and_comments():
    """Dates, commit hashes, histories and past figures fail outside the known list."""
    found = all_hits()
    new = {name: hits for name, hits in found.items() if name not in KNOWN_UNCLEANED}
    assert not new, (
        "docstrings and comments say what and why, never when; move figures to "
        "docs/ and history to commit messages:\n" + _listing(new)
    )


def test_known_uncleaned_list_only_shrinks():
    """A file on KNOWN_UNCLEANED that has no hit any more must leave the list."""
    found = all_hits()
    missing = sorted(name for name in KNOWN_UNCLEANED if not (PROJECT / name).exists())
    clean = sorted(
        name for name in KNOWN_UNCLEANED if name not in found and name not in missing
    )
    assert not clean, f"clean now, remove from KNOWN_UNCLEANED: {clean}"
    assert not missing, f"gone, remove from KNOWN_UNCLEANED: {missing}"


def test_rules_catch_diary_and_spare_constants():
    """The patterns catch the kinds of entry they are for, and not what looks alike."""
    diary = '''
"""Until 2026-11-26 all windows shared one key."""
# Peak RSS 1,140 -> 912 MB after this (commit bf4c34f).
# The records themselves did until Beam 2.77's runner held them.
# It used to spill every window; 35% slower with a file each.
# measured: a Rust reader fails on a replaced file.
# Trigger code dominated a run (11,447 windows: about 2 minutes).
# About 19 bytes a post after zlib against 52 as arrays; a third of Prism's CPU.
# Replaying 1M posts at about 7,500/s on Prism; 0.3 s of CPU per million posts.
'''
    found = hits_in(diary)
    assert {rule for _, rule, _ in found} == {
        "date",
        "commit hash",
        "history",
        "measured figure",
    }
    assert {line for line, _, _ in found} == set(range(2, 10))
    timeless = '''
"""Days are counted from 1970-01-01; dead letters are cut to 10 KB.

    python -m reports hot --day 2026-11-22

>>> period("2026-11-22")
'2026-11-16 to 2026-11-22'
"""
# A timestamp ``2012-09-11T11:34:22+08:00``; a 64 KiB trim threshold; wait until
# the watermark passes the window's end; the key is used to hash authors.
# About 0.8% relative standard error at lg_k 14; replayed 3600 times faster than
# it happened; about 50 bytes a post; windows fire early every 30 s.
'''
    assert hits_in(timeless) == []


if __name__ == "__main__":
    print(_listing(all_hits()) or "no hits")
