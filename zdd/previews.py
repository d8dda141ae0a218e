"""Preview apps, the pure part: the settings `zdd previews APP on` keeps, the host pattern and
what it may reach, and the name and host label a branch gets. A preview is an app of its own
(apps/PARENT--LABEL) whose app.json names its parent; zdd.preview_apps creates and removes them."""

import dataclasses
import hashlib
import json
import re
from pathlib import Path

from zdd import limits, names
from zdd.errors import InvalidInput
from zdd.state import write_json_atomic

SETTINGS_FILE = "previews.json"
MARK = "{branch}"
MAX_NAME = 40          # a preview's app name: Swarm's service names (zdd-NAME-PROCESS) stay under 63
MAX_LABEL = 20
DEFAULT_MAX, DEFAULT_DAYS, DEFAULT_LIMIT = 5, 14, "512m,1cpu"
ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


@dataclasses.dataclass(frozen=True)
class Settings:
    pattern: str
    enabled: bool = True
    except_keys: tuple[str, ...] = ()
    max_count: int = DEFAULT_MAX
    days: float = DEFAULT_DAYS
    limit: str = DEFAULT_LIMIT
    seed_from_backup: bool = False  # a new preview's databases: the parent's latest backup, else empty


def read(app_dir: Path) -> Settings | None:
    try:
        raw = json.loads((app_dir / SETTINGS_FILE).read_text())
    except FileNotFoundError:
        return None
    return Settings(**{**raw, "except_keys": tuple(raw.get("except_keys", ()))})


def write(app_dir: Path, settings: Settings) -> None:
    write_json_atomic(app_dir / SETTINGS_FILE, dataclasses.asdict(settings))


def settings_from(current: Settings | None, pattern: str | None, parent_domain: str, except_keys: str | None,
                  max_count: int | None, days: float | None, limit: str | None,
                  seed_from_backup: bool | None = None) -> Settings:
    """`zdd previews APP on ...`: what was given, checked, over what was set before."""
    if pattern is None and current is None:
        raise InvalidInput("give the previews' address: zdd previews APP on --domain '{branch}.preview.example.com'")
    given = {"pattern": check_pattern(pattern, parent_domain) if pattern is not None else None,
             "except_keys": _check_keys(except_keys) if except_keys is not None else None,
             "max_count": _check_range(max_count, "--max must be a whole number from 1 to 50", 1, 50)
             if max_count is not None else None,
             "days": _check_range(days, "--days must be more than 0 and at most 365", 1e-6, 365)
             if days is not None else None,
             "limit": limits.parse_limit(limit, "--limit").as_text() if limit is not None else None,
             "seed_from_backup": seed_from_backup}
    base = dataclasses.asdict(current) if current else {}
    return Settings(**{**base, **{k: v for k, v in given.items() if v is not None}, "enabled": True})


def check_pattern(pattern: str, parent_domain: str) -> str:
    """``{branch}.preview.example.com`` (``http://`` in front for plain HTTP): {branch} is the
    first label of a host name alone, under the parent's domain."""
    text = pattern.strip().lower()
    scheme, _, host = text.rpartition("://")
    if text.count(MARK) != 1 or not host.startswith(MARK + "."):
        raise InvalidInput(f"invalid preview address {pattern!r}: {{branch}} must be its first label, "
                           "e.g. '{branch}.preview.example.com'")
    sample = names.check_site_address(text.replace(MARK, "x"))
    if names.host_route(sample) is None:
        raise InvalidInput(f"invalid preview address {pattern!r}: a host name alone, without a port or wildcard")
    parent = names.host_route(parent_domain)
    if parent is None:
        raise InvalidInput(f"previews need the app addressed by a host name (it is {parent_domain}): "
                           "they are served beside it by the same shared sites")
    base = _registrable(parent[1])
    suffix = host[len(MARK) + 1:]
    if suffix != base and not suffix.endswith("." + base):
        raise InvalidInput(f"invalid preview address {pattern!r}: it must stay under {base}, the app's own domain")
    return text


def _registrable(host: str) -> str:
    """The app's host without its first label (myapp.example.com -> example.com), or itself."""
    labels = host.split(".")
    return ".".join(labels[1:]) if len(labels) >= 3 else host


def label_for(branch: str, parent: str, taken: dict[str, str]) -> str:
    """The host label and name suffix of ``branch``: lowercase a-z0-9 and hyphens, with a short
    hash of the branch when it had to be cut, or cleaned to nothing, or another branch has it
    (``taken``: label -> branch of the parent's previews)."""
    room = min(MAX_LABEL, MAX_NAME - len(parent) - 2)
    clean = re.sub(r"[^a-z0-9]+", "-", branch.lower()).strip("-")
    label = clean[:room].strip("-")
    if label and len(clean) <= room and taken.get(label, branch) == branch:
        return label
    digest = hashlib.sha256(branch.encode("utf-8", "surrogateescape")).hexdigest()[:6]
    return f"{clean[:max(room - 7, 0)].strip('-')}-{digest}".lstrip("-")


def app_name(parent: str, label: str) -> str:
    return f"{parent}--{label}"


def address(pattern: str, label: str) -> str:
    return pattern.replace(MARK, label)


def url(address_: str) -> str:
    return address_ if "://" in address_ else f"https://{address_}"


def _check_keys(text: str) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    for key in keys:
        if not ENV_KEY.fullmatch(key):
            raise InvalidInput(f"--except: {key!r} is not an env key (letters, digits and _)")
    return keys


def _check_range(value, message: str, low: float, high: float):
    if not low <= value <= high:
        raise InvalidInput(message)
    return value
