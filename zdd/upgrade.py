"""`zdd db upgrade`: a major Postgres upgrade that can be undone. The new version runs in a
container and volume of its own, prepared while the app serves; behind the maintenance page
the old database turns read-only, is dumped into the new one, and the app restarts on it
health-gated. Any failure before the app is healthy on the new version leaves it on the old
one, writable, with maintenance off. The old container is only stopped, its volume untouched,
so that `--undo` is a switch back."""

import contextlib
import dataclasses
import time
from typing import Callable

from zdd import appenv, backups, caddy, databases, deploy, engine, ops, pipes, restore, routing, services, state
from zdd.errors import InvalidInput, ZddError

Emit = Callable[[str], None]


class UpgradeFailed(ZddError):
    pass


def upgrade(app, runtime, kind: str, version: str | None, image: str | None, emit: Emit) -> None:
    old = services.find(app.services, app.name, kind)
    image = _target_image(app, old, version, image)
    client = runtime.client
    engine.ensure_image(client, image, emit)
    with state.deploy_lock(app.dir, emit):
        _clear_interrupted(app, runtime, old, emit)
        new = services.upgraded(old, image, _free_generation(client, old), state.now_iso())
        emit(f"==> Upgrading {kind} of {app.name}: {old.image} -> {image}")
        emit("    first, a safety backup:")
        safety = backups.backup(app, client, lambda line: emit(f"  {line}"), reason=f"before upgrading {kind} to {image}")
        _start(app, runtime, new, emit)
        window = _MaintenanceWindow(app, runtime, emit)
        try:
            with window:
                _move_data(client, old, new, emit)
                deploy.injected_fault("upgrade-move")
                _switch_and_restart(app, runtime, old, new, emit)
        except ZddError as error:
            runtime.remove_data(app, new)
            engine.remove_volume(client, new.volume)
            raise UpgradeFailed(f"{error}: {app.name} stays on {old.image}, as it was "
                                f"(safety backup {safety['id']})") from None
        finally:
            _set_read_only(client, old, False)
        runtime.stop_data(app, old)
        _record(app, runtime, old, new, safety["id"], window.seconds, emit)
    emit(f"{kind} of {app.name} is upgraded: {old.image} -> {image}, data in volume {new.volume}; "
         f"{app.name} was in maintenance for {window.seconds:.1f}s")
    emit(f"    the old {kind} is stopped, its volume {old.volume} untouched: "
         f"`zdd db upgrade {app.name} {kind} --undo` goes back to it")


def undo(app, runtime, kind: str, emit: Emit) -> None:
    current = services.find(app.services, app.name, kind)
    upgrades = services.read_upgrades(app.dir)
    record = upgrades.get(kind)
    if record is None or record["to"] != current:
        raise InvalidInput(f"{app.name} has no upgrade of {kind} to undo (`zdd db list {app.name}` shows what runs)")
    old = record["from"]
    with state.deploy_lock(app.dir, emit):
        emit(f"==> Undoing the upgrade of {kind} of {app.name}: {current.image} -> {old.image}")
        container = runtime.resume_data(app, old)
        databases.wait_healthy(runtime.client, container, kind)
        try:
            _switch_and_restart(app, runtime, current, old, emit)
        except ZddError as error:
            runtime.stop_data(app, old)
            raise UpgradeFailed(f"{error}: {app.name} stays on {current.image}") from None
        runtime.remove_data(app, current)
        del upgrades[kind]
        services.write_upgrades(app.dir, upgrades)
    emit(f"{kind} of {app.name} is back on {old.image} with the data it had at the upgrade ({record['at']}); "
         f"what was written since is in volume {current.volume}, kept (`docker volume rm {current.volume}` deletes it)")


def _target_image(app, old, version: str | None, image: str | None) -> str:
    if old.kind != "postgres":
        raise InvalidInput(f"{old.kind} reads the data files of older versions: `zdd db destroy {app.name} {old.kind}` "
                           f"then `zdd db create {app.name} {old.kind} --version V` keeps its data")
    if version is None and image is None:
        raise InvalidInput(f"give the version to upgrade to: zdd db upgrade {app.name} {old.kind} 17 (or --image IMAGE)")
    image = services.image_for(old.kind, version, image)
    if image == old.image:
        raise InvalidInput(f"{old.kind} of {app.name} already runs {image}")
    return image


def _clear_interrupted(app, runtime, old, emit: Emit) -> None:
    """What an upgrade killed before its switch left: the old database read-only, and the new
    version's container and volume (a partial copy that never served) with a later generation."""
    _set_read_only(runtime.client, old, False)
    for container in engine.service_containers(runtime.client, app.name):
        generation = services.generation_of(container.name)
        if container.labels.get("zdd.data") == old.kind and generation is not None and generation > old.generation:
            leftover = services.upgraded(old, old.image, generation, "")
            runtime.remove_data(app, leftover)
            engine.remove_volume(runtime.client, leftover.volume)
            emit(f"    removed {leftover.container} and its volume, left by an upgrade that was interrupted")


def _free_generation(client, old) -> int:
    """The next generation whose volume does not exist (an undone upgrade's volume is kept)."""
    generation = old.generation + 1
    while engine.volume_exists(client, services.upgraded(old, old.image, generation, "").volume):
        generation += 1
    return generation


def _start(app, runtime, new, emit: Emit) -> None:
    emit(f"    starting {new.image} as {new.container}, data in volume {new.volume}, while {app.name} serves")
    try:
        container = runtime.start_data(app, new, databases.labels(new))
        databases.wait_healthy(runtime.client, container, new.kind)
    except ZddError as error:
        runtime.remove_data(app, new)
        engine.remove_volume(runtime.client, new.volume)
        raise UpgradeFailed(f"{error}: {app.name} stays on its database, as it was") from None


class _MaintenanceWindow:
    """Maintenance on for the block (unless it was on already: then it stays on), and how long."""

    def __init__(self, app, runtime, emit: Emit):
        self.app, self.runtime, self.emit = app, runtime, emit
        self.seconds = 0.0

    def __enter__(self):
        self.was_on = caddy.maintenance_since(routing.route_dir(self.app.server, self.app.name)) is not None
        if not self.was_on and self.app.live():
            ops.maintenance(self.app, self.runtime, True, None, self.emit)
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.seconds = time.monotonic() - self.started
        if self.was_on:
            self.emit(f"    maintenance was on before: it stays on (`zdd maintenance {self.app.name} off`)")
        elif self.app.live():
            ops.maintenance(self.app, self.runtime, False, None, self.emit)
        return False


def _move_data(client, old, new, emit: Emit) -> None:
    """The old database read-only (its connections ended, so that none writes on), dumped into
    the new one in one transaction."""
    source, target = backups.running_container(client, old), backups.running_container(client, new)
    started = time.monotonic()
    _set_read_only(client, old, True)
    restore.psql(source, old, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              f"WHERE datname = '{old.user}' AND pid <> pg_backend_pid()")
    dump = engine.exec_argv(source.name, ["pg_dump", "--format=custom", "--compress=0", "-U", old.user, "-d", old.user])
    dump_failed, restore_failed = pipes.pipe(dump, restore.pg_restore_argv(new, new.user, target.name))
    if dump_failed or restore_failed:
        raise UpgradeFailed(f"moving the data failed: {dump_failed or restore_failed}")
    emit(f"    moved the data: pg_dump | pg_restore in {time.monotonic() - started:.1f}s")


def _set_read_only(client, service, read_only: bool) -> None:
    """New sessions of the app's database read-only (or as before); its own setting, so that
    what the dump carries is the data, not this."""
    container = engine.data_container(client, service)
    if container is None:
        return
    setting = "SET default_transaction_read_only = on" if read_only else "RESET default_transaction_read_only"
    restore.psql(container, service, f'ALTER DATABASE "{service.user}" {setting}')


def _switch_and_restart(app, runtime, current, to, emit: Emit) -> None:
    """services.json and the app's URL name ``to``; the app restarts on it, health-gated. Back
    to ``current`` if it does not get healthy."""
    _switch(app, current, to, emit)
    if app.live() is None:
        return
    try:
        fresh = dataclasses.replace(app)  # an App reads its env and services once: these just changed
        ops.restart(fresh, runtime, emit, lock_held=True)
    except ZddError:
        _switch(app, to, current, lambda line: None)
        raise


def _switch(app, current, to, emit: Emit) -> None:
    services.write(app.dir, services.replaced(services.read(app.dir), to))
    env_var = to.spec.env_var
    if appenv.read(app.dir).get(env_var) == current.url():
        appenv.update(app.dir, {env_var: to.url()}, [])
    else:
        emit(f"    {env_var} in {app.name}'s env is not zdd's {current.kind}: left as it is")


def _record(app, runtime, old, new, backup_id: str, seconds: float, emit: Emit) -> None:
    """What --undo needs; an earlier upgrade's old container goes (its volume stays)."""
    upgrades = services.read_upgrades(app.dir)
    earlier = upgrades.get(new.kind)
    if earlier is not None:
        runtime.remove_data(app, earlier["from"])
        emit(f"    removed {earlier['from'].container}, left from the upgrade before; its data stays in volume "
             f"{earlier['from'].volume} (`docker volume rm {earlier['from'].volume}` deletes it)")
    upgrades[new.kind] = {"from": old, "to": new, "at": state.now_iso(), "backup": backup_id,
                          "maintenance_seconds": round(seconds, 1)}
    services.write_upgrades(app.dir, upgrades)
