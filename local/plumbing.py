"""What the local APIs share, as AWS's front doors build it: the HTTP API (``local.gateway``, API Gateway) and the Event
API (``local.event_api``, AppSync Events) both give requests ids, forward the caller's address in headers, invoke a
function within the API's timeout, check bodies for UTF-8, answer with their own errors, check SigV4 signatures, and
cache their Lambda authorizer's answers, and are served by aiohttp on a port (or from a thread, for stacks inside a
test's process).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

from aiohttp import web
from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

from local.template import REGION
from local.workers import Invocation, Invoker

# How far a signed request's X-Amz-Date may be from the clock before AWS calls it expired.
MAX_CLOCK_SKEW_SECONDS = 5 * 60
SIGV4_ALGORITHM = "AWS4-HMAC-SHA256"
# How long stopping a server from a thread may take (closing its connections included).
STOP_TIMEOUT_SECONDS = 30.0
# Connections waiting to be accepted: aiohttp's 128 drops a crowd connecting at once (a benchmark's viewers), whose
# clients then wait a second to try again.
LISTEN_BACKLOG = 4096


def request_id() -> str:
    """An id shaped like API Gateway's request ids."""
    return base64.b64encode(secrets.token_bytes(10)).decode()


def forwarded_headers(request: web.Request) -> list[tuple[str, str]]:
    """The request's headers (names in lower case) as a function sees them behind an AWS front door: the caller's
    address appended to ``x-forwarded-for``, and how the request came in."""
    source_ip = request.remote or "127.0.0.1"
    forwarded = request.headers.get("X-Forwarded-For")
    headers = [(name.lower(), value) for name, value in request.headers.items() if name.lower() != "x-forwarded-for"]
    headers += [
        ("x-forwarded-for", f"{forwarded}, {source_ip}" if forwarded else source_ip),
        ("x-forwarded-port", str(request.url.port or 80)),
        ("x-forwarded-proto", request.scheme),
    ]
    return headers


async def invoke_within(invoker: Invoker, function_id: str, event: Any, timeout_ms: int) -> Invocation | None:
    """Invoke within the API's timeout; None if it ran out (the function goes on running, as on AWS)."""
    invocation = asyncio.ensure_future(invoker.invoke(function_id, event))
    try:
        return await asyncio.wait_for(asyncio.shield(invocation), timeout_ms / 1000)
    except TimeoutError:
        return None


def failure(outcome: Invocation | None) -> str | None:
    """Why an invocation gave no result, for the console (None: it gave one)."""
    if outcome is None:
        return "timed out"
    return f"{outcome.error.error_type}: {outcome.error.message}" if outcome.error else None


def is_utf8(data: bytes) -> bool:
    """Whether ``data`` is UTF-8 text."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def gateway_error(status: int, message: str, request_id: str = "", error_type: str = "") -> web.Response:
    """One of API Gateway's own answers, e.g. 404 ``{"message":"Not Found"}``; ``error_type`` is its
    ``x-amzn-ErrorType`` header, where it sends one (a refused signature)."""
    headers = {"apigw-requestid": request_id} if request_id else {}
    if error_type:
        headers["x-amzn-ErrorType"] = error_type
    body = json.dumps({"message": message}, separators=(",", ":"))
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)


def appsync_error(status: int, error_type: str, message: str) -> web.Response:
    """One of AppSync's own answers: ``{"errors": [{"errorType": ..., "message": ...}]}``."""
    return web.json_response({"errors": [{"errorType": error_type, "message": message}]}, status=status)


class AuthorizerCache[Key, Answer]:
    """A Lambda authorizer's answers (allow and deny alike) by what identifies the caller, each for its own TTL."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[Key, tuple[float, Answer]] = {}

    def get(self, key: Key) -> Answer | None:
        """The answer for ``key``, if still fresh."""
        entry = self._entries.get(key)
        if entry is not None and self._clock() >= entry[0]:
            del self._entries[key]
            return None
        return entry[1] if entry else None

    def put(self, key: Key, answer: Answer, ttl_seconds: float) -> None:
        """Remember ``answer`` for ``ttl_seconds`` (0: not at all)."""
        if ttl_seconds > 0:
            self._entries[key] = (self._clock() + ttl_seconds, answer)


# --- SigV4 ---

# What API Gateway calls each way a signature fails (the x-amzn-ErrorType of its 403), as AWS's troubleshooting guide
# for API Gateway's 403s lists them.
MISSING_SIGNATURE = "MissingAuthenticationTokenException"
INCOMPLETE_SIGNATURE = "IncompleteSignatureException"
INVALID_SIGNATURE = "InvalidSignatureException"
UNKNOWN_ACCESS_KEY = "AccessDeniedException"
SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key "
    "and signing method. Consult the service documentation for details."
)


class SignatureError(Exception):
    """A request's SigV4 signature is missing, malformed, stale, or not the one its credentials give.

    The message is AWS's own text for the failure; ``error_type`` is AWS's name for it (``MISSING_SIGNATURE`` and
    friends).
    """

    def __init__(self, message: str, error_type: str = INVALID_SIGNATURE) -> None:
        super().__init__(message)
        self.error_type = error_type


def verify_sigv4(
    method: str,
    path: str,
    headers: Mapping[str, str],
    bodies: Sequence[bytes],
    *,
    service: str,
    credentials: tuple[str, str],
    query: str = "",
    now: datetime | None = None,
) -> str:
    """Check a SigV4-signed request the way AWS does; return the access key id that signed it.

    ``headers`` are the request's (names in lower case); the signature covers the headers its Authorization header
    names, ``method``, ``path`` (as sent, still percent-encoded), the ``query`` string and the body. ``bodies`` are the
    texts the body may have been signed as (a WebSocket message is signed over a body the server rebuilds, and clients
    serialize JSON differently); one must match. The session token (``x-amz-security-token``) may be anything: only
    the key pair in ``credentials`` is known locally.
    """
    fields = _authorization_fields(headers.get("authorization", ""))
    amz_date = headers.get("x-amz-date")
    if amz_date is None:
        raise SignatureError(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.", INCOMPLETE_SIGNATURE
        )
    try:
        signed_at = datetime.strptime(amz_date, SIGV4_TIMESTAMP).replace(tzinfo=UTC)
    except ValueError:
        raise SignatureError(
            f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See http://en.wikipedia.org/wiki/ISO_8601",
            INCOMPLETE_SIGNATURE,
        ) from None
    _check_clock(signed_at, now or datetime.now(UTC))
    access_key, _, scope = fields["Credential"].partition("/")
    if access_key != credentials[0]:
        raise SignatureError("The security token included in the request is invalid.", UNKNOWN_ACCESS_KEY)
    _check_scope(scope, amz_date, service)
    names = fields["SignedHeaders"].split(";")
    if "host" not in names:
        raise SignatureError("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
    if "x-amz-date" not in names:
        raise SignatureError("'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization.")
    signer = SigV4Auth(Credentials(*credentials), service, REGION)
    signed = HTTPHeaders()
    for name in names:
        signed[name] = headers.get(name, "")  # a named header that was not sent is signed as empty, as AWS does
    request = AWSRequest(method=method, url=f"https://{headers['host']}{path}")
    request.context["timestamp"] = amz_date
    for body in bodies:
        payload_hash = hashlib.sha256(body).hexdigest()
        if headers.get("x-amz-content-sha256", payload_hash) != payload_hash:
            continue
        canonical = "\n".join(
            [
                method,
                quote(path, safe="/~"),
                canonical_query(query),
                signer.canonical_headers(signed) + "\n",
                signer.signed_headers(signed),
                payload_hash,
            ]
        )
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        if hmac.compare_digest(expected, fields["Signature"]):
            return access_key
    raise SignatureError(SIGNATURE_MISMATCH)


def _authorization_fields(authorization: str) -> dict[str, str]:
    # "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=..." -> its three fields.
    algorithm, _, parameters = authorization.partition(" ")
    if algorithm != SIGV4_ALGORITHM:
        raise SignatureError("Missing Authentication Token", MISSING_SIGNATURE)
    fields = dict(part.strip().partition("=")[::2] for part in parameters.split(","))
    missing = [name for name in ("Credential", "Signature", "SignedHeaders") if not fields.get(name)]
    if missing:
        message = " ".join(f"Authorization header requires '{name}' parameter." for name in missing)
        raise SignatureError(message, INCOMPLETE_SIGNATURE)
    return fields


def _check_clock(signed_at: datetime, now: datetime) -> None:
    skew = timedelta(seconds=MAX_CLOCK_SKEW_SECONDS)
    if signed_at < now - skew:
        earliest = f"{now - skew:{SIGV4_TIMESTAMP}}"
        raise SignatureError(
            f"Signature expired: {signed_at:{SIGV4_TIMESTAMP}} is now earlier than {earliest} "
            f"({now:{SIGV4_TIMESTAMP}} - 5 min.)"
        )
    if signed_at > now + skew:
        latest = f"{now + skew:{SIGV4_TIMESTAMP}}"
        raise SignatureError(
            f"Signature not yet current: {signed_at:{SIGV4_TIMESTAMP}} is still later than {latest} "
            f"({now:{SIGV4_TIMESTAMP}} + 5 min.)"
        )


def _check_scope(scope: str, amz_date: str, service: str) -> None:
    # <yyyymmdd>/<region>/<service>/aws4_request, in the order AWS checks them.
    day, region, scope_service, terminator = ([*scope.split("/"), "", "", "", ""])[:4]
    if day != amz_date[:8]:
        raise SignatureError(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
            f"'{day}' != '{amz_date[:8]}', from '{amz_date}'."
        )
    if region != REGION:
        raise SignatureError(f"Credential should be scoped to a valid region, not '{region}'.")
    if scope_service != service:
        raise SignatureError(f"Credential should be scoped to correct service: '{service}'.")
    if terminator != "aws4_request":
        raise SignatureError(
            f"Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'."
        )


def canonical_query(query: str) -> str:
    """SigV4's canonical query string: each name and value URI-encoded (RFC 3986), sorted by name, then value."""
    pairs = []
    for pair in query.split("&") if query else []:
        name, _, value = pair.partition("=")
        pairs.append((quote(unquote(name), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


# --- Serving ---


async def start(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Serve ``app`` on ``host:port`` (0: a free port, see ``runner.addresses``); ``runner.cleanup()`` stops it."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, backlog=LISTEN_BACKLOG).start()
    except OSError:
        await runner.cleanup()
        raise
    return runner


@contextlib.contextmanager
def serve_in_thread(make_app: Callable[[], web.Application], host: str = "127.0.0.1", port: int = 0) -> Iterator[int]:
    """Serve the application ``make_app`` builds from a thread and event loop of its own; yield the port.

    On exit the application shuts down (its connections closed) before the thread ends.
    """
    started: queue.Queue[int | BaseException] = queue.Queue()
    stopping: list[Callable[[], object]] = []

    async def run() -> None:
        try:
            runner = await start(make_app(), host, port)
        except BaseException as exc:
            started.put(exc)
            raise
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        stopping.append(lambda: loop.call_soon_threadsafe(stop.set))
        started.put(int(runner.addresses[0][1]))
        await stop.wait()
        await runner.cleanup()

    thread = threading.Thread(target=asyncio.run, args=(run(),), name=f"serving-{host}", daemon=True)
    thread.start()
    outcome = started.get()
    if isinstance(outcome, BaseException):
        thread.join()
        raise outcome
    try:
        yield outcome
    finally:
        stopping[0]()
        thread.join(STOP_TIMEOUT_SECONDS)
