"""Real parts: a Docker engine, a Caddy on free loopback ports, install.sh and git push."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import docker
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))  # helpers shared with the benchmark and the demo
from probes import free_port, http_get, wait_for  # noqa: E402,F401 (the tests import them from here)

CREATED: list = []  # every Server of this test process, in order
SHARED_VENV = Path("/nonexistent")  # set by pytest_configure: in this run's temporary folder


@pytest.hookimpl(trylast=True)  # after pytest's own, which makes the temporary folders' factory
def pytest_configure(config):
    """One venv for zdd that the run's servers share: in the folder of the run that parallel
    test processes share (pytest keeps the last three runs' folders, then removes them)."""
    global SHARED_VENV
    base = config._tmp_path_factory.getbasetemp()
    SHARED_VENV = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "zdd-venv"
BUSYBOX = Path("/bin/busybox")


def run(cmd, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kwargs)


class Server:
    """A zdd server in a temporary folder, set up by install.sh, with its own Caddy."""

    def __init__(self, base: Path, caddy_bin: Path = Path("/usr/bin/caddy"), own_venv: bool = False):
        """``own_venv``: zdd in a venv of its own in the server's root, as on a real server;
        else in one venv that the run's servers share (installing zdd costs seconds of CPU)."""
        self.base = base
        self.root = base / "zdd"
        self.caddyfile = base / "caddy" / "Caddyfile"
        self.admin = f"127.0.0.1:{free_port()}"
        self.http_port, self.https_port = free_port(), free_port()  # the shared sites of host-named apps
        self.env = {**os.environ, "ZDD_ROOT": str(self.root), "ZDD_CADDYFILE": str(self.caddyfile),
                    "ZDD_CADDY_ADMIN": self.admin, "ZDD_HTTP_PORT": str(self.http_port),
                    "ZDD_HTTPS_PORT": str(self.https_port), "ZDD_TLS": "internal"}
        if not own_venv:
            self.env["ZDD_VENV"] = str(SHARED_VENV)
        self.caddy_bin = base / "caddy-bin" / "caddy"  # install.sh records the caddy on PATH
        self.caddy_bin.parent.mkdir(parents=True, exist_ok=True)
        self.caddy_bin.unlink(missing_ok=True)
        self.caddy_bin.symlink_to(caddy_bin)
        self.env["PATH"] = f"{self.caddy_bin.parent}:{os.environ['PATH']}"
        self.caddy = None
        self.apps: list[str] = []
        self.ports_given: set[int] = set()
        self.shared = False  # the session's server: its timer stays until the session ends
        self.inside: list[str] = []  # a prefix for its commands: nsenter into an engine lab's network
        CREATED.append(self)

    def remove_timer(self) -> None:
        """The minute timer install.sh set up for this server (see install.sh: its cron file)."""
        digest = hashlib.md5(str(self.root).encode()).hexdigest()[:8]
        Path(f"/etc/cron.d/zdd-backups-{digest}").unlink(missing_ok=True)

    def start_caddy(self) -> None:
        self.caddyfile.parent.mkdir(parents=True, exist_ok=True)
        if not self.caddyfile.exists():
            self.caddyfile.write_text(f"{{\n\tadmin {self.admin}\n}}\n")
        caddy_home = self.base / "caddy-home"
        caddy_home.mkdir(exist_ok=True)
        env = {**os.environ, "HOME": str(caddy_home), "XDG_DATA_HOME": str(caddy_home),
               "XDG_CONFIG_HOME": str(caddy_home)}
        self.caddy = subprocess.Popen(
            [*self.inside, str(self.caddy_bin), "run", "--config", str(self.caddyfile), "--adapter", "caddyfile"],
            stdout=open(self.base / "caddy.log", "ab"), stderr=subprocess.STDOUT, env=env)
        assert wait_for(lambda: self.get(f"http://{self.admin}/config/")[0] == 200), "Caddy did not start"

    def get(self, url: str, host: str | None = None) -> tuple[int, str]:
        """probes.http_get from where this server's Caddy and apps listen."""
        return http_get(url, host=host)

    def caddy_loads(self) -> int:
        """How many configs this Caddy has loaded: its first, then one per reload."""
        log = (self.base / "caddy.log").read_text()
        return sum(1 for line in log.splitlines()
                   if '"msg":"load complete"' in line or '"msg":"serving initial configuration"' in line)

    def stop_caddy(self) -> None:
        if self.caddy:
            self.caddy.terminate()
            self.caddy.wait(timeout=30)
            self.caddy = None

    def unused_port(self) -> int:
        """A free port that no app of this server has as its address yet (an app that never
        deployed has nothing listening on its address, so free_port alone could pick it)."""
        while (port := free_port()) in self.ports_given:
            pass
        self.ports_given.add(port)
        return port

    def install(self, app: str, *args: str) -> subprocess.CompletedProcess:
        result = run([*self.inside, "bash", str(REPO / "install.sh"), app, *args], env=self.env)
        if result.returncode == 0 and app not in self.apps:
            self.apps.append(app)
        return result

    def add_app(self, app: str, port: int | None = None) -> str:
        """install.sh APP with a free loopback site address; returns the site URL."""
        site = f"http://127.0.0.1:{port or self.unused_port()}"
        result = self.install(app, "--domain", site)
        assert result.returncode == 0, result.stderr + result.stdout
        return site

    def zdd(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        return run([*self.inside, str(self.root / "bin" / "zdd"), *args], env={"PATH": "/usr/bin:/bin"}, input=input)

    def status(self, app: str) -> dict:
        result = self.zdd("status", app, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def timer_log(self) -> str:
        """What the minute timer that install.sh set up (cron here) has logged."""
        log = self.root / "logs" / "backup-due.log"
        return log.read_text() if log.exists() else ""

    def history(self, app: str) -> list[dict]:
        result = self.zdd("history", app, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def repo(self, app: str) -> Path:
        return self.root / f"{app}.git"

    def server_ref(self, app: str, ref: str) -> str | None:
        result = run(["git", "--git-dir", str(self.repo(app)), "rev-parse", "--verify", "-q", ref])
        return result.stdout.strip() or None


@pytest.fixture(scope="session")
def docker_client():
    client = docker.from_env()
    client.ping()
    return client


@pytest.fixture(scope="session")
def server(tmp_path_factory, docker_client):
    assert BUSYBOX.exists(), "tests/run installs busybox-static"
    server = Server(tmp_path_factory.mktemp("server"))
    server.shared = True
    server.start_caddy()
    yield server
    server.stop_caddy()
    for app in server.apps:
        for container in docker_client.containers.list(ignore_removed=True, all=True, filters={"label": f"zdd.app={app}"}):
            container.remove(force=True)
        for image in docker_client.images.list(name=f"zdd-{app}"):
            docker_client.images.remove(image.id, force=True)


@pytest.fixture(scope="module", autouse=True)
def timers_go_with_their_module():
    """Each server's timer runs `zdd backup-due` every minute: the servers a test file made
    lose theirs when the file is done, so that finished files cost the rest nothing."""
    first = len(CREATED)
    yield
    for server in CREATED[first:]:
        if not server.shared:
            server.remove_timer()


@pytest.fixture(scope="session", autouse=True)
def no_backup_timer_left(tmp_path_factory):
    """install.sh adds a cron line per server for scheduled backups: when this test process
    ends, remove those of its servers (under its temporary folder) and of servers whose
    folder is gone (another process's live servers keep theirs)."""
    yield
    base = str(tmp_path_factory.getbasetemp())
    for line in Path("/etc/cron.d").glob("zdd-backups-*"):
        zdd = re.search(r"test -x (\S+)", line.read_text())
        if zdd and (zdd[1].startswith(base) or not Path(zdd[1]).exists()):
            line.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def python_image():
    """zdd-base/python:bookworm, made once per machine (about 40 s) by scripts/make-python-image."""
    result = run([str(REPO / "scripts" / "make-python-image")])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="session")
def data_images():
    """zdd-base/postgres:15 and zdd-base/redis:7, made from Debian's packages by scripts/make-data-images."""
    result = run([str(REPO / "scripts" / "make-data-images")])
    assert result.returncode == 0, result.stdout + result.stderr


class AppRepo:
    """A developer's working copy of a busybox app, with `production` pointing at the server."""

    def __init__(self, path: Path, remote: Path, template: Path | None = None, health_interval: str | None = None):
        """A busybox app, or a copy of the app in ``template`` (e.g. examples/notes);
        ``health_interval``: its HEALTHCHECK's (see app_dockerfile)."""
        self.path, self.health_interval = path, health_interval
        if template:
            shutil.copytree(template, path)
        else:
            path.mkdir(parents=True)
            shutil.copy(BUSYBOX, path / "busybox")
            # a short watch keeps the suite quick; tests of the watch set their own zdd.toml
            self.write("zdd.toml", "watch_seconds = 0.5\n")
        self.git("init", "-q", "-b", "main")
        self.git("config", "user.email", "dev@example.com")
        self.git("config", "user.name", "Dev")
        self.git("config", "core.compression", "0")  # each app commits busybox: no zlib over it at every push
        self.git("remote", "add", "production", str(remote))

    def git(self, *args: str) -> subprocess.CompletedProcess:
        result = run(["git", *args], cwd=self.path)
        assert result.returncode == 0, result.stderr
        return result

    def write(self, name: str, text: str) -> None:
        (self.path / name).parent.mkdir(parents=True, exist_ok=True)
        (self.path / name).write_text(text)

    def commit(self, message: str, *, body: str | None = None, dockerfile: str | None = None,
               zdd_toml: str | None = None) -> str:
        self.write("www/index.html", body if body is not None else message)
        self.write("www/cgi-bin/slow", SLOW_CGI.format(body=body if body is not None else message))
        (self.path / "www/cgi-bin/slow").chmod(0o755)
        self.write("Dockerfile", dockerfile or app_dockerfile(health_interval=self.health_interval))
        if zdd_toml is not None:
            self.write("zdd.toml", zdd_toml)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").stdout.strip()

    def push(self, *refspecs: str) -> subprocess.CompletedProcess:
        return run(["git", "push", "production", *refspecs], cwd=self.path)

    def push_started(self, *refspecs: str) -> subprocess.Popen:
        """A push left running (its output in .stderr), for what happens meanwhile."""
        return subprocess.Popen(["git", "push", "production", *refspecs], cwd=self.path,
                                stderr=subprocess.PIPE, text=True)


SLOW_CGI = """#!/bin/busybox sh
/bin/busybox sleep 2
echo "Content-Type: text/plain"
echo ""
echo "slow {body}"
"""


def app_dockerfile(start_delay: float = 0, healthcheck: str | None = "ok", cmd: str | None = None,
                   health_interval: str | None = None) -> str:
    """A FROM-scratch busybox web server on port 8000; healthcheck 'ok', 'fail' or None.

    zdd's gate runs the HEALTHCHECK command itself, so a passing one gets Docker's 30 s
    default interval: Docker's own checks (an exec each) would only load the machine. A
    failing one, and Swarm's apps (Swarm waits for Docker's first check), say "1s"."""
    serve = "/bin/busybox httpd -f -p 8000 -h /www"
    start = cmd or (f"/bin/busybox sleep {start_delay}; exec {serve}" if start_delay else f"exec {serve}")
    lines = [
        "FROM scratch",
        "COPY busybox /bin/busybox",
        "COPY www /www",
        "EXPOSE 8000",
    ]
    if healthcheck:
        path = "/" if healthcheck == "ok" else "/missing"
        interval = health_interval or ("30s" if healthcheck == "ok" else "1s")
        lines.append(f"HEALTHCHECK --interval={interval} --timeout=2s --retries=3 CMD "
                     f'["/bin/busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8000{path}"]')
    lines.append(f'CMD ["/bin/busybox", "sh", "-c", "{start}"]')
    return "\n".join(lines) + "\n"


@pytest.fixture
def new_app(server, tmp_path, request):
    """Set up a fresh app on the server and a working copy for it: returns (name, site, repo)."""
    counter = getattr(server, "_count", 0) + 1
    server._count = counter
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:]  # apps of parallel test processes never clash
    name = f"t{counter}w{worker}-{request.node.name[5:18].replace('_', '-').strip('-')}".rstrip("-")
    site = server.add_app(name)
    return name, site, AppRepo(tmp_path / "work", server.repo(name))


@pytest.fixture(autouse=True)
def destroy_apps_when_done(server):
    """Every app a test installs is destroyed after it: running apps slow every later test."""
    before = len(server.apps)
    yield
    for app in server.apps[before:]:
        server.zdd("destroy", app, "--yes", "--storage")


def pushed_live(result: subprocess.CompletedProcess) -> None:
    """A push whose deploy went live: git exits 0 even when the post-receive hook fails."""
    assert result.returncode == 0 and "is live at" in result.stderr, result.stderr


def expect(output: str, *snippets: str) -> None:
    """Assert every snippet is in the output, showing the whole output when one is not."""
    for snippet in snippets:
        assert snippet in output, f"{snippet!r} not in output:\n{output}"


@pytest.fixture
def bucket():
    """An S3-compatible server on loopback (moto) that checks credentials, with one user
    allowed everything and a bucket: yields its URL and that user's key."""
    import boto3
    from moto.server import ThreadedMotoServer
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    url = f"http://{host}:{port}"
    # moto keeps its users, buckets and count of calls per process, not per server: start afresh,
    # and check credentials after the set-up's 4 calls
    for path, body in (("reset", b""), ("reset-auth", b"4")):
        urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/{path}", data=body, method="POST",
                                                      headers={"Content-Type": "text/plain"}))
    iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1", aws_access_key_id="setup",
                       aws_secret_access_key="setup")
    iam.create_user(UserName="zdd")
    key = iam.create_access_key(UserName="zdd")["AccessKey"]
    policy = iam.create_policy(PolicyName="all", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"}]}))["Policy"]["Arn"]
    iam.attach_user_policy(UserName="zdd", PolicyArn=policy)
    boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=key["AccessKeyId"],
                 aws_secret_access_key=key["SecretAccessKey"]).create_bucket(Bucket="offsite")
    yield url, key["AccessKeyId"], key["SecretAccessKey"]
    moto.stop()
