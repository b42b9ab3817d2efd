"""Routing: the unit directory, the rules and the line-keeping YAML loader.

Expected routes are written out by hand from DESIGN.md's table and the seed (温龙市监〔2024〕34号),
not computed from the code or the data files under test. Bad-config cases are written to tmp files
and the exact line in the message is asserted.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nlu.taxonomy import CATEGORY_IDS, Kind
from qinglang.errors import ConfigError
from routing.directory import (
    DEFAULT_UNITS_PATH,
    RoutingConfigError,
    Scope,
    UnitDirectory,
    UnitType,
    load_directory,
)
from routing.rules import (
    DEFAULT_RULES_PATH,
    MerchantSituation,
    MerchantLocation,
    RoutingDecision,
    RoutingRequest,
    RoutingTable,
    load_routing,
    load_rules,
)
from qinglang.yamlfile import YamlError, load_yaml, parse_yaml

C, T, Q = Kind.COMPLAINT, Kind.TIPOFF, Kind.CONSULTATION
WZ = ("wangjian", "zongzhi")

IN_YONGZHONG = MerchantLocation(in_district=True, street="永中街道")
IN_NO_STREET = MerchantLocation(in_district=True, street=None)
UNKNOWN = MerchantLocation()
OUT_ZJ = MerchantLocation(in_district=False, province="浙江省")


@pytest.fixture(scope="module")
def directory() -> UnitDirectory:
    return load_directory()


@pytest.fixture(scope="module")
def table(directory: UnitDirectory) -> RoutingTable:
    return load_rules(None, directory)


def route(table: RoutingTable, kind: Kind, category: str, focus: int | None = None, merchant: MerchantLocation = UNKNOWN) -> RoutingDecision:
    return table.route(RoutingRequest(kind=kind, category=category, focus_area=focus, merchant=merchant))


def summary(d: RoutingDecision) -> tuple[str | None, tuple[str, ...], str | None, str | None]:
    t = d.transfer
    return d.lead, d.co_units, t.authority if t else None, t.scope.value if t else None


# ------------------------------------------------------------------------------------------------
# packaged defaults


def test_packaged_defaults_load() -> None:
    assert DEFAULT_UNITS_PATH.is_file() and DEFAULT_RULES_PATH.is_file()
    t = load_routing()
    assert isinstance(t, RoutingTable)
    assert len(t.rules) >= 10
    assert t.directory.district.name == "龙湾区"
    assert t.directory.district.city == "温州市"
    assert t.directory.district.province == "浙江省"


CENTRAL_UNITS = [
    ("xiaobao", "消保分局", UnitType.BRANCH),
    ("jiajing", "价竞分局", UnitType.BRANCH),
    ("wangjian", "网监分局", UnitType.BRANCH),
    ("zongzhi", "综合执法队", UnitType.TEAM),
    ("hetong", "市场合同(广告)科", UnitType.SECTION),
    ("zhiliang", "质量监管科", UnitType.SECTION),
    ("shipin", "食品生产流通科", UnitType.SECTION),
    ("shipin_choujian", "食品抽检科", UnitType.SECTION),
    ("zhichan", "知识产权科", UnitType.SECTION),
    ("xinyong", "信用监管科", UnitType.SECTION),
    ("ducha", "督查考绩科", UnitType.SECTION),
    ("zhuce", "注册分局", UnitType.BRANCH),
    ("bangongshi", "办公室", UnitType.OFFICE),
]


@pytest.mark.parametrize(("code", "name", "utype"), CENTRAL_UNITS)
def test_central_units(directory: UnitDirectory, code: str, name: str, utype: UnitType) -> None:
    u = directory.unit(code)
    assert (u.name, u.type) == (name, utype)
    assert u.name_en
    assert u.streets == ()
    assert directory.find(name) is u


STATIONS = [
    ("suo_yongzhong", "永中街道"),
    ("suo_yongxing", "永兴街道"),
    ("suo_haibin", "海滨街道"),
    ("suo_yaoxi", "瑶溪街道"),
    ("suo_shacheng", "沙城街道"),
    ("suo_tianhe", "天河街道"),
    ("suo_xinghai", "星海街道"),
    ("suo_zhuangyuan", "状元街道"),
    ("suo_puzhou", "蒲州街道"),
    ("suo_haicheng", "海城街道"),
]


def test_stations_are_the_ten_streets(directory: UnitDirectory) -> None:
    assert sorted((u.code, u.streets) for u in directory.stations) == sorted((c, (s,)) for c, s in STATIONS)
    assert all(u.type is UnitType.STATION for u in directory.stations)


@pytest.mark.parametrize(("code", "street"), STATIONS)
def test_station_for_street_with_and_without_suffix(directory: UnitDirectory, code: str, street: str) -> None:
    assert directory.station_for_street(street).code == code
    assert directory.station_for_street(street.removesuffix("街道")).code == code
    assert directory.station_for_street(f"温州市龙湾区{street}").code == code
    assert directory.canonical_street(street.removesuffix("街道")) == street


def test_street_outside_the_directory(directory: UnitDirectory) -> None:
    assert directory.station_for_street("五马街道") is None
    assert directory.station_for_street("") is None
    assert directory.station_for_street(None) is None


def test_find_by_alias_code_and_width(directory: UnitDirectory) -> None:
    assert directory.find("市场合同（广告）科").code == "hetong"  # full-width brackets
    assert directory.find("消费者权益保护分局").code == "xiaobao"
    assert directory.find("永中所").code == "suo_yongzhong"
    assert directory.find("ZONGZHI").code == "zongzhi"
    assert directory.find("不存在的科") is None
    with pytest.raises(KeyError):
        directory.unit("nobody")


def test_authorities(directory: UnitDirectory) -> None:
    got = {a.code: (a.name, a.scope) for a in directory.authorities}
    assert got["tax"] == ("国家税务总局温州市龙湾区税务局", Scope.IN_PROVINCE)
    assert got["other_msa"] == ("商户所在地市场监督管理部门", Scope.ANY)
    assert got["police"][0] == "公安机关"
    assert got["cac"][0] == "网信部门"


@pytest.mark.parametrize(
    ("province", "scope"),
    [("浙江", Scope.IN_PROVINCE), ("浙江省", Scope.IN_PROVINCE), (" 浙江省杭州市", Scope.IN_PROVINCE),
     ("广东省", Scope.OUT_OF_PROVINCE), ("上海", Scope.OUT_OF_PROVINCE), ("杭州", None), ("", None), (None, None)],
)  # fmt: skip
def test_province_scope(directory: UnitDirectory, province: str | None, scope: Scope | None) -> None:
    assert directory.province_scope(province) == scope


# ------------------------------------------------------------------------------------------------
# the routing table for every kind x category (merchant in the district on 永中街道)

EXPECTED: dict[tuple[Kind, str], tuple[str, tuple[str, ...], str | None]] = {
    # 投诉: the station of the merchant's street; tax is transferred
    (C, "orientation"): ("suo_yongzhong", (), None),
    (C, "tax"): ("xiaobao", (), "tax"),
    (C, "platform_duty"): ("suo_yongzhong", (), None),
    (C, "product_quality"): ("suo_yongzhong", (), None),
    (C, "food_safety"): ("suo_yongzhong", (), None),
    (C, "price"): ("suo_yongzhong", (), None),
    (C, "advertising"): ("suo_yongzhong", (), None),
    (C, "ip_infringement"): ("suo_yongzhong", (), None),
    (C, "unfair_competition"): ("suo_yongzhong", (), None),
    (C, "consumer_rights"): ("suo_yongzhong", (), None),
    (C, "other"): ("suo_yongzhong", (), None),
    # 举报: the ★ lead unit and its co-units (no focus area given)
    (T, "orientation"): ("hetong", ("wangjian", "zongzhi"), None),
    (T, "tax"): ("xiaobao", (), "tax"),
    (T, "platform_duty"): ("xiaobao", ("wangjian", "zongzhi"), None),
    (T, "product_quality"): ("zhiliang", ("jiajing", "wangjian", "zongzhi"), None),
    (T, "food_safety"): ("shipin", ("wangjian", "zongzhi", "shipin_choujian"), None),
    (T, "price"): ("jiajing", ("wangjian", "zongzhi"), None),
    (T, "advertising"): ("hetong", ("wangjian", "zongzhi"), None),
    (T, "ip_infringement"): ("zhichan", ("wangjian", "zongzhi"), None),
    (T, "unfair_competition"): ("jiajing", ("wangjian", "zongzhi"), None),
    (T, "consumer_rights"): ("xiaobao", ("wangjian", "zongzhi"), None),
    (T, "other"): ("xiaobao", (), None),
    # 咨询: 消保分局 answers; tax is transferred
    (Q, "orientation"): ("xiaobao", (), None),
    (Q, "tax"): ("xiaobao", (), "tax"),
    (Q, "platform_duty"): ("xiaobao", (), None),
    (Q, "product_quality"): ("xiaobao", (), None),
    (Q, "food_safety"): ("xiaobao", (), None),
    (Q, "price"): ("xiaobao", (), None),
    (Q, "advertising"): ("xiaobao", (), None),
    (Q, "ip_infringement"): ("xiaobao", (), None),
    (Q, "unfair_competition"): ("xiaobao", (), None),
    (Q, "consumer_rights"): ("xiaobao", (), None),
    (Q, "other"): ("xiaobao", (), None),
}


def test_expected_table_covers_every_kind_and_category() -> None:
    assert set(EXPECTED) == {(k, c) for k in Kind for c in CATEGORY_IDS}


@pytest.mark.parametrize(("kind", "category"), sorted(EXPECTED))
def test_table_in_district_known_street(table: RoutingTable, kind: Kind, category: str) -> None:
    lead, co, transfer = EXPECTED[kind, category]
    d = route(table, kind, category, None, IN_YONGZHONG)
    assert (d.lead, d.co_units) == (lead, co)
    assert (d.transfer.authority if d.transfer else None) == transfer
    assert d.rule_id and d.reason_zh


# tip-offs go to the ★ unit wherever the merchant is in (or not known to be out of) the district
TIPOFF_LEADS = {
    "orientation": ("hetong", WZ),
    "platform_duty": ("xiaobao", WZ),
    "product_quality": ("zhiliang", ("jiajing", "wangjian", "zongzhi")),
    "food_safety": ("shipin", ("wangjian", "zongzhi", "shipin_choujian")),
    "price": ("jiajing", WZ),
    "advertising": ("hetong", WZ),
    "ip_infringement": ("zhichan", WZ),
    "unfair_competition": ("jiajing", WZ),
    "consumer_rights": ("xiaobao", WZ),
    "other": ("xiaobao", ()),
}


@pytest.mark.parametrize("merchant", [IN_NO_STREET, UNKNOWN, MerchantLocation(True, "五马街道", None)], ids=["in-no-street", "unknown", "in-unknown-street"])
@pytest.mark.parametrize("category", sorted(TIPOFF_LEADS))
def test_tipoff_lead_does_not_depend_on_street(table: RoutingTable, category: str, merchant: MerchantLocation) -> None:
    lead, co = TIPOFF_LEADS[category]
    assert summary(route(table, T, category, None, merchant)) == (lead, co, None, None)


@pytest.mark.parametrize("kind", [C, T])
@pytest.mark.parametrize("category", sorted(CATEGORY_IDS - {"tax"}))
def test_out_of_district_is_transferred(table: RoutingTable, kind: Kind, category: str) -> None:
    assert summary(route(table, kind, category, None, OUT_ZJ)) == ("xiaobao", (), "other_msa", "in_province")


# ------------------------------------------------------------------------------------------------
# specific cases


@pytest.mark.parametrize("street", ["海城街道", "海城", " 海城街道 ", "龙湾区海城街道"])
def test_complaint_goes_to_station_of_street(table: RoutingTable, street: str) -> None:
    d = route(table, C, "consumer_rights", 10, MerchantLocation(in_district=True, street=street))
    assert summary(d) == ("suo_haicheng", (), None, None)
    assert d.rule_id == "complaint_station"
    assert "海城街道" in d.reason_zh


@pytest.mark.parametrize(
    "merchant",
    [IN_NO_STREET, MerchantLocation(True, "五马街道", None), MerchantLocation(True, "", None), UNKNOWN,
     MerchantLocation(None, "永中街道", None)],
    ids=["no-street", "street-elsewhere", "empty-street", "unknown", "street-but-district-unknown"],
)  # fmt: skip
def test_complaint_without_known_street_goes_to_xiaobao(table: RoutingTable, merchant: MerchantLocation) -> None:
    d = route(table, C, "price", 7, merchant)
    assert summary(d) == ("xiaobao", (), None, None)
    assert d.rule_id == "complaint_triage"


@pytest.mark.parametrize("province", ["浙江", "浙江省", "浙江省杭州市"])
def test_transfer_out_of_district_in_province(table: RoutingTable, province: str) -> None:
    d = route(table, C, "price", None, MerchantLocation(in_district=False, province=province))
    assert summary(d) == ("xiaobao", (), "other_msa", "in_province")
    assert d.transfer.name == "商户所在地市场监督管理部门"
    assert "省内" in d.reason_zh


@pytest.mark.parametrize("in_district", [False, None])
def test_transfer_out_of_province(table: RoutingTable, in_district: bool | None) -> None:
    # a merchant in 广东省 is out of the district even when in_district was not asked
    d = route(table, T, "food_safety", 5, MerchantLocation(in_district=in_district, province="广东省"))
    assert summary(d) == ("xiaobao", (), "other_msa", "out_of_province")
    assert "省外" in d.reason_zh


def test_transfer_with_unknown_province_is_in_province(table: RoutingTable) -> None:
    d = route(table, C, "price", None, MerchantLocation(in_district=False, province=None))
    assert summary(d) == ("xiaobao", (), "other_msa", "in_province")
    assert "待核实" in d.reason_zh


@pytest.mark.parametrize("kind", [C, T, Q])
@pytest.mark.parametrize("merchant", [IN_YONGZHONG, OUT_ZJ, UNKNOWN, MerchantLocation(False, None, "广东省")])
def test_tax_goes_to_tax_authority(table: RoutingTable, kind: Kind, merchant: MerchantLocation) -> None:
    d = route(table, kind, "tax", None, merchant)
    assert summary(d) == ("xiaobao", (), "tax", "in_province")
    assert d.transfer.name == "国家税务总局温州市龙湾区税务局"
    assert d.rule_id == "tax"


@pytest.mark.parametrize("merchant", [IN_YONGZHONG, IN_NO_STREET, OUT_ZJ, UNKNOWN])
def test_consultation_answered_by_xiaobao(table: RoutingTable, merchant: MerchantLocation) -> None:
    d = route(table, Q, "price", 7, merchant)
    assert summary(d) == ("xiaobao", (), None, None)
    assert d.rule_id == "consultation"


@pytest.mark.parametrize(
    ("focus", "lead", "co"),
    [(2, "jiajing", ("wangjian", "zongzhi")), (9, "xiaobao", ("wangjian",)), (None, "xiaobao", ("wangjian", "zongzhi"))],
)
def test_platform_duty_by_focus_area(table: RoutingTable, focus: int | None, lead: str, co: tuple[str, ...]) -> None:
    assert summary(route(table, T, "platform_duty", focus, IN_YONGZHONG)) == (lead, co, None, None)


@pytest.mark.parametrize(("focus", "lead"), [(1, "jiajing"), (6, "hetong"), (None, "hetong")])
def test_orientation_focus_1_goes_to_jiajing(table: RoutingTable, focus: int | None, lead: str) -> None:
    assert summary(route(table, T, "orientation", focus, UNKNOWN)) == (lead, ("wangjian", "zongzhi"), None, None)


def test_kind_given_as_text(table: RoutingTable) -> None:
    assert route(table, "tipoff", "price").lead == "jiajing"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "request_",
    [RoutingRequest("praise", "price"), RoutingRequest(T, "prices"), RoutingRequest(T, "price", 15),  # type: ignore[arg-type]
     RoutingRequest(T, "price", 0), RoutingRequest(T, "price", True)],  # type: ignore[arg-type]
)  # fmt: skip
def test_bad_request_is_rejected(table: RoutingTable, request_: RoutingRequest) -> None:
    with pytest.raises(ValueError):
        table.route(request_)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(list(Kind)),
    category=st.sampled_from(sorted(CATEGORY_IDS)),
    focus=st.none() | st.integers(1, 14),
    in_district=st.none() | st.booleans(),
    street=st.none() | st.sampled_from(["永中街道", "海城", "五马街道", "", "龙湾区星海"]),
    province=st.none() | st.sampled_from(["浙江", "浙江省", "广东省", "杭州", ""]),
)
def test_every_request_is_routed_to_real_units(table: RoutingTable, kind, category, focus, in_district, street, province) -> None:
    d = route(table, kind, category, focus, MerchantLocation(in_district, street, province))
    assert d.lead is not None and table.directory.has_unit(d.lead)
    assert all(table.directory.has_unit(c) for c in d.co_units)
    assert d.lead not in d.co_units
    if d.transfer is not None:
        assert d.transfer.scope in (Scope.IN_PROVINCE, Scope.OUT_OF_PROVINCE)
        assert d.lead == "xiaobao"
    if in_district is False:
        assert d.transfer is not None or kind is Q
    assert "\n" not in d.reason_zh


# ------------------------------------------------------------------------------------------------
# bad configuration: one line with the file and the exact line


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def assert_config_error(err: RoutingConfigError, path: Path, line: int | None, phrase: str) -> None:
    msg = str(err)
    where = f"{path}:{line}: " if line is not None else f"{path}: "
    assert msg.startswith(where), msg
    assert phrase in msg, msg
    assert "\n" not in msg
    assert err.line == line
    assert isinstance(err, ConfigError)


def units_error(tmp_path: Path, text: str) -> tuple[RoutingConfigError, Path]:
    p = write(tmp_path, "units.yaml", text)
    with pytest.raises(RoutingConfigError) as ei:
        load_directory(p)
    return ei.value, p


def rules_error(tmp_path: Path, text: str, directory: UnitDirectory) -> tuple[RoutingConfigError, Path]:
    p = write(tmp_path, "rules.yaml", text)
    with pytest.raises(RoutingConfigError) as ei:
        load_rules(p, directory)
    return ei.value, p


GOOD_UNITS = """\
district:
  name: 龙湾区
  city: 温州市
  province: 浙江省
units:
  - code: xiaobao
    name: 消保分局
    name_en: Consumer Protection Branch
    type: branch
  - code: suo_a
    name: 甲所
    name_en: Station A
    type: station
    streets: [永中街道, {name: 永兴街道, aliases: [永兴镇]}]
authorities:
  - code: tax
    name: 税务局
    scope: in_province
"""


def test_small_units_file_loads(tmp_path: Path) -> None:
    d = load_directory(write(tmp_path, "units.yaml", GOOD_UNITS))
    assert [u.code for u in d.units] == ["xiaobao", "suo_a"]
    assert d.station_for_street("永兴镇").code == "suo_a"
    assert d.canonical_street("永兴镇") == "永兴街道"
    assert d.authority("tax").scope is Scope.IN_PROVINCE


def test_units_yaml_syntax_error(tmp_path: Path) -> None:
    err, p = units_error(tmp_path, GOOD_UNITS.replace("    name: 甲所\n", "    name: 甲所: 乙\n"))
    assert_config_error(err, p, 11, "YAML syntax error")


def test_units_station_without_streets(tmp_path: Path) -> None:
    err, p = units_error(tmp_path, GOOD_UNITS.replace("    streets: [永中街道, {name: 永兴街道, aliases: [永兴镇]}]\n", ""))
    assert_config_error(err, p, 10, "station 'suo_a' has no streets")


def test_units_station_with_empty_streets(tmp_path: Path) -> None:
    err, p = units_error(tmp_path, GOOD_UNITS.replace("    streets: [永中街道, {name: 永兴街道, aliases: [永兴镇]}]\n", "    streets: []\n"))
    assert_config_error(err, p, 10, "has no streets")


def test_units_street_claimed_by_two_stations(tmp_path: Path) -> None:
    text = GOOD_UNITS.replace(
        "authorities:\n",
        """\
  - code: suo_b
    name: 乙所
    name_en: Station B
    type: station
    streets:
      - 海城街道
      - 永中
authorities:
""",
    )
    err, p = units_error(tmp_path, text)
    assert_config_error(err, p, 21, "street '永中' is already claimed by station 'suo_a'")


def test_units_street_alias_claimed_by_two_stations(tmp_path: Path) -> None:
    text = GOOD_UNITS.replace(
        "authorities:\n",
        """\
  - code: suo_b
    name: 乙所
    name_en: Station B
    type: station
    streets:
      - name: 海城街道
        aliases: [永兴镇]
authorities:
""",
    )
    err, p = units_error(tmp_path, text)
    assert_config_error(err, p, 21, "street '永兴镇' is already claimed by station 'suo_a'")


def test_units_streets_on_a_non_station(tmp_path: Path) -> None:
    err, p = units_error(tmp_path, GOOD_UNITS.replace("    type: branch\n", "    type: branch\n    streets: [海城街道]\n"))
    assert_config_error(err, p, 10, "only stations")


def test_units_duplicate_code(tmp_path: Path) -> None:
    err, p = units_error(tmp_path, GOOD_UNITS.replace("  - code: suo_a\n", "  - code: xiaobao\n"))
    assert_config_error(err, p, 10, "duplicate unit code 'xiaobao' (first at line 6)")


def test_units_name_used_twice(tmp_path: Path) -> None:
    err, p = units_error(tmp_path, GOOD_UNITS.replace("    name: 甲所\n", "    name: 消保分局\n"))
    assert_config_error(err, p, 11, "already used by unit 'xiaobao' (line 7)")


def test_units_unknown_type(tmp_path: Path) -> None:
    err, p = units_error(tmp_path, GOOD_UNITS.replace("    type: branch\n", "    type: bureau\n"))
    assert_config_error(err, p, 9, "unknown unit type 'bureau'")


def test_units_bad_code(tmp_path: Path) -> None:
    err, p = units_error(tmp_path, GOOD_UNITS.replace("  - code: suo_a\n", "  - code: 甲所\n"))
    assert_config_error(err, p, 10, "must be lowercase ASCII")


def test_units_unknown_key(tmp_path: Path) -> None:
    err, p = units_error(tmp_path, GOOD_UNITS.replace("    name_en: Station A\n", "    name_en: Station A\n    street: [海城街道]\n"))
    assert_config_error(err, p, 13, "unknown key 'street'")


def test_units_missing_name_en(tmp_path: Path) -> None:
    err, p = units_error(tmp_path, GOOD_UNITS.replace("    name_en: Station A\n", ""))
    assert_config_error(err, p, 10, "has no 'name_en'")


def test_units_unknown_authority_scope(tmp_path: Path) -> None:
    err, p = units_error(tmp_path, GOOD_UNITS.replace("    scope: in_province\n", "    scope: national\n"))
    assert_config_error(err, p, 18, "unknown scope 'national'")


def test_units_duplicate_key(tmp_path: Path) -> None:
    err, p = units_error(tmp_path, GOOD_UNITS.replace("    type: branch\n", "    type: branch\n    type: team\n"))
    assert_config_error(err, p, 10, "duplicate key 'type' (first at line 9)")


def test_units_empty_file(tmp_path: Path) -> None:
    err, p = units_error(tmp_path, "# nothing yet\n")
    assert_config_error(err, p, 1, "empty")


def test_units_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RoutingConfigError) as ei:
        load_directory(tmp_path / "nope.yaml")
    assert str(ei.value).startswith(f"{tmp_path / 'nope.yaml'}: cannot read")


# rules: HEAD (lines 1-13) + the rule under test (from line 14) + TAIL (a catch-all)
HEAD = """\
rules:
  - id: tax
    match: {category: [tax]}
    route: {lead: xiaobao, transfer: tax}
  - id: consultation
    match: {kind: [consultation]}
    route: {lead: xiaobao}
  - id: out_of_district
    match: {merchant: out_of_district}
    route: {lead: xiaobao, transfer: other_msa}
  - id: complaint_station
    match: {kind: [complaint], merchant: in_district, street_known: true}
    route: {lead: station_of_street}
"""
TAIL = """\
  - id: rest
    match: {}
    route: {lead: xiaobao}
"""


def test_small_rules_file_loads(tmp_path: Path, directory: UnitDirectory) -> None:
    t = load_rules(write(tmp_path, "rules.yaml", HEAD + TAIL), directory)
    assert [r.id for r in t.rules] == ["tax", "consultation", "out_of_district", "complaint_station", "rest"]
    assert route(t, C, "price", None, IN_YONGZHONG).lead == "suo_yongzhong"
    assert route(t, T, "price", None, IN_YONGZHONG).lead == "xiaobao"


def test_rules_yaml_syntax_error(tmp_path: Path, directory: UnitDirectory) -> None:
    bad = """\
  - id: bad
    match:
      kind: [tipoff
    route: {lead: jiajing}
"""
    err, p = rules_error(tmp_path, HEAD + bad + TAIL, directory)
    assert_config_error(err, p, 17, "YAML syntax error")


def test_rules_unknown_lead_unit(tmp_path: Path, directory: UnitDirectory) -> None:
    bad = """\
  - id: bad
    match:
      kind: [tipoff]
    route:
      lead: nobody
"""
    err, p = rules_error(tmp_path, HEAD + bad + TAIL, directory)
    assert_config_error(err, p, 18, "unknown unit code 'nobody' in lead")


def test_rules_unit_name_instead_of_code(tmp_path: Path, directory: UnitDirectory) -> None:
    bad = """\
  - id: bad
    match:
      kind: [tipoff]
    route:
      lead: 价竞分局
"""
    err, p = rules_error(tmp_path, HEAD + bad + TAIL, directory)
    assert_config_error(err, p, 18, "did you mean jiajing?")


def test_rules_unknown_co_unit(tmp_path: Path, directory: UnitDirectory) -> None:
    bad = """\
  - id: bad
    match:
      kind: [tipoff]
    route:
      lead: jiajing
      co:
        - wangjian
        - nobody
"""
    err, p = rules_error(tmp_path, HEAD + bad + TAIL, directory)
    assert_config_error(err, p, 21, "unknown unit code 'nobody' in co")


def test_rules_unknown_authority(tmp_path: Path, directory: UnitDirectory) -> None:
    bad = """\
  - id: bad
    match:
      kind: [tipoff]
    route:
      lead: xiaobao
      transfer: irs
"""
    err, p = rules_error(tmp_path, HEAD + bad + TAIL, directory)
    assert_config_error(err, p, 19, "unknown authority 'irs'")


def test_rules_unknown_category(tmp_path: Path, directory: UnitDirectory) -> None:
    bad = """\
  - id: bad
    match:
      kind: [tipoff]
      category:
        - price
        - pricing
    route: {lead: jiajing}
"""
    err, p = rules_error(tmp_path, HEAD + bad + TAIL, directory)
    assert_config_error(err, p, 19, "unknown category 'pricing'")


def test_rules_unknown_kind(tmp_path: Path, directory: UnitDirectory) -> None:
    bad = """\
  - id: bad
    match:
      kind: complain
    route: {lead: jiajing}
"""
    err, p = rules_error(tmp_path, HEAD + bad + TAIL, directory)
    assert_config_error(err, p, 16, "unknown kind 'complain'")


@pytest.mark.parametrize("value", ["15", "0", "-1", "'2'"])
def test_rules_focus_area_out_of_range(tmp_path: Path, directory: UnitDirectory, value: str) -> None:
    bad = f"""\
  - id: bad
    match:
      kind: [tipoff]
      category: [platform_duty]
      focus_area:
        - 2
        - {value}
    route: {{lead: jiajing}}
"""
    err, p = rules_error(tmp_path, HEAD + bad + TAIL, directory)
    assert_config_error(err, p, 20, "out of range")


def test_rules_focus_area_of_another_category(tmp_path: Path, directory: UnitDirectory) -> None:
    bad = """\
  - id: bad
    match: {kind: [tipoff], category: [price], focus_area: [3]}
    route: {lead: jiajing}
"""
    err, p = rules_error(tmp_path, HEAD + bad + TAIL, directory)
    assert_config_error(err, p, 15, "focus area 3 is not a focus area of the rule's categories")


def test_rules_duplicate_id(tmp_path: Path, directory: UnitDirectory) -> None:
    bad = """\
  - id: tax
    match: {kind: [tipoff], category: [price]}
    route: {lead: jiajing}
"""
    err, p = rules_error(tmp_path, HEAD + bad + TAIL, directory)
    assert_config_error(err, p, 14, "duplicate rule id 'tax' (first at line 2)")


def test_rules_duplicate_rule(tmp_path: Path, directory: UnitDirectory) -> None:
    bad = """\
  - id: consultation_again
    match:
      kind: [consultation]
    route: {lead: hetong}
"""
    err, p = rules_error(tmp_path, HEAD + bad + TAIL, directory)
    assert_config_error(err, p, 14, "same match as rule 'consultation' (line 5)")


def test_rules_duplicate_rule_written_differently(tmp_path: Path, directory: UnitDirectory) -> None:
    # "咨询" is the Chinese name of consultation, and a single value is a list of one
    bad = """\
  - id: consultation_again
    match: {kind: 咨询}
    route: {lead: hetong}
"""
    err, p = rules_error(tmp_path, HEAD + bad + TAIL, directory)
    assert_config_error(err, p, 14, "same match as rule 'consultation' (line 5)")


def test_rules_rule_shadowed_by_earlier_rules(tmp_path: Path, directory: UnitDirectory) -> None:
    bad = """\
  - id: price_question
    match: {kind: [consultation], category: [price]}
    route: {lead: jiajing}
"""
    err, p = rules_error(tmp_path, HEAD + bad + TAIL, directory)
    assert_config_error(err, p, 14, "rule 'price_question' is never used")
    assert "'consultation' (line 5)" in str(err)


def test_rules_rule_after_catch_all(tmp_path: Path, directory: UnitDirectory) -> None:
    late = """\
  - id: too_late
    match: {kind: [tipoff], category: [price]}
    route: {lead: jiajing}
"""
    err, p = rules_error(tmp_path, HEAD + TAIL + late, directory)
    assert_config_error(err, p, 17, "rule 'too_late' is never used")
    assert "'rest' (line 14)" in str(err)


def test_rules_contradictory_match(tmp_path: Path, directory: UnitDirectory) -> None:
    bad = """\
  - id: bad
    match: {merchant: unknown, street_known: true}
    route: {lead: xiaobao}
"""
    err, p = rules_error(tmp_path, HEAD + bad + TAIL, directory)
    assert_config_error(err, p, 15, "can never match")


def test_rules_station_of_street_needs_known_street(tmp_path: Path, directory: UnitDirectory) -> None:
    bad = """\
  - id: bad
    match: {kind: [complaint]}
    route:
      lead: station_of_street
"""
    err, p = rules_error(tmp_path, HEAD + bad + TAIL, directory)
    assert_config_error(err, p, 17, "street_known: true")


def test_rules_unknown_key(tmp_path: Path, directory: UnitDirectory) -> None:
    bad = """\
  - id: bad
    match: {kind: [tipoff]}
    route:
      lead: xiaobao
      co_units: [wangjian]
"""
    err, p = rules_error(tmp_path, HEAD + bad + TAIL, directory)
    assert_config_error(err, p, 18, "unknown key 'co_units' in route")


def test_rules_unknown_merchant_value(tmp_path: Path, directory: UnitDirectory) -> None:
    bad = """\
  - id: bad
    match:
      merchant: outside
    route: {lead: xiaobao}
"""
    err, p = rules_error(tmp_path, HEAD + bad + TAIL, directory)
    assert_config_error(err, p, 16, "unknown merchant value 'outside'")


def test_rules_lead_repeated_in_co(tmp_path: Path, directory: UnitDirectory) -> None:
    bad = """\
  - id: bad
    match: {kind: [tipoff]}
    route: {lead: xiaobao, co: [wangjian, xiaobao]}
"""
    err, p = rules_error(tmp_path, HEAD + bad + TAIL, directory)
    assert_config_error(err, p, 16, "'xiaobao' is the lead unit")


def test_rules_no_route_for_a_case(tmp_path: Path, directory: UnitDirectory) -> None:
    text = """\
rules:
  - id: price_tipoff_local
    match: {kind: [tipoff], category: [price], merchant: in_district}
    route: {lead: jiajing}
  - id: price_tipoff_unknown_place
    match: {kind: [tipoff], category: [price], merchant: unknown}
    route: {lead: jiajing}
  - id: complaints_and_questions
    match: {kind: [complaint, consultation]}
    route: {lead: xiaobao}
  - id: other_tipoffs
    match:
      kind: [tipoff]
      category: [orientation, tax, platform_duty, product_quality, food_safety, advertising,
                 ip_infringement, unfair_competition, consumer_rights, other]
    route: {lead: xiaobao}
"""
    err, p = rules_error(tmp_path, text, directory)
    assert str(err) == f"{p}: no rule routes tipoff/price with merchant out_of_district"
    assert err.line is None


def test_rules_no_route_for_a_focus_area(tmp_path: Path, directory: UnitDirectory) -> None:
    text = """\
rules:
  - id: platform_2
    match: {kind: [tipoff], category: [platform_duty], focus_area: [2]}
    route: {lead: jiajing}
  - id: platform_9
    match: {kind: [tipoff], category: [platform_duty], focus_area: [9]}
    route: {lead: xiaobao}
  - id: everything_else
    match: {category: [orientation, tax, product_quality, food_safety, price, advertising,
                       ip_infringement, unfair_competition, consumer_rights, other]}
    route: {lead: xiaobao}
  - id: platform_other_kinds
    match: {kind: [complaint, consultation], category: [platform_duty]}
    route: {lead: xiaobao}
"""
    err, p = rules_error(tmp_path, text, directory)
    assert str(err) == f"{p}: no rule routes tipoff/platform_duty with merchant in_district (street_known: true) and no focus area"


def test_rules_packaged_file_with_a_rule_removed(tmp_path: Path, directory: UnitDirectory) -> None:
    text = DEFAULT_RULES_PATH.read_text(encoding="utf-8")
    start = text.index("  - id: tipoff_price\n")
    end = text.index("  # 整治重点6", start)
    err, p = rules_error(tmp_path, text[:start] + text[end:], directory)
    assert str(err) == f"{p}: no rule routes tipoff/price with merchant in_district (street_known: true)"


def test_rules_against_another_directory(tmp_path: Path) -> None:
    # the packaged rules name units that a small directory does not have
    small = load_directory(write(tmp_path, "units.yaml", GOOD_UNITS))
    with pytest.raises(RoutingConfigError) as ei:
        load_rules(None, small)
    line = next(i for i, text in enumerate(DEFAULT_RULES_PATH.read_text(encoding="utf-8").splitlines(), 1) if "transfer: other_msa" in text)
    assert str(ei.value).startswith(f"{DEFAULT_RULES_PATH}:{line}: unknown authority 'other_msa'")


# ------------------------------------------------------------------------------------------------
# the YAML loader


def test_yamlload_lines_of_keys_values_and_items() -> None:
    doc = parse_yaml(
        textwrap.dedent(
            """\
            a: 1
            b:
              - x: 1
                y:
                  - 10
                  - 20
              - plain
            base: &base {p: 1}
            merged:
              <<: *base
              q: 2
            """
        ),
        "t.yaml",
    )
    assert doc.data == {"a": 1, "b": [{"x": 1, "y": [10, 20]}, "plain"], "base": {"p": 1}, "merged": {"p": 1, "q": 2}}
    assert doc.line("a") == 1
    assert doc.line("b") == 3  # a block list starts at its first item
    assert doc.key_line("b") == 2
    assert doc.line("b", 0) == 3
    assert doc.line("b", 0, "y", 1) == 6
    assert doc.key_line("b", 0, "y") == 4
    assert doc.line("b", 1) == 7
    assert doc.line("merged", "q") == 11
    assert doc.line("merged", "p") == 8  # from the anchor
    assert doc.line("b", 5) is None and doc.line("nope") is None
    assert doc.nearest_line("b", 0, "missing") == 3
    e = doc.error("b", 0, "missing", problem="x is missing")
    assert str(e) == "t.yaml:3: x is missing"


def test_yamlload_duplicate_key_and_syntax_error() -> None:
    with pytest.raises(YamlError) as ei:
        parse_yaml("a: 1\nb:\n  c: 1\n  c: 2\n", "t.yaml")
    assert str(ei.value) == "t.yaml:4: duplicate key 'c' (first at line 3)"
    with pytest.raises(YamlError) as ei:
        parse_yaml("a: 1\nb: [1, 2\nc: 3\n", "t.yaml")
    assert ei.value.line == 3 and "\n" not in str(ei.value)


def test_yamlload_file_bom_and_bad_encoding(tmp_path: Path) -> None:
    p = tmp_path / "x.yaml"
    p.write_bytes("\ufeffname: 龙湾区\n".encode())
    assert load_yaml(p).data == {"name": "龙湾区"}
    p.write_bytes(b"a: 1\nb: \xff\xfe\n")
    with pytest.raises(YamlError) as ei:
        load_yaml(p)
    assert str(ei.value) == f"{p}:2: the file is not valid UTF-8 text"
    assert isinstance(ei.value, ConfigError)


@settings(max_examples=200, deadline=None)
@given(
    kinds=st.none() | st.frozensets(st.sampled_from(list(Kind))),
    categories=st.none() | st.frozensets(st.sampled_from(sorted(CATEGORY_IDS) + ["not_a_category"])),
    focus_areas=st.none() | st.frozensets(st.integers(min_value=0, max_value=16)),
    merchant=st.frozensets(st.sampled_from(list(MerchantSituation))),
)
def test_the_cases_of_a_match_are_those_it_matches(kinds, categories, focus_areas, merchant):
    """load_rules builds each rule's cases dimension by dimension; it must be exactly the cases it matches."""
    from routing.rules import RuleMatch, _all_cases, _cases_matching

    match = RuleMatch(kinds=kinds, categories=categories, focus_areas=focus_areas, merchant=merchant)
    assert _cases_matching(match) == {case for case in _all_cases() if match.matches(*case)}


def test_the_packaged_rules_cover_the_cases_they_match():
    from routing.rules import _all_cases, _cases_matching

    for rule in load_rules().rules:
        assert _cases_matching(rule.match) == {case for case in _all_cases() if rule.match.matches(*case)}, rule.id
