"""BuildKit builds: the CLI's argument list, which CLI can build, zdd.toml's [build] table."""

import os
from pathlib import Path

import pytest

from zdd import builder
from zdd.config import BuildConfig, parse_repo_config
from zdd.errors import ConfigError


def test_the_build_command_names_every_setting_and_no_value_of_a_secret():
    build = BuildConfig("docker/Dockerfile", "runtime", (("APP_ENV", "production"),), ("NPM_TOKEN",))
    argv = builder.command(builder.Builder("/usr/bin/docker"), Path("/tmp/ctx"), "zdd-a:abc",
                           {"zdd.app": "a"}, build, {"NPM_TOKEN": Path("/tmp/s/NPM_TOKEN")})
    assert argv == ["/usr/bin/docker", "build", "--progress=plain", "-f", "/tmp/ctx/docker/Dockerfile",
                    "-t", "zdd-a:abc", "--label", "zdd.app=a", "--target", "runtime",
                    "--build-arg", "APP_ENV=production", "--secret", "id=NPM_TOKEN,src=/tmp/s/NPM_TOKEN", "/tmp/ctx"]
    buildx = builder.command(builder.Builder("/usr/bin/docker", "buildx"), Path("/c"), "t", {}, BuildConfig(), {})
    assert buildx[:4] == ["/usr/bin/docker", "buildx", "build", "--load"]


@pytest.mark.parametrize("version, builds", [
    ("Docker version 20.10.24+dfsg1, build 297e128", True),
    ("Docker version 18.09.1, build 4c52b90", True),
    ("Docker version 18.06.3-ce, build d7080c1", False),
    ("Docker version 28.2.2, build e6534b4", False),   # needs buildx for BuildKit
    ("", False),
])
def test_a_classic_cli_builds_with_buildkit_from_18_09_until_23(version, builds):
    assert builder.classic_builds_with_buildkit(version) is builds


def fake_cli(folder: Path, name: str, version: str, buildx: bool) -> str:
    path = folder / name
    path.write_text(f"#!/bin/sh\n[ \"$1\" = buildx ] && exit {0 if buildx else 1}\necho 'Docker version {version}'\n")
    path.chmod(0o755)
    return str(path)


def test_discovery_prefers_buildx_then_a_classic_cli_and_says_what_to_install(tmp_path):
    new = fake_cli(tmp_path, "new", "28.2.2, build x", buildx=False)
    old = fake_cli(tmp_path, "old", "20.10.24, build y", buildx=False)
    plugin = fake_cli(tmp_path, "plugin", "27.0.1, build z", buildx=True)
    assert builder.discover([new, old, plugin]) == builder.Builder(plugin, "buildx")
    assert builder.discover([new, old]) == builder.Builder(old, "classic")
    with pytest.raises(builder.NoBuilder, match="install the buildx plugin"):
        builder.discover([new, str(tmp_path / "missing")])


def test_secret_values_are_masked_in_the_build_output():
    lines = list(builder._lines(["step 1\n", "token=s3cr3t-value here\n", "\n"], ["s3cr3t-value"]))
    assert lines == ["step 1", f"token={builder.MASK} here"]


def test_secrets_are_written_0600_in_a_private_folder(tmp_path):
    files = builder._write_secrets(tmp_path / "secrets", {"TOKEN": "abc"})
    assert files["TOKEN"].read_text() == "abc"
    assert os.stat(files["TOKEN"]).st_mode & 0o777 == 0o600
    assert os.stat(tmp_path / "secrets").st_mode & 0o777 == 0o700


def test_build_table_defaults_and_values():
    assert parse_repo_config(None).build == BuildConfig("Dockerfile", None, (), ())
    parsed = parse_repo_config('[build]\ndockerfile = "docker/app.Dockerfile"\ntarget = "web"\n'
                               'args = { A = "1", N = 2 }\nsecrets = ["TOKEN"]\n').build
    assert parsed == BuildConfig("docker/app.Dockerfile", "web", (("A", "1"), ("N", "2")), ("TOKEN",))


@pytest.mark.parametrize("toml, message", [
    ('build = "x"', "'build' must be a table"),
    ('[build]\nfoo = 1', "[build] unknown key 'foo'"),
    ('[build]\nnetwork = "host"', "[build] 'network' is not allowed"),
    ('[build]\nssh = "default"', "[build] 'ssh' is not allowed"),
    ('[build]\nallow = ["security.insecure"]', "[build] 'allow' is not allowed"),
    ('[build]\ndockerfile = "../Dockerfile"', "must be a path inside the repository"),
    ('[build]\ndockerfile = "/etc/passwd"', "must be a path inside the repository"),
    ('[build]\ndockerfile = "a//b"', "must be a path inside the repository"),
    ('[build]\ndockerfile = "./Dockerfile"', "must be a path inside the repository"),
    ('[build]\ndockerfile = 3', "must be a path inside the repository"),
    ('[build]\ntarget = "a b"', "build.target must be a stage name"),
    ('[build]\nargs = ["A=1"]', "build.args must be a table"),
    ('[build]\nargs = { "1A" = "x" }', "build.args: '1A' is not a valid name"),
    ('[build]\nargs = { A = true }', "build.args.A must be a string or a number"),
    ('[build]\nargs = { A = "a\\u0000b" }', "build.args.A holds a NUL byte"),
    ('[build]\nsecrets = "TOKEN"', "build.secrets must be a list"),
    ('[build]\nsecrets = ["A-B"]', "build.secrets: 'A-B' is not a valid name"),
    ('[build]\nsecrets = ["A", "A"]', "build.secrets names a key twice"),
])
def test_bad_build_tables_are_refused_naming_the_key(toml, message):
    with pytest.raises(ConfigError) as refused:
        parse_repo_config(toml)
    assert message in str(refused.value)
