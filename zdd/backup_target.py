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


def repository(app) -> restic.Repository:
    """The app's repository: under $ZDD_ROOT/backups, or under the off-site target if one is set."""
    target = state.read_json(app.server.root / TARGET_FILE) or {}
    base = target.get("url") or str(app.server.root / "backups")
    return restic.Repository(f"{base.rstrip('/')}/{app.name}", str(key_file(app.server.root)),
                             target.get("credentials") or {})


TARGET_URL = re.compile(r"(?:(?:s3|sftp|rest|b2|azure|gs|swift|rclone):|/)[A-Za-z0-9._~:/@%+=-]*")
CREDENTIAL_PREFIXES = ("AWS_", "B2_", "AZURE_", "GOOGLE_", "OS_", "ST_", "RESTIC_REST_")


def set_target(server, url: str, assignments: list[str], emit: Emit) -> None:
    """Keep every app's backups under ``url`` from now on (restic's own URL forms), with the
    credentials restic reads from its environment; checked against the place before it is kept."""
    if not TARGET_URL.fullmatch(url or "") or ".." in url:
        raise InvalidInput(f"invalid backup target {url!r}: use restic's form, e.g. s3:https://HOST/BUCKET/zdd, "
                           "sftp:USER@HOST:/srv/backups or an absolute folder")
    credentials = dict(_credential(item) for item in assignments)
    probe = restic.Repository(f"{url.rstrip('/')}/.zdd-probe", str(key_file(server.root)), credentials)
    restic.probe(probe)
    state.write_json_atomic(server.root / TARGET_FILE, {"url": url, "credentials": credentials}, mode=0o600)
    emit(f"backups go to {url} from now on, one repository per app (backups taken before stay where they are)")


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
