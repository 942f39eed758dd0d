"""Evidence storage behind a small interface: a local folder by default, or an S3-compatible
object store (:mod:`services.kit.s3_storage`).

Objects are content-addressed (``ab/abcdef…`` by SHA-256), so the same bytes are stored once.
The key is known only when the last byte has arrived, so an upload is written somewhere
temporary first and committed under its key afterwards:

1. ``storage.new_upload()`` starts one; ``await upload.write(chunk)`` as the bytes arrive;
   ``await upload.finish()`` once they all have;
2. ``upload.reader()`` reads them back (blocking: call it in a worker thread), for sniffing;
3. ``await storage.commit(upload, key)`` puts them in place, or ``await upload.discard()``
   removes every trace of them (idempotent, and a no-op after a commit).

Locally the temporary file lives inside the store (same filesystem) and is moved into place
atomically: write, fsync, rename.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO, Protocol

import anyio

from services.kit.errors import Unavailable
from services.kit.settings import Settings

CHUNK = 64 * 1024


class StorageUnavailable(Unavailable):
    """The object store could not be reached or refused a request: retry later (503)."""

    code = "storage-unavailable"
    title = "Evidence storage unavailable"


class Upload(Protocol):
    """Bytes on their way into the store, not yet under their key."""

    size: int

    async def write(self, data: bytes) -> None: ...

    async def finish(self) -> None: ...

    def reader(self) -> BinaryIO:
        """A seekable file of the bytes written so far (blocking I/O: use a worker thread)."""
        ...

    async def discard(self) -> None: ...


class Storage(Protocol):
    backend: str

    def new_upload(self) -> Upload: ...

    async def commit(self, upload: Upload, key: str) -> None: ...

    def read(self, key: str) -> AsyncIterator[bytes]: ...

    async def download_url(self, key: str, *, disposition: str, content_type: str) -> str | None:
        """A short-lived URL the client may fetch the object from directly, or None when the
        bytes are to be streamed through Cerdas."""
        ...

    async def check(self) -> str | None:
        """For /readyz: "ok", why not, or None when there is nothing remote to check."""
        ...

    async def close(self) -> None: ...


class LocalUpload:
    """A temporary file being written; discard() removes every trace of it. Disk I/O runs in
    worker threads: a slow disk never stalls the event loop."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("wb")
        self.size = 0

    async def write(self, data: bytes) -> None:
        await asyncio.to_thread(self._write, data)
        self.size += len(data)

    def _write(self, data: bytes) -> None:
        self._file.write(data)

    async def finish(self) -> None:
        await asyncio.to_thread(self._finish)

    def _finish(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def reader(self) -> BinaryIO:
        return self.path.open("rb")

    async def discard(self) -> None:
        self._discard()  # a close and an unlink: quick, and safe to run while cancelled

    def _discard(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        self.path.unlink(missing_ok=True)


class LocalStorage:
    backend = "local"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / ".incoming"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def new_upload(self) -> LocalUpload:
        handle, name = tempfile.mkstemp(dir=self.tmp, prefix="upload-")
        os.close(handle)
        return LocalUpload(Path(name))

    def path_of(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"storage key {key!r} leaves the store")
        return path

    async def commit(self, upload: Upload, key: str) -> None:
        assert isinstance(upload, LocalUpload)
        await asyncio.to_thread(self._commit, upload, key)  # fsync waits on the disk

    def _commit(self, upload: LocalUpload, key: str) -> None:
        target = self.path_of(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(upload.path, target)
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a crash
        finally:
            os.close(directory)

    async def read(self, key: str) -> AsyncIterator[bytes]:
        async with await anyio.open_file(self.path_of(key), "rb") as file:
            while chunk := await file.read(CHUNK):
                yield chunk

    async def download_url(self, key: str, *, disposition: str, content_type: str) -> str | None:
        return None

    async def check(self) -> str | None:
        return None

    async def close(self) -> None:
        return None


def storage_from_settings(settings: Settings) -> Storage:
    """The evidence store the settings name (``CERDAS_EVIDENCE_BACKEND``)."""
    if settings.evidence_backend == "s3":
        from services.kit.s3_storage import S3Storage  # its client library loads only if used

        return S3Storage.from_settings(settings)
    return LocalStorage(settings.evidence_path)


def object_key(sha256: str) -> str:
    return f"{sha256[:2]}/{sha256}"
