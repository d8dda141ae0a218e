"""The Swarm runtime: an app's processes as Swarm services, rolled by Swarm itself.

A deploy pushes the image to the cluster's registry, then rolls each process's service to
it, web first: one task at a time, the new one first (stop-first for overlap = false),
each gated by its health check; Swarm rolls a process back by itself if a new task fails.
Caddy's container proxies to the web service's healthy tasks, so there is no switch.
"""

import dataclasses
import json
import shlex
import time
from typing import Callable

import docker.errors

from zdd import caddy, config, engine, names, oneoff, processes, proxy, routing, services as data, state, swarm
from zdd.errors import ContainerFailed
from zdd.runtimes.base import RuntimeBase

Emit = Callable[[str], None]
SERVICE_LABEL = "zdd.service-of"   # not zdd.app: the single-server clean-up must never touch a task


@dataclasses.dataclass(frozen=True)
class Web:
    """What stands for the web container in the live record: its service."""
    name: str
    id: str | None = None


def roll_out(runtime, app, version, counts: dict[str, int], live: dict | None, timer) -> dict:
    """Roll every process of ``version`` over the swarm; return the live record."""
    client, repo_config, registry = version.client, version.config, app.server.registry
    port, _ = config.choose_port(app.settings, repo_config, engine.exposed_ports(version.image))
    with timer.step("push", f"Pushing the image to the cluster's registry {registry}"):
        image = swarm.push(client, version.image_tag, registry)
    ordered = sorted(repo_config.processes, key=lambda p: p.name != processes.WEB)
    rolled = []
    try:
        for process in ordered:
            if _roll_process(version, process, counts[process.name], image, port, timer):
                rolled.append(process.name)
    except Exception:
        if rolled:
            _undo(version, live, rolled, timer)
        raise
    _remove_undeclared(client, app.name, {p.name for p in repo_config.processes if counts[p.name]}, timer.emit)
    with timer.step("switch", None):
        _publish(runtime, app, port, timer.emit)
    web = Web(swarm.service_name(app.name, processes.WEB))
    return state.live_record(app.name, version.sha, version.ref, version.image_tag, web, None,
                             f"tasks.{web.name}:{port}", port, version.deploy_id, None,
                             version.declared()) | {"remote_image": image}


def _roll_process(version, process, count: int, image: str, port: int, timer) -> bool:
    """Roll one process's service to ``image``; False if it is scaled to 0 (its service goes)."""
    client, app = version.client, version.app
    name = swarm.service_name(app, process.name)
    if not count:
        swarm.remove(client, name)
        return False
    rollout = swarm.Rollout(count, process.overlap, version.config.watch_seconds, process.parallelism)
    order = {"start-first": "the new task first",
             "stop-first": "the old task stops first" + (" (the others serve)" if count > 1 else "")}[rollout.order]
    at_once = "one at a time" if rollout.batch == 1 else f"{rollout.batch} at a time"
    with timer.step("rollout" if process.name == processes.WEB else f"rollout-{process.name}",
                    f"Rolling {process.name} to {version.sha[:12]}: {count} task(s), {at_once}, {order}"):
        task = _task(version, process, port, timer.emit)
        labels = _labels(version, process.name, port, image)
        networks = [proxy.NETWORK] + ([version.network] if version.network else [])
        change = swarm.deploy(client, name, image, rollout, networks, labels, task)
        outcome = swarm.wait(client, change, _timeout(version.config, count), timer.emit)
        if outcome == "converged" and change.created and process.name != processes.WEB:
            outcome = swarm.stays_up(client, change, version.config.worker_check_seconds)
        if outcome != "converged":
            for line in swarm.failed_task_logs(client, change):
                timer.emit(f"    {line}")
            if change.created:
                swarm.remove(client, name)
            raise ContainerFailed(f"{name} did not get healthy on the swarm ({outcome}): the previous version "
                                  "still serves; the failed tasks' last lines are above")
    return True


def _labels(version, process: str, port: int, image: str) -> dict:
    """On the service and its tasks: the version, and what a repair needs to record it as live."""
    return {SERVICE_LABEL: version.app, "zdd.process": process, "zdd.sha": version.sha, "zdd.ref": version.ref,
            "zdd.deploy": version.deploy_id, "zdd.port": str(port), "zdd.image": image,
            "zdd.processes": json.dumps(version.declared(), sort_keys=True)}


def _task(version, process, port: int, emit: Emit) -> swarm.Task:
    env = {key: _literal(value) for key, value in version.env.items()}
    env.update(ZDD_NODE="{{.Node.Hostname}}", ZDD_REPLICA=f"{process.name}.{{{{.Task.Slot}}}}")
    healthcheck = None
    if process.name == processes.WEB:
        env["PORT"] = str(port)
        if not engine.health_command(version.image):
            healthcheck = _http_healthcheck(port, version.config)
            emit(f"    the image has no HEALTHCHECK: each task must answer GET {version.config.health_path} on "
                 f"port {port} (through wget or curl in the image)")
    elif not process.healthcheck:
        healthcheck = {"test": ["NONE"]}
    constraints = ()
    if version.mounts:
        constraints = ("node.role==manager",)
        emit("    the app has storage, which lives on the manager: its tasks run there")
    return swarm.Task(env, process.command, healthcheck, tuple(engine.docker_mounts(version.mounts)), constraints,
                      version.config.stop_timeout, version.limits.of(process.name))


def _literal(value: str) -> str:
    """Swarm expands Go templates in env values: keep the app's own values as they are."""
    return value.replace("{{", '{{"{{"}}')


def _http_healthcheck(port: int, repo_config) -> dict:
    url = shlex.quote(f"http://127.0.0.1:{port}{repo_config.health_path}")
    probe = f"wget -q -O /dev/null {url} || curl -fsS -o /dev/null {url}"
    second = 1_000_000_000
    return {"test": ["CMD-SHELL", probe], "interval": int(repo_config.health_interval * second),
            "timeout": 5 * second, "retries": 3, "start_period": int(repo_config.health_timeout * second)}


def _timeout(repo_config, count: int) -> float:
    return count * (repo_config.health_timeout + 30) + 60


def _undo(version, live: dict | None, rolled: list[str], timer) -> None:
    """A later process failed after earlier ones rolled: give those the live version again,
    or remove them if there is none (a first deploy leaves nothing behind)."""
    previous = live and live.get("remote_image")
    message = f"Rolling {', '.join(rolled)} back to {live['sha'][:12]}" if previous else \
        f"Removing the service(s) of {', '.join(rolled)}: nothing was live before"
    with timer.step("undo", message):
        for name in rolled:
            service = swarm.find(version.client, swarm.service_name(version.app, name))
            if service is None:
                continue
            if not previous or "PreviousSpec" not in service.attrs:  # new in this deploy
                service.remove()
                continue
            change = swarm.restore_previous(version.client, service)
            outcome = swarm.wait(version.client, change, _timeout(version.config, 3), timer.emit)
            timer.emit(f"    {name}: {outcome}")


def _remove_undeclared(client, app: str, wanted: set[str], emit: Emit) -> None:
    for service in services(client, app):
        if service.attrs["Spec"]["Labels"].get("zdd.process") not in wanted:
            service.remove()
            emit(f"    removed the service {service.name}: its process is no longer declared or is scaled to 0")


def _publish(runtime, app, port: int, emit: Emit) -> None:
    """Point the app's route file at its web service (the first deploy also links its host)."""
    if not caddy.has_route(routing.route_dir(app.server, app.name)):
        routing.route_to_service(app.server, app.name, port)
    runtime.refresh_routes(emit, including=app.name)
    routing.route_to_service(app.server, app.name, port)


def reconcile(runtime, app, emit: Emit) -> dict | None:
    """The live record, after a deploy killed once Swarm had rolled web: Swarm finished that
    rollout by itself, so the version its web service runs is recorded as live (and routed
    to, if that was the app's first deploy)."""
    live = app.live()
    service = swarm.find(runtime.client, swarm.service_name(app.name, processes.WEB))
    if service is None:
        return live
    labels = service.attrs["Spec"].get("Labels") or {}
    state_now = (service.attrs.get("UpdateStatus") or {}).get("State", "completed")
    if not labels.get("zdd.sha") or (live and labels.get("zdd.deploy") == live.get("deploy_id")) \
            or state_now != "completed":
        return live  # recorded already, or Swarm is still rolling (or rolled back to what is recorded)
    port = int(labels["zdd.port"])
    sha = labels["zdd.sha"]
    live = state.live_record(app.name, sha, labels["zdd.ref"], names.image_tag(app.name, sha),
                             Web(service.name), None, f"tasks.{service.name}:{port}", port, labels["zdd.deploy"],
                             None, json.loads(labels["zdd.processes"])) | {"remote_image": labels["zdd.image"]}
    _publish(runtime, app, port, emit)
    state.write_live(app.dir, live)
    emit(f"==> Recorded {labels['zdd.sha'][:12]} as live: a deploy was interrupted after Swarm rolled web to it")
    return live


def services(client, app: str) -> list:
    return client.services.list(filters={"label": f"{SERVICE_LABEL}={app}"})


class Swarm(RuntimeBase):
    """Every process a Swarm service; Caddy in a container on the services' overlay network."""

    web_scales = True  # web=3: three tasks over the nodes

    @property
    def caddy(self):
        return proxy.ContainerCaddy(lambda: self.client)

    def roll_out(self, app, version, counts, live, timer) -> dict:
        return roll_out(self, app, version, counts, live, timer)

    def reconcile(self, app, emit: Emit) -> dict | None:
        return reconcile(self, app, emit)

    def process_table(self, app, live: dict, wanted: dict[str, int]) -> dict[str, dict]:
        """Each declared process: its command, the count wanted, and each task with node and state."""
        rows = {}
        hostnames: dict = {}
        for process in processes.declared_in(live):
            service_name = swarm.service_name(app.name, process.name)
            service = swarm.find(self.client, service_name)
            found = swarm.tasks(service, hostnames) if service else []
            current = [t for t in found if t["desired"] == "running"]
            rows[process.name] = {
                "command": list(process.command) if process.command else None, "overlap": process.overlap,
                "wanted": wanted.get(process.name, 1),
                "containers": [_task_row(service_name, t) for t in sorted(current, key=lambda t: t["slot"] or 0)],
                "rolling": [_task_row(service_name, t) for t in swarm.outdated(service, found)] if service else []}
        return rows

    def summaries(self, lives: list[tuple]) -> dict[str, tuple[str, dict[str, int]]]:
        return {app.name: self._summary(app, live) for app, live in lives}

    def _summary(self, app, live: dict) -> tuple[str, dict[str, int]]:
        table = self.process_table(app, live, processes.desired(processes.declared_in(live), app.scale, self.web_scales))
        counts = {name: _running(row) for name, row in table.items()}
        web = table.get(processes.WEB)
        if not web:
            return "no web", counts
        return f"{_running(web)}/{web['wanted']} running{', rolling' if web['rolling'] else ''}", counts

    def status_lines(self, app, live: dict, table: dict[str, dict]) -> list[str]:
        image = live.get("remote_image", live["image"])
        lines = [f"  service {live['container']} -> {live['upstream']}, image {image[:70]}"]
        for name, row in table.items():
            lines.append(f"  {name}: {_running(row)}/{row['wanted']} running ({oneoff.shown(row['command'])})")
            for task in row["containers"]:
                lines.append(f"    {task['name']:<32} {task['sha'][:12]:<12} {task['node']:<20} {task['status']}")
            if row["rolling"]:
                old = ", ".join(f"{t['name']} {t['sha'][:12]} on {t['node']}" for t in row["rolling"])
                lines.append(f"    rolling: still running and reachable until Swarm stops them: {old}")
        return lines

    def apply_limits(self, app, live: dict, changed: dict, emit: Emit) -> None:
        emit(f"the tasks get them at the next deploy or `zdd restart {app.name}` (Swarm replaces each one)")

    def scale(self, app, live: dict, counts: dict[str, int], emit: Emit) -> None:
        for process, count in counts.items():
            service = swarm.find(self.client, swarm.service_name(app.name, process))
            if service is None:
                emit(f"{process}: no service yet: it starts with {count} task(s) at the next deploy")
                continue
            service.scale(count)
            emit(f"{process}: {count} task(s) wanted: Swarm starts or stops them now")

    def logs(self, app, live: dict, process: str, follow: bool, tail: int):
        service = swarm.find(self.client, swarm.service_name(app.name, process))
        if service is None:
            raise ContainerFailed(f"{app.name} has no {process} service running")
        for chunk in service.logs(stdout=True, stderr=True, follow=follow, tail=tail, timestamps=False):
            yield chunk.decode("utf-8", "replace")

    def stop_processes(self, app, live: dict) -> list:
        """Scale every process's service to 0; the counts to give back."""
        stopped = [(service.name, service.attrs["Spec"]["Mode"]["Replicated"]["Replicas"])
                   for service in services(self.client, app.name)]
        timeout = app.repo_config_at(live["sha"]).stop_timeout + 60
        for name, _ in stopped:
            swarm.scale_and_wait(self.client, name, 0, timeout)
        return stopped

    def start_processes(self, app, live: dict, stopped: list, emit: Emit) -> None:
        timeout = app.repo_config_at(live["sha"]).health_timeout + 60
        for name, replicas in stopped:
            swarm.scale_and_wait(self.client, name, replicas, timeout)
            emit(f"    {name}: {replicas} task(s) running")

    def start_data(self, app, service, labels: dict):
        """A Swarm service pinned to this node, where its volume is and where zdd backs it up."""
        network = data.network_name(app.name)
        swarm.ensure_network(self.client, network, {engine.DATA_LABEL: app.name})
        engine.create_volume(self.client, service.volume, labels)
        task = swarm.Task(service.environment(), tuple(service.command() or ()) or None,
                          engine.data_healthcheck(service), (engine.data_mount(service),),
                          (f"node.id=={swarm.this_node(self.client)}",), data.STOP_TIMEOUT)
        swarm.start_data_service(self.client, service.container, service.image, network, labels, task,
                                 service.spec.stop_signal)
        return self._data_container_once_started(service)

    def _data_container_once_started(self, service):
        deadline = time.monotonic() + data.START_TIMEOUT
        while time.monotonic() < deadline:
            container = engine.data_container(self.client, service)
            if container is not None:
                return container
            failed = [t for t in swarm.tasks(self.client.services.get(service.container))
                      if t["state"] in ("failed", "rejected")]
            if len(failed) >= 2:
                raise ContainerFailed(f"{service.kind} did not start on the swarm: {failed[0]['error']}")
            time.sleep(0.5)
        raise ContainerFailed(f"{service.kind} did not start within {data.START_TIMEOUT}s: "
                              f"see `docker service ps {service.container}`")

    def stop_data(self, app, service) -> None:
        swarm.scale_and_wait(self.client, service.container, 0, data.STOP_TIMEOUT + 30)

    def resume_data(self, app, service):
        self.client.services.get(service.container).scale(1)
        return self._data_container_once_started(service)

    def remove_data(self, app, service) -> None:
        swarm.remove(self.client, service.container)
        self._wait_gone({"label": f"com.docker.swarm.service.name={service.container}"})

    def remove_app_network(self, app) -> None:
        engine.remove_network(self.client, data.network_name(app.name))

    def destroy(self, app, emit: Emit) -> None:
        """Remove the app's services and its data services, and wait for their tasks on this
        node to be gone (their volumes, this node's, can be removed only then)."""
        found = services(self.client, app.name) + \
            self.client.services.list(filters={"label": f"{engine.DATA_LABEL}={app.name}"})
        for service in found:
            try:
                service.remove()
                emit(f"removed service {service.name}")
            except docker.errors.NotFound:
                pass
        self._wait_gone({"label": f"{SERVICE_LABEL}={app.name}"})
        self._wait_gone({"label": f"{engine.DATA_LABEL}={app.name}"})

    def _wait_gone(self, filters: dict, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.client.containers.list(ignore_removed=True, all=True, filters=filters) \
                and time.monotonic() < deadline:
            time.sleep(0.5)

    def after_install(self, emit: Emit, changed: bool) -> None:
        self.refresh_routes(emit)  # this also starts Caddy's container


def _task_row(service_name: str, task: dict) -> dict:
    return {"name": f"{service_name}.{task['slot']}", "node": task["node"], "status": task["state"],
            "health": None, "sha": task["image"].rsplit(":", 1)[-1]}


def _running(row: dict) -> int:
    return sum(1 for c in row["containers"] if c["status"] == "running")

