"""The containers of one deploy, every process: start them beside the old generation, gate
them, show why one failed and remove them, or retire the old generation once traffic moved."""

import concurrent.futures
import dataclasses
import json
import time
from typing import Callable

from zdd import engine, health, names, processes
from zdd.errors import ContainerFailed, ZddError
from zdd.limits import Limits

Emit = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Version:
    """One deploy's version of an app: its image, and what each of its containers gets."""

    client: object
    image: object
    app: str
    sha: str
    ref: str
    deploy_id: str
    config: object          # the commit's zdd.toml, a config.RepoConfig
    env: dict
    mounts: list
    network: str | None = None   # the app's own network, when it has data services
    limits: Limits = Limits()    # memory and CPU of each process

    def labels(self, process: str, **extra: str) -> dict:
        return labels(self.app, self.sha, self.ref, process, self.deploy_id, **extra)

    @property
    def image_tag(self) -> str:
        return names.image_tag(self.app, self.sha)

    def declared(self) -> dict:
        """The processes its zdd.toml declares, as the live record keeps them."""
        return {p.name: p.as_dict() for p in self.config.processes}


def live_version(client, app, live: dict, repo_config) -> Version:
    """The live version of ``app`` (a zdd.app.App), to start more of its containers."""
    image = engine.find_image(client, live["image"])
    if image is None:
        raise ZddError(f"the live image {live['image']} is missing: `zdd restart {app.name}` rebuilds it")
    return Version(client, image, app.name, live["sha"], live["ref"], live["deploy_id"], repo_config,
                   app.env, app.mounts, app.network, app.limits)


def labels(app: str, sha: str, ref: str, process: str, deploy_id: str, **extra: str) -> dict:
    return {**names.labels(app, sha, ref), "zdd.process": process, "zdd.deploy": deploy_id, **extra}


def web_labels(version: Version, slot: str, port: int) -> dict:
    """The web container also carries the generation's process list, so that a deploy
    interrupted after its switch can be adopted with every process it declared."""
    spec = json.dumps(version.declared(), sort_keys=True)
    return version.labels(processes.WEB, **{"zdd.slot": slot, "zdd.port": str(port), "zdd.processes": spec})


class Worker:
    """A started container of a non-web process, with the moment it started."""

    def __init__(self, process: processes.Process, container):
        self.process, self.container, self.started = process, container, time.monotonic()


def start_workers(version: Version, process: processes.Process, count: int, first: int = 1) -> list[Worker]:
    started = []
    for index in range(first, first + count):
        name = f"zdd-{version.app}-{process.name}-{version.sha[:12]}-{version.deploy_id}-{index}"
        container = engine.start_container(
            version.client, version.image, name, version.labels(process.name, **{"zdd.index": str(index)}),
            version.env, command=process.command, mounts=version.mounts, healthcheck=process.healthcheck,
            network=version.network, limit=version.limits.of(process.name))
        started.append(Worker(process, container))
    return started


def gate_workers(version: Version, workers: list[Worker], emit: Emit) -> None:
    """Docker's HEALTHCHECK where the image has one (and the process keeps it), else the
    container must stay up ``worker_check_seconds`` from its start."""
    command = engine.health_command(version.image)
    repo_config = version.config
    for worker in workers:
        uses_healthcheck = bool(command) and worker.process.healthcheck
        try:
            if uses_healthcheck:
                probe = engine.HealthCommandProbe(version.client, worker.container, command)
                health.wait_until_healthy(worker.container, probe, repo_config.health_timeout,
                                          repo_config.health_interval, emit, docker_health=True)
            else:
                health.wait_staying_up(worker.container, worker.started + repo_config.worker_check_seconds)
        except ContainerFailed as error:
            hint = (f"; if the image's HEALTHCHECK is meant for web only, set healthcheck = false on "
                    f"processes.{worker.process.name} in zdd.toml" if uses_healthcheck else "")
            failure = ContainerFailed(f"{worker.process.name} ({worker.container.name}): {error}{hint}")
            failure.container = worker.container
            raise failure from None
        engine.keep_running(worker.container)


def discard(containers, emit: Emit, failed=None) -> None:
    """Show why ``failed`` failed, then remove the new containers. If the engine cannot be reached,
    say so and leave the cleanup to the next deploy (or `zdd status`): the cause of the
    failure stays the error that is reported."""
    for container in containers:
        try:
            if container is failed:
                report_failure(container, emit)
            engine.remove(container)
            emit(f"    removed the new container {container.name}")
        except Exception as error:  # the engine itself failing, e.g. restarting
            emit(f"    could not remove {container.name} ({type(error).__name__}): the next deploy will")


def report_failure(container, emit: Emit) -> None:
    logs = engine.logs_tail(container)
    health_log = engine.health_log(container)
    if logs:
        emit(f"    last lines of {container.name}'s log:")
        for line in logs:
            emit(f"      {line}")
    if health_log:
        emit("    its health checks:")
        for line in health_log:
            emit(f"      {line}")


def stop_all(containers, stop_timeout: float) -> None:
    """SIGTERM every container at once, SIGKILL after ``stop_timeout``, remove them."""
    _at_once(containers, lambda c: engine.stop_and_remove(c, stop_timeout))


def pause_all(containers, stop_timeout: float) -> None:
    """Stop (not remove) every container: for singletons that must not overlap their successor,
    so that they can be started again if the deploy fails."""
    _at_once(containers, lambda c: c.stop(timeout=int(stop_timeout)))


def _at_once(containers, action) -> None:
    """``action`` on every container in parallel: stopping each can take its whole stop timeout."""
    if not containers:
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(containers))) as pool:
        list(pool.map(action, containers))


def of_generation(client, app: str, deploy_id: str | None) -> dict[str, list]:
    """The non-web containers of one deploy, by process name, in index order."""
    found: dict[str, list] = {}
    if not deploy_id:
        return found
    for container in engine.app_containers(client, app, deploy=deploy_id):
        process = container.labels.get("zdd.process")
        if process not in (processes.WEB, processes.RELEASE, processes.RUN):
            found.setdefault(process, []).append(container)
    for group in found.values():
        group.sort(key=lambda c: int(c.labels.get("zdd.index") or 0))
    return found
