from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy import select

from services.ingest.evidence import service
from services.ingest.evidence.upload import receive
from services.kit.auth import CurrentPrincipal
from services.kit.db import DbSession
from services.kit.errors import NotFound
from services.models import EvidenceItem

router = APIRouter(prefix="/v1/evidence", tags=["evidence"])


class RevisionOut(BaseModel):
    revision: int
    sha256: str
    size: int
    content_type: str
    filename: str
    uploaded_at: str


class EvidenceOut(BaseModel):
    id: uuid.UUID
    assessment_id: uuid.UUID
    node_ids: list[str]
    title: str
    latest_revision: int
    revisions: list[RevisionOut]


async def _out(session: DbSession, items: list[EvidenceItem]) -> list[EvidenceOut]:
    grouped = await service.revisions(session, [item.id for item in items])
    result = []
    for item in items:
        revisions: list[dict[str, Any]] = [
            {
                "revision": r.revision,
                "sha256": r.sha256,
                "size": o.size,
                "content_type": o.content_type,
                "filename": r.filename,
                "uploaded_at": r.uploaded_at.isoformat(),
            }
            for r, o in grouped.get(item.id, [])
        ]
        result.append(
            EvidenceOut(
                id=item.id,
                assessment_id=item.assessment_id,
                node_ids=item.node_ids,
                title=item.title,
                latest_revision=item.latest_revision,
                revisions=[RevisionOut(**r) for r in revisions],
            )
        )
    return result


@router.post(
    "",
    status_code=201,
    response_model=EvidenceOut,
    summary="Upload an evidence document (multipart, streamed)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["assessment_id", "file"],
                        "properties": {
                            "assessment_id": {"type": "string", "format": "uuid"},
                            "node_ids": {
                                "type": "string",
                                "description": "Comma-separated, e.g. I11,I12",
                            },
                            "title": {"type": "string"},
                            "item_id": {
                                "type": "string",
                                "format": "uuid",
                                "description": "Upload a new revision of this evidence item",
                            },
                            "request_id": {
                                "type": "string",
                                "format": "uuid",
                                "description": "The evidence request this upload answers",
                            },
                            "file": {"type": "string", "format": "binary"},
                        },
                    }
                }
            },
        }
    },
    responses={
        413: {"description": "Larger than CERDAS_EVIDENCE_MAX_BYTES"},
        415: {"description": "Content is not PDF, PNG, JPEG, DOCX, XLSX, ODT or ODS"},
    },
)
async def upload_evidence(
    request: Request, response: Response, session: DbSession, principal: CurrentPrincipal
) -> EvidenceOut:
    """The type is decided by the bytes, not the name. The same bytes uploaded twice are stored
    once; the same bytes for the same nodes again answer 200 with the item already stored (a
    safe retry); `item_id` adds a revision and keeps the earlier ones. The body is received in
    full before the database is touched."""
    storage = request.app.state.storage
    received = await receive(
        request, storage, request.app.state.runtime.settings.evidence_max_bytes
    )
    try:
        item, created = await service.store(session, principal, received, storage)
    except BaseException:
        received.discard()
        raise
    if not created:
        response.status_code = 200
    return (await _out(session, [item]))[0]


@router.get("", response_model=list[EvidenceOut], summary="Evidence of an assessment")
async def list_evidence(
    session: DbSession,
    principal: CurrentPrincipal,
    assessment_id: Annotated[uuid.UUID, Query()],
    node_id: Annotated[str | None, Query(description="Only evidence for this node")] = None,
) -> list[EvidenceOut]:
    query = select(EvidenceItem).where(EvidenceItem.assessment_id == assessment_id)
    if node_id:
        query = query.where(EvidenceItem.node_ids.contains([node_id]))
    items = list((await session.scalars(query.order_by(EvidenceItem.created_at))).all())
    return await _out(session, items)


@router.get("/{item_id}/download", summary="Download a revision (streamed)")
async def download_evidence(
    request: Request,
    session: DbSession,
    principal: CurrentPrincipal,
    item_id: uuid.UUID,
    revision: Annotated[int | None, Query(ge=1, description="Default: the latest")] = None,
) -> StreamingResponse:
    item = await session.get(EvidenceItem, item_id)
    if item is None:
        raise NotFound(f"No evidence item {item_id}.")
    wanted = revision or item.latest_revision
    found = [
        (r, o)
        for r, o in (await service.revisions(session, [item.id])).get(item.id, [])
        if r.revision == wanted
    ]
    if not found:
        raise NotFound(f"Evidence item {item_id} has no revision {wanted}.")
    stored_revision, stored = found[0]
    ascii_name = stored_revision.filename.encode("ascii", "replace").decode().replace("?", "_")
    disposition = (
        f'attachment; filename="{ascii_name}"; '
        f"filename*=UTF-8''{quote(stored_revision.filename, safe='')}"
    )
    return StreamingResponse(
        request.app.state.storage.read(stored.storage_key),
        media_type=stored.content_type,
        headers={
            "Content-Disposition": disposition,
            "Content-Length": str(stored.size),
            "X-Content-Type-Options": "nosniff",
            "ETag": f'"{stored.sha256}"',
        },
    )
