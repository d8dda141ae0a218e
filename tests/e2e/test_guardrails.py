"""Guardrails (issue 21): what one app can do to the server. Logs: every container zdd
starts keeps at most log_max_size x log_max_files of log (Docker's json-file, rotated), and
`zdd logs` still shows the newest lines; a value that is not a size is refused in one line."""

import json
from pathlib import Path

import pytest

from conftest import app_dockerfile, pushed_live

pytestmark = pytest.mark.e2e
CHATTY = ("i=0; while [ $i -lt 20000 ]; do echo chatty line $i, padded to about sixty bytes of log; "
          "i=$((i+1)); done; echo the-last-line; exec /bin/busybox httpd -f -p 8000 -h /www")


def log_bytes(container) -> int:
    """What the container's log takes on disk, rotated files included."""
    path = Path(container.attrs["LogPath"])
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def test_a_chatty_app_keeps_only_its_capped_log_and_zdd_logs_shows_the_newest(server, new_app, docker_client):
    app, site, repo = new_app
    settings_path = server.root / "settings.json"
    before = settings_path.read_text()
    settings_path.write_text(json.dumps({**json.loads(before), "log_max_size": "100k", "log_max_files": 2}))
    try:
        repo.write("zdd.toml", 'release = "/bin/busybox echo released"\n')
        repo.commit("v1", dockerfile=app_dockerfile(cmd=CHATTY))
        pushed_live(repo.push("main"))
        web = docker_client.containers.get(server.status(app)["container"])
        assert web.attrs["HostConfig"]["LogConfig"] == {"Type": "json-file",
                                                        "Config": {"max-size": "100k", "max-file": "2"}}
        assert log_bytes(web) < 2 * 100 * 1024 + 4096, "about 1.2 MB written, at most 2 x 100 kB kept"
        logs = server.zdd("logs", app, "--tail", "3")
        assert logs.returncode == 0 and "the-last-line" in logs.stdout, logs.stdout + logs.stderr

        settings_path.write_text(json.dumps({**json.loads(before), "log_max_size": "lots"}))
        refused = server.zdd("restart", app)
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
        assert "log_max_size 'lots' in settings.json is not a size" in refused.stderr, refused.stderr
        assert docker_client.containers.get(web.id).status == "running", "the live app is untouched"
    finally:
        settings_path.write_text(before)
