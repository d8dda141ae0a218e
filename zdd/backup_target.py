"""Where backups go: one restic repository per app, under $ZDD_ROOT/backups or under the
off-site target the operator set (`zdd backup-target`), all read with the server's key."""

import re
import secrets
from pathlib import Path
from typing import Callable

from zdd import restic, state
from zdd.errors import InvalidInput

Emit = Callable[[str], None]
KEY_FILE = "backup.key"
TARGET_FILE = "backup-target.json"
KNOWN_HOSTS = "backup-known-hosts"   # the SFTP target's host key, trusted the first time


def repository(app) -> restic.Repository:
    """The app's repository: under $ZDD_ROOT/backups, or under the off-site target if one is set."""
    target = state.read_json(app.server.root / TARGET_FILE) or {}
    base = target.get("url") or str(app.server.root / "backups")
    return _repository(app.server.root, f"{base.rstrip('/')}/{app.name}", target)


def _repository(root: Path, url: str, target: dict) -> restic.Repository:
    ssh = target.get("ssh_key") and sftp_command(url, target["ssh_key"], root / KNOWN_HOSTS)
    options = (f"sftp.command={ssh}",) if ssh else ()
    return restic.Repository(url, str(key_file(root)), target.get("credentials") or {}, options)


TARGET_URL = re.compile(r"(?:(?:s3|sftp|rest|b2|azure|gs|swift|rclone):|/)[A-Za-z0-9._~:/@%+=-]*")
SFTP_URL = re.compile(r"sftp:(?://(?P<user>[A-Za-z0-9_.-]+)@(?P<host>[A-Za-z0-9.-]+)(?::(?P<port>[0-9]{1,5}))?/.*"
                      r"|(?P<user2>[A-Za-z0-9_.-]+)@(?P<host2>[A-Za-z0-9.-]+):.*)")
SSH_KEY = re.compile(r"/[A-Za-z0-9._/@+-]+")
CREDENTIAL_PREFIXES = ("AWS_", "B2_", "AZURE_", "GOOGLE_", "OS_", "ST_", "RESTIC_REST_")


def set_target(server, url: str, assignments: list[str], ssh_key: str | None, emit: Emit) -> None:
    """Keep every app's backups under ``url`` from now on (restic's own URL forms), with the
    credentials restic reads from its environment (or, for SFTP, an SSH key); checked against
    the place before it is kept."""
    if not TARGET_URL.fullmatch(url or "") or ".." in url:
        raise InvalidInput(f"invalid backup target {url!r}: use restic's form, e.g. s3:https://HOST/BUCKET/zdd, "
                           "sftp:USER@HOST:/srv/backups or an absolute folder")
    target = {"url": url, "credentials": dict(_credential(item) for item in assignments)}
    if ssh_key is not None:
        if not SSH_KEY.fullmatch(ssh_key) or not SFTP_URL.fullmatch(url):
            raise InvalidInput("--ssh-key goes with an sftp: target, and names a key file by its absolute path")
        target["ssh_key"] = ssh_key
    try:
        restic.probe(_repository(server.root, f"{url.rstrip('/')}/.zdd-probe", target))
    except restic.ResticError as error:
        hint = f" (is the key accepted there? try: ssh -i {ssh_key} {_login(url)})" if ssh_key else ""
        raise restic.ResticError(f"{error}{hint}") from None
    state.write_json_atomic(server.root / TARGET_FILE, target, mode=0o600)
    emit(f"backups go to {url} from now on, one repository per app (backups taken before stay where they are)")


def sftp_command(url: str, ssh_key: str, known_hosts: Path) -> str:
    """How restic reaches an SFTP target with the operator's key: ssh, never asking anything,
    trusting the host's key the first time, then checking it (in zdd's own known-hosts file)."""
    return (f"ssh -i {ssh_key} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new "
            f"-o UserKnownHostsFile={known_hosts} {_login(url)} -s sftp")


def _login(url: str) -> str:
    """``[-p PORT] USER@HOST`` of an sftp: URL."""
    found = SFTP_URL.fullmatch(url)
    user, host, port = found["user"] or found["user2"], found["host"] or found["host2"], found["port"]
    return (f"-p {port} " if port else "") + f"{user}@{host}"


def _credential(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not re.fullmatch(r"[A-Z][A-Z0-9_]{0,63}", key) or not key.startswith(CREDENTIAL_PREFIXES):
        raise InvalidInput(f"expected KEY=VALUE with a credential restic reads ({', '.join(CREDENTIAL_PREFIXES)}...), "
                           f"not {key or item[:20]!r}")
    return key, value


def target_lines(server) -> list[str]:
    target = state.read_json(server.root / TARGET_FILE)
    if not target:
        return [f"backups are kept on this server, in {server.root / 'backups'} (key: {server.root / KEY_FILE})"]
    return [f"backups go to {target['url']}"] + [f"  {key}=*****" for key in sorted(target["credentials"])]


def clear_target(server, emit: Emit) -> None:
    (server.root / TARGET_FILE).unlink(missing_ok=True)
    emit(f"backups are kept on this server again, in {server.root / 'backups'}")


def key_file(root: Path) -> Path:
    """The repositories' key, made once (0600): without it no backup can be read, so copy it off the server."""
    path = root / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = path.with_name(f".{KEY_FILE}.tmp")
        staged.write_text(secrets.token_urlsafe(32) + "\n")
        staged.chmod(0o600)
        state.own_like_parent(staged)
        staged.replace(path)
    return path
