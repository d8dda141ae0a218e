"""The deploy, step by step: repair, read zdd.toml, build or reuse, release, roll out on the
server's runtime (start beside the old, health-gate, switch, retire), record, prune."""

import contextlib
import getpass
import os
import secrets
import signal
import time
from typing import Callable

from zdd import engine, generation, image_build, names, notify, oneoff, processes, retention, state

Emit = Callable[[str], None]


class StepTimer:
    def __init__(self, emit: Emit):
        self.emit = emit
        self.durations: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, name: str, message: str | None):
        if message:
            self.emit(f"==> {message}")
        started = time.monotonic()
        try:
            yield
        finally:
            self.durations[name] = round(time.monotonic() - started, 3)
        injected_fault(name)


def injected_fault(step: str) -> None:
    """Fault injection for the tests: ZDD_FAULT=after:STEP kills zdd as that step ends."""
    if os.environ.get("ZDD_FAULT") == f"after:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


def deploy(app, runtime, sha: str, ref: str, emit: Emit, lock_held: bool = False) -> dict:
    """Deploy commit ``sha`` of ``app`` (a zdd.app.App) on ``runtime``; return the new live
    record. Raises ZddError on failure, in which case what served still serves (unless the
    error says otherwise) and the Caddyfile is as it was. ``lock_held``: the caller holds the
    app's deploy lock already (`zdd db upgrade` holds it from start to end)."""
    names.check_sha(sha)
    with contextlib.nullcontext() if lock_held else state.deploy_lock(app.dir, emit):
        live = runtime.reconcile(app, emit)
        deploy_id = secrets.token_hex(3)
        timer = StepTimer(emit)
        started_at = state.now_iso()
        try:
            record = _deploy_locked(app, runtime, live, sha, ref, deploy_id, timer)
        except Exception as error:
            entry = _history(app.name, sha, ref, deploy_id, started_at, timer, "failed", str(error))
            state.append_history(app.dir, entry)
            _tell_webhooks(app, "failed", entry, emit)
            raise
        with timer.step("record", None):
            state.write_live(app.dir, record)
        entry = _history(app.name, sha, ref, deploy_id, started_at, timer, "live", None,
                         image_reused=record["image_reused"])
        state.append_history(app.dir, entry)
        _tell_webhooks(app, "deploy", entry, emit)
        total = sum(timer.durations.values())
        emit(f"==> {app.name} is live at {app.settings.domain}: {sha[:12]} ({ref}), deployed in {total:.1f}s")
        try:
            prune_images(runtime.client, app, {sha, live and live["sha"]}, emit)
        except Exception as error:  # the deploy is done: a failed clean-up must not fail it
            emit(f"    could not prune old images ({type(error).__name__}: {error}): the next deploy tries again")
        if not record["image_reused"]:
            image_build.prune_build_cache(app.server, emit)
        return record


def _deploy_locked(app, runtime, live, sha, ref, deploy_id, timer) -> dict:
    client = runtime.client
    repo = app.repo()
    with timer.step("config", f"Deploying {app.name} {sha[:12]} ({ref})"):
        repo_config = app.repo_config_at(sha, repo)
        counts = _process_counts(repo_config, app.scale, timer.emit, runtime.web_scales)
    deployed_before = any(entry["sha"] == sha for entry in app.history())
    image, reused = image_build.build_or_reuse(app, client, repo, repo_config, sha, ref, timer, deployed_before)
    version = generation.Version(client, image, app.name, sha, ref, deploy_id, repo_config, app.env, app.mounts,
                                 app.network, app.limits)
    if repo_config.release:
        with timer.step("release", f"Running the release command ({oneoff.shown(repo_config.release)})"):
            oneoff.release(version, timer.emit)
    return runtime.roll_out(app, version, counts, live, timer) | {"image_reused": reused}


def _process_counts(repo_config, scale: dict[str, int], emit: Emit, web_scales: bool) -> dict[str, int]:
    for name in processes.unknown_names(repo_config.processes, [n for n, c in scale.items() if c]):
        emit(f"    `zdd scale` set {name}={scale[name]}, but zdd.toml declares no process {name}: ignored")
    counts = processes.desired(repo_config.processes, scale, web_scales)
    if len(counts) > 1 or counts.get(processes.WEB) != 1:
        emit(f"    processes: {' '.join(f'{name}={count}' for name, count in counts.items())}")
    return counts


def prune_images(client, app, protected: set, emit: Emit) -> None:
    """Delete all but the app's ``keep_images`` most recently used images, never ``protected``."""
    keep = app.settings.keep_images
    images = engine.app_images(client, app.name)
    used = retention.last_used(app.history())
    doomed = retention.choose_prunable(images, used, keep, protected)
    removed = [image for image in doomed if engine.remove_image(client, image["id"])]
    if removed:
        freed = sum(image["size"] for image in removed) / 1e6
        emit(f"==> Pruned {len(removed)} old image(s) beyond the newest {keep}: about {freed:.1f} MB freed")


def _tell_webhooks(app, kind: str, entry: dict, emit: Emit) -> None:
    try:
        notify.send(app.server.root, notify.event(kind, app.name, entry["sha"], entry["reason"], ref=entry["ref"],
                                                  by=entry["by"]))
    except Exception as error:  # the webhooks must never change a deploy's outcome
        emit(f"    could not hand the {kind} event to the webhooks ({type(error).__name__}: {error})")


def _history(app, sha, ref, deploy_id, started_at, timer, outcome, reason, image_reused=None) -> dict:
    return {
        "app": app, "sha": sha, "ref": ref, "deploy_id": deploy_id, "outcome": outcome,
        "reason": reason, "started_at": started_at, "finished_at": state.now_iso(),
        "steps": timer.durations, "image_reused": image_reused, "by": _who(),
    }


def _who() -> str:
    """The SSH key's name when zdd's forced command let the push in, else the user."""
    if os.environ.get("ZDD_BY"):
        return os.environ["ZDD_BY"]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
