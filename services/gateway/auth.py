"""StepBlend's JWTs (SPEC.md §2): issuing and verifying.

Signed HS256 with STEPBLEND_JWT_SECRET, or RS256 with STEPBLEND_JWT_PRIVATE_KEY /
STEPBLEND_JWT_PUBLIC_KEY (PEM files). Every token names its key in the `kid`
header; STEPBLEND_JWT_PREVIOUS_SECRET / STEPBLEND_JWT_PREVIOUS_PUBLIC_KEY keep a
rotated-out key verifying until its tokens expire. A key only verifies with its
own algorithm, so `alg: none` and HS/RS confusion (an RSA public key used as an
HMAC secret) fail. Claims: `sub`, `iat`, `exp`, `iss`, and `aud` when configured.

An application's API key (`sb-…`, SPEC.md §7) is presented the same way; the
verifier hands it to its key loader (apikeys.py), which asks billing by the key's
keyed hash. Either way the caller is a `Caller`: the account, and for a key what
the key may do (`Grant`).

Verification runs on every request, so verified credentials are cached (bounded,
in the shared `TtlCache`) for a while, never past their expiry; a credential not
seen before is always fully checked, and an account change (a revoked key is one)
forgets them all.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from services.common.cache import TtlCache
from services.common.config import Settings

from .errors import unauthenticated

LEEWAY_S = 30  # tolerated clock skew between the issuer and this gateway
MAX_TOKEN_BYTES = 8192
VERIFIED_TTL_S = 600.0  # how long a verified token is trusted before it is checked again
API_KEY_PREFIX = "sb-"


@dataclass(frozen=True)
class Grant:
    """What an API key may do beyond its account's rights: only inference and
    `GET /account`, only these models (empty: any)."""

    key_id: str
    allowed_models: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Caller:
    """Who is calling: the account, and the API key when it is not the account's JWT."""

    account_id: str
    grant: Grant | None = None


#: An API key → its caller and until when that may be trusted (Unix seconds); raises
#: an `ApiError` (401) for an unknown, revoked or expired key.
KeyLoader = Callable[[str], Awaitable[tuple[Caller, float]]]


@dataclass(frozen=True)
class Key:
    kid: str
    algorithm: str  # HS256 or RS256
    verify_with: Any
    sign_with: Any = None


def _hs_key(secret: str) -> Key:
    return Key("hs-" + hashlib.sha256(secret.encode()).hexdigest()[:16], "HS256", secret, secret)


def _rs_key(public_pem: bytes, private_pem: bytes | None = None) -> Key:
    # Here, not at the top: a gateway with no RS256 key never loads cryptography (stepblend/serve.py).
    from cryptography.hazmat.primitives import serialization

    private = serialization.load_pem_private_key(private_pem, password=None) if private_pem else None
    public = serialization.load_pem_public_key(public_pem) if public_pem else private.public_key()  # type: ignore[union-attr]
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return Key("rs-" + hashlib.sha256(der).hexdigest()[:16], "RS256", public, private)


def _read(path: str) -> bytes:
    return Path(path).read_bytes() if path else b""


class Keyring:
    """The signing key and every key that may verify a token, by kid."""

    def __init__(
        self, current: Key, previous: list[Key], issuer: str, audience: str = "", lifetime_s: int = 30 * 24 * 3600
    ) -> None:
        self.current = current
        self.keys = {k.kid: k for k in [current, *previous]}
        self.issuer = issuer
        self.audience = audience
        self.lifetime_s = lifetime_s

    @classmethod
    def from_settings(cls, settings: Settings) -> Keyring:
        if settings.jwt_private_key_file or settings.jwt_public_key_file:
            current = _rs_key(_read(settings.jwt_public_key_file), _read(settings.jwt_private_key_file) or None)
        elif settings.jwt_secret:
            current = _hs_key(settings.jwt_secret)
        else:
            raise ValueError("set STEPBLEND_JWT_SECRET, or STEPBLEND_JWT_PRIVATE_KEY / STEPBLEND_JWT_PUBLIC_KEY")
        previous = []
        if settings.jwt_previous_secret:
            previous.append(_hs_key(settings.jwt_previous_secret))
        if settings.jwt_previous_public_key_file:
            previous.append(_rs_key(_read(settings.jwt_previous_public_key_file)))
        return cls(current, previous, settings.jwt_issuer, settings.jwt_audience, settings.jwt_lifetime_s)

    def issue(self, account_id: str, now: float | None = None) -> str:
        if self.current.sign_with is None:
            raise ValueError("this keyring can only verify: no private key configured")
        issued = int(time.time() if now is None else now)
        claims: dict[str, Any] = {"sub": account_id, "iat": issued, "exp": issued + self.lifetime_s, "iss": self.issuer}
        if self.audience:
            claims["aud"] = self.audience
        return jwt.encode(
            claims, self.current.sign_with, algorithm=self.current.algorithm, headers={"kid": self.current.kid}
        )

    def decode(self, token: str) -> dict[str, Any]:
        """The verified claims; raises jwt.PyJWTError for any fault."""
        header = jwt.get_unverified_header(token)
        kid = header.get("kid")
        key = self.keys.get(kid) if isinstance(kid, str) else self.current
        if key is None:
            raise jwt.InvalidTokenError("unknown signing key")
        claims: dict[str, Any] = jwt.decode(
            token,
            key.verify_with,
            algorithms=[key.algorithm],
            issuer=self.issuer,
            audience=self.audience or None,
            leeway=LEEWAY_S,
            options={"require": ["sub", "exp", "iat", "iss"], "verify_aud": bool(self.audience)},
        )
        return claims


def presented(authorization: str | None, api_key: str | None) -> str | None:
    """The credential a request presents: its `Authorization` header, else Anthropic's
    `x-api-key` header (the anthropic SDKs and Claude Code send that) as a bearer token."""
    if authorization:
        return authorization
    if api_key and api_key.strip():
        return "Bearer " + api_key.strip()
    return None


class Verifier:
    """`Authorization` header → `Caller`, with a bounded cache of verified credentials."""

    def __init__(self, keyring: Keyring, keys: KeyLoader | None = None, cache_size: int = 10_000) -> None:
        self._keyring = keyring
        self._keys = keys
        self._cache: TtlCache[str, tuple[Caller, float]] = TtlCache(self._load, VERIFIED_TTL_S, max_entries=cache_size)

    async def caller(self, authorization: str | None) -> Caller:
        if not authorization:
            raise unauthenticated("Missing bearer token: send your StepBlend JWT or API key as the API key.")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthenticated("Malformed Authorization header: expected 'Bearer <token>'.")
        caller, until = await self._cache.get(token)
        if until <= time.time():
            # Expired since it was verified: check it again (within the leeway a JWT still passes).
            self._cache.drop(token)
            caller, until = await self._cache.get(token)
        return caller

    async def account_id(self, authorization: str | None) -> str:
        return (await self.caller(authorization)).account_id

    async def _load(self, token: str) -> tuple[Caller, float]:
        if len(token) > MAX_TOKEN_BYTES:
            raise unauthenticated("Invalid token: too long.")
        if token.startswith(API_KEY_PREFIX):
            if self._keys is None:
                raise unauthenticated("API keys are not enabled on this StepBlend; send your JWT.")
            caller, until = await self._keys(token)
            return caller, min(until, time.time() + VERIFIED_TTL_S)
        return self._verify(token)

    def _verify(self, token: str) -> tuple[Caller, float]:
        try:
            claims = self._keyring.decode(token)
        except jwt.ExpiredSignatureError as exc:
            raise unauthenticated("Token expired.") from exc
        except jwt.PyJWTError as exc:
            raise unauthenticated(f"Invalid token: {exc}.") from exc
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise unauthenticated("Invalid token: no subject.")
        return Caller(sub), float(claims["exp"])

    def clear(self) -> None:
        """Drop every cached verification (an account was disabled or changed, a key revoked)."""
        self._cache.clear()
