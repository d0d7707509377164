"""The Schedule events as EventBridge runs them: rate and cron expressions, the scheduled event, and the rule firing on
its clock. The function is a fake here; tests/integration/test_local_schedules.py runs the real thing."""

import asyncio
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest

from local.schedule_expressions import (
    CronSchedule,
    DaysOfWeek,
    RateSchedule,
    ScheduleExpressionError,
    parse_schedule,
)
from local.schedules import ScheduleClock, ScheduleRunner, Schedules, schedule_seconds_per_minute, scheduled_event
from local.services import ServiceError
from local.specs import ScheduleRule
from local.workers import FunctionError, Invocation
from tests.conftest import load_event

RULE_ARN = "arn:aws:events:us-east-1:123456789012:rule/leaderboard-local-PublishBoardFunctionSafetyNet"
# A Friday afternoon (2026-11-27 is a Friday), half a minute past 16:00.
FRIDAY = datetime(2026, 11, 27, 16, 0, 30, tzinfo=UTC)


def firings(expression: str, after: datetime = FRIDAY, count: int = 4) -> list[str]:
    schedule = parse_schedule(expression)
    found: list[str] = []
    moment = schedule.next_after(after)
    while moment is not None and len(found) < count:
        found.append(f"{moment:%a %Y-%m-%d %H:%M}")
        moment = schedule.next_after(moment)
    return found


def quiet(line: str) -> None:
    """A console nobody reads."""


# --- rate(...) ---


@pytest.mark.parametrize(
    ("expression", "period"),
    [
        ("rate(1 minute)", timedelta(minutes=1)),
        ("rate(15 minutes)", timedelta(minutes=15)),
        ("rate(1 hour)", timedelta(hours=1)),
        ("rate(12 hours)", timedelta(hours=12)),
        ("rate(1 day)", timedelta(days=1)),
        ("rate(7 days)", timedelta(days=7)),
    ],
)
def test_a_rate_fires_one_period_after_the_start_then_every_period(expression: str, period: timedelta) -> None:
    schedule = parse_schedule(expression)

    assert schedule == RateSchedule(expression, period)
    assert schedule.next_after(FRIDAY) == FRIDAY + period  # not at the start: EventBridge does not fire at creation
    assert schedule.next_after(FRIDAY + period) == FRIDAY + 2 * period


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("rate(1 minutes)", "singular for 1 and plural otherwise"),
        ("rate(5 minute)", "singular for 1 and plural otherwise"),
        ("rate(0 minutes)", "must be positive"),
        ("rate(1.5 hours)", "whole number"),
        ("rate(2 weeks)", "minute\\(s\\), hour\\(s\\) or day\\(s\\)"),
        ("rate(minutes)", "whole number"),
        ("every 5 minutes", "neither rate\\(...\\) nor cron\\(...\\)"),
        ("", "neither rate"),
    ],
)
def test_a_rate_eventbridge_would_refuse_is_an_error(expression: str, message: str) -> None:
    with pytest.raises(ScheduleExpressionError, match=message):
        parse_schedule(expression)


# --- cron(...): AWS's six fields ---


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # The examples of EventBridge's documentation.
        ("cron(0 10 * * ? *)", ["Sat 2026-11-28 10:00", "Sun 2026-11-29 10:00"]),
        ("cron(15 12 * * ? *)", ["Sat 2026-11-28 12:15", "Sun 2026-11-29 12:15"]),
        ("cron(0 18 ? * MON-FRI *)", ["Fri 2026-11-27 18:00", "Mon 2026-11-30 18:00", "Tue 2026-12-01 18:00"]),
        ("cron(0 8 1 * ? *)", ["Tue 2026-12-01 08:00", "Fri 2027-01-01 08:00"]),
        ("cron(0/15 * * * ? *)", ["Fri 2026-11-27 16:15", "Fri 2026-11-27 16:30", "Fri 2026-11-27 16:45"]),
        ("cron(0/5 8-17 ? * MON-FRI *)", ["Fri 2026-11-27 16:05", "Fri 2026-11-27 16:10"]),
        ("cron(0 9 ? * 2#1 *)", ["Mon 2026-12-07 09:00", "Mon 2027-01-04 09:00"]),  # the first Monday
        # Lists, names, steps over a range, a range that wraps around the week.
        ("cron(5,35 14 * * ? *)", ["Sat 2026-11-28 14:05", "Sat 2026-11-28 14:35", "Sun 2026-11-29 14:05"]),
        ("cron(0 0 1 JAN,jul ? *)", ["Fri 2027-01-01 00:00", "Thu 2027-07-01 00:00"]),
        ("cron(0 0-12/6 * * ? *)", ["Sat 2026-11-28 00:00", "Sat 2026-11-28 06:00", "Sat 2026-11-28 12:00"]),
        ("cron(0 12 ? * SAT-MON *)", ["Sat 2026-11-28 12:00", "Sun 2026-11-29 12:00", "Mon 2026-11-30 12:00"]),
        ("cron(*/20 16 * * ? 2026)", ["Fri 2026-11-27 16:20", "Fri 2026-11-27 16:40", "Sat 2026-11-28 16:00"]),
        # L, W and LW in Day-of-month; L and nL in Day-of-week.
        ("cron(0 0 L * ? *)", ["Mon 2026-11-30 00:00", "Thu 2026-12-31 00:00", "Sun 2027-01-31 00:00"]),
        ("cron(0 8 1W * ? *)", ["Tue 2026-12-01 08:00", "Fri 2027-01-01 08:00", "Mon 2027-02-01 08:00"]),
        ("cron(0 8 3W * ? *)", ["Thu 2026-12-03 08:00", "Mon 2027-01-04 08:00"]),  # Sunday the 3rd: Monday
        ("cron(0 8 LW * ? *)", ["Mon 2026-11-30 08:00", "Thu 2026-12-31 08:00", "Fri 2027-01-29 08:00"]),
        ("cron(0 0 ? * L *)", ["Sat 2026-11-28 00:00", "Sat 2026-12-05 00:00"]),  # the last day of the week
        ("cron(15 10 ? * 6L *)", ["Fri 2026-12-25 10:15", "Fri 2027-01-29 10:15"]),  # the month's last Friday
        # Past its last year, a rule never fires again.
        ("cron(0 0 1 1 ? 2020)", []),
    ],
)
def test_a_cron_fires_at_the_minutes_its_six_fields_name_in_utc(expression: str, expected: list[str]) -> None:
    assert firings(expression, count=len(expected) or 1) == expected


def test_a_cron_fires_strictly_after_the_moment_it_is_asked_about() -> None:
    on_the_minute = datetime(2026, 11, 27, 16, 15, tzinfo=UTC)

    assert parse_schedule("cron(0/15 * * * ? *)").next_after(on_the_minute) == on_the_minute + timedelta(minutes=15)


def test_a_1w_on_the_first_that_is_a_saturday_stays_in_its_month() -> None:
    # 2026-08-01 is a Saturday: the nearest weekday in August is Monday the 3rd, not Friday 31 July.
    assert firings("cron(0 8 1W 8 ? 2026)", after=datetime(2026, 7, 1, tzinfo=UTC)) == ["Mon 2026-08-03 08:00"]


def test_a_cron_keeps_its_fields() -> None:
    schedule = parse_schedule("cron(0/30 9-10 ? * MON#2 2026-2027)")

    assert isinstance(schedule, CronSchedule)
    assert (set(schedule.minutes), set(schedule.hours), set(schedule.years)) == ({0, 30}, {9, 10}, {2026, 2027})
    assert schedule.days == DaysOfWeek(nth=frozenset({(2, 2)}))  # the second Monday
    assert schedule.expression == "cron(0/30 9-10 ? * MON#2 2026-2027)"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("cron(0 12 * * ?)", "six fields"),
        ("cron(0 12 * * * ? *)", "six fields"),
        ("cron(0 12 * * * *)", "one of Day-of-month and Day-of-week must be \\?"),
        ("cron(0 12 ? * ? *)", "one of Day-of-month and Day-of-week must be \\?"),
        ("cron(60 12 * * ? *)", "'60' is not a value between 0 and 59"),
        ("cron(0 24 * * ? *)", "between 0 and 23"),
        ("cron(0 12 0 * ? *)", "between 1 and 31"),
        ("cron(0 12 * 13 ? *)", "between 1 and 12"),
        ("cron(0 12 ? * 8 *)", "between 1 and 7"),
        ("cron(0 12 ? * FUN *)", "'FUN' is not a value"),
        ("cron(0 12 * * ? 1969)", "between 1970 and 2199"),
        ("cron(0/0 12 * * ? *)", "not a step"),
        ("cron(0 12 ? * 2#6 *)", "not a week of the month between 1 and 5"),
        ("cron(0 12 32W * ? *)", "not a day of the month"),
    ],
)
def test_a_cron_eventbridge_would_refuse_is_an_error(expression: str, message: str) -> None:
    with pytest.raises(ScheduleExpressionError, match=message):
        parse_schedule(expression)


# --- The clock and the event ---


class FakeWall:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_clock_is_the_wall_clock_unless_sped_up() -> None:
    wall = FakeWall(FRIDAY.timestamp())
    real, fast = ScheduleClock(wall=wall), ScheduleClock(1, wall=wall)
    wall.now += 2

    assert (real.now(), fast.now()) == (FRIDAY + timedelta(seconds=2), FRIDAY + timedelta(minutes=2))
    assert not real.sped_up
    assert fast.sped_up
    assert real.seconds_until(FRIDAY + timedelta(seconds=62)) == 60
    assert fast.seconds_until(FRIDAY + timedelta(minutes=5)) == 3  # three of its minutes, at a second each
    assert fast.seconds_until(FRIDAY) == 0  # already past


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan", "inf"])
def test_the_speed_up_must_be_a_positive_number_of_seconds(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_SCHEDULE_SECONDS_PER_MINUTE", value)

    with pytest.raises(ServiceError, match="LOCAL_SCHEDULE_SECONDS_PER_MINUTE must be a positive number"):
        schedule_seconds_per_minute()


def rule(expression: str = "rate(1 minute)", **overrides: Any) -> ScheduleRule:
    name = RULE_ARN.rpartition("/")[2]
    return ScheduleRule(
        **{
            "function_id": "PublishBoardFunction",
            "event_name": "SafetyNet",
            "schedule": parse_schedule(expression),
            "name": name,
            "arn": RULE_ARN,
        }
        | overrides
    )


def test_the_event_is_eventbridges_scheduled_event_at_the_scheduled_moment() -> None:
    sample = load_event("publish_board_scheduled")

    event = scheduled_event(rule(), datetime(2026, 11, 27, 16, 1, tzinfo=UTC))

    assert set(event) == set(sample)
    assert {key: event[key] for key in ("version", "detail-type", "source", "account", "region", "detail")} == {
        key: sample[key] for key in ("version", "detail-type", "source", "account", "region", "detail")
    }
    assert event["time"] == "2026-11-27T16:01:00Z"
    assert event["resources"] == [RULE_ARN]
    assert len(event["id"]) == 36
    assert scheduled_event(rule(), FRIDAY)["id"] != event["id"]  # one id per firing


def test_a_rule_with_input_sends_that_json_instead() -> None:
    assert scheduled_event(rule(input='{"board": "weekly"}'), FRIDAY) == {"board": "weekly"}


# --- The rule firing, with a fake function ---


class FakeFunction:
    def __init__(self, *invocations: Invocation) -> None:
        self.invocations = list(invocations)
        self.events: list[dict[str, Any]] = []

    async def invoke(self, function_id: str, event: Any) -> Invocation:
        self.events.append(event)
        return self.invocations.pop(0) if len(self.invocations) > 1 else self.invocations[0]


def run_for(seconds: float, schedules: Schedules) -> list[datetime | None]:
    """Run the schedules for ``seconds``; return when each was to fire first."""

    async def run() -> list[datetime | None]:
        schedules.start()
        first = [runner.next_moment for runner in schedules.runners]
        await asyncio.sleep(seconds)
        await asyncio.wait_for(schedules.stop(), 1)
        return first

    return asyncio.run(run())


def test_a_rule_fires_every_period_from_one_period_after_the_start_and_goes_on_after_a_failure() -> None:
    failed = Invocation(error=FunctionError("RuntimeError", "redis is down"), duration_ms=3)
    function = FakeFunction(failed, Invocation(result=None))
    lines: list[str] = []
    clock = ScheduleClock(0.1)  # a minute lasts 100 ms
    started = clock.now()

    (first,) = run_for(0.45, Schedules([rule()], clock, function, lines.append))

    assert first is not None
    # A minute after the start, not at it (the start came a little after `started`, a minute lasting 100 ms).
    assert timedelta(minutes=1) <= first - started < timedelta(minutes=2)
    times = [datetime.fromisoformat(event["time"]) for event in function.events]
    assert 3 <= len(times) <= 5
    assert f"{times[0]:%Y-%m-%dT%H:%M:%S}" == f"{first:%Y-%m-%dT%H:%M:%S}"
    # Whole minutes apart, on the rule's beat (more than one only if a loaded machine made it skip a moment).
    assert all((later - earlier) % timedelta(minutes=1) == timedelta(0) for earlier, later in pairwise(times))
    assert lines[0].startswith(f"Schedule SafetyNet -> PublishBoardFunction: {times[0]:%Y-%m-%dT%H:%M:%SZ}, failed ")
    assert "(RuntimeError: redis is down)" in lines[0]
    assert [", succeeded, " in line for line in lines[1:]] == [True] * (len(times) - 1)  # the schedule went on


def test_a_slow_invocation_does_not_hold_the_next_firing_back() -> None:
    class Slow(FakeFunction):
        async def invoke(self, function_id: str, event: Any) -> Invocation:
            self.events.append(event)
            await asyncio.sleep(3600)
            return Invocation()

    function = Slow()
    run_for(0.2, Schedules([rule()], ScheduleClock(0.05), function, quiet))

    assert len(function.events) >= 2  # each firing is an invocation of its own, as EventBridge's asynchronous invoke


def test_a_disabled_rule_never_fires_and_start_says_when_the_others_first_fire() -> None:
    function = FakeFunction(Invocation())
    clock = ScheduleClock(0.05)
    rules = [rule(enabled=False), rule("cron(0 0 1 1 ? 2020)"), rule("rate(2 minutes)")]
    started = clock.now()

    disabled, over, every_two = run_for(0.06, Schedules(rules, clock, function, quiet))

    assert (disabled, over) == (None, None)
    assert every_two is not None
    assert timedelta(minutes=2) <= every_two - started < timedelta(minutes=3)
    assert function.events == []  # not even the rate: its first period had not passed


def test_stop_cancels_invocations_under_way() -> None:
    class Hanging(FakeFunction):
        cancelled = False

        async def invoke(self, function_id: str, event: Any) -> Invocation:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                Hanging.cancelled = True
                raise
            return Invocation()

    runner = ScheduleRunner(rule(), ScheduleClock(0.01), Hanging(), quiet)

    async def run() -> None:
        runner.start()
        await asyncio.sleep(0.05)
        await asyncio.wait_for(runner.stop(), 1)

    asyncio.run(run())

    assert Hanging.cancelled


def test_moments_missed_while_the_runtime_was_held_up_are_skipped_not_caught_up() -> None:
    wall = FakeWall(FRIDAY.timestamp())
    function = FakeFunction(Invocation())
    runner = ScheduleRunner(rule(), ScheduleClock(wall=wall), function, quiet)

    async def run() -> None:
        runner.start()
        wall.now += 330  # five and a half minutes pass before the loop runs (the machine slept)
        await asyncio.sleep(0.05)
        await runner.stop()

    asyncio.run(run())

    assert [event["time"] for event in function.events] == ["2026-11-27T16:01:30Z"]  # the first moment, once
    assert runner.next_moment == FRIDAY + timedelta(minutes=6)  # then the next one still ahead
