"""The server's services restarting: dockerd during and between deploys, and a simulated
reboot (dockerd and Caddy stopped, then started). The server's engine is a one-node lab's
(scripts/swarm-lab --bare), which the tests restart, and its Caddy and zdd run in that
engine's network namespace, as on a machine of their own: the machine's engine keeps serving
the tests beside these."""

import sys
import time
from typing import NamedTuple

import pytest

from conftest import REPO, AppRepo, Server, app_dockerfile, expect, pushed_live, run, wait_for

sys.path.insert(0, str(REPO / "bench"))
from swarmlab import SwarmLab  # noqa: E402

WITH_WORKER = """worker_check_seconds = 0.3
[processes]
worker = { command = "/bin/busybox sleep 3600", healthcheck = false }
"""


class Seen(NamedTuple):
    name: str
    status: str
    sha: str


class LabServer(Server):
    """A zdd server on the lab's engine: install.sh, zdd, its hook (through git's receive-pack)
    and Caddy run inside the engine's network namespace, where its containers publish."""

    def __init__(self, base, lab: SwarmLab):
        super().__init__(base)
        self.lab = lab
        self.inside = ["nsenter", f"--net={lab.netns_path}"]
        self.env.update({"DOCKER_HOST": lab.docker_host,
                         "PIP_RETRIES": "0"})  # no network in the namespace: this machine's wheels

    def get(self, url: str, host: str | None = None) -> tuple[int, str]:
        return self.lab.http_get(url, host)

    def checkout(self, path, app: str) -> AppRepo:
        repo = AppRepo(path, self.repo(app))
        repo.git("config", "remote.production.receivepack", " ".join([*self.inside, "git-receive-pack"]))
        return repo

    def restart_engine(self) -> None:
        restarted = run([str(REPO / "scripts" / "swarm-lab"), "restart-engine", "--dir", str(self.lab.folder)])
        assert restarted.returncode == 0, restarted.stderr

    def containers(self, app: str, *labels: str) -> list[Seen]:
        """The app's containers on the lab's engine, stopped ones too."""
        with self.lab.manager() as engine:
            found = engine.containers.list(ignore_removed=True, all=True,
                                           filters={"label": [f"zdd.app={app}", *labels]})
            return [Seen(c.name, c.status, c.labels["zdd.sha"]) for c in found]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with SwarmLab(nodes=1, bare=True) as lab:
        server = LabServer(tmp_path_factory.mktemp("lab-server"), lab)
        server.start_caddy()
        try:
            yield server
        finally:
            for app in server.apps:
                server.zdd("destroy", app, "--yes")
            server.stop_caddy()


@pytest.fixture
def new_app(server, tmp_path, request):
    name = request.node.name[5:20].replace("_", "-").strip("-")
    site = server.add_app(name)
    server.remove_timer()  # cron's minute timer would run zdd outside the lab's network
    return name, site, server.checkout(tmp_path / "work", name)


def test_a_simulated_reboot_brings_every_app_back_on_its_live_version(server, new_app):
    app, site, repo = new_app
    repo.commit("v1", zdd_toml=WITH_WORKER)
    pushed_live(repo.push("main"))
    v2 = repo.commit("v2", zdd_toml=WITH_WORKER)
    pushed_live(repo.push("main"))

    server.stop_caddy()
    server.restart_engine()
    server.start_caddy()

    assert wait_for(lambda: server.get(site) == (200, "v2"), timeout=60)
    assert wait_for(lambda: [c.status for c in server.containers(app, "zdd.process=worker")] == ["running"],
                    timeout=30), "the worker is back too"
    containers = server.containers(app)
    assert {c.sha for c in containers} == {v2}, "retired containers stay gone"
    assert server.status(app)["container"] in [c.name for c in containers] and len(containers) == 2
    assert server.status(app)["sha"] == v2


def test_dockerd_restarting_during_a_deploy_keeps_v1_and_the_next_push_recovers(server, new_app):
    app, site, repo = new_app
    v1 = repo.commit("v1")
    assert repo.push("main").returncode == 0
    repo.commit("v2", dockerfile=app_dockerfile(start_delay=20))
    push = repo.push_started("main")
    assert wait_for(lambda: sum(c.status == "running" for c in server.containers(app)) == 2, timeout=60)
    time.sleep(1)

    server.restart_engine()
    output = push.communicate(timeout=120)[1]

    expect(output, "zdd: error:", "Still serving")
    assert wait_for(lambda: server.get(site) == (200, "v1"), timeout=60)
    assert server.status(app)["sha"] == v1
    assert len(server.containers(app)) == 1
    v3 = repo.commit("v3")
    assert repo.push("main").returncode == 0
    assert server.get(site) == (200, "v3") and server.status(app)["sha"] == v3
