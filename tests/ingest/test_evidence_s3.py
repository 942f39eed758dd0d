"""Evidence in an S3-compatible object store (moto's server on 127.0.0.1): multipart uploads
for large files, nothing left in the bucket by a failed upload (no object, no pending multipart
upload), the same bytes stored once, presigned downloads, readiness.

The behaviour both backends share is tested in test_evidence.py, which runs on each."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from services.kit import s3_storage
from services.kit.s3_storage import S3Storage, S3Upload
from services.kit.settings import SettingsError, load_settings
from services.kit.storage import object_key
from services.models import Assessment
from tests.evidence_store import BUCKET, REGION, S3Store
from tests.ingest.test_evidence import ELF, PDF, rows, upload

pytestmark = pytest.mark.storage_backends("s3")

MakeKey = Callable[..., Awaitable[dict[str, str]]]
ClientFor = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]
MiB = 1024 * 1024
PART = 5 * MiB  # S3's smallest part
BOUNDARY = "cerdas-s3-boundary"


@pytest.fixture
async def bogor(session: AsyncSession) -> Assessment:
    assessment = Assessment(region_code="32.71", framework_id="gmsc-2023", period=2024)
    session.add(assessment)
    await session.commit()
    return assessment


@pytest.fixture
async def operator(make_key: MakeKey) -> dict[str, str]:
    return await make_key("region-operator", "32.71", name="Diskominfo Kota Bogor")


@pytest.fixture
def parts_sent(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every part sent in a multipart upload."""
    sent: list[int] = []
    original = S3Upload._send_part

    async def spy(self: S3Upload, size: int) -> None:
        await original(self, size)
        sent.append(size)

    monkeypatch.setattr(S3Upload, "_send_part", spy)
    return sent


def large_pdf(size: int) -> bytes:
    return PDF + b"%" + b"0" * (size - len(PDF) - 1)


def multipart_head(assessment_id: object, filename: str = "laporan.pdf") -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="assessment_id"\r\n\r\n'
        f'{assessment_id}\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name="node_ids"'
        f'\r\n\r\noutput\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{filename}"\r\n\r\n'
    ).encode()


async def streamed(head: bytes, file: bytes, tail: bytes = b"") -> AsyncIterator[bytes]:
    """A body with no Content-Length: only the stream can tell how large it is."""
    yield head
    for start in range(0, len(file), 256 * 1024):
        yield file[start : start + 256 * 1024]
    if tail:
        yield tail


async def test_a_large_file_goes_up_in_parts_and_the_same_bytes_are_stored_once(
    client_for: ClientFor,
    operator: dict[str, str],
    bogor: Assessment,
    session: AsyncSession,
    evidence_store: S3Store,
    parts_sent: list[int],
) -> None:
    content = large_pdf(PART + MiB + 17)
    async with client_for(evidence_s3_part_size_bytes=PART) as client:
        first = await upload(client, operator, content, assessment_id=bogor.id, node_ids="output")
        assert first.status_code == 201, first.text
        assert parts_sent == [PART, MiB + 17]
        again = await upload(client, operator, content, assessment_id=bogor.id, node_ids="impact")
        assert again.status_code == 201, again.text
        download = await client.get(f"/v1/evidence/{first.json()['id']}/download", headers=operator)
    assert download.status_code == 200
    assert download.content == content
    key = object_key(hashlib.sha256(content).hexdigest())
    # One object under its key; both staging objects gone, no multipart upload left open.
    assert evidence_store.contents() == [key]
    assert evidence_store.get(key) == content
    assert await rows(session) == (2, 2, 1)


async def test_a_small_file_is_one_put_under_its_key(
    client: httpx.AsyncClient,
    operator: dict[str, str],
    bogor: Assessment,
    evidence_store: S3Store,
    parts_sent: list[int],
) -> None:
    response = await upload(client, operator, PDF, assessment_id=bogor.id, node_ids="output")
    assert response.status_code == 201, response.text
    assert parts_sent == []
    assert evidence_store.contents() == [object_key(hashlib.sha256(PDF).hexdigest())]


async def test_too_large_midway_aborts_the_multipart_upload(
    client_for: ClientFor,
    operator: dict[str, str],
    bogor: Assessment,
    session: AsyncSession,
    evidence_store: S3Store,
    parts_sent: list[int],
) -> None:
    content = large_pdf(PART + 2 * MiB)
    async with client_for(
        evidence_s3_part_size_bytes=PART, evidence_max_bytes=PART + MiB
    ) as client:
        response = await client.post(
            "/v1/evidence",
            content=streamed(multipart_head(bogor.id), content),
            headers={**operator, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        )
    assert response.status_code == 413, response.text
    assert parts_sent == [PART]  # a part was in the bucket when the limit was crossed
    assert evidence_store.contents() == []  # no object, no pending multipart upload
    assert await rows(session) == (0, 0, 0)


async def test_a_large_file_of_the_wrong_type_is_415_and_its_staged_copy_deleted(
    client_for: ClientFor,
    operator: dict[str, str],
    bogor: Assessment,
    session: AsyncSession,
    evidence_store: S3Store,
    parts_sent: list[int],
) -> None:
    content = ELF + b"\x00" * (PART + MiB)
    async with client_for(evidence_s3_part_size_bytes=PART) as client:
        response = await upload(
            client, operator, content, assessment_id=bogor.id, node_ids="output"
        )
    assert response.status_code == 415, response.text
    assert len(parts_sent) == 2  # staged in full, sniffed from the bucket, refused
    assert evidence_store.contents() == []
    assert await rows(session) == (0, 0, 0)


async def test_a_client_that_disconnects_midway_leaves_nothing_in_the_bucket(
    app_for: Callable[..., AbstractAsyncContextManager[FastAPI]],
    operator: dict[str, str],
    bogor: Assessment,
    session: AsyncSession,
    evidence_store: S3Store,
    parts_sent: list[int],
) -> None:
    body = [multipart_head(bogor.id) + PDF] + [b"0" * (256 * 1024)] * 24  # 6 MiB, then gone
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": chunk, "more_body": True} for chunk in body
    ]
    messages.append({"type": "http.disconnect"})
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [
        (b"host", b"cerdas.test"),
        (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),
        (b"authorization", operator["Authorization"].encode()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/evidence",
        "raw_path": b"/v1/evidence",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("cerdas.test", 80),
    }
    async with app_for(evidence_s3_part_size_bytes=PART) as app:
        await app(scope, receive, send)
    assert sent[0]["status"] == 400
    assert parts_sent == [PART]
    assert evidence_store.contents() == []
    assert await rows(session) == (0, 0, 0)


async def test_presigned_downloads_redirect_to_the_bytes_and_only_for_who_may_see_them(
    client_for: ClientFor,
    operator: dict[str, str],
    make_key: MakeKey,
    bogor: Assessment,
) -> None:
    bekasi = await make_key("super-app", "32.16", name="Bebunge")
    async with client_for(
        evidence_s3_presign_downloads=True, evidence_s3_presign_seconds=60
    ) as client:
        stored = await upload(client, operator, PDF, assessment_id=bogor.id, node_ids="output")
        assert stored.status_code == 201, stored.text
        path = f"/v1/evidence/{stored.json()['id']}/download"
        redirect = await client.get(path, headers=operator)
        hidden = await client.get(path, headers=bekasi)
        anonymous = await client.get(path)
    assert redirect.status_code == 307, redirect.text
    assert redirect.headers["cache-control"] == "no-store"
    location = redirect.headers["location"]
    assert "X-Amz-Expires=60" in location
    async with httpx.AsyncClient() as outside:  # straight to the object store
        fetched = await outside.get(location)
    assert fetched.status_code == 200
    assert fetched.content == PDF
    assert fetched.headers["content-type"] == "application/pdf"
    assert fetched.headers["content-disposition"].startswith(
        'attachment; filename="perwali-smart-city.pdf"'
    )
    # Another region's key learns nothing: no redirect, no URL, the same 404 as ever.
    assert hidden.status_code == 404
    assert "location" not in hidden.headers
    assert anonymous.status_code == 401


async def test_readyz_checks_the_bucket(client_for: ClientFor) -> None:
    async with client_for() as client:
        ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["storage"] == "ok"
    async with client_for(evidence_s3_bucket="cerdas-no-such-bucket") as client:
        missing = await client.get("/readyz")
    assert missing.status_code == 503
    assert missing.json()["checks"]["storage"].startswith("bucket cerdas-no-such-bucket: ")


async def test_bytes_already_under_their_key_are_not_copied_again(
    evidence_store: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = S3Storage(
        bucket=BUCKET,
        prefix=evidence_store.prefix,
        endpoint_url=evidence_store.server.endpoint_url,
        region=REGION,
        part_size=PART,
    )
    content = large_pdf(PART + MiB)
    key = object_key(hashlib.sha256(content).hexdigest())
    copies: list[str] = []
    try:
        for _ in range(2):
            staged = storage.new_upload()
            await staged.write(content)
            await staged.finish()
            client = await storage.client()
            original = client.copy_object

            async def counted(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                copies.append(kwargs["Key"])
                return await _original(*args, **kwargs)

            monkeypatch.setattr(client, "copy_object", counted)
            await storage.commit(staged, key)
    finally:
        await storage.close()
    assert copies == [f"{evidence_store.prefix}{key}"]  # once, not twice
    assert evidence_store.contents() == [key]


async def test_sniffing_a_staged_file_reads_ranges_off_the_event_loop(
    client_for: ClientFor,
    operator: dict[str, str],
    bogor: Assessment,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop_thread = threading.current_thread()
    reads: list[bool] = []
    original = s3_storage._RangeReader.readinto

    def spy(self: Any, buffer: Any) -> int:
        reads.append(threading.current_thread() is loop_thread)
        return original(self, buffer)

    monkeypatch.setattr(s3_storage._RangeReader, "readinto", spy)
    async with client_for(evidence_s3_part_size_bytes=PART) as client:
        response = await upload(
            client, operator, large_pdf(PART + 1), assessment_id=bogor.id, node_ids="output"
        )
    assert response.status_code == 201, response.text
    assert reads
    assert not any(reads)


def test_the_s3_backend_needs_a_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERDAS_EVIDENCE_BACKEND", "s3")
    monkeypatch.delenv("CERDAS_EVIDENCE_S3_BUCKET", raising=False)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert str(refused.value) == (
        "invalid setting CERDAS_EVIDENCE_S3_BUCKET: required when CERDAS_EVIDENCE_BACKEND is s3"
    )
    monkeypatch.setenv("CERDAS_EVIDENCE_S3_BUCKET", "Not_A_Bucket")
    with pytest.raises(
        SettingsError, match="CERDAS_EVIDENCE_S3_BUCKET: expected an S3 bucket name"
    ):
        load_settings()
    monkeypatch.setenv("CERDAS_EVIDENCE_S3_BUCKET", BUCKET)
    monkeypatch.setenv("CERDAS_EVIDENCE_S3_PREFIX", "/cerdas/evidence")
    monkeypatch.setenv("CERDAS_EVIDENCE_S3_REGION", REGION)
    settings = load_settings()
    assert (settings.evidence_s3_bucket, settings.evidence_s3_prefix) == (
        BUCKET,
        "cerdas/evidence/",
    )
    monkeypatch.setenv("CERDAS_EVIDENCE_S3_PART_SIZE_BYTES", str(MiB))
    with pytest.raises(SettingsError, match="CERDAS_EVIDENCE_S3_PART_SIZE_BYTES"):
        load_settings()
