"""Swarm mode when things go wrong around a push, on a three-node lab of its own (so that it
runs beside test_swarm_push.py): the registry unreachable, the deploy killed after Swarm
rolled web, a new worker that exits soon after it starts, a version unhealthy on one node only, a node cut off mid-push, and Caddy's
container replaced."""

import os

from conftest import AppRepo, app_dockerfile, run, wait_for
from swarm_common import (destroy_swarm_apps_when_done, lab, node_states, recorded_and_running, served,  # noqa: F401
                          set_availability, swarm_server, tasks)


NEW_WORKER_THAT_EXITS = """
[processes.beat]
command = "/bin/busybox sh -c 'sleep 1; exit 3'"
healthcheck = false
"""


def test_a_failed_push_keeps_the_live_version_and_a_killed_one_is_repaired(lab, swarm_server, tmp_path):
    """The registry unreachable, then a deploy killed once Swarm rolled web, then a new worker
    that exits a moment after it starts."""
    server, app, host = swarm_server, "kept", "kept.swarm.test"
    assert server.install(app, "--domain", f"http://{host}", "--swarm", "--registry", lab.registry).returncode == 0
    repo = AppRepo(tmp_path / "work", server.repo(app), health_interval="1s")
    v1 = repo.commit("k1")
    assert "is live at" in repo.push("main").stderr

    dead = f"{lab.registry.rsplit(':', 1)[0]}:5999"  # nothing listens there
    assert server.install(app, "--domain", f"http://{host}", "--swarm", "--registry", dead).returncode == 0
    try:
        repo.commit("k2")
        refused = repo.push("main")
    finally:
        assert server.install(app, "--domain", f"http://{host}", "--swarm", "--registry",
                              lab.registry).returncode == 0
    assert f"pushing zdd-{app}:" in refused.stderr and f"to the registry {dead} failed" in refused.stderr, \
        refused.stderr
    assert served(lab, server, host) == (200, "k1") and server.status(app)["sha"] == v1

    v3 = repo.commit("k3")
    killed = run(["git", "push", "production", "main"], cwd=repo.path,
                 env={**os.environ, "ZDD_FAULT": "after:rollout"})
    assert "is live at" not in killed.stderr, killed.stderr
    status = server.zdd("status", app)
    assert status.returncode == 0, status.stderr
    assert "interrupted" in status.stderr, status.stderr
    assert server.status(app)["sha"] == v3
    # the k1 task answers until Swarm has stopped it (status lists it as rolling until then)
    assert wait_for(lambda: recorded_and_running(server, app, replicas=1), timeout=30, interval=1), \
        server.status(app)
    assert served(lab, server, host) == (200, "k3")

    # a process new in a push has no update for Swarm to monitor: zdd watches it stay up
    repo.commit("k4", zdd_toml=NEW_WORKER_THAT_EXITS)
    refused = repo.push("main")
    assert f"zdd-{app}-beat did not get healthy on the swarm (exited soon after starting)" in refused.stderr, \
        refused.stderr
    assert f"Rolling web back to {v3[:12]}" in refused.stderr, refused.stderr
    assert server.status(app)["sha"] == v3 and served(lab, server, host) == (200, "k3")
    with lab.manager() as manager:
        assert not manager.services.list(filters={"name": f"zdd-{app}-beat"})
    assert server.zdd("destroy", app, "--yes").returncode == 0


def test_a_version_unhealthy_on_one_node_is_rolled_back_everywhere(lab, swarm_server, tmp_path):
    server, app, host = swarm_server, "picky", "picky.swarm.test"
    assert server.install(app, "--domain", f"http://{host}", "--swarm", "--registry", lab.registry).returncode == 0
    assert server.zdd("scale", app, "web=3").returncode == 0
    repo = AppRepo(tmp_path / "work", server.repo(app), health_interval="1s")
    v1 = repo.commit("p1")
    assert "is live at" in repo.push("main").stderr
    probe = '[ \\"$ZDD_NODE\\" != node3 ] && /bin/busybox wget -q -O /dev/null http://127.0.0.1:8000/'
    healthcheck = f'HEALTHCHECK --interval=1s --timeout=2s --retries=2 CMD ["/bin/busybox", "sh", "-c", "{probe}"]'
    dockerfile = app_dockerfile(healthcheck=None).replace("CMD [", f"{healthcheck}\nCMD [")
    repo.commit("p2", dockerfile=dockerfile)

    load = lab.load(f"http://127.0.0.1:{server.http_port}/", host)
    set_availability(lab, "pause", "node1", "node2")  # the new task must go to node3, where it is unhealthy
    try:
        pushed = repo.push("main")
    finally:
        set_availability(lab, "active", "node1", "node2")
        seen = load.stop()
    assert "rolled back" in pushed.stderr and "on node3" in pushed.stderr, pushed.stderr
    for kind in ("strict", "retrying"):
        assert seen[kind]["failed"] == 0 and set(seen[kind]["bodies"]) == {"p1"}, seen[kind]
    assert {t["sha"] for t in tasks(server, app)} == {v1} and server.status(app)["sha"] == v1
    assert server.zdd("destroy", app, "--yes").returncode == 0


def test_a_node_cut_off_during_a_push_is_waited_for_then_status_agrees_with_swarm(lab, swarm_server, tmp_path):
    server, app, host = swarm_server, "spread", "spread.swarm.test"
    assert server.install(app, "--domain", f"http://{host}", "--swarm", "--registry", lab.registry).returncode == 0
    assert server.zdd("scale", app, "web=3").returncode == 0
    repo = AppRepo(tmp_path / "work", server.repo(app), health_interval="1s")
    repo.commit("s1")
    assert "is live at" in repo.push("main").stderr

    load = lab.load(f"http://127.0.0.1:{server.http_port}/", host)
    lab.set_link("node3", up=False)
    try:
        v2 = repo.commit("s2")
        pushed = repo.push("main")
        seen = load.stop()
    finally:
        lab.set_link("node3", up=True)
    for kind in ("strict", "retrying"):  # at most what was in flight on node3 when its link went
        assert seen[kind]["failed"] <= 4, seen[kind]
    if "is live at" not in pushed.stderr:  # Swarm had a task to start or stop on node3
        assert "waits on node3, which is down" in pushed.stderr, pushed.stderr
        assert "Still serving" not in pushed.stderr
        assert wait_for(lambda: node_states(lab).get("node3") == "ready", timeout=90), node_states(lab)
    # Swarm finishes the rollout once node3 is back (or rolls it back): zdd status then agrees with it
    assert wait_for(lambda: recorded_and_running(server, app), timeout=180, interval=1), \
        (server.status(app), tasks(server, app))
    body = "s2" if server.status(app)["sha"] == v2 else "s1"
    print(f"after node3 came back: {body} serves")
    # Caddy resolves the tasks every second: within that, every request reaches the recorded version
    assert wait_for(lambda: served(lab, server, host) == (200, body), timeout=3), served(lab, server, host)
    assert [served(lab, server, host) for _ in range(30)] == [(200, body)] * 30
    assert server.zdd("destroy", app, "--yes").returncode == 0
    assert wait_for(lambda: node_states(lab).get("node3") == "ready", timeout=90), node_states(lab)


def test_caddys_container_replaced_keeps_its_certificates_and_config(lab, swarm_server, tmp_path):
    server, app, host = swarm_server, "secure", "secure.swarm.test"
    assert server.install(app, "--domain", host, "--swarm", "--registry", lab.registry).returncode == 0
    repo = AppRepo(tmp_path / "work", server.repo(app), health_interval="1s")
    repo.commit("c1")
    assert "is live at" in repo.push("main").stderr
    first = lab.certificate(server.https_port, host)  # issued on demand by Caddy's internal CA

    with lab.manager() as manager:
        manager.containers.get("zdd-caddy").remove(force=True)
    rendered = server.zdd("render")
    assert rendered.returncode == 0 and "zdd-caddy started" in rendered.stdout, rendered.stdout + rendered.stderr
    assert wait_for(lambda: served(lab, server, "nobody.test") == (404, "no app is served at this address"),
                    timeout=30), "the new container runs zdd's Caddyfile"
    assert lab.certificate(server.https_port, host) == first, "the same certificate, from the data volume"
    assert server.zdd("destroy", app, "--yes").returncode == 0
