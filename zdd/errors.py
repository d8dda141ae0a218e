"""The named errors zdd raises; only the CLI turns them into one-line messages."""


class ZddError(Exception):
    """Base of every error zdd reports to the user as a one-line message."""


class InvalidInput(ZddError):
    """A name, address, port or setting that zdd refuses."""


class ConfigError(InvalidInput):
    """A bad zdd.toml or server-side app setting."""


class GitError(ZddError):
    """A ref or commit that cannot be deployed."""


class BuildFailed(ZddError):
    """The image did not build."""


class ContainerFailed(ZddError):
    """The new container exited or never became healthy."""


class CaddyError(ZddError):
    """Caddy rejected the rendered config or could not be reloaded."""


class LockTimeout(ZddError):
    """Another deploy of the same app held the lock too long."""


class ReleaseFailed(ZddError):
    """The release command failed or timed out."""
