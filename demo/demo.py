"""zdd's demo: a server in a temporary folder, a real Caddy, real git pushes.

Run through demo/run, which first installs and starts what the machine lacks.
Uses only the standard library: install.sh installs zdd itself.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from loadclient import KeepAliveClient  # noqa: E402
from probes import free_port  # noqa: E402

APP = "hello"
DEFAULT_DIR = Path("/tmp/zdd-demo")


def say(text: str) -> None:
    print(f"\n\033[1m### {text}\033[0m", flush=True)


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode().strip()


def run(cmd, **kwargs) -> None:
    subprocess.run(cmd, check=True, **kwargs)


def stop(base: Path) -> None:
    """Stop a previous demo: its Caddy, its containers; then remove its folder."""
    pid_file = base / "caddy.pid"
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=zdd.app={APP}"],
                         capture_output=True, text=True).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
    images = subprocess.run(["docker", "images", "-q", "--filter", f"label=zdd.app={APP}"],
                            capture_output=True, text=True).stdout.split()
    if images:
        subprocess.run(["docker", "rmi", "-f", *sorted(set(images))], capture_output=True)
    shutil.rmtree(base, ignore_errors=True)


def start_caddy(base: Path, admin: str) -> None:
    caddyfile = base / "Caddyfile"
    caddyfile.write_text(f"{{\n\tadmin {admin}\n}}\n")
    home = base / "caddy-home"
    home.mkdir()
    process = subprocess.Popen(
        ["caddy", "run", "--config", str(caddyfile), "--adapter", "caddyfile"],
        stdout=open(base / "caddy.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home), "XDG_CONFIG_HOME": str(home)})
    (base / "caddy.pid").write_text(str(process.pid))
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://{admin}/config/", timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"demo: Caddy did not start; see {base / 'caddy.log'}")


def make_working_copy(work: Path, remote: Path) -> None:
    shutil.copytree(REPO / "examples" / APP, work)
    shutil.copy("/bin/busybox", work / "busybox")
    git = ["git", "-C", str(work)]
    run([*git, "init", "-q", "-b", "main"])
    run([*git, "config", "user.email", "demo@example.com"])
    run([*git, "config", "user.name", "zdd demo"])
    run([*git, "remote", "add", "production", str(remote)])
    run([*git, "add", "-A"])
    run([*git, "commit", "-q", "-m", "v1"])
    run([*git, "tag", "v1"])


def push(work: Path, ref: str) -> float:
    print(f"$ git push production {ref}", flush=True)
    started = time.monotonic()
    run(["git", "-C", str(work), "push", "production", ref])
    return time.monotonic() - started


def push_under_load(work: Path, site: str) -> None:
    (work / "www" / "index.html").write_text("hello from v2\n")
    run(["git", "-C", str(work), "commit", "-q", "-am", "v2"])
    clients = [KeepAliveClient(site, retrying=False) for _ in range(4)]
    clients += [KeepAliveClient(site, retrying=True) for _ in range(4)]
    clients += [KeepAliveClient(site, path="/cgi-bin/slow", retrying=False) for _ in range(2)]
    for client in clients:
        client.start()
    time.sleep(1)
    push(work, "main")
    time.sleep(2.5)  # let the slow requests that began on v1 finish
    for client in clients:
        client.stop()
    bodies = sum((c.bodies for c in clients), Counter())
    for kind, group in (("strict", clients[:4]), ("retrying", clients[4:8]), ("slow (2 s)", clients[8:])):
        total = sum(c.requests for c in group)
        failed = sum(len(c.failures) for c in group)
        print(f"    {kind:<11} clients: {total:5d} requests, {failed} failed")
    print(f"    answers seen: {dict(bodies)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"where the demo server lives ({DEFAULT_DIR})")
    parser.add_argument("--stop", action="store_true", help="stop a running demo and remove its folder")
    args = parser.parse_args()
    base = args.dir
    stop(base)
    if args.stop:
        print("demo stopped")
        return 0
    base.mkdir(parents=True)
    admin, site = f"127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "ZDD_ROOT": str(base / "zdd"), "ZDD_CADDYFILE": str(base / "Caddyfile"),
           "ZDD_CADDY_ADMIN": admin, "ZDD_HTTP_PORT": str(free_port()), "ZDD_HTTPS_PORT": str(free_port()),
           "ZDD_TLS": "internal"}  # loopback ports only: the demo's shared sites stay off 80 and 443
    zdd = str(base / "zdd" / "bin" / "zdd")

    say(f"Starting Caddy (admin {admin}) and setting up the app with install.sh")
    start_caddy(base, admin)
    run(["bash", str(REPO / "install.sh"), APP, "--domain", site], env=env)
    make_working_copy(base / "work", base / "zdd" / f"{APP}.git")

    say("First deploy: git push production main")
    push(base / "work", "main")
    print(f"$ curl {site}\n{get(site)}")

    say("Second version, pushed while 10 clients keep requesting")
    push_under_load(base / "work", site)
    print(f"$ curl {site}\n{get(site)}")

    say("Roll back by pushing the tag v1: the image is still there, so no build")
    seconds = push(base / "work", "v1")
    print(f"$ curl {site}\n{get(site)}    (push to serving: {seconds:.1f}s)")

    say("What is live, and the history")
    run([zdd, "status", APP])
    run([zdd, "history", APP])
    live = json.loads(subprocess.run([zdd, "status", APP, "--json"], capture_output=True, text=True).stdout)
    print(f"\n{APP} is serving {live['sha'][:12]} at {site}")
    print(f"Try: curl {site}   |   {zdd} --help   |   stop it all: demo/run --stop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
