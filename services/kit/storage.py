"""Evidence storage behind a small interface; a local folder by default.

Objects are content-addressed (``ab/abcdef…`` by SHA-256), so the same bytes are stored once.
Uploads are first written to a temporary file inside the store (same filesystem), then moved into
place atomically: write, fsync, rename. An S3-compatible backend implements the same protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

import anyio

CHUNK = 64 * 1024


class Storage(Protocol):
    def new_upload(self) -> Upload: ...

    async def commit(self, upload: Upload, key: str) -> None: ...

    def read(self, key: str) -> AsyncIterator[bytes]: ...


class Upload:
    """A temporary file being written; discard() removes every trace of it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("wb")
        self.size = 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self.size += len(data)

    def finish(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        self.path.unlink(missing_ok=True)


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / ".incoming"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def new_upload(self) -> Upload:
        handle, name = tempfile.mkstemp(dir=self.tmp, prefix="upload-")
        os.close(handle)
        return Upload(Path(name))

    def path_of(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"storage key {key!r} leaves the store")
        return path

    async def commit(self, upload: Upload, key: str) -> None:
        await asyncio.to_thread(self._commit, upload, key)  # fsync waits on the disk

    def _commit(self, upload: Upload, key: str) -> None:
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


def object_key(sha256: str) -> str:
    return f"{sha256[:2]}/{sha256}"
