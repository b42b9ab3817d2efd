"""The JSON API under /api/v1 for machine clients (the 12345 hotline, a web form).

Every endpoint but the OpenAPI document needs `Authorization: Bearer <API token>` of a staff account
(`qinglang users create NAME --unit ... --role ... --api-token`); a console session cookie is not enough
(no CSRF protection here). Access follows web/access.py exactly as the console pages do: a case outside
the caller's scope is "not found" (404), never "forbidden", so numbers cannot be probed. Who may act is
checked (403) before whether the case allows it now (409/422); every refusal is logged by
web.api.errors.api_errors and changes nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import quote

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from sqlalchemy import select, true
from sqlalchemy.orm.exc import StaleDataError

from db.models import Case, CaseEvent, Subject
from intake.cases import Actor, CaseNotFound, ComplainantInfo, DeadlineView, EvidenceItem, NewCase
from intake.closing import ClosingFacts
from intake.evidence import (
    EvidenceEmpty,
    EvidenceRejected,
    EvidenceStoreUnavailable,
    EvidenceTooLarge,
    EvidenceTypeNotAllowed,
    StoredFile,
)
from intake.evidence_sweep import referenced_by_a_case
from intake.outbound import OutboundGuard, OutboundPolicy, OutboundRefused
from intake.queries import MAX_PAGE, BadQuery, CaseDetail, CaseFilter, decode_cursor
from intake.status import STATUS_NAMES_ZH, Action, DomainError, IllegalTransition, Status, allowed_actions
from nlu.taxonomy import CATEGORY_IDS, KIND_NAMES_ZH, Kind, category as category_of
from nlu.text import NluInputError
from qinglang.bootstrap import Container
from routing.directory import Scope
from routing.rules import MerchantLocation
from web import evidence_files
from web.access import case_scope, may_act, may_see_identity
from web.accounts import Role
from web.api import schemas as s
from web.api.body import (
    MAX_FILES,
    MAX_JSON_BYTES,
    check_length,
    media_type,
    parse_json,
    parse_query,
    part_bytes,
    part_chunks,
    read_json,
)
from web.api.errors import ApiError, api_errors, json_response
from web.api.openapi import document
from web.keys import CONTAINER, OUTBOUND, PRINCIPAL, QUERIES
from web.security import Principal

log = logging.getLogger("qinglang.api")

PREFIX = "/api/v1"
CREATORS = frozenset({Role.TRIAGE, Role.HANDLER})  # a hotline/web-form client is a triage account
TRANSITIONS = tuple(Action(a) for a in s.TRANSITION_ACTIONS)
NUMBER = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
LIST_FIELDS = frozenset(name for name, f in s.CaseListQuery.model_fields.items()
                        if getattr(f.annotation, "__origin__", None) is list)
RECEIVED_SKEW = timedelta(minutes=5)  # clocks of other systems drift a little
RECEIVED_MAX_AGE = timedelta(days=366)
EVIDENCE_RETRY_AFTER = 60  # seconds, when the evidence store cannot take files
UPLOADS = web.RequestKey("api_uploads", list)  # the StoredFiles this request stored, taken back if it fails


def setup(app: web.Application) -> None:
    app.middlewares.append(api_errors)  # JSON errors for every /api/ path (scoped inside)
    app[OUTBOUND] = OutboundGuard(OutboundPolicy.from_settings(app[CONTAINER].settings.outbound))
    app.on_cleanup.append(_close_outbound)
    router = app.router
    router.add_get(f"{PREFIX}/openapi.json", openapi_json)
    router.add_post(f"{PREFIX}/cases", discarding_failed_uploads(create_case))
    router.add_get(f"{PREFIX}/cases", list_cases)
    router.add_get(f"{PREFIX}/cases/{{number}}", get_case)
    router.add_post(f"{PREFIX}/cases/{{number}}/transitions", post_transition)
    router.add_post(f"{PREFIX}/cases/{{number}}/messages", post_message)
    router.add_post(f"{PREFIX}/cases/{{number}}/assignment", post_assignment)
    router.add_post(f"{PREFIX}/cases/{{number}}/subjects", post_subject)
    router.add_delete(f"{PREFIX}/cases/{{number}}/subjects/{{subject_id:[0-9]{{1,19}}}}", delete_subject)
    router.add_post(f"{PREFIX}/cases/{{number}}/rating", post_rating)
    router.add_get(f"{PREFIX}/cases/{{number}}/evidence/{{sha256:[0-9a-f]{{64}}}}", get_evidence)
    router.add_get(f"{PREFIX}/cases/{{number}}/evidence/{{sha256:[0-9a-f]{{64}}}}/original", get_evidence_original)


# -- handlers ---------------------------------------------------------------------------------------


async def openapi_json(request: web.Request) -> web.Response:
    return json_response(document())


async def _close_outbound(app: web.Application) -> None:
    await app[OUTBOUND].close()


async def create_case(request: web.Request) -> web.Response:
    principal = authenticate(request)
    if principal.role not in CREATORS:
        raise ApiError(403, "forbidden", f"the {principal.role} role cannot create cases; use a triage or handler account")
    container = request.app[CONTAINER]
    kind = media_type(request)
    if kind == "application/json":
        body = await read_json(request, s.NewCaseIn)
        new = await plan_case(container, body, request.app[OUTBOUND])
    elif kind == "multipart/form-data":
        new = await _multipart_case(request, container)
    else:
        raise ApiError(415, "unsupported_media_type", "send the case as application/json, or as multipart/form-data "
                       "with a `case` JSON part followed by `files` parts")
    try:
        view = await container.cases.create(new, Actor("staff", principal.id))
    except DomainError as exc:
        raise ApiError(422, "domain_error", str(exc)) from None
    log.info("api case %s created by %s via channel %s", view.number, principal.username, new.channel)
    detail = await request.app[QUERIES].detail(true(), view.number)  # the creator sees what it created
    location = f"{PREFIX}/cases/{quote(view.number)}"
    return json_response(case_out(container, principal, detail, show_identity=False), status=201,
                         headers={"Location": location})


async def list_cases(request: web.Request) -> web.Response:
    principal = authenticate(request)
    query = parse_query(request.rel_url.query, s.CaseListQuery, LIST_FIELDS)
    if query.cursor:
        _check_cursor(query.cursor)
    filters = CaseFilter(
        status=tuple(v.value for v in query.status), kind=tuple(v.value for v in query.kind),
        category=tuple(v.value for v in query.category), unit=query.unit, channel=tuple(query.channel),
        platform=query.platform or None, due=query.due, received_from=query.received_from,
        received_to=query.received_to, text=query.q or None,
    )
    try:
        page = await request.app[QUERIES].page(case_scope(principal), filters, cursor=query.cursor,
                                               limit=min(query.limit, MAX_PAGE))
    except BadQuery as exc:
        raise ApiError(400, "validation_error", str(exc), field="cursor" if "cursor" in str(exc) else None) from None
    names = _unit_names(request.app[CONTAINER])
    items = [s.CaseListItem(
        number=row.number, kind=row.kind, category=row.category, status=row.status, channel=row.channel,
        platform=row.platform, received_at=row.received_at, next_due_on=row.next_due_on,
        lead_unit=_unit_ref(row.lead_unit, names), excerpt=row.excerpt, overdue=row.overdue, due_soon=row.due_soon,
    ) for row in page.rows]
    return json_response(s.CaseList(items=items, next_cursor=page.next_cursor).model_dump(mode="json"))


async def get_case(request: web.Request) -> web.Response:
    principal = authenticate(request)
    container = request.app[CONTAINER]
    detail = await _visible_case(request, principal)
    show = _identity_shown(principal, detail)
    if show:
        await _audit_identity_view(container, principal, detail)
    duplicate_of = await _duplicate_of(container, detail.case.id) if detail.case.duplicate_of_id else None
    return json_response(case_out(container, principal, detail, show_identity=show, duplicate_of=duplicate_of))


async def post_transition(request: web.Request) -> web.Response:
    principal = authenticate(request)
    container = request.app[CONTAINER]
    detail = await _visible_case(request, principal)
    change = (await read_json(request, s.TransitionIn)).root
    action = Action(change.action)
    if not may_act(principal, detail.unit_parts, action):
        raise ApiError(403, "forbidden", _refusal(principal, detail.unit_parts, action.value))
    case_id, actor, cases = detail.case.id, Actor("staff", principal.id), container.cases
    if isinstance(change, s.DuplicateIn):  # the status first, then the original it names
        status = Status(detail.case.status)
        if action not in allowed_actions(status):
            raise ApiError(409, "illegal_transition", str(IllegalTransition(action, status)), field="action")
        original = change.original.upper()
        if original == detail.case.number.upper():
            raise ApiError(422, "domain_error", "a case cannot be a duplicate of itself", field="original")
        if not await _visible_number(container, principal, original):
            raise ApiError(422, "unknown_original", f"no case {original!r}", field="original")
    try:
        match change:
            case s.AcceptIn():
                view = await cases.accept(case_id, actor, change.note or None)
            case s.RejectIn():
                view = await cases.reject(case_id, actor, change.ground.value, change.reply)
            case s.TransferIn() if change.unit is not None:
                view = await cases.transfer(case_id, actor, unit_code=change.unit, note=change.note or None)
            case s.TransferIn():
                name, scope = _authority(container, change.authority, change.scope, detail.case.merchant_province)
                view = await cases.transfer(case_id, actor, authority=name, scope=scope, note=change.note or None)
            case s.StartIn():
                view = await cases.start(case_id, actor, change.note or None)
            case s.ResolveIn():
                view = await cases.resolve(case_id, actor, change.outcome.value, change.reply)
            case s.CloseIn():
                view = await cases.close(case_id, actor, change.note or None, _closing_facts(change))
            case s.ReopenIn():
                view = await cases.reopen(case_id, actor, change.reason)
            case s.DuplicateIn():
                view = await cases.mark_duplicate(case_id, actor, change.original.upper(), change.reply)
    except IllegalTransition as exc:
        raise ApiError(409, "illegal_transition", str(exc), field="action") from None
    except CaseNotFound:
        raise _not_found(detail.case.number) from None
    except StaleDataError:
        raise ApiError(409, "conflict", "the case was changed by someone else at the same time; reload it and retry") from None
    except DomainError as exc:
        raise ApiError(422, "domain_error", str(exc), field=getattr(exc, "field", None)) from None
    log.info("api case %s: %s by %s -> %s", view.number, action.value, principal.username, view.status.value)
    duplicate_of = await _duplicate_of(container, case_id) if action == Action.DUPLICATE else None
    return json_response(case_state(container, principal, view, duplicate_of=duplicate_of))


# the access-policy action (web/access.py) of each kind of message
MESSAGE_ACTIONS = {"reply": "reply", "message": "message", "info_request": "request_info"}


async def post_message(request: web.Request) -> web.Response:
    principal = authenticate(request)
    container = request.app[CONTAINER]
    detail = await _visible_case(request, principal)
    message = await read_json(request, s.MessageIn)
    action = MESSAGE_ACTIONS[message.kind]
    if not may_act(principal, detail.unit_parts, action):
        raise ApiError(403, "forbidden", _refusal(principal, detail.unit_parts, "message"))
    case = detail.case
    if case.status == Status.CLOSED:
        raise ApiError(409, "case_closed", "the case is closed; reopen it before writing to the complainant")
    if message.kind == "info_request" and (case.anonymous or case.complainant_id is None):
        raise ApiError(422, "no_contact", "an anonymous informant (or a case without a complainant) cannot be "
                       "asked for more information: nobody can be contacted", field="kind")
    actor, cases = Actor("staff", principal.id), container.cases
    try:
        if message.kind == "reply":
            await cases.reply(case.id, actor, message.text)
        elif message.kind == "message":
            await cases.message(case.id, actor, message.text)
        else:
            await cases.request_information(case.id, actor, message.text)
    except StaleDataError:
        raise ApiError(409, "conflict", "the case was changed by someone else at the same time; retry") from None
    except DomainError as exc:
        raise ApiError(422, "domain_error", str(exc)) from None
    log.info("api case %s: %s to the complainant by %s", case.number, message.kind, principal.username)
    out = s.MessageCreated(number=case.number, message=s.MessageOut(
        at=container.clock.now(), direction="out", body=message.text.strip(), is_reply=message.kind == "reply",
        info_request=message.kind == "info_request"))
    return json_response(out.model_dump(mode="json"), status=201)


async def post_assignment(request: web.Request) -> web.Response:
    """Triage sets the lead and co-units. The same units again answer 200 with nothing changed."""
    principal = authenticate(request)
    container = request.app[CONTAINER]
    detail = await _visible_case(request, principal)
    body = await read_json(request, s.AssignmentIn)
    if not may_act(principal, detail.unit_parts, "reassign"):
        raise ApiError(403, "forbidden", _refusal(principal, detail.unit_parts, "reassign"))
    if detail.case.status == Status.CLOSED:
        raise ApiError(409, "case_closed", "the case is closed; reopen it before changing its units")
    co_units = tuple(dict.fromkeys(c for c in body.co_units if c != body.lead))
    async with container.uow() as uow:
        known = await uow.units.by_codes([body.lead, *co_units])
    for field, code in [("lead", body.lead), *((f"co_units.{body.co_units.index(c)}", c) for c in co_units)]:
        if code not in known or not known[code].active:
            raise ApiError(422, "unknown_unit", f"no active unit {code!r}; see `qinglang units list`", field=field)
    current_lead = next((unit.code for unit, role in detail.units if role == "lead"), None)
    current_co = {unit.code for unit, role in detail.units if role == "co"}
    actor, cases = Actor("staff", principal.id), container.cases
    try:
        if current_lead == body.lead and current_co == set(co_units):
            view = await cases.get(detail.case.id)  # already so: nothing to change, nothing recorded
        else:
            view = await cases.reassign(detail.case.id, actor, body.lead, co_units, body.note or None)
    except CaseNotFound:
        raise _not_found(detail.case.number) from None
    except StaleDataError:
        raise ApiError(409, "conflict", "the case was changed by someone else at the same time; reload it and retry") from None
    except DomainError as exc:
        raise ApiError(422, "domain_error", str(exc)) from None
    log.info("api case %s: units set by %s -> lead %s, co %s", view.number, principal.username, view.lead_unit,
             ",".join(view.co_units))
    return json_response(case_state(container, principal, view))


async def post_subject(request: web.Request) -> web.Response:
    principal = authenticate(request)
    container = request.app[CONTAINER]
    detail = await _visible_case(request, principal)
    body = await read_json(request, s.SubjectLinkIn)
    if not may_act(principal, detail.unit_parts, "link_subject"):
        raise ApiError(403, "forbidden", _refusal(principal, detail.unit_parts, "link subjects to"))
    if any(subject.id == body.subject_id for subject in detail.subjects):
        raise ApiError(409, "already_linked", "the case is already linked to this subject", field="subject_id")
    async with container.uow() as uow:
        exists = await uow.session.scalar(select(Subject.id).where(Subject.id == body.subject_id))
    if exists is None:
        raise ApiError(422, "unknown_subject", f"no subject {body.subject_id} in the registry", field="subject_id")
    await _subject_change(container, detail, container.cases.link_subject, principal, body.subject_id)
    log.info("api case %s: subject %d linked by %s", detail.case.number, body.subject_id, principal.username)
    return json_response(await _case_subjects(request, detail.case.number), status=201)


async def delete_subject(request: web.Request) -> web.Response:
    principal = authenticate(request)
    container = request.app[CONTAINER]
    detail = await _visible_case(request, principal)
    subject_id = int(request.match_info["subject_id"])
    if not may_act(principal, detail.unit_parts, "unlink_subject"):
        raise ApiError(403, "forbidden", _refusal(principal, detail.unit_parts, "unlink subjects from"))
    if not any(subject.id == subject_id for subject in detail.subjects):
        raise ApiError(404, "not_linked", f"the case is not linked to subject {subject_id}", field="subject_id")
    await _subject_change(container, detail, container.cases.unlink_subject, principal, subject_id)
    log.info("api case %s: subject %d unlinked by %s", detail.case.number, subject_id, principal.username)
    return json_response(await _case_subjects(request, detail.case.number))


async def post_rating(request: web.Request) -> web.Response:
    """The rating the complainant gave in the follow-up call (or through the hotline), once per case."""
    principal = authenticate(request)
    container = request.app[CONTAINER]
    detail = await _visible_case(request, principal)
    body = await read_json(request, s.RatingIn)
    if not may_act(principal, detail.unit_parts, "rate"):
        raise ApiError(403, "forbidden", _refusal(principal, detail.unit_parts, "rate"))
    case = detail.case
    if case.rated_at is not None:
        raise ApiError(409, "already_rated", "the case was already rated")
    if case.status != Status.CLOSED:
        raise ApiError(409, "case_not_closed", "the rating comes after the answer: the case is not closed")
    try:
        view = await container.cases.rate(case.id, Actor("staff", principal.id), body.score, body.comment or None)
    except CaseNotFound:
        raise _not_found(case.number) from None
    except StaleDataError:
        raise ApiError(409, "conflict", "the case was changed by someone else at the same time; reload it and retry") from None
    except DomainError as exc:
        raise ApiError(422, "domain_error", str(exc)) from None
    log.info("api case %s: rated %d by %s", case.number, body.score, principal.username)
    rated = await request.app[QUERIES].detail(true(), case.number)  # the caller was allowed to act on it
    out = s.RatingCreated(number=case.number, status=view.status.value, status_name=STATUS_NAMES_ZH[view.status],
                          satisfaction=_satisfaction(rated.case), reopened=view.status != Status.CLOSED)
    return json_response(out.model_dump(mode="json"), status=201)


async def get_evidence(request: web.Request) -> web.StreamResponse:
    """An evidence file as staff see it: an image without its location and other metadata."""
    principal = authenticate(request)
    container: Container = request.app[CONTAINER]
    found = await _visible_evidence(request, principal)
    try:
        path = await container.evidence.staff_copy(found.sha256, found.mime)
    except FileNotFoundError:
        raise _evidence_not_found(found.sha256) from None
    if path is None:
        raise ApiError(409, "no_safe_copy", "no copy without metadata can be made of this image (it does not decode "
                       "safely, or its type is not decoded here); GET .../original gives the file as uploaded, and "
                       "that download is audited")
    return evidence_files.file_response(path, found, original=False)


async def get_evidence_original(request: web.Request) -> web.StreamResponse:
    """The evidence file exactly as uploaded, metadata and all; every download is in the case's audit log."""
    principal = authenticate(request)
    container: Container = request.app[CONTAINER]
    found = await _visible_evidence(request, principal)
    path = container.evidence.path_for(found.sha256)
    if not path.is_file():
        raise _evidence_not_found(found.sha256)
    await evidence_files.audit_original(container.uow, container.clock, found, principal.id, via="api")
    log.info("api original evidence %s of %s downloaded by %s", found.sha256[:12], found.number, principal.username)
    return evidence_files.file_response(path, found, original=True)


async def _visible_evidence(request: web.Request, principal: Principal) -> evidence_files.CaseEvidence:
    number, sha256 = request.match_info["number"], request.match_info["sha256"]
    if not NUMBER.match(number):
        raise _not_found(number)
    found = await evidence_files.find(request.app[CONTAINER].uow, case_scope(principal), number, sha256)
    if found is None:  # no such case, out of scope, or not a file of it: the same answer
        raise _evidence_not_found(sha256)
    return found


def _evidence_not_found(sha256: str) -> ApiError:
    return ApiError(404, "not_found", f"no evidence file {sha256[:64]!r} in a case you may see")


# -- authentication and access ----------------------------------------------------------------------


def authenticate(request: web.Request) -> Principal:
    """The caller of a bearer token; 401 otherwise (a console session cookie does not count here)."""
    header = request.headers.get("Authorization", "")
    challenge = 'Bearer realm="qinglang"'
    if not header:
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <API token>",
                       headers={"WWW-Authenticate": challenge})
    if not header.startswith("Bearer ") or not header[7:].strip():
        raise ApiError(401, "unauthorized", "use the Bearer scheme: Authorization: Bearer <API token>",
                       headers={"WWW-Authenticate": challenge})
    principal = request.get(PRINCIPAL)
    if principal is None or principal.via != "token":
        raise ApiError(401, "invalid_token", "the API token is not valid, or its account is disabled",
                       headers={"WWW-Authenticate": f'{challenge}, error="invalid_token"'})
    return principal


async def _visible_case(request: web.Request, principal: Principal) -> CaseDetail:
    number = request.match_info["number"]
    if not NUMBER.match(number):
        raise _not_found(number)
    detail = await request.app[QUERIES].detail(case_scope(principal), number)
    if detail is None:  # missing or out of scope: the same answer
        raise _not_found(number)
    return detail


def _not_found(number: str) -> ApiError:
    return ApiError(404, "not_found", f"no case {number[:40]!r}")


async def _visible_number(container: Container, principal: Principal, number: str) -> bool:
    """Whether a case of this number exists within the caller's scope."""
    async with container.uow() as uow:
        found = await uow.session.scalar(select(Case.id).where(Case.number == number, case_scope(principal)))
    return found is not None


async def _duplicate_of(container: Container, case_id: int) -> str | None:
    async with container.uow() as uow:
        original_id = await uow.session.scalar(select(Case.duplicate_of_id).where(Case.id == case_id))
        if original_id is None:
            return None
        return await uow.session.scalar(select(Case.number).where(Case.id == original_id))


async def _subject_change(container: Container, detail: CaseDetail, change, principal: Principal,
                          subject_id: int) -> None:
    try:
        await change(detail.case.id, Actor("staff", principal.id), subject_id)
    except CaseNotFound:
        raise _not_found(detail.case.number) from None
    except StaleDataError:
        raise ApiError(409, "conflict", "the case was changed by someone else at the same time; reload it and retry") from None
    except DomainError as exc:  # linked or unlinked at the same moment by someone else
        raise ApiError(409, "conflict", str(exc), field="subject_id") from None


async def _case_subjects(request: web.Request, number: str) -> dict:
    detail = await request.app[QUERIES].detail(true(), number)  # the caller was allowed to act on it
    return s.CaseSubjects(number=number, subjects=_subjects(detail.subjects)).model_dump(mode="json")


def _refusal(principal: Principal, unit_parts: dict[int, str], action: str) -> str:
    if principal.role != Role.HANDLER:
        return f"the {principal.role} role may not {action} cases"
    if unit_parts.get(principal.unit_id) == "lead":
        return f"handlers may not {action} cases; ask triage (消保分局)"
    return f"only the lead unit of this case (or triage) may {action} it; {principal.unit_name} is not the lead"


def _identity_shown(principal: Principal, detail: CaseDetail) -> bool:
    person = detail.complainant
    return (person is not None and bool(person.name or person.phone)
            and may_see_identity(principal, detail.case.anonymous, detail.unit_parts))


async def _audit_identity_view(container: Container, principal: Principal, detail: CaseDetail) -> None:
    async with container.uow() as uow:
        uow.session.add(CaseEvent(
            case_id=detail.case.id, actor_type="staff", actor_id=principal.id, action="view_personal_data",
            data={"via": "api", "fields": [f for f in ("name", "phone") if getattr(detail.complainant, f)]},
            created_at=container.clock.now(),
        ))
        await uow.commit()


def _allowed(principal: Principal, unit_parts: dict[int, str], status: Status, *,
             inside_transfer: bool = False) -> list[str]:
    actions = [a for a in TRANSITIONS if a in allowed_actions(status) and may_act(principal, unit_parts, a)]
    if inside_transfer and Action.CLOSE in actions:  # closed by the receiving unit after handling
        actions.remove(Action.CLOSE)
    return [a.value for a in actions]


# -- intake -----------------------------------------------------------------------------------------


async def _multipart_case(request: web.Request, container: Container) -> NewCase:
    max_file = container.evidence.limits.max_bytes
    check_length(request, MAX_FILES * (max_file + 16 * 1024) + MAX_JSON_BYTES)
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError, KeyError, HttpProcessingError) as exc:
        raise _bad_multipart(exc) from None
    part = await _next_part(reader)
    if not isinstance(part, BodyPartReader) or part.name != "case":
        raise ApiError(400, "validation_error", "the first part must be `case`, the case as a JSON object",
                       field="case")
    try:
        raw = await part_bytes(part, MAX_JSON_BYTES, "the case part")
    except (ValueError, HttpProcessingError) as exc:
        raise _bad_multipart(exc) from None
    body = parse_json(raw, s.NewCaseIn, prefix="case")
    new = await plan_case(container, body, request.app[OUTBOUND])  # every refusal comes before files are stored
    files: dict[str, EvidenceItem] = {}
    count = 0
    while (part := await _next_part(reader)) is not None:
        if not isinstance(part, BodyPartReader):
            raise ApiError(400, "invalid_multipart", "nested multipart bodies are not accepted")
        if part.name not in ("files", "file"):
            raise ApiError(400, "unknown_field", f"unknown part {part.name!r}; after `case` only `files` parts",
                           field=part.name or None)
        count += 1
        if count > MAX_FILES:
            raise ApiError(413, "payload_too_large", f"at most {MAX_FILES} files in one request", field="files")
        try:
            stored = await container.evidence.put(part_chunks(part), original_name=part.filename)
        except EvidenceStoreUnavailable as exc:
            log.error("api upload: the evidence store cannot take files: %s", exc.reason)
            raise ApiError(503, "evidence_store_unavailable", "the evidence store cannot take files right now; "
                           "nothing of this request was kept: send the case again later", field="files",
                           headers={"Retry-After": str(EVIDENCE_RETRY_AFTER)}) from None
        except EvidenceTooLarge as exc:
            raise ApiError(413, "evidence_too_large", str(exc), field="files") from None
        except EvidenceTypeNotAllowed as exc:
            raise ApiError(415, "evidence_type_not_allowed", str(exc), field="files") from None
        except EvidenceEmpty as exc:
            raise ApiError(400, "evidence_empty", str(exc), field="files") from None
        except EvidenceRejected as exc:
            raise ApiError(422, "evidence_rejected", str(exc), field="files") from None
        except (ValueError, HttpProcessingError) as exc:  # the part itself is malformed
            raise _bad_multipart(exc) from None
        request[UPLOADS].append(stored)
        files.setdefault(stored.sha256, EvidenceItem(stored.sha256, stored.size, stored.mime, stored.original_name,
                                                     new.channel))
    return dataclasses.replace(new, evidence=tuple(files.values()))


def discarding_failed_uploads(handler):
    """A request that fails after storing files (a later part refused, the case not created, the disk full)
    takes back what it stored and no case refers to: it leaves nothing behind."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        request[UPLOADS] = []
        try:
            return await handler(request)
        except BaseException:
            await _discard(request.app[CONTAINER], request[UPLOADS])
            raise

    return wrapper


async def _discard(container: Container, uploads: list[StoredFile]) -> None:
    referenced = functools.partial(referenced_by_a_case, container.uow)
    for stored in uploads:
        try:
            await container.evidence.discard(stored, referenced=referenced)
        except Exception:  # the database, say: the daily sweep removes the file if nothing refers to it
            log.exception("api upload: %s not discarded after the request failed", stored.sha256[:12])


async def _next_part(reader: MultipartReader):
    try:
        return await reader.next()
    except (ValueError, HttpProcessingError) as exc:  # malformed part headers or boundaries
        raise _bad_multipart(exc) from None


def _bad_multipart(exc: Exception) -> ApiError:
    reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return ApiError(400, "invalid_multipart", f"the multipart body is malformed: {str(reason)[:200]}")


async def plan_case(container: Container, body: s.NewCaseIn, outbound: OutboundGuard) -> NewCase:
    """The NewCase for the service: kind and category from the body or the NLU, facts the body lacks from the text;
    a callback URL only if the outbound policy allows it (checked again at every send)."""
    now = container.clock.now()
    received_at = body.received_at or now
    if received_at > now + RECEIVED_SKEW:
        raise ApiError(400, "validation_error", "received_at is in the future", field="received_at")
    if received_at < now - RECEIVED_MAX_AGE:
        raise ApiError(400, "validation_error", "received_at is more than a year ago", field="received_at")
    today = now.astimezone(container.settings.tz).date()
    if body.purchase_date is not None and body.purchase_date > today:
        raise ApiError(400, "validation_error", "purchase_date is in the future", field="purchase_date")
    if body.callback_url is not None:
        try:
            await outbound.check(body.callback_url)
        except OutboundRefused as exc:
            raise ApiError(400, "callback_refused", f"callback_url {exc}", field="callback_url") from None

    result = None
    try:
        result = await container.nlu.parse(body.description, now=received_at)
    except NluInputError:
        pass  # nothing to classify: the body's or the default kind and category stand
    except Exception:  # a case must never be lost to a classifier failure
        log.exception("NLU failed on an API case; using the defaults")

    identified = body.complainant is not None and not body.anonymous
    if body.kind is not None:
        kind = Kind(body.kind.value)
        if kind == Kind.COMPLAINT and not identified:
            raise ApiError(422, "domain_error", "a complaint (投诉) needs the complainant's identity; an anonymous "
                           "report is a tip-off (举报)", field="kind")
    else:
        kind = Kind(result.kind) if result is not None and result.kind in Kind._value2member_map_ else None
        if kind is None or (kind == Kind.COMPLAINT and not identified):
            kind = Kind.COMPLAINT if identified else Kind.TIPOFF
    if body.category is not None:
        category = body.category.value
    elif result is not None and result.category in CATEGORY_IDS:
        category = result.category
    else:
        category = "other"

    found = result.entities if result is not None else None

    def fact(given, name: str, limit: int | None = None):
        if given is not None or found is None:
            return given
        value = getattr(found, name)
        return value[:limit] if isinstance(value, str) and limit else value

    amount_fen = (int((Decimal(repr(body.amount)) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
                  if body.amount is not None else fact(None, "amount_fen"))
    purchase_date = fact(body.purchase_date, "purchase_date")
    if purchase_date is not None and purchase_date > today:
        purchase_date = None  # the text's date guess, never a future one
    where = body.merchant_location or s.MerchantLocationIn()
    return NewCase(
        kind=kind,
        category=category,
        description=body.description,
        channel=body.channel,
        focus_area=body.focus_area,
        complainant=(ComplainantInfo(name=body.complainant.name or None, phone=body.complainant.phone)
                     if identified else None),
        anonymous=body.anonymous,
        platform=fact(body.platform, "platform", 40),
        live_room=fact(body.live_room, "live_room", 200),
        streamer=fact(body.streamer, "streamer", 200),
        product=fact(body.product, "product", 200),
        amount_fen=amount_fen,
        order_number=fact(body.order_no, "order_number", 64),
        purchase_date=purchase_date,
        merchant_name=fact(body.merchant_name, "shop", 200),
        merchant=MerchantLocation(where.in_district, where.street or None, where.province or None),
        nlu_category=result.ranking[0].label if result is not None and result.ranking else None,
        nlu_confidence=round(result.confidence, 4) if result is not None and result.ranking else None,
        received_at=received_at,
        links=tuple(dict.fromkeys(body.evidence_urls)),
        callback_url=body.callback_url,
    )


def _authority(container: Container, given: str, scope: str | None, merchant_province: str | None,
               ) -> tuple[str, str | None]:
    """An authority code of the directory becomes its name and scope (an authority that depends on the case,
    like the merchant's own bureau, takes the scope of the merchant's province); other text is the name."""
    directory = container.directory
    if not directory.has_authority(given):
        return given, scope
    authority = directory.authority(given)
    if scope is None:
        fixed = authority.scope if authority.scope in (Scope.IN_PROVINCE, Scope.OUT_OF_PROVINCE) else None
        found = fixed or directory.province_scope(merchant_province)
        scope = found.value if found is not None else None
    return authority.name, scope


CLOSING_FIELDS = tuple(f.name for f in dataclasses.fields(ClosingFacts))  # CloseIn's fields of the same names


def _closing_facts(change: s.CloseIn) -> ClosingFacts:
    return ClosingFacts(**{name: getattr(change, name) for name in CLOSING_FIELDS})


def _check_cursor(cursor: str) -> None:
    try:
        decode_cursor(cursor)
    except BadQuery as exc:
        raise ApiError(400, "validation_error", str(exc), field="cursor") from None


# -- representations --------------------------------------------------------------------------------


def _unit_names(container: Container) -> dict[str, str]:
    return {unit.code: unit.name for unit in container.directory.units}


def _unit_ref(code: str | None, names: dict[str, str]) -> s.UnitRef | None:
    return s.UnitRef(code=code, name=names.get(code, code)) if code else None


def _deadlines(rows) -> list[s.DeadlineOut]:
    """From the service's DeadlineView (`met`) or the stored CaseDeadline (`met_at`)."""
    return [s.DeadlineOut(clock=d.clock, due_on=d.due_on, provisional=d.provisional,
                          met=d.met if isinstance(d, DeadlineView) else d.met_at is not None, basis=d.basis)
            for d in rows]


def _subjects(subjects) -> list[s.SubjectOut]:
    return [s.SubjectOut(id=subject.id, type=subject.type, name=subject.name, platform=subject.platform or "")
            for subject in subjects]


def _closing(case: Case) -> s.ClosingOut | None:
    if case.status != Status.CLOSED:
        return None
    return s.ClosingOut(**{name: getattr(case, name) for name in CLOSING_FIELDS})


def _satisfaction(case: Case) -> s.SatisfactionOut | None:
    if case.rated_at is None or case.satisfaction is None:
        return None
    return s.SatisfactionOut(score=case.satisfaction, comment=case.satisfaction_comment, rated_at=case.rated_at)


def case_state(container: Container, principal: Principal, view, *, duplicate_of: str | None = None) -> dict:
    """A CaseView (after a transition) as CaseState; `duplicate_of` after the duplicate action (no other
    transition leaves a case a duplicate: only reopen starts from there, and it ends the reference)."""
    names = _unit_names(container)
    parts = {}
    if principal.unit_code == view.lead_unit:
        parts[principal.unit_id] = "lead"
    elif principal.unit_code in view.co_units:
        parts[principal.unit_id] = "co"
    transfer = (s.TransferOut(authority=view.transfer_authority, scope=None) if view.transfer_authority else None)
    state = s.CaseState(
        number=view.number, kind=view.kind, category=view.category, status=view.status.value,
        status_name=STATUS_NAMES_ZH[view.status], lead_unit=_unit_ref(view.lead_unit, names),
        co_units=[_unit_ref(code, names) for code in view.co_units], transfer=transfer,
        next_due_on=view.next_due_on, deadlines=_deadlines(view.deadlines), duplicate_of=duplicate_of,
        allowed_actions=_allowed(principal, parts, view.status,
                                 inside_transfer=view.status == Status.TRANSFERRED and not view.transfer_authority),
        urgent=view.urgent, flags=list(view.flags),
    )
    return state.model_dump(mode="json")


def case_out(container: Container, principal: Principal, detail: CaseDetail, *, show_identity: bool,
             duplicate_of: str | None = None) -> dict:
    """The case in full; `duplicate_of`: the number of the case `duplicate_of_id` names."""
    case = detail.case
    status = Status(case.status)
    lead = next((unit for unit, role in detail.units if role == "lead"), None)
    person = detail.complainant
    if case.anonymous:
        identity = "anonymous"
    elif person is None or not (person.name or person.phone):
        identity = "none"
    else:
        identity = "shown" if show_identity else "not_shown"
    out = s.CaseOut(
        number=case.number,
        kind=case.kind,
        kind_name=KIND_NAMES_ZH.get(case.kind, case.kind),
        category=case.category,
        category_name=_category_name(case.category),
        focus_area=case.focus_area,
        status=status.value,
        status_name=STATUS_NAMES_ZH[status],
        channel=case.channel,
        anonymous=case.anonymous,
        description=case.description,
        received_at=case.received_at,
        next_due_on=case.next_due_on,
        facts=s.FactsOut(
            platform=case.platform, live_room=case.live_room, streamer=case.streamer, product=case.product,
            merchant_name=case.merchant_name,
            amount=case.amount_fen / 100 if case.amount_fen is not None else None,
            order_no=case.order_number, purchase_date=case.purchase_date,
            merchant_location=s.MerchantLocationOut(in_district=case.merchant_in_district,
                                                    street=case.merchant_street, province=case.merchant_province),
        ),
        nlu=s.NluOut(category=case.nlu_category, confidence=case.nlu_confidence),
        lead_unit=s.UnitRef(code=lead.code, name=lead.name) if lead else None,
        co_units=[s.UnitRef(code=unit.code, name=unit.name) for unit, role in detail.units if role == "co"],
        transfer=(s.TransferOut(authority=case.transfer_authority, scope=case.transfer_scope)
                  if case.transfer_authority else None),
        rejection_ground=case.rejection_ground,
        outcome=case.outcome,
        deadlines=_deadlines(detail.deadlines),
        identity=identity,
        complainant=s.ComplainantOut(name=person.name, phone=person.phone) if identity == "shown" else None,
        evidence=[s.EvidenceOut(sha256=e.sha256, size=e.size, mime=e.mime, name=e.original_name, source=e.source)
                  for e in detail.evidence],
        events=[s.EventOut(at=e.created_at, action=e.action, actor_type=e.actor_type, actor_id=e.actor_id,
                           from_status=e.from_status, to_status=e.to_status, note=e.note) for e in detail.events],
        messages=[s.MessageOut(at=m.created_at, direction=m.direction, body=m.body, is_reply=m.is_reply,
                               info_request=bool(m.info_request)) for m in detail.messages],
        subjects=_subjects(detail.subjects),
        satisfaction=_satisfaction(case),
        closing=_closing(case),
        duplicate_of=duplicate_of,
        allowed_actions=_allowed(principal, detail.unit_parts, status,
                                 inside_transfer=status == Status.TRANSFERRED and not case.transfer_authority),
        urgent=case.urgent, flags=case.flags,
    )
    return out.model_dump(mode="json")


def _category_name(category_id: str) -> str:
    try:
        return category_of(category_id).zh
    except KeyError:
        return category_id


__all__ = ["setup", "PREFIX", "plan_case", "case_out", "case_state"]
