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
from typing import NoReturn

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from intake.calendar import MAX_DAYS, DueDate, WorkingCalendar
from nlu.taxonomy import Kind
from qinglang.errors import ConfigError

DEFAULT_POLICY_PATH = Path(__file__).parent / "data" / "deadlines.yaml"


class PolicyError(ConfigError):
    """The deadline policy file is missing, unreadable or wrong; the message says where."""


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


def _choices(enum: type[StrEnum]) -> str:
    values = [e.value for e in enum]
    return ", ".join(values[:-1]) + " or " + values[-1]


class _Reader:
    """Walks the composed YAML nodes, so every complaint can name its line."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._constructor = yaml.constructor.SafeConstructor()

    def fail(self, at: Node | int, problem: str) -> NoReturn:
        line = at if isinstance(at, int) else at.start_mark.line + 1
        raise PolicyError(f"{self.name}:{line}: {problem}")

    def value(self, node: Node, what: str) -> object:
        if not isinstance(node, ScalarNode):
            self.fail(node, f"{what} must be a single value, not a list or mapping")
        try:
            return self._constructor.construct_object(node, deep=True)
        except (ValueError, yaml.YAMLError) as e:
            self.fail(node, f"{what}: cannot read {node.value!r} ({e})")

    def text(self, node: Node, what: str) -> str:
        v = self.value(node, what)
        if not isinstance(v, str) or not v.strip():
            self.fail(node, f"{what} must be non-empty text, got {v!r}")
        return v.strip()

    def sequence(self, node: Node, what: str) -> list[Node]:
        if not isinstance(node, SequenceNode):
            self.fail(node, f"{what} must be a list")
        if not node.value:
            self.fail(node, f"{what} is empty")
        return node.value

    def mapping(
        self, node: Node, what: str, *, required: set[str], optional: set[str] = frozenset()
    ) -> dict[str, Node]:
        if not isinstance(node, MappingNode):
            self.fail(node, f"{what} must be a mapping of keys to values")
        out: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key = self.value(key_node, f"{what}: key")
            if key in out:
                self.fail(key_node, f"{what}: key {key!r} appears twice")
            if key not in required | optional:
                allowed = ", ".join(sorted(required | optional))
                self.fail(key_node, f"{what}: unknown key {key!r} (allowed: {allowed})")
            out[key] = value_node
        missing = sorted(required - out.keys())
        if missing:
            self.fail(node, f"{what}: missing {', '.join(repr(m) for m in missing)}")
        return out


def load_policy(path: Path | None = None) -> DeadlinePolicy:
    """Read and check a deadline policy file; ``None`` means the packaged default."""
    path = DEFAULT_POLICY_PATH if path is None else Path(path)
    name = str(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise PolicyError(f"{name}: deadline policy file not found") from None
    except UnicodeDecodeError as e:
        raise PolicyError(f"{name}: cannot read deadline policy: not UTF-8 text ({e.reason})") from None
    except OSError as e:
        raise PolicyError(f"{name}: cannot read deadline policy: {e.strerror or e}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = " ".join(p for p in (e.context, e.problem) if p)
        raise PolicyError(f"{name}:{line}: YAML syntax error: {problem}") from None
    except yaml.YAMLError as e:
        raise PolicyError(f"{name}: YAML error: {e}") from None

    r = _Reader(name)
    if root is None:
        r.fail(1, "the file is empty; expected a 'clocks:' list")
    top = r.mapping(root, "policy file", required={"clocks"})
    clocks: list[Clock] = []
    seen: set[str] = set()
    for clock_node in r.sequence(top["clocks"], "clocks"):
        clock = _read_clock(r, clock_node)
        if clock.id in seen:
            r.fail(clock_node, f"clock {clock.id!r} is defined twice")
        seen.add(clock.id)
        clocks.append(clock)
    return DeadlinePolicy(source=name, clocks=tuple(clocks))


def _read_clock(r: _Reader, node: Node) -> Clock:
    fields = r.mapping(
        node, "clock", required=_CLOCK_KEYS - {"real_name_only"}, optional={"real_name_only"}
    )
    clock_id = r.text(fields["id"], "clock id")
    if not _ID.match(clock_id):
        r.fail(fields["id"], f"clock id must be lower_snake_case, got {clock_id!r}")
    where = f"clock {clock_id!r}"

    labels = r.mapping(fields["labels"], f"{where}: labels", required={"zh", "en"})
    label_zh = r.text(labels["zh"], f"{where}: labels.zh")
    label_en = r.text(labels["en"], f"{where}: labels.en")

    kinds: list[Kind] = []
    for kind_node in r.sequence(fields["applies_to"], f"{where}: applies_to"):
        raw = r.value(kind_node, f"{where}: applies_to")
        if raw not in set(Kind):
            r.fail(kind_node, f"{where}: unknown kind {raw!r} (expected {_choices(Kind)})")
        if Kind(raw) in kinds:
            r.fail(kind_node, f"{where}: kind {raw!r} listed twice")
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
    for version_node in r.sequence(fields["versions"], f"{where}: versions"):
        version = _read_version(r, version_node, where)
        line = version_node.start_mark.line + 1
        if version.effective_from in first_seen:
            r.fail(
                version_node,
                f"{where}: two versions take effect on {version.effective_from} "
                f"(the other is at line {first_seen[version.effective_from]})",
            )
        first_seen[version.effective_from] = line
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


def _read_version(r: _Reader, node: Node, where: str) -> ClockVersion:
    fields = r.mapping(
        node, f"{where}: version", required=_VERSION_KEYS - {"extension"}, optional={"extension"}
    )

    effective_from = r.value(fields["effective_from"], f"{where}: effective_from")
    if isinstance(effective_from, str):
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
