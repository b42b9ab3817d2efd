"""The two ways a backup or a restore ends badly, told apart by the exit code."""

from qinglang.errors import QinglangError


class BackupError(QinglangError):
    """Bad input or a refusal, found before anything was changed (exit code 2)."""

    exit_code = 2


class BackupFailed(QinglangError):
    """The work broke half-way, or the check after it found a difference (exit code 1)."""

    exit_code = 1
