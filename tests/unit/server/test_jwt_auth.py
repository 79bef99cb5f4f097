"""The JWT rules (server/jwt_auth.py) with keys the test generates and a fake issuer passed in:
signature, iss, aud, exp/nbf within the leeway, algorithms, required claims, and when the
issuer's key set is fetched (start, unknown kid at most once per interval, age)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from modelfleet.server.errors import AuthError, ForbiddenError, UnauthorizedError
from modelfleet.server.jwt_auth import Jwk, JwksCache, JwksUnavailableError, JwtVerifier
from tests.jwt_issuer import AUDIENCE, ISSUER, SigningKey, claims


class FakeIssuer:
    """The issuer's key set as the cache's `fetch`: counts calls, can be down."""

    def __init__(self, *keys: SigningKey) -> None:
        self.keys = list(keys)
        self.fetches = 0
        self.down = False

    def __call__(self) -> dict[str, Jwk]:
        self.fetches += 1
        if self.down:
            raise JwksUnavailableError("GET /jwks answered 503")
        return {key.kid: key.jwk for key in self.keys}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    return SigningKey("RS256")


@pytest.fixture(scope="module")
def ec_key() -> SigningKey:
    return SigningKey("ES256")


def _verifier(
    issuer: FakeIssuer, clock: Clock | None = None, prefetch: bool = True, **options: Any
) -> JwtVerifier:
    cache = JwksCache(issuer, max_age_s=300, refresh_interval_s=10, clock=clock or Clock())
    if prefetch:
        cache.prefetch()
    return JwtVerifier(ISSUER, [AUDIENCE, "other-service"], cache, **options)


def _refused(verifier: JwtVerifier, token: str) -> AuthError:
    with pytest.raises(AuthError) as caught:
        asyncio.run(verifier.verify(token.encode()))
    return caught.value


def test_a_token_signed_by_the_issuer_passes_with_rs256_and_es256(
    rsa_key: SigningKey, ec_key: SigningKey
) -> None:
    verifier = _verifier(FakeIssuer(rsa_key, ec_key))
    for key in (rsa_key, ec_key):
        verified = asyncio.run(verifier.verify(key.sign(claims()).encode()))
        assert verified["sub"] == "team-payments"


def test_an_audience_list_passes_when_it_names_one_accepted_audience(rsa_key: SigningKey) -> None:
    verifier = _verifier(FakeIssuer(rsa_key))
    token = rsa_key.sign(claims(aud=["someone-else", "other-service"]))
    assert asyncio.run(verifier.verify(token.encode()))["aud"][1] == "other-service"


@pytest.mark.parametrize(
    ("changes", "reason", "said"),
    [
        ({"exp": -40}, "expired", "the token has expired"),
        ({"nbf": 60}, "not_yet_valid", "not valid yet"),
        ({"iat": 60}, "not_yet_valid", "not valid yet"),
        ({"aud": "billing"}, "wrong_audience", "audience is not one of: modelfleet-fraud"),
        ({"iss": "https://evil.test"}, "wrong_issuer", "issuer is not https://issuer.test"),
        ({"exp": None}, "malformed", "the token has no exp claim"),
        ({"aud": None}, "malformed", "the token has no aud claim"),
    ],
)
def test_claims_out_of_line_are_401_saying_why(
    rsa_key: SigningKey, changes: dict[str, Any], reason: str, said: str
) -> None:
    now = int(time.time())
    token_claims = claims()
    for name, value in changes.items():
        if value is None:
            del token_claims[name]
        else:
            token_claims[name] = now + value if name in {"exp", "nbf", "iat"} else value
    refused = _refused(_verifier(FakeIssuer(rsa_key)), rsa_key.sign(token_claims))
    assert isinstance(refused, UnauthorizedError)
    assert (refused.reason, refused.status_code) == (reason, 401)
    assert said in refused.message


def test_the_leeway_forgives_a_little_clock_skew(rsa_key: SigningKey) -> None:
    now = int(time.time())
    verifier = _verifier(FakeIssuer(rsa_key), leeway_s=30)
    skewed = claims(exp=now - 20, nbf=now + 20, iat=now + 20)
    assert asyncio.run(verifier.verify(rsa_key.sign(skewed).encode()))["sub"] == "team-payments"


def test_a_forged_signature_is_refused(rsa_key: SigningKey) -> None:
    forger = SigningKey("RS256", kid=rsa_key.kid)  # same kid, another private key
    refused = _refused(_verifier(FakeIssuer(rsa_key)), forger.sign(claims()))
    assert refused.reason == "bad_signature"
    assert refused.message == "the token's signature does not verify"


@pytest.mark.parametrize("token", ["not-a-token", "a.b.c", "signed-but-not-json"])
def test_a_token_that_is_not_a_jwt_is_malformed(rsa_key: SigningKey, token: str) -> None:
    if token == "signed-but-not-json":  # a good signature over a payload that is no claims set
        token = jwt.api_jws.encode(
            b"not json", rsa_key.private, algorithm="RS256", headers={"kid": rsa_key.kid}
        )
    refused = _refused(_verifier(FakeIssuer(rsa_key)), token)
    assert refused.reason == "malformed"
    assert refused.message == "the token is not a well-formed JWT"


def test_none_and_hmac_tokens_are_refused_before_any_key_is_used(rsa_key: SigningKey) -> None:
    unsigned = jwt.encode(claims(), "", algorithm="none", headers={"kid": rsa_key.kid})
    # the algorithm-confusion attack: an HMAC keyed with what the issuer publishes
    published = rsa_key.jwk["n"].encode()
    hmac_token = jwt.encode(claims(), published, algorithm="HS256", headers={"kid": rsa_key.kid})
    for token in (unsigned, hmac_token):
        refused = _refused(_verifier(FakeIssuer(rsa_key)), token)
        assert refused.reason == "algorithm"
        assert "not one of RS256, ES256" in refused.message


def test_a_token_whose_algorithm_differs_from_its_keys_is_refused(rsa_key: SigningKey) -> None:
    verifier = _verifier(FakeIssuer(rsa_key), algorithms=("RS256", "PS256"))
    token = jwt.encode(claims(), rsa_key.private, algorithm="PS256", headers={"kid": rsa_key.kid})
    refused = _refused(verifier, token)
    assert refused.reason == "algorithm"


@pytest.mark.parametrize(
    ("required", "extra", "passes"),
    [
        ({"tenant": "acme"}, {"tenant": "acme"}, True),
        ({"tenant": "acme"}, {"tenant": "acme-2"}, False),
        ({"tenant": "acme"}, {}, False),
        ({"groups": "ml-serving"}, {"groups": ["admins", "ml-serving"]}, True),
        ({"groups": "ml-serving"}, {"groups": ["admins"]}, False),
        ({"scope": "predict"}, {"scope": "openid predict profile"}, True),
        ({"scope": "predict"}, {"scope": "openid predictions"}, False),
        ({"email_verified": "true"}, {"email_verified": True}, True),
        ({"email_verified": "true"}, {"email_verified": False}, False),
    ],
)
def test_required_claims_exact_values_lists_contain_else_403(
    rsa_key: SigningKey, required: dict[str, str], extra: dict[str, Any], passes: bool
) -> None:
    verifier = _verifier(FakeIssuer(rsa_key), required_claims=required)
    token = rsa_key.sign(claims(**extra))
    if passes:
        assert asyncio.run(verifier.verify(token.encode()))["sub"] == "team-payments"
        return
    refused = _refused(verifier, token)
    assert isinstance(refused, ForbiddenError)
    assert (refused.status_code, refused.reason) == (403, "insufficient_claims")
    assert next(iter(required)) in refused.message
    assert next(iter(required.values())) not in refused.message.split()


def test_an_unknown_kid_fetches_once_then_not_again_within_the_interval(
    rsa_key: SigningKey,
) -> None:
    issuer, clock = FakeIssuer(rsa_key), Clock()
    verifier = _verifier(issuer, clock)
    assert issuer.fetches == 1  # at start

    async def flood() -> list[AuthError]:
        tokens = [rsa_key.sign(claims(), kid=f"made-up-{i}") for i in range(50)]
        results = await asyncio.gather(
            *(verifier.verify(token.encode()) for token in tokens), return_exceptions=True
        )
        return [r for r in results if isinstance(r, AuthError)]

    clock.now += 11
    refused = asyncio.run(flood())
    assert len(refused) == 50
    assert {r.reason for r in refused} == {"unknown_key"}
    assert "kid made-up-" in refused[0].message
    assert issuer.fetches == 2  # fifty unknown kids, one fetch
    clock.now += 5
    asyncio.run(flood())
    assert issuer.fetches == 2
    clock.now += 6
    asyncio.run(flood())
    assert issuer.fetches == 3


def test_a_rotated_key_passes_after_one_fetch_and_the_removed_one_fails(
    rsa_key: SigningKey,
) -> None:
    issuer, clock = FakeIssuer(rsa_key), Clock()
    verifier = _verifier(issuer, clock)
    new_key = SigningKey("ES256")
    issuer.keys = [new_key]
    clock.now += 10
    assert asyncio.run(verifier.verify(new_key.sign(claims()).encode()))["iss"] == ISSUER
    assert issuer.fetches == 2
    assert _refused(verifier, rsa_key.sign(claims())).reason == "unknown_key"
    assert issuer.fetches == 2  # the refresh just ran: the old kid does not fetch again


def test_keys_older_than_the_cache_age_are_fetched_in_the_background(
    rsa_key: SigningKey,
) -> None:
    issuer, clock = FakeIssuer(rsa_key), Clock()
    verifier = _verifier(issuer, clock)
    token = rsa_key.sign(claims()).encode()

    async def verify_after_removal() -> None:
        issuer.keys = [SigningKey("RS256")]
        clock.now += 301
        await verifier.verify(token)  # answered from the old keys while the fetch runs
        for _ in range(200):
            if issuer.fetches == 2 and verifier.keys.loaded:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        with pytest.raises(UnauthorizedError, match="not the issuer's"):
            await verifier.verify(token)

    asyncio.run(verify_after_removal())
    assert issuer.fetches == 2


def test_an_issuer_down_at_start_is_fetched_again_at_first_use(rsa_key: SigningKey) -> None:
    issuer, clock = FakeIssuer(rsa_key), Clock()
    issuer.down = True
    verifier = _verifier(issuer, clock)
    token = rsa_key.sign(claims())
    refused = _refused(verifier, token)
    assert refused.reason == "jwks_unavailable"
    assert issuer.fetches == 1  # within the interval of the start's attempt
    issuer.down = False
    clock.now += 10
    assert asyncio.run(verifier.verify(token.encode()))["iss"] == ISSUER
    assert issuer.fetches == 2


def test_a_failed_fetch_keeps_the_keys_it_had(rsa_key: SigningKey) -> None:
    issuer, clock = FakeIssuer(rsa_key), Clock()
    verifier = _verifier(issuer, clock)
    issuer.down = True
    clock.now += 20
    assert _refused(verifier, rsa_key.sign(claims(), kid="other")).reason == "unknown_key"
    assert issuer.fetches == 2
    assert asyncio.run(verifier.verify(rsa_key.sign(claims()).encode()))["iss"] == ISSUER


def test_a_token_without_kid_uses_the_only_key_or_is_refused(rsa_key: SigningKey) -> None:
    token = jwt.encode(claims(), rsa_key.private, algorithm="RS256")
    assert asyncio.run(_verifier(FakeIssuer(rsa_key)).verify(token.encode()))["iss"] == ISSUER
    refused = _refused(_verifier(FakeIssuer(rsa_key, SigningKey("ES256"))), token)
    assert refused.reason == "unknown_key"
    assert "names no signing key" in refused.message


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: UnauthorizedError("an API key is required", "missing"), "Bearer"),
        (
            lambda: UnauthorizedError('the token has "expired"', "expired"),
            'Bearer error="invalid_token", error_description="the token has \'expired\'"',
        ),
        (
            lambda: ForbiddenError("the token lacks the tenant claim", "insufficient_claims"),
            'Bearer error="insufficient_scope", '
            'error_description="the token lacks the tenant claim"',
        ),
    ],
)
def test_the_challenge_says_why_in_rfc_6750_form(
    make: Callable[[], AuthError], expected: str
) -> None:
    assert make().headers() == [(b"www-authenticate", expected.encode())]


def test_a_remembered_token_still_expires_and_goes_with_its_key(rsa_key: SigningKey) -> None:
    issuer, clock = FakeIssuer(rsa_key), Clock()
    verifier = _verifier(issuer, clock, leeway_s=0)
    token = rsa_key.sign(claims(lifetime_s=1)).encode()
    for _ in range(3):  # the first verifies, the next two are remembered
        assert asyncio.run(verifier.verify(token))["iss"] == ISSUER
    time.sleep(
        max(0.0, jwt.decode(token, options={"verify_signature": False})["exp"] - time.time())
    )
    time.sleep(0.05)
    assert _refused(verifier, token.decode()).reason == "expired"

    fresh = rsa_key.sign(claims()).encode()
    assert asyncio.run(verifier.verify(fresh))["iss"] == ISSUER
    issuer.keys = [SigningKey("RS256")]
    clock.now += 11
    asyncio.run(verifier.verify(issuer.keys[0].sign(claims()).encode()))  # a new kid: a fetch
    assert _refused(verifier, fresh.decode()).reason == "unknown_key"
