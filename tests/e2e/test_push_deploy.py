"""What a user does: git push, and the app serves the pushed version through Caddy."""

import pytest

from conftest import app_dockerfile, http_get

pytestmark = pytest.mark.e2e


def test_first_push_builds_and_serves_through_caddy(server, new_app, docker_client):
    app, site, repo = new_app
    sha = repo.commit("v1")

    result = repo.push("main")

    output = result.stderr
    print(output)
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
