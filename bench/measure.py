"""Load through Caddy while one deploy runs, and the figures of that deploy.

Times are time.monotonic(). t0 is when the deploy action starts; "serving" is when a
client first got the new version's body; "done" is the later of the action's end and
serving. Failures count from t0 until the load stops (a tail after done, so long
requests that were in flight at the switch finish); latencies cover [t0, done].
"The switch" is the first moment the deploy showed: the new body served, or a request
failed, whichever came first; long requests in flight then are the ones a deploy must
not lose.
"""

import math
import statistics
import time
from typing import Callable

import testapp
from loadclient import KeepAliveClient, Record

WARMUP = testapp.SLOW_SECONDS + 0.5  # every long-request client has one in flight at t0
TAIL = testapp.SLOW_SECONDS + 0.5
SERVING_TIMEOUT = 90.0
LONG_PAUSE = 0.1
BIN_S = 0.1  # the timeline counts requests per bin, by the time they finished
BEFORE_S = 1.0  # and starts this long before t0


class Load:
    """``clients`` strict and ``clients`` retrying keep-alive clients on /, plus ``slow``
    retrying clients on the 2 s endpoint, started a fraction of 2 s apart."""

    def __init__(self, site: str, clients: int, slow: int, pause: float, host: str | None = None,
                 netns: str | None = None):
        options = dict(host_header=host, netns=netns)
        self.strict = [KeepAliveClient(site, retrying=False, pause=pause, **options) for _ in range(clients)]
        self.retrying = [KeepAliveClient(site, retrying=True, pause=pause, **options) for _ in range(clients)]
        self.slow = [KeepAliveClient(site, path=testapp.SLOW_PATH, retrying=True, pause=LONG_PAUSE, **options)
                     for _ in range(slow)]

    def start(self) -> None:
        for client in self.strict + self.retrying:
            client.start()
        for client in self.slow:
            client.start()
            time.sleep(testapp.SLOW_SECONDS / len(self.slow))

    def stop(self) -> None:
        everyone = self.strict + self.retrying + self.slow
        for client in everyone:
            client.halt()
        for client in everyone:
            client.join(timeout=30)

    def first_served(self, body: str, since: float) -> float | None:
        times = [r.finished for c in self.strict + self.retrying for r in list(c.records)
                 if r.ok and r.text == body and r.finished >= since]
        return min(times, default=None)


def measure(site: str, action: Callable[[], dict], new_body: str, clients: int, slow: int,
            pause: float, host: str | None = None, netns: str | None = None) -> dict:
    """Run ``action`` (the deploy) under load on ``site`` (as ``host``, if given; from the
    network namespace ``netns``, if given); return its figures and what it returned."""
    load = Load(site, clients, slow, pause, host, netns)
    load.start()
    time.sleep(WARMUP)
    t0, t0_unix = time.monotonic(), time.time()
    try:
        outcome = action()
        action_end = time.monotonic()
        deadline = action_end + SERVING_TIMEOUT
        while load.first_served(new_body, t0) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        serving = load.first_served(new_body, t0)
        done = max(action_end, serving or action_end)
        time.sleep(TAIL)
    finally:
        stopping = time.monotonic()
        load.stop()
    if serving is None:
        raise RuntimeError(f"{new_body!r} was not served within {SERVING_TIMEOUT:.0f}s of the deploy's end")
    # what the action returns comes last: it may blank a figure that does not apply to it
    return {**figures(load, t0, serving, done), "push_to_serving_s": round(serving - t0, 3),
            "action_s": round(action_end - t0, 3),
            "timeline": request_timeline(load, t0, t0_unix, action_end, stopping), **outcome}


def figures(load: Load, t0: float, serving: float, done: float) -> dict:
    strict, retrying, slow = (_records(group) for group in (load.strict, load.retrying, load.slow))
    after = lambda records: [r for r in records if r.finished >= t0]
    failed = lambda records: [r for r in after(records) if not r.ok]
    strict_failed = failed(strict)
    switch = min([serving, *(r.finished for r in failed(strict + retrying + slow))])
    in_flight = [r for r in slow if r.started < switch <= r.finished]
    window = (max(r.finished for r in strict_failed) - min(r.started for r in strict_failed)) if strict_failed else 0.0
    during = [r.finished - r.started for r in strict + retrying if r.finished >= t0 and r.started <= done]
    before = [r for r in strict + retrying + slow if r.finished < t0 and not r.ok]
    return {
        "strict_failed": len(strict_failed), "strict_requests": len(after(strict)),
        "retrying_failed": len(failed(retrying)), "retrying_requests": len(after(retrying)),
        "long_failed": len(failed(slow)), "long_requests": len(after(slow)),
        "long_in_flight": len(in_flight), "long_in_flight_lost": sum(not r.ok for r in in_flight),
        "failure_window_s": round(window, 3),
        "latency_p50_ms": _ms(percentile(during, 50)), "latency_p99_ms": _ms(percentile(during, 99)),
        "latency_max_ms": _ms(max(during, default=0.0)),
        "failed_before_deploy": len(before),
        "failure_samples": sorted({r.text[:120] for r in failed(strict + retrying + slow)})[:5],
    }


def request_timeline(load: Load, t0: float, t0_unix: float, action_end: float, stopping: float) -> dict:
    """Requests ok and failed per kind of client and per BIN_S, from BEFORE_S before t0 until
    the load stopped; the marks (the switch) are added by the caller, who knows the case."""
    start = t0 - BEFORE_S
    groups = {"strict": load.strict, "retrying": load.retrying, "long": load.slow}
    records = {kind: [r for r in _records(clients) if r.finished >= start] for kind, clients in groups.items()}
    count = bin_index(max((r.finished for rs in records.values() for r in rs), default=start), start) + 1
    return {"bin_s": BIN_S, "first_bin_s": -BEFORE_S, "t0_unix": round(t0_unix, 3),
            "command_returned_s": round(action_end - t0, 3), "load_stops_s": round(stopping - t0, 3),
            "kinds": {kind: binned(rs, start, count) for kind, rs in records.items()}, "marks": []}


def switch_marks(f: dict, caddy_reloads: list[float]) -> list[tuple[float, str]]:
    """The moments of the switch on the deploy's timeline: Caddy loading a new config, zdd's
    "Switching traffic" line reaching the pusher, a client first getting the new version."""
    start_unix = f["timeline"]["t0_unix"] + f["timeline"]["first_bin_s"]
    marks = [(round(t - f["timeline"]["t0_unix"], 3), "Caddy reload") for t in caddy_reloads if t >= start_unix]
    if "zdd_switch_line_s" in f:
        what = "Swarm starts rolling web" if "swarm_rollout_s" in f else "zdd: Switching traffic"
        marks.append((f["zdd_switch_line_s"], what))
    if "swarm_rollout_s" in f:
        marks.append((round(f["zdd_switch_line_s"] + f["swarm_rollout_s"], 3), "every replica rolled"))
    if f["push_to_serving_s"] is not None:
        marks.append((f["push_to_serving_s"], f"{f['to']} first served"))
    return sorted(marks)


def bin_index(finished: float, start: float) -> int:
    return math.floor((finished - start) / BIN_S)


def binned(records: list[Record], start: float, count: int) -> dict[str, list[int]]:
    """How many of ``records`` finished ok, and how many failed, in each of ``count`` bins from ``start``."""
    ok, failed = [0] * count, [0] * count
    for record in records:
        index = bin_index(record.finished, start)
        if 0 <= index < count:
            (ok if record.ok else failed)[index] += 1
    return {"ok": ok, "failed": failed}


def _records(clients: list[KeepAliveClient]) -> list[Record]:
    return [record for client in clients for record in client.records]


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def median_and_worst(values: list[float]) -> tuple[float, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.median(values), max(values)
