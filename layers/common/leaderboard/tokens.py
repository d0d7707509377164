"""Access tokens: short-lived JWTs checked per RFC 8725.

Pinned algorithm (HS256), `typ` "at+jwt" (RFC 9068) so no other JWT can pass for an access token, an exact
set of header keys (so `crit`, `jku`, `jwk`, `x5u`... are refused), every claim required.
Refresh tokens are not JWTs at all (see token_families), so neither kind can stand in for the other.
"""

import base64
import binascii
import re
import time
import uuid
from typing import TypeGuard

import jwt

from leaderboard import signing_keys
from leaderboard.config import settings
from leaderboard.identity import Identity
from leaderboard.signing_keys import SigningKey, SigningKeys

ALGORITHM = "HS256"
TOKEN_TYPE = "at+jwt"  # noqa: S105 - a media type, not a secret
ACCESS_TOKEN_SECONDS = 600
LEEWAY_SECONDS = 30
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "sub", "jti")
_HEADER_KEYS = {"alg", "typ", "kid"}
# A real token is about 400 bytes; bigger input is refused before any parsing.
MAX_TOKEN_LENGTH = 2048
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")


class InvalidToken(Exception):
    """The token must be refused. `reason` is safe to log; the token itself never is."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def issue_access_token(identity: Identity, key: SigningKey, issuer: str, audience: str) -> str:
    """A signed access token for `identity`, valid ACCESS_TOKEN_SECONDS."""
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": identity.user_id,
        "username": identity.username,
        "name": identity.display_name,
        "iat": now,
        "exp": now + ACCESS_TOKEN_SECONDS,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, key.secret, algorithm=ALGORITHM, headers={"typ": TOKEN_TYPE, "kid": key.kid})


def verify_access_token(token: str, keys: SigningKeys, issuer: str, audience: str) -> Identity:
    """The identity in a valid access token; InvalidToken for anything else."""
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
    if header["typ"] != TOKEN_TYPE:
        raise InvalidToken("not an access token")
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
    subject, username, name = claims["sub"], claims.get("username"), claims.get("name")
    if not (_text(subject) and _text(username) and _text(name)):
        raise InvalidToken("bad subject")
    return Identity(user_id=subject, username=username, display_name=name)


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
