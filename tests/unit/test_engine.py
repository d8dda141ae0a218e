"""The engine and health modules' own logic, without an engine: what they inspect, forgive and wait for."""

import docker.errors
import pytest

from zdd import engine


@pytest.mark.parametrize("state, status, seconds, inspected", [
    ("restarting", "Restarting (137) 2 seconds ago", 5, True),
    ("exited", "Exited (0) 3 seconds ago", 5, False),
    ("running", "Up Less than a second", 5, True),
    ("running", "Up 4 seconds (healthy)", 5, True),
    ("running", "Up 9 seconds", 5, False),
    ("running", "Up About a minute", 70, True),
    ("running", "Up About a minute", 30, False),
    ("running", "Up 3 minutes", 60, False),
    ("running", "Up 2 hours", 60, False),
    ("running", "Up something new", 5, True),
])
def test_only_containers_that_may_have_restarted_in_the_gap_are_inspected(state, status, seconds, inspected):
    assert engine._maybe_started_since({"State": state, "Status": status}, seconds) is inspected


def test_a_container_whose_removal_is_already_under_way_counts_as_removed():
    class Removing:
        def remove(self, **_):
            raise docker.errors.APIError("409 Conflict: removal of container abc is already in progress")

    class Refusing:
        def remove(self, **_):
            raise docker.errors.APIError("409 Conflict: something else")

    engine.remove(Removing())
    with pytest.raises(docker.errors.APIError):
        engine.remove(Refusing())


def test_volume_sizes_wait_while_another_disk_usage_runs_and_say_so_when_it_never_ends():
    class Busy:
        def __init__(self, refusals):
            self.refusals = refusals

        def df(self):
            if self.refusals:
                self.refusals -= 1
                raise docker.errors.APIError("a disk usage operation is already running")
            return {"Volumes": [{"Name": "data", "UsageData": {"Size": 42}}, {"Name": "new"}]}

    assert engine.volume_sizes(Busy(2)) == {"data": 42, "new": -1}
    with pytest.raises(engine.ZddError, match="Docker did not size the volumes .*: run the command again"):
        engine.volume_sizes(Busy(100), patience=0.6)


def test_listening_looks_at_the_containers_own_address_not_the_host_port():
    import socket
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    container = type("C", (), {"attrs": {"NetworkSettings": {"Networks": {"bridge": {"IPAddress": "127.0.0.1"}}}}})()
    assert engine.listening(container, port)
    server.close()
    assert not engine.listening(container, port)
    container.attrs = {"NetworkSettings": {"Networks": {"bridge": {"IPAddress": ""}}}}  # not started yet
    assert not engine.listening(container, port)


def test_the_health_wait_wakes_once_when_the_port_opens_then_sleeps_its_interval():
    import time
    from zdd import health
    looks = []
    sleep = health._sleep_until_listening(lambda: looks.append(1) or len(looks) >= 3)
    started = time.monotonic()
    sleep(30.0)
    assert len(looks) == 3 and time.monotonic() - started < 29, "woke when the port opened"
    sleep(0.1)
    assert len(looks) == 3, "after that, the interval as asked"
