"""One-off containers from an app's image: the release step of a deploy, and `zdd run`."""

import os
import secrets
import shlex
import signal
import threading
import time
from typing import Callable

from zdd import engine, generation, processes
from zdd.errors import ReleaseFailed, ZddError

Emit = Callable[[str], None]
HANGUPS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)


def shown(command) -> str:
    """A command as one line to print (the image's CMD when None)."""
    if not command:
        return "the image's CMD"
    if command[:2] == ("/bin/sh", "-c"):
        return command[2]
    return shlex.join(command)


def release(version: generation.Version, emit: Emit) -> None:
    """Run the release command to completion, its output streamed; raise ReleaseFailed unless it exits 0."""
    repo_config = version.config
    name = f"zdd-{version.app}-release-{version.sha[:12]}-{version.deploy_id}"
    code, tail = engine.run_to_completion(version.client, version.image, name, version.labels(processes.RELEASE),
                                          version.env, repo_config.release, version.mounts,
                                          repo_config.release_timeout, lambda line: emit(f"    {line}"),
                                          network=version.network, limit=version.limits.of(processes.RELEASE))
    last = f" (its last line: {tail[-1].strip()!r})" if tail and tail[-1].strip() else ""
    if code is None:
        raise ReleaseFailed(f"the release command did not finish within {repo_config.release_timeout:g}s and "
                            f"was stopped{last}: nothing was switched; raise release_timeout in zdd.toml if it "
                            "needs longer")
    if code != 0:
        raise ReleaseFailed(f"the release command exited with code {code}{last}: nothing was switched")
    emit("    the release command succeeded")


def run(app, client, command: list[str], process: str | None, extra_env: dict[str, str], tty: bool) -> int:
    """``zdd run``: a fresh container from the live image (on this engine), attached to this
    terminal; removed afterwards, also when this process is interrupted or its SSH session drops."""
    live = app.live()
    if live is None:
        raise ZddError(f"{app.name} has nothing live to run a command in: push it first")
    command = list(command) or list(_process_command(live, process, app.name))
    image = engine.find_image(client, live["image"])
    if image is None:
        raise ZddError(f"the live image {live['image']} is missing: `zdd restart {app.name}` rebuilds it")
    labels = generation.labels(app.name, live["sha"], live["ref"], processes.RUN, live["deploy_id"])
    env = {**app.env, **extra_env}
    name = f"zdd-{app.name}-run-{live['sha'][:12]}-{secrets.token_hex(3)}"
    container = engine.create_interactive(client, image, name, labels, env, command, app.mounts, tty, app.network,
                                          app.limits.of(process or processes.RUN))
    previous = {sig: signal.signal(sig, _raise_hangup) for sig in HANGUPS}
    _hang_up_when_orphaned()
    try:
        code = engine.attach_terminal(container)
    except _HungUp as hangup:
        code = 128 + hangup.signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        engine.remove(container)
    return 1 if code is None else code


def _hang_up_when_orphaned(poll: float = 0.5) -> None:
    """Without a pty, a dropped SSH session sends no SIGHUP: sshd just goes away, leaving this
    process to init. Seeing the parent change counts as the hang-up it is."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll)
        os.kill(os.getpid(), signal.SIGHUP)

    threading.Thread(target=watch, daemon=True).start()


class _HungUp(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_hangup(signum, frame):
    raise _HungUp(signum)


def _process_command(live: dict, process: str | None, app: str):
    if process is None:
        raise ZddError("give the command to run after --, e.g. zdd run APP -- sh, or --process NAME")
    spec = (live.get("processes") or {}).get(process)
    if spec is None:
        known = ", ".join(sorted(live.get("processes") or {processes.WEB: None}))
        raise ZddError(f"{app} has no process {process!r} (it has: {known})")
    if not spec.get("command"):
        raise ZddError(f"{process} runs the image's CMD: give the command after --")
    return spec["command"]
