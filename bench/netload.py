"""Keep-alive clients that run until a line arrives on stdin, then print what they saw as
JSON: for the tests and the benchmark of Swarm mode, run inside the lab's manager namespace.

    netload.py URL [--host HOST] [--clients N]
"""

import argparse
import json
import sys
import time

from loadclient import KeepAliveClient


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--host")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--pause", type=float, default=0.01)
    args = parser.parse_args()
    kinds = {"strict": False, "retrying": True}
    clients = {kind: [KeepAliveClient(args.url, retrying=retrying, pause=args.pause, host_header=args.host)
                      for _ in range(args.clients)] for kind, retrying in kinds.items()}
    started = time.monotonic()
    for group in clients.values():
        for client in group:
            client.start()
    print("started", flush=True)
    sys.stdin.readline()
    for group in clients.values():
        for client in group:
            client.stop()
    print(json.dumps({kind: summary(group, started) for kind, group in clients.items()}))
    return 0


def summary(group: list, started: float) -> dict:
    bodies: dict[str, int] = {}
    for client in group:
        for body, count in client.bodies.items():
            bodies[body] = bodies.get(body, 0) + count
    failures = [failure for client in group for failure in client.failures]
    return {"requests": sum(client.requests for client in group), "failed": len(failures),
            "failures": failures[:20], "bodies": bodies, "seconds": round(time.monotonic() - started, 1)}


if __name__ == "__main__":
    sys.exit(main())
