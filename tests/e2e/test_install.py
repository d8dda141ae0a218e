"""install.sh: sets up an app idempotently and refuses bad input before writing anything."""

import os
import stat

import pytest

from conftest import REPO, expect, run

pytestmark = pytest.mark.e2e


def snapshot(root):
    """Every file install.sh could touch; logs/ is left out, since the minute timer it installs
    may write logs/backup-due.log between the two runs."""
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*")
            if "venv" not in p.parts and "logs" not in p.relative_to(root).parts}


def test_install_creates_repo_hook_and_command_and_rerun_changes_nothing(server):
    site = f"http://127.0.0.1:{server.unused_port()}"
    first = server.install("inst-a", "--domain", site, "--port", "8000")
    assert first.returncode == 0, first.stderr
    hook = server.repo("inst-a") / "hooks" / "post-receive"
    assert hook.stat().st_mode & stat.S_IXUSR
    assert hook.read_text().splitlines()[-1] == f"exec {server.root}/bin/zdd hook inst-a"
    expect(first.stdout, "git remote add production ssh://", f"{server.root}/inst-a.git")
    before = snapshot(server.root)

    again = server.install("inst-a", "--domain", site, "--port", "8000")

    assert again.returncode == 0, again.stderr
    assert "wrote" not in again.stdout and "installed" not in again.stdout and "created" not in again.stdout
    assert snapshot(server.root) == before


@pytest.mark.parametrize("app, domain, port, reason", [
    ("../evil", ":8080", "", "invalid app name"),
    ("My-App", ":8080", "", "invalid app name"),
    ("app;rm", ":8080", "", "invalid app name"),
    ("a" * 40, ":8080", "", "invalid app name"),
    ("okapp", "example.com {\n}", "", "invalid site address"),
    ("okapp", "import /etc/passwd", "", "invalid site address"),
    ("okapp", '"quoted.example.com"', "", "invalid site address"),
    ("okapp", ":8080", "70000", "invalid app port"),
])
def test_install_refuses_bad_input_before_writing(tmp_path, app, domain, port, reason):
    root = tmp_path / "zdd"
    env = {**os.environ, "ZDD_ROOT": str(root), "ZDD_CADDYFILE": str(tmp_path / "Caddyfile")}
    args = [app, "--domain", domain] + (["--port", port] if port else [])

    result = run(["bash", str(REPO / "install.sh"), *args], env=env)

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and reason in lines[0], result.stderr
    assert not root.exists()


def test_install_refuses_a_domain_another_app_has(server):
    site = f"http://127.0.0.1:{server.unused_port()}"
    assert server.install("inst-b", "--domain", site).returncode == 0

    result = server.install("inst-c", "--domain", site)

    assert result.returncode != 0
    expect(result.stderr, f"{site} is already the address of app 'inst-b'")
    assert not (server.root / "inst-c.git").exists()
