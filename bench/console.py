"""The staff console and the case API on a large database: seed N realistic cases, then time the pages.

    .venv/bin/python bench/console.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/qinglang_bench \\
        --cases 100000 --cases 1000000 [--explain] [--reset]

For each size (ascending) the database is topped up to that many cases (the cases already there are
kept, so 100,000 then 1,000,000 seeds 900,000 more for the second figure), vacuumed and analysed,
and the real application (web.app.create_app, served by aiohttp on 127.0.0.1) is asked ~50 times
per page, one request at a time, by a triage user (every case) and by a handler of one station
(its unit's cases): the default queue, a filtered queue, the queue's second page (by its cursor)
and a case page; then the same through GET /api/v1/cases with each user's bearer token. One JSON
object per size is printed on stdout: latencies (p50/p95 in ms, measured by the client) and the
seeding time. --explain adds EXPLAIN ANALYZE of the queue's queries (PostgreSQL), full plans on
stderr and their key lines in the JSON.

Seeding is bulk: PostgreSQL COPY (asyncpg copy_records_to_table), or SQLAlchemy core executemany on
SQLite; never CaseService, which would take hours. The schema comes from db.migrate.upgrade and the
units from routing.sync.sync_units. The database is created when missing (PostgreSQL); use a
database of its own, since --reset empties every table of it.

What the seed holds, per case: kind, category (with the NLU's proposal), channel, platform, live
room, streamer, product, amount, merchant (60 % in the district, on a street of a station),
description in Chinese built from per-category templates; received over the last two years (ids in
order of receipt within each top-up); about 10 % open (younger cases are more often open) with next_due_on (overdue for
the older ones), the rest closed with outcome and dates; a complainant for the named cases (some
write more than once); case_units: one active lead (by category, or the station of the merchant's
street), a co-unit for ~20 %, an earlier inactive lead for ~8 %; case_deadlines for the open cases
(~5 % provisional); subjects (platforms, live rooms, streamers) linked through case_subjects;
case_events (create, accept, close) and the official reply (case_messages) of closed cases.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import html
import json
import random
import re
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from argon2 import PasswordHasher  # noqa: E402
from sqlalchemy import func, insert, select, text, update  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine  # noqa: E402

from db import migrate  # noqa: E402
from db.crypto import bound_cipher  # noqa: E402
from db.models import Base, Case, CaseNumberCounter, StaffUser, Subject  # noqa: E402
from db.types import EncryptedText  # noqa: E402
from intake.queries import CaseFilter, CaseQueries, _after, decode_cursor  # noqa: E402
from intake.status import OUTCOMES, REJECTION_GROUNDS  # noqa: E402
from qinglang.bootstrap import Container, build_container  # noqa: E402
from qinglang.settings import Settings, load_settings, normalise_database_url  # noqa: E402
from routing.sync import sync_units  # noqa: E402
from web.access import case_scope  # noqa: E402
from web.accounts import hash_api_token  # noqa: E402
from web.app import create_app  # noqa: E402
from web.keys import SESSION_COOKIE  # noqa: E402
from web.security import Authenticator, Principal  # noqa: E402

BATCH = 20_000  # cases per transaction
TWO_YEARS = 730
TRIAGE_USER, HANDLER_USER = "bench_triage", "bench_handler"
DEFAULT_WORD = "原价"  # in about half of the price cases' descriptions

# -- vocabulary ---------------------------------------------------------------------------------------

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭曾肖田董潘袁蔡蒋余叶程魏苏吕丁任卢姚沈钟姜崔谭陆范汪廖石金夏方邹熊"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏辉建文斌宇浩凯健俊帆博彬鑫婷雪琳晨欣怡"
PLATFORMS = [("抖音", 35), ("快手", 20), ("淘宝", 15), ("拼多多", 10), ("京东", 8), ("微信视频号", 7), ("小红书", 5)]
ROOM_A = ["好物", "严选", "优品", "源头", "工厂", "甄选", "臻品", "美妆", "潮流", "温州", "鹿城", "龙湾", "瓯江", "小鹿",
          "阿强", "丽姐", "大牌", "特卖", "宝藏", "家居", "母婴", "珠宝", "翡翠", "茶叶", "海鲜", "服饰", "鞋包", "数码",
          "零食", "健康"]
ROOM_B = ["直播间", "旗舰店", "官方直播", "严选店", "好物分享", "源头工厂店", "特卖场"]
STREAMER_B = ["小姐姐", "哥", "姐", "老师", "妈妈", "掌柜", "老板娘", "同学", "说好物", "的小店"]
MERCHANT_A = ["瑞安", "永嘉", "乐清", "龙湾", "瓯海", "鹿城", "浙南", "东海", "华信", "恒达", "鑫源", "金诚", "佳和", "新锐",
              "锦程", "天成", "万顺", "宏图", "博远", "汇丰"]
MERCHANT_B = ["贸易有限公司", "电子商务有限公司", "科技有限公司", "商行", "服饰有限公司", "食品有限公司", "日用品店"]
CITIES = ["杭州", "义乌", "广州", "深圳", "上海", "临沂", "泉州", "苏州", "成都", "郑州"]
PROVINCES = ["广东省", "上海市", "山东省", "福建省", "江苏省", "四川省", "河南省"]

CATEGORY_WEIGHTS = [("consumer_rights", 30), ("product_quality", 18), ("price", 12), ("food_safety", 8),
                    ("advertising", 8), ("platform_duty", 6), ("ip_infringement", 5), ("unfair_competition", 4),
                    ("other", 5), ("orientation", 2), ("tax", 2)]
FOCUS = {"orientation": 6, "platform_duty": 2, "product_quality": 3, "food_safety": 5, "price": 7, "advertising": 6,
         "ip_infringement": 4, "unfair_competition": 1, "consumer_rights": 10, "other": 14, "tax": None}
LEAD_BY_CATEGORY = {"price": "jiajing", "unfair_competition": "jiajing", "advertising": "hetong",
                    "product_quality": "zhiliang", "food_safety": "shipin", "ip_infringement": "zhichan",
                    "platform_duty": "wangjian", "orientation": "wangjian", "tax": "xiaobao", "other": "xiaobao",
                    "consumer_rights": "xiaobao"}
PRODUCTS = {
    "product_quality": ["羊绒衫", "羽绒服", "电热水壶", "儿童玩具", "充电宝", "电动牙刷", "保温杯", "四件套", "运动鞋", "真皮包"],
    "food_safety": ["燕窝", "蜂蜜", "牛肉干", "婴儿奶粉", "土鸡蛋", "月饼", "大闸蟹", "保健酒", "代餐粉", "野生菌"],
}
PRODUCTS_ANY = ["羊绒衫", "连衣裙", "面霜", "口红", "翡翠手镯", "茶叶", "扫地机器人", "蓝牙耳机", "按摩仪", "零食大礼包",
                "洗衣凝珠", "瑜伽裤", "紫砂壶", "金手链", "奶粉"]
ISSUES = {
    "price": ["直播间宣称原价{hi}元、今天只要{amount}元，但该商品从未以原价销售过", "主播先涨价后打折，所谓原价是虚构的",
              "标价{amount}元，结算时却收了{hi}元", "承诺的满减优惠券下单后无法使用，价格比宣传的高"],
    "product_quality": ["收到后发现质量严重不合格，送检结果与宣传不符", "用了两天就坏了，以次充好", "成分含量与标签不符，以假充真"],
    "food_safety": ["收到时已经过期变质", "吃了以后腹泻，怀疑不合格", "包装上没有生产日期和生产许可证编号"],
    "advertising": ["主播宣称可以治疗糖尿病，属于虚假宣传", "宣传使用“最好”“第一”等绝对化用语", "夸大功效，宣称七天见效"],
    "ip_infringement": ["疑似假冒知名品牌商标", "盗用他人原创设计图案", "销售仿冒名牌的高仿商品"],
    "platform_duty": ["向平台投诉多次无人处理", "平台未核验商家资质，店铺已无法联系", "平台删除了我的差评"],
    "consumer_rights": ["申请七天无理由退货被商家拒绝", "商家收到退货后拒绝退款", "发货后商家失联", "售后客服一直推诿不处理"],
    "unfair_competition": ["商家刷单炒信、虚构销量", "雇人刷好评，诋毁同行", "以抽奖为名诱导消费，奖品根本不存在"],
    "orientation": ["主播言行低俗，宣扬拜金炫富", "直播内容存在不良导向，诱导未成年人打赏"],
    "tax": ["商家拒绝开具发票", "主播通过私下转账收款，疑似偷逃税款"],
    "other": ["直播间的其他问题，请帮忙处理", "不知道该向哪个部门反映"],
}
DEMANDS = {"complaint": ["要求退款。", "要求退货退款并赔偿。", "要求商家三倍赔偿。", "希望帮忙协调退款。"],
           "tipoff": ["请依法查处。", "请市场监管部门调查处理。", "希望严肃处理该商家。"],
           "consultation": ["请问该如何维权？", "请问这种情况可以投诉吗？", "请问应该向哪里反映？"]}
REPLIES = ["经调解，商家同意全额退款，投诉人表示满意。", "经核查，已责令商家整改。", "已告知投诉人向商家所在地市场监管部门反映。",
           "双方未能达成一致，调解终止，建议通过诉讼途径解决。", "您的咨询已答复，感谢您的反映。"]

OPEN_MIX = [("received", 25), ("accepted", 20), ("in_progress", 25), ("transferred", 10), ("resolved", 12),
            ("rejected", 8)]
KINDS = [("complaint", 70), ("tipoff", 20), ("consultation", 10)]
CHANNELS = [("web", 35), ("telegram", 30), ("hotline", 30), ("api", 5)]


def weighted(pairs: Sequence[tuple[Any, int]]):
    values, weights = zip(*pairs)
    cumulative, total = [], 0
    for w in weights:
        total += w
        cumulative.append(total)
    return list(values), cumulative


# -- what is written -----------------------------------------------------------------------------------

CASE_COLUMNS = ["id", "number", "kind", "category", "focus_area", "status", "channel", "complainant_id", "anonymous",
                "description", "platform", "live_room", "streamer", "product", "amount_fen", "order_number",
                "purchase_date", "merchant_name", "merchant_in_district", "merchant_street", "merchant_province",
                "nlu_category", "nlu_confidence", "routing_rule", "transfer_authority", "transfer_scope",
                "rejection_ground", "outcome", "received_at", "accepted_at", "decided_at", "resolved_at", "closed_at",
                "replied_at", "next_due_on", "access_code_hash", "created_at", "updated_at", "version"]
COMPLAINANT_COLUMNS = ["id", "channel", "channel_user_id", "name", "phone", "email", "language", "created_at"]
UNIT_COLUMNS = ["id", "case_id", "unit_id", "role", "active", "assigned_at"]
DEADLINE_COLUMNS = ["id", "case_id", "clock", "started_on", "due_on", "provisional", "extended", "basis", "met_at"]
SUBJECT_COLUMNS = ["id", "type", "name", "platform", "external_id", "in_district", "street", "notes", "created_at"]
CASE_SUBJECT_COLUMNS = ["id", "case_id", "subject_id", "role"]
EVENT_COLUMNS = ["id", "case_id", "actor_type", "actor_id", "action", "from_status", "to_status", "note", "data",
                 "created_at"]
MESSAGE_COLUMNS = ["id", "case_id", "direction", "body", "is_reply", "staff_user_id", "created_at"]
# tables in the order rows must go in (foreign keys)
TABLES = [("complainants", COMPLAINANT_COLUMNS), ("cases", CASE_COLUMNS), ("case_units", UNIT_COLUMNS),
          ("case_deadlines", DEADLINE_COLUMNS), ("case_subjects", CASE_SUBJECT_COLUMNS),
          ("case_events", EVENT_COLUMNS), ("case_messages", MESSAGE_COLUMNS)]
SEQUENCED = ["complainants", "cases", "case_units", "case_deadlines", "subjects", "case_subjects", "case_events",
             "case_messages"]


@dataclass
class Batch:
    rows: dict[str, list[tuple]] = field(default_factory=lambda: {name: [] for name, _ in TABLES})


ENCRYPTED_COLUMNS = frozenset(f"{table.name}.{column.name}" for table in Base.metadata.sorted_tables
                              for column in table.columns if isinstance(column.type, EncryptedText))


class Writer:
    """Bulk rows into one database: COPY on PostgreSQL, executemany elsewhere."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"

    async def write(self, tables: Iterable[tuple[str, list[str], list[tuple]]]) -> None:
        async with self.engine.begin() as conn:
            if self.postgres:
                raw = (await conn.get_raw_connection()).driver_connection
                for name, columns, rows in tables:
                    if rows:
                        await raw.copy_records_to_table(name, records=self._sealed(name, columns, rows),
                                                        columns=columns)
            else:
                meta = Base.metadata.tables
                for name, columns, rows in tables:
                    if rows:
                        await conn.execute(insert(meta[name]), [dict(zip(columns, r, strict=True)) for r in rows])

    def _sealed(self, table: str, columns: list[str], rows: list[tuple]) -> list[tuple]:
        """COPY bypasses the column types, so personal data is encrypted here as the app would store it."""
        cipher = bound_cipher(self.engine)
        personal = [i for i, column in enumerate(columns) if f"{table}.{column}" in ENCRYPTED_COLUMNS]
        if not personal:
            return rows
        if cipher is None:
            raise RuntimeError("the bench's engine has no data key bound (db.crypto): build it like the app does")
        return [tuple(cipher.encrypt(value, f"{table}.{columns[i]}") if i in personal and value is not None
                      else value for i, value in enumerate(row)) for row in rows]

    async def next_ids(self) -> dict[str, int]:
        async with self.engine.connect() as conn:
            return {name: (await conn.scalar(text(f"SELECT coalesce(max(id), 0) FROM {name}"))) + 1
                    for name in SEQUENCED}

    async def fix_sequences(self) -> None:
        if not self.postgres:
            return  # SQLite's INTEGER PRIMARY KEY continues from max(id) by itself
        async with self.engine.begin() as conn:
            for name in SEQUENCED:
                await conn.execute(text(
                    f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), coalesce(max(id), 0) + 1, false) FROM {name}"))

    async def vacuum_analyze(self) -> None:
        """What autovacuum would have done by the time the tables reached this size."""
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            if self.postgres:
                for name in [*SEQUENCED, "units", "staff_users", "staff_sessions"]:
                    await conn.execute(text(f"VACUUM ANALYZE {name}"))
            else:
                await conn.execute(text("ANALYZE"))


class Generator:
    """Realistic rows, reproducible from the seed."""

    def __init__(self, rng: random.Random, units: dict[str, int], stations: list[tuple[str, list[str]]],
                 subjects: dict[tuple[str, str, str], int], policy, tz, prefix: str, staff_ids: list[int]) -> None:
        self.rng = rng
        self.units = units
        self.station_streets = stations
        self.streets = [(code, street) for code, streets in stations for street in streets]
        self.subjects = subjects
        self.tz = tz
        self.prefix = prefix
        self.staff_ids = staff_ids
        self.kinds = weighted(KINDS)
        self.categories = weighted(CATEGORY_WEIGHTS)
        self.channels = weighted(CHANNELS)
        self.open_mix = weighted(OPEN_MIX)
        self.rooms = [(p, n) for (t, p, n) in subjects if t == "live_room"]
        self.streamers: dict[str, list[str]] = {}
        for t, p, n in subjects:
            if t == "streamer":
                self.streamers.setdefault(p, []).append(n)
        self.merchants_local = [a + b for a in MERCHANT_A for b in MERCHANT_B]
        self.recent: dict[str, list[int]] = {c: [] for c in ("web", "telegram", "hotline", "api")}
        self.basis = {}
        for clock in ("complaint_acceptance", "complaint_mediation", "tipoff_check", "informant_notice", "transfer"):
            try:
                self.basis[clock] = policy.clock(clock).versions[-1].basis
            except (KeyError, AttributeError):
                self.basis[clock] = ""

    def pick(self, table):
        values, cumulative = table
        return self.rng.choices(values, cum_weights=cumulative)[0]

    def person(self) -> str:
        r = self.rng
        return r.choice(SURNAMES) + "".join(r.choice(GIVEN) for _ in range(r.choice((1, 2))))

    def batch(self, received: list[datetime], ids: dict[str, int], counters: dict[int, int], now: datetime) -> Batch:
        r, out = self.rng, Batch()
        today = now.astimezone(self.tz).date()
        for received_at in received:
            self._case(r, out, received_at, ids, counters, now, today)
        return out

    def _case(self, r: random.Random, out: Batch, received_at: datetime, ids, counters, now, today) -> None:
        case_id = ids["cases"]
        ids["cases"] += 1
        local = received_at.astimezone(self.tz)
        received_on = local.date()
        counters[local.year] = counters.get(local.year, 0) + 1
        number = f"{self.prefix}-{local.year}-{counters[local.year]:06d}"
        kind = self.pick(self.kinds)
        category = self.pick(self.categories)
        channel = self.pick(self.channels)
        anonymous = r.random() < (0.4 if kind == "tipoff" else 0.1)
        age = (now - received_at).days
        p_open = 0.7 if age < 30 else 0.3 if age < 90 else 0.045
        status = self.pick(self.open_mix) if r.random() < p_open else "closed"

        # what happened, and where
        platform, room = (self.rooms[r.randrange(len(self.rooms))] if r.random() < 0.9 else (None, None))
        streamer = None
        if platform and r.random() < 0.7 and self.streamers.get(platform):
            streamer = r.choice(self.streamers[platform])
        product = r.choice(PRODUCTS.get(category, PRODUCTS_ANY))
        amount = r.choice((29, 39, 59, 99, 129, 199, 299, 399, 599, 899, 1299, 2999)) + r.choice((0, 0, 0.9))
        hi = int(amount * r.choice((2, 3, 5))) + 9
        purchase_date = received_on - timedelta(days=r.randrange(0, 40))
        in_district = r.random() < 0.6
        if in_district:
            station, street = self.streets[r.randrange(len(self.streets))]
            merchant = "温州" + r.choice(self.merchants_local)
            province = "浙江省"
        else:
            station, street = None, None
            merchant = r.choice(CITIES) + r.choice(MERCHANT_A) + r.choice(MERCHANT_B)
            province = r.choice(PROVINCES) if r.random() < 0.7 else "浙江省"
        issue = r.choice(ISSUES[category]).format(amount=amount, hi=hi)
        where = f"在{platform}「{room}」直播间" if platform else "在线下门店"
        description = (f"我于{purchase_date.month}月{purchase_date.day}日{where}购买了{product}，花了{amount}元，"
                       f"{issue}。{r.choice(DEMANDS[kind])}")
        if streamer and r.random() < 0.5:
            description += f"主播是{streamer}。"

        # the complainant (named cases), sometimes one who wrote before
        complainant_id = None
        if not anonymous:
            pool = self.recent[channel]
            if pool and r.random() < 0.25:
                complainant_id = pool[r.randrange(len(pool))]
            else:
                complainant_id = ids["complainants"]
                ids["complainants"] += 1
                user_id = {"telegram": str(5_000_000_000 + complainant_id), "web": f"web-{complainant_id:x}"}.get(channel)
                phone = f"1{r.choice('3578')}{r.randrange(10**9):09d}"
                email = f"user{complainant_id}@example.cn" if r.random() < 0.15 else None
                out.rows["complainants"].append((complainant_id, channel, user_id, self.person(), phone, email,
                                                 "zh" if r.random() < 0.97 else "en", received_at))
                pool.append(complainant_id)
                if len(pool) > 2000:
                    del pool[: len(pool) - 1000]

        # the path through the statuses
        minutes = timedelta(minutes=1)
        accepted_at = decided_at = resolved_at = closed_at = replied_at = None
        outcome = rejection_ground = transfer_authority = transfer_scope = None
        next_due_on = None
        clocks: list[tuple[str, date, date, datetime | None]] = []  # clock, started, due, met
        if status == "closed":
            decided_at = received_at + minutes * r.randrange(60, 60 * 24 * 7)
            path = r.random()
            if path < 0.1:
                rejection_ground = r.choice(list(REJECTION_GROUNDS))
            elif path < 0.15:
                transfer_authority, transfer_scope = "浙江省外市场监管部门", "out_of_province"
            else:
                accepted_at = decided_at
                resolved_at = accepted_at + minutes * r.randrange(60 * 24, 60 * 24 * 50)
                outcome = "answered" if kind == "consultation" else r.choice(list(OUTCOMES))
            closed_at = (resolved_at or decided_at) + minutes * r.randrange(10, 60 * 24 * 3)
            replied_at = resolved_at or decided_at
            closed_at = min(closed_at, now)
        else:
            acceptance_due = received_on + timedelta(days=9)
            if status in ("received", "transferred"):
                clock = "tipoff_check" if kind == "tipoff" else "complaint_acceptance"
                clocks.append((clock, received_on, acceptance_due, None))
                if status == "transferred":
                    decided_at = received_at + minutes * r.randrange(30, 60 * 24 * 3)
            else:
                decided_at = received_at + minutes * r.randrange(60, 60 * 24 * 5)
                clock = "tipoff_check" if kind == "tipoff" else "complaint_acceptance"
                clocks.append((clock, received_on, acceptance_due, decided_at))
                if status == "rejected":
                    rejection_ground = r.choice(list(REJECTION_GROUNDS))
                    replied_at = decided_at
                    if kind == "tipoff" and not anonymous:
                        clocks.append(("informant_notice", decided_at.astimezone(self.tz).date(),
                                       decided_at.astimezone(self.tz).date() + timedelta(days=7), None))
                else:
                    accepted_at = decided_at
                    started = accepted_at.astimezone(self.tz).date()
                    if status == "resolved":
                        resolved_at = min(accepted_at + minutes * r.randrange(60 * 24, 60 * 24 * 40), now)
                        replied_at = resolved_at
                    if kind == "tipoff":  # handling has no clock of its own; the informant is told of the decision
                        if not anonymous:
                            notified = accepted_at + timedelta(days=2) if status != "accepted" else None
                            clocks.append(("informant_notice", started, started + timedelta(days=7), notified))
                    else:
                        due = started + timedelta(days=r.choice((45, 60, 90)))
                        clocks.append(("complaint_mediation", started, due, resolved_at))
            unmet = [due for _, _, due, met in clocks if met is None]
            next_due_on = min(unmet) if unmet else None
        updated_at = closed_at or resolved_at or decided_at or received_at

        nlu_category = category if r.random() < 0.85 else self.pick(self.categories)
        out.rows["cases"].append((
            case_id, number, kind, category, FOCUS[category], status, channel, complainant_id, anonymous, description,
            platform, room, streamer, product, int(amount * 100), f"{r.randrange(10**15):016d}" if platform else None,
            purchase_date, merchant, in_district, street, province, nlu_category, round(r.uniform(0.35, 0.99), 3),
            f"category_{category}", transfer_authority, transfer_scope, rejection_ground, outcome, received_at,
            accepted_at, decided_at, resolved_at, closed_at, replied_at, next_due_on,
            secrets.token_hex(32) if channel == "web" else None, received_at, updated_at, 1,
        ))

        # units: the lead by category, or the station of the merchant's street; sometimes a co-unit or an earlier lead
        lead = LEAD_BY_CATEGORY[category]
        if station and (category in ("consumer_rights", "other") or r.random() < 0.35):
            lead = station
        roles = [(lead, "lead", True)]
        if r.random() < 0.08 and lead != "xiaobao":
            roles.append(("xiaobao", "lead", False))
        if r.random() < 0.2:
            co = station if station and station != lead else r.choice(("wangjian", "xiaobao", "zongzhi"))
            if co != lead:
                roles.append((co, "co", True))
        for code, role, active in roles:
            out.rows["case_units"].append((ids["case_units"], case_id, self.units[code], role, active, received_at))
            ids["case_units"] += 1

        for clock, started, due, met in clocks:
            provisional = met is None and r.random() < 0.05
            out.rows["case_deadlines"].append((ids["case_deadlines"], case_id, clock, started, due, provisional, False,
                                               self.basis.get(clock, ""), met))
            ids["case_deadlines"] += 1

        for key in (("platform", "", platform), ("live_room", platform or "", room), ("streamer", platform or "", streamer)):
            subject_id = self.subjects.get(key) if key[2] else None
            if subject_id:
                out.rows["case_subjects"].append((ids["case_subjects"], case_id, subject_id, "reported"))
                ids["case_subjects"] += 1

        staff = self.staff_ids[r.randrange(len(self.staff_ids))]
        events = [("system", None, "create", None, "received", received_at)]
        if accepted_at:
            events.append(("staff", staff, "accept", "received", "accepted", accepted_at))
        if status == "closed":
            events.append(("staff", staff, "close", "resolved" if resolved_at else "rejected", "closed", closed_at))
        for actor_type, actor_id, action, source, target, at in events:
            out.rows["case_events"].append((ids["case_events"], case_id, actor_type, actor_id, action, source, target,
                                            None, None, at))
            ids["case_events"] += 1
        if replied_at:
            out.rows["case_messages"].append((ids["case_messages"], case_id, "out", r.choice(REPLIES), True, staff,
                                              replied_at))
            ids["case_messages"] += 1


# -- seeding ---------------------------------------------------------------------------------------------


async def ensure_database(url: str) -> None:
    """Create the PostgreSQL database of the URL when it does not exist."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return
    admin = create_async_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            found = await conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": parsed.database})
            if not found:
                await conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    finally:
        await admin.dispose()


async def reset(engine: AsyncEngine) -> None:
    tables = [t.name for t in Base.metadata.sorted_tables]
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for name in reversed(tables):
                await conn.execute(text(f"DELETE FROM {name}"))


async def ensure_subjects(container: Container, writer: Writer, rng: random.Random) -> dict[tuple[str, str, str], int]:
    """The registry of platforms, live rooms and streamers the cases name (made once)."""
    async with container.engine.connect() as conn:
        existing = (await conn.execute(select(Subject.type, Subject.platform, Subject.name, Subject.id))).all()
    if existing:
        return {(t, p, n): i for t, p, n, i in existing}
    now = datetime.now(UTC)
    platforms = [p for p, _ in PLATFORMS]
    weights = [w for _, w in PLATFORMS]
    rows, found, next_id = [], {}, 1

    def add(type_: str, platform: str, name: str, in_district=None, street=None) -> None:
        nonlocal next_id
        if (type_, platform, name) in found:
            return
        found[(type_, platform, name)] = next_id
        rows.append((next_id, type_, name, platform, None, in_district, street, None, now))
        next_id += 1

    for p in platforms:
        add("platform", "", p)
    names = [a + b + c for a in ROOM_A for b in ROOM_A if a != b for c in ROOM_B]
    rng.shuffle(names)
    for name in names[:3000]:
        add("live_room", rng.choices(platforms, weights)[0], name)
    people = [a + b for a in ROOM_A + list("阿小大老") for b in STREAMER_B]
    for i in range(1500):
        add("streamer", platforms[i % len(platforms)], people[i % len(people)] + ("" if i < len(people) else str(i)))
    await writer.write([("subjects", SUBJECT_COLUMNS, rows)])
    return found


async def ensure_staff(container: Container, handler_unit: str) -> dict[str, dict]:
    """The two bench users with a fresh password and API token each run (nothing shown is kept)."""
    hasher = PasswordHasher()
    now = datetime.now(UTC)
    users = {}
    async with container.uow() as uow:
        units = {u.code: u for u in await uow.units.all()}
        for username, role, unit in ((TRIAGE_USER, "triage", "xiaobao"), (HANDLER_USER, "handler", handler_unit)):
            if unit not in units:
                raise SystemExit(f"no unit {unit!r}; see routing/data/units.yaml")
            password, token = secrets.token_urlsafe(16), secrets.token_urlsafe(32)
            user = await uow.users.by_username(username)
            if user is None:
                user = StaffUser(username=username, display_name=username, role=role, unit_id=units[unit].id,
                                 password_hash="", created_at=now)
                uow.session.add(user)
            user.role, user.unit_id, user.active = role, units[unit].id, True
            user.password_hash, user.api_token_hash = hasher.hash(password), hash_api_token(token)
            user.failed_logins, user.locked_until = 0, None
            await uow.flush()
            users[username] = {"id": user.id, "password": password, "token": token}
        await uow.commit()
    return users


async def seed_to(container: Container, writer: Writer, target: int, rng: random.Random, staff_ids: list[int],
                  subjects: dict) -> dict[str, Any]:
    prefix = container.settings.rules.case_number_prefix
    async with container.engine.connect() as conn:
        have = await conn.scalar(select(func.count()).select_from(Case))
        counter_rows = (await conn.execute(select(CaseNumberCounter.year, CaseNumberCounter.last_value)
                                           .where(CaseNumberCounter.prefix == prefix))).all()
    if have > target:
        raise SystemExit(f"the database holds {have} cases, more than {target}: use --reset or a larger --cases")
    adding = target - have
    started = time.perf_counter()
    if adding:
        async with container.uow() as uow:
            units = {u.code: u.id for u in await uow.units.all()}
        stations = [(u.code, list(u.streets)) for u in container.directory.stations]
        generator = Generator(rng, units, stations, subjects, container.policy, container.settings.tz, prefix,
                              staff_ids)
        now = container.clock.now()
        # receipt times over two years, oldest first, so ids follow receipt
        received = sorted(now - timedelta(seconds=rng.uniform(0, TWO_YEARS * 86400)) for _ in range(adding))
        ids = await writer.next_ids()
        counters = {year: value for year, value in counter_rows}
        for i in range(0, adding, BATCH):
            batch = generator.batch(received[i:i + BATCH], ids, counters, now)
            await writer.write((name, columns, batch.rows[name]) for name, columns in TABLES)
            done = min(i + BATCH, adding)
            print(f"  seeded {have + done:,} cases ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
        await writer.fix_sequences()
        async with container.engine.begin() as conn:
            for year, value in counters.items():
                exists_ = await conn.scalar(select(CaseNumberCounter.year).where(
                    CaseNumberCounter.prefix == prefix, CaseNumberCounter.year == year))
                if exists_ is None:
                    await conn.execute(insert(CaseNumberCounter).values(prefix=prefix, year=year, last_value=value))
                else:
                    await conn.execute(update(CaseNumberCounter).where(
                        CaseNumberCounter.prefix == prefix, CaseNumberCounter.year == year).values(last_value=value))
    seed_seconds = time.perf_counter() - started
    started = time.perf_counter()
    await writer.vacuum_analyze()
    return {"cases": target, "reused": have, "added": adding, "seed_seconds": round(seed_seconds, 1),
            "vacuum_analyze_seconds": round(time.perf_counter() - started, 1)}


async def row_counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        counts = {name: await conn.scalar(text(f"SELECT count(*) FROM {name}"))
                  for name in ("cases", "complainants", "case_units", "case_deadlines", "subjects", "case_subjects",
                               "case_events", "case_messages")}
        counts["open_cases"] = await conn.scalar(select(func.count()).select_from(Case).where(Case.status != "closed"))
    return counts


# -- measuring -------------------------------------------------------------------------------------------


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50_ms": round(statistics.median(ordered), 1), "p95_ms": round(cuts[94], 1),
            "max_ms": round(ordered[-1], 1), "n": len(ordered)}


async def timed(client: aiohttp.ClientSession, urls: Iterable[str], headers: dict[str, str], warm: int = 3) -> dict:
    urls = list(urls)
    times = []
    for i, url in enumerate(urls[:warm] + urls):
        started = time.perf_counter()
        async with client.get(url, headers=headers, allow_redirects=False) as response:
            body = await response.read()
            if response.status != 200:
                raise SystemExit(f"GET {url}: {response.status} {body[:300]!r}")
        if i >= warm:
            times.append((time.perf_counter() - started) * 1000)
    return summary(times)


NEXT_LINK = re.compile(r'href="([^"]*)" rel="next"')


async def sample_numbers(engine: AsyncEngine, principal: Principal, n: int, rng: random.Random) -> list[str]:
    """Open cases the principal may see, picked at random (the cases staff open most)."""
    async with engine.connect() as conn:
        numbers = list((await conn.scalars(
            select(Case.number).where(case_scope(principal), Case.status != "closed").order_by(Case.id))).all())
    if not numbers:
        raise SystemExit(f"no open case visible to {principal.username}")
    return [numbers[rng.randrange(len(numbers))] for _ in range(n)]


async def measure(container: Container, users: dict[str, dict], n: int, word: str, rng: random.Random) -> dict:
    app = create_app(container, with_bot=False)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = "http://127.0.0.1:%d" % runner.addresses[0][1]
    auth = Authenticator(container.uow, container.clock)
    filtered = {"category": "price", "due": "overdue", "status": "received", "q": word}
    results: dict[str, dict] = {"console": {}, "api": {}}
    try:
        async with aiohttp.ClientSession(base) as client:
            for username, role in ((TRIAGE_USER, "triage"), (HANDLER_USER, "handler")):
                info = users[username]
                session_token, principal = await auth.login(username, info["password"])
                numbers = await sample_numbers(container.engine, principal, n, rng)
                cookie = {"Cookie": f"{SESSION_COOKIE}={session_token}"}
                async with client.get("/", headers=cookie) as response:
                    found = NEXT_LINK.search(await response.text())
                second = html.unescape(found.group(1)) if found else None  # None: one page only
                results["console"][role] = {
                    "queue": await timed(client, ["/"] * n, cookie),
                    "filtered": await timed(client, ["/?" + urlencode(filtered)] * n, cookie),
                    "page2": await timed(client, [second] * n, cookie) if second else None,
                    "case": await timed(client, [f"/cases/{x}" for x in numbers], cookie),
                }
                bearer = {"Authorization": f"Bearer {info['token']}"}
                async with client.get("/api/v1/cases", headers=bearer) as response:
                    cursor = (await response.json()).get("next_cursor")
                results["api"][role] = {
                    "list": await timed(client, ["/api/v1/cases"] * n, bearer),
                    "filtered": await timed(client, ["/api/v1/cases?" + urlencode(filtered)] * n, bearer),
                    "page2": await timed(client, ["/api/v1/cases?" + urlencode({"cursor": cursor})] * n, bearer)
                    if cursor else None,
                    "case": await timed(client, [f"/api/v1/cases/{x}" for x in numbers], bearer),
                }
                results.setdefault("visible_open", {})[role] = await visible_open(container.engine, principal)
    finally:
        await runner.cleanup()  # disposes the container's engine too
    return results


async def visible_open(engine: AsyncEngine, principal: Principal) -> int:
    async with engine.connect() as conn:
        return await conn.scalar(select(func.count()).select_from(Case).where(case_scope(principal),
                                                                                Case.status != "closed"))


# -- plans -----------------------------------------------------------------------------------------------

KEY_LINE = re.compile(r"(Scan|Sort|Join|Limit|Aggregate|Append|Nested Loop|Execution Time|Filter|Index Cond|Rows Removed)")


async def explain(container: Container, users: dict[str, dict], word: str) -> dict[str, list[str]]:
    """EXPLAIN ANALYZE of the queries behind the queue page (PostgreSQL), built as CaseQueries builds them."""
    if container.engine.dialect.name != "postgresql":
        return {}
    queries = CaseQueries(container.uow, container.clock, container.settings.tz)
    auth = Authenticator(container.uow, container.clock)
    plans: dict[str, list[str]] = {}
    order = (Case.next_due_on.asc().nulls_last(), Case.id.asc())
    filtered = CaseFilter(status=("received",), category=("price",), due="overdue", text=word)
    for username, role in ((TRIAGE_USER, "triage"), (HANDLER_USER, "handler")):
        _token, principal = await auth.login(username, users[username]["password"])
        scope = case_scope(principal)
        first = await queries.page(scope, CaseFilter())
        statements = {
            "page": select(Case).where(scope, *queries._conditions(CaseFilter())).order_by(*order).limit(51),
            "page_filtered": select(Case).where(scope, *queries._conditions(filtered)).order_by(*order).limit(51),
            # what the queue page counts (open cases only), and with closed ones (a filter asking for them)
            "counts": queries.counts_query(scope, CaseFilter()),
            "counts_with_closed": queries.counts_query(scope, CaseFilter(status=("closed",))),
        }
        if first.next_cursor:
            statements["page2"] = (select(Case).where(scope, *queries._conditions(CaseFilter()),
                                                      _after(decode_cursor(first.next_cursor)))
                                   .order_by(*order).limit(51))
        for name, statement in statements.items():
            sql = str(statement.compile(dialect=container.engine.dialect,
                                        compile_kwargs={"literal_binds": True, "render_postcompile": True}))
            async with container.engine.connect() as conn:
                lines = [row[0] for row in (await conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + sql)).all()]
            print(f"\n-- {role} {name}\n{sql}\n" + "\n".join(lines), file=sys.stderr)
            key = [line.strip() for line in lines if KEY_LINE.search(line) and "Buffers" not in line
                   and "Execution Time" not in line][:14]
            plans[f"{role}.{name}"] = key + [line.strip() for line in lines if "Execution Time" in line]
    return plans


# -- main ------------------------------------------------------------------------------------------------


# the seeded data are made up; one fixed key lets a kept bench database be read by the next run
BENCH_DATA_KEY = base64.urlsafe_b64encode(hashlib.sha256(b"qinglang bench data key").digest()).decode()


def settings_for(args, data_dir: Path, **extra: Any) -> Settings:
    """The bench's settings (bench/reports.py adds its own overrides as `extra`)."""
    overrides: dict[str, Any] = {"data_dir": data_dir, "database_url": args.database_url, "data_key": BENCH_DATA_KEY}
    if args.nlu_cache_dir:
        overrides["nlu_cache_dir"] = args.nlu_cache_dir
    return load_settings(env_file=None, **overrides, **extra)


async def run(args) -> None:
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="qinglang-bench-") as tmp:
        settings = settings_for(args, Path(tmp) / "data")
        await ensure_database(settings.database_url)
        container = build_container(settings)
        try:
            await migrate.upgrade(container.engine)
            if args.reset:
                await reset(container.engine)
            await sync_units(container.uow, container.directory)
            users = await ensure_staff(container, args.handler_unit)
            writer = Writer(container.engine)
            subjects = await ensure_subjects(container, writer, rng)
            staff_ids = [u["id"] for u in users.values()]
            sizes = sorted(set(args.cases))
        finally:
            await container.close()
        for size in sizes:
            container = build_container(settings)
            try:
                seeded = await seed_to(container, Writer(container.engine), size, rng, staff_ids, subjects)
                counts = await row_counts(container.engine)
                plans = await explain(container, users, args.word) if args.explain else None
            finally:
                await container.close()
            container = build_container(settings)  # the app's own; disposed when the app stops
            figures = await measure(container, users, args.requests, args.word, rng)
            result = {**seeded, "database": container.engine.dialect.name, "requests": args.requests,
                      "rows": counts, **figures}
            if plans is not None:
                result["plans"] = plans
            print(json.dumps(result, ensure_ascii=False), flush=True)


def database_arguments(parser: argparse.ArgumentParser, database: str) -> None:
    """The options every bench on a seeded database takes (bench/reports.py too)."""
    parser.add_argument("--database-url", required=True,
                        help=f"a database of the bench's own: postgresql+asyncpg://user@host:5432/{database} "
                             "(created when missing) or sqlite+aiosqlite:///path.db")
    parser.add_argument("--reset", action="store_true", help="empty every table of the database first")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the generated data")
    parser.add_argument("--nlu-cache-dir", type=Path,
                        default=ROOT / "data" / "nlu" if (ROOT / "data" / "nlu").is_dir() else None,
                        help="trained classifier cache (default: data/nlu of the checkout, if present)")


def parse_database_arguments(parser: argparse.ArgumentParser) -> argparse.Namespace:
    args = parser.parse_args()
    args.cases = args.cases or [100_000]
    args.database_url = normalise_database_url(args.database_url)
    return args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    database_arguments(parser, "qinglang_bench")
    parser.add_argument("--cases", type=int, action="append",
                        help="database size to measure at; repeat for several (ascending; each tops up the last)")
    parser.add_argument("--requests", type=int, default=50, help="timed requests per page (default 50)")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE the queue's queries (PostgreSQL)")
    parser.add_argument("--handler-unit", default="suo_yongzhong", help="the station of the handler user")
    parser.add_argument("--word", default=DEFAULT_WORD, help=f"text of the filtered queue (default {DEFAULT_WORD})")
    asyncio.run(run(parse_database_arguments(parser)))

if __name__ == "__main__":
    main()
