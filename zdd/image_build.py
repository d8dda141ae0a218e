"""The deploy's image: reused if it exists, else built from the commit with BuildKit, once it
is known to fit on disk and its [build] settings and secrets are in place."""

import tempfile
from typing import Callable

from zdd import builder, engine, gitrepo, names, state
from zdd.errors import BuildFailed, GitError

Emit = Callable[[str], None]


def build_or_reuse(app, client, repo, repo_config, sha, ref, timer, deployed_before: bool):
    """The image of commit ``sha``, and whether it existed already (then nothing is built)."""
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
        free_mb = state.free_mb(folder)
        needed_mb = 2 * size_mb + server.min_free_mb
        if free_mb is not None and free_mb < needed_mb:
            raise BuildFailed(f"not enough disk space to build: {free_mb:.0f} MB free in {folder}, about "
                              f"{needed_mb:.0f} MB needed ({server.min_free_mb} MB stays free): free some "
                              "space, e.g. fewer kept images (install.sh --keep) or `docker system prune`")

