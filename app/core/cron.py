"""Standard 5-field crontab expressions (`minute hour day-of-month month day-of-week`), checked and
turned into APScheduler `CronTrigger`s.

APScheduler numbers weekdays from Monday (0 = mon) while crontab numbers them from Sunday (0 and 7
= sun), and `CronTrigger.from_crontab` passes the day-of-week field through unchanged: there `1-5`
means Tue-Sat. Here the day-of-week field is read with crontab's numbering and handed over as day
names, so `1-5` is Monday to Friday.

Crontab runs a job when *either* a restricted day-of-month or a restricted day-of-week matches;
APScheduler requires both. An expression restricting both is refused rather than quietly meaning
something else.
"""

from __future__ import annotations

import re
from datetime import tzinfo
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab order: 0 = Sunday
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # 29: a leap year's February counts
_PART = re.compile(r"^(?P<base>\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(?P<step>\d+))?$")


class CronError(ValueError):
    """A crontab expression that is malformed or can never fire."""


class _Field:
    def __init__(self, name: str, low: int, high: int, names: tuple[str, ...] = (), first_name: int = 0) -> None:
        self.name = name
        self.low = low
        self.high = high
        self.names = {label: first_name + index for index, label in enumerate(names)}

    def number(self, token: str) -> int:
        if token.isdigit():
            value = int(token)
        elif token in self.names:
            value = self.names[token]
        else:
            raise CronError(f"{self.name} {token!r} is not a number{' or a name' if self.names else ''}")
        if not self.low <= value <= self.high:
            raise CronError(f"{self.name} {value} is out of range {self.low}-{self.high}")
        return value

    def values(self, text: str) -> set[int]:
        """Every value the field matches, read the way cron reads it."""
        found: set[int] = set()
        for part in text.split(","):
            match = _PART.match(part)
            if match is None:
                raise CronError(f"{self.name} field {text!r}: {part!r} is not a value, range, list or step")
            base, step_text = match["base"], match["step"]
            step = int(step_text) if step_text else 1
            if step == 0:
                raise CronError(f"{self.name} field {text!r}: a step of 0 never advances")
            if base == "*":
                first, last = self.low, self.high
            elif "-" in base:
                first, last = (self.number(token) for token in base.split("-"))
                if first > last:
                    raise CronError(f"{self.name} range {base!r} runs backwards")
            else:
                first = self.number(base)
                last = self.high if step_text else first  # `5/15` is 5, 20, 35, 50 (as cronie and APScheduler read it)
            found.update(range(first, last + 1, step))
        return found


_MINUTE = _Field("minute", 0, 59)
_HOUR = _Field("hour", 0, 23)
_DAY = _Field("day-of-month", 1, 31)
_MONTH = _Field("month", 1, 12, _MONTHS, first_name=1)
_WEEKDAY = _Field("day-of-week", 0, 7, _WEEKDAYS)


def parse_crontab(expression: str, time_zone: str | tzinfo) -> CronTrigger:
    """A CronTrigger in `time_zone` that fires exactly when crontab would; CronError otherwise."""
    fields = expression.strip().lower().split()
    if len(fields) != 5:
        raise CronError(
            f"{expression!r} is not a 5-field crontab expression "
            "(minute hour day-of-month month day-of-week), e.g. '0 9 * * 1-5'"
        )
    minute, hour, day, month, weekday = fields
    try:
        _MINUTE.values(minute)
        _HOUR.values(hour)
        days = _DAY.values(day)
        months = _MONTH.values(month)
        weekdays = {value % 7 for value in _WEEKDAY.values(weekday)}  # 7 is Sunday too
    except CronError as exc:
        raise CronError(f"{expression!r}: {exc}") from None
    if day != "*" and weekday != "*":
        raise CronError(
            f"{expression!r} restricts both day-of-month and day-of-week: crontab runs on either, "
            "APScheduler only on both; keep one of them '*'"
        )
    if not any(value <= _DAYS_IN_MONTH[number - 1] for number in months for value in days):
        raise CronError(f"{expression!r} can never fire: no chosen month has the chosen day")
    zone = ZoneInfo(time_zone) if isinstance(time_zone, str) else time_zone
    try:
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week="*" if weekday == "*" else ",".join(_WEEKDAYS[value] for value in sorted(weekdays)),
            timezone=zone,
        )
    except ValueError as exc:  # APScheduler's own checks; ours above should have caught everything
        raise CronError(f"{expression!r}: {exc}") from exc
