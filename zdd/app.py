"""One app on this server, as a command sees it: built once per command, then passed down."""

import dataclasses
import functools
from pathlib import Path

from zdd import appenv, config, limits, processes, services, state, storage
from zdd.errors import ZddError


@dataclasses.dataclass(frozen=True)
class App:
    """An app's folder, its install.sh settings, and what the operator set for it (scale,
    limits, env, storage), each read from disk at most once per command."""

    server: config.Server
    settings: config.AppSettings

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def dir(self) -> Path:
        return self.server.app_dir(self.name)

    @property
    def repo_path(self) -> Path:
        return self.server.repo_path(self.settings.preview_of or self.name)

    @functools.cached_property
    def scale(self) -> dict[str, int]:
        return processes.read_scale(self.dir)

    @functools.cached_property
    def limits(self) -> limits.Limits:
        default = self.server.default_limit
        if self.settings.limit:
            default = limits.parse_limit(self.settings.limit, f"{self.name}'s preview limit")
        return limits.Limits(limits.read(self.dir), default)

    @functools.cached_property
    def env(self) -> dict[str, str]:
        return appenv.read(self.dir)

    @functools.cached_property
    def mounts(self) -> list[storage.Mount]:
        return storage.read(self.dir)

    @functools.cached_property
    def services(self) -> list[services.Service]:
        return services.read(self.dir)

    @property
    def network(self) -> str | None:
        """The network its containers join: its own, when it has data services beside it."""
        return services.network_name(self.name) if self.services else None

    def live(self) -> dict | None:
        """The live record as it is on disk now (a deploy or a repair may have changed it)."""
        return state.read_live(self.dir)

    def history(self) -> list[dict]:
        return state.read_history(self.dir)

    def repo(self):
        from zdd import gitrepo  # GitPython: only for commands that read the repository
        return gitrepo.open_repo(self.repo_path)

    def repo_config_at(self, sha: str, repo=None) -> config.RepoConfig:
        """The zdd.toml of commit ``sha``, validated."""
        from zdd import gitrepo
        data = gitrepo.read_file(repo or self.repo(), sha, "zdd.toml")
        if data is None:
            return config.parse_repo_config(None)
        try:
            return config.parse_repo_config(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise ZddError("zdd.toml is not UTF-8 text") from None


def load(server: config.Server, name: str) -> App:
    """The app named ``name``; ConfigError if install.sh never set it up."""
    return App(server, config.load_app(server, name))
