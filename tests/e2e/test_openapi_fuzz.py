"""openapi.yaml against the running API: schemathesis generates requests for every operation from the document and
checks every answer against it, over HTTP (the local runtime the e2e session starts, or API_URL).

The bound: each operation gets schemathesis's coverage phase (the boundaries and mutations its schema defines:
missing, extra and mistyped fields, out-of-range values, a wrong media type...) and MAX_EXAMPLES = 100 random cases,
positive and negative, drawn from SEED. The same requests on every run, here and in CI: a fixed seed, no example
database, no shrinking, no deadline per example (Hypothesis's would fail a slow draw on a busy machine). About 4,700
requests: 35 s on the local runtime on an idle 2-core machine, 2 min with four other test sessions running
(`E2E_STATE_DIR=.local/e2e-fuzz .venv/bin/python -m pytest tests/e2e/test_openapi_fuzz.py -q`). Bounded in time too,
so that a hung API fails the run instead of holding it: every request this module sends (schemathesis's, its checks'
own and the fixtures') gives up after REQUEST_TIMEOUT_SECONDS, and an operation whose cases are still running after
OPERATION_BUDGET_SECONDS fails, saying how far it got. The slowest operation takes about 2 s on a busy 2-core machine:
the budget leaves a far slower CI machine room, and still ends a run that hangs (a case is at most a few requests,
each bounded) within minutes.

Every answer must be: no 5xx; a status the operation documents, with a documented content type, a body that matches
the documented schema (formats too) and the headers the document requires; a 4xx for negative data; and valid data
not refused, beyond the rules JSON Schema cannot say (POSITIVE_REFUSALS). Routes behind a player's token or IAM are
sent authorized (a player's real token, a SigV4 signature), then again with no credentials and with forged ones, so
API Gateway's own 401 and 403 are checked too. A test walks one whole session, so that the success answers the fuzzer
cannot reach by chance (a login, a refresh, a score) are checked as well.

Valid requests of the fuzzing phase are aimed at this run's players and the game's boards (`aim`), so they reach the
code behind the 404s; the coverage phase's go as generated. Every valid login names one account of this run: failed
logins count against that account, and after its 10 failures it answers 429 and takes nothing more from the client
address's limit, so the other e2e tests can still log in (the password changes likewise). The cap on open actions
answers 429 too. Both are documented answers, so not failures.
"""

import re
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import yaml
from botocore.credentials import Credentials
from schemathesis import Case, GenerationMode
from schemathesis.errors import FailureGroup

from clients.play import wait_until_scorable
from clients.signed_api import ExecuteApiAuth, region_of
from tests.e2e.test_boards_api import wait_for_score
from tests.e2e.test_scores_api import Player, wait_for_total

pytestmark = pytest.mark.e2e

OPENAPI = Path(__file__).resolve().parents[2] / "openapi.yaml"
SEED = 20261201
MAX_EXAMPLES = 100
REQUEST_TIMEOUT_SECONDS = 30
OPERATION_BUDGET_SECONDS = 300.0
PASSWORD = "correct horse battery"
PLAYER_TOKEN = "AccessTokenAuthorizer"
IAM = "AWS_IAM"

# Valid data the API refuses, by operation: rules JSON Schema cannot express. Anything else schema-valid must be
# accepted, or refused for a reason schemathesis allows by default (401, 403, 404, 409, 429).
POSITIVE_REFUSALS: dict[str, tuple[list[str], str]] = {
    "register": (["400"], "a display name needs a letter or number and nothing invisible (names.py)"),
    "start_action": (["422"], "the action types are the game's (template.yaml), not an enum in the document"),
    "post_score": (["400", "422"], "JSON Schema's integer admits 1.0 and the API wants no fraction; 1..max_score"),
    "post_server_score": (["400", "422"], "as post_score, with the type's range"),
    "get_board_scores": (["400"], "a season named like a date that is none: 2026-02-30, week 60"),
    "get_board_standing": (["400"], "as get_board_scores"),
}
DEFAULT_POSITIVE_STATUSES = ["2xx", "401", "403", "404", "409", "429"]


def operations_secured_by(scheme: str) -> list[str]:
    document = yaml.safe_load(OPENAPI.read_text())
    return [
        operation["operationId"]
        for item in document["paths"].values()
        for operation in item.values()
        if any(scheme in requirement for requirement in operation.get("security") or [])
    ]


FUZZ_CONFIG: dict[str, Any] = {
    "seed": SEED,
    # Every request schemathesis sends, checks' own included (schemathesis's default would be 10 s).
    "request-timeout": REQUEST_TIMEOUT_SECONDS,
    # How fast Hypothesis draws depends on the machine's load, not on the API: not a reason to fail (its `ci`
    # profile suppresses it too, so a run here and in CI draw the same).
    "suppress-health-check": ["too_slow"],
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none", "no-shrink": True},
    # The document has no links for a stateful phase: the fixtures below make the state the routes need.
    "phases": {"stateful": {"enabled": False}},
    "checks": {
        "enabled": False,
        "not_a_server_error": {"enabled": True},
        "status_code_conformance": {"enabled": True},
        "content_type_conformance": {"enabled": True},
        "response_schema_conformance": {"enabled": True},
        "response_headers_conformance": {"enabled": True},
        "missing_required_header": {"enabled": True},
        "ignored_auth": {"enabled": True},
        # Schemathesis's own list, plus 413 (a body over 4096 bytes) and less 5xx (not_a_server_error's).
        "negative_data_rejection": {
            "enabled": True,
            "expected-statuses": ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"],
        },
        "positive_data_acceptance": {"enabled": True, "expected-statuses": DEFAULT_POSITIVE_STATUSES},
        # Left off: `unsupported_method` and `allow_header_conformance` want 405 with Allow for an undeclared method,
        # where API Gateway answers 404 (as openapi.yaml says); the stateful checks need the links there are none of.
    },
    "operations": [
        *(
            {
                "include-operation-id": operation_id,
                "checks": {"positive_data_acceptance": {"expected-statuses": DEFAULT_POSITIVE_STATUSES + statuses}},
            }
            for operation_id, (statuses, _why) in POSITIVE_REFUSALS.items()
        ),
        # `missing_required_header` wants 401 for a request without `Authorization`, and API Gateway answers an
        # unsigned request to an IAM route 403 (documented, and checked by the others).
        {"include-operation-id": operations_secured_by(IAM), "checks": {"missing_required_header": {"enabled": False}}},
    ],
}

schema = schemathesis.openapi.from_path(OPENAPI, config=schemathesis.Config.from_dict(FUZZ_CONFIG))


def security_of(operation: Any) -> set[str]:
    """The security schemes an operation requires (none on the open routes)."""
    return {name for requirement in operation.definition.raw.get("security") or [] for name in requirement}


def operation_id(case: Case[Any]) -> str:
    return str(case.operation.definition.raw["operationId"])


class Bearer(requests.auth.AuthBase):
    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


class LateAuth(requests.auth.AuthBase):
    """A requests auth that schemathesis attaches to cases as it builds them (some at collection), and that the
    `identities` fixture completes once it has logged the players in."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.auth: requests.auth.AuthBase | None = None

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        assert self.auth is not None, f"no {self.what} yet: the test must use the `identities` fixture"
        return self.auth(request)


PLAYER = LateAuth("player's access token")
ACCOUNT_HOLDER = LateAuth("account holder's access token")
STUDIO = LateAuth("IAM signer")
# They end the caller's sessions: a player of their own, so the player's token stays good for the rest.
ACCOUNT_OPERATIONS = {"logout", "logout_everywhere", "change_password"}


def _secured_by(scheme: str, on_account: bool | None = None) -> Callable[[Any], bool]:
    def matches(context: Any) -> bool:
        operation = context.operation
        acts_on_account = operation.definition.raw["operationId"] in ACCOUNT_OPERATIONS
        return scheme in security_of(operation) and on_account in (None, acts_on_account)

    return matches


# A case whose credentials schemathesis leaves out on purpose (a negative case) gets none of these.
schema.auth.set_from_requests(ACCOUNT_HOLDER).apply_to(_secured_by(PLAYER_TOKEN, on_account=True))
schema.auth.set_from_requests(PLAYER).apply_to(_secured_by(PLAYER_TOKEN, on_account=False))
schema.auth.set_from_requests(STUDIO).apply_to(_secured_by(IAM))


@dataclass(frozen=True)
class Identities:
    """This run's players and credentials: what the fuzzed requests act on."""

    player: Player  # starts actions and posts scores
    account_holder: Player  # logs out (everywhere) and changes the password
    login_target: Player  # every valid login body names this account
    ranked: Player  # has points on every board; the game server scores it, the standings are read for it
    moderated: Player  # the operators remove points from, ban and unban this one
    boards: list[str]
    forged_bearer: str  # the player's token with its signature changed
    forged_signer: ExecuteApiAuth  # SigV4 with keys nobody holds


@pytest.fixture(scope="module")
def identities(api_url: str, iam_auth: ExecuteApiAuth) -> Identities:
    player, account_holder, login_target, ranked, moderated = (Player(api_url) for _ in range(5))
    first_points = {"user_id": ranked.user_id, "action_id": f"fuzz-{uuid.uuid4().hex}", "score": 10}
    scored = requests.post(
        f"{api_url}/v1/server/scores", json=first_points, auth=iam_auth, timeout=REQUEST_TIMEOUT_SECONDS
    )
    assert scored.status_code == 202, scored.text
    wait_for_total(api_url, ranked.user_id, 10)
    boards = [board["id"] for board in requests.get(f"{api_url}/v1/boards", timeout=REQUEST_TIMEOUT_SECONDS).json()]
    header_and_payload, signature = player.access_token.rsplit(".", 1)
    forged_signature = ("B" if signature[0] == "A" else "A") + signature[1:]
    nobodys_keys = Credentials("AKIAFUZZNOBODYHOLDS0", "not-the-secret-key-of-anybody-0000000000")
    found = Identities(
        player,
        account_holder,
        login_target,
        ranked,
        moderated,
        boards,
        forged_bearer=f"{header_and_payload}.{forged_signature}",
        forged_signer=ExecuteApiAuth(nobodys_keys, region_of(api_url) or "us-east-1"),
    )
    PLAYER.auth = Bearer(player.access_token)
    ACCOUNT_HOLDER.auth = Bearer(account_holder.access_token)
    STUDIO.auth = iam_auth
    return found


def _one_of_the_boards(ids: Identities, generated: str) -> str:
    return ids.boards[zlib.crc32(generated.encode()) % len(ids.boards)]  # spread, the same on every run


# Where a valid request of the fuzzing phase is aimed: operation -> [(location, name, this run's value)].
AIMED_AT: dict[str, list[tuple[str, str, Callable[[Identities, Any], str]]]] = {
    "post_score": [("body", "user_id", lambda ids, _: ids.player.user_id)],
    "post_server_score": [("body", "user_id", lambda ids, _: ids.ranked.user_id)],
    "remove_points": [("body", "user_id", lambda ids, _: ids.moderated.user_id)],
    "ban_player": [("body", "user_id", lambda ids, _: ids.moderated.user_id)],
    "unban_player": [("body", "user_id", lambda ids, _: ids.moderated.user_id)],
    "get_standing": [("path", "user_id", lambda ids, _: ids.ranked.user_id)],
    "get_board_scores": [("path", "board", _one_of_the_boards)],
    "get_board_standing": [
        ("path", "board", _one_of_the_boards),
        ("path", "user_id", lambda ids, _: ids.ranked.user_id),
    ],
}


def aim(case: Case[Any], ids: Identities) -> None:
    """Point a valid request at this run's players and boards (see the module's docstring); invalid ones, which must
    be refused whatever they name, and the coverage phase's go as generated."""
    if case.meta is None or case.meta.generation.mode is not GenerationMode.POSITIVE:
        return
    if operation_id(case) == "login" and isinstance(case.body, dict):
        case.body["username"] = ids.login_target.username
    if case.meta.phase.name != "fuzzing":
        return
    for location, name, value in AIMED_AT.get(operation_id(case), []):
        container = case.body if location == "body" else case.path_parameters
        if isinstance(container, dict) and name in container:
            container[name] = value(ids, container[name])


# Per operation (one test each, its cases drawn by Hypothesis): when its first case started, and how many have run.
OPERATION_CLOCKS: dict[str, tuple[float, int]] = {}


def within_the_budget(case: Case[Any]) -> None:
    """Fail the operation's test, saying how far it got, once its cases have run for OPERATION_BUDGET_SECONDS."""
    label = case.operation.label
    started, cases = OPERATION_CLOCKS.setdefault(label, (time.monotonic(), 0))
    OPERATION_CLOCKS[label] = (started, cases + 1)
    if (elapsed := time.monotonic() - started) > OPERATION_BUDGET_SECONDS:
        message = (
            f"{label}: {cases} cases took {elapsed:.0f} s, past the budget of {OPERATION_BUDGET_SECONDS:.0f} s "
            "(the slowest operation takes about 2 s on a busy machine): the API, or the machine, is far too slow"
        )
        pytest.fail(message, pytrace=False)


@schema.parametrize()
def test_every_answer_is_one_the_document_describes(case: Case[Any], api_url: str, identities: Identities) -> None:
    within_the_budget(case)
    aim(case, identities)

    case.call_and_validate(base_url=api_url)

    schemes = security_of(case.operation)
    if schemes:
        # The same request without credentials, then with forged ones: API Gateway's answers, documented too.
        anonymous = case.headers.copy()
        anonymous.pop("Authorization", None)
        case.derive(headers=anonymous).call_and_validate(base_url=api_url)
        if PLAYER_TOKEN in schemes:
            forged = anonymous.copy()
            forged["Authorization"] = f"Bearer {identities.forged_bearer}"
            case.derive(headers=forged).call_and_validate(base_url=api_url)
        else:
            case.derive(headers=anonymous).call_and_validate(base_url=api_url, auth=identities.forged_signer)


def tokens_in(response: schemathesis.Response) -> list[str]:
    """The tokens a body carries (`access_token`, `refresh_token`, `device_token`)."""
    body = response.json() if response.content and b"_token" in response.content else {}
    return [value for key, value in body.items() if key.endswith("_token") and isinstance(value, str)]


def without_secrets(report: str, tokens: list[str]) -> str:
    """A failure report without the tokens of the answer it shows, even cut short (a report is a log)."""
    for token in tokens:
        report = re.sub(re.escape(token[:8]) + r"[\w.-]*", "[a token]", report)
    return report.replace(PASSWORD, "[the password]")


def test_the_answers_of_a_whole_session_are_the_documented_ones(api_url: str, iam_auth: ExecuteApiAuth) -> None:
    def call(method: str, path: str, status: int, *, auth: Any = None, **request: Any) -> Any:
        """Send one request as schemathesis would, check the answer against the document, and its status."""
        __tracebackhide__ = True  # its arguments hold the password: the report shows the test's line instead
        case = schema[path][method].Case(**request)
        response = case.call(base_url=api_url, auth=auth)
        try:
            case.validate_response(response, transport_kwargs={"base_url": api_url, "auth": auth})
            assert response.status_code == status, f"{method} {path}: {response.status_code} {response.text}"
        except (AssertionError, FailureGroup) as failure:
            raise AssertionError(without_secrets(str(failure), tokens_in(response))) from None
        return response.json() if response.content else None

    username = f"fuzz_{uuid.uuid4().hex[:12]}"
    credentials = {"username": username, "password": PASSWORD}
    user_id = call("POST", "/v1/users", 201, body=credentials)["user_id"]
    login = call("POST", "/v1/login", 200, body=credentials)
    session = call("POST", "/v1/token/refresh", 200, body={"refresh_token": login["refresh_token"]})
    bearer = Bearer(session["access_token"])

    action = call("POST", "/v1/actions", 201, auth=bearer, body={"type": "match"})
    wait_until_scorable(action)
    score = {"user_id": user_id, "action_id": action["action_id"], "score": 42}
    for _retry in range(2):
        call("POST", "/v1/scores", 202, auth=bearer, body=score, headers={"Idempotency-Key": f"fuzz-{user_id}"})
    server_score = {"user_id": user_id, "action_id": f"fuzz-{uuid.uuid4().hex}", "score": 8}
    call("POST", "/v1/server/scores", 202, auth=iam_auth, body=server_score)
    wait_for_total(api_url, user_id, 50)

    call("GET", "/v1/scores", 200)
    call("GET", "/v1/scores/{user_id}", 200, path_parameters={"user_id": user_id})
    for board in call("GET", "/v1/boards", 200):
        wait_for_score(api_url, board["id"], user_id, 50 if board["aggregate"] == "sum" else 42)
        call("GET", "/v1/boards/{board}/scores", 200, path_parameters={"board": board["id"]}, query={"limit": 100})
        standing = {"board": board["id"], "user_id": user_id}
        call("GET", "/v1/boards/{board}/scores/{user_id}", 200, path_parameters=standing)

    removal = {"user_id": user_id, "board": "global", "season": "all", "reason": "fuzz: a whole session"}
    call("POST", "/v1/moderation/removals", 200, auth=iam_auth, body=removal)
    ban = {"user_id": user_id, "reason": "fuzz: a whole session"}
    call("POST", "/v1/moderation/bans", 200, auth=iam_auth, body=ban)
    call("POST", "/v1/moderation/unbans", 200, auth=iam_auth, body=ban)

    call("POST", "/v1/logout", 204, auth=bearer, body={"refresh_token": session["refresh_token"]})
    call("POST", "/v1/logout/everywhere", 204, auth=bearer)
    change = {"current_password": PASSWORD, "new_password": "a brand new horse"}
    call("POST", "/v1/password", 204, auth=bearer, body=change)


def test_a_path_parameter_holding_a_newline_reaches_the_function(api_url: str) -> None:
    # Found by the fuzzer: the local runtime answered "%0A" in a path with aiohttp's own text/plain 404.
    case = schema["/v1/scores/{user_id}"]["GET"].Case(path_parameters={"user_id": "no\nsuch player"})

    response = case.call_and_validate(base_url=api_url)

    assert response.status_code == 404
    assert response.json()["type"] == "urn:leaderboard:problem:not-found"
