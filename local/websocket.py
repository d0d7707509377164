"""The WebSocket API, as API Gateway serves it, and its ``@connections`` API on the same port (``ws://127.0.0.1:3001``).

- Handshake (any path; ``/`` and ``/{stage}`` alike): the ``$connect`` authorizer first (no identity source: 401
  without calling it; ``Unauthorized`` raised: 401; Deny: 403; any other failure: 500; nothing is cached, as API
  Gateway caches nothing for WebSocket authorizers), then the ``$connect`` integration (an error: 502, a statusCode
  outside 2xx: that status); only then is the upgrade completed.
- Messages: routed by the API's RouteSelectionExpression (``$request.body.action``), else ``$default``, else API
  Gateway's ``{"message": "Forbidden", ...}``; handled one after the other per connection. A route with a route
  response sends the integration's ``body`` back to the sender; a failed integration sends ``Internal server error``.
- ``$disconnect`` runs after the socket closed, whoever closed it: the client, a DELETE on @connections, the idle
  timeout, the connection's time limit, or the runtime stopping.
- ``@connections``: ``POST|GET|DELETE [/{stage}]/@connections/{connectionId}``, as boto3's ``apigatewaymanagementapi``
  client sends them (with ``endpoint_url``). Signatures are not checked, but a request without one is refused as API
  Gateway refuses it.

API Gateway's quotas apply: messages up to 128 KB (larger: closed with 1009), no binary frames from clients (closed
with 1003), 10 minutes without a message either way (closed with 1001; pings do not count), 2 hours per connection
(closed with 1001). The last two are ``IDLE_TIMEOUT_SECONDS`` and ``MAX_CONNECTION_SECONDS``, or the gateway's
constructor arguments. Route throttling (the stage's ThrottlingRateLimit) is not emulated.

Where API Gateway's behaviour is not documented, these are the runtime's own choices: a request that is not a
WebSocket handshake gets 426, a handshake while the runtime stops gets 503, and disconnectReason is worded by the
runtime for every code but 1005 (API Gateway's documented "Client-side close frame status not set").
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from local.gateway import AuthorizerFailure, gateway_error, parse_authorizer_result
from local.template import (
    WebSocketApiSpec,
    WebSocketAuthorizer,
    WebSocketRoute,
    execute_api_endpoint,
    websocket_endpoint,
)
from local.workers import Invocation, Invoker

DEFAULT_WS_HOST = "127.0.0.1"
DEFAULT_WS_PORT = 3001
# API Gateway's quotas for WebSocket APIs: the message payload (what PostToConnection takes too), the idle timeout
# (no message either way) and the connection's lifetime.
MAX_MESSAGE_BYTES = 128 * 1024
IDLE_TIMEOUT_SECONDS = 10 * 60.0
MAX_CONNECTION_SECONDS = 2 * 60 * 60.0
# How long stopping may take to run $disconnect for every open connection.
CLOSE_ALL_TIMEOUT_SECONDS = 30.0

# (disconnectStatusCode, disconnectReason) of the $disconnect event, by cause; API Gateway words the reason itself.
# The server-side ones are also the close frame the client gets.
DELETED = (1000, "Connection Closed Normally")
GOING_AWAY = (1001, "Going away")
BINARY_REFUSED = (1003, "Binary frames are not supported")
NO_STATUS = (1005, "Client-side close frame status not set")
ABNORMAL = (1006, "Going away")
TOO_BIG = (1009, "Message too big")
_REASONS = {code: reason for code, reason in (DELETED, GOING_AWAY, BINARY_REFUSED, NO_STATUS, TOO_BIG)}

Say = Callable[[str], None]
Status = tuple[int, str]


def websocket_address() -> tuple[str, int]:
    """Where the runtime serves the WebSocket API: ``LOCAL_WS_HOST``:``LOCAL_WS_PORT`` (127.0.0.1:3001)."""
    return os.environ.get("LOCAL_WS_HOST", DEFAULT_WS_HOST), int(os.environ.get("LOCAL_WS_PORT", DEFAULT_WS_PORT))


def new_id() -> str:
    """An id shaped like API Gateway's connection, request and message ids (e.g. ``L0SM9cOFvHcCIhw=``)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(11)).decode()


def local_urls(api: WebSocketApiSpec, host: str, port: int) -> dict[str, str]:
    """The API's addresses on AWS (``https://`` for @connections, ``wss://`` for clients) and their local twins.

    A function's environment value that names the deployed API (``CONNECTIONS_ENDPOINT`` built with
    ``!Sub https://${WebSocketApi}.execute-api...``) is pointed here by the workers (``Endpoints.local_url``).
    """
    return {
        execute_api_endpoint(api.api_id): f"http://{host}:{port}",
        websocket_endpoint(api.api_id): f"ws://{host}:{port}",
    }


# --- Connections and the events about them ---


@dataclass(eq=False)
class Connection:
    """One client, from its handshake to its ``$disconnect``."""

    connection_id: str
    headers: list[tuple[str, str]]
    query: list[tuple[str, str]]
    source_ip: str
    user_agent: str
    domain_name: str
    connected_at: float = field(default_factory=time.time)
    # Monotonic times of the connection's start and of its last message either way (for the timeouts).
    opened: float = field(default_factory=time.monotonic)
    active: float = field(default_factory=time.monotonic)
    authorizer: dict[str, Any] | None = None
    socket: web.WebSocketResponse | None = None
    # Why the server closed it (None while open, or when the client closed it).
    closing: Status | None = None
    # The message being handled: the next one waits for it, so a connection's messages run in order.
    previous: asyncio.Task[None] | None = None

    @classmethod
    def from_handshake(cls, request: web.Request) -> Connection:
        """A new connection for an upgrade request: the headers as the client sent them, plus API Gateway's own."""
        source_ip = request.remote or "127.0.0.1"
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.raw_headers]
        forwarded = [value for name, value in headers if name.lower() == "x-forwarded-for"]
        headers = [(name, value) for name, value in headers if not name.lower().startswith("x-forwarded-")]
        headers += [
            ("X-Forwarded-For", f"{forwarded[-1]}, {source_ip}" if forwarded else source_ip),
            ("X-Forwarded-Port", str(request.url.port or 80)),
            ("X-Forwarded-Proto", request.scheme),
        ]
        return cls(
            connection_id=new_id(),
            headers=headers,
            query=parse_qsl(request.query_string, keep_blank_values=True),
            source_ip=source_ip,
            user_agent=request.headers.get("User-Agent", ""),
            domain_name=request.host,
        )

    def header(self, name: str) -> str | None:
        """The last value of a handshake header (case-insensitive), None if absent."""
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        return values[-1] if values else None

    def query_parameter(self, name: str) -> str | None:
        """The last value of a query string parameter, None if absent."""
        values = [value for key, value in self.query if key == name]
        return values[-1] if values else None

    def touch(self) -> None:
        """A message went either way: the idle timeout starts again."""
        self.active = time.monotonic()

    @property
    def last_active_at(self) -> float:
        """Epoch seconds of the last message either way."""
        return self.connected_at + (self.active - self.opened)


def _multi_value(pairs: Iterable[tuple[str, str]]) -> tuple[dict[str, str], dict[str, list[str]]]:
    single: dict[str, str] = {}
    multiple: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value  # the last one, as in API Gateway's single-value maps
        multiple.setdefault(name, []).append(value)
    return single, multiple


def _handshake_fields(connection: Connection) -> dict[str, Any]:
    headers, multi_value_headers = _multi_value(connection.headers)
    fields: dict[str, Any] = {"headers": headers, "multiValueHeaders": multi_value_headers}
    if connection.query:
        query, multi_value_query = _multi_value(connection.query)
        fields |= {"queryStringParameters": query, "multiValueQueryStringParameters": multi_value_query}
    return fields


def request_context(
    api: WebSocketApiSpec, connection: Connection, route_key: str, event_type: str, request_id: str, now: float
) -> dict[str, Any]:
    """``requestContext`` of every WebSocket event; ``authorizer`` once the ``$connect`` authorizer let it in."""
    context: dict[str, Any] = {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id,
        "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "messageDirection": "IN",
        "stage": api.stage,
        "connectedAt": int(connection.connected_at * 1000),
        "requestTimeEpoch": int(now * 1000),
        "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent},
        "requestId": request_id,
        "domainName": connection.domain_name,
        "connectionId": connection.connection_id,
        "apiId": api.api_id,
    }
    if connection.authorizer is not None:
        context["authorizer"] = dict(connection.authorizer)
    return context


def authorizer_event(api: WebSocketApiSpec, connection: Connection, request_id: str, now: float) -> dict[str, Any]:
    """The REQUEST event API Gateway sends a WebSocket API's Lambda authorizer on ``$connect``."""
    return {
        "type": "REQUEST",
        "methodArn": api.route_arn("$connect"),
        **_handshake_fields(connection),
        "stageVariables": dict(api.stage_variables),
        "requestContext": request_context(api, connection, "$connect", "CONNECT", request_id, now),
    }


def _with_stage_variables(api: WebSocketApiSpec, event: dict[str, Any]) -> dict[str, Any]:
    if api.stage_variables:
        event["stageVariables"] = dict(api.stage_variables)
    return event


def connect_event(api: WebSocketApiSpec, connection: Connection, request_id: str, now: float) -> dict[str, Any]:
    """The event of the ``$connect`` route's integration: the handshake's headers and query string."""
    event = _handshake_fields(connection)
    event["requestContext"] = request_context(api, connection, "$connect", "CONNECT", request_id, now)
    event["isBase64Encoded"] = False
    return _with_stage_variables(api, event)


def message_event(
    api: WebSocketApiSpec,
    connection: Connection,
    route_key: str,
    body: str,
    request_id: str,
    message_id: str,
    now: float,
) -> dict[str, Any]:
    """The event of a message's route: the message as ``body`` (text), no headers."""
    context = request_context(api, connection, route_key, "MESSAGE", request_id, now)
    context["messageId"] = message_id
    return _with_stage_variables(api, {"requestContext": context, "body": body, "isBase64Encoded": False})


def disconnect_event(
    api: WebSocketApiSpec, connection: Connection, status: Status, request_id: str, now: float
) -> dict[str, Any]:
    """The event of the ``$disconnect`` route: why the connection closed, and the headers API Gateway sends then."""
    headers = {"Host": connection.domain_name, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
    context = request_context(api, connection, "$disconnect", "DISCONNECT", request_id, now)
    context |= {"disconnectStatusCode": status[0], "disconnectReason": status[1]}
    event = {
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "requestContext": context,
        "isBase64Encoded": False,
    }
    return _with_stage_variables(api, event)


def select_route(api: WebSocketApiSpec, body: str) -> str | None:
    """The route key a message selects: its RouteSelectionExpression's value if a route has it, else ``$default``.

    None means no route: API Gateway answers ``Forbidden``.
    """
    try:
        value: Any = json.loads(body)
    except ValueError:
        value = None
    for name in api.route_selection_path:
        value = value.get(name) if isinstance(value, dict) else None
    if isinstance(value, str) and value in api.routes and value not in ("$connect", "$disconnect"):
        return value
    return "$default" if "$default" in api.routes else None


def gateway_message(message: str, connection_id: str, request_id: str) -> str:
    """API Gateway's own message to a client (``Forbidden``, ``Internal server error``...), spacing included."""
    return f'{{"message": "{message}", "connectionId":"{connection_id}", "requestId":"{request_id}"}}'


def route_response(result: Any) -> str | bytes | None:
    """What a route response sends the client for a Lambda proxy result: its ``body`` (None: nothing)."""
    if result is None:
        return None
    if not isinstance(result, dict):
        return result if isinstance(result, str) else json.dumps(result)
    body = result.get("body")
    if body is None:
        return None
    if not isinstance(body, str):
        return json.dumps(body)
    return base64.b64decode(body) if result.get("isBase64Encoded") is True else body


# --- The authorizer ---


def identity_values(authorizer: WebSocketAuthorizer, connection: Connection, api: WebSocketApiSpec) -> list[str] | None:
    """The values of the authorizer's identity sources; None if one is missing or empty (API Gateway's 401)."""
    values: list[str] = []
    for expression in authorizer.identity_sources:
        source, _, name = expression.rpartition(".")
        if source == "route.request.header":
            value = connection.header(name)
        elif source == "route.request.querystring":
            value = connection.query_parameter(name)
        else:  # stageVariables (the template reader accepts nothing else)
            value = api.stage_variables.get(name)
        if not value:
            return None
        values.append(value)
    return values


def authorizer_context(result: Any, method_arn: str) -> dict[str, Any] | int:
    """The ``requestContext.authorizer`` an IAM policy answer gives, or the HTTP status refusing the handshake.

    Deny (or no Allow for ``$connect``): 403. A malformed answer (no principalId or policy, a context value that is
    an object or a list): 500, as API Gateway answers.
    """
    try:
        answer = parse_authorizer_result(result, simple_responses=False)
    except AuthorizerFailure:
        return 500
    if not all(isinstance(value, str | int | float | bool) for value in answer.context.values()):
        return 500
    if not answer.allows(method_arn):
        return 403
    return {"principalId": result["principalId"], **answer.context}


# --- The gateway ---


def _json_error(status: int, error_type: str, body: str) -> web.Response:
    # How API Gateway's @connections API fails: botocore reads the error's name from x-amzn-ErrorType.
    return web.Response(
        status=status, text=body, content_type="application/json", headers={"x-amzn-ErrorType": error_type}
    )


def _gone() -> web.Response:
    return _json_error(410, "GoneException", '{"message":null}')


def _too_large() -> web.Response:
    return _json_error(413, "PayloadTooLargeException", '{"message":"Request entity too large"}')


def _iso_time(epoch_seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_seconds)) + f".{int(epoch_seconds * 1000) % 1000:03d}Z"


class WebSocketGateway:
    """A WebSocket API and its @connections API: routes to functions through an :class:`Invoker`."""

    def __init__(
        self,
        api: WebSocketApiSpec,
        invoker: Invoker,
        *,
        say: Say = print,
        idle_timeout_seconds: float = IDLE_TIMEOUT_SECONDS,
        max_connection_seconds: float = MAX_CONNECTION_SECONDS,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.api = api
        self._invoker = invoker
        self._say = say
        self._idle_timeout = idle_timeout_seconds
        self._max_lifetime = max_connection_seconds
        self._max_message_bytes = max_message_bytes
        self._stage_prefix = f"/{api.stage}"
        self._connections: dict[str, Connection] = {}
        self._sessions: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def connection_ids(self) -> list[str]:
        """The ids of the open connections."""
        return list(self._connections)

    def app(self) -> web.Application:
        """The aiohttp application: @connections requests and WebSocket handshakes, on every path."""
        application = web.Application(client_max_size=self._max_message_bytes + 1)
        application.router.add_route("*", "/{path:.*}", self.handle)
        application.on_startup.append(self._start_sweeper)
        application.on_shutdown.append(self._on_shutdown)
        return application

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one request: @connections, or a WebSocket handshake."""
        prefix, marker, connection_id = request.path.partition("/@connections/")
        if marker:
            if prefix and prefix != self._stage_prefix:
                return gateway_error(403, "Forbidden")
            return await self._manage(request, connection_id)
        return await self._session(request)

    # @connections -----------------------------------------------------------------------------------------------------

    async def _manage(self, request: web.Request, connection_id: str) -> web.StreamResponse:
        # Lean on purpose: a broadcast posts to every connection, one request each.
        if "Authorization" not in request.headers:
            return _json_error(403, "MissingAuthenticationTokenException", '{"message":"Missing Authentication Token"}')
        method = request.method
        if method == "POST":
            length = request.content_length
            if length is not None and length > self._max_message_bytes:
                return _too_large()
            try:
                data = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return _too_large()
            if len(data) > self._max_message_bytes:
                return _too_large()
            connection = self._connections.get(connection_id)
            if connection is None or connection.socket is None or connection.socket.closed:
                return _gone()
            try:
                await connection.socket.send_frame(data, WSMsgType.TEXT if _is_text(data) else WSMsgType.BINARY)
            except ConnectionError:
                return _gone()
            connection.touch()
            return web.Response()
        connection = self._connections.get(connection_id)
        if method == "GET":
            if connection is None:
                return _gone()
            body = {
                "connectedAt": _iso_time(connection.connected_at),
                "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent},
                "lastActiveAt": _iso_time(connection.last_active_at),
            }
            return web.json_response(body)
        if method == "DELETE":
            if connection is None:
                return _gone()
            await self._close(connection, DELETED)
            return web.Response(status=204)
        return gateway_error(404, "Not Found")

    # Connections ------------------------------------------------------------------------------------------------------

    async def _session(self, request: web.Request) -> web.StreamResponse:
        if not web.WebSocketResponse().can_prepare(request).ok:
            return gateway_error(426, "Upgrade Required")
        if self._stopping:
            return gateway_error(503, "Service Unavailable")
        task = asyncio.current_task()
        if task is not None:
            self._track(task)
        return await self._serve_connection(request)

    async def _serve_connection(self, request: web.Request) -> web.StreamResponse:
        connection = Connection.from_handshake(request)
        started = time.perf_counter()
        try:
            opened = await self._open(connection)
        except Exception as exc:  # a fault of the runtime itself: answer as API Gateway would, say what broke
            self._say(f"WS $connect: local runtime error: {type(exc).__name__}: {exc}")
            opened = gateway_error(500, "Internal Server Error")
        connect_route = self.api.routes.get("$connect")
        function_id = (connect_route.function_id if connect_route else None) or ""
        if isinstance(opened, web.StreamResponse):
            elapsed_ms = (time.perf_counter() - started) * 1000
            if connection.authorizer is None and connect_route and connect_route.authorizer:
                function_id = f"(refused before {function_id or 'connecting'})"
            self._say(f"WS $connect -> {opened.status} {function_id} {elapsed_ms:.0f} ms")
            return opened
        socket = web.WebSocketResponse(
            protocols=opened, compress=False, max_msg_size=self._max_message_bytes + 1, autoping=True
        )
        await socket.prepare(request)
        connection.socket = socket
        self._connections[connection.connection_id] = connection
        elapsed_ms = (time.perf_counter() - started) * 1000
        self._say(f"WS $connect {connection.connection_id} -> 101 {function_id} {elapsed_ms:.0f} ms")
        status = ABNORMAL
        try:
            if self._stopping:
                await self._close(connection, GOING_AWAY)
            status = await self._receive(connection)
        finally:
            self._connections.pop(connection.connection_id, None)
            # In a task of its own: aiohttp may cancel the handler's task once the client is gone.
            self._track(asyncio.create_task(self._end(connection, status)))
        return socket

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._sessions.add(task)
        task.add_done_callback(self._sessions.discard)

    async def _end(self, connection: Connection, status: Status) -> None:
        """After the socket closed: let the messages already received finish, then run ``$disconnect``."""
        if connection.previous is not None:
            await asyncio.wait([connection.previous])
        await self._disconnect(connection, status)

    async def _open(self, connection: Connection) -> list[str] | web.StreamResponse:
        """The authorizer and the ``$connect`` integration: the subprotocols to accept, or the refusal."""
        route = self.api.routes.get("$connect")
        if route is None:
            return []
        if route.authorizer is not None:
            refusal = await self._authorize(route, route.authorizer, connection)
            if refusal is not None:
                return refusal
        if route.function_id is None:
            return []
        now = time.time()
        outcome = await self._invoke(route, connect_event(self.api, connection, new_id(), now))
        if outcome is None:
            return gateway_error(504, "Endpoint request timed out")
        if outcome.error is not None:
            self._say(f"WS $connect: {route.function_id} failed: {outcome.error.error_type}: {outcome.error.message}")
            return gateway_error(502, "Internal server error")
        result = outcome.result
        if not isinstance(result, dict):
            return []
        status = result.get("statusCode", 200)
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            return gateway_error(502, "Internal server error")
        if not 200 <= status <= 299:
            body = result.get("body")
            return web.Response(status=status, text=body if isinstance(body, str) else None)
        return _subprotocols(result.get("headers"))

    async def _authorize(
        self, route: WebSocketRoute, authorizer: WebSocketAuthorizer, connection: Connection
    ) -> web.StreamResponse | None:
        if identity_values(authorizer, connection, self.api) is None:
            return gateway_error(401, "Unauthorized")
        event = authorizer_event(self.api, connection, new_id(), time.time())
        outcome = await self._invoke_function(authorizer.function_id, event, route.timeout_ms)
        if outcome is None:
            return gateway_error(500, "Internal Server Error")
        if outcome.error is not None:
            if outcome.error.message == "Unauthorized":
                return gateway_error(401, "Unauthorized")
            self._say(f"WS authorizer {authorizer.name} failed: {outcome.error.error_type}: {outcome.error.message}")
            return gateway_error(500, "Internal Server Error")
        decision = authorizer_context(outcome.result, self.api.route_arn("$connect"))
        if isinstance(decision, int):
            if decision == 500:
                self._say(f"WS authorizer {authorizer.name} returned a malformed answer")
            return gateway_error(decision, "Forbidden" if decision == 403 else "Internal Server Error")
        connection.authorizer = decision
        return None

    async def _receive(self, connection: Connection) -> Status:
        """Read the client's messages until the socket closes; return why it closed."""
        socket = connection.socket
        assert socket is not None
        while True:
            message = await socket.receive()
            kind = message.type
            if kind is WSMsgType.TEXT:
                connection.touch()
                handling = self._on_message(connection, message.data, connection.previous)
                connection.previous = asyncio.create_task(handling)
            elif kind is WSMsgType.BINARY:
                await self._close(connection, BINARY_REFUSED)
            elif kind is WSMsgType.CLOSE:
                code = int(message.data) or NO_STATUS[0]  # 0: a close frame without a status code
                return code, _REASONS.get(code, str(message.extra or ""))
            elif kind is WSMsgType.ERROR:  # aiohttp closed it already, e.g. 1009 for a message over the limit
                error_code = int(getattr(message.data, "code", 0))
                return (error_code, _REASONS[error_code]) if error_code in _REASONS else ABNORMAL
            elif kind in (WSMsgType.CLOSING, WSMsgType.CLOSED):
                return connection.closing or ABNORMAL

    async def _on_message(self, connection: Connection, body: str, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        try:
            await self._route(connection, body)
        except Exception as exc:  # a fault of the runtime itself: say what broke, keep serving the connection
            self._say(f"WS message {connection.connection_id}: local runtime error: {type(exc).__name__}: {exc}")

    async def _route(self, connection: Connection, body: str) -> None:
        request_id = new_id()
        route_key = select_route(self.api, body)
        route = self.api.routes[route_key] if route_key else None
        if route is None or route.function_id is None:
            self._say(f"WS message {connection.connection_id} -> no route: Forbidden")
            await self._send(connection, gateway_message("Forbidden", connection.connection_id, request_id))
            return
        started = time.perf_counter()
        event = message_event(self.api, connection, route.route_key, body, request_id, new_id(), time.time())
        outcome = await self._invoke(route, event)
        elapsed_ms = (time.perf_counter() - started) * 1000
        self._say(f"WS {route.route_key} {connection.connection_id} -> {route.function_id} {elapsed_ms:.0f} ms")
        if outcome is None:
            reply: str | bytes | None = gateway_message(
                "Endpoint request timed out", connection.connection_id, request_id
            )
        elif outcome.error is not None:
            reply = gateway_message("Internal server error", connection.connection_id, request_id)
        elif route.route_response:
            reply = route_response(outcome.result)
        else:
            reply = None
        if reply is not None:
            await self._send(connection, reply)

    async def _send(self, connection: Connection, data: str | bytes) -> None:
        socket = connection.socket
        if socket is None or socket.closed:
            return  # the client went away meanwhile: API Gateway drops the answer too
        with contextlib.suppress(ConnectionError):
            if isinstance(data, str):
                await socket.send_str(data)
            else:
                await socket.send_bytes(data)
            connection.touch()

    async def _close(self, connection: Connection, status: Status) -> None:
        """Close a connection from the server's side; its session then runs ``$disconnect`` with ``status``."""
        if connection.closing is not None:
            return
        connection.closing = status
        # Gone for @connections from now on, as on AWS while $disconnect runs.
        self._connections.pop(connection.connection_id, None)
        socket = connection.socket
        if socket is not None and not socket.closed:
            with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
                await socket.close(code=status[0], message=status[1].encode())

    async def _disconnect(self, connection: Connection, status: Status) -> None:
        route = self.api.routes.get("$disconnect")
        if route is None or route.function_id is None:
            return
        started = time.perf_counter()
        try:
            outcome = await self._invoke(route, disconnect_event(self.api, connection, status, new_id(), time.time()))
        except Exception as exc:  # a fault of the runtime itself (a worker that cannot start...)
            self._say(f"WS $disconnect {connection.connection_id}: local runtime error: {type(exc).__name__}: {exc}")
            return
        elapsed_ms = (time.perf_counter() - started) * 1000
        result = "timed out" if outcome is None else "failed" if outcome.error else "done"
        self._say(
            f"WS $disconnect {connection.connection_id} ({status[0]} {status[1]}) -> {route.function_id} {result}"
            f" {elapsed_ms:.0f} ms"
        )

    async def _invoke(self, route: WebSocketRoute, event: dict[str, Any]) -> Invocation | None:
        assert route.function_id is not None
        return await self._invoke_function(route.function_id, event, route.timeout_ms)

    async def _invoke_function(self, function_id: str, event: dict[str, Any], timeout_ms: int) -> Invocation | None:
        """Invoke within the integration timeout; None if it ran out (the function goes on, as on AWS)."""
        invocation = asyncio.ensure_future(self._invoker.invoke(function_id, event))
        try:
            return await asyncio.wait_for(asyncio.shield(invocation), timeout_ms / 1000)
        except TimeoutError:
            return None

    # Timeouts and stopping --------------------------------------------------------------------------------------------

    async def _start_sweeper(self, _: web.Application) -> None:
        self._sweeper = asyncio.create_task(self._sweep())

    async def _sweep(self) -> None:
        """Close the connections idle for too long or open for too long, as API Gateway does."""
        interval = min(max(min(self._idle_timeout, self._max_lifetime) / 10, 0.01), 10.0)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            expired = [
                connection
                for connection in self._connections.values()
                if now - connection.active >= self._idle_timeout or now - connection.opened >= self._max_lifetime
            ]
            for connection in expired:
                # Not awaited here: one slow client must not hold up the others' timeouts.
                self._track(asyncio.create_task(self._close(connection, GOING_AWAY)))

    async def _on_shutdown(self, _: web.Application) -> None:
        await self.close_all()

    async def close_all(self, timeout_seconds: float = CLOSE_ALL_TIMEOUT_SECONDS) -> None:
        """Close every connection (1001 Going away) and wait for their ``$disconnect``; refuse new ones meanwhile."""
        self._stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        await asyncio.gather(*(self._close(connection, GOING_AWAY) for connection in list(self._connections.values())))
        # Sessions end by starting their $disconnect task: wait until nothing is left, or the time is up.
        deadline = time.monotonic() + timeout_seconds
        current = asyncio.current_task()
        while pending := [task for task in self._sessions if task is not current]:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._say(f"WS: {len(pending)} connections did not finish their $disconnect in {timeout_seconds:.0f} s")
                return
            await asyncio.wait(pending, timeout=remaining)


def _subprotocols(headers: Any) -> list[str]:
    # A $connect integration accepts a subprotocol the client asked for by answering Sec-WebSocket-Protocol.
    if not isinstance(headers, dict):
        return []
    return [str(value) for name, value in headers.items() if str(name).lower() == "sec-websocket-protocol"]


def _is_text(data: bytes) -> bool:
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


async def start(gateway: WebSocketGateway, host: str = DEFAULT_WS_HOST, port: int = DEFAULT_WS_PORT) -> web.AppRunner:
    """Serve ``gateway`` on ``host:port`` (0: a free port, see ``runner.addresses``).

    ``await runner.cleanup()`` closes every connection (running ``$disconnect``) and stops serving.
    """
    runner = web.AppRunner(gateway.app(), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    return runner


@contextlib.contextmanager
def serve_in_thread(gateway: WebSocketGateway, host: str = DEFAULT_WS_HOST, port: int = 0) -> Iterator[int]:
    """Serve ``gateway`` from a thread and event loop of its own (for stacks inside a test's process); yield the port.

    On exit every connection is closed (``$disconnect`` runs) before the thread ends.
    """
    started: queue.Queue[int | BaseException] = queue.Queue()
    stopping: list[Callable[[], object]] = []

    async def run() -> None:
        try:
            runner = await start(gateway, host, port)
        except BaseException as exc:
            started.put(exc)
            raise
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        stopping.append(lambda: loop.call_soon_threadsafe(stop.set))
        started.put(int(runner.addresses[0][1]))
        await stop.wait()
        await runner.cleanup()

    thread = threading.Thread(target=asyncio.run, args=(run(),), name="websocket-api", daemon=True)
    thread.start()
    outcome = started.get()
    if isinstance(outcome, BaseException):
        thread.join()
        raise outcome
    try:
        yield outcome
    finally:
        stopping[0]()
        thread.join(CLOSE_ALL_TIMEOUT_SECONDS + 5)
