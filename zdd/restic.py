"""Everything zdd asks of restic, the backup tool: one repository per app (encrypted,
deduplicated), reached by restic's own URLs (a local folder, s3:..., sftp:...). The key
and any credentials travel in the environment, never on a command line or in output."""

import dataclasses
import json
import os
import shutil
import subprocess
import time
from typing import IO

from zdd.errors import ZddError


class ResticError(ZddError):
    """restic failed: its last line says why."""


@dataclasses.dataclass(frozen=True)
class Repository:
    url: str                 # restic's repository: a folder, s3:HOST/BUCKET/PATH, sftp:USER@HOST:/PATH
    password_file: str
    credentials: dict        # e.g. AWS_ACCESS_KEY_ID: passed in restic's environment only
    options: tuple = ()      # restic's -o options, e.g. sftp.command=...

    @property
    def where(self) -> str:
        """The repository as output may show it (no credentials are ever part of the URL)."""
        return self.url

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.credentials, "RESTIC_REPOSITORY": self.url,
                "RESTIC_PASSWORD_FILE": self.password_file, "RESTIC_PROGRESS_FPS": "0.2"}


def binary() -> str:
    found = shutil.which("restic") or ("/usr/bin/restic" if os.access("/usr/bin/restic", os.X_OK) else None)
    if found is None:
        raise ZddError("backups need restic: apt-get install -y restic (install.sh does it)")
    return found


def command(repo: Repository, *args: str) -> list[str]:
    return [binary(), *[word for option in repo.options for word in ("-o", option)], *args]


def run(repo: Repository, *args: str, timeout: float = 600, lock_wait: float = 120) -> str:
    """A restic command that reads nothing: its standard output; ResticError with its last line.
    While another restic holds the lock it needs (a prune, a listing), it waits its turn."""
    deadline = time.monotonic() + lock_wait
    while True:
        try:
            done = subprocess.run(command(repo, *args), env=repo.env(), capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise ResticError(f"restic {args[0]} did not finish within {timeout:g}s ({repo.where})") from None
        if done.returncode == 0 or "already locked" not in done.stderr or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if done.returncode != 0:
        raise ResticError(f"restic {args[0]} failed for {repo.where}: {last_line(done.stderr)}")
    return done.stdout


def last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    meaningful = [line for line in lines if "fatal" in line.lower() or "error" in line.lower()]
    return (meaningful or lines or ["no output"])[-1]


def ensure_initialised(repo: Repository) -> bool:
    """Create the repository unless it exists; True if it was created."""
    if probe(repo):
        return False
    run(repo, "init")
    return True


def _missing(stderr: str) -> bool:
    """restic found no repository there (as opposed to: it could not look)."""
    text = stderr.lower()
    return any(sign in text for sign in ("no such file or directory", "file does not exist",
                                         "the specified key does not exist"))


def probe(repo: Repository) -> bool:
    """Whether a repository is there; ResticError when restic cannot reach the place (or is
    refused its credentials)."""
    found = subprocess.run(command(repo, "cat", "config"), env=repo.env(), capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=120)
    if found.returncode != 0 and not _missing(found.stderr):
        raise ResticError(f"restic cannot use {repo.where}: {last_line(found.stderr)}")
    return found.returncode == 0


def backup_stream(repo: Repository, source: IO[bytes], filename: str, tags: list[str]) -> dict:
    """Store what ``source`` yields as one snapshot holding ``filename``; restic's summary
    (snapshot_id, data_added, total_bytes_processed)."""
    args = ["backup", "--stdin", "--stdin-filename", filename, "--host", "zdd", "--json"]
    for tag in tags:
        args += ["--tag", tag]
    done = subprocess.run(command(repo, *args), env=repo.env(), stdin=source, capture_output=True, timeout=6 * 3600)
    stderr = done.stderr.decode("utf-8", "replace")
    if done.returncode != 0:
        raise ResticError(f"restic backup failed for {repo.where}: {last_line(stderr)}")
    for line in reversed(done.stdout.decode("utf-8", "replace").splitlines()):
        if '"summary"' in line:
            return json.loads(line)
    raise ResticError(f"restic backup printed no summary ({last_line(stderr)})")


def snapshots(repo: Repository, *tags: str) -> list[dict]:
    args = ["snapshots", "--json"] + [arg for tag in tags for arg in ("--tag", tag)]
    return json.loads(run(repo, *args) or "[]") or []


def dump_command(repo: Repository, snapshot: str, filename: str) -> list[str]:
    """``restic dump``'s command line (run with ``repo.env()``): the stored file on its output."""
    return command(repo, "dump", snapshot, f"/{filename}")


def dump_process(repo: Repository, snapshot: str, filename: str) -> subprocess.Popen:
    """``restic dump``: the stored file on the returned process's standard output."""
    return subprocess.Popen(dump_command(repo, snapshot, filename), env=repo.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def forget(repo: Repository, snapshot_ids: list[str]) -> None:
    if snapshot_ids:
        run(repo, "forget", *snapshot_ids)


def forget_by_policy(repo: Repository, keep: dict[str, int]) -> str:
    """Apply the retention policy to each stored item (grouped by its file name) and prune."""
    args = ["forget", "--prune", "--group-by", "paths"]
    for unit, count in keep.items():
        args += [f"--keep-{unit}", str(count)]
    return run(repo, *args, timeout=6 * 3600)


def check(repo: Repository) -> None:
    run(repo, "check", timeout=6 * 3600)
