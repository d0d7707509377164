"""EventBridge schedule expressions, ``rate(...)`` and ``cron(...)``, read as EventBridge reads them, as values that
know when they fire next (in UTC: the rules of SAM's ``Schedule`` events have no time zone).

- ``rate(<n> minute|minutes|hour|hours|day|days)``: a positive whole number, the unit singular for 1 and plural
  otherwise (EventBridge refuses ``rate(1 minutes)`` and ``rate(5 minute)``).
- ``cron(Minutes Hours Day-of-month Month Day-of-week Year)``: AWS's six fields, with ``,`` ``-`` ``*`` ``/`` in each,
  month and weekday names (JAN-DEC, SUN-SAT; Sunday is 1), ``?`` in exactly one of the two day fields, ``L`` (the last
  day of the month, or with a weekday the month's last such day), ``W`` (the weekday nearest a day of the month, ``LW``
  the last weekday) and ``#`` (``3#2``: the month's second Tuesday).

Nothing here runs anything: ``local.schedules`` fires the rules, ``local.template`` reads them.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import product


class ScheduleExpressionError(ValueError):
    """An expression EventBridge would refuse."""


# --- rate(...) ---

_RATE = re.compile(r"\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*")
_UNITS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}


@dataclass(frozen=True)
class RateSchedule:
    """``rate(...)``: fires one period after the rule exists (EventBridge does not fire at creation), then every
    period."""

    expression: str
    period: timedelta

    def next_after(self, moment: datetime) -> datetime:
        """The first moment the rule fires after ``moment`` (a start, or its previous firing)."""
        return moment + self.period


def _rate(expression: str, body: str) -> RateSchedule:
    match = _RATE.fullmatch(body)
    if match is None:
        raise ScheduleExpressionError(f"{expression!r}: rate() takes a whole number and minute(s), hour(s) or day(s)")
    value, unit = int(match[1]), match[2]
    if value < 1:
        raise ScheduleExpressionError(f"{expression!r}: the rate must be positive")
    if (value == 1) == unit.endswith("s"):
        raise ScheduleExpressionError(f"{expression!r}: the unit is singular for 1 and plural otherwise")
    return RateSchedule(expression, value * _UNITS[unit.removesuffix("s")])


# --- cron(...) ---

MIN_YEAR, MAX_YEAR = 1970, 2199
# English whatever the locale, as EventBridge spells them.
_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, 1)}
_WEEKDAYS = {name: number for number, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), 1)}


@dataclass(frozen=True)
class DaysOfMonth:
    """A Day-of-month field: the days it names, ``L``, ``LW`` and ``nW``."""

    days: frozenset[int] = frozenset()
    last: bool = False
    last_weekday: bool = False
    nearest_weekday: frozenset[int] = frozenset()

    def of(self, year: int, month: int) -> set[int]:
        """The days of that month the field names."""
        last = calendar.monthrange(year, month)[1]
        found = {day for day in self.days if day <= last}
        if self.last:
            found.add(last)
        if self.last_weekday:
            found.add(_nearest_weekday(year, month, last, last))
        # A day the month does not have (31W in April) names nothing in it.
        found |= {_nearest_weekday(year, month, day, last) for day in self.nearest_weekday if day <= last}
        return found


@dataclass(frozen=True)
class DaysOfWeek:
    """A Day-of-week field (1 is Sunday): the weekdays it names, ``nL`` and ``n#k``."""

    weekdays: frozenset[int] = frozenset()
    last: frozenset[int] = frozenset()
    nth: frozenset[tuple[int, int]] = frozenset()

    def of(self, year: int, month: int) -> set[int]:
        """The days of that month the field names."""
        last = calendar.monthrange(year, month)[1]
        return {day for day in range(1, last + 1) if self._names(date(year, month, day), last)}

    def _names(self, day: date, last: int) -> bool:
        weekday = day.isoweekday() % 7 + 1  # Sunday is 1
        week = (day.day - 1) // 7 + 1
        return weekday in self.weekdays or (weekday, week) in self.nth or (weekday in self.last and day.day + 7 > last)


@dataclass(frozen=True)
class CronSchedule:
    """``cron(...)``: fires at each minute its six fields name."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: DaysOfMonth | DaysOfWeek  # the day field that is not ``?``
    months: frozenset[int]
    years: frozenset[int]

    def next_after(self, moment: datetime) -> datetime | None:
        """The first minute after ``moment`` the expression names; None once its years are over."""
        start = moment.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        for year, month in self._months_from(start):
            days = sorted(day for day in self.days.of(year, month) if date(year, month, day) >= start.date())
            for day, hour, minute in product(days, sorted(self.hours), sorted(self.minutes)):
                candidate = datetime(year, month, day, hour, minute, tzinfo=UTC)
                if candidate >= start:
                    return candidate
        return None

    def _months_from(self, start: datetime) -> Iterator[tuple[int, int]]:
        for year in sorted(self.years):
            for month in sorted(self.months):
                if (year, month) >= (start.year, start.month):
                    yield year, month


def _cron(expression: str, body: str) -> CronSchedule:
    fields = body.split()
    if len(fields) != 6:
        raise ScheduleExpressionError(
            f"{expression!r}: cron() takes six fields: Minutes Hours Day-of-month Month Day-of-week Year"
        )
    minutes, hours, day_of_month, month, day_of_week, year = fields
    if (day_of_month == "?") == (day_of_week == "?"):
        raise ScheduleExpressionError(f"{expression!r}: one of Day-of-month and Day-of-week must be ?, not both")
    try:
        return CronSchedule(
            expression=expression,
            minutes=_values(minutes, 0, 59),
            hours=_values(hours, 0, 23),
            days=_days_of_week(day_of_week) if day_of_month == "?" else _days_of_month(day_of_month),
            months=_values(month, 1, 12, _MONTHS),
            years=_values(year, MIN_YEAR, MAX_YEAR),
        )
    except ScheduleExpressionError as exc:
        raise ScheduleExpressionError(f"{expression!r}: {exc}") from None


def _values(field: str, low: int, high: int, names: Mapping[str, int] | None = None) -> frozenset[int]:
    return frozenset(value for item in field.split(",") for value in _item(item, low, high, names or {}))


def _item(item: str, low: int, high: int, names: Mapping[str, int]) -> Iterable[int]:
    # "*", "a", "a-b", with an optional "/step"; "a/step" runs to the field's end, and "FRI-MON" wraps around.
    span, slash, step_text = item.partition("/")
    step = _number(step_text, 1, high - low + 1, "a step") if slash else 1
    if span == "*":
        first, last = low, high
    else:
        first_text, dash, last_text = span.partition("-")
        first = _number(first_text, low, high, "a value", names)
        last = _number(last_text, low, high, "a value", names) if dash else (high if slash else first)
    size = high - low + 1
    return (low + (first - low + offset) % size for offset in range(0, (last - first) % size + 1, step))


def _number(text: str, low: int, high: int, what: str, names: Mapping[str, int] | None = None) -> int:
    value = (names or {}).get(text.upper())
    if value is None and text.isdigit():
        value = int(text)
    if value is None or not low <= value <= high:
        raise ScheduleExpressionError(f"{text!r} is not {what} between {low} and {high}")
    return value


def _days_of_month(field: str) -> DaysOfMonth:
    days: set[int] = set()
    last = last_weekday = False
    nearest: set[int] = set()
    for item in field.upper().split(","):
        if item == "L":
            last = True
        elif item == "LW":
            last_weekday = True
        elif item.endswith("W"):
            nearest.add(_number(item[:-1], 1, 31, "a day of the month"))
        else:
            days.update(_item(item, 1, 31, {}))
    return DaysOfMonth(frozenset(days), last, last_weekday, frozenset(nearest))


def _days_of_week(field: str) -> DaysOfWeek:
    weekdays: set[int] = set()
    last: set[int] = set()
    nth: set[tuple[int, int]] = set()
    for item in field.upper().split(","):
        if item == "L":  # the last day of the week
            weekdays.add(_WEEKDAYS["SAT"])
        elif item.endswith("L"):
            last.add(_number(item[:-1], 1, 7, "a weekday", _WEEKDAYS))
        elif "#" in item:
            weekday, _, week = item.partition("#")
            nth.add((_number(weekday, 1, 7, "a weekday", _WEEKDAYS), _number(week, 1, 5, "a week of the month")))
        else:
            weekdays.update(_item(item, 1, 7, _WEEKDAYS))
    return DaysOfWeek(frozenset(weekdays), frozenset(last), frozenset(nth))


def _nearest_weekday(year: int, month: int, day: int, last: int) -> int:
    # The Monday-to-Friday day nearest ``day``, never in another month (1W on a Saturday is Monday the 3rd).
    weekday = date(year, month, day).weekday()
    if weekday == 5:  # Saturday
        return day - 1 if day > 1 else day + 2
    if weekday == 6:  # Sunday
        return day + 1 if day < last else day - 2
    return day


# --- Either ---

Schedule = RateSchedule | CronSchedule
_EXPRESSION = re.compile(r"\s*(rate|cron)\((.*)\)\s*", re.DOTALL)


def parse_schedule(expression: str) -> Schedule:
    """A ``ScheduleExpression`` as EventBridge reads it (ScheduleExpressionError for one it would refuse)."""
    match = _EXPRESSION.fullmatch(expression)
    if match is None:
        raise ScheduleExpressionError(f"{expression!r} is neither rate(...) nor cron(...)")
    kind, body = match.groups()
    return _rate(expression, body) if kind == "rate" else _cron(expression, body)
