"""The deploy, step by step: build, start beside the old, health-gate, switch Caddy, drain, record."""

import contextlib
import getpass
import os
import secrets
import signal
import tempfile
import time
from typing import Callable

from zdd import (appenv, caddy, cluster, config, drain, engine, generation, gitrepo, health, names, oneoff,
                 processes, retention, routing, slots, state, storage)
from zdd.errors import BuildFailed, ContainerFailed, GitError, ZddError

Emit = Callable[[str], None]


class StepTimer:
    def __init__(self, emit: Emit):
        self.emit = emit
        self.durations: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, name: str, message: str | None):
        if message:
            self.emit(f"==> {message}")
        started = time.monotonic()
        try:
            yield
        finally:
            self.durations[name] = round(time.monotonic() - started, 3)
        _injected_fault(name)


def _injected_fault(step: str) -> None:
    """Fault injection for the tests: ZDD_FAULT=after:STEP kills zdd as that step ends."""
    if os.environ.get("ZDD_FAULT") == f"after:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


def deploy(server: config.Server, app: str, sha: str, ref: str, emit: Emit, client=None) -> dict:
    """Deploy commit ``sha`` of ``app``; return the new live record. Raises ZddError on failure,
    in which case the old container and the Caddyfile are exactly as they were."""
    settings = config.load_app(server, app)
    names.check_sha(sha)
    app_dir = server.app_dir(app)
    client = client or engine.connect()
    with state.deploy_lock(app_dir, emit):
        live = repaired_live(server, client, app, emit)
        deploy_id = secrets.token_hex(3)
        timer = StepTimer(emit)
        started_at = state.now_iso()
        try:
            record = _deploy_locked(server, settings, live, sha, ref, deploy_id, timer, client)
        except Exception as error:
            state.append_history(app_dir, _history(app, sha, ref, deploy_id, started_at, timer, "failed", str(error)))
            raise
        with timer.step("record", None):
            state.write_live(app_dir, record)
        state.append_history(app_dir, _history(app, sha, ref, deploy_id, started_at, timer, "live", None,
                                               image_reused=record["image_reused"]))
        total = sum(timer.durations.values())
        emit(f"==> {app} is live at {settings.domain}: {sha[:12]} ({ref}), deployed in {total:.1f}s")
        try:
            prune_images(client, app_dir, app, {sha, live and live["sha"]}, settings.keep_images, emit)
        except Exception as error:  # the deploy is done: a failed clean-up must not fail it
            emit(f"    could not prune old images ({type(error).__name__}: {error}): the next deploy tries again")
        return record


def _deploy_locked(server, settings, live, sha, ref, deploy_id, timer, client) -> dict:
    app = settings.name
    app_dir = server.app_dir(app)
    repo = gitrepo.open_repo(server.repo_path(app))
    with timer.step("config", f"Deploying {app} {sha[:12]} ({ref})"):
        repo_config = repo_config_at(repo, sha)
        counts = _process_counts(repo_config, app_dir, timer.emit, server.swarm)
    deployed_before = any(entry["sha"] == sha for entry in state.read_history(app_dir))
    image, reused = _build_or_reuse(server, client, repo, app, sha, ref, timer, deployed_before)
    version = generation.Version(client, image, app, sha, ref, deploy_id, repo_config,
                                 appenv.read(app_dir), storage.read(app_dir))
    if repo_config.release:
        with timer.step("release", f"Running the release command ({oneoff.shown(repo_config.release)})"):
            oneoff.release(version, timer.emit)
    if server.swarm:
        return cluster.roll_out(server, settings, version, counts, live, timer) | {"image_reused": reused}
    old_workers = generation.of_generation(client, app, live and live.get("deploy_id"))
    web, slot, upstream, port = _start_and_switch(server, settings, live, version, counts, old_workers, timer)
    _retire(server, client, live, old_workers, repo_config, timer)
    return state.live_record(app, sha, ref, names.image_tag(app, sha), web, slot, upstream, port,
                             deploy_id, reused, {p.name: p.as_dict() for p in repo_config.processes})


def _start_and_switch(server, settings, live, version, counts, old_workers, timer):
    """Start the new generation beside the old, gate it, switch traffic and watch. On any
    failure, remove what it started and give the old generation back its singletons."""
    repo_config, image = version.config, version.image
    port, source = config.choose_port(settings, repo_config, engine.exposed_ports(image))
    slot = slots.other(live and live.get("slot"))
    new, paused, web = [], [], None
    try:
        name = names.container_name(version.app, version.sha, version.deploy_id)
        with timer.step("start", f"Starting {name} in slot {slot} (app port {port}, from {source})"):
            web, host_port = _start_in_slot(server, version, name, port, slot)
            new.append(web)
            workers = _start_workers(version, counts, timer.emit, overlap=True)
            new += [worker.container for worker in workers]
        upstream = f"{engine.LOOPBACK}:{host_port}"
        _health_gate(version.client, web, image, host_port, upstream, repo_config, timer, f"{port}, from {source}")
        if workers:
            with timer.step("workers", f"Checking {len(workers)} worker container(s) "
                                       f"({_worker_check(image, repo_config)})"):
                generation.gate_workers(version, workers, timer.emit)
        _replace_singletons(version, counts, old_workers, new, paused, timer)
        with timer.step("switch", f"Switching traffic to slot {slot} ({upstream})"):
            _switch(server, settings, slot, timer.emit)
        timer.emit(f"    serving {version.sha[:12]} now, {sum(timer.durations.values()):.1f}s after the deploy began")
        if live and repo_config.watch_seconds:
            with timer.step("watch", f"Watching the new container for {repo_config.watch_seconds:g}s, "
                                     f"ready to switch back to {live['sha'][:12]}"):
                _watch(server, version.app, web, live["slot"], repo_config.watch_seconds)
    except Exception as error:
        generation.discard(new, timer.emit, failed=getattr(error, "container", web))
        _resume(paused, timer.emit)
        raise
    return web, slot, upstream, port


def _process_counts(repo_config, app_dir, emit: Emit, web_scales: bool) -> dict[str, int]:
    scale = processes.read_scale(app_dir)
    for name in processes.unknown_names(repo_config.processes, [n for n, c in scale.items() if c]):
        emit(f"    `zdd scale` set {name}={scale[name]}, but zdd.toml declares no process {name}: ignored")
    counts = processes.desired(repo_config.processes, scale, web_scales)
    if len(counts) > 1 or counts.get(processes.WEB) != 1:
        emit(f"    processes: {' '.join(f'{name}={count}' for name, count in counts.items())}")
    return counts


def _start_workers(version, counts: dict[str, int], emit: Emit, overlap: bool) -> list:
    started = []
    for process in version.config.processes:
        if process.name == processes.WEB or process.overlap != overlap or not counts[process.name]:
            continue
        emit(f"    starting {counts[process.name]} {process.name} container(s): {oneoff.shown(process.command)}")
        started += generation.start_workers(version, process, counts[process.name])
    return started


def _worker_check(image, repo_config) -> str:
    if engine.health_command(image):
        return "Docker HEALTHCHECK, unless a process turns it off"
    return f"each must stay up {repo_config.worker_check_seconds:g}s"


def _replace_singletons(version, counts: dict[str, int], old_workers: dict, new: list, paused: list,
                        timer) -> None:
    """Processes with overlap = false: stop the old container(s), then start and gate the new.
    Adds the stopped old containers to ``paused``, to be started again if the deploy fails."""
    singles = [p for p in version.config.processes if not p.overlap]
    if not singles:
        return
    message = f"Replacing {', '.join(p.name for p in singles)} (overlap = false: the old stops first)"
    with timer.step("singletons", message):
        paused += [c for p in singles for c in old_workers.get(p.name, [])]
        generation.pause_all(paused, version.config.stop_timeout)
        workers = _start_workers(version, counts, timer.emit, overlap=False)
        new += [worker.container for worker in workers]
        generation.gate_workers(version, workers, timer.emit)


def _resume(paused: list, emit: Emit) -> None:
    for container in paused:
        try:
            container.start()
            emit(f"    started the old {container.labels.get('zdd.process')} container {container.name} again")
        except Exception as error:  # the engine failing: the next deploy or `zdd status` repairs
            emit(f"    could not start {container.name} again ({type(error).__name__}): `zdd status` will")


def _retire(server, client, live, old_workers: dict, repo_config, timer) -> None:
    """Drain and stop the old web container, then stop the old workers. In that order: once the
    old web is gone, an interrupted deploy is repaired by adopting the new generation whole."""
    old = engine.get_container(client, live and live.get("container_id"))
    if old is not None:
        with timer.step("drain", f"Draining {old.name}"):
            _drain(server, live["upstream"], repo_config, timer.emit)
        with timer.step("stop", None):
            engine.stop_and_remove(old, repo_config.stop_timeout)
            timer.emit(f"    stopped and removed {old.name}")
    retiring = [c for group in old_workers.values() for c in group]
    if retiring:
        counts = ", ".join(f"{len(group)} {name}" for name, group in sorted(old_workers.items()))
        with timer.step("retire", f"Stopping the old version's other processes ({counts})"):
            generation.stop_all(retiring, repo_config.stop_timeout)


def repo_config_at(repo, sha: str) -> config.RepoConfig:
    """The zdd.toml of commit ``sha``, validated."""
    return config.parse_repo_config(_read_text(repo, sha, "zdd.toml"))


def _read_text(repo, sha: str, path: str) -> str | None:
    data = gitrepo.read_file(repo, sha, path)
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ZddError(f"{path} is not UTF-8 text") from None


def _build_or_reuse(server, client, repo, app, sha, ref, timer, deployed_before: bool):
    tag = names.image_tag(app, sha)
    short_tag = f"{names.image_repository(app)}:{sha[:12]}"
    image = engine.find_image(client, tag)
    if image is not None:
        with timer.step("build", f"Image {short_tag} exists: reusing it, no build"):
            return image, True
    if not gitrepo.has_file(repo, sha, "Dockerfile"):
        raise GitError(f"commit {sha[:12]} has no Dockerfile at its root: add one and push again")
    _check_room_to_build(server, client, repo, sha)
    if gitrepo.has_submodules(repo, sha):
        timer.emit("==> Note: submodules are not part of the build context (git archive leaves them out)")
    if deployed_before:
        timer.emit(f"==> The image of {sha[:12]} was pruned: rebuilding it from git")
    with timer.step("build", f"Building image {short_tag}"):
        with gitrepo.export_tar(repo, sha) as context:
            image = engine.build_image(client, context, tag, names.labels(app, sha, ref),
                                       lambda line: timer.emit(f"    {line}"))
    return image, False


def _start_in_slot(server, version, name, port, slot):
    """Start the web container on the slot's port; if something else took that port, pick another."""
    host_port = routing.slot_ports(server, version.app)[slot]
    labels = generation.web_labels(version, slot, port)

    def start(host_port):
        return engine.start_container(version.client, version.image, name, labels, version.env,
                                      command=version.config.process(processes.WEB).command,
                                      publish=(port, host_port), mounts=version.mounts)
    try:
        container = start(host_port)
    except engine.PortInUse:
        host_port = slots.replace_port(server.app_dir(version.app), slot,
                                       routing.ports_of_other_apps(server, version.app))
        container = start(host_port)
    return container, host_port


def _check_room_to_build(server, client, repo, sha: str) -> None:
    """Refuse a build that would not fit, before it starts filling the disk."""
    size_mb = gitrepo.tree_size(repo, sha) / 1e6
    if size_mb > server.max_context_mb:
        raise BuildFailed(f"the build context is {size_mb:.0f} MB, over the {server.max_context_mb} MB limit: "
                          "remove large files from the repository, or raise max_context_mb in settings.json")
    for folder in (engine.storage_dir(client), tempfile.gettempdir()):
        free_mb = _free_mb(folder)
        needed_mb = 2 * size_mb + server.min_free_mb
        if free_mb is not None and free_mb < needed_mb:
            raise BuildFailed(f"not enough disk space to build: {free_mb:.0f} MB free in {folder}, about "
                              f"{needed_mb:.0f} MB needed ({server.min_free_mb} MB stays free): free some "
                              "space, e.g. fewer kept images (install.sh --keep) or `docker system prune`")


def _free_mb(folder: str) -> float | None:
    try:
        stats = os.statvfs(folder)
    except OSError:
        return None  # an engine on another host: its disk is not ours to see
    return stats.f_bavail * stats.f_frsize / 1e6


def _health_gate(client, container, image, host_port, upstream, repo_config, timer, app_port: str) -> None:
    command = engine.health_command(image)
    how = "Docker HEALTHCHECK" if command else f"GET {repo_config.health_path} on {upstream}"
    with timer.step("health", f"Waiting for health ({how}, up to {repo_config.health_timeout:.0f}s)"):
        if command:
            probe = engine.HealthCommandProbe(client, container, command)
        else:
            probe = health.HttpProbe(host_port, repo_config.health_path)
        try:
            health.wait_until_healthy(container, probe, repo_config.health_timeout,
                                      repo_config.health_interval, timer.emit, docker_health=bool(command))
        except ContainerFailed as error:
            if command:
                raise
            if probe.last_failure in health.NOTHING_LISTENS:
                raise ContainerFailed(f"{error}: nothing listened on its port {app_port}; if the app "
                                      "listens on another port, set `port` in zdd.toml") from None
            raise ContainerFailed(f"{error}: the last probe got {probe.last_failure}") from None
        engine.keep_running(container)


def _switch(server, settings, slot: str, emit: Emit) -> None:
    """Publish the app if this is its first switch (a Caddyfile reload only for an app with a
    port of its own), then rename its route file to move traffic."""
    caddy.check_running(server.caddy_admin)
    if not caddy.has_route(routing.route_dir(server, settings.name)):
        routing.route_to(server, settings.name, slot)
    routing.refresh(server, emit, including=settings.name)
    routing.route_to(server, settings.name, slot)


def _watch(server, app: str, container, old_slot: str, seconds: float) -> None:
    """Switch traffic back to the old slot if the new container dies soon after the switch."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        now = engine.state(container)
        if now["status"] != "running" or now["restarts"]:
            routing.route_to(server, app, old_slot)
            raise ContainerFailed(f"the new container crashed (exit code {now['exit_code']}) right after "
                                  "the switch: traffic went back to the previous version")
        time.sleep(0.2)


def _drain(server, old_upstream: str, repo_config, emit: Emit) -> None:
    outcome, waited = drain.wait_for_drain(lambda: caddy.in_flight(server.caddy_admin, old_upstream),
                                           repo_config.drain_timeout)
    if outcome == "timeout":
        emit(f"    requests still in flight on the old container after {waited:.1f}s: stopping it anyway")
    elif outcome == "unknown":
        emit(f"    Caddy's admin API did not report requests in flight: waited {waited:.1f}s")


def repaired_live(server, client, app: str, emit: Emit) -> dict | None:
    """The live record, once what an interrupted deploy left is put right (on either runtime)."""
    return (cluster.reconcile if server.swarm else routing.reconcile)(server, client, app, emit)


def prune_images(client, app_dir, app: str, protected: set, keep: int, emit: Emit) -> None:
    """Delete all but the ``keep`` most recently used images of the app, never ``protected``."""
    images = [{**image, "created": retention.epoch(image["created"])} for image in engine.app_images(client, app)]
    used = retention.last_used(state.read_history(app_dir))
    doomed = retention.choose_prunable(images, used, keep, protected)
    removed = [image for image in doomed if engine.remove_image(client, image["id"])]
    if removed:
        freed = sum(image["size"] for image in removed) / 1e6
        emit(f"==> Pruned {len(removed)} old image(s) beyond the newest {keep}: about {freed:.1f} MB freed")


def _history(app, sha, ref, deploy_id, started_at, timer, outcome, reason, image_reused=None) -> dict:
    return {
        "app": app, "sha": sha, "ref": ref, "deploy_id": deploy_id, "outcome": outcome,
        "reason": reason, "started_at": started_at, "finished_at": state.now_iso(),
        "steps": timer.durations, "image_reused": image_reused, "by": _who(),
    }


def _who() -> str:
    """The SSH key's name when zdd's forced command let the push in, else the user."""
    if os.environ.get("ZDD_BY"):
        return os.environ["ZDD_BY"]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
