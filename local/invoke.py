"""``python -m local.invoke <LogicalId> <event-file>`` (``make invoke``): the Docker-free twin of
``sam local invoke -e``. Runs one function of template.yaml on one event, in a worker with the template's environment,
and prints the handler's result as JSON on stdout (the function's logs go to stderr).

With a local stack running (``python -m local``), the function uses that stack's moto, Redis and Secrets extension;
otherwise they are started for the duration of the call (empty) and stopped afterwards. ``REDIS_URL``, when set, is
the function's Redis either way (used as it is: nothing in it is cleared), e.g. to rebuild the board of a Redis that
came back empty: ``REDIS_URL=redis://... python -m local.invoke RebuildBoardFunction events/rebuild_board.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from local.event_api import event_api_address, local_urls
from local.services import (
    Endpoints,
    LocalServices,
    ServiceError,
    cache_identities,
    read_running_stack,
    state_dir,
)
from local.template import Template, TemplateError
from local.workers import FunctionPool, Invocation, lambda_environment

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class UsageError(Exception):
    """The command line names an unknown function or an unreadable event."""


def log(message: str) -> None:
    """Progress and function logs go to stderr; stdout carries only the result."""
    print(message, file=sys.stderr, flush=True)


def read_event(path: str) -> Any:
    """The event from a JSON file (``-`` reads stdin)."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except FileNotFoundError:
        raise UsageError(f"no event file at {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a folder, not an event file") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON: {exc}") from exc


def check_function(template: Template, function_id: str) -> None:
    """Fail with the list of valid logical ids if ``function_id`` is not a function of the template."""
    valid = template.function_ids()
    if function_id not in valid:
        raise UsageError(
            f"{function_id!r} is not a function of {template.path.name}; valid LogicalIds: {', '.join(valid)}"
        )


async def invoke_once(template: Template, function_id: str, event: Any, endpoints: Endpoints) -> Invocation:
    """Run the function once in a fresh worker against ``endpoints`` and stop the worker."""
    spec = template.function(function_id, endpoints.identities)
    pool = FunctionPool(spec, lambda_environment(spec, endpoints), lambda _, line: log(line), max_workers=1)
    try:
        return await pool.invoke(event)
    finally:
        await pool.stop()


def with_redis(template: Template, endpoints: Endpoints, redis_url: str) -> Endpoints:
    """``endpoints`` with another Redis: the functions' REDIS_URL and the template's cache endpoints point at it."""
    identities = endpoints.identities | cache_identities(template, redis_url)
    return dataclasses.replace(endpoints, redis_url=redis_url, identities=identities)


def run(template: Template, function_id: str, event: Any) -> Invocation:
    """Invoke against the running local stack if there is one, else against services started just for this."""
    running = read_running_stack(state_dir(template) / "stack.json")
    redis_url = os.environ.get("REDIS_URL", "")
    if running is not None:
        log(f"using the running local stack (pid {running.pid})")
        if redis_url:
            log(f"using REDIS_URL {redis_url} instead of the stack's Redis")
            running = with_redis(template, running, redis_url)
        return asyncio.run(invoke_once(template, function_id, event, running))
    # With REDIS_URL, the services use that Redis as it is (clear_redis=False): an invocation must not wipe it.
    services = LocalServices(template, state_dir(template), log, clear_redis=False)
    try:
        endpoints = services.start()
        event_api = template.event_api(endpoints.identities)
        if event_api is not None:
            # No Event API runs here, but a publish to it must fail locally rather than reach AWS.
            endpoints.url_rewrites |= local_urls(event_api, *event_api_address())
        return asyncio.run(invoke_once(template, function_id, event, endpoints))
    finally:
        services.stop()


def report(invocation: Invocation) -> str:
    """Lambda's REPORT log line."""
    line = f"REPORT RequestId: {invocation.request_id}\tDuration: {invocation.duration_ms:.2f} ms"
    if invocation.init_ms is not None:
        line += f"\tInit Duration: {invocation.init_ms:.2f} ms"
    return line


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit 0 with the result on stdout, 1 if the function failed, 2 on a usage error."""
    parser = argparse.ArgumentParser(prog="python -m local.invoke", description="Run one function on one event.")
    parser.add_argument("function_id", metavar="LogicalId", help="the function's logical id in the template")
    parser.add_argument("event_file", metavar="event-file", help="a JSON event, e.g. events/login.json (- = stdin)")
    parser.add_argument("--template", type=Path, default=PROJECT_ROOT / "template.yaml")
    arguments = parser.parse_args(argv)
    try:
        template = Template(arguments.template)
        check_function(template, arguments.function_id)
        event = read_event(arguments.event_file)
        invocation = run(template, arguments.function_id, event)
    except UsageError as exc:
        print(f"local.invoke: {exc}", file=sys.stderr)
        return 2
    except (TemplateError, ServiceError) as exc:
        print(f"local.invoke: {exc}", file=sys.stderr)
        return 1
    log(report(invocation))
    if invocation.error is not None:
        # What Lambda returns for a failed invocation.
        print(json.dumps({"errorMessage": invocation.error.message, "errorType": invocation.error.error_type}))
        return 1
    print(json.dumps(invocation.result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
