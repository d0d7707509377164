"""Access tokens and device tokens: JWTs checked per RFC 8725.

Pinned algorithm (HS256), an exact set of header keys (so `crit`, `jku`, `jwk`, `x5u`... are refused), every claim
required, and a `typ` per kind, so neither can pass for the other: "at+jwt" (RFC 9068) for access tokens, short-lived;
"device+jwt" for device tokens (OWASP's "device cookie"), which a successful login hands out and which only say that
this client logged in to this account before (login_throttle.py spares such a client the account-wide limit).
Refresh tokens are not JWTs at all (see token_families), so no kind can stand in for another.
"""

import base64
import binascii
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, TypeGuard

import jwt

from leaderboard import signing_keys
from leaderboard.config import settings
from leaderboard.identity import Identity
from leaderboard.signing_keys import SigningKey, SigningKeys

ALGORITHM = "HS256"
TOKEN_TYPE = "at+jwt"  # noqa: S105 - a media type, not a secret
DEVICE_TOKEN_TYPE = "device+jwt"  # noqa: S105 - a media type, not a secret
ACCESS_TOKEN_SECONDS = 600
# A device token is renewed at every login: a player who logs in at least once a quarter keeps being recognised.
DEVICE_TOKEN_SECONDS = 90 * 24 * 3600
LEEWAY_SECONDS = 30
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "sub", "jti")
_HEADER_KEYS = {"alg", "typ", "kid"}
# A real token is about 400 bytes; bigger input is refused before any parsing.
MAX_TOKEN_LENGTH = 2048
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_KIND = {TOKEN_TYPE: "an access token", DEVICE_TOKEN_TYPE: "a device token"}


class InvalidToken(Exception):
    """The token must be refused. `reason` is safe to log; the token itself never is."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def issue_access_token(identity: Identity, key: SigningKey, issuer: str, audience: str) -> str:
    """A signed access token for `identity`, valid ACCESS_TOKEN_SECONDS."""
    claims = {"sub": identity.user_id, "username": identity.username, "name": identity.display_name}
    return _signed(TOKEN_TYPE, ACCESS_TOKEN_SECONDS, claims, key, issuer, audience)


def verify_access_token(token: str, keys: SigningKeys, issuer: str, audience: str) -> Identity:
    """The identity in a valid access token; InvalidToken for anything else."""
    claims = _verified_claims(token, keys, issuer, audience, TOKEN_TYPE)
    subject, username, name = claims["sub"], claims.get("username"), claims.get("name")
    if not (_text(subject) and _text(username) and _text(name)):
        raise InvalidToken("bad subject")
    return Identity(user_id=subject, username=username, display_name=name)


@dataclass(frozen=True)
class Device:
    """A client that logged in to `account` (a username key) before, proven by its device token; `device_id` names it
    for a failure limit of its own."""

    device_id: str
    user_id: str
    account: str


def issue_device_token(user_id: str, account: str, key: SigningKey, issuer: str, audience: str) -> str:
    """A signed device token for a client that just logged in to `account` (the username key), valid
    DEVICE_TOKEN_SECONDS. Its `jti` is the device's id."""
    return _signed(DEVICE_TOKEN_TYPE, DEVICE_TOKEN_SECONDS, {"sub": user_id, "account": account}, key, issuer, audience)


def verify_device_token(token: str, keys: SigningKeys, issuer: str, audience: str) -> Device:
    """The device a valid device token names; InvalidToken for anything else."""
    claims = _verified_claims(token, keys, issuer, audience, DEVICE_TOKEN_TYPE)
    device_id, user_id, account = claims["jti"], claims["sub"], claims.get("account")
    if not (_text(device_id) and _text(user_id) and _text(account)):
        raise InvalidToken("bad subject")
    return Device(device_id=device_id, user_id=user_id, account=account)


def _signed(
    token_type: str, lifetime_seconds: int, claims: dict[str, str], key: SigningKey, issuer: str, audience: str
) -> str:
    now = int(time.time())
    registered = {"iss": issuer, "aud": audience, "iat": now, "exp": now + lifetime_seconds, "jti": uuid.uuid4().hex}
    return jwt.encode(registered | claims, key.secret, algorithm=ALGORITHM, headers={"typ": token_type, "kid": key.kid})


def _verified_claims(token: str, keys: SigningKeys, issuer: str, audience: str, token_type: str) -> dict[str, Any]:
    """The claims of a valid token of type `token_type` signed with one of `keys`; InvalidToken for anything else."""
    if not token or len(token) > MAX_TOKEN_LENGTH or not _single_spelling(token):
        raise InvalidToken("malformed")
    try:
        header = jwt.get_unverified_header(token)
    except (jwt.InvalidTokenError, ValueError):  # ValueError: text that cannot even be encoded
        raise InvalidToken("malformed") from None
    if set(header) != _HEADER_KEYS:
        raise InvalidToken("unexpected header keys")
    if header["alg"] != ALGORITHM:
        raise InvalidToken("algorithm not allowed")
    if header["typ"] != token_type:
        raise InvalidToken(f"not {_KIND[token_type]}")
    key = keys.find(header["kid"]) if isinstance(header["kid"], str) else None
    if key is None:
        raise InvalidToken("unknown kid")
    try:
        claims = jwt.decode(
            token,
            key.secret,
            algorithms=[ALGORITHM],
            issuer=issuer,
            audience=audience,
            leeway=LEEWAY_SECONDS,
            options={"require": list(REQUIRED_CLAIMS)},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("expired") from None
    except (jwt.InvalidTokenError, ValueError) as exc:
        raise InvalidToken(type(exc).__name__) from None
    return dict(claims)


def verify_caller(token: str) -> Identity:
    """Who an access token presented to this stack names, checked against the stack's keys, issuer and audience."""
    return verify_access_token(token, signing_keys.keys, issuer=settings.jwt_issuer, audience=settings.jwt_audience)


def _single_spelling(token: str) -> bool:
    """Three base64url segments written the one way the encoder writes them: no padding, no trailing or stray
    characters, no unused bits set (PyJWT alone would take `<token>=` for the token)."""
    segments = token.split(".")
    return len(segments) == 3 and all(_SEGMENT.fullmatch(segment) and _canonical(segment) for segment in segments)


def _canonical(segment: str) -> bool:
    try:
        decoded = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return False
    return base64.urlsafe_b64encode(decoded).rstrip(b"=").decode() == segment


def _text(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value)


def bearer_token(authorization: str) -> str:
    """The token of an `Authorization: Bearer <token>` header value ("" when it is not one)."""
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""
