"""Builds that today's Dockerfiles need: BuildKit syntax, zdd.toml's [build], secrets that
reach the build and nothing else, a bounded build cache. Real pushes, a real engine."""

import io
import json
import os
import re
import secrets
import subprocess
import tarfile
import time

import pytest

from conftest import app_dockerfile, expect, http_get, pushed_live

pytestmark = pytest.mark.e2e

BUILD_TOML = """watch_seconds = 0.5
[build]
dockerfile = "docker/Dockerfile"
target = "runtime"
args = { APP_ENV = "production" }
secrets = ["INDEX_TOKEN"]
"""

# FROM scratch with the static busybox: every RUN is exec-form, through busybox's sh.
BUILDKIT_DOCKERFILE = """FROM scratch AS base
COPY busybox /bin/busybox
COPY --chmod=751 www/index.html /www/index.html
COPY deps.txt /deps.txt
ARG APP_ENV=unset
RUN --mount=type=cache,id=cache-NONCE,target=/cache ["/bin/busybox", "sh", "-c", \
"if [ -e /cache/warm ]; then echo CACHE-HIT; else echo CACHE-MISS; echo warm > /cache/warm; fi"]
RUN --mount=type=secret,id=INDEX_TOKEN ["/bin/busybox", "sh", "-c", \
"n=$(/bin/busybox wc -c < /run/secrets/INDEX_TOKEN); echo secret-bytes=$n > /www/secret.txt"]
COPY . /context
RUN ["/bin/busybox", "sh", "-c", "mode=$(/bin/busybox stat -c %a /www/index.html); \
ignored=$([ -e /context/local-notes.txt ] && echo present || echo absent); \
echo mode=$mode env=$APP_ENV ignored=$ignored > /www/info.txt; /bin/busybox rm -rf /context"]

FROM base AS runtime
EXPOSE 8000
CMD ["/bin/busybox", "httpd", "-f", "-p", "8000", "-h", "/www"]

FROM runtime AS never-built
RUN ["/bin/busybox", "false"]
"""


NONCES: dict = {}  # a working copy's own cache mount id


def printed(output: str, word: str) -> bool:
    """Whether a build step printed ``word`` as its output line (``#6 0.25 WORD``), not merely
    showed it in the step's command."""
    return re.search(rf"^remote:\s+#\d+ \d+\.\d+ {word}\s*$", output, re.M) is not None


def buildkit_commit(repo, message: str, deps: str = "requests==1\n", body: str | None = None) -> str:
    """A commit of the BuildKit app; its cache mount and deps are the working copy's own, so
    that no earlier run's cache answers for it."""
    nonce = NONCES.setdefault(repo.path, secrets.token_hex(6))
    repo.write("docker/Dockerfile", BUILDKIT_DOCKERFILE.replace("NONCE", nonce))
    repo.write("deps.txt", f"# {nonce}\n{deps}")
    repo.write(".dockerignore", "local-notes.txt\n")
    repo.write("local-notes.txt", "kept out of the image\n")
    return repo.commit(message, body=body, zdd_toml=BUILD_TOML)


def test_a_dockerfile_with_buildkit_syntax_builds_with_args_target_and_a_secret_it_keeps_out(
        server, new_app, docker_client):
    app, site, repo = new_app
    token = f"tok-{secrets.token_hex(12)}"
    assert server.zdd("env", app, "set", f"INDEX_TOKEN={token}").returncode == 0

    sha = buildkit_commit(repo, "bk1")
    first = repo.push("main")
    pushed_live(first)
    expect(first.stderr, "with BuildKit")
    assert printed(first.stderr, "CACHE-MISS") and not printed(first.stderr, "CACHE-HIT"), first.stderr
    assert http_get(site + "/") == (200, "bk1")
    assert http_get(site + "/info.txt") == (200, "mode=751 env=production ignored=absent\n"), \
        "COPY --chmod, the build arg and .dockerignore"
    assert http_get(site + "/secret.txt") == (200, f"secret-bytes={len(token)}\n"), "the secret reached RUN"

    buildkit_commit(repo, "bk2", deps="requests==2\n")  # above the cached RUN: it runs again
    second = repo.push("main")
    pushed_live(second)
    assert printed(second.stderr, "CACHE-HIT"), second.stderr
    assert http_get(site + "/") == (200, "bk2")

    image = f"zdd-{app}:{sha}"
    assert_secret_absent(token, docker_client, image, first.stderr + second.stderr, server)


def assert_secret_absent(token: str, docker_client, image: str, output: str, server) -> None:
    assert token not in output
    history = subprocess.run(["docker", "history", "--no-trunc", image], capture_output=True, text=True)
    assert history.returncode == 0 and token not in history.stdout
    assert token not in json.dumps(docker_client.images.get(image).attrs)
    saved = io.BytesIO(b"".join(docker_client.images.get(image).save()))
    with tarfile.open(fileobj=saved) as archive:  # every layer, the config and the manifest
        for member in archive.getmembers():
            data = archive.extractfile(member)
            if data is None:
                continue
            blob = data.read()
            assert token.encode() not in blob, member.name
            if tarfile.is_tarfile(io.BytesIO(blob)):
                with tarfile.open(fileobj=io.BytesIO(blob)) as layer:
                    for item in layer.getmembers():
                        content = layer.extractfile(item)
                        assert content is None or token.encode() not in content.read(), item.name
    for folder, _, files in os.walk(server.root / "apps"):
        for name in files:
            if name != "env.json":  # where the operator set it, 0600
                path = os.path.join(folder, name)
                assert token not in open(path, errors="replace").read(), path


REFUSED = [  # (zdd.toml's [build], what the one line says)
    ('[build]\nnetwork = "host"\n', "[build] 'network' is not allowed"),
    ('[build]\ndockerfile = "../Dockerfile"\n', "build.dockerfile must be a path inside the repository"),
    ('[build]\ndockerfile = "/etc/passwd"\n', "build.dockerfile must be a path inside the repository"),
    ('[build]\ndockerfile = "linked/Dockerfile"\n', "has no file linked/Dockerfile"),  # a link to ../Dockerfile
    ('[build]\nsecrets = ["NOT_SET_ANYWHERE"]\n', "the build secret NOT_SET_ANYWHERE is not set"),
    ('[build]\nargs = { "bad name" = "x" }\n', "build.args: 'bad name' is not a valid name"),
    ('[build]\ntarget = "a b"\n', "build.target must be a stage name"),
]


def test_refused_build_settings_say_why_in_one_line_and_v1_keeps_serving(server, new_app, docker_client):
    app, site, repo = new_app
    v1 = repo.commit("v1")
    pushed_live(repo.push("main"))
    (repo.path / "linked").mkdir()
    os.symlink("../Dockerfile", repo.path / "linked" / "Dockerfile")
    for toml, message in REFUSED:
        repo.commit("v2", zdd_toml="watch_seconds = 0.5\n" + toml)
        refused = repo.push("main")
        errors = [line for line in refused.stderr.splitlines() if "zdd: error:" in line]
        assert len(errors) == 1 and message in errors[0], refused.stderr
        assert "Building image" not in refused.stderr, "refused before the build starts"
        assert http_get(site + "/") == (200, "v1") and server.status(app)["sha"] == v1
        left = docker_client.containers.list(all=True, ignore_removed=True, filters={"label": f"zdd.app={app}"})
        assert [c.name for c in left] == [server.status(app)["container"]]


def build_cache_mb() -> float:
    """BuildKit's cache on this engine, every entry (cache mounts included), in MB."""
    shown = subprocess.run(["docker", "system", "df", "--format", "{{.Type}}\t{{.Size}}"],
                           capture_output=True, text=True, check=True).stdout
    size = next(line.split("\t")[1] for line in shown.splitlines() if line.startswith("Build Cache"))
    number, unit = float(size.rstrip("kMGTB")), size.lstrip("0123456789.")
    return number * {"B": 1e-6, "kB": 1e-3, "MB": 1, "GB": 1e3, "TB": 1e6}[unit]


def test_the_build_cache_is_pruned_to_its_limit_after_a_build(server, new_app):
    app, site, repo = new_app
    settings_path = server.root / "settings.json"
    before = settings_path.read_text()
    settings_path.write_text(json.dumps({**json.loads(before), "build_cache_mb": 20}))
    # a stage the image uses one small file of: its 60 MB layer lives in the build cache only
    scratchpad = ('FROM scratch AS scratchpad\nCOPY busybox /bin/busybox\nCOPY www/index.html /version.txt\n'
                  'RUN ["/bin/busybox", "dd", "if=/dev/zero", "of=/blob", "bs=1M", "count=60"]\n'
                  'RUN ["/bin/busybox", "sh", "-c", "/bin/busybox wc -c < /blob > /size.txt"]\n\n')
    start = "FROM scratch\nCOPY busybox /bin/busybox\n"
    big = scratchpad + start + "COPY --from=scratchpad /size.txt /size.txt\n" + app_dockerfile().removeprefix(start)
    try:
        for body in ("c1", "c2"):
            repo.commit(body, dockerfile=big)
            pushed_live(repo.push("main"))
            assert http_get(site + "/") == (200, body)
            # each build left a 60 MB layer in the cache; other tests' builds may add a few MB
            assert build_cache_mb() < 45, build_cache_mb()
    finally:
        settings_path.write_text(before)


def test_cache_mounts_unused_for_cache_mount_days_are_dropped(server, new_app):
    """Docker 20.10's BuildKit counts a cache mount as 0 B, so the size limit never drops one."""
    app, site, repo = new_app
    assert server.zdd("env", app, "set", "INDEX_TOKEN=t0ken-value").returncode == 0
    settings_path = server.root / "settings.json"
    before = settings_path.read_text()
    settings_path.write_text(json.dumps({**json.loads(before), "cache_mount_days": 1 / 86400}))  # 1 s
    try:
        buildkit_commit(repo, "m1")
        first = repo.push("main")
        pushed_live(first)
        assert printed(first.stderr, "CACHE-MISS"), first.stderr
        time.sleep(3)  # the mount is unused for longer than cache_mount_days now
        repo.write("extra.txt", "below the cached RUN: only COPY . /context runs again\n")
        buildkit_commit(repo, "m2", body="m1")
        second = repo.push("main")
        pushed_live(second)
        assert not printed(second.stderr, "CACHE-MISS") and not printed(second.stderr, "CACHE-HIT"), second.stderr
        buildkit_commit(repo, "m3", deps="requests==3\n")
        third = repo.push("main")
        pushed_live(third)
        assert printed(third.stderr, "CACHE-MISS"), "dropped after m2's build: " + third.stderr
    finally:
        settings_path.write_text(before)
