"""pg_dump and pg_restore: found on PATH, version-checked, run with the password in the environment only."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

from sqlalchemy.engine import URL

from qinglang.backup.errors import BackupError, BackupFailed

_INSTALL_HINT = "install the PostgreSQL client tools (Debian: apt-get install postgresql-client)"
# asyncpg's ssl= spellings and libpq's sslmode= both end up in PGSSLMODE
_SSL_MODES = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}


@dataclass(frozen=True)
class Tool:
    name: str
    path: str
    major: int


def find_tool(name: str) -> Tool:
    path = shutil.which(name)
    if path is None:
        raise BackupError(f"{name} not found on PATH: {_INSTALL_HINT}")
    try:
        shown = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackupError(f"cannot run {path} --version: {exc}") from None
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", shown)
    if match is None:
        raise BackupError(f"{path} --version printed {shown.strip()[:80]!r}, not a PostgreSQL version")
    return Tool(name, path, int(match.group(1)))


def require_at_least(tool: Tool, major: int, what: str) -> None:
    if tool.major < major:
        raise BackupError(f"{tool.name} {tool.major} ({tool.path}) is older than {what} ({major}): "
                          f"install postgresql-client-{major} or newer and put it first on PATH")


def environment(url: URL) -> dict[str, str]:
    """libpq's variables for the URL; the password goes here, never on a command line others can read."""
    env = dict(os.environ)  # the operator's PGSSLROOTCERT, PGPASSFILE... still apply
    env["PGAPPNAME"] = "qinglang-backup"
    wanted = {"PGHOST": url.host, "PGPORT": url.port, "PGUSER": url.username, "PGPASSWORD": url.password,
              "PGDATABASE": url.database}
    env.update({k: str(v) for k, v in wanted.items() if v is not None})
    ssl = url.query.get("sslmode") or url.query.get("ssl")
    if isinstance(ssl, str) and ssl in _SSL_MODES:
        env["PGSSLMODE"] = ssl
    return env


def database_conninfo(name: str) -> str:
    """--dbname as a conninfo string, so a name with '=' in it is not read as one."""
    escaped = name.replace("\\", "\\\\").replace("'", "\\'")
    return f"dbname='{escaped}'"


async def run(tool: Tool, args: list[str], env: dict[str, str]) -> None:
    process = await asyncio.create_subprocess_exec(
        tool.path, *args, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    if process.returncode != 0:
        lines = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
        reason = "; ".join(lines[-3:]) or f"exit code {process.returncode}"
        raise BackupFailed(f"{tool.name} failed: {reason}")
