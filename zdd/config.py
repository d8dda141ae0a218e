"""Server settings, per-app settings and the pushed repo's zdd.toml, validated once."""

import dataclasses
import json
import os
import re
import tomllib
from pathlib import Path

from zdd import appenv, limits, names
from zdd import cron as cron_jobs
from zdd import processes as process_model
from zdd.errors import ConfigError, InvalidInput

DEFAULT_ROOT = "/srv/zdd"
SETTINGS_FILE = "settings.json"
DEFAULT_APP_PORT = 8000


@dataclasses.dataclass(frozen=True)
class Server:
    """Where zdd keeps its state and how it reaches Caddy; recorded by install.sh."""

    root: Path
    caddyfile: Path
    caddy_admin: str
    caddy_bin: str = "caddy"
    templates: Path | None = None
    min_free_mb: int = 1024
    max_context_mb: int = 2048
    deploy_user: str | None = None   # whose authorized_keys `zdd keys` manages
    http_port: int = 80              # the shared sites of apps addressed by host name
    https_port: int = 443
    tls: str = "acme"                # or "internal": certificates from Caddy's own CA
    runtime: str = "engine"          # which zdd.runtimes runs the apps: "swarm" with install.sh --swarm
    registry: str | None = None      # swarm: where the nodes pull images from, HOST:PORT
    builder_cli: str | None = None   # the docker CLI that builds with BuildKit (install.sh finds it)
    builder_kind: str = "classic"    # "buildx": docker buildx build; "classic": DOCKER_BUILDKIT=1 docker build
    build_cache_mb: int = 2048       # BuildKit's cache is pruned down to this (least recently used first)
    cache_mount_days: float = 7.0    # and its cache mounts unused this long are dropped
    log_max_size: str = "10m"        # each container's log rotates at this size (json-file's max-size)
    log_max_files: int = 3           # and keeps this many files
    default_limit: limits.Limit = limits.NO_LIMIT   # memory/CPU of each process without its own `zdd limits`

    def repo_path(self, app: str) -> Path:
        return self.root / f"{app}.git"

    def app_dir(self, app: str) -> Path:
        return self.root / "apps" / app

    def storage_root(self) -> Path:
        """The only folder whose subfolders `zdd storage` may mount into containers."""
        return self.root / "storage"

    def app_names(self) -> list[str]:
        apps_dir = self.root / "apps"
        if not apps_dir.is_dir():
            return []
        return sorted(p.name for p in apps_dir.iterdir() if (p / "app.json").is_file())

    def include_glob(self) -> str:
        """Operator-owned sites that the rendered Caddyfile imports."""
        return f"{self.root}/caddy.d/*.caddy"

    def hosts_dir(self) -> Path:
        """Links from host names to apps' route folders, read by Caddy on every request."""
        return self.root / "hosts"

    def template_dir(self) -> Path:
        if self.templates and Path(self.templates).is_dir():
            return Path(self.templates)
        return Path(__file__).resolve().parent.parent / "templates"


def load_server(root: str | os.PathLike | None = None) -> Server:
    root = Path(root or os.environ.get("ZDD_ROOT") or DEFAULT_ROOT)
    path = root / SETTINGS_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no zdd settings at {path}: run install.sh first") from None
    return Server(
        root=root,
        caddyfile=Path(data["caddyfile"]),
        caddy_admin=data["caddy_admin"],
        caddy_bin=data.get("caddy_bin", "caddy"),
        templates=Path(data["templates"]) if data.get("templates") else None,
        min_free_mb=int(data.get("min_free_mb", 1024)),
        max_context_mb=int(data.get("max_context_mb", 2048)),
        deploy_user=data.get("deploy_user"),
        http_port=int(data.get("http_port", 80)),
        https_port=int(data.get("https_port", 443)),
        tls=data.get("tls", "acme"),
        runtime=data.get("runtime", "engine"),
        registry=data.get("registry"),
        builder_cli=data.get("builder_cli"),
        builder_kind=data.get("builder_kind", "classic"),
        build_cache_mb=int(data.get("build_cache_mb", 2048)),
        cache_mount_days=float(data.get("cache_mount_days", 7.0)),
        log_max_size=_log_max_size(data.get("log_max_size", "10m")),
        log_max_files=_log_max_files(data.get("log_max_files", 3)),
        default_limit=_default_limit(data.get("default_limit", limits.NONE)),
    )


LOG_SIZE = re.compile(r"[1-9][0-9]{0,6}[kmg]")


def _log_max_size(value) -> str:
    if not isinstance(value, str) or not LOG_SIZE.fullmatch(value):
        raise ConfigError(f"log_max_size {value!r} in settings.json is not a size: use a number and k, m or g, "
                          "e.g. \"10m\"")
    return value


def _log_max_files(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise ConfigError(f"log_max_files {value!r} in settings.json must be a whole number from 1 to 100")
    return value


def _default_limit(value) -> limits.Limit:
    try:
        return limits.parse_limit(str(value), "default_limit in settings.json")
    except InvalidInput as error:
        raise ConfigError(str(error)) from None


def settings_path(root: str | os.PathLike | None = None) -> Path:
    return Path(root or os.environ.get("ZDD_ROOT") or DEFAULT_ROOT) / SETTINGS_FILE


@dataclasses.dataclass(frozen=True)
class AppSettings:
    """Set on the server by install.sh: never by a push."""

    name: str
    domain: str
    port: int | None = None
    branch: str = "main"
    keep_images: int = 5
    preview_of: str | None = None   # a preview app (zdd.preview_apps): its parent, whose repository it deploys from
    limit: str | None = None        # a preview's cap on each container, over the server's default_limit
    created_at: str | None = None


def load_app(server: Server, app: str) -> AppSettings:
    names.check_app_name(app)
    path = server.app_dir(app) / "app.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"unknown app {app!r}: set it up with install.sh {app} --domain ADDRESS") from None
    return AppSettings(
        name=app,
        domain=names.check_site_address(data["domain"]),
        port=names.check_port(data["port"], "app port") if data.get("port") else None,
        branch=data.get("branch", "main"),
        keep_images=check_keep(data.get("keep_images", 5)),
        preview_of=names.check_app_name(data["preview_of"]) if data.get("preview_of") else None,
        limit=data.get("limit"),
        created_at=data.get("created_at"),
    )


def check_keep(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= 1000:
        raise InvalidInput(f"invalid number of images to keep {value!r}: use a whole number from 2 to 1000")
    return value


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """zdd.toml's [build]: how the image is built. Secrets are only names of the app's env keys:
    their values stay on the server."""

    dockerfile: str = "Dockerfile"                # relative to the repository's root
    target: str | None = None                     # a stage of a multi-stage Dockerfile
    args: tuple[tuple[str, str], ...] = ()        # --build-arg NAME=VALUE (kept in the image's history)
    secrets: tuple[str, ...] = ()                 # RUN --mount=type=secret,id=NAME


BUILD_KEYS = {field.name for field in dataclasses.fields(BuildConfig)}
BUILD_PRIVILEGED = {"network", "ssh", "allow", "entitlements", "add_hosts", "add-host", "volumes", "privileged",
                    "security", "cache_from", "cache_to", "output", "context", "contexts", "build_contexts"}
PATH_PART = re.compile(r"[A-Za-z0-9._+-]{1,255}")
TARGET = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
MAX_BUILD_VALUE = 4096


@dataclasses.dataclass(frozen=True)
class RepoConfig:
    """Settings a pushed repo may make in its zdd.toml. Nothing here widens privileges."""

    port: int | None = None
    health_path: str = "/"
    health_timeout: float = 120.0
    health_interval: float = 0.25
    drain_timeout: float = 30.0
    stop_timeout: float = 10.0
    watch_seconds: float = 2.0
    release: tuple[str, ...] | None = None
    release_timeout: float = 600.0
    worker_check_seconds: float = 5.0
    processes: tuple[process_model.Process, ...] = (process_model.Process(process_model.WEB),)
    build: BuildConfig = BuildConfig()
    cron: tuple[cron_jobs.Job, ...] = ()    # [cron]: jobs the timer runs from the live image

    def process(self, name: str) -> process_model.Process | None:
        return next((p for p in self.processes if p.name == name), None)


PRIVILEGED_KEYS = {
    "volumes", "volume", "mounts", "privileged", "network", "network_mode", "host_network",
    "cap_add", "capabilities", "devices", "user", "pid", "ipc", "security_opt", "env", "environment",
    "storage",
}
_NUMBER_LIMITS = {
    "health_timeout": (1, 3600),
    "health_interval": (0.1, 60),
    "drain_timeout": (0, 3600),
    "stop_timeout": (0, 3600),
    "watch_seconds": (0, 600),
    "release_timeout": (1, 86400),
    "worker_check_seconds": (0, 600),
}


def parse_repo_config(text: str | None) -> RepoConfig:
    if text is None:
        return RepoConfig()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"zdd.toml is not valid TOML: {error}") from None
    known = {field.name for field in dataclasses.fields(RepoConfig)}
    values = {}
    for key, value in data.items():
        if key in PRIVILEGED_KEYS:
            raise ConfigError(
                f"zdd.toml: {key!r} is not allowed: it would widen the container's "
                "privileges; only the server's operator can set that (storage: `zdd storage APP add`)"
            )
        if key not in known:
            raise ConfigError(f"zdd.toml: unknown key {key!r} (known: {', '.join(sorted(known))})")
        values[key] = _check_repo_value(key, value)
    return RepoConfig(**values)


def _check_repo_value(key: str, value):
    try:
        if key == "port":
            if not isinstance(value, int):
                raise InvalidInput("")
            return names.check_port(value)
        if key == "health_path":
            return names.check_health_path(value)
        if key == "release":
            return process_model.split_command(value, "'release'")
        if key == "processes":
            return process_model.parse(value)
        if key == "build":
            return parse_build(value)
        if key == "cron":
            return cron_jobs.parse(value)
        low, high = _NUMBER_LIMITS[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise InvalidInput("")
        return float(value)
    except ConfigError:
        raise
    except InvalidInput:
        expected = {
            "port": "a whole number from 1 to 65535",
            "health_path": "a string path starting with /",
        }.get(key) or "a number of seconds from {} to {}".format(*_NUMBER_LIMITS[key])
        raise ConfigError(f"zdd.toml: {key!r} must be {expected}, not {value!r}") from None


def choose_port(app: AppSettings, repo: RepoConfig, exposed: list[int]) -> tuple[int, str]:
    """The port the app listens on in its container, and where that choice came from."""
    if repo.port:
        return repo.port, "zdd.toml"
    if app.port:
        return app.port, "install.sh --port"
    if len(exposed) == 1:
        return exposed[0], "the image's EXPOSE"
    return DEFAULT_APP_PORT, "the default"


def parse_build(table) -> BuildConfig:
    """zdd.toml's [build] table, validated; refuses whatever would reach past the build context."""
    if not isinstance(table, dict):
        raise ConfigError("zdd.toml: 'build' must be a table: [build] then dockerfile, target, args, secrets")
    for key in table:
        if key in BUILD_PRIVILEGED:
            raise ConfigError(f"zdd.toml: [build] {key!r} is not allowed: a build gets no host network, host "
                              "paths, SSH agent or extra privileges; secrets come from `zdd env` by name")
        if key not in BUILD_KEYS:
            raise ConfigError(f"zdd.toml: [build] unknown key {key!r} (known: {', '.join(sorted(BUILD_KEYS))})")
    return BuildConfig(dockerfile=_build_path(table.get("dockerfile", "Dockerfile")),
                       target=_build_target(table.get("target")),
                       args=_build_args(table.get("args", {})),
                       secrets=_build_secrets(table.get("secrets", [])))


def _build_path(value) -> str:
    parts = value.split("/") if isinstance(value, str) else []
    if not parts or any(not PATH_PART.fullmatch(p) or p in (".", "..") for p in parts) or len(value) > 1024:
        raise ConfigError(f"zdd.toml: build.dockerfile must be a path inside the repository, like "
                          f"docker/Dockerfile (no leading /, no . or .. parts), not {value!r}")
    return value


def _build_target(value) -> str | None:
    if value is not None and (not isinstance(value, str) or not TARGET.fullmatch(value)):
        raise ConfigError(f"zdd.toml: build.target must be a stage name (letters, digits, _ . -), not {value!r}")
    return value


def _build_args(table) -> tuple[tuple[str, str], ...]:
    if not isinstance(table, dict):
        raise ConfigError("zdd.toml: build.args must be a table of NAME = \"value\"")
    args = []
    for name, value in table.items():
        _build_name(name, "build.args")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ConfigError(f"zdd.toml: build.args.{name} must be a string or a number")
        text = str(value)
        if "\0" in text or len(text) > MAX_BUILD_VALUE:
            raise ConfigError(f"zdd.toml: build.args.{name} holds a NUL byte or is over {MAX_BUILD_VALUE} characters")
        args.append((name, text))
    return tuple(args)


def _build_secrets(names) -> tuple[str, ...]:
    if not isinstance(names, list):
        raise ConfigError("zdd.toml: build.secrets must be a list of env key names, like [\"NPM_TOKEN\"]")
    for name in names:
        _build_name(name, "build.secrets")
    if len(set(names)) != len(names):
        raise ConfigError("zdd.toml: build.secrets names a key twice")
    return tuple(names)


def _build_name(name, where: str) -> None:
    if not isinstance(name, str) or not appenv.KEY.fullmatch(name):
        raise ConfigError(f"zdd.toml: {where}: {name!r} is not a valid name: use letters, digits and _, "
                          "not starting with a digit")
