"""One load step: locust headless for a bounded time against a stack, then the exact-totals check on every board the
players' scores feed, with the CPU each process of the local runtime and the load generator spent meanwhile.

Locust runs as a child process (it monkey-patches the standard library for gevent; this process stays a plain one
that measures, checks and reports).
"""

from __future__ import annotations

import csv
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]  # comes with locust, without type stubs
import requests

from leaderboard.game import BoardDefinition, Game
from leaderboard.seasons import rfc3339
from load.ledger import ACTION_TYPE, Ledger, PlayerRecord
from local.services import Endpoints, aws_session

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
STOP_TIMEOUT_SECONDS = 30  # users finish the task they are in (a post's answer is recorded) before they stop
START_GRACE_SECONDS = 60  # locust's own start and the users' spawning, beyond the run time
DRAIN_SECONDS = 120.0  # how long the consumer may take, after the load, to apply every accepted score
# The load generator's clock against the API's (the same machine's, or NTP's): a score accepted nearer a reset than
# this may count for either season.
RESET_MARGIN_SECONDS = 1.0
SAMPLE_SECONDS = 0.5
PROBE_SECONDS = 0.25
REQUEST_TIMEOUT_SECONDS = 30
MISMATCHES_SHOWN = 10


@dataclass(frozen=True)
class Target:
    """The stack under load: its API, its live feed, the game it runs (whose boards the totals are checked on), and
    on the local runtime its endpoints (the runtime's process tree is measured, moto's round trips timed). Locally a
    viewer that received nothing is a failure too: there, every board the players score on changes."""

    api_url: str
    realtime_url: str
    live_http_host: str
    game: Game
    local_stack: Endpoints | None = None

    @property
    def local(self) -> bool:
        return self.local_stack is not None


@dataclass(frozen=True)
class Load:
    """How much load: players and viewers at once, for how long, started how fast (users per second)."""

    players: int
    viewers: int
    seconds: int
    spawn_rate: float


def run_step(target: Target, load: Load, work_dir: Path) -> dict[str, Any]:
    """Run the load, then check the totals; the step's figures and findings (``ok`` when there is nothing wrong)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    ledger_path, csv_prefix, log_path = work_dir / "ledger.json", work_dir / "locust", work_dir / "locust.log"
    ledger_path.unlink(missing_ok=True)
    moto_at_rest = MotoProbe(target.local_stack).at_rest() if target.local_stack else None
    environment = os.environ | {
        "PYTHONPATH": str(PROJECT_ROOT),
        "LOAD_VIEWERS": str(load.viewers),
        "LOAD_WS_URL": target.realtime_url,
        "LOAD_LIVE_HOST": target.live_http_host,
        "LOAD_LEDGER": str(ledger_path),
    }
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
        "--host", target.api_url, "--users", str(load.players + load.viewers), "--spawn-rate", str(load.spawn_rate),
        "--run-time", f"{load.seconds}s", "--stop-timeout", str(STOP_TIMEOUT_SECONDS), "--csv", str(csv_prefix),
        "--exit-code-on-error", "0",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        generator = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            command, cwd=PROJECT_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT
        )
    stack = target.local_stack
    meter = CpuMeter({"runtime": stack.pid if stack else None, "generator": generator.pid})
    probe = MotoProbe(stack) if stack else None
    meter.start()
    if probe:
        probe.start()
    try:
        generator.wait(timeout=load.seconds + START_GRACE_SECONDS + STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        pass  # bounded: it is stopped below, and without its ledger the step fails
    finally:
        if generator.poll() is None:
            generator.kill()
            generator.wait()
        cpu = meter.stop()
        moto = probe.stop() if probe else None
    log_text = log_path.read_text(errors="replace")
    if not ledger_path.exists():
        raise RuntimeError(f"locust exited with {generator.returncode} and wrote no ledger:\n{log_text[-4000:]}")
    ledger = Ledger.read(ledger_path)
    routes = read_route_stats(csv_prefix)
    exceptions = read_exceptions(csv_prefix)
    totals = check_totals(target.api_url, ledger.players, target.game.boards_fed_by(ACTION_TYPE, by_server=False))
    viewers = summarize_viewers(ledger, target.local)
    failures = sum(route["failures"] for route in routes if route["name"] != "Aggregated")
    ok = generator.returncode == 0 and failures == 0 and not exceptions and totals["exact"] and viewers["ok"]
    return {
        "players": load.players,
        "viewers": load.viewers,
        "seconds": load.seconds,
        "spawn_rate": load.spawn_rate,
        "ok": ok,
        "locust_exit_code": generator.returncode,
        "failures": failures,
        "exceptions": exceptions,
        "routes": routes,
        "totals": totals,
        "live_feed": viewers,
        "cpu": cpu,
        "moto_round_trip_ms": moto and {"at_rest_p50": moto_at_rest} | moto,
    }


def read_route_stats(csv_prefix: Path) -> list[dict[str, Any]]:
    """Locust's statistics per route (and the Aggregated row): requests, failures, req/s, p50 and p99 in ms."""

    def milliseconds(value: str) -> float | None:
        return None if value in ("", "N/A") else float(value)

    with Path(f"{csv_prefix}_stats.csv").open(newline="") as stats:
        return [
            {
                "method": row["Type"],
                "name": row["Name"],
                "requests": int(row["Request Count"]),
                "failures": int(row["Failure Count"]),
                "requests_per_second": round(float(row["Requests/s"]), 2),
                "p50_ms": milliseconds(row["50%"]),
                "p99_ms": milliseconds(row["99%"]),
                "max_ms": round(float(row["Max Response Time"])),
            }
            for row in csv.DictReader(stats)
        ]


def read_exceptions(csv_prefix: Path) -> list[str]:
    """Errors raised inside the users' code (not failed requests): each is a defect of the load or of the stack."""
    path = Path(f"{csv_prefix}_exceptions.csv")
    if not path.exists():
        return []
    with path.open(newline="") as found:
        return [f"{row['Count']} x {row['Message']}" for row in csv.DictReader(found)]


Standing = tuple[str, str, str]  # (board, season, user_id)


def expected_standings(
    players: list[PlayerRecord], boards: list[BoardDefinition], now_ms: int
) -> tuple[dict[Standing, int | None], dict[str, str]]:
    """What each board the players' scores feed must show for each player, in each season the load scored in (and
    the current one): the sum or the best of the scores accepted in that season, None for none (no standing: 404).
    A board is skipped, with the reason, when a score was accepted too near one of its resets to tell which season it
    counts for."""
    expected: dict[Standing, int | None] = {}
    skipped: dict[str, str] = {}
    for board in boards:
        scores: dict[str, dict[str, list[int]]] = {board.season_at(now_ms).name: {}}  # season -> user_id -> scores
        for player in players:
            for accepted in player.accepted:
                earliest = board.season_at(int((accepted.sent_at - RESET_MARGIN_SECONDS) * 1000))
                latest = board.season_at(int((accepted.answered_at + RESET_MARGIN_SECONDS) * 1000))
                if earliest != latest:
                    skipped[board.id] = (
                        f"a score was accepted within {RESET_MARGIN_SECONDS:.0f} s of its {board.reset} reset at "
                        f"{rfc3339(latest.starts_at_ms)}: {earliest.name} or {latest.name}, which is unknown"
                    )
                scores.setdefault(latest.name, {}).setdefault(player.user_id, []).append(accepted.score)
        if board.id in skipped:
            continue
        aggregate = sum if board.aggregate == "sum" else max
        for season, by_player in scores.items():
            for player in players:
                mine = by_player.get(player.user_id)
                expected[(board.id, season, player.user_id)] = aggregate(mine) if mine else None
    return expected, skipped


def check_totals(
    api_url: str, players: list[PlayerRecord], boards: list[BoardDefinition], drain_seconds: float = DRAIN_SECONDS
) -> dict[str, Any]:
    """Wait (at most ``drain_seconds``) until every player's standing on every board their scores feed, in every
    season they scored in, is what the API accepted (``expected_standings``). A standing past that was counted twice
    (or, on a board of best scores, is a score never accepted): no use waiting for it."""
    expected, skipped = expected_standings(players, boards, int(time.time() * 1000))
    for board, reason in skipped.items():
        print(f"  {board}: not checked, {reason}", flush=True)
    pending, wrong, observed = set(expected), set[Standing](), dict[Standing, Any]()
    started = time.monotonic()
    with requests.Session() as http:
        while pending and time.monotonic() - started < drain_seconds:
            for standing in sorted(pending):
                board, season, user_id = standing
                response = http.get(
                    f"{api_url}/v1/boards/{board}/scores/{user_id}",
                    params={"season": season},
                    timeout=REQUEST_TIMEOUT_SECONDS,
                )
                if response.status_code not in (200, 404):
                    observed[standing] = f"status {response.status_code}"
                    continue
                shown = int(response.json()["score"]) if response.status_code == 200 else None
                observed[standing] = shown
                if shown == expected[standing]:
                    pending.discard(standing)
                elif shown is not None and shown > (expected[standing] or 0):
                    pending.discard(standing)
                    wrong.add(standing)
            if pending:
                time.sleep(1.0)
    off = sorted(pending | wrong)
    unsettled = sum(player.unsettled for player in players)
    return {
        "players": len(players),
        "accepted_scores": sum(len(player.accepted) for player in players),
        "accepted_points": sum(player.accepted_points for player in players),
        "exact": not off and unsettled == 0,
        "boards": {
            board.id: {
                "aggregate": board.aggregate,
                "reset": board.reset,
                "seasons": sorted({season for (board_id, season, _) in expected if board_id == board.id}),
                "standings_checked": sum(1 for standing in expected if standing[0] == board.id),
                "with_points": sum(1 for standing, points in expected.items() if standing[0] == board.id and points),
                "inexact": sum(1 for standing in off if standing[0] == board.id),
                "skipped": skipped.get(board.id),
            }
            for board in boards
        },
        "inexact_players": len({user_id for (_, _, user_id) in off}),
        "mismatches": [
            {
                "board": board,
                "season": season,
                "user_id": user_id,
                "accepted": expected[standing],
                "on_the_board": observed.get(standing),
            }
            for standing in off[:MISMATCHES_SHOWN]
            for board, season, user_id in [standing]
        ],
        "unsettled_posts": unsettled,
        "drained_in_seconds": round(time.monotonic() - started, 1),
    }


def summarize_viewers(ledger: Ledger, every_viewer_hears: bool) -> dict[str, Any]:
    """The viewers' findings; ``every_viewer_hears``: one that received no top 10 is a failure too."""
    messages = [viewer.top10_messages for viewer in ledger.viewers]
    errors = [f"/boards/{viewer.board}: {error}" for viewer in ledger.viewers for error in viewer.errors]
    silent = sum(1 for count in messages if count == 0)
    return {
        "viewers": len(ledger.viewers),
        "top10_messages": sum(messages),
        "fewest_per_viewer": min(messages, default=0),
        "most_per_viewer": max(messages, default=0),
        "silent_viewers": silent,
        "out_of_order_dropped": sum(viewer.out_of_order for viewer in ledger.viewers),
        "errors": errors[:MISMATCHES_SHOWN],
        "error_count": len(errors),
        "ok": not errors and not (every_viewer_hears and silent),
    }


class CpuMeter:
    """CPU time spent by process trees (each root and its descendants) and by the whole machine over a window,
    sampled every ``SAMPLE_SECONDS`` so processes that come and go (workers start lazily) are counted."""

    def __init__(self, roots: dict[str, int | None]) -> None:
        self._roots = {name: pid for name, pid in roots.items() if pid is not None}
        self._seen: dict[int, tuple[str, float, float]] = {}  # pid -> (what it is, CPU at first sight, CPU last)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True)

    def start(self) -> None:
        self._started = time.monotonic()
        self._started_at = time.time()
        self._machine_start = psutil.cpu_times()
        self._sample()
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        """Stop sampling; cores used (CPU seconds per second of the window) by each kind of process, and in all."""
        self._sample()
        self._stopped.set()
        self._thread.join()
        seconds = time.monotonic() - self._started
        by_kind: dict[str, float] = defaultdict(float)
        for kind, first, last in self._seen.values():
            by_kind[kind] += last - first
        machine_end = psutil.cpu_times()
        machine_busy = _busy(machine_end) - _busy(self._machine_start)
        cores = {kind: round(spent / seconds, 2) for kind, spent in sorted(by_kind.items(), key=lambda kv: -kv[1])}
        runtime = sum(spent for kind, spent in by_kind.items() if kind != GENERATOR)
        return {
            "window_seconds": round(seconds, 1),
            "machine_cores": psutil.cpu_count() or 1,
            "machine_busy_cores": round(machine_busy / seconds, 2),
            "runtime_cores": round(runtime / seconds, 2),
            "generator_cores": round(by_kind.get(GENERATOR, 0.0) / seconds, 2),
            "functions_cores": round(
                sum(v for kind, v in by_kind.items() if kind.startswith("function ")) / seconds, 2
            ),
            "other_cores": round(max(0.0, machine_busy - sum(by_kind.values())) / seconds, 2),
            "by_process": cores,
        }

    def _sample_until_stopped(self) -> None:
        while not self._stopped.wait(SAMPLE_SECONDS):
            self._sample()

    def _sample(self) -> None:
        for root_name, root_pid in self._roots.items():
            try:
                root = psutil.Process(root_pid)
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for process in tree:
                try:
                    with process.oneshot():
                        times = process.cpu_times()
                        spent = times.user + times.system
                        if process.pid not in self._seen:
                            kind = GENERATOR if root_name == "generator" else _kind_of(process.cmdline())
                            born_inside = process.create_time() >= self._started_at
                            self._seen[process.pid] = (kind, 0.0 if born_inside else spent, spent)
                        kind, first, _ = self._seen[process.pid]
                        self._seen[process.pid] = (kind, first, spent)
                except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                    continue


class MotoProbe:
    """Round trips to moto's DynamoDB (DescribeTable: like every DynamoDB request there, it takes moto's one lock),
    timed every ``PROBE_SECONDS`` under the load: how long each DynamoDB call of a function waits."""

    def __init__(self, stack: Endpoints) -> None:
        session = aws_session(stack.session_token)
        self._dynamodb = session.client("dynamodb", endpoint_url=stack.aws_endpoint_url)
        self._table = stack.identities["UsersTable"].ref
        self._times: list[float] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._probe_until_stopped, daemon=True)

    def round_trip_ms(self) -> float:
        started = time.perf_counter()
        self._dynamodb.describe_table(TableName=self._table)
        return (time.perf_counter() - started) * 1000

    def at_rest(self, samples: int = 20) -> float:
        """The median round trip with nothing else running."""
        return round(statistics.median(self.round_trip_ms() for _ in range(samples)), 1)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> dict[str, float]:
        self._stopped.set()
        self._thread.join()
        ordered = sorted(self._times) or [0.0]
        return {
            "under_load_p50": round(statistics.median(ordered), 1),
            "under_load_p99": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1),
            "samples": len(self._times),
        }

    def _probe_until_stopped(self) -> None:
        while not self._stopped.wait(PROBE_SECONDS):
            self._times.append(self.round_trip_ms())


GENERATOR = "load generator (locust)"
MOTO = "moto (DynamoDB, SQS, Secrets Manager)"
GATEWAY = "runtime (HTTP gateway, Event API, SQS pollers)"


def _kind_of(command: list[str]) -> str:
    """What a process of the local runtime is, from its command line."""
    if "local.moto_server" in command:
        return MOTO
    workers = [index for index, part in enumerate(command) if part.endswith("worker.py")]
    if workers and len(command) > workers[0] + 1:
        return f"function {command[workers[0] + 1].split('.')[0]}"
    if command[1:3] == ["-m", "local"]:
        return GATEWAY
    executable = Path(command[0]).name if command else "?"
    return "Redis" if "redis" in executable or "valkey" in executable else executable


def _busy(times: Any) -> float:
    # Linux's guest times are inside user and nice already; idle and iowait are not work.
    return float(sum(getattr(times, field, 0.0) for field in ("user", "nice", "system", "irq", "softirq", "steal")))
