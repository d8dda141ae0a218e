"""Running the live version's scheduled jobs (zdd.toml's [cron], see zdd.cron).

The server's minute timer starts each job that is due as a detached `zdd cron APP run JOB
--scheduled`, so that a long job never holds up the timer; each run is a one-off container
of the live image with the app's env, storage, databases and limit (run's), as `zdd run`.
A job never runs twice at once: a run that finds the previous one still going is skipped,
and says so. Each run's outcome, exit code, duration and last lines are kept (bounded) in
the app's cron.jsonl.
"""

import datetime
import secrets
import subprocess
import sys
import time
from typing import Callable

from zdd import cron, engine, generation, processes, state
from zdd.errors import InvalidInput, ZddError

Emit = Callable[[str], None]
RUNS_FILE = "cron.jsonl"
STARTED_FILE = "cron-started.json"   # job -> the minute the timer last started it for
KEPT_RUNS = 200
KEPT_LINES, LINE_CHARS = 20, 300


def live_jobs(app) -> tuple[dict | None, tuple[cron.Job, ...]]:
    """The live record, and the jobs its version's zdd.toml declares."""
    live = app.live()
    return live, (app.repo_config_at(live["sha"]).cron if live else ())


def job_named(app, name: str) -> tuple[dict, cron.Job]:
    live, jobs = live_jobs(app)
    if live is None:
        raise ZddError(f"{app.name} has nothing live: its jobs come from the live version's zdd.toml")
    job = next((j for j in jobs if j.name == name), None)
    if job is None:
        raise InvalidInput(f"{app.name} has no cron job {name!r}: its live zdd.toml declares "
                           f"{', '.join(j.name for j in jobs) or 'none'}")
    return live, job


def run(app, client, name: str, emit: Emit, scheduled: bool = False) -> dict:
    """Run job ``name`` of the live version now, to its end or its timeout; the run's record."""
    live, job = job_named(app, name)
    with state.lock_if_free(app.dir, f"cron-{job.name}.lock") as free:
        if not free:
            record = _record(job, live, "skipped", reason="the previous run is still going", scheduled=scheduled)
            emit(f"{app.name}: cron job {job.name} skipped: the previous run is still going")
        else:
            record = _run_locked(app, client, job, live, emit, scheduled)
    state.keep_last_jsonl(app.dir / RUNS_FILE, record, KEPT_RUNS)
    return record


def _run_locked(app, client, job: cron.Job, live: dict, emit: Emit, scheduled: bool) -> dict:
    image = engine.find_image(client, live["image"])
    if image is None:
        return _record(job, live, "failed", reason=f"the live image {live['image']} is missing", scheduled=scheduled)
    labels = {**generation.labels(app.name, live["sha"], live["ref"], processes.RUN, live["deploy_id"]),
              "zdd.cron": job.name}
    name = f"zdd-{app.name}-cron-{job.name}-{secrets.token_hex(3)}"
    started, began = state.now_iso(), time.monotonic()
    code, tail = engine.run_to_completion(client, image, name, labels, app.env, job.command, app.mounts,
                                          job.timeout, emit, network=app.network,
                                          limit=app.limits.of(processes.RUN))
    outcome = "ok" if code == 0 else "timed out" if code is None else "failed"
    return _record(job, live, outcome, exit_code=code, started_at=started, took=round(time.monotonic() - began, 1),
                   output=[line[:LINE_CHARS] for line in tail[-KEPT_LINES:]], scheduled=scheduled)


def _record(job: cron.Job, live: dict, outcome: str, **details) -> dict:
    return {"job": job.name, "sha": live["sha"], "outcome": outcome, "finished_at": state.now_iso(),
            "exit_code": None, "took": None, "reason": None, "output": [], **details}


def runs(app) -> list[dict]:
    return state.read_jsonl(app.dir / RUNS_FILE)


def start_due(server, load_app, now: datetime.datetime, emit: Emit) -> int:
    """The timer's part: start, detached, each job of each app that is due this minute."""
    started = 0
    for name in server.app_names():
        app = load_app(name)
        if app.settings.preview_of:
            continue  # a preview runs no scheduled jobs: they would act twice on what the parent's act on
        live, jobs = live_jobs(app)
        marks = state.read_json(app.dir / STARTED_FILE) or {}
        due = [job for job in jobs if cron.due(job, now, marks.get(job.name))]
        if not due:
            continue
        minute = now.replace(second=0, microsecond=0).isoformat()
        state.write_json_atomic(app.dir / STARTED_FILE, {**marks, **{job.name: minute for job in due}})
        for job in due:
            subprocess.Popen([sys.executable, "-m", "zdd.cli", "--root", str(server.root), "cron", name, "run",
                              job.name, "--scheduled"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
            emit(f"{name}: started cron job {job.name} ({job.schedule})")
            started += 1
    return started


def status_lines(app, live: dict | None) -> list[str]:
    """`zdd status`'s lines on the live version's jobs whose last run failed."""
    last: dict[str, dict] = {}
    for record in runs(app):
        if record["outcome"] != "skipped":
            last[record["job"]] = record
    if not live or all(record["outcome"] == "ok" for record in last.values()):
        return []  # nothing to say: no need to read the live zdd.toml from git
    lines = []
    for job in app.repo_config_at(live["sha"]).cron:
        record = last.get(job.name)
        if record and record["outcome"] != "ok":
            code = "" if record["exit_code"] is None else f" (exit code {record['exit_code']})"
            lines.append(f"  cron job {job.name} {record['outcome'].upper()} at {record['finished_at']}{code}: "
                         f"`zdd cron {app.name}` shows its last lines")
    return lines
