"""Day-2 operations on apps: overview, logs, restart, destroy."""

import shutil
import time
from typing import Callable, Iterator

from zdd import config, deploy, engine, retention, routing, state
from zdd.errors import ZddError

Emit = Callable[[str], None]


def overview(server: config.Server, client) -> list[dict]:
    """One row per app: live SHA and ref, age, upstream, and the live container's health."""
    rows = []
    for app in server.app_names():
        live = state.read_live(server.app_dir(app))
        row = {"app": app, "domain": config.load_app(server, app).domain, "sha": None, "ref": None,
               "age_seconds": None, "upstream": None, "health": "not deployed"}
        if live:
            container = engine.get_container(client, live.get("container_id"))
            row.update(sha=live["sha"], ref=live["ref"], upstream=live["upstream"],
                       age_seconds=int(time.time() - retention.epoch(live["deployed_at"])),
                       health=_health_word(container))
        rows.append(row)
    return rows


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
            return routing.reconcile(server, client, app, emit)
    emit(f"a deploy of {app} is running: this is the state recorded before it")
    return state.read_live(app_dir)


def live_container(server: config.Server, client, app: str):
    config.load_app(server, app)
    live = state.read_live(server.app_dir(app))
    container = engine.get_container(client, live and live.get("container_id"))
    if container is None:
        raise ZddError(f"{app} has no live container: deploy it first")
    return container


def logs(server: config.Server, client, app: str, follow: bool, tail: int) -> Iterator[str]:
    container = live_container(server, client, app)
    for chunk in container.logs(stream=True, follow=follow, tail=tail):
        yield chunk.decode("utf-8", "replace")


def restart(server: config.Server, app: str, emit: Emit) -> dict:
    """Start the live SHA afresh (new env applies), with the same zero-downtime switch."""
    config.load_app(server, app)
    live = state.read_live(server.app_dir(app))
    if live is None:
        raise ZddError(f"{app} has nothing live to restart: push it first")
    return deploy.deploy(server, app, live["sha"], live["ref"], emit)


def destroy(server: config.Server, client, app: str, emit: Emit) -> None:
    """Remove the app's site, containers, images, repository and state."""
    config.load_app(server, app)
    app_dir = server.app_dir(app)
    with state.deploy_lock(app_dir, emit):
        routing.refresh_caddyfile(server, emit, leaving=app)
        for container in engine.app_containers(client, app):
            engine.remove(container)
            emit(f"removed container {container.name}")
        for image in engine.app_images(client, app):
            engine.remove_image(client, image["id"])
        shutil.rmtree(server.repo_path(app), ignore_errors=True)
        shutil.rmtree(app_dir, ignore_errors=True)
    emit(f"{app} destroyed: its site, containers, images, repository and history are gone")
