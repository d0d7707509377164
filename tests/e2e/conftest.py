"""The e2e harness: ``api_url`` is ``API_URL`` (a deployed stack) or, without it, the local runtime; ``ws_url`` is
``WS_URL`` (the deployed stack's ``WebSocketUrl`` output) or the local runtime's WebSocket API.

Without ``API_URL`` the session starts ``python -m local`` (what ``make run`` starts) on free ports, waits until it
serves, and at the end stops it with SIGINT (Ctrl-C) and checks that it left no process behind. The runtime's output
goes to ``.local/e2e/runtime.log`` and is shown if it fails to start or to stop. ``local_stack`` gives tests that
need more than HTTP (moto, the Redis, the queues' URLs) the runtime's ``.local/e2e/stack.json``; it is None against a
deployed stack.
"""

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.processes import descendants, free_port, pid_alive
from local.services import Endpoints, read_running_stack

PROJECT_ROOT = Path(__file__).resolve().parents[2]
STATE_DIR = PROJECT_ROOT / ".local" / "e2e"
START_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 30.0


def _serves(url: str) -> bool:
    """Whether the API answers at all (an unknown path gets API Gateway's 404)."""
    try:
        with urllib.request.urlopen(f"{url}/__e2e_probe__", timeout=2):  # noqa: S310 - our own loopback URL
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _output(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else "(no output)"


def _wait_until_serving(runtime: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if runtime.poll() is not None:
            pytest.fail(f"the local runtime exited with {runtime.returncode}:\n{_output(log)}", pytrace=False)
        if _serves(url):
            return
        time.sleep(0.2)
    os.killpg(runtime.pid, signal.SIGKILL)
    pytest.fail(f"the local runtime did not serve {url} in {START_TIMEOUT_SECONDS:.0f} s:\n{_output(log)}")


def _stop_and_check_for_orphans(runtime: subprocess.Popen[bytes], log: Path) -> None:
    children = descendants(runtime.pid)
    runtime.send_signal(signal.SIGINT)
    try:
        code = runtime.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(runtime.pid, signal.SIGKILL)
        pytest.fail(f"the local runtime did not stop within {STOP_TIMEOUT_SECONDS:.0f} s:\n{_output(log)}")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(pid_alive(pid) for pid in children):
        time.sleep(0.1)
    orphans = sorted(pid for pid in children if pid_alive(pid))
    for pid in orphans:
        os.kill(pid, signal.SIGKILL)
    assert not orphans, f"processes left behind by the local runtime: {orphans}\n{_output(log)}"
    assert code == 0, f"the local runtime exited with {code}:\n{_output(log)}"


@pytest.fixture(scope="session")
def api_url() -> Iterator[str]:
    """Base URL of the HTTP API under test, without a trailing slash."""
    deployed = os.environ.get("API_URL")
    if deployed:
        yield deployed.rstrip("/")
        return
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    log = STATE_DIR / "runtime.log"
    port = free_port()
    environment = os.environ | {
        "LOCAL_API_PORT": str(port),
        "LOCAL_WS_PORT": str(free_port()),
        "LOCAL_STATE_DIR": str(STATE_DIR),
    }
    with log.open("wb") as output:
        runtime = subprocess.Popen(
            [sys.executable, "-m", "local"],
            cwd=PROJECT_ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    _wait_until_serving(runtime, url, log)
    yield url
    _stop_and_check_for_orphans(runtime, log)


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
