"""Odd but legitimate pushes deploy; oversized ones are refused before the build."""

import os

import pytest

from conftest import expect, http_get

pytestmark = pytest.mark.e2e


def test_force_push_to_an_older_commit_deploys_it_from_its_image(server, new_app):
    app, site, repo = new_app
    v1 = repo.commit("v1")
    assert repo.push("main").returncode == 0
    repo.commit("v2")
    assert repo.push("main").returncode == 0

    result = repo.push("--force", f"{v1}:refs/heads/main")

    expect(result.stderr, "exists: reusing it, no build", f"is live at {site}: {v1[:12]}")
    assert http_get(site) == (200, "v1")


def test_non_utf8_paths_and_messages_and_submodules_deploy(server, new_app):
    app, site, repo = new_app
    repo.commit("v1")
    with open(os.path.join(os.fsencode(repo.path), b"www/caf\xe9.txt"), "wb") as handle:
        handle.write(b"latin-1 name\n")
    repo.write(".gitmodules", '[submodule "lib"]\n\tpath = lib\n\turl = https://example.invalid/lib.git\n')
    repo.git("add", "-A")
    repo.git("update-index", "--add", "--cacheinfo", f"160000,{repo.head()},lib")
    repo.git("-c", "i18n.commitEncoding=latin1", "commit", "-q", "-m", "caf\udce9".encode(
        "utf-8", "surrogateescape").decode("latin-1"))
    sha = repo.head()

    result = repo.push("main")

    assert result.returncode == 0, result.stderr
    expect(result.stderr, "submodules are not part of the build context", f"is live at {site}: {sha[:12]}")
    assert http_get(site) == (200, "v1")


def test_an_oversized_build_context_is_refused(server, new_app, docker_client):
    app, site, repo = new_app
    v1 = repo.commit("v1")
    assert repo.push("main").returncode == 0
    settings = server.root / "settings.json"
    original = settings.read_text()
    settings.write_text(original.replace('"caddy_admin"', '"max_context_mb": 1, "caddy_admin"'))
    try:
        (repo.path / "big.bin").write_bytes(os.urandom(1_500_000))
        repo.commit("v2")
        result = repo.push("main")
    finally:
        settings.write_text(original)

    expect(result.stderr, "zdd: error: the build context is", "over the 1 MB limit")
    assert server.status(app)["sha"] == v1 and http_get(site) == (200, "v1")
    assert len(docker_client.containers.list(ignore_removed=True, all=True, filters={"label": f"zdd.app={app}"})) == 1
