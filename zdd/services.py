"""Data services beside an app (Postgres, Redis): what each kind is, the names zdd gives its
container, volume and network, the URL the app gets, and the list kept in the app's folder
(0600: it holds the passwords). Pure; the engine module starts and stops them."""

import dataclasses
import json
import re
import secrets
from pathlib import Path

from zdd.errors import InvalidInput
from zdd.state import write_json_atomic

SERVICES_FILE = "services.json"
UPGRADES_FILE = "upgrades.json"  # what `zdd db upgrade --undo` goes back to (0600: passwords)
IMAGE = re.compile(r"[a-z0-9][a-z0-9._/:@-]{0,199}")
VERSION = re.compile(r"[0-9][0-9a-z.-]{0,30}")
STOP_TIMEOUT = 30  # seconds a database has to shut down cleanly before it is killed
START_TIMEOUT = 120


@dataclasses.dataclass(frozen=True)
class Kind:
    name: str
    official: str        # the official image's repository: postgres:VERSION on a real server
    default_version: str
    port: int
    data_dir: str        # where the official image keeps its data
    env_var: str         # what the app reads: DATABASE_URL, REDIS_URL
    stop_signal: str     # the official image's STOPSIGNAL (docker import cannot set one)


KINDS = {
    "postgres": Kind("postgres", "postgres", "17", 5432, "/var/lib/postgresql/data", "DATABASE_URL", "SIGINT"),
    "redis": Kind("redis", "redis", "7", 6379, "/data", "REDIS_URL", "SIGTERM"),
}


@dataclasses.dataclass(frozen=True)
class Service:
    """One service of an app, as services.json keeps it."""

    app: str
    kind: str
    image: str
    password: str
    created_at: str
    generation: int = 0  # 1, 2, ... after each `zdd db upgrade`: a new container and volume

    @property
    def spec(self) -> Kind:
        return KINDS[self.kind]

    @property
    def container(self) -> str:
        return f"zdd-{self.app}-{self.kind}" + self._suffix

    @property
    def volume(self) -> str:
        return f"zdd-{self.app}-{self.kind}-data" + self._suffix

    @property
    def _suffix(self) -> str:
        return f"-{self.generation}" if self.generation else ""

    def runs_in(self, container_name: str) -> bool:
        """Its own container, or in Swarm mode a task of its service (SERVICE.SLOT.TASK)."""
        return container_name in (self.container, f"/{self.container}") or \
            container_name.lstrip("/").startswith(self.container + ".")

    @property
    def user(self) -> str:
        return self.app.replace("-", "_")

    def url(self) -> str:
        """What the app's containers get in DATABASE_URL or REDIS_URL: the service by its
        container's name, on the app's own network."""
        if self.kind == "postgres":
            return f"postgres://{self.user}:{self.password}@{self.container}:5432/{self.user}"
        return f"redis://:{self.password}@{self.container}:6379/0"

    def environment(self) -> dict[str, str]:
        """The service container's own environment (the official image's variables)."""
        if self.kind == "postgres":
            return {"POSTGRES_USER": self.user, "POSTGRES_PASSWORD": self.password, "POSTGRES_DB": self.user}
        return {"REDIS_PASSWORD": self.password, "REDISCLI_AUTH": self.password}

    def command(self) -> list[str] | None:
        """Redis reads its password from standard input, so that it never shows in a process list."""
        if self.kind == "redis":
            return ["sh", "-c", 'exec docker-entrypoint.sh redis-server - <<EOF\nrequirepass $REDIS_PASSWORD\nEOF']
        return None

    def healthcheck(self) -> list[str]:
        if self.kind == "postgres":  # over TCP: the server the entrypoint starts to initialise listens on none
            return ["CMD", "pg_isready", "-q", "-h", "127.0.0.1", "-U", self.user, "-d", self.user]
        return ["CMD-SHELL", "redis-cli ping | grep -q PONG"]

    def client_command(self) -> list[str]:
        """`zdd db connect`: the service's own client, run inside its container."""
        if self.kind == "postgres":
            return ["psql", "-U", self.user, "-d", self.user]
        return ["redis-cli"]


def scratch_copy(service: Service) -> Service:
    """The same service with a password of its own, for a scratch container (`zdd backup --check`)."""
    return dataclasses.replace(service, password=secrets.token_hex(24))


def generation_of(container_name: str) -> int | None:
    """The generation in a data container's name (``zdd-APP-postgres-2``, or a Swarm task's
    ``zdd-APP-postgres-2.1.xyz``); None when the name ends in no number."""
    last = container_name.lstrip("/").split(".")[0].rsplit("-", 1)[-1]
    return int(last) if last.isdigit() else None


def upgraded(service: Service, image: str, generation: int, now: str) -> Service:
    """The service on a new image, in a container and volume of its own (``zdd db upgrade``)."""
    return dataclasses.replace(service, image=image, generation=generation, created_at=now)


def network_name(app: str) -> str:
    """The bridge network of an app that has services: its containers and its services only."""
    return f"zdd-{app}"


def check_kind(kind: str) -> Kind:
    if kind not in KINDS:
        raise InvalidInput(f"unknown service type {kind!r}: zdd runs {' or '.join(KINDS)}")
    return KINDS[kind]


def image_for(kind: str, version: str | None, image: str | None) -> str:
    """``--image`` as given, else the official image at ``--version`` (or the default version)."""
    spec = check_kind(kind)
    if image is not None:
        if version is not None:
            raise InvalidInput("give --version or --image, not both")
        if not IMAGE.fullmatch(image) or ".." in image:
            raise InvalidInput(f"invalid image name {image!r}: use NAME[:TAG], e.g. postgres:17")
        return image
    version = version or spec.default_version
    if not VERSION.fullmatch(version):
        raise InvalidInput(f"invalid version {version!r}: use the image's tag, e.g. 17 or 16.4")
    return f"{spec.official}:{version}"


def new_service(app: str, kind: str, image: str, now: str) -> Service:
    return Service(app, kind, image, secrets.token_hex(24), now)


def read(app_dir: Path) -> list[Service]:
    try:
        return [Service(**item) for item in json.loads((app_dir / SERVICES_FILE).read_text())]
    except FileNotFoundError:
        return []


def write(app_dir: Path, services: list[Service]) -> None:
    write_json_atomic(app_dir / SERVICES_FILE, [dataclasses.asdict(s) for s in services], mode=0o600)


def replaced(services: list[Service], new: Service) -> list[Service]:
    return [new if s.kind == new.kind else s for s in services]


def read_upgrades(app_dir: Path) -> dict[str, dict]:
    """The last `zdd db upgrade` of each kind that can be undone: {"from": Service, "to": Service, ...}."""
    try:
        raw = json.loads((app_dir / UPGRADES_FILE).read_text())
    except FileNotFoundError:
        return {}
    return {kind: {**entry, "from": Service(**entry["from"]), "to": Service(**entry["to"])}
            for kind, entry in raw.items()}


def write_upgrades(app_dir: Path, upgrades: dict[str, dict]) -> None:
    raw = {kind: {**entry, "from": dataclasses.asdict(entry["from"]), "to": dataclasses.asdict(entry["to"])}
           for kind, entry in upgrades.items()}
    write_json_atomic(app_dir / UPGRADES_FILE, raw, mode=0o600)


def added(services: list[Service], new: Service) -> list[Service]:
    if any(s.kind == new.kind for s in services):
        raise InvalidInput(f"{new.app} already has {new.kind}: one per app (`zdd db list {new.app}` shows it)")
    return [*services, new]


def find(services: list[Service], app: str, kind: str) -> Service:
    check_kind(kind)
    for service in services:
        if service.kind == kind:
            return service
    have = ", ".join(s.kind for s in services) or "none"
    raise InvalidInput(f"{app} has no {kind} (its services: {have}); add one with zdd db create {app} {kind}")
