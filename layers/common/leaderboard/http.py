"""API Gateway HTTP API (payload 2.0) at the edge: request bodies in, JSON and problem details out.

Handlers are wiring only: `@endpoint` maps every error to a response in this one place, so no exception text,
stack trace or library message ever reaches a caller.
"""

import base64
import binascii
import functools
import json
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from leaderboard.bodies import RULE_BROKEN
from leaderboard.identity import Identity
from leaderboard.problems import InvalidRequest, PayloadTooLarge, Problem, ServiceUnavailable, UnsupportedMediaType
from leaderboard.security_events import record

logger = Logger(child=True)

type Event = dict[str, Any]
type Response = dict[str, Any]
type Handler = Callable[[Event, Any], Response]

# Bodies of this API are a few small fields; anything bigger is refused before parsing.
MAX_BODY_BYTES = 4096

_TYPE_ERRORS = {"string_type", "int_type", "bool_type", "float_type", "dict_type", "list_type", "none_required"}


def json_response(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Response:
    """A payload-2.0 response; `body=None` sends no body (e.g. 204)."""
    response: Response = {"statusCode": status, "headers": {**(headers or {})}}
    if body is not None:
        response["headers"]["Content-Type"] = "application/json"
        response["body"] = json.dumps(body, separators=(",", ":"))
    return response


def problem_response(problem: Problem) -> Response:
    """The RFC 9457 answer for a problem."""
    return {
        "statusCode": problem.status,
        "headers": {"Content-Type": "application/problem+json", **problem.headers},
        "body": json.dumps(problem.body(), separators=(",", ":")),
    }


def endpoint(handler: Handler) -> Handler:
    """Answer every `Problem` as problem details and anything unexpected as a bare 500 (logged, not echoed)."""

    @functools.wraps(handler)
    def wrapper(event: Event, context: Any) -> Response:
        try:
            return handler(event, context)
        except Problem as problem:
            logger.info("request refused", extra={"status": problem.status, "problem": problem.slug})
            if problem.security_event:
                record(problem.security_event, user=_acting_user(event), address=source_ip(event))
            return problem_response(problem)
        except Exception as exc:
            logger.exception("unhandled error")
            if _is_aws_failure(exc):  # an AWS service throttled or unreachable, after the SDK's own retries
                return problem_response(ServiceUnavailable("The service is busy; try again.", retry_after=1))
            return problem_response(Problem("The server could not complete the request; try again later."))

    return wrapper


def _is_aws_failure(exc: Exception) -> bool:
    # By module, so that no function imports botocore for this (the authorizer never loads it).
    return type(exc).__module__.startswith("botocore.")


def parse_body[M: BaseModel](event: Event, model: type[M], max_bytes: int = MAX_BODY_BYTES) -> M:
    """The request body validated against `model`: 415 unless it is declared `application/json`, 413 when oversize,
    400 for a key given twice (one spelling per request: no "last one wins"), 400 naming each bad field otherwise."""
    text: str = event.get("body") or ""
    if text and not _is_json(event):
        raise UnsupportedMediaType("The request body must be JSON, sent with Content-Type: application/json.")
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("The request body is not valid base64.") from None
    else:
        raw = text.encode(errors="surrogatepass")  # measured in bytes, as sent
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"The request body is larger than {max_bytes} bytes.")
    _refuse_repeated_keys(raw)
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise _invalid_body(model, exc) from None


def _is_json(event: Event) -> bool:
    """The body is declared `application/json` (charset, if named, UTF-8). Payload 2.0 lowercases header names."""
    media_type, *parameters = (event.get("headers") or {}).get("content-type", "").split(";")
    if media_type.strip().lower() != "application/json":
        return False
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False
    return True


def _refuse_repeated_keys(raw: bytes) -> None:
    """400 if any object of the body names a key twice; malformed JSON is left to the model's own parse."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for key, value in items:
            if key in found:
                raise InvalidRequest(f"The request body names {key!r} more than once.")
            found[key] = value
        return found

    try:
        json.loads(raw, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return


def _invalid_body(model: type[BaseModel], exc: ValidationError) -> InvalidRequest:
    errors = [{"field": _field_name(error), "detail": _describe(model, error)} for error in exc.errors()]
    if errors[0]["field"] == "":
        return InvalidRequest(errors[0]["detail"])
    summary = "; ".join(f"{error['field']}: {error['detail']}" for error in errors)
    return InvalidRequest(f"The request body is invalid: {summary}.", errors=errors)


def _field_name(error: ErrorDetails) -> str:
    return ".".join(str(part) for part in error["loc"])


def _describe(model: type[BaseModel], error: ErrorDetails) -> str:
    """Our own words for a validation error: pydantic's messages are not part of the API."""
    kind = error["type"]
    if kind == "json_invalid":
        return "The request body is not valid JSON."
    if not error["loc"]:
        return "The request body must be a JSON object."
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a field of this request"
    if kind == RULE_BROKEN:
        return error["msg"]  # written by our own validator for the caller (bodies.py)
    field = model.model_fields.get(str(error["loc"][0]))
    expected = field.description if field and field.description else "a valid value"
    if kind in _TYPE_ERRORS:
        return f"has the wrong type; expected {expected}"
    return f"must be {expected}"


def caller(event: Event) -> Identity:
    """The player the Lambda authorizer vouched for."""
    return Identity.from_context(event["requestContext"]["authorizer"]["lambda"])


def iam_caller(event: Event) -> str:
    """The AWS principal (its ARN) whose SigV4 signature API Gateway checked on an IAM-authorized route."""
    return str(event["requestContext"]["authorizer"]["iam"]["userArn"])


def _acting_user(event: Event) -> str:
    """Who a refused request acted for: the player the authorizer vouched for, or the IAM caller ("" if neither)."""
    authorizer = event.get("requestContext", {}).get("authorizer") or {}
    return str(authorizer.get("lambda", {}).get("user_id") or authorizer.get("iam", {}).get("userArn") or "")


def source_ip(event: Event) -> str:
    """The client's address as API Gateway saw it."""
    return str(event["requestContext"]["http"]["sourceIp"])
