"""A deploy killed (SIGKILL) as each of its steps ends: `zdd status` or the next push repairs,
and what serves is what the state says, with one generation of containers (web, a worker, a
scheduler that must not overlap) and no leftovers. One app for the whole file: each case
kills the push of a new commit over what the case before left serving."""

import os
import subprocess

import pytest

from conftest import AppRepo, app_dockerfile, expect, http_get, pushed_live

pytestmark = pytest.mark.e2e

# step killed after -> which version serves once repaired: the one live before, or the new one
KILL_POINTS = {
    "config": "old", "build": "old", "release": "old", "start": "old", "health": "old", "workers": "old",
    "singletons": "old",  # the old clock was stopped for the new one: it is started again
    "switch": "old",   # the old web container still runs: traffic goes back to what the state names
    "watch": "old",
    "drain": "old",
    "stop": "new",     # the old web is gone and the new one serves: the state adopts its whole generation
    "retire": "new",
    "record": "new",
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


@pytest.fixture(scope="module")
def faulted(server, tmp_path_factory):
    """The app the cases share, with v0 live; ``live`` is (body, sha) of what serves."""
    name = f"faults{os.environ.get('PYTEST_XDIST_WORKER', 'gw0')[2:]}"
    site = server.add_app(name)
    repo = AppRepo(tmp_path_factory.mktemp("faults") / "work", server.repo(name))
    shared = {"app": name, "site": site, "repo": repo, "live": ("v0", commit(repo, "v0"))}
    pushed_live(repo.push("main"))
    yield shared
    server.zdd("destroy", name, "--yes", "--storage")


@pytest.mark.parametrize("step", list(KILL_POINTS))
def test_killed_after_each_step_then_repaired(server, faulted, docker_client, step):
    app, site, repo = faulted["app"], faulted["site"], faulted["repo"]
    versions = {"old": faulted["live"], "new": (f"killed-after-{step}", commit(repo, f"killed-after-{step}"))}
    body, sha = faulted["live"] = versions[KILL_POINTS[step]]

    killed = subprocess.run(["git", "push", "production", "main"], cwd=repo.path, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "ZDD_FAULT": f"after:{step}"})
    assert "is live at" not in killed.stderr, killed.stderr

    status = server.zdd("status", app, "--json")
    assert status.returncode == 0, status.stderr
    assert server.status(app)["sha"] == sha
    assert http_get(site) == (200, body)
    containers = docker_client.containers.list(ignore_removed=True, all=True, filters={"label": f"zdd.app={app}"})
    assert sorted((c.labels["zdd.process"], c.labels["zdd.sha"], c.status) for c in containers) == [
        (process, sha, "running") for process in ("clock", "web", "worker")]
    assert server.status(app)["container"] in [c.name for c in containers]
    if step in ("start", "health", "workers", "singletons", "switch", "watch", "drain", "stop"):
        expect(status.stderr, "left over from an interrupted deploy")

    if step not in NEXT_PUSH_AFTER:
        return
    after = commit(repo, f"pushed-after-{step}")
    pushed_live(repo.push("main"))
    faulted["live"] = (f"pushed-after-{step}", after)
    assert http_get(site) == (200, f"pushed-after-{step}") and server.status(app)["sha"] == after
    assert len(docker_client.containers.list(ignore_removed=True, all=True, filters={"label": f"zdd.app={app}"})) == 3
