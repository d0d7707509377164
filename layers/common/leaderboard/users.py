"""Player accounts in DynamoDB, keyed by the case-folded username so "Alice" and "alice" are one account."""

import time
import uuid
from dataclasses import dataclass

from leaderboard.aws import dynamodb
from leaderboard.config import settings


class UsernameTaken(Exception):
    """Another account already has this username."""


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
    """A new account; UsernameTaken if the username (in any letter case) is already in use."""
    user = User(
        user_id=uuid.uuid4().hex,
        username=username,
        display_name=display_name or username,
        password_hash=password_hash,
    )
    client = dynamodb()
    try:
        client.put_item(
            TableName=settings.users_table,
            Item={
                "username_key": {"S": username_key(username)},
                "user_id": {"S": user.user_id},
                "username": {"S": user.username},
                "display_name": {"S": user.display_name},
                "password_hash": {"S": user.password_hash},
                "created_at": {"N": str(int(time.time()))},
            },
            ConditionExpression="attribute_not_exists(username_key)",
        )
    except client.exceptions.ConditionalCheckFailedException:
        raise UsernameTaken(username) from None
    return user


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
