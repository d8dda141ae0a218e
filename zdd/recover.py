"""Repair what an interrupted deploy left: decide (pure) then do (Docker, the flag, state).

Whatever step a deploy was killed at, the app ends up served by one container, the
recorded state names it, and no other container of the app is left.
"""

import dataclasses
from typing import Callable

from zdd import caddy, engine, names, state

Emit = Callable[[str], None]
ALIVE = ("running", "restarting")


@dataclasses.dataclass(frozen=True)
class Recovery:
    keep: dict | None          # the container that serves, as described by describe()
    route_to: str | None       # slot to point traffic at, when it must change
    adopt: bool                # keep is not the recorded live container: record it
    remove: list[dict]


def plan(live: dict | None, routed_slot: str, containers: list[dict]) -> Recovery:
    """``containers``: this app's containers as describe() gives them."""
    recorded = next((c for c in containers if live and c["id"] == live.get("container_id")
                     and c["status"] in ALIVE), None)
    if recorded:
        keep, adopt = recorded, False
    else:
        keep = next((c for c in containers if c["slot"] == routed_slot and c["status"] == "running"), None)
        adopt = keep is not None
    route = keep["slot"] if keep and keep["slot"] != routed_slot else None
    return Recovery(keep, route, adopt, [c for c in containers if c is not keep])


def describe(container) -> dict:
    labels = container.labels
    return {"id": container.id, "name": container.name, "status": container.status,
            "slot": labels.get("zdd.slot"), "sha": labels.get("zdd.sha"), "ref": labels.get("zdd.ref"),
            "port": int(labels.get("zdd.port") or 0), "container": container}


def reconcile(app_dir, flag_dir, slot_ports: dict, client, app: str, emit: Emit) -> dict | None:
    """Carry out the plan for ``app``; return the live record afterwards (None: nothing serves)."""
    live = state.read_live(app_dir)
    found = [describe(c) for c in engine.app_containers(client, app)]
    recovery = plan(live, caddy.routed_slot(flag_dir), found)
    if recovery.route_to:
        caddy.route_to(flag_dir, recovery.route_to)
        emit(f"==> Traffic pointed back at slot {recovery.route_to} after an interrupted deploy")
    for leftover in recovery.remove:
        engine.remove(leftover["container"])
        emit(f"==> Removed {leftover['name']}, left over from an interrupted deploy")
    if recovery.adopt:
        live = adopted_record(app, recovery.keep, slot_ports)
        state.write_live(app_dir, live)
        emit(f"==> Recorded {live['sha'][:12]} as live: a deploy was interrupted after it switched traffic")
    elif live and recovery.keep is None:
        emit(f"==> The live container {live['container']} is gone and nothing serves {app}: deploy to fix")
    return live


def adopted_record(app: str, found: dict, slot_ports: dict) -> dict:
    return state.live_record(app, found["sha"], found["ref"], names.image_tag(app, found["sha"]),
                             found["container"], found["slot"], f"{engine.LOOPBACK}:{slot_ports[found['slot']]}",
                             found["port"], "recovered", None)
