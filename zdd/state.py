"""What is live for each app, its deploy history, and the per-app deploy lock, on disk."""

import contextlib
import datetime
import errno
import fcntl
import json
import os
import re
import time
from pathlib import Path
from typing import Callable, Iterator

from zdd.errors import LockTimeout

STATE_FILE = "state.json"
HISTORY_FILE = "history.jsonl"
LOCK_FILE = "deploy.lock"


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def iso(epoch: float) -> str:
    """A Unix time as now_iso writes times."""
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat(timespec="seconds")


def epoch(text: str | None) -> float:
    """Seconds since 1970 of a UTC time that zdd (iso) or Docker (RFC 3339, nanoseconds, Z)
    wrote; 0 for none or Docker's zero time (never started, never finished)."""
    if not text or text.startswith("0001-"):
        return 0.0
    moment = datetime.datetime.fromisoformat(text[:19]).replace(tzinfo=datetime.timezone.utc)
    fraction = re.match(r"\.(\d+)", text[19:])
    return moment.timestamp() + (float(f"0.{fraction.group(1)}") if fraction else 0.0)


def live_record(app: str, sha: str, ref: str, image: str, container, slot: str, upstream: str, port: int,
                deploy_id: str, image_reused: bool | None, processes: dict) -> dict:
    """What ``zdd status`` shows: the one shape of the live record. ``container`` is the web
    container; ``processes`` what zdd.toml declared (name -> command, overlap, healthcheck)."""
    return {
        "app": app, "sha": sha, "ref": ref, "image": image, "image_reused": image_reused,
        "container": container.name, "container_id": container.id, "slot": slot, "upstream": upstream,
        "port": port, "deployed_at": now_iso(), "deploy_id": deploy_id, "processes": processes,
    }


def write_json_atomic(path: Path, data, mode: int = 0o644) -> None:
    """Write to a temporary file, fsync, rename over: readers see the old or the new, never half."""
    staged = path.with_name(f".{path.name}.tmp")
    with open(staged, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(staged, mode)
    own_like_parent(staged)
    os.replace(staged, path)
    _fsync_dir(path.parent)


def own_like_parent(path: Path) -> None:
    """When root writes in a deploy user's folder, give the file to that user, so that
    the user's next push can still read and write it."""
    if os.geteuid() != 0:
        return
    parent = path.parent.stat()
    if parent.st_uid != 0:
        os.chown(path, parent.st_uid, parent.st_gid)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def free_mb(folder) -> float | None:
    """Free space in MB where ``folder`` is (None: no such folder here, e.g. an engine's on another host)."""
    try:
        stats = os.statvfs(folder)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize / 1e6


def read_json(path: Path):
    """A JSON file's data, or None when there is no such file."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def read_live(app_dir: Path) -> dict | None:
    return read_json(app_dir / STATE_FILE)


def write_live(app_dir: Path, live: dict) -> None:
    write_json_atomic(app_dir / STATE_FILE, live)


def append_jsonl(path: Path, entry: dict) -> None:
    """Add one line to a log of JSON lines, on disk before this returns."""
    line = json.dumps(entry) + "\n"
    with open(path, "a") as handle:
        own_like_parent(path)
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def keep_last_jsonl(path: Path, entry: dict, kept: int) -> None:
    """Append ``entry`` to a log of JSON lines that keeps its last ``kept`` entries (rewritten
    atomically when it grows past them)."""
    append_jsonl(path, entry)
    entries = read_jsonl(path)
    if len(entries) > kept:
        staged = path.with_name(f".{path.name}.tmp")
        staged.write_text("".join(json.dumps(e) + "\n" for e in entries[-kept:]))
        own_like_parent(staged)
        os.replace(staged, path)


def read_jsonl(path: Path) -> list[dict]:
    """Every whole line of such a log (a line cut short by a crash is skipped)."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        with contextlib.suppress(json.JSONDecodeError):
            entries.append(json.loads(line))
    return entries


def append_history(app_dir: Path, entry: dict) -> None:
    append_jsonl(app_dir / HISTORY_FILE, entry)


def read_history(app_dir: Path) -> list[dict]:
    return read_jsonl(app_dir / HISTORY_FILE)


@contextlib.contextmanager
def deploy_lock(app_dir: Path, emit: Callable[[str], None], timeout: float = 1800) -> Iterator[None]:
    """Hold the app's deploy lock; wait in turn, saying so. The kernel frees it if we die."""
    handle = _open_lock(app_dir)
    try:
        if not _try_lock(handle):
            emit(f"another deploy of this app is running ({_holder(handle)}): waiting for it to finish")
            deadline = time.monotonic() + timeout
            while not _try_lock(handle):
                if time.monotonic() > deadline:
                    raise LockTimeout(f"gave up after {timeout:.0f}s waiting for the other deploy; push again later")
                time.sleep(0.2)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {time.strftime('%H:%M:%S')}\n")
        handle.flush()
        yield
    finally:
        handle.close()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing), waiting for it."""
    with open(path, "a+") as handle:
        own_like_parent(path)
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def lock_if_free(app_dir: Path, name: str = LOCK_FILE) -> Iterator[bool]:
    """Hold the app's deploy lock (or another of its locks) if it is free; yields whether it does."""
    handle = _open_lock(app_dir, name)
    try:
        yield _try_lock(handle)
    finally:
        handle.close()


def _open_lock(app_dir: Path, name: str = LOCK_FILE):
    handle = open(app_dir / name, "a+")
    own_like_parent(app_dir / name)
    return handle


def _try_lock(handle) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as error:
        if error.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise


def _holder(handle) -> str:
    handle.seek(0)
    return handle.read().strip() or "holder unknown"
