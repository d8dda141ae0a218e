"""Everything zdd asks of the Docker engine, through the Docker SDK."""

import dataclasses
import io
import os
import re
import shutil
import socket
import subprocess
import tarfile
import threading
import time
from typing import Callable, Iterator

import docker
import docker.errors
import docker.types

from zdd.errors import ZddError

Emit = Callable[[str], None]
LOOPBACK = "127.0.0.1"


def connect(log_cap: "LogCap | None" = None) -> docker.DockerClient:
    """A client of the engine; the containers it starts keep at most ``log_cap`` of log."""
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as error:
        raise ZddError(f"cannot reach the Docker engine ({error}): is dockerd running?") from None
    client.zdd_log_cap = log_cap or LogCap()
    return client


@dataclasses.dataclass(frozen=True)
class LogCap:
    """How much log each container zdd starts keeps: Docker's json-file driver, rotated."""
    max_size: str = "10m"
    max_files: int = 3

    def options(self, daemon_driver: str | None) -> dict | None:
        """The SDK's log_config; None where the daemon logs elsewhere by default (local,
        journald, a log shipper...): the operator chose it, and zdd keeps it."""
        if daemon_driver not in (None, "json-file"):
            return None
        return {"type": "json-file", "config": {"max-size": self.max_size, "max-file": str(self.max_files)}}


def log_options(client) -> dict:
    """``log_config=...`` for containers.create/run, or nothing (see LogCap.options)."""
    cap = getattr(client, "zdd_log_cap", None) or LogCap()
    options = cap.options(daemon_log_driver(client))
    return {"log_config": options} if options else {}


CPU_PERIOD = 100_000  # microseconds: Docker's --cpus is this period and a quota of cpus x it


def limit_options(limit) -> dict:
    """A limits.Limit as options of containers.create/run and container.update (which knows
    no nano_cpus, hence the quota): memory with no swap beyond it."""
    options = {}
    if limit is not None and limit.memory_bytes:
        options.update(mem_limit=limit.memory_bytes, memswap_limit=limit.memory_bytes)
    if limit is not None and limit.cpus:
        options.update(cpu_period=CPU_PERIOD, cpu_quota=round(float(limit.cpus) * CPU_PERIOD))
    return options


def update_limit(container, limit) -> str | None:
    """Change a running container's limits in place (setting or changing one, not removing
    it); what Docker said if it would not (say, memory below what the container uses)."""
    options = limit_options(limit)
    try:
        if options:
            container.update(**options)
    except docker.errors.APIError as error:
        return str(error.explanation or error)
    return None


EVENTS_KEPT = 256  # dockerd answers `since` from the last 256 events it keeps, of every kind


def app_events(client, since: float, until: float) -> tuple[list[dict], bool]:
    """Docker's container events of zdd's apps between two times, oldest first, and whether
    that is all of them. Not all when the engine kept none from before ``since``: every
    health check's exec alone is three events, so a busy engine forgets within seconds."""
    stream = client.events(since=since, until=until, decode=True)
    try:
        every = list(stream)
    finally:
        stream.close()
    mine = [e for e in every if e.get("Type") == "container"
            and ((e.get("Actor") or {}).get("Attributes") or {}).get("zdd.app")]
    return mine, len(every) < EVENTS_KEPT - 16  # a few may have come after ``until``


def restarted_app_containers(client, since: float) -> list[dict]:
    """What Docker says of each zdd container it has restarted since ``since`` (running or
    about to be): the states that tell a crash the event log no longer holds. Only the ones
    whose listing says they may have (re)started since are inspected, one call each."""
    found = []
    for listed in listed_containers(client):
        if not _maybe_started_since(listed, time.time() - since):
            continue
        try:
            attrs = client.api.inspect_container(listed["Id"])
        except docker.errors.NotFound:
            continue
        if attrs.get("RestartCount"):
            raw = attrs.get("State") or {}
            # Docker clears the exit code and OOMKilled when it starts the container again
            waiting = bool(raw.get("Restarting"))
            found.append({"id": attrs["Id"], "name": attrs["Name"].lstrip("/"), "labels": attrs["Config"]["Labels"],
                          "restarts": attrs["RestartCount"], "started_at": raw.get("StartedAt"),
                          "finished_at": raw.get("FinishedAt"),
                          "exit_code": raw.get("ExitCode", 0) if waiting else None,
                          "oom_killed": bool(raw.get("OOMKilled")) if waiting else None})
    return found


def is_restarting(client, container_id: str) -> bool:
    """Whether the container still exists and Docker is restarting it, or has."""
    container = get_container(client, container_id)
    if container is None:
        return False
    raw = container.attrs.get("State") or {}
    return bool(raw.get("Restarting") or (raw.get("Running") and container.attrs.get("RestartCount")))


def swarm_log_options(client) -> dict:
    """The same for a Swarm service's tasks."""
    options = log_options(client).get("log_config")
    return {"log_driver": options["type"], "log_driver_options": options["config"]} if options else {}


def daemon_log_driver(client) -> str | None:
    if not hasattr(client, "zdd_daemon_log_driver"):
        client.zdd_daemon_log_driver = client.info().get("LoggingDriver")
    return client.zdd_daemon_log_driver


def find_image(client: docker.DockerClient, tag: str):
    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None


def storage_dir(client) -> str:
    """Where the engine keeps images (to check its free space)."""
    return client.info().get("DockerRootDir") or "/var/lib/docker"


def exposed_ports(image) -> list[int]:
    ports = (image.attrs.get("Config") or {}).get("ExposedPorts") or {}
    return sorted(int(p.split("/")[0]) for p in ports if p.endswith("/tcp"))


def has_healthcheck(image) -> bool:
    return health_command(image) is not None


def health_command(image) -> list[str] | None:  # an image, or a container (same Config)
    """The image's HEALTHCHECK as an argument list, or None if it has none."""
    test = ((image.attrs.get("Config") or {}).get("Healthcheck") or {}).get("Test") or []
    if test[:1] == ["CMD"] and len(test) > 1:
        return test[1:]
    if test[:1] == ["CMD-SHELL"] and len(test) > 1:
        return ["/bin/sh", "-c", test[1]]
    return None


class HealthCommandProbe:
    """Runs the image's own HEALTHCHECK command in the container, as Docker does, but as
    often as zdd polls rather than once per HEALTHCHECK interval: same check, found sooner."""

    def __init__(self, client, container, command: list[str], timeout: float = 2.0):
        self.client, self.container, self.command, self.timeout = client, container, command, timeout

    def __call__(self) -> bool:
        try:
            exec_id = self.client.api.exec_create(self.container.id, self.command)["Id"]
            self.client.api.exec_start(exec_id, detach=True)
            deadline, pause = time.monotonic() + self.timeout, 0.01
            while time.monotonic() < deadline:
                info = self.client.api.exec_inspect(exec_id)
                if not info["Running"]:
                    return info["ExitCode"] == 0
                time.sleep(pause)
                pause = min(pause * 2, 0.05)  # most checks end within a few hundredths
        except docker.errors.APIError:
            pass  # not running yet, or gone: the status check says which
        return False


def listening(container, port: int, timeout: float = 0.05) -> bool:
    """Whether the container takes TCP connections on ``port``, at its own address (the host
    port would not tell: Docker's proxy accepts there before anything listens inside)."""
    networks = (container.attrs.get("NetworkSettings") or {}).get("Networks") or {}
    address = next((n["IPAddress"] for n in networks.values() if n.get("IPAddress")), None)
    if address is None:  # not started yet
        return False
    try:
        socket.create_connection((address, port), timeout=timeout).close()
        return True
    except OSError:
        return False


class PortInUse(ZddError):
    """The slot's host port is taken by something else."""


def start_container(client, image, name: str, labels: dict, env: dict, *, command=None,
                    publish: tuple[int, int] | None = None, mounts=(), healthcheck: bool = True,
                    network: str | None = None, limit=None):
    """Run detached; ``publish`` = (app port, host port) publishes on 127.0.0.1 only;
    ``network``: the app's own network (else Docker's default bridge); ``limit``: a
    limits.Limit.

    No restart policy yet: a crashing candidate must stay stopped so its exit code
    shows. ``keep_running`` adds the policy once it is healthy."""
    options = {}
    if publish:
        port, host_port = publish
        options["ports"] = {f"{port}/tcp": (LOOPBACK, host_port)}
        env = {**env, "PORT": str(port)}
    if not healthcheck:
        options["healthcheck"] = {"test": ["NONE"]}
    if network:
        options["network"] = network
    try:
        return client.containers.run(
            image.id, command=list(command) if command else None, name=name, detach=True, labels=labels,
            init=True, stop_signal="SIGTERM", environment=env, mounts=docker_mounts(mounts), **options,
            **log_options(client), **limit_options(limit),
        )
    except docker.errors.APIError as error:
        text = str(error.explanation or error)
        if publish and ("already allocated" in text or "address already in use" in text):
            _remove_by_name(client, name)
            raise PortInUse(text) from None
        raise


def docker_mounts(mounts) -> list:
    """zdd's storage list as the SDK's mounts."""
    return [docker.types.Mount(m.target, m.source, type=m.kind) for m in mounts]


def _remove_by_name(client, name: str) -> None:
    container = get_container(client, name)
    if container is not None:
        remove(container)


def keep_running(container) -> None:
    """Restart it after a crash or a reboot, unless zdd stops it."""
    container.update(restart_policy={"Name": "unless-stopped"})


def state(container) -> dict:
    """Status ('running', 'exited', ...), health ('healthy', 'starting', ... or None), exit code."""
    container.reload()
    raw = container.attrs.get("State") or {}
    return {
        "status": raw.get("Status"),
        "health": (raw.get("Health") or {}).get("Status"),
        "exit_code": raw.get("ExitCode"),
        "restarting": raw.get("Restarting", False),
        "restarts": container.attrs.get("RestartCount", 0),
    }


def logs_tail(container, lines: int = 20) -> list[str]:
    try:
        text = container.logs(tail=lines, stdout=True, stderr=True).decode("utf-8", "replace")
    except docker.errors.APIError:
        return []
    return text.splitlines()


def health_log(container) -> list[str]:
    entries = ((container.attrs.get("State") or {}).get("Health") or {}).get("Log") or []
    return [f"exit {e.get('ExitCode')}: {(e.get('Output') or '').strip()}" for e in entries]


def get_container(client, name_or_id: str | None):
    if not name_or_id:
        return None
    try:
        return client.containers.get(name_or_id)
    except docker.errors.NotFound:
        return None


def listed_containers(client) -> list[dict]:
    """Every zdd container as `docker ps -a` lists it (labels, state, status text): one API
    call, where a Container object per container costs an inspect each."""
    return client.api.containers(all=True, filters={"label": "zdd.app"})


_UP_FOR = re.compile(r"^Up (Less than a second|About a minute|About an hour|(\d+) (second|minute|hour|day|week|month|year)s?)")
_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800, "month": 2592000, "year": 31536000}


def _maybe_started_since(listed: dict, seconds: float) -> bool:
    """Whether a listed container is restarting, or has been up for no more than ``seconds``
    as far as its status text (Docker's rounded "Up 3 minutes") tells."""
    if listed.get("State") == "restarting":
        return True
    if listed.get("State") != "running":
        return False
    up = _UP_FOR.match(listed.get("Status") or "")
    if up is None:
        return True  # a text this does not know: inspect rather than miss a crash
    if up.group(2):
        at_least = (int(up.group(2)) - (0.5 if up.group(3) != "second" else 0)) * _UNIT_SECONDS[up.group(3)]
    else:
        at_least = {"Less than a second": 0, "About a minute": 60, "About an hour": 1800}[up.group(1)]
    return at_least <= seconds + 1


def listed_health(listed: dict) -> str:
    """The health word of a listed container: its health check's, else its state."""
    found = re.search(r"\((healthy|unhealthy|health: starting)\)", listed.get("Status") or "")
    if found:
        return found.group(1).replace("health: ", "")
    return listed.get("State") or "unknown"


def app_containers(client, app: str, **labels: str) -> list:
    """The app's containers, optionally only those with the given zdd.* labels."""
    wanted = [f"zdd.app={app}"] + [f"zdd.{key}={value}" for key, value in labels.items()]
    return client.containers.list(ignore_removed=True, all=True, filters={"label": wanted})


def stop_and_remove(container, timeout: float) -> None:
    try:
        container.stop(timeout=int(timeout))
    except docker.errors.NotFound:
        return
    except docker.errors.APIError:
        pass
    remove(container)


def remove(container) -> None:
    """Remove it, and the anonymous volumes its image declared (named volumes stay)."""
    try:
        container.remove(force=True, v=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as error:
        if "already in progress" not in str(error):
            raise
        # another removal is under way (a one-off's auto-remove, Swarm's own): it finishes it



def app_images(client, app: str) -> list[dict]:
    """Images zdd built for ``app``: sha, id, size in bytes, and when built (epoch seconds)."""
    return [{"sha": image["Labels"]["zdd.sha"], "id": image["Id"], "size": image.get("Size", 0),
             "created": float(image.get("Created", 0))}
            for image in _listed_images(client, f"zdd.app={app}") if "zdd.sha" in image["Labels"]]


def _listed_images(client, label: str) -> list[dict]:
    """The engine's image listing alone: the SDK's images.list inspects each image after it,
    which fails when a deploy's retention removes one in between, and costs a call per image."""
    images = client.api.images(filters={"label": label})
    for image in images:
        image["Labels"] = image.get("Labels") or {}
    return images


def image_bytes_by_app(client) -> dict[str, int]:
    """What each app's kept images take, as `docker images` counts them (shared layers in each)."""
    sizes: dict[str, int] = {}
    for image in _listed_images(client, "zdd.app"):
        app = image["Labels"]["zdd.app"]
        sizes[app] = sizes.get(app, 0) + image.get("Size", 0)
    return sizes


def remove_image(client, image_id: str) -> bool:
    try:
        client.images.remove(image_id, force=False, noprune=False)
        return True
    except docker.errors.APIError:
        return False


def volume_exists(client, name: str) -> bool:
    try:
        client.volumes.get(name)
        return True
    except docker.errors.NotFound:
        return False


def create_volume(client, name: str, labels: dict) -> bool:
    """Create the named volume unless it exists; True if it was created."""
    try:
        client.volumes.get(name)
        return False
    except docker.errors.NotFound:
        client.volumes.create(name, driver="local", labels=labels)
        return True


def app_volumes(client, app: str) -> list[str]:
    """Its storage volumes and its data services' (those of upgrades too)."""
    return [volume.name for label in ("zdd.app", DATA_LABEL)
            for volume in client.volumes.list(filters={"label": f"{label}={app}"})]


def remove_volume(client, name: str) -> None:
    try:
        client.volumes.get(name).remove()
    except docker.errors.NotFound:
        pass


def run_to_completion(client, image, name: str, labels: dict, env: dict, command, mounts,
                      timeout: float, emit: Emit, network: str | None = None,
                      limit=None) -> tuple[int | None, list[str]]:
    """Run a one-off container, streaming its output line by line, for up to ``timeout``
    seconds (then kill it); always remove it. Returns its exit code (None: timed out)
    and its last lines."""
    container = client.containers.create(image.id, command=list(command), name=name, labels=labels,
                                         environment=env, mounts=docker_mounts(mounts), init=True,
                                         network=network, **log_options(client), **limit_options(limit))
    tail: list[str] = []
    try:
        container.start()
        pump = threading.Thread(target=_pump_lines, args=(container, tail, emit), daemon=True)
        pump.start()
        code = _wait_exit(container, timeout)
        if code is None:
            container.kill()
        pump.join(timeout=5)
        return code, tail[-20:]
    finally:
        remove(container)


def _pump_lines(container, tail: list[str], emit: Emit) -> None:
    try:
        for line in log_lines(container, follow=True):
            tail.append(line)
            del tail[:-20]
            emit(line)
    except docker.errors.APIError:
        pass


def log_lines(container, follow: bool, tail: int | str = "all") -> Iterator[str]:
    """The container's log (stdout and stderr) as text lines, as they come."""
    pending = b""
    for chunk in container.logs(stream=True, follow=follow, tail=tail, stdout=True, stderr=True):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.decode("utf-8", "replace").rstrip("\r")
    if pending:
        yield pending.decode("utf-8", "replace").rstrip("\r")


def _wait_exit(container, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        if container.status in ("exited", "dead"):
            return container.attrs["State"]["ExitCode"]
        time.sleep(0.1)
    return None


def create_interactive(client, image, name: str, labels: dict, env: dict, command, mounts, tty: bool,
                       network: str | None = None, limit=None):
    return client.containers.create(image.id, command=list(command), name=name, labels=labels,
                                    environment=env, mounts=docker_mounts(mounts), init=True,
                                    stdin_open=True, tty=tty, network=network, **log_options(client),
                                    **limit_options(limit))


def attach_terminal(container) -> int | None:
    """Start the container attached to this process's stdin, stdout and terminal, through the
    docker CLI (which knows raw mode, window size and signal forwarding); return its exit code."""
    subprocess.call([docker_cli(), "start", "--attach", "--interactive", container.id])
    container.reload()
    if container.status in ("exited", "dead"):
        return container.attrs["State"]["ExitCode"]
    return None


def ensure_network(client, name: str, labels: dict) -> None:
    """A bridge network of that name (an app's own, for its services), created if missing."""
    if not client.networks.list(names=[name]):
        client.networks.create(name, driver="bridge", labels=labels)


def remove_network(client, name: str) -> None:
    """Remove it unless something is still on it (the app's running version, until its next
    deploy: the network then goes with the app)."""
    for network in client.networks.list(names=[name]):
        try:
            network.remove()
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as error:
            if "in use" not in str(error) and "active endpoints" not in str(error):
                raise


def ensure_image(client, reference: str, emit: Emit):
    """The image, pulled from its registry only when this engine does not have it."""
    image = find_image(client, reference)
    if image is not None:
        return image
    emit(f"    pulling {reference}")
    try:
        return client.images.pull(reference)
    except docker.errors.APIError as error:
        raise ZddError(f"cannot pull {reference}: {error.explanation or error}") from None


DATA_LABEL = "zdd.data-of"  # a data service's app: never zdd.app, which marks the app's own containers


def start_service(client, service, network: str, labels: dict):
    """A data service's container (see zdd.services.Service): its data on a named volume, on
    the app's network only (nothing published), restarted by Docker, checked every second."""
    create_volume(client, service.volume, labels)
    _remove_by_name(client, service.container)
    container = client.containers.create(
        service.image, name=service.container, network=network, restart_policy={"Name": "unless-stopped"},
        mounts=[data_mount(service)], **_service_options(service, labels), **log_options(client))
    container.start()
    return container


def data_mount(service) -> docker.types.Mount:
    return docker.types.Mount(service.spec.data_dir, service.volume, type="volume")


def data_container(client, service):
    """The running container of an app's data service on this engine (a container of its own,
    or in Swarm mode the task of its service, which runs here), or None."""
    found = client.containers.list(ignore_removed=True, filters={
        "label": [f"{DATA_LABEL}={service.app}", f"zdd.data={service.kind}"], "status": "running"})
    return next((c for c in found if service.runs_in(c.name)), None)


def scratch_service(client, service, name: str, labels: dict):
    """A created, not started, copy of a service with no network and no named volume: a
    backup is restored into it to prove that it restores. Remove it with ``remove``."""
    return client.containers.create(service.image, name=name, network_mode="none",
                                    **_service_options(service, labels))


def _service_options(service, labels: dict) -> dict:
    return {"command": service.command(), "labels": labels, "environment": service.environment(),
            "stop_signal": service.spec.stop_signal, "healthcheck": data_healthcheck(service)}


def data_healthcheck(service) -> dict:
    """Every 10 s (each check is a process in the container, about 5% of a core at one a
    second); zdd runs the same command itself to see a new service's first healthy answer."""
    second = 1_000_000_000
    return {"test": service.healthcheck(), "interval": 10 * second, "timeout": 5 * second, "retries": 3,
            "start_period": 60 * second}


def service_containers(client, app: str) -> list:
    return client.containers.list(ignore_removed=True, all=True, filters={"label": f"{DATA_LABEL}={app}"})


def exec_output(container, command: list[str]) -> tuple[int, str]:
    """Run a short command in a running container: its exit code and its output."""
    result = container.exec_run(command, stdout=True, stderr=True)
    return result.exit_code, result.output.decode("utf-8", "replace")


def docker_cli() -> str:
    """The docker command-line client, for what the SDK does not stream (exec with stdin, cp)."""
    cli = shutil.which("docker") or next((p for p in ("/usr/bin/docker", "/usr/local/bin/docker")
                                          if os.access(p, os.X_OK)), None)
    if cli is None:
        raise ZddError("this needs the docker command-line client: install docker.io or docker-ce-cli")
    return cli


def exec_argv(container: str, command: list[str], stdin: bool = False) -> list[str]:
    return [docker_cli(), "exec", *(["-i"] if stdin else []), container, *command]


def copy_in_argv(container: str, folder: str) -> list[str]:
    """``docker cp -``: a tar on standard input, unpacked into ``folder`` (also of a stopped container)."""
    return [docker_cli(), "cp", "-", f"{container}:{folder}"]


def copy_out_argv(container: str, path: str) -> list[str]:
    return [docker_cli(), "cp", f"{container}:{path}", "-"]


HELPER_IMAGE = "zdd-helper:busybox"
STATIC_BUSYBOX = "/bin/busybox"


def helper_image(client) -> str:
    """A one-file image holding the host's static busybox (Debian's busybox-static), made
    here once: tar and sh for storage backups, with nothing pulled from a registry."""
    if find_image(client, HELPER_IMAGE) is not None:
        return HELPER_IMAGE
    try:
        binary = open(STATIC_BUSYBOX, "rb").read()
    except FileNotFoundError:
        binary = b""
    if b"ld-linux" in binary[:8192] or not binary.startswith(b"\x7fELF"):
        raise ZddError(f"backing up storage needs a static busybox at {STATIC_BUSYBOX}: "
                       "apt-get install -y busybox-static (install.sh does it)")
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        entry = tarfile.TarInfo("bin/busybox")
        entry.size, entry.mode = len(binary), 0o755
        tar.addfile(entry, io.BytesIO(binary))
    repository, tag = HELPER_IMAGE.split(":")
    client.api.import_image_from_data(archive.getvalue(), repository=repository, tag=tag)
    return HELPER_IMAGE


def helper_argv(client, mount, command: list[str], read_only: bool = False, stdin: bool = False) -> list[str]:
    """``docker run`` of the helper with one storage mount at /data, removed when done."""
    spec = f"type={mount.kind},src={mount.source},dst=/data" + (",readonly" if read_only else "")
    return [docker_cli(), "run", "--rm", *(["-i"] if stdin else []), "--network", "none",
            "--label", "zdd.helper=1", "--mount", spec, helper_image(client), STATIC_BUSYBOX, *command]


def volume_sizes(client, patience: float = 30.0) -> dict[str, int]:
    """Each volume's size in bytes, as `docker system df -v` counts it. Docker 20.10 refuses
    a second df while one runs (another `zdd apps`, a `docker system df`): wait for it."""
    import tenacity
    busy = lambda error: isinstance(error, docker.errors.APIError) and "already running" in str(error)
    try:
        usage = tenacity.Retrying(retry=tenacity.retry_if_exception(busy), stop=tenacity.stop_after_delay(patience),
                                  wait=tenacity.wait_fixed(0.5), reraise=True)(client.df)
    except docker.errors.APIError as error:
        raise ZddError(f"Docker did not size the volumes ({error.explanation or error}): run the command again") from None
    return {v["Name"]: (v.get("UsageData") or {}).get("Size", -1) for v in usage.get("Volumes") or []}
