"""The WebSocket API end to end: against the local runtime (ws://127.0.0.1:3001) or a deployed stack (WS_URL).

Clients follow the contract: they apply a board only if its `seq` is newer than the last they applied. On a shared
deployed board other players may be present: the tests look at their own players only."""

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from typing import Any

import aiohttp
import pytest
import requests

from tests.e2e.test_scores_api import Player, wait_for_total

pytestmark = pytest.mark.e2e
PUSH_TIMEOUT_SECONDS = 15


class Client:
    """One WebSocket connection, applying what it receives the way the contract asks clients to."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self.messages: list[dict[str, Any]] = []
        self.board: dict[str, Any] | None = None  # the newest top10 message

    async def send(self, message: dict[str, Any]) -> None:
        await self.socket.send_str(json.dumps(message))

    async def until(
        self, found: Callable[[dict[str, Any]], bool], seconds: float = PUSH_TIMEOUT_SECONDS
    ) -> dict[str, Any]:
        """Read messages until one satisfies `found`; return it."""
        async with asyncio.timeout(seconds):
            while True:
                message = json.loads(await self.socket.receive_str())
                self.messages.append(message)
                if message.get("type") == "top10" and (self.board is None or message["seq"] > self.board["seq"]):
                    self.board = message
                if found(message):
                    return message

    async def read_for(self, seconds: float) -> None:
        """Keep reading (and applying) for `seconds`."""
        with suppress(TimeoutError):
            await self.until(lambda message: False, seconds)


@asynccontextmanager
async def connected(ws_url: str, token: str) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, params={"token": token}) as socket:
        yield Client(socket)


async def handshake_status(ws_url: str, params: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(ws_url, params=params)
    return refused.value.status


def is_top10(message: dict[str, Any]) -> bool:
    return message.get("type") == "top10"


def test_a_connection_without_a_valid_token_fails_its_handshake(ws_url: str, api_url: str) -> None:
    player = Player(api_url)
    forged = player.access_token[:-4] + ("AAAA" if not player.access_token.endswith("AAAA") else "BBBB")

    assert asyncio.run(handshake_status(ws_url, {})) == 401
    assert asyncio.run(handshake_status(ws_url, {"token": "not-a-token"})) == 403
    assert asyncio.run(handshake_status(ws_url, {"token": forged})) == 403


def test_top10_answers_the_sender_only_and_other_messages_are_not_broadcast(ws_url: str, api_url: str) -> None:
    asker, bystander = Player(api_url), Player(api_url)
    asker.play(10)
    wait_for_total(api_url, asker.user_id, 10)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
        async with connected(ws_url, asker.access_token) as mine, connected(ws_url, bystander.access_token) as theirs:
            await mine.send({"action": "top10"})
            answer = await mine.until(is_top10)
            await mine.send({"action": "broadcast", "type": "top10", "items": [{"user_id": "forged", "rank": 1}]})
            refused = await mine.until(lambda message: "message" in message)
            await theirs.read_for(1.5)
            return answer, refused, theirs.messages

    answer, refused, bystander_saw = asyncio.run(scenario())

    top = requests.get(f"{api_url}/v1/scores", timeout=30).json()
    assert answer["items"] == top
    assert isinstance(answer["seq"], int)
    assert refused["message"] == "Forbidden"
    assert all("forged" not in json.dumps(message) for message in bystander_saw)


def test_a_score_is_pushed_to_connected_clients_and_the_player_learns_their_rank(ws_url: str, api_url: str) -> None:
    scorer, watcher = Player(api_url), Player(api_url)

    async def scenario() -> tuple[float, dict[str, Any], dict[str, Any]]:
        async with connected(ws_url, watcher.access_token) as watching, connected(ws_url, scorer.access_token) as own:
            await watching.send({"action": "top10"})
            before = await watching.until(is_top10)
            started = time.monotonic()
            await asyncio.to_thread(scorer.play, 1000)
            pushed = await watching.until(
                lambda message: (
                    is_top10(message)
                    and message["seq"] > before["seq"]
                    and any(entry["user_id"] == scorer.user_id for entry in message["items"])
                )
            )
            elapsed = time.monotonic() - started
            rank = await own.until(lambda message: message.get("type") == "rank")
            return elapsed, pushed, rank

    elapsed, pushed, rank = asyncio.run(scenario())

    mine = next(entry for entry in pushed["items"] if entry["user_id"] == scorer.user_id)
    assert mine["user_name"] == scorer.username
    assert [entry["rank"] for entry in pushed["items"]] == list(range(1, len(pushed["items"]) + 1))
    assert (rank["user_id"], rank["rank"], rank["score"]) == (scorer.user_id, mine["rank"], 1000)
    assert elapsed < PUSH_TIMEOUT_SECONDS


def test_under_a_burst_clients_get_few_boards_in_order_and_end_on_the_final_one(ws_url: str, api_url: str) -> None:
    players = [Player(api_url) for _ in range(5)]
    scores = {player.user_id: [100 + 10 * index + round for round in range(6)] for index, player in enumerate(players)}

    def play_all(player: Player) -> None:
        for score in scores[player.user_id]:
            player.play(score)

    async def scenario() -> tuple[list[Client], float]:
        async with (
            connected(ws_url, players[0].access_token) as first,
            connected(ws_url, players[1].access_token) as second,
        ):
            started = time.monotonic()
            with ThreadPoolExecutor(len(players)) as pool:
                await asyncio.gather(*(asyncio.wrap_future(pool.submit(play_all, player)) for player in players))
            for player in players:
                await asyncio.to_thread(wait_for_total, api_url, player.user_id, sum(scores[player.user_id]))
            for client in (first, second):
                await client.read_for(2)  # the last board, coalesced, may still be on its way
            return [first, second], time.monotonic() - started

    clients, seconds = asyncio.run(scenario())

    final = requests.get(f"{api_url}/v1/scores", timeout=30).json()
    for client in clients:
        boards = [message for message in client.messages if is_top10(message)]
        seqs = [board["seq"] for board in boards]
        assert client.board is not None
        assert client.board["items"] == final  # the newest board a client holds is the final one
        assert len(set(seqs)) == len(seqs)  # each board once; a client drops any that arrives after a newer one
        assert len(boards) <= 4 * seconds + 4  # coalesced: at most a few per second, not one per score (30)
        for board in boards:
            assert [entry["score"] for entry in board["items"]] == sorted(
                (entry["score"] for entry in board["items"]), reverse=True
            )
