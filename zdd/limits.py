"""Memory and CPU limits per process (pure parsing and the app's limits.json).

``zdd limits APP web=512m worker=256m,0.5cpu``: what the operator set is kept on the server
like scale, and every container of that process gets it (one-off ``release`` and ``run``
containers get web's, or their process's). ``web=none`` takes a limit off. A server-wide
default (settings.json ``default_limit``, same syntax) applies to processes with none.
Memory is a hard cap with no swap beyond it: past it the kernel kills the process (Docker
says "OOMKilled") and Docker restarts the container.
"""

import dataclasses
import json
import re
from pathlib import Path

from zdd import processes
from zdd.errors import InvalidInput
from zdd.state import write_json_atomic

LIMITS_FILE = "limits.json"
MEMORY = re.compile(r"([0-9]{1,6})([kmg])")
CPUS = re.compile(r"([0-9]{1,3}(?:\.[0-9]{1,2})?)cpus?")
UNITS = {"k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
MIN_MEMORY = 6 * 1024 ** 2   # Docker refuses less
NONE = "none"


@dataclasses.dataclass(frozen=True)
class Limit:
    memory: str | None = None   # as written: "512m"
    cpus: str | None = None     # as written: "0.5"

    @property
    def memory_bytes(self) -> int | None:
        if self.memory is None:
            return None
        number, unit = MEMORY.fullmatch(self.memory).groups()
        return int(number) * UNITS[unit]

    @property
    def nano_cpus(self) -> int | None:
        return None if self.cpus is None else round(float(self.cpus) * 1e9)

    def describe(self) -> str:
        parts = [f"memory {self.memory}" if self.memory else "", f"{self.cpus} cpu" if self.cpus else ""]
        return ", ".join(p for p in parts if p) or "no limit"

    def as_text(self) -> str:
        return ",".join(p for p in (self.memory, f"{self.cpus}cpu" if self.cpus else None) if p) or NONE


NO_LIMIT = Limit()


def parse_limit(text: str, what: str) -> Limit:
    """``512m``, ``0.5cpu``, ``256m,0.5cpu`` or ``none``."""
    if text == NONE:
        return NO_LIMIT
    memory = cpus = None
    for part in text.split(","):
        if MEMORY.fullmatch(part) and memory is None:
            memory = part
        elif CPUS.fullmatch(part) and cpus is None:
            cpus = CPUS.fullmatch(part).group(1)
        else:
            raise InvalidInput(f"{what}: {part!r} is neither a memory size (512m, 2g) nor a CPU share (0.5cpu): "
                               "write e.g. web=512m,0.5cpu, or web=none")
    limit = Limit(memory, cpus)
    if memory is not None and limit.memory_bytes < MIN_MEMORY:
        raise InvalidInput(f"{what}: {memory} is below Docker's minimum of 6m")
    if cpus is not None and float(cpus) <= 0:
        raise InvalidInput(f"{what}: a CPU share must be more than 0")
    return limit


def parse_items(items: list[str]) -> dict[str, Limit]:
    """``["web=512m", "worker=256m,0.5cpu", "clock=none"]`` -> process -> Limit."""
    changes = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            raise InvalidInput(f"expected PROCESS=LIMIT, e.g. web=512m or worker=256m,0.5cpu, not {item!r}")
        processes.check_name(name)
        changes[name] = parse_limit(text, name)
    return changes


def read(app_dir: Path) -> dict[str, Limit]:
    try:
        data = json.loads((app_dir / LIMITS_FILE).read_text())
    except FileNotFoundError:
        return {}
    return {name: Limit(**value) for name, value in data.items()}


def write(app_dir: Path, changes: dict[str, Limit]) -> dict[str, Limit]:
    merged = {**read(app_dir), **changes}
    merged = {name: limit for name, limit in merged.items() if limit != NO_LIMIT}
    data = {name: dataclasses.asdict(limit) for name, limit in sorted(merged.items())}
    write_json_atomic(app_dir / LIMITS_FILE, data)
    return merged


@dataclasses.dataclass(frozen=True)
class Limits:
    """An app's limits: the operator's per process, else the server's default."""

    own: dict = dataclasses.field(default_factory=dict)   # process -> Limit
    default: Limit = NO_LIMIT

    def of(self, process: str) -> Limit:
        """A one-off container (release, run) without a limit of its own gets web's."""
        if process in self.own:
            return self.own[process]
        if process in (processes.RELEASE, processes.RUN) and processes.WEB in self.own:
            return self.own[processes.WEB]
        return self.default
