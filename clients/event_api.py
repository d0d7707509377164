"""A small asyncio client for AWS AppSync Events (an Event API): the realtime WebSocket protocol and HTTP publish.

No well-kept Python client exists (AWS's own are JavaScript and Swift), so this one serves the e2e tests, the
benchmarks and the demo, against the local runtime (``ws://127.0.0.1:3001/event/realtime``) or a deployed stack
(``wss://<Dns.Realtime>/event/realtime``)::

    live = await EventSocket.connect(realtime_url, http_host, authorization="anonymous")
    subscription = await live.subscribe("/boards/global")
    async for event in live.events(subscription):   # each event as the JSON value that was published
        ...
    await live.close()

``http_host`` is the API's HTTP domain (``Dns.Http``; locally ``127.0.0.1:3001``): AppSync checks it in the
authorization of every connection. An ``Authorization`` is a string (an AWS_LAMBDA token, e.g. an access token or
``anonymous``), a mapping of headers sent as they are, or :class:`IamAuth` (SigV4 with AWS credentials, signed per
operation over the body AppSync expects). Refusals raise :class:`EventApiError` subclasses carrying AppSync's
``errors`` (``error_type`` is the first one's ``errorType``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

PROTOCOL = "aws-appsync-event-ws"
REPLY_TIMEOUT_SECONDS = 15.0
# The headers AppSync's documentation signs a WebSocket operation with (besides host, x-amz-date and the token).
_IAM_HEADERS = {
    "accept": "application/json, text/javascript",
    "content-encoding": "amz-1.0",
    "content-type": "application/json; charset=UTF-8",
}


class EventApiError(Exception):
    """AppSync refused something: ``errors`` as it sent them (``[{"errorType", "message"}]``), and the HTTP
    ``status`` when it answered over HTTP."""

    def __init__(self, message: str, errors: Sequence[Mapping[str, Any]] = (), status: int | None = None) -> None:
        super().__init__(f"{message}: {list(errors)}" if errors else message)
        self.errors = [dict(error) for error in errors]
        self.status = status

    @property
    def error_type(self) -> str | None:
        """The first error's ``errorType``."""
        return str(self.errors[0].get("errorType")) if self.errors else None


class ConnectionRefused(EventApiError):
    """The connection was refused: ``connection_error`` (``errors``), or the upgrade itself (``status``)."""


class SubscribeError(EventApiError):
    """``subscribe_error``."""


class UnsubscribeError(EventApiError):
    """``unsubscribe_error``."""


class PublishError(EventApiError):
    """``publish_error``, or an HTTP publish answered with an error status."""


@dataclass(frozen=True)
class IamAuth:
    """AWS_IAM authorization: each operation signed with SigV4 (service ``appsync``) by these credentials."""

    credentials: Credentials
    region: str = "us-east-1"

    def sign(self, url: str, body: bytes, headers: Mapping[str, str]) -> dict[str, str]:
        """``headers`` plus the signature of ``POST url`` with ``body``: X-Amz-Date, the token, Authorization."""
        request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
        SigV4Auth(self.credentials, "appsync", self.region).add_auth(request)
        return dict(request.headers.items())


Authorization = str | Mapping[str, str] | IamAuth


def authorization_headers(authorization: Authorization, http_host: str, body: Mapping[str, Any]) -> dict[str, str]:
    """The authorization object of a WebSocket operation whose body (as AppSync rebuilds it) is ``body``."""
    if isinstance(authorization, IamAuth):
        text = json.dumps(body, separators=(",", ":")).encode()
        return {"host": http_host} | authorization.sign(f"https://{http_host}/event", text, _IAM_HEADERS)
    if isinstance(authorization, str):
        return {"host": http_host, "Authorization": authorization}
    return {"host": http_host, **authorization}


def header_subprotocol(headers: Mapping[str, str]) -> str:
    """``header-<base64url of the JSON headers, without '='>``: how a browser can send them on the upgrade."""
    return "header-" + base64.urlsafe_b64encode(json.dumps(dict(headers)).encode()).decode().rstrip("=")


class EventSocket:
    """One connection to the realtime endpoint: subscribe, unsubscribe, publish, and the events received."""

    def __init__(
        self,
        socket: aiohttp.ClientWebSocketResponse,
        session: aiohttp.ClientSession | None,
        http_host: str,
        authorization: Authorization,
        keep_raw: bool,
    ) -> None:
        self._socket = socket
        self._own_session = session
        self.http_host = http_host
        self._authorization = authorization
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._events: dict[str, asyncio.Queue[Any]] = {}
        self._acknowledged: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        # Read even when nobody waits for it (init=False), so a refusal is not reported as never retrieved.
        self._acknowledged.add_done_callback(lambda done: done.cancelled() or done.exception())
        # Every message received, when ``keep_raw``: what tests of the protocol itself read (``next_raw``).
        self.raw: asyncio.Queue[dict[str, Any]] | None = asyncio.Queue() if keep_raw else None
        # Keep-alives: how many came, when the last one did (time.monotonic()), and how long AppSync says to wait.
        self.keep_alives = 0
        self.last_keep_alive: float | None = None
        self.connection_timeout_ms: int | None = None
        self._opened = time.monotonic()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(
        cls,
        realtime_url: str,
        http_host: str,
        authorization: Authorization,
        *,
        session: aiohttp.ClientSession | None = None,
        keep_raw: bool = False,
        init: bool = True,
        timeout: float = REPLY_TIMEOUT_SECONDS,
    ) -> EventSocket:
        """Connect with the subprotocol handshake, then ``connection_init`` -> ``connection_ack`` (unless not
        ``init``). ConnectionRefused on ``connection_error`` or a refused upgrade. A ``session`` shared by many
        sockets needs a connector without a connection limit (``aiohttp.TCPConnector(limit=0)``)."""
        headers = authorization_headers(authorization, http_host, {})
        http = session or aiohttp.ClientSession()
        own_session = http if session is None else None
        try:
            socket = await http.ws_connect(
                realtime_url,
                protocols=[PROTOCOL, header_subprotocol(headers)],
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=timeout),
                max_msg_size=0,
            )
        except BaseException as failed:
            if own_session is not None:
                await own_session.close()
            if isinstance(failed, aiohttp.WSServerHandshakeError):
                raise ConnectionRefused(f"the upgrade was refused with {failed.status}", status=failed.status) from None
            raise
        client = cls(socket, own_session, http_host, authorization, keep_raw)
        if init:
            try:
                await client.send_raw({"type": "connection_init"})
                await asyncio.wait_for(asyncio.shield(client._acknowledged), timeout)
            except BaseException:
                await client.close()
                raise
        return client

    @property
    def closed(self) -> bool:
        """Whether the socket is closed."""
        return self._socket.closed

    @property
    def close_code(self) -> int | None:
        """The close code, once closed."""
        return self._socket.close_code

    @property
    def stale(self) -> bool:
        """Whether no ``ka`` came for ``connectionTimeoutMs`` (AWS's clients then drop the connection and reconnect)."""
        quiet_since = self.last_keep_alive or self._opened
        return time.monotonic() - quiet_since > (self.connection_timeout_ms or 300_000) / 1000

    async def subscribe(
        self, channel: str, authorization: Authorization | None = None, subscription_id: str | None = None
    ) -> str:
        """Subscribe to ``channel`` (``*`` as its last segment for a subtree); its id. SubscribeError if refused."""
        subscription_id = uuid.uuid4().hex if subscription_id is None else subscription_id
        self._events.setdefault(subscription_id, asyncio.Queue())
        auth = authorization_headers(authorization or self._authorization, self.http_host, {"channel": channel})
        message = {"type": "subscribe", "id": subscription_id, "channel": channel, "authorization": auth}
        reply = await self.request(message)
        if reply.get("type") != "subscribe_success":
            self._events.pop(subscription_id, None)
            raise SubscribeError(f"subscribe to {channel} refused", reply.get("errors") or ())
        return subscription_id

    async def unsubscribe(self, subscription_id: str) -> None:
        """Unsubscribe; UnsubscribeError if the id is unknown."""
        reply = await self.request({"type": "unsubscribe", "id": subscription_id})
        if reply.get("type") != "unsubscribe_success":
            raise UnsubscribeError(f"unsubscribe {subscription_id} refused", reply.get("errors") or ())
        self._events.pop(subscription_id, None)

    async def publish(
        self, channel: str, events: Sequence[Any], authorization: Authorization | None = None
    ) -> dict[str, Any]:
        """Publish ``events`` (JSON values, at most 5) over the socket; the ``publish_success`` message, or
        PublishError."""
        texts = [json.dumps(event) for event in events]
        auth = authorization_headers(
            authorization or self._authorization, self.http_host, {"channel": channel, "events": texts}
        )
        message = {
            "type": "publish",
            "id": uuid.uuid4().hex,
            "channel": channel,
            "events": texts,
            "authorization": auth,
        }
        reply = await self.request(message)
        if reply.get("type") != "publish_success":
            raise PublishError(f"publish to {channel} refused", reply.get("errors") or ())
        return reply

    async def next_event(self, subscription_id: str, timeout: float = REPLY_TIMEOUT_SECONDS) -> Any:
        """The next event of a subscription (TimeoutError if none comes)."""
        queue = self._events.setdefault(subscription_id, asyncio.Queue())
        event = await asyncio.wait_for(queue.get(), timeout)
        if event is _CLOSED:
            queue.put_nowait(_CLOSED)
            raise ConnectionError(f"the connection closed ({self.close_code})")
        return event

    async def events(self, subscription_id: str) -> AsyncIterator[Any]:
        """The events of a subscription as they come, until the connection closes."""
        queue = self._events.setdefault(subscription_id, asyncio.Queue())
        while (event := await queue.get()) is not _CLOSED:
            yield event
        queue.put_nowait(_CLOSED)

    def pending_events(self, subscription_id: str) -> int:
        """How many events of a subscription were received and not read yet."""
        queue = self._events.get(subscription_id)
        return queue.qsize() if queue else 0

    async def request(self, message: Mapping[str, Any], timeout: float = REPLY_TIMEOUT_SECONDS) -> dict[str, Any]:
        """Send a message with an ``id`` and return the reply with that id."""
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[str(message["id"])] = reply
        try:
            await self.send_raw(message)
            return await asyncio.wait_for(reply, timeout)
        finally:
            self._replies.pop(str(message["id"]), None)

    async def send_raw(self, message: Mapping[str, Any] | str) -> None:
        """Send a message as it is (a string is sent verbatim)."""
        await self._socket.send_str(message if isinstance(message, str) else json.dumps(message))

    async def next_raw(self, timeout: float = REPLY_TIMEOUT_SECONDS) -> dict[str, Any]:
        """The next message received (``keep_raw=True`` only), whatever its type."""
        assert self.raw is not None, "connect with keep_raw=True to read raw messages"
        return await asyncio.wait_for(self.raw.get(), timeout)

    async def close(self) -> None:
        """Close the socket (and the session it opened itself)."""
        await self._socket.close()
        await asyncio.gather(self._reader, return_exceptions=True)
        if self._own_session is not None:
            await self._own_session.close()

    async def __aenter__(self) -> EventSocket:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def _read(self) -> None:
        try:
            async for message in self._socket:
                if message.type is aiohttp.WSMsgType.TEXT:
                    self._receive(json.loads(message.data))
        finally:
            refused = ConnectionRefused(f"the connection closed ({self._socket.close_code}) before connection_ack")
            for waiting in [self._acknowledged, *self._replies.values()]:
                if not waiting.done():
                    waiting.set_exception(refused)
            for queue in self._events.values():
                queue.put_nowait(_CLOSED)

    def _receive(self, message: dict[str, Any]) -> None:
        if self.raw is not None:
            self.raw.put_nowait(message)
        kind = message.get("type")
        if kind == "data":
            self._events.setdefault(str(message.get("id")), asyncio.Queue()).put_nowait(_parsed(message.get("event")))
        elif kind == "ka":
            self.keep_alives += 1
            self.last_keep_alive = time.monotonic()
        elif kind == "connection_ack" and not self._acknowledged.done():
            # Clients disagree on where connectionTimeoutMs lives: at the top or in payload.
            timeout_ms = message.get("connectionTimeoutMs") or (message.get("payload") or {}).get("connectionTimeoutMs")
            self.connection_timeout_ms = int(timeout_ms) if timeout_ms else None
            self._acknowledged.set_result(message)
        elif kind == "connection_error" and not self._acknowledged.done():
            self._acknowledged.set_exception(ConnectionRefused("connection refused", message.get("errors") or ()))
        elif str(message.get("id")) in self._replies and not self._replies[str(message.get("id"))].done():
            self._replies[str(message["id"])].set_result(message)


_CLOSED: Any = object()


def _parsed(event: Any) -> Any:
    # A data frame's event is one JSON text; one that is not JSON is handed over as the text itself.
    try:
        return json.loads(event)
    except (TypeError, ValueError):
        return event


def publish_request(
    http_url: str, channel: str, events: Sequence[Any], authorization: Authorization | None = None
) -> tuple[dict[str, str], bytes]:
    """The headers and body of an HTTP publish of ``events`` (JSON values) to ``http_url`` (``.../event``), signed
    when ``authorization`` is :class:`IamAuth`."""
    body = json.dumps({"channel": channel, "events": [json.dumps(event) for event in events]}).encode()
    headers = {"content-type": "application/json"}
    if isinstance(authorization, IamAuth):
        headers = authorization.sign(http_url, body, headers | {"host": urlsplit(http_url).netloc})
    elif isinstance(authorization, str):
        headers["Authorization"] = authorization
    elif authorization is not None:
        headers |= authorization
    return headers, body


async def publish_http(
    http_url: str,
    channel: str,
    events: Sequence[Any],
    authorization: Authorization | None = None,
    *,
    session: aiohttp.ClientSession | None = None,
) -> dict[str, Any]:
    """Publish over HTTP; the ``{"successful", "failed"}`` answer, or PublishError with the status and errors."""
    headers, body = publish_request(http_url, channel, events, authorization)
    async with contextlib.AsyncExitStack() as stack:
        http = session if session is not None else await stack.enter_async_context(aiohttp.ClientSession())
        async with http.post(http_url, data=body, headers=headers) as response:
            answer = await response.json(content_type=None)
        if response.status != 200:
            errors = answer.get("errors") or () if isinstance(answer, dict) else ()
            raise PublishError(f"HTTP publish to {channel} answered {response.status}", errors, response.status)
        return dict(answer)
