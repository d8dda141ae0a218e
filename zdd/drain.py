"""Wait for requests in flight on the old container to finish before it is stopped."""

import time
from pathlib import Path

ESTABLISHED = "01"
PROC_TCP = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))


def open_connections(port: int, tables=PROC_TCP) -> int:
    """Established TCP connections whose local end is ``port`` (the old container's host port)."""
    count = 0
    for table in tables:
        try:
            rows = table.read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 3 and fields[3] == ESTABLISHED and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def wait_for_drain(port: int, timeout: float, poll: float = 0.1) -> tuple[bool, float]:
    """Block until no connection to ``port`` is open, or ``timeout`` passes; (drained, seconds)."""
    started = time.monotonic()
    while True:
        waited = time.monotonic() - started
        if open_connections(port) == 0:
            return True, waited
        if waited >= timeout:
            return False, waited
        time.sleep(poll)
