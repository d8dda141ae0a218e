"""Each app's two slots, blue and green: a fixed loopback port each, chosen once.

The live container runs in one slot; a deploy starts the new one in the other.
Fixed ports keep the rendered Caddyfile the same from one deploy to the next.
"""

import json
import random
import socket
from pathlib import Path

from zdd.state import write_json_atomic

SLOTS = ("blue", "green")
SLOTS_FILE = "slots.json"
PORT_RANGE = (20000, 29999)  # below Linux's ephemeral range, where Docker and clients pick ports


def other(slot: str | None) -> str:
    return "green" if slot == "blue" else "blue"


def read_ports(app_dir: Path) -> dict[str, int] | None:
    try:
        return json.loads((app_dir / SLOTS_FILE).read_text())
    except FileNotFoundError:
        return None


def ensure_ports(app_dir: Path, taken: set[int]) -> dict[str, int]:
    """The app's slot ports, choosing free ones (not in ``taken``) the first time."""
    ports = read_ports(app_dir)
    if ports is None:
        ports = {}
        for slot in SLOTS:
            ports[slot] = free_port(taken | set(ports.values()))
        write_json_atomic(app_dir / SLOTS_FILE, ports)
    return ports


def replace_port(app_dir: Path, slot: str, taken: set[int]) -> int:
    """Pick a new port for ``slot`` after its port was found in use by something else."""
    ports = read_ports(app_dir) or {}
    ports[slot] = free_port(taken | set(ports.values()))
    write_json_atomic(app_dir / SLOTS_FILE, ports)
    return ports[slot]


def free_port(taken: set[int], attempts: int = 200) -> int:
    for _ in range(attempts):
        port = random.randint(*PORT_RANGE)
        if port not in taken and _bindable(port):
            return port
    raise OSError(f"no free port found in {PORT_RANGE[0]}-{PORT_RANGE[1]}")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
