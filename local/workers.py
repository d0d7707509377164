"""Run functions the way Lambda does: each in worker processes of its own, one event at a time per worker, warm
between invocations, killed and replaced when an invocation times out.

Workers start lazily, on a function's first invocation (a cold start, as on Lambda). When all of a function's workers
are busy, another one starts, up to ``MAX_WORKERS_PER_FUNCTION``; past that, invocations wait for a free worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from local.services import ACCESS_KEY_ID, NO_REDIS_AUTH, SECRET_ACCESS_KEY, Endpoints
from local.specs import FunctionSpec
from local.template import REGION, Template

WORKER_SCRIPT = Path(__file__).with_name("worker.py")
# Enough that concurrent clients do not queue behind one slow invocation (a password hash), few enough for a laptop.
MAX_WORKERS_PER_FUNCTION = 4
# Lambda gives a function's init phase (importing the handler module) 10 s.
INIT_TIMEOUT_SECONDS = 10.0
# Lambda's limit on a synchronous response is 6 MB; the pipe must carry at least that in one line.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024

LogSink = Callable[[str, str], None]


@dataclass(frozen=True)
class FunctionError:
    """An invocation that failed: the handler raised, timed out, crashed or could not start."""

    error_type: str
    message: str

    @property
    def timed_out(self) -> bool:
        """Whether Lambda stopped the invocation at the function's Timeout."""
        return self.error_type == "Sandbox.Timedout"


@dataclass(frozen=True)
class Invocation:
    """What one invocation returned: ``result`` (the handler's return value) or ``error``."""

    result: Any = None
    error: FunctionError | None = None
    request_id: str = ""
    duration_ms: float = 0.0
    init_ms: float | None = None


class Invoker(Protocol):
    """Something that invokes functions by logical id (the workers, or a fake in tests)."""

    async def invoke(self, function_id: str, event: Any) -> Invocation:
        """Invoke one function synchronously and return what it returned."""
        ...


def lambda_environment(spec: FunctionSpec, endpoints: Endpoints) -> dict[str, str]:
    """The environment a worker runs with: the template's variables, Lambda's own, and the local services'."""
    # A variable naming a deployed API (EVENT_API_URL: the Event API's https://<Dns.Http>/event) names the local one.
    environment = {name: endpoints.local_url(value) for name, value in spec.environment.items()}
    environment.update(
        {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "en_US.UTF-8",
            "TZ": "UTC",
            "LAMBDA_TASK_ROOT": str(spec.code_dir),
            "LAMBDA_RUNTIME_DIR": str(WORKER_SCRIPT.parent),
            "_HANDLER": spec.handler,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_SESSION_TOKEN": endpoints.session_token,
            # boto3 sends every service to moto; the product code needs no local-only switch.
            "AWS_ENDPOINT_URL": endpoints.aws_endpoint_url,
            "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(endpoints.secrets_extension_port),
            "REDIS_URL": endpoints.redis_url,
            **NO_REDIS_AUTH,
        }
    )
    return environment


class _WorkerInitError(Exception):
    def __init__(self, error: FunctionError) -> None:
        super().__init__(error.message)
        self.error = error


class Worker:
    """One worker process: a warm Lambda execution environment for one function."""

    def __init__(self, spec: FunctionSpec, process: asyncio.subprocess.Process, log: LogSink) -> None:
        self.spec = spec
        self._process = process
        self._log = log
        self._relay = asyncio.create_task(self._relay_output())
        self.init_ms: float | None = None

    @classmethod
    async def start(cls, spec: FunctionSpec, environment: Mapping[str, str], log: LogSink) -> Worker:
        """Start a worker and wait for its handler to be imported (Lambda's init phase)."""
        stream_id = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        if not spec.code_dir.is_dir():
            raise _WorkerInitError(FunctionError("Runtime.InvalidCodeUri", f"no code folder at {spec.code_dir}"))
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            str(WORKER_SCRIPT),
            spec.handler,
            str(spec.code_dir),
            *(str(path) for path in spec.layer_dirs),
            env={**environment, "AWS_LAMBDA_LOG_STREAM_NAME": stream_id},
            cwd=spec.code_dir,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            limit=MAX_MESSAGE_BYTES,
        )
        worker = cls(spec, process, log)
        try:
            message = await worker._read_message(INIT_TIMEOUT_SECONDS)
        except TimeoutError:
            await worker.stop()
            raise _WorkerInitError(
                FunctionError("Runtime.InitTimeout", f"init did not finish in {INIT_TIMEOUT_SECONDS:.0f} s")
            ) from None
        except asyncio.CancelledError:
            # Nobody waits for this cold start any more (shutdown): no pool knows the worker yet, so it goes now.
            await worker.kill()
            raise
        if message is None or "ready" not in message:
            await worker.stop()
            details = (message or {}).get("init_error") or {}
            raise _WorkerInitError(
                FunctionError(
                    details.get("errorType", "Runtime.ExitError"),
                    details.get("errorMessage", "the worker exited during init"),
                )
            )
        worker.init_ms = float(message["ready"]["init_ms"])
        return worker

    @property
    def alive(self) -> bool:
        """Whether the process is still running."""
        return self._process.returncode is None

    async def invoke(self, event: Any, request_id: str) -> Invocation:
        """Run one event; on timeout the worker is killed (a fresh one replaces it on the next invocation)."""
        timeout = float(self.spec.timeout_seconds)
        started = time.perf_counter()
        request = {
            "request_id": request_id,
            "event": event,
            "deadline_ms": int(time.time() * 1000 + timeout * 1000),
            "invoked_function_arn": self.spec.arn,
        }
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(json.dumps(request).encode() + b"\n")
            await self._process.stdin.drain()
            message = await self._read_message(timeout)
        except TimeoutError:
            await self.kill()
            error = FunctionError("Sandbox.Timedout", f"Task timed out after {timeout:.2f} seconds")
            return Invocation(error=error, request_id=request_id, duration_ms=timeout * 1000)
        except (BrokenPipeError, ConnectionResetError):
            message = None
        except asyncio.CancelledError:
            # Nobody waits for this event any more (shutdown): the worker is in an unknown state.
            await self.kill()
            raise
        duration_ms = (time.perf_counter() - started) * 1000
        if message is None:
            await self.kill()
            code = self._process.returncode
            error = FunctionError("Runtime.ExitError", f"Runtime exited with error: exit status {code}")
            return Invocation(error=error, request_id=request_id, duration_ms=duration_ms)
        if "error" in message:
            details = message["error"]
            error = FunctionError(details.get("errorType", "Error"), details.get("errorMessage", ""))
            return Invocation(error=error, request_id=request_id, duration_ms=duration_ms)
        return Invocation(result=message["result"], request_id=request_id, duration_ms=duration_ms)

    async def _read_message(self, timeout: float) -> dict[str, Any] | None:
        assert self._process.stdout is not None
        line = await asyncio.wait_for(self._process.stdout.readline(), timeout)
        return json.loads(line) if line else None

    async def _relay_output(self) -> None:
        assert self._process.stderr is not None
        while True:
            try:
                line = await self._process.stderr.readline()
            except ValueError:  # a line longer than the limit: relay what there is
                line = await self._process.stderr.read(MAX_MESSAGE_BYTES)
            if not line:
                return
            self._log(self.spec.logical_id, line.decode(errors="replace").rstrip("\n"))

    async def kill(self) -> None:
        """Kill the worker's whole process group at once (what Lambda does to a timed-out sandbox)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        await self._process.wait()
        await self._finish_relay()

    async def stop(self, grace_seconds: float = 2.0) -> None:
        """Let the worker finish (its request stream ends), then kill what is left."""
        if self._process.stdin is not None and not self._process.stdin.is_closing():
            self._process.stdin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._process.wait(), grace_seconds)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        await self._process.wait()
        await self._finish_relay()

    async def _finish_relay(self) -> None:
        try:
            await asyncio.wait_for(self._relay, 1.0)
        except (TimeoutError, asyncio.CancelledError):
            self._relay.cancel()


class FunctionPool:
    """The workers of one function: reuse an idle one, start another while under the cap, else wait."""

    def __init__(
        self,
        spec: FunctionSpec,
        environment: Mapping[str, str],
        log: LogSink,
        max_workers: int = MAX_WORKERS_PER_FUNCTION,
    ) -> None:
        self.spec = spec
        self._environment = dict(environment)
        self._log = log
        self._max_workers = max_workers
        self._idle: list[Worker] = []
        self._count = 0  # workers running or starting
        self._changed = asyncio.Condition()
        self._workers: set[Worker] = set()

    async def invoke(self, event: Any) -> Invocation:
        """Invoke the function once, cold-starting a worker if none is free."""
        request_id = str(uuid.uuid4())
        try:
            worker, cold = await self._acquire()
        except _WorkerInitError as exc:
            self._log(self.spec.logical_id, f"init failed: {exc.error.error_type}: {exc.error.message}")
            return Invocation(error=exc.error, request_id=request_id)
        try:
            invocation = await worker.invoke(event, request_id)
        finally:
            await self._release(worker)
        if invocation.error and invocation.error.timed_out:
            self._log(self.spec.logical_id, f"{request_id} {invocation.error.message}")
        if cold:
            invocation = Invocation(
                invocation.result, invocation.error, invocation.request_id, invocation.duration_ms, worker.init_ms
            )
        return invocation

    async def _acquire(self) -> tuple[Worker, bool]:
        async with self._changed:
            while True:
                while self._idle:
                    worker = self._idle.pop()  # the most recently used one: the warmest
                    if worker.alive:
                        return worker, False
                    self._forget(worker)
                if self._count < self._max_workers:
                    self._count += 1
                    break
                await self._changed.wait()
        try:
            worker = await Worker.start(self.spec, self._environment, self._log)
        except BaseException:
            async with self._changed:
                self._count -= 1
                self._changed.notify()
            raise
        self._workers.add(worker)
        return worker, True

    async def _release(self, worker: Worker) -> None:
        async with self._changed:
            if worker.alive:
                self._idle.append(worker)
            else:
                self._forget(worker)
            self._changed.notify()

    def _forget(self, worker: Worker) -> None:
        self._workers.discard(worker)
        self._count -= 1

    async def stop(self) -> None:
        """Stop every worker of this function."""
        workers = list(self._workers)
        self._workers.clear()
        self._idle.clear()
        await asyncio.gather(*(worker.stop() for worker in workers), return_exceptions=True)


class Workers:
    """The pools of every function of a template, created on first use; an :class:`Invoker`."""

    def __init__(self, template: Template, endpoints: Endpoints, log: LogSink) -> None:
        self._template = template
        self._endpoints = endpoints
        self._log = log
        self._pools: dict[str, FunctionPool] = {}

    def pool(self, function_id: str) -> FunctionPool:
        """The pool of one function (raises TemplateError for an unknown logical id)."""
        if function_id not in self._pools:
            spec = self._template.function(function_id, self._endpoints.identities)
            self._pools[function_id] = FunctionPool(spec, lambda_environment(spec, self._endpoints), self._log)
        return self._pools[function_id]

    async def invoke(self, function_id: str, event: Any) -> Invocation:
        """Invoke a function of the template by logical id."""
        return await self.pool(function_id).invoke(event)

    async def stop(self) -> None:
        """Stop every worker of every function."""
        await asyncio.gather(*(pool.stop() for pool in self._pools.values()), return_exceptions=True)
