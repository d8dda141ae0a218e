"""Day-2 operations on apps: overview, processes, scale, storage, logs, restart, destroy."""

import queue
import shutil
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from zdd import (appenv, cluster, config, deploy, engine, generation, gitrepo, processes, retention, routing,
                 state, storage)
from zdd.errors import InvalidInput, ZddError

Emit = Callable[[str], None]


def overview(server: config.Server, client) -> list[dict]:
    """One row per app: live SHA and ref, age, upstream, and the live container's health."""
    rows = []
    for app in server.app_names():
        live = state.read_live(server.app_dir(app))
        row = {"app": app, "domain": config.load_app(server, app).domain, "sha": None, "ref": None,
               "age_seconds": None, "upstream": None, "health": "not deployed"}
        if live:
            row.update(sha=live["sha"], ref=live["ref"], upstream=live["upstream"],
                       age_seconds=int(time.time() - retention.epoch(live["deployed_at"])))
        if live and server.swarm:
            table = process_table(server, client, app, live)
            row["processes"] = {name: _running(r) for name, r in table.items()}
            web = table.get(processes.WEB)
            row["health"] = f"{_running(web)}/{web['wanted']} running" if web else "no web"
        else:
            if live:
                row["health"] = _health_word(engine.get_container(client, live.get("container_id")))
            row["processes"] = _running_counts(client, app, live)
        rows.append(row)
    return rows


def _running(row: dict) -> int:
    return sum(1 for c in row["containers"] if c["status"] == "running")


def _running_counts(client, app: str, live: dict | None) -> dict[str, int]:
    if not live:
        return {}
    counts = {processes.WEB: 1}
    for name, group in generation.of_generation(client, app, live.get("deploy_id")).items():
        counts[name] = sum(1 for c in group if c.status == "running")
    return counts


def process_table(server: config.Server, client, app: str, live: dict | None) -> dict[str, dict]:
    """Each declared process of the live version: its command, the count wanted, its containers."""
    if not live:
        return {}
    declared = _declared(live)
    wanted = processes.desired(declared, processes.read_scale(server.app_dir(app)), server.swarm)
    if server.swarm:
        return cluster.process_rows(client, app, live, wanted)
    group = generation.of_generation(client, app, live.get("deploy_id"))
    web = engine.get_container(client, live.get("container_id"))
    group[processes.WEB] = [web] if web else []
    table = {}
    for process in declared:
        table[process.name] = {
            "command": list(process.command) if process.command else None, "overlap": process.overlap,
            "wanted": wanted[process.name],
            "containers": [_container_row(c) for c in group.get(process.name, [])],
        }
    return table


def _container_row(container) -> dict:
    now = engine.state(container)
    return {"name": container.name, "status": now["status"], "health": now["health"]}


def _declared(live: dict) -> list[processes.Process]:
    declared = live.get("processes") or {processes.WEB: {}}
    return [processes.Process.from_dict(name, spec) for name, spec in sorted(declared.items())]


def scale(server: config.Server, client, app: str, counts: dict[str, int], emit: Emit) -> dict[str, int]:
    """Record the operator's counts and apply them to the live version at once."""
    config.load_app(server, app)
    app_dir = server.app_dir(app)
    with state.deploy_lock(app_dir, emit):
        live = deploy.repaired_live(server, client, app, emit)
        declared = {p.name: p for p in _declared(live)} if live else None
        unknown = sorted(set(counts) - set(declared)) if declared is not None else []
        if unknown:
            raise InvalidInput(f"{app} has no process {unknown[0]!r}: its zdd.toml declares "
                               f"{', '.join(sorted(declared))}")
        merged = processes.write_scale(app_dir, counts, server.swarm)
        if live is None:
            emit(f"saved: {app} starts with these counts at its first deploy")
            return merged
        if server.swarm:
            for name, count in counts.items():
                cluster.scale(client, app, name, count, emit)
            return merged
        repo_config = deploy.repo_config_at(gitrepo.open_repo(server.repo_path(app)), live["sha"])
        for name, count in counts.items():
            if name != processes.WEB:
                _scale_process(server, client, app, live, declared[name], count, repo_config, emit)
    return merged


def _scale_process(server, client, app, live, process, count: int, repo_config, emit: Emit) -> None:
    have = generation.of_generation(client, app, live["deploy_id"]).get(process.name, [])
    if count < len(have):
        generation.stop_all(have[count:], repo_config.stop_timeout)
        emit(f"{process.name}: stopped {len(have) - count}, {count} running")
    elif count > len(have):
        image = engine.find_image(client, live["image"])
        if image is None:
            raise ZddError(f"the live image {live['image']} is missing: `zdd restart {app}` rebuilds it")
        first = 1 + max((int(c.labels.get("zdd.index") or 0) for c in have), default=0)
        app_dir = server.app_dir(app)
        version = generation.Version(client, image, app, live["sha"], live["ref"], live["deploy_id"], repo_config,
                                     appenv.read(app_dir), storage.read(app_dir))
        started = generation.start_workers(version, process, count - len(have), first=first)
        try:
            generation.gate_workers(version, started, emit)
        except Exception as error:
            generation.discard([w.container for w in started], emit, failed=getattr(error, "container", None))
            raise
        emit(f"{process.name}: started {len(started)}, {count} running")
    else:
        emit(f"{process.name}: {count} running already")


def add_storage(server: config.Server, client, app: str, spec: str, emit: Emit) -> storage.Mount:
    config.load_app(server, app)
    app_dir = server.app_dir(app)
    root = server.storage_root()
    mount = storage.parse(spec, app, root)
    mounts = storage.added(storage.read(app_dir), mount)
    if mount.kind == "volume":
        made = engine.create_volume(client, mount.source, {"zdd.app": app, "zdd.storage": mount.name})
        emit(f"{'created' if made else 'reusing'} volume {mount.source}")
    else:
        root.mkdir(mode=0o755, exist_ok=True)
        made = not Path(mount.source).exists()
        Path(mount.source).mkdir(parents=True, exist_ok=True)
        emit(f"{'created' if made else 'using'} folder {mount.source}")
    storage.write(app_dir, mounts)
    emit(f"mounted {mount.describe()} for {app}: applies at the next deploy or `zdd restart {app}`")
    return mount


def remove_storage(server: config.Server, app: str, name_or_target: str, emit: Emit) -> None:
    config.load_app(server, app)
    app_dir = server.app_dir(app)
    mounts, gone = storage.removed(storage.read(app_dir), name_or_target)
    storage.write(app_dir, mounts)
    keep = (f"`docker volume rm {gone.source}` deletes it" if gone.kind == "volume"
            else f"delete the folder {gone.source} yourself if you no longer need it")
    emit(f"unmounted {gone.describe()} from {app} (applies at the next deploy or `zdd restart {app}`); "
         f"its data is kept: {keep}")


def _health_word(container) -> str:
    if container is None:
        return "container missing"
    now = engine.state(container)
    return now["health"] or now["status"]


def checked_live(server: config.Server, client, app: str, emit: Emit) -> dict | None:
    """The live record, after repairing what an interrupted deploy left, unless a deploy runs."""
    config.load_app(server, app)
    app_dir = server.app_dir(app)
    with state.lock_if_free(app_dir) as free:
        if free:
            return deploy.repaired_live(server, client, app, emit)
    emit(f"a deploy of {app} is running: this is the state recorded before it")
    return state.read_live(app_dir)


def process_containers(server: config.Server, client, app: str, process: str) -> list:
    """The live version's containers of ``process`` (web: the one that serves)."""
    live = _declared_process(server, app, process)
    if process == processes.WEB:
        found = [engine.get_container(client, live.get("container_id"))]
    else:
        found = generation.of_generation(client, app, live.get("deploy_id")).get(process, [])
    found = [c for c in found if c is not None]
    if not found:
        raise ZddError(f"{app} has no {process} container running (`zdd scale {app} {process}=1` starts one)")
    return found


def _declared_process(server: config.Server, app: str, process: str) -> dict:
    """The live record, once ``process`` is known to be one of its processes."""
    config.load_app(server, app)
    live = state.read_live(server.app_dir(app))
    if live is None:
        raise ZddError(f"{app} has nothing live: deploy it first")
    declared = live.get("processes") or {processes.WEB: {}}
    if process not in declared:
        raise InvalidInput(f"{app} has no process {process!r} (it has: {', '.join(sorted(declared))})")
    return live


def logs(server: config.Server, client, app: str, follow: bool, tail: int,
         process: str = processes.WEB) -> Iterator[str]:
    """The log of the process's containers; with several, each line says which one wrote it."""
    if server.swarm:
        _declared_process(server, app, process)
        yield from cluster.logs(client, app, process, follow, tail)
        return
    containers = process_containers(server, client, app, process)
    if len(containers) == 1:
        for chunk in containers[0].logs(stream=True, follow=follow, tail=tail):
            yield chunk.decode("utf-8", "replace")
        return
    lines: queue.Queue = queue.Queue()
    for container in containers:
        prefix = f"{process}.{container.labels.get('zdd.index', '?')} | "
        threading.Thread(target=_pump_prefixed, args=(container, follow, tail, prefix, lines), daemon=True).start()
    remaining = len(containers)
    while remaining:
        line = lines.get()
        if line is None:
            remaining -= 1
        else:
            yield line


def _pump_prefixed(container, follow: bool, tail: int, prefix: str, lines: queue.Queue) -> None:
    try:
        for line in engine.log_lines(container, follow, tail):
            lines.put(f"{prefix}{line}\n")
    finally:
        lines.put(None)


def restart(server: config.Server, app: str, emit: Emit) -> dict:
    """Start the live SHA afresh (new env applies), with the same zero-downtime switch."""
    config.load_app(server, app)
    live = state.read_live(server.app_dir(app))
    if live is None:
        raise ZddError(f"{app} has nothing live to restart: push it first")
    return deploy.deploy(server, app, live["sha"], live["ref"], emit)


def destroy(server: config.Server, client, app: str, emit: Emit, with_storage: bool = False) -> None:
    """Remove the app's site, containers, images, repository and state; its storage too only
    when asked, else say what was kept."""
    config.load_app(server, app)
    app_dir = server.app_dir(app)
    with state.deploy_lock(app_dir, emit):
        routing.refresh(server, emit, leaving=app)
        if server.swarm:
            cluster.destroy(client, app, emit)
        for container in engine.app_containers(client, app):
            engine.remove(container)
            emit(f"removed container {container.name}")
        for image in engine.app_images(client, app):
            engine.remove_image(client, image["id"])
        mounts = storage.read(app_dir)
        shutil.rmtree(server.repo_path(app), ignore_errors=True)
        shutil.rmtree(app_dir, ignore_errors=True)
        _destroy_storage(client, app, mounts, with_storage, emit)
    emit(f"{app} destroyed: its site, containers, images, repository and history are gone")


def _destroy_storage(client, app: str, mounts: list, with_storage: bool, emit: Emit) -> None:
    volumes = sorted(set(engine.app_volumes(client, app)) | {m.source for m in mounts if m.kind == "volume"})
    folders = [m.source for m in mounts if m.kind == "bind"]
    if with_storage:
        for name in volumes:
            engine.remove_volume(client, name)
            emit(f"removed volume {name}")
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
            emit(f"removed folder {folder}")
    elif volumes or folders:
        kept = ", ".join([f"volume {v}" for v in volumes] + [f"folder {f}" for f in folders])
        emit(f"kept its storage: {kept} (`zdd destroy --storage` removes storage too; re-adding the same "
             "name to a new app of this name mounts the same data)")
