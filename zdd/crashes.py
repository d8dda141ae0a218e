"""Crashes seen while no deploy runs: an app container that died without being told to
(killed by the kernel for memory, or an exit of its own) and that Docker restarted.

Docker's event log says so (``oom``, ``die`` with its exit code, and ``kill`` when someone
asked it to stop); zdd reads the part it has not read yet at each minute of the server's
timer, at each deploy and at each `zdd status`, so no process of its own has to watch.
The crashes go to each app's crashes.jsonl, which `zdd status` and `zdd history` show.
"""

import datetime
from pathlib import Path
from typing import Callable

from zdd import processes, state

CRASH_FILE = "crashes.jsonl"
WATCH_DIR = "logs"                   # in zdd's root, the deploy user's: the timer runs as that user
CURSOR_FILE = "crash-watch.json"     # up to when Docker's events were read
LOCK = "crash-watch.lock"
KEPT = 200                           # crash records kept per app
FIRST_LOOK = 600
OVERLAP = 30                         # seconds read again for context: a stop's kill before the cursor
LOOP_COUNT, LOOP_SECONDS = 5, 300    # this many crashes of one process in this long: a crash loop
ONE_OFF = {processes.RELEASE, processes.RUN}
OOM_NEAR = 5                         # seconds between a container's oom and die events


def crashes_in(events: list[dict], since: float, restarting: Callable[[str], bool]) -> list[dict]:
    """The crashes among Docker's container events of zdd's apps (oldest first, decoded): a
    ``die`` at or after ``since``, with no ``kill`` since the container last started, that
    Docker restarted: a ``start`` follows, or (none yet: the restart waits out its back-off)
    ``restarting(container_id)`` says it is at it. A container that a failed deploy removed
    has a ``destroy`` instead, and is none."""
    found = []
    told_to_stop: set[str] = set()
    ooms = [(e.get("id"), e["time"]) for e in events if (e.get("Action") or e.get("status")) == "oom"]
    for index, event in enumerate(events):
        action, container = event.get("Action") or event.get("status"), event.get("id")
        attributes = (event.get("Actor") or {}).get("Attributes") or {}
        if action == "start":
            told_to_stop.discard(container)
        elif action == "kill":
            told_to_stop.add(container)
        elif (action == "die" and container not in told_to_stop and event["time"] >= since
              and attributes.get("zdd.app") and attributes.get("zdd.process") not in ONE_OFF | {None}):
            after = next((e.get("Action") for e in events[index + 1:]
                          if e.get("id") == container and e.get("Action") in ("start", "destroy")), None)
            if after == "start" or (after is None and restarting(container)):
                # Docker sends the oom event just before or just after the die, in either order
                oom = any(oom_id == container and abs(at - event["time"]) <= OOM_NEAR for oom_id, at in ooms)
                found.append(_record(event, attributes, oom))
    return found


def _record(event: dict, attributes: dict, oom: bool) -> dict:
    at = state.iso(event["time"])
    code = int(attributes.get("exitCode") or 0)
    return {"at": at, "app": attributes["zdd.app"], "process": attributes["zdd.process"],
            "container": attributes.get("name"), "sha": attributes.get("zdd.sha"), "exit_code": code,
            "oom": oom, "reason": _reason(code, oom)}


def crashes_not_in_events(restarted: list[dict], since: float, found: list[dict]) -> list[dict]:
    """When Docker's event log no longer reaches back to ``since``: one crash for each
    container Docker restarted since then (its last start or exit is later) that the events
    read did not show, from the container's own state (its last exit). ``restarted``:
    engine.restarted_app_containers."""
    seen = {crash["container"] for crash in found}
    missed = []
    for container in restarted:
        labels = container["labels"]
        if labels.get("zdd.process") in ONE_OFF | {None} or container["name"] in seen:
            continue
        exited, started = state.epoch(container["finished_at"]), state.epoch(container["started_at"])
        if max(exited, started) < since:
            continue
        known = container["exit_code"] is not None  # only while Docker waits to restart it
        record = {"at": state.iso(exited or started), "app": labels["zdd.app"], "process": labels["zdd.process"],
                  "container": container["name"], "sha": labels.get("zdd.sha"),
                  "exit_code": int(container["exit_code"]) if known else None, "oom": bool(container["oom_killed"])}
        why = _reason(record["exit_code"], record["oom"]) if known else "exited, why is not known"
        record["reason"] = (f"{why} (Docker's event log had moved on: the last of {container['restarts']} "
                            "restart(s))")
        missed.append(record)
    return missed


def _reason(code: int, oom: bool) -> str:
    if oom:
        return "killed: out of memory"
    if code == 137:  # SIGKILL, and no one asked Docker to stop it: the kernel's OOM killer, nearly always
        return "exited with code 137 (killed by SIGKILL: out of memory, most likely)"
    return f"exited with code {code}"


def in_a_loop(crashes: list[dict], process: str, now: datetime.datetime) -> bool:
    """Whether ``process`` crashed LOOP_COUNT times in the last LOOP_SECONDS."""
    recent = [c for c in crashes if c["process"] == process
              and (now - datetime.datetime.fromisoformat(c["at"])).total_seconds() <= LOOP_SECONDS]
    return len(recent) >= LOOP_COUNT


def read(app_dir: Path) -> list[dict]:
    return state.read_jsonl(app_dir / CRASH_FILE)


def collect(server, read_events, restarting, restarted) -> list[dict]:
    """Read Docker's events since the last read, keep each new crash in its app's folder;
    return them. ``read_events(since, until)``: the decoded container events of zdd's apps
    and whether they are all (see crashes_in for ``restarting``); when not, ``restarted(since)``
    (see crashes_not_in_events) fills the gap. Whoever holds the lock reads; the others go
    on with what is recorded."""
    watch_dir = server.root / WATCH_DIR
    watch_dir.mkdir(exist_ok=True)
    with state.lock_if_free(watch_dir, LOCK) as free:
        if not free:
            return []
        cursor_path = watch_dir / CURSOR_FILE
        now = datetime.datetime.now(datetime.timezone.utc).timestamp()
        since = _cursor(cursor_path, now)
        events, complete = read_events(since - OVERLAP, now)
        found = crashes_in(events, since, restarting)
        if not complete:
            found += crashes_not_in_events(restarted(since), since, found)
        for crash in found:
            _keep(server.app_dir(crash["app"]), crash)
        state.write_json_atomic(cursor_path, {"until": now})
        return found


def _cursor(path: Path, now: float) -> float:
    """Up to when the events were read; never before (a new or upgraded server): the last
    FIRST_LOOK seconds."""
    try:
        return float(state.read_json(path)["until"])
    except (TypeError, KeyError, ValueError):
        return now - FIRST_LOOK


def _keep(app_dir: Path, crash: dict) -> None:
    if not app_dir.is_dir():
        return  # destroyed meanwhile
    state.keep_last_jsonl(app_dir / CRASH_FILE, crash, KEPT)
