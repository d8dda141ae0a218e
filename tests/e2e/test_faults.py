"""A deploy killed (SIGKILL) as each of its steps ends: `zdd status` or the next push repairs,
and what serves is what the state says, with one generation of containers (web, a worker, a
scheduler that must not overlap) and no leftovers."""

import os
import subprocess

import pytest

from conftest import app_dockerfile, expect, http_get, pushed_live

pytestmark = pytest.mark.e2e

# step killed after -> which version serves once repaired
KILL_POINTS = {
    "config": "v1", "build": "v1", "release": "v1", "start": "v1", "health": "v1", "workers": "v1",
    "singletons": "v1",  # the old clock was stopped for the new one: it is started again
    "switch": "v1",   # the old web container still runs: traffic goes back to what the state names
    "watch": "v1",
    "drain": "v1",
    "stop": "v2",     # the old web is gone and v2 serves: the state adopts v2's whole generation
    "retire": "v2",
    "record": "v2",
}
NEXT_PUSH_AFTER = ("release", "singletons", "switch", "stop", "record")  # the next push works from there too
ZDD_TOML = """release = "/bin/busybox true"
worker_check_seconds = 0.3
watch_seconds = 0.5
[processes]
worker = "/bin/busybox sleep 3600"
clock = { command = "/bin/busybox sleep 3600", overlap = false }
"""


def commit(repo, message):
    return repo.commit(message, dockerfile=app_dockerfile(healthcheck=None), zdd_toml=ZDD_TOML)


@pytest.mark.parametrize("step", list(KILL_POINTS))
def test_killed_after_each_step_then_repaired(server, new_app, docker_client, step):
    app, site, repo = new_app
    versions = {"v1": commit(repo, "v1")}
    pushed_live(repo.push("main"))
    versions["v2"] = commit(repo, "v2")

    killed = subprocess.run(["git", "push", "production", "main"], cwd=repo.path, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "ZDD_FAULT": f"after:{step}"})
    assert "is live at" not in killed.stderr, killed.stderr

    status = server.zdd("status", app, "--json")
    expected = KILL_POINTS[step]
    assert status.returncode == 0, status.stderr
    assert server.status(app)["sha"] == versions[expected]
    assert http_get(site) == (200, expected)
    containers = docker_client.containers.list(ignore_removed=True, all=True, filters={"label": f"zdd.app={app}"})
    assert sorted((c.labels["zdd.process"], c.labels["zdd.sha"], c.status) for c in containers) == [
        (process, versions[expected], "running") for process in ("clock", "web", "worker")]
    assert server.status(app)["container"] in [c.name for c in containers]
    if step in ("start", "health", "workers", "singletons", "switch", "watch", "drain", "stop"):
        expect(status.stderr, "left over from an interrupted deploy")

    if step not in NEXT_PUSH_AFTER:
        return
    v3 = commit(repo, "v3")
    pushed_live(repo.push("main"))
    assert http_get(site) == (200, "v3") and server.status(app)["sha"] == v3
    assert len(docker_client.containers.list(ignore_removed=True, all=True, filters={"label": f"zdd.app={app}"})) == 3
