"""What the post-receive hook runs: pick the ref to deploy, deploy it, and on failure
put the server's ref back so it shows what is live and a re-push retries."""

from typing import Callable

from zdd import app as apps
from zdd import backups, config, deploy, gitrepo, runtimes
from zdd.push import ZERO_SHA, RefUpdate, parse_updates, plan_push

Emit = Callable[[str], None]


def handle_push(server: config.Server, name: str, stdin_text: str, emit: Emit) -> int:
    app = apps.load(server, name)
    settings = app.settings
    plan = plan_push(parse_updates(stdin_text), settings.branch)
    for update, reason in plan.skipped:
        emit(f"==> Skipped {update.short_name}: {reason}")
    if plan.deploy is None:
        emit("==> Nothing to deploy in this push")
        return 0
    repo = app.repo()
    update = plan.deploy
    try:
        sha = gitrepo.resolve_commit(repo, update.new)
        deploy.deploy(app, runtimes.runtime_for(server), sha, update.ref, emit)
        return 0
    except Exception as error:
        live = app.live()  # after the deploy's own repair, if any
        _restore_ref(repo, update, settings.branch, live, emit)
        if getattr(error, "old_version_serves", True):
            _say_what_serves(live, settings.domain, emit)
        raise
    finally:
        warning = backups.schedule_warning(app)
        if warning:
            emit(f"==> Warning: {warning}")


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
