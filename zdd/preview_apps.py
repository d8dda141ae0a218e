"""Preview apps on the server: created by the first push of a branch while previews are on,
deployed like any app at each push, removed when the branch is deleted or goes stale. A
preview shares its parent's repository and nothing else: its own env (the parent's, minus
`--except` keys and the parent's database URLs), its own empty databases, its own storage."""

import dataclasses
import datetime
import shutil
from typing import Callable

from zdd import app as apps
from zdd import appenv, backup_target, backups, databases, deploy, install, ops, previews, restore, state
from zdd.errors import InvalidInput, ZddError

Emit = Callable[[str], None]


def of_parent(server, parent: str) -> dict[str, apps.App]:
    """The parent's previews by branch."""
    found = {}
    for name in server.app_names():
        if name.startswith(parent + "--"):
            app = apps.load(server, name)
            if app.settings.preview_of == parent:
                found[app.settings.branch] = app
    return found


def configure(parent, on: bool, given: dict, emit: Emit) -> None:
    current = previews.read(parent.dir)
    if not on:
        if current is None or not current.enabled:
            emit(f"{parent.name}: previews were off")
            return
        previews.write(parent.dir, dataclasses.replace(current, enabled=False))
        emit(f"{parent.name}: previews off: no new ones; those there stay until their branch is deleted")
        return
    settings = previews.settings_from(current, given.get("domain"), parent.settings.domain, given.get("except"),
                                      given.get("max"), given.get("days"), given.get("limit"), given.get("seed"))
    previews.write(parent.dir, settings)
    emit(f"{parent.name}: previews on at {settings.pattern}: a pushed branch other than {parent.settings.branch} "
         f"gets its own app (at most {settings.max_count}, removed {settings.days:g} days after its last push, "
         f"each container capped at {settings.limit}; databases "
         f"{'from its latest backup' if settings.seed_from_backup else 'empty'})")


def deploy_branch(parent, runtime, branch: str, sha: str, ref: str, emit: Emit) -> None:
    existing = of_parent(parent.server, parent.name)
    preview = existing.get(branch)
    if preview is not None:
        deploy.deploy(preview, runtime, sha, ref, emit)
    else:
        preview = _create(parent, runtime, branch, existing, emit)
        try:
            deploy.deploy(preview, runtime, sha, ref, emit)
        except Exception:  # a preview that never served is not kept: it would hold a place until it goes stale
            ops.destroy(preview, runtime, lambda line: None, with_storage=True)
            emit(f"==> Removed the new preview {preview.name}: its first deploy failed (above); push again to retry")
            raise
    emit(f"==> Preview of {branch}: {previews.url(preview.settings.domain)}")


def _create(parent, runtime, branch: str, existing: dict, emit: Emit):
    settings = previews.read(parent.dir)
    if settings is None or not settings.enabled:
        raise InvalidInput(f"previews of {parent.name} are off: `zdd previews {parent.name} on --domain PATTERN`")
    if len(existing) >= settings.max_count:
        raise InvalidInput(f"{parent.name} has {len(existing)} previews, its most ({', '.join(sorted(existing))}): "
                           f"delete a branch (git push production :BRANCH) or raise --max")
    taken = {p.name.split("--", 1)[1]: b for b, p in existing.items()}
    label = previews.label_for(branch, parent.name, taken)
    name, address = previews.app_name(parent.name, label), previews.address(settings.pattern, label)
    if name in parent.server.app_names():
        raise InvalidInput(f"an app named {name} exists and is not a preview of {parent.name}: rename the branch")
    install.check_domain_free(parent.server.root, name, address)
    emit(f"==> Creating the preview {name} of {branch} at {address}")
    app_dir = parent.server.app_dir(name)
    app_dir.mkdir(parents=True)
    try:
        state.write_json_atomic(app_dir / "app.json", {
            "domain": address, "port": parent.settings.port, "branch": branch, "keep_images": 2,
            "preview_of": parent.name, "limit": settings.limit, "created_at": state.now_iso()})
        appenv.update(app_dir, _env(parent, settings, address), [])
        preview = apps.load(parent.server, name)
        for service in parent.services:
            databases.create(preview, runtime, service.kind, None, service.image, emit)
        if settings.seed_from_backup and parent.services:
            _seed(parent, apps.load(parent.server, name), runtime, emit)
    except BaseException:
        _remove_half_made(parent.server, runtime, name)
        raise
    return apps.load(parent.server, name)


def _seed(parent, preview, runtime, emit: Emit) -> None:
    try:
        entry = backups.find_backup(parent, None)
    except InvalidInput:
        emit(f"    {parent.name} has no backup to fill the preview's databases from: they start empty")
        return
    restore.seed(backup_target.repository(parent), entry, preview, runtime, emit)


def _env(parent, settings, address: str) -> dict[str, str]:
    """The parent's env but its `--except` keys and the URLs of its own databases."""
    own_urls = {s.url() for s in parent.services}
    kept = {k: v for k, v in parent.env.items() if k not in settings.except_keys and v not in own_urls}
    return {**kept, "ZDD_PREVIEW": "1", "ZDD_PREVIEW_URL": previews.url(address)}


def _remove_half_made(server, runtime, name: str) -> None:
    try:
        ops.destroy(apps.load(server, name), runtime, lambda line: None, with_storage=True)
    except ZddError:
        shutil.rmtree(server.app_dir(name), ignore_errors=True)


def remove(parent, runtime, branch: str, emit: Emit) -> bool:
    """Remove the preview of ``branch`` with its data; False if it has none."""
    preview = of_parent(parent.server, parent.name).get(branch)
    if preview is None:
        return False
    ops.destroy(preview, runtime, emit, with_storage=True)
    emit(f"==> Removed the preview of {branch} ({preview.name}) and its data")
    return True


def rows(parent) -> list[dict]:
    found = []
    for branch, preview in sorted(of_parent(parent.server, parent.name).items()):
        live = preview.live()
        found.append({"branch": branch, "app": preview.name, "url": previews.url(preview.settings.domain),
                      "sha": live["sha"][:12] if live else None, "created_at": preview.settings.created_at,
                      "last_push": last_push(preview)})
    return found


def last_push(preview) -> str:
    history = preview.history()
    return history[-1]["started_at"] if history else preview.settings.created_at


def remove_stale(server, runtime, now: datetime.datetime, emit: Emit) -> None:
    """Previews whose last push is older than their parent's `--days` (the minute timer)."""
    for name in server.app_names():
        try:
            preview = apps.load(server, name)
            parent = preview.settings.preview_of
            settings = previews.read(server.app_dir(parent)) if parent else None
            if settings is None:
                continue
            idle = now - datetime.datetime.fromisoformat(last_push(preview))
            if idle.total_seconds() > settings.days * 86400:
                ops.destroy(preview, runtime, emit, with_storage=True)
                emit(f"{name}: removed, the preview of {preview.settings.branch} had no push for {settings.days:g} days")
        except (ZddError, ValueError) as error:
            emit(f"{name}: could not check or remove a stale preview: {error}")
