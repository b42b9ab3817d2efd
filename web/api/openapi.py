"""The OpenAPI 3.1 document of /api/v1, derived from the pydantic models the handlers validate with."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from pydantic.json_schema import models_json_schema

import qinglang
from intake.status import REJECTION_GROUNDS, STAFF_OUTCOMES
from web.api import schemas as s
from web.api.body import MAX_FILES, MAX_JSON_BYTES

REF = "#/components/schemas/{model}"

_REQUESTS = (s.NewCaseIn, s.TransitionIn, s.MessageIn, s.AssignmentIn, s.SubjectLinkIn, s.RatingIn, s.CaseListQuery)
_RESPONSES = (s.CaseOut, s.CaseList, s.CaseState, s.MessageCreated, s.CaseSubjects, s.RatingCreated, s.CaseNotice,
              s.ErrorOut)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref("ErrorOut")}}}


ERRORS = {
    "400": _error("invalid input: malformed JSON (invalid_json), a wrong or missing field (validation_error), "
                  "an unknown field (unknown_field), a callback URL the outbound policy refuses (callback_refused, with the "
                  "reason); `field` names it"),
    "401": _error("no bearer token (unauthorized) or an invalid one (invalid_token)"),
    "403": _error("this account may not do this (forbidden)"),
    "404": _error("no such case, or not one this account may see (not_found)"),
    "409": _error("not possible in the case's current status (illegal_transition, case_closed, case_not_closed, "
                  "already_rated, already_linked) or a concurrent change (conflict)"),
    "413": _error(f"the body is too large (payload_too_large: JSON over {MAX_JSON_BYTES} bytes; "
                  "evidence_too_large: a file over the evidence limit)"),
    "415": _error("wrong Content-Type (unsupported_media_type) or an evidence file of a type not accepted "
                  "(evidence_type_not_allowed)"),
    "422": _error("the case rules refuse the request (domain_error), with the reason; a unit, case or subject "
                  "the request names does not exist (unknown_unit, unknown_original, unknown_subject); nobody "
                  "can be asked for information (no_contact)"),
    "503": {**_error("the evidence store cannot take files now (evidence_store_unavailable): nothing was stored "
                     "and no case created; send the request again after Retry-After seconds"),
            "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}}},
}


def _pick(*codes: str) -> dict[str, Any]:
    return {code: ERRORS[code] for code in codes}


def _strip_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter cannot be null: `X | None` becomes X."""
    variants = schema.get("anyOf")
    if variants:
        rest = [v for v in variants if v != {"type": "null"}]
        if len(rest) == 1:
            merged = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
            merged.update(rest[0])
            return merged
    return {k: v for k, v in schema.items() if not (k == "default" and v is None)}


def _query_parameters(query_schema: dict[str, Any]) -> list[dict[str, Any]]:
    parameters = []
    for name, prop in query_schema["properties"].items():
        prop = _strip_null(copy.deepcopy(prop))
        description = prop.pop("description", None)
        prop.pop("title", None)
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": prop}
        if description:
            parameter["description"] = description
        if prop.get("type") == "array":
            parameter |= {"style": "form", "explode": True}
        parameters.append(parameter)
    return parameters


NUMBER_PARAMETER = {
    "name": "number", "in": "path", "required": True, "description": "the case number", "example": "LW-2026-000001",
    "schema": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,32}$"},
}
SHA256_PARAMETER = {
    "name": "sha256", "in": "path", "required": True, "description": "SHA-256 of the file, as the case lists it",
    "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
}
SUBJECT_PARAMETER = {
    "name": "subject_id", "in": "path", "required": True, "description": "id of an entry of the subject registry",
    "schema": {"type": "integer", "minimum": 1, "maximum": s.MAX_ID},
}


@cache
def document() -> dict[str, Any]:
    keys, top = models_json_schema(
        [(m, "validation") for m in _REQUESTS] + [(m, "serialization") for m in _RESPONSES], ref_template=REF,
    )
    schemas = dict(top.get("$defs", {}))
    query = schemas.pop("CaseListQuery")

    def ref(model, mode: str) -> dict[str, str]:
        return keys[(model, mode)]

    multipart = {
        "schema": {
            "type": "object",
            "required": ["case"],
            "properties": {
                "case": ref(s.NewCaseIn, "validation"),
                "files": {"type": "array", "maxItems": MAX_FILES,
                          "items": {"type": "string", "contentMediaType": "application/octet-stream"}},
            },
        },
        "encoding": {"case": {"contentType": "application/json"}, "files": {"contentType": "application/octet-stream"}},
    }
    paths = {
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "getOpenApi", "summary": "This document", "security": [],
                "responses": {"200": {"description": "the OpenAPI document",
                                      "content": {"application/json": {"schema": {"type": "object"}}}}},
            },
        },
        "/api/v1/cases": {
            "post": {
                "operationId": "createCase",
                "summary": "Take in a case from another channel (triage and handler accounts)",
                "description": (
                    "JSON, or multipart/form-data with a `case` JSON part first and then up to "
                    f"{MAX_FILES} `files` parts (the type is decided from the content; size limited). A request "
                    "refused after some of its files were stored keeps none of them. Kind and "
                    "category, when omitted, come from the text classifier; kind falls back to complaint only "
                    "when a complainant is given, else tipoff. Facts the body leaves out are taken from the "
                    "text where the classifier finds them. With `callback_url`, the originating system is told "
                    "of every step of the case (the `caseNotice` callback) when the case has a named complainant."
                ),
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": ref(s.NewCaseIn, "validation")},
                    "multipart/form-data": multipart,
                }},
                "responses": {
                    "201": {"description": "created; Location names the new case",
                            "headers": {"Location": {"schema": {"type": "string"}}},
                            "content": {"application/json": {"schema": ref(s.CaseOut, "serialization")}}},
                    **_pick("400", "401", "403", "413", "415", "422", "503"),
                },
                "callbacks": {
                    "caseNotice": {
                        "{$request.body#/callback_url}": {
                            "post": {
                                "summary": "A step of the case, for the originating system",
                                "description": "Sent by the service's notifier, with the header `Idempotency-Key`.",
                                "requestBody": {"required": True, "content": {
                                    "application/json": {"schema": ref(s.CaseNotice, "serialization")}}},
                                "responses": {
                                    "2XX": {"description": "taken"},
                                    "default": {"description": "408, 429 (Retry-After) and 5xx: tried again "
                                                               "later; any other status: not"},
                                },
                            },
                        },
                    },
                },
            },
            "get": {
                "operationId": "listCases",
                "summary": "Cases this account may see, by nearest statutory deadline (keyset pages)",
                "parameters": _query_parameters(query),
                "responses": {
                    "200": {"description": "one page",
                            "content": {"application/json": {"schema": ref(s.CaseList, "serialization")}}},
                    **_pick("400", "401"),
                },
            },
        },
        "/api/v1/cases/{number}": {
            "get": {
                "operationId": "getCase",
                "summary": "One case in full; the complainant only to those who may see it (the view is audited)",
                "parameters": [NUMBER_PARAMETER],
                "responses": {
                    "200": {"description": "the case",
                            "content": {"application/json": {"schema": ref(s.CaseOut, "serialization")}}},
                    **_pick("401", "404"),
                },
            },
        },
        "/api/v1/cases/{number}/transitions": {
            "post": {
                "operationId": "transitionCase",
                "summary": "Move the case: accept, reject, transfer, start, resolve, close, reopen, duplicate",
                "description": (
                    "reject needs `ground` (" + ", ".join(REJECTION_GROUNDS) + ") and `reply`; resolve needs "
                    "`outcome` (" + ", ".join(STAFF_OUTCOMES) + ") and `reply`; transfer needs `unit` or "
                    "`authority` (+ `scope`); reopen needs `reason`; duplicate (triage only) needs `original`, "
                    "the number of the case that handles the matter (422 unknown_original if there is none), and "
                    "`reply`, and closes the case. close takes the optional facts of the statistics forms: "
                    "`filed` (立案; omitted: follows the outcome), `fine_fen` and `confiscation_fen` (whole fen, "
                    "1 yuan = 100 fen; only with 立案), `judicial_referral`, and the counts `takedowns`, "
                    "`accounts_disposed`, `sites_closed`; facts that contradict the outcome answer 422 "
                    "domain_error with `field` naming the fact. A status the action is not legal from answers 409 "
                    "illegal_transition."
                ),
                "parameters": [NUMBER_PARAMETER],
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": ref(s.TransitionIn, "validation")}}},
                "responses": {
                    "200": {"description": "the case after the change",
                            "content": {"application/json": {"schema": ref(s.CaseState, "serialization")}}},
                    **_pick("400", "401", "403", "404", "409", "413", "415", "422"),
                },
            },
        },
        "/api/v1/cases/{number}/messages": {
            "post": {
                "operationId": "messageComplainant",
                "summary": "Write to the complainant: the official reply, a message, or a request for information",
                "description": (
                    "`kind` reply (default): recorded as the complainant-facing answer; message: a note that is "
                    "not the answer; info_request: asks for more information (补正), refused with 422 no_contact "
                    "for an anonymous informant or a case without a complainant. A closed case answers 409 "
                    "case_closed."
                ),
                "parameters": [NUMBER_PARAMETER],
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": ref(s.MessageIn, "validation")}}},
                "responses": {
                    "201": {"description": "recorded",
                            "content": {"application/json": {"schema": ref(s.MessageCreated, "serialization")}}},
                    **_pick("400", "401", "403", "404", "409", "413", "415", "422"),
                },
            },
        },
        "/api/v1/cases/{number}/assignment": {
            "post": {
                "operationId": "assignCase",
                "summary": "Set the lead unit and the co-units (triage only)",
                "description": (
                    "Replaces the case's units; the status stays. A unit code that is not an active unit answers "
                    "422 unknown_unit (`field` names it); a closed case 409 case_closed. The units the case already "
                    "has answer 200 with nothing changed."
                ),
                "parameters": [NUMBER_PARAMETER],
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": ref(s.AssignmentIn, "validation")}}},
                "responses": {
                    "200": {"description": "the case with its units",
                            "content": {"application/json": {"schema": ref(s.CaseState, "serialization")}}},
                    **_pick("400", "401", "403", "404", "409", "413", "415", "422"),
                },
            },
        },
        "/api/v1/cases/{number}/subjects": {
            "post": {
                "operationId": "linkSubject",
                "summary": "Link the case to an entry of the subject registry (主体名录)",
                "description": "422 unknown_subject when there is no such entry; 409 already_linked.",
                "parameters": [NUMBER_PARAMETER],
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": ref(s.SubjectLinkIn, "validation")}}},
                "responses": {
                    "201": {"description": "linked; the case's subjects",
                            "content": {"application/json": {"schema": ref(s.CaseSubjects, "serialization")}}},
                    **_pick("400", "401", "403", "404", "409", "413", "415", "422"),
                },
            },
        },
        "/api/v1/cases/{number}/subjects/{subject_id}": {
            "delete": {
                "operationId": "unlinkSubject",
                "summary": "Remove the link between the case and a subject",
                "description": "404 not_linked when the case is not linked to that subject.",
                "parameters": [NUMBER_PARAMETER, SUBJECT_PARAMETER],
                "responses": {
                    "200": {"description": "unlinked; the case's subjects",
                            "content": {"application/json": {"schema": ref(s.CaseSubjects, "serialization")}}},
                    **_pick("401", "403", "404", "409"),
                },
            },
        },
        "/api/v1/cases/{number}/evidence/{sha256}": {
            "get": {
                "operationId": "getEvidence",
                "summary": "An evidence file as staff see it: images without EXIF, GPS and other metadata",
                "description": ("409 no_safe_copy: an image that cannot be decoded safely (or of a type not decoded "
                                "here) has no stripped copy; the original is then available from .../original."),
                "parameters": [NUMBER_PARAMETER, SHA256_PARAMETER],
                "responses": {
                    "200": {"description": "the file", "content": {"*/*": {"schema": {"type": "string",
                                                                                   "format": "binary"}}}},
                    **_pick("401", "404", "409"),
                },
            },
        },
        "/api/v1/cases/{number}/evidence/{sha256}/original": {
            "get": {
                "operationId": "getEvidenceOriginal",
                "summary": "An evidence file exactly as uploaded, metadata included; every download is audited",
                "parameters": [NUMBER_PARAMETER, SHA256_PARAMETER],
                "responses": {
                    "200": {"description": "the file as uploaded",
                            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
                    **_pick("401", "404"),
                },
            },
        },
        "/api/v1/cases/{number}/rating": {
            "post": {
                "operationId": "rateCase",
                "summary": "Record the complainant's satisfaction rating after close (once per case)",
                "description": (
                    "The rating the complainant gave, e.g. in the follow-up call. The case must be closed (409 "
                    "case_not_closed) and not rated yet (409 already_rated). A score of 2 or lower reopens the "
                    "case for review by triage."
                ),
                "parameters": [NUMBER_PARAMETER],
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": ref(s.RatingIn, "validation")}}},
                "responses": {
                    "201": {"description": "recorded",
                            "content": {"application/json": {"schema": ref(s.RatingCreated, "serialization")}}},
                    **_pick("400", "401", "403", "404", "409", "413", "415", "422"),
                },
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Qinglang 清朗 intake API",
            "version": qinglang.__version__,
            "description": (
                "Complaints and tip-offs about live-stream shopping, for machine clients of the bureau "
                "(the 12345 hotline, a web form). Authenticate with `Authorization: Bearer <API token>` of a "
                "staff account. Errors are {\"error\": {\"code\", \"message\", \"field\"?, \"details\"?}}. "
                "Text fields are untrusted input and are returned as JSON strings."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "a staff account's API token"}},
        },
        "security": [{"bearerAuth": []}],
    }
