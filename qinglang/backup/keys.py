"""The data key that encrypts personal data (db/crypto.py): a backup names the keys its database needs, and
a restore makes sure the installation has them before it puts any data back."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, text

from db.crypto import DataKeyError, key_id, parse_key
from qinglang.datakey import key_file_path
from qinglang.settings import Settings

# every encrypted value begins with "v1.<key id>." (db/crypto.py)
_PREFIX = re.compile(r"v1\.([0-9a-f]{8})\.")
KEY_FILE_IN_BACKUP = "secrets/data.key"


def encrypted_columns() -> list[tuple[str, str]]:
    from db.models import Base
    from db.types import Encrypted

    return [(t.name, c.name) for t in Base.metadata.sorted_tables for c in t.columns
            if isinstance(c.type, Encrypted)]


def key_ids_in_use(conn: Connection, tables: set[str]) -> tuple[str, ...]:
    """The ids of the keys the stored values were written under."""
    found = set()
    for table, column in encrypted_columns():
        if table not in tables:
            continue
        quoted_table, quoted_column = table.replace('"', '""'), column.replace('"', '""')
        rows = conn.execute(text(f'SELECT DISTINCT substr("{quoted_column}", 1, 12) FROM "{quoted_table}" '
                                 f'WHERE "{quoted_column}" IS NOT NULL'))
        found.update(match.group(1) for (prefix,) in rows if (match := _PREFIX.match(prefix or "")))
    return tuple(sorted(found))


def key_file(settings: Settings) -> Path:
    return key_file_path(settings.storage.data_dir)


def file_key_id(path: Path) -> str | None:
    """The id of the key in a key file; None when there is none or it is not a key."""
    try:
        return key_id(parse_key(path.read_text(encoding="ascii")))
    except (OSError, UnicodeDecodeError, DataKeyError):
        return None


def configured_key_ids(settings: Settings) -> set[str]:
    """The keys given in QINGLANG_DATA_KEY and QINGLANG_OLD_DATA_KEYS."""
    privacy = settings.privacy
    keys = ([privacy.current_key] if privacy.current_key else []) + privacy.old_keys
    return {key_id(key) for key in keys}


def available_key_ids(settings: Settings) -> set[str]:
    """What the service will be able to decrypt: the configured keys and the key file."""
    in_file = file_key_id(key_file(settings))
    return configured_key_ids(settings) | ({in_file} if in_file else set())


def set_aside(path: Path) -> Path:
    """Rename a key file out of the way; a key is never deleted."""
    aside = path.with_name(f"{path.name}.replaced-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
    path.rename(aside)
    return aside
