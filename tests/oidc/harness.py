"""A real OpenID Provider for the tests: panva's ``oidc-provider`` (npm) on the machine's Node,
started on a free port on 127.0.0.1 (provider.mjs, dependencies pinned by package-lock.json and
installed by ``make venv`` with ``npm ci``).

Each person is a client of the provider: its client_credentials grant gives a JWT access token
whose claims (sub, name, NIP, Keycloak-style ``realm_access.roles``, Kemendagri region codes) are
the person's. The test holds the provider's private keys, so it can also make tokens by hand for
the edge cases, and rotate the provider's keys by restarting it with a new set.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services.kit.settings import OidcIssuer
from services.models import Role

FOLDER = Path(__file__).parent
AUDIENCE = "cerdas-test"
ROLE_MAP = {
    "cerdas-admin": Role.MINISTRY_ADMIN,
    "cerdas-assessor": Role.ASSESSOR,
    "cerdas-operator": Role.REGION_OPERATOR,
    "cerdas-superapp": Role.SUPER_APP,
}

# The people who sign in at the test provider: client id → the claims of their tokens.
PEOPLE: dict[str, dict[str, Any]] = {
    "siti": {
        "sub": "f:3271:siti.rahma",
        "name": "Siti Rahma",
        "nip": "198701012010012001",
        "realm_access": {"roles": ["offline_access", "cerdas-assessor"]},
    },
    "budi": {
        "sub": "f:3271:budi.santoso",
        "name": "Budi Santoso",
        "realm_access": {"roles": ["cerdas-operator"]},
        "kemendagri_codes": ["32.71"],
    },
    "dewi": {
        "sub": "f:pusat:dewi.lestari",
        "name": "Dewi Lestari",
        "nip": "197905152005022003",
        "realm_access": {"roles": ["cerdas-admin"]},
    },
    "tamu": {  # signed in, but given no Cerdas role
        "sub": "f:pusat:tamu",
        "name": "Tamu",
        "realm_access": {"roles": ["offline_access", "uma_authorization"]},
    },
    "rudi": {  # a region operator whose token names no region
        "sub": "f:3275:rudi",
        "name": "Rudi",
        "realm_access": {"roles": ["cerdas-operator"]},
    },
}


def new_key(kid: str) -> tuple[dict[str, Any], rsa.RSAPrivateKey]:
    """A fresh RS256 signing key: (its private JWK, the key)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private))
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}, private


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def require_node() -> str:
    """The node binary, with the provider's packages installed; a test FAILS (never skips)
    without them, saying what to install."""
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            "The OIDC tests run a real OpenID Provider on Node.js: install Node.js 20 or later "
            "(e.g. `apt-get install nodejs npm`), then `npm ci` in tests/oidc (`make venv` does)."
        )
    if not (FOLDER / "node_modules" / "oidc-provider").is_dir():
        pytest.fail(
            "The OIDC tests need the test provider's packages: run `npm ci` in tests/oidc "
            "(`make venv` does it when npm is present)."
        )
    return node


@dataclass
class Provider:
    """The running provider: its issuer URL, and its keys (the first one signs)."""

    workdir: Path
    keys: list[dict[str, Any]]
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None
    private: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings(self, **overrides: Any) -> OidcIssuer:
        """How Cerdas is told to trust this provider."""
        return OidcIssuer(
            issuer=self.issuer,
            audience=AUDIENCE,
            algorithms=("RS256",),
            role_map=ROLE_MAP,
            **overrides,
        )

    def start(self) -> None:
        node = require_node()
        config = self.workdir / "provider.json"
        config.write_text(
            json.dumps(
                {
                    "port": self.port,
                    "issuer": self.issuer,
                    "audience": AUDIENCE,
                    "keys": self.keys,
                    "clients": [
                        {
                            "client_id": name,
                            "client_secret": f"{name}-secret-{'x' * 32}",
                            "claims": claims,
                        }
                        for name, claims in PEOPLE.items()
                    ],
                }
            )
        )
        log = (self.workdir / "provider.log").open("ab")
        self.process = subprocess.Popen(
            [node, str(FOLDER / "provider.mjs"), str(config)],
            cwd=FOLDER,
            stdout=subprocess.PIPE,
            stderr=log,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()
        if not line.startswith("ready"):
            self.process.kill()
            pytest.fail(
                f"the test OpenID Provider did not start ({line!r}); "
                f"see {self.workdir}/provider.log"
            )

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def rotate(self, keys: list[dict[str, Any]]) -> None:
        """Restart the provider on the same port with a new key set (the first signs)."""
        self.stop()
        self.keys = keys
        self.start()

    async def token(self, person: str) -> str:
        """An access token for ``person`` from the provider's token endpoint."""
        async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
            answer = await client.post(
                f"{self.issuer}/token",
                data={"grant_type": "client_credentials"},
                auth=(person, f"{person}-secret-{'x' * 32}"),
            )
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["access_token"]
        return token

    def sign(self, claims: dict[str, Any], *, kid: str | None = None, **header: Any) -> str:
        """A token made by hand, signed RS256 with the provider's key ``kid`` (its first by
        default), with ``claims`` over sensible defaults (``None`` removes one)."""
        kid = kid or self.keys[0]["kid"]
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 300,
            **PEOPLE["siti"],
            **claims,
        }
        payload = {name: value for name, value in payload.items() if value is not None}
        return jwt.encode(
            payload, self.private[kid], algorithm="RS256", headers={"kid": kid, **header}
        )


def start_provider(workdir: Path) -> Provider:
    first, private = new_key("k1")
    provider = Provider(workdir, [first], private={"k1": private})
    provider.start()
    return provider
