"""Named entities of a tagged post: candidates, merge rules and a small model.

Candidates come from part-of-speech tags, merge rules (surname + given name, name +
organisation ending...), a user dictionary of names and a gazetteer of places; a
small logistic model trained on WeiboNER train (``benchmarks/build_lexicon.py``;
features: the rule, tags, words and characters around the candidate) keeps or drops
them. Types PER, ORG, GPE, LOC. Name F1 on WeiboNER dev:
``benchmarks/entity_scores.json``.

    >>> extract_entities([("成都", "ns"), ("和", "c"), ("重庆", "ns")])
    [('成都', 'GPE'), ('重庆', 'GPE')]
    >>> rules = EntityRules(surnames=frozenset("赵"))
    >>> extract_entities([("赵", "nr"), ("新民", "nr"), ("说", "v")], rules)
    [('赵新民', 'PER')]
"""

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from schemas.topics import normalize_topic
from transforms.text.cleaning import is_number
from transforms.text.tags import (
    GEOPOLITICAL,
    LOCATION,
    NAME_TAG_TYPES,
    ORGANISATION,
    PERSON,
)
from transforms.topics import extract_mentions, repost_chain_names

# A Han character: a name part is Chinese.
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")

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
    entity_type = rules.lexicon.get(word) or NAME_TAG_TYPES.get(tag)
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
        or not rule_enabled(RULE_TRIM, rules)
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


def rule_enabled(rule: str, rules: EntityRules) -> bool:
    """Whether ``rules`` leave candidate rule ``rule`` on (see ``disabled``)."""
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
        and not is_number(name)
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
    WeiboNER annotates them as PER.
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
_START_TAGS = frozenset(NAME_TAG_TYPES) | {"eng", "j"}
