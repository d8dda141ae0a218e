"""Set up an app on this server (install.sh calls ``zdd init``): settings, bare repo, hook.

Idempotent: what is already right is left alone, and every value is checked before
anything is written.
"""

import json
import shlex
from pathlib import Path
from typing import Callable

import git

from zdd import builder, caddy, config, engine, names, runtimes, state
from zdd.errors import InvalidInput, ZddError

Emit = Callable[[str], None]
DEFAULT_CADDYFILE = "/etc/caddy/Caddyfile"
DEFAULT_ADMIN = "localhost:2019"


def init_app(root, app: str, domain: str, port, branch: str, emit: Emit, *, keep_images=None, caddyfile=None,
             caddy_admin=None, caddy_bin=None, templates=None, hook_template=None, deploy_user=None,
             http_port=None, https_port=None, tls=None, registry=None) -> None:
    root = Path(root)
    names.check_app_name(app)
    if "--" in app:
        raise InvalidInput(f"invalid app name {app!r}: '--' is kept for previews (PARENT--BRANCH)")
    domain = names.check_site_address(domain)
    port = names.check_port(port, "app port") if port else None
    names.check_branch(branch)
    keep_images = config.check_keep(keep_images) if keep_images is not None else None
    if caddy_admin:
        caddy.check_admin_address(caddy_admin)
    listeners = {"http_port": names.check_port(http_port, "HTTP port") if http_port else None,
                 "https_port": names.check_port(https_port, "HTTPS port") if https_port else None,
                 "tls": caddy.check_tls_issuer(tls) if tls else None}
    swarm = {"runtime": "swarm" if registry else None, "registry": names.check_registry(registry) if registry else None}
    check_domain_free(root, app, domain)

    found = builder.discover()  # refused here, not at the first push, if no docker CLI builds with BuildKit
    build = {"builder_cli": found.cli, "builder_kind": found.kind}
    settings = _merged_settings(root, caddyfile, caddy_admin, caddy_bin, templates, deploy_user,
                                listeners | swarm | build)
    _check_port_not_shared(domain, settings)
    settings_changed = _write_if_changed(root / config.SETTINGS_FILE, settings, emit)
    app_dir = root / "apps" / app
    app_dir.mkdir(parents=True, exist_ok=True)
    app_file = app_dir / "app.json"
    current = json.loads(app_file.read_text()) if app_file.exists() else {}
    keep_images = keep_images or current.get("keep_images", 5)
    wanted = {"domain": domain, "port": port, "branch": branch, "keep_images": keep_images}
    app_changed = _write_if_changed(app_file, wanted, emit)
    runtime = runtimes.runtime_for(config.load_server(root))
    runtime.after_install(emit, changed=settings_changed or app_changed)
    if settings_changed:
        _say_log_driver(runtime, emit)
    repo_path = root / f"{app}.git"
    if not (repo_path / "HEAD").exists():
        git.Repo.init(repo_path, bare=True, initial_branch=branch)
        emit(f"created {repo_path}")
    if hook_template:
        _install_hook(Path(hook_template), repo_path / "hooks" / "post-receive", root / "bin" / "zdd", app, emit)


def _say_log_driver(runtime, emit: Emit) -> None:
    try:
        driver = engine.daemon_log_driver(runtime.client)
    except ZddError:
        return  # no engine to ask yet: the first deploy needs one, and says so
    if driver not in (None, "json-file"):
        emit(f"logs: the Docker daemon logs with {driver} by default: zdd keeps it and sets no size cap "
             "of its own (log_max_size in settings.json applies to json-file)")


def check_domain_free(root: Path, app: str, domain: str) -> None:
    """No two apps share an address, nor a host name served by the shared sites."""
    host = names.host_route(domain)
    for other in sorted((root / "apps").glob("*/app.json")):
        taken = json.loads(other.read_text()).get("domain")
        other_host = names.host_route(taken) if taken else None
        if other.parent.name != app and (taken == domain or (host and other_host and host[1] == other_host[1])):
            raise InvalidInput(f"{domain} is already the address of app {other.parent.name!r} ({taken}): pick another")


def _check_port_not_shared(domain: str, settings: dict) -> None:
    """A site of its own on the port of the shared sites would clash with them in Caddy."""
    port = names.site_port(domain)
    if port in (settings["http_port"], settings["https_port"]) and not names.host_route(domain):
        raise InvalidInput(f"{domain} would take port {port}, where the sites of host-named apps listen: "
                           "give the app a host name alone (myapp.example.com), or another port")


def _merged_settings(root: Path, caddyfile, caddy_admin, caddy_bin, templates, deploy_user, listeners) -> dict:
    path = root / config.SETTINGS_FILE
    current = json.loads(path.read_text()) if path.exists() else {}
    given = {"caddyfile": caddyfile, "caddy_admin": caddy_admin, "caddy_bin": caddy_bin, "templates": templates,
             "deploy_user": deploy_user, **listeners}
    defaults = {"caddyfile": DEFAULT_CADDYFILE, "caddy_admin": DEFAULT_ADMIN, "caddy_bin": "caddy", "templates": None,
                "deploy_user": None, "http_port": 80, "https_port": 443, "tls": "acme", "runtime": "engine",
                "registry": None, "builder_cli": None, "builder_kind": "classic"}
    # settings the operator added by hand (min_free_mb, ...) stay
    return {**current, **{key: given[key] or current.get(key) or defaults[key] for key in given}}


def _write_if_changed(path: Path, data: dict, emit: Emit) -> bool:
    if path.exists() and json.loads(path.read_text()) == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    state.write_json_atomic(path, data)
    emit(f"wrote {path}")
    return True


def _install_hook(template: Path, hook: Path, zdd_bin: Path, app: str, emit: Emit) -> None:
    text = template.read_text().replace("@ZDD_BIN@", shlex.quote(str(zdd_bin))).replace("@APP@", shlex.quote(app))
    if hook.exists() and hook.read_text() == text:
        return
    staged = hook.with_name(".post-receive.tmp")
    staged.write_text(text)
    staged.chmod(0o755)
    staged.replace(hook)
    emit(f"installed {hook}")
