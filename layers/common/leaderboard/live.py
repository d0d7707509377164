"""The live feed: board changes published to the Event API (AWS AppSync Events), coalesced, in order, on a budget.

AppSync delivers one publish to every subscriber of its channel, so the work done here per change does not depend on
the audience: one publish for a board's top 10 (`/boards/<board>`), and one per *watching* player whose standing
moved (`/players/<user_id>` for the `global` board, `/players/<user_id>/<board>` for the others). Only the season on
show (the current one) is published; every board publishes on its own lease and budget.

1. A write that changes the board (the consumer, a rebuild) raises the board's version and, unless a publisher
   already holds it, takes the publishing lease in the same Redis script. So does a player subscribing to their own
   channel (they are owed their standing at once). Only the caller that took the lease sends a wake-up to
   BoardChangesQueue: one SQS message per publishing burst, however many batches are applied meanwhile.
2. The publisher (PublishBoardFunction, in the VPC next to Redis) then repeats, at the rate the budget allows: read a
   snapshot of the board and its audience; if the top 10 changed, one publish of it; the watchers whose standing
   changed, up to the budget's allowance, one publish each; queue those publishes on LiveEventsQueue; wait out the
   cycle. Then one script releases the lease if everything is published, or keeps it (taking it again if it expired
   meanwhile) and the publisher goes round again. So a burst's first change goes out at once and the next ones at
   the budget's rate, whichever publisher invocation carries them.
3. PublishEventsFunction (outside the VPC: no VPC endpoint serves Event APIs) signs each publish with its role and
   sends it (`event_api.py`, which only that function imports: the others never pay for botocore's signer). Only
   the stack's roles may publish; clients never can.
4. When something fails (a lost wake-up, a crash, a timeout), the lease expires within `board.LEASE_MS` and the
   changes wait for the next write, or for the safety net: once a minute PublishBoardFunction claims the lease if
   something is still unpublished.
Every message carries the board's version as `seq`: publishes may arrive in any order, and a client drops a message
not newer than the last of its type it applied.

The budget: AppSync bills every delivery, and anyone may watch a board, so a board's top-10 rate comes from its
audience: `LIVE_DELIVERIES_PER_HOUR` over the viewers (what the watchers' own pushes leave of it), within
`LIVE_MIN_PUBLISHES_PER_SECOND` and `LIVE_MAX_PUBLISHES_PER_SECOND`. The watchers' pushes are capped by the same
budget and by MAX_PERSONAL_PER_SECOND, which keeps them under the Event API's inbound quota.
"""

import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from itertools import batched
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from leaderboard.aws import sqs
from leaderboard.board import Board, BoardUnavailable, LeaseLost, RankChanges, Snapshot
from leaderboard.config import settings
from leaderboard.messages import Publish, board_channel, player_channel, rank_message, top10_message

logger = Logger(child=True)

# The Event API takes 10,000 inbound events a second per API by default: a board's watchers get at most this many
# pushes a second, so five boards at full tilt stay within it.
MAX_PERSONAL_PER_SECOND = 2_000
# A publisher hands over to a fresh invocation when less than this (plus twice its last cycle and the wait before the
# next) is left of its own.
HAND_OVER_BEFORE_MS = 5_000
# A LiveEventsQueue message holds publishes up to this many bytes: ten of them stay under SendMessageBatch's 256 KiB.
BYTES_PER_MESSAGE = 25_000


# --- waking the publisher ------------------------------------------------------------------------------------------


def wake_publisher(board: Board, lease: str | None) -> None:
    """If the caller took the publishing lease, wake a publisher (see `wake_publishers`)."""
    wake_publishers([(board, lease)])


def wake_publishers(leases: Iterable[tuple[Board, str | None]]) -> None:
    """Wake a publisher for each board whose publishing lease the caller took: one SQS request for up to ten boards
    (a score feeding three boards costs one). SQS or Redis trouble is logged, not raised: what took a lease is already
    done, and the next change (or the safety net) publishes it."""
    taken = [(board, lease) for board, lease in leases if lease is not None]
    for batch in batched(taken, 10, strict=False):
        entries: Any = [
            {"Id": str(index), "MessageBody": _wake_up_body(board, lease)} for index, (board, lease) in enumerate(batch)
        ]
        try:
            response = sqs().send_message_batch(QueueUrl=settings.board_changes_queue_url, Entries=entries)
            failed = {int(entry["Id"]) for entry in response.get("Failed", [])}
        except (BotoCoreError, ClientError) as exc:
            logger.warning("could not wake the publishers", extra={"error": type(exc).__name__})
            failed = set(range(len(batch)))
        for index in sorted(failed):
            board, lease = batch[index]
            with suppress(BoardUnavailable):  # then the lease expires on its own
                board.abandon(lease)


def wake_if_behind(board: Board) -> bool:
    """The safety net: wake a publisher if something waits (a wake-up was lost, a publisher crashed) and no publisher
    is at it. Each board gets an invocation of its own, however busy the others are."""
    lease = board.claim()
    wake_publisher(board, lease)
    return lease is not None


def _send_wake_up(board: Board, lease: str, delay_seconds: int = 0) -> None:
    body = _wake_up_body(board, lease)
    sqs().send_message(QueueUrl=settings.board_changes_queue_url, MessageBody=body, DelaySeconds=delay_seconds)


def _wake_up_body(board: Board, lease: str) -> str:
    return _sqs_body({"lease": lease, "board": board.name, "season": board.season})


def _sqs_body(message: dict[str, Any]) -> str:
    # ASCII only: SQS refuses some characters a display name may hold (U+FFFE, U+FFFF); JSON escapes them all.
    return json.dumps(message, separators=(",", ":"))


@dataclass(frozen=True)
class WakeUp:
    """What a wake-up hands to the publisher: the season to publish and its lease."""

    lease: str
    board: str
    season: str

    @classmethod
    def of(cls, message_body: str) -> "WakeUp":
        fields = json.loads(message_body)
        wake_up = cls(fields["lease"], fields["board"], fields["season"])
        if not all(isinstance(value, str) for value in (wake_up.lease, wake_up.board, wake_up.season)):
            raise ValueError("a wake-up names its lease, board and season")
        return wake_up


# --- the budget ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """How much a board may publish: deliveries per hour, and the slowest and fastest top-10 rates."""

    deliveries_per_hour: float
    min_per_second: float
    max_per_second: float

    @classmethod
    def configured(cls) -> "Budget":
        """The budget the template gives the publisher."""
        return cls(
            settings.live_deliveries_per_hour,
            settings.live_min_publishes_per_second,
            settings.live_max_publishes_per_second,
        )

    @property
    def deliveries_per_second(self) -> float:
        return self.deliveries_per_hour / 3600

    def top10_rate(self, viewers: float, personal_per_second: float) -> float:
        """Top-10 publishes a second for a board with `viewers`: what the watchers' pushes leave of the budget,
        spread over the viewers, within the floor and the ceiling (the floor wins over the budget)."""
        spare = max(self.deliveries_per_second - personal_per_second, 0.0)
        return min(self.max_per_second, max(self.min_per_second, spare / max(viewers, 1.0)))

    def personal_allowance(self, cycle_seconds: float) -> int:
        """The most watchers' pushes one cycle of `cycle_seconds` may send (at least one, so every change gets out)."""
        per_second = min(self.deliveries_per_second, MAX_PERSONAL_PER_SECOND)
        return max(1, min(MAX_PERSONAL_PER_SECOND, int(per_second * cycle_seconds)))


# --- publishing ----------------------------------------------------------------------------------------------------


@dataclass
class Published:
    """What a publisher did: cycles run, publishes queued and the SQS requests that queued them."""

    cycles: int = 0
    publishes: int = 0
    requests: int = 0


def publish_changes(
    board: Board, lease: str, remaining_ms: Callable[[], int], budget: Budget | None = None
) -> Published:
    """Publish cycles while something waits and this publisher holds `lease`."""
    budget = budget or Budget.configured()
    done = Published()
    try:
        lease = board.adopt(lease)
        start, personal_per_second = 0, 0.0
        while True:
            started = time.monotonic()
            snapshot = board.snapshot()
            cycle_seconds = 1 / budget.top10_rate(snapshot.viewers, personal_per_second)
            allowance = budget.personal_allowance(cycle_seconds)
            # The lease is held through the whole cycle, the wait before the next one included.
            ranks = board.rank_changes(lease, allowance, start, hold_ms=int(cycle_seconds * 1000))
            publishes = _publishes(board.name, board.season, snapshot, ranks)
            done.requests += _queue(publishes)
            done.cycles, done.publishes = done.cycles + 1, done.publishes + len(publishes)
            # A change made from now on waits for the next cycle, however soon it comes: the budget's rate holds
            # across bursts and publishers, while the first change after a quiet spell goes out at once.
            wait = max(0.0, cycle_seconds - (time.monotonic() - started))
            cycle_ms = (time.monotonic() - started) * 1000
            if remaining_ms() < HAND_OVER_BEFORE_MS + 2 * cycle_ms + 1000 * wait:
                # A fresh invocation goes on after the wait, with the lease (it releases it if nothing changed).
                board.finish_cycle(lease, snapshot, more=True, hold_ms=int(wait * 1000))
                _send_wake_up(board, lease, delay_seconds=math.ceil(wait))
                done.requests += 1
                return done
            time.sleep(wait)
            if not board.finish_cycle(lease, snapshot, ranks.more):
                return done
            start, personal_per_second = ranks.next_start, len(ranks.changes) / cycle_seconds
    except LeaseLost:
        return done  # another publisher took over; it publishes everything from here on
    except Exception:
        board.abandon(lease)
        raise


def _publishes(board_name: str, season: str, snapshot: Snapshot, ranks: RankChanges) -> list[Publish]:
    """A cycle's publishes: the top 10 first if it changed, then each watcher's new standing on their own channel."""
    top10 = top10_message(board_name, season, snapshot)
    publishes = [Publish(board_channel(board_name), (top10,))] if snapshot.top_is_new else []
    for change in ranks.changes:
        message = rank_message(board_name, season, change, ranks.seq)
        publishes.append(Publish(player_channel(change.standing.user_id, board_name), (message,)))
    return publishes


def messages_of(publishes: Iterable[Publish]) -> Iterator[str]:
    """LiveEventsQueue message bodies holding the publishes, in order, each at most BYTES_PER_MESSAGE."""
    frame = len(_sqs_body({"publishes": []}))
    batch: list[dict[str, Any]] = []
    size = frame
    for publish in publishes:
        body = publish.body()
        cost = len(_sqs_body(body)) + 1
        if batch and size + cost > BYTES_PER_MESSAGE:
            yield _sqs_body({"publishes": batch})
            batch, size = [], frame
        batch.append(body)
        size += cost
    if batch:
        yield _sqs_body({"publishes": batch})


def _queue(publishes: Sequence[Publish]) -> int:
    """Send the publishes to LiveEventsQueue, ten messages per SendMessageBatch; the requests made. A message SQS
    refuses fails the cycle: the lease is given back and the change published by the next publisher."""
    requests = 0
    for batch in batched(messages_of(publishes), 10, strict=False):
        entries: Any = [{"Id": str(index), "MessageBody": body} for index, body in enumerate(batch)]
        response = sqs().send_message_batch(QueueUrl=settings.live_events_queue_url, Entries=entries)
        requests += 1
        if response.get("Failed"):
            raise RuntimeError(f"LiveEventsQueue refused {len(response['Failed'])} messages")
    return requests
