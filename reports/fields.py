"""The figures of the seed's two statistics forms, by name: which the cases give and which staff enter.

附件1 浙江省网络直播营销违法违规行为专项治理工作情况统计表 ("stats") and 附件2 网络直播营销违法违规行为专项治理
工作月报表 ("monthly"). The labels are the forms' own words (the forms are filed in Chinese); they are
not translated. Both forms count since the campaign began (附件2 note 1), up to the reporting date.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nlu.taxonomy import CATEGORIES

FieldType = Literal["int", "text", "wan"]  # wan: an amount in 万元 (ten thousand yuan), two decimals


@dataclass(frozen=True)
class FormField:
    key: str
    label: str
    type: FieldType = "int"
    source: Literal["data", "manual"] = "manual"


def _data(key: str, label: str, type: FieldType = "int") -> FormField:
    return FormField(key, label, type, "data")


# 附件1: every figure the case data holds, and where it comes from (reports/figures.py computes them)
STATS_DATA_FIELDS: tuple[FormField, ...] = (
    # 主体名录: the subject registry's entries located in the district, by type
    _data("subjects_platform", "直播平台(家)"),
    _data("subjects_operator", "直播间运营机构(家)"),
    _data("subjects_streamer", "直播营销人员(人)"),
    _data("subjects_service_agency", "直播营销服务机构(家)"),
    # complaints (投诉) received and closed
    _data("complaints_handled", "处置消费投诉(件)"),
    _data("complaints_closed", "办结(件)"),
    # tip-offs (举报) received through Qinglang: the form's "其他渠道"
    _data("other_channel_count", "条/件数"),
    # measures recorded when cases were closed
    _data("accounts_disposed", "处置发布违规内容账号(个)"),
    _data("sites_closed", "关闭违法违规问题网站(个)"),
    _data("takedowns", "督促平台删除违规信息/下架商品(条/个)"),
    _data("criminal_cases", "刑事违法案件总数(件)"),  # cases referred to judicial organs
    _data("administrative_cases", "行政违法案件总数(件)"),  # cases filed (立案)
    _data("cases_over_10k", "其中:万元以上案件数(件)"),  # filed, fines + confiscations >= 10,000 yuan
    _data("penalties_wan", "罚没款总额(万元)", "wan"),
    *(_data(f"filed_{c.id}", ("其中:" if i == 0 else "") + ("其他类型(具体类型)" if c.id == "other" else f"{c.zh}(件)"))
      for i, c in enumerate(CATEGORIES)),
    _data("judicial_referrals", "移送司法机关处理(件)"),
    _data("out_of_province_transfers", "移送省外相关部门处理(件)"),
)

# 附件1: what staff enter once per period (the cases do not hold it)
STATS_MANUAL_FIELDS: tuple[FormField, ...] = (
    FormField("subjects_influential_streamers", "有较大影响力的本地主播(人)"),
    FormField("administrative_guidance", "行政指导情况(包括但不限于时间、参与主体、成效,成效应当以具体数据、案例等体现)",
              "text"),
    FormField("province_clues", "省级派发线索(条)"),
    FormField("province_clues_filed", "立案件数(件)"),
    FormField("monitoring_methods", "属地监测开展方式", "text"),
    FormField("monitored_sites", "监测检查网站、网店(个次)"),
    FormField("monitoring_checks", "属地监测检查(条)"),
    FormField("monitoring_filed", "立案(件)"),
    FormField("other_channel_description", "其他渠道(具体方式)", "text"),
    FormField("long_term_mechanisms", "长效机制建立情况(含制定制度规范类别、数量等)", "text"),
    FormField("other_violation_types", "其他类型的具体类型", "text"),
    FormField("joint_inspections", "开展联合执法检查(次)"),
    FormField("publicity_items", "发布宣传信息(条/次)"),
    FormField("other_publicity", "其他形式宣传活动(条/次)"),
)
DEFAULT_OTHER_CHANNEL = "清朗投诉举报平台（Telegram、网页、接口）受理的举报线索"

# 附件2: one row per 治理的重点问题; by default the campaign's fourteen 整治重点 of the seed
FOCUS_AREA_TITLES: dict[int, str] = {
    1: "从严打击违规技术辅助行为",
    2: "规范平台经营管理",
    3: "严厉打击销售假冒伪劣产品",
    4: "严厉打击知识产权违法行为",
    5: "严格网络食品安全监管",
    6: "严厉查处违法广告宣传行为",
    7: "严格规范价格行为",
    8: "健全投诉举报回应机制",
    9: "加强平台保障机制",
    10: "压实消费维权经营主体责任",
    11: "推动行业自律管理",
    12: "提升信用约束能力",
    13: "规范培养直播电商人才",
    14: "依法查处网络直播营销中其他违反市场监管法律法规及有关规定的行为",
}

# 附件2 columns in the form's order, after 序号 and 治理的重点问题. "found" and "solved" are the cases of
# the row's focus area (reports/figures.py) plus what staff add from other sources (found_extra,
# solved_extra); every other column is entered by staff.
MONTHLY_COLUMNS: tuple[FormField, ...] = (
    FormField("goal_schedule", "治理目标及进度安排", "text"),
    FormField("inspections", "组织检查数/次"),
    FormField("found", "发现群众急难愁盼问题数/个"),
    FormField("solved", "推动解决群众急难愁盼问题数/个"),
    FormField("notices_issued", "制发整改通知书数/份"),
    FormField("notices_completed", "整改通知书整改完成数/份"),
    FormField("misconduct_found", "查处腐败和作风问题数/个"),
    FormField("persons_educated", "批评教育帮助和处理人数/人"),
    FormField("persons_disciplined", "党纪政务处分人数/人"),
    FormField("rules_made", "建立和完善制度数/项"),
    FormField("digital_platforms", "建立数字监管平台数/个"),
    FormField("exposure_batches", "批次数/批"),  # 通报曝光
    FormField("exposure_cases", "案件数/件"),  # 通报曝光
    FormField("published_batches", "批次数/批"),  # 公布成果
    FormField("published_items", "项目数/个"),  # 公布成果
    FormField("results", "工作成效", "text"),
    FormField("problems", "存在的问题", "text"),
    FormField("next_steps", "下一步工作计划", "text"),
    FormField("typical_cases", "典型事例或典型案例", "text"),
)
# the columns staff enter for a row: the manual ones, and additions to the two computed from cases
MONTHLY_ROW_INPUTS: tuple[FormField, ...] = tuple(
    c for c in MONTHLY_COLUMNS if c.key not in ("found", "solved")
) + (FormField("found_extra", "其他来源发现问题数/个"), FormField("solved_extra", "其他来源推动解决问题数/个"))
# the form-level entries of 附件2
MONTHLY_FORM_INPUTS: tuple[FormField, ...] = (
    FormField("preparer", "填表人", "text"),
    FormField("contact", "联系方式", "text"),
    FormField("remarks", "有关数据说明", "text"),
)
