"""The single-server runtime: each process as containers on this Docker engine; web in one
of the app's two slots (fixed loopback ports), switched by Caddy's route file."""

import queue
import threading
from typing import Callable, Iterator

from zdd import engine, generation, limits, oneoff, processes, recover, routing, services
from zdd.errors import ZddError
from zdd.runtimes import blue_green
from zdd.runtimes.base import RuntimeBase

Emit = Callable[[str], None]


class SingleServer(RuntimeBase):
    web_scales = False  # one web container: zdd moves traffic between two, with no downtime

    def roll_out(self, app, version, counts, live, timer) -> dict:
        return blue_green.roll_out(self, app, version, counts, live, timer)

    def reconcile(self, app, emit: Emit) -> dict | None:
        ports = routing.slot_ports(app.server, app.name)
        return recover.reconcile(app.dir, routing.route_dir(app.server, app.name), ports, self.client, app.name, emit)

    def process_table(self, app, live: dict, wanted: dict[str, int]) -> dict[str, dict]:
        group = generation.of_generation(self.client, app.name, live.get("deploy_id"))
        web = engine.get_container(self.client, live.get("container_id"))
        group[processes.WEB] = [web] if web else []
        return {process.name: {"command": list(process.command) if process.command else None,
                               "overlap": process.overlap, "wanted": wanted[process.name],
                               "containers": [_container_row(c) for c in group.get(process.name, [])]}
                for process in processes.declared_in(live)}

    def summaries(self, lives: list[tuple]) -> dict[str, tuple[str, dict[str, int]]]:
        by_app: dict[str, list[dict]] = {}
        for container in engine.listed_containers(self.client) if lives else []:
            by_app.setdefault(container["Labels"].get("zdd.app"), []).append(container)
        return {app.name: _summary(live, by_app.get(app.name, [])) for app, live in lives}

    def status_lines(self, app, live: dict, table: dict[str, dict]) -> list[str]:
        lines = [f"  container {live['container']} -> {live['upstream']}, image {live['image'][:60]}"]
        for name, row in table.items():
            states = ", ".join(f"{c['name']} {c['health'] or c['status']}" for c in row["containers"]) or "none"
            lines.append(f"  {name}: {len(row['containers'])}/{row['wanted']} "
                         f"({oneoff.shown(row['command'])}): {states}")
        return lines

    def scale(self, app, live: dict, counts: dict[str, int], emit: Emit) -> None:
        repo_config = app.repo_config_at(live["sha"])
        declared = {p.name: p for p in processes.declared_in(live)}
        for name, count in counts.items():
            if name != processes.WEB:
                self._scale_process(app, live, declared[name], count, repo_config, emit)

    def apply_limits(self, app, live: dict, changed: dict, emit: Emit) -> None:
        """Docker changes a running container's memory and CPU in place; it cannot take a
        limit off one: that waits for the next deploy or `zdd restart`."""
        group = generation.of_generation(self.client, app.name, live.get("deploy_id"))
        group[processes.WEB] = [c for c in [engine.get_container(self.client, live.get("container_id"))] if c]
        for name, limit in changed.items():
            running = group.get(name, [])
            if limit == limits.NO_LIMIT:
                if running:
                    emit(f"{name}: its running containers keep their old limit until the next deploy or "
                         f"`zdd restart {app.name}`")
                continue
            refused = [error for error in (engine.update_limit(c, limit) for c in running) if error]
            if refused:
                emit(f"{name}: Docker would not change it now ({refused[0]}): it applies at the next deploy "
                     f"or `zdd restart {app.name}`")
            elif running:
                emit(f"{name}: applied now to {len(running)} running container(s)")

    def _scale_process(self, app, live: dict, process, count: int, repo_config, emit: Emit) -> None:
        have = generation.of_generation(self.client, app.name, live["deploy_id"]).get(process.name, [])
        if count < len(have):
            generation.stop_all(have[count:], repo_config.stop_timeout)
            emit(f"{process.name}: stopped {len(have) - count}, {count} running")
        elif count > len(have):
            first = 1 + max((int(c.labels.get("zdd.index") or 0) for c in have), default=0)
            version = generation.live_version(self.client, app, live, repo_config)
            started = generation.start_workers(version, process, count - len(have), first=first)
            try:
                generation.gate_workers(version, started, emit)
            except Exception as error:
                generation.discard([w.container for w in started], emit, failed=getattr(error, "container", None))
                raise
            emit(f"{process.name}: started {len(started)}, {count} running")
        else:
            emit(f"{process.name}: {count} running already")

    def logs(self, app, live: dict, process: str, follow: bool, tail: int) -> Iterator[str]:
        """With several containers, each line says which one wrote it."""
        containers = self._containers(app, live, process)
        if len(containers) == 1:
            for chunk in containers[0].logs(stream=True, follow=follow, tail=tail):
                yield chunk.decode("utf-8", "replace")
            return
        lines: queue.Queue = queue.Queue()
        for container in containers:
            prefix = f"{process}.{container.labels.get('zdd.index', '?')} | "
            threading.Thread(target=_pump_prefixed, args=(container, follow, tail, prefix, lines),
                             daemon=True).start()
        remaining = len(containers)
        while remaining:
            line = lines.get()
            if line is None:
                remaining -= 1
            else:
                yield line

    def _containers(self, app, live: dict, process: str) -> list:
        """The live version's containers of ``process`` (web: the one that serves)."""
        if process == processes.WEB:
            found = [engine.get_container(self.client, live.get("container_id"))]
        else:
            found = generation.of_generation(self.client, app.name, live.get("deploy_id")).get(process, [])
        found = [c for c in found if c is not None]
        if not found:
            raise ZddError(f"{app.name} has no {process} container running "
                           f"(`zdd scale {app.name} {process}=1` starts one)")
        return found

    def stop_processes(self, app, live: dict) -> list:
        group = generation.of_generation(self.client, app.name, live.get("deploy_id"))
        web = engine.get_container(self.client, live.get("container_id"))
        stopped = [c for containers in group.values() for c in containers] + ([web] if web else [])
        timeout = int(app.repo_config_at(live["sha"]).stop_timeout)
        for container in stopped:
            container.stop(timeout=timeout)
        return stopped

    def start_processes(self, app, live: dict, stopped: list, emit: Emit) -> None:
        for container in stopped:
            container.start()
        web = next((c for c in stopped if c.id == live.get("container_id")), None)
        if web is not None:
            blue_green.wait_healthy_again(self.client, app, live, web, emit)

    def start_data(self, app, service, labels: dict):
        network = services.network_name(app.name)
        engine.ensure_network(self.client, network, {engine.DATA_LABEL: app.name})
        return engine.start_service(self.client, service, network, labels)

    def stop_data(self, app, service) -> None:
        container = engine.get_container(self.client, service.container)
        if container is not None:
            container.stop(timeout=services.STOP_TIMEOUT)

    def resume_data(self, app, service):
        container = self.client.containers.get(service.container)
        container.start()
        return container

    def remove_data(self, app, service) -> None:
        container = engine.get_container(self.client, service.container)
        if container is not None:
            engine.stop_and_remove(container, timeout=services.STOP_TIMEOUT)

    def remove_app_network(self, app) -> None:
        engine.remove_network(self.client, services.network_name(app.name))

    def destroy(self, app, emit: Emit) -> None:
        pass  # its containers are removed with those of every runtime, by label

    def after_install(self, emit: Emit, changed: bool) -> None:
        if changed and routing.any_published(self.server):
            self.refresh_routes(emit)


def _container_row(container) -> dict:
    now = engine.state(container)
    return {"name": container.name, "status": now["status"], "health": now["health"]}


def _summary(live: dict, listed: list[dict]) -> tuple[str, dict[str, int]]:
    """The live web container's health word and the running count of each process of its
    generation, from the listing of the app's containers."""
    web = next((c for c in listed if c["Id"] == live.get("container_id")), None)
    counts = {processes.WEB: 1}
    for container in listed:
        process = container["Labels"].get("zdd.process")
        if container["Labels"].get("zdd.deploy") == live.get("deploy_id") and live.get("deploy_id") and \
                process not in (processes.WEB, processes.RELEASE, processes.RUN):
            counts[process] = counts.get(process, 0) + (container["State"] == "running")
    return (engine.listed_health(web) if web else "container missing"), counts


def _pump_prefixed(container, follow: bool, tail: int, prefix: str, lines: queue.Queue) -> None:
    try:
        for line in engine.log_lines(container, follow, tail):
            lines.put(f"{prefix}{line}\n")
    finally:
        lines.put(None)

