"""What no log line may hold: every secret the e2e run handles, recorded as it goes over HTTP.

Every request the suite makes goes through requests' ``HTTPAdapter.send`` (``requests.post`` included); the recorder
wraps it for the session and keeps the passwords and bearer tokens the stack took, and the tokens it answered (access,
refresh, device). ``tests/e2e/test_log_hygiene.py`` then reads every log the session's local runtimes wrote.
"""

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

# Shorter or plainer values are too common to be evidence (a hostile case may send "a" as a password).
SHORTEST_SECRET = 8
FEWEST_DISTINCT = 5
SECRET_FIELDS = {"password", "current_password", "new_password", "access_token", "refresh_token", "device_token"}


def improbable(value: str) -> bool:
    """Whether a value is unlikely to turn up in a log by chance: long and varied enough, and not a number (a fuzzer
    registers "00000000" or "123456789012" as a password, and Redis's banner and every ARN hold such digits)."""
    return len(value) >= SHORTEST_SECRET and len(set(value)) >= FEWEST_DISTINCT and not value.isdigit()


class SecretsSeen:
    def __init__(self) -> None:
        self.values: set[str] = set()
        self.requests = 0
        # What test_log_hygiene.py read, for the session's summary: "N secrets sought in M lines of K logs".
        self.checked = ""

    def add(self, value: object) -> None:
        if isinstance(value, str) and improbable(value):
            self.values.add(value)

    def add_fields(self, body: bytes | str | None) -> None:
        """The secret fields of a JSON object body (anything else holds none the suite could know of)."""
        try:
            document = json.loads(body) if body else None
        except ValueError:
            return
        if isinstance(document, dict):
            for field in SECRET_FIELDS & document.keys():
                self.add(document[field])

    def record(self, request: requests.PreparedRequest, response: requests.Response) -> None:
        self.requests += 1
        # What a request sent is a secret if the stack took it: a password that registered or logged in, a token it
        # accepted. A refused one may be anything (a fuzzer's "00000000", a stuffing list's "12345678") and such
        # strings turn up in logs by chance (a Redis banner's commit, the account id in an ARN).
        if 200 <= response.status_code < 300:
            scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() == "bearer":
                self.add(credentials.strip())
            self.add_fields(request.body)
        if response.headers.get("Content-Type", "").startswith("application/json"):
            self.add_fields(response.content)

    @contextmanager
    def recording(self) -> Iterator[None]:
        send: Callable[..., requests.Response] = HTTPAdapter.send

        def send_and_record(
            adapter: HTTPAdapter, request: requests.PreparedRequest, **options: Any
        ) -> requests.Response:
            response = send(adapter, request, **options)
            self.record(request, response)
            return response

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(HTTPAdapter, "send", send_and_record)
            yield
