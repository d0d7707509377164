"""Faults under load on the local runtime (`python -m local`, what `make run` starts): players on several devices
score over HTTP on matches, which feed three boards (global, weekly, daily-best), while Redis is killed and comes back
empty, the consumer's worker is killed mid-batch, messages are delivered twice, poison arrives; then `make redrive`
runs on what reached the dead-letter queue. Each scenario runs its load for a few seconds, stops by itself, and waits
(bounded) until the 202s, the ledger and the boards agree (conftest.py).

The runtime is the tests' own (.local/faults), on a Redis the tests can kill (REDIS_URL), with two settings that make
recovery fit in a test: a minute of the schedules lasts 2 s (LOCAL_SCHEDULE_SECONDS_PER_MINUTE: RestoreIfLost runs
every 2 s), and ScoresQueue's visibility timeout is 5 s instead of the template's 60 s, so that a failed batch comes
back, and a poison message reaches the dead-letter queue after its 5 receives, within seconds. Local only: against a
deployed stack (API_URL) they are skipped, as they kill processes.
"""

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from leaderboard.board import Restoration
from leaderboard.game import Game, parse
from leaderboard.scores import PlayerChanged, PlayerLedger
from local.processes import LIFTED_ADDRESS_LIMITS, descendants
from local.services import Endpoints, aws_session, read_running_stack
from local.template import LOCAL_GAME_FILE
from tests.e2e.conftest import local_runtime
from tests.faults.conftest import (
    FIGURES,
    PROJECT_ROOT,
    STATE_DIR,
    Accepted,
    RedisProcess,
    Tally,
    board_standings,
    converged,
    disagreements,
    ledger_points,
    messages_in,
    record_figures,
    wait_for_room_before_a_reset,
    wait_until_converged,
)

PASSWORD = "correct horse battery"
# Devices per player: two players post from two devices at once (their writes race on one ledger item).
DEVICES = (2, 2, 1, 1, 1, 1)
LOAD_SECONDS = 8.0
CONVERGE_SECONDS = 60.0
VISIBILITY_SECONDS = 5
SCHEDULE_SECONDS_PER_MINUTE = "2"
REQUEST_TIMEOUT_SECONDS = 15
# What a scenario needs on the clock before the next reset (its load, its convergence, a margin).
SCENARIO_SECONDS = LOAD_SECONDS + CONVERGE_SECONDS + 30
# Where the kernel says a process sleeps when it waits for a pipe to be written to (the name varies across versions).
PIPE_READS = ("pipe_read", "anon_pipe_read", "pipe_wait")
# Bodies that can never be a player's change.
POISON = ("not json at all", '{"not": "a change"}', '{"user_id": "", "rev": 1, "seasons": [], "sent_at_ms": 1}')

pytestmark = pytest.mark.skipif(bool(os.environ.get("API_URL")), reason="kills processes of the local runtime")


# --- players ---------------------------------------------------------------------------------------------------------


@dataclass
class Player:
    user_id: str
    access_token: str
    keyed: bool  # posts with an Idempotency-Key (a retry is answered as the first attempt was)
    devices: int  # more than one: the player's posts race on their ledger item


def register(api_url: str, keyed: bool, devices: int) -> Player:
    username = f"faults_{uuid.uuid4().hex[:12]}"
    credentials = {"username": username, "password": PASSWORD}
    registered = requests.post(f"{api_url}/v1/users", json=credentials, timeout=60)
    assert registered.status_code == 201, registered.text
    tokens = requests.post(f"{api_url}/v1/login", json=credentials, timeout=60)
    assert tokens.status_code == 200, tokens.text
    return Player(registered.json()["user_id"], tokens.json()["access_token"], keyed, devices)


class Device:
    """One of a player's devices: starts a match, posts its score, again, until told to stop. A 429 or 503 is waited
    out (Retry-After) and the same score posted again; so is a request that got no answer. A score is recorded as
    accepted on its 202, or on a 409 after an attempt whose answer was lost (that attempt scored the action, which
    only this device knew of)."""

    def __init__(self, api_url: str, player: Player, tally: Tally, seed: str) -> None:
        self.api_url = api_url
        self.player = player
        self.tally = tally
        self.random = random.Random(seed)
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {player.access_token}"

    def play(self, stop: threading.Event) -> None:
        with self.http:
            while not stop.is_set():
                action_id = self._start(stop)
                if action_id is not None:
                    self._score(action_id, self.random.randint(1, 1000))
                stop.wait(self.random.uniform(0, 0.05))

    def _call(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> requests.Response | None:
        try:
            return self.http.post(f"{self.api_url}{path}", json=body, headers=headers, timeout=REQUEST_TIMEOUT_SECONDS)
        except requests.RequestException:
            return None

    def _start(self, stop: threading.Event) -> str | None:
        response = self._call("/v1/actions", {"type": "match"}, {})
        if response is not None and response.status_code == 201:
            return str(response.json()["action_id"])
        if response is not None and response.status_code not in (429, 503):
            self.tally.wrong(f"POST /v1/actions: {response.status_code} {response.text[:200]}")
        stop.wait(_retry_after(response))
        return None

    def _score(self, action_id: str, points: int) -> None:
        body = {"user_id": self.player.user_id, "score": points, "action_id": action_id}
        headers = {"Idempotency-Key": f"faults-{action_id}"} if self.player.keyed else {}
        earliest_ms = _now_ms()
        answer_lost = False
        for _ in range(40):  # bounded: about a minute of retries at most
            response = self._call("/v1/scores", body, headers)
            if response is None:
                answer_lost = True
            elif response.status_code == 202 or (response.status_code == 409 and answer_lost):
                self.tally.accept(Accepted(self.player.user_id, "match", points, earliest_ms, _now_ms()))
                return
            elif response.status_code in (429, 503):
                if "Retry-After" not in response.headers:
                    self.tally.wrong(f"POST /v1/scores: {response.status_code} without Retry-After")
            else:
                self.tally.wrong(f"POST /v1/scores: {response.status_code} {response.text[:200]}")
                return
            time.sleep(_retry_after(response))
        self.tally.wrong(f"POST /v1/scores: no answer for {action_id} after 40 attempts")


def _retry_after(response: requests.Response | None) -> float:
    value = response.headers.get("Retry-After", "") if response is not None else ""
    return min(float(value), 2.0) if value.isdigit() else 0.5


def _now_ms() -> int:
    return int(time.time() * 1000)


def waiting_for_an_event(pid: int) -> bool:
    """Whether a worker is blocked reading its requests pipe, between two events (Linux: where its main thread
    sleeps in the kernel). A worker starting up, or running an event, is anywhere else."""
    return Path(f"/proc/{pid}/wchan").read_text().strip() in PIPE_READS


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


# --- the stack under load ---------------------------------------------------------------------------------------------


@dataclass
class FaultyStack:
    api_url: str
    endpoints: Endpoints
    redis: RedisProcess
    log: Path
    players: list[Player]
    game: Game
    tally: Tally = field(default_factory=Tally)

    def __post_init__(self) -> None:
        session = aws_session(self.endpoints.session_token)
        self.sqs = session.client("sqs", endpoint_url=self.endpoints.aws_endpoint_url)
        self.dynamodb = session.client("dynamodb", endpoint_url=self.endpoints.aws_endpoint_url)
        self.queue_url = self.endpoints.queue_urls["ScoresQueue"]
        self.dead_letter_url = self.endpoints.queue_urls["ScoresDeadLetterQueue"]
        self.player_totals = self.endpoints.identities["PlayerTotalsTable"].ref

    @contextlib.contextmanager
    def load(self, players: list[Player] | None = None) -> Iterator[None]:
        """The players' devices (everyone's by default) playing for the block; they finish the score in hand and
        stop after it."""
        stop = threading.Event()
        devices = [
            Device(self.api_url, player, self.tally, seed=f"{player.user_id}/{device}")
            for player in (self.players if players is None else players)
            for device in range(player.devices)
        ]
        threads = [threading.Thread(target=device.play, args=(stop,), daemon=True) for device in devices]
        for thread in threads:
            thread.start()
        try:
            yield
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=90)
        assert not any(thread.is_alive() for thread in threads), "a device did not stop"

    def converge(self) -> float:
        """Seconds until the 202s, the ledger and every board agree (bounded); fails with what disagrees."""
        with self.redis.client() as client:

            def disagreeing() -> list[str]:
                expected = self.tally.expected(self.game)
                ledger = ledger_points(self.dynamodb, self.player_totals)
                return disagreements(expected, ledger, lambda key: board_standings(client, key))

            return wait_until_converged(lambda: converged(self.sqs, self.queue_url, disagreeing), CONVERGE_SECONDS)

    def log_size(self) -> int:
        return self.log.stat().st_size

    def log_since(self, offset: int) -> str:
        with self.log.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def messages_in(self, queue_url: str) -> int:
        return messages_in(self.sqs, queue_url)

    def consumer_workers(self) -> list[int]:
        """The process ids of ApplyScoresFunction's workers."""
        found = []
        for pid in descendants(self.endpoints.pid):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                if b"apply_scores.lambda_handler" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(pid)
        return found

    def a_change_for_each_player(self) -> list[str]:
        """A valid change of every player as their ledger stands (already applied: the boards have it)."""
        changes = []
        for player in self.players:
            item = self.dynamodb.get_item(
                TableName=self.player_totals, Key={"user_id": {"S": player.user_id}}, ConsistentRead=True
            )["Item"]
            ledger = PlayerLedger.of(item)
            changes.append(PlayerChanged(player.user_id, ledger.rev, tuple(ledger.seasons), _now_ms()).message())
        return changes


@pytest.fixture(scope="module")
def faulty(own_redis: RedisProcess) -> Iterator[FaultyStack]:
    environment = {name: value for name, value in os.environ.items() if name != "REDIS_URL"}
    environment |= {"REDIS_URL": own_redis.url, "LOCAL_SCHEDULE_SECONDS_PER_MINUTE": SCHEDULE_SECONDS_PER_MINUTE}
    with local_runtime(STATE_DIR, environment, LIFTED_ADDRESS_LIMITS) as api_url:
        endpoints = read_running_stack(STATE_DIR / "stack.json")
        assert endpoints is not None
        session = aws_session(endpoints.session_token)
        sqs = session.client("sqs", endpoint_url=endpoints.aws_endpoint_url)
        attributes = {"VisibilityTimeout": str(VISIBILITY_SECONDS)}
        sqs.set_queue_attributes(QueueUrl=endpoints.queue_urls["ScoresQueue"], Attributes=attributes)
        with ThreadPoolExecutor(len(DEVICES)) as pool:  # password hashing takes a while: all at once
            players = list(
                pool.map(lambda index: register(api_url, index % 2 == 0, DEVICES[index]), range(len(DEVICES)))
            )
        game = parse(LOCAL_GAME_FILE.read_text())
        faulty = FaultyStack(api_url, endpoints, own_redis, STATE_DIR / "runtime.log", players, game)
        wait_for_room_before_a_reset(30)
        with faulty.load():  # warm: every function's workers started, every player on the boards
            time.sleep(3)
        faulty.converge()
        yield faulty


def scenario(faulty: FaultyStack) -> tuple[int, int]:
    """Where a scenario starts: the scores accepted so far, and the runtime's log so far."""
    wait_for_room_before_a_reset(SCENARIO_SECONDS)
    return len(faulty.tally.accepted), faulty.log_size()


def settle(faulty: FaultyStack, name: str, accepted_before: int, **figures: Any) -> int:
    """The scenario's load is over: wait for the boards, check what the players were answered, keep the figures;
    the moment (ms) it converged."""
    seconds = faulty.converge()
    assert faulty.tally.wrong_answers == []
    accepted = len(faulty.tally.accepted) - accepted_before
    assert accepted > 0
    record_figures(name, scores_accepted=accepted, converged_in_seconds=round(seconds, 1), **figures)
    return _now_ms()


# --- the scenarios ----------------------------------------------------------------------------------------------------


def test_redis_killed_and_back_empty_under_load_is_restored_to_the_exact_totals(faulty: FaultyStack) -> None:
    accepted_before, log_start = scenario(faulty)
    # Half the players leave before Redis dies: only a rebuild can bring their points back to the empty Redis.
    leavers, stayers = faulty.players[::2], faulty.players[1::2]

    with faulty.load(stayers):
        with faulty.load(leavers):
            time.sleep(2)
        time.sleep(1)  # the leavers' last changes applied
        with faulty.redis.down():
            # Down: the consumer's batches fail (and wait in the queue); scores are still accepted.
            met = wait_for(lambda: "batch failed (BoardUnavailable" in faulty.log_since(log_start), 10)
            assert met, "no batch met it"
        restarted_ms = faulty.redis.started_at_ms
        time.sleep(3)

    converged_ms = settle(faulty, "redis killed and back empty", accepted_before)
    with faulty.redis.client() as client:
        restored = client.get(Restoration(client).keys["restored"])
    assert restored is not None
    assert int(restored) >= restarted_ms, "RestoreIfLost rebuilt the boards after Redis came back empty"
    FIGURES["redis killed and back empty"] |= {
        "rebuild_started_after_restart_seconds": round((int(restored) - restarted_ms) / 1000, 1),
        "converged_after_restart_seconds": round((converged_ms - restarted_ms) / 1000, 1),
    }


def test_the_consumer_killed_mid_batch_converges_without_counting_twice(faulty: FaultyStack) -> None:
    accepted_before, log_start = scenario(faulty)
    between_events: set[int] = set()  # workers seen waiting for their next event: past their start-up
    kills = 0

    def kill_a_worker_holding_a_batch() -> bool:
        """Kill one worker that is past its start-up and not waiting for an event: it holds a batch (SIGKILL, as
        Lambda's sandbox dying: no cleanup, no answer)."""
        nonlocal kills
        for pid in faulty.consumer_workers():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                if waiting_for_an_event(pid):
                    between_events.add(pid)
                elif pid in between_events:
                    os.kill(pid, signal.SIGKILL)
                    kills += 1
                    return True
        return False

    def kill_for(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.7 if kill_a_worker_holding_a_batch() else 0.03)

    with faulty.load():
        kill_for(LOAD_SECONDS)
    kill_for(1.5)  # and on the batches of the players' last scores

    settle(faulty, "consumer killed mid-batch", accepted_before, workers_killed=kills)
    log = faulty.log_since(log_start)
    died = log.count("batch failed (Runtime.ExitError: Runtime exited with error")
    FIGURES["consumer killed mid-batch"]["batches_whose_worker_died"] = died
    assert kills > 0, "no worker was seen holding a batch"
    assert died > 0, "a batch was under way when its worker was killed: it failed, and came back"
    assert "exited during init" not in log, "no worker was killed during its start-up"


def test_messages_delivered_twice_are_counted_once(faulty: FaultyStack) -> None:
    accepted_before, _ = scenario(faulty)
    # The changes the test sent again, by player and rev: each is copied once, never again. Nothing is received from
    # ScoresQueue to find them (a receive counts towards a message's 5 before the dead-letter queue).
    copied: dict[tuple[str, int], str] = {}

    with faulty.load():
        deadline = time.monotonic() + LOAD_SECONDS
        while time.monotonic() < deadline:
            # Each player's latest change, as their ledger stands, sent again at once: its own message is still in
            # the queue, or was just applied.
            for body in faulty.a_change_for_each_player():
                change = PlayerChanged.parse(body)
                if (change.user_id, change.rev) not in copied:
                    copied[change.user_id, change.rev] = body
                    faulty.sqs.send_message(QueueUrl=faulty.queue_url, MessageBody=body)
            time.sleep(0.1)
    # And every one of them a third time, late: after the changes that followed them were applied.
    for body in copied.values():
        faulty.sqs.send_message(QueueUrl=faulty.queue_url, MessageBody=body)

    assert len(copied) >= 10
    settle(faulty, "messages delivered twice", accepted_before, messages_duplicated=len(copied))


def test_poison_reaches_the_dead_letter_queue_and_the_rest_of_its_batch_is_applied(faulty: FaultyStack) -> None:
    accepted_before, log_start = scenario(faulty)
    assert faulty.messages_in(faulty.dead_letter_url) == 0

    with faulty.load():
        time.sleep(1)
        # The poison in one batch with valid changes, so that they reach the consumer together.
        bodies = [*POISON, *faulty.a_change_for_each_player()]
        entries: Any = [{"Id": str(index), "MessageBody": body} for index, body in enumerate(bodies)]
        assert not faulty.sqs.send_message_batch(QueueUrl=faulty.queue_url, Entries=entries).get("Failed")
        time.sleep(LOAD_SECONDS - 1)

    started = time.monotonic()
    deadline = started + (5 + 2) * VISIBILITY_SECONDS
    while faulty.messages_in(faulty.dead_letter_url) < len(POISON) and time.monotonic() < deadline:
        time.sleep(0.5)
    dead_lettered_in = time.monotonic() - started
    settle(faulty, "poison messages", accepted_before, reached_the_dead_letter_queue_in_seconds=round(dead_lettered_in))
    dead = faulty.sqs.receive_message(QueueUrl=faulty.dead_letter_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
    assert sorted(message["Body"] for message in dead["Messages"]) == sorted(POISON), "the poison, and only it"
    log = faulty.log_since(log_start)
    mixed = [line for line in log.splitlines() if "failed (kept)" in line and " 0 deleted" not in line]
    assert mixed, "a batch with poison in it had the rest of its messages applied"


def redrive(*arguments: str) -> str:
    """`make redrive` (scripts/redrive.py) on this runtime's stack.json."""
    environment = {**os.environ, "LOCAL_STATE_DIR": str(STATE_DIR), "PYTHONPATH": f".{os.pathsep}layers/common"}
    done = subprocess.run(  # noqa: S603 - this project's own script
        [sys.executable, "-m", "scripts.redrive", *arguments],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_make_redrive_puts_valid_changes_back_once_and_leaves_the_poison(faulty: FaultyStack) -> None:
    accepted_before, _ = scenario(faulty)
    # The dead-letter queue as this scenario fills it, whatever an earlier one left there: poison, and a change of
    # every player the boards already have (it went back as is once, and reached the dead-letter queue again, say).
    faulty.sqs.purge_queue(QueueUrl=faulty.dead_letter_url)
    applied = faulty.a_change_for_each_player()
    entries: Any = [{"Id": str(index), "MessageBody": body} for index, body in enumerate([*POISON, *applied])]
    assert not faulty.sqs.send_message_batch(QueueUrl=faulty.dead_letter_url, Entries=entries).get("Failed")
    waiting = len(POISON) + len(applied)
    assert faulty.messages_in(faulty.dead_letter_url) == waiting

    shown = redrive("--dry-run")
    assert f"{len(applied)} to send back" in shown
    assert faulty.messages_in(faulty.dead_letter_url) == waiting, "a dry run moves nothing"

    with faulty.load():
        moved = redrive()
        again = redrive()  # nothing valid is left: the second run sends nothing
    assert f"sent back {len(applied)}" in moved
    assert f"left {len(POISON)} invalid" in moved
    assert "sent back 0" in again
    assert faulty.messages_in(faulty.dead_letter_url) == len(POISON)
    settle(faulty, "make redrive", accepted_before, redriven=len(applied))

    assert f"deleted {len(POISON)} invalid" in redrive("--delete-invalid")
    assert faulty.messages_in(faulty.dead_letter_url) == 0
