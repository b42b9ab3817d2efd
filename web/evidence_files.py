"""Evidence files served to staff, by the console and the API alike.

Staff are shown the copy without metadata (intake.evidence.EvidenceStore.staff_copy), so a photo's GPS
position, camera and time stay out of the everyday view. The original, exactly as uploaded (the record:
its sha256 is its name), is given only when asked for explicitly, and every such download is in the
audit log (a case event, action ``download_original_evidence``). Who may see a file is who may see its
case (web.access.case_scope): a file of a case out of scope is "not found".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from aiohttp import web
from sqlalchemy import ColumnElement, select

from db.models import Case, CaseEvent, Evidence
from db.uow import UnitOfWorkFactory
from intake.clock import Clock

ORIGINAL_DOWNLOAD = "download_original_evidence"
INLINE_IMAGES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})  # never SVG
SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MIME = re.compile(r"^[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*$")


@dataclass(frozen=True)
class CaseEvidence:
    case_id: int
    number: str
    sha256: str
    mime: str
    size: int
    original_name: str | None


async def find(uow: UnitOfWorkFactory, scope: ColumnElement[bool], number: str, sha256: str) -> CaseEvidence | None:
    """The uploaded file `sha256` of case `number`, only if the case is in `scope` (a link is not a file)."""
    if not SHA256.match(sha256):
        return None
    async with uow() as work:
        row = (await work.session.execute(
            select(Evidence, Case.number).join(Case, Case.id == Evidence.case_id)
            .where(Case.number == number, scope, Evidence.sha256 == sha256, Evidence.source != "link")
            .order_by(Evidence.id).limit(1)
        )).first()
    if row is None:
        return None
    evidence, case_number = row
    return CaseEvidence(evidence.case_id, case_number, evidence.sha256, evidence.mime, evidence.size,
                        evidence.original_name)


async def audit_original(uow: UnitOfWorkFactory, clock: Clock, found: CaseEvidence, staff_id: int, via: str) -> None:
    """A download of an original, in the case's audit log."""
    async with uow() as work:
        work.session.add(CaseEvent(case_id=found.case_id, actor_type="staff", actor_id=staff_id,
                                   action=ORIGINAL_DOWNLOAD, data={"sha256": found.sha256, "via": via},
                                   created_at=clock.now()))
        await work.commit()


def file_response(path: Path, found: CaseEvidence, *, original: bool) -> web.FileResponse:
    """The file with headers that keep a browser from running or sniffing it. The staff copy of an image
    is shown inline; an original is always a download, and never cached."""
    mime = found.mime if _MIME.match(found.mime or "") else "application/octet-stream"
    name = found.original_name or f"evidence-{found.sha256[:12]}"
    fallback = f"evidence-{found.sha256[:12]}"
    if original:
        name, fallback = f"原件-{name}", f"original-{fallback}"
    disposition = "inline" if mime in INLINE_IMAGES and not original else "attachment"
    return web.FileResponse(path, headers={
        "Content-Type": mime,
        "Content-Disposition": f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cache-Control": "no-store" if original else "private, no-cache",
    })
