"""Receiving a multipart upload as a stream: the file goes to storage chunk by chunk.

Nothing is held in memory but the current chunk and the small form fields (and what the storage
backend buffers: one part for S3). The SHA-256 and size are computed while streaming, and an
upload that grows past the limit is cut off at once, its temporary file (or multipart upload)
removed. Any failure leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from services.kit.edge import MULTIPART_OVERHEAD, unstorable
from services.kit.errors import (
    PayloadTooLarge,
    ProblemError,
    ProblemHTTPException,
    UnsupportedMediaType,
    invalid,
)
from services.kit.storage import Storage, Upload

MAX_FIELD_BYTES = 16 * 1024
# The form has six fields and one file; more parts than this is not an evidence upload.
MAX_PARTS = 16
MAX_HEADER_BYTES = 8 * 1024


class BadUpload(ProblemError):
    status = 400
    code = "bad-upload"
    title = "Malformed upload"


@dataclass
class ReceivedUpload:
    fields: dict[str, list[str]] = field(default_factory=dict)
    upload: Upload | None = None
    filename: str | None = None
    sha256: str | None = None

    async def discard(self) -> None:
        if self.upload is not None:
            await self.upload.discard()


class _Receiver:
    def __init__(self, storage: Storage, max_bytes: int) -> None:
        self.storage = storage
        self.max_bytes = max_bytes
        self.result = ReceivedUpload()
        self.hasher = hashlib.sha256()
        # File bytes parsed from the current chunk, written to storage by receive() on the
        # event loop (the parser's callbacks run in a worker thread).
        self.pending: list[bytes] = []
        self.file_bytes = 0
        self.ended = False
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name: str | None = None
        self._is_file = False
        self._value = bytearray()
        self._parts = 0
        self._header_bytes = 0

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": lambda data, start, end: self._add_field(data[start:end]),
            "on_header_value": lambda data, start, end: self._add_value(data[start:end]),
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_end": self.on_end,
        }

    def _add_field(self, data: bytes) -> None:
        self._count_header(data)
        self._header_field += data

    def _add_value(self, data: bytes) -> None:
        self._count_header(data)
        self._header_value += data

    def _count_header(self, data: bytes) -> None:
        self._header_bytes += len(data)
        if self._header_bytes > MAX_HEADER_BYTES:
            raise BadUpload(f"The part headers are longer than {MAX_HEADER_BYTES:,} bytes.")

    def on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise BadUpload(f"An evidence upload has at most {MAX_PARTS} parts.")
        self._headers, self._name, self._is_file, self._value = {}, None, False, bytearray()
        self._header_bytes = 0

    def on_header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field, self._header_value = b"", b""

    def on_headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if disposition != b"form-data" or b"name" not in options:
            raise BadUpload("Every part needs 'Content-Disposition: form-data; name=...'.")
        self._name = options[b"name"].decode("utf-8", "replace")
        if b"filename" in options:
            if self._name != "file" or self.result.upload is not None:
                raise BadUpload("Send exactly one file, in the form field 'file'.")
            self._is_file = True
            self.result.filename = options[b"filename"].decode("utf-8", "replace")
            self.result.upload = self.storage.new_upload()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._is_file:
            if self.file_bytes + len(chunk) > self.max_bytes:
                raise PayloadTooLarge(
                    f"The file is larger than the limit of {self.max_bytes:,} bytes.",
                    limit=self.max_bytes,
                )
            self.file_bytes += len(chunk)
            self.hasher.update(chunk)
            self.pending.append(chunk)
        else:
            self._value += chunk
            if len(self._value) > MAX_FIELD_BYTES:
                raise BadUpload(f"Form field {self._name!r} is too long.")

    def on_part_end(self) -> None:
        if self._is_file:
            self.result.sha256 = self.hasher.hexdigest()
        elif self._name is not None:
            text = self._value.decode("utf-8", "replace")
            reason = unstorable(text) or unstorable(self._name)
            if reason:
                name = self._name.encode("unicode_escape").decode("ascii")
                raise invalid("body", f"/{name}", reason, f"form field {name!r} {reason}")
            self.result.fields.setdefault(self._name, []).append(text)

    def on_end(self) -> None:
        self.ended = True

    async def flush(self) -> None:
        """Write the file bytes parsed so far to storage."""
        if self.pending:
            assert self.result.upload is not None
            data = b"".join(self.pending)
            self.pending.clear()
            await self.result.upload.write(data)


async def receive(request: Request, storage: Storage, max_bytes: int) -> ReceivedUpload:
    """Parse the request's multipart body, streaming its file into ``storage``. Parsing runs in
    a worker thread and storage writes never block the event loop (the local backend writes
    and fsyncs in worker threads, the S3 backend is asyncio)."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in options:
        raise UnsupportedMediaType("Upload evidence as multipart/form-data with a 'file' field.")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + MULTIPART_OVERHEAD:
        raise PayloadTooLarge(
            f"The upload is larger than the limit of {max_bytes:,} bytes.", limit=max_bytes
        )
    receiver = _Receiver(storage, max_bytes)
    parser = MultipartParser(options[b"boundary"], receiver.callbacks())  # type: ignore[arg-type]
    try:
        try:
            async for chunk in request.stream():
                await asyncio.to_thread(parser.write, chunk)
                await receiver.flush()
            parser.finalize()
            if not receiver.ended:
                raise BadUpload("The multipart body is truncated (no closing boundary).")
            if receiver.result.upload is not None:
                await receiver.flush()
                await receiver.result.upload.finish()
        except ClientDisconnect:
            raise BadUpload("The client disconnected before the upload finished.") from None
        except (ProblemError, ProblemHTTPException):  # ours, the edge's limits, the store's
            raise
        except Exception as exc:  # the parser's own errors: malformed multipart
            raise BadUpload(f"The multipart body is malformed ({exc}).") from None
    except BaseException:  # cancellation too: nothing of the upload stays behind
        await receiver.result.discard()
        raise
    return receiver.result
