"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer, Text
from sqlalchemy.sql import operators
from sqlalchemy.types import TypeDecorator

from db.crypto import dialect_cipher

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Encrypted(TypeDecorator):
    """Personal data, encrypted at rest (db/crypto.py) with the cipher bound to the engine.

    The stored value changes with every write (random nonce), so SQL can only ask whether it is NULL:
    any other comparison raises instead of silently matching nothing. Subclasses say how a value
    becomes the text that is sealed."""

    impl = Text
    cache_ok = True

    def __init__(self, purpose: str) -> None:
        super().__init__()
        self.purpose = purpose  # authenticated with the value: "complainants.phone"

    class Comparator(TypeDecorator.Comparator):
        def operate(self, op, *other, **kwargs):
            if op not in (operators.is_, operators.is_not):
                raise TypeError("an encrypted column can only be tested for NULL in SQL")
            return super().operate(op, *other, **kwargs)

        def reverse_operate(self, op, other, **kwargs):
            raise TypeError("an encrypted column can only be tested for NULL in SQL")

    comparator_factory = Comparator

    def process_bind_param(self, value: Any, dialect) -> str | None:
        if value is None:
            return None
        return dialect_cipher(dialect).encrypt(self.to_text(value), self.purpose)

    def process_result_value(self, value: str | None, dialect) -> Any:
        if value is None:
            return None
        return self.from_text(dialect_cipher(dialect).decrypt(value, self.purpose))

    def to_text(self, value: Any) -> str:
        raise NotImplementedError

    def from_text(self, text: str) -> Any:
        raise NotImplementedError


class EncryptedText(Encrypted):
    """A string: a name, a phone number, an error message that may quote what a person sent."""

    cache_ok = True

    def to_text(self, value: str) -> str:
        return value

    def from_text(self, text: str) -> str:
        return text


class EncryptedJSON(Encrypted):
    """A JSON value (dict, list, str, int, float, bool): a stored update, a conversation draft.

    Written as ASCII JSON, as SQLAlchemy's JSON type writes it, so a lone surrogate a client sent is kept
    as its escape instead of failing the write."""

    cache_ok = True

    def to_text(self, value: Any) -> str:
        return json.dumps(value, separators=(",", ":"))

    def from_text(self, text: str) -> Any:
        return json.loads(text)
