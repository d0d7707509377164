"""The load that locust runs (``python -m load`` starts it; see load/__init__.py).

Players (``Player``) register, log in, play matches (start an action, wait until it is scorable, post a score, some
with an Idempotency-Key and some of those posted twice), read the top 10, their own standing, the boards and pages
of them, refresh their token and log in again. Every check is the contract's: a wrong status or a body that breaks
it is a failure in locust's statistics. Viewers (``Viewer``, ``LOAD_VIEWERS`` of them) are anonymous connections to
the live feed (AppSync Events' protocol, ``LOAD_WS_URL`` and ``LOAD_LIVE_HOST``), each subscribed to one board,
counting top-10 messages and applying them as the contract asks (an older ``seq`` than the one shown is dropped;
one ``seq`` names one board). At the end every player's accepted scores and every
viewer's findings go to ``LOAD_LEDGER`` (load/ledger.py), which the runner checks the boards against.

Locust runs users as gevent greenlets and monkey-patches the standard library when it is imported: everything here
blocks through patched sockets (requests, websocket-client, time.sleep); from clients.event_api only the pure
functions that build the handshake's headers are used, never its asyncio client.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
import websocket
from locust import HttpUser, User, between, constant, events, task
from locust.env import Environment
from locust.exception import StopUser

from clients.event_api import PROTOCOL, authorization_headers, header_subprotocol
from clients.play import wait_until_scorable
from load.ledger import ACTION_TYPE, AcceptedScore, Ledger, PlayerRecord, ViewerRecord

PASSWORD = "load test passphrase"  # noqa: S105 - throwaway players of a load test
ANONYMOUS = "anonymous"  # the live feed's authorization for a viewer who is not logged in
THINK_SECONDS = (0.2, 1.0)  # a player's pause between two things it does
PAGE_SIZE = 20
PAGES_READ = 5  # a page read is one of the first few of a board
FEED_READ_SECONDS = 1.0  # a viewer's task reads for this long, so a stop waits at most this for it
REPLY_TIMEOUT_SECONDS = 15.0
REQUEST_TIMEOUT_SECONDS = 30.0

LEDGER = Ledger()
BOARD_IDS = ["global"]  # replaced at the start by GET /v1/boards


def problem(response: requests.Response) -> str:
    return f"{response.status_code} {response.text[:200]}"


def ranked_in_order(items: list[dict[str, Any]], first_rank: int = 1) -> str | None:
    """What is wrong with standings (ranks consecutive from ``first_rank``, scores not rising), if anything."""
    ranks = [item["rank"] for item in items]
    scores = [item["score"] for item in items]
    if ranks != list(range(first_rank, first_rank + len(items))):
        return f"ranks {ranks} from {first_rank}"
    if scores != sorted(scores, reverse=True):
        return f"scores out of order {scores}"
    return None


class Player(HttpUser):
    """A player of the game through the public HTTP API."""

    wait_time = between(*THINK_SECONDS)

    def on_start(self) -> None:
        self.username = f"load_{uuid.uuid4().hex[:12]}"
        self.device_token: str | None = None
        self.refresh_token = ""
        self.standing_seen: int | None = None  # the newest total read on the global board
        self.last_status = 0
        registered = self.call("POST", "/v1/users", {201}, body={"username": self.username, "password": PASSWORD})
        if registered is None:
            raise StopUser
        self.record = PlayerRecord(user_id=str(registered["user_id"]))
        LEDGER.players.append(self.record)
        if not self.log_in():
            raise StopUser

    def call(
        self,
        method: str,
        path: str,
        expected: set[int],
        *,
        name: str | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        check: Callable[[Any], str | None] | None = None,
    ) -> Any:
        """One request, reported under ``name`` (the route); its JSON body when the status is expected and ``check``
        finds nothing wrong with it, else None and a failure."""
        with self.client.request(
            method,
            path,
            name=name or path,
            json=body,
            headers=headers,
            timeout=REQUEST_TIMEOUT_SECONDS,
            catch_response=True,
        ) as response:
            self.last_status = response.status_code
            if response.status_code not in expected:
                response.failure(problem(response))
                return None
            try:
                answer = response.json() if response.content else {}
            except ValueError:
                response.failure(f"not JSON: {problem(response)}")
                return None
            wrong = check(answer) if check else None
            if wrong:
                response.failure(wrong)
                return None
            response.success()
            return answer

    def log_in(self) -> bool:
        credentials = {"username": self.username, "password": PASSWORD}
        if self.device_token:
            credentials["device_token"] = self.device_token
        session = self.call("POST", "/v1/login", {200}, body=credentials)
        if session is None:
            return False
        self.device_token = session.get("device_token") or self.device_token
        self.use(session)
        return True

    def use(self, session: dict[str, Any]) -> None:
        self.refresh_token = str(session["refresh_token"])
        self.client.headers["Authorization"] = f"Bearer {session['access_token']}"

    @task(6)
    def play_a_match(self) -> None:
        action = self.call("POST", "/v1/actions", {201}, body={"type": ACTION_TYPE})
        if action is None:
            return
        wait_until_scorable(action)
        # At most half the cap: a deployed stack's points-per-hour limit stays far off however long a run is.
        score = 1 + secrets.randbelow(int(action["max_score"]) // 2)
        body = {"user_id": self.record.user_id, "score": score, "action_id": action["action_id"]}
        key = uuid.uuid4().hex if secrets.randbelow(3) == 0 else None
        accepted = self.post_score(body, key, "/v1/scores")
        if accepted is not None and key and secrets.randbelow(2) == 0:
            # A client's retry: the same key and body answer the first answer again, and count once.
            self.post_score(body, key, "/v1/scores (same Idempotency-Key)", first=accepted)

    def post_score(
        self, body: dict[str, Any], key: str | None, name: str, first: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """Post a score; record it if accepted (and not a replay). Until an answer comes its outcome is unknown."""
        headers = {"Idempotency-Key": key} if key else None
        self.record.unsettled += 1

        def as_first(answer: Any) -> str | None:
            return None if first is None or answer == first else f"the replay answered {answer}, first {first}"

        sent_at = time.time()
        answer = self.call("POST", "/v1/scores", {202}, name=name, body=body, headers=headers, check=as_first)
        # A post cut off (the user killed) or without an answer (status 0: the connection failed) stays unsettled.
        if self.last_status != 0:
            self.record.unsettled -= 1
        if answer is not None and first is None:
            self.record.accepted.append(AcceptedScore(int(body["score"]), sent_at, time.time()))
        return dict(answer) if answer is not None else None

    @task(3)
    def read_the_top10(self) -> None:
        def wrong(top: Any) -> str | None:
            return "more than 10" if len(top) > 10 else ranked_in_order(top)

        self.call("GET", "/v1/scores", {200}, check=wrong)

    @task(2)
    def read_my_standing(self) -> None:
        # Before the consumer applies a first score the player has none (404); after, the total only grows, up to
        # the sum of what was accepted.
        expected = {200} if self.standing_seen is not None else {200, 404}
        ceiling = self.record.accepted_points

        def wrong(mine: Any) -> str | None:
            if self.last_status == 404:
                return None
            total = int(mine["score"])
            if mine["user_id"] != self.record.user_id or not (self.standing_seen or 0) <= total <= ceiling:
                return f"total {total}: seen {self.standing_seen}, accepted {ceiling}"
            return ranked_in_order(mine["around"], mine["around"][0]["rank"] if mine["around"] else 1)

        mine = self.call("GET", f"/v1/scores/{self.record.user_id}", expected, name="/v1/scores/{user_id}", check=wrong)
        if mine and self.last_status == 200:
            self.standing_seen = int(mine["score"])

    @task(1)
    def list_the_boards(self) -> None:
        self.call("GET", "/v1/boards", {200}, check=lambda boards: None if boards else "no boards")

    @task(2)
    def read_a_board_page(self) -> None:
        board = BOARD_IDS[secrets.randbelow(len(BOARD_IDS))]
        offset = PAGE_SIZE * secrets.randbelow(PAGES_READ)
        path = f"/v1/boards/{board}/scores?offset={offset}&limit={PAGE_SIZE}"
        self.call(
            "GET",
            path,
            {200},
            name="/v1/boards/{board}/scores",
            check=lambda page: ranked_in_order(page["items"], offset + 1),
        )

    @task(1)
    def refresh_the_token(self) -> None:
        session = self.call("POST", "/v1/token/refresh", {200}, body={"refresh_token": self.refresh_token})
        if session is not None:
            self.use(session)

    @task(1)
    def log_in_again(self) -> None:
        self.log_in()


class Viewer(User):
    """An anonymous viewer of one board's live feed."""

    fixed_count = int(os.environ.get("LOAD_VIEWERS", "0"))
    wait_time = constant(0)
    viewers_started = 0

    def on_start(self) -> None:
        board = BOARD_IDS[Viewer.viewers_started % len(BOARD_IDS)]
        Viewer.viewers_started += 1
        self.record = ViewerRecord(board=board)
        LEDGER.viewers.append(self.record)
        self.live_host = os.environ["LOAD_LIVE_HOST"]
        self.subscription = uuid.uuid4().hex
        self.versions: dict[tuple[str, int], str] = {}  # (season, seq) -> the standings that version carried
        with self.timed("connect"):
            headers = authorization_headers(ANONYMOUS, self.live_host, {})
            self.socket = websocket.create_connection(
                os.environ["LOAD_WS_URL"],
                subprotocols=[PROTOCOL, header_subprotocol(headers)],
                timeout=REPLY_TIMEOUT_SECONDS,
            )
            self.send({"type": "connection_init"})
            self.until(lambda message: message.get("type") == "connection_ack")
        channel = f"/boards/{board}"
        with self.timed("subscribe"):
            authorization = authorization_headers(ANONYMOUS, self.live_host, {"channel": channel})
            subscribe = {"type": "subscribe", "id": self.subscription, "channel": channel}
            self.send(subscribe | {"authorization": authorization})
            reply = self.until(lambda message: message.get("id") == self.subscription and message["type"] != "data")
            if reply["type"] != "subscribe_success":
                raise ConnectionError(f"subscribe to {channel} refused: {reply}")

    @contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """Report a step of the handshake to locust (``WS connect``, ``WS subscribe``); a viewer that fails it stops."""
        started = time.perf_counter()
        failure: Exception | None = None
        try:
            yield
        except (websocket.WebSocketException, OSError, ValueError, KeyError) as failed:
            failure = failed
        self.environment.events.request.fire(
            request_type="WS",
            name=step,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=failure,
            context={},
        )
        if failure is not None:
            self.record.errors.append(f"{step}: {failure}")
            raise StopUser

    def send(self, message: dict[str, Any]) -> None:
        self.socket.send(json.dumps(message))

    def until(self, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Read messages (applying each) until one is ``wanted``; WebSocketTimeoutException after the reply timeout."""
        deadline = time.monotonic() + REPLY_TIMEOUT_SECONDS
        while True:
            self.socket.settimeout(max(0.1, deadline - time.monotonic()))
            message = json.loads(self.socket.recv())
            if wanted(message):
                return dict(message)
            self.apply(message)

    @task
    def read_the_feed(self) -> None:
        deadline = time.monotonic() + FEED_READ_SECONDS
        try:
            while (left := deadline - time.monotonic()) > 0:
                self.socket.settimeout(left)
                self.apply(json.loads(self.socket.recv()))
        except websocket.WebSocketTimeoutException:
            return
        except (websocket.WebSocketException, OSError, ValueError) as failed:
            self.fail(f"the connection failed: {failed!r}")
            raise StopUser from failed

    def apply(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "ka":
            self.record.keep_alives += 1
        elif kind == "data" and message.get("id") == self.subscription:
            event = json.loads(message["event"]) if isinstance(message["event"], str) else message["event"]
            if event.get("type") == "top10":
                self.apply_top10(event)
        elif kind in ("error", "connection_error", "subscribe_error", "broadcast_error") or kind is None:
            self.fail(f"the feed sent {message}")

    def apply_top10(self, top: dict[str, Any]) -> None:
        """Apply a top 10 as the contract asks of clients: publishes may arrive out of order, so one whose ``seq`` is
        not newer than the last applied (per season) is dropped, and counted. A ``seq`` names one version of the
        board: the same one with other standings is a failure, as is a top 10 out of order or of another board."""
        self.record.top10_messages += 1
        season, seq = str(top["season"]), int(top["seq"])
        standings = json.dumps(top["items"], sort_keys=True)
        if self.versions.setdefault((season, seq), standings) != standings:
            self.fail(f"seq {seq} of {self.record.board} {season} came with two different top 10s")
        if top["board"] != self.record.board:
            self.fail(f"a top 10 of {top['board']} on /boards/{self.record.board}")
        elif wrong := ranked_in_order(top["items"]):
            self.fail(f"top 10 of {self.record.board}: {wrong}")
        last = self.record.last_seq.get(season)
        if last is not None and seq <= last:
            self.record.out_of_order += 1
            return
        self.record.last_seq[season] = seq

    def fail(self, finding: str) -> None:
        """A finding about the feed: in the ledger and as a failure of ``WS feed`` in locust's statistics."""
        self.record.errors.append(finding)
        self.environment.events.request.fire(
            request_type="WS",
            name="feed",
            response_time=0,
            response_length=0,
            exception=AssertionError(finding),
            context={},
        )

    def on_stop(self) -> None:
        if hasattr(self, "socket"):
            self.socket.close()


@events.test_start.add_listener  # type: ignore[untyped-decorator]  # locust's events are untyped
def read_the_boards(environment: Environment, **_: Any) -> None:
    response = requests.get(f"{environment.host}/v1/boards", timeout=REQUEST_TIMEOUT_SECONDS)
    response.raise_for_status()
    BOARD_IDS[:] = [str(board["id"]) for board in response.json()]


@events.test_stop.add_listener  # type: ignore[untyped-decorator]
def write_the_ledger(environment: Environment, **_: Any) -> None:
    # Users are stopped by now (each after its task, within --stop-timeout): every answer has been recorded.
    if path := os.environ.get("LOAD_LEDGER"):
        LEDGER.write(Path(path))
