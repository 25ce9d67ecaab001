"""Hashtags, mentions and topic normalization: pure functions."""

import pytest

from transforms.topics import (
    extract_hashtags,
    extract_mentions,
    normalize_topic,
    repost_chain_names,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("#雅安地震# 为雅安祈福", ["雅安地震"]),
        ("转发 #Beam rocks", ["beam"]),
        ("#Beam #Flink together", ["beam", "flink"]),
        ("＃ＢＥＡＭ＃ full-width", ["beam"]),
        ("# 雅安地震 # spaces inside", ["雅安地震"]),
        ("#救救孩子##孩纸走好#", ["救救孩子", "孩纸走好"]),
        ("#热门微博# 再说 #热门微博#", ["热门微博"]),
        ("C# and page#top are not tags", []),
        ("http://t.cn/abc#frag", []),
        ("微博#话题#紧贴中文", ["话题"]),
        ("only one # sign", []),
        ("#Apache Beam# paired Latin", ["apache beam"]),
        ("@天蝎嗳yue#救救孩子#又一校园", ["救救孩子"]),
    ],
    ids=[
        "paired-weibo",
        "single-latin",
        "two-single-latin",
        "full-width",
        "trimmed",
        "adjacent-pairs",
        "repeated-once",
        "glued-to-word",
        "url-fragment",
        "glued-to-chinese",
        "lone-sign",
        "paired-latin-with-space",
        "after-latin-nickname",
    ],
)
def test_extract_hashtags(text, expected):
    assert extract_hashtags(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("同意 @人民日报 的看法", ["人民日报"]),
        ("推荐@程与败 的微博", ["程与败"]),
        ("@Bryan_Cheung 你好", ["bryan_cheung"]),
        ("说得好//@张三:转发微博", []),
        ("哈哈//@张三：全角冒号//@李四:再转", []),
        ("回复@王五:谢谢", ["王五"]),
        ("写信到 a.b@example.com", []),
        ("@丫丫妈妈0903 @丫丫妈妈0903", ["丫丫妈妈0903"]),
        ("看这个 @央视新闻 //@张三: @人民日报 也说了", ["央视新闻", "人民日报"]),
        ("//@永强的小博 昨天一兄弟言及金融三大板块", []),
    ],
    ids=[
        "chinese-name",
        "after-chinese-text",
        "latin-name-lowercased",
        "repost-chain",
        "fullwidth-colon-chain",
        "reply-is-a-mention",
        "email-is-not",
        "repeated-once",
        "mention-inside-chain-text",
        "real-chain-without-colon",
    ],
)
def test_extract_mentions(text, expected):
    assert extract_mentions(text) == expected


def test_repost_chain_names_in_order():
    assert repost_chain_names("好//@张三:转发//@李四：原文") == ["张三", "李四"]


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("  Beam ", "beam"),
        ("ＡＰＡＣＨＥ　Ｂｅａｍ", "apache beam"),
        ("雅安地震", "雅安地震"),
        ("a \t b", "a b"),
    ],
    ids=["trim-lower", "nfkc-fullwidth", "chinese-unchanged", "inner-whitespace"],
)
def test_normalize_topic(raw, expected):
    assert normalize_topic(raw) == expected
