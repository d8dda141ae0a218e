"""A major Postgres upgrade as its user runs it: `zdd db upgrade` moves the app's data to a new
version in a container and volume of their own, behind the maintenance page, and restarts the
app on it health-gated; an upgrade killed midway is cleared by the next try; a failure after
maintenance went on leaves the app on its database; `--undo` goes back to the old version's
untouched volume."""

import json
import os
import threading
import time

import pytest

from conftest import REPO, AppRepo, expect, http_get, pushed_live, run
from test_data import backup_id, commit, get_json, post

pytestmark = pytest.mark.e2e
LEDGER = REPO / "tests" / "e2e" / "apps" / "ledger"
POSTGRES_15, POSTGRES_17 = "zdd-base/postgres:15", "zdd-base/postgres:17"


@pytest.fixture(scope="module")
def ledger(server, tmp_path_factory, python_image, data_images):
    app = f"upgrade{os.environ.get('PYTEST_XDIST_WORKER', 'gw0')[2:]}"
    site = server.add_app(app)
    repo = AppRepo(tmp_path_factory.mktemp("upgrade") / "work", server.repo(app), template=LEDGER)
    yield app, site, repo
    server.zdd("destroy", app, "--yes", "--storage")


class StatusPoller(threading.Thread):
    """GETs a URL over and over, keeping each answer's status (0: no answer at all)."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.statuses, self.stopped = url, [], threading.Event()

    def run(self):
        while not self.stopped.is_set():
            result = run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", self.url])
            self.statuses.append(int(result.stdout or 0))
            time.sleep(0.05)

    def stop(self) -> list[int]:
        self.stopped.set()
        self.join()
        return self.statuses


def containers_named(docker_client, name: str) -> dict[str, str]:
    return {c.name: c.status for c in docker_client.containers.list(all=True, filters={"name": name})}


def test_a_major_upgrade_moves_the_data_behind_the_maintenance_page_and_undo_goes_back(server, ledger, docker_client):
    app, site, repo = ledger
    assert server.zdd("db", "create", app, "postgres", "--image", POSTGRES_15).returncode == 0
    commit(repo, "v1")
    pushed_live(repo.push("main"))
    for body in ("a", "b", "c"):
        post(f"{site}/rows?body={body}")

    for refused, says in [
        (["db", "upgrade", app, "redis", "8"], "has no redis"),
        (["db", "upgrade", app, "postgres", "--undo"], "no upgrade of postgres to undo"),
        (["db", "upgrade", app, "postgres", "--image", POSTGRES_15], f"already runs {POSTGRES_15}"),
        (["db", "upgrade", app, "postgres"], "give the version to upgrade to"),
    ]:
        result = server.zdd(*refused)
        assert result.returncode == 1 and result.stderr.count("\n") == 1, (refused, result.stderr)
        expect(result.stderr, says)

    killed = run([str(server.root / "bin" / "zdd"), "db", "upgrade", app, "postgres", "--image", POSTGRES_17],
                 env={"PATH": "/usr/bin:/bin", "ZDD_FAULT": "after:upgrade-move"})
    assert killed.returncode != 0 and http_get(site)[0] == 503, "killed once the data moved, behind the page"
    assert server.zdd("maintenance", app, "off").returncode == 0
    assert get_json(f"{site}/rows") == ["a", "b", "c"], "still on its database, read-only until the next try"

    poller = StatusPoller(f"{site}/rows")
    poller.start()
    upgraded = server.zdd("db", "upgrade", app, "postgres", "--image", POSTGRES_17)
    statuses = poller.stop()
    assert upgraded.returncode == 0, upgraded.stderr + upgraded.stdout
    expect(upgraded.stdout, f"removed zdd-{app}-postgres-1 and its volume, left by an upgrade that was interrupted",
           "a safety backup", f"{POSTGRES_15} -> {POSTGRES_17}", "was in maintenance for",
           f"zdd db upgrade {app} postgres --undo")
    safety = backup_id(upgraded.stdout)
    assert set(statuses) <= {200, 503}, f"every request answered, by the app or the maintenance page: {statuses}"
    assert 503 in statuses and statuses[-1] == 200, statuses
    assert get_json(f"{site}/rows") == ["a", "b", "c"], "the data moved"
    assert http_get(f"{site}/db-version")[1].startswith("17."), "the app uses the new version"
    assert containers_named(docker_client, f"zdd-{app}-postgres") == {
        f"zdd-{app}-postgres": "exited", f"zdd-{app}-postgres-1": "running"}, "the old one is stopped, kept"
    listed = server.zdd("db", "list", app).stdout
    expect(listed, POSTGRES_17, f"zdd-{app}-postgres-data-1", f"upgraded from {POSTGRES_15}")
    assert "MAINTENANCE" not in server.zdd("status", app).stdout
    newest = json.loads(server.zdd("backups", app, "--json").stdout)[0]
    assert newest["id"] == safety and newest["reason"].startswith("before upgrading postgres"), newest
    post(f"{site}/rows?body=d")

    downgrade = server.zdd("db", "upgrade", app, "postgres", "--image", POSTGRES_15)
    assert downgrade.returncode == 1 and downgrade.stderr.count("\n") == 1, downgrade.stderr
    expect(downgrade.stderr, "unsupported version", f"{app} stays on {POSTGRES_17}")
    expect(downgrade.stdout, "maintenance on", "maintenance off")
    assert get_json(f"{site}/rows") == ["a", "b", "c", "d"], "still on its database, writable"
    assert f"zdd-{app}-postgres-2" not in containers_named(docker_client, f"zdd-{app}-postgres")
    assert not docker_client.volumes.list(filters={"name": f"zdd-{app}-postgres-data-2"}), "nothing left behind"

    undone = server.zdd("db", "upgrade", app, "postgres", "--undo")
    assert undone.returncode == 0, undone.stderr + undone.stdout
    expect(undone.stdout, f"{POSTGRES_17} -> {POSTGRES_15}", f"volume zdd-{app}-postgres-data-1")
    assert get_json(f"{site}/rows") == ["a", "b", "c"], "the old version's untouched data"
    assert http_get(f"{site}/db-version")[1].startswith("15.")
    assert containers_named(docker_client, f"zdd-{app}-postgres") == {f"zdd-{app}-postgres": "running"}
    assert docker_client.volumes.get(f"zdd-{app}-postgres-data-1"), "the upgraded data is kept, not deleted"
    post(f"{site}/rows?body=e")
    assert get_json(f"{site}/rows") == ["a", "b", "c", "e"]
