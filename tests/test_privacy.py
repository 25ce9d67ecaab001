"""Personal information: masking in text, dead letters, pseudonyms and the key."""

import json
import os
import stat
import subprocess
import sys
import threading

import pytest

from tests.conftest import PROJECT
from transforms.extract import post_topics
from transforms.privacy import (
    PLACEHOLDER_ACCOUNT,
    PLACEHOLDER_BANK_CARD,
    PLACEHOLDER_EMAIL,
    PLACEHOLDER_ID_CARD,
    PLACEHOLDER_PHONE,
    PseudonymKeyError,
    create_key_file,
    is_bank_card,
    is_valid_id_card,
    is_valid_old_id_card,
    key_fingerprint,
    load_or_create_key,
    mask_dead_letter,
    mask_pii,
    mask_raw_line,
    passes_luhn,
    pseudonymize_to_int,
)

VALID_ID = "11010519491231002X"  # the GB 11643 standard's own example
ID_18 = "110101197701275795"
ID_15 = "110101770127579"
UNIONPAY = "6222000000000000004"


@pytest.mark.parametrize(
    "text, placeholder",
    [
        ("有线索请联系13812345678谢谢", PLACEHOLDER_PHONE),
        ("电话 +86 138-1234-5678", PLACEHOLDER_PHONE),
        ("电话 0086 138 1234 5678", PLACEHOLDER_PHONE),
        ("电话139.1234.5678", PLACEHOLDER_PHONE),
        ("电话 139 - 1234 - 5678", PLACEHOLDER_PHONE),
        ("电话１３９１２３４５６７８", PLACEHOLDER_PHONE),
        ("电话139\u00a01234\u00a05678", PLACEHOLDER_PHONE),
        ("电话139\u30001234\u30005678", PLACEHOLDER_PHONE),
        ("电话1\u200b3\u200c9\u200d1234\u20605678", PLACEHOLDER_PHONE),
        ("电话 1 3 9 1 2 3 4 5 6 7 8", PLACEHOLDER_PHONE),
        ("座机010-12345678", PLACEHOLDER_PHONE),
        ("座机(0755)12345678", PLACEHOLDER_PHONE),
        ("座机（０２１）１２３４５６７８", PLACEHOLDER_PHONE),
        ("座机02112345678", PLACEHOLDER_PHONE),
        ("兰州 0931-8123456", PLACEHOLDER_PHONE),
        ("开封 03785859666", PLACEHOLDER_PHONE),  # 7 local digits, as once written
        ("电话 +86 10 1234 5678", PLACEHOLDER_PHONE),
        (f"身份证{VALID_ID}", PLACEHOLDER_ID_CARD),
        (f"身份证{VALID_ID.lower()}", PLACEHOLDER_ID_CARD),
        (f"ID:no{ID_18}", PLACEHOLDER_ID_CARD),
        (f"身份证 {ID_18[:6]} {ID_18[6:14]} {ID_18[14:]}", PLACEHOLDER_ID_CARD),
        ("身份证" + "".join(chr(ord(c) + 0xFEE0) for c in ID_18), PLACEHOLDER_ID_CARD),
        (f"老身份证{ID_15}", PLACEHOLDER_ID_CARD),
        ("邮件 tip123@example.com 联系", PLACEHOLDER_EMAIL),
        ("ｚｈａｎｇｓａｎ＠ｅｘａｍｐｌｅ．ｃｏｍ", PLACEHOLDER_EMAIL),
        ("Mail: Zhang.San+weibo@Mail.Example.ORG.", PLACEHOLDER_EMAIL),
        ("写信给张三@例子.中国吧", PLACEHOLDER_EMAIL),
        ("müller@bücher.de", PLACEHOLDER_EMAIL),
        ("邮箱zhangsan@qq.com联系我", PLACEHOLDER_EMAIL),
        ("卡号4111111111111111", PLACEHOLDER_BANK_CARD),
        ("卡号 6222 0000 0000 0000 004", PLACEHOLDER_BANK_CARD),
        ('"\u5361\u53f7 6222000000000000004"', PLACEHOLDER_BANK_CARD),
        ("Amex 378282246310005", PLACEHOLDER_BANK_CARD),
        ("身份证440106661007203,手机", PLACEHOLDER_ID_CARD),
        ("JCB card 3530111333300000", PLACEHOLDER_BANK_CARD),
        ("MC 2221000000000009", PLACEHOLDER_BANK_CARD),
    ],
)
def test_mask_pii_masks_every_way_of_writing(text, placeholder):
    masked = mask_pii(text)
    assert placeholder in masked
    digits = "".join(char for char in masked if char.isdigit())
    assert len(digits) < 7, masked


def test_mask_pii_keeps_the_rest_of_the_text_as_written():
    text = "求助！电话１３９\u200b１２３４\u200b５６７８，地址：北京　朝阳，谢谢…"
    assert mask_pii(text) == "求助！电话<PHONE>，地址：北京　朝阳，谢谢…"


@pytest.mark.parametrize(
    "text",
    [
        "帖子 3518239452345678 号",
        "转发微博 3530111333300000",  # JCB-shaped, Luhn-valid: a post id here
        "订单号：4111111111111111",
        "身份证110105194912310021",  # bad checksum
        "2012年9月11日 20120911 2012-09-11 2012.09.11 10:30:00",
        "转发 1000 次",
        "ts=1700000000 1700000000123",
        "版本 v10.2.13.1034 iOS 17.1.2 18.9.6.14.90345",
        "价格 ¥12,345.00 或 1299 元",
        "QQ群 867718457535 编号 2345678901",
        "@人民日报 转发 user@localhost",
        "C# 与 F# 都行",
        "根生@刘刚剑@李涛@Lee.Green@李多钰",  # mentions, not an address
        "常凯淇爸爸(410494910) 2012-8-3 16:06:08",
    ],
)
def test_mask_pii_leaves_look_alikes(text):
    assert mask_pii(text) == text


def test_author_own_id_masked_as_a_whole_token():
    uid = "zhangsan1988weibo"
    assert mask_pii(f"我的账号 {uid}", uid) == f"我的账号 {PLACEHOLDER_ACCOUNT}"
    assert mask_pii("我的账号ＺＨＡＮＧＳＡＮ1988weibo", uid) == (
        f"我的账号{PLACEHOLDER_ACCOUNT}"
    )
    assert mask_pii(f"{uid}x is someone else", uid) == f"{uid}x is someone else"
    # Short ids are not looked for: "a" stays an article.
    assert mask_pii("a cat", "a") == "a cat"


def test_placeholders_never_become_topics():
    kinds = ("hashtag", "mention")
    assert post_topics(mask_pii("#＃１３９１２３４５６７８＃"), kinds) == ()
    assert post_topics("#<IDCARD># @<EMAIL> #<phone>#", kinds) == ()
    assert post_topics(mask_pii("#报警13912345678#"), kinds) == (("hashtag", "报警"),)


def test_masking_is_linear_on_adversarial_input():
    """Inputs that make backtracking patterns quadratic finish (no timing: the
    benchmark prints how long they take)."""
    assert mask_pii("1 " + "a" * 1_000_000).endswith("a")
    assert "<" not in mask_pii("a@" * 500_000)
    assert mask_pii("a" * 1_000_000 + "@") == "a" * 1_000_000 + "@"
    assert mask_pii("1" * 1_000_000) == "1" * 1_000_000
    assert mask_pii("9." * 20_000) == "9." * 20_000
    raw = '{"user_id": "' + "\\u0031" * 150_000
    assert "<masked>" in mask_dead_letter(raw, "")[0]


def test_checks():
    assert is_valid_id_card(VALID_ID)
    assert not is_valid_id_card(VALID_ID[:-1] + "1")
    assert not is_valid_id_card("00" + VALID_ID[2:])  # no such province
    assert is_valid_old_id_card(ID_15)
    assert not is_valid_old_id_card("110101771327579")  # month 13
    assert passes_luhn("4111111111111111")
    assert not passes_luhn("4111111111111112")
    assert is_bank_card(UNIONPAY)
    assert not is_bank_card("1111111111111117")  # Luhn-valid, no issuer
    assert not is_bank_card("3530111333300000", grouped=False, context="帖子")
    assert is_bank_card("3530111333300000", grouped=True)


# Dead letters ---------------------------------------------------------------


def _no_digits_of(secret: str, text: str) -> bool:
    return secret not in "".join(char for char in text if char.isdigit() or char == "X")


def test_dead_letter_with_escaped_json():
    record = {
        "id": "1",
        "user_id": "zhangsan1988weibo",
        "created_at": "2012-09-11 11:34:22",
        "text": f"我的账号 zhangsan1988weibo\n{ID_18} 卡号 {UNIONPAY}",
    }
    line = json.dumps(record)  # \uXXXX escapes and \n before the ID number
    raw, error = mask_dead_letter(line, "created_at: no UTC offset")
    assert "zhangsan1988weibo" not in raw
    assert _no_digits_of(ID_18, raw) and _no_digits_of(UNIONPAY, raw)
    assert json.loads(raw)["created_at"] == "2012-09-11 11:34:22"


def test_dead_letter_undecodable_with_escapes():
    digits = "".join(f"\\u{ord(char):04x}" for char in "13912345678")
    line = (
        '{"id": 1, "user_id": "u-zz9988", "text": "\\n' + ID_18 + " " + digits + " "
        '\\u5361\\u53f7 6222 0000 0000 0000 004", broken'
    )
    raw, _ = mask_dead_letter(line, "not valid JSON")
    assert "zz9988" not in raw and ID_18 not in raw
    assert "\\u0031\\u0033\\u0039" not in raw
    assert "6222 0000" not in raw
    assert '"user_id": "<masked>"' in raw


@pytest.mark.parametrize(
    "line",
    [
        "{'id': 1, 'user_id': 'zz9988', 'created_at': 'x'}",
        '{"id": 1, "user_id": {"v": "zz9988"}, "created_at": "x"}',
        '{"id": 1, "user_id": 99887766, "created_at": "x"}',
        '{"id": 1, "user_id": {"v": "zz9988"}, "created_at": "x", broken',
    ],
    ids=["python-repr", "object", "number", "object-undecodable"],
)
def test_dead_letter_user_id_of_any_form(line):
    raw, _ = mask_dead_letter(line, "")
    assert "zz9988" not in raw and "99887766" not in raw
    assert "<masked>" in raw


def test_dead_letter_of_a_parquet_row():
    import datetime

    row = {
        "id": 7,
        "user_id": 99887766,
        "created_at": datetime.datetime(2012, 9, 11, 11, 34),  # naive: rejected
        "text": "电话 139-1234-5678，我是99887766",
    }
    raw, _ = mask_dead_letter(row, "created_at: no UTC offset")
    assert "99887766" not in raw and "5678" not in raw
    assert json.loads(raw)["created_at"] == "2012-09-11 11:34:00"


def test_dead_letter_short_user_id_does_not_garble_the_line():
    line = '{"id": "a1", "user_id": "a", "created_at": "2012-09-11 11:34:22", '
    line += '"text": "a cat and a dog"}'
    raw, _ = mask_dead_letter(line, "created_at: no offset")
    record = json.loads(raw)
    assert record["user_id"] == "<masked>"
    assert record["text"] == "a cat and a dog"
    assert record["created_at"] == "2012-09-11 11:34:22"


def test_dead_letter_reason_holds_no_value():
    line = json.dumps({"user_id": "zz9988", "created_at": "电话13912345678"})
    _, error = mask_dead_letter(line, "created_at: '电话13912345678' is not ISO-8601")
    assert "13912345678" not in error
    _, error = mask_dead_letter(line, "created_at: '身份证号11010119770127...'")
    assert "11010119770127" not in error
    _, error = mask_dead_letter(line, "user zz9988 rejected")
    assert "zz9988" not in error


def test_mask_raw_line_cuts_after_masking():
    raw = '{"id": 1, "user_id": "u12345", "text": "call 13812345678", broken'
    masked = mask_raw_line(raw, max_chars=10_000)
    assert "u12345" not in masked and "13812345678" not in masked
    assert mask_raw_line(raw, max_chars=20) == masked[:20]


# Pseudonyms and keys ----------------------------------------------------------


def test_pseudonym_is_keyed_and_stable():
    assert pseudonymize_to_int("u1", b"k1") == pseudonymize_to_int("u1", b"k1")
    assert pseudonymize_to_int("u1", b"k1") != pseudonymize_to_int("u1", b"k2")
    assert pseudonymize_to_int("u1", b"k1") != pseudonymize_to_int("u2", b"k1")
    assert -(2**63) <= pseudonymize_to_int("u1", b"k1") < 2**63


def test_fingerprint_names_the_key_without_revealing_it():
    key = bytes(range(32))
    assert key_fingerprint(key) == key_fingerprint(bytes(range(32)))
    assert key_fingerprint(key) != key_fingerprint(bytes(range(1, 33)))
    assert len(key_fingerprint(key)) == 16
    assert key.hex()[:16] not in key_fingerprint(key)


@pytest.fixture
def no_key_env(monkeypatch):
    monkeypatch.delenv("YUQING_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("YUQING_PSEUDONYM_KEY_FILE", raising=False)


def test_key_file_created_once_owner_only(tmp_path, no_key_env):
    path = tmp_path / "keys" / "pseudonym.key"
    first = load_or_create_key(str(path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_key(str(path)) == first
    assert len(first) == 32
    assert [entry.name for entry in path.parent.iterdir()] == ["pseudonym.key"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "empty"),
        ("  \n\t ", "empty"),
        ("ab" * 8, "8 bytes"),
        ("password" * 8, "not hex"),
    ],
    ids=["empty", "whitespace", "short", "not-hex"],
)
def test_weak_key_file_refused(tmp_path, no_key_env, content, message):
    path = tmp_path / "pseudonym.key"
    path.write_text(content)
    with pytest.raises(PseudonymKeyError, match=message) as raised:
        load_or_create_key(str(path))
    assert "\n" not in str(raised.value)
    assert path.read_text() == content  # never silently replaced


def test_key_file_that_cannot_be_created_is_a_key_error(tmp_path, no_key_env):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(PseudonymKeyError, match="cannot create"):
        load_or_create_key(str(blocker / "pseudonym.key"))


@pytest.mark.parametrize("value", ["", "   ", "password", "ab" * 31])
def test_weak_key_in_environment_refused(monkeypatch, value):
    monkeypatch.setenv("YUQING_PSEUDONYM_KEY", value)
    with pytest.raises(PseudonymKeyError):
        load_or_create_key()


def test_command_line_key_file_wins_over_environment(tmp_path, monkeypatch):
    path = tmp_path / "cli.key"
    path.write_text("cd" * 32 + "\n")
    monkeypatch.setenv("YUQING_PSEUDONYM_KEY", "ab" * 32)
    assert load_or_create_key(str(path)) == bytes.fromhex("cd" * 32)
    assert load_or_create_key(None) == bytes.fromhex("ab" * 32)


def test_environment_key_wins_over_environment_key_file(tmp_path, monkeypatch):
    path = tmp_path / "env.key"
    path.write_text("cd" * 32)
    monkeypatch.setenv("YUQING_PSEUDONYM_KEY_FILE", str(path))
    monkeypatch.setenv("YUQING_PSEUDONYM_KEY", "ab" * 32)
    assert load_or_create_key() == bytes.fromhex("ab" * 32)
    monkeypatch.delenv("YUQING_PSEUDONYM_KEY")
    assert load_or_create_key() == bytes.fromhex("cd" * 32)


def test_concurrent_first_creation_agrees_threads(tmp_path):
    path = tmp_path / "pseudonym.key"
    keys, errors = [], []
    start = threading.Barrier(32)

    def first_run():
        start.wait()
        try:
            create_key_file(path)
            keys.append(path.read_text())
        except Exception as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=first_run) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(set(keys)) == 1 and len(keys[0].strip()) == 64


def test_concurrent_first_creation_agrees_processes(tmp_path):
    path = tmp_path / "sub" / "pseudonym.key"
    script = (
        "import sys; from transforms.privacy import load_or_create_key; "
        "print(load_or_create_key(sys.argv[1]).hex())"
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("YUQING_PSEUDONYM")
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(path)],
            cwd=PROJECT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(24)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert all(process.returncode == 0 for process in processes), outputs
    keys = {stdout.strip() for stdout, _ in outputs}
    assert len(keys) == 1 and len(keys.pop()) == 64
