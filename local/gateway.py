"""The HTTP API, as API Gateway (HTTP API, payload format 2.0) serves it: routes, the Lambda authorizer with its
cache, IAM authorization (``AWS_IAM`` routes), the event a function receives, how its result becomes the HTTP
response, and API Gateway's own answers (``{"message": "Not Found"}`` and friends, from ``local.plumbing``).

IAM authorization: a route whose authorizer is ``AWS_IAM`` takes only requests SigV4-signed for ``execute-api`` with
the local credentials (``local.services``: the ones every local function holds). API Gateway checks the signature
first (unsigned: 403 ``{"message":"Forbidden"}``; a bad, stale or unknown-key signature: 403 with AWS's message and
its ``x-amzn-ErrorType``), then the caller's ``execute-api:Invoke`` permission: locally that one identity, the
IAM user ``local-operator`` of the local account, may invoke every route. The function gets it in
``requestContext.authorizer.iam`` and no Lambda authorizer runs.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from local.plumbing import (
    MISSING_SIGNATURE,
    AuthorizerCache,
    SignatureError,
    failure,
    forwarded_headers,
    gateway_error,
    invoke_within,
    is_utf8,
    request_id,
    verify_sigv4,
)
from local.services import ACCESS_KEY_ID, SECRET_ACCESS_KEY
from local.specs import AWS_IAM, HttpRoute, LambdaAuthorizer
from local.template import ACCOUNT_ID, LOCAL_API_ID, REGION, stable_id
from local.workers import Invocation, Invoker

# API Gateway's request payload quota for HTTP APIs, and its maximum integration timeout.
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
MAX_INTEGRATION_TIMEOUT_MS = 30_000
STAGE = "$default"

# Bodies of these media types reach the function as text; any other body arrives base64-encoded.
_TEXT_MEDIA_TYPES = re.compile(
    r"^(text/.*|application/(json|.*\+json|xml|.*\+xml|javascript|ecmascript|x-yaml|yaml|graphql))$"
)
# Headers the HTTP server computes itself; a function's own values for them would conflict.
_SERVER_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})

Say = Callable[[str], None]

# Who signed a request to an AWS_IAM route locally: one IAM user of the local account, allowed every route.
LOCAL_OPERATOR_ARN = f"arn:aws:iam::{ACCOUNT_ID}:user/local-operator"
LOCAL_OPERATOR_ID = "AIDA" + stable_id("local-operator", 17).upper()  # an IAM user's unique id starts AIDA


# --- Routes ---


@dataclass(frozen=True)
class _CompiledRoute:
    route: HttpRoute
    pattern: re.Pattern[str]
    parameter_names: tuple[str, ...]
    rank: tuple[int, ...]


class RouteTable:
    """Matches a request to a route the way HTTP APIs do: the most specific route wins, ``$default`` last."""

    def __init__(self, routes: Iterable[HttpRoute]) -> None:
        self._routes = sorted((self._compile(route) for route in routes), key=lambda compiled: compiled.rank)

    @property
    def routes(self) -> list[HttpRoute]:
        """The routes, most specific first."""
        return [compiled.route for compiled in self._routes]

    @staticmethod
    def _compile(route: HttpRoute) -> _CompiledRoute:
        if route.path == "$default":
            return _CompiledRoute(route, re.compile(r".*"), (), (1, 1, 0, 0, 1))
        parts: list[str] = []
        names: list[str] = []
        literals = variables = greedy = 0
        for segment in route.path.strip("/").split("/"):
            if segment.startswith("{") and segment.endswith("+}"):
                parts.append("(.+)")
                names.append(segment[1:-2])
                greedy += 1
            elif segment.startswith("{") and segment.endswith("}"):
                parts.append("([^/]+)")
                names.append(segment[1:-1])
                variables += 1
            else:
                parts.append(re.escape(segment))
                literals += 1
        pattern = re.compile("/" + "/".join(parts) if parts != [""] else "/")
        rank = (0, greedy, variables, -literals, 1 if route.method == "ANY" else 0)
        return _CompiledRoute(route, pattern, tuple(names), rank)

    def match(self, method: str, path: str) -> tuple[HttpRoute, dict[str, str]] | None:
        """The route for ``method path`` and its path parameters, or None (API Gateway's 404)."""
        for compiled in self._routes:
            if compiled.route.method not in (method, "ANY"):
                continue
            found = compiled.pattern.fullmatch(path)
            if found:
                return compiled.route, dict(zip(compiled.parameter_names, found.groups(), strict=True))
        return None


# --- Events ---


@dataclass(frozen=True)
class RequestFacts:
    """What API Gateway knows of a request before routing it."""

    method: str
    raw_path: str
    path: str
    raw_query: str
    headers: list[tuple[str, str]]
    source_ip: str
    host: str
    body: bytes
    # The headers as the client sent them (names in lower case, repeats comma-joined): what a signature covers.
    sent_headers: dict[str, str]
    request_id: str
    received: datetime

    @classmethod
    async def read(cls, request: web.Request) -> RequestFacts:
        """Collect the facts of an aiohttp request (reads the body)."""
        return cls(
            method=request.method,
            raw_path=request.raw_path.split("?", 1)[0],
            path=request.path,
            raw_query=request.query_string,
            headers=forwarded_headers(request),
            source_ip=request.remote or "127.0.0.1",
            host=request.host,
            body=await request.read(),
            sent_headers={name.lower(): ",".join(request.headers.getall(name)) for name in request.headers},
            request_id=request_id(),
            received=datetime.now(UTC),
        )

    def header(self, name: str) -> str | None:
        """A header's value (repeated headers comma-joined), None if absent."""
        values = [value for key, value in self.headers if key == name.lower()]
        return ",".join(values) if values else None


def _joined_headers(facts: RequestFacts) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in facts.headers:
        if name != "cookie":
            headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


def _cookies(facts: RequestFacts) -> list[str]:
    return [
        cookie.strip()
        for name, value in facts.headers
        if name == "cookie"
        for cookie in value.split(";")
        if cookie.strip()
    ]


def _query_parameters(raw_query: str) -> dict[str, str]:
    parameters: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        parameters[name] = f"{parameters[name]},{value}" if name in parameters else value
    return parameters


def request_context(facts: RequestFacts, route_key: str) -> dict[str, Any]:
    """``requestContext`` of a payload 2.0 event (without ``authorizer``)."""
    return {
        "accountId": ACCOUNT_ID,
        "apiId": LOCAL_API_ID,
        "domainName": facts.host,
        "domainPrefix": facts.host.split(".", 1)[0],
        "http": {
            "method": facts.method,
            "path": facts.path,
            "protocol": "HTTP/1.1",
            "sourceIp": facts.source_ip,
            "userAgent": facts.header("user-agent") or "",
        },
        "requestId": facts.request_id,
        "routeKey": route_key,
        "stage": STAGE,
        "time": facts.received.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(facts.received.timestamp() * 1000),
    }


def _common_fields(facts: RequestFacts, route: HttpRoute, path_parameters: Mapping[str, str]) -> dict[str, Any]:
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": facts.raw_path,
        "rawQueryString": facts.raw_query,
    }
    cookies = _cookies(facts)
    if cookies:
        event["cookies"] = cookies
    event["headers"] = _joined_headers(facts)
    query = _query_parameters(facts.raw_query)
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = request_context(facts, route.route_key)
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    return event


def http_event(
    facts: RequestFacts,
    route: HttpRoute,
    path_parameters: Mapping[str, str],
    authorizer: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The payload format 2.0 event API Gateway sends to a route's function; ``authorizer`` is what the route's
    authorization found (``{"lambda": context}`` or ``{"iam": ...}``), None on an open route."""
    event = _common_fields(facts, route, path_parameters)
    if authorizer is not None:
        event["requestContext"]["authorizer"] = dict(authorizer)
    if facts.body:
        media_type = (facts.header("content-type") or "").split(";", 1)[0].strip().lower()
        as_text = _TEXT_MEDIA_TYPES.match(media_type) if media_type else is_utf8(facts.body)
        if as_text:
            event["body"] = facts.body.decode("utf-8", errors="replace")
            event["isBase64Encoded"] = False
        else:
            event["body"] = base64.b64encode(facts.body).decode()
            event["isBase64Encoded"] = True
    else:
        event["isBase64Encoded"] = False
    return event


def iam_authorizer(access_key: str) -> dict[str, Any]:
    """``requestContext.authorizer`` of a request to an AWS_IAM route signed by ``access_key`` locally: the local
    operator, described as API Gateway describes an IAM user (no Cognito identity, no organization)."""
    return {
        "iam": {
            "accessKey": access_key,
            "accountId": ACCOUNT_ID,
            "callerId": LOCAL_OPERATOR_ID,
            "cognitoIdentity": None,
            "principalOrgId": None,
            "userArn": LOCAL_OPERATOR_ARN,
            "userId": LOCAL_OPERATOR_ID,
        }
    }


def route_arn(facts: RequestFacts) -> str:
    """The ARN API Gateway gives the request in authorizer events and checks policies against."""
    return f"arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:{LOCAL_API_ID}/{STAGE}/{facts.method}{facts.path}"


def authorizer_event(
    facts: RequestFacts, route: HttpRoute, path_parameters: Mapping[str, str], identity: list[str]
) -> dict[str, Any]:
    """The payload format 2.0 REQUEST event API Gateway sends to a Lambda authorizer."""
    event = {"type": "REQUEST", "routeArn": route_arn(facts), "identitySource": identity}
    event |= _common_fields(facts, route, path_parameters)
    return event


# --- Responses ---


class MalformedResponse(Exception):
    """A function returned something API Gateway cannot turn into an HTTP response."""


def http_response(result: Any, request_id: str) -> web.Response:
    """Turn a function's result into the HTTP response, with API Gateway's payload 2.0 rules."""
    if not (isinstance(result, dict) and "statusCode" in result):
        # No statusCode: the whole result is a JSON body (a string result is the body itself).
        text = result if isinstance(result, str) else json.dumps(result)
        return web.Response(
            status=200, text=text, content_type="application/json", headers={"apigw-requestid": request_id}
        )
    status = result["statusCode"]
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise MalformedResponse(f"statusCode {status!r} is not an HTTP status")
    headers = result.get("headers") or {}
    cookies = result.get("cookies") or []
    body = result.get("body")
    encoded = result.get("isBase64Encoded", False)
    if not isinstance(headers, dict) or not all(isinstance(v, str | int | float | bool) for v in headers.values()):
        raise MalformedResponse("headers must map names to single values")
    if not isinstance(cookies, list) or not all(isinstance(cookie, str) for cookie in cookies):
        raise MalformedResponse("cookies must be a list of strings")
    if body is not None and not isinstance(body, str):
        raise MalformedResponse("body must be a string")
    if not isinstance(encoded, bool):
        raise MalformedResponse("isBase64Encoded must be a boolean")
    payload = base64.b64decode(body or "") if encoded else (body or "").encode()
    response = web.Response(status=status, body=payload)
    for name, value in headers.items():
        if name.lower() not in _SERVER_HEADERS:
            response.headers[name] = str(value).lower() if isinstance(value, bool) else str(value)
    if payload and "content-type" not in {name.lower() for name in headers}:
        response.headers["Content-Type"] = "application/json"
    for cookie in cookies:
        response.headers.add("Set-Cookie", cookie)
    response.headers["apigw-requestid"] = request_id
    return response


# --- The authorizer ---


class AuthorizerFailure(Exception):
    """The authorizer failed (error, timeout, malformed answer): API Gateway answers 500."""


@dataclass(frozen=True)
class AuthorizerAnswer:
    """A parsed authorizer response; an IAM policy is evaluated per route, so one answer can serve many routes."""

    allowed_arns: tuple[str, ...]
    denied_arns: tuple[str, ...]
    context: dict[str, Any]

    def allows(self, arn: str) -> bool:
        """Whether the answer lets a request for ``arn`` through."""
        if any(fnmatch.fnmatchcase(arn, pattern) for pattern in self.denied_arns):
            return False
        return any(fnmatch.fnmatchcase(arn, pattern) for pattern in self.allowed_arns)


def parse_authorizer_result(result: Any, simple_responses: bool) -> AuthorizerAnswer:
    """Read an authorizer's response: ``{"isAuthorized": bool, "context": {...}}`` or an IAM policy."""
    if not isinstance(result, dict):
        raise AuthorizerFailure("the authorizer's response is not a JSON object")
    context = result.get("context") or {}
    if not isinstance(context, dict):
        raise AuthorizerFailure("context must be an object")
    if simple_responses:
        if not isinstance(result.get("isAuthorized"), bool):
            raise AuthorizerFailure("isAuthorized must be a boolean")
        return AuthorizerAnswer(("*",) if result["isAuthorized"] else (), (), context)
    policy = result.get("policyDocument")
    if not isinstance(policy, dict) or "principalId" not in result:
        raise AuthorizerFailure("an IAM policy response needs principalId and policyDocument")
    allowed: list[str] = []
    denied: list[str] = []
    statements = policy.get("Statement") or []
    for statement in statements if isinstance(statements, list) else [statements]:
        actions = _as_list(statement.get("Action"))
        if not any(action in ("*", "execute-api:*", "execute-api:Invoke") for action in actions):
            continue
        target = allowed if statement.get("Effect") == "Allow" else denied
        target.extend(_as_list(statement.get("Resource")))
    return AuthorizerAnswer(tuple(allowed), tuple(denied), context)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(item) for item in value] if isinstance(value, list) else [str(value)]


# --- The gateway ---


class Gateway:
    """An HTTP API: routes to functions through an :class:`Invoker`, Lambda authorizers, IAM authorization (SigV4
    with ``credentials``, the local ones by default), static files."""

    def __init__(
        self,
        routes: Iterable[HttpRoute],
        authorizers: Mapping[str, LambdaAuthorizer],
        invoker: Invoker,
        *,
        web_dir: Path | None = None,
        say: Say = print,
        cache: AuthorizerCache[tuple[str, tuple[str, ...]], AuthorizerAnswer] | None = None,
        credentials: tuple[str, str] = (ACCESS_KEY_ID, SECRET_ACCESS_KEY),
    ) -> None:
        self.routes = RouteTable(routes)
        self._authorizers = dict(authorizers)
        self._invoker = invoker
        self._credentials = credentials
        self._web_dir = web_dir.resolve() if web_dir and web_dir.is_dir() else None
        self._say = say
        # API Gateway keys an authorizer's answers by its identity source values.
        self._cache: AuthorizerCache[tuple[str, tuple[str, ...]], AuthorizerAnswer] = cache or AuthorizerCache()
        for route in self.routes.routes:
            if route.authorizer not in (None, AWS_IAM, *self._authorizers):
                raise ValueError(f"route {route.route_key} uses unknown authorizer {route.authorizer}")

    def app(self) -> web.Application:
        """The aiohttp application serving every path."""
        application = web.Application(client_max_size=MAX_PAYLOAD_BYTES)
        # Not `.*`: a dot does not match a newline a client sent as %0A, and aiohttp would answer its own 404.
        application.router.add_route("*", r"/{path:[\s\S]*}", self.handle)
        return application

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one request as API Gateway would."""
        started = time.perf_counter()
        try:
            facts = await RequestFacts.read(request)
        except web.HTTPRequestEntityTooLarge:
            return gateway_error(413, "Request Entity Too Large")
        try:
            response, function_id = await self._respond(facts)
        except Exception as exc:  # a fault of the runtime itself: answer as API Gateway would, say what broke
            self._say(f"{facts.method} {facts.raw_path}: local runtime error: {type(exc).__name__}: {exc}")
            response, function_id = gateway_error(500, "Internal Server Error", facts.request_id), None
        elapsed_ms = (time.perf_counter() - started) * 1000
        self._say(f"{facts.method} {facts.raw_path} -> {response.status} {function_id or ''} {elapsed_ms:.0f} ms")
        return response

    async def _respond(self, facts: RequestFacts) -> tuple[web.StreamResponse, str | None]:
        matched = self.routes.match(facts.method, facts.path)
        if matched is None:
            return self._static(facts) or gateway_error(404, "Not Found", facts.request_id), None
        route, path_parameters = matched
        authorizer: dict[str, Any] | web.Response | None = None
        if route.authorizer == AWS_IAM:
            authorizer = self._verify_signature(facts)
        elif route.authorizer:
            authorizer = await self._authorize(self._authorizers[route.authorizer], facts, route, path_parameters)
        if isinstance(authorizer, web.Response):
            return authorizer, f"(refused before {route.function_id})"
        event = http_event(facts, route, path_parameters, authorizer)
        timeout_ms = min(route.timeout_ms, MAX_INTEGRATION_TIMEOUT_MS)
        outcome = await invoke_within(self._invoker, route.function_id, event, timeout_ms)
        if outcome is None:
            return gateway_error(503, "Service Unavailable", facts.request_id), route.function_id
        return self._function_response(outcome, facts, route.function_id), route.function_id

    def _function_response(self, outcome: Invocation, facts: RequestFacts, function_id: str) -> web.Response:
        if outcome.error is not None:
            return gateway_error(500, "Internal Server Error", facts.request_id)
        try:
            return http_response(outcome.result, facts.request_id)
        except MalformedResponse as exc:
            self._say(f"{function_id} returned a malformed response: {exc}")
            return gateway_error(500, "Internal Server Error", facts.request_id)

    async def _authorize(
        self, authorizer: LambdaAuthorizer, facts: RequestFacts, route: HttpRoute, path_parameters: dict[str, str]
    ) -> dict[str, Any] | web.Response:
        """``{"lambda": context}`` of the authorizer's allow, or API Gateway's 401, 403 or 500."""
        identity = [facts.header(name) for name in authorizer.identity_headers]
        query = _query_parameters(facts.raw_query)
        identity += [query.get(name) for name in authorizer.identity_query_strings]
        if not all(identity):
            # A missing identity source: API Gateway refuses without calling the authorizer.
            return gateway_error(401, "Unauthorized", facts.request_id)
        values = [value for value in identity if value]
        answer = self._cache.get((authorizer.name, tuple(values)))
        if answer is None:
            event = authorizer_event(facts, route, path_parameters, values)
            outcome = await self._invoker.invoke(authorizer.function_id, event)
            try:
                if outcome.error is not None:
                    raise AuthorizerFailure(failure(outcome))
                answer = parse_authorizer_result(outcome.result, authorizer.simple_responses)
            except AuthorizerFailure as exc:
                self._say(f"authorizer {authorizer.name} failed: {exc}")
                return gateway_error(500, "Internal Server Error", facts.request_id)
            # Without identity sources API Gateway caches nothing.
            self._cache.put((authorizer.name, tuple(values)), answer, authorizer.ttl_seconds if values else 0)
        if not answer.allows(route_arn(facts)):
            return gateway_error(403, "Forbidden", facts.request_id)
        return {"lambda": answer.context}

    def _verify_signature(self, facts: RequestFacts) -> dict[str, Any] | web.Response:
        """The IAM caller of an AWS_IAM route, or API Gateway's 403 (the route's function is not called)."""
        try:
            access_key = verify_sigv4(
                facts.method,
                facts.raw_path,
                facts.sent_headers,
                [facts.body],
                service="execute-api",
                credentials=self._credentials,
                query=facts.raw_query,
            )
        except SignatureError as refused:
            self._say(f"{facts.method} {facts.raw_path}: IAM authorization refused: {refused}")
            if refused.error_type == MISSING_SIGNATURE:
                return gateway_error(403, "Forbidden", facts.request_id)  # an HTTP API says no more
            return gateway_error(403, str(refused), facts.request_id, refused.error_type)
        return iam_authorizer(access_key)

    def _static(self, facts: RequestFacts) -> web.StreamResponse | None:
        if self._web_dir is None or facts.method not in ("GET", "HEAD"):
            return None
        relative = facts.path.lstrip("/") or "index.html"
        candidate = (self._web_dir / relative).resolve()
        if candidate.is_dir():
            candidate = candidate / "index.html"
        if not candidate.is_relative_to(self._web_dir) or not candidate.is_file():
            return None
        return web.FileResponse(candidate)
