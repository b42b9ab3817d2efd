"""Encryption of personal data (db/crypto.py), the data key from settings or the key file, and redaction."""

from __future__ import annotations

import base64
import os
import stat

import pytest

from db.crypto import DataCipher, DecryptionError, parse_key
from intake.redaction import MASK, known_values, redact, redact_json
from qinglang.datakey import key_file_path, load_cipher
from qinglang.errors import ConfigError
from qinglang.settings import load_settings

KEY = os.urandom(32)
OLD_KEY = os.urandom(32)


@pytest.fixture(autouse=True)
def no_key_in_the_environment(monkeypatch):
    for variable in ("QINGLANG_DATA_KEY", "QINGLANG_OLD_DATA_KEYS", "QINGLANG_RETENTION_DAYS"):
        monkeypatch.delenv(variable, raising=False)


def text_of(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode()


def test_values_round_trip_and_differ_on_every_write():
    cipher = DataCipher(KEY)
    first, second = cipher.encrypt("张三", "complainants.name"), cipher.encrypt("张三", "complainants.name")
    assert first != second and "张三" not in first and first.startswith(f"v1.{cipher.current_id}.")
    assert cipher.decrypt(first, "complainants.name") == cipher.decrypt(second, "complainants.name") == "张三"


def test_an_altered_value_a_moved_value_and_plain_text_are_refused():
    cipher = DataCipher(KEY)
    stored = cipher.encrypt("13800000000", "complainants.phone")
    head, body = stored.rsplit(".", 1)
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    with pytest.raises(DecryptionError, match="altered"):
        cipher.decrypt(f"{head}.{flipped}", "complainants.phone")
    with pytest.raises(DecryptionError, match="altered"):
        cipher.decrypt(stored, "complainants.name")  # a phone copied into the name column
    with pytest.raises(DecryptionError, match="not encrypted"):
        cipher.decrypt("13800000000", "complainants.phone")


def test_rotation_reads_old_values_and_writes_with_the_new_key():
    old = DataCipher(OLD_KEY)
    written_before = old.encrypt("李四", "complainants.name")
    rotated = DataCipher(KEY, [OLD_KEY])
    assert rotated.decrypt(written_before, "complainants.name") == "李四"
    assert not rotated.is_current(written_before)
    written_now = rotated.encrypt("李四", "complainants.name")
    assert rotated.is_current(written_now)
    with pytest.raises(DecryptionError, match="QINGLANG_OLD_DATA_KEYS"):
        old.decrypt(written_now, "complainants.name")


def test_keys_are_32_bytes_of_base64():
    assert parse_key(text_of(KEY)) == KEY
    assert parse_key(text_of(KEY).rstrip("=")) == KEY
    assert parse_key(base64.b64encode(KEY).decode()) == KEY  # `openssl rand -base64 32` works too
    for bad in ("", "abc", text_of(os.urandom(16)), text_of(KEY)[:-3] + "!!=", text_of(os.urandom(33))):
        with pytest.raises(ValueError, match="32 random bytes"):
            parse_key(bad)


@pytest.mark.parametrize("variable", ["data_key", "old_data_keys"])
def test_a_malformed_key_is_a_config_error_that_does_not_echo_it(variable):
    secret = "not-a-key-but-a-secret-password"
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None, **{variable: secret})
    message = str(caught.value)
    assert message.startswith(f"QINGLANG_{variable.upper()}:") and "base64" in message and secret not in message


def test_the_key_and_retention_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("QINGLANG_DATA_KEY", text_of(KEY))
    monkeypatch.setenv("QINGLANG_OLD_DATA_KEYS", f"{text_of(OLD_KEY)}, ")
    monkeypatch.setenv("QINGLANG_RETENTION_DAYS", "730")
    privacy = load_settings(env_file=None).privacy
    assert (privacy.current_key, privacy.old_keys, privacy.retention.days) == (KEY, [OLD_KEY], 730)
    monkeypatch.setenv("QINGLANG_RETENTION_DAYS", "0")
    assert load_settings(env_file=None).privacy.retention is None
    monkeypatch.delenv("QINGLANG_DATA_KEY")
    monkeypatch.delenv("QINGLANG_RETENTION_DAYS")
    assert load_settings(env_file=None).privacy.retention.days == 1095


def test_without_a_key_one_is_generated_once_in_the_data_dir(tmp_path):
    privacy = load_settings(env_file=None).privacy
    first = load_cipher(privacy, tmp_path)
    path = key_file_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again = load_cipher(privacy, tmp_path)
    assert again.current_id == first.current_id
    assert again.decrypt(first.encrypt("张三", "p"), "p") == "张三"
    assert [p.name for p in path.parent.iterdir()] == ["data.key"]  # no temporary file left


def test_a_configured_key_still_reads_what_the_key_file_wrote(tmp_path):
    embedded = load_cipher(load_settings(env_file=None).privacy, tmp_path)
    stored = embedded.encrypt("张三", "p")
    configured = load_cipher(load_settings(env_file=None, data_key=text_of(KEY)).privacy, tmp_path)
    assert configured.current_id == DataCipher(KEY).current_id
    assert configured.decrypt(stored, "p") == "张三"


def test_a_damaged_key_file_stops_the_start(tmp_path):
    path = key_file_path(tmp_path)
    path.parent.mkdir()
    path.write_text("garbage\n")
    with pytest.raises(ConfigError, match="data key file .*not a data key"):
        load_cipher(load_settings(env_file=None).privacy, tmp_path)


def test_known_details_leave_every_text_patterns_only_the_complainants():
    known = known_values("张三", "138-0000-0000", "zs@example.com", None)
    assert "13800000000" in known
    text = "我是张三，电话13800000000，邮箱zs@example.com，另一个号码13911112222，身份证11010519491231002X"
    assert redact(text, known, patterns=True) == f"我是{MASK}，电话{MASK}，邮箱{MASK}，另一个号码{MASK}，身份证{MASK}"
    staff = "张三您好，如有疑问请拨打0577-85626228"
    assert redact(staff, known, patterns=False) == f"{MASK}您好，如有疑问请拨打0577-85626228"
    order = "订单号 123456789012345678，金额 99 元"  # 18 digits failing the ID check digit: an order number
    assert redact(order, known, patterns=True) == order
    assert redact_json({"reply": "张三您好", "n": 1, "list": ["zs@example.com"]}, known) == \
        {"reply": f"{MASK}您好", "n": 1, "list": [MASK]}


def test_a_one_character_name_is_not_taken_out_of_every_word():
    assert known_values("王", None) == []
