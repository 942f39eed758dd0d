"""Storing evidence: checks, de-duplication by content, revisions, links to framework nodes."""

from __future__ import annotations

import re
import unicodedata
import uuid
from datetime import UTC, datetime
from pathlib import PurePosixPath, PureWindowsPath

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.ingest.evidence.sniff import ALLOWED, sniff
from services.ingest.evidence.upload import ReceivedUpload
from services.kit import audit
from services.kit.auth import Principal
from services.kit.errors import (
    Forbidden,
    NotFound,
    Unprocessable,
    UnsupportedMediaType,
    invalid,
)
from services.kit.storage import Storage, object_key
from services.models import (
    Assessment,
    EvidenceItem,
    EvidenceObject,
    EvidenceRequest,
    EvidenceRevision,
)
from services.scoring.frameworks import registry

UPLOADERS = ("region-operator", "super-app", "ministry-admin")
_UNSAFE = re.compile(r"[^\w.\- ()]+")
MAX_TITLE = 300


def safe_filename(raw: str | None, kind: str) -> str:
    """A filename that is only a name: no directories, control characters or NULs."""
    name = (raw or "").replace("\x00", "")
    name = PureWindowsPath(PurePosixPath(name).name).name  # drop ../ and C:\\ parts
    name = unicodedata.normalize("NFC", name)
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = _UNSAFE.sub("_", name).strip(" ._")[:200]
    if not name:
        name = "evidence"
    if not name.lower().endswith(f".{kind}") and not (
        kind == "jpeg" and name.lower().endswith(".jpg")
    ):
        name = f"{name}.{kind}"
    return name


def _invalid(name: str, detail: str, message: str) -> Unprocessable:
    """A problem with form field ``name``, pointing at it."""
    return invalid("body", f"/{name}", detail, message)


def _field(received: ReceivedUpload, name: str) -> str | None:
    values = received.fields.get(name)
    return values[-1].strip() if values else None


def _uuid(received: ReceivedUpload, name: str, *, required: bool) -> uuid.UUID | None:
    value = _field(received, name)
    if not value:
        if required:
            raise _invalid(name, "missing", f"form field {name!r} is required")
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise _invalid(name, "not a uuid", f"form field {name!r} is not an id: {value!r}") from None


async def store(
    session: AsyncSession, principal: Principal, received: ReceivedUpload, storage: Storage
) -> tuple[EvidenceItem, bool]:
    """Record an upload; the caller commits. Raises (and the caller discards the file) on error.

    Returns the item and whether it is new. The same bytes for the same nodes of the same
    assessment, uploaded again as a new item (a retry whose answer was lost, or ten identical
    uploads at once), are answered with the item already stored instead of a copy.
    """
    if principal.role not in UPLOADERS:
        raise Forbidden(f"The role {principal.role!r} may not upload evidence.")
    assessment_id = _uuid(received, "assessment_id", required=True)
    assessment = await session.get(Assessment, assessment_id)
    if assessment is None:
        raise NotFound(f"No assessment {assessment_id}.")
    if not principal.may_write_region(assessment.region_code):
        raise Forbidden(
            f"The key {principal.name!r} may not upload evidence for region "
            f"{assessment.region_code!r}."
        )
    node_ids = [
        node.strip()
        for value in received.fields.get("node_ids", [])
        for node in value.split(",")
        if node.strip()
    ]
    item_id = _uuid(received, "item_id", required=False)
    if not node_ids and item_id is None:
        raise _invalid(
            "node_ids", "missing", "form field 'node_ids' is required: the nodes it supports"
        )
    framework = registry().get(assessment.framework_id)
    known = {node.id for node in framework.nodes()} if framework else set()
    unknown = [node for node in node_ids if node not in known]
    if unknown:
        raise _invalid(
            "node_ids",
            f"unknown {unknown[0]}",
            f"unknown node {unknown[0]!r} in {assessment.framework_id}",
        )
    upload, sha256 = received.upload, received.sha256
    if upload is None or sha256 is None:
        raise _invalid("file", "missing", "form field 'file' is required")
    if upload.size == 0:
        raise _invalid("file", "empty", "The file is empty.")
    kind = sniff(upload.path)
    if kind is None:
        raise UnsupportedMediaType(
            "The file's content is not an allowed type (PDF, PNG, JPEG, DOCX, XLSX, ODT, ODS), "
            "whatever its name says."
        )
    filename = safe_filename(received.filename, kind)
    title = _field(received, "title")
    if title is not None and len(title) > MAX_TITLE:
        raise _invalid("title", "too long", f"form field 'title' is longer than {MAX_TITLE}")

    # Everything the upload refers to is checked before its bytes enter the store.
    request_id = _uuid(received, "request_id", required=False)
    evidence_request = None
    if request_id is not None:
        evidence_request = await session.get(EvidenceRequest, request_id, with_for_update=True)
        if evidence_request is None or evidence_request.assessment_id != assessment.id:
            raise NotFound(f"No evidence request {request_id} on this assessment.")
    revised: EvidenceItem | None = None
    if item_id is not None:
        revised = await session.get(EvidenceItem, item_id, with_for_update=True)
        if revised is None or revised.assessment_id != assessment.id:
            raise NotFound(f"No evidence item {item_id} in this assessment.")

    if revised is None:
        # Identical uploads wait for each other here, so exactly one of them creates the item.
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:lock, 0))"),
            {"lock": f"evidence:{assessment.id}:{sha256}"},
        )
        same = await _identical_item(session, assessment.id, sha256, sorted(set(node_ids)))
        if same is not None:
            upload.discard()
            if evidence_request is not None:
                _answer(evidence_request, same.id)
            return same, False

    stored = await session.get(EvidenceObject, sha256)
    if stored is None:
        key = object_key(sha256)
        await storage.commit(upload, key)
        # Another assessment's upload of the same bytes may be storing them right now.
        await session.execute(
            insert(EvidenceObject)
            .values(sha256=sha256, size=upload.size, content_type=ALLOWED[kind], storage_key=key)
            .on_conflict_do_nothing(index_elements=["sha256"])
        )
    else:
        upload.discard()  # the same bytes are already stored

    if revised is not None:
        item = revised
        item.latest_revision += 1
        if node_ids:
            item.node_ids = sorted(set(item.node_ids) | set(node_ids))
    else:
        item = EvidenceItem(
            assessment_id=assessment.id,
            node_ids=sorted(set(node_ids)),
            title=title or filename,
            latest_revision=1,
        )
        session.add(item)
        await session.flush()
    session.add(
        EvidenceRevision(
            item_id=item.id,
            revision=item.latest_revision,
            sha256=sha256,
            filename=filename,
            uploaded_by=principal.key_id,
        )
    )
    if evidence_request is not None:
        _answer(evidence_request, item.id)
    audit.record(
        session,
        principal,
        action="evidence.upload",
        entity="evidence_item",
        entity_id=str(item.id),
        after={
            "revision": item.latest_revision,
            "sha256": sha256,
            "filename": filename,
            "node_ids": item.node_ids,
            "assessment_id": str(assessment.id),
        },
    )
    await session.flush()
    return item, True


async def _identical_item(
    session: AsyncSession, assessment_id: uuid.UUID, sha256: str, node_ids: list[str]
) -> EvidenceItem | None:
    """An item of this assessment for exactly these nodes whose latest revision is these bytes."""
    found = await session.scalar(
        select(EvidenceItem)
        .join(
            EvidenceRevision,
            (EvidenceRevision.item_id == EvidenceItem.id)
            & (EvidenceRevision.revision == EvidenceItem.latest_revision),
        )
        .where(
            EvidenceItem.assessment_id == assessment_id,
            EvidenceRevision.sha256 == sha256,
            EvidenceItem.node_ids == node_ids,
        )
        .limit(1)
    )
    return found


def _answer(evidence_request: EvidenceRequest, item_id: uuid.UUID) -> None:
    """The upload answers an assessor's evidence request (the first answer counts)."""
    if evidence_request.answered_at is None:
        evidence_request.answered_at = datetime.now(UTC)
        evidence_request.answered_by_item = item_id


async def revisions(
    session: AsyncSession, item_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[tuple[EvidenceRevision, EvidenceObject]]]:
    rows = await session.execute(
        select(EvidenceRevision, EvidenceObject)
        .join(EvidenceObject, EvidenceObject.sha256 == EvidenceRevision.sha256)
        .where(EvidenceRevision.item_id.in_(item_ids))
        .order_by(EvidenceRevision.item_id, EvidenceRevision.revision)
    )
    grouped: dict[uuid.UUID, list[tuple[EvidenceRevision, EvidenceObject]]] = {}
    for revision, stored in rows:
        grouped.setdefault(revision.item_id, []).append((revision, stored))
    return grouped
