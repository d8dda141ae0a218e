"""Backups of an app's data: each of its services and storage mounts, streamed into the app's
restic repository (one snapshot per item, all tagged with the backup's id), listed from
that repository and the app's backup log, restored after a safety backup, and checked by
restoring into scratch containers that the live app never sees."""

import contextlib
import dataclasses
import datetime
import secrets
import subprocess
import tempfile
import time
from typing import Callable

from zdd import engine, notify, restic, schedule, services, state
from zdd.backup_target import repository
from zdd.errors import InvalidInput, ZddError

Emit = Callable[[str], None]
LOG_FILE = "backups.jsonl"
LOCK_FILE = "backup.lock"   # one backup or restore of an app at a time


class BackupFailed(ZddError):
    """A backup, restore or check did not complete; what is live was not changed."""


@dataclasses.dataclass(frozen=True)
class Item:
    """One thing a backup holds: a service ("postgres", "redis") or a storage mount ("storage:NAME")."""

    name: str

    @property
    def filename(self) -> str:
        return {"postgres": "postgres.dump", "redis": "redis.tar"}.get(self.name) or \
            f"storage-{self.name.split(':', 1)[1]}.tar"


def items_of(app) -> list[Item]:
    return [Item(s.kind) for s in app.services] + [Item(f"storage:{m.name}") for m in app.mounts]


def new_backup_id() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


# ---- taking a backup -------------------------------------------------------------------

def backup(app, client, emit: Emit, reason: str = "manual") -> dict:
    """Back up every service and storage mount of the app; the log entry (outcome ok or failed)."""
    items = items_of(app)
    if not items:
        raise InvalidInput(f"{app.name} has nothing to back up: no database (zdd db create) and no storage")
    repo = repository(app)
    backup_id, started = new_backup_id(), time.monotonic()
    entry = {"id": backup_id, "started_at": state.now_iso(), "reason": reason, "where": repo.where, "items": []}
    emit(f"==> Backing up {app.name} ({', '.join(i.name for i in items)}) as {backup_id}")
    try:
        restic.ensure_initialised(repo)
        for item in items:
            entry["items"].append(_backup_item(app, client, repo, item, backup_id, emit))
    except ZddError as error:
        restic_ids = [i["snapshot"] for i in entry["items"]]
        _forget_quietly(repo, restic_ids)
        entry.update(outcome="failed", error=str(error), items=[])
        raise BackupFailed(f"backup {backup_id} of {app.name} failed: {error}") from None
    else:
        entry["outcome"] = "ok"
        emit(f"    backup {backup_id} stored in {repo.where} "
             f"({size_text(sum(i['bytes'] for i in entry['items']))}, {size_text(sum(i['added'] for i in entry['items']))} new)")
        return entry
    finally:
        entry.update(finished_at=state.now_iso(), seconds=round(time.monotonic() - started, 1))
        state.append_jsonl(app.dir / LOG_FILE, entry)


def _backup_item(app, client, repo, item: Item, backup_id: str, emit: Emit) -> dict:
    started = time.monotonic()
    producer = _producer(app, client, item)
    tags = [f"app:{app.name}", f"backup:{backup_id}", f"item:{item.name}"]
    summary = _stream_into(repo, producer, item, tags)
    emit(f"    {item.name}: {size_text(summary['total_bytes_processed'])} in {time.monotonic() - started:.1f}s")
    return {"item": item.name, "snapshot": summary["snapshot_id"], "bytes": summary["total_bytes_processed"],
            "added": summary.get("data_added", 0)}


def _producer(app, client, item: Item) -> list[str]:
    """The command whose standard output is what the backup stores."""
    if item.name == "postgres":
        service = services.find(app.services, app.name, "postgres")
        container = running_container(client, service)
        # uncompressed, so that restic finds what did not change (pg_dump's own compression
        # would make every backup new from the first changed row on)
        return engine.exec_argv(container.name, ["pg_dump", "--format=custom", "--compress=0",
                                                    "-U", service.user, "-d", service.user])
    if item.name == "redis":
        service = services.find(app.services, app.name, "redis")
        container = running_container(client, service)
        _save_redis(container)
        return engine.copy_out_argv(container.name, "/data/dump.rdb")
    mount = mount_named(app, item.name.split(":", 1)[1])
    return engine.helper_argv(client, mount, ["tar", "-cf", "-", "-C", "/data", "."], read_only=True)


def _stream_into(repo, producer_argv: list[str], item: Item, tags: list[str]) -> dict:
    with tempfile.TemporaryFile() as errors:
        producer = subprocess.Popen(producer_argv, stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL)
        try:
            summary = restic.backup_stream(repo, producer.stdout, item.filename, tags)
        except restic.ResticError:
            producer.kill()
            raise
        finally:
            producer.stdout.close()
            code = producer.wait()
        if code != 0:
            _forget_quietly(repo, [summary["snapshot_id"]])
            errors.seek(0)
            raise BackupFailed(f"{item.name}: {restic.last_line(errors.read().decode('utf-8', 'replace'))}")
    return summary


def running_container(client, service):
    container = engine.data_container(client, service)
    if container is None:
        raise BackupFailed(f"{service.kind} of {service.app} is not running: `zdd db list {service.app}` shows it")
    return container


def _save_redis(container, timeout: float = 300) -> None:
    """BGSAVE, then wait until Redis has written dump.rdb (its count of saves moves on)."""
    before = _redis_persistence(container).get("rdb_saves", "0")
    code, said = engine.exec_output(container, ["redis-cli", "BGSAVE"])
    if code != 0 or ("ERR" in said and "in progress" not in said):
        raise BackupFailed(f"redis refused BGSAVE: {said.strip()}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = _redis_persistence(container)
        if now.get("rdb_saves", "0") != before and now.get("rdb_bgsave_in_progress") == "0":
            if now.get("rdb_last_bgsave_status") != "ok":
                raise BackupFailed("redis could not write its dump (rdb_last_bgsave_status is not ok)")
            return
        time.sleep(0.05)
    raise BackupFailed(f"redis did not finish BGSAVE within {timeout:g}s")


def _redis_persistence(container) -> dict[str, str]:
    _, info = engine.exec_output(container, ["redis-cli", "INFO", "persistence"])
    return dict(line.strip().split(":", 1) for line in info.splitlines() if ":" in line)


def mount_named(app, name: str):
    for mount in app.mounts:
        if mount.name == name:
            return mount
    raise BackupFailed(f"{app.name} has no storage named {name!r} any more")


def _forget_quietly(repo, snapshot_ids: list[str]) -> None:
    try:
        restic.forget(repo, snapshot_ids)
    except restic.ResticError:
        pass


def locked(app):
    """Hold the app's backup lock, waiting for a backup or restore that holds it."""
    return state.file_lock(app.dir / LOCK_FILE)


# ---- on schedule --------------------------------------------------------------------------

def run_due(server, client, load_app, emit: Emit) -> int:
    """`zdd backup-due`, each minute from the system's timer: back up every app whose
    schedule says so, then apply its retention. Returns how many failed."""
    failed = 0
    now = datetime.datetime.now(datetime.timezone.utc)
    for name in server.app_names():
        app = load_app(name)
        plan = schedule.read(app.dir)
        if plan is None or not schedule.is_due(plan, state.read_jsonl(app.dir / LOG_FILE), now):
            continue
        with state.lock_if_free(app.dir, LOCK_FILE) as free:
            if not free:
                emit(f"{name}: a backup or restore is running: the next minute tries again")
                continue
            try:
                backup(app, client, emit, reason="scheduled")
                restic.forget_by_policy(repository(app), plan.keep)
                emit(f"    kept by policy: {', '.join(f'{count} {unit}' for unit, count in plan.keep.items())}")
                _tell_webhooks(app, "the scheduled backup succeeded")
            except ZddError as error:
                failed += 1
                emit(f"{name}: FAILED: {error}")
                _tell_webhooks(app, f"the scheduled backup FAILED: {error}")
    return failed


def _tell_webhooks(app, reason: str) -> None:
    live = app.live()
    with contextlib.suppress(Exception):  # a webhook problem never changes a backup's outcome
        notify.send(app.server.root, notify.event("backup", app.name, live and live["sha"], reason))


def schedule_warning(app, log: list[dict] | None = None) -> str | None:
    """What a push or `zdd status` says about the scheduled backups; nothing read when none are scheduled."""
    plan = schedule.read(app.dir)
    if plan is None:
        return None
    return schedule.warning(plan, state.read_jsonl(app.dir / LOG_FILE) if log is None else log,
                            datetime.datetime.now(datetime.timezone.utc))


def status_lines(app) -> list[str]:
    """`zdd status`: the last backup and the schedule, and any warning about them."""
    log = state.read_jsonl(app.dir / LOG_FILE)
    plan = schedule.read(app.dir)
    lines = []
    if log or plan:
        last = log[-1] if log else None
        said = f"last {last['id']} {last['outcome']} ({last['reason']})" if last else "none yet"
        lines.append(f"  backups: {said}; " + (f"every {plan.period}" if plan else "no schedule"))
    warning = schedule_warning(app, log)
    if warning:
        lines.append(f"  warning: {warning}")
    return lines


# ---- listing ------------------------------------------------------------------------------

def listing(app) -> list[dict]:
    """Every backup the log knows, newest first, each marked present when its snapshots are
    still in the repository (a failed one never has any)."""
    entries = state.read_jsonl(app.dir / LOG_FILE)
    present = _stored_ids(app) if any(e.get("outcome") == "ok" for e in entries) else set()
    for entry in entries:
        entry["stored"] = entry["id"] in present
    return list(reversed(entries))


def _stored_ids(app) -> set[str]:
    repo = repository(app)
    tags = {tag for snap in restic.snapshots(repo) for tag in snap.get("tags") or []}
    return {tag.split(":", 1)[1] for tag in tags if tag.startswith("backup:")}


def find_backup(app, backup_id: str | None) -> dict:
    """The named backup, or the newest good one; it must still be stored."""
    stored = [e for e in listing(app) if e.get("outcome") == "ok" and e["stored"]]
    if backup_id is None:
        if not stored:
            raise InvalidInput(f"{app.name} has no stored backup yet: take one with zdd backup {app.name}")
        return stored[0]
    for entry in stored:
        if entry["id"] == backup_id:
            return entry
    raise InvalidInput(f"{app.name} has no stored backup {backup_id!r}: `zdd backups {app.name}` lists them")


def chosen_items(entry: dict, only: str | None) -> list[dict]:
    if only is None:
        return entry["items"]
    picked = [i for i in entry["items"] if i["item"] == only]
    if not picked:
        held = ", ".join(i["item"] for i in entry["items"])
        raise InvalidInput(f"backup {entry['id']} holds no {only} (it holds: {held})")
    return picked


def size_text(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TB"

