"""Render the Caddyfile from its Jinja template (pure), then validate, write and reload it."""

import dataclasses
import http.client
import json
import os
import re
import subprocess
from pathlib import Path
import jinja2

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


def render(template_dir: Path, admin: str, sites: list[Site]) -> str:
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
    return env.get_template(TEMPLATE).render(admin=check_admin_address(admin), sites=ordered)


def apply(caddy_bin: str, caddyfile: Path, admin: str, text: str) -> bool:
    """Make Caddy run ``text``. Returns False (and reloads nothing) when it already is the file.

    The new text is validated and loaded from a temporary file, which replaces the
    Caddyfile only once Caddy runs it: a rejected config leaves file and Caddy as they were.
    """
    if _read(caddyfile) == text:
        return False
    staged = caddyfile.with_name(f".{caddyfile.name}.zdd-new")
    try:
        _write_synced(staged, text)
        _run_caddy(caddy_bin, ["validate", "--config", str(staged), "--adapter", "caddyfile"], "rejected the config")
        _run_caddy(caddy_bin, ["reload", "--config", str(staged), "--adapter", "caddyfile", "--address", admin],
                   f"could not be reloaded through its admin address {admin}")
        os.replace(staged, caddyfile)
    finally:
        staged.unlink(missing_ok=True)
    return True


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


def in_flight(admin: str, upstream: str) -> int | None:
    """Requests Caddy is proxying to ``upstream`` now, or None if the admin API does not say."""
    host, port = admin.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=5)  # fresh: the endpoint restarts on loads
    try:
        connection.request("GET", "/reverse_proxy/upstreams", headers={"Origin": f"http://{admin}"})
        response = connection.getresponse()
        if response.status != 200:
            return None
        upstreams = json.loads(response.read())
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        connection.close()
    return sum(u.get("num_requests", 0) for u in upstreams if u.get("address") == upstream)
