"""A real app, as its users run one: the Flask + gunicorn example in examples/notes, on a
Debian base image, with a release step that migrates SQLite on storage, a worker, a
scheduler that must never overlap, `zdd scale`, `zdd run`, rollback and destroy."""

import json
import subprocess
import time
from collections import Counter

import pytest

from conftest import REPO, AppRepo, expect, http_get, pushed_live, wait_for
from loadclient import KeepAliveClient

pytestmark = pytest.mark.e2e
NOTES = REPO / "examples" / "notes"
FAST_CHECKS = "worker_check_seconds = 1\nwatch_seconds = 1\n"


@pytest.fixture
def notes_app(server, tmp_path, python_image, docker_client):
    app = "notes"
    site = server.add_app(app)
    repo = AppRepo(tmp_path / "notes", server.repo(app), template=NOTES)
    repo.write("zdd.toml", FAST_CHECKS + (NOTES / "zdd.toml").read_text())
    yield app, site, repo
    server.zdd("destroy", app, "--yes", "--storage")
    for volume in docker_client.volumes.list(filters={"label": f"zdd.app={app}"}):
        volume.remove(force=True)


def state_of(site: str) -> dict:
    status, body = http_get(site + "/")
    assert status == 200, body
    return json.loads(body)


def workers_of(site: str) -> dict:
    status, body = http_get(site + "/workers")
    assert status == 200, body
    return json.loads(body)


def release(repo: AppRepo, version: int, migration: str | None = None) -> str:
    repo.write("VERSION", f"{version}\n")
    if migration:
        db = (repo.path / "db.py").read_text()
        repo.write("db.py", db.replace("\n]\n", f"\n    {migration!r},\n]\n", 1))
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", f"v{version}")
    return repo.head()


def clock_never_overlapped(lines: list[str]) -> bool:
    running = 0
    for line in sorted(lines, key=lambda text: float(text.split()[0])):
        running += 1 if line.split()[1] == "start" else -1
        if running > 1:
            return False
    return True


def one_generation(site: str, version: str, count: int) -> bool:
    beats = workers_of(site)["workers"]
    return len(beats) == count and all(beat["version"] == version for beat in beats)


def test_a_real_app_migrates_runs_workers_keeps_its_data_and_takes_one_off_commands(
        server, notes_app, docker_client):
    app, site, repo = notes_app
    assert server.zdd("storage", app, "add", "data:/data").returncode == 0
    scaled = server.zdd("scale", app, "worker=2")
    assert scaled.returncode == 0, scaled.stderr
    expect(scaled.stdout, "first deploy")
    release(repo, 1)

    first = repo.push("main")

    pushed_live(first)
    expect(first.stderr, "Running the release command (python3 manage.py migrate)", "applying migration 1",
           "starting 2 worker container(s)", "starting 1 clock container(s)")
    assert state_of(site) == {"version": "1", "schema": 1, "notes": []}
    assert wait_for(lambda: one_generation(site, "1", 2), timeout=10), workers_of(site)

    clients = [KeepAliveClient(site, retrying=False) for _ in range(3)]
    clients += [KeepAliveClient(site, retrying=True) for _ in range(2)]
    for client in clients:
        client.start()
    time.sleep(0.5)
    v2 = release(repo, 2, "ALTER TABLE notes ADD COLUMN author TEXT")
    second = repo.push("main")
    time.sleep(1)
    for client in clients:
        client.stop()

    pushed_live(second)
    expect(second.stderr, "applying migration 2", "Stopping the old version's other processes (1 clock, 2 worker)")
    assert [c.failures for c in clients] == [[]] * len(clients), "gunicorn behind zdd drops nothing"
    served = sum((c.bodies for c in clients), Counter())
    assert {json.loads(body)["version"] for body in served} == {"1", "2"}
    assert state_of(site)["schema"] == 2
    assert one_generation(site, "2", 2), "the old workers are gone once the push returns"
    assert clock_never_overlapped(workers_of(site)["clock"])
    assert len(workers_of(site)["clock"]) == 3, "v1 started, v1 stopped, v2 started"

    added = subprocess.run([str(server.root / "bin" / "zdd"), "run", app, "--", "python3", "manage.py",
                            "add-note"], input="written by a one-off\n", capture_output=True, text=True,
                           timeout=120, env={"PATH": "/usr/bin:/bin"})
    failed = server.zdd("run", app, "--", "python3", "-c", "import sys; sys.exit(3)")

    assert added.returncode == 0, added.stderr
    expect(added.stdout, "added: written by a one-off")
    assert failed.returncode == 3
    assert state_of(site)["notes"] == ["written by a one-off"], "web sees what the run wrote on storage"
    assert docker_client.containers.list(ignore_removed=True, all=True, filters={"label": [f"zdd.app={app}", "zdd.process=run"]}) == []

    assert server.zdd("scale", app, "worker=0").returncode == 0
    assert wait_for(lambda: one_generation(site, "2", 0), timeout=5)
    assert server.zdd("scale", app, "worker=1").returncode == 0
    assert wait_for(lambda: one_generation(site, "2", 1), timeout=10)
    table = server.status(app)["process_table"]
    assert {name: (row["wanted"], len(row["containers"])) for name, row in table.items()} == {
        "web": (1, 1), "worker": (1, 1), "clock": (1, 1)}
    logs = server.zdd("logs", app, "--process", "clock", "--tail", "5")
    assert logs.returncode == 0, logs.stderr

    rollback = server.zdd("rollback", app)

    assert rollback.returncode == 0, rollback.stderr
    expect(rollback.stdout, "schema at version 2")
    assert state_of(site) == {"version": "1", "schema": 2, "notes": ["written by a one-off"]}, \
        "v1's code works on v2's schema: expand, then contract"
    assert one_generation(site, "1", 1)
    assert clock_never_overlapped(workers_of(site)["clock"])
    assert server.status(app)["sha"] != v2

    destroyed = server.zdd("destroy", app, "--yes")

    assert destroyed.returncode == 0, destroyed.stderr
    expect(destroyed.stdout, f"kept its storage: volume zdd-{app}-data")
    assert docker_client.containers.list(ignore_removed=True, all=True, filters={"label": f"zdd.app={app}"}) == []
    assert docker_client.volumes.get(f"zdd-{app}-data")
