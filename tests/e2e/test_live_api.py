"""The live feed end to end over AppSync Events' own protocol: against the local runtime's emulation or a deployed
stack (WS_URL, LIVE_HTTP_URL).

Clients follow the contract: they apply a board only if its `seq` is newer than the last they applied. On a shared
deployed board other players may be present: the tests look at their own players only."""

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from typing import Any

import pytest
import requests

from clients.event_api import EventSocket, PublishError, SubscribeError, publish_http
from tests.e2e.conftest import LiveFeed
from tests.e2e.test_scores_api import Player, wait_for_total

pytestmark = pytest.mark.e2e
PUSH_TIMEOUT_SECONDS = 15
BOARD = "/boards/global"
ANONYMOUS = "anonymous"  # the authorization value of a viewer who is not logged in


class Viewer:
    """One subscription, applying what it receives the way the contract asks clients to."""

    def __init__(self, socket: EventSocket, subscription: str) -> None:
        self.socket = socket
        self.subscription = subscription
        self.messages: list[dict[str, Any]] = []
        self.board: dict[str, Any] | None = None  # the newest top10 message

    async def until(self, found: Callable[[dict[str, Any]], bool], seconds: float = PUSH_TIMEOUT_SECONDS) -> Any:
        """Read events until one satisfies `found`; return it."""
        async with asyncio.timeout(seconds):
            while True:
                message = await self.socket.next_event(self.subscription, timeout=seconds)
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
async def watching(live: LiveFeed, channel: str, token: str = ANONYMOUS) -> AsyncIterator[Viewer]:
    async with await EventSocket.connect(live.realtime_url, live.http_host, token) as socket:
        yield Viewer(socket, await socket.subscribe(channel))


def is_top10(message: dict[str, Any]) -> bool:
    return message.get("type") == "top10"


def test_an_anonymous_viewer_sees_the_top10_change_live(live: LiveFeed, api_url: str) -> None:
    scorer = Player(api_url)

    async def scenario() -> tuple[float, dict[str, Any]]:
        async with watching(live, BOARD) as viewer:
            started = time.monotonic()
            await asyncio.to_thread(scorer.play, 1000)
            pushed = await viewer.until(
                lambda message: is_top10(message) and any(e["user_id"] == scorer.user_id for e in message["items"])
            )
            return time.monotonic() - started, pushed

    elapsed, pushed = asyncio.run(scenario())

    assert (pushed["board"], pushed["season"]) == ("global", "all")
    assert isinstance(pushed["seq"], int)
    mine = next(entry for entry in pushed["items"] if entry["user_id"] == scorer.user_id)
    assert (mine["user_name"], mine["score"]) == (scorer.display_name, 1000)
    assert [entry["rank"] for entry in pushed["items"]] == list(range(1, len(pushed["items"]) + 1))
    assert elapsed < PUSH_TIMEOUT_SECONDS


def test_a_player_on_their_own_channel_gets_their_standing_at_once_and_when_passed(
    live: LiveFeed, api_url: str
) -> None:
    me, rival = Player(api_url), Player(api_url)
    me.play(500)
    wait_for_total(api_url, me.user_id, 500)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        async with watching(live, f"/players/{me.user_id}", me.access_token) as own:
            arrived = await own.until(lambda message: message.get("type") == "rank")
            for _ in range(2):
                await asyncio.to_thread(rival.play, 1000)  # 2,000 > 500: passes me
            passed = await own.until(
                lambda message: message.get("type") == "rank" and message["rank"] > arrived["rank"]
            )
            return arrived, passed

    arrived, passed = asyncio.run(scenario())

    assert (arrived["user_id"], arrived["user_name"], arrived["score"]) == (me.user_id, me.display_name, 500)
    assert passed["previous_rank"] == arrived["rank"]  # the rank last sent: never null for a watcher
    assert passed["seq"] > arrived["seq"]
    standing = requests.get(f"{api_url}/v1/scores/{me.user_id}", timeout=30).json()
    assert passed["rank"] <= standing["rank"]


def test_each_board_publishes_its_own_top10_and_a_players_rank_on_it_to_their_channel_for_it(
    live: LiveFeed, api_url: str
) -> None:
    me = Player(api_url)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        async with (
            watching(live, "/boards/daily-best") as board,
            watching(live, f"/players/{me.user_id}/daily-best", me.access_token) as own,
        ):
            await asyncio.to_thread(me.play, 700)
            await asyncio.to_thread(me.play, 300)  # the best single match stays 700
            top = await board.until(
                lambda message: is_top10(message) and any(e["user_id"] == me.user_id for e in message["items"])
            )
            rank = await own.until(lambda message: message.get("type") == "rank")
            return top, rank

    top, rank = asyncio.run(scenario())

    assert (top["board"], top["season"]) == ("daily-best", time.strftime("%Y-%m-%d", time.gmtime()))
    assert next(e["score"] for e in top["items"] if e["user_id"] == me.user_id) == 700
    assert (rank["board"], rank["season"], rank["user_id"], rank["score"]) == (
        "daily-best",
        top["season"],
        me.user_id,
        700,
    )


@pytest.mark.parametrize(
    "case", ["another player's", "anonymous on a player's", "every player's", "another's on a board", "no such board"]
)
def test_nobody_may_subscribe_to_another_players_channel(live: LiveFeed, api_url: str, case: str) -> None:
    me, other = Player(api_url), Player(api_url)
    channel, token = {
        "another player's": (f"/players/{other.user_id}", me.access_token),
        "anonymous on a player's": (f"/players/{me.user_id}", ANONYMOUS),
        "every player's": ("/players/*", me.access_token),
        "another's on a board": (f"/players/{other.user_id}/weekly", me.access_token),
        "no such board": (f"/players/{me.user_id}/no-such-board", me.access_token),
    }[case]

    async def scenario() -> SubscribeError:
        async with await EventSocket.connect(live.realtime_url, live.http_host, token) as socket:
            with pytest.raises(SubscribeError) as refused:
                await socket.subscribe(channel)
            return refused.value

    refused = asyncio.run(scenario())

    assert refused.error_type is not None


@pytest.mark.parametrize("who", ["anonymous", "a player"])
def test_no_client_can_publish_over_the_socket_or_over_http(live: LiveFeed, api_url: str, who: str) -> None:
    token = Player(api_url).access_token if who == "a player" else ANONYMOUS
    forged = {"type": "top10", "board": "global", "season": "all", "seq": 2**62, "items": [{"user_id": "forged"}]}

    async def scenario() -> tuple[PublishError, list[PublishError], list[dict[str, Any]]]:
        async with watching(live, BOARD) as bystander:
            async with await EventSocket.connect(live.realtime_url, live.http_host, token) as attacker:
                with pytest.raises(PublishError) as over_socket:
                    await attacker.publish(BOARD, [forged])
            over_http = []
            for authorization in (token, None):
                with pytest.raises(PublishError) as refused:
                    await publish_http(live.http_url, BOARD, [forged], authorization)
                over_http.append(refused.value)
            await bystander.read_for(1.5)
            return over_socket.value, over_http, bystander.messages

    over_socket, over_http, bystander_saw = asyncio.run(scenario())

    assert over_socket.error_type is not None
    assert all(refused.status in (401, 403) for refused in over_http)
    assert all("forged" not in json.dumps(message) for message in bystander_saw)


def test_under_a_burst_viewers_get_few_boards_in_order_and_end_on_the_final_one(live: LiveFeed, api_url: str) -> None:
    players = [Player(api_url) for _ in range(5)]
    scores = {player.user_id: [100 + 10 * index + round for round in range(6)] for index, player in enumerate(players)}

    def play_all(player: Player) -> None:
        for score in scores[player.user_id]:
            player.play(score)

    async def scenario() -> tuple[list[Viewer], float]:
        async with watching(live, BOARD) as first, watching(live, BOARD, players[0].access_token) as second:
            started = time.monotonic()
            with ThreadPoolExecutor(len(players)) as pool:
                await asyncio.gather(*(asyncio.wrap_future(pool.submit(play_all, player)) for player in players))
            for player in players:
                await asyncio.to_thread(wait_for_total, api_url, player.user_id, sum(scores[player.user_id]))
            for viewer in (first, second):
                await viewer.read_for(2)  # the last board, coalesced, may still be on its way
            return [first, second], time.monotonic() - started

    viewers, seconds = asyncio.run(scenario())

    final = requests.get(f"{api_url}/v1/scores", timeout=30).json()
    for viewer in viewers:
        boards = [message for message in viewer.messages if is_top10(message)]
        seqs = [board["seq"] for board in boards]
        assert viewer.board is not None
        assert viewer.board["items"] == final  # the newest board a viewer holds is the final one
        assert len(set(seqs)) == len(seqs)  # each board once
        assert len(boards) <= 4 * seconds + 4  # coalesced: at most a few per second, not one per score (30)
        for board in boards:
            assert [entry["score"] for entry in board["items"]] == sorted(
                (entry["score"] for entry in board["items"]), reverse=True
            )
