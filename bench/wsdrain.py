"""The WebSockets bench: a push of an app with WebSockets open and ordinary requests under
way. Before, the drain waited for every proxied connection to end, and an open WebSocket
never does: each push waited out `drain_timeout`. Now Caddy counts upgraded connections
apart, the drain waits for the ordinary requests, and the old container's SIGTERM lets the
app close its sockets (1001); clients reconnect to the new version.

    bench/run --cases websockets [--sockets 3] [--repeat 5]   figures to the terminal and bench/RESULTS-websockets.md
"""

import argparse
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

import lab
from loadclient import KeepAliveClient

BENCH = Path(__file__).resolve().parent
WSECHO = BENCH.parent / "tests" / "e2e" / "apps" / "wsecho"  # standard-library Python: closes with 1001 on SIGTERM
HOST = "ws.bench.test"
SETTINGS = "watch_seconds = 2\ndrain_timeout = 30\nstop_timeout = 10\n"  # zdd's defaults, written out
BEFORE_S = 35.4   # a push with 3 WebSockets open before this change (issue 22): the whole drain_timeout


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--markdown", type=Path, default=BENCH / "RESULTS-websockets.md")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="zdd-bench-ws-"))
    server = lab.ZddServer(folder)
    server.caddy.start()
    try:
        server.install("wsbench", f"http://{HOST}")
        work = working_copy(folder / "work", server.repo("wsbench"))
        push(work, "v0")
        rounds = [one_push(server, work, f"v{n}", args.sockets) for n in range(1, args.repeat + 1)]
    finally:
        lab.run([str(server.root / "bin" / "zdd"), "destroy", "wsbench", "--yes"])
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return lab.publish(rounds, markdown(rounds, args), args.markdown)


def working_copy(path: Path, remote: Path) -> Path:
    path.mkdir(parents=True)
    for name in ("app.py", "Dockerfile"):
        shutil.copy(WSECHO / name, path / name)
    (path / "zdd.toml").write_text(SETTINGS)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "bench@example.com")
    git(path, "config", "user.name", "zdd bench")
    git(path, "remote", "add", "production", str(remote))
    return path


def git(path: Path, *args: str) -> str:
    done = lab.run(["git", *args], cwd=path)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def push(path: Path, version: str) -> None:
    (path / "VERSION").write_text(version + "\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", version)
    done = lab.run(["git", "push", "-q", "production", "main"], cwd=path, timeout=600)
    if "is live at" not in done.stderr:
        raise RuntimeError(f"the push of {version} did not deploy:\n{done.stderr}")


def open_socket(server, version: str):
    sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=10)
    ws = connect(f"ws://{HOST}/ws", sock=sock, open_timeout=10, ping_interval=None)
    ws.send("hello")
    answer = ws.recv(timeout=5)
    if not answer.startswith(version):
        raise RuntimeError(f"the WebSocket answered {answer!r}, not {version}")
    return ws


def one_push(server, work: Path, version: str, count: int) -> dict:
    """Push ``version`` with ``count`` WebSockets open and a keep-alive client; what it took."""
    previous = f"v{int(version[1:]) - 1}"
    sockets = [open_socket(server, previous) for _ in range(count)]
    client = KeepAliveClient(f"http://127.0.0.1:{server.http_port}", retrying=False, host_header=HOST)
    client.start()
    started = time.monotonic()
    push(work, version)
    pushed_s = time.monotonic() - started
    client.stop()
    codes, reconnect_s = [], []
    for ws in sockets:
        try:
            ws.recv(timeout=15)
        except ConnectionClosed as closed:
            codes.append(closed.rcvd.code if closed.rcvd else None)
        reconnecting = time.monotonic()
        open_socket(server, version).close()
        reconnect_s.append(time.monotonic() - reconnecting)
    steps = server.last_deploy("wsbench")["steps"]
    after = list(steps)[list(steps).index("switch") + 1:]
    return {"push_s": round(pushed_s, 2), "switch_to_end_s": round(sum(steps[s] for s in after), 2),
            "drain_s": steps.get("drain"), "stop_s": steps.get("stop"), "watch_s": steps.get("watch"),
            "closed_with": codes, "reconnect_s": round(max(reconnect_s), 3),
            "requests": client.requests, "failed": len(client.failures)}


def markdown(rounds: list[dict], args) -> str:
    def median(key):
        return round(statistics.median(r[key] for r in rounds), 2)
    stop_timeout = 10
    worst_after = max(r["switch_to_end_s"] for r in rounds)
    closed_ok = all(r["closed_with"] == [1001] * args.sockets for r in rounds)
    failed = sum(r["failed"] for r in rounds)
    lines = ["# A push with WebSockets open", "",
             f"`bench/run --cases websockets --sockets {args.sockets} --repeat {args.repeat}`: the standard-library "
             f"app of `tests/e2e/apps/wsecho` (closes its sockets with 1001 on SIGTERM) behind zdd's Caddy, zdd's "
             f"default timings (`{SETTINGS.strip().replace(chr(10), '`, `')}`); each push with {args.sockets} "
             "WebSockets open and a strict keep-alive client. One run on this machine (2 cores).", "",
             "| figure | median | worst |", "|---|---|---|"]
    for label, key in (("push, s", "push_s"), ("switch to the push's end, s", "switch_to_end_s"),
                       ("drain, s (ordinary requests only)", "drain_s"), ("stop, s (SIGTERM to exit)", "stop_s"),
                       ("a closed client's reconnect to the new version, s", "reconnect_s")):
        lines.append(f"| {label} | {median(key)} | {max(r[key] for r in rounds)} |")
    lines += ["",
              f"- {'MET' if worst_after <= stop_timeout + 2 else 'MISSED'}: the push returns within `stop_timeout` "
              f"({stop_timeout} s) of the switch, plus `watch_seconds` (worst {worst_after} s; before this change "
              f"the drain waited out `drain_timeout`: {BEFORE_S} s for the whole push with 3 sockets open)",
              f"- {'MET' if closed_ok else 'MISSED'}: every WebSocket closed by the app with 1001, and its client "
              "reconnected to the new version",
              f"- {'MET' if failed == 0 else 'MISSED'}: 0 failed ordinary requests ({failed} failed of "
              f"{sum(r['requests'] for r in rounds)})"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
