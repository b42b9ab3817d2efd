"""Routing rules: which unit leads a case, which units assist, and when a case is transferred.

The rules are an ordered list in an administrator-edited YAML file (packaged default:
``routing/data/rules.yaml``); the first rule whose ``match`` fits the case decides its ``route``.

A case is described by a ``RoutingRequest``: its kind (投诉/举报/咨询), category, the seed's focus
area (整治重点 1-14, or None) and what is known of the merchant's location. The location is reduced
to one of four *merchant situations*:

* ``in_district`` on a known street  (``in_district`` true and the street is one of a station's streets)
* ``in_district`` with an unknown street (no street, or a street no station covers)
* ``out_of_district``  (``in_district`` false; also when ``in_district`` is unknown but the province
  is recognised as another province than the district's: a merchant in 广东省 is not in 龙湾区)
* ``unknown``

Loading checks every rule and then that the rules route *every* kind x category x merchant situation
x focus area (each of the category's focus areas, and none), so ``route()`` never finds no rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from itertools import product
from os import PathLike
from pathlib import Path
from typing import Any, Iterable

from nlu.taxonomy import CATEGORIES, CATEGORY_IDS, FOCUS_AREAS, KIND_NAMES_ZH, Kind, category as taxonomy_category

from .directory import (
    STATION_OF_STREET,
    Authority,
    RoutingConfigError,
    Scope,
    Unit,
    UnitDirectory,
    _Checker,
    _describe,
    _load_doc,
    load_directory,
)

__all__ = [
    "DEFAULT_RULES_PATH",
    "EDITED_RULES_PATH",
    "STATION_OF_STREET",
    "MerchantLocation",
    "MerchantSituation",
    "RoutingConfigError",
    "RoutingDecision",
    "RoutingRequest",
    "RoutingTable",
    "Rule",
    "RuleMatch",
    "RuleRoute",
    "Transfer",
    "active_rules_path",
    "edited_rules_path",
    "load_routing",
    "load_rules",
]

DEFAULT_RULES_PATH = Path(__file__).resolve().parent / "data" / "rules.yaml"
# where the console saves edited rules when no rules file is configured (QINGLANG_ROUTING_FILE unset):
# under the data directory, never into the installed package
EDITED_RULES_PATH = Path("config") / "rules.yaml"


def edited_rules_path(data_dir: str | PathLike[str]) -> Path:
    """The copy of the rules saved from the console, in the data directory."""
    return Path(data_dir) / EDITED_RULES_PATH


def active_rules_path(routing_file: str | PathLike[str] | None, data_dir: str | PathLike[str]) -> Path | None:
    """The rules file to load: the configured one; without one, the copy saved from the console if there
    is one; else None (the packaged default)."""
    if routing_file:
        return Path(routing_file)
    edited = edited_rules_path(data_dir)
    return edited if edited.is_file() else None


class MerchantSituation(StrEnum):
    IN_DISTRICT_STREET_KNOWN = "in_district_street_known"
    IN_DISTRICT_STREET_UNKNOWN = "in_district_street_unknown"
    OUT_OF_DISTRICT = "out_of_district"
    UNKNOWN = "unknown"


_ALL_SITUATIONS = frozenset(MerchantSituation)
_IN_DISTRICT = frozenset({MerchantSituation.IN_DISTRICT_STREET_KNOWN, MerchantSituation.IN_DISTRICT_STREET_UNKNOWN})
# the values of a rule's `match: merchant:`
_MERCHANT_VALUES: dict[str, frozenset[MerchantSituation]] = {
    "in_district": _IN_DISTRICT,
    "out_of_district": frozenset({MerchantSituation.OUT_OF_DISTRICT}),
    "unknown": frozenset({MerchantSituation.UNKNOWN}),
    "any": _ALL_SITUATIONS,
}
# how a situation is named in messages (in the words of the rules file)
_SITUATION_TEXT = {
    MerchantSituation.IN_DISTRICT_STREET_KNOWN: "in_district (street_known: true)",
    MerchantSituation.IN_DISTRICT_STREET_UNKNOWN: "in_district (street_known: false)",
    MerchantSituation.OUT_OF_DISTRICT: "out_of_district",
    MerchantSituation.UNKNOWN: "unknown",
}
_KIND_BY_NAME = {k.value: k for k in Kind} | {zh: k for k, zh in KIND_NAMES_ZH.items()}
_CATEGORY_BY_NAME = {c.id: c.id for c in CATEGORIES} | {c.zh: c.id for c in CATEGORIES}


# ------------------------------------------------------------------------------------------------
# request and decision


@dataclass(frozen=True)
class MerchantLocation:
    """What is known of where the merchant is; None = unknown."""

    in_district: bool | None = None
    street: str | None = None  # e.g. "永中街道" or "永中"
    province: str | None = None  # e.g. "浙江省", "浙江", "广东省"


@dataclass(frozen=True)
class RoutingRequest:
    kind: Kind
    category: str  # a taxonomy category id
    focus_area: int | None = None  # the seed's 整治重点 number 1-14
    merchant: MerchantLocation = field(default_factory=MerchantLocation)


@dataclass(frozen=True)
class Transfer:
    authority: str  # authority code
    name: str  # authority name (Chinese)
    scope: Scope  # IN_PROVINCE or OUT_OF_PROVINCE (never ANY)


@dataclass(frozen=True)
class RoutingDecision:
    lead: str | None  # unit code of the lead unit (for a transfer: the unit that records it)
    co_units: tuple[str, ...]  # unit codes of the co-units (协办)
    transfer: Transfer | None
    rule_id: str
    reason_zh: str


# ------------------------------------------------------------------------------------------------
# rules


@dataclass(frozen=True)
class RuleMatch:
    """None means "any". ``merchant`` is the set of merchant situations the rule accepts."""

    kinds: frozenset[Kind] | None = None
    categories: frozenset[str] | None = None
    focus_areas: frozenset[int] | None = None
    merchant: frozenset[MerchantSituation] = _ALL_SITUATIONS

    def matches(self, kind: Kind, category: str, focus_area: int | None, situation: MerchantSituation) -> bool:
        return (
            (self.kinds is None or kind in self.kinds)
            and (self.categories is None or category in self.categories)
            and (self.focus_areas is None or focus_area in self.focus_areas)
            and situation in self.merchant
        )


@dataclass(frozen=True)
class RuleRoute:
    lead: str | None  # a unit code, STATION_OF_STREET, or None (only with a transfer)
    co: tuple[str, ...] = ()
    transfer: str | None = None  # an authority code


@dataclass(frozen=True)
class Rule:
    id: str
    match: RuleMatch
    route: RuleRoute
    reason: str = ""  # optional Chinese explanation written by the administrator
    line: int = 0  # where the rule starts in its file


def _all_cases() -> list[tuple[Kind, str, int | None, MerchantSituation]]:
    """Every case a request can be (focus areas: none and 1-14, for every category)."""
    focus: list[int | None] = [None, *sorted(FOCUS_AREAS)]
    return list(product(list(Kind), [c.id for c in CATEGORIES], focus, list(MerchantSituation)))


def _cases_matching(match: RuleMatch) -> set[tuple[Kind, str, int | None, MerchantSituation]]:
    """The cases of _all_cases() that `match` covers, built one dimension at a time: the same set as
    filtering _all_cases() by match.matches, without testing every case (every start-up loads the rules)."""
    kinds = [kind for kind in Kind if match.kinds is None or kind in match.kinds]
    categories = [c.id for c in CATEGORIES if match.categories is None or c.id in match.categories]
    focus = [f for f in (None, *sorted(FOCUS_AREAS)) if match.focus_areas is None or f in match.focus_areas]
    situations = [situation for situation in MerchantSituation if situation in match.merchant]
    return set(product(kinds, categories, focus, situations))


class RoutingTable:
    """An ordered, validated list of rules over a unit directory."""

    def __init__(self, rules: Iterable[Rule], directory: UnitDirectory, path: str | None = None) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.directory = directory
        self.path = path

    def replace_with(self, other: RoutingTable, path: str | None = None) -> None:
        """Take over the rules of `other` in place, so that every holder of this table (the case
        service keeps the one it was built with) routes by them from the next call of route() on.

        Both tables must be over the same unit directory: the rules were validated against it. One
        attribute assignment swaps the rules, so a route() running meanwhile sees the old or the new
        list, never a mixture."""
        if other.directory is not self.directory:
            raise ValueError("the new rules were validated against another unit directory")
        self.rules = other.rules
        self.path = path if path is not None else other.path

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    def situation(self, merchant: MerchantLocation) -> tuple[MerchantSituation, Unit | None]:
        """The merchant situation and, for a known in-district street, its station."""
        in_district = merchant.in_district
        if in_district is None and self.directory.province_scope(merchant.province) is Scope.OUT_OF_PROVINCE:
            in_district = False
        if in_district is True:
            station = self.directory.station_for_street(merchant.street)
            if station is not None:
                return MerchantSituation.IN_DISTRICT_STREET_KNOWN, station
            return MerchantSituation.IN_DISTRICT_STREET_UNKNOWN, None
        if in_district is False:
            return MerchantSituation.OUT_OF_DISTRICT, None
        return MerchantSituation.UNKNOWN, None

    def first_match(self, kind: Kind, category: str, focus_area: int | None, situation: MerchantSituation) -> Rule | None:
        for r in self.rules:
            if r.match.matches(kind, category, focus_area, situation):
                return r
        return None

    def route(self, request: RoutingRequest) -> RoutingDecision:
        """Route one case. ValueError for a request with an unknown kind, category or focus area."""
        try:
            kind = Kind(request.kind)
        except ValueError:
            raise ValueError(f"unknown kind {request.kind!r}") from None
        if request.category not in CATEGORY_IDS:
            raise ValueError(f"unknown category {request.category!r}")
        focus = request.focus_area
        if focus is not None and (isinstance(focus, bool) or focus not in FOCUS_AREAS):
            raise ValueError(f"focus area {focus!r} is not one of 1-14")
        situation, station = self.situation(request.merchant)
        rule = self.first_match(kind, request.category, focus, situation)
        if rule is None:  # impossible for a table that passed load_rules' coverage check
            raise LookupError(f"no routing rule for {kind.value}/{request.category} with merchant {situation.value}")

        def resolve(code: str) -> str:
            if code == STATION_OF_STREET:
                assert station is not None  # load_rules only allows it with street_known: true
                return station.code
            return code

        lead = resolve(rule.route.lead) if rule.route.lead is not None else None
        co = tuple(dict.fromkeys(c for c in map(resolve, rule.route.co) if c != lead))
        transfer = None
        if rule.route.transfer is not None:
            authority = self.directory.authority(rule.route.transfer)
            transfer = Transfer(authority.code, authority.name, self._transfer_scope(authority, request.merchant, situation))
        reason = self._reason(kind, request, situation, rule, lead, co, transfer)
        return RoutingDecision(lead=lead, co_units=co, transfer=transfer, rule_id=rule.id, reason_zh=reason)

    def _transfer_scope(self, authority: Authority, merchant: MerchantLocation, situation: MerchantSituation) -> Scope:
        if authority.scope is not Scope.ANY:
            return authority.scope
        if situation in _IN_DISTRICT:
            return Scope.IN_PROVINCE
        # Unknown or unrecognised province: in_province. The transfer is recorded by a person who
        # checks the merchant's registration; counting it as 省外 (the seed's 移送省外 statistic)
        # without knowing the province would overstate that figure.
        return Scope.OUT_OF_PROVINCE if self.directory.province_scope(merchant.province) is Scope.OUT_OF_PROVINCE else Scope.IN_PROVINCE

    def _unit_name(self, code: str) -> str:
        return self.directory.unit(code).name if self.directory.has_unit(code) else code

    def _reason(
        self,
        kind: Kind,
        request: RoutingRequest,
        situation: MerchantSituation,
        rule: Rule,
        lead: str | None,
        co: tuple[str, ...],
        transfer: Transfer | None,
    ) -> str:
        d = self.directory
        head = f"{KIND_NAMES_ZH[kind]}·{taxonomy_category(request.category).zh}"
        if request.focus_area is not None:
            head += f"(整治重点{request.focus_area})"
        m = request.merchant
        if situation is MerchantSituation.IN_DISTRICT_STREET_KNOWN:
            where = f"商户在{d.district.name}{d.canonical_street(m.street)}"
        elif situation is MerchantSituation.IN_DISTRICT_STREET_UNKNOWN:
            where = f"商户在{d.district.name},街道不明"
        elif situation is MerchantSituation.OUT_OF_DISTRICT:
            where = f"商户不在{d.district.name}" + (f"({m.province.strip()})" if m.province and m.province.strip() else "")
        else:
            where = "商户所在地不明"
        if transfer is not None:
            scope = "省内" if transfer.scope is Scope.IN_PROVINCE else "省外"
            action = f"移送{transfer.name}({scope})"
            if transfer.scope is Scope.IN_PROVINCE and situation is MerchantSituation.OUT_OF_DISTRICT and d.province_scope(m.province) is None:
                action += ",商户所在省份待核实"
            if lead is not None:
                action += f",由{self._unit_name(lead)}登记移送"
        elif co:
            action = f"由{self._unit_name(lead or '')}牵头,{'、'.join(self._unit_name(c) for c in co)}配合"
        else:
            action = f"由{self._unit_name(lead or '')}办理"
        parts = [head, where]
        if rule.reason:
            parts.append(rule.reason)
        parts.append(action)
        return ";".join(parts) + f"(规则 {rule.id})"


# ------------------------------------------------------------------------------------------------
# loading and validation

_MATCH_KEYS = ("kind", "category", "focus_area", "merchant", "street_known")
_ROUTE_KEYS = ("lead", "co", "transfer")
_RULE_KEYS = ("id", "match", "route", "reason")


def _as_list(c: _Checker, value: Any, *path: Any, what: str) -> list[tuple[Any, tuple[Any, ...]]]:
    """A scalar or a non-empty list -> [(item, path of the item)]."""
    if isinstance(value, list):
        if not value:
            raise c.fail(*path, problem=f"{what} is an empty list (it would match nothing; remove the key to match any)")
        return [(v, (*path, i)) for i, v in enumerate(value)]
    if isinstance(value, dict) or value is None:
        raise c.fail(*path, problem=f"{what} must be a value or a list of values, not {_describe(value)}")
    return [(value, path)]


def _parse_match(c: _Checker, raw: Any, p: tuple[Any, ...]) -> RuleMatch:
    if raw is None:  # `match:` with nothing after it: matches every case
        return RuleMatch()
    m = c.mapping(raw, *p, what="match")
    c.keys(m, *p, allowed=_MATCH_KEYS, required=(), what="match")
    kinds = categories = focus = None
    if "kind" in m:
        kinds = set()
        for v, vp in _as_list(c, m["kind"], *p, "kind", what="kind"):
            if not isinstance(v, str) or v.strip() not in _KIND_BY_NAME:
                raise c.fail(*vp, problem=f"unknown kind {_describe(v)} (one of: {', '.join(k.value for k in Kind)}, or 投诉/举报/咨询)")
            kinds.add(_KIND_BY_NAME[v.strip()])
    if "category" in m:
        categories = set()
        for v, vp in _as_list(c, m["category"], *p, "category", what="category"):
            if not isinstance(v, str) or v.strip() not in _CATEGORY_BY_NAME:
                raise c.fail(*vp, problem=f"unknown category {_describe(v)} (one of: {', '.join(x.id for x in CATEGORIES)})")
            categories.add(_CATEGORY_BY_NAME[v.strip()])
    if "focus_area" in m:
        focus = set()
        for v, vp in _as_list(c, m["focus_area"], *p, "focus_area", what="focus_area"):
            if isinstance(v, bool) or not isinstance(v, int) or v not in FOCUS_AREAS:
                raise c.fail(*vp, problem=f"focus area {_describe(v)} is out of range (the seed's 整治重点 are numbered 1 to 14)")
            focus.add(v)
        if categories is not None:
            own = {fa for cid in categories for fa in taxonomy_category(cid).focus_areas}
            for v, vp in _as_list(c, m["focus_area"], *p, "focus_area", what="focus_area"):
                if v not in own:
                    cats = "; ".join(
                        f"{cid}: {', '.join(map(str, taxonomy_category(cid).focus_areas)) or 'none'}"
                        for cid in sorted(categories)
                    )
                    raise c.fail(*vp, problem=f"focus area {v} is not a focus area of the rule's categories ({cats}), so the rule could never apply")
    situations = _ALL_SITUATIONS
    if "merchant" in m:
        v = m["merchant"]
        if not isinstance(v, str) or v.strip() not in _MERCHANT_VALUES:
            raise c.fail(*p, "merchant", problem=f"unknown merchant value {_describe(v)} (one of: {', '.join(_MERCHANT_VALUES)})")
        situations = _MERCHANT_VALUES[v.strip()]
    if "street_known" in m:
        v = m["street_known"]
        if not isinstance(v, bool):
            raise c.fail(*p, "street_known", problem=f"street_known must be true or false, not {_describe(v)}")
        known = frozenset({MerchantSituation.IN_DISTRICT_STREET_KNOWN})
        situations = situations & known if v else situations - known
    return RuleMatch(
        kinds=frozenset(kinds) if kinds is not None else None,
        categories=frozenset(categories) if categories is not None else None,
        focus_areas=frozenset(focus) if focus is not None else None,
        merchant=frozenset(situations),
    )


def _check_unit_code(c: _Checker, directory: UnitDirectory, v: Any, vp: tuple[Any, ...], what: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise c.fail(*vp, problem=f"{what} must be a unit code, not {_describe(v)}")
    code = v.strip()
    if code == STATION_OF_STREET or directory.has_unit(code):
        return code
    hint = directory.find(code)
    did_you_mean = f" (did you mean {hint.code}?)" if hint is not None else ""
    raise c.fail(*vp, problem=f"unknown unit code {code!r} in {what}{did_you_mean}")


def _parse_route(c: _Checker, raw: Any, p: tuple[Any, ...], directory: UnitDirectory, match: RuleMatch) -> RuleRoute:
    r = c.mapping(raw, *p, what="route")
    c.keys(r, *p, allowed=_ROUTE_KEYS, required=(), what="route")
    lead = None
    if r.get("lead") is not None:
        lead = _check_unit_code(c, directory, r["lead"], (*p, "lead"), "lead")
    co: list[str] = []
    if r.get("co") is not None:
        raw_co = r["co"]
        items = [(v, (*p, "co", i)) for i, v in enumerate(raw_co)] if isinstance(raw_co, list) else [(raw_co, (*p, "co"))]
        for v, vp in items:
            code = _check_unit_code(c, directory, v, vp, "co")
            if code == lead:
                raise c.fail(*vp, problem=f"{code!r} is the lead unit; do not list it again in co")
            if code in co:
                raise c.fail(*vp, problem=f"{code!r} is listed twice in co")
            co.append(code)
    transfer = None
    if r.get("transfer") is not None:
        v = r["transfer"]
        if not isinstance(v, str) or not directory.has_authority(v.strip()):
            known = ", ".join(a.code for a in directory.authorities) or "none"
            raise c.fail(*p, "transfer", problem=f"unknown authority {_describe(v)} in transfer (authorities: {known})")
        transfer = v.strip()
    if lead is None and transfer is None:
        raise c.fail(*p, problem="route has neither a lead unit nor a transfer")
    if STATION_OF_STREET in (lead, *co) and match.merchant != {MerchantSituation.IN_DISTRICT_STREET_KNOWN}:
        where = (*p, "lead") if lead == STATION_OF_STREET else (*p, "co")
        raise c.fail(*where, problem=f"{STATION_OF_STREET} needs a known street: add `street_known: true` to the rule's match")
    return RuleRoute(lead=lead, co=tuple(co), transfer=transfer)


def _case_text(kind: Kind, category: str, situation: MerchantSituation) -> str:
    return f"{kind.value}/{category} with merchant {_SITUATION_TEXT[situation]}"


def load_rules(path: str | PathLike[str] | None = None, directory: UnitDirectory | None = None) -> RoutingTable:
    """Load and validate a rules file (None: the packaged ``routing/data/rules.yaml``) against a unit
    directory (None: the packaged one). Raises RoutingConfigError naming the file and line."""
    if directory is None:
        directory = load_directory()
    doc = _load_doc(path, DEFAULT_RULES_PATH)
    c = _Checker(doc)
    if doc.data is None:
        raise RoutingConfigError(doc.name, 1, "the file is empty (expected `rules:` and a list of rules)")
    root = c.mapping(doc.data, what="the rules file")
    c.keys(root, allowed=("rules",), required=("rules",), what="the rules file")
    raw_rules = c.sequence(root["rules"], "rules", what="rules")

    taken: set[tuple[Any, ...]] = set()  # cases routed by the rules so far
    first_taker: dict[tuple[Any, ...], Rule] = {}
    rules: list[Rule] = []
    id_line: dict[str, int] = {}
    for i, raw in enumerate(raw_rules):
        p = ("rules", i)
        rr = c.mapping(raw, *p, what="each rule")
        c.keys(rr, *p, allowed=_RULE_KEYS, required=("id", "route"), what="a rule")
        rid_raw = rr["id"]
        if isinstance(rid_raw, bool) or not isinstance(rid_raw, (str, int)) or not str(rid_raw).strip():
            raise c.fail(*p, "id", problem=f"rule id must be text, not {_describe(rid_raw)}")
        rid = str(rid_raw).strip()
        if rid in id_line:
            raise c.fail(*p, "id", problem=f"duplicate rule id {rid!r} (first at line {id_line[rid]})")
        id_line[rid] = doc.line(*p, "id") or 1
        if "match" not in rr:
            raise c.fail(*p, problem=f"rule {rid!r} has no 'match' (write `match: {{}}` to match every case)")
        match = _parse_match(c, rr["match"], (*p, "match"))
        mine = _cases_matching(match)
        if not mine:
            raise c.fail(*p, "match", problem=f"rule {rid!r} can never match (its conditions contradict each other)")
        route = _parse_route(c, rr["route"], (*p, "route"), directory, match)
        reason = ""
        if rr.get("reason") is not None:
            reason = c.text(rr["reason"], *p, "reason", what="reason")
        rule = Rule(id=rid, match=match, route=route, reason=reason, line=doc.line(*p) or 1)

        for earlier in rules:
            if earlier.match == match:
                raise c.fail(*p, problem=f"rule {rid!r} has the same match as rule {earlier.id!r} (line {earlier.line}), so it is never used")
        if mine <= taken:
            blockers = sorted({first_taker[case].line: first_taker[case].id for case in mine}.items())
            names = ", ".join(f"{b_id!r} (line {b_line})" for b_line, b_id in blockers[:3])
            raise c.fail(*p, problem=f"rule {rid!r} is never used: every case it matches is routed by earlier rules: {names}")
        for case in mine - taken:
            first_taker[case] = rule
        taken |= mine
        rules.append(rule)

    # coverage: every kind x category x merchant situation x (the category's focus areas and none)
    for kind, cat in product(list(Kind), CATEGORIES):
        for situation in MerchantSituation:
            focus_values: list[int | None] = [None, *cat.focus_areas]
            missing = [f for f in focus_values if (kind, cat.id, f, situation) not in taken]
            if not missing:
                continue
            text = _case_text(kind, cat.id, situation)
            if len(missing) < len(focus_values):
                f = missing[0]
                text += " and no focus area" if f is None else f" and focus area {f}"
            raise RoutingConfigError(doc.name, None, f"no rule routes {text}")

    return RoutingTable(rules, directory, path=doc.name)


def load_routing(
    units_path: str | PathLike[str] | None = None, rules_path: str | PathLike[str] | None = None
) -> RoutingTable:
    """The unit directory and the rules over it (None: the packaged defaults)."""
    return load_rules(rules_path, load_directory(units_path))
