"""Backup and restore of the database and the evidence files (`qinglang backup`, `qinglang restore`)."""

from qinglang.backup.errors import BackupError, BackupFailed
from qinglang.backup.manifest import Manifest
from qinglang.backup.run import BackupReport, RestoreReport, check_backup, make_backup, restore_backup

__all__ = [
    "BackupError",
    "BackupFailed",
    "BackupReport",
    "Manifest",
    "RestoreReport",
    "check_backup",
    "make_backup",
    "restore_backup",
]
