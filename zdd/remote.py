"""zdd on the laptop: the same commands, run on the server over the user's own ssh.

The server and the app come from a git remote of the checkout (``production`` unless
``--remote NAME``). Output streams through and the exit code passes through; ``run`` gets
a TTY when this terminal has one. Parsing the remote and building the ssh command are pure.
"""

import dataclasses
import os
import re
import shlex
import subprocess
import sys

from zdd.errors import InvalidInput, ZddError

SSH_URL = re.compile(r"ssh://(?:(?P<user>[^@/]+)@)?(?P<host>[^:/]+|\[[0-9a-fA-F:]+\])(?::(?P<port>[0-9]+))?"
                     r"(?P<path>/.*)")
SCP_LIKE = re.compile(r"(?:(?P<user>[^@/:]+)@)?(?P<host>[^:/]+):(?P<path>[^/].*|/.*)")
SERVER_WIDE = {"apps", "keys", "render", "backup-target"}
ACTION_FIRST = "db"  # `zdd db create APP postgres`: the app comes after the action


@dataclasses.dataclass(frozen=True)
class Remote:
    host: str
    user: str | None
    port: str | None
    path: str          # of the app's repository on the server
    app: str

    def zdd_path(self) -> str:
        """The server's zdd command: ROOT/bin/zdd beside ROOT/APP.git, else zdd on its PATH."""
        root = os.path.dirname(self.path.rstrip("/"))
        return f"{root}/bin/zdd" if self.path.startswith("/") and root != "/" else "zdd"


def parse_url(name: str, url: str) -> Remote:
    match = SSH_URL.fullmatch(url) or (None if "://" in url else SCP_LIKE.fullmatch(url))
    if not match:
        raise InvalidInput(f"the git remote {name!r} is {url!r}, not an SSH URL: zdd runs commands on the "
                           "server over ssh (ssh://deploy@server/srv/zdd/APP.git)")
    app = os.path.basename(match["path"].rstrip("/"))
    app = app[:-4] if app.endswith(".git") else app
    return Remote(match["host"], match["user"], match.groupdict().get("port"), match["path"], app)


def remote_argv(remote: Remote, argv: list[str]) -> list[str]:
    """The server's zdd command for the laptop's ``zdd COMMAND [args]``: the app goes after
    COMMAND (unless the command is server-wide or the app is named already)."""
    if not argv:
        raise InvalidInput("name a command, e.g. zdd status")
    command, rest = argv[0], argv[1:]
    if command == ACTION_FIRST and rest and rest[1:2] != [remote.app]:  # zdd db ACTION APP ...
        return [remote.zdd_path(), command, rest[0], remote.app, *rest[1:]]
    if command in SERVER_WIDE or command == ACTION_FIRST or rest[:1] == [remote.app]:
        return [remote.zdd_path(), command, *rest]
    return [remote.zdd_path(), command, remote.app, *rest]


def ssh_command(remote: Remote, argv: list[str], tty: bool, ssh: str) -> list[str]:
    """ssh with the user's own client and config (agents, jump hosts); the remote command as
    one string of quoted words, which the server splits again and never gives to a shell."""
    words = shlex.split(ssh)
    if remote.port:
        words += ["-p", remote.port]
    words.append("-t" if tty else "-T")
    words.append(f"{remote.user}@{remote.host}" if remote.user else remote.host)
    return words + ["--", shlex.join(remote_argv(remote, argv))]


def find_remote(name: str, cwd: str | None = None) -> Remote:
    result = subprocess.run(["git", "remote", "get-url", name], capture_output=True, text=True, cwd=cwd)
    if result.returncode != 0:
        inside = subprocess.run(["git", "rev-parse", "--git-dir"], capture_output=True, cwd=cwd).returncode == 0
        where = "this checkout has no git remote" if inside else "this folder is not a git checkout, so no remote"
        raise ZddError(f"{where} {name!r}: run zdd in your app's checkout, or pick one with --remote NAME")
    return parse_url(name, result.stdout.strip())


def _git_ssh_command() -> str | None:
    result = subprocess.run(["git", "config", "core.sshCommand"], capture_output=True, text=True)
    return result.stdout.strip() or None


def run(remote_name: str, argv: list[str]) -> int:
    remote = find_remote(remote_name)
    interactive = argv[:1] == ["run"] or argv[:2] == ["db", "connect"]
    tty = interactive and sys.stdin.isatty() and sys.stdout.isatty()
    ssh = os.environ.get("ZDD_SSH") or os.environ.get("GIT_SSH_COMMAND") or _git_ssh_command() or "ssh"
    code = subprocess.call(ssh_command(remote, argv, tty, ssh))
    if code == 255:
        print(f"zdd: error: ssh to {remote.host} failed: is your key added on the server "
              f"(zdd keys add NAME --apps {remote.app} < key.pub, as root there)?", file=sys.stderr)
    return code
