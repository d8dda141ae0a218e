"""zdd.toml's release and processes, `zdd scale` counts, and storage specs: parsed and checked."""

from pathlib import Path

import pytest

from zdd.config import parse_repo_config
from zdd.errors import ConfigError, InvalidInput
from zdd.processes import Process, desired, parse_scale, split_command, unknown_names
from zdd.storage import Mount, added, parse, removed

ROOT = Path("/srv/zdd/storage")


def test_the_issue_example_parses():
    config = parse_repo_config('release = "python manage.py migrate --noinput"\n[processes]\n'
                               'web = "gunicorn app.wsgi -b 0.0.0.0:8000"\nworker = "celery -A app worker"\n'
                               'scheduler = { command = "celery -A app beat", overlap = false }\n')
    assert config.release == ("python", "manage.py", "migrate", "--noinput")
    assert [p.name for p in config.processes] == ["web", "scheduler", "worker"]
    assert config.process("scheduler") == Process("scheduler", ("celery", "-A", "app", "beat"), overlap=False)
    assert config.process("web").command == ("gunicorn", "app.wsgi", "-b", "0.0.0.0:8000")
    assert parse_repo_config(None).processes == (Process("web"),), "web alone, the image's CMD"


@pytest.mark.parametrize("text, argv", [
    ("gunicorn -b 0.0.0.0:8000 app:app", ["gunicorn", "-b", "0.0.0.0:8000", "app:app"]),
    ("a && b", ["/bin/sh", "-c", "a && b"]),
    ("echo $HOME", ["/bin/sh", "-c", "echo $HOME"]),
    ('/bin/busybox sh -c "sleep 1; exit 2"', ["/bin/busybox", "sh", "-c", "sleep 1; exit 2"]),
    ("echo 'a|b'", ["echo", "a|b"]),
])
def test_commands_run_directly_unless_they_need_a_shell(text, argv):
    assert list(split_command(text, "x")) == argv


@pytest.mark.parametrize("text, message", [
    ("release = 5", "'release' must be a command as a non-empty string, not 5"),
    ("release = ''", "'release' must be a command"),
    ("release = ['a']", "'release' must be a command"),
    ("release_timeout = 0", "'release_timeout' must be a number of seconds from 1 to 86400"),
    ("worker_check_seconds = 'x'", "'worker_check_seconds' must be a number of seconds"),
    ("processes = 3", "'processes' must be a table"),
    ("[processes]\nWorker = 'x'", "invalid process name 'Worker'"),
    ("[processes]\nrelease = 'x'", "invalid process name 'release'"),
    ("[processes]\nrun = 'x'", "invalid process name 'run'"),
    ("[processes]\nw = 3", "processes.w must be a command string or a table"),
    ("[processes]\nw = { overlap = false }", "processes.w needs a 'command'"),
    ("[processes]\nw = { command = 'x', overlap = 'no' }", "processes.w.overlap must be true or false"),
    ("[processes]\nw = { command = 'x', volumes = 1 }", "processes.w: unknown key 'volumes'"),
    ("[processes]\nweb = { overlap = false }", "processes.web cannot have overlap = false"),
    ("[processes]\nweb = { parallelism = 0 }", "processes.web.parallelism must be a whole number from 1 to 100, not 0"),
    ("[processes]\nweb = { parallelism = true }", "processes.web.parallelism must be a whole number"),
    ("[processes]\nweb = { parallelism = 1.5 }", "processes.web.parallelism must be a whole number"),
    ("storage = ['/:/host']", "'storage' is not allowed"),
])
def test_bad_release_and_processes_are_refused_naming_the_key(text, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_repo_config(text)


def test_counts_default_to_one_and_follow_the_operator():
    declared = parse_repo_config("[processes]\nworker = 'w'\nclock = 'c'\n").processes
    assert desired(declared, {}) == {"web": 1, "clock": 1, "worker": 1}
    assert desired(declared, {"worker": 3, "clock": 0, "gone": 2}) == {"web": 1, "clock": 0, "worker": 3}
    assert unknown_names(declared, ["gone", "worker"]) == ["gone"]


@pytest.mark.parametrize("items, message", [
    (["worker"], "expected PROCESS=COUNT"),
    (["worker=x"], "invalid count 'x' for worker"),
    (["worker=-1"], "invalid count '-1'"),
    (["worker=1.5"], "invalid count '1.5'"),
    (["worker=51"], "invalid count '51'"),
    (["web=2"], "web runs as one container per server"),
    (["Bad=1"], "invalid process name 'Bad'"),
])
def test_bad_counts_are_refused(items, message):
    with pytest.raises(InvalidInput, match=message):
        parse_scale(items)


def test_counts_parse():
    assert parse_scale(["worker=3", "clock=0", "web=1"]) == {"worker": 3, "clock": 0, "web": 1}


def test_storage_specs():
    assert parse("media:/app/media", "shop", ROOT) == Mount("media", "volume", "zdd-shop-media", "/app/media")
    bind = parse(f"{ROOT}/shop/uploads:/uploads", "shop", ROOT)
    assert (bind.kind, bind.source, bind.target) == ("bind", f"{ROOT}/shop/uploads", "/uploads")


@pytest.mark.parametrize("spec, message", [
    ("/etc:/data", "only folders under /srv/zdd/storage/ can be mounted"),
    (f"{ROOT}/../secrets:/data", "only folders under"),
    (f"{ROOT}:/data", "only folders under"),
    ("data:/", "would shadow /, /proc, /sys or /dev"),
    ("data:/proc", "would shadow"),
    ("data:/sys/fs", "would shadow"),
    ("data:/var/run/docker.sock", "the Docker socket"),
    ("data:relative", "invalid container path"),
    ("data:/a/../b", "invalid container path"),
    ("data:/a b", "invalid container path"),
    ("Data:/x", "invalid storage name"),
    ("nocolon", "expected NAME:/path/in/container"),
])
def test_bad_storage_is_refused(spec, message):
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(")):
        parse(spec, "shop", ROOT)


def test_storage_list_refuses_clashes_and_removes_by_name_or_path():
    media = parse("media:/app/media", "shop", ROOT)
    mounts = added([], media)
    with pytest.raises(InvalidInput, match="already has storage mounted"):
        added(mounts, parse("other:/app/media", "shop", ROOT))
    with pytest.raises(InvalidInput, match="already mounted at /app/media"):
        added(mounts, parse("media:/elsewhere", "shop", ROOT))
    assert removed(mounts, "/app/media") == ([], media) == removed(mounts, "media")
    with pytest.raises(InvalidInput, match="no storage named"):
        removed(mounts, "nope")
