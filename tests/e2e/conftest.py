"""The e2e harness: ``api_url`` is ``API_URL`` (a deployed stack) or, without it, the local runtime; ``live`` is the
live feed's Event API: ``WS_URL`` and ``LIVE_HTTP_URL`` (the deployed stack's ``LiveRealtimeUrl`` and ``LiveHttpUrl``
outputs) or the local runtime's emulation of it.

Without ``API_URL`` the session starts ``python -m local`` (what ``make run`` starts) on free ports, waits until it
serves, and at the end stops it with SIGINT (Ctrl-C) and checks that it left no process behind. The runtime's output
goes to ``.local/e2e/runtime.log`` and is shown if it fails to start or to stop. ``local_stack`` gives tests that
need more than HTTP (moto, the Redis, the queues' URLs) the runtime's ``.local/e2e/stack.json``; it is None against a
deployed stack. ``iam_auth`` signs requests to the IAM-authorized routes: with the local runtime's credentials, or
against ``API_URL`` with the environment's AWS credentials (boto3's default chain: AWS_PROFILE, the variables...).
"""

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from clients.signed_api import ExecuteApiAuth
from local import processes
from local.processes import LIFTED_ADDRESS_LIMITS, LocalRuntimeError
from local.services import Endpoints, aws_session, read_running_stack
from tests.e2e.secrets_seen import SecretsSeen

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# E2E_STATE_DIR lets two e2e sessions run side by side, each with a runtime of its own.
STATE_DIR = Path(os.environ.get("E2E_STATE_DIR") or PROJECT_ROOT / ".local" / "e2e")
# The suite registers and reads far more from 127.0.0.1 than one client would: LIFTED_ADDRESS_LIMITS (a deployed
# stack the suite runs against needs the same). Every log line the functions can write, DEBUG included:
# test_log_hygiene.py reads them all for secrets.
PARAMETERS = [*LIFTED_ADDRESS_LIMITS, "LogLevel=DEBUG"]
# The state folders of the local runtimes this session started: their logs are what test_log_hygiene.py reads.
RUNTIME_STATE_DIRS: list[Path] = []


SECRETS_SEEN = SecretsSeen()


@pytest.fixture(scope="session", autouse=True)
def secrets_seen() -> Iterator[SecretsSeen]:
    """Every password, token and key the session sends or is answered over HTTP (see secrets_seen.py)."""
    with SECRETS_SEEN.recording():
        yield SECRETS_SEEN


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SECRETS_SEEN.checked:
        terminalreporter.write_line(f"log hygiene: {SECRETS_SEEN.checked}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The log hygiene check runs last, over the logs of everything before it."""
    items.sort(key=lambda item: item.path.name == "test_log_hygiene.py")


@pytest.fixture(scope="session")
def api_url() -> Iterator[str]:
    """Base URL of the HTTP API under test, without a trailing slash."""
    deployed = os.environ.get("API_URL")
    if deployed:
        yield deployed.rstrip("/")
        return
    with local_runtime(STATE_DIR, dict(os.environ), PARAMETERS) as api_url:
        yield api_url


@contextlib.contextmanager
def local_runtime(state_dir: Path, environment: dict[str, str], parameter_overrides: list[str]) -> Iterator[str]:
    """local.processes.local_runtime for a test: its state folder registered for test_log_hygiene.py, and a runtime
    that fails to start or to stop cleanly a test failure with the runtime's output (no traceback)."""
    RUNTIME_STATE_DIRS.append(state_dir)
    try:
        with processes.local_runtime(state_dir, environment, parameter_overrides) as api_url:
            yield api_url
    except LocalRuntimeError as failed:
        pytest.fail(str(failed), pytrace=False)


@pytest.fixture(scope="session")
def local_stack(api_url: str) -> Endpoints | None:
    """The local runtime's endpoints (moto, Redis, queue URLs by logical id), or None against ``API_URL``."""
    if os.environ.get("API_URL"):
        return None
    endpoints = read_running_stack(STATE_DIR / "stack.json")
    assert endpoints is not None, f"the local runtime serving {api_url} left no {STATE_DIR / 'stack.json'}"
    return endpoints


@pytest.fixture(scope="session")
def iam_auth(local_stack: Endpoints | None) -> ExecuteApiAuth:
    """A requests auth for the IAM-authorized routes (``requests.post(url, json=..., auth=iam_auth)``): the local
    runtime's credentials, which it checks the signature against; a deployed stack's caller needs
    ``execute-api:Invoke`` on the route."""
    if local_stack is None:
        return ExecuteApiAuth()  # the default chain; the region comes from API_URL's host (or AWS_DEFAULT_REGION)
    session = aws_session(local_stack.session_token)
    return ExecuteApiAuth(session.get_credentials(), session.region_name)


@dataclass(frozen=True)
class LiveFeed:
    """Where the live feed is: the realtime WebSocket URL and the Event API's HTTP endpoint (whose host goes into every
    authorization)."""

    realtime_url: str
    http_url: str

    @property
    def http_host(self) -> str:
        return urlsplit(self.http_url).netloc


@pytest.fixture(scope="session")
def live(api_url: str, local_stack: Endpoints | None) -> LiveFeed:
    """The live feed under test (``wss://<Dns.Realtime>/event/realtime``, locally ``ws://127.0.0.1:.../event/realtime``)."""
    if local_stack is None:
        realtime_url, http_url = os.environ.get("WS_URL"), os.environ.get("LIVE_HTTP_URL")
        if not (realtime_url and http_url):
            message = (
                "API_URL names a deployed stack: set WS_URL and LIVE_HTTP_URL to its LiveRealtimeUrl and LiveHttpUrl"
            )
            pytest.fail(message, pytrace=False)
        return LiveFeed(realtime_url, http_url)
    assert local_stack.live_url, f"the local runtime serving {api_url} serves no Event API (see its stack.json)"
    return LiveFeed(local_stack.live_url, local_stack.live_http_url)
