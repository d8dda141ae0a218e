"""The deploy, step by step: build, start beside the old, health-gate, switch Caddy, drain, record."""

import contextlib
import datetime
import getpass
import secrets
import time
from typing import Callable

from zdd import caddy, config, drain, engine, gitrepo, health, names, state
from zdd.errors import ContainerFailed, GitError, ZddError

Emit = Callable[[str], None]


class StepTimer:
    def __init__(self, emit: Emit):
        self.emit = emit
        self.durations: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, name: str, message: str):
        self.emit(f"==> {message}")
        started = time.monotonic()
        try:
            yield
        finally:
            self.durations[name] = round(time.monotonic() - started, 3)


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def deploy(server: config.Server, app: str, sha: str, ref: str, emit: Emit, client=None) -> dict:
    """Deploy commit ``sha`` of ``app``; return the new live record. Raises ZddError on failure,
    in which case the old container and the Caddyfile are exactly as they were."""
    settings = config.load_app(server, app)
    names.check_sha(sha)
    app_dir = server.app_dir(app)
    client = client or engine.connect()
    with state.deploy_lock(app_dir, emit):
        live = state.read_live(app_dir)
        reconcile(client, app, live, emit)
        deploy_id = secrets.token_hex(3)
        timer = StepTimer(emit)
        started_at = now_iso()
        try:
            record = _deploy_locked(server, settings, live, sha, ref, deploy_id, timer, client)
        except Exception as error:
            state.append_history(app_dir, _history(app, sha, ref, deploy_id, started_at, timer, "failed", str(error)))
            raise
        state.write_live(app_dir, record)
        state.append_history(app_dir, _history(app, sha, ref, deploy_id, started_at, timer, "live", None,
                                               image_reused=record["image_reused"]))
        total = sum(timer.durations.values())
        emit(f"==> {app} is live at {settings.domain}: {sha[:12]} ({ref}), deployed in {total:.1f}s")
        return record


def _deploy_locked(server, settings, live, sha, ref, deploy_id, timer, client) -> dict:
    app = settings.name
    repo = gitrepo.open_repo(server.repo_path(app))
    with timer.step("config", f"Deploying {app} {sha[:12]} ({ref})"):
        repo_config = config.parse_repo_config(_read_text(repo, sha, "zdd.toml"))
    image, reused = _build_or_reuse(client, repo, app, sha, ref, timer)
    port, source = config.choose_port(settings, repo_config, engine.exposed_ports(image))
    name = names.container_name(app, sha, deploy_id)
    with timer.step("start", f"Starting container {name} (app port {port}, from {source})"):
        container = engine.start_container(client, image, name, port, names.labels(app, sha, ref))
    try:
        upstream = _gate_and_switch(server, settings, container, image, port, repo_config, timer)
    except Exception:
        _report_failure(container, timer.emit)
        engine.remove(container)
        raise
    old = engine.get_container(client, live and live.get("container_id"))
    if old is not None:
        with timer.step("drain", f"Draining {old.name}, then stopping it"):
            _retire(old, live["upstream"], repo_config, timer.emit)
    return {
        "app": app, "sha": sha, "ref": ref, "image": names.image_tag(app, sha), "image_reused": reused,
        "container": name, "container_id": container.id, "upstream": upstream, "port": port,
        "deployed_at": now_iso(), "deploy_id": deploy_id,
    }


def _read_text(repo, sha: str, path: str) -> str | None:
    data = gitrepo.read_file(repo, sha, path)
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ZddError(f"{path} is not UTF-8 text") from None


def _build_or_reuse(client, repo, app, sha, ref, timer):
    tag = names.image_tag(app, sha)
    short_tag = f"{names.image_repository(app)}:{sha[:12]}"
    image = engine.find_image(client, tag)
    if image is not None:
        with timer.step("build", f"Image {short_tag} exists: reusing it, no build"):
            return image, True
    if not gitrepo.has_file(repo, sha, "Dockerfile"):
        raise GitError(f"commit {sha[:12]} has no Dockerfile at its root: add one and push again")
    with timer.step("build", f"Building image {short_tag}"):
        with gitrepo.export_tar(repo, sha) as context:
            image = engine.build_image(client, context, tag, names.labels(app, sha, ref),
                                       lambda line: timer.emit(f"    {line}"))
    return image, False


def _gate_and_switch(server, settings, container, image, port, repo_config, timer) -> str:
    host_port = engine.host_port(container, port)
    if host_port is None:
        status = engine.state(container)
        raise ContainerFailed(f"the new container stopped (exit code {status['exit_code']}) as it started")
    upstream = f"{engine.LOOPBACK}:{host_port}"
    uses_docker_health = engine.has_healthcheck(image)
    how = "Docker HEALTHCHECK" if uses_docker_health else f"GET {repo_config.health_path} on {upstream}"
    with timer.step("health", f"Waiting for health ({how}, up to {repo_config.health_timeout:.0f}s)"):
        probe = None if uses_docker_health else (lambda: health.http_ok(host_port, repo_config.health_path))
        health.wait_until_healthy(container, probe, repo_config.health_timeout,
                                  repo_config.health_interval, timer.emit)
        engine.keep_running(container)
    with timer.step("switch", f"Switching Caddy to {upstream}"):
        text = caddy.render(server.template_dir(), server.caddy_admin, _sites(server, settings, upstream))
        caddy.apply(server.caddy_bin, server.caddyfile, server.caddy_admin, text, timer.emit)
    return upstream


def _sites(server, deploying: config.AppSettings, upstream: str) -> list[caddy.Site]:
    """Every app's live site, with the deploying app's upstream replaced by the new one."""
    sites = [caddy.Site(deploying.name, deploying.domain, upstream)]
    for other in server.app_names():
        if other == deploying.name:
            continue
        live = state.read_live(server.app_dir(other))
        if live:
            sites.append(caddy.Site(other, config.load_app(server, other).domain, live["upstream"]))
    return sites


def _report_failure(container, emit: Emit) -> None:
    logs = engine.logs_tail(container)
    health_log = engine.health_log(container)
    if logs:
        emit("    last lines of the new container's log:")
        for line in logs:
            emit(f"      {line}")
    if health_log:
        emit("    its health checks:")
        for line in health_log:
            emit(f"      {line}")
    emit("    removed the new container")


def _retire(old, old_upstream: str, repo_config, emit: Emit) -> None:
    old_port = int(old_upstream.rsplit(":", 1)[1])
    drained, waited = drain.wait_for_drain(old_port, repo_config.drain_timeout)
    if not drained:
        emit(f"    requests still open on the old container after {waited:.1f}s: stopping it anyway")
    engine.stop_and_remove(old, repo_config.stop_timeout)
    emit(f"    stopped and removed {old.name}")


def reconcile(client, app: str, live: dict | None, emit: Emit) -> None:
    """Remove containers of this app left by an interrupted deploy: only the live one stays."""
    live_id = live and live.get("container_id")
    for container in engine.app_containers(client, app):
        if container.id != live_id:
            engine.remove(container)
            emit(f"==> Removed {container.name}, left over from an interrupted deploy")


def _history(app, sha, ref, deploy_id, started_at, timer, outcome, reason, image_reused=None) -> dict:
    return {
        "app": app, "sha": sha, "ref": ref, "deploy_id": deploy_id, "outcome": outcome,
        "reason": reason, "started_at": started_at, "finished_at": now_iso(),
        "steps": timer.durations, "image_reused": image_reused, "by": _who(),
    }


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
