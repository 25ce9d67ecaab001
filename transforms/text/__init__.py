"""Chinese text understanding: cleaning, segmentation, entities and keywords.

One module per step, each importable alone; this package gathers their public names,
so ``from transforms.text import TextAnalyzer`` is the usual way in:

- ``cleaning``: ``clean_text`` (NFKC, then URLs, ``[emoticons]``, ``//@name:``
  repost marks, ``@mentions`` and masked-PII placeholders out; punctuation tokens
  are dropped later) and the token tests shared by entities and keywords;
- ``tags``: jieba's part-of-speech tags this package reads, and entity types;
- ``lexicon``: the shipped word resources (``transforms/resources/``) and readers;
- ``engines``: ``rjieba`` (the default), ``jieba`` and ``hybrid`` taggers;
- ``entities``: ``extract_entities``, candidates kept or dropped by a small model;
- ``keywords``: ``score_keywords``, TF-IDF with jieba's IDF table;
- ``analyzer``: ``TextAnalyzer``, which a Beam DoFn builds once per worker.

Entity scores on WeiboNER and agreement and speed per engine:
``python benchmarks/eval_entities.py`` (see docs/text-analysis.md).
"""

from transforms.text.analyzer import TextAnalyzer
from transforms.text.cleaning import clean_text, is_number, is_word, split_protected
from transforms.text.engines import ENGINES, available_engines, make_engine
from transforms.text.entities import (
    RULE_ABBREVIATION,
    RULE_ACCOUNT,
    RULE_GAZETTEER,
    RULE_GIVEN,
    RULE_LATIN,
    RULE_LEXICON,
    RULE_LOCATION,
    RULE_ORGANISATION,
    RULE_PLACE,
    RULE_PREFIX,
    RULE_SURNAME,
    RULE_TAG,
    RULE_TITLE,
    RULE_TRIM,
    Candidate,
    EntityModel,
    EntityRules,
    account_person_names,
    candidate_features,
    candidate_score,
    candidate_starters,
    entity_candidates,
    extract_entities,
    is_person_like_account,
    rule_enabled,
)
from transforms.text.keywords import (
    DEFAULT_KEYWORD_COUNT,
    KEYWORD_TAGS,
    score_keywords,
)
from transforms.text.lexicon import (
    DEFAULT_ENTITY_MODEL,
    DEFAULT_NOT_NAMES,
    DEFAULT_PLACES,
    DEFAULT_STOPWORDS,
    DEFAULT_SURNAMES,
    DEFAULT_USER_DICTS,
    RESOURCES,
    DictEntry,
    jieba_dict_path,
    jieba_idf_path,
    read_idf,
    read_name_frequencies,
    read_surnames,
    read_user_dict,
    read_word_list,
)
from transforms.text.tags import (
    ENTITY_TYPES,
    GEOPOLITICAL,
    LOCATION,
    NAME_TAG_TYPES,
    ORGANISATION,
    PERSON,
    TAG_HASHTAG,
)

__all__ = [
    "DEFAULT_ENTITY_MODEL",
    "DEFAULT_KEYWORD_COUNT",
    "DEFAULT_NOT_NAMES",
    "DEFAULT_PLACES",
    "DEFAULT_STOPWORDS",
    "DEFAULT_SURNAMES",
    "DEFAULT_USER_DICTS",
    "ENGINES",
    "ENTITY_TYPES",
    "GEOPOLITICAL",
    "KEYWORD_TAGS",
    "LOCATION",
    "NAME_TAG_TYPES",
    "ORGANISATION",
    "PERSON",
    "RESOURCES",
    "RULE_ABBREVIATION",
    "RULE_ACCOUNT",
    "RULE_GAZETTEER",
    "RULE_GIVEN",
    "RULE_LATIN",
    "RULE_LEXICON",
    "RULE_LOCATION",
    "RULE_ORGANISATION",
    "RULE_PLACE",
    "RULE_PREFIX",
    "RULE_SURNAME",
    "RULE_TAG",
    "RULE_TITLE",
    "RULE_TRIM",
    "TAG_HASHTAG",
    "Candidate",
    "DictEntry",
    "EntityModel",
    "EntityRules",
    "TextAnalyzer",
    "account_person_names",
    "available_engines",
    "candidate_features",
    "candidate_score",
    "candidate_starters",
    "clean_text",
    "entity_candidates",
    "extract_entities",
    "is_number",
    "is_person_like_account",
    "is_word",
    "jieba_dict_path",
    "jieba_idf_path",
    "make_engine",
    "read_idf",
    "read_name_frequencies",
    "read_surnames",
    "read_user_dict",
    "read_word_list",
    "rule_enabled",
    "score_keywords",
    "split_protected",
]
