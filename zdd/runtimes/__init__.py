"""Where an app's processes run. One implementation per runtime, chosen once from the
server's settings (``runtime_for``); the deploy and the day-2 commands call it without
asking which one it is. A new runtime is a module here plus one line in RUNTIMES.
"""

import importlib
from typing import Callable, Iterator, Protocol

from zdd import config
from zdd.errors import ConfigError

Emit = Callable[[str], None]

RUNTIMES = {
    "engine": "zdd.runtimes.single:SingleServer",  # containers on this engine, two slots per app
    "swarm": "zdd.runtimes.swarm:Swarm",           # one Docker Swarm service per process
}


class Runtime(Protocol):
    """What the commands need of a runtime. ``app`` is a zdd.app.App; ``live`` its live record."""

    web_scales: bool   # whether web may run more than one replica

    def roll_out(self, app, version, counts: dict[str, int], live: dict | None, timer) -> dict:
        """Put every process of ``version`` in place of ``live``'s and move traffic; return the
        new live record. On failure, what ``live`` runs still serves (unless the error says)."""

    def reconcile(self, app, emit: Emit) -> dict | None:
        """The live record, once what an interrupted deploy left is put right."""

    def process_table(self, app, live: dict, wanted: dict[str, int]) -> dict[str, dict]:
        """Each declared process: command, overlap, count wanted, and its containers or tasks."""

    def summaries(self, lives: list[tuple]) -> dict[str, tuple[str, dict[str, int]]]:
        """For `zdd apps`, per (app, live) pair: a health word, and how many of each process run."""

    def status_lines(self, app, live: dict, table: dict[str, dict]) -> list[str]:
        """`zdd status` in words."""

    def scale(self, app, live: dict, counts: dict[str, int], emit: Emit) -> None:
        """Apply the counts to what runs now."""

    def apply_limits(self, app, live: dict, changed: dict, emit: Emit) -> None:
        """Apply changed limits (process -> limits.Limit) to what runs now, or say when they apply."""

    def logs(self, app, process: str, follow: bool, tail: int) -> Iterator[str]:
        """The live version's log of ``process``."""

    def run(self, app, command: list[str], process: str | None, extra_env: dict, tty: bool) -> int:
        """A one-off command in a fresh container of the live version; its exit code."""

    def stop_processes(self, app, live: dict) -> list:
        """Stop every process of the live version (a restore swaps the data under it); what
        ``start_processes`` needs to start them again."""

    def start_processes(self, app, live: dict, stopped: list, emit: Emit) -> None:
        """Start what ``stop_processes`` stopped; return once web is healthy again."""

    def start_data(self, app, service, labels: dict):
        """Start a data service (zdd.services.Service) on the app's own network, its data in its
        volume, restarted when it stops; its container on this engine, which is not yet healthy."""

    def stop_data(self, app, service) -> None:
        """Stop it and wait until it has (a restore writes into its volume meanwhile)."""

    def resume_data(self, app, service):
        """Start it again after ``stop_data``; its container here."""

    def remove_data(self, app, service) -> None:
        """Stop and remove it; its volume stays."""

    def remove_app_network(self, app) -> None:
        """Remove the app's own network, once nothing is on it."""

    def destroy(self, app, emit: Emit) -> None:
        """Stop and remove what runs the app (its containers, images and files go after)."""

    def refresh_routes(self, emit: Emit, including: str | None = None, leaving: str | None = None,
                       force: bool = False) -> str:
        """Make Caddy serve every published app (see routing.refresh)."""

    def after_install(self, emit: Emit, changed: bool) -> None:
        """What install.sh needs once an app's settings are written."""


def runtime_for(server: config.Server, client=None) -> Runtime:
    """The server's runtime (install.sh records it in settings.json). ``client``: a Docker
    client to use; by default one is opened when first needed."""
    where = RUNTIMES.get(server.runtime)
    if where is None:
        raise ConfigError(f"unknown runtime {server.runtime!r} in settings.json: use one of {', '.join(RUNTIMES)}")
    module, name = where.split(":")
    return getattr(importlib.import_module(module), name)(server, client)
