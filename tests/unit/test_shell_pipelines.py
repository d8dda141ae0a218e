"""No shell pipeline in the scripts can fail because its reader stopped early (issue 16).

Under `set -o pipefail`, `writer | grep -q LINE` fails now and then although LINE is there:
grep exits at the first match, the writer's next write kills it with SIGPIPE (status 141),
and pipefail makes that the pipeline's status. install.sh checks a command's output with
has_line "$(command)" LINE instead. No Docker engine here: a fake `docker` on PATH.
"""

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LOOPS = 500
REGISTRY = "10.0.0.1:5000"

# install.sh's registry check before issue 16, for comparison.
OLD_TRUSTS_REGISTRY = """old_trusts_registry() {
  docker info --format '{{range .RegistryConfig.IndexConfigs}}{{.Name}} {{.Secure}}{{"\\n"}}{{end}}' |
    grep -qx "$1 false"
}"""


def fake_docker(tmp_path, index_configs):
    """A `docker` that answers `docker info --format ...IndexConfigs...` with these lines, and fails otherwise."""
    (tmp_path / "index-configs").write_text("".join(line + "\n" for line in index_configs))
    docker = tmp_path / "bin" / "docker"
    docker.parent.mkdir()
    docker.write_text('#!/bin/sh\n'
                      'case "$*" in "info --format "*IndexConfigs*) exec cat "$(dirname "$0")/../index-configs" ;; esac\n'
                      'exit 1\n')
    docker.chmod(0o755)
    return docker.parent


def in_install_sh(script, path=None):
    """Runs the bash script after sourcing install.sh (its functions, and set -euo pipefail); its stdout."""
    env = dict(os.environ)
    if path:
        env["PATH"] = f"{path}:{env['PATH']}"
    result = subprocess.run(
        ["bash", "-c", "source ./install.sh\n"
                       "[[ -o errexit && -o nounset && -o pipefail ]] || exit 3\n" + script],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def failures(check, path, stop_at_first=False):
    """Of LOOPS runs of `check REGISTRY || ...` (install.sh dies there): how many took the
    failure branch, and the last failure's status."""
    out = in_install_sh(f"{OLD_TRUSTS_REGISTRY}\n"
                        "failed=0 status=0\n"
                        f"for _ in $(seq {LOOPS}); do\n"
                        f"  {check} {REGISTRY} || {{ status=$? failed=$((failed + 1)); {'break' if stop_at_first else ':'}; }}\n"
                        "done\n"
                        'echo "$failed $status"\n', path)
    return tuple(map(int, out.split()))


def test_sourcing_install_sh_defines_its_functions_and_runs_nothing():
    # with no arguments, the main body would print the usage and exit 2
    assert in_install_sh("type -t has_line trusts_registry die\n").split() == ["function"] * 3


def test_the_registry_check_never_fails_when_the_engine_trusts_the_registry(tmp_path):
    # The trusted registry early in a long answer: the writer still has lines to write when a
    # grep -q reading it through a pipe has already seen the match and exited.
    path = fake_docker(tmp_path, ["docker.io true", f"{REGISTRY} false"] +
                       [f"mirror-{i}.example.com:5000 true" for i in range(4000)])
    assert failures("trusts_registry", path) == (0, 0)
    # the old form, until it fails: docker killed by SIGPIPE (128 + 13), under pipefail
    assert failures("old_trusts_registry", path, stop_at_first=True) == (1, 141)


@pytest.mark.parametrize("index_configs", [
    [],
    ["docker.io true"],
    [f"{REGISTRY} true"],                      # the engine knows it, over HTTPS only
    ["10.0.0.11:5000 false", "docker.io true"],
    ["10x0x0x1:5000 false"],                   # a line, not a pattern
    [f" {REGISTRY} false"],
])
def test_the_registry_check_refuses_a_registry_the_engine_does_not_trust(tmp_path, index_configs):
    path = fake_docker(tmp_path, index_configs)
    assert in_install_sh(f'trusts_registry {REGISTRY} && echo trusted || echo refused\n', path) == "refused\n"


def test_the_registry_check_refuses_when_no_engine_answers(tmp_path):
    docker = tmp_path / "docker"
    docker.write_text('#!/bin/sh\necho "Cannot connect to the Docker daemon" >&2\nexit 1\n')
    docker.chmod(0o755)
    assert in_install_sh(f'trusts_registry {REGISTRY} 2>/dev/null && echo trusted || echo refused\n',
                         tmp_path) == "refused\n"


def test_has_line_matches_whole_lines():
    # as install.sh checks the deploy user's groups
    assert in_install_sh("""
groups=$(echo "users docker zdd" | tr ' ' '\\n')
for group in docker zdd zd dock users-x ''; do
  has_line "$groups" "$group" && echo "$group yes" || echo "$group no"
done
""").splitlines() == ["docker yes", "zdd yes", "zd no", "dock no", "users-x no", " no"]


# A reader that can stop before its writer is done: grep -q/-l/-L/-m (or the long
# options), head, sed with a q command, awk with exit; after a pipe (not ||), also when
# the pipeline goes on on the next line.
EARLY_READER = re.compile(r"""
    (?<!\|)\|(?!\|)\s*
    (?: grep\b[^|;&\n]*?\s(?:-[A-Za-z]*[qlLm]|--(?:quiet|silent|max-count|files-with))
      | head\b
      | sed\b[^|&\n]*?\b[qQ]\b
      | awk\b[^|&\n]*?\bexit\b )
""", re.VERBOSE)

SCRIPTS = ["install.sh", "scripts/*", "demo/*", "hooks/*", "tests/run", ".ci/run"]


@pytest.mark.parametrize("text", [
    OLD_TRUSTS_REGISTRY,
    """id -nG "$DEPLOY_USER" | tr ' ' '\\n' | grep -qx "$group" || usermod""",
    "docker ps | head -1", "docker ps|head", "x | grep -m1 y", "x | grep -x -q y", "x | grep --quiet y",
    "x | grep -l y", "x | sed q", "x | sed -n '/y/{p;q}'", "x | awk '/y/ {print; exit}'",
])
def test_the_guard_sees_early_readers(text):
    assert EARLY_READER.search(text)


@pytest.mark.parametrize("text", [
    "a || grep -q b", "a ||\n  grep -qx b", "x | grep -v '^WARNING: Location' || true",
    "x | grep 'docker swarm join'", "x | tr ' ' '\\n'", "x | sed -n 's/^Address: *\\(.*\\)$/\\1/p'",
    "x | sha256sum | cut -d' ' -f1", 'has_line "$(x)" y',
])
def test_the_guard_lets_whole_readers_be(text):
    assert not EARLY_READER.search(text)


def test_no_script_pipes_into_a_reader_that_stops_early():
    paths = sorted({p for pattern in SCRIPTS for p in REPO.glob(pattern) if p.is_file()})
    assert REPO / "install.sh" in paths and REPO / "scripts" / "prepare-machine" in paths
    found = [f"{p.relative_to(REPO)}:{p.read_text()[:m.start()].count(chr(10)) + 1}: {m.group(0).strip()}"
             for p in paths for m in EARLY_READER.finditer(p.read_text())]
    assert found == [], "use has_line \"$(command)\" LINE (install.sh) instead:\n" + "\n".join(found)


def test_zdds_own_pipe_tells_which_side_failed_and_forgives_a_producer_cut_off():
    from zdd.pipes import pipe
    sh = lambda script: ["sh", "-c", script]
    assert pipe(sh("echo data"), sh("grep -q data")) == (None, None)
    assert pipe(sh("echo half; echo 'fatal: disk gone' >&2; exit 3"), sh("cat >/dev/null")) == ("fatal: disk gone", None)
    assert pipe(sh("echo x"), sh("echo 'error: bad input'; exit 1")) == (None, "error: bad input")
    # the consumer stops at once; the producer's next write kills it with SIGPIPE
    assert pipe(sh("while :; do echo y; done"), sh("echo 'error: refused' >&2; exit 2")) == (None, "error: refused")
