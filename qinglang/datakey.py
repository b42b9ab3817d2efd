"""Which key encrypts personal data: QINGLANG_DATA_KEY, or (embedded use) a key file made once in the data dir.

The key file lets the two-command start encrypt at rest with nothing configured. It lies beside a SQLite
database in the same directory, so there it protects copies of the database (backups, dumps, a PostgreSQL
server) rather than the machine; production sets QINGLANG_DATA_KEY from its secret store. A key file that
exists is still read when QINGLANG_DATA_KEY is set, so data written before the switch stays readable.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from db.crypto import DataCipher, DataKeyError, new_key_text, parse_key
from qinglang.errors import ConfigError
from qinglang.settings import PrivacySettings

log = logging.getLogger(__name__)


def key_file_path(data_dir: Path) -> Path:
    return data_dir / "secrets" / "data.key"


def load_cipher(privacy: PrivacySettings, data_dir: Path) -> DataCipher:
    path = key_file_path(data_dir)
    current = privacy.current_key
    if current is not None:
        old = privacy.old_keys
        if path.exists():
            old.append(_read(path))
        return DataCipher(current, old)
    key = _read(path) if path.exists() else _create(path)
    log.info("personal data is encrypted with the key in %s (QINGLANG_DATA_KEY is not set); "
             "back it up apart from the database: without it names, phones, stored messages and drafts cannot be read", path)
    return DataCipher(key, privacy.old_keys)


def _read(path: Path) -> bytes:
    try:
        return parse_key(path.read_text(encoding="ascii"))
    except (OSError, UnicodeDecodeError, DataKeyError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not a data key"
        raise ConfigError(f"cannot use the data key file {path} ({reason}); restore it from the backup, "
                          "or set QINGLANG_DATA_KEY") from None


def _create(path: Path) -> bytes:
    """Write a new key so that it appears complete or not at all, even with two processes starting at once."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".data.key-")  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(new_key_text() + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.link(temporary, path)
            log.info("generated a data key for personal data in %s", path)
        except FileExistsError:
            pass  # another process made it first: use theirs
        finally:
            os.unlink(temporary)
    except OSError as exc:
        raise ConfigError(f"cannot create the data key file {path} ({exc.strerror}); "
                          "set QINGLANG_DATA_KEY or make the data directory writable") from None
    return _read(path)
