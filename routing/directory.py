"""Unit directory: the bureau's units (科室, 分局, 队, 所), the outside authorities a case can be
transferred to, and the district's streets, loaded from an administrator-edited YAML file.

The packaged default is ``routing/data/units.yaml``. Every mistake in the file is reported as a
``RoutingConfigError`` with one line ``<file>:<line>: <problem>``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from os import PathLike
from pathlib import Path
from typing import Any, Iterable, Mapping

from qinglang.yamlfile import YamlDocument, YamlError, load_yaml, one_line

__all__ = [
    "DEFAULT_UNITS_PATH",
    "STATION_OF_STREET",
    "Authority",
    "District",
    "RoutingConfigError",
    "Scope",
    "Unit",
    "UnitDirectory",
    "UnitType",
    "load_directory",
]

DEFAULT_UNITS_PATH = Path(__file__).resolve().parent / "data" / "units.yaml"

# The special lead/co value of a routing rule: "the station (所) of the merchant's street".
# Reserved, so no unit may use it as a code.
STATION_OF_STREET = "station_of_street"

_CODE_RE = re.compile(r"^[a-z][a-z0-9_]*$")


class RoutingConfigError(YamlError):
    """A routing data file (units or rules) is wrong. ``str()`` is one line: ``<file>:<line>: <problem>``."""

    @classmethod
    def from_yaml(cls, exc: YamlError) -> "RoutingConfigError":
        return cls(exc.file, exc.line, exc.problem)


class UnitType(StrEnum):
    SECTION = "section"  # 科室
    BRANCH = "branch"  # 分局
    TEAM = "team"  # 队
    STATION = "station"  # 市场监督管理所 (one or more streets)
    OFFICE = "office"  # 办公室


class Scope(StrEnum):
    """Where an authority is, relative to the district's province (a transfer is one of the first two)."""

    IN_PROVINCE = "in_province"
    OUT_OF_PROVINCE = "out_of_province"
    ANY = "any"  # depends on the case (e.g. the merchant's own market-supervision bureau)


@dataclass(frozen=True)
class Unit:
    code: str
    name: str
    name_en: str
    type: UnitType
    streets: tuple[str, ...] = ()  # canonical street names (stations only)
    aliases: tuple[str, ...] = ()

    @property
    def is_station(self) -> bool:
        return self.type is UnitType.STATION


@dataclass(frozen=True)
class Authority:
    """An outside body a case can be transferred to (移送)."""

    code: str
    name: str
    scope: Scope
    name_en: str = ""
    matters: str = ""  # what is transferred there, for people reading the directory


@dataclass(frozen=True)
class District:
    name: str  # 龙湾区
    city: str  # 温州市
    province: str  # 浙江省


# Provincial-level divisions by their short names; used to tell "another province" from "unknown".
_PROVINCE_STEMS: tuple[str, ...] = (
    "黑龙江", "内蒙古", "北京", "天津", "上海", "重庆", "河北", "山西", "辽宁", "吉林", "江苏", "浙江",
    "安徽", "福建", "江西", "山东", "河南", "湖北", "湖南", "广东", "海南", "四川", "贵州", "云南",
    "陕西", "甘肃", "青海", "台湾", "广西", "西藏", "宁夏", "新疆", "香港", "澳门",
)  # fmt: skip

_STREET_SUFFIXES = ("街道办事处", "街道办", "街道")


def _norm(text: str) -> str:
    """Comparison form of a name: NFKC (full-width brackets -> ASCII), no whitespace, case-folded."""
    return "".join(unicodedata.normalize("NFKC", text).split()).casefold()


def _street_stem(key: str) -> str:
    for suffix in _STREET_SUFFIXES:
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[: -len(suffix)]
    return key


def _province_stem(province: str) -> str | None:
    key = _norm(province)
    for stem in _PROVINCE_STEMS:
        if key.startswith(stem):
            return stem
    return None


class UnitDirectory:
    """The units, authorities and streets of one district (read-only)."""

    def __init__(
        self,
        district: District,
        units: Iterable[Unit],
        authorities: Iterable[Authority],
        path: str | None = None,
        street_aliases: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        """``street_aliases``: canonical street name -> other names of it. The loader has checked that
        no street is claimed twice; here the first claim wins."""
        self.district = district
        self.units: tuple[Unit, ...] = tuple(units)
        self.authorities: tuple[Authority, ...] = tuple(authorities)
        self.path = path
        self._by_code = {u.code: u for u in self.units}
        self._authority_by_code = {a.code: a for a in self.authorities}
        self._names: dict[str, Unit] = {}
        for u in self.units:
            for label in (u.code, u.name, u.name_en, *u.aliases):
                if label:
                    self._names.setdefault(_norm(label), u)
        aliases_of = {k: tuple(v) for k, v in (street_aliases or {}).items()}
        self._streets: dict[str, tuple[Unit, str]] = {}  # street key -> (station, canonical name)
        for u in self.stations:
            for street in u.streets:
                for label in (street, *aliases_of.get(street, ())):
                    full = _norm(label)
                    for key in (full, _street_stem(full)):
                        self._streets.setdefault(key, (u, street))
        names = (district.province, district.city, district.name)
        self._prefixes = tuple(sorted({_norm(x) for n in names for x in (n, _admin_stem(n)) if x}, key=lambda x: (-len(x), x)))

    # -- units ---------------------------------------------------------------------------------
    def unit(self, code: str) -> Unit:
        """The unit with this code; KeyError if there is none."""
        return self._by_code[code]

    def has_unit(self, code: str) -> bool:
        return code in self._by_code

    def find(self, text: str | None) -> Unit | None:
        """A unit by its code, Chinese name, English name or an alias (full-/half-width and spaces ignored)."""
        if not text:
            return None
        return self._names.get(_norm(text))

    @property
    def stations(self) -> tuple[Unit, ...]:
        return tuple(u for u in self.units if u.is_station)

    # -- authorities ---------------------------------------------------------------------------
    def authority(self, code: str) -> Authority:
        """The authority with this code; KeyError if there is none."""
        return self._authority_by_code[code]

    def has_authority(self, code: str) -> bool:
        return code in self._authority_by_code

    # -- streets -------------------------------------------------------------------------------
    def _street_keys(self, street: str) -> list[str]:
        key = _norm(street)
        keys = [key]
        # "浙江省温州市龙湾区永中街道" -> "永中街道": drop the district's own province/city/district names
        rest = key
        changed = True
        while changed:
            changed = False
            for prefix in self._prefixes:  # longest first; start again after each cut
                if rest.startswith(prefix) and len(rest) > len(prefix):
                    rest = rest[len(prefix) :]
                    changed = True
                    break
        if rest != key:
            keys.append(rest)
        return keys + [_street_stem(k) for k in keys]

    def _lookup_street(self, street: str | None) -> tuple[Unit, str] | None:
        if not street or not street.strip():
            return None
        for key in self._street_keys(street):
            found = self._streets.get(key)
            if found is not None:
                return found
        return None

    def station_for_street(self, street: str | None) -> Unit | None:
        """The station (所) whose area includes this street: by name with or without 街道, or an alias."""
        found = self._lookup_street(street)
        return found[0] if found else None

    def canonical_street(self, street: str | None) -> str | None:
        """The street's name as written in the directory (e.g. "永中" -> "永中街道"); None if unknown."""
        found = self._lookup_street(street)
        return found[1] if found else None

    @property
    def streets(self) -> tuple[str, ...]:
        return tuple(s for u in self.stations for s in u.streets)

    # -- jurisdiction --------------------------------------------------------------------------
    def province_scope(self, province: str | None) -> Scope | None:
        """IN_PROVINCE if ``province`` is the district's province ("浙江", "浙江省", "浙江省杭州市" ...),
        OUT_OF_PROVINCE if it names another provincial-level division, None if empty or not recognised."""
        if not province or not province.strip():
            return None
        own = _province_stem(self.district.province)
        given = _province_stem(province)
        if given is None:
            # not one of the known divisions: accept only the district's own province spelled in full
            return Scope.IN_PROVINCE if _norm(province) == _norm(self.district.province) else None
        return Scope.IN_PROVINCE if given == own else Scope.OUT_OF_PROVINCE


def _admin_stem(name: str) -> str:
    """"龙湾区" -> "龙湾", "温州市" -> "温州", "浙江省" -> "浙江" (names people write without the suffix)."""
    for suffix in ("自治区", "省", "市", "区", "县"):
        if name.endswith(suffix) and len(name) > len(suffix) + 1:
            return name[: -len(suffix)]
    return name


# ------------------------------------------------------------------------------------------------
# loading and validation


class _Checker:
    """Helpers that raise a RoutingConfigError at the line of a path in the document."""

    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc

    def fail(self, *path: Any, problem: str, key: bool = False) -> RoutingConfigError:
        return RoutingConfigError.from_yaml(self.doc.error(*path, problem=problem, key=key))

    def mapping(self, value: Any, *path: Any, what: str) -> Mapping[Any, Any]:
        if not isinstance(value, dict):
            raise self.fail(*path, problem=f"{what} must be a mapping (key: value lines), not {_describe(value)}")
        return value

    def sequence(self, value: Any, *path: Any, what: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(*path, problem=f"{what} must be a list (lines starting with '- '), not {_describe(value)}")
        return value

    def keys(self, value: Mapping[Any, Any], *path: Any, allowed: Iterable[str], required: Iterable[str], what: str) -> None:
        allowed = tuple(allowed)
        for k in value:
            if k not in allowed:
                raise self.fail(*path, k, key=True, problem=f"unknown key {k!r} in {what} (allowed: {', '.join(allowed)})")
        for k in required:
            if k not in value or value[k] is None:
                raise self.fail(*path, problem=f"{what} has no {k!r}")

    def text(self, value: Any, *path: Any, what: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(*path, problem=f"{what} must be non-empty text, not {_describe(value)}")
        return value.strip()

    def texts(self, value: Any, *path: Any, what: str) -> list[str]:
        """A list of texts; a single text is accepted as a list of one."""
        if value is None:
            return []
        if isinstance(value, str):
            return [self.text(value, *path, what=what)]
        items = self.sequence(value, *path, what=what)
        return [self.text(v, *path, i, what=f"each of {what}") for i, v in enumerate(items)]


def _describe(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a yes/no value)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    return repr(one_line(value, 60))


def _load_doc(path: str | PathLike[str] | None, default: Path) -> YamlDocument:
    try:
        return load_yaml(default if path is None else path)
    except YamlError as exc:
        raise RoutingConfigError.from_yaml(exc) from None


def load_directory(path: str | PathLike[str] | None = None) -> UnitDirectory:
    """Load and validate a units file (None: the packaged ``routing/data/units.yaml``)."""
    doc = _load_doc(path, DEFAULT_UNITS_PATH)
    c = _Checker(doc)
    if doc.data is None:
        raise RoutingConfigError(doc.name, 1, "the file is empty (expected district, units and authorities)")
    root = c.mapping(doc.data, what="the units file")
    c.keys(root, allowed=("district", "units", "authorities"), required=("district", "units", "authorities"), what="the units file")

    # district
    d = c.mapping(root["district"], "district", what="district")
    c.keys(d, "district", allowed=("name", "city", "province"), required=("name", "city", "province"), what="district")
    district = District(
        name=c.text(d["name"], "district", "name", what="district name"),
        city=c.text(d["city"], "district", "city", what="district city"),
        province=c.text(d["province"], "district", "province", what="district province"),
    )

    # units
    units: list[Unit] = []
    code_line: dict[str, int] = {}
    name_owner: dict[str, tuple[str, int]] = {}  # normalised label -> (unit code, line)
    street_owner: dict[str, tuple[str, str, int]] = {}  # street key -> (station code, street, line)
    street_aliases: dict[str, list[str]] = {}  # canonical street -> its aliases
    raw_units = c.sequence(root["units"], "units", what="units")
    if not raw_units:
        raise c.fail("units", problem="units is an empty list")
    unit_keys = ("code", "name", "name_en", "type", "streets", "aliases")
    for i, raw in enumerate(raw_units):
        p = ("units", i)
        u = c.mapping(raw, *p, what="each unit")
        c.keys(u, *p, allowed=unit_keys, required=("code", "name", "name_en", "type"), what="a unit")
        code = c.text(u["code"], *p, "code", what="unit code")
        if not _CODE_RE.match(code):
            raise c.fail(*p, "code", problem=f"unit code {code!r} must be lowercase ASCII letters, digits and _ (starting with a letter)")
        if code == STATION_OF_STREET:
            raise c.fail(*p, "code", problem=f"{STATION_OF_STREET!r} is reserved for routing rules, choose another unit code")
        if code in code_line:
            raise c.fail(*p, "code", problem=f"duplicate unit code {code!r} (first at line {code_line[code]})")
        code_line[code] = doc.line(*p, "code") or 1
        name = c.text(u["name"], *p, "name", what="unit name")
        name_en = c.text(u["name_en"], *p, "name_en", what="unit name_en")
        type_raw = c.text(u["type"], *p, "type", what="unit type")
        try:
            utype = UnitType(type_raw)
        except ValueError:
            raise c.fail(*p, "type", problem=f"unknown unit type {type_raw!r} (one of: {', '.join(t.value for t in UnitType)})") from None
        aliases = c.texts(u.get("aliases"), *p, "aliases", what="aliases")

        labels: list[tuple[str, tuple[Any, ...]]] = [(code, (*p, "code")), (name, (*p, "name")), (name_en, (*p, "name_en"))]
        if isinstance(u.get("aliases"), list):
            labels += [(a, (*p, "aliases", j)) for j, a in enumerate(aliases)]
        else:
            labels += [(a, (*p, "aliases")) for a in aliases]
        seen_here: set[str] = set()
        for label, lpath in labels:
            key = _norm(label)
            if key in seen_here:
                continue  # e.g. an alias equal to the unit's own name: harmless
            seen_here.add(key)
            if key in name_owner:
                other, line = name_owner[key]
                raise c.fail(*lpath, problem=f"name {label!r} of unit {code!r} is already used by unit {other!r} (line {line})")
            name_owner[key] = (code, doc.line(*lpath) or 1)

        streets: list[str] = []
        raw_streets = u.get("streets")
        if utype is UnitType.STATION:
            if raw_streets is None or raw_streets == []:
                raise c.fail(*p, problem=f"station {code!r} has no streets (list the streets (街道) it covers)")
            for j, s in enumerate(c.sequence(raw_streets, *p, "streets", what="streets")):
                sp = (*p, "streets", j)
                if isinstance(s, dict):
                    c.keys(s, *sp, allowed=("name", "aliases"), required=("name",), what="a street")
                    sname = c.text(s["name"], *sp, "name", what="street name")
                    saliases = c.texts(s.get("aliases"), *sp, "aliases", what="street aliases")
                    street_aliases.setdefault(sname, []).extend(saliases)
                    spaths = [(sname, (*sp, "name"))] + [
                        (a, (*sp, "aliases", k) if isinstance(s.get("aliases"), list) else (*sp, "aliases"))
                        for k, a in enumerate(saliases)
                    ]
                else:
                    sname = c.text(s, *sp, what="street name")
                    spaths = [(sname, sp)]
                if sname in streets:
                    raise c.fail(*sp, problem=f"street {sname!r} is listed twice for station {code!r}")
                streets.append(sname)
                for label, lpath in spaths:
                    full = _norm(label)
                    for key in dict.fromkeys((full, _street_stem(full))):
                        owner = street_owner.get(key)
                        if owner is not None and (owner[0], owner[1]) != (code, sname):
                            oc, os_, ol = owner
                            claim = f"station {oc!r}" if oc != code else "this station"
                            raise c.fail(*lpath, problem=f"street {label!r} is already claimed by {claim} as {os_!r} (line {ol})")
                        street_owner[key] = (code, sname, doc.line(*lpath) or 1)
        elif raw_streets is not None:
            raise c.fail(*p, "streets", key=True, problem=f"only stations (type: station) have streets; {code!r} is a {utype.value}")
        units.append(Unit(code=code, name=name, name_en=name_en, type=utype, streets=tuple(streets), aliases=tuple(aliases)))

    # authorities
    authorities: list[Authority] = []
    auth_line: dict[str, int] = {}
    for i, raw in enumerate(c.sequence(root["authorities"], "authorities", what="authorities")):
        p = ("authorities", i)
        a = c.mapping(raw, *p, what="each authority")
        c.keys(a, *p, allowed=("code", "name", "name_en", "scope", "matters"), required=("code", "name", "scope"), what="an authority")
        code = c.text(a["code"], *p, "code", what="authority code")
        if not _CODE_RE.match(code):
            raise c.fail(*p, "code", problem=f"authority code {code!r} must be lowercase ASCII letters, digits and _ (starting with a letter)")
        if code in auth_line:
            raise c.fail(*p, "code", problem=f"duplicate authority code {code!r} (first at line {auth_line[code]})")
        auth_line[code] = doc.line(*p, "code") or 1
        scope_raw = c.text(a["scope"], *p, "scope", what="authority scope")
        try:
            scope = Scope(scope_raw)
        except ValueError:
            raise c.fail(*p, "scope", problem=f"unknown scope {scope_raw!r} (one of: {', '.join(s.value for s in Scope)})") from None
        authorities.append(
            Authority(
                code=code,
                name=c.text(a["name"], *p, "name", what="authority name"),
                scope=scope,
                name_en=c.text(a["name_en"], *p, "name_en", what="authority name_en") if a.get("name_en") is not None else "",
                matters=c.text(a["matters"], *p, "matters", what="authority matters") if a.get("matters") is not None else "",
            )
        )

    return UnitDirectory(district, units, authorities, path=doc.name, street_aliases=street_aliases)
