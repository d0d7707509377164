"""Access tokens: every RFC 8725 check the authorizer relies on."""

import base64
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from leaderboard import token_families
from leaderboard.identity import Identity
from leaderboard.signing_keys import SigningKey, SigningKeys
from leaderboard.tokens import (
    ACCESS_TOKEN_SECONDS,
    InvalidToken,
    bearer_token,
    issue_access_token,
    verify_access_token,
)

ISSUER, AUDIENCE = "urn:leaderboard:test", "leaderboard-api"
KEY = SigningKey(kid="v1", secret=b"k" * 64)
OLD_KEY = SigningKey(kid="v0", secret=b"o" * 64)
ALICE = Identity(user_id="u-alice", username="alice", display_name="Alice")


def keys_with(current: SigningKey, *previous: SigningKey) -> SigningKeys:
    versions = {"AWSCURRENT": current, **({"AWSPREVIOUS": previous[0]} if previous else {})}

    def fetch(selector: dict[str, str]) -> dict[str, Any] | None:
        for stage, key in versions.items():
            if selector in ({"versionStage": stage}, {"versionId": key.kid}):
                secret = json.dumps({"signing_key": key.secret.decode()})
                return {"VersionId": key.kid, "SecretString": secret, "VersionStages": [stage]}
        return None

    return SigningKeys(fetch=fetch)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": ALICE.user_id,
        "username": ALICE.username,
        "name": ALICE.display_name,
        "iat": now,
        "exp": now + 600,
        "jti": "j1",
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def forge(payload: dict[str, Any], key: bytes = KEY.secret, **header: Any) -> str:
    headers = {"typ": "at+jwt", "kid": KEY.kid, **header}
    return jwt.encode(payload, key, algorithm=headers.pop("alg", "HS256"), headers=headers)


def b64(part: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()


def verify(token: str, keys: SigningKeys | None = None) -> Identity:
    return verify_access_token(token, keys or keys_with(KEY), issuer=ISSUER, audience=AUDIENCE)


def refused(token: str, keys: SigningKeys | None = None) -> str:
    with pytest.raises(InvalidToken) as caught:
        verify(token, keys)
    return caught.value.reason


def test_an_issued_token_verifies_to_its_identity() -> None:
    token = issue_access_token(ALICE, KEY, issuer=ISSUER, audience=AUDIENCE)

    assert verify(token) == ALICE
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "at+jwt", "kid": "v1"}
    payload = jwt.decode(token, options={"verify_signature": False})
    assert payload["exp"] - payload["iat"] == ACCESS_TOKEN_SECONDS <= 15 * 60
    assert set(payload) >= {"iss", "aud", "exp", "iat", "sub", "jti"}


def test_tokens_have_unique_ids() -> None:
    first, second = (issue_access_token(ALICE, KEY, issuer=ISSUER, audience=AUDIENCE) for _ in range(2))
    assert (
        jwt.decode(first, options={"verify_signature": False})["jti"]
        != jwt.decode(second, options={"verify_signature": False})["jti"]
    )


def test_a_token_signed_with_the_previous_key_still_verifies_after_rotation() -> None:
    token = issue_access_token(ALICE, OLD_KEY, issuer=ISSUER, audience=AUDIENCE)
    assert verify(token, keys_with(KEY, OLD_KEY)) == ALICE


def test_a_token_whose_key_is_neither_current_nor_previous_is_refused() -> None:
    token = issue_access_token(ALICE, SigningKey(kid="retired", secret=b"r" * 64), issuer=ISSUER, audience=AUDIENCE)
    assert refused(token, keys_with(KEY, OLD_KEY)) == "unknown kid"


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_unsigned_tokens_are_refused(alg: str) -> None:
    token = f"{b64({'alg': alg, 'typ': 'at+jwt', 'kid': 'v1'})}.{b64(claims())}."
    assert refused(token) == "malformed"  # an empty signature is not a spelling of any token we issue
    assert refused(f"{token}c2ln") == "algorithm not allowed"


def test_a_token_has_one_spelling() -> None:
    token = issue_access_token(ALICE, KEY, issuer=ISSUER, audience=AUDIENCE)
    header, payload, signature = token.split(".")
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # The signature's last character carries unused bits (32 bytes in 43 characters): setting one spells the same bytes.
    unused_bit = last[last.index(signature[-1]) ^ 1]

    assert verify(token) == ALICE
    for respelled in (
        f"{token}=",  # padding (PyJWT alone accepts it)
        f"{header}.{payload}=.{signature}",
        f"{token}\n",
        f"{token} ",
        f"{token}.",
        f"{header}.{payload}.{signature[:-1]}{unused_bit}",
        f"{header}.{payload}.+{signature[1:]}",  # base64, not base64url
    ):
        assert refused(respelled) == "malformed", respelled


@pytest.mark.parametrize("alg", ["HS384", "HS512", "hs256"])
def test_other_hmac_algorithms_are_refused(alg: str) -> None:
    header = {"alg": alg, "typ": "at+jwt", "kid": "v1"}
    token = f"{b64(header)}.{b64(claims())}.c2ln"
    assert refused(token) == "algorithm not allowed"


def test_key_confusion_with_an_asymmetric_algorithm_is_refused() -> None:
    # An attacker signs with their own RSA key and says RS256: the verifier must never switch algorithms.
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    token = jwt.encode(claims(), pem, algorithm="RS256", headers={"typ": "at+jwt", "kid": "v1"})
    assert refused(token) == "algorithm not allowed"


@pytest.mark.parametrize(
    "extra_header",
    [
        {"crit": ["exp"]},
        {"crit": ["unknown-extension"], "unknown-extension": 1},
        {"jku": "https://attacker.example/jwks.json"},
        {"jwk": {"kty": "oct", "k": "YQ"}},
        {"x5u": "https://attacker.example/cert.pem"},
        {"cty": "JWT"},
    ],
)
def test_unexpected_header_keys_are_refused(extra_header: dict[str, Any]) -> None:
    # PyJWT itself rejects a `crit` it does not understand while reading the header.
    assert refused(forge(claims(), **extra_header)) in {"unexpected header keys", "malformed"}


def test_a_header_without_kid_is_refused() -> None:
    token = jwt.encode(claims(), KEY.secret, algorithm="HS256", headers={"typ": "at+jwt"})
    assert refused(token) == "unexpected header keys"


@pytest.mark.parametrize("typ", ["JWT", "rt+jwt", "at+JWT ", "refresh"])
def test_tokens_of_another_type_are_refused(typ: str) -> None:
    assert refused(forge(claims(), typ=typ)) == "not an access token"


@pytest.mark.parametrize("claim", ["iss", "aud", "exp", "iat", "sub", "jti"])
def test_every_required_claim_must_be_present(claim: str) -> None:
    assert refused(forge(claims(**{claim: None}))) == "MissingRequiredClaimError"


def test_an_expired_token_is_refused_after_the_leeway() -> None:
    now = int(time.time())
    assert refused(forge(claims(iat=now - 700, exp=now - 31))) == "expired"
    assert verify(forge(claims(iat=now - 700, exp=now - 5))) == ALICE  # within 30 s of leeway


def test_a_token_issued_in_the_future_is_refused() -> None:
    now = int(time.time())
    assert refused(forge(claims(iat=now + 120, exp=now + 720))) == "ImmatureSignatureError"


@pytest.mark.parametrize(("claim", "value"), [("iss", "urn:someone-else"), ("aud", "another-api")])
def test_a_token_for_another_issuer_or_audience_is_refused(claim: str, value: str) -> None:
    assert refused(forge(claims(**{claim: value}))) in {"InvalidIssuerError", "InvalidAudienceError"}


def test_a_token_signed_with_another_key_is_refused() -> None:
    assert refused(forge(claims(), key=b"x" * 64)) == "InvalidSignatureError"


def test_a_tampered_payload_is_refused() -> None:
    header, _, signature = forge(claims()).split(".")
    tampered = f"{header}.{b64(claims(sub='u-mallory', username='mallory'))}.{signature}"
    assert refused(tampered) == "InvalidSignatureError"


@pytest.mark.parametrize(
    "token",
    ["", "garbage", "a.b", "a.b.c", "....", "x" * 5000, "\ud800.a.b"],
    ids=["empty", "garbage", "two-parts", "bad-base64", "dots", "oversize", "unencodable"],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    assert refused(token) in {"malformed", "unexpected header keys"}


def test_a_truncated_token_is_refused() -> None:
    token = issue_access_token(ALICE, KEY, issuer=ISSUER, audience=AUDIENCE)
    assert refused(token[:-10]) in {"malformed", "InvalidSignatureError"}
    assert refused(token[:-1]) in {"malformed", "InvalidSignatureError"}
    assert refused(token[: len(token) // 2]) in {"malformed", "DecodeError"}


@pytest.mark.parametrize(
    ("claim", "value"), [("sub", 123), ("sub", ""), ("username", None), ("username", 7), ("name", None), ("name", "")]
)
def test_a_token_without_a_usable_subject_or_names_is_refused(claim: str, value: Any) -> None:
    assert refused(forge(claims(**{claim: value}))) in {"bad subject", "InvalidSubjectError"}


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic abc", ""), ("abc", ""), ("", ""), ("Bearer", "")],
)
def test_bearer_token_takes_only_the_bearer_scheme(header: str, token: str) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize("suffix", ["\n", " ", "=", ".", "\r\n"])
def test_a_refresh_token_has_one_spelling(suffix: str) -> None:
    token = f"{'f' * 22}.{'s' * 43}"
    assert token_families._parse(token) == ("f" * 22, "s" * 43)

    with pytest.raises(token_families.RefreshRefused):
        token_families._parse(token + suffix)
