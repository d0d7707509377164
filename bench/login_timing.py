"""Does login's timing tell an unknown username from a wrong password? Both paths timed side by side,
interleaved, through the real handler with the stack in-process (moto)."""

import json
import logging
import os
import statistics
import time
from typing import Any
from unittest import mock

from functions.login import login, register
from leaderboard import aws, signing_keys
from local.in_process import in_process_stack
from tests.conftest import FakeLambdaContext, load_event

ROUNDS = 40


def _timed_login(username: str, source_ip: str) -> float:
    event: dict[str, Any] = load_event("login_wrong_password")
    event["body"] = json.dumps({"username": username, "password": "wrong horse battery"})
    event["requestContext"]["http"]["sourceIp"] = source_ip
    started = time.perf_counter()
    response = login.lambda_handler(event, FakeLambdaContext())
    elapsed = (time.perf_counter() - started) * 1000
    assert response["statusCode"] == 401, response
    return elapsed


# The login limits (template parameters) lifted.
UNTHROTTLED = {
    name: str(10**9)
    for name in (
        "LOGIN_FAILURES_PER_ACCOUNT_FROM_ADDRESS",
        "LOGIN_FAILURES_PER_ACCOUNT",
        "LOGIN_FAILURES_PER_ADDRESS",
        "LOGIN_FAILURES_PER_DEVICE",
    )
}


def run() -> dict[str, float]:
    """Median milliseconds of a failed login for an existing and for an unknown username, and their ratio."""
    with (
        in_process_stack(),
        # Throttling would answer 429 after a few failures; here every attempt must reach the password check.
        mock.patch.dict(os.environ, UNTHROTTLED),
    ):
        aws.dynamodb.cache_clear()
        signing_keys.keys = signing_keys.SigningKeys()
        logging.disable(logging.INFO)  # the handlers' per-request log lines would drown the report
        register.lambda_handler(load_event("register_ok"), FakeLambdaContext())
        wrong_password: list[float] = []
        unknown_user: list[float] = []
        for round_ in range(ROUNDS + 2):
            pair = [("alice", wrong_password), (f"nobody{round_}", unknown_user)]
            for username, samples in pair if round_ % 2 else reversed(pair):
                samples.append(_timed_login(username, f"198.51.100.{round_ % 250}"))
        aws.dynamodb.cache_clear()
    wrong_ms, unknown_ms = statistics.median(wrong_password[2:]), statistics.median(unknown_user[2:])
    return {
        "login_wrong_password_ms_median": round(wrong_ms, 2),
        "login_unknown_user_ms_median": round(unknown_ms, 2),
        "login_unknown_over_wrong_ratio": round(unknown_ms / wrong_ms, 3),
    }
