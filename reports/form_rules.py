"""The logic rules of 附件2 (月报表), note 6 (表内逻辑关系), checked row by row; a blank cell counts as 0.

(1) 党纪政务处分人数 ≦ 批评教育帮助和处理人数
(2) 推动解决群众急难愁盼问题数 ≦ 发现群众急难愁盼问题数
(3) 制发整改通知书数 ≧ 整改通知书整改完成数
(4) 通报曝光: 案件数 ≧ 批次数
(5) 公布成果: 项目数 ≧ 批次数 (the note says 栏目数; the form's column is 项目数/个)

A value that is no count at all (negative, not an integer) is not a rule broken but a wrong input:
check_monthly raises ValueError for it, as build_monthly_workbook does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from reports.monthly_form import MonthlyRow, check_row_values, monthly_column_name, row_name


@dataclass(frozen=True)
class Rule:
    number: int
    left: str  # MONTHLY_COLUMNS keys, in the note's order: left <= right, or left >= right
    relation: Literal["<=", ">="]
    right: str

    def holds(self, left: int, right: int) -> bool:
        return left <= right if self.relation == "<=" else left >= right

    def broken_words(self) -> str:
        return "大于" if self.relation == "<=" else "小于"


RULES: tuple[Rule, ...] = (
    Rule(1, "persons_disciplined", "<=", "persons_educated"),
    Rule(2, "solved", "<=", "found"),
    Rule(3, "notices_issued", ">=", "notices_completed"),
    Rule(4, "exposure_cases", ">=", "exposure_batches"),
    Rule(5, "published_items", ">=", "published_batches"),
)


@dataclass(frozen=True)
class RuleViolation:
    rule: int  # 1-5, the number in note 6
    row_number: int  # the row's 序号
    row_title: str  # the row's 治理的重点问题
    message: str  # e.g. "第3行（严厉打击销售假冒伪劣产品）：党纪政务处分人数（5）大于批评教育帮助和处理人数（3）"


def count(row: MonthlyRow, key: str) -> int:
    return row.values.get(key) or 0


def violation(rule: Rule, row: MonthlyRow) -> RuleViolation | None:
    left, right = count(row, rule.left), count(row, rule.right)
    if rule.holds(left, right):
        return None
    message = (f"{row_name(row)}：{monthly_column_name(rule.left)}（{left}）{rule.broken_words()}"
               f"{monthly_column_name(rule.right)}（{right}）")
    return RuleViolation(rule.number, row.number, row.title, message)


def check_monthly(rows: Sequence[MonthlyRow]) -> list[RuleViolation]:
    """Every broken rule, row by row in the rows' order and by rule number within a row.

    Raises ValueError when a value is no count (negative, not an integer) or no text."""
    check_row_values(rows)
    return [found for row in rows for rule in RULES if (found := violation(rule, row)) is not None]
