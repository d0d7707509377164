"""Child processes of the local runtime: free ports, start in a group of their own, stop the whole group.

Each child (moto, Redis, every worker) leads its own process group, so Ctrl-C in the terminal reaches only the runtime,
which then stops the children in order, and stopping a child also stops anything that child started.

``local_runtime`` runs the runtime itself as a child, on free ports, for a block: the harness of the e2e and fault
tests and of the load test.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
# A local runtime that a test session or a load test starts serves many players, all from 127.0.0.1: the per-address
# limits on registrations and reads, there to stop one client, are lifted (template parameters; test_limits_api.py
# tests them on a runtime of its own). A deployed stack under the same needs them too (`sam deploy
# --parameter-overrides ...`).
LIFTED_ADDRESS_LIMITS = ["RegistrationsPerAddressPerHour=100000", "ReadsPerAddressPerMinute=100000"]
RUNTIME_START_SECONDS = 90.0
RUNTIME_STOP_SECONDS = 30.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def start_process(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``args`` as the leader of a new process group, output to ``log_path`` (or nowhere).

    On Linux the child also gets SIGTERM if this process dies without stopping it (``kill -9``). Call it from the
    main thread, before other threads exist: the signal follows the thread that started the child.
    """
    output = log_path.open("ab") if log_path else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            list(args),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_terminate_with(os.getpid()) if sys.platform == "linux" else None,
        )
    finally:
        if log_path and not isinstance(output, int):
            output.close()


def _terminate_with(parent_pid: int) -> Callable[[], None]:
    """In the child, before exec: ask Linux for SIGTERM when the parent dies (``PR_SET_PDEATHSIG``)."""

    def set_parent_death_signal() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return set_parent_death_signal


def stop_process_group(pid: int, grace_seconds: float = 5.0) -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL whatever is left after ``grace_seconds``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and _group_alive(pid):
        _reap(pid)
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    _reap(pid)


def stop_process(process: subprocess.Popen[bytes], grace_seconds: float = 5.0) -> None:
    """Stop a child started by :func:`start_process` and everything in its group, and reap it."""
    stop_process_group(process.pid, grace_seconds)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_seconds)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (and is not a zombie)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return _signal_zero(pid)
    return state != "Z"


def descendants(pid: int) -> set[int]:
    """Ids of every live descendant of ``pid`` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reap(pid: int) -> None:
    # Our own children linger as zombies (and keep their group "alive") until waited for.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _signal_zero(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PortTaken(RuntimeError):
    """A port chosen free was taken before the runtime bound it (a free port is only free until someone binds it)."""


def start_serving[Runtime: RuntimeProcess](
    make: Callable[[], Runtime], timeout_seconds: float = 90.0, attempts: int = 3
) -> Runtime:
    """Start the runtime ``make`` starts (on ports it chooses) and wait until it serves; start it again, on fresh
    ports, if one was taken meanwhile."""
    for attempt in range(1, attempts + 1):
        runtime = make()
        try:
            runtime.wait_until_serving(timeout_seconds)
        except PortTaken:
            if attempt == attempts:
                raise
        else:
            return runtime
    raise AssertionError("unreachable")


class RuntimeProcess:
    """``python -m local`` as a child process in a session of its own, started and stopped as a user would: the
    harness of the e2e and integration tests and of the benchmarks."""

    def __init__(
        self, state_dir: Path, log: Path, environment: Mapping[str, str], arguments: Sequence[str] = ()
    ) -> None:
        self.state_dir, self.log = state_dir, log
        state_dir.mkdir(parents=True, exist_ok=True)
        self._started = time.time()
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "local", *arguments],
                cwd=Path(__file__).resolve().parents[1],
                env={**environment, "LOCAL_STATE_DIR": str(state_dir)},
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def state_file(self) -> Path:
        return self.state_dir / "stack.json"

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else "(no output)"

    def wait_until_serving(self, timeout_seconds: float = 90.0) -> None:
        """Wait until it wrote its stack.json (everything listens by then); RuntimeError, with its output, if it
        exits first or takes longer."""
        deadline = time.monotonic() + timeout_seconds
        while not self._written_since_start():
            if self.process.poll() is not None:
                failure = PortTaken if "cannot listen on" in self.output() else RuntimeError
                raise failure(f"the local runtime exited with {self.process.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                os.killpg(self.process.pid, signal.SIGKILL)
                raise RuntimeError(f"the local runtime did not start in {timeout_seconds:.0f} s:\n{self.output()}")
            time.sleep(0.1)

    def _written_since_start(self) -> bool:
        # A stack.json left by a runtime that was killed is not this one's.
        with contextlib.suppress(FileNotFoundError):
            return self.state_file.stat().st_mtime >= self._started
        return False

    def stop(self, signal_number: int = signal.SIGINT, timeout_seconds: float = 30.0) -> tuple[int | None, list[int]]:
        """Stop it with ``signal_number`` (SIGINT is Ctrl-C). Returns its exit code (None if it had to be killed after
        ``timeout_seconds``) and the processes it left behind, which are killed now."""
        children = descendants(self.process.pid)
        self.process.send_signal(signal_number)
        code: int | None
        try:
            code = self.process.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            code = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(pid_alive(pid) for pid in children):
            time.sleep(0.1)
        orphans = sorted(pid for pid in children if pid_alive(pid))
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return code, orphans


class LocalRuntimeError(RuntimeError):
    """The local runtime did not start, or did not stop cleanly; the message holds its output."""


@contextlib.contextmanager
def local_runtime(state_dir: Path, environment: Mapping[str, str], parameter_overrides: Sequence[str]) -> Iterator[str]:
    """`python -m local` on free ports with these template parameters, for the block; its API's URL. At the end it
    is stopped as Ctrl-C stops it, and must exit 0 and leave no process behind. LocalRuntimeError otherwise, and if it
    does not start."""
    from local.services import read_running_stack  # not at the top: local.services imports this module

    def on_free_ports() -> RuntimeProcess:
        ports = {"LOCAL_API_PORT": str(free_port()), "LOCAL_EVENT_API_PORT": str(free_port())}
        arguments = ["--parameter-overrides", *parameter_overrides]
        return RuntimeProcess(state_dir, state_dir / "runtime.log", {**environment, **ports}, arguments)

    try:
        runtime = start_serving(on_free_ports, RUNTIME_START_SECONDS)
    except RuntimeError as failed:
        raise LocalRuntimeError(str(failed)) from None
    endpoints = read_running_stack(runtime.state_file)
    try:
        if endpoints is None:
            raise LocalRuntimeError(f"the local runtime wrote {runtime.state_file} and stopped:\n{runtime.output()}")
        yield endpoints.api_url
    finally:
        code, orphans = runtime.stop(timeout_seconds=RUNTIME_STOP_SECONDS)
    if orphans:
        raise LocalRuntimeError(f"processes left behind by the local runtime: {orphans}\n{runtime.output()}")
    if code != 0:
        raise LocalRuntimeError(f"the local runtime exited with {code}:\n{runtime.output()}")
