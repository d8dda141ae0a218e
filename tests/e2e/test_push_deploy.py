"""What a user does: git push, and the app serves the pushed version through Caddy."""

import time
from collections import Counter

import pytest

from conftest import app_dockerfile, http_get
from loadclient import KeepAliveClient

pytestmark = pytest.mark.e2e


def test_first_push_builds_and_serves_through_caddy(server, new_app, docker_client):
    app, site, repo = new_app
    sha = repo.commit("v1")

    result = repo.push("main")

    output = result.stderr
    assert result.returncode == 0, output
    assert "remote: ==> Building image" in output
    assert "remote: ==> Waiting for health (Docker HEALTHCHECK" in output
    assert f"remote: ==> {app} is live at {site}: {sha[:12]}" in output
    assert http_get(site + "/") == (200, "v1")
    live = server.status(app)
    assert {k: live[k] for k in ("app", "sha", "ref")} == {"app": app, "sha": sha, "ref": "refs/heads/main"}
    container = docker_client.containers.get(live["container"])
    assert container.labels["zdd.app"] == app and container.labels["zdd.sha"] == sha
    bindings = container.attrs["NetworkSettings"]["Ports"]["8000/tcp"]
    assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]
    assert live["upstream"] == f"127.0.0.1:{bindings[0]['HostPort']}"
    assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"


def test_second_push_under_load_drops_no_request(server, new_app, docker_client):
    app, site, repo = new_app
    v1 = repo.commit("v1")
    assert repo.push("main").returncode == 0
    old_container = server.status(app)["container"]
    clients = [KeepAliveClient(site) for _ in range(4)]
    for client in clients:
        client.start()

    v2 = repo.commit("v2", dockerfile=app_dockerfile(start_delay=2))
    result = repo.push("main")
    time.sleep(0.5)
    for client in clients:
        client.stop()

    assert result.returncode == 0, result.stderr
    assert [c.failures for c in clients] == [[]] * len(clients)
    served = sum((c.bodies for c in clients), Counter())
    assert served["v1"] > 0 and served["v2"] > 0 and set(served) == {"v1", "v2"}
    assert http_get(site + "/") == (200, "v2")
    assert server.status(app)["sha"] == v2 != v1
    remaining = docker_client.containers.list(all=True, filters={"label": f"zdd.app={app}"})
    assert [c.name for c in remaining] == [server.status(app)["container"]]
    assert old_container not in [c.name for c in remaining]
