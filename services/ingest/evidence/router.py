"""Evidence endpoints: upload a document (streamed), list an assessment's evidence, download a
revision. Reads answer 404 for an assessment the caller may not see."""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse

from services.domain.access import policy
from services.domain.access.dependencies import RequestContext
from services.domain.access.policy import Action
from services.ingest.evidence import service
from services.ingest.evidence.schemas import EvidenceOut, EvidencePage
from services.ingest.evidence.sniff import ALLOWED
from services.ingest.evidence.upload import receive
from services.kit.db import DbSession

router = APIRouter(prefix="/v1/evidence", tags=["evidence"])


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
                            "agency_id": {
                                "type": "string",
                                "format": "uuid",
                                "description": "The agency (OPD) of the region responsible "
                                "for it (PJ); on a new revision, changes it",
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
        # The same bytes for the same nodes again: the item already stored (a safe retry).
        200: {"model": EvidenceOut, "description": "The item already stored"},
        413: {"description": "Larger than CERDAS_EVIDENCE_MAX_BYTES"},
        415: {"description": "Content is not PDF, PNG, JPEG, DOCX, XLSX, ODT or ODS"},
    },
)
async def upload_evidence(
    request: Request, response: Response, session: DbSession, context: RequestContext
) -> EvidenceOut:
    """The type is decided by the bytes, not the name. The same bytes uploaded twice are stored
    once; the same bytes for the same nodes again answer 200 with the item already stored (a
    safe retry); `item_id` adds a revision and keeps the earlier ones. The body is received in
    full before the database is touched."""
    # A role that may never upload is refused before its body is received.
    policy.require(context.principal, Action.UPLOAD_EVIDENCE)
    storage = request.app.state.storage
    received = await receive(
        request, storage, request.app.state.runtime.settings.evidence_max_bytes
    )
    try:
        item, created = await service.store(session, context, received, storage)
    except BaseException:
        await received.discard()
        raise
    if not created:
        response.status_code = 200
    return (await service.describe(session, [item]))[0]


@router.get(
    "",
    response_model=EvidencePage,
    summary="Evidence of an assessment",
    responses={404: {"description": "No assessment, or one the caller may not see"}},
)
async def list_evidence(
    session: DbSession,
    context: RequestContext,
    assessment_id: Annotated[uuid.UUID, Query()],
    node_id: Annotated[str | None, Query(description="Only evidence for this node")] = None,
    agency_id: Annotated[
        uuid.UUID | None,
        Query(description="Only evidence this agency (OPD) is responsible for (region's keys)"),
    ] = None,
) -> EvidencePage:
    return EvidencePage(
        items=await service.evidence_of(session, context, assessment_id, node_id, agency_id)
    )


@router.get(
    "/{item_id}/download",
    summary="Download a revision (streamed)",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The file, with the content type it was stored as",
            "content": {
                media: {"schema": {"type": "string", "format": "binary"}}
                for media in sorted(set(ALLOWED.values()))
            },
        },
        307: {
            "description": "With CERDAS_EVIDENCE_S3_PRESIGN_DOWNLOADS: fetch the file from the "
            "object store at `Location`, a presigned URL valid for "
            "CERDAS_EVIDENCE_S3_PRESIGN_SECONDS",
            "headers": {"Location": {"schema": {"type": "string", "format": "uri"}}},
        },
        404: {"description": "No such item or revision, or one the caller may not see"},
    },
)
async def download_evidence(
    request: Request,
    session: DbSession,
    context: RequestContext,
    item_id: uuid.UUID,
    revision: Annotated[int | None, Query(ge=1, description="Default: the latest")] = None,
) -> Response:
    stored_revision, stored = await service.revision_to_download(
        session, context, item_id, revision
    )
    ascii_name = stored_revision.filename.encode("ascii", "replace").decode().replace("?", "_")
    disposition = (
        f'attachment; filename="{ascii_name}"; '
        f"filename*=UTF-8''{quote(stored_revision.filename, safe='')}"
    )
    storage = request.app.state.storage
    # Asked only after the policy let the caller see the item: the URL is the permission.
    url = await storage.download_url(
        stored.storage_key, disposition=disposition, content_type=stored.content_type
    )
    if url is not None:
        return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
    return StreamingResponse(
        storage.read(stored.storage_key),
        media_type=stored.content_type,
        headers={
            "Content-Disposition": disposition,
            "Content-Length": str(stored.size),
            "X-Content-Type-Options": "nosniff",
            "ETag": f'"{stored.sha256}"',
        },
    )
