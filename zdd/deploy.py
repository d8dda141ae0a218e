"""The deploy, step by step: repair, read zdd.toml, build or reuse, release, roll out on the
server's runtime (start beside the old, health-gate, switch, retire), record, prune."""

import contextlib
import getpass
import os
import secrets
import signal
import tempfile
import time
from typing import Callable

from zdd import builder, engine, generation, gitrepo, names, oneoff, processes, retention, state
from zdd.errors import BuildFailed, GitError

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
        _injected_fault(name)


def _injected_fault(step: str) -> None:
    """Fault injection for the tests: ZDD_FAULT=after:STEP kills zdd as that step ends."""
    if os.environ.get("ZDD_FAULT") == f"after:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


def deploy(app, runtime, sha: str, ref: str, emit: Emit) -> dict:
    """Deploy commit ``sha`` of ``app`` (a zdd.app.App) on ``runtime``; return the new live
    record. Raises ZddError on failure, in which case what served still serves (unless the
    error says otherwise) and the Caddyfile is as it was."""
    names.check_sha(sha)
    with state.deploy_lock(app.dir, emit):
        live = runtime.reconcile(app, emit)
        deploy_id = secrets.token_hex(3)
        timer = StepTimer(emit)
        started_at = state.now_iso()
        try:
            record = _deploy_locked(app, runtime, live, sha, ref, deploy_id, timer)
        except Exception as error:
            state.append_history(app.dir, _history(app.name, sha, ref, deploy_id, started_at, timer, "failed",
                                                   str(error)))
            raise
        with timer.step("record", None):
            state.write_live(app.dir, record)
        state.append_history(app.dir, _history(app.name, sha, ref, deploy_id, started_at, timer, "live", None,
                                               image_reused=record["image_reused"]))
        total = sum(timer.durations.values())
        emit(f"==> {app.name} is live at {app.settings.domain}: {sha[:12]} ({ref}), deployed in {total:.1f}s")
        try:
            prune_images(runtime.client, app, {sha, live and live["sha"]}, emit)
        except Exception as error:  # the deploy is done: a failed clean-up must not fail it
            emit(f"    could not prune old images ({type(error).__name__}: {error}): the next deploy tries again")
        if not record["image_reused"]:
            prune_build_cache(app.server, emit)
        return record


def _deploy_locked(app, runtime, live, sha, ref, deploy_id, timer) -> dict:
    client = runtime.client
    repo = app.repo()
    with timer.step("config", f"Deploying {app.name} {sha[:12]} ({ref})"):
        repo_config = app.repo_config_at(sha, repo)
        counts = _process_counts(repo_config, app.scale, timer.emit, runtime.web_scales)
    deployed_before = any(entry["sha"] == sha for entry in app.history())
    image, reused = _build_or_reuse(app, client, repo, repo_config, sha, ref, timer, deployed_before)
    version = generation.Version(client, image, app.name, sha, ref, deploy_id, repo_config, app.env, app.mounts)
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


def _build_or_reuse(app, client, repo, repo_config, sha, ref, timer, deployed_before: bool):
    tag = names.image_tag(app.name, sha)
    short_tag = f"{names.image_repository(app.name)}:{sha[:12]}"
    image = engine.find_image(client, tag)
    if image is not None:
        with timer.step("build", f"Image {short_tag} exists: reusing it, no build"):
            return image, True
    build = repo_config.build
    _check_dockerfile(repo, sha, build.dockerfile)
    secrets = _build_secrets(app, build)
    _check_room_to_build(app.server, client, repo, sha)
    if gitrepo.has_submodules(repo, sha):
        timer.emit("==> Note: submodules are not part of the build context (git archive leaves them out)")
    if deployed_before:
        timer.emit(f"==> The image of {sha[:12]} was pruned: rebuilding it from git")
    with timer.step("build", f"Building image {short_tag} with BuildKit"):
        with gitrepo.export_tar(repo, sha) as context:
            builder.build(_builder(app.server), context, tag, names.labels(app.name, sha, ref), build, secrets,
                          lambda line: timer.emit(f"    {line}"))
        image = engine.find_image(client, tag)
        if image is None:
            raise BuildFailed(f"the build ended without the image {short_tag}")
    return image, False


def _check_dockerfile(repo, sha: str, path: str) -> None:
    if gitrepo.regular_file(repo, sha, path):
        return
    if path == "Dockerfile":
        raise GitError(f"commit {sha[:12]} has no Dockerfile at its root: add one and push again")
    raise GitError(f"commit {sha[:12]} has no file {path} (build.dockerfile in zdd.toml), or it is a link: "
                   "name a file inside the repository")


def _build_secrets(app, build) -> dict[str, str]:
    """The values of the env keys that [build] secrets names; refused before the build if one is unset."""
    missing = [name for name in build.secrets if name not in app.env]
    if missing:
        raise BuildFailed(f"the build secret {missing[0]} is not set: `zdd env {app.name} set {missing[0]}=...` "
                          "(zdd.toml's build.secrets names env keys of the app)")
    return {name: app.env[name] for name in build.secrets}


def _builder(server) -> builder.Builder:
    """The docker CLI install.sh recorded, or (a server set up before BuildKit builds) one found now."""
    if server.builder_cli:
        return builder.Builder(server.builder_cli, server.builder_kind)
    return builder.discover()


def prune_build_cache(server, emit: Emit) -> None:
    try:
        builder.prune_cache(_builder(server), server.build_cache_mb, server.cache_mount_days)
    except Exception as error:  # the deploy is done: a failed clean-up must not fail it
        emit(f"    could not prune the build cache ({type(error).__name__}: {error}): the next build tries again")


def _check_room_to_build(server, client, repo, sha: str) -> None:
    """Refuse a build that would not fit, before it starts filling the disk."""
    size_mb = gitrepo.tree_size(repo, sha) / 1e6
    if size_mb > server.max_context_mb:
        raise BuildFailed(f"the build context is {size_mb:.0f} MB, over the {server.max_context_mb} MB limit: "
                          "remove large files from the repository, or raise max_context_mb in settings.json")
    for folder in (engine.storage_dir(client), tempfile.gettempdir()):
        free_mb = _free_mb(folder)
        needed_mb = 2 * size_mb + server.min_free_mb
        if free_mb is not None and free_mb < needed_mb:
            raise BuildFailed(f"not enough disk space to build: {free_mb:.0f} MB free in {folder}, about "
                              f"{needed_mb:.0f} MB needed ({server.min_free_mb} MB stays free): free some "
                              "space, e.g. fewer kept images (install.sh --keep) or `docker system prune`")


def _free_mb(folder: str) -> float | None:
    try:
        stats = os.statvfs(folder)
    except OSError:
        return None  # an engine on another host: its disk is not ours to see
    return stats.f_bavail * stats.f_frsize / 1e6


def prune_images(client, app, protected: set, emit: Emit) -> None:
    """Delete all but the app's ``keep_images`` most recently used images, never ``protected``."""
    keep = app.settings.keep_images
    images = [{**image, "created": retention.epoch(image["created"])}
              for image in engine.app_images(client, app.name)]
    used = retention.last_used(app.history())
    doomed = retention.choose_prunable(images, used, keep, protected)
    removed = [image for image in doomed if engine.remove_image(client, image["id"])]
    if removed:
        freed = sum(image["size"] for image in removed) / 1e6
        emit(f"==> Pruned {len(removed)} old image(s) beyond the newest {keep}: about {freed:.1f} MB freed")


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
