"""Bearer JWTs from one OIDC issuer, verified against the issuer's JSON Web Key Set (JWKS).

PyJWT (with `cryptography`) parses tokens and checks signatures; this module decides which
key, which algorithms and which claims. `JwksCache` holds the issuer's keys: fetched at start
(or at first use when the issuer was down then), fetched again in the background once older
than `jwt_jwks_cache_seconds`, and at once when a token names a key id (kid) it does not
hold, at most once per `jwt_jwks_refresh_seconds` so that made-up kids cannot hammer the
issuer. A failed fetch keeps the keys it had. A token that passed is remembered until its exp
or until the key set changes, so a client's next requests skip the signature.
`JwtVerifier.verify` raises `UnauthorizedError` (401) for a token that is not valid, with a
reason that says why, and `ForbiddenError` (403) for a valid token without a required claim.
No message ever holds the token.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from modelfleet.server.errors import ForbiddenError, UnauthorizedError
from modelfleet.server.settings import ServerSettings

log = logging.getLogger(__name__)

Jwk = dict[str, Any]
FetchKeys = Callable[[], dict[str, Jwk]]

_MAX_JWKS_BYTES = 1 << 20
_FETCH_TIMEOUT_S = 5.0
_MAX_PARSED_KEYS = 64
# Tokens that passed, kept until their exp or a change of keys: a client sends the same token
# for many requests, and a token not seen before adds ~250 us to a request, a seen one ~1 us
# (make bench-server-auth; a one-row predict ~100 us)
_MAX_ACCEPTED = 4096
_NO_KID = ""  # where a key published without a kid is kept
# OAuth 2.0 access tokens carry their scopes as one space-separated string (RFC 9068 2.2.3)
_SPACE_SEPARATED_CLAIMS = frozenset({"scope", "scp"})


class JwksUnavailableError(Exception):
    """The key set could not be fetched or read."""


def fetch_jwks(uri: str, timeout_s: float = _FETCH_TIMEOUT_S) -> dict[str, Jwk]:
    """The signing keys of the JWKS at `uri` by kid (a key without one under "")."""
    try:
        response = httpx.get(uri, timeout=timeout_s, headers={"accept": "application/json"})
    except httpx.HTTPError as error:
        raise JwksUnavailableError(f"GET {uri}: {type(error).__name__}: {error}") from error
    if response.status_code != 200:
        raise JwksUnavailableError(f"GET {uri} answered {response.status_code}")
    if len(response.content) > _MAX_JWKS_BYTES:
        raise JwksUnavailableError(f"GET {uri}: the key set is larger than 1 MiB")
    try:
        document = response.json()
    except ValueError as error:
        raise JwksUnavailableError(f"GET {uri}: not JSON") from error
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise JwksUnavailableError(f"GET {uri}: no `keys` list")
    signing: dict[str, Jwk] = {}
    for key in keys:
        if isinstance(key, dict) and key.get("use", "sig") == "sig":
            signing.setdefault(str(key.get("kid", _NO_KID)), key)
    return signing


class JwksCache:
    """The issuer's keys by kid, and when to fetch them again (see the module docstring)."""

    def __init__(
        self,
        fetch: FetchKeys,
        max_age_s: float,
        refresh_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._max_age_s = max_age_s
        self._refresh_interval_s = refresh_interval_s
        self._clock = clock
        self._keys: dict[str, Jwk] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        self._background: asyncio.Task[None] | None = None
        self.fetches = 0
        self.generation = 0  # counts changes of the key set: what was verified before is stale

    @property
    def loaded(self) -> bool:
        return self._fetched_at is not None

    def prefetch(self) -> None:
        """Fetch now, blocking (at start); a failure is logged and left to the first use."""
        self._attempted_at = self._clock()
        self._store(self._attempt())

    async def key_for(self, kid: str) -> Jwk | None:
        """The key named `kid` (or the only key when a token names none), fetching if due."""
        self.refresh_if_old()
        key = self._lookup(kid)
        if key is None and self._may_fetch():
            await self._refresh(self._attempted_at)
            key = self._lookup(kid)
        return key

    def _lookup(self, kid: str) -> Jwk | None:
        if kid == _NO_KID and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    def _may_fetch(self) -> bool:
        attempted = self._attempted_at
        return attempted is None or self._clock() - attempted >= self._refresh_interval_s

    def refresh_if_old(self) -> None:
        """Start a fetch in the background when the keys are older than the cache age."""
        fetched = self._fetched_at
        if fetched is None or self._clock() - fetched < self._max_age_s:
            return
        if (self._background is None or self._background.done()) and self._may_fetch():
            self._background = asyncio.create_task(self._refresh(self._attempted_at))

    async def _refresh(self, seen_attempt: float | None) -> None:
        async with self._lock:
            if self._attempted_at != seen_attempt:
                return  # another request fetched while this one waited: use its answer
            self._attempted_at = self._clock()
            self._store(await asyncio.to_thread(self._attempt))

    def _attempt(self) -> dict[str, Jwk] | None:
        self.fetches += 1
        try:
            return self._fetch()
        except JwksUnavailableError as error:
            log.warning("cannot fetch the issuer's keys; keeping the last ones: %s", error)
            return None

    def _store(self, keys: dict[str, Jwk] | None) -> None:
        if keys is not None:
            if keys != self._keys:
                self.generation += 1
            self._keys, self._fetched_at = keys, self._clock()


@dataclass(frozen=True)
class _Accepted:
    """A token that passed every rule, and what would make it stale: its exp, new keys."""

    claims: dict[str, Any]
    generation: int
    expires: float

    def holds(self, generation: int, leeway_s: float) -> bool:
        return generation == self.generation and time.time() < self.expires + leeway_s


def _claim_holds(claim: Any, name: str, required: str) -> bool:
    if isinstance(claim, list):
        return any(_as_text(item) == required for item in claim)
    if name in _SPACE_SEPARATED_CLAIMS and isinstance(claim, str):
        return required in claim.split()
    return _as_text(claim) == required


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _printable(value: Any, limit: int = 64) -> str:
    """A token header's value, safe to quote in a message (it is the client's input)."""
    text = str(value)
    return "".join(c if c.isalnum() or c in "-_.:" else "?" for c in text[:limit])


# PyJWT's exceptions, most specific first, as (reason for the metrics, what the client is told)
_REFUSALS: tuple[tuple[type[jwt.PyJWTError], str, str], ...] = (
    (jwt.ExpiredSignatureError, "expired", "the token has expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid", "the token is not valid yet (nbf or iat ahead)"),
    (jwt.InvalidSignatureError, "bad_signature", "the token's signature does not verify"),
    (jwt.InvalidAlgorithmError, "algorithm", "the token's algorithm does not match its key"),
    (jwt.InvalidKeyError, "unknown_key", "the issuer's key for this token cannot be used"),
)


class JwtVerifier:
    """The rules one token must pass: signature by a key of the issuer, iss, aud, exp/nbf/iat
    within the leeway, and the required claims."""

    def __init__(
        self,
        issuer: str,
        audiences: Sequence[str],
        keys: JwksCache,
        *,
        algorithms: Sequence[str] = ("RS256", "ES256"),
        required_claims: Mapping[str, str] | None = None,
        leeway_s: float = 30.0,
    ) -> None:
        self.issuer = issuer
        self.audiences = list(audiences)
        self.keys = keys
        self.algorithms = tuple(algorithms)
        self.required_claims = dict(required_claims or {})
        self.leeway_s = leeway_s
        self._parsed: dict[tuple[str, str], tuple[Jwk, jwt.PyJWK]] = {}
        self._accepted: dict[bytes, _Accepted] = {}

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> JwtVerifier:
        uri = settings.jwt_jwks_uri
        keys = JwksCache(
            lambda: fetch_jwks(uri),
            settings.jwt_jwks_cache_seconds,
            settings.jwt_jwks_refresh_seconds,
        )
        return cls(
            settings.jwt_issuer,
            settings.jwt_audiences,
            keys,
            algorithms=settings.jwt_algorithms,
            required_claims=settings.jwt_required_claims,
            leeway_s=settings.jwt_leeway_seconds,
        )

    async def verify(self, token: bytes) -> dict[str, Any]:
        """The token's claims; UnauthorizedError or ForbiddenError saying why not."""
        accepted = self._accepted.get(token)
        if accepted is not None and accepted.holds(self.keys.generation, self.leeway_s):
            self.keys.refresh_if_old()
            return accepted.claims
        claims = await self._verify(token)
        if len(self._accepted) >= _MAX_ACCEPTED:
            self._accepted.clear()
        self._accepted[token] = _Accepted(claims, self.keys.generation, float(claims["exp"]))
        return claims

    async def _verify(self, token: bytes) -> dict[str, Any]:
        key = await self._key(token)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=self.algorithms,
                audience=self.audiences,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.InvalidAudienceError as error:
            accepted = ", ".join(self.audiences)
            message = f"the token's audience is not one of: {accepted}"
            raise UnauthorizedError(message, "wrong_audience") from error
        except jwt.InvalidIssuerError as error:
            message = f"the token's issuer is not {self.issuer}"
            raise UnauthorizedError(message, "wrong_issuer") from error
        except jwt.MissingRequiredClaimError as error:
            message = f"the token has no {_printable(error.claim)} claim"
            raise UnauthorizedError(message, "malformed") from error
        except jwt.PyJWTError as error:
            raise _refusal(error) from error
        self._check_required(claims)
        return claims

    async def _key(self, token: bytes) -> jwt.PyJWK:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise UnauthorizedError("the token is not a well-formed JWT", "malformed") from error
        algorithm = header.get("alg")
        if algorithm not in self.algorithms:
            accepted = ", ".join(self.algorithms)
            message = f"the token is signed with {_printable(algorithm)}, not one of {accepted}"
            raise UnauthorizedError(message, "algorithm")
        kid = header.get("kid", _NO_KID)
        kid = kid if isinstance(kid, str) else _NO_KID
        jwk = await self.keys.key_for(kid)
        if jwk is None:
            if not self.keys.loaded:
                message = "the issuer's signing keys could not be fetched; try again later"
                raise UnauthorizedError(message, "jwks_unavailable")
            if kid == _NO_KID:
                message = "the token names no signing key (kid) and the issuer has several"
            else:
                message = f"the token's signing key (kid {_printable(kid)}) is not the issuer's"
            raise UnauthorizedError(message, "unknown_key")
        return self._parse(kid, jwk, algorithm)

    def _parse(self, kid: str, jwk: Jwk, algorithm: str) -> jwt.PyJWK:
        """The key as PyJWT's, bound to the JWK's own `alg`, else to the token's (cached)."""
        bound = str(jwk.get("alg") or algorithm)
        cached = self._parsed.get((kid, bound))
        if cached is not None and cached[0] is jwk:
            return cached[1]
        try:
            parsed = jwt.PyJWK(jwk, bound)
        except jwt.PyJWTError as error:
            message = f"the issuer's key {_printable(kid)} cannot verify {algorithm}"
            raise UnauthorizedError(message, "unknown_key") from error
        if len(self._parsed) >= _MAX_PARSED_KEYS:  # keys rotated away since
            self._parsed.clear()
        self._parsed[(kid, bound)] = (jwk, parsed)
        return parsed

    def _check_required(self, claims: Mapping[str, Any]) -> None:
        for name, required in self.required_claims.items():
            if name not in claims:
                raise ForbiddenError(f"the token lacks the {name} claim", "insufficient_claims")
            if not _claim_holds(claims[name], name, required):
                message = f"the token's {name} claim does not hold the required value"
                raise ForbiddenError(message, "insufficient_claims")


def _refusal(error: jwt.PyJWTError) -> UnauthorizedError:
    for kind, reason, message in _REFUSALS:
        if isinstance(error, kind):
            return UnauthorizedError(message, reason)
    return UnauthorizedError("the token is not a well-formed JWT", "malformed")
