"""The three-node Swarm lab (scripts/swarm-lab) as the tests and the benchmark use it:
brought up in a short folder of its own, torn down completely, and a way to send HTTP
from inside the manager's network namespace (Caddy's container publishes its ports there)."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAB = REPO / "scripts" / "swarm-lab"
BENCH = REPO / "bench"


class SwarmLab:
    def __init__(self):
        self.parent = Path(tempfile.mkdtemp(prefix="zl-", dir="/tmp"))  # short: dockerd's sockets go below it
        self.folder = self.parent / "lab"
        self.env: dict[str, str] = {}

    def __enter__(self) -> "SwarmLab":
        up = subprocess.run([str(LAB), "up", "--dir", str(self.folder)], capture_output=True, text=True, timeout=300)
        if up.returncode != 0:
            self.down()
            raise RuntimeError(f"swarm-lab up failed:\n{up.stdout}{up.stderr}")
        self.env = dict(re.findall(r"^export (\w+)='?([^'\n]*)'?$", up.stdout, re.M))
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    def down(self) -> None:
        down = subprocess.run([str(LAB), "down", "--dir", str(self.folder)], capture_output=True, text=True,
                              timeout=300)
        shutil.rmtree(self.parent, ignore_errors=True)
        if down.returncode != 0:
            raise RuntimeError(f"swarm-lab down failed:\n{down.stdout}{down.stderr}")

    @property
    def docker_host(self) -> str:
        return self.env["DOCKER_HOST"]

    @property
    def registry(self) -> str:
        return self.env["ZDDLAB_REGISTRY"]

    @property
    def manager_netns(self) -> str:
        tag = hashlib.sha1(os.path.realpath(self.folder).encode()).hexdigest()[:6]  # how the lab names them
        return f"zddlab-{tag}-node1"

    def inside(self, command: list[str]) -> list[str]:
        """``command`` run in the manager's network namespace."""
        return ["nsenter", f"--net=/run/netns/{self.manager_netns}", *command]

    def http_get(self, url: str, host: str | None = None, timeout: float = 5.0) -> tuple[int, str]:
        """probes.http_get from inside the manager's network namespace."""
        code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from probes import http_get; "
                "print(json.dumps(http_get(sys.argv[2], float(sys.argv[3]), sys.argv[4] or None)))")
        done = subprocess.run(self.inside([sys.executable, "-c", code, str(BENCH), url, str(timeout), host or ""]),
                              capture_output=True, text=True, timeout=timeout + 30)
        if done.returncode != 0:
            return 0, done.stderr.strip()
        status, body = json.loads(done.stdout)
        return status, body

    def load(self, url: str, host: str | None, clients: int = 4) -> "InsideLoad":
        return InsideLoad(self, url, host, clients)


class InsideLoad:
    """Keep-alive clients (bench/netload.py) in the manager's namespace until stopped."""

    def __init__(self, lab: SwarmLab, url: str, host: str | None, clients: int):
        command = [sys.executable, str(BENCH / "netload.py"), url, "--clients", str(clients)]
        if host:
            command += ["--host", host]
        self.process = subprocess.Popen(lab.inside(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)
        if self.process.stdout.readline().strip() != "started":
            self.process.kill()
            raise RuntimeError("the load clients did not start")

    def stop(self) -> dict:
        """{"requests": N, "failed": N, "failures": [...], "bodies": {body: count}} per kind."""
        output, _ = self.process.communicate("stop\n", timeout=120)
        return json.loads(output)
