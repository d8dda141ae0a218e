"""The health gate: Docker's own HEALTHCHECK when the image has one, else an HTTP probe."""

import http.client
import time
from typing import Callable

import tenacity

from zdd import engine
from zdd.errors import ContainerFailed

Emit = Callable[[str], None]
PROGRESS_EVERY = 5.0
LISTEN_POLL = 0.03  # between checks, how often zdd looks whether the app's port opened
# Docker's proxy accepts on the host port, then closes when nothing listens in the container.
NOTHING_LISTENS = ("connection refused", "connection closed without an answer")


class NotYet(Exception):
    """The container is alive but not healthy yet."""


class HttpProbe:
    """GET path on 127.0.0.1:port; healthy on 2xx or 3xx (redirects are not followed).
    Remembers what the last failed probe got, for the error message."""

    def __init__(self, port: int, path: str, timeout: float = 2.0):
        self.port, self.path, self.timeout = port, path, timeout
        self.last_failure = "no probe yet"

    def __call__(self) -> bool:
        connection = http.client.HTTPConnection(engine.LOOPBACK, self.port, timeout=self.timeout)
        try:
            connection.request("GET", self.path, headers={"User-Agent": "zdd-health"})
            status = connection.getresponse().status
            self.last_failure = f"HTTP {status}"
            return 200 <= status < 400
        except (OSError, http.client.HTTPException) as error:
            self.last_failure = _describe(error)
            return False
        finally:
            connection.close()


def _describe(error: Exception) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, (http.client.RemoteDisconnected, ConnectionResetError)):
        return "connection closed without an answer"
    return type(error).__name__


def wait_until_healthy(container, probe: Callable[[], bool], timeout: float, interval: float,
                       emit: Emit, docker_health: bool, listening: Callable[[], bool] | None = None) -> None:
    """Return once healthy; raise ContainerFailed if it exits, turns unhealthy or times out.

    Healthy: the probe passes, or (``docker_health``) Docker reports healthy. Docker
    reporting unhealthy fails at once. ``listening``: whether the app's port takes
    connections yet, a cheap look; the moment it first does, the next check runs at once
    instead of after the rest of the interval.
    """
    started = time.monotonic()
    last_report = [started]

    def check() -> None:
        now = engine.state(container)
        if now["status"] != "running" or now["restarting"]:
            raise ContainerFailed(f"the new container stopped (exit code {now['exit_code']}) before it was healthy")
        if docker_health and now["health"] == "unhealthy":
            raise ContainerFailed("the new container's HEALTHCHECK reports unhealthy")
        healthy = (docker_health and now["health"] == "healthy") or probe()
        if not healthy:
            if time.monotonic() - last_report[0] >= PROGRESS_EVERY:
                last_report[0] = time.monotonic()
                waited = last_report[0] - started
                emit(f"still waiting for health ({waited:.0f}s of {timeout:.0f}s, {now['health'] or 'no answer yet'})")
            raise NotYet()

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(NotYet),
        stop=tenacity.stop_after_delay(timeout),
        wait=tenacity.wait_fixed(interval),
        sleep=_sleep_until_listening(listening) if listening else time.sleep,
        reraise=True,
    )
    try:
        retrying(check)
    except NotYet:
        raise ContainerFailed(f"the new container was not healthy within {timeout:.0f}s") from None


def _sleep_until_listening(listening: Callable[[], bool]) -> Callable[[float], None]:
    """A sleep that ends early the first time ``listening`` turns true, then sleeps as asked."""
    opened = False

    def sleep(seconds: float) -> None:
        nonlocal opened
        deadline = time.monotonic() + seconds
        while not opened and time.monotonic() + LISTEN_POLL < deadline:
            if listening():
                opened = True
                return
            time.sleep(LISTEN_POLL)
        time.sleep(max(0.0, deadline - time.monotonic()))
    return sleep


def wait_staying_up(container, until: float, poll: float = 0.25) -> None:
    """Return once the container has kept running until the monotonic time ``until``; raise
    ContainerFailed as soon as it stops or restarts."""
    while True:
        now = engine.state(container)
        if now["status"] != "running" or now["restarting"] or now["restarts"]:
            raise ContainerFailed(f"it stopped (exit code {now['exit_code']}) soon after it started")
        if time.monotonic() >= until:
            return
        time.sleep(min(poll, max(0.0, until - time.monotonic())))
