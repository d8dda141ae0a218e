"""Swarm mode's data, end to end on a lab of its own (so that it runs beside
test_swarm_push.py's): Postgres as a Swarm service pinned to the manager, where its volume
is, reached over the app's overlay network by web tasks on every node; a backup stored
off-site (S3), checked, and restored with the app's services scaled to 0 for the swap and
back; the database removed with its data."""

import re
import subprocess
import sys
from pathlib import Path

import docker
import pytest

from conftest import REPO, AppRepo, Server, expect, pushed_live, wait_for

sys.path.insert(0, str(REPO / "bench"))
from swarmlab import SwarmLab  # noqa: E402

pytestmark = pytest.mark.e2e
STATIC_CADDY = Path(sys.prefix) / "bin" / "caddy"
POSTGRES = "zdd-base/postgres:15"
HOST = "ledger.swarm.test"


@pytest.fixture(scope="module")
def lab(data_images):
    with SwarmLab() as lab:
        save = subprocess.Popen(["docker", "save", POSTGRES], stdout=subprocess.PIPE)
        loaded = subprocess.run(["docker", "-H", lab.docker_host, "load", "-q"], stdin=save.stdout,
                                capture_output=True, text=True)
        save.stdout.close()
        assert save.wait() == 0 and loaded.returncode == 0, loaded.stderr
        yield lab


def count_rows(server, app: str) -> int:
    said = psql(server, app, "SELECT count(*) FROM rows;")
    return int(re.search(r"^\s*(\d+)\s*$", said, re.M).group(1))


def psql(server, app: str, sql: str) -> str:
    result = server.zdd("db", "connect", app, input=sql)
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


def reaches_postgres_from_each_node(lab, app: str) -> dict[str, str]:
    """On every node, from the web task there: does a TCP connection to the database open?"""
    said = {}
    for host in lab.node_hosts:
        client = docker.DockerClient(base_url=host)
        try:
            for task in client.containers.list(filters={"label": f"com.docker.swarm.service.name=zdd-{app}-web"}):
                result = task.exec_run(["/bin/busybox", "sh", "-c", f"/bin/busybox nc -w 3 zdd-{app}-postgres 5432 "
                                        "</dev/null; echo exit=$?"])
                said[client.info()["Name"]] = result.output.decode().strip().splitlines()[-1]
        finally:
            client.close()
    return said


def test_postgres_on_the_swarm_serves_every_node_backs_up_off_site_and_restores(lab, bucket, tmp_path):
    server, app = Server(tmp_path / "server"), "ledger"
    server.env.update({"DOCKER_HOST": lab.docker_host, "ZDD_CADDY_BIN": str(STATIC_CADDY), "ZDD_TLS": "internal"})
    installed = server.install(app, "--domain", f"http://{HOST}", "--swarm", "--registry", lab.registry)
    assert installed.returncode == 0, installed.stderr + installed.stdout
    url, key_id, secret = bucket
    target = f"s3:{url}/offsite/zdd"
    try:
        created = server.zdd("db", "create", app, "postgres", "--image", POSTGRES)
        assert created.returncode == 0, created.stderr + created.stdout
        expect(created.stdout, "DATABASE_URL is set")
        with lab.manager() as manager:
            service = manager.services.get(f"zdd-{app}-postgres")
            here = manager.info()["Swarm"]["NodeID"]
            assert service.attrs["Spec"]["TaskTemplate"]["Placement"]["Constraints"] == [f"node.id=={here}"]
            assert not service.attrs.get("Endpoint", {}).get("Ports"), "a database publishes no port"
            assert service.attrs["Spec"]["TaskTemplate"]["LogDriver"] == {
                "Name": "json-file", "Options": {"max-size": "10m", "max-file": "3"}}, "its log is capped"
        psql(server, app, "CREATE TABLE rows (body text); INSERT INTO rows VALUES ('a'), ('b'), ('c');")

        assert server.zdd("scale", app, "web=3").returncode == 0
        repo = AppRepo(tmp_path / "work", server.repo(app), health_interval="1s")
        repo.commit("v1")
        pushed_live(repo.push("main"))
        everywhere, seen = {"node1": "exit=0", "node2": "exit=0", "node3": "exit=0"}, []
        # the overlay can take a moment after a task starts to carry its first connection
        assert wait_for(lambda: seen.append(reaches_postgres_from_each_node(lab, app)) or seen[-1] == everywhere,
                        timeout=20, interval=1), seen
        listed = server.zdd("db", "list", app)
        expect(listed.stdout, "postgres", POSTGRES, f"zdd-{app}-postgres-data")

        assert server.zdd("backup-target", "set", target, f"AWS_ACCESS_KEY_ID={key_id}",
                          f"AWS_SECRET_ACCESS_KEY={secret}").returncode == 0
        taken = server.zdd("backup", app)
        assert taken.returncode == 0, taken.stderr + taken.stdout
        expect(taken.stdout, f"stored in {target}/{app}")
        backup = re.search(r" as (\d{8}T\d{6}Z-[0-9a-f]{4})", taken.stdout).group(1)
        checked = server.zdd("backup", app, "--check", backup)
        assert checked.returncode == 0, checked.stderr + checked.stdout
        expect(checked.stdout, "postgres: restores, 1 tables, 3 rows")

        psql(server, app, "INSERT INTO rows VALUES ('after the backup');")
        restored = server.zdd("restore", app, backup)
        assert restored.returncode == 0, restored.stderr + restored.stdout
        expect(restored.stdout, f"zdd-{app}-web: 3 task(s) running", "serves again")
        assert count_rows(server, app) == 3
        assert lab.http_get(f"http://127.0.0.1:{server.http_port}/", host=HOST) == (200, "v1")

        destroyed = server.zdd("db", "destroy", app, "postgres", "--data")
        assert destroyed.returncode == 0, destroyed.stderr
        with lab.manager() as manager:
            assert not manager.services.list(filters={"name": f"zdd-{app}-postgres"})
            assert not manager.volumes.list(filters={"name": f"zdd-{app}-postgres-data"})
    finally:
        server.zdd("backup-target", "off")
        assert server.zdd("destroy", app, "--yes", "--storage").returncode == 0
