"""Swarm mode end to end, on the three-node lab (scripts/swarm-lab): install.sh --swarm,
`zdd scale web=3`, and `git push` rolls the app over the nodes through the lab's registry,
with Caddy in a container on the overlay; keep-alive clients (inside the manager's
network namespace, where Caddy publishes) lose nothing; a version that never gets
healthy is rolled back by Swarm with the old one serving. Every other command:
test_swarm_commands.py, on a lab of its own so that it runs beside this file."""

import json
import os
import re
import shutil
from pathlib import Path


from conftest import REPO, AppRepo, Server, app_dockerfile, pushed_live, run, wait_for
from swarm_common import (HOST, STATIC_CADDY, SwarmLab, destroy_swarm_apps_when_done, lab, nodes_of,  # noqa: F401
                          served, set_availability, swarm_server, tasks)
WORKER_TOML = """
watch_seconds = 0.5
[processes.worker]
command = "/bin/busybox sh -c 'echo working; exec /bin/busybox sleep 1000'"
healthcheck = false
"""


REGISTRY_CONFIG = Path("/etc/docker/registry/config.yml")
REGISTRY_DATA = Path("/var/lib/docker-registry/docker")  # Debian's rootdirectory, below it what was pushed
REGISTRY_LOG = Path("/var/log/docker-registry.log")  # written by the package's init script (no systemd here)


def test_install_on_bare_servers_starts_the_swarm_and_registry_and_its_join_line_adds_a_server(tmp_path):
    """What a user does on servers with only Docker: install.sh on the first one starts the swarm
    and Debian's registry there and prints the join line; run on the second server, that line
    adds it, and it runs replicas pulled from that registry. install.sh runs inside node1's
    network namespace, as on a real manager. (First in this file: its own lab is down before
    the module's lab comes up.)"""
    config_before = REGISTRY_CONFIG.read_bytes() if REGISTRY_CONFIG.exists() else None
    data_before, log_before = REGISTRY_DATA.exists(), REGISTRY_LOG.exists()
    with SwarmLab(nodes=2, bare=True) as bare:
        try:
            server = Server(tmp_path / "server")
            server.env.update({"DOCKER_HOST": bare.docker_host, "ZDD_CADDY_BIN": str(STATIC_CADDY),
                               "ZDD_TLS": "internal", "ZDD_SWARM_ADDR": bare.node_addrs[0],
                               "PIP_RETRIES": "0"})  # no network in node1's namespace: this machine's wheels
            on_manager = ["ip", "netns", "exec", bare.manager_netns, "bash", str(REPO / "install.sh")]
            installed = run([*on_manager, "first", "--domain", f"http://{HOST}", "--swarm"], env=server.env)
            assert installed.returncode == 0, installed.stderr + installed.stdout
            assert "initialised a swarm: this server is its manager" in installed.stdout
            registry = f"{bare.node_addrs[0]}:5000"
            assert f"registry: Debian's docker-registry listens on {registry}" in installed.stderr
            assert json.loads((server.root / "settings.json").read_text())["registry"] == registry
            join = re.search(r"docker swarm join --token \S+ \S+", installed.stdout)
            assert join, installed.stdout

            joined = run(join.group(0).split(), env={**os.environ, "DOCKER_HOST": bare.node_hosts[1]})
            assert joined.returncode == 0, joined.stderr
            with bare.manager() as manager:
                assert wait_for(lambda: [n.attrs["Status"]["State"] for n in manager.nodes.list()] == ["ready"] * 2, 60)

            on_worker = run(["bash", str(REPO / "install.sh"), "second", "--domain", "http://b.swarm.test", "--swarm"],
                            env={**server.env, "DOCKER_HOST": bare.node_hosts[1]})
            assert on_worker.returncode != 0, on_worker.stdout
            assert "is in a swarm but is not a manager" in on_worker.stderr, on_worker.stderr

            assert server.zdd("scale", "first", "web=2").returncode == 0
            repo = AppRepo(tmp_path / "work", server.repo("first"), health_interval="1s")
            repo.commit("v1")
            pushed_live(repo.push("main"))
            assert served(bare, server) == (200, "v1")
            assert {t["node"] for t in tasks(server, "first")} == {"node1", "node2"}, "a replica on the joined server"
        finally:
            run(["ip", "netns", "exec", bare.manager_netns, "service", "docker-registry", "stop"])
            if config_before is not None:
                REGISTRY_CONFIG.write_bytes(config_before)
            if not data_before:
                shutil.rmtree(REGISTRY_DATA, ignore_errors=True)
            if not log_before:
                REGISTRY_LOG.unlink(missing_ok=True)




def test_install_swarm_scale_and_push_roll_every_node_with_nothing_lost(lab, swarm_server, tmp_path):
    server, app = swarm_server, "shop"
    installed = server.install(app, "--domain", f"http://{HOST}", "--swarm", "--registry", lab.registry)
    assert installed.returncode == 0, installed.stderr + installed.stdout
    assert "docker swarm join --token" in installed.stdout
    settings = json.loads((server.root / "settings.json").read_text())
    assert (settings["runtime"], settings["registry"]) == ("swarm", lab.registry)
    assert served(lab, server) == (404, "no app is served at this address"), "Caddy's container serves"

    scaled = server.zdd("scale", app, "web=3", "worker=2")
    assert scaled.returncode == 0, scaled.stderr
    repo = AppRepo(tmp_path / "work", server.repo(app), health_interval="1s")
    repo.write("zdd.toml", WORKER_TOML)
    v1 = repo.commit("v1")
    first = repo.push("main")
    assert "is live at" in first.stderr, first.stderr
    assert "Pushing the image to the cluster's registry" in first.stderr
    assert served(lab, server) == (200, "v1")
    web = tasks(server, app)
    assert len(web) == 3 and {t["status"] for t in web} == {"running"}
    assert len({t["node"] for t in web}) == 3, f"one task per node: {web}"
    assert len(tasks(server, app, "worker")) == 2

    load = lab.load(f"http://127.0.0.1:{server.http_port}/", HOST)
    v2 = repo.commit("v2")
    second = repo.push("main")
    seen = load.stop()
    assert "is live at" in second.stderr, second.stderr
    assert second.stderr.count(": running") >= 3, "the push shows each replica being replaced"
    for kind in ("strict", "retrying"):
        assert seen[kind]["failed"] == 0, seen[kind]
        assert set(seen[kind]["bodies"]) == {"v1", "v2"}, seen[kind]
    assert {t["sha"] for t in tasks(server, app)} == {v2}
    assert nodes_of(server, app) == ["node1", "node2", "node3"], "replaced in place: still one per node"
    assert served(lab, server) == (200, "v2")

    load = lab.load(f"http://127.0.0.1:{server.http_port}/", HOST)
    repo.commit("broken", dockerfile=app_dockerfile(healthcheck="fail"))
    failed = repo.push("main")
    seen = load.stop()
    assert "rolled back" in failed.stderr and "previous version still serves" in failed.stderr, failed.stderr
    assert seen["strict"]["failed"] == 0 and set(seen["strict"]["bodies"]) == {"v2"}, seen["strict"]
    assert server.status(app)["sha"] == v2
    assert {t["sha"] for t in tasks(server, app)} == {v2}
    assert nodes_of(server, app) == ["node1", "node2", "node3"], "rolled back in place"
    assert server.history(app)[-1]["outcome"] == "failed"

    back = server.zdd("rollback", app, v1)
    assert back.returncode == 0, back.stderr + back.stdout
    assert served(lab, server) == (200, "v1")
    assert nodes_of(server, app) == ["node1", "node2", "node3"]

    set_availability(lab, "drain", "node3")  # its task moves to node1 or node2, and Swarm never moves it back
    try:
        assert wait_for(lambda: len(nodes := nodes_of(server, app)) == 3 and "node3" not in nodes, 60, 1)
    finally:
        set_availability(lab, "active", "node3")
    load = lab.load(f"http://127.0.0.1:{server.http_port}/", HOST)
    repo.write("zdd.toml", WORKER_TOML + "[processes.web]\nparallelism = 2\n")
    repo.commit("v5")
    fifth = repo.push("main")
    seen = load.stop()
    pushed_live(fifth)
    assert "3 task(s), 2 at a time" in fifth.stderr, fifth.stderr
    for kind in ("strict", "retrying"):
        assert seen[kind]["failed"] == 0, seen[kind]
    assert nodes_of(server, app) == ["node1", "node2", "node3"], "the next push spreads them again"
