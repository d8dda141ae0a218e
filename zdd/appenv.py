"""An app's environment variables: kept on the server outside git, readable only by the
deploy user (0600), passed to its containers. Values are never printed unless asked."""

import json
import re
from pathlib import Path

from zdd.errors import InvalidInput
from zdd.state import write_json_atomic

ENV_FILE = "env.json"
KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
RESERVED = {"PORT"}


def read(app_dir: Path) -> dict[str, str]:
    try:
        return json.loads((app_dir / ENV_FILE).read_text())
    except FileNotFoundError:
        return {}


def parse_assignment(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise InvalidInput("expected KEY=VALUE: an argument has no '=' (it is not shown, in case it is a secret)")
    check_key(key)
    if "\0" in value:
        raise InvalidInput(f"the value of {key} holds a NUL byte")
    return key, value


def check_key(key: str) -> str:
    if not KEY.fullmatch(key):
        raise InvalidInput(f"invalid variable name {key!r}: use letters, digits and _, not starting with a digit")
    if key in RESERVED:
        raise InvalidInput(f"{key} is set by zdd (the app's port): set `port` in zdd.toml instead")
    return key


def update(app_dir: Path, assignments: dict[str, str], removals: list[str]) -> dict[str, str]:
    env = read(app_dir)
    env.update(assignments)
    for key in removals:
        env.pop(check_key(key), None)
    write_json_atomic(app_dir / ENV_FILE, env, mode=0o600)
    return env


def masked(env: dict[str, str], show: bool) -> list[str]:
    return [f"{key}={value if show else '*****'}" for key, value in sorted(env.items())]
