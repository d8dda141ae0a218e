"""The many-apps bench: how zdd's own costs grow with the apps on one server. One app is
measured beside no other app, then beside 49 more (small busybox apps, each addressed by a
host name on the shared sites): its push's overhead, `zdd status APP`, `zdd apps`, and
Caddy's per-request time through the host lookup and its memory.

    bench/run --cases scale [--apps 50] [--repeat 5]   figures to the terminal and bench/RESULTS-scale.md
"""

import argparse
import http.client
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lab

BENCH = Path(__file__).resolve().parent
APP_STEPS = ("build", "start", "health", "watch", "drain", "stop")  # the app's and the chosen waits, not zdd's
TARGET_GROWTH = 1.2   # each figure with many apps at most 20% above the same with one
TARGET_APPS_S = 2.0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5, help="timings per figure (the median is kept)")
    parser.add_argument("--markdown", type=Path, default=BENCH / "RESULTS-scale.md")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="zdd-bench-scale-"))
    server = lab.ZddServer(folder)
    server.caddy.start()
    apps = [f"scale{n}" for n in range(args.apps)]
    try:
        copy = add_app(server, folder, apps[0])
        figures = {"1": measure(server, copy, apps[0], args.repeat)}
        for number, app in enumerate(apps[1:], start=2):
            add_app(server, folder, app)
            if number % 10 == 0:
                print(f"  {number} apps", flush=True)
        figures[str(args.apps)] = measure(server, copy, apps[0], args.repeat)
    finally:
        for app in apps:
            subprocess.run([str(server.root / "bin" / "zdd"), "destroy", app, "--yes"], capture_output=True)
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return lab.publish(figures, markdown(figures, args), args.markdown)


def add_app(server, folder: Path, app: str) -> lab.WorkingCopy:
    server.install(app, f"http://{app}.scale.test")
    # Docker's default 30 s between health checks, as most apps have: at 1 s, 50 apps' checks
    # alone (an exec each) keep a 2-core machine busy, which is what the bench would measure
    copy = lab.WorkingCopy(folder / f"work-{app}", server.repo(app), 0.0, False, health_interval="30s")
    copy.commit(app)
    status, lines = copy.push("main")
    if status != 0 or not any("is live at" in text for _, text in lines):
        raise RuntimeError(f"the first push of {app} did not deploy:\n" + "\n".join(t for _, t in lines))
    return copy


def measure(server, copy: lab.WorkingCopy, app: str, repeat: int) -> dict:
    print(f"measuring {app} beside {len(json.loads(server.zdd('apps', '--json')))} app(s)", flush=True)
    overheads, pushes, zdd_steps = [], [], []
    for n in range(3):
        copy.commit(f"{app} v{n}")
        started = time.monotonic()
        copy.push("main")
        pushes.append(time.monotonic() - started)
        steps = server.last_deploy(app)["steps"]
        zdd_steps.append({name: s for name, s in steps.items() if name not in APP_STEPS})
        overheads.append(sum(zdd_steps[-1].values()))
    latencies = request_times(server, f"{app}.scale.test", 500)
    return {
        "push_s": median(pushes), "overhead_s": median(overheads),
        "status_s": median(timed(server, "status", app) for _ in range(repeat)),
        "apps_s": median(timed(server, "apps") for _ in range(repeat)),
        "request_p50_ms": round(statistics.median(latencies) * 1000, 2),
        "request_p99_ms": round(statistics.quantiles(latencies, n=100)[98] * 1000, 2),
        "caddy_rss_mb": caddy_rss_mb(server),
        "zdd_steps_s": {name: median(s[name] for s in zdd_steps) for name in zdd_steps[0]},
    }


def timed(server, *args: str) -> float:
    started = time.monotonic()
    server.zdd(*args)
    return time.monotonic() - started


def median(values) -> float:
    return round(statistics.median(list(values)), 3)


def request_times(server, host: str, count: int) -> list[float]:
    """Seconds per GET on one keep-alive connection to the shared HTTP site."""
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    times = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            connection.request("GET", "/", headers={"Host": host})
            response = connection.getresponse()
            response.read()
            times.append(time.perf_counter() - started)
            if response.status != 200:
                raise RuntimeError(f"{host} answered {response.status}")
    finally:
        connection.close()
    return times


def caddy_rss_mb(server) -> float:
    for line in Path(f"/proc/{server.caddy.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def verdict(one: float, many: float) -> str:
    return "MET" if many <= one * TARGET_GROWTH else "MISSED"


def markdown(figures: dict, args) -> str:
    one, many = figures["1"], figures[str(args.apps)]
    rows = [("push to serving, s (the app's own start included)", "push_s", None),
            ("zdd's overhead in that push, s (steps but build, start, health, watch, drain, stop)", "overhead_s",
             verdict(one["overhead_s"], many["overhead_s"])),
            ("`zdd status APP`, s", "status_s", verdict(one["status_s"], many["status_s"])),
            ("`zdd apps`, s", "apps_s", verdict(one["apps_s"], many["apps_s"]) if many["apps_s"] < TARGET_APPS_S
             else "MISSED"),
            ("a request through the host lookup, p50 ms", "request_p50_ms",
             verdict(one["request_p50_ms"], many["request_p50_ms"])),
            ("a request through the host lookup, p99 ms", "request_p99_ms",
             verdict(one["request_p99_ms"], many["request_p99_ms"])),
            ("Caddy's memory (RSS), MB", "caddy_rss_mb", None)]
    lines = ["# Many apps on one server", "",
             f"`bench/run --cases scale --apps {args.apps} --repeat {args.repeat}`: one small busybox app, "
             f"addressed by a host name, measured alone, then beside {args.apps - 1} more like it (each deployed "
             f"once). Medians: 3 pushes, {args.repeat} runs of each command, 500 requests on one keep-alive "
             f"connection. Target: with {args.apps} apps, none more than {TARGET_GROWTH - 1:.0%} above the same "
             f"with 1, and `zdd apps` under {TARGET_APPS_S:.0f} s. One run on this machine (2 cores).", "",
             f"| figure | 1 app | {args.apps} apps | target |", "|---|---|---|---|"]
    for label, key, outcome in rows:
        lines.append(f"| {label} | {one[key]} | {many[key]} | {outcome or '-'} |")
    lines += ["", "zdd's steps in that push, median s (1 app -> many): " + ", ".join(
        f"{name} {one['zdd_steps_s'][name]} -> {many['zdd_steps_s'].get(name)}" for name in one["zdd_steps_s"])]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
