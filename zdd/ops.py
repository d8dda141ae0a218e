"""Day-2 operations on apps: overview, processes, scale, storage, logs, restart, destroy.
Each takes the app (zdd.app.App) and the server's runtime, and never asks which runtime it is."""

import contextlib
import datetime
import html
import shutil
import time
from pathlib import Path
from typing import Callable, Iterator

from zdd import app as apps
from zdd import caddy, crashes, deploy, engine, limits, notify, processes, retention, routing, services, state, storage
from zdd.errors import InvalidInput, ZddError

Emit = Callable[[str], None]


def overview(server, runtime) -> list[dict]:
    """One row per app: live SHA and ref, age, upstream, health, and how many of each process run."""
    rows = []
    image_bytes = engine.image_bytes_by_app(runtime.client)
    loaded = [(app, app.live()) for app in (apps.load(server, name) for name in server.app_names())]
    volumes_of = {app.name: [m.source for m in app.mounts if m.kind == "volume"] + [s.volume for s in app.services]
                  for app, _ in loaded}
    # Docker sizes volumes only with `docker system df`, which sizes every container too: asked only if needed
    volume_bytes = engine.volume_sizes(runtime.client) if any(volumes_of.values()) else {}
    summaries = runtime.summaries([(app, live) for app, live in loaded if live])
    for app, live in loaded:
        name, volumes = app.name, volumes_of[app.name]
        row = {"app": name, "domain": app.settings.domain, "sha": None, "ref": None,
               "age_seconds": None, "upstream": None, "health": "not deployed", "processes": {},
               "images_bytes": image_bytes.get(name, 0),
               "volumes_bytes": sum(max(0, volume_bytes.get(volume, 0)) for volume in volumes)}
        if live:
            row.update(sha=live["sha"], ref=live["ref"], upstream=live["upstream"],
                       age_seconds=int(time.time() - state.epoch(live["deployed_at"])))
            row["health"], row["processes"] = summaries[name]
        rows.append(row)
    return rows


def process_table(app, runtime, live: dict | None) -> dict[str, dict]:
    """Each declared process of the live version: its command, the count wanted, its containers."""
    if not live:
        return {}
    wanted = processes.desired(processes.declared_in(live), app.scale, runtime.web_scales)
    table = runtime.process_table(app, live, wanted)
    for name, row in table.items():
        row["limit"] = app.limits.of(name).as_text()
    return table


def collect_crashes(server, runtime) -> list[dict]:
    """The crashes since the last look (see zdd.crashes), kept with their apps; the webhooks
    get one crash event per process that crashed."""
    client = runtime.client
    try:
        found = crashes.collect(server, lambda since, until: engine.app_events(client, since, until),
                                lambda container_id: engine.is_restarting(client, container_id),
                                lambda since: engine.restarted_app_containers(client, since))
    except PermissionError:
        return []  # a user who may not write zdd's logs/ folder: the timer, which may, looks
    for (app_name, process) in sorted({(c["app"], c["process"]) for c in found}):
        mine = [c for c in found if (c["app"], c["process"]) == (app_name, process)]
        reason = f"{process} crashed {len(mine)} time(s), restarted by Docker; last: {mine[-1]['reason']}"
        with contextlib.suppress(Exception):  # a webhook problem never fails the command
            notify.send(server.root, notify.event("crash", app_name, mine[-1]["sha"], reason, process=process))
    return found


def live_crashes(app, live: dict | None) -> list[dict]:
    """The crashes of the live version's containers, oldest first."""
    return [c for c in crashes.read(app.dir) if live and c["sha"] == live["sha"]]


def crash_lines(app_name: str, seen: list[dict]) -> list[str]:
    """`zdd status`'s lines on crashes of the live version: each process's count and last one,
    and a crash loop said as such."""
    now = datetime.datetime.now(datetime.timezone.utc)
    lines = []
    for process in sorted({c["process"] for c in seen}):
        mine = [c for c in seen if c["process"] == process]
        last = mine[-1]
        lines.append(f"  {process} crashed {len(mine)} time(s), restarted by Docker; last at {last['at']} "
                     f"({last['container']}): {last['reason']}")
        if crashes.in_a_loop(mine, process, now):
            lines.append(f"  CRASH LOOP: {process} crashed {crashes.LOOP_COUNT} times or more in the last "
                         f"{crashes.LOOP_SECONDS // 60} minutes: `zdd logs {app_name} --process {process}` says why")
    return lines


def disk_warnings(server, client) -> list[str]:
    """A line for each of Docker's and zdd's folders with less than min_free_mb free."""
    lines = []
    for what, folder in (("Docker's", engine.storage_dir(client)), ("zdd's", str(server.root))):
        free = state.free_mb(folder)
        if free is not None and free < server.min_free_mb:
            lines.append(f"  WARNING: {free:.0f} MB free for {what} data in {folder}, under min_free_mb "
                         f"({server.min_free_mb} MB): builds stop; free some (fewer kept images: install.sh --keep, "
                         "`docker system prune`)")
    return lines


def limits_line(table: dict[str, dict]) -> str | None:
    """`zdd status`'s line on limits, when any process has one."""
    if all(row["limit"] == limits.NONE for row in table.values()):
        return None
    return "  limits: " + ", ".join(f"{name}={row['limit']}" for name, row in table.items())


def scale(app, runtime, counts: dict[str, int], emit: Emit) -> dict[str, int]:
    """Record the operator's counts and apply them to the live version at once."""
    with state.deploy_lock(app.dir, emit):
        live = runtime.reconcile(app, emit)
        declared = {p.name for p in processes.declared_in(live)} if live else None
        unknown = sorted(set(counts) - declared) if declared is not None else []
        if unknown:
            raise InvalidInput(f"{app.name} has no process {unknown[0]!r}: its zdd.toml declares "
                               f"{', '.join(sorted(declared))}")
        merged = processes.write_scale(app.dir, counts, runtime.web_scales)
        if live is None:
            emit(f"saved: {app.name} starts with these counts at its first deploy")
            return merged
        runtime.scale(app, live, counts, emit)
    return merged


def set_limits(app, runtime, changes: dict, emit: Emit) -> dict:
    """Record the operator's limits; the runtime applies them to what runs now where it can."""
    with state.deploy_lock(app.dir, emit):
        live = runtime.reconcile(app, emit)
        declared = {p.name for p in processes.declared_in(live)} if live else set()
        for name in sorted(set(changes) - declared - {processes.RELEASE, processes.RUN}):
            emit(f"    {app.name} runs no process {name} now: its limit applies once zdd.toml declares it")
        merged = limits.write(app.dir, changes)
        effective = limits.Limits(merged, app.server.default_limit)
        for name in sorted(changes):
            emit(f"{name}: {effective.of(name).describe()}")
        if live is None:
            emit(f"saved: {app.name} starts with these limits at its first deploy")
        else:
            runtime.apply_limits(app, live, {name: effective.of(name) for name in changes}, emit)
    return merged


MAX_PAGE = 1024 * 1024
DEFAULT_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{app}: down for maintenance</title>
<style>body{{font-family:sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#333}}</style></head>
<body><h1>Down for maintenance</h1><p>{message}</p></body></html>
"""


def maintenance(app, runtime, on: bool, message: str | None, emit: Emit) -> None:
    """Caddy answers the app's every request with a 503 page (or stops), at once and with no
    reload (see caddy.set_maintenance); deploys and health checks go on as usual."""
    if message is not None and not on:
        raise InvalidInput("--message goes with `on`: zdd maintenance APP on --message TEXT")
    runtime.refresh_routes(emit)  # a Caddyfile from before maintenance pages learns them (one reload)
    route_dir = routing.route_dir(app.server, app.name)
    if not on:
        was_on = caddy.maintenance_since(route_dir) is not None
        caddy.set_maintenance(route_dir, None)
        emit(f"{app.name}: maintenance off, the app serves" if was_on else f"{app.name}: maintenance was off")
        return
    page, source = maintenance_page(app, message)
    caddy.set_maintenance(route_dir, page)
    emit(f"{app.name}: maintenance on: every request gets {source} with 503 and Retry-After: 120, "
         f"until `zdd maintenance {app.name} off`")


def maintenance_lines(app) -> list[str]:
    since = caddy.maintenance_since(routing.route_dir(app.server, app.name))
    if since is None:
        return []
    return [f"  MAINTENANCE ON since {state.iso(since)}: every request gets the 503 page (`zdd maintenance {app.name} off`)"]


def maintenance_page(app, message: str | None) -> tuple[bytes, str]:
    """The live version's maintenance.html, else zdd's page with ``message``."""
    live = app.live()
    if live and message is None:
        from zdd import gitrepo
        custom = gitrepo.read_file(app.repo(), live["sha"], "maintenance.html")
        if custom is not None and len(custom) <= MAX_PAGE:
            return custom, "the repository's maintenance.html"
    text = message or "This site is down for maintenance. Please try again in a few minutes."
    if len(text) > 1000 or "\0" in text:
        raise InvalidInput("the maintenance message must be at most 1000 characters of text")
    page = DEFAULT_PAGE.format(app=html.escape(app.name), message=html.escape(text))
    return page.encode(), "zdd's page"


def add_storage(app, runtime, spec: str, emit: Emit) -> storage.Mount:
    root = app.server.storage_root()
    mount = storage.parse(spec, app.name, root)
    mounts = storage.added(app.mounts, mount)
    if mount.kind == "volume":
        made = engine.create_volume(runtime.client, mount.source, {"zdd.app": app.name, "zdd.storage": mount.name})
        emit(f"{'created' if made else 'reusing'} volume {mount.source}")
    else:
        root.mkdir(mode=0o755, exist_ok=True)
        made = not Path(mount.source).exists()
        Path(mount.source).mkdir(parents=True, exist_ok=True)
        emit(f"{'created' if made else 'using'} folder {mount.source}")
    storage.write(app.dir, mounts)
    emit(f"mounted {mount.describe()} for {app.name}: applies at the next deploy or `zdd restart {app.name}`")
    return mount


def remove_storage(app, name_or_target: str, emit: Emit) -> None:
    mounts, gone = storage.removed(app.mounts, name_or_target)
    storage.write(app.dir, mounts)
    keep = (f"`docker volume rm {gone.source}` deletes it" if gone.kind == "volume"
            else f"delete the folder {gone.source} yourself if you no longer need it")
    emit(f"unmounted {gone.describe()} from {app.name} (applies at the next deploy or `zdd restart {app.name}`); "
         f"its data is kept: {keep}")


def checked_live(app, runtime, emit: Emit) -> dict | None:
    """The live record, after repairing what an interrupted deploy left, unless a deploy runs."""
    with state.lock_if_free(app.dir) as free:
        if free:
            return runtime.reconcile(app, emit)
    emit(f"a deploy of {app.name} is running: this is the state recorded before it")
    return app.live()


def logs(app, runtime, follow: bool, tail: int, process: str = processes.WEB) -> Iterator[str]:
    """The log of the live version's ``process``."""
    live = app.live()
    if live is None:
        raise ZddError(f"{app.name} has nothing live: deploy it first")
    declared = live.get("processes") or {processes.WEB: {}}
    if process not in declared:
        raise InvalidInput(f"{app.name} has no process {process!r} (it has: {', '.join(sorted(declared))})")
    yield from runtime.logs(app, live, process, follow, tail)


def restart(app, runtime, emit: Emit, lock_held: bool = False) -> dict:
    """Start the live SHA afresh (new env applies), with the same zero-downtime switch."""
    live = app.live()
    if live is None:
        raise ZddError(f"{app.name} has nothing live to restart: push it first")
    return deploy.deploy(app, runtime, live["sha"], live["ref"], emit, lock_held)


def destroy(app, runtime, emit: Emit, with_storage: bool = False) -> None:
    """Remove the app's site, containers, images, repository and state; its storage too only
    when asked, else say what was kept."""
    client = runtime.client
    with state.deploy_lock(app.dir, emit):
        runtime.refresh_routes(emit, leaving=app.name)
        runtime.destroy(app, emit)
        for container in engine.app_containers(client, app.name):
            engine.remove(container)
            emit(f"removed container {container.name}")
        for container in engine.service_containers(client, app.name):
            engine.stop_and_remove(container, timeout=30)
            emit(f"removed {container.labels.get('zdd.data')} container {container.name}")
        engine.remove_network(client, services.network_name(app.name))
        for image in engine.app_images(client, app.name):
            engine.remove_image(client, image["id"])
        mounts, data_volumes = app.mounts, [s.volume for s in app.services]
        if not app.settings.preview_of:  # a preview deploys from its parent's repository
            shutil.rmtree(app.repo_path, ignore_errors=True)
        shutil.rmtree(app.dir, ignore_errors=True)
        _destroy_storage(client, app.name, mounts, data_volumes, with_storage, emit)
    emit(f"{app.name} destroyed: its site, containers, images, repository and history are gone")


def _destroy_storage(client, app: str, mounts: list, data_volumes: list, with_storage: bool, emit: Emit) -> None:
    volumes = sorted(set(engine.app_volumes(client, app)) | {m.source for m in mounts if m.kind == "volume"}
                     | set(data_volumes))
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
