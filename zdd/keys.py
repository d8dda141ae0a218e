"""SSH keys that may push and run zdd for some apps, and nothing else.

The operator's list lives in ``$ZDD_ROOT/keys.json`` (root's). zdd renders each key into the
deploy user's ``authorized_keys`` as a line with a forced command (``zdd ssh NAME``) and
OpenSSH's ``restrict`` (no port, agent or X11 forwarding; ``pty`` is allowed back, for
``zdd run`` in a terminal). Lines zdd did not write are kept as they are. Parsing and
rendering are pure; reading and writing the files is at the end.
"""

import base64
import binascii
import dataclasses
import json
import os
import pwd
import re
from pathlib import Path

from zdd.errors import InvalidInput
from zdd.state import write_json_atomic

KEYS_FILE = "keys.json"
NAME = re.compile(r"[a-z][a-z0-9_.-]{0,31}")
KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
             "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
MARK = " zdd-key:"


@dataclasses.dataclass(frozen=True)
class Key:
    name: str
    kind: str
    blob: str
    apps: tuple[str, ...] = ()
    admin: bool = False

    def may_use(self, app: str) -> bool:
        """Its apps, and their previews (PARENT--LABEL: install.sh refuses "--" in a name)."""
        return self.admin or app in self.apps or app.split("--", 1)[0] in self.apps

    def scope(self) -> str:
        return "admin: every app and server command" if self.admin else f"apps: {', '.join(self.apps)}"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidInput(f"invalid key name {name!r}: use 1-32 lowercase letters, digits, '.', '_' and '-', "
                           "starting with a letter (e.g. alice)")
    return name


def parse_public_key(text: str) -> tuple[str, str]:
    """``ssh-ed25519 AAAA... comment`` -> (type, base64 blob); refuses anything else."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    if len(lines) != 1:
        raise InvalidInput("give exactly one public key (one line of a .pub file), on standard input or --file")
    words = lines[0].split()
    if len(words) < 2 or words[0] not in KEY_TYPES:
        raise InvalidInput("not an OpenSSH public key: expected a line like 'ssh-ed25519 AAAA... you@laptop' "
                           "(with no options before it)")
    kind, blob = words[0], words[1]
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("the public key's base64 part is damaged: copy the .pub file again") from None
    length = int.from_bytes(raw[:4], "big")
    if raw[4:4 + length].decode("ascii", "replace") != kind:
        raise InvalidInput(f"the public key's data is not a {kind} key: copy the .pub file again")
    return kind, blob


def added(keys: list[Key], new: Key, foreign_blobs: set[str]) -> list[Key]:
    for key in keys:
        if key.name == new.name:
            raise InvalidInput(f"a key named {new.name!r} exists already: `zdd keys remove {new.name}` first")
        if key.blob == new.blob:
            raise InvalidInput(f"this key is already added, as {key.name!r}")
    if new.blob in foreign_blobs:
        raise InvalidInput("this key is already in authorized_keys on a line zdd did not write: remove that "
                           "line first, or it keeps a full shell")
    return sorted([*keys, new], key=lambda k: k.name)


def removed(keys: list[Key], name: str) -> list[Key]:
    if not any(key.name == name for key in keys):
        raise InvalidInput(f"no key named {name!r} (keys: {', '.join(k.name for k in keys) or 'none'})")
    return [key for key in keys if key.name != name]


def authorized_line(key: Key, zdd_bin: str) -> str:
    return f'restrict,pty,command="{zdd_bin} ssh {key.name}" {key.kind} {key.blob}{MARK}{key.name}'


def is_zdd_line(line: str) -> bool:
    return line.startswith("restrict,pty,command=") and MARK in line


def rendered(existing: str, keys: list[Key], zdd_bin: str) -> str:
    """``authorized_keys`` with zdd's lines replaced by ``keys`` and every other line kept."""
    kept = [line for line in existing.splitlines() if not is_zdd_line(line)]
    return "\n".join(kept + [authorized_line(key, zdd_bin) for key in keys]) + "\n"


def foreign_blobs(existing: str) -> set[str]:
    """Key blobs on lines zdd did not write."""
    blobs = set()
    for line in existing.splitlines():
        if line.strip() and not line.lstrip().startswith("#") and not is_zdd_line(line):
            blobs.update(word for word in line.split() if len(word) > 40)
    return blobs


# Files: keys.json under $ZDD_ROOT, the deploy user's authorized_keys.

def read(root: Path) -> list[Key]:
    try:
        data = json.loads((root / KEYS_FILE).read_text())
    except FileNotFoundError:
        return []
    return [Key(item["name"], item["kind"], item["blob"], tuple(item["apps"]), item["admin"]) for item in data]


def write(root: Path, keys: list[Key]) -> None:
    write_json_atomic(root / KEYS_FILE, [dataclasses.asdict(key) for key in keys], mode=0o644)


def authorized_keys_path(user: str) -> Path:
    try:
        return Path(pwd.getpwnam(user).pw_dir) / ".ssh" / "authorized_keys"
    except KeyError:
        raise InvalidInput(f"the deploy user {user!r} does not exist: run install.sh APP --domain ... "
                           f"--user {user}") from None


def read_authorized(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def write_authorized(path: Path, user: str, text: str) -> None:
    """Replace atomically, with the owner and modes sshd's StrictModes demands."""
    entry = pwd.getpwnam(user)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    os.chown(path.parent, entry.pw_uid, entry.pw_gid)
    os.chmod(path.parent, 0o700)
    staged = path.with_name(f".{path.name}.zdd-tmp")
    with open(staged, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.chown(staged, entry.pw_uid, entry.pw_gid)
    os.chmod(staged, 0o600)
    os.replace(staged, path)


def add_key(server, name: str, text: str, apps: list[str], admin: bool, emit) -> Key:
    """Record the key and rewrite the deploy user's authorized_keys; refuse bad input first."""
    user = _deploy_user(server)
    check_name(name)
    for app in apps:
        if app not in server.app_names():
            raise InvalidInput(f"no app {app!r} on this server (apps: {', '.join(server.app_names()) or 'none'})")
    kind, blob = parse_public_key(text)
    path = authorized_keys_path(user)
    existing = read_authorized(path)
    key = Key(name, kind, blob, tuple(sorted(set(apps))), admin)
    updated = added(read(server.root), key, foreign_blobs(existing))
    _save(server, user, path, existing, updated)
    emit(f"added key {name} ({key.scope()}): it can push and run zdd, nothing else")
    return key


def remove_key(server, name: str, emit) -> None:
    user = _deploy_user(server)
    path = authorized_keys_path(user)
    updated = removed(read(server.root), name)
    _save(server, user, path, read_authorized(path), updated)
    emit(f"removed key {name}: it can no longer reach this server")


def _save(server, user: str, path: Path, existing: str, updated: list[Key]) -> None:
    # authorized_keys first: if keys.json then fails, a new key can log in but the forced
    # command refuses it, and a removed key is gone already
    write_authorized(path, user, rendered(existing, updated, str(server.root / "bin" / "zdd")))
    write(server.root, updated)


def _deploy_user(server) -> str:
    if not server.deploy_user:
        raise InvalidInput("no deploy user on this server: run install.sh APP --domain ADDRESS --user deploy "
                           "(as root) first")
    return server.deploy_user
