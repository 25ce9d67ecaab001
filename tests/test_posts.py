"""Validation of input records: every rejection names its field and why."""

import pytest

from transforms.posts import InvalidPost, decode_json_line, parse_created_at, parse_post

KEY = b"test-key"
GOOD = {
    "id": "p1",
    "user_id": "u1",
    "created_at": "2012-09-11T11:34:22+08:00",
    "text": "你好",
}
EPOCH_US = 1_347_334_462_000_000  # 2012-09-11T03:34:22Z


@pytest.mark.parametrize(
    "value",
    [
        "2012-09-11T11:34:22+08:00",
        "2012-09-11T03:34:22Z",
        "2012-09-11T03:34:22.000+00:00",
        "2012-09-11t03:34:22z",
        "2012-09-11 11:34:22+08:00",
        "Tue Sep 11 11:34:22 +0800 2012",
        "tue sep 11 03:34:22 +0000 2012",
        "Mon Sep 10 23:34:22 -0400 2012",
        1_347_334_462,
        1_347_334_462_000,
        1_347_334_462.0,
    ],
    ids=[
        "iso-offset",
        "iso-z",
        "iso-fraction",
        "iso-lower-case",
        "iso-space",
        "weibo-api",
        "weibo-api-lower-case",
        "weibo-api-negative-offset",
        "epoch-seconds",
        "epoch-millis",
        "epoch-float",
    ],
)
def test_created_at_forms_agree(value):
    assert parse_created_at(value) == EPOCH_US


@pytest.mark.parametrize(
    "value, reason",
    [
        ("yesterday", "created_at: 'yesterday' is not ISO-8601 or epoch"),
        ("2012-09-11T11:34:22", "has no UTC offset"),
        ("1347334462", "is not ISO-8601 or epoch"),
        (True, "expected ISO-8601 or epoch, got boolean"),
        ([1], "got array"),
        (99, "outside 1990..2200"),
        ("Tue Sep 11 11:34:22 2012", "is not ISO-8601 or epoch"),
        ("Tue Sep 31 11:34:22 +0800 2012", "is not ISO-8601 or epoch"),
        ("Tue Sep 11 11:34:22 +0800 2012 extra", "is not ISO-8601 or epoch"),
        ("2012-09-11T03:34:22Z" + " " * 100, "is not ISO-8601 or epoch"),
    ],
    ids=[
        "words",
        "no-offset",
        "digits-as-string",
        "boolean",
        "array",
        "epoch-1970",
        "weibo-api-no-offset",
        "weibo-api-no-such-day",
        "weibo-api-trailing-words",
        "too-long",
    ],
)
def test_created_at_rejections_say_why(value, reason):
    with pytest.raises(InvalidPost, match=reason):
        parse_created_at(value)


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"id": None}, "id: missing"),
        ({"user_id": None}, "user_id: missing"),
        ({"text": None}, "text: missing"),
        ({"text": 5}, "text: expected a string, got int"),
        ({"id": ["x"]}, "id: expected a string or integer, got array"),
        ({"user_id": ""}, "user_id: empty string"),
        ({"likes": "many"}, "likes: expected an integer, got str"),
        (
            {"repost_of": {"id": 1}},
            "repost_of: expected a string or integer, got object",
        ),
        ({"source": 3}, "source: expected a string, got int"),
    ],
    ids=[
        "no-id",
        "no-user",
        "no-text",
        "text-int",
        "id-list",
        "user-empty",
        "likes-str",
        "repost-object",
        "source-int",
    ],
)
def test_parse_post_rejections(change, reason):
    record = {**GOOD, **change}
    record = {key: value for key, value in record.items() if value is not None}
    with pytest.raises(InvalidPost, match=reason):
        parse_post(record, KEY)


def test_parse_post_pseudonymizes_and_masks():
    post = parse_post({**GOOD, "user_id": 12345, "id": 7, "text": "打13812345678"}, KEY)
    assert post.id == "7"
    assert isinstance(post.author, int) and post.author != 12345
    assert "13812345678" not in post.text
    assert post.repost_of is None


@pytest.mark.parametrize(
    "line, reason",
    [
        (b"\n", "blank line"),
        (b"not json\n", "not valid JSON"),
        (b"[1, 2]\n", "got array"),
        (b'"text"\n', "got str"),
        (b"\xff\xfe{}\n", "not valid UTF-8"),
    ],
    ids=["blank", "garbage", "array", "string", "bad-utf8"],
)
def test_decode_json_line_rejections(line, reason):
    with pytest.raises(InvalidPost, match=reason):
        decode_json_line(line)


def test_decode_json_line_takes_huge_integers():
    assert (
        decode_json_line(b'{"id": 123456789012345678901234567890}')["id"]
        == 123456789012345678901234567890
    )
