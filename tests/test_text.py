"""Chinese text analysis: cleaning, tagging, entities, keywords, engines.

Examples are real Weibo snippets (the cascades file under ../shared/data, and
WeiboNER train for the repost chains that file lacks) unless marked otherwise.
"""

import gzip
import itertools
import json
import unicodedata

import pytest

from tests.conftest import CASCADES, needs_shared
from transforms import text as text_module
from transforms.text import (
    EntityRules,
    TextAnalyzer,
    account_person_names,
    available_engines,
    clean_text,
    extract_entities,
    read_user_dict,
    score_keywords,
    split_protected,
)

ENGINES = available_engines()


@pytest.fixture(scope="module")
def analyzers() -> dict[str, TextAnalyzer]:
    """One analyzer per installed engine, built once (building is the slow part)."""
    return {engine: TextAnalyzer(engine=engine) for engine in ENGINES}


@pytest.fixture(scope="module")
def analyzer(analyzers) -> TextAnalyzer:
    return analyzers[ENGINES[0]]


@pytest.fixture(params=ENGINES)
def each_engine(request, analyzers) -> TextAnalyzer:
    return analyzers[request.param]


# --- cleaning ---------------------------------------------------------------------

CLEANING = [
    pytest.param(
        "因为2块钱，特警暴打司机，随即被司机一招KO！！貌似死了。http://t.cn/zlznn1p",
        "因为2块钱,特警暴打司机,随即被司机一招KO!!貌似死了。",
        id="t.cn-url",
    ),
    pytest.param("他可是一个孩子 http:", "他可是一个孩子", id="truncated-url"),
    pytest.param(
        "原来洗衣粉广告也可以这么唯美——SKIP《黑白篇》。http://t.cn/zW52qtd  ",
        "原来洗衣粉广告也可以这么唯美——SKIP《黑白篇》。",
        id="url-then-spaces",
    ),
    pytest.param(
        "我去你大爷的宁波妇儿医院！[泪]", "我去你大爷的宁波妇儿医院!", id="emoticon"
    ),
    pytest.param(
        "[泪] 有麻麻陪伴，天堂不孤单！", "有麻麻陪伴,天堂不孤单!", id="emoticon-first"
    ),
    pytest.param(
        "//@吉猪陈锐忠://@Norman_小牛总冠军://@吉珠益达男:是朋友就转啊[害羞]",
        "是朋友就转啊",
        id="repost-chain-ascii-colon",
    ),
    pytest.param(
        # The same chain with full-width colons, as Weibo's mobile clients write it.
        "//@吉猪陈锐忠：//@吉珠益达男：是朋友就转啊",
        "是朋友就转啊",
        id="repost-chain-fullwidth-colon",
    ),
    pytest.param(
        "//@永强的小博 昨天一兄弟言及金融三大板块银行证券保险",
        "昨天一兄弟言及金融三大板块银行证券保险",
        id="repost-chain-no-colon",
    ),
    pytest.param("@略懂Doctor @医生哥波子 @张友平医生", "", id="mentions-only"),
    pytest.param(
        "回复@Drle0:我也不想乱啊，有神马用呢[偷笑]",
        "回复 :我也不想乱啊,有神马用呢",
        id="reply-mention",
    ),
    pytest.param(
        "转发此微博就有机会获得 @l临沂沂蒙摄影 （沂蒙影社）提供的10元话费",
        "转发此微博就有机会获得 (沂蒙影社)提供的10元话费",
        id="mention-mid-text",
    ),
    pytest.param(
        # Masked by transforms.privacy before this module sees the text (made up).
        "有事打 <PHONE> 或发 <EMAIL>，卡号<BANKCARD>",
        "有事打 或发 ,卡号",
        id="pii-placeholders",
    ),
    pytest.param(
        "不看不知道有律师７６人[鼓掌]", "不看不知道有律师76人", id="nfkc-digits"
    ),
    pytest.param(
        "阿B要１２年后先至可以坐到去副驾驶呀。[吃惊]",
        "阿B要12年后先至可以坐到去副驾驶呀。",
        id="nfkc-mixed",
    ),
    pytest.param("ＬＩＮＥ　好用！", "LINE 好用!", id="nfkc-letters-and-space"),
    pytest.param(
        "这新闻来自www.ihateryanair.org,呵呵", "这新闻来自 呵呵", id="www-url"
    ),
    pytest.param(
        "与烟台木有关系的，见：www.fabianbrunsing.de/ 求积极转发帮助辟谣！",
        "与烟台木有关系的,见: 求积极转发帮助辟谣!",
        id="www-url-after-colon",
    ),
    pytest.param(
        "牌水饺被检出含有致病菌上海家乐福连夜下架&nbsp;&nbsp;思念公司回应",
        "牌水饺被检出含有致病菌上海家乐福连夜下架 思念公司回应",
        id="html-entity",
    ),
    pytest.param(
        # A bare ampersand is text, not an entity.
        "雷神教母。把忐忑发扬光大有助于全民提高R&B演唱水平。[威武]",
        "雷神教母。把忐忑发扬光大有助于全民提高R&B演唱水平。",
        id="ampersand-kept",
    ),
]


@pytest.mark.parametrize("raw, cleaned", CLEANING)
def test_clean_text(raw, cleaned):
    assert clean_text(raw) == cleaned


@pytest.mark.parametrize(
    "raw, gone",
    [
        pytest.param(
            "转发微博 http://t.cn/zTh24pG",
            {"http", "t.cn", "zTh24pG", "ztH24pg"},
            id="url",
        ),
        pytest.param("我去你大爷的宁波妇儿医院！[泪]", {"泪"}, id="emoticon"),
        pytest.param(
            "//@吉珠益达男:是朋友就转啊", {"吉珠益达男", "吉珠", "益达"}, id="chain"
        ),
        pytest.param(
            "@张友平医生 你好", {"张友平", "张友平医生", "医生"}, id="mention"
        ),
        pytest.param("call <PHONE> now", {"phone", "PHONE"}, id="placeholder"),
        pytest.param(
            "这新闻来自www.ihateryanair.org,呵呵",
            {"www", "ihateryanair", "org"},
            id="www-url",
        ),
        pytest.param(
            "也是变型利器哦~&nbsp;即刻型动赢500元京东券", {"nbsp"}, id="html-entity"
        ),
        pytest.param(
            "【重要提醒！花露水属易燃品】", {"【", "】", "!", "！"}, id="punctuation"
        ),
    ],
)
def test_removed_text_never_becomes_a_token(analyzer, raw, gone):
    words = {word for word, _ in analyzer.tag(clean_text(raw))}
    assert not words & gone
    entities, keywords = analyzer.analyze(raw)
    assert not (set(entities) | set(keywords)) & {word.lower() for word in gone}


def test_no_punctuation_tokens(each_engine):
    text = clean_text(
        "【微信收费标准】在工信部、运营商双重压力下……坚决反对收费！大力转!"
    )
    for word, _ in each_engine.tag(text):
        assert text_module.is_word(word), word


# --- NFKC folding -----------------------------------------------------------------

FULL_WIDTH_POSTS = [
    pytest.param("替ＨＴＣ做个广告", "htc", id="latin"),
    pytest.param(
        "ＢＩＧＢＡＮＧ实力不解释，都说了咱家有一大堆明星ＶＩＰ了么～",
        "bigbang",
        id="latin-long",
    ),
    pytest.param(
        "２０１０年我在南昌看到清洁工为了涨薪水把南昌大桥也堵了。",
        "南昌",
        id="digits",
    ),
]


@pytest.mark.parametrize("post, topic", FULL_WIDTH_POSTS)
def test_full_and_half_width_forms_give_the_same_topics(each_engine, post, topic):
    folded = unicodedata.normalize("NFKC", post)
    assert folded != post
    entities, keywords = each_engine.analyze(post)
    assert (entities, keywords) == each_engine.analyze(folded)
    assert topic in entities + keywords


def test_word_lists_are_folded_like_the_text(tmp_path):
    # Full-width entries in a user's lists match the half-width text, and back.
    user_dict = tmp_path / "names.txt"
    user_dict.write_text("宁波妇儿医院 nt\nＢＩＧＢＡＮＧ nt\n", encoding="utf-8")
    stop_list = tmp_path / "stop.txt"
    stop_list.write_text("广告\nＨＴＣ\n", encoding="utf-8")
    analyzer = TextAnalyzer(user_dict_paths=[user_dict], stopword_paths=[stop_list])
    # The tag comes from the user dictionary: its full-width entry was folded.
    assert ("BIGBANG", "nt") in analyzer.tag(clean_text("BIGBANG实力不解释"))
    _, keywords = analyzer.analyze("替ＨＴＣ做个广告")
    assert not {"htc", "广告"} & set(keywords)


# --- hashtags and user dictionaries -----------------------------------------------


@pytest.mark.parametrize(
    "text, hashtags",
    [
        pytest.param(
            "#救救孩子#又一校园悲剧！[蜡烛]师德呢？", ["救救孩子"], id="weibo-pair"
        ),
        pytest.param(
            "#雅安地震# 成都和重庆都有震感 #雅安地震#", ["雅安地震"], id="twice"
        ),
        pytest.param(
            "#让红包飞#都说新年短信祝福已经out了", ["让红包飞"], id="verb-phrase"
        ),
        pytest.param("＃ＢＥＡＭ＃ rocks", ["beam"], id="fullwidth-latin"),
    ],
)
def test_hashtag_words_stay_whole(each_engine, text, hashtags):
    tokens = each_engine.tag(clean_text(text), hashtags)
    words = [word.lower() for word, _ in tokens]
    for hashtag in hashtags:
        assert hashtag in words
    _, keywords = each_engine.analyze(text, hashtags)
    assert hashtags[0] in keywords


def test_split_protected_prefers_longer_terms():
    assert split_protected("我爱雅安地震救援", ["雅安", "雅安地震"]) == [
        ("我爱", False),
        ("雅安地震", True),
        ("救援", False),
    ]


def test_user_dictionary_keeps_terms_whole(tmp_path, each_engine):
    path = tmp_path / "topics.txt"
    path.write_text(
        "# frequent topic terms\n妇儿医院 nt\n花露水易燃 5\n", encoding="utf-8"
    )
    assert read_user_dict(path) == [("妇儿医院", None, "nt"), ("花露水易燃", 5, None)]
    analyzer = TextAnalyzer(user_dict_paths=[path], engine=each_engine.engine)
    words = [word for word, _ in analyzer.tag("宁波妇儿医院说花露水易燃")]
    assert "妇儿医院" in words and "花露水易燃" in words


# --- keywords ---------------------------------------------------------------------

WEIBO_BOILERPLATE = ["转发微博", "回复", "网页链接", "分享图片", "微博", "视频", "转发"]


@pytest.mark.parametrize("stopword", WEIBO_BOILERPLATE)
def test_weibo_boilerplate_is_a_stop_word(analyzer, stopword):
    assert stopword in analyzer.stopwords
    _, keywords = analyzer.analyze(f"{stopword} {stopword} 宁波妇儿医院跳楼 {stopword}")
    assert stopword not in keywords


@needs_shared(CASCADES)
def test_stop_words_never_surface_as_keywords_on_real_posts(analyzer):
    with gzip.open(CASCADES, "rt", encoding="utf-8") as handle:
        lines = itertools.islice(handle, 3000)
        texts = [json.loads(line)["text"] for line in lines]
    found_any = False
    for text in texts:
        _, keywords = analyzer.analyze(text)
        assert len(keywords) <= analyzer.keyword_count
        assert not set(keywords) & analyzer.stopwords, text
        found_any = found_any or bool(keywords)
    assert found_any


def test_keyword_scoring_is_tf_idf():
    tokens = [("地震", "n"), ("的", "uj"), ("雅安", "ns"), ("地震", "n"), ("今天", "t")]
    idf = {"地震": 5.0, "雅安": 9.0, "今天": 2.0}
    assert score_keywords(tokens, idf, 7.0, frozenset(), count=5) == ["地震", "雅安"]
    assert score_keywords(tokens, idf, 7.0, frozenset({"地震"}), count=5) == ["雅安"]
    assert score_keywords(tokens, idf, 7.0, frozenset(), count=1) == ["地震"]


def test_unknown_glued_words_need_support():
    # 完别 is an HMM guess across a word boundary: unknown to the IDF table.
    tokens = [("完别", "v"), ("花露水", "n"), ("小马哥", "nr")]
    keywords = score_keywords(tokens, {"花露水": 9.0}, 7.0, frozenset(), count=5)
    assert keywords == ["花露水", "小马哥"]


def test_keyword_count_is_configurable():
    text = "宁波妇儿医院一妇女携带婴儿在住院楼跳楼，抢救无效死亡，医疗费用昂贵"
    analyzer = TextAnalyzer(keyword_count=2)
    assert len(analyzer.analyze(text)[1]) == 2


# --- entities ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param(
            "我去你大爷的宁波妇儿医院！[泪]", {"宁波妇儿医院"}, id="organisation-ending"
        ),
        pytest.param("回杭州就快要一年了", {"杭州"}, id="place"),
        pytest.param(
            "今天和张先生去北京看了刘德华的演唱会",
            {"张先生", "北京", "刘德华"},
            id="mixed",
        ),
    ],
)
def test_entities_of_simple_sentences(each_engine, text, expected):
    entities, _ = each_engine.analyze(text)
    assert expected <= set(entities)


def test_entities_are_normalized_and_deduplicated(analyzer):
    entities, _ = analyzer.analyze("北京，北京！ＮＢＡ在北京")
    assert entities.count("北京") == 1
    assert all(entity == entity.strip().lower() for entity in entities)


def test_accounts_under_a_persons_name_become_entities(analyzer):
    # Real WeiboNER posts: a repost chain of named accounts, and nicknames.
    chain = "//@任志强:故意？//@段钢:1、毒剂是从哪里买的？以什么理由买的？"
    entities, _ = analyzer.entities_and_keywords(chain)
    assert ("任志强", "PER") in entities and ("段钢", "PER") in entities
    nicknames = (
        "//@陳冠希Uncle:哈哈哈哈//@含国第一帅逼:哈哈哈哈//@奇葩小师妹:哈 @Chicken_翼"
    )
    assert account_person_names(nicknames, analyzer.rules) == []
    assert account_person_names(
        "我參加了票選，@彭于晏，誰是你心目中年度最佳藝人呢？", analyzer.rules
    ) == ["彭于晏"]


def test_stop_names_and_single_characters_are_dropped():
    tokens = [("宝宝", "nr"), ("王", "nr"), ("中国", "ns"), ("12", "m")]
    rules = EntityRules(not_names=frozenset({"宝宝"}))
    assert extract_entities(tokens, rules) == [("中国", "GPE")]


@pytest.mark.parametrize(
    "tokens, expected",
    [
        pytest.param(
            [("赵", "nr"), ("新民", "n"), ("说", "v")],
            [("赵新民", "PER")],
            id="surname",
        ),
        pytest.param([("张", "q"), ("先生", "n")], [("张先生", "PER")], id="title"),
        pytest.param(
            [("宁波", "ns"), ("妇儿", "n"), ("医院", "n")],
            [("宁波妇儿医院", "ORG")],
            id="org",
        ),
        pytest.param([("东营", "ns"), ("区", "n")], [("东营区", "GPE")], id="place"),
        pytest.param(
            [("朝阳", "ns"), ("公园", "n")], [("朝阳公园", "LOC")], id="location"
        ),
    ],
)
def test_merge_rules(tokens, expected):
    rules = EntityRules(surnames=frozenset("赵张"))
    assert extract_entities(tokens, rules) == expected


# --- engines ----------------------------------------------------------------------

AGREEMENT_SENTENCES = [
    "人间惨剧：今天下午约14点，宁波妇儿医院，一妇女携带一婴儿在住院楼跳楼",
    "在工信部、运营商双重压力下，小马哥终没顶住，微信收费将于7月1日开始",
    "回杭州就快要一年了，我也常常会想起那段让我热泪盈眶的日子",
]
both_engines = pytest.mark.skipif(
    not {"rjieba", "jieba"} <= set(ENGINES),
    reason="needs both rjieba and jieba installed",
)


@both_engines
@pytest.mark.parametrize(
    "sentence", AGREEMENT_SENTENCES, ids=["hospital", "wechat", "hangzhou"]
)
def test_engines_cut_alike(sentence):
    import jieba
    import rjieba

    text = clean_text(sentence)
    assert rjieba.Jieba().cut(text) == jieba.Tokenizer().lcut(text)


@both_engines
@pytest.mark.parametrize(
    "sentence", AGREEMENT_SENTENCES[::2], ids=["hospital", "hangzhou"]
)
@pytest.mark.parametrize("engine", ["rjieba", "hybrid"])
def test_engines_agree_on_topics(analyzers, engine, sentence):
    assert analyzers[engine].analyze(sentence) == analyzers["jieba"].analyze(sentence)


@both_engines
def test_engines_differ_where_jieba_posseg_resegments(analyzers):
    # jieba.posseg cuts unknown stretches with its own POS-HMM: 工信/部, not 工信部.
    sentence = AGREEMENT_SENTENCES[1]
    assert "工信部" in analyzers["rjieba"].analyze(sentence)[1]
    assert "工信" in analyzers["jieba"].analyze(sentence)[1]


@both_engines
def test_hybrid_follows_jieba_on_unknown_names(analyzers):
    text = "恭喜发财,红包拿来寻龙记"  # WeiboNER train
    assert ("寻龙记", "nr") in analyzers["rjieba"].tag(text)
    assert ("寻龙", "nr") in analyzers["hybrid"].tag(text)
    assert ("寻龙", "nr") in analyzers["jieba"].tag(text)


def test_auto_engine_is_the_fastest_available(analyzer):
    assert analyzer.engine == TextAnalyzer().engine == ENGINES[0]


def test_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="engine"):
        TextAnalyzer(engine="thulac")
