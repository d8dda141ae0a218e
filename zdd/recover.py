"""Repair what an interrupted deploy left: decide (pure) then do (Docker, the route file, state).

Whatever step a deploy was killed at, the app ends up served by one web container with the
workers of the same deploy (its generation), the recorded state names it, and no other
container of the app is left, except `zdd run` containers still in use.
"""

import dataclasses
import json
from typing import Callable

from zdd import caddy, engine, names, processes, state

Emit = Callable[[str], None]
ALIVE = ("running", "restarting")


@dataclasses.dataclass(frozen=True)
class Recovery:
    keep: dict | None          # the web container that serves, as described by describe()
    route_to: str | None       # slot to point traffic at, when it must change
    adopt: bool                # keep is not the recorded live container: record it
    remove: list[dict]
    start: list[dict] = dataclasses.field(default_factory=list)  # stopped workers of the kept generation


def plan(live: dict | None, routed_slot: str | None, containers: list[dict]) -> Recovery:
    """``containers``: this app's containers as describe() gives them."""
    webs = [c for c in containers if c["process"] == processes.WEB]
    recorded = next((c for c in webs if live and c["id"] == live.get("container_id")
                     and c["status"] in ALIVE), None)
    if recorded:
        keep, adopt = recorded, False
    else:
        keep = next((c for c in webs if c["slot"] == routed_slot and c["status"] == "running"), None)
        adopt = keep is not None
    generation = [c for c in containers if keep and c is not keep and _worker(c) and c["deploy"] == keep["deploy"]]
    in_use = [c for c in containers if c["process"] == processes.RUN and c["status"] in ALIVE]
    route = keep["slot"] if keep and keep["slot"] != routed_slot else None
    kept = [keep, *generation, *in_use]
    return Recovery(keep, route, adopt, [c for c in containers if not any(c is k for k in kept)],
                    [c for c in generation if c["status"] not in ALIVE])


def _worker(container: dict) -> bool:
    return container["process"] not in (processes.WEB, processes.RELEASE, processes.RUN)


def describe(container) -> dict:
    labels = container.labels
    return {"id": container.id, "name": container.name, "status": container.status,
            "slot": labels.get("zdd.slot"), "sha": labels.get("zdd.sha"), "ref": labels.get("zdd.ref"),
            "port": int(labels.get("zdd.port") or 0), "process": labels.get("zdd.process", processes.WEB),
            "deploy": labels.get("zdd.deploy"), "processes": labels.get("zdd.processes"), "container": container}


def reconcile(app_dir, route_dir, slot_ports: dict, client, app: str, emit: Emit) -> dict | None:
    """Carry out the plan for ``app``; return the live record afterwards (None: nothing serves)."""
    live = state.read_live(app_dir)
    found = [describe(c) for c in engine.app_containers(client, app)]
    recovery = plan(live, caddy.routed_slot(route_dir, slot_ports), found)
    if recovery.route_to:
        caddy.route_to(route_dir, slot_ports, recovery.route_to, fallback=False)  # the others go
        emit(f"==> Traffic pointed back at slot {recovery.route_to} after an interrupted deploy")
    for leftover in recovery.remove:
        engine.remove(leftover["container"])
        emit(f"==> Removed {leftover['name']}, left over from an interrupted deploy")
    for stopped in recovery.start:
        stopped["container"].start()
        emit(f"==> Started {stopped['name']} again: an interrupted deploy had stopped it")
    if recovery.adopt:
        live = adopted_record(app, recovery.keep, slot_ports)
        state.write_live(app_dir, live)
        emit(f"==> Recorded {live['sha'][:12]} as live: a deploy was interrupted after it switched traffic")
    elif live and recovery.keep is None:
        emit(f"==> The live container {live['container']} is gone and nothing serves {app}: deploy to fix")
    return live


def adopted_record(app: str, found: dict, slot_ports: dict) -> dict:
    declared = json.loads(found["processes"]) if found.get("processes") else {processes.WEB: {}}
    return state.live_record(app, found["sha"], found["ref"], names.image_tag(app, found["sha"]),
                             found["container"], found["slot"], f"{engine.LOOPBACK}:{slot_ports[found['slot']]}",
                             found["port"], found.get("deploy") or "recovered", None, declared)
