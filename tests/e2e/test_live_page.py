"""The live page (web/) in a real browser: Debian's Chromium driven by Playwright, against the running stack.

A visitor who is not logged in sees the live top 10; a player logs in through the page; other clients post scores
through the HTTP API; the page must show the new top 10, the player's own rank and the "someone passed you" notice
as the live feed (AppSync Events) delivers them, in the same document (no reload). Against the local runtime the
page is the one its gateway serves; against a deployed stack (API_URL) the test serves web/ itself on the API's
origin. ``config.json`` is answered by the test with the stack's URLs.
Screenshots of every step go to artifacts/screenshots/.
"""

import json
import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, Playwright, Route, expect, sync_playwright

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
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 3, "is_mobile": True, "has_touch": True}
MARKUP_NAME = "<img src=x onerror=alert(1)>"  # must show as text, never become an element


class ApiPlayer:
    """A player driven through the HTTP API: the "other client" of the test.

    Without ``username`` a new player is registered; with it, an existing player (with no score yet) logs in from
    here: a second client of a player who is also logged in on the page."""

    def __init__(self, api_url: str, display_name: str | None = None, *, username: str | None = None) -> None:
        self.api_url = api_url
        self.username = username or f"e2e_page_{uuid.uuid4().hex[:10]}"
        self.total = 0
        self.http = requests.Session()
        if username is None:
            body = {"username": self.username, "password": PASSWORD}
            if display_name:
                body["display_name"] = display_name
            answer = self.http.post(f"{api_url}/v1/users", json=body, timeout=30)
            assert answer.status_code == 201, answer.text
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


def leader_score(api_url: str) -> int:
    top = requests.get(f"{api_url}/v1/scores", timeout=30).json()
    return int(top[0]["score"]) if top else 0


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
        self.page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        self.page.on("dialog", lambda dialog: self.errors.append(f"dialog opened: {dialog.message}"))

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

    def opener(prefix: str, *, fake_clock: bool = False, **context_options: Any) -> PageSession:
        context = browser.new_context(**context_options)
        config = json.dumps({"apiUrl": api_url, "liveUrl": live.realtime_url, "liveHttpUrl": live.http_url})
        context.route(
            f"{api_url}/config.json", lambda route: route.fulfill(content_type="application/json", body=config)
        )
        if not stack_serves_page:
            for name in ("", "index.html", "app.js", "style.css"):
                context.route(f"{api_url}/{name}", serve_from_disk)
        session = PageSession(context, prefix)
        sessions.append(session)
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
    rival = ApiPlayer(api_url, "Anonymous view rival")
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
    expect(page.by("me-name")).to_have_text(me.username)
    page.shot("logged-in-no-score")

    # When another player takes the lead through the API
    rival.climb_above(leader_score(api_url))

    # Then the page's top 10 shows them first, marked new when they entered, their name as plain text
    rival_row = page.row("top10", rival.user_id)
    expect(rival_row).to_have_attribute("data-rank", "1", timeout=LIVE_TIMEOUT_MS)
    expect(rival_row).to_have_attribute("data-score", str(rival.total), timeout=LIVE_TIMEOUT_MS)
    page.expect_change(rival.user_id, "new")
    expect(rival_row.locator(".row__name")).to_contain_text(MARKUP_NAME)
    assert page.page.locator('[data-testid="top10"] img').count() == 0
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
    page.by("register-display-name").fill("Phone player")
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
    expect(page.by("me-name")).to_have_text("Phone player")
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
