"""Living with a server: several apps, env, concurrent pushes, killed deploys, retention."""

import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

import pytest

from conftest import AppRepo, app_dockerfile, expect, http_get, pushed_live, run, wait_for
from loadclient import KeepAliveClient

pytestmark = pytest.mark.e2e

ENV_CGI = """#!/bin/busybox sh
echo "Content-Type: text/plain"
echo ""
echo "token=$SECRET_TOKEN"
echo "weird=$WEIRD"
"""


def containers_of(docker_client, app):
    return docker_client.containers.list(ignore_removed=True, all=True, filters={"label": f"zdd.app={app}"})


def test_two_apps_deploy_fail_roll_back_and_are_destroyed_independently(server, tmp_path, docker_client):
    site_a, site_b = server.add_app("duo-a"), server.add_app("duo-b")
    repo_a = AppRepo(tmp_path / "a", server.repo("duo-a"), health_interval="1s")
    repo_b = AppRepo(tmp_path / "b", server.repo("duo-b"), health_interval="1s")
    repo_a.commit("a1")
    assert repo_a.push("main").returncode == 0
    repo_b.commit("b1")
    assert repo_b.push("main").returncode == 0
    repo_a.commit("a2")
    assert repo_a.push("main").returncode == 0
    b_container = server.status("duo-b")["container"]

    repo_b.commit("b2", dockerfile=app_dockerfile(healthcheck="fail"))
    assert "zdd: error" in repo_b.push("main").stderr
    rollback = server.zdd("rollback", "duo-a")

    assert rollback.returncode == 0, rollback.stderr
    assert http_get(site_a) == (200, "a1") and http_get(site_b) == (200, "b1")
    assert server.status("duo-b")["container"] == b_container
    listed = server.zdd("apps")
    assert listed.returncode == 0, listed.stderr
    apps = listed.stdout
    expect(apps, "duo-a", "duo-b", "healthy")

    destroyed = server.zdd("destroy", "duo-b", "--yes")

    assert destroyed.returncode == 0, destroyed.stderr
    assert http_get(site_a) == (200, "a1")
    assert http_get(site_b)[0] != 200
    assert containers_of(docker_client, "duo-b") == []
    assert docker_client.images.list(filters={"label": "zdd.app=duo-b"}) == []
    assert "duo-b" not in server.caddyfile.read_text() and "duo-a" in server.caddyfile.read_text()
    assert not server.repo("duo-b").exists()


def test_env_reaches_the_container_and_never_the_output(server, new_app):
    app, site, repo = new_app
    secret = "s3cr3t-Value-91f2"
    repo.write("www/cgi-bin/env", ENV_CGI)
    (repo.path / "www/cgi-bin/env").chmod(0o755)
    repo.commit("v1")
    assert repo.push("main").returncode == 0

    weird = "a\"b'c; $(id) `id` {import x}"
    set_env = server.zdd("env", app, "set", f"SECRET_TOKEN={secret}", "MODE=prod", f"WEIRD={weird}")
    listed = server.zdd("env", app, "list")
    restart = server.zdd("restart", app)

    assert http_get(site + "/cgi-bin/env") == (200, f"token={secret}\nweird={weird}\n"), "passed as data"
    env_file = server.root / "apps" / app / "env.json"
    assert env_file.stat().st_mode & 0o777 == 0o600
    expect(listed.stdout, "MODE=*****", "SECRET_TOKEN=*****", "WEIRD=*****")
    assert server.zdd("env", app, "list", "--show").stdout.count(secret) == 1
    repo.commit("v2")
    push = repo.push("main")
    history = server.zdd("history", app, "--json").stdout + server.zdd("status", app, "--json").stdout
    for output in (set_env.stdout, set_env.stderr, listed.stdout, restart.stdout, restart.stderr,
                   push.stdout, push.stderr, history):
        assert secret not in output
    assert http_get(site + "/cgi-bin/env")[1].startswith(f"token={secret}\n")
    assert server.zdd("env", app, "unset", "SECRET_TOKEN").returncode == 0
    assert server.zdd("restart", app).returncode == 0
    assert http_get(site + "/cgi-bin/env")[1].startswith("token=\n")


def read_until_deploying(stream) -> str:
    """A deploy's output up to its "==> Deploying" line: said once it holds the app's deploy lock."""
    said = ""
    while "==> Deploying" not in said:
        line = stream.readline()
        assert line, said
        said += line
    return said


def test_two_pushes_at_once_land_in_order_with_nothing_failed(server, new_app):
    app, site, repo = new_app
    repo.commit("v1")
    assert repo.push("main").returncode == 0
    clients = [KeepAliveClient(site, retrying=False) for _ in range(4)]
    for client in clients:
        client.start()
    v2 = repo.commit("v2", dockerfile=app_dockerfile(start_delay=3))
    repo.git("checkout", "-q", "-b", "next")
    v3 = repo.commit("v3")
    repo.git("tag", "v3")

    first = repo.push_started(f"{v2}:refs/heads/main")
    said = read_until_deploying(first.stderr)
    second = repo.push("v3")
    first_err = said + first.communicate(timeout=120)[1]
    for client in clients:
        client.stop()

    expect(second.stderr, "another deploy of this app is running", f"is live at {site}: {v3[:12]}")
    expect(first_err, f"is live at {site}: {v2[:12]}")
    assert [c.failures for c in clients] == [[]] * 4
    assert server.status(app)["sha"] == v3 and http_get(site) == (200, "v3")
    outcomes = [(e["sha"], e["outcome"]) for e in server.history(app)]
    assert outcomes[-2:] == [(v2, "live"), (v3, "live")]


def test_a_deploy_killed_midway_is_cleaned_up_by_the_next_push(server, new_app, docker_client):
    app, site, repo = new_app
    v1 = repo.commit("v1")
    assert repo.push("main").returncode == 0
    repo.commit("v2", dockerfile=app_dockerfile(start_delay=30))
    push = repo.push_started("main")
    assert wait_for(lambda: len(containers_of(docker_client, app)) == 2, timeout=60)
    time.sleep(0.5)
    killed = run(["pkill", "-KILL", "-f", f"zdd hook {app}$"])
    push.communicate(timeout=60)

    assert killed.returncode == 0
    assert len(containers_of(docker_client, app)) == 2, "the killed deploy left its container"
    assert http_get(site) == (200, "v1")

    v3 = repo.commit("v3")
    result = repo.push("main")

    expect(result.stderr, "left over from an interrupted deploy", f"is live at {site}: {v3[:12]}")
    assert v1 != v3
    assert [c.name for c in containers_of(docker_client, app)] == [server.status(app)["container"]]
    assert http_get(site) == (200, "v3")


def test_retention_keeps_the_newest_images_and_rebuilds_a_pruned_one(server, tmp_path, docker_client):
    site = server.add_app("keep-two")
    assert server.install("keep-two", "--domain", site, "--keep", "2").returncode == 0
    repo = AppRepo(tmp_path / "work", server.repo("keep-two"))
    shas = []
    for version in ("v1", "v2", "v3", "v4"):
        shas.append(repo.commit(version))
        result = repo.push("main")
        assert result.returncode == 0, result.stderr

    images = {i.labels["zdd.sha"] for i in docker_client.images.list(filters={"label": "zdd.app=keep-two"})}
    assert images == {shas[3], shas[2]}
    expect(result.stderr, "Pruned 1 old image(s) beyond the newest 2")
    kept = {e["sha"]: e["image_kept"] for e in server.history("keep-two")}
    assert kept == {shas[0]: False, shas[1]: False, shas[2]: True, shas[3]: True}

    rollback = server.zdd("rollback", "keep-two", shas[0])

    assert rollback.returncode == 0, rollback.stderr
    expect(rollback.stdout, "was pruned: rebuilding it from git")
    assert http_get(site) == (200, "v1")
    images = {i.labels["zdd.sha"] for i in docker_client.images.list(filters={"label": "zdd.app=keep-two"})}
    assert images == {shas[0], shas[3]}, "the live one and the previous one stay"


def test_logs_show_the_live_container_and_destroy_asks_first(server, new_app):
    app, site, repo = new_app
    repo.commit("v1", dockerfile=app_dockerfile(cmd="echo booting v1; exec /bin/busybox httpd -f -p 8000 -h /www"))
    assert repo.push("main").returncode == 0

    logs = server.zdd("logs", app, "--tail", "5")
    unconfirmed = server.zdd("destroy", app)

    assert logs.returncode == 0 and "booting v1" in logs.stdout, logs.stderr
    assert unconfirmed.returncode != 0
    expect(unconfirmed.stderr, "needs confirmation", "--yes")
    assert http_get(site) == (200, "v1")


def test_a_push_during_a_rollback_waits_for_it_then_deploys(server, new_app):
    app, site, repo = new_app
    repo.commit("v1", dockerfile=app_dockerfile(start_delay=3))
    assert repo.push("main").returncode == 0
    repo.commit("v2")
    assert repo.push("main").returncode == 0
    rollback = subprocess.Popen([str(server.root / "bin" / "zdd"), "rollback", app],
                                stdout=subprocess.PIPE, text=True)
    v3 = repo.commit("v3")
    said = read_until_deploying(rollback.stdout)  # v1 takes 3 s to start: the lock stays held that long at least

    push = repo.push("main")
    rolled = said + rollback.communicate(timeout=120)[0]

    assert rollback.returncode == 0 and "Rolling back to" in rolled
    expect(push.stderr, "another deploy of this app is running", f"is live at {site}: {v3[:12]}")
    assert http_get(site) == (200, "v3")
    assert [e["outcome"] for e in server.history(app)][-2:] == ["live", "live"]


class Requests(threading.Thread):
    """GETs in a loop until stopped, each on a new connection: what each got (status, body)."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.seen, self.halt = url, Counter(), threading.Event()

    def run(self):
        while not self.halt.is_set():
            status, body = http_get(self.url)
            self.seen[(status, body.strip()[:60] if status != 503 else "maintenance page")] += 1
            time.sleep(0.02)

    def stop(self) -> Counter:
        self.halt.set()
        self.join(timeout=10)
        return self.seen


def test_maintenance_answers_503_at_once_without_a_reload_while_deploys_go_on(server, new_app, tmp_path):
    app, site, repo = new_app
    other_site = server.add_app("bystander")
    other = AppRepo(tmp_path / "other", server.repo("bystander"))
    other.commit("other")
    pushed_live(other.push("main"))
    repo.commit("v1")
    pushed_live(repo.push("main"))
    load, bystander = Requests(site), Requests(other_site)
    load.start()
    bystander.start()

    on = server.zdd("maintenance", app, "on", "--message", "Back at <b>14:00</b>")
    assert on.returncode == 0, on.stderr
    expect(on.stdout, "maintenance on", "zdd's page", "503")
    assert "reload" not in on.stdout.lower(), on.stdout
    request = urllib.request.Request(site + "/anything?x=1")
    with pytest.raises(urllib.error.HTTPError) as answered:
        urllib.request.urlopen(request, timeout=5)
    page = answered.value.read().decode()
    assert answered.value.code == 503 and answered.value.headers["Retry-After"] == "120"
    assert "Back at &lt;b&gt;14:00&lt;/b&gt;" in page, page
    expect(server.zdd("status", app).stdout, "MAINTENANCE ON since")

    repo.write("maintenance.html", "<p>our own page</p>\n")
    repo.commit("v2")
    pushed_live(repo.push("main"))  # deploys (and their health checks) go on behind the page
    assert http_get(site)[0] == 503
    custom = server.zdd("maintenance", app, "on")
    assert "the repository's maintenance.html" in custom.stdout, custom.stdout
    assert http_get(site) == (503, "<p>our own page</p>\n")
    off = server.zdd("maintenance", app, "off")
    assert "maintenance off, the app serves" in off.stdout, off.stdout
    assert http_get(site) == (200, "v2")
    seen, untouched = load.stop(), bystander.stop()

    assert set(seen) <= {(200, "v1"), (200, "v2"), (503, "maintenance page")}, seen
    assert seen[(503, "maintenance page")] > 5 and seen[(200, "v1")] > 5, seen
    assert set(untouched) == {(200, "other")}, untouched
    refused = server.zdd("maintenance", app, "off", "--message", "x")
    assert refused.returncode == 1 and "--message goes with `on`" in refused.stderr
