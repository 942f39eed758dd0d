"""``Idempotency-Key`` for writes: a repeat returns the first response and stores nothing twice.

The key is scoped to the caller. Requests with the same key are serialised by an advisory lock,
so two concurrent retries cannot both run. The same key with a different request is refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Protocol

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.kit.edge import storable
from services.kit.errors import Unprocessable
from services.models import IdempotencyRecord


class Caller(Protocol):
    """Whoever holds a key: records are scoped to it."""

    @property
    def audit_id(self) -> str: ...


def request_fingerprint(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\x00")
    return digest.hexdigest()


async def replay(
    session: AsyncSession, principal: str, key: str, fingerprint: str
) -> tuple[int, dict[str, Any]] | None:
    """The stored response for this key, or None (after taking the key's lock)."""
    if not 1 <= len(key) <= 200 or not key.strip():
        raise Unprocessable(
            "header Idempotency-Key: must be 1 to 200 characters, not only spaces",
            errors=[{"in": "header", "pointer": "/Idempotency-Key", "detail": "bad length"}],
        )
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:lock, 0))"),
        {"lock": f"idempotency:{principal}:{key}"},
    )
    record = await session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.principal == principal, IdempotencyRecord.key == key
        )
    )
    if record is None:
        return None
    if record.request_hash != fingerprint:
        raise Unprocessable(
            f"Idempotency-Key {key!r} was already used with a different request.",
            code="idempotency-key-reused",
            errors=[
                {
                    "in": "header",
                    "pointer": "/Idempotency-Key",
                    "detail": "reused with a different body",
                }
            ],
        )
    return record.status_code, record.response


def remember(
    session: AsyncSession,
    principal: str,
    key: str,
    fingerprint: str,
    status_code: int,
    response: dict[str, Any],
) -> None:
    """Store the answer in the caller's transaction, so it commits (or not) with the data it
    describes; nothing the client sent can make it unstorable."""
    session.add(
        IdempotencyRecord(
            principal=principal,
            key=key,
            request_hash=fingerprint,
            status_code=status_code,
            response=storable(response),
        )
    )


async def replayed(
    session: AsyncSession,
    request: Request,
    principal: Caller,
    *,
    location: Callable[[Any], str] | None = None,
) -> JSONResponse | None:
    """For a JSON write sent with ``Idempotency-Key``: the first answer if this key has been
    used for this very request, else None (and the key is held, for :func:`remember_answer`).

    The fingerprint is the method, path, query and body, so the same key on another request
    is refused (422). ``location`` gives a replayed 201 or 202 its ``Location`` again, from
    the stored answer.
    """
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    fingerprint = request_fingerprint(
        request.method, request.url.path, request.url.query, await request.body()
    )
    found = await replay(session, principal.audit_id, key, fingerprint)
    if found is not None:
        status, body = found
        headers = {"Idempotent-Replayed": "true"}
        if location is not None and status in (201, 202):
            headers["Location"] = location(body)
        return JSONResponse(body, status_code=status, headers=headers)
    request.state.idempotency = (key, fingerprint)
    return None


def remember_answer(
    session: AsyncSession, request: Request, principal: Caller, status: int, answer: Any
) -> None:
    """Store the answer of a keyed write in the write's own transaction (see :func:`replayed`)."""
    held: tuple[str, str] | None = getattr(request.state, "idempotency", None)
    if held is not None:
        key, fingerprint = held
        remember(session, principal.audit_id, key, fingerprint, status, jsonable_encoder(answer))
