"""Player accounts in DynamoDB, keyed by the case-folded username so "Alice" and "alice" are one account, and the
display names they hold: one DisplayNamesTable item per look-alike key of a name (names.lookalike_keys), claimed
in the same transaction as the account, so two players never hold names that look the same, however close together
they register.
"""

import time
import uuid
from dataclasses import dataclass
from typing import Any

from leaderboard import names
from leaderboard.aws import dynamodb
from leaderboard.config import settings
from leaderboard.problems import ServiceUnavailable

# A generated name ("Player 48213") that looks like one already held is drawn again, with more digits as it goes:
# 90,000 five-digit names, then 900,000 six-digit ones...
DEFAULT_NAME_DIGITS = (5, 5, 6, 6, 7, 7, 8, 9)
# Registrations racing for the same item: DynamoDB cancels all but one with TransactionConflict; they try again.
_CONFLICT_ATTEMPTS = 3


class UsernameTaken(Exception):
    """Another account already has this username."""


class DisplayNameTaken(Exception):
    """Another account holds a display name that looks the same (they share a key of names.lookalike_keys)."""


@dataclass(frozen=True)
class User:
    user_id: str
    username: str
    display_name: str
    password_hash: str

    def public(self) -> dict[str, str]:
        """What anybody may know of the account."""
        return {"user_id": self.user_id, "username": self.username, "display_name": self.display_name}


def username_key(username: str) -> str:
    """The key an account is stored under."""
    return username.casefold()


def create_user(username: str, display_name: str | None, password_hash: str) -> User:
    """A new account holding `display_name` (as names.normalize wrote it), or a generated name ("Player 48213") when
    it is None. UsernameTaken if the username (in any letter case) is in use; DisplayNameTaken if another player
    holds a name that looks the same."""
    if display_name is not None:
        return _create_user(username, display_name, password_hash)
    for digits in DEFAULT_NAME_DIGITS:
        try:
            return _create_user(username, names.default_name(digits), password_hash)
        except DisplayNameTaken:
            continue
    raise DisplayNameTaken(username)


def _create_user(username: str, display_name: str, password_hash: str) -> User:
    """The account and its name's claims, all or nothing."""
    user = User(user_id=uuid.uuid4().hex, username=username, display_name=display_name, password_hash=password_hash)
    keys = sorted(names.lookalike_keys(display_name))
    created_at = {"N": str(int(time.time()))}
    account = {
        "username_key": {"S": username_key(username)},
        "user_id": {"S": user.user_id},
        "username": {"S": user.username},
        "display_name": {"S": user.display_name},
        # The claims to release should the name ever change: its keys may differ under later Unicode data.
        "display_name_keys": {"SS": keys},
        "password_hash": {"S": user.password_hash},
        "created_at": created_at,
    }
    claims = [
        {
            "name_key": {"S": key},
            "user_id": {"S": user.user_id},
            "display_name": {"S": display_name},
            "created_at": created_at,
        }
        for key in keys
    ]
    transaction: list[Any] = [_put_new(settings.users_table, account, "username_key")]
    transaction += [_put_new(settings.display_names_table, claim, "name_key") for claim in claims]
    # The player's ledger item, with the name the boards show: game servers post scores for registered players only.
    player = {"user_id": {"S": user.user_id}, "display_name": {"S": display_name}}
    transaction.append(_put_new(settings.player_totals_table, player, "user_id"))
    client = dynamodb()
    # One token for every attempt: if DynamoDB applied it but the answer was lost, botocore's retry is a no-op
    # rather than a refusal by our own items.
    token = uuid.uuid4().hex
    for _ in range(_CONFLICT_ATTEMPTS):
        try:
            client.transact_write_items(TransactItems=transaction, ClientRequestToken=token)
            return user
        except client.exceptions.TransactionCanceledException as cancelled:
            codes = [reason.get("Code") for reason in cancelled.response.get("CancellationReasons", [])]
            if codes[:1] == ["ConditionalCheckFailed"]:
                raise UsernameTaken(username) from None
            if "ConditionalCheckFailed" in codes:
                raise DisplayNameTaken(display_name) from None
            if "TransactionConflict" not in codes:
                raise
    raise ServiceUnavailable("The account could not be created yet; try again.", retry_after=1)


def _put_new(table: str, item: dict[str, Any], key: str) -> dict[str, Any]:
    return {"Put": {"TableName": table, "Item": item, "ConditionExpression": f"attribute_not_exists({key})"}}


def find_user(username: str) -> User | None:
    """The account with this username, if any."""
    item = (
        dynamodb()
        # Consistent: a login right after registering must find the account.
        .get_item(
            TableName=settings.users_table, Key={"username_key": {"S": username_key(username)}}, ConsistentRead=True
        )
        .get("Item")
    )
    if item is None:
        return None
    return User(
        user_id=item["user_id"]["S"],
        username=item["username"]["S"],
        display_name=item["display_name"]["S"],
        password_hash=item["password_hash"]["S"],
    )


def replace_password_hash(username: str, password_hash: str) -> None:
    """Store a fresh hash of the same password (after hashing parameters were raised)."""
    dynamodb().update_item(
        TableName=settings.users_table,
        Key={"username_key": {"S": username_key(username)}},
        UpdateExpression="SET password_hash = :hash",
        ConditionExpression="attribute_exists(username_key)",
        ExpressionAttributeValues={":hash": {"S": password_hash}},
    )
