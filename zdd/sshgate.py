"""The forced command of every key zdd adds (``zdd ssh NAME``): what the key may run.

It reads ``SSH_ORIGINAL_COMMAND`` and allows exactly: ``git-receive-pack`` and
``git-upload-pack`` of the repositories of the key's apps, and zdd's commands for those
apps; server-wide commands need an admin key. Nothing is ever handed to a shell: the
command is split into words, checked, and run by zdd itself. ``decide`` is pure.
"""

import dataclasses
import os
import re
import shlex
import shutil

from zdd import keys
from zdd.errors import InvalidInput
from zdd.processes import SHELL_SYNTAX, unquoted

APP_COMMANDS = {"status", "history", "rollback", "deploy", "restart", "env", "logs", "scale", "storage", "run",
                "db", "backup", "backups", "limits", "cron", "maintenance", "previews"}
ADMIN_COMMANDS = {"keys", "render", "destroy", "restore", "backup-target", "notify"}
GIT_SERVICES = {"git-receive-pack": "receive-pack", "git-upload-pack": "upload-pack"}
REPO = re.compile(r"(?P<app>[a-z][a-z0-9-]{0,31})\.git/?")


class Refused(InvalidInput):
    """What the key asked for is not allowed; nothing ran."""


@dataclasses.dataclass(frozen=True)
class Git:
    service: str      # receive-pack (push) or upload-pack (fetch)
    repo: str         # absolute path of the app's bare repository


@dataclasses.dataclass(frozen=True)
class Zdd:
    argv: list[str]   # zdd's own arguments, after the command name


def decide(key, command: str | None, root: str, apps: set[str]):
    """``key``: a keys.Key; ``apps``: the server's apps. Returns Git or Zdd, or raises Refused."""
    if not command or not command.strip():
        raise Refused(f"this key ({key.name}) can push and run zdd commands, nothing else: no shell. "
                      "Try `zdd status` in your app's checkout, or ssh ... zdd status APP")
    if SHELL_SYNTAX.search(unquoted(command)) or "\0" in command:
        raise Refused("refused: shell syntax (; | & $ ` < > ( ) and the like) is never run")
    try:
        words = shlex.split(command)
    except ValueError:
        raise Refused("refused: the command's quotes do not match") from None
    if words and words[0] in GIT_SERVICES:
        return _git(key, words, root, apps)
    if words and words[0] in ("zdd", f"{root}/bin/zdd"):
        return _zdd(key, words[1:], apps)
    raise Refused(f"refused: {words[0] if words else command!r} is not allowed; this key runs "
                  "git push/fetch and zdd commands only")


def _git(key, words: list[str], root: str, apps: set[str]) -> Git:
    if len(words) != 2:
        raise Refused(f"refused: {words[0]} takes one repository")
    path = words[1]
    for prefix in (f"{root}/", "/", ""):
        match = REPO.fullmatch(path[len(prefix):]) if path.startswith(prefix) else None
        if match:
            break
    if not match or match["app"] not in apps:
        raise Refused(f"refused: {path!r} is not an app's repository here (use ssh://USER@HOST{root}/APP.git)")
    _check_app(key, match["app"])
    return Git(GIT_SERVICES[words[0]], f"{root}/{match['app']}.git")


def _zdd(key, argv: list[str], apps: set[str]) -> Zdd:
    if not argv:
        raise Refused("refused: name a zdd command, e.g. zdd status APP")
    command = argv[0]
    if command == "apps":
        if set(argv[1:]) - {"--json"}:
            raise Refused("refused: `zdd apps` takes --json only")
        if key.admin:
            return Zdd(argv)
        return Zdd([*argv, "--only", ",".join(sorted(a for a in apps if key.may_use(a)))])
    if command in ADMIN_COMMANDS:
        if not key.admin:
            raise Refused(f"refused: `zdd {command}` is for admin keys; this key is for {', '.join(key.apps)}")
        return Zdd(argv)
    if command not in APP_COMMANDS:
        raise Refused(f"refused: `zdd {command}` cannot be run over SSH")
    app = argv[2:3] if command == "db" else argv[1:2]  # zdd db ACTION APP
    if not app or app[0] not in apps:
        raise Refused(f"refused: `zdd {command}` needs one of this key's apps"
                      + (" after the action" if command == "db" else " right after it"))
    _check_app(key, app[0])
    if command == "db" and argv[1:2] == ["destroy"] and not key.admin:
        raise Refused("refused: removing a database is for admin keys")
    if command == "db" and argv[1:2] == ["upgrade"] and not key.admin:
        raise Refused("refused: upgrading a database (maintenance, a restart) is for admin keys, as restore is")
    if command == "storage" and argv[2:3] != ["list"] and not key.admin:
        raise Refused("refused: storage mounts host folders, so adding or removing it is for admin keys")
    if command == "previews" and argv[2:3] in (["on"], ["off"]) and not key.admin:
        raise Refused("refused: previews take host names on this server, so turning them on or off is for admin keys")
    if command == "limits" and argv[2:] and not key.admin:
        raise Refused("refused: limits guard the server from an app, so setting them is for admin keys")
    return Zdd(argv)


def _check_app(key, app: str) -> None:
    if not key.may_use(app):
        raise Refused(f"refused: this key ({key.name}) is not allowed to use {app}; it may use "
                      f"{', '.join(key.apps) or 'no app'}")


def serve(server, key_name: str, command: str | None, run_zdd) -> int:
    """Carry out what key ``key_name`` asked for, as the deploy user; ``run_zdd(argv)`` runs
    zdd's own command line in this process. Who deployed is the key's name."""
    key = next((k for k in keys.read(server.root) if k.name == key_name), None)
    if key is None:
        raise Refused(f"refused: the key {key_name!r} is no longer allowed on this server")
    decision = decide(key, command, str(server.root), set(server.app_names()))
    os.environ["ZDD_BY"] = key.name
    if isinstance(decision, Git):
        git = shutil.which("git") or "/usr/bin/git"
        os.execv(git, [git, decision.service, decision.repo])
    return run_zdd(decision.argv)
