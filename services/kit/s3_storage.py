"""Evidence in an S3-compatible object store (AWS S3, MinIO, SeaweedFS, Ceph, R2, ...).

Uploads stream: bytes are buffered up to one part (``CERDAS_EVIDENCE_S3_PART_SIZE_BYTES``). A
file that fits in one part is kept in memory until its key (its SHA-256) is known and then stored
with one PUT under that key; a larger one goes up as a multipart upload to a staging key under
``<prefix>.incoming/`` and is copied to its key once accepted, the staging object then deleted.
A failed or refused upload leaves nothing: its multipart upload is aborted, its staging object
deleted. Bytes already stored under their key (the same file again) are not copied twice.

Everything is asyncio (aiobotocore): the event loop never waits on the network. The one blocking
reader, for sniffing a staged file, runs in a worker thread and asks the event loop for ranges.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from services.kit.settings import Settings
from services.kit.storage import CHUNK, StorageUnavailable, Upload

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger(__name__)
T = TypeVar("T")

# Sniffing a staged file reads its head, and for a zip its tail and a few entries: ranges of
# at least this much keep that to a handful of requests.
READ_AHEAD = 256 * 1024
# /readyz waits this long for the bucket to answer.
CHECK_SECONDS = 2.0
_MISSING = {"404", "NoSuchKey", "NotFound"}


@contextlib.contextmanager
def _unavailable(action: str) -> Iterator[None]:
    """The store's failures as a 503 naming what was attempted (never a 500, never a 400)."""
    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "?")
        log.warning("object store: %s failed: %s", action, exc)
        raise StorageUnavailable(f"The evidence store refused to {action} ({code}).") from exc
    except BotoCoreError as exc:
        log.warning("object store: %s failed: %s", action, exc)
        raise StorageUnavailable(f"The evidence store could not {action}.") from exc


class S3Storage:
    backend = "s3"

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        addressing_style: str = "auto",
        part_size: int = 8 * 1024 * 1024,
        presign_seconds: int | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.part_size = part_size
        self.presign_seconds = presign_seconds
        self._client_options: dict[str, Any] = {
            "endpoint_url": endpoint_url,
            "region_name": region,
            "config": AioConfig(
                signature_version="s3v4",
                s3={"addressing_style": addressing_style},
                connect_timeout=5,
                read_timeout=60,
                retries={"mode": "standard", "max_attempts": 3},
            ),
        }
        self._client: S3Client | None = None
        self._exit = contextlib.AsyncExitStack()
        self._opening = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Storage:
        assert settings.evidence_s3_bucket is not None  # required with the s3 backend (settings)
        return cls(
            bucket=settings.evidence_s3_bucket,
            prefix=settings.evidence_s3_prefix,
            endpoint_url=settings.evidence_s3_endpoint_url,
            region=settings.evidence_s3_region,
            addressing_style=settings.evidence_s3_addressing_style,
            part_size=settings.evidence_s3_part_size_bytes,
            presign_seconds=settings.evidence_s3_presign_seconds
            if settings.evidence_s3_presign_downloads
            else None,
        )

    async def client(self) -> S3Client:
        """The client, opened on first use (the app builds its storage outside the loop)."""
        if self._client is None:
            async with self._opening:
                if self._client is None:
                    creating = get_session().create_client("s3", **self._client_options)
                    self._client = await self._exit.enter_async_context(creating)
        return self._client

    async def close(self) -> None:
        self._client = None
        await self._exit.aclose()

    def key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def new_upload(self) -> S3Upload:
        return S3Upload(self, self.key(f".incoming/{uuid.uuid4()}"))

    async def exists(self, key: str) -> bool:
        client = await self.client()
        with _unavailable("look up an object"):
            try:
                await client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in _MISSING:
                    return False
                raise
        return True

    async def commit(self, upload: Upload, key: str) -> None:
        assert isinstance(upload, S3Upload)
        target = self.key(key)
        if await self.exists(target):
            await upload.discard()  # the same bytes are already there: no second copy
            return
        client = await self.client()
        if upload.staged is None:
            with _unavailable("store the file"):
                await client.put_object(Bucket=self.bucket, Key=target, Body=upload.body())
        else:
            with _unavailable("store the file"):
                await client.copy_object(
                    Bucket=self.bucket,
                    Key=target,
                    CopySource={"Bucket": self.bucket, "Key": upload.staged},
                )
        await upload.discard()  # the staging object, if any

    async def read(self, key: str) -> AsyncIterator[bytes]:
        client = await self.client()
        with _unavailable("read the file"):
            answer = await client.get_object(Bucket=self.bucket, Key=self.key(key))
        async with answer["Body"] as body:
            async for chunk in body.iter_chunks(CHUNK):
                yield chunk

    async def read_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` inclusive of the object at ``key`` (a full key)."""
        client = await self.client()
        with _unavailable("read the file"):
            answer = await client.get_object(
                Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end}"
            )
            async with answer["Body"] as body:
                return await body.read()

    async def download_url(self, key: str, *, disposition: str, content_type: str) -> str | None:
        if self.presign_seconds is None:
            return None
        client = await self.client()
        with _unavailable("sign a download"):
            return await client.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": self.key(key),
                    "ResponseContentDisposition": disposition,
                    "ResponseContentType": content_type,
                },
                ExpiresIn=self.presign_seconds,
            )

    async def check(self) -> str | None:
        try:
            client = await self.client()
            await asyncio.wait_for(client.head_bucket(Bucket=self.bucket), CHECK_SECONDS)
        except TimeoutError:
            return f"no answer from the bucket within {CHECK_SECONDS:g} s"
        except ClientError as exc:
            return f"bucket {self.bucket}: {exc.response.get('Error', {}).get('Code', '?')}"
        except Exception as exc:
            return f"unreachable: {type(exc).__name__}"
        return "ok"


class S3Upload:
    """One file on its way into the bucket: a part's worth of bytes in memory, earlier parts
    in a multipart upload to a staging key."""

    def __init__(self, storage: S3Storage, staging_key: str) -> None:
        self.storage = storage
        self.staging_key = staging_key
        self.size = 0
        self.staged: str | None = None  # the staging key, once a multipart upload completed
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    async def write(self, data: bytes) -> None:
        self._loop = asyncio.get_running_loop()
        self._buffer += data
        self.size += len(data)
        # Strictly more than a part: a file of exactly one part is still one PUT.
        while len(self._buffer) > self.storage.part_size:
            await self._send_part(self.storage.part_size)

    async def _send_part(self, size: int) -> None:
        client = await self.storage.client()
        bucket, key = self.storage.bucket, self.staging_key
        if self._upload_id is None:
            with _unavailable("start a multipart upload"):
                started = await client.create_multipart_upload(Bucket=bucket, Key=key)
            self._upload_id = started["UploadId"]
        number = len(self._parts) + 1
        part = bytes(self._buffer[:size])
        with _unavailable("upload a part"):
            sent = await client.upload_part(
                Bucket=bucket, Key=key, UploadId=self._upload_id, PartNumber=number, Body=part
            )
        del self._buffer[:size]
        self._parts.append({"ETag": sent["ETag"], "PartNumber": number})

    async def finish(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._upload_id is None:
            return  # one part or less: stays in memory until its key is known
        if self._buffer:
            await self._send_part(len(self._buffer))
        client = await self.storage.client()
        with _unavailable("complete a multipart upload"):
            await client.complete_multipart_upload(
                Bucket=self.storage.bucket,
                Key=self.staging_key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        self._upload_id = None
        self.staged = self.staging_key

    def body(self) -> bytes:
        return bytes(self._buffer)

    def reader(self) -> BinaryIO:
        if self.staged is None:
            return io.BytesIO(self._buffer)
        assert self._loop is not None
        raw = _RangeReader(self.storage, self.staged, self.size, self._loop)
        return io.BufferedReader(raw, buffer_size=READ_AHEAD)

    async def discard(self) -> None:
        """Abort the multipart upload, delete the staging object: nothing stays behind."""
        self._buffer = bytearray()
        if self._upload_id is None and self.staged is None:
            return
        client = await self.storage.client()
        bucket = self.storage.bucket
        try:
            if self._upload_id is not None:
                await _shielded(
                    client.abort_multipart_upload(
                        Bucket=bucket, Key=self.staging_key, UploadId=self._upload_id
                    )
                )
                self._upload_id = None
            if self.staged is not None:
                await _shielded(client.delete_object(Bucket=bucket, Key=self.staged))
                self.staged = None
        except (ClientError, BotoCoreError):
            # Left for the bucket's lifecycle rule (README: abort incomplete multipart uploads
            # and expire .incoming/ after a day); the upload itself fails either way.
            log.exception("object store: could not clean up the staged upload %s", self.staging_key)


async def _shielded(call: Awaitable[T]) -> T:
    """A clean-up that finishes even when the request that started it is being cancelled."""
    return await asyncio.shield(call)


class _RangeReader(io.RawIOBase):
    """A seekable, blocking file over a stored object, for a worker thread: each read asks the
    event loop for a byte range and waits for it."""

    def __init__(
        self, storage: S3Storage, key: str, size: int, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.storage, self.key, self.length, self.loop = storage, key, size, loop
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.length}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        end = min(self.position + len(view), self.length)
        if end <= self.position:
            return 0
        fetch = self.storage.read_range(self.key, self.position, end - 1)
        data = asyncio.run_coroutine_threadsafe(fetch, self.loop).result()
        view[: len(data)] = data
        self.position += len(data)
        return len(data)
