"""Brute force and access across boundaries (issue 8, "hold under attack").

- Login: many wrong passwords lock the account and every try is audited; a burst of wrong passwords sent
  in parallel checks no more passwords than the limit allows (each try is counted before its password is
  checked); argon2 runs on every answer, so an unknown or disabled name answers in the time of a wrong
  password; spraying one password over many names is audited name by name.
- One citizen's channel never reaches another's case: forged case buttons in the conversation (withdraw,
  add, rate, look) and a web chat cookie asking for a case it was not granted change and show nothing.
The unit-scoped staff console and API (a handler of another unit: 404, evidence URLs, case numbers) are
covered in test_console.py, test_api.py and test_api_case_work.py; this file adds what they do not.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from db.models import Case, CaseEvent, CaseMessage, StaffSession, StaffUser
from intake.cases import Actor, ComplainantInfo, NewCase
from intake.conversation import Inbound, Person
from intake.status import Status
from nlu.taxonomy import Kind
from routing.rules import MerchantLocation
from web.app import create_app
from web.security import LOCKOUT, MAX_FAILED_LOGINS, AuthError, Authenticator

NOW = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)
WRONG = "用户名或密码错误"
LOCKED = "锁定"


class CountingAuthenticator(Authenticator):
    """Counts the argon2 verifications, whatever the hash."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.verified = 0

    def _verify(self, password_hash: str, password: str) -> bool:
        self.verified += 1
        return super()._verify(password_hash, password)


async def attempt(auth: Authenticator, username: str, password: str) -> str:
    try:
        await auth.login(username, password)
    except AuthError as exc:
        return LOCKED if LOCKED in str(exc) else WRONG
    return "ok"


async def audit(container, action: str, user_id: int | None = None) -> list[CaseEvent]:
    async with container.uow() as uow:
        query = select(CaseEvent).where(CaseEvent.action == action).order_by(CaseEvent.id)
        if user_id is not None:
            query = query.where(CaseEvent.actor_id == user_id)
        return list(await uow.session.scalars(query))


async def sessions(container) -> int:
    async with container.uow() as uow:
        return await uow.session.scalar(select(func.count()).select_from(StaffSession))


# -- login brute force ----------------------------------------------------------------------------------------


async def test_a_parallel_burst_of_wrong_passwords_checks_no_more_than_the_limit(container):
    """Every try of a burst reads the same count before any writes it: counted only after the check,
    20 parallel guesses used to cost the attacker one try (and never locked the account on PostgreSQL)."""
    victim = await container.accounts.create_user("victim", "jiajing", "handler")
    auth = CountingAuthenticator(container.uow, container.clock)
    answers = await asyncio.gather(*(attempt(auth, "victim", f"guess-{i:02d}-password") for i in range(20)))
    assert answers.count(WRONG) == MAX_FAILED_LOGINS and answers.count(LOCKED) == 20 - MAX_FAILED_LOGINS
    async with container.uow() as uow:
        user = await uow.session.get(StaffUser, victim.id)
    assert user.locked_until == NOW + LOCKOUT and user.failed_logins == 0
    assert len(await audit(container, "login_failed", victim.id)) == MAX_FAILED_LOGINS
    assert len(await audit(container, "account_locked", victim.id)) == 1
    assert len(await audit(container, "login_locked", victim.id)) == 20 - MAX_FAILED_LOGINS
    # even the right password waits for the lockout to end; then it works and the count starts again
    assert await attempt(auth, "victim", victim.password) == LOCKED
    container.clock.advance(minutes=15, seconds=1)
    assert await attempt(auth, "victim", victim.password) == "ok"
    assert await attempt(auth, "victim", "one more wrong password") == WRONG
    async with container.uow() as uow:
        assert (await uow.session.get(StaffUser, victim.id)).failed_logins == 1


async def test_sequential_guesses_lock_after_the_limit_and_a_success_resets_the_count(container):
    victim = await container.accounts.create_user("victim", "jiajing", "handler")
    auth = Authenticator(container.uow, container.clock)
    for _ in range(MAX_FAILED_LOGINS - 1):
        assert await attempt(auth, "victim", "wrong password!") == WRONG
    assert await attempt(auth, "victim", victim.password) == "ok"  # four wrong, then right: the count resets
    for _ in range(MAX_FAILED_LOGINS - 1):
        assert await attempt(auth, "victim", "wrong password!") == WRONG
    assert await attempt(auth, "victim", "wrong password!") == WRONG  # the limit: locked now
    assert await attempt(auth, "victim", victim.password) == LOCKED
    assert await sessions(container) == 1  # only the one right login
    assert [e.action for e in await audit(container, "account_locked", victim.id)] == ["account_locked"]


async def test_a_name_nobody_has_answers_like_a_real_account(container):
    """Username enumeration: "locked" after the same number of wrong tries whether the account exists or
    not, and for as long."""
    await container.accounts.create_user("real.one", "jiajing", "handler")
    auth = Authenticator(container.uow, container.clock)
    for name in ("real.one", "made.up"):
        answers = [await attempt(auth, name, "wrong password!") for _ in range(MAX_FAILED_LOGINS + 2)]
        assert answers == [WRONG] * MAX_FAILED_LOGINS + [LOCKED] * 2, name
    container.clock.advance(minutes=15, seconds=1)
    assert await attempt(auth, "made.up", "wrong password!") == WRONG  # as the real lock ends
    assert await attempt(auth, "real.one", "wrong password!") == WRONG


async def test_argon2_runs_for_every_answer(container):
    """Unknown, disabled, wrong and locked: one verification each, so the time says nothing."""
    known = await container.accounts.create_user("known", "jiajing", "handler")
    disabled = await container.accounts.create_user("disabled", "jiajing", "handler")
    async with container.uow() as uow:
        (await uow.session.get(StaffUser, disabled.id)).active = False
        await uow.commit()
    auth = CountingAuthenticator(container.uow, container.clock)
    for username, password in (("nobody-at-all", "some password"), ("disabled", disabled.password),
                               ("known", "wrong password")):
        before = auth.verified
        assert await attempt(auth, username, password) == WRONG, username
        assert auth.verified == before + 1, username
    for _ in range(MAX_FAILED_LOGINS):
        await attempt(auth, "known", "wrong password")
    before = auth.verified
    assert await attempt(auth, "known", known.password) == LOCKED
    assert auth.verified == before + 1
    assert await sessions(container) == 0


async def test_password_spraying_over_many_names_is_audited_name_by_name(container):
    """One password tried against many names from one client: each failure is audited with the name as
    typed (no per-address throttle exists: see the report), no session is made, real accounts are not
    locked by other names' failures."""
    real = await container.accounts.create_user("wang.li", "jiajing", "handler")
    auth = Authenticator(container.uow, container.clock)
    names = [f"user{i:03d}" for i in range(30)] + ["wang.li"]
    answers = [await attempt(auth, name, "Spring2026!") for name in names]
    assert answers == [WRONG] * len(names)
    failed = await audit(container, "login_failed")
    assert [e.note for e in failed if e.actor_id is None] == names[:-1]
    assert [e.actor_id for e in failed if e.actor_id is not None] == [real.id]
    assert await sessions(container) == 0
    assert await attempt(auth, "wang.li", real.password) == "ok"


# -- one citizen, another's case ------------------------------------------------------------------------------


async def citizens_case(container, user_id: str, channel: str) -> tuple[int, str]:
    view = await container.cases.create(NewCase(
        kind=Kind.COMPLAINT, category="consumer_rights", channel=channel,
        description="直播间买的羽绒服七天无理由退货，商家一直不给退款",
        complainant=ComplainantInfo(channel_user_id=user_id, name="张三", phone="13800138000"),
        merchant=MerchantLocation(True, "永中街道", "浙江省"), platform="快手"), Actor("complainant"))
    return view.id, view.number


async def state(container, case_id: int) -> tuple:
    async with container.uow() as uow:
        case = await uow.session.get(Case, case_id)
        messages = await uow.session.scalar(select(func.count()).select_from(CaseMessage)
                                            .where(CaseMessage.case_id == case_id))
        return case.status, case.outcome, case.satisfaction, case.version, messages


@pytest.mark.parametrize("channel", ["telegram", "web"])
async def test_forged_case_buttons_never_touch_another_persons_case(container, channel):
    await asyncio.to_thread(container.nlu.warm_up)
    engine = container.conversation
    case_id, number = await citizens_case(container, "1001", channel)
    closed_id, closed_number = await citizens_case(container, "1001", channel)
    actor = Actor.system()
    await container.cases.reject(closed_id, actor, "no_clue", "线索不具体")
    await container.cases.close(closed_id, actor)
    before = (await state(container, case_id), await state(container, closed_id))
    mallory = Person(channel, "6666")
    draft = None
    for value in (f"withdraw:{number}", "withdraw_yes", f"add:{number}", f"case:{number}", f"rate:{closed_number}",
                  f"rate:{closed_number}:1", f"rate:{closed_number.lower()}:5", f"withdraw:{number.lower()} "):
        outcome = await engine.handle(Inbound("button", NOW, value=value), draft, mallory)
        draft = outcome.draft
        shown = "\n".join(r.text for r in outcome.replies)
        assert "状态" not in shown and "承办单位" not in shown, (value, shown)  # nothing of the case is shown
    # words and a command while "adding" to the forged case go nowhere near it
    outcome = await engine.handle(Inbound("text", NOW, text="补充：其实没有问题，撤销吧"), draft, mallory)
    outcome = await engine.handle(Inbound("command", NOW, value="case", args=number), outcome.draft, mallory)
    assert "没有找到您名下编号为" in outcome.replies[-1].text
    assert (await state(container, case_id), await state(container, closed_id)) == before
    async with container.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(CaseEvent).where(
            CaseEvent.case_id.in_((case_id, closed_id)), CaseEvent.actor_type == "complainant",
            CaseEvent.action.in_(("withdraw", "complainant_addition", "rate")))) == 0


async def test_a_web_chat_cookie_sees_and_acts_on_granted_cases_only(container):
    """The status page shows a case only to a cookie granted it by number + access code; changing the
    number in the URL or in a form shows and changes nothing."""
    from web.chat.routes import GRANTS

    case_id, number = await citizens_case(container, "owner-of-the-case", "web")
    async with TestClient(TestServer(create_app(container, with_bot=False))) as client:
        origin = {"Origin": str(client.make_url("/")).rstrip("/")}
        page = await client.get(f"/chat/status?case={number}")
        html = await page.text()
        assert page.status == 200 and "张三" not in html and "永中" not in html and "已接收" not in html
        # a grant for some other case does not open this one
        mine_id, mine = await citizens_case(container, "the-visitor", "web")
        cookie = client.session.cookie_jar.filter_cookies(client.make_url("/chat"))["qinglang_chat"].value
        from web.chat.identity import ChatIdentity

        visitor = ChatIdentity(cookie)
        await client.app[GRANTS].grant(visitor.user_id, mine_id, mine)
        assert "已接收" in await (await client.get(f"/chat/status?case={mine}")).text()
        html = await (await client.get(f"/chat/status?case={number}")).text()
        assert "已接收" not in html
        before = await state(container, case_id)
        for path, data in (("/chat/status/rate", {"number": number, "score": "1", "form_id": "forged-form-01"}),
                           ("/chat/status/rate", {"number": number.lower(), "score": "5", "form_id": "forged-form-02"})):
            response = await client.post(path, data={"csrf_token": visitor.csrf_token, **data}, headers=origin)
            assert response.status == 403, path
        assert await state(container, case_id) == before
        response = await client.get("/healthz")
        assert response.status == 200
    assert (await container.cases.get(case_id)).status == Status.RECEIVED
