"""``python -m local`` (``make run``): serve template.yaml's stack on localhost, without Docker and without AWS.

Starts moto's server with the template's tables, queues and secrets, the Secrets extension emulator and Redis (all
empty at each start), then the HTTP API on http://127.0.0.1:3000 (``LOCAL_API_PORT``), the Event API (AppSync
Events) on ws://127.0.0.1:3001/event/realtime and http://127.0.0.1:3001/event (``LOCAL_EVENT_API_PORT``) when the
template has one, the SQS event source mappings (pollers that feed each queue's consumer function) and the EventBridge
rules of the ``Schedule`` events (``LOCAL_SCHEDULE_SECONDS_PER_MINUTE`` speeds them up). Functions start lazily, on
their first request, batch or schedule. Ctrl-C or SIGTERM closes every WebSocket and stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

from aiohttp import web

from local.event_api import EventApi, event_api_address, local_urls
from local.event_sources import EventSourceMappings, SqsClient, poller_count
from local.gateway import Gateway
from local.plumbing import LISTEN_BACKLOG
from local.schedules import (
    EVENT_TIME_FORMAT,
    SECONDS_PER_MINUTE,
    ScheduleClock,
    ScheduleRunner,
    Schedules,
    schedule_seconds_per_minute,
)
from local.services import (
    ACCESS_KEY_ID,
    SECRET_ACCESS_KEY,
    Endpoints,
    LocalServices,
    ServiceError,
    read_running_stack,
    state_dir,
)
from local.specs import AWS_IAM, EventApiSpec, SqsEventSource
from local.template import Template, TemplateError
from local.workers import MAX_WORKERS_PER_FUNCTION, Workers

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_API_PORT = 3000


def say(message: str) -> None:
    """Print a line on the console straight away (the runtime's output is often piped)."""
    # A pipe reader that went away (`make run | tee` and Ctrl-C) must not stop the runtime from cleaning up.
    with contextlib.suppress(BrokenPipeError):
        print(message, flush=True)


def relay_function_output(function_id: str, line: str) -> None:
    """Show a function's log line, prefixed with its logical id."""
    say(f"[{function_id}] {line}")


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options (everything has a default; ports come from the environment)."""
    parser = argparse.ArgumentParser(
        prog="python -m local",
        description="Serve template.yaml's stack on this machine, without Docker and without AWS.",
        epilog="Environment: LOCAL_API_PORT (3000), LOCAL_API_HOST (127.0.0.1), LOCAL_EVENT_API_PORT (3001), "
        "LOCAL_EVENT_API_HOST (127.0.0.1), REDIS_URL (else a Redis of its own), LOCAL_STATE_DIR (.local), "
        "LOCAL_SCHEDULE_SECONDS_PER_MINUTE (60: the real seconds a minute of the Schedule events lasts).",
    )
    parser.add_argument("--template", type=Path, default=PROJECT_ROOT / "template.yaml", help="the SAM template")
    parser.add_argument(
        "--parameter-overrides", nargs="*", default=[], metavar="KEY=VALUE", help="template parameters to override"
    )
    return parser.parse_args(argv)


def parameter_overrides(pairs: list[str]) -> dict[str, str]:
    """``["LogLevel=DEBUG"]`` -> ``{"LogLevel": "DEBUG"}``."""
    overrides: dict[str, str] = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator:
            raise TemplateError(f"--parameter-overrides takes KEY=VALUE pairs, not {pair!r}")
        overrides[key] = value
    return overrides


def write_state(path: Path, endpoints: Endpoints) -> None:
    """Write the state file atomically, so a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(endpoints.to_json())
    partial.replace(path)


def remove_state(path: Path) -> None:
    """Remove the state file if this process wrote it."""
    current = read_running_stack(path)
    if current is None or current.pid == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def describe(
    template: Template, endpoints: Endpoints, schedules: Schedules, state_file: Path, redis_started: bool
) -> str:
    """What the runtime serves, for the console."""
    lines = [f"HTTP API     {endpoints.api_url}"]
    routes = template.http_routes()
    width = max((len(route.route_key) for route in routes), default=0)
    authorizers = template.http_authorizers(endpoints.identities)
    for route in routes:
        line = f"  {route.route_key:<{width}}  -> {route.function_id}"
        if route.authorizer == AWS_IAM:
            line += "  (AWS_IAM: SigV4 with the local credentials)"
        elif route.authorizer:
            authorizer = authorizers[route.authorizer]
            line += f"  (authorizer {authorizer.function_id}, cached {authorizer.ttl_seconds} s)"
        lines.append(line)
    if (template.root / "web").is_dir():
        lines.append(f"  {'GET /':<{width}}  -> web/ (static files)")
    api = template.event_api(endpoints.identities)
    if api is not None:
        lines += describe_event_api(api, endpoints)
    lines += describe_queues(template, endpoints)
    lines += describe_schedules(schedules)
    caches = template.cache_resources()
    lines += [
        f"Redis        {endpoints.redis_url}"
        + ("  (started here, empty)" if redis_started else "  (REDIS_URL)")
        + (f"  = {', '.join(caches)}, REDIS_URL of every function" if caches else ""),
        f"AWS (moto)   {endpoints.aws_endpoint_url}  (AWS_ENDPOINT_URL of every function)",
        f"Secrets ext. http://localhost:{endpoints.secrets_extension_port}/secretsmanager/get",
        f"State        {state_file}",
    ]
    if template.placeholder_resources():
        count = len(template.placeholder_resources())
        lines.append(f"Not local    {count} network and cache-user resources: placeholder ids; VpcConfig is ignored")
    lines += [
        f"Functions start on their first request, batch or schedule (cold start), up to {MAX_WORKERS_PER_FUNCTION} "
        "workers each.",
        "Ctrl-C to stop.",
    ]
    return "\n".join(lines)


def describe_event_api(api: EventApiSpec, endpoints: Endpoints) -> list[str]:
    """The Event API: its endpoints, auth modes, namespaces with their handlers, and the authorizer, for the console."""
    lines = [
        f"Event API    {endpoints.live_url}  ({api.logical_id}; connect {', '.join(api.connection_auth)})",
        f"  publish    {endpoints.live_http_url}  (what functions get for {api.http_url})",
    ]
    width = max((len(name) for name in api.namespaces), default=0)
    for namespace in api.namespaces.values():
        line = f"  /{namespace.name:<{width}}  publish {', '.join(namespace.publish_auth)}"
        line += f", subscribe {', '.join(namespace.subscribe_auth)}"
        for kind, handler in (("onPublish", namespace.on_publish), ("onSubscribe", namespace.on_subscribe)):
            if handler is not None:
                line += f", {kind} -> {handler.function_id} ({handler.invoke_type})"
        lines.append(line)
    if api.authorizer is not None:
        lines.append(
            f"  AWS_LAMBDA -> {api.authorizer.function_id}  (cached {api.authorizer.ttl_seconds} s unless ttlOverride)"
        )
    lines.append(
        f"  usage      {endpoints.live_http_url.removesuffix('/event')}/_local/usage  (local only: AppSync's meter)"
    )
    return lines


def describe_queues(template: Template, endpoints: Endpoints) -> list[str]:
    """Each queue with its settings and its consumers, for the console."""
    queues = template.queues(endpoints.identities)
    if not queues:
        return []
    sources = template.sqs_event_sources(endpoints.identities)
    logical_id_by_arn = {queue.arn: queue.logical_id for queue in queues}
    width = max(len(queue.logical_id) for queue in queues)
    lines = ["SQS queues"]
    for queue in queues:
        settings = f"visibility {queue.visibility_timeout_seconds} s"
        if queue.dead_letter_arn:
            dead_letters = logical_id_by_arn.get(queue.dead_letter_arn, queue.dead_letter_arn)
            settings += f", to {dead_letters} after {queue.max_receive_count} receives"
        lines.append(f"  {queue.logical_id:<{width}}  {queue.url}  ({settings})")
        consumers = [source for source in sources if source.queue.logical_id == queue.logical_id]
        lines += [f"    -> {describe_event_source(source)}" for source in consumers]
    return lines


def describe_event_source(source: SqsEventSource) -> str:
    """One consumer of a queue: the function and how Lambda would batch for it."""
    text = f"{source.function_id}  (batch {source.batch_size}, window {source.batching_window_seconds} s"
    if source.report_batch_item_failures:
        text += ", ReportBatchItemFailures"
    if not source.enabled:
        return text + ", disabled)"
    concurrency = poller_count(source)
    return text + f", up to {concurrency} batch{'es' if concurrency > 1 else ''} at once)"


def describe_schedules(schedules: Schedules) -> list[str]:
    """Each Schedule event's rule with its function and when it first fires, for the console."""
    if not schedules.runners:
        return []
    clock = schedules.clock
    header = "Schedules    EventBridge rules, UTC"
    if clock.sped_up:
        header += f", sped up: a minute lasts {clock.seconds_per_minute:g} s (LOCAL_SCHEDULE_SECONDS_PER_MINUTE)"
    width = max(len(runner.rule.schedule.expression) for runner in schedules.runners)
    return [header] + [
        f"  {runner.rule.schedule.expression:<{width}}  -> {describe_schedule(runner)}" for runner in schedules.runners
    ]


def describe_schedule(runner: ScheduleRunner) -> str:
    """One rule's function, event and first firing."""
    rule = runner.rule
    text = f"{rule.function_id}  ({rule.event_name}"
    if rule.input is not None:
        text += ", constant Input"
    if not rule.enabled:
        return text + ", disabled)"
    if runner.next_moment is None:
        return text + ", never fires again)"
    return text + f", first at {runner.next_moment:{EVENT_TIME_FORMAT}})"


async def listen(runner: web.AppRunner, host: str, port: int, variable: str) -> None:
    """Start serving ``runner`` on ``host:port``."""
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, backlog=LISTEN_BACKLOG).start()
    except OSError as exc:
        raise ServiceError(f"cannot listen on {host}:{port} ({exc.strerror}); set {variable}") from exc


async def serve(
    template: Template, endpoints: Endpoints, host: str, port: int, redis_started: bool, seconds_per_minute: float
) -> None:
    """Serve the APIs over the started services until SIGINT, SIGTERM or SIGHUP; then close the WebSockets and stop the
    pollers, the schedules and the workers."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signal_number, stop.set)

    state_file = state_dir(template) / "stack.json"
    event_api = template.event_api(endpoints.identities)
    live_host, live_port = event_api_address()
    if event_api is not None:
        # Known before any worker exists: their environment (EVENT_API_URL) points at the local Event API.
        endpoints.live_url = f"ws://{live_host}:{live_port}/event/realtime"
        endpoints.live_http_url = f"http://{live_host}:{live_port}/event"
        endpoints.url_rewrites |= local_urls(event_api, live_host, live_port)
    workers = Workers(template, endpoints, relay_function_output)
    runner: web.AppRunner | None = None
    live_runner: web.AppRunner | None = None
    mappings: EventSourceMappings | None = None
    schedules: Schedules | None = None
    try:
        for function_id in template.function_ids():
            workers.pool(function_id)  # resolves every function now, so template errors show at start
        sources = template.sqs_event_sources(endpoints.identities)
        rules = template.schedule_rules(endpoints.identities)
        gateway = Gateway(
            template.http_routes(),
            template.http_authorizers(endpoints.identities),
            workers,
            web_dir=template.root / "web",
            say=say,
        )
        runner = web.AppRunner(gateway.app(), access_log=None)
        await listen(runner, host, port, "LOCAL_API_PORT")
        endpoints.api_url = f"http://{host}:{port}"
        if event_api is not None:
            live_runner = web.AppRunner(EventApi(event_api, workers, say=say).app(), access_log=None)
            await listen(live_runner, live_host, live_port, "LOCAL_EVENT_API_PORT")
        sqs = SqsClient(endpoints.aws_endpoint_url, ACCESS_KEY_ID, SECRET_ACCESS_KEY, endpoints.session_token)
        mappings = EventSourceMappings(sources, sqs, workers, say)
        mappings.start()
        schedules = Schedules(rules, ScheduleClock(seconds_per_minute), workers, say)
        schedules.start()
        write_state(state_file, endpoints)
        say(describe(template, endpoints, schedules, state_file, redis_started))
        await stop.wait()
        say("Stopping: HTTP API, Event API, SQS pollers, schedules, workers, Redis, moto...")
    finally:
        remove_state(state_file)
        if runner is not None:
            await runner.cleanup()
        if live_runner is not None:
            await live_runner.cleanup()  # closes every WebSocket
        if mappings is not None:
            await mappings.stop()
        if schedules is not None:
            await schedules.stop()
        await workers.stop()


def run(template: Template, host: str, port: int, seconds_per_minute: float = SECONDS_PER_MINUTE) -> None:
    """Start the services, serve until told to stop, and stop everything that was started."""
    running = read_running_stack(state_dir(template) / "stack.json")
    if running is not None:
        raise ServiceError(f"a local stack is already running (pid {running.pid}, {running.api_url or 'starting'})")
    services = LocalServices(template, state_dir(template), say)
    try:
        # Started from the main thread before any other thread exists, so they die with this process even on kill -9.
        endpoints = services.start()
        redis_started = "redis" in services.child_pids()
        asyncio.run(serve(template, endpoints, host, port, redis_started, seconds_per_minute))
    finally:
        services.stop()
    say("Stopped.")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m local``."""
    arguments = parse_arguments(argv)
    host = os.environ.get("LOCAL_API_HOST", "127.0.0.1")
    port = int(os.environ.get("LOCAL_API_PORT", DEFAULT_API_PORT))
    try:
        seconds_per_minute = schedule_seconds_per_minute()
        template = Template(arguments.template, parameter_overrides(arguments.parameter_overrides))
        say(f"Local runtime for {template.path.name}: moto, Redis and every function on this machine (no Docker).")
        run(template, host, port, seconds_per_minute)
    except (TemplateError, ServiceError) as exc:
        print(f"local: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:  # Ctrl-C while starting, before the signal handlers were in place
        say("Stopped.")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
