"""Everything zdd asks of Docker Swarm, through the Docker SDK: images pushed to the
cluster's registry, one service per process of an app, and rolling updates that Swarm
health-gates and rolls back by itself.

Services use DNS round-robin endpoints (`tasks.SERVICE`), not virtual IPs: the proxy
resolves the tasks itself, and VIPs need IPVS, which not every kernel has.
"""

import dataclasses
import time
from typing import Callable

import docker
import docker.errors
import docker.types

from zdd import engine
from zdd.errors import ZddError

Emit = Callable[[str], None]
NANOSECONDS = 1_000_000_000
SHOWN = ("starting", "running", "failed", "rejected", "shutdown", "complete")  # not pending, assigned, ...
ENDED = ("complete", "failed", "rejected", "shutdown", "orphaned", "remove")
NODE_DOWN_GRACE = 15.0  # seconds a rollout may wait on a down node before zdd says so
SETTLE_GRACE = 30.0     # seconds to wait, after Swarm says a rollout ended, for every replica to run
FINAL = {"completed": "converged", "rollback_completed": "rolled back", "paused": "paused",
         "rollback_paused": "rollback paused"}


class SwarmError(ZddError):
    pass


class NodeDown(SwarmError):
    """A rollout stalled on a node that is down: tasks elsewhere may run the new version."""
    old_version_serves = False


@dataclasses.dataclass(frozen=True)
class Rollout:
    """How a process's new tasks replace the old: ``parallelism`` at a time, each batch watched
    ``monitor`` seconds once healthy (zdd.toml's watch_seconds)."""
    replicas: int
    overlap: bool = True
    monitor: float = 2.0
    parallelism: int = 1

    @property
    def batch(self) -> int:
        """Tasks replaced at once: stopped first, at least one of the old keeps serving."""
        if self.order == "stop-first" and self.replicas > 1:
            return max(1, min(self.parallelism, self.replicas - 1))
        return max(1, min(self.parallelism, self.replicas))

    @property
    def order(self) -> str:
        """A single replica: the new task first, so that one always serves (unless the process
        must never run twice at once). Several: the old task stops first, while the others
        serve. Swarm places a new task on the node with the fewest of the service's tasks,
        which is then the one just freed: the replicas stay spread over the nodes. Started
        first, the new task lands on any node (they all hold one) and Swarm never moves it
        back: 6 of 10 rollouts of 3 replicas on 3 nodes ended with two on one node."""
        return "start-first" if self.overlap and self.replicas == 1 else "stop-first"


@dataclasses.dataclass(frozen=True)
class Change:
    """A service created or updated; ``previous_update`` tells a new rollout's status from the
    last one's, which the service reports until Swarm starts the new one."""
    service: str
    image: str
    created: bool
    previous_update: str | None = None


def service_name(app: str, process: str) -> str:
    return f"zdd-{app}-{process}"


def ensure_network(client, name: str, labels: dict | None = None) -> None:
    """An attachable overlay network, so that containers (the proxy's, one-off commands) can join it."""
    if not client.networks.list(names=[name]):
        client.networks.create(name, driver="overlay", attachable=True, labels=labels or {"zdd": "proxy"})


def push(client, image: str, registry: str) -> str:
    """Tag ``image`` for the cluster's registry and push it; return the name the nodes pull."""
    remote = f"{registry}/{image}"
    repository, tag = remote.rsplit(":", 1)
    client.images.get(image).tag(repository, tag)
    for chunk in client.api.push(repository, tag=tag, stream=True, decode=True):
        if "error" in chunk:
            raise SwarmError(f"pushing {image} to the registry {registry} failed: {chunk['error'].strip()}")
    return remote


@dataclasses.dataclass(frozen=True)
class Task:
    """What each task of a service runs, beside its image."""
    env: dict
    command: tuple | None = None
    healthcheck: dict | None = None   # the SDK's Healthcheck fields; None: the image's own
    mounts: tuple = ()                # docker.types.Mount
    constraints: tuple = ()           # e.g. node.role==manager
    stop_grace: float = 10.0
    limit: object = None              # a limits.Limit: Swarm's resource limits


def _resources(limit) -> docker.types.Resources:
    """Empty rather than None: an update keeps what it is not given, and a limit taken off must go."""
    if limit is None:
        return docker.types.Resources()
    return docker.types.Resources(cpu_limit=limit.nano_cpus, mem_limit=limit.memory_bytes)


def deploy(client, name: str, image: str, rollout: Rollout, networks: list[str], labels: dict, task: Task) -> Change:
    """Create the service, or start rolling it to ``image`` (and onto ``networks``)."""
    order = rollout.order
    monitor = int(rollout.monitor * NANOSECONDS)
    update = docker.types.UpdateConfig(parallelism=rollout.batch, order=order, failure_action="rollback",
                                       monitor=monitor, max_failure_ratio=0)
    rollback = docker.types.RollbackConfig(parallelism=rollout.batch, order=order, monitor=monitor)
    settings = dict(image=image, labels=labels, container_labels=labels,
                    env=[f"{k}={v}" for k, v in task.env.items()],
                    command=list(task.command) if task.command else None,
                    healthcheck=docker.types.Healthcheck(**task.healthcheck) if task.healthcheck else None,
                    mounts=list(task.mounts), constraints=list(task.constraints),
                    stop_grace_period=int(task.stop_grace * NANOSECONDS),
                    mode=docker.types.ServiceMode("replicated", replicas=rollout.replicas),
                    update_config=update, rollback_config=rollback, networks=list(networks),
                    resources=_resources(task.limit), **engine.swarm_log_options(client))
    existing = find(client, name)
    if existing is None:
        client.services.create(name=name, init=True, endpoint_spec=docker.types.EndpointSpec(mode="dnsrr"),
                               **settings)
        return Change(name, image, created=True)
    previous = (existing.attrs.get("UpdateStatus") or {}).get("StartedAt")
    same_image = _image(existing.attrs["Spec"]["TaskTemplate"]) == image
    if same_image:
        settings["force_update"] = True  # an unchanged spec would start no rollout
    existing.update(fetch_current_spec=True, **settings)  # keep what is not given: endpoints
    return Change(name, image, created=False, previous_update=previous)


def restore_previous(client, service) -> Change:
    """Roll a service back to the spec it had before its last update (image, env, labels)."""
    previous = service.attrs["PreviousSpec"]
    started = (service.attrs.get("UpdateStatus") or {}).get("StartedAt")
    client.api.update_service(service.id, service.version, name=previous["Name"],
                              task_template=previous["TaskTemplate"], labels=previous.get("Labels"),
                              mode=previous.get("Mode"), update_config=previous.get("UpdateConfig"),
                              rollback_config=previous.get("RollbackConfig"),
                              endpoint_spec=previous.get("EndpointSpec"))
    return Change(service.name, _image(previous["TaskTemplate"]), created=False, previous_update=started)


def find(client, name: str):
    try:
        return client.services.get(name)
    except docker.errors.NotFound:
        return None


def wait(client, change: Change, timeout: float, emit: Emit, poll: float = 0.5) -> str:
    """Follow a rollout until it ends; say each task's changes as they happen. Returns
    "converged", "rolled back" (Swarm rolled back by itself: the old version serves), or
    for a new service "failed to start" (its tasks failed twice each on average)."""
    name = change.service
    deadline = time.monotonic() + timeout
    seen: dict[str, str] | None = None  # task id -> its line; what is there at the start goes unsaid
    hostnames: dict[str, str] = {}
    stalled_since = ended_at = None
    while time.monotonic() < deadline:
        service = client.services.get(name)
        found = tasks(service, hostnames)
        lines = {task["id"]: _line(name, task) for task in found if task["state"] in SHOWN}
        for task_id, line in lines.items():
            if seen is not None and seen.get(task_id) != line:
                emit(f"    {line}")
        seen = {**(seen or {}), **lines}
        outcome = _outcome(service, change, found)
        ended_at = (ended_at or time.monotonic()) if outcome else None
        if outcome and (_all_running(service, found) or time.monotonic() - ended_at > SETTLE_GRACE):
            return outcome
        down = _waiting_on_down_nodes(client, found)
        stalled_since = (stalled_since or time.monotonic()) if down else None
        if down and time.monotonic() - stalled_since > NODE_DOWN_GRACE:
            raise NodeDown(f"the rollout of {name} waits on {', '.join(down)}, which is down: Swarm finishes it "
                           "when the node is back (`zdd status` then records the new version), or once you drop "
                           f"the node (`docker node rm --force {down[0]}`); meanwhile the other nodes serve")
        time.sleep(poll)
    raise SwarmError(f"{name} did not finish rolling out within {timeout:.0f}s: see `docker service ps {name}`")


def stays_up(client, change: Change, seconds: float, poll: float = 0.5) -> str:
    """A service new in this deploy has no update for Swarm to monitor: it is converged as soon
    as its tasks run, even one that exits a moment later (and is restarted forever). Watch
    its tasks for ``seconds``: "converged", or "exited soon after starting"."""
    deadline = time.monotonic() + seconds
    while True:
        found = tasks(client.services.get(change.service))
        if any(t["image"] == change.image and t["state"] in ("failed", "complete", "rejected") for t in found):
            return "exited soon after starting"
        if time.monotonic() >= deadline:
            return "converged"
        time.sleep(poll)


def _all_running(service, found: list[dict]) -> bool:
    """Every replica wanted runs: Swarm reports a rollback done while its last task still starts."""
    wanted = service.attrs["Spec"]["Mode"]["Replicated"]["Replicas"]
    return sum(1 for t in found if t["desired"] == "running" and t["state"] == "running") >= wanted


def _waiting_on_down_nodes(client, found: list[dict]) -> list[str]:
    """Nodes that are down while the rollout waits on a task there (one to start, or one to
    stop): Swarm cannot hear from them, so it waits until they are back or removed."""
    pending = {t["node_id"] for t in found if t["node_id"] and t["state"] != t["desired"]
               and not (t["desired"] == "shutdown" and t["state"] in ENDED)}
    if not pending:
        return []
    return sorted(node.attrs["Description"]["Hostname"] for node in client.nodes.list()
                  if node.id in pending and node.attrs["Status"]["State"] == "down")


def _line(name: str, task: dict) -> str:
    version = task["image"].rsplit(":", 1)[-1][:12]
    error = f" ({task['error']})" if task["error"] else ""
    return f"{name}.{task['slot']} {version} on {task['node']}: {task['state']}{error}"


def _outcome(service, change: Change, found: list[dict]) -> str | None:
    status = service.attrs.get("UpdateStatus")
    if not change.created:
        if not status or status.get("StartedAt") == change.previous_update:
            return None  # Swarm has not started this rollout yet
        return FINAL.get(status.get("State"))
    wanted = service.attrs["Spec"]["Mode"]["Replicated"]["Replicas"]
    running = [t for t in found if t["desired"] == "running" and t["state"] == "running"]
    if len(running) == wanted:
        return "converged"
    failed = [t for t in found if t["state"] in ("failed", "rejected")]
    return "failed to start" if len(failed) >= 2 * wanted else None  # Swarm would retry forever


def tasks(service, hostnames: dict | None = None) -> list[dict]:
    """The service's tasks, newest first: slot, node, state, the state wanted, image, error.
    ``hostnames``: node id -> name, filled as nodes are met (pass one to reuse it)."""
    nodes = {} if hostnames is None else hostnames
    found = []
    for task in sorted(service.tasks(), key=lambda t: t["CreatedAt"], reverse=True):
        node_id = task.get("NodeID", "")
        if node_id and node_id not in nodes:
            nodes[node_id] = service.client.nodes.get(node_id).attrs["Description"]["Hostname"]
        status = task["Status"]
        found.append({"id": task["ID"], "slot": task.get("Slot"), "node": nodes.get(node_id, "-"), "node_id": node_id,
                      "state": status["State"], "desired": task["DesiredState"], "error": status.get("Err", ""),
                      "image": _image(task["Spec"])})
    return found


def outdated(service, found: list[dict]) -> list[dict]:
    """Tasks still running that the service no longer wants: an older image's, or ones Swarm
    is stopping (also those on a node that is down or just came back, which it has not
    heard stop yet). Each is in DNS, so a proxy may still reach it."""
    wanted = _image(service.attrs["Spec"]["TaskTemplate"])
    return [t for t in found if t["state"] == "running" and (t["desired"] != "running" or t["image"] != wanted)]


def _image(task_spec: dict) -> str:
    """The image a task spec names, without the digest Swarm pins it to."""
    return task_spec["ContainerSpec"]["Image"].split("@")[0]


def failed_task_logs(client, change: Change, lines: int = 20) -> list[str]:
    """What the tasks of ``change``'s image that failed wrote last, each line after its task,
    for the pusher to see why Swarm rolled back."""
    service = client.services.get(change.service)
    failed = {t["id"]: t for t in tasks(service) if t["state"] in ("failed", "rejected") and t["image"] == change.image}
    said = []
    for raw in service.logs(stdout=True, stderr=True, details=True, tail=200):
        details, _, text = raw.decode(errors="replace").rstrip("\n").partition(" ")
        task_id = dict(item.split("=", 1) for item in details.split(",") if "=" in item).get("com.docker.swarm.task.id")
        if task_id in failed:
            said.append(f"{change.service}.{failed[task_id]['slot']} on {failed[task_id]['node']}: {text}")
    return said[-lines:]


def remove(client, name: str) -> None:
    service = find(client, name)
    if service is not None:
        service.remove()


def start_data_service(client, name: str, image: str, network: str, labels: dict, task: Task,
                       stop_signal: str) -> None:
    """A data service: one replica on the node of ``task``'s constraints (its volume is there),
    restarted by Swarm, reached by its name over the app's overlay network."""
    remove(client, name)
    client.services.create(
        image, name=name, networks=[network], labels=labels, container_labels=labels,
        env=[f"{k}={v}" for k, v in task.env.items()], command=list(task.command) if task.command else None,
        healthcheck=docker.types.Healthcheck(**task.healthcheck), mounts=list(task.mounts),
        constraints=list(task.constraints), stop_grace_period=int(task.stop_grace * NANOSECONDS),
        stop_signal=stop_signal, endpoint_spec=docker.types.EndpointSpec(mode="dnsrr"),
        mode=docker.types.ServiceMode("replicated", replicas=1), **engine.swarm_log_options(client))


def this_node(client) -> str:
    """The id of the swarm node this engine is: what a service pinned here is constrained to."""
    return client.info()["Swarm"]["NodeID"]


def scale_and_wait(client, name: str, replicas: int, timeout: float) -> None:
    """Set the service's replicas; return once exactly that many run (healthy, where it has a
    health check: Swarm holds a task in "starting" until then)."""
    service = client.services.get(name)
    service.scale(replicas)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = tasks(client.services.get(name))
        wanted = [t for t in found if t["desired"] == "running"]
        leaving = [t for t in found if t["desired"] != "running" and t["state"] not in ENDED]
        if len(wanted) == replicas and all(t["state"] == "running" for t in wanted) and not leaving:
            return
        time.sleep(0.5)
    raise SwarmError(f"{name} did not reach {replicas} running task(s) within {timeout:.0f}s: "
                     f"see `docker service ps {name}`")
