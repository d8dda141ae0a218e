"""`zdd restore` and `zdd backup --check`. A restore takes a safety backup, prepares what it
can while the app still serves (Postgres restores into a database of its own), stops the
app's processes only for the swap, and starts them again. A check restores into scratch
containers with no network, which the live app never sees."""

import re
import secrets
import tarfile
import time
from typing import Callable

from zdd import backup_target, backups, databases, engine, pipes, restic, services, state, storage
from zdd.backups import BackupFailed, Item
from zdd.errors import ZddError

Emit = Callable[[str], None]
CHECK_LOG = "backup-checks.jsonl"
RESTORED_DB = "{}_zdd_restored"
REPLACED_DB = "{}_zdd_replaced"


def restore(app, runtime, backup_id: str | None, only: str | None, emit: Emit) -> None:
    entry = backups.find_backup(app, backup_id)
    chosen = backups.chosen_items(entry, only)
    targets = {item["item"]: _target(app, Item(item["item"])) for item in chosen}
    repo = backup_target.repository(app)
    emit(f"==> Restoring {app.name} from backup {entry['id']} ({', '.join(targets)})")
    emit("    first, a safety backup of what is there now:")
    safety = backups.backup(app, runtime.client, lambda line: emit(f"  {line}"), reason=f"before restoring {entry['id']}")
    for item in chosen:
        if item["item"] == "postgres":
            emit("    restoring postgres into a database of its own while the app keeps serving")
            _restore_postgres_aside(repo, item, targets["postgres"], runtime.client)
    live = app.live()
    stopped_since = time.monotonic()
    stopped = runtime.stop_processes(app, live) if live else []
    if stopped:
        emit(f"    stopped {app.name}'s web and workers ({len(stopped)} containers) for the swap")
    try:
        for item in chosen:
            _put_in_place(repo, item, targets[item["item"]], runtime, app, emit)
    except ZddError as error:
        raise BackupFailed(f"{error}: the safety backup {safety['id']} holds what was there before "
                           f"(zdd restore {app.name} {safety['id']})") from None
    finally:
        if stopped:
            runtime.start_processes(app, live, stopped, emit)
            emit(f"    {app.name} was stopped for {time.monotonic() - stopped_since:.1f}s and serves again")
    emit(f"restored {app.name} to backup {entry['id']}; the safety backup is {safety['id']}")


def seed(repo, entry: dict, app, runtime, emit: Emit) -> None:
    """Put the databases of ``entry`` (a backup of another app: a preview's parent) into the
    app's own, new and empty ones; its storage items are not the app's and stay out."""
    kinds = {s.kind for s in app.services}
    for item in entry["items"]:
        if item["item"] not in kinds:
            continue
        service = services.find(app.services, app.name, item["item"])
        if item["item"] == "postgres":
            container = backups.running_container(runtime.client, service)
            _pipe_from(repo, item, pg_restore_argv(service, service.user, container.name, ["--no-privileges"]),
                       "postgres")
            emit(f"    postgres: filled from backup {entry['id']}")
        else:
            _put_in_place(repo, item, service, runtime, app, emit)


def _target(app, item: Item):
    """What the item restores into, which must exist now: the service, or the storage mount."""
    if item.name.startswith("storage:"):
        return backups.mount_named(app, item.name.split(":", 1)[1])
    return services.find(app.services, app.name, item.name)


CLEAR_THEN_UNPACK = ["sh", "-c", f"cd /data && {engine.STATIC_BUSYBOX} find . -mindepth 1 -maxdepth 1 "
                     f"-exec {engine.STATIC_BUSYBOX} rm -rf {{}} + && {engine.STATIC_BUSYBOX} tar -xf - -C /data"]


def _put_in_place(repo, item: dict, target, runtime, app, emit: Emit) -> None:
    name, client = item["item"], runtime.client
    if name == "postgres":
        _swap_postgres(client, target)
    elif name == "redis":  # the backup holds dump.rdb as `docker cp` gave it: a tar of that one file
        runtime.stop_data(app, target)
        try:
            _pipe_from(repo, item, engine.helper_argv(client, _volume_of(target), ["tar", "-xf", "-", "-C", "/data"],
                                                      stdin=True), "redis")
        finally:
            container = runtime.resume_data(app, target)
        databases.wait_healthy(client, container, "redis")
    else:
        _pipe_from(repo, item, engine.helper_argv(client, target, CLEAR_THEN_UNPACK, stdin=True), name)
    emit(f"    {name}: restored")


def _volume_of(service) -> storage.Mount:
    return storage.Mount(service.kind, "volume", service.volume, "/data")


# ---- Postgres -----------------------------------------------------------------------------

def _restore_postgres_aside(repo, item: dict, service, client) -> None:
    container = backups.running_container(client, service)
    aside = RESTORED_DB.format(service.user)
    psql(container, service, f'DROP DATABASE IF EXISTS "{aside}"')
    psql(container, service, f'CREATE DATABASE "{aside}" OWNER "{service.user}"')
    try:
        _pipe_from(repo, item, pg_restore_argv(service, aside, container.name), "postgres")
    except ZddError:
        psql(container, service, f'DROP DATABASE IF EXISTS "{aside}"')
        raise


def _swap_postgres(client, service) -> None:
    """The restored database takes the live one's name; the replaced one is dropped (the safety
    backup holds it). Connections left to the live database are ended first."""
    container = backups.running_container(client, service)
    live, aside, replaced = service.user, RESTORED_DB.format(service.user), REPLACED_DB.format(service.user)
    psql(container, service, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              f"WHERE datname = '{live}' AND pid <> pg_backend_pid()")
    psql(container, service, f'ALTER DATABASE "{live}" RENAME TO "{replaced}"')
    try:
        psql(container, service, f'ALTER DATABASE "{aside}" RENAME TO "{live}"')
    except ZddError:
        psql(container, service, f'ALTER DATABASE "{replaced}" RENAME TO "{live}"')
        raise
    psql(container, service, f'DROP DATABASE "{replaced}"')


def pg_restore_argv(service, database: str, container: str, extra: list[str] = ()) -> list[str]:
    return engine.exec_argv(container,
                            ["pg_restore", "-U", service.user, "-d", database, "--no-owner", "--exit-on-error",
                             "--single-transaction", *extra], stdin=True)


def psql(container, service, sql: str, database: str = "postgres") -> str:
    code, output = engine.exec_output(container, ["psql", "-U", service.user, "-d", database, "-v", "ON_ERROR_STOP=1",
                                                  "-At", "-c", sql])
    if code != 0:
        raise BackupFailed(f"postgres: {restic.last_line(output)}")
    return output


# ---- checking -----------------------------------------------------------------------------

def check(app, client, backup_id: str | None, emit: Emit) -> None:
    """Restore the backup into scratch containers and report what each holds; BackupFailed
    naming every part that does not restore."""
    entry = backups.find_backup(app, backup_id)
    repo = backup_target.repository(app)
    emit(f"==> Checking backup {entry['id']} of {app.name}: restoring it where the live app never looks")
    failures = []
    try:
        restic.check(repo)
        emit(f"    the repository {repo.where} is consistent")
    except restic.ResticError as error:
        failures.append(str(error))
    for item in entry["items"]:
        try:
            emit(f"    {item['item']}: restores, {_check_item(app, client, repo, item)}")
        except ZddError as error:
            failures.append(f"{item['item']}: {error}")
            emit(f"    {item['item']}: FAILED: {error}")
    outcome = {"id": entry["id"], "checked_at": state.now_iso(), "outcome": "failed" if failures else "ok"}
    state.append_jsonl(app.dir / CHECK_LOG, outcome if not failures else {**outcome, "error": failures[0]})
    if failures:
        raise BackupFailed(f"backup {entry['id']} of {app.name} does not restore: {'; '.join(failures)}")
    emit(f"backup {entry['id']} restores")


def _check_item(app, client, repo, item: dict) -> str:
    name = item["item"]
    if name.startswith("storage:"):
        return _check_archive(repo, item)
    service = services.find(app.services, app.name, name)
    scratch = engine.scratch_service(client, services.scratch_copy(service),
                                     f"{service.container}-check-{secrets.token_hex(3)}", {"zdd.check-of": app.name})
    try:
        if name == "postgres":
            scratch.start()
            databases.wait_healthy(client, scratch, "the scratch postgres")
            _pipe_from(repo, item, pg_restore_argv(service, service.user, scratch.name), "postgres")
            return _postgres_contents(scratch, service)
        _pipe_from(repo, item, engine.copy_in_argv(scratch.name, "/data"), "redis")
        scratch.start()
        databases.wait_healthy(client, scratch, "redis with the backup's dump")
        _, keys = engine.exec_output(scratch, ["redis-cli", "DBSIZE"])
        return f"{keys.strip()} keys"
    finally:
        engine.remove(scratch)


COUNT_TABLES_AND_ROWS = (
    "SELECT count(*), coalesce(sum((xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', "
    "table_schema, table_name), false, true, '')))[1]::text::bigint), 0) FROM information_schema.tables "
    "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_type = 'BASE TABLE'")


def _postgres_contents(container, service) -> str:
    """How many tables and rows; asked twice at most, since an exec's output came back empty
    once in many runs on a loaded machine."""
    for _ in range(2):
        output = psql(container, service, COUNT_TABLES_AND_ROWS, database=service.user)
        counts = re.search(r"^([0-9]+)\|([0-9]+)$", output, re.MULTILINE)
        if counts:
            return f"{counts.group(1)} tables, {counts.group(2)} rows"
    raise BackupFailed(f"postgres: could not count the restored tables and rows ({restic.last_line(output)})")


def _check_archive(repo, item: dict) -> str:
    dump = restic.dump_process(repo, item["snapshot"], Item(item["item"]).filename)
    files = size = 0
    try:
        with tarfile.open(fileobj=dump.stdout, mode="r|") as archive:
            for member in archive:
                files += member.isfile()
                size += member.size if member.isfile() else 0
    except tarfile.TarError as error:
        dump.kill()
        raise BackupFailed(f"not a whole archive ({error})") from None
    finally:
        errors = dump.stderr.read().decode("utf-8", "replace")
        dump.stdout.close()
        dump.wait()
    if dump.returncode != 0:
        raise BackupFailed(f"reading it failed: {restic.last_line(errors)}")
    return f"{files} files, {backups.size_text(size)}"


# ---- plumbing -----------------------------------------------------------------------------

def _pipe_from(repo, item: dict, consumer_argv: list[str], what: str) -> None:
    """``restic dump`` of the item's file into the consumer's standard input."""
    dump = restic.dump_command(repo, item["snapshot"], Item(item["item"]).filename)
    unread, untaken = pipes.pipe(dump, consumer_argv, producer_env=repo.env())
    if unread:
        raise BackupFailed(f"reading the backup failed: {unread}")
    if untaken:
        raise BackupFailed(f"{what} did not take it: {untaken}")
