"""The backup manifest reads back what it wrote and nothing else; pg tools get the password only by env."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from sqlalchemy.engine import make_url

from intake.evidence import EvidenceStore
from qinglang.backup import BackupError, check_backup
from qinglang.backup import pgtools
from qinglang.backup.files import copy_file, evidence_path
from qinglang.backup.manifest import DatabaseEntry, EvidenceProblem, FileEntry, Manifest, parse_manifest

SHA = hashlib.sha256(b"evidence").hexdigest()


def manifest(**changes) -> Manifest:
    values = dict(
        qinglang_version="0.1.0",
        created_at=datetime(2026, 11, 30, 2, 0, tzinfo=UTC),
        database=DatabaseEntry("postgresql", FileEntry("database.pgdump", "1" * 64, 10), "0009",
                               {"cases": 2, "units": 23}, 15),
        evidence=(FileEntry(f"evidence/{SHA[:2]}/{SHA[2:4]}/{SHA}", SHA, 8),),
        files=(FileEntry("config/rules.yaml", "2" * 64, 5),),
        problems=(EvidenceProblem("3" * 64, "missing", ("LW-2026-000001",)),),
        data_key_ids=("0a1b2c3d",),
        data_key_file=None,
    )
    values.update(changes)
    return Manifest(**values)


def test_manifest_reads_back_what_it_wrote():
    import json

    original = manifest()
    assert parse_manifest(json.loads(original.to_bytes())) == original


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["files"][0].update(path="../../etc/passwd"), "unsafe path"),
        (lambda d: d["files"][0].update(path="/etc/passwd"), "unsafe path"),
        (lambda d: d["database"].update(file="manifest.json"), "unsafe path"),
        (lambda d: d["evidence"][0].update(sha256="../x"), "not a sha256"),
        (lambda d: d["database"]["row_counts"].update(cases=-1), "row_counts"),
        (lambda d: d["problems"][0].update(problem="lost"), "unknown problem"),
        (lambda d: d.update(created_at="yesterday"), "created_at"),
        (lambda d: d.update(data_key_ids=["not-an-id"]), "data_key_ids"),
        (lambda d: d["database"].update(kind="mysql"), "unknown database kind"),
    ],
)
def test_manifest_refuses_what_backup_never_writes(change, message):
    import json

    data = json.loads(manifest().to_bytes())
    change(data)
    with pytest.raises(ValueError, match=message):
        parse_manifest(data)


def test_check_names_a_missing_file(tmp_path):
    (tmp_path / "manifest.json").write_bytes(manifest(files=(), problems=()).to_bytes())
    with pytest.raises(BackupError, match="database.pgdump is missing; evidence/.* is missing"):
        check_backup(tmp_path)


def test_evidence_layout_is_the_stores(tmp_path):
    store = EvidenceStore(tmp_path / "store")
    assert store.path_for(SHA) == store.root / evidence_path(SHA)


def test_copy_with_the_wrong_hash_leaves_the_destination_alone(tmp_path):
    source, dest = tmp_path / "source", tmp_path / "out" / "dest"
    source.write_bytes(b"evidence")
    refused = copy_file(source, dest, expected="0" * 64)
    assert not refused.placed and refused.sha256 == SHA and not dest.exists()
    assert list((tmp_path / "out").iterdir()) == []
    placed = copy_file(source, dest, expected=SHA)
    assert placed.placed and dest.read_bytes() == b"evidence"


def test_pg_tools_get_the_password_in_the_environment_only():
    url = make_url("postgresql+asyncpg://qinglang:s3cret@db.example:6432/qing'lang?ssl=require")
    env = pgtools.environment(url)
    assert (env["PGHOST"], env["PGPORT"], env["PGUSER"], env["PGPASSWORD"], env["PGDATABASE"], env["PGSSLMODE"]) == (
        "db.example", "6432", "qinglang", "s3cret", "qing'lang", "require")
    assert pgtools.database_conninfo(url.database) == "dbname='qing\\'lang'"
