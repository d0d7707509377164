"""The EventBridge rules of the template's ``Schedule`` events, fired the way EventBridge fires them.

Each enabled rule invokes its function at each moment its expression names (UTC): a ``rate(...)`` one period after the
runtime starts (EventBridge does not fire a rule when it is created) and every period after, a ``cron(...)`` at the
minutes it names. The function gets EventBridge's "Scheduled Event" (``time`` the scheduled moment, ``resources`` the
rule's ARN), or the rule's constant ``Input`` instead.

EventBridge invokes the function asynchronously, so each firing is an invocation of its own: a slow one does not hold
the next one back (the function's worker cap does). A failed invocation is printed and the schedule goes on; it is not
retried (Lambda would retry an asynchronous invocation twice). A moment the runtime missed (its event loop was held up,
the machine slept) is skipped rather than caught up.

``LOCAL_SCHEDULE_SECONDS_PER_MINUTE`` (60) speeds the schedules' clock up, so a test sees ``rate(1 minute)`` fire every
second at 1; the events' times are on that clock, and run ahead of the wall clock.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from local.services import ServiceError
from local.specs import ScheduleRule
from local.template import ACCOUNT_ID, REGION
from local.workers import Invocation, Invoker

SECONDS_PER_MINUTE = 60.0
EVENT_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

Say = Callable[[str], None]


def schedule_seconds_per_minute() -> float:
    """How many real seconds a minute of the schedules lasts: ``LOCAL_SCHEDULE_SECONDS_PER_MINUTE`` (60)."""
    text = os.environ.get("LOCAL_SCHEDULE_SECONDS_PER_MINUTE") or str(SECONDS_PER_MINUTE)
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ServiceError(f"LOCAL_SCHEDULE_SECONDS_PER_MINUTE must be a positive number of seconds, not {text!r}")
    return seconds


class ScheduleClock:
    """UTC as the schedules see it: the wall clock, or a clock that runs ``60 / seconds_per_minute`` times faster from
    the moment it is made."""

    def __init__(self, seconds_per_minute: float = SECONDS_PER_MINUTE, wall: Callable[[], float] = time.time) -> None:
        self.seconds_per_minute = seconds_per_minute
        self._speed = SECONDS_PER_MINUTE / seconds_per_minute
        self._wall = wall
        self._started = wall()

    @property
    def sped_up(self) -> bool:
        """Whether a minute lasts anything but a minute."""
        return self.seconds_per_minute != SECONDS_PER_MINUTE

    def now(self) -> datetime:
        """The time on this clock."""
        return datetime.fromtimestamp(self._started + (self._wall() - self._started) * self._speed, UTC)

    def seconds_until(self, moment: datetime) -> float:
        """Real seconds until this clock shows ``moment`` (0 when it already has)."""
        return max(0.0, (moment - self.now()).total_seconds() / self._speed)


def scheduled_event(rule: ScheduleRule, moment: datetime) -> Any:
    """What EventBridge sends the function for a firing at ``moment``: the rule's ``Input``, else a Scheduled Event."""
    if rule.input is not None:
        return json.loads(rule.input)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": moment.astimezone(UTC).strftime(EVENT_TIME_FORMAT),
        "region": REGION,
        "resources": [rule.arn],
        "detail": {},
    }


class ScheduleRunner:
    """One rule: waits for its next moment, starts the invocation, and goes on waiting."""

    def __init__(self, rule: ScheduleRule, clock: ScheduleClock, invoker: Invoker, say: Say) -> None:
        self.rule = rule
        self._clock = clock
        self._invoker = invoker
        self._say = say
        self.next_moment: datetime | None = None
        self._task: asyncio.Task[None] | None = None
        self._invocations: set[asyncio.Task[None]] = set()

    @property
    def label(self) -> str:
        """``Schedule Event -> Function``, for the console."""
        return f"Schedule {self.rule.event_name} -> {self.rule.function_id}"

    def start(self) -> None:
        """Start the schedule (in the running event loop); a disabled rule never fires."""
        if not self.rule.enabled:
            return
        self.next_moment = self.rule.schedule.next_after(self._clock.now())
        self._task = asyncio.create_task(self._loop(), name=self.label)

    async def stop(self) -> None:
        """Stop the schedule; invocations under way are abandoned (their workers are stopped with the others)."""
        tasks = [task for task in (self._task, *self._invocations) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None

    async def _loop(self) -> None:
        while self.next_moment is not None:
            moment = self.next_moment
            await asyncio.sleep(self._clock.seconds_until(moment))
            invocation = asyncio.create_task(self._invoke(moment), name=f"{self.label} {moment:%H:%M:%S}")
            self._invocations.add(invocation)
            invocation.add_done_callback(self._invocations.discard)
            self.next_moment = self._following(moment)

    def _following(self, moment: datetime) -> datetime | None:
        # EventBridge does not catch up: moments already past when this one fired are skipped.
        now = self._clock.now()
        following = self.rule.schedule.next_after(moment)
        while following is not None and following <= now:
            following = self.rule.schedule.next_after(following)
        return following

    async def _invoke(self, moment: datetime) -> None:
        started = time.perf_counter()
        try:
            invocation = await self._invoker.invoke(self.rule.function_id, scheduled_event(self.rule, moment))
        except Exception as exc:  # a bug here, not the function's failure: report it, the schedule goes on
            self._say(f"{self.label}: {moment:{EVENT_TIME_FORMAT}} not invoked ({type(exc).__name__}: {exc})")
            return
        self._say(self._describe(moment, invocation, (time.perf_counter() - started) * 1000))

    def _describe(self, moment: datetime, invocation: Invocation, elapsed_ms: float) -> str:
        line = f"{self.label}: {moment:{EVENT_TIME_FORMAT}}, "
        if invocation.error is not None:
            line += f"failed ({invocation.error.error_type}: {invocation.error.message})"
        else:
            line += "succeeded"
        line += f", {elapsed_ms:.0f} ms"
        if invocation.init_ms is not None:
            line += f" (cold start {invocation.init_ms:.0f} ms)"
        return line


class Schedules:
    """Every ``Schedule`` rule of the template, firing (the enabled ones) while the runtime serves."""

    def __init__(self, rules: Iterable[ScheduleRule], clock: ScheduleClock, invoker: Invoker, say: Say) -> None:
        self.clock = clock
        self.runners = [ScheduleRunner(rule, clock, invoker, say) for rule in rules]

    def start(self) -> None:
        """Start every enabled rule."""
        for runner in self.runners:
            runner.start()

    async def stop(self) -> None:
        """Stop every rule and abandon the invocations under way."""
        await asyncio.gather(*(runner.stop() for runner in self.runners), return_exceptions=True)
