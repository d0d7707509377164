"""``make demo``: simulated players keep a running stack's board busy, so the live page has something to show.

Each player registers (names unique to the run), logs in and plays through the public HTTP API only: start an
action, post a random score within its ``max_score``, pause 0.5-3 s, again; the access token is refreshed at 80% of
its lifetime. A 429 or 503 is answered by waiting (``Retry-After`` when given, else exponential backoff with jitter).
The run stops after ``--minutes`` or at Ctrl-C, logs its players out, and checks that each player's total on the
board is the sum of the scores the API accepted.

The API: ``--api-url``, else ``$API_URL``, else the running local stack's ``.local/stack.json``, else
http://127.0.0.1:3000.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from clients.play import seconds_until_scorable

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_API_URL = "http://127.0.0.1:3000"
NAMES = (
    "Ada", "Grace", "Linus", "Margaret", "Alan", "Barbara", "Dennis", "Frances", "Ken", "Radia", "Edsger", "Hedy",
    "Donald", "Katherine", "Niklaus", "Sophie", "Tim", "Joan", "Guido", "Lynn",
)  # fmt: skip
PAUSE_SECONDS = (0.5, 3.0)
REFRESH_AT_FRACTION = 0.8
REQUEST_TIMEOUT_SECONDS = 15
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 20.0
REPORT_EVERY_SECONDS = 5.0

Say = Callable[[str], None]


def say(message: str) -> None:
    """Print a line at once (the output is often piped)."""
    with contextlib.suppress(BrokenPipeError):
        print(message, flush=True)


class Stopped(Exception):
    """The run is over (time is up or Ctrl-C): a player stops what it was doing."""


class ApiError(Exception):
    """An answer the demo cannot continue from."""

    def __init__(self, method: str, path: str, status: int, detail: str) -> None:
        super().__init__(f"{method} {path}: {status} {detail}")
        self.status = status


@dataclass
class Stats:
    """What the run has done so far, for the progress lines."""

    started: float = field(default_factory=time.monotonic)
    players: int = 0
    matches: int = 0
    points: int = 0
    waits: int = 0  # 429/503 answers and network errors waited out
    failures: int = 0  # players that gave up


def local_stack_api_url(state_dir: Path) -> str | None:
    """The API URL of the local stack running from this checkout (``make run``), if one is."""
    try:
        state = json.loads((state_dir / "stack.json").read_text())
        pid = int(state.get("pid") or 0)
        url = state.get("api_url")
        os.kill(pid, 0)  # still running? (raises if not)
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return url if isinstance(url, str) and url and pid else None


def resolve_api_url(explicit: str | None) -> str:
    """``--api-url``, ``$API_URL``, the running local stack, or the local runtime's default port."""
    state_dir = Path(os.environ.get("LOCAL_STATE_DIR") or PROJECT_ROOT / ".local")
    url = explicit or os.environ.get("API_URL") or local_stack_api_url(state_dir) or DEFAULT_API_URL
    return url.rstrip("/")


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with jitter: between half and all of min(cap, base * 2^attempt)."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** min(attempt, 16))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - pacing, not security


def retry_after_seconds(headers: Any) -> float | None:
    """Retry-After in seconds, when the answer has one in that form."""
    value = headers.get("Retry-After", "")
    return float(value) if value.strip().isdigit() else None


class Player:
    """One simulated player: its own session with the API, its own tokens, its own accepted total."""

    def __init__(
        self, http: aiohttp.ClientSession, api_url: str, username: str, display_name: str, password: str
    ) -> None:
        self.http = http
        self.api_url = api_url
        self.username = username
        self.display_name = display_name
        self.password = password
        self.user_id = ""
        self.access_token = ""
        self.refresh_token = ""
        self.refresh_due = 0.0
        self.accepted_total = 0

    async def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        stop: asyncio.Event,
        stats: Stats,
        *,
        bearer: bool = False,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Send one request; wait out 429, 503 and network errors until it gets another answer or the run stops."""
        attempt = 0
        while True:
            if stop.is_set():
                raise Stopped
            sent_headers = dict(headers or {})
            if bearer:
                sent_headers["Authorization"] = f"Bearer {self.access_token}"
            try:
                async with self.http.request(
                    method, f"{self.api_url}{path}", json=body, headers=sent_headers
                ) as response:
                    text = await response.text()
                    if response.status in (429, 503):
                        wait = retry_after_seconds(response.headers) or backoff_seconds(attempt)
                    elif response.status >= 400:
                        raise ApiError(method, path, response.status, problem_detail(text))
                    else:
                        return json.loads(text) if text else None
            except (aiohttp.ClientError, TimeoutError):
                wait = backoff_seconds(attempt)
            attempt += 1
            stats.waits += 1
            if await stopped_within(stop, wait):
                raise Stopped

    def adopt(self, tokens: dict[str, Any]) -> None:
        """Keep a new token pair; plan the next refresh at 80% of the access token's lifetime."""
        self.user_id = str(tokens["user_id"])
        self.access_token = str(tokens["access_token"])
        self.refresh_token = str(tokens["refresh_token"])
        self.refresh_due = time.monotonic() + float(tokens.get("expires_in", 600)) * REFRESH_AT_FRACTION

    async def join(self, stop: asyncio.Event, stats: Stats) -> None:
        """Register and log in."""
        body: dict[str, Any] = {
            "username": self.username,
            "password": self.password,
            "display_name": self.display_name,
        }
        await self.call("POST", "/v1/users", body, stop, stats)
        credentials = {"username": self.username, "password": self.password}
        self.adopt(await self.call("POST", "/v1/login", credentials, stop, stats))

    async def play_match(self, stop: asyncio.Event, stats: Stats) -> int:
        """Start an action and post a random score within its max_score; the score is returned."""
        if time.monotonic() >= self.refresh_due:
            refresh = {"refresh_token": self.refresh_token}
            self.adopt(await self.call("POST", "/v1/token/refresh", refresh, stop, stats))
        action = await self.call("POST", "/v1/actions", {"type": "match"}, stop, stats, bearer=True)
        # A match lasts at least the game's minimum duration: scored sooner, it would be refused (422).
        await asyncio.sleep(seconds_until_scorable(action))
        score = random.randint(1, int(action["max_score"]))  # noqa: S311 - a game score, not a secret
        body: dict[str, Any] = {"user_id": self.user_id, "score": score, "action_id": action["action_id"]}
        # The same Idempotency-Key on every retry of this score: it counts once whatever happens to the answers.
        key = {"Idempotency-Key": secrets.token_hex(16)}
        await self.call("POST", "/v1/scores", body, stop, stats, bearer=True, headers=key)
        self.accepted_total += score
        return score

    async def log_out(self) -> None:
        """Revoke the session's refresh tokens (best effort: the run is ending)."""
        if not self.refresh_token:
            return
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with self.http.post(
                f"{self.api_url}/v1/logout",
                json={"refresh_token": self.refresh_token},
                headers={"Authorization": f"Bearer {self.access_token}"},
            ):
                pass


def problem_detail(text: str) -> str:
    """The problem's detail (or API Gateway's message) from an error body."""
    try:
        body = json.loads(text)
    except ValueError:
        return text[:200]
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("message") or body.get("title") or body)
    return text[:200]


async def stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; True if the run was stopped meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


async def play(player: Player, start_delay: float, stop: asyncio.Event, stats: Stats, out: Say) -> None:
    """One player's whole run: join, then matches with pauses until the run stops."""
    try:
        if await stopped_within(stop, start_delay):
            return
        await player.join(stop, stats)
        stats.players += 1
        out(f"  + {player.display_name} joined as {player.username}")
        while True:
            score = await player.play_match(stop, stats)
            stats.matches += 1
            stats.points += score
            if await stopped_within(stop, random.uniform(*PAUSE_SECONDS)):  # noqa: S311 - pacing
                return
    except Stopped:
        return
    except (ApiError, KeyError, ValueError) as exc:
        stats.failures += 1
        out(f"  ! {player.display_name} stopped playing: {exc}")


async def leader(http: aiohttp.ClientSession, api_url: str) -> str:
    """The board's leader, for the progress line."""
    try:
        async with http.get(f"{api_url}/v1/scores") as response:
            if response.status != 200:
                return f"board: HTTP {response.status}"
            top = await response.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return "board: unreachable"
    if not top:
        return "board: empty"
    return f"leader: {top[0]['user_name']} with {top[0]['score']:,}"


async def report(http: aiohttp.ClientSession, api_url: str, stop: asyncio.Event, stats: Stats, out: Say) -> None:
    """A progress line every few seconds."""
    while not await stopped_within(stop, REPORT_EVERY_SECONDS):
        elapsed = time.monotonic() - stats.started
        rate = stats.matches / elapsed if elapsed else 0.0
        out(
            f"[{elapsed:5.0f} s] {stats.players} players, {stats.matches} matches ({rate:.1f}/s), "
            f"{stats.points:,} points, {stats.waits} waits (429/503/network) - {await leader(http, api_url)}"
        )


async def check_totals(http: aiohttp.ClientSession, api_url: str, players: list[Player], out: Say) -> None:
    """Each player's total on the board should be the sum of its accepted scores (the queue may lag a moment)."""
    playing = [player for player in players if player.accepted_total]
    deadline = time.monotonic() + 15
    pending = list(playing)
    while pending and time.monotonic() < deadline:
        still: list[Player] = []
        for player in pending:
            try:
                async with http.get(f"{api_url}/v1/scores/{player.user_id}") as response:
                    total = (await response.json()).get("score") if response.status == 200 else None
            except (aiohttp.ClientError, TimeoutError, ValueError):
                total = None
            if total != player.accepted_total:
                still.append(player)
        pending = still
        if pending:
            await asyncio.sleep(0.5)
    exact = len(playing) - len(pending)
    out(f"Totals on the board equal the accepted scores for {exact} of {len(playing)} players.")
    for player in pending:
        out(f"  ! {player.display_name}: accepted {player.accepted_total:,}, the board does not show it (yet)")


async def answers(http: aiohttp.ClientSession, api_url: str) -> bool:
    """Whether the API is up (any HTTP answer counts)."""
    try:
        async with http.get(f"{api_url}/v1/scores"):
            return True
    except (aiohttp.ClientError, TimeoutError):
        return False


async def run(api_url: str, player_count: int, minutes: float, out: Say) -> int:
    """The whole demo; returns the process exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()

    def on_signal() -> None:
        if stop.is_set() and main_task is not None:  # a second Ctrl-C: do not wait for the clean-up
            main_task.cancel()
        stop.set()

    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, on_signal)

    tag = secrets.token_hex(2)
    password = secrets.token_urlsafe(18)
    stats = Stats()
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    connector = aiohttp.TCPConnector(limit=player_count + 4)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        players = [
            Player(http, api_url, f"demo-{tag}-{index:02d}", display_name(index, tag), password)
            for index in range(player_count)
        ]
        if not await answers(http, api_url):
            out(f"Nothing answers at {api_url}: start the stack with `make run` (or pass --api-url / API_URL).")
            return 1
        out(f"Demo run {tag}: {player_count} players on {api_url} for {minutes:g} min (Ctrl-C to stop).")
        if urlsplit(api_url).hostname in ("127.0.0.1", "localhost"):
            out(f"Watch them on the live page: {api_url}/")
        tasks = [
            asyncio.create_task(play(player, index * 0.3, stop, stats, out)) for index, player in enumerate(players)
        ]
        tasks.append(asyncio.create_task(report(http, api_url, stop, stats, out)))
        if not await stopped_within(stop, minutes * 60):
            out("Time is up.")
        stop.set()
        out("Stopping: the players finish their current request...")
        await asyncio.gather(*tasks)
        await asyncio.gather(*(player.log_out() for player in players))
        elapsed = time.monotonic() - stats.started
        out(
            f"Done: {stats.players} players played {stats.matches} matches ({stats.points:,} points) "
            f"in {elapsed:.0f} s; {stats.waits} waits."
        )
        if stats.matches:
            await check_totals(http, api_url, players, out)
    return 1 if stats.failures and not stats.matches else 0


def display_name(index: int, tag: str) -> str:
    """A readable name, past the list's end numbered, with the run's tag: no two players hold look-alike display
    names, and an earlier run's players keep theirs."""
    name = NAMES[index % len(NAMES)]
    return f"{name} {tag}" if index < len(NAMES) else f"{name} {index // len(NAMES) + 1} {tag}"


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m scripts.demo",
        description="Simulated players on a running stack, so the live page has something to show.",
    )
    parser.add_argument("--api-url", help="the HTTP API (default: $API_URL, the running local stack, or :3000)")
    parser.add_argument("--players", type=int, default=12, help="how many players (default 12)")
    parser.add_argument("--minutes", type=float, default=3.0, help="how long to play (default 3)")
    arguments = parser.parse_args(argv)
    if not 1 <= arguments.players <= 500:
        parser.error("--players takes 1 to 500")
    if not arguments.minutes > 0:
        parser.error("--minutes must be more than 0")
    return arguments


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m scripts.demo``."""
    arguments = parse_arguments(argv)
    api_url = resolve_api_url(arguments.api_url)
    try:
        return asyncio.run(run(api_url, arguments.players, arguments.minutes, say))
    except asyncio.CancelledError:
        say("Stopped.")
        return 130


if __name__ == "__main__":
    sys.exit(main())
