"""An app's processes: what zdd.toml declares (pure), and how many of each the operator wants.

Every process runs from the same image. ``web`` is the one Caddy routes to; the others
(workers, schedulers) get no port. A command written with shell syntax runs through
``/bin/sh -c``, as Docker's shell form does; any other is split into words and run
directly, so that images without a shell (FROM scratch, distroless) work too.
"""

import dataclasses
import json
import re
import shlex
from pathlib import Path

from zdd.errors import ConfigError, InvalidInput
from zdd.state import write_json_atomic

WEB = "web"
RELEASE = "release"   # the one-off container of a deploy's release step
RUN = "run"           # a `zdd run` container
NAME = re.compile(r"[a-z][a-z0-9-]{0,19}")
SHELL_SYNTAX = re.compile(r"[;&|<>$`*?(){}~\n]")
SCALE_FILE = "scale.json"
MAX_COUNT = 50
PROCESS_KEYS = {"command", "overlap", "healthcheck", "parallelism"}
MAX_PARALLELISM = 100


@dataclasses.dataclass(frozen=True)
class Process:
    name: str
    command: tuple[str, ...] | None = None   # None: the image's CMD
    overlap: bool = True                      # False: stop the old container before the new starts
    healthcheck: bool = True                  # False: ignore the image's HEALTHCHECK in this process
    parallelism: int = 1                      # Swarm mode: tasks replaced at once

    def as_dict(self) -> dict:
        return {"command": list(self.command) if self.command else None, "overlap": self.overlap,
                "healthcheck": self.healthcheck, "parallelism": self.parallelism}

    @classmethod
    def from_dict(cls, name: str, data: dict) -> "Process":
        command = data.get("command")
        return cls(name, tuple(command) if command else None, data.get("overlap", True),
                   data.get("healthcheck", True), data.get("parallelism", 1))


def split_command(text, what: str) -> tuple[str, ...]:
    """A command string as the argument list to run (see the module's docstring)."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"zdd.toml: {what} must be a command as a non-empty string, not {text!r}")
    if "\0" in text:
        raise ConfigError(f"zdd.toml: {what} holds a NUL byte")
    if SHELL_SYNTAX.search(unquoted(text)):
        return ("/bin/sh", "-c", text)
    try:
        return tuple(shlex.split(text))
    except ValueError as error:
        raise ConfigError(f"zdd.toml: {what} cannot be split into words ({error})") from None


def unquoted(text: str) -> str:
    """``text`` without its quoted parts: what a shell would read as syntax."""
    kept, quote, escaped = [], None, False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        else:
            kept.append(char)
    return "".join(kept)


def check_name(name) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name) or name in (RELEASE, RUN):
        raise InvalidInput(f"invalid process name {name!r}: use 1-20 lowercase letters, digits and hyphens, "
                           f"starting with a letter (not {RELEASE!r} or {RUN!r})")
    return name


def refuse_unknown_keys(table: dict, known: set[str], what: str) -> None:
    unknown = set(table) - known
    if unknown:
        raise ConfigError(f"zdd.toml: {what}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(known))})")


def parse(table) -> tuple[Process, ...]:
    """The ``[processes]`` table of zdd.toml; ``web`` is always there (default: the image's CMD)."""
    if table is None:
        table = {}
    if not isinstance(table, dict):
        raise ConfigError("zdd.toml: 'processes' must be a table: [processes] then name = \"command\" lines")
    found = {WEB: Process(WEB)}
    for name, value in table.items():
        try:
            check_name(name)
        except InvalidInput as error:
            raise ConfigError(f"zdd.toml: [processes] {error}") from None
        found[name] = _parse_one(name, value)
    return tuple(found[name] for name in sorted(found, key=lambda n: (n != WEB, n)))


def _parse_one(name: str, value) -> Process:
    if isinstance(value, str):
        return Process(name, split_command(value, f"processes.{name}"))
    if not isinstance(value, dict):
        raise ConfigError(f"zdd.toml: processes.{name} must be a command string or a table with 'command'")
    refuse_unknown_keys(value, PROCESS_KEYS, f"processes.{name}")
    for flag in ("overlap", "healthcheck"):
        if not isinstance(value.get(flag, True), bool):
            raise ConfigError(f"zdd.toml: processes.{name}.{flag} must be true or false")
    if "command" not in value and name != WEB:
        raise ConfigError(f"zdd.toml: processes.{name} needs a 'command'")
    if name == WEB and value.get("overlap") is False:
        raise ConfigError("zdd.toml: processes.web cannot have overlap = false: the new web container "
                          "always starts beside the old one, that is how traffic moves with no downtime")
    command = split_command(value["command"], f"processes.{name}.command") if "command" in value else None
    return Process(name, command, value.get("overlap", True), value.get("healthcheck", True),
                   _parallelism(name, value.get("parallelism", 1)))


def _parallelism(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PARALLELISM:
        raise ConfigError(f"zdd.toml: processes.{name}.parallelism must be a whole number from 1 to "
                          f"{MAX_PARALLELISM}, not {value!r}")
    return value


# The operator's counts, kept on the server across deploys.

def read_scale(app_dir: Path) -> dict[str, int]:
    try:
        return json.loads((app_dir / SCALE_FILE).read_text())
    except FileNotFoundError:
        return {}


def parse_scale(items: list[str], web_scales: bool = False) -> dict[str, int]:
    """``["worker=3", "clock=0"]`` -> counts; refuses bad numbers, and web other than 1
    unless ``web_scales`` (Swarm mode)."""
    counts = {}
    for item in items:
        name, sep, count = item.partition("=")
        if not sep:
            raise InvalidInput(f"expected PROCESS=COUNT, e.g. worker=3, not {item!r}")
        check_name(name)
        if not re.fullmatch(r"[0-9]{1,3}", count) or int(count) > MAX_COUNT:
            raise InvalidInput(f"invalid count {count!r} for {name}: use a whole number from 0 to {MAX_COUNT}")
        if name == WEB and int(count) != 1 and not web_scales:
            raise InvalidInput("web runs as one container per server (zdd switches it with no downtime): "
                               "scale the other processes, or spread web over a swarm (install.sh --swarm)")
        if name == WEB and int(count) == 0:
            raise InvalidInput("web cannot be scaled to 0: `zdd destroy` removes an app")
        counts[name] = int(count)
    return counts


def write_scale(app_dir: Path, counts: dict[str, int], web_scales: bool = False) -> dict[str, int]:
    merged = {**read_scale(app_dir), **counts}
    if not web_scales:
        merged.pop(WEB, None)
    write_json_atomic(app_dir / SCALE_FILE, merged)
    return merged


def desired(processes, scale: dict[str, int], web_scales: bool = False) -> dict[str, int]:
    """How many containers of each declared process to run: 1 unless scaled (web: always 1
    unless ``web_scales``)."""
    return {p.name: 1 if p.name == WEB and not web_scales else scale.get(p.name, 1) for p in processes}


def declared_in(live: dict) -> list[Process]:
    """The processes a live record's version declared, in name order."""
    declared = live.get("processes") or {WEB: {}}
    return [Process.from_dict(name, spec) for name, spec in sorted(declared.items())]


def unknown_names(processes, names) -> list[str]:
    declared = {p.name for p in processes}
    return sorted(n for n in names if n not in declared)
