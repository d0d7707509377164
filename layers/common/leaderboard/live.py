"""Live pushes: board changes reach every open WebSocket, coalesced, in order, without slowing the consumer down.

1. A write that changes the board (the consumer, a rebuild) raises the board's version and, unless a publisher
   already holds it, takes the publishing lease in the same Redis script. Only the writer that took it sends a
   wake-up to BoardChangesQueue: one SQS message per publishing burst, however many batches are applied meanwhile.
2. The publisher (PublishBoardFunction, in the VPC next to Redis) repeats, at most `CYCLES_PER_SECOND` times a second:
   read a snapshot of the board; list the connections page by page, queuing the top 10 for each page on FanoutQueue
   in chunks; then find the connected players whose standing changed and queue theirs. After each cycle one script
   releases the lease if the board's version is still the one published, or keeps it (taking it again if it expired
   meanwhile) and the publisher goes round again. So while nothing fails, every change is either seen by the running
   publisher or takes the lease and wakes a new one.
3. When something fails (a lost wake-up, a crash, a timeout), the lease expires within `board.LEASE_MS` and the
   changes wait for the next write, or for the safety net: once a minute PublishBoardFunction claims the lease if
   the board changed since it was last published.
4. PostToConnectionsFunction (outside the VPC: the @connections API cannot be reached through a VPC endpoint) posts
   a chunk in parallel and forgets the connections that answer 410 Gone.
Every message carries the board's version as `seq`: chunks may be posted in any order, and a client drops a message
older than the last of its type it applied.
"""

import json
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from functools import cache
from itertools import batched
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from leaderboard import connections
from leaderboard.aws import connections_api, dynamodb, sqs
from leaderboard.board import Board, BoardUnavailable, LeaseLost, Snapshot, Written
from leaderboard.config import settings
from leaderboard.messages import rank_message, top10_message

logger = Logger(child=True)

CYCLES_PER_SECOND = 4
# A publisher hands over to a fresh invocation when less than this (or twice its last cycle) is left of its own.
HAND_OVER_BEFORE_MS = 5_000
# A FanoutQueue message holds at most this many posts and bytes: ten of them stay under SendMessageBatch's 256 KiB.
POSTS_PER_CHUNK = 250
BYTES_PER_CHUNK = 25_000
# Posts in flight at once in one PostToConnections invocation (the @connections API answers in tens of ms).
PARALLEL_POSTS = 32

Post = tuple[str, list[str]]  # (message, connection ids)


# --- waking the publisher ------------------------------------------------------------------------------------------


def wake_publisher(board: Board, written: Written) -> None:
    """If this write took the publishing lease, wake a publisher. SQS or Redis trouble is logged, not raised: the
    scores are already applied, and the next change (or the safety net) publishes them."""
    if written.lease is None:
        return
    try:
        _send_wake_up(written.lease)
    except (BotoCoreError, ClientError) as exc:
        logger.warning("could not wake the publisher", extra={"error": type(exc).__name__})
        with suppress(BoardUnavailable):  # then the lease expires on its own
            board.abandon(written.lease)


def _send_wake_up(lease: str) -> None:
    sqs().send_message(QueueUrl=settings.board_changes_queue_url, MessageBody=_sqs_body({"lease": lease}))


def _sqs_body(message: dict[str, Any]) -> str:
    # ASCII only: SQS refuses some characters a display name may hold (U+FFFE, U+FFFF); JSON escapes them all.
    return json.dumps(message, separators=(",", ":"))


def lease_of(message_body: str) -> str:
    """The lease a wake-up hands to the publisher."""
    lease = json.loads(message_body)["lease"]
    if not isinstance(lease, str):
        raise ValueError("a wake-up names its lease")
    return lease


# --- publishing ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """One FanoutQueue message: the posts of one PostToConnections invocation."""

    posts: list[Post]

    def body(self) -> str:
        return _sqs_body({"posts": [{"data": data, "to": to} for data, to in self.posts]})

    @classmethod
    def from_body(cls, body: str) -> "Chunk":
        return cls([(post["data"], post["to"]) for post in json.loads(body)["posts"]])


def publish_changes(board: Board, lease: str, remaining_ms: Callable[[], int]) -> int:
    """Publish cycles while the board keeps changing and this publisher holds `lease`; the number of cycles."""
    cycles = 0
    try:
        lease = board.adopt(lease)
        while True:
            started = time.monotonic()
            snapshot = board.snapshot()
            _queue(_chunks(_posts(board, lease, snapshot)))
            cycles += 1
            if not board.published(lease, snapshot):
                return cycles
            cycle_ms = (time.monotonic() - started) * 1000
            if remaining_ms() < max(HAND_OVER_BEFORE_MS, 2 * cycle_ms):
                _send_wake_up(lease)  # a fresh invocation goes on with the lease
                return cycles
            time.sleep(max(0.0, 1 / CYCLES_PER_SECOND - cycle_ms / 1000))
    except LeaseLost:
        return cycles  # another publisher took over; it publishes everything from here on
    except Exception:
        board.abandon(lease)
        raise


def _posts(board: Board, lease: str, snapshot: Snapshot) -> Iterator[Post]:
    """What one cycle sends: the top 10 to every connection if it changed, page by page; then each connected player
    whose standing changed their own, on all of their connections."""
    top10 = top10_message(snapshot) if snapshot.top_is_new else None
    by_player: dict[str, list[str]] = {}
    for page in connections.open_connections():
        board.renew(lease)  # a long scan must not let the lease expire under it
        if top10 is not None:
            yield top10, [connection.connection_id for connection in page]
        for connection in page:
            by_player.setdefault(connection.user_id, []).append(connection.connection_id)
    seq, changes = board.rank_changes(lease, list(by_player))
    for change in changes:
        yield rank_message(change, seq), by_player[change.standing.user_id]


def _chunks(posts: Iterable[Post]) -> Iterator[Chunk]:
    """Posts cut into chunks of at most POSTS_PER_CHUNK deliveries and BYTES_PER_CHUNK bytes of message body."""
    empty = len(Chunk([]).body())
    chunk: list[Post] = []
    count, size = 0, empty
    for data, to in posts:
        # What the message costs inside a chunk's body: JSON-escaped, with its {"data":...,"to":[]} frame.
        data_bytes = len(_sqs_body({"data": data, "to": []})) + 1
        for connection_id in to:
            id_bytes = len(connection_id.encode()) + 3
            new_entry = not chunk or chunk[-1][0] is not data
            if chunk and (
                count == POSTS_PER_CHUNK or size + id_bytes + (data_bytes if new_entry else 0) > BYTES_PER_CHUNK
            ):
                yield Chunk(chunk)
                chunk, count, size, new_entry = [], 0, empty, True
            if new_entry:
                chunk.append((data, []))
                size += data_bytes
            chunk[-1][1].append(connection_id)
            count, size = count + 1, size + id_bytes
    if chunk:
        yield Chunk(chunk)


def _queue(chunks: Iterable[Chunk]) -> None:
    """Send the chunks to FanoutQueue, ten per SendMessageBatch. A chunk SQS refuses fails the cycle: the lease is
    given back and the change published again by the next publisher."""
    for batch in batched(chunks, 10, strict=False):
        entries: Any = [{"Id": str(index), "MessageBody": chunk.body()} for index, chunk in enumerate(batch)]
        response = sqs().send_message_batch(QueueUrl=settings.fanout_queue_url, Entries=entries)
        if response.get("Failed"):
            raise RuntimeError(f"FanoutQueue refused {len(response['Failed'])} chunks")


def publish_if_behind(board: Board, remaining_ms: Callable[[], int]) -> int:
    """The safety net: publish if the board changed since it was last published and no publisher is at it (a
    wake-up was lost, a publisher crashed); the number of cycles."""
    lease = board.claim()
    return publish_changes(board, lease, remaining_ms) if lease else 0


# --- posting -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    sent: int
    gone: int
    failed: int


@cache
def _posting_pool() -> ThreadPoolExecutor:
    # Kept for warm invocations, like the clients and their connection pools.
    return ThreadPoolExecutor(max_workers=PARALLEL_POSTS, thread_name_prefix="post")


def deliver(chunk: Chunk) -> Delivery:
    """Post a chunk, in parallel; forget the connections that are gone. A post that still fails after the client's
    retries is lost for that client (it resyncs with {"action":"top10"} when it reconnects)."""
    # Clients are built here, on one thread: building them concurrently on boto3's default session is not safe.
    connections_api(PARALLEL_POSTS)
    dynamodb()
    deliveries = [(connection_id, data.encode()) for data, to in chunk.posts for connection_id in to]
    outcomes = list(_posting_pool().map(_post, deliveries))
    gone = {delivered[0] for delivered, outcome in zip(deliveries, outcomes, strict=True) if outcome == "gone"}
    list(_posting_pool().map(connections.forget_gone, gone))
    return Delivery(sent=outcomes.count("sent"), gone=len(gone), failed=outcomes.count("failed"))


def _post(delivery: tuple[str, bytes]) -> str:
    connection_id, data = delivery
    try:
        connections_api(PARALLEL_POSTS).post_to_connection(ConnectionId=connection_id, Data=data)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "GoneException":
            return "gone"
        logger.warning("post failed", extra={"error": exc.response["Error"]["Code"]})
        return "failed"
    except BotoCoreError as exc:
        logger.warning("post failed", extra={"error": type(exc).__name__})
        return "failed"
    return "sent"
