"""`zdd db`: a Postgres or Redis beside an app, on the app's own network, its URL in the
app's env. Creating one is checked before anything is written: an unknown type, a second of
the same type or an image that cannot be had leaves nothing behind."""

import subprocess
from typing import Callable

from zdd import appenv, backups, engine, health, services, state
from zdd.errors import ContainerFailed, InvalidInput, ZddError

Emit = Callable[[str], None]


def labels(service) -> dict:
    return {engine.DATA_LABEL: service.app, "zdd.data": service.kind}


def create(app, runtime, kind: str, version: str | None, image: str | None, emit: Emit) -> None:
    image = services.image_for(kind, version, image)
    service = services.new_service(app.name, kind, image, state.now_iso())
    listed = services.added(app.services, service)
    if service.spec.env_var in app.env:
        raise InvalidInput(f"{app.name} already has {service.spec.env_var} in its env: "
                           f"`zdd env {app.name} unset {service.spec.env_var}` first, if zdd should run {kind}")
    client = runtime.client
    emit(f"==> Starting {kind} for {app.name} ({image})")
    engine.ensure_image(client, image, emit)
    if engine.volume_exists(client, service.volume):
        emit(f"    using the data kept in volume {service.volume}")
    try:
        container = runtime.start_data(app, service, labels(service))
        wait_healthy(client, container, kind)
        _set_password(container, service)
    except ZddError:
        runtime.remove_data(app, service)
        engine.remove_volume(client, service.volume)
        if not app.services:
            runtime.remove_app_network(app)
        raise
    services.write(app.dir, listed)
    appenv.update(app.dir, {service.spec.env_var: service.url()}, [])
    emit(f"    {kind} is running: {service.container}, data in volume {service.volume}")
    emit(f"    {service.spec.env_var} is set in {app.name}'s env: the next deploy or `zdd restart {app.name}` "
         "lets the app see it")


def _set_password(container, service) -> None:
    """Postgres keeps the password it was first given: data kept from an earlier service of
    this name gets the new one (over the local socket, which needs none)."""
    if service.kind != "postgres":
        return
    code, output = engine.exec_output(
        container, ["sh", "-c", 'psql -v ON_ERROR_STOP=1 -q -U "$POSTGRES_USER" -d postgres '
                                '-c "ALTER ROLE \\"$POSTGRES_USER\\" WITH PASSWORD \'$POSTGRES_PASSWORD\'"'])
    if code != 0:
        raise ContainerFailed(f"postgres did not take its password: {output.strip().splitlines()[-1:]}")


def wait_healthy(client, container, kind: str, timeout: float = services.START_TIMEOUT) -> None:
    """Healthy when Docker says so, or as soon as the container's own health command passes
    (Docker runs it only once a second); the error ends with the container's last log line."""
    container.reload()
    command = engine.health_command(container)
    probe = engine.HealthCommandProbe(client, container, command) if command else (lambda: False)
    try:
        health.wait_until_healthy(container, probe, timeout, 0.2, lambda line: None, docker_health=True)
    except ContainerFailed as error:
        tail = [line.strip() for line in engine.logs_tail(container, 5) if line.strip()]
        raise ContainerFailed(f"{kind} did not get healthy ({error})" + (f": {tail[-1]}" if tail else "")) from None


def rows(app, runtime) -> list[dict]:
    """`zdd db list`: each service with its image, state, volume, size and last backup."""
    last = _last_backups(app)
    upgrades = services.read_upgrades(app.dir)
    sizes = engine.volume_sizes(runtime.client) if app.services else {}
    found = []
    for service in app.services:
        container = engine.data_container(runtime.client, service)
        now = engine.state(container) if container is not None else {"status": "not running", "health": None}
        found.append({
            "service": service.kind, "image": service.image, "container": service.container,
            "state": now["health"] or now["status"], "volume": service.volume,
            "size_bytes": sizes.get(service.volume),
            "env": service.spec.env_var, "last_backup": last.get(service.kind),
            "upgraded_from": _upgraded_from(upgrades, service),
        })
    return found


def _upgraded_from(upgrades: dict, service) -> str | None:
    record = upgrades.get(service.kind)
    return record["from"].image if record and record["to"] == service else None


def _last_backups(app) -> dict[str, dict]:
    """The newest backup entry that covered each item (failed ones too: they are news)."""
    last: dict[str, dict] = {}
    for entry in state.read_jsonl(app.dir / backups.LOG_FILE):
        names = [i["item"] for i in entry.get("items", [])] or [i.name for i in backups.items_of(app)]
        for name in names:
            last[name] = {"id": entry["id"], "at": entry.get("finished_at"), "outcome": entry.get("outcome")}
    return last


def destroy(app, runtime, kind: str, with_data: bool, emit: Emit) -> None:
    service = services.find(app.services, app.name, kind)
    runtime.remove_data(app, service)
    _forget_upgrade(app, runtime, kind, with_data, emit)
    remaining = [s for s in app.services if s.kind != kind]
    services.write(app.dir, remaining)
    if app.env.get(service.spec.env_var) == service.url():
        appenv.update(app.dir, {}, [service.spec.env_var])
    if not remaining:
        runtime.remove_app_network(app)
    if with_data:
        engine.remove_volume(runtime.client, service.volume)
        emit(f"removed {kind} of {app.name} and its data (volume {service.volume})")
    else:
        emit(f"removed {kind} of {app.name}; its data stays in volume {service.volume} "
             f"(`zdd db destroy {app.name} {kind} --data` removes it; `docker volume rm {service.volume}` too)")
    emit(f"    {service.spec.env_var} is unset: the next deploy or `zdd restart {app.name}` applies it")


def _forget_upgrade(app, runtime, kind: str, with_data: bool, emit: Emit) -> None:
    """The stopped container an upgrade kept for --undo goes with the service (its volume too with --data)."""
    upgrades = services.read_upgrades(app.dir)
    record = upgrades.pop(kind, None)
    if record is None:
        return
    runtime.remove_data(app, record["from"])
    services.write_upgrades(app.dir, upgrades)
    if with_data:
        engine.remove_volume(runtime.client, record["from"].volume)
    emit(f"removed {record['from'].container}, kept since the upgrade from {record['from'].image}; its volume "
         f"{record['from'].volume} is {'removed' if with_data else 'kept'}")


def connect(app, runtime, kind: str | None, tty: bool) -> int:
    """The service's own client (psql, redis-cli), attached to this terminal."""
    if kind is None:
        if len(app.services) != 1:
            have = ", ".join(s.kind for s in app.services) or "none"
            raise InvalidInput(f"name the service to connect to (services of {app.name}: {have})")
        kind = app.services[0].kind
    service = services.find(app.services, app.name, kind)
    container = backups.running_container(runtime.client, service)
    argv = engine.exec_argv(container.name, service.client_command(), stdin=True)
    if tty:
        argv.insert(2, "-t")
    return subprocess.call(argv)
