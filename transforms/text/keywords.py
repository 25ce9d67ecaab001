"""Keywords of a tagged post: TF-IDF over content words, less a stop list.

TF-IDF with jieba's IDF table over content tags, less a Weibo-aware stop list, at
most ``DEFAULT_KEYWORD_COUNT`` a post (the analyzer's ``keyword_count``).

    >>> idf = {"地震": 8.0, "成都": 6.0, "今天": 2.0}
    >>> score_keywords([("成都", "ns"), ("今天", "t"), ("地震", "n")], idf, 5.0, set())
    ['地震', '成都']
"""

from collections.abc import Sequence

from transforms.text.cleaning import is_number, is_word
from transforms.text.tags import TAG_HASHTAG

DEFAULT_KEYWORD_COUNT = 5

# Tags whose tokens can be keywords: nouns, names, verbal nouns, idioms, Latin words,
# OOV words the HMM found, and protected hashtag texts. Verbs are allowed: 跳楼, 辟谣.
KEYWORD_TAGS = frozenset(
    "n nr nrt nrfg ns nl nt nz nw ng vn v vi an j l i s eng x un hashtag".split()
)


def score_keywords(
    tokens: Sequence[tuple[str, str]],
    idf: dict,
    default_idf: float,
    stopwords: frozenset[str] | set[str],
    count: int = DEFAULT_KEYWORD_COUNT,
    cache: dict | None = None,
) -> list[str]:
    """Return the ``count`` best keywords of a tagged token sequence, normalized.

    TF-IDF as jieba's ``extract_tags`` (unknown words get the median IDF), over
    tokens of at least two characters whose tag is in ``KEYWORD_TAGS``, that are not
    stop words and not numbers. A word the IDF table does not know is a new word
    (微信, 工信部) or an HMM guess glued across a word boundary (完别, 人会): one that
    starts or ends with a function character counts only when tagged as a name,
    Latin, a hashtag's text, or seen twice in the post. Ties keep the order of first
    appearance. ``cache`` (word -> normalized word, or "" for a stop word),
    kept by the caller across posts, saves re-checking frequent words; it must
    belong to one ``stopwords`` set.
    """
    frequency: dict[str, int] = {}
    trusted: set[str] = set()
    if cache is None:
        cache = {}
    for word, tag in tokens:
        if tag not in KEYWORD_TAGS or len(word) < 2:
            continue
        normalized = cache.get(word)
        if normalized is None:
            # Tokens come from NFKC text without whitespace: lower() is normalize_topic.
            normalized = word.lower()
            if normalized in stopwords or not _is_keyword_shaped(normalized):
                normalized = ""
            if len(cache) < _CACHE_LIMIT:
                cache[word] = normalized
        if not normalized:
            continue
        frequency[normalized] = frequency.get(normalized, 0) + 1
        if tag in _TRUSTED_UNKNOWN_TAGS:
            trusted.add(normalized)
    scores = {}
    for word, seen in frequency.items():
        weight = idf.get(word)
        if weight is None:
            if (
                seen < 2
                and word not in trusted
                and (word[0] in _GLUE_CHARS or word[-1] in _GLUE_CHARS)
            ):
                continue
            weight = default_idf
        scores[word] = seen * weight
    return sorted(scores, key=scores.__getitem__, reverse=True)[:count]


_CACHE_LIMIT = 500_000
# Function characters that the HMM glues onto a neighbour (完+别, 人+会, 流干+以).
_GLUE_CHARS = frozenset(
    "的了着过以会别就也都在是和与而把被让给向从对为之其所但却又"
    "才再还很太更最没不人我你他她它这那有要能可将已于"
)


def _is_keyword_shaped(word: str) -> bool:
    return is_word(word) and not is_number(word)


# Tags under which a word unknown to the IDF table is still a keyword.
_TRUSTED_UNKNOWN_TAGS = frozenset(
    ("nr", "nrt", "nrfg", "ns", "nl", "nt", "nz", "eng", TAG_HASHTAG)
)
