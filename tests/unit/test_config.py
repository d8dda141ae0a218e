import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from zdd import config
from zdd.config import AppSettings, RepoConfig, choose_port, parse_repo_config
from zdd.errors import ConfigError


def test_no_file_gives_defaults_and_keys_are_read():
    assert parse_repo_config(None) == RepoConfig()
    config = parse_repo_config('port = 3000\nhealth_path = "/up"\nhealth_timeout = 90\ndrain_timeout = 5\n')
    assert (config.port, config.health_path, config.health_timeout, config.drain_timeout) == (3000, "/up", 90.0, 5.0)


@pytest.mark.parametrize("text, message", [
    ("colour = 1", "zdd.toml: unknown key 'colour'"),
    ("port = '80'", "zdd.toml: 'port' must be a whole number from 1 to 65535, not '80'"),
    ("port = 0", "'port' must be a whole number"),
    ("health_timeout = true", "'health_timeout' must be a number of seconds"),
    ("health_timeout = -1", "'health_timeout' must be a number of seconds"),
    ("health_path = 'up'", "'health_path' must be a string path starting with /"),
    ("health_path = '/a b'", "'health_path' must be"),
    ("privileged = true", "'privileged' is not allowed"),
    ("volumes = ['/:/host']", "'volumes' is not allowed"),
    ("network_mode = 'host'", "'network_mode' is not allowed"),
    ("port = [", "zdd.toml is not valid TOML"),
])
def test_bad_keys_and_types_are_refused_naming_the_key(text, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        parse_repo_config(text)


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.dictionaries(st.sampled_from(["port", "health_path", "health_timeout", "drain_timeout", "x"]),
                       st.one_of(st.integers(), st.floats(allow_nan=False), st.text(), st.booleans())))
def test_loader_either_accepts_valid_values_or_raises_config_error(data):
    text = "\n".join(f"{key} = {value!r}".replace("True", "true").replace("False", "false") for key, value in data.items())
    try:
        config = parse_repo_config(text)
    except ConfigError:
        return
    assert config.port is None or 1 <= config.port <= 65535
    assert config.health_path.startswith("/")


def test_port_choice_order():
    app = AppSettings(name="a", domain=":80")
    assert choose_port(app, RepoConfig(port=3000), [8080]) == (3000, "zdd.toml")
    assert choose_port(AppSettings("a", ":80", port=5000), RepoConfig(), [8080]) == (5000, "install.sh --port")
    assert choose_port(app, RepoConfig(), [8080]) == (8080, "the image's EXPOSE")
    assert choose_port(app, RepoConfig(), [8080, 9090]) == (8000, "the default")


def test_log_cap_defaults_and_what_settings_refuse(tmp_path):
    settings = {"caddyfile": "/etc/caddy/Caddyfile", "caddy_admin": "localhost:2019"}
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    server = config.load_server(tmp_path)
    assert (server.log_max_size, server.log_max_files) == ("10m", 3)
    for key, value in [("log_max_size", "10"), ("log_max_size", "0m"), ("log_max_size", "1m; rm"),
                       ("log_max_files", 0), ("log_max_files", "3"), ("log_max_files", True)]:
        (tmp_path / "settings.json").write_text(json.dumps({**settings, key: value}))
        with pytest.raises(ConfigError, match=key):
            config.load_server(tmp_path)
