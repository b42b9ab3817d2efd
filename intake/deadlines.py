"""Deadline clocks: their lengths and legal basis come from a YAML policy file, not from code.

The packaged default is ``intake/data/deadlines.yaml`` (its header documents the format); a
deployment may load its own file. Each clock has versions because the rules change: the version
that applies to a case is the one in force on the case's receipt date (the governing date).

A mistake in the file is reported as one line naming the file, the line and the problem, e.g.
``deadlines.yaml:14: clock 'tipoff_check': unit must be working_days or calendar_days, got 'weeks'``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn

from intake.calendar import MAX_DAYS, DueDate, WorkingCalendar
from nlu.taxonomy import Kind
from qinglang.yamlfile import DuplicateKeyError, EncodingError, YamlDocument, YamlError, load_yaml

DEFAULT_POLICY_PATH = Path(__file__).parent / "data" / "deadlines.yaml"


class PolicyError(YamlError):
    """The deadline policy file is missing, unreadable or wrong; the message says where."""

    @classmethod
    def from_yaml(cls, exc: YamlError) -> PolicyError:
        """The loader's error as a PolicyError, in this file's wording for duplicate keys and encoding."""
        problem = exc.problem
        if isinstance(exc, DuplicateKeyError):
            problem = f"key {exc.key!r} appears twice (first at line {exc.first_line})"
        elif isinstance(exc, EncodingError):
            problem = "cannot read the file: it is not UTF-8 text"
        return cls(exc.file, exc.line, problem)


class Unit(StrEnum):
    WORKING_DAYS = "working_days"
    CALENDAR_DAYS = "calendar_days"


class StartsAt(StrEnum):
    RECEIVED = "received"  # the complaint or tip-off arrived
    ACCEPTED = "accepted"  # the complaint was accepted (受理)
    DECIDED = "decided"  # the decision whether to open a case (立案) was made


@dataclass(frozen=True)
class ClockVersion:
    effective_from: date
    length: int
    unit: Unit
    basis: str
    extension: int | None = None  # extra working days, with approval


@dataclass(frozen=True)
class Clock:
    id: str
    label_zh: str
    label_en: str
    applies_to: tuple[Kind, ...]
    starts_at: StartsAt
    real_name_only: bool
    versions: tuple[ClockVersion, ...]  # sorted by effective_from, never empty

    def version_for(self, governing_date: date) -> ClockVersion:
        """The latest version in force on ``governing_date``; before all of them, the earliest."""
        chosen = self.versions[0]
        for version in self.versions:
            if version.effective_from <= governing_date:
                chosen = version
        return chosen


@dataclass(frozen=True)
class DeadlinePolicy:
    source: str
    clocks: tuple[Clock, ...]

    def clock(self, clock_id: str) -> Clock:
        for c in self.clocks:
            if c.id == clock_id:
                return c
        raise KeyError(f"no clock {clock_id!r} in {self.source}")

    def clocks_for(self, kind: Kind | str, *, starts_at: StartsAt | str, real_name: bool) -> list[Clock]:
        """The clocks a case of ``kind`` starts when ``starts_at`` happens, in file order."""
        kind, starts_at = Kind(kind), StartsAt(starts_at)
        return [
            c
            for c in self.clocks
            if kind in c.applies_to and c.starts_at is starts_at and (real_name or not c.real_name_only)
        ]


def compute_due(
    version: ClockVersion, start: date, calendar: WorkingCalendar, *, extended: bool = False
) -> DueDate:
    """The due date of a clock that started on ``start`` (which is not counted).

    ``extended`` adds the approved extension, always in working days.
    """
    if version.unit is Unit.WORKING_DAYS:
        base = calendar.add_working_days(start, version.length)
    else:
        base = calendar.add_calendar_days(start, version.length)
    if not extended:
        return base
    if version.extension is None:
        raise ValueError(f"this clock (in force from {version.effective_from}) has no extension")
    longer = calendar.add_working_days(base.on, version.extension)
    return DueDate(longer.on, base.provisional or longer.provisional)


# --- loading -----------------------------------------------------------------------------------

_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_CLOCK_KEYS = {"id", "labels", "applies_to", "starts_at", "real_name_only", "versions"}
_VERSION_KEYS = {"effective_from", "length", "unit", "extension", "basis"}

_At = tuple[Any, ...]  # a path into the policy document: mapping keys and list indices


def _choices(enum: type[StrEnum]) -> str:
    values = [e.value for e in enum]
    return ", ".join(values[:-1]) + " or " + values[-1]


class _Reader:
    """Reads values of the policy document by path, so every complaint can name its line."""

    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc

    def fail(self, at: _At, problem: str, *, key: bool = False) -> NoReturn:
        raise PolicyError.from_yaml(self.doc.error(*at, problem=problem, key=key))

    def get(self, at: _At) -> Any:
        data = self.doc.data
        for step in at:
            data = data[step]
        return data

    def value(self, at: _At, what: str) -> object:
        v = self.get(at)
        if isinstance(v, (dict, list)):
            self.fail(at, f"{what} must be a single value, not a list or mapping")
        return v

    def text(self, at: _At, what: str) -> str:
        v = self.value(at, what)
        if not isinstance(v, str) or not v.strip():
            self.fail(at, f"{what} must be non-empty text, got {v!r}")
        return v.strip()

    def sequence(self, at: _At, what: str) -> list[_At]:
        """The paths of the items of the non-empty list at ``at``."""
        items = self.get(at)
        if not isinstance(items, list):
            self.fail(at, f"{what} must be a list")
        if not items:
            self.fail(at, f"{what} is empty")
        return [(*at, i) for i in range(len(items))]

    def mapping(self, at: _At, what: str, *, required: set[str], optional: set[str] = frozenset()) -> dict[str, _At]:
        """The path of each key's value in the mapping at ``at``, after checking its keys."""
        fields = self.get(at)
        if not isinstance(fields, dict):
            self.fail(at, f"{what} must be a mapping of keys to values")
        for key in fields:
            if key not in required | optional:
                allowed = ", ".join(sorted(required | optional))
                self.fail((*at, key), f"{what}: unknown key {key!r} (allowed: {allowed})", key=True)
        missing = sorted(required - fields.keys())
        if missing:
            self.fail(at, f"{what}: missing {', '.join(repr(m) for m in missing)}")
        return {key: (*at, key) for key in fields}


def load_policy(path: Path | None = None) -> DeadlinePolicy:
    """Read and check a deadline policy file; ``None`` means the packaged default."""
    try:
        doc = load_yaml(DEFAULT_POLICY_PATH if path is None else path)
    except YamlError as exc:
        raise PolicyError.from_yaml(exc) from None
    if doc.data is None:
        raise PolicyError(doc.name, 1, "the file is empty; expected a 'clocks:' list")
    r = _Reader(doc)
    top = r.mapping((), "policy file", required={"clocks"})
    clocks: list[Clock] = []
    seen: set[str] = set()
    for clock_at in r.sequence(top["clocks"], "clocks"):
        clock = _read_clock(r, clock_at)
        if clock.id in seen:
            r.fail(clock_at, f"clock {clock.id!r} is defined twice")
        seen.add(clock.id)
        clocks.append(clock)
    return DeadlinePolicy(source=doc.name, clocks=tuple(clocks))


def _read_clock(r: _Reader, at: _At) -> Clock:
    fields = r.mapping(at, "clock", required=_CLOCK_KEYS - {"real_name_only"}, optional={"real_name_only"})
    clock_id = r.text(fields["id"], "clock id")
    if not _ID.match(clock_id):
        r.fail(fields["id"], f"clock id must be lower_snake_case, got {clock_id!r}")
    where = f"clock {clock_id!r}"

    labels = r.mapping(fields["labels"], f"{where}: labels", required={"zh", "en"})
    label_zh = r.text(labels["zh"], f"{where}: labels.zh")
    label_en = r.text(labels["en"], f"{where}: labels.en")

    kinds: list[Kind] = []
    for kind_at in r.sequence(fields["applies_to"], f"{where}: applies_to"):
        raw = r.value(kind_at, f"{where}: applies_to")
        if raw not in set(Kind):
            r.fail(kind_at, f"{where}: unknown kind {raw!r} (expected {_choices(Kind)})")
        if Kind(raw) in kinds:
            r.fail(kind_at, f"{where}: kind {raw!r} listed twice")
        kinds.append(Kind(raw))

    raw = r.value(fields["starts_at"], f"{where}: starts_at")
    if raw not in set(StartsAt):
        r.fail(fields["starts_at"], f"{where}: starts_at must be {_choices(StartsAt)}, got {raw!r}")
    starts_at = StartsAt(raw)

    real_name_only = False
    if "real_name_only" in fields:
        real_name_only = r.value(fields["real_name_only"], f"{where}: real_name_only")
        if not isinstance(real_name_only, bool):
            r.fail(fields["real_name_only"], f"{where}: real_name_only must be true or false")

    versions: list[ClockVersion] = []
    first_seen: dict[date, int] = {}
    for version_at in r.sequence(fields["versions"], f"{where}: versions"):
        version = _read_version(r, version_at, where)
        if version.effective_from in first_seen:
            r.fail(
                version_at,
                f"{where}: two versions take effect on {version.effective_from} "
                f"(the other is at line {first_seen[version.effective_from]})",
            )
        first_seen[version.effective_from] = r.doc.nearest_line(*version_at)
        versions.append(version)
    versions.sort(key=lambda v: v.effective_from)

    return Clock(
        id=clock_id,
        label_zh=label_zh,
        label_en=label_en,
        applies_to=tuple(kinds),
        starts_at=starts_at,
        real_name_only=real_name_only,
        versions=tuple(versions),
    )


def _read_version(r: _Reader, at: _At, where: str) -> ClockVersion:
    fields = r.mapping(at, f"{where}: version", required=_VERSION_KEYS - {"extension"}, optional={"extension"})

    effective_from = r.value(fields["effective_from"], f"{where}: effective_from")
    if isinstance(effective_from, str):  # quoted, or no real date (2026-02-30)
        try:
            effective_from = date.fromisoformat(effective_from.strip())
        except ValueError:
            pass
    if isinstance(effective_from, datetime) or not isinstance(effective_from, date):
        r.fail(
            fields["effective_from"],
            f"{where}: effective_from must be a date like 2026-04-15, got {effective_from!r}",
        )

    def whole(key: str) -> int:
        v = r.value(fields[key], f"{where}: {key}")
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_DAYS:
            r.fail(fields[key], f"{where}: {key} must be a whole number of days from 1 to {MAX_DAYS}, got {v!r}")
        return v

    length = whole("length")
    extension = whole("extension") if "extension" in fields else None

    unit = r.value(fields["unit"], f"{where}: unit")
    if unit not in set(Unit):
        r.fail(fields["unit"], f"{where}: unit must be {_choices(Unit)}, got {unit!r}")

    return ClockVersion(
        effective_from=effective_from,
        length=length,
        unit=Unit(unit),
        basis=r.text(fields["basis"], f"{where}: basis"),
        extension=extension,
    )
