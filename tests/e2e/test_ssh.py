"""A push over real SSH, as a non-root deploy user that install.sh --user set up."""

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import AppRepo, Server, expect, free_port, http_get, run, wait_for

pytestmark = pytest.mark.e2e
USER = "zdd-e2e-deploy"


@pytest.fixture
def ssh_server():
    """A zdd server in a folder the deploy user can reach, with sshd on a free loopback port."""
    base = Path(tempfile.mkdtemp(prefix="zdd-ssh-", dir="/tmp"))
    base.chmod(0o755)
    server = Server(base)
    server.start_caddy()
    keys = base / "keys"
    keys.mkdir()
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "host")])
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "client")])
    port = free_port()
    (base / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {keys / 'host'}\nPidFile {base / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {keys}/authorized_%u\nStrictModes no\nPasswordAuthentication no\nUsePAM no\n")
    shutil.copy(keys / "client.pub", keys / f"authorized_{USER}")
    os.makedirs("/run/sshd", exist_ok=True)
    sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(base / "sshd_config")],
                            stderr=open(base / "sshd.log", "wb"))
    ssh = (f"ssh -i {keys / 'client'} -p {port} -o StrictHostKeyChecking=no "
           "-o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR")
    yield server, port, ssh
    sshd.terminate()
    sshd.wait(timeout=10)
    server.stop_caddy()
    for container in server.client.containers.list(all=True, filters={"label": "zdd.app=viassh"}):
        container.remove(force=True)
    for image in server.client.images.list(filters={"label": "zdd.app=viassh"}):
        server.client.images.remove(image.id, force=True)
    run(["userdel", "--remove", USER])
    shutil.rmtree(base, ignore_errors=True)


def test_push_over_ssh_as_a_deploy_user_without_root(ssh_server, tmp_path, docker_client):
    server, port, ssh = ssh_server
    server.client = docker_client
    site = f"http://127.0.0.1:{server.unused_port()}"
    installed = server.install("viassh", "--domain", site, "--user", USER)
    assert installed.returncode == 0, installed.stderr
    expect(installed.stdout, f"created user {USER}", f"git remote add production ssh://{USER}@")
    # This sshd runs without PAM, which refuses accounts with a locked password ('!'),
    # as useradd leaves them; '*' means "no password", and key login is allowed.
    run(["usermod", "-p", "*", USER])
    uid = pwd.getpwnam(USER).pw_uid
    assert uid != 0 and server.repo("viassh").stat().st_uid == uid

    repo = AppRepo(tmp_path / "work", server.repo("viassh"))
    repo.git("remote", "set-url", "production", f"ssh://{USER}@127.0.0.1:{port}{server.repo('viassh')}")
    sha = repo.commit("v1")
    result = subprocess.run(["git", "push", "production", "main"], cwd=repo.path, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "GIT_SSH_COMMAND": ssh})

    assert result.returncode == 0, result.stderr
    expect(result.stderr, "remote: ==> Building image", f"is live at {site}: {sha[:12]}")
    assert wait_for(lambda: http_get(site) == (200, "v1"), timeout=10)
    history = server.history("viassh")
    assert history[-1]["by"] == USER and history[-1]["outcome"] == "live"
    app_dir = server.root / "apps" / "viassh"
    assert {p.stat().st_uid for p in app_dir.rglob("*")} == {uid}, "state files belong to the deploy user"
    assert server.zdd("env", "viassh", "set", "TOKEN=for-the-deploy-user").returncode == 0
    env_file = app_dir / "env.json"
    assert env_file.stat().st_uid == uid and env_file.stat().st_mode & 0o777 == 0o600, "root wrote it for the user"
    again = server.install("viassh", "--domain", site, "--user", USER)
    assert again.returncode == 0 and "gave" not in again.stdout and "added" not in again.stdout
