"""Crisis signals: self-harm, violence or threats, a mass incident, whatever the complaint is about.

The words live in a YAML file (the packaged default is nlu/data/crisis.yaml; its header documents the
format), checked on load: a mistake is one line naming the file and the line. A phrase counts unless
the text says it does not mean it: inside a longer harmless word (跳楼价), just after a negation
(没想自杀), in a sentence that is a joke or talks about words (口头禅), or inside a quotation of someone
else (主播说‘不想活了’). Wrongly flagging costs a duty officer a look; missing one may cost a life, so
when in doubt the detector flags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path

from nlu.text import NluInputError, normalise
from qinglang.yamlfile import YamlDocument, YamlError, load_yaml

DEFAULT_CRISIS_PATH = Path(__file__).parent / "data" / "crisis.yaml"
_SENTENCE_END = "。！？!?；;\n…"
_CLAUSE_END = _SENTENCE_END + "，,、：:"
_QUOTES = {"‘": "’", "“": "”", "「": "」", "『": "』", '"': '"', "'": "'"}
_NEGATION_GAP = 3  # characters between a negation and the phrase it denies (没想过自杀)
_NEGATION_GAP_ASCII = 15  # not going to kill myself
_NOT_A_NEGATION_GAP = ("逼", "被", "让")  # 别逼我跳楼: 别 does not deny 跳楼


class Group(StrEnum):
    SELF_HARM = "self_harm"
    VIOLENCE = "violence"
    MASS_INCIDENT = "mass_incident"


class CrisisListError(YamlError):
    """The crisis word list is missing, unreadable or wrong; the message names the file and line."""

    @classmethod
    def from_yaml(cls, exc: YamlError) -> CrisisListError:
        return cls(exc.file, exc.line, exc.problem)


@dataclass(frozen=True)
class CrisisSignal:
    group: Group
    phrase: str  # the words of the text that raised it


@dataclass(frozen=True)
class _Exclusions:
    compounds: tuple[str, ...]
    negations: tuple[str, ...]
    jokes: tuple[str, ...]
    media: tuple[str, ...]
    speech_verbs: tuple[str, ...]
    threat_verbs: tuple[str, ...]


class CrisisDetector:
    def __init__(self, signals: dict[Group, re.Pattern[str]], exclusions: _Exclusions) -> None:
        self._signals = signals
        self._ex = exclusions
        self._not_meant = (*exclusions.jokes, *exclusions.media)  # a sentence with one of these is not meant

    @classmethod
    def load(cls, path: Path = DEFAULT_CRISIS_PATH) -> CrisisDetector:
        try:
            doc = load_yaml(path)
        except YamlError as exc:
            raise CrisisListError.from_yaml(exc) from None
        return cls(*_parse(doc))

    def detect(self, text: str) -> CrisisSignal | None:
        """The first crisis signal the text really gives, or None."""
        try:
            cleaned = normalise(text).lower()
        except NluInputError:
            return None
        cleaned = self._without_reported_speech(cleaned)
        for group, pattern in self._signals.items():
            for match in pattern.finditer(cleaned):
                if self._counts(cleaned, match.start(), match.end()):
                    return CrisisSignal(group, match.group())
        return None

    def is_crisis(self, text: str) -> bool:
        return self.detect(text) is not None

    # -- exclusions -------------------------------------------------------------------------------

    def _counts(self, text: str, start: int, end: int) -> bool:
        sentence = text[_last_boundary(text, start, _SENTENCE_END):_next_boundary(text, end, _SENTENCE_END)]
        if any(word in sentence for word in self._not_meant):
            return False
        if self._inside_compound(text, start, end):
            return False
        return not self._negated(text[_last_boundary(text, start, _CLAUSE_END):start])

    def _inside_compound(self, text: str, start: int, end: int) -> bool:
        for compound in self._ex.compounds:
            at = text.find(compound, max(0, start - len(compound)))
            while at != -1 and at < end:
                if at + len(compound) > start:
                    return True
                at = text.find(compound, at + 1)
        return False

    def _negated(self, before: str) -> bool:
        for negation in self._ex.negations:
            at = before.rfind(negation)
            if at == -1:
                continue
            gap = before[at + len(negation):]
            limit = _NEGATION_GAP_ASCII if negation.isascii() else _NEGATION_GAP
            if len(gap) <= limit and not any(c in gap for c in _NOT_A_NEGATION_GAP):
                return True
        return False

    def _without_reported_speech(self, text: str) -> str:
        """Blank out quotations of someone else's words (主播说‘不想活了’), keep the person's own."""
        out = []
        i = 0
        while i < len(text):
            close = _QUOTES.get(text[i])
            end = text.find(close, i + 1) if close else -1
            if end == -1:
                out.append(text[i])
                i += 1
                continue
            if self._reported(text[_last_boundary(text, i, _SENTENCE_END):i]):
                out.append(" " * (end + 1 - i))
            else:
                out.append(text[i:end + 1])
            i = end + 1
        return "".join(out)

    def _reported(self, lead: str) -> bool:
        """Is the quotation after `lead` someone else's words?"""
        lead = lead.rstrip(" :：").removesuffix("着")  # 喊着“……”
        verb = next((v for v in self._ex.speech_verbs if lead.endswith(v)), None)
        if verb is None or any(v in lead for v in self._ex.threat_verbs):
            return False
        clause = lead[_last_boundary(lead, len(lead), _CLAUSE_END):-len(verb)].strip()
        return not clause.startswith(("我", "i "))


def _last_boundary(text: str, before: int, marks: str) -> int:
    return max((text.rfind(m, 0, before) for m in marks), default=-1) + 1


def _next_boundary(text: str, after: int, marks: str) -> int:
    found = [at for at in (text.find(m, after) for m in marks) if at != -1]
    return min(found, default=len(text))


def _parse(doc: YamlDocument) -> tuple[dict[Group, re.Pattern[str]], _Exclusions]:
    data = doc.data
    if not isinstance(data, dict) or not isinstance(data.get("signals"), dict):
        raise CrisisListError(doc.name, doc.nearest_line("signals"), "needs a mapping 'signals' of word groups")
    unknown = set(data) - {"signals", "exclusions"}
    if unknown:
        key = sorted(unknown, key=str)[0]
        raise _error(doc, problem=f"unknown key {key!r}; expected signals, exclusions", path=(key,), key=True)
    signals: dict[Group, re.Pattern[str]] = {}
    for name, spec in data["signals"].items():
        if name not in Group.__members__.values():
            raise _error(doc, ("signals", name), f"unknown group {name!r}; one of: {', '.join(Group)}", key=True)
        if not isinstance(spec, dict) or set(spec) - {"phrases", "patterns"} or not spec:
            raise _error(doc, ("signals", name), "a group has 'phrases' and/or 'patterns' (lists)")
        alternatives = [_phrase_regex(p) for p in _strings(doc, ("signals", name, "phrases"), spec.get("phrases", []))]
        for index, pattern in enumerate(_strings(doc, ("signals", name, "patterns"), spec.get("patterns", []))):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise _error(doc, ("signals", name, "patterns", index), f"bad regular expression: {exc}") from None
            alternatives.append(f"(?:{pattern})")
        if not alternatives:
            raise _error(doc, ("signals", name), "a group needs at least one phrase or pattern")
        signals[Group(name)] = re.compile("|".join(alternatives))
    if not signals:
        raise _error(doc, ("signals",), "no word groups")
    raw = data.get("exclusions") or {}
    if not isinstance(raw, dict):
        raise _error(doc, ("exclusions",), "'exclusions' must be a mapping")
    names = [f.name for f in _Exclusions.__dataclass_fields__.values()]
    unknown = set(raw) - set(names)
    if unknown:
        key = sorted(unknown, key=str)[0]
        raise _error(doc, ("exclusions", key), f"unknown exclusion {key!r}; one of: {', '.join(names)}", key=True)
    exclusions = _Exclusions(**{
        name: tuple(w.lower() for w in _strings(doc, ("exclusions", name), raw.get(name, []))) for name in names
    })
    return signals, exclusions


def _phrase_regex(phrase: str) -> str:
    phrase = phrase.lower()
    if phrase.isascii():  # whole words: "poison" is not "food poisoning"
        return rf"(?<![a-z]){re.escape(phrase)}(?![a-z])"
    return re.escape(normalise(phrase))


def _strings(doc: YamlDocument, path: tuple, value: object) -> list[str]:
    if not isinstance(value, list):
        raise _error(doc, path, "must be a list of words")
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise _error(doc, (*path, index), f"must be a non-empty text, got {item!r}")
    return [item.strip() for item in value]


def _error(doc: YamlDocument, path: tuple, problem: str, *, key: bool = False) -> CrisisListError:
    return CrisisListError.from_yaml(doc.error(*path, problem=problem, key=key))


@cache
def default_detector() -> CrisisDetector:
    """The packaged word list, loaded once per process on first use."""
    return CrisisDetector.load()
