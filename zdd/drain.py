"""Wait for requests in flight on the old container to finish before it is stopped."""

import time
from typing import Callable

SETTLE = 0.1  # a request routed just before the switch is counted within microseconds


def wait_for_drain(in_flight: Callable[[], int | None], timeout: float, poll: float = 0.05) -> tuple[str, float]:
    """Poll until nothing is in flight twice in a row, or ``timeout`` passes.

    Returns ("drained" | "timeout" | "unknown", seconds waited). "unknown": the count
    could not be read, so the whole timeout (at most 5 s) was waited instead.
    """
    started = time.monotonic()
    time.sleep(min(SETTLE, timeout))
    quiet = 0
    while True:
        waited = time.monotonic() - started
        count = in_flight()
        if count is None:
            time.sleep(max(0.0, min(timeout, 5.0) - waited))
            return "unknown", time.monotonic() - started
        quiet = quiet + 1 if count == 0 else 0
        if quiet >= 2:
            return "drained", waited
        if waited >= timeout:
            return "timeout", waited
        time.sleep(poll)
