"""Faults under load: players score concurrently on actions that feed several boards (global, weekly, daily-best) while
something breaks. Each scenario stops by itself, waits (bounded) for the boards to converge, then checks DESIGN.md §4:
every score answered 202 counts exactly once on every board it feeds (the expected totals come from the test's own
record of its 202s, never from the system), and every board in Redis holds exactly the points of the ledger in
DynamoDB, in the ledger's order.

- test_faults_on_the_local_runtime.py: `python -m local` (what `make run` starts) in .local/faults, on a Redis of
  the tests' own (REDIS_URL) that a scenario kills and starts again, empty, on the same port. Players play over HTTP.
- test_faults_in_process.py: the handlers in this process (moto's mock_aws, the same Redis, the integration tier's
  `stack` and `game`), for what the runtime cannot do: DynamoDB throttling (moto never throttles) and a season's reset
  (a clock the test moves).

The figures (scores accepted, seconds to converge) are printed at the end and kept in .local/faults/figures.json.
"""

import contextlib
import json
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from leaderboard.board import Board, BoardUnavailable, PlayerTotal, RedisClient, Standing
from leaderboard.game import Game
from leaderboard.scores import PlayerLedger, SeasonKey
from local.processes import free_port, start_process, stop_process
from local.services import redis_server_command
from tests.integration.conftest import (  # noqa: F401 - the integration tier's fixtures, on this folder's Redis
    RedisServer,
    game,
    stack,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
STATE_DIR = PROJECT_ROOT / ".local" / "faults"
_DAY_MS = 86_400_000

# Per scenario: what it did and how long the boards took to converge; printed at the end of the session.
FIGURES: dict[str, dict[str, Any]] = {}


# --- a Redis that can be killed ------------------------------------------------------------------------------------


class RedisProcess:
    """A redis-server of the tests' own on a port it keeps: `kill` is SIGKILL (a cache node that crashed), `start`
    brings it back empty (no persistence) where every function's REDIS_URL still points."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self.started_at_ms = 0  # when it was last started (empty)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it (empty) and wait until it answers."""
        self.folder.mkdir(parents=True, exist_ok=True)
        arguments = [*redis_server_command(), "--port", str(self.port), "--bind", "127.0.0.1"]
        arguments += ["--save", "", "--appendonly", "no", "--dir", str(self.folder)]
        self.started_at_ms = int(time.time() * 1000)
        self._process = start_process(arguments, log_path=self.folder / "redis.log")
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if self._process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server did not start; see {self.folder / 'redis.log'}") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: everything it held is gone."""
        assert self._process is not None
        self._process.kill()
        self._process.wait()

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        """Killed for the block, and started again (empty) when it ends, however it ends: a scenario that fails while
        Redis is down leaves it running for the next."""
        self.kill()
        try:
            yield
        finally:
            self.start()

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process)
            self._process = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=2)


@pytest.fixture(scope="session")
def own_redis() -> Iterator[RedisProcess]:
    server = RedisProcess(STATE_DIR / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_server(own_redis: RedisProcess) -> RedisServer:
    """The Redis of the integration tier's `stack` and `game`: this folder's own."""
    return RedisServer(own_redis.url)


# --- what the players were told, and what the system holds ----------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    """A score answered 202, and when: it was accepted between the request going out and its answer coming back."""

    user_id: str
    action_type: str
    points: int
    earliest_ms: int
    latest_ms: int


class Tally:
    """The scores the API accepted, as the players saw them, and anything it answered that it should not have."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.accepted: list[Accepted] = []
        self.wrong_answers: list[str] = []

    def accept(self, score: Accepted) -> None:
        with self._lock:
            self.accepted.append(score)

    def wrong(self, what: str) -> None:
        with self._lock:
            self.wrong_answers.append(what)

    def expected(self, definitions: Game) -> dict[SeasonKey, dict[str, int]]:
        """Per season of every board: each player's points, from the 202s alone (a sum board adds them up, a best
        board keeps the highest)."""
        with self._lock:
            accepted = list(self.accepted)
        totals: dict[SeasonKey, dict[str, int]] = defaultdict(dict)
        for score in accepted:
            for definition in definitions.boards_fed_by(score.action_type, by_server=False):
                season = definition.season_at(score.earliest_ms)
                assert season == definition.season_at(score.latest_ms), f"a reset fell within the request of {score}"
                points = totals[definition.id, season.name]
                held = points.get(score.user_id, 0)
                if definition.aggregate == "sum":
                    points[score.user_id] = held + score.points
                else:
                    points[score.user_id] = max(held, score.points)
        return dict(totals)


def ledger_points(dynamodb: Any, table: str) -> dict[SeasonKey, dict[str, PlayerTotal]]:
    """Every player's points per season as the ledger in DynamoDB holds them (banned players aside: hidden)."""
    points: dict[SeasonKey, dict[str, PlayerTotal]] = defaultdict(dict)
    for page in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        for item in page["Items"]:
            ledger = PlayerLedger.of(item)
            if ledger.banned_at_ms is None:
                user_id = item["user_id"]["S"]
                for key, (total, reached_at_ms) in ledger.seasons.items():
                    points[key][user_id] = PlayerTotal(user_id, ledger.display_name, total, reached_at_ms)
    return dict(points)


def board_standings(client: RedisClient, key: SeasonKey) -> list[Standing]:
    """A season's whole ranking, as Redis holds it."""
    board = Board(key[0], key[1], client)
    return board.page(0, max(board.size(), 1))


def disagreements(
    expected: dict[SeasonKey, dict[str, int]],
    ledger: dict[SeasonKey, dict[str, PlayerTotal]],
    read_board: Callable[[SeasonKey], list[Standing]],
) -> list[str]:
    """What stands between the three and agreement: the 202s, the ledger and the boards, season by season."""
    found = []
    for key in sorted(expected.keys() | ledger.keys()):
        held = {user_id: total.total for user_id, total in ledger.get(key, {}).items()}
        if held != expected.get(key, {}):
            found.append(f"{key}: ledger != 202s: {_differences(held, expected.get(key, {}))}")
        standings = read_board(key)
        shown = {standing.user_id: standing.score for standing in standings}
        if shown != held:
            found.append(f"{key}: board != ledger: {_differences(shown, held)}")
            continue
        names = {standing.user_id: standing.user_name for standing in standings}
        if names != {user_id: total.display_name for user_id, total in ledger.get(key, {}).items()}:
            found.append(f"{key}: the board's names are not the ledger's")
        # Rank order: more points first, and among equal points whoever reached them first.
        order = [(-standing.score, ledger[key][standing.user_id].reached_at_ms) for standing in standings]
        if order != sorted(order):
            found.append(f"{key}: the board's order is not the ledger's: {order}")
    return found


def _differences(seen: dict[str, int], wanted: dict[str, int]) -> dict[str, tuple[int | None, int | None]]:
    differing = sorted(user for user in seen.keys() | wanted.keys() if seen.get(user) != wanted.get(user))
    return {user[:8]: (seen.get(user), wanted.get(user)) for user in differing[:5]}


def messages_in(sqs: Any, queue_url: str) -> int:
    """The messages in a queue, visible or in flight."""
    names: Any = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[name]) for name in names)


def converged(sqs: Any, queue_url: str, disagreeing: Callable[[], list[str]]) -> list[str]:
    """What stands between the stack and convergence: changes still in the queue (duplicates and redeliveries too:
    none may be left to change a board after the check), then the disagreements."""
    waiting = messages_in(sqs, queue_url)
    return [f"{waiting} messages still in ScoresQueue"] if waiting else disagreeing()


def wait_until_converged(check: Callable[[], list[str]], timeout_seconds: float) -> float:
    """Poll `check` until it finds nothing wrong; the seconds that took. Fails with what was still wrong after
    `timeout_seconds`."""
    started = time.monotonic()
    while True:
        try:
            wrong = check()
        except (redis.RedisError, BoardUnavailable) as exc:  # Redis still down or restarting
            wrong = [f"Redis: {type(exc).__name__}"]
        elapsed = time.monotonic() - started
        if not wrong:
            return elapsed
        if elapsed > timeout_seconds:
            pytest.fail(f"not converged after {timeout_seconds:.0f} s:\n" + "\n".join(wrong[:20]), pytrace=False)
        time.sleep(0.25)


def wait_for_room_before_a_reset(needed_seconds: float) -> None:
    """Start a scenario on the wall clock with at least `needed_seconds` before the next 00:00 UTC (when daily and
    weekly seasons reset), so that each of its 202s falls in one known season."""
    left_ms = _DAY_MS - int(time.time() * 1000) % _DAY_MS
    if left_ms < needed_seconds * 1000:
        time.sleep(left_ms / 1000 + 0.5)


# --- figures ---------------------------------------------------------------------------------------------------------


def record_figures(scenario: str, **figures: Any) -> None:
    FIGURES[scenario] = figures


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("faults: figures")
    for scenario, figures in FIGURES.items():
        terminalreporter.write_line(f"{scenario}: " + ", ".join(f"{name} {value}" for name, value in figures.items()))
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    (STATE_DIR / "figures.json").write_text(json.dumps(FIGURES, indent=2) + "\n")
