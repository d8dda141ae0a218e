"""Preview apps as their users get them: with previews on, a pushed branch becomes an app of
its own at its own host name (HTTP and on-demand HTTPS), a re-push deploys it with nothing
lost, deleting the branch removes it; the parent under load loses nothing and Caddy is never
reloaded; the N+1th preview, a pattern outside the app's domain and a branch whose host is the
parent's are refused in one line; the scheduler removes a stale preview."""

import hashlib
import json
import os

import pytest

from conftest import REPO, AppRepo, app_dockerfile, expect, pushed_live, run, wait_for
from loadclient import KeepAliveClient
from test_data import commit
from test_host_routing import request

pytestmark = pytest.mark.e2e
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:]
LEDGER = REPO / "tests" / "e2e" / "apps" / "ledger"


def preview_containers(docker_client, app: str) -> list:
    return docker_client.containers.list(all=True, filters={"label": f"zdd.app={app}"})


def test_branches_become_previews_at_their_own_hosts_and_go_with_their_branch(server, tmp_path, docker_client,
                                                                             data_images):
    parent, host = f"pv{WORKER}", f"shop{WORKER}.zdd.test"
    previews_host = f"pv{WORKER}.zdd.test"
    fix = "feature-login-" + hashlib.sha256(b"FEATURE_login").hexdigest()[:6]
    assert server.install(parent, "--domain", f"http://{host}").returncode == 0
    repo = AppRepo(tmp_path / "work", server.repo(parent))
    repo.commit("main v1")
    pushed_live(repo.push("main"))
    assert server.zdd("env", parent, "set", "SECRET=kept-home", "SHARED=yes").returncode == 0
    assert server.zdd("db", "create", parent, "redis", "--image", "zdd-base/redis:7").returncode == 0

    for refused, says in [
        (["previews", parent, "on", "--domain", "http://{branch}.elsewhere.test"], "must stay under zdd.test"),
        (["previews", parent, "on", "--domain", f"http://x.{{branch}}.{previews_host}"], "must be its first label"),
        (["previews", parent, "on"], "give the previews' address"),
    ]:
        result = server.zdd(*refused)
        assert result.returncode == 1 and result.stderr.count("\n") == 1, (refused, result.stderr)
        expect(result.stderr, says)
    skipped = repo.push("HEAD:refs/heads/before-previews")
    expect(skipped.stderr, "Skipped before-previews: only branch 'main' and tags deploy")

    on = server.zdd("previews", parent, "on", "--domain", f"http://{{branch}}.{previews_host}", "--except", "SECRET",
                    "--max", "2", "--limit", "128m")
    assert on.returncode == 0, on.stderr
    expect(on.stdout, "previews on", "at most 2", "capped at 128m")

    parent_load = KeepAliveClient(f"http://127.0.0.1:{server.http_port}", retrying=False, host_header=host)
    parent_load.start()
    loads_before = server.caddy_loads()
    try:
        repo.git("checkout", "-q", "-b", "feature/Login")
        repo.commit("login v1")
        first = repo.push("feature/Login")
        login = f"feature-login.{previews_host}"
        expect(first.stderr, f"Creating the preview {parent}--feature-login", f"Preview of feature/Login: http://{login}")
        assert request(server, login) == (200, "login v1")
        assert request(server, host) == (200, "main v1"), "the parent is untouched"

        env = server.zdd("env", f"{parent}--feature-login", "list", "--show").stdout
        expect(env, "SHARED=yes", "ZDD_PREVIEW=1", f"ZDD_PREVIEW_URL=http://{login}",
               f"@zdd-{parent}--feature-login-redis:6379/0")
        assert "SECRET" not in env, "an --except key is not copied"
        assert docker_client.containers.get(f"zdd-{parent}--feature-login-redis").status == "running", "its own redis"
        web = next(c for c in preview_containers(docker_client, f"{parent}--feature-login")
                   if c.labels["zdd.process"] == "web")
        assert web.attrs["HostConfig"]["Memory"] == 128 * 1024 * 1024, "the preview's cap"

        preview_load = KeepAliveClient(f"http://127.0.0.1:{server.http_port}", retrying=False, host_header=login)
        preview_load.start()
        repo.commit("login v2")
        again = repo.push("feature/Login")
        preview_load.stop()
        assert "Creating the preview" not in again.stderr and "is live at" in again.stderr, again.stderr
        assert preview_load.failures == [] and set(preview_load.bodies) == {"login v1", "login v2"}, \
            (preview_load.failures[:3], preview_load.bodies)

        over_https = server.zdd("previews", parent, "on", "--domain", f"{{branch}}.{previews_host}")
        assert over_https.returncode == 0, over_https.stderr
        repo.git("checkout", "-q", "-b", "FEATURE_login")  # cleaned, it is feature/Login's label: hashed
        repo.commit("fix v1")
        expect(repo.push("FEATURE_login").stderr, f"Preview of FEATURE_login: https://{fix}.{previews_host}")
        assert request(server, f"{fix}.{previews_host}", tls=True) == (200, "fix v1"), "a certificate on demand"
        assert request(server, f"{fix}.{previews_host}")[0] == 308, "plain HTTP redirects to HTTPS"
        repo.git("checkout", "-q", "-b", "third")
        repo.commit("third v1")
        third = repo.push("third")
        expect(third.stderr, f"{parent} has 2 previews, its most (FEATURE_login, feature/Login)")
        assert server.server_ref(parent, "refs/heads/third") is None, "refused: the ref is not kept, a re-push retries"

        listed = server.zdd("previews", parent).stdout
        expect(listed, "feature/Login", f"http://{login}", "FEATURE_login", f"https://{fix}.{previews_host}")

        gone = repo.push(":feature/Login")
        expect(gone.stderr, f"Removed the preview of feature/Login ({parent}--feature-login)")
        assert request(server, login) == (404, "no app is served at this address")
        assert preview_containers(docker_client, f"{parent}--feature-login") == []
        assert not docker_client.containers.list(all=True, filters={"name": f"zdd-{parent}--feature-login-redis"})
        assert not docker_client.volumes.list(filters={"name": f"zdd-{parent}--feature-login-redis-data"})
        assert server.server_ref(parent, "refs/heads/feature/Login") is None
        assert not (server.root / "apps" / f"{parent}--feature-login").exists()
        assert (server.root / f"{parent}.git" / "HEAD").exists(), "the parent's repository stays"

        repo.git("checkout", "-q", "-b", "broken")
        repo.commit("broken", dockerfile=app_dockerfile(healthcheck="fail"))
        broken = repo.push("broken")
        expect(broken.stderr, "HEALTHCHECK reports unhealthy", f"Removed the new preview {parent}--broken")
        assert [row["branch"] for row in json.loads(server.zdd("previews", parent, "--json").stdout)] == \
            ["FEATURE_login"], "a preview that never served takes no place"

        at_base = server.zdd("previews", parent, "on", "--domain", "http://{branch}.zdd.test")
        assert at_base.returncode == 0, at_base.stderr
        repo.git("checkout", "-q", "-b", f"shop{WORKER}")
        taken = repo.push(f"shop{WORKER}")
        expect(taken.stderr, f"http://shop{WORKER}.zdd.test is already the address of app '{parent}'")
        assert request(server, host) == (200, "main v1")
        assert docker_client.containers.get(f"zdd-{parent}-redis").status == "running", "the parent's redis stays"
    finally:
        parent_load.stop()
    assert parent_load.failures == [] and parent_load.requests > 10 and set(parent_load.bodies) == {"main v1"}
    assert server.caddy_loads() == loads_before, "previews came and went without a reload"

    assert server.zdd("previews", parent, "on", "--days", "0.00001").returncode == 0  # under a second
    removed = f"{parent}--{fix}: removed, the preview of FEATURE_login had no push for"
    assert wait_for(lambda: removed in server.zdd("backup-due").stdout + server.timer_log(), timeout=30, interval=1), \
        server.timer_log()
    assert request(server, f"{fix}.{previews_host}", tls=True)[0] == 404
    assert server.zdd("previews", parent, "--json").stdout.strip() == "[]"


def rows(server, host: str, add: str | None = None):
    """The ledger app's rows at ``host`` on the shared HTTP site, after adding one if asked."""
    url = f"http://127.0.0.1:{server.http_port}/rows" + (f"?body={add}" if add else "")
    result = run(["curl", "-sS", "-f", "-H", f"Host: {host}", *(["-X", "POST"] if add else []), url])
    assert result.returncode == 0, result.stderr
    return None if add else json.loads(result.stdout)


def test_a_preview_seeded_from_a_backup_has_the_apps_rows_and_writes_only_its_own(server, tmp_path, python_image,
                                                                                  data_images, docker_client):
    parent, host = f"pvdb{WORKER}", f"ledger{WORKER}.zdd.test"
    assert server.install(parent, "--domain", f"http://{host}").returncode == 0
    assert server.zdd("db", "create", parent, "postgres", "--image", "zdd-base/postgres:15").returncode == 0
    repo = AppRepo(tmp_path / "work", server.repo(parent), template=LEDGER)
    commit(repo, "v1")
    pushed_live(repo.push("main"))
    for body in ("a", "b"):
        rows(server, host, add=body)
    assert server.zdd("backup", parent).returncode == 0
    rows(server, host, add="c")

    on = server.zdd("previews", parent, "on", "--domain", f"http://{{branch}}.pvdb{WORKER}.zdd.test",
                    "--seed-from-backup")
    assert on.returncode == 0, on.stderr
    expect(on.stdout, "databases from its latest backup")
    repo.git("checkout", "-q", "-b", "try-it")
    commit(repo, "try it")
    pushed = repo.push("try-it")
    expect(pushed.stderr, "postgres: filled from backup", "migrated: table rows is there",
           f"Preview of try-it: http://try-it.pvdb{WORKER}.zdd.test")
    preview_host = f"try-it.pvdb{WORKER}.zdd.test"
    assert rows(server, preview_host) == ["a", "b"], "the parent's rows as backed up"
    rows(server, preview_host, add="p")
    assert rows(server, preview_host) == ["a", "b", "p"]
    assert rows(server, host) == ["a", "b", "c"], "the parent's live data never touched"

    gone = repo.push(":try-it")
    expect(gone.stderr, "Removed the preview of try-it")
    assert not docker_client.volumes.list(filters={"name": f"zdd-{parent}--try-it-postgres-data"})
    assert rows(server, host) == ["a", "b", "c"]

    repo.git("checkout", "-q", "-b", "left-over")
    pushed_live(repo.push("left-over"))
    destroyed = server.zdd("destroy", parent, "--yes", "--storage")
    assert destroyed.returncode == 0, destroyed.stderr
    expect(destroyed.stdout, f"{parent}--left-over destroyed", f"{parent} destroyed")
    server.apps.remove(parent)
    assert not [name for name in os.listdir(server.root / "apps") if name.startswith(parent)]
