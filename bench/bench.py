"""The zero-downtime benchmark: deploy the same two versions naively, with the blog's
blue/green script and with zdd, under load through Caddy, and compare.

Run it with bench/run (see bench/README.md); --help lists the options.
"""

import argparse
import datetime
import os
import platform
import shlex
import signal
import statistics
import sys
import tempfile
import time
import shutil
from pathlib import Path

import docker

import lab
import report
import testapp
import timeline
from cases import VERSIONS, Blog, Naive, Neighbours, Steady, SwarmPush, SwarmRefused, ZddApp, ZddPush, ZddRollback
from measure import measure, switch_marks

BENCH = Path(__file__).resolve().parent
CASE_NAMES = ("steady", "naive", "blog", "zdd", "zdd-rollback", "zdd-ignore-term", "blog-ignore-term",
              "neighbours", "neighbours-own-ports", "swarm", "swarm-failing", "swarm-parallel")
SWARM_REPLICAS = 3
IMAGE = f"{lab.PREFIX}-prebuilt"


class Env:
    """What the cases share: a temporary folder, the Docker client, the app's start delay,
    the Caddy servers started so far and, when a zdd case asks, one zdd server."""

    def __init__(self, folder: Path, client: docker.DockerClient, start_delay: float):
        self.folder, self.docker, self.start_delay = folder, client, start_delay
        self.processes: list = []  # what close() stops: Caddy servers, zdd servers
        self._zdd = None
        self._swarm = None

    def zdd_server(self) -> lab.ZddServer:
        if self._zdd is None:
            self._zdd = lab.ZddServer(self.folder)
            self._zdd.caddy.start()
            self.processes.append(self._zdd.caddy)
        return self._zdd

    def swarm_server(self) -> lab.SwarmZddServer:
        """A zdd server in Swarm mode, on a three-node lab swarm brought up for it."""
        if self._swarm is None:
            self._swarm = lab.SwarmZddServer(self.folder / "swarm")
            self.processes.append(self._swarm)
        return self._swarm

    def wait_serving(self, site: str, body: str, host: str | None = None, server=None) -> None:
        get = server.http_get if server else lab.http_get
        if not lab.wait_for(lambda: get(site + "/", host=host) == (200, body), timeout=60):
            raise RuntimeError(f"{site} does not serve {body!r}" + (f" for {host}" if host else ""))

    def close(self) -> None:
        for process in self.processes:
            process.stop()
        lab.remove_all(self.docker)


def build_images(env: Env) -> tuple[dict[str, dict[str, str]], float]:
    """The images naive and blog deploy, from the same build context zdd's pushes hold
    (so Docker's cache makes them the same layers). Built before any deploy, not timed in it."""
    started = time.monotonic()
    images = {}
    for variant, ignore_term in (("exits", False), ("ignores", True)):
        images[variant] = {}
        for body in VERSIONS:
            tag = f"{IMAGE}:{body}-{variant}-term"
            context = env.folder / "images" / tag.split(":")[1]
            testapp.write(context, body, env.start_delay, ignore_term)
            lab.build_image(env.docker, context, tag)
            images[variant][body] = tag
    return images, time.monotonic() - started


def make_cases(env: Env, names: list[str], images: dict) -> dict:
    apps = {}

    def zdd_app(ignore_term: bool) -> ZddApp:
        key = "bench-noterm" if ignore_term else "bench"
        apps.setdefault(key, ZddApp(env, key, ignore_term))
        return apps[key]

    def swarm_app() -> ZddApp:
        apps.setdefault("bench-swarm", ZddApp(env, "bench-swarm", False, host="bench-swarm.test",
                                              replicas=SWARM_REPLICAS))
        return apps["bench-swarm"]

    def swarm_app_two_at_a_time() -> ZddApp:
        apps.setdefault("bench-swarm2", ZddApp(env, "bench-swarm2", False, host="bench-swarm2.test",
                                               replicas=SWARM_REPLICAS, parallelism=2))
        return apps["bench-swarm2"]

    def host_app() -> ZddApp:  # the app whose clients the neighbours cases measure
        apps.setdefault("bench-host", ZddApp(env, "bench-host", False, host="bench-host.test"))
        return apps["bench-host"]

    makers = {
        "steady": lambda: Steady(zdd_app(False)),
        "naive": lambda: Naive(env, images["exits"]),
        "blog": lambda: Blog(env, images["exits"], ""),
        "zdd": lambda: ZddPush(zdd_app(False)),
        "zdd-rollback": lambda: ZddRollback(zdd_app(False)),
        "zdd-ignore-term": lambda: ZddPush(zdd_app(True)),
        "blog-ignore-term": lambda: Blog(env, images["ignores"], "-noterm"),
        "neighbours": lambda: Neighbours(host_app(), own_port=False),
        "neighbours-own-ports": lambda: Neighbours(host_app(), own_port=True),
        "swarm": lambda: SwarmPush(swarm_app()),
        "swarm-failing": lambda: SwarmRefused(swarm_app()),
        "swarm-parallel": lambda: SwarmPush(swarm_app_two_at_a_time()),
    }
    return {name: makers[name]() for name in names}


def run_deploys(cases: dict, args) -> dict[str, list[dict]]:
    """Round-robin over the cases, ``repeat`` times, so drifts in the machine's load hit all alike."""
    results = {name: [] for name in cases}
    for repeat in range(1, args.repeat + 1):
        for name, case in cases.items():
            body, action = case.next_deploy()
            figures = measure(case.site, action, body, args.clients, args.long_clients, args.pause,
                              getattr(case, "host", None), getattr(case, "netns", None))
            figures.update(case.details(), case=name, repeat=repeat, to=body)
            if "zdd_steps" in figures:
                figures.update(zdd_figures(figures))
            figures["timeline"]["marks"] = switch_marks(figures, case.caddy.reload_times())
            results[name].append(figures)
            print(progress(figures), flush=True)
    return results


def zdd_figures(f: dict) -> dict:
    """zdd's overhead: push-to-serving minus what the app and the engine take (build, start,
    health); and when, from the push, zdd's first line and its switch line reached the pusher.
    In Swarm mode, the rollout's length instead, and its start as the switch."""
    steps, timeline = f["zdd_steps"], f["push_timeline"]
    if "rollout" in steps:
        return {"swarm_rollout_s": steps["rollout"], "zdd_first_line_s": timeline[0][0],
                "zdd_switch_line_s": next(t for t, text in timeline if text.startswith("Rolling web"))}
    return {
        "zdd_overhead_s": round(f["push_to_serving_s"] - steps["build"] - steps["start"] - steps["health"], 3),
        "zdd_first_line_s": timeline[0][0],
        "zdd_switch_line_s": next(t for t, text in timeline if text.startswith("Switching traffic")),
    }


def progress(f: dict) -> str:
    line = (f"  {f['case']:<17} {f['repeat']}  ->{f['to']}  strict {f['strict_failed']:>3}/{f['strict_requests']:<5}"
            f" retrying {f['retrying_failed']:>3}/{f['retrying_requests']:<5}"
            f" long {f['long_in_flight_lost']}/{f['long_in_flight']} in flight, {f['long_failed']}/{f['long_requests']}"
            f"  action {f['action_s']:.2f}s")
    if f["push_to_serving_s"] is not None:
        line += f"  serving {f['push_to_serving_s']:.2f}s"
    if "zdd_overhead_s" in f:
        line += f"  overhead {f['zdd_overhead_s']:.2f}s"
    if "swarm_rollout_s" in f:
        line += f"  rollout {f['swarm_rollout_s']:.2f}s"
    if "caddy_reloads" in f:
        line += f"  Caddy reloads {f['caddy_reloads']}"
    if "web_nodes" in f:
        line += f"  web on {','.join(f['web_nodes'])}"
    return line


def machine(client: docker.DockerClient) -> dict:
    meminfo = Path("/proc/meminfo").read_text().split("\n")[0].split()
    cpu = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
           if line.startswith("model name")]
    checkout = lab.CHECKOUT
    head = lab.run(["git", "-C", str(checkout), "rev-parse", "--short=12", "HEAD"]).stdout.strip()
    dirty = lab.run(["git", "-C", str(checkout), "status", "--porcelain", "--", "zdd", "templates",
                     "install.sh", "hooks"]).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu[0] if cpu else platform.machine(),
        "memory_gib": round(int(meminfo[1]) / 1024 / 1024, 1),
        "kernel": platform.release(),
        "caddy": lab.run(["caddy", "version"]).stdout.split()[0],
        "docker": client.version()["Version"],
        "python": platform.python_version(),
        "zdd_commit": head + (" with uncommitted changes to zdd" if dirty else ""),
        "load_average_at_start": os.getloadavg(),
        "other_containers_at_start": sorted(c.name for c in client.containers.list(ignore_removed=True)
                                            if not lab.ours(c.name)),
    }


def busy_warning(info: dict) -> str | None:
    """Other work on the machine inflates every timing: say so where the results are shown."""
    load, others = info["load_average_at_start"][0], info["other_containers_at_start"]
    if load < 1.0 and not others:
        return None
    return (f"Warning: the machine was busy when the run started (load average {load:.1f}, "
            f"{len(others)} other containers running): timings are inflated.")


def render(results, titles, app_start, verdicts, args, warning, pictures) -> list[str]:
    lines = [*([warning, ""] if warning else []),
             f"Deploys under load through Caddy: {args.clients} strict + {args.clients} retrying keep-alive "
             f"clients on /, {args.long_clients} on the {testapp.SLOW_SECONDS} s endpoint; app start delay "
             f"{args.start_delay} s (measured start: {app_start:.2f} s). Each cell: median (worst) "
             f"of {args.repeat} deploys.", ""]
    lines += report.results_table(results, titles)
    if pictures:
        lines += ["", report.pictures_line(pictures, titles)]
    steps = report.steps_table(results, titles)
    if steps:
        lines += ["", *steps]
    lines += ["", report.requests_line(results)]
    if verdicts:
        lines += ["", "zdd's targets:", *report.targets_lines(verdicts)]
    return lines


def write_results_md(path: Path, lines: list[str], command: str, info: dict, when: str,
                     pictures_section: list[str]) -> None:
    text = "\n".join([
        "# Zero-downtime benchmark: results",
        "",
        f"Run {when} with:",
        "",
        f"    {command}",
        "",
        f"Machine: {info['nproc']} cores ({info['cpu']}), {info['memory_gib']} GiB memory, "
        f"Linux {info['kernel']}, Docker engine {info['docker']}, Caddy {info['caddy']}, "
        f"Python {info['python']}; zdd at {info['zdd_commit']}.",
        "",
        "What each figure means: bench/README.md. Raw figures: the JSON this run wrote "
        "(bench/results/, not committed).",
        "",
        *lines,
        "",
        *pictures_section,
    ])
    path.write_text(text)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n\n")[0],
                                     epilog="example: bench/run --repeat 1 --cases zdd,blog")
    parser.add_argument("--repeat", type=int, default=5, help="deploys per case (default 5)")
    parser.add_argument("--clients", type=int, default=8,
                        help="strict clients, and as many retrying ones (default 8 each)")
    parser.add_argument("--long-clients", type=int, default=4,
                        help="clients looping on the 2 s endpoint (default 4)")
    parser.add_argument("--pause", type=float, default=0.01, help="each client's pause between requests, s")
    parser.add_argument("--start-delay", type=float, default=3.0, help="the app's start time, s (default 3)")
    parser.add_argument("--cases", default=",".join(CASE_NAMES),
                        help=f"comma-separated, run in this order (default: {','.join(CASE_NAMES)})")
    parser.add_argument("--json", type=Path, default=BENCH / "results" / "latest.json",
                        help="where to write the raw figures (default bench/results/latest.json)")
    parser.add_argument("--markdown", type=Path, default=BENCH / "RESULTS.md",
                        help="where to write the summary (default bench/RESULTS.md)")
    args = parser.parse_args(argv)
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(args.cases) - set(CASE_NAMES)
    if unknown or not args.cases:
        parser.error(f"unknown case(s) {', '.join(sorted(unknown))}: choose from {', '.join(CASE_NAMES)}")
    if args.repeat < 1 or args.clients < 1 or args.long_clients < 1:
        parser.error("--repeat, --clients and --long-clients must be at least 1")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    command = shlex.join(["bench/run", *argv])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up as on Ctrl-C
    client = docker.from_env()
    leftovers = lab.remove_all(client)
    if leftovers:
        print(f"removed {len(leftovers)} leftovers of an earlier run: {', '.join(leftovers[:5])} ...")
    info = machine(client)
    warning = busy_warning(info)
    if warning:
        print(warning)
    folder = Path(tempfile.mkdtemp(prefix=f"{lab.PREFIX}-"))
    env = Env(folder, client, args.start_delay)
    ok = False
    try:
        print(f"==> Building the test app's images (working folder {folder})", flush=True)
        images, build_s = build_images(env)
        print("==> Measuring the app's own start time (docker run to first answer)", flush=True)
        starts = [round(lab.app_start_seconds(client, images["exits"]["v1"]), 3) for _ in range(3)]
        app_start = statistics.median(starts)
        hook_start = lab.hook_start_seconds()
        cases = make_cases(env, args.cases, images)
        print("==> Setting up " + ", ".join(args.cases) + " (zdd: install.sh and two first pushes per app)", flush=True)
        for case in cases.values():
            case.setup()
        print(f"==> Deploying, {args.repeat} times per case", flush=True)
        started = time.monotonic()
        results = run_deploys(cases, args)
        titles = {name: case.title for name, case in cases.items()}
        verdicts = report.targets(results, app_start, hook_start)
        when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        raw = {"command": command, "when": when, "machine": info, "settings": vars(args) | {"json": str(args.json),
               "markdown": str(args.markdown)}, "app_start_s": starts, "hook_start_s": hook_start, "image_build_s": round(build_s, 2),
               "deploy_phase_s": round(time.monotonic() - started, 1),
               "load_average_at_end": os.getloadavg(), "titles": titles, "deploys": results,
               "targets": [{"verdict": v, "target": t, "evidence": e} for v, t, e in verdicts]}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(report.raw_json(raw))
        pictures = {case: path.name for case, path in
                    timeline.write_pictures(results, titles, args.markdown.parent).items()}
        lines = render(results, titles, app_start, verdicts, args, warning, pictures)
        print("\n" + "\n".join(lines))
        write_results_md(args.markdown, lines, command, info, when, report.pictures_section(pictures, titles))
        print(f"\nwrote {args.json}, {args.markdown} and beside it {', '.join(pictures.values())}")
        ok = True
        return 0
    finally:
        env.close()
        if ok:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"bench: stopped early; logs kept in {folder}", file=sys.stderr)


if __name__ == "__main__":
    if sys.argv[1:3] == ["--cases", "scale"]:  # the many-apps bench: a script of its own (bench/scale.py)
        import scale
        sys.exit(scale.main(sys.argv[3:]))
    if sys.argv[1:3] == ["--cases", "websockets"]:  # a push with WebSockets open (bench/wsdrain.py)
        import wsdrain
        sys.exit(wsdrain.main(sys.argv[3:]))
    sys.exit(main(sys.argv[1:]))
