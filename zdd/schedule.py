"""Backup schedules: an app's period and what to keep, and whether a backup is due. Pure;
one system timer (systemd's, else cron's, set up by install.sh) runs `zdd backup-due`
every minute, and this module decides which apps it backs up."""

import dataclasses
import datetime
import json
import re
from pathlib import Path

from zdd.errors import InvalidInput
from zdd.state import write_json_atomic

SCHEDULE_FILE = "backup-schedule.json"
NAMED = {"hourly": 3600, "daily": 86400, "weekly": 7 * 86400}
EVERY = re.compile(r"([1-9][0-9]{0,3})([mhd])")
UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}
DEFAULT_KEEP = {"last": 3, "daily": 7, "weekly": 4}
KEEP_UNITS = ("last", "hourly", "daily", "weekly", "monthly")
RETRY_AFTER_FAILURE = 15 * 60


@dataclasses.dataclass(frozen=True)
class Schedule:
    period: str               # as the operator gave it: daily, 6h, 30m
    seconds: int
    keep: dict                # restic's --keep-UNIT counts
    since: str                # when it was set (ISO time)

    def retry_seconds(self) -> int:
        """After a failed attempt, the next one comes sooner than a whole period."""
        return min(self.seconds, RETRY_AFTER_FAILURE)


def parse_period(text: str) -> int:
    if text in NAMED:
        return NAMED[text]
    match = EVERY.fullmatch(text or "")
    if not match:
        raise InvalidInput(f"invalid schedule {text!r}: use hourly, daily, weekly or a period such as 30m, 6h, 2d")
    return int(match[1]) * UNIT_SECONDS[match[2]]


def parse_keep(items: list[str]) -> dict:
    """``--keep daily=7`` (repeatable) over the defaults: keep the last 3, 7 daily, 4 weekly."""
    keep = dict(DEFAULT_KEEP)
    for item in items:
        unit, sep, count = item.partition("=")
        if not sep or unit not in KEEP_UNITS or not count.isdigit() or not 0 <= int(count) <= 10000:
            raise InvalidInput(f"invalid --keep {item!r}: use UNIT=COUNT with UNIT one of {', '.join(KEEP_UNITS)}")
        keep[unit] = int(count)
    if not any(keep.values()):
        raise InvalidInput("--keep would keep no backup at all: keep at least one")
    return {unit: count for unit, count in keep.items() if count}


def read(app_dir: Path) -> Schedule | None:
    try:
        data = json.loads((app_dir / SCHEDULE_FILE).read_text())
    except FileNotFoundError:
        return None
    return Schedule(data["period"], int(data["seconds"]), data["keep"], data["since"])


def write(app_dir: Path, schedule: Schedule | None) -> None:
    if schedule is None:
        (app_dir / SCHEDULE_FILE).unlink(missing_ok=True)
    else:
        write_json_atomic(app_dir / SCHEDULE_FILE, dataclasses.asdict(schedule))


def _when(entry: dict) -> datetime.datetime:
    return datetime.datetime.fromisoformat(entry.get("finished_at") or entry["started_at"])


def last_scheduled(log: list[dict]) -> dict | None:
    runs = [entry for entry in log if entry.get("reason") == "scheduled"]
    return runs[-1] if runs else None


def is_due(schedule: Schedule, log: list[dict], now: datetime.datetime) -> bool:
    last = last_scheduled(log)
    if last is None:
        return True
    wait = schedule.seconds if last.get("outcome") == "ok" else schedule.retry_seconds()
    return (now - _when(last)).total_seconds() >= wait - 30  # the timer fires each minute, give or take


def warning(schedule: Schedule | None, log: list[dict], now: datetime.datetime) -> str | None:
    """What a push or `zdd status` should say about the scheduled backups, if anything."""
    if schedule is None:
        return None
    last = last_scheduled(log)
    if last is None:
        waited = (now - datetime.datetime.fromisoformat(schedule.since)).total_seconds()
        return None if waited < 2 * schedule.seconds else \
            f"no scheduled backup has run in {age_text(waited)} (every {schedule.period}): is the backup timer installed?"
    if last.get("outcome") != "ok":
        return f"the last scheduled backup ({last['id']}) failed: {last.get('error', 'no reason recorded')}"
    age = (now - _when(last)).total_seconds()
    if age > 2 * schedule.seconds:
        return f"the last scheduled backup is {age_text(age)} old, for a schedule of every {schedule.period}"
    return None


def age_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"
