"""The e2e harness: ``api_url`` is ``API_URL`` (a deployed stack) or, without it, the local runtime; ``ws_url`` is
``WS_URL`` (the deployed stack's ``WebSocketUrl`` output) or the local runtime's WebSocket API.

Without ``API_URL`` the session starts ``python -m local`` (what ``make run`` starts) on free ports, waits until it
serves, and at the end stops it with SIGINT (Ctrl-C) and checks that it left no process behind. The runtime's output
goes to ``.local/e2e/runtime.log`` and is shown if it fails to start or to stop. ``local_stack`` gives tests that
need more than HTTP (moto, the Redis, the queues' URLs) the runtime's ``.local/e2e/stack.json``; it is None against a
deployed stack.
"""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.processes import RuntimeProcess, free_port, start_serving
from local.services import Endpoints, read_running_stack

PROJECT_ROOT = Path(__file__).resolve().parents[2]
STATE_DIR = PROJECT_ROOT / ".local" / "e2e"
START_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 30.0


@pytest.fixture(scope="session")
def api_url() -> Iterator[str]:
    """Base URL of the HTTP API under test, without a trailing slash."""
    deployed = os.environ.get("API_URL")
    if deployed:
        yield deployed.rstrip("/")
        return

    def on_free_ports() -> RuntimeProcess:
        environment = os.environ | {"LOCAL_API_PORT": str(free_port()), "LOCAL_WS_PORT": str(free_port())}
        return RuntimeProcess(STATE_DIR, STATE_DIR / "runtime.log", environment)

    try:
        runtime = start_serving(on_free_ports, START_TIMEOUT_SECONDS)
    except RuntimeError as failed:
        pytest.fail(str(failed), pytrace=False)
    endpoints = read_running_stack(runtime.state_file)
    assert endpoints is not None
    yield endpoints.api_url
    code, orphans = runtime.stop(timeout_seconds=STOP_TIMEOUT_SECONDS)
    assert not orphans, f"processes left behind by the local runtime: {orphans}\n{runtime.output()}"
    assert code == 0, f"the local runtime exited with {code}:\n{runtime.output()}"


@pytest.fixture(scope="session")
def local_stack(api_url: str) -> Endpoints | None:
    """The local runtime's endpoints (moto, Redis, queue URLs by logical id), or None against ``API_URL``."""
    if os.environ.get("API_URL"):
        return None
    endpoints = read_running_stack(STATE_DIR / "stack.json")
    assert endpoints is not None, f"the local runtime serving {api_url} left no {STATE_DIR / 'stack.json'}"
    return endpoints


@pytest.fixture(scope="session")
def ws_url(api_url: str, local_stack: Endpoints | None) -> str:
    """URL of the WebSocket API under test, with its stage (``wss://.../live``, locally ``ws://127.0.0.1:.../live``).

    Connect with ``?token=<access token>`` appended.
    """
    deployed = os.environ.get("WS_URL")
    if deployed:
        return deployed.rstrip("/")
    if local_stack is None:
        pytest.fail("API_URL names a deployed stack: set WS_URL to its WebSocketUrl output too", pytrace=False)
    assert local_stack.ws_url, f"the local runtime serving {api_url} serves no WebSocket API (see its stack.json)"
    return local_stack.ws_url
