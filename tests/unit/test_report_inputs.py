"""The figures staff enter for the statistics forms: what is accepted, and how bad input is named."""

from __future__ import annotations

import pytest

from qinglang.i18n import translations
from reports.inputs import MAX_TEXT, InputError, MonthlyInputs, parse_monthly, parse_monthly_json, parse_stats


def problems_of(call, *args) -> list[str]:
    with pytest.raises(InputError) as caught:
        call(*args)
    return caught.value.texts()


def test_stats_inputs_accept_typed_and_form_strings():
    values = parse_stats({
        "province_clues": "１２",  # full-width digits from a Chinese keyboard
        "province_clues_filed": 3,
        "monitored_sites": "1,200",
        "monitoring_methods": "  网上巡查、抽检  ",
        "joint_inspections": "",  # blank: not entered
        "long_term_mechanisms": None,
    })
    assert values == {"province_clues": 12, "province_clues_filed": 3, "monitored_sites": 1200,
                      "monitoring_methods": "网上巡查、抽检"}


@pytest.mark.parametrize(("raw", "expected"), [
    ("-1", "省级派发线索(条)：应为不小于0的整数，收到“-1”"),
    ("3.5", "省级派发线索(条)：应为不小于0的整数，收到“3.5”"),
    ("十二", "省级派发线索(条)：应为不小于0的整数，收到“十二”"),
    (True, "省级派发线索(条)：应为整数"),
    (2.0, "省级派发线索(条)：应为整数"),
    (10**10, "省级派发线索(条)：应在0到1000000000之间"),
])
def test_stats_bad_counts_are_named(raw, expected):
    assert problems_of(parse_stats, {"province_clues": raw}) == [expected]


def test_stats_bad_texts_and_unknown_fields_are_all_listed():
    problems = problems_of(parse_stats, {
        "monitoring_methods": 5,
        "administrative_guidance": "x" * (MAX_TEXT + 1),
        "long_term_mechanisms": "ok\x00",
        "penalties_wan": "12",  # computed from the cases: not entered
    })
    assert problems == [
        "行政指导情况(包括但不限于时间、参与主体、成效,成效应当以具体数据、案例等体现)：不能超过5000字",
        "属地监测开展方式：应为文字",
        "长效机制建立情况(含制定制度规范类别、数量等)：含有控制字符",
        "penalties_wan：不是可以填写的项目",
    ]


def test_monthly_rows_by_focus_area_and_form_entries():
    inputs = parse_monthly(
        {"3": {"inspections": "4", "notices_issued": 2, "results": "下架假冒商品12件"}, 8: {"found_extra": "1"}},
        {"preparer": "潘可可", "contact": "0577-85626228"},
    )
    assert inputs.rows == {3: {"inspections": 4, "notices_issued": 2, "results": "下架假冒商品12件"},
                           8: {"found_extra": 1}}
    assert inputs.form == {"preparer": "潘可可", "contact": "0577-85626228"}
    assert parse_monthly_json(inputs.as_json()) == inputs


def test_monthly_bad_rows_name_the_row_and_its_title():
    problems = problems_of(parse_monthly, {
        "3": {"persons_disciplined": "-2", "found": "9"},  # found is counted from the cases
        "15": {},
        "x": {},
        "4": "not a mapping",
    }, {"contact": 123})
    assert problems == [
        "第3行（严厉打击销售假冒伪劣产品）党纪政务处分人数/人：应为不小于0的整数，收到“-2”",
        "第3行（严厉打击销售假冒伪劣产品）found：不是可以填写的项目",
        "第15行：不是1到14之间的序号",
        "第x行：不是1到14之间的序号",
        "第4行：应为字段与数值的对应表",
        "联系方式：应为文字",
    ]


def test_problems_are_translated_where_shown():
    english = translations("en").gettext
    with pytest.raises(InputError) as caught:
        parse_monthly({"3": {"inspections": "-1"}}, {})
    (text,) = caught.value.texts(english)
    assert text.startswith("Row 3 (严厉打击销售假冒伪劣产品) 组织检查数/次")


def test_stored_json_of_another_shape_is_refused():
    assert problems_of(parse_monthly_json, {"rows": [1, 2], "form": {}}) == ["附件2的录入应含 rows 和 form 两个对应表"]
    assert parse_monthly_json({}) == MonthlyInputs()
