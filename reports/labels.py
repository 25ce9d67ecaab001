"""How a topic is shown to a reader, in charts and tables alike.

>>> topic_label("hashtag", "雅安地震"), topic_label("mention", "人民日报")
('#雅安地震#', '@人民日报')
>>> topic_label("keyword", "震感")
'震感 · 关键词'
"""

from schemas.topics import KIND_ENTITY, KIND_HASHTAG, KIND_KEYWORD, KIND_MENTION

KIND_LABELS = {
    KIND_HASHTAG: "#{}#",
    KIND_MENTION: "@{}",
    KIND_ENTITY: "{} · 实体",
    KIND_KEYWORD: "{} · 关键词",
}


def topic_label(kind: str, topic: str) -> str:
    """A topic as Weibo users write it (``#雅安地震#``, ``@人民日报``); entities and
    keywords carry their kind, as the same word can be both."""
    return KIND_LABELS.get(kind, "{}").format(topic)
