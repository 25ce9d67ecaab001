"""What a topic is: its kinds, and the one canonical form topics are stored in.

The pipeline writes every topic through :func:`normalize_topic`; readers bring what
a user types to the same form with :func:`normalize_typed_topic`::

    >>> normalize_topic("  ＢＥＡＭ   Rocks ")
    'beam rocks'
    >>> normalize_typed_topic("＃雅安地震＃"), normalize_typed_topic("@人民日报")
    ('雅安地震', '人民日报')
"""

import re
import unicodedata

KIND_HASHTAG = "hashtag"
KIND_MENTION = "mention"
KIND_ENTITY = "entity"
KIND_KEYWORD = "keyword"
TOPIC_KINDS = (KIND_HASHTAG, KIND_MENTION, KIND_ENTITY, KIND_KEYWORD)

_WHITESPACE = re.compile(r"\s+")


def normalize_topic(text: str) -> str:
    """Return a topic in the contract's canonical form.

    NFKC folds full-width forms (``＃ＢＥＡＭ`` -> ``#BEAM``), whitespace is trimmed and
    inner runs collapsed to one space, Latin letters are lower-cased. Chinese text is
    unchanged by the case fold.
    """
    folded = unicodedata.normalize("NFKC", text)
    return _WHITESPACE.sub(" ", folded).strip().lower()


def normalize_typed_topic(text: str) -> str:
    """A topic as a user types it (``#雅安地震#``, ``@人民日报``, ``ＢＥＡＭ``) in the
    tables' form: :func:`normalize_topic`, then a leading ``@`` and the ``#`` marks
    around it stripped."""
    folded = normalize_topic(text)
    if folded.startswith("@"):
        folded = folded[1:]
    return folded.strip("#").strip()
