"""Release, workers, singletons, storage, scale and `zdd run` on busybox apps: what fails keeps
the old version serving with nothing left over; bad input gets one line and changes nothing."""

import signal
import subprocess

import pytest

from conftest import app_dockerfile, expect, http_get, pushed_live, run, wait_for

pytestmark = pytest.mark.e2e
SLEEPER = "/bin/busybox sleep 3600"
FAST = "worker_check_seconds = 0.5\nwatch_seconds = 0.5\n"


def toml(release: str | None = None, worker: str = SLEEPER, clock: str | None = SLEEPER, extra: str = "") -> str:
    lines = [FAST + extra]
    if release:
        lines.append(f"release = {release!r}")
    lines.append("[processes]")
    lines.append(f"worker = {worker!r}")
    if clock:
        lines.append(f"clock = {{ command = {clock!r}, overlap = false }}")
    return "\n".join(lines) + "\n"


def containers_of(docker_client, app) -> dict[str, str]:
    """name -> status of every container of the app."""
    found = docker_client.containers.list(ignore_removed=True, all=True, filters={"label": f"zdd.app={app}"})
    return {c.name: c.status for c in found}


def deploy_v1(server, app, site, repo, **options) -> str:
    v1 = repo.commit("v1", dockerfile=app_dockerfile(healthcheck=None), zdd_toml=toml(**options))
    pushed_live(repo.push("main"))
    assert http_get(site + "/") == (200, "v1")
    return v1


def test_a_failing_release_keeps_the_old_version_and_leaves_nothing(server, new_app, docker_client):
    app, site, repo = new_app
    v1 = deploy_v1(server, app, site, repo, release="/bin/busybox echo migrated")
    before = containers_of(docker_client, app)
    assert sorted(before.values()) == ["running"] * 3, "web, worker and clock"

    repo.commit("v2", dockerfile=app_dockerfile(healthcheck=None),
                zdd_toml=toml(release='/bin/busybox sh -c "echo step one; echo no such table; exit 4"'))
    result = repo.push("main")

    expect(result.stderr, "Running the release command (/bin/busybox sh -c", "step one", "no such table",
           "zdd: error: the release command exited with code 4 (its last line: 'no such table'): nothing was "
           "switched", f"Still serving {v1[:12]}", "main on the server moved back to")
    assert "Starting" not in result.stderr, "nothing of the new version started"
    assert containers_of(docker_client, app) == before
    assert http_get(site + "/") == (200, "v1") and server.server_ref(app, "refs/heads/main") == v1


def test_a_release_that_runs_too_long_is_stopped_and_removed(server, new_app, docker_client):
    app, site, repo = new_app
    deploy_v1(server, app, site, repo, clock=None)
    before = containers_of(docker_client, app)

    repo.commit("v2", dockerfile=app_dockerfile(healthcheck=None),
                zdd_toml=toml(release="/bin/busybox sleep 60", clock=None, extra="release_timeout = 1\n"))
    result = repo.push("main")

    expect(result.stderr, "zdd: error: the release command did not finish within 1s and was stopped")
    assert containers_of(docker_client, app) == before
    assert http_get(site + "/") == (200, "v1")


def test_a_worker_that_fails_its_check_keeps_the_old_web_and_workers(server, new_app, docker_client):
    app, site, repo = new_app
    v1 = deploy_v1(server, app, site, repo)
    before = containers_of(docker_client, app)

    repo.commit("v2", dockerfile=app_dockerfile(healthcheck=None),
                zdd_toml=toml(worker='/bin/busybox sh -c "echo cannot reach the queue; exit 3"'))
    result = repo.push("main")

    expect(result.stderr, "zdd: error: worker (", "it stopped (exit code 3) soon after it started",
           "cannot reach the queue", f"Still serving {v1[:12]}")
    assert containers_of(docker_client, app) == before
    assert http_get(site + "/") == (200, "v1")


def test_a_failing_singleton_gets_its_predecessor_back(server, new_app, docker_client):
    app, site, repo = new_app
    deploy_v1(server, app, site, repo)
    before = containers_of(docker_client, app)

    repo.commit("v2", dockerfile=app_dockerfile(healthcheck=None), zdd_toml=toml(clock="/bin/busybox false"))
    result = repo.push("main")

    expect(result.stderr, "Replacing clock (overlap = false: the old stops first)", "zdd: error: clock (",
           "started the old clock container")
    assert containers_of(docker_client, app) == before, "the old clock runs again, the new one is gone"
    assert http_get(site + "/") == (200, "v1")


def test_a_worker_gated_by_the_image_healthcheck_is_told_how_to_opt_out(server, new_app, docker_client):
    app, site, repo = new_app
    deploy_v1(server, app, site, repo, clock=None)
    before = containers_of(docker_client, app)

    repo.commit("v2", dockerfile=app_dockerfile(healthcheck="ok"), zdd_toml=toml(clock=None, extra="health_timeout = 5\n"))
    refused = repo.push("main")
    repo.commit("v3", dockerfile=app_dockerfile(healthcheck="ok"),
                zdd_toml=toml(clock=None).replace(f"worker = {SLEEPER!r}",
                                                  f"worker = {{ command = {SLEEPER!r}, healthcheck = false }}"))
    accepted = repo.push("main")

    expect(refused.stderr, "set healthcheck = false on processes.worker in zdd.toml")
    pushed_live(accepted)  # first: its output says why, if it did not deploy
    assert containers_of(docker_client, app) != before
    assert http_get(site + "/") == (200, "v3")


def test_scale_storage_and_run_on_busybox(server, new_app, docker_client):
    app, site, repo = new_app
    folder = server.root / "storage" / app / "files"
    assert server.zdd("storage", app, "add", f"{folder}:/files").returncode == 0
    repo.write("www/cgi-bin/note", '#!/bin/busybox sh\necho "Content-Type: text/plain"\necho ""\n'
                                   "/bin/busybox cat /files/note\n")
    (repo.path / "www/cgi-bin/note").chmod(0o755)
    deploy_v1(server, app, site, repo, clock=None)

    piped = subprocess.run([str(server.root / "bin" / "zdd"), "run", app, "-e", "GREETING=hi", "--",
                            "/bin/busybox", "sh", "-c", "echo $GREETING; /bin/busybox tee /files/note"],
                           input="from stdin\n", capture_output=True, text=True, timeout=60)
    exit_code = server.zdd("run", app, "--", "/bin/busybox", "sh", "-c", "exit 7")
    with_tty = run(["script", "-qec", f"{server.root}/bin/zdd run {app} -- /bin/busybox tty", "/dev/null"])
    no_tty = server.zdd("run", app, "--", "/bin/busybox", "tty")

    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == "hi\nfrom stdin\n"
    assert http_get(site + "/cgi-bin/note") == (200, "from stdin\n"), "web reads what the run wrote"
    assert (folder / "note").read_text() == "from stdin\n"
    assert exit_code.returncode == 7
    expect(with_tty.stdout, "/dev/pts/")
    expect(no_tty.stdout, "not a tty")

    hung = subprocess.Popen([str(server.root / "bin" / "zdd"), "run", app, "--", "/bin/busybox", "sleep", "60"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run_filter = {"label": [f"zdd.app={app}", "zdd.process=run"]}
    assert wait_for(lambda: docker_client.containers.list(ignore_removed=True, filters=run_filter), timeout=20)
    restarted = server.zdd("restart", app)
    assert restarted.returncode == 0, "a one-off run neither blocks a deploy nor is removed by one"
    assert docker_client.containers.list(ignore_removed=True, filters=run_filter)
    hung.send_signal(signal.SIGHUP)  # what a dropped SSH session sends
    assert hung.wait(timeout=20) == 128 + signal.SIGHUP
    assert wait_for(lambda: not docker_client.containers.list(ignore_removed=True, all=True, filters=run_filter), timeout=10)

    assert server.zdd("scale", app, "worker=3").returncode == 0
    workers = {"label": [f"zdd.app={app}", "zdd.process=worker"]}
    assert len(docker_client.containers.list(ignore_removed=True, filters=workers)) == 3
    listed = server.zdd("apps")
    assert listed.returncode == 0, listed.stderr
    expect(listed.stdout, "APP", "PROCESSES", "web=1 worker=3")
    v2 = repo.commit("v2", dockerfile=app_dockerfile(healthcheck=None), zdd_toml=toml(clock=None))
    pushed_live(repo.push("main"))
    assert {c.labels["zdd.sha"] for c in docker_client.containers.list(ignore_removed=True, filters=workers)} == {v2}
    assert len(docker_client.containers.list(ignore_removed=True, all=True, filters=workers)) == 3, "the count is kept across deploys"
    assert server.zdd("scale", app, "worker=0").returncode == 0
    assert docker_client.containers.list(ignore_removed=True, all=True, filters=workers) == []
    assert (folder / "note").read_text() == "from stdin\n", "storage survives deploys"

    destroyed = server.zdd("destroy", app, "--yes", "--storage")
    assert destroyed.returncode == 0, destroyed.stderr
    expect(destroyed.stdout, f"removed folder {folder}")
    assert not folder.exists()


def test_bad_input_gets_one_line_and_changes_nothing(server, new_app):
    app, site, repo = new_app
    deploy_v1(server, app, site, repo, clock=None)
    app_dir = server.root / "apps" / app
    cases = [
        (("storage", app, "add", "/etc:/data"), "only folders under"),
        (("storage", app, "add", "data:/proc/x"), "would shadow /, /proc, /sys or /dev"),
        (("storage", app, "add", "data:/var/run/docker.sock"), "the Docker socket"),
        (("storage", app, "add", f"{server.root}/storage/../../etc:/data"), "only folders under"),
        (("storage", app, "remove", "nothing"), "no storage named or mounted at 'nothing'"),
        (("scale", app, "mailer=2"), f"{app} has no process 'mailer': its zdd.toml declares web, worker"),
        (("scale", app, "worker=many"), "invalid count 'many' for worker"),
        (("scale", app, "web=2"), "web runs as one container per server"),
        (("run", app, "--process", "nope"), f"{app} has no process 'nope'"),
        (("run", app), "give the command to run after --"),
        (("logs", app, "--process", "nope"), f"{app} has no process 'nope'"),
    ]
    for args, message in cases:
        result = server.zdd(*args)
        assert result.returncode != 0, args
        assert result.stderr.count("\n") == 1 and message in result.stderr, (args, result.stderr)
    assert not (app_dir / "storage.json").exists() and not (app_dir / "scale.json").exists()
    assert http_get(site + "/") == (200, "v1")
