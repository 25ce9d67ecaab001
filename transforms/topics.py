"""Hashtags and mentions: pure functions from a post's text to its topics.

Everything here is callable from a REPL::

    >>> extract_hashtags("#雅安地震# 转发 #Beam rocks")
    ['雅安地震', 'beam']
    >>> extract_mentions("同意 @人民日报 //@张三: 转发")
    ['人民日报']

Texts reach these functions after privacy masking (see ``transforms.privacy``).
"""

import re

from schemas.topics import (  # noqa: F401 - the kinds are imported from here too
    KIND_ENTITY,
    KIND_HASHTAG,
    KIND_KEYWORD,
    KIND_MENTION,
    TOPIC_KINDS,
    normalize_topic,
)

# Weibo renders any `#...#` pair as a topic link, however long (real posts carry
# 80-character quiz answers as topics); the cap is a classic post's 140 characters.
MAX_HASHTAG_CHARS = 140
# Weibo nicknames are 2-30 characters of letters, digits, CJK, '_' and '-'.
MAX_MENTION_CHARS = 30

_HASH = re.compile(r"[#＃]")
# A single Latin-script tag (`#Beam`), as on Twitter; Weibo's own tags are paired.
_LATIN_TAG = re.compile(
    r"[#＃]([A-Za-z0-9_\u00C0-\u024F]*[A-Za-z\u00C0-\u024F][A-Za-z0-9_\u00C0-\u024F]*)"
)
_WORD_BEFORE = re.compile(r"[\w/&]")
# An ASCII word before "@" is an e-mail-like string; CJK before it is ordinary prose
# ("推荐@程与败").
_MENTION = re.compile(rf"(?<![A-Za-z0-9_.])[@＠]([\w\-]{{1,{MAX_MENTION_CHARS}}})")
# `//@name:` (ASCII or full-width colon) marks the next author in a repost chain;
# the `//` is what Weibo's repost box prepends, and real chains lose the colon
# ("//@永强的小博 昨天..."), so the colon is optional.
_REPOST_CHAIN_MARK = re.compile(
    rf"//\s*[@＠]([\w\-]{{1,{MAX_MENTION_CHARS}}})\s*[:：]?"
)


def _accept_paired(content: str) -> bool:
    """Whether the text between two '#' signs is a Weibo topic.

    An all-ASCII span that starts or ends with whitespace is two single Latin tags
    (`#Beam #Flink`), not a pair; a span with CJK text is a Weibo topic, trimmed.
    """
    if not content.strip() or len(content) > MAX_HASHTAG_CHARS or "\n" in content:
        return False
    if content.isascii() and content != content.strip():
        return False
    return True


def extract_hashtags(text: str) -> list[str]:
    """Return the hashtags of ``text``, normalized, in order of appearance.

    ``#话题#`` (Weibo's paired form, ``#`` or ``＃``) gives ``话题``; a single ``#tag``
    made of Latin letters, digits and ``_`` gives ``tag``. A ``#`` glued to a word or
    URL (``C#``, ``page#top``) starts no tag. Duplicates within one text are kept once.
    """
    found: list[str] = []
    position = 0
    length = len(text)
    while position < length:
        match = _HASH.search(text, position)
        if match is None:
            break
        start = match.start()
        # A '#' glued to a Latin word or URL (`C#`, `page#top`) opens only a Weibo
        # pair with Chinese text in it (`@name#救救孩子#`), never a Latin tag.
        glued = (
            start > 0
            and _WORD_BEFORE.match(text[start - 1])
            and not _is_cjk(text[start - 1])
        )
        closing = _HASH.search(text, start + 1)
        content = text[start + 1 : closing.start()] if closing is not None else ""
        if (
            closing is not None
            and _accept_paired(content)
            and not (glued and content.isascii())
        ):
            topic = normalize_topic(content)
            position = closing.end()
        else:
            latin = None if glued else _LATIN_TAG.match(text, start)
            if latin is None:
                position = start + 1
                continue
            topic = normalize_topic(latin.group(1))
            position = latin.end()
        if topic and topic not in found:
            found.append(topic)
    return found


def _is_cjk(char: str) -> bool:
    return "\u4e00" <= char <= "\u9fff" or "\u3400" <= char <= "\u4dbf"


def repost_chain_names(text: str) -> list[str]:
    """Return the authors named by ``//@name:`` repost-chain marks, in order."""
    return [match.group(1) for match in _REPOST_CHAIN_MARK.finditer(text)]


def extract_mentions(text: str) -> list[str]:
    """Return the accounts ``text`` mentions with ``@name``, normalized, without ``@``.

    ``//@name:`` is Weibo's repost chain (who reposted before), not a mention, and is
    skipped. Names may be Chinese. Duplicates within one text are kept once.
    """
    without_chain = _REPOST_CHAIN_MARK.sub(" ", text)
    found: list[str] = []
    for match in _MENTION.finditer(without_chain):
        name = normalize_topic(match.group(1))
        if name and name not in found:
            found.append(name)
    return found
