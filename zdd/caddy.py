"""Render the Caddyfile from its Jinja template (pure), then validate, write and reload it."""

import dataclasses
import hashlib
import http.client
import json
import os
import re
import subprocess
from pathlib import Path
import jinja2

from zdd import state
from zdd.errors import CaddyError, InvalidInput

TEMPLATE = "Caddyfile.j2"
ADMIN_ADDRESS = re.compile(r"[a-z0-9.-]+:[0-9]{1,5}")
FLAG = "blue"
UNSAFE_IN_CADDYFILE = re.compile(r"[\s{}\"'`#\\]")


@dataclasses.dataclass(frozen=True)
class Site:
    app: str
    address: str
    flag_dir: str
    ports: dict  # slot name -> port on 127.0.0.1


def check_admin_address(address: str) -> str:
    if not ADMIN_ADDRESS.fullmatch(address or ""):
        raise InvalidInput(f"invalid Caddy admin address {address!r}: use HOST:PORT, e.g. localhost:2019")
    return address


def _caddy_token(value):
    """Refuse, at render time, any value that could break out of its place in the Caddyfile."""
    if isinstance(value, str) and UNSAFE_IN_CADDYFILE.search(value):
        raise InvalidInput(f"refusing to render {value!r} into the Caddyfile: it holds spaces, braces, quotes or #")
    return value


def render(template_dir: Path, admin: str, sites: list[Site], include_glob: str) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)),
        undefined=jinja2.StrictUndefined,
        finalize=_caddy_token,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    ordered = sorted(sites, key=lambda site: site.app)
    return env.get_template(TEMPLATE).render(admin=check_admin_address(admin), sites=ordered,
                                             include_glob=include_glob)


def config_lock(caddyfile: Path):
    """Held from rendering to loading, so apps deploying at once see each other's sites."""
    return state.file_lock(caddyfile.with_name(f".{caddyfile.name}.zdd-lock"))


def apply(caddy_bin: str, caddyfile: Path, admin: str, text: str, force: bool = False) -> str:
    """Make Caddy run ``text``; say what was done: "unchanged", "reloaded", "took over"
    (a Caddyfile zdd never wrote was backed up, then replaced), or "kept hand edit".

    A file beside it holds the hash of what zdd last wrote. A Caddyfile changed by hand since
    then is never overwritten unless ``force``: if zdd has nothing new to write, it is
    left alone; otherwise CaddyError says what to do. The new text is validated and
    loaded from a temporary file, which replaces the Caddyfile only once Caddy runs it:
    a rejected config leaves file and Caddy as they were.
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
    _load(caddy_bin, caddyfile, admin, text)
    _write_synced(record, _digest(text) + "\n")
    return "took over" if took_over else "reloaded"


def _load(caddy_bin: str, caddyfile: Path, admin: str, text: str) -> None:
    staged = caddyfile.with_name(f".{caddyfile.name}.zdd-new")
    try:
        _write_synced(staged, text)
        _run_caddy(caddy_bin, ["validate", "--config", str(staged), "--adapter", "caddyfile"], "rejected the config")
        _run_caddy(caddy_bin, ["reload", "--config", str(staged), "--adapter", "caddyfile", "--address", admin],
                   f"could not be reloaded through its admin address {admin}")
        os.replace(staged, caddyfile)
    finally:
        staged.unlink(missing_ok=True)


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


def _run_caddy(caddy_bin: str, args: list[str], failure: str) -> None:
    try:
        done = subprocess.run([caddy_bin, *args], capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise CaddyError(f"Caddy is not installed at {caddy_bin!r}: install it or re-run install.sh") from None
    except subprocess.TimeoutExpired:
        raise CaddyError(f"Caddy {failure}: it did not answer within 120s") from None
    if done.returncode != 0:
        raise CaddyError(f"Caddy {failure}: {_last_error(done.stderr)}")


def _last_error(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    return (errors or stderr.strip().splitlines() or ["no output"])[-1].removeprefix("Error: ")


def route_to(flag_dir: Path, slot: str) -> None:
    """Point the app's traffic at ``slot``: Caddy checks the flag on every request."""
    flag = flag_dir / FLAG
    if slot == FLAG:
        staged = flag_dir / f".{FLAG}.tmp"
        staged.write_text("traffic goes to the blue slot while this file exists\n")
        staged.chmod(0o644)
        os.replace(staged, flag)
    else:
        flag.unlink(missing_ok=True)


def routed_slot(flag_dir: Path) -> str:
    return FLAG if (flag_dir / FLAG).exists() else "green"


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
    return sum(u.get("num_requests", 0) for u in upstreams if u.get("address") == upstream)
