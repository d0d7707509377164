"""Refresh tokens per RFC 9700: random, stored hashed, rotated on every use, grouped in families.

A refresh token reads `<family_id>.<secret>`. The family (one DynamoDB item) records the hash of the only
secret that may be used next. Using any other secret of the family, such as a token already spent, means two
parties hold the family's tokens: the whole family is revoked. A family lives FAMILY_SECONDS from login,
however often it is refreshed.

Logging out everywhere (or changing the password) ends every family of the player at once with one write: a marker
item, `user#<user_id>`, in the same table, holding the moment sessions were ended. A family created before it is
refused: every refresh reads the owner's marker after the family (one more read, no index to keep).
"""

import contextlib
import hashlib
import hmac
import re
import secrets
import time
from typing import Any

from leaderboard.aws import dynamodb
from leaderboard.config import settings
from leaderboard.identity import Identity

FAMILY_SECONDS = 30 * 24 * 3600
_TOKEN_SHAPE = re.compile(r"([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})")


class RefreshRefused(Exception):
    """The refresh token cannot be used. `reason` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ReuseDetected(RefreshRefused):
    """A secret of the family other than the current one was presented: the family is revoked."""

    def __init__(self, reason: str, user_id: str) -> None:
        super().__init__(reason)
        self.user_id = user_id


class NotYourToken(Exception):
    """The refresh token belongs to another player."""


def start_family(owner: Identity) -> str:
    """A new family (a new login session) and its first refresh token."""
    family_id, secret = secrets.token_urlsafe(16), secrets.token_urlsafe(32)
    now_ms = int(time.time() * 1000)
    now = now_ms // 1000
    dynamodb().put_item(
        TableName=settings.token_families_table,
        Item={
            "family_id": {"S": family_id},
            "user_id": {"S": owner.user_id},
            "username": {"S": owner.username},
            "display_name": {"S": owner.display_name},
            "token_hash": {"S": _hash(secret)},
            "revoked": {"BOOL": False},
            "created_at": {"N": str(now)},
            "created_at_ms": {"N": str(now_ms)},
            "expires_at": {"N": str(now + FAMILY_SECONDS)},  # also the table's TTL attribute
        },
        ConditionExpression="attribute_not_exists(family_id)",
    )
    return f"{family_id}.{secret}"


def rotate(refresh_token: str) -> tuple[Identity, str]:
    """Spend `refresh_token` and return its owner and the family's next token; RefreshRefused otherwise."""
    family_id, secret = _parse(refresh_token)
    family, ended = _family_and_marker(family_id)
    if family is None:
        raise RefreshRefused("unknown family")
    if family["revoked"]["BOOL"]:
        raise RefreshRefused("family revoked")
    if ended is not None and int(ended["sessions_ended_at_ms"]["N"]) >= _created_at_ms(family):
        raise RefreshRefused("every session ended")
    if int(family["expires_at"]["N"]) <= time.time():
        raise RefreshRefused("family expired")
    spent_hash = _hash(secret)
    if not hmac.compare_digest(family["token_hash"]["S"], spent_hash):
        _revoke(family_id)
        raise ReuseDetected("reuse detected; family revoked", family["user_id"]["S"])
    next_secret = secrets.token_urlsafe(32)
    client = dynamodb()
    try:
        client.update_item(
            TableName=settings.token_families_table,
            Key={"family_id": {"S": family_id}},
            UpdateExpression="SET token_hash = :next, rotated_at = :now",
            # Two concurrent uses of one token: only the first rotates, the second is a reuse.
            ConditionExpression="token_hash = :spent AND revoked = :false",
            ExpressionAttributeValues={
                ":next": {"S": _hash(next_secret)},
                ":spent": {"S": spent_hash},
                ":false": {"BOOL": False},
                ":now": {"N": str(int(time.time()))},
            },
        )
    except client.exceptions.ConditionalCheckFailedException:
        _revoke(family_id)
        raise ReuseDetected("concurrent reuse detected; family revoked", family["user_id"]["S"]) from None
    owner = Identity(
        user_id=family["user_id"]["S"], username=family["username"]["S"], display_name=family["display_name"]["S"]
    )
    return owner, f"{family_id}.{next_secret}"


def revoke(refresh_token: str, user_id: str) -> None:
    """End the session `refresh_token` belongs to; revoking it again is fine. RefreshRefused for a token that is
    no refresh token of a live session, NotYourToken if the session is another player's."""
    family_id, _ = _parse(refresh_token)
    family = _get(family_id)
    if family is None:
        raise RefreshRefused("unknown family")
    if family["user_id"]["S"] != user_id:
        raise NotYourToken
    _revoke(family_id)


def end_all(user_id: str) -> None:
    """End every session of the player: no refresh token of a family created until now works again."""
    now_ms = int(time.time() * 1000)
    dynamodb().put_item(
        TableName=settings.token_families_table,
        Item={
            "family_id": {"S": _marker_id(user_id)},
            "sessions_ended_at_ms": {"N": str(now_ms)},
            # Every family it could refuse has expired by then.
            "expires_at": {"N": str(now_ms // 1000 + FAMILY_SECONDS)},
        },
    )


def _marker_id(user_id: str) -> str:
    # `#` is no base64url character: a marker's key is never a family's.
    return f"user#{user_id}"


def _created_at_ms(family: dict[str, Any]) -> int:
    if "created_at_ms" in family:
        return int(family["created_at_ms"]["N"])
    return int(family["created_at"]["N"]) * 1000 + 999  # families from before markers: the second's end


def _family_and_marker(family_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The family and its owner's marker, strongly consistent (the owner is known only from the family)."""
    family = _get(family_id)
    if family is None:
        return None, None
    return family, _get(_marker_id(family["user_id"]["S"]))


def _parse(refresh_token: str) -> tuple[str, str]:
    match = _TOKEN_SHAPE.fullmatch(refresh_token)  # one spelling: `$` would let a trailing newline through
    if match is None:
        raise RefreshRefused("malformed")
    return match.group(1), match.group(2)


def _hash(secret: str) -> str:
    # The secret has 256 random bits: a fast hash is enough, no password hashing needed.
    return hashlib.sha256(secret.encode()).hexdigest()


def _get(family_id: str) -> dict[str, Any] | None:
    response = dynamodb().get_item(
        TableName=settings.token_families_table, Key={"family_id": {"S": family_id}}, ConsistentRead=True
    )
    return response.get("Item")


def _revoke(family_id: str) -> None:
    client = dynamodb()
    # If the family expired meanwhile there is nothing left to revoke, and no stub item must be created.
    with contextlib.suppress(client.exceptions.ConditionalCheckFailedException):
        client.update_item(
            TableName=settings.token_families_table,
            Key={"family_id": {"S": family_id}},
            UpdateExpression="SET revoked = :true",
            ConditionExpression="attribute_exists(family_id)",
            ExpressionAttributeValues={":true": {"BOOL": True}},
        )
