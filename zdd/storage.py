"""Storage that survives deploys, set by the operator only (never by a push): named Docker
volumes owned by zdd, or folders under ``$ZDD_ROOT/storage/``. Parsing and checks are pure;
the list lives in the app's folder; the engine module makes the volumes."""

import dataclasses
import json
import os
import posixpath
import re
from pathlib import Path

from zdd.errors import InvalidInput
from zdd.state import write_json_atomic

STORAGE_FILE = "storage.json"
VOLUME_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,39}")
TARGET = re.compile(r"/[A-Za-z0-9._/@+=-]*")
FORBIDDEN_TARGETS = ("/proc", "/sys", "/dev")
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")


@dataclasses.dataclass(frozen=True)
class Mount:
    name: str     # what the operator calls it: a volume's name, or the host folder
    kind: str     # "volume" or "bind"
    source: str   # the Docker volume's name, or the host folder's real path
    target: str   # the path inside the container

    def describe(self) -> str:
        where = f"volume {self.source}" if self.kind == "volume" else f"folder {self.source}"
        return f"{self.name}:{self.target} ({where})"


def volume_name(app: str, name: str) -> str:
    return f"zdd-{app}-{name}"


def parse(spec: str, app: str, storage_root: Path) -> Mount:
    """``NAME:/path`` (a volume) or ``/host/dir:/path`` (under ``storage_root``)."""
    source, sep, target = (spec or "").rpartition(":")
    if not sep or not source:
        raise InvalidInput(f"expected NAME:/path/in/container or {storage_root}/DIR:/path, not {spec!r}")
    target = check_target(target)
    if source.startswith("/"):
        return Mount(source, "bind", check_host_folder(source, storage_root), target)
    if not VOLUME_NAME.fullmatch(source):
        raise InvalidInput(f"invalid storage name {source!r}: use lowercase letters, digits, '.', '_' and '-' "
                           "(or an absolute folder under " f"{storage_root}/)")
    return Mount(source, "volume", volume_name(app, source), target)


def check_target(target: str) -> str:
    if not TARGET.fullmatch(target or "") or posixpath.normpath(target) != target:
        raise InvalidInput(f"invalid container path {target!r}: give an absolute, normalised path such as /app/media")
    if target == "/" or any(target == f or target.startswith(f + "/") for f in FORBIDDEN_TARGETS):
        raise InvalidInput(f"refusing to mount storage at {target}: it would shadow /, /proc, /sys or /dev")
    if target in DOCKER_SOCKETS:
        raise InvalidInput(f"refusing to mount storage at {target}: that is the Docker socket's path")
    return target


def check_host_folder(folder: str, storage_root: Path) -> str:
    """The real path of ``folder``, which must lie under ``storage_root`` (symlinks resolved)."""
    root = os.path.realpath(storage_root)
    real = os.path.realpath(folder)
    if not real.startswith(root + os.sep):
        raise InvalidInput(f"refusing to mount {folder}: only folders under {storage_root}/ can be mounted "
                           "(or use a named volume: NAME:/path)")
    return real


def read(app_dir: Path) -> list[Mount]:
    try:
        return [Mount(**item) for item in json.loads((app_dir / STORAGE_FILE).read_text())]
    except FileNotFoundError:
        return []


def added(mounts: list[Mount], new: Mount) -> list[Mount]:
    for mount in mounts:
        if mount.target == new.target:
            raise InvalidInput(f"{new.target} already has storage mounted: {mount.describe()}; remove it first")
        if mount.name == new.name:
            raise InvalidInput(f"storage {new.name!r} is already mounted at {mount.target}")
    return [*mounts, new]


def removed(mounts: list[Mount], name_or_target: str) -> tuple[list[Mount], Mount]:
    for mount in mounts:
        if name_or_target in (mount.name, mount.target):
            return [m for m in mounts if m is not mount], mount
    known = ", ".join(m.name for m in mounts) or "none"
    raise InvalidInput(f"no storage named or mounted at {name_or_target!r} (mounted: {known})")


def write(app_dir: Path, mounts: list[Mount]) -> None:
    write_json_atomic(app_dir / STORAGE_FILE, [dataclasses.asdict(m) for m in mounts])
