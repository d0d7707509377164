"""The players' open WebSocket connections, in DynamoDB (API Gateway knows them too, but cannot list them)."""

import time
from collections.abc import Iterator
from dataclasses import dataclass

from leaderboard.aws import dynamodb
from leaderboard.config import settings
from leaderboard.identity import Identity

# API Gateway closes a WebSocket after two hours: a connection whose $disconnect never ran is dropped by the TTL, and
# skipped by readers until then (DynamoDB deletes expired items lazily).
LIFETIME_SECONDS = 2 * 60 * 60
# A $connect completes within seconds: a 410 for a connection younger than this is its handshake, not its end.
HANDSHAKE_SECONDS = 10


@dataclass(frozen=True)
class Connection:
    connection_id: str
    user_id: str


def open_connection(connection_id: str, player: Identity) -> None:
    """Record a connection API Gateway just accepted."""
    now = int(time.time())
    dynamodb().put_item(
        TableName=settings.connections_table,
        Item={
            "connection_id": {"S": connection_id},
            "user_id": {"S": player.user_id},
            "connected_at": {"N": str(now)},
            "expires_at": {"N": str(now + LIFETIME_SECONDS)},
        },
    )


def close_connection(connection_id: str) -> None:
    """Forget a connection (closed, or gone); forgetting an unknown one is fine."""
    dynamodb().delete_item(TableName=settings.connections_table, Key={"connection_id": {"S": connection_id}})


def forget_gone(connection_id: str) -> None:
    """Forget a connection API Gateway answered 410 for, unless it was opened moments ago: during its $connect the
    connection is recorded but not yet established, and posts to it are answered 410 too."""
    recent = int(time.time()) - HANDSHAKE_SECONDS
    try:
        dynamodb().delete_item(
            TableName=settings.connections_table,
            Key={"connection_id": {"S": connection_id}},
            ConditionExpression="connected_at < :recent",
            ExpressionAttributeValues={":recent": {"N": str(recent)}},
        )
    except dynamodb().exceptions.ConditionalCheckFailedException:
        pass  # just opened (or already gone)


def open_connections() -> Iterator[list[Connection]]:
    """Every live connection, a page (up to 1 MB of items) at a time."""
    paginator = dynamodb().get_paginator("scan")
    pages = paginator.paginate(
        TableName=settings.connections_table,
        # Strongly consistent: a connection opened a moment before a change must not miss its push.
        ConsistentRead=True,
        ProjectionExpression="connection_id, user_id",
        FilterExpression="expires_at > :now",
        ExpressionAttributeValues={":now": {"N": str(int(time.time()))}},
    )
    for page in pages:
        yield [Connection(item["connection_id"]["S"], item["user_id"]["S"]) for item in page["Items"]]
