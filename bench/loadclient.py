"""HTTP/1.1 keep-alive clients that count failed requests while a deploy happens."""

import ctypes
import http.client
import threading
import time
from collections import Counter
from typing import NamedTuple
from urllib.parse import urlsplit


class Record(NamedTuple):
    """One request as the client saw it (after its one retry, if any); times from time.monotonic()."""

    started: float
    finished: float
    ok: bool
    text: str  # the body when ok, else what went wrong


class KeepAliveClient(threading.Thread):
    """GETs ``path`` over one keep-alive connection in a loop until stopped.

    strict: every error is a failure. retrying: a request whose *reused* connection
    closed before any response byte is sent once more on a new connection (as browsers,
    curl and Go do); only what still fails counts. Every request is also kept in
    ``records``, with its start and end time, for the benchmark's windows.
    """

    def __init__(self, url: str, path: str = "/", retrying: bool = True, pause: float = 0.01,
                 host_header: str | None = None, netns: str | None = None):
        super().__init__(daemon=True)
        self.netns = netns
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.headers = {"Host": host_header} if host_header else {}
        self.path, self.retrying, self.pause = path, retrying, pause
        self.bodies: Counter = Counter()
        self.failures: list[str] = []
        self.requests = 0
        self.latencies: list[float] = []
        self.records: list[Record] = []
        self._stop_event = threading.Event()
        self._connection = None
        self._used = False

    def halt(self) -> None:
        """Ask the loop to end after the request in flight, without waiting for it."""
        self._stop_event.set()

    def stop(self) -> None:
        self.halt()
        self.join(timeout=30)

    def run(self) -> None:
        if self.netns:
            enter_netns(self.netns)
        while not self._stop_event.is_set():
            started = time.monotonic()
            outcome = self._request_once()
            if outcome is None and self.retrying:
                outcome = self._request_once()
            finished = time.monotonic()
            self.requests += 1
            self.latencies.append(finished - started)
            ok = isinstance(outcome, tuple) and outcome[0] == 200
            if ok:
                self.bodies[outcome[1]] += 1
            else:
                self.failures.append(str(outcome))
            self.records.append(Record(started, finished, ok, outcome[1] if ok else _describe(outcome)))
            time.sleep(self.pause)
        if self._connection:
            self._connection.close()

    def _request_once(self):
        """(status, body); None if a reused connection closed before any response; else an error text."""
        if self._connection is None:
            self._connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
            self._used = False
        reused = self._used
        try:
            self._connection.request("GET", self.path, headers=self.headers)
            self._used = True
            response = self._connection.getresponse()
            body = response.read().decode(errors="replace")
            if response.getheader("Connection", "").lower() == "close":
                self._reset()
            return response.status, body
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as error:
            self._reset()
            return None if reused else f"{type(error).__name__}: {error}"
        except (OSError, http.client.HTTPException) as error:
            self._reset()
            return f"{type(error).__name__}: {error}"

    def _reset(self) -> None:
        self._connection.close()
        self._connection = None


CLONE_NEWNET = 0x40000000


def enter_netns(path: str) -> None:
    """Move the calling thread (only it) into the network namespace at ``path``, e.g.
    /run/netns/NAME: the sockets it opens from then on live there."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open(path) as handle:
        if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {path} failed")


def _describe(outcome) -> str:
    if outcome is None:
        return "reused connection closed before any response"
    if isinstance(outcome, tuple):
        return f"HTTP {outcome[0]}"
    return outcome
