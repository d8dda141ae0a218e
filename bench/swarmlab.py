"""The three-node Swarm lab (scripts/swarm-lab) as the tests and the benchmark use it:
brought up in a short folder of its own, torn down completely, and HTTP clients inside
the manager's network namespace (Caddy's container publishes its ports there)."""

import contextlib
import hashlib
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
from pathlib import Path

import docker

from loadclient import KeepAliveClient, enter_netns
from probes import http_get

REPO = Path(__file__).resolve().parents[1]
LAB = REPO / "scripts" / "swarm-lab"


class SwarmLab:
    def __init__(self, nodes: int = 3, bare: bool = False):
        """bare: engines only, as servers before install.sh (no registry, swarm or image)."""
        self.options = ["--nodes", str(nodes)] + (["--bare"] if bare else [])
        self.parent = Path(tempfile.mkdtemp(prefix="zl-", dir="/tmp"))  # short: dockerd's sockets go below it
        self.folder = self.parent / "lab"
        self.env: dict[str, str] = {}

    def __enter__(self) -> "SwarmLab":
        up = subprocess.run([str(LAB), "up", "--dir", str(self.folder), *self.options], capture_output=True, text=True, timeout=300)
        if up.returncode != 0:
            self.down()
            raise RuntimeError(f"swarm-lab up failed:\n{up.stdout}{up.stderr}")
        self.env = dict(re.findall(r"^export (\w+)='?([^'\n]*)'?$", up.stdout, re.M))
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    def down(self) -> None:
        down = subprocess.run([str(LAB), "down", "--dir", str(self.folder)], capture_output=True, text=True,
                              timeout=300)
        shutil.rmtree(self.parent, ignore_errors=True)
        if down.returncode != 0:
            raise RuntimeError(f"swarm-lab down failed:\n{down.stdout}{down.stderr}")

    @property
    def docker_host(self) -> str:
        return self.env["DOCKER_HOST"]

    @property
    def node_hosts(self) -> list[str]:
        return self.env["ZDDLAB_NODE_HOSTS"].split()

    @property
    def node_addrs(self) -> list[str]:
        return self.env["ZDDLAB_NODE_ADDRS"].split()

    @contextlib.contextmanager
    def manager(self):
        """A Docker client of the manager's engine, closed afterwards."""
        client = docker.DockerClient(base_url=self.docker_host)
        try:
            yield client
        finally:
            client.close()

    @property
    def registry(self) -> str:
        return self.env["ZDDLAB_REGISTRY"]

    @property
    def manager_netns(self) -> str:
        return f"zddlab-{self._tag()}-node1"

    def _tag(self) -> str:
        return hashlib.sha1(os.path.realpath(self.folder).encode()).hexdigest()[:6]  # how the lab names things

    def set_link(self, node: str, up: bool) -> None:
        """Cut ``node`` (node1, node2, ...) off the lab's network, or join it again: as if its
        cable were pulled. Its daemons and containers keep running."""
        subprocess.run(["ip", "-n", f"zddlab-{self._tag()}-sw", "link", "set", node, "up" if up else "down"],
                       check=True, capture_output=True)

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.manager_netns}"

    def http_get(self, url: str, host: str | None = None, timeout: float = 5.0) -> tuple[int, str]:
        """probes.http_get from inside the manager's network namespace (from a thread that
        enters it, so this process stays where it is)."""
        answer: list = []

        def get() -> None:
            enter_netns(self.netns_path)
            answer.append(http_get(url, timeout, host))

        thread = threading.Thread(target=get)
        thread.start()
        thread.join()
        return answer[0] if answer else (0, "could not enter the lab's network namespace")

    def certificate(self, port: int, host: str) -> bytes:
        """The certificate that 127.0.0.1:``port`` in the manager's namespace presents for ``host``."""
        answer: list = []

        def handshake() -> None:
            enter_netns(self.netns_path)
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with context.wrap_socket(raw, server_hostname=host) as tls:
                    answer.append(tls.getpeercert(binary_form=True))

        thread = threading.Thread(target=handshake)
        thread.start()
        thread.join()
        if not answer:
            raise RuntimeError(f"no TLS handshake with 127.0.0.1:{port} for {host}")
        return answer[0]

    def load(self, url: str, host: str | None, clients: int = 4) -> "InsideLoad":
        return InsideLoad(self, url, host, clients)


class InsideLoad:
    """Strict and retrying keep-alive clients in the manager's namespace until stopped."""

    def __init__(self, lab: SwarmLab, url: str, host: str | None, clients: int):
        self.clients = {kind: [KeepAliveClient(url, retrying=retrying, host_header=host, netns=lab.netns_path)
                               for _ in range(clients)] for kind, retrying in (("strict", False), ("retrying", True))}
        for group in self.clients.values():
            for client in group:
                client.start()

    def stop(self) -> dict:
        """Per kind: {"requests": N, "failed": N, "failures": [the first 20], "bodies": {body: count}}."""
        for group in self.clients.values():
            for client in group:
                client.stop()
        return {kind: _summary(group) for kind, group in self.clients.items()}


def _summary(group: list) -> dict:
    bodies: dict[str, int] = {}
    for client in group:
        for body, count in client.bodies.items():
            bodies[body] = bodies.get(body, 0) + count
    failures = [failure for client in group for failure in client.failures]
    return {"requests": sum(client.requests for client in group), "failed": len(failures),
            "failures": failures[:20], "bodies": bodies}
