"""Anything that fails before the switch leaves the old version serving, untouched."""

import pytest

from conftest import app_dockerfile, expect, http_get

pytestmark = pytest.mark.e2e


def deploy_v1(server, app, site, repo) -> str:
    v1 = repo.commit("v1")
    result = repo.push("main")
    assert result.returncode == 0 and http_get(site + "/") == (200, "v1"), result.stderr
    return v1


def assert_v1_untouched(server, app, site, v1, caddyfile_before, docker_client):
    assert http_get(site + "/") == (200, "v1")
    assert server.status(app)["sha"] == v1
    assert server.caddyfile.read_text() == caddyfile_before
    containers = docker_client.containers.list(ignore_removed=True, all=True, filters={"label": f"zdd.app={app}"})
    assert [c.name for c in containers] == [server.status(app)["container"]]
    assert server.server_ref(app, "refs/heads/main") == v1, "the server's main shows what is live"


def test_failing_health_check_keeps_v1_and_shows_why(server, new_app, docker_client):
    app, site, repo = new_app
    v1 = deploy_v1(server, app, site, repo)
    caddyfile = server.caddyfile.read_text()

    repo.commit("v2", dockerfile=app_dockerfile(healthcheck="fail"))
    result = repo.push("main")

    output = result.stderr
    expect(output, "zdd: error: the new container's HEALTHCHECK reports unhealthy")
    expect(output, "its health checks:", "404")
    expect(output, "removed the new container")
    expect(output, f"Still serving {v1[:12]} (refs/heads/main)")
    expect(output, "main on the server moved back to")
    assert_v1_untouched(server, app, site, v1, caddyfile, docker_client)
    history = server.zdd("history", app, "--json").stdout
    assert '"outcome": "failed"' in history

    v3 = repo.commit("v3")
    retry = repo.push("main")
    assert retry.returncode == 0, retry.stderr
    assert http_get(site + "/") == (200, "v3") and server.status(app)["sha"] == v3


def test_http_probe_that_never_passes_times_out_and_keeps_v1(server, new_app, docker_client):
    app, site, repo = new_app
    v1 = deploy_v1(server, app, site, repo)
    caddyfile = server.caddyfile.read_text()

    repo.commit("v2", dockerfile=app_dockerfile(healthcheck=None),
                zdd_toml='health_path = "/nothing-here"\nhealth_timeout = 3\nhealth_interval = 0.2\n')
    result = repo.push("main")

    expect(result.stderr, "Waiting for health (GET /nothing-here on 127.0.0.1:")
    expect(result.stderr, "zdd: error: the new container was not healthy within 3s")
    assert_v1_untouched(server, app, site, v1, caddyfile, docker_client)


def test_container_that_exits_fails_fast_with_its_log(server, new_app, docker_client):
    app, site, repo = new_app
    v1 = deploy_v1(server, app, site, repo)
    caddyfile = server.caddyfile.read_text()

    repo.commit("v2", dockerfile=app_dockerfile(cmd="echo cannot connect to database; exit 3"))
    result = repo.push("main")

    expect(result.stderr, "zdd: error: the new container stopped (exit code 3)")
    expect(result.stderr, "cannot connect to database")
    assert_v1_untouched(server, app, site, v1, caddyfile, docker_client)


def test_build_failure_keeps_v1(server, new_app, docker_client):
    app, site, repo = new_app
    v1 = deploy_v1(server, app, site, repo)
    caddyfile = server.caddyfile.read_text()

    repo.commit("v2", dockerfile="FROM scratch\nCOPY no-such-file /x\n")
    result = repo.push("main")

    expect(result.stderr, "zdd: error: the image did not build:")
    expect(result.stderr, "no-such-file")
    assert_v1_untouched(server, app, site, v1, caddyfile, docker_client)


def test_bad_zdd_toml_is_refused_naming_the_key(server, new_app, docker_client):
    app, site, repo = new_app
    v1 = deploy_v1(server, app, site, repo)
    caddyfile = server.caddyfile.read_text()

    repo.commit("v2", zdd_toml="privileged = true\n")
    result = repo.push("main")

    expect(result.stderr, "zdd: error: zdd.toml: 'privileged' is not allowed")
    assert_v1_untouched(server, app, site, v1, caddyfile, docker_client)


def test_first_deploy_without_dockerfile_leaves_nothing_and_says_so(server, new_app, docker_client):
    app, site, repo = new_app
    repo.commit("v1")
    repo.git("rm", "-q", "Dockerfile")
    repo.git("commit", "-q", "-m", "no Dockerfile")

    result = repo.push("main")

    expect(result.stderr, "has no Dockerfile at its root")
    expect(result.stderr, "Nothing is serving this app: this was its first deploy")
    expect(result.stderr, "main on the server removed, so a re-push retries")
    assert server.status(app)["sha"] is None
    assert docker_client.containers.list(ignore_removed=True, all=True, filters={"label": f"zdd.app={app}"}) == []
    assert server.server_ref(app, "refs/heads/main") is None


def test_an_app_that_listens_on_another_port_is_named_as_such(server, new_app, docker_client):
    app, site, repo = new_app
    v1 = deploy_v1(server, app, site, repo)
    caddyfile = server.caddyfile.read_text()

    repo.commit("v2", dockerfile=app_dockerfile(healthcheck=None, cmd="exec /bin/busybox httpd -f -p 9000 -h /www"),
                zdd_toml="health_timeout = 3\n")
    result = repo.push("main")

    expect(result.stderr, "nothing listened on its port 8000, from the image's EXPOSE",
           "set `port` in zdd.toml")
    assert_v1_untouched(server, app, site, v1, caddyfile, docker_client)


def test_healthy_then_crashing_right_after_the_switch_goes_back_to_v1(server, new_app, docker_client):
    app, site, repo = new_app
    v1 = deploy_v1(server, app, site, repo)
    caddyfile = server.caddyfile.read_text()

    crash_soon = "/bin/busybox httpd -p 8000 -h /www; /bin/busybox sleep 4; echo out of memory; exit 137"
    repo.commit("v2", dockerfile=app_dockerfile(cmd=crash_soon), zdd_toml="watch_seconds = 10\n")
    result = repo.push("main")

    expect(result.stderr, "Watching the new container for 10s",
           "zdd: error: the new container crashed", "traffic went back to the previous version",
           "out of memory")
    assert_v1_untouched(server, app, site, v1, caddyfile, docker_client)


def test_a_build_that_would_fill_the_disk_is_refused_before_it_starts(server, new_app, docker_client):
    app, site, repo = new_app
    v1 = deploy_v1(server, app, site, repo)
    caddyfile = server.caddyfile.read_text()
    settings = server.root / "settings.json"
    original = settings.read_text()
    settings.write_text(original.replace('"caddy_admin"', '"min_free_mb": 1000000000, "caddy_admin"'))
    try:
        repo.commit("v2")
        result = repo.push("main")
    finally:
        settings.write_text(original)

    expect(result.stderr, "zdd: error: not enough disk space to build:", "MB free in")
    assert "Building image" not in result.stderr
    assert_v1_untouched(server, app, site, v1, caddyfile, docker_client)
