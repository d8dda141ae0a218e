"""Everything zdd asks of git, through GitPython: resolve, read, export, move refs.

GitPython is imported at first use: it costs 0.1 s of CPU, which commands that never read
a repository (status, history, env) need not pay."""

from __future__ import annotations

import tempfile
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    import git

from zdd.errors import GitError
from zdd.push import ZERO_SHA

MAX_CONFIG_BYTES = 64 * 1024


def open_repo(path) -> git.Repo:
    import git
    try:
        repo = git.Repo(path)
    except (git.NoSuchPathError, git.InvalidGitRepositoryError):
        raise GitError(f"no git repository at {path}: run install.sh for this app") from None
    # The repo belongs to the deploy user; root running zdd must not be refused as "dubious ownership".
    repo.git.set_persistent_git_options(c=f"safe.directory={repo.git_dir}")
    return repo


def resolve_commit(repo: git.Repo, rev: str) -> str:
    """The commit SHA a branch, tag (annotated ones peeled) or SHA names."""
    import git
    try:
        return repo.commit(rev).hexsha
    except (git.BadName, ValueError, git.GitCommandError):
        raise GitError(f"{rev!r} names no commit in this app's repository") from None


SYMLINK_MODE = 0o120000


def read_file(repo: git.Repo, sha: str, path: str, limit: int = MAX_CONFIG_BYTES) -> bytes | None:
    """A file's bytes at the commit's root, or None if it has no such file."""
    try:
        blob = repo.commit(sha).tree / path
    except KeyError:
        return None
    if blob.type != "blob":
        return None
    if blob.size > limit:
        raise GitError(f"{path} is larger than {limit} bytes")
    return blob.data_stream.read()


def regular_file(repo: git.Repo, sha: str, path: str) -> bool:
    """Whether ``path`` is a file in the commit, not a link (which could point outside it)."""
    try:
        blob = repo.commit(sha).tree / path
    except KeyError:
        return False
    return blob.type == "blob" and blob.mode != SYMLINK_MODE


def tree_size(repo: git.Repo, sha: str) -> int:
    """Bytes of every file in the commit: about the size of its build context."""
    return sum(item.size for item in repo.commit(sha).tree.traverse() if item.type == "blob")


def has_submodules(repo: git.Repo, sha: str) -> bool:
    return any(item.type == "submodule" for item in repo.commit(sha).tree.traverse())


def export_tar(repo: git.Repo, sha: str) -> IO[bytes]:
    """The commit's tree as a tar stream in a temporary file, rewound, for docker build."""
    archive = tempfile.TemporaryFile()
    repo.archive(archive, treeish=sha, format="tar")
    archive.seek(0)
    return archive


def set_ref(repo: git.Repo, ref: str, sha: str | None) -> None:
    """Point ``ref`` at ``sha``, or delete it when sha is None or zeros."""
    if sha and sha != ZERO_SHA:
        repo.git.update_ref(ref, sha)
    else:
        repo.git.update_ref("-d", ref)
