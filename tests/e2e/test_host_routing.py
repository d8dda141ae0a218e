"""Apps addressed by host name share one HTTP and one HTTPS site: installing, first-deploying,
re-addressing and destroying one app reloads nothing, so another app under keep-alive load
with WebSockets open loses nothing. On Debian's Caddy 2.6.2 and a newer one."""

import contextlib
import json
import os
import shutil
import socket
import ssl
import sys
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from conftest import REPO, AppRepo, Server, expect, http_get, pushed_live
from loadclient import KeepAliveClient

pytestmark = pytest.mark.e2e
CADDIES = {"debian": Path("/usr/bin/caddy"), "pypi": Path(sys.prefix) / "bin" / "caddy"}
WSECHO = REPO / "tests" / "e2e" / "apps" / "wsecho"


@pytest.fixture(scope="module", params=sorted(CADDIES))
def host_server(request, tmp_path_factory, docker_client, python_image):
    assert CADDIES[request.param].exists(), "tests/run installs both Caddies"
    server = Server(tmp_path_factory.mktemp(f"hosts-{request.param}"), CADDIES[request.param])
    server.start_caddy()
    yield server
    for app in server.apps:
        server.zdd("destroy", app, "--yes")
    server.stop_caddy()


def request(server: Server, host: str, path: str = "/", tls: bool = False) -> tuple[int, str]:
    """(status, body) of a GET for ``host`` on the shared site; (0, why) if TLS refuses the host."""
    port = server.https_port if tls else server.http_port
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        if tls:
            context = ssl.create_default_context(cafile=str(caddy_root_ca(server)))
            sock = context.wrap_socket(sock, server_hostname=host)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        response = b"".join(iter(lambda: sock.recv(65536), b""))
    except ssl.SSLError as error:
        return 0, str(error)
    finally:
        sock.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def caddy_root_ca(server: Server) -> Path:
    return next((server.base / "caddy-home").rglob("pki/authorities/local/root.crt"))


def asked(server: Server, domain: str) -> int:
    return http_get(f"http://127.0.0.1:{server.http_port}/zdd-ask?domain={domain}")[0]


def websocket(server: Server, host: str):
    sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=10)
    return connect(f"ws://{host}/ws", sock=sock, open_timeout=10, ping_interval=None)


def wsecho_repo(server: Server, app: str, path: Path) -> AppRepo:
    repo = AppRepo(path, server.repo(app))
    (path / "busybox").unlink()
    shutil.copy(WSECHO / "app.py", path / "app.py")
    shutil.copy(WSECHO / "Dockerfile", path / "Dockerfile")
    repo.write("VERSION", "A1\n")
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", "A1")
    return repo


def app_names(*names: str) -> list[str]:
    """Apps of parallel test processes never clash (their containers share one engine)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:]
    return [f"hr{name}{worker}" for name in names]


def test_other_apps_come_and_go_without_touching_a_loaded_app(host_server, tmp_path):
    server = host_server
    a, b = app_names("a", "b")
    a_host, b_host, b_new_host = "a.test", "b.test", "b2.test"
    assert server.install(a, "--domain", f"http://{a_host}").returncode == 0
    a_repo = wsecho_repo(server, a, tmp_path / "a")
    pushed_live(a_repo.push("main"))
    assert request(server, a_host) == (200, "A1")

    clients = [KeepAliveClient(f"http://127.0.0.1:{server.http_port}", retrying=retrying, host_header=a_host)
               for retrying in (False, False, True, True)]
    websockets = contextlib.ExitStack()
    sockets = [websockets.enter_context(websocket(server, a_host)) for _ in range(3)]
    for number, ws in enumerate(sockets):
        ws.send(f"hello {number}")
        assert ws.recv(timeout=5) == f"A1: hello {number}"
    for client in clients:
        client.start()
    loads_before = server.caddy_loads()
    try:
        installed = server.install(b, "--domain", b_host)
        assert installed.returncode == 0, installed.stderr
        b_repo = AppRepo(tmp_path / "b", server.repo(b))
        b_repo.commit("B1")
        first = b_repo.push("main")
        pushed_live(first)
        assert "reloaded" not in first.stderr, "a host-named app's first deploy must not reload Caddy"
        assert request(server, b_host, tls=True) == (200, "B1"), "a certificate is issued on demand"
        assert request(server, b_host)[0] == 308, "plain HTTP redirects to HTTPS"
        assert asked(server, b_host) == 200

        moved = server.install(b, "--domain", b_new_host)
        assert moved.returncode == 0, moved.stderr
        assert "reloaded" not in moved.stdout + moved.stderr
        assert request(server, b_new_host, tls=True) == (200, "B1")
        assert request(server, b_host)[0] == 404 and asked(server, b_host) == 404
        assert request(server, b_host, tls=True)[0] == 404, "its certificate stays valid, but nothing is proxied"

        destroyed = server.zdd("destroy", b, "--yes")
        assert destroyed.returncode == 0, destroyed.stderr
        expect(destroyed.stdout, f"{b} destroyed")
        server.apps.remove(b)
        assert request(server, b_new_host) == (404, "no app is served at this address")
        assert asked(server, b_new_host) == 404
    finally:
        for client in clients:
            client.stop()

    assert server.caddy_loads() == loads_before, "Caddy reloaded while apps came and went"
    for client in clients:
        # the floor only shows the clients ran throughout: how many fit depends on the machine's load
        assert client.requests > 10 and client.failures == [], (client.retrying, client.failures[:5])
        assert set(client.bodies) == {"A1"}
    with websockets:
        for number, ws in enumerate(sockets):
            ws.send(f"still there {number}")
            assert ws.recv(timeout=5) == f"A1: still there {number}", "every WebSocket stays open"


def test_a_push_with_websockets_open_drains_requests_then_the_app_closes_its_sockets(host_server, tmp_path):
    """Caddy counts WebSockets apart from ordinary requests: the drain waits for the requests
    only, then the old container's SIGTERM lets the app close its sockets (1001), and the
    clients reconnect to the new version. With the sockets counted, the drain would wait
    out drain_timeout and say so."""
    server = host_server
    (app,) = app_names("ws")
    assert server.install(app, "--domain", f"http://{app}.test").returncode == 0
    repo = wsecho_repo(server, app, tmp_path / "ws")
    repo.write("zdd.toml", "watch_seconds = 0.5\ndrain_timeout = 60\n")
    repo.git("commit", "-qam", "A1 with a long drain_timeout")
    pushed_live(repo.push("main"))
    opened = contextlib.ExitStack()
    sockets = [opened.enter_context(websocket(server, f"{app}.test")) for _ in range(3)]
    for ws in sockets:
        ws.send("hello")
        assert ws.recv(timeout=5) == "A1: hello"
    clients = [KeepAliveClient(f"http://127.0.0.1:{server.http_port}", retrying=False, host_header=f"{app}.test")
               for _ in range(2)]
    for client in clients:
        client.start()
    try:
        repo.write("VERSION", "A2\n")
        repo.git("commit", "-qam", "A2")
        pushed = repo.push("main")
    finally:
        for client in clients:
            client.stop()
    pushed_live(pushed)
    assert "still in flight" not in pushed.stderr, pushed.stderr
    for client in clients:
        assert client.requests > 10 and client.failures == [], client.failures[:5]
    with opened:
        for ws in sockets:
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001, closed.value
    with websocket(server, f"{app}.test") as again:
        again.send("hello")
        assert again.recv(timeout=5) == "A2: hello", "the client reconnects to the new version"


def test_unknown_and_not_yet_deployed_hosts_are_never_proxied_and_get_no_certificate(host_server):
    server = host_server
    (idle,) = app_names("idle")
    assert server.install(idle, "--domain", "idle.test").returncode == 0
    rendered = server.zdd("render")
    assert rendered.returncode == 0, rendered.stderr
    for host in ("nobody.test", "idle.test"):
        assert request(server, host) == (404, "no app is served at this address")
        assert request(server, host, tls=True)[0] == 0
        assert asked(server, host) == 404
    assert asked(server, "../../apps") == 404


def test_a_host_already_served_by_another_app_is_refused(host_server):
    server = host_server
    c, d = app_names("c", "d")
    assert server.install(c, "--domain", "c.test").returncode == 0
    clash = server.install(d, "--domain", "http://c.test")
    assert clash.returncode != 0 and f"already the address of app '{c}'" in clash.stderr, clash.stderr
    assert not (server.root / "apps" / d).exists()
    on_shared_port = server.install(d, "--domain", f":{server.http_port}")
    assert on_shared_port.returncode != 0
    expect(on_shared_port.stderr, f"would take port {server.http_port}, where the sites of host-named apps listen")


def test_an_app_routed_by_an_older_zdd_gets_its_route_file_and_link_at_the_next_render(host_server, tmp_path):
    """zdd before route files: a flag file `blue` while blue was live, one site per app."""
    server = host_server
    (old,) = app_names("old")
    assert server.install(old, "--domain", "http://old.test").returncode == 0
    repo = AppRepo(tmp_path / "old", server.repo(old))
    repo.commit("old v1")
    pushed_live(repo.push("main"))
    route = server.root / "apps" / old / "route"
    live = json.loads((server.root / "apps" / old / "state.json").read_text())
    for leftover in route.iterdir():
        leftover.unlink()
    (server.root / "hosts" / "http" / "old.test").unlink()
    if live["slot"] == "blue":
        (route / "blue").write_text("")
    assert request(server, "old.test")[0] == 404

    rendered = server.zdd("render")

    assert rendered.returncode == 0, rendered.stderr
    assert request(server, "old.test") == (200, "old v1")
    ports = json.loads((server.root / "apps" / old / "slots.json").read_text())
    other = next(port for slot, port in ports.items() if slot != live["slot"])
    assert [p.name for p in route.iterdir()] == [f"{ports[live['slot']]}-{other}"]
