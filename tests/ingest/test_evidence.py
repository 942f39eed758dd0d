"""Evidence uploads: streamed, sniffed, content-addressed, revised; hostile input leaves nothing."""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.kit.storage import object_key
from services.models import (
    Assessment,
    AssessmentState,
    EvidenceItem,
    EvidenceObject,
    EvidenceRevision,
)
from tests.evidence_store import EvidenceStore

# Every test here runs on the local folder and on an S3-compatible server.
pytestmark = pytest.mark.storage_backends("local", "s3")

MakeKey = Callable[..., Awaitable[dict[str, str]]]
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PDF_V2 = PDF.replace(b"1.4", b"1.7")
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 200


def office(kind: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        if kind == "ods":
            archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
            archive.writestr("content.xml", "<office:document-content/>")
        else:
            archive.writestr("[Content_Types].xml", "<Types/>")
            archive.writestr("word/document.xml" if kind == "docx" else "xl/workbook.xml", "<x/>")
    return buffer.getvalue()


@pytest.fixture
async def bogor(session: AsyncSession) -> Assessment:
    assessment = Assessment(region_code="32.71", framework_id="gmsc-2023", period=2024)
    session.add(assessment)
    await session.commit()
    return assessment


@pytest.fixture
async def operator(make_key: MakeKey) -> dict[str, str]:
    return await make_key("region-operator", "32.71", name="Diskominfo Kota Bogor")


async def upload(
    client: httpx.AsyncClient,
    key: dict[str, str],
    content: bytes,
    *,
    filename: str = "perwali-smart-city.pdf",
    **fields: Any,
) -> httpx.Response:
    return await client.post(
        "/v1/evidence",
        headers=key,
        data={k: str(v) for k, v in fields.items()},
        files={"file": (filename, content, "application/octet-stream")},
    )


async def rows(session: AsyncSession) -> tuple[int, int, int]:
    counts = []
    for model in (EvidenceItem, EvidenceRevision, EvidenceObject):
        counts.append(int(await session.scalar(select(func.count()).select_from(model)) or 0))
    return counts[0], counts[1], counts[2]


async def test_upload_list_and_download(
    client: httpx.AsyncClient, operator: dict[str, str], bogor: Assessment
) -> None:
    response = await upload(
        client,
        operator,
        PDF,
        assessment_id=bogor.id,
        node_ids="output,outcome",
        title="Perwali Smart City",
    )
    assert response.status_code == 201, response.text
    item = response.json()
    assert item["node_ids"] == ["outcome", "output"]
    assert item["title"] == "Perwali Smart City"
    [revision] = item["revisions"]
    assert revision["sha256"] == hashlib.sha256(PDF).hexdigest()
    assert (revision["size"], revision["content_type"]) == (len(PDF), "application/pdf")
    listed = (
        await client.get(
            "/v1/evidence",
            params={"assessment_id": str(bogor.id), "node_id": "outcome"},
            headers=operator,
        )
    ).json()
    assert [entry["id"] for entry in listed["items"]] == [item["id"]]
    download = await client.get(f"/v1/evidence/{item['id']}/download", headers=operator)
    assert download.status_code == 200
    assert download.content == PDF
    assert download.headers["content-type"] == "application/pdf"
    assert download.headers["content-disposition"].startswith(
        'attachment; filename="perwali-smart-city.pdf"'
    )


async def test_the_same_bytes_twice_are_stored_once(
    client: httpx.AsyncClient,
    operator: dict[str, str],
    bogor: Assessment,
    session: AsyncSession,
    evidence_store: EvidenceStore,
) -> None:
    for node in ("output", "impact"):
        assert (
            await upload(client, operator, PDF, assessment_id=bogor.id, node_ids=node)
        ).status_code == 201
    assert await rows(session) == (2, 2, 1)
    assert evidence_store.contents() == [object_key(hashlib.sha256(PDF).hexdigest())]


async def test_a_new_revision_keeps_the_old_ones(
    client: httpx.AsyncClient, operator: dict[str, str], bogor: Assessment
) -> None:
    first = (await upload(client, operator, PDF, assessment_id=bogor.id, node_ids="output")).json()
    second = await upload(
        client,
        operator,
        PDF_V2,
        assessment_id=bogor.id,
        item_id=first["id"],
        filename="perwali-revisi.pdf",
    )
    assert second.status_code == 201, second.text
    assert second.json()["latest_revision"] == 2
    assert [r["filename"] for r in second.json()["revisions"]] == [
        "perwali-smart-city.pdf",
        "perwali-revisi.pdf",
    ]
    old = await client.get(
        f"/v1/evidence/{first['id']}/download", params={"revision": 1}, headers=operator
    )
    new = await client.get(f"/v1/evidence/{first['id']}/download", headers=operator)
    assert (old.content, new.content) == (PDF, PDF_V2)


@pytest.mark.parametrize(
    ("kind", "content_type"),
    [
        ("docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ("ods", "application/vnd.oasis.opendocument.spreadsheet"),
    ],
)
async def test_office_documents_are_recognised_by_content(
    client: httpx.AsyncClient,
    operator: dict[str, str],
    bogor: Assessment,
    kind: str,
    content_type: str,
) -> None:
    response = await upload(
        client,
        operator,
        office(kind),
        assessment_id=bogor.id,
        node_ids="impact",
        filename="laporan",
    )
    assert response.status_code == 201, response.text
    revision = response.json()["revisions"][0]
    assert revision["content_type"] == content_type
    assert revision["filename"] == f"laporan.{kind}"


async def test_oversize_is_cut_off_while_streaming_and_leaves_nothing(
    client_for: Any,
    make_key: MakeKey,
    bogor: Assessment,
    session: AsyncSession,
    evidence_store: EvidenceStore,
) -> None:
    operator = await make_key("region-operator", "32.71")
    before = evidence_store.contents()
    async with client_for(evidence_max_bytes=1000) as small:
        response = await upload(
            small, operator, PDF + b"0" * 5000, assessment_id=bogor.id, node_ids="output"
        )
    assert response.status_code == 413
    assert response.json()["code"] == "payload-too-large"
    assert evidence_store.contents() == before
    assert await rows(session) == (0, 0, 0)


@pytest.mark.parametrize(
    ("content", "filename"),
    [
        (ELF, "laporan.pdf"),
        (b"MZ\x90\x00" + b"\x00" * 100, "perwali.pdf"),
        (b"<html><script>alert(1)</script>", "foto.png"),
        (office("docx")[:-30], "rusak.docx"),
    ],
)
async def test_content_that_is_not_an_allowed_type_is_415_whatever_its_name(
    client: httpx.AsyncClient,
    operator: dict[str, str],
    bogor: Assessment,
    session: AsyncSession,
    evidence_store: EvidenceStore,
    content: bytes,
    filename: str,
) -> None:
    before = evidence_store.contents()
    response = await upload(
        client, operator, content, assessment_id=bogor.id, node_ids="output", filename=filename
    )
    assert response.status_code == 415
    assert evidence_store.contents() == before
    assert await rows(session) == (0, 0, 0)


async def test_path_and_nul_in_the_filename_are_stored_and_served_safely(
    client: httpx.AsyncClient, operator: dict[str, str], bogor: Assessment
) -> None:
    boundary = "cerdasboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="assessment_id"\r\n\r\n'
            f'{bogor.id}\r\n--{boundary}\r\nContent-Disposition: form-data; name="node_ids"'
            f'\r\n\r\noutput\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="../../etc/pass\x00wd\x07.pdf"\r\n\r\n'
        ).encode()
        + PDF
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {**operator, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    response = await client.post("/v1/evidence", content=body, headers=headers)
    assert response.status_code == 201, response.text
    item = response.json()
    assert item["revisions"][0]["filename"] == "passwd.pdf"
    download = await client.get(f"/v1/evidence/{item['id']}/download", headers=operator)
    disposition = download.headers["content-disposition"]
    assert disposition == "attachment; filename=\"passwd.pdf\"; filename*=UTF-8''passwd.pdf"
    assert download.headers["x-content-type-options"] == "nosniff"


async def test_empty_and_truncated_bodies_are_clear_4xx_and_leave_nothing(
    client: httpx.AsyncClient,
    operator: dict[str, str],
    bogor: Assessment,
    session: AsyncSession,
    evidence_store: EvidenceStore,
) -> None:
    before = evidence_store.contents()
    boundary = "cerdasboundary"
    multipart = {**operator, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    empty = await client.post("/v1/evidence", content=b"", headers=multipart)
    assert empty.status_code == 400
    empty_file = await upload(client, operator, b"", assessment_id=bogor.id, node_ids="output")
    assert empty_file.status_code == 422
    truncated = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="assessment_id"\r\n\r\n'
        f'{bogor.id}\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="a.pdf"\r\n\r\n'
    ).encode() + PDF[:20]
    cut = await client.post("/v1/evidence", content=truncated, headers=multipart)
    assert cut.status_code == 400
    assert "truncated" in cut.json()["detail"]
    pdf_type = {**operator, "Content-Type": "application/pdf"}
    not_multipart = await client.post("/v1/evidence", content=PDF, headers=pdf_type)
    assert not_multipart.status_code == 415
    assert evidence_store.contents() == before
    assert await rows(session) == (0, 0, 0)


async def test_uploads_for_another_region_or_unknown_nodes_are_refused(
    client: httpx.AsyncClient,
    make_key: MakeKey,
    bogor: Assessment,
    session: AsyncSession,
    evidence_store: EvidenceStore,
) -> None:
    before = evidence_store.contents()
    bebunge = await make_key("super-app", "32.16", name="Bebunge")
    foreign = await upload(client, bebunge, PDF, assessment_id=bogor.id, node_ids="output")
    assert foreign.status_code == 404  # another region's draft: not even its existence shows
    operator = await make_key("region-operator", "32.71")
    unknown = await upload(client, operator, PDF, assessment_id=bogor.id, node_ids="I11")
    assert unknown.status_code == 422
    assert unknown.json()["detail"] == "unknown node 'I11' in gmsc-2023"
    assert evidence_store.contents() == before
    assert await rows(session) == (0, 0, 0)


async def test_a_published_assessment_takes_no_more_evidence(
    client: httpx.AsyncClient,
    operator: dict[str, str],
    bogor: Assessment,
    session: AsyncSession,
    evidence_store: EvidenceStore,
) -> None:
    before = evidence_store.contents()
    bogor.state = AssessmentState.PUBLISHED
    await session.commit()
    late = await upload(client, operator, PDF, assessment_id=bogor.id, node_ids="output")
    assert late.status_code == 409, late.text
    assert late.json()["state"] == "published"
    assert evidence_store.contents() == before
    assert await rows(session) == (0, 0, 0)


async def test_a_repeat_upload_still_answers_the_evidence_request_it_names(
    client: httpx.AsyncClient,
    operator: dict[str, str],
    make_key: MakeKey,
    session: AsyncSession,
    evidence_store: EvidenceStore,
) -> None:
    assessment = Assessment(
        region_code="32.71", framework_id="gmsc-2023", period=2024, state="in_review"
    )
    session.add(assessment)
    await session.commit()
    ministry = await make_key("ministry-admin", name="Komdigi")
    first = await upload(client, operator, PDF, assessment_id=assessment.id, node_ids="output")
    assert first.status_code == 201, first.text
    asked = await client.post(
        f"/v1/assessments/{assessment.id}/evidence-requests",
        headers=ministry,
        json={"node_ids": ["output", "output"], "message": "Lampirkan Perwali"},
    )
    assert asked.status_code == 201, asked.text
    assert asked.json()["node_ids"] == ["output"]
    files = evidence_store.contents()
    made_up = await upload(
        client,
        operator,
        PDF_V2,
        assessment_id=assessment.id,
        node_ids="output",
        request_id="00000000-0000-0000-0000-000000000001",
    )
    assert made_up.status_code == 404, made_up.text
    assert evidence_store.contents() == files  # refused before its bytes entered the store
    again = await upload(
        client,
        operator,
        PDF,
        assessment_id=assessment.id,
        node_ids="output",
        request_id=asked.json()["id"],
    )
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    answered = await client.get(
        f"/v1/assessments/{assessment.id}/evidence-requests",
        params={"status": "answered"},
        headers=ministry,
    )
    assert [r["answered_by_item"] for r in answered.json()["items"]] == [first.json()["id"]]


async def test_evidence_and_its_requests_are_read_only_by_who_may_see_the_assessment(
    client: httpx.AsyncClient,
    operator: dict[str, str],
    make_key: MakeKey,
    bogor: Assessment,
) -> None:
    # Kota Bogor's draft is not published: another region's key and an unassigned assessor
    # neither list nor download its evidence, and cannot tell it exists.
    stored = await upload(client, operator, PDF, assessment_id=bogor.id, node_ids="output")
    assert stored.status_code == 201, stored.text
    item = stored.json()["id"]
    bekasi = await make_key("super-app", "32.16", name="Bebunge")
    assessor = await make_key("assessor", name="Unassigned assessor")
    admin = await make_key("ministry-admin", name="Komdigi")
    listing = f"/v1/evidence?assessment_id={bogor.id}"
    download = f"/v1/evidence/{item}/download"
    requests = f"/v1/assessments/{bogor.id}/evidence-requests?status=all"
    for outsider in (bekasi, assessor, {}):
        expected = 401 if not outsider else 404
        assert (await client.get(listing, headers=outsider)).status_code == expected
        assert (await client.get(download, headers=outsider)).status_code == expected
        assert (await client.get(requests, headers=outsider)).status_code == expected
    for insider in (operator, admin):
        assert (await client.get(requests, headers=insider)).json() == {
            "items": [],
            "next_cursor": None,
        }
        listed = await client.get(listing, headers=insider)
        assert [entry["id"] for entry in listed.json()["items"]] == [item]
        fetched = await client.get(download, headers=insider)
        assert fetched.status_code == 200
        assert fetched.content == PDF


@pytest.mark.storage_backends("local")  # the S3 backend's own test is in test_s3_storage.py
async def test_upload_file_io_runs_off_the_event_loop(
    client: httpx.AsyncClient,
    operator: dict[str, str],
    bogor: Assessment,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every disk write, fsync and the rename into the store happen in worker threads: a slow
    # disk never stalls other requests.
    import threading

    from services.kit import storage

    loop_thread = threading.current_thread()
    seen: list[tuple[str, bool]] = []
    for name in ("_write", "_finish"):
        original = getattr(storage.LocalUpload, name)

        def spy(self: Any, *args: Any, _name: str = name, _original: Any = original) -> Any:
            seen.append((_name, threading.current_thread() is loop_thread))
            return _original(self, *args)

        monkeypatch.setattr(storage.LocalUpload, name, spy)
    original_commit = storage.LocalStorage._commit

    def commit_spy(self: Any, *args: Any) -> Any:
        seen.append(("commit", threading.current_thread() is loop_thread))
        return original_commit(self, *args)

    monkeypatch.setattr(storage.LocalStorage, "_commit", commit_spy)
    stored = await upload(client, operator, PDF * 2000, assessment_id=bogor.id, node_ids="output")
    assert stored.status_code == 201, stored.text
    assert {name for name, _ in seen} == {"_write", "_finish", "commit"}
    assert not any(on_loop for _, on_loop in seen)
