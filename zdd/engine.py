"""Everything zdd asks of the Docker engine, through the Docker SDK."""

import time
from typing import IO, Callable

import docker
import docker.errors

from zdd.errors import BuildFailed, ZddError

Emit = Callable[[str], None]
LOOPBACK = "127.0.0.1"


def connect() -> docker.DockerClient:
    try:
        client = docker.from_env()
        client.ping()
        return client
    except docker.errors.DockerException as error:
        raise ZddError(f"cannot reach the Docker engine ({error}): is dockerd running?") from None


def find_image(client: docker.DockerClient, tag: str):
    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None


def build_image(client, context: IO[bytes], tag: str, labels: dict, emit: Emit):
    """Build from a tar stream, streaming the build's output line by line."""
    tail: list[str] = []
    try:
        for chunk in client.api.build(
            fileobj=context, custom_context=True, tag=tag, labels=labels,
            rm=True, forcerm=True, pull=False, decode=True,
        ):
            if "error" in chunk:
                raise BuildFailed(f"the image did not build: {chunk['error'].strip()}")
            for line in chunk.get("stream", "").splitlines():
                if line.strip():
                    tail = (tail + [line])[-20:]
                    emit(line)
    except docker.errors.APIError as error:
        raise BuildFailed(f"the image did not build: {error.explanation or error}") from None
    image = find_image(client, tag)
    if image is None:
        raise BuildFailed("the build ended without an image: " + " | ".join(tail[-3:]))
    return image


def storage_dir(client) -> str:
    """Where the engine keeps images (to check its free space)."""
    return client.info().get("DockerRootDir") or "/var/lib/docker"


def exposed_ports(image) -> list[int]:
    ports = (image.attrs.get("Config") or {}).get("ExposedPorts") or {}
    return sorted(int(p.split("/")[0]) for p in ports if p.endswith("/tcp"))


def has_healthcheck(image) -> bool:
    return health_command(image) is not None


def health_command(image) -> list[str] | None:
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
            deadline = time.monotonic() + self.timeout
            while time.monotonic() < deadline:
                info = self.client.api.exec_inspect(exec_id)
                if not info["Running"]:
                    return info["ExitCode"] == 0
                time.sleep(0.05)
        except docker.errors.APIError:
            pass  # not running yet, or gone: the status check says which
        return False


class PortInUse(ZddError):
    """The slot's host port is taken by something else."""


def start_container(client, image, name: str, port: int, host_port: int, labels: dict, env: dict):
    """Run detached, with ``port`` published on 127.0.0.1:``host_port`` only.

    No restart policy yet: a crashing candidate must stay stopped so its exit code
    shows. ``keep_running`` adds the policy once it is healthy."""
    try:
        return client.containers.run(
            image.id,
            name=name,
            detach=True,
            labels=labels,
            ports={f"{port}/tcp": (LOOPBACK, host_port)},
            init=True,
            stop_signal="SIGTERM",
            environment={**env, "PORT": str(port)},
        )
    except docker.errors.APIError as error:
        text = str(error.explanation or error)
        if "already allocated" in text or "address already in use" in text:
            _remove_by_name(client, name)
            raise PortInUse(text) from None
        raise


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


def app_containers(client, app: str) -> list:
    return client.containers.list(all=True, filters={"label": f"zdd.app={app}"})


def stop_and_remove(container, timeout: float) -> None:
    try:
        container.stop(timeout=int(timeout))
    except docker.errors.NotFound:
        return
    except docker.errors.APIError:
        pass
    remove(container)


def remove(container) -> None:
    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass



def app_images(client, app: str) -> list[dict]:
    """Images zdd built for ``app``: sha, id, size in bytes, and the raw creation time."""
    images = []
    for image in client.images.list(filters={"label": f"zdd.app={app}"}):
        sha = image.labels.get("zdd.sha")
        if sha:
            images.append({"sha": sha, "id": image.id, "size": image.attrs.get("Size", 0),
                           "created": image.attrs.get("Created", "")})
    return images


def remove_image(client, image_id: str) -> bool:
    try:
        client.images.remove(image_id, force=False, noprune=False)
        return True
    except docker.errors.APIError:
        return False
