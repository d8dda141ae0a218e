"""Render the Caddyfile from its Jinja template (pure), then validate, write and reload it;
and the files Caddy reads on every request: each app's route file and the host links."""

import dataclasses
import hashlib
import http.client
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

from zdd import state
from zdd.errors import CaddyError, InvalidInput

TEMPLATE = "Caddyfile.j2"
ADMIN_ADDRESS = re.compile(r"[a-z0-9.-]+:[0-9]{1,5}")
UNSAFE_IN_CADDYFILE = re.compile(r"[\s{}\"'`#\\]")
ROUTE_FILE = re.compile(r"([0-9]{1,5})-([0-9]{1,5})")
SERVICE_ROUTE_FILE = re.compile(r"([a-z0-9][a-z0-9-]*)-([0-9]{1,5})")  # swarm: APP-PORT (matches the above too)
MAINTENANCE_FILE = "maintenance.html"
LEGACY_FLAG = "blue"  # zdd before route files: traffic went to blue while this file existed
TLS_ISSUERS = ("acme", "internal")


@dataclasses.dataclass(frozen=True)
class Site:
    """An app with a port of its own (:8080, http://host:8080): a site in the Caddyfile."""
    app: str
    address: str
    route_dir: str


@dataclasses.dataclass(frozen=True)
class SharedSites:
    """The two sites, HTTP and HTTPS, that serve every app addressed by a host name."""
    hosts_dir: str
    http_port: int = 80
    https_port: int = 443
    tls: str = "acme"  # "internal": Caddy's own CA, for tests and private networks


def check_admin_address(address: str) -> str:
    if not ADMIN_ADDRESS.fullmatch(address or ""):
        raise InvalidInput(f"invalid Caddy admin address {address!r}: use HOST:PORT, e.g. localhost:2019")
    return address


def check_tls_issuer(issuer: str) -> str:
    if issuer not in TLS_ISSUERS:
        raise InvalidInput(f"invalid tls setting {issuer!r}: use acme (a public CA) or internal (Caddy's own CA)")
    return issuer


def _caddy_token(value):
    """Refuse any value that could break out of its place in the Caddyfile."""
    if isinstance(value, str) and UNSAFE_IN_CADDYFILE.search(value):
        raise InvalidInput(f"refusing to render {value!r} into the Caddyfile: it holds spaces, braces, quotes or #")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidInput(f"refusing to render {value!r} into the Caddyfile: not a word or a number")
    return value


def render(template_dir: Path, admin: str, sites: list[Site], include_glob: str, shared: SharedSites,
           swarm: bool = False) -> str:
    """Every value from settings or apps is checked here; the template's own text is trusted."""
    check_admin_address(admin)
    for value in [include_glob, *dataclasses.astuple(shared),
                  *(field for site in sites for field in dataclasses.astuple(site))]:
        _caddy_token(value)
    check_tls_issuer(shared.tls)
    import jinja2  # 0.05 s of CPU, paid only by the commands that render
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    ordered = sorted(sites, key=lambda site: site.app)
    return env.get_template(TEMPLATE).render(admin=admin, sites=ordered, swarm=swarm,
                                             include_glob=include_glob, **dataclasses.asdict(shared))


def config_lock(caddyfile: Path):
    """Held from rendering to loading, so apps deploying at once see each other's sites."""
    return state.file_lock(caddyfile.with_name(f".{caddyfile.name}.zdd-lock"))


def apply(caddy_bin: str, caddyfile: Path, admin: str, text: str, force: bool = False, reload=None) -> str:
    """Make Caddy run ``text``; say what was done: "unchanged", "reloaded", "took over"
    (a Caddyfile zdd never wrote was backed up, then replaced), or "kept hand edit".

    A file beside it holds the hash of what zdd last wrote. A Caddyfile changed by hand since
    then is never overwritten unless ``force``: if zdd has nothing new to write, it is
    left alone; otherwise CaddyError says what to do. The new text is validated and
    loaded from a temporary file, which replaces the Caddyfile only once Caddy runs it:
    a rejected config leaves file and Caddy as they were. ``reload(path)`` loads a file
    into a Caddy that is not reached at ``admin`` (Swarm mode's container).
    """
    current = _read(caddyfile)
    if current == text:
        return "unchanged"
    record = caddyfile.with_name(f".{caddyfile.name}.zdd-sha256")
    last_written = _read(record)
    edited = current is not None and last_written is not None and _digest(current) != last_written.strip()
    if edited and not force:
        if _digest(text) == last_written.strip():
            return "kept hand edit"
        raise CaddyError(
            f"{caddyfile} was edited by hand since zdd wrote it, and zdd will not overwrite that: "
            "move the change into the template or a *.caddy file in ZDD_ROOT/caddy.d, "
            "then run `zdd render --force`")
    took_over = current is not None and last_written is None
    backup = caddyfile.with_name(caddyfile.name + ".before-zdd")
    if took_over and not backup.exists():
        _write_synced(backup, current)
    _load(caddy_bin, caddyfile, reload or (lambda staged: reload_at(caddy_bin, admin, staged)), text)
    _write_synced(record, _digest(text) + "\n")
    return "took over" if took_over else "reloaded"


def _load(caddy_bin: str, caddyfile: Path, reload, text: str) -> None:
    staged = caddyfile.with_name(f".{caddyfile.name}.zdd-new")
    try:
        _write_synced(staged, text)
        validate(caddy_bin, staged)
        reload(staged)
        os.replace(staged, caddyfile)
    finally:
        staged.unlink(missing_ok=True)


def validate(caddy_bin: str, path: Path) -> None:
    """Validating provisions the config's modules, so `tls internal` makes a CA: in a throwaway
    folder, not in Caddy's own storage nor (with no HOME) in the current folder."""
    with tempfile.TemporaryDirectory(prefix="zdd-validate-") as scratch:
        env = {**os.environ, "HOME": scratch, "XDG_DATA_HOME": scratch, "XDG_CONFIG_HOME": scratch}
        _run_caddy(caddy_bin, ["validate", "--config", str(path), "--adapter", "caddyfile"], "rejected the config",
                   env)


def reload_at(caddy_bin: str, admin: str, path: Path) -> None:
    _run_caddy(caddy_bin, ["reload", "--config", str(path), "--adapter", "caddyfile", "--address", admin],
               f"could not be reloaded through its admin address {admin}")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    path.chmod(0o644)


def _run_caddy(caddy_bin: str, args: list[str], failure: str, env: dict | None = None) -> None:
    try:
        done = subprocess.run([caddy_bin, *args], capture_output=True, text=True, timeout=120, env=env)
    except FileNotFoundError:
        raise CaddyError(f"Caddy is not installed at {caddy_bin!r}: install it or re-run install.sh") from None
    except subprocess.TimeoutExpired:
        raise CaddyError(f"Caddy {failure}: it did not answer within 120s") from None
    if done.returncode != 0:
        raise CaddyError(f"Caddy {failure}: {_last_error(done.stderr)}")


def _last_error(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    return (errors or stderr.strip().splitlines() or ["no output"])[-1].removeprefix("Error: ")


def route_to(route_dir: Path, ports: dict[str, int], slot: str, fallback: bool = True) -> None:
    """Point the app's traffic at ``slot``: its route file becomes LIVE-OTHER (the two slots'
    ports: Caddy retries a request the live one refused on the other, where the old
    container still serves while it drains), or LIVE-LIVE without ``fallback`` (once nothing
    of the app listens on the other: its port may be anyone's by then). A rename, so Caddy,
    which reads it on every request, sees one name or the other."""
    other = next(port for name, port in ports.items() if name != slot) if fallback else ports[slot]
    _name_route(route_dir, f"{ports[slot]}-{other}")


def route_to_service(route_dir: Path, app: str, port: int) -> None:
    """Swarm mode: the app's traffic goes to the tasks of its web service, on ``port``."""
    _name_route(route_dir, f"{app}-{port}")


def _name_route(route_dir: Path, wanted: str) -> None:
    current = _route_files(route_dir)
    if current != [wanted]:
        if current:
            os.rename(route_dir / current[0], route_dir / wanted)
        else:
            staged = route_dir / ".route.tmp"
            staged.write_text("Caddy proxies to what this file's name says: see the Caddyfile\n")
            staged.chmod(0o644)
            os.replace(staged, route_dir / wanted)
        for extra in current[1:]:
            (route_dir / extra).unlink(missing_ok=True)
    (route_dir / LEGACY_FLAG).unlink(missing_ok=True)


def set_maintenance(route_dir: Path, page: bytes | None) -> None:
    """Caddy answers every request of the app with this page and a 503 while it is in the
    app's route folder (it looks on each request: no reload); None removes it."""
    path = route_dir / MAINTENANCE_FILE
    if page is None:
        path.unlink(missing_ok=True)
        return
    staged = route_dir / f".{MAINTENANCE_FILE}.tmp"
    staged.write_bytes(page)
    staged.chmod(0o644)
    os.replace(staged, path)


def maintenance_since(route_dir: Path) -> float | None:
    try:
        return (route_dir / MAINTENANCE_FILE).stat().st_mtime
    except FileNotFoundError:
        return None


def routed_slot(route_dir: Path, ports: dict[str, int]) -> str | None:
    """The slot the app's traffic goes to, or None before its first switch."""
    current = [name for name in _route_files(route_dir) if ROUTE_FILE.fullmatch(name)]
    if not current:
        return LEGACY_FLAG if (route_dir / LEGACY_FLAG).exists() else None
    first = int(ROUTE_FILE.fullmatch(current[0]).group(1))
    return next((name for name, port in ports.items() if port == first), None)


def has_route(route_dir: Path) -> bool:
    return bool(_route_files(route_dir))


def _route_files(route_dir: Path) -> list[str]:
    try:
        return sorted(path.name for path in route_dir.iterdir() if SERVICE_ROUTE_FILE.fullmatch(path.name))
    except FileNotFoundError:
        return []


def host_links(hosts_dir: Path) -> dict[tuple[str, str], Path]:
    """(scheme, host) -> the route folder its link points at."""
    links = {}
    for scheme in ("http", "https"):
        folder = hosts_dir / scheme
        if folder.is_dir():
            for link in folder.iterdir():
                if link.is_symlink():
                    links[(scheme, link.name)] = Path(os.readlink(link))
    return links


def link_host(hosts_dir: Path, scheme: str, host: str, route_dir: Path) -> None:
    """From now on a request for ``host`` over ``scheme`` goes to the app of ``route_dir``."""
    folder = hosts_dir / scheme
    folder.mkdir(parents=True, exist_ok=True, mode=0o755)
    staged = folder / f".{host}.tmp"
    staged.unlink(missing_ok=True)
    staged.symlink_to(route_dir)
    os.replace(staged, folder / host)


def unlink_host(hosts_dir: Path, scheme: str, host: str) -> None:
    (hosts_dir / scheme / host).unlink(missing_ok=True)


def check_running(admin: str) -> None:
    """Raise CaddyError unless Caddy's admin endpoint answers."""
    if _admin_get(admin, "/config/") is None:
        raise CaddyError(f"Caddy's admin endpoint at {admin} does not answer: start Caddy "
                         "(systemctl start caddy), then push again")


def _admin_get(admin: str, path: str):
    """The JSON an admin endpoint returns, or None if it does not answer 200."""
    host, port = admin.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=5)  # fresh: the endpoint restarts on loads
    try:
        connection.request("GET", path, headers={"Origin": f"http://{admin}"})
        response = connection.getresponse()
        body = response.read()
        return json.loads(body) if response.status == 200 else None
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        connection.close()


def in_flight(admin: str, upstream: str) -> int | None:
    """Requests Caddy is proxying to ``upstream`` now, or None if the admin API does not say."""
    upstreams = _admin_get(admin, "/reverse_proxy/upstreams")
    if upstreams is None:
        return None
    # newer Caddy lists a dynamic upstream twice, with the same count
    return max((u.get("num_requests", 0) for u in upstreams if u.get("address") == upstream), default=0)
