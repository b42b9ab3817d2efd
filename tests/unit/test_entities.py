"""Entity extraction with expected values, against a fixed day (Monday 2026-11-16)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from nlu.entities import EntityExtractor, amount_paid, order_number, phone, product, purchase_date
from nlu.numerals import parse_chinese_number
from nlu.training import default_training_data

TODAY = date(2026, 11, 16)  # a Monday


@pytest.fixture(scope="module")
def extractor() -> EntityExtractor:
    return EntityExtractor(default_training_data())


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("三百九十九", 399), ("两千五", 2500), ("一万二", 12000), ("十一", 11), ("三百零五", 305),
        ("一千零五十", 1050), ("二十", 20), ("两百", 200), ("三万五千", 35000), ("零点五", Decimal("0.5")),
    ],
)
def test_chinese_numerals(text, value):
    assert parse_chinese_number(text) == value


@pytest.mark.parametrize("text", ["", "三百块", "abc", "九九九九十"])
def test_not_a_chinese_numeral(text):
    assert parse_chinese_number(text) is None


@pytest.mark.parametrize(
    ("text", "platform"),
    [
        ("我在抖音直播间买的", "抖音"),
        ("dy上买的面膜", "抖音"),
        ("斗音买的", "抖音"),
        ("在点淘看直播下的单", "淘宝直播"),
        ("pdd百亿补贴买的手机", "拼多多"),
        ("B站up主带货", "哔哩哔哩"),
        ("红薯上种草买的", "小红书"),
        ("微信视频号直播间", "视频号"),
        ("块手老铁推荐的", "快手"),
        ("my body lotion is fake", None),  # 'dy' inside a Latin word is not 抖音
        ("在直播间买的", None),
    ],
)
def test_platform(extractor, text, platform):
    assert extractor.platform(text) == platform


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("花了399元", 39900),
        ("¥199.5买的", 19950),
        ("￥ 88", 8800),
        ("付了三百九十九块", 39900),
        ("两千五元买的手机", 250000),
        ("原价999现在秒杀99元", 9900),
        ("主播说原价1299元，我实付699元", 69900),
        ("花了1.5w", 1500000),
        ("一共花了两百块钱", 20000),
        ("5999元的iPhone15 pro", 599900),
        ("没有价格信息", None),
    ],
)
def test_amount_paid(text, fen):
    assert amount_paid(text) == fen


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("订单号：3723849912837465123 麻烦查一下", "3723849912837465123"),
        ("单号 DY20261103AB77", "DY20261103AB77"),
        ("订单编号为 240913-5566778899", "240913-5566778899"),
        ("我的订单6932018374651920384一直不发货", "6932018374651920384"),
        ("电话13812345678", None),  # a mobile number is not an order number
    ],
)
def test_order_number(text, value):
    assert order_number(text) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("联系我13812345678", "13812345678"),
        ("电话 138 1234 5678", "13812345678"),
        ("手机138-1234-5678", "13812345678"),
        ("座机0577-85626228", "0577-85626228"),
        ("订单6932018374651920384", None),
        ("12345678901", None),  # not a mobile prefix
    ],
)
def test_phone(text, value):
    assert phone(text) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("昨天在直播间买的", date(2026, 11, 15)),
        ("前天下单", date(2026, 11, 14)),
        ("大前天买的", date(2026, 11, 13)),
        ("上周五抢的", date(2026, 11, 13)),
        ("上星期一买的", date(2026, 11, 9)),
        ("周六买的", date(2026, 11, 14)),  # a bare weekday is the last one
        ("11月3号买的", date(2026, 11, 3)),
        ("十一月三号买的", date(2026, 11, 3)),
        ("12月20日买的", date(2025, 12, 20)),  # December has not come yet: last year's
        ("2026年10月3日在抖音购买", date(2026, 10, 3)),
        ("2026-09-30买的", date(2026, 9, 30)),
        ("双十一那天买的", date(2026, 11, 11)),
        ("5天前买的", date(2026, 11, 11)),
        ("上个月20号买的", date(2026, 10, 20)),
        ("2月30日买的", None),  # no such day
        ("明年再说", None),
    ],
)
def test_purchase_date(text, value):
    assert purchase_date(text, TODAY) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("在直播间买了一件羽绒服，结果是假的", "羽绒服"),
        ("昨天下单了两盒面膜，收到发现过期", "面膜"),
        ("买了「黄金手镯」结果不是足金", "黄金手镯"),
        ("在直播间买的，不知道是什么", None),
    ],
)
def test_product(text, value):
    assert product(text) == value


def test_names_of_streamer_room_and_shop(extractor):
    found = extractor.extract("在「小杨哥」直播间看到主播“疯狂小杨”推荐，店铺叫『三只羊优选』", TODAY)
    assert found.live_room == "小杨哥"
    assert found.streamer == "疯狂小杨"
    assert found.shop == "三只羊优选"
    plain = extractor.extract("主播叫王小美的在卖面膜，是美丽心情旗舰店", TODAY)
    assert plain.streamer == "王小美"
    assert plain.shop == "美丽心情旗舰店"


def test_full_message(extractor):
    text = "家人们，我上周五在dy「好物严选」直播间花了三百九十九块买了一件羊绒衫，订单号3723849912837465123，电话13812345678"
    found = extractor.extract(text, TODAY)
    assert found.found() == {
        "platform": "抖音",
        "live_room": "好物严选",
        "product": "羊绒衫",
        "amount_fen": 39900,
        "order_number": "3723849912837465123",
        "phone": "13812345678",
        "purchase_date": date(2026, 11, 13),
    }
