"""The days a report covers: validation of a requested period and time zone, and their bounds in UTC."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import cache

from domain.errors import DomainError, ErrorCode

MAX_DAYS = 366
# Reports cover days in this range: day bounds are computed one day past `to`, which must stay a real date.
EARLIEST_DAY = date(2000, 1, 1)
LATEST_DAY = date(2999, 12, 31)


def validate_period(since: date, until: date, *, max_days: int | None = MAX_DAYS) -> None:
    for name, day in (("from", since), ("to", until)):
        if not EARLIEST_DAY <= day <= LATEST_DAY:
            raise DomainError.single(ErrorCode.INVALID, f"Choose days between {EARLIEST_DAY} and {LATEST_DAY}.", name)
    if until < since:
        raise DomainError.single(ErrorCode.INVALID, "`to` is before `from`.", "to")
    if max_days is not None and (until - since).days + 1 > max_days:
        raise DomainError.single(ErrorCode.INVALID, f"A report covers at most {max_days} days.", "to")


@cache
def zone(name: str) -> tzinfo:
    """An IANA time zone ("UTC", "Europe/Zurich", "Asia/Tokyo"); KeyError for anything else."""
    if name == "UTC":
        return UTC
    if not name or name.startswith(("/", ".")) or ".." in name:
        raise KeyError(name)
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise KeyError(name) from exc


def check_zone(name: str, field: str = "timezone") -> str:
    try:
        zone(name)
    except KeyError:
        raise DomainError.single(
            ErrorCode.INVALID, "Use an IANA time zone such as UTC, Europe/Zurich or Asia/Tokyo.", field
        ) from None
    return name


def day_bounds(since: date, until: date, timezone: str = "UTC") -> tuple[datetime, datetime]:
    """[start of `since`, start of the day after `until`) in `timezone`, as UTC instants."""
    tz = zone(timezone)
    start = datetime.combine(since, time.min, tz).astimezone(UTC)
    end = datetime.combine(until + timedelta(days=1), time.min, tz).astimezone(UTC)
    return start, end
