"""Facts a case needs, pulled from the text; shared by both backends.

Platform names come from the lookup table and synonyms of the training YAML, so adding a nickname
there teaches both the Rasa server and this extractor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation

from nlu.numerals import NUMERAL_CHARS, parse_chinese_number
from nlu.result import Entities
from nlu.training import TrainingData

_OPEN, _CLOSE = "「“\"『《【‘'", "」”\"』》】’'"
_QUOTED = f"[{_OPEN}]([^{_OPEN}{_CLOSE}\\n]{{1,30}})[{_CLOSE}]"
_STOP = "，,。.！!？?；;：:、\\s（）()"
_NUM = f"[{NUMERAL_CHARS}]+"

_AMOUNT = re.compile(
    rf"(?:[¥￥]\s*(?P<sym>\d+(?:\.\d+)?))"
    rf"|(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>[wW万kK千]?)\s*(?P<cur>元|块钱?|块|rmb|RMB|人民币)"
    rf"|(?P<numw>\d+(?:\.\d+)?)\s*(?P<unitw>[wW万])(?![\w\u4e00-\u9fff])"
    rf"|(?P<cn>{_NUM})\s*(?P<cncur>元|块钱?|块)"
)
_PAID_BEFORE = ("花了", "花", "付了", "付", "支付", "实付", "到手", "只要", "现在", "秒杀", "共", "总共", "买", "拍", "价格", "结算", "扣了", "扣")
_NOT_PAID_BEFORE = ("原价", "划线价", "市场价", "专柜价", "吊牌价", "省", "便宜", "差价", "运费", "赔", "退了", "返", "券")

_ORDER = re.compile(r"(?:订单号|订单编号|订单|单号)\s*(?:是|为)?[:：#\s]*([A-Za-z0-9][A-Za-z0-9-]{5,39})")
_LONG_DIGITS = re.compile(r"(?<![\d.])(\d{12,24})(?![\d.])")
_MOBILE = re.compile(r"(?<!\d)(1[3-9]\d(?:[\s-]?\d{4}){2})(?!\d)")
_LANDLINE = re.compile(r"(?<!\d)(0\d{2,3}-\d{7,8})(?!\d)")

_STREAMER = [
    re.compile(rf"主播\s*(?:叫|是|名叫|名字叫)?\s*{_QUOTED}"),
    re.compile(rf"{_QUOTED}\s*(?:这个|那个)?主播"),
    re.compile(rf"主播(?:叫|是|名叫)([^{_STOP}的]{{2,12}}?)(?=[{_STOP}]|的|在|说|卖|$)"),
]
_LIVE_ROOM = [
    re.compile(rf"{_QUOTED}\s*(?:的)?直播间"),
    re.compile(rf"直播间\s*(?:叫|是|名叫)?\s*{_QUOTED}"),
    re.compile(rf"(?:在|进了|进)([^{_STOP}在进了个某一]{{2,12}}?)的?直播间"),
]
_SHOP = [
    re.compile(rf"{_QUOTED}\s*(?:旗舰店|专卖店|官方店|店铺|小店|专营店|店)"),
    re.compile(rf"(?:店铺|店名|商家)\s*(?:叫|是|名叫)?\s*{_QUOTED}"),
    re.compile(rf"([^{_STOP}在家里的是叫]{{2,14}}(?:旗舰店|专卖店|专营店))"),
]
_MEASURE = "个件盒瓶双套台支袋箱条份只罐包斤块张副顶部款把本桶组片"
_PRODUCT = [
    re.compile(rf"(?:买了|购买了?|下单了?|拍了|抢了|入手了?|订了|囤了)\s*{_QUOTED}"),
    re.compile(
        rf"(?:买了|购买了?|下单了?|拍了|抢了|入手了?|订了|囤了|买的|买)"
        rf"(?:[一两二三四五六七八九十几\d]+[{_MEASURE}])?"
        rf"(?:所谓的|号称|说是)?([^{_STOP}了的吧呢啊，。]{{2,14}}?)"
        rf"(?=[{_STOP}]|结果|但是|可是|后|回来|收到|到手|花了|不|没|被|有|是|一直|竟然|居然|质量|$)"
    ),
]
_NOT_PRODUCT = re.compile(r"^(东西|一个|了|的|这个|那个|个|件|下|单|过|完)$|^[\d\W]+$")

_WEEKDAYS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6, "末": 5}
_DATE_FULL = re.compile(r"(\d{4})\s*[年./-]\s*(\d{1,2})\s*[月./-]\s*(\d{1,2})\s*[日号]?")
_DATE_MONTH_DAY = re.compile(rf"(?<![\d年])(\d{{1,2}}|[{NUMERAL_CHARS}]{{1,3}})\s*月\s*(\d{{1,2}}|[{NUMERAL_CHARS}]{{1,3}})\s*[日号]")
_DATE_LAST_MONTH = re.compile(rf"上个?月\s*(\d{{1,2}}|[{NUMERAL_CHARS}]{{1,3}})\s*[日号]")
_DATE_WEEK = re.compile(r"(上上|上|这|本)?(?:周|星期|礼拜)([一二三四五六日天末])")
_DATE_DAYS_AGO = re.compile(rf"(\d{{1,2}}|[{NUMERAL_CHARS}]{{1,3}})\s*天(?:前|之前|以前)")
_RELATIVE_DAYS = {"大前天": 3, "前天": 2, "昨天": 1, "昨晚": 1, "昨日": 1, "今天": 0, "今晚": 0, "今早": 0, "刚才": 0}
_SHOPPING_DAYS = {"双十一": (11, 11), "双11": (11, 11), "双十二": (12, 12), "双12": (12, 12), "618": (6, 18), "六一八": (6, 18)}


@dataclass
class _Amount:
    fen: int
    start: int
    score: int


class EntityExtractor:
    def __init__(self, data: TrainingData) -> None:
        variants: dict[str, str] = {}
        for term in data.lookups.get("platform", []):
            variants[term.lower()] = data.synonyms.get(term.lower(), term)
        for variant, canonical in data.synonyms.items():
            if canonical in variants.values() or variant in variants:
                variants.setdefault(variant, canonical)
        self._platforms = sorted(variants.items(), key=lambda kv: -len(kv[0]))

    def extract(self, text: str, today: date) -> Entities:
        live_room = _first(_LIVE_ROOM, text)
        if live_room is not None and self.platform(live_room) is not None and len(live_room) <= 6:
            live_room = None  # "在抖音直播间": the platform, not the name of a room
        return Entities(
            platform=self.platform(text),
            live_room=live_room,
            streamer=_first(_STREAMER, text),
            shop=_first(_SHOP, text),
            product=product(text),
            amount_fen=amount_paid(text),
            order_number=order_number(text),
            phone=phone(text),
            purchase_date=purchase_date(text, today),
        )

    def platform(self, text: str) -> str | None:
        lowered = text.lower()
        best: tuple[int, str] | None = None
        for variant, canonical in self._platforms:
            position = _find_term(lowered, variant)
            if position >= 0 and (best is None or position < best[0]):
                best = (position, canonical)
        return best[1] if best else None


def _find_term(text: str, term: str) -> int:
    """Position of `term`; ASCII terms (dy, pdd) must not sit inside a longer Latin word."""
    if not term.isascii():
        return text.find(term)
    for match in re.finditer(re.escape(term), text):
        before = text[match.start() - 1] if match.start() else " "
        after = text[match.end()] if match.end() < len(text) else " "
        if not (before.isascii() and before.isalnum()) and not (after.isascii() and after.isalpha()):
            return match.start()
    return -1


def _first(patterns: list[re.Pattern], text: str) -> str | None:
    for pattern in patterns:
        match = pattern.search(text)
        if match:
            value = match.group(1).strip(" 　")
            if value and not re.fullmatch(r"[某那这一个\d]+", value):
                return value
    return None


def product(text: str) -> str | None:
    for pattern in _PRODUCT:
        for match in pattern.finditer(text):
            value = match.group(1).strip()
            if value and not _NOT_PRODUCT.search(value) and not _AMOUNT.search(value):
                return value
    return None


def amount_paid(text: str) -> int | None:
    """The amount the person paid, in fen: the amount with the strongest 'paid' cue, else the last one."""
    found: list[_Amount] = []
    for match in _AMOUNT.finditer(text):
        value = _amount_value(match)
        if value is None or value <= 0 or value > 100_000_000:
            continue
        before = text[max(0, match.start() - 6) : match.start()]
        score = sum(1 for cue in _PAID_BEFORE if cue in before) - 2 * sum(1 for cue in _NOT_PAID_BEFORE if cue in before)
        found.append(_Amount(int((value * 100).to_integral_value()), match.start(), score))
    if not found:
        return None
    best = max(found, key=lambda a: (a.score, a.start))
    return best.fen


def _amount_value(match: re.Match) -> Decimal | None:
    try:
        if match.group("sym"):
            return Decimal(match.group("sym"))
        if match.group("num"):
            return Decimal(match.group("num")) * _multiplier(match.group("unit"))
        if match.group("numw"):
            return Decimal(match.group("numw")) * _multiplier(match.group("unitw"))
        return parse_chinese_number(match.group("cn"))
    except InvalidOperation:
        return None


def _multiplier(unit: str | None) -> int:
    return {"w": 10_000, "W": 10_000, "万": 10_000, "k": 1000, "K": 1000, "千": 1000}.get(unit or "", 1)


def order_number(text: str) -> str | None:
    match = _ORDER.search(text)
    if match and any(ch.isdigit() for ch in match.group(1)):
        return match.group(1)
    for match in _LONG_DIGITS.finditer(text):
        if not _MOBILE.fullmatch(match.group(1)):
            return match.group(1)
    return None


def phone(text: str) -> str | None:
    match = _MOBILE.search(text) or _LANDLINE.search(text)
    if not match:
        return None
    return re.sub(r"[\s]", "", match.group(1)) if match.re is _LANDLINE else re.sub(r"[\s-]", "", match.group(1))


def purchase_date(text: str, today: date) -> date | None:
    """The first date the text gives, resolved against `today`; never a day in the future."""
    candidates: list[tuple[int, date]] = []

    def add(position: int, value: date | None) -> None:
        if value is not None and value <= today:
            candidates.append((position, value))

    for match in _DATE_FULL.finditer(text):
        add(match.start(), _safe_date(int(match.group(1)), int(match.group(2)), int(match.group(3))))
    for match in _DATE_MONTH_DAY.finditer(text):
        month, day = _small_number(match.group(1)), _small_number(match.group(2))
        if month and day:
            add(match.start(), _past_month_day(month, day, today))
    for match in _DATE_LAST_MONTH.finditer(text):
        day = _small_number(match.group(1))
        first_of_month = today.replace(day=1)
        previous = first_of_month - timedelta(days=1)
        if day:
            add(match.start(), _safe_date(previous.year, previous.month, day))
    for match in _DATE_WEEK.finditer(text):
        add(match.start(), _weekday(match.group(1) or "", match.group(2), today))
    for match in _DATE_DAYS_AGO.finditer(text):
        days = _small_number(match.group(1))
        if days is not None:
            add(match.start(), today - timedelta(days=days))
    for word, days in _RELATIVE_DAYS.items():
        position = text.find(word)
        if position >= 0 and not (word == "前天" and text[max(0, position - 1) : position] == "大"):
            add(position, today - timedelta(days=days))
    for word, (month, day) in _SHOPPING_DAYS.items():
        position = text.find(word)
        if position >= 0:
            add(position, _past_month_day(month, day, today))
    return min(candidates)[1] if candidates else None


def _small_number(token: str) -> int | None:
    if token.isdigit():
        return int(token)
    value = parse_chinese_number(token)
    return int(value) if value is not None and value == int(value) else None


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _past_month_day(month: int, day: int, today: date) -> date | None:
    """The most recent such day not after today (11月3号 said in January means last November)."""
    this_year = _safe_date(today.year, month, day)
    if this_year is not None and this_year <= today:
        return this_year
    return _safe_date(today.year - 1, month, day)


def _weekday(prefix: str, name: str, today: date) -> date:
    target = _WEEKDAYS[name]
    monday = today - timedelta(days=today.weekday())
    weeks_back = {"上上": 2, "上": 1}.get(prefix, 0)
    day = monday - timedelta(weeks=weeks_back) + timedelta(days=target)
    if not prefix and day > today:  # a bare 周五 means the last one
        day -= timedelta(weeks=1)
    return day
