"""What the post-receive hook runs: pick the ref to deploy, deploy it, and on failure
put the server's ref back so it shows what is live and a re-push retries."""

from typing import Callable

from zdd import app as apps
from zdd import backups, config, deploy, gitrepo, preview_apps, previews, runtimes
from zdd.push import ZERO_SHA, RefUpdate, parse_updates, plan_push

Emit = Callable[[str], None]


def handle_push(server: config.Server, name: str, stdin_text: str, emit: Emit) -> int:
    app = apps.load(server, name)
    settings = app.settings
    preview_settings = previews.read(app.dir)
    plan = plan_push(parse_updates(stdin_text), settings.branch, bool(preview_settings and preview_settings.enabled),
                     frozenset(preview_apps.of_parent(server, name)) if preview_settings else frozenset())
    for update, reason in plan.skipped:
        emit(f"==> Skipped {update.short_name}: {reason}")
    if plan.deploy is None and not plan.previews and not plan.removals:
        emit("==> Nothing to deploy in this push")
        return 0
    try:
        if plan.deploy is not None:
            _deploy(app, plan.deploy, emit)
        for update in plan.previews:
            _deploy(app, update, emit, preview=True)
        for update in plan.removals:
            preview_apps.remove(app, runtimes.runtime_for(server), update.short_name, emit)
        return 0
    finally:
        warning = backups.schedule_warning(app)
        if warning:
            emit(f"==> Warning: {warning}")


def _deploy(app, update: RefUpdate, emit: Emit, preview: bool = False) -> None:
    repo = app.repo()
    runtime = runtimes.runtime_for(app.server)
    try:
        sha = gitrepo.resolve_commit(repo, update.new)
        if preview:
            preview_apps.deploy_branch(app, runtime, update.short_name, sha, update.ref, emit)
        else:
            deploy.deploy(app, runtime, sha, update.ref, emit)
    except Exception as error:
        live = app.live()  # after the deploy's own repair, if any
        _restore_ref(repo, update, app.settings.branch, live, emit)
        if getattr(error, "old_version_serves", True) and not preview:
            _say_what_serves(live, app.settings.domain, emit)
        raise


def _restore_ref(repo, update: RefUpdate, branch: str, live: dict | None, emit: Emit) -> None:
    if update.ref == f"refs/heads/{branch}":
        target = live["sha"] if live else None
    else:
        target = update.old if update.old != ZERO_SHA else None
    gitrepo.set_ref(repo, update.ref, target)
    where = f"back to {target[:12]}" if target else "removed"
    emit(f"==> {update.short_name} on the server {'moved ' if target else ''}{where}, so a re-push retries")


def _say_what_serves(live: dict | None, domain: str, emit: Emit) -> None:
    if live:
        emit(f"==> Still serving {live['sha'][:12]} ({live['ref']}) at {domain}: nothing changed there")
    else:
        emit("==> Nothing is serving this app: this was its first deploy")
