"""Live pushes on the local runtime: from an accepted score to the top 10 arriving at WebSocket clients.

`python -m local` runs as `make run` runs it (its own moto, Redis, worker processes), on free ports. One watcher
player opens CLIENTS connections (through $connect and the authorizer, as a browser would); a scorer player then
posts scores that change the top 10, one at a time. For each score, the clock starts when POST /v1/scores answers
202 (the score is accepted) and stops, per client, when that client receives a top10 message with the scorer's new
total. The path measured: SQS -> ApplyScores -> Redis and the publishing lease -> BoardChangesQueue -> PublishBoard
(snapshot, the connections scanned from DynamoDB) -> FanoutQueue in chunks -> PostToConnections (boto3, parallel
posts) -> the @connections endpoint -> the socket.

`fanout_10k_s` is the posting alone: 10,000 clients connected, one board cut into chunks the way PublishBoard cuts
it (`live._chunks`) and sent to FanoutQueue; the clock runs from the sending to the last client's arrival. It covers
the FanoutQueue hop, the PostToConnections workers' boto3 posts and the @connections endpoint.
"""

import asyncio
import json
import os
import resource
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import boto3

from leaderboard import live
from local.processes import RuntimeProcess, free_port, start_serving
from local.services import Endpoints

ROOT = Path(__file__).parent.parent
PASSWORD = "correct horse battery"  # noqa: S105 - a throwaway benchmark player
SAMPLES = {1: 20, 1000: 10}
FANOUT_CLIENTS = 10_000
CONNECTS_IN_FLIGHT = 64
PUSH_TIMEOUT_SECONDS = 60


class LocalStack(RuntimeProcess):
    """`python -m local` on free ports, stopped with Ctrl-C (SIGINT) as a user would."""

    def __init__(self) -> None:
        self.api_port, self.ws_port = free_port(), free_port()
        state_dir = Path(tempfile.mkdtemp(prefix="bench-live-"))
        environment = os.environ | {"LOCAL_API_PORT": str(self.api_port), "LOCAL_WS_PORT": str(self.ws_port)}
        super().__init__(state_dir, state_dir / "runtime.log", environment)
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.ws_url = f"ws://127.0.0.1:{self.ws_port}"

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints.from_json(self.state_file.read_text())

    def aws(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoints.aws_endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",  # noqa: S106 - moto's
        )


class Player:
    def __init__(self, http: aiohttp.ClientSession, api_url: str) -> None:
        self.http, self.api_url = http, api_url
        self.username = f"bench_{uuid.uuid4().hex[:10]}"
        self.user_id = self.token = ""

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
        return accepted


async def _connect(http: aiohttp.ClientSession, ws_url: str, token: str, gate: asyncio.Semaphore) -> Any:
    async with gate:
        for attempt in range(5):
            try:
                return await http.ws_connect(ws_url, params={"token": token}, heartbeat=None, max_msg_size=0)
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.5 * (attempt + 1))
        raise RuntimeError("could not connect")


async def _arrival(socket: Any, scorer_id: str, total: int) -> float:
    """The moment this client receives a top 10 that holds the scorer's `total`."""
    while True:
        message = json.loads(await socket.receive_str())
        if message.get("type") == "top10" and any(
            entry["user_id"] == scorer_id and entry["score"] == total for entry in message["items"]
        ):
            return time.monotonic()


async def _clients(http: aiohttp.ClientSession, stack: LocalStack, token: str, count: int) -> list[Any]:
    print(f"  connecting {count:,} clients", flush=True)
    gate = asyncio.Semaphore(CONNECTS_IN_FLIGHT)
    return list(await asyncio.gather(*(_connect(http, stack.ws_url, token, gate) for _ in range(count))))


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=120))


async def _push_latencies(stack: LocalStack, clients: int, samples: int) -> list[float]:
    """Push latencies in ms, one per client per sample (after one score that warms every function up)."""
    async with _session() as http:
        watcher = await Player(http, stack.api_url).join()
        scorer = await Player(http, stack.api_url).join()
        sockets = await _clients(http, stack, watcher.token, clients)
        latencies: list[float] = []
        total = 0
        try:
            for sample in range(samples + 1):
                total += 1000
                waiting = [asyncio.ensure_future(_arrival(socket, scorer.user_id, total)) for socket in sockets]
                accepted = await scorer.play(1000)
                async with asyncio.timeout(PUSH_TIMEOUT_SECONDS):
                    arrivals = await asyncio.gather(*waiting)
                if sample > 0:
                    latencies += [(arrival - accepted) * 1000 for arrival in arrivals]
                await asyncio.sleep(0.5)  # apart from the previous publishing cycle
        finally:
            await asyncio.gather(*(socket.close() for socket in sockets))
        return latencies


async def _post_cpu_ms(stack: LocalStack, posts: int = 2000) -> float:
    """CPU milliseconds one boto3 post_to_connection costs its caller (sequential posts to one live connection)."""
    async with _session() as http:
        watcher = await Player(http, stack.api_url).join()
        (socket,) = await _clients(http, stack, watcher.token, 1)
        (connection_id,) = _connection_ids(stack, watcher.user_id)
        client = boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=stack.endpoints.connections_url,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",  # noqa: S106 - nothing checks it locally
        )

        def post_all() -> float:
            started = time.process_time()
            for _ in range(posts):
                client.post_to_connection(ConnectionId=connection_id, Data=b'{"type":"top10"}')
            return (time.process_time() - started) * 1000 / posts

        reading = asyncio.ensure_future(_drain(socket, posts))
        cpu_ms = await asyncio.to_thread(post_all)
        await reading
        await socket.close()
        return cpu_ms


def _connection_ids(stack: LocalStack, user_id: str) -> list[str]:
    """The player's connections, as $connect recorded them (earlier measurements' may still be closing)."""
    pages = (
        stack.aws("dynamodb")
        .get_paginator("scan")
        .paginate(
            TableName=stack.endpoints.identities["ConnectionsTable"].ref,
            FilterExpression="user_id = :user",
            ExpressionAttributeValues={":user": {"S": user_id}},
        )
    )
    return [item["connection_id"]["S"] for page in pages for item in page["Items"]]


async def _drain(socket: Any, count: int) -> None:
    for _ in range(count):
        await socket.receive_str()


async def _fanout_seconds(stack: LocalStack, clients: int) -> float:
    """Seconds from queuing one board for `clients` connections to the last arrival."""
    async with _session() as http:
        watcher = await Player(http, stack.api_url).join()
        sockets = await _clients(http, stack, watcher.token, clients)
        try:
            connection_ids = _connection_ids(stack, watcher.user_id)
            assert len(connection_ids) == clients, f"{len(connection_ids)} connections recorded for {clients} clients"
            board = '{"type":"top10","seq":1,"items":[]}'
            chunks = [chunk.body() for chunk in live._chunks([(board, connection_ids)])]
            sqs, queue_url = stack.aws("sqs"), stack.endpoints.queue_urls["FanoutQueue"]
            waiting = [asyncio.ensure_future(socket.receive_str()) for socket in sockets]
            started = time.monotonic()
            for first in range(0, len(chunks), 10):
                entries = [
                    {"Id": str(index), "MessageBody": body} for index, body in enumerate(chunks[first : first + 10])
                ]
                sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
            async with asyncio.timeout(PUSH_TIMEOUT_SECONDS):
                await asyncio.gather(*waiting)
            return time.monotonic() - started
        finally:
            await asyncio.gather(*(socket.close() for socket in sockets))


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run() -> dict[str, float]:
    # Each client holds a socket, and so does the runtime: 10,000 clients need more than the usual 1,024 files.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, FANOUT_CLIENTS + 1024)), hard))
    results: dict[str, float] = {}
    stack = start_serving(LocalStack, timeout_seconds=120)
    try:
        for clients, samples in SAMPLES.items():
            latencies = asyncio.run(_push_latencies(stack, clients, samples))
            for name, value in (("p50", statistics.median(latencies)), ("p99", _percentile(latencies, 0.99))):
                results[f"push_latency_{name}_ms_{clients}_clients"] = round(value, 1)
            print(
                f"  {clients:>6,} clients: p50 {results[f'push_latency_p50_ms_{clients}_clients']} ms,"
                f" p99 {results[f'push_latency_p99_ms_{clients}_clients']} ms ({len(latencies):,} arrivals)",
                flush=True,
            )
        results["boto3_post_cpu_ms"] = round(asyncio.run(_post_cpu_ms(stack)), 3)
        print(f"  boto3_post_cpu_ms {results['boto3_post_cpu_ms']}", flush=True)
        results["fanout_10k_s"] = round(asyncio.run(_fanout_seconds(stack, FANOUT_CLIENTS)), 2)
        print(f"  fanout_10k_s {results['fanout_10k_s']}", flush=True)
    finally:
        stack.stop()
    return results


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name:<40} {value}")
