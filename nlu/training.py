"""The Rasa NLU YAML under nlu/rasa/data: the single source of training data for both backends."""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

from nlu.taxonomy import CATEGORY_IDS
from qinglang.errors import ConfigError

RASA_DIR = Path(__file__).parent / "rasa"
DATA_DIR = RASA_DIR / "data"
USERDICT_DIR = RASA_DIR / "userdict"

KIND_INTENTS = {"kind_complaint": "complaint", "kind_tipoff": "tipoff", "kind_consultation": "consultation"}
DIALOGUE_INTENTS = frozenset({"greet", "status_query", "cancel", "help", "out_of_scope"})

# [shown text](entity) or [shown text]{"entity": ...}: keep the shown text
_ANNOTATION = re.compile(r"\[([^\]]+)\](?:\([^)]*\)|\{[^}]*\})")


@dataclass
class TrainingData:
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    lookups: dict[str, list[str]] = field(default_factory=dict)
    synonyms: dict[str, str] = field(default_factory=dict)  # variant (lower-case) -> canonical
    regexes: dict[str, list[str]] = field(default_factory=dict)
    fingerprint: str = ""

    def texts_and_labels(self, intents: frozenset[str] | set[str]) -> tuple[list[str], list[str]]:
        texts, labels = [], []
        for intent in sorted(intents):
            for text in self.examples.get(intent, []):
                texts.append(text)
                labels.append(intent)
        return texts, labels

    @property
    def category_intents(self) -> frozenset[str]:
        return frozenset(i for i in self.examples if i in CATEGORY_IDS)


def strip_annotations(text: str) -> str:
    return _ANNOTATION.sub(r"\1", text)


def fingerprint(paths: list[Path], root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def training_files(data_dir: Path = DATA_DIR) -> list[Path]:
    return sorted(p for p in data_dir.rglob("*.yml") if p.is_file())


def load_training_data(data_dir: Path = DATA_DIR) -> TrainingData:
    files = training_files(data_dir)
    if not files:
        raise ConfigError(f"no NLU training data (*.yml) under {data_dir}")
    data = TrainingData()
    for path in files:
        _read_file(path, data)
    # the user dictionary changes tokens, so it is part of what a model was trained from
    data.fingerprint = fingerprint(files, data_dir) + fingerprint(sorted(USERDICT_DIR.glob("*.txt")), USERDICT_DIR)[:8]
    return data


@cache
def default_training_data() -> TrainingData:
    return load_training_data()


def _read_file(path: Path, data: TrainingData) -> None:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f"{path}:{line + 1}" if line is not None else str(path)
        raise ConfigError(f"{where}: not valid YAML training data") from None
    for item in document.get("nlu") or []:
        items = _examples(item.get("examples", ""))
        if "intent" in item:
            data.examples[item["intent"]].extend(strip_annotations(t) for t in items)
        elif "lookup" in item:
            data.lookups.setdefault(item["lookup"], []).extend(items)
        elif "synonym" in item:
            for variant in items:
                data.synonyms[variant.lower()] = item["synonym"]
            data.synonyms[str(item["synonym"]).lower()] = item["synonym"]
        elif "regex" in item:
            data.regexes.setdefault(item["regex"], []).extend(items)


def _examples(block: str | list) -> list[str]:
    lines = block if isinstance(block, list) else block.splitlines()
    out = []
    for line in lines:
        text = str(line).strip()
        if text.startswith("- "):
            text = text[2:].strip()
        if text:
            out.append(text)
    return out
