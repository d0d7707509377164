"""What the hostile-input suites (test_hostile_*.py) share: players who keep every token of their login, JWTs forged
by hand (a library would refuse to build most of them), the stack's own signing key (the local runtime's only), a
client at another address (the local runtime's only), the game under test, and the exact shapes of a refusal.

Every refusal is checked twice: its exact answer (problem details for the functions' own, ``{"message"}`` for API
Gateway's) and that nothing changed (the helpers here read the state back: a session still refreshes, a standing is
still what it was).
"""

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from requests.adapters import HTTPAdapter

from bench import template_game
from clients.event_api import (
    Authorization,
    ConnectionRefused,
    EventSocket,
    SubscribeError,
    UnsubscribeError,
)
from leaderboard.game import Game, parse
from local.services import Endpoints, aws_session
from local.template import LOCAL_GAME_FILE
from tests.e2e.conftest import LiveFeed
from tests.e2e.test_scores_api import PASSWORD, Player, standing

ANONYMOUS = "anonymous"  # the live feed's authorization value for a viewer who is not logged in
# What the local Event API answers an authorization it refuses; AWS's exact errorType is unconfirmed
# (research/appsync-events-facts.md), so against a deployed stack any refusal is taken.
LOCAL_LIVE_REFUSAL = "UnauthorizedException"


# --- Answers ----------------------------------------------------------------------------------------------------------


def assert_problem(response: requests.Response, status: int) -> dict[str, Any]:
    """The function's own refusal: RFC 9457 problem details with this status, in our words; its body."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body = dict(response.json())
    assert body["status"] == status
    assert set(body) >= {"type", "title", "status", "detail"}
    assert "Traceback" not in response.text
    return body


def assert_gateway(response: requests.Response, status: int, message: str | None) -> None:
    """API Gateway's own refusal: ``{"message": ...}`` with this status (``message`` None: any message; AWS's exact
    words are not documented for every refusal)."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"message"}, body
    if message is not None:
        assert body["message"] == message


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- Players ----------------------------------------------------------------------------------------------------------


def new_username() -> str:
    return f"e2e_{secrets.token_hex(6)}"


class Account(Player):
    """A registered, logged-in player (``Player``: its session sends the access token) who also keeps the refresh
    and device tokens of a login of their own."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        answer = self.login()
        assert answer.status_code == 200, answer.text
        self.refresh_token = str(answer.json()["refresh_token"])
        self.device_token = str(answer.json()["device_token"])

    def login(self, password: str = PASSWORD, client: requests.Session | None = None) -> requests.Response:
        body = {"username": self.username, "password": password}
        return (client or requests.Session()).post(f"{self.base_url}/v1/login", json=body, timeout=30)

    def refresh(self, refresh_token: str | None = None) -> requests.Response:
        body = {"refresh_token": refresh_token or self.refresh_token}
        return requests.post(f"{self.base_url}/v1/token/refresh", json=body, timeout=30)

    def assert_session_lives(self) -> None:
        """The login's session still refreshes (nothing revoked or spent it); keeps the family's next token."""
        renewed = self.refresh()
        assert renewed.status_code == 200, renewed.text
        self.refresh_token = str(renewed.json()["refresh_token"])

    def assert_session_ended(self, refresh_token: str | None = None) -> None:
        assert_problem(self.refresh(refresh_token), 401)

    def assert_unscored(self) -> None:
        """No score of theirs reached the board (GET /v1/scores/{user_id} is 404 until one does)."""
        assert_problem(standing(self.base_url, self.user_id), 404)

    def open_action(self, action_type: str = "match") -> dict[str, Any]:
        """A newly started action (not waited for: callers that score it wait until it is scorable)."""
        started = self.http.post(f"{self.base_url}/v1/actions", json={"type": action_type}, timeout=30)
        assert started.status_code == 201, started.text
        return dict(started.json())


def register(base_url: str, username: str, display_name: str | None = None) -> requests.Response:
    body: dict[str, Any] = {"username": username, "password": PASSWORD}
    if display_name is not None:
        body["display_name"] = display_name
    return requests.post(f"{base_url}/v1/users", json=body, timeout=30)


def assert_no_account(base_url: str, username: str) -> None:
    """Nobody holds `username`: registering it now succeeds. (Not a login: a failed one would count against the
    client address's limit on failed logins, which the whole suite shares.)"""
    taken = register(base_url, username)
    assert taken.status_code == 201, taken.text


# --- Another client address (local runtime only) ---------------------------------------------------------------------


class _FromAddress(HTTPAdapter):
    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def new_address(local_stack: Endpoints | None) -> str | None:
    """A client address of its own, 127.x.y.z, against the local runtime (Linux routes all of 127/8 to it, and it
    counts per-address limits by the connection's address, as API Gateway does: no spoofable header); None against a
    deployed stack, where the runner has one address."""
    if local_stack is None:
        return None
    return f"127.{secrets.randbelow(254) + 1}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"


def client_at(address: str | None) -> requests.Session:
    """An HTTP client whose connections come from `address` (None: the machine's own)."""
    client = requests.Session()
    if address is not None:
        client.mount("http://", _FromAddress(address))
    return client


def address_of_its_own(local_stack: Endpoints | None) -> str:
    """A client address of its own; skips against a deployed stack, where the runner has only one."""
    address = new_address(local_stack)
    if address is None:
        pytest.skip("needs a client address of its own: only the local runtime can be reached from several")
    return address


# --- The game under test ----------------------------------------------------------------------------------------------


def game_under_test(local_stack: Endpoints | None) -> Game:
    """The game the stack runs: locally local/game.json (or LOCAL_GAME_FILE); against API_URL, E2E_GAME_FILE or
    template.yaml's GAME."""
    if local_stack is not None:
        document = Path(os.environ.get("LOCAL_GAME_FILE") or LOCAL_GAME_FILE).read_text()
    elif os.environ.get("E2E_GAME_FILE"):
        document = Path(os.environ["E2E_GAME_FILE"]).read_text()
    else:
        document = template_game()
    return parse(document)


# --- Forged tokens ----------------------------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def token_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a token, unverified."""
    return dict(jwt.get_unverified_header(token)), dict(jwt.decode(token, options={"verify_signature": False}))


def signed(header: Any, claims: Any, key: Any, algorithm: str = "HS256") -> str:
    """A compact JWS of exactly this header and these claims (any JSON, any keys), signed by hand with `key` for
    `algorithm` (HMAC keys are bytes, used as they are: PyJWT would refuse a PEM public key as an HMAC secret)."""
    signing_input = f"{b64json(header)}.{b64json(claims)}"
    if algorithm.startswith("HS"):
        digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[algorithm]
        signature = hmac.new(key, signing_input.encode(), digest).digest()
    else:
        signature = jwt.get_algorithm_by_name(algorithm).sign(signing_input.encode(), key)
    return f"{signing_input}.{b64url(signature)}"


def unsigned(header: Any, claims: Any, signature: str = "") -> str:
    """A compact JWS with this header and claims and the given (by default empty) signature segment."""
    return f"{b64json(header)}.{b64json(claims)}.{signature}"


@dataclass(frozen=True)
class StackKey:
    """The stack's current signing key: its `kid` (the secret's VersionId) and secret."""

    kid: str
    secret: bytes


def stack_signing_key(local_stack: Endpoints | None) -> StackKey:
    """The local runtime's signing key, read from its Secrets Manager (moto). Skips against a deployed stack, whose
    key nobody may read."""
    if local_stack is None:
        pytest.skip("signs with the stack's own key: only the local runtime's can be read")
    client = aws_session(local_stack.session_token).client("secretsmanager", endpoint_url=local_stack.aws_endpoint_url)
    secret = client.get_secret_value(SecretId=local_stack.identities["SigningKeySecret"].ref)
    return StackKey(secret["VersionId"], json.loads(secret["SecretString"])["signing_key"].encode())


def access_claims(template_token: str, player: Player, **changes: Any) -> dict[str, Any]:
    """Claims as the stack issues them (issuer and audience taken from a token it issued), for `player`, fresh
    (iat now, 600 s, a new jti), with `changes` applied (a value None removes the claim)."""
    _, issued = token_parts(template_token)
    now = int(time.time())
    claims = issued | {"sub": player.user_id, "username": player.username, "name": player.display_name}
    claims |= {"iat": now, "exp": now + 600, "jti": secrets.token_hex(16)}
    claims |= changes
    return {name: value for name, value in claims.items() if value is not None}


def access_header(key: StackKey, **changes: Any) -> dict[str, Any]:
    """The header the stack issues access tokens with, with `changes` applied (a value None removes the key)."""
    header = {"alg": "HS256", "typ": "at+jwt", "kid": key.kid} | changes
    return {name: value for name, value in header.items() if value is not None}


# --- The live feed ----------------------------------------------------------------------------------------------------


def assert_live_refusal(refused: ConnectionRefused | SubscribeError, local_stack: Endpoints | None) -> None:
    """A refusal from the live feed: the local Event API's exact one, or any of AWS's (errors or an HTTP status)."""
    if local_stack is not None:
        assert refused.error_type == LOCAL_LIVE_REFUSAL, refused
    else:
        assert refused.error_type is not None or refused.status in (400, 401, 403), refused


async def refused_connect(live: LiveFeed, authorization: Authorization) -> ConnectionRefused:
    """Connecting with this authorization is refused; the refusal."""
    try:
        socket = await EventSocket.connect(live.realtime_url, live.http_host, authorization)
    except ConnectionRefused as refused:
        return refused
    await socket.close()
    pytest.fail("the live feed accepted the connection")  # the value itself stays out of the report: it may be real


async def refused_subscribe(
    live: LiveFeed, channel: str, authorization: Authorization, connect_as: Authorization = ANONYMOUS
) -> SubscribeError:
    """On a connection authorized with `connect_as`, subscribing to `channel` with `authorization` in the subscribe
    message is refused, and nothing was subscribed (unsubscribing its id is an error); the refusal."""
    # An empty value goes as it is; EventSocket.subscribe would send the connection's instead.
    sent = {"Authorization": authorization} if authorization == "" else authorization
    async with await EventSocket.connect(live.realtime_url, live.http_host, connect_as) as socket:
        subscription_id = secrets.token_hex(8)
        with pytest.raises(SubscribeError) as refused:
            await socket.subscribe(channel, sent, subscription_id)
        with pytest.raises(UnsubscribeError):
            await socket.unsubscribe(subscription_id)
    return refused.value
