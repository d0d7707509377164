"""Device tokens (OWASP's "device cookie"): signed with the stack's keys, bound to an account, and never able to pass
for an access token, nor an access token for one."""

import time
from typing import Any

import jwt
import pytest

from leaderboard.identity import Identity
from leaderboard.signing_keys import SigningKey
from leaderboard.tokens import (
    DEVICE_TOKEN_SECONDS,
    Device,
    InvalidToken,
    issue_access_token,
    issue_device_token,
    verify_access_token,
    verify_device_token,
)
from tests.unit.test_tokens import AUDIENCE, ISSUER, KEY, OLD_KEY, keys_with


def device_of(token: str) -> Device:
    return verify_device_token(token, keys_with(KEY, OLD_KEY), issuer=ISSUER, audience=AUDIENCE)


def refused(token: str) -> str:
    with pytest.raises(InvalidToken) as caught:
        device_of(token)
    return caught.value.reason


def issued(key: SigningKey = KEY) -> str:
    return issue_device_token("u-alice", "alice", key, issuer=ISSUER, audience=AUDIENCE)


def test_an_issued_device_token_names_its_account_player_and_a_device_of_its_own() -> None:
    first, second = device_of(issued()), device_of(issued())

    assert (first.account, first.user_id) == ("alice", "u-alice")
    assert first.device_id
    assert first.device_id != second.device_id, "each login hands out a device of its own"


def test_a_device_token_lives_for_its_lifetime() -> None:
    claims = jwt.decode(issued(), KEY.secret, algorithms=["HS256"], audience=AUDIENCE)
    assert claims["exp"] - claims["iat"] == DEVICE_TOKEN_SECONDS
    assert abs(claims["iat"] - time.time()) < 5


def test_a_device_token_signed_with_the_previous_key_still_verifies() -> None:
    assert device_of(issued(OLD_KEY)).account == "alice"


def test_an_access_token_is_not_a_device_token_and_a_device_token_is_not_an_access_token() -> None:
    access = issue_access_token(Identity("u-alice", "alice", "Alice"), KEY, issuer=ISSUER, audience=AUDIENCE)

    assert refused(access) == "not a device token"
    with pytest.raises(InvalidToken) as caught:
        verify_access_token(issued(), keys_with(KEY), issuer=ISSUER, audience=AUDIENCE)
    assert caught.value.reason == "not an access token"


def forged(key: bytes = KEY.secret, **overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u-alice", "account": "alice", "iat": now, "exp": now + 60}
    claims |= {"jti": "d1", **overrides}
    return jwt.encode(
        {name: value for name, value in claims.items() if value is not None},
        key,
        algorithm="HS256",
        headers={"typ": "device+jwt", "kid": KEY.kid},
    )


def test_a_well_formed_forgery_verifies_only_with_the_stacks_key() -> None:
    assert device_of(forged()).device_id == "d1"
    assert refused(forged(key=b"x" * 64)) == "InvalidSignatureError"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"aud": "another-api"}, "InvalidAudienceError"),
        ({"iss": "urn:someone-else"}, "InvalidIssuerError"),
        ({"jti": None}, "MissingRequiredClaimError"),
        ({"account": None}, "bad subject"),
        ({"account": 7}, "bad subject"),
    ],
)
def test_a_device_token_missing_or_breaking_a_claim_is_refused(overrides: dict[str, Any], reason: str) -> None:
    assert refused(forged(**overrides)) == reason
