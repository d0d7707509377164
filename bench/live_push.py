"""The live feed on the local runtime: push latency, the publisher's work per change, and what an hour costs.

`python -m local` runs as `make run` runs it (its own moto, Redis, worker processes, the emulated Event API), on free
ports. Subscribers are AppSync Events clients (`clients.event_api`), each on a connection of its own, subscribed to
`/boards/global` as `anonymous` (through the authorizer and the onSubscribe handler, as a browser would).

- Push latency: a scorer posts scores that change the top 10, one at a time, each once no publisher is at work on any
  board (the previous cycles' waits, the budget's pacing, are over); the clock starts when POST /v1/scores answers 202
  and stops, per subscriber, when that subscriber receives a top10 of the global board holding the scorer's new total.
  The path: SQS -> ApplyScores -> Redis and the publishing lease -> BoardChangesQueue -> PublishBoard ->
  LiveEventsQueue -> PublishEvents (SigV4, HTTP) -> the Event API -> every subscriber.
- The publisher's work per board change, at 10 and at 10,000 subscribers: the AWS requests PublishBoard and
  PublishEvents make (SQS requests from PublishBoard's log, HTTP publishes from PublishEvents'), and the CPU their
  worker processes spend (/proc/<pid>/task/*/schedstat, nanoseconds), over scores made one at a time, divided by the
  board changes they made (a score changes every board of the template's game whose standings it moves: the global
  and weekly boards each time, the daily best while the scorer beats their best; counted from PublishBoard's log, one
  top-10 publish per board change, as nobody here watches their own standing).
- Cost: scores posted as fast as the scorer can for COST_SECONDS, so the board changes all the time, with the
  budget at its defaults; the Event API's meter (`/_local/usage`) counts the publishes and deliveries, priced at
  AppSync's $1 per million operations and $0.08 per million connection-minutes. The board's audience counter is set
  to the scenario's viewers (as if each had subscribed once in the current window): 1,000 with 1,000 real
  subscribers; 100,000 with 10,000 real ones (100,000 connections do not fit this machine), their deliveries
  scaled by 10.
"""

import asyncio
import gc
import json
import os
import resource
import statistics
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import aiohttp
import redis

from bench import template_game
from clients.event_api import EventSocket
from leaderboard.board import AUDIENCE_WINDOW_MS, Board
from leaderboard.game import parse
from local.processes import RuntimeProcess, free_port, start_serving
from local.services import Endpoints

PASSWORD = "correct horse battery"  # noqa: S105 - a throwaway benchmark player
ANONYMOUS = "anonymous"
BOARD_NAME = "global"  # the template's all-time board
BOARD = f"/boards/{BOARD_NAME}"
SAMPLES = {1: 20, 1000: 10, 10_000: 5}
WORK_CHANGES = 30
WORK_SUBSCRIBERS = (10, 10_000)
COST_SECONDS = 30
COST_VIEWERS = {1000: 1000, 100_000: 10_000}  # viewers priced: real subscribers connected
CONNECTS_IN_FLIGHT = 64
PUSH_TIMEOUT_SECONDS = 60
# AppSync Events (us-east-1 list prices, DESIGN.md §7).
PRICE_PER_OPERATION = 1.00 / 1_000_000
PRICE_PER_CONNECTION_MINUTE = 0.08 / 1_000_000
# Viewers stay an hour: one connect and a subscription renewed every AUDIENCE_WINDOW_MS (each one subscribe and one
# onSubscribe invocation, both billed operations).
SUBSCRIPTIONS_PER_VIEWER_HOUR = 3_600_000 // AUDIENCE_WINDOW_MS


class LocalStack(RuntimeProcess):
    """`python -m local` on free ports, stopped with Ctrl-C (SIGINT) as a user would."""

    def __init__(self) -> None:
        self.api_port, self.live_port = free_port(), free_port()
        state_dir = Path(tempfile.mkdtemp(prefix="bench-live-"))
        environment = os.environ | {"LOCAL_API_PORT": str(self.api_port), "LOCAL_EVENT_API_PORT": str(self.live_port)}
        super().__init__(state_dir, state_dir / "runtime.log", environment)
        self.api_url = f"http://127.0.0.1:{self.api_port}"

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints.from_json(self.state_file.read_text())

    @property
    def live_host(self) -> str:
        return f"127.0.0.1:{self.live_port}"

    def usage(self) -> dict[str, Any]:
        url = self.endpoints.live_http_url.removesuffix("/event") + "/_local/usage"
        return dict(json.loads(_get(url)))

    def log_lines(self, function_id: str, since: int) -> list[dict[str, Any]]:
        """The structured log lines a function wrote to the runtime's output after byte `since`."""
        prefix = f"[{function_id}] "
        with self.log.open("rb") as output:
            output.seek(since)
            text = output.read().decode(errors="replace")
        return [json.loads(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix + "{")]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - our own loopback URL
        return bytes(answer.read())


class Player:
    def __init__(self, http: aiohttp.ClientSession, api_url: str) -> None:
        self.http, self.api_url = http, api_url
        self.username = f"bench_{uuid.uuid4().hex[:10]}"
        self.user_id = self.token = ""
        self.total = 0

    async def join(self) -> "Player":
        credentials = {"username": self.username, "password": PASSWORD}
        async with self.http.post(f"{self.api_url}/v1/users", json=credentials) as registered:
            assert registered.status == 201, await registered.text()
        async with self.http.post(f"{self.api_url}/v1/login", json=credentials) as login:
            tokens = await login.json()
        self.user_id, self.token = tokens["user_id"], tokens["access_token"]
        return self

    async def play(self, score: int) -> float:
        """Start an action and post its score; the moment the 202 arrived."""
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.http.post(f"{self.api_url}/v1/actions", json={}, headers=headers) as started:
            action_id = (await started.json())["action_id"]
        body = {"user_id": self.user_id, "score": score, "action_id": action_id}
        async with self.http.post(f"{self.api_url}/v1/scores", json=body, headers=headers) as posted:
            accepted = time.monotonic()
            assert posted.status == 202, await posted.text()
        self.total += score
        return accepted


@dataclass
class Subscriber:
    socket: EventSocket
    subscription: str

    async def arrival(self, scorer_id: str, total: int) -> float:
        """The moment this subscriber receives a top 10 that holds the scorer's `total`."""
        while True:
            message = await self.socket.next_event(self.subscription, timeout=PUSH_TIMEOUT_SECONDS)
            if message.get("type") == "top10" and any(
                entry["user_id"] == scorer_id and entry["score"] == total for entry in message["items"]
            ):
                return time.monotonic()

    async def drain(self) -> None:
        """Forget what arrived before the next measurement."""
        while self.socket.pending_events(self.subscription):
            await self.socket.next_event(self.subscription)


class Bench:
    """One stack, one event loop, subscribers added as the measurements go."""

    def __init__(self, stack: LocalStack, http: aiohttp.ClientSession) -> None:
        self.stack, self.http = stack, http
        self.subscribers: list[Subscriber] = []

    async def subscribe_up_to(self, count: int) -> None:
        missing = count - len(self.subscribers)
        if missing <= 0:
            return
        print(f"  subscribing {missing:,} more ({count:,} in all)", flush=True)
        gate = asyncio.Semaphore(CONNECTS_IN_FLIGHT)
        self.subscribers += await asyncio.gather(*(self._subscriber(gate) for _ in range(missing)))
        gc.collect()
        gc.freeze()  # 10,000 sockets' objects: keep the collector off them while measuring

    async def _subscriber(self, gate: asyncio.Semaphore) -> Subscriber:
        async with gate:
            for attempt in range(5):
                try:
                    socket = await EventSocket.connect(
                        self.stack.endpoints.live_url, self.stack.live_host, ANONYMOUS, session=self.http
                    )
                    return Subscriber(socket, await socket.subscribe(BOARD))
                except (aiohttp.ClientError, TimeoutError, ConnectionError):
                    await asyncio.sleep(0.5 * (attempt + 1))
            raise RuntimeError("could not subscribe")

    async def latencies(self, scorer: Player, samples: int) -> list[float]:
        """Push latencies in ms, one per subscriber per sample (after one score that warms everything up)."""
        found: list[float] = []
        for sample in range(samples + 1):
            await asyncio.gather(*(subscriber.drain() for subscriber in self.subscribers))
            total = scorer.total + 1000
            waiting = [asyncio.ensure_future(s.arrival(scorer.user_id, total)) for s in self.subscribers]
            accepted = await scorer.play(1000)
            arrivals = await asyncio.gather(*waiting)
            if sample > 0:
                found += [(arrival - accepted) * 1000 for arrival in arrivals]
            await self._publisher_at_rest()
        return found

    async def _publisher_at_rest(self) -> None:
        """Wait until no publisher holds a board's lease (a score changes every board it feeds): the previous cycles
        (and their waits, the budget's pacing) are over, so the next score measures the path, not the pacing."""
        client = redis.Redis.from_url(self.stack.endpoints.redis_url)
        leases = [board.keys["publishing"] for board in _current_boards(client)]
        deadline = time.monotonic() + 15
        while client.exists(*leases) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)

    async def work_per_change(self, scorer: Player) -> tuple[float, float, float]:
        """The publisher's AWS requests and CPU ms per board change, and the board changes per score, over
        WORK_CHANGES scores made one at a time."""
        await self.latencies(scorer, 2)  # every worker warm
        since = self.stack.log.stat().st_size
        cpu_before = _publisher_cpu_ns()
        await self.latencies(scorer, WORK_CHANGES - 1)  # the warm-up score of latencies() counts too
        await asyncio.sleep(1.0)  # the last invocations' log lines
        cpu_ns = _publisher_cpu_ns() - cpu_before
        cycles = self.stack.log_lines("PublishBoardFunction", since)
        sqs_requests = sum(line.get("requests", 0) for line in cycles)
        # Nobody watches their own standing here: every publish is a board's new top 10, one per board change.
        changes = max(1, sum(line.get("publishes", 0) for line in cycles))
        publishes = sum(
            line.get("sent", 0) + line.get("failed", 0) for line in self.stack.log_lines("PublishEventsFunction", since)
        )
        return (sqs_requests + publishes) / changes, cpu_ns / 1e6 / changes, changes / WORK_CHANGES

    async def cost_per_hour(self, scorer: Player, viewers: int) -> dict[str, float]:
        """Scores as fast as the scorer can for COST_SECONDS with the audience counted at `viewers`; the hour priced
        from the publishes and deliveries metered."""
        _set_audience(self.stack, viewers)
        before = self.stack.usage()
        stop = time.monotonic() + COST_SECONDS
        while time.monotonic() < stop:
            await scorer.play(1000)
        await asyncio.sleep(2.0)  # the last cycle's publish
        after = self.stack.usage()
        await asyncio.gather(*(subscriber.drain() for subscriber in self.subscribers))
        elapsed = COST_SECONDS + 2.0
        per_hour = 3600 / elapsed
        publishes = (after["events_published"] - before["events_published"]) * per_hour
        deliveries = (after["deliveries"] - before["deliveries"]) * per_hour * viewers / len(self.subscribers)
        operations = publishes + deliveries + viewers * (1 + 2 * SUBSCRIPTIONS_PER_VIEWER_HOUR)
        cost = operations * PRICE_PER_OPERATION + viewers * 60 * PRICE_PER_CONNECTION_MINUTE
        return {"publishes_per_hour": publishes, "deliveries_per_hour": deliveries, "usd_per_hour": cost}

    async def close(self) -> None:
        await asyncio.gather(*(subscriber.socket.close() for subscriber in self.subscribers))


def _set_audience(stack: LocalStack, viewers: int) -> None:
    """The board's audience counter as if `viewers` had subscribed once in the current window (and none before),
    starting far enough from the window's end for a cost run to stay inside it."""
    window_s = AUDIENCE_WINDOW_MS / 1000
    if window_s - time.time() % window_s < COST_SECONDS + 10:
        time.sleep(window_s - time.time() % window_s + 1)
    client = redis.Redis.from_url(stack.endpoints.redis_url)
    now_key, before_key = _current_boards(client)[0].audience_keys()
    client.set(now_key, viewers, px=2 * AUDIENCE_WINDOW_MS)
    client.delete(before_key)


def _current_boards(client: "redis.Redis") -> list[Board]:
    """Every board's current season (the global board's first), with the keys the runtime's functions use: their
    environment is the template's, which sets no REDIS_KEY_PREFIX, so they use the default prefix whatever this
    process's is."""
    now_ms = int(time.time() * 1000)
    definitions = sorted(parse(template_game()).boards.values(), key=lambda definition: definition.id != BOARD_NAME)
    with mock.patch.dict(os.environ):
        os.environ.pop("REDIS_KEY_PREFIX", None)
        return [Board(definition.id, definition.season_at(now_ms).name, client) for definition in definitions]


def _publisher_cpu_ns() -> int:
    """CPU nanoseconds spent so far by the PublishBoard and PublishEvents worker processes (every thread)."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"worker.py" not in command or not (
                b"publish_board.lambda_handler" in command or b"publish_events.lambda_handler" in command
            ):
                continue
            for task in os.listdir(f"/proc/{pid}/task"):
                total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _measure(stack: LocalStack) -> dict[str, float]:
    results: dict[str, float] = {}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as http:
        scorer = await Player(http, stack.api_url).join()
        bench = Bench(stack, http)
        try:
            for subscribers in sorted({*SAMPLES, *WORK_SUBSCRIBERS, *COST_VIEWERS.values()}):
                await bench.subscribe_up_to(subscribers)
                if subscribers in SAMPLES:
                    latencies = await bench.latencies(scorer, SAMPLES[subscribers])
                    for name, value in (("p50", statistics.median(latencies)), ("p99", _percentile(latencies, 0.99))):
                        results[f"push_latency_{name}_ms_{subscribers}_clients"] = round(value, 1)
                    print(
                        f"  {subscribers:>6,} subscribers: p50 {results[f'push_latency_p50_ms_{subscribers}_clients']}"
                        f" ms, p99 {results[f'push_latency_p99_ms_{subscribers}_clients']} ms"
                        f" ({len(latencies):,} arrivals)",
                        flush=True,
                    )
                if subscribers in WORK_SUBSCRIBERS:
                    requests, cpu_ms, changes = await bench.work_per_change(scorer)
                    results[f"publisher_requests_per_change_{subscribers}_subscribers"] = round(requests, 2)
                    results[f"publisher_cpu_ms_per_change_{subscribers}_subscribers"] = round(cpu_ms, 2)
                    results[f"publisher_board_changes_per_score_{subscribers}_subscribers"] = round(changes, 2)
                    print(
                        f"  {subscribers:>6,} subscribers: {requests:.2f} requests, {cpu_ms:.2f} ms CPU per board"
                        f" change; {changes:.2f} board changes per score",
                        flush=True,
                    )
                for viewers, real in COST_VIEWERS.items():
                    if real == subscribers:
                        cost = await bench.cost_per_hour(scorer, viewers)
                        for name, value in cost.items():
                            results[f"live_{name}_{viewers}_viewers"] = round(value, 2)
                        print(f"  {viewers:>7,} viewers: ${cost['usd_per_hour']:.2f} an hour", flush=True)
        finally:
            await bench.close()
    return results


def run() -> dict[str, float]:
    # Each subscriber holds a socket, and so does the runtime: 10,000 need more than the usual 1,024 files.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 2 * max(SAMPLES) + 1024)), hard))
    stack = start_serving(LocalStack, timeout_seconds=120)
    try:
        return asyncio.run(_measure(stack))
    finally:
        stack.stop()


if __name__ == "__main__":
    for key, figure in run().items():
        print(f"{key:<55} {figure}")
