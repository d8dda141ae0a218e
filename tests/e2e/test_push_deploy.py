"""What a user does: git push, and the app serves the pushed version through Caddy."""

import time
from collections import Counter

import pytest

from conftest import app_dockerfile, expect, http_get
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


def test_second_push_under_load_drops_no_request_and_does_not_reload_caddy(server, new_app, docker_client):
    app, site, repo = new_app
    v1 = repo.commit("v1")
    first = repo.push("main")
    expect(first.stderr, "Caddyfile ", "reloaded")
    old_container = server.status(app)["container"]
    clients = [KeepAliveClient(site, retrying=True) for _ in range(3)]
    clients += [KeepAliveClient(site, retrying=False) for _ in range(3)]
    clients += [KeepAliveClient(site, path="/cgi-bin/slow", retrying=False) for _ in range(2)]
    for client in clients:
        client.start()
    time.sleep(1)

    v2 = repo.commit("v2", dockerfile=app_dockerfile(start_delay=2))
    result = repo.push("main")
    time.sleep(2.5)
    for client in clients:
        client.stop()

    assert result.returncode == 0, result.stderr
    assert "reloaded" not in result.stderr, "a routine deploy must not reload Caddy"
    assert [c.failures for c in clients] == [[]] * len(clients), "strict, retrying and slow clients alike"
    served = sum((c.bodies for c in clients[:6]), Counter())
    assert served["v1"] > 0 and served["v2"] > 0 and set(served) == {"v1", "v2"}
    slow = sum((c.bodies for c in clients[6:]), Counter())
    assert slow["slow v1\n"] > 0 and slow["slow v2\n"] > 0, slow
    assert http_get(site + "/") == (200, "v2")
    assert server.status(app)["sha"] == v2 != v1
    remaining = docker_client.containers.list(ignore_removed=True, all=True, filters={"label": f"zdd.app={app}"})
    assert [c.name for c in remaining] == [server.status(app)["container"]]
    assert old_container not in [c.name for c in remaining]
    live_port = server.status(app)["upstream"].rsplit(":", 1)[1]
    route = [p.name for p in (server.root / "apps" / app / "route").iterdir() if "-" in p.name]
    assert route == [f"{live_port}-{live_port}"], "Caddy's retries never go to the old slot's port once it is free"


def test_pushing_an_old_tag_rolls_back_without_building(server, new_app):
    app, site, repo = new_app
    v1 = repo.commit("v1")
    repo.git("tag", "-a", "v1", "-m", "release 1")
    assert repo.push("main").returncode == 0
    repo.commit("v2")
    assert repo.push("main").returncode == 0
    assert http_get(site + "/") == (200, "v2")

    result = repo.push("v1")

    expect(result.stderr, "exists: reusing it, no build", f"is live at {site}: {v1[:12]} (refs/tags/v1)")
    assert "Building image" not in result.stderr
    assert http_get(site + "/") == (200, "v1")
    live = server.status(app)
    assert (live["sha"], live["ref"], live["image_reused"]) == (v1, "refs/tags/v1", True)


def test_zdd_rollback_goes_back_to_the_previous_live_sha_and_repush_of_live_sha_works(server, new_app):
    app, site, repo = new_app
    v1 = repo.commit("v1")
    assert repo.push("main").returncode == 0
    v2 = repo.commit("v2")
    assert repo.push("main").returncode == 0
    container_v2 = server.status(app)["container"]

    result = server.zdd("rollback", app)
    assert result.returncode == 0, result.stderr
    expect(result.stdout, f"Rolling back to {v1[:12]}", "reusing it, no build")
    assert http_get(site + "/") == (200, "v1") and server.status(app)["sha"] == v1

    again = server.zdd("deploy", app, v2)
    assert again.returncode == 0, again.stderr
    redeploy = server.zdd("deploy", app, v2)
    assert redeploy.returncode == 0, redeploy.stderr
    live = server.status(app)
    assert live["sha"] == v2 and live["container"] != container_v2
    assert http_get(site + "/") == (200, "v2")
    history = server.zdd("history", app)
    assert history.stdout.count(" live ") == 5, history.stdout


def test_other_branches_and_deletions_are_ignored(server, new_app):
    app, site, repo = new_app
    v1 = repo.commit("v1")
    assert repo.push("main").returncode == 0
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit("feature work")

    pushed = repo.push("feature")
    deleted = repo.push(":feature")

    expect(pushed.stderr, "Skipped feature: only branch 'main' and tags deploy", "Nothing to deploy")
    expect(deleted.stderr, "Skipped feature: deletions are not deployed")
    assert server.status(app)["sha"] == v1 and http_get(site + "/") == (200, "v1")


def test_one_push_of_branch_and_tag_deploys_the_branch_and_says_why(server, new_app):
    app, site, repo = new_app
    repo.commit("v1")
    repo.git("tag", "v1")
    v2 = repo.commit("v2")

    result = repo.push("main", "v1")

    expect(result.stderr, "Skipped v1: one ref deploys per push, and this push deploys main")
    assert server.status(app)["sha"] == v2 and http_get(site + "/") == (200, "v2")
