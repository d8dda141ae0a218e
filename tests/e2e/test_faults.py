"""A deploy killed (SIGKILL) as each of its steps ends: `zdd status` or the next push repairs,
and what serves is what the state says, with one container and no leftovers."""

import os
import subprocess

import pytest

from conftest import expect, http_get

pytestmark = pytest.mark.e2e

# step killed after -> which version serves once repaired
KILL_POINTS = {
    "config": "v1", "build": "v1", "start": "v1", "health": "v1",
    "switch": "v1",   # the old container still runs: traffic goes back to what the state names
    "watch": "v1",
    "drain": "v1",
    "stop": "v2",     # the old one is gone and v2 serves: the state adopts v2
    "record": "v2",
}


@pytest.mark.parametrize("step", list(KILL_POINTS))
def test_killed_after_each_step_then_repaired(server, new_app, docker_client, step):
    app, site, repo = new_app
    versions = {"v1": repo.commit("v1")}
    assert repo.push("main").returncode == 0
    versions["v2"] = repo.commit("v2")

    killed = subprocess.run(["git", "push", "production", "main"], cwd=repo.path, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "ZDD_FAULT": f"after:{step}"})
    assert "is live at" not in killed.stderr, killed.stderr

    status = server.zdd("status", app, "--json")
    expected = KILL_POINTS[step]
    assert status.returncode == 0, status.stderr
    assert server.status(app)["sha"] == versions[expected]
    assert http_get(site) == (200, expected)
    containers = docker_client.containers.list(all=True, filters={"label": f"zdd.app={app}"})
    assert [c.name for c in containers] == [server.status(app)["container"]]
    if step in ("start", "health", "switch", "watch", "drain"):
        expect(status.stderr, "left over from an interrupted deploy")

    v3 = repo.commit("v3")
    result = repo.push("main")
    assert result.returncode == 0, result.stderr
    assert http_get(site) == (200, "v3") and server.status(app)["sha"] == v3
    assert len(docker_client.containers.list(all=True, filters={"label": f"zdd.app={app}"})) == 1
