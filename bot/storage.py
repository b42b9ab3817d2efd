"""Where the bot keeps conversation drafts (aiogram FSM state and data).

The embedded default keeps them in the database (table `bot_states`), so a restart loses no draft;
with QINGLANG_REDIS_URL set, aiogram's own RedisStorage is used instead. Drafts hold JSON types only
(dict, list, str, int, float, bool, None): anything else raises TypeError when it is stored.

A draft holds the name and phone typed before submission (and the web chat's transcript), so it rests
encrypted with the data key in both places: the `bot_states.data` column is encrypted (db/types.py), and
RedisStorage is given a serializer that encrypts (db/drafts.py SealedJson) with the same purpose.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from aiogram.exceptions import DataNotDictLikeError
from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseEventIsolation, BaseStorage, DefaultKeyBuilder, StateType, StorageKey
from aiogram.fsm.storage.memory import SimpleEventIsolation
from aiogram.fsm.storage.redis import RedisEventIsolation, RedisStorage
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from db.crypto import CipherNotConfigured, DataCipher, bound_cipher
from db.dialect import upsert_insert
from db.drafts import REDIS_PREFIX, SealedJson, redis_connection_options
from db.models import BotState

_KEY_LENGTH = 200  # BotState.key


def storage_key(key: StorageKey) -> str:
    """The row key of a StorageKey: every part, unambiguous (JSON), hashed only if it is too long."""
    parts = [key.bot_id, key.chat_id, key.user_id, key.thread_id, key.business_connection_id, key.destiny]
    text = json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
    if len(text) > _KEY_LENGTH:
        text = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return text


def _state_name(state: StateType) -> str | None:
    name = state.state if isinstance(state, State) else state
    if name is not None and len(name) > 200:
        raise ValueError(f"FSM state name longer than 200 characters: {name[:40]}...")
    return name


def _json_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy through JSON, so what is stored is exactly what a restart reads back."""
    try:
        return json.loads(json.dumps(data, ensure_ascii=False, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(
            "bot drafts store only JSON types (dict, list, str, int, float, bool, None); "
            f"cannot store this data: {exc}"
        ) from None


class DatabaseStorage(BaseStorage):
    """aiogram FSM storage in the `bot_states` table, one row per StorageKey; empty rows are deleted.

    Every change is one transaction that reads the row under a write lock (BEGIN IMMEDIATE on SQLite,
    SELECT ... FOR UPDATE on PostgreSQL) and writes it back, so concurrent update_data calls merge.
    The engine belongs to the caller: close() does not dispose of it.
    """

    def __init__(self, session_factory: async_sessionmaker) -> None:
        self.session_factory = session_factory

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        name = _state_name(state)
        await self._change(key, lambda current_state, data: (name, data))

    async def get_state(self, key: StorageKey) -> str | None:
        row = await self._read(key)
        return row.state if row else None

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        if not isinstance(data, dict):
            raise DataNotDictLikeError(f"Data must be a dict or dict-like object, got {type(data).__name__}")
        new = _json_copy(data)
        await self._change(key, lambda state, current: (state, new))

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        row = await self._read(key)
        return dict(row.data) if row else {}

    async def update_data(self, key: StorageKey, data: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            raise DataNotDictLikeError(f"Data must be a dict or dict-like object, got {type(data).__name__}")
        partial = _json_copy(dict(data))
        _, merged = await self._change(key, lambda state, current: (state, {**current, **partial}))
        return merged

    async def close(self) -> None:
        pass

    async def _read(self, key: StorageKey) -> BotState | None:
        async with self.session_factory() as session:
            return await session.get(BotState, storage_key(key))

    async def _change(
        self, key: StorageKey, change: Callable[[str | None, dict[str, Any]], tuple[str | None, dict[str, Any]]]
    ) -> tuple[str | None, dict[str, Any]]:
        row_key = storage_key(key)
        now = datetime.now(UTC)
        async with self.session_factory() as session, session.begin():
            insert = upsert_insert(session)
            ensure = (
                insert(BotState)
                .values(key=row_key, state=None, data={}, updated_at=now)
                .on_conflict_do_nothing(index_elements=[BotState.key])
            )
            locked = (
                select(BotState)
                .where(BotState.key == row_key)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
            row = None
            while row is None:  # the row may be deleted (cleared) between the insert and the lock
                await session.execute(ensure)
                row = (await session.execute(locked)).scalar_one_or_none()
            state, data = change(row.state, dict(row.data or {}))
            if state is None and not data:
                await session.execute(delete(BotState).where(BotState.key == row_key))
            else:
                row.state, row.data, row.updated_at = state, data, now
        return state, dict(data)


def _redis_key_builder(prefix: str) -> DefaultKeyBuilder:
    return DefaultKeyBuilder(prefix=prefix, with_bot_id=True, with_business_connection_id=True, with_destiny=True)


def build_storage(
    redis_url: str | None, session_factory: async_sessionmaker | None, *, redis_prefix: str = REDIS_PREFIX,
    cipher: DataCipher | None = None,
) -> BaseStorage:
    """RedisStorage when a Redis URL is given, else the drafts go to the database. Either way drafts are
    encrypted with `cipher`, by default the one bound to the session factory's engine (bootstrap binds it)."""
    if redis_url:
        cipher = cipher or _engine_cipher(session_factory)
        sealed = SealedJson(cipher)
        return RedisStorage.from_url(redis_url, connection_kwargs=redis_connection_options(),
                                     key_builder=_redis_key_builder(redis_prefix),
                                     json_dumps=sealed.dumps, json_loads=sealed.loads)
    return DatabaseStorage(session_factory)


def _engine_cipher(session_factory: async_sessionmaker | None) -> DataCipher:
    engine = session_factory.kw.get("bind") if session_factory is not None else None
    cipher = bound_cipher(engine) if engine is not None else None
    if cipher is None:
        raise CipherNotConfigured("drafts in Redis are encrypted with the data key: give build_storage a cipher, "
                                  "or a session factory whose engine was built through qinglang.bootstrap")
    return cipher


def build_event_isolation(
    redis_url: str | None, storage: BaseStorage, *, lock_seconds: float = 60.0
) -> BaseEventIsolation:
    """Handle one user's events in order: a Redis lock across processes, else an in-process lock.

    The in-process lock is enough for the embedded default, which runs one bot process; more than one
    polling/webhook process needs Redis. A Redis lock expires after `lock_seconds`, so one left by a
    killed process holds that person no longer.
    """
    lock_kwargs = {"timeout": lock_seconds}
    if isinstance(storage, RedisStorage):
        return storage.create_isolation(lock_kwargs=lock_kwargs)
    if redis_url:
        return RedisEventIsolation.from_url(redis_url, connection_kwargs=redis_connection_options(),
                                            lock_kwargs=lock_kwargs)
    return SimpleEventIsolation()
