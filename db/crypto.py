"""Encryption of personal data at rest: AES-256-GCM with a key id in every value, so keys can rotate.

A stored value reads ``v1.<key id>.<base64url(nonce + ciphertext + tag)>``. The key id is derived from
the key (not the key itself); decryption picks the key by it, so values written under an old key stay
readable while that key is listed among the old ones. The column's name is authenticated with the value
(associated data), so a phone's ciphertext copied into the name column does not decrypt.

The cipher belongs to an engine: bootstrap binds it (``bind_cipher``) and the encrypted column type finds
it through the dialect of the connection it runs on. An engine without one fails on the first personal
value instead of writing it in clear.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine

from qinglang.errors import QinglangError

VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
GENERATE_HINT = ('python -c "import secrets,base64;'
                 'print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())"')
_DIALECT_ATTRIBUTE = "qinglang_data_cipher"


class DataKeyError(ValueError):
    """A key that is not 32 bytes of URL-safe base64."""


class DecryptionError(QinglangError):
    """A stored value that is not ours, was altered, or was written under a key we do not have."""


class CipherNotConfigured(RuntimeError):
    pass


def parse_key(text: str) -> bytes:
    """32 bytes from base64, URL-safe or standard (padding optional); anything else is a DataKeyError."""
    cleaned = text.strip().rstrip("=").replace("-", "+").replace("_", "/")
    try:
        # validate: a mistyped character must not be skipped into a different key
        raw = base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != KEY_BYTES:
        raise DataKeyError(f"a data key is 32 random bytes in URL-safe base64 (44 characters); "
                           f"generate one with: {GENERATE_HINT}")
    return raw


def new_key_text() -> str:
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode()


def key_id(key: bytes) -> str:
    return hmac.new(key, b"qinglang data key id", hashlib.sha256).hexdigest()[:8]


class DataCipher:
    """Encrypts with the first key; decrypts with whichever key wrote the value."""

    def __init__(self, current: bytes, old: Sequence[bytes] = ()) -> None:
        keys = [current, *old]
        if any(len(k) != KEY_BYTES for k in keys):
            raise DataKeyError("a data key is 32 bytes")
        self.current_id = key_id(current)
        self._current = AESGCM(current)
        self._digest_key = hmac.new(current, b"qinglang keyed digest", hashlib.sha256).digest()
        self._by_id: dict[str, AESGCM] = {}
        for key in keys:
            self._by_id.setdefault(key_id(key), AESGCM(key))

    @property
    def key_ids(self) -> list[str]:
        return list(self._by_id)

    def encrypt(self, plaintext: str, purpose: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._current.encrypt(nonce, plaintext.encode(), purpose.encode())
        return f"{VERSION}.{self.current_id}.{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"

    def decrypt(self, stored: str, purpose: str) -> str:
        version, _, rest = stored.partition(".")
        kid, _, body = rest.partition(".")
        if version != VERSION or not kid or not body:
            raise DecryptionError(f"{purpose}: the stored value is not encrypted (was migration 0010 applied?)")
        aead = self._by_id.get(kid)
        if aead is None:
            raise DecryptionError(f"{purpose}: written under data key {kid}, which is not configured "
                                  "(add it to QINGLANG_OLD_DATA_KEYS)")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], purpose.encode()).decode()
        except (binascii.Error, ValueError, InvalidTag):
            raise DecryptionError(f"{purpose}: the stored value was altered or is not ours") from None

    def keyed_digest(self, purpose: str, value: str) -> str:
        """HMAC-SHA256 (hex) of `value` under a key derived from the current data key: a stable stand-in
        that cannot be reversed by trying candidate values without the key; a new key gives new digests."""
        return hmac.new(self._digest_key, f"{purpose}\0{value}".encode(), hashlib.sha256).hexdigest()

    def is_current(self, stored: str) -> bool:
        return stored.startswith(f"{VERSION}.{self.current_id}.")


def bind_cipher(engine: AsyncEngine, cipher: DataCipher) -> None:
    setattr(engine.sync_engine.dialect, _DIALECT_ATTRIBUTE, cipher)


def bound_cipher(engine: AsyncEngine) -> DataCipher | None:
    return getattr(engine.sync_engine.dialect, _DIALECT_ATTRIBUTE, None)


def dialect_cipher(dialect: Dialect) -> DataCipher:
    cipher = getattr(dialect, _DIALECT_ATTRIBUTE, None)
    if cipher is None:
        raise CipherNotConfigured("personal data used on an engine without a data key: build the engine through "
                                  "qinglang.bootstrap (or db.crypto.bind_cipher)")
    return cipher
