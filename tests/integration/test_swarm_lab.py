"""The multi-node lab that Swarm mode's tests and benchmark will use: scripts/swarm-lab
brings up three dockerd nodes, each in its own network namespace, joined into one swarm
with a registry on the manager; a dnsrr service spans the three; and `down` leaves
nothing behind, also after an `up` that was killed midway."""

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

LAB = Path(__file__).resolve().parents[2] / "scripts" / "swarm-lab"


def lab(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(LAB), *map(str, args)], capture_output=True, text=True, timeout=timeout)


def traces(folder: Path) -> list[str]:
    """What of a lab in ``folder`` the machine still holds: namespaces, processes, mounts."""
    tag = hashlib.sha1(os.path.realpath(folder).encode()).hexdigest()[:6]  # the lab names its netns by it
    netns = [name for name in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
             if name.startswith(f"zddlab-{tag}-")]
    processes = subprocess.run(["pgrep", "-af", str(folder)], capture_output=True, text=True).stdout.splitlines()
    mounts = [line for line in Path("/proc/mounts").read_text().splitlines() if str(folder) in line]
    return netns + [p for p in processes if "pgrep" not in p] + mounts + ([str(folder)] if folder.exists() else [])


@pytest.fixture
def folder():
    """Short: dockerd's unix sockets go four levels below it (pytest's tmp_path is too deep)."""
    parent = Path(tempfile.mkdtemp(prefix="zl-", dir="/tmp"))
    yield parent / "lab"
    shutil.rmtree(parent, ignore_errors=True)


def test_three_nodes_serve_one_service_and_down_leaves_nothing(folder):
    try:
        up = lab("up", "--dir", folder)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "export DOCKER_HOST=unix://" in up.stdout and "export ZDDLAB_REGISTRY=" in up.stdout
        check = lab("check", "--dir", folder)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        down = lab("down", "--dir", folder)
    assert down.returncode == 0, down.stdout + down.stderr
    assert traces(folder) == []


def test_a_folder_too_deep_for_the_daemons_sockets_is_refused_before_anything_starts(tmp_path):
    deep = tmp_path / ("x" * 60) / "lab"
    up = lab("up", "--dir", deep)
    assert up.returncode != 0 and "too long" in up.stderr + up.stdout
    assert traces(deep) == []


def test_down_cleans_up_after_an_up_killed_midway(folder):
    starting = subprocess.Popen([str(LAB), "up", "--dir", str(folder)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    starting.send_signal(signal.SIGKILL)
    starting.wait()
    down = lab("down", "--dir", folder)
    assert down.returncode == 0, down.stdout + down.stderr
    assert traces(folder) == []
