"""Validation of every operator- or pusher-supplied value, and the names zdd derives.

Pure and stdlib-only: install.sh runs it with the system python3 before anything
is written (``python3 -m zdd.names APP ADDRESS [PORT]``).
"""

import re
import sys

from zdd.errors import InvalidInput

APP_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}[a-z0-9]|[a-z]")
PREVIEW_NAME = re.compile(r"[a-z][a-z0-9-]{0,38}[a-z0-9]")  # PARENT--LABEL (zdd.previews)
_LABEL = r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)"
_HOST = rf"(?:\*\.)?(?:{_LABEL}\.)*{_LABEL}"
SITE_ADDRESS = re.compile(rf"(?:https?://)?(?:{_HOST})?(?::(?P<port>[0-9]{{1,5}}))?")
HEALTH_PATH = re.compile(r"/[A-Za-z0-9._~/%?=&+-]*")
BRANCH = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,99}")
SHA = re.compile(r"[0-9a-f]{40}")
REGISTRY = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?:[0-9]{1,5}")


def check_app_name(name: str) -> str:
    if not isinstance(name, str) or not (APP_NAME.fullmatch(name) or "--" in name and PREVIEW_NAME.fullmatch(name)):
        raise InvalidInput(
            f"invalid app name {name!r}: use 1-32 lowercase letters, digits and "
            "hyphens, starting with a letter (e.g. myapp)"
        )
    return name


def check_site_address(address: str) -> str:
    """A Caddy site address: a domain, ``http://host:port`` or ``:port``."""
    candidate = address.strip().lower() if isinstance(address, str) else ""
    match = SITE_ADDRESS.fullmatch(candidate)
    host_or_port = candidate.split("://")[-1]
    if not match or not host_or_port or host_or_port == ":":
        raise InvalidInput(
            f"invalid site address {address!r}: give a domain (myapp.example.com), "
            "http://host:port or :port, with no spaces, braces or quotes"
        )
    if match.group("port"):
        check_port(match.group("port"), what="site port")
    return candidate


def site_port(address: str) -> int | None:
    """The port a checked site address names, if it names one."""
    port = SITE_ADDRESS.fullmatch(address).group("port")
    return int(port) if port else None


def host_route(address: str) -> tuple[str, str] | None:
    """(scheme, host) for a checked address that is a host name alone, served by the shared
    sites: myapp.example.com and https://... over HTTPS, http://... over HTTP. None when it
    has a port (or a wildcard) of its own: such an app needs a site, and a listener, of its own."""
    scheme, _, host = address.rpartition("://")
    if not host or ":" in host or "*" in host:
        return None
    return scheme or "https", host


def check_port(value, what: str = "port") -> int:
    try:
        port = int(str(value), 10)
    except ValueError:
        port = 0
    if isinstance(value, bool) or not 1 <= port <= 65535:
        raise InvalidInput(f"invalid {what} {value!r}: use a number from 1 to 65535")
    return port


def check_health_path(path: str) -> str:
    if not isinstance(path, str) or not HEALTH_PATH.fullmatch(path):
        raise InvalidInput(
            f"invalid health path {path!r}: use a URL path starting with / "
            "(letters, digits and ._~/%?=&+- only)"
        )
    return path


def check_registry(address: str) -> str:
    if not REGISTRY.fullmatch(address or "") or not 0 < int(address.rsplit(":", 1)[1]) < 65536:
        raise InvalidInput(f"invalid registry address {address!r}: use HOST:PORT, e.g. 10.0.0.1:5000")
    return address


def check_branch(branch: str) -> str:
    if not BRANCH.fullmatch(branch or "") or ".." in branch or branch.endswith((".lock", "/")):
        raise InvalidInput(f"invalid branch name {branch!r}: use letters, digits, '-', '_', '.' and '/'")
    return branch


def check_sha(sha: str) -> str:
    if not SHA.fullmatch(sha or ""):
        raise InvalidInput(f"invalid commit SHA {sha!r}")
    return sha


def image_repository(app: str) -> str:
    return f"zdd-{app}"


def image_tag(app: str, sha: str) -> str:
    return f"{image_repository(app)}:{sha}"


def container_name(app: str, sha: str, deploy_id: str) -> str:
    return f"zdd-{app}-{sha[:12]}-{deploy_id}"


def labels(app: str, sha: str, ref: str) -> dict:
    return {"zdd.app": app, "zdd.sha": sha, "zdd.ref": ref}


def main(argv: list[str]) -> int:
    """``python3 -m zdd.names APP ADDRESS [PORT]``: exit 2 with a reason if invalid."""
    try:
        check_app_name(argv[0])
        check_site_address(argv[1])
        if len(argv) > 2 and argv[2]:
            check_port(argv[2], what="app port")
    except InvalidInput as error:
        print(f"zdd: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
