"""Swarm mode end to end, every command on the three-node lab (a lab of its own, so that this
file runs beside test_swarm_push.py): a worker that never gets healthy rolls web back, status,
env, limits, restart, logs, run, cron from the manager's timer, the maintenance page, apps,
scale, a preview of a branch, storage pinned to the manager, and destroy."""

import re

from conftest import AppRepo, app_dockerfile, wait_for
from swarm_common import destroy_swarm_apps_when_done, lab, nodes_of, served, swarm_server, tasks  # noqa: F401

WORKER_TOML = """
[processes.worker]
command = "/bin/busybox sh -c 'echo working; exec /bin/busybox sleep 1000'"
healthcheck = false
"""
CRON_TOML = """[cron]
hello = { schedule = "* * * * *", command = "/bin/busybox sh -c 'echo hello $GREETING'" }
"""


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
    assert wait_for(lambda: "| hello" in server.zdd("cron", app).stdout, timeout=30, interval=1), \
        server.zdd("cron", app).stdout
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
    assert served(lab, server) == (404, "no app is served at this address"), "Caddy's container still answers"
