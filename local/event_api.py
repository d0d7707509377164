"""AWS AppSync Events, as an Event API serves it, built from template.yaml's ``AWS::AppSync::Api``
(``local.specs.EventApiSpec``) on one port (``LOCAL_EVENT_API_HOST``:``LOCAL_EVENT_API_PORT``, 127.0.0.1:3001):

- ``ws://127.0.0.1:3001/event/realtime``: the realtime protocol. The client offers the subprotocols
  ``aws-appsync-event-ws`` and ``header-<base64url JSON, no '='>``, the JSON carrying ``host`` (the API's ``Dns.Http``,
  or this emulator's own host:port) and its authorization (or the same as plain upgrade headers). The connection is
  authorized by the API's ConnectionAuthModes once upgraded. ``connection_init`` -> ``connection_ack``; ``ka`` every
  60 s; ``subscribe``, ``unsubscribe``, ``publish``, handled in order per connection; each event a subscription
  receives is one ``data`` frame with the event as one JSON string.
- ``POST http://127.0.0.1:3001/event``: publish ``{"channel", "events"}``; 200 ``{"successful", "failed"}``.
- ``GET http://127.0.0.1:3001/_local/usage``: what AppSync would meter (``Usage``). Local only, not part of AWS.

Auth: a request is AWS_IAM when its ``Authorization`` is a SigV4 signature (checked against the local credentials,
service ``appsync``, over ``POST /event``), else AWS_LAMBDA (the value goes to the API's authorizer, whose answers are
cached for their ``ttlOverride`` or AuthorizerResultTtlInSeconds); a mode the namespace does not allow for the
operation is refused. Then the namespace's DIRECT handler runs, invoked as AppSync invokes it. AppSync's quotas apply:
5 events per publish, 240 KB per event, 1.2 MB per publish, 200 subscriptions per connection, 24 hours per connection.

Where AWS's behaviour is unconfirmed, these are the emulator's choices: refusals carry ``UnauthorizedException``
(authorization, or an onSubscribe/onPublish answer ``{"error"}``), ``BadRequestException`` (ids, channels, events,
unknown namespaces, limits), ``MaxSubscriptionsReachedError`` (the 201st subscription) or ``HandlerExecutionError`` (a
handler failed); HTTP publish answers 400, 401 or 500 for these; an upgrade without ``aws-appsync-event-ws`` or with an
undecodable ``header-`` subprotocol gets HTTP 400; a refused connection gets ``connection_error`` and is closed with
1008, one past its 24 hours with 1001; an unknown message type or bad JSON gets ``{"type": "error"}`` with
``UnsupportedOperation``; authorizer answers (allow and deny) are cached by the authorization value alone, and
IdentityValidationExpression must match all of it; WebSocket IAM signatures are checked over the body as JSON with or
without spaces; a client that does not read (16 MB unsent) is disconnected.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import re
import struct
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from local.plumbing import (
    SIGV4_ALGORITHM,
    AuthorizerCache,
    SignatureError,
    appsync_error,
    failure,
    forwarded_headers,
    invoke_within,
    verify_sigv4,
)
from local.services import ACCESS_KEY_ID, SECRET_ACCESS_KEY
from local.specs import AWS_IAM, AWS_LAMBDA, ChannelHandler, ChannelNamespaceSpec, EventApiSpec
from local.template import ACCOUNT_ID
from local.workers import Invoker

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3001
PROTOCOL = "aws-appsync-event-ws"
# AppSync Events' quotas and timings.
MAX_EVENTS_PER_PUBLISH = 5
MAX_EVENT_BYTES = 240 * 1024
MAX_PUBLISH_BYTES = 1200 * 1024
MAX_SUBSCRIPTIONS = 200
MAX_CONNECTION_SECONDS = 24 * 60 * 60.0
KEEP_ALIVE_SECONDS = 60.0
CONNECTION_TIMEOUT_MS = 300_000
HANDLER_TIMEOUT_MS = 30_000
AUTHORIZER_TIMEOUT_MS = 10_000
# A client this far behind is not reading: it is disconnected rather than buffered for without end.
MAX_UNSENT_BYTES = 16 * 1024 * 1024
# The largest message a client may send: a full publish, with room for JSON escapes.
MAX_MESSAGE_BYTES = 4 * MAX_PUBLISH_BYTES
POLICY_VIOLATION = 1008
GOING_AWAY = 1001

UNAUTHORIZED = "UnauthorizedException"
BAD_REQUEST = "BadRequestException"
HANDLER_FAILED = "HandlerExecutionError"
_HTTP_STATUS = {BAD_REQUEST: 400, UNAUTHORIZED: 401}
_ID = re.compile(r"[a-zA-Z0-9-_+]{1,128}")
_SEGMENT = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,48}[A-Za-z0-9])?")

Say = Callable[[str], None]
Channel = tuple[str, ...]


def event_api_address() -> tuple[str, int]:
    """Where the runtime serves the Event API: ``LOCAL_EVENT_API_HOST``:``LOCAL_EVENT_API_PORT`` (127.0.0.1:3001)."""
    host = os.environ.get("LOCAL_EVENT_API_HOST", DEFAULT_HOST)
    return host, int(os.environ.get("LOCAL_EVENT_API_PORT", DEFAULT_PORT))


def local_urls(api: EventApiSpec, host: str, port: int) -> dict[str, str]:
    """The API's addresses on AWS and their local twins: a function's ``EVENT_API_URL`` (``https://<Dns.Http>/event``)
    is pointed here by the workers (``Endpoints.local_url``)."""
    return {
        f"https://{api.http_domain}": f"http://{host}:{port}",
        f"wss://{api.realtime_domain}": f"ws://{host}:{port}",
    }


# --- The protocol's pure parts ---


class Refusal(Exception):
    """An operation AppSync refuses: ``errorType`` and message, as the client gets them."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type

    @property
    def errors(self) -> list[dict[str, str]]:
        """The ``errors`` list of a refusal frame or HTTP answer."""
        return [{"errorType": self.error_type, "message": str(self)}]


def channel_segments(path: Any, *, wildcard: bool = False) -> Channel:
    """The segments of a channel path (1 to 5, optional leading and trailing ``/``); ``*`` may be the whole last
    segment of a subscription's path (past the namespace), matching that level and deeper."""
    segments = tuple(path.removeprefix("/").removesuffix("/").split("/")) if isinstance(path, str) else ()
    valid = 1 <= len(segments) <= 5 and all(
        _SEGMENT.fullmatch(segment) or (wildcard and segment == "*" and 0 < index == len(segments) - 1)
        for index, segment in enumerate(segments)
    )
    if not valid:
        raise Refusal(BAD_REQUEST, f"Invalid channel {path!r}: 1 to 5 segments of letters, digits and '-'")
    return segments


def operation_id(message: Mapping[str, Any]) -> str:
    """A subscribe or publish message's ``id``, if it is one AppSync takes."""
    value = message.get("id")
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise Refusal(BAD_REQUEST, "id must be 1 to 128 letters, digits, '-', '_' or '+'")
    return value


def connection_auth(protocols: Iterable[str], headers: Mapping[str, str]) -> dict[str, str]:
    """The connection's authorization headers (names in lower case): the ``header-`` subprotocol's JSON object, else
    the upgrade request's own headers (as the Swift client sends them). ValueError if the subprotocol is not one."""
    for protocol in protocols:
        if protocol.startswith("header-"):
            encoded = protocol.removeprefix("header-")
            try:
                document = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
            except (binascii.Error, ValueError):
                raise ValueError("the header- subprotocol is not base64url-encoded JSON") from None
            if not isinstance(document, dict) or not all(isinstance(value, str) for value in document.values()):
                raise ValueError("the header- subprotocol is not a JSON object of strings")
            return {name.lower(): value for name, value in document.items()}
    return {name.lower(): value for name, value in headers.items()}


def message_auth(message: Mapping[str, Any]) -> dict[str, str]:
    """The ``authorization`` object of a subscribe or publish message (names in lower case)."""
    authorization = message.get("authorization")
    if not isinstance(authorization, dict):
        return {}
    return {str(name).lower(): str(value) for name, value in authorization.items()}


def text_frame(payload: bytes) -> bytes:
    """A server's WebSocket text frame (unmasked, uncompressed, RFC 6455 section 5.2)."""
    if len(payload) < 126:
        return bytes((0x81, len(payload))) + payload
    if len(payload) < 65536:
        return struct.pack("!BBH", 0x81, 126, len(payload)) + payload
    return struct.pack("!BBQ", 0x81, 127, len(payload)) + payload


def data_frame_prefix(subscription_id: str) -> bytes:
    """A data frame up to its event, so delivering an event is ``prefix + json.dumps(event) + "}"`` per subscriber."""
    return f'{{"type":"data","id":{json.dumps(subscription_id)},"event":'.encode()


def signed_bodies(body: Mapping[str, Any] | bytes) -> list[bytes]:
    """The texts a request's body may have been signed as: an HTTP body as sent; the body AppSync rebuilds for a
    WebSocket operation as compact JSON (JavaScript's) or spaced (Python's)."""
    if isinstance(body, bytes):
        return [body]
    return [json.dumps(body, separators=(",", ":")).encode(), json.dumps(body).encode()]


def check_events(events: Any, payload_bytes: int) -> None:
    """A Refusal unless ``events`` are 1 to 5 JSON texts within AppSync's limits: 240 KB each, 1.2 MB for the
    publish's payload (``{"channel", "events"}``, ``payload_bytes`` long)."""
    if not isinstance(events, list) or not 1 <= len(events) <= MAX_EVENTS_PER_PUBLISH:
        raise Refusal(BAD_REQUEST, f"events must be a list of 1 to {MAX_EVENTS_PER_PUBLISH} JSON strings")
    for index, event in enumerate(events):
        if not isinstance(event, str):
            raise Refusal(BAD_REQUEST, f"event {index} is not a string (each event is a JSON text)")
        if len(event.encode()) > MAX_EVENT_BYTES:
            raise Refusal(BAD_REQUEST, f"event {index} is over {MAX_EVENT_BYTES} bytes")
        try:
            json.loads(event)
        except ValueError:
            raise Refusal(BAD_REQUEST, f"event {index} is not valid JSON") from None
    if payload_bytes > MAX_PUBLISH_BYTES:
        raise Refusal(BAD_REQUEST, f"the publish is over {MAX_PUBLISH_BYTES} bytes")


@dataclass(frozen=True)
class Origin:
    """Where a request came from: its headers (names in lower case, forwarded ones added) and the caller's address."""

    headers: dict[str, str]
    source_ip: str

    @classmethod
    def of(cls, request: web.Request) -> Origin:
        """The origin of an HTTP request or WebSocket upgrade."""
        return cls(dict(forwarded_headers(request)), request.remote or "127.0.0.1")


@dataclass(frozen=True)
class Caller:
    """Who an authorized request came from: the authorizer's ``handlerContext``, or the IAM key that signed it."""

    auth_type: str
    handler_context: dict[str, Any] | None = None
    access_key: str | None = None

    def identity(self, source_ip: str) -> dict[str, Any]:
        """``identity`` of a handler's event, as AppSync fills it for the auth type."""
        if self.auth_type == AWS_LAMBDA:
            return {"handlerContext": self.handler_context or {}}
        arn = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/local/{self.access_key}"
        return {"accountId": ACCOUNT_ID, "sourceIp": [source_ip], "username": self.access_key, "userArn": arn}


@dataclass(frozen=True)
class AuthorizerAnswer:
    """A Lambda authorizer's answer: ``isAuthorized``, ``handlerContext`` and ``ttlOverride``."""

    allowed: bool
    handler_context: dict[str, Any]
    ttl_override: int | None = None

    @classmethod
    def parse(cls, result: Any) -> AuthorizerAnswer:
        """Read a function's answer; ValueError if it is malformed (AppSync then refuses the request)."""
        if not isinstance(result, dict) or not isinstance(result.get("isAuthorized"), bool):
            raise ValueError("the answer needs isAuthorized, a boolean")
        context, ttl = result.get("handlerContext") or {}, result.get("ttlOverride")
        if not isinstance(context, dict):
            raise ValueError("handlerContext must be an object")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= 3600):
            raise ValueError("ttlOverride must be seconds, 0 to 3600")
        return cls(result["isAuthorized"], context, ttl)


def authorizer_event(
    api: EventApiSpec, token: str, operation: str, channel: Channel | None, headers: Mapping[str, str]
) -> dict[str, Any]:
    """The event AppSync sends its Lambda authorizer (namespace and channel are null on connect)."""
    context = {
        "apiId": api.api_id,
        "accountId": ACCOUNT_ID,
        "requestId": str(uuid.uuid4()),
        "operation": operation,
        "channelNamespaceName": channel[0] if channel else None,
        "channel": "/" + "/".join(channel) if channel else None,
    }
    return {"authorizationToken": token, "requestContext": context, "requestHeaders": dict(headers)}


def handler_event(
    caller: Caller, origin: Origin, channel: Channel, operation: str, events: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The event of an OnPublish / OnSubscribe DIRECT Lambda handler."""
    info = {
        "channel": {"path": "/" + "/".join(channel), "segments": list(channel)},
        "channelNamespace": {"name": channel[0]},
        "operation": operation,
    }
    return {
        "identity": caller.identity(origin.source_ip),
        "result": None,
        "request": {"headers": dict(origin.headers), "domainName": None},
        "info": info,
        "error": None,
        "prev": None,
        "stash": {},
        "outErrors": [],
        "events": events,
    }


@dataclass
class Usage:
    """What AppSync meters: ``operations`` (connects, subscribes, events published and deliveries, $1 per million)
    and connection-minutes ($0.08 per million); Lambda bills the handler and authorizer invocations."""

    connects: int = 0
    subscribes: int = 0
    unsubscribes: int = 0
    publishes: int = 0
    events_published: int = 0
    deliveries: int = 0
    handler_invocations: int = 0
    authorizer_calls: int = 0
    refused_connects: int = 0
    refused_subscribes: int = 0
    refused_publishes: int = 0
    closed_connection_seconds: float = 0.0

    def report(self, open_since: Sequence[float], subscriptions: int, now: float) -> dict[str, Any]:
        """The counts, with the time of the open connections so far (``open_since``: when each opened)."""
        seconds = self.closed_connection_seconds + sum(now - opened for opened in open_since)
        counts = {name: value for name, value in asdict(self).items() if name != "closed_connection_seconds"}
        return counts | {
            "operations": self.connects + self.subscribes + self.events_published + self.deliveries,
            "connection_minutes": round(seconds / 60, 4),
            "open_connections": len(open_since),
            "subscriptions": subscriptions,
        }


# --- Connections ---


@dataclass(eq=False)
class Connection:
    """One client's WebSocket, from its upgrade to its close."""

    socket: web.WebSocketResponse
    transport: asyncio.Transport
    origin: Origin
    opened: float = field(default_factory=time.monotonic)
    caller: Caller | None = None
    subscriptions: dict[str, Subscription] = field(default_factory=dict)

    def send(self, message: Mapping[str, Any]) -> None:
        """Send a protocol message (written at once: a client that does not read never holds the server up)."""
        self.write(text_frame(json.dumps(message, separators=(",", ":")).encode()))

    def write(self, frame: bytes) -> None:
        """Write a frame unless the socket is closing (nothing may follow a close frame)."""
        if not self.socket.closed and not self.transport.is_closing():
            self.transport.write(frame)


@dataclass(eq=False)
class Subscription:
    """A subscription of a connection to a channel (its last segment may be ``*``)."""

    connection: Connection
    id: str
    channel: Channel
    prefix: bytes


class EventApi:
    """An Event API: the realtime WebSocket, HTTP publish, the authorizer and handlers through an :class:`Invoker`."""

    def __init__(
        self,
        api: EventApiSpec,
        invoker: Invoker,
        *,
        say: Say = print,
        keep_alive_seconds: float = KEEP_ALIVE_SECONDS,
        max_connection_seconds: float = MAX_CONNECTION_SECONDS,
        credentials: tuple[str, str] = (ACCESS_KEY_ID, SECRET_ACCESS_KEY),
        cache: AuthorizerCache[str, AuthorizerAnswer] | None = None,
    ) -> None:
        self.api = api
        self.usage = Usage()
        self._invoker = invoker
        self._say = say
        self._keep_alive_seconds = keep_alive_seconds
        self._max_connection_seconds = max_connection_seconds
        self._credentials = credentials
        # Keyed by the authorization value alone (whether AWS adds the operation or channel is unconfirmed).
        self._cache: AuthorizerCache[str, AuthorizerAnswer] = cache or AuthorizerCache()
        self._connections: set[Connection] = set()
        # Subscribers by channel; wildcard ones by the segments before their ``*``.
        self._exact: dict[Channel, set[Subscription]] = {}
        self._wildcard: dict[Channel, set[Subscription]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def app(self) -> web.Application:
        """The aiohttp application: the realtime endpoint, HTTP publish and the local usage report."""
        application = web.Application(client_max_size=MAX_PUBLISH_BYTES + 64 * 1024)
        application.router.add_get("/event/realtime", self._realtime)
        application.router.add_post("/event", self._http_publish)
        application.router.add_get("/_local/usage", self._usage)
        application.on_startup.append(self._start_ticking)
        application.on_shutdown.append(self._close_all)
        return application

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _usage(self, _: web.Request) -> web.Response:
        open_since = [connection.opened for connection in self._connections if connection.caller]
        subscriptions = sum(len(connection.subscriptions) for connection in self._connections)
        return web.json_response(self.usage.report(open_since, subscriptions, time.monotonic()))

    # Connections ------------------------------------------------------------------------------------------------------

    async def _realtime(self, request: web.Request) -> web.StreamResponse:
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        if PROTOCOL not in offered or not web.WebSocketResponse(protocols=[PROTOCOL]).can_prepare(request).ok:
            return appsync_error(400, BAD_REQUEST, f"a WebSocket upgrade offering the subprotocol {PROTOCOL} expected")
        try:
            auth = connection_auth(offered, request.headers)
        except ValueError as exc:
            return appsync_error(400, BAD_REQUEST, str(exc))
        socket = web.WebSocketResponse(protocols=[PROTOCOL], compress=False, max_msg_size=MAX_MESSAGE_BYTES)
        await socket.prepare(request)
        assert request.transport is not None
        connection = Connection(socket, request.transport, Origin.of(request))
        self._connections.add(connection)
        try:
            await self._open(connection, auth, request.host)
            async for message in socket:
                if message.type is WSMsgType.TEXT:
                    await self._on_message(connection, message.data)
                else:
                    connection.send(_unsupported("binary frames are not part of the protocol"))
        finally:
            self._forget(connection)
        return socket

    async def _open(self, connection: Connection, auth: Mapping[str, str], own_host: str) -> None:
        try:
            if auth.get("host") not in (self.api.http_domain, own_host):
                raise Refusal(UNAUTHORIZED, f"host {auth.get('host')!r} is not the API's {self.api.http_domain}")
            modes = self.api.connection_auth
            connection.caller = await self._authorize(auth, modes, "EVENT_CONNECT", None, connection.origin, {})
        except Refusal as refusal:
            self.usage.refused_connects += 1
            self._say(f"EVENT connect refused: {refusal.error_type}: {refusal}")
            connection.send({"type": "connection_error", "errors": refusal.errors})
            await connection.socket.close(code=POLICY_VIOLATION, message=b"Unauthorized")
            return
        connection.opened = time.monotonic()  # connection-minutes count from here
        self.usage.connects += 1

    def _forget(self, connection: Connection) -> None:
        if connection not in self._connections:
            return
        self._connections.discard(connection)
        for subscription in connection.subscriptions.values():
            self._index(subscription).discard(subscription)
        if connection.caller is not None:
            self.usage.closed_connection_seconds += time.monotonic() - connection.opened

    def _index(self, subscription: Subscription) -> set[Subscription]:
        channel = subscription.channel
        if channel[-1] == "*":
            return self._wildcard.setdefault(channel[:-1], set())
        return self._exact.setdefault(channel, set())

    async def _start_ticking(self, _: web.Application) -> None:
        self._track(asyncio.create_task(self._tick()))

    async def _tick(self) -> None:
        """Every keep-alive period: ``ka`` to every connection, and close those past their time."""
        keep_alive = text_frame(b'{"type":"ka"}')
        while True:
            await asyncio.sleep(self._keep_alive_seconds)
            now = time.monotonic()
            for connection in [connection for connection in self._connections if connection.caller]:
                if now - connection.opened >= self._max_connection_seconds:
                    self._track(asyncio.create_task(connection.socket.close(code=GOING_AWAY)))
                    self._forget(connection)
                else:
                    connection.write(keep_alive)

    async def _close_all(self, _: web.Application) -> None:
        """Close every connection (1001 Going away) and stop what runs in the background."""
        for task in list(self._tasks):
            task.cancel()
        connections = list(self._connections)
        for connection in connections:
            self._forget(connection)
        closing = (connection.socket.close(code=GOING_AWAY) for connection in connections)
        await asyncio.gather(*closing, return_exceptions=True)

    # Messages ---------------------------------------------------------------------------------------------------------

    async def _on_message(self, connection: Connection, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "connection_init":
            payload = {"connectionTimeoutMs": CONNECTION_TIMEOUT_MS}
            connection.send({"type": "connection_ack", **payload, "payload": payload})
        elif kind == "subscribe":
            await self._subscribe(connection, message)
        elif kind == "unsubscribe":
            self._unsubscribe(connection, message)
        elif kind == "publish":
            await self._ws_publish(connection, message)
        else:
            reply = _unsupported(f"unknown message type {kind!r}" if message else "the message is not JSON")
            if isinstance(message, dict) and "id" in message:
                reply["id"] = message["id"]
            connection.send(reply)

    async def _subscribe(self, connection: Connection, message: dict[str, Any]) -> None:
        try:
            subscription_id = operation_id(message)
            if subscription_id in connection.subscriptions:
                raise Refusal(BAD_REQUEST, f"a subscription with id {subscription_id} exists on this connection")
            if len(connection.subscriptions) >= MAX_SUBSCRIPTIONS:
                raise Refusal("MaxSubscriptionsReachedError", f"at most {MAX_SUBSCRIPTIONS} subscriptions a connection")
            channel = channel_segments(message.get("channel"), wildcard=True)
            namespace = self._namespace(channel)
            body = {"channel": message.get("channel")}
            auth, origin = message_auth(message), connection.origin
            caller = await self._authorize(auth, namespace.subscribe_auth, "EVENT_SUBSCRIBE", channel, origin, body)
            if namespace.on_subscribe is not None:
                event = handler_event(caller, origin, channel, "SUBSCRIBE")
                result = await self._run_handler("onSubscribe", namespace.on_subscribe, event)
                if isinstance(result, dict) and isinstance(result.get("error"), str):
                    raise Refusal(UNAUTHORIZED, result["error"])
                if result is not None and not isinstance(result, dict):
                    raise Refusal(HANDLER_FAILED, "the onSubscribe handler answered neither null nor an object")
        except Refusal as refusal:
            self.usage.refused_subscribes += 1
            self._say(f"EVENT subscribe {message.get('channel')} refused: {refusal.error_type}: {refusal}")
            connection.send({"type": "subscribe_error", "id": message.get("id"), "errors": refusal.errors})
            return
        subscription = Subscription(connection, subscription_id, channel, data_frame_prefix(subscription_id))
        connection.subscriptions[subscription_id] = subscription
        self._index(subscription).add(subscription)
        self.usage.subscribes += 1
        connection.send({"type": "subscribe_success", "id": subscription_id})

    def _unsubscribe(self, connection: Connection, message: dict[str, Any]) -> None:
        subscription = connection.subscriptions.pop(str(message.get("id")), None)
        if subscription is None:
            error = {"errorType": "UnknownOperationError", "message": f"Unknown operation id {message.get('id')}"}
            connection.send({"type": "unsubscribe_error", "id": message.get("id"), "errors": [error]})
            return
        self._index(subscription).discard(subscription)
        self.usage.unsubscribes += 1
        connection.send({"type": "unsubscribe_success", "id": subscription.id})

    async def _run_handler(self, kind: str, handler: ChannelHandler, event: dict[str, Any]) -> Any:
        """Invoke a DIRECT handler as AppSync does: its answer (None from an EVENT one: not awaited), or a Refusal if it
        failed: ``UnauthorizedException`` when it raised one (Powertools re-raises it so the invocation fails), else
        ``HandlerExecutionError``."""
        self.usage.handler_invocations += 1
        if not handler.waits:
            self._track(asyncio.create_task(self._invoker.invoke(handler.function_id, event)))
            return None
        outcome = await invoke_within(self._invoker, handler.function_id, event, HANDLER_TIMEOUT_MS)
        error = outcome.error if outcome else None
        if outcome is not None and error is None:
            return outcome.result
        self._say(f"EVENT {kind} {handler.function_id} failed: {failure(outcome)}")
        if error is not None and error.error_type == UNAUTHORIZED:
            raise Refusal(UNAUTHORIZED, error.message or "Unauthorized")
        raise Refusal(HANDLER_FAILED, f"the {kind} handler failed")

    # Publishing -------------------------------------------------------------------------------------------------------

    async def _ws_publish(self, connection: Connection, message: dict[str, Any]) -> None:
        try:
            publish_id = operation_id(message)
            channel, events = message.get("channel"), message.get("events")
            body = {"channel": channel, "events": events}
            result = await self._publish(channel, events, message_auth(message), connection.origin, body, "WebSocket")
        except Refusal as refusal:
            connection.send({"type": "publish_error", "id": message.get("id"), "errors": refusal.errors})
            return
        connection.send({"type": "publish_success", "id": publish_id, **result})

    async def _http_publish(self, request: web.Request) -> web.Response:
        try:
            body = await request.read()
            document = json.loads(body)
        except (web.HTTPRequestEntityTooLarge, ValueError):
            document = None
        if not isinstance(document, dict):
            return appsync_error(400, BAD_REQUEST, 'the body must be {"channel": ..., "events": [...]}, 1.2 MB at most')
        origin = Origin.of(request)
        channel, events = document.get("channel"), document.get("events")
        try:
            result = await self._publish(channel, events, origin.headers, origin, body, "HTTP")
        except Refusal as refusal:
            return web.json_response({"errors": refusal.errors}, status=_HTTP_STATUS.get(refusal.error_type, 500))
        return web.json_response(result)

    async def _publish(
        self, path: Any, events: Any, auth: Mapping[str, str], origin: Origin, body: Mapping[str, Any] | bytes, via: str
    ) -> dict[str, list[dict[str, Any]]]:
        """Authorize, check and broadcast a publish; its ``successful`` and ``failed`` lists, or a Refusal."""
        try:
            channel = channel_segments(path)
            namespace = self._namespace(channel)
            caller = await self._authorize(auth, namespace.publish_auth, "EVENT_PUBLISH", channel, origin, body)
            check_events(events, len(signed_bodies(body)[0]))
            identifiers = [str(uuid.uuid4()) for _ in events]
            broadcast = list(enumerate(events))
            if namespace.on_publish is not None:
                items = [
                    {"id": key, "payload": json.loads(text)} for key, text in zip(identifiers, events, strict=True)
                ]
                event = handler_event(caller, origin, channel, "PUBLISH", items)
                result = await self._run_handler("onPublish", namespace.on_publish, event)
                if namespace.on_publish.waits:
                    broadcast = _handled_events(result, identifiers)
        except Refusal as refusal:
            self.usage.refused_publishes += 1
            self._say(f"EVENT publish {path} ({via}) refused: {refusal.error_type}: {refusal}")
            raise
        started = time.perf_counter()
        deliveries = sum(self._broadcast(channel, event) for _, event in broadcast)
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.usage.publishes += 1
        self.usage.events_published += len(events)
        self.usage.deliveries += deliveries
        count = f"{len(events)} event{'s' if len(events) > 1 else ''}"
        self._say(f"EVENT publish {path} ({via}): {count} -> {deliveries} deliveries, {elapsed_ms:.1f} ms")
        sent = {index for index, _ in broadcast}
        outcomes: dict[str, list[dict[str, Any]]] = {"successful": [], "failed": []}
        for index, identifier in enumerate(identifiers):
            outcomes["successful" if index in sent else "failed"].append({"identifier": identifier, "index": index})
        return outcomes

    def _broadcast(self, channel: Channel, event: str) -> int:
        """Send one event to every subscriber of ``channel``: one data frame each, written without waiting."""
        subscribers = list(self._exact.get(channel, ()))
        for depth in range(1, len(channel)):
            subscribers.extend(self._wildcard.get(channel[:depth], ()))
        ending = json.dumps(event).encode() + b"}"
        for subscription in subscribers:
            connection = subscription.connection
            if connection.transport.get_write_buffer_size() > MAX_UNSENT_BYTES:
                self._say(f"EVENT dropping a connection that does not read ({connection.origin.source_ip})")
                self._forget(connection)
                connection.transport.abort()
                continue
            connection.write(text_frame(subscription.prefix + ending))
        return len(subscribers)

    # Authorization ----------------------------------------------------------------------------------------------------

    def _namespace(self, channel: Channel) -> ChannelNamespaceSpec:
        namespace = self.api.namespaces.get(channel[0])
        if namespace is None:
            raise Refusal(BAD_REQUEST, f"no channel namespace {channel[0]!r} in this API")
        return namespace

    async def _authorize(
        self,
        auth: Mapping[str, str],
        modes: Sequence[str],
        operation: str,
        channel: Channel | None,
        origin: Origin,
        body: Mapping[str, Any] | bytes,
    ) -> Caller:
        """Who makes the request, if one of ``modes`` lets it in; else a Refusal (UnauthorizedException)."""
        value = auth.get("authorization")
        if not value:
            raise Refusal(UNAUTHORIZED, "no authorization")
        auth_type = AWS_IAM if value.startswith(SIGV4_ALGORITHM) else AWS_LAMBDA
        if auth_type not in modes:
            raise Refusal(UNAUTHORIZED, f"{auth_type} is not an auth mode of this operation ({', '.join(modes)})")
        if auth_type == AWS_IAM:
            try:
                key = verify_sigv4(
                    "POST", "/event", auth, signed_bodies(body), service="appsync", credentials=self._credentials
                )
            except SignatureError as exc:
                raise Refusal(UNAUTHORIZED, str(exc)) from None
            return Caller(AWS_IAM, access_key=key)
        answer = await self._ask_authorizer(value, operation, channel, origin.headers)
        if answer is None or not answer.allowed:
            raise Refusal(UNAUTHORIZED, "the authorizer refused the request")
        return Caller(AWS_LAMBDA, handler_context=answer.handler_context)

    async def _ask_authorizer(
        self, token: str, operation: str, channel: Channel | None, headers: Mapping[str, str]
    ) -> AuthorizerAnswer | None:
        """The authorizer's answer (cached, or asked now); None if it failed or answered something malformed."""
        authorizer = self.api.authorizer
        assert authorizer is not None  # the template reader checked that AWS_LAMBDA has a provider
        if authorizer.identity_validation and not re.fullmatch(authorizer.identity_validation, token):
            return None
        cached = self._cache.get(token)
        if cached is not None:
            return cached
        self.usage.authorizer_calls += 1
        event = authorizer_event(self.api, token, operation, channel, headers)
        outcome = await invoke_within(self._invoker, authorizer.function_id, event, AUTHORIZER_TIMEOUT_MS)
        try:
            answer = AuthorizerAnswer.parse(outcome.result if outcome else None)
        except ValueError as exc:
            self._say(f"EVENT authorizer {authorizer.function_id} failed: {failure(outcome) or exc}")
            return None
        self._cache.put(token, answer, authorizer.ttl_seconds if answer.ttl_override is None else answer.ttl_override)
        return answer


def _handled_events(result: Any, identifiers: list[str]) -> list[tuple[int, str]]:
    # An onPublish answer: {"events": [{"id", "payload"}]} (those with an "error" are not broadcast), or {"error"}.
    if isinstance(result, dict) and isinstance(result.get("error"), str):
        raise Refusal(UNAUTHORIZED, f"the onPublish handler refused the publish: {result['error']}")
    returned = result.get("events") if isinstance(result, dict) else None
    indexes = {identifier: index for index, identifier in enumerate(identifiers)}
    if not isinstance(returned, list) or not all(
        isinstance(item, dict) and item.get("id") in indexes for item in returned
    ):
        raise Refusal(HANDLER_FAILED, "the onPublish handler answered without the events' ids")
    return [(indexes[item["id"]], json.dumps(item.get("payload"))) for item in returned if "error" not in item]


def _unsupported(message: str) -> dict[str, Any]:
    return {"type": "error", "errors": [{"errorType": "UnsupportedOperation", "message": message}]}
