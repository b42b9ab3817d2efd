"""The bureau's violation categories (the breakdown rows of the seed's form 附件1) and case kinds."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from qinglang.i18n import N_


class Kind(StrEnum):
    COMPLAINT = "complaint"  # 投诉: a consumer dispute, wants a remedy
    TIPOFF = "tipoff"  # 举报: reports a violation, wants enforcement
    CONSULTATION = "consultation"  # 咨询: a question, answered and closed


KIND_NAMES_ZH = {Kind.COMPLAINT: N_("投诉"), Kind.TIPOFF: N_("举报"), Kind.CONSULTATION: N_("咨询")}


@dataclass(frozen=True)
class Category:
    id: str
    zh: str
    en: str
    focus_areas: tuple[int, ...]  # the seed's 整治重点 numbers (1-14) this category covers


CATEGORIES: tuple[Category, ...] = (
    Category("orientation", "涉及导向", "Wrong orientation / public order", (6, 1)),
    Category("tax", "涉税违法", "Tax violation", ()),
    Category("platform_duty", "未履行平台义务", "Platform duties not fulfilled", (2, 9)),
    Category("product_quality", "产品质量违法", "Product quality", (3,)),
    Category("food_safety", "食品安全违法", "Food safety", (5,)),
    Category("price", "价格违法", "Pricing", (7,)),
    Category("advertising", "广告违法", "Advertising", (6,)),
    Category("ip_infringement", "网络侵权", "Intellectual property infringement", (4,)),
    Category("unfair_competition", "不正当竞争", "Unfair competition", (1,)),
    Category("consumer_rights", "侵犯消费者权益", "Consumer rights", (10,)),
    Category("other", "其他类型", "Other", (14,)),
)

CATEGORY_IDS: frozenset[str] = frozenset(c.id for c in CATEGORIES)
FOCUS_AREAS: frozenset[int] = frozenset(range(1, 15))


def category(category_id: str) -> Category:
    for c in CATEGORIES:
        if c.id == category_id:
            return c
    raise KeyError(category_id)
