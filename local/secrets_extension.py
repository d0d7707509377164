"""An emulation of the AWS Parameters and Secrets Lambda Extension's Secrets Manager endpoint.

On AWS the extension listens on ``localhost:$PARAMETERS_SECRETS_EXTENSION_HTTP_PORT`` inside the Lambda sandbox and
answers ``GET /secretsmanager/get?secretId=...[&versionId=...|&versionStage=...]`` with the GetSecretValue JSON,
provided the request carries ``X-Aws-Parameters-Secrets-Token: $AWS_SESSION_TOKEN``. This module serves the same
endpoint from a thread, backed by any Secrets Manager client: moto's server in the local runtime, or moto's in-process
``mock_aws`` in tests, where a fixture can do::

    with secrets_extension.serve(session_token="test-token") as extension:
        monkeypatch.setenv("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", str(extension.port))
        monkeypatch.setenv("AWS_SESSION_TOKEN", "test-token")
        ...
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import parse_qs, urlsplit

from botocore.exceptions import ClientError, ParamValidationError

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

TOKEN_HEADER = "X-Aws-Parameters-Secrets-Token"  # noqa: S105 - a header name
SECRETS_PATH = "/secretsmanager/get"
# The real extension caches a secret for SECRETS_MANAGER_TTL seconds (default 300); 0 turns the cache off.
AWS_DEFAULT_TTL_SECONDS = 300


class SecretsExtension:
    """A running emulated extension; stop it with :meth:`stop` or by leaving its ``with`` block."""

    def __init__(self, server: ThreadingHTTPServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        """The port it listens on (what ``PARAMETERS_SECRETS_EXTENSION_HTTP_PORT`` must say)."""
        return int(self._server.server_address[1])

    def stop(self) -> None:
        """Stop serving and wait for the serving thread to end."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def serve(
    port: int = 0,
    *,
    session_token: str,
    client: SecretsManagerClient | None = None,
    cache_ttl_seconds: float = 0,
    host: str = "127.0.0.1",
) -> SecretsExtension:
    """Serve the extension's Secrets Manager endpoint on ``host:port`` (0 = any free port) in a daemon thread.

    ``session_token`` is the AWS_SESSION_TOKEN the callers' environment holds; requests must present it.
    ``client`` defaults to boto3's default Secrets Manager client, created on the first request (so it picks up
    moto's ``mock_aws`` when the caller uses it). ``cache_ttl_seconds`` mimics the extension's cache
    (``SECRETS_MANAGER_TTL``); tests usually want 0 so a rotation is seen at once.
    """
    lookup = _CachedLookup(client, cache_ttl_seconds)
    handler = _handler_class(session_token, lookup.get_secret_value)
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    # A short poll interval makes stop() quick (shutdown waits for the next poll).
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="secrets-extension", daemon=True
    )
    thread.start()
    return SecretsExtension(server, thread)


class _CachedLookup:
    def __init__(self, client: SecretsManagerClient | None, ttl_seconds: float) -> None:
        self._client = client
        self._ttl = ttl_seconds
        self._cache: dict[tuple[str, str, str], tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def _secrets_manager(self) -> SecretsManagerClient:
        with self._lock:
            if self._client is None:
                import boto3  # only when no client was given: the caller may be inside moto's mock_aws

                self._client = boto3.client("secretsmanager")
            return self._client

    def get_secret_value(self, secret_id: str, version_id: str, version_stage: str) -> dict[str, Any]:
        key = (secret_id, version_id, version_stage)
        now = time.monotonic()
        if self._ttl > 0:
            with self._lock:
                cached = self._cache.get(key)
            if cached and now - cached[0] < self._ttl:
                return cached[1]
        arguments = {"SecretId": secret_id}
        if version_id:
            arguments["VersionId"] = version_id
        if version_stage:
            arguments["VersionStage"] = version_stage
        response = self._secrets_manager().get_secret_value(**arguments)
        # The extension (written against the Go SDK) answers with the whole GetSecretValueOutput.
        answer: dict[str, Any] = {"SecretBinary": None, "SecretString": None, "ResultMetadata": {}}
        answer |= {name: value for name, value in response.items() if name != "ResponseMetadata"}
        if self._ttl > 0:
            with self._lock:
                self._cache[key] = (now, answer)
        return answer


def _handler_class(
    session_token: str, get_secret_value: Callable[[str, str, str], dict[str, Any]]
) -> type[BaseHTTPRequestHandler]:
    class ExtensionRequestHandler(BaseHTTPRequestHandler):
        server_version = "AWSParametersAndSecretsLambdaExtension-local"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != SECRETS_PATH:
                self._reply(HTTPStatus.NOT_FOUND, {"message": f"unknown path {url.path}"})
                return
            if not session_token or self.headers.get(TOKEN_HEADER) != session_token:
                self._reply(HTTPStatus.UNAUTHORIZED, {"message": f"missing or invalid {TOKEN_HEADER} header"})
                return
            query = {name: values[-1] for name, values in parse_qs(url.query).items()}
            secret_id = query.get("secretId", "")
            if not secret_id:
                self._reply(HTTPStatus.BAD_REQUEST, {"message": "secretId is required"})
                return
            try:
                answer = get_secret_value(secret_id, query.get("versionId", ""), query.get("versionStage", ""))
            except ClientError as error:
                # Like the extension: 400 with the service's error type and message.
                details = error.response.get("Error", {})
                body = {"__type": details.get("Code", "ClientError"), "message": details.get("Message", "")}
                self._reply(HTTPStatus.BAD_REQUEST, body)
                return
            except ParamValidationError as error:
                self._reply(HTTPStatus.BAD_REQUEST, {"__type": "ValidationException", "message": str(error)})
                return
            self._reply(HTTPStatus.OK, answer)

        def _reply(self, status: HTTPStatus, body: dict[str, Any]) -> None:
            payload = json.dumps(body, default=_json_default).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            """Keep the console quiet: the functions' own logs say what matters."""

    return ExtensionRequestHandler


def _json_default(value: Any) -> Any:
    # As the Go SDK marshals them: times in RFC 3339 (UTC), bytes in base64.
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"cannot serialise {type(value).__name__}")
