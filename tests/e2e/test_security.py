"""Nobody let in: loopback only, no privileges from a push, secrets never printed."""


import pytest

from conftest import AppRepo, app_dockerfile, expect, http_get

pytestmark = pytest.mark.e2e
SECRET = "planted-Secret-7c1e55"


def test_the_container_gets_loopback_only_and_no_privilege(server, new_app, docker_client):
    app, site, repo = new_app
    repo.commit("v1")
    assert repo.push("main").returncode == 0

    container = docker_client.containers.get(server.status(app)["container"])
    host = container.attrs["HostConfig"]
    assert host["Privileged"] is False and not host.get("CapAdd") and not host.get("Devices")
    assert not host.get("Binds") and container.attrs["Mounts"] == []
    assert host["NetworkMode"] == "default"
    bindings = [b for port in host["PortBindings"].values() for b in port]
    assert bindings and all(b["HostIp"] == "127.0.0.1" for b in bindings)
    for key in ("volumes", "privileged", "network_mode", "cap_add", "devices"):
        repo.commit(f"try {key}", zdd_toml=f"{key} = true\n")
        refused = repo.push("main")
        expect(refused.stderr, f"zdd.toml: '{key}' is not allowed")
    assert http_get(site) == (200, "v1")


def test_a_planted_secret_appears_in_no_output_history_or_error(server, new_app):
    app, site, repo = new_app
    outputs = []
    for args in (("env", app, "set", f"API_KEY={SECRET}"), ("env", app, "set", SECRET),
                 ("env", app, "set", f"BAD-KEY={SECRET}"), ("env", app, "list")):
        result = server.zdd(*args)
        outputs += [result.stdout, result.stderr]
    assert "no '='" in outputs[3] and "invalid variable name 'BAD-KEY'" in outputs[5]
    repo.commit("v1")
    outputs.append(repo.push("main").stderr)
    repo.commit("v2", dockerfile=app_dockerfile(healthcheck="fail"))
    outputs.append(repo.push("main").stderr)
    for args in (("status", app, "--json"), ("history", app, "--json"), ("apps", "--json"), ("restart", app)):
        result = server.zdd(*args)
        outputs += [result.stdout, result.stderr]
    files = [p.read_text(errors="replace") for p in (server.root / "apps" / app).rglob("*")
             if p.is_file() and p.name != "env.json"]

    assert not [text for text in outputs + files if SECRET in text]
    assert (server.root / "apps" / app / "env.json").stat().st_mode & 0o777 == 0o600
    assert SECRET in server.zdd("env", app, "list", "--show").stdout


def test_two_apps_pushed_at_once_both_go_live(server, tmp_path):
    sites = {name: server.add_app(name) for name in ("race-a", "race-b")}
    repos = {name: AppRepo(tmp_path / name, server.repo(name)) for name in sites}
    for name, repo in repos.items():
        repo.commit(name)
    pushes = [repo.push_started("main") for repo in repos.values()]
    errors = [push.communicate(timeout=300)[1] for push in pushes]

    assert [push.returncode for push in pushes] == [0, 0], errors
    for name, site in sites.items():
        assert http_get(site) == (200, name), errors  # git exits 0 even when the deploy failed: its output says why
        assert name in server.caddyfile.read_text()
