"""The server's services restarting: dockerd during and between deploys, and a simulated
reboot (dockerd and Caddy stopped, then started). Named to run last: it restarts the engine."""

import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import app_dockerfile, expect, http_get, pushed_live, run, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.restarts_engine]


def stop_dockerd() -> None:
    """The machine's engine, by its pidfile: the daemons of a Swarm lab may run beside it."""
    pid = int(Path("/var/run/docker.pid").read_text())
    os.kill(pid, 15)
    assert wait_for(lambda: not running(pid), timeout=60), "dockerd did not stop"


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; the machine's init may reap it late


def start_dockerd() -> None:
    subprocess.Popen(["dockerd"], stdout=open("/tmp/zdd-dockerd.log", "ab"), stderr=subprocess.STDOUT,
                     start_new_session=True)
    assert wait_for(lambda: run(["docker", "version"]).returncode == 0, timeout=60), "dockerd did not start"


WITH_WORKER = """worker_check_seconds = 0.3
[processes]
worker = { command = "/bin/busybox sleep 3600", healthcheck = false }
"""


def test_a_simulated_reboot_brings_every_app_back_on_its_live_version(server, new_app, docker_client):
    app, site, repo = new_app
    repo.commit("v1", zdd_toml=WITH_WORKER)
    pushed_live(repo.push("main"))
    v2 = repo.commit("v2", zdd_toml=WITH_WORKER)
    pushed_live(repo.push("main"))

    server.stop_caddy()
    stop_dockerd()
    start_dockerd()
    server.start_caddy()

    assert wait_for(lambda: http_get(site) == (200, "v2"), timeout=60)
    workers = {"label": [f"zdd.app={app}", "zdd.process=worker"]}
    assert wait_for(lambda: [c.status for c in docker_client.containers.list(ignore_removed=True, all=True, filters=workers)]
                    == ["running"], timeout=30), "the worker is back too"
    containers = docker_client.containers.list(ignore_removed=True, all=True, filters={"label": f"zdd.app={app}"})
    assert {c.labels["zdd.sha"] for c in containers} == {v2}, "retired containers stay gone"
    assert server.status(app)["container"] in [c.name for c in containers] and len(containers) == 2
    assert server.status(app)["sha"] == v2


def test_dockerd_restarting_during_a_deploy_keeps_v1_and_the_next_push_recovers(server, new_app, docker_client):
    app, site, repo = new_app
    v1 = repo.commit("v1")
    assert repo.push("main").returncode == 0
    repo.commit("v2", dockerfile=app_dockerfile(start_delay=20))
    push = subprocess.Popen(["git", "push", "production", "main"], cwd=repo.path,
                            stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: len(docker_client.containers.list(ignore_removed=True, filters={"label": f"zdd.app={app}"})) == 2,
                    timeout=60)
    time.sleep(1)

    stop_dockerd()
    start_dockerd()
    output = push.communicate(timeout=120)[1]

    expect(output, "zdd: error:", "Still serving")
    assert wait_for(lambda: http_get(site) == (200, "v1"), timeout=60)
    assert server.status(app)["sha"] == v1
    assert len(docker_client.containers.list(ignore_removed=True, all=True, filters={"label": f"zdd.app={app}"})) == 1
    v3 = repo.commit("v3")
    assert repo.push("main").returncode == 0
    assert http_get(site) == (200, "v3") and server.status(app)["sha"] == v3
