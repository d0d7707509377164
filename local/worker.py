"""One Lambda execution environment: imports a handler once, then runs one event at a time, warm in between.

Started by ``local.workers`` as ``python -I local/worker.py <handler> <code_dir> [<layer_dir>...]`` in the function's
environment. It is a script with nothing but the standard library, so nothing of the local runtime is importable from
the function's code, and ``sys.path`` is what Lambda gives: the code folder (``/var/task``), the layer folders
(``/opt/python``), then the interpreter's own paths (where boto3 sits, as in Lambda's runtime).

Protocol, one JSON document per line: the worker first writes ``{"ready": ...}`` (or ``{"init_error": ...}``), then
for each request ``{"request_id", "event", "deadline_ms", "invoked_function_arn"}`` read from the runtime it writes
``{"result": ...}`` or ``{"error": ...}``. The protocol uses private copies of stdin and stdout; the handler's own
stdout and stderr both go to the worker's stderr, which the runtime relays to its console, so a ``print`` can never
corrupt a reply.
"""

from __future__ import annotations

import decimal
import importlib
import json
import logging
import os
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from typing import IO, Any

Handler = Callable[[Any, "LambdaContext"], Any]


class LambdaContext:
    """The context object a Python handler receives, with the fields and method AWS's runtime provides."""

    def __init__(self, request_id: str, deadline_ms: int, invoked_function_arn: str) -> None:
        self.aws_request_id = request_id
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn = invoked_function_arn
        # A string, as in AWS's runtime (it is read from the environment there too).
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's timeout."""
        return max(0, self._deadline_ms - int(time.time() * 1000))


class _RequestIdFilter(logging.Filter):
    request_id = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = self.request_id
        return True


def _install_lambda_logging() -> _RequestIdFilter:
    # The same root handler format as AWS's Python runtime, so plain `logging` output looks as it does in CloudWatch.
    request_ids = _RequestIdFilter()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s", "%Y-%m-%dT%H:%M:%S"
        )
    )
    handler.formatter.converter = time.gmtime  # type: ignore[union-attr]
    handler.addFilter(request_ids)
    logging.getLogger().addHandler(handler)
    return request_ids


def _take_protocol_streams() -> tuple[IO[bytes], IO[bytes]]:
    """Keep private copies of stdin/stdout for the protocol; point fd 0 at /dev/null and fd 1 at stderr."""
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    return requests, replies


def _error(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    return {
        "errorType": error_type or type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


def _load_handler(handler_name: str) -> Handler:
    module_name, _, function_name = handler_name.rpartition(".")
    if not module_name:
        raise _InitError("Runtime.MalformedHandlerName", f"Bad handler '{handler_name}': not enough values to unpack")
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as exc:
        raise _InitError("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}") from exc
    handler = getattr(module, function_name, None)
    if not callable(handler):
        raise _InitError("Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'")
    return handler  # type: ignore[no-any-return]


class _InitError(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def _to_json(value: Any) -> str:
    # AWS's runtime serialises Decimal (what DynamoDB returns) as a number.
    def default(item: Any) -> Any:
        if isinstance(item, decimal.Decimal):
            return float(item)
        raise TypeError(f"Object of type {type(item).__name__} is not JSON serializable")

    return json.dumps(value, default=default)


def _send(replies: IO[bytes], message: dict[str, Any]) -> None:
    replies.write(json.dumps(message).encode() + b"\n")
    replies.flush()


def main(argv: list[str]) -> int:
    """Run the worker: ``argv`` is ``[handler, code_dir, *layer_dirs]``."""
    handler_name, code_dir, *layer_dirs = argv
    requests, replies = _take_protocol_streams()
    # Lambda's order: /var/task, then the layers (/opt/python), then the runtime's own packages.
    sys.path[:0] = [code_dir, *layer_dirs]
    request_ids = _install_lambda_logging()

    started = time.perf_counter()
    try:
        handler = _load_handler(handler_name)
    except _InitError as exc:
        print(f"[ERROR] {exc.error_type}: {exc}", file=sys.stderr)
        _send(replies, {"init_error": _error(exc, exc.error_type)})
        return 1
    except Exception as exc:
        traceback.print_exc()
        _send(replies, {"init_error": _error(exc, "Runtime.Unknown")})
        return 1
    _send(replies, {"ready": {"init_ms": (time.perf_counter() - started) * 1000}})

    for line in requests:
        request = json.loads(line)
        request_id = request["request_id"]
        request_ids.request_id = request_id
        os.environ["_X_AMZN_TRACE_ID"] = f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Sampled=0"
        context = LambdaContext(request_id, int(request["deadline_ms"]), request["invoked_function_arn"])
        try:
            result = handler(request["event"], context)
        except Exception as exc:
            # What AWS's runtime logs for an unhandled error before returning it to the caller.
            # The traceback starts in the handler: this loop's own frame is the runtime's business.
            exc.__traceback__ = exc.__traceback__.tb_next if exc.__traceback__ else None
            print(f"[ERROR] {type(exc).__name__}: {exc}", file=sys.stderr)
            traceback.print_exception(exc)
            _send(replies, {"error": _error(exc)})
            continue
        try:
            reply = _to_json({"result": result})
        except (TypeError, ValueError) as exc:
            _send(replies, {"error": _error(exc, "Runtime.MarshalError")})
            continue
        replies.write(reply.encode() + b"\n")
        replies.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
