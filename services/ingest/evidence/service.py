"""Storing evidence: checks, de-duplication by content, revisions, links to framework nodes;
and reading it back, for callers that may see the assessment it belongs to."""

from __future__ import annotations

import asyncio
import re
import unicodedata
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import PurePosixPath, PureWindowsPath

from sqlalchemy.ext.asyncio import AsyncSession

from services.domain.access import policy
from services.domain.access.policy import Action
from services.domain.access.principal import Context
from services.domain.agency import repository as agencies
from services.domain.assessment import repository as assessments
from services.domain.audit import service as audit
from services.ingest.evidence import repository
from services.ingest.evidence.schemas import EvidenceOut, RevisionOut
from services.ingest.evidence.sniff import ALLOWED, sniff
from services.ingest.evidence.upload import ReceivedUpload
from services.kit.db import after_commit
from services.kit.errors import Conflict, NotFound, Unprocessable, UnsupportedMediaType, invalid
from services.kit.metrics import EVIDENCE_STORED_BYTES, EVIDENCE_STORED_OBJECTS
from services.kit.storage import Storage, Upload, object_key
from services.models import (
    AssessmentState,
    EvidenceItem,
    EvidenceObject,
    EvidenceRequest,
    EvidenceRevision,
)
from services.scoring.frameworks import registry

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
    session: AsyncSession, context: Context, received: ReceivedUpload, storage: Storage
) -> tuple[EvidenceItem, bool]:
    """Record an upload; the caller commits. Raises (and the caller discards the file) on error.

    Returns the item and whether it is new. The same bytes for the same nodes of the same
    assessment, uploaded again as a new item (a retry whose answer was lost, or ten identical
    uploads at once), are answered with the item already stored instead of a copy.
    """
    principal = context.principal
    policy.require(principal, Action.UPLOAD_EVIDENCE)
    assessment_id = _uuid(received, "assessment_id", required=True)
    assert assessment_id is not None  # required: _uuid raised otherwise
    # Shared with other uploads, exclusive of a workflow move: no upload slips in beside a
    # publication.
    assessment = await assessments.lock_shared(session, assessment_id)
    if assessment is None:
        raise NotFound(f"No assessment {assessment_id}.")
    await policy.require_visible(session, principal, assessment)
    policy.require_region(principal, assessment.region_code, "upload evidence")
    if assessment.state == AssessmentState.PUBLISHED:
        raise Conflict(
            "The assessment is published and its evidence is locked; a correction reopens it "
            "first (transition to in_review with a reason).",
            state=assessment.state,
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
    kind = await asyncio.to_thread(_sniff, upload)
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
    agency_id = _uuid(received, "agency_id", required=False)
    if agency_id is not None:
        agency = await agencies.get(session, agency_id)
        if agency is None or agency.region_code != assessment.region_code:
            raise _invalid(
                "agency_id",
                "unknown agency",
                f"no agency {agency_id} in region {assessment.region_code}",
            )
    request_id = _uuid(received, "request_id", required=False)
    evidence_request = None
    if request_id is not None:
        evidence_request = await assessments.lock_evidence_request(session, request_id)
        if evidence_request is None or evidence_request.assessment_id != assessment.id:
            raise NotFound(f"No evidence request {request_id} on this assessment.")
    revised: EvidenceItem | None = None
    if item_id is not None:
        revised = await repository.lock_item(session, item_id)
        if revised is None or revised.assessment_id != assessment.id:
            raise NotFound(f"No evidence item {item_id} in this assessment.")

    if revised is None:
        # Identical uploads wait for each other here, so exactly one of them creates the item.
        await repository.lock_upload(session, assessment.id, sha256)
        same = await repository.identical_item(
            session, assessment.id, sha256, sorted(set(node_ids))
        )
        if same is not None and agency_id not in (None, same.agency_id):
            same = None  # the same file for another agency: an item of its own
        if same is not None:
            await upload.discard()
            if evidence_request is not None:
                _answer(evidence_request, same.id)
            return same, False

    if await repository.get_object(session, sha256) is None:
        key = object_key(sha256)
        await storage.commit(upload, key)
        await repository.add_object(
            session, sha256=sha256, size=upload.size, content_type=ALLOWED[kind], storage_key=key
        )
        after_commit(session, _count_stored(upload.size))
    else:
        await upload.discard()  # the same bytes are already stored

    if revised is not None:
        item = revised
        item.latest_revision += 1
        if node_ids:
            item.node_ids = sorted(set(item.node_ids) | set(node_ids))
        if agency_id is not None:  # a revision may name another agency responsible
            item.agency_id = agency_id
    else:
        item = EvidenceItem(
            assessment_id=assessment.id,
            node_ids=sorted(set(node_ids)),
            title=title or filename,
            latest_revision=1,
            agency_id=agency_id,
        )
        await repository.add_item(session, item)
    if evidence_request is not None:
        _answer(evidence_request, item.id)
    audit.record(
        session,
        context,
        action="evidence.upload",
        entity="evidence_item",
        entity_id=str(item.id),
        after={
            "revision": item.latest_revision,
            "sha256": sha256,
            "filename": filename,
            "node_ids": item.node_ids,
            "agency_id": None if item.agency_id is None else str(item.agency_id),
            "assessment_id": str(assessment.id),
            "answers_request": None if evidence_request is None else str(evidence_request.id),
        },
    )
    await repository.add_revision(
        session,
        EvidenceRevision(
            item_id=item.id,
            revision=item.latest_revision,
            sha256=sha256,
            filename=filename,
            uploaded_by=principal.key_id,
        ),
    )
    return item, True


def _count_stored(size: int) -> Callable[[], Awaitable[None]]:
    """Counts a new object in the store once the row that records it has committed."""

    async def count() -> None:
        EVIDENCE_STORED_OBJECTS.inc()
        EVIDENCE_STORED_BYTES.inc(size)

    return count


def _sniff(upload: Upload) -> str | None:
    """What the uploaded bytes are (blocking: reads them back from storage)."""
    with upload.reader() as file:
        return sniff(file)


def _answer(evidence_request: EvidenceRequest, item_id: uuid.UUID) -> None:
    """The upload answers an assessor's evidence request (the first answer counts)."""
    if evidence_request.answered_at is None:
        evidence_request.answered_at = datetime.now(UTC)
        evidence_request.answered_by_item = item_id


async def describe(session: AsyncSession, items: Sequence[EvidenceItem]) -> list[EvidenceOut]:
    """The items as answered, each with all its revisions."""
    grouped = await repository.revisions(session, [item.id for item in items])
    return [
        EvidenceOut(
            id=item.id,
            assessment_id=item.assessment_id,
            node_ids=item.node_ids,
            title=item.title,
            agency_id=item.agency_id,
            latest_revision=item.latest_revision,
            revisions=[
                RevisionOut(
                    revision=revision.revision,
                    sha256=revision.sha256,
                    size=stored.size,
                    content_type=stored.content_type,
                    filename=revision.filename,
                    uploaded_at=revision.uploaded_at.isoformat(),
                )
                for revision, stored in grouped.get(item.id, [])
            ],
        )
        for item in items
    ]


async def evidence_of(
    session: AsyncSession,
    context: Context,
    assessment_id: uuid.UUID,
    node_id: str | None,
    agency_id: uuid.UUID | None = None,
) -> list[EvidenceOut]:
    """The evidence of an assessment the caller may see (404 otherwise), oldest first; with
    ``agency_id`` the items that agency is responsible for (the region's keys only)."""
    assessment = await policy.visible_assessment(session, context.principal, assessment_id)
    if agency_id is not None:
        policy.require_inside_region(
            context.principal, assessment.region_code, f"No agency {agency_id}."
        )
    items = await repository.items(session, assessment_id, node_id, agency_id)
    return await describe(session, items)


async def revision_to_download(
    session: AsyncSession, context: Context, item_id: uuid.UUID, revision: int | None
) -> tuple[EvidenceRevision, EvidenceObject]:
    """A revision (default: the latest) of an item whose assessment the caller may see, with
    the object it stores; 404 for an item of an assessment the caller may not see."""
    item = await repository.get_item(session, item_id)
    if item is None:
        raise NotFound(f"No evidence item {item_id}.")
    try:
        await policy.visible_assessment(session, context.principal, item.assessment_id)
    except NotFound:
        raise NotFound(f"No evidence item {item_id}.") from None
    wanted = revision or item.latest_revision
    stored = (await repository.revisions(session, [item.id])).get(item.id, [])
    for found in stored:
        if found[0].revision == wanted:
            return found
    raise NotFound(f"Evidence item {item_id} has no revision {wanted}.")
