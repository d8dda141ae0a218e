"""Webhooks: a JSON POST per event to each URL that asked for it, signed with HMAC-SHA256
so that its receiver can tell the POST came from this server.

Events: ``deploy`` (a version went live), ``failed`` (a deploy failed), ``crash`` (Docker
restarted a container that died, see zdd.crashes) and ``backup`` (a scheduled backup's
outcome). A detached child process sends them, so that a receiver that hangs or refuses
never slows or fails what happened: it tries a few times (tenacity) within a short timeout
each, and writes the outcome to logs/notify.log. URLs are kept 0600 and shown masked:
Slack's and Discord's carry their secret in the path.
"""

import concurrent.futures
import dataclasses
import hashlib
import hmac
import json
import os
import pwd
import re
import secrets
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from zdd import names, state
from zdd.errors import InvalidInput

Emit = Callable[[str], None]
EVENTS = ("deploy", "failed", "crash", "backup")
FORMATS = ("json", "slack", "discord")   # slack, discord: their incoming webhooks' {"text"} / {"content"}
HOOKS_FILE = "notify.json"
LOG = Path("logs") / "notify.log"
TIMEOUT = 5.0
ATTEMPTS = 3
URL = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%!$&'()*+,;=:@/?-]*)?")
SIGNATURE_HEADER = "X-Zdd-Signature"   # sha256=HEX of the body, keyed with the hook's secret


@dataclasses.dataclass(frozen=True)
class Hook:
    id: str
    url: str
    events: tuple[str, ...] = EVENTS
    app: str | None = None          # None: every app's events
    format: str = "json"
    secret: str = ""

    def wants(self, event: dict) -> bool:
        return event["event"] in self.events and self.app in (None, event["app"])

    def describe(self) -> str:
        scope = f"app {self.app}" if self.app else "every app"
        return f"{self.id}  {masked(self.url)}  {','.join(self.events)}  {scope}  {self.format}"


def masked(url: str) -> str:
    """The scheme and host only: a webhook's path is often its password."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0]
    return f"{scheme}://{host}/…" if "/" in rest.strip("/") else f"{scheme}://{host}"


def parse_events(text: str | None) -> tuple[str, ...]:
    if not text:
        return EVENTS
    wanted = tuple(dict.fromkeys(part.strip() for part in text.split(",")))
    unknown = [e for e in wanted if e not in EVENTS]
    if unknown:
        raise InvalidInput(f"no event {unknown[0]!r}: choose from {', '.join(EVENTS)} (comma-separated)")
    return wanted


def read(root: Path) -> list[Hook]:
    data = state.read_json(root / HOOKS_FILE) or []
    return [Hook(**{**entry, "events": tuple(entry["events"])}) for entry in data]


def _write(server, hooks: list[Hook]) -> None:
    """0600, and the deploy user's where there is one: its pushes send the events."""
    path = server.root / HOOKS_FILE
    state.write_json_atomic(path, [dataclasses.asdict(h) for h in hooks], mode=0o600)
    if server.deploy_user and os.geteuid() == 0:
        owner = pwd.getpwnam(server.deploy_user)
        os.chown(path, owner.pw_uid, owner.pw_gid)


def add(server, url: str, events: str | None, app: str | None, fmt: str, emit: Emit) -> Hook:
    if not URL.fullmatch(url):
        raise InvalidInput(f"{masked(url)!r} is not an http(s) URL that zdd can POST to: "
                           "e.g. https://hooks.example.com/zdd")
    if fmt not in FORMATS:
        raise InvalidInput(f"no format {fmt!r}: choose json, slack or discord")
    if app is not None:
        names.check_app_name(app)
    hooks = read(server.root)
    hook = Hook(secrets.token_hex(3), url, parse_events(events), app, fmt, secrets.token_hex(32))
    _write(server, hooks + [hook])
    emit(f"added webhook {hook.describe()}")
    if fmt == "json":
        emit(f"its POSTs carry {SIGNATURE_HEADER}: sha256=HMAC-SHA256 of the body with this secret, "
             f"shown once: {hook.secret}")
    return hook


def remove(server, hook_id: str, emit: Emit) -> None:
    hooks = read(server.root)
    if hook_id not in {h.id for h in hooks}:
        raise InvalidInput(f"no webhook {hook_id!r}: `zdd notify` lists them")
    _write(server, [h for h in hooks if h.id != hook_id])
    emit(f"removed webhook {hook_id}")


def event(kind: str, app: str, sha: str | None, reason: str | None = None, **extra) -> dict:
    return {"event": kind, "app": app, "sha": sha, "reason": reason, "time": state.now_iso(),
            "server": socket.gethostname(), **extra}


def body(hook: Hook, happened: dict) -> bytes:
    """What the hook is sent: the event as JSON, or one line of text for Slack or Discord."""
    if hook.format == "json":
        return json.dumps(happened, sort_keys=True).encode()
    sha = (happened.get("sha") or "")[:12]
    line = f"zdd {happened['server']}: {happened['app']} {happened['event']} {sha}".rstrip()
    if happened.get("reason"):
        line += f": {happened['reason']}"
    return json.dumps({"text" if hook.format == "slack" else "content": line}).encode()


def signature(secret: str, payload: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def send(root: Path, happened: dict) -> None:
    """Hand the event to a detached sender for each hook that wants it; return at once."""
    deliveries = []
    for hook in read(root):
        if hook.wants(happened):
            payload = body(hook, happened)
            headers = {"Content-Type": "application/json", "User-Agent": "zdd",
                       "X-Zdd-Event": happened["event"], SIGNATURE_HEADER: signature(hook.secret, payload)}
            deliveries.append({"hook": hook.id, "url": hook.url, "body": payload.decode(), "headers": headers})
    if not deliveries:
        return
    sender = subprocess.Popen([sys.executable, "-m", "zdd.notify", str(root / LOG)], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    sender.stdin.write(json.dumps({"event": happened["event"], "app": happened["app"],
                                   "deliveries": deliveries}).encode())
    sender.stdin.close()


def deliver(batch: dict, log: Path) -> None:
    """The detached sender: POST each delivery, side by side (a slow receiver delays no
    other), a few tries each; log what came of each."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        for delivery in batch["deliveries"]:
            pool.submit(_deliver_one, batch, delivery, log)


def _deliver_one(batch: dict, delivery: dict, log: Path) -> None:
    import tenacity  # only the sender needs it

    post = tenacity.retry(stop=tenacity.stop_after_attempt(ATTEMPTS), wait=tenacity.wait_exponential(0.5, max=4),
                          reraise=True)(_post)
    try:
        outcome = f"HTTP {post(delivery)}"
    except (OSError, urllib.error.URLError) as error:
        outcome = f"not delivered after {ATTEMPTS} tries: {type(error).__name__}"
    with open(log, "a") as handle:  # one short line per write: appends do not interleave
        state.own_like_parent(log)
        handle.write(f"{state.now_iso()} {batch['app']} {batch['event']} -> {delivery['hook']} "
                     f"{masked(delivery['url'])}: {outcome}\n")


def _post(delivery: dict) -> int:
    request = urllib.request.Request(delivery["url"], data=delivery["body"].encode(), headers=delivery["headers"],
                                     method="POST")
    with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
        return answer.status


if __name__ == "__main__":
    log_path = Path(sys.argv[1])
    log_path.parent.mkdir(parents=True, exist_ok=True)
    os.umask(0o077)
    deliver(json.loads(sys.stdin.read()), log_path)
