"""``python -m load`` (``make load``): the load test, headless and bounded, with exact totals checked at the end.

Without ``API_URL`` it starts the local runtime itself (what ``make run`` starts, on free ports, state in
``LOAD_STATE_DIR``, default .local/load) with the per-address limits on registrations and reads lifted, as the e2e
suite does: every player of the load registers and reads from 127.0.0.1, one address, which those limits are there
to stop. Against a deployed stack give ``API_URL``, ``WS_URL`` and ``LIVE_HTTP_URL`` (deployed with the same
limits lifted: ``sam deploy --parameter-overrides RegistrationsPerAddressPerHour=... ReadsPerAddressPerMinute=...``),
and ``LOAD_GAME_FILE`` if it runs another game than template.yaml's: the totals are checked on the boards it says
the players' matches feed.

``LOAD_USERS`` players (a comma-separated list runs one step per count, one after the other, each on a fresh local
runtime; on a deployed stack, one after the other on it),
``LOAD_VIEWERS`` viewers of the live feed, for ``LOAD_SECONDS`` each, started ``LOAD_SPAWN_RATE`` users per second.
Writes load/results.json and load/results.md (``LOAD_RESULTS`` names another folder) and exits 1 if any request
failed, any user code raised, any total is not exact or any viewer saw an error.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench import template_game
from leaderboard.game import Game, parse
from load.run import GATEWAY, MOTO, PROJECT_ROOT, Load, Target, run_step
from local.processes import LIFTED_ADDRESS_LIMITS, LocalRuntimeError, local_runtime
from local.services import read_running_stack
from local.template import LOCAL_GAME_FILE

DEFAULT_USERS = "10,40,120"  # on 2 cores: below the knee, around it, past it
DEFAULT_VIEWERS = 20
DEFAULT_SECONDS = 60
DEFAULT_SPAWN_RATE = 5.0
SETTINGS = ("LOAD_USERS", "LOAD_VIEWERS", "LOAD_SECONDS", "LOAD_SPAWN_RATE")
BUSY_FRACTION = 0.85  # a machine (or the single-threaded load generator) this busy is the limit
NOISY_FRACTION = 0.25  # other processes taking this much of the machine make the figures noise


def main() -> int:
    player_counts = [int(count) for count in os.environ.get("LOAD_USERS", DEFAULT_USERS).split(",")]
    viewers = int(os.environ.get("LOAD_VIEWERS", DEFAULT_VIEWERS))
    seconds = int(os.environ.get("LOAD_SECONDS", DEFAULT_SECONDS))
    spawn_rate = float(os.environ.get("LOAD_SPAWN_RATE", DEFAULT_SPAWN_RATE))
    loads = [Load(players, viewers, seconds, spawn_rate) for players in player_counts]
    out_dir = Path(os.environ.get("LOAD_RESULTS") or PROJECT_ROOT / "load")
    state_dir = Path(os.environ.get("LOAD_STATE_DIR") or PROJECT_ROOT / ".local" / "load")

    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    deployed = os.environ.get("API_URL")
    if deployed:
        realtime_url, http_url = os.environ.get("WS_URL", ""), os.environ.get("LIVE_HTTP_URL", "")
        if not (realtime_url and http_url):
            print("API_URL names a deployed stack: set WS_URL and LIVE_HTTP_URL too", file=sys.stderr)
            return 2
        target = Target(deployed.rstrip("/"), realtime_url, urlsplit(http_url).netloc, game_under_load(deployed=True))
        steps = [run_reported(target, load, state_dir / f"step-{load.players}-players") for load in loads]
    else:
        try:
            steps = [on_a_fresh_runtime(load, state_dir / f"step-{load.players}-players") for load in loads]
        except LocalRuntimeError as failed:
            print(failed, file=sys.stderr)
            return 1

    results = {
        "command": command_line(),
        "started_at": started_at,
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "target": "deployed stack (API_URL)" if deployed else "the local runtime (python -m local)",
        "ok": all(step["ok"] for step in steps),
        "steps": steps,
        "limit": limit(steps),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    report = markdown(results)
    (out_dir / "results.md").write_text(report)
    print(report)
    print(f"written: {out_dir / 'results.json'}, {out_dir / 'results.md'}")
    return 0 if results["ok"] else 1


def on_a_fresh_runtime(load: Load, state_dir: Path) -> dict[str, Any]:
    """One step on a local runtime of its own: every step starts from empty boards (on one shared stack, the players
    of earlier steps would hold the top 10 and the feed would have less to publish) and the same lazy workers."""
    print(f"starting the local runtime (log in {state_dir / 'runtime.log'})", flush=True)
    with local_runtime(state_dir, os.environ, LIFTED_ADDRESS_LIMITS) as api_url:
        endpoints = read_running_stack(state_dir / "stack.json")
        assert endpoints is not None
        live_host = urlsplit(endpoints.live_http_url).netloc
        target = Target(api_url, endpoints.live_url, live_host, game_under_load(deployed=False), endpoints)
        return run_reported(target, load, state_dir)


def game_under_load(deployed: bool) -> Game:
    """The game the stack runs, whose boards the totals are checked on: the local runtime's (as it reads it:
    LOCAL_GAME_FILE, default local/game.json; empty, template.yaml's GAME) or a deployed stack's (LOAD_GAME_FILE,
    default template.yaml's GAME)."""
    if deployed:
        game_file = os.environ.get("LOAD_GAME_FILE", "")
    else:
        game_file = os.environ.get("LOCAL_GAME_FILE", str(LOCAL_GAME_FILE))
    return parse(Path(game_file).read_text() if game_file else template_game())


def run_reported(target: Target, load: Load, work_dir: Path) -> dict[str, Any]:
    print(f"load: {load.players} players, {load.viewers} viewers, {load.seconds} s ...", flush=True)
    step = run_step(target, load, work_dir)
    print(f"  {summary_line(step)}", flush=True)
    return step


def command_line() -> str:
    settings = [f"{name}={os.environ[name]}" for name in SETTINGS if name in os.environ]
    return shlex.join([*settings, "make", "load"])


def aggregated(step: dict[str, Any]) -> dict[str, Any]:
    return next(route for route in step["routes"] if route["name"] == "Aggregated")


def summary_line(step: dict[str, Any]) -> str:
    every = aggregated(step)
    totals, feed = step["totals"], step["live_feed"]
    return (
        f"{every['requests_per_second']} req/s, p50 {every['p50_ms']} ms, p99 {every['p99_ms']} ms, "
        f"{step['failures']} failures, {len(step['exceptions'])} exceptions; totals exact on {boards_checked(totals)}: "
        f"{'yes' if totals['exact'] else 'NO'} ({totals['accepted_scores']} scores of {totals['players']} players, "
        f"drained in {totals['drained_in_seconds']} s); viewers: {feed['viewers']}, "
        f"{feed['top10_messages']} top-10 messages ({feed['out_of_order_dropped']} out of order, dropped), "
        f"{feed['error_count']} errors; "
        f"CPU: machine {step['cpu']['machine_busy_cores']} of {step['cpu']['machine_cores']} cores"
    )


def boards_checked(totals: dict[str, Any]) -> str:
    """The boards whose standings were checked, and those skipped (a score too near one of their resets)."""
    return ", ".join(
        f"{board} (skipped: a score too near its reset)" if checked["skipped"] else board
        for board, checked in totals["boards"].items()
    )


def limit(steps: list[dict[str, Any]]) -> str:
    """Where the limit is, from the figures: whether throughput still grew with the players, what was saturated at
    the largest load (the machine's cores, the single-threaded load generator, or nothing), which route slowed down
    most, and which processes spent the CPU."""
    last, cpu = steps[-1], steps[-1]["cpu"]
    rates = ", ".join(f"{step['players']} players {aggregated(step)['requests_per_second']} req/s" for step in steps)
    found = [f"Throughput: {rates}."]
    if len(steps) > 1:
        before = steps[-2]
        players = last["players"] / before["players"]
        rate = aggregated(last)["requests_per_second"] / max(aggregated(before)["requests_per_second"], 0.01)
        found.append(f"From {before['players']} to {last['players']} players ({players:.1f}x) it grew {rate:.2f}x.")
    routes = [route for route in last["routes"] if route["method"] != "WS" and route["p50_ms"] is not None]
    if routes:
        slowest = max(routes, key=lambda route: route["p50_ms"])
        found.append(
            f"Slowest route at {last['players']} players: {slowest['method']} {slowest['name']} "
            f"(p50 {slowest['p50_ms']:.0f} ms, p99 {slowest['p99_ms']:.0f} ms, {slowest['requests_per_second']} req/s)."
        )
    by_process = cpu["by_process"]
    functions = [(kind, used) for kind, used in by_process.items() if kind.startswith("function ")][:3]
    found.append(
        f"CPU (cores) at {last['players']} players: machine {cpu['machine_busy_cores']} of {cpu['machine_cores']} "
        f"busy = the local runtime {cpu['runtime_cores']} (moto {by_process.get(MOTO, 0.0)}, the functions' workers "
        f"{cpu['functions_cores']} of which {', '.join(f'{kind[9:]} {used}' for kind, used in functions)}; the "
        f"gateway {by_process.get(GATEWAY, 0.0)}; Redis {by_process.get('Redis', 0.0)}) + the load generator "
        f"{cpu['generator_cores']} + other processes on the machine {cpu['other_cores']}."
    )
    if moto := last.get("moto_round_trip_ms"):
        found.append(
            f"A DynamoDB round trip to moto: {moto['at_rest_p50']} ms at rest, {moto['under_load_p50']} ms (p50) and "
            f"{moto['under_load_p99']} ms (p99) under this load."
        )
    if cpu["machine_busy_cores"] >= BUSY_FRACTION * cpu["machine_cores"]:
        found.insert(0, "The machine's CPU is the limit: its cores are saturated.")
        if cpu["other_cores"] >= NOISY_FRACTION * cpu["machine_cores"]:
            found.insert(1, f"Other processes took {cpu['other_cores']} cores of it: rerun on a quiet machine.")
    elif cpu["generator_cores"] >= BUSY_FRACTION:
        found.insert(0, "The load generator is the limit: locust's one process is saturated.")
    else:
        found.insert(0, "Nothing is CPU-bound at this load: the players' own pace (think time) sets the throughput.")
    return " ".join(found)


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Load test results",
        "",
        f"`{results['command']}` against {results['target']}, {results['started_at']}, "
        f"{results['machine']['cores']} cores, Python {results['machine']['python']}. "
        f"Overall: {'ok' if results['ok'] else 'FAILED'}.",
        "",
        "| players | viewers | s | req/s | p50 ms | p99 ms | failures | totals exact | scores | drained s "
        "| top-10 msgs | out of order | viewer errors | machine cores busy | runtime | generator | other |",
        "|---:|---:|---:|---:|---:|---:|---:|:---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for step in results["steps"]:
        every, totals, feed, cpu = aggregated(step), step["totals"], step["live_feed"], step["cpu"]
        lines.append(
            f"| {step['players']} | {step['viewers']} | {step['seconds']} | {every['requests_per_second']} "
            f"| {every['p50_ms']} | {every['p99_ms']} | {step['failures'] + len(step['exceptions'])} "
            f"| {'yes' if totals['exact'] else 'NO'} | {totals['accepted_scores']} | {totals['drained_in_seconds']} "
            f"| {feed['top10_messages']} | {feed['out_of_order_dropped']} | {feed['error_count']} "
            f"| {cpu['machine_busy_cores']}/{cpu['machine_cores']} "
            f"| {cpu['runtime_cores']} | {cpu['generator_cores']} | {cpu['other_cores']} |"
        )
    lines += ["", f"**Where the limit is:** {results['limit']}", ""]
    for step in results["steps"]:
        lines += [
            f"## {step['players']} players, {step['viewers']} viewers, {step['seconds']} s",
            "",
            "| route | requests | failures | req/s | p50 ms | p99 ms | max ms |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for route in step["routes"]:
            name = route["name"] if route["name"] == "Aggregated" else f"{route['method']} {route['name']}"
            lines.append(
                f"| {name} | {route['requests']} | {route['failures']} | {route['requests_per_second']} "
                f"| {route['p50_ms']} | {route['p99_ms']} | {route['max_ms']} |"
            )
        cores = ", ".join(f"{kind} {used}" for kind, used in step["cpu"]["by_process"].items())
        lines += ["", f"CPU (cores used over {step['cpu']['window_seconds']} s): {cores}.", ""]
        if moto := step.get("moto_round_trip_ms"):
            lines += [
                f"moto's DynamoDB round trip: {moto['at_rest_p50']} ms at rest; under the load p50 "
                f"{moto['under_load_p50']} ms, p99 {moto['under_load_p99']} ms ({moto['samples']} samples).",
                "",
            ]
        totals = step["totals"]
        skipped = [
            f"{board} not checked: {checked['skipped']}"
            for board, checked in totals["boards"].items()
            if checked["skipped"]
        ]
        standings = sum(checked["standings_checked"] for checked in totals["boards"].values())
        inexact = sum(checked["inexact"] for checked in totals["boards"].values())
        verdict = (
            "all exact" if totals["exact"] else f"{inexact} NOT exact, {totals['unsettled_posts']} posts unsettled"
        )
        lines += [f"Totals: {standings} standings (player, board, season) on {boards_checked(totals)}: {verdict}.", ""]
        findings = [*step["exceptions"], *step["live_feed"]["errors"], *map(str, totals["mismatches"]), *skipped]
        if findings:
            lines += ["Findings:", "", *(f"- {finding}" for finding in findings), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
