"""Personal information: masking, checksums, pseudonyms and the key file."""

import os
import stat

import pytest

from transforms.privacy import (
    PLACEHOLDER_BANK_CARD,
    PLACEHOLDER_EMAIL,
    PLACEHOLDER_ID_CARD,
    PLACEHOLDER_PHONE,
    is_valid_id_card,
    load_or_create_key,
    mask_pii,
    mask_raw_line,
    passes_luhn,
    pseudonymize_to_int,
)

VALID_ID = "11010519491231002X"  # the GB 11643 standard's own example


@pytest.mark.parametrize(
    "text, secret, placeholder",
    [
        ("有线索请联系13812345678谢谢", "13812345678", PLACEHOLDER_PHONE),
        ("电话 +86 138-1234-5678", "138-1234-5678", PLACEHOLDER_PHONE),
        ("座机010-12345678", "010-12345678", PLACEHOLDER_PHONE),
        ("座机(0755)1234567", "1234567", PLACEHOLDER_PHONE),
        ("座机02112345678", "02112345678", PLACEHOLDER_PHONE),
        (f"身份证{VALID_ID}", VALID_ID, PLACEHOLDER_ID_CARD),
        ("邮件 tip123@example.com 联系", "tip123@example.com", PLACEHOLDER_EMAIL),
        ("卡号4111111111111111", "4111111111111111", PLACEHOLDER_BANK_CARD),
        (
            "卡号 6222 0000 0000 0000 004",
            "6222 0000 0000 0000 004",
            PLACEHOLDER_BANK_CARD,
        ),
    ],
    ids=[
        "mobile",
        "mobile-+86-dashed",
        "landline-dash",
        "landline-parens",
        "landline-run",
        "id-card",
        "email",
        "bank-card-luhn",
        "bank-card-grouped",
    ],
)
def test_mask_pii_replaces_the_number(text, secret, placeholder):
    masked = mask_pii(text)
    assert secret not in masked
    assert placeholder in masked


@pytest.mark.parametrize(
    "text",
    [
        "帖子 3518239452345678 号",
        "身份证110105194912310021",
        "2012年9月11日 20120911",
        "转发 1000 次",
    ],
    ids=["luhn-invalid-long-number", "id-card-bad-checksum", "dates", "small-numbers"],
)
def test_mask_pii_leaves_other_numbers(text):
    assert mask_pii(text) == text


def test_id_card_checksum():
    assert is_valid_id_card(VALID_ID)
    assert not is_valid_id_card(VALID_ID[:-1] + "1")


def test_luhn():
    assert passes_luhn("4111111111111111")
    assert not passes_luhn("4111111111111112")


def test_mask_raw_line_hides_user_id_even_when_not_json():
    raw = '{"id": 1, "user_id": "u12345", "text": "call 13812345678", broken'
    masked = mask_raw_line(raw, max_chars=10_000)
    assert "u12345" not in masked and "13812345678" not in masked
    assert '"user_id": "<masked>"' in masked


def test_pseudonym_is_keyed_and_stable():
    assert pseudonymize_to_int("u1", b"k1") == pseudonymize_to_int("u1", b"k1")
    assert pseudonymize_to_int("u1", b"k1") != pseudonymize_to_int("u1", b"k2")
    assert pseudonymize_to_int("u1", b"k1") != pseudonymize_to_int("u2", b"k1")
    assert -(2**63) <= pseudonymize_to_int("u1", b"k1") < 2**63


def test_key_file_created_once_owner_only(tmp_path, monkeypatch):
    monkeypatch.delenv("YUQING_PSEUDONYM_KEY", raising=False)
    path = tmp_path / "keys" / "pseudonym.key"
    first = load_or_create_key(str(path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_key(str(path)) == first
    assert len(first) == 32


def test_key_from_environment_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("YUQING_PSEUDONYM_KEY", "ab" * 32)
    assert load_or_create_key(str(tmp_path / "unused.key")) == bytes.fromhex("ab" * 32)
    assert not (tmp_path / "unused.key").exists()
