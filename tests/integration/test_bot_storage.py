"""The bot's conversation drafts (aiogram FSM) survive a restart in the database; Redis when configured."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import pytest
from aiogram.exceptions import DataNotDictLikeError
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import StorageKey
from aiogram.fsm.storage.memory import SimpleEventIsolation
from aiogram.fsm.storage.redis import RedisEventIsolation, RedisStorage
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from bot.storage import DatabaseStorage, build_event_isolation, build_storage
from db.crypto import DataCipher, bind_cipher
from db.engine import create_engine, create_session_factory
from db.models import BotState

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")

BOT = 7000000001
CIPHER = DataCipher(os.urandom(32))  # drafts are encrypted at rest: every engine here shares this data key


class Draft(StatesGroup):
    description = State()
    evidence = State()


def key(user: int = 1001, chat: int | None = None, **extra) -> StorageKey:
    return StorageKey(bot_id=BOT, chat_id=user if chat is None else chat, user_id=user, **extra)


@pytest.fixture
async def session_factory(database_url) -> AsyncIterator[async_sessionmaker]:
    engine = create_engine(database_url)
    bind_cipher(engine, CIPHER)
    factory = create_session_factory(engine)
    async with factory.begin() as session:  # the PostgreSQL database is shared by the test session
        await session.execute(delete(BotState))
    yield factory
    await engine.dispose()


@pytest.fixture
def storage(session_factory) -> DatabaseStorage:
    return DatabaseStorage(session_factory)


async def _rows(factory: async_sessionmaker) -> int:
    async with factory() as session:
        return await session.scalar(select(func.count()).select_from(BotState))


async def test_state_and_data_round_trip(storage):
    k = key()
    assert await storage.get_state(k) is None
    assert await storage.get_data(k) == {}
    await storage.set_state(k, Draft.description)
    await storage.set_data(k, {"description": "直播间标价与结算价不一致", "amount_fen": 12900, "photos": ["a", "b"]})
    assert await storage.get_state(k) == "Draft:description"
    assert await storage.get_data(k) == {
        "description": "直播间标价与结算价不一致",
        "amount_fen": 12900,
        "photos": ["a", "b"],
    }
    await storage.set_state(k, "Draft:evidence")  # a plain string is a state too; the data stays
    assert await storage.get_state(k) == "Draft:evidence"
    assert (await storage.get_data(k))["amount_fen"] == 12900
    assert await storage.get_value(k, "amount_fen") == 12900


async def test_fsm_context_works_on_it(storage):
    context = FSMContext(storage=storage, key=key())
    await context.set_state(Draft.evidence)
    await context.update_data(platform="抖音")
    assert await context.get_state() == Draft.evidence.state
    assert await context.get_data() == {"platform": "抖音"}
    await context.clear()
    assert await context.get_state() is None
    assert await context.get_data() == {}


async def test_update_data_merges(storage):
    k = key()
    await storage.set_data(k, {"a": 1, "b": 2})
    assert await storage.update_data(k, {"b": 3, "c": [4]}) == {"a": 1, "b": 3, "c": [4]}
    assert await storage.get_data(k) == {"a": 1, "b": 3, "c": [4]}
    assert await storage.update_data(key(user=2002), {"x": 1}) == {"x": 1}  # on a key with no row yet


async def test_returned_data_is_a_copy(storage):
    k = key()
    await storage.set_data(k, {"photos": ["a"]})
    data = await storage.get_data(k)
    data["photos"].append("b")
    assert await storage.get_data(k) == {"photos": ["a"]}


async def test_a_new_storage_after_a_restart_sees_the_draft(database_url, session_factory):
    first = DatabaseStorage(session_factory)
    await first.set_state(key(), Draft.evidence)
    await first.update_data(key(), {"description": "未发货", "order_number": "DY-1"})
    await first.close()
    engine = create_engine(database_url)  # a new process: a new engine on the same database
    bind_cipher(engine, CIPHER)
    try:
        second = DatabaseStorage(create_session_factory(engine))
        assert await second.get_state(key()) == "Draft:evidence"
        assert await second.get_data(key()) == {"description": "未发货", "order_number": "DY-1"}
    finally:
        await engine.dispose()


async def test_keys_of_different_users_chats_threads_and_destinies_do_not_mix(storage):
    keys = [
        key(user=1),
        key(user=2),
        key(user=1, chat=-100500),  # the same user in a group
        key(user=1, thread_id=7),
        key(user=1, business_connection_id="bc:1"),
        key(user=1, destiny="evidence"),
        StorageKey(bot_id=BOT + 1, chat_id=1, user_id=1),  # another bot
        key(user=1, business_connection_id="x" * 300),  # too long for the column: hashed
    ]
    for i, k in enumerate(keys):
        await storage.set_state(k, f"S:{i}")
        await storage.set_data(k, {"i": i})
    for i, k in enumerate(keys):
        assert await storage.get_state(k) == f"S:{i}"
        assert await storage.get_data(k) == {"i": i}
    assert await _rows(storage.session_factory) == len(keys)


async def test_clearing_state_and_data_clears_and_removes_the_row(storage):
    k = key()
    await storage.set_state(k, Draft.description)
    await storage.set_data(k, {"a": 1})
    await storage.set_state(k, None)
    assert await storage.get_state(k) is None
    assert await storage.get_data(k) == {"a": 1}
    await storage.set_state(k, Draft.description)
    await storage.set_data(k, {})
    assert await storage.get_data(k) == {}
    assert await storage.get_state(k) == "Draft:description"
    await storage.set_state(k, None)
    assert await _rows(storage.session_factory) == 0  # no empty drafts are kept
    await storage.set_state(k, None)  # clearing what is not there is fine
    assert await _rows(storage.session_factory) == 0


@pytest.mark.parametrize(
    "bad", [{"when": object()}, {"photos": {1, 2}}, {"amount": float("nan")}, {"raw": b"bytes"}]
)
async def test_non_json_data_raises_and_stores_nothing(storage, bad):
    k = key()
    await storage.set_data(k, {"kept": True})
    with pytest.raises(TypeError, match="JSON types"):
        await storage.set_data(k, bad)
    with pytest.raises(TypeError, match="JSON types"):
        await storage.update_data(k, bad)
    assert await storage.get_data(k) == {"kept": True}


async def test_data_must_be_a_dict(storage):
    with pytest.raises(DataNotDictLikeError):
        await storage.set_data(key(), [("a", 1)])


async def test_concurrent_updates_lose_nothing(session_factory):
    storages = [DatabaseStorage(session_factory) for _ in range(2)]  # two storages, as two handlers
    k = key()
    await asyncio.gather(*(storages[i % 2].update_data(k, {f"part{i}": i}) for i in range(20)))
    assert await storages[0].get_data(k) == {f"part{i}": i for i in range(20)}


async def test_concurrent_updates_on_a_new_key_and_with_state_changes_lose_nothing(storage):
    k = key(user=3003)
    updates = [storage.update_data(k, {f"part{i}": i}) for i in range(20)]
    await asyncio.gather(*updates, storage.set_state(k, Draft.evidence))
    assert await storage.get_data(k) == {f"part{i}": i for i in range(20)}
    assert await storage.get_state(k) == "Draft:evidence"


async def test_without_redis_the_database_and_an_in_process_lock_are_used(session_factory):
    storage = build_storage(None, session_factory)
    assert isinstance(storage, DatabaseStorage)
    isolation = build_event_isolation(None, storage)
    assert isinstance(isolation, SimpleEventIsolation)
    order: list[str] = []

    async def handle(name: str) -> None:
        async with isolation.lock(key()):
            order.append(f"{name} start")
            await asyncio.sleep(0.01)
            order.append(f"{name} end")

    await asyncio.gather(handle("album part 1"), handle("album part 2"))
    assert order == ["album part 1 start", "album part 1 end", "album part 2 start", "album part 2 end"]
    await isolation.close()


@contextlib.asynccontextmanager
async def redis_parts(**isolation_options):
    """Redis storage and isolation under a prefix of their own, a plain client, and nothing left after."""
    from redis.asyncio import Redis

    prefix = f"qinglang-test:{uuid.uuid4().hex[:10]}"
    storage = build_storage(TEST_REDIS_URL, None, redis_prefix=prefix, cipher=CIPHER)
    isolation = build_event_isolation(TEST_REDIS_URL, storage, **isolation_options)
    client = Redis.from_url(TEST_REDIS_URL)
    try:
        yield prefix, storage, isolation, client
    finally:
        async for name in client.scan_iter(f"{prefix}:*"):
            await client.delete(name)
        await client.aclose()
        await isolation.close()
        await storage.close()


@pytest.mark.redis
@pytest.mark.skipif(not TEST_REDIS_URL, reason="TEST_REDIS_URL is not set")
async def test_with_a_redis_url_redis_storage_and_isolation_are_used():
    async with redis_parts() as (prefix, storage, isolation, client):
        assert isinstance(storage, RedisStorage)
        assert isinstance(isolation, RedisEventIsolation)
        k, other = key(), key(user=2, destiny="evidence")
        await storage.set_state(k, Draft.description)
        await storage.set_data(k, {"description": "未发货"})
        assert await storage.update_data(k, {"order_number": "DY-1"}) == {"description": "未发货", "order_number": "DY-1"}
        assert await storage.get_state(k) == "Draft:description"
        assert await storage.get_data(other) == {}
        assert await client.keys(f"{prefix}:*")  # under the prefix, with bot id and destiny in the key
        async with isolation.lock(k):
            assert await client.exists(f"{prefix}:{BOT}:{k.chat_id}:{k.user_id}:default:lock")
        restarted = build_storage(TEST_REDIS_URL, None, redis_prefix=prefix, cipher=CIPHER)
        assert await restarted.get_data(k) == {"description": "未发货", "order_number": "DY-1"}
        await restarted.close()
        await storage.set_state(k, None)
        await storage.set_data(k, {})
        assert await storage.get_state(k) is None
        assert await storage.get_data(k) == {}


@pytest.mark.redis
@pytest.mark.skipif(not TEST_REDIS_URL, reason="TEST_REDIS_URL is not set")
async def test_a_lock_left_by_a_killed_replica_expires_after_the_chat_lock_setting():
    k = key()
    async with redis_parts(lock_seconds=1.5) as (prefix, storage, isolation, client):
        lock_key = f"{prefix}:{BOT}:{k.chat_id}:{k.user_id}:default:lock"
        async with isolation.lock(k):  # the lock is taken with the configured expiry
            assert 0 < await client.pttl(lock_key) <= 1500
        # a replica killed while handling leaves its lock behind, with that expiry
        await client.set(lock_key, "token-of-a-dead-process", px=1500)
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with asyncio.timeout(10):
            async with isolation.lock(k):
                waited = loop.time() - started
        assert 0.5 < waited < 5, waited  # held until the dead one's lock ran out, not aiogram's 60 s
