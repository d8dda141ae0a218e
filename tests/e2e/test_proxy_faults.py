"""Caddy side: restarts, a stopped Caddy, a new address, a config Caddy rejects."""

import pytest

from conftest import AppRepo, expect, http_get, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def two_deploys(server, new_app):
    """An app deployed twice, so its live slot is green (the flag file is absent)."""
    app, site, repo = new_app
    repo.commit("v1")
    assert repo.push("main").returncode == 0
    v2 = repo.commit("v2")
    assert repo.push("main").returncode == 0
    assert server.status(app)["slot"] == "green"
    return app, site, repo, v2


def test_a_restarted_caddy_serves_every_app_on_its_live_version(server, two_deploys):
    app, site, repo, v2 = two_deploys
    server.stop_caddy()
    assert http_get(site)[0] == 0
    server.start_caddy()
    assert wait_for(lambda: http_get(site) == (200, "v2"))


def test_a_stopped_caddy_fails_the_deploy_before_the_switch(server, two_deploys, docker_client):
    app, site, repo, v2 = two_deploys
    repo.commit("v3")
    server.stop_caddy()
    try:
        result = repo.push("main")
    finally:
        server.start_caddy()

    expect(result.stderr, f"zdd: error: Caddy's admin endpoint at {server.admin} does not answer")
    assert server.status(app)["sha"] == v2 and server.server_ref(app, "refs/heads/main") == v2
    assert wait_for(lambda: http_get(site) == (200, "v2"))
    assert len(docker_client.containers.list(ignore_removed=True, all=True, filters={"label": f"zdd.app={app}"})) == 1


def test_a_new_address_takes_effect_at_once_without_a_redeploy(server, two_deploys):
    app, site, repo, v2 = two_deploys
    container = server.status(app)["container"]
    new_site = f"http://127.0.0.1:{server.unused_port()}"

    result = server.install(app, "--domain", new_site)

    assert result.returncode == 0, result.stderr
    expect(result.stdout, "Caddyfile changed: validated and reloaded")
    assert http_get(new_site) == (200, "v2") and http_get(site)[0] == 0
    assert server.status(app)["container"] == container
    assert server.install(app, "--domain", site).returncode == 0


def test_a_config_caddy_rejects_keeps_the_old_one_and_says_why(server, tmp_path, docker_client):
    template = server.root / "templates" / "Caddyfile.j2"
    original = template.read_text()
    caddyfile_before = server.caddyfile.read_text()
    site = server.add_app("rejected")
    repo = AppRepo(tmp_path / "work", server.repo("rejected"))
    repo.commit("v1")
    template.write_text(original.replace("\tadmin {{ admin }}\n", "\tadmin {{ admin }}\n\tno_such_option on\n"))
    try:
        result = repo.push("main")
    finally:
        template.write_text(original)

    expect(result.stderr, "zdd: error: Caddy rejected the config:", "no_such_option")
    assert server.caddyfile.read_text() == caddyfile_before
    assert not list(server.caddyfile.parent.glob(".*zdd-new")), "no half-written file is left"
    assert docker_client.containers.list(ignore_removed=True, all=True, filters={"label": "zdd.app=rejected"}) == []
    assert server.zdd("apps").returncode == 0
    retry = repo.push("main")
    assert retry.returncode == 0 and http_get(site) == (200, "v1"), retry.stderr


def test_a_caddyfile_edited_by_hand_is_never_overwritten_silently(server, two_deploys, tmp_path):
    app, site, repo, v2 = two_deploys
    edit = "\n# the operator's note, added by hand\n"
    server.caddyfile.write_text(server.caddyfile.read_text() + edit)
    try:
        repo.commit("v3")
        routine = repo.push("main")
        newcomer_site = server.add_app("newcomer")
        newcomer = AppRepo(tmp_path / "newcomer", server.repo("newcomer"))
        newcomer.commit("n1")
        refused = newcomer.push("main")

        assert routine.returncode == 0 and http_get(site) == (200, "v3"), routine.stderr
        expect(routine.stderr, "Caddyfile was edited by hand: left as it is")
        expect(refused.stderr, "was edited by hand since zdd wrote it", "zdd render --force")
        assert server.caddyfile.read_text().endswith(edit)
        assert http_get(newcomer_site)[0] != 200 and http_get(site) == (200, "v3")
    finally:
        forced = server.zdd("render", "--force")
    assert forced.returncode == 0, forced.stderr
    assert edit not in server.caddyfile.read_text()
    retry = newcomer.push("main")
    assert retry.returncode == 0 and http_get(newcomer_site) == (200, "n1"), retry.stderr


def test_the_first_render_takes_over_an_existing_caddyfile_and_keeps_a_backup(server, new_app):
    app, site, repo = new_app
    repo.commit("v1")
    assert repo.push("main").returncode == 0
    backup = server.caddyfile.with_name("Caddyfile.before-zdd")
    assert backup.exists(), "the session's first deploy replaced the Caddyfile it found"
    assert backup.read_text() == f"{{\n\tadmin {server.admin}\n}}\n"
