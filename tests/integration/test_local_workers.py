"""Worker processes run handlers the way Lambda does: warm, isolated, one event at a time, killed on timeout."""

import asyncio
import contextlib
import json
import os
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from local.processes import descendants, pid_alive
from local.services import Endpoints
from local.specs import FunctionSpec, ResourceIdentity
from local.workers import FunctionPool, Invocation, lambda_environment

HANDLER = """
import json, logging, os, sys, time

import helper  # from the layer folder

INVOCATIONS = 0
print("init: importing the handler module")


def lambda_handler(event, context):
    global INVOCATIONS
    INVOCATIONS += 1
    print('{"result": "a print that looks like the protocol"}')
    logging.getLogger().warning("warned")
    action = event.get("action")
    if action == "sleep":
        time.sleep(event["seconds"])
    elif action == "raise":
        raise KeyError("no such thing")
    elif action == "exit":
        os._exit(3)
    return {
        "pid": os.getpid(),
        "invocations": INVOCATIONS,
        "layer": helper.NAME,
        "sys_path": sys.path[:2],
        "cwd": os.getcwd(),
        "environ": dict(os.environ),
        "context": {
            "function_name": context.function_name,
            "function_version": context.function_version,
            "invoked_function_arn": context.invoked_function_arn,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "aws_request_id": context.aws_request_id,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "remaining_ms": context.get_remaining_time_in_millis(),
        },
    }
"""

ENDPOINTS = Endpoints(
    aws_endpoint_url="http://127.0.0.1:5999",
    redis_url="redis://127.0.0.1:6999/0",
    secrets_extension_port=2773,
    session_token="token-for-the-extension",
    identities={"Table": ResourceIdentity("t")},
)


def function_spec(tmp_path: Path, handler: str = "app.lambda_handler", timeout_seconds: int = 5) -> FunctionSpec:
    code_dir, layer_dir = tmp_path / "code", tmp_path / "layer"
    code_dir.mkdir(exist_ok=True)
    layer_dir.mkdir(exist_ok=True)
    (code_dir / "app.py").write_text(textwrap.dedent(HANDLER))
    (layer_dir / "helper.py").write_text('NAME = "from the layer"\n')
    return FunctionSpec(
        logical_id="EchoFunction",
        name="leaderboard-local-EchoFunction",
        arn="arn:aws:lambda:us-east-1:123456789012:function:leaderboard-local-EchoFunction",
        code_dir=code_dir,
        handler=handler,
        layer_dirs=(layer_dir,),
        timeout_seconds=timeout_seconds,
        memory_mb=512,
        runtime="python3.13",
        environment={
            "TABLE_NAME": "from-the-template",
            "REDIS_URL": "rediss://the-deployed-cache:6379",
            "REDIS_IAM_USER": "leaderboard-app",
            "CACHE_NAME": "the-deployed-cache",
        },
    )


class Console:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __call__(self, function_id: str, line: str) -> None:
        self.lines.append((function_id, line))

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


def with_pool(
    spec: FunctionSpec, console: Console, use: Callable[[FunctionPool], Awaitable[Any]], max_workers: int = 4
) -> Any:
    async def run() -> Any:
        pool = FunctionPool(spec, lambda_environment(spec, ENDPOINTS), console, max_workers=max_workers)
        try:
            return await use(pool)
        finally:
            await pool.stop()
            await asyncio.sleep(0.05)  # let the log relay deliver the last lines

    return asyncio.run(run())


def test_a_handler_gets_lambdas_context_environment_and_sys_path(tmp_path: Path) -> None:
    spec = function_spec(tmp_path)

    invocation: Invocation = with_pool(spec, Console(), lambda pool: pool.invoke({}))

    assert invocation.error is None
    result = invocation.result
    assert result["sys_path"] == [str(spec.code_dir), str(spec.layer_dirs[0])]
    assert (result["layer"], result["cwd"]) == ("from the layer", str(spec.code_dir))
    context = result["context"]
    assert context["function_name"] == "leaderboard-local-EchoFunction"
    assert context["invoked_function_arn"] == spec.arn
    assert (context["function_version"], context["memory_limit_in_mb"]) == ("$LATEST", "512")
    assert context["aws_request_id"] == invocation.request_id
    assert context["log_group_name"] == "/aws/lambda/leaderboard-local-EchoFunction"
    assert "[$LATEST]" in context["log_stream_name"]
    assert 4000 < context["remaining_ms"] <= 5000
    environ = result["environ"]
    assert environ["TABLE_NAME"] == "from-the-template"
    # The local services replace whatever the template points at.
    assert environ["REDIS_URL"] == "redis://127.0.0.1:6999/0"
    assert environ["REDIS_IAM_USER"] == environ["CACHE_NAME"] == ""  # the local Redis takes no IAM auth
    assert environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5999"
    assert environ["PARAMETERS_SECRETS_EXTENSION_HTTP_PORT"] == "2773"
    assert environ["AWS_SESSION_TOKEN"] == "token-for-the-extension"
    assert environ["AWS_REGION"] == environ["AWS_DEFAULT_REGION"] == "us-east-1"
    assert environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "512"
    assert environ["AWS_ACCESS_KEY_ID"]
    assert environ["AWS_SECRET_ACCESS_KEY"]


def test_prints_and_logs_reach_the_console_without_corrupting_the_result(tmp_path: Path) -> None:
    console = Console()

    invocation: Invocation = with_pool(function_spec(tmp_path), console, lambda pool: pool.invoke({}))

    assert invocation.result["invocations"] == 1
    assert {function_id for function_id, _ in console.lines} == {"EchoFunction"}
    assert "init: importing the handler module" in console.text()
    assert '{"result": "a print that looks like the protocol"}' in console.text()
    assert "[WARNING]\t" in console.text()
    assert f"{invocation.request_id}\twarned" in console.text()


def test_a_worker_stays_warm_between_invocations(tmp_path: Path) -> None:
    async def twice(pool: FunctionPool) -> list[Invocation]:
        return [await pool.invoke({}), await pool.invoke({})]

    first, second = with_pool(function_spec(tmp_path), Console(), twice)

    assert first.result["pid"] == second.result["pid"]
    assert (first.result["invocations"], second.result["invocations"]) == (1, 2)
    assert first.init_ms is not None
    assert second.init_ms is None


def test_a_handler_error_is_returned_and_the_worker_survives_it(tmp_path: Path) -> None:
    console = Console()

    async def fail_then_succeed(pool: FunctionPool) -> list[Invocation]:
        return [await pool.invoke({}), await pool.invoke({"action": "raise"}), await pool.invoke({})]

    before, failed, after = with_pool(function_spec(tmp_path), console, fail_then_succeed)

    assert failed.error is not None
    assert (failed.error.error_type, failed.error.message) == ("KeyError", "'no such thing'")
    assert before.result["pid"] == after.result["pid"]
    assert "[ERROR] KeyError: 'no such thing'" in console.text()
    assert "Traceback" in console.text()


def test_a_timed_out_invocation_kills_the_worker_and_the_next_one_starts_fresh(tmp_path: Path) -> None:
    console = Console()

    async def time_out(pool: FunctionPool) -> tuple[Invocation, float, Invocation, Invocation]:
        before = await pool.invoke({})
        started = time.monotonic()
        timed_out = await pool.invoke({"action": "sleep", "seconds": 30})
        return before, time.monotonic() - started, timed_out, await pool.invoke({})

    before, elapsed, timed_out, after = with_pool(function_spec(tmp_path, timeout_seconds=1), console, time_out)

    assert timed_out.error is not None
    assert timed_out.error.timed_out
    assert timed_out.error.message == "Task timed out after 1.00 seconds"
    assert 1 <= elapsed < 3
    assert after.result["pid"] != before.result["pid"]
    assert after.result["invocations"] == 1
    assert "Task timed out" in console.text()


def test_a_worker_that_exits_is_an_error_and_is_replaced(tmp_path: Path) -> None:
    async def exit_then_invoke(pool: FunctionPool) -> list[Invocation]:
        return [await pool.invoke({"action": "exit"}), await pool.invoke({})]

    exited, after = with_pool(function_spec(tmp_path), Console(), exit_then_invoke)

    assert exited.error is not None
    assert exited.error.error_type == "Runtime.ExitError"
    assert "exit status 3" in exited.error.message
    assert after.error is None


def test_busy_workers_make_more_workers_up_to_the_cap(tmp_path: Path) -> None:
    sleep = {"action": "sleep", "seconds": 1}

    async def concurrently(pool: FunctionPool) -> tuple[float, list[Invocation]]:
        await pool.invoke({})  # a warm worker first, so the timing below is about concurrency, not cold starts
        started = time.monotonic()
        invocations = await asyncio.gather(*(pool.invoke(sleep) for _ in range(4)))
        return time.monotonic() - started, list(invocations)

    elapsed, invocations = with_pool(function_spec(tmp_path), Console(), concurrently, max_workers=2)

    assert all(invocation.error is None for invocation in invocations)
    assert len({invocation.result["pid"] for invocation in invocations}) == 2
    # Two at a time: about two rounds of one second, not four (one worker) nor one (no cap).
    assert 2 <= elapsed < 3.5


def test_a_cold_start_nobody_waits_for_any_more_leaves_no_process_behind(tmp_path: Path) -> None:
    spec = function_spec(tmp_path, handler="slow_init.lambda_handler")
    (spec.code_dir / "slow_init.py").write_text("import time\n\ntime.sleep(30)\nlambda_handler = print\n")

    running_before = descendants(os.getpid())  # the session's own servers (a Redis Cluster) are no worker

    async def cancel_during_init(pool: FunctionPool) -> set[int]:
        invoking = asyncio.create_task(pool.invoke({}))
        await asyncio.sleep(0.5)
        starting = descendants(os.getpid()) - running_before
        invoking.cancel()  # Ctrl-C while a schedule or a poller waits for this cold start
        with contextlib.suppress(asyncio.CancelledError):
            await invoking
        return starting

    starting = with_pool(spec, Console(), cancel_during_init)

    assert starting  # the worker was importing its handler
    assert [pid for pid in starting if pid_alive(pid)] == []


@pytest.mark.parametrize(
    ("handler", "error_type", "message"),
    [
        ("missing_module.lambda_handler", "Runtime.ImportModuleError", "Unable to import module 'missing_module'"),
        ("app.no_such_function", "Runtime.HandlerNotFound", "Handler 'no_such_function' missing on module 'app'"),
    ],
)
def test_a_handler_that_cannot_be_loaded_is_an_init_error(
    tmp_path: Path, handler: str, error_type: str, message: str
) -> None:
    invocation: Invocation = with_pool(function_spec(tmp_path, handler=handler), Console(), lambda p: p.invoke({}))

    assert invocation.error is not None
    assert invocation.error.error_type == error_type
    assert message in invocation.error.message


def test_the_lambda_environment_is_all_strings_and_json_safe(tmp_path: Path) -> None:
    environment = lambda_environment(function_spec(tmp_path), ENDPOINTS)

    assert all(isinstance(value, str) for value in environment.values())
    assert json.loads(json.dumps(environment)) == environment
    assert environment["_HANDLER"] == "app.lambda_handler"
    assert environment["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.13"
