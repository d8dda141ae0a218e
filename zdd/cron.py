"""Scheduled jobs (pure): zdd.toml's [cron] table, cron's five-field schedules, what is due.

```toml
[cron]
report = { schedule = "0 3 * * *", command = "python3 manage.py report" }
cleanup = { schedule = "*/15 * * * *", command = "python3 manage.py cleanup", timeout = 600 }
```

A schedule is cron's: minute, hour, day of month, month, day of week (0 or 7 is Sunday),
each ``*``, a number, a range ``a-b``, a step ``*/n`` or ``a-b/n``, or a comma list of
those; as in cron, when both days are restricted a day matching either one is due.
Times are the server's UTC.
"""

import dataclasses
import datetime
import re

from zdd import processes
from zdd.errors import ConfigError

FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
JOB_KEYS = {"schedule", "command", "timeout"}
MAX_JOBS = 20
DEFAULT_TIMEOUT = 3600.0
PART = re.compile(r"(\*|[0-9]{1,2}(?:-[0-9]{1,2})?)(?:/([0-9]{1,2}))?")


@dataclasses.dataclass(frozen=True)
class Job:
    name: str
    schedule: str
    command: tuple[str, ...]
    timeout: float = DEFAULT_TIMEOUT

    def as_dict(self) -> dict:
        return {"schedule": self.schedule, "command": list(self.command), "timeout": self.timeout}


def parse(table) -> tuple[Job, ...]:
    """zdd.toml's [cron]: each job named and checked; an error names the job and the field."""
    if not isinstance(table, dict):
        raise ConfigError("zdd.toml: [cron] must be a table of jobs: name = { schedule = \"...\", command = \"...\" }")
    if len(table) > MAX_JOBS:
        raise ConfigError(f"zdd.toml: [cron] has {len(table)} jobs, more than {MAX_JOBS}")
    return tuple(_job(name, value) for name, value in sorted(table.items()))


def _job(name: str, value) -> Job:
    if not isinstance(name, str) or not processes.NAME.fullmatch(name):
        raise ConfigError(f"zdd.toml: cron job name {name!r} must be lowercase letters, digits and -, "
                          "starting with a letter (at most 20)")
    if not isinstance(value, dict):
        raise ConfigError(f"zdd.toml: cron.{name} must be {{ schedule = \"...\", command = \"...\" }}")
    processes.refuse_unknown_keys(value, JOB_KEYS, f"cron.{name}")
    schedule = value.get("schedule")
    if not isinstance(schedule, str):
        raise ConfigError(f"zdd.toml: cron.{name}.schedule is missing: five fields, e.g. \"0 3 * * *\"")
    parse_schedule(schedule, f"cron.{name}.schedule")
    command = processes.split_command(value.get("command"), f"cron.{name}.command")
    timeout = value.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 1 <= timeout <= 86400:
        raise ConfigError(f"zdd.toml: cron.{name}.timeout must be seconds from 1 to 86400, not {timeout!r}")
    return Job(name, schedule, command, float(timeout))


def parse_schedule(text: str, what: str) -> tuple[frozenset[int], ...]:
    """The allowed values of each of the five fields."""
    fields = text.split()
    if len(fields) != 5:
        raise ConfigError(f"zdd.toml: {what} {text!r} needs five fields (minute hour day month weekday), "
                          "e.g. \"0 3 * * *\"")
    return tuple(_field(part, label, low, high, what) for part, (label, low, high) in zip(fields, FIELDS))


def _field(text: str, label: str, low: int, high: int, what: str) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        match = PART.fullmatch(part)
        if not match:
            raise ConfigError(f"zdd.toml: {what}: the {label} {text!r} is not a number, range, step or *")
        span, step = match.groups()
        first, last = (low, high) if span == "*" else (int(span.split("-")[0]), int(span.split("-")[-1]))
        if not low <= first <= last <= high or (step is not None and not 1 <= int(step) <= high):
            raise ConfigError(f"zdd.toml: {what}: the {label} {text!r} is outside {low}-{high}")
        values.update(range(first, last + 1, int(step or 1)))
    if label == "day of week" and 7 in values:
        values = (values - {7}) | {0}
    return frozenset(values)


def matches(schedule: str, at: datetime.datetime) -> bool:
    """Whether the minute ``at`` is one the schedule runs at."""
    fields = parse_schedule(schedule, "schedule")
    minutes, hours = fields[0], fields[1]
    return at.minute in minutes and at.hour in hours and _runs_on(fields, at)


def _runs_on(fields: tuple, day: datetime.datetime) -> bool:
    _, _, days, months, weekdays = fields
    if day.month not in months:
        return False
    weekday = (day.weekday() + 1) % 7  # cron's: Sunday is 0
    if len(days) < 31 and len(weekdays) < 7:
        return day.day in days or weekday in weekdays
    return day.day in days and weekday in weekdays


def next_run(schedule: str, after: datetime.datetime) -> datetime.datetime | None:
    """The first minute after ``after`` that the schedule runs at (None: none within a year
    and a bit, e.g. 31 February)."""
    fields = parse_schedule(schedule, "schedule")
    day = after.replace(hour=0, minute=0, second=0, microsecond=0)
    for _ in range(400):
        if _runs_on(fields, day):
            for hour in sorted(fields[1]):
                for minute in sorted(fields[0]):
                    candidate = day.replace(hour=hour, minute=minute)
                    if candidate > after:
                        return candidate
        day += datetime.timedelta(days=1)
    return None


def due(job: Job, now: datetime.datetime, last_scheduled: str | None) -> bool:
    """Whether the timer's run at ``now`` starts ``job``: its schedule names this minute, and
    no run was started for this minute already."""
    minute = now.replace(second=0, microsecond=0)
    return matches(job.schedule, minute) and last_scheduled != minute.isoformat()
