"""Who is calling, and the request they are calling in: what every domain service is given."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from services.models import Role


@dataclass(frozen=True, slots=True)
class PersonIdentity:
    """A person signed in with an OpenID Connect token: their row in ``person``, the issuer
    and subject identifier (``sub``) that name them, and their NIP when the token carries it."""

    id: uuid.UUID
    issuer: str
    subject: str
    nip: str | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an API key (its id, name, role and the regions it is bound to) or a
    person (``person``; role and regions from their token's claims), or an operator's command
    (neither)."""

    key_id: uuid.UUID | None
    name: str
    role: Role
    regions: frozenset[str] = field(default_factory=frozenset)
    person: PersonIdentity | None = None

    @property
    def audit_id(self) -> str:
        """The caller as idempotency records and rate limits name it: the key id, the person
        (``person:<id>``), else the name."""
        if self.key_id:
            return str(self.key_id)
        if self.person:
            return f"person:{self.person.id}"
        return self.name


@dataclass(frozen=True, slots=True)
class Context:
    """A request as services see it: who calls, and the request id that audit rows carry."""

    principal: Principal
    request_id: str


@dataclass(frozen=True, slots=True)
class Visibility:
    """Which assessments a caller may read (services.domain.access.policy decides): all
    official ones, or the published ones plus those of ``regions`` and those assigned to a key
    (``assigned_to``) or a person (``assigned_person``); and the internal (OPD) assessments of
    the regions in ``internal`` only."""

    everything: bool = False
    regions: frozenset[str] = frozenset()
    assigned_to: uuid.UUID | None = None
    assigned_person: uuid.UUID | None = None
    internal: frozenset[str] = frozenset()


def operator_context(name: str, *, request_prefix: str = "cli") -> Context:
    """The context an operator's command is audited under (the CLI, the seed cases): national
    rights, no key, and a fresh request id ``<prefix>-<32 hex>`` that groups its rows."""
    principal = Principal(key_id=None, name=name, role=Role.MINISTRY_ADMIN)
    return Context(principal, f"{request_prefix}-{uuid.uuid4().hex}")
