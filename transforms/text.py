"""Chinese text understanding: cleaning, segmentation, entities and keywords.

Pure functions first, then one object that owns the segmenter. From a REPL::

    >>> clean_text("转发[泪] http://t.cn/zY1QWp0 //@张三: 宁波ＡＢＣ <PHONE>")
    '转发 宁波ABC'
    >>> analyzer = TextAnalyzer()          # slow: loads dictionaries (~0.5-2 s)
    >>> analyzer.analyze("#雅安地震# 成都和重庆都有震感", hashtags=["雅安地震"])
    (['成都', '重庆'], ['震感', '雅安地震', '成都', '重庆'])

A Beam DoFn builds one ``TextAnalyzer`` in ``setup()`` and calls ``analyze`` per
post: one tagging pass feeds both the entities and the keywords.

- ``clean_text``: NFKC, then URLs, ``[emoticons]``, ``//@name:`` repost marks,
  ``@mentions`` and masked-PII placeholders out; punctuation tokens are dropped later.
- Entities (``extract_entities``): candidates from part-of-speech tags, merge rules
  (surname + given name, name + organisation ending...), a user dictionary of names
  and a gazetteer of places, kept or dropped by a small logistic model trained on
  WeiboNER train (``benchmarks/build_lexicon.py``; features: the rule, tags, words
  and characters around the candidate). Types PER, ORG, GPE, LOC. Name F1 on
  WeiboNER dev: ``benchmarks/entity_scores.json``.
- Keywords (``score_keywords``): TF-IDF with jieba's IDF table over content tags,
  less a Weibo-aware stop list, at most ``keyword_count`` a post.

Engines: ``rjieba`` (jieba-rs, Rust; the default), ``jieba`` (pure Python,
jieba.posseg) and ``hybrid`` (rjieba, with jieba.posseg redoing the stretches where
rjieba guessed a name). They share jieba's dictionary; rjieba's plain cut equals
jieba's, and entities agree on 99% of real posts. Agreement, speed and entity scores
per engine: ``python benchmarks/eval_entities.py`` (figures in its docstring).

Tags follow jieba's set (``nr`` person, ``ns`` place, ``nt`` organisation, ``nz``
other proper noun, ...) plus one extension for user dictionaries: ``nl``, a location
name that is not a political unit (a street, park or mountain; WeiboNER's LOC).
Resources (stop words, places, surnames, the train lexicon and model) ship in
``transforms/resources/``.
"""

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from transforms.privacy import PLACEHOLDERS
from transforms.topics import extract_mentions, normalize_topic, repost_chain_names

RESOURCES = Path(__file__).resolve().parent / "resources"
DEFAULT_STOPWORDS = RESOURCES / "stopwords.txt"
DEFAULT_NOT_NAMES = RESOURCES / "not_names.txt"
DEFAULT_SURNAMES = RESOURCES / "surnames.txt"
DEFAULT_PLACES = RESOURCES / "places.txt"
# A logistic model over entity candidates, trained by benchmarks/build_lexicon.py.
DEFAULT_ENTITY_MODEL = RESOURCES / "entity_model.json"
# Names drawn from WeiboNER's train split by benchmarks/build_lexicon.py.
DEFAULT_USER_DICTS = (RESOURCES / "weibo_ner_names.txt",)

ENGINES = ("auto", "hybrid", "rjieba", "jieba")
DEFAULT_KEYWORD_COUNT = 5

PERSON, ORGANISATION, GEOPOLITICAL, LOCATION = "PER", "ORG", "GPE", "LOC"
ENTITY_TYPES = (PERSON, ORGANISATION, GEOPOLITICAL, LOCATION)

# A protected span (a hashtag's text) that is not one dictionary word.
TAG_HASHTAG = "hashtag"

# --- cleaning ---------------------------------------------------------------------

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
_DIGITS = re.compile(r"[\d.,%:/\-+]+")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


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


# --- word lists -------------------------------------------------------------------


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


# --- entities ---------------------------------------------------------------------

_TAG_TYPES = {
    "nr": PERSON,
    "nrt": PERSON,
    "nrfg": PERSON,
    "ns": GEOPOLITICAL,
    "nl": LOCATION,
    "nt": ORGANISATION,
    "nz": ORGANISATION,
}
# Endings that make a place name a location (LOC) rather than a political unit.
_LOCATION_ENDINGS = (
    "路", "街", "道", "巷", "桥", "山", "峰", "岭", "江", "河", "湖", "海", "湾", "岛",
    "公园", "广场", "景区", "古镇", "古城", "山庄", "寺", "塔", "宫", "园", "洞", "站",
    "机场", "大厦", "中心", "足球场", "体育场", "体育馆",
)  # fmt: skip
_LOCATION_SUFFIXES = frozenset(_LOCATION_ENDINGS) | frozenset(
    "大道 东路 西路 南路 北路".split()
)
# Endings that close an organisation name: 宁波/妇儿/医院, 浙江/大学.
_ORG_SUFFIXES = frozenset(
    "大学 学院 中学 小学 学校 医院 公司 集团 银行 酒店 饭店 宾馆 商场 商城 超市 网 "
    "电视台 电台 日报 晚报 报社 杂志 协会 学会 基金会 研究所 研究院 委员会 政府 法院 "
    "检察院 公安局 派出所 局 厅 部 队 俱乐部 联盟 工作室 旗舰店 专卖店 百货 地产 "
    "电器 汽车 航空 电力 科技 资讯网 新闻网 论坛 医科大学 师范大学 职业学院 "
    "科技大学".split()
)
_PLACE_SUFFIXES = frozenset("省 市 县 区 镇 乡 村 州".split())
# Titles that make "surname + title" a person's name in Weibo usage (张先生, 宋院长).
_TITLES = frozenset(
    "先生 女士 小姐 老师 教授 医生 院长 校长 局长 书记 市长 县长 主任 经理 总 哥 姐 "
    "叔 阿姨 老板 同学 大爷 大妈 师傅 老总 总裁 董事长 部长 省长 主席".split()
)
# Tags that cannot be part of a name.
_FUNCTION_TAGS = frozenset(
    "r rr rz p c u uj ul uz ug uv ud y e o m mq q d f t x eng zg".split()
)
_NAME_PREFIXES = frozenset("小 老 阿".split())
_LATIN = re.compile(r"[A-Za-z][A-Za-z0-9\-]*")

RULE_TAG = "tag"  # one token tagged as a name
RULE_LEXICON = "lexicon"  # one token a user dictionary names
RULE_GAZETTEER = "gazetteer"  # one token in the shipped list of places
RULE_LATIN = "latin"  # one Latin word (brands, nicknames)
RULE_ABBREVIATION = "abbreviation"  # one token tagged j (央视, 建行)
RULE_GIVEN = "given"  # a two-character name + one more character (田喜/碧)
RULE_SURNAME = "surname"  # 赵/新民
RULE_TITLE = "title"  # 张/先生
RULE_PREFIX = "prefix"  # 老/王, 阿/袁
RULE_ORGANISATION = "organisation"  # 宁波/妇儿/医院
RULE_PLACE = "place"  # 东营/区
RULE_LOCATION = "location"  # 滨江/森林公园
RULE_TRIM = "trim"  # 汤唯去/nr -> 汤唯, 看思聪/nr -> 思聪: a function char glued on
RULE_ACCOUNT = "account"  # //@任志强: or @任志强, an account under a person's real name
# Rules whose candidates are kept without a model; the others need one.
_RULES_WITHOUT_MODEL = frozenset(
    (RULE_TAG, RULE_LEXICON, RULE_GAZETTEER, RULE_SURNAME, RULE_TITLE,
     RULE_ORGANISATION, RULE_PLACE, RULE_LOCATION)
)  # fmt: skip


class Candidate(NamedTuple):
    """A possible name: tokens ``start:end`` of a tagged sequence."""

    name: str
    type: str
    start: int
    end: int
    rule: str
    tag: str  # the first token's tag


class EntityModel(NamedTuple):
    """A logistic model over candidate features: keep when the logit >= threshold."""

    weights: dict
    threshold: float = 0.0

    @classmethod
    def load(cls, path: str | Path) -> "EntityModel":
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        return cls(weights=data["weights"], threshold=data["threshold"])


class EntityRules(NamedTuple):
    """What entity extraction needs besides the tokens; built once per worker."""

    surnames: frozenset = frozenset()
    compound_surnames: frozenset = frozenset()
    not_names: frozenset = frozenset()
    # word -> type, for words a user dictionary tagged as names.
    lexicon: dict = {}
    # word -> frequency in jieba's dictionary, for words it tags as names.
    name_freq: dict = {}
    # Well-known place names (GPE), kept whatever the model says.
    places: frozenset = frozenset()
    model: EntityModel | None = None
    merge: bool = True
    # candidate_starters(self), precomputed; empty means "compute per call".
    starters: frozenset = frozenset()
    # Candidate rules switched off (RULE_TRIM...), for ablations.
    disabled: frozenset = frozenset()


_NO_RULES = EntityRules()


def _entity_type(word: str, tag: str, rules: EntityRules) -> str | None:
    if word in rules.places:
        return GEOPOLITICAL
    entity_type = rules.lexicon.get(word) or _TAG_TYPES.get(tag)
    if entity_type == GEOPOLITICAL and word.endswith(_LOCATION_ENDINGS):
        return LOCATION
    return entity_type


def _is_name_part(word: str, tag: str) -> bool:
    return tag not in _FUNCTION_TAGS and _CJK.match(word) is not None


def _single_candidate(
    tokens: Sequence[tuple[str, str]], index: int, rules: EntityRules
) -> Candidate | None:
    word, tag = tokens[index]
    if word in rules.places:
        return Candidate(word, GEOPOLITICAL, index, index + 1, RULE_GAZETTEER, tag)
    if word in rules.lexicon:
        return Candidate(
            word, _entity_type(word, tag, rules), index, index + 1, RULE_LEXICON, tag
        )
    entity_type = _entity_type(word, tag, rules)
    if entity_type is not None:
        return Candidate(word, entity_type, index, index + 1, RULE_TAG, tag)
    if rules.model is None:
        return None
    if tag == "eng" and _LATIN.fullmatch(word):
        return Candidate(word, ORGANISATION, index, index + 1, RULE_LATIN, tag)
    if tag == "j":
        return Candidate(word, ORGANISATION, index, index + 1, RULE_ABBREVIATION, tag)
    return None


def _merged_candidate(
    tokens: Sequence[tuple[str, str]], index: int, rules: EntityRules
) -> Candidate | None:
    count = len(tokens)
    if index + 1 >= count:
        return None
    word, tag = tokens[index]
    following, following_tag = tokens[index + 1]
    entity_type = _entity_type(word, tag, rules)
    if len(word) == 1 or (len(word) == 2 and word in rules.compound_surnames):
        if word in rules.surnames or word in rules.compound_surnames:
            if following in _TITLES:
                return Candidate(
                    word + following, PERSON, index, index + 2, RULE_TITLE, tag
                )
            if (
                tag == "nr"
                and len(following) <= 2
                and following not in rules.lexicon
                and _is_name_part(following, following_tag)
            ):
                return Candidate(
                    word + following, PERSON, index, index + 2, RULE_SURNAME, tag
                )
        if (
            word in _NAME_PREFIXES
            and rules.model is not None
            and len(following) == 1
            and following in rules.surnames
        ):
            return Candidate(
                word + following, PERSON, index, index + 2, RULE_PREFIX, tag
            )
        return None
    if (
        entity_type == PERSON
        and len(word) == 2
        and rules.model is not None
        and len(following) == 1
        and word[0] in rules.surnames
        and _is_name_part(following, following_tag)
    ):
        return Candidate(word + following, PERSON, index, index + 2, RULE_GIVEN, tag)
    if entity_type is None and tag not in ("j", "nz"):
        return None
    if entity_type == GEOPOLITICAL and following in _PLACE_SUFFIXES:
        return Candidate(
            word + following, GEOPOLITICAL, index, index + 2, RULE_PLACE, tag
        )
    # Up to two more tokens before an organisation or location ending.
    parts = [word]
    for offset in range(1, 4):
        if index + offset >= count:
            break
        part, part_tag = tokens[index + offset]
        if part in _ORG_SUFFIXES:
            name = "".join(parts) + part
            return Candidate(
                name, ORGANISATION, index, index + offset + 1, RULE_ORGANISATION, tag
            )
        if part in _LOCATION_SUFFIXES and (entity_type is not None or offset > 1):
            name = "".join(parts) + part
            return Candidate(
                name, LOCATION, index, index + offset + 1, RULE_LOCATION, tag
            )
        if not _is_name_part(part, part_tag) or len(part) > 3:
            break
        parts.append(part)
    return None


def _trimmed_candidate(
    tokens: Sequence[tuple[str, str]], index: int, rules: EntityRules
) -> Candidate | None:
    """A person token with a function character glued on, without it (汤唯去)."""
    word, tag = tokens[index]
    if (
        tag not in _PERSON_TAGS
        or len(word) < 3
        or rules.model is None
        or word in rules.lexicon
        or not _enabled(RULE_TRIM, rules)
    ):
        return None
    if word[-1] in _TRAILING_GLUE:
        name = word[:-1]
    elif word[0] in _LEADING_GLUE and word[0] not in rules.surnames:
        name = word[1:]
    else:
        return None
    return Candidate(name, PERSON, index, index + 1, RULE_TRIM, tag)


_PERSON_TAGS = frozenset(("nr", "nrt", "nrfg"))
# Characters the HMM glues onto a name it guesses: 看/思聪, 找/舟哥, 汤唯/去.
_LEADING_GLUE = frozenset(
    "看找去叫说问帮陪请跟给等见送把被让对向和与是在的了我你他她妈节系连"
)
_TRAILING_GLUE = frozenset("去要会说和的了也都在是就来吧呢啊呀哦哈心歲岁")


def _enabled(rule: str, rules: EntityRules) -> bool:
    return rule not in rules.disabled


def _freq_bucket(freq: int) -> str:
    if freq == 0:
        return "0"
    if freq < 10:
        return "1"
    if freq < 100:
        return "2"
    if freq < 1000:
        return "3"
    return "4"


def candidate_features(
    tokens: Sequence[tuple[str, str]], candidate: Candidate, rules: EntityRules
) -> list[str]:
    """The sparse features the entity model scores a candidate by."""
    name, _, start, end, rule, tag = candidate
    previous_word, previous_tag = tokens[start - 1] if start > 0 else ("^", "^")
    next_word, next_tag = tokens[end] if end < len(tokens) else ("$", "$")
    length = str(min(len(name), 6))
    bucket = _freq_bucket(rules.name_freq.get(name, 0))
    first, last = name[0], name[-1]
    surname = first in rules.surnames or name[:2] in rules.compound_surnames
    features = [
        "bias",
        "r=" + rule,
        "rt=" + rule + tag,
        "tb=" + tag + bucket,
        "w=" + name,
        "sl=" + str(surname) + length + tag,
        "p=" + previous_word,
        "pt=" + previous_tag,
        "n=" + next_word,
        "nt=" + next_tag,
        "yb=" + candidate.type + bucket + length,
        "lt=" + last + candidate.type,
        "ft=" + first + candidate.type,
    ]
    features.append("pc=" + previous_word[-1] + candidate.type)
    features.append("nc=" + next_word[0] + candidate.type)
    return features


def candidate_score(
    tokens: Sequence[tuple[str, str]], candidate: Candidate, rules: EntityRules
) -> float:
    """The model's logit for a candidate (above its threshold: a name)."""
    weights = rules.model.weights
    return sum(
        weights.get(feature, 0.0)
        for feature in candidate_features(tokens, candidate, rules)
    )


def _admissible(candidate: Candidate | None, rules: EntityRules) -> bool:
    if candidate is None:
        return False
    name = candidate.name
    return (
        len(name) >= 2
        and name not in rules.not_names
        and not _DIGITS.fullmatch(name)
        and (rules.model is not None or candidate.rule in _RULES_WITHOUT_MODEL)
    )


def entity_candidates(
    tokens: Sequence[tuple[str, str]], index: int, rules: EntityRules
) -> list[Candidate]:
    """Admissible candidates starting at token ``index``, the longest first."""
    found = []
    if rules.merge:
        merged = _merged_candidate(tokens, index, rules)
        if _admissible(merged, rules):
            found.append(merged)
    single = _single_candidate(tokens, index, rules)
    if _admissible(single, rules):
        found.append(single)
    trimmed = _trimmed_candidate(tokens, index, rules)
    if _admissible(trimmed, rules):
        found.append(trimmed)
    return found


def is_person_like_account(name: str, rules: EntityRules) -> bool:
    """Whether an account name reads as a person's real name: a known surname then a
    one- or two-character given name, all Chinese characters (任志强, 段钢; 欧阳娜娜
    with a compound surname), not a stop name. Nicknames (奇葩小师妹), brands and
    Latin handles are not."""
    if (
        not all("\u4e00" <= char <= "\u9fff" for char in name)
        or name in rules.not_names
    ):
        return False
    if name[:2] in rules.compound_surnames:
        return 3 <= len(name) <= 4
    return name[0] in rules.surnames and 2 <= len(name) <= 3


def account_person_names(text: str, rules: EntityRules = _NO_RULES) -> list[str]:
    """Person names among the accounts a raw post names, by ``@name`` and by
    ``//@name:`` repost marks, normalized, in order.

    Cleaning removes accounts before tagging (a mention is its own topic kind), but
    an account under a real name names a person the post is about or quotes:
    WeiboNER annotates them as PER. On its train split, 20 of the 24 such names are
    gold names.
    """
    if "@" not in text and "＠" not in text:
        return []
    names = []
    for raw in repost_chain_names(text) + extract_mentions(text):
        name = normalize_topic(raw)
        if name not in names and is_person_like_account(name, rules):
            names.append(name)
    return names


def extract_entities(
    tokens: Sequence[tuple[str, str]], rules: EntityRules = _NO_RULES
) -> list[tuple[str, str]]:
    """Return ``(name, type)`` pairs, in order, from a tagged token sequence.

    Candidates (see ``entity_candidates``): a token tagged ``nr``/``ns``/``nt``/``nz``
    or typed by a user dictionary; with ``rules.merge``, a short run of tokens:

    - surname + given name or title: ``赵/新民``, ``张/先生`` (PER);
    - name + organisation ending: ``宁波/妇儿/医院``, ``浙江/大学`` (ORG);
    - place + administrative or location ending: ``东营/区``, ``朝阳/公园``;
    - with a model, also Latin words, abbreviations, ``老/王``, and a person token
      without the function character the HMM glued on (``汤唯去`` -> ``汤唯``).

    A candidate is at least two characters, not a stop name, not only digits, and,
    when ``rules.model`` is set, scored at or above its threshold; a known place
    (``rules.places``) and an organisation name headed by one (``宁波/妇儿/医院``)
    need no score. Scanning left to right, the longest accepted candidate wins.
    Types: PER, ORG, GPE, LOC. Names are returned as written (not normalized).
    """
    found: list[tuple[str, str]] = []
    model = rules.model
    starters = rules.starters or candidate_starters(rules)
    # Cheap test first: most tokens can start no candidate.
    starts = [
        index
        for index, (word, tag) in enumerate(tokens)
        if tag in _START_TAGS or word in starters
    ]
    next_free = 0
    for index in starts:
        if index < next_free:
            continue
        for candidate in entity_candidates(tokens, index, rules):
            if (
                model is None
                or candidate.rule == RULE_GAZETTEER
                or (
                    candidate.rule == RULE_ORGANISATION
                    and tokens[index][0] in rules.places
                )
                or candidate_score(tokens, candidate, rules) >= model.threshold
            ):
                found.append((candidate.name, candidate.type))
                next_free = candidate.end
                break
    return found


def candidate_starters(rules: EntityRules) -> frozenset:
    """Words that can start a candidate whatever their tag (see EntityRules)."""
    return (
        rules.places
        | frozenset(rules.lexicon)
        | rules.surnames
        | rules.compound_surnames
        | _NAME_PREFIXES
    )


# Tags that can start a candidate by themselves.
_START_TAGS = frozenset(_TAG_TYPES) | {"eng", "j"}


# --- keywords ---------------------------------------------------------------------

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
    "的了着过以会别就也都在是和与而把被让给向从对为之其所但却又才再还很太更最没不人我你他她它这那有要能可将已于"
)


def _is_keyword_shaped(word: str) -> bool:
    return is_word(word) and not _DIGITS.fullmatch(word)


# Tags under which a word unknown to the IDF table is still a keyword.
_TRUSTED_UNKNOWN_TAGS = frozenset(
    ("nr", "nrt", "nrfg", "ns", "nl", "nt", "nz", "eng", TAG_HASHTAG)
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


# --- engines ----------------------------------------------------------------------


class _RjiebaEngine:
    name = "rjieba"

    def __init__(self) -> None:
        import rjieba

        self._jieba = rjieba.Jieba()
        self.tag = self._jieba.tag

    def add_word(self, word: str, freq: int | None, tag: str | None) -> None:
        self._jieba.add_word(word, freq, tag)


class _JiebaEngine:
    name = "jieba"

    def __init__(self) -> None:
        import logging

        import jieba
        import jieba.posseg

        logging.getLogger("jieba").setLevel(logging.WARNING)
        self._tokenizer = jieba.Tokenizer()
        self._tokenizer.initialize()
        self._posseg = jieba.posseg.POSTokenizer(self._tokenizer)

    def tag(self, text: str) -> list[tuple[str, str]]:
        return [(pair.word, pair.flag) for pair in self._posseg.cut(text)]

    def add_word(self, word: str, freq: int | None, tag: str | None) -> None:
        self._tokenizer.add_word(word, freq, tag)


class _HybridEngine:
    """rjieba, with jieba.posseg redoing the stretches where rjieba guessed a word.

    Both share jieba's dictionary and route, so they cut known text identically. They
    differ where a run of characters is not in the dictionary: rjieba segments it with
    jieba's plain HMM and then tags the pieces, jieba.posseg segments and tags it in
    one joint POS-HMM pass, which delimits unknown names better (陈泽伟 rather than
    陈泽伟腹). So every unknown multi-character Han word rjieba produces, together
    with the single characters around it (the HMM's input), is tagged again by
    jieba.posseg; the route outside that stretch is the same, so the result is what
    jieba.posseg gives for the whole text, at a fraction of its cost.
    """

    name = "hybrid"

    def __init__(self) -> None:
        self._fast = _RjiebaEngine()
        self._slow = _JiebaEngine()
        self._has_word = self._fast._jieba.has_word

    def add_word(self, word: str, freq: int | None, tag: str | None) -> None:
        self._fast.add_word(word, freq, tag)
        self._slow.add_word(word, freq, tag)

    def tag(self, text: str) -> list[tuple[str, str]]:
        tokens = self._fast.tag(text)
        has_word = self._has_word
        result: list[tuple[str, str]] = []
        done = 0  # tokens[:done] are settled in result
        index = 0
        count = len(tokens)
        while index < count:
            word, tag = tokens[index]
            if (
                tag not in _TAG_TYPES
                or len(word) < 2
                or has_word(word)
                or not _HAN_WORD.fullmatch(word)
            ):
                index += 1
                continue
            # Widen to the single characters and other guessed words around it.
            start = index
            while start > done and self._guessed(tokens[start - 1][0]):
                start -= 1
            end = index + 1
            while end < count and self._guessed(tokens[end][0]):
                end += 1
            result.extend(tokens[done:start])
            result.extend(
                self._slow.tag("".join(word for word, _ in tokens[start:end]))
            )
            done = index = end
        if not done:
            return tokens
        result.extend(tokens[done:])
        return result

    def _guessed(self, word: str) -> bool:
        return _HAN_WORD.fullmatch(word) is not None and (
            len(word) == 1 or not self._has_word(word)
        )


_HAN_WORD = re.compile(r"[\u4e00-\u9fd5]+")


def available_engines() -> list[str]:
    """Engines that import here, fastest first (``hybrid`` needs both libraries).

    ``auto`` takes the first: rjieba, whose entities match jieba's on 99% of real
    posts at 20-30x the speed (figures in benchmarks/eval_entities.py).
    """
    found = []
    try:
        import rjieba  # noqa: F401

        found.append("rjieba")
    except ImportError:
        pass
    try:
        import jieba  # noqa: F401

        found.append("jieba")
    except ImportError:
        pass
    if found == ["rjieba", "jieba"]:
        found.insert(1, "hybrid")
    return found


def _make_engine(engine: str):
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    if engine == "auto":
        engines = available_engines()
        if not engines:
            raise ImportError("neither rjieba nor jieba is installed")
        engine = engines[0]
    return {"hybrid": _HybridEngine, "rjieba": _RjiebaEngine, "jieba": _JiebaEngine}[
        engine
    ]()


def _jieba_idf_path() -> Path:
    import jieba

    return Path(jieba.__file__).resolve().parent / "analyse" / "idf.txt"


def _jieba_dict_path() -> Path:
    import jieba

    return Path(jieba.__file__).resolve().parent / "dict.txt"


def read_name_frequencies(path: str | Path) -> dict[str, int]:
    """Frequencies of the words a jieba dictionary tags as names (nr, ns, nt, nz...)."""
    freq = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) == 3 and fields[2] in _TAG_TYPES:
                freq[fields[0]] = int(fields[1])
    return freq


# --- the analyzer -----------------------------------------------------------------

# Tags punctuation and spaces get: x from both engines, m for "..." from jieba (its
# number pattern takes dots).
_SYMBOL_TAGS = frozenset(("x", "m"))


class TextAnalyzer:
    """Entities and keywords of posts; build once per worker (slow), call per post.

    ``user_dict_paths``: jieba-format dictionaries (``word [freq] [tag]``) of terms
    to keep whole, added after the shipped ones; a term tagged ``nr``/``ns``/``nl``/
    ``nt``/``nz`` is also a name of that kind. ``stopword_paths``: extra keyword stop
    lists (one word a line), added to the shipped Weibo list. ``engine``: ``auto``,
    ``rjieba`` or ``jieba``. ``default_resources=False`` leaves out the shipped user
    dictionaries and stop names (the shipped keyword stop list always loads).
    """

    def __init__(
        self,
        user_dict_paths: Sequence[str | Path] = (),
        stopword_paths: Sequence[str | Path] = (),
        keyword_count: int = DEFAULT_KEYWORD_COUNT,
        engine: str = "auto",
        default_resources: bool = True,
    ) -> None:
        self.keyword_count = keyword_count
        self._engine = _make_engine(engine)
        self.engine = self._engine.name
        dict_paths = list(DEFAULT_USER_DICTS) if default_resources else []
        dict_paths += list(user_dict_paths)
        lexicon = {}
        for path in dict_paths:
            for entry in read_user_dict(path):
                self._engine.add_word(entry.word, entry.freq, entry.tag)
                entity_type = _TAG_TYPES.get(entry.tag or "")
                if entity_type is not None:
                    lexicon[entry.word] = entity_type
                else:
                    lexicon.pop(entry.word, None)
        stopwords = read_word_list(DEFAULT_STOPWORDS)
        for path in stopword_paths:
            stopwords |= read_word_list(path)
        self.stopwords = frozenset(stopwords)
        surnames, compound_surnames = read_surnames(DEFAULT_SURNAMES)
        use_model = default_resources and DEFAULT_ENTITY_MODEL.exists()
        self.rules = EntityRules(
            surnames=surnames,
            compound_surnames=compound_surnames,
            not_names=frozenset(read_word_list(DEFAULT_NOT_NAMES))
            if default_resources
            else frozenset(),
            lexicon=lexicon,
            places=frozenset(read_word_list(DEFAULT_PLACES)),
            name_freq=read_name_frequencies(_jieba_dict_path()),
            model=EntityModel.load(DEFAULT_ENTITY_MODEL) if use_model else None,
        )
        self.rules = self.rules._replace(starters=candidate_starters(self.rules))
        self.idf, self.default_idf = read_idf(_jieba_idf_path())
        self._keyword_cache: dict[str, str] = {}

    def tag(self, text: str, hashtags: Sequence[str] = ()) -> list[tuple[str, str]]:
        """Tagged word tokens of a cleaned text; hashtag texts stay one token each.

        Punctuation and whitespace tokens are dropped.
        """
        tag = self._engine.tag
        if not hashtags:
            return [
                token
                for token in tag(text)
                if token[1] not in _SYMBOL_TAGS or is_word(token[0])
            ]
        tokens: list[tuple[str, str]] = []
        for piece, protected in split_protected(text, hashtags):
            if protected:
                tagged = tag(piece)
                tokens.append(
                    (piece, tagged[0][1] if len(tagged) == 1 else TAG_HASHTAG)
                )
            else:
                tokens += [
                    token
                    for token in tag(piece)
                    if token[1] not in _SYMBOL_TAGS or is_word(token[0])
                ]
        return tokens

    def entities_and_keywords(
        self, text: str, hashtags: Sequence[str] = ()
    ) -> tuple[list[tuple[str, str]], list[str]]:
        """``([(entity, type), ...], keywords)`` of one raw post text."""
        if hashtags:
            hashtags = [normalize_topic(hashtag) for hashtag in hashtags]
        tokens = self.tag(clean_text(text), hashtags)
        entities = []
        seen = set()
        for name, entity_type in extract_entities(tokens, self.rules):
            name = normalize_topic(name)
            if name not in seen:
                seen.add(name)
                entities.append((name, entity_type))
        if _enabled(RULE_ACCOUNT, self.rules):
            for name in account_person_names(text, self.rules):
                if name not in seen:
                    seen.add(name)
                    entities.append((name, PERSON))
        keywords = score_keywords(
            tokens,
            self.idf,
            self.default_idf,
            self.stopwords,
            self.keyword_count,
            self._keyword_cache,
        )
        return entities, keywords

    def analyze(
        self, text: str, hashtags: Sequence[str] = ()
    ) -> tuple[list[str], list[str]]:
        """(entities, keywords) of one post, each normalized with normalize_topic,
        deduplicated, in order (entities by appearance, keywords by score)."""
        entities, keywords = self.entities_and_keywords(text, hashtags)
        return [name for name, _ in entities], keywords
