"""Personal data at rest and its end: complainants' identity encrypted in the database (and by migration
0010 for rows written before it), shown to staff only on an audited reveal, and erased by the retention
purge once every case of the person is closed longer than the retention period, with the figures of the
statistics forms unchanged. The clock stands at 2026-11-16 (tests/conftest.py); retention is 1095 days, so
the cut-off is 2023-11-17."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import asdict
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import StatementError

from db import migrate
from db.crypto import (
    CipherNotConfigured,
    DataCipher,
    DecryptionError,
    bind_cipher,
    bound_cipher,
    key_id,
    new_key_text,
    parse_key,
)
from db.engine import create_engine, create_session_factory
from db.models import BotState, Case, CaseEvent, CaseMessage, Complainant, InboxUpdate, OutboxMessage
from intake.cases import Actor, ComplainantInfo
from intake.redaction import MASK
from intake.rekey import reencrypt_personal_data
from intake.retention import RetentionService
from intake.status import DomainError
from qinglang.bootstrap import build_container
from qinglang.datakey import key_file_path
from qinglang.settings import load_settings
from reports.figures import compute_figures
from reports.period import Period, ReportScope
from tests.integration.test_console import complaint, console  # noqa: F401 - the fixture
from tests.integration.test_console_followup import undeliverable_case
from tests.integration.test_report_figures import CAMPAIGN_START, SHANGHAI, TODAY, story  # noqa: F401

STAFF = Actor("staff", None)


async def raw_people(engine) -> list[tuple]:
    async with engine.connect() as conn:
        return [tuple(row) for row in (await conn.execute(
            text("SELECT name, phone, email, channel_user_id FROM complainants ORDER BY id"))).all()]


async def reveals(container, case_id: int) -> list[dict]:
    async with container.uow() as uow:
        return [e.data for e in (await uow.session.scalars(select(CaseEvent).where(
            CaseEvent.case_id == case_id, CaseEvent.action == "view_personal_data").order_by(CaseEvent.id))).all()]


# -- at rest and on the screen ------------------------------------------------------------------------------


async def test_identity_is_ciphertext_in_the_database_and_plain_only_on_an_audited_reveal(console):
    container = console.container
    view = await container.cases.create(complaint(complainant=ComplainantInfo(
        channel_user_id="42", name="张三", phone="13800000000", email="zhangsan@example.com")))
    (name, phone, email, user_id), = await raw_people(container.engine)
    stored = f"{name} {phone} {email}"
    assert "张三" not in stored and "13800000000" not in stored and "zhangsan" not in stored
    assert all(value.startswith("v1.") for value in (name, phone, email)) and user_id == "42"

    triage = await console.person("t1", "xiaobao", "triage")
    status, html = await triage.get("/")
    assert status == 200 and "138****0000" in html and "13800000000" not in html and "张三" not in html
    assert await reveals(container, view.id) == []  # a masked list is no reveal
    status, html = await triage.get(f"/cases/{view.number}")
    assert status == 200 and "张三" in html and "13800000000" in html and "zhangsan@example.com" in html
    assert await reveals(container, view.id) == [{"fields": ["name", "phone", "email"]}]


async def test_the_call_list_audits_the_name_it_shows_beside_the_phone(console):
    case_id, number, _ = await undeliverable_case(console.container)
    triage = await console.person("t1", "xiaobao", "triage")
    status, html = await triage.get("/followup")
    assert status == 200 and "张三" in html and "13800138000" in html
    assert await reveals(console.container, case_id) == [{"fields": ["name", "phone"], "page": "followup"}]


async def test_an_altered_value_is_refused_not_shown(container):
    view = await container.cases.create(complaint())
    async with container.engine.begin() as conn:
        stored = await conn.scalar(text("SELECT phone FROM complainants"))
        i = len(stored) - 10  # inside the ciphertext, a character whose bits all count
        altered = stored[:i] + ("A" if stored[i] != "A" else "B") + stored[i + 1:]
        await conn.execute(text("UPDATE complainants SET phone = :p"), {"p": altered})
    with pytest.raises(DecryptionError):
        async with container.uow() as uow:
            case = await uow.session.get(Case, view.id)
            await uow.session.get(Complainant, case.complainant_id)


async def test_an_engine_without_a_data_key_refuses_personal_data(container):
    bare = create_engine(container.settings.database_url)  # not through bootstrap: no cipher bound
    try:
        async with create_session_factory(bare)() as session:
            session.add(Complainant(channel="web", name="张三", created_at=datetime.now(UTC)))
            with pytest.raises(StatementError) as caught:
                await session.flush()
        assert isinstance(caught.value.orig, CipherNotConfigured)
    finally:
        await bare.dispose()
    assert await raw_people(container.engine) == []
    # nor can SQL match a value that is different on every write
    with pytest.raises(TypeError, match="only be tested for NULL"):
        select(Complainant).where(Complainant.phone == "13800000000")
    assert select(Complainant).where(Complainant.phone.is_not(None)) is not None


# -- migration 0010 -----------------------------------------------------------------------------------------


async def test_migration_0010_encrypts_rows_written_before_it_and_downgrade_restores_them(
        backend, fresh_database_url, tmp_path, nlu_cache_dir):
    insert = text("INSERT INTO complainants (channel, channel_user_id, name, phone, email, language, created_at) "
                  "VALUES ('telegram', '42', '张三', '13800000000', NULL, 'zh', :at)")
    plain = [("张三", "13800000000", None, "42")]
    bare = create_engine(fresh_database_url)
    try:
        await migrate.upgrade(bare, "0009")
        async with bare.begin() as conn:
            await conn.execute(insert, {"at": datetime(2026, 11, 1, tzinfo=UTC)})
        with pytest.raises(RuntimeError, match="no data key was given"):
            await migrate.upgrade(bare)  # rows to encrypt and no key: nothing changes
        assert await migrate.current_revision(bare) == "0009" and await raw_people(bare) == plain
    finally:
        await bare.dispose()

    settings = load_settings(env_file=None, data_dir=tmp_path / "data", database_url=fresh_database_url,
                             nlu_cache_dir=nlu_cache_dir)
    container = build_container(settings)  # as `qinglang migrate` does: the engine carries the data key
    try:
        await migrate.upgrade(container.engine)
        (name, phone, email, user_id), = await raw_people(container.engine)
        assert name.startswith("v1.") and phone.startswith("v1.") and "张三" not in name and "138" not in phone
        assert (email, user_id) == (None, "42")
        async with container.uow() as uow:
            person = await uow.complainants.by_channel_user("telegram", "42")
            assert (person.name, person.phone, person.email) == ("张三", "13800000000", None)

        await migrate.downgrade(container.engine, "0009")
        assert await raw_people(container.engine) == plain
        await migrate.upgrade(container.engine)
        async with container.uow() as uow:
            assert (await uow.complainants.by_channel_user("telegram", "42")).phone == "13800000000"
    finally:
        await container.close()


# -- retention ----------------------------------------------------------------------------------------------


def at(container, day: date, hour: int = 10) -> None:
    container.clock.at = datetime(day.year, day.month, day.day, hour, tzinfo=SHANGHAI).astimezone(UTC)


async def closed_complaint(container, day: date, user: str, name: str, phone: str, *, close: bool = True) -> int:
    """A complaint received on `day`, mediated with a reply that greets the person, closed a week later."""
    at(container, day)
    view = await container.cases.create(complaint(
        complainant=ComplainantInfo(channel_user_id=user, name=name, phone=phone),
        description=f"我是{name}，电话{phone}，直播间买的羽绒服不给退款，另可联系13911112222"))
    await container.cases.accept(view.id, STAFF)
    await container.cases.add_from_complainant(view.id, Actor("complainant"), text=f"补充：我的邮箱 {user}@example.com")
    await container.cases.resolve(view.id, STAFF, "mediated", f"{name}您好，经调解商家同意退款。")
    if close:
        at(container, day.replace(day=day.day + 7))
        await container.cases.close(view.id, STAFF)
    return view.id


async def deliver_all(container) -> None:
    """The notifier has long since sent every notice (the purge leaves ones still being sent alone)."""
    async with container.uow() as uow:
        for notice in (await uow.session.scalars(select(OutboxMessage))).all():
            notice.status, notice.body = "sent", f"[{notice.template}] {notice.payload}"
        await uow.commit()


async def texts_of(container, case_id: int) -> str:
    async with container.uow() as uow:
        case = await uow.session.get(Case, case_id)
        messages = (await uow.session.scalars(select(CaseMessage.body).where(CaseMessage.case_id == case_id))).all()
        notes = (await uow.session.scalars(select(CaseEvent.note).where(CaseEvent.case_id == case_id))).all()
        notices = (await uow.session.execute(select(OutboxMessage.body, OutboxMessage.payload, OutboxMessage.recipient)
                                             .where(OutboxMessage.case_id == case_id))).all()
    return " | ".join(map(str, [case.description, *messages, *notes, *notices]))


async def person_of(container, case_id: int) -> tuple:
    async with container.uow() as uow:
        case = await uow.session.get(Case, case_id)
        person = await uow.session.get(Complainant, case.complainant_id)
        return person.name, person.phone, person.email, person.channel_user_id


async def purge_events(container) -> list[tuple[int, dict]]:
    async with container.uow() as uow:
        return [(e.case_id, e.data) for e in (await uow.session.scalars(
            select(CaseEvent).where(CaseEvent.action == "purge_personal_data").order_by(CaseEvent.id))).all()]


@pytest.fixture
async def aged(container):
    """Cases of 2023 and 2026 and what each should do under the purge of 2026-11-16."""
    ids = {
        "expired": await closed_complaint(container, date(2023, 3, 6), "1", "张三", "13800000001"),
        "recent": await closed_complaint(container, date(2026, 10, 12), "2", "李四", "13800000002"),
        "open_old": await closed_complaint(container, date(2023, 3, 6), "3", "王五", "13800000003", close=False),
        # the same person twice: an expired case and one still open
        "kept_old": await closed_complaint(container, date(2023, 4, 3), "4", "赵六", "13800000004"),
        "kept_new": await closed_complaint(container, date(2026, 11, 2), "4", "赵六", "13800000004", close=False),
    }
    await deliver_all(container)
    at(container, date(2026, 11, 16))
    async with container.uow() as uow:
        uow.session.add(InboxUpdate(channel="telegram", external_id="1", payload={"from": "张三 13800000001"},
                                    received_at=datetime(2023, 3, 6, tzinfo=UTC)))
        uow.session.add(InboxUpdate(channel="telegram", external_id="2", payload={}, received_at=container.clock.now()))
        uow.session.add(BotState(key="old", data={"phone": "13800000001"}, updated_at=datetime(2023, 3, 6, tzinfo=UTC)))
        await uow.commit()
    return ids


async def test_a_dry_run_counts_and_changes_nothing(container, aged):
    before = {name: (await texts_of(container, i), await person_of(container, i)) for name, i in aged.items()}
    result = await container.retention.purge(dry_run=True)
    assert (result.dry_run, result.cases, result.people, result.people_kept, result.inbox, result.drafts) == \
        (True, 2, 1, 1, 1, 1)
    assert result.cutoff == datetime(2023, 11, 17, 2, tzinfo=UTC)
    assert {name: (await texts_of(container, i), await person_of(container, i)) for name, i in aged.items()} == before
    assert await purge_events(container) == []


async def test_expired_cases_lose_personal_data_and_keep_their_figures(container, aged):
    async with container.uow() as uow:
        facts_before = (await uow.session.execute(select(Case.id, Case.status, Case.category, Case.outcome,
                                                         Case.received_at, Case.closed_at).order_by(Case.id))).all()
    result = await container.retention.purge()
    assert (result.cases, result.people, result.people_kept, result.inbox, result.drafts) == (2, 1, 1, 1, 1)

    expired = await texts_of(container, aged["expired"])
    for detail in ("张三", "13800000001", "13911112222", "1@example.com", "'1'"):  # '1': the chat notices went to
        assert detail not in expired, detail
    assert "直播间买的羽绒服不给退款" in expired and f"{MASK}您好，经调解商家同意退款" in expired
    assert await person_of(container, aged["expired"]) == (None, None, None, None)

    # the person with an open case keeps their identity; their expired case's texts are scrubbed all the same
    assert await person_of(container, aged["kept_new"]) == ("赵六", "13800000004", None, "4")
    assert "赵六" not in await texts_of(container, aged["kept_old"])
    assert "赵六" in await texts_of(container, aged["kept_new"])
    for name in ("recent", "open_old"):
        assert "13800000" in await texts_of(container, aged[name]) and (await person_of(container, aged[name]))[0]

    events = await purge_events(container)
    assert [case_id for case_id, _ in events] == [aged["expired"], aged["kept_old"]]
    assert [data["identity"] for _, data in events] == ["erased", "kept"]
    assert all(set(data) == {"cutoff", "identity", "texts", "notices"} and data["texts"] > 0 for _, data in events)
    async with container.uow() as uow:
        assert (await uow.session.execute(select(Case.id, Case.status, Case.category, Case.outcome, Case.received_at,
                                                 Case.closed_at).order_by(Case.id))).all() == facts_before
        assert (await uow.session.scalars(select(InboxUpdate.external_id))).all() == ["2"]
        assert (await uow.session.scalars(select(BotState.key))).all() == []

    again = await container.retention.purge()
    assert (again.cases, again.people, again.inbox, again.drafts) == (0, 0, 0, 0)
    assert len(await purge_events(container)) == 2


async def test_the_person_goes_when_their_last_case_expires(container, aged):
    await container.retention.purge()
    await container.cases.close(aged["kept_new"], STAFF)
    at(container, date(2026, 11, 17))
    result = await container.retention.purge(before=date(2026, 11, 17))  # everything closed before today
    assert (result.cases, result.people) == (2, 2)  # "recent" and "kept_new", with 李四 and 赵六
    assert await person_of(container, aged["kept_new"]) == (None, None, None, None)
    assert "赵六" not in await texts_of(container, aged["kept_new"])
    assert (await person_of(container, aged["open_old"]))[0] == "王五"


async def test_the_cut_off_is_the_retention_period_or_a_day_not_after_today(container):
    assert container.retention.cutoff(date(2026, 11, 16)) == datetime(2026, 11, 15, 16, tzinfo=UTC)
    with pytest.raises(DomainError, match="after today"):
        await container.retention.purge(before=date(2026, 11, 17))
    forever = RetentionService(container.uow, container.clock, container.settings.tz, None)  # RETENTION_DAYS=0
    result = await forever.purge()
    assert (result.cutoff, result.cases) == (None, 0)


async def test_the_statistics_are_the_same_after_a_purge(container, story):
    async def all_figures():
        async with container.uow() as uow:
            return [asdict(await compute_figures(uow.session, scope=scope, period=period, campaign_start=CAMPAIGN_START,
                                                 tz=SHANGHAI, today=TODAY))
                    for scope, period in ((ReportScope(), Period.month("2026-11")), (ReportScope(), Period.month("2026-10")))]

    before = await all_figures()
    result = await container.retention.purge(before=date(2026, 11, 12))
    # closed before 11-12: before, c1, c2, c3, c4, c7, c8, c9, c10; people whose every case that is
    assert (result.cases, result.people, result.people_kept) == (9, 4, 0)
    assert await all_figures() == before
    async with container.uow() as uow:
        people = sorted((p.channel_user_id or "", p.name or "", p.phone or "")
                        for p in (await uow.session.scalars(select(Complainant))).all())
    assert people == [("", "", "")] * 4 + [("3", "张三", "13800138000"), ("4", "张三", "13800138000"), ("7", "李四", "")]


async def test_rotation_rewrites_old_values_under_the_new_key(container):
    await container.cases.create(complaint())
    update = {"update_id": 7, "message": {"text": "13800138000"}}
    draft = {"draft": {"step": "consent", "name": "张三", "phone": "13800138000"}}
    async with container.uow() as uow:  # a stored update not handled yet, one that failed, and a draft
        uow.session.add(InboxUpdate(channel="telegram", external_id="7", payload=update,
                                    received_at=container.clock.now()))
        uow.session.add(InboxUpdate(channel="telegram", external_id="8", payload={}, error="ValidationError: 张三",
                                    received_at=container.clock.now()))
        uow.session.add(BotState(key="k", data=draft, updated_at=container.clock.now()))
        await uow.commit()
    before = bound_cipher(container.engine)
    old_key = (container.settings.privacy.current_key
               or parse_key(key_file_path(container.settings.storage.data_dir).read_text()))
    new_key = os.urandom(32)
    rotated = DataCipher(new_key, [old_key])
    assert rotated.key_ids[1] == before.current_id
    bind_cipher(container.engine, rotated)
    done = await reencrypt_personal_data(container.uow, rotated)
    assert (done.people, done.inbox, done.drafts) == (1, 2, 1)
    assert (await reencrypt_personal_data(container.uow, rotated)).total == 0
    (name, phone, _, _), = await raw_people(container.engine)
    assert name.startswith(f"v1.{rotated.current_id}.") and phone.startswith(f"v1.{rotated.current_id}.")
    async with container.engine.connect() as conn:
        stored = (await conn.execute(text(
            "SELECT payload FROM inbox UNION ALL SELECT error FROM inbox WHERE error IS NOT NULL "
            "UNION ALL SELECT data FROM bot_states"))).scalars().all()
    assert len(stored) == 4 and all(value.startswith(f"v1.{rotated.current_id}.") for value in stored)
    bind_cipher(container.engine, DataCipher(new_key))  # the old key retired
    async with container.uow() as uow:
        person = await uow.complainants.by_channel_user("telegram", "42")
        rows = (await uow.session.scalars(select(InboxUpdate).order_by(InboxUpdate.id))).all()
        kept = await uow.session.get(BotState, "k")
    assert (person.name, person.phone) == ("张三", "13800138000")
    assert [(r.payload, r.error) for r in rows] == [(update, None), ({}, "ValidationError: 张三")]
    assert kept.data == draft


async def test_the_rekey_command_rewrites_people_stored_messages_and_drafts(container, tmp_path):
    await container.cases.create(complaint())
    async with container.uow() as uow:
        uow.session.add(InboxUpdate(channel="web", external_id="a:1", payload={"type": "text", "text": "13800138000"},
                                    received_at=container.clock.now()))
        uow.session.add(BotState(key="k", data={"draft": {"name": "张三"}}, updated_at=container.clock.now()))
        await uow.commit()
    new_key = new_key_text()  # the key file in the data dir (the one written with) becomes an old key
    env = {k: v for k, v in os.environ.items() if not k.startswith("QINGLANG_")}
    env.update(HOME=str(tmp_path), QINGLANG_DATA_DIR=str(container.settings.storage.data_dir),
               QINGLANG_DATABASE_URL=container.settings.database_url, QINGLANG_DATA_KEY=new_key)
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "qinglang.cli", "rekey", env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, err.decode()
    assert out.decode().strip() == "re-encrypted the personal data of 1 people, 1 stored messages and 1 drafts"
    async with container.engine.connect() as conn:
        stored = (await conn.execute(text("SELECT name FROM complainants UNION ALL SELECT payload FROM inbox "
                                          "UNION ALL SELECT data FROM bot_states"))).scalars().all()
    assert len(stored) == 3 and all(v.startswith(f"v1.{key_id(parse_key(new_key))}.") for v in stored)
