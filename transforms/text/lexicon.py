"""The word resources of the text analysis and their readers.

Shipped in ``transforms/resources/``: the Weibo keyword stop list, stop names,
surnames, a gazetteer of places, the names drawn from WeiboNER's train split and the
entity model (both built by ``benchmarks/build_lexicon.py``). jieba's own dictionary
and IDF table come from the installed ``jieba`` package.
"""

import unicodedata
from pathlib import Path
from typing import NamedTuple

from schemas.topics import normalize_topic
from transforms.text.tags import NAME_TAG_TYPES

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
DEFAULT_STOPWORDS = RESOURCES / "stopwords.txt"
DEFAULT_NOT_NAMES = RESOURCES / "not_names.txt"
DEFAULT_SURNAMES = RESOURCES / "surnames.txt"
DEFAULT_PLACES = RESOURCES / "places.txt"
# A logistic model over entity candidates, trained by benchmarks/build_lexicon.py.
DEFAULT_ENTITY_MODEL = RESOURCES / "entity_model.json"
# Names drawn from WeiboNER's train split by benchmarks/build_lexicon.py.
DEFAULT_USER_DICTS = (RESOURCES / "weibo_ner_names.txt",)


def read_word_list(path: str | Path) -> set[str]:
    """Words of a list file, separated by whitespace; ``#`` starts a comment.

    Words are normalized as topics are (NFKC, lower-cased).
    """
    words = set()
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            for word in line.split("#", 1)[0].split():
                words.add(normalize_topic(word))
    return words


class DictEntry(NamedTuple):
    word: str
    freq: int | None
    tag: str | None


def read_user_dict(path: str | Path) -> list[DictEntry]:
    """Entries of a jieba user dictionary: ``word [freq] [tag]`` a line.

    As in jieba, a missing frequency means "just enough to keep the word whole". The
    word is NFKC-folded, as the texts it must match are.
    """
    entries = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            word = unicodedata.normalize("NFKC", fields[0])
            freq = None
            tag = None
            for field in fields[1:3]:
                if field.isdigit():
                    freq = int(field)
                else:
                    tag = field
            entries.append(DictEntry(word, freq, tag))
    return entries


def read_surnames(path: str | Path) -> tuple[frozenset[str], frozenset[str]]:
    """Single- and two-character surnames from a list file."""
    names = read_word_list(path)
    return (
        frozenset(name for name in names if len(name) == 1),
        frozenset(name for name in names if len(name) == 2),
    )


def read_idf(path: str | Path) -> tuple[dict[str, float], float]:
    """jieba's IDF table (``word idf`` a line) and its median, for unknown words."""
    idf: dict[str, float] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            word, _, value = line.strip().rpartition(" ")
            if word:
                idf[word] = float(value)
    values = sorted(idf.values())
    median = values[len(values) // 2] if values else 10.0
    return idf, median


def read_name_frequencies(path: str | Path) -> dict[str, int]:
    """Frequencies of the words a jieba dictionary tags as names (nr, ns, nt, nz...)."""
    freq = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) == 3 and fields[2] in NAME_TAG_TYPES:
                freq[fields[0]] = int(fields[1])
    return freq


def jieba_idf_path() -> Path:
    """jieba's IDF table, in the installed package."""
    import jieba

    return Path(jieba.__file__).resolve().parent / "analyse" / "idf.txt"


def jieba_dict_path() -> Path:
    """jieba's main dictionary (``word freq tag`` a line), in the installed package."""
    import jieba

    return Path(jieba.__file__).resolve().parent / "dict.txt"
