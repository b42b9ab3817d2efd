"""The English catalog covers every message in the source, keeps each message's placeholders and line
breaks, and is compiled; Chinese needs no catalog."""

from __future__ import annotations

import ast
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from aiogram.utils.i18n import I18n
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from intake.status import STATUS_NAMES_ZH
from qinglang.i18n import DEFAULT_LANGUAGE, DOMAIN, LOCALES_DIR, language_of, translations

ROOT = Path(__file__).resolve().parents[2]
PO = LOCALES_DIR / "en" / "LC_MESSAGES" / f"{DOMAIN}.po"
MO = PO.with_suffix(".mo")
SOURCE_PACKAGES = ("bot", "intake", "qinglang", "web", "nlu")  # as in babel.cfg
KEYWORDS = ("_", "gettext", "N_", "ngettext")  # as in scripts/i18n.sh
FIELD = re.compile(r"\{[^{}]*\}")


def _msgid(message) -> str:
    return message.id[0] if isinstance(message.id, tuple) else message.id


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """The messages scripts/i18n.sh extracts from the source now (not the committed .pot)."""
    out = tmp_path_factory.mktemp("i18n") / f"{DOMAIN}.pot"
    subprocess.run(["bash", str(ROOT / "scripts" / "i18n.sh"), "extract", str(out)], cwd=ROOT, check=True,
                   env={**os.environ, "PYTHON": sys.executable}, capture_output=True, timeout=120)
    with out.open("rb") as f:
        catalog = read_po(f)
    messages = [m for m in catalog if m.id]
    assert messages
    return messages


@pytest.fixture(scope="module")
def catalog():
    with PO.open("rb") as f:
        return read_po(f, locale="en")


def _literal_messages() -> set[str]:
    """Every string literal given to a translation call, f-strings included (which Python 3.11's
    tokenizer, and so Babel's extractor, cannot see into)."""
    found = set()
    for package in SOURCE_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if any(part.startswith(".") or part == "rasa" for part in path.relative_to(ROOT).parts):
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if not (isinstance(node, ast.Call) and node.args):
                    continue
                func = node.func
                name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
                first = node.args[0]
                if name in KEYWORDS and isinstance(first, ast.Constant) and isinstance(first.value, str):
                    found.add(first.value)
    return found


def test_extraction_finds_every_translated_literal(template):
    extracted = {_msgid(m) for m in template}
    assert _literal_messages() - extracted == set()
    assert "已切换为中文。" in extracted  # turn._("…"): an attribute call
    assert "{count} 个文件" in extracted  # turn.ngettext("…", "…", n)
    assert set(STATUS_NAMES_ZH.values()) <= extracted  # N_("…")


def test_every_message_has_an_english_translation(template, catalog):
    problems = []
    for message in template:
        found = catalog.get(_msgid(message), message.context)
        if found is None:
            problems.append(f"{_msgid(message)!r}: not in {PO.name}")
            continue
        strings = found.string if isinstance(found.string, tuple) else (found.string,)
        if isinstance(found.id, tuple) != isinstance(message.id, tuple):
            problems.append(f"{_msgid(message)!r}: singular/plural differs from the source")
        elif found.fuzzy or not all(s.strip() for s in strings):
            problems.append(f"{_msgid(message)!r}: not translated (or fuzzy)")
    assert problems == [], "run scripts/i18n.sh update, translate, compile:\n" + "\n".join(problems)


def test_translations_keep_placeholders_and_line_breaks(catalog):
    problems = []
    for message in catalog:
        if not message.id:
            continue
        msgid = _msgid(message)
        for string in message.string if isinstance(message.string, tuple) else (message.string,):
            if sorted(FIELD.findall(string)) != sorted(FIELD.findall(msgid)):
                problems.append(f"{msgid!r} -> {string!r}: placeholders differ")
            if string.count("\n") != msgid.count("\n"):
                problems.append(f"{msgid!r} -> {string!r}: line breaks differ")
    assert problems == []


def test_the_compiled_catalog_is_the_po_file_compiled(catalog):
    compiled = io.BytesIO()
    write_mo(compiled, catalog)  # what `pybabel compile` writes
    assert MO.exists(), "run scripts/i18n.sh compile"
    assert MO.read_bytes() == compiled.getvalue(), "qinglang.mo is stale: run scripts/i18n.sh compile"


def test_english_translations_at_run_time(catalog):
    en = translations("en")
    assert en.gettext("已切换为中文。") == "Switched to English."
    for message in catalog:
        if message.id and isinstance(message.id, str):
            assert en.gettext(message.id) == message.string
    assert en.ngettext("{count} 个文件", "{count} 个文件", 1) == "{count} file"
    assert en.ngettext("{count} 个文件", "{count} 个文件", 2) == "{count} files"
    assert {en.gettext(name) for name in STATUS_NAMES_ZH.values()}.isdisjoint(STATUS_NAMES_ZH.values())


def test_aiogram_reads_the_same_catalog():
    i18n = I18n(path=LOCALES_DIR, default_locale=DEFAULT_LANGUAGE, domain=DOMAIN)
    assert i18n.gettext("已切换为中文。", locale="en") == "Switched to English."
    assert i18n.gettext("已切换为中文。", locale="zh") == "已切换为中文。"


def test_chinese_is_the_source_language():
    zh = translations("zh")
    assert zh.gettext("已切换为中文。") == "已切换为中文。"
    assert zh.gettext("请输入您的姓名：") == "请输入您的姓名："
    assert zh.ngettext("{count} 个文件", "{count} 个文件", 2) == "{count} 个文件"


@pytest.mark.parametrize(
    ("code", "language"),
    [("en-US", "en"), ("en", "en"), ("EN_gb", "en"), ("zh-hans", "zh"), ("zh-CN", "zh"), (None, "zh"), ("", "zh"),
     ("fr", "zh"), ("ru-RU", "zh")],
)
def test_language_of(code, language):
    assert language_of(code) == language
