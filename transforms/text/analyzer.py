"""The text analyzer: one object that owns the segmenter and turns a post into its
entities and keywords.

A Beam DoFn builds one ``TextAnalyzer`` in ``setup()`` (loading dictionaries is the
slow part) and calls ``analyze`` per post: one tagging pass feeds both the entities
and the keywords.

    >>> analyzer = TextAnalyzer()
    >>> analyzer.analyze("#雅安地震# 成都和重庆都有震感", hashtags=["雅安地震"])
    (['成都', '重庆'], ['震感', '雅安地震', '成都', '重庆'])
"""

from collections.abc import Sequence
from pathlib import Path

from schemas.topics import normalize_topic
from transforms.text.cleaning import clean_text, is_word, split_protected
from transforms.text.engines import make_engine
from transforms.text.entities import (
    RULE_ACCOUNT,
    EntityModel,
    EntityRules,
    account_person_names,
    candidate_starters,
    extract_entities,
    rule_enabled,
)
from transforms.text.keywords import DEFAULT_KEYWORD_COUNT, score_keywords
from transforms.text.lexicon import (
    DEFAULT_ENTITY_MODEL,
    DEFAULT_NOT_NAMES,
    DEFAULT_PLACES,
    DEFAULT_STOPWORDS,
    DEFAULT_SURNAMES,
    DEFAULT_USER_DICTS,
    jieba_dict_path,
    jieba_idf_path,
    read_idf,
    read_name_frequencies,
    read_surnames,
    read_user_dict,
    read_word_list,
)
from transforms.text.tags import NAME_TAG_TYPES, PERSON, TAG_HASHTAG

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
        self._engine = make_engine(engine)
        self.engine = self._engine.name
        dict_paths = list(DEFAULT_USER_DICTS) if default_resources else []
        dict_paths += list(user_dict_paths)
        lexicon = {}
        for path in dict_paths:
            for entry in read_user_dict(path):
                self._engine.add_word(entry.word, entry.freq, entry.tag)
                entity_type = NAME_TAG_TYPES.get(entry.tag or "")
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
            name_freq=read_name_frequencies(jieba_dict_path()),
            model=EntityModel.load(DEFAULT_ENTITY_MODEL) if use_model else None,
        )
        self.rules = self.rules._replace(starters=candidate_starters(self.rules))
        self.idf, self.default_idf = read_idf(jieba_idf_path())
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
        if rule_enabled(RULE_ACCOUNT, self.rules):
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
