"""The live page (web/) in a real browser: Debian's Chromium driven by Playwright, against the running stack.

A visitor who is not logged in sees the live top 10; a player logs in through the page; other clients post scores
through the HTTP API; the page must show the new top 10, the player's own rank and the "someone passed you" notice
as the live feed (AppSync Events) delivers them, in the same document (no reload). The board switcher shows each
board's current season, its countdown to the next reset and its standings, live, and the logged-in player's rank on
the board shown; when the countdown reaches zero the page moves to the new season. Against the local runtime the
page is the one its gateway serves; against a deployed stack (API_URL) the test serves web/ itself on the API's
origin. ``config.json`` is answered by the test with the stack's URLs.
Screenshots of every step go to artifacts/screenshots/.
"""

import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, Playwright, Route, WebSocket, expect, sync_playwright

from clients.play import wait_until_scorable
from tests.e2e.conftest import LiveFeed

pytestmark = pytest.mark.e2e

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WEB_DIR = PROJECT_ROOT / "web"
SCREENSHOTS = PROJECT_ROOT / "artifacts" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct horse battery"
# A push goes score -> queue -> consumer -> board -> publisher -> fan-out -> socket: seconds at most.
LIVE_TIMEOUT_MS = 20_000
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 3,
    "is_mobile": True,
    "has_touch": True,
}
# Display names are unique on a stack (a deployed one keeps those of earlier runs): the fixed ones carry this run's tag.
RUN = uuid.uuid4().hex[:6]
# Markup as HTML entities (a name holds no "<"): shown as typed, never decoded into an element
MARKUP_NAME = f"&lt;b&gt;{RUN}&lt;/b&gt;"


class ApiPlayer:
    """A player driven through the HTTP API: the "other client" of the test.

    Without ``username`` a new player is registered; with it, an existing player (with no score yet) logs in from
    here: a second client of a player who is also logged in on the page."""

    def __init__(self, api_url: str, display_name: str | None = None, *, username: str | None = None) -> None:
        self.api_url = api_url
        self.username = username or f"e2e_page_{uuid.uuid4().hex[:10]}"
        self.total = 0
        self.display_name = ""  # known when registered here
        self.http = requests.Session()
        if username is None:
            body = {"username": self.username, "password": PASSWORD}
            if display_name:
                body["display_name"] = display_name
            answer = self.http.post(f"{api_url}/v1/users", json=body, timeout=30)
            assert answer.status_code == 201, answer.text
            self.display_name = str(answer.json()["display_name"])  # generated when none is given
        self.log_in()

    def log_in(self) -> None:
        body = {"username": self.username, "password": PASSWORD}
        answer = self.http.post(f"{self.api_url}/v1/login", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        self.user_id = answer.json()["user_id"]
        self.http.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"

    def play(self, score: int | None = None) -> int:
        """One match; the score is the action's max_score unless given."""
        action = self.http.post(f"{self.api_url}/v1/actions", json={"type": "match"}, timeout=30)
        assert action.status_code == 201, action.text
        wait_until_scorable(action.json())
        points = score or int(action.json()["max_score"])
        body = {"user_id": self.user_id, "score": points, "action_id": action.json()["action_id"]}
        answer = self.http.post(f"{self.api_url}/v1/scores", json=body, timeout=30)
        assert answer.status_code == 202, answer.text
        self.total += points
        return points

    def climb_above(self, total: int) -> int:
        """Play until this player's total is higher than ``total``; the new total is returned."""
        for _ in range(100):
            if self.total > total:
                return self.total
            self.play()
        pytest.fail(f"the board's leader ({total}) is too far ahead for this test's players")


def leader_score(api_url: str, board: str = "global") -> int:
    top = requests.get(f"{api_url}/v1/boards/{board}/scores", params={"limit": 1}, timeout=30).json()["items"]
    return int(top[0]["score"]) if top else 0


def list_boards(api_url: str) -> dict[str, dict[str, Any]]:
    """GET /v1/boards, by board id."""
    answer = requests.get(f"{api_url}/v1/boards", timeout=30)
    assert answer.status_code == 200, answer.text
    return {board["id"]: board for board in answer.json()}


def standing_on(api_url: str, board: str, user_id: str, score: int) -> dict[str, Any]:
    """The player's standing on the board's current season, once it shows ``score`` (the consumer is asynchronous)."""
    deadline = time.monotonic() + LIVE_TIMEOUT_MS / 1000
    while True:
        answer = requests.get(f"{api_url}/v1/boards/{board}/scores/{user_id}", timeout=30)
        if answer.status_code == 200 and answer.json()["score"] == score:
            return dict(answer.json())
        assert time.monotonic() < deadline, f"{board}: score {score} not reached: {answer.status_code} {answer.text}"
        time.sleep(0.2)


def seconds_until(moment: str) -> float:
    return (datetime.fromisoformat(moment) - datetime.now(UTC)).total_seconds()


SEASON_ENDS_IN_SECONDS = 20  # the stand-in season's end: time for the page to show it and receive a push first
COUNTDOWN = re.compile(r"^resets in (?:(\d+)d )?(\d\d):(\d\d):(\d\d)$")


# --- The browser ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: `make e2e` installs Debian's chromium package (or set CHROMIUM)")
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
    yield chromium
    chromium.close()


@pytest.fixture(scope="module")
def stack_serves_page(api_url: str) -> bool:
    """Whether the stack serves web/ itself (the local runtime does; API Gateway does not)."""
    answer = requests.get(f"{api_url}/", timeout=30)
    return answer.status_code == 200 and 'data-testid="top10"' in answer.text


class PageSession:
    """A browser context with the page open, its errors collected, and numbered screenshots."""

    def __init__(self, context: BrowserContext, prefix: str) -> None:
        self.context = context
        self.page = context.new_page()
        self.prefix = prefix
        self.count = 0
        self.errors: list[str] = []
        self.sent: list[dict[str, Any]] = []  # every message the page sent on its live connections
        self.confirmed: set[str] = set()  # the ids of its subscriptions the Event API confirmed
        self.events: list[dict[str, Any]] = []  # every live message it received
        self.page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        self.page.on("dialog", lambda dialog: self.errors.append(f"dialog opened: {dialog.message}"))
        self.page.on("websocket", self._record_frames)

    def _record_frames(self, socket: WebSocket) -> None:
        socket.on("framesent", lambda payload: self.sent.append(json.loads(payload)))
        socket.on("framereceived", self._record_received)

    def _record_received(self, payload: str | bytes) -> None:
        frame = json.loads(payload)
        if frame.get("type") == "subscribe_success":
            self.confirmed.add(frame["id"])
        elif frame.get("type") == "data":
            self.events.append(json.loads(frame["event"]))

    def shot(self, name: str) -> None:
        self.count += 1
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=SCREENSHOTS / f"{self.prefix}-{self.count:02d}-{name}.png", full_page=True)

    def by(self, test_id: str) -> Any:
        return self.page.get_by_test_id(test_id)

    def row(self, list_id: str, user_id: str) -> Any:
        return self.page.locator(f'[data-testid="{list_id}"] [data-user-id="{user_id}"]')

    def record_changes(self) -> None:
        """Keep every change mark the top 10 shows ("<user_id>:new", ":up", ":down", ":score"), however briefly."""
        self.page.evaluate(
            """() => {
              window.__changes = [];
              const board = document.querySelector('[data-testid="top10"]');
              new MutationObserver(() => {
                for (const row of board.querySelectorAll('[data-change]')) {
                  const mark = `${row.dataset.userId}:${row.dataset.change}`;
                  if (!window.__changes.includes(mark)) window.__changes.push(mark);
                }
              }).observe(board, {childList: true});
            }"""
        )

    def expect_change(self, user_id: str, change: str) -> None:
        """Wait until the top 10 has shown ``change`` on the player's row."""
        self.page.wait_for_function(
            "mark => window.__changes.includes(mark)", arg=f"{user_id}:{change}", timeout=LIVE_TIMEOUT_MS
        )

    def mark_document(self) -> None:
        """A flag only this document has: a reload would lose it."""
        self.page.evaluate("window.__sameDocument = 'yes'")

    def assert_same_document(self) -> None:
        assert self.page.evaluate("window.__sameDocument") == "yes", "the page reloaded"

    def subscription_ids(self, channel: str) -> list[str]:
        """The ids of the page's subscriptions to ``channel``, oldest first."""
        return [sent["id"] for sent in self.sent if sent.get("type") == "subscribe" and sent["channel"] == channel]

    def unsubscribed_ids(self) -> set[str]:
        return {sent["id"] for sent in self.sent if sent.get("type") == "unsubscribe"}

    def wait_confirmed(self, channel: str) -> None:
        """Wait until the page's subscription to ``channel`` is in place (confirmed, not merely asked for)."""
        self.wait_until(lambda: bool(self.confirmed.intersection(self.subscription_ids(channel))), f"watched {channel}")

    def wait_until(self, condition: Callable[[], bool], what: str) -> None:
        """Wait for a condition on the page's live frames (Playwright delivers its events while the page waits)."""
        for _ in range(LIVE_TIMEOUT_MS // 100):
            if condition():
                return
            self.page.wait_for_timeout(100)
        sent = [(frame.get("type"), frame.get("channel"), frame.get("id")) for frame in self.sent]  # no tokens
        pytest.fail(f"the page never {what}; it sent {sent}")

    def show_board(self, board: str) -> None:
        """Pick a board in the switcher."""
        self.page.locator(f'[data-testid="board-tab"][data-board="{board}"]').click()
        expect(self.by("board-panel")).to_have_attribute("data-board", board)

    def countdown_seconds(self) -> int:
        text = self.by("board-countdown").text_content()
        match = COUNTDOWN.match(text or "")
        assert match, f"not a countdown: {text!r}"
        days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
        return ((days * 24 + hours) * 60 + minutes) * 60 + seconds

    def log_in(self, username: str) -> None:
        self.by("login-username").fill(username)
        self.by("login-password").fill(PASSWORD)
        self.by("login-submit").click()
        expect(self.by("game")).to_be_visible()
        expect(self.by("connection-status")).to_have_attribute("data-state", "live", timeout=LIVE_TIMEOUT_MS)


@pytest.fixture
def open_page(
    browser: Browser, api_url: str, live: LiveFeed, stack_serves_page: bool
) -> Iterator[Callable[..., PageSession]]:
    sessions: list[PageSession] = []

    def serve_from_disk(route: Route) -> None:
        name = route.request.url.removeprefix(api_url).split("?", 1)[0].lstrip("/") or "index.html"
        route.fulfill(path=WEB_DIR / name)

    def opener(
        prefix: str,
        *,
        fake_clock: bool = False,
        before_load: Callable[[BrowserContext], None] | None = None,
        **context_options: Any,
    ) -> PageSession:
        context = browser.new_context(**context_options)
        config = json.dumps(
            # No spread of the moment a page asks for a new season: the tests watch a reset as it happens.
            {"apiUrl": api_url, "liveUrl": live.realtime_url, "liveHttpUrl": live.http_url, "resetSpreadSeconds": 0}
        )
        context.route(
            f"{api_url}/config.json", lambda route: route.fulfill(content_type="application/json", body=config)
        )
        if not stack_serves_page:
            for name in ("", "index.html", "app.js", "style.css"):
                context.route(f"{api_url}/{name}", serve_from_disk)
        session = PageSession(context, prefix)
        sessions.append(session)
        if before_load:
            before_load(context)
        if fake_clock:
            session.page.clock.install()
        session.page.goto(f"{api_url}/")
        expect(session.page.locator("body[data-ready=true]")).to_be_attached()
        return session

    yield opener
    for session in sessions:
        session.shot("end")
        session.context.close()
    for session in sessions:
        assert not session.errors, session.errors


# --- The tests -----------------------------------------------------------------------------------------------------


def test_a_visitor_who_is_not_logged_in_sees_the_top10_live(
    open_page: Callable[..., PageSession], api_url: str
) -> None:
    # Given a visitor who opens the page and does not log in
    page = open_page("anonymous", viewport={"width": 1280, "height": 900})
    expect(page.by("connection-status")).to_have_attribute("data-state", "live", timeout=LIVE_TIMEOUT_MS)
    expect(page.by("auth")).to_be_visible()
    expect(page.by("game")).to_be_hidden()
    page.mark_document()
    page.record_changes()
    page.shot("anonymous")

    # When a player takes the lead through the API
    rival = ApiPlayer(api_url, f"Anonymous view rival {RUN}")
    rival.climb_above(leader_score(api_url))

    # Then the visitor's top 10 shows them first, without a reload
    rival_row = page.row("top10", rival.user_id)
    expect(rival_row).to_have_attribute("data-rank", "1", timeout=LIVE_TIMEOUT_MS)
    expect(rival_row).to_have_attribute("data-score", str(rival.total), timeout=LIVE_TIMEOUT_MS)
    page.expect_change(rival.user_id, "new")
    page.shot("anonymous-live")

    # When the network drops and comes back, then the page reconnects and the board keeps up
    page.context.set_offline(True)
    expect(page.by("connection-status")).to_have_attribute("data-state", "offline")
    page.context.set_offline(False)
    expect(page.by("connection-status")).to_have_attribute("data-state", "live", timeout=LIVE_TIMEOUT_MS)
    rival.play(1)
    expect(rival_row).to_have_attribute("data-score", str(rival.total), timeout=LIVE_TIMEOUT_MS)
    page.assert_same_document()
    page.shot("anonymous-reconnected")


def test_top10_and_own_rank_update_live_without_reload(open_page: Callable[..., PageSession], api_url: str) -> None:
    # Given a registered player with no score yet, logged in on the page
    me = ApiPlayer(api_url)
    rival = ApiPlayer(api_url, MARKUP_NAME)
    page = open_page("desktop", viewport={"width": 1280, "height": 900})
    page.shot("login-form")
    page.log_in(me.username)
    page.mark_document()
    page.record_changes()
    expect(page.by("me-no-score")).to_be_visible()
    expect(page.by("me-name")).to_have_text(me.display_name)  # the name the boards show, never the username
    page.shot("logged-in-no-score")

    # When another player takes the lead through the API
    rival.climb_above(leader_score(api_url))

    # Then the page's top 10 shows them first, marked new when they entered, their name as plain text
    rival_row = page.row("top10", rival.user_id)
    expect(rival_row).to_have_attribute("data-rank", "1", timeout=LIVE_TIMEOUT_MS)
    expect(rival_row).to_have_attribute("data-score", str(rival.total), timeout=LIVE_TIMEOUT_MS)
    page.expect_change(rival.user_id, "new")
    expect(rival_row.locator(".row__name")).to_contain_text(MARKUP_NAME)
    assert page.page.locator('[data-testid="top10"] b').count() == 0
    expect(page.by("top10-row").first).to_have_attribute("data-user-id", rival.user_id)
    page.shot("rival-leads")

    # When the same player scores from a second client (the API), enough to lead
    my_client = ApiPlayer(api_url, username=me.username)
    my_client.climb_above(rival.total)

    # Then the page shows them first, their own rank and score, and the rival among their neighbours, moved down
    my_row = page.row("top10", me.user_id)
    expect(my_row).to_have_attribute("data-rank", "1", timeout=LIVE_TIMEOUT_MS)
    expect(my_row).to_have_attribute("data-me", "true")
    expect(page.by("me-rank")).to_have_attribute("data-rank", "1", timeout=LIVE_TIMEOUT_MS)
    expect(page.by("me-score")).to_have_attribute("data-score", str(my_client.total), timeout=LIVE_TIMEOUT_MS)
    expect(page.by("me-no-score")).to_be_hidden()
    expect(page.row("neighbours", rival.user_id)).to_have_attribute("data-rank", "2", timeout=LIVE_TIMEOUT_MS)
    page.expect_change(rival.user_id, "down")
    page.shot("me-first")

    # When the rival passes them
    rival.climb_above(my_client.total)

    # Then "someone passed you", rank 2, and the rival's row marked as moved up
    expect(page.by("rank-notice")).to_have_attribute("data-kind", "passed", timeout=LIVE_TIMEOUT_MS)
    expect(page.by("rank-notice")).to_contain_text("passed you")
    expect(page.by("me-rank")).to_have_attribute("data-rank", "2", timeout=LIVE_TIMEOUT_MS)
    expect(page.row("top10", rival.user_id)).to_have_attribute("data-rank", "1")
    page.expect_change(rival.user_id, "up")
    page.shot("passed")

    # When the player plays a match on the page
    page.by("play-button").click()

    # Then the score is accepted and reaches their total
    expect(page.by("play-result")).to_have_attribute("data-state", "scored", timeout=LIVE_TIMEOUT_MS)
    scored = int(page.by("play-result").get_attribute("data-score"))
    assert 1 <= scored <= 1000
    expected_total = my_client.total + scored
    expect(page.by("me-score")).to_have_attribute("data-score", str(expected_total), timeout=LIVE_TIMEOUT_MS)
    page.shot("played-a-match")
    page.assert_same_document()

    # When the browser loses the network and gets it back
    page.context.set_offline(True)
    expect(page.by("connection-status")).to_have_attribute("data-state", "offline")
    page.shot("offline")
    page.context.set_offline(False)

    # Then the page reconnects and keeps receiving pushes
    expect(page.by("connection-status")).to_have_attribute("data-state", "live", timeout=LIVE_TIMEOUT_MS)
    rival.play(1)
    expect(page.row("top10", rival.user_id)).to_have_attribute("data-score", str(rival.total), timeout=LIVE_TIMEOUT_MS)
    page.shot("reconnected")
    page.assert_same_document()

    # When the player logs out, then the login form is back and the board stays live for the visitor
    page.by("logout-button").click()
    expect(page.by("login-form")).to_be_visible()
    expect(page.by("game")).to_be_hidden()
    expect(page.by("connection-status")).to_have_attribute("data-state", "live")
    rival.play(1)
    expect(page.row("top10", rival.user_id)).to_have_attribute("data-score", str(rival.total), timeout=LIVE_TIMEOUT_MS)
    expect(page.row("top10", me.user_id)).not_to_have_attribute("data-me", "true")
    page.shot("logged-out")


def test_phone_sized_screen_registers_and_follows_the_board(
    open_page: Callable[..., PageSession], api_url: str
) -> None:
    # Given a phone-sized screen, a new player registering through the page
    page = open_page("phone", **PHONE)
    username = f"e2e_phone_{uuid.uuid4().hex[:10]}"
    page.by("show-register").click()
    page.by("register-username").fill(username)
    page.by("register-password").fill(PASSWORD)
    page.by("register-display-name").fill(f"Phone player {RUN}")
    page.shot("register-form")
    page.by("register-submit").click()
    expect(page.by("connection-status")).to_have_attribute("data-state", "live", timeout=LIVE_TIMEOUT_MS)
    expect(page.by("me-no-score")).to_be_visible()
    page.mark_document()
    page.shot("registered")

    # When the same player takes the lead from another client
    player = ApiPlayer(api_url, username=username)
    player.climb_above(leader_score(api_url))

    # Then the phone shows the new board and the player's rank, and nothing is wider than the screen
    expect(page.row("top10", player.user_id)).to_have_attribute("data-rank", "1", timeout=LIVE_TIMEOUT_MS)
    expect(page.by("me-rank")).to_have_attribute("data-rank", "1", timeout=LIVE_TIMEOUT_MS)
    expect(page.by("me-name")).to_have_text(f"Phone player {RUN}")
    width = page.page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["viewport"]["width"], f"the page is {width} px wide on a 390 px screen"
    box = page.by("play-button").bounding_box()
    assert box is not None
    assert box["height"] >= 44, "the play button is too small a touch target"
    page.shot("top10")
    page.assert_same_document()

    # When the page is reloaded, then the player is still logged in (the tokens survive a reload, not the tab)
    page.page.reload()
    expect(page.by("game")).to_be_visible()
    expect(page.by("connection-status")).to_have_attribute("data-state", "live", timeout=LIVE_TIMEOUT_MS)
    expect(page.by("me-rank")).to_have_attribute("data-rank", "1", timeout=LIVE_TIMEOUT_MS)
    assert page.page.evaluate("Object.keys(sessionStorage).length") == 0, "tokens left in sessionStorage"


def test_login_errors_show_the_problem_detail_and_retry_after(
    open_page: Callable[..., PageSession], api_url: str
) -> None:
    # Given a registered player, and the API's own answer to a wrong password
    player = ApiPlayer(api_url)
    wrong = {"username": player.username, "password": "not the password"}
    expected = requests.post(f"{api_url}/v1/login", json=wrong, timeout=30).json()["detail"]
    page = open_page("errors", viewport={"width": 1024, "height": 768})

    # When they log in with a wrong password, then the page shows the problem's detail
    page.by("login-username").fill(player.username)
    page.by("login-password").fill("not the password")
    page.by("login-submit").click()
    expect(page.by("auth-error")).to_have_text(expected)
    expect(page.by("game")).to_be_hidden()
    page.shot("wrong-password")

    # When the API answers 429 with Retry-After, then the page says how long to wait and holds the button
    problem = {"type": "about:blank", "title": "Too Many Requests", "status": 429, "detail": "Too many failed logins."}
    page.page.route(
        re.compile(r"/v1/login$"),
        lambda route: route.fulfill(
            status=429,
            headers={"Retry-After": "7"},
            content_type="application/problem+json",
            body=json.dumps(problem),
        ),
    )
    page.by("login-submit").click()
    expect(page.by("auth-error")).to_have_text("Too many failed logins. Try again in 7 seconds.")
    expect(page.by("login-submit")).to_be_disabled()
    page.shot("throttled")


def test_the_page_keeps_the_device_token_of_a_login_and_sends_it_at_the_next(
    open_page: Callable[..., PageSession], api_url: str
) -> None:
    # Given a player who logs in on the page
    player = ApiPlayer(api_url)
    page = open_page("device-token", viewport={"width": 1024, "height": 768})
    kept = f"localStorage.getItem('leaderboard.device.{player.username.lower()}')"
    page.log_in(player.username)

    # Then the browser keeps the login's device token (it cannot log in: it only spares this browser the account-wide
    # limit on failed logins)
    device_token = page.page.evaluate(kept)
    assert isinstance(device_token, str)
    assert device_token.count(".") == 2

    # When they log out and in again, then the login sends it and the new one replaces it
    page.by("logout-button").click()
    expect(page.by("auth")).to_be_visible()
    with page.page.expect_request(re.compile(r"/v1/login$")) as login:
        page.log_in(player.username)
    assert json.loads(login.value.post_data or "{}")["device_token"] == device_token
    assert page.page.evaluate(kept) not in (None, device_token)


def test_tokens_are_refreshed_before_expiry_and_a_refused_refresh_logs_out(
    open_page: Callable[..., PageSession], api_url: str
) -> None:
    # Given a logged-in page whose clock the test controls
    player = ApiPlayer(api_url)
    page = open_page("refresh", fake_clock=True, viewport={"width": 1024, "height": 768})
    page.log_in(player.username)

    # When 80% of the access token's 600 s pass, twice
    for round_number in (1, 2):
        with page.page.expect_response(re.compile(r"/v1/token/refresh$")) as refreshed:
            page.page.clock.run_for(481_000)
        # Then the page refreshed the pair each time, with the refresh token it was given last (a spent one is 401)
        assert refreshed.value.status == 200, f"refresh {round_number}: {refreshed.value.status}"
    expect(page.by("connection-status")).to_have_attribute("data-state", "live", timeout=LIVE_TIMEOUT_MS)
    page.by("play-button").click()
    expect(page.by("play-result")).to_have_attribute("data-state", "scored", timeout=LIVE_TIMEOUT_MS)
    page.shot("refreshed-twice")

    # When the next refresh is refused
    problem = {"type": "about:blank", "title": "Unauthorized", "status": 401, "detail": "Refresh token revoked."}
    page.page.route(
        re.compile(r"/v1/token/refresh$"),
        lambda route: route.fulfill(status=401, content_type="application/problem+json", body=json.dumps(problem)),
    )
    page.page.clock.run_for(481_000)

    # Then the player is back at the login form, told why
    expect(page.by("login-form")).to_be_visible()
    expect(page.by("auth-error")).to_contain_text("session has ended")
    expect(page.by("connection-status")).to_have_attribute("data-state", "live")  # the board stays live
    page.shot("refresh-refused")


# --- Boards and seasons --------------------------------------------------------------------------------------------


def test_the_switcher_lists_the_boards_and_starts_on_all_time(
    open_page: Callable[..., PageSession], api_url: str
) -> None:
    # Given the boards the API lists
    boards = list_boards(api_url)

    # When a visitor opens the page
    page = open_page("switcher", viewport={"width": 1280, "height": 900})

    # Then the switcher has a tab per board, in the API's order, with its title, and the all-time board is shown
    tabs = page.by("board-tab")
    expect(tabs).to_have_count(len(boards))
    shown = [(tab.get_attribute("data-board"), tab.text_content()) for tab in tabs.all()]
    assert shown == [(board["id"], board["title"]) for board in boards.values()]
    assert {"global": "All time", "weekly": "This week", "daily-best": "Best match today"}.items() <= dict(
        shown
    ).items()
    global_tab = page.page.locator('[data-testid="board-tab"][data-board="global"]')
    expect(global_tab).to_have_attribute("aria-selected", "true")
    expect(page.by("board-panel")).to_have_attribute("aria-labelledby", "tab-global")
    expect(page.by("board-season")).to_have_text("All time")
    expect(page.by("board-countdown")).to_be_hidden()  # the all-time board never resets
    page.shot("switcher")

    # When the keyboard moves along the tabs, then the board follows (one tab stop, arrows, Home and End)
    global_tab.focus()
    page.page.keyboard.press("ArrowRight")
    expect(page.by("board-panel")).to_have_attribute("data-board", "weekly")
    expect(page.page.locator('[data-board="weekly"][role="tab"]')).to_be_focused()
    expect(page.page.locator('[role="tab"][tabindex="0"]')).to_have_count(1)
    page.page.keyboard.press("End")
    expect(page.by("board-panel")).to_have_attribute("data-board", list(boards)[-1])
    page.page.keyboard.press("Home")
    expect(page.by("board-panel")).to_have_attribute("data-board", "global")
    expect(global_tab).to_have_attribute("aria-selected", "true")


def test_the_weekly_board_shows_its_season_its_countdown_and_its_standings_live(
    open_page: Callable[..., PageSession], api_url: str
) -> None:
    # Given a player who leads this week's board
    scorer = ApiPlayer(api_url, f"Weekly leader {RUN}")
    scorer.climb_above(leader_score(api_url, "weekly"))
    weekly = list_boards(api_url)["weekly"]
    page = open_page("weekly", viewport={"width": 1280, "height": 900})
    expect(page.by("connection-status")).to_have_attribute("data-state", "live", timeout=LIVE_TIMEOUT_MS)
    page.wait_confirmed("/boards/global")
    page.mark_document()

    # When a visitor switches to the weekly board
    page.show_board("weekly")

    # Then the page shows the week's season and a countdown to its end that ticks
    expect(page.page.locator('[data-testid="board-tab"][data-board="weekly"]')).to_have_attribute(
        "aria-selected", "true"
    )
    expect(page.by("board-season")).to_have_text(f"Season {weekly['season']}")
    expect(page.by("board-season")).to_have_attribute("data-season", weekly["season"])
    expect(page.by("board-countdown")).to_have_text(COUNTDOWN)
    assert abs(page.countdown_seconds() - seconds_until(weekly["ends_at"])) <= 3
    ticked_from = page.by("board-countdown").text_content()
    expect(page.by("board-countdown")).not_to_have_text(ticked_from or "", timeout=3_000)

    # ... and the week's standings: the leader first, with their weekly total
    leader_row = page.row("top10", scorer.user_id)
    expect(leader_row).to_have_attribute("data-rank", "1", timeout=LIVE_TIMEOUT_MS)
    expect(leader_row).to_have_attribute("data-score", str(scorer.total), timeout=LIVE_TIMEOUT_MS)
    page.shot("weekly")

    # ... having moved its live feed: the weekly channel subscribed, the all-time one's subscription ended
    page.wait_confirmed("/boards/weekly")
    global_ids = page.subscription_ids("/boards/global")
    page.wait_until(lambda: set(global_ids) <= page.unsubscribed_ids(), "unsubscribed from /boards/global")

    # When the leader scores again, then the weekly top 10 shows it live (a push: it carries the board's seq)
    page.record_changes()
    scorer.play(7)
    expect(leader_row).to_have_attribute("data-score", str(scorer.total), timeout=LIVE_TIMEOUT_MS)
    page.expect_change(scorer.user_id, "score")
    expect(page.by("top10")).not_to_have_attribute("data-seq", "")
    page.assert_same_document()
    page.shot("weekly-live")


def test_a_logged_in_player_sees_their_rank_on_the_board_shown(
    open_page: Callable[..., PageSession], api_url: str
) -> None:
    # Given a player with no score yet, logged in on the page, who switches to today's best match
    me = ApiPlayer(api_url)
    today = list_boards(api_url)["daily-best"]
    page = open_page("boards-player", viewport={"width": 1280, "height": 900})
    page.log_in(me.username)
    page.wait_confirmed(f"/players/{me.user_id}")  # the all-time board's rank channel is the player's own
    page.show_board("daily-best")
    expect(page.by("board-season")).to_have_text(f"Season {today['season']}")
    expect(page.by("board-countdown")).to_have_text(COUNTDOWN)
    expect(page.by("me-board")).to_have_text("Best match today")
    expect(page.by("me-no-score")).to_be_visible()  # the API's 404: no score this season
    expect(page.by("me-no-score")).to_contain_text("this season")
    # ... whose rank channel for this board replaces the all-time one
    page.wait_confirmed(f"/players/{me.user_id}/daily-best")
    all_time_ids = page.subscription_ids(f"/players/{me.user_id}")
    page.wait_until(lambda: set(all_time_ids) <= page.unsubscribed_ids(), "stopped watching the all-time rank")
    page.shot("daily-best-no-score")

    # When they play a match of 300 points from another client
    my_client = ApiPlayer(api_url, username=me.username)
    my_client.play(300)

    # Then the live rank message of this board puts them on it
    expect(page.by("rank-notice")).to_have_attribute("data-kind", "entered", timeout=LIVE_TIMEOUT_MS)
    expect(page.by("me-score")).to_have_attribute("data-score", "300", timeout=LIVE_TIMEOUT_MS)
    page.shot("daily-best-scored")

    # When they play another of 200 and switch to the weekly board
    my_client.play(200)
    week = standing_on(api_url, "weekly", me.user_id, 500)
    page.show_board("weekly")

    # Then their rank and score there are the week's: the sum
    expect(page.by("me-board")).to_have_text("This week")
    expect(page.by("me-score")).to_have_attribute("data-score", "500", timeout=LIVE_TIMEOUT_MS)
    expect(page.by("me-rank")).to_have_attribute("data-rank", str(week["rank"]), timeout=LIVE_TIMEOUT_MS)
    page.wait_confirmed(f"/players/{me.user_id}/weekly")
    page.shot("weekly-standing")

    # When they switch back, then today's best match is the best single match, not the sum, at the API's rank
    page.show_board("daily-best")
    best = standing_on(api_url, "daily-best", me.user_id, 300)
    expect(page.by("me-score")).to_have_attribute("data-score", "300", timeout=LIVE_TIMEOUT_MS)
    expect(page.by("me-rank")).to_have_attribute("data-rank", str(best["rank"]), timeout=LIVE_TIMEOUT_MS)
    expect(page.row("neighbours", me.user_id)).to_have_attribute("data-score", "300", timeout=LIVE_TIMEOUT_MS)
    # ... and the board's top 10 is the API's: everyone's best match
    top = requests.get(f"{api_url}/v1/boards/daily-best/scores", timeout=30).json()["items"]
    expect(page.by("top10-row")).to_have_count(len(top))
    shown = [(row.get_attribute("data-user-id"), row.get_attribute("data-score")) for row in page.by("top10-row").all()]
    assert shown == [(entry["user_id"], str(entry["score"])) for entry in top]
    page.shot("daily-best-again")


def test_when_the_countdown_reaches_zero_the_page_moves_to_the_new_season(
    open_page: Callable[..., PageSession], api_url: str
) -> None:
    # Given a player who leads this week (so that their scores change its top 10), and a page that GET /v1/boards
    # first tells the week is last week's, about to end (the API itself answers every later request: this week)
    me = ApiPlayer(api_url)
    me.climb_above(leader_score(api_url, "weekly"))
    standing_on(api_url, "weekly", me.user_id, me.total)
    boards = list_boards(api_url)
    this_week = boards["weekly"]
    year, week, _ = (datetime.fromisoformat(this_week["starts_at"]) - timedelta(days=1)).isocalendar()
    last_week = f"{year}-W{week:02d}"
    ending_soon = f"{datetime.now(UTC) + timedelta(seconds=SEASON_ENDS_IN_SECONDS):%Y-%m-%dT%H:%M:%SZ}"
    answers: list[str] = []

    def stand_in(route: Route) -> None:
        if answers:
            answers.append("api")
            route.continue_()
            return
        answers.append("stand-in")
        weekly = this_week | {"season": last_week, "starts_at": None, "ends_at": ending_soon}
        stood_in = [weekly if board["id"] == "weekly" else board for board in boards.values()]
        route.fulfill(content_type="application/json", body=json.dumps(stood_in))

    page = open_page(
        "new-season",
        viewport={"width": 1280, "height": 900},
        before_load=lambda context: context.route(re.compile(r"/v1/boards(\?.*)?$"), stand_in),
    )
    page.log_in(me.username)
    page.show_board("weekly")
    expect(page.by("board-season")).to_have_attribute("data-season", last_week)
    expect(page.by("board-countdown")).to_have_text(re.compile(r"^resets in 00:00:\d\d$"))
    expect(page.by("board-panel")).to_have_attribute("aria-busy", "false")
    expect(page.row("top10", me.user_id)).to_have_count(0)  # they scored this week, not last week
    expect(page.by("me-no-score")).to_be_visible()
    page.shot("last-week")
    page.wait_confirmed("/boards/weekly")
    board_renewals = len(page.subscription_ids("/boards/weekly"))
    own_renewals = len(page.subscription_ids(f"/players/{me.user_id}/weekly"))

    # When they score again while the page still shows last week
    me.play(5)

    # Then this week's top 10 reaches the page but is not another season's board: last week's stays as it was
    page.wait_until(
        lambda: any(
            (event.get("type"), event.get("board"), event.get("season")) == ("top10", "weekly", this_week["season"])
            for event in page.events
        ),
        "received this week's top 10",
    )
    page.page.wait_for_timeout(500)  # the page handles the frame after Playwright reports it
    expect(page.by("board-season")).to_have_attribute("data-season", last_week)  # (else this proves nothing)
    expect(page.row("top10", me.user_id)).to_have_count(0)
    expect(page.by("top10")).to_have_attribute("data-seq", "")

    # When the countdown reaches zero
    # Then the page asks the API for the boards again and shows this week: its season, its board and their standing
    reset_timeout_ms = (SEASON_ENDS_IN_SECONDS + 10) * 1000
    expect(page.by("board-season")).to_have_attribute("data-season", this_week["season"], timeout=reset_timeout_ms)
    assert answers[:2] == ["stand-in", "api"]
    expect(page.by("board-countdown")).to_have_text(COUNTDOWN)
    expect(page.row("top10", me.user_id)).to_have_attribute("data-score", str(me.total), timeout=LIVE_TIMEOUT_MS)
    expect(page.by("me-score")).to_have_attribute("data-score", str(me.total), timeout=LIVE_TIMEOUT_MS)

    # ... and renews both subscriptions, so that the player watches the new season (the old ones end once renewed)
    page.wait_until(
        lambda: (
            len(page.subscription_ids("/boards/weekly")) > board_renewals
            and len(page.subscription_ids(f"/players/{me.user_id}/weekly")) > own_renewals
        ),
        "renewed its subscriptions for the new season",
    )
    replaced = (
        page.subscription_ids("/boards/weekly")[:-1] + page.subscription_ids(f"/players/{me.user_id}/weekly")[:-1]
    )
    page.wait_until(lambda: set(replaced) <= page.unsubscribed_ids(), "ended the subscriptions it renewed")

    # When they score in the new season, then the page applies its live messages (counted by their own seq)
    page.record_changes()
    me.play(5)
    expect(page.row("top10", me.user_id)).to_have_attribute("data-score", str(me.total), timeout=LIVE_TIMEOUT_MS)
    expect(page.by("me-score")).to_have_attribute("data-score", str(me.total), timeout=LIVE_TIMEOUT_MS)
    page.expect_change(me.user_id, "score")
    expect(page.by("top10")).not_to_have_attribute("data-seq", "")
    page.shot("new-season")
