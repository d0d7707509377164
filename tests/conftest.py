"""Fixtures shared by every test tier."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

EVENTS = Path(__file__).parent.parent / "events"
# The routes anyone may call (DESIGN.md, security baseline); every other HTTP route has the authorizer, and the
# backends' routes (server scores, moderation) need IAM.
OPEN_ROUTES = {
    "POST /v1/users",
    "POST /v1/login",
    "POST /v1/token/refresh",
    "GET /v1/scores",
    "GET /v1/scores/{user_id}",
    "GET /v1/boards",
    "GET /v1/boards/{board}/scores",
    "GET /v1/boards/{board}/scores/{user_id}",
}


def load_event(name: str) -> dict[str, Any]:
    """A sample event from events/ (the same files `make invoke` and `sam local invoke -e` use)."""
    return json.loads((EVENTS / f"{name}.json").read_text())


@dataclass
class FakeLambdaContext:
    function_name: str = "test-function"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    memory_limit_in_mb: int = 256
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    log_group_name: str = "/aws/lambda/test-function"
    log_stream_name: str = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()
