"""Images built with BuildKit, through a docker CLI that can (what the Docker SDK cannot: its
build is Docker's legacy builder, which refuses RUN --mount, COPY --chmod, heredocs, secrets).

Which CLI is found once at install (``discover``) and recorded in settings.json: one with the
buildx plugin (``docker buildx build``), else a classic CLI (before 23) with DOCKER_BUILDKIT=1,
which builds with the engine's own BuildKit. The build's context is the commit's tree in a
temporary folder, so the CLI applies ``.dockerignore`` as it always does.
"""

import dataclasses
import os
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from zdd.errors import BuildFailed

Emit = Callable[[str], None]
CANDIDATES = ("/usr/bin/docker", "/usr/local/bin/docker", "/bin/docker")
MASK = "********"
MIN_MASKED = 4   # shorter values would mask ordinary words of the output


@dataclasses.dataclass(frozen=True)
class Builder:
    cli: str            # absolute path of the docker CLI
    kind: str = "classic"


class NoBuilder(BuildFailed):
    pass


NO_BUILDER = ("no docker command here can build with BuildKit: install the buildx plugin (docker-ce's "
              "docker-buildx-plugin), or Debian's docker.io (whose docker builds with DOCKER_BUILDKIT=1), "
              "then re-run install.sh")


def discover(candidates: list[str] | None = None) -> Builder:
    """The first docker CLI with buildx, else the first classic one that builds with BuildKit."""
    found = _unique_clis(candidates)
    for cli in found:
        if _runs([cli, "buildx", "version"]):
            return Builder(cli, "buildx")
    for cli in found:
        if classic_builds_with_buildkit(_version_output(cli)):
            return Builder(cli, "classic")
    raise NoBuilder(NO_BUILDER)


def classic_builds_with_buildkit(version_output: str) -> bool:
    """``docker --version`` of a CLI that sends BuildKit builds itself (18.09 to 22.x); from 23
    on, DOCKER_BUILDKIT=1 needs the buildx plugin."""
    match = re.search(r"version (\d+)\.(\d+)", version_output)
    return bool(match) and (18, 9) <= (int(match[1]), int(match[2])) < (23, 0)


def _unique_clis(candidates: list[str] | None) -> list[str]:
    if candidates is None:
        on_path = [str(Path(folder) / "docker") for folder in os.environ.get("PATH", "").split(os.pathsep) if folder]
        candidates = [*on_path, *CANDIDATES]
    seen, found = set(), []
    for cli in candidates:
        if os.path.isfile(cli) and os.access(cli, os.X_OK) and os.path.realpath(cli) not in seen:
            seen.add(os.path.realpath(cli))
            found.append(os.path.abspath(cli))
    return found


def _runs(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _version_output(cli: str) -> str:
    try:
        return subprocess.run([cli, "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def command(builder: Builder, context: Path, tag: str, labels: dict, build, secret_files: dict[str, Path]) -> list[str]:
    """The build's argument list (never given to a shell). ``build``: a config.BuildConfig."""
    argv = [builder.cli, "buildx", "build", "--load"] if builder.kind == "buildx" else [builder.cli, "build"]
    argv += ["--progress=plain", "-f", str(context / build.dockerfile), "-t", tag]
    for key, value in sorted(labels.items()):
        argv += ["--label", f"{key}={value}"]
    if build.target:
        argv += ["--target", build.target]
    for name, value in build.args:
        argv += ["--build-arg", f"{name}={value}"]
    for name in build.secrets:
        argv += ["--secret", f"id={name},src={secret_files[name]}"]
    return [*argv, str(context)]


def environment() -> dict:
    """The CLI's environment: this process's (DOCKER_HOST reaches the same engine), BuildKit on."""
    return {**os.environ, "DOCKER_BUILDKIT": "1", "DOCKER_CLI_HINTS": "false"}


def build(builder: Builder, context_tar, tag: str, labels: dict, build, secrets: dict[str, str], emit: Emit) -> None:
    """Build ``context_tar`` (the commit's tree as a tar file) as ``tag``; stream the output, with
    the secrets' values masked. Raises BuildFailed with the failing step's error."""
    with tempfile.TemporaryDirectory(prefix="zdd-build-") as folder:
        context = Path(folder) / "context"
        _unpack(context_tar, context)
        secret_files = _write_secrets(Path(folder) / "secrets", secrets)
        argv = command(builder, context, tag, labels, build, secret_files)
        tail = _stream(argv, environment(), [v for v in secrets.values() if len(v) >= MIN_MASKED], emit)
    if tail is not None:
        raise BuildFailed(f"the image did not build: {_error_line(tail)}")


def _unpack(context_tar, folder: Path) -> None:
    folder.mkdir(mode=0o700)
    with tarfile.open(fileobj=context_tar, mode="r:") as archive:
        if hasattr(tarfile, "tar_filter"):
            archive.extractall(folder, filter="tar")
        else:  # Python before 3.11.4: git archive writes no absolute or .. member names
            archive.extractall(folder)


def _write_secrets(folder: Path, secrets: dict[str, str]) -> dict[str, Path]:
    folder.mkdir(mode=0o700)
    files = {}
    for name, value in secrets.items():
        path = folder / name
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
            handle.write(value)
        files[name] = path
    return files


def _stream(argv: list[str], env: dict, masked: list[str], emit: Emit) -> list[str] | None:
    """Run the build, emitting each line; None if it succeeded, else its last lines."""
    tail: list[str] = []
    with subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1) as process:
        for line in _lines(process.stdout, masked):
            tail = (tail + [line])[-30:]
            emit(line)
    return None if process.returncode == 0 else tail


def _lines(stream, masked: list[str]) -> Iterator[str]:
    for raw in stream:
        line = raw.rstrip("\n")
        for value in masked:
            line = line.replace(value, MASK)
        if line.strip():
            yield line


def _error_line(tail: list[str]) -> str:
    errors = [line for line in tail if "error" in line.lower()]
    return (errors[-1] if errors else tail[-1] if tail else "no output").removeprefix("ERROR: ").strip()


def prune_cache(builder: Builder, keep_mb: int, mount_days: float) -> None:
    """Keep BuildKit's cache under ``keep_mb``, dropping the least recently used entries; and drop
    cache mounts unused for ``mount_days``: an engine whose BuildKit reports their size as 0 B
    (Docker 20.10 does) would otherwise keep them whatever their size."""
    prune = [builder.cli, *(["buildx", "prune"] if builder.kind == "buildx" else ["builder", "prune"]), "--force"]
    _run(prune + ["--keep-storage", f"{keep_mb}mb"])
    _run(prune + ["--filter", "type=exec.cachemount", "--filter", f"until={max(1, round(mount_days * 86400))}s"])


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, env=environment(), capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise BuildFailed(f"could not prune the build cache: {(done.stderr or done.stdout).strip()[-200:]}")
