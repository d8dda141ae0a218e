"""What every runtime does the same way: its Docker client, Caddy's refresh, one-off commands."""

from zdd import engine, oneoff, routing


class RuntimeBase:
    web_scales = False

    def __init__(self, server, client=None):
        self.server = server
        self._client = client

    @property
    def client(self):
        if self._client is None:
            self._client = engine.connect(engine.LogCap(self.server.log_max_size, self.server.log_max_files))
        return self._client

    @property
    def caddy(self):
        """The Caddy that serves the apps (routing.HostCaddy, or Swarm mode's container)."""
        return routing.HostCaddy()

    def refresh_routes(self, emit, including=None, leaving=None, force=False) -> str:
        return routing.refresh(self.server, self.caddy, emit, including=including, leaving=leaving, force=force)

    def run(self, app, command, process, extra_env, tty) -> int:
        return oneoff.run(app, self.client, command, process, extra_env, tty)
