"""Bearer tokens that are not to be trusted, each refused with 401 and RFC 6750's invalid_token,
and the issuer's key rotation, against a real OpenID Provider (tests/oidc)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from services.kit.oidc import TokenVerifier
from services.kit.settings import OidcIssuer, Settings
from tests.oidc.harness import Provider, new_key, start_provider

ClientFor = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
async def client(
    client_for: ClientFor, oidc_provider: Provider
) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(oidc_issuers=(oidc_provider.settings(),)) as c:
        yield c


def verifier_of(client: httpx.AsyncClient) -> TokenVerifier:
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    verifier: TokenVerifier = transport.app.state.token_verifier  # type: ignore[attr-defined]
    return verifier


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    encode = lambda part: _b64(json.dumps(part).encode())  # noqa: E731
    return f"{encode(header)}.{encode(payload)}.{_b64(signature)}"


async def me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})


def assert_invalid(answer: httpx.Response, says: str) -> None:
    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert answer.json()["code"] == "invalid-token"
    assert says in answer.json()["detail"]


async def test_a_token_made_by_hand_with_the_providers_key_is_accepted(
    client: httpx.AsyncClient, oidc_provider: Provider
) -> None:
    """The control for the refusals below: the same making, with nothing wrong, passes."""
    answer = await me(client, oidc_provider.sign({}))
    assert answer.status_code == 200, answer.text
    assert answer.json()["sub"] == "f:3271:siti.rahma"


async def test_an_expired_token_is_refused(
    client: httpx.AsyncClient, oidc_provider: Provider
) -> None:
    now = int(time.time())
    assert_invalid(await me(client, oidc_provider.sign({"exp": now - 120})), "expired")
    # Within the leeway (30 s by default) a clock a little behind is forgiven.
    assert (await me(client, oidc_provider.sign({"exp": now - 5}))).status_code == 200


async def test_a_token_not_valid_yet_is_refused(
    client: httpx.AsyncClient, oidc_provider: Provider
) -> None:
    token = oidc_provider.sign({"nbf": int(time.time()) + 600})
    assert_invalid(await me(client, token), "not valid yet")


async def test_a_token_for_another_audience_is_refused(
    client: httpx.AsyncClient, oidc_provider: Provider
) -> None:
    token = oidc_provider.sign({"aud": "account"})
    assert_invalid(await me(client, token), "not for this API")


async def test_a_token_of_an_untrusted_issuer_is_refused(
    client: httpx.AsyncClient, oidc_provider: Provider
) -> None:
    token = oidc_provider.sign({"iss": "https://sso.example.go.id/realms/lain"})
    assert_invalid(await me(client, token), "is not trusted")


async def test_a_token_without_a_subject_is_refused(
    client: httpx.AsyncClient, oidc_provider: Provider
) -> None:
    assert_invalid(await me(client, oidc_provider.sign({"sub": None})), "sub")


async def test_a_token_signed_by_an_unknown_key_is_refused(
    client: httpx.AsyncClient, oidc_provider: Provider
) -> None:
    stranger, private = new_key("k-stranger")
    token = jwt.encode(
        {
            "iss": oidc_provider.issuer,
            "aud": "cerdas-test",
            "sub": "f:3271:siti.rahma",
            "exp": int(time.time()) + 300,
            "realm_access": {"roles": ["cerdas-admin"]},
        },
        private,
        algorithm="RS256",
        headers={"kid": stranger["kid"]},
    )
    assert_invalid(await me(client, token), "no key 'k-stranger'")


async def test_a_token_with_a_known_kid_but_another_keys_signature_is_refused(
    client: httpx.AsyncClient, oidc_provider: Provider
) -> None:
    _, private = new_key("k1")
    token = jwt.encode(
        {"iss": oidc_provider.issuer, "aud": "cerdas-test", "sub": "x", "exp": time.time() + 300},
        private,
        algorithm="RS256",
        headers={"kid": oidc_provider.keys[0]["kid"]},
    )
    assert_invalid(await me(client, token), "Signature verification failed")


async def test_an_unsigned_token_alg_none_is_refused(
    client: httpx.AsyncClient, oidc_provider: Provider
) -> None:
    payload = {
        "iss": oidc_provider.issuer,
        "aud": "cerdas-test",
        "sub": "f:pusat:dewi.lestari",
        "exp": int(time.time()) + 300,
        "realm_access": {"roles": ["cerdas-admin"]},
    }
    for alg in ("none", "None", "NONE"):
        token = unsigned({"alg": alg, "typ": "JWT", "kid": "k1"}, payload)
        assert_invalid(await me(client, token), f"the algorithm {alg!r} is not accepted")


async def test_an_hs256_token_keyed_with_the_providers_public_key_is_refused(
    client: httpx.AsyncClient, oidc_provider: Provider
) -> None:
    """The classic confusion: HMAC "signed" with the public key anyone can download."""
    public_pem = (
        oidc_provider.private["k1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": "k1"}
    payload = {
        "iss": oidc_provider.issuer,
        "aud": "cerdas-test",
        "sub": "f:pusat:dewi.lestari",
        "exp": int(time.time()) + 300,
        "realm_access": {"roles": ["cerdas-admin"]},
    }
    signing_input = unsigned(header, payload).rsplit(".", 1)[0]
    for secret in (public_pem, json.dumps(oidc_provider.keys[0]).encode()):
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        token = f"{signing_input}.{_b64(signature)}"
        assert_invalid(await me(client, token), "the algorithm 'HS256' is not accepted")


@pytest.mark.parametrize("token", ["a.b.c", "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln", ".."])
async def test_a_malformed_jwt_is_refused(client: httpx.AsyncClient, token: str) -> None:
    assert_invalid(await me(client, token), "not a well-formed JWT")


def test_settings_refuse_none_and_hmac_algorithms_for_an_issuer() -> None:
    for algorithms in (["none"], ["HS256"], ["RS256", "HS512"], []):
        with pytest.raises(ValueError, match="algorithms must be public-key ones"):
            OidcIssuer(
                issuer="https://sso.example.go.id/realms/spbe",
                audience="cerdas",
                algorithms=algorithms,
                role_map={"asesor": "assessor"},
            )
    with pytest.raises(ValueError, match="https"):
        OidcIssuer(issuer="http://sso.example.go.id", audience="c", role_map={"a": "assessor"})


def test_issuers_and_origins_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    issuers = [
        {
            "issuer": "https://sso.example.go.id/realms/spbe",
            "audience": "cerdas",
            "role_map": {"cerdas-asesor": "assessor", "cerdas-admin": "ministry-admin"},
            "regions_claim": "kode_wilayah",
        }
    ]
    monkeypatch.setenv("CERDAS_OIDC_ISSUERS", json.dumps(issuers))
    monkeypatch.setenv("CERDAS_CORS_ORIGINS", "https://dasbor.example.go.id, http://localhost:5173")
    settings = Settings()
    (issuer,) = settings.oidc_issuers
    assert issuer.regions_claim == "kode_wilayah"
    assert list(issuer.role_map) == ["cerdas-asesor", "cerdas-admin"]
    assert settings.cors_origins == ("https://dasbor.example.go.id", "http://localhost:5173")


# Key rotation, on a provider of its own (it is restarted).


@pytest.fixture
def rotating(tmp_path: Path) -> Iterator[Provider]:
    provider = start_provider(tmp_path)
    try:
        yield provider
    finally:
        provider.stop()


async def test_a_rotated_signing_key_is_fetched_once_and_old_tokens_still_verify(
    client_for: ClientFor, rotating: Provider
) -> None:
    async with client_for(
        oidc_issuers=(rotating.settings(),), oidc_jwks_cooldown_seconds=0
    ) as client:
        verifier = verifier_of(client)
        before = await rotating.token("siti")
        assert (await me(client, before)).status_code == 200
        assert (await me(client, await rotating.token("siti"))).status_code == 200
        assert verifier.jwks_fetches == 1  # cached

        # The provider starts signing with k2 and keeps publishing k1 for tokens in flight.
        second, private = new_key("k2")
        rotating.private["k2"] = private
        rotating.rotate([second, *rotating.keys])
        after = await rotating.token("siti")
        assert jwt.get_unverified_header(after)["kid"] == "k2"
        assert (await me(client, after)).status_code == 200
        assert verifier.jwks_fetches == 2  # the unknown kid refetched the set
        assert (await me(client, before)).status_code == 200
        assert (await me(client, after)).status_code == 200
        assert verifier.jwks_fetches == 2


async def test_unknown_kids_refetch_the_key_set_at_most_once_per_cool_down(
    client_for: ClientFor, rotating: Provider
) -> None:
    async with client_for(
        oidc_issuers=(rotating.settings(),), oidc_jwks_cooldown_seconds=3600
    ) as client:
        verifier = verifier_of(client)
        assert (await me(client, await rotating.token("siti"))).status_code == 200
        assert verifier.jwks_fetches == 1
        stranger, private = new_key("k-forged")
        rotating.private["k-forged"] = private
        for _ in range(5):
            assert_invalid(await me(client, rotating.sign({}, kid="k-forged")), "no key")
        assert verifier.jwks_fetches == 1  # within the cool-down: no refetch

        # A real rotation within the cool-down is picked up once the cool-down has passed.
        rotating.rotate([stranger, *rotating.keys])
        assert_invalid(await me(client, rotating.sign({}, kid="k-forged")), "no key")
        verifier.cooldown_seconds = 0
        assert (await me(client, rotating.sign({}, kid="k-forged"))).status_code == 200
        assert verifier.jwks_fetches == 2


async def test_a_provider_that_cannot_be_reached_is_401_not_500(client_for: ClientFor) -> None:
    gone = OidcIssuer(
        issuer="http://127.0.0.1:9",
        audience="cerdas-test",
        role_map={"cerdas-admin": "ministry-admin"},
    )
    async with client_for(oidc_issuers=(gone,)) as client:
        token = unsigned({"alg": "RS256", "kid": "k1"}, {"iss": gone.issuer, "sub": "x"}, b"sig")
        assert_invalid(await me(client, token), "no key 'k1'")
