"""Publishing to the Event API (AWS AppSync Events) over HTTP, signed with the function's role (SigV4, `appsync`).

boto3 has no client for an Event API's data plane, so a publish is a plain `POST https://<http domain>/event` of
`{"channel", "events"}`, signed by botocore's SigV4 signer and sent on a kept-alive urllib3 pool (both ship with the
Lambda runtime's boto3). The endpoint comes from the environment (EVENT_API_URL), so the same code publishes to the
local runtime's emulator.
"""

import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Any

import urllib3
from aws_lambda_powertools import Logger
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from botocore.session import get_session

from leaderboard.config import settings

logger = Logger(child=True)

# Publishes in flight at once in one function instance (the Event API answers in tens of ms), each on a kept-alive
# connection of the pool.
POOL_SIZE = 8


class PublishFailed(Exception):
    """The Event API did not take a publish (after the retries): its status or the events it reported failed."""


@cache
def _http() -> urllib3.PoolManager:
    # Throttling and 5xx are retried with backoff; a publish is small, so short timeouts keep a stuck one from
    # holding the board's next publish back.
    retries = urllib3.Retry(
        total=2, backoff_factor=0.05, status_forcelist=(429, 500, 502, 503, 504), allowed_methods={"POST"}
    )
    return urllib3.PoolManager(maxsize=POOL_SIZE, retries=retries, timeout=urllib3.Timeout(connect=1, read=2))


@cache
def _session_credentials() -> Any:
    return get_session().get_credentials()


def _credentials() -> ReadOnlyCredentials:
    credentials = _session_credentials()
    if credentials is None:
        raise PublishFailed("no AWS credentials to sign the publish with")
    frozen: ReadOnlyCredentials = credentials.get_frozen_credentials()
    return frozen


def publish(request: dict[str, Any]) -> None:
    """Publish `{"channel": ..., "events": [<JSON text>, ...]}` (at most 5 events) to the Event API."""
    url = settings.event_api_url
    body = json.dumps(request, separators=(",", ":")).encode()
    signed = AWSRequest(method="POST", url=url, data=body, headers={"content-type": "application/json"})
    SigV4Auth(_credentials(), "appsync", settings.aws_region).add_auth(signed)
    try:
        response = _http().request("POST", url, body=body, headers=dict(signed.headers.items()))
    except urllib3.exceptions.HTTPError as exc:
        raise PublishFailed(type(exc).__name__) from exc
    if response.status != 200:
        raise PublishFailed(f"HTTP {response.status}")
    failed = json.loads(response.data or b"{}").get("failed") or []
    if failed:
        raise PublishFailed(f"{len(failed)} events refused")


# --- sending LiveEventsQueue's messages ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    sent: int
    failed: int


@cache
def _sending_pool() -> ThreadPoolExecutor:
    # Kept for warm invocations, like the clients and their connection pools.
    return ThreadPoolExecutor(max_workers=POOL_SIZE, thread_name_prefix="publish")


def send(message_bodies: Iterable[str]) -> Sent:
    """Send the publishes of LiveEventsQueue messages (`{"publishes": [...]}`, see live.py), in parallel. One that
    still fails after the client's retries is dropped: the next change publishes a newer board (and a watcher's newer
    standing)."""
    requests = [request for body in message_bodies for request in json.loads(body)["publishes"]]
    outcomes = list(_sending_pool().map(_send_one, requests))
    return Sent(sent=outcomes.count(True), failed=outcomes.count(False))


def _send_one(request: dict[str, Any]) -> bool:
    try:
        publish(request)
    except PublishFailed as exc:
        namespace = request["channel"].split("/")[1]  # not the channel: a player's names their id
        logger.warning("publish failed", extra={"namespace": namespace, "error": str(exc)})
        return False
    return True
