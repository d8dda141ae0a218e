"""The single server's deploy, blue/green: the new generation starts beside the old in the
app's free slot, is health-gated, gets the traffic (the route file is renamed: Caddy is not
reloaded), is watched, and the old generation is drained and retired."""

import time
from typing import Callable

from zdd import caddy, config, drain, engine, generation, health, names, oneoff, processes, routing, slots, state
from zdd.errors import ContainerFailed

Emit = Callable[[str], None]


def roll_out(runtime, app, version, counts: dict[str, int], live: dict | None, timer) -> dict:
    """Replace ``live``'s generation with ``version``'s; return the new live record."""
    old_workers = generation.of_generation(version.client, app.name, live and live.get("deploy_id"))
    web, slot, upstream, port = _start_and_switch(runtime, app, live, version, counts, old_workers, timer)
    _retire(app.server, version.client, live, old_workers, version.config, timer)
    routing.route_to(app.server, app.name, slot, fallback=False)  # the old slot's port is free now
    return state.live_record(app.name, version.sha, version.ref, version.image_tag, web, slot, upstream, port,
                             version.deploy_id, None, version.declared())


def _start_and_switch(runtime, app, live, version, counts, old_workers, timer):
    """Start the new generation beside the old, gate it, switch traffic and watch. On any
    failure, remove what it started and give the old generation back its singletons."""
    repo_config, image = version.config, version.image
    port, source = config.choose_port(app.settings, repo_config, engine.exposed_ports(image))
    slot = slots.other(live and live.get("slot"))
    new, paused, web = [], [], None
    try:
        name = names.container_name(version.app, version.sha, version.deploy_id)
        with timer.step("start", f"Starting {name} in slot {slot} (app port {port}, from {source})"):
            web, host_port = _start_in_slot(app, version, name, port, slot)
            new.append(web)
            workers = _start_workers(version, counts, timer.emit, overlap=True)
            new += [worker.container for worker in workers]
        upstream = f"{engine.LOOPBACK}:{host_port}"
        _health_gate(version, web, host_port, port, source, timer)
        if workers:
            with timer.step("workers", f"Checking {len(workers)} worker container(s) "
                                       f"({_worker_check(image, repo_config)})"):
                generation.gate_workers(version, workers, timer.emit)
        _replace_singletons(version, counts, old_workers, new, paused, timer)
        with timer.step("switch", f"Switching traffic to slot {slot} ({upstream})"):
            _switch(runtime, app, slot, timer.emit)
        timer.emit(f"    serving {version.sha[:12]} now, {sum(timer.durations.values()):.1f}s after the deploy began")
        if live and repo_config.watch_seconds:
            with timer.step("watch", f"Watching the new container for {repo_config.watch_seconds:g}s, "
                                     f"ready to switch back to {live['sha'][:12]}"):
                _watch(app, web, live["slot"], repo_config.watch_seconds)
    except Exception as error:
        generation.discard(new, timer.emit, failed=getattr(error, "container", web))
        _resume(paused, timer.emit)
        raise
    return web, slot, upstream, port


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


def _start_in_slot(app, version, name, port, slot):
    """Start the web container on the slot's port; if something else took that port, pick another."""
    host_port = routing.slot_ports(app.server, app.name)[slot]
    labels = generation.web_labels(version, slot, port)

    def start(host_port):
        return engine.start_container(version.client, version.image, name, labels, version.env,
                                      command=version.config.process(processes.WEB).command,
                                      publish=(port, host_port), mounts=version.mounts, network=version.network,
                                      limit=version.limits.of(processes.WEB))
    try:
        container = start(host_port)
    except engine.PortInUse:
        host_port = slots.replace_port(app.dir, slot, routing.ports_of_other_apps(app.server, app.name))
        container = start(host_port)
    return container, host_port


def _health_gate(version, container, host_port: int, port: int, source: str, timer) -> None:
    client, repo_config = version.client, version.config
    command = engine.health_command(version.image)
    how = "Docker HEALTHCHECK" if command else f"GET {repo_config.health_path} on {engine.LOOPBACK}:{host_port}"
    with timer.step("health", f"Waiting for health ({how}, up to {repo_config.health_timeout:.0f}s)"):
        if command:
            probe = engine.HealthCommandProbe(client, container, command)
        else:
            probe = health.HttpProbe(host_port, repo_config.health_path)
        try:
            health.wait_until_healthy(container, probe, repo_config.health_timeout, repo_config.health_interval,
                                      timer.emit, docker_health=bool(command),
                                      listening=lambda: engine.listening(container, port))
        except ContainerFailed as error:
            if command:
                raise
            if probe.last_failure in health.NOTHING_LISTENS:
                raise ContainerFailed(f"{error}: nothing listened on its port {port}, from {source}; if the app "
                                      "listens on another port, set `port` in zdd.toml") from None
            raise ContainerFailed(f"{error}: the last probe got {probe.last_failure}") from None
        engine.keep_running(container)


def wait_healthy_again(client, app, live: dict, web, emit: Emit) -> None:
    """The live web container, started again in its slot (after a restore): healthy by the
    same check as at its deploy."""
    repo_config = app.repo_config_at(live["sha"])
    image = engine.find_image(client, live["image"])
    command = engine.health_command(image) if image is not None else None
    if command:
        probe = engine.HealthCommandProbe(client, web, command)
    else:
        probe = health.HttpProbe(int(live["upstream"].rsplit(":", 1)[1]), repo_config.health_path)
    health.wait_until_healthy(web, probe, repo_config.health_timeout, repo_config.health_interval, emit,
                              docker_health=bool(command))


def _switch(runtime, app, slot: str, emit: Emit) -> None:
    """Publish the app if this is its first switch (a Caddyfile reload only for an app with a
    port of its own), then rename its route file to move traffic."""
    caddy.check_running(app.server.caddy_admin)
    if not caddy.has_route(routing.route_dir(app.server, app.name)):
        routing.route_to(app.server, app.name, slot)
    runtime.refresh_routes(emit, including=app.name)
    routing.route_to(app.server, app.name, slot)


def _watch(app, container, old_slot: str, seconds: float) -> None:
    """Switch traffic back to the old slot if the new container dies soon after the switch."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        now = engine.state(container)
        if now["status"] != "running" or now["restarts"]:
            routing.route_to(app.server, app.name, old_slot, fallback=False)  # the new one goes
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
