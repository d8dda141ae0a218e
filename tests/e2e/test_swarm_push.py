"""Swarm mode end to end, on the three-node lab (scripts/swarm-lab): install.sh --swarm,
`zdd scale web=3`, and `git push` rolls the app over the nodes through the lab's registry,
with Caddy in a container on the overlay; keep-alive clients (inside the manager's
network namespace, where Caddy publishes) lose nothing; a version that never gets
healthy is rolled back by Swarm with the old one serving; every command works."""

import json
import os
import re
import shutil
from pathlib import Path


from conftest import REPO, AppRepo, Server, app_dockerfile, pushed_live, run, wait_for
from swarm_common import (HOST, STATIC_CADDY, SwarmLab, destroy_swarm_apps_when_done, lab, nodes_of,  # noqa: F401
                          served, set_availability, swarm_server, tasks)
WORKER_TOML = """
[processes.worker]
command = "/bin/busybox sh -c 'echo working; exec /bin/busybox sleep 1000'"
healthcheck = false
"""


CRON_TOML = """[cron]
hello = { schedule = "* * * * *", command = "/bin/busybox sh -c 'echo hello $GREETING'" }
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


ROLL_TEST = "test_install_swarm_scale_and_push_roll_every_node_with_nothing_lost"


KEPT_AFTER = {"test_install_swarm_scale_and_push_roll_every_node_with_nothing_lost": ("shop",)}  # the next test's other app


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
        assert wait_for(lambda: len(nodes_of(server, app)) == 3 and "node3" not in nodes_of(server, app), 60, 1)
    finally:
        set_availability(lab, "active", "node3")
    load = lab.load(f"http://127.0.0.1:{server.http_port}/", HOST)
    repo.write("zdd.toml", WORKER_TOML)
    repo.commit("v5")
    pushed_live(repo.push("main"))
    seen = load.stop()
    for kind in ("strict", "retrying"):
        assert seen[kind]["failed"] == 0, seen[kind]
    assert nodes_of(server, app) == ["node1", "node2", "node3"], "the next push spreads them again"


def test_every_command_works_in_swarm_mode(lab, swarm_server, tmp_path):
    server, app = swarm_server, "tools"
    host = "tools.swarm.test"
    assert server.install(app, "--domain", f"http://{host}", "--swarm", "--registry", lab.registry).returncode == 0
    repo = AppRepo(tmp_path / "work", server.repo(app), health_interval="1s")
    serve = "echo started $GREETING as $ZDD_REPLICA on $ZDD_NODE; exec /bin/busybox httpd -f -p 8000 -h /www"
    repo.write("zdd.toml", WORKER_TOML + CRON_TOML)
    t1 = repo.commit("t1", dockerfile=app_dockerfile(cmd=serve, health_interval="1s"))
    assert "is live at" in repo.push("main").stderr
    assert served(lab, server, host) == (200, "t1")

    repo.write("zdd.toml", WORKER_TOML.replace("exec /bin/busybox sleep 1000", "exit 3"))
    repo.commit("t2", dockerfile=app_dockerfile(cmd=serve, health_interval="1s"))
    failed = repo.push("main")
    assert "zdd-tools-worker did not get healthy" in failed.stderr, failed.stderr
    assert f"Rolling web back to {t1[:12]}" in failed.stderr, failed.stderr
    assert {t["sha"] for t in tasks(server, app)} == {t1} and server.status(app)["sha"] == t1
    assert served(lab, server, host) == (200, "t1")
    assert not (server.root / "apps" / app / "slots.json").exists(), "no loopback ports held for a Swarm app"

    status = server.zdd("status", app)
    assert status.returncode == 0 and "tools: " in status.stdout and "node" in status.stdout, status.stdout
    assert server.zdd("env", app, "set", "GREETING=hello{{.Node.ID}}").returncode == 0
    limited = server.zdd("limits", app, "web=64m,0.5cpu")
    assert "the tasks get them at the next deploy or `zdd restart tools`" in limited.stdout, limited.stdout
    restarted = server.zdd("restart", app)
    assert restarted.returncode == 0, restarted.stderr + restarted.stdout
    with lab.manager() as manager:
        resources = manager.services.get("zdd-tools-web").attrs["Spec"]["TaskTemplate"]["Resources"]
        assert resources["Limits"] == {"MemoryBytes": 64 * 1024 ** 2, "NanoCPUs": 500_000_000}, resources
    assert wait_for(lambda: re.search(r"started hello\{\{\.Node\.ID\}\} as web\.1 on node[123]\n",
                                      server.zdd("logs", app).stdout), timeout=30, interval=1), \
        server.zdd("logs", app).stdout
    ran = server.zdd("run", app, "--", "/bin/busybox", "sh", "-c", "echo ran $GREETING")
    assert (ran.returncode, ran.stdout.strip()) == (0, "ran hello{{.Node.ID}}"), ran.stderr
    timer = server.zdd("backup-due")  # the manager's minute timer (unless cron's ran it this minute already)
    assert f"{app}: started cron job hello" in timer.stdout + server.timer_log(), timer.stdout + timer.stderr
    assert wait_for(lambda: "| hello" in server.zdd("cron", app).stdout, timeout=30), server.zdd("cron", app).stdout
    assert server.zdd("maintenance", app, "on").returncode == 0
    assert served(lab, server, host)[0] == 503, "Caddy's container serves the page"
    assert server.zdd("maintenance", app, "off").returncode == 0
    assert served(lab, server, host) == (200, "t1")
    apps = server.zdd("apps")
    assert "1/1 running" in apps.stdout, apps.stdout
    assert server.zdd("scale", app, "web=2").returncode == 0
    assert wait_for(lambda: len([t for t in tasks(server, app) if t["status"] == "running"]) == 2, timeout=60,
                    interval=1)
    assert len(set(nodes_of(server, app))) == 2, "scaled up: the new task on another node"

    assert server.zdd("previews", app, "on", "--domain", "http://{branch}.pv.swarm.test").returncode == 0
    repo.git("checkout", "-q", "-b", "try", t1)
    repo.commit("try")
    previewed = repo.push("try")
    assert "Preview of try: http://try.pv.swarm.test" in previewed.stderr, previewed.stderr
    assert served(lab, server, "try.pv.swarm.test") == (200, "try")
    assert [t["status"] for t in tasks(server, "tools--try")] == ["running"], "a preview runs one replica"
    assert "Removed the preview of try" in repo.push(":try").stderr
    assert served(lab, server, "try.pv.swarm.test")[0] == 404
    with lab.manager() as manager:
        assert not manager.services.list(filters={"name": "zdd-tools--try"})
    repo.git("checkout", "-q", "main")

    assert server.zdd("storage", app, "add", "data:/data").returncode == 0
    restarted = server.zdd("restart", app)
    assert "storage, which lives on the manager" in restarted.stdout, restarted.stdout + restarted.stderr
    assert {t["node"] for t in tasks(server, app)} == {"node1"}
    assert server.zdd("run", app, "--", "/bin/busybox", "sh", "-c", "echo kept > /data/note").returncode == 0
    with lab.manager() as manager:
        web = manager.containers.list(filters={"label": "com.docker.swarm.service.name=zdd-tools-web"})
        assert web and all(c.exec_run(["/bin/busybox", "cat", "/data/note"]).output == b"kept\n" for c in web)

    destroyed = server.zdd("destroy", app, "--yes", "--storage")
    assert destroyed.returncode == 0, destroyed.stderr
    assert "removed service zdd-tools-web" in destroyed.stdout
    assert served(lab, server, host)[0] == 404
    assert served(lab, server) == (200, "v5"), "the other app kept serving"
