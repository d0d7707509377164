"""Seasons: the periods a board's standings are kept for, named after the period, all in UTC.

A board that never resets has one season, `all`. The others reset at 00:00 UTC: `daily` seasons are named by the
date (`2026-12-01`), `weekly` ones by the ISO week (`2026-W49`: weeks start on Monday, and the week holding the
year's first Thursday is week 1, so 2026-12-28..2027-01-03 is `2026-W53`), `monthly` ones by the month (`2026-12`).
Moments are epoch milliseconds, the unit the ledger keeps.
"""

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal, get_args

Reset = Literal["none", "daily", "weekly", "monthly"]
RESETS: tuple[Reset, ...] = get_args(Reset)
ALL_TIME = "all"

_DAY_MS = 86_400_000
_NAMES: dict[str, re.Pattern[str]] = {
    "none": re.compile(r"^all$"),
    "daily": re.compile(r"^(\d{4})-(\d{2})-(\d{2})$"),
    "weekly": re.compile(r"^(\d{4})-W(\d{2})$"),
    "monthly": re.compile(r"^(\d{4})-(\d{2})$"),
}


@dataclass(frozen=True)
class Season:
    """One season of a board: `starts_at_ms` up to, not including, `ends_at_ms` (both None for `all`)."""

    name: str
    starts_at_ms: int | None
    ends_at_ms: int | None

    def ended_by(self, moment_ms: int) -> bool:
        return self.ends_at_ms is not None and self.ends_at_ms <= moment_ms

    def started_by(self, moment_ms: int) -> bool:
        return self.starts_at_ms is None or self.starts_at_ms <= moment_ms


def season_at(reset: Reset, moment_ms: int) -> Season:
    """The season of a board with this reset period that holds `moment_ms`."""
    if reset == "none":
        return Season(ALL_TIME, None, None)
    day = datetime.fromtimestamp(moment_ms / 1000, UTC).date()
    if reset == "daily":
        return _season(reset, day)
    if reset == "weekly":
        return _season(reset, day - timedelta(days=day.weekday()))
    return _season(reset, day.replace(day=1))


def season_named(reset: Reset, name: str) -> Season | None:
    """The season of this reset period called `name`; None if it names none of them."""
    match = _NAMES[reset].match(name)
    if match is None:
        return None
    if reset == "none":
        return Season(ALL_TIME, None, None)
    numbers = [int(group) for group in match.groups()]
    try:
        if reset == "daily":
            start = date(*numbers)
        elif reset == "weekly":
            start = date.fromisocalendar(numbers[0], numbers[1], 1)
        else:
            start = date(numbers[0], numbers[1], 1)
        season = _season(reset, start)
    except (ValueError, OverflowError):  # 2026-02-30, week 54, month 13; a season ending after the year 9999
        return None
    return season if season.name == name else None


def is_season_name(name: str) -> bool:
    """Whether `name` names a season of any reset period (else a query naming it is malformed, not unknown)."""
    return any(season_named(reset, name) is not None for reset in RESETS)


def previous(reset: Reset, season: Season) -> Season:
    """The season before `season` (itself for `all`)."""
    if season.starts_at_ms is None:
        return season
    return season_at(reset, season.starts_at_ms - 1)


def _season(reset: Reset, start: date) -> Season:
    if reset == "daily":
        name, end = start.isoformat(), start + timedelta(days=1)
    elif reset == "weekly":
        year, week, _ = start.isocalendar()
        name, end = f"{year}-W{week:02d}", start + timedelta(days=7)
    else:
        name = f"{start.year}-{start.month:02d}"
        end = date(start.year + start.month // 12, start.month % 12 + 1, 1)
    return Season(name, _epoch_ms(start), _epoch_ms(end))


def _epoch_ms(day: date) -> int:
    return (day - date(1970, 1, 1)).days * _DAY_MS


def rfc3339(moment_ms: int | None, timespec: str = "seconds") -> str | None:
    """A moment as the API writes it: RFC 3339 UTC, e.g. 2026-12-07T00:00:00Z (`timespec="milliseconds"`:
    2026-12-07T00:00:00.000Z)."""
    if moment_ms is None:
        return None
    return datetime.fromtimestamp(moment_ms / 1000, UTC).isoformat(timespec=timespec).replace("+00:00", "Z")
