"""Saving edited routing rules: where the copy goes (never into the package), which file the next start
loads, the in-place swap of a running table, and the file operations behind POST /admin/rules/save."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlu.taxonomy import Kind
from qinglang.bootstrap import load_rules_files
from qinglang.settings import load_settings
from routing.directory import load_directory
from routing.rules import (
    DEFAULT_RULES_PATH,
    MerchantLocation,
    RoutingRequest,
    active_rules_path,
    edited_rules_path,
    load_rules,
)
from web.console.admin import _save_file, _save_path, _undo_save

IN_YONGZHONG = MerchantLocation(in_district=True, street="永中街道", province="浙江省")
EXTRA = """  - id: price_to_quality
    match: {kind: [tipoff], category: [price], merchant: in_district}
    route: {lead: zhiliang}

"""


def edited_text() -> str:
    text = DEFAULT_RULES_PATH.read_text(encoding="utf-8")
    return text.replace("\nrules:\n", "\nrules:\n" + EXTRA, 1)


def test_active_rules_path(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert edited_rules_path(data) == data / "config" / "rules.yaml"
    assert active_rules_path(None, data) is None  # nothing saved yet: the packaged default
    own = tmp_path / "own.yaml"
    assert active_rules_path(own, data) == own
    edited_rules_path(data).parent.mkdir(parents=True)
    edited_rules_path(data).write_text(edited_text(), encoding="utf-8")
    assert active_rules_path(None, data) == edited_rules_path(data)
    assert active_rules_path(own, data) == own  # a configured file always wins


def test_next_start_loads_the_saved_copy(tmp_path: Path) -> None:
    settings = load_settings(env_file=None, data_dir=tmp_path / "data")
    assert load_rules_files(settings)[1].rules[0].id == "tax"
    target = edited_rules_path(settings.storage.data_dir)
    target.parent.mkdir(parents=True)
    target.write_text(edited_text(), encoding="utf-8")
    _directory, routing, _policy = load_rules_files(settings)
    assert routing.rules[0].id == "price_to_quality" and routing.path == str(target)


def test_save_path_is_never_inside_the_package(tmp_path: Path) -> None:
    settings = load_settings(env_file=None, data_dir=tmp_path / "data")
    assert _save_path(settings) == (tmp_path / "data" / "config" / "rules.yaml").resolve()
    own = tmp_path / "own.yaml"
    assert _save_path(load_settings(env_file=None, data_dir=tmp_path, routing_file=own)) == own.resolve()
    packaged = load_settings(env_file=None, data_dir=tmp_path, routing_file=DEFAULT_RULES_PATH)
    assert _save_path(packaged) is None
    link = tmp_path / "link.yaml"
    link.symlink_to(DEFAULT_RULES_PATH)  # not through a symlink either
    assert _save_path(load_settings(env_file=None, data_dir=tmp_path, routing_file=link)) is None


def test_replace_with_swaps_the_rules_of_a_running_table(tmp_path: Path) -> None:
    directory = load_directory()
    running = load_rules(None, directory)
    holder = running  # what CaseService keeps
    request = RoutingRequest(Kind.TIPOFF, "price", None, IN_YONGZHONG)
    assert holder.route(request).lead == "jiajing"
    checked = tmp_path / "checked.yaml"
    checked.write_text(edited_text(), encoding="utf-8")
    running.replace_with(load_rules(checked, directory), path="/data/config/rules.yaml")
    assert holder.route(request).lead == "zhiliang" and holder.route(request).rule_id == "price_to_quality"
    assert holder.path == "/data/config/rules.yaml"
    with pytest.raises(ValueError):
        running.replace_with(load_rules(None, load_directory()))  # checked against another directory


def test_save_file_backs_up_then_replaces_and_can_be_undone(tmp_path: Path) -> None:
    target = tmp_path / "config" / "rules.yaml"
    packaged = DEFAULT_RULES_PATH.read_bytes()
    first = _save_file(target, DEFAULT_RULES_PATH, edited_text(), "20261116T020000Z")
    assert target.read_text(encoding="utf-8") == edited_text()
    assert first.backup == target.with_name("rules.yaml.20261116T020000Z.bak") and first.backup.read_bytes() == packaged
    assert not first.target_existed and first.old == packaged
    second = _save_file(target, target, "rules: []\n", "20261116T020000Z")  # same second: a new name
    assert second.backup == target.with_name("rules.yaml.20261116T020000Z-2.bak")
    assert second.backup.read_text(encoding="utf-8") == edited_text() and second.target_existed
    _undo_save(second)
    assert target.read_text(encoding="utf-8") == edited_text() and not second.backup.exists()
    _undo_save(first)
    assert not target.exists() and not first.backup.exists()
    assert DEFAULT_RULES_PATH.read_bytes() == packaged
    assert sorted(p.name for p in target.parent.iterdir()) == []  # no temporary files left
