"""The ways of deploying the same two versions (bodies v1 and v2) that the benchmark compares.

Each case's ``setup`` puts v1 (then, for zdd, v2) live behind Caddy, unmeasured; each
``next_deploy`` returns the body the deploy will bring and the deploy action, which
blocks for as long as the deploy's own command does; ``details`` then says what the
deploy tool recorded about it (zdd's step durations), outside the measured time.
"""

import json
import time
from pathlib import Path

import lab

BENCH = Path(__file__).resolve().parent
VERSIONS = ("v1", "v2")


def other(body: str) -> str:
    return VERSIONS[1 - VERSIONS.index(body)]


def _script(*args) -> dict:
    done = lab.run([str(a) for a in args])
    if done.returncode != 0:
        raise RuntimeError(f"{Path(args[0]).name} failed: {done.stderr.strip() or done.stdout.strip()}")
    return {}


class Baseline:
    def details(self) -> dict:
        return {}


class Naive(Baseline):
    """Stop the old container, start the new one on the same port (bench/naive-deploy.sh)."""

    title = "naive: stop old, start new"

    def __init__(self, env, images: dict[str, str]):
        self.env, self.images = env, images
        self.name = f"{lab.PREFIX}-naive"
        self.port = lab.free_port()
        self.caddy = lab.Caddy(env.folder / "caddy-naive")
        self.site = f"http://127.0.0.1:{lab.free_port()}"
        self.live = VERSIONS[0]

    def setup(self) -> None:
        lab.run_container(self.env.docker, self.images[self.live], self.name, self.port)
        self.caddy.start(lab.site_block(self.site, self.port))
        self.env.processes.append(self.caddy)
        self.env.wait_serving(self.site, self.live)

    def next_deploy(self):
        self.live = other(self.live)
        return self.live, lambda: _script(BENCH / "naive-deploy.sh", self.name, self.images[self.live], self.port)


class Blog(Baseline):
    """The seed blog's blue/green script: fixed ports, Docker healthy, sed, caddy reload, stop."""

    def __init__(self, env, images: dict[str, str], variant: str):
        self.env, self.images = env, images
        self.title = "blog: blue/green + caddy reload" + (", app ignores SIGTERM" if variant else "")
        self.name = f"{lab.PREFIX}-blog{variant}"
        self.ports = {"blue": lab.free_port(), "green": lab.free_port()}
        self.caddy = lab.Caddy(env.folder / f"caddy-blog{variant}")
        self.site = f"http://127.0.0.1:{lab.free_port()}"
        self.live = VERSIONS[0]

    def setup(self) -> None:
        lab.run_container(self.env.docker, self.images[self.live], f"{self.name}-blue", self.ports["blue"])
        self.caddy.start(lab.site_block(self.site, self.ports["blue"]))
        self.env.processes.append(self.caddy)
        self.env.wait_serving(self.site, self.live)

    def next_deploy(self):
        self.live = other(self.live)
        return self.live, lambda: _script(
            BENCH / "blog-deploy.sh", self.name, self.images[self.live], self.caddy.caddyfile,
            self.caddy.admin, self.ports["blue"], self.ports["green"])


class ZddApp:
    """One app on the zdd server and its working copy; shared by the cases that push to it.
    Addressed by a port of its own, or by ``host`` on the server's shared HTTP site. With
    ``replicas``, on the zdd server in Swarm mode instead, its web scaled to that many."""

    def __init__(self, env, app: str, ignore_term: bool, host: str | None = None, replicas: int | None = None,
                 parallelism: int = 1):
        self.env, self.app, self.host, self.replicas, self.parallelism = env, app, host, replicas, parallelism
        self.site = None if host else f"http://127.0.0.1:{lab.free_port()}"
        self.copy = None
        self.ignore_term = ignore_term
        self.deployed: list[tuple[str, str]] = []  # (sha, body) in the order they went live

    @property
    def server(self) -> lab.ZddServer:
        return self.env.swarm_server() if self.replicas else self.env.zdd_server()

    def setup(self) -> None:
        if self.copy:
            return
        server = self.server
        if self.host:
            self.site = f"http://127.0.0.1:{server.http_port}"
        server.install(self.app, f"http://{self.host}" if self.host else self.site)
        if self.replicas:
            server.zdd("scale", self.app, f"web={self.replicas}")
        self.copy = lab.WorkingCopy(self.env.folder / f"work-{self.app}", server.repo(self.app),
                                    self.env.start_delay, self.ignore_term)
        if self.parallelism > 1:  # Swarm replaces that many web tasks at once
            (self.copy.path / "zdd.toml").write_text(f"[processes.web]\nparallelism = {self.parallelism}\n")
        for body in VERSIONS:  # the first deploy reloads Caddy; the second shows a routine one
            self.push_commit(body)
        self.env.wait_serving(self.site, VERSIONS[1], self.host, server)

    @property
    def live(self) -> str:
        return self.deployed[-1][1]

    def push_commit(self, body: str) -> dict:
        sha = self.copy.commit(body)
        return self._push(sha, body, "main")

    def push_tag(self, sha: str, body: str) -> dict:
        tag = f"rollback-{len(self.deployed)}"
        self.copy.git("tag", tag, sha)
        return self._push(sha, body, tag)

    def push_failing(self, body: str) -> dict:
        """Push a version of ``body`` that never gets healthy: zdd must refuse it."""
        sha = self.copy.commit(body, healthy=False)
        status, lines = self.copy.push("main")
        output = "\n".join(text for _, text in lines)
        if "is live at" in output or "did not get healthy" not in output:
            raise RuntimeError(f"the push of a version that never gets healthy was not refused:\n{output}")
        return {**_timeline(lines), "push_to_serving_s": None, "refused": sha}

    def _push(self, sha: str, body: str, refspec: str) -> dict:
        """Push; return when each of zdd's `==>` lines reached the pusher, and whether Caddy reloaded."""
        status, lines = self.copy.push(refspec)
        output = "\n".join(text for _, text in lines)
        if status != 0 or "is live at" not in output:
            raise RuntimeError(f"git push {refspec} did not deploy:\n{output}")
        self.deployed.append((sha, body))
        return {"caddy_reloaded": "Caddyfile changed" in output, **_timeline(lines)}

    def details(self) -> dict:
        sha = self.deployed[-1][0]
        entry = self.server.last_deploy(self.app)
        if entry["sha"] != sha or entry["outcome"] != "live":
            raise RuntimeError(f"zdd history does not show {sha[:12]} live: {entry}")
        return {"zdd_steps": entry["steps"], "image_reused": entry["image_reused"]}


def _timeline(lines: list[tuple[float, str]]) -> dict:
    return {"push_timeline": [(t, text.removeprefix("remote: ==> ")) for t, text in lines
                              if text.startswith("remote: ==> ")]}


class OnZddApp:
    """A case that deploys (or not) to one zdd app."""

    def __init__(self, app: ZddApp):
        self.app = app

    @property
    def site(self) -> str:
        return self.app.site

    @property
    def host(self) -> str | None:
        return self.app.host

    @property
    def caddy(self) -> lab.Caddy:
        return self.app.server.caddy

    @property
    def netns(self) -> str | None:
        return self.app.server.netns

    def setup(self) -> None:
        self.app.setup()

    def details(self) -> dict:
        return self.app.details()


class ZddPush(OnZddApp):
    """`git push production main` of a new commit: zdd builds, health-gates, flips, drains."""

    def __init__(self, app: ZddApp):
        super().__init__(app)
        self.title = "zdd: git push" + (", app ignores SIGTERM" if app.ignore_term else "")

    def next_deploy(self):
        body = other(self.app.live)
        return body, lambda: self.app.push_commit(body)


class SwarmPush(ZddPush):
    """Swarm mode: the push rolls the web service's replicas one at a time over the nodes."""

    def __init__(self, app: ZddApp):
        super().__init__(app)
        at_once = " two at a time" if app.parallelism == 2 else ""
        self.title = f"zdd on Swarm: git push rolls {app.replicas} replicas over 3 nodes{at_once}"

    def details(self) -> dict:
        """Also the nodes the web replicas run on once the push is done (spread: all distinct)."""
        status = json.loads(self.app.server.zdd("status", self.app.app, "--json"))
        web = status["process_table"]["web"]["containers"]
        return {**super().details(), "web_nodes": sorted(t["node"] for t in web if t["status"] == "running")}


class SwarmRefused(OnZddApp):
    """Swarm mode: a push of a version that never gets healthy; Swarm rolls it back by itself."""

    title = "zdd on Swarm: a failing version, rolled back"

    def next_deploy(self):
        return self.app.live, lambda: self.app.push_failing(other(self.app.live))

    def details(self) -> dict:
        entry = self.app.server.last_deploy(self.app.app)
        if entry["outcome"] != "failed":
            raise RuntimeError(f"zdd history does not show the failed deploy: {entry}")
        return {"refused_steps": entry["steps"]}


class ZddRollback(OnZddApp):
    """Push a new tag naming the previous live commit: its image exists, so nothing builds."""

    title = "zdd: rollback by tag"

    def next_deploy(self):
        sha, body = self.app.deployed[-2]
        return body, lambda: self.app.push_tag(sha, body)


class Steady(OnZddApp):
    """No deploy: the same load on zdd's site for as long as a deploy takes, as a control."""

    title = "no deploy (control, zdd's site)"
    seconds = 6.0

    def next_deploy(self):
        return self.app.live, self._idle

    def _idle(self) -> dict:
        time.sleep(self.seconds)
        return {"push_to_serving_s": None}  # nothing new to serve

    def details(self) -> dict:
        return {}


class Neighbours(OnZddApp):
    """No deploy of the measured app: another app is installed, first-deployed, re-addressed
    and destroyed beside it. Addressed by host names, that reloads nothing; by ports of its
    own, each of the three steps reloads Caddy, which cuts the measured app's idle connections."""

    def __init__(self, app: ZddApp, own_port: bool):
        super().__init__(app)
        self.own_port = own_port
        self.title = "zdd: another app comes and goes" + (" (own ports)" if own_port else " (host names)")
        self.count = 0

    def next_deploy(self):
        return self.app.live, self._come_and_go

    def _come_and_go(self) -> dict:
        server, env = self.app.env.zdd_server(), self.app.env
        self.count += 1
        name = f"{self.app.app}-{'p' if self.own_port else 'h'}{self.count}"  # zdd-bench*: cleaned up
        first, moved = ([f"http://127.0.0.1:{lab.free_port()}" for _ in range(2)] if self.own_port
                        else [f"http://{name}.test", f"http://{name}-moved.test"])
        loads = server.caddy.loads()
        server.install(name, first)
        copy = lab.WorkingCopy(env.folder / f"work-{name}", server.repo(name), env.start_delay, False)
        copy.commit(f"{name} v1")
        status, lines = copy.push("main")
        if status != 0 or not any("is live at" in text for _, text in lines):
            raise RuntimeError(f"the first push of {name} did not deploy:\n" + "\n".join(t for _, t in lines))
        server.install(name, moved)
        server.zdd("destroy", name, "--yes")
        return {"push_to_serving_s": None, "caddy_reloads": server.caddy.loads() - loads}

    def details(self) -> dict:
        return {}
