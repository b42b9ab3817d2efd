"""Settings: defaults, environment, and one-line errors for bad values."""

from __future__ import annotations

import pytest

from qinglang.errors import ConfigError
from qinglang.settings import load_settings, normalise_database_url


def test_embedded_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env_file=None)
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'data' / 'qinglang.db'}"
    assert settings.storage.evidence_dir == settings.storage.data_dir / "evidence"
    assert settings.web.timezone == "Asia/Shanghai"
    assert settings.bot.bot_token is None


def test_environment_and_dotenv(tmp_path, monkeypatch):
    env = tmp_path / ".env"
    env.write_text("QINGLANG_BOT_TOKEN=123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ\nQINGLANG_PORT=9000\n")
    monkeypatch.setenv("QINGLANG_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    settings = load_settings(env_file=env)
    assert settings.database_url == "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    assert settings.web.port == 9000
    token = settings.bot.bot_token
    assert token.get_secret_value().startswith("123456:")
    assert "123456" not in repr(settings.bot)  # secrets stay out of logs


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("QINGLANG_DATABASE_URL", "not a url", "is not a database URL"),
        ("QINGLANG_DATABASE_URL", "mysql://root@localhost/x", "unsupported driver 'mysql'"),
        ("QINGLANG_DATABASE_URL", "postgresql+asyncpg:///nohost", "needs a host and a database"),
        ("QINGLANG_DATABASE_URL", "sqlite+aiosqlite://", "names no SQLite file"),
        ("QINGLANG_PORT", "99999", "QINGLANG_PORT"),
        ("QINGLANG_TIMEZONE", "Mars/Olympus", "unknown time zone"),
        ("QINGLANG_BOT_TOKEN", "not-a-token", "QINGLANG_BOT_TOKEN: a bot token looks like"),
        ("QINGLANG_CASE_NUMBER_PREFIX", "lw-", "QINGLANG_CASE_NUMBER_PREFIX"),
        ("QINGLANG_NOTIFY_LEASE_SECONDS", "10", "QINGLANG_NOTIFY_LEASE_SECONDS"),
        ("QINGLANG_INBOX_LEASE_SECONDS", "soon", "QINGLANG_INBOX_LEASE_SECONDS"),
        ("QINGLANG_CHAT_LOCK_SECONDS", "0", "QINGLANG_CHAT_LOCK_SECONDS"),
    ],
)
def test_bad_values_are_one_line_errors(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_password_is_not_echoed_in_url_errors():
    with pytest.raises(ConfigError) as caught:
        normalise_database_url("oracle://scott:tiger@db/x")
    assert "tiger" not in str(caught.value)


async def test_image_limits_reach_the_evidence_store(tmp_path):
    from qinglang.bootstrap import build_container

    settings = load_settings(env_file=None, data_dir=tmp_path / "data", max_image_pixels=1000, max_image_side=50,
                             max_image_frames=2, database_url=f"sqlite+aiosqlite:///{tmp_path}/q.db")
    container = build_container(settings)
    images = container.evidence.limits.images
    assert (images.max_pixels, images.max_side, images.max_frames) == (1000, 50, 2)
    assert images.max_total_pixels >= 1000
    await container.close()
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None, data_dir=tmp_path / "data", max_image_pixels=0)
    assert "max_image_pixels" in str(caught.value).lower()


def test_a_notice_lease_shorter_than_a_send_is_refused(monkeypatch):
    monkeypatch.setenv("QINGLANG_NOTIFY_TIMEOUT", "60")
    monkeypatch.setenv("QINGLANG_NOTIFY_LEASE_SECONDS", "60")
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None)
    assert "QINGLANG_NOTIFY_LEASE_SECONDS must be at least QINGLANG_NOTIFY_TIMEOUT + 15 s" in str(caught.value)


async def test_leases_reach_the_worker_and_the_bot(tmp_path):
    from datetime import timedelta

    from bot.runner import TelegramChannel
    from qinglang.bootstrap import build_container
    from qinglang.worker import Worker

    settings = load_settings(env_file=None, data_dir=tmp_path / "data", database_url=f"sqlite+aiosqlite:///{tmp_path}/q.db",
                             bot_token="123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ", notify_lease_seconds=45,
                             inbox_lease_seconds=30)
    container = build_container(settings)
    worker = Worker(container)
    channel = TelegramChannel(container)
    try:
        assert worker.notifier._config.lease == timedelta(seconds=45)
        assert channel.inbox._lease == timedelta(seconds=30)
    finally:
        await channel.bot.session.close()
        await worker.stop()
        await container.close()
