"""The app's data, as its users keep it: Postgres and Redis beside the app (`zdd db`), backups
of them and of storage into a restic repository, restores that bring back exactly what was
backed up, and checks that prove a backup restores (or say that it does not). One app, with
local images that honour the official postgres and redis images' contract, shared by the
tests of this file: they run in order, each building on what the one before left."""

import json
import os
import re
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import REPO, AppRepo, expect, free_port, http_get, pushed_live, run, wait_for
from loadclient import KeepAliveClient

pytestmark = pytest.mark.e2e
LEDGER = REPO / "tests" / "e2e" / "apps" / "ledger"
POSTGRES, REDIS = "zdd-base/postgres:15", "zdd-base/redis:7"


@pytest.fixture(scope="module")
def ledger(server, tmp_path_factory, python_image, data_images, docker_client):
    app = f"ledger{os.environ.get('PYTEST_XDIST_WORKER', 'gw0')[2:]}"
    site = server.add_app(app)
    repo = AppRepo(tmp_path_factory.mktemp("ledger") / "work", server.repo(app), template=LEDGER)
    yield app, site, repo
    server.zdd("destroy", app, "--yes", "--storage")


def post(url: str) -> str:
    result = run(["curl", "-sS", "-f", "-X", "POST", url])
    assert result.returncode == 0, result.stderr
    return result.stdout


def get_json(url: str):
    status, body = http_get(url)
    assert status == 200, body
    return json.loads(body)


def backup_id(output: str) -> str:
    found = re.search(r" as (\d{8}T\d{6}Z-[0-9a-f]{4})", output)
    assert found, output
    return found.group(1)


def commit(repo: AppRepo, message: str) -> str:
    repo.write("VERSION", message)
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", message)
    return repo.head()


def test_postgres_beside_the_app_backs_up_and_restores_exactly_the_backed_up_rows(server, ledger, docker_client):
    app, site, repo = ledger
    created = server.zdd("db", "create", app, "postgres", "--image", POSTGRES)
    assert created.returncode == 0, created.stderr + created.stdout
    expect(created.stdout, "DATABASE_URL is set", f"zdd restart {app}")
    password = json.loads((server.root / "apps" / app / "services.json").read_text())[0]["password"]
    assert password not in created.stdout + created.stderr
    assert (server.root / "apps" / app / "services.json").stat().st_mode & 0o777 == 0o600
    service = docker_client.containers.get(f"zdd-{app}-postgres")
    assert service.attrs["HostConfig"]["PortBindings"] in (None, {}), "a database publishes no port"

    for refused, says in [
        (["db", "create", app, "postgres"], "already has postgres"),
        (["db", "create", app, "mysql"], "unknown service type 'mysql'"),
        (["restore", app, "20000101T000000Z-0000"], "no stored backup"),
        (["db", "destroy", app, "redis"], "has no redis"),
    ]:
        result = server.zdd(*refused)
        assert result.returncode == 1 and result.stderr.count("\n") == 1, (refused, result.stderr)
        expect(result.stderr, says)

    commit(repo, "v1")
    first = repo.push("main")
    pushed_live(first)
    expect(first.stderr, "migrated: table rows is there")
    assert password not in first.stderr
    for body in ("a", "b", "c"):
        post(f"{site}/rows?body={body}")

    backed_up = server.zdd("backup", app)
    assert backed_up.returncode == 0, backed_up.stderr + backed_up.stdout
    taken = backup_id(backed_up.stdout)
    for body in ("d", "e"):
        post(f"{site}/rows?body={body}")
    assert get_json(f"{site}/rows") == ["a", "b", "c", "d", "e"]

    restored = server.zdd("restore", app, taken)
    assert restored.returncode == 0, restored.stderr + restored.stdout
    expect(restored.stdout, "a safety backup", "was stopped for", "serves again")
    assert get_json(f"{site}/rows") == ["a", "b", "c"], "exactly the backed-up rows"

    listed = server.zdd("backups", app, "--json")
    entries = json.loads(listed.stdout)
    assert [e["reason"] for e in entries[:2]] == [f"before restoring {taken}", "manual"]
    assert all(e["outcome"] == "ok" and e["stored"] for e in entries)
    db_list = server.zdd("db", "list", app)
    expect(db_list.stdout, "postgres", "healthy", POSTGRES, f"zdd-{app}-postgres-data", "last backup")

    checked = server.zdd("backup", app, "--check", taken)
    assert checked.returncode == 0, checked.stderr + checked.stdout
    expect(checked.stdout, "postgres: restores, 1 tables, 3 rows", f"backup {taken} restores")
    assert not docker_client.containers.list(all=True, filters={"label": f"zdd.check-of={app}"}), "scratch removed"

    clients = [KeepAliveClient(site, path="/rows", retrying=False) for _ in range(3)]
    for client in clients:
        client.start()
    time.sleep(0.5)
    commit(repo, "v2")
    second = repo.push("main")
    time.sleep(0.5)
    for client in clients:
        client.stop()
    pushed_live(second)
    assert [c.failures for c in clients] == [[]] * len(clients), "a deploy with a database drops nothing"
    assert sum((c.bodies for c in clients), Counter()), "the load reached the app"


def test_redis_and_storage_are_in_the_same_backups_and_restore_one_by_one(server, ledger):
    app, site, _ = ledger
    assert server.zdd("db", "create", app, "redis", "--image", REDIS).returncode == 0
    assert server.zdd("storage", app, "add", "files:/files").returncode == 0
    restarted = server.zdd("restart", app)
    assert restarted.returncode == 0, restarted.stderr + restarted.stdout
    for _ in range(3):
        post(f"{site}/counter")
    post(f"{site}/files?name=one")

    backed_up = server.zdd("backup", app)
    assert backed_up.returncode == 0, backed_up.stderr + backed_up.stdout
    expect(backed_up.stdout, "postgres:", "redis:", "storage:files:")
    taken = backup_id(backed_up.stdout)
    post(f"{site}/counter")
    post(f"{site}/files?name=two")
    assert http_get(f"{site}/counter") == (200, "4")

    only_redis = server.zdd("restore", app, taken, "--service", "redis")
    assert only_redis.returncode == 0, only_redis.stderr + only_redis.stdout
    assert http_get(f"{site}/counter") == (200, "3")
    assert get_json(f"{site}/files") == ["one", "two"], "storage untouched by a redis restore"

    only_files = server.zdd("restore", app, taken, "--service", "storage:files")
    assert only_files.returncode == 0, only_files.stderr + only_files.stdout
    assert get_json(f"{site}/files") == ["one"]
    assert http_get(f"{site}/counter") == (200, "3")

    wrong = server.zdd("restore", app, taken, "--service", "mysql")
    assert wrong.returncode == 1 and "holds no mysql" in wrong.stderr, wrong.stderr

    checked = server.zdd("backup", app, "--check", taken)
    assert checked.returncode == 0, checked.stderr + checked.stdout
    expect(checked.stdout, "redis: restores, 1 keys", "storage:files: restores, 1 files")


def scheduled(server, app: str) -> list[dict]:
    return [e for e in json.loads(server.zdd("backups", app, "--json").stdout) if e["reason"] == "scheduled"]


def test_scheduled_backups_run_by_themselves_and_a_failing_one_is_reported(server, ledger, new_app, docker_client):
    app, site, _ = ledger
    other, _, other_repo = new_app
    assert server.zdd("db", "create", other, "redis", "--image", REDIS).returncode == 0
    docker_client.containers.get(f"zdd-{other}-redis").stop()  # its backups cannot succeed
    logged = len(server.timer_log())
    for name in (app, other):
        scheduled_now = server.zdd("backup", name, "--schedule", "1m", "--keep", "last=2")
        assert scheduled_now.returncode == 0, scheduled_now.stderr
        expect(scheduled_now.stdout, "backed up every 1m by the server's backup timer")
    bad = server.zdd("backup", app, "--schedule", "every day")
    assert bad.returncode == 1 and "invalid schedule 'every day'" in bad.stderr, bad.stderr

    # the server's minute timer logs the failure after it has backed up both: read its log, not
    # `zdd backups` every few seconds (a process each, on a busy machine)
    assert wait_for(lambda: "scheduled backup(s) failed" in server.timer_log()[logged:], timeout=150, interval=1), \
        server.timer_log()
    assert scheduled(server, app) and scheduled(server, other), server.timer_log()
    assert scheduled(server, app)[0]["outcome"] == "ok"
    assert scheduled(server, other)[0]["outcome"] == "failed"
    log = server.timer_log()
    expect(log, f"{other}: FAILED", "redis of", "is not running", "1 scheduled backup(s) failed")
    expect(server.zdd("db", "list", other).stdout, "failed")
    expect(server.zdd("status", other).stdout, "warning: the last scheduled backup", "failed")
    other_repo.commit("v1")
    expect(other_repo.push("main").stderr, "Warning: the last scheduled backup")
    for name in (app, other):
        assert server.zdd("backup", name, "--schedule", "off").returncode == 0


def test_a_database_removed_without_its_data_comes_back_with_it(server, ledger):
    app, site, _ = ledger
    removed = server.zdd("db", "destroy", app, "postgres")
    assert removed.returncode == 0, removed.stderr
    expect(removed.stdout, f"its data stays in volume zdd-{app}-postgres-data")
    assert "DATABASE_URL" not in server.zdd("env", app, "list").stdout
    again = server.zdd("db", "create", app, "postgres", "--image", POSTGRES)
    assert again.returncode == 0, again.stderr + again.stdout
    expect(again.stdout, f"using the data kept in volume zdd-{app}-postgres-data")
    assert server.zdd("restart", app).returncode == 0
    assert get_json(f"{site}/rows") == ["a", "b", "c"], "the kept data, under a new password"


def test_backups_go_off_site_to_s3_and_restore_from_there(server, ledger, bucket):
    app, site, _ = ledger
    url, key_id, secret = bucket
    target = f"s3:{url}/offsite/zdd"
    refused = server.zdd("backup-target", "set", target, "AWS_ACCESS_KEY_ID=AKIAWRONG", f"AWS_SECRET_ACCESS_KEY={secret}")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    expect(refused.stderr, "restic cannot use", "Access Key Id you provided does not exist")
    assert secret not in refused.stderr and not (server.root / "backup-target.json").exists()
    bad = server.zdd("backup-target", "set", target, "PATH=/tmp")
    assert bad.returncode == 1 and "a credential restic reads" in bad.stderr, bad.stderr

    kept = server.zdd("backup-target", "set", target, f"AWS_ACCESS_KEY_ID={key_id}", f"AWS_SECRET_ACCESS_KEY={secret}")
    assert kept.returncode == 0, kept.stderr
    try:
        assert (server.root / "backup-target.json").stat().st_mode & 0o777 == 0o600
        shown = server.zdd("backup-target", "show").stdout
        expect(shown, f"backups go to {target}", "AWS_SECRET_ACCESS_KEY=*****")
        taken = server.zdd("backup", app)
        assert taken.returncode == 0, taken.stderr + taken.stdout
        expect(taken.stdout, f"stored in {target}/{app}")
        assert secret not in taken.stdout + taken.stderr
        post(f"{site}/rows?body=after")
        restored = server.zdd("restore", app, backup_id(taken.stdout), "--service", "postgres")
        assert restored.returncode == 0, restored.stderr + restored.stdout
        assert get_json(f"{site}/rows") == ["a", "b", "c"]
        checked = server.zdd("backup", app, "--check", backup_id(taken.stdout))
        assert checked.returncode == 0, checked.stderr + checked.stdout
        expect(checked.stdout, f"the repository {target}/{app} is consistent", "postgres: restores, 1 tables, 3 rows")
    finally:
        assert server.zdd("backup-target", "off").returncode == 0


@pytest.fixture
def sftp_host(tmp_path):
    """sshd on a free loopback port with its SFTP subsystem, letting root in with one key:
    yields the port, that key, and another key it refuses."""
    keys = tmp_path / "keys"
    keys.mkdir()
    for name in ("host", "allowed", "refused"):
        assert run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)]).returncode == 0
    (keys / "authorized").write_text((keys / "allowed.pub").read_text())
    port = free_port()
    (tmp_path / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {keys / 'host'}\nPidFile {tmp_path / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {keys / 'authorized'}\nStrictModes no\nPasswordAuthentication no\nUsePAM no\n"
        "PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n")
    os.makedirs("/run/sshd", exist_ok=True)
    sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(tmp_path / "sshd_config")],
                            stderr=open(tmp_path / "sshd.log", "wb"))
    assert wait_for(lambda: run(["ssh-keyscan", "-p", str(port), "127.0.0.1"]).stdout, timeout=10)
    yield port, keys / "allowed", keys / "refused"
    sshd.terminate()
    sshd.wait(timeout=10)


def test_backups_go_off_site_over_sftp_with_a_key(server, ledger, sftp_host, tmp_path):
    app, site, _ = ledger
    port, allowed, refused_key = sftp_host
    target = f"sftp://root@127.0.0.1:{port}/{tmp_path}/offsite"
    refused = server.zdd("backup-target", "set", target, "--ssh-key", str(refused_key))
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    expect(refused.stderr, "restic cannot use", f"is the key accepted there? try: ssh -i {refused_key}")
    assert not (server.root / "backup-target.json").exists()

    assert server.zdd("backup-target", "set", target, "--ssh-key", str(allowed)).returncode == 0
    try:
        taken = server.zdd("backup", app)
        assert taken.returncode == 0, taken.stderr + taken.stdout
        expect(taken.stdout, f"stored in {target}/{app}")
        assert (tmp_path / "offsite" / app / "config").exists(), "the repository is on the SFTP host"
        post(f"{site}/files?name=late")
        restored = server.zdd("restore", app, backup_id(taken.stdout), "--service", "storage:files")
        assert restored.returncode == 0, restored.stderr + restored.stdout
        assert "late" not in get_json(f"{site}/files")
    finally:
        assert server.zdd("backup-target", "off").returncode == 0
    assert not Path.home().joinpath(".ssh", "known_hosts").exists() or \
        f"[127.0.0.1]:{port}" not in Path.home().joinpath(".ssh", "known_hosts").read_text(), \
        "the host key is kept in zdd's own file, not the user's"


def test_a_corrupted_backup_is_reported_by_its_check(server, ledger):
    app, site, _ = ledger
    taken = next(e["id"] for e in json.loads(server.zdd("backups", app, "--json").stdout) if e["stored"])
    packs = sorted((server.root / "backups" / app / "data").rglob("*"))
    packs = [p for p in packs if p.is_file()]
    assert packs
    for pack in packs:
        data = bytearray(pack.read_bytes())
        data[len(data) // 2] ^= 0xFF
        pack.chmod(0o600)
        pack.write_bytes(bytes(data))

    checked = server.zdd("backup", app, "--check", taken)
    assert checked.returncode == 1, checked.stdout
    expect(checked.stderr, f"backup {taken} of {app} does not restore")
    assert checked.stderr.count("\n") == 1
    assert get_json(f"{site}/rows") == ["a", "b", "c"], "the live app is untouched"


TICK = """import os, psycopg2
with psycopg2.connect(os.environ["DATABASE_URL"]) as db, db.cursor() as cursor:
    cursor.execute("INSERT INTO rows (body) VALUES ('tick')")
print("ticked")
"""
JOBS = """
[cron]
tick = { schedule = "* * * * *", command = "python3 tick.py" }
slow = { schedule = "0 4 1 1 *", command = "sleep 30", timeout = 4 }
fails = { schedule = "0 4 1 1 *", command = "python3 -c 'import sys; print(\\"no luck\\"); sys.exit(3)'" }
"""


def test_cron_jobs_run_from_the_live_image_by_the_timer_never_twice_at_once_and_failures_show(server, ledger):
    app, site, repo = ledger
    bad = (LEDGER / "zdd.toml").read_text() + JOBS.replace("* * * * *", "* 24 * * *")
    repo.write("zdd.toml", bad)
    commit(repo, "bad schedule")
    refused = repo.push("main")
    expect(refused.stderr, "cron.tick.schedule: the hour '24' is outside 0-23")
    assert get_json(f"{site}/rows") == ["a", "b", "c"], "the live version is untouched"

    repo.write("zdd.toml", (LEDGER / "zdd.toml").read_text() + JOBS)
    repo.write("tick.py", TICK)
    commit(repo, "jobs")
    pushed_live(repo.push("main"))
    timer = server.zdd("backup-due")  # what the server's timer runs each minute (unless cron's did this minute)
    assert f"{app}: started cron job tick" in timer.stdout + server.timer_log(), timer.stdout + timer.stderr
    assert wait_for(lambda: "tick" in get_json(f"{site}/rows"), timeout=60, interval=1), get_json(f"{site}/rows")

    slow = subprocess.Popen([str(server.root / "bin" / "zdd"), "cron", app, "run", "slow"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: run(["docker", "ps", "-q", "--filter", "label=zdd.cron=slow"]).stdout.strip(), 30)
    again = server.zdd("cron", app, "run", "slow")
    assert again.returncode == 1 and "skipped: the previous run is still going" in again.stdout, again
    assert slow.wait(timeout=60) == 1, slow.communicate()
    failed = server.zdd("cron", app, "run", "fails")
    assert failed.returncode == 1 and "no luck" in failed.stdout, failed.stdout + failed.stderr

    listed = server.zdd("cron", app).stdout
    expect(listed, "tick", "* * * * *", "last run", "ok, exit code 0", "| ticked", "slow", "timed out",
           "fails", "failed, exit code 3", "| no luck")
    status = server.zdd("status", app).stdout
    expect(status, "cron job slow TIMED OUT", "cron job fails FAILED", "(exit code 3)")
    assert "cron job tick" not in status
