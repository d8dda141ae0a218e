"""Pushes and zdd commands over a real sshd, as the non-root deploy user that install.sh
--user set up, with keys that `zdd keys` manages: a key can push and run zdd for its apps,
and nothing else; the laptop client drives it all from a checkout."""

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import REPO, AppRepo, Server, expect, free_port, http_get, pushed_live, run, wait_for

pytestmark = pytest.mark.e2e
USER = "zdd-e2e-deploy"
LAPTOP_ZDD = REPO / ".venv" / "bin" / "zdd"  # `pip install` of this project, as on a laptop


class SshLab:
    """A zdd server in a folder the deploy user can reach, with sshd on a free loopback port
    reading the deploy user's real ~/.ssh/authorized_keys with StrictModes on."""

    def __init__(self, base: Path):
        self.base, self.server = base, Server(base, own_venv=True)  # the deploy user runs it
        self.keys = base / "keys"
        self.keys.mkdir()
        self.port = free_port()

    def key(self, name: str) -> Path:
        path = self.keys / name
        if not path.exists():
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@laptop", "-f", str(path)])
        return path

    def ssh(self, key: str) -> str:
        return (f"ssh -i {self.key(key)} -p {self.port} -o StrictHostKeyChecking=no -o IdentitiesOnly=yes "
                "-o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR")

    def as_key(self, key: str, *command: str, **kwargs) -> subprocess.CompletedProcess:
        return run([*self.ssh(key).split(), f"{USER}@127.0.0.1", *command], **kwargs)

    def url(self, app: str) -> str:
        return f"ssh://{USER}@127.0.0.1:{self.port}{self.server.repo(app)}"

    def add_key(self, name: str, *scope: str) -> subprocess.CompletedProcess:
        return self.server.zdd("keys", "add", name, *scope, input=self.key(name).with_suffix(".pub").read_text())

    def authorized_keys(self) -> Path:
        return Path(pwd.getpwnam(USER).pw_dir) / ".ssh" / "authorized_keys"


@pytest.fixture
def lab(docker_client):
    base = Path(tempfile.mkdtemp(prefix="zdd-ssh-", dir="/tmp"))
    base.chmod(0o755)
    lab = SshLab(base)
    lab.server.start_caddy()
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(lab.keys / "host")])
    (base / "sshd_config").write_text(
        f"Port {lab.port}\nListenAddress 127.0.0.1\nHostKey {lab.keys / 'host'}\nPidFile {base / 'sshd.pid'}\n"
        "StrictModes yes\nPasswordAuthentication no\nUsePAM no\n")
    os.makedirs("/run/sshd", exist_ok=True)
    sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(base / "sshd_config")],
                            stderr=open(base / "sshd.log", "wb"))
    yield lab
    sshd.terminate()
    sshd.wait(timeout=10)
    lab.server.stop_caddy()
    for app in lab.server.apps:
        for container in docker_client.containers.list(ignore_removed=True, all=True, filters={"label": f"zdd.app={app}"}):
            container.remove(force=True)
        for image in docker_client.images.list(filters={"label": f"zdd.app={app}"}):
            docker_client.images.remove(image.id, force=True)
    run(["userdel", "--remove", USER])
    shutil.rmtree(base, ignore_errors=True)


def install(lab: SshLab, app: str, site: str | None = None) -> str:
    site = site or f"http://127.0.0.1:{lab.server.unused_port()}"
    installed = lab.server.install(app, "--domain", site, "--user", USER)
    assert installed.returncode == 0, installed.stderr
    # This sshd runs without PAM, which refuses accounts with a locked password ('!'),
    # as useradd leaves them; '*' means "no password", and key login is allowed.
    run(["usermod", "-p", "*", USER])
    return site


def checkout(lab: SshLab, tmp_path: Path, app: str, key: str) -> AppRepo:
    repo = AppRepo(tmp_path / app, lab.server.repo(app))
    repo.git("remote", "set-url", "production", lab.url(app))
    repo.git("config", "core.sshCommand", lab.ssh(key))
    return repo


def laptop(repo: AppRepo, *args: str, key: str, lab: SshLab, **kwargs) -> subprocess.CompletedProcess:
    """The laptop's `zdd`, in the checkout: no server settings here, so it goes over ssh."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(repo.path.parent), "GIT_SSH_COMMAND": lab.ssh(key)}
    return run([str(LAPTOP_ZDD), *args], cwd=repo.path, env=env, **kwargs)


def test_push_over_ssh_as_a_deploy_user_without_root(lab, tmp_path):
    site = install(lab, "viassh")
    uid = pwd.getpwnam(USER).pw_uid
    assert uid != 0 and lab.server.repo("viassh").stat().st_uid == uid
    assert lab.add_key("dev", "--apps", "viassh").returncode == 0
    assert lab.add_key("ops", "--admin").returncode == 0
    repo = checkout(lab, tmp_path, "viassh", "dev")
    sha = repo.commit("v1")

    result = repo.push("main")

    assert result.returncode == 0, result.stderr
    expect(result.stderr, "remote: ==> Building image", f"is live at {site}: {sha[:12]}")
    assert wait_for(lambda: http_get(site) == (200, "v1"), timeout=10)
    history = lab.server.history("viassh")
    assert history[-1]["by"] == "dev" and history[-1]["outcome"] == "live", "the key's name is who deployed"
    app_dir = lab.server.root / "apps" / "viassh"
    assert {p.stat().st_uid for p in app_dir.rglob("*")} == {uid}, "state files belong to the deploy user"
    assert lab.server.zdd("env", "viassh", "set", "TOKEN=for-the-deploy-user").returncode == 0
    env_file = app_dir / "env.json"
    assert env_file.stat().st_uid == uid and env_file.stat().st_mode & 0o777 == 0o600, "root wrote it for the user"
    folder = lab.server.root / "storage" / "viassh" / "files"
    as_user = lab.as_key("ops", "zdd", "storage", "viassh", "add", f"{folder}:/files")
    assert as_user.returncode == 0, as_user.stderr
    assert folder.stat().st_uid == uid, "the deploy user can make storage folders"
    again = lab.server.install("viassh", "--domain", site, "--user", USER)
    assert again.returncode == 0 and "gave" not in again.stdout and "added" not in again.stdout

    install(lab, "viahost", "http://viahost.test")  # its first push links the host, as the deploy user
    hosted = checkout(lab, tmp_path, "viahost", "ops")
    hosted.commit("by host name")
    assert "is live at http://viahost.test" in hosted.push("main").stderr
    link = lab.server.root / "hosts" / "http" / "viahost.test"
    assert link.is_symlink() and link.lstat().st_uid == uid
    assert http_get(f"http://127.0.0.1:{lab.server.http_port}/", host="viahost.test") == (200, "by host name")


def test_keys_push_and_run_zdd_for_their_apps_and_nothing_else(lab, tmp_path, docker_client):
    site_a, site_b = install(lab, "keyed-a"), install(lab, "keyed-b")
    auth = lab.authorized_keys()
    auth.parent.mkdir(mode=0o700, exist_ok=True)
    hand = f"# the operator's own line\nno-pty {lab.key('ops').with_suffix('.pub').read_text()}"
    auth.write_text(hand)
    shutil.chown(auth.parent, USER)
    shutil.chown(auth, USER)

    assert lab.add_key("alice", "--apps", "keyed-a").returncode == 0
    assert lab.add_key("boss", "--admin").returncode == 0
    duplicate = lab.server.zdd("keys", "add", "again", "--apps", "keyed-a",
                               input=lab.key("alice").with_suffix(".pub").read_text())
    malformed = lab.server.zdd("keys", "add", "junk", "--apps", "keyed-a", input="ssh-ed25519 not-a-key\n")
    listed = lab.server.zdd("keys", "list")

    expect(duplicate.stderr, "already added, as 'alice'")
    expect(malformed.stderr, "damaged")
    expect(listed.stdout, "alice", "apps: keyed-a", "boss", "admin")
    assert auth.read_text().startswith(hand), "lines zdd did not write are kept"
    assert auth.stat().st_mode & 0o777 == 0o600 and auth.stat().st_uid == pwd.getpwnam(USER).pw_uid

    a = checkout(lab, tmp_path, "keyed-a", "alice")
    v1 = a.commit("v1")
    pushed_live(a.push("main"))
    v2 = a.commit("v2")
    pushed_live(a.push("main"))
    assert lab.server.history("keyed-a")[-1]["by"] == "alice"

    status = laptop(a, "status", key="alice", lab=lab)
    logs = laptop(a, "logs", "--tail", "3", key="alice", lab=lab)
    env = laptop(a, "env", "set", "GREETING=hello; world", key="alice", lab=lab)
    one_off = laptop(a, "run", "--", "/bin/busybox", "sh", "-c", 'echo "$GREETING"; exit 5', key="alice", lab=lab)
    apps = laptop(a, "apps", key="alice", lab=lab)
    rollback = laptop(a, "rollback", key="alice", lab=lab)

    assert status.returncode == 0 and f"keyed-a: {v2[:12]}" in status.stdout, status.stderr
    laptop_env = f"PATH=/usr/bin:/bin GIT_SSH_COMMAND='{lab.ssh('alice')}'"
    with_tty = run(["script", "-qec", f"{laptop_env} {LAPTOP_ZDD} run -- /bin/busybox tty", "/dev/null"],
                   cwd=a.path)
    expect(with_tty.stdout, "/dev/pts/")
    following = subprocess.Popen([str(LAPTOP_ZDD), "logs", "-f"], cwd=a.path, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True,
                                 env={"PATH": "/usr/bin:/bin", "GIT_SSH_COMMAND": lab.ssh("alice")})
    time.sleep(2)
    still_following = following.poll() is None
    following.terminate()
    assert still_following, following.communicate(timeout=10)
    following.wait(timeout=10)
    assert logs.returncode == 0, logs.stderr
    assert env.returncode == 0, env.stderr
    assert one_off.returncode == 5 and one_off.stdout == "hello; world\n", (one_off.stdout, one_off.stderr)
    expect(apps.stdout, "APP", "keyed-a")
    assert "keyed-b" not in apps.stdout, "an app key sees its own apps only"
    assert rollback.returncode == 0 and http_get(site_a) == (200, "v1"), rollback.stderr + rollback.stdout
    assert lab.server.status("keyed-a")["sha"] == v1

    b = checkout(lab, tmp_path, "keyed-b", "alice")
    b.commit("b1")
    refused = {
        "a shell": lab.as_key("alice"),
        "another program": lab.as_key("alice", "id"),
        "shell syntax": lab.as_key("alice", "zdd status keyed-a; id"),
        "another app's status": lab.as_key("alice", "zdd", "status", "keyed-b"),
        "an admin command": lab.as_key("alice", "zdd", "keys", "list"),
        "destroy": lab.as_key("alice", "zdd", "destroy", "keyed-a", "--yes"),
        "a path outside": lab.as_key("alice", "git-upload-pack", "'/etc'"),
        "unbalanced quotes": lab.as_key("alice", "zdd status 'keyed-a"),
        "a server-side command": lab.as_key("alice", "zdd", "init", "keyed-a", "--domain", ":9"),
        "the hook": lab.as_key("alice", "zdd", "hook", "keyed-a"),
        "another app in apps": lab.as_key("alice", "zdd", "apps", "--only", "keyed-b"),
        "another app's push": b.push("main"),
        "another app's fetch": run(["git", "ls-remote", "production"], cwd=b.path),
    }
    for what, result in refused.items():
        assert result.returncode != 0, what
        assert "refused" in result.stderr or "no shell" in result.stderr, (what, result.stderr)
        assert "uid=" not in result.stdout, what
    assert lab.server.status("keyed-a")["sha"] == v1 and http_get(site_a) == (200, "v1"), "destroy did not run"
    assert not lab.server.history("keyed-b"), "nothing reached keyed-b"

    dropped = subprocess.Popen([*lab.ssh("alice").split(), "-T", f"{USER}@127.0.0.1", "zdd", "run", "keyed-a", "--",
                                "/bin/busybox", "sleep", "60"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    runs = {"label": ["zdd.app=keyed-a", "zdd.process=run"]}
    assert wait_for(lambda: docker_client.containers.list(ignore_removed=True, filters=runs), timeout=20)
    dropped.kill()  # the laptop vanishes: no pty, so sshd sends no SIGHUP
    dropped.wait(timeout=10)
    assert wait_for(lambda: not docker_client.containers.list(ignore_removed=True, all=True, filters=runs), timeout=20), \
        "a one-off run of a dropped SSH session is removed"

    local = free_port()
    admin_port = lab.server.admin.split(":")[1]
    tunnel = subprocess.Popen([*lab.ssh("alice").split(), "-N", "-L", f"{local}:127.0.0.1:{admin_port}",
                               f"{USER}@127.0.0.1"], stderr=subprocess.PIPE)
    time.sleep(2)
    forwarded = http_get(f"http://127.0.0.1:{local}/config/", timeout=3)
    tunnel.terminate()
    assert forwarded[0] != 200, "no port forwarding"

    b.git("config", "core.sshCommand", lab.ssh("boss"))
    pushed_live(b.push("main"))
    assert http_get(site_b) == (200, "b1")
    as_admin = lab.as_key("boss", "zdd", "apps")
    assert as_admin.returncode == 0 and "keyed-a" in as_admin.stdout and "keyed-b" in as_admin.stdout
    assert lab.as_key("boss", "zdd", "render").returncode == 0

    removed = lab.server.zdd("keys", "remove", "alice")
    assert removed.returncode == 0, removed.stderr
    assert auth.read_text().startswith(hand), "still kept after a removal"
    assert lab.as_key("alice", "zdd", "status", "keyed-a").returncode == 255, "the removed key is refused"
